"""The imapbridge admin CLI against a running imapbridged: accounts added,
listed and removed at runtime, persistence across restarts, local passwords,
the control socket's permissions, and the messages when something is off."""

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Dovecot, make_message

DAEMON = os.path.join(BIN, "imapbridged")
ADMIN = os.path.join(BIN, "imapbridge")


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class AdminTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ib-admin.")
        os.chmod(self.dir, 0o755)
        self.datadir = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.datadir, "control.sock")
        self.config = os.path.join(self.dir, "imapbridge.conf")
        with open(self.config, "w") as f:
            f.write('datadir = "%s";\naccounts = ( { name = "main"; remote = { host = "h.example"; '
                    'user = "u"; password_command = "echo pw"; }; } );\n' % self.datadir)
        self.proc = None
        self.logs = []

    def tearDown(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        log = open(os.path.join(self.dir, "daemon%d.log" % len(self.logs)), "wb")
        self.logs.append(log.name)
        self.proc = subprocess.Popen([DAEMON, "-u", "basic", "-c", self.config],
                                     stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        wait_for(lambda: os.path.exists(self.sock) or self.proc.poll() is not None,
                 what="the control socket")
        self.assertIsNone(self.proc.poll(), self.log())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.assertEqual(self.proc.wait(10), 0)
        self.proc = None

    def log(self):
        text = ""
        for name in self.logs:
            with open(name, errors="replace") as f:
                text += f.read()
        return text

    def admin(self, *args, stdin=None, **kw):
        return subprocess.run([ADMIN, "-c", self.config] + list(args), input=stdin,
                              capture_output=True, text=True, timeout=30, **kw)

    def names(self):
        p = self.admin("account", "list", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        return [a["name"] for a in json.loads(p.stdout)]

    def add(self, name, *extra, password="remote-secret"):
        return self.admin("account", "add", name, "--host", "imap.example.org", "--user", "me",
                          "--password-stdin", *extra, stdin=password + "\n")

    def test_add_list_remove(self):
        self.start()
        self.assertEqual(self.names(), ["main"])
        p = self.add("work", "--port", "143", "--tls", "starttls", "--maildir", "~/Mail/work")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.names(), ["main", "work"])

        p = self.admin("account", "list")
        self.assertEqual(p.returncode, 0)
        header, *rows = p.stdout.splitlines()
        self.assertEqual(header.split(), ["NAME", "HOST", "PORT", "TLS", "USER", "MAILDIR", "SOURCE"])
        work = [r.split() for r in rows if r.startswith("work ")][0]
        self.assertEqual(work[1:5], ["imap.example.org", "143", "starttls", "me"])
        self.assertEqual(work[-1], "cli")

        # stored 0600, with the password, which never reaches the log
        f = os.path.join(self.datadir, "accounts", "work.conf")
        self.assertEqual(os.stat(f).st_mode & 0o777, 0o600)
        with open(f) as fh:
            self.assertIn('password = "remote-secret";', fh.read())
        self.assertNotIn("remote-secret", self.log())
        # the account file is valid config: --check of the daemon accepts the merge
        p = subprocess.run([DAEMON, "--check", "-c", self.config], capture_output=True, text=True)
        self.assertIn("OK (2 accounts)", p.stdout, p.stderr)

        p = self.admin("account", "remove", "work")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.names(), ["main"])
        self.assertFalse(os.path.exists(f))

        # removed without --purge, added again, then purged
        self.assertEqual(self.add("work").returncode, 0, self.log())
        p = self.admin("account", "remove", "work", "--purge")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("local data dropped", p.stdout)
        self.assertEqual(self.names(), ["main"])
        self.assertIn("account work removed, local data dropped", self.log())

    def test_added_account_persists_across_restart(self):
        self.start()
        self.assertEqual(self.add("travel").returncode, 0)
        self.stop()
        self.start()
        self.assertEqual(self.names(), ["main", "travel"])
        p = self.admin("status", "travel", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        st = json.loads(p.stdout)
        self.assertEqual([a["name"] for a in st["accounts"]], ["travel"])
        self.assertEqual(st["daemon"]["pid"], self.proc.pid)

    def test_add_refuses_bad_input(self):
        self.start()
        p = self.add("main")
        self.assertEqual(p.returncode, 1)
        self.assertIn("account 'main' already exists", p.stderr)
        p = self.add("../evil")
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a usable account name", p.stderr)
        p = self.admin("account", "add", "x", "--host", "h", "--user", "u")
        self.assertEqual(p.returncode, 1)
        self.assertIn("--password-stdin", p.stderr)
        p = self.add("x", "--tls", "ssl")
        self.assertEqual(p.returncode, 1)
        self.assertIn("--tls takes none, starttls or implicit", p.stderr)
        self.assertEqual(self.names(), ["main"])
        self.assertEqual(os.listdir(os.path.join(self.datadir, "accounts")) if os.path.isdir(
            os.path.join(self.datadir, "accounts")) else [], [])

    def test_add_with_password_file_is_absolute(self):
        self.start()
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write("s3cret\n")
        os.chmod(pw, 0o600)
        p = self.admin("account", "add", "filed", "--host", "h", "--user", "u",
                       "--password-file", "pw", cwd=self.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(self.datadir, "accounts", "filed.conf")) as f:
            self.assertIn('password_file = "%s";' % pw, f.read())

    def test_remove_config_account_refused(self):
        self.start()
        p = self.admin("account", "remove", "main")
        self.assertEqual(p.returncode, 1)
        self.assertIn("defined in %s:2" % self.config, p.stderr)
        p = self.admin("account", "remove", "ghost")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no account named 'ghost'", p.stderr)
        self.assertEqual(self.names(), ["main"])

    def test_passwd(self):
        self.start()
        p = self.admin("passwd", "main", stdin="local-pass\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        hfile = os.path.join(self.datadir, "local-passwords", "main")
        self.assertEqual(os.stat(hfile).st_mode & 0o777, 0o600)
        with open(hfile) as f:
            h = f.read().strip()
        self.assertRegex(h, r"^\$(y|6)\$")
        self.assertNotIn("local-pass", h)
        self.assertNotIn("local-pass", self.log())
        # a second hash of the same password has a new salt
        self.assertEqual(self.admin("passwd", "main", stdin="local-pass\n").returncode, 0)
        with open(hfile) as f:
            self.assertNotEqual(f.read().strip(), h)
        p = self.admin("account", "list", "--json")
        self.assertTrue(json.loads(p.stdout)[0]["local_password"])
        p = self.admin("passwd", "ghost", stdin="x\n")
        self.assertEqual(p.returncode, 1)
        p = self.admin("passwd", "main", stdin="")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no password on stdin", p.stderr)

    def test_daemon_not_running(self):
        p = self.admin("account", "list")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.strip(),
                         "imapbridge: cannot reach imapbridged at %s: is it running? start it "
                         "with `imapbridged -c FILE`" % self.sock)
        p = subprocess.run([ADMIN, "-S", os.path.join(self.dir, "x.sock"), "status"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot reach imapbridged at %s" % os.path.join(self.dir, "x.sock"), p.stderr)

    def test_socket_mode_and_explicit_socket(self):
        self.start()
        st = os.stat(self.sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(st.st_uid, os.geteuid())
        p = subprocess.run([ADMIN, "-S", self.sock, "--json", "account", "list"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([a["name"] for a in json.loads(p.stdout)], ["main"])

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run a client as another user")
    def test_other_user_refused(self):
        self.start()
        nobody = pwd.getpwnam("nobody")
        # Without the 0600 mode, the peer uid check is what stops them.
        os.chmod(self.datadir, 0o755)
        os.chmod(self.sock, 0o666)
        p = subprocess.run([ADMIN, "-S", self.sock, "account", "list"], capture_output=True,
                           text=True, user=nobody.pw_uid, group=nobody.pw_gid)
        self.assertEqual(p.returncode, 1)
        self.assertIn("permission denied", p.stderr)
        self.assertIn("refused a client with uid %d" % nobody.pw_uid, self.log())

    def test_sync_and_recover_unknown_account(self):
        self.start()
        p = self.admin("sync", "ghost")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no account named 'ghost'", p.stderr)
        p = self.admin("folder", "recover", "ghost", "INBOX")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no account named 'ghost'", p.stderr)

    def test_added_account_syncs_without_restart(self):
        with Dovecot(users={"bob": "bobpw"}) as dc:
            dc.append("bob", "INBOX", make_message("added at runtime"))
            self.start()
            mail = os.path.join(self.dir, "mail")
            p = self.admin("account", "add", "bob", "--host", "127.0.0.1", "--port", str(dc.port),
                           "--tls", "none", "--user", "bob", "--password-stdin",
                           "--maildir", mail, stdin="bobpw\n")
            self.assertEqual(p.returncode, 0, p.stderr)
            p = self.admin("sync", "bob")
            self.assertEqual(p.returncode, 0, p.stderr + self.log())
            files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(mail, "INBOX"))
                     for f in fs if os.path.basename(r) in ("new", "cur")]
            self.assertEqual(len(files), 1, files)
            with open(files[0], "rb") as f:
                self.assertIn(b"Subject: added at runtime", f.read())

            p = self.admin("status", "--json")
            accts = {a["name"]: a for a in json.loads(p.stdout)["accounts"]}
            self.assertEqual(accts["bob"]["folders"],
                             [{"name": "INBOX", "state": "active", "messages": 1, "unseen": 1}])
            self.assertEqual(accts["bob"]["port"], dc.port)
            self.assertEqual(accts["bob"]["source"], "cli")
            self.assertNotIn("bobpw", p.stdout)
            self.assertNotIn("bobpw", self.log())
            p = self.admin("status", "bob")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout, r"\nbob:\nFOLDER +STATE +MESSAGES +UNSEEN +HELD BECAUSE *\n"
                                       r"INBOX +active +1 +1 +- *\n")

            # removing it never touches the server
            p = self.admin("account", "remove", "bob", "--purge")
            self.assertEqual(p.returncode, 0, p.stderr)
            imap = dc.login("bob")
            typ, data = imap.select("INBOX")
            self.assertEqual(int(data[0]), 1)
            imap.logout()

    def test_usage(self):
        for args in ([], ["frobnicate"], ["account"], ["account", "add"],
                     ["account", "add", "x", "--port", "0"], ["folder", "recover", "x"]):
            p = self.admin(*args)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn("imapbridge --help", p.stderr)
        p = self.admin("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("account add NAME", p.stdout)


if __name__ == "__main__":
    unittest.main()

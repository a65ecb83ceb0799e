"""The Maildir export end to end: a real Dovecot, imapbridged, and a Maildir
tree changed the way mail readers change it.

Checks, both with `imapbridged -o` rounds and with the daemon running:
  - the tree matches the server byte for byte, flags included;
  - flags set, messages deleted, moved between folders (renames, as mutt
    does) and created in the tree (Python's mailbox module, a file dropped
    into new/) reach the server; server changes reach the tree;
  - rm -rf of a folder or of the whole tree deletes nothing on the server,
    holds the folder (exit status 2, a message naming the folder and the
    recovery command), and `imapbridge folder recover` rebuilds it;
  - SIGKILL while the tree is written and while local changes are pushed:
    after a restart nothing is lost or duplicated anywhere;
  - the mbnames file lists the folders.
"""

import email
import imaplib
import mailbox
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Dovecot, free_port, make_message, quote
from proxy import CutProxy

DAEMON = os.path.join(BIN, "imapbridged")
ADMIN = os.path.join(BIN, "imapbridge")

FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R",
                "\\Seen": "S", "\\Deleted": "T"}


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def msgid_of(data):
    m = re.search(rb"^Message-ID:\s*(<[^>]*>)", data, re.I | re.M)
    return m.group(1).decode() if m else None


class MaildirTest(unittest.TestCase):
    def setUp(self):
        self.dc = Dovecot(users={"alice": "secret"})
        self.dc.start()
        self.dir = tempfile.mkdtemp(prefix="ib-maildir.")
        self.datadir = os.path.join(self.dir, "data")
        self.root = os.path.join(self.dir, "Mail")
        self.mbnames = os.path.join(self.dir, "mailboxes")
        self.config = os.path.join(self.dir, "imapbridge.conf")
        self.procs = []
        with open(os.path.join(self.dir, "pw"), "w") as f:
            f.write("secret\n")
        os.chmod(os.path.join(self.dir, "pw"), 0o600)
        self.write_config(autorefresh=0.05)

    def write_config(self, autorefresh, extra="", port=None, ratio=0.5):
        port = port or self.dc.port
        with open(self.config, "w") as f:
            f.write(extra + f"""datadir = "{self.datadir}";
listen = ( {{ address = "127.0.0.1"; port = {free_port()}; tls = "none"; }} );
mbnames = {{ enabled = true; filename = "{self.mbnames}"; header = "mailboxes ";
            peritem = "+%(accountname)s/%(foldername)s"; sep = " "; footer = "\\n"; }};
accounts = (
  {{
    name = "home";
    autorefresh = {autorefresh};
    idle = [ "INBOX" ];
    max_deletion_ratio = {ratio};
    remote = {{
      host = "127.0.0.1"; port = {port}; tls = "none";
      user = "alice"; password_file = "{os.path.join(self.dir, 'pw')}";
    }};
    maildir = {{ path = "{self.root}"; }};
  }}
);
""")
        os.chmod(self.config, 0o600)

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.dc.stop()
        if not os.environ.get("IMAPBRIDGE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- running imapbridged ------------------------------------------
    def run_once(self, timeout=120):
        r = subprocess.run([DAEMON, "-u", "basic", "-c", self.config, "-o"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        return r.returncode, r.stderr.decode(errors="replace")

    def sync_ok(self):
        rc, log = self.run_once()
        self.assertEqual(rc, 0, "imapbridged -o failed:\n" + log)
        return log

    def start_daemon(self):
        log = open(os.path.join(self.dir, "daemon.log"), "ab")
        p = subprocess.Popen([DAEMON, "-u", "basic", "-c", self.config],
                             stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.procs.append(p)
        sock = os.path.join(self.datadir, "control.sock")
        wait_for(lambda: os.path.exists(sock) or p.poll() is not None, what="the control socket")
        self.assertIsNone(p.poll(), self.daemon_log())
        return p

    def daemon_log(self):
        try:
            with open(os.path.join(self.dir, "daemon.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def admin(self, *args):
        return subprocess.run([ADMIN, "-c", self.config] + list(args), capture_output=True,
                              text=True, timeout=120)

    # -- the server ---------------------------------------------------
    def server(self, folder):
        """{message-id: (bytes, flag letters)} of a server folder."""
        imap = self.dc.login("alice")
        try:
            typ, _ = imap.select(quote(folder))
            if typ != "OK":
                return {}
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            out = {}
            for item in data:
                if not isinstance(item, tuple):
                    continue
                flags = imaplib.ParseFlags(item[0])
                letters = "".join(sorted(FLAG_LETTERS[f.decode()] for f in flags
                                         if f.decode() in FLAG_LETTERS))
                mid = msgid_of(item[1])
                self.assertNotIn(mid, out, "duplicate on the server: %s in %s" % (mid, folder))
                out[mid] = (item[1], letters)
            return out
        finally:
            imap.logout()

    def server_store(self, folder, mid, op, flags):
        imap = self.dc.login("alice")
        try:
            imap.select(quote(folder))
            typ, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", mid)
            uid = data[0].split()[0].decode()
            imap.uid("STORE", uid, op, flags)
            if "Deleted" in flags and op.startswith("+"):
                imap.expunge()
        finally:
            imap.logout()

    # -- the tree -----------------------------------------------------
    def folder_dir(self, folder):
        return os.path.join(self.root, *folder.split("/"))

    def tree(self, folder):
        """{message-id: (bytes, flag letters, path)} of a tree folder."""
        out = {}
        d = self.folder_dir(folder)
        for sub in ("new", "cur"):
            p = os.path.join(d, sub)
            if not os.path.isdir(p):
                continue
            for name in os.listdir(p):
                if name.startswith("."):
                    continue
                path = os.path.join(p, name)
                with open(path, "rb") as f:
                    data = f.read()
                flags = name.split(":2,", 1)[1] if ":2," in name else ""
                flags = "".join(sorted(c for c in flags if c in "DFPRST"))
                mid = msgid_of(data)
                self.assertNotIn(mid, out, "duplicate in the tree: %s in %s" % (mid, folder))
                out[mid] = (data, flags, path)
        return out

    def assert_same(self, folder, lf_files=()):
        """Server and tree hold the same messages, byte for byte. Files a
        program wrote into the tree with bare LF line ends (lf_files) reach
        the server with CRLF, as IMAP requires; the tree keeps its bytes."""
        s = self.server(folder)
        t = self.tree(folder)
        self.assertEqual(sorted(s), sorted(t), "%s: server and tree hold different messages"
                         % folder)
        for mid in s:
            tb = t[mid][0]
            if mid in lf_files:
                self.assertNotIn(b"\r\n", tb, "%s: the tree copy was changed" % mid)
                tb = tb.replace(b"\n", b"\r\n")
            self.assertEqual(s[mid][0], tb, "%s %s: bytes differ" % (folder, mid))
            self.assertEqual(s[mid][1], t[mid][1], "%s %s: flags differ" % (folder, mid))
        return s

    def populate(self):
        for i in range(5):
            self.dc.append("alice", "INBOX", make_message("inbox %d" % i, msgid="<in%d@t>" % i),
                           flags="\\Seen" if i % 2 else "")
        for i in range(6):
            self.dc.append("alice", "Lists/foo", make_message("list %d" % i,
                                                              msgid="<li%d@t>" % i),
                           flags="\\Flagged" if i == 0 else "")

    # -- tests --------------------------------------------------------
    def test_two_way(self):
        self.populate()
        self.sync_ok()
        self.assert_same("INBOX")
        self.assert_same("Lists/foo")
        with open(self.mbnames) as f:
            self.assertEqual(f.read(), "mailboxes +home/INBOX +home/Lists/foo\n")

        t = self.tree("INBOX")
        # mutt flags a message: rename in cur/ with new info.
        path = t["<in0@t>"][2]
        base = os.path.basename(path).split(":2,")[0]
        os.rename(path, os.path.join(self.folder_dir("INBOX"), "cur", base + ":2,FS"))
        # deletes one ...
        os.unlink(t["<in1@t>"][2])
        # ... saves one to another folder (a rename across folders) ...
        moved = t["<in2@t>"][2]
        os.rename(moved, os.path.join(self.folder_dir("Lists/foo"), "cur",
                                      os.path.basename(moved)))
        # ... and a program delivers two new ones.
        md = mailbox.Maildir(self.folder_dir("INBOX"), create=False)
        md.add(mailbox.MaildirMessage(make_message("via mailbox", msgid="<mb1@t>")))
        with open(os.path.join(self.folder_dir("INBOX"), "new", "1700000000.M1P1.mta"),
                  "wb") as f:
            f.write(make_message("dropped", msgid="<drop1@t>"))

        self.sync_ok()
        s = self.assert_same("INBOX", lf_files=("<mb1@t>",))
        self.assert_same("Lists/foo")
        self.assertEqual(s["<in0@t>"][1], "FS")
        self.assertNotIn("<in1@t>", s)
        self.assertNotIn("<in2@t>", s)
        self.assertIn("<mb1@t>", s)
        self.assertIn("<drop1@t>", s)
        self.assertIn("<in2@t>", self.server("Lists/foo"))
        # Dropped files now carry their identity; bytes untouched.
        for mid in ("<mb1@t>", "<drop1@t>"):
            self.assertIn(",U=", self.tree("INBOX")[mid][2])

        # Server side changes reach the tree.
        self.server_store("INBOX", "<in3@t>", "+FLAGS", "(\\Answered)")
        self.server_store("Lists/foo", "<li1@t>", "+FLAGS", "(\\Deleted)")
        self.dc.append("alice", "INBOX", make_message("late", msgid="<late@t>"))
        self.sync_ok()
        t = self.tree("INBOX")
        self.assertIn("R", t["<in3@t>"][1])
        self.assertIn("<late@t>", t)
        self.assertNotIn("<li1@t>", self.tree("Lists/foo"))
        self.assert_same("INBOX", lf_files=("<mb1@t>",))
        self.assert_same("Lists/foo")

        # A new folder made in the tree appears on the server, with its
        # message, after one sync.
        nd = self.folder_dir("Projects")
        mailbox.Maildir(nd, create=True).add(make_message("proj", msgid="<proj@t>"))
        self.sync_ok()
        self.assertIn("<proj@t>", self.server("Projects"))
        self.assert_same("Projects")

    def test_fsync_false_round_trip(self):
        # fsync = false skips every barrier; the results must be the same.
        self.write_config(autorefresh=0.05, extra="fsync = false;\n")
        self.populate()
        self.sync_ok()
        self.assert_same("INBOX")
        self.assert_same("Lists/foo")
        t = self.tree("INBOX")
        path = t["<in0@t>"][2]
        base = os.path.basename(path).split(":2,")[0]
        os.rename(path, os.path.join(self.folder_dir("INBOX"), "cur", base + ":2,FS"))
        os.unlink(t["<in1@t>"][2])
        with open(os.path.join(self.folder_dir("INBOX"), "new", "1700000000.M3P3.mta"),
                  "wb") as f:
            f.write(make_message("no fsync", msgid="<nofsync@t>"))
        self.dc.append("alice", "Lists/foo", make_message("late", msgid="<late2@t>"))
        self.sync_ok()
        s = self.assert_same("INBOX")
        self.assert_same("Lists/foo")
        self.assertEqual(s["<in0@t>"][1], "FS")
        self.assertNotIn("<in1@t>", s)
        self.assertIn("<nofsync@t>", s)
        self.assertIn("<late2@t>", self.tree("Lists/foo"))

    def test_changes_after_a_sealed_export(self):
        # The export seals each folder it wrote (only our own writes were
        # seen), so the next sync need not read them; changes a mail reader
        # makes afterwards must still all be found.
        self.populate()
        self.sync_ok()
        for folder in ("INBOX", "Lists/foo"):
            self.assertTrue(os.path.exists(os.path.join(self.folder_dir(folder),
                                                        ".imapbridge-seal")), folder)
        time.sleep(0.3)  # past the directories' settle time
        self.sync_ok()   # trusted: nothing to do
        self.assert_same("INBOX")
        self.assert_same("Lists/foo")
        t = self.tree("INBOX")
        path = t["<in4@t>"][2]
        base = os.path.basename(path).split(":2,")[0]
        os.rename(path, os.path.join(self.folder_dir("INBOX"), "cur", base + ":2,F"))
        with open(os.path.join(self.folder_dir("Lists/foo"), "new", "1700000000.M2P2.mta"),
                  "wb") as f:
            f.write(make_message("after seal", msgid="<after@t>"))
        self.sync_ok()
        s = self.assert_same("INBOX")
        self.assertEqual(s["<in4@t>"][1], "F")
        self.assertIn("<after@t>", self.server("Lists/foo"))
        self.assert_same("Lists/foo")

    def test_listing_overlaps_the_maildir_pass(self):
        # The first session lists the server's folders as soon as it is
        # logged in, while the Maildir pass still takes in the tree's changes.
        # The listing answers during the pass or after it; both must give the
        # same result. 2,400 flag changes in 40 folders keep the pass busy
        # well past the login (about 50 ms against 15 here). A plain LIST (a
        # server without LIST-STATUS) answers within a few milliseconds of
        # the login: during the pass. Held back 3 s, it answers after it.
        self.dc.stop()
        self.dc = Dovecot(users={"alice": "secret"}, capability=(
            "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UNSELECT CHILDREN NAMESPACE "
            "UIDPLUS LIST-EXTENDED ESEARCH MOVE LITERAL+ SPECIAL-USE CONDSTORE QRESYNC"))
        self.dc.start()
        self.write_config(autorefresh=0.05)
        folders = ["Box%02d" % i for i in range(40)]
        imap = self.dc.login("alice")
        try:
            for f in folders:
                imap.create(quote(f))
                for i in range(60):
                    imap.append(quote(f), "", None,
                                make_message("%s %d" % (f, i), msgid="<%s.%d@t>" % (f, i)))
        finally:
            imap.logout()
        self.sync_ok()
        # On a loaded machine the login can outlast the pass: the first
        # order gets up to three tries (each a full, checked sync).
        runs = [(0.0, "folder list answered during the Maildir pass")] * 3 + \
               [(3.0, "folder list still coming")]
        seen = set()
        for n, (hold, trace) in enumerate(runs):
            if trace in seen:
                continue
            time.sleep(1.1)
            for f in folders:  # toggle \Seen on every message, as mutt does
                for mid, (_, flags, path) in self.tree(f).items():
                    base = os.path.basename(path).split(":2,")[0]
                    new = "".join(sorted(set(flags) ^ {"S"}))
                    os.rename(path, os.path.join(self.folder_dir(f), "cur", base + ":2," + new))
            self.dc.append("alice", "Box00", make_message("late %d" % n, msgid="<late%d@t>" % n))
            with CutProxy(("127.0.0.1", self.dc.port), hold=(b" LIST ", hold)) as px:
                self.write_config(autorefresh=0.05, port=px.port)
                r = subprocess.run([DAEMON, "-u", "basic", "-d", "thread", "-c", self.config,
                                    "-o"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   timeout=120)
            log = r.stderr.decode(errors="replace")
            self.assertEqual(r.returncode, 0, log)
            if trace in log:
                seen.add(trace)
            elif hold or n == 2:
                self.assertIn(trace, log)
            for f in folders:
                self.assert_same(f)
            self.assertIn("<late%d@t>" % n, self.tree("Box00"))

    def test_broken_files_are_kept(self):
        self.populate()
        self.sync_ok()
        empty = os.path.join(self.folder_dir("INBOX"), "new", "1700000000.M9P9.x")
        junk = os.path.join(self.folder_dir("INBOX"), "cur", "1700000001.M9P9.y:2,S")
        open(empty, "wb").close()
        with open(junk, "wb") as f:
            f.write(b"\x00\x01binary")
        rc, log = self.run_once()
        self.assertIn(rc, (0, 1), log)
        self.assertTrue(os.path.exists(empty) and os.path.exists(junk))
        self.assertIn("1700000000.M9P9.x", log)
        self.assertIn("1700000001.M9P9.y", log)
        self.assertEqual(len(self.server("INBOX")), 5)

    def test_tree_path_is_a_file(self):
        self.populate()
        with open(self.root, "w") as f:
            f.write("not a tree\n")
        rc, log = self.run_once()
        self.assertEqual(rc, 1, log)
        self.assertIn("%s is not a directory; point maildir.path to a directory" % self.root, log)
        self.assertIn("the Maildir tree %s is left out of this run" % self.root, log)
        with open(self.root) as f:
            self.assertEqual(f.read(), "not a tree\n")  # left as it was
        self.assertEqual(len(self.server("INBOX")), 5)  # nothing deleted there
        os.unlink(self.root)
        self.sync_ok()
        self.assert_same("INBOX")
        self.assert_same("Lists/foo")

    def test_rm_rf_folder_and_recover(self):
        self.populate()
        self.sync_ok()
        before = self.server("Lists/foo")
        shutil.rmtree(self.folder_dir("Lists/foo"))
        rc, log = self.run_once()
        self.assertEqual(rc, 2, log)
        self.assertIn("Lists/foo", log)
        self.assertIn("imapbridge folder recover home Lists/foo", log)
        self.assertEqual(sorted(self.server("Lists/foo")), sorted(before))
        self.assert_same("INBOX")
        # Still held on the next run; still nothing deleted.
        rc, log = self.run_once()
        self.assertEqual(rc, 2, log)
        self.assertEqual(sorted(self.server("Lists/foo")), sorted(before))

        self.start_daemon()
        # The daemon starts with a sync; recovery waits for it to end.
        deadline = time.time() + 30
        while True:
            r = self.admin("folder", "recover", "home", "Lists/foo")
            if r.returncode == 0 or "try again" not in r.stderr or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.returncode, 0, r.stderr + self.daemon_log())
        r = self.admin("sync", "home")
        self.assertEqual(r.returncode, 0, r.stderr + self.daemon_log())
        self.assert_same("Lists/foo")
        self.assertEqual(sorted(self.server("Lists/foo")), sorted(before))

    def test_most_files_removed(self):
        self.populate()
        self.sync_ok()
        before = self.server("Lists/foo")
        t = self.tree("Lists/foo")
        for mid in sorted(t)[:5]:
            os.unlink(t[mid][2])
        rc, log = self.run_once()
        self.assertEqual(rc, 2, log)
        self.assertIn("imapbridge folder recover home Lists/foo", log)
        self.assertEqual(sorted(self.server("Lists/foo")), sorted(before))
        self.start_daemon()
        deadline = time.time() + 30
        while True:
            r = self.admin("folder", "recover", "home", "Lists/foo")
            if r.returncode == 0 or "try again" not in r.stderr or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.returncode, 0, r.stderr + self.daemon_log())
        # Rebuilt from the store: the removed files are back, nothing was
        # deleted on the server.
        self.assertEqual(sorted(self.tree("Lists/foo")), sorted(before))
        r = self.admin("sync", "home")
        self.assertEqual(r.returncode, 0, r.stderr + self.daemon_log())
        self.assert_same("Lists/foo")

    def test_deletion_ratio_from_config(self):
        # The account's max_deletion_ratio applies to the tree as well: at
        # 0.9, deleting 5 of a folder's 6 files is taken as the user's will.
        self.write_config(autorefresh=0.05, ratio=0.9)
        self.populate()
        self.sync_ok()
        t = self.tree("Lists/foo")
        gone = sorted(t)[:5]
        for mid in gone:
            os.unlink(t[mid][2])
        rc, log = self.run_once()
        self.assertEqual(rc, 0, log)
        self.assertNotIn("recover", log)
        self.assertEqual(sorted(self.server("Lists/foo")), sorted(t)[5:])
        self.assert_same("Lists/foo")

    def test_rm_rf_tree(self):
        self.populate()
        self.sync_ok()
        shutil.rmtree(self.root)
        rc, log = self.run_once()
        self.assertEqual(rc, 2, log)
        self.assertEqual(len(self.server("INBOX")), 5)
        self.assertEqual(len(self.server("Lists/foo")), 6)
        self.assertIn("folder recover", log)

    def test_daemon_picks_up_changes(self):
        # No periodic refresh: only the tree's watcher (and IDLE on INBOX for
        # the server's changes) can start these syncs.
        self.write_config(autorefresh=0)
        self.populate()
        self.start_daemon()
        wait_for(lambda: len(self.tree("INBOX")) == 5 and len(self.tree("Lists/foo")) == 6,
                 what="the first export")
        t = self.tree("INBOX")
        # Flag one (mutt renames), delete one, move one to another folder,
        # and deliver a new one through Python's mailbox module.
        path = t["<in4@t>"][2]
        base = os.path.basename(path).split(":2,")[0]
        os.rename(path, os.path.join(self.folder_dir("INBOX"), "cur", base + ":2,FS"))
        os.unlink(t["<in3@t>"][2])
        os.rename(t["<in2@t>"][2], os.path.join(self.folder_dir("Lists/foo"), "cur",
                                                os.path.basename(t["<in2@t>"][2])))
        mailbox.Maildir(self.folder_dir("INBOX"), create=False).add(
            make_message("live", msgid="<live@t>"))

        def arrived():
            s = self.server("INBOX")
            return (s.get("<in4@t>", (b"", ""))[1] == "FS" and "<live@t>" in s
                    and "<in3@t>" not in s and "<in2@t>" not in s
                    and "<in2@t>" in self.server("Lists/foo"))
        wait_for(arrived, timeout=15, what="tree changes on the server\n" + self.daemon_log())

        # The server's changes reach the tree (IDLE on INBOX).
        self.server_store("INBOX", "<in0@t>", "+FLAGS", "(\\Flagged)")
        self.dc.append("alice", "INBOX", make_message("from server", msgid="<srv@t>"))
        wait_for(lambda: "<srv@t>" in self.tree("INBOX")
                 and "F" in self.tree("INBOX")["<in0@t>"][1],
                 timeout=15, what="server changes in the tree\n" + self.daemon_log())
        self.assert_same("INBOX")
        self.assert_same("Lists/foo")

    def test_crash_while_writing_tree(self):
        for i in range(300):
            self.dc.append("alice", "INBOX", make_message("bulk %d" % i, msgid="<b%d@t>" % i,
                                                          body="x" * 2000 + "\r\n"))
        rnd = random.Random(7)
        for _ in range(4):
            p = subprocess.Popen([DAEMON, "-u", "quiet", "-c", self.config, "-o"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(p)
            time.sleep(rnd.uniform(0.05, 0.6))
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.sync_ok()
        self.assertEqual(len(self.assert_same("INBOX")), 300)
        for d in ("tmp",):
            leftovers = os.listdir(os.path.join(self.folder_dir("INBOX"), d))
            self.assertEqual(leftovers, [], "files left in tmp/")

    def test_crash_while_pushing(self):
        self.populate()
        self.sync_ok()
        md = mailbox.Maildir(self.folder_dir("INBOX"), create=False)
        for i in range(80):
            md.add(make_message("local %d" % i, msgid="<loc%d@t>" % i))
        rnd = random.Random(11)
        for _ in range(4):
            p = subprocess.Popen([DAEMON, "-u", "quiet", "-c", self.config, "-o"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(p)
            time.sleep(rnd.uniform(0.05, 0.5))
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.sync_ok()
        s = self.assert_same("INBOX")
        self.assertEqual(len(s), 85)


if __name__ == "__main__":
    unittest.main()

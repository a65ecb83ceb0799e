"""imapbridged's lifecycle: start, the data directory lock, SIGHUP reload,
clean stop, and the messages people see when something is in the way."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Dovecot

DAEMON = os.path.join(BIN, "imapbridged")
ADMIN = os.path.join(BIN, "imapbridge")


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Daemon:
    """One imapbridged process with its stderr in a file."""

    def __init__(self, config, logfile, *args):
        self.log_path = logfile
        self.log_file = open(logfile, "ab")
        self.proc = subprocess.Popen([DAEMON, "-u", "basic", "-c", config] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=self.log_file)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log_file.close()
        return rc


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ib-daemon.")
        self.datadir = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.datadir, "control.sock")
        self.config = os.path.join(self.dir, "imapbridge.conf")
        self.daemons = []
        self.write_config()

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_config(self, accounts="", extra="", datadir=None):
        with open(self.config, "w") as f:
            f.write('datadir = "%s";\n%s\naccounts = (%s);\n'
                    % (datadir or self.datadir, extra, accounts))
        os.chmod(self.config, 0o600)

    def start(self, *args, wait=True):
        d = Daemon(self.config, os.path.join(self.dir, "daemon%d.log" % len(self.daemons)), *args)
        self.daemons.append(d)
        if wait:
            wait_for(lambda: os.path.exists(self.sock) or d.proc.poll() is not None,
                     what="the control socket")
            self.assertIsNone(d.proc.poll(), d.log())
        return d

    def admin(self, *args, stdin=None):
        return subprocess.run([ADMIN, "-c", self.config] + list(args), input=stdin,
                              capture_output=True, text=True, timeout=30)

    def test_start_creates_datadir_lock_and_socket(self):
        d = self.start()
        self.assertEqual(os.stat(self.datadir).st_mode & 0o777, 0o700)
        with open(os.path.join(self.datadir, "imapbridged.lock")) as f:
            self.assertEqual(int(f.read().strip()), d.proc.pid)
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o600)
        self.assertEqual(d.stop(), 0)

    def test_second_daemon_refused_naming_pid(self):
        first = self.start()
        p = subprocess.run([DAEMON, "-c", self.config], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("another imapbridged (pid %d) is already using %s; stop it or set another "
                      "datadir" % (first.proc.pid, self.datadir), p.stderr)
        # the first one is unharmed
        self.assertIsNone(first.proc.poll())
        self.assertEqual(self.admin("account", "list").returncode, 0)

    def test_sigterm_clean_exit_removes_socket_and_releases_lock(self):
        d = self.start()
        self.assertEqual(d.stop(signal.SIGTERM), 0)
        self.assertFalse(os.path.exists(self.sock))
        # the lock is free again: a new daemon starts
        d2 = self.start()
        self.assertEqual(d2.stop(signal.SIGINT), 0)
        self.assertFalse(os.path.exists(self.sock))

    def test_sighup_with_broken_config_keeps_running(self):
        d = self.start()
        self.write_config(accounts='{ name = "x"; remote = { hots = "h"; user = "u"; }; }')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "previous one" in d.log(), what="the reload to fail")
        log = d.log()
        self.assertIn("option accounts.[0].remote.hots: unknown option (did you mean 'host'?)", log)
        self.assertIsNone(d.proc.poll())
        p = self.admin("account", "list", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "[]")
        # a good config is picked up by the next SIGHUP
        self.write_config(accounts='{ name = "x"; remote = { host = "h"; user = "u"; }; }')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded: 1 account" in d.log(), what="the reload")
        p = self.admin("account", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("x ", p.stdout)
        self.assertEqual(d.stop(), 0)

    def test_sighup_cannot_move_datadir(self):
        d = self.start()
        self.write_config(datadir=os.path.join(self.dir, "elsewhere"))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "previous one" in d.log(), what="the reload to fail")
        self.assertIn("a reload cannot move the data directory, restart imapbridged instead",
                      d.log())
        self.assertTrue(os.path.exists(self.sock))
        self.assertEqual(d.stop(), 0)

    def test_sighup_fsync_change_waits_for_restart(self):
        d = self.start()
        self.write_config(extra="fsync = false;")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in d.log(), what="the reload")
        self.assertIn("reload: fsync changed to false; it takes effect when imapbridged restarts",
                      d.log())
        self.assertEqual(d.stop(), 0)

    def test_account_pointing_at_dovecot(self):
        with Dovecot(users={"alice": "secret"}) as dc:
            self.write_config(accounts='{ name = "alice"; remote = { host = "127.0.0.1"; '
                              'port = %d; tls = "none"; user = "alice"; password = "secret"; }; }'
                              % dc.port)
            d = self.start()
            p = self.admin("status", "--json")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn('"name":"alice"', p.stdout)
            self.assertIn('"port":%d' % dc.port, p.stdout)
            self.assertNotIn("secret", p.stdout)
            self.assertNotIn("secret", d.log())
            self.assertEqual(d.stop(), 0)

    def test_unusable_datadir_says_what_to_do(self):
        blocker = os.path.join(self.dir, "file")
        with open(blocker, "w") as f:
            f.write("not a directory\n")
        bad = os.path.join(blocker, "data")
        self.write_config(datadir=bad)
        p = subprocess.run([DAEMON, "-c", self.config], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot use data directory %s" % bad, p.stderr)
        self.assertIn("set another datadir in %s" % self.config, p.stderr)

    @unittest.skipIf(os.geteuid() == 0, "root can write any directory")
    def test_unwritable_datadir(self):
        os.makedirs(self.datadir)
        os.chmod(self.datadir, 0o500)
        p = subprocess.run([DAEMON, "-c", self.config], capture_output=True, text=True, timeout=30)
        os.chmod(self.datadir, 0o700)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot use data directory %s" % self.datadir, p.stderr)

    def test_password_file_readable_by_others_warns(self):
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write("secret\n")
        os.chmod(pw, 0o644)
        self.write_config(accounts='{ name = "a"; remote = { host = "h"; user = "u"; '
                          'password_file = "%s"; }; }' % pw)
        d = self.start()
        self.assertIn("chmod 600 %s" % pw, d.log())
        self.assertNotIn("secret", d.log())
        self.assertEqual(d.stop(), 0)

    def test_missing_config(self):
        path = os.path.join(self.dir, "absent.conf")
        p = subprocess.run([DAEMON, "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 78)
        self.assertIn(path, p.stderr)
        self.assertIn("-c FILE", p.stderr)

    def test_invalid_config_refuses_to_start(self):
        self.write_config(extra="maxsyncaccounts = 0;")
        p = subprocess.run([DAEMON, "-c", self.config], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 78)
        self.assertIn("option maxsyncaccounts: 0 is out of range", p.stderr)
        self.assertFalse(os.path.exists(self.datadir))

    def test_config_from_environment(self):
        env = dict(os.environ, IMAPBRIDGE_CONFIG=self.config)
        p = subprocess.run([DAEMON, "--check"], capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("%s: OK (0 accounts)" % self.config, p.stdout)

    def test_bad_usage(self):
        for args in (["-x"], ["-u", "fancy"], ["-d", "imap,bogus"], ["extra"], ["-c"],
                     ["--check", "-o"]):
            p = subprocess.run([DAEMON] + args, capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 64, args)
            lines = p.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn("imapbridged --help", lines[0])

    def test_unknown_account_with_a(self):
        p = subprocess.run([DAEMON, "-c", self.config, "-a", "nobody"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 64)
        self.assertIn("no account named 'nobody'", p.stderr)

    def test_help_and_version(self):
        p = subprocess.run([DAEMON, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        for flag in ("-c FILE", "-o", "-a A,B", "-1", "-d TYPES", "-u UI", "-s", "--check"):
            self.assertIn(flag, p.stdout)
        p = subprocess.run([DAEMON, "-V"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^imapbridged \d+\.\d+")


if __name__ == "__main__":
    unittest.main()

"""The daemon's scheduling: a first sync at start, new mail on an IDLE folder
arriving within seconds, SIGUSR1 syncing now, and a change written to the
store while the daemon runs reaching the server promptly."""

import os
import signal
import subprocess
import time
import unittest

from harness import Dovecot, make_message
from synclib import DAEMON, SyncEnv, server_msgs, sha


def wait_for(pred, timeout=15.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


class SyncDaemonTest(unittest.TestCase):
    def setUp(self):
        self.dc = Dovecot()
        self.dc.start()
        self.env = SyncEnv(self.dc, extra_account='idle = [ "INBOX" ];')
        self.log_path = os.path.join(self.env.dir, "daemon.log")
        self.proc = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        self.env.cleanup()
        self.dc.stop()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DAEMON, "-u", "basic", "-c", self.env.config],
                                     stdout=subprocess.DEVNULL, stderr=self.logf)

    def in_store(self, folder, data):
        try:
            return sha(data) in self.env.store_uids(folder)
        except subprocess.CalledProcessError:
            return False

    def test_idle_sigusr1_and_push(self):
        first = make_message(subject="before start")
        self.dc.append("alice", "INBOX", first)
        self.dc.append("alice", "Other", make_message(subject="other"))
        self.start()
        wait_for(lambda: self.in_store("INBOX", first), what="the first sync")
        time.sleep(1.0)  # let IDLE settle

        # New mail in an IDLE folder arrives without any trigger.
        pushed = make_message(subject="pushed by IDLE")
        self.dc.append("alice", "INBOX", pushed)
        wait_for(lambda: self.in_store("INBOX", pushed), timeout=10,
                 what="IDLE to bring the new message\n" + self.log())

        # Another folder is not watched: SIGUSR1 syncs now.
        other = make_message(subject="other, after SIGUSR1")
        self.dc.append("alice", "Other", other)
        self.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: self.in_store("Other", other), timeout=10,
                 what="SIGUSR1 to sync\n" + self.log())

        # A change made in the store reaches the server promptly.
        local = make_message(subject="written locally while running")
        for attempt in range(5):
            try:
                self.env.store_add("Other", local)
                break
            except RuntimeError:
                # The store was busy with the daemon's own write (map growth).
                time.sleep(0.2)
        else:
            self.fail("cannot write to the store while the daemon runs")
        wait_for(lambda: sha(local) in {h for h, _, _ in server_msgs(self.dc, folder="Other")},
                 timeout=15, what="the local change to reach the server\n" + self.log())
        self.assertIsNone(self.proc.poll(), self.log())

        # A clean stop.
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(10), 0, self.log())

    def test_reload_during_sync(self):
        # SIGHUP while the first sync runs: sessions are dropped and the sync
        # restarts with the new config; nothing lost, nothing twice.
        imap = self.dc.login("alice")
        for f in range(4):
            imap.create("F%d" % f)
            for i in range(120):
                imap.append("F%d" % f, "", None,
                            make_message(subject="m%d" % i, body="x" * 20000))
        imap.logout()
        self.start()
        for delay in (0.2, 0.15, 0.3, 0.1):
            time.sleep(delay)
            self.proc.send_signal(signal.SIGHUP)
        self.proc.send_signal(signal.SIGUSR1)

        def synced():
            try:
                return self.env.store_msgs() == server_msgs(self.dc)
            except subprocess.CalledProcessError:
                return False
        wait_for(synced, timeout=30, what="the sync after reloads\n" + self.log())
        self.assertIsNone(self.proc.poll(), self.log())
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(10), 0, self.log())


if __name__ == "__main__":
    unittest.main()

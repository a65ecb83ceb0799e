"""Crash safety: SIGKILL `imapbridged -o` again and again while it does an
initial sync, uploads, deletions and flag changes, restarting it each time;
then let one run finish and compare the store with the server message by
message (SHA-256 of the bytes, flags, keywords): nothing lost, nothing
duplicated, on either side."""

import collections
import os
import signal
import subprocess
import time
import unittest

from harness import Dovecot, make_message, quote
from synclib import DAEMON, SyncEnv, server_msgs, server_uids, sha


class CrashTest(unittest.TestCase):
    def setUp(self):
        self.dc = Dovecot()
        self.dc.start()
        self.env = SyncEnv(self.dc)
        self.kills = 0

    def tearDown(self):
        self.env.cleanup()
        self.dc.stop()

    def kill_loop(self, what, first=0.005, growth=1.15, max_runs=80):
        """Start the daemon and SIGKILL it after a growing delay until one run
        ends by itself; returns the number of runs that were killed. The
        delays start inside the daemon's start-up and grow slowly, so the
        kills land at many different points of the work."""
        delay = first
        killed = 0
        for _ in range(max_runs):
            p = subprocess.Popen([DAEMON, "-u", "quiet", "-c", self.env.config, "-o"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                p.wait(delay)
                err = p.stderr.read().decode(errors="replace")
                p.stderr.close()
                if p.returncode == 1 and "is already using" in err:
                    # The store's start-up probe (a forked child) of the run
                    # just killed still holds the data directory lock.
                    time.sleep(0.2)
                    continue
                self.assertEqual(p.returncode, 0, "%s: %s" % (what, err))
                return killed
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                p.stderr.close()
                killed += 1
                self.kills += 1
            delay *= growth
        self.fail("%s: the daemon never finished" % what)

    def assertSameNoDuplicates(self):
        s = self.env.store_msgs()
        r = server_msgs(self.dc)
        self.assertEqual(sorted(s), sorted(r))
        for folder in s:
            sc = collections.Counter(h for h, _, _ in s[folder])
            rc = collections.Counter(h for h, _, _ in r[folder])
            if sc != rc:
                only_s = sorted((sc - rc).items())
                only_r = sorted((rc - sc).items())
                self.fail("%s differs: store only %s, server only %s\n%s" % (
                    folder, only_s, only_r,
                    "\n".join(str(r) for r in self.env.dump()
                              if r["type"] != "msg" or r["sha256"] in dict(only_s + only_r))))
            self.assertTrue(all(n == 1 for n in sc.values()),
                            "duplicates in %s: %s\n%s" % (
                                folder, [h for h, n in sc.items() if n > 1],
                                "\n".join(str(r) for r in self.env.dump()
                                          if r.get("folder") == folder or r["type"] == "pending")))
        self.assertEqual(s, r)
        self.assertEqual(self.env.pending(), [])

    def test_kill_anywhere(self):
        body = "".join("line %d of a message body to make it a few kilobytes\n" % i
                       for i in range(80))
        imap = self.dc.login("alice")
        for folder in ("INBOX", "Work", "Lists/a"):
            if folder != "INBOX":
                imap.create(quote(folder))
            for i in range(250):
                m = make_message(subject="%s %d" % (folder, i), body=body)
                imap.append(quote(folder), "(\\Seen)" if i % 3 == 0 else "", None, m)
        imap.logout()

        # Initial sync.
        self.kill_loop("initial sync")
        self.assertSameNoDuplicates()

        # Uploads: new messages in the store.
        uploaded = []
        for i in range(120):
            m = make_message(subject="local %d" % i, body=body)
            uploaded.append(m)
            self.env.store_add("Work" if i % 2 else "INBOX", m, "S" if i % 4 == 0 else "-")
        self.kill_loop("uploads")
        self.assertSameNoDuplicates()
        srv = {h for f in server_msgs(self.dc).values() for h, _, _ in f}
        for m in uploaded:
            self.assertIn(sha(m), srv)

        # Deletions and flag changes on both sides.
        st = self.env.store_uids("INBOX")
        for n, (h, uid) in enumerate(sorted(st.items())[:40]):
            if n % 2:
                self.env.tool("expunge", "home", "INBOX", uid)
            else:
                self.env.tool("flags", "home", "INBOX", uid, "F", "crash")
        su = server_uids(self.dc, "Work")
        imap = self.dc.login("alice")
        imap.select(quote("Work"))
        victims = sorted(su.values())[:30]
        imap.uid("STORE", ",".join(map(str, victims)), "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.uid("STORE", ",".join(map(str, sorted(su.values())[30:60])), "+FLAGS", "(\\Answered)")
        imap.logout()
        self.kill_loop("deletions and flags")
        self.assertSameNoDuplicates()

        self.assertGreaterEqual(self.kills, 20, "too few kill points")


if __name__ == "__main__":
    unittest.main()

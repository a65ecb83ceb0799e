"""Memory is bounded by configuration, not by message or mailbox size.

Runs the real daemon (`imapbridged -o`) against a private Dovecot and samples
its anonymous resident memory (RssAnon in /proc/<pid>/status) every 20 ms.
File-backed pages (the LMDB map, written through MDB_WRITEMAP) do not count:
the kernel can drop them. Every scenario also checks the bytes: a run that is
small because it did nothing proves nothing.

- A 20 MB and a 50 MB message: synced byte for byte; peak anonymous memory
  stays under a fixed bound and does not grow with the message.
- 2,000 versus 20,000 small messages in one folder (written straight into
  Dovecot's Maildir before it starts): peak anonymous memory must not grow
  anywhere near tenfold.

Measured peaks are printed on stderr ("memory: ...").
"""

import hashlib
import os
import subprocess
import sys
import threading
import time
import unittest

from harness import Dovecot, make_message
from synclib import BUILD, DAEMON, SyncEnv, server_msgs, sha

MB = 1024 * 1024
KB = 1024
# Bounds in KiB of RssAnon. The daemon idles at about 1 MB; a message's bytes
# must never be in the heap whole, so one fixed bound serves every size.
LARGE_BOUND = 16 * KB
LARGE_GROWTH = 4 * KB          # 20 MB -> 50 MB message
MANY_SLACK = 4 * KB            # 20,000 msgs <= 2 x (2,000 msgs) + this


def run_sampled(env, *args, timeout=120):
    """imapbridged -o with RssAnon sampled every 20 ms.
    Returns (exit status, stderr text, peak KiB, number of samples)."""
    p = subprocess.Popen([DAEMON, "-u", "basic", "-c", env.config, "-o"] + list(args),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = {"peak": 0, "samples": 0}

    def sample():
        path = "/proc/%d/status" % p.pid
        while p.poll() is None:
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            state["peak"] = max(state["peak"], int(line.split()[1]))
                            state["samples"] += 1
                            break
            except OSError:
                pass
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        err = p.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        err = p.communicate()[1]
    t.join()
    return p.returncode, err.decode(errors="replace"), state["peak"], state["samples"]


def check_store(test, env):
    """store_check() through tests/tools/ib_store_check: no problem at all."""
    p = subprocess.run([os.path.join(BUILD, "tests", "ib_store_check"), env.datadir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    test.assertEqual(p.returncode, 0, "store check failed:\n" + p.stdout.decode(errors="replace"))


def note(text):
    sys.stderr.write("memory: %s\n" % text)
    sys.stderr.flush()


def big_message(size, tag):
    """A well-formed message of about size bytes with 78-byte CRLF lines."""
    line = ("%s " % tag + "0123456789abcdefghijklmnopqrstuvwxyz" * 2)[:76] + "\n"
    return make_message(subject="big " + tag, body=line * (size // 78),
                        msgid="<big-%s@imapbridge.test>" % tag)


def maildir_files(root, folder="INBOX"):
    """{sha256: path} of the messages in a tree folder (cur and new)."""
    out = {}
    d = os.path.join(root, *folder.split("/"))
    for sub in ("cur", "new"):
        p = os.path.join(d, sub)
        if not os.path.isdir(p):
            continue
        for name in os.listdir(p):
            h = hashlib.sha256()
            with open(os.path.join(p, name), "rb") as f:
                for chunk in iter(lambda: f.read(MB), b""):
                    h.update(chunk)
            out[h.hexdigest()] = os.path.join(p, name)
    return out


class LargeMessages(unittest.TestCase):
    """One Dovecot, one user per scenario so that runs do not see each other."""

    @classmethod
    def setUpClass(cls):
        cls.dc = Dovecot(users={"m20": "pw20", "m50": "pw50", "md50": "pwmd", "up50": "pwup",
                                 "up50b": "pwup"})
        cls.dc.start()
        cls.msgs = {}
        for user, size in (("m20", 20 * MB), ("m50", 50 * MB), ("md50", 50 * MB)):
            m = big_message(size, user)
            cls.msgs[user] = m
            cls.dc.append(user, "INBOX", m)

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def sync_store_only(self, user):
        env = SyncEnv(self.dc, user=user)
        self.addCleanup(env.cleanup)
        rc, log, peak, n = run_sampled(env)
        self.assertEqual(rc, 0, log)
        self.assertGreater(n, 0, "no memory sample taken")
        self.assertEqual(list(env.store_uids("INBOX")), [sha(self.msgs[user])],
                         "the store does not hold the message byte for byte")
        check_store(self, env)
        return peak

    def test_large_message_into_store(self):
        p20 = self.sync_store_only("m20")
        p50 = self.sync_store_only("m50")
        note("server -> store: 20 MB message peak RssAnon %d KiB, 50 MB message %d KiB"
             % (p20, p50))
        self.assertLess(p50, LARGE_BOUND, "a 50 MB message cost %d KiB of heap" % p50)
        self.assertLess(p50 - p20, LARGE_GROWTH,
                        "heap grew with the message: %d KiB -> %d KiB" % (p20, p50))

    def sync_into_maildir(self):
        env = SyncEnv(self.dc, user="md50", maildir=True)
        self.addCleanup(env.cleanup)
        rc, log, peak, _ = run_sampled(env)
        self.assertEqual(rc, 0, log)
        want = sha(self.msgs["md50"])
        self.assertEqual(list(env.store_uids("INBOX")), [want])
        self.assertEqual(list(maildir_files(env.maildir)), [want],
                         "the Maildir does not hold the message byte for byte")
        note("server -> store -> Maildir: 50 MB message peak RssAnon %d KiB" % peak)
        return peak

    def test_large_message_into_maildir_bytes(self):
        self.sync_into_maildir()

    # A big message goes to the Maildir from a read-only mapping of a
    # temporary file (engine_pending.c batch_fill), not from a heap copy.
    def test_large_message_into_maildir_memory(self):
        peak = self.sync_into_maildir()
        self.assertLess(peak, LARGE_BOUND, "a 50 MB message cost %d KiB of heap" % peak)

    def upload_from_maildir(self, user):
        env = SyncEnv(self.dc, user=user, maildir=True)
        self.addCleanup(env.cleanup)
        rc, log, _, _ = run_sampled(env)  # creates the tree
        self.assertEqual(rc, 0, log)
        m = big_message(50 * MB, "upload-" + user)
        new = os.path.join(env.maildir, "INBOX", "new")
        self.assertTrue(os.path.isdir(new), "no INBOX/new in the tree after the first sync")
        tmp = os.path.join(env.maildir, "INBOX", "tmp", "1767225600.M1P1.big")
        with open(tmp, "wb") as f:
            f.write(m)
        os.rename(tmp, os.path.join(new, "1767225600.M1P1.big"))
        rc, log, peak, n = run_sampled(env)
        self.assertEqual(rc, 0, log)
        self.assertGreater(n, 0)
        self.assertIn(sha(m), [h for h, _, _ in server_msgs(self.dc, user, "INBOX")],
                      "the 50 MB message did not reach the server byte for byte")
        note("Maildir -> store -> server: 50 MB message peak RssAnon %d KiB" % peak)
        return peak

    def test_upload_from_maildir_bytes(self):
        self.upload_from_maildir("up50")

    # Uploads of big messages stream from a temporary file (append_fd), so the
    # heap does not hold the message.
    def test_upload_from_maildir_memory(self):
        peak = self.upload_from_maildir("up50b")
        self.assertLess(peak, LARGE_BOUND, "a 50 MB upload cost %d KiB of heap" % peak)


def write_maildir(dc, user, n):
    """n small messages straight into the user's Dovecot Maildir (before start)."""
    root = os.path.join(dc.dir, "home", user, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    hashes = []
    for i in range(n):
        m = make_message(subject="small %d" % i, body="message %d of %s\n%s\n" % (i, user, "x" * 200),
                         msgid="<%s-%d@imapbridge.test>" % (user, i))
        hashes.append(sha(m))
        name = "%d.M%dP1.gen,S=%d:2,%s" % (1767225600 + i, i, len(m), "S" if i % 3 == 0 else "")
        with open(os.path.join(root, "cur", name), "wb") as f:
            f.write(m)
    return sorted(hashes)


class ManyMessages(unittest.TestCase):
    SMALL, LARGE = 2000, 20000

    @classmethod
    def setUpClass(cls):
        cls.dc = Dovecot(users={"small": "pw1", "large": "pw2"})
        cls.hashes = {"small": write_maildir(cls.dc, "small", cls.SMALL),
                      "large": write_maildir(cls.dc, "large", cls.LARGE)}
        cls.dc.start()

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def sync(self, user, maildir):
        env = SyncEnv(self.dc, user=user, maildir=maildir)
        self.addCleanup(env.cleanup)
        rc, log, peak, n = run_sampled(env, timeout=110)
        self.assertEqual(rc, 0, log)
        self.assertGreater(n, 0)
        self.assertEqual(sorted(env.store_uids("INBOX")), self.hashes[user],
                         "the store does not hold every message exactly once")
        check_store(self, env)
        if maildir:
            self.assertEqual(sorted(maildir_files(env.maildir)), self.hashes[user],
                             "the Maildir does not hold every message exactly once")
        return peak

    def compare(self, maildir):
        small = self.sync("small", maildir)
        large = self.sync("large", maildir)
        note("%s: %d messages peak RssAnon %d KiB, %d messages %d KiB (x%.1f)"
             % ("server -> store -> Maildir" if maildir else "server -> store",
                self.SMALL, small, self.LARGE, large, large / max(small, 1)))
        self.assertLess(large, 2 * small + MANY_SLACK,
                        "heap grew with the folder: %d KiB for %d messages, %d KiB for %d"
                        % (small, self.SMALL, large, self.LARGE))

    def test_many_messages_into_store(self):
        self.compare(maildir=False)

    # Upload bookkeeping is kept per batch, not per message of the folder.
    def test_many_messages_into_maildir(self):
        self.compare(maildir=True)


if __name__ == "__main__":
    unittest.main()

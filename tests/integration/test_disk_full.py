"""A full disk in the middle of a sync: the Maildir tree's file system, or
the store's, runs out of space (a small tmpfs mounted for the test); and a
full mailbox on the server (Dovecot's quota refuses an upload).

Checks, with `imapbridged -o` against a real Dovecot:
  - the run ends with exit status 1 and a log line naming what failed and why
    ("No space left on device", "no space left for the store");
  - nothing is deleted on the server, and no message in the tree or the store
    is partial, duplicated or unknown to the server;
  - the store uses the space there is, to the end, before it gives up;
  - once there is room again (the tmpfs is made bigger), the next run
    finishes the job: store and tree hold exactly the server's messages;
  - a big message waits for its commit in a file beside the store, not in
    /tmp (often a small tmpfs): a full /tmp does not stop the sync.

The disk tests need to mount a tmpfs (root, outside an unprivileged
container); they are skipped, saying why, where that is not possible. For the
quota: the run ends with exit status 1, the log gives the server's words and
the message's Message-ID, the message stays in the store and goes up once
there is room, and nothing is lost or sent twice.
"""

import os
import subprocess
import tempfile
import unittest

from harness import Dovecot, make_message
from synclib import DAEMON, SyncEnv, server_msgs, server_uids, sha

FOLDERS = ("INBOX", "Lists/a", "Lists/b")
PER_FOLDER = 25


def mount_tmpfs(path, size):
    """Mount a tmpfs of size (e.g. "1m") on path; None or the reason it failed."""
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return None if p.returncode == 0 else (p.stderr.decode(errors="replace").strip() or
                                           "mount exited with %d" % p.returncode)


def can_mount():
    d = tempfile.mkdtemp(prefix="ib-mnt.")
    try:
        why = mount_tmpfs(d, "64k")
        if why is None:
            subprocess.run(["umount", d], check=True)
        return why
    except OSError as e:
        return str(e)
    finally:
        os.rmdir(d)


class DiskFullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = can_mount()
        if why:
            raise unittest.SkipTest("cannot mount a tmpfs here: %s" % why)

    def setUp(self):
        self.dc = Dovecot(users={"alice": "secret"})
        self.dc.start()
        self.env = None
        self.mounted = None

    def tearDown(self):
        if self.mounted:
            subprocess.run(["umount", self.mounted])
        if self.env:
            self.env.cleanup()
        self.dc.stop()

    def populate(self, lines):
        """PER_FOLDER messages in each folder, of lines 71-byte lines each."""
        for f in FOLDERS:
            for i in range(PER_FOLDER):
                self.dc.append("alice", f, make_message("%s %d" % (f, i),
                                                        body=("y" * 70 + "\n") * lines),
                               flags="\\Seen" if i % 3 == 0 else "")
        return server_msgs(self.dc)

    def env_on_tmpfs(self, which, size):
        self.env = SyncEnv(self.dc, maildir=True)
        path = self.env.maildir if which == "maildir" else self.env.datadir
        os.makedirs(path)
        why = mount_tmpfs(path, size)
        self.assertIsNone(why)
        self.mounted = path
        return path

    def grow(self, size):
        subprocess.run(["mount", "-o", "remount,size=%s" % size, self.mounted], check=True)

    def tree(self):
        """{folder: sorted list of SHA-256} of the messages in the tree (cur/, new/)."""
        out = {}
        for f in FOLDERS:
            d = os.path.join(self.env.maildir, *f.split("/"))
            shas = []
            for sub in ("cur", "new"):
                p = os.path.join(d, sub)
                for name in (os.listdir(p) if os.path.isdir(p) else []):
                    with open(os.path.join(p, name), "rb") as fh:
                        shas.append(sha(fh.read()))
            out[f] = sorted(shas)
        return out

    def assert_part_of(self, part, whole, what):
        """Every folder of part holds only messages of whole's folder, each at most once."""
        for f, shas in part.items():
            self.assertEqual(len(shas), len(set(shas)), "%s: %s holds duplicates" % (what, f))
            self.assertLessEqual(set(shas), set(whole.get(f, [])),
                                 "%s: %s holds messages the server does not" % (what, f))

    def server_shas(self, msgs):
        return {f: sorted(m[0] for m in v) for f, v in msgs.items()}

    def store_shas(self):
        return {f: sorted(m[0] for m in v) for f, v in self.env.store_msgs().items()}

    # -- tests --------------------------------------------------------
    def test_maildir_tree_fills_up(self):
        before = self.populate(900)  # 25 x 3 messages of 64 KB
        self.env_on_tmpfs("maildir", "1m")
        rc, log = self.env.sync()
        self.assertEqual(rc, 1, log)
        self.assertIn("cannot write to %s" % os.path.join(self.env.maildir, "INBOX"), log)
        self.assertIn("No space left on device", log)
        self.assertIn("messages could not be copied or updated between the store and the "
                      "Maildir tree; they are retried at the next sync", log)
        self.assertIn("finished with errors", log)
        self.assertEqual(server_msgs(self.dc), before, "the server changed")
        want = self.server_shas(before)
        self.assertEqual(self.store_shas(), want)  # the store has room: all of it
        self.assert_part_of(self.tree(), want, "the tree")

        self.grow("64m")
        rc, log = self.env.sync()
        self.assertEqual(rc, 0, log)
        self.assertNotIn("may still be arriving", log)  # a tree has nothing in flight
        self.assertEqual(self.tree(), want)
        self.assertEqual(server_msgs(self.dc), before, "the server changed")

    def test_store_fills_up(self):
        before = self.populate(6000)  # 25 x 3 messages of 420 KB: 31 MB
        self.env_on_tmpfs("store", "40m")
        rc, log = self.env.sync()
        self.assertEqual(rc, 1, log)
        self.assertIn("no space left for the store", log)
        self.assertIn("finished with errors", log)
        self.assertEqual(server_msgs(self.dc), before, "the server changed")
        want = self.server_shas(before)
        stored = self.store_shas()
        self.assert_part_of(stored, want, "the store")
        self.assert_part_of(self.tree(), want, "the tree")
        # The store took what fit: more than its first 32 MB step would have.
        n = sum(len(v) for v in stored.values())
        self.assertGreaterEqual(n, PER_FOLDER * 2, "the store gave up with room left (%d)" % n)
        self.assertLess(n, PER_FOLDER * len(FOLDERS))

        self.grow("64m")
        rc, log = self.env.sync()
        self.assertEqual(rc, 0, log)
        self.assertEqual(self.store_shas(), want)
        self.assertEqual(self.tree(), want)
        self.assertEqual(server_msgs(self.dc), before, "the server changed")

    def test_big_messages_spool_beside_the_store(self):
        big = make_message("big", body=("x" * 998 + "\n") * 3000)  # 3 MB
        self.dc.append("alice", "INBOX", big)
        old = tempfile.tempdir
        tempfile.tempdir = "/var/tmp"  # the account's files outside /tmp
        try:
            self.env = SyncEnv(self.dc)
        finally:
            tempfile.tempdir = old
        # The daemon sees a full 64 KB /tmp of its own (a private mount);
        # a build under /tmp is reached through /mnt.
        script = ('mkdir -p /mnt && mount --bind /tmp /mnt && '
                  'mount -t tmpfs -o size=64k tmpfs /tmp && d="$1" && shift && '
                  'case "$d" in /tmp/*) d="/mnt/${d#/tmp/}";; esac && exec "$d" "$@"')
        p = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh",
                            os.path.realpath(DAEMON), "-u", "basic", "-c", self.env.config,
                            "-o"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        log = p.stderr.decode(errors="replace")
        if "unshare" in log and p.returncode != 0 and "started" not in log:
            self.skipTest("cannot make a private mount: %s" % log.strip())
        self.assertEqual(p.returncode, 0, log)
        self.assertIn(sha(big), self.env.store_uids("INBOX"))


QUOTA = """
mail_plugins = $mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=400K
}
"""


class ServerQuotaTest(unittest.TestCase):
    def setUp(self):
        self.dc = Dovecot(users={"alice": "secret"}, extra_conf=QUOTA)
        self.dc.start()
        self.env = SyncEnv(self.dc)

    def tearDown(self):
        self.env.cleanup()
        self.dc.stop()

    def test_upload_refused_then_room(self):
        filler = make_message("filler", body=("f" * 70 + "\n") * 2900, msgid="<filler@t>")
        self.dc.append("alice", "INBOX", filler)  # 200 KB of the 400 KB
        self.env.sync_ok(self)
        big = make_message("big", body=("b" * 70 + "\n") * 4300, msgid="<big@t>")  # 300 KB
        small = make_message("small", msgid="<small@t>")
        self.env.store_add("INBOX", big)
        self.env.store_add("INBOX", small)

        for _ in range(2):  # refused, and refused again: kept, never lost
            rc, log = self.env.sync()
            self.assertEqual(rc, 1, log)
            self.assertIn("the server refused message <big@t> (%d bytes): [OVERQUOTA]" % len(big),
                          log)
            self.assertIn("box=INBOX: 1 message could not be copied or updated between the "
                          "server and the store; it is retried at the next sync", log)
            on_server = server_uids(self.dc, "INBOX")
            self.assertEqual(set(on_server), {sha(filler), sha(small)})
            self.assertIn(sha(big), self.env.store_uids("INBOX"))

        # Room again: the filler goes on the server; the next sync deletes
        # it here and sends the big message, once.
        imap = self.dc.login("alice")
        try:
            imap.select("INBOX")
            imap.uid("STORE", str(on_server[sha(filler)]), "+FLAGS.SILENT", "(\\Deleted)")
            imap.expunge()
        finally:
            imap.logout()
        log = self.env.sync_ok(self)
        self.assertNotIn("refused", log)
        want = {sha(big), sha(small)}
        self.assertEqual(set(server_uids(self.dc, "INBOX")), want)
        self.assertEqual(sorted(m[0] for m in server_msgs(self.dc, folder="INBOX")),
                         sorted(want))
        self.assertEqual(set(self.env.store_uids("INBOX")), want)


if __name__ == "__main__":
    unittest.main()

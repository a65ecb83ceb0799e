"""Two-way sync between a real Dovecot and the store, through the real daemon
(`imapbridged -o`). Every test compares both sides message by message by the
SHA-256 of the bytes, flags and keywords. The whole suite runs once against a
Dovecot with CONDSTORE/QRESYNC and once without."""

import os
import re
import unittest

from harness import Dovecot, make_message, quote
from proxy import CutProxy
from synclib import SyncEnv, server_msgs, server_uids, sha


class SyncTestBase:
    condstore = True
    capability = None

    def setUp(self):
        self.dc = Dovecot(condstore=self.condstore, capability=self.capability)
        self.dc.start()
        self.env = SyncEnv(self.dc)

    def tearDown(self):
        self.env.cleanup()
        self.dc.stop()

    def imap(self):
        return self.dc.login("alice")

    def assertSame(self, folders=None):
        s = self.env.store_msgs()
        r = server_msgs(self.dc)
        if folders is not None:
            s = {k: v for k, v in s.items() if k in folders}
            r = {k: v for k, v in r.items() if k in folders}
        self.assertEqual(s, r)

    def seed(self):
        self.msgs = {}
        for i in range(6):
            m = make_message(subject="inbox %d" % i, body="message %d\n" % i)
            self.msgs["in%d" % i] = m
            self.dc.append("alice", "INBOX", m, "\\Seen" if i % 2 else "")
        for i in range(3):
            m = make_message(subject="list %d" % i)
            self.msgs["l%d" % i] = m
            self.dc.append("alice", "Lists/dev", m)
        m = make_message(subject="sent")
        self.msgs["sent"] = m
        self.dc.append("alice", "Sent", m, "\\Seen")

    # -- tests --------------------------------------------------------------
    def test_initial_sync(self):
        self.seed()
        big = make_message(subject="big", body=("x" * 998 + "\n") * 3000)  # ~3 MB
        self.dc.append("alice", "INBOX", big)
        self.env.sync_ok(self)
        self.assertSame()
        folders = self.env.store_folders()
        self.assertEqual(set(folders), {"INBOX", "Lists/dev", "Sent"})
        self.assertEqual(folders["Sent"]["special_use"] & 32, 32)  # \Sent kept
        self.assertIn(sha(big), self.env.store_uids("INBOX"))
        # Again: nothing to do, nothing changes.
        before = self.env.dump()
        log = self.env.sync_ok(self)
        self.assertEqual(self.env.dump(), before)
        self.assertIn("0 new here", log)

    def test_server_changes_reach_store(self):
        self.seed()
        self.env.sync_ok(self)
        imap = self.imap()
        try:
            imap.select("INBOX")
            uids = server_uids(self.dc, "INBOX")
            u0 = uids[sha(self.msgs["in0"])]
            u1 = uids[sha(self.msgs["in1"])]
            u2 = uids[sha(self.msgs["in2"])]
            u3 = uids[sha(self.msgs["in3"])]
            imap.uid("STORE", str(u0), "+FLAGS", "(\\Flagged $Important)")
            imap.uid("STORE", str(u1), "-FLAGS", "(\\Seen)")
            imap.uid("STORE", str(u2), "+FLAGS", "(\\Deleted)")
            imap.expunge()
            imap.uid("MOVE", str(u3), quote("Lists/dev"))
            imap.create(quote("Archive/2026"))
            imap.logout()
        except Exception:
            imap.logout()
            raise
        self.dc.append("alice", "INBOX", make_message(subject="late"))
        self.dc.append("alice", "Archive/2026", make_message(subject="old"))
        self.env.sync_ok(self)
        self.assertSame()
        inbox = self.env.store_uids("INBOX")
        self.assertNotIn(sha(self.msgs["in2"]), inbox)
        self.assertNotIn(sha(self.msgs["in3"]), inbox)
        self.assertIn(sha(self.msgs["in3"]), self.env.store_uids("Lists/dev"))
        self.assertIn("Archive/2026", self.env.store_folders())

    def test_store_changes_reach_server(self):
        self.seed()
        self.env.sync_ok(self)
        st = self.env.store_uids("INBOX")
        new = make_message(subject="written locally")
        self.env.store_add("INBOX", new, "S", "$Label1")
        # A big one is streamed to the server from a temporary file.
        big = make_message(subject="big, local", body=("y" * 998 + "\n") * 2500)
        self.env.store_add("INBOX", big)
        self.env.tool("flags", "home", "INBOX", st[sha(self.msgs["in0"])], "SF", "work")
        self.env.tool("expunge", "home", "INBOX", st[sha(self.msgs["in4"])])
        self.env.tool("move", "home", "INBOX", st[sha(self.msgs["in5"])], "Lists/dev")
        self.env.tool("mkfolder", "home", "Projects")
        proj = make_message(subject="project")
        self.env.store_add("Projects", proj)
        self.env.sync_ok(self)
        self.assertSame()
        srv = server_msgs(self.dc)
        self.assertIn("Projects", srv)
        inbox = {h: (f, k) for h, f, k in srv["INBOX"]}
        self.assertEqual(inbox[sha(new)], (("\\Seen",), ("$Label1",)))
        self.assertIn(sha(big), inbox)
        self.assertEqual(inbox[sha(self.msgs["in0"])], (("\\Flagged", "\\Seen"), ("work",)))
        self.assertNotIn(sha(self.msgs["in4"]), inbox)
        self.assertNotIn(sha(self.msgs["in5"]), inbox)
        self.assertIn(sha(self.msgs["in5"]), {h for h, _, _ in srv["Lists/dev"]})
        self.assertEqual(self.env.pending(), [])
        # Nothing left to do.
        log = self.env.sync_ok(self)
        self.assertIn("0 sent", log)

    def test_flags_merge_per_flag(self):
        self.seed()
        self.env.sync_ok(self)
        m = self.msgs["in1"]  # \Seen on both sides now
        st = self.env.store_uids("INBOX")[sha(m)]
        su = server_uids(self.dc, "INBOX")[sha(m)]
        # Store: add \Flagged and keyword a; server: remove \Seen, add keyword b.
        self.env.tool("flags", "home", "INBOX", st, "SF", "a")
        imap = self.imap()
        imap.select("INBOX")
        imap.uid("STORE", str(su), "-FLAGS", "(\\Seen)")
        imap.uid("STORE", str(su), "+FLAGS", "(b)")
        imap.logout()
        self.env.sync_ok(self)
        self.assertSame()
        inbox = {h: (f, k) for h, f, k in server_msgs(self.dc, folder="INBOX")}
        self.assertEqual(inbox[sha(m)], (("\\Flagged",), ("a", "b")))

    def test_uidvalidity_change_is_held(self):
        self.seed()
        self.env.sync_ok(self)
        # Recreate Lists/dev on the server: new UIDVALIDITY, one message.
        imap = self.imap()
        imap.delete(quote("Lists/dev"))
        imap.logout()
        self.dc.append("alice", "Lists/dev", self.msgs["l0"])
        before = self.env.store_msgs("Lists/dev")
        rc, log = self.env.sync()
        self.assertEqual(rc, 2, log)
        self.assertIn("UIDVALIDITY", log)
        self.assertIn("imapbridge folder recover home Lists/dev", log)
        self.assertEqual(self.env.store_msgs("Lists/dev"), before)  # nothing deleted locally
        self.assertEqual(len(server_msgs(self.dc, folder="Lists/dev")), 1)  # nor uploaded
        self.assertTrue(self.env.store_folders()["Lists/dev"]["held"])
        # Other folders still sync.
        self.dc.append("alice", "INBOX", make_message(subject="after"))
        rc, log = self.env.sync()
        self.assertEqual(rc, 2, log)
        self.assertSame(folders={"INBOX", "Sent"})
        # Recovery re-pairs by content: l0 is on both sides and stays one
        # message; l1 and l2 go back to the server; nothing is deleted.
        rc, out = self.env.recover("home", "Lists/dev")
        self.assertEqual(rc, 0, out)
        self.assertIn("1 messages re-paired", out)
        self.assertFalse(self.env.store_folders()["Lists/dev"]["held"])
        self.assertSame()
        self.assertEqual(sorted(h for h, _, _ in server_msgs(self.dc, folder="Lists/dev")),
                         sorted(sha(self.msgs[k]) for k in ("l0", "l1", "l2")))
        self.env.sync_ok(self)
        self.assertSame()

    def test_mass_deletion_is_held(self):
        for i in range(12):
            self.dc.append("alice", "Bulk", make_message(subject="bulk %d" % i))
        self.env.sync_ok(self)
        imap = self.imap()
        imap.select(quote("Bulk"))
        imap.store("1:10", "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.logout()
        rc, log = self.env.sync()
        self.assertEqual(rc, 2, log)
        self.assertIn("10 of 12", log)
        self.assertEqual(len(self.env.store_msgs("Bulk")), 12)
        self.assertTrue(self.env.store_folders()["Bulk"]["held"])
        # Still held on the next run, until the operator confirms.
        rc, log = self.env.sync()
        self.assertEqual(rc, 2, log)
        # The admin CLI recovers even with no daemon running.
        rc, out = self.env.recover("home", "Bulk", cli=True)
        self.assertEqual(rc, 0, out)
        self.assertIn("the daemon is not running", out)
        self.assertIn("deletions accepted", out)
        self.assertEqual(len(self.env.store_msgs("Bulk")), 2)
        self.env.sync_ok(self)
        self.assertSame()

    def synced_then_new(self, n_folders, n_new):
        """n_folders folders of one message each, synced; then n_new new
        messages in each on the server."""
        folders = ["Box%02d" % i for i in range(n_folders)]
        for folder in folders:
            self.dc.append("alice", folder, make_message(subject="%s old" % folder))
        self.env.sync_ok(self)
        for folder in folders:
            for i in range(n_new):
                self.dc.append("alice", folder, make_message(subject="%s new %d" % (folder, i)))

    def test_small_resync_uses_one_session(self):
        # A few new messages in several folders: with modseqs, every folder
        # goes through the first session (no extra logins), and with QRESYNC
        # all of them are pipelined at once (more than the 8 of a big run);
        # without modseqs, the sessions open as before. All end equal to the
        # server.
        self.synced_then_new(16, 2)
        log = self.env.sync_ok(self, "-d", "imap,store")
        self.assertSame()
        self.assertIn(", 32 new here", log)
        self.assertRegex(log, r"store: commit of [1-9]\d* writes \(")
        if self.condstore:
            self.assertNotIn("acct=home#", log)
        if self.condstore and self.capability is None:
            self.assertGreater(max_selects_in_flight(log), 8)

    def test_slow_listing_logs_in_once(self):
        # An -o run on a known store whose folder listing answers late (the
        # server recomputing changed folders' counters), with little to
        # fetch: no other session logs in while the listing runs, and with
        # modseqs none opens after it either.
        self.synced_then_new(4, 1)
        with open(self.env.config) as f:
            conf = f.read()
        with CutProxy(("127.0.0.1", self.dc.port), hold=(b"LIST ", 0.3)) as px:
            with open(self.env.config, "w") as f:
                f.write(conf.replace("port = %d;" % self.dc.port, "port = %d;" % px.port))
            try:
                log = self.env.sync_ok(self)
            finally:
                with open(self.env.config, "w") as f:
                    f.write(conf)
        self.assertIn(", 4 new here", log)
        self.assertSame()
        if self.condstore:
            self.assertEqual(px.connections, 1, log)


def max_selects_in_flight(log):
    """The most SELECT commands of the -d imap trace sent and not yet answered."""
    out, most = set(), 0
    for line in log.splitlines():
        m = re.search(r" C: (\S+) (SELECT|EXAMINE) ", line)
        if m:
            out.add(m.group(1))
            most = max(most, len(out))
        m = re.search(r" S: (\S+) (OK|NO|BAD)", line)
        if m:
            out.discard(m.group(1))
    return most


class SyncCondstore(SyncTestBase, unittest.TestCase):
    condstore = True


class SyncNoCondstore(SyncTestBase, unittest.TestCase):
    condstore = False


class SyncCondstoreWithoutQresync(SyncTestBase, unittest.TestCase):
    """CHANGEDSINCE for flags, UID SEARCH for deletions (no VANISHED), pipelined
    STATUS instead of LIST-STATUS."""
    capability = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UNSELECT CHILDREN NAMESPACE "
                  "UIDPLUS LIST-EXTENDED ESEARCH MOVE LITERAL+ SPECIAL-USE CONDSTORE")


class SyncMaildir(unittest.TestCase):
    """remote <-> store <-> Maildir in one -o run, and a move by a mail reader
    in the Maildir tree done on the server with UID MOVE."""

    def test_maildir_round_trip_and_move(self):
        with Dovecot() as dc:
            a = make_message(subject="to be moved")
            b = make_message(subject="stays")
            dc.append("alice", "INBOX", a)
            dc.append("alice", "INBOX", b)
            dc.append("alice", "Archive", make_message(subject="archived"))
            env = SyncEnv(dc, maildir=True)
            try:
                env.sync_ok(self)
                inbox = os.path.join(env.maildir, "INBOX")
                files = {}
                for sub in ("cur", "new"):
                    for name in os.listdir(os.path.join(inbox, sub)):
                        with open(os.path.join(inbox, sub, name), "rb") as f:
                            files[sha(f.read())] = os.path.join(inbox, sub, name)
                self.assertEqual(set(files), {sha(a), sha(b)})
                uid_before = server_uids(dc, "INBOX")[sha(a)]
                # A mail reader moves a to Archive and writes a new message.
                src = files[sha(a)]
                os.rename(src, os.path.join(env.maildir, "Archive", "cur",
                                            os.path.basename(src)))
                c = make_message(subject="written in mutt")
                with open(os.path.join(inbox, "new", "1.mutt"), "wb") as f:
                    f.write(c)
                log = env.sync_ok(self)
                self.assertIn("1 moved there", log)
                srv = server_msgs(dc)
                self.assertEqual({h for h, _, _ in srv["INBOX"]}, {sha(b), sha(c)})
                self.assertIn(sha(a), {h for h, _, _ in srv["Archive"]})
                self.assertEqual(env.store_msgs("INBOX"), srv["INBOX"])
                self.assertEqual(env.store_msgs("Archive"), srv["Archive"])
                self.assertEqual(env.pending(), [])
                self.assertNotIn(uid_before, server_uids(dc, "INBOX").values())
            finally:
                env.cleanup()

    def test_folders_written_to_the_tree_commit_together(self):
        # New mail in 16 folders goes out to the tree folder by folder; a
        # folder's final commit waits in the group while the next one is
        # written, so they share a few syncs instead of one each (the store
        # trace counts them). The tree and the store then hold the server's
        # messages, and nothing is left pending.
        with Dovecot() as dc:
            folders = ["Box%02d" % i for i in range(16)]
            for folder in folders:
                dc.append("alice", folder, make_message(subject="%s old" % folder))
            env = SyncEnv(dc, maildir=True)
            try:
                env.sync_ok(self)
                for folder in folders:
                    for i in range(2):
                        dc.append("alice", folder,
                                  make_message(subject="%s new %d" % (folder, i)))
                log = env.sync_ok(self, "-d", "store")
                lazy = len(re.findall(r"store: commit of \d+ writes \(lazy", log))
                self.assertGreater(lazy, 0, log)
                self.assertLessEqual(lazy, len(folders) // 2, log)
                srv = server_msgs(dc)
                for folder in folders:
                    self.assertEqual(len(srv[folder]), 3)
                    self.assertEqual(env.store_msgs(folder), srv[folder])
                    tree = set()
                    for sub in ("cur", "new"):
                        d = os.path.join(env.maildir, folder, sub)
                        for name in os.listdir(d):
                            with open(os.path.join(d, name), "rb") as f:
                                tree.add(sha(f.read()))
                    self.assertEqual(tree, {h for h, _, _ in srv[folder]})
                self.assertEqual(env.pending(), [])
            finally:
                env.cleanup()


class SyncReadonly(unittest.TestCase):
    def test_readonly_never_writes(self):
        with Dovecot() as dc:
            m = make_message(subject="ro")
            dc.append("alice", "INBOX", m)
            env = SyncEnv(dc, extra_remote="readonly = true;")
            try:
                env.sync_ok(self)
                st = env.store_uids("INBOX")
                env.store_add("INBOX", make_message(subject="local only"))
                env.tool("flags", "home", "INBOX", st[sha(m)], "SF")
                before = server_msgs(dc)
                env.sync_ok(self)
                self.assertEqual(server_msgs(dc), before)
                self.assertEqual(len(env.store_msgs("INBOX")), 2)
            finally:
                env.cleanup()


if __name__ == "__main__":
    unittest.main()

"""A hostile or broken server never makes imapbridge lose or half-write mail.

A proxy between the real daemon (`imapbridged -o`) and a private Dovecot
corrupts the server's side of the conversation once: the first time the
daemon sends a trigger command (the first UID FETCH carrying message bodies,
or SELECT, or LIST), the proxy injects bad bytes into the server's reply to
it. For every kind of bad input:

- the run ends (no hang) with exit status 1, or 0 after recovering by
  reconnecting, and when it fails an error line names the account, the folder
  where one is known, and what was wrong;
- the store passes store_check() (tests/tools/ib_store_check) and the Maildir
  holds only complete copies of server messages;
- nothing was deleted on the server;
- a second, clean run completes with every server message exactly once in
  the store and in the Maildir (compared by SHA-256 of the bytes), and no
  forged message anywhere.

The *_incremental variants fire on a resync instead, after a clean first
sync and new mail on the server: there the first body fetch goes out with
the folder's SELECT and delta scan at once (read ahead), so the bad bytes
arrive before the SELECT's answer. The run may then recover by reading the
folder again the usual way (exit 0).
"""

import hashlib
import os
import re
import select
import socket
import subprocess
import threading
import time
import unittest

from harness import Dovecot, make_message
from synclib import BUILD, SyncEnv, server_msgs

FETCH_BODY = re.compile(rb"^(\S+) UID FETCH [^\r\n]*BODY(?:\.PEEK)?\[\]", re.M)
SELECT = re.compile(rb"^(\S+) (?:SELECT|EXAMINE) \"?([^\"\r\n]*)\"?", re.M)
LIST = re.compile(rb"^(\S+) LIST ", re.M)
APPEND = re.compile(rb"^(\S+) APPEND ", re.M)

FORGED = b"Subject: forged\r\nMessage-ID: <forged@hostile.test>\r\n\r\nforged body\r\n"


def fetch_lit(head):
    """An untagged FETCH carrying the forged message as BODY[]."""
    return head + b" BODY[] {%d}\r\n" % len(FORGED) + FORGED + b")\r\n"


# name: (trigger, bytes injected ahead of the server's reply, close the connection
# after them?, what an error line must say (regular expression, case-insensitive),
# may the run end well without an error?). The last is true for input that is
# legal IMAP syntax and harmless when ignored (an absurd EXISTS count, an
# unsolicited FETCH without UID, a STATUS number the daemon does not use), and
# for a connection that ends: its folders go again on a new one, so the run may
# end well, and then the warning says what happened.
CASES = {
    "garbage_line": (FETCH_BODY, b"@@ \x7f\x7f this is not IMAP at all\r\n", False,
                     r"malformed|unexpected|bad byte", False),
    "line_2mb_no_crlf": (FETCH_BODY, b"* 1 FETCH (UID 1 X-JUNK " + b"a" * (2 << 20),
                         False, r"longer than|line", False),
    "literal_1tb": (FETCH_BODY, b"* 1 FETCH (UID 1 BODY[] {1099511627776}\r\n", False,
                    r"literal", False),
    "nul_in_line": (FETCH_BODY, b"* 1 FETCH (UID 1 FLAGS (\\Seen\x00))\r\n", False,
                    r"NUL|0x00", False),
    "unbalanced_open": (FETCH_BODY, b"* 1 FETCH (UID 1 FLAGS (\\Seen)\r\n", False,
                        r"unbalanced|not closed", False),
    "unbalanced_close_list": (LIST, b"* LIST (\\HasNoChildren)) \"/\" \"INBOX\"\r\n",
                              False, r"without matching", False),
    "literal_cut_short": (FETCH_BODY, b"* 1 FETCH (UID 1 BODY[] {4000}\r\n" + FORGED[:30],
                          True, r"lost|closed", True),
    "unknown_tag": (FETCH_BODY, b"ZZ42 OK forged completion\r\n", False,
                    r"never sent|tag", False),
    "exists_huge": (SELECT, b"* 4294967295 EXISTS\r\n", False, None, True),
    "exists_overflow": (SELECT, b"* 99999999999999999999 EXISTS\r\n", False,
                        r"message number|32-bit", False),
    "status_bad_number": (LIST, b"* STATUS \"INBOX\" (MESSAGES 99999999999999999999)\r\n",
                          False, None, True),
    "fetch_uid_zero": (FETCH_BODY, fetch_lit(b"* 1 FETCH (UID 0 FLAGS ()"), False,
                       r"UID 0|UID of 0|zero", False),
    "fetch_no_uid": (FETCH_BODY, fetch_lit(b"* 1 FETCH (FLAGS ()"), False, None, True),
    "fetch_unrequested_uid": (FETCH_BODY, fetch_lit(b"* 1 FETCH (UID 999 FLAGS ()"), False,
                              None, True),
    "fetch_duplicate_uid": (FETCH_BODY, fetch_lit(b"* 1 FETCH (UID 1 FLAGS ()"), False,
                            r"twice|duplicate|UID 1", False),
}

# Cases whose say-why check is known to fail (none now: the engine's error
# line carries the IMAP client's reason, e.g. "127.0.0.1 sent a malformed
# response (literal of 1099511627776 bytes exceeds the limit ...)"). A name
# added here marks that check as an expected failure.
WHY_KNOWN_BAD = set()

# Cases known to lose or forge mail, name -> what goes wrong (none now: a FETCH
# body is taken only for a UID the command asked for, once; anything else
# fails the folder and nothing from that FETCH is committed).
KNOWN_BAD = {}


class HostileProxy:
    """Forwards 127.0.0.1:<port> to target. The first time a client command
    matches trigger (on any connection), inject is sent to the client right
    after the command goes to the server, i.e. ahead of the server's reply;
    with close, both sides are then closed. Everything else passes through.
    shots: how many times it fires (once each on as many connections)."""

    def __init__(self, target, trigger, inject, close):
        self.target = target
        self.trigger = trigger
        self.inject = inject
        self.close = close
        self.armed = True   # false: pass everything through
        self.shots = 1
        self.gone_after_fire = False  # true: once fired, every new connection is closed
        self.fired = False
        self.sent_each = []  # per firing: the folders selected on that connection
        self.drained_each = []  # per firing: set once that connection ended
        self.folder = None  # last folder selected on the connection that fired
        self.sent = set()   # every folder the client selected on it (with close: until
                            # the client saw the connection end)
        self.drained = threading.Event()
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _drain(self, client, sent, pending):
        """The connection ends for the client; note the folders it selected
        before it saw that."""
        try:
            client.shutdown(socket.SHUT_WR)
            while select.select([client], [], [], 5)[0]:
                data = client.recv(65536)
                if not data:
                    break
                pending = (pending + data)[-8192:]
                lines, _, pending = pending.rpartition(b"\n")
                for m in SELECT.finditer(lines):
                    sent.add(m.group(2).decode(errors="replace"))
        except OSError:
            pass

    def _pipe(self, client):
        if self.gone_after_fire and self.fired:
            client.close()
            return
        try:
            server = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        selected = None
        sent = set()
        done_here = None  # this connection fired: set when it ended
        pending = b""  # client bytes not yet ending in a line end
        try:
            while True:
                r, _, _ = select.select([client, server], [], [], 60)
                if not r:
                    break
                if client in r:
                    data = client.recv(65536)
                    if not data:
                        break
                    server.sendall(data)
                    pending = (pending + data)[-8192:]
                    lines, _, pending = pending.rpartition(b"\n")
                    hit = self.trigger.search(lines) if self.armed else None
                    # The folder of the triggering command: the client may
                    # pipeline the next folder's SELECT behind it.
                    at_hit = selected
                    for m in SELECT.finditer(lines):
                        name = m.group(2).decode(errors="replace")
                        if hit and m.start() <= hit.start():
                            at_hit = name
                        selected = name
                        sent.add(name)
                    fire = False
                    if hit:
                        with self.lock:
                            if self.shots > 0 and done_here is None:
                                self.shots -= 1
                                self.fired = fire = True
                                self.folder = at_hit
                                self.sent = sent
                                self.sent_each.append(sent)
                                done_here = threading.Event()
                                self.drained_each.append(done_here)
                    if fire:
                        client.sendall(self.inject)
                        if self.close:
                            self._drain(client, sent, pending)
                            break
                if server in r:
                    data = server.recv(65536)
                    if not data:
                        break
                    client.sendall(data)
        except OSError:
            pass
        finally:
            self.drained.set()
            if done_here:
                done_here.set()
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def store_check(test, env):
    p = subprocess.run([os.path.join(BUILD, "tests", "ib_store_check"), env.datadir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    test.assertEqual(p.returncode, 0,
                     "store_check found problems:\n" + p.stdout.decode(errors="replace"))


def maildir_shas(root):
    """{folder: sorted list of sha256} of the messages in the Maildir tree,
    and the list of leftover files in tmp/."""
    out, leftovers = {}, []
    for dirpath, dirs, files in os.walk(root):
        base = os.path.basename(dirpath)
        if base not in ("cur", "new", "tmp"):
            continue
        folder = os.path.relpath(os.path.dirname(dirpath), root)
        for name in files:
            path = os.path.join(dirpath, name)
            if base == "tmp":
                leftovers.append(path)
                continue
            with open(path, "rb") as f:
                out.setdefault(folder, []).append(hashlib.sha256(f.read()).hexdigest())
    for v in out.values():
        v.sort()
    return out, leftovers


class Hostile(unittest.TestCase):
    def setUp(self):
        self.dc = Dovecot()
        self.dc.start()
        self.addCleanup(self.dc.stop)
        for i in range(4):
            self.dc.append("alice", "INBOX", make_message(subject="inbox %d" % i,
                                                          body="message %d\n" % i),
                           "\\Seen" if i % 2 else "")
        for i in range(2):
            self.dc.append("alice", "Lists/dev", make_message(subject="list %d" % i))
        self.before = self.server_shas()

    def server_shas(self):
        return {f: sorted(h for h, _, _ in v) for f, v in server_msgs(self.dc).items() if v}

    def proxied(self, trigger, inject, close, armed=True, connections=3):
        """A proxy in front of the server, and a sync env (with a Maildir)
        whose account goes through it with that many connections."""
        proxy = HostileProxy(("127.0.0.1", self.dc.port), trigger, inject, close)
        proxy.armed = armed
        self.addCleanup(proxy.stop)
        env = SyncEnv(self.dc, maildir=True)
        self.addCleanup(env.cleanup)
        with open(env.config) as f:
            text = f.read()
        text = text.replace("port = %d;" % self.dc.port, "port = %d;" % proxy.port)
        text = text.replace("maxconnections = 3;", "maxconnections = %d;" % connections)
        with open(env.config, "w") as f:
            f.write(text)
        return proxy, env

    def run_case(self, name, only_why=False, incremental=False):
        trigger, inject, close, why, tolerated = CASES[name]
        proxy, env = self.proxied(trigger, inject, close, armed=not incremental)
        if incremental:
            rc, log = env.sync(timeout=90)
            self.assertEqual(rc, 0, "%s: the first, clean sync failed:\n%s" % (name, log))
            for i in range(2):
                self.dc.append("alice", "INBOX", make_message(subject="new %d" % i,
                                                              body="new %d\n" % i))
            self.dc.append("alice", "Lists/dev", make_message(subject="new list"))
            self.before = self.server_shas()
            tolerated = True
            proxy.armed = True

        # First run: the server misbehaves once.
        try:
            rc, log = env.sync(timeout=90)
        except subprocess.TimeoutExpired:
            self.fail("%s: imapbridged -o hung on bad server input" % name)
        self.assertTrue(proxy.fired, "%s: the trigger command was never sent" % name)
        errors = [line for line in log.splitlines() if "error:" in line]
        if os.environ.get("HOSTILE_VERBOSE"):
            print("\n== %s rc=%d folder=%s\n%s" % (name, rc, proxy.folder, log))
        self.assertIn(rc, (0, 1) if tolerated else (1,),
                      "%s: exit status %d\n%s" % (name, rc, log))
        for line in log.splitlines():
            self.assertNotRegex(line, r"%[sdumU]\b",
                                "%s: a message with an unfilled format: %s" % (name, line))
        for line in errors:
            self.assertLessEqual(line.count("acct="), 1,
                                 "%s: the account prefix is repeated: %s" % (name, line))
        if rc == 1:
            self.assertTrue(errors, "%s: exit 1 without an error line:\n%s" % (name, log))
            self.assertTrue(any("acct=home" in l for l in errors),
                            "%s: no error line names the account:\n%s" % (name, log))
            if proxy.folder and trigger is not LIST:
                self.assertTrue(any(proxy.folder in l for l in errors),
                                "%s: no error line names the folder %s:\n%s"
                                % (name, proxy.folder, log))
        if only_why:
            told = errors if rc == 1 else [l for l in log.splitlines() if "warning:" in l]
            self.assertTrue(any(re.search(why, l, re.I) for l in told),
                            "%s: no %s line says what was wrong (/%s/):\n%s"
                            % (name, "error" if rc == 1 else "warning", why, log))
            return
        store_check(self, env)
        allowed = {h for v in self.before.values() for h in v}
        for folder, v in env.store_msgs().items():
            self.assertTrue({h for h, _, _ in v} <= allowed,
                            "%s: store folder %s holds a message the server does not have"
                            % (name, folder))
        md, leftovers = maildir_shas(env.maildir)
        for folder, hs in md.items():
            self.assertTrue(set(hs) <= allowed,
                            "%s: Maildir %s holds a message the server does not have"
                            % (name, folder))
        self.assertEqual(self.server_shas(), self.before,
                         "%s: the server's mail changed" % name)

        # Second run: the proxy has fired; the server behaves.
        rc2, log2 = env.sync(timeout=90)
        self.assertEqual(rc2, 0, "%s: the clean run failed:\n%s" % (name, log2))
        store_check(self, env)
        store = {f: sorted(h for h, _, _ in v) for f, v in env.store_msgs().items() if v}
        self.assertEqual(store, self.before,
                         "%s: the store does not hold every server message exactly once"
                         % name)
        md, leftovers = maildir_shas(env.maildir)
        self.assertEqual(md, self.before,
                         "%s: the Maildir does not hold every server message exactly once"
                         % name)
        self.assertEqual(leftovers, [], "%s: files left in tmp/" % name)
        self.assertEqual(self.server_shas(), self.before,
                         "%s: the server's mail changed" % name)
        return rc, log


    def lost_connection_setup(self, shots):
        """14 folders on one connection, each with a new message on the
        server; the proxy cuts the connection mid-literal shots times."""
        for i in range(12):
            self.dc.append("alice", "More/f%02d" % i, make_message(subject="more %d" % i))
        proxy, env = self.proxied(FETCH_BODY, CASES["literal_cut_short"][1], True, armed=False,
                                  connections=1)
        rc, log = env.sync(timeout=90)
        self.assertEqual(rc, 0, log)
        folders = list(self.server_shas())
        for f in folders:
            self.dc.append("alice", f, make_message(subject="new in %s" % f))
        self.before = self.server_shas()
        proxy.shots = shots
        proxy.armed = True
        return proxy, env, folders

    def assert_all_equal(self, env):
        store_check(self, env)
        store = {f: sorted(h for h, _, _ in v) for f, v in env.store_msgs().items() if v}
        self.assertEqual(store, self.before)
        md, leftovers = maildir_shas(env.maildir)
        self.assertEqual(md, self.before)
        self.assertEqual(leftovers, [])
        self.assertEqual(self.server_shas(), self.before)

    def test_lost_connection_folders_go_again(self):
        """A connection lost mid-literal on a resync: the folders in flight on
        it go again on a new connection, with the folders still waiting, and
        the run ends with every folder synced and nothing failed."""
        proxy, env, folders = self.lost_connection_setup(1)
        rc, log = env.sync(timeout=90)
        self.assertTrue(proxy.fired)
        self.assertEqual(rc, 0, log)
        self.assertNotIn("error:", log)
        warned = re.findall(r"warning: sync: acct=home box=(\S+): .*closed the connection.*"
                            r"again on a new one", log)
        self.assertEqual(len(warned), 1, "one warning for the lost connection:\n" + log)
        again = set(warned) | set(re.findall(
            r"sync: acct=home box=(\S+): syncing the folder again on a new connection", log))
        proxy.drained_each[0].wait(10)
        self.assertLessEqual(again, proxy.sent_each[0],
                             "a folder went again that never went out on the lost "
                             "connection:\n" + log)
        synced = re.findall(r"box=(\S+) remote: 1 in", log)
        self.assertEqual(sorted(synced), sorted(folders),
                         "every folder synced exactly once in the run:\n" + log)
        self.assert_all_equal(env)
        rc, log = env.sync(timeout=90)
        self.assertEqual(rc, 0, log)
        self.assert_all_equal(env)

    def test_lost_connection_at_list(self):
        """The connection ends as the folders are listed: the listing goes
        again on a new connection once, and the run syncs every folder; lost
        twice, the run fails with an error that says why."""
        for shots, want in ((1, 0), (2, 1)):
            proxy, env = self.proxied(LIST, b"", True)
            proxy.shots = shots
            rc, log = env.sync(timeout=90)
            self.assertEqual(proxy.shots, 0, log)
            self.assertEqual(rc, want, log)
            self.assertIn("listing the folders again on a new connection", log)
            if want:
                self.assertRegex(log, r"error: sync: acct=home: cannot list folders on the "
                                      r"server: .*closed the connection")
            else:
                self.assertNotIn("error:", log)
                store = {f: sorted(h for h, _, _ in v) for f, v in env.store_msgs().items()
                         if v}
                self.assertEqual(store, self.before)
            store_check(self, env)

    def test_lost_connection_server_gone(self):
        """The server is gone once the connection ended: the run does not
        hang on the folders it queued again; it ends within seconds with one
        error line, and the next run finds the server back."""
        proxy, env, folders = self.lost_connection_setup(1)
        proxy.gone_after_fire = True
        t0 = time.time()
        rc, log = env.sync(timeout=60)
        self.assertLess(time.time() - t0, 30, log)
        self.assertEqual(rc, 1, log)
        errors = [l for l in log.splitlines() if "error:" in l]
        self.assertEqual(len(errors), 1, log)
        self.assertRegex(errors[0], r"acct=home: lost every connection; %d folders not synced"
                         % len(folders))
        # The failed reconnection is named as such, not as an extra connection.
        self.assertIn("cannot connect again after the lost connection", log)
        self.assertNotIn("extra connection failed", log)
        self.assertRegex(log, r"finished with errors in .*; 0 folders held, %d failed\n"
                         % len(folders))
        store_check(self, env)
        proxy.gone_after_fire = False
        rc, log = env.sync(timeout=90)
        self.assertEqual(rc, 0, log)
        self.assert_all_equal(env)

    def test_lost_connection_twice(self):
        """Lost twice in one run: a folder goes again once; one lost on its
        second connection as well fails (it waits for the next sync), and
        nothing is lost or doubled."""
        proxy, env, folders = self.lost_connection_setup(2)
        rc, log = env.sync(timeout=90)
        self.assertEqual(proxy.shots, 0, "the proxy fired only once:\n" + log)
        failed = set(re.findall(r"error: sync: acct=home box=(\S+):", log))
        synced = re.findall(r"box=(\S+) remote: 1 in", log)
        for ev in proxy.drained_each:
            ev.wait(10)
        self.assertLessEqual(failed, proxy.sent_each[0] & proxy.sent_each[1],
                             "a folder failed that was not on both lost connections:\n" + log)
        self.assertEqual(len(synced), len(set(synced)), log)
        self.assertEqual(failed | set(synced), set(folders), log)
        self.assertFalse(failed & set(synced), log)
        self.assertEqual(rc, 1 if failed else 0, log)
        store_check(self, env)
        rc, log = env.sync(timeout=90)
        self.assertEqual(rc, 0, log)
        self.assert_all_equal(env)


class HostileUpload(unittest.TestCase):
    """The server's reply to an APPEND is garbage: the message may or may not
    be stored there, and the daemon cannot tell. Nothing may be lost and
    nothing sent twice: after a clean run the new message is on the server,
    in the store and in the Maildir exactly once."""

    def test_append_reply_garbage(self):
        rc, log = self.append_misbehaves(b"@@ \x7f garbage instead of an APPEND reply\r\n",
                                         False)
        self.assertEqual(rc, 1, "garbage in reply to APPEND went unnoticed:\n" + log)
        self.assertTrue(any("acct=home" in l and "INBOX" in l
                            for l in log.splitlines() if "error:" in l), log)

    def test_append_connection_lost(self):
        """The connection ends right after the APPEND went out: the folder
        goes again on a new connection, which must not send it twice."""
        rc, log = self.append_misbehaves(b"", True)
        self.assertIn("again on a new one", log)

    def append_misbehaves(self, inject, close):
        """A message filed in the Maildir is uploaded through a proxy that
        misbehaves at its APPEND; then clean runs. Checks that it ends on the
        server, in the store and in the Maildir exactly once; returns the
        misbehaving run's exit status and log."""
        dc = Dovecot()
        dc.start()
        self.addCleanup(dc.stop)
        dc.append("alice", "INBOX", make_message(subject="already there"))
        proxy = HostileProxy(("127.0.0.1", dc.port), APPEND, inject, close)
        self.addCleanup(proxy.stop)
        env = SyncEnv(dc, maildir=True)
        self.addCleanup(env.cleanup)
        with open(env.config) as f:
            text = f.read()
        with open(env.config, "w") as f:
            f.write(text.replace("port = %d;" % dc.port, "port = %d;" % proxy.port))
        rc, log = env.sync(timeout=90)
        self.assertEqual(rc, 0, log)
        self.assertFalse(proxy.fired)

        new = make_message(subject="written locally", msgid="<local-1@hostile.test>")
        tmp = os.path.join(env.maildir, "INBOX", "tmp", "1767225600.M1P1.local")
        with open(tmp, "wb") as f:
            f.write(new)
        os.rename(tmp, os.path.join(env.maildir, "INBOX", "new", "1767225600.M1P1.local"))
        rc0, log0 = env.sync(timeout=90)
        self.assertTrue(proxy.fired, "the daemon never sent APPEND:\n" + log0)
        store_check(self, env)

        # Clean runs until nothing is pending (an upload whose fate is unknown
        # may be held back for a few seconds before it is looked for).
        for _ in range(10):
            rc, log = env.sync(timeout=90)
            self.assertIn(rc, (0, 1), log)
            if rc == 0 and not env.pending():
                break
            time.sleep(1)
        self.assertEqual(rc, 0, log)
        store_check(self, env)
        server = [h for h, _, _ in server_msgs(dc, "alice", "INBOX")]
        self.assertEqual(server.count(hashlib.sha256(new).hexdigest()), 1,
                         "the new message is on the server %d times"
                         % server.count(hashlib.sha256(new).hexdigest()))
        store = sorted(h for h, _, _ in env.store_msgs("INBOX"))
        self.assertEqual(store, sorted(server))
        md, leftovers = maildir_shas(env.maildir)
        self.assertEqual(md.get("INBOX"), sorted(server))
        self.assertEqual(leftovers, [])
        return rc0, log0


def make_test(name, only_why=False):
    def test(self):
        self.run_case(name, only_why)
    if only_why:
        test.__doc__ = "bad server input: %s: the error says what was wrong" % name
        if name in WHY_KNOWN_BAD:
            test = unittest.expectedFailure(test)
    else:
        test.__doc__ = "bad server input: %s: nothing lost, nothing half-written" % name
        if name in KNOWN_BAD:
            test = unittest.expectedFailure(test)
    return test


# Resyncs: the connection lost mid-literal, and bodies the read did not ask for.
INCREMENTAL = ("literal_cut_short", "garbage_line", "fetch_uid_zero", "fetch_unrequested_uid",
               "fetch_duplicate_uid")


def make_incremental_test(name):
    def test(self):
        self.run_case(name, incremental=True)
    test.__doc__ = "bad server input on a resync: %s: nothing lost, nothing half-written" % name
    return test


for _name in INCREMENTAL:
    setattr(Hostile, "test_" + _name + "_incremental", make_incremental_test(_name))

for _name, _case in CASES.items():
    setattr(Hostile, "test_" + _name, make_test(_name))
    if _case[3]:
        setattr(Hostile, "test_" + _name + "_says_why", make_test(_name, True))


if __name__ == "__main__":
    unittest.main()

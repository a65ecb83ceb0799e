#!/usr/bin/env python3
"""Benchmark: imapbridge against mbsync and offlineimap on one corpus, one server, one run.

    run.py --preset seed [--repeat 3] [--tools mbsync,offlineimap,...]
    run.py --scaling [--presets small,seed,large]

A private Dovecot (tests/integration/harness.py) serves a generated corpus
(gen_corpus.py) on 127.0.0.1. Its indexes are warmed, then the server tree is
snapshotted (message files hard-linked, Dovecot's index files copied) so it can
be put back exactly, with the same UIDs, before each tool's series:

    restore server -> initial sync into a fresh target -> no-change resync
    -> mutation (seeded: 1% flags changed, 0.5% expunged, 100 appended)
    -> incremental resync -> correctness check against the server

Tools alternate within each repetition (the order rotates), and every phase is
reported as the median over --repeat runs: wall seconds and the child's peak RSS
(os.wait4 ru_maxrss). The ceiling (ceiling.py: one pipelined UID FETCH
BODY.PEEK[] per folder, nothing stored) shows how close a tool gets to the cost
of merely downloading the mail. After the series, the server's no-change floor
(ceiling.check_floor: log in and one LIST-STATUS, timed inside the client) shows
the least any tool's no-change resync can take on this server.

The correctness check compares, per folder, the multiset of SHA-256 of the
message bytes (line ends normalised to LF) in the tool's Maildir with what the
server holds after the sync, and also the standard flags. A tool that fails or
is missing is reported as n/a with the reason; it never stops the run.

--scaling measures the no-change resync for several presets: with CONDSTORE
its cost should follow the number of folders, not of messages.
"""

import argparse
import collections
import hashlib
import imaplib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import gen_corpus  # noqa: E402
import ceiling  # noqa: E402

USER = "bench"
PASSWORD = "bench-pass"
# nochange2: a second no-change resync. The first one follows a sync that wrote every
# folder of a Maildir export within the last seconds, which cannot be trusted unread (see
# README); the second shows the steady state a resync every few minutes sees.
PHASES = ("initial", "nochange", "nochange2", "incremental")
ALL_TOOLS = ("ceiling", "mbsync", "mbsync-fsync", "offlineimap", "imapbridge", "imapbridge-noexport",
             "imapbridge-nofsync", "imapbridge-noexport-nofsync")
# Which mbsync run a tool is compared with like for like: the same durability. imapbridge
# makes every write durable before it records it (its default); mbsync does that only with
# FSync yes (its default), and the plain mbsync row runs with FSync no.
DURABLE_PEER = {"imapbridge": "mbsync-fsync", "imapbridge-noexport": "mbsync-fsync",
                "imapbridge-base": "mbsync-fsync", "imapbridge-base-noexport": "mbsync-fsync",
                "imapbridge-nofsync": "mbsync", "imapbridge-noexport-nofsync": "mbsync",
                "mbsync-fsync": "mbsync-fsync",
                "mbsync": "mbsync", "offlineimap": "mbsync"}
# Another build of imapbridged (--base-bin DIR) timed in the same run, for
# before/after comparisons of a change; not in the default tool list.
BASE_TOOLS = ("imapbridge-base", "imapbridge-base-noexport")
MUTATION_SEED = 4242
# A resync with nothing to do takes 10 to 100 ms, about the spread of a single run on a
# busy machine: the steady-state one (nochange2) is run this many times per repetition,
# and every run is a sample of the median.
NOCHANGE2_RUNS = 5
FLOOR_RUNS = 15  # samples of the server's own no-change floor (ceiling.check_floor)
NEW_MESSAGES = 100
FLAG_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                "T": "\\Deleted"}
STANDARD_FLAGS = set(FLAG_LETTERS.values())


def say(msg):
    print(msg, file=sys.stderr, flush=True)


# -- corpus and server ------------------------------------------------------

def corpus_path(workdir, preset, seed):
    """The generated corpus for preset/seed, generated once and cached under workdir."""
    path = os.path.join(workdir, "corpus-v%d-%s-%d" % (gen_corpus.VERSION, preset, seed))
    done = os.path.join(path, ".bench-complete")
    if os.path.exists(done):
        return path
    folders, messages = gen_corpus.PRESETS[preset]
    say("corpus: generating %s (%d folders, %d messages) in %s" % (preset, folders, messages, path))
    t0 = time.time()
    # Generated aside and renamed into place: a concurrent run never sees half a corpus.
    tmp = tempfile.mkdtemp(prefix="gen.", dir=workdir)
    gen_corpus.generate(os.path.join(tmp, "c"), folders, messages, seed, progress=True)
    open(os.path.join(tmp, "c", ".bench-complete"), "w").close()
    if os.path.isdir(path) and not os.path.exists(done):
        shutil.rmtree(path)  # left by an interrupted generation
    try:
        os.rename(os.path.join(tmp, "c"), path)
    except OSError:
        if not os.path.exists(done):
            raise
    shutil.rmtree(tmp, ignore_errors=True)
    say("corpus: done in %.1fs" % (time.time() - t0))
    return path


# Below this much free space a discarded tree is deleted at once.
DISCARD_MIN_FREE = 4 << 30


def discard(path, trash):
    """Put a tree the next run must not see out of the way. It is moved into
    trash (deleted with the run directory at the end), not deleted now: ext4
    does not hand out an inode freed within the last minutes while it has
    others, and after tens of thousands of deletions the next tool's file
    creation paid for that search (an initial sync took 2 to 5 times as long).
    Short of disk space it is deleted now."""
    if not os.path.exists(path):
        return
    os.makedirs(trash, exist_ok=True)
    if shutil.disk_usage(trash).free >= DISCARD_MIN_FREE:
        try:
            os.rename(path, os.path.join(tempfile.mkdtemp(dir=trash), "t"))
            return
        except OSError:
            pass  # another file system: delete it
    shutil.rmtree(path, ignore_errors=True)


def clone_tree(src, dst):
    """Copy a Maildir tree: message files hard-linked (Dovecot never rewrites them,
    it only renames and unlinks), everything else (indexes, uidlist) copied, and
    the directories' times kept. Dovecot compares the times of cur/ and new/ with
    those in its index, and a directory changed in the last second or two counts
    as changing: it would rescan it and rewrite the index, and the next
    LIST-STATUS would recompute every folder, on the first sync timed after a
    restore."""
    dirs = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(out, exist_ok=True)
        dirs.append((dirpath, out))
        in_msgdir = os.path.basename(dirpath) in ("cur", "new")
        for name in filenames:
            s, d = os.path.join(dirpath, name), os.path.join(out, name)
            if name == ".bench-complete":
                continue
            if in_msgdir and not name.startswith("dovecot"):
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    pass  # another file system: copy instead
                shutil.copy2(s, d)
            else:
                shutil.copy2(s, d)
    for dirpath, out in reversed(dirs):
        st = os.stat(dirpath)
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))


class Server:
    """The private Dovecot holding the corpus, with a snapshot to restore."""

    def __init__(self, workdir, corpus, condstore):
        self.dc = harness.Dovecot(users={USER: PASSWORD}, condstore=condstore,
                                  ssl_enabled=False, keep=True)
        self.home = os.path.join(self.dc.dir, "home", USER)
        self.maildir = os.path.join(self.home, "Maildir")
        self.pristine = os.path.join(workdir, "pristine")
        self.trash = os.path.join(workdir, "trash")
        os.makedirs(self.home)
        clone_tree(corpus, self.maildir)
        self.dc.chown_tree(self.home)
        self.mutation = None
        self.condstore = condstore
        self.dc.start()
        self.port = self.dc.port
        t0 = time.time()
        self.warm()
        # First full read: puts every message in the page cache (the hard links share
        # inodes, so it stays warm across restores) before anybody is timed.
        ceiling.ceiling("127.0.0.1", self.port, USER, PASSWORD)
        say("server: Dovecot on 127.0.0.1:%d, CONDSTORE %s, warmed in %.1fs" % (
            self.port, "on" if condstore else "off", time.time() - t0))
        self.dc.stop()
        clone_tree(self.home, self.pristine)
        self.dc.start()

    def warm(self):
        """STATUS of every folder and the FETCH of a mail client's message list:
        Dovecot builds its indexes and caches now, as on a server in use. The
        first client to ask for INTERNALDATE makes Dovecot add it to every
        folder's cache, and the first to ask for MODSEQ makes it keep modseqs
        in every folder's index; either way the next LIST-STATUS then
        recomputes every folder."""
        items = "(FLAGS INTERNALDATE RFC822.SIZE%s)" % (" MODSEQ" if self.condstore else "")
        imap = self.login()
        try:
            for name in self.folders(imap):
                imap.status(harness.quote(name), "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
                imap.select(harness.quote(name), readonly=True)
                imap.uid("FETCH", "1:*", items)
                imap.close()
        finally:
            imap.logout()

    def restore(self):
        """Put the server back to the warmed snapshot (same UIDs, same indexes)."""
        self.dc.stop()
        discard(self.home, self.trash)
        clone_tree(self.pristine, self.home)
        self.dc.start()
        self.warm()

    def login(self):
        return self.dc.login(USER, PASSWORD)

    @staticmethod
    def folders(imap):
        typ, data = imap.list('""', "*")
        names = []
        for line in data:
            line = line.decode()
            if "\\Noselect" in line or "\\NonExistent" in line:
                continue
            name = line.rsplit(' "/" ', 1)[1]
            if name.startswith('"'):
                name = name[1:-1]
            names.append(name)
        return sorted(names)

    def truth(self):
        return ceiling.fetch_hashes("127.0.0.1", self.port, USER, PASSWORD)

    def close(self):
        self.dc.keep = False
        self.dc.stop()


def mutate(server, seed=MUTATION_SEED):
    """The same change every time on the same snapshot: 1% of messages get \\Seen or
    \\Flagged toggled, 0.5% are expunged, NEW_MESSAGES are appended."""
    imap = server.login()
    rng = random.Random(seed)
    try:
        names = server.folders(imap)
        entries = []
        for name in names:
            imap.select(harness.quote(name))
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            for item in data:
                if not item:
                    continue
                text = item.decode() if isinstance(item, bytes) else item[0].decode()
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                flags = text.split("FLAGS (", 1)[1].split(")", 1)[0].split()
                entries.append((name, uid, flags))
        entries.sort()
        n = len(entries)
        k_flag, k_del = max(1, n // 100), max(1, n // 200)
        chosen = rng.sample(range(n), k_flag + k_del)
        ops = {}  # folder -> {(command, flag): [uids]}
        for i in chosen[:k_flag]:
            name, uid, flags = entries[i]
            flag = "\\Seen" if rng.random() < 0.7 else "\\Flagged"
            cmd = "-FLAGS.SILENT" if flag in flags else "+FLAGS.SILENT"
            ops.setdefault(name, {}).setdefault((cmd, flag), []).append(uid)
        for i in chosen[k_flag:]:
            name, uid, flags = entries[i]
            ops.setdefault(name, {}).setdefault(("+FLAGS.SILENT", "\\Deleted"), []).append(uid)
        for name in sorted(ops):
            imap.select(harness.quote(name))
            expunge = False
            for (cmd, flag), uids in sorted(ops[name].items()):
                typ, data = imap.uid("STORE", ",".join(map(str, sorted(uids))), cmd,
                                     "(%s)" % flag)
                assert typ == "OK", data
                expunge = expunge or flag == "\\Deleted"
            if expunge:
                imap.expunge()
            imap.close()
        gen = gen_corpus.Generator(seed)
        when = gen_corpus.BASE_TIME + 86400
        for i in range(NEW_MESSAGES):
            name = rng.choice(names)
            data, letters = gen.message(when + i * 60)
            flags = " ".join(FLAG_LETTERS[c] for c in letters)
            typ, resp = imap.append(harness.quote(name), "(%s)" % flags if flags else None,
                                    imaplib.Time2Internaldate(when + i * 60),
                                    data.replace(b"\n", b"\r\n"))
            assert typ == "OK", resp
    finally:
        imap.logout()
    return {"flags": k_flag, "expunged": k_del, "appended": NEW_MESSAGES}


# -- tools -------------------------------------------------------------------

def strip_header(data, name):
    """data without the header line name (e.g. b"X-TUID: "), if it is in the header block."""
    end = data.find(b"\n\n")
    head = data[:end] if end >= 0 else data
    k = head.find(b"\n" + name)
    if k < 0:
        if not head.startswith(name):
            return data
        k = -1
    eol = data.find(b"\n", k + 1)
    return data[:k + 1] + data[eol + 1:]


def maildir_hashes(root, drop_header=None):
    """{folder: sorted [(sha256, flags)]} of a Maildir tree; nested ("A/B") and
    Maildir++ (".A.B") layouts both map to the IMAP name "A/B", the root to INBOX."""
    result = {}
    if not os.path.isdir(root):
        return result
    for dirpath, dirnames, filenames in os.walk(root):
        if "cur" in dirnames and "new" in dirnames:
            rel = os.path.relpath(dirpath, root)
            if rel == ".":
                name = "INBOX"
            elif rel.startswith("."):
                name = rel[1:].replace(".", "/")
            else:
                name = rel.replace(os.sep, "/")
            entries = []
            for sub in ("cur", "new"):
                d = os.path.join(dirpath, sub)
                for fn in os.listdir(d):
                    with open(os.path.join(d, fn), "rb") as f:
                        data = ceiling.normalise(f.read())
                    if drop_header:
                        data = strip_header(data, drop_header)
                    h = hashlib.sha256(data).hexdigest()
                    letters = fn.rsplit(":2,", 1)[1] if ":2," in fn else ""
                    flags = " ".join(sorted(FLAG_LETTERS[c] for c in letters if c in FLAG_LETTERS))
                    entries.append((h, flags))
            result[name] = sorted(entries)
        dirnames[:] = sorted(d for d in dirnames if d not in ("cur", "new", "tmp"))
    return result


def compare(server, local):
    """'' if local holds exactly the server's messages and flags, else the reason."""
    problems = []
    flag_diffs = 0
    for name in sorted(set(server) | set(local)):
        s = server.get(name, [])
        m = local.get(name, [])
        sh = sorted(h for h, _ in s)
        mh = sorted(h for h, _ in m)
        if sh != mh:
            missing = sum((collections.Counter(sh) - collections.Counter(mh)).values())
            extra = sum((collections.Counter(mh) - collections.Counter(sh)).values())
            problems.append("%s: server %d, local %d messages (%d missing, %d extra)" % (
                name, len(sh), len(mh), missing, extra))
            continue

        def norm(entries):
            return sorted((h, " ".join(sorted(f for f in flags.split() if f in STANDARD_FLAGS)))
                          for h, flags in entries)
        if norm(s) != norm(m):
            flag_diffs += sum(1 for a, b in zip(norm(s), norm(m)) if a != b)
    if problems:
        more = " (+%d more folders)" % (len(problems) - 3) if len(problems) > 3 else ""
        return "; ".join(problems[:3]) + more
    if flag_diffs:
        return "messages match, flags differ on %d" % flag_diffs
    return ""


class Tool:
    """One sync client: writes its config, runs one sync, knows where its Maildir is."""
    name = "?"
    checkable = True
    # A header line the tool adds to every message it stores, ignored by the check.
    added_header = None

    def __init__(self, args, port, rundir):
        self.args = args
        self.port = port
        self.dir = os.path.join(rundir, self.name)
        self.trash = os.path.join(rundir, "trash")

    def available(self):
        return ""

    def fresh(self):
        """A new empty target and state; returns nothing."""
        discard(self.dir, self.trash)
        os.makedirs(self.dir)
        self.target = os.path.join(self.dir, "mail")
        os.makedirs(self.target)
        self.write_config()

    def write_config(self):
        pass

    def command(self):
        raise NotImplementedError


class Mbsync(Tool):
    name = "mbsync"
    # mbsync writes an "X-TUID:" line into each message it propagates, to find it
    # again after an interruption.
    added_header = b"X-TUID: "
    fsync = "no"

    def available(self):
        return "" if shutil.which("mbsync") else "mbsync not installed (apt-get install isync)"

    def write_config(self):
        self.rc = os.path.join(self.dir, "mbsyncrc")
        with open(self.rc, "w") as f:
            f.write("""# Fastest sensible settings. PipelineDepth is left unset: unlimited.
FSync %s

IMAPAccount remote
Host 127.0.0.1
Port %d
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account remote

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns *
Create Near
Expunge Both
SyncState *
Sync All
""" % (self.fsync, self.port, USER, PASSWORD, self.target, self.target))

    def command(self):
        return ["mbsync", "-c", self.rc, "-a"], None


class MbsyncFsync(Mbsync):
    """mbsync with its default FSync yes: every message and the state durable."""
    name = "mbsync-fsync"
    fsync = "yes"


class Offlineimap(Tool):
    name = "offlineimap"

    def available(self):
        return "" if shutil.which("offlineimap") else \
            "offlineimap not installed (apt-get install offlineimap)"

    def write_config(self):
        self.rc = os.path.join(self.dir, "offlineimaprc")
        with open(self.rc, "w") as f:
            f.write("""[general]
accounts = bench
metadata = %s/meta
fsync = false

[Account bench]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s
sep = /

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = %d
remoteuser = %s
remotepass = %s
ssl = no
starttls = no
maxconnections = 3
usecompression = no
""" % (self.dir, self.target, self.port, USER, PASSWORD))

    def command(self):
        return ["offlineimap", "-c", self.rc, "-o", "-u", "quiet"], None


class Imapbridge(Tool):
    name = "imapbridge"
    export = True
    extra = ""

    def binary(self):
        return os.path.join(harness.BIN, "imapbridged")

    def available(self):
        if not os.access(self.binary(), os.X_OK):
            return "%s not built (run.sh builds it in build-bench/)" % self.binary()
        return ""

    def write_config(self):
        self.rc = os.path.join(self.dir, "imapbridge.conf")
        maildir = 'maildir = { path = "%s"; };' % self.target if self.export else ""
        with open(self.rc, "w") as f:
            f.write(self.extra + """datadir = "%s/data";
listen = ( );
accounts = (
  {
    name = "bench";
    autorefresh = 0.0;
    remote = {
      host = "127.0.0.1"; port = %d; tls = "none";
      user = "%s"; password = "%s";
      maxconnections = 3;
    };
    %s
  }
);
""" % (self.dir, self.port, USER, PASSWORD, maildir))
        os.chmod(self.rc, 0o600)  # it holds a password; imapbridged warns otherwise
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)

    def command(self):
        return [self.binary(), "-o", "-u", "quiet", "-c", self.rc], None


class ImapbridgeNoFsync(Imapbridge):
    """imapbridge with fsync = false, as mbsync's FSync no: safe against a crash of the
    process, not against a power failure."""
    name = "imapbridge-nofsync"
    extra = "fsync = false;\n"


class ImapbridgeNoExport(Imapbridge):
    name = "imapbridge-noexport"
    export = False
    checkable = False


class ImapbridgeNoExportNoFsync(ImapbridgeNoExport):
    """The store alone with fsync = false: the same durability as mbsync's FSync no."""
    name = "imapbridge-noexport-nofsync"
    extra = "fsync = false;\n"


class ImapbridgeBase(Imapbridge):
    """imapbridged from --base-bin, with the Maildir export."""
    name = "imapbridge-base"

    def binary(self):
        return os.path.join(self.args.base_bin or "", "imapbridged")

    def available(self):
        if not self.args.base_bin:
            return "no --base-bin given"
        return Imapbridge.available(self)


class ImapbridgeBaseNoExport(ImapbridgeBase):
    name = "imapbridge-base-noexport"
    export = False
    checkable = False


class Ceiling(Tool):
    name = "ceiling"
    checkable = False

    def command(self):
        return [sys.executable, os.path.join(HERE, "ceiling.py"), "127.0.0.1", str(self.port),
                USER, PASSWORD], None


TOOL_CLASSES = {c.name: c for c in (Ceiling, Mbsync, MbsyncFsync, Offlineimap, Imapbridge,
                                     ImapbridgeNoExport, ImapbridgeNoFsync,
                                     ImapbridgeNoExportNoFsync, ImapbridgeBase,
                                     ImapbridgeBaseNoExport)}


TIME = "/usr/bin/time"


def run_child(cmd, env, log_path, timeout):
    """Run cmd; returns (ok, seconds, peak RSS MB, reason).

    The peak RSS comes from GNU time, not from our own wait4(): a child forked from
    this Python process inherits its high-water mark, which would hide small tools."""
    rss_file = log_path + ".rss"
    full = ([TIME, "-f", "%M", "-o", rss_file] if os.access(TIME, os.X_OK) else []) + cmd
    with open(log_path, "ab") as log:
        log.write(("\n$ %s\n" % " ".join(cmd)).encode())
        log.flush()
        t0 = time.monotonic()
        try:
            p = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            return False, None, None, str(e)
        timer = threading.Timer(timeout, os.killpg, (p.pid, 9))
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        elapsed = time.monotonic() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
    rss = ru.ru_maxrss / 1024.0
    try:
        with open(rss_file) as f:
            rss = int(f.read().split()[-1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    if p.returncode != 0:
        if elapsed >= timeout:
            return False, elapsed, rss, "timed out after %ds" % timeout
        return False, elapsed, rss, "exit %d: %s" % (p.returncode, last_line(log_path))
    return True, elapsed, rss, ""


def last_line(path):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("$ ")]
        return lines[-1][:200] if lines else "(no output)"
    except OSError:
        return "(no log)"


# -- the main benchmark --------------------------------------------------------

class Results:
    def __init__(self):
        self.times = {}   # (tool, phase) -> [seconds]
        self.rss = {}     # (tool, phase) -> [MB]
        self.errors = {}  # (tool, phase) -> reason
        self.checks = {}  # tool -> [status]

    def add(self, tool, phase, ok, secs, rss, reason):
        if ok:
            self.times.setdefault((tool, phase), []).append(secs)
            self.rss.setdefault((tool, phase), []).append(rss)
        else:
            self.errors.setdefault((tool, phase), reason)


def series(tool, server, res, args, rundir, first):
    """One tool's series on a freshly restored server."""
    if not first:
        server.restore()
    name = tool.name
    err = tool.available()
    if err:
        for ph in PHASES:
            res.add(name, ph, False, None, None, err)
        res.checks.setdefault(name, []).append("n/a (%s)" % err)
        return
    tool.fresh()
    log = os.path.join(rundir, name + ".log")
    cmd, env = tool.command()
    phases = ("initial",) if name == "ceiling" else PHASES
    for ph in phases:
        if ph != "initial":
            # A resync normally runs minutes after the last one. Maildir clients (mbsync)
            # wait out the current second when a folder changed within it; do not time that.
            time.sleep(1.1)
        if ph == "incremental":
            server.mutation = mutate(server)
        # Not timed: write back what the previous tool or the server restore left dirty
        # (mbsync runs with FSync no), or the next tool's fsync/syncfs pays for it.
        os.sync()
        for run in range(NOCHANGE2_RUNS if ph == "nochange2" else 1):
            if run:
                time.sleep(1.1)
            ok, secs, rss, reason = run_child(cmd, env, log, args.timeout)
            res.add(name, ph, ok, secs, rss, reason)
            say("  %-20s %-12s %s" % (name, ph, "%.3fs %.0f MB" % (secs, rss) if ok
                                      else "n/a: " + reason))
            if not ok:
                break
        if not ok:
            for rest in phases[phases.index(ph) + 1:]:
                res.add(name, rest, False, None, None, "skipped: %s failed" % ph)
            if tool.checkable:
                res.checks.setdefault(name, []).append("n/a (%s failed: %s)" % (ph, reason))
            return
    if not tool.checkable:
        return
    diff = compare(server.truth(), maildir_hashes(tool.target, tool.added_header))
    res.checks.setdefault(name, []).append("PASS" if not diff else "FAIL (%s)" % diff)
    say("  %-20s %-12s %s" % (name, "check", res.checks[name][-1]))


def fmt(v, spec="%.2f"):
    return spec % v if v is not None else "n/a"


def fmt_secs(v):
    """Seconds: milliseconds shown where a run takes less than a second."""
    return fmt(v, "%.3f" if v is not None and v < 1 else "%.2f")


def median(xs):
    return statistics.median(xs) if xs else None


def print_table(res, tools, args, info):
    print()
    print("imapbridge benchmark: preset %s (%d folders, %d messages, %.0f MB), "
          "Dovecot %s CONDSTORE, %s, median of %d" % (
              args.preset, info["folders"], info["messages"], info["mb"],
              "with" if args.condstore else "without",
              "%g ms round trip" % args.rtt if args.rtt else "loopback", args.repeat))
    if info["mutation"]:
        print("mutation: %(flags)d flag changes, %(expunged)d expunged, %(appended)d appended"
              % info["mutation"])
    hdr = "%-28s" % "tool"
    for ph in PHASES:
        hdr += " %12s %8s" % (ph + " s", "RSS MB")
    print(hdr)
    print("-" * len(hdr))
    for t in tools:
        row = "%-28s" % t
        for ph in PHASES:
            row += " %12s %8s" % (fmt_secs(median(res.times.get((t, ph)))),
                                  fmt(median(res.rss.get((t, ph))), "%.0f"))
        print(row)
    print()
    print("ratio to mbsync (tool time / mbsync time; < 1 is faster than mbsync)")
    hdr = "%-28s" % "tool" + "".join(" %12s" % ph for ph in PHASES)
    print(hdr)
    print("-" * len(hdr))
    for t in tools:
        row = "%-28s" % t
        for ph in PHASES:
            a, b = median(res.times.get((t, ph))), median(res.times.get(("mbsync", ph)))
            row += " %12s" % (fmt(a / b) if a is not None and b else "n/a")
        print(row)
    if info.get("floor"):
        nc = median(res.times.get(("mbsync", "nochange2")))
        print()
        print("no-change floor of this server: %.1f ms (median of %d: connect, log in, one "
              "LIST-STATUS, close; timed inside a client, no program start)%s" % (
                  info["floor"] * 1000, FLOOR_RUNS,
                  "; as a ratio to mbsync's nochange2: %s" % fmt(info["floor"] / nc) if nc else ""))
    peers = [t for t in tools if DURABLE_PEER.get(t) in tools and DURABLE_PEER[t] != t]
    if peers:
        print()
        print("like for like: ratio to the mbsync run with the same durability (fsync on: "
              "mbsync-fsync; fsync off: mbsync)")
        hdr = "%-28s %-14s" % ("tool", "compared with") + "".join(" %12s" % ph for ph in PHASES)
        print(hdr)
        print("-" * len(hdr))
        for t in peers:
            row = "%-28s %-14s" % (t, DURABLE_PEER[t])
            for ph in PHASES:
                a = median(res.times.get((t, ph)))
                b = median(res.times.get((DURABLE_PEER[t], ph)))
                row += " %12s" % (fmt(a / b) if a is not None and b else "n/a")
            print(row)
    print()
    print("correctness (every folder holds exactly the server's messages, SHA-256 per message)")
    for t in tools:
        if t == "ceiling":
            continue
        checks = res.checks.get(t)
        if not TOOL_CLASSES[t].checkable:
            status = "n/a (no Maildir export to compare; see imapbridge)"
        elif not checks:
            status = "n/a"
        elif all(c == "PASS" for c in checks):
            status = "PASS" + (" (%d/%d runs)" % (len(checks), len(checks)) if len(checks) > 1 else "")
        else:
            bad = [c for c in checks if c != "PASS"]
            status = bad[0] + (" (%d of %d runs)" % (len(bad), len(checks)) if len(checks) > 1 else "")
        print("%-28s %s" % (t, status))
    notes = sorted(set((t, r) for (t, ph), r in res.errors.items()
                       if not r.startswith("skipped")))
    if notes:
        print()
        for t, r in notes:
            print("n/a %-16s %s" % (t, r))


def corpus_info(corpus):
    n, size, folders = 0, 0, 0
    for dirpath, dirnames, filenames in os.walk(corpus):
        if os.path.basename(dirpath) in ("cur", "new"):
            n += len(filenames)
            size += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
        if "cur" in dirnames:
            folders += 1
    return {"folders": folders, "messages": n, "mb": size / 1e6}


class DelayProxy:
    """delay_proxy.py in front of the server: the tools reach it rtt_ms away."""

    def __init__(self, port, rtt_ms):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "delay_proxy.py"),
                                      str(port), str(rtt_ms)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def check_floor(server, port):
    """Median seconds of ceiling.check_floor() on the restored server (after a few
    untimed tries that wake its processes up), or None if it fails."""
    server.restore()
    samples = []
    try:
        for i in range(3 + FLOOR_RUNS):
            time.sleep(0.2)
            t = ceiling.check_floor("127.0.0.1", port, USER, PASSWORD)
            if i >= 3:
                samples.append(t)
    except (OSError, ceiling.ImapError) as e:
        say("no-change floor: n/a (%s)" % e)
        return None
    return statistics.median(samples)


def bench(args, tool_names):
    corpus = corpus_path(args.workdir, args.preset, args.seed)
    info = corpus_info(corpus)
    rundir = tempfile.mkdtemp(prefix="run.", dir=args.workdir)
    server = Server(rundir, corpus, args.condstore)
    proxy = None
    res = Results()
    try:
        port = server.port
        if args.rtt:
            proxy = DelayProxy(server.port, args.rtt)
            port = proxy.port
            say("tools reach the server through a %g ms round trip (port %d)" % (args.rtt, port))
        tools = [TOOL_CLASSES[n](args, port, rundir) for n in tool_names]
        first = True
        for rep in range(args.repeat):
            k = rep % len(tools)
            order = tools[k:] + tools[:k]
            say("repetition %d/%d: %s" % (rep + 1, args.repeat, ", ".join(t.name for t in order)))
            for t in order:
                series(t, server, res, args, rundir, first)
                first = False
        info["mutation"] = server.mutation
        info["floor"] = check_floor(server, port)
    finally:
        if proxy:
            proxy.close()
        server.close()
        if not args.keep:
            shutil.rmtree(rundir, ignore_errors=True)
        else:
            shutil.rmtree(os.path.join(rundir, "trash"), ignore_errors=True)
            say("kept %s" % rundir)
    print_table(res, tool_names, args, info)


def scaling(args, tool_names):
    tool_names = [t for t in tool_names if t != "ceiling"]
    rows = []
    for preset in args.presets.split(","):
        corpus = corpus_path(args.workdir, preset, args.seed)
        info = corpus_info(corpus)
        rundir = tempfile.mkdtemp(prefix="scale.", dir=args.workdir)
        server = Server(rundir, corpus, args.condstore)
        row = {"preset": preset, "info": info, "t": {}, "why": {}}
        try:
            for name in tool_names:
                tool = TOOL_CLASSES[name](args, server.port, rundir)
                err = tool.available()
                if err:
                    row["t"][name] = "n/a"
                    row["why"][name] = err
                    say("  %-20s %s" % (name, err))
                    continue
                tool.fresh()
                log = os.path.join(rundir, name + ".log")
                cmd, env = tool.command()
                os.sync()  # as in series()
                ok, secs, rss, reason = run_child(cmd, env, log, args.timeout)
                say("  %-20s %-8s initial %s" % (name, preset, "%.1fs" % secs if ok else reason))
                if not ok:
                    row["t"][name] = "n/a"
                    row["why"][name] = "initial sync failed: " + reason
                    continue
                times = []
                for _ in range(args.repeat):
                    time.sleep(1.1)  # as in series(): not the same second as the last sync
                    os.sync()
                    ok, secs, rss, reason = run_child(cmd, env, log, args.timeout)
                    if not ok:
                        row["why"][name] = "no-change resync failed: " + reason
                        break
                    times.append(secs)
                row["t"][name] = fmt(median(times), "%.3f") if ok else "n/a"
                say("  %-20s %-8s nochange %s" % (name, preset, row["t"][name]))
                discard(tool.dir, os.path.join(rundir, "trash"))
        finally:
            server.close()
            if not args.keep:
                shutil.rmtree(rundir, ignore_errors=True)
        rows.append(row)
    print()
    print("scaling: no-change resync, median of %d, Dovecot %s CONDSTORE" % (
        args.repeat, "with" if args.condstore else "without"))
    hdr = "%-8s %8s %9s" % ("preset", "folders", "messages") + "".join(
        " %20s" % t for t in tool_names)
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print("%-8s %8d %9d" % (r["preset"], r["info"]["folders"], r["info"]["messages"]) +
              "".join(" %20s" % r["t"].get(t, "n/a") for t in tool_names))
    if any(r["why"] for r in rows):
        print()
        for r in rows:
            for t, w in sorted(r["why"].items()):
                print("n/a %-8s %-20s %s" % (r["preset"], t, w))


def main():
    ap = argparse.ArgumentParser(description="imapbridge vs mbsync vs offlineimap benchmark")
    ap.add_argument("--preset", choices=sorted(gen_corpus.PRESETS), default="seed")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per phase; the median is shown")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS),
                    help="comma-separated subset of: " + ", ".join(ALL_TOOLS + BASE_TOOLS))
    ap.add_argument("--base-bin", default="",
                    help="directory of another imapbridged build, timed as imapbridge-base and "
                         "imapbridge-base-noexport (before/after a change, in one run)")
    ap.add_argument("--no-condstore", dest="condstore", action="store_false",
                    help="serve without CONDSTORE/QRESYNC")
    ap.add_argument("--rtt", type=float, default=0, metavar="MS",
                    help="put the server MS milliseconds of round trip away (delay_proxy.py), "
                         "as a provider's server is; the mutation and the check go direct")
    ap.add_argument("--scaling", action="store_true",
                    help="no-change resync time for each of --presets")
    ap.add_argument("--presets", default="small,seed,large")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per sync before it is killed")
    ap.add_argument("--workdir", default=os.environ.get("IMAPBRIDGE_BENCH_DIR",
                                                        "/var/tmp/imapbridge-bench"),
                    help="corpus cache and run directories")
    ap.add_argument("--keep", action="store_true", help="keep targets, configs and logs")
    args = ap.parse_args()
    tool_names = [t for t in args.tools.split(",") if t]
    for t in tool_names:
        if t not in TOOL_CLASSES:
            ap.error("unknown tool %r; pick from %s" % (t, ", ".join(ALL_TOOLS + BASE_TOOLS)))
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if os.geteuid() != 0:
        ap.error("needs root: the private Dovecot runs mail processes as 'nobody'")
    os.makedirs(args.workdir, exist_ok=True)
    os.chmod(args.workdir, 0o755)
    if args.scaling and args.rtt:
        ap.error("--rtt works with --preset runs, not --scaling")
    if args.scaling:
        scaling(args, tool_names)
    else:
        bench(args, tool_names)


if __name__ == "__main__":
    main()

"""Helpers for the sync tests: a config for one Dovecot account, running
`imapbridged -o`, reading the store with tests/tools/ib_store_tool, and
reading the server with imaplib, so both sides can be compared message by
message (by SHA-256 of the bytes)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile

from harness import BIN, quote

BUILD = os.environ.get("IMAPBRIDGE_BUILD", os.path.dirname(BIN))
DAEMON = os.path.join(BIN, "imapbridged")
STORE_TOOL = os.path.join(BUILD, "tests", "ib_store_tool")


class SyncEnv:
    """A temporary directory with a config for one account on a Dovecot."""

    def __init__(self, dc, user="alice", extra_remote="", extra_account="", maildir=False):
        self.dc = dc
        self.user = user
        self.dir = tempfile.mkdtemp(prefix="ib-sync.")
        self.datadir = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "imapbridge.conf")
        self.maildir = os.path.join(self.dir, "Mail") if maildir else None
        self.extra_remote = extra_remote
        self.extra_account = extra_account
        self.write_config()

    def write_config(self):
        md = ('maildir = { path = "%s"; };' % self.maildir) if self.maildir else ""
        with open(self.config, "w") as f:
            f.write("""datadir = "%s";
accounts = ( {
  name = "home";
  autorefresh = 0.0;
  max_deletion_ratio = 0.5;
  %s
  %s
  remote = {
    host = "127.0.0.1"; port = %d; tls = "none";
    user = "%s"; password = "%s";
    maxconnections = 3;
    %s
  };
} );
""" % (self.datadir, md, self.extra_account, self.dc.port, self.user,
                self.dc.users[self.user], self.extra_remote))
        os.chmod(self.config, 0o600)

    def cleanup(self):
        if not os.environ.get("IMAPBRIDGE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- running ----------------------------------------------------------
    def sync(self, *args, timeout=120):
        """imapbridged -o; returns (exit status, stderr text)."""
        p = subprocess.run([DAEMON, "-u", "basic", "-c", self.config, "-o"] + list(args),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        return p.returncode, p.stderr.decode(errors="replace")

    def recover(self, account, folder, timeout=120, cli=False):
        """imapbridged --recover, or with cli=True `imapbridge folder recover`
        (which runs the recovery itself when no daemon is running); returns
        (exit status, stdout+stderr text)."""
        if cli:
            cmd = [os.path.join(os.path.dirname(DAEMON), "imapbridge"), "-c", self.config,
                   "folder", "recover", account, folder]
        else:
            cmd = [DAEMON, "-u", "basic", "-c", self.config, "--recover", account, folder]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace")

    def sync_ok(self, test, *args):
        rc, log = self.sync(*args)
        test.assertEqual(rc, 0, log)
        return log

    # -- the store ----------------------------------------------------------
    def dump(self):
        p = subprocess.run([STORE_TOOL, self.datadir, "dump"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, check=True)
        return [json.loads(line) for line in p.stdout.decode().splitlines() if line.strip()]

    def store_msgs(self, folder=None):
        """{folder: sorted list of (sha256, flags tuple, keywords tuple)}"""
        out = {}
        for r in self.dump():
            if r["type"] == "folder":
                out.setdefault(r["folder"], [])
            if r["type"] != "msg":
                continue
            out.setdefault(r["folder"], []).append(
                (r["sha256"], tuple(sorted(r["flags"])), tuple(sorted(r["keywords"]))))
        for v in out.values():
            v.sort()
        return out if folder is None else out.get(folder, [])

    def store_folders(self):
        return {r["folder"]: r for r in self.dump() if r["type"] == "folder"}

    def store_uids(self, folder):
        """{sha256: store uid}"""
        return {r["sha256"]: r["uid"] for r in self.dump()
                if r["type"] == "msg" and r["folder"] == folder}

    def pending(self):
        return [r for r in self.dump() if r["type"] == "pending"]

    def tool(self, *args):
        p = subprocess.run([STORE_TOOL, self.datadir] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError("ib_store_tool %s: %s" % (args, p.stderr.decode()))
        return p.stdout.decode().strip()

    def store_add(self, folder, data, flags="-", keywords=""):
        path = os.path.join(self.dir, "msg.eml")
        with open(path, "wb") as f:
            f.write(data)
        args = ["add", "home", folder, path, flags]
        if keywords:
            args.append(keywords)
        return int(self.tool(*args))


SYSTEM_FLAGS = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"}


def server_msgs(dc, user="alice", folder=None):
    """{folder: sorted list of (sha256, flags tuple, keywords tuple)} on the server."""
    imap = dc.login(user)
    try:
        typ, data = imap.list()
        names = []
        for line in data:
            m = re.match(rb'\((.*?)\) (?:"(.)"|NIL) (.*)$', line)
            if not m or b"\\Noselect" in m.group(1):
                continue
            name = m.group(3).decode()
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            names.append(name)
        out = {}
        for name in names:
            if folder is not None and name != folder:
                continue
            out[name] = fetch_folder(imap, name)
        return out if folder is None else out.get(folder, [])
    finally:
        imap.logout()


def fetch_folder(imap, name):
    typ, _ = imap.select(quote(name), readonly=True)
    assert typ == "OK", name
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    res = []
    i = 0
    while i < len(data):
        item = data[i]
        if isinstance(item, tuple):
            meta, body = item
            fl = re.search(rb"FLAGS \((.*?)\)", meta)
            if not fl:
                # FLAGS may come after the literal
                tail = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
                fl = re.search(rb"FLAGS \((.*?)\)", tail)
            flags = fl.group(1).decode().split() if fl else []
            sysf = tuple(sorted(f for f in flags if f in SYSTEM_FLAGS))
            kw = tuple(sorted(f for f in flags if not f.startswith("\\")))
            res.append((hashlib.sha256(body).hexdigest(), sysf, kw))
        i += 1
    res.sort()
    return res


def server_uids(dc, folder, user="alice"):
    """{sha256: uid} of a folder on the server."""
    imap = dc.login(user)
    try:
        imap.select(quote(folder))
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        out = {}
        for item in data:
            if isinstance(item, tuple):
                m = re.search(rb"UID (\d+)", item[0])
                out[hashlib.sha256(item[1]).hexdigest()] = int(m.group(1))
        return out
    finally:
        imap.logout()


def sha(data):
    return hashlib.sha256(data).hexdigest()

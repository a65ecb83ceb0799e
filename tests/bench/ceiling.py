#!/usr/bin/env python3
"""The cheapest possible IMAP download: the benchmark's ceiling, and its source of truth.

`ceiling.py HOST PORT USER PASSWORD` logs in over plain TCP, lists the folders,
then sends EXAMINE + `UID FETCH 1:* (BODY.PEEK[])` for every folder in one
pipelined burst and reads the answers, skipping each literal without copying or
parsing it. Nothing is written to disk. Any real sync client does at least this
much work, so its time is a floor for everybody.

As a module, fetch_hashes() uses the same reader to return, per folder, the
SHA-256 of every message (line ends normalised to LF, since Maildir clients
store LF), with its flags: what the server holds, for the correctness check.
"""

import hashlib
import socket
import sys
import time


class ImapError(Exception):
    pass


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Reader:
    """Reads IMAP responses from a socket; literals are handed to a callback."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0

    def _fill(self):
        if self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ImapError("server closed the connection")
        self.buf += chunk

    def line(self, literal_cb=None):
        """One response line; literals are passed to literal_cb and replaced by {n}."""
        parts = []
        while True:
            eol = self.buf.find(b"\r\n", self.pos)
            while eol < 0:
                self._fill()
                eol = self.buf.find(b"\r\n", self.pos)
            seg = bytes(self.buf[self.pos:eol])
            self.pos = eol + 2
            parts.append(seg)
            if not seg.endswith(b"}"):
                return b"".join(parts)
            ob = seg.rfind(b"{")
            try:
                n = int(seg[ob + 1:-1].rstrip(b"+"))
            except ValueError:
                return b"".join(parts)
            while len(self.buf) - self.pos < n:
                if literal_cb is None and len(self.buf) - self.pos > 0:
                    # Skip what we have without keeping it.
                    n -= len(self.buf) - self.pos
                    self.pos = len(self.buf)
                self._fill()
            if literal_cb is not None:
                literal_cb(b"".join(parts), memoryview(self.buf)[self.pos:self.pos + n])
            self.pos += n

    def until_tag(self, tag, literal_cb=None, untagged_cb=None):
        """Read until the tagged response for tag; raise unless it is OK."""
        while True:
            ln = self.line(literal_cb)
            if ln.startswith(tag + b" "):
                if not ln[len(tag) + 1:].upper().startswith(b"OK"):
                    raise ImapError(ln.decode(errors="replace"))
                return ln
            if untagged_cb is not None:
                untagged_cb(ln)


def connect(host, port, user, password):
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rd = Reader(sock)
    rd.line()  # greeting
    sock.sendall(b"l LOGIN " + quote(user).encode() + b" " + quote(password).encode() + b"\r\n")
    rd.until_tag(b"l")
    return sock, rd


def list_folders(sock, rd):
    names = []

    def on_list(ln):
        if not ln.startswith(b"* LIST "):
            return
        attrs = ln[ln.index(b"(") + 1:ln.index(b")")].lower()
        if b"\\noselect" in attrs or b"\\nonexistent" in attrs:
            return
        # * LIST (attrs) "/" name  -- name quoted or atom
        rest = ln[ln.index(b")") + 2:]
        rest = rest.split(b" ", 1)[1]
        if rest.startswith(b'"'):
            name = rest[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        else:
            name = rest
        names.append(name.decode())

    sock.sendall(b'L LIST "" "*"\r\n')
    rd.until_tag(b"L", untagged_cb=on_list)
    return sorted(names)


def ceiling(host, port, user, password):
    """Download every message once; returns (messages, bytes)."""
    sock, rd = connect(host, port, user, password)
    names = list_folders(sock, rd)
    out = []
    for i, name in enumerate(names):
        out.append(b"s%d EXAMINE %s\r\nf%d UID FETCH 1:* (BODY.PEEK[])\r\n" % (
            i, quote(name).encode(), i))
    sock.sendall(b"".join(out))
    stats = [0, 0]

    def count(_prefix, lit):
        stats[0] += 1
        stats[1] += len(lit)

    for i in range(len(names)):
        rd.until_tag(b"s%d" % i)
        # An empty folder answers "1:*" with nothing or a NO/BAD on some servers.
        try:
            rd.until_tag(b"f%d" % i, literal_cb=count)
        except ImapError:
            pass
    sock.sendall(b"z LOGOUT\r\n")
    sock.close()
    return stats[0], stats[1]


def check_floor(host, port, user, password):
    """Seconds the server needs for the least a no-change resync can ask of it:
    connect, greeting, LOGIN, one LIST-STATUS of every folder (the items
    imapbridge asks for), close. Timed inside this process, so no program start
    is counted: a floor for any tool's no-change resync on this server."""
    t0 = time.perf_counter()
    sock, rd = connect(host, port, user, password)
    try:
        sock.sendall(b'c LIST "" "*" RETURN (SPECIAL-USE STATUS '
                     b'(UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ))\r\n')
        rd.until_tag(b"c")
    finally:
        sock.close()
    return time.perf_counter() - t0


def normalise(data):
    return bytes(data).replace(b"\r\n", b"\n")


def fetch_hashes(host, port, user, password):
    """{folder: sorted list of (sha256 hex, flags string)} of what the server holds."""
    sock, rd = connect(host, port, user, password)
    result = {}
    try:
        names = list_folders(sock, rd)
        for i, name in enumerate(names):
            sock.sendall(b"s%d EXAMINE %s\r\n" % (i, quote(name).encode()))
            rd.until_tag(b"s%d" % i)
            entries = []

            def on_lit(prefix, lit):
                flags = ""
                up = prefix.upper()
                k = up.find(b"FLAGS (")
                if k >= 0:
                    flags = prefix[k + 7:prefix.index(b")", k)].decode()
                entries.append((hashlib.sha256(normalise(lit)).hexdigest(), flags))

            sock.sendall(b"f%d UID FETCH 1:* (FLAGS BODY.PEEK[])\r\n" % i)
            try:
                rd.until_tag(b"f%d" % i, literal_cb=on_lit)
            except ImapError:
                pass
            result[name] = sorted(entries)
        sock.sendall(b"z LOGOUT\r\n")
    finally:
        sock.close()
    return result


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: ceiling.py HOST PORT USER PASSWORD")
    n, size = ceiling(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
    print("ceiling: %d messages, %d bytes" % (n, size))


if __name__ == "__main__":
    main()

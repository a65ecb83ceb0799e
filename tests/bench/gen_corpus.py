#!/usr/bin/env python3
"""Deterministic mail corpus for the benchmark, written as a Dovecot Maildir++ tree.

The tree is what harness.py's Dovecot serves (mail_location = maildir:~/Maildir,
namespace separator "/"): INBOX is <root>/{cur,new,tmp}, the IMAP folder "A/B"
is <root>/.A.B/{cur,new,tmp}. Folder names therefore never contain a dot.

Same preset and seed give the same bytes, file names and mtimes on every run, so
every tool in a run, and every run on every machine, sees the same corpus.

Speed: a pool of bodies is generated once and reused with varied headers, and
each file is written with one buffered write; `large` (100,000 messages) takes
about a minute on an ordinary disk.

Usage: gen_corpus.py --preset small|seed|large [--seed N] OUT_MAILDIR
"""

import argparse
import base64
import os
import random
import sys
import time
import unicodedata

PRESETS = {
    # name: (folders, messages)
    "small": (5, 1000),
    "seed": (50, 10000),
    "large": (20, 100000),
}

# Bump when the output changes, so cached corpora are regenerated.
VERSION = 1

# Fixed epoch for file names and mtimes (INTERNALDATE): 2026-01-01 00:00 UTC.
BASE_TIME = 1767225600

FIRST = ["Anna", "Bernd", "Chloé", "Dmitri", "Eva", "François", "Günther", "Hana",
         "Ines", "Jürgen", "Kai", "Léa", "Marta", "Nils", "Oskar", "Paula", "Renée",
         "Søren", "Tomás", "Ute", "Zoë", "Wei", "Yuki", "Ángel"]
LAST = ["Müller", "Schmidt", "Dupont", "Øster", "García", "Nowak", "Rossi", "Smith",
        "Tanaka", "Weiß", "Lefèvre", "Novák", "Jensen", "Kowalski", "Brown", "Zhang"]
DOMAINS = ["example.org", "example.com", "lists.example.net", "mail.example.de",
           "corp.example", "uni.example.edu"]
WORDS = ("the of and to in is for on that with release patch build test server "
         "client mailbox folder sync message flag update review meeting budget report "
         "draft invoice travel schedule question answer problem fix crash memory disk "
         "network latency weekly notes plan status proposal über größe café naïve "
         "résumé straße déjà smörgåsbord").split()
TOP_FOLDERS = ["Archive", "Lists", "Projects", "Work", "Family", "Receipts",
               "Travel", "Clubs", "Newsletters", "Support"]
SUB_WORDS = ["alpha", "beta", "gamma", "delta", "2019", "2020", "2021", "2022",
             "2023", "2024", "dev", "users", "announce", "security", "kernel",
             "infra", "ops", "hr", "sales", "misc"]


def folder_names(n):
    """n IMAP folder names: INBOX, the special-use ones, then a two-level tree."""
    names = ["INBOX", "Sent", "Drafts", "Trash", "Archive"][:n]
    i = 0
    while len(names) < n:
        top = TOP_FOLDERS[i % len(TOP_FOLDERS)]
        sub = SUB_WORDS[(i // len(TOP_FOLDERS)) % len(SUB_WORDS)]
        extra = i // (len(TOP_FOLDERS) * len(SUB_WORDS))
        name = "%s/%s" % (top, sub) + ("%d" % extra if extra else "")
        if name not in names:
            names.append(name)
        i += 1
    return names


def folder_dir(root, name):
    """On-disk directory of IMAP folder name in a Maildir++ tree."""
    if name == "INBOX":
        return root
    return os.path.join(root, "." + name.replace("/", "."))


def encode_b(text):
    return "=?UTF-8?B?%s?=" % base64.b64encode(text.encode("utf-8")).decode()


def encode_q(text):
    """RFC 2047 Q encoding in ISO-8859-1; text must be Latin-1 representable."""
    out = []
    for ch in text.encode("iso-8859-1"):
        c = chr(ch)
        if c == " ":
            out.append("_")
        elif c.isalnum() and ch < 128:
            out.append(c)
        else:
            out.append("=%02X" % ch)
    return "=?ISO-8859-1?Q?%s?=" % "".join(out)


def latin1(text):
    try:
        text.encode("iso-8859-1")
        return True
    except UnicodeEncodeError:
        return False


def maybe_encode(rng, text):
    """A header phrase: plain if ASCII, else B or Q encoded words."""
    if text.isascii():
        return text
    if latin1(text) and rng.random() < 0.5:
        return encode_q(text)
    return encode_b(text)


def to_ascii(text):
    """text with its accents dropped, as bytes (for us-ascii parts and addresses)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore")


def sentence(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def paragraph_text(rng, size):
    """Plain text of about size bytes, wrapped at 72 columns."""
    lines, cur, total = [], [], 0
    while total < size:
        w = rng.choice(WORDS)
        cur.append(w)
        total += len(w.encode()) + 1
        if sum(len(x) + 1 for x in cur) > 66:
            lines.append(" ".join(cur))
            cur = []
            if rng.random() < 0.15:
                lines.append("")
    if cur:
        lines.append(" ".join(cur))
    return "\n".join(lines) + "\n"


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"\n".join(enc[i:i + 76] for i in range(0, len(enc), 76)) + b"\n"


class BodyPool:
    """Bodies (Content-Type headers + body) generated once and reused."""

    def __init__(self, rng):
        self.plain, self.alt, self.mixed, self.big = [], [], [], []
        for i in range(60):
            self.plain.append(self._plain(rng, rng.randint(300, 6000)))
        for i in range(40):
            self.alt.append(self._alternative(rng, i, rng.randint(800, 8000)))
        for i in range(30):
            self.mixed.append(self._mixed(rng, i, rng.randint(8000, 160000)))
        for i in range(6):
            self.big.append(self._mixed(rng, 1000 + i, rng.randint(800000, 4000000)))

    def pick(self, rng):
        """A body; the mix gives a median of a few KB and a tail up to a few MB."""
        r = rng.random()
        if r < 0.001:
            return rng.choice(self.big)
        if r < 0.08:
            return rng.choice(self.mixed)
        if r < 0.40:
            return rng.choice(self.alt)
        return rng.choice(self.plain)

    @staticmethod
    def _plain(rng, size):
        text = paragraph_text(rng, size)
        if rng.random() < 0.3:
            hdr = ("MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
                   "Content-Transfer-Encoding: 8bit\n")
            return hdr.encode(), text.encode("utf-8")
        ascii_text = to_ascii(text)
        hdr = "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n"
        return hdr.encode(), ascii_text

    @staticmethod
    def _alternative(rng, i, size):
        b = "=_alt_%06d_%08x" % (i, rng.getrandbits(32))
        text = paragraph_text(rng, size // 2)
        html = "<html><body>\n" + "".join(
            "<p>%s</p>\n" % p for p in text.split("\n\n")) + "</body></html>\n"
        hdr = 'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="%s"\n' % b
        body = ("This is a multi-part message in MIME format.\n\n"
                "--%s\nContent-Type: text/plain; charset=UTF-8\n"
                "Content-Transfer-Encoding: 8bit\n\n%s\n"
                "--%s\nContent-Type: text/html; charset=UTF-8\n"
                "Content-Transfer-Encoding: 8bit\n\n%s\n--%s--\n") % (b, text, b, html, b)
        return hdr.encode(), body.encode("utf-8")

    @staticmethod
    def _mixed(rng, i, size):
        b = "=_mix_%06d_%08x" % (i, rng.getrandbits(32))
        text = paragraph_text(rng, rng.randint(200, 2000))
        kind = rng.choice([("application/pdf", "report-%d.pdf"),
                           ("image/jpeg", "photo-%d.jpg"),
                           ("application/zip", "archive-%d.zip")])
        name = kind[1] % i
        if rng.random() < 0.3:
            fname = 'filename*=UTF-8\'\'%s' % ("%C3%BCbersicht-" + name)
        else:
            fname = 'filename="%s"' % name
        # Attachment bytes: random, so they do not compress (like real PDFs/JPEGs).
        payload = rng.randbytes(size * 3 // 4)
        hdr = 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="%s"\n' % b
        parts = [("This is a multi-part message in MIME format.\n\n"
                  "--%s\nContent-Type: text/plain; charset=UTF-8\n"
                  "Content-Transfer-Encoding: 8bit\n\n%s\n"
                  "--%s\nContent-Type: %s; name=\"%s\"\n"
                  "Content-Disposition: attachment; %s\n"
                  "Content-Transfer-Encoding: base64\n\n") % (b, text, b, kind[0], name, fname)]
        body = parts[0].encode("utf-8") + b64_lines(payload) + ("--%s--\n" % b).encode()
        return hdr.encode(), body


class Generator:
    """Produces messages; each call varies the headers, threads, dates and flags."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.pool = BodyPool(random.Random(seed * 7919 + 1))
        self.people = []
        for _ in range(200):
            first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
            addr = "%s.%s@%s" % (to_ascii(first).decode().lower(),
                                 to_ascii(last).decode().lower(),
                                 self.rng.choice(DOMAINS))
            self.people.append((first + " " + last, addr))
        self.threads = []  # (subject, [message-ids])
        self.count = 0

    def _addr(self, person):
        name, addr = person
        phrase = maybe_encode(self.rng, name)
        if phrase == name and not name.isalnum():
            phrase = '"%s"' % name
        return "%s <%s>" % (phrase, addr)

    def message(self, when):
        """(bytes with LF line ends, flags letters) for one message dated when."""
        rng = self.rng
        self.count += 1
        msgid = "<%d.%08x@bench.imapbridge.test>" % (self.count, rng.getrandbits(32))
        refs = None
        if self.threads and rng.random() < 0.35:
            subject, ids = rng.choice(self.threads)
            subject = "Re: " + subject if not subject.startswith("Re: ") else subject
            refs = ids[-8:]
            ids.append(msgid)
        else:
            subject = sentence(rng, 2, 8).capitalize()
            if rng.random() < 0.3:
                subject += " " + rng.choice(["größe", "café", "naïve", "Überblick",
                                             "résumé", "日本語", "привет"])
            self.threads.append((subject, [msgid]))
            if len(self.threads) > 500:
                self.threads.pop(0)
        sender = rng.choice(self.people)
        to = rng.sample(self.people, rng.randint(1, 3))
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))
        hdr = ["Return-Path: <%s>" % sender[1],
               "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n"
               "\tby mail.example.org with ESMTPS id %08X\n\tfor <%s>; %s" % (
                   rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 254),
                   rng.getrandbits(32), to[0][1], date),
               "Date: " + date,
               "From: " + self._addr(sender),
               "To: " + ", ".join(self._addr(p) for p in to),
               "Subject: " + maybe_encode(rng, subject),
               "Message-ID: " + msgid]
        if rng.random() < 0.2:
            hdr.append("Cc: " + self._addr(rng.choice(self.people)))
        if refs:
            hdr.append("In-Reply-To: " + refs[-1])
            hdr.append("References: " + "\n ".join(refs))
        if rng.random() < 0.25:
            hdr.append("List-Id: <%s.lists.example.net>" % rng.choice(SUB_WORDS))
        ctype, body = self.pool.pick(rng)
        data = ("\n".join(hdr) + "\n").encode("utf-8") + ctype + b"\n" + body
        r = rng.random()
        flags = ""
        if r < 0.85:
            flags = "S"
            if rng.random() < 0.12:
                flags = "RS"
        if rng.random() < 0.05:
            flags = "F" + flags
        return data, flags


def generate(out, folders, messages, seed=1, progress=False):
    """Write the corpus under out (a Maildir++ root); returns {folder: count}."""
    gen = Generator(seed)
    names = folder_names(folders)
    # Skewed folder sizes: INBOX and a few lists get most of the mail.
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(names))]
    frng = random.Random(seed * 31 + 7)
    for name in names:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(folder_dir(out, name), sub), exist_ok=True)
        if name != "INBOX":
            # Dovecot's marker for a Maildir++ folder.
            open(os.path.join(folder_dir(out, name), "maildirfolder"), "w").close()
    with open(os.path.join(out, "subscriptions"), "w") as f:
        f.write("".join(n + "\n" for n in names if n != "INBOX"))
    counts = {n: 0 for n in names}
    # Every folder gets at least one message; the rest follow the weights.
    targets = list(names) + frng.choices(names, weights, k=max(0, messages - len(names)))
    targets = targets[:messages]
    span = 3 * 365 * 86400
    started = time.time()
    for i, name in enumerate(targets):
        when = BASE_TIME - span + (span * i) // max(1, len(targets))
        data, flags = gen.message(when)
        d = folder_dir(out, name)
        vsize = len(data) + data.count(b"\n")
        base = "%d.M%dP1.bench,S=%d,W=%d" % (when, i, len(data), vsize)
        if not flags and frng.random() < 0.3:
            path = os.path.join(d, "new", base)
        else:
            path = os.path.join(d, "cur", base + ":2," + flags)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (when, when))
        counts[name] += 1
        if progress and (i + 1) % 10000 == 0:
            print("gen: %d/%d messages, %.0fs" % (i + 1, len(targets), time.time() - started),
                  file=sys.stderr)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("out", help="Maildir root to create (must not exist)")
    args = ap.parse_args()
    if os.path.exists(args.out):
        sys.exit("gen_corpus: %s exists; pick a new directory" % args.out)
    folders, messages = PRESETS[args.preset]
    t0 = time.time()
    counts = generate(args.out, folders, messages, args.seed, progress=True)
    print("gen: %d messages in %d folders under %s in %.1fs" % (
        sum(counts.values()), len(counts), args.out, time.time() - t0))


if __name__ == "__main__":
    main()

"""Test harness: a private Dovecot on 127.0.0.1, and the imapbridge programs.

Every test starts its own Dovecot in a temporary directory, with its own
ports, users and config, so tests can run in parallel and leave nothing
behind. Mail is stored as Maildir under <dir>/home/<user>/Maildir, owned by
the unprivileged user Dovecot runs mail processes as.

Usage:
    with Dovecot(users={"alice": "secret"}) as dc:
        imap = dc.login("alice")          # an imaplib.IMAP4 client, logged in
        dc.port, dc.tls_port, dc.cert_file, dc.fingerprint
"""

import grp
import hashlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("IMAPBRIDGE_BIN", os.path.join(ROOT, "build", "bin"))
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVECOT_IMAP = "/usr/lib/dovecot/imap"


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(n):
    """n different TCP ports on 127.0.0.1 that were free a moment ago (held
    together while chosen: one after the other, the kernel may hand out the
    same port twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_cert(directory, cn="localhost"):
    """A self-signed certificate for localhost and 127.0.0.1; returns (cert, key)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", key, "-out", cert, "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def cert_fingerprint(cert_file):
    """'sha256:AB:CD:...' of a PEM certificate, as imapbridge's fingerprint option takes it."""
    with open(cert_file) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    h = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(h[i:i + 2] for i in range(0, len(h), 2))


class Dovecot:
    """A private Dovecot instance. Use as a context manager."""

    def __init__(self, users=None, condstore=True, ssl_enabled=True, extra_conf="",
                 capability=None, keep=False):
        self.users = users or {"alice": "secret"}
        self.condstore = condstore
        self.ssl_enabled = ssl_enabled
        self.extra_conf = extra_conf
        self.capability = capability
        self.keep = keep or bool(os.environ.get("IMAPBRIDGE_KEEP_TMP"))
        self.dir = tempfile.mkdtemp(prefix="ib-dovecot.")
        self.port, self.tls_port = free_ports(2)
        self.proc = None
        pw = pwd.getpwnam("nobody")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    # -- lifecycle --------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def conf_text(self):
        d = self.dir
        cap = ""
        if self.capability is not None:
            cap = "imap_capability = %s\n" % self.capability
        elif not self.condstore:
            # Dovecot's default capability list minus CONDSTORE and QRESYNC.
            cap = ("imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
                   "SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT "
                   "MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
                   "LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH "
                   "LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
                   "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE\n")
        ssl_part = "ssl = no\n"
        if self.ssl_enabled:
            ssl_part = "ssl = yes\nssl_cert = <%s\nssl_key = <%s\n" % (self.cert_file, self.key_file)
        return f"""# private Dovecot for imapbridge tests
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5
auth_cache_size = 0
mail_location = maildir:~/Maildir
mail_uid = {self.uid}
mail_gid = {self.gid}
mail_max_userip_connections = 200
login_trusted_networks =
{ssl_part}{cap}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={d}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port if self.ssl_enabled else 0}
    ssl = yes
  }}
  process_min_avail = 1
}}
service imap {{
  process_limit = 256
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{self.extra_conf}
"""

    def start(self):
        d = self.dir
        for sub in ("run", "state", "home"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(d, 0o755)
        if self.ssl_enabled:
            self.cert_file, self.key_file = make_cert(d)
            self.fingerprint = cert_fingerprint(self.cert_file)
        with open(os.path.join(d, "passwd"), "w") as f:
            for user, password in self.users.items():
                f.write("%s:%s\n" % (user, password))
        for user in self.users:
            self.maildir(user)
        self.conf = os.path.join(d, "dovecot.conf")
        for attempt in range(3):
            with open(self.conf, "w") as f:
                f.write(self.conf_text())
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            why = self.wait_up()
            if why is None:
                return
            if "in use" in why and attempt < 2:
                # A port free a moment ago was taken meanwhile (by another
                # test's connection, for one): take new ones.
                self.proc.stderr.close()
                self.proc = None
                self.port, self.tls_port = free_ports(2)
                continue
            log = self.log()  # before stop() removes the directory
            self.stop()
            raise RuntimeError("Dovecot did not start: %s; its log:\n%s" % (why, log))

    def wait_up(self, timeout=10.0):
        """None once Dovecot listens on its ports, else why not: what it said
        when it exited, or that nothing listens."""
        ports = [self.port] + ([self.tls_port] if self.ssl_enabled else [])
        deadline = time.time() + timeout
        while time.time() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip()
                return "it exited with status %d (%s)" % (rc, err or "nothing on stderr")
            try:
                for port in ports:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        pass
                return None
            except OSError:
                time.sleep(0.05)
        return "nothing listens on 127.0.0.1:%s after %.0fs" % (
            "/".join(map(str, ports)), timeout)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, "dovecot.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- mail -------------------------------------------------------------
    def maildir(self, user):
        """The user's Maildir root, created and owned by the mail user."""
        home = os.path.join(self.dir, "home", user)
        path = os.path.join(home, "Maildir")
        for sub in ("", "cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
        self.chown_tree(home)
        return path

    def chown_tree(self, path):
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in files:
                os.chown(os.path.join(root, name), self.uid, self.gid)

    def login(self, user="alice", password=None):
        """An imaplib client logged in as user over plain TCP."""
        imap = imaplib.IMAP4("127.0.0.1", self.port)
        imap.login(user, password if password is not None else self.users[user])
        return imap

    def append(self, user, folder, message, flags=""):
        """APPEND message (bytes) to folder, creating it; returns the new UID."""
        imap = self.login(user)
        try:
            if folder.upper() != "INBOX":
                imap.create(quote(folder))
            typ, data = imap.append(quote(folder), flags, None, message)
            assert typ == "OK", data
            code = data[0].decode()
            # [APPENDUID <uidvalidity> <uid>]
            if "APPENDUID" in code:
                return int(code.split("APPENDUID", 1)[1].split()[1].rstrip("]"))
            return None
        finally:
            imap.logout()

    def tunnel_command(self, user):
        """A shell command speaking PREAUTH IMAP for user on stdin/stdout."""
        return "%s -c %s exec imap -u %s" % (shutil.which("doveadm") or "/usr/bin/doveadm",
                                             self.conf, user)


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_message(subject="test", body="hello\r\n", sender="a@example.org",
                 to="b@example.org", msgid=None, date="Mon, 23 Nov 2026 10:00:00 +0000",
                 extra_headers=()):
    """A small RFC 5322 message as bytes with CRLF line ends."""
    if msgid is None:
        msgid = "<%s@imapbridge.test>" % hashlib.sha1(
            (subject + body + str(time.time_ns())).encode()).hexdigest()[:16]
    lines = ["From: " + sender, "To: " + to, "Subject: " + subject, "Date: " + date,
             "Message-ID: " + msgid] + list(extra_headers) + ["", ""]
    return ("\r\n".join(lines)).encode() + body.replace("\r\n", "\n").replace("\n", "\r\n").encode()

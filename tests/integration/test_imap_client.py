"""The IMAP client against a real Dovecot, through `imapbridged --probe`:
transports (plain, STARTTLS, implicit TLS with trust by CA file or pin, PREAUTH
tunnel), mechanisms (LOGIN, PLAIN, CRAM-MD5), a wrong password, a connection
cut in the middle of a literal, COMPRESS=DEFLATE, and credentials kept out of
the -d imap trace."""

import base64
import os
import re
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Dovecot, make_message
from proxy import CutProxy

PASSWORD = "S3cr3t-pa55word"
USER = "alice"
# Needs a literal in LOGIN (8-bit) and escapes in a quoted string.
ODD_USER = "bob"
ODD_PASSWORD = 'p\u00e4ss "w\u00f6rd"'


def conf_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(directory, remote, name="home", more=()):
    """A daemon config with one account (remote: a dict of remote.* options,
    strings, ints, bools or lists of strings), plus (name, remote) pairs in
    more for further accounts."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (list, tuple)):
            return "[ " + ", ".join(conf_str(x) for x in v) + " ]"
        return conf_str(v)

    def account(name, remote):
        lines = ["      %s = %s;" % (k, value(v)) for k, v in remote.items()]
        return "  {\n    name = %s;\n    remote = {\n%s\n    };\n  }" % (
            conf_str(name), "\n".join(lines))
    accounts = [account(name, remote)] + [account(n, r) for n, r in more]
    text = "datadir = %s;\naccounts = (\n%s\n);\n" % (
        conf_str(os.path.join(directory, "data")), ",\n".join(accounts))
    path = os.path.join(directory, "imapbridge.conf")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dc = Dovecot(users={USER: PASSWORD, ODD_USER: ODD_PASSWORD})
        cls.dc.start()
        cls.dc.append(USER, "INBOX", make_message(subject="first message"))
        cls.dc.append(USER, "INBOX", make_message(subject="the newest one", body="x" * 3000))
        cls.dc.append(USER, "Lists/dev", make_message(subject="list mail"))

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="ib-client.")

    def tearDown(self):
        self.tmp.cleanup()

    def remote(self, **kw):
        r = {"host": "127.0.0.1", "port": self.dc.port, "tls": "none", "user": USER,
             "password": PASSWORD}
        r.update(kw)
        return {k: v for k, v in r.items() if v is not None}

    def probe(self, remote, trace=True, timeout=60, more=()):
        conf = write_config(self.tmp.name, remote, more=more)
        args = [os.path.join(BIN, "imapbridged"), "--probe", "-c", conf]
        if trace:
            args += ["-d", "imap"]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        return p.returncode, out

    def assert_ok(self, rc, out):
        self.assertEqual(rc, 0, out)
        self.assertIn("acct=home: ok:", out)
        self.assertIn('newest: "the newest one"', out)
        # The header literal is traced by size, not content.
        self.assertRegex(out, r"BODY\[HEADER\] \{\d+ bytes\}")
        self.assertNotIn("Message-ID:", out)

    def assert_no_secrets(self, out):
        self.assertNotIn(PASSWORD, out)
        plain = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()
        self.assertNotIn(plain, out)
        for line in out.splitlines():
            m = re.search(r"C: (\S+)$", line)
            # A bare base64 client line would be a SASL response leaking.
            if m and re.fullmatch(r"[A-Za-z0-9+/]{16,}={0,2}", m.group(1)):
                self.fail("SASL response in the trace: " + line)

    def dovecot_logins(self):
        log = self.dc.log()
        ok = len(re.findall(r"imap-login: Info: Login: user=<%s>" % USER, log))
        failed = len(re.findall(r"imap-login: Info: (?:Disconnected|Aborted login).*auth failed", log))
        return ok, failed

    # -- transports -------------------------------------------------------
    def test_plain_tcp(self):
        rc, out = self.probe(self.remote())
        self.assert_ok(rc, out)
        self.assertIn("imap: acct=home C:", out)
        self.assertIn("imap: acct=home S:", out)
        self.assert_no_secrets(out)
        self.assertIn("capabilities: ", out)
        self.assertIn("STATUS", out)
        self.assertIn("Lists/dev", out)

    def test_starttls_with_pin(self):
        rc, out = self.probe(self.remote(tls="starttls", fingerprint=self.dc.fingerprint))
        self.assert_ok(rc, out)
        self.assertRegex(out, r"C: A1 STARTTLS\n.*S: A1 OK")
        # Capabilities are asked again after TLS, before logging in.
        self.assertRegex(out, r"S: A1 OK[^\n]*\n[^\n]*C: A2 CAPABILITY")
        self.assert_no_secrets(out)

    def test_starttls_refused_when_not_offered(self):
        with Dovecot(users={USER: PASSWORD}, ssl_enabled=False) as dc:
            rc, out = self.probe(self.remote(port=dc.port, tls="starttls"))
        self.assertEqual(rc, 1, out)
        self.assertIn("does not offer STARTTLS", out)
        self.assertNotRegex(out, r"C: A\d+ (LOGIN|AUTHENTICATE)")

    def test_implicit_tls_untrusted(self):
        rc, out = self.probe(self.remote(port=self.dc.tls_port, tls="implicit"))
        self.assertEqual(rc, 1, out)
        self.assertIn("TLS certificate of 127.0.0.1:%d is not trusted" % self.dc.tls_port, out)
        self.assertIn('fingerprint = "%s"' % self.dc.fingerprint, out)
        self.assertIn("ca_file", out)
        # Not retried: a certificate problem does not fix itself.
        self.assertEqual(out.count("is not trusted"), 1, out)

    def test_implicit_tls_ca_file(self):
        rc, out = self.probe(self.remote(port=self.dc.tls_port, tls="implicit",
                                         ca_file=self.dc.cert_file))
        self.assert_ok(rc, out)

    def test_implicit_tls_fingerprint(self):
        fp = self.dc.fingerprint.lower()   # case does not matter
        rc, out = self.probe(self.remote(port=self.dc.tls_port, tls="implicit", fingerprint=fp))
        self.assert_ok(rc, out)

    def test_implicit_tls_hostname(self):
        # By name: the certificate names localhost, so SNI and the name check
        # pass with the CA given. (Where localhost also resolves to ::1, on
        # which nothing listens, the next address is tried.)
        rc, out = self.probe(self.remote(host="localhost", port=self.dc.tls_port, tls="implicit",
                                         ca_file=self.dc.cert_file))
        self.assert_ok(rc, out)

    def test_implicit_tls_wrong_fingerprint(self):
        wrong = "sha256:" + ":".join(["AB"] * 32)
        rc, out = self.probe(self.remote(port=self.dc.tls_port, tls="implicit", fingerprint=wrong))
        self.assertEqual(rc, 1, out)
        self.assertIn("does not match the pinned fingerprint", out)
        self.assertIn(self.dc.fingerprint, out)

    def test_ipv6(self):
        with CutProxy(("127.0.0.1", self.dc.port), bind="::1") as px:
            rc, out = self.probe(self.remote(host="::1", port=px.port))
            self.assertEqual(px.connections, 1, out)
        self.assert_ok(rc, out)

    def test_preauth_tunnel(self):
        rc, out = self.probe({"tunnel": self.dc.tunnel_command(USER), "user": USER})
        self.assert_ok(rc, out)
        self.assertIn("PREAUTH", out)
        self.assertNotIn(" LOGIN ", out)

    # -- mechanisms ---------------------------------------------------------
    def test_login_command(self):
        rc, out = self.probe(self.remote(auth=["login"]))
        self.assert_ok(rc, out)
        self.assertRegex(out, r"C: A\d+ LOGIN \*\*\*")
        self.assert_no_secrets(out)

    def test_login_literal_password(self):
        rc, out = self.probe(self.remote(user=ODD_USER, password=ODD_PASSWORD, auth=["login"]))
        self.assertEqual(rc, 0, out)
        self.assertIn("acct=home: ok:", out)
        self.assertRegex(out, r"C: A\d+ LOGIN \*\*\*")
        self.assertIn("C: ***", out)  # the literal's bytes
        self.assertNotIn("w\u00f6rd", out)
        self.assertNotIn("rd\\\"", out)

    def test_plain_utf8_password(self):
        rc, out = self.probe(self.remote(user=ODD_USER, password=ODD_PASSWORD, auth=["plain"]))
        self.assertEqual(rc, 0, out)
        plain = base64.b64encode(b"\0" + ODD_USER.encode() + b"\0" + ODD_PASSWORD.encode()).decode()
        self.assertNotIn(plain, out)
        self.assertNotIn("w\u00f6rd", out)

    def test_plain_sasl_ir(self):
        rc, out = self.probe(self.remote(auth=["plain"]))
        self.assert_ok(rc, out)
        self.assertRegex(out, r"C: A\d+ AUTHENTICATE PLAIN \*\*\*")
        self.assert_no_secrets(out)

    def test_cram_md5(self):
        rc, out = self.probe(self.remote(auth=["cram-md5"]))
        self.assert_ok(rc, out)
        self.assertRegex(out, r"C: A\d+ AUTHENTICATE CRAM-MD5")
        self.assertRegex(out, r"S: \+ \S+")       # the challenge
        self.assertRegex(out, r"C: \*\*\*")        # our answer, hidden
        self.assert_no_secrets(out)

    def test_default_on_loopback_is_plain_sasl_ir(self):
        # No network sees the password on 127.0.0.1: PLAIN, one round trip.
        # (Away from loopback and TLS the default is CRAM-MD5; see
        # test_imap_auth.)
        rc, out = self.probe(self.remote())
        self.assert_ok(rc, out)
        self.assertRegex(out, r"C: A\d+ AUTHENTICATE PLAIN \*\*\*")
        self.assert_no_secrets(out)

    def test_default_in_tls_is_plain_sasl_ir(self):
        # Inside TLS the password is as safe with PLAIN, and SASL-IR makes
        # the login one round trip instead of CRAM-MD5's two.
        rc, out = self.probe(self.remote(port=self.dc.tls_port, tls="implicit",
                                         ca_file=self.dc.cert_file))
        self.assert_ok(rc, out)
        self.assertRegex(out, r"C: A\d+ AUTHENTICATE PLAIN \*\*\*")
        self.assertNotIn("AUTHENTICATE CRAM-MD5", out)
        self.assert_no_secrets(out)

    def test_password_command(self):
        rc, out = self.probe(self.remote(password=None, password_command="printf '%s\\n'" % PASSWORD,
                                         auth=["plain"]))
        self.assert_ok(rc, out)
        self.assert_no_secrets(out)

    def test_password_command_fails(self):
        rc, out = self.probe(self.remote(password=None,
                                         password_command="echo keyring locked >&2; exit 2"))
        self.assertEqual(rc, 1, out)
        self.assertIn("exited with status 2: keyring locked", out)

    def test_wrong_password(self):
        before_ok, before_failed = self.dovecot_logins()
        rc, out = self.probe(self.remote(password="wrong-one", auth=["plain"]))
        self.assertEqual(rc, 1, out)
        self.assertIn("acct=home: login as alice rejected by 127.0.0.1: [AUTHENTICATIONFAILED]", out)
        self.assertIn("check remote.password", out)
        self.assertEqual(out.count("rejected by"), 1, out)
        self.assertNotIn("wrong-one", out)
        # Exactly one attempt reached Dovecot: no retry storm.
        self.assertEqual(len(re.findall(r"AUTHENTICATE PLAIN", out)), 1, out)
        # Dovecot logs the failed session when it ends, after its auth delay.
        deadline = time.time() + 10
        while time.time() < deadline and self.dovecot_logins()[1] == before_failed:
            time.sleep(0.1)
        after_ok, after_failed = self.dovecot_logins()
        self.assertEqual(after_failed - before_failed, 1, self.dc.log()[-2000:])
        self.assertEqual(after_ok, before_ok)
        attempts = re.findall(r"auth failed, (\d+) attempts", self.dc.log())
        self.assertEqual(attempts[-1], "1", self.dc.log()[-2000:])

    def test_accounts_in_parallel(self):
        bad = self.remote(password="nope", auth=["login"])
        good2 = self.remote(port=self.dc.tls_port, tls="implicit", fingerprint=self.dc.fingerprint)
        rc, out = self.probe(self.remote(), more=[("work", bad), ("third", good2)], trace=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("acct=home: ok:", out)
        self.assertIn("acct=third: ok:", out)
        self.assertIn("acct=work: login as alice rejected", out)

    # -- resilience and extensions -----------------------------------------
    def test_cut_mid_literal_then_retry(self):
        with CutProxy(("127.0.0.1", self.dc.port), cut_after=b"BODY[HEADER] {") as px:
            rc, out = self.probe(self.remote(port=px.port))
            self.assertTrue(px.cut, out)
            self.assertEqual(px.connections, 2, out)
        self.assert_ok(rc, out)
        self.assertIn("closed the connection", out)
        self.assertIn("connecting again (attempt 2 of 3)", out)

    def test_compress_deflate(self):
        conf = "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"
        with Dovecot(users={USER: PASSWORD}, extra_conf=conf) as dc:
            # A 150 kB header: the literal spans many deflate blocks and TLS records.
            filler = ["X-Filler-%d: %s" % (i, "z" * 60) for i in range(2000)]
            dc.append(USER, "INBOX", make_message(subject="the newest one",
                                                  extra_headers=filler))
            rc, out = self.probe(self.remote(port=dc.port))
            # Deflate inside TLS: records carry compressed bytes.
            rc2, out2 = self.probe(self.remote(port=dc.tls_port, tls="implicit",
                                               fingerprint=dc.fingerprint))
        self.assert_ok(rc2, out2)
        self.assertRegex(out2, r"S: A\d+ OK Begin compression")
        self.assertRegex(out2, r"BODY\[HEADER\] \{1[0-9]{5} bytes\}")
        self.assert_ok(rc, out)
        self.assertIn("COMPRESS=DEFLATE", out)
        self.assertRegex(out, r"C: A\d+ COMPRESS DEFLATE")
        # Commands after the switch still work (STATUS, EXAMINE, FETCH).
        self.assertRegex(out, r"S: A\d+ OK Begin compression")


if __name__ == "__main__":
    unittest.main()

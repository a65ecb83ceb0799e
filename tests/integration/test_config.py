"""imapbridged --check: the sample config passes, and every kind of problem is
reported with file, line and option, all at once, with exit status 78."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN, ROOT

DAEMON = os.path.join(BIN, "imapbridged")
SAMPLE = os.path.join(ROOT, "etc", "imapbridge.conf")


class ConfigCheck(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ib-config.")
        self.datadir = os.path.join(self.dir, "data")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, text, name="imapbridge.conf", mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def check(self, path):
        p = subprocess.run([DAEMON, "--check", "-c", path], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, HOME=self.dir))
        return p.returncode, p.stdout, p.stderr

    def account(self, body):
        return 'datadir = "%s";\naccounts = (\n  {\n%s\n  }\n);\n' % (self.datadir, body)

    def test_sample_config_passes(self):
        rc, out, err = self.check(SAMPLE)
        self.assertEqual(rc, 0, err)
        self.assertIn("OK (1 account)", out)

    def test_minimal_config_passes(self):
        path = self.write(self.account(
            'name = "home";\n'
            'remote = { host = "imap.example.org"; user = "me"; password = "x"; };'))
        rc, out, err = self.check(path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "%s: OK (1 account)" % path)

    def test_no_accounts_passes(self):
        path = self.write('datadir = "%s";\n' % self.datadir)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 0, err)
        self.assertIn("OK (0 accounts)", out)

    def test_misspelled_key_names_file_line_and_suggestion(self):
        path = self.write(self.account(
            'name = "home";\n'
            'remote = {\n'
            '  host = "imap.example.org";\n'
            '  prot = 993;\n'
            '  user = "me";\n'
            '};'))
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        self.assertIn("%s:7: option accounts.[0].remote.prot: unknown option "
                      "(did you mean 'port'?)" % path, err)

    def test_all_problems_reported_at_once(self):
        path = self.write(
            'datadir = "%s";\n'                                   # 1
            'maxsyncacounts = 3;\n'                               # 2 unknown key
            'accounts = (\n'                                      # 3
            '  { name = "a";\n'                                   # 4
            '    autorefresh = "often";\n'                        # 5 wrong type
            '    remote = { host = "h"; user = "u"; tls = "ssl"; };\n'  # 6 bad enum
            '  },\n'                                              # 7
            '  { name = "a";\n'                                   # 8 duplicate
            '    remote = { host = "h"; user = "u";\n'            # 9
            '      password = "x"; password_command = "y";\n'     # 10 two passwords
            '      fingerprint = "sha1:00";\n'                    # 11 bad fingerprint
            '      auth = [ "gssapi" ]; };\n'                     # 12 bad auth
            '  }\n'
            ');\n' % self.datadir)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        expected = [
            (2, "option maxsyncacounts: unknown option (did you mean 'maxsyncaccounts'?)"),
            (5, "option accounts.[0].autorefresh: expected a number"),
            (6, "option accounts.[0].remote.tls: 'ssl' is not a TLS mode"),
            (8, "option accounts.[1].name: account 'a' is already defined at %s:4" % path),
            (9, "option accounts.[1].remote: set only one of password"),
            (11, "option accounts.[1].remote.fingerprint: 'sha1:00' is not a certificate"),
            (12, "option accounts.[1].remote.auth.[0]: 'gssapi' is not an authentication"),
        ]
        for line, text in expected:
            self.assertIn("%s:%d: %s" % (path, line, text), err)
        self.assertIn("7 problems", err)
        self.assertEqual(out, "")

    def test_bad_regex(self):
        path = self.write(self.account(
            'name = "home";\n'
            'remote = { host = "h"; user = "u";\n'
            '  folders = { include = [ "^INBOX$", "^Lists/(" ]; }; };'))
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        m = re.search(r"^%s:6: option accounts\.\[0\]\.remote\.folders\.include\.\[1\]: "
                      r"bad regular expression '\^Lists/\(': (.+)$" % re.escape(path), err, re.M)
        self.assertIsNotNone(m, err)
        self.assertTrue(m.group(1).strip())

    def test_bad_nametrans_regex(self):
        path = self.write(self.account(
            'name = "home";\n'
            'remote = { host = "h"; user = "u";\n'
            '  nametrans = ( { match = "[a-"; replace = ""; } ); };'))
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        self.assertIn("option accounts.[0].remote.nametrans.[0].match: bad regular expression", err)

    def test_wrong_type(self):
        path = self.write(self.account(
            'name = "home";\n'
            'remote = { host = "h"; user = "u"; port = "993"; readonly = 1; };'))
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        self.assertIn("%s:5: option accounts.[0].remote.port: expected an integer, found a string"
                      % path, err)
        self.assertIn("option accounts.[0].remote.readonly: expected true or false, found an integer",
                      err)

    def test_fsync_is_a_boolean(self):
        ok = self.write('fsync = false;\n' + self.account('name = "home";\nremote = { host = "h"; user = "u"; };'))
        rc, out, err = self.check(ok)
        self.assertEqual(rc, 0, err)
        bad = self.write('fsync = "no";\n' + self.account('name = "home";\nremote = { host = "h"; user = "u"; };'),
                         name="bad.conf")
        rc, out, err = self.check(bad)
        self.assertEqual(rc, 78)
        self.assertIn("%s:1: option fsync: expected true or false, found a string" % bad, err)

    def test_missing_required(self):
        path = self.write('accounts = ( { autorefresh = 1.0; remote = { port = 143; }; } );\n')
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        self.assertIn("option datadir: missing", err)
        self.assertIn("option accounts.[0]: missing 'name'", err)
        self.assertIn("option accounts.[0].remote: missing 'host'", err)
        self.assertIn("option accounts.[0].remote: missing 'user'", err)

    def test_tunnel_needs_no_host_or_user(self):
        path = self.write(self.account(
            'name = "t";\nremote = { tunnel = "/usr/lib/dovecot/imap"; };'))
        rc, out, err = self.check(path)
        self.assertEqual(rc, 0, err)

    def test_syntax_error_with_line(self):
        path = self.write('datadir = "%s";\n\naccounts = (\n  { name = "x" remote }\n);\n' % self.datadir)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        self.assertRegex(err, r"%s:4: syntax error" % re.escape(path))

    def test_missing_file(self):
        path = os.path.join(self.dir, "nope.conf")
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        self.assertIn(path, err)
        self.assertIn("-c FILE", err)

    def test_inline_password_in_readable_config_warns(self):
        path = self.write(self.account(
            'name = "home";\nremote = { host = "h"; user = "u"; password = "x"; };'), mode=0o644)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 0, err)
        self.assertIn("chmod 600 %s" % path, err)
        os.chmod(path, 0o600)
        rc, out, err = self.check(path)
        self.assertNotIn("chmod", err)

    def test_password_file_readable_by_others_warns(self):
        pw = self.write("secret\n", name="pw", mode=0o644)
        path = self.write(self.account(
            'name = "home";\nremote = { host = "h"; user = "u"; password_file = "%s"; };' % pw),
            mode=0o644)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 0, err)
        self.assertIn("chmod 600 %s" % pw, err)
        # the config itself holds no password: no warning about it
        self.assertNotIn("chmod 600 %s" % path, err)

    def test_tilde_expanded_and_defaults(self):
        # the expanded datadir shows in the daemon's messages: a relative
        # datadir after expansion would be rejected, so "~/" must resolve to HOME
        path = self.write('datadir = "~/data";\n')
        rc, out, err = self.check(path)
        self.assertEqual(rc, 0, err)
        path = self.write('datadir = "data";\n')
        rc, out, err = self.check(path)
        self.assertEqual(rc, 78)
        self.assertIn("option datadir: 'data' is not an absolute path", err)


if __name__ == "__main__":
    unittest.main()

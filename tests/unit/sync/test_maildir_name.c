/*
 * Maildir file names, flags and folder directories.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/maildir_name.h"
#include "testutil.h"

static void test_flags(void)
{
	char s[8];
	maildir_flags_str(MAILDIR_F_ALL, s);
	CHECK(strcmp(s, "DFPRST") == 0);
	maildir_flags_str(MAILDIR_F_SEEN | MAILDIR_F_FLAGGED, s);
	CHECK(strcmp(s, "FS") == 0);
	maildir_flags_str(0, s);
	CHECK(strcmp(s, "") == 0);
	CHECK_EQ_INT(maildir_flags_parse("TSRPFD"), MAILDIR_F_ALL);
	CHECK_EQ_INT(maildir_flags_parse("Sa"), MAILDIR_F_SEEN);
}

static void test_parse(void)
{
	maildir_name_t n;
	char md5[MAILDIR_FMD5_LEN + 1];
	maildir_fmd5("INBOX", md5);
	/* Known value: md5("INBOX"). */
	CHECK(strcmp(md5, "7e33429f656f1e6e9d79b29c3f82c57e") == 0);

	const char *name = "1700000000_0.123.host,U=42,FMD5=ea68ec9fd3e6bea8b28c38ca8d1b31f3:2,FS";
	CHECK(maildir_name_parse(name, &n));
	CHECK_EQ_INT(n.uid, 42);
	CHECK(n.has_fmd5);
	CHECK(strcmp(n.fmd5, "ea68ec9fd3e6bea8b28c38ca8d1b31f3") == 0);
	CHECK_EQ_INT(n.flags, MAILDIR_F_FLAGGED | MAILDIR_F_SEEN);
	CHECK(n.has_info);
	CHECK_EQ_INT(n.base_len, strlen("1700000000_0.123.host"));

	/* A file from mutt or procmail: no U=, no info. */
	CHECK(maildir_name_parse("1700000000.M1P2.host", &n));
	CHECK_EQ_INT(n.uid, 0);
	CHECK(!n.has_fmd5);
	CHECK(!n.has_info);
	CHECK_EQ_INT(n.flags, 0);

	/* Dovecot-style keyword letters are kept as extra. */
	CHECK(maildir_name_parse("abc,U=7:2,Sab", &n));
	CHECK_EQ_INT(n.uid, 7);
	CHECK_EQ_INT(n.flags, MAILDIR_F_SEEN);
	CHECK(strcmp(n.extra, "ab") == 0);

	/* Bad U= values are ignored, not misread. */
	CHECK(maildir_name_parse("abc,U=x:2,S", &n));
	CHECK_EQ_INT(n.uid, 0);
	CHECK(maildir_name_parse("abc,U=99999999999:2,S", &n));
	CHECK_EQ_INT(n.uid, 0);
	CHECK(maildir_name_parse("abc,U=0:2,", &n));
	CHECK_EQ_INT(n.uid, 0);
	/* A colon in the base (host names with ':' from other programs). */
	CHECK(maildir_name_parse("a:b,U=5:2,T", &n));
	CHECK_EQ_INT(n.uid, 5);
	CHECK_EQ_INT(n.flags, MAILDIR_F_TRASHED);

	CHECK(!maildir_name_parse(".hidden", &n));
	CHECK(!maildir_name_parse("", &n));
}

static void test_build(void)
{
	char md5[MAILDIR_FMD5_LEN + 1];
	maildir_fmd5("Lists/foo", md5);
	char *s = maildir_name_build("base", 4, 9, md5, MAILDIR_F_SEEN | MAILDIR_F_REPLIED, NULL);
	char want[128];
	snprintf(want, sizeof(want), "base,U=9,FMD5=%s:2,RS", md5);
	CHECK(strcmp(s, want) == 0);
	maildir_name_t n;
	maildir_name_parse(s, &n);
	CHECK_EQ_INT(n.uid, 9);
	CHECK(strcmp(n.fmd5, md5) == 0);
	CHECK_EQ_INT(n.flags, MAILDIR_F_SEEN | MAILDIR_F_REPLIED);
	free(s);

	/* Flags change keeps base and foreign letters, merged in ASCII order. */
	s = maildir_name_with_flags("x,U=3,FMD5=00:2,Sa", MAILDIR_F_FLAGGED | MAILDIR_F_SEEN);
	CHECK(strcmp(s, "x,U=3,FMD5=00:2,FSa") == 0);
	free(s);
	s = maildir_name_with_flags("plain", MAILDIR_F_SEEN);
	CHECK(strcmp(s, "plain:2,S") == 0);
	free(s);

	/* Unique names differ and carry no ':' or '/'. */
	uint64_t ctr = 0;
	char *a = maildir_name_unique(&ctr);
	char *b = maildir_name_unique(&ctr);
	CHECK(strcmp(a, b) != 0);
	CHECK(!strchr(a, '/') && !strchr(a, ':'));
	CHECK_EQ_INT(ctr, 2);
	free(a);
	free(b);
}

static void test_folders(void)
{
	char *d = maildir_folder_to_dir("Lists/foo", '/');
	CHECK(d && strcmp(d, "Lists/foo") == 0);
	free(d);
	d = maildir_folder_to_dir("Lists/foo", '.');
	CHECK(d && strcmp(d, "Lists.foo") == 0);
	free(d);
	d = maildir_folder_to_dir("INBOX", '.');
	CHECK(d && strcmp(d, "INBOX") == 0);
	free(d);
	CHECK(maildir_folder_to_dir("a.b", '.') == NULL);
	CHECK(maildir_folder_to_dir("../etc", '/') == NULL);
	CHECK(maildir_folder_to_dir("a//b", '/') == NULL);
	CHECK(maildir_folder_to_dir("a/cur", '/') == NULL);
	CHECK(maildir_folder_to_dir("", '/') == NULL);
	CHECK(maildir_folder_to_dir(".hidden", '/') == NULL);

	char *f = maildir_dir_to_folder("Lists.foo", '.');
	CHECK(f && strcmp(f, "Lists/foo") == 0);
	free(f);
	f = maildir_dir_to_folder("Lists/foo", '/');
	CHECK(f && strcmp(f, "Lists/foo") == 0);
	free(f);
	CHECK(maildir_dir_to_folder("a..b", '.') == NULL);
}

int main(void)
{
	test_flags();
	test_parse();
	test_build();
	test_folders();
	return test_done("test_maildir_name");
}

/*
 * Scanning a Maildir tree, durable batches, the inotify watcher and mbnames,
 * on real directories in a temporary directory.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "sync/maildir_scan.h"
#include "sync/maildir_watch.h"
#include "sync/maildir_write.h"
#include "sync/mbnames.h"
#include "testutil.h"

static const char msg[] = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";

static void mkfolder(const char *root, const char *rel)
{
	const char *subs[] = {"cur", "new", "tmp"};
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s/%s", root, rel, subs[i]);
		CHECK_EQ_INT(ib_mkdirs(p, 0700), 0);
		free(p);
	}
}

static void put(const char *path, const char *data)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(data, f);
	fclose(f);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = xcalloc(1, 65536);
	size_t n = fread(b, 1, 65535, f);
	b[n] = '\0';
	fclose(f);
	return b;
}

/* path holds exactly want. */
#define CHECK_CONTENT(path, want)                                      \
	do {                                                           \
		char *got_ = slurp(path);                              \
		CHECK(got_ && strcmp(got_, (want)) == 0);              \
		free(got_);                                            \
	} while (0)

static void test_folders(const char *root)
{
	mkfolder(root, "INBOX");
	mkfolder(root, "Lists/foo");
	mkfolder(root, "Lists/bar");
	/* Not folders: a plain directory, a hidden one. */
	char *p = xasprintf("%s/junk", root);
	mkdir(p, 0700);
	free(p);
	mkfolder(root, ".hidden");

	char **names;
	size_t n;
	CHECK_EQ_INT(maildir_list_folders(root, '/', &names, &n), 0);
	CHECK_EQ_INT(n, 3);
	if (n == 3) {
		CHECK(strcmp(names[0], "INBOX") == 0);
		CHECK(strcmp(names[1], "Lists/bar") == 0);
		CHECK(strcmp(names[2], "Lists/foo") == 0);
	}
	maildir_folders_free(names, n);

	char *missing = xasprintf("%s/nope", root);
	CHECK_EQ_INT(maildir_list_folders(missing, '/', &names, &n), -ENOENT);
	free(missing);
}

static void test_flat(const char *root)
{
	mkfolder(root, "INBOX");
	mkfolder(root, "Lists.foo");
	char **names;
	size_t n;
	CHECK_EQ_INT(maildir_list_folders(root, '.', &names, &n), 0);
	CHECK_EQ_INT(n, 2);
	if (n == 2) {
		CHECK(strcmp(names[0], "INBOX") == 0);
		CHECK(strcmp(names[1], "Lists/foo") == 0);
	}
	maildir_folders_free(names, n);
}

static void test_scan_and_batch(const char *root)
{
	char *inbox = xasprintf("%s/INBOX", root);
	maildir_batch_t *b = maildir_batch_new();
	/* More than the syncfs threshold, then a small batch: both paths. */
	for (int i = 1; i <= 20; i++) {
		char name[64];
		snprintf(name, sizeof(name), "base%d,U=%d:2,S", i, i);
		CHECK_EQ_INT(
		    maildir_batch_write(b, inbox, "cur", name, msg, sizeof(msg) - 1, 1700000000),
		    0);
	}
	CHECK_EQ_INT(maildir_batch_pending(b), 20);
	size_t moved = 0;
	CHECK_EQ_INT(maildir_batch_flush(b, &moved), 0);
	CHECK_EQ_INT(moved, 20);
	CHECK_EQ_INT(maildir_batch_pending(b), 0);

	/* A name that exists already is never replaced. */
	CHECK_EQ_INT(maildir_batch_write(b, inbox, "cur", "base1,U=1:2,S", "X: y\n\nz", 7, 0), 0);
	CHECK(maildir_batch_flush(b, &moved) == MAILDIR_E_EXISTS);
	CHECK_EQ_INT(moved, 0);
	char *p = xasprintf("%s/cur/base1,U=1:2,S", inbox);
	char *c = slurp(p);
	CHECK(c && strcmp(c, msg) == 0);
	struct stat st;
	CHECK(stat(p, &st) == 0 && st.st_mtime == 1700000000);
	free(c);
	free(p);
	maildir_batch_free(b); /* removes the stale tmp file */
	p = xasprintf("%s/tmp/base1,U=1:2,S", inbox);
	CHECK(access(p, F_OK) != 0);
	free(p);

	/* Foreign files: new/ without U=, an empty file, a non-message. */
	p = xasprintf("%s/new/1700000001.M1P1.otherhost", inbox);
	put(p, msg);
	free(p);
	p = xasprintf("%s/cur/empty:2,", inbox);
	put(p, "");
	free(p);
	p = xasprintf("%s/cur/binary:2,S", inbox);
	put(p, "\x01\x02 not mail");
	CHECK(maildir_check_message(p) != NULL);
	free(p);
	p = xasprintf("%s/new/1700000001.M1P1.otherhost", inbox);
	CHECK(maildir_check_message(p) == NULL);
	free(p);

	maildir_scan_t *s = NULL;
	CHECK_EQ_INT(maildir_scan_folder(inbox, &s), 0);
	if (s) {
		CHECK_EQ_INT(s->n, 23);
		CHECK_EQ_INT(s->n_bad, 1); /* the empty file; content is checked later */
		const maildir_entry_t *e = maildir_scan_find_uid(s, 7);
		CHECK(e && strcmp(e->name, "base7,U=7:2,S") == 0 && !e->in_new);
		CHECK(maildir_scan_find_uid(s, 21) == NULL);
		size_t n_new = 0;
		for (size_t i = 0; i < s->n; i++)
			if (s->entries[i].in_new) {
				n_new++;
				CHECK_EQ_INT(s->entries[i].parsed.uid, 0);
			}
		CHECK_EQ_INT(n_new, 1);
	}
	maildir_scan_free(s);

	/* Rename and unlink through a batch. */
	b = maildir_batch_new();
	char *cur = xasprintf("%s/cur", inbox);
	CHECK_EQ_INT(maildir_batch_rename(b, cur, "base2,U=2:2,S", cur, "base2,U=2:2,FS"), 0);
	CHECK_EQ_INT(maildir_batch_rename(b, cur, "base2,U=2:2,S", cur, "zz"), -ENOENT);
	CHECK_EQ_INT(maildir_batch_rename(b, cur, "base3,U=3:2,S", cur, "base4,U=4:2,S"),
		     MAILDIR_E_EXISTS);
	CHECK_EQ_INT(maildir_batch_unlink(b, cur, "base5,U=5:2,S"), 0);
	CHECK_EQ_INT(maildir_batch_flush(b, NULL), 0);
	maildir_batch_free(b);
	CHECK_EQ_INT(maildir_scan_folder(inbox, &s), 0);
	if (s) {
		CHECK(maildir_scan_find_uid(s, 5) == NULL);
		const maildir_entry_t *e = maildir_scan_find_uid(s, 2);
		CHECK(e && e->parsed.flags == (MAILDIR_F_FLAGGED | MAILDIR_F_SEEN));
	}
	maildir_scan_free(s);
	free(cur);

	/* A vanished folder is an error, not an empty folder. */
	char *gone = xasprintf("%s/Gone", root);
	CHECK_EQ_INT(maildir_scan_folder(gone, &s), -ENOENT);
	free(gone);
	free(inbox);
}

typedef struct watch_ctx {
	int calls;
	struct ev_loop *loop;
} watch_ctx_t;

static void changed_cb(void *arg)
{
	watch_ctx_t *c = arg;
	c->calls++;
	ev_break(c->loop, EVBREAK_ONE);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	ev_break(loop, EVBREAK_ONE);
}

/* Run the loop until the watcher fires or the timeout passes. */
static void run_loop_for(watch_ctx_t *c, double timeout)
{
	ev_timer to;
	ev_timer_init(&to, timeout_cb, timeout, 0.);
	ev_timer_start(c->loop, &to);
	ev_run(c->loop, 0);
	ev_timer_stop(c->loop, &to);
}

static void run_loop(watch_ctx_t *c)
{
	run_loop_for(c, 3.0);
}

static void test_watch(const char *root)
{
	watch_ctx_t c = {0, ev_loop_new(EVFLAG_AUTO)};
	maildir_watch_t *w = NULL;
	CHECK_EQ_INT(maildir_watch_new(c.loop, root, 100, changed_cb, &c, &w), 0);
	if (!w)
		return;
	CHECK(maildir_watch_refresh(w) >= 7); /* root, INBOX{,cur,new}, Lists, foo{,cur,new} */

	/* A burst of changes is one callback. */
	for (int i = 0; i < 10; i++) {
		char *p = xasprintf("%s/INBOX/new/burst%d", root, i);
		put(p, msg);
		free(p);
	}
	run_loop(&c);
	CHECK_EQ_INT(c.calls, 1);

	/* A rename inside cur/ (a mail reader setting a flag). */
	char *a = xasprintf("%s/INBOX/new/burst0", root);
	char *b = xasprintf("%s/INBOX/cur/burst0:2,S", root);
	CHECK_EQ_INT(rename(a, b), 0);
	free(a);
	free(b);
	run_loop(&c);
	CHECK_EQ_INT(c.calls, 2);

	/* A new folder, then a file inside it: its directories got watched. */
	mkfolder(root, "Fresh/sub");
	run_loop(&c);
	CHECK_EQ_INT(c.calls, 3);
	char *p = xasprintf("%s/Fresh/sub/new/m1", root);
	put(p, msg);
	free(p);
	run_loop(&c);
	CHECK_EQ_INT(c.calls, 4);

	/* Writes into tmp/ alone are not changes. */
	p = xasprintf("%s/INBOX/tmp/partial", root);
	put(p, msg);
	free(p);
	run_loop_for(&c, 0.8); /* well past the 100 ms quiet period */
	CHECK_EQ_INT(c.calls, 4);

	maildir_watch_free(w);

	/* A root that appears later: refresh() watches it and reports a change,
	 * since whatever happened there before went unseen. */
	char *later = xasprintf("%s/Later", root);
	CHECK_EQ_INT(maildir_watch_new(c.loop, later, 100, changed_cb, &c, &w), 0);
	if (w) {
		mkfolder(later, "INBOX");
		CHECK(maildir_watch_refresh(w) >= 4);
		run_loop(&c);
		CHECK_EQ_INT(c.calls, 5);
		CHECK(maildir_watch_refresh(w) >= 4); /* nothing new: no callback */
		p = xasprintf("%s/INBOX/new/m", later);
		put(p, msg);
		free(p);
		run_loop(&c);
		CHECK_EQ_INT(c.calls, 6);
		maildir_watch_free(w);
	}
	free(later);
	ev_loop_destroy(c.loop);
}

static void test_mbnames(const char *root)
{
	config_mbnames_t mb = {0};
	mb.enabled = true;
	mb.header = "mailboxes ";
	mb.peritem = "+%(accountname)s/%(foldername)s";
	mb.sep = " ";
	mb.footer = "\n";
	mbnames_item_t items[] = {{"work", "INBOX"}, {"home", "Lists/foo"}, {"home", "INBOX"}};
	char *s = mbnames_render(&mb, items, 3);
	CHECK(strcmp(s, "mailboxes +home/INBOX +home/Lists/foo +work/INBOX\n") == 0);
	free(s);
	mb.peritem = "100%% %(foldername)s";
	s = mbnames_render(&mb, items, 1);
	CHECK(strcmp(s, "mailboxes 100% INBOX\n") == 0);
	free(s);
	mb.peritem = "+%(accountname)s/%(foldername)s";

	char *file = xasprintf("%s/out/mailboxes", root);
	mb.filename = file;
	bool changed = false;
	CHECK_EQ_INT(mbnames_update(&mb, items, 3, &changed), 0);
	CHECK(changed);
	char *c = slurp(file);
	CHECK(c && strcmp(c, "mailboxes +home/INBOX +home/Lists/foo +work/INBOX\n") == 0);
	free(c);
	CHECK_EQ_INT(mbnames_update(&mb, items, 3, &changed), 0);
	CHECK(!changed);
	CHECK_EQ_INT(mbnames_update(&mb, items, 2, &changed), 0);
	CHECK(changed);
	mb.enabled = false;
	CHECK_EQ_INT(mbnames_update(&mb, items, 3, &changed), 0);
	CHECK(!changed);

	/* From the trees named in a config. */
	config_account_t accts[2] = {0};
	accts[0].name = "home";
	accts[0].maildir_path = xasprintf("%s/tree", root);
	accts[1].name = "nomaildir";
	config_t cfg = {0};
	cfg.accounts = accts;
	cfg.n_accounts = 2;
	mkfolder(accts[0].maildir_path, "INBOX");
	mkfolder(accts[0].maildir_path, "A/B");
	size_t n = 0;
	mbnames_item_t *it = mbnames_items_from_config(&cfg, &n);
	CHECK_EQ_INT(n, 2);
	mb.enabled = true;
	s = mbnames_render(&mb, it, n);
	CHECK(strcmp(s, "mailboxes +home/A/B +home/INBOX\n") == 0);
	free(s);
	mbnames_items_free(it, n);
	free(accts[0].maildir_path);
	free(file);
}

/* Both directory times of folder dir set to now - ago_ns (nsec as given). */
static void set_dir_times(const char *dir, int64_t ago_ns, bool whole_second)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t t = (int64_t)now.tv_sec * 1000000000ll + now.tv_nsec - ago_ns;
	struct timespec ts[2];
	ts[0].tv_sec = ts[1].tv_sec = (time_t)(t / 1000000000ll);
	ts[0].tv_nsec = ts[1].tv_nsec = whole_second ? 0 : (long)(t % 1000000000ll) | 1;
	for (int i = 0; i < 2; i++) {
		char *p = xasprintf("%s/%s", dir, i ? "new" : "cur");
		CHECK_EQ_INT(utimensat(AT_FDCWD, p, ts, 0), 0);
		free(p);
	}
}

/* The folder fingerprint: racy while the directories are fresh, stable while
 * they do not change, different after any change. */
static void test_stamp(const char *root)
{
	mkfolder(root, "Stamp");
	char *dir = xasprintf("%s/Stamp", root);
	CHECK(!maildir_stamp_valid(maildir_folder_stamp(dir)));
	CHECK(!maildir_stamp_valid(MAILDIR_STAMP_RACY));
	set_dir_times(dir, 5000000000ll, false);
	uint64_t a = maildir_folder_stamp(dir);
	CHECK(maildir_stamp_valid(a));
	CHECK(maildir_folder_stamp(dir) == a);
	/* A file arrives: the time moves (racy now), then settles elsewhere. */
	char *f = xasprintf("%s/new/1700000000.M1P1.x", dir);
	put(f, msg);
	CHECK(!maildir_stamp_valid(maildir_folder_stamp(dir)));
	set_dir_times(dir, 4000000000ll, false);
	uint64_t b = maildir_folder_stamp(dir);
	CHECK(maildir_stamp_valid(b) && b != a);
	/* 0.15 s old: settled with sub-second times (the tick of such file
	 * systems is at most 10 ms); with whole seconds (2 s file systems)
	 * 1.05 to 2.05 s old is not. A time in the future is never settled,
	 * and each racy value is a new one (it names one sync). */
	set_dir_times(dir, 150000000ll, false);
	CHECK(maildir_stamp_valid(maildir_folder_stamp(dir)));
	set_dir_times(dir, -10000000000ll, false);
	uint64_t r1 = maildir_folder_stamp(dir), r2 = maildir_folder_stamp(dir);
	CHECK(!maildir_stamp_valid(r1) && !maildir_stamp_valid(r2));
	CHECK(r1 != r2 && r1 > MAILDIR_STAMP_RACY && r2 > MAILDIR_STAMP_RACY);
	set_dir_times(dir, 1500000000ll, false);
	CHECK(maildir_stamp_valid(maildir_folder_stamp(dir)));
	set_dir_times(dir, 1050000000ll, true);
	CHECK(!maildir_stamp_valid(maildir_folder_stamp(dir)));
	set_dir_times(dir, 2500000000ll, true);
	CHECK(maildir_stamp_valid(maildir_folder_stamp(dir)));
	/* No new/: not a folder to trust. */
	char *nw = xasprintf("%s/new", dir);
	unlink(f);
	CHECK_EQ_INT(rmdir(nw), 0);
	CHECK(!maildir_stamp_valid(maildir_folder_stamp(dir)));
	free(nw);
	free(f);
	free(dir);
}

/* A lazy batch writes at flush, from the caller's bytes; freed unflushed it
 * removes nothing, not even a file of the same name in tmp/. */
static void test_lazy_batch(const char *root)
{
	mkfolder(root, "Lazy");
	char *dir = xasprintf("%s/Lazy", root);
	char *tmpf = xasprintf("%s/tmp/l1,U=1", dir);
	char *fin = xasprintf("%s/new/l1,U=1", dir);
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", msg);

	maildir_batch_t *b = maildir_batch_new();
	maildir_batch_lazy(b);
	CHECK_EQ_INT(maildir_batch_write(b, dir, "new", "l1,U=1", buf, strlen(buf), 1700000000), 0);
	CHECK(access(tmpf, F_OK) != 0); /* nothing written yet */
	CHECK_EQ_INT(maildir_batch_pending(b), 1);
	size_t moved = 0;
	CHECK_EQ_INT(maildir_batch_flush(b, &moved), 0);
	CHECK_EQ_INT(moved, 1);
	char *c = slurp(fin);
	CHECK(c && strcmp(c, msg) == 0);
	free(c);
	struct stat st;
	CHECK(stat(fin, &st) == 0 && st.st_mtime == 1700000000);

	/* The same name again: the flush refuses to replace it, and the file
	 * it wrote in tmp/ goes with the batch. */
	CHECK_EQ_INT(maildir_batch_write(b, dir, "new", "l1,U=1", "X: y\n\nz", 7, 0), 0);
	CHECK(maildir_batch_flush(b, &moved) == MAILDIR_E_EXISTS);
	CHECK(access(tmpf, F_OK) == 0);
	maildir_batch_free(b);
	CHECK(access(tmpf, F_OK) != 0);
	c = slurp(fin);
	CHECK(c && strcmp(c, msg) == 0);
	free(c);

	/* A side file in a lazy batch: written by the flush too, from the
	 * batch's own copy, the last version staged; in place before the
	 * messages. */
	char *side = xasprintf("%s/side", dir);
	char *side_tmp = xasprintf("%s/side.tmp", dir);
	put(side, "old\n");
	b = maildir_batch_new();
	maildir_batch_lazy(b);
	char stage[16];
	snprintf(stage, sizeof(stage), "first\n");
	CHECK_EQ_INT(maildir_batch_replace(b, dir, "side", stage, strlen(stage)), 0);
	snprintf(stage, sizeof(stage), "second\n");
	CHECK_EQ_INT(maildir_batch_replace(b, dir, "side", stage, strlen(stage)), 0);
	snprintf(stage, sizeof(stage), "caller's\n"); /* the batch has its copy */
	CHECK(access(side_tmp, F_OK) != 0);
	CHECK_EQ_INT(maildir_batch_write(b, dir, "cur", "l2,U=2", buf, strlen(buf), 0), 0);
	CHECK_EQ_INT(maildir_batch_flush(b, &moved), 0);
	CHECK_EQ_INT(moved, 1);
	CHECK_CONTENT(side, "second\n");
	CHECK(access(side_tmp, F_OK) != 0);
	/* A link put where the staged copy goes is replaced, not written
	 * through. */
	char *victim = xasprintf("%s/victim", dir);
	put(victim, "not ours\n");
	CHECK_EQ_INT(symlink(victim, side_tmp), 0);
	CHECK_EQ_INT(maildir_batch_replace(b, dir, "side", "linked\n", 7), 0);
	CHECK_EQ_INT(maildir_batch_flush(b, &moved), 0);
	CHECK_CONTENT(victim, "not ours\n");
	CHECK_CONTENT(side, "linked\n");
	unlink(victim);
	free(victim);
	/* Staged and freed unflushed: the old one stays, nothing is left. */
	CHECK_EQ_INT(maildir_batch_replace(b, dir, "side", "third\n", 6), 0);
	maildir_batch_free(b);
	CHECK_CONTENT(side, "linked\n");
	CHECK(access(side_tmp, F_OK) != 0);
	free(side_tmp);
	free(side);

	/* Freed before its flush: another writer's file of that name stays. */
	put(tmpf, "someone else's\n");
	b = maildir_batch_new();
	maildir_batch_lazy(b);
	CHECK_EQ_INT(maildir_batch_write(b, dir, "cur", "l1,U=1", buf, strlen(buf), 0), 0);
	maildir_batch_free(b);
	CHECK_CONTENT(tmpf, "someone else's\n");
	unlink(tmpf);
	free(tmpf);
	free(fin);
	free(dir);
}

int main(void)
{
	char *tmp = test_tmpdir("ib-maildir");
	char *r1 = xasprintf("%s/nested", tmp);
	char *r2 = xasprintf("%s/flat", tmp);
	test_folders(r1);
	test_flat(r2);
	test_scan_and_batch(r1);
	test_lazy_batch(r1);
	test_watch(r1);
	test_mbnames(tmp);
	test_stamp(r1);
	free(r1);
	free(r2);
	test_rmtree(tmp);
	free(tmp);
	return test_done("test_maildir_scan");
}

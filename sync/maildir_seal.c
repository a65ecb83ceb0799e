/*
 * Seals of folders that only we changed; see maildir_seal.h.
 */
#include "sync/maildir_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "sync/maildir_scan.h"
#include "sync/maildir_write.h"

/* IN_ATTRIB: the directory's own times set back by hand (a restore). */
#define SEAL_MASK                                                                                  \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |     \
	 IN_ATTRIB)

/*
 * Only on local file systems (ib_path_local_fs()) does inotify see every
 * change and do directory times come from the kernel's clock. On a network
 * file system another client's change raises no event here, so nothing
 * could be proven there.
 */

/*
 * How long after the directories' newest time a change could still leave
 * that time as it is. These file systems take times from the kernel's coarse
 * clock (or finer): one tick of it, doubled for safety, at least 10 ms.
 * Times without a fraction of a second mean a file system with whole-second
 * times: the fingerprint rules' coarse settle time.
 */
static int64_t seal_settle_ns(int64_t stamp_settle)
{
	if (stamp_settle != MAILDIR_STAMP_SETTLE_NS)
		return stamp_settle;
	struct timespec res;
	int64_t tick = 10000000ll;
	if (clock_getres(CLOCK_REALTIME_COARSE, &res) == 0) {
		int64_t r = 2 * ((int64_t)res.tv_sec * 1000000000ll + res.tv_nsec);
		if (r > tick)
			tick = r;
	}
	return tick < stamp_settle ? tick : stamp_settle;
}

/* At the end, wait at most this long for the last sessions to settle. */
#define SEAL_FINAL_WAIT_NS 20000000ll

/* One announced change, waiting for its event. */
typedef struct expect {
	struct expect *next;
	int kind;
	bool in_new;
	char name[];
} expect_t;

/* One watched session of a folder. */
typedef struct session {
	char *dir;
	int wd[2]; /* cur/, new/ */
	bool spoiled;
	bool ended;
	bool has_old;
	maildir_seal_rec_t rec, old;
	expect_t **tab; /* announced changes by hash of their name */
	size_t n_tab, n_exp;
} session_t;

struct maildir_seal {
	int fd; /* -1: no inotify */
	session_t **v;
	size_t n, cap;
};

static uint64_t name_hash(int kind, bool in_new, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(kind * 2 + in_new);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h;
}

/* maildir_seal_t.fd before the first watch. */
#define SEAL_FD_LATER (-2)

maildir_seal_t *maildir_seal_new(void)
{
	maildir_seal_t *s = xcalloc(1, sizeof(*s));
	/* The inotify instance comes with the first watch: closing one that
	 * held watches waits for the kernel to retire them (milliseconds), a
	 * price a sync that wrote nothing should not pay. */
	s->fd = SEAL_FD_LATER;
	return s;
}

static void session_free(maildir_seal_t *s, session_t *ss)
{
	for (int i = 0; i < 2; i++)
		if (ss->wd[i] >= 0 && s->fd >= 0)
			inotify_rm_watch(s->fd, ss->wd[i]);
	for (size_t i = 0; i < ss->n_tab; i++)
		for (expect_t *e = ss->tab[i], *nx; e; e = nx) {
			nx = e->next;
			free(e);
		}
	free(ss->tab);
	free(ss->dir);
	free(ss);
}

/* Remove session i from the list (order does not matter). */
static void drop(maildir_seal_t *s, size_t i)
{
	session_free(s, s->v[i]);
	s->v[i] = s->v[--s->n];
}

void maildir_seal_free(maildir_seal_t *s)
{
	if (!s)
		return;
	while (s->n)
		drop(s, s->n - 1);
	free(s->v);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static session_t *get(maildir_seal_t *s, int h)
{
	/* Handles are the watch descriptor of cur/: unique while watched. */
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i]->wd[0] == h)
			return s->v[i];
	return NULL;
}

int maildir_seal_watch(maildir_seal_t *s, const char *dir)
{
	if (s->fd == SEAL_FD_LATER)
		s->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (s->fd < 0)
		return -1;
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i]->dir, dir) == 0) {
			drop(s, i);
			break;
		}
	if (!ib_path_local_fs(dir))
		return -1;
	session_t *ss = xcalloc(1, sizeof(*ss));
	ss->dir = xstrdup(dir);
	ss->wd[0] = ss->wd[1] = -1;
	static const char *const subs[] = {"cur", "new"};
	for (int i = 0; i < 2; i++) {
		char *p = xasprintf("%s/%s", dir, subs[i]);
		ss->wd[i] = inotify_add_watch(s->fd, p, SEAL_MASK | IN_ONLYDIR);
		free(p);
		if (ss->wd[i] < 0) {
			session_free(s, ss);
			return -1;
		}
	}
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = ss;
	return ss->wd[0];
}

static void tab_grow(session_t *ss)
{
	size_t nn = ss->n_tab ? ss->n_tab * 2 : 64;
	expect_t **t = xcalloc(nn, sizeof(*t));
	for (size_t i = 0; i < ss->n_tab; i++)
		for (expect_t *e = ss->tab[i], *nx; e; e = nx) {
			nx = e->next;
			size_t b = name_hash(e->kind, e->in_new, e->name) & (nn - 1);
			e->next = t[b];
			t[b] = e;
		}
	free(ss->tab);
	ss->tab = t;
	ss->n_tab = nn;
}

void maildir_seal_expect(maildir_seal_t *s, int h, int kind, bool in_new, const char *name)
{
	session_t *ss = h >= 0 ? get(s, h) : NULL;
	if (!ss || ss->spoiled)
		return;
	if (ss->n_exp >= ss->n_tab)
		tab_grow(ss);
	size_t len = strlen(name);
	expect_t *e = xmalloc(sizeof(*e) + len + 1);
	e->kind = kind;
	e->in_new = in_new;
	memcpy(e->name, name, len + 1);
	size_t b = name_hash(kind, in_new, name) & (ss->n_tab - 1);
	e->next = ss->tab[b];
	ss->tab[b] = e;
	ss->n_exp++;
}

void maildir_seal_spoil(maildir_seal_t *s, int h)
{
	session_t *ss = h >= 0 ? get(s, h) : NULL;
	if (ss)
		ss->spoiled = true;
}

/* An event of the session: one of ours (consume it) or not (spoil). */
static void consume(session_t *ss, int kind, bool in_new, const char *name)
{
	if (ss->spoiled)
		return;
	if (ss->n_tab) {
		size_t b = name_hash(kind, in_new, name) & (ss->n_tab - 1);
		for (expect_t **pp = &ss->tab[b]; *pp; pp = &(*pp)->next) {
			expect_t *e = *pp;
			if (e->kind == kind && e->in_new == in_new && strcmp(e->name, name) == 0) {
				*pp = e->next;
				free(e);
				ss->n_exp--;
				return;
			}
		}
	}
	ss->spoiled = true;
}

static void spoil_all(maildir_seal_t *s)
{
	for (size_t i = 0; i < s->n; i++)
		s->v[i]->spoiled = true;
}

static void read_events(maildir_seal_t *s)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t got = read(s->fd, buf, sizeof(buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			/* EAGAIN: all read. Anything else: nothing can be proven. */
			if (got == 0 || errno != EAGAIN)
				spoil_all(s);
			return;
		}
		for (char *p = buf; p < buf + got;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				spoil_all(s);
				continue;
			}
			session_t *ss = NULL;
			bool in_new = false;
			for (size_t i = 0; i < s->n && !ss; i++)
				for (int k = 0; k < 2; k++)
					if (s->v[i]->wd[k] == ev->wd) {
						ss = s->v[i];
						in_new = k == 1;
					}
			if (!ss)
				continue; /* a session dropped earlier */
			if (ev->mask & (IN_CREATE | IN_MOVED_TO))
				consume(ss, MAILDIR_SEAL_APPEAR, in_new, ev->len ? ev->name : "");
			else if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
				consume(ss, MAILDIR_SEAL_DISAPPEAR, in_new,
					ev->len ? ev->name : "");
			else if ((ev->mask & IN_ATTRIB) && ev->len)
				continue; /* a file's attributes: not in the fingerprint */
			else
				ss->spoiled = true; /* the directory itself moved or went */
		}
	}
}

void maildir_seal_drain(maildir_seal_t *s)
{
	if (s->fd >= 0 && s->n > 0)
		read_events(s);
}

void maildir_seal_end(maildir_seal_t *s, int h, const maildir_seal_rec_t *r,
		      const maildir_seal_rec_t *old)
{
	session_t *ss = h >= 0 ? get(s, h) : NULL;
	if (!ss)
		return;
	ss->ended = true;
	ss->rec = *r;
	ss->has_old = old != NULL;
	if (old)
		ss->old = *old;
	/* 0 and RACY name no session: the directories could not be looked at. */
	if (r->recorded <= MAILDIR_STAMP_RACY)
		ss->spoiled = true;
}

static bool uidnext_ok(const maildir_seal_rec_t *r, uint32_t u)
{
	return u == r->uidnext_sel || u == r->uidnext_end;
}

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000ll + t.tv_nsec;
}

/* The check at the end of a seal's line: FNV-1a of what precedes it. */
static uint32_t seal_check(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* Write dir's seal. No fsync: see maildir_seal.h. It is rewritten in place
 * (no new file and no rename per folder and sync): a write cut short by a
 * crash fails the line's check and is ignored, as a lost seal is. */
static void write_seal(const char *dir, const maildir_seal_rec_t *r)
{
	char *path = xasprintf("%s/%s", dir, MAILDIR_SEAL_FILE);
	char line[128];
	int len = snprintf(line, sizeof(line), "%016" PRIx64 " %016" PRIx64 " %" PRIu32 " %" PRIu32,
			   r->recorded, r->after, r->uidnext_sel, r->uidnext_end);
	len += snprintf(line + len, sizeof(line) - (size_t)len, " %08" PRIx32 "\n",
			seal_check(line, (size_t)len));
	/* Never through a link or into a pipe put in its place: those are
	 * removed instead, and the folder is sealed next time. */
	int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	struct stat st;
	bool ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		  pwrite(fd, line, (size_t)len, 0) == len && ftruncate(fd, len) == 0;
	if (fd >= 0 && close(fd) != 0)
		ok = false;
	if (!ok)
		unlink(path);
	free(path);
}

/* One pass over the ended sessions; returns the longest wait (ns) among
 * those that are not settled yet, 0 if none. */
static int64_t poll_once(maildir_seal_t *s)
{
	read_events(s);
	int64_t now = 0, wait = 0;
	for (size_t i = 0; i < s->n;) {
		session_t *ss = s->v[i];
		if (!ss->ended) {
			i++;
			continue;
		}
		/* An announced change that never showed up: something went wrong
		 * half-way; prove nothing. */
		if (ss->spoiled || ss->n_exp) {
			drop(s, i);
			continue;
		}
		uint64_t after;
		int64_t newest, settle;
		if (maildir_folder_stamp_raw(ss->dir, &after, &newest, &settle) != 0) {
			drop(s, i);
			continue;
		}
		settle = seal_settle_ns(settle);
		if (!now)
			now = now_ns();
		/* Until the directories' time is settled a change could leave it
		 * as it is; the watch must see such a change. So wait. */
		if (newest > now - settle) {
			if (newest - (now - settle) > wait)
				wait = newest - (now - settle);
			i++;
			continue;
		}
		/* The stamp was taken after the events were read: one more read
		 * catches a change made in between. */
		read_events(s);
		/* Not when the fingerprint still equals the recorded value (plain
		 * match) or the accepted seal already says the same. The second
		 * stamp proves that no change slipped in between the first one
		 * and the read (its event is queued by the same system call that
		 * moved the time, more than the settle time ago). */
		uint64_t again;
		ss->rec.after = after;
		bool same_seal = ss->has_old && after == ss->old.after &&
				 ss->rec.recorded == ss->old.recorded &&
				 uidnext_ok(&ss->old, ss->rec.uidnext_sel) &&
				 uidnext_ok(&ss->old, ss->rec.uidnext_end);
		if (!ss->spoiled && !ss->n_exp && after != ss->rec.recorded && !same_seal &&
		    maildir_folder_stamp_raw(ss->dir, &again, &newest, &settle) == 0 &&
		    again == after)
			write_seal(ss->dir, &ss->rec);
		drop(s, i);
	}
	return wait;
}

void maildir_seal_poll(maildir_seal_t *s, bool final)
{
	if (s->fd < 0 || s->n == 0)
		return;
	int64_t wait = poll_once(s);
	/* The last folders of a run ended a moment ago: a short wait now saves
	 * reading them in full next time. */
	if (final && wait > 0 && wait <= SEAL_FINAL_WAIT_NS) {
		struct timespec ts = {0, (long)wait};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		poll_once(s);
	}
}

bool maildir_seal_matches(const char *dir, uint64_t recorded, uint32_t uidnext, uint64_t stamp,
			  maildir_seal_rec_t *out)
{
	char *path = xasprintf("%s/%s", dir, MAILDIR_SEAL_FILE);
	char line[128];
	int n = maildir_read_own(path, line, sizeof(line));
	free(path);
	if (n <= 0)
		return false;
	maildir_seal_rec_t r = {0, 0, 0, 0};
	uint32_t check = 0;
	int at = 0;
	int got = sscanf(line, "%16" SCNx64 " %16" SCNx64 " %" SCNu32 " %" SCNu32 "%n %8" SCNx32,
			 &r.recorded, &r.after, &r.uidnext_sel, &r.uidnext_end, &at, &check);
	bool ok = got == 5 && check == seal_check(line, (size_t)at) &&
		  r.recorded > MAILDIR_STAMP_RACY && r.recorded == recorded && r.after == stamp &&
		  uidnext_ok(&r, uidnext) && maildir_stamp_valid(stamp);
	if (ok && out)
		*out = r;
	return ok;
}

void maildir_seal_remove(const char *dir)
{
	char *path = xasprintf("%s/%s", dir, MAILDIR_SEAL_FILE);
	unlink(path);
	free(path);
}

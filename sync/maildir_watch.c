/*
 * inotify watcher for a Maildir tree; see maildir_watch.h.
 */
#include "sync/maildir_watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

#define WATCH_MASK                                                                                 \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |     \
	 IN_ONLYDIR | IN_CLOSE_WRITE)

typedef struct watched {
	int wd;
	char *path;
} watched_t;

struct maildir_watch {
	struct ev_loop *loop;
	ev_io io;	/* io.data = this */
	ev_timer quiet; /* quiet.data = this */
	int fd;
	char *root;
	double quiet_s;
	maildir_changed_cb cb;
	void *arg;
	watched_t *dirs;
	size_t n_dirs, cap_dirs;
};

static watched_t *find_wd(maildir_watch_t *w, int wd)
{
	for (size_t i = 0; i < w->n_dirs; i++)
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	return NULL;
}

static void forget_wd(maildir_watch_t *w, int wd)
{
	for (size_t i = 0; i < w->n_dirs; i++)
		if (w->dirs[i].wd == wd) {
			free(w->dirs[i].path);
			w->dirs[i] = w->dirs[--w->n_dirs];
			return;
		}
}

/* Watch path and, below it, every directory but tmp/. Returns how many
 * directories were not watched before. */
static int add_tree(maildir_watch_t *w, const char *path, int depth)
{
	int added = 0;
	int wd = inotify_add_watch(w->fd, path, WATCH_MASK);
	if (wd < 0)
		return 0;
	watched_t *e = find_wd(w, wd);
	if (e) {
		/* Same inode seen again (refresh); keep the latest path. */
		free(e->path);
		e->path = xstrdup(path);
	} else {
		if (w->n_dirs == w->cap_dirs) {
			w->cap_dirs = w->cap_dirs ? w->cap_dirs * 2 : 32;
			w->dirs = xrealloc(w->dirs, w->cap_dirs * sizeof(*w->dirs));
		}
		w->dirs[w->n_dirs].wd = wd;
		w->dirs[w->n_dirs].path = xstrdup(path);
		w->n_dirs++;
		added++;
	}
	if (depth >= 32)
		return added;
	DIR *d = opendir(path);
	if (!d)
		return added;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strcmp(de->d_name, "tmp") == 0)
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		char *sub = xasprintf("%s/%s", path, de->d_name);
		struct stat st;
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			added += add_tree(w, sub, depth + 1);
		free(sub);
	}
	closedir(d);
	return added;
}

static void arm(maildir_watch_t *w)
{
	/* Restart the quiet period on every event: one callback per burst. */
	ev_timer_stop(w->loop, &w->quiet);
	ev_timer_set(&w->quiet, w->quiet_s, 0.);
	ev_timer_start(w->loop, &w->quiet);
}

static void quiet_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	maildir_watch_t *w = t->data;
	ev_timer_stop(loop, t);
	w->cb(w->arg);
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	maildir_watch_t *w = io->data;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;
	for (;;) {
		ssize_t n = read(w->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				changed = true;
				continue;
			}
			if (ev->mask & IN_IGNORED) {
				forget_wd(w, ev->wd);
				changed = true;
				continue;
			}
			watched_t *d = find_wd(w, ev->wd);
			/* Hidden files (.swp, dotlock files) are not messages. */
			if (ev->len && ev->name[0] == '.')
				continue;
			if (d && ev->len && (ev->mask & IN_ISDIR) &&
			    (ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
			    strcmp(ev->name, "tmp") != 0) {
				char *sub = xasprintf("%s/%s", d->path, ev->name);
				add_tree(w, sub, 0);
				free(sub);
			}
			/* IN_CLOSE_WRITE counts too: a program writing straight into
			 * new/ (not through tmp/) has finished the file only then. */
			changed = true;
		}
	}
	if (changed)
		arm(w);
}

int maildir_watch_new(struct ev_loop *loop, const char *root, unsigned quiet_ms,
		      maildir_changed_cb cb, void *arg, maildir_watch_t **out)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return -errno;
	maildir_watch_t *w = xcalloc(1, sizeof(*w));
	w->loop = loop;
	w->fd = fd;
	w->root = xstrdup(root);
	w->quiet_s = (quiet_ms ? quiet_ms : 200) / 1000.0;
	w->cb = cb;
	w->arg = arg;
	ev_io_init(&w->io, io_cb, fd, EV_READ);
	w->io.data = w;
	ev_init(&w->quiet, quiet_cb);
	w->quiet.data = w;
	ev_io_start(loop, &w->io);
	add_tree(w, w->root, 0);
	*out = w;
	return 0;
}

int maildir_watch_refresh(maildir_watch_t *w)
{
	/* Directories that were not watched may have changed unseen (the tree
	 * was created or restored since): report a change to be sure. */
	if (add_tree(w, w->root, 0) > 0)
		arm(w);
	return (int)w->n_dirs;
}

void maildir_watch_free(maildir_watch_t *w)
{
	if (!w)
		return;
	ev_io_stop(w->loop, &w->io);
	ev_timer_stop(w->loop, &w->quiet);
	close(w->fd);
	for (size_t i = 0; i < w->n_dirs; i++)
		free(w->dirs[i].path);
	free(w->dirs);
	free(w->root);
	free(w);
}

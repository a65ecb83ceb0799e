/*
 * Watching a Maildir tree with inotify, on the daemon's libev loop.
 *
 * Every directory of the tree except tmp/ is watched: the root, each folder
 * and its cur/ and new/. A burst of events (a mail reader renaming a hundred
 * files, a folder created with mkdir -p) is coalesced: changed_cb runs once,
 * after the tree has been quiet for quiet_ms. New directories are watched as
 * they appear, so a new folder is noticed too. When the kernel queue overflows
 * the callback runs as well: the caller rescans everything anyway.
 *
 * The watcher does not say what changed; the caller rescans the tree (cheap:
 * directory listings, no file contents). It owns its inotify descriptor and
 * its libev watchers; maildir_watch_free() stops and releases them.
 */
#ifndef IB_MAILDIR_WATCH_H
#define IB_MAILDIR_WATCH_H

#include <ev.h>

typedef struct maildir_watch maildir_watch_t;

typedef void (*maildir_changed_cb)(void *arg);

/*
 * Start watching root (which need not exist yet: maildir_watch_refresh()
 * picks it up later). Returns 0 and *out, or -errno when inotify is not
 * available. quiet_ms 0 means the default, 200 ms.
 */
int maildir_watch_new(struct ev_loop *loop, const char *root, unsigned quiet_ms,
		      maildir_changed_cb cb, void *arg, maildir_watch_t **out);

/* Walk the tree again and watch directories that are not watched yet (the
 * root was created or recreated since). If there were any, changes there may
 * have gone unseen, so changed_cb runs after the quiet period. Call it after
 * every sync round. Returns the number of watched directories. */
int maildir_watch_refresh(maildir_watch_t *w);

void maildir_watch_free(maildir_watch_t *w);

#endif

/*
 * The data directory lock: one imapbridged per data directory.
 *
 * <datadir>/imapbridged.lock is held with flock(2) for the daemon's lifetime
 * and holds its pid, so a second daemon can say who is in the way. The kernel
 * drops the lock when the process dies, so a stale file after a crash never
 * blocks a restart.
 *
 * Ownership: lock_acquire() gives the caller a lock_t that lock_release()
 * releases and frees.
 */
#ifndef IB_SERVER_LOCK_H
#define IB_SERVER_LOCK_H

#include <stddef.h>
#include <sys/types.h>

#define LOCK_FILE_NAME "imapbridged.lock"

enum lock_err {
	LOCK_OK = 0,
	LOCK_E_HELD = -1, /* another process holds it */
	LOCK_E_IO = -2,	  /* the file cannot be created or written */
};

typedef struct lock lock_t;

/*
 * Take the lock of datadir and write our pid into it. On failure fills err
 * (size errlen) with one sentence for people: who holds it, or why the file
 * cannot be used, and what to do.
 */
int lock_acquire(const char *datadir, lock_t **out, char *err, size_t errlen);

/* The pid written in datadir's lock file, or 0 if none can be read. */
pid_t lock_read_pid(const char *datadir);

/* Release and free; NULL is fine. */
void lock_release(lock_t *lk);

const char *lock_strerror(int err);

#endif

/*
 * The daemon: one libev loop and everything hanging off it (config, store,
 * control socket, lock, and the sync engine once it is plugged in). There is
 * no global daemon: main() makes one and passes it down, so tests can build
 * as many as they need.
 *
 * Lifecycle: daemon_new() -> daemon_start() (data directory, lock, store,
 * control socket, signals) -> daemon_run() (until SIGTERM/SIGINT or
 * daemon_stop()) -> daemon_free() (closes the store, removes the socket,
 * releases the lock).
 *
 * Plugging in the sync engine: it registers a daemon_sync_ops_t with
 * daemon_set_sync(). Until then every sync entry point logs "sync engine not
 * available in this build" and reports exit status 1.
 *
 * Ownership: the daemon owns its config_t; daemon_config() returns a pointer
 * that stays valid until the next reload (the reload hook is told of the swap
 * and must drop pointers into the old config before it returns). The daemon
 * owns the store handle; the sync engine borrows it.
 */
#ifndef IB_SERVER_DAEMON_H
#define IB_SERVER_DAEMON_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"
#include "lib/config.h"
#include "store/store.h"

typedef struct daemon daemon_t;

/* Exit statuses of INTERFACE.md. */
enum daemon_exit {
	DAEMON_EXIT_OK = 0,
	DAEMON_EXIT_ERRORS = 1, /* some account or folder failed */
	DAEMON_EXIT_HELD = 2,	/* a folder is held for safety */
	DAEMON_EXIT_USAGE = 64,
	DAEMON_EXIT_CONFIG = 78,
};

enum daemon_err {
	DAEMON_OK = 0,
	DAEMON_E_DATADIR = -1,	 /* the data directory cannot be created or written */
	DAEMON_E_LOCKED = -2,	 /* another daemon holds the lock */
	DAEMON_E_LOCK = -3,	 /* the lock file cannot be created */
	DAEMON_E_SOCKET = -4,	 /* the control socket cannot be set up */
	DAEMON_E_STORE = -5,	 /* the store cannot be opened */
	DAEMON_E_CONFIG = -6,	 /* the config is invalid (see the logged problems) */
	DAEMON_E_NOSYNC = -7,	 /* no sync engine in this build */
	DAEMON_E_NOACCOUNT = -8, /* no such account */
};

const char *daemon_strerror(int err);

/* Called when an asynchronous sync finishes; status is an exit status. */
typedef void (*daemon_done_cb)(int status, const char *message, void *arg);

/*
 * What the sync engine provides. Every member may be NULL (treated as "not
 * available"). ctx is the engine's own state, given back on every call.
 */
typedef struct daemon_sync_ops {
	/* -o: sync the selected accounts (only: comma-separated names, NULL for
	 * all) once and return an exit status (0, 1 or 2). May run the loop. */
	int (*sync_once)(void *ctx, daemon_t *d, const char *only);
	/* SIGUSR1 / `imapbridge sync`: start a sync of account (NULL: all) and
	 * call done when finished. Returns 0 if started, negative if not. */
	int (*sync_now)(void *ctx, daemon_t *d, const char *account, daemon_done_cb done,
			void *arg);
	/* The config was replaced (SIGHUP or an account added/removed): old is
	 * freed after this returns. */
	void (*config_reloaded)(void *ctx, daemon_t *d, const config_t *old_cfg,
				const config_t *new_cfg);
	/* An account was removed by the CLI: stop syncing it. Afterwards the
	 * daemon marks it removed in the store (purge: drops its local data).
	 * Never deletes anything remote. */
	void (*account_removed)(void *ctx, daemon_t *d, const char *account, bool purge);
	/* `imapbridge folder recover`: release a held folder and re-pair by
	 * content. Returns an exit status; fills msg (size msglen) for the user. */
	int (*folder_recover)(void *ctx, daemon_t *d, const char *account, const char *folder,
			      char *msg, size_t msglen);
	/* `imapbridge status`: append to out the members of a JSON object for
	 * account (no braces), e.g. "\"state\":\"idle\"". The daemon adds
	 * the account's settings and "folders" (from the store) itself. */
	void (*status_json)(void *ctx, daemon_t *d, const char *account, buf_t *out);
	/* The daemon is stopping: cancel everything, release the store. */
	void (*stop)(void *ctx, daemon_t *d);
} daemon_sync_ops_t;

typedef struct daemon_opts {
	const char *config_path; /* the main config file */
	const char *only;	 /* -a: comma-separated account names, or NULL */
	bool one_at_a_time;	 /* -1 */
	bool once;		 /* -o: sync once and exit, no listener or socket */
} daemon_opts_t;

/* A daemon on loop with cfg (ownership of cfg passes to the daemon). */
daemon_t *daemon_new(struct ev_loop *loop, config_t *cfg, const daemon_opts_t *opts);

/*
 * Prepare the data directory, take the lock, open the store, open the
 * control socket (not with opts->once) and install the signal watchers.
 * On failure logs one sentence saying what to do and returns a daemon_err.
 */
int daemon_start(daemon_t *d);

/* Run the loop until stopped; returns the exit status. */
int daemon_run(daemon_t *d);

/* -o: sync once through the sync engine; returns an exit status. */
int daemon_sync_once(daemon_t *d);

/* Start "sync now" for account (NULL: all); done is called exactly once,
 * possibly before this returns. */
void daemon_sync_now(daemon_t *d, const char *account, daemon_done_cb done, void *arg);

/* Re-read the config. On problems keep the current config, log them, fill
 * msgs (if not NULL) and return DAEMON_E_CONFIG. */
struct config_msgs;
int daemon_reload(daemon_t *d, struct config_msgs *msgs);

/* Ask the loop to stop; daemon_run() returns status. */
void daemon_stop(daemon_t *d, int status);

/* Stop, close the store, remove the socket, release the lock, free. */
void daemon_free(daemon_t *d);

struct ev_loop *daemon_loop(const daemon_t *d);
const config_t *daemon_config(const daemon_t *d);
const daemon_opts_t *daemon_opts(const daemon_t *d);
/* The store, open from daemon_start() to daemon_free(); NULL before. */
store_t *daemon_store(const daemon_t *d);

/*
 * Take account out of the store after `imapbridge account remove`: marked
 * removed (data kept), or with purge every local record of it dropped.
 * Remote mail is never touched. 0 or a STORE_E* code (no such account in
 * the store is not an error).
 */
int daemon_store_remove_account(daemon_t *d, const char *account, bool purge);
/* Path of the control socket, valid while d lives. */
const char *daemon_socket_path(const daemon_t *d);

/*
 * Other parts of the daemon (the IMAP listener, ...) register as components
 * to hear of config swaps and of the stop. Members may be NULL. reloaded is
 * called after the sync engine's config_reloaded, in registration order;
 * stopping in reverse order, before the store is closed. comp must outlive d.
 */
typedef struct daemon_component {
	const char *name;
	void (*reloaded)(void *arg, daemon_t *d, const config_t *old_cfg, const config_t *new_cfg);
	void (*stopping)(void *arg, daemon_t *d);
} daemon_component_t;

void daemon_add_component(daemon_t *d, const daemon_component_t *comp, void *arg);

/* Register the sync engine; ops must outlive d. */
void daemon_set_sync(daemon_t *d, const daemon_sync_ops_t *ops, void *ctx);
const daemon_sync_ops_t *daemon_sync_ops(const daemon_t *d, void **ctx);

#endif

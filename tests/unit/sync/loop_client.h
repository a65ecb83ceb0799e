/*
 * The client side of the tests against scripted_server.h: an account that
 * points at the scripted server, an IMAP replica session for it, a loop run
 * bounded by a guard, and a string check that prints both sides. Header
 * only (static functions).
 */
#ifndef IB_TESTS_LOOP_CLIENT_H
#define IB_TESTS_LOOP_CLIENT_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <ev.h>

#include "lib/config.h"
#include "sync/imap_replica.h"
#include "sync/replica.h"
#include "testutil.h"

#define LC_UNUSED __attribute__((unused))

/* Account "t" of user alice at 127.0.0.1:port, in the clear. */
static LC_UNUSED void lc_account(config_account_t *acct, int port)
{
	memset(acct, 0, sizeof(*acct));
	acct->name = "t";
	acct->remote.host = "127.0.0.1";
	acct->remote.port = port;
	acct->remote.tls = CONFIG_TLS_NONE;
	acct->remote.user = "alice";
}

static void lc_guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w, (void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* Run loop until *finished or 10 s passed. */
static LC_UNUSED void lc_run(struct ev_loop *loop, const bool *finished)
{
	ev_timer guard;
	ev_timer_init(&guard, lc_guard_cb, 10., 0.);
	ev_timer_start(loop, &guard);
	while (!*finished && ev_is_active(&guard))
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &guard);
}

/* An IMAP replica session for acct on a new *loop. */
static LC_UNUSED replica_t *lc_replica(struct ev_loop **loop, config_account_t *acct, int port)
{
	*loop = ev_loop_new(EVFLAG_AUTO);
	lc_account(acct, port);
	return imap_replica_new(*loop, acct, "t");
}

/* Free the session (it is released from the loop), then the loop. */
static LC_UNUSED void lc_replica_done(struct ev_loop *loop, replica_t *r)
{
	replica_free(r);
	ev_run(loop, EVRUN_NOWAIT);
	ev_loop_destroy(loop);
}

#endif

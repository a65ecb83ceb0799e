/*
 * Connection check: connect to each selected account's remote server, log in,
 * list its folders and exit. Used by `imapbridged --probe` so a user can test
 * settings without syncing anything.
 */
#ifndef IB_SYNC_PROBE_H
#define IB_SYNC_PROBE_H

#include <ev.h>

#include "lib/config.h"

/*
 * Probe every account of cfg, or only those named in the comma-separated
 * list only (NULL: all). Runs loop until done. Logs what it finds.
 * Returns an exit status: 0 all reachable and logged in, 1 otherwise.
 */
int sync_probe(struct ev_loop *loop, const config_t *cfg, const char *only);

#endif

/*
 * Folder discovery and naming for one account: which remote folders are
 * synced (include/exclude), what they are called in the store (nametrans,
 * separator), which folders must be created on which side, and SPECIAL-USE.
 *
 * Naming rules, decided here:
 *  - include/exclude match the remote name (UTF-8, as LISTed).
 *  - nametrans rules apply in order, each replacing the first match of its
 *    regex (\0..\9 in the replacement), then the remote separator becomes '/'.
 *    INBOX (any case) is always "INBOX".
 *  - A store folder that the remote lacks gets a remote name only if that
 *    name maps back to the same store name (round trip) and is included;
 *    candidates are "<reference><sep><name>" then "<name>" (with '/' turned
 *    into the remote separator).
 *  - A folder that was synced before and vanished from the remote is not
 *    created again (that would undo a deletion on the server) and is kept
 *    in the store (absence never deletes anything).
 *
 * Pure functions over config and names, plus folders_plan() which reads and
 * writes the store; no network.
 */
#ifndef IB_SYNC_FOLDERS_H
#define IB_SYNC_FOLDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"
#include "store/store.h"
#include "sync/replica.h"

/* True if the remote folder is selected by include/exclude. */
bool folders_included(const config_remote_t *rc, const char *remote);

/* Store name of a remote folder: a new string, or NULL when the name cannot
 * be mapped (nametrans produced an empty name). */
char *folders_to_local(const config_remote_t *rc, const char *remote, char sep);

/* Remote name for a store folder that round-trips, or NULL (see above). */
char *folders_to_remote(const config_remote_t *rc, const char *local, char sep);

/* One folder to sync. */
typedef struct folder_job {
	uint32_t folder_id;       /* store folder */
	char *local;              /* store name */
	char *remote;             /* remote name */
	unsigned special;         /* SPECIAL-USE bits */
	bool create_remote;       /* exists only in the store: create it remotely first */
	bool has_counts;          /* counts from LIST-STATUS / STATUS */
	replica_counts_t counts;
	bool again;               /* a second job (ENGINE_AGAIN): no read ahead */
	bool retried;             /* queued again after its connection was lost */
} folder_job_t;

typedef struct folder_plan {
	uint32_t account_id;
	folder_job_t *jobs;
	size_t n;
	char **warnings;          /* messages for people, one per problem */
	size_t n_warnings;
} folder_plan_t;

/*
 * From the remote LIST, build the list of folders to sync: create the store
 * account if needed, store folders for new remote folders (with their
 * SPECIAL-USE), and mark store-only folders for creation on the remote.
 * Returns 0 or a STORE_E* code; the plan is filled either way (free it).
 */
int folders_plan(store_t *st, const config_account_t *acct, const replica_folder_t *remote,
		 size_t n_remote, folder_plan_t *plan);
void folders_plan_free(folder_plan_t *plan);

/* Find or create the store account for name. */
int folders_account_id(store_t *st, const char *name, uint32_t *id);

#endif

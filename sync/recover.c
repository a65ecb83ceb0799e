/* Folder recovery: see recover.h. */
#include "sync/recover.h"

#include <stdio.h>

int recover_folder(struct ev_loop *loop, store_t *st, const config_account_t *acct,
		   const char *folder, char *msg, size_t msglen)
{
	snprintf(msg, msglen, "folder recovery is not available in this build");
	return 1;
}

/* Connection check: see probe.h. Placeholder until the IMAP client lands. */
#include "sync/probe.h"

#include "lib/log.h"

int sync_probe(struct ev_loop *loop, const config_t *cfg, const char *only)
{
	(void)loop; (void)cfg; (void)only;
	log_err("probe: not available in this build");
	return 1;
}

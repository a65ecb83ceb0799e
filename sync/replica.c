/* Helpers of the replica interface: see replica.h. */
#include "sync/replica.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *replica_strerror(int status)
{
	switch (status) {
	case REPLICA_OK: return "ok";
	case REPLICA_MSG_BAD: return "message refused or gone";
	case REPLICA_FOLDER_BAD: return "folder unusable";
	case REPLICA_BAD: return "replica unreachable or session lost";
	case REPLICA_CANCELLED: return "cancelled";
	default: return "unknown replica status";
	}
}

static const struct {
	const char *name;
	unsigned bit;
} flag_names[] = {
	{ "\\Seen", REPLICA_F_SEEN },
	{ "\\Answered", REPLICA_F_ANSWERED },
	{ "\\Flagged", REPLICA_F_FLAGGED },
	{ "\\Deleted", REPLICA_F_DELETED },
	{ "\\Draft", REPLICA_F_DRAFT },
};

unsigned replica_flag_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
		if (strlen(flag_names[i].name) == len && strncasecmp(flag_names[i].name, name, len) == 0)
			return flag_names[i].bit;
	return 0;
}

void replica_flags_to_str(unsigned flags, char *out, size_t outlen)
{
	size_t off = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++) {
		if (!(flags & flag_names[i].bit))
			continue;
		int n = snprintf(out + off, outlen - off, "%s%s", off ? " " : "", flag_names[i].name);
		if (n < 0 || (size_t)n >= outlen - off)
			return;
		off += (size_t)n;
	}
}

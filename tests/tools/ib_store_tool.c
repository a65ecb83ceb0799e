/*
 * A test tool that opens a store directly (the daemon must not be running):
 *
 *   ib_store_tool DATADIR dump
 *       one JSON object per line: {"type":"folder",...} per folder and
 *       {"type":"msg",...} per message (account, folder, uid, flags,
 *       keywords, size, sha256), {"type":"pending",...} per pending operation
 *   ib_store_tool DATADIR add ACCOUNT FOLDER FILE [FLAGS [KEYWORDS]]
 *   ib_store_tool DATADIR flags ACCOUNT FOLDER UID FLAGS [KEYWORDS]
 *   ib_store_tool DATADIR expunge ACCOUNT FOLDER UID
 *   ib_store_tool DATADIR move ACCOUNT FOLDER UID TOFOLDER
 *   ib_store_tool DATADIR mkfolder ACCOUNT FOLDER
 *
 * FLAGS is a comma-separated list of S (\Seen) A (\Answered) F (\Flagged)
 * D (\Deleted) T (\Draft), "-" for none; KEYWORDS is comma-separated.
 * Integration tests use it to change the store "as a mail reader would" and
 * to compare the store with the server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "store/store.h"

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static const char *flag_names[] = { "\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
				    "\\Draft" };

typedef struct dump {
	store_txn_t *txn;
	const char *account;
	const char *folder;
} dump_t;

static int msg_cb(const store_msg_t *m, void *arg)
{
	dump_t *d = arg;
	char hex[2 * STORE_HASH_LEN + 1];

	printf("{\"type\":\"msg\",\"account\":");
	json_str(d->account);
	printf(",\"folder\":");
	json_str(d->folder);
	printf(",\"uid\":%u,\"flags\":[", m->uid);
	int first = 1;
	for (int i = 0; i < 5; i++)
		if (m->flags & (1u << i)) {
			printf("%s", first ? "" : ",");
			json_str(flag_names[i]);
			first = 0;
		}
	printf("],\"keywords\":[");
	for (size_t i = 0; i < m->kw.n; i++) {
		printf("%s", i ? "," : "");
		json_str(m->kw.v[i]);
	}
	printf("],\"size\":%llu,\"sha256\":\"%s\",\"internaldate\":%lld}\n",
	       (unsigned long long)m->size, store_hash_hex(&m->hash, hex), (long long)m->internaldate);
	return 0;
}

static int pair_count_cb(const store_pair_t *p, void *arg)
{
	(*(unsigned *)arg)++;
	return 0;
}

static int folder_cb(const store_folder_t *f, void *arg)
{
	dump_t *d = arg;
	unsigned pairs = 0, mpairs = 0;
	store_replica_t rs;
	int have_rs = store_replica_get(d->txn, f->id, 1, &rs) == 0;

	store_pair_iter(d->txn, f->id, 1, 1, pair_count_cb, &pairs);
	store_pair_iter(d->txn, f->id, 2, 1, pair_count_cb, &mpairs);
	printf("{\"type\":\"folder\",\"account\":");
	json_str(d->account);
	printf(",\"folder\":");
	json_str(f->name);
	printf(",\"id\":%u,\"messages\":%u,\"held\":%s,\"held_reason\":", f->id, f->messages,
	       f->state == STORE_FOLDER_HELD ? "true" : "false");
	json_str(f->held_reason ? f->held_reason : "");
	printf(",\"special_use\":%u,\"remote_pairs\":%u,\"maildir_pairs\":%u", f->special_use, pairs,
	       mpairs);
	if (have_rs) {
		printf(",\"remote_name\":");
		json_str(rs.name ? rs.name : "");
		printf(",\"remote_uidvalidity\":%u", rs.uidvalidity);
	}
	printf("}\n");
	dump_t md = { d->txn, d->account, f->name };
	return store_msg_iter(d->txn, f->id, 1, msg_cb, &md);
}

static int account_cb(const store_account_t *a, void *arg)
{
	dump_t *d = arg;
	dump_t fd = { d->txn, a->name, NULL };
	return store_folder_list(d->txn, a->id, folder_cb, &fd);
}

static int pending_cb(const store_pending_t *p, void *arg)
{
	printf("{\"type\":\"pending\",\"id\":%llu,\"kind\":%u,\"folder_id\":%u,\"store_uid\":%u,"
	       "\"replica_uid\":%u}\n",
	       (unsigned long long)p->id, p->kind, p->folder_id, p->store_uid, p->replica_uid);
	return 0;
}

static unsigned parse_flags(const char *s)
{
	unsigned f = 0;
	for (; s && *s; s++) {
		switch (*s) {
		case 'S': f |= STORE_F_SEEN; break;
		case 'A': f |= STORE_F_ANSWERED; break;
		case 'F': f |= STORE_F_FLAGGED; break;
		case 'D': f |= STORE_F_DELETED; break;
		case 'T': f |= STORE_F_DRAFT; break;
		default: break;
		}
	}
	return f;
}

static void parse_kw(char *s, store_keywords_t *kw, const char **v, size_t max)
{
	kw->n = 0;
	kw->v = v;
	for (char *tok = s ? strtok(s, ",") : NULL; tok && kw->n < max; tok = strtok(NULL, ","))
		v[kw->n++] = tok;
}

static int find_folder(store_txn_t *txn, const char *account, const char *folder, uint32_t *fid)
{
	store_account_t a;
	store_folder_t f;
	int rc = store_account_find(txn, account, &a);
	if (rc == 0)
		rc = store_folder_find(txn, a.id, folder, &f);
	if (rc == 0)
		*fid = f.id;
	return rc;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	size_t n = 0, cap = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			data = xrealloc(data, cap);
		}
		size_t r = fread(data + n, 1, cap - n, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	*len = n;
	return data;
}

int main(int argc, char **argv)
{
	store_t *st = NULL;
	store_txn_t *txn = NULL;
	char err[512];
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: ib_store_tool DATADIR dump|add|flags|expunge|move|mkfolder ...\n");
		return 64;
	}
	store_open_opts_t oo = { .readonly = strcmp(argv[2], "dump") == 0 };
	rc = store_open(argv[1], &oo, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ib_store_tool: %s\n", err);
		return 1;
	}
	const char *cmd = argv[2];
	if (strcmp(cmd, "dump") == 0) {
		rc = store_txn_begin_read(st, &txn);
		dump_t d = { txn, NULL, NULL };
		if (rc == 0)
			rc = store_account_list(txn, account_cb, &d);
		if (rc == 0)
			rc = store_pending_list(txn, 0, pending_cb, NULL);
		store_txn_abort(txn);
		goto out;
	}
	rc = store_txn_begin_write(st, &txn);
	if (rc)
		goto out;
	uint32_t fid = 0;
	const char *kwv[64];
	store_keywords_t kw = { kwv, 0 };
	if (strcmp(cmd, "mkfolder") == 0 && argc == 5) {
		store_account_t a;
		rc = store_account_find(txn, argv[3], &a);
		if (rc == 0)
			rc = store_folder_create(txn, a.id, argv[4], 0, &fid);
	} else if (argc < 5 || (rc = find_folder(txn, argv[3], argv[4], &fid)) != 0) {
		if (rc == 0) {
			fprintf(stderr, "ib_store_tool: bad arguments\n");
			rc = STORE_EINVAL;
		}
	} else if (strcmp(cmd, "add") == 0 && argc >= 6) {
		size_t len;
		char *data = read_file(argv[5], &len);
		if (!data) {
			perror(argv[5]);
			rc = STORE_EIO;
		} else {
			store_msg_new_t nm = { .flags = parse_flags(argc > 6 ? argv[6] : NULL),
					       .internaldate = 1700000000 };
			parse_kw(argc > 7 ? argv[7] : NULL, &nm.kw, kwv, 64);
			uint32_t uid = 0;
			rc = store_msg_append(txn, fid, data, len, &nm, &uid, NULL);
			if (rc == 0)
				printf("%u\n", uid);
			free(data);
		}
	} else if (strcmp(cmd, "flags") == 0 && argc >= 7) {
		parse_kw(argc > 7 ? argv[7] : NULL, &kw, kwv, 64);
		rc = store_msg_set_flags(txn, fid, (uint32_t)strtoul(argv[5], NULL, 10),
					 STORE_FLAGS_SET, parse_flags(argv[6]), &kw, 0, NULL);
	} else if (strcmp(cmd, "expunge") == 0 && argc >= 6) {
		rc = store_msg_expunge(txn, fid, (uint32_t)strtoul(argv[5], NULL, 10), NULL);
	} else if (strcmp(cmd, "move") == 0 && argc >= 7) {
		uint32_t to = 0, nu = 0;
		rc = find_folder(txn, argv[3], argv[6], &to);
		if (rc == 0)
			rc = store_msg_move(txn, fid, (uint32_t)strtoul(argv[5], NULL, 10), to, &nu);
		if (rc == 0)
			printf("%u\n", nu);
	} else {
		fprintf(stderr, "ib_store_tool: bad arguments\n");
		rc = STORE_EINVAL;
	}
	if (rc == 0) {
		rc = store_txn_commit(txn);
		txn = NULL;
	}
	store_txn_abort(txn);
out:
	if (rc)
		fprintf(stderr, "ib_store_tool: %s\n", store_strerror(rc));
	store_close(st);
	return rc ? 1 : 0;
}

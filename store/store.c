/*
 * The store environment: open (with schema and foreign-file checks), close,
 * transactions with a sticky error, map growth on MDB_MAP_FULL, and the thin
 * LMDB wrappers every other file of store/ goes through.
 */
#include "store/store_p.h"

#include "lib/log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define STORE_DEFAULT_MAPSIZE ((size_t)64 << 20)
#define STORE_MIN_MAPSIZE ((size_t)64 << 10)
/* Disk allocated beyond the estimate, for what the estimate leaves out
 * (cursor deletions, the free list written at commit); and the step by which
 * the allocation grows, so that small writes rarely cost a system call. */
#define STORE_DISK_SLACK ((uint64_t)16 << 20)
#define STORE_DISK_STEP ((uint64_t)32 << 20)

const char *const store_db_names[DB_COUNT] = {
    [DB_META] = "meta",
    [DB_ACCOUNTS] = "accounts",
    [DB_ACCT_NAMES] = "account_names",
    [DB_ACCT_ATTRS] = "account_attrs",
    [DB_FOLDERS] = "folders",
    [DB_FOLDER_NAMES] = "folder_names",
    [DB_MESSAGES] = "messages",
    [DB_CHANGES] = "changes",
    [DB_KEYWORDS] = "keywords",
    [DB_BLOBS] = "blobs",
    [DB_BLOBREFS] = "blobrefs",
    [DB_REPLICAS] = "replicas",
    [DB_PAIRS] = "pairs",
    [DB_PAIRS_REV] = "pairs_rev",
    [DB_PENDING] = "pending",
};

const char *store_strerror(int err)
{
	switch (err) {
	case STORE_OK:
		return "success";
	case STORE_ENOTFOUND:
		return "not found";
	case STORE_EEXIST:
		return "already exists";
	case STORE_EINVAL:
		return "invalid argument";
	case STORE_EAGAIN:
		return "store map was full and has been grown; retry the transaction";
	case STORE_ECORRUPT:
		return "store is corrupt or not an imapbridge store";
	case STORE_ENEWER:
		return "store was written by a newer imapbridge";
	case STORE_EIO:
		return "I/O error in the store";
	case STORE_ENOSPC:
		return "no space left for the store (free some on its disk)";
	case STORE_EBUSY:
		return "store busy (too many readers, or a transaction still open)";
	case STORE_ERDONLY:
		return "write on a read-only transaction or store";
	case STORE_ECONFLICT:
		return "message changed since the given modseq";
	case STORE_ELIMIT:
		return "UID or modseq space of the folder exhausted";
	case STORE_ETOOOLD:
		return "changes that old are no longer kept; do a full comparison";
	case STORE_EHELD:
		return "folder is held for safety";
	case STORE_EINTERNAL:
		return "internal store error";
	case STORE_ETOOBIG:
		return "store transaction too large; commit in smaller batches";
	}
	return "unknown store error";
}

int store_map_mdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return STORE_OK;
	case MDB_NOTFOUND:
		return STORE_ENOTFOUND;
	case MDB_KEYEXIST:
		return STORE_EEXIST;
	case MDB_MAP_FULL:
		return STORE_EAGAIN;
	case MDB_TXN_FULL:
		return STORE_ETOOBIG;
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
	case MDB_CURSOR_FULL: /* a tree deeper than LMDB allows: a cycle */
	case MDB_PAGE_FULL:
		return STORE_ECORRUPT;
	case MDB_BAD_VALSIZE:
		return STORE_EINVAL; /* key too long: caller's input */
	case MDB_READERS_FULL:
	case MDB_BAD_RSLOT:
		return STORE_EBUSY;
	case MDB_BAD_TXN:
		return STORE_EINTERNAL;
	case ENOSPC:
	case ENOMEM:
		return STORE_ENOSPC;
	case EACCES:
	case EROFS:
		return STORE_ERDONLY;
	case EINVAL:
		return STORE_EINVAL;
	case EIO:
		return STORE_EIO;
	}
	if (rc > 0)
		return STORE_EIO; /* other errno values */
	return STORE_EINTERNAL;
}

/* ----------------------------------------------------------- helpers */

static bool is_benign(int rc)
{
	return rc == STORE_ENOTFOUND || rc == STORE_EEXIST || rc == STORE_EINVAL ||
	       rc == STORE_ECONFLICT || rc == STORE_EHELD || rc == STORE_ERDONLY ||
	       rc == STORE_ETOOOLD;
}

int txn_ret(store_txn_t *txn, int rc, unsigned long writes_before)
{
	if (rc >= 0)
		return rc;
	if (txn->err)
		return txn->err;
	if (!is_benign(rc) || txn->nwrites != writes_before) {
		txn->err = rc;
		if (rc == STORE_EAGAIN)
			txn->st->grow_pending = true;
	}
	return rc;
}

int txn_iter_end(store_txn_t *txn, MDB_cursor *c, int rc, int mrc, bool stopped)
{
	mdb_cursor_close(c);
	if (stopped)
		return rc;
	if (!rc && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
		rc = store_map_mdb(mrc);
	return txn_ret(txn, rc, txn->nwrites);
}

int txn_enter(store_txn_t *txn, bool need_write)
{
	if (txn->err)
		return txn->err;
	if (need_write && !txn->write)
		return STORE_ERDONLY;
	return 0;
}

/* Disk blocks for the data file up to byte to: 0 or an errno. */
static int disk_alloc(store_t *st, uint64_t to)
{
	int e;
	do
		e = posix_fallocate(st->fd, (off_t)st->disk_ok, (off_t)(to - st->disk_ok));
	while (e == EINTR);
	return e;
}

/*
 * With MDB_WRITEMAP, make sure the data file has disk blocks for everything
 * this write may touch: LMDB appends new pages after the last committed one,
 * and a value of vlen bytes costs at most vlen plus a few copied branch and
 * leaf pages. Without this a full disk shows up as SIGBUS on a store into the
 * map instead of an error. Pages below the last committed one were written
 * before, so they already have blocks.
 */
static int txn_reserve_disk(store_txn_t *txn, size_t vlen)
{
	store_t *st = txn->st;
	if (!st->writemap)
		return 0;
	txn->disk_end += (uint64_t)vlen + 4 * (uint64_t)st->psize;
	uint64_t want = txn->disk_end + STORE_DISK_SLACK;
	if (want > st->mapsize)
		want = st->mapsize;
	if (want <= st->disk_ok)
		return 0;
	uint64_t to = st->disk_ok + STORE_DISK_STEP;
	if (to < want)
		to = want;
	if (to > st->mapsize)
		to = st->mapsize;
	/* No room for a whole step: take what each write needs, so a nearly
	 * full disk is used to the end. A failed step is not cheap (tmpfs
	 * fills and empties the whole range): the next one is tried only a
	 * step further on, when space may have been freed meanwhile. */
	if (st->disk_ok < st->disk_tight)
		to = want;
	int e = disk_alloc(st, to);
	if (e == ENOSPC && want < to) {
		st->disk_tight = st->disk_ok + STORE_DISK_STEP;
		to = want;
		e = disk_alloc(st, to);
	}
	if (e == ENOSPC)
		return STORE_ENOSPC;
	if (e != 0 && e != EOPNOTSUPP && e != EINVAL)
		return STORE_EIO;
	/* EOPNOTSUPP/EINVAL: a file system without allocation; nothing to gain. */
	st->disk_ok = to;
	return 0;
}

/*
 * The address of the data file's map, for pwrite() into it; NULL where that
 * is not known to be safe. LMDB does not tell the address (me_mapaddr is
 * only set for a fixed map), so it is looked up in /proc/self/maps by the
 * file's identity, once per map size: LMDB maps the file again only when
 * the size changes.
 */
static const char *map_find(store_t *st)
{
	if (st->map_len != 0 && st->map_len == st->mapsize)
		return st->map;
	st->map = NULL;
	st->map_len = st->mapsize;
	/* A local file system keeps one page cache for write() and the map;
	 * FUSE with direct I/O, for one, would let the map show stale bytes. */
	if (!ib_fd_local_fs(st->fd))
		return NULL;
	struct stat sb;
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f || fstat(st->fd, &sb) != 0) {
		if (f)
			fclose(f);
		return NULL;
	}
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, off, ino;
		unsigned maj, mnr;
		if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &lo, &hi, &off, &maj, &mnr, &ino) == 6 &&
		    off == 0 && ino == (unsigned long)sb.st_ino && maj == major(sb.st_dev) &&
		    mnr == minor(sb.st_dev) && hi - lo == st->mapsize) {
			st->map = (const char *)lo;
			break;
		}
	}
	fclose(f);
	return st->map;
}

/* The data file offset of n bytes at p in the map, if the map is known and
 * holds them. */
static bool map_offset(store_t *st, const void *p, size_t n, uint64_t *off)
{
	const char *map = st->writemap ? map_find(st) : NULL;
	const char *c = p;
	if (!map || c < map || c + n > map + st->map_len)
		return false;
	*off = (uint64_t)(c - map);
	return true;
}

/*
 * Fill n bytes of a value reserved in the map at dst. With the map's address
 * known they are written to the data file with pwrite(), which lands in the
 * same page cache pages the map shows: a page that was never touched is
 * then filled by the copy alone. Stored through the map, each such page
 * first faults, is zero-filled, and is marked writable, a few times the
 * copy's cost for a large message.
 */
int txn_blob_copy(store_txn_t *txn, void *dst, const void *src, size_t n)
{
	store_t *st = txn->st;
	uint64_t off;
	if (!map_offset(st, dst, n, &off)) {
		memcpy(dst, src, n);
		return 0;
	}
	const char *p = src;
	while (n > 0) {
		ssize_t w = pwrite(st->fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 && errno == ENOSPC ? STORE_ENOSPC : STORE_EIO;
		p += w;
		off += (uint64_t)w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * A blob's pages are written once, in full, and not touched again by their
 * transaction, so their writeback can start at once: the commit's sync then
 * finds most of its data already on the way to the disk, and the caller
 * waits for less of it. This changes nothing for a crash: no meta page on
 * disk points at these pages before the commit's own sync is done. Only the
 * whole pages inside the value count (its first page holds LMDB's page
 * header); neighbouring blobs are gathered into one call per WB_CHUNK.
 */
#define WB_CHUNK ((uint64_t)1 << 20)
#define WB_GAP ((uint64_t)64 << 10)

static void wb_start(store_txn_t *txn)
{
	if (txn->wb_hi > txn->wb_lo)
		(void)sync_file_range(txn->st->fd, (off_t)txn->wb_lo,
				      (off_t)(txn->wb_hi - txn->wb_lo), SYNC_FILE_RANGE_WRITE);
	txn->wb_lo = txn->wb_hi = 0;
}

void txn_blob_written(store_txn_t *txn, const void *p, size_t len)
{
	store_t *st = txn->st;
	uint64_t off;
	if (st->nosync || !map_offset(st, p, len, &off))
		return;
	uint64_t a = (off + st->psize - 1) / st->psize * st->psize;
	uint64_t b = (off + len) / st->psize * st->psize;
	if (b <= a)
		return;
	if (txn->wb_hi > txn->wb_lo && (a < txn->wb_lo || a > txn->wb_hi + WB_GAP))
		wb_start(txn);
	if (txn->wb_hi == txn->wb_lo)
		txn->wb_lo = a;
	if (b > txn->wb_hi)
		txn->wb_hi = b;
	if (txn->wb_hi - txn->wb_lo >= WB_CHUNK)
		wb_start(txn);
}

int db_get(store_txn_t *txn, int db, const void *k, size_t klen, MDB_val *val)
{
	MDB_val key = {klen, (void *)k};
	return store_map_mdb(mdb_get(txn->txn, txn->st->dbi[db], &key, val));
}

int db_put(store_txn_t *txn, int db, const void *k, size_t klen, const void *v, size_t vlen,
	   unsigned flags)
{
	MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
	int rrc = txn_reserve_disk(txn, vlen);
	if (rrc)
		return rrc;
	int rc = mdb_put(txn->txn, txn->st->dbi[db], &key, &val, flags);
	if (rc == MDB_SUCCESS)
		txn->nwrites++;
	return store_map_mdb(rc);
}

int db_reserve(store_txn_t *txn, int db, const void *k, size_t klen, size_t vlen, void **out)
{
	MDB_val key = {klen, (void *)k}, val = {vlen, NULL};
	int rrc = txn_reserve_disk(txn, vlen);
	if (rrc)
		return rrc;
	int rc = mdb_put(txn->txn, txn->st->dbi[db], &key, &val, MDB_RESERVE);
	if (rc != MDB_SUCCESS)
		return store_map_mdb(rc);
	txn->nwrites++;
	*out = val.mv_data;
	return 0;
}

int db_del(store_txn_t *txn, int db, const void *k, size_t klen)
{
	MDB_val key = {klen, (void *)k};
	int rrc = txn_reserve_disk(txn, 0);
	if (rrc)
		return rrc;
	int rc = mdb_del(txn->txn, txn->st->dbi[db], &key, NULL);
	if (rc == MDB_SUCCESS)
		txn->nwrites++;
	return store_map_mdb(rc);
}

int db_cursor(store_txn_t *txn, int db, MDB_cursor **out)
{
	return store_map_mdb(mdb_cursor_open(txn->txn, txn->st->dbi[db], out));
}

int db_del_prefix(store_txn_t *txn, int db, const void *prefix, size_t plen)
{
	MDB_cursor *c = NULL;
	int rc = db_cursor(txn, db, &c);
	if (rc)
		return rc;
	int mrc;
	for (;;) {
		MDB_val k = {plen, (void *)prefix}, v;
		mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (mrc != MDB_SUCCESS)
			break;
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		mrc = mdb_cursor_del(c, 0);
		if (mrc != MDB_SUCCESS)
			break;
		txn->nwrites++;
	}
	mdb_cursor_close(c);
	if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
		return store_map_mdb(mrc);
	return 0;
}

int meta_get_u64(store_txn_t *txn, const char *key, uint64_t *v)
{
	MDB_val val;
	int rc = db_get(txn, DB_META, key, strlen(key), &val);
	if (rc)
		return rc;
	if (val.mv_size == 4)
		*v = ib_get_be32(val.mv_data);
	else if (val.mv_size == 8)
		*v = ib_get_be64(val.mv_data);
	else
		return STORE_ECORRUPT;
	return 0;
}

int meta_put_u64(store_txn_t *txn, const char *key, uint64_t v)
{
	uint8_t b[8];
	ib_put_be64(b, v);
	return db_put(txn, DB_META, key, strlen(key), b, 8, 0);
}

void txn_touch(store_txn_t *txn, uint32_t folder_id)
{
	for (size_t i = 0; i < txn->ntouched; i++)
		if (txn->touched[i] == folder_id)
			return;
	if (txn->ntouched == txn->captouched) {
		txn->captouched = txn->captouched ? 2 * txn->captouched : 8;
		txn->touched = xrealloc(txn->touched, txn->captouched * sizeof(*txn->touched));
	}
	txn->touched[txn->ntouched++] = folder_id;
}

void *txn_scratch(store_txn_t *txn, size_t n)
{
	if (txn->nscratch == txn->capscratch) {
		txn->capscratch = txn->capscratch ? 2 * txn->capscratch : 16;
		txn->scratch = xrealloc(txn->scratch, txn->capscratch * sizeof(*txn->scratch));
	}
	void *p = xmalloc(n ? n : 1);
	txn->scratch[txn->nscratch++] = p;
	return p;
}

size_t txn_scratch_mark(const store_txn_t *txn)
{
	return txn->nscratch;
}

void txn_scratch_release(store_txn_t *txn, size_t mark)
{
	while (txn->nscratch > mark)
		free(txn->scratch[--txn->nscratch]);
}

void txn_note_new_blob(store_txn_t *txn, const store_hash_t *h)
{
	if (txn->nnew_blobs == txn->capnew_blobs) {
		txn->capnew_blobs = txn->capnew_blobs ? 2 * txn->capnew_blobs : 16;
		txn->new_blobs =
		    xrealloc(txn->new_blobs, txn->capnew_blobs * sizeof(*txn->new_blobs));
	}
	txn->new_blobs[txn->nnew_blobs++] = *h;
}

/* ------------------------------------------------------ transactions */

/* Grow the map; only legal with no transaction open in this process. */
static int store_grow(store_t *st)
{
	size_t want = st->mapsize * 2;
	if (want < st->mapsize)
		return STORE_ENOSPC;
	st->map_len = 0; /* LMDB maps the file anew */
	int rc = mdb_env_set_mapsize(st->env, want);
	if (rc != MDB_SUCCESS)
		return store_map_mdb(rc) == STORE_EINVAL ? STORE_ENOSPC : store_map_mdb(rc);
	MDB_envinfo info;
	mdb_env_info(st->env, &info);
	st->mapsize = info.me_mapsize;
	st->grow_pending = false;
	return 0;
}

static int txn_begin(store_t *st, bool write, store_txn_t **out)
{
	*out = NULL;
	if (write && st->readonly)
		return STORE_ERDONLY;
	/* A second write txn in the same thread would wait for itself forever. */
	if (write && st->writer_open)
		return STORE_EBUSY;
	if (st->grow_pending) {
		if (st->ntxn > 0) {
			if (write)
				return STORE_EBUSY;
		} else {
			int rc = store_grow(st);
			if (rc)
				return rc;
		}
	}
	MDB_txn *t = NULL;
	int rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &t);
	if (rc == MDB_MAP_RESIZED) {
		/* Another process grew the map: adopt its size. */
		if (st->ntxn > 0)
			return STORE_EBUSY;
		st->map_len = 0; /* LMDB maps the file anew */
		mdb_env_set_mapsize(st->env, 0);
		MDB_envinfo info;
		mdb_env_info(st->env, &info);
		st->mapsize = info.me_mapsize;
		rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &t);
	}
	if (rc != MDB_SUCCESS)
		return store_map_mdb(rc);
	store_txn_t *txn = xcalloc(1, sizeof(*txn));
	txn->st = st;
	txn->txn = t;
	txn->write = write;
	if (write && st->writemap) {
		MDB_envinfo info;
		mdb_env_info(st->env, &info);
		txn->disk_end = ((uint64_t)info.me_last_pgno + 1) * st->psize;
	}
	st->ntxn++;
	if (write)
		st->writer_open = true;
	*out = txn;
	return 0;
}

int store_txn_begin_read(store_t *st, store_txn_t **out)
{
	return txn_begin(st, false, out);
}

int store_txn_begin_write(store_t *st, store_txn_t **out)
{
	return txn_begin(st, true, out);
}

int store_txn_err(const store_txn_t *txn)
{
	return txn->err;
}

bool store_txn_is_write(const store_txn_t *txn)
{
	return txn->write;
}

store_t *store_txn_store(const store_txn_t *txn)
{
	return txn->st;
}

static void txn_free(store_txn_t *txn)
{
	store_t *st = txn->st;
	txn_scratch_release(txn, 0);
	free(txn->scratch);
	free(txn->new_blobs);
	free(txn->touched);
	if (txn->write)
		st->writer_open = false;
	free(txn);
	st->ntxn--;
	if (st->grow_pending && st->ntxn == 0)
		store_grow(st); /* a failure shows again at the next begin */
}

void store_txn_abort(store_txn_t *txn)
{
	if (!txn)
		return;
	mdb_txn_abort(txn->txn);
	txn_free(txn);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* For the store trace: what a commit makes durable. */
static const char *commit_kind(const store_t *st, bool wrote, bool lazy)
{
	if (!wrote)
		return "nothing to sync";
	if (st->nosync)
		return "fsync = false: not synced";
	return lazy ? "lazy: data synced" : "data and meta synced";
}

int store_txn_commit(store_txn_t *txn)
{
	if (!txn->write) {
		store_txn_abort(txn);
		return 0;
	}
	if (!txn->err) {
		unsigned long w = txn->nwrites;
		txn_ret(txn, blob_sweep_new(txn), w);
	}
	if (txn->err) {
		int err = txn->err;
		store_txn_abort(txn);
		return err;
	}
	/* A lazy commit syncs its data pages but not the meta page that
	 * points at them: after a power failure the store is consistent and
	 * at most this commit is undone. The next full commit's data sync
	 * (it covers the whole map) makes it durable too. */
	bool lazy = txn->lazy && !txn->st->nosync;
	bool wrote = txn->nwrites > 0; /* LMDB syncs nothing for an empty commit */
	unsigned long nwrites = txn->nwrites;
	uint64_t t0 = log_cat_on(LOG_CAT_STORE) ? ib_now_ms() : 0;
	if (lazy)
		mdb_env_set_flags(txn->st->env, MDB_NOMETASYNC, 1);
	int rc = store_map_mdb(mdb_txn_commit(txn->txn));
	if (lazy)
		mdb_env_set_flags(txn->st->env, MDB_NOMETASYNC, 0);
	if (t0)
		log_trace(LOG_CAT_STORE, "commit of %lu writes (%s): %s in %llu ms", nwrites,
			  commit_kind(txn->st, wrote, lazy), rc == 0 ? "done" : store_strerror(rc),
			  (unsigned long long)(ib_now_ms() - t0));
	if (rc == STORE_EAGAIN)
		txn->st->grow_pending = true;
	store_t *st = txn->st;
	if (rc == 0 && lazy && wrote)
		st->lazy_dirty = true;
	else if (rc == 0 && wrote)
		st->lazy_dirty = false;
	uint32_t *touched = txn->touched;
	size_t n = txn->ntouched;
	txn->touched = NULL;
	txn_free(txn);
	if (rc == 0 && n > 0 && st->commit_cb) {
		qsort(touched, n, sizeof(*touched), cmp_u32);
		st->commit_cb(st, touched, n, st->commit_arg);
	}
	free(touched);
	return rc;
}

static int write_loop(store_t *st, store_txn_fn fn, void *arg, bool lazy)
{
	for (;;) {
		store_txn_t *txn;
		int rc = store_txn_begin_write(st, &txn);
		if (rc)
			return rc;
		txn->lazy = lazy;
		rc = fn(txn, arg);
		/* Whatever fn made of it, a full map means: grow and run again. */
		if (rc == STORE_EAGAIN || txn->err == STORE_EAGAIN) {
			txn->st->grow_pending = true;
			store_txn_abort(txn);
			continue;
		}
		if (rc) {
			store_txn_abort(txn);
			return rc;
		}
		rc = store_txn_commit(txn);
		if (rc == STORE_EAGAIN)
			continue;
		return rc;
	}
}

int store_write(store_t *st, store_txn_fn fn, void *arg)
{
	return write_loop(st, fn, arg, false);
}

int store_write_lazy(store_t *st, store_txn_fn fn, void *arg)
{
	return write_loop(st, fn, arg, true);
}

int store_sync(store_t *st)
{
	if (st->readonly || st->nosync || !st->lazy_dirty)
		return 0;
	uint64_t t0 = log_cat_on(LOG_CAT_STORE) ? ib_now_ms() : 0;
	int rc = store_map_mdb(mdb_env_sync(st->env, 1));
	if (rc == 0)
		st->lazy_dirty = false;
	if (t0)
		log_trace(LOG_CAT_STORE, "sync of the last lazy commit: %s in %llu ms",
			  rc == 0 ? "done" : store_strerror(rc),
			  (unsigned long long)(ib_now_ms() - t0));
	return rc;
}

/* ---------------------------------------------------------- open/close */

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (!errbuf || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* Open the named databases, creating them in a new environment, and check
 * (or write) the schema version. Runs in one write txn (read for readonly). */
static int store_init_txn(store_t *st, char *errbuf, size_t errlen)
{
	MDB_txn *t = NULL;
	int mrc = mdb_txn_begin(st->env, NULL, st->readonly ? MDB_RDONLY : 0, &t);
	if (mrc != MDB_SUCCESS)
		goto mdb_fail;
	MDB_dbi meta;
	mrc = mdb_dbi_open(t, store_db_names[DB_META], 0, &meta);
	bool fresh = false;
	if (mrc == MDB_NOTFOUND) {
		/* No meta database: a fresh environment, or a foreign LMDB file. */
		MDB_dbi main;
		MDB_stat ms;
		mrc = mdb_dbi_open(t, NULL, 0, &main);
		if (mrc != MDB_SUCCESS)
			goto mdb_fail;
		mdb_stat(t, main, &ms);
		if (ms.ms_entries > 0) {
			mdb_txn_abort(t);
			set_err(errbuf, errlen,
				"%s/data.mdb is an LMDB file but not an imapbridge store; "
				"move it away or use another datadir",
				st->path);
			return STORE_ECORRUPT;
		}
		if (st->readonly) {
			mdb_txn_abort(t);
			set_err(errbuf, errlen,
				"store at %s is empty; start imapbridged once to create it",
				st->path);
			return STORE_ENOTFOUND;
		}
		fresh = true;
	} else if (mrc != MDB_SUCCESS) {
		goto mdb_fail;
	}
	for (int i = 0; i < DB_COUNT; i++) {
		mrc =
		    mdb_dbi_open(t, store_db_names[i], st->readonly ? 0 : MDB_CREATE, &st->dbi[i]);
		if (mrc == MDB_NOTFOUND) {
			mdb_txn_abort(t);
			set_err(errbuf, errlen,
				"store at %s lacks its '%s' database; it is damaged or not an "
				"imapbridge store: restore it from backup or use another datadir",
				st->path, store_db_names[i]);
			return STORE_ECORRUPT;
		}
		if (mrc != MDB_SUCCESS)
			goto mdb_fail;
	}
	MDB_val k = {6, "schema"}, v;
	uint8_t b[4];
	if (fresh) {
		ib_put_be32(b, STORE_SCHEMA_VERSION);
		v.mv_size = 4;
		v.mv_data = b;
		mrc = mdb_put(t, st->dbi[DB_META], &k, &v, 0);
		if (mrc != MDB_SUCCESS)
			goto mdb_fail;
	} else {
		mrc = mdb_get(t, st->dbi[DB_META], &k, &v);
		if (mrc != MDB_SUCCESS || v.mv_size != 4) {
			mdb_txn_abort(t);
			set_err(errbuf, errlen,
				"store at %s has no valid schema version; it is damaged or not "
				"an imapbridge store: restore it from backup or use another "
				"datadir",
				st->path);
			return STORE_ECORRUPT;
		}
		uint32_t ver = ib_get_be32(v.mv_data);
		if (ver > STORE_SCHEMA_VERSION) {
			mdb_txn_abort(t);
			set_err(errbuf, errlen,
				"store at %s was written by a newer imapbridge (schema %u); "
				"upgrade, or use another datadir",
				st->path, ver);
			return STORE_ENEWER;
		}
		/* ver < STORE_SCHEMA_VERSION: upgrades go here when there are any. */
	}
	mrc = mdb_txn_commit(t);
	t = NULL;
	if (mrc != MDB_SUCCESS)
		goto mdb_fail;
	return 0;
mdb_fail:
	if (t)
		mdb_txn_abort(t);
	if (store_map_mdb(mrc) == STORE_EAGAIN)
		return STORE_EAGAIN;
	if (store_map_mdb(mrc) == STORE_ECORRUPT)
		set_err(errbuf, errlen,
			"%s/data.mdb is damaged (%s); restore it from backup or use another "
			"datadir",
			st->path, mdb_strerror(mrc));
	else
		set_err(errbuf, errlen, "cannot initialise store at %s: %s", st->path,
			mdb_strerror(mrc));
	return store_map_mdb(mrc);
}

/*
 * The close stamp, a file beside the data file that a writer keeps open.
 * While the writer runs it says "open": found so at the next open, the
 * writer did not close (crash, SIGKILL, power loss). A clean close writes
 * the data file's identity, size and modification time there, the time set
 * by the close itself to the precise current time. While they still match,
 * nothing wrote the file since: a writer changes the stamp first, and any
 * write sets the time to the kernel's clock tick, which never lands on that
 * exact nanosecond. So the next open need not probe the file in a child
 * process (fork, map, walk: ~10 ms).
 * Both are written in place, padded to one length: no file is created or
 * renamed per run, and a write cut short leaves a line that matches nothing.
 */
#define STORE_CLEAN_STAMP "clean-close"
#define STAMP_OPEN "open"
#define STAMP_LEN 96

static void clean_stamp(const struct stat *sb, char *buf, size_t n)
{
	snprintf(buf, n, "%ju %ju %jd %jd %ld", (uintmax_t)sb->st_dev, (uintmax_t)sb->st_ino,
		 (intmax_t)sb->st_size, (intmax_t)sb->st_mtim.tv_sec, (long)sb->st_mtim.tv_nsec);
}

/* The stamp's line without the padding; "" if unreadable. */
static void stamp_read(int fd, char *buf, size_t n)
{
	ssize_t got = fd < 0 ? -1 : pread(fd, buf, n - 1, 0);
	size_t len = got > 0 ? (size_t)got : 0;
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\n'))
		len--;
	buf[len] = '\0';
}

static bool stamp_write(int fd, const char *line)
{
	char buf[STAMP_LEN];
	size_t len = strlen(line);
	if (len >= STAMP_LEN)
		return false;
	memcpy(buf, line, len);
	memset(buf + len, ' ', STAMP_LEN - 1 - len);
	buf[STAMP_LEN - 1] = '\n';
	return pwrite(fd, buf, STAMP_LEN, 0) == STAMP_LEN;
}

/* Opens the stamp (for writing too unless readonly; -1 if it cannot) and
 * says what it holds: *unclean when a writer did not close, *clean when the
 * data file (sb) is as the last clean close left it. */
static int stamp_open(const char *dir, bool readonly, const struct stat *sb, bool *unclean,
		      bool *clean)
{
	char path[4096], have[160], want[160];
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_CLEAN_STAMP);
	int flags = (readonly ? O_RDONLY : O_RDWR | O_CREAT) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	int fd = open(path, flags, 0600);
	struct stat fsb;
	if (fd >= 0 && (fstat(fd, &fsb) != 0 || !S_ISREG(fsb.st_mode))) {
		close(fd);
		fd = -1;
	}
	stamp_read(fd, have, sizeof(have));
	*unclean = strcmp(have, STAMP_OPEN) == 0;
	clean_stamp(sb, want, sizeof(want));
	*clean = sb->st_size > 0 && strcmp(want, have) == 0;
	return fd;
}

/* Best effort: without the stamp the next open probes, as before. */
static void stamp_close(const char *dir, int fd)
{
	char data[4096], line[160];
	struct stat sb;
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	struct timespec ts[2] = {{0, UTIME_OMIT}, {0, 0}};
	clock_gettime(CLOCK_REALTIME, &ts[1]);
	if (utimensat(AT_FDCWD, data, ts, 0) == 0 && stat(data, &sb) == 0) {
		clean_stamp(&sb, line, sizeof(line));
		stamp_write(fd, line);
	}
	close(fd);
}

int store_open(const char *datadir, const store_open_opts_t *opts, store_t **out, char *errbuf,
	       size_t errlen)
{
	store_open_opts_t defaults = {0};
	if (!opts)
		opts = &defaults;
	*out = NULL;
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!datadir || !*datadir) {
		set_err(errbuf, errlen, "no data directory given; set datadir in the config");
		return STORE_EINVAL;
	}
	int rc = 0;
	store_t *st = xcalloc(1, sizeof(*st));
	st->path = xasprintf("%s/store", datadir);
	st->readonly = opts->readonly;
	st->nosync = opts->nosync;
	st->mapsize = opts->initial_mapsize ? opts->initial_mapsize : STORE_DEFAULT_MAPSIZE;
	st->stamp_fd = -1;
	if (st->mapsize < STORE_MIN_MAPSIZE)
		st->mapsize = STORE_MIN_MAPSIZE;

	struct stat sb;
	if (stat(st->path, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode)) {
			set_err(errbuf, errlen,
				"%s is not a directory; move it away or use another datadir",
				st->path);
			rc = STORE_ECORRUPT;
			goto out;
		}
	} else if (st->readonly) {
		set_err(errbuf, errlen, "no store at %s: %s", st->path, strerror(errno));
		rc = STORE_ENOTFOUND;
		goto out;
	} else {
		int e = ib_mkdirs(st->path, 0700);
		if (e < 0) {
			set_err(errbuf, errlen, "cannot create %s: %s; check the datadir setting",
				st->path, strerror(-e));
			rc = store_map_mdb(-e);
			goto out;
		}
	}
	char datafile[4096];
	snprintf(datafile, sizeof(datafile), "%s/data.mdb", st->path);
	if (stat(datafile, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		set_err(errbuf, errlen,
			"%s is not a regular file; move it away or use another datadir", datafile);
		rc = STORE_ECORRUPT;
		goto out;
	}
	/* An older version left a marker file instead of the stamp's "open". */
	char marker[4096];
	snprintf(marker, sizeof(marker), "%s/%s", st->path, STORE_OPEN_MARKER);
	bool have_data = stat(datafile, &sb) == 0 && sb.st_size > 0;
	if (!have_data)
		memset(&sb, 0, sizeof(sb));
	/* With MDB_WRITEMAP LMDB sizes the file to the map at open. A map
	 * smaller than the file would cut the free tail a previous run grew
	 * and allocated (tens of ms for a few hundred MB), and the first
	 * writes would then grow it all over again. */
	if (have_data && !opts->readonly && (uint64_t)sb.st_size > st->mapsize) {
		uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
		st->mapsize = (size_t)(((uint64_t)sb.st_size + pg - 1) / pg * pg);
	}
	bool unclean = false, clean = false, legacy = false;
	int sfd = -1;
	if (!opts->readonly || (!opts->skip_probe && have_data))
		sfd = stamp_open(st->path, opts->readonly, &sb, &unclean, &clean);
	if (opts->readonly && sfd >= 0) {
		close(sfd);
		sfd = -1;
	}
	st->stamp_fd = sfd;
	if (have_data)
		legacy = access(marker, F_OK) == 0;
	if (!opts->skip_probe && have_data) {
		unclean = unclean || legacy;
		if (opts->deep_probe || unclean || !clean)
			rc = store_probe(st->path, opts->deep_probe || unclean, errbuf, errlen);
		if (rc)
			goto out;
	}

	int mrc = mdb_env_create(&st->env);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_set_maxdbs(st->env, 32);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_set_mapsize(st->env, st->mapsize);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_set_maxreaders(st->env, 256);
	if (mrc != MDB_SUCCESS) {
		set_err(errbuf, errlen, "cannot set up LMDB for %s: %s", st->path,
			mdb_strerror(mrc));
		rc = store_map_mdb(mrc);
		goto out;
	}
	unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
	if (opts->readonly)
		flags |= MDB_RDONLY;
	if (opts->nosync)
		flags |= MDB_NOSYNC;
	/* See struct store: keeps big messages out of the heap. LMDB sizes the
	 * file to the map (sparse); no nested transactions are used. */
	if (!opts->readonly)
		flags |= MDB_WRITEMAP;
	mrc = mdb_env_open(st->env, st->path, flags, 0600);
	if (mrc != MDB_SUCCESS) {
		if (store_map_mdb(mrc) == STORE_ECORRUPT)
			set_err(errbuf, errlen,
				"%s is not an imapbridge store (%s); move it away, restore it "
				"from backup, or use another datadir",
				datafile, mdb_strerror(mrc));
		else
			set_err(errbuf, errlen, "cannot open store at %s: %s", st->path,
				mdb_strerror(mrc));
		rc = store_map_mdb(mrc);
		goto out;
	}
	MDB_envinfo info;
	mdb_env_info(st->env, &info);
	st->mapsize = info.me_mapsize;
	if (!opts->readonly) {
		MDB_stat ms;
		st->writemap = true;
		mdb_env_get_fd(st->env, &st->fd);
		mdb_env_stat(st->env, &ms);
		st->psize = ms.ms_psize;
	}
	/* Free reader slots left behind by killed processes. */
	int dead = 0;
	mdb_reader_check(st->env, &dead);

	for (;;) {
		rc = store_init_txn(st, errbuf, errlen);
		if (rc != STORE_EAGAIN)
			break;
		rc = store_grow(st);
		if (rc) {
			set_err(errbuf, errlen, "cannot grow the store map at %s: %s", st->path,
				store_strerror(rc));
			break;
		}
	}
	if (rc)
		goto out;
	/* Not being able to say "open" only costs the deep probe after a
	 * crash: not worth refusing to start over. */
	if (st->stamp_fd >= 0 && stamp_write(st->stamp_fd, STAMP_OPEN)) {
		st->marked = true;
		if (legacy)
			unlink(marker);
	}
	*out = st;
	st = NULL;
out:
	store_close(st);
	return rc;
}

void store_close(store_t *st)
{
	if (!st)
		return;
	assert(st->ntxn == 0 && "store_close() with a transaction still open");
	if (st->env) {
		store_sync(st); /* the last lazy commit; nothing to report it to */
		mdb_env_close(st->env);
	}
	if (st->marked)
		stamp_close(st->path, st->stamp_fd);
	else if (st->stamp_fd >= 0)
		close(st->stamp_fd);
	free(st->path);
	free(st);
}

const char *store_path(const store_t *st)
{
	return st->path;
}

size_t store_mapsize(const store_t *st)
{
	return st->mapsize;
}

void store_set_commit_cb(store_t *st, store_commit_cb cb, void *arg)
{
	st->commit_cb = cb;
	st->commit_arg = arg;
}

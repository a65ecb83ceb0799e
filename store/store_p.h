/*
 * Private to store/: the environment, the named databases, the transaction
 * struct with its sticky error, record encoding helpers and the scratch arena.
 *
 * Key layouts (big-endian so byte order is numeric order):
 *   meta          "schema" | "next_account" | ... -> be32 / be64
 *   accounts      be32 id -> u32 flags, name\0
 *   acct_names    name -> be32 id
 *   acct_attrs    be32 id | key\0 -> opaque bytes
 *   folders       be32 id -> folder record (folder.c)
 *   folder_names  be32 account | name -> be32 folder id
 *   messages      be32 folder | be32 uid -> message record (msg.c)
 *   changes       be32 folder | be64 modseq -> u8 kind, u32 uid
 *   keywords      be32 folder | keyword -> (empty)
 *   blobs         sha256 -> raw message bytes (exactly, so get can point there)
 *   blobrefs      sha256 -> be64 reference count
 *   replicas      be32 folder | be32 replica -> replica record
 *   pairs         be32 folder | be32 replica | be32 replica uid -> pair record
 *   pairs_rev     be32 folder | be32 replica | be32 store uid -> be32 replica uid
 *   pending       be64 id -> pending record
 * Reference counts live apart from the bytes so that counting a reference
 * never rewrites a large blob. MIME metadata (ENVELOPE, BODYSTRUCTURE), when
 * it comes, gets its own database keyed by the blob hash.
 */
#ifndef IB_STORE_P_H
#define IB_STORE_P_H

#include "store/store.h"
#include "lib/buf.h"
#include "lib/util.h"

#include <lmdb.h>

enum store_dbi {
	DB_META,
	DB_ACCOUNTS,
	DB_ACCT_NAMES,
	DB_ACCT_ATTRS,
	DB_FOLDERS,
	DB_FOLDER_NAMES,
	DB_MESSAGES,
	DB_CHANGES,
	DB_KEYWORDS,
	DB_BLOBS,
	DB_BLOBREFS,
	DB_REPLICAS,
	DB_PAIRS,
	DB_PAIRS_REV,
	DB_PENDING,
	DB_COUNT
};

extern const char *const store_db_names[DB_COUNT];

struct store {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
	char *path; /* <datadir>/store */
	size_t mapsize;
	bool readonly;
	bool nosync;	   /* opened with MDB_NOSYNC */
	bool lazy_dirty;   /* a lazy commit is not durable yet (store_write_lazy) */
	int ntxn;	   /* open transactions of this handle */
	bool writer_open;  /* LMDB's writer lock is not recursive: guard it */
	bool grow_pending; /* a write hit MDB_MAP_FULL; grow when ntxn == 0 */
	/* MDB_WRITEMAP: a write txn's pages live in the shared file map, not in
	 * malloc'd memory, so a 50 MB message costs no 50 MB of heap. A page
	 * written into a hole of the sparse file on a full disk would raise
	 * SIGBUS, so the data file is allocated (posix_fallocate) ahead of what
	 * a transaction may write; see txn_reserve_disk(). */
	bool writemap;
	int fd;		   /* the data file (LMDB's descriptor) */
	size_t psize;	   /* LMDB page size */
	uint64_t disk_ok;  /* bytes at the start of the data file known allocated */
	uint64_t disk_tight; /* a whole STORE_DISK_STEP did not fit: below this
	                        offset, allocate only what each write needs */
	/* Where the data file is mapped, found for a map of map_len bytes
	 * (NULL: not found, or not safe to pwrite() into; blobs are then
	 * copied through the map, and their writeback waits for the commit). */
	const char *map;
	size_t map_len;
	store_commit_cb commit_cb;
	void *commit_arg;
	/* The close stamp (see store.c), open for writing; -1 if none. It
	 * says "open" (marked) until this handle's close writes the stamp. */
	int stamp_fd;
	bool marked;
};

struct store_txn {
	store_t *st;
	MDB_txn *txn;
	bool write;
	bool lazy;	       /* commit without the meta page sync */
	int err;	       /* sticky error */
	unsigned long nwrites; /* puts and deletes so far (see txn_ret) */
	uint64_t disk_end;     /* write txn: file bytes this txn may have used */
	/* MDB_WRITEMAP: the file range of blob pages whose writeback is not
	 * started yet (see txn_blob_written()). */
	uint64_t wb_lo, wb_hi;
	/* Scratch blocks handed out to callers (keyword arrays); freed at end. */
	void **scratch;
	size_t nscratch, capscratch;
	/* Blobs created in this txn: dropped at commit if still unreferenced. */
	store_hash_t *new_blobs;
	size_t nnew_blobs, capnew_blobs;
	/* Folders touched by writes, for the commit callback. */
	uint32_t *touched;
	size_t ntouched, captouched;
};

/* Write n bytes of a value reserved in the map at dst (a blob's bytes);
 * 0, STORE_EIO or STORE_ENOSPC. */
int txn_blob_copy(store_txn_t *txn, void *dst, const void *src, size_t n);

/* A blob's bytes were written at p (len bytes, in the map): start the
 * writeback of its whole pages. */
void txn_blob_written(store_txn_t *txn, const void *p, size_t len);

/* What versions before the close stamp left in the store directory while a
 * writer had it open: found at open time, the last writer did not close. */
#define STORE_OPEN_MARKER "open-marker"

/* Look at the environment at path in a child process before opening it; 0,
 * or STORE_ECORRUPT with a message if the child crashed or found a bad tree.
 * deep = false: the databases' root-to-leaf paths to their first and last
 * keys (a few pages each, whatever the size of the store); deep = true: every
 * key of every database. */
int store_probe(const char *path, bool deep, char *errbuf, size_t errlen);

/* The one place LMDB codes become STORE_E* codes. */
int store_map_mdb(int rc);

/*
 * Finish a public call: benign errors (not found, exists, invalid, conflict)
 * stay non-sticky only if nothing was written since writes_before; anything
 * else becomes the transaction's sticky error.
 */
int txn_ret(store_txn_t *txn, int rc, unsigned long writes_before);
/*
 * Finish a cursor walk of a public iterator: close c; a callback's non-zero
 * return (stopped) goes back to the caller as it is; a cursor error other
 * than the end of the data becomes a store error, through txn_ret().
 */
int txn_iter_end(store_txn_t *txn, MDB_cursor *c, int rc, int mrc, bool stopped);
/* Entry checks: sticky error, write access. */
int txn_enter(store_txn_t *txn, bool need_write);

/* Thin wrappers around mdb_get/put/del mapping codes; count writes. */
int db_get(store_txn_t *txn, int db, const void *k, size_t klen, MDB_val *val);
int db_put(store_txn_t *txn, int db, const void *k, size_t klen, const void *v, size_t vlen,
	   unsigned flags);
int db_reserve(store_txn_t *txn, int db, const void *k, size_t klen, size_t vlen, void **out);
int db_del(store_txn_t *txn, int db, const void *k, size_t klen);
/* Delete every key starting with prefix. */
int db_del_prefix(store_txn_t *txn, int db, const void *prefix, size_t plen);
int db_cursor(store_txn_t *txn, int db, MDB_cursor **out);

/* Meta counters. */
int meta_get_u64(store_txn_t *txn, const char *key, uint64_t *v);
int meta_put_u64(store_txn_t *txn, const char *key, uint64_t v);

void txn_touch(store_txn_t *txn, uint32_t folder_id);
/* Scratch memory valid until the transaction ends, or until released. */
void *txn_scratch(store_txn_t *txn, size_t n);
size_t txn_scratch_mark(const store_txn_t *txn);
void txn_scratch_release(store_txn_t *txn, size_t mark);
void txn_note_new_blob(store_txn_t *txn, const store_hash_t *h);

/* Record decoding with bounds checks; bad is set on any overrun. */
typedef struct dec {
	const uint8_t *p, *end;
	bool bad;
} dec_t;

static inline dec_t dec_init(const MDB_val *v)
{
	dec_t d = {(const uint8_t *)v->mv_data, (const uint8_t *)v->mv_data + v->mv_size, false};
	return d;
}
uint8_t dec_u8(dec_t *d);
uint32_t dec_u32(dec_t *d);
uint64_t dec_u64(dec_t *d);
const uint8_t *dec_bytes(dec_t *d, size_t n);
/* A NUL-terminated string inside the record; "" on overrun. */
const char *dec_str(dec_t *d);

void enc_u8(buf_t *b, uint8_t v);
void enc_u32(buf_t *b, uint32_t v);
void enc_u64(buf_t *b, uint64_t v);
void enc_str(buf_t *b, const char *s);

/* Keywords: normalise (sort, unique, validate) into a scratch array. */
int kw_normalise(store_txn_t *txn, const store_keywords_t *in, store_keywords_t *out);
void kw_encode(buf_t *b, const store_keywords_t *kw);
int kw_decode(store_txn_t *txn, dec_t *d, store_keywords_t *out);
bool kw_equal(const store_keywords_t *a, const store_keywords_t *b);

/* Cross-module internals. */
int folder_load(store_txn_t *txn, uint32_t folder_id, store_folder_t *out);
int folder_save(store_txn_t *txn, const store_folder_t *f);
int folder_delete_contents(store_txn_t *txn, uint32_t folder_id);
int blob_incref(store_txn_t *txn, const store_hash_t *h);
int blob_decref(store_txn_t *txn, const store_hash_t *h);
int blob_sweep_new(store_txn_t *txn);
int msg_decode(store_txn_t *txn, uint32_t folder_id, uint32_t uid, const MDB_val *v,
	       store_msg_t *out);
int replica_drop_folder(store_txn_t *txn, uint32_t folder_id);
int pending_drop_folder(store_txn_t *txn, uint32_t folder_id);

#endif

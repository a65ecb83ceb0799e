/*
 * The replica interface: one table of operations that every kind of mailbox
 * copy implements (a remote IMAP account in sync/imap_replica.c, a Maildir
 * tree in sync/maildir*.c), so the sync engine (sync/engine.c) is written and
 * tested once.
 *
 * Model (after mbsync's driver.h):
 *
 *  - A replica_t is one *session* with a replica: for IMAP, one connection;
 *    for Maildir, one handle on the tree. It has at most one folder open at a
 *    time. The scheduler opens several sessions to work on several folders of
 *    one account in parallel.
 *  - Every operation is asynchronous: it takes a callback and a ctx pointer
 *    and reports a graded status (enum replica_status) through the callback.
 *    A synchronous implementation (Maildir) simply calls the callback before
 *    returning; the engine is written to cope with both. An implementation
 *    never calls a callback after replica_free() / ops->free().
 *  - Callers may issue further operations without waiting for earlier
 *    callbacks (pipelining). Implementations queue them and call the
 *    callbacks in issue order. Operations that need an open folder must be
 *    issued after select() was issued (not necessarily completed).
 *  - After a REPLICA_BAD status the session is dead: every queued operation
 *    completes with REPLICA_BAD or REPLICA_CANCELLED, and the caller frees it.
 *
 * Names: folder names cross this interface in UTF-8 as the replica spells
 * them (for IMAP: the full mailbox name, decoded from modified UTF-7,
 * including any reference prefix; hierarchy separator given by
 * replica_folder_t.sep). Mapping them to store names (reference, nametrans,
 * separator) is sync/folders.c's job.
 *
 * Flags: system flags are a bitmask (REPLICA_F_*), keywords a string of
 * space-separated keyword atoms ("" for none; order is not significant, the
 * engine compares them as sets). \Recent is never reported or set.
 *
 * Ownership: every pointer handed to a callback (folder lists, message
 * records, strings, UID arrays) belongs to the implementation and is valid
 * only during that callback; copy what you keep. Every pointer the caller
 * passes into an operation (names, message bytes, UID arrays, sinks) must
 * stay valid until that operation's callback has run.
 */
#ifndef IB_SYNC_REPLICA_H
#define IB_SYNC_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Graded result of an operation, worst last (mbsync's DRV_* codes). */
enum replica_status {
	REPLICA_OK = 0,
	REPLICA_MSG_BAD = -1,    /* this message is gone or refused; go on with the others */
	REPLICA_FOLDER_BAD = -2, /* this folder cannot be used now (no such folder, no
	                            permission, UIDVALIDITY changed under us); other
	                            folders of the session still work after select() */
	REPLICA_BAD = -3,        /* the session is lost (connection dropped, protocol
	                            error, disk gone); free it and open a new one */
	REPLICA_CANCELLED = -4,  /* the operation never ran (session closing or dead) */
};

const char *replica_strerror(int status);

/* System flags. */
enum replica_flag {
	REPLICA_F_SEEN = 1 << 0,
	REPLICA_F_ANSWERED = 1 << 1,
	REPLICA_F_FLAGGED = 1 << 2,
	REPLICA_F_DELETED = 1 << 3,
	REPLICA_F_DRAFT = 1 << 4,
};
#define REPLICA_F_ALL 0x1fu

/* Capabilities of a session (connect) or of an open folder (select). */
enum replica_cap {
	REPLICA_CAP_MODSEQ = 1 << 0,      /* messages carry MODSEQ; scan(changedsince) works */
	REPLICA_CAP_VANISHED = 1 << 1,    /* deletions since a modseq are reported cheaply (QRESYNC) */
	REPLICA_CAP_MOVE = 1 << 2,        /* move() is atomic on the replica (UID MOVE) */
	REPLICA_CAP_UIDPLUS = 1 << 3,     /* append() and move() report the new UID */
	REPLICA_CAP_STATUS = 1 << 4,      /* status() answers without a full scan */
	REPLICA_CAP_READONLY = 1 << 5,    /* writes are refused (config readonly, or
	                                     the folder was opened read-only) */
	REPLICA_CAP_IDLE = 1 << 6,        /* watch() is supported */
	REPLICA_CAP_KEYWORDS = 1 << 7,    /* arbitrary keywords can be stored (PERMANENTFLAGS \*) */
	REPLICA_CAP_APPEND_FD = 1 << 8,   /* append_fd() is available */
	REPLICA_CAP_KW_GUESS = 1 << 9,    /* the folder was opened after read_intent()
	                                     and could not tell: REPLICA_CAP_KEYWORDS
	                                     is set as a guess */
};

/* SPECIAL-USE attributes (RFC 6154) of a folder. */
enum replica_special {
	REPLICA_SPECIAL_ALL = 1 << 0,
	REPLICA_SPECIAL_ARCHIVE = 1 << 1,
	REPLICA_SPECIAL_DRAFTS = 1 << 2,
	REPLICA_SPECIAL_FLAGGED = 1 << 3,
	REPLICA_SPECIAL_JUNK = 1 << 4,
	REPLICA_SPECIAL_SENT = 1 << 5,
	REPLICA_SPECIAL_TRASH = 1 << 6,
};

/* Counters of one folder; a field the replica does not know is 0. */
typedef struct replica_counts {
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t messages;
	uint64_t highestmodseq;   /* 0: the folder has no modseqs */
} replica_counts_t;

/* One folder, as listed. */
typedef struct replica_folder {
	const char *name;         /* replica spelling, see "Names" above */
	char sep;                 /* hierarchy separator, '\0' if flat */
	bool noselect;            /* \Noselect or \NonExistent: holds no messages */
	unsigned special;         /* enum replica_special bits */
	bool has_counts;          /* counts below came with the listing (LIST-STATUS) */
	replica_counts_t counts;
} replica_folder_t;

/* The state of a folder after select(). */
typedef struct replica_box {
	replica_counts_t counts;
	unsigned caps;            /* enum replica_cap bits valid for this folder */
} replica_box_t;

/* One message as reported by scan() or fetch(). */
typedef struct replica_msg {
	uint32_t uid;
	unsigned flags;           /* enum replica_flag bits */
	const char *keywords;     /* space-separated, "" for none, never NULL */
	uint64_t modseq;          /* 0 if the folder has no modseqs */
	uint64_t size;            /* RFC822.SIZE, 0 if not asked for / unknown */
	time_t internaldate;      /* 0 if not asked for / unknown */
	const char *message_id;   /* Message-ID header value with <>, or NULL if not
	                             asked for / absent */
} replica_msg_t;

typedef struct replica replica_t;

/* Plain completion. */
typedef void (*replica_done_cb)(int status, void *ctx);
/* list_folders(): the whole list at once. */
typedef void (*replica_folders_cb)(int status, const replica_folder_t *folders, size_t n,
                                   void *ctx);
/* status(): counts[i] answers names[i]; ok[i] false when that one failed. */
typedef void (*replica_status_cb)(int status, const replica_counts_t *counts, const bool *ok,
                                  size_t n, void *ctx);
/* select(): the folder's counters and capabilities. */
typedef void (*replica_select_cb)(int status, const replica_box_t *box, void *ctx);
/* append(), move(): the new UID, or 0 when the replica did not say. */
typedef void (*replica_uid_cb)(int status, uint32_t uid, void *ctx);
/* find(): matching UIDs in ascending order (maybe none). */
typedef void (*replica_uids_cb)(int status, const uint32_t *uids, size_t n, void *ctx);

/*
 * What scan() should report. The scan reports, through the callbacks of
 * replica_scan_sink_t:
 *  - msg_cb for every message with uid >= new_uid (new messages), and for
 *    every older message whose flags may have changed: all of them when
 *    changedsince is 0, else those with modseq > changedsince;
 *  - vanished_cb for UIDs that are known (in the known[] array) and no longer
 *    exist. It may also report UIDs outside known[] (QRESYNC VANISHED does);
 *    the caller ignores those.
 * So a caller treats "in known[], not vanished" as present, whatever the
 * method the implementation used (full FETCH, CHANGEDSINCE + VANISHED,
 * CHANGEDSINCE + UID SEARCH ALL, a directory scan).
 */
typedef struct replica_scan_opts {
	uint64_t changedsince;    /* 0: full scan; else needs REPLICA_CAP_MODSEQ */
	uint32_t new_uid;         /* messages with uid >= this are reported with the
	                             want_* fields below; usually the last seen UIDNEXT */
	const uint32_t *known;    /* sorted ascending UIDs the caller has pairs for */
	size_t n_known;
	bool want_size;           /* fill size for new messages */
	bool want_message_id;     /* fill message_id for new messages */
	bool want_internaldate;   /* fill internaldate for new messages */
} replica_scan_opts_t;

typedef struct replica_scan_sink {
	void *ctx;
	void (*msg_cb)(void *ctx, const replica_msg_t *m);
	/* Inclusive UID range that is gone. */
	void (*vanished_cb)(void *ctx, uint32_t lo, uint32_t hi);
} replica_scan_sink_t;

/*
 * Where fetch() delivers message bytes, streamed so a big message never sits
 * whole in the replica's memory. For each message: open(size) -> handle,
 * write() any number of times, then exactly one of done() (the message is
 * complete; m tells its uid, flags, ...; the sink owns the handle again) or
 * abort() (it failed; release the handle). open() returns NULL when the
 * sink cannot take the message; the replica then skips its bytes and the
 * fetch completes with REPLICA_MSG_BAD. write() returns 0, or a negative
 * number to make the fetch fail with REPLICA_MSG_BAD (the session stays
 * usable; the replica discards the rest of that message).
 * Messages may arrive in any order; a UID that does not exist is skipped.
 */
typedef struct replica_body_sink {
	void *ctx;
	void *(*open)(void *ctx, uint64_t size);
	int (*write)(void *ctx, void *handle, const char *data, size_t len);
	void (*done)(void *ctx, void *handle, const replica_msg_t *m);
	void (*abort)(void *ctx, void *handle);
} replica_body_sink_t;

/* A message to add with append(). */
typedef struct replica_new_msg {
	const char *data;         /* the raw bytes, exactly as stored */
	size_t len;
	unsigned flags;           /* enum replica_flag bits */
	const char *keywords;     /* space-separated, "" for none */
	time_t internaldate;      /* 0: let the replica choose */
} replica_new_msg_t;

/* What find() looks for: a copy of a message the caller uploaded. */
typedef struct replica_find {
	const char *message_id;   /* Message-ID with <>, or NULL to match on size only */
	uint64_t size;            /* 0: any size */
	uint32_t min_uid;         /* only UIDs >= this (the UIDNEXT before the upload) */
} replica_find_t;

/*
 * What select_read() does in one batch: open the folder, run the delta scan,
 * fetch the new messages' bytes. Every pointer must stay valid until cb ran.
 */
typedef struct replica_read {
	uint32_t uidvalidity;     /* the folder expected (nonzero) */
	replica_scan_opts_t scan; /* changedsince nonzero; known[] is not used */
	replica_scan_sink_t sink;
	uint32_t fetch_from;      /* bytes of every message with uid >= this; 0: none */
	uint32_t fetch_max;       /* at most this many bodies; more is REPLICA_MSG_BAD */
	replica_body_sink_t body;
	replica_select_cb sel_cb; /* the folder is open: its counters */
	replica_done_cb cb;       /* last: the scan and the fetch ended */
	void *ctx;                /* for sel_cb and cb */
} replica_read_t;

/*
 * The operation table. Implementations provide a static const instance with
 * designated initialisers. Optional operations may be NULL; their presence is
 * announced by the capability bits.
 */
typedef struct replica_ops {
	/* Reach the replica (connect, TLS, login; or check the tree). *caps gets
	 * session capabilities (enum replica_cap) before cb runs; the pointer must
	 * stay valid until then. */
	void (*connect)(replica_t *r, unsigned *caps, replica_done_cb cb, void *ctx);

	/* Every folder under the configured root/reference, in any order. */
	void (*list_folders)(replica_t *r, replica_folders_cb cb, void *ctx);

	/* Counters of n folders without selecting them (pipelined STATUS); needs
	 * REPLICA_CAP_STATUS, may be NULL otherwise. */
	void (*status)(replica_t *r, const char *const *names, size_t n, replica_status_cb cb,
	               void *ctx);

	/* Create a folder (and missing parents); special is a hint (enum
	 * replica_special), honoured where the replica can. Exists already: OK. */
	void (*create_folder)(replica_t *r, const char *name, unsigned special,
	                      replica_done_cb cb, void *ctx);

	/* Open a folder, closing any open one (without expunging anything). */
	void (*select)(replica_t *r, const char *name, replica_select_cb cb, void *ctx);

	/* Report messages and deletions of the open folder; see replica_scan_opts_t.
	 * The sink's callbacks run before cb. */
	void (*scan)(replica_t *r, const replica_scan_opts_t *opts, const replica_scan_sink_t *sink,
	             replica_done_cb cb, void *ctx);

	/* Fetch the full bytes (and flags, internaldate, size) of n messages of the
	 * open folder into sink. cb's status is REPLICA_OK when every existing
	 * message was delivered; missing UIDs are not an error. */
	void (*fetch)(replica_t *r, const uint32_t *uids, size_t n, const replica_body_sink_t *sink,
	              replica_done_cb cb, void *ctx);

	/* Add a message to the open folder (IMAP APPEND). cb gets its UID, or 0
	 * when the replica did not say (no UIDPLUS): then use find(). */
	void (*append)(replica_t *r, const replica_new_msg_t *m, replica_uid_cb cb, void *ctx);

	/* Look for messages in the open folder (UID SEARCH HEADER Message-ID ...
	 * LARGER/SMALLER ...). */
	void (*find)(replica_t *r, const replica_find_t *q, replica_uids_cb cb, void *ctx);

	/* Change the flags of one message of the open folder: add then remove.
	 * A vanished message is REPLICA_MSG_BAD. */
	void (*set_flags)(replica_t *r, uint32_t uid, unsigned add, const char *add_keywords,
	                  unsigned del, const char *del_keywords, replica_done_cb cb, void *ctx);

	/* Delete n messages of the open folder for good (\Deleted + UID EXPUNGE of
	 * exactly these UIDs; never an expunge of other messages). Messages
	 * already gone are not an error. */
	void (*delete_msgs)(replica_t *r, const uint32_t *uids, size_t n, replica_done_cb cb,
	                    void *ctx);

	/* Move one message of the open folder to another folder of this replica
	 * (UID MOVE). cb gets the UID in the target, or 0 if unknown. May be NULL
	 * when the replica cannot move (REPLICA_CAP_MOVE unset): the engine then
	 * treats a move as a new message in the target and a deletion in the
	 * source. */
	void (*move)(replica_t *r, uint32_t uid, const char *to, replica_uid_cb cb, void *ctx);

	/* Wait for changes in the open folder (IMAP IDLE) until a change arrives
	 * (cb with REPLICA_OK), unwatch() is called (REPLICA_CANCELLED), or the
	 * session fails. NULL when REPLICA_CAP_IDLE is unset. */
	void (*watch)(replica_t *r, replica_done_cb cb, void *ctx);
	void (*unwatch)(replica_t *r);

	/* Close the open folder (nothing is expunged). */
	void (*close)(replica_t *r, replica_done_cb cb, void *ctx);

	/* Log out where possible and release everything. Pending callbacks are
	 * not called. r is invalid afterwards. */
	void (*free)(replica_t *r);

	/* Optional (may be NULL): set_flags() for n messages at once, the same
	 * change for all (one UID STORE over a UID set). uids need not be
	 * sorted; the status covers them all. */
	void (*set_flags_uids)(replica_t *r, const uint32_t *uids, size_t n, unsigned add,
			       const char *add_keywords, unsigned del, const char *del_keywords,
			       replica_done_cb cb, void *ctx);

	/* Optional (REPLICA_CAP_APPEND_FD): append() with the bytes read from
	 * fd (m->len of them, from offset 0; m->data is ignored), so a big
	 * message never sits in memory. fd must stay open until cb runs. */
	void (*append_fd)(replica_t *r, const replica_new_msg_t *m, int fd, replica_uid_cb cb,
			  void *ctx);

	/* Optional (may be NULL): select() that also starts, in the same round
	 * trip, the delta scan the caller expects to ask for next (*hint, with
	 * hint->changedsince nonzero), where the replica can do that without
	 * known[] (IMAP with QRESYNC: SELECT and UID FETCH CHANGEDSINCE ...
	 * VANISHED pipelined). The next scan() with the same changedsince and
	 * new_uid is answered from what arrived; any other scan() or operation
	 * drops the early answer first. The replica also drops it when the SELECT
	 * shows a UIDVALIDITY other than uidvalidity, or a HIGHESTMODSEQ below
	 * hint->changedsince. hint->known is not used and need not stay valid
	 * after the call. */
	void (*select_scan)(replica_t *r, const char *name, uint32_t uidvalidity,
			    const replica_scan_opts_t *hint, replica_select_cb cb, void *ctx);

	/* Optional (may be NULL): the caller expects only to read the folder
	 * the next select() or select_scan() opens. The replica may open it
	 * read-only (IMAP EXAMINE: the server keeps its \Recent state and its
	 * cached STATUS answers, which a SELECT would make it recompute). A
	 * write afterwards still works: the replica first reopens the folder
	 * read-write, and fails the write (REPLICA_FOLDER_BAD) if the folder
	 * it finds is not the same one (another UIDVALIDITY) or is read-only. */
	void (*read_intent)(replica_t *r);

	/* Optional (may be NULL): the whole read of a folder the caller will
	 * not write to (nothing pending, no local change), sent at once: open
	 * it read-only where possible, scan rd->scan into rd->sink, then fetch
	 * from rd->fetch_from on into rd->body. Returns false when the replica
	 * cannot (no callback runs then). Otherwise the session takes the next
	 * operation at once, even another folder's select: the caller sends
	 * nothing more for this folder. Callbacks in order: sel_cb, the sinks,
	 * cb. When the open folder's UIDVALIDITY is not rd->uidvalidity, or it
	 * has no modseqs, or its HIGHESTMODSEQ is below scan.changedsince,
	 * nothing reaches the sinks and cb gets REPLICA_FOLDER_BAD; sel_cb
	 * still shows the counters. */
	bool (*select_read)(replica_t *r, const char *name, const replica_read_t *rd);
} replica_ops_t;

/*
 * The common head of every session. Implementations embed it as their first
 * member and hand out &impl->base; the rest of their struct is private.
 */
struct replica {
	const replica_ops_t *ops;
	const char *label;        /* for log prefixes ("acct=home remote"); owned
	                             by the implementation */
};

/* Thin wrappers, so callers read as replica_select(r, ...). */
static inline void replica_free(replica_t *r)
{
	if (r)
		r->ops->free(r);
}

/*
 * Helpers shared by implementations and the engine (sync/replica.c).
 */
/* "\\Seen \\Flagged" <-> bits. Unknown system flags (\Recent, \Foo) are
 * ignored by the parser. Returns the bits; flags_to_str writes into out
 * (size outlen, NUL-terminated) space-separated names in a fixed order. */
unsigned replica_flag_from_name(const char *name, size_t len);
void replica_flags_to_str(unsigned flags, char *out, size_t outlen);

/*
 * Keyword sets as strings: canonical form is sorted (byte order), unique,
 * single-space separated. Every function returns a new string the caller
 * frees.
 */
char *replica_kw_canon(const char *kw);
/* Join n keywords (any order, duplicates allowed) into canonical form. */
char *replica_kw_join(const char *const *v, size_t n);
/* Three-way merge per keyword: a keyword's value on the side that changed it
 * since the agreed set a wins; r = replica, s = store. */
char *replica_kw_merge(const char *a, const char *r, const char *s);
/* Keywords in to but not in from (*add) and in from but not in to (*del). */
void replica_kw_diff(const char *from, const char *to, char **add, char **del);
/* Split a keyword string into a new array of new strings (*n entries);
 * free with replica_kw_free_vec(). */
char **replica_kw_split(const char *kw, size_t *n);
void replica_kw_free_vec(char **v, size_t n);

#endif

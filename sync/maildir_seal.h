/*
 * Seals: letting the next sync trust a folder that only we changed.
 *
 * A folder's fingerprint (maildir_folder_stamp()) is taken when select()
 * opens it, and the engine records that value at the end of the sync. When
 * the sync then writes into the folder (an export, new messages), the
 * directories change and the next sync would have to read every file again
 * only to find our own writes. A seal avoids that without trusting anything
 * unproven: an inotify watch on cur/ and new/ is set up BEFORE the
 * fingerprint is taken, every change we make is announced beforehand
 * (maildir_seal_expect()), and when the session ends the folder is sealed
 * only if every event the kernel reported was one of ours, the queue never
 * overflowed, and the watch stayed on until the directories' time could no
 * longer come back unchanged (one tick of the clock file times come from):
 * any later change by a mail reader then moves the fingerprint. The seal is
 * a small file in the folder directory (outside cur/ and new/):
 *
 *     <value the engine records> <fingerprint after our writes>
 *     <UIDNEXT at select> <UIDNEXT at the end> <check>
 *
 * (one line; the check is a hash of the rest of the line) and
 * maildir_seal_matches() accepts it only when the store recorded exactly
 * that value and UIDNEXT and the folder still has exactly that fingerprint.
 * The recorded value names one session (a raw fingerprint that was already
 * the recorded one, in which case nothing was read; or a new, unique value):
 * a sync that crashed before its state was committed leaves a seal that
 * names a value the store never recorded, unless the session started from
 * an unchanged folder, where our writes only repeat (idempotently) what the
 * store's uncommitted changes ask for, with the engine's pending intents
 * for the uploads. A session that read every file of an unchanged folder
 * (a full scan the engine asked for) is never sealed.
 *
 * Only on local file systems: on a network file system another client's
 * change raises no inotify event here.
 *
 * Seals are written without fsync, in place: a lost seal, or one whose line
 * fails its check (a write cut short), is ignored (the folder is read once
 * more), never trusted. Without inotify (no instances left)
 * nothing is sealed. Not thread-safe; no logging.
 */
#ifndef IB_SYNC_MAILDIR_SEAL_H
#define IB_SYNC_MAILDIR_SEAL_H

#include <stdbool.h>
#include <stdint.h>

/* Name of the seal file inside each folder directory. */
#define MAILDIR_SEAL_FILE ".imapbridge-seal"

typedef struct maildir_seal maildir_seal_t;

/* Kinds of change announced by maildir_seal_expect(). */
enum maildir_seal_kind {
	MAILDIR_SEAL_APPEAR = 1,    /* a name appears (rename into, link, create) */
	MAILDIR_SEAL_DISAPPEAR = 2, /* a name goes (rename away, unlink) */
};

/* A new set of watches (one inotify instance, made with the first watch);
 * never NULL. */
maildir_seal_t *maildir_seal_new(void);
/* Stops every watch; folders not sealed yet stay unsealed. */
void maildir_seal_free(maildir_seal_t *s);

/*
 * Start watching folder directory dir (its cur/ and new/) for one session;
 * call it BEFORE maildir_folder_stamp(dir). Returns a handle >= 0, or -1
 * when it cannot watch (the folder is then simply never sealed). A session
 * still watched for the same dir is abandoned.
 */
int maildir_seal_watch(maildir_seal_t *s, const char *dir);

/* Announce a change we are about to make, or just made, in the folder of
 * handle h: kind, in new/ (else cur/), file name. */
void maildir_seal_expect(maildir_seal_t *s, int h, int kind, bool in_new, const char *name);

/* Read the events so far (matching them with the announced changes, which
 * are then forgotten): after every batch of writes, so neither the kernel's
 * queue nor the list of announced changes grows with the folder. */
void maildir_seal_drain(maildir_seal_t *s);

/* The session of h must not be sealed (it read an unchanged folder in full,
 * or a write failed half-way). */
void maildir_seal_spoil(maildir_seal_t *s, int h);

/* What a seal says: the folder with fingerprint after is what the sync
 * that recorded (recorded, UIDNEXT uidnext_sel or uidnext_end) left. The
 * engine records the UIDNEXT it was given at select() (uidnext_sel); one
 * that records the UIDNEXT after its appends (uidnext_end) is accepted too. */
typedef struct maildir_seal_rec {
	uint64_t recorded;
	uint64_t after;
	uint32_t uidnext_sel, uidnext_end;
} maildir_seal_rec_t;

/*
 * The session of h has ended: r->recorded is the value select() gave the
 * engine as the folder's modseq, r->uidnext_sel the UIDNEXT it gave,
 * r->uidnext_end the folder's UIDNEXT now (r->after is ignored). old is the
 * seal that select() accepted, or NULL: when it would still be accepted for
 * what this session leaves, it is not rewritten. The seal is written by a
 * later maildir_seal_poll() once it is proven.
 */
void maildir_seal_end(maildir_seal_t *s, int h, const maildir_seal_rec_t *r,
		      const maildir_seal_rec_t *old);

/* Read the events so far and write the seals that are proven (and drop the
 * watches of ended sessions that cannot be sealed). Cheap; call it often.
 * final: the last call; it may wait a few milliseconds for sessions that
 * ended just now (see maildir_seal.c). */
void maildir_seal_poll(maildir_seal_t *s, bool final);

/*
 * Read dir's seal and check that it says a folder with the valid
 * fingerprint stamp is what the sync that recorded (recorded, uidnext) left.
 * On true, *out (may be NULL) receives the seal.
 */
bool maildir_seal_matches(const char *dir, uint64_t recorded, uint32_t uidnext, uint64_t stamp,
			  maildir_seal_rec_t *out);

/* Remove dir's seal (the folder is being rebuilt). */
void maildir_seal_remove(const char *dir);

#endif

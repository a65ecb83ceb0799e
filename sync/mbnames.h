/*
 * mbnames: the folder list file for mail readers (mutt's "mailboxes" line),
 * as OfflineIMAP writes it:
 *
 *     header + sep.join(peritem for each folder) + footer
 *
 * where peritem may use %(accountname)s and %(foldername)s ("%%" is a '%').
 * foldername is the folder's path relative to the account's Maildir root, as
 * it appears in the tree ("INBOX", "Lists/foo", or "Lists.foo" with sep ".").
 * Items are sorted by account, then folder, so the file is stable.
 *
 * The scheduler calls mbnames_update() after each sync with the folders of
 * every account that has a Maildir; the file is rewritten only when its
 * content changes, atomically (temporary file, fsync, rename).
 */
#ifndef IB_MBNAMES_H
#define IB_MBNAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/config.h"

typedef struct mbnames_item {
	const char *account;
	const char *folder; /* as in the tree */
} mbnames_item_t;

/*
 * The file's content for items (any order; they are sorted into a copy).
 * Returns a new NUL-terminated string the caller frees.
 */
char *mbnames_render(const config_mbnames_t *mb, const mbnames_item_t *items, size_t n);

/*
 * Render and write mb->filename ("~/" expanded) when enabled and the content
 * differs from what the file holds. *changed (may be NULL) says whether it
 * was written. Returns 0 (also when disabled) or -errno.
 */
int mbnames_update(const config_mbnames_t *mb, const mbnames_item_t *items, size_t n,
		   bool *changed);

/*
 * The items for every account of cfg with a Maildir, read from the trees
 * themselves. Returns a new array (*n items); free with mbnames_items_free().
 */
mbnames_item_t *mbnames_items_from_config(const config_t *cfg, size_t *n);
void mbnames_items_free(mbnames_item_t *items, size_t n);

#endif

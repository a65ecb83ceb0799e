/* Store unit tests: open a store or end the test program. */
#ifndef IMAPBRIDGE_TEST_STORE_OPEN_H
#define IMAPBRIDGE_TEST_STORE_OPEN_H

#include <stdio.h>
#include <stdlib.h>

#include "store/store.h"

/* mapsize 0: the store's default initial map. */
static inline store_t *open_store(const char *dir, size_t mapsize)
{
	char err[512];
	store_t *st = NULL;
	store_open_opts_t o = {.initial_mapsize = mapsize};

	if (store_open(dir, &o, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "store_open: %s\n", err);
		exit(2);
	}
	return st;
}

#endif

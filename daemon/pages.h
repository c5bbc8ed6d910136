/* pages: the engine's database work in bounded pieces, so that the loop
 * never blocks for long: one transaction that promotes due rows (active ->
 * pending) or hashes new ones, cut at PAGES_ROWS rows or a time budget;
 * and one read of due pending rows for the queue, in retry-time order or,
 * in a backlog, in id order from a cursor, of one lane's rows (lanes.h).
 *
 * No state of its own but the fetch cursor the caller keeps; the caller
 * decides when a page runs (revoke's work step). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "idset.h"
#include "store.h"
#include "tokens.h"

/* One transaction promoting due rows at now_ms (store_promote_due), at
 * most about 2 ms of work, through store_begin(STORE_WRITE_CAN_WAIT) (so
 * -EAGAIN while a checkpoint copies). *ret_more: the page was cut short,
 * more rows may be waiting. On an error the transaction is rolled back. */
int pages_promote(struct store *s, int64_t now_ms, unsigned *ret_count, bool *ret_more);
/* The same for flagged rows only (the urgent lane's), through
 * store_begin(STORE_WRITE_URGENT): a leaked token does not wait for a
 * checkpoint's copy, which holds the bulk pages back. */
int pages_promote_flagged(struct store *s, int64_t now_ms, unsigned *ret_count, bool *ret_more);
/* The same for hashing new rows (store_hash_new), at most about 4 ms. */
int pages_hash(struct store *s, unsigned *ret_count, bool *ret_more);

/* Where the next fetch reads: kept by the caller between fetches. */
struct pages_cursor {
    bool backlog;     /* the last fetch found more due rows than a page */
    int64_t after_id; /* in a backlog, rows are read in id order after this id */
    bool urgent;      /* set by the caller: read the urgent lane's rows (sql/006), else the others */
};

/* Hand the due pending rows of the cursor's lane (next_attempt_at <=
 * now_ms, with a token) that held does not hold to take(), at most a page.
 * take() returns 0, or a negative errno that ends the fetch and is returned; it is expected to add
 * the row's id to held. *ret_all: every due row not held was seen (nothing
 * else is due until the next retry time or promotion). */
int pages_fetch(struct pages_cursor *c, struct store *s, const struct idset *held, int64_t now_ms,
                int (*take)(void *ud, const struct pending_row *row), void *ud, bool *ret_all);

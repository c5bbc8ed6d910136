/* hold: an operator's holds (issue 14): the queries that move tokens into
 * and out of the state `held`, and that drop one, each with its audit row.
 *
 *   active, pending --hold--> held        (`held`; never sent while held)
 *   held --release--> pending when due: it was pending when held, its
 *         expiry passed, or it was flagged or requested meanwhile; else
 *         active (`released` both ways; attempts and backoff kept)
 *   pending, held --drop--> failed        (`dropped`; no request is sent)
 * A held row is in none of the indexes the engine reads (they name state
 * 'pending' or 'active'), so neither expiry, a flag, a restart nor a crash
 * sends it. A socket revoke of a held token is recorded in the row
 * (hold_note_request: due reason `requested`) and served after release.
 * The audit detail names the operator's uid (SO_PEERCRED) and reason.
 *
 * The engine may hold a pending row's id in memory (fetched, queued, in
 * flight): hold and drop ask recall() first; it takes a queued job back or
 * answers -EINPROGRESS for a request already sent, which cannot be
 * recalled (its outcome is recorded as usual).
 *
 * Functions that write run inside the caller's transaction (store_begin).
 * Lifecycle: hold_open() on the store's connection -> calls -> hold_close(). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "db.h"
#include "names.h"

#define HOLD_COUNT_CAP 1000 /* hold_count() stops there: the status line's count */

struct hold;

/* Who asks, and why: the audit row's detail. */
struct hold_who {
    uid_t uid;          /* (uid_t)-1: unknown */
    const char *reason; /* NULL: none given */
    int64_t now_ms;
};

/* 0: the engine holds no job of id (any more); -EINPROGRESS: its request
 * is in flight or its outcome not yet committed. NULL recall: none holds. */
typedef int (*hold_recall_fn)(void *ud, int64_t id);

int hold_open(struct db *db, struct hold **ret_hold);
void hold_close(struct hold *h); /* NULL is fine */

/* Hold token id. -ENOENT: no such row; -EINVAL: it is not active or
 * pending (*ret_state: its state); -ENOKEY: it has no secret (nothing
 * could be sent); -EINPROGRESS from recall. */
int hold_id(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who, hold_recall_fn recall,
            void *ud, enum token_state *ret_state);
/* Release token id; *ret_state: pending or active after it. -ENOENT; -EINVAL
 * when it is not held (*ret_state: its state). */
int hold_release_id(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who,
                    enum token_state *ret_state);
/* Drop token id: failed, `dropped`, its secret NULL when scrub. -ENOENT;
 * -EINVAL when it is not pending or held (*ret_state: its state);
 * -EINPROGRESS from recall. */
int hold_drop(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who, bool scrub,
              hold_recall_fn recall, void *ud, enum token_state *ret_state);

/* A socket revoke of a held token: due reason `requested` (an `expired`
 * one too: it was asked for now), reason (may be NULL) as its
 * flag_reason. *ret_held: the row is held. */
int hold_note_request(struct hold *h, int64_t id, const char *reason, bool *ret_held);
/* A page of rows to walk, in id order after `after`: up to max of
 * subject's rows in any state (through its index), or of the held ones
 * (subject NULL). The caller acts on each by id (bulk.h: an op on many
 * tokens goes a page at a time, each part its own transaction); the
 * statement is reset before it returns, so no index is read while it is
 * being changed. *ret_n < max: the walk is at its end. */
struct hold_page_row {
    int64_t id;
    enum token_state state;
};
int hold_page(struct hold *h, const char *subject, int64_t after, struct hold_page_row *rows, size_t max,
              size_t *ret_n);

/* Held rows, through their index, up to HOLD_COUNT_CAP (tokens_count()
 * counts them exactly with the rest). */
int hold_count(struct hold *h, int64_t *ret_count);

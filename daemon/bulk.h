/* bulk: the control socket's ops on many tokens (hold or release by
 * subject, release of every held token, revoke by subject: "log out
 * everywhere") in parts, so that one request never keeps the loop from the
 * rest (pings, sends, commits, the watchdog).
 *
 * A part walks the next page of the set (hold_page: a subject's rows, or
 * the held ones, in id order after a cursor) and acts on each row by id, in
 * its own short transaction, committed before the next part runs, until
 * BULK_PART_ROWS rows are read or BULK_PART_MS has passed; the loop then
 * turns (one part per turn, an idle handle) and the next part goes on from
 * the cursor. Every row of the set is changed at most once, each with its
 * audit row, in the part that committed it; a part that fails is rolled
 * back whole and ends the op, the parts before it stay. A crash leaves every
 * committed part complete and the rest as it was: the same request again
 * does the rest (what is done already is no longer in the set).
 *
 * A hold goes in two passes: the pending rows first (the engine could send
 * them now), then the active ones (and any that became pending meanwhile).
 * The engine's queued jobs are recalled row by row as a single hold does;
 * one in flight is left and named once (in_flight), unless a later pass
 * held it after all.
 *
 * One op runs at a time; the others wait in order. The result (count and
 * ids) comes once, after the last part. A client that goes away does not
 * stop its op. Lifecycle: bulk_new() at start, bulk_start()* while it runs,
 * bulk_close() at stop: the running op ends at its part boundary and every
 * op is told -ECANCELED with what was committed. bulk_run() does an op
 * whole on the calling thread (no loop: tests, fuzz). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "hold.h"
#include "store.h"

#define BULK_PART_ROWS 1000 /* rows read by one part at most */
#define BULK_PART_MS 2      /* and a part stops reading after this long */

struct bulk;

enum bulk_op {
    BULK_HOLD,    /* the subject's active and pending tokens become held */
    BULK_RELEASE, /* the subject's held tokens, or every one (subject NULL), are released */
    BULK_REVOKE,  /* the subject's active tokens become due (requested); its held ones keep the request */
};

struct bulk_env {
    struct store *store;
    hold_recall_fn recall;  /* hold.h's, the engine's queue; NULL: none holds a job */
    void (*kick)(void *ud); /* the engine looks at the table (bulk.c says when); NULL: none */
    /* 0, or a negative errno: the database path no longer names the open
     * file (proto_env's), asked before and after every part. NULL: 0. */
    int (*file_check)(void *ud);
    void *ud;           /* the three's */
    unsigned part_rows; /* 0: BULK_PART_ROWS (tests give fewer) */
    int64_t part_ns;    /* 0: BULK_PART_MS */
};

struct bulk_request {
    enum bulk_op op;
    const char *subject; /* NULL only for a release of every held token */
    const char *reason;  /* may be NULL: hold's audit detail, revoke's flag reason */
    uid_t uid;           /* the operator (SO_PEERCRED), (uid_t)-1 unknown */
};

struct bulk_ids {
    int64_t *v;
    size_t n, cap;
};

struct bulk_result {
    struct bulk_ids ids;   /* changed, in the order changed: the reply's count and ids */
    struct bulk_ids other; /* hold: left in flight; revoke: held, the request kept */
    unsigned parts;        /* committed */
    int64_t longest_ns;    /* the longest part, for the log */
};

/* err 0: done; else the part that failed was rolled back (the errno), or
 * -ECANCELED at stop; res has what the committed parts did. */
typedef void bulk_done_fn(void *ud, int err, const struct bulk_result *res);

int bulk_new(uv_loop_t *loop, struct bulk **ret);
/* Copies req and env; done(ud, ...) comes once, on the loop, later. */
int bulk_start(struct bulk *b, const struct bulk_env *env, const struct bulk_request *req, bulk_done_fn *done,
               void *ud);
/* Every part now; 0 or the failed part's errno; *ret as done's (free it
 * with bulk_result_free()). */
int bulk_run(const struct bulk_env *env, const struct bulk_request *req, struct bulk_result *ret);
void bulk_result_free(struct bulk_result *res);
/* The op's reply line (without its newline), malloc'd; NULL: ENOMEM.
 * {"ok":true,"count":N,"ids":[...]} and, when not empty, a hold's
 * "in_flight" or a revoke's "held" (res.other). */
char *bulk_reply_text(enum bulk_op op, const struct bulk_result *res);
/* NULL is fine. */
void bulk_close(struct bulk *b);

/* dberror: how the engine lives with a database error that persists (a
 * dropped index, another process holding the write lock for long, a full
 * disk): the first failure of a kind is said once, then one summary a
 * minute with the count while it lasts, and one line when the step that
 * failed works again; the retry waits 250 ms, doubling to 4 s. "A kind" is
 * the step that failed and its error text. Pure: the caller passes the time
 * and writes the lines (report.h); the state is a plain struct, zero for
 * "no error". */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db.h"

#define DBERROR_RETRY_MIN_MS 250
#define DBERROR_RETRY_MAX_MS 4000
#define DBERROR_SUMMARY_MS 60000
#define DBERROR_BUSY_QUIET_MS 500 /* another process's write lock: a failure after this long */
#define DBERROR_BUSY_RETRY_MS 1 /* as SQLite's busy handler polls, without stopping the loop */

struct dberror {
    char what[64];         /* the failing step, "" when none */
    char msg[DB_ERRMSG_MAX + 64]; /* its error: db_errmsg() and errno's text */
    uint64_t since_ms;     /* first failure of this kind */
    uint64_t count;        /* failures of this kind */
    uint64_t told;         /* count at the last line said */
    uint64_t told_ms;      /* when */
    uint64_t busy_since_ms; /* the first write kept out by another process's lock, 0: none */
};

enum dberror_say {
    DBERROR_QUIET, /* said already: count it */
    DBERROR_FIRST, /* a new kind of failure: say it */
    DBERROR_STILL, /* a minute since the last line: say how often since */
};

/* Step what failed with msg at now_ms. *ret_retry_ms: when to try again. */
enum dberror_say dberror_failed(struct dberror *e, const char *what, const char *msg, uint64_t now_ms,
                                uint64_t *ret_retry_ms);
/* Step what worked at now_ms: true when it was the failing one (say that it
 * works again, with e's count and since_ms, then dberror_clear). */
bool dberror_ok(const struct dberror *e, const char *what);
void dberror_clear(struct dberror *e);
/* A write found another process's write lock (-EBUSY). The loop does not
 * wait for it (SQLite's busy handler would stop it, 50 ms a try, while an
 * application's transaction lasts): true while that has lasted less than
 * DBERROR_BUSY_QUIET_MS, with *ret_retry_ms DBERROR_BUSY_RETRY_MS (a
 * backoff lost the lock to an application that commits every few ms:
 * -37 % routine rate with a flag every 10 ms); then false: call
 * dberror_failed(). */
bool dberror_busy(struct dberror *e, uint64_t now_ms, uint64_t *ret_retry_ms);
/* A write went through: the lock is gone. */
void dberror_not_busy(struct dberror *e);

/* queue: the operator's views of the work waiting, for the socket ops
 * `queue` and `shape` (revokerctl queue, revokerctl shape).
 *
 *  - queue_page() reads one page of pending and held tokens, oldest due_at
 *    first (ties by id), on the loop's connection: a range of the index
 *    tokens_queue (sql/007-queue-order.sql) from a cursor, at most
 *    QUEUE_PAGE_MAX rows and QUEUE_SCAN_MAX index entries, so that one
 *    request costs milliseconds however large the table; the reply's
 *    cursor says where the next page starts.
 *  - shape is Postfix's qshape for tokens: the pending ones counted by age
 *    since due_at in doubling buckets, per due reason or per last event.
 *    It reads every pending row, so it runs on libuv's threadpool through a
 *    read-only connection of its own (queue_shape_start), one at a time, and
 *    answers later; the requests that come while one runs share the next
 *    count of their `by`. queue_shape_compute() is the same count on the calling
 *    thread (tests, and proto without a queue).
 *
 * Lifecycle: queue_new() at start, queue_shape_start()* while it runs,
 * queue_close() at stop: a shape waiting is told -ECANCELED, a running one
 * ends first. The pure parts (names, cursor, buckets, the JSON of a row and
 * of a grid) need nothing set up. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"

#define QUEUE_PAGE_MAX 1000  /* rows in one page */
#define QUEUE_SCAN_MAX 10000 /* index entries one page reads at most (filters leave rows out) */
#define QUEUE_NBUCKETS 10    /* 5m 10m 20m ... 1280m 1280m+ */
#define QUEUE_BUCKET_MS (5 * 60 * 1000)
#define QUEUE_SHAPE_ROWS 16    /* TOTAL and the names a grid can have */
#define QUEUE_SHAPE_WAITING 64 /* shape requests not answered yet (each client has one at most) */
#define QUEUE_CURSOR_LEN 48

/* Filters; 0 is "any". */
enum queue_reason { QUEUE_REASON_ANY = 0, QUEUE_EXPIRED, QUEUE_FLAGGED, QUEUE_REQUESTED };
enum queue_state { QUEUE_STATE_ANY = 0, QUEUE_PENDING, QUEUE_HELD };
enum queue_by { QUEUE_BY_REASON = 1, QUEUE_BY_EVENT };

/* Names as the socket and revokerctl spell them: 0, or -EINVAL for NULL or
 * another name. */
int queue_reason_from_name(const char *name, enum queue_reason *ret);
int queue_state_from_name(const char *name, enum queue_state *ret);
int queue_by_from_name(const char *name, enum queue_by *ret);
/* "expired", ..., "pending", ..., "reason", "event"; NULL for 0 or no value. */
const char *queue_reason_name(enum queue_reason r);
const char *queue_state_name(enum queue_state s);
const char *queue_by_name(enum queue_by b);

/* Where a page starts: after the row (due_at, id) in the queue's order.
 * A row whose due_at is NULL (written so by another process) sorts first. */
struct queue_cursor {
    bool due_null;
    int64_t due_at;
    int64_t id;
};
/* "DUE_AT_MS:ID" or "null:ID" (what a reply's "next" holds). 0 or -EINVAL. */
int queue_cursor_parse(const char *s, struct queue_cursor *ret);
void queue_cursor_format(const struct queue_cursor *c, char *buf, size_t len);

/* One token of the queue; strings "" when NULL. */
struct queue_row {
    int64_t id;
    char fingerprint[24];
    char subject[256];
    enum queue_reason reason; /* 0: none or a name revokerd does not write */
    bool due_null;
    int64_t due_at;
    unsigned attempts;
    int64_t next_attempt_at;
    char last_event[24];
    char last_error[512];
    bool held;
};
/* {"id","fingerprint","subject","reason","lane","due_at","attempts",
 * "next_attempt_at","last_event","last_error","held"}, times as ISO UTC
 * strings; NULL on ENOMEM. lane: "urgent" for flagged and requested,
 * "routine" otherwise (lanes.h). */
json_t *queue_row_json(const struct queue_row *r);

struct queue_filter {
    enum queue_reason reason;
    enum queue_state state;
    unsigned limit; /* 1 .. QUEUE_PAGE_MAX */
    bool after_set;
    struct queue_cursor after; /* when after_set */
};
/* One page: *ret_rows a JSON array of queue_row_json() objects, and
 * *ret_more true with *ret_next where the next page starts when the page
 * stopped before the end (it may hold fewer rows than the limit: a filter
 * left out every row of QUEUE_SCAN_MAX). 0, or -errno (db_fail: db_errmsg). */
int queue_page(struct db *db, const struct queue_filter *f, json_t **ret_rows, bool *ret_more,
               struct queue_cursor *ret_next);

/* 0 for an age under 5 min, 1 under 10 min, ... 8 under 1280 min, 9 for
 * the rest (qshape's geometric buckets); a negative age (a clock that went
 * back) is 0. */
unsigned queue_bucket(int64_t age_ms);
/* "5m", "10m", ..., "1280m", "1280m+". */
const char *queue_bucket_name(unsigned i);

struct queue_shape_row {
    const char *name; /* "TOTAL", a reason or event name, "other" */
    uint64_t total, count[QUEUE_NBUCKETS];
};
struct queue_shape {
    enum queue_by by;
    int64_t now_ms;
    int64_t oldest_due_ms; /* 0: none pending, or none with a due_at */
    unsigned nrows;        /* rows[0] is TOTAL */
    struct queue_shape_row rows[QUEUE_SHAPE_ROWS];
};
void queue_shape_init(struct queue_shape *s, enum queue_by by, int64_t now_ms);
/* One pending token: its reason's or last event's name (NULL, or a name
 * revokerd does not write, counts as "other") and due_at (due_null: unknown,
 * counted in the oldest bucket). */
void queue_shape_add(struct queue_shape *s, const char *name, bool due_null, int64_t due_at);
/* {"by","now","oldest_due_at","oldest_age_s","buckets":["T","5m",...],
 * "rows":[{"name","T","5m",...}]}: TOTAL first, the others by their total,
 * largest first. NULL on ENOMEM. */
json_t *queue_shape_json(const struct queue_shape *s);
/* Count the pending tokens of conn's table (one read transaction). 0, or
 * -errno with err saying what failed. */
int queue_shape_compute(sqlite3 *conn, enum queue_by by, int64_t now_ms, struct queue_shape *ret, char *err,
                        size_t errlen);

struct queue;
/* db_path: the database, opened read-only by each shape on the threadpool. */
int queue_new(uv_loop_t *loop, const char *db_path, struct queue **ret);
/* cb runs on the loop, once: err 0 with the grid, or -errno with a message
 * (-ECANCELED at queue_close). -EBUSY when QUEUE_SHAPE_WAITING requests
 * are not answered yet (cb is not called then), -ENOMEM. */
typedef void queue_shape_cb(void *ud, int err, const struct queue_shape *s, const char *errmsg);
int queue_shape_start(struct queue *q, enum queue_by by, queue_shape_cb *cb, void *ud);
/* NULL is fine. */
void queue_close(struct queue *q);

/* Every statement above, NULL-terminated: for the tests' EXPLAIN QUERY PLAN
 * (an index, no temporary b-tree). */
extern const char *const queue_statements[];

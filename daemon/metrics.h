/* metrics: the daemon's numbers in the Prometheus text exposition format
 * (version 0.0.4), for `{"op":"metrics"}` and `revokerctl metrics`.
 *
 * A scrape reads memory only, never the table:
 *  - the engine's counters (revoke_get_stats), its request histogram and
 *    answer classes (struct metrics_requests, which the engine fills with
 *    metrics_observe() as each request completes);
 *  - the store's commit and checkpoint histograms and the WAL's size
 *    (store_get_metrics);
 *  - the tokens per state and the oldest pending token's due_at per lane, which other
 *    processes change too (so they cannot be kept incrementally): a counter
 *    on libuv's threadpool, through a read-only connection of its own,
 *    counts them again every METRICS_COUNT_MS when PRAGMA data_version says
 *    that someone committed, and waits at least nine times the count's own
 *    duration before the next one (at most a tenth of a thread on a large
 *    table). It starts with the first scrape (which shows no token counts
 *    yet): a daemon nobody scrapes never counts, an idle one counts once;
 *    a scrape shows the last count.
 *
 * Lifecycle: metrics_new() -> metrics_set_sources() -> metrics_render()* ->
 * metrics_close(cb). metrics_format() is the pure part, for tests.
 * Two expositions: the text format 0.0.4, and OpenMetrics 1.0 (a counter's
 * family is named without _total, the text ends with "# EOF"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "histogram.h"
#include "http.h"
#include "store.h"

#define METRICS_COUNT_MS 5000

/* Upper bounds of revokerd_request_duration_seconds, in us (5 ms .. 30 s). */
#define METRICS_BUCKETS_US \
    {5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000}
#define METRICS_NBUCKETS 12

enum metrics_exposition {
    METRICS_TEXT,        /* text/plain; version=0.0.4 */
    METRICS_OPENMETRICS, /* application/openmetrics-text; version=1.0.0 */
};

enum metrics_code { METRICS_2XX, METRICS_3XX, METRICS_401, METRICS_429, METRICS_4XX, METRICS_5XX,
                    METRICS_NONE, METRICS_NCODES };

/* Completed requests since start: a histogram of their durations and the
 * class of their answers. */
struct metrics_requests {
    struct histogram duration; /* METRICS_BUCKETS_US */
    uint64_t code[METRICS_NCODES];
};

/* Count one completed request (any result, also one cut short). */
void metrics_observe(struct metrics_requests *m, const struct http_result *res);
/* "2xx", "3xx", "401", "429", "4xx", "5xx", "none" (no HTTP answer). */
const char *metrics_code_name(enum metrics_code c);

/* The socket ops counted by name; "invalid": no op field, or not JSON. */
#define METRICS_OPS                                                                                             \
    {"revoke", "status", "retry",   "stats", "metrics", "ping",  "track",                                       \
     "hold",   "release", "drop",   "queue", "shape",   "other", "invalid"}
#define METRICS_NOPS 14

struct metrics_tokens {
    bool counted;                  /* false until the first count ended well */
    int64_t active, pending, revoked, failed, held;
    int64_t oldest_due_ms[2];      /* min(due_at) of pending rows (Unix ms) per lane, 0 if none */
};

enum metrics_lane { METRICS_URGENT, METRICS_ROUTINE }; /* lanes.h: flagged or requested; expired */


struct revoke_stats;

/* Everything one scrape shows. A negative process value is left out (it
 * could not be read). */
struct metrics_snapshot {
    const struct revoke_stats *rs; /* NULL: no engine (tests) */
    const struct store_metrics *store; /* NULL: no store (tests) */
    struct metrics_tokens tokens;
    int64_t now_ms;                /* wall clock, Unix ms */
    double start_time_s;           /* Unix seconds */
    unsigned socket_clients;
    const uint64_t *socket_requests; /* METRICS_NOPS counts, by metrics_op_names; NULL: left out */
    uint64_t refused_uid, refused_too_many, refused_line_too_long;
    const char *version, *sqlite, *curl, *uv;
    double cpu_s;
    int64_t rss_bytes, open_fds;
};

/* The exposition text, malloc'd; NULL on ENOMEM. */
char *metrics_format(const struct metrics_snapshot *s, enum metrics_exposition x);
/* The Content-Type of an exposition. */
const char *metrics_content_type(enum metrics_exposition x);

struct metrics;
struct revoke;
struct ctl;

/* db_path: the database file, opened read-only for the counts (the counter
 * starts at once). -errno, and a message in err, when it cannot be opened. */
int metrics_new(uv_loop_t *loop, const char *db_path, struct metrics **ret, char *err, size_t errlen);
/* Where a scrape reads the engine's state and the socket's client count
 * (either may be NULL). */
void metrics_set_sources(struct metrics *m, struct revoke *r, struct ctl *c);
/* Where a scrape reads the commit and checkpoint numbers (NULL: none). */
void metrics_set_store(struct metrics *m, struct store *s);
/* One control socket request (proto): op is the "op" field's string, or
 * NULL without one. Counted by name for the ops metrics lists, the rest as
 * "other" (never a name from the request: it could be a secret). */
void metrics_count_request(struct metrics *m, const char *op);
/* A scrape: the text, malloc'd; NULL on ENOMEM. */
char *metrics_render(struct metrics *m, enum metrics_exposition x);
/* Stop counting; cb(data) runs once a count in progress has ended and m is
 * freed. NULL is fine (cb is not called then). */
void metrics_close(struct metrics *m, void (*cb)(void *data), void *data);

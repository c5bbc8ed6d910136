/* metrics: the Prometheus exposition text and the off-loop token counter
 * (see metrics.h). */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "build-config.h"
#include "ctl.h"
#include "db.h"
#include "log.h"
#include "revoke.h"
#include "store.h"
#include "util.h"

/* ---- the requests ---- */

_Static_assert(METRICS_NBUCKETS == HISTOGRAM_MAX, "histogram() renders HISTOGRAM_MAX buckets");
static const uint64_t bucket_us[METRICS_NBUCKETS] = METRICS_BUCKETS_US;
static const uint64_t commit_us[HISTOGRAM_MAX] = HISTOGRAM_COMMIT_US;
static const uint64_t checkpoint_us[HISTOGRAM_MAX] = HISTOGRAM_CHECKPOINT_US;
static const char *const op_names[METRICS_NOPS] = METRICS_OPS;

static enum metrics_code code_of(long status)
{
    if (status >= 200 && status < 300)
        return METRICS_2XX;
    if (status >= 300 && status < 400)
        return METRICS_3XX;
    if (status == 401)
        return METRICS_401;
    if (status == 429)
        return METRICS_429;
    if (status >= 400 && status < 500)
        return METRICS_4XX;
    if (status >= 500 && status < 600)
        return METRICS_5XX;
    return METRICS_NONE; /* no answer (0), or no HTTP status class */
}

void metrics_observe(struct metrics_requests *m, const struct http_result *res)
{
    histogram_observe(&m->duration, bucket_us, METRICS_NBUCKETS, res->duration_us);
    m->code[code_of(res->curl_code == CURLE_OK ? res->status : 0)]++;
}

const char *metrics_code_name(enum metrics_code c)
{
    static const char *const names[METRICS_NCODES] = {"2xx", "3xx", "401", "429", "4xx", "5xx", "none"};
    return c < METRICS_NCODES ? names[c] : "none";
}

/* ---- the text ---- */

/* OpenMetrics names a counter's family without its samples' _total. */
static void head(FILE *f, enum metrics_exposition x, const char *name, const char *type, const char *help)
{
    int n = (int)strlen(name);

    if (x == METRICS_OPENMETRICS && strcmp(type, "counter") == 0 && n > 6 && strcmp(name + n - 6, "_total") == 0)
        n -= 6;
    fprintf(f, "# HELP %.*s %s\n# TYPE %.*s %s\n", n, name, help, n, name, type);
}

static void one(FILE *f, enum metrics_exposition x, const char *name, const char *type, const char *help,
                uint64_t v)
{
    head(f, x, name, type, help);
    fprintf(f, "%s %" PRIu64 "\n", name, v);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void histogram(FILE *f, enum metrics_exposition x, const char *name, const char *help, const uint64_t *le_us,
                      const struct histogram *h)
{
    uint64_t cum = 0;

    head(f, x, name, "histogram", help);
    for (size_t i = 0; i < HISTOGRAM_MAX; i++) {
        cum += h->bucket[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)le_us[i] / 1e6, cum);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
    fprintf(f, "%s_sum %.6f\n", name, (double)h->sum_us / 1e6);
    fprintf(f, "%s_count %" PRIu64 "\n", name, h->count);
}

static void tokens(FILE *f, enum metrics_exposition x, const struct metrics_snapshot *s)
{
    const struct metrics_tokens *t = &s->tokens;
    const struct {
        const char *state;
        int64_t n;
    } states[] = {{"active", t->active},
                  {"pending", t->pending},
                  {"revoked", t->revoked},
                  {"failed", t->failed},
                  {"held", t->held}};
    static const char *const lanes[] = {[METRICS_URGENT] = "urgent", [METRICS_ROUTINE] = "routine"};

    if (!t->counted)
        return; /* nothing rather than a wrong 0 */
    head(f, x, "revokerd_tokens", "gauge", "Tokens in the table per state, counted again 5 s after a change (longer on a large table).");
    for (size_t i = 0; i < ARRAY_SIZE(states); i++)
        fprintf(f, "revokerd_tokens{state=\"%s\"} %" PRId64 "\n", states[i].state, states[i].n);
    head(f, x, "revokerd_pending_oldest_due_seconds", "gauge",
         "How long the oldest pending token of each lane (urgent: flagged or requested; routine: expired) has "
         "been due; 0 when none is pending.");
    for (size_t i = 0; i < ARRAY_SIZE(lanes); i++) {
        int64_t due = t->oldest_due_ms[i];
        int64_t age_ms = due > 0 && s->now_ms > due ? s->now_ms - due : 0;
        fprintf(f, "revokerd_pending_oldest_due_seconds{lane=\"%s\"} %.3f\n", lanes[i], (double)age_ms / 1000);
    }
}

static void requests(FILE *f, enum metrics_exposition x, const struct metrics_requests *m)
{
    histogram(f, x, "revokerd_request_duration_seconds", "Duration of logout requests that completed.", bucket_us,
              &m->duration);
    head(f, x, "revokerd_http_responses_total", "counter",
         "Logout requests that completed, by the class of their answer (none: no HTTP answer).");
    for (int c = 0; c < METRICS_NCODES; c++)
        fprintf(f, "revokerd_http_responses_total{code=\"%s\"} %" PRIu64 "\n", metrics_code_name(c), m->code[c]);
}

static void engine(FILE *f, enum metrics_exposition x, const struct revoke_stats *rs)
{
    const struct {
        const char *event;
        uint64_t n;
    } events[] = {{"revoked", rs->revoked},   {"already_invalid", rs->already_invalid},
                  {"rejected", rs->rejected}, {"gave_up", rs->gave_up},
                  {"retry", rs->retried},     {"dropped", rs->dropped}};
    static const char *const states[] = {"up", "down", "paused", "misconfigured"};
    const char *health = rs->health ? rs->health : "";

    head(f, x, "revokerd_outcomes_total", "counter", "Outcomes committed since start, by audit event.");
    for (size_t i = 0; i < ARRAY_SIZE(events); i++)
        fprintf(f, "revokerd_outcomes_total{event=\"%s\"} %" PRIu64 "\n", events[i].event, events[i].n);
    one(f, x, "revokerd_requests_in_flight", "gauge", "Logout requests sent and not yet answered.", rs->in_flight);
    requests(f, x, &rs->requests);
    /* paused (a Retry-After in force) is an endpoint that answers. */
    one(f, x, "revokerd_endpoint_up", "gauge", "1 when the logout endpoint answers for tokens (up or paused), else 0.",
        strcmp(health, "up") == 0 || strcmp(health, "paused") == 0);
    head(f, x, "revokerd_endpoint_state", "gauge", "The logout endpoint's state as revokerd sees it: 1 for the current one.");
    for (size_t i = 0; i < ARRAY_SIZE(states); i++)
        fprintf(f, "revokerd_endpoint_state{state=\"%s\"} %d\n", states[i], strcmp(health, states[i]) == 0);
    head(f, x, "revokerd_endpoint_down_seconds_total", "counter", "Time the logout endpoint was down since start.");
    fprintf(f, "revokerd_endpoint_down_seconds_total %.3f\n", (double)rs->down_ms / 1000);
    head(f, x, "revokerd_retry_after_wait_seconds_total", "counter",
         "Time requests were held by the endpoint's Retry-After since start.");
    fprintf(f, "revokerd_retry_after_wait_seconds_total %.3f\n", (double)rs->paused_ms / 1000);
    one(f, x, "revokerd_db_errors_total", "counter", "Database steps that failed (and were retried) since start.",
        rs->db_errors);
}

static void store(FILE *f, enum metrics_exposition x, const struct store_metrics *st)
{
    histogram(f, x, "revokerd_db_commit_duration_seconds", "Duration of the daemon's database commits.", commit_us,
              &st->commit);
    histogram(f, x, "revokerd_checkpoint_duration_seconds",
              "Duration of WAL checkpoint passes: the copy off the loop, the cut on it, the sweep if one ran.",
              checkpoint_us, &st->checkpoint);
    head(f, x, "revokerd_wal_frames", "gauge", "Frames in the WAL as the last commit left it; 0 once a checkpoint cut it.");
    fprintf(f, "revokerd_wal_frames %" PRId64 "\n", st->wal_frames);
    one(f, x, "revokerd_checkpoint_sweeps_total", "counter",
        "Sweeps that zeroed the database file's free space after secrets were cleared.", st->sweeps);
    one(f, x, "revokerd_sweep_pending", "gauge",
        "1 while a cleared secret waits for its sweep: old copies may remain in the file's free space.",
        st->sweep_due);
    head(f, x, "revokerd_db_size_bytes", "gauge", "Size of the database file (without the WAL).");
    fprintf(f, "revokerd_db_size_bytes %" PRId64 "\n", st->db_size_bytes);
    head(f, x, "revokerd_db_free_bytes", "gauge", "Free pages in the database file, which new rows reuse.");
    fprintf(f, "revokerd_db_free_bytes %" PRId64 "\n", st->db_free_bytes);
    head(f, x, "revokerd_pruned_rows_total", "counter", "Rows deleted by [retention] since start, by table.");
    fprintf(f, "revokerd_pruned_rows_total{table=\"tokens\"} %" PRIu64 "\n", st->pruned_tokens);
    fprintf(f, "revokerd_pruned_rows_total{table=\"audit\"} %" PRIu64 "\n", st->pruned_audit);
}

const char *metrics_content_type(enum metrics_exposition x)
{
    return x == METRICS_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                    : "text/plain; version=0.0.4; charset=utf-8";
}

char *metrics_format(const struct metrics_snapshot *s, enum metrics_exposition x)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        return NULL;
    tokens(f, x, s);
    if (s->rs)
        engine(f, x, s->rs);
    if (s->store)
        store(f, x, s->store);
    one(f, x, "revokerd_socket_clients", "gauge", "Clients connected to the control socket.", s->socket_clients);
    if (s->socket_requests) {
        head(f, x, "revokerd_socket_requests_total", "counter",
             "Control socket requests by op (other: an unknown op; invalid: no op, or not JSON).");
        for (int i = 0; i < METRICS_NOPS; i++)
            fprintf(f, "revokerd_socket_requests_total{op=\"%s\"} %" PRIu64 "\n", op_names[i], s->socket_requests[i]);
    }
    head(f, x, "revokerd_socket_refused_total", "counter",
         "Control socket connections refused: not allowed (uid), over daemon.max_clients, a line over 64 KiB.");
    fprintf(f, "revokerd_socket_refused_total{why=\"uid\"} %" PRIu64 "\n", s->refused_uid);
    fprintf(f, "revokerd_socket_refused_total{why=\"too_many\"} %" PRIu64 "\n", s->refused_too_many);
    fprintf(f, "revokerd_socket_refused_total{why=\"line_too_long\"} %" PRIu64 "\n", s->refused_line_too_long);
    head(f, x, "revokerd_build_info", "gauge", "revokerd's version and the library versions it runs with.");
    fputs("revokerd_build_info{version=", f);
    label_value(f, s->version);
    fputs(",sqlite=", f);
    label_value(f, s->sqlite);
    fputs(",curl=", f);
    label_value(f, s->curl);
    fputs(",uv=", f);
    label_value(f, s->uv);
    fputs("} 1\n", f);
    head(f, x, "revokerd_start_time_seconds", "gauge", "When revokerd started, in Unix seconds.");
    fprintf(f, "revokerd_start_time_seconds %.3f\n", s->start_time_s);
    if (s->cpu_s >= 0) {
        head(f, x, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
        fprintf(f, "process_cpu_seconds_total %.6f\n", s->cpu_s);
    }
    if (s->rss_bytes >= 0) {
        head(f, x, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        fprintf(f, "process_resident_memory_bytes %" PRId64 "\n", s->rss_bytes);
    }
    if (s->open_fds >= 0) {
        head(f, x, "process_open_fds", "gauge", "Open file descriptors.");
        fprintf(f, "process_open_fds %" PRId64 "\n", s->open_fds);
    }
    if (x == METRICS_OPENMETRICS)
        fputs("# EOF\n", f);
    if (ferror(f)) {
        fclose(f);
        free(text);
        return NULL;
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- the process ---- */

static double cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return -1;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long long size, resident;
    int n;

    if (!f)
        return -1;
    n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : -1;
}

static int64_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int64_t n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* ---- the token counter ---- */

struct metrics {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_work_t work;
    bool working, closing, timer_closed;
    bool scraped; /* the counter runs from the first scrape on */
    void (*close_cb)(void *);
    void *close_data;

    /* The worker's: used on the threadpool only, one count at a time. */
    sqlite3 *conn;
    sqlite3_stmt *version, *total, *revoked, *pending, *failed, *held, *oldest[2];
    int64_t data_version;
    struct metrics_tokens fresh;
    int fresh_rc;
    char fresh_err[160];
    uint64_t took_ms;

    struct metrics_tokens tokens; /* the loop's copy, for scrapes */
    uint64_t requests[METRICS_NOPS];
    bool failing;                  /* the last count failed (logged once) */
    double start_time_s;
    struct revoke *revoke;
    struct ctl *ctl;
    struct store *store;
};

/* One number from a prepared count; NULL reads 0. */
static int count_one(sqlite3_stmt *st, int64_t *ret)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc;
}

/* Inside one read transaction, so the numbers agree. Not GROUP BY state: it
 * sorts the whole table (305 ms for 1 M rows); these take 51 ms (count(*)
 * walks the b-tree) + 87 ms (the revoked scan) + the partial indexes of
 * pending and failed (5 ms for 100 k pending) + the oldest due_at of each
 * lane: the urgent one through its own small index (sql/006), the routine
 * one from the pending rows (69 ms for 100 k pending). */
static int step_count(struct metrics *m)
{
    struct metrics_tokens t = {.counted = true};
    int64_t total = 0;
    int rc = count_one(m->total, &total);

    if (rc == SQLITE_OK)
        rc = count_one(m->revoked, &t.revoked);
    if (rc == SQLITE_OK)
        rc = count_one(m->pending, &t.pending);
    if (rc == SQLITE_OK)
        rc = count_one(m->failed, &t.failed);
    if (rc == SQLITE_OK)
        rc = count_one(m->held, &t.held);
    for (size_t i = 0; rc == SQLITE_OK && t.pending > 0 && i < ARRAY_SIZE(m->oldest); i++)
        rc = count_one(m->oldest[i], &t.oldest_due_ms[i]);
    if (rc != SQLITE_OK)
        return rc;
    /* state is one of the five (the table's CHECK constraint). */
    t.active = total - t.revoked - t.pending - t.failed - t.held;
    m->fresh = t;
    return SQLITE_OK;
}

/* On the threadpool: count again if anyone committed since the last count. */
static void count_work(uv_work_t *w)
{
    struct metrics *m = container_of(w, struct metrics, work);
    uint64_t start = uv_hrtime();
    int64_t version = -1;
    int rc;

    m->fresh_rc = SQLITE_OK;
    rc = sqlite3_exec(m->conn, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(m->version);
        if (rc == SQLITE_ROW) {
            version = sqlite3_column_int64(m->version, 0);
            rc = SQLITE_OK;
        }
        sqlite3_reset(m->version);
    }
    if (rc == SQLITE_OK && (version != m->data_version || !m->fresh.counted))
        rc = step_count(m);
    if (rc == SQLITE_OK)
        m->data_version = version;
    else
        snprintf(m->fresh_err, sizeof(m->fresh_err), "%s", sqlite3_errmsg(m->conn));
    m->fresh_rc = rc;
    sqlite3_exec(m->conn, "COMMIT", NULL, NULL, NULL);
    m->took_ms = (uv_hrtime() - start) / 1000000;
}

static void finish_close(struct metrics *m)
{
    void (*cb)(void *) = m->close_cb;
    void *data = m->close_data;

    sqlite3_stmt *all[] = {m->version, m->total,  m->revoked,   m->pending,
                           m->failed,  m->held, m->oldest[0], m->oldest[1]};

    for (size_t i = 0; i < ARRAY_SIZE(all); i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(m->conn);
    free(m);
    if (cb)
        cb(data);
}

static void on_timer(uv_timer_t *h);

static void count_done(uv_work_t *w, int status)
{
    struct metrics *m = container_of(w, struct metrics, work);
    uint64_t wait_ms = 9 * m->took_ms;

    m->working = false;
    if (m->closing) {
        if (m->timer_closed)
            finish_close(m);
        return;
    }
    if (status == 0 && m->fresh_rc == SQLITE_OK) {
        if (m->failing)
            log_notice("metrics: counting the tokens works again");
        m->failing = false;
        m->tokens = m->fresh;
    } else if (!m->failing) {
        m->failing = true;
        log_warning("metrics: cannot count the tokens (%s); the metrics show the last count, trying again in %d s",
                    status ? uv_strerror(status) : m->fresh_err, METRICS_COUNT_MS / 1000);
    }
    uv_timer_start(&m->timer, on_timer, wait_ms > METRICS_COUNT_MS ? wait_ms : METRICS_COUNT_MS, 0);
}

static void on_timer(uv_timer_t *h)
{
    struct metrics *m = container_of(h, struct metrics, timer);

    if (m->working || m->closing)
        return;
    m->working = uv_queue_work(m->loop, &m->work, count_work, count_done) == 0;
    if (!m->working)
        uv_timer_start(&m->timer, on_timer, METRICS_COUNT_MS, 0);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct metrics *m = container_of((uv_timer_t *)h, struct metrics, timer);

    m->timer_closed = true;
    if (!m->working)
        finish_close(m);
}

int metrics_new(uv_loop_t *loop, const char *db_path, struct metrics **ret, char *err, size_t errlen)
{
    struct metrics *m = calloc(1, sizeof(*m));
    int rc;

    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    m->loop = loop;
    m->data_version = -1;
    m->start_time_s = (double)db_now_ms() / 1000;
    rc = sqlite3_open_v2(db_path, &m->conn, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(m->conn, 1000);
    const struct {
        const char *sql;
        sqlite3_stmt **st;
    } stmts[] = {
        {"PRAGMA data_version", &m->version},
        {"SELECT count(*) FROM tokens", &m->total},
        {"SELECT count(*) FROM tokens WHERE state = 'revoked'", &m->revoked},
        {"SELECT count(*) FROM tokens WHERE state = 'pending'", &m->pending},
        {"SELECT count(*) FROM tokens WHERE state = 'failed'", &m->failed},
        {"SELECT count(*) FROM tokens WHERE state = 'held'", &m->held},
        {"SELECT min(due_at) FROM tokens WHERE state = 'pending' AND due_reason <> 'expired'",
         &m->oldest[METRICS_URGENT]},
        {"SELECT min(due_at) FROM tokens WHERE state = 'pending' AND due_reason = 'expired'",
         &m->oldest[METRICS_ROUTINE]},
    };
    for (size_t i = 0; rc == SQLITE_OK && i < ARRAY_SIZE(stmts); i++)
        rc = sqlite3_prepare_v2(m->conn, stmts[i].sql, -1, stmts[i].st, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s read-only to count the tokens: %s", db_path,
                 m->conn ? sqlite3_errmsg(m->conn) : sqlite3_errstr(rc));
        rc = db_errno(rc);
        m->closing = true;
        finish_close(m);
        return rc;
    }
    uv_timer_init(loop, &m->timer); /* started by the first scrape */
    *ret = m;
    return 0;
}

void metrics_set_sources(struct metrics *m, struct revoke *r, struct ctl *c)
{
    m->revoke = r;
    m->ctl = c;
}

void metrics_set_store(struct metrics *m, struct store *s)
{
    m->store = s;
}

void metrics_count_request(struct metrics *m, const char *op)
{
    size_t i = METRICS_NOPS - 1; /* invalid */

    if (op)
        for (i = 0; i < METRICS_NOPS - 2 && strcmp(op, op_names[i]) != 0; i++)
            ; /* stops at "other" */
    m->requests[i]++;
}

char *metrics_render(struct metrics *m, enum metrics_exposition x)
{
    /* The first scrape starts the counter: a daemon nobody scrapes never
     * reads its table for metrics (a count of 1 M rows costs about 0.15 s
     * of CPU, and the idle daemon's budget is 60 ms a minute). */
    if (!m->scraped && !m->closing) {
        m->scraped = true;
        uv_timer_start(&m->timer, on_timer, 0, 0);
    }
    struct store_metrics st;
    struct ctl_refusals refused = ctl_get_refusals(m->ctl);
    struct revoke_stats rs;
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    struct metrics_snapshot s = {
        .rs = NULL,
        .tokens = m->tokens,
        .now_ms = db_now_ms(),
        .start_time_s = m->start_time_s,
        .socket_clients = ctl_clients(m->ctl),
        .socket_requests = m->requests,
        .refused_uid = refused.uid,
        .refused_too_many = refused.too_many,
        .refused_line_too_long = refused.line_too_long,
        .version = REVOKERD_VERSION,
        .sqlite = sqlite3_libversion(),
        .curl = cv ? cv->version : "",
        .uv = uv_version_string(),
        .cpu_s = cpu_seconds(),
        .rss_bytes = rss_bytes(),
        .open_fds = open_fds(),
    };

    if (m->revoke) {
        revoke_get_stats(m->revoke, &rs);
        s.rs = &rs;
    }
    if (m->store) {
        store_get_metrics(m->store, &st);
        s.store = &st;
    }
    return metrics_format(&s, x);
}

void metrics_close(struct metrics *m, void (*cb)(void *data), void *data)
{
    if (!m)
        return;
    m->closing = true;
    m->close_cb = cb;
    m->close_data = data;
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

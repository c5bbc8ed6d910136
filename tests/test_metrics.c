/* Unit tests for metrics: the histogram's buckets and the answer classes,
 * the exposition text of a known snapshot (exact lines, HELP and TYPE for
 * every family, escaped label values, what is left out), the store's
 * histograms, OpenMetrics and the Accept header that asks for it, and the token
 * counter on the threadpool against a real SQLite file. */
#include <sqlite3.h>
#include <unistd.h>
#include <uv.h>

#include "db.h"
#include "metrics.h"
#include "metrics_http.h"
#include "revoke.h"
#include "unit.h"
#include "util.h"

static char dir[] = "/tmp/revokerd-metrics-XXXXXX", path[256];

static struct http_result result(long status, CURLcode code, uint64_t us)
{
    struct http_result r = {.status = status, .curl_code = code, .duration_us = us, .duration_ms = us / 1000};
    return r;
}

static void test_observe_buckets_and_codes(void)
{
    struct metrics_requests m = {0};
    const struct {
        long status;
        CURLcode code;
        uint64_t us;
        int bucket; /* -1: above the last bound (+Inf only) */
        enum metrics_code class;
    } cases[] = {
        {200, CURLE_OK, 0, 0, METRICS_2XX},
        {204, CURLE_OK, 5000, 0, METRICS_2XX},          /* le is inclusive */
        {301, CURLE_OK, 5001, 1, METRICS_3XX},
        {401, CURLE_OK, 10000, 1, METRICS_401},
        {403, CURLE_OK, 24999, 2, METRICS_4XX},
        {422, CURLE_OK, 100000, 4, METRICS_4XX},
        {429, CURLE_OK, 1000000, 7, METRICS_429},
        {500, CURLE_OK, 29999999, 11, METRICS_5XX},
        {503, CURLE_OK, 30000000, 11, METRICS_5XX},
        {0, CURLE_COULDNT_CONNECT, 300, 0, METRICS_NONE},
        {0, CURLE_OPERATION_TIMEDOUT, 30000001, -1, METRICS_NONE},
        {200, CURLE_RECV_ERROR, 6000, 1, METRICS_NONE}, /* a status, but the answer did not arrive */
    };
    uint64_t want_bucket[METRICS_NBUCKETS] = {0}, want_code[METRICS_NCODES] = {0}, sum = 0;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct http_result r = result(cases[i].status, cases[i].code, cases[i].us);
        metrics_observe(&m, &r);
        if (cases[i].bucket >= 0)
            want_bucket[cases[i].bucket]++;
        want_code[cases[i].class]++;
        sum += cases[i].us;
    }
    CHECK_INT(m.duration.count, ARRAY_SIZE(cases));
    CHECK_INT(m.duration.sum_us, sum);
    for (int i = 0; i < METRICS_NBUCKETS; i++)
        CHECK_INT(m.duration.bucket[i], want_bucket[i]);
    for (int i = 0; i < METRICS_NCODES; i++)
        CHECK_INT(m.code[i], want_code[i]);
    CHECK_STR(metrics_code_name(METRICS_401), "401");
    CHECK_STR(metrics_code_name(METRICS_NONE), "none");
}

static struct revoke_stats known_stats(void)
{
    struct revoke_stats rs = {
        .in_flight = 3, .revoked = 10, .already_invalid = 2, .rejected = 1, .gave_up = 4, .retried = 7, .dropped = 5,
        .db_errors = 5, .health = "down", .last_error = "connection refused", .down_ms = 61500,
        .paused_ms = 2000,
    };
    struct http_result r;

    r = result(200, CURLE_OK, 4000);
    metrics_observe(&rs.requests, &r);
    r = result(401, CURLE_OK, 60000);
    metrics_observe(&rs.requests, &r);
    r = result(0, CURLE_COULDNT_CONNECT, 40000000);
    metrics_observe(&rs.requests, &r);
    return rs;
}

static struct metrics_snapshot known_snapshot(const struct revoke_stats *rs)
{
    return (struct metrics_snapshot){
        .rs = rs,
        .tokens = {.counted = true, .active = 100, .pending = 20, .revoked = 30, .failed = 4, .held = 6,
                   .oldest_due_ms = {1700000080000, 1700000000000}},
        .now_ms = 1700000090500,
        .start_time_s = 1699999999.25,
        .socket_clients = 2,
        .refused_uid = 3, .refused_too_many = 1, .refused_line_too_long = 6,
        .version = "0.1.0", .sqlite = "3.40.1", .curl = "7.88.1", .uv = "1.44.2",
        .cpu_s = 1.5, .rss_bytes = 4096, .open_fds = 9,
    };
}

/* Every sample's family has # HELP and # TYPE before it, the text ends
 * with one newline, and no line ends in a blank. */
static void check_structure(const char *text)
{
    static const char *const histogram_suffix[] = {"_bucket", "_sum", "_count"};
    char *copy = strdup(text), *save = NULL;
    REQUIRE(copy);
    CHECK(strlen(text) > 0 && text[strlen(text) - 1] == '\n' && strstr(text, "\n\n") == NULL);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128], help[160], type[160];
        size_t n = strcspn(line, "{ ");
        CHECK(line[strlen(line) - 1] != ' ');
        if (line[0] == '#')
            continue;
        REQUIRE(n < sizeof(name));
        memcpy(name, line, n);
        name[n] = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(histogram_suffix); i++) {
            size_t l = strlen(histogram_suffix[i]);
            snprintf(type, sizeof(type), "# TYPE %.*s histogram\n", (int)(n - l), name);
            if (n > l && strcmp(name + n - l, histogram_suffix[i]) == 0 && strstr(text, type))
                name[n - l] = '\0';
        }
        snprintf(help, sizeof(help), "# HELP %s ", name);
        snprintf(type, sizeof(type), "# TYPE %s ", name);
        if (!strstr(text, help) || !strstr(text, type)) {
            fprintf(stderr, "no HELP or TYPE for %s\n", name);
            CHECK(0);
        }
    }
    free(copy);
}

static void test_format_known_snapshot(void)
{
    struct revoke_stats rs = known_stats();
    struct metrics_snapshot s = known_snapshot(&rs);
    char *text = metrics_format(&s, METRICS_TEXT);
    static const char *const lines[] = {
        "# TYPE revokerd_tokens gauge\n",
        "\nrevokerd_tokens{state=\"active\"} 100\n",
        "\nrevokerd_tokens{state=\"pending\"} 20\n",
        "\nrevokerd_tokens{state=\"revoked\"} 30\n",
        "\nrevokerd_tokens{state=\"failed\"} 4\n",
        "\nrevokerd_tokens{state=\"held\"} 6\n",
        "\nrevokerd_pending_oldest_due_seconds{lane=\"urgent\"} 10.500\n"
        "revokerd_pending_oldest_due_seconds{lane=\"routine\"} 90.500\n",
        "# TYPE revokerd_outcomes_total counter\n",
        "\nrevokerd_outcomes_total{event=\"revoked\"} 10\n",
        "\nrevokerd_outcomes_total{event=\"already_invalid\"} 2\n",
        "\nrevokerd_outcomes_total{event=\"rejected\"} 1\n",
        "\nrevokerd_outcomes_total{event=\"gave_up\"} 4\n",
        "\nrevokerd_outcomes_total{event=\"retry\"} 7\n",
        "\nrevokerd_outcomes_total{event=\"dropped\"} 5\n",
        "\nrevokerd_requests_in_flight 3\n",
        "# TYPE revokerd_request_duration_seconds histogram\n",
        "\nrevokerd_request_duration_seconds_bucket{le=\"0.005\"} 1\n"
        "revokerd_request_duration_seconds_bucket{le=\"0.01\"} 1\n"
        "revokerd_request_duration_seconds_bucket{le=\"0.025\"} 1\n"
        "revokerd_request_duration_seconds_bucket{le=\"0.05\"} 1\n"
        "revokerd_request_duration_seconds_bucket{le=\"0.1\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"0.25\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"0.5\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"1\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"2.5\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"5\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"10\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"30\"} 2\n"
        "revokerd_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"
        "revokerd_request_duration_seconds_sum 40.064000\n"
        "revokerd_request_duration_seconds_count 3\n",
        "\nrevokerd_http_responses_total{code=\"2xx\"} 1\n",
        "\nrevokerd_http_responses_total{code=\"401\"} 1\n",
        "\nrevokerd_http_responses_total{code=\"5xx\"} 0\n",
        "\nrevokerd_http_responses_total{code=\"none\"} 1\n",
        "\nrevokerd_endpoint_up 0\n",
        "\nrevokerd_endpoint_state{state=\"up\"} 0\n",
        "\nrevokerd_endpoint_state{state=\"down\"} 1\n",
        "\nrevokerd_endpoint_state{state=\"paused\"} 0\n",
        "\nrevokerd_endpoint_state{state=\"misconfigured\"} 0\n",
        "# TYPE revokerd_endpoint_down_seconds_total counter\nrevokerd_endpoint_down_seconds_total 61.500\n",
        "# TYPE revokerd_retry_after_wait_seconds_total counter\nrevokerd_retry_after_wait_seconds_total 2.000\n",
        "# TYPE revokerd_db_errors_total counter\nrevokerd_db_errors_total 5\n",
        "\nrevokerd_socket_clients 2\n",
        ("# TYPE revokerd_socket_refused_total counter\nrevokerd_socket_refused_total{why=\"uid\"} 3\n"
         "revokerd_socket_refused_total{why=\"too_many\"} 1\nrevokerd_socket_refused_total{why=\"line_too_long\"} 6\n"),
        "\nrevokerd_build_info{version=\"0.1.0\",sqlite=\"3.40.1\",curl=\"7.88.1\",uv=\"1.44.2\"} 1\n",
        "\nrevokerd_start_time_seconds 1699999999.250\n",
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.500000\n",
        "\nprocess_resident_memory_bytes 4096\n",
        "\nprocess_open_fds 9\n",
    };

    REQUIRE(text);
    for (size_t i = 0; i < ARRAY_SIZE(lines); i++)
        if (!strstr(text, lines[i])) {
            fprintf(stderr, "missing: %s", lines[i]);
            CHECK(0);
        }
    check_structure(text);
    CHECK(strstr(text, "connection refused") == NULL); /* not a metric */
    free(text);

    /* paused is an endpoint that answers: up 1. */
    rs.health = "paused";
    text = metrics_format(&s, METRICS_TEXT);
    REQUIRE(text);
    CHECK(strstr(text, "\nrevokerd_endpoint_up 1\n") && strstr(text, "\nrevokerd_endpoint_state{state=\"paused\"} 1\n"));
    free(text);
}

static struct store_metrics known_store(void)
{
    static const uint64_t commit_us[HISTOGRAM_MAX] = HISTOGRAM_COMMIT_US;
    static const uint64_t checkpoint_us[HISTOGRAM_MAX] = HISTOGRAM_CHECKPOINT_US;
    struct store_metrics st = {.wal_frames = 812, .sweeps = 3, .sweep_due = true};

    histogram_observe(&st.commit, commit_us, HISTOGRAM_MAX, 80);       /* le 0.0001 */
    histogram_observe(&st.commit, commit_us, HISTOGRAM_MAX, 100);      /* le is inclusive */
    histogram_observe(&st.commit, commit_us, HISTOGRAM_MAX, 3000);     /* le 0.005 */
    histogram_observe(&st.commit, commit_us, HISTOGRAM_MAX, 2000000);  /* above 1 s: +Inf only */
    histogram_observe(&st.checkpoint, checkpoint_us, HISTOGRAM_MAX, 40000); /* le 0.05 */
    return st;
}

/* The store's histograms and the WAL gauge, exact. */
static void test_format_store(void)
{
    struct store_metrics st = known_store();
    struct metrics_snapshot s = known_snapshot(NULL);
    char *text;

    s.store = &st;
    text = metrics_format(&s, METRICS_TEXT);
    REQUIRE(text);
    CHECK(strstr(text, "# TYPE revokerd_db_commit_duration_seconds histogram\n"
                       "revokerd_db_commit_duration_seconds_bucket{le=\"0.0001\"} 2\n"
                       "revokerd_db_commit_duration_seconds_bucket{le=\"0.00025\"} 2\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_db_commit_duration_seconds_bucket{le=\"0.0025\"} 2\n"
                       "revokerd_db_commit_duration_seconds_bucket{le=\"0.005\"} 3\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_db_commit_duration_seconds_bucket{le=\"1\"} 3\n"
                       "revokerd_db_commit_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                       "revokerd_db_commit_duration_seconds_sum 2.003180\n"
                       "revokerd_db_commit_duration_seconds_count 4\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_checkpoint_duration_seconds_bucket{le=\"0.025\"} 0\n"
                       "revokerd_checkpoint_duration_seconds_bucket{le=\"0.05\"} 1\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_checkpoint_duration_seconds_count 1\n") != NULL);
    CHECK(strstr(text, "# TYPE revokerd_wal_frames gauge\nrevokerd_wal_frames 812\n") != NULL);
    CHECK(strstr(text, "# TYPE revokerd_checkpoint_sweeps_total counter\nrevokerd_checkpoint_sweeps_total 3\n") != NULL);
    CHECK(strstr(text, "# TYPE revokerd_sweep_pending gauge\nrevokerd_sweep_pending 1\n") != NULL);
    check_structure(text);
    free(text);
}

/* OpenMetrics 1.0: a counter's family (HELP, TYPE) is named without _total
 * and its samples keep it; other types are as in the text format; the text
 * ends with "# EOF". */
static void test_format_openmetrics(void)
{
    struct revoke_stats rs = known_stats();
    struct store_metrics st = known_store();
    struct metrics_snapshot s = known_snapshot(&rs);
    char *text, *plain;
    static const char *const lines[] = {
        "# HELP revokerd_outcomes Outcomes committed since start, by audit event.\n"
        "# TYPE revokerd_outcomes counter\n"
        "revokerd_outcomes_total{event=\"revoked\"} 10\n",
        "# TYPE revokerd_http_responses counter\nrevokerd_http_responses_total{code=\"2xx\"} 1\n",
        "# TYPE revokerd_endpoint_down_seconds counter\nrevokerd_endpoint_down_seconds_total 61.500\n",
        "# TYPE revokerd_db_errors counter\nrevokerd_db_errors_total 5\n",
        "# TYPE revokerd_socket_refused counter\nrevokerd_socket_refused_total{why=\"uid\"} 3\n",
        "# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 1.500000\n",
        "# TYPE revokerd_tokens gauge\nrevokerd_tokens{state=\"active\"} 100\n",
        "# TYPE revokerd_request_duration_seconds histogram\n",
        "\nrevokerd_request_duration_seconds_count 3\n",
        "# TYPE revokerd_wal_frames gauge\nrevokerd_wal_frames 812\n",
    };

    s.store = &st;
    text = metrics_format(&s, METRICS_OPENMETRICS);
    plain = metrics_format(&s, METRICS_TEXT);
    REQUIRE(text && plain);
    for (size_t i = 0; i < ARRAY_SIZE(lines); i++)
        if (!strstr(text, lines[i])) {
            fprintf(stderr, "missing: %s", lines[i]);
            CHECK(0);
        }
    CHECK(strstr(text, "_total counter") == NULL);
    CHECK(strstr(text, "# HELP revokerd_outcomes_total") == NULL);
    CHECK(strlen(text) > 6 && strcmp(text + strlen(text) - 7, "\n# EOF\n") == 0);
    CHECK(strstr(plain, "# EOF") == NULL);
    /* The samples are the same; only the 9 counter families' HELP and TYPE (6 bytes less each) and the end differ. */
    CHECK_INT(strlen(text) - strlen("# EOF\n"), strlen(plain) - 9 * 2 * 6);
    CHECK_STR(metrics_content_type(METRICS_OPENMETRICS), "application/openmetrics-text; version=1.0.0; charset=utf-8");
    CHECK_STR(metrics_content_type(METRICS_TEXT), "text/plain; version=0.0.4; charset=utf-8");
    free(text);
    free(plain);
}

/* The Accept header a scraper sends picks the exposition. */
static void test_negotiate(void)
{
    static const struct {
        const char *accept;
        enum metrics_exposition want;
    } cases[] = {
        {NULL, METRICS_TEXT},
        {"", METRICS_TEXT},
        {"*/*", METRICS_TEXT},
        {"text/plain", METRICS_TEXT},
        {"application/openmetrics-text", METRICS_OPENMETRICS},
        {"application/openmetrics-text; version=1.0.0; charset=utf-8", METRICS_OPENMETRICS},
        {"APPLICATION/OpenMetrics-Text", METRICS_OPENMETRICS},
        /* Prometheus 2.x's own header */
        {"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
         "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", METRICS_OPENMETRICS},
        {"text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5", METRICS_TEXT},
        {"application/openmetrics-text;q=0", METRICS_TEXT},
        {"application/openmetrics-text;q=0.2, */*;q=0.1", METRICS_OPENMETRICS},
        {"application/openmetrics-text;q=0.2, text/*;q=0.3", METRICS_TEXT},
        {"application/openmetrics-text;q=bogus", METRICS_TEXT},
        {"application/openmetrics-textile", METRICS_TEXT},
        {"application/json", METRICS_TEXT},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        if (metrics_http_negotiate(cases[i].accept) != cases[i].want) {
            fprintf(stderr, "Accept: %s\n", cases[i].accept ? cases[i].accept : "(none)");
            CHECK(0);
        }
}

static void test_format_leaves_out_what_is_unknown(void)
{
    struct metrics_snapshot s = known_snapshot(NULL);
    char *text;

    s.tokens.counted = false;
    s.tokens.oldest_due_ms[0] = s.tokens.oldest_due_ms[1] = 0;
    s.cpu_s = -1;
    s.rss_bytes = -1;
    s.open_fds = -1;
    s.version = "1.0\"x\\y\nz"; /* escaped, not breaking the line */
    text = metrics_format(&s, METRICS_TEXT);
    REQUIRE(text);
    CHECK(strstr(text, "revokerd_tokens") == NULL);             /* never counted: no wrong 0 */
    CHECK(strstr(text, "revokerd_pending_oldest") == NULL);
    CHECK(strstr(text, "revokerd_outcomes_total") == NULL);     /* no engine */
    CHECK(strstr(text, "process_") == NULL);
    CHECK(strstr(text, "revokerd_build_info{version=\"1.0\\\"x\\\\y\\nz\",sqlite=") != NULL);
    CHECK(strstr(text, "\nrevokerd_socket_clients 2\n") != NULL);
    check_structure(text);
    free(text);

    /* Nothing pending, or a due_at in the future (a clock step): 0. */
    s = known_snapshot(NULL);
    s.tokens.oldest_due_ms[METRICS_URGENT] = 0;
    s.tokens.oldest_due_ms[METRICS_ROUTINE] = s.now_ms + 1000;
    text = metrics_format(&s, METRICS_TEXT);
    REQUIRE(text);
    CHECK(strstr(text, "\nrevokerd_pending_oldest_due_seconds{lane=\"urgent\"} 0.000\n"
                       "revokerd_pending_oldest_due_seconds{lane=\"routine\"} 0.000\n") != NULL);
    CHECK(strstr(text, "revokerd_db_commit") == NULL); /* no store */
    free(text);
}

static void exec_sql(const char *sql)
{
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        REQUIRE(0);
    }
    sqlite3_close(db);
}

static void on_closed(void *data)
{
    (*(int *)data)++;
}

static void test_counter_counts_off_the_loop(void)
{
    uv_loop_t loop;
    struct metrics *m = NULL;
    char err[256], *text = NULL;
    int closed = 0;
    int64_t now = db_now_ms();
    char sql[512];

    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode = WAL;"
             "CREATE TABLE tokens (id INTEGER PRIMARY KEY, state TEXT NOT NULL, due_at INTEGER, due_reason TEXT);"
             "INSERT INTO tokens (state, due_at, due_reason) VALUES ('active', NULL, NULL), ('active', NULL, NULL),"
             " ('active', NULL, NULL), ('pending', %lld, 'expired'), ('pending', %lld, 'flagged'),"
             " ('pending', %lld, 'requested'), ('revoked', 1, 'expired'), ('failed', 2, 'flagged'),"
             " ('held', NULL, NULL);",
             (long long)(now - 60000), (long long)(now - 30000), (long long)(now - 1000));
    exec_sql(sql);
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(metrics_new(&loop, path, &m, err, sizeof(err)) == 0);
    /* The first count starts at once; run the loop until it is in. */
    for (int i = 0; i < 2000; i++) {
        free(text);
        text = metrics_render(m, METRICS_TEXT);
        REQUIRE(text);
        if (strstr(text, "revokerd_tokens{"))
            break;
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    CHECK(strstr(text, "\nrevokerd_tokens{state=\"active\"} 3\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_tokens{state=\"pending\"} 3\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_tokens{state=\"revoked\"} 1\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_tokens{state=\"failed\"} 1\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_tokens{state=\"held\"} 1\n") != NULL); /* not counted as active */
    /* The oldest is 60 s old in the routine lane, 30 s in the urgent one
     * (give or take the time the test took). */
    static const char routine[] = "\nrevokerd_pending_oldest_due_seconds{lane=\"routine\"} ";
    static const char urgent[] = "\nrevokerd_pending_oldest_due_seconds{lane=\"urgent\"} ";
    const char *age = strstr(text, routine);
    REQUIRE(age);
    double a = strtod(age + strlen(routine), NULL);
    CHECK(a >= 60 && a < 70);
    age = strstr(text, urgent);
    REQUIRE(age);
    a = strtod(age + strlen(urgent), NULL);
    CHECK(a >= 30 && a < 40);
    CHECK(strstr(text, "\nrevokerd_socket_clients 0\n") != NULL); /* no ctl */
    CHECK(strstr(text, "\nrevokerd_socket_refused_total{why=\"uid\"} 0\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_socket_requests_total{op=\"ping\"} 0\n") != NULL);
    CHECK(strstr(text, "revokerd_outcomes_total") == NULL);       /* no engine */
    CHECK(strstr(text, "\nprocess_open_fds ") != NULL);
    check_structure(text);
    free(text);

    /* Socket requests by op; a name it does not know is "other", never echoed. */
    metrics_count_request(m, "ping");
    metrics_count_request(m, "ping");
    metrics_count_request(m, "metrics");
    metrics_count_request(m, "tok-SECRET-as-op");
    metrics_count_request(m, "");
    metrics_count_request(m, NULL);
    text = metrics_render(m, METRICS_TEXT);
    REQUIRE(text);
    CHECK(strstr(text, "\nrevokerd_socket_requests_total{op=\"ping\"} 2\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_socket_requests_total{op=\"metrics\"} 1\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_socket_requests_total{op=\"revoke\"} 0\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_socket_requests_total{op=\"other\"} 2\n") != NULL);
    CHECK(strstr(text, "\nrevokerd_socket_requests_total{op=\"invalid\"} 1\n") != NULL);
    CHECK(strstr(text, "SECRET") == NULL);
    free(text);

    metrics_close(m, on_closed, &closed);
    CHECK_INT(closed, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(closed, 1);
    CHECK_INT(uv_loop_close(&loop), 0);
    metrics_close(NULL, on_closed, &closed); /* NULL is fine */
    CHECK_INT(closed, 1);
}

static void test_counter_refuses_a_file_without_tokens(void)
{
    uv_loop_t loop;
    struct metrics *m = NULL;
    char err[256] = "", missing[300];

    REQUIRE(uv_loop_init(&loop) == 0);
    snprintf(missing, sizeof(missing), "%s/none.db", dir);
    CHECK(metrics_new(&loop, missing, &m, err, sizeof(err)) < 0);
    CHECK(m == NULL);
    CHECK(strstr(err, "none.db") != NULL && strstr(err, "read-only") != NULL);
    CHECK_INT(uv_loop_close(&loop), 0);
}

static void setup(void)
{
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/metrics.db", dir);
}

static void teardown(void)
{
    char p[300];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

TEST_MAIN(CASE(setup), CASE(test_observe_buckets_and_codes), CASE(test_format_known_snapshot),
          CASE(test_format_store), CASE(test_format_openmetrics), CASE(test_negotiate),
          CASE(test_format_leaves_out_what_is_unknown), CASE(test_counter_counts_off_the_loop),
          CASE(test_counter_refuses_a_file_without_tokens), CASE(teardown))

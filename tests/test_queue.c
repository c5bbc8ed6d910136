/* test_queue: the queue and shape views (daemon/queue.h): the bucket
 * arithmetic, the names, the cursor, a row's and a grid's JSON, pages of a
 * real database (order, cursor, filters, the scan cap), the count, the
 * threadpool run, and the socket ops' bad input (through proto). */
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "queue.h"
#include "store.h"
#include "unit.h"

#define MINUTE (60 * 1000LL)

static void test_bucket(void)
{
    static const struct {
        int64_t age_ms;
        unsigned bucket;
    } cases[] = {
        {-3600000, 0},          {0, 0},
        {5 * MINUTE - 1, 0},    {5 * MINUTE, 1},
        {10 * MINUTE - 1, 1},   {10 * MINUTE, 2},
        {20 * MINUTE - 1, 2},   {20 * MINUTE, 3},
        {40 * MINUTE, 4},       {80 * MINUTE, 5},
        {160 * MINUTE, 6},      {320 * MINUTE, 7},
        {640 * MINUTE - 1, 7},  {640 * MINUTE, 8},
        {1280 * MINUTE - 1, 8}, {1280 * MINUTE, 9},
        {100000 * MINUTE, 9},   {INT64_MAX, 9},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (queue_bucket(cases[i].age_ms) != cases[i].bucket)
            fprintf(stderr, "case %zu: age %lld ms\n", i, (long long)cases[i].age_ms);
        CHECK_INT(queue_bucket(cases[i].age_ms), cases[i].bucket);
    }
    CHECK_STR(queue_bucket_name(0), "5m");
    CHECK_STR(queue_bucket_name(8), "1280m");
    CHECK_STR(queue_bucket_name(9), "1280m+");
    CHECK(queue_bucket_name(10) == NULL);
}

static void test_names(void)
{
    static const struct {
        const char *name;
        int reason, state, by; /* -1: refused */
    } cases[] = {
        {"expired", QUEUE_EXPIRED, -1, -1},
        {"flagged", QUEUE_FLAGGED, -1, -1},
        {"requested", QUEUE_REQUESTED, -1, -1},
        {"pending", -1, QUEUE_PENDING, -1},
        {"held", -1, QUEUE_HELD, -1},
        {"reason", -1, -1, QUEUE_BY_REASON},
        {"event", -1, -1, QUEUE_BY_EVENT},
        {"Expired", -1, -1, -1},
        {"", -1, -1, -1},
        {NULL, -1, -1, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum queue_reason r = 0;
        enum queue_state s = 0;
        enum queue_by b = 0;
        CHECK_INT(queue_reason_from_name(cases[i].name, &r), cases[i].reason < 0 ? -EINVAL : 0);
        CHECK_INT(queue_state_from_name(cases[i].name, &s), cases[i].state < 0 ? -EINVAL : 0);
        CHECK_INT(queue_by_from_name(cases[i].name, &b), cases[i].by < 0 ? -EINVAL : 0);
        if (cases[i].reason >= 0)
            CHECK_STR(queue_reason_name(r), cases[i].name);
        if (cases[i].state >= 0)
            CHECK_STR(queue_state_name(s), cases[i].name);
        if (cases[i].by >= 0)
            CHECK_STR(queue_by_name(b), cases[i].name);
    }
    CHECK(queue_reason_name(QUEUE_REASON_ANY) == NULL);
}

static void test_cursor(void)
{
    static const struct {
        const char *in;
        int rc;
        bool due_null;
        int64_t due_at, id;
    } cases[] = {
        {"1764700000123:42", 0, false, 1764700000123, 42},
        {"null:7", 0, true, 0, 7},
        {"-5:3", 0, false, -5, 3},
        {"0:0", 0, false, 0, 0},
        {"", -EINVAL, 0, 0, 0},
        {":", -EINVAL, 0, 0, 0},
        {"12", -EINVAL, 0, 0, 0},
        {"12:", -EINVAL, 0, 0, 0},
        {":12", -EINVAL, 0, 0, 0},
        {"a:1", -EINVAL, 0, 0, 0},
        {"1:a", -EINVAL, 0, 0, 0},
        {"1:-1", -EINVAL, 0, 0, 0},
        {"1:2:3", -EINVAL, 0, 0, 0},
        {" 1:2", -EINVAL, 0, 0, 0},
        {"+1:2", -EINVAL, 0, 0, 0},
        {"99999999999999999999:1", -EINVAL, 0, 0, 0},
        {"NULL:1", -EINVAL, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct queue_cursor c = {.id = -99};
        char back[QUEUE_CURSOR_LEN];
        int rc = queue_cursor_parse(cases[i].in, &c);
        if (rc != cases[i].rc)
            fprintf(stderr, "cursor case '%s'\n", cases[i].in);
        CHECK_INT(rc, cases[i].rc);
        if (cases[i].rc < 0) {
            CHECK_INT(c.id, -99); /* not written on failure */
            continue;
        }
        CHECK_INT(c.due_null, cases[i].due_null);
        CHECK_INT(c.due_at, cases[i].due_at);
        CHECK_INT(c.id, cases[i].id);
        queue_cursor_format(&c, back, sizeof(back));
        CHECK_STR(back, cases[i].in);
    }
    CHECK_INT(queue_cursor_parse(NULL, &(struct queue_cursor){0}), -EINVAL);
}

static char *row_text(const struct queue_row *r)
{
    json_t *v = queue_row_json(r);
    REQUIRE(v);
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    REQUIRE(s);
    return s;
}

static void test_row_json(void)
{
    static const struct {
        struct queue_row row;
        const char *json;
    } cases[] = {
        {{.id = 7,
          .fingerprint = "0123456789abcdef",
          .subject = "alice",
          .reason = QUEUE_FLAGGED,
          .due_at = 1764756000123,
          .attempts = 2,
          .next_attempt_at = 1764756060000,
          .last_event = "retry",
          .last_error = "HTTP 500"},
         "{\"id\":7,\"fingerprint\":\"0123456789abcdef\",\"subject\":\"alice\",\"reason\":\"flagged\","
         "\"lane\":\"urgent\",\"due_at\":\"2025-12-03T10:00:00.123Z\",\"attempts\":2,"
         "\"next_attempt_at\":\"2025-12-03T10:01:00.000Z\",\"last_event\":\"retry\",\"last_error\":\"HTTP "
         "500\","
         "\"held\":false}"},
        {{.id = 8, .reason = QUEUE_EXPIRED, .due_null = true},
         "{\"id\":8,\"fingerprint\":null,\"subject\":null,\"reason\":\"expired\",\"lane\":\"routine\","
         "\"due_at\":null,\"attempts\":0,\"next_attempt_at\":null,\"last_event\":null,\"last_error\":null,"
         "\"held\":false}"},
        {{.id = 9,
          .reason = QUEUE_REQUESTED,
          .due_at = 1000,
          .held = true,
          .subject = "b\xff"
                     "b"},
         "{\"id\":9,\"fingerprint\":null,\"subject\":\"b?b\",\"reason\":\"requested\",\"lane\":\"urgent\","
         "\"due_at\":\"1970-01-01T00:00:01.000Z\",\"attempts\":0,\"next_attempt_at\":null,\"last_event\":"
         "null,"
         "\"last_error\":null,\"held\":true}"},
        /* A due reason revokerd does not write: no reason, the routine lane (as tokens.c reads it). */
        {{.id = 10, .reason = QUEUE_REASON_ANY, .due_at = 1000},
         "{\"id\":10,\"fingerprint\":null,\"subject\":null,\"reason\":null,\"lane\":\"routine\","
         "\"due_at\":\"1970-01-01T00:00:01.000Z\",\"attempts\":0,\"next_attempt_at\":null,\"last_event\":"
         "null,"
         "\"last_error\":null,\"held\":false}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = row_text(&cases[i].row);
        CHECK_STR(s, cases[i].json);
        free(s);
    }
}

static void test_shape_grid(void)
{
    const int64_t now = 1764756000000;
    static const struct {
        const char *name;
        bool due_null;
        int64_t age_ms;
    } adds[] = {
        {"expired", false, 0},
        {"expired", false, 6 * MINUTE},
        {"expired", false, 2000 * MINUTE},
        {"flagged", false, 4 * MINUTE},
        {"requested", false, 30 * MINUTE},
        {NULL, false, 11 * MINUTE},
        {"banana", false, 11 * MINUTE},
        {"expired", true, 0},
    };
    struct queue_shape s;

    queue_shape_init(&s, QUEUE_BY_REASON, now);
    for (size_t i = 0; i < sizeof(adds) / sizeof(adds[0]); i++)
        queue_shape_add(&s, adds[i].name, adds[i].due_null, now - adds[i].age_ms);
    CHECK_INT(s.nrows, 5); /* TOTAL expired flagged requested other */
    CHECK_INT(s.rows[0].total, 8);
    CHECK_INT(s.oldest_due_ms, now - 2000 * MINUTE);

    json_t *j = queue_shape_json(&s);
    REQUIRE(j);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    REQUIRE(text);
    /* TOTAL first, then by total (expired 4, other 2, then 1s by name);
     * a row without a due_at counts in the oldest bucket. */
    const char *want = "{\"ok\":true,\"by\":\"reason\",\"now\":\"2025-12-03T10:00:00.000Z\","
                       "\"oldest_due_at\":\"2025-12-02T00:40:00.000Z\",\"oldest_age_s\":120000,"
                       "\"buckets\":[\"T\",\"5m\",\"10m\",\"20m\",\"40m\",\"80m\",\"160m\",\"320m\",\"640m\","
                       "\"1280m\",\"1280m+\"],"
                       "\"rows\":["
                       "{\"name\":\"TOTAL\",\"T\":8,\"5m\":2,\"10m\":1,\"20m\":2,\"40m\":1,\"80m\":0,"
                       "\"160m\":0,\"320m\":0,\"640m\":0,"
                       "\"1280m\":0,\"1280m+\":2},"
                       "{\"name\":\"expired\",\"T\":4,\"5m\":1,\"10m\":1,\"20m\":0,\"40m\":0,\"80m\":0,"
                       "\"160m\":0,\"320m\":0,"
                       "\"640m\":0,\"1280m\":0,\"1280m+\":2},"
                       "{\"name\":\"other\",\"T\":2,\"5m\":0,\"10m\":0,\"20m\":2,\"40m\":0,\"80m\":0,"
                       "\"160m\":0,\"320m\":0,\"640m\":0,"
                       "\"1280m\":0,\"1280m+\":0},"
                       "{\"name\":\"flagged\",\"T\":1,\"5m\":1,\"10m\":0,\"20m\":0,\"40m\":0,\"80m\":0,"
                       "\"160m\":0,\"320m\":0,"
                       "\"640m\":0,\"1280m\":0,\"1280m+\":0},"
                       "{\"name\":\"requested\",\"T\":1,\"5m\":0,\"10m\":0,\"20m\":0,\"40m\":1,\"80m\":0,"
                       "\"160m\":0,\"320m\":0,"
                       "\"640m\":0,\"1280m\":0,\"1280m+\":0}]}";
    CHECK_STR(text, want);
    free(text);

    /* By event: audit event names, the rest "other"; nothing pending. */
    queue_shape_init(&s, QUEUE_BY_EVENT, now);
    j = queue_shape_json(&s);
    REQUIRE(j);
    CHECK(json_is_null(json_object_get(j, "oldest_due_at")));
    CHECK(json_is_null(json_object_get(j, "oldest_age_s")));
    CHECK_INT(json_array_size(json_object_get(j, "rows")), 1);
    json_decref(j);
    queue_shape_add(&s, "retry", false, now);
    queue_shape_add(&s, "due", false, now);
    queue_shape_add(&s, "expired", false, now);
    queue_shape_add(&s, "retry", false, INT64_MIN); /* written by another process: old, no overflow */
    CHECK_INT(s.rows[1].count[QUEUE_NBUCKETS - 1], 1);
    CHECK_INT(s.nrows, 4);
    CHECK_STR(s.rows[1].name, "retry");
    CHECK_STR(s.rows[2].name, "due");
    CHECK_STR(s.rows[3].name, "other");
}

/* ---- against a database ---- */

static char dir[64], path[128];
static struct store *store;
static struct db *db;

static void open_db(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_queue.XXXXXX");
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/revokerd.db", dir);
    REQUIRE(store_open(NULL, path, NULL, NULL, &store, NULL, 0) == 0);
    db = store_db(store);
}

static void close_db(void)
{
    char f[160];
    store_close(store, NULL, NULL);
    unlink(path);
    snprintf(f, sizeof(f), "%s-wal", path);
    unlink(f);
    snprintf(f, sizeof(f), "%s-shm", path);
    unlink(f);
    rmdir(dir);
}

static void sql(const char *s)
{
    char *msg = NULL;
    if (sqlite3_exec(db->conn, s, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", s, msg);
        exit(1);
    }
}

/* Rows in a known order: due_at ties broken by id, a NULL due_at first,
 * active / revoked / failed rows never listed. */
static const char seed[] =
    "INSERT INTO tokens (id, token, fingerprint, subject, state, due_reason, due_at, next_attempt_at, "
    "attempts, "
    "last_event, last_error) VALUES "
    "(1, 'secret-1', 'fp01', 'alice', 'pending', 'expired', 3000, 3000, 0, 'due', NULL),"
    "(2, 'secret-2', 'fp02', 'bob',   'pending', 'flagged', 1000, 9000, 2, 'retry', 'HTTP 500'),"
    "(3, 'secret-3', 'fp03', NULL,    'pending', 'requested', 1000, 1000, 0, 'due', NULL),"
    "(4, 'secret-4', NULL,   NULL,    'active', NULL, NULL, NULL, 0, NULL, NULL),"
    "(5, NULL,       'fp05', 'carol', 'revoked', 'expired', 500, NULL, 0, 'revoked', NULL),"
    "(6, 'secret-6', 'fp06', NULL,    'failed', 'expired', 500, NULL, 3, 'gave_up', 'HTTP 500'),"
    "(7, 'secret-7', 'fp07', NULL,    'pending', NULL, NULL, NULL, 0, NULL, NULL),"
    "(8, 'secret-8', 'fp08', 'dave',  'pending', 'expired', 2000, 2000, 1, 'retry', 'timeout');";

/* Pages of `limit` through the whole queue with filter f: the ids in order. */
static void page_all(struct queue_filter f, char *out, size_t len, unsigned *ret_pages)
{
    unsigned pages = 0;
    bool more = true;
    out[0] = '\0';
    while (more) {
        json_t *rows, *row;
        struct queue_cursor next;
        size_t i;
        REQUIRE(queue_page(db, &f, &rows, &more, &next) == 0);
        REQUIRE(json_array_size(rows) <= f.limit);
        json_array_foreach(rows, i, row)
        {
            char *s = json_dumps(row, JSON_COMPACT);
            CHECK(strstr(s, "secret-") == NULL);
            free(s);
            snprintf(out + strlen(out), len - strlen(out), "%lld,",
                     (long long)json_integer_value(json_object_get(row, "id")));
        }
        json_decref(rows);
        f.after_set = more;
        f.after = next;
        REQUIRE(++pages < 100000);
    }
    *ret_pages = pages;
}

static void test_page(void)
{
    static const struct {
        enum queue_reason reason;
        enum queue_state state;
        unsigned limit;
        const char *ids;
    } cases[] = {
        {0, 0, 1000, "7,2,3,8,1,"},          {0, 0, 1, "7,2,3,8,1,"},        {0, 0, 2, "7,2,3,8,1,"},
        {QUEUE_EXPIRED, 0, 1, "8,1,"},       {QUEUE_FLAGGED, 0, 1000, "2,"}, {QUEUE_REQUESTED, 0, 1000, "3,"},
        {0, QUEUE_PENDING, 3, "7,2,3,8,1,"}, {0, QUEUE_HELD, 1000, ""},
    };
    char ids[256];
    unsigned pages;

    open_db();
    sql(seed);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct queue_filter f = {.reason = cases[i].reason, .state = cases[i].state, .limit = cases[i].limit};
        page_all(f, ids, sizeof(ids), &pages);
        if (strcmp(ids, cases[i].ids) != 0)
            fprintf(stderr, "page case %zu\n", i);
        CHECK_STR(ids, cases[i].ids);
    }
    /* A row's JSON, read whole from the table. */
    struct queue_filter f = {.reason = QUEUE_FLAGGED, .limit = 10};
    json_t *rows;
    bool more;
    struct queue_cursor next;
    REQUIRE(queue_page(db, &f, &rows, &more, &next) == 0);
    char *s = json_dumps(json_array_get(rows, 0), JSON_COMPACT);
    CHECK_STR(
        s,
        "{\"id\":2,\"fingerprint\":\"fp02\",\"subject\":\"bob\",\"reason\":\"flagged\",\"lane\":\"urgent\","
        "\"due_at\":\"1970-01-01T00:00:01.000Z\",\"attempts\":2,\"next_attempt_at\":\"1970-01-01T00:00:09."
        "000Z\","
        "\"last_event\":\"retry\",\"last_error\":\"HTTP 500\",\"held\":false}");
    CHECK(!more);
    free(s);
    json_decref(rows);

    /* From a cursor in the middle: after (1000, 2) come 3, 8, 1; after the
     * NULL row 7 come all the others. */
    f = (struct queue_filter){.limit = 10, .after_set = true, .after = {.due_at = 1000, .id = 2}};
    page_all(f, ids, sizeof(ids), &pages);
    CHECK_STR(ids, "3,8,1,");
    f.after = (struct queue_cursor){.due_null = true, .id = 7};
    page_all(f, ids, sizeof(ids), &pages);
    CHECK_STR(ids, "2,3,8,1,");
    close_db();
}

/* A filter that matches nothing for QUEUE_SCAN_MAX rows answers an empty
 * page with a cursor instead of reading on. */
static void test_scan_cap(void)
{
    char ids[256];
    unsigned pages;

    open_db();
    sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10005) "
        "INSERT INTO tokens (id, token, state, due_reason, due_at) SELECT i, 'secret-' || i, 'pending', "
        "'expired', i FROM n");
    sql("INSERT INTO tokens (id, token, state, due_reason, due_at) VALUES (20000, 'secret-x', 'pending', "
        "'flagged', 20000)");
    struct queue_filter f = {.reason = QUEUE_FLAGGED, .limit = 5};
    json_t *rows;
    bool more;
    struct queue_cursor next;
    REQUIRE(queue_page(db, &f, &rows, &more, &next) == 0);
    CHECK_INT(json_array_size(rows), 0);
    CHECK(more);
    CHECK_INT(next.due_at, QUEUE_SCAN_MAX);
    CHECK_INT(next.id, QUEUE_SCAN_MAX);
    json_decref(rows);
    page_all(f, ids, sizeof(ids), &pages);
    CHECK_STR(ids, "20000,");
    CHECK_INT(pages, 2);
    close_db();
}

static void test_shape_compute(void)
{
    struct queue_shape s;
    char err[200];

    open_db();
    sql(seed);
    /* Only pending rows: 1, 2, 3, 7, 8. */
    REQUIRE(queue_shape_compute(db->conn, QUEUE_BY_REASON, 3000 + 6 * MINUTE, &s, err, sizeof(err)) == 0);
    CHECK_INT(s.rows[0].total, 5);
    CHECK_INT(s.rows[0].count[1], 4); /* 1, 2, 3, 8: between 5 and 10 min */
    CHECK_INT(s.rows[0].count[9], 1); /* 7: no due_at */
    CHECK_INT(s.oldest_due_ms, 1000);
    REQUIRE(queue_shape_compute(db->conn, QUEUE_BY_EVENT, 3000, &s, err, sizeof(err)) == 0);
    CHECK_INT(s.nrows, 4); /* TOTAL, due (1, 3), retry (2, 8), other (7) */
    close_db();
}

/* Each statement reads an index, never the whole table, and none sorts:
 * the order is the index's. Checked on a table of 20,000 rows with
 * statistics, where the planner has a choice. */
static void test_query_plans(void)
{
    open_db();
    sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
        "INSERT INTO tokens (id, token, state, due_reason, due_at, next_attempt_at) SELECT i, 'secret-' || "
        "i, "
        "CASE WHEN i % 3 = 0 THEN 'revoked' ELSE 'pending' END, 'expired', i, i FROM n");
    sql("ANALYZE");
    for (size_t i = 0; queue_statements[i]; i++) {
        char q[1024], plan[1024] = "";
        sqlite3_stmt *st;
        snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", queue_statements[i]);
        REQUIRE(sqlite3_prepare_v2(db->conn, q, -1, &st, NULL) == SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW)
            snprintf(plan + strlen(plan), sizeof(plan) - strlen(plan), "%s; ", sqlite3_column_text(st, 3));
        sqlite3_finalize(st);
        bool indexed = strstr(plan, "USING INDEX tokens_queue") ||
            strstr(plan, "USING COVERING INDEX tokens_queue") || strstr(plan, "USING INTEGER PRIMARY KEY");
        if (!indexed || strstr(plan, "TEMP B-TREE"))
            fprintf(stderr, "%s\n  -> %s\n", queue_statements[i], plan);
        CHECK(indexed);
        CHECK(strstr(plan, "TEMP B-TREE") == NULL);
    }
    close_db();
}

static int shapes_done;
static int last_err;
static uint64_t last_total;

static int counts_seen;
static const struct queue_shape *last_shape;

static void on_shape(void *ud, int err, const struct queue_shape *s, const char *msg)
{
    (void)ud;
    (void)msg;
    if (s && s != last_shape)
        counts_seen++;
    last_shape = s;
    shapes_done++;
    last_err = err;
    last_total = s ? s->rows[0].total : 0;
}

static void test_shape_threadpool(void)
{
    uv_loop_t loop;
    struct queue *q;

    open_db();
    sql(seed);
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(queue_new(&loop, path, &q) == 0);
    CHECK_INT(queue_shape_start(q, QUEUE_BY_REASON, on_shape, NULL), 0);
    for (int i = 1; i < QUEUE_SHAPE_WAITING; i++) /* one runs, these share the next count */
        CHECK_INT(queue_shape_start(q, i % 2 ? QUEUE_BY_EVENT : QUEUE_BY_REASON, on_shape, NULL), 0);
    CHECK_INT(queue_shape_start(q, QUEUE_BY_EVENT, on_shape, NULL), -EBUSY);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(shapes_done, QUEUE_SHAPE_WAITING);
    CHECK_INT(counts_seen, 3); /* the first, then one per `by` for the rest */
    CHECK_INT(last_err, 0);
    CHECK_INT(last_total, 5);

    /* At close a waiting one is cancelled, the running one ends. */
    shapes_done = 0;
    CHECK_INT(queue_shape_start(q, QUEUE_BY_REASON, on_shape, NULL), 0);
    CHECK_INT(queue_shape_start(q, QUEUE_BY_REASON, on_shape, NULL), 0);
    queue_close(q);
    CHECK_INT(shapes_done, 1);
    CHECK_INT(last_err, -ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(shapes_done, 2);
    CHECK_INT(uv_loop_close(&loop), 0);
    close_db();
}

/* The socket ops' bad input: each error names the field and what it takes. */
static void test_bad_input(void)
{
    static const struct {
        const char *req, *error;
    } cases[] = {
        {"{\"op\":\"queue\",\"reason\":\"lost\"}",
         "field 'reason' must be one of expired, flagged, requested, got 'lost'"},
        {"{\"op\":\"queue\",\"reason\":\"tok-SECRET.1234\"}",
         "field 'reason' must be one of expired, flagged, requested"},
        {"{\"op\":\"queue\",\"reason\":7}", "field 'reason' must be a string, got an integer"},
        {"{\"op\":\"queue\",\"state\":\"active\"}",
         "field 'state' must be one of pending, held, got 'active'"},
        {"{\"op\":\"queue\",\"limit\":0}", "field 'limit' must be an integer from 1 to 1000, got 0"},
        {"{\"op\":\"queue\",\"limit\":1001}", "field 'limit' must be an integer from 1 to 1000, got 1001"},
        {"{\"op\":\"queue\",\"limit\":\"5\"}",
         "field 'limit' must be an integer from 1 to 1000, got a string"},
        {"{\"op\":\"queue\",\"limit\":2.5}",
         "field 'limit' must be an integer from 1 to 1000, got a number with a fraction"},
        {"{\"op\":\"queue\",\"after\":\"12\"}",
         "field 'after' must be the 'next' of the previous reply (\"DUE_AT_MS:ID\" or \"null:ID\")"},
        {"{\"op\":\"queue\",\"after\":\"\"}",
         "field 'after' must be the 'next' of the previous reply (\"DUE_AT_MS:ID\" or \"null:ID\")"},
        {"{\"op\":\"queue\",\"after\":5}", "field 'after' must be a string, got an integer"},
        {"{\"op\":\"queue\",\"sort\":\"id\"}",
         "unknown field 'sort' for op queue (allowed: reason, state, limit, after)"},
        {"{\"op\":\"shape\",\"by\":\"subject\"}", "field 'by' must be one of reason, event, got 'subject'"},
        {"{\"op\":\"shape\",\"by\":true}", "field 'by' must be a string, got a boolean"},
        {"{\"op\":\"shape\",\"limit\":3}", "unknown field 'limit' for op shape (allowed: by)"},
    };
    open_db();
    struct proto_env env = {.store = store};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *reply = proto_handle(&env, cases[i].req, strlen(cases[i].req));
        json_t *j = json_loads(reply, 0, NULL);
        REQUIRE(j);
        CHECK(json_is_false(json_object_get(j, "ok")));
        CHECK_STR(json_string_value(json_object_get(j, "error")), cases[i].error);
        CHECK(strstr(reply, "SECRET") == NULL);
        json_decref(j);
        free(reply);
    }
    /* And good input, without a queue: shape counts on this thread. */
    sql(seed);
    char *reply = proto_handle(&env, "{\"op\":\"shape\",\"by\":\"event\"}", 27);
    CHECK(strstr(reply, "\"by\":\"event\"") != NULL);
    CHECK(strstr(reply, "{\"name\":\"TOTAL\",\"T\":5,") != NULL);
    free(reply);
    reply = proto_handle(&env, "{\"op\":\"queue\",\"limit\":2}", 24);
    CHECK(strstr(reply, "\"next\":\"1000:2\"") != NULL);
    CHECK(strstr(reply, "secret-") == NULL);
    free(reply);
    close_db();
}

TEST_MAIN(CASE(test_bucket), CASE(test_names), CASE(test_cursor), CASE(test_row_json), CASE(test_shape_grid),
          CASE(test_page), CASE(test_scan_cap), CASE(test_query_plans), CASE(test_shape_compute),
          CASE(test_shape_threadpool), CASE(test_bad_input))

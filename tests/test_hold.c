/* test_hold: the hold module against a real database file (a store without
 * a loop), with a stand-in for the engine's recall: a pending token the
 * engine has in flight is left as it was (by id an error, by subject named
 * and skipped: bulk.h, test_bulk has its parts), one it has queued is taken back (recall is asked), an active
 * or held one never reaches the engine, so recall is not asked. The ops'
 * replies and messages are test_proto's. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bulk.h"
#include "hold.h"
#include "store.h"
#include "unit.h"
#include "unit_sql.h"
#include "util.h"

static char dir[64], path[128];
static struct store *store;
static struct db *db;

/* The stand-in engine: ids in flight, and the ids recall was asked for. */
static int64_t in_flight[4];
static int64_t asked[16];
static size_t nasked;

static int fake_recall(void *ud, int64_t id)
{
    (void)ud;
    if (nasked < ARRAY_SIZE(asked))
        asked[nasked++] = id;
    for (size_t i = 0; i < ARRAY_SIZE(in_flight); i++)
        if (in_flight[i] == id)
            return -EINPROGRESS;
    return 0;
}

static void reset_engine(void)
{
    memset(in_flight, 0, sizeof(in_flight));
    nasked = 0;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_hold.XXXXXX");
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/revokerd.db", dir);
    REQUIRE(store_open(NULL, path, NULL, NULL, &store, NULL, 0) == 0);
    db = store_db(store);
}

static void teardown(void)
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

static int64_t insert(const char *token, const char *subject, const char *state)
{
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(db->conn, "INSERT INTO tokens (token, subject, state) VALUES (?1, ?2, ?3)", -1,
                               &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
    REQUIRE(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    return sqlite3_last_insert_rowid(db->conn);
}

/* "state/token?" of row id, and the number of audit rows. */
static void row_of(int64_t id, char *buf, size_t len)
{
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(db->conn,
                               "SELECT state || '/' || (token IS NOT NULL) || '/' || "
                               "(SELECT count(*) FROM audit WHERE token_id = ?1) FROM tokens WHERE id = ?1",
                               -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static const struct hold_who who = {.uid = 1000, .reason = "test", .now_ms = 1800000000000};

enum op { HOLD, DROP, DROP_KEEP };

/* One token, one op with the engine holding it (or not): the result, whether
 * recall was asked, and the row after ("state/has a secret/audit rows"). */
static void test_by_id(void)
{
    static const struct {
        const char *state;
        enum op op;
        bool engine_sends_it; /* in flight */
        int rc;
        size_t asked;
        const char *after;
    } cases[] = {
        {"pending", HOLD, false, 0, 1, "held/1/1"},
        {"pending", HOLD, true, -EINPROGRESS, 1, "pending/1/0"},
        {"active", HOLD, false, 0, 0, "held/1/1"},
        {"failed", HOLD, false, -EINVAL, 0, "failed/1/0"},
        {"pending", DROP, false, 0, 1, "failed/0/1"},
        {"pending", DROP, true, -EINPROGRESS, 1, "pending/1/0"},
        {"held", DROP, false, 0, 0, "failed/0/1"},
        {"held", DROP_KEEP, false, 0, 0, "failed/1/1"}, /* keep_secrets */
        {"revoked", DROP, false, -EINVAL, 0, "revoked/1/0"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char token[32], after[64];
        enum token_state state = 0;
        snprintf(token, sizeof(token), "tok-by-id-%zu", i);
        int64_t id = insert(token, NULL, cases[i].state);
        reset_engine();
        if (cases[i].engine_sends_it)
            in_flight[0] = id;
        REQUIRE(store_begin(store, STORE_WRITE_NOW) == 0);
        int rc = cases[i].op == HOLD
            ? store_hold_id(store, id, &who, fake_recall, NULL, &state)
            : store_drop(store, id, &who, cases[i].op == DROP, fake_recall, NULL, &state);
        CHECK_INT(store_end(store, rc), cases[i].rc);
        CHECK_INT(nasked, cases[i].asked);
        if (cases[i].asked)
            CHECK_INT(asked[0], id);
        row_of(id, after, sizeof(after));
        if (strcmp(after, cases[i].after) != 0) {
            fprintf(stderr, "case %zu: row %s, expected %s\n", i, after, cases[i].after);
            unit_failures++;
        }
    }
}

/* By subject (bulk.h, whole): the pending tokens first, then the active
 * ones; the one in flight is named once and left pending; only the pending
 * ones are asked about (in both passes); another subject's and a revoked
 * one are left alone. */
static void test_by_subject(void)
{
    int64_t c = insert("tok-subj-c", "carol", "active");
    int64_t a = insert("tok-subj-a", "carol", "pending");
    int64_t b = insert("tok-subj-b", "carol", "pending");
    int64_t d = insert("tok-subj-d", "carol", "revoked");
    int64_t e = insert("tok-subj-e", "dave", "pending");
    struct state_counts sc;
    struct bulk_result res;
    /* No time limit: a part per pass, however slow the run (valgrind). */
    struct bulk_env env = {.store = store, .recall = fake_recall, .part_ns = (int64_t)1000 * 1000000000};
    struct bulk_request req = {.op = BULK_HOLD, .subject = "carol", .reason = "test", .uid = 1000};
    char after[64];

    reset_engine();
    in_flight[0] = b;
    CHECK_INT(bulk_run(&env, &req, &res), 0);
    CHECK_INT(res.ids.n, 2);
    CHECK_INT(res.ids.v[0], a); /* pending first */
    CHECK_INT(res.ids.v[1], c);
    CHECK_INT(res.other.n, 1);
    CHECK_INT(res.other.v[0], b);
    CHECK_INT(res.parts, 2); /* one a pass */
    CHECK_INT(nasked, 3);
    CHECK_INT(asked[0], a);
    CHECK_INT(asked[1], b);
    CHECK_INT(asked[2], b);
    bulk_result_free(&res);
    const struct {
        int64_t id;
        const char *after;
    } rows[] = {{a, "held/1/1"}, {b, "pending/1/0"}, {c, "held/1/1"}, {d, "revoked/1/0"}, {e, "pending/1/0"}};
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        row_of(rows[i].id, after, sizeof(after));
        CHECK_STR(after, rows[i].after);
    }

    /* The status line's cheap count and stats' full one agree. */
    int64_t want = 0;
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(db->conn, "SELECT count(*) FROM tokens WHERE state = 'held'", -1, &st, NULL) ==
            SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    want = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    REQUIRE(store_count(store, false, &sc) == 0);
    CHECK_INT(sc.held, want);
    REQUIRE(store_count(store, true, &sc) == 0);
    CHECK_INT(sc.held, want);
    CHECK(want >= 4);

    /* A release by subject asks no engine: held rows were never in it. */
    reset_engine();
    req = (struct bulk_request){.op = BULK_RELEASE, .subject = "carol", .uid = 1000};
    CHECK_INT(bulk_run(&env, &req, &res), 0);
    CHECK_INT(res.ids.n, 2);
    CHECK_INT(nasked, 0);
    bulk_result_free(&res);
    row_of(a, after, sizeof(after));
    CHECK_STR(after, "pending/1/2"); /* it was pending: due */
    row_of(c, after, sizeof(after));
    CHECK_STR(after, "active/1/2"); /* held while active, not due since */
}

/* The ops on many tokens in parts (bulk.h), with parts of two rows (and no
 * time limit) so that the walk's edges show: a hold does the pending rows
 * first and every row once, each with one audit row; a part that fails is
 * rolled back whole, the parts before it stay and the same op again does
 * the rest; on a loop one part runs a turn, the ops run one after another,
 * and bulk_close() ends the running one at its part boundary (-ECANCELED); a
 * revoke by subject makes the active rows due and keeps the request in the
 * held ones. */
static int64_t failing_id; /* recall of it fails with -EIO (a part that fails) */
static unsigned kicks;

static int failing_recall(void *ud, int64_t id)
{
    (void)ud;
    return id == failing_id ? -EIO : 0;
}

static void fake_kick(void *ud)
{
    (void)ud;
    kicks++;
}

static const struct bulk_env parts_env = {
    .recall = failing_recall, .kick = fake_kick, .part_rows = 2, .part_ns = (int64_t)1000 * 1000000000};

static struct bulk_env env_of(void)
{
    struct bulk_env e = parts_env;
    e.store = store;
    return e;
}

/* A row of subject in state, with a secret of its own. */
static int64_t insert_of(const char *subject, const char *state)
{
    static unsigned n;
    char token[64];

    snprintf(token, sizeof(token), "tok-bulk-%u", n++);
    return insert(token, subject, state);
}

static int64_t sql_int(const char *fmt, const char *subject)
{
    char sql[400];
    snprintf(sql, sizeof(sql), fmt, subject);
    return unit_sql_int(db->conn, sql);
}

/* Rows of subject in state, and audit rows of event on them (each counted
 * once per token: rows != tokens means a duplicate). */
#define IN_STATE(subject, state) \
    sql_int("SELECT count(*) FROM tokens WHERE subject = '%s' AND state = '" state "'", subject)
#define AUDIT_ROWS(subject, event)                                                                         \
    sql_int("SELECT count(*) FROM audit WHERE event = '" event "' AND token_id IN (SELECT id FROM tokens " \
            "WHERE subject = '%s')",                                                                       \
            subject)
#define AUDIT_TOKENS(subject, event)                                                                \
    sql_int("SELECT count(DISTINCT token_id) FROM audit WHERE event = '" event "' AND token_id IN " \
            "(SELECT id FROM tokens WHERE subject = '%s')",                                         \
            subject)

/* 5 active, 3 pending (interleaved), a revoked one: the pending ones are
 * held first, in id order, then the active ones; 9 rows read 2 a part: 5
 * parts a pass. */
static void test_hold_in_parts(void)
{
    int64_t ids[9];
    static const char *const states[] = {"active", "pending", "active",  "revoked", "pending",
                                         "active", "active",  "pending", "active"};
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
        ids[i] = insert_of("erin", states[i]);
    insert_of("frank", "pending");
    struct bulk_env e = env_of();
    struct bulk_request req = {.op = BULK_HOLD, .subject = "erin", .reason = "incident", .uid = 1000};
    struct bulk_result res;

    kicks = 0;
    failing_id = 0;
    CHECK_INT(bulk_run(&e, &req, &res), 0);
    const int64_t want[] = {ids[1], ids[4], ids[7], ids[0], ids[2], ids[5], ids[6], ids[8]};
    CHECK_INT(res.ids.n, ARRAY_SIZE(want));
    for (size_t i = 0; i < res.ids.n && i < ARRAY_SIZE(want); i++)
        CHECK_INT(res.ids.v[i], want[i]);
    CHECK_INT(res.other.n, 0);
    CHECK_INT(res.parts, 10);
    CHECK(kicks >= 1);
    bulk_result_free(&res);
    CHECK_INT(IN_STATE("erin", "held"), 8);
    CHECK_INT(AUDIT_ROWS("erin", "held"), 8);
    CHECK_INT(AUDIT_TOKENS("erin", "held"), 8);
    CHECK_INT(IN_STATE("frank", "held"), 0);

    /* Again: nothing left to hold. */
    CHECK_INT(bulk_run(&e, &req, &res), 0);
    CHECK_INT(res.ids.n, 0);
    bulk_result_free(&res);
    CHECK_INT(AUDIT_ROWS("erin", "held"), 8);

    /* Release by subject, then every held one. */
    req = (struct bulk_request){.op = BULK_RELEASE, .subject = "erin", .uid = 1000};
    CHECK_INT(bulk_run(&e, &req, &res), 0);
    CHECK_INT(res.ids.n, 8);
    bulk_result_free(&res);
    CHECK_INT(IN_STATE("erin", "held"), 0);
    CHECK_INT(AUDIT_TOKENS("erin", "released"), 8);
    int64_t held = unit_sql_int(db->conn, "SELECT count(*) FROM tokens WHERE state = 'held'");
    CHECK(held > 0); /* test_by_id's */
    req = (struct bulk_request){.op = BULK_RELEASE, .subject = NULL, .uid = 1000};
    CHECK_INT(bulk_run(&e, &req, &res), 0);
    CHECK_INT(res.ids.n, held);
    bulk_result_free(&res);
    CHECK_INT(unit_sql_int(db->conn, "SELECT count(*) FROM tokens WHERE state = 'held'"), 0);
}

/* A part that fails (recall answers -EIO on the 4th pending row, in the 2nd
 * part) is rolled back whole: the first part's 2 stay held, the 3rd row,
 * in the failed part, is not; the same hold again does the rest. */
static void test_failed_part(void)
{
    int64_t p[5];
    for (size_t i = 0; i < ARRAY_SIZE(p); i++)
        p[i] = insert_of("gina", "pending");
    struct bulk_env e = env_of();
    struct bulk_request req = {.op = BULK_HOLD, .subject = "gina", .uid = 1000};
    struct bulk_result res;

    failing_id = p[3];
    CHECK_INT(bulk_run(&e, &req, &res), -EIO);
    CHECK_INT(res.ids.n, 2);
    CHECK_INT(res.parts, 1);
    bulk_result_free(&res);
    CHECK_INT(AUDIT_ROWS("gina", "held"), 2);
    for (size_t i = 0; i < ARRAY_SIZE(p); i++) {
        char sql[120];
        snprintf(sql, sizeof(sql), "SELECT state = 'held' FROM tokens WHERE id = %lld", (long long)p[i]);
        CHECK_INT(unit_sql_int(db->conn, sql), i < 2);
    }

    failing_id = 0;
    CHECK_INT(bulk_run(&e, &req, &res), 0);
    CHECK_INT(res.ids.n, 3);
    CHECK_INT(res.ids.v[0], p[2]);
    bulk_result_free(&res);
    CHECK_INT(IN_STATE("gina", "held"), 5);
    CHECK_INT(AUDIT_ROWS("gina", "held"), 5);
    CHECK_INT(AUDIT_TOKENS("gina", "held"), 5);
}

/* In flight in pass 0, its request failed and it is pending again by pass
 * 1: held then, and no longer named in flight. */
static int64_t once_id;
static int once_in_flight(void *ud, int64_t id)
{
    (void)ud;
    if (id != once_id)
        return 0;
    once_id = 0;
    return -EINPROGRESS;
}

static void test_in_flight_then_held(void)
{
    int64_t a = insert_of("jane", "pending"), b = insert_of("jane", "pending");
    struct bulk_env e = env_of();
    struct bulk_request req = {.op = BULK_HOLD, .subject = "jane"};
    struct bulk_result res;

    e.recall = once_in_flight;
    once_id = a;
    CHECK_INT(bulk_run(&e, &req, &res), 0);
    CHECK_INT(res.ids.n, 2);
    CHECK_INT(res.ids.v[0], b);
    CHECK_INT(res.ids.v[1], a);
    CHECK_INT(res.other.n, 0);
    bulk_result_free(&res);
    CHECK_INT(AUDIT_TOKENS("jane", "held"), 2);
}

/* Revoke by subject: active rows become due (requested), the held one keeps
 * the request, the others are left. */
static void test_revoke(void)
{
    int64_t a = insert_of("hugo", "active"), h = insert_of("hugo", "held");
    insert_of("hugo", "revoked");
    int64_t b = insert_of("hugo", "active");
    struct bulk_env e = env_of();
    struct bulk_request req = {.op = BULK_REVOKE, .subject = "hugo", .reason = "log out everywhere"};
    struct bulk_result res;

    CHECK_INT(bulk_run(&e, &req, &res), 0);
    CHECK_INT(res.ids.n, 2);
    CHECK_INT(res.ids.v[0], a);
    CHECK_INT(res.ids.v[1], b);
    CHECK_INT(res.other.n, 1);
    CHECK_INT(res.other.v[0], h);
    bulk_result_free(&res);
    CHECK_INT(IN_STATE("hugo", "pending"), 2);
    CHECK_INT(AUDIT_TOKENS("hugo", "due"), 2);
    CHECK_INT(AUDIT_ROWS("hugo", "due"), 2);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE subject = '%s' AND state = 'held' AND "
                      "due_reason = 'requested'",
                      "hugo"),
              1);
}

/* On a loop. */
struct waited {
    int err[4];
    size_t count[4];
    unsigned n;
};

static void on_done(void *ud, int err, const struct bulk_result *res)
{
    struct waited *w = ud;
    if (w->n < ARRAY_SIZE(w->err)) {
        w->err[w->n] = err;
        w->count[w->n] = res->ids.n;
    }
    w->n++;
}

static unsigned turns;

static void on_check(uv_check_t *h)
{
    (void)h;
    turns++;
}

static void test_on_the_loop(void)
{
    uv_loop_t loop;
    uv_check_t check;
    struct bulk *b;
    struct waited w = {.n = 0};

    for (int i = 0; i < 12; i++)
        insert_of("ivan", "active");
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(uv_check_init(&loop, &check) == 0);
    REQUIRE(uv_check_start(&check, on_check) == 0);
    REQUIRE(bulk_new(&loop, &b) == 0);
    struct bulk_env e = env_of();
    struct bulk_request hold = {.op = BULK_HOLD, .subject = "ivan"};
    struct bulk_request release = {.op = BULK_RELEASE, .subject = "ivan"};

    /* A hold, then a release queued behind it: one after the other, one
     * part a loop turn (2 passes of 7 parts, then 7). */
    turns = 0;
    CHECK_INT(bulk_start(b, &e, &hold, on_done, &w), 0);
    CHECK_INT(bulk_start(b, &e, &release, on_done, &w), 0);
    CHECK_INT(w.n, 0); /* never inside bulk_start */
    for (int i = 0; i < 1000 && w.n < 2; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(w.n, 2);
    CHECK_INT(w.err[0], 0);
    CHECK_INT(w.count[0], 12);
    CHECK_INT(w.err[1], 0);
    CHECK_INT(w.count[1], 12);
    CHECK(turns >= 21);
    CHECK_INT(AUDIT_TOKENS("ivan", "held"), 12);
    CHECK_INT(AUDIT_TOKENS("ivan", "released"), 12);

    /* Closed with a hold under way: it ends at its part boundary, what its
     * committed parts did stays; a queued one is told too. */
    w.n = 0;
    CHECK_INT(bulk_start(b, &e, &hold, on_done, &w), 0);
    CHECK_INT(bulk_start(b, &e, &release, on_done, &w), 0);
    for (int i = 0; i < 10; i++) /* pass 0 takes 7 parts: then 3 of pass 1 */
        uv_run(&loop, UV_RUN_NOWAIT);
    bulk_close(b);
    CHECK_INT(w.n, 2);
    CHECK_INT(w.err[0], -ECANCELED);
    CHECK_INT(w.count[0], 6);
    CHECK_INT(w.err[1], -ECANCELED);
    CHECK_INT(w.count[1], 0);
    CHECK_INT(IN_STATE("ivan", "held"), 6);
    CHECK_INT(AUDIT_ROWS("ivan", "held"), 12 + 6);

    uv_close((uv_handle_t *)&check, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
}

/* The reply's text: every id, digits exact up to INT64_MAX. */
static void test_reply_text(void)
{
    int64_t ids[] = {1, 10, 9223372036854775807}, other[] = {42};
    struct bulk_result res = {.ids = {ids, 3, 3}, .other = {other, 1, 1}};
    char *t = bulk_reply_text(BULK_HOLD, &res);
    CHECK_STR(t, "{\"ok\":true,\"count\":3,\"ids\":[1,10,9223372036854775807],\"in_flight\":[42]}");
    free(t);
    t = bulk_reply_text(BULK_REVOKE, &res);
    CHECK_STR(t, "{\"ok\":true,\"count\":3,\"ids\":[1,10,9223372036854775807],\"held\":[42]}");
    free(t);
    res = (struct bulk_result){.parts = 0};
    t = bulk_reply_text(BULK_RELEASE, &res);
    CHECK_STR(t, "{\"ok\":true,\"count\":0,\"ids\":[]}");
    free(t);
}

TEST_MAIN(CASE(setup), CASE(test_by_id), CASE(test_by_subject), CASE(test_reply_text),
          CASE(test_hold_in_parts), CASE(test_failed_part), CASE(test_in_flight_then_held), CASE(test_revoke), CASE(test_on_the_loop),
          CASE(teardown))

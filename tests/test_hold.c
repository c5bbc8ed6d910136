/* test_hold: the hold module against a real database file (a store without
 * a loop), with a stand-in for the engine's recall: a pending token the
 * engine has in flight is left as it was (by id an error, by subject named
 * and skipped), one it has queued is taken back (recall is asked), an active
 * or held one never reaches the engine, so recall is not asked. The ops'
 * replies and messages are test_proto's. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hold.h"
#include "store.h"
#include "unit.h"
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

struct lists {
    int64_t held[8], flying[8];
    size_t nheld, nflying;
};

static void on_held(void *ud, int64_t id)
{
    struct lists *l = ud;
    if (l->nheld < ARRAY_SIZE(l->held))
        l->held[l->nheld++] = id;
}

static void on_flying(void *ud, int64_t id)
{
    struct lists *l = ud;
    if (l->nflying < ARRAY_SIZE(l->flying))
        l->flying[l->nflying++] = id;
}

/* By subject: the one in flight is named and left pending, the rest of the
 * subject's active and pending tokens held; only the pending ones are asked
 * about; another subject's and a revoked one are left alone. */
static void test_by_subject(void)
{
    int64_t a = insert("tok-subj-a", "carol", "pending");
    int64_t b = insert("tok-subj-b", "carol", "pending");
    int64_t c = insert("tok-subj-c", "carol", "active");
    int64_t d = insert("tok-subj-d", "carol", "revoked");
    int64_t e = insert("tok-subj-e", "dave", "pending");
    struct lists l = {.nheld = 0};
    struct state_counts sc;
    unsigned count = 0;
    char after[64];

    reset_engine();
    in_flight[0] = b;
    REQUIRE(store_begin(store, STORE_WRITE_NOW) == 0);
    int rc = store_hold_subject(store, "carol", &who, fake_recall, NULL, on_held, on_flying, &l, &count);
    CHECK_INT(store_end(store, rc), 0);
    CHECK_INT(count, 2);
    CHECK_INT(l.nheld, 2);
    CHECK_INT(l.held[0], a);
    CHECK_INT(l.held[1], c);
    CHECK_INT(l.nflying, 1);
    CHECK_INT(l.flying[0], b);
    CHECK_INT(nasked, 2);
    CHECK_INT(asked[0], a);
    CHECK_INT(asked[1], b);
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
    l = (struct lists){.nheld = 0};
    REQUIRE(store_begin(store, STORE_WRITE_NOW) == 0);
    rc = store_release_many(store, "carol", &who, on_held, &l, &count);
    CHECK_INT(store_end(store, rc), 0);
    CHECK_INT(count, 2);
    row_of(a, after, sizeof(after));
    CHECK_STR(after, "pending/1/2"); /* it was pending: due */
    row_of(c, after, sizeof(after));
    CHECK_STR(after, "active/1/2"); /* held while active, not due since */
}

TEST_MAIN(CASE(setup), CASE(test_by_id), CASE(test_by_subject), CASE(teardown))

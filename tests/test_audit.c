/* test_audit: the append-only, hash-chained audit log on a real SQLite file. */
#include <errno.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "auditprune.h"
#include "auditverify.h"
#include "db.h"
#include "unit.h"
#include "unit_sql.h"

static char dir[64];

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)type, (void)f;
    return remove(p);
}

static void tmp_begin(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_audit.XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
}

static void tmp_end(void)
{
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(const char *name)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[32];
    unsigned len;
    REQUIRE(EVP_Digest(s, strlen(s), d, &len, EVP_sha256(), NULL) == 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Ten rows with every NULL convention exercised. */
static const struct audit_event chain[] = {
    {1000, 5, "0123456789abcdef", AUDIT_DUE, 0, 0, "flagged", -1},
    {1001, 5, "0123456789abcdef", AUDIT_RETRY, 1, 500, "HTTP 500; next attempt in 1.2 s", 31},
    {1002, 6, "fedcba9876543210", AUDIT_DUE, 0, 0, "expired", -1},
    {1003, 5, "0123456789abcdef", AUDIT_REVOKED, 2, 200, NULL, 12},
    {1004, 6, "fedcba9876543210", AUDIT_REJECTED, 1, 422, "a|b \\N pipes and escapes", 8},
    {1005, 0, NULL, AUDIT_RETRY, 0, 0, "connection refused", 0},
    {1006, 7, "1111111111111111", AUDIT_DUE, 0, 0, "requested", -1},
    {1007, 7, "1111111111111111", AUDIT_ALREADY_INVALID, 1, 401, NULL, 40},
    {1008, 6, "fedcba9876543210", AUDIT_REQUEUED, 0, 0, NULL, -1},
    {1009, 6, "fedcba9876543210", AUDIT_GAVE_UP, 8, 500, "attempts exhausted", 15},
};
#define CHAIN_LEN ((int)(sizeof(chain) / sizeof(chain[0])))

static void open_with_chain(const char *path, struct db **ret_db, struct audit **ret_a)
{
    struct db *db;
    struct audit *a;
    REQUIRE(db_open(path, 0, &db) == 0);
    REQUIRE(audit_open(db, &a) == 0);
    REQUIRE(db_begin(db) == 0);
    for (int i = 0; i < CHAIN_LEN; i++)
        REQUIRE(audit_append(a, &chain[i]) == 0);
    REQUIRE(db_commit(db) == 0);
    *ret_db = db;
    *ret_a = a;
}

static int64_t verify_bad(struct db *db, char *why, size_t whylen)
{
    int64_t rows = -1, bad = -1;
    int rc = auditverify_chain(db, &rows, &bad, why, whylen);
    if (rc == 0)
        return 0;
    CHECK_INT(rc, -EBADMSG);
    CHECK_INT(rows, -1); /* written only when intact */
    return bad;
}

static int collect(void *ud, const struct audit_row *row)
{
    struct audit_row *rows = ud;
    for (int i = 0; i < 64; i++)
        if (rows[i].seq == 0) {
            rows[i] = *row;
            rows[i].fingerprint = NULL;
            rows[i].detail = NULL;
            rows[i].event = NULL;
            rows[i].hash = NULL;
            return 0;
        }
    return -1;
}

static void test_chain_appended_and_verified(void)
{
    tmp_begin();
    struct db *db;
    struct audit *a;
    int64_t rows = -1, bad = -1;
    char why[256] = "";

    REQUIRE(db_open(tmp_path("a.db"), 0, &db) == 0);
    REQUIRE(audit_open(db, &a) == 0);
    CHECK_INT(auditverify_chain(db, &rows, &bad, why, sizeof(why)), 0);
    CHECK_INT(rows, 0);
    audit_close(a);
    db_close(db);

    open_with_chain(tmp_path("b.db"), &db, &a);
    CHECK_INT(auditverify_chain(db, &rows, &bad, why, sizeof(why)), 0);
    CHECK_INT(rows, CHAIN_LEN);
    CHECK_INT(bad, -1);

    /* The serialization is pinned: an outside verifier can recompute it. */
    char expect[65], got[65];
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(db->conn, "SELECT hash FROM audit WHERE seq = ?", -1, &st, NULL) ==
            SQLITE_OK);
    sqlite3_bind_int(st, 1, 1);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    snprintf(got, sizeof(got), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    sha256_hex("0000000000000000000000000000000000000000000000000000000000000000"
               "|1|1000|5|0123456789abcdef|due|\\N|\\N|flagged|\\N",
               expect);
    CHECK_STR(got, expect);
    /* Row 5: text escaped, chained to row 4's hash. */
    char prev[65], line[512];
    sqlite3_bind_int(st, 1, 4);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    snprintf(prev, sizeof(prev), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    sqlite3_bind_int(st, 1, 5);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    snprintf(got, sizeof(got), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    snprintf(line, sizeof(line),
             "%s|5|1004|6|fedcba9876543210|rejected|1|422|a\\|b \\\\N pipes and escapes|8", prev);
    sha256_hex(line, expect);
    CHECK_STR(got, expect);

    /* Appending goes on from the cached head, across transactions. */
    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(a, &chain[0]) == 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(auditverify_chain(db, &rows, &bad, why, sizeof(why)), 0);
    CHECK_INT(rows, CHAIN_LEN + 1);

    struct audit_event noevent = {.at_ms = 1};
    CHECK_INT(audit_append(a, &noevent), -EINVAL);
    audit_close(a);
    audit_close(NULL);
    db_close(db);
    tmp_end();
}

/* After a rollback, audit_forget() makes the next append read the head again. */
static void test_rollback_and_forget(void)
{
    tmp_begin();
    struct db *db;
    struct audit *a;
    open_with_chain(tmp_path("a.db"), &db, &a);
    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(a, &chain[1]) == 0);
    REQUIRE(audit_append(a, &chain[2]) == 0);
    db_rollback(db);
    audit_forget(a);
    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(a, &chain[3]) == 0);
    REQUIRE(db_commit(db) == 0);
    char why[256];
    int64_t rows = 0;
    CHECK_INT(auditverify_chain(db, &rows, NULL, why, sizeof(why)), 0);
    CHECK_INT(rows, CHAIN_LEN + 1);

    /* A second writer on the same table: the stale head costs one failed
     * append, then the head is read again. */
    struct audit *b;
    REQUIRE(audit_open(db, &b) == 0);
    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(b, &chain[4]) == 0);
    CHECK(audit_append(a, &chain[5]) < 0);
    REQUIRE(audit_append(a, &chain[5]) == 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(auditverify_chain(db, &rows, NULL, why, sizeof(why)), 0);
    CHECK_INT(rows, CHAIN_LEN + 3);
    audit_close(b);
    audit_close(a);
    db_close(db);
    tmp_end();
}

static void test_triggers_reject_changes(void)
{
    tmp_begin();
    struct db *db;
    struct audit *a;
    char *msg = NULL;
    open_with_chain(tmp_path("a.db"), &db, &a);
    CHECK_INT(sqlite3_exec(db->conn, "UPDATE audit SET detail = 'x' WHERE seq = 2", NULL, NULL,
                           &msg),
              SQLITE_CONSTRAINT_TRIGGER);
    CHECK_STR(msg, "audit is append-only");
    sqlite3_free(msg);
    CHECK_INT(sqlite3_exec(db->conn, "DELETE FROM audit WHERE seq = 2", NULL, NULL, &msg),
              SQLITE_CONSTRAINT_TRIGGER);
    CHECK_STR(msg, "audit is append-only");
    sqlite3_free(msg);
    int64_t rows = 0;
    CHECK_INT(auditverify_chain(db, &rows, NULL, NULL, 0), 0);
    CHECK_INT(rows, CHAIN_LEN);
    audit_close(a);
    db_close(db);
    tmp_end();
}

/* Tampering behind the daemon's back (a raw connection, triggers dropped
 * first): each change is caught at the right row. */
static void test_tampering_detected(void)
{
    static const struct {
        const char *name, *sql;
        int64_t bad_seq;
        const char *why;
    } cases[] = {
        {"alter detail", "UPDATE audit SET detail = 'nothing happened' WHERE seq = 4", 4,
         "seq 4: its hash does not match"},
        {"alter NULL to 0", "UPDATE audit SET http_status = 0 WHERE seq = 3", 3, "altered"},
        {"alter event", "UPDATE audit SET event = 'revoked' WHERE seq = 10", 10, "altered"},
        {"alter hash only", "UPDATE audit SET hash = lower(hex(randomblob(32))) WHERE seq = 7", 7,
         "altered"},
        {"wrong type", "UPDATE audit SET duration_ms = 'abc' WHERE seq = 2", 2, "wrong type"},
        {"delete middle", "DELETE FROM audit WHERE seq = 6", 7,
         "seq 7 follows seq 5: seq 6 is missing (deleted)"},
        {"delete two", "DELETE FROM audit WHERE seq IN (3, 4)", 5, "seq 3..4 are missing"},
        {"delete first", "DELETE FROM audit WHERE seq = 1", 2, "must start at seq 1"},
        {"forged at end",
         "INSERT INTO audit (seq, at, event, detail, hash) "
         "SELECT 11, 2000, 'revoked', 'forged', hash FROM audit WHERE seq = 10",
         11, "seq 11: its hash does not match"},
        {"forged in the middle",
         "UPDATE audit SET seq = seq + 100 WHERE seq > 5;"
         "UPDATE audit SET seq = seq - 99 WHERE seq > 100;"
         "INSERT INTO audit (seq, at, event, hash) VALUES (6, 1005, 'revoked', "
         "(SELECT hash FROM audit WHERE seq = 5))",
         6, "inserted"},
        {"forged out of sequence",
         "INSERT INTO audit (seq, at, event, hash) VALUES (40, 3000, 'revoked', 'x')", 40,
         "seq 11..39 are missing"},
        {"forged hash recomputed with the wrong prev",
         "INSERT INTO audit (seq, at, event, hash) VALUES (11, 3000, 'revoked', "
         "(SELECT hash FROM audit WHERE seq = 9))",
         11, "altered, or inserted"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tmp_begin();
        struct db *db;
        struct audit *a;
        char why[256] = "";
        const char *p = tmp_path("a.db");
        open_with_chain(p, &db, &a);

        sqlite3 *raw;
        char *msg = NULL;
        REQUIRE(sqlite3_open(p, &raw) == SQLITE_OK);
        REQUIRE(sqlite3_exec(raw, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete",
                             NULL, NULL, NULL) == SQLITE_OK);
        if (sqlite3_exec(raw, cases[i].sql, NULL, NULL, &msg) != SQLITE_OK)
            fprintf(stderr, "%s: %s\n", cases[i].name, msg);
        sqlite3_free(msg);
        sqlite3_close(raw);

        int64_t bad = verify_bad(db, why, sizeof(why));
        if (bad != cases[i].bad_seq || !strstr(why, cases[i].why))
            fprintf(stderr, "case \"%s\": why: %s\n", cases[i].name, why);
        CHECK_INT(bad, cases[i].bad_seq);
        CHECK(strstr(why, cases[i].why) != NULL);
        audit_close(a);
        db_close(db);
        tmp_end();
    }
}

static void test_query(void)
{
    tmp_begin();
    struct db *db;
    struct audit *a;
    open_with_chain(tmp_path("a.db"), &db, &a);
    static const struct {
        struct audit_filter f;
        int64_t seqs[12];
    } cases[] = {
        {{0, 0, 0, 0}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
        {{0, 0, 0, 3}, {8, 9, 10}},
        {{1004, 0, 0, 0}, {5, 6, 7, 8, 9, 10}},
        {{0, 6, 0, 0}, {3, 5, 9, 10}},
        {{0, 6, 0, 2}, {9, 10}},
        {{0, 0, AUDIT_DUE, 0}, {1, 3, 7}},
        {{0, 0, AUDIT_RETRY, 1}, {6}},
        {{1002, 5, 0, 0}, {4}},
        {{0, 6, AUDIT_DUE, 0}, {3}},
        {{0, 0, AUDIT_GAVE_UP, 5}, {10}},
        {{0, 0, (enum audit_event_kind)99, /* not an event */ 0}, {0}},
        {{0, 99, 0, 0}, {0}},
        {{0, 0, 0, 100}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct audit_row rows[64];
        memset(rows, 0, sizeof(rows));
        CHECK_INT(audit_query(db, &cases[i].f, collect, rows), 0);
        for (int j = 0; j < 12; j++) {
            if (rows[j].seq != cases[i].seqs[j])
                fprintf(stderr, "query case %zu row %d\n", i, j);
            CHECK_INT(rows[j].seq, cases[i].seqs[j]);
        }
    }

    /* NULL filter; the row's NULL conventions. */
    struct audit_row rows[64];
    memset(rows, 0, sizeof(rows));
    CHECK_INT(audit_query(db, NULL, collect, rows), 0);
    CHECK_INT(rows[0].at_ms, 1000);
    CHECK_INT(rows[0].token_id, 5);
    CHECK_INT(rows[0].attempt, 0);
    CHECK_INT(rows[0].http_status, 0);
    CHECK_INT(rows[0].duration_ms, -1);
    CHECK_INT(rows[5].token_id, 0);
    CHECK_INT(rows[5].duration_ms, 0);
    CHECK_INT(rows[3].http_status, 200);
    CHECK_INT(rows[3].attempt, 2);
    CHECK_INT(rows[3].duration_ms, 12);

    audit_close(a);
    db_close(db);
    tmp_end();
}

struct strings {
    int n, stop_at;
    char fp[4][20], event[4][20], detail[4][64], hash[4][65];
    bool fp_null[4], detail_null[4];
};

static int keep_strings(void *ud, const struct audit_row *row)
{
    struct strings *s = ud;
    int i = s->n++;
    if (i < 4) {
        s->fp_null[i] = !row->fingerprint;
        s->detail_null[i] = !row->detail;
        snprintf(s->fp[i], sizeof(s->fp[i]), "%s", row->fingerprint ? row->fingerprint : "");
        snprintf(s->event[i], sizeof(s->event[i]), "%s", row->event);
        snprintf(s->detail[i], sizeof(s->detail[i]), "%s", row->detail ? row->detail : "");
        snprintf(s->hash[i], sizeof(s->hash[i]), "%s", row->hash);
    }
    return s->n == s->stop_at ? 42 : 0;
}

static void test_query_strings_and_stop(void)
{
    tmp_begin();
    struct db *db;
    struct audit *a;
    open_with_chain(tmp_path("a.db"), &db, &a);
    struct audit_filter f = {.since_ms = 1003};
    struct strings s = {.stop_at = 3};
    CHECK_INT(audit_query(db, &f, keep_strings, &s), 42); /* the callback's value */
    CHECK_INT(s.n, 3);
    CHECK_STR(s.event[0], "revoked");
    CHECK(s.detail_null[0]);
    CHECK_STR(s.detail[1], "a|b \\N pipes and escapes");
    CHECK(s.fp_null[2]);
    CHECK_STR(s.fp[1], "fedcba9876543210");
    CHECK_INT(strlen(s.hash[0]), 64);
    CHECK_INT(audit_query(db, &f, NULL, NULL), -EINVAL);
    audit_close(a);
    db_close(db);
    tmp_end();
}

/* A NULL detail and a detail that reads "\N" must hash differently. */
static void test_null_is_not_text(void)
{
    tmp_begin();
    struct db *db1, *db2;
    struct audit *a1, *a2;
    REQUIRE(db_open(tmp_path("a.db"), 0, &db1) == 0);
    REQUIRE(db_open(tmp_path("b.db"), 0, &db2) == 0);
    REQUIRE(audit_open(db1, &a1) == 0);
    REQUIRE(audit_open(db2, &a2) == 0);
    struct audit_event e = {1, 1, "x", AUDIT_DUE, 0, 0, NULL, -1};
    REQUIRE(audit_append(a1, &e) == 0);
    e.detail = "\\N";
    REQUIRE(audit_append(a2, &e) == 0);
    struct strings s1 = {0}, s2 = {0};
    REQUIRE(audit_query(db1, NULL, keep_strings, &s1) == 0);
    REQUIRE(audit_query(db2, NULL, keep_strings, &s2) == 0);
    CHECK(strcmp(s1.hash[0], s2.hash[0]) != 0);
    audit_close(a1);
    audit_close(a2);
    db_close(db1);
    db_close(db2);
    tmp_end();
}

/* The stored hash of row seq. */
static void stored_hash(struct db *db, int64_t seq, char out[AUDIT_HASH_LEN + 1])
{
    sqlite3_stmt *st;

    REQUIRE(sqlite3_prepare_v2(db->conn, "SELECT hash FROM audit WHERE seq = ?1", -1, &st, NULL) ==
            SQLITE_OK);
    sqlite3_bind_int64(st, 1, seq);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    snprintf(out, AUDIT_HASH_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static void test_head_read(void)
{
    struct audit_head h = {.seq = -1}, h2;
    char want[AUDIT_HASH_LEN + 1];
    struct db *db;
    struct audit *a;

    tmp_begin();
    REQUIRE(db_open(tmp_path("a.db"), 0, &db) == 0);
    CHECK_INT(audit_get_head(db, &h), 0);
    CHECK_INT(h.seq, 0);
    CHECK_STR(h.hash, "0000000000000000000000000000000000000000000000000000000000000000");
    db_close(db);

    open_with_chain(tmp_path("b.db"), &db, &a);
    CHECK_INT(audit_get_head(db, &h), 0);
    CHECK_INT(h.seq, CHAIN_LEN);
    stored_hash(db, CHAIN_LEN, want);
    CHECK_STR(h.hash, want);
    CHECK_INT((int)strlen(h.hash), AUDIT_HASH_LEN);

    /* an append inside a transaction that is rolled back leaves the head */
    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(a, &chain[0]) == 0);
    db_rollback(db);
    audit_forget(a);
    CHECK_INT(audit_get_head(db, &h2), 0);
    CHECK_INT(h2.seq, CHAIN_LEN);
    CHECK_STR(h2.hash, want);

    /* a committed one moves it */
    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(a, &chain[1]) == 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(audit_get_head(db, &h2), 0);
    CHECK_INT(h2.seq, CHAIN_LEN + 1);
    stored_hash(db, CHAIN_LEN + 1, want);
    CHECK_STR(h2.hash, want);

    /* the head as text parses back to itself */
    char text[96];
    struct audit_head back;
    snprintf(text, sizeof(text), "%" PRId64 ":%s", h2.seq, h2.hash);
    CHECK_INT(audit_head_parse(text, &back), 0);
    CHECK_INT(back.seq, h2.seq);
    CHECK_STR(back.hash, h2.hash);
    audit_close(a);
    db_close(db);
    tmp_end();
}

static int64_t query_count(struct db *db, const char *sql)
{
    return unit_sql_int(db->conn, sql);
}

static int count_rows(void *ud, const struct audit_row *row)
{
    int64_t *last = ud;
    CHECK(row->seq == *last + 1);
    *last = row->seq;
    return 0;
}

/* Pruning: the plan stops at the first row not old enough and never takes
 * the newest; auditprune_apply() writes the anchor and deletes below it, and
 * verify starts there and still names a row changed after it. */
static void test_prune_behind_an_anchor(void)
{
    tmp_begin();
    struct db *db;
    struct audit *a;
    struct auditprune *p;
    struct audit_anchor an;
    int64_t keep = -1, last = 0, rows = 0;
    unsigned n = 0;
    char why[256] = "", *json = NULL;
    open_with_chain(tmp_path("a.db"), &db, &a);
    REQUIRE(auditprune_open(db, &p) == 0);
    CHECK_INT(auditverify_get_anchor(db, &an), -ENOENT);

    /* Rows with at < 1004: seq 1..4, each seen once. */
    CHECK_INT(auditprune_plan(p, 1004, 100, &keep, count_rows, &last), 0);
    CHECK_INT(keep, 5);
    CHECK_INT(last, 4);
    /* The limit cuts it; the newest row never goes. */
    CHECK_INT(auditprune_plan(p, 1004, 2, &keep, NULL, NULL), 0);
    CHECK_INT(keep, 3);
    CHECK_INT(auditprune_plan(p, 999999, 100, &keep, NULL, NULL), 0);
    CHECK_INT(keep, CHAIN_LEN);
    CHECK_INT(auditprune_plan(p, 1000, 100, &keep, NULL, NULL), 0);
    CHECK_INT(keep, 0);

    REQUIRE(db_begin(db) == 0);
    CHECK_INT(auditprune_apply(p, 5, 42, &n), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(n, 4);
    CHECK_INT(auditverify_get_anchor(db, &an), 0);
    CHECK_INT(an.first_seq, 5);
    CHECK_INT(an.at_ms, 42);
    CHECK_INT(auditverify_chain(db, &rows, NULL, why, sizeof(why)), 0);
    CHECK_INT(rows, CHAIN_LEN - 4);
    /* A head recorded before the prune cannot be checked, and says why. */
    struct audit_head old_head = {.seq = 3};
    memset(old_head.hash, 'a', AUDIT_HASH_LEN);
    CHECK_INT(auditverify_head(db, &old_head, NULL, NULL, why, sizeof(why)), -EBADMSG);
    CHECK(strstr(why, "seq 3 cannot be checked: the log starts at seq 5 (older rows pruned") != NULL);
    /* Appending goes on from the head; a second prune keeps one anchor. */
    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(a, &chain[0]) == 0);
    CHECK_INT(auditprune_apply(p, 7, 43, &n), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(n, 2);
    CHECK_INT(query_count(db, "SELECT count(*) FROM audit_anchor"), 1);
    CHECK_INT(auditverify_chain(db, &rows, NULL, why, sizeof(why)), 0);
    CHECK_INT(rows, CHAIN_LEN + 1 - 6);

    /* Outside auditprune_apply() the connection is refused like any other. */
    CHECK(sqlite3_exec(db->conn, "DELETE FROM audit WHERE seq = 7", NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(db->conn,
                       "INSERT INTO audit_anchor (at, first_seq, prev_hash) "
                       "SELECT 1, seq, hash FROM audit WHERE seq = 8",
                       NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(db->conn, "DELETE FROM audit_anchor", NULL, NULL, NULL) != SQLITE_OK);

    /* Changed after the anchor: named. */
    REQUIRE(sqlite3_exec(db->conn, "DROP TRIGGER audit_no_update", NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db->conn, "UPDATE audit SET detail = 'x' WHERE seq = 9", NULL, NULL, NULL) ==
            SQLITE_OK);
    CHECK_INT(verify_bad(db, why, sizeof(why)), 9);
    REQUIRE(sqlite3_exec(db->conn, "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 7", NULL,
                         NULL, NULL) == SQLITE_OK);
    CHECK_INT(verify_bad(db, why, sizeof(why)), 8);
    CHECK(strstr(why, "the audit anchor names seq 7") != NULL);

    struct audit_row row = {.seq = 3, .at_ms = 1500, .event = "due", .duration_ms = -1, .hash = "h"};
    CHECK_INT(audit_row_json(&row, &json), 0);
    CHECK_STR(json,
              "{\"seq\":3,\"at\":\"1970-01-01T00:00:01.500Z\",\"at_ms\":1500,\"token_id\":null,"
              "\"fingerprint\":null,\"event\":\"due\",\"attempt\":null,\"http_status\":null,"
              "\"detail\":null,\"duration_ms\":null,\"hash\":\"h\"}");
    free(json);
    auditprune_close(p);
    audit_close(a);
    db_close(db);
    tmp_end();
}

/* A row below the latest anchor exists only inside the prune that wrote
 * it: one left there (an anchor added by a connection that defines
 * revokerd_prunes_audit() itself, and a row below it replaced) is named,
 * not skipped. */
static int fake_guard_calls;
static void fake_guard(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    fake_guard_calls++;
    sqlite3_result_int(ctx, 1);
}

static void test_rows_below_the_anchor_are_named(void)
{
    tmp_begin();
    struct db *db, *other;
    struct audit *a;
    char why[256] = "";
    open_with_chain(tmp_path("a.db"), &db, &a);
    REQUIRE(db_open(tmp_path("a.db"), 0, &other) == 0);
    REQUIRE(sqlite3_create_function(other->conn, "revokerd_prunes_audit", 0, SQLITE_UTF8, NULL, fake_guard,
                                    NULL, NULL) == SQLITE_OK);
    /* The trigger takes it: the anchor names a row and the hash before it. */
    REQUIRE(sqlite3_exec(other->conn,
                         "INSERT INTO audit_anchor (at, first_seq, prev_hash) "
                         "SELECT 1, 6, hash FROM audit WHERE seq = 5",
                         NULL, NULL, NULL) == SQLITE_OK);
    CHECK(fake_guard_calls > 0);
    /* Below the anchor a row may go, and one is put back in its place. */
    REQUIRE(sqlite3_exec(other->conn,
                         "CREATE TEMP TABLE r AS SELECT * FROM audit WHERE seq = 2;"
                         "DELETE FROM audit WHERE seq = 2;"
                         "INSERT INTO audit SELECT seq, at, token_id, fingerprint, 'revoked', attempt, "
                         "http_status, 'nothing happened', duration_ms, hash FROM r",
                         NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(verify_bad(db, why, sizeof(why)), 1);
    CHECK(strstr(why, "seq 1 lies below the latest audit_anchor") != NULL);
    db_close(other);
    audit_close(a);
    db_close(db);
    tmp_end();
}

/* auditverify_chain() reads in one snapshot: a prune committed between its
 * statements (the anchor, then the rows) is not taken for deleted rows. */
static struct audit *race_audit;
static struct auditprune *race_prune;
static struct db *race_db;
static int race_pruned;
static int prune_at_rows_query(unsigned type, void *ctx, void *p, void *x)
{
    (void)type;
    (void)ctx;
    (void)x;
    const char *sql = sqlite3_sql(p);
    unsigned n = 0;
    if (race_pruned || !sql || !strstr(sql, "WHERE seq > ?1 ORDER BY seq"))
        return 0;
    race_pruned = 1;
    REQUIRE(db_begin(race_db) == 0);
    REQUIRE(auditprune_apply(race_prune, 5, 42, &n) == 0);
    REQUIRE(db_commit(race_db) == 0);
    return 0;
}

static void test_verify_reads_one_snapshot(void)
{
    tmp_begin();
    struct db *reader;
    int64_t rows = 0, bad = 0;
    char why[256] = "";
    open_with_chain(tmp_path("a.db"), &race_db, &race_audit);
    REQUIRE(auditprune_open(race_db, &race_prune) == 0);
    REQUIRE(db_open(tmp_path("a.db"), DB_READONLY, &reader) == 0);
    REQUIRE(sqlite3_trace_v2(reader->conn, SQLITE_TRACE_STMT, prune_at_rows_query, NULL) == SQLITE_OK);
    CHECK_INT(auditverify_chain(reader, &rows, &bad, why, sizeof(why)), 0);
    CHECK_INT(race_pruned, 1);
    CHECK_INT(rows, CHAIN_LEN);
    /* The next check sees the prune. */
    CHECK_INT(auditverify_chain(reader, &rows, &bad, why, sizeof(why)), 0);
    CHECK_INT(rows, CHAIN_LEN - 4);
    db_close(reader);
    auditprune_close(race_prune);
    audit_close(race_audit);
    db_close(race_db);
    tmp_end();
}

static void test_head_parse(void)
{
#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define Z64 "0000000000000000000000000000000000000000000000000000000000000000"
    static const struct {
        const char *text;
        int ret;
        int64_t seq;
        const char *hash;
    } cases[] = {
        {"12:" H64, 0, 12, H64},
        {"1:" Z64, 0, 1, Z64},
        {"0:" Z64, 0, 0, Z64}, /* the empty log's head */
        {"007:" H64, 0, 7, H64},
        {"5:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789ABCDEF", 0, 5, H64},
        {"0:" H64, -EINVAL, 0, NULL}, /* seq 0 chains from nothing but zeros */
        {"", -EINVAL, 0, NULL},
        {"12", -EINVAL, 0, NULL},
        {"12:", -EINVAL, 0, NULL},
        {":" H64, -EINVAL, 0, NULL},
        {"-1:" H64, -EINVAL, 0, NULL},
        {"+1:" H64, -EINVAL, 0, NULL},
        {" 1:" H64, -EINVAL, 0, NULL},
        {"1 :" H64, -EINVAL, 0, NULL},
        {"x:" H64, -EINVAL, 0, NULL},
        {"1x:" H64, -EINVAL, 0, NULL},
        {"99999999999999999999:" H64, -EINVAL, 0, NULL},
        {"1:" H64 "0", -EINVAL, 0, NULL},
        {"1:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", -EINVAL, 0, NULL},
        {"1:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg", -EINVAL, 0, NULL},
        {"1:" H64 " ", -EINVAL, 0, NULL},
        {"1:2:" H64, -EINVAL, 0, NULL},
        {"1=" H64, -EINVAL, 0, NULL},
    };
#undef H64
#undef Z64
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct audit_head h = {.seq = -7, .hash = "untouched"};
        int rc = audit_head_parse(cases[i].text, &h);

        if (rc != cases[i].ret)
            fprintf(stderr, "case \"%s\": %d\n", cases[i].text, rc);
        CHECK_INT(rc, cases[i].ret);
        CHECK_INT(h.seq, rc == 0 ? cases[i].seq : -7);
        CHECK_STR(h.hash, rc == 0 ? cases[i].hash : "untouched");
    }
    CHECK_INT(audit_head_parse(NULL, &(struct audit_head){0}), -EINVAL);
}

/* A head recorded at seq `at`, then the file changed by another process
 * (the triggers dropped, as an attacker with write access would), then
 * `rewrite` rows appended through the audit module with their hashes
 * computed as the daemon does: the log verifies alone (verify_ok), and
 * the head check says ret, bad_seq and why. */
static void test_head_checked(void)
{
    static const struct {
        const char *name;
        int64_t at;
        const char *sql;
        int rewrite;
        bool verify_ok;
        int ret;
        int64_t bad_seq;
        const char *why;
    } cases[] = {
        {"intact", 10, NULL, 0, true, 0, 0, NULL},
        {"an older head", 4, NULL, 0, true, 0, 0, NULL},
        {"rows appended since", 10, NULL, 3, true, 0, 0, NULL},
        {"the empty log's head", 0, NULL, 0, true, 0, 0, NULL},
        {"newest row deleted", 10, "DELETE FROM audit WHERE seq = 10", 0, true, -EBADMSG, 10,
         "seq 10 is missing: the log ends at seq 9 (the newest rows deleted)"},
        {"newest rows deleted", 9, "DELETE FROM audit WHERE seq >= 6", 0, true, -EBADMSG, 9,
         "seq 9 is missing: the log ends at seq 5 (the newest rows deleted)"},
        {"every row deleted", 3, "DELETE FROM audit", 0, true, -EBADMSG, 3,
         "seq 3 is missing: the log is empty (every row deleted)"},
        {"newest row rewritten", 10, "DELETE FROM audit WHERE seq = 10", 1, true, -EBADMSG, 10,
         "seq 10: its hash is "},
        {"newest rows rewritten and more added", 9, "DELETE FROM audit WHERE seq >= 8", 5, true, -EBADMSG, 9,
         "the recorded head says "},
        {"chain broken below the head", 10, "UPDATE audit SET detail = 'nothing' WHERE seq = 4", 0, false,
         -EBADMSG, 4, "seq 4: its hash does not match"},
        {"a row below the head deleted", 10, "DELETE FROM audit WHERE seq = 6", 0, false, -EBADMSG, 7,
         "seq 6 is missing (deleted)"},
        {"chain broken above an older head", 3, "UPDATE audit SET detail = 'nothing' WHERE seq = 8", 0, false,
         -EBADMSG, 8, "seq 8: its hash does not match"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct audit_head head = {.seq = cases[i].at};
        int64_t rows = -1, bad = -1;
        char why[512] = "";
        struct db *db;
        struct audit *a;

        tmp_begin();
        open_with_chain(tmp_path("a.db"), &db, &a);
        if (head.seq)
            stored_hash(db, head.seq, head.hash);
        else
            memset(head.hash, '0', AUDIT_HASH_LEN);
        if (cases[i].sql) {
            sqlite3 *raw;
            REQUIRE(sqlite3_open(tmp_path("a.db"), &raw) == SQLITE_OK);
            REQUIRE(sqlite3_exec(raw, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete", NULL,
                                 NULL, NULL) == SQLITE_OK);
            REQUIRE(sqlite3_exec(raw, cases[i].sql, NULL, NULL, NULL) == SQLITE_OK);
            sqlite3_close(raw);
        }
        audit_forget(a); /* the head moved under it */
        if (cases[i].rewrite) {
            REQUIRE(db_begin(db) == 0);
            for (int k = 0; k < cases[i].rewrite; k++)
                REQUIRE(audit_append(a, &chain[5]) == 0); /* another event than the original rows */
            REQUIRE(db_commit(db) == 0);
        }
        CHECK_INT(auditverify_chain(db, NULL, NULL, why, sizeof(why)) == 0, cases[i].verify_ok);

        why[0] = '\0';
        int rc = auditverify_head(db, &head, &rows, &bad, why, sizeof(why));
        if (rc != cases[i].ret || (cases[i].why && !strstr(why, cases[i].why)))
            fprintf(stderr, "case \"%s\": %d why: %s\n", cases[i].name, rc, why);
        CHECK_INT(rc, cases[i].ret);
        if (rc == 0) {
            CHECK_INT(rows, CHAIN_LEN + cases[i].rewrite);
            CHECK_INT(bad, -1);
        } else {
            CHECK_INT(rows, -1); /* written only when intact */
            CHECK_INT(bad, cases[i].bad_seq);
            CHECK(cases[i].why && strstr(why, cases[i].why) != NULL);
        }
        /* the message names the hash that differs, and the recorded one */
        if (cases[i].rewrite && rc != 0) {
            char now[AUDIT_HASH_LEN + 1];
            stored_hash(db, head.seq, now);
            CHECK(strstr(why, now) != NULL);
            CHECK(strstr(why, head.hash) != NULL);
        }
        audit_close(a);
        db_close(db);
        tmp_end();
    }
}

TEST_MAIN(CASE(test_chain_appended_and_verified), CASE(test_rollback_and_forget),
          CASE(test_triggers_reject_changes), CASE(test_tampering_detected), CASE(test_query),
          CASE(test_query_strings_and_stop), CASE(test_null_is_not_text), CASE(test_head_read),
          CASE(test_head_parse), CASE(test_head_checked), CASE(test_prune_behind_an_anchor),
          CASE(test_rows_below_the_anchor_are_named), CASE(test_verify_reads_one_snapshot))

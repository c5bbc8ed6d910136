/* test_audit: the append-only, hash-chained audit log on a real SQLite file:
 * rows appended (their hash pinned, auditrow's rule), read back, and the
 * chain's head. The checks are test_auditverify's, the prune
 * test_auditprune's. */
#include <openssl/evp.h>

#include "unit_audit.h"

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[32];
    unsigned len;
    REQUIRE(EVP_Digest(s, strlen(s), d, &len, EVP_sha256(), NULL) == 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
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


TEST_MAIN(CASE(test_chain_appended_and_verified), CASE(test_rollback_and_forget),
          CASE(test_triggers_reject_changes), CASE(test_query), CASE(test_query_strings_and_stop),
          CASE(test_null_is_not_text), CASE(test_head_read), CASE(test_head_parse))

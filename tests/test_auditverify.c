/* test_auditverify: the audit chain checked: tampering behind the daemon's
 * back named at the right row, the latest anchor's rules, one snapshot per
 * check, and a head recorded outside the file. */
#include "auditprune.h"
#include "unit_audit.h"

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


TEST_MAIN(CASE(test_tampering_detected), CASE(test_head_checked), CASE(test_rows_below_the_anchor_are_named),
          CASE(test_verify_reads_one_snapshot))

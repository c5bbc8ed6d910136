/* test_auditprune: the guarded delete of the oldest audit rows behind an
 * anchor, and what the schema refuses outside it. */
#include <stdlib.h>

#include "auditprune.h"
#include "unit_audit.h"
#include "unit_sql.h"

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


TEST_MAIN(CASE(test_prune_behind_an_anchor))

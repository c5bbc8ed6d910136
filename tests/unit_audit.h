/* unit_audit: the audit tests' fixture (test_audit, test_auditverify,
 * test_auditprune): a temporary directory, a chain of ten rows with every
 * NULL convention, and reads of what the chain holds. */
#pragma once

#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "auditverify.h"
#include "db.h"
#include "unit.h"

static char dir[64];

static inline int rm_entry(const char *p, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)type, (void)f;
    return remove(p);
}

static inline void tmp_begin(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_audit.XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
}

static inline void tmp_end(void)
{
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static inline const char *tmp_path(const char *name)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
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

static inline void open_with_chain(const char *path, struct db **ret_db, struct audit **ret_a)
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

static inline int64_t verify_bad(struct db *db, char *why, size_t whylen)
{
    int64_t rows = -1, bad = -1;
    int rc = auditverify_chain(db, &rows, &bad, why, whylen);
    if (rc == 0)
        return 0;
    CHECK_INT(rc, -EBADMSG);
    CHECK_INT(rows, -1); /* written only when intact */
    return bad;
}

/* The stored hash of row seq. */
static inline void stored_hash(struct db *db, int64_t seq, char out[AUDIT_HASH_LEN + 1])
{
    sqlite3_stmt *st;

    REQUIRE(sqlite3_prepare_v2(db->conn, "SELECT hash FROM audit WHERE seq = ?1", -1, &st, NULL) ==
            SQLITE_OK);
    sqlite3_bind_int64(st, 1, seq);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    snprintf(out, AUDIT_HASH_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

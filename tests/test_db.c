/* test_db: opening, configuring and migrating real SQLite files. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "schema.h"
#include "unit.h"

static char dir[64];

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)type, (void)f;
    return remove(p);
}

/* A fresh directory per case, removed at the end of it. */
static void tmp_begin(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_db.XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
}

static void tmp_end(void)
{
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(const char *name)
{
    static char buf[4][128];
    static int n;
    char *p = buf[n++ % 4];
    snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
    return p;
}

static int64_t query_int(sqlite3 *conn, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -999;
    REQUIRE(sqlite3_prepare_v2(conn, sql, -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void query_text(sqlite3 *conn, const char *sql, char *out, size_t len)
{
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(conn, sql, -1, &st, NULL) == SQLITE_OK);
    out[0] = '\0';
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *c;
    REQUIRE(sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) ==
            SQLITE_OK);
    sqlite3_busy_timeout(c, 2000);
    return c;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    static char buf[1 << 22];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

static void test_mode_0600_under_umask_0(void)
{
    tmp_begin();
    mode_t old = umask(0);
    struct db *db = NULL;
    const char *p = tmp_path("a.db");
    REQUIRE(db_open(p, 0, &db) == 0);
    struct stat st;
    REQUIRE(stat(p, &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    /* The WAL and shared-memory files SQLite creates follow the database. */
    REQUIRE(sqlite3_exec(db->conn, "CREATE TABLE x(a)", NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(stat(tmp_path("a.db-wal"), &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    REQUIRE(stat(tmp_path("a.db-shm"), &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    db_close(db);

    /* Even a umask that takes the owner's write bit away. */
    umask(0277);
    const char *q = tmp_path("b.db");
    REQUIRE(db_open(q, 0, &db) == 0);
    REQUIRE(stat(q, &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    db_close(db);

    /* An existing file keeps the mode its operator gave it. */
    umask(0);
    REQUIRE(chmod(q, 0640) == 0);
    REQUIRE(db_open(q, 0, &db) == 0);
    REQUIRE(stat(q, &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0640);
    db_close(db);
    umask(old);
    tmp_end();
}

/* Another connection's write lock: db waits for it (db_busy_wait) at
 * least DB_BUSY_TIMEOUT_MS, then says busy; with 0 it does not wait. */
static void test_busy_wait(void)
{
    tmp_begin();
    struct db *db;
    REQUIRE(db_open(tmp_path("a.db"), 0, &db) == 0);
    sqlite3 *other = raw_open(tmp_path("a.db"));
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_INT(sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_BUSY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    CHECK(waited_ms >= DB_BUSY_TIMEOUT_MS);
    db_busy_wait(db->conn, 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_INT(sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_BUSY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < DB_BUSY_TIMEOUT_MS);
    /* Once the lock is free, the same connection writes again. */
    db_busy_wait(db->conn, DB_BUSY_TIMEOUT_MS);
    REQUIRE(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(sqlite3_exec(db->conn, "BEGIN IMMEDIATE; COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    db_close(db);
    tmp_end();
}

static void test_pragmas_and_schema(void)
{
    tmp_begin();
    struct db *db;
    char mode[32];
    REQUIRE(db_open(tmp_path("a.db"), 0, &db) == 0);
    CHECK_STR(db->path, tmp_path("a.db"));
    query_text(db->conn, "PRAGMA journal_mode", mode, sizeof(mode));
    CHECK_STR(mode, "wal");
    CHECK_INT(query_int(db->conn, "PRAGMA synchronous"), 1); /* NORMAL */
    CHECK_INT(query_int(db->conn, "PRAGMA secure_delete"), 1);
    CHECK_INT(query_int(db->conn, "PRAGMA foreign_keys"), 1);
    CHECK_INT(query_int(db->conn, "PRAGMA user_version"), schema_version);
    CHECK(schema_version >= 1);
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM sqlite_schema WHERE type='table' "
                                  "AND name IN ('tokens','audit')"), 2);
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM sqlite_schema WHERE type='view' "
                                  "AND name IN ('audit_log','outcomes_per_hour','failed_tokens')"),
              3);
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM audit_log"), 0);
    db_close(db);
    db_close(NULL);
    tmp_end();
}

static void test_reopen_is_idempotent(void)
{
    tmp_begin();
    struct db *db, *db2;
    const char *p = tmp_path("a.db");
    REQUIRE(db_open(p, 0, &db) == 0);
    REQUIRE(sqlite3_exec(db->conn, "INSERT INTO tokens(token) VALUES ('t1')", NULL, NULL,
                         NULL) == SQLITE_OK);
    /* A second daemon-style connection while the first is open. */
    REQUIRE(db_open(p, 0, &db2) == 0);
    CHECK_INT(query_int(db2->conn, "SELECT count(*) FROM tokens"), 1);
    db_close(db2);
    db_close(db);
    for (int i = 0; i < 3; i++) {
        REQUIRE(db_open(p, 0, &db) == 0);
        CHECK_INT(query_int(db->conn, "PRAGMA user_version"), schema_version);
        CHECK_INT(query_int(db->conn, "SELECT count(*) FROM tokens"), 1);
        CHECK_INT(query_int(db->conn, "SELECT count(*) FROM sqlite_schema WHERE type='view'"), 4);
        db_close(db);
    }
    tmp_end();
}

static void test_newer_schema_refused(void)
{
    tmp_begin();
    struct db *db;
    const char *p = tmp_path("a.db");
    REQUIRE(db_open(p, 0, &db) == 0);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%u", schema_version + 1);
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    db_close(db);

    struct db *sentinel = (struct db *)&sentinel;
    db = sentinel;
    CHECK_INT(db_open(p, 0, &db), -EPROTONOSUPPORT);
    CHECK(db == sentinel); /* ret_db is written only on success */
    CHECK(strstr(db_open_error(), p) != NULL);
    CHECK(strstr(db_open_error(), "newer") != NULL);
    CHECK_INT(db_open(p, DB_READONLY, &db), -EPROTONOSUPPORT);
    CHECK(db == sentinel);
    tmp_end();
}

static void test_failed_migration_rolls_back(void)
{
    tmp_begin();
    const char *p = tmp_path("a.db");
    sqlite3 *raw = raw_open(p);
    /* A table in the way makes migration 1 fail half-way. */
    REQUIRE(sqlite3_exec(raw, "CREATE TABLE audit(x)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(raw);
    struct db *db;
    CHECK_INT(db_open(p, 0, &db), -EIO);
    CHECK(strstr(db_open_error(), "cannot migrate") != NULL);
    CHECK(strstr(db_open_error(), "schema version 1") != NULL);
    CHECK(strstr(db_open_error(), "already exists") != NULL);
    raw = raw_open(p);
    CHECK_INT(query_int(raw, "PRAGMA user_version"), 0);
    CHECK_INT(query_int(raw, "SELECT count(*) FROM sqlite_schema WHERE name='tokens'"), 0);
    sqlite3_close(raw);
    tmp_end();
}

/* Schema 7 rebuilds tokens and audit to add the state held (sql/007): a
 * version 6 file keeps every row and column, the ids of deleted rows stay
 * used, an application's view survives, the indexes and triggers are all
 * there again, and the new state and events are accepted. */
static void test_upgrade_to_held(void)
{
    tmp_begin();
    const char *p = tmp_path("a.db");
    sqlite3 *raw = raw_open(p);
    for (unsigned v = 0; v < 6; v++)
        REQUIRE(sqlite3_exec(raw, schema_migrations[v], NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw,
                         "PRAGMA user_version = 6;"
                         "INSERT INTO tokens(token, subject, expires_at, state, due_reason, attempts) VALUES "
                         "('t1', 'alice', 1795000000, 'active', NULL, 0), ('t2', NULL, 5, 'pending', 'expired', 3),"
                         "('t3', 'bob', NULL, 'failed', 'flagged', 8), ('t4', NULL, NULL, 'active', NULL, 0);"
                         "DELETE FROM tokens WHERE id = 4;"
                         "INSERT INTO audit(at, token_id, event, detail, hash) VALUES (1, 2, 'due', 'expired', 'h1'),"
                         "(2, 3, 'gave_up', NULL, 'h2');"
                         "CREATE VIEW app_view AS SELECT id, subject FROM tokens WHERE subject IS NOT NULL;",
                         NULL, NULL, NULL) == SQLITE_OK);
    int64_t objects = query_int(raw, "SELECT count(*) FROM sqlite_schema WHERE type IN ('index', 'trigger')");
    sqlite3_close(raw);

    struct db *db;
    REQUIRE(db_open(p, 0, &db) == 0);
    char got[256];
    CHECK_INT(query_int(db->conn, "PRAGMA user_version"), schema_version);
    query_text(db->conn,
               "SELECT group_concat(id || token || coalesce(subject, '-') || coalesce(expires_at, '-') || state || "
               "coalesce(due_reason, '-') || attempts, ',') FROM tokens",
               got, sizeof(got));
    CHECK_STR(got, "1t1alice1795000000active-0,2t2-5pendingexpired3,3t3bob-failedflagged8");
    query_text(db->conn, "SELECT group_concat(seq || event || hash, ',') FROM audit", got, sizeof(got));
    CHECK_STR(got, "1dueh1,2gave_uph2");
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM app_view"), 2);
    /* Three indexes more (tokens_held in 7, tokens_queue in 8,
     * tokens_finished in 9) and audit_anchor's three triggers (9), every
     * other one and both audit triggers again. */
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM sqlite_schema WHERE type IN ('index', 'trigger')"),
              objects + 6);
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%_v7'"), 0);
    REQUIRE(sqlite3_exec(db->conn,
                         "INSERT INTO tokens(token, state) VALUES ('t5', 'held');"
                         "INSERT INTO audit(at, event, hash) VALUES (3, 'dropped', 'h3')",
                         NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(query_int(db->conn, "SELECT max(id) FROM tokens"), 5); /* 4 stays used */
    CHECK(sqlite3_exec(db->conn, "DELETE FROM audit", NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(db->conn, "INSERT INTO tokens(token, state) VALUES ('t6', 'frozen')", NULL, NULL, NULL) !=
          SQLITE_OK);
    db_close(db);
    tmp_end();
}

static void test_readonly(void)
{
    tmp_begin();
    struct db *db;
    const char *missing = tmp_path("missing.db");
    char expect[256];

    db = (struct db *)&db;
    CHECK_INT(db_open(missing, DB_READONLY, &db), -ENOENT);
    CHECK(db == (struct db *)&db);
    snprintf(expect, sizeof(expect),
             "cannot open %s: unable to open database file (sqlite3 code 14)", missing);
    CHECK_STR(db_open_error(), expect);
    CHECK(access(missing, F_OK) < 0); /* not created */

    /* A file without our schema. */
    const char *empty = tmp_path("empty.db");
    int fd = open(empty, O_CREAT | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    close(fd);
    CHECK_INT(db_open(empty, DB_READONLY, &db), -ENODATA);
    CHECK(strstr(db_open_error(), "no revokerd schema") != NULL);

    /* Garbage is not a database. */
    const char *junk = tmp_path("junk.db");
    fd = open(junk, O_CREAT | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    static const char garbage[4096] = "this is not a database at all";
    REQUIRE(write(fd, garbage, sizeof(garbage)) == (ssize_t)sizeof(garbage));
    close(fd);
    CHECK_INT(db_open(junk, DB_READONLY, &db), -EBADMSG);
    CHECK(strstr(db_open_error(), "code 26") != NULL);
    CHECK_INT(db_open(junk, 0, &db), -EBADMSG);

    /* A real one, closed by its writer (no -wal, no -shm left). */
    const char *p = tmp_path("a.db");
    REQUIRE(db_open(p, 0, &db) == 0);
    REQUIRE(sqlite3_exec(db->conn, "INSERT INTO tokens(token) VALUES ('t1')", NULL, NULL,
                         NULL) == SQLITE_OK);
    db_close(db);
    REQUIRE(db_open(p, DB_READONLY, &db) == 0);
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM tokens"), 1);
    sqlite3_stmt *st;
    REQUIRE(db_prepare(db, "INSERT INTO tokens(token) VALUES ('t2')", &st) == 0);
    int rc = sqlite3_step(st);
    CHECK_INT(db_fail(db, rc), -EROFS);
    sqlite3_finalize(st);
    db_close(db);

    /* And one that the writer still has open. */
    struct db *w;
    REQUIRE(db_open(p, 0, &w) == 0);
    REQUIRE(sqlite3_exec(w->conn, "INSERT INTO tokens(token) VALUES ('t3')", NULL, NULL, NULL) ==
            SQLITE_OK);
    REQUIRE(db_open(p, DB_READONLY, &db) == 0);
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM tokens"), 2);
    db_close(db);
    db_close(w);
    tmp_end();
}

static void test_create_in_missing_dir(void)
{
    tmp_begin();
    struct db *db;
    const char *p = tmp_path("nope/a.db");
    CHECK_INT(db_open(p, 0, &db), -ENOENT);
    CHECK(strstr(db_open_error(), p) != NULL);
    CHECK(strstr(db_open_error(), "No such file") != NULL);
    tmp_end();
}

static void test_data_version(void)
{
    tmp_begin();
    struct db *db;
    const char *p = tmp_path("a.db");
    REQUIRE(db_open(p, 0, &db) == 0);
    sqlite3 *other = raw_open(p);
    int64_t v0, v1, v2, v3;
    REQUIRE(db_data_version(db, &v0) == 0);
    /* Our own commit does not change it. */
    REQUIRE(db_begin(db) == 0);
    REQUIRE(sqlite3_exec(db->conn, "INSERT INTO tokens(token) VALUES ('mine')", NULL, NULL,
                         NULL) == SQLITE_OK);
    REQUIRE(db_commit(db) == 0);
    REQUIRE(db_data_version(db, &v1) == 0);
    CHECK_INT(v1, v0);
    /* Another connection's does. */
    REQUIRE(sqlite3_exec(other, "INSERT INTO tokens(token) VALUES ('theirs')", NULL, NULL,
                         NULL) == SQLITE_OK);
    REQUIRE(db_data_version(db, &v2) == 0);
    CHECK(v2 != v1);
    /* And stays put while nobody writes. */
    REQUIRE(db_data_version(db, &v3) == 0);
    CHECK_INT(v3, v2);
    sqlite3_close(other);
    db_close(db);
    tmp_end();
}

static void test_transactions(void)
{
    tmp_begin();
    struct db *db;
    REQUIRE(db_open(tmp_path("a.db"), 0, &db) == 0);
    db_rollback(db); /* nothing open: harmless */
    db_rollback(NULL);
    REQUIRE(db_begin(db) == 0);
    REQUIRE(sqlite3_exec(db->conn, "INSERT INTO tokens(token) VALUES ('x')", NULL, NULL, NULL) ==
            SQLITE_OK);
    CHECK_INT(db_begin(db), -EIO); /* nested */
    CHECK(strstr(db_errmsg(db), "within a transaction") != NULL);
    db_rollback(db);
    CHECK(sqlite3_get_autocommit(db->conn));
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM tokens"), 0);
    REQUIRE(db_begin(db) == 0);
    REQUIRE(sqlite3_exec(db->conn, "INSERT INTO tokens(token) VALUES ('y')", NULL, NULL, NULL) ==
            SQLITE_OK);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(query_int(db->conn, "SELECT count(*) FROM tokens"), 1);
    CHECK_INT(db_commit(db), -EIO); /* none open */
    db_close(db);
    tmp_end();
}

static void test_busy(void)
{
    tmp_begin();
    struct db *db;
    const char *p = tmp_path("a.db");
    REQUIRE(db_open(p, 0, &db) == 0);
    sqlite3 *other = raw_open(p);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK_INT(db_begin(db), -EBUSY);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    CHECK(ms >= DB_BUSY_TIMEOUT_MS * 0.8);
    CHECK(ms < 2000); /* short: the loop must not stall */
    CHECK(strstr(db_errmsg(db), "sqlite3 code 5 (database is locked)") == db_errmsg(db));
    REQUIRE(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(db_begin(db), 0);
    db_rollback(db);
    sqlite3_close(other);
    db_close(db);
    tmp_end();
}

static void test_prepare_and_fail(void)
{
    tmp_begin();
    struct db *db;
    REQUIRE(db_open(tmp_path("a.db"), 0, &db) == 0);
    sqlite3_stmt *st = (sqlite3_stmt *)&st;
    CHECK_INT(db_prepare(db, "SELEKT nothing", &st), -EIO);
    CHECK(st == (sqlite3_stmt *)&st);
    CHECK(strncmp(db_errmsg(db), "sqlite3 code 1 (SQL logic error): near \"SELEKT\"", 47) == 0);
    REQUIRE(db_prepare(db, "SELECT count(*) FROM tokens", &st) == 0);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    sqlite3_finalize(st);

    /* Constraint errors keep the extended code in the message. */
    REQUIRE(db_prepare(db, "INSERT INTO tokens(state) VALUES ('bogus')", &st) == 0);
    int rc = sqlite3_step(st);
    CHECK_INT(db_fail(db, rc), -EIO);
    CHECK(strstr(db_errmsg(db), "sqlite3 code 275 (constraint failed): CHECK constraint failed") ==
          db_errmsg(db));
    sqlite3_finalize(st);

    /* A statement still held when the db closes: the connection waits for it. */
    REQUIRE(db_prepare(db, "SELECT 1", &st) == 0);
    db_close(db);
    sqlite3_finalize(st);
    tmp_end();
}

static void test_errno_table(void)
{
    static const struct {
        int rc, err;
    } cases[] = {
        {SQLITE_OK, 0},
        {SQLITE_BUSY, -EBUSY},
        {SQLITE_BUSY_SNAPSHOT, -EBUSY},
        {SQLITE_LOCKED, -EBUSY},
        {SQLITE_LOCKED_SHAREDCACHE, -EBUSY},
        {SQLITE_FULL, -ENOSPC},
        {SQLITE_NOMEM, -ENOMEM},
        {SQLITE_IOERR_NOMEM, -ENOMEM},
        {SQLITE_READONLY, -EROFS},
        {SQLITE_READONLY_DBMOVED, -EROFS},
        {SQLITE_CANTOPEN, -ENOENT},
        {SQLITE_PERM, -EACCES},
        {SQLITE_CORRUPT, -EBADMSG},
        {SQLITE_CORRUPT_INDEX, -EBADMSG},
        {SQLITE_NOTADB, -EBADMSG},
        {SQLITE_IOERR, -EIO},
        {SQLITE_IOERR_FSYNC, -EIO},
        {SQLITE_ERROR, -EIO},
        {SQLITE_CONSTRAINT_UNIQUE, -EIO},
        {SQLITE_MISUSE, -EIO},
        {SQLITE_DONE, -EIO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (db_errno(cases[i].rc) != cases[i].err)
            fprintf(stderr, "case %zu: sqlite code %d\n", i, cases[i].rc);
        CHECK_INT(db_errno(cases[i].rc), cases[i].err);
    }
}

/* A secret set to NULL must not survive in the database file's free space. */
static void test_secure_delete(void)
{
    tmp_begin();
    struct db *db;
    const char *p = tmp_path("a.db");
    /* Long, so that the shorter row written over the old cell cannot cover
     * it all: only secure_delete wipes what is left. */
    char secret[200];
    memset(secret, 'k', sizeof(secret) - 1);
    memcpy(secret, "SECRET-4f1c2a9e-", 16);
    secret[sizeof(secret) - 1] = '\0';
    REQUIRE(db_open(p, 0, &db) == 0);
    char sql[512];
    snprintf(sql, sizeof(sql), "INSERT INTO tokens(token, subject) VALUES ('%s', 'alice')", secret);
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db->conn, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) ==
            SQLITE_OK);
    CHECK(file_contains(p, "SECRET-4f1c2a9e-kkkk")); /* seen when it is there */
    REQUIRE(sqlite3_exec(db->conn, "UPDATE tokens SET token = NULL", NULL, NULL, NULL) ==
            SQLITE_OK);
    REQUIRE(sqlite3_exec(db->conn, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) ==
            SQLITE_OK);
    CHECK(!file_contains(p, "SECRET-4f1c2a9e"));
    CHECK(!file_contains(p, "kkkkkkkkkkkkkkkk"));
    db_close(db);

    /* Control: without secure_delete the same steps leave the bytes behind
     * (SQLite may be built with it on by default, so turn it off here). */
    const char *q = tmp_path("b.db");
    REQUIRE(db_open(q, 0, &db) == 0);
    REQUIRE(sqlite3_exec(db->conn, "PRAGMA secure_delete=OFF", NULL, NULL, NULL) == SQLITE_OK);
    snprintf(sql, sizeof(sql), "INSERT INTO tokens(token, subject) VALUES ('%s', 'alice')", secret);
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db->conn, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) ==
            SQLITE_OK);
    REQUIRE(sqlite3_exec(db->conn, "UPDATE tokens SET token = NULL", NULL, NULL, NULL) ==
            SQLITE_OK);
    REQUIRE(sqlite3_exec(db->conn, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) ==
            SQLITE_OK);
    CHECK(file_contains(q, "SECRET-4f1c2a9e-kkkk"));
    db_close(db);
    tmp_end();
}

/* Stale WAL frames holding a removed secret are cut when the WAL restarts. */
static void test_wal_truncated_on_restart(void)
{
    tmp_begin();
    struct db *db;
    const char *p = tmp_path("a.db");
    static const char secret[] = "SECRET-77aa01-wal-frame";
    REQUIRE(db_open(p, 0, &db) == 0);
    sqlite3 *reader = raw_open(p); /* keeps the WAL from being deleted */
    /* Frames before the secret's, so that a restart's first frame does not
     * overwrite it by chance. */
    for (int i = 0; i < 20; i++)
        REQUIRE(sqlite3_exec(db->conn,
                             "INSERT INTO tokens(subject) VALUES (hex(randomblob(2000)))", NULL,
                             NULL, NULL) == SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof(sql), "INSERT INTO tokens(token) VALUES ('%s')", secret);
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db->conn, "UPDATE tokens SET token = NULL", NULL, NULL, NULL) ==
            SQLITE_OK);
    CHECK(file_contains(tmp_path("a.db-wal"), secret));
    REQUIRE(sqlite3_exec(db->conn, "PRAGMA wal_checkpoint(PASSIVE)", NULL, NULL, NULL) ==
            SQLITE_OK);
    /* The next write restarts the WAL from its start. */
    REQUIRE(sqlite3_exec(db->conn, "INSERT INTO tokens(subject) VALUES ('z')", NULL, NULL, NULL) ==
            SQLITE_OK);
    CHECK(!file_contains(tmp_path("a.db-wal"), secret));
    CHECK(!file_contains(p, secret));
    sqlite3_close(reader);
    db_close(db);
    tmp_end();
}

static void test_now(void)
{
    int64_t a = db_now_ms();
    CHECK(a > 1700000000000LL);
    CHECK(db_now_ms() >= a);
}

TEST_MAIN(CASE(test_mode_0600_under_umask_0), CASE(test_pragmas_and_schema), CASE(test_busy_wait),
          CASE(test_reopen_is_idempotent), CASE(test_newer_schema_refused),
          CASE(test_failed_migration_rolls_back), CASE(test_upgrade_to_held), CASE(test_readonly),
          CASE(test_create_in_missing_dir), CASE(test_data_version), CASE(test_transactions),
          CASE(test_busy), CASE(test_prepare_and_fail), CASE(test_errno_table),
          CASE(test_secure_delete), CASE(test_wal_truncated_on_restart), CASE(test_now))

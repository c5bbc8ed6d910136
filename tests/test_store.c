/* store: open and close with and without a loop; begin/commit/rollback
 * leave no transaction behind; a rollback forgets the audit log's cached
 * head (else the next audit row would chain onto a row that is gone); and
 * "may we write now" while a checkpoint's step 1 copies: a write that can
 * wait is refused with -EAGAIN, a client's goes. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "auditverify.h"
#include "db.h"
#include "store.h"
#include "unit.h"
#include "unit_sql.h"

static char dir[] = "/tmp/revokerd-store-XXXXXX", path[256];

static void fresh_path(void)
{
    char p[300];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static int64_t sql_int(struct store *s, const char *sql)
{
    return unit_sql_int(store_db(s)->conn, sql);
}

static bool in_transaction(struct store *s)
{
    return !sqlite3_get_autocommit(store_db(s)->conn);
}

/* A revocation request for a new token: one row and one `due` audit row. */
static int revoke_new_token(struct store *s, const char *token)
{
    int64_t id = 0;
    enum token_state state;

    return store_revoke_secret(s, token, strlen(token), NULL, "test", db_now_ms(), &id, &state);
}

static int verify_chain(struct store *s, int64_t *ret_rows)
{
    char why[256] = "";
    int64_t bad = 0;
    int rc = auditverify_chain(store_db(s), ret_rows, &bad, why, sizeof(why));

    if (rc < 0)
        fprintf(stderr, "audit chain broken at %lld: %s\n", (long long)bad, why);
    return rc;
}

static void on_closed(void *data)
{
    (*(int *)data)++;
}

static int passes, last_err;

static void on_pass(void *data, int err, const char *msg)
{
    (void)msg;
    (*(int *)data)++;
    last_err = err;
}

static void test_lifecycle(void)
{
    struct store *s = NULL, *untouched = (struct store *)&s;
    char err[512] = "", bad[300];
    struct state_counts c;
    struct stat st;
    uv_loop_t loop;
    int closed = 0;

    /* Without a loop: open creates and migrates the file; close is at once. */
    fresh_path();
    REQUIRE(store_open(NULL, path, NULL, NULL, &s, err, sizeof(err)) == 0);
    CHECK(store_db(s) != NULL);
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    CHECK_INT(store_count(s, true, &c), 0);
    CHECK_INT(c.active + c.pending + c.revoked + c.failed, 0);
    CHECK(store_may_write(s, STORE_WRITE_CAN_WAIT)); /* no checkpointer: never held */
    store_checkpoint_request(s);                     /* nothing to start */
    CHECK(store_may_write(s, STORE_WRITE_CAN_WAIT));
    CHECK_INT(store_checkpoint_now(s), 0);
    store_close(s, on_closed, &closed);
    CHECK_INT(closed, 1);
    store_close(NULL, on_closed, &closed);
    CHECK_INT(closed, 2);
    store_close(NULL, NULL, NULL);

    /* A failed open says why and leaves ret_store alone. */
    snprintf(bad, sizeof(bad), "%s/missing/dir/x.db", dir);
    s = untouched;
    CHECK(store_open(NULL, bad, NULL, NULL, &s, err, sizeof(err)) < 0);
    CHECK(s == untouched);
    CHECK(strstr(err, bad) != NULL);

    /* With a loop: closing frees through the loop; no handle is left. */
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(store_open(&loop, path, NULL, NULL, &s, err, sizeof(err)) == 0);
    CHECK_INT(sql_int(s, "SELECT count(*) FROM audit"), 0);
    closed = 0;
    store_close(s, on_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(closed, 1);
    CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_begin_commit_rollback(void)
{
    struct store *s;
    sqlite3 *other;

    fresh_path();
    REQUIRE(store_open(NULL, path, NULL, NULL, &s, NULL, 0) == 0);

    /* Committed: the row and its audit row stay; nothing is left open. */
    CHECK_INT(store_begin(s, STORE_WRITE_NOW), 0);
    CHECK(in_transaction(s));
    CHECK_INT(revoke_new_token(s, "tok-committed"), 0);
    CHECK_INT(store_commit(s), 0);
    CHECK(!in_transaction(s));
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens"), 1);
    CHECK_INT(sql_int(s, "SELECT count(*) FROM audit"), 1);

    /* Rolled back: gone. */
    CHECK_INT(store_begin(s, STORE_WRITE_CAN_WAIT), 0);
    CHECK_INT(revoke_new_token(s, "tok-rolled-back"), 0);
    store_rollback(s);
    CHECK(!in_transaction(s));
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens"), 1);
    store_rollback(s); /* nothing open: harmless */

    /* store_end: commits on 0, rolls back and passes a failure on. */
    CHECK_INT(store_begin(s, STORE_WRITE_NOW), 0);
    CHECK_INT(revoke_new_token(s, "tok-failed-work"), 0);
    CHECK_INT(store_end(s, -EIO), -EIO);
    CHECK(!in_transaction(s));
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens"), 1);
    CHECK_INT(store_begin(s, STORE_WRITE_NOW), 0);
    CHECK_INT(revoke_new_token(s, "tok-ended"), 0);
    CHECK_INT(store_end(s, 0), 0);
    CHECK(!in_transaction(s));
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens"), 2);

    /* Another process holds the write lock: begin fails, nothing is open,
     * and the error is there for the log line. */
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(store_begin(s, STORE_WRITE_NOW), -EBUSY);
    CHECK(!in_transaction(s));
    CHECK(strstr(store_errmsg(s), "sqlite3 code 5") != NULL);
    REQUIRE(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    CHECK_INT(store_begin(s, STORE_WRITE_NOW), 0);
    store_rollback(s);

    store_close(s, NULL, NULL);
}

/* The audit log caches its chain head (seq and hash of the newest row)
 * between appends. A rollback removes that row; if the cache were kept,
 * the next row would chain onto the removed one and --verify would find
 * the chain broken there. Every way a transaction can end in a rollback. */
static void test_rollback_forgets_audit_head(void)
{
    struct store *s;
    int64_t rows = 0;

    fresh_path();
    REQUIRE(store_open(NULL, path, NULL, NULL, &s, NULL, 0) == 0);
    REQUIRE(store_begin(s, STORE_WRITE_NOW) == 0);
    REQUIRE(revoke_new_token(s, "tok-first") == 0);
    REQUIRE(store_end(s, 0) == 0);

    /* store_rollback */
    REQUIRE(store_begin(s, STORE_WRITE_NOW) == 0);
    REQUIRE(revoke_new_token(s, "tok-gone-1") == 0);
    store_rollback(s);
    REQUIRE(store_begin(s, STORE_WRITE_NOW) == 0);
    REQUIRE(revoke_new_token(s, "tok-second") == 0);
    REQUIRE(store_end(s, 0) == 0);
    CHECK_INT(verify_chain(s, &rows), 0);
    CHECK_INT(rows, 2);

    /* store_end with a failure */
    REQUIRE(store_begin(s, STORE_WRITE_CAN_WAIT) == 0);
    REQUIRE(revoke_new_token(s, "tok-gone-2") == 0);
    CHECK_INT(store_end(s, -ENOMEM), -ENOMEM);
    REQUIRE(store_begin(s, STORE_WRITE_CAN_WAIT) == 0);
    REQUIRE(revoke_new_token(s, "tok-third") == 0);
    REQUIRE(store_end(s, 0) == 0);
    CHECK_INT(verify_chain(s, &rows), 0);
    CHECK_INT(rows, 3);

    store_close(s, NULL, NULL);
}

/* The tally of rows the table's rules rejected counts committed rows only:
 * a rolled-back promotion is done again, and must not count twice. */
static void test_rollback_puts_tally_back(void)
{
    struct store *s;
    unsigned n = 0;

    fresh_path();
    REQUIRE(store_open(NULL, path, NULL, NULL, &s, NULL, 0) == 0);
    REQUIRE(sqlite3_exec(store_db(s)->conn,
                         "INSERT INTO tokens (token, expires_at) VALUES ('tok-ms', 1795000000000), "
                         "('tok-text', 'tomorrow'); INSERT INTO tokens (token, flagged) VALUES (NULL, 1)",
                         NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(store_begin(s, STORE_WRITE_CAN_WAIT) == 0);
    CHECK_INT(store_promote_due(s, db_now_ms(), 10, &n), 0);
    CHECK_INT(n, 3);
    CHECK_INT(store_tally(s).no_token, 1);
    CHECK_INT(store_tally(s).expiry_converted, 1);
    CHECK_INT(store_tally(s).expiry_rejected, 1);
    CHECK_INT(store_end(s, -EIO), -EIO);
    CHECK_INT(store_tally(s).no_token, 0);
    CHECK_INT(store_tally(s).expiry_converted, 0);
    CHECK_INT(store_tally(s).expiry_rejected, 0);
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens WHERE state = 'active'"), 3);

    REQUIRE(store_begin(s, STORE_WRITE_CAN_WAIT) == 0);
    CHECK_INT(store_promote_due(s, db_now_ms(), 10, &n), 0);
    REQUIRE(store_end(s, 0) == 0);
    CHECK_INT(store_tally(s).no_token, 1);
    CHECK_INT(store_tally(s).expiry_converted, 1);
    CHECK_INT(store_tally(s).expiry_rejected, 1);
    CHECK_INT(sql_int(s, "SELECT expires_at FROM tokens WHERE token = 'tok-ms'"), 1795000000);
    store_close(s, NULL, NULL);
}

/* Run the loop until the pass callback ran `want` times (or 5 s passed). */
static void run_until(uv_loop_t *loop, int want)
{
    for (int i = 0; i < 5000 && passes < want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void test_may_write_during_checkpoint(void)
{
    struct store *s;
    uv_loop_t loop;
    int closed = 0;

    fresh_path();
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(store_open(&loop, path, NULL, NULL, &s, NULL, 0) == 0);
    passes = 0;
    store_on_checkpoint(s, on_pass, &passes);
    CHECK(store_may_write(s, STORE_WRITE_CAN_WAIT));
    CHECK(store_may_write(s, STORE_WRITE_NOW));

    /* Step 1 is queued or running: the engine's writes wait, a client's go. */
    store_checkpoint_request(s);
    CHECK(!store_may_write(s, STORE_WRITE_CAN_WAIT));
    CHECK(store_may_write(s, STORE_WRITE_NOW));
    CHECK_INT(store_begin(s, STORE_WRITE_CAN_WAIT), -EAGAIN);
    CHECK(!in_transaction(s));
    CHECK_INT(store_begin(s, STORE_WRITE_NOW), 0);
    CHECK_INT(revoke_new_token(s, "tok-client"), 0);
    CHECK_INT(store_end(s, 0), 0);

    /* The pass ends: its owner hears it, and writes that wait may go. */
    run_until(&loop, 1);
    CHECK_INT(passes, 1);
    CHECK_INT(last_err, 0);
    CHECK(store_may_write(s, STORE_WRITE_CAN_WAIT));
    CHECK_INT(store_begin(s, STORE_WRITE_CAN_WAIT), 0);
    CHECK_INT(revoke_new_token(s, "tok-engine"), 0);
    CHECK_INT(store_end(s, 0), 0);
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens"), 2);

    /* Closed while a pass copies: freed when it returns; the owner that
     * went away first (store_on_checkpoint NULL) hears nothing. */
    store_checkpoint_request(s);
    store_on_checkpoint(s, NULL, NULL);
    store_close(s, on_closed, &closed);
    CHECK_INT(closed, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(closed, 1);
    CHECK_INT(passes, 1);
    CHECK_INT(uv_loop_close(&loop), 0);
}

static void setup(void)
{
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/store.db", dir);
}

static void teardown(void)
{
    fresh_path();
    rmdir(dir);
}

TEST_MAIN(CASE(setup), CASE(test_lifecycle), CASE(test_begin_commit_rollback),
          CASE(test_rollback_forgets_audit_head), CASE(test_rollback_puts_tally_back), CASE(test_may_write_during_checkpoint),
          CASE(teardown))

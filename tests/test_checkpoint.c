/* checkpoint: the loop's commits no longer checkpoint; a pass copies the WAL
 * into the database file and cuts it; readers delay the cut; a cleared
 * secret leaves both files, also the copies a rebuilt page keeps; closing
 * waits for a running pass. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "checkpoint.h"
#include "store.h"
#include "db.h"
#include "unit.h"

static uv_loop_t loop;
static char dir[] = "/tmp/revokerd-ckpt-XXXXXX", path[256], wal[300];
static int results, last_err;

static void on_pass(void *data, int err, const char *msg)
{
    (void)data;
    (void)msg;
    results++;
    last_err = err;
}

static void exec_sql(sqlite3 *c, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(c, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sql failed: %s: %s\n", sql, err);
        exit(1);
    }
}

static long long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* Run the loop until results reaches want (or 5 s passed). */
static void run_until(int want)
{
    for (int i = 0; i < 5000 && results < want; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

/* Commits of a row each, about one WAL frame each (a new leaf page is
 * written on every commit). */
static void commit_rows(struct db *db, int n)
{
    for (int i = 0; i < n; i++)
        exec_sql(db->conn, "INSERT INTO tokens (token) VALUES (hex(randomblob(400)))");
}

static unsigned passes(const struct checkpoint *c)
{
    struct checkpoint_stats st;
    checkpoint_get_stats(c, &st);
    return st.passes;
}

static uint64_t off_loop(const struct checkpoint *c)
{
    struct checkpoint_stats st;
    checkpoint_get_stats(c, &st);
    return st.frames_off_loop;
}

static long long wal_frames(void)
{
    long long size = file_size(wal);
    return size <= 32 ? 0 : (size - 32) / (4096 + 24);
}

/* Does the file at p hold needle anywhere? */
static bool file_has(const char *p, const char *needle)
{
    FILE *f = fopen(p, "rb");
    size_t n = strlen(needle), len = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    bool found = false;

    if (!f || !buf) {
        if (f)
            fclose(f);
        free(buf);
        return false;
    }
    for (;;) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
            continue;
        }
        if (r == 0)
            break;
    }
    fclose(f);
    found = memmem(buf, len, needle, n) != NULL;
    free(buf);
    return found;
}

static void open_fresh(struct db **ret_db, struct checkpoint **ret_c)
{
    unlink(path);
    unlink(wal);
    REQUIRE(db_open(path, 0, ret_db) == 0);
    REQUIRE(checkpoint_new(&loop, *ret_db, on_pass, NULL, ret_c) == 0);
    /* The test's commits go while step 2 holds the writer lock, as a
     * client's do (store_begin): they wait for it. */
    db_busy_wait((*ret_db)->conn, STORE_CUT_WAIT_MS);
    results = 0;
    last_err = 1;
}

static void close_both(struct db *db, struct checkpoint *c)
{
    checkpoint_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    db_close(db);
}

static void test_threshold_pass(void)
{
    struct db *db;
    struct checkpoint *c;

    open_fresh(&db, &c);
    /* Past SQLite's own threshold, the commits alone checkpoint nothing:
     * without the loop running, the WAL only grows. */
    commit_rows(db, CHECKPOINT_FRAMES + 200);
    CHECK(wal_frames() > CHECKPOINT_FRAMES);
    CHECK_INT(results, 0);

    /* The loop runs the pass the commits asked for: the WAL is cut. */
    CHECK(checkpoint_copying(c)); /* step 1 is queued or running */
    run_until(1);
    CHECK(!checkpoint_copying(c));
    CHECK_INT(results, 1);
    CHECK_INT(last_err, 0);
    CHECK_INT(passes(c), 1);
    CHECK_INT(file_size(wal), 0);
    /* Step 1 did the copying, off the loop. */
    CHECK(off_loop(c) >= CHECKPOINT_FRAMES);

    /* A steady stream with the loop running between commits: the WAL stays
     * near the threshold, never twice it. */
    long long most = 0;
    for (int i = 0; i < 6 * CHECKPOINT_FRAMES; i++) {
        commit_rows(db, 1);
        uv_run(&loop, UV_RUN_NOWAIT);
        if (wal_frames() > most)
            most = wal_frames();
    }
    CHECK(passes(c) >= 3);
    /* step 1 runs (again) while commits go on; past CHECKPOINT_FRAMES_INLINE
     * the commits checkpoint themselves (unless step 1 holds the checkpoint
     * lock just then) */
    CHECK(most < 3 * CHECKPOINT_FRAMES_INLINE);
    printf("# steady stream: %u passes, WAL at most %lld frames\n", passes(c), most);

    /* A loop turn that never ends (a flood of requests): past
     * CHECKPOINT_FRAMES_INLINE the commits checkpoint themselves, and the WAL
     * stays bounded without the loop. */
    for (int i = 0; i < 4 * CHECKPOINT_FRAMES_INLINE; i++)
        commit_rows(db, 1);
    struct checkpoint_stats cs;
    checkpoint_get_stats(c, &cs);
    CHECK(cs.inline_passes > 0);
    CHECK(wal_frames() < 3 * CHECKPOINT_FRAMES_INLINE);
    printf("# without the loop: %u inline checkpoints, WAL %lld frames\n", cs.inline_passes,
           wal_frames());
    run_until(results + 1);

    /* Everything is in the database file: a copy of it alone holds it all. */
    int64_t rows = 0;
    sqlite3 *other;
    sqlite3_stmt *st;
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_prepare_v2(other, "SELECT count(*) FROM tokens", -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    rows = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(other);
    CHECK_INT(rows, CHECKPOINT_FRAMES + 200 + 6 * CHECKPOINT_FRAMES + 4 * CHECKPOINT_FRAMES_INLINE);
    close_both(db, c);
}

static void test_reader_delays_the_cut(void)
{
    struct db *db;
    struct checkpoint *c;
    sqlite3 *reader;

    open_fresh(&db, &c);
    commit_rows(db, 10);
    REQUIRE(sqlite3_open(path, &reader) == SQLITE_OK);
    exec_sql(reader, "BEGIN; SELECT count(*) FROM tokens");
    checkpoint_request(c);
    run_until(1);
    CHECK_INT(last_err, -EBUSY);
    CHECK(file_size(wal) > 0);
    /* Busy is no reason to stop: the WAL's size keeps asking. */
    commit_rows(db, CHECKPOINT_FRAMES + 10);
    run_until(2);
    CHECK_INT(results, 2);
    CHECK_INT(last_err, -EBUSY);

    exec_sql(reader, "COMMIT");
    sqlite3_close(reader);
    int before = results;
    checkpoint_request(c);
    run_until(before + 1);
    CHECK_INT(last_err, 0);
    CHECK_INT(file_size(wal), 0);
    close_both(db, c);
}

/* Step 2 (its fsync and the WAL's truncation) runs off the loop: the loop
 * keeps turning while it waits for a reader in its way. */
static void test_cut_leaves_the_loop_free(void)
{
    struct db *db;
    struct checkpoint *c;
    sqlite3 *reader;
    int turns_cutting = 0;

    open_fresh(&db, &c);
    commit_rows(db, 10);
    REQUIRE(sqlite3_open(path, &reader) == SQLITE_OK);
    exec_sql(reader, "BEGIN; SELECT count(*) FROM tokens");
    checkpoint_request(c);
    for (int i = 0; i < 5000 && results < 1; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        turns_cutting += checkpoint_cutting(c);
        usleep(200);
    }
    CHECK_INT(results, 1);
    CHECK_INT(last_err, -EBUSY); /* the reader kept the WAL */
    CHECK(turns_cutting > 0);
    CHECK(!checkpoint_cutting(c));
    /* Once the reader is gone, the next pass cuts the WAL. */
    exec_sql(reader, "COMMIT");
    sqlite3_close(reader);
    checkpoint_request(c);
    run_until(2);
    CHECK_INT(last_err, 0);
    CHECK_INT(file_size(wal), 0);
    close_both(db, c);
}

/* A scrub asked for while step 2 is queued or running may have cleared a
 * secret in a commit that step 2 does not cut: the pass does not count it
 * as served, and the next pass serves it. */
static void test_request_during_the_cut(void)
{
    struct db *db;
    struct checkpoint *c;
    struct checkpoint_stats st;
    bool asked = false;

    open_fresh(&db, &c);
    commit_rows(db, 10);
    checkpoint_request(c);
    for (int i = 0; i < 5000 && results < 1; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (!asked && checkpoint_cutting(c)) {
            checkpoint_request(c);
            asked = true;
        }
        usleep(200);
    }
    CHECK(asked);
    CHECK_INT(results, 1);
    CHECK_INT(last_err, -EBUSY);
    checkpoint_get_stats(c, &st);
    CHECK(st.sweep_due);
    /* The engine asks again while passes end busy (the sweep's turn). */
    for (int i = 0; i < 100 && last_err != 0; i++) {
        usleep(5000);
        checkpoint_request(c);
        run_until(results + 1);
    }
    CHECK_INT(last_err, 0);
    checkpoint_get_stats(c, &st);
    CHECK(!st.sweep_due);
    close_both(db, c);
}

static void test_cleared_secret_leaves_the_files(void)
{
    static const char secret[] = "s3cr3t-that-must-go-9f8e7d";
    struct db *db;
    struct checkpoint *c;
    struct checkpoint_stats st;
    char sql[256];

    open_fresh(&db, &c);
    snprintf(sql, sizeof(sql), "INSERT INTO tokens (token) VALUES ('%s')", secret);
    exec_sql(db->conn, sql);
    commit_rows(db, 5);
    snprintf(sql, sizeof(sql), "UPDATE tokens SET token = NULL WHERE token = '%s'", secret);
    exec_sql(db->conn, sql);
    CHECK(file_has(wal, secret)); /* the page image from before */
    checkpoint_get_stats(c, &st);
    CHECK(!st.sweep_due);
    checkpoint_request(c);
    checkpoint_get_stats(c, &st);
    CHECK(st.sweep_due); /* the scrub is not done until its sweep */
    run_until(1);
    CHECK_INT(last_err, 0);
    CHECK(!file_has(wal, secret));
    CHECK(!file_has(path, secret));
    checkpoint_get_stats(c, &st);
    CHECK(!st.sweep_due);
    CHECK_INT(st.sweeps, 1);
    close_both(db, c);
}

/* Rows updated one by one in a shuffled order. */
static void update_shuffled(struct db *db, const char *sql, int n)
{
    sqlite3_stmt *st;
    int *ids = malloc(sizeof(*ids) * (size_t)n);

    REQUIRE(ids);
    for (int i = 0; i < n; i++)
        ids[i] = i + 1;
    srand(20);
    for (int i = n - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    REQUIRE(sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) == SQLITE_OK);
    exec_sql(db->conn, "BEGIN");
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int(st, 1, ids[i]);
        REQUIRE(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_reset(st);
    }
    exec_sql(db->conn, "COMMIT");
    sqlite3_finalize(st);
    free(ids);
}

/* Rows that grow in a random order split pages; a page rebuilt in the
 * balance keeps old copies of its cells below its new cell content area,
 * where secure_delete does not reach. The sweep zeroes them. */
static void test_rebuilt_pages_are_swept(void)
{
    enum { ROWS = 4000 };
    struct db *db;
    struct checkpoint *c;
    struct checkpoint_stats st;
    sqlite3_stmt *q;

    open_fresh(&db, &c);
    exec_sql(db->conn, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) "
                       "INSERT INTO tokens (token) SELECT 'zsec-' || hex(randomblob(32)) FROM n");
    update_shuffled(db, "UPDATE tokens SET token_sha256 = randomblob(32) WHERE id = ?1", ROWS);
    update_shuffled(db, "UPDATE tokens SET state = 'pending', fingerprint = hex(randomblob(8)) WHERE id = ?1",
                    ROWS);
    update_shuffled(db, "UPDATE tokens SET state = 'revoked', token = NULL WHERE id = ?1", ROWS);
    /* The check itself: a checkpoint alone leaves copies in the file. */
    REQUIRE(db_checkpoint(db) == 0);
    CHECK(file_has(path, "zsec-"));
    checkpoint_request(c);
    run_until(1);
    CHECK_INT(last_err, 0);
    CHECK(!file_has(path, "zsec-"));
    CHECK(!file_has(wal, "zsec-"));
    checkpoint_get_stats(c, &st);
    CHECK_INT(st.sweeps, 1);
    CHECK(st.pages_swept > 0);
    /* Only unused bytes were touched. */
    REQUIRE(sqlite3_prepare_v2(db->conn, "PRAGMA integrity_check", -1, &q, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    REQUIRE(sqlite3_prepare_v2(db->conn, "SELECT count(*) FROM tokens WHERE state = 'revoked'", -1, &q,
                               NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(q, 0), ROWS);
    sqlite3_finalize(q);
    close_both(db, c);
}

static void on_closed(void *data)
{
    *(bool *)data = true;
}

static void test_close_while_running(void)
{
    struct db *db;
    struct checkpoint *c;
    bool closed = false;

    open_fresh(&db, &c);
    commit_rows(db, 300);
    checkpoint_request(c);
    checkpoint_request(c); /* while one runs: served by it */
    checkpoint_close(c, on_closed, &closed);
    CHECK(!closed); /* step 1 is running: freed when it returns */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(closed);
    CHECK_INT(results, 0); /* closed: no pass reported */
    /* The loop's connection checkpoints on its own again. */
    commit_rows(db, CHECKPOINT_FRAMES + 10);
    CHECK(wal_frames() < CHECKPOINT_FRAMES);
    db_close(db);
}

static void test_memory_database(void)
{
    struct db *db;
    struct checkpoint *c;

    REQUIRE(db_open(":memory:", 0, &db) == 0);
    REQUIRE(checkpoint_new(&loop, db, on_pass, NULL, &c) == 0);
    results = 0;
    checkpoint_request(c);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(results, 0);
    CHECK_INT(passes(c), 0);
    close_both(db, c);
}

static void setup(void)
{
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    REQUIRE(uv_loop_init(&loop) == 0);
}

static void teardown(void)
{
    char p[320];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
        unlink(p);
    }
    rmdir(dir);
    CHECK_INT(uv_loop_close(&loop), 0);
}

TEST_MAIN(CASE(setup), CASE(test_threshold_pass), CASE(test_reader_delays_the_cut),
          CASE(test_cut_leaves_the_loop_free),
          CASE(test_request_during_the_cut), CASE(test_cleared_secret_leaves_the_files),
          CASE(test_rebuilt_pages_are_swept), CASE(test_close_while_running), CASE(test_memory_database),
          CASE(teardown))

/* watch: another connection's commit calls back quickly, a burst of them
 * once; our own does not. */
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "db.h"
#include "unit.h"
#include "watch.h"

static int calls;

static void on_change(void *data)
{
    (void)data;
    calls++;
}

/* Run the loop until calls reaches want or max_ms passed. */
static void run_until(uv_loop_t *loop, int want, uint64_t max_ms)
{
    uint64_t end = uv_now(loop) + max_ms;

    while (calls < want && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(loop);
    }
}

static void exec_sql(sqlite3 *c, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(c, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sql failed: %s\n", err);
        exit(1);
    }
}

static void test_other_connection_commit(void)
{
    char dir[] = "/tmp/revokerd-watch-XXXXXX", path[256];
    uv_loop_t loop;
    struct db *db;
    struct watch *w;
    sqlite3 *other;

    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(db_open(path, 0, &db) == 0);
    REQUIRE(watch_new(&loop, db, on_change, NULL, &w) == 0);
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);

    /* Our own commit fires inotify but leaves data_version: no call. */
    calls = 0;
    exec_sql(db->conn, "INSERT INTO tokens(token) VALUES ('own')");
    run_until(&loop, 1, 200);
    CHECK_INT(calls, 0);

    /* Another process's (connection's) commit: one call, quickly. */
    uint64_t t0 = uv_hrtime();
    exec_sql(other, "INSERT INTO tokens(token, flagged) VALUES ('x', 1)");
    run_until(&loop, 1, 2000);
    CHECK_INT(calls, 1);
    printf("# other connection's commit noticed after %.2f ms\n", (double)(uv_hrtime() - t0) / 1e6);

    /* A second change is noticed too (the watch stays armed). */
    exec_sql(other, "UPDATE tokens SET flag_reason = 'leak' WHERE token = 'x'");
    run_until(&loop, 2, 2000);
    CHECK_INT(calls, 2);

    /* watch_check alone sees nothing new. */
    watch_check(w);
    CHECK_INT(calls, 2);

    /* A burst of one-row commits, the loop served after each: one call per
     * 5 ms window, not one per commit. */
    enum { BURST = 40 };
    exec_sql(other, "PRAGMA synchronous = OFF"); /* commits of microseconds, no fsync */
    calls = 0;
    t0 = uv_hrtime();
    for (int i = 0; i < BURST; i++) {
        exec_sql(other, "INSERT INTO tokens(token) VALUES (hex(randomblob(16)))");
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    double burst_ms = (double)(uv_hrtime() - t0) / 1e6;
    run_until(&loop, 1, 2000);
    run_until(&loop, BURST, 50); /* any late call */
    printf("# %d commits in %.2f ms: %d calls\n", BURST, burst_ms, calls);
    CHECK(calls >= 1);
    CHECK(calls <= 2 + (int)(burst_ms / 5));
    /* The last commit of the burst was seen: nothing left to find. */
    int seen = calls;
    watch_check(w);
    CHECK_INT(calls, seen);
    /* Quiet again: the watches are back, and a lone commit is seen. */
    run_until(&loop, seen + 1, 400);
    exec_sql(other, "INSERT INTO tokens(token) VALUES ('after the burst')");
    run_until(&loop, seen + 1, 2000);
    CHECK_INT(calls, seen + 1);

    sqlite3_close(other);
    watch_close(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    db_close(db);
    CHECK_INT(uv_loop_close(&loop), 0);
    unlink(path);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    CHECK_INT(system(path), 0);
}

TEST_MAIN(CASE(test_other_connection_commit))

/* revoke: the engine against a real database and the stand-in endpoint,
 * with an injected wall clock: a clock jump neither revokes early nor
 * leaves a due token behind, an unsendable token fails once, and stop
 * drains cleanly. */
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "revoke.h"
#include "store.h"
#include "unit.h"

static int64_t fake_now_ms;

static int64_t fake_clock(void *data)
{
    (void)data;
    return fake_now_ms;
}

static pid_t endpoint_pid;
static char dir[] = "/tmp/revokerd-revoke-XXXXXX";

static int start_endpoint(const char *delay_ms)
{
    char port_file[300], log_file[300], buf[32] = "";
    const char *script = getenv("ENDPOINT");
    FILE *f = NULL;

    REQUIRE(script);
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    snprintf(log_file, sizeof(log_file), "%s/requests.jsonl", dir);
    endpoint_pid = fork();
    REQUIRE(endpoint_pid >= 0);
    if (endpoint_pid == 0) {
        execlp("python3", "python3", script, "--port", "0", "--port-file", port_file, "--log", log_file,
               "--delay-ms", delay_ms, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !(f = fopen(port_file, "r")); i++)
        usleep(10000);
    REQUIRE(f);
    REQUIRE(fgets(buf, sizeof(buf), f));
    fclose(f);
    return (int)strtol(buf, NULL, 10);
}

/* How many requests the endpoint saw for token. */
static int requests_for(const char *token)
{
    char path[300], line[4096], needle[128];
    int n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/requests.jsonl", dir);
    snprintf(needle, sizeof(needle), "\"token\":\"%s\"", token);
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

static const char *state_of(struct db *db, const char *subject)
{
    static char state[16];
    sqlite3_stmt *st;

    REQUIRE(sqlite3_prepare_v2(db->conn, "SELECT state FROM tokens WHERE subject = ?", -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
    snprintf(state, sizeof(state), "%s", sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : "?");
    sqlite3_finalize(st);
    return state;
}

static void run_for(uv_loop_t *loop, uint64_t ms, struct db *db, const char *subject, const char *want)
{
    uint64_t end = uv_now(loop) + ms;

    while (uv_now(loop) < end && !(want && !strcmp(state_of(db, subject), want))) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(2000);
        uv_update_time(loop);
    }
}

static bool stopped;

static void on_stopped(void *data)
{
    (void)data;
    stopped = true;
}

/* A fresh directory, an endpoint answering after delay_ms, a configuration
 * pointing at it, a loop and the database path in it, opened as a store
 * (*db: its connection). */
static void setup(const char *delay_ms, char *path, size_t path_size, struct config *cfg, uv_loop_t *loop,
                  struct store **store, struct db **db)
{
    char url[128];

    strcpy(dir, "/tmp/revokerd-revoke-XXXXXX");
    REQUIRE(mkdtemp(dir));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2/token/logout", start_endpoint(delay_ms));
    snprintf(path, path_size, "%s/t.db", dir);
    config_defaults(cfg);
    free(cfg->url);
    cfg->url = strdup(url);
    REQUIRE(uv_loop_init(loop) == 0);
    REQUIRE(store_open(loop, path, NULL, NULL, store, NULL, 0) == 0);
    *db = store_db(*store);
}

/* Stop the engine, close everything and remove the test's directory. */
static void finish(struct revoke *r, uv_loop_t *loop, struct store *store, struct config *cfg)
{
    char cmd[320];

    stopped = false;
    revoke_stop(r, on_stopped, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(stopped);
    store_close(store, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(loop), 0);
    config_free(cfg);
    kill(endpoint_pid, SIGTERM);
    waitpid(endpoint_pid, NULL, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

static void test_clock_jumps(void)
{
    char path[300], sql[512];
    struct config cfg;
    uv_loop_t loop;
    struct store *store;
    struct db *db;
    struct revoke *r;

    setup("0", path, sizeof(path), &cfg, &loop, &store, &db);
    cfg.retry_base_ms = 50;

    fake_now_ms = db_now_ms();
    snprintf(sql, sizeof(sql),
             "INSERT INTO tokens(token, subject, expires_at) VALUES "
             "('tok-due', 'due', %lld), ('tok-later', 'later', %lld)",
             (long long)(fake_now_ms / 1000 - 1), (long long)(fake_now_ms / 1000 + 3600));
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);

    REQUIRE(revoke_new(&loop, store, &cfg, NULL, &r) == 0);
    revoke_set_clock(r, fake_clock, NULL);
    run_for(&loop, 5000, db, "due", "revoked");
    CHECK_STR(state_of(db, "due"), "revoked");
    CHECK_STR(state_of(db, "later"), "active");
    CHECK_INT(requests_for("tok-due"), 1);

    /* The wall clock jumps back a day: a timer may fire "early" in wall
     * terms; kicking the engine must not send the token that is not due. */
    fake_now_ms -= 86400 * 1000LL;
    revoke_kick(r);
    run_for(&loop, 300, db, "later", "revoked");
    CHECK_STR(state_of(db, "later"), "active");
    CHECK_INT(requests_for("tok-later"), 0);

    /* One second before expiry in wall terms: still nothing. */
    fake_now_ms += 86400 * 1000LL + 3599 * 1000LL;
    revoke_kick(r);
    run_for(&loop, 300, db, "later", "revoked");
    CHECK_STR(state_of(db, "later"), "active");

    /* Then the clock jumps past the expiry: the token goes at once. */
    fake_now_ms += 2 * 3600 * 1000LL;
    revoke_kick(r);
    run_for(&loop, 5000, db, "later", "revoked");
    CHECK_STR(state_of(db, "later"), "revoked");
    CHECK_INT(requests_for("tok-later"), 1);

    /* A token that cannot go into a header is failed once, never retried. */
    REQUIRE(sqlite3_exec(db->conn, "INSERT INTO tokens(token, subject, flagged) VALUES ('has space', 'bad', 1)",
                         NULL, NULL, NULL) == SQLITE_OK);
    revoke_kick(r);
    run_for(&loop, 5000, db, "bad", "failed");
    CHECK_STR(state_of(db, "bad"), "failed");
    CHECK_INT(requests_for("has space"), 0);
    {
        sqlite3_stmt *st;
        REQUIRE(sqlite3_prepare_v2(db->conn,
                                   "SELECT group_concat(event, ',') FROM audit WHERE token_id = "
                                   "(SELECT id FROM tokens WHERE subject = 'bad')",
                                   -1, &st, NULL) == SQLITE_OK);
        REQUIRE(sqlite3_step(st) == SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(st, 0), "due,rejected");
        sqlite3_finalize(st);
    }

    finish(r, &loop, store, &cfg);
}

static int count_rows(struct db *db, const char *sql)
{
    sqlite3_stmt *st;
    int n;

    REQUIRE(sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Run the loop until a counter of the engine's stats reaches want (5 s at most);
 * what it reached. */
static unsigned run_until_stat(uv_loop_t *loop, struct revoke *r, size_t field, unsigned want)
{
    struct revoke_stats st;
    unsigned v = 0;

    for (int i = 0; i < 2500; i++) {
        revoke_get_stats(r, &st);
        memcpy(&v, (const char *)&st + field, sizeof(v));
        if (v == want)
            break;
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return v;
}

/* Answers that came in while another process held the database are committed
 * over several loop turns, a batch or two each, so the loop goes on answering
 * its sockets. (libuv 1.44 runs a 0 ms timer that restarts itself again in
 * the same pass: a flush timer doing so once made the whole backlog one turn.) */
static void test_backlog_spans_turns(void)
{
    enum { N = 400 };
    char path[300], sql[512];
    struct config cfg;
    uv_loop_t loop;
    sqlite3 *other;
    struct store *store;
    struct db *db;
    struct revoke *r;
    int done = 0, most = 0, turns = 0;

    setup("2000", path, sizeof(path), &cfg, &loop, &store, &db);
    cfg.concurrency = N;
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO tokens(token, subject, flagged) SELECT 'bk-' || i, 'bk-' || i, 1 FROM n",
             N);
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(revoke_new(&loop, store, &cfg, NULL, &r) == 0);

    /* Every request is out (the endpoint answers 2 s later): lock the
     * database and let the answers pile up. */
    CHECK_INT(run_until_stat(&loop, r, offsetof(struct revoke_stats, in_flight), N), N);
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(run_until_stat(&loop, r, offsetof(struct revoke_stats, uncommitted), N), N);
    REQUIRE(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);

    /* Released: one turn at a time. */
    while (done < N && turns < 5000) {
        int now;

        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
        now = count_rows(db, "SELECT count(*) FROM tokens WHERE state = 'revoked'");
        if (now - done > most)
            most = now - done;
        done = now;
        turns++;
    }
    CHECK_INT(done, N);
    printf("# %d outcomes committed in %d turns, at most %d in one\n", N, turns, most);
    CHECK(most > 0 && most < N);
    CHECK(most <= 2 * 128); /* the timer's batch and the check's */

    finish(r, &loop, store, &cfg);
}

/* The ids in the endpoint's log, in the order the requests arrived. */
static int logged_ids(const char *prefix, int *ids, int max)
{
    char path[300], line[4096], needle[64];
    const char *p;
    int n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/requests.jsonl", dir);
    snprintf(needle, sizeof(needle), "\"token\":\"%s", prefix);
    f = fopen(path, "r");
    REQUIRE(f);
    while (n < max && fgets(line, sizeof(line), f))
        if ((p = strstr(line, needle)))
            ids[n++] = atoi(p + strlen(needle));
    fclose(f);
    return n;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* A backlog of overdue rows whose retry times run against the table's
 * order (as after an outage, where they follow no order at all): the first
 * page goes in retry-time order, which is full and so reveals the backlog;
 * the rest go in id order, so that neighbours share table pages. */
static void test_backlog_in_id_order(void)
{
    enum { N = 1000, PAGE = 256 };
    static int ids[N + 1];
    char path[300], sql[512];
    struct config cfg;
    struct revoke_stats st = {0};
    uv_loop_t loop;
    uv_timer_t tick;
    struct store *store;
    struct db *db;
    struct revoke *r;
    uint64_t end;
    int n, descents = 0;

    setup("0", path, sizeof(path), &cfg, &loop, &store, &db);
    cfg.concurrency = 1; /* the endpoint sees the order of the queue */
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO tokens(id, token, subject, state, due_reason, due_at, next_attempt_at) "
             "SELECT i, 'ord-' || i, 'ord', 'pending', 'flagged', %lld - i, %lld - i FROM n",
             N, (long long)db_now_ms(), (long long)db_now_ms());
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(revoke_new(&loop, store, &cfg, NULL, &r) == 0);

    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    end = uv_hrtime() + 60 * 1000000000ull;
    while (st.revoked < N && uv_hrtime() < end) {
        uv_run(&loop, UV_RUN_ONCE);
        revoke_get_stats(r, &st);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    CHECK_INT(st.revoked, N);

    n = logged_ids("ord-", ids, N + 1);
    CHECK_INT(n, N);
    for (int i = PAGE + 1; i < n; i++)
        descents += ids[i] < ids[i - 1];
    printf("# %d overdue rows: the first sent %d, then %d, %d, %d ...; %d descents after the first page\n", N,
           ids[0], ids[PAGE], ids[PAGE + 1], ids[PAGE + 2], descents);
    CHECK_INT(ids[0], N);     /* the longest overdue first */
    CHECK_INT(ids[PAGE], 1);  /* then from the start of the table */
    CHECK_INT(descents, 0);

    finish(r, &loop, store, &cfg);
}

/* The requests logged before the first one for token (-1: none). */
static int position_of(const char *token)
{
    char path[300], line[4096], needle[128];
    int n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/requests.jsonl", dir);
    snprintf(needle, sizeof(needle), "\"token\":\"%s\"", token);
    f = fopen(path, "r");
    REQUIRE(f);
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, needle)) {
            fclose(f);
            return n;
        }
        n++;
    }
    fclose(f);
    return -1;
}

/* The lanes (lanes.h): a token requested while a backlog of expired ones
 * drains takes the next free slot, not its turn after the backlog; the
 * backlog then drains all the same. */
static void test_urgent_ahead_of_backlog(void)
{
    enum { N = 600 };
    char path[300], sql[512];
    struct config cfg;
    struct revoke_stats st = {0};
    uv_loop_t loop;
    uv_timer_t tick;
    struct store *store;
    struct db *db;
    struct revoke *r;
    uint64_t end, sent_at_kick;
    int pos;

    setup("5", path, sizeof(path), &cfg, &loop, &store, &db);
    cfg.concurrency = 2;
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO tokens(id, token, state, due_reason, due_at, next_attempt_at) "
             "SELECT i, 'exp-' || i, 'pending', 'expired', %lld, %lld FROM n",
             N, (long long)db_now_ms(), (long long)db_now_ms());
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(revoke_new(&loop, store, &cfg, NULL, &r) == 0);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    end = uv_hrtime() + 60 * 1000000000ull;
    while (st.sent < 50 && uv_hrtime() < end) {
        uv_run(&loop, UV_RUN_ONCE);
        revoke_get_stats(r, &st);
    }
    REQUIRE(st.sent >= 50 && st.queued > 100); /* the routine lane is full */
    snprintf(sql, sizeof(sql),
             "INSERT INTO tokens(id, token, state, due_reason, due_at, next_attempt_at) "
             "VALUES (%d, 'urgent-1', 'pending', 'requested', %lld, %lld)",
             N + 1, (long long)db_now_ms(), (long long)db_now_ms());
    REQUIRE(sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK);
    sent_at_kick = st.sent;
    revoke_kick(r);
    while (st.revoked < N + 1 && uv_hrtime() < end) {
        uv_run(&loop, UV_RUN_ONCE);
        revoke_get_stats(r, &st);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    CHECK_INT(st.revoked, N + 1);
    pos = position_of("urgent-1");
    printf("# urgent token: request %d of %d; %d had been sent when it was requested\n", pos + 1, N + 1,
           (int)sent_at_kick);
    CHECK(pos >= (int)sent_at_kick && pos <= (int)sent_at_kick + 1); /* the next free slot */
    CHECK_INT(requests_for("urgent-1"), 1);
    finish(r, &loop, store, &cfg);
}

TEST_MAIN(CASE(test_clock_jumps), CASE(test_backlog_spans_turns), CASE(test_backlog_in_id_order),
          CASE(test_urgent_ahead_of_backlog))

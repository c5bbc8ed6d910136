/* test_retention: the pruning steps on a real SQLite file and a real loop:
 * finished rows older than the span go and nothing else does, audit rows
 * go behind an anchor with the export file written first, each row once
 * (also after a torn last line), and the handles close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "audit.h"
#include "auditverify.h"
#include "config.h"
#include "retention.h"
#include "store.h"
#include "unit.h"
#include "unit_sql.h"

static char dir[64], path[128], export_path[128];

static int64_t sql_int(struct store *s, const char *sql)
{
    return unit_sql_int(store_db(s)->conn, sql);
}

static void exec(struct store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(store_db(s)->conn, sql, NULL, NULL, &msg) != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg);
    REQUIRE(msg == NULL);
}

/* Ten finished rows long ago (one failed with its secret), and one of each
 * state that stays; 20 old audit rows and 2 new ones, by the audit module. */
static void seed(struct store *s)
{
    int64_t old = db_now_ms() - 3600 * 1000;
    char sql[512];
    snprintf(
        sql, sizeof(sql),
        "INSERT INTO tokens (token, state, finished_at) SELECT NULL, 'revoked', %lld FROM "
        "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 9) SELECT i FROM n);"
        "INSERT INTO tokens (token, state, finished_at) VALUES ('failed-secret-0123456789', 'failed', %lld);"
        "INSERT INTO tokens (token, state) VALUES ('a', 'active'), ('p', 'pending'), ('h', 'held');"
        "INSERT INTO tokens (token, state, finished_at) VALUES (NULL, 'revoked', %lld);",
        (long long)old, (long long)old, (long long)db_now_ms());
    exec(s, sql);
    REQUIRE(store_begin(s, STORE_WRITE_NOW) == 0);
    struct audit *a;
    REQUIRE(audit_open(store_db(s), &a) == 0);
    for (int i = 0; i < 22; i++) {
        struct audit_event e = {
            i < 20 ? old + i : db_now_ms(), i + 1, "0123456789abcdef", AUDIT_DUE, 0, 0, "expired", -1};
        REQUIRE(audit_append(a, &e) == 0);
    }
    audit_close(a);
    REQUIRE(store_commit(s) == 0);
}

static void run_until(uv_loop_t *loop, struct store *s, const char *sql, int64_t want)
{
    for (int i = 0; i < 5000 && sql_int(s, sql) != want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    CHECK_INT(sql_int(s, sql), want);
}

static int lines_of(const char *p, int64_t *ret_first, int64_t *ret_last)
{
    FILE *f = fopen(p, "r");
    char line[2048];
    int n = 0;
    long long seq, prev = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        REQUIRE(sscanf(line, "{\"seq\":%lld,", &seq) == 1);
        CHECK(seq == prev + 1 || prev == 0);
        if (n++ == 0)
            *ret_first = seq;
        prev = seq;
    }
    fclose(f);
    *ret_last = prev;
    return n;
}

static void closed_cb(void *data)
{
    (*(int *)data)++;
}

static void test_prunes_what_is_old_enough(void)
{
    struct store *s;
    struct retention *r;
    struct config cfg;
    uv_loop_t loop;
    char err[256];
    int closed = 0;
    int64_t first = 0, last = 0;

    snprintf(dir, sizeof(dir), "/tmp/test_retention.XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/r.db", dir);
    snprintf(export_path, sizeof(export_path), "%s/export.jsonl", dir);
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(store_open(&loop, path, NULL, NULL, &s, err, sizeof(err)) == 0);
    seed(s);
    /* A torn line after a row already written: cut, row 1 not written
     * again. The line's hash is row 1's: a file of this log. */
    char hash[AUDIT_HASH_LEN + 1];
    REQUIRE(audit_hash_at(store_db(s), 1, hash) == 1);
    FILE *f = fopen(export_path, "w");
    REQUIRE(f != NULL);
    fprintf(f, "{\"seq\":1,\"at\":\"x\",\"hash\":\"%s\"}\n{\"seq\":2,\"a", hash);
    fclose(f);

    config_defaults(&cfg);
    cfg.retention_tokens_ms = 60 * 1000;
    cfg.retention_audit_ms = 60 * 1000;
    cfg.retention_batch = 3; /* several transactions */
    free(cfg.retention_audit_export);
    cfg.retention_audit_export = strdup(export_path);
    REQUIRE(retention_new(&loop, s, &cfg, &r) == 0);

    run_until(&loop, s,
              "SELECT count(*) FROM tokens WHERE finished_at < strftime('%s', 'now') * 1000 - 60000", 0);
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens"), 4); /* active, pending, held, the recent one */
    CHECK_INT(sql_int(s, "SELECT count(*) FROM tokens WHERE state IN ('active', 'pending', 'held')"), 3);
    run_until(&loop, s, "SELECT min(seq) FROM audit", 21);
    CHECK_INT(sql_int(s, "SELECT first_seq FROM audit_anchor"), 21);
    CHECK_INT(sql_int(s, "SELECT count(*) FROM audit_anchor"), 1);
    int64_t rows = 0;
    CHECK_INT(auditverify_chain(store_db(s), &rows, NULL, NULL, 0), 0);
    CHECK_INT(rows, 2);
    CHECK_INT(lines_of(export_path, &first, &last), 20);
    CHECK_INT(first, 1);
    CHECK_INT(last, 20);
    struct store_metrics m;
    store_get_metrics(s, &m);
    CHECK_INT(m.pruned_tokens, 10);
    CHECK_INT(m.pruned_audit, 20);
    CHECK(m.db_size_bytes > 0);

    retention_close(r, closed_cb, &closed);
    store_close(s, closed_cb, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(closed, 2);
    CHECK_INT(uv_loop_close(&loop), 0);
    config_free(&cfg);
    unlink(export_path);
    char p[160];
    static const char *const suffix[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

TEST_MAIN(CASE(test_prunes_what_is_old_enough))

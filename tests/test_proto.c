/* test_proto: every request and every bad input of the control protocol,
 * against a real database file (a store without a loop, no engine). After each
 * request the database is checked: a row and its audit row after ok:true,
 * nothing written after an error. No reply ever contains a token. */
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auditverify.h"
#include "db.h"
#include "proto.h"
#include "secret.h"
#include "store.h"
#include "unit.h"
#include "unit_sql.h"

static char dir[64];
static char path[128];
static struct store *store;
static struct db *db;
static struct proto_env env;

static uint64_t fixed_uptime(const struct proto_env *e)
{
    (void)e;
    return 5400;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_proto.XXXXXX");
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/revokerd.db", dir);
    REQUIRE(store_open(NULL, path, NULL, NULL, &store, NULL, 0) == 0);
    db = store_db(store);
    env = (struct proto_env){.store = store, .revoke = NULL, .uptime_ms = fixed_uptime};
}

static void teardown(void)
{
    char wal[160], shm[160];
    store_close(store, NULL, NULL);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    unlink(path);
    unlink(wal);
    unlink(shm);
    rmdir(dir);
}

static int64_t sql_int(const char *sql)
{
    return unit_sql_int(db->conn, sql);
}

static void sql_text(const char *sql, char *buf, size_t len)
{
    sqlite3_stmt *st;
    buf[0] = '\0';
    REQUIRE(sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static void sql_exec(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sql failed: %s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        exit(1);
    }
}

static int64_t insert_token(const char *token, const char *subject, const char *state)
{
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(db->conn,
                               "INSERT INTO tokens (token, subject, state) VALUES (?1, ?2, ?3)",
                               -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    if (subject)
        sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
    REQUIRE(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    return sqlite3_last_insert_rowid(db->conn);
}

/* Everything a request could change, as one string. */
static char *snapshot(void)
{
    char *s = NULL;
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(
                db->conn,
                "SELECT (SELECT count(*) || ':' || coalesce(group_concat(id || state || "
                "coalesce(token, '-') || coalesce(subject, '-') || coalesce(flag_reason, '-') || "
                "attempts || coalesce(next_attempt_at, '-') || coalesce(last_event, '-'), ','), '') "
                "FROM tokens) || '|' || (SELECT count(*) || ':' || coalesce(max(seq), 0) FROM audit)",
                -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    s = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    REQUIRE(s);
    return s;
}

/* Sends one line (len bytes), checks the reply is one JSON object with a
 * boolean "ok" and no newline, and returns it parsed. */
static json_t *call_n(const char *line, size_t len, char **ret_text)
{
    char *text = proto_handle(&env, line, len);
    REQUIRE(text);
    CHECK(strchr(text, '\n') == NULL);
    json_error_t je;
    json_t *reply = json_loads(text, 0, &je);
    if (!reply)
        fprintf(stderr, "not JSON: %s\n", text);
    REQUIRE(json_is_object(reply));
    REQUIRE(json_is_boolean(json_object_get(reply, "ok")));
    if (ret_text)
        *ret_text = text;
    else
        free(text);
    return reply;
}

static json_t *call(const char *line)
{
    return call_n(line, strlen(line), NULL);
}

static bool ok_of(json_t *r)
{
    return json_is_true(json_object_get(r, "ok"));
}

static const char *str_of(json_t *r, const char *key)
{
    const char *s = json_string_value(json_object_get(r, key));
    return s ? s : "(none)";
}

static long long int_of(json_t *r, const char *key)
{
    json_t *v = json_object_get(r, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -999;
}

static void test_ping(void)
{
    json_t *r = call("{\"op\":\"ping\"}");
    CHECK(ok_of(r));
    CHECK(json_is_string(json_object_get(r, "version")));
    CHECK_INT(int_of(r, "uptime_s"), 5);
    json_decref(r);
    /* "\r" is the client's line end, not ours: ctl strips it; proto sees JSON
     * whitespace around the object, which is fine. */
    r = call("  {\"op\" : \"ping\"}  ");
    CHECK(ok_of(r));
    json_decref(r);
}

static void test_revoke_token(void)
{
    const char *req = "{\"op\":\"revoke\",\"token\":\"tok-SECRET-new-1\",\"subject\":\"alice\","
                      "\"reason\":\"logout\"}";
    char *text;
    int64_t audit_before = sql_int("SELECT count(*) FROM audit");

    json_t *r = call_n(req, strlen(req), &text);
    CHECK(ok_of(r));
    CHECK_STR(str_of(r, "state"), "pending");
    long long id = int_of(r, "id");
    CHECK(id > 0);
    CHECK(strstr(text, "tok-SECRET") == NULL);
    free(text);
    json_decref(r);

    char q[256], buf[128];
    snprintf(q, sizeof(q), "SELECT state || '/' || subject || '/' || flag_reason || '/' || "
                           "due_reason FROM tokens WHERE id = %lld", id);
    sql_text(q, buf, sizeof(buf));
    CHECK_STR(buf, "pending/alice/logout/requested");
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE token = 'tok-SECRET-new-1'"), 1);
    CHECK_INT(sql_int("SELECT count(*) FROM audit"), audit_before + 1);
    snprintf(q, sizeof(q), "SELECT event || '/' || detail || '/' || token_id FROM audit "
                           "ORDER BY seq DESC LIMIT 1");
    sql_text(q, buf, sizeof(buf));
    char want[64];
    snprintf(want, sizeof(want), "due/requested/%lld", id);
    CHECK_STR(buf, want);
    /* The fingerprint is the secret's, the row is found again by it. */
    uint8_t digest[SECRET_SHA256_LEN];
    char fp[SECRET_FP_LEN + 1];
    secret_sha256("tok-SECRET-new-1", strlen("tok-SECRET-new-1"), digest);
    secret_fingerprint(digest, fp);
    snprintf(q, sizeof(q), "SELECT fingerprint FROM audit ORDER BY seq DESC LIMIT 1");
    sql_text(q, buf, sizeof(buf));
    CHECK_STR(buf, fp);

    /* The same token again: the same row, no duplicate, no new audit row. */
    r = call(req);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "id"), id);
    CHECK_STR(str_of(r, "state"), "pending");
    json_decref(r);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE fingerprint = (SELECT fingerprint FROM "
                      "tokens WHERE token = 'tok-SECRET-new-1')"), 1);
    CHECK_INT(sql_int("SELECT count(*) FROM audit"), audit_before + 1);

    /* A row an application inserted (unhashed, active) is found, not duplicated. */
    int64_t app = insert_token("tok-SECRET-app-2", "bob", "active");
    r = call("{\"op\":\"revoke\",\"token\":\"tok-SECRET-app-2\"}");
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "id"), app);
    CHECK_STR(str_of(r, "state"), "pending");
    json_decref(r);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE token = 'tok-SECRET-app-2'"), 1);

    /* Already revoked: reported as such, unchanged. */
    int64_t done = insert_token("tok-SECRET-done-3", NULL, "revoked");
    char *before = snapshot();
    r = call("{\"op\":\"revoke\",\"token\":\"tok-SECRET-done-3\"}");
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "id"), done);
    CHECK_STR(str_of(r, "state"), "revoked");
    json_decref(r);
    free(before);
}

static void test_revoke_token_limits(void)
{
    /* 8192 bytes is the limit and fits; 8193 is refused, nothing written. */
    size_t n = SECRET_MAX_LEN;
    char *line = malloc(n + 64);
    REQUIRE(line);
    int off = snprintf(line, 64, "{\"op\":\"revoke\",\"token\":\"");
    memset(line + off, 'k', n);
    snprintf(line + off + n, 64, "\"}");
    json_t *r = call(line);
    CHECK(ok_of(r));
    CHECK_INT(sql_int("SELECT max(length(token)) FROM tokens"), SECRET_MAX_LEN);
    json_decref(r);

    char *before = snapshot();
    line = realloc(line, n + 80);
    REQUIRE(line);
    memset(line + off, 'q', n + 1);
    snprintf(line + off + n + 1, 64, "\"}");
    char *text;
    r = call_n(line, strlen(line), &text);
    CHECK(!ok_of(r));
    CHECK_STR(str_of(r, "error"), "field 'token' is 8193 bytes long; at most 8192 are allowed");
    CHECK(strstr(text, "qqqq") == NULL);
    char *after = snapshot();
    CHECK_STR(after, before);
    free(after);
    free(before);
    free(text);
    free(line);
    json_decref(r);
}

static void test_revoke_id(void)
{
    int64_t id = insert_token("tok-SECRET-id-1", "carl", "active");
    int64_t audit_before = sql_int("SELECT count(*) FROM audit");
    char req[128], q[128], buf[64];

    snprintf(req, sizeof(req), "{\"op\":\"revoke\",\"id\":%lld,\"reason\":\"compromised\"}",
             (long long)id);
    json_t *r = call(req);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 1);
    CHECK_INT(json_array_size(json_object_get(r, "ids")), 1);
    CHECK_INT(json_integer_value(json_array_get(json_object_get(r, "ids"), 0)), id);
    CHECK_STR(str_of(r, "state"), "pending");
    json_decref(r);
    snprintf(q, sizeof(q), "SELECT state || '/' || flag_reason FROM tokens WHERE id = %lld",
             (long long)id);
    sql_text(q, buf, sizeof(buf));
    CHECK_STR(buf, "pending/compromised");
    CHECK_INT(sql_int("SELECT count(*) FROM audit"), audit_before + 1);

    /* Again: nothing to do, said so. */
    char *before = snapshot();
    r = call(req);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 0);
    CHECK_INT(json_array_size(json_object_get(r, "ids")), 0);
    CHECK_STR(str_of(r, "state"), "pending");
    json_decref(r);
    char *after = snapshot();
    CHECK_STR(after, before);
    free(after);

    /* No such id. */
    r = call("{\"op\":\"revoke\",\"id\":999999}");
    CHECK(!ok_of(r));
    CHECK_STR(str_of(r, "error"), "no token with id 999999");
    json_decref(r);
    after = snapshot();
    CHECK_STR(after, before);
    free(after);
    free(before);
}

static void test_revoke_subject(void)
{
    int64_t a = insert_token("tok-SECRET-s1", "dora", "active");
    int64_t b = insert_token("tok-SECRET-s2", "dora", "active");
    int64_t c = insert_token("tok-SECRET-s3", "dora", "revoked");
    int64_t other = insert_token("tok-SECRET-s4", "doris", "active");
    int64_t audit_before = sql_int("SELECT count(*) FROM audit");
    (void)c;

    json_t *r = call("{\"op\":\"revoke\",\"subject\":\"dora\",\"reason\":\"offboarded\"}");
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 2);
    json_t *ids = json_object_get(r, "ids");
    CHECK_INT(json_array_size(ids), 2);
    int64_t sum = 0;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) sum += json_integer_value(v);
    CHECK_INT(sum, a + b);
    json_decref(r);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE subject = 'dora' AND state = 'pending'"), 2);
    CHECK_INT(sql_int("SELECT count(*) FROM audit"), audit_before + 2);
    char q[128];
    snprintf(q, sizeof(q), "SELECT state = 'active' FROM tokens WHERE id = %lld", (long long)other);
    CHECK_INT(sql_int(q), 1);

    char *before = snapshot();
    r = call("{\"op\":\"revoke\",\"subject\":\"nobody-here\"}");
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 0);
    CHECK_INT(json_array_size(json_object_get(r, "ids")), 0);
    json_decref(r);
    char *after = snapshot();
    CHECK_STR(after, before);
    free(after);
    free(before);
}

static void test_status(void)
{
    int64_t id = insert_token("tok-SECRET-st-1", "erin", "active");
    char req[96], q[128];
    snprintf(q, sizeof(q), "UPDATE tokens SET expires_at = 1893456000 WHERE id = %lld",
             (long long)id);
    sql_exec(q);

    snprintf(req, sizeof(req), "{\"op\":\"status\",\"id\":%lld}", (long long)id);
    json_t *r = call(req);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "id"), id);
    CHECK_STR(str_of(r, "state"), "active");
    CHECK_STR(str_of(r, "subject"), "erin");
    CHECK_STR(str_of(r, "expires_at"), "2030-01-01T00:00:00.000Z");
    CHECK(json_is_null(json_object_get(r, "next_attempt_at")));
    CHECK(json_is_null(json_object_get(r, "last_event")));
    CHECK(json_is_null(json_object_get(r, "last_error")));
    CHECK(json_is_null(json_object_get(r, "fingerprint"))); /* never hashed yet */
    CHECK(json_is_null(json_object_get(r, "reason")));
    CHECK_INT(int_of(r, "attempts"), 0);
    json_decref(r);

    /* After a revoke request: pending, due now, fingerprint known, the
     * reason given with it. */
    snprintf(req, sizeof(req), "{\"op\":\"revoke\",\"id\":%lld,\"reason\":\"offboarded\"}", (long long)id);
    json_decref(call(req));
    snprintf(req, sizeof(req), "{\"op\":\"status\",\"id\":%lld}", (long long)id);
    r = call(req);
    CHECK_STR(str_of(r, "state"), "pending");
    CHECK_STR(str_of(r, "last_event"), "due");
    const char *next = str_of(r, "next_attempt_at");
    CHECK(strlen(next) == 24 && next[10] == 'T' && next[23] == 'Z');
    CHECK_INT(strlen(str_of(r, "fingerprint")), SECRET_FP_LEN);
    CHECK(json_is_string(json_object_get(r, "due_at")));
    CHECK_STR(str_of(r, "reason"), "offboarded");
    json_decref(r);

    /* An application's subject and flag_reason that are not UTF-8: '?'
     * for those bytes, not a failed reply. */
    snprintf(q, sizeof(q), "UPDATE tokens SET subject = 'er' || x'ff' || 'in', "
             "flag_reason = 'caf' || x'c3' WHERE id = %lld", (long long)id);
    sql_exec(q);
    snprintf(req, sizeof(req), "{\"op\":\"status\",\"id\":%lld}", (long long)id);
    r = call(req);
    CHECK(ok_of(r));
    CHECK_STR(str_of(r, "subject"), "er?in");
    CHECK_STR(str_of(r, "reason"), "caf?");
    json_decref(r);

    r = call("{\"op\":\"status\",\"id\":424242}");
    CHECK(!ok_of(r));
    CHECK_STR(str_of(r, "error"), "no token with id 424242");
    json_decref(r);
}

static void test_retry(void)
{
    int64_t f1 = insert_token("tok-SECRET-f1", NULL, "failed");
    int64_t f2 = insert_token("tok-SECRET-f2", NULL, "failed");
    int64_t f3 = insert_token("tok-SECRET-f3", NULL, "failed");
    int64_t p = insert_token("tok-SECRET-p1", NULL, "pending");
    char req[96], q[160];
    sql_exec("UPDATE tokens SET attempts = 8, last_error = 'HTTP 500' WHERE state = 'failed'");

    int64_t audit_before = sql_int("SELECT count(*) FROM audit");
    snprintf(req, sizeof(req), "{\"op\":\"retry\",\"id\":%lld}", (long long)f1);
    json_t *r = call(req);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 1);
    json_decref(r);
    snprintf(q, sizeof(q), "SELECT state || '/' || attempts FROM tokens WHERE id = %lld",
             (long long)f1);
    char buf[64];
    sql_text(q, buf, sizeof(buf));
    CHECK_STR(buf, "pending/0");
    CHECK_INT(sql_int("SELECT count(*) FROM audit"), audit_before + 1);
    sql_text("SELECT event FROM audit ORDER BY seq DESC LIMIT 1", buf, sizeof(buf));
    CHECK_STR(buf, "requeued");

    /* Not failed: refused, explained, nothing written. */
    char *before = snapshot();
    snprintf(req, sizeof(req), "{\"op\":\"retry\",\"id\":%lld}", (long long)p);
    r = call(req);
    CHECK(!ok_of(r));
    char want[128];
    snprintf(want, sizeof(want),
             "token %lld is pending, not failed; only failed tokens can be retried", (long long)p);
    CHECK_STR(str_of(r, "error"), want);
    json_decref(r);
    r = call("{\"op\":\"retry\",\"id\":777777}");
    CHECK(!ok_of(r));
    CHECK_STR(str_of(r, "error"), "no token with id 777777");
    json_decref(r);
    char *after = snapshot();
    CHECK_STR(after, before);
    free(after);
    free(before);

    /* Every failed token. */
    int64_t failed_now = sql_int("SELECT count(*) FROM tokens WHERE state = 'failed'");
    CHECK(failed_now >= 2);
    r = call("{\"op\":\"retry\",\"failed\":true}");
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), failed_now);
    json_decref(r);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE state = 'failed'"), 0);
    snprintf(q, sizeof(q), "SELECT count(*) FROM tokens WHERE id IN (%lld, %lld) AND state = 'pending'",
             (long long)f2, (long long)f3);
    CHECK_INT(sql_int(q), 2);

    r = call("{\"op\":\"retry\",\"failed\":true}");
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 0);
    json_decref(r);
}

static void test_stats(void)
{
    json_t *r = call("{\"op\":\"stats\"}");
    CHECK(ok_of(r));
    json_t *st = json_object_get(r, "states");
    CHECK_INT(int_of(st, "active"), sql_int("SELECT count(*) FROM tokens WHERE state = 'active'"));
    CHECK_INT(int_of(st, "pending"), sql_int("SELECT count(*) FROM tokens WHERE state = 'pending'"));
    CHECK_INT(int_of(st, "revoked"), sql_int("SELECT count(*) FROM tokens WHERE state = 'revoked'"));
    CHECK_INT(int_of(st, "failed"), sql_int("SELECT count(*) FROM tokens WHERE state = 'failed'"));
    CHECK(int_of(st, "pending") > 0);
    CHECK_INT(int_of(r, "in_flight"), 0);
    CHECK_INT(int_of(r, "queued"), 0);
    CHECK_INT(int_of(json_object_get(r, "totals"), "revoked"), 0);
    CHECK_STR(str_of(json_object_get(r, "endpoint"), "health"), "unknown");
    CHECK_INT(int_of(r, "uptime_s"), 5);
    json_decref(r);
}

struct bad_case {
    const char *line;
    size_t len;        /* 0: strlen */
    const char *error; /* the reply's error starts with this */
    const char *secret; /* must not appear in the reply; NULL: none */
};

#define REASON_256 "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr" "rrrrrrrrrrrrrrrr"

static void test_bad_input(void)
{
    static const struct bad_case cases[] = {
        {"{", 0, "invalid JSON at line 1, column 1 (byte 1): the line ends before the JSON value is complete",
         NULL},
        {"not json", 0, "invalid JSON at line 1, column 3 (byte 3): invalid token", NULL},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET-cut", 0,
         "invalid JSON at line 1, column 38 (byte 38): the line ends before the JSON value is complete",
         "tok-SECRET"},
        {"{\"op\":\"revoke\",\"token\":\"sec\"x}", 0, "invalid JSON at line 1, column 29", "sec\""},
        {"{\"op\":\"ping\"} {\"op\":\"ping\"}", 0,
         "invalid JSON at line 1, column 15 (byte 15): unexpected data after the JSON value", NULL},
        {"[1,2]", 0, "a request must be a JSON object such as {\"op\":\"ping\"}, got an array", NULL},
        {"\"tok-SECRET-bare\"", 0, "a request must be a JSON object such as {\"op\":\"ping\"}, got a string",
         "tok-SECRET"},
        {"42", 0, "a request must be a JSON object such as {\"op\":\"ping\"}, got an integer", NULL},
        {"null", 0, "a request must be a JSON object such as {\"op\":\"ping\"}, got null", NULL},
        {"", 0, "empty request", NULL},
        {"   ", 0, "empty request", NULL},
        {"{}", 0, "missing field 'op' (one of: revoke, status, retry, stats, metrics, ping, track, hold, release, drop, queue, shape)", NULL},
        {"{\"op\":5}", 0, "field 'op' must be a string (one of: revoke, status, retry, stats, metrics, ping, track, hold, release, drop, queue, shape), got an integer", NULL},
        {"{\"op\":\"fly\"}", 0, "unknown op 'fly'; valid ops: revoke, status, retry, stats, metrics, ping, track, hold, release, drop, queue, shape", NULL},
        {"{\"op\":\"tok-SECRET-as-op-0123456789\"}", 0, "unknown op; valid ops: revoke, status, retry, stats, metrics, ping, track, hold, release, drop, queue, shape", "tok-SECRET"},
        {"{\"op\":\"revoke\"}", 0, "revoke needs one of 'token' (a secret), 'id' (a token id) or 'subject'", NULL},
        {"{\"op\":\"revoke\",\"id\":\"42\"}", 0, "field 'id' must be a positive integer, got a string", NULL},
        {"{\"op\":\"revoke\",\"id\":0}", 0, "field 'id' must be a positive integer, got 0", NULL},
        {"{\"op\":\"revoke\",\"id\":-3}", 0, "field 'id' must be a positive integer, got -3", NULL},
        {"{\"op\":\"revoke\",\"id\":1.5}", 0,
         "field 'id' must be a positive integer, got a number with a fraction", NULL},
        {"{\"op\":\"revoke\",\"id\":null}", 0, "field 'id' must be a positive integer, got null", NULL},
        {"{\"op\":\"revoke\",\"token\":\"\"}", 0, "field 'token' must not be empty", NULL},
        {"{\"op\":\"revoke\",\"token\":123}", 0, "field 'token' must be a string, got an integer", NULL},
        {"{\"op\":\"revoke\",\"token\":[\"tok-SECRET-arr\"]}", 0,
         "field 'token' must be a string, got an array", "tok-SECRET"},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET-x\",\"id\":1}", 0,
         "revoke takes exactly one of 'token', 'id' or 'subject'", "tok-SECRET"},
        {"{\"op\":\"revoke\",\"id\":1,\"subject\":\"x\"}", 0,
         "revoke takes exactly one of 'token', 'id' or 'subject'", NULL},
        {"{\"op\":\"revoke\",\"token\":\"tok SECRET\"}", 0,
         "field 'token' must be printable ASCII without spaces or control characters", "SECRET"},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET\\r\\nX-Evil: 1\"}", 0,
         "field 'token' must be printable ASCII", "tok-SECRET"},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET-\\u00e9\"}", 0, "field 'token' must be printable ASCII",
         "tok-SECRET"},
        {"{\"op\":\"revoke\",\"tokn\":\"tok-SECRET-typo\"}", 0,
         "unknown field 'tokn' for op revoke (allowed: token, id, subject, reason)", "tok-SECRET"},
        {"{\"op\":\"revoke\",\"tok-SECRET-key-0123456789abcdef\":1}", 0, "unknown field for op revoke",
         "tok-SECRET"},
        {"{\"op\":\"ping\",\"extra\":1}", 0, "unknown field 'extra' for op ping (allowed: none)", NULL},
        {"{\"op\":\"stats\",\"full\":true}", 0, "unknown field 'full' for op stats", NULL},
        {"{\"op\":\"metrics\"}", 0,
         "metrics are not available: revokerd could not open its database read-only", NULL},
        {"{\"op\":\"metrics\",\"format\":\"openmetrics\"}", 0,
         "unknown field 'format' for op metrics (allowed: none)", NULL},
        {"{\"op\":\"status\"}", 0, "status needs 'id' (a positive integer)", NULL},
        {"{\"op\":\"status\",\"id\":true}", 0, "field 'id' must be a positive integer, got a boolean", NULL},
        {"{\"op\":\"status\",\"id\":99999999999999999999}", 0, "invalid JSON at line 1, column", NULL},
        {"{\"op\":\"retry\"}", 0, "retry takes exactly one of 'id' (a token id) or 'failed': true", NULL},
        {"{\"op\":\"retry\",\"id\":1,\"failed\":true}", 0, "retry takes exactly one of", NULL},
        {"{\"op\":\"retry\",\"failed\":false}", 0, "field 'failed' must be true, got false", NULL},
        {"{\"op\":\"retry\",\"failed\":\"yes\"}", 0, "field 'failed' must be true, got a string", NULL},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET-a\",\"token\":\"tok-SECRET-b\"}", 0,
         "invalid JSON at line 1, column 45 (byte 45): duplicate key in object", "tok-SECRET"},
        {"{\"op\":\"ping\",\"op\":\"ping\"}", 0,
         "invalid JSON at line 1, column 17 (byte 17): duplicate key in object", NULL},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET\\u0000tail\"}", 0, "invalid JSON at line 1, column",
         "tok-SECRET"},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET-nul\0tail\"}", 46, "invalid JSON at line 1, column",
         "tok-SECRET"},
        {"{\"op\":\"ping\"}\0garbage", 21, "invalid JSON at line 1, column", NULL},
        {"\xff\xfe\x00\x01\x80garbage", 12, "invalid JSON at line 1, column 0 (byte 0): invalid UTF-8", NULL},
        {"{\"op\":\"revoke\",\"subject\":\"\"}", 0, "field 'subject' must not be empty", NULL},
        {"{\"op\":\"revoke\",\"id\":1,\"reason\":5}", 0, "field 'reason' must be a string, got an integer",
         NULL},
        {"{\"op\":\"revoke\",\"token\":\"tok-SECRET-ok\",\"subject\":7}", 0,
         "field 'subject' must be a string, got an integer", "tok-SECRET"},
        {"{\"op\":\"hold\"}", 0, "hold takes exactly one of 'id' (a token id) or 'subject'", NULL},
        {"{\"op\":\"hold\",\"id\":1,\"subject\":\"alice\"}", 0, "hold takes exactly one of 'id' (a token id) or 'subject'", NULL},
        {"{\"op\":\"hold\",\"id\":1,\"reason\":\"" REASON_256 "\"}", 0, "field 'reason' is 256 bytes long; at most 255 are allowed", NULL},
        {"{\"op\":\"hold\",\"id\":1,\"all\":true}", 0, "unknown field 'all' for op hold (allowed: id, subject, reason)", NULL},
        {"{\"op\":\"hold\",\"id\":\"1\"}", 0, "field 'id' must be a positive integer, got a string", NULL},
        {"{\"op\":\"release\"}", 0, "release takes exactly one of 'id' (a token id), 'subject' or 'all': true", NULL},
        {"{\"op\":\"release\",\"id\":1,\"all\":true}", 0, "release takes exactly one of", NULL},
        {"{\"op\":\"release\",\"id\":1,\"subject\":\"alice\"}", 0, "release takes exactly one of", NULL},
        {"{\"op\":\"release\",\"all\":false}", 0, "field 'all' must be true, got false", NULL},
        {"{\"op\":\"release\",\"id\":1,\"reason\":\"x\"}", 0, "unknown field 'reason' for op release (allowed: id, subject, all)", NULL},
        {"{\"op\":\"drop\",\"id\":1}", 0, "drop needs 'id' (a token id) and 'reason' (recorded in the audit log)", NULL},
        {"{\"op\":\"drop\",\"reason\":\"gone\"}", 0, "drop needs 'id' (a token id) and 'reason'", NULL},
        {"{\"op\":\"drop\",\"id\":1,\"reason\":\"\"}", 0, "field 'reason' must not be empty", NULL},
        {"{\"op\":\"drop\",\"id\":1,\"reason\":\"" REASON_256 "\"}", 0, "field 'reason' is 256 bytes long; at most 255 are allowed", NULL},
        {"{\"op\":\"drop\",\"subject\":\"alice\",\"reason\":\"gone\"}", 0, "unknown field 'subject' for op drop (allowed: id, reason)", NULL},
    };
    char *before = snapshot();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *c = &cases[i];
        char *text;
        json_t *r = call_n(c->line, c->len ? c->len : strlen(c->line), &text);
        const char *e = str_of(r, "error");
        if (ok_of(r) || strncmp(e, c->error, strlen(c->error)) != 0) {
            fprintf(stderr, "case %zu: got %s\n  expected error starting with: %s\n", i, text,
                    c->error);
            unit_failures++;
        }
        if (c->secret && strstr(text, c->secret)) {
            fprintf(stderr, "case %zu: reply echoes the secret: %s\n", i, text);
            unit_failures++;
        }
        free(text);
        json_decref(r);
        char *after = snapshot();
        if (strcmp(after, before) != 0) {
            fprintf(stderr, "case %zu: the database changed after an error\n", i);
            unit_failures++;
        }
        free(after);
    }
    free(before);

    /* Nested deeper than jansson's limit: an error, not a crash. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth);
    REQUIRE(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    json_t *r = call_n(deep, 2 * depth, NULL);
    CHECK(!ok_of(r));
    CHECK(strncmp(str_of(r, "error"), "invalid JSON", 12) == 0);
    json_decref(r);
    free(deep);
}


/* ---- hold, release, drop ---- */

#define UID 1234

static json_t *call_as(const char *line, char **ret_text)
{
    char *text = proto_handle_as(&env, UID, line, strlen(line));
    REQUIRE(text);
    json_t *reply = json_loads(text, 0, NULL);
    REQUIRE(json_is_object(reply));
    if (ret_text)
        *ret_text = text;
    else
        free(text);
    return reply;
}

struct hold_case {
    const char *state;  /* of the row inserted, its token 'tok-SECRET-hold-<i>' */
    const char *setup;  /* more SQL on it (%lld: its id), or NULL */
    const char *line;   /* the request (%lld: its id) */
    const char *error;  /* NULL: ok:true, count 1, ids [id] */
    const char *after;  /* "state/attempts/last_event/due_reason/token?" after */
    const char *detail; /* the new audit row's "event/uid detail"; NULL: none written */
};

/* Each op's transitions and its errors that name the state: one row each. */
static void test_hold_transitions(void)
{
    static const struct hold_case cases[] = {
        {"active", NULL, "{\"op\":\"hold\",\"id\":%lld,\"reason\":\"leak\"}", NULL, "held/0/held/-/token",
         "held/uid 1234 (was active): leak"},
        {"pending",
         "UPDATE tokens SET due_reason = 'expired', due_at = 5, next_attempt_at = 7, attempts = 2 WHERE id = "
         "%lld",
         "{\"op\":\"hold\",\"id\":%lld}", NULL, "held/2/held/expired/token", "held/uid 1234 (was pending)"},
        {"revoked", NULL, "{\"op\":\"hold\",\"id\":%lld}",
         "token %lld is revoked; only active or pending tokens can be held", "revoked/0/-/-/token", NULL},
        {"failed", NULL, "{\"op\":\"hold\",\"id\":%lld}",
         "token %lld is failed; only active or pending tokens can be held", "failed/0/-/-/token", NULL},
        {"held", NULL, "{\"op\":\"hold\",\"id\":%lld}", "token %lld is held already", "held/0/-/-/token",
         NULL},
        {"active", "UPDATE tokens SET token = NULL WHERE id = %lld", "{\"op\":\"hold\",\"id\":%lld}",
         "token %lld has no secret stored, so it cannot be sent: there is nothing to hold",
         "active/0/-/-/none", NULL},
        /* release: pending when due, with its attempts; else active */
        {"held",
         "UPDATE tokens SET due_reason = 'expired', due_at = 5, next_attempt_at = 7, attempts = 2 WHERE id = "
         "%lld",
         "{\"op\":\"release\",\"id\":%lld}", NULL, "pending/2/released/expired/token",
         "released/uid 1234 (now pending, due: expired)"},
        {"held", "UPDATE tokens SET expires_at = 4102444800 WHERE id = %lld",
         "{\"op\":\"release\",\"id\":%lld}", NULL, "active/0/released/-/token",
         "released/uid 1234 (now active, not due)"},
        {"held", "UPDATE tokens SET expires_at = 1000000000 WHERE id = %lld",
         "{\"op\":\"release\",\"id\":%lld}", NULL, "pending/0/released/expired/token",
         "released/uid 1234 (now pending, due: expired)"},
        {"held", "UPDATE tokens SET flagged = 1 WHERE id = %lld", "{\"op\":\"release\",\"id\":%lld}", NULL,
         "pending/0/released/flagged/token", "released/uid 1234 (now pending, due: flagged)"},
        {"active", NULL, "{\"op\":\"release\",\"id\":%lld}",
         "token %lld is active; only held tokens can be released", "active/0/-/-/token", NULL},
        {"revoked", NULL, "{\"op\":\"release\",\"id\":%lld}",
         "token %lld is revoked; only held tokens can be released", "revoked/0/-/-/token", NULL},
        /* drop: failed without a request, its secret scrubbed */
        {"pending", "UPDATE tokens SET due_reason = 'flagged', attempts = 1 WHERE id = %lld",
         "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"customer closed\"}", NULL,
         "failed/1/dropped/flagged/none", "dropped/uid 1234: customer closed"},
        {"held", NULL, "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"bad\"}", NULL, "failed/0/dropped/-/none",
         "dropped/uid 1234: bad"},
        {"active", NULL, "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"x\"}",
         "token %lld is active; only pending or held tokens can be dropped", "active/0/-/-/token", NULL},
        {"revoked", NULL, "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"x\"}",
         "token %lld is revoked; only pending or held tokens can be dropped", "revoked/0/-/-/token", NULL},
        {"failed", NULL, "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"x\"}",
         "token %lld is failed; only pending or held tokens can be dropped", "failed/0/-/-/token", NULL},
        /* a reason is one line of text in the audit (revokerctl audit prints
         * one row per line): no control characters */
        {"active", NULL, "{\"op\":\"hold\",\"id\":%lld,\"reason\":\"a\\nfake row\"}",
         "field 'reason' must not contain control characters (newline, tab, escape, ...)",
         "active/0/-/-/token", NULL},
        {"held", NULL, "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"\\u001b[2Jx\"}",
         "field 'reason' must not contain control characters (newline, tab, escape, ...)", "held/0/-/-/token",
         NULL},
        {"held", NULL, "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"del\\u007f\"}",
         "field 'reason' must not contain control characters (newline, tab, escape, ...)", "held/0/-/-/token",
         NULL},
        {"held", NULL, "{\"op\":\"drop\",\"id\":%lld,\"reason\":\"caf\u00e9 \\u00e9t\u00e9\"}", NULL,
         "failed/0/dropped/-/none", "dropped/uid 1234: caf\u00e9 \u00e9t\u00e9"},
        /* a socket revoke of a held token: still held, the request kept */
        {"held", "UPDATE tokens SET expires_at = 4102444800 WHERE id = %lld",
         "{\"op\":\"revoke\",\"id\":%lld}", NULL, "held/0/-/requested/token", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct hold_case *c = &cases[i];
        char token[64], sql[512], line[512], want[512], got[512];
        snprintf(token, sizeof(token), "tok-SECRET-hold-%zu", i);
        long long id = insert_token(token, "holder", c->state);
        if (c->setup) {
            snprintf(sql, sizeof(sql), c->setup, id);
            sql_exec(sql);
        }
        int64_t seq = sql_int("SELECT coalesce(max(seq), 0) FROM audit");
        char *text;
        snprintf(line, sizeof(line), c->line, id);
        json_t *r = call_as(line, &text);
        if (c->error) {
            snprintf(want, sizeof(want), c->error, id);
            if (ok_of(r) || strcmp(str_of(r, "error"), want) != 0) {
                fprintf(stderr, "case %zu: got %s\n  expected error: %s\n", i, text, want);
                unit_failures++;
            }
        } else if (strstr(line, "\"revoke\"")) { /* revoke's own shape: nothing made pending */
            CHECK(ok_of(r) && int_of(r, "count") == 0 && strcmp(str_of(r, "state"), "held") == 0);
        } else if (!ok_of(r) || int_of(r, "count") != 1 ||
                   json_integer_value(json_array_get(json_object_get(r, "ids"), 0)) != id) {
            fprintf(stderr, "case %zu: got %s, expected ok with count 1 and ids [%lld]\n", i, text, id);
            unit_failures++;
        }
        CHECK(strstr(text, "tok-SECRET") == NULL);
        free(text);
        json_decref(r);

        snprintf(sql, sizeof(sql), "SELECT state || '/' || attempts || '/' || coalesce(last_event, '-') || '/' || "
                 "coalesce(due_reason, '-') || '/' || CASE WHEN token IS NULL THEN 'none' ELSE 'token' END "
                 "FROM tokens WHERE id = %lld", id);
        sql_text(sql, got, sizeof(got));
        if (strcmp(got, c->after) != 0) {
            fprintf(stderr, "case %zu: row is %s, expected %s\n", i, got, c->after);
            unit_failures++;
        }
        snprintf(sql, sizeof(sql), "SELECT group_concat(event || '/' || coalesce(detail, ''), '|') FROM audit "
                 "WHERE seq > %lld", (long long)seq);
        sql_text(sql, got, sizeof(got));
        if (strcmp(got, c->detail ? c->detail : "") != 0) {
            fprintf(stderr, "case %zu: audit rows %s, expected %s\n", i, got, c->detail ? c->detail : "(none)");
            unit_failures++;
        }
    }
    /* The last case's request is served after its release: urgent, as asked. */
    long long last = sql_int("SELECT max(id) FROM tokens");
    char line[128];
    snprintf(line, sizeof(line), "{\"op\":\"release\",\"id\":%lld}", last);
    json_t *r = call_as(line, NULL);
    CHECK(ok_of(r));
    CHECK_STR(str_of(r, "state"), "pending");
    json_decref(r);
    char got[128], sql[160];
    snprintf(sql, sizeof(sql), "SELECT state || '/' || due_reason FROM tokens WHERE id = %lld", last);
    sql_text(sql, got, sizeof(got));
    CHECK_STR(got, "pending/requested");
}

/* Unknown ids, and the ops by subject and all. */
static void test_hold_many(void)
{
    static const char *const unknown[] = {
        "{\"op\":\"hold\",\"id\":987654}", "{\"op\":\"release\",\"id\":987654}",
        "{\"op\":\"drop\",\"id\":987654,\"reason\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        json_t *r = call_as(unknown[i], NULL);
        CHECK(!ok_of(r));
        CHECK_STR(str_of(r, "error"), "no token with id 987654");
        json_decref(r);
    }

    int64_t a = insert_token("tok-SECRET-many-1", "mallory", "active");
    int64_t b = insert_token("tok-SECRET-many-2", "mallory", "pending");
    insert_token("tok-SECRET-many-3", "mallory", "revoked");
    int64_t other = insert_token("tok-SECRET-many-4", "trent", "active");
    json_t *r = call_as("{\"op\":\"hold\",\"subject\":\"mallory\",\"reason\":\"incident 7\"}", NULL);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 2);
    /* The pending one first (the engine could send it now), then the active one. */
    CHECK_INT(json_integer_value(json_array_get(json_object_get(r, "ids"), 0)), b);
    CHECK_INT(json_integer_value(json_array_get(json_object_get(r, "ids"), 1)), a);
    CHECK(json_object_get(r, "in_flight") == NULL);
    json_decref(r);
    r = call_as("{\"op\":\"hold\",\"id\":0}", NULL); /* stays an error */
    CHECK(!ok_of(r));
    json_decref(r);
    r = call_as("{\"op\":\"hold\",\"subject\":\"trent\"}", NULL);
    CHECK_INT(int_of(r, "count"), 1);
    json_decref(r);

    /* stats counts them */
    r = call("{\"op\":\"stats\"}");
    CHECK_INT(int_of(json_object_get(r, "states"), "held"), sql_int("SELECT count(*) FROM tokens WHERE state = 'held'"));
    json_decref(r);

    /* a revoke by subject keeps the request in its held tokens */
    r = call_as("{\"op\":\"revoke\",\"subject\":\"mallory\"}", NULL);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 0);
    CHECK_INT(json_array_size(json_object_get(r, "held")), 2);
    json_decref(r);
    char q[160], got[64];
    snprintf(q, sizeof(q), "SELECT state || '/' || due_reason FROM tokens WHERE id = %lld", (long long)a);
    sql_text(q, got, sizeof(got));
    CHECK_STR(got, "held/requested");

    r = call_as("{\"op\":\"release\",\"subject\":\"mallory\"}", NULL);
    CHECK_INT(int_of(r, "count"), 2);
    json_decref(r);
    sql_text(q, got, sizeof(got));
    CHECK_STR(got, "pending/requested");
    int64_t held = sql_int("SELECT count(*) FROM tokens WHERE state = 'held'");
    CHECK(held >= 1);
    r = call_as("{\"op\":\"release\",\"all\":true}", NULL);
    CHECK_INT(int_of(r, "count"), held);
    json_decref(r);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE state = 'held'"), 0);
    snprintf(q, sizeof(q), "SELECT state FROM tokens WHERE id = %lld", (long long)other);
    sql_text(q, got, sizeof(got));
    CHECK_STR(got, "active");
    /* nothing held: ok, none */
    r = call_as("{\"op\":\"release\",\"all\":true}", NULL);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "count"), 0);
    json_decref(r);
    /* without a peer (proto_handle), the audit says so */
    r = call("{\"op\":\"hold\",\"subject\":\"trent\"}");
    CHECK_INT(int_of(r, "count"), 1);
    json_decref(r);
    sql_text("SELECT detail FROM audit ORDER BY seq DESC LIMIT 1", got, sizeof(got));
    CHECK_STR(got, "uid ? (was active)");
}

/* Another process holds the write lock: a clear error, nothing written,
 * and the same request succeeds once the lock is gone. */
static void test_busy(void)
{
    sqlite3 *other;
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);

    const char *req = "{\"op\":\"revoke\",\"token\":\"tok-SECRET-busy\"}";
    char *before = snapshot();
    json_t *r = call(req);
    CHECK(!ok_of(r));
    CHECK_STR(str_of(r, "error"), "database is busy (another process holds a write lock); try again");
    json_decref(r);
    char *after = snapshot();
    CHECK_STR(after, before);
    free(after);
    free(before);

    /* Reads still answer. */
    r = call("{\"op\":\"stats\"}");
    CHECK(ok_of(r));
    json_decref(r);

    REQUIRE(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    r = call(req);
    CHECK(ok_of(r));
    CHECK_STR(str_of(r, "state"), "pending");
    json_decref(r);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE token = 'tok-SECRET-busy'"), 1);
}

/* A JWT whose payload is {"sub":"proto-claim-SECRET","exp":1795000000}. */
#define PROTO_JWT \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwcm90by1jbGFpbS1TRUNSRVQiLCJleHAiOjE3OTUwMDAwMDB9.c2ln"

static void test_track(void)
{
    static const struct {
        const char *req;
        const char *error; /* NULL: ok:true with this expires_at */
        const char *expires_at;
    } cases[] = {
        {"{\"op\":\"track\",\"token\":\"tok-SECRET-track-1\",\"subject\":\"ann\",\"expires_at\":1795000000}",
         NULL, "2026-11-18T11:06:40.000Z"},
        {"{\"op\":\"track\",\"token\":\"" PROTO_JWT "\"}", NULL, "2026-11-18T11:06:40.000Z"},
        {"{\"op\":\"track\",\"token\":\"" PROTO_JWT "x\",\"expires_at\":1795000099}", NULL,
         "2026-11-18T11:06:40.000Z"}, /* the JWT's is earlier */
        {"{\"op\":\"track\",\"token\":\"tok-SECRET-track-2\"}",
         "track needs an expiry: give expires_at (Unix seconds) or a JWT with an exp claim", NULL},
        {"{\"op\":\"track\",\"token\":\"tok-SECRET-track-2\",\"expires_at\":1795000000000}",
         "field 'expires_at' must be Unix seconds from 946684800 (2000-01-01) to before 32503680000 "
         "(3000-01-01), got 1795000000000 (milliseconds? give seconds)",
         NULL},
        {"{\"op\":\"track\",\"token\":\"tok-SECRET-track-2\",\"expires_at\":0}",
         "field 'expires_at' must be Unix seconds from 946684800 (2000-01-01) to before 32503680000 "
         "(3000-01-01), got 0",
         NULL},
        {"{\"op\":\"track\",\"token\":\"tok-SECRET-track-2\",\"expires_at\":\"tomorrow\"}",
         "field 'expires_at' must be an integer (Unix seconds), got a string", NULL},
        {"{\"op\":\"track\",\"token\":\"tok-SECRET-track-2\",\"expires_at\":1795000000.5}",
         "field 'expires_at' must be an integer (Unix seconds), got a number with a fraction", NULL},
        {"{\"op\":\"track\",\"expires_at\":1795000000}",
         "track needs 'token' (the secret), and 'expires_at' unless the token is a JWT with an exp claim",
         NULL},
        {"{\"op\":\"track\",\"token\":\"tok SECRET\",\"expires_at\":1795000000}",
         "field 'token' must be printable ASCII without spaces or control characters", NULL},
        {"{\"op\":\"track\",\"token\":\"tok-SECRET-track-2\",\"reason\":\"x\",\"expires_at\":1795000000}",
         "unknown field 'reason' for op track (allowed: token, subject, expires_at)", NULL},
    };
    store_set_jwt_expiry(store, true);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *before = snapshot(), *text = NULL;
        json_t *r = call_n(cases[i].req, strlen(cases[i].req), &text);
        CHECK(strstr(text, "SECRET") == NULL && strstr(text, "eyJ") == NULL); /* no token, no claim */
        if (cases[i].error) {
            CHECK(!ok_of(r));
            CHECK_STR(str_of(r, "error"), cases[i].error);
            char *after = snapshot();
            CHECK_STR(after, before); /* nothing written */
            free(after);
        } else {
            CHECK(ok_of(r));
            CHECK_STR(str_of(r, "state"), "active");
            CHECK_STR(str_of(r, "expires_at"), cases[i].expires_at);
            char sql[160];
            snprintf(sql, sizeof(sql),
                     "SELECT count(*) FROM tokens WHERE id = %lld AND state = 'active' AND "
                     "token_sha256 IS NOT NULL AND expires_at IS NOT NULL",
                     int_of(r, "id"));
            CHECK_INT(sql_int(sql), 1);
        }
        json_decref(r);
        free(text);
        free(before);
    }
    /* The same secret again: its row, no second one, no audit row. */
    int64_t rows = sql_int("SELECT count(*) FROM tokens");
    json_t *r = call(cases[0].req);
    CHECK(ok_of(r));
    CHECK_INT(int_of(r, "id"), sql_int("SELECT id FROM tokens WHERE token = 'tok-SECRET-track-1'"));
    json_decref(r);
    CHECK_INT(sql_int("SELECT count(*) FROM tokens"), rows);
    CHECK_INT(sql_int("SELECT count(*) FROM audit WHERE token_id IN (SELECT id FROM tokens WHERE token LIKE "
                      "'tok-SECRET-track-%' OR token LIKE 'eyJ%')"),
              0);
    store_set_jwt_expiry(store, false);
}

struct replies {
    size_t n;
    char *text[16];
};

static void collect(void *ud, char *reply)
{
    struct replies *rs = ud;
    REQUIRE(reply && rs->n < 16);
    rs->text[rs->n++] = reply;
}

static void replies_free(struct replies *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->text[i]);
    rs->n = 0;
}

static void count_ok(void *ud, char *reply)
{
    unsigned *oks = ud;
    *oks += reply && strstr(reply, "\"ok\":true") != NULL;
    free(reply);
}

/* Rows another connection sees: what is committed. */
static int64_t committed(const char *sql)
{
    sqlite3 *other;
    sqlite3_stmt *st;
    int64_t v = -1;
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_prepare_v2(other, sql, -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(other);
    return v;
}

static void line(struct proto_batch *b, const char *text)
{
    proto_batch_line(b, text, strlen(text));
}

static bool stale;
static int stale_check(const struct proto_env *e)
{
    (void)e;
    return stale ? -ESTALE : 0;
}

/* track lines of one read share a commit; each reply waits for it, in
 * request order; any other request ends the batch first. */
static void test_track_batch(void)
{
    static const char count_sql[] = "SELECT count(*) FROM tokens WHERE token LIKE 'tok-SECRET-batch-%'";
    struct replies rs = {0};
    struct proto_batch b;

    proto_batch_begin(&b, &env, collect, &rs);
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-1\",\"expires_at\":1795000000}");
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-2\"}"); /* no expiry */
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-3\",\"expires_at\":1795000000}");
    CHECK_INT(rs.n, 0);                 /* held */
    CHECK_INT(committed(count_sql), 0); /* and not committed yet */
    CHECK_INT(sql_int(count_sql), 2);   /* but in the transaction */
    line(&b, "{\"op\":\"ping\"}");
    CHECK_INT(rs.n, 4);
    CHECK_INT(committed(count_sql), 2); /* committed before the ping ran */
    CHECK(strstr(rs.text[0], "\"ok\":true") && strstr(rs.text[2], "\"ok\":true"));
    CHECK(strstr(rs.text[1], "track needs an expiry") != NULL);
    CHECK(strstr(rs.text[3], "\"version\"") != NULL);
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-4\",\"expires_at\":1795000000}");
    CHECK_INT(rs.n, 4);
    proto_batch_end(&b);
    CHECK_INT(rs.n, 5);
    CHECK_INT(committed(count_sql), 3);
    replies_free(&rs);

    /* Busy: each track of the batch says so, nothing is written. */
    sqlite3 *other;
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-5\",\"expires_at\":1795000000}");
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-6\",\"expires_at\":1795000000}");
    proto_batch_end(&b);
    REQUIRE(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    CHECK_INT(rs.n, 2);
    for (size_t i = 0; i < rs.n; i++)
        CHECK(strstr(rs.text[i], "database is busy") != NULL);
    replies_free(&rs);
    CHECK_INT(committed(count_sql), 3);

    /* A commit that cannot be acknowledged (the file was replaced): every
     * ok:true held becomes that error; a reply that was an error stays. */
    env.file_check = stale_check;
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-7\",\"expires_at\":1795000000}");
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-8\"}");
    stale = true;
    proto_batch_end(&b);
    stale = false;
    env.file_check = NULL;
    CHECK_INT(rs.n, 2);
    CHECK(strstr(rs.text[0], "database file was removed or replaced") != NULL);
    CHECK(strstr(rs.text[1], "track needs an expiry") != NULL);
    for (size_t i = 0; i < rs.n; i++)
        CHECK(strstr(rs.text[i], "SECRET") == NULL);
    replies_free(&rs);

    /* A batch holds PROTO_BATCH_MAX replies at most: then it commits. */
    unsigned oks = 0;
    proto_batch_begin(&b, &env, count_ok, &oks);
    for (unsigned i = 0; i < PROTO_BATCH_MAX + 3; i++)
        line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-batch-1\",\"expires_at\":1795000000}");
    CHECK_INT(oks, PROTO_BATCH_MAX);
    proto_batch_end(&b);
    CHECK_INT(oks, PROTO_BATCH_MAX + 3);
}

/* The write lock another process holds is waited for once a batch: the
 * writes after the first busy one are told at once, even once the lock is
 * gone (the client's next read tries again), so that pipelined requests
 * cannot stall the loop DB_BUSY_TIMEOUT_MS each. */
static void test_busy_once_a_batch(void)
{
    static const char count_sql[] = "SELECT count(*) FROM tokens WHERE token LIKE 'tok-SECRET-once-%'";
    struct replies rs = {0};
    struct proto_batch b;
    sqlite3 *other;

    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    proto_batch_begin(&b, &env, collect, &rs);
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-once-1\",\"expires_at\":1795000000}");
    REQUIRE(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-once-2\",\"expires_at\":1795000000}");
    line(&b, "{\"op\":\"revoke\",\"token\":\"tok-SECRET-once-3\"}");
    line(&b, "{\"op\":\"hold\",\"subject\":\"nobody\"}");
    line(&b, "{\"op\":\"ping\"}");
    proto_batch_end(&b);
    CHECK_INT(rs.n, 5);
    for (size_t i = 0; i < 4; i++)
        CHECK(strstr(rs.text[i], "database is busy") != NULL);
    CHECK(strstr(rs.text[4], "\"version\"") != NULL); /* reads still answer */
    replies_free(&rs);
    CHECK_INT(committed(count_sql), 0);

    /* The next batch (the client's next read) writes. */
    proto_batch_begin(&b, &env, collect, &rs);
    line(&b, "{\"op\":\"track\",\"token\":\"tok-SECRET-once-2\",\"expires_at\":1795000000}");
    line(&b, "{\"op\":\"revoke\",\"token\":\"tok-SECRET-once-3\"}");
    proto_batch_end(&b);
    CHECK_INT(rs.n, 2);
    for (size_t i = 0; i < rs.n; i++)
        CHECK(strstr(rs.text[i], "\"ok\":true") != NULL);
    replies_free(&rs);
    CHECK_INT(committed(count_sql), 2);
    sqlite3_close(other);
}

/* Everything above went through audit_append: the chain is intact. */
static void test_audit_chain(void)
{
    int64_t rows = 0, bad = 0;
    char why[256] = "";
    CHECK_INT(auditverify_chain(db, &rows, &bad, why, sizeof(why)), 0);
    CHECK(rows > 5);
}

static void test_error_builder(void)
{
    char *s = proto_error("request line longer than 65536 bytes");
    CHECK_STR(s, "{\"ok\":false,\"error\":\"request line longer than 65536 bytes\"}");
    free(s);
}

TEST_MAIN(CASE(setup), CASE(test_ping), CASE(test_revoke_token), CASE(test_revoke_token_limits),
          CASE(test_revoke_id), CASE(test_revoke_subject), CASE(test_status), CASE(test_retry),
          CASE(test_stats), CASE(test_hold_transitions), CASE(test_hold_many), CASE(test_bad_input),
          CASE(test_busy), CASE(test_track), CASE(test_track_batch), CASE(test_busy_once_a_batch),
          CASE(test_audit_chain), CASE(test_error_builder), CASE(teardown))

/* test_tokens: the token state machine on a real SQLite file, with an
 * injected clock; every statement's query plan; allocation failures. */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "auditverify.h"
#include "db.h"
#include "schema.h"
#include "secret.h"
#include "util.h"
#include "tokens.h"
#include "unit.h"

#define NOW 1700000000000LL /* Unix ms, a whole second */
#define NOW_S (NOW / 1000)

static char dir[64];
static struct db *db;
static struct audit *au;
static struct tokens *tk;

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)type, (void)f;
    return remove(p);
}

static void fx_open(void)
{
    char path[128];
    snprintf(dir, sizeof(dir), "/tmp/test_tokens.XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/t.db", dir);
    REQUIRE(db_open(path, 0, &db) == 0);
    REQUIRE(audit_open(db, &au) == 0);
    REQUIRE(tokens_open(db, &tk) == 0);
}

/* Every case ends with an intact audit chain. */
static void fx_close(void)
{
    int64_t rows = 0, bad = 0;
    char why[256] = "";
    int rc = auditverify_chain(db, &rows, &bad, why, sizeof(why));
    if (rc != 0)
        fprintf(stderr, "audit chain broken at %lld: %s\n", (long long)bad, why);
    CHECK_INT(rc, 0);
    tokens_close(tk);
    audit_close(au);
    db_close(db);
    tk = NULL, au = NULL, db = NULL;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void exec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void exec(const char *fmt, ...)
{
    char sql[4096];
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "exec %s: %s\n", sql, msg);
        exit(1);
    }
}

static int64_t qint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int64_t qint(const char *fmt, ...)
{
    char sql[1024];
    sqlite3_stmt *st;
    int64_t v = -999;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    REQUIRE(sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -888 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The text of one value; "(null)" for NULL. */
static const char *qtext(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *qtext(const char *fmt, ...)
{
    static char out[4][512];
    static int n;
    char *o = out[n++ % 4];
    char sql[1024];
    sqlite3_stmt *st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    REQUIRE(sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) == SQLITE_OK);
    snprintf(o, 512, "(none)");
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        snprintf(o, 512, "%s", s ? s : "(null)");
    }
    sqlite3_finalize(st);
    return o;
}

static void fp_of(const char *token, char fp[SECRET_FP_LEN + 1], char hex[65])
{
    uint8_t d[SECRET_SHA256_LEN];
    secret_sha256(token, strlen(token), d);
    secret_fingerprint(d, fp);
    if (hex)
        secret_hex(d, hex);
}

static int64_t insert_token(const char *token, const char *subject, const char *expires_at,
                            int flagged)
{
    char t[1024], s[1024];
    snprintf(t, sizeof(t), token ? "'%s'" : "NULL", token);
    snprintf(s, sizeof(s), subject ? "'%s'" : "NULL", subject);
    exec("INSERT INTO tokens (token, subject, expires_at, flagged) VALUES (%s, %s, %s, %d)", t, s,
         expires_at ? expires_at : "NULL", flagged);
    return sqlite3_last_insert_rowid(db->conn);
}

static unsigned promote(int64_t now, unsigned limit)
{
    unsigned n = 12345;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_promote_due(tk, au, now, limit, &n), 0);
    REQUIRE(db_commit(db) == 0);
    return n;
}

static int64_t audit_count(int64_t id, const char *event, const char *detail)
{
    if (detail)
        return qint("SELECT count(*) FROM audit WHERE token_id = %lld AND event = '%s' AND "
                    "detail = '%s'",
                    (long long)id, event, detail);
    return qint("SELECT count(*) FROM audit WHERE token_id = %lld AND event = '%s'",
                (long long)id, event);
}

/* ---- promote ---- */

static void test_promote_boundaries(void)
{
    static const struct {
        const char *expires_at; /* SQL literal */
        int flagged;
        int64_t now;
        const char *state, *reason; /* after promote_due(now) */
    } cases[] = {
        {"1700000000", 0, NOW, "pending", "expired"},         /* expires_at*1000 == now */
        {"1700000000", 0, NOW - 1, "active", NULL},           /* 1 ms before */
        {"1700000000", 0, NOW + 999, "pending", "expired"},
        {"1700000001", 0, NOW + 999, "active", NULL},
        {"1699999999", 0, NOW, "pending", "expired"},
        {"0", 0, NOW, "pending", "expired"},
        {"-5", 0, NOW, "pending", "expired"},
        {"NULL", 0, NOW, "active", NULL},                     /* never expires */
        {"NULL", 1, NOW, "pending", "flagged"},
        {"1800000000", 1, NOW, "pending", "flagged"},          /* flagged wins */
        {"1600000000", 1, NOW, "pending", "flagged"},
        {"1800000000", 7, NOW, "pending", "flagged"},          /* any non-zero */
        {"1699999999.5", 0, NOW - 1, "active", NULL},          /* REAL: due at ceil */
        {"1699999999.5", 0, NOW, "pending", "expired"},
        /* text, milliseconds, ...: test_promote_bad_expiry */
    };
    fx_open();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t id = insert_token("tok-boundary", "alice", cases[i].expires_at, cases[i].flagged);
        bool due = strcmp(cases[i].state, "pending") == 0;
        CHECK_INT(promote(cases[i].now, 10), due ? 1 : 0);
        if (strcmp(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)id),
                   cases[i].state) != 0)
            fprintf(stderr, "promote case %zu\n", i);
        CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)id),
                  cases[i].state);
        if (due) {
            char fp[17], hex[65];
            fp_of("tok-boundary", fp, hex);
            CHECK_STR(qtext("SELECT due_reason FROM tokens WHERE id = %lld", (long long)id),
                      cases[i].reason);
            CHECK_STR(qtext("SELECT fingerprint FROM tokens WHERE id = %lld", (long long)id), fp);
            CHECK_STR(qtext("SELECT lower(hex(token_sha256)) FROM tokens WHERE id = %lld",
                            (long long)id),
                      hex);
            CHECK_INT(qint("SELECT due_at FROM tokens WHERE id = %lld", (long long)id),
                      cases[i].now);
            CHECK_INT(qint("SELECT next_attempt_at FROM tokens WHERE id = %lld", (long long)id),
                      cases[i].now);
            CHECK_STR(qtext("SELECT last_event FROM tokens WHERE id = %lld", (long long)id),
                      "due");
            CHECK_STR(qtext("SELECT token FROM tokens WHERE id = %lld", (long long)id),
                      "tok-boundary");
            CHECK_INT(audit_count(id, "due", cases[i].reason), 1);
            CHECK_STR(qtext("SELECT fingerprint FROM audit WHERE token_id = %lld", (long long)id),
                      fp);
        } else {
            CHECK_INT(qint("SELECT count(*) FROM audit WHERE token_id = %lld", (long long)id), 0);
        }
        /* Out of the way, keeping ids unique for the audit checks. */
        exec("UPDATE tokens SET state = 'revoked', flagged = 0");
    }
    fx_close();
}

static void test_promote_order_limit_and_no_token(void)
{
    fx_open();
    int64_t e3 = insert_token("e3", NULL, "1699999003", 0);
    int64_t e1 = insert_token("e1", NULL, "1699999001", 0);
    int64_t f1 = insert_token("f1", NULL, "NULL", 1);
    int64_t e2 = insert_token("e2", NULL, "1699999002", 0);
    int64_t f2 = insert_token("f2", NULL, "1800000000", 1);
    int64_t later = insert_token("later", NULL, "1800000000", 0);
    int64_t f3 = insert_token("f3", NULL, "NULL", 1);

    /* Flagged first, by id; the limit holds. */
    CHECK_INT(promote(NOW, 2), 2);
    CHECK_STR(qtext("SELECT group_concat(id) FROM (SELECT id FROM tokens WHERE state = "
                    "'pending' ORDER BY id)"),
              qtext("SELECT '%lld,%lld'", (long long)f1, (long long)f2));
    /* Then the rest: the last flagged, then expired by expires_at. */
    CHECK_INT(promote(NOW, 100), 4);
    CHECK_INT(promote(NOW, 100), 0);
    CHECK_STR(qtext("SELECT group_concat(token_id) FROM (SELECT token_id FROM audit ORDER BY seq)"),
              qtext("SELECT '%lld,%lld,%lld,%lld,%lld,%lld'", (long long)f1, (long long)f2,
                    (long long)f3, (long long)e1, (long long)e2, (long long)e3));
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)later), "active");
    CHECK_INT(promote(NOW, 0), 0);

    /* A due row without a secret cannot be sent: failed, with `rejected`. */
    int64_t none = insert_token(NULL, "bob", "NULL", 1);
    int64_t empty = insert_token("", "bob", "1600000000", 0);
    CHECK_INT(promote(NOW, 10), 2);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)none), "failed");
    CHECK_STR(qtext("SELECT last_event FROM tokens WHERE id = %lld", (long long)none), "rejected");
    CHECK_STR(qtext("SELECT last_error FROM tokens WHERE id = %lld", (long long)none),
              "no token to revoke");
    CHECK_INT(qint("SELECT finished_at FROM tokens WHERE id = %lld", (long long)none), NOW);
    CHECK_INT(qint("SELECT next_attempt_at FROM tokens WHERE id = %lld", (long long)none), -888);
    CHECK_INT(audit_count(none, "rejected", "no token to revoke (flagged)"), 1);
    CHECK_INT(audit_count(none, "due", NULL), 0);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)empty), "failed");
    CHECK_INT(audit_count(empty, "rejected", "no token to revoke (expired)"), 1);
    fx_close();
}

/* ---- fetch ---- */

struct fetched {
    int n, stop_after;
    int64_t id[32];
    char token[32][32];
    char fp[32][17];
    unsigned attempts[32];
    int64_t next[32];
};

static int on_row(void *ud, const struct pending_row *row)
{
    struct fetched *f = ud;
    int i = f->n++;
    if (i < 32) {
        f->id[i] = row->id;
        snprintf(f->token[i], sizeof(f->token[i]), "%.*s", (int)row->token_len, row->token);
        snprintf(f->fp[i], sizeof(f->fp[i]), "%s", row->fingerprint ? row->fingerprint : "");
        f->attempts[i] = row->attempts;
        f->next[i] = row->next_attempt_at;
    }
    return f->stop_after && f->n >= f->stop_after;
}

static void test_fetch_order(void)
{
    fx_open();
    static const struct {
        const char *token;
        int64_t next;
        int attempts;
    } rows[] = {
        {"p-a", NOW - 10, 0}, {"p-b", NOW, 2},     {"p-c", NOW - 10, 1}, {"p-d", NOW + 1, 0},
        {"p-e", NOW - 500, 3}, {NULL, NOW - 1000, 0}, {"p-g", NOW - 10, 0},
    };
    int64_t ids[8];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ids[i] = insert_token(rows[i].token, NULL, NULL, 0);
        exec("UPDATE tokens SET state = 'pending', next_attempt_at = %lld, attempts = %d, "
             "fingerprint = 'fp%zu' WHERE id = %lld",
             (long long)rows[i].next, rows[i].attempts, i, (long long)ids[i]);
    }
    insert_token("active-one", NULL, "1600000000", 1); /* not pending: never fetched */

    struct fetched f = {0};
    CHECK_INT(tokens_fetch_due(tk, NOW, 16, on_row, &f), 0);
    /* (next_attempt_at, id); p-d is in the future; the NULL token is skipped. */
    CHECK_INT(f.n, 5);
    CHECK_INT(f.id[0], ids[4]);
    CHECK_INT(f.id[1], ids[0]);
    CHECK_INT(f.id[2], ids[2]);
    CHECK_INT(f.id[3], ids[6]);
    CHECK_INT(f.id[4], ids[1]);
    CHECK_STR(f.token[0], "p-e");
    CHECK_STR(f.fp[0], "fp4");
    CHECK_INT(f.attempts[0], 3);
    CHECK_INT(f.next[0], NOW - 500);
    CHECK_INT(f.attempts[4], 2);

    struct fetched g = {0};
    CHECK_INT(tokens_fetch_due(tk, NOW, 2, on_row, &g), 0); /* the limit */
    CHECK_INT(g.n, 2);
    CHECK_INT(g.id[1], ids[0]);
    struct fetched h = {.stop_after = 3};
    CHECK_INT(tokens_fetch_due(tk, NOW + 1, 16, on_row, &h), 0); /* the callback stops */
    CHECK_INT(h.n, 3);
    struct fetched k = {0};
    CHECK_INT(tokens_fetch_due(tk, NOW - 501, 16, on_row, &k), 0);
    CHECK_INT(k.n, 0);
    CHECK_INT(tokens_fetch_due(tk, NOW, 16, NULL, NULL), -EINVAL);

    /* In id order after a cursor, due or not, tokenless too (the caller
     * decides; its cursor moves past them). */
    struct fetched m = {0};
    CHECK_INT(tokens_fetch_from(tk, ids[1], 16, on_row, &m), 0);
    CHECK_INT(m.n, 5);
    for (int i = 0; i < 5; i++)
        CHECK_INT(m.id[i], ids[i + 2]);
    CHECK_STR(m.token[1], "p-d");
    CHECK_INT(m.next[1], NOW + 1);
    CHECK_STR(m.token[3], "");
    struct fetched q = {0};
    CHECK_INT(tokens_fetch_from(tk, 0, 2, on_row, &q), 0); /* the limit */
    CHECK_INT(q.n, 2);
    CHECK_INT(q.id[0], ids[0]);
    CHECK_INT(q.id[1], ids[1]);
    struct fetched e = {0};
    CHECK_INT(tokens_fetch_from(tk, ids[6], 16, on_row, &e), 0); /* past the last */
    CHECK_INT(e.n, 0);
    CHECK_INT(tokens_fetch_from(tk, 0, 16, NULL, NULL), -EINVAL);
    fx_close();
}

/* ---- outcomes ---- */

static int64_t make_pending(const char *token)
{
    int64_t id = insert_token(token, "carol", NULL, 1);
    promote(NOW, 100);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)id), "pending");
    return id;
}

static void test_outcomes(void)
{
    fx_open();
    char fp[17];
    int64_t a = make_pending("tok-a"), b = make_pending("tok-b"), c = make_pending("tok-c");
    fp_of("tok-a", fp, NULL);

    /* 2xx: revoked, the secret dropped, its hash kept. */
    struct outcome_record r = {
        .token_id = a, .fingerprint = fp, .event = AUDIT_REVOKED, .state = TOKEN_REVOKED,
        .attempts = 0, .attempt = 1, .http_status = 200, .detail = NULL,
        .last_error = NULL, .duration_ms = 37, .at_ms = NOW + 40, .drop_secret = true,
    };
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)a), "revoked");
    CHECK_STR(qtext("SELECT token FROM tokens WHERE id = %lld", (long long)a), "(null)");
    CHECK_INT(qint("SELECT length(token_sha256) FROM tokens WHERE id = %lld", (long long)a), 32);
    CHECK_STR(qtext("SELECT fingerprint FROM tokens WHERE id = %lld", (long long)a), fp);
    CHECK_INT(qint("SELECT finished_at FROM tokens WHERE id = %lld", (long long)a), NOW + 40);
    CHECK_INT(qint("SELECT next_attempt_at FROM tokens WHERE id = %lld", (long long)a), -888);
    CHECK_STR(qtext("SELECT last_event FROM tokens WHERE id = %lld", (long long)a), "revoked");
    CHECK_STR(qtext("SELECT attempt || ',' || http_status || ',' || duration_ms || ',' || at || "
                    "',' || fingerprint || ',' || (detail IS NULL) FROM audit WHERE token_id = "
                    "%lld AND event = 'revoked'",
                    (long long)a),
              qtext("SELECT '1,200,37,%lld,%s,1'", NOW + 40, fp));

    /* 422: failed, the secret kept for a retry. */
    r = (struct outcome_record){
        .token_id = b, .fingerprint = "fpb", .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
        .attempts = 1, .attempt = 1, .http_status = 422, .detail = "token: malformed",
        .last_error = "HTTP 422: token: malformed", .duration_ms = 5, .at_ms = NOW + 50,
    };
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)b), "failed");
    CHECK_STR(qtext("SELECT token FROM tokens WHERE id = %lld", (long long)b), "tok-b");
    CHECK_STR(qtext("SELECT last_error FROM tokens WHERE id = %lld", (long long)b),
              "HTTP 422: token: malformed");
    CHECK_INT(qint("SELECT attempts FROM tokens WHERE id = %lld", (long long)b), 1);
    CHECK_INT(audit_count(b, "rejected", "token: malformed"), 1);

    /* retry: still pending, later. */
    r = (struct outcome_record){
        .token_id = c, .fingerprint = "fpc", .event = AUDIT_RETRY, .state = TOKEN_PENDING,
        .attempts = 2, .attempt = 2, .http_status = 500, .detail = "HTTP 500; next in 2.0 s",
        .last_error = "HTTP 500", .duration_ms = 9, .at_ms = NOW + 60,
        .next_attempt_at = NOW + 2060,
    };
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)c), "pending");
    CHECK_INT(qint("SELECT next_attempt_at FROM tokens WHERE id = %lld", (long long)c), NOW + 2060);
    CHECK_INT(qint("SELECT attempts FROM tokens WHERE id = %lld", (long long)c), 2);
    CHECK_INT(qint("SELECT finished_at FROM tokens WHERE id = %lld", (long long)c), -888);
    CHECK_STR(qtext("SELECT token FROM tokens WHERE id = %lld", (long long)c), "tok-c");
    CHECK_INT(audit_count(c, "retry", NULL), 1);

    /* A state another process wrote while the request was in flight is
     * replaced by the outcome, and the audit row says so; a row that is
     * gone is -ESTALE, with no audit row. */
    enum token_state was = 0;
    exec("UPDATE tokens SET state = 'revoked' WHERE id = %lld", (long long)c); /* behind our back */
    r.token_id = c;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, &was), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(was, TOKEN_REVOKED);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)c), "pending");
    CHECK_INT(audit_count(c, "retry", NULL), 2);
    CHECK(strstr(qtext("SELECT detail FROM audit WHERE token_id = %lld ORDER BY seq DESC LIMIT 1", (long long)c),
                 "state 'revoked' written by another process while the request was in flight") != NULL);
    was = 0;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, &was), 0); /* pending, as expected */
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(was, 0);
    int64_t before = qint("SELECT count(*) FROM audit");
    REQUIRE(db_begin(db) == 0);
    r.token_id = 999999;
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), -ESTALE);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(qint("SELECT count(*) FROM audit"), before);

    /* Nonsense is refused before it reaches the table. */
    int64_t d = make_pending("tok-d");
    before = qint("SELECT count(*) FROM audit");
    r = (struct outcome_record){.token_id = d, .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
                                .drop_secret = true, .at_ms = NOW};
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), -EINVAL); /* failed keeps its secret */
    r.state = TOKEN_ACTIVE;
    r.drop_secret = false;
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), -EINVAL);
    r.state = 0;
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), -EINVAL);
    CHECK_INT(qint("SELECT count(*) FROM audit"), before);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)d), "pending");
    fx_close();
}

/* ---- next events ---- */

static void test_next_events(void)
{
    fx_open();
    struct next_events n;
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK(!n.flagged);
    CHECK(n.expiry_ms == INT64_MAX);
    CHECK(n.retry_ms == INT64_MAX);

    insert_token("x1", NULL, "1700000300", 0);
    insert_token("x2", NULL, "1700000200", 0);
    insert_token("x3", NULL, "NULL", 0);
    insert_token("x4", NULL, "'someday'", 0); /* text never counts */
    int64_t gone = insert_token("x5", NULL, "1700000100", 0);
    exec("UPDATE tokens SET state = 'revoked' WHERE id = %lld", (long long)gone); /* not active */
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK(!n.flagged);
    CHECK_INT(n.expiry_ms, 1700000200000LL);
    CHECK(n.retry_ms == INT64_MAX);

    /* Pending: only next attempts strictly after now. */
    static const int64_t next[] = {NOW - 5, NOW, NOW + 100, NOW + 50};
    for (size_t i = 0; i < 4; i++) {
        int64_t id = insert_token("p", NULL, NULL, 0);
        exec("UPDATE tokens SET state = 'pending', next_attempt_at = %lld WHERE id = %lld",
             (long long)next[i], (long long)id);
    }
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK_INT(n.retry_ms, NOW + 50);
    CHECK_INT(tokens_next_events(tk, NOW + 50, NOW + 50, &n), 0);
    CHECK_INT(n.retry_ms, NOW + 100);
    CHECK_INT(tokens_next_events(tk, NOW + 100, NOW + 100, &n), 0);
    CHECK(n.retry_ms == INT64_MAX);

    insert_token("f", NULL, NULL, 1);
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK(n.flagged);
    /* Once promoted, neither the flag nor the earliest expiry remain (and
     * 'someday' failed: test_promote_bad_expiry). */
    CHECK_INT(promote(1700000250000LL, 100), 3);
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK(!n.flagged);
    CHECK_INT(n.expiry_ms, 1700000300000LL);
    CHECK_INT(n.retry_ms, NOW + 50);
    CHECK_INT(tokens_next_events(tk, NOW + 100, NOW + 100, &n), 0);
    CHECK_INT(n.retry_ms, 1700000250000LL); /* the promoted rows' next attempt */

    /* A REAL expiry is due at the next whole second. */
    insert_token("r", NULL, "1600000000.25", 0);
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK_INT(n.expiry_ms, 1600000001000LL);
    fx_close();
}

/* ---- socket requests ---- */

/* tokens_revoke_secret in a transaction of its own. */
static int revoke_secret_now(const char *secret, int64_t *ret_id, enum token_state *state)
{
    REQUIRE(db_begin(db) == 0);
    int r = tokens_revoke_secret(tk, au, secret, strlen(secret), NULL, NULL, NOW, ret_id, state);
    REQUIRE(db_commit(db) == 0);
    return r;
}

static void test_revoke_secret(void)
{
    fx_open();
    int64_t id = 0, id2 = 0;
    enum token_state state = 0;
    char fp[17], hex[65];
    static const char tok[] = "secret-token-alpha";
    fp_of(tok, fp, hex);

    /* New: inserted pending with its hash, its subject and the reason. */
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, tok, strlen(tok), "alice", "logout", NOW, &id, &state),
              0);
    REQUIRE(db_commit(db) == 0);
    CHECK(id > 0);
    CHECK_STR(token_state_name(state), "pending");
    CHECK_STR(qtext("SELECT state || ',' || subject || ',' || flag_reason || ',' || due_reason || "
                    "',' || fingerprint || ',' || lower(hex(token_sha256)) || ',' || token "
                    "FROM tokens WHERE id = %lld",
                    (long long)id),
              qtext("SELECT 'pending,alice,logout,requested,%s,%s,%s'", fp, hex, tok));
    CHECK_INT(qint("SELECT next_attempt_at FROM tokens WHERE id = %lld", (long long)id), NOW);
    CHECK_INT(qint("SELECT due_at FROM tokens WHERE id = %lld", (long long)id), NOW);
    CHECK_INT(audit_count(id, "due", "requested"), 1);

    /* Again: the same row, no duplicate, no second audit row. */
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, tok, strlen(tok), "alice", "again", NOW + 1, &id2,
                                   &state),
              0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id2, id);
    CHECK_STR(token_state_name(state), "pending");
    CHECK_INT(qint("SELECT count(*) FROM tokens"), 1);
    CHECK_INT(audit_count(id, "due", NULL), 1);

    /* Revoked and its secret gone: still found, by hash. */
    struct outcome_record r = {.token_id = id, .fingerprint = fp, .event = AUDIT_REVOKED,
                               .state = TOKEN_REVOKED, .attempt = 1, .http_status = 200,
                               .duration_ms = 3, .at_ms = NOW + 5, .drop_secret = true};
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
    CHECK_INT(tokens_revoke_secret(tk, au, tok, strlen(tok), NULL, NULL, NOW + 9, &id2, &state), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id2, id);
    CHECK_STR(token_state_name(state), "revoked");
    CHECK_INT(qint("SELECT count(*) FROM tokens"), 1);

    /* Inserted by an application, never hashed: found by the secret. */
    int64_t app = insert_token("app-token-beta", "bob", "1800000000", 0);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "app-token-beta", 14, "someone-else", "leaked", NOW,
                                   &id2, &state),
              0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id2, app);
    CHECK_STR(token_state_name(state), "pending");
    CHECK_INT(qint("SELECT count(*) FROM tokens"), 2);
    CHECK_STR(qtext("SELECT subject || ',' || flag_reason FROM tokens WHERE id = %lld",
                    (long long)app),
              "bob,leaked");
    fp_of("app-token-beta", fp, hex);
    CHECK_STR(qtext("SELECT lower(hex(token_sha256)) FROM tokens WHERE id = %lld", (long long)app),
              hex);
    CHECK_INT(audit_count(app, "due", "requested"), 1);

    /* Application-made rows in other states: found, hashed, left as they are. */
    int64_t done_row = insert_token("app-token-gamma", NULL, NULL, 0);
    exec("UPDATE tokens SET state = 'revoked' WHERE id = %lld", (long long)done_row);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "app-token-gamma", 15, NULL, NULL, NOW, &id2, &state), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id2, done_row);
    CHECK_STR(token_state_name(state), "revoked");
    CHECK(qint("SELECT token_sha256 IS NOT NULL FROM tokens WHERE id = %lld", (long long)done_row)
          == 1);
    CHECK_INT(audit_count(done_row, "due", NULL), 0);

    /* The row that still holds the secret wins over one revoked before
     * with the same secret (an application issued it again). */
    exec("INSERT INTO tokens (token) VALUES ('reissued')");
    int64_t old_row = sqlite3_last_insert_rowid(db->conn);
    CHECK_INT(revoke_secret_now("reissued", &id2, &state), 0);
    exec("UPDATE tokens SET state = 'revoked', token = NULL WHERE id = %lld", (long long)old_row);
    exec("INSERT INTO tokens (token) VALUES ('reissued')");
    int64_t new_row = sqlite3_last_insert_rowid(db->conn);
    CHECK_INT(revoke_secret_now("reissued", &id2, &state), 0);
    CHECK_INT(id2, new_row);
    CHECK_STR(token_state_name(state), "pending");
    /* Once that one is revoked too, the secret is found by its hash. */
    exec("UPDATE tokens SET state = 'revoked', token = NULL WHERE id = %lld", (long long)new_row);
    CHECK_INT(revoke_secret_now("reissued", &id2, &state), 0);
    CHECK_INT(id2, old_row);
    CHECK_STR(token_state_name(state), "revoked");
    CHECK_INT(qint("SELECT count(*) FROM tokens WHERE token_sha256 = (SELECT token_sha256 FROM "
                   "tokens WHERE id = %lld)", (long long)old_row),
              2);

    /* An active row that knows the hash but lost its secret gets it back. */
    fp_of("lost-secret", fp, hex);
    exec("INSERT INTO tokens (token, token_sha256, fingerprint) VALUES (NULL, x'%s', '%s')", hex,
         fp);
    int64_t lost = sqlite3_last_insert_rowid(db->conn);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "lost-secret", 11, NULL, NULL, NOW, &id2, &state), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id2, lost);
    CHECK_STR(token_state_name(state), "pending");
    CHECK_STR(qtext("SELECT token FROM tokens WHERE id = %lld", (long long)lost), "lost-secret");

    /* Refused input; the outputs are left alone. */
    static char big[SECRET_MAX_LEN + 2];
    memset(big, 'b', sizeof(big) - 1);
    id2 = -7;
    CHECK_INT(tokens_revoke_secret(tk, au, "", 0, NULL, NULL, NOW, &id2, &state), -EINVAL);
    CHECK_INT(tokens_revoke_secret(tk, au, "a\0b", 3, NULL, NULL, NOW, &id2, &state), -EINVAL);
    CHECK_INT(tokens_revoke_secret(tk, au, big, SECRET_MAX_LEN + 1, NULL, NULL, NOW, &id2, &state),
              -EINVAL);
    CHECK_INT(tokens_revoke_secret(tk, au, NULL, 3, NULL, NULL, NOW, &id2, &state), -EINVAL);
    CHECK_INT(id2, -7);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, big, SECRET_MAX_LEN, NULL, NULL, NOW, &id2, &state), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(qint("SELECT length(token) FROM tokens WHERE id = %lld", (long long)id2),
              SECRET_MAX_LEN);
    fx_close();
}

/* ---- the hasher ---- */

static unsigned hash_new(unsigned limit)
{
    unsigned n = 12345;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_hash_new(tk, limit, &n), 0);
    REQUIRE(db_commit(db) == 0);
    return n;
}

static void test_hash_new(void)
{
    char fp[SECRET_FP_LEN + 1], hex[65];
    fx_open();
    int64_t a = insert_token("hash-alpha", "s", "1800000000", 0);
    int64_t b = insert_token("hash-beta", NULL, NULL, 0);
    int64_t none = insert_token(NULL, NULL, NULL, 0);
    int64_t empty = insert_token("", NULL, NULL, 0);
    exec("INSERT INTO tokens (token) VALUES (12345)"); /* not text: hashed as text */
    int64_t num = sqlite3_last_insert_rowid(db->conn);
    CHECK_INT(qint("SELECT count(*) FROM tokens WHERE token_sha256 IS NULL"), 5);

    /* A page at a time; a row without a token is never on the list. */
    CHECK_INT(hash_new(3), 3);
    CHECK_INT(hash_new(3), 1);
    CHECK_INT(hash_new(3), 0);
    CHECK_INT(hash_new(TOKENS_HASH_STEP + 5), 0); /* capped, not overrun */
    CHECK_INT(qint("SELECT count(*) FROM tokens WHERE token_sha256 IS NULL"), 1);
    CHECK_INT(qint("SELECT token_sha256 IS NULL AND fingerprint IS NULL FROM tokens WHERE id = %lld",
                   (long long)none),
              1);
    const struct {
        int64_t id;
        const char *text;
    } want[] = {{a, "hash-alpha"}, {b, "hash-beta"}, {empty, ""}, {num, "12345"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        fp_of(want[i].text, fp, hex);
        CHECK_STR(qtext("SELECT lower(hex(token_sha256)) || ',' || coalesce(fingerprint, '-') "
                        "FROM tokens WHERE id = %lld",
                        (long long)want[i].id),
                  qtext("SELECT '%s,-'", hex));
    }
    /* Hashing changes nothing else: no state, no audit row. */
    CHECK_INT(qint("SELECT count(*) FROM tokens WHERE state <> 'active'"), 0);
    CHECK_INT(qint("SELECT count(*) FROM audit"), 0);

    /* Found by its hash now, and made due without a second hash. */
    int64_t id = 0;
    enum token_state state;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "hash-alpha", 10, NULL, NULL, NOW, &id, &state), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id, a);
    CHECK_STR(token_state_name(state), "pending");
    CHECK_INT(qint("SELECT count(*) FROM tokens"), 5);
    fp_of("hash-alpha", fp, NULL);
    CHECK_STR(qtext("SELECT fingerprint FROM tokens WHERE id = %lld", (long long)a), fp);

    /* A promoted row that the hasher had not reached is hashed on the way. */
    int64_t late = insert_token("hash-late", NULL, "1600000000", 0);
    CHECK_INT(promote(NOW, 10), 1);
    fp_of("hash-late", fp, hex);
    CHECK_STR(qtext("SELECT lower(hex(token_sha256)) FROM tokens WHERE id = %lld", (long long)late),
              hex);
    CHECK_INT(hash_new(10), 0);
    fx_close();
}

/* JWTs with exp NOW_S + 100 * n (the third part is not checked), and one
 * whose exp is text. */
#define JWT1 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIiwiZXhwIjoxNzAwMDAwMTAwfQ.sig1"
#define JWT2 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJiIiwiZXhwIjoxNzAwMDAwMjAwfQ.sig2"
#define JWT3 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjIiwiZXhwIjoxNzAwMDAwMzAwfQ.sig3"
#define JWT4 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkIiwiZXhwIjoxNzAwMDAwNDAwfQ.sig4"
#define JWT_TEXT_EXP "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJlIiwiZXhwIjoic29vbiJ9.sig5"

/* Hash on sight reads a JWT's exp: a NULL expires_at takes it, a later one
 * is lowered to it, anything else is the row's (or the bad-expiry rules'). */
static void test_hash_jwt_expiry(void)
{
    static const struct {
        const char *token, *expires_at, *state;
        bool jwt_expiry;
        const char *want; /* expires_at afterwards, as text */
    } cases[] = {
        {JWT1, "NULL", "active", true, "1700000100"},
        {JWT2, "1700009999", "active", true, "1700000200"},       /* later: lowered */
        {JWT3, "1700000000", "active", true, "1700000000"},       /* earlier: kept */
        {JWT4, "1700000400000", "active", true, "1700000400000"}, /* milliseconds: sql/005's */
        {JWT4, "'soon'", "active", true, "soon"},                 /* text: sql/005's */
        {JWT_TEXT_EXP, "NULL", "active", true, "(null)"},         /* no usable exp */
        {"opaque-token-1", "NULL", "active", true, "(null)"},
        {JWT1, "NULL", "active", false, "(null)"}, /* jwt_expiry = false */
        {JWT2, "NULL", "failed", true, "(null)"},  /* not active: not ours to change */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx_open();
        tokens_set_jwt_expiry(tk, cases[i].jwt_expiry);
        exec("INSERT INTO tokens (token, expires_at, state) VALUES ('%s', %s, '%s')", cases[i].token,
             cases[i].expires_at, cases[i].state);
        CHECK_INT(hash_new(10), 1);
        const char *got = qtext("SELECT expires_at FROM tokens");
        if (strcmp(got, cases[i].want) != 0)
            fprintf(stderr, "case %zu\n", i);
        CHECK_STR(got, cases[i].want);
        CHECK_INT(qint("SELECT token_sha256 IS NOT NULL FROM tokens"), 1);
        CHECK_INT(qint("SELECT count(*) FROM audit"), 0); /* no audit row */
        fx_close();
    }
}

static int track(const char *token, const char *subject, int64_t expires_at, struct tokens_tracked *ret)
{
    REQUIRE(db_begin(db) == 0);
    int rc = tokens_track(tk, token, strlen(token), subject, expires_at, ret);
    REQUIRE(db_commit(db) == 0);
    return rc;
}

static void test_track(void)
{
    struct tokens_tracked tr;
    char fp[SECRET_FP_LEN + 1], hex[65];

    fx_open();
    tokens_set_jwt_expiry(tk, true);
    /* A new row: active, hashed, with its fingerprint, subject and expiry. */
    CHECK_INT(track("opaque-track-1", "alice", NOW_S + 60, &tr), 0);
    CHECK(tr.created);
    CHECK_STR(token_state_name(tr.state), "active");
    CHECK_INT(tr.expires_at, NOW_S + 60);
    fp_of("opaque-track-1", fp, hex);
    CHECK_STR(
        qtext("SELECT state || ',' || subject || ',' || expires_at || ',' || lower(hex(token_sha256)) || "
              "',' || fingerprint FROM tokens WHERE id = %lld",
              (long long)tr.id),
        qtext("SELECT 'active,alice,%lld,%s,%s'", (long long)(NOW_S + 60), hex, fp));
    int64_t first = tr.id;
    /* The same secret again: the row that is there, no second one. */
    CHECK_INT(track("opaque-track-1", NULL, NOW_S + 90, &tr), 0);
    CHECK(!tr.created);
    CHECK_INT(tr.id, first);
    CHECK_INT(tr.expires_at, NOW_S + 60); /* later: the row's stays */
    CHECK_INT(qint("SELECT count(*) FROM tokens"), 1);
    /* Earlier: the row takes it. */
    CHECK_INT(track("opaque-track-1", NULL, NOW_S + 30, &tr), 0);
    CHECK_INT(tr.expires_at, NOW_S + 30);
    CHECK_INT(qint("SELECT expires_at FROM tokens WHERE id = %lld", (long long)first), NOW_S + 30);

    /* A JWT: its exp without expires_at, and where it is earlier. */
    CHECK_INT(track(JWT1, NULL, 0, &tr), 0);
    CHECK_INT(tr.expires_at, NOW_S + 100);
    CHECK_INT(track(JWT2, NULL, NOW_S + 5000, &tr), 0);
    CHECK_INT(tr.expires_at, NOW_S + 200);
    CHECK_INT(track(JWT3, NULL, NOW_S + 10, &tr), 0);
    CHECK_INT(tr.expires_at, NOW_S + 10);

    /* No expiry from either: nothing is written. */
    CHECK_INT(track("opaque-track-2", NULL, 0, &tr), -ENODATA);
    CHECK_INT(track(JWT_TEXT_EXP, NULL, 0, &tr), -ENODATA);
    CHECK_INT(track("bad token", NULL, NOW_S + 60, &tr), -EINVAL);
    tokens_set_jwt_expiry(tk, false);
    CHECK_INT(track(JWT4, NULL, 0, &tr), -ENODATA);
    tokens_set_jwt_expiry(tk, true);
    CHECK_INT(qint("SELECT count(*) FROM tokens"), 4);

    /* An application's row the hasher has not reached: found by its secret,
     * hashed, and given the expiry it lacked. */
    int64_t app = insert_token("app-row-1", NULL, NULL, 0);
    CHECK_INT(track("app-row-1", NULL, 0, &tr), -ENODATA); /* active for ever otherwise */
    CHECK_INT(track("app-row-1", NULL, NOW_S + 70, &tr), 0);
    CHECK(!tr.created);
    CHECK_INT(tr.id, app);
    CHECK_INT(qint("SELECT expires_at FROM tokens WHERE id = %lld", (long long)app), NOW_S + 70);
    fp_of("app-row-1", fp, hex);
    CHECK_STR(qtext("SELECT lower(hex(token_sha256)) FROM tokens WHERE id = %lld", (long long)app), hex);
    CHECK_INT(hash_new(10), 0);

    /* An expires_at the hasher cannot read as a time (it would fail the
     * row: never revoked) takes track's; without one it is an error. One
     * before 2000 is due now and stays. */
    static const char *const unreadable[] = {
        "4611686018427387904", "9223372036854775807", "1e300", "'tomorrow'", "x'00'", "1795000000000"};
    for (size_t i = 0; i < sizeof(unreadable) / sizeof(unreadable[0]); i++) {
        char tok[32];
        snprintf(tok, sizeof(tok), "app-bad-expiry-%zu", i);
        int64_t bad = insert_token(tok, NULL, unreadable[i], 0);
        CHECK_INT(track(tok, NULL, 0, &tr), -ENODATA);
        CHECK_INT(track(tok, NULL, NOW_S + 80, &tr), 0);
        CHECK_INT(tr.id, bad);
        CHECK_STR(token_state_name(tr.state), "active");
        CHECK_INT(tr.expires_at, NOW_S + 80);
        CHECK_STR(qtext("SELECT typeof(expires_at) || ',' || expires_at FROM tokens WHERE id = %lld",
                        (long long)bad),
                  qtext("SELECT 'integer,%lld'", (long long)(NOW_S + 80)));
    }
    int64_t early = insert_token("app-early-expiry", NULL, "5", 0);
    CHECK_INT(track("app-early-expiry", NULL, NOW_S + 80, &tr), 0);
    CHECK_INT(tr.expires_at, 5);
    CHECK_INT(qint("SELECT expires_at FROM tokens WHERE id = %lld", (long long)early), 5);
    CHECK_INT(hash_new(10), 0);
    exec("DELETE FROM tokens WHERE token LIKE 'app-%%-expiry%%'");

    /* A finished row is only reported. */
    exec("UPDATE tokens SET state = 'revoked', token = NULL WHERE id = %lld", (long long)first);
    CHECK_INT(track("opaque-track-1", NULL, NOW_S + 1, &tr), 0);
    CHECK_INT(tr.id, first);
    CHECK_STR(token_state_name(tr.state), "revoked");
    CHECK_INT(qint("SELECT expires_at FROM tokens WHERE id = %lld", (long long)first), NOW_S + 30);
    CHECK_INT(qint("SELECT count(*) FROM audit"), 0);
    fx_close();
}

/* An application that writes a new secret into a hashed row leaves a stale
 * hash: making the row due stores the right one (what it sends). */
static void test_hash_secret_rewritten(void)
{
    char fp[SECRET_FP_LEN + 1], hex[65];
    enum token_state state;
    int64_t id = 0;
    fx_open();
    int64_t row = insert_token("first-secret", NULL, NULL, 0);
    CHECK_INT(hash_new(10), 1);
    exec("UPDATE tokens SET token = 'second-secret', flagged = 1 WHERE id = %lld", (long long)row);
    CHECK_INT(hash_new(10), 0); /* not the hasher's: it has a hash */
    CHECK_INT(promote(NOW, 10), 1);
    fp_of("second-secret", fp, hex);
    CHECK_STR(qtext("SELECT lower(hex(token_sha256)) || ',' || fingerprint FROM tokens "
                    "WHERE id = %lld",
                    (long long)row),
              qtext("SELECT '%s,%s'", hex, fp));
    CHECK_STR(qtext("SELECT fingerprint FROM audit WHERE token_id = %lld AND event = 'due'",
                    (long long)row),
              fp);
    /* Found by the new secret now. */
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "second-secret", 13, NULL, NULL, NOW, &id, &state), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id, row);
    CHECK_STR(token_state_name(state), "pending");

    /* Two hashed rows of the same token: the one that still holds it wins. */
    int64_t old_row = insert_token("twice", NULL, NULL, 0);
    CHECK_INT(hash_new(10), 1);
    exec("UPDATE tokens SET state = 'revoked', token = NULL WHERE id = %lld", (long long)old_row);
    int64_t new_row = insert_token("twice", NULL, NULL, 0);
    CHECK_INT(hash_new(10), 1);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "twice", 5, NULL, NULL, NOW, &id, &state), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(id, new_row);
    CHECK_STR(token_state_name(state), "pending");
    fx_close();
}

/* A schema-2 file (rows hashed when they were made due) is upgraded: its
 * unhashed rows go on the hasher's list and stay findable meanwhile. */
static void test_upgrade_from_schema_2(void)
{
    char path[128];
    enum token_state state;
    sqlite3 *raw;
    int64_t id = 0;
    snprintf(dir, sizeof(dir), "/tmp/test_tokens.XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/t.db", dir);
    REQUIRE(sqlite3_open(path, &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(schema_version >= 3);
    for (unsigned i = 0; i < 2; i++)
        REQUIRE(sqlite3_exec(raw, schema_migrations[i], NULL, NULL, NULL) == SQLITE_OK);
    uint8_t sha[SECRET_SHA256_LEN];
    char hex[65];
    secret_sha256("was-revoked", 11, sha);
    secret_hex(sha, hex);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "PRAGMA user_version = 2;"
             "INSERT INTO tokens (id, token) VALUES (1, 'still-active');"
             "INSERT INTO tokens (id, token, state, token_sha256) VALUES (2, NULL, 'revoked', x'%s');",
             hex);
    REQUIRE(sqlite3_exec(raw, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(raw);

    snprintf(path, sizeof(path), "%s/t.db", dir);
    REQUIRE(db_open(path, 0, &db) == 0);
    REQUIRE(audit_open(db, &au) == 0);
    REQUIRE(tokens_open(db, &tk) == 0);
    CHECK_INT(qint("PRAGMA user_version"), schema_version);
    CHECK_INT(qint("SELECT count(*) FROM sqlite_schema WHERE name = 'tokens_secret'"), 0);
    /* Before the hasher: by its secret; the revoked one by its hash. */
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "was-revoked", 11, NULL, NULL, NOW, &id, &state), 0);
    CHECK_INT(id, 2);
    CHECK_STR(token_state_name(state), "revoked");
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(hash_new(10), 1);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_secret(tk, au, "still-active", 12, NULL, NULL, NOW, &id, &state), 0);
    CHECK_INT(id, 1);
    CHECK_STR(token_state_name(state), "pending");
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(qint("SELECT count(*) FROM tokens"), 2);
    fx_close();
}

/* The names of the b-trees whose pages the WAL holds, as ",name,name,":
 * what was written since the WAL was last cut, mapped with dbstat. */
static const char *wal_btrees(void)
{
    static char names[1024];
    char path[128];
    unsigned char hdr[32], fh[24];
    snprintf(path, sizeof(path), "%s/t.db-wal", dir);
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    names[0] = '\0';
    if (fread(hdr, 1, sizeof(hdr), f) == sizeof(hdr)) {
        uint32_t page_size = (uint32_t)hdr[8] << 24 | hdr[9] << 16 | hdr[10] << 8 | hdr[11];
        while (fread(fh, 1, sizeof(fh), f) == sizeof(fh)) {
            uint32_t pgno = (uint32_t)fh[0] << 24 | fh[1] << 16 | fh[2] << 8 | fh[3];
            REQUIRE(fseek(f, (long)page_size, SEEK_CUR) == 0);
            const char *name = qtext("SELECT name FROM dbstat WHERE pageno = %u", pgno);
            char item[80];
            snprintf(item, sizeof(item), ",%s,", name);
            if (!strstr(names, item)) /* ",a," + "b," */
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s",
                         names[0] ? item + 1 : item);
        }
    }
    fclose(f);
    return names;
}

static void cut_wal(void)
{
    REQUIRE(sqlite3_wal_checkpoint_v2(db->conn, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) ==
            SQLITE_OK);
    CHECK_STR(wal_btrees(), "");
}

/* The point of schema 3: once a row is hashed, making it due and revoking
 * it write no page of the lookup indexes, which are random pages in a large
 * table. The WAL says which b-trees each step wrote. */
static void test_hot_path_pages(void)
{
    fx_open();
    exec("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000) "
         "INSERT INTO tokens (token, subject, expires_at) "
         "SELECT printf('tok-%%08x-%%d', abs(random()), i), 'user-' || (i %% 97), 1800000000 FROM s");
    int64_t due = insert_token("the-due-one", "user-1", "1600000000", 0);
    /* The hasher writes the lookup indexes: the check below can see them. */
    cut_wal();
    while (hash_new(TOKENS_HASH_STEP) == TOKENS_HASH_STEP)
        ;
    const char *w = wal_btrees();
    CHECK(strstr(w, ",tokens_sha256,") != NULL);
    CHECK(strstr(w, ",tokens_unhashed,") != NULL);

    cut_wal();
    CHECK_INT(promote(NOW, 10), 1);
    w = wal_btrees();
    printf("promotion wrote: %s\n", w);
    CHECK(strstr(w, ",tokens,") != NULL);
    CHECK(strstr(w, ",tokens_sha256,") == NULL);
    CHECK(strstr(w, ",tokens_unhashed,") == NULL);
    CHECK(strstr(w, ",tokens_subject,") == NULL);

    cut_wal();
    struct outcome_record r = {.token_id = due, .fingerprint = "x", .event = AUDIT_REVOKED,
                               .state = TOKEN_REVOKED, .attempt = 1, .http_status = 200,
                               .duration_ms = 3, .at_ms = NOW + 5, .drop_secret = true};
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
    REQUIRE(db_commit(db) == 0);
    w = wal_btrees();
    printf("revocation wrote: %s\n", w);
    CHECK(strstr(w, ",tokens,") != NULL);
    CHECK(strstr(w, ",tokens_sha256,") == NULL);
    CHECK(strstr(w, ",tokens_unhashed,") == NULL);
    CHECK(strstr(w, ",tokens_subject,") == NULL);
    CHECK_STR(qtext("SELECT coalesce(token, 'gone') FROM tokens WHERE id = %lld", (long long)due),
              "gone");
    fx_close();
}

static void test_revoke_id(void)
{
    fx_open();
    bool changed = true;
    int64_t act = insert_token("tok-id", NULL, "1800000000", 0);
    int64_t none = insert_token(NULL, NULL, NULL, 0);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_id(tk, au, 424242, "x", NOW, &changed), -ENOENT);
    CHECK(changed); /* untouched */
    CHECK_INT(tokens_revoke_id(tk, au, act, "user request", NOW, &changed), 0);
    CHECK(changed);
    CHECK_INT(tokens_revoke_id(tk, au, act, "twice", NOW, &changed), 0);
    CHECK(!changed);
    CHECK_INT(tokens_revoke_id(tk, au, none, NULL, NOW, &changed), 0);
    CHECK(changed);
    REQUIRE(db_commit(db) == 0);
    CHECK_STR(qtext("SELECT state || ',' || due_reason || ',' || flag_reason FROM tokens WHERE id "
                    "= %lld",
                    (long long)act),
              "pending,requested,user request");
    CHECK_INT(audit_count(act, "due", "requested"), 1);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)none), "failed");
    CHECK_INT(audit_count(none, "rejected", "no token to revoke (requested)"), 1);
    fx_close();
}

struct idlist {
    int n;
    int64_t ids[16];
};

static void on_id(void *ud, int64_t id)
{
    struct idlist *l = ud;
    if (l->n < 16)
        l->ids[l->n++] = id;
}

static void test_revoke_subject(void)
{
    fx_open();
    int64_t a0 = insert_token("a0", "alice", NULL, 0);
    exec("UPDATE tokens SET state = 'failed' WHERE id = %lld", (long long)a0);
    int64_t a1 = insert_token("a1", "alice", NULL, 0);
    int64_t b1 = insert_token("b1", "bob", NULL, 0);
    int64_t a2 = insert_token("a2", "alice", "1800000000", 0);
    int64_t a3 = insert_token("a3", "alice", NULL, 0);
    int64_t a4 = insert_token("a4", "alice", NULL, 0);
    exec("UPDATE tokens SET state = 'revoked' WHERE id = %lld", (long long)a4);
    insert_token("x", "alice-2", NULL, 0);

    struct idlist l = {0};
    unsigned count = 99;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_subject(tk, au, "alice", "offboarded", NOW, &count, on_id, &l), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(count, 3);
    CHECK_INT(l.n, 3);
    CHECK_INT(l.ids[0], a1);
    CHECK_INT(l.ids[1], a2);
    CHECK_INT(l.ids[2], a3);
    CHECK_INT(qint("SELECT count(*) FROM tokens WHERE state = 'pending' AND subject = 'alice' "
                   "AND flag_reason = 'offboarded'"),
              3);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)b1), "active");
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)a4), "revoked");
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)a0), "failed");
    CHECK_INT(qint("SELECT count(*) FROM audit WHERE event = 'due' AND detail = 'requested'"), 3);

    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_revoke_subject(tk, au, "alice", NULL, NOW, &count, NULL, NULL), 0);
    CHECK_INT(count, 0);
    CHECK_INT(tokens_revoke_subject(tk, au, "nobody", NULL, NOW, &count, NULL, NULL), 0);
    CHECK_INT(count, 0);
    CHECK_INT(tokens_revoke_subject(tk, au, NULL, NULL, NOW, &count, NULL, NULL), -EINVAL);
    REQUIRE(db_commit(db) == 0);
    fx_close();
}

static void test_status(void)
{
    fx_open();
    struct token_status s;
    memset(&s, 0x55, sizeof(s));
    CHECK_INT(tokens_status(tk, 77, &s), -ENOENT);
    CHECK_INT(s.id, 0x5555555555555555LL); /* untouched */

    char subject[301];
    memset(subject, 's', 300);
    subject[300] = '\0';
    int64_t id = insert_token("tok-status", subject, "1700000500", 0);
    CHECK_INT(tokens_status(tk, id, &s), 0);
    CHECK_INT(s.id, id);
    CHECK_STR(token_state_name(s.state), "active");
    CHECK_STR(s.fingerprint, "");
    CHECK_INT(strlen(s.subject), 255);
    CHECK_INT(s.expires_at, 1700000500);
    CHECK_INT(s.next_attempt_at, 0);
    CHECK_INT(s.due_at, 0);
    CHECK_STR(s.last_event, "");
    CHECK_STR(s.reason, "");

    exec("UPDATE tokens SET flagged = 1, flag_reason = 'password reset'");
    CHECK_INT(promote(NOW, 1), 1);
    struct outcome_record r = {.token_id = id, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
                               .attempts = 1, .attempt = 1, .http_status = 500,
                               .last_error = "HTTP 500", .duration_ms = 1, .at_ms = NOW + 1,
                               .next_attempt_at = NOW + 1000};
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
    REQUIRE(db_commit(db) == 0);
    char fp[17];
    fp_of("tok-status", fp, NULL);
    CHECK_INT(tokens_status(tk, id, &s), 0);
    CHECK_STR(token_state_name(s.state), "pending");
    CHECK_STR(s.fingerprint, fp);
    CHECK_INT(s.attempts, 1);
    CHECK_STR(s.last_event, "retry");
    CHECK_STR(s.last_error, "HTTP 500");
    CHECK_INT(s.next_attempt_at, NOW + 1000);
    CHECK_INT(s.due_at, NOW);
    CHECK_INT(s.finished_at, 0);
    CHECK_STR(s.reason, "password reset");
    fx_close();
}

static void test_requeue(void)
{
    fx_open();
    int64_t f1 = make_pending("fail-1"), f2 = make_pending("fail-2"), f3 = make_pending("fail-3");
    int64_t act = insert_token("still-active", NULL, NULL, 0);
    for (int64_t id = f1; id <= f3; id++) {
        struct outcome_record r = {.token_id = id, .event = AUDIT_GAVE_UP, .state = TOKEN_FAILED,
                                   .attempts = 8, .attempt = 8, .http_status = 500,
                                   .last_error = "HTTP 500", .duration_ms = 1,
                                   .at_ms = NOW + 10};
        REQUIRE(db_begin(db) == 0);
        CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
        REQUIRE(db_commit(db) == 0);
    }
    exec("UPDATE tokens SET token = NULL WHERE id = %lld", (long long)f3); /* secret gone */

    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_requeue_id(tk, au, 999, NOW), -ENOENT);
    CHECK_INT(tokens_requeue_id(tk, au, act, NOW), -EINVAL);
    CHECK_INT(tokens_requeue_id(tk, au, f3, NOW), -EINVAL);
    CHECK_INT(tokens_requeue_id(tk, au, f1, NOW + 100), 0);
    CHECK_INT(tokens_requeue_id(tk, au, f1, NOW + 100), -EINVAL); /* pending now */
    REQUIRE(db_commit(db) == 0);
    CHECK_STR(qtext("SELECT state || ',' || attempts || ',' || next_attempt_at || ',' || "
                    "last_event || ',' || (last_error IS NULL) || ',' || (finished_at IS NULL) "
                    "FROM tokens WHERE id = %lld",
                    (long long)f1),
              qtext("SELECT 'pending,0,%lld,requeued,1,1'", NOW + 100));
    CHECK_INT(audit_count(f1, "requeued", NULL), 1);
    CHECK_INT(audit_count(f3, "requeued", NULL), 0);

    /* Every failed row that still has its secret. */
    unsigned count = 99;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_requeue_failed(tk, au, NOW + 200, &count), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(count, 1);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)f2), "pending");
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)f3), "failed");
    CHECK_INT(audit_count(f2, "requeued", NULL), 1);
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_requeue_failed(tk, au, NOW + 300, &count), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(count, 0);

    /* Requeued rows are fetched again. */
    struct fetched f = {0};
    CHECK_INT(tokens_fetch_due(tk, NOW + 200, 16, on_row, &f), 0);
    CHECK_INT(tokens_fetch_urgent(tk, NOW + 200, 16, on_row, &f), 0); /* the flagged ones */
    CHECK_INT(f.n, 2);
    CHECK_INT(f.attempts[0], 0);
    fx_close();
}

static void test_counts(void)
{
    fx_open();
    struct state_counts c;
    CHECK_INT(tokens_count(tk, true, &c), 0);
    CHECK_INT(c.active + c.pending + c.revoked + c.failed, 0);
    static const char *const states[] = {"active", "active", "active", "pending", "pending",
                                         "revoked", "failed", "failed", "failed", "failed"};
    for (size_t i = 0; i < 10; i++) {
        int64_t id = insert_token("c", NULL, NULL, 0);
        exec("UPDATE tokens SET state = '%s', next_attempt_at = 1 WHERE id = %lld", states[i],
             (long long)id);
    }
    /* One pending row in each lane: both are counted. */
    exec("UPDATE tokens SET due_reason = 'flagged' WHERE id = (SELECT min(id) FROM tokens WHERE state = "
         "'pending')");
    CHECK_INT(tokens_count(tk, false, &c), 0);
    CHECK_INT(c.pending, 2);
    CHECK_INT(c.failed, 4);
    CHECK_INT(c.active, -1); /* not counted */
    CHECK_INT(c.revoked, -1);
    CHECK_INT(tokens_count(tk, true, &c), 0);
    CHECK_INT(c.active, 3);
    CHECK_INT(c.pending, 2);
    CHECK_INT(c.revoked, 1);
    CHECK_INT(c.failed, 4);

    /* The cheap count stops at the cap; the full one does not. */
    exec("INSERT INTO tokens (token, state, next_attempt_at) WITH RECURSIVE s(i) AS (SELECT 1 "
         "UNION ALL SELECT i + 1 FROM s WHERE i < %d) SELECT 'p', 'pending', 1 FROM s",
         TOKENS_COUNT_CAP + 5);
    CHECK_INT(tokens_count(tk, false, &c), 0);
    CHECK_INT(c.pending, TOKENS_COUNT_CAP);
    CHECK_INT(c.failed, 4);
    CHECK_INT(tokens_count(tk, true, &c), 0);
    CHECK_INT(c.pending, TOKENS_COUNT_CAP + 7);
    fx_close();
}

/* ---- query plans ---- */

/* The plan of sql, one line per step, "|"-separated. */
static void plan_of(sqlite3 *conn, const char *sql, char *out, size_t len)
{
    char eqp[4096];
    sqlite3_stmt *st;
    snprintf(eqp, sizeof(eqp), "EXPLAIN QUERY PLAN %s", sql);
    REQUIRE(sqlite3_prepare_v2(conn, eqp, -1, &st, NULL) == SQLITE_OK);
    size_t used = 0;
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW && used < len) {
        int n = snprintf(out + used, len - used, "%s|", (const char *)sqlite3_column_text(st, 3));
        used += n > 0 ? (size_t)n : 0;
    }
    sqlite3_finalize(st);
}

/* A plan that reads the whole table, or sorts what it read. */
static bool plan_scans(const char *plan)
{
    const char *p = plan;
    while ((p = strstr(p, "SCAN tokens")) != NULL) {
        p += strlen("SCAN tokens");
        if (strncmp(p, " USING ", 7) != 0) /* no index: a full table scan */
            return true;
    }
    return strstr(plan, "TEMP B-TREE") != NULL;
}

static void test_query_plans(void)
{
    fx_open();
    /* The checker itself sees a scan when there is one. */
    char plan[1024];
    plan_of(db->conn, "SELECT id FROM tokens WHERE flag_reason = 'x'", plan, sizeof(plan));
    CHECK(plan_scans(plan));
    plan_of(db->conn, "SELECT id FROM tokens WHERE state = 'pending' ORDER BY due_at", plan,
            sizeof(plan));
    CHECK(plan_scans(plan));

    /* Every statement tokens_open() prepared on this connection. */
    int checked = 0, full = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(db->conn, NULL); st;
         st = sqlite3_next_stmt(db->conn, st)) {
        const char *sql = sqlite3_sql(st);
        if (!strstr(sql, " tokens"))
            continue; /* db's and audit's own */
        plan_of(db->conn, sql, plan, sizeof(plan));
        checked++;
        if (strstr(sql, "GROUP BY state")) { /* the one scan, for `stats` only */
            full++;
            continue;
        }
        if (plan[0] == '\0') { /* nothing read: a plain INSERT */
            CHECK(strncmp(sql, "INSERT INTO tokens", 18) == 0);
            continue;
        }
        if (plan_scans(plan) || (!strstr(plan, "INDEX") && !strstr(plan, "PRIMARY KEY")))
            fprintf(stderr, "scan: %s\n  plan: %s\n", sql, plan);
        CHECK(!plan_scans(plan));
        CHECK(strstr(plan, "INDEX") || strstr(plan, "PRIMARY KEY"));
    }
    CHECK(checked >= 20);
    CHECK_INT(full, 1);

    /* Without its index, tokens_open() refuses instead of scanning. */
    struct tokens *t2 = (struct tokens *)&t2;
    exec("DROP INDEX tokens_next");
    CHECK(tokens_open(db, &t2) < 0);
    CHECK(t2 == (struct tokens *)&t2);
    CHECK(strstr(db_errmsg(db), "no such index: tokens_next") != NULL);
    fx_close();
}

/* ---- timing with a million rows (printed, not asserted) ---- */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int count_rows(void *ud, const struct pending_row *row)
{
    (void)row;
    (*(unsigned *)ud)++;
    return 0;
}

static void test_timing_million_rows(void)
{
    fx_open();
    double t0 = now_us();
    /* 94 % active (1,000 of them expired, 1 in 1,000 with a far expiry),
     * 3 % pending (half of them due), 2 % revoked, 1 % failed. */
    exec("BEGIN;"
         "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
         "INSERT INTO tokens (token, subject, expires_at, state, next_attempt_at, token_sha256, "
         "fingerprint) "
         "SELECT CASE WHEN x %% 100 IN (3, 4) THEN NULL ELSE 'tok-' || x END, "
         "'user-' || (x %% 50000), "
         "CASE WHEN x %% 1000 = 0 THEN NULL WHEN x <= 1000 THEN %lld - x ELSE %lld + x END, "
         "CASE x %% 100 WHEN 0 THEN 'pending' WHEN 1 THEN 'pending' WHEN 2 THEN 'pending' "
         "WHEN 3 THEN 'revoked' WHEN 4 THEN 'revoked' WHEN 5 THEN 'failed' ELSE 'active' END, "
         "CASE WHEN x %% 100 < 3 THEN %lld + (x %% 2000 - 1000) * 1000 END, "
         "CASE WHEN x %% 100 < 6 THEN randomblob(32) END, "
         "CASE WHEN x %% 100 < 6 THEN lower(hex(randomblob(8))) END "
         "FROM c;"
         "COMMIT",
         NOW_S, NOW_S + 3600, NOW);
    double t1 = now_us();
    printf("timing: built 1,000,000 rows in %.1f s\n", (t1 - t0) / 1e6);

    struct next_events n;
    int iters = 100000;
    t0 = now_us();
    for (int i = 0; i < iters; i++)
        REQUIRE(tokens_next_events(tk, NOW, NOW, &n) == 0);
    t1 = now_us();
    printf("timing: tokens_next_events: %.2f us/call\n", (t1 - t0) / iters);
    CHECK(!n.flagged);
    CHECK(n.expiry_ms <= NOW);
    CHECK(n.retry_ms > NOW && n.retry_ms <= NOW + 1000 * 1000);

    /* One expired row per call, inside one transaction. */
    unsigned moved = 0, c;
    int64_t due_rows = qint("SELECT count(*) FROM tokens WHERE state = 'active' AND "
                            "expires_at <= %lld", NOW_S);
    CHECK_INT(due_rows, 940);
    REQUIRE(db_begin(db) == 0);
    iters = (int)due_rows;
    t0 = now_us();
    for (int i = 0; i < iters; i++) {
        REQUIRE(tokens_promote_due(tk, au, NOW, 1, &c) == 0);
        moved += c;
    }
    t1 = now_us();
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(moved, iters);
    printf("timing: tokens_promote_due(limit 1), a row due: %.2f us/call\n", (t1 - t0) / iters);
    REQUIRE(db_begin(db) == 0);
    REQUIRE(tokens_promote_due(tk, au, NOW, 1000, &c) == 0);
    CHECK_INT(c, 0);
    iters = 100000;
    t0 = now_us();
    for (int i = 0; i < iters; i++)
        REQUIRE(tokens_promote_due(tk, au, NOW, 1, &c) == 0);
    t1 = now_us();
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(c, 0);
    printf("timing: tokens_promote_due(limit 1), nothing due: %.2f us/call\n", (t1 - t0) / iters);

    iters = 20000;
    unsigned rows = 0;
    t0 = now_us();
    for (int i = 0; i < iters; i++)
        REQUIRE(tokens_fetch_due(tk, NOW, 16, count_rows, &rows) == 0);
    t1 = now_us();
    CHECK_INT(rows, 16u * (unsigned)iters);
    printf("timing: tokens_fetch_due(limit 16): %.2f us/call\n", (t1 - t0) / iters);

    struct state_counts sc;
    iters = 20;
    t0 = now_us();
    for (int i = 0; i < iters; i++)
        REQUIRE(tokens_count(tk, false, &sc) == 0);
    t1 = now_us();
    CHECK_INT(sc.pending, TOKENS_COUNT_CAP); /* 30,000 and more */
    CHECK_INT(sc.failed, TOKENS_COUNT_CAP);  /* 10,000 */
    printf("timing: tokens_count(pending %lld+, failed %lld+): %.0f us/call\n",
           (long long)sc.pending, (long long)sc.failed, (t1 - t0) / iters);
    iters = 3;
    t0 = now_us();
    for (int i = 0; i < iters; i++)
        REQUIRE(tokens_count(tk, true, &sc) == 0);
    t1 = now_us();
    printf("timing: tokens_count(full, a scan): %.0f us/call\n", (t1 - t0) / iters);

    char tok[32];
    int64_t id;
    enum token_state state;
    iters = 4000;
    REQUIRE(db_begin(db) == 0);
    t0 = now_us();
    for (int i = 0; i < iters; i++) {
        int len = snprintf(tok, sizeof(tok), "new-%d", i);
        REQUIRE(tokens_revoke_secret(tk, au, tok, (size_t)len, NULL, NULL, NOW, &id, &state) == 0);
    }
    t1 = now_us();
    REQUIRE(db_commit(db) == 0);
    printf("timing: tokens_revoke_secret (new token): %.2f us/call\n", (t1 - t0) / iters);
    int wrong = 0;
    REQUIRE(db_begin(db) == 0);
    t0 = now_us();
    for (int i = 0; i < iters; i++) {
        int len = snprintf(tok, sizeof(tok), "tok-%d", 500000 + 100 * i + 50);
        REQUIRE(tokens_revoke_secret(tk, au, tok, (size_t)len, NULL, NULL, NOW, &id, &state) == 0);
        wrong += id != 500000 + 100 * i + 50; /* app row found by its secret */
    }
    t1 = now_us();
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(wrong, 0);
    printf("timing: tokens_revoke_secret (unhashed app row): %.2f us/call\n", (t1 - t0) / iters);
    fx_close();
}

/* ---- allocation failures ---- */

static sqlite3_mem_methods real_mem;
static int fail_countdown = -1; /* the n-th allocation from now fails; -1: none */
static int failures;

static void *fail_malloc(int n)
{
    if (fail_countdown == 0) {
        fail_countdown = -1;
        failures++;
        return NULL;
    }
    if (fail_countdown > 0)
        fail_countdown--;
    return real_mem.xMalloc(n);
}

static void *fail_realloc(void *p, int n)
{
    if (fail_countdown == 0) {
        fail_countdown = -1;
        failures++;
        return NULL;
    }
    if (fail_countdown > 0)
        fail_countdown--;
    return real_mem.xRealloc(p, n);
}

enum op {
    OP_REVOKE_SECRET,
    OP_PROMOTE,
    OP_OUTCOME,
    OP_REQUEUE_FAILED,
    OP_REVOKE_SUBJECT,
    OP_HASH_NEW
};

static int run_op(enum op op)
{
    unsigned count;
    int64_t id;
    enum token_state state;
    struct outcome_record r = {.token_id = 2, .event = AUDIT_REVOKED, .state = TOKEN_REVOKED,
                               .attempt = 1, .http_status = 200, .duration_ms = 1,
                               .at_ms = NOW, .drop_secret = true};
    switch (op) {
    case OP_REVOKE_SECRET:
        return tokens_revoke_secret(tk, au, "alloc-new", 9, "s", "r", NOW, &id, &state);
    case OP_PROMOTE:
        return tokens_promote_due(tk, au, NOW, 10, &count);
    case OP_OUTCOME:
        return tokens_record_outcome(tk, au, &r, NULL);
    case OP_REQUEUE_FAILED:
        return tokens_requeue_failed(tk, au, NOW, &count);
    case OP_REVOKE_SUBJECT:
        return tokens_revoke_subject(tk, au, "s", "r", NOW, &count, NULL, NULL);
    case OP_HASH_NEW:
        return tokens_hash_new(tk, 10, &count);
    }
    return -EINVAL;
}

static void test_allocation_failures(void)
{
    REQUIRE(sqlite3_shutdown() == SQLITE_OK);
    REQUIRE(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem) == SQLITE_OK);
    sqlite3_mem_methods m = real_mem;
    m.xMalloc = fail_malloc;
    m.xRealloc = fail_realloc;
    REQUIRE(sqlite3_config(SQLITE_CONFIG_MALLOC, &m) == SQLITE_OK);
    REQUIRE(sqlite3_initialize() == SQLITE_OK);

    static const enum op ops[] = {OP_REVOKE_SECRET,  OP_PROMOTE,        OP_OUTCOME,
                                  OP_REQUEUE_FAILED, OP_REVOKE_SUBJECT, OP_HASH_NEW};
    for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        int injected = 0;
        for (int nth = 0; nth < 2000; nth++) {
            fx_open();
            /* 1: flagged, 2: pending, 3: failed, 4..5: active of subject s */
            insert_token("a-1", "s", NULL, 1);
            insert_token("a-2", NULL, NULL, 0);
            exec("UPDATE tokens SET state = 'pending', next_attempt_at = %lld WHERE id = 2", NOW);
            insert_token("a-3", NULL, NULL, 0);
            exec("UPDATE tokens SET state = 'failed' WHERE id = 3");
            insert_token("a-4", "s", NULL, 0);
            int64_t audit_before = qint("SELECT count(*) FROM audit");

            REQUIRE(db_begin(db) == 0);
            int before = failures;
            fail_countdown = nth;
            int rc = run_op(ops[k]);
            fail_countdown = -1;
            bool hit = failures != before;
            if (rc == 0)
                rc = db_commit(db);
            if (rc < 0) {
                db_rollback(db);
                audit_forget(au);
            }
            if (!hit) {
                CHECK_INT(rc, 0);
            } else {
                injected++;
                CHECK(rc == 0 || rc == -ENOMEM || rc == -EIO);
                if (rc < 0) /* nothing half-done */
                    CHECK_INT(qint("SELECT count(*) FROM audit"), audit_before);
            }
            if (rc < 0) { /* the connection still works afterwards */
                REQUIRE(db_begin(db) == 0);
                CHECK_INT(run_op(ops[k]), 0);
                CHECK_INT(db_commit(db), 0);
            }
            fx_close();
            if (!hit)
                break;
        }
        printf("allocation failures: op %zu: %d allocation points failed one at a time\n", k,
               injected);
    }

    REQUIRE(sqlite3_shutdown() == SQLITE_OK);
    REQUIRE(sqlite3_config(SQLITE_CONFIG_MALLOC, &real_mem) == SQLITE_OK);
    REQUIRE(sqlite3_initialize() == SQLITE_OK);
}

/* sql/005-bad-expiry.sql: an expires_at that can never fall due. */
static void test_promote_bad_expiry(void)
{
    static const struct {
        const char *expires_at; /* SQL literal */
        const char *state;      /* after one promotion at NOW */
        int64_t seconds;        /* expires_at after it, for numbers kept; -1: not checked */
        const char *error;      /* last_error and the rejected audit detail; NULL: none */
    } cases[] = {
        {"1795000000000", "active", 1795000000, NULL},     /* ms: converted */
        {"1795000000001", "active", 1795000001, NULL},     /* rounded up, never earlier */
        {"1795000000000.5", "active", 1795000001, NULL},   /* REAL ms */
        {"946684800000", "pending", 946684800, NULL},      /* first ms accepted: 2000, past */
        {"1600000000000", "pending", 1600000000, NULL},    /* ms in the past: converted, then due */
        {"32503679999", "active", 32503679999, NULL},      /* last second before 3000: fine */
        {"32503680000", "failed", -1, "expires_at is not a time: 32503680000 is after the year 3000 in seconds"},
        {"946684799999", "failed", -1, "expires_at is not a time: 946684799999 is after the year 3000 in seconds"},
        {"32503680000000", "failed", -1, "expires_at is not a time: 32503680000000 is after the year 3000 in seconds"},
        {"9223372036854775807", "failed", -1,
         "expires_at is not a time: 9223372036854775807 is after the year 3000 in seconds"},
        {"1e300", "failed", -1, "expires_at is not a time: 1e+300 is after the year 3000 in seconds"},
        {"'tomorrow'", "failed", -1, "expires_at is not a time: it is text, not Unix seconds"},
        {"'1795000000'", "active", 1795000000, NULL},     /* INTEGER affinity: stored as a number */
        {"x'00'", "failed", -1, "expires_at is not a time: it is a blob, not Unix seconds"},
    };
    fx_open();
    struct tokens_tally before = tokens_tally(tk);
    unsigned converted = 0, rejected = 0;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int64_t id = insert_token("tok-bad", NULL, cases[i].expires_at, 0);
        /* Twice: the second call finds a converted row due or not, like any other. */
        promote(NOW, 10);
        promote(NOW, 10);
        if (strcmp(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)id), cases[i].state) != 0)
            fprintf(stderr, "bad expiry case %zu (%s)\n", i, cases[i].expires_at);
        CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)id), cases[i].state);
        if (cases[i].seconds >= 0) {
            CHECK_INT(qint("SELECT expires_at FROM tokens WHERE id = %lld", (long long)id), cases[i].seconds);
            converted += cases[i].seconds != qint("SELECT %s", cases[i].expires_at);
        }
        if (cases[i].error) {
            rejected++;
            CHECK_STR(qtext("SELECT last_error FROM tokens WHERE id = %lld", (long long)id), cases[i].error);
            CHECK_INT(audit_count(id, "rejected", cases[i].error), 1);
            CHECK_INT(qint("SELECT count(*) FROM audit WHERE token_id = %lld", (long long)id), 1);
            CHECK(qint("SELECT finished_at FROM tokens WHERE id = %lld", (long long)id) == NOW);
        }
        exec("UPDATE tokens SET state = 'revoked' WHERE state <> 'failed'");
    }
    struct tokens_tally after = tokens_tally(tk);
    CHECK_INT(after.expiry_converted - before.expiry_converted, converted);
    CHECK_INT(after.expiry_rejected - before.expiry_rejected, rejected);
    CHECK_INT(converted, 5);
    CHECK_INT(rejected, 7);

    /* A flagged row is revoked for its flag, whatever its expires_at says. */
    int64_t id = insert_token("tok-bad-flagged", NULL, "'soon'", 1);
    CHECK_INT(promote(NOW, 10), 1);
    CHECK_STR(qtext("SELECT state || ' ' || due_reason FROM tokens WHERE id = %lld", (long long)id),
              "pending flagged");
    /* A row without a token that falls due is counted as rejected too. */
    before = tokens_tally(tk);
    insert_token(NULL, NULL, NULL, 1);
    CHECK_INT(promote(NOW, 10), 1);
    CHECK_INT(tokens_tally(tk).no_token - before.no_token, 1);
    /* The index holds nothing once every row was handled. */
    CHECK_INT(qint("SELECT count(*) FROM tokens INDEXED BY tokens_bad_expiry "
                   "WHERE state = 'active' AND expires_at >= 32503680000"),
              0);
    fx_close();
}

/* ---- the urgent lane (sql/006-urgent-lane.sql) ---- */

struct lane_rows {
    int n;
    int64_t id[16];
    bool urgent[16];
};

static int on_lane_row(void *ud, const struct pending_row *row)
{
    struct lane_rows *l = ud;
    if (l->n < 16) {
        l->id[l->n] = row->id;
        l->urgent[l->n] = row->urgent;
    }
    l->n++;
    return 0;
}

static void test_urgent_lane(void)
{
    fx_open();
    struct lane_rows l = {0};
    struct next_events n;
    enum token_state state;
    int64_t req;

    /* Promoted by the rules: expired is routine, flagged urgent. */
    int64_t exp1 = insert_token("u-exp1", NULL, "1699999000", 0);
    int64_t flag1 = insert_token("u-flag1", NULL, "1800000000", 1);
    int64_t exp2 = insert_token("u-exp2", NULL, "1699999001", 0);
    CHECK_INT(promote(NOW - 20, 100), 3);
    /* Requested over the socket: urgent. */
    CHECK_INT(revoke_secret_now("u-req1", &req, &state), 0);
    /* An urgent retry waiting for its backoff, an expired one, and an
     * urgent row without its secret (never fetched). */
    int64_t later = insert_token("u-later", NULL, NULL, 1);
    int64_t bare = insert_token("u-bare", NULL, NULL, 1);
    CHECK_INT(promote(NOW - 30, 100), 2);
    exec("UPDATE tokens SET next_attempt_at = %lld WHERE id = %lld", NOW + 100, (long long)later);
    exec("UPDATE tokens SET token = NULL WHERE id = %lld", (long long)bare);
    exec("UPDATE tokens SET next_attempt_at = %lld WHERE id = %lld", NOW + 50, (long long)exp2);
    CHECK_STR(qtext("SELECT group_concat(due_reason) FROM tokens WHERE id IN (%lld, %lld, %lld)",
                    (long long)exp1, (long long)flag1, (long long)req),
              "expired,flagged,requested");

    /* Due urgent rows with a secret, by retry time. */
    CHECK_INT(tokens_fetch_urgent(tk, NOW, 10, on_lane_row, &l), 0);
    CHECK_INT(l.n, 2);
    CHECK_INT(l.id[0], flag1); /* due at NOW - 20 */
    CHECK_INT(l.id[1], req);   /* due at NOW */
    CHECK(l.urgent[0] && l.urgent[1]);
    l.n = 0;
    CHECK_INT(tokens_fetch_urgent(tk, NOW, 1, on_lane_row, &l), 0);
    CHECK_INT(l.n, 1);

    /* In id order, due or not, the tokenless one included (as tokens_fetch_from). */
    l.n = 0;
    CHECK_INT(tokens_fetch_urgent_from(tk, 0, 10, on_lane_row, &l), 0);
    CHECK_INT(l.n, 4);
    CHECK_INT(l.id[0], flag1);
    CHECK_INT(l.id[1], req);
    CHECK_INT(l.id[2], later);
    CHECK_INT(l.id[3], bare);
    l.n = 0;
    CHECK_INT(tokens_fetch_urgent_from(tk, req, 10, on_lane_row, &l), 0);
    CHECK_INT(l.n, 2);

    /* The routine fetches leave the urgent rows out, so that a page full of
     * them is no full page of routine work. */
    l.n = 0;
    CHECK_INT(tokens_fetch_from(tk, 0, 10, on_lane_row, &l), 0);
    CHECK_INT(l.n, 2);
    CHECK_INT(l.id[0], exp1);
    CHECK_INT(l.id[1], exp2);
    CHECK(!l.urgent[0] && !l.urgent[1]);
    l.n = 0;
    CHECK_INT(tokens_fetch_due(tk, NOW, 10, on_lane_row, &l), 0);
    CHECK_INT(l.n, 1);
    CHECK_INT(l.id[0], exp1);
    CHECK(!l.urgent[0]);

    /* The urgent retry's time, not the routine one's; after urgent_after_ms only. */
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK_INT(n.retry_ms, NOW + 50);
    CHECK_INT(n.urgent_retry_ms, NOW + 100);
    CHECK_INT(tokens_next_events(tk, NOW, NOW + 100, &n), 0);
    CHECK(n.urgent_retry_ms == INT64_MAX);

    /* A final outcome takes the row out of the lane. */
    struct outcome_record r = {
        .token_id = flag1,
        .fingerprint = "x",
        .event = AUDIT_REVOKED,
        .state = TOKEN_REVOKED,
        .attempt = 1,
        .http_status = 200,
        .detail = "HTTP 200",
        .at_ms = NOW,
        .duration_ms = 3,
    };
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_record_outcome(tk, au, &r, NULL), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(qint("SELECT count(*) FROM tokens INDEXED BY tokens_urgent "
                   "WHERE state = 'pending' AND due_reason <> 'expired'"),
              3);
    CHECK_INT(qint("SELECT count(*) FROM tokens INDEXED BY tokens_urgent_id "
                   "WHERE state = 'pending' AND due_reason <> 'expired'"),
              3);

    /* Flagged rows only: an expired one stays for the bulk promotion. */
    int64_t exp3 = insert_token("u-exp3", NULL, "1699999002", 0);
    int64_t flag2 = insert_token("u-flag2", NULL, NULL, 1);
    int64_t flag3 = insert_token("u-flag3", NULL, NULL, 1);
    unsigned count = 99;
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_promote_flagged(tk, au, NOW, 1, &count), 0);
    CHECK_INT(count, 1);
    CHECK_INT(tokens_promote_flagged(tk, au, NOW, 10, &count), 0);
    CHECK_INT(count, 1);
    CHECK_INT(tokens_promote_flagged(tk, au, NOW, 10, &count), 0);
    CHECK_INT(count, 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)exp3), "active");
    CHECK_STR(qtext("SELECT due_reason FROM tokens WHERE id = %lld", (long long)flag2), "flagged");
    CHECK_STR(qtext("SELECT state FROM tokens WHERE id = %lld", (long long)flag3), "pending");
    CHECK_INT(audit_count(flag3, "due", "flagged"), 1);
    CHECK_INT(promote(NOW, 10), 1);
    CHECK_STR(qtext("SELECT due_reason FROM tokens WHERE id = %lld", (long long)exp3), "expired");
    fx_close();
}

/* ---- the routine lane (sql/010-routine-lane.sql) ---- */

/* The VM steps of the prepared statement whose SQL holds a and b since the
 * last call: what it read, whatever it returned. */
static int vm_steps(const char *a, const char *b)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(db->conn, NULL); st; st = sqlite3_next_stmt(db->conn, st)) {
        const char *sql = sqlite3_sql(st);
        if (strstr(sql, a) && strstr(sql, b))
            return sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
    }
    fprintf(stderr, "no statement with %s and %s\n", a, b);
    exit(1);
}

/* A revoke by subject made many urgent rows pending, due before the routine
 * ones and with lower ids: the routine reads must not walk them. */
static void test_routine_lane(void)
{
    enum { URGENT = 20000 };
    struct lane_rows l = {0};
    struct next_events n;
    struct state_counts c;
    unsigned count = 0;
    int steps;

    fx_open();
    exec("INSERT INTO tokens (token, state, due_reason, due_at, next_attempt_at) WITH RECURSIVE s(i) AS "
         "(SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) "
         "SELECT 'u-' || i, 'pending', 'requested', %lld, %lld FROM s",
         URGENT, NOW - 100, NOW - 100);
    int64_t exp1 = insert_token("r-exp1", NULL, "1699999000", 0);
    int64_t exp2 = insert_token("r-exp2", NULL, "1699999001", 0);
    CHECK_INT(promote(NOW - 20, 100), 2);
    /* Pending without a due reason (another tool wrote it): routine. */
    int64_t plain = insert_token("r-plain", NULL, NULL, 0);
    exec("UPDATE tokens SET state = 'pending', next_attempt_at = %lld WHERE id = %lld", NOW - 10,
         (long long)plain);

    (void)vm_steps("INDEXED BY tokens_next", "LIMIT ?2");
    CHECK_INT(tokens_fetch_due(tk, NOW, 10, on_lane_row, &l), 0);
    steps = vm_steps("INDEXED BY tokens_next", "LIMIT ?2");
    printf("routine fetch by time past %d urgent rows: %d VM steps\n", URGENT, steps);
    CHECK_INT(l.n, 3);
    CHECK_INT(l.id[0], exp1);
    CHECK_INT(l.id[1], exp2);
    CHECK_INT(l.id[2], plain);
    CHECK(steps < 500); /* some 30 a row; walking the urgent rows: 100,000s */

    l.n = 0;
    (void)vm_steps("INDEXED BY tokens_pending", "LIMIT ?2");
    CHECK_INT(tokens_fetch_from(tk, 0, 10, on_lane_row, &l), 0);
    steps = vm_steps("INDEXED BY tokens_pending", "LIMIT ?2");
    printf("routine fetch by id past %d urgent rows: %d VM steps\n", URGENT, steps);
    CHECK_INT(l.n, 3);
    CHECK_INT(l.id[0], exp1);
    CHECK_INT(l.id[2], plain);
    CHECK(steps < 500);

    /* The status line counts both lanes, up to the cap. */
    CHECK_INT(tokens_count(tk, false, &c), 0);
    CHECK_INT(c.pending, TOKENS_COUNT_CAP);

    /* Each lane's next retry from its own index. */
    exec("UPDATE tokens SET next_attempt_at = %lld WHERE id = 1", NOW + 30);
    exec("UPDATE tokens SET next_attempt_at = %lld WHERE id = %lld", NOW + 60, (long long)exp2);
    CHECK_INT(tokens_next_events(tk, NOW, NOW, &n), 0);
    CHECK_INT(n.retry_ms, NOW + 60);
    CHECK_INT(n.urgent_retry_ms, NOW + 30);

    /* A new endpoint ends the waits in both lanes. */
    REQUIRE(db_begin(db) == 0);
    CHECK_INT(tokens_due_now(tk, NOW, &count), 0);
    REQUIRE(db_commit(db) == 0);
    CHECK_INT(count, 2);
    CHECK_INT(qint("SELECT count(*) FROM tokens WHERE state = 'pending' AND next_attempt_at > %lld", NOW), 0);

    /* An urgent row's promotion writes no page of the routine indexes. */
    int64_t flagged = insert_token("r-flagged", NULL, NULL, 1);
    cut_wal();
    CHECK_INT(promote(NOW, 10), 1);
    const char *w = wal_btrees();
    CHECK_STR(qtext("SELECT due_reason FROM tokens WHERE id = %lld", (long long)flagged), "flagged");
    CHECK(strstr(w, ",tokens_urgent,") != NULL);
    CHECK(strstr(w, ",tokens_next,") == NULL);
    CHECK(strstr(w, ",tokens_pending,") == NULL);
    fx_close();
}

TEST_MAIN(CASE(test_promote_boundaries), CASE(test_promote_bad_expiry),
          CASE(test_promote_order_limit_and_no_token), CASE(test_fetch_order), CASE(test_outcomes),
          CASE(test_next_events), CASE(test_revoke_secret), CASE(test_hash_new), CASE(test_hash_jwt_expiry),
          CASE(test_track), CASE(test_hash_secret_rewritten), CASE(test_hot_path_pages),
          CASE(test_upgrade_from_schema_2), CASE(test_revoke_id), CASE(test_revoke_subject),
          CASE(test_status), CASE(test_requeue), CASE(test_counts), CASE(test_query_plans),
          CASE(test_allocation_failures), CASE(test_urgent_lane), CASE(test_routine_lane),
          CASE(test_timing_million_rows))

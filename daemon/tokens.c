#include "tokens.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "log.h"
#include "util.h"

/* Every statement on the hot path names its index (INDEXED BY): SQLite then
 * refuses to prepare it, and tokens_open() fails, if a schema change ever
 * leaves it without that index, instead of silently scanning ten million
 * rows. Loops that move rows out of a partial index (promote, revoke by
 * subject) look up one row at a time: each lookup is O(log n) and no
 * statement reads an index while it is being changed. */

struct tokens {
    struct db *db;
    sqlite3_stmt *first_flagged, *first_expired, *set_due, *set_due_refill, *set_no_token;
    sqlite3_stmt *first_bad_expiry, *set_expiry, *set_bad_expiry;
    sqlite3_stmt *any_flagged, *next_expiry, *next_retry, *fetch, *fetch_from;
    sqlite3_stmt *fetch_urgent, *fetch_urgent_from, *next_urgent;
    sqlite3_stmt *outcome, *outcome_over, *state_of;
    sqlite3_stmt *by_sha256, *by_unhashed, *set_hash, *unhashed_page, *insert_requested, *insert_tracked;
    sqlite3_stmt *by_id, *first_of_subject;
    sqlite3_stmt *status, *requeue, *next_failed, *due_now, *due_now_urgent;
    sqlite3_stmt *count_pending, *count_failed, *count_all;
    sqlite3_stmt *begin_read;
    struct tokens_tally tally;
    bool jwt_expiry; /* [daemon] jwt_expiry: a JWT's exp sets or lowers expires_at */
};

static const struct {
    size_t offset;
    const char *sql;
} statements[] = {
#define S(field) offsetof(struct tokens, field)
    {S(first_flagged),
     "SELECT id, token, fingerprint, token_sha256 FROM tokens INDEXED BY tokens_flagged "
     "WHERE state = 'active' AND flagged <> 0 ORDER BY id LIMIT 1"},
    {S(first_expired),
     "SELECT id, token, fingerprint, token_sha256, expires_at FROM tokens INDEXED BY tokens_expiry "
     "WHERE state = 'active' AND expires_at IS NOT NULL AND expires_at <= ?1 "
     "ORDER BY expires_at LIMIT 1"},
    /* sql/005-bad-expiry.sql. A flagged row is the flag's: it goes first. */
    {S(first_bad_expiry),
     "SELECT id, expires_at FROM tokens INDEXED BY tokens_bad_expiry "
     "WHERE state = 'active' AND expires_at >= 32503680000 AND flagged = 0 ORDER BY id LIMIT 1"},
    {S(set_expiry), "UPDATE tokens SET expires_at = ?2 WHERE id = ?1 AND state = 'active'"},
    {S(set_bad_expiry),
     "UPDATE tokens SET state = 'failed', due_reason = 'expired', due_at = ?2, finished_at = ?2, "
     "next_attempt_at = NULL, last_event = 'rejected', last_error = ?3 "
     "WHERE id = ?1 AND state = 'active'"},
    /* Not a word about token or token_sha256: an UPDATE that names an
     * indexed column rewrites that index entry, a random page in a big
     * table. A row not hashed yet gets set_hash first. */
    {S(set_due),
     "UPDATE tokens SET state = 'pending', fingerprint = ?2, "
     "due_reason = ?3, due_at = ?4, next_attempt_at = ?4, attempts = 0, last_event = 'due', "
     "last_error = NULL, finished_at = NULL, flag_reason = coalesce(?5, flag_reason) "
     "WHERE id = ?1 AND state = 'active'"},
    /* The same, for a row whose token is gone (found by its hash): the
     * secret handed over again (?6) refills it. */
    {S(set_due_refill),
     "UPDATE tokens SET state = 'pending', fingerprint = ?2, "
     "due_reason = ?3, due_at = ?4, next_attempt_at = ?4, attempts = 0, last_event = 'due', "
     "last_error = NULL, finished_at = NULL, flag_reason = coalesce(?5, flag_reason), "
     "token = ?6 "
     "WHERE id = ?1 AND state = 'active' AND token IS NULL"},
    {S(set_no_token),
     "UPDATE tokens SET state = 'failed', due_reason = ?2, due_at = ?3, finished_at = ?3, "
     "next_attempt_at = NULL, last_event = 'rejected', last_error = 'no token to revoke', "
     "flag_reason = coalesce(?4, flag_reason) "
     "WHERE id = ?1 AND state = 'active'"},
    {S(any_flagged),
     "SELECT 1 FROM tokens INDEXED BY tokens_flagged "
     "WHERE state = 'active' AND flagged <> 0 LIMIT 1"},
    {S(next_expiry),
     "SELECT expires_at FROM tokens INDEXED BY tokens_expiry "
     "WHERE state = 'active' AND expires_at IS NOT NULL ORDER BY expires_at LIMIT 1"},
    /* The routine lane's; next_urgent is the urgent one's. */
    {S(next_retry),
     "SELECT next_attempt_at FROM tokens INDEXED BY tokens_next "
     "WHERE state = 'pending' AND (due_reason = 'expired' OR due_reason IS NULL) "
     "AND next_attempt_at > ?1 ORDER BY next_attempt_at LIMIT 1"},
    /* Column 5, urgent: the lanes of sql/006-urgent-lane.sql. The routine
     * indexes hold routine rows only (sql/010-routine-lane.sql): a routine
     * read never walks the urgent ones, however many are pending. */
    {S(fetch),
     "SELECT id, token, fingerprint, attempts, next_attempt_at, due_reason <> 'expired' FROM tokens "
     "INDEXED BY tokens_next "
     "WHERE state = 'pending' AND next_attempt_at <= ?1 AND token IS NOT NULL "
     "AND (due_reason = 'expired' OR due_reason IS NULL) "
     "ORDER BY next_attempt_at, id LIMIT ?2"},
    {S(fetch_from),
     "SELECT id, token, fingerprint, attempts, next_attempt_at, due_reason <> 'expired' FROM tokens "
     "INDEXED BY tokens_pending "
     "WHERE state = 'pending' AND id > ?1 AND (due_reason = 'expired' OR due_reason IS NULL) "
     "ORDER BY id LIMIT ?2"},
    {S(fetch_urgent),
     "SELECT id, token, fingerprint, attempts, next_attempt_at, 1 FROM tokens "
     "INDEXED BY tokens_urgent "
     "WHERE state = 'pending' AND due_reason <> 'expired' AND next_attempt_at <= ?1 "
     "AND token IS NOT NULL ORDER BY next_attempt_at, id LIMIT ?2"},
    {S(fetch_urgent_from),
     "SELECT id, token, fingerprint, attempts, next_attempt_at, 1 FROM tokens "
     "INDEXED BY tokens_urgent_id "
     "WHERE state = 'pending' AND due_reason <> 'expired' AND id > ?1 ORDER BY id LIMIT ?2"},
    {S(next_urgent),
     "SELECT next_attempt_at FROM tokens INDEXED BY tokens_urgent "
     "WHERE state = 'pending' AND due_reason <> 'expired' AND next_attempt_at > ?1 "
     "ORDER BY next_attempt_at LIMIT 1"},
    {S(outcome),
     "UPDATE tokens SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_event = ?5, "
     "last_error = ?6, finished_at = ?7, token = CASE WHEN ?8 THEN NULL ELSE token END "
     "WHERE id = ?1 AND state = 'pending'"},
    /* The same over a state another process wrote while the request was in
     * flight: the state column is revokerd's, the outcome is the truth. */
    {S(outcome_over),
     "UPDATE tokens SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_event = ?5, "
     "last_error = ?6, finished_at = ?7, token = CASE WHEN ?8 THEN NULL ELSE token END "
     "WHERE id = ?1"},
    /* Column 1 for track: the expiry of a row found by its hash. */
    {S(state_of), "SELECT state, expires_at FROM tokens WHERE id = ?1"},
    /* Usually one row; more when the same token was written again after
     * it was revoked. */
    {S(by_sha256),
     "SELECT id, state, token IS NOT NULL FROM tokens INDEXED BY tokens_sha256 "
     "WHERE token_sha256 = ?1 ORDER BY id"},
    {S(by_unhashed),
     "SELECT id, state FROM tokens INDEXED BY tokens_unhashed "
     "WHERE token = ?1 AND token_sha256 IS NULL ORDER BY id LIMIT 1"},
    /* Only the hash: a row that grows less splits fewer pages. The
     * fingerprint comes with the `due` audit row. */
    {S(set_hash), "UPDATE tokens SET token_sha256 = ?2 WHERE id = ?1"},
    /* The hasher's work list. Any value but NULL is hashed (as text, like
     * everywhere else), so that no row stays on the list for ever. */
    {S(unhashed_page),
     "SELECT id, token, expires_at FROM tokens INDEXED BY tokens_unhashed "
     "WHERE token_sha256 IS NULL AND token IS NOT NULL LIMIT ?1"},
    {S(insert_requested),
     "INSERT INTO tokens (token, subject, state, token_sha256, fingerprint, flag_reason, "
     "due_reason, due_at, next_attempt_at, last_event) "
     "VALUES (?1, ?2, 'pending', ?3, ?4, ?5, 'requested', ?6, ?6, 'due')"},
    {S(insert_tracked),
     "INSERT INTO tokens (token, subject, expires_at, token_sha256, fingerprint) VALUES (?1, ?2, ?3, ?4, "
     "?5)"},
    {S(by_id), "SELECT id, token, fingerprint, token_sha256, state FROM tokens WHERE id = ?1"},
    {S(first_of_subject),
     "SELECT id, token, fingerprint, token_sha256 FROM tokens INDEXED BY tokens_subject "
     "WHERE subject = ?1 AND id > ?2 AND state = 'active' ORDER BY id LIMIT 1"},
    {S(status),
     "SELECT id, state, fingerprint, subject, attempts, last_event, last_error, "
     "next_attempt_at, expires_at, due_at, finished_at, flag_reason FROM tokens WHERE id = ?1"},
    {S(requeue),
     "UPDATE tokens SET state = 'pending', attempts = 0, next_attempt_at = ?2, "
     "last_event = 'requeued', last_error = NULL, finished_at = NULL, "
     "token_sha256 = ?3, fingerprint = ?4 "
     "WHERE id = ?1 AND state = 'failed' AND token IS NOT NULL"},
    /* A new endpoint: no wait earned at the old one stands. */
    {S(due_now),
     "UPDATE tokens INDEXED BY tokens_next SET next_attempt_at = ?1 "
     "WHERE state = 'pending' AND (due_reason = 'expired' OR due_reason IS NULL) AND next_attempt_at > ?1"},
    {S(due_now_urgent),
     "UPDATE tokens INDEXED BY tokens_urgent SET next_attempt_at = ?1 "
     "WHERE state = 'pending' AND due_reason <> 'expired' AND next_attempt_at > ?1"},
    {S(next_failed),
     "SELECT id, token FROM tokens INDEXED BY tokens_failed "
     "WHERE state = 'failed' AND id > ?1 ORDER BY id LIMIT 1"},
    /* Counted up to ?1: the status line is sent every second, and walking
     * 100 k index entries takes milliseconds of the loop. Both lanes, each
     * through its own index. */
    {S(count_pending),
     "SELECT min(?1, (SELECT count(*) FROM (SELECT 1 FROM tokens INDEXED BY tokens_next "
     "WHERE state = 'pending' AND (due_reason = 'expired' OR due_reason IS NULL) LIMIT ?1)) "
     "+ (SELECT count(*) FROM (SELECT 1 FROM tokens INDEXED BY tokens_urgent "
     "WHERE state = 'pending' AND due_reason <> 'expired' LIMIT ?1)))"},
    {S(count_failed),
     "SELECT count(*) FROM (SELECT 1 FROM tokens INDEXED BY tokens_failed "
     "WHERE state = 'failed' LIMIT ?1)"},
    /* The one scan: for `stats`, never for the status line. */
    {S(count_all), "SELECT state, count(*) FROM tokens GROUP BY state"},
    /* Several reads in one transaction lock the WAL once, not per query. */
    {S(begin_read), "BEGIN DEFERRED"},
#undef S
};

/* A token's identity, computed from its bytes. */
struct ident {
    uint8_t sha[SECRET_SHA256_LEN];
    char fp[SECRET_FP_LEN + 1];
};

/* 0, or secret_sha256's -ENOMEM. */
static int ident_of(const void *token, size_t len, struct ident *ret)
{
    int err = secret_sha256(token, len, ret->sha);
    if (err == 0)
        secret_fingerprint(ret->sha, ret->fp);
    return err;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void copy_column(sqlite3_stmt *st, int i, char *buf, size_t len)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    util_format(buf, len, "%s", s ? s : "");
}

/* The state in column i; 0 for NULL or a name the schema's CHECK refuses. */
static enum token_state column_state(sqlite3_stmt *st, int i)
{
    enum token_state state;

    if (token_state_from_name((const char *)sqlite3_column_text(st, i), &state) < 0)
        return 0;
    return state;
}

/* Unix seconds -> the first Unix ms at which expires_at counts as reached
 * (expires_at * 1000 <= now_ms), from whatever numeric type an application
 * stored. Text or blob never expires (SQLite orders it after any number). */
static int64_t expiry_ms(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: {
        int64_t s = sqlite3_column_int64(st, i);
        if (s > INT64_MAX / 1000)
            return INT64_MAX - 1;
        return s < INT64_MIN / 1000 ? INT64_MIN / 1000 * 1000 : s * 1000;
    }
    case SQLITE_FLOAT: {
        double d = sqlite3_column_double(st, i);
        if (!(d < 9.2e15)) /* also NaN */
            return INT64_MAX - 1;
        if (d < -9.2e15)
            return INT64_MIN / 1000 * 1000;
        int64_t s = (int64_t)d;
        if ((double)s < d) /* due once floor(now) reaches it */
            s++;
        return s * 1000;
    }
    default:
        return INT64_MAX;
    }
}

/* now_ms -> the Unix second compared with expires_at (floor, also for
 * times before 1970). */
static int64_t floor_seconds(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

struct due_args {
    int64_t id;
    const struct ident *ident; /* from its token; NULL: it has none */
    bool unhashed;             /* its token_sha256 is missing or stale: store ident's */
    const char *old_fp;        /* without a token: the fingerprint it had */
    const char *reason;        /* flagged expired requested */
    const char *flag_reason;   /* NULL: keep the row's */
    const char *refill;        /* the row's token is NULL: store this one */
    size_t refill_len;
    int64_t now_ms;
};

static int set_hash(struct tokens *t, int64_t id, const struct ident *ident)
{
    sqlite3_stmt *st = t->set_hash;

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_blob(st, 2, ident->sha, SECRET_SHA256_LEN, SQLITE_STATIC);
    return db_run(t->db, st);
}

/* Move one active row to pending with a `due` audit row; a row without a
 * token cannot be sent and goes to failed with a `rejected` one. */
static int make_due(struct tokens *t, struct audit *a, const struct due_args *d)
{
    sqlite3_stmt *st;
    int err;

    if (d->ident) {
        if (d->unhashed) {
            err = set_hash(t, d->id, d->ident);
            if (err < 0)
                return err;
        }
        st = d->refill ? t->set_due_refill : t->set_due;
        sqlite3_bind_int64(st, 1, d->id);
        sqlite3_bind_text(st, 2, d->ident->fp, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, d->reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, d->now_ms);
        bind_text_or_null(st, 5, d->flag_reason);
        if (d->refill)
            sqlite3_bind_text(st, 6, d->refill, (int)d->refill_len, SQLITE_STATIC);
    } else {
        st = t->set_no_token;
        sqlite3_bind_int64(st, 1, d->id);
        sqlite3_bind_text(st, 2, d->reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, d->now_ms);
        bind_text_or_null(st, 4, d->flag_reason);
    }
    err = db_run(t->db, st);
    if (err < 0)
        return err;
    if (sqlite3_changes64(t->db->conn) != 1)
        return -ESTALE;

    char detail[64];
    struct audit_event e = {
        .at_ms = d->now_ms,
        .token_id = d->id,
        .fingerprint = d->ident ? d->ident->fp : d->old_fp,
        .event = d->ident ? AUDIT_DUE : AUDIT_REJECTED,
        .detail = d->reason,
        .duration_ms = -1,
    };
    if (!d->ident) {
        snprintf(detail, sizeof(detail), "no token to revoke (%s)", d->reason);
        e.detail = detail;
    }
    return audit_append(a, &e);
}

/* Read (id, token, fingerprint, token_sha256) from the current row of st,
 * then reset it and make that row due. The secret is hashed before the
 * reset, so it is never copied out of SQLite. A hash that is missing (the
 * hasher has not been there) or stale (an application wrote a new secret
 * into the row) is stored on the way. */
static int make_current_due(struct tokens *t, struct audit *a, sqlite3_stmt *st,
                            const char *reason, const char *flag_reason, int64_t now_ms,
                            int64_t *ret_id)
{
    struct ident ident;
    char old_fp[SECRET_FP_LEN + 1];
    int64_t id = sqlite3_column_int64(st, 0);
    const void *token = sqlite3_column_text(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    bool has_token = token && len > 0;
    bool unhashed = false;

    if (has_token) {
        int err = ident_of(token, len, &ident);
        if (err < 0) {
            db_done(st);
            return err;
        }
        unhashed = sqlite3_column_bytes(st, 3) != SECRET_SHA256_LEN ||
                   memcmp(sqlite3_column_blob(st, 3), ident.sha, SECRET_SHA256_LEN) != 0;
    }
    copy_column(st, 2, old_fp, sizeof(old_fp));
    db_done(st);

    struct due_args d = {
        .id = id,
        .ident = has_token ? &ident : NULL,
        .unhashed = unhashed,
        .old_fp = old_fp[0] ? old_fp : NULL,
        .reason = reason,
        .flag_reason = flag_reason,
        .now_ms = now_ms,
    };
    int err = make_due(t, a, &d);
    if (err == 0 && !has_token)
        t->tally.no_token++;
    if (err == 0 && ret_id)
        *ret_id = id;
    return err;
}

/* Outside a transaction, open a read transaction for several queries:
 * each autocommit query would take and drop the WAL read lock (four fcntl
 * calls, most of the cost of a query that hits the cache). */
static int read_begin(struct tokens *t, bool *ret_own)
{
    *ret_own = sqlite3_get_autocommit(t->db->conn) != 0;
    return *ret_own ? db_run(t->db, t->begin_read) : 0;
}

static void read_end(struct tokens *t, bool own)
{
    if (own && sqlite3_get_autocommit(t->db->conn) == 0) {
        char keep[sizeof(t->db->errmsg)];
        memcpy(keep, t->db->errmsg, sizeof(keep)); /* the error that matters */
        if (db_commit(t->db) < 0)
            db_rollback(t->db);
        memcpy(t->db->errmsg, keep, sizeof(keep));
    }
}

static int count_one(struct tokens *t, sqlite3_stmt *st, int64_t *ret)
{
    sqlite3_bind_int64(st, 1, TOKENS_COUNT_CAP);
    int r = db_row(t->db, st);
    if (r < 0)
        return r;
    *ret = r ? sqlite3_column_int64(st, 0) : 0;
    db_done(st);
    return 0;
}

/* failed -> pending for a row whose token hashes to ident. */
static int requeue_row(struct tokens *t, struct audit *a, int64_t id, const struct ident *ident,
                       int64_t now_ms)
{
    sqlite3_stmt *st = t->requeue;
    int err;

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_blob(st, 3, ident->sha, SECRET_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ident->fp, -1, SQLITE_STATIC);
    err = db_run(t->db, st);
    if (err < 0)
        return err;
    if (sqlite3_changes64(t->db->conn) != 1)
        return -EIO;
    struct audit_event e = {
        .at_ms = now_ms,
        .token_id = id,
        .fingerprint = ident->fp,
        .event = AUDIT_REQUEUED,
        .duration_ms = -1,
    };
    return audit_append(a, &e);
}

int tokens_open(struct db *db, struct tokens **ret_tokens)
{
    struct tokens *t = calloc(1, sizeof(*t));
    int err;

    if (!t)
        return -ENOMEM;
    t->db = db;
    for (size_t i = 0; i < ARRAY_SIZE(statements); i++) {
        sqlite3_stmt **slot = (sqlite3_stmt **)((char *)t + statements[i].offset);
        err = db_prepare(db, statements[i].sql, slot);
        if (err < 0)
            goto err_after_alloc;
    }
    *ret_tokens = t;
    return 0;

err_after_alloc:
    tokens_close(t);
    return err;
}

void tokens_close(struct tokens *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(statements); i++)
        sqlite3_finalize(*(sqlite3_stmt **)((char *)t + statements[i].offset));
    free(t);
}

#define YEAR_2000 TOKENS_EXPIRY_MIN
#define YEAR_3000 TOKENS_EXPIRY_END

/* An expiry in the past before 2000 is due like any other, and said once
 * (it is promoted once): a 0 or a negative number is usually a bug. */
static void note_early_expiry(sqlite3_stmt *st)
{
    if (sqlite3_column_type(st, 4) != SQLITE_NULL && sqlite3_column_double(st, 4) < YEAR_2000)
        log_token(LOG_WARNING, sqlite3_column_int64(st, 0), NULL, NULL, 0,
                  "token %" PRId64 ": expires_at %.0f is before the year 2000 (a time in Unix seconds was "
                  "expected); revoked as expired",
                  (int64_t)sqlite3_column_int64(st, 0), sqlite3_column_double(st, 4));
}

/* An expires_at at or after the year 3000 (sql/005-bad-expiry.sql): a number
 * that reads as milliseconds before the year 3000 is rewritten in seconds
 * (rounded up: never earlier than meant); anything else (text, a blob, a
 * number too large) can never fall due, so the row fails with a `rejected`
 * audit row that says why. *ret_handled: a row was there. */
static int handle_bad_expiry(struct tokens *t, struct audit *a, int64_t now_ms, bool *ret_handled)
{
    sqlite3_stmt *st = t->first_bad_expiry;
    int r = db_row(t->db, st);
    char why[160];
    int err;

    *ret_handled = r > 0;
    if (r <= 0)
        return r;
    int64_t id = sqlite3_column_int64(st, 0);
    int type = sqlite3_column_type(st, 1);
    double v = sqlite3_column_double(st, 1);
    int64_t iv = sqlite3_column_int64(st, 1);
    db_done(st);

    bool number = type == SQLITE_INTEGER || type == SQLITE_FLOAT;
    if (number && v >= YEAR_2000 * 1000.0 && v < YEAR_3000 * 1000.0) {
        int64_t seconds = type == SQLITE_INTEGER ? (iv + 999) / 1000 : (int64_t)(v / 1000.0);
        if (type == SQLITE_FLOAT && (double)seconds * 1000.0 < v)
            seconds++;
        st = t->set_expiry;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, seconds);
        err = db_run(t->db, st);
        if (err < 0)
            return err;
        t->tally.expiry_converted++;
        log_token(LOG_WARNING, id, NULL, NULL, 0,
                  "token %" PRId64 ": expires_at %.0f looks like milliseconds; rewritten as %" PRId64
                  " (Unix seconds)",
                  id, v, seconds);
        return 0;
    }
    if (type == SQLITE_INTEGER)
        snprintf(why, sizeof(why), "expires_at is not a time: %" PRId64 " is after the year 3000 in seconds", iv);
    else if (type == SQLITE_FLOAT)
        snprintf(why, sizeof(why), "expires_at is not a time: %.6g is after the year 3000 in seconds", v);
    else /* the text itself is the application's, not ours to repeat */
        snprintf(why, sizeof(why), "expires_at is not a time: it is %s, not Unix seconds",
                 type == SQLITE_TEXT ? "text" : "a blob");
    st = t->set_bad_expiry;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_text(st, 3, why, -1, SQLITE_STATIC);
    err = db_run(t->db, st);
    if (err < 0)
        return err;
    if (sqlite3_changes64(t->db->conn) != 1)
        return -EIO;
    struct audit_event e = {
        .at_ms = now_ms,
        .token_id = id,
        .event = AUDIT_REJECTED,
        .detail = why,
        .duration_ms = -1,
    };
    err = audit_append(a, &e);
    if (err < 0)
        return err;
    t->tally.expiry_rejected++;
    log_token(LOG_WARNING, id, NULL, audit_event_name(AUDIT_REJECTED), 0,
              "token %" PRId64 ": %s; the row is failed and will not be revoked on expiry", id, why);
    return 0;
}

static int promote(struct tokens *t, struct audit *a, int64_t now_ms, unsigned limit, bool flagged_only,
                   unsigned *ret_count)
{
    unsigned count = 0;
    enum { FLAGGED, EXPIRED, BAD_EXPIRY } phase = FLAGGED;

    while (count < limit && !(flagged_only && phase != FLAGGED)) {
        if (phase == BAD_EXPIRY) {
            bool handled;
            int err = handle_bad_expiry(t, a, now_ms, &handled);
            if (err < 0)
                return err;
            if (!handled)
                break;
            count++;
            continue;
        }
        sqlite3_stmt *st = phase == EXPIRED ? t->first_expired : t->first_flagged;
        if (phase == EXPIRED)
            sqlite3_bind_int64(st, 1, floor_seconds(now_ms));
        int r = db_row(t->db, st);
        if (r < 0)
            return r;
        if (r == 0) {
            phase++;
            continue;
        }
        if (phase == EXPIRED)
            note_early_expiry(st);
        int err = make_current_due(t, a, st, phase == EXPIRED ? "expired" : "flagged", NULL, now_ms, NULL);
        if (err < 0)
            return err == -ESTALE ? -EIO : err;
        count++;
    }
    if (ret_count)
        *ret_count = count;
    return 0;
}

int tokens_promote_due(struct tokens *t, struct audit *a, int64_t now_ms, unsigned limit, unsigned *ret_count)
{
    return promote(t, a, now_ms, limit, false, ret_count);
}

int tokens_promote_flagged(struct tokens *t, struct audit *a, int64_t now_ms, unsigned limit,
                           unsigned *ret_count)
{
    return promote(t, a, now_ms, limit, true, ret_count);
}

struct tokens_tally tokens_tally(const struct tokens *t)
{
    return t->tally;
}

void tokens_set_tally(struct tokens *t, const struct tokens_tally *tally)
{
    t->tally = *tally;
}

void tokens_set_jwt_expiry(struct tokens *t, bool on)
{
    t->jwt_expiry = on;
}

/* A row's expiry as the token tells it (jwt.h), where the row's column i of
 * st says none or a later one: the value to store, 0 to leave the row's
 * (*ret_old, 0 for NULL). A bad expires_at (milliseconds, text: sql/005) is
 * left to handle_bad_expiry. -ENOMEM only: a token that is no JWT is 0. */
static int token_expiry(const struct tokens *t, sqlite3_stmt *st, int i, const char *token, size_t len,
                        int64_t *ret_exp, int64_t *ret_old)
{
    int type = sqlite3_column_type(st, i);
    int64_t old = type == SQLITE_INTEGER ? sqlite3_column_int64(st, i) : 0, exp;
    int err;

    *ret_exp = *ret_old = 0;
    if (!t->jwt_expiry ||
        !(type == SQLITE_NULL || (type == SQLITE_INTEGER && old >= YEAR_2000 && old < YEAR_3000)))
        return 0;
    err = jwt_exp(token, len, &exp);
    if (err == -ENOMEM)
        return err;
    if (err == 0 && (old == 0 || exp < old)) {
        *ret_exp = exp;
        *ret_old = old;
    }
    return 0;
}

/* A row's expiry taken from its JWT, said once (a row is hashed once): a
 * row that had none (old 0) at debug, a later one lowered at info. */
static void log_jwt_expiry(int64_t id, const char *fp, int64_t exp, int64_t old)
{
    if (old == 0)
        log_token(LOG_DEBUG, id, fp, NULL, 0,
                  "token %" PRId64 " (%s): expires_at set to its JWT's exp, %" PRId64, id, fp, exp);
    else
        log_token(LOG_INFO, id, fp, NULL, 0,
                  "token %" PRId64 " (%s): expires_at %" PRId64 " lowered to its JWT's exp, %" PRId64
                  " (%" PRId64 " s earlier)",
                  id, fp, old, exp, old - exp);
}

/* Stores an expiry found by token_expiry() or track, and says so. */
static int store_token_expiry(struct tokens *t, int64_t id, const char *fp, int64_t exp, int64_t old)
{
    sqlite3_stmt *st = t->set_expiry;
    int err;

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, exp);
    err = db_run(t->db, st);
    if (err == 0)
        log_jwt_expiry(id, fp, exp, old);
    return err;
}

int tokens_hash_new(struct tokens *t, unsigned limit, unsigned *ret_count)
{
    struct {
        int64_t id;
        struct ident ident;
        int64_t exp, old_exp; /* from a JWT (token_expiry), 0: none */
    } page[TOKENS_HASH_STEP];
    sqlite3_stmt *st = t->unhashed_page;
    unsigned n = 0;
    int rc, err = 0;

    if (limit > TOKENS_HASH_STEP)
        limit = TOKENS_HASH_STEP;
    /* Read the page first: the updates take the rows out of the index
     * being read. */
    sqlite3_bind_int(st, 1, (int)limit);
    while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *token = (const char *)sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        page[n].id = sqlite3_column_int64(st, 0);
        err = ident_of(token, len, &page[n].ident);
        if (err == 0)
            err = token_expiry(t, st, 2, token, len, &page[n].exp, &page[n].old_exp);
        if (err < 0)
            break;
        n++;
    }
    if (err == 0 && n < limit && rc != SQLITE_DONE)
        err = db_fail(t->db, rc);
    db_done(st);
    for (unsigned i = 0; i < n && err == 0; i++) {
        err = set_hash(t, page[i].id, &page[i].ident);
        if (err == 0 && page[i].exp)
            err = store_token_expiry(t, page[i].id, page[i].ident.fp, page[i].exp, page[i].old_exp);
    }
    if (err == 0 && ret_count)
        *ret_count = n;
    return err;
}

/* Step a fetch statement, handing its rows to cb; a row without a token
 * comes with row->token NULL, or not at all unless with_tokenless. */
static int fetch_rows(struct tokens *t, sqlite3_stmt *st, bool with_tokenless,
                      int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    int rc, err = 0;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t attempts = sqlite3_column_int64(st, 3);
        struct pending_row p = {
            .id = sqlite3_column_int64(st, 0),
            .token = (const char *)sqlite3_column_text(st, 1),
            .token_len = (size_t)sqlite3_column_bytes(st, 1),
            .fingerprint = (const char *)sqlite3_column_text(st, 2),
            .attempts = attempts < 0 ? 0 : (unsigned)attempts,
            .next_attempt_at = sqlite3_column_int64(st, 4),
            .urgent = sqlite3_column_int(st, 5) != 0,
        };
        if (!p.token || p.token_len == 0) {
            if (!with_tokenless)
                continue;
            p.token = NULL;
            p.token_len = 0;
        }
        if (cb(ud, &p) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = db_fail(t->db, rc);
    db_done(st);
    return err;
}

/* The four fetches differ in their statement and in what ?1 is: a time
 * (due rows by retry time) or an id (a backlog's cursor, which also hands
 * over the rows without a token). */
static int fetch_page(struct tokens *t, sqlite3_stmt *st, int64_t key, unsigned limit, bool with_tokenless,
                      int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    if (!cb)
        return -EINVAL;
    sqlite3_bind_int64(st, 1, key);
    sqlite3_bind_int64(st, 2, limit);
    return fetch_rows(t, st, with_tokenless, cb, ud);
}

int tokens_fetch_due(struct tokens *t, int64_t now_ms, unsigned limit,
                     int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return fetch_page(t, t->fetch, now_ms, limit, false, cb, ud);
}

int tokens_fetch_from(struct tokens *t, int64_t after_id, unsigned limit,
                      int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return fetch_page(t, t->fetch_from, after_id, limit, true, cb, ud);
}

int tokens_fetch_urgent(struct tokens *t, int64_t now_ms, unsigned limit,
                        int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return fetch_page(t, t->fetch_urgent, now_ms, limit, false, cb, ud);
}

int tokens_fetch_urgent_from(struct tokens *t, int64_t after_id, unsigned limit,
                             int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return fetch_page(t, t->fetch_urgent_from, after_id, limit, true, cb, ud);
}

static int next_events(struct tokens *t, int64_t now_ms, int64_t urgent_after_ms, struct next_events *n)
{
    int r;

    sqlite3_bind_int64(t->next_urgent, 1, urgent_after_ms);
    r = db_row(t->db, t->next_urgent);
    if (r < 0)
        return r;
    if (r) {
        n->urgent_retry_ms = sqlite3_column_int64(t->next_urgent, 0);
        db_done(t->next_urgent);
    }

    r = db_row(t->db, t->any_flagged);
    if (r < 0)
        return r;
    if (r) {
        n->flagged = true;
        db_done(t->any_flagged);
    }

    r = db_row(t->db, t->next_expiry);
    if (r < 0)
        return r;
    if (r) {
        n->expiry_ms = expiry_ms(t->next_expiry, 0);
        db_done(t->next_expiry);
    }

    sqlite3_bind_int64(t->next_retry, 1, now_ms);
    r = db_row(t->db, t->next_retry);
    if (r < 0)
        return r;
    if (r) {
        n->retry_ms = sqlite3_column_int64(t->next_retry, 0);
        db_done(t->next_retry);
    }
    return 0;
}

int tokens_next_events(struct tokens *t, int64_t now_ms, int64_t urgent_after_ms, struct next_events *ret)
{
    struct next_events n = {false, INT64_MAX, INT64_MAX, INT64_MAX};
    bool own;
    int err;

    err = read_begin(t, &own);
    if (err < 0)
        return err;
    err = next_events(t, now_ms, urgent_after_ms, &n);
    read_end(t, own);
    if (err < 0)
        return err;
    *ret = n;
    return 0;
}

static void bind_outcome(sqlite3_stmt *st, const struct outcome_record *r, bool pending, bool final)
{
    sqlite3_bind_int64(st, 1, r->token_id);
    sqlite3_bind_text(st, 2, token_state_name(r->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, r->attempts);
    if (pending)
        sqlite3_bind_int64(st, 4, r->next_attempt_at);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_text(st, 5, audit_event_name(r->event), -1, SQLITE_STATIC);
    bind_text_or_null(st, 6, r->last_error);
    if (final)
        sqlite3_bind_int64(st, 7, r->at_ms);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_int(st, 8, r->drop_secret);
}

int tokens_record_outcome(struct tokens *t, struct audit *a, const struct outcome_record *r,
                          enum token_state *ret_was)
{
    enum token_state was = 0;
    const char *detail = r ? r->detail : NULL;
    char text[512];
    bool pending, final;
    int err;

    if (!r || !audit_event_name(r->event) || r->token_id <= 0)
        return -EINVAL;
    pending = r->state == TOKEN_PENDING;
    final = r->state == TOKEN_REVOKED || r->state == TOKEN_FAILED;
    /* A failed token keeps its secret so that it can be retried. */
    if ((!pending && !final) || (r->drop_secret && r->state != TOKEN_REVOKED))
        return -EINVAL;

    bind_outcome(t->outcome, r, pending, final);
    err = db_run(t->db, t->outcome);
    if (err < 0)
        return err;
    if (sqlite3_changes64(t->db->conn) != 1) {
        /* Not pending any more: another process wrote the state. */
        sqlite3_bind_int64(t->state_of, 1, r->token_id);
        err = db_row(t->db, t->state_of);
        if (err < 0)
            return err;
        if (err == 0)
            return -ESTALE; /* the row is gone */
        was = column_state(t->state_of, 0);
        db_done(t->state_of);
        bind_outcome(t->outcome_over, r, pending, final);
        err = db_run(t->db, t->outcome_over);
        if (err < 0)
            return err;
        snprintf(text, sizeof(text), "%s%sstate '%s' written by another process while the request was in "
                 "flight replaced by this outcome", r->detail ? r->detail : "", r->detail ? "; " : "",
                 was ? token_state_name(was) : "?");
        detail = text;
    }

    struct audit_event e = {
        .at_ms = r->at_ms,
        .token_id = r->token_id,
        .fingerprint = r->fingerprint,
        .event = r->event,
        .attempt = r->attempt,
        .http_status = r->http_status,
        .detail = detail,
        .duration_ms = r->duration_ms,
    };
    err = audit_append(a, &e);
    if (err == 0 && ret_was)
        *ret_was = was;
    return err;
}

/* A token handed over on the socket, found as it was stored. */
struct found {
    int64_t id; /* 0: no row */
    enum token_state state;
    bool has_secret; /* the row still holds its token */
    bool unhashed;   /* found by the secret: the hasher has not been there */
};

/* By hash: every row the hasher has seen; the first that still holds its
 * secret, else the first. Else by the secret: a row written since the
 * hasher last ran, which wins over a revoked row of the same token. */
static int find_secret(struct tokens *t, const char *token, size_t len, const struct ident *ident,
                       struct found *ret)
{
    struct found f = {0};
    sqlite3_stmt *st = t->by_sha256;
    int r;

    sqlite3_bind_blob(st, 1, ident->sha, SECRET_SHA256_LEN, SQLITE_STATIC);
    while ((r = db_row(t->db, st)) == 1) {
        bool live = sqlite3_column_int(st, 2) != 0;
        if (f.id == 0 || live) {
            f.id = sqlite3_column_int64(st, 0);
            f.state = column_state(st, 1);
            f.has_secret = live;
        }
        if (live)
            break;
    }
    db_done(st);
    if (r < 0)
        return r;
    if (!f.has_secret) {
        st = t->by_unhashed;
        sqlite3_bind_text(st, 1, token, (int)len, SQLITE_STATIC);
        r = db_row(t->db, st);
        if (r < 0)
            return r;
        if (r == 1) {
            f.id = sqlite3_column_int64(st, 0);
            f.state = column_state(st, 1);
            f.has_secret = f.unhashed = true;
            db_done(st);
        }
    }
    *ret = f;
    return 0;
}

int tokens_revoke_secret(struct tokens *t, struct audit *a, const char *token, size_t len,
                         const char *subject, const char *reason, int64_t now_ms, int64_t *ret_id,
                         enum token_state *ret_state)
{
    struct ident ident;
    struct found f;
    enum token_state state;
    int64_t id;
    bool has_secret, unhashed;
    sqlite3_stmt *st;
    int r, err;

    if (!secret_token_ok(token, len))
        return -EINVAL;
    err = ident_of(token, len, &ident);
    if (err < 0)
        return err;
    err = find_secret(t, token, len, &ident, &f);
    if (err < 0)
        return err;
    id = f.id;
    state = f.state;
    has_secret = f.has_secret;
    unhashed = f.unhashed;
    r = id != 0;

    if (r == 1) {
        if (state == TOKEN_ACTIVE) {
            struct due_args d = {
                .id = id,
                .ident = &ident,
                .unhashed = unhashed,
                .reason = "requested",
                .flag_reason = reason,
                .refill = has_secret ? NULL : token,
                .refill_len = len,
                .now_ms = now_ms,
            };
            err = make_due(t, a, &d);
            if (err < 0)
                return err == -ESTALE ? -EIO : err;
            state = TOKEN_PENDING;
        } else if (unhashed) {
            /* Not active (an application set its state): hash it now, as
             * the hasher would have. */
            err = set_hash(t, id, &ident);
            if (err < 0)
                return err;
        }
    } else {
        st = t->insert_requested;
        sqlite3_bind_text(st, 1, token, (int)len, SQLITE_STATIC);
        bind_text_or_null(st, 2, subject);
        sqlite3_bind_blob(st, 3, ident.sha, SECRET_SHA256_LEN, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, ident.fp, -1, SQLITE_STATIC);
        bind_text_or_null(st, 5, reason);
        sqlite3_bind_int64(st, 6, now_ms);
        err = db_run(t->db, st);
        if (err < 0)
            return err;
        id = sqlite3_last_insert_rowid(t->db->conn);
        struct audit_event e = {
            .at_ms = now_ms,
            .token_id = id,
            .fingerprint = ident.fp,
            .event = AUDIT_DUE,
            .detail = "requested",
            .duration_ms = -1,
        };
        err = audit_append(a, &e);
        if (err < 0)
            return err;
        state = TOKEN_PENDING;
    }
    if (ret_id)
        *ret_id = id;
    if (ret_state)
        *ret_state = state;
    return 0;
}

/* The expiry track gives a token: expires_at (0: none), or the JWT's exp
 * when that is earlier (jwt_expiry on). */
static int track_expiry(const struct tokens *t, const char *token, size_t len, int64_t expires_at,
                        int64_t *ret_exp)
{
    int64_t exp = 0;
    int err = t->jwt_expiry ? jwt_exp(token, len, &exp) : -EINVAL;

    if (err == -ENOMEM)
        return err;
    *ret_exp = err < 0 || (expires_at > 0 && expires_at <= exp) ? expires_at : exp;
    return 0;
}

/* A row track found: its state and expiry, the expiry lowered as the hasher
 * would when the row is active and says none or later; hashed if it was not.
 * An expires_at the hasher cannot read as a time (text, a blob, a number
 * from the year 3000 on: handle_bad_expiry would fail the row or guess
 * milliseconds) takes track's, which the caller has just given. */
static int track_found(struct tokens *t, const struct found *f, const struct ident *ident, int64_t exp,
                       struct tokens_tracked *ret)
{
    sqlite3_stmt *st = t->state_of;
    int type, r, err = 0;
    int64_t old;
    double v;

    if (f->unhashed && (err = set_hash(t, f->id, ident)) < 0)
        return err;
    sqlite3_bind_int64(st, 1, f->id);
    r = db_row(t->db, st);
    if (r <= 0)
        return r < 0 ? r : -EIO;
    ret->id = f->id;
    ret->state = column_state(st, 0);
    type = sqlite3_column_type(st, 1);
    old = sqlite3_column_int64(st, 1);
    v = sqlite3_column_double(st, 1);
    db_done(st);
    bool unreadable = type == SQLITE_TEXT || type == SQLITE_BLOB || (type != SQLITE_NULL && v >= YEAR_3000);
    /* Unix seconds a reply can show (ms of them fit an int64). */
    ret->expires_at = type == SQLITE_INTEGER && old > -YEAR_3000 && old < YEAR_3000 ? old : 0;
    ret->created = false;
    if (ret->state == TOKEN_ACTIVE && (type == SQLITE_NULL || unreadable) && exp == 0)
        return -ENODATA; /* it would stay active for ever, or fail */
    bool lower = ret->state == TOKEN_ACTIVE && exp > 0 &&
        (type == SQLITE_NULL || unreadable ||
         (type == SQLITE_INTEGER && old >= YEAR_2000 && old < YEAR_3000 && exp < old));
    if (!lower)
        return 0;
    err = store_token_expiry(t, f->id, ident->fp, exp, type == SQLITE_INTEGER && !unreadable ? old : 0);
    if (err == 0)
        ret->expires_at = exp;
    return err;
}

int tokens_track(struct tokens *t, const char *token, size_t len, const char *subject, int64_t expires_at,
                 struct tokens_tracked *ret)
{
    struct ident ident;
    struct found f = {0};
    int64_t exp = 0;
    int err;

    if (!secret_token_ok(token, len) || expires_at < 0)
        return -EINVAL;
    err = ident_of(token, len, &ident);
    if (err == 0)
        err = track_expiry(t, token, len, expires_at, &exp);
    if (err == 0)
        err = find_secret(t, token, len, &ident, &f);
    if (err < 0)
        return err;
    if (f.id != 0)
        return track_found(t, &f, &ident, exp, ret);
    if (exp == 0)
        return -ENODATA;

    sqlite3_stmt *st = t->insert_tracked;
    sqlite3_bind_text(st, 1, token, (int)len, SQLITE_STATIC);
    bind_text_or_null(st, 2, subject);
    sqlite3_bind_int64(st, 3, exp);
    sqlite3_bind_blob(st, 4, ident.sha, SECRET_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ident.fp, -1, SQLITE_STATIC);
    err = db_run(t->db, st);
    if (err < 0)
        return err;
    *ret = (struct tokens_tracked){
        .id = sqlite3_last_insert_rowid(t->db->conn),
        .state = TOKEN_ACTIVE,
        .expires_at = exp,
        .created = true,
    };
    if (expires_at > exp) /* the JWT's came first */
        log_jwt_expiry(ret->id, ident.fp, exp, expires_at);
    return 0;
}

int tokens_revoke_id(struct tokens *t, struct audit *a, int64_t id, const char *reason,
                     int64_t now_ms, bool *ret_changed)
{
    sqlite3_stmt *st = t->by_id;
    int r, err;

    sqlite3_bind_int64(st, 1, id);
    r = db_row(t->db, st);
    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    if (column_state(st, 4) != TOKEN_ACTIVE) {
        db_done(st);
        if (ret_changed)
            *ret_changed = false;
        return 0;
    }
    err = make_current_due(t, a, st, "requested", reason, now_ms, NULL);
    if (err < 0)
        return err == -ESTALE ? -EIO : err;
    if (ret_changed)
        *ret_changed = true;
    return 0;
}

int tokens_revoke_subject(struct tokens *t, struct audit *a, const char *subject,
                          const char *reason, int64_t now_ms, unsigned *ret_count,
                          void (*cb)(void *ud, int64_t id), void *ud)
{
    sqlite3_stmt *st = t->first_of_subject;
    unsigned count = 0;
    int64_t id = 0; /* the index holds the subject's finished rows too: go past each once */

    if (!subject)
        return -EINVAL;
    for (;;) {
        sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        int r = db_row(t->db, st);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        int err = make_current_due(t, a, st, "requested", reason, now_ms, &id);
        if (err < 0)
            return err == -ESTALE ? -EIO : err;
        count++;
        if (cb)
            cb(ud, id);
    }
    if (ret_count)
        *ret_count = count;
    return 0;
}

int tokens_status(struct tokens *t, int64_t id, struct token_status *ret)
{
    sqlite3_stmt *st = t->status;
    struct token_status s;
    int r;

    sqlite3_bind_int64(st, 1, id);
    r = db_row(t->db, st);
    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    memset(&s, 0, sizeof(s));
    s.id = sqlite3_column_int64(st, 0);
    s.state = column_state(st, 1);
    copy_column(st, 2, s.fingerprint, sizeof(s.fingerprint));
    copy_column(st, 3, s.subject, sizeof(s.subject));
    int64_t attempts = sqlite3_column_int64(st, 4);
    s.attempts = attempts < 0 ? 0 : (unsigned)attempts;
    copy_column(st, 5, s.last_event, sizeof(s.last_event));
    copy_column(st, 6, s.last_error, sizeof(s.last_error));
    s.next_attempt_at = sqlite3_column_int64(st, 7);
    s.expires_at = sqlite3_column_int64(st, 8);
    s.due_at = sqlite3_column_int64(st, 9);
    s.finished_at = sqlite3_column_int64(st, 10);
    copy_column(st, 11, s.reason, sizeof(s.reason));
    db_done(st);
    *ret = s;
    return 0;
}

int tokens_requeue_id(struct tokens *t, struct audit *a, int64_t id, int64_t now_ms)
{
    sqlite3_stmt *st = t->by_id;
    struct ident ident;
    int r;

    sqlite3_bind_int64(st, 1, id);
    r = db_row(t->db, st);
    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    const void *token = sqlite3_column_text(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    if (column_state(st, 4) != TOKEN_FAILED || !token || len == 0) {
        db_done(st);
        return -EINVAL;
    }
    int err = ident_of(token, len, &ident);
    db_done(st);
    return err < 0 ? err : requeue_row(t, a, id, &ident, now_ms);
}

/* Both lanes, each through its own index. */
int tokens_due_now(struct tokens *t, int64_t now_ms, unsigned *ret_count)
{
    sqlite3_stmt *lanes[] = {t->due_now, t->due_now_urgent};
    unsigned count = 0;

    for (size_t i = 0; i < sizeof(lanes) / sizeof(lanes[0]); i++) {
        sqlite3_bind_int64(lanes[i], 1, now_ms);
        int err = db_run(t->db, lanes[i]);
        if (err < 0)
            return err;
        count += (unsigned)sqlite3_changes64(t->db->conn);
    }
    if (ret_count)
        *ret_count = count;
    return 0;
}

int tokens_requeue_failed(struct tokens *t, struct audit *a, int64_t now_ms, unsigned *ret_count)
{
    sqlite3_stmt *st = t->next_failed;
    int64_t after = 0;
    unsigned count = 0;

    for (;;) {
        struct ident ident;
        sqlite3_bind_int64(st, 1, after);
        int r = db_row(t->db, st);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        int64_t id = sqlite3_column_int64(st, 0);
        const void *token = sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        after = id;
        bool has_token = token && len > 0; /* without, nothing can be sent */
        int err = has_token ? ident_of(token, len, &ident) : 0;
        db_done(st);
        if (err < 0)
            return err;
        if (!has_token)
            continue;
        err = requeue_row(t, a, id, &ident, now_ms);
        if (err < 0)
            return err;
        count++;
    }
    if (ret_count)
        *ret_count = count;
    return 0;
}

int tokens_count(struct tokens *t, bool full, struct state_counts *ret)
{
    struct state_counts c = {-1, 0, -1, 0, 0};
    int err;

    if (!full) {
        bool own;
        err = read_begin(t, &own);
        if (err < 0)
            return err;
        err = count_one(t, t->count_pending, &c.pending);
        if (err == 0)
            err = count_one(t, t->count_failed, &c.failed);
        read_end(t, own);
        if (err < 0)
            return err;
        *ret = c;
        return 0;
    }
    sqlite3_stmt *st = t->count_all;
    int rc;
    c = (struct state_counts){0, 0, 0, 0, 0};
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(st, 1);
        switch (column_state(st, 0)) {
        case TOKEN_ACTIVE: c.active = n; break;
        case TOKEN_PENDING: c.pending = n; break;
        case TOKEN_REVOKED: c.revoked = n; break;
        case TOKEN_FAILED: c.failed = n; break;
        case TOKEN_HELD: c.held = n; break;
        }
    }
    err = rc == SQLITE_DONE ? 0 : db_fail(t->db, rc);
    db_done(st);
    if (err < 0)
        return err;
    *ret = c;
    return 0;
}

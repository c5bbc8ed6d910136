/* proto: the control socket's requests (see proto.h and revokerd(8)'s
 * CONTROL SOCKET, doc/revokerd.8.scd, for the contract). One JSON object per line in,
 * one JSON object out; every write is one transaction, committed before the
 * ok:true reply is built. The bearer token is never copied into a reply, an
 * error message or a log line. */
#include "proto.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build-config.h"
#include "bulk.h"
#include "log.h"
#include "secret.h"
#include "util.h"

#define PROTO_MAX_SUBJECT 255
#define PROTO_MAX_REASON 255

/* A handler either returns a reply (ok:true) or NULL with err set; NULL with
 * err empty means out of memory. uid: who asks (SO_PEERCRED), for the
 * audit rows of hold, release and drop; (uid_t)-1 when unknown. */
struct perr {
    char msg[384];
    uid_t uid;
    bool *busy; /* the batch's: the write lock was found taken (tx_begin) */
};
#define perr_set(e, ...) util_format((e)->msg, sizeof((e)->msg), __VA_ARGS__)

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* Echo a name back only when it cannot be a secret's worth of data: short
 * and made of the characters field names and ops use. */
static const char *safe_name(const char *s, size_t len, char *buf, size_t buflen)
{
    if (len == 0 || len > 24 || len >= buflen)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '-'))
            return NULL;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return buf;
}

static char *dump(json_t *reply)
{
    char *s = NULL;
    if (reply) {
        s = json_dumps(reply, JSON_COMPACT);
        json_decref(reply);
    }
    return s;
}

/* A parse error names the place (line, column, byte position) and what was
 * wrong, but never quotes the input: jansson's " near '...'" context is cut
 * off because it can hold part of a token. */
static char *parse_error(const json_error_t *je)
{
    char what[JSON_ERROR_TEXT_LENGTH];
    char msg[300];

    snprintf(what, sizeof(what), "%s", je->text);
    char *near = strstr(what, " near ");
    if (near)
        *near = '\0';
    switch (json_error_code(je)) {
    case json_error_end_of_input_expected:
        snprintf(what, sizeof(what), "unexpected data after the JSON value (send one object per line)");
        break;
    case json_error_null_character:
        snprintf(what, sizeof(what), "strings must not contain \\u0000 (NUL)");
        break;
    case json_error_duplicate_key:
        snprintf(what, sizeof(what), "duplicate key in object");
        break;
    case json_error_invalid_utf8:
        snprintf(what, sizeof(what), "invalid UTF-8 (the request must be UTF-8 text)");
        break;
    case json_error_premature_end_of_input:
        snprintf(what, sizeof(what), "the line ends before the JSON value is complete");
        break;
    default:
        /* "invalid Unicode '\uD800'" quotes an escape from the input. */
        if (strncmp(what, "invalid Unicode", 15) == 0)
            snprintf(what, sizeof(what), "invalid Unicode escape");
        break;
    }
    snprintf(msg, sizeof(msg), "invalid JSON at line %d, column %d (byte %d): %s", je->line,
             je->column, je->position, what);
    return proto_error(msg);
}

/* Field access. Each returns 1 (present and valid), 0 (absent) or -1
 * (present but invalid: e->msg says which field and what was expected). */

static int get_string(json_t *req, const char *key, size_t maxlen, const char **ret,
                      size_t *ret_len, struct perr *e)
{
    json_t *v = json_object_get(req, key);
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        perr_set(e, "field '%s' must be a string, got %s", key, type_name(v));
        return -1;
    }
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len == 0) {
        perr_set(e, "field '%s' must not be empty", key);
        return -1;
    }
    if (len > maxlen) {
        perr_set(e, "field '%s' is %zu bytes long; at most %zu are allowed", key, len, maxlen);
        return -1;
    }
    if (memchr(s, '\0', len)) {
        perr_set(e, "field '%s' must not contain NUL bytes", key);
        return -1;
    }
    *ret = s;
    if (ret_len)
        *ret_len = len;
    return 1;
}

/* get_string() for a text shown as one line (an audit detail): no control
 * characters, which would break `revokerctl audit`'s rows or a terminal. */
static int get_line(json_t *req, const char *key, size_t maxlen, const char **ret, struct perr *e)
{
    const char *s = NULL;
    size_t len = 0;
    int r = get_string(req, key, maxlen, &s, &len, e);

    for (size_t i = 0; r > 0 && i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            perr_set(e, "field '%s' must not contain control characters (newline, tab, escape, ...)", key);
            return -1;
        }
    if (r > 0)
        *ret = s;
    return r;
}

static int get_id(json_t *req, const char *key, int64_t *ret, struct perr *e)
{
    json_t *v = json_object_get(req, key);
    if (!v)
        return 0;
    if (!json_is_integer(v)) {
        perr_set(e, "field '%s' must be a positive integer, got %s", key, type_name(v));
        return -1;
    }
    json_int_t n = json_integer_value(v);
    if (n <= 0) {
        perr_set(e, "field '%s' must be a positive integer, got %" JSON_INTEGER_FORMAT, key, n);
        return -1;
    }
    *ret = (int64_t)n;
    return 1;
}

/* A time in Unix seconds within the range the table accepts. */
static int get_unix_s(json_t *req, const char *key, int64_t *ret, struct perr *e)
{
    json_t *v = json_object_get(req, key);
    if (!v)
        return 0;
    if (!json_is_integer(v)) {
        perr_set(e, "field '%s' must be an integer (Unix seconds), got %s", key, type_name(v));
        return -1;
    }
    json_int_t n = json_integer_value(v);
    if (n < TOKENS_EXPIRY_MIN || n >= TOKENS_EXPIRY_END) {
        bool ms = n >= TOKENS_EXPIRY_MIN * 1000 && n < TOKENS_EXPIRY_END * 1000;
        perr_set(e,
                 "field '%s' must be Unix seconds from %" PRId64 " (2000-01-01) to before %" PRId64
                 " (3000-01-01), got %" JSON_INTEGER_FORMAT "%s",
                 key, TOKENS_EXPIRY_MIN, TOKENS_EXPIRY_END, n, ms ? " (milliseconds? give seconds)" : "");
        return -1;
    }
    *ret = (int64_t)n;
    return 1;
}

static json_t *iso_time_ms(int64_t ms)
{
    char buf[UTIL_ISO_LEN];
    return util_iso_ms(ms, buf, sizeof(buf)) ? json_string(buf) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* A column applications write (subject, flag_reason) may hold bytes that
 * are not UTF-8, which JSON cannot carry: then every byte >= 0x80 shows as
 * '?' rather than the reply failing. */
static json_t *app_text_or_null(const char *s)
{
    json_t *v = str_or_null(s);
    char *copy;

    if (v || !s || !(copy = strdup(s)))
        return v;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

/* Message for a failed database step; the caller has rolled back. */
static void db_failure(const struct proto_env *env, int r, struct perr *e)
{
    if (r == -EBUSY)
        perr_set(e, "database is busy (another process holds a write lock); try again");
    else if (r == -ENOSPC)
        perr_set(e, "database disk is full; nothing was recorded");
    else if (r == -ENOMEM)
        e->msg[0] = '\0';
    else if (r == -ESTALE)
        perr_set(e, "database file was removed or replaced (or its lock file); revokerd is stopping and "
                    "this request may not be recorded: send it again once revokerd is back");
    else
        perr_set(e, "database error (%s); nothing was changed", store_errmsg(env->store));
}

static int file_check(const struct proto_env *env)
{
    return env->file_check && env->file_check(env) < 0 ? -ESTALE : 0;
}

/* A client waits for the reply: the write goes now (STORE_WRITE_NOW).
 * Another process's write lock is waited for once a batch (one read of a
 * connection): the requests after it are told at once, so that a client's
 * pipelined writes do not stall the loop DB_BUSY_TIMEOUT_MS each. */
static int tx_begin(const struct proto_env *env, struct perr *e)
{
    int r = file_check(env);
    if (r == 0)
        r = e->busy && *e->busy ? -EBUSY : store_begin(env->store, STORE_WRITE_NOW);
    if (r == -EBUSY && e->busy)
        *e->busy = true;
    if (r < 0)
        db_failure(env, r, e);
    return r;
}

/* Commits when r is 0, rolls back otherwise. A commit into a file that is
 * no longer at the path is not acknowledged. */
static int tx_end(const struct proto_env *env, int r)
{
    r = store_end(env->store, r);
    if (r == 0)
        r = file_check(env);
    return r;
}

static json_t *reply_ok(void)
{
    return json_pack("{s:b}", "ok", 1);
}

/* Sets a reply field; false on ENOMEM (the reply is freed then). */
static bool put(json_t **reply, const char *key, json_t *value)
{
    if (!*reply || !value || json_object_set_new(*reply, key, value) < 0) {
        json_decref(value);
        json_decref(*reply);
        *reply = NULL;
        return false;
    }
    return true;
}

static void kick(const struct proto_env *env)
{
    if (env->revoke)
        revoke_kick(env->revoke);
}

/* ---- revoke ---- */

/* get_string() has refused an empty or too long one with its own words. */
static bool token_ok(const char *token, size_t len, struct perr *e)
{
    if (secret_token_ok(token, len))
        return true;
    perr_set(e, "field 'token' must be printable ASCII without spaces or control characters");
    return false;
}

static json_t *op_revoke_token(const struct proto_env *env, const char *token, size_t len,
                               const char *subject, const char *reason, struct perr *e)
{
    int64_t id = 0;
    enum token_state state = 0;

    if (!token_ok(token, len, e))
        return NULL;
    if (tx_begin(env, e) < 0)
        return NULL;
    int r = store_revoke_secret(env->store, token, len, subject, reason, db_now_ms(), &id,
                                &state);
    r = tx_end(env, r);
    if (r < 0) {
        db_failure(env, r, e);
        return NULL;
    }
    kick(env);
    log_token(LOG_INFO, id, NULL, NULL, 0, "control: revocation requested for token %" PRId64 " (state %s)", id,
              token_state_name(state));
    json_t *reply = reply_ok();
    put(&reply, "id", json_integer(id));
    put(&reply, "state", str_or_null(token_state_name(state)));
    return reply;
}

static json_t *op_revoke_id(const struct proto_env *env, int64_t id, const char *reason,
                            struct perr *e)
{
    bool changed = false;
    struct token_status st;

    if (tx_begin(env, e) < 0)
        return NULL;
    int r = store_revoke_id(env->store, id, reason, db_now_ms(), &changed);
    if (r == 0)
        r = store_status(env->store, id, &st);
    r = tx_end(env, r);
    if (r == -ENOENT) {
        perr_set(e, "no token with id %" PRId64, id);
        return NULL;
    }
    if (r < 0) {
        db_failure(env, r, e);
        return NULL;
    }
    if (changed) {
        kick(env);
        log_token(LOG_INFO, id, st.fingerprint[0] ? st.fingerprint : NULL, NULL, 0,
                  "control: revocation requested for token %" PRId64, id);
    }
    json_t *ids = json_array();
    if (ids && changed && json_array_append_new(ids, json_integer(id)) < 0) {
        json_decref(ids);
        ids = NULL;
    }
    json_t *reply = reply_ok();
    put(&reply, "count", json_integer(changed ? 1 : 0));
    put(&reply, "ids", ids);
    put(&reply, "state", str_or_null(token_state_name(st.state)));
    return reply;
}

/* bulk.h: below, with hold's. */
static char *reply_text(json_t *reply, const struct perr *e);
static json_t *bulk_now(const struct proto_env *env, const struct bulk_request *req, struct perr *e);

/* Its held tokens stay held and keep the request for their release. */
static json_t *op_revoke_subject(const struct proto_env *env, const char *subject, const char *reason,
                                 struct perr *e)
{
    struct bulk_request req = {.op = BULK_REVOKE, .subject = subject, .reason = reason, .uid = e->uid};
    return bulk_now(env, &req, e);
}

/* revoke's fields; 1: by subject alone, 0: by token or id, -1 with e set. */
static int revoke_args(json_t *req, const char **ret_token, size_t *ret_len, int64_t *ret_id,
                       const char **ret_subject, const char **ret_reason, struct perr *e)
{
    int has_token, has_subject, has_id;

    if ((has_token = get_string(req, "token", SECRET_MAX_LEN, ret_token, ret_len, e)) < 0 ||
        (has_id = get_id(req, "id", ret_id, e)) < 0 ||
        (has_subject = get_string(req, "subject", PROTO_MAX_SUBJECT, ret_subject, NULL, e)) < 0 ||
        get_string(req, "reason", PROTO_MAX_REASON, ret_reason, NULL, e) < 0)
        return -1;
    /* token may carry a subject (recorded on a new row); id stands alone. */
    if (has_id && (has_token || has_subject)) {
        perr_set(e,
                 "revoke takes exactly one of 'token', 'id' or 'subject' "
                 "('subject' may accompany 'token')");
        return -1;
    }
    if (!has_token && !has_id && !has_subject) {
        perr_set(e, "revoke needs one of 'token' (a secret), 'id' (a token id) or 'subject'");
        return -1;
    }
    return has_subject && !has_token;
}

static json_t *op_revoke(const struct proto_env *env, json_t *req, struct perr *e)
{
    const char *token = NULL, *subject = NULL, *reason = NULL;
    size_t token_len = 0;
    int64_t id = 0;
    int by = revoke_args(req, &token, &token_len, &id, &subject, &reason, e);

    if (by < 0)
        return NULL;
    if (by == 1)
        return op_revoke_subject(env, subject, reason, e);
    return token ? op_revoke_token(env, token, token_len, subject, reason, e)
                 : op_revoke_id(env, id, reason, e);
}

/* ---- track, in a batch (proto.h) ---- */

/* The replies held that were to be ok:true once committed: the commit
 * failed or the transaction was rolled back, so they say e instead. */
static void batch_unwrite(struct proto_batch *b, const struct perr *e)
{
    for (size_t i = 0; i < b->held; i++) {
        if (!b->replies[i].written)
            continue;
        free(b->replies[i].reply);
        b->replies[i].reply = e->msg[0] ? proto_error(e->msg) : NULL;
        b->replies[i].written = false;
    }
}

/* Opens the batch's transaction unless it is open. */
static int batch_join(struct proto_batch *b, struct perr *e)
{
    if (b->open)
        return 0;
    int r = tx_begin(b->env, e);
    b->open = r == 0;
    return r;
}

/* A write in the batch's transaction failed: it is rolled back, with the
 * requests before this one in it. */
static void batch_fail(struct proto_batch *b, int r, struct perr *e)
{
    store_rollback(b->env->store);
    b->open = false;
    b->writes = 0;
    db_failure(b->env, r, e);
    batch_unwrite(b, e);
}

static void batch_flush(struct proto_batch *b);

static void batch_hold(struct proto_batch *b, char *reply, bool written)
{
    b->replies[b->held].reply = reply;
    b->replies[b->held].written = written;
    if (++b->held == PROTO_BATCH_MAX)
        batch_flush(b);
}

/* Inserted or found as tokens_track() says; the reply after the commit. */
static json_t *op_track(struct proto_batch *b, json_t *req, struct perr *e)
{
    const char *token = NULL, *subject = NULL;
    size_t token_len = 0;
    int64_t expires_at = 0;
    struct tokens_tracked tr;
    int has_token, r;

    if ((has_token = get_string(req, "token", SECRET_MAX_LEN, &token, &token_len, e)) < 0 ||
        get_string(req, "subject", PROTO_MAX_SUBJECT, &subject, NULL, e) < 0 ||
        get_unix_s(req, "expires_at", &expires_at, e) < 0)
        return NULL;
    if (!has_token) {
        perr_set(e,
                 "track needs 'token' (the secret), and 'expires_at' unless the token is a JWT with an exp "
                 "claim");
        return NULL;
    }
    if (!token_ok(token, token_len, e) || batch_join(b, e) < 0)
        return NULL;
    r = store_track(b->env->store, token, token_len, subject, expires_at, &tr);
    if (r == -ENODATA) { /* nothing was written */
        perr_set(e, "track needs an expiry: give expires_at (Unix seconds) or a JWT with an exp claim");
        return NULL;
    }
    if (r < 0) {
        batch_fail(b, r, e);
        return NULL;
    }
    b->writes++;
    json_t *reply = reply_ok();
    put(&reply, "id", json_integer(tr.id));
    put(&reply, "state", str_or_null(token_state_name(tr.state)));
    put(&reply, "expires_at", iso_time_ms(tr.expires_at * 1000));
    return reply;
}

/* ---- status, retry, stats, ping ---- */

static json_t *op_status(const struct proto_env *env, json_t *req, struct perr *e)
{
    int64_t id = 0;
    struct token_status st;
    int r = get_id(req, "id", &id, e);
    if (r < 0)
        return NULL;
    if (r == 0) {
        perr_set(e, "status needs 'id' (a positive integer)");
        return NULL;
    }
    memset(&st, 0, sizeof(st));
    r = store_status(env->store, id, &st);
    if (r == -ENOENT) {
        perr_set(e, "no token with id %" PRId64, id);
        return NULL;
    }
    if (r < 0) {
        db_failure(env, r, e);
        return NULL;
    }
    json_t *reply = reply_ok();
    put(&reply, "id", json_integer(st.id));
    put(&reply, "state", str_or_null(token_state_name(st.state)));
    put(&reply, "attempts", json_integer(st.attempts));
    put(&reply, "last_event", str_or_null(st.last_event));
    put(&reply, "last_error", str_or_null(st.last_error));
    put(&reply, "next_attempt_at", iso_time_ms(st.next_attempt_at));
    put(&reply, "expires_at", iso_time_ms(st.expires_at > 0 ? st.expires_at * 1000 : 0));
    put(&reply, "due_at", iso_time_ms(st.due_at));
    put(&reply, "finished_at", iso_time_ms(st.finished_at));
    put(&reply, "subject", app_text_or_null(st.subject));
    put(&reply, "fingerprint", str_or_null(st.fingerprint));
    put(&reply, "reason", app_text_or_null(st.reason));
    return reply;
}

static json_t *op_retry(const struct proto_env *env, json_t *req, struct perr *e)
{
    int64_t id = 0;
    int has_id = get_id(req, "id", &id, e);
    if (has_id < 0)
        return NULL;
    json_t *failed = json_object_get(req, "failed");
    if (failed && !json_is_true(failed)) {
        perr_set(e, "field 'failed' must be true, got %s",
                 json_is_false(failed) ? "false" : type_name(failed));
        return NULL;
    }
    if ((has_id != 0) == (failed != NULL)) {
        perr_set(e, "retry takes exactly one of 'id' (a token id) or 'failed': true");
        return NULL;
    }

    unsigned count = 0;
    if (tx_begin(env, e) < 0)
        return NULL;
    int r;
    if (has_id) {
        r = store_requeue_id(env->store, id, db_now_ms());
        count = r == 0 ? 1 : 0;
    } else {
        r = store_requeue_failed(env->store, db_now_ms(), &count);
    }
    r = tx_end(env, r);
    if (r == -ENOENT) {
        perr_set(e, "no token with id %" PRId64, id);
        return NULL;
    }
    if (r == -EINVAL && has_id) {
        struct token_status st;
        if (store_status(env->store, id, &st) == 0 && st.state != TOKEN_FAILED)
            perr_set(e, "token %" PRId64 " is %s, not failed; only failed tokens can be retried",
                     id, token_state_name(st.state));
        else
            perr_set(e, "token %" PRId64 " cannot be retried: its secret is no longer stored", id);
        return NULL;
    }
    if (r < 0) {
        db_failure(env, r, e);
        return NULL;
    }
    if (count > 0) {
        kick(env);
        log_info("control: %u failed token(s) requeued", count);
    }
    json_t *reply = reply_ok();
    put(&reply, "count", json_integer(count));
    if (has_id)
        put(&reply, "ids", json_pack("[I]", (json_int_t)id));
    return reply;
}

/* stats counts every state with store_count(full = true): a scan of the
 * table, acceptable for an operator's request (not for a status line that
 * is refreshed all the time). */
static json_t *op_stats(const struct proto_env *env, json_t *req, struct perr *e)
{
    (void)req;
    struct state_counts sc;
    struct revoke_stats rs;
    int r = store_count(env->store, true, &sc);
    if (r < 0) {
        db_failure(env, r, e);
        return NULL;
    }
    memset(&rs, 0, sizeof(rs));
    rs.health = "unknown"; /* no engine (tests) */
    rs.last_error = "";
    if (env->revoke)
        revoke_get_stats(env->revoke, &rs);

    json_t *reply = reply_ok();
    put(&reply, "states", json_pack("{s:I,s:I,s:I,s:I,s:I}",
                                    token_state_name(TOKEN_ACTIVE), (json_int_t)sc.active,
                                    token_state_name(TOKEN_PENDING), (json_int_t)sc.pending,
                                    token_state_name(TOKEN_REVOKED), (json_int_t)sc.revoked,
                                    token_state_name(TOKEN_FAILED), (json_int_t)sc.failed,
                                    token_state_name(TOKEN_HELD), (json_int_t)sc.held));
    put(&reply, "queued", json_integer(rs.queued));
    put(&reply, "in_flight", json_integer(rs.in_flight));
    put(&reply, "uncommitted", json_integer(rs.uncommitted));
    put(&reply, "totals",
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "sent", (json_int_t)rs.sent, "revoked",
                  (json_int_t)rs.revoked, "already_invalid", (json_int_t)rs.already_invalid,
                  "rejected", (json_int_t)rs.rejected, "gave_up", (json_int_t)rs.gave_up,
                  "retried", (json_int_t)rs.retried, "hashed", (json_int_t)rs.hashed, "dropped",
                  (json_int_t)rs.dropped));
    /* Rows whose expires_at was not Unix seconds (README, the table contract). */
    put(&reply, "bad_expires_at",
        json_pack("{s:I,s:I}", "converted_from_ms", (json_int_t)rs.expiry_converted, "rejected",
                  (json_int_t)rs.expiry_rejected));
    put(&reply, "endpoint",
        json_pack("{s:s,s:o}", "health", rs.health ? rs.health : "unknown", "last_error",
                  str_or_null(rs.last_error)));
    put(&reply, "db_errors", json_integer((json_int_t)rs.db_errors));
    put(&reply, "db_error", str_or_null(rs.db_error));
    /* How long the error has lasted, in seconds; null without one. */
    put(&reply, "db_error_for_s", rs.db_error[0] ? json_integer((json_int_t)(rs.db_error_for_ms / 1000)) : json_null());
    put(&reply, "uptime_s", json_integer((json_int_t)(env->uptime_ms ? env->uptime_ms(env) / 1000 : 0)));
    struct store_metrics sm;
    store_get_metrics(env->store, &sm);
    put(&reply, "database",
        json_pack("{s:I,s:I,s:{s:I,s:I}}", "size_bytes", (json_int_t)sm.db_size_bytes, "free_bytes",
                  (json_int_t)sm.db_free_bytes, "pruned", "tokens", (json_int_t)sm.pruned_tokens, "audit",
                  (json_int_t)sm.pruned_audit));
    return reply;
}

/* The Prometheus text (metrics.h), in one string field: memory only, no scan. */
static json_t *op_metrics(const struct proto_env *env, json_t *req, struct perr *e)
{
    (void)req;
    if (!env->metrics) {
        perr_set(e, "metrics are not available: revokerd could not open its database read-only to count "
                    "the tokens (see its log)");
        return NULL;
    }
    char *text = metrics_render(env->metrics, METRICS_TEXT);
    if (!text)
        return NULL;
    json_t *reply = reply_ok();
    put(&reply, "text", json_string(text));
    free(text);
    return reply;
}

static json_t *op_ping(const struct proto_env *env, json_t *req, struct perr *e)
{
    (void)req;
    (void)e;
    json_t *reply = reply_ok();
    put(&reply, "version", json_string(REVOKERD_VERSION));
    put(&reply, "uptime_s", json_integer((json_int_t)(env->uptime_ms ? env->uptime_ms(env) / 1000 : 0)));
    return reply;
}

/* ---- queue and shape (queue.h) ---- */

/* A name field from a fixed list: 1 (present, *ret set), 0 (absent) or -1
 * with the message naming the field, the value (when it is safe to echo)
 * and the names allowed. */
static int get_name(json_t *req, const char *key, int (*from_name)(const char *, int *), int *ret,
                    const char *allowed, struct perr *e)
{
    const char *s = NULL;
    size_t len = 0;
    char buf[32];
    int r = get_string(req, key, 64, &s, &len, e);

    if (r <= 0)
        return r;
    if (from_name(s, ret) == 0)
        return 1;
    const char *shown = safe_name(s, len, buf, sizeof(buf));
    if (shown)
        perr_set(e, "field '%s' must be one of %s, got '%s'", key, allowed, shown);
    else
        perr_set(e, "field '%s' must be one of %s", key, allowed);
    return -1;
}

static int reason_from(const char *s, int *ret)
{
    enum queue_reason v;
    int r = queue_reason_from_name(s, &v);
    *ret = (int)v;
    return r;
}

static int state_from(const char *s, int *ret)
{
    enum queue_state v;
    int r = queue_state_from_name(s, &v);
    *ret = (int)v;
    return r;
}

static int by_from(const char *s, int *ret)
{
    enum queue_by v;
    int r = queue_by_from_name(s, &v);
    *ret = (int)v;
    return r;
}

static json_t *op_queue(const struct proto_env *env, json_t *req, struct perr *e)
{
    struct queue_filter f = {.limit = QUEUE_PAGE_MAX};
    int reason = 0, state = 0;
    const char *after = NULL;
    json_t *lim = json_object_get(req, "limit");

    if (get_name(req, "reason", reason_from, &reason, "expired, flagged, requested", e) < 0 ||
        get_name(req, "state", state_from, &state, "pending, held", e) < 0)
        return NULL;
    f.reason = (enum queue_reason)reason;
    f.state = (enum queue_state)state;
    if (lim && (!json_is_integer(lim) || json_integer_value(lim) < 1 || json_integer_value(lim) > QUEUE_PAGE_MAX)) {
        if (json_is_integer(lim))
            perr_set(e, "field 'limit' must be an integer from 1 to %d, got %" JSON_INTEGER_FORMAT, QUEUE_PAGE_MAX,
                     json_integer_value(lim));
        else
            perr_set(e, "field 'limit' must be an integer from 1 to %d, got %s", QUEUE_PAGE_MAX, type_name(lim));
        return NULL;
    }
    if (lim)
        f.limit = (unsigned)json_integer_value(lim);
    json_t *a = json_object_get(req, "after");
    /* An empty string is a malformed cursor, not a missing one. */
    if (!(json_is_string(a) && json_string_length(a) == 0) &&
        get_string(req, "after", QUEUE_CURSOR_LEN, &after, NULL, e) < 0)
        return NULL;
    if ((json_is_string(a) && !after) || (after && queue_cursor_parse(after, &f.after) < 0)) {
        perr_set(e, "field 'after' must be the 'next' of the previous reply (\"DUE_AT_MS:ID\" or \"null:ID\")");
        return NULL;
    }
    f.after_set = after != NULL;

    json_t *rows;
    bool more;
    struct queue_cursor next;
    char cursor[QUEUE_CURSOR_LEN];
    int r = queue_page(store_db(env->store), &f, &rows, &more, &next);
    if (r < 0) {
        db_failure(env, r, e);
        return NULL;
    }
    if (more)
        queue_cursor_format(&next, cursor, sizeof(cursor));
    json_t *reply = reply_ok();
    put(&reply, "rows", rows);
    put(&reply, "next", more ? json_string(cursor) : json_null());
    return reply;
}

static char *shape_error(int err, const char *msg)
{
    char text[300];
    if (err == -ENOMEM)
        return NULL;
    util_format(text, sizeof(text), "%s", msg);
    return proto_error(text);
}

struct shape_wait {
    proto_done_fn *done;
    void *ud;
};

static void shape_counted(void *ud, int err, const struct queue_shape *s, const char *msg)
{
    struct shape_wait *w = ud;
    w->done(w->ud, err < 0 ? shape_error(err, msg) : dump(queue_shape_json(s)));
    free(w);
}

static json_t *op_shape(const struct proto_env *env, json_t *req, struct perr *e)
{
    int by = QUEUE_BY_REASON;
    char msg[200];

    if (get_name(req, "by", by_from, &by, "reason, event", e) < 0)
        return NULL;
    struct queue_shape *s = malloc(sizeof(*s));
    int r = s ? queue_shape_compute(store_db(env->store)->conn, (enum queue_by)by, db_now_ms(), s, msg, sizeof(msg))
              : -ENOMEM;
    json_t *reply = r == 0 ? queue_shape_json(s) : NULL;
    if (r < 0 && r != -ENOMEM)
        perr_set(e, "%s", msg);
    free(s);
    return reply;
}

/* shape off the loop, when there is a queue: it reads every pending row
 * (0.2 s for a million). */
static int op_shape_start(const struct proto_env *env, json_t *req, struct perr *e, proto_done_fn *done, void *ud)
{
    int by = QUEUE_BY_REASON;

    if (!env->queue)
        return -ENOTSUP; /* op_shape counts on the calling thread */
    if (get_name(req, "by", by_from, &by, "reason, event", e) < 0)
        return -EINVAL;
    struct shape_wait *w = malloc(sizeof(*w));
    int r = w ? queue_shape_start(env->queue, (enum queue_by)by, shape_counted, w) : -ENOMEM;
    if (r == 0) {
        *w = (struct shape_wait){.done = done, .ud = ud};
        return -EINPROGRESS;
    }
    free(w);
    if (r == -EBUSY)
        perr_set(e, "%d shape requests are waiting already; try again in a moment", QUEUE_SHAPE_WAITING);
    else if (r != -ENOMEM)
        perr_set(e, "cannot count the pending tokens: %s", strerror(-r));
    return r;
}

/* ---- hold, release, drop (hold.h) ---- */

/* hold.h's recall: the engine takes a queued job back (none in tests). */
static int recall(void *ud, int64_t id)
{
    const struct proto_env *env = ud;
    return env->revoke ? revoke_recall(env->revoke, id) : 0;
}

/* The error of a hold, release or drop of token id; state: what it is. */
static void hold_failure(const struct proto_env *env, int r, const char *op, int64_t id,
                         enum token_state state, struct perr *e)
{
    const char *name = token_state_name(state) ? token_state_name(state) : "in an unknown state";

    if (r == -ENOENT)
        perr_set(e, "no token with id %" PRId64, id);
    else if (r == -EINPROGRESS)
        perr_set(e, "token %" PRId64 " is being sent now (its request is in flight) and cannot be recalled; "
                    "its outcome is recorded as usual", id);
    else if (r == -ENOKEY)
        perr_set(e, "token %" PRId64 " has no secret stored, so it cannot be sent: there is nothing to hold",
                 id);
    else if (r == -EINVAL && state == TOKEN_HELD && strcmp(op, "hold") == 0)
        perr_set(e, "token %" PRId64 " is held already", id);
    else if (r == -EINVAL)
        perr_set(e, "token %" PRId64 " is %s; only %s tokens can be %s", id, name,
                 strcmp(op, "hold") == 0   ? "active or pending"
                 : strcmp(op, "drop") == 0 ? "pending or held"
                                           : "held",
                 strcmp(op, "hold") == 0 ? "held" : strcmp(op, "drop") == 0 ? "dropped" : "released");
    else
        db_failure(env, r, e);
}

/* The selector of hold and release: exactly one of id, subject (and, for
 * release, all: true). 1 with id or subject set, 2 for all, -1 with e set. */
static int get_selector(json_t *req, const char *op, bool with_all, int64_t *ret_id, const char **ret_subject,
                        struct perr *e)
{
    int has_id, has_subject;
    json_t *all = with_all ? json_object_get(req, "all") : NULL;

    if ((has_id = get_id(req, "id", ret_id, e)) < 0 ||
        (has_subject = get_string(req, "subject", PROTO_MAX_SUBJECT, ret_subject, NULL, e)) < 0)
        return -1;
    if (all && !json_is_true(all)) {
        perr_set(e, "field 'all' must be true, got %s", json_is_false(all) ? "false" : type_name(all));
        return -1;
    }
    if (has_id + has_subject + (all != NULL) != 1) {
        perr_set(e, "%s takes exactly one of 'id' (a token id)%s 'subject'%s", op, with_all ? "," : " or",
                 with_all ? " or 'all': true" : "");
        return -1;
    }
    return all ? 2 : 1;
}

static long uid_shown(uid_t uid)
{
    return uid == (uid_t)-1 ? -1L : (long)uid;
}

/* ---- ops on many tokens, in parts (bulk.h) ---- */

static int bulk_file_check(void *ud)
{
    return file_check(ud);
}

static void bulk_kick(void *ud)
{
    kick(ud);
}

static struct bulk_env bulk_env_of(const struct proto_env *env)
{
    return (struct bulk_env){.store = env->store,
                             .recall = recall,
                             .kick = bulk_kick,
                             .file_check = bulk_file_check,
                             .ud = (void *)env};
}

static const char *const bulk_names[][2] = {
    [BULK_HOLD] = {"hold", "held"},
    [BULK_RELEASE] = {"release", "released"},
    [BULK_REVOKE] = {"revoke", "made due"},
};

static void bulk_log(enum bulk_op op, uid_t uid, const struct bulk_result *res)
{
    if (res->ids.n == 0 && op != BULK_HOLD)
        return;
    log_info("control: %zu token(s) %s by uid %ld, in %u part(s) (the longest %.1f ms)", res->ids.n,
             op == BULK_REVOKE ? "requested for revocation" : bulk_names[op][1], uid_shown(uid), res->parts,
             (double)res->longest_ns / 1e6);
}

/* A failed part: it was rolled back, the parts before it stay. */
static void bulk_failure(const struct proto_env *env, int r, enum bulk_op op, const struct bulk_result *res,
                         struct perr *e)
{
    if (r == -ECANCELED)
        perr_set(e, "revokerd is stopping");
    else
        db_failure(env, r, e);
    if (res->ids.n == 0 && r != -ECANCELED)
        return; /* nothing was changed */
    char cause[sizeof(e->msg)];
    util_format(cause, sizeof(cause), "%s", e->msg[0] ? e->msg : "out of memory");
    perr_set(e,
             "%s stopped after %zu token(s) were %s (it goes in parts, each committed on its own: those stay "
             "so): %s; the same request again does the rest",
             bulk_names[op][0], res->ids.n, bulk_names[op][1], cause);
}

static json_t *bulk_now(const struct proto_env *env, const struct bulk_request *req, struct perr *e)
{
    struct bulk_env be = bulk_env_of(env);
    struct bulk_result res = {.parts = 0};
    /* The batch's write lock rule, as tx_begin's. */
    int r = e->busy && *e->busy ? -EBUSY : bulk_run(&be, req, &res);
    char *text = NULL;
    json_t *reply = NULL;

    if (r == -EBUSY && e->busy)
        *e->busy = true;
    if (r < 0)
        bulk_failure(env, r, req->op, &res, e);
    else
        text = bulk_reply_text(req->op, &res);
    bulk_log(req->op, req->uid, &res);
    bulk_result_free(&res);
    /* The callers take a json_t: parsed back (small sets, tests and fuzz). */
    if (text)
        reply = json_loads(text, 0, NULL);
    free(text);
    return reply;
}

struct bulk_wait {
    const struct proto_env *env;
    enum bulk_op op;
    uid_t uid;
    proto_done_fn *done;
    void *ud;
};

static void bulk_done(void *ud, int err, const struct bulk_result *res)
{
    struct bulk_wait *w = ud;
    struct perr e = {.msg = ""};
    char *reply = NULL;

    if (err < 0) {
        bulk_failure(w->env, err, w->op, res, &e);
        reply = reply_text(NULL, &e);
    } else {
        reply = bulk_reply_text(w->op, res);
    }
    bulk_log(w->op, w->uid, res);
    w->done(w->ud, reply);
    free(w);
}

/* The op in parts on the loop: -EINPROGRESS (done comes later), or
 * -ENOTSUP when there is no loop to run it on (then the caller's fn runs
 * it whole). */
static int bulk_later(const struct proto_env *env, const struct bulk_request *req, struct perr *e,
                      proto_done_fn *done, void *ud)
{
    if (!env->bulk)
        return -ENOTSUP;
    struct bulk_wait *w = malloc(sizeof(*w));
    struct bulk_env be = bulk_env_of(env);
    int r = w ? bulk_start(env->bulk, &be, req, bulk_done, w) : -ENOMEM;
    if (r == 0) {
        *w = (struct bulk_wait){.env = env, .op = req->op, .uid = req->uid, .done = done, .ud = ud};
        return -EINPROGRESS;
    }
    free(w);
    if (r == -ECANCELED)
        perr_set(e, "revokerd is stopping");
    return r;
}

static int op_revoke_start(const struct proto_env *env, json_t *req, struct perr *e, proto_done_fn *done,
                           void *ud)
{
    const char *token = NULL, *subject = NULL, *reason = NULL;
    size_t token_len = 0;
    int64_t id = 0;
    int by = revoke_args(req, &token, &token_len, &id, &subject, &reason, e);

    if (by < 0)
        return -EINVAL;
    struct bulk_request br = {.op = BULK_REVOKE, .subject = subject, .reason = reason, .uid = e->uid};
    return by == 1 ? bulk_later(env, &br, e, done, ud) : -ENOTSUP;
}

/* hold's and release's fields: 1 by id (*ret_id), 0 many (*ret set), -1 with e set. */
static int many_args(json_t *req, enum bulk_op op, int64_t *ret_id, struct bulk_request *ret, struct perr *e)
{
    const char *subject = NULL, *reason = NULL;
    int sel = get_selector(req, bulk_names[op][0], op == BULK_RELEASE, ret_id, &subject, e);

    if (sel < 0 || (op == BULK_HOLD && get_line(req, "reason", PROTO_MAX_REASON, &reason, e) < 0))
        return -1;
    *ret = (struct bulk_request){.op = op, .subject = subject, .reason = reason, .uid = e->uid};
    return *ret_id != 0;
}

static int op_many_start(enum bulk_op op, const struct proto_env *env, json_t *req, struct perr *e,
                         proto_done_fn *done, void *ud)
{
    struct bulk_request br;
    int64_t id = 0;
    int by = many_args(req, op, &id, &br, e);

    return by < 0 ? -EINVAL : by == 1 ? -ENOTSUP : bulk_later(env, &br, e, done, ud);
}

static int op_hold_start(const struct proto_env *env, json_t *req, struct perr *e, proto_done_fn *done,
                         void *ud)
{
    return op_many_start(BULK_HOLD, env, req, e, done, ud);
}

static int op_release_start(const struct proto_env *env, json_t *req, struct perr *e, proto_done_fn *done,
                            void *ud)
{
    return op_many_start(BULK_RELEASE, env, req, e, done, ud);
}

/* The reply of a hold or release of one token: count 1 and its id. */
static json_t *one_reply(int64_t id)
{
    json_t *reply = reply_ok();
    put(&reply, "count", json_integer(1));
    put(&reply, "ids", json_pack("[I]", (json_int_t)id));
    return reply;
}

static json_t *op_hold(const struct proto_env *env, json_t *req, struct perr *e)
{
    struct bulk_request br;
    int64_t id = 0;
    enum token_state state = 0;
    int by = many_args(req, BULK_HOLD, &id, &br, e);

    if (by < 0)
        return NULL;
    if (by == 0)
        return bulk_now(env, &br, e);
    struct hold_who who = {.uid = e->uid, .reason = br.reason, .now_ms = db_now_ms()};
    if (tx_begin(env, e) < 0)
        return NULL;
    int r = store_hold_id(env->store, id, &who, recall, (void *)env, &state);
    r = tx_end(env, r);
    kick(env); /* a job taken back leaves room in the queue; after a rollback it is read again */
    if (r < 0) {
        hold_failure(env, r, "hold", id, state, e);
        return NULL;
    }
    log_info("control: token %" PRId64 " held by uid %ld", id, uid_shown(e->uid));
    return one_reply(id);
}

static json_t *op_release(const struct proto_env *env, json_t *req, struct perr *e)
{
    struct bulk_request br;
    int64_t id = 0;
    enum token_state state = 0;
    int by = many_args(req, BULK_RELEASE, &id, &br, e);

    if (by < 0)
        return NULL;
    if (by == 0)
        return bulk_now(env, &br, e);
    struct hold_who who = {.uid = e->uid, .now_ms = db_now_ms()};
    if (tx_begin(env, e) < 0)
        return NULL;
    int r = store_release_id(env->store, id, &who, &state);
    r = tx_end(env, r);
    if (r < 0) {
        hold_failure(env, r, "release", id, state, e);
        return NULL;
    }
    kick(env);
    log_info("control: token %" PRId64 " released by uid %ld", id, uid_shown(e->uid));
    json_t *reply = one_reply(id);
    put(&reply, "state", str_or_null(token_state_name(state)));
    return reply;
}

static json_t *op_drop(const struct proto_env *env, json_t *req, struct perr *e)
{
    const char *reason = NULL;
    int64_t id = 0;
    enum token_state state = 0;
    int has_id, has_reason;

    if ((has_id = get_id(req, "id", &id, e)) < 0 ||
        (has_reason = get_line(req, "reason", PROTO_MAX_REASON, &reason, e)) < 0)
        return NULL;
    if (!has_id || !has_reason) {
        perr_set(e, "drop needs 'id' (a token id) and 'reason' (recorded in the audit log)");
        return NULL;
    }
    struct revoke_stats rs = {.keep_secrets = false};
    if (env->revoke)
        revoke_get_stats(env->revoke, &rs);
    struct hold_who who = {.uid = e->uid, .reason = reason, .now_ms = db_now_ms()};
    if (tx_begin(env, e) < 0)
        return NULL;
    int r = store_drop(env->store, id, &who, !rs.keep_secrets, recall, (void *)env, &state);
    r = tx_end(env, r);
    kick(env);
    if (r < 0) {
        hold_failure(env, r, "drop", id, state, e);
        return NULL;
    }
    if (env->revoke)
        revoke_dropped(env->revoke, !rs.keep_secrets);
    log_token(LOG_NOTICE, id, NULL, audit_event_name(AUDIT_DROPPED), 0,
              "control: token %" PRId64 " dropped by uid %ld (was %s); it is failed and will not be sent", id,
              uid_shown(e->uid), token_state_name(state));
    return one_reply(id);
}

struct op {
    const char *name;
    json_t *(*fn)(const struct proto_env *env, json_t *req, struct perr *e);
    /* NULL, or fn off the loop, when there is a queue and the caller takes
     * a later reply: -EINPROGRESS (done comes), or another -errno with e set. */
    int (*start)(const struct proto_env *env, json_t *req, struct perr *e, proto_done_fn *done, void *ud);
    const char *fields[5]; /* besides "op" */
    const char *field_list;
    /* Instead of fn: runs in the batch's transaction (proto_batch). */
    json_t *(*batched)(struct proto_batch *b, json_t *req, struct perr *e);
};

static const struct op ops[] = {
    {"revoke",
     op_revoke,
     op_revoke_start,
     {"token", "id", "subject", "reason", NULL},
     "token, id, subject, reason",
     NULL},
    {"status", op_status, NULL, {"id", NULL}, "id", NULL},
    {"retry", op_retry, NULL, {"id", "failed", NULL}, "id, failed", NULL},
    {"stats", op_stats, NULL, {NULL}, "none", NULL},
    {"metrics", op_metrics, NULL, {NULL}, "none", NULL},
    {"ping", op_ping, NULL, {NULL}, "none", NULL},
    {"track", NULL, NULL, {"token", "subject", "expires_at", NULL}, "token, subject, expires_at", op_track},
    {"hold", op_hold, op_hold_start, {"id", "subject", "reason", NULL}, "id, subject, reason", NULL},
    {"release", op_release, op_release_start, {"id", "subject", "all", NULL}, "id, subject, all", NULL},
    {"drop", op_drop, NULL, {"id", "reason", NULL}, "id, reason", NULL},
    {"queue",
     op_queue,
     NULL,
     {"reason", "state", "limit", "after", NULL},
     "reason, state, limit, after",
     NULL},
    {"shape", op_shape, op_shape_start, {"by", NULL}, "by", NULL},
};
#define OP_NAMES "revoke, status, retry, stats, metrics, ping, track, hold, release, drop, queue, shape"

/* Unknown fields are refused so that a typo ("reasn") is not silently lost. */
static bool fields_known(const struct op *op, json_t *req, struct perr *e)
{
    const char *key;
    json_t *value;
    char buf[32];
    json_object_foreach(req, key, value) {
        (void)value;
        bool known = strcmp(key, "op") == 0;
        for (size_t i = 0; !known && op->fields[i]; i++)
            known = strcmp(key, op->fields[i]) == 0;
        if (!known) {
            const char *shown = safe_name(key, strlen(key), buf, sizeof(buf));
            if (shown)
                perr_set(e, "unknown field '%s' for op %s (allowed: %s)", shown, op->name,
                         op->field_list);
            else
                perr_set(e, "unknown field for op %s (allowed: %s)", op->name, op->field_list);
            return false;
        }
    }
    return true;
}

/* The request's op, or NULL with e saying what is wrong with the request. */
static const struct op *find_op(json_t *req, struct perr *e)
{
    char buf[32];

    if (!json_is_object(req)) {
        perr_set(e, "a request must be a JSON object such as {\"op\":\"ping\"}, got %s", type_name(req));
        return NULL;
    }
    json_t *opv = json_object_get(req, "op");
    if (!opv) {
        perr_set(e, "missing field 'op' (one of: " OP_NAMES ")");
        return NULL;
    }
    if (!json_is_string(opv)) {
        perr_set(e, "field 'op' must be a string (one of: " OP_NAMES "), got %s", type_name(opv));
        return NULL;
    }
    const char *name = json_string_value(opv);
    size_t name_len = json_string_length(opv);
    const struct op *op = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
        if (strlen(ops[i].name) == name_len && memcmp(ops[i].name, name, name_len) == 0)
            op = &ops[i];
    if (!op) {
        const char *shown = safe_name(name, name_len, buf, sizeof(buf));
        if (shown)
            perr_set(e, "unknown op '%s'; valid ops: " OP_NAMES, shown);
        else
            perr_set(e, "unknown op; valid ops: " OP_NAMES);
        return NULL;
    }
    return fields_known(op, req, e) ? op : NULL;
}

/* A reply for the handler's result: the reply, e's error, or NULL (ENOMEM). */
static char *reply_text(json_t *reply, const struct perr *e)
{
    if (reply)
        return dump(reply);
    return e->msg[0] ? proto_error(e->msg) : NULL;
}

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

void proto_batch_begin(struct proto_batch *b, const struct proto_env *env, proto_done_fn *emit, void *ud)
{
    b->env = env;
    b->emit = emit;
    b->late = NULL;
    b->ud = ud;
    b->uid = (uid_t)-1;
    b->open = false;
    b->busy = false;
    b->writes = 0;
    b->held = 0;
}

int proto_batch_line(struct proto_batch *b, const char *line, size_t len)
{
    struct perr e = {.msg = "", .uid = b->uid, .busy = &b->busy};
    const struct op *op = NULL;
    json_error_t je;
    json_t *req = NULL;
    char *reply;

    secret_wipe_json();
    if (!blank(line, len))
        req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    /* By the op's name when it is one metrics knows: never a secret. */
    if (b->env->metrics)
        metrics_count_request(b->env->metrics, json_string_value(json_object_get(req, "op")));
    if (req)
        op = find_op(req, &e);
    if (op && op->batched) {
        json_t *ok = op->batched(b, req, &e);
        json_decref(req); /* the token's string is zeroed (secret_wipe_json) */
        batch_hold(b, reply_text(ok, &e), ok != NULL);
        return 0;
    }
    /* Anything else runs alone, after the batch's replies. */
    batch_flush(b);
    int r = op && op->start && b->late ? op->start(b->env, req, &e, b->late, b->ud) : -ENOTSUP;
    if (r != -ENOTSUP) {
        json_decref(req);
        if (r == -EINPROGRESS)
            return r;
        b->emit(b->ud, e.msg[0] ? proto_error(e.msg) : NULL);
        return 0;
    }
    if (blank(line, len))
        reply = proto_error("empty request: expected a JSON object such as {\"op\":\"ping\"}");
    else if (!req)
        reply = parse_error(&je);
    else if (!op)
        reply = proto_error(e.msg);
    else
        reply = reply_text(op->fn(b->env, req, &e), &e);
    json_decref(req);
    b->emit(b->ud, reply);
    return 0;
}

/* Commits the batch's transaction and emits the replies held. */
static void batch_flush(struct proto_batch *b)
{
    if (b->open) {
        int r = tx_end(b->env, 0);
        b->open = false;
        if (r < 0) {
            struct perr e = {.msg = ""};
            db_failure(b->env, r, &e);
            batch_unwrite(b, &e);
        } else if (b->writes > 0) {
            kick(b->env);
            log_debug("control: %u track request(s) committed in one transaction", b->writes);
        }
        b->writes = 0;
    }
    for (size_t i = 0; i < b->held; i++)
        b->emit(b->ud, b->replies[i].reply);
    b->held = 0;
}

void proto_batch_end(struct proto_batch *b)
{
    batch_flush(b);
    b->busy = false;
}

static void keep_reply(void *ud, char *reply)
{
    *(char **)ud = reply;
}

char *proto_handle(const struct proto_env *env, const char *line, size_t len)
{
    return proto_handle_as(env, (uid_t)-1, line, len);
}

char *proto_handle_as(const struct proto_env *env, uid_t uid, const char *line, size_t len)
{
    struct proto_batch b;
    char *reply = NULL;

    proto_batch_begin(&b, env, keep_reply, &reply);
    b.uid = uid;
    proto_batch_line(&b, line, len);
    proto_batch_end(&b);
    return reply;
}

char *proto_error(const char *message)
{
    json_t *reply = json_pack("{s:b,s:s}", "ok", 0, "error", message);
    if (!reply) /* not UTF-8 (cannot happen with our messages), or ENOMEM */
        reply = json_pack("{s:b,s:s}", "ok", 0, "error", "internal error");
    return dump(reply);
}

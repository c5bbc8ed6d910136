/* audit: the log's appends and reads (see audit.h); the row's format and
 * hash are auditrow's, the checks auditverify's, the prune auditprune's. */
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <time.h>

#include "auditrow.h"
#include "util.h"

struct audit {
    struct db *db;
    sqlite3_stmt *head, *insert;
    EVP_MD_CTX *md;
    bool head_known; /* last_seq and last_hash are the table's chain head */
    int64_t last_seq;
    char last_hash[AUDIT_HASH_LEN + 1];
};

static int load_head(struct audit *a)
{
    sqlite3_stmt *st = a->head;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 1);
        a->last_seq = sqlite3_column_int64(st, 0);
        snprintf(a->last_hash, sizeof(a->last_hash), "%s", h ? h : "");
    } else if (rc == SQLITE_DONE) {
        a->last_seq = 0;
        memcpy(a->last_hash, AUDITROW_GENESIS, sizeof(AUDITROW_GENESIS));
    } else {
        int err = db_fail(a->db, rc);
        sqlite3_reset(st);
        return err;
    }
    sqlite3_reset(st);
    a->head_known = true;
    return 0;
}

static void bind_nullable_int(sqlite3_stmt *st, int i, bool present, int64_t v)
{
    if (present)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* A hash column, cut to AUDIT_HASH_LEN (a hash edited to something longer
 * is shown as it is, cut to size: the check names it). */
static void copy_hash(sqlite3_stmt *st, int i, char ret[AUDIT_HASH_LEN + 1])
{
    size_t len;
    const char *h = auditrow_text(st, i, &len);

    util_format(ret, AUDIT_HASH_LEN + 1, "%.*s", (int)(len < AUDIT_HASH_LEN ? len : AUDIT_HASH_LEN),
                h ? h : "");
}

int audit_open(struct db *db, struct audit **ret_audit)
{
    struct audit *a = calloc(1, sizeof(*a));
    int err;

    if (!a)
        return -ENOMEM;
    a->db = db;
    a->md = EVP_MD_CTX_new();
    if (!a->md) {
        err = -ENOMEM;
        goto err_after_alloc;
    }
    err = db_prepare(db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &a->head);
    if (err < 0)
        goto err_after_alloc;
    err = db_prepare(db,
                     "INSERT INTO audit (" AUDITROW_COLUMNS ") "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                     &a->insert);
    if (err < 0)
        goto err_after_alloc;
    *ret_audit = a;
    return 0;

err_after_alloc:
    audit_close(a);
    return err;
}

void audit_close(struct audit *a)
{
    if (!a)
        return;
    sqlite3_finalize(a->head);
    sqlite3_finalize(a->insert);
    EVP_MD_CTX_free(a->md);
    free(a);
}

void audit_forget(struct audit *a)
{
    if (a)
        a->head_known = false;
}

int audit_append(struct audit *a, const struct audit_event *e)
{
    const char *event = e ? audit_event_name(e->event) : NULL;
    struct auditrow_fields f;
    char hash[AUDIT_HASH_LEN + 1];
    int err, rc;

    if (!event)
        return -EINVAL;
    if (!a->head_known) {
        err = load_head(a);
        if (err < 0)
            return err;
    }
    f = (struct auditrow_fields){
        .seq = a->last_seq + 1,
        .at = e->at_ms,
        .has_token_id = e->token_id > 0,
        .token_id = e->token_id,
        .fingerprint = e->fingerprint,
        .fingerprint_len = e->fingerprint ? strlen(e->fingerprint) : 0,
        .event = event,
        .event_len = strlen(event),
        .has_attempt = e->attempt > 0,
        .attempt = e->attempt,
        .has_http_status = e->http_status > 0,
        .http_status = e->http_status,
        .detail = e->detail,
        .detail_len = e->detail ? strlen(e->detail) : 0,
        .has_duration = e->duration_ms >= 0,
        .duration_ms = e->duration_ms,
    };
    err = auditrow_hash(a->md, a->last_hash, strlen(a->last_hash), &f, hash);
    if (err < 0)
        return err;

    sqlite3_stmt *st = a->insert;
    sqlite3_bind_int64(st, 1, f.seq);
    sqlite3_bind_int64(st, 2, f.at);
    bind_nullable_int(st, 3, f.has_token_id, f.token_id);
    bind_text(st, 4, f.fingerprint);
    bind_text(st, 5, f.event);
    bind_nullable_int(st, 6, f.has_attempt, f.attempt);
    bind_nullable_int(st, 7, f.has_http_status, f.http_status);
    bind_text(st, 8, f.detail);
    bind_nullable_int(st, 9, f.has_duration, f.duration_ms);
    sqlite3_bind_text(st, 10, hash, AUDIT_HASH_LEN, SQLITE_STATIC);
    rc = sqlite3_step(st);
    err = rc == SQLITE_DONE ? 0 : db_fail(a->db, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (err < 0) {
        /* Someone else may have appended: read the head again next time. */
        a->head_known = false;
        return err;
    }
    a->last_seq = f.seq;
    memcpy(a->last_hash, hash, sizeof(hash));
    return 0;
}

int audit_query(struct db *db, const struct audit_filter *f,
                int (*cb)(void *ud, const struct audit_row *row), void *ud)
{
    static const struct audit_filter none = {0};
    char where[128], sql[512];
    sqlite3_stmt *st;
    int rc, ret = 0;

    if (!cb)
        return -EINVAL;
    if (!f)
        f = &none;
    /* Only the filters given, so that SQLite picks the index that fits. */
    snprintf(where, sizeof(where), "%s%s%s", f->since_ms ? " AND at >= ?1" : "",
             f->token_id ? " AND token_id = ?2" : "", f->event ? " AND event = ?3" : "");
    if (f->limit)
        snprintf(sql, sizeof(sql),
                 "SELECT * FROM (SELECT " AUDITROW_COLUMNS " FROM audit WHERE 1%s "
                 "ORDER BY seq DESC LIMIT ?4) ORDER BY seq",
                 where);
    else
        snprintf(sql, sizeof(sql), "SELECT " AUDITROW_COLUMNS " FROM audit WHERE 1%s ORDER BY seq", where);
    rc = sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc);
    if (f->since_ms)
        sqlite3_bind_int64(st, 1, f->since_ms);
    if (f->token_id)
        sqlite3_bind_int64(st, 2, f->token_id);
    if (f->event) /* NULL for a value not in the enum: matches nothing */
        sqlite3_bind_text(st, 3, audit_event_name(f->event), -1, SQLITE_STATIC);
    if (f->limit)
        sqlite3_bind_int64(st, 4, f->limit);

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct audit_row row;
        auditrow_read(st, &row);
        ret = cb(ud, &row);
        if (ret != 0)
            break;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(db, rc);
    sqlite3_finalize(st);
    return ret;
}

int audit_row_json(const struct audit_row *row, char **ret_json)
{
    char when[64], at[80];
    struct tm tm;
    time_t t = (time_t)(row->at_ms / 1000);

    if (!gmtime_r(&t, &tm) || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(when, sizeof(when), "?");
    snprintf(at, sizeof(at), "%s.%03dZ", when, (int)(row->at_ms % 1000));
    json_t *j = json_pack(
        "{s:I,s:s,s:I,s:o,s:o,s:s,s:o,s:o,s:o,s:o,s:s}", "seq", (json_int_t)row->seq, "at", at, "at_ms",
        (json_int_t)row->at_ms, "token_id", row->token_id ? json_integer(row->token_id) : json_null(),
        "fingerprint", row->fingerprint ? json_string(row->fingerprint) : json_null(), "event",
        row->event ? row->event : "", "attempt", row->attempt ? json_integer(row->attempt) : json_null(),
        "http_status", row->http_status ? json_integer(row->http_status) : json_null(), "detail",
        row->detail ? json_string(row->detail) : json_null(), "duration_ms",
        row->duration_ms >= 0 ? json_integer(row->duration_ms) : json_null(), "hash",
        row->hash ? row->hash : "");
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return -ENOMEM;
    *ret_json = text;
    return 0;
}

/* ---- the chain's head ---- */

int audit_get_head(struct db *db, struct audit_head *ret_head)
{
    sqlite3_stmt *st;
    struct audit_head h = {.seq = 0};
    int rc =
        sqlite3_prepare_v2(db->conn, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", -1, &st, NULL);

    if (rc != SQLITE_OK)
        return db_fail(db, rc);
    memcpy(h.hash, AUDITROW_GENESIS, sizeof(AUDITROW_GENESIS));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        h.seq = sqlite3_column_int64(st, 0);
        copy_hash(st, 1, h.hash);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(db, rc);
    *ret_head = h;
    return 0;
}

int audit_hash_at(struct db *db, int64_t seq, char ret_hash[AUDIT_HASH_LEN + 1])
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->conn, "SELECT hash FROM audit WHERE seq = ?1", -1, &st, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, seq);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW)
        copy_hash(st, 0, ret_hash);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc == SQLITE_ROW;
    return db_fail(db, rc);
}

int audit_head_parse(const char *s, struct audit_head *ret_head)
{
    struct audit_head h;
    const char *colon = s ? strchr(s, ':') : NULL;
    char *end;

    if (!colon || *s < '0' || *s > '9' || strlen(colon + 1) != AUDIT_HASH_LEN)
        return -EINVAL;
    errno = 0;
    long long seq = strtoll(s, &end, 10);
    if (errno || end != colon)
        return -EINVAL;
    h.seq = seq;
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
        char c = colon[1 + i];

        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -EINVAL;
        h.hash[i] = c;
    }
    h.hash[AUDIT_HASH_LEN] = '\0';
    if (h.seq == 0 && strcmp(h.hash, AUDITROW_GENESIS) != 0)
        return -EINVAL;
    *ret_head = h;
    return 0;
}

#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <time.h>

#include "secret.h"
#include "util.h"

/* The hash of row n is the lower-case hex SHA-256 of
 *
 *   prev "|" seq "|" at "|" token_id "|" fingerprint "|" event "|" attempt
 *        "|" http_status "|" detail "|" duration_ms
 *
 * where prev is the hash of row n-1 (64 zeros for the first row), integers
 * are decimal, NULL is written \N, and in text a backslash is written \\ and
 * a bar \| so that no two different rows serialize alike. */

#define HASH_HEX_LEN (2 * SECRET_SHA256_LEN)

static const char genesis[HASH_HEX_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct audit {
    struct db *db;
    sqlite3_stmt *head, *insert;
    sqlite3_stmt *plan, *next_seq, *prev_hash, *anchor_add, *anchor_trim, *prune; /* audit_prune_* */
    EVP_MD_CTX *md;
    bool head_known; /* last_seq and last_hash are the table's chain head */
    int64_t last_seq;
    char last_hash[HASH_HEX_LEN + 1];
};

/* One row as hashed: has_* false is NULL. */
struct fields {
    int64_t seq, at;
    bool has_token_id, has_attempt, has_http_status, has_duration;
    int64_t token_id, attempt, http_status, duration_ms;
    const char *fingerprint, *event, *detail; /* NULL is NULL */
    size_t fingerprint_len, event_len, detail_len;
};

static int md_update(EVP_MD_CTX *md, const void *p, size_t n)
{
    return EVP_DigestUpdate(md, p, n) == 1 ? 0 : -EIO;
}

static int md_text(EVP_MD_CTX *md, const char *s, size_t len)
{
    if (!s)
        return md_update(md, "\\N", 2);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\' && s[i] != '|')
            continue;
        if (md_update(md, s + run, i - run) < 0 ||
            md_update(md, s[i] == '\\' ? "\\\\" : "\\|", 2) < 0)
            return -EIO;
        run = i + 1;
    }
    return md_update(md, s + run, len - run);
}

static int md_int(EVP_MD_CTX *md, bool present, int64_t v)
{
    char buf[24];
    if (!present)
        return md_update(md, "\\N", 2);
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    return md_update(md, buf, (size_t)n);
}

static int hash_fields(EVP_MD_CTX *md, const char *prev, size_t prev_len, const struct fields *f,
                       char ret_hex[HASH_HEX_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;

    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        return -EIO;
    if (md_update(md, prev, prev_len) < 0 || md_update(md, "|", 1) < 0 ||
        md_int(md, true, f->seq) < 0 || md_update(md, "|", 1) < 0 ||
        md_int(md, true, f->at) < 0 || md_update(md, "|", 1) < 0 ||
        md_int(md, f->has_token_id, f->token_id) < 0 || md_update(md, "|", 1) < 0 ||
        md_text(md, f->fingerprint, f->fingerprint_len) < 0 || md_update(md, "|", 1) < 0 ||
        md_text(md, f->event, f->event_len) < 0 || md_update(md, "|", 1) < 0 ||
        md_int(md, f->has_attempt, f->attempt) < 0 || md_update(md, "|", 1) < 0 ||
        md_int(md, f->has_http_status, f->http_status) < 0 || md_update(md, "|", 1) < 0 ||
        md_text(md, f->detail, f->detail_len) < 0 || md_update(md, "|", 1) < 0 ||
        md_int(md, f->has_duration, f->duration_ms) < 0)
        return -EIO;
    if (EVP_DigestFinal_ex(md, digest, &len) != 1 || len != SECRET_SHA256_LEN)
        return -EIO;
    secret_hex(digest, ret_hex);
    return 0;
}

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
        memcpy(a->last_hash, genesis, sizeof(genesis));
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

/* Read an integer column that may be NULL; false if it holds anything else
 * (a row edited by hand to hold text where a number belongs). */
static bool column_nullable_int(sqlite3_stmt *st, int i, bool *ret_present, int64_t *ret_v)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL:
        *ret_present = false;
        *ret_v = 0;
        return true;
    case SQLITE_INTEGER:
        *ret_present = true;
        *ret_v = sqlite3_column_int64(st, i);
        return true;
    default:
        return false;
    }
}

static const char *column_text(sqlite3_stmt *st, int i, size_t *ret_len)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    *ret_len = s ? (size_t)sqlite3_column_bytes(st, i) : 0;
    return s;
}

#define ROW_COLUMNS \
    "seq, at, token_id, fingerprint, event, attempt, http_status, detail, duration_ms, hash"

/* Columns 0..8 of ROW_COLUMNS into f; false when a column has the wrong type. */
static bool read_fields(sqlite3_stmt *st, struct fields *f)
{
    bool has_seq, has_at;
    if (!column_nullable_int(st, 0, &has_seq, &f->seq) ||
        !column_nullable_int(st, 1, &has_at, &f->at) || !has_seq || !has_at ||
        !column_nullable_int(st, 2, &f->has_token_id, &f->token_id) ||
        !column_nullable_int(st, 5, &f->has_attempt, &f->attempt) ||
        !column_nullable_int(st, 6, &f->has_http_status, &f->http_status) ||
        !column_nullable_int(st, 8, &f->has_duration, &f->duration_ms))
        return false;
    f->fingerprint = column_text(st, 3, &f->fingerprint_len);
    f->event = column_text(st, 4, &f->event_len);
    f->detail = column_text(st, 7, &f->detail_len);
    return true;
}

/* A row as ROW_COLUMNS reads it; its strings live until the next step. */
static void row_from(sqlite3_stmt *st, struct audit_row *row)
{
    *row = (struct audit_row){
        .seq = sqlite3_column_int64(st, 0),
        .at_ms = sqlite3_column_int64(st, 1),
        .token_id = sqlite3_column_int64(st, 2),
        .fingerprint = (const char *)sqlite3_column_text(st, 3),
        .event = (const char *)sqlite3_column_text(st, 4),
        .attempt = sqlite3_column_int(st, 5),
        .http_status = (long)sqlite3_column_int64(st, 6),
        .detail = (const char *)sqlite3_column_text(st, 7),
        .duration_ms = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 8),
        .hash = (const char *)sqlite3_column_text(st, 9),
    };
    if (!row->event)
        row->event = "";
    if (!row->hash)
        row->hash = "";
}

/* The guard of sql/009-retention.sql's triggers: 1 while this thread is in
 * audit_prune(), 0 otherwise; undefined on other processes' connections,
 * whose anchor fails. Per thread, not per object: a connection has one
 * function of that name, whichever audit object defined it last. */
static _Thread_local int pruning;

static void prunes_audit(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_int(ctx, pruning);
}

static int prepare_prune(struct audit *a)
{
    static const struct {
        size_t offset;
        const char *sql;
    } stmts[] = {
        /* The newest row always stays: it is the chain's head. */
        {offsetof(struct audit, plan),
         "SELECT " ROW_COLUMNS " FROM audit WHERE seq < "
         "(SELECT max(seq) FROM audit) ORDER BY seq LIMIT ?1"},
        {offsetof(struct audit, next_seq), "SELECT min(seq) FROM audit WHERE seq > ?1"},
        {offsetof(struct audit, prev_hash), "SELECT hash FROM audit WHERE seq = ?1 - 1"},
        {offsetof(struct audit, anchor_add),
         "INSERT INTO audit_anchor (at, first_seq, prev_hash) VALUES (?1, ?2, ?3)"},
        {offsetof(struct audit, anchor_trim), "DELETE FROM audit_anchor WHERE id < last_insert_rowid()"},
        {offsetof(struct audit, prune), "DELETE FROM audit WHERE seq < ?1"},
    };
    int rc = sqlite3_create_function(a->db->conn, "revokerd_prunes_audit", 0, SQLITE_UTF8, NULL, prunes_audit,
                                     NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(a->db, rc);
    for (size_t i = 0; i < ARRAY_SIZE(stmts); i++) {
        int err = db_prepare(a->db, stmts[i].sql, (sqlite3_stmt **)((char *)a + stmts[i].offset));
        if (err < 0)
            return err;
    }
    return 0;
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
                     "INSERT INTO audit (" ROW_COLUMNS ") "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                     &a->insert);
    if (err < 0)
        goto err_after_alloc;
    err = prepare_prune(a);
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
    sqlite3_finalize(a->plan);
    sqlite3_finalize(a->next_seq);
    sqlite3_finalize(a->prev_hash);
    sqlite3_finalize(a->anchor_add);
    sqlite3_finalize(a->anchor_trim);
    sqlite3_finalize(a->prune);
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
    struct fields f;
    char hash[HASH_HEX_LEN + 1];
    int err, rc;

    if (!event)
        return -EINVAL;
    if (!a->head_known) {
        err = load_head(a);
        if (err < 0)
            return err;
    }
    f = (struct fields){
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
    err = hash_fields(a->md, a->last_hash, strlen(a->last_hash), &f, hash);
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
    sqlite3_bind_text(st, 10, hash, HASH_HEX_LEN, SQLITE_STATIC);
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
                 "SELECT * FROM (SELECT " ROW_COLUMNS " FROM audit WHERE 1%s "
                 "ORDER BY seq DESC LIMIT ?4) ORDER BY seq",
                 where);
    else
        snprintf(sql, sizeof(sql), "SELECT " ROW_COLUMNS " FROM audit WHERE 1%s ORDER BY seq",
                 where);
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
        row_from(st, &row);
        ret = cb(ud, &row);
        if (ret != 0)
            break;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(db, rc);
    sqlite3_finalize(st);
    return ret;
}
/* ---- pruning (retention.h) ---- */

int audit_prune_plan(struct audit *a, int64_t before_ms, unsigned limit, int64_t *ret_keep_seq,
                     int (*cb)(void *ud, const struct audit_row *row), void *ud)
{
    int64_t last = 0, keep = 0;
    int rc, err = 0;

    sqlite3_bind_int64(a->plan, 1, limit);
    while ((rc = sqlite3_step(a->plan)) == SQLITE_ROW) {
        struct audit_row row;
        row_from(a->plan, &row);
        if (row.at_ms >= before_ms) {
            keep = row.seq;
            break;
        }
        if (cb && (err = cb(ud, &row)) != 0)
            break;
        last = row.seq;
    }
    if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = db_fail(a->db, rc);
    db_done(a->plan);
    if (err != 0)
        return err;
    if (last == 0) {
        *ret_keep_seq = 0;
        return 0;
    }
    if (keep == 0) { /* the page ended on a row that goes: the next one stays */
        sqlite3_bind_int64(a->next_seq, 1, last);
        rc = db_row(a->db, a->next_seq);
        if (rc < 0)
            return rc;
        keep = rc == 1 ? sqlite3_column_int64(a->next_seq, 0) : 0;
        if (rc == 1)
            db_done(a->next_seq);
        if (keep == 0)
            return -ENODATA; /* the newest row was to go: cannot be (plan's query keeps it) */
    }
    *ret_keep_seq = keep;
    return 0;
}

int audit_prune(struct audit *a, int64_t keep_seq, int64_t now_ms, unsigned *ret_deleted)
{
    char prev[HASH_HEX_LEN + 1];
    int rc;

    sqlite3_bind_int64(a->prev_hash, 1, keep_seq);
    rc = db_row(a->db, a->prev_hash);
    if (rc <= 0)
        return rc < 0 ? rc : -ENODATA;
    snprintf(prev, sizeof(prev), "%s", (const char *)sqlite3_column_text(a->prev_hash, 0));
    db_done(a->prev_hash);

    pruning = 1;
    sqlite3_bind_int64(a->anchor_add, 1, now_ms);
    sqlite3_bind_int64(a->anchor_add, 2, keep_seq);
    sqlite3_bind_text(a->anchor_add, 3, prev, -1, SQLITE_STATIC);
    rc = db_run(a->db, a->anchor_add);
    if (rc == 0)
        rc = db_run(a->db, a->anchor_trim);
    pruning = 0;
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(a->prune, 1, keep_seq);
    rc = db_run(a->db, a->prune);
    if (rc < 0)
        return rc;
    *ret_deleted = (unsigned)sqlite3_changes(a->db->conn);
    return 0;
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

/* ---- verification ---- */

/* The latest anchor, if the schema has the table (a database not yet
 * migrated to version 9 has none): 1 and the fields, 0 without one. */
static int anchor_read(struct db *db, struct audit_anchor *ret)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        db->conn, "SELECT id, at, first_seq, prev_hash FROM audit_anchor ORDER BY id DESC LIMIT 1", -1, &st,
        NULL);
    if (rc != SQLITE_OK) {
        int err = db_fail(db, rc);
        sqlite3_stmt *t;
        /* No table: no anchor; any other failure is one. */
        if (sqlite3_prepare_v2(db->conn, "SELECT 1 FROM sqlite_schema WHERE name = 'audit_anchor'", -1, &t,
                               NULL) != SQLITE_OK)
            return err;
        rc = sqlite3_step(t);
        sqlite3_finalize(t);
        return rc == SQLITE_DONE ? 0 : err;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 3);
        *ret = (struct audit_anchor){.id = sqlite3_column_int64(st, 0),
                                     .at_ms = sqlite3_column_int64(st, 1),
                                     .first_seq = sqlite3_column_int64(st, 2)};
        snprintf(ret->prev_hash, sizeof(ret->prev_hash), "%s", h ? h : "");
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : db_fail(db, rc);
    }
    sqlite3_finalize(st);
    return rc;
}

int audit_anchor_get(struct db *db, struct audit_anchor *ret)
{
    struct audit_anchor an;
    int rc = anchor_read(db, &an);

    if (rc < 0)
        return rc;
    if (rc == 0)
        return -ENOENT;
    *ret = an;
    return 0;
}

static bool is_hash(const char *h)
{
    if (strlen(h) != HASH_HEX_LEN)
        return false;
    for (size_t i = 0; i < HASH_HEX_LEN; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return true;
}

/* No row may be left below the anchor: the prune that wrote it deleted
 * them in the same transaction. One still there is named: the one the
 * anchor chains from with another hash, or else the lowest (an anchor
 * added without a prune, by a connection defining revokerd_prunes_audit()
 * itself, and the rows below it free to be replaced). */
static int anchor_check(struct db *db, const struct audit_anchor *an, int64_t *ret_bad, char *why,
                        size_t whylen)
{
    sqlite3_stmt *st;
    int rc;

    *ret_bad = an->first_seq;
    if (an->first_seq < 1 || !is_hash(an->prev_hash)) {
        util_format(why, whylen,
                    "the latest audit_anchor (id %" PRId64 ") is malformed: first_seq %" PRId64
                    ", prev_hash not 64 hex digits (altered)",
                    an->id, an->first_seq);
        return -EBADMSG;
    }
    rc = sqlite3_prepare_v2(db->conn,
                            "SELECT min(seq), (SELECT hash FROM audit WHERE seq = ?1 - 1) FROM audit "
                            "WHERE seq < ?1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc);
    sqlite3_bind_int64(st, 1, an->first_seq);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        const char *h = (const char *)sqlite3_column_text(st, 1);
        if (h && strcmp(h, an->prev_hash) != 0) {
            util_format(why, whylen,
                        "the latest audit_anchor (id %" PRId64 ", seq %" PRId64
                        ") does not chain from seq %" PRId64 " (a forged or altered anchor)",
                        an->id, an->first_seq, an->first_seq - 1);
        } else {
            *ret_bad = sqlite3_column_int64(st, 0);
            util_format(why, whylen,
                        "seq %" PRId64 " lies below the latest audit_anchor (id %" PRId64 ", seq %" PRId64
                        "), whose prune deletes every row below it (a forged anchor, or a row inserted)",
                        *ret_bad, an->id, an->first_seq);
        }
        rc = -EBADMSG;
    } else {
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(db, rc);
    }
    sqlite3_finalize(st);
    return rc;
}

static int verify_chain(struct db *db, int64_t *ret_rows, int64_t *ret_bad_seq, char *why, size_t whylen)
{
    sqlite3_stmt *st;
    EVP_MD_CTX *md;
    struct audit_anchor an = {0};
    char prev[HASH_HEX_LEN + 1], computed[HASH_HEX_LEN + 1];
    int64_t prev_seq = 0, rows = 0, bad_seq = 0;
    int rc, err = 0;

    memcpy(prev, genesis, sizeof(genesis));
    rc = anchor_read(db, &an);
    if (rc == 1) {
        err = anchor_check(db, &an, &bad_seq, why, whylen);
        if (err < 0) {
            if (err == -EBADMSG && ret_bad_seq)
                *ret_bad_seq = bad_seq;
            else if (err != -EBADMSG)
                util_format(why, whylen, "%s", db_errmsg(db));
            return err;
        }
        prev_seq = an.first_seq - 1;
        memcpy(prev, an.prev_hash, sizeof(prev));
    } else if (rc < 0) {
        util_format(why, whylen, "%s", db_errmsg(db));
        return rc;
    }
    md = EVP_MD_CTX_new();
    if (!md)
        return -ENOMEM;
    rc = sqlite3_prepare_v2(db->conn, "SELECT " ROW_COLUMNS " FROM audit WHERE seq > ?1 ORDER BY seq", -1,
                            &st, NULL);
    if (rc != SQLITE_OK) {
        err = db_fail(db, rc);
        util_format(why, whylen, "%s", db_errmsg(db));
        EVP_MD_CTX_free(md);
        return err;
    }
    sqlite3_bind_int64(st, 1, prev_seq);

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct fields f;
        size_t hash_len;
        const char *hash = column_text(st, 9, &hash_len);
        bad_seq = sqlite3_column_int64(st, 0);

        if (!read_fields(st, &f)) {
            util_format(why, whylen, "seq %" PRId64 ": a column holds a value of the wrong type "
                                     "(altered)", bad_seq);
            err = -EBADMSG;
            break;
        }
        if (f.seq != prev_seq + 1) {
            if (prev_seq == 0)
                util_format(why, whylen,
                            "seq %" PRId64 " is the first row: the log must start at seq 1 "
                            "(rows before it deleted)", f.seq);
            else if (rows == 0 && an.id)
                util_format(why, whylen,
                            "seq %" PRId64 " is the first row, but the audit anchor names seq %" PRId64
                            ": seq %" PRId64 "..%" PRId64 " are missing (deleted)",
                            f.seq, an.first_seq, an.first_seq, f.seq - 1);
            else if (f.seq == prev_seq + 2)
                util_format(why, whylen,
                            "seq %" PRId64 " follows seq %" PRId64 ": seq %" PRId64
                            " is missing (deleted)", f.seq, prev_seq, prev_seq + 1);
            else
                util_format(why, whylen,
                            "seq %" PRId64 " follows seq %" PRId64 ": seq %" PRId64 "..%" PRId64
                            " are missing (deleted, or a row inserted out of sequence)",
                            f.seq, prev_seq, prev_seq + 1, f.seq - 1);
            err = -EBADMSG;
            break;
        }
        /* The stored hash of the previous row chains this one, so the row
         * reported is the one that was changed, not every row after it. */
        err = hash_fields(md, prev, HASH_HEX_LEN, &f, computed);
        if (err < 0)
            break;
        if (!hash || hash_len != HASH_HEX_LEN || memcmp(hash, computed, HASH_HEX_LEN) != 0) {
            util_format(why, whylen,
                        "seq %" PRId64 ": its hash does not match its content and the previous "
                        "row's hash (altered, or inserted)", f.seq);
            err = -EBADMSG;
            break;
        }
        /* The column's buffer dies at the next step: keep a copy. */
        memcpy(prev, hash, HASH_HEX_LEN);
        prev[HASH_HEX_LEN] = '\0';
        prev_seq = f.seq;
        rows++;
    }
    if (err == 0 && rc != SQLITE_DONE) {
        err = db_fail(db, rc);
        util_format(why, whylen, "%s", db_errmsg(db));
    }
    if (err == 0 && rows == 0 && an.id) {
        util_format(why, whylen, "the audit anchor names seq %" PRId64 ", which is missing (deleted)",
                    an.first_seq);
        bad_seq = an.first_seq;
        err = -EBADMSG;
    }
    sqlite3_finalize(st);
    EVP_MD_CTX_free(md);
    if (err == -EBADMSG && ret_bad_seq)
        *ret_bad_seq = bad_seq;
    if (err == 0 && ret_rows)
        *ret_rows = rows;
    return err;
}

/* ---- the chain's head ---- */

/* A hash column, cut to AUDIT_HASH_LEN (a hash edited to something longer
 * is shown as it is, cut to size: the check names it). */
static void copy_hash(sqlite3_stmt *st, int i, char ret[AUDIT_HASH_LEN + 1])
{
    size_t len;
    const char *h = column_text(st, i, &len);

    util_format(ret, AUDIT_HASH_LEN + 1, "%.*s", (int)(len < AUDIT_HASH_LEN ? len : AUDIT_HASH_LEN),
                h ? h : "");
}

/* One query of at most one row, seq bound as ?1 if it has one: 1 with the row's
 * columns 0 and 1 (hash text into ret_hash when non-NULL, else integers
 * into ret_ints), 0 without a row, or a negative errno with why set. */
static int one_row(struct db *db, const char *sql, int64_t seq, char ret_hash[AUDIT_HASH_LEN + 1],
                   int64_t ret_ints[2], char *why, size_t whylen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, seq);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW && ret_hash)
        copy_hash(st, 0, ret_hash);
    else if (rc == SQLITE_ROW)
        ret_ints[0] = sqlite3_column_int64(st, 0), ret_ints[1] = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc == SQLITE_ROW;
    rc = db_fail(db, rc);
    util_format(why, whylen, "%s", db_errmsg(db));
    return rc;
}

int audit_get_head(struct db *db, struct audit_head *ret_head)
{
    sqlite3_stmt *st;
    struct audit_head h = {.seq = 0};
    int rc =
        sqlite3_prepare_v2(db->conn, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", -1, &st, NULL);

    if (rc != SQLITE_OK)
        return db_fail(db, rc);
    memcpy(h.hash, genesis, sizeof(genesis));
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
    char why[8];
    return one_row(db, "SELECT hash FROM audit WHERE seq = ?1", seq, ret_hash, NULL, why, sizeof(why));
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
    if (h.seq == 0 && strcmp(h.hash, genesis) != 0)
        return -EINVAL;
    *ret_head = h;
    return 0;
}

static int verify_head(struct db *db, const struct audit_head *head, int64_t *ret_rows, int64_t *ret_bad_seq,
                       char *why, size_t whylen)
{
    int64_t rows = 0, bad = 0, ends[2] = {0, 0}, n = head->seq;
    char hash[AUDIT_HASH_LEN + 1] = "";
    int found, err = verify_chain(db, &rows, &bad, why, whylen);

    if (err == -EBADMSG && ret_bad_seq)
        *ret_bad_seq = bad;
    if (err < 0)
        return err;
    /* Every log extends the empty one; then row N as the head recorded it. */
    found = n == 0 ? 1 : one_row(db, "SELECT hash FROM audit WHERE seq = ?1", n, hash, NULL, why, whylen);
    if (found < 0)
        return found;
    if (found && (n == 0 || strcmp(hash, head->hash) == 0)) {
        if (ret_rows)
            *ret_rows = rows;
        return 0;
    }
    if (found) {
        util_format(why, whylen,
                    "seq %" PRId64 ": its hash is %s, the recorded head says %s (this row or one before it "
                    "was rewritten, and the hashes after it recomputed)",
                    n, hash, head->hash);
    } else {
        found = one_row(db, "SELECT min(seq), max(seq) FROM audit", 0, NULL, ends, why, whylen);
        if (found < 0)
            return found;
        if (ends[1] == 0)
            util_format(why, whylen, "seq %" PRId64 " is missing: the log is empty (every row deleted)", n);
        else if (n > ends[1])
            util_format(why, whylen,
                        "seq %" PRId64 " is missing: the log ends at seq %" PRId64
                        " (the newest rows deleted)",
                        n, ends[1]);
        else if (audit_anchor_get(db, &(struct audit_anchor){0}) == 0)
            util_format(why, whylen,
                        "seq %" PRId64 " cannot be checked: the log starts at seq %" PRId64
                        " (older rows pruned by [retention] audit); check a newer head",
                        n, ends[0]);
        else
            util_format(why, whylen,
                        "seq %" PRId64 " is missing: the log starts at seq %" PRId64
                        " (the rows before it deleted)",
                        n, ends[0]);
    }
    if (ret_bad_seq)
        *ret_bad_seq = n;
    return -EBADMSG;
}

/* A check is several statements: in one read transaction, so that a prune
 * committed between them is not taken for deleted rows. */
static bool snapshot_begin(struct db *db)
{
    return sqlite3_get_autocommit(db->conn) && sqlite3_exec(db->conn, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
}

static int snapshot_end(struct db *db, bool began, int rc)
{
    if (began)
        sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL);
    return rc;
}

int audit_verify(struct db *db, int64_t *ret_rows, int64_t *ret_bad_seq, char *why, size_t whylen)
{
    bool began = snapshot_begin(db);
    return snapshot_end(db, began, verify_chain(db, ret_rows, ret_bad_seq, why, whylen));
}

int audit_verify_head(struct db *db, const struct audit_head *head, int64_t *ret_rows, int64_t *ret_bad_seq,
                      char *why, size_t whylen)
{
    bool began = snapshot_begin(db);
    return snapshot_end(db, began, verify_head(db, head, ret_rows, ret_bad_seq, why, whylen));
}

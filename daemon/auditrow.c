/* auditrow: the audit row's columns, reads and hash (see auditrow.h). */
#include "auditrow.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "secret.h"

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

int auditrow_hash(EVP_MD_CTX *md, const char *prev, size_t prev_len, const struct auditrow_fields *f,
                  char ret_hex[AUDIT_HASH_LEN + 1])
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

const char *auditrow_text(sqlite3_stmt *st, int i, size_t *ret_len)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    *ret_len = s ? (size_t)sqlite3_column_bytes(st, i) : 0;
    return s;
}

bool auditrow_read_fields(sqlite3_stmt *st, struct auditrow_fields *f)
{
    bool has_seq, has_at;
    if (!column_nullable_int(st, 0, &has_seq, &f->seq) ||
        !column_nullable_int(st, 1, &has_at, &f->at) || !has_seq || !has_at ||
        !column_nullable_int(st, 2, &f->has_token_id, &f->token_id) ||
        !column_nullable_int(st, 5, &f->has_attempt, &f->attempt) ||
        !column_nullable_int(st, 6, &f->has_http_status, &f->http_status) ||
        !column_nullable_int(st, 8, &f->has_duration, &f->duration_ms))
        return false;
    f->fingerprint = auditrow_text(st, 3, &f->fingerprint_len);
    f->event = auditrow_text(st, 4, &f->event_len);
    f->detail = auditrow_text(st, 7, &f->detail_len);
    return true;
}

void auditrow_read(sqlite3_stmt *st, struct audit_row *row)
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

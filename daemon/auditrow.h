/* auditrow: one row of the audit table as the audit modules see it: its
 * columns, how a statement's row is read, and its hash, the rule the chain
 * is made of. audit appends rows with it, auditverify recomputes each
 * row's hash with it, audit and auditprune read rows with it. No state:
 * the digest context is the caller's.
 *
 * The hash of row n is the lower-case hex SHA-256 of
 *
 *   prev "|" seq "|" at "|" token_id "|" fingerprint "|" event "|" attempt
 *        "|" http_status "|" detail "|" duration_ms
 *
 * where prev is the hash of row n-1 (AUDITROW_GENESIS for the first row),
 * integers are decimal, NULL is written \N, and in text a backslash is
 * written \\ and a bar \| so that no two different rows serialize alike. */
#pragma once

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"

/* The columns every read of whole rows selects, in this order. */
#define AUDITROW_COLUMNS \
    "seq, at, token_id, fingerprint, event, attempt, http_status, detail, duration_ms, hash"

/* The hash the first row chains from (the empty log's head). */
#define AUDITROW_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* One row as hashed: has_* false is NULL. */
struct auditrow_fields {
    int64_t seq, at;
    bool has_token_id, has_attempt, has_http_status, has_duration;
    int64_t token_id, attempt, http_status, duration_ms;
    const char *fingerprint, *event, *detail; /* NULL is NULL */
    size_t fingerprint_len, event_len, detail_len;
};

/* The row's hash chained from prev (prev_len bytes) into ret_hex. 0 or -EIO. */
int auditrow_hash(EVP_MD_CTX *md, const char *prev, size_t prev_len, const struct auditrow_fields *f,
                  char ret_hex[AUDIT_HASH_LEN + 1]);
/* Columns 0..8 of AUDITROW_COLUMNS into f; false when a column has the
 * wrong type (a row edited by hand to hold text where a number belongs). */
bool auditrow_read_fields(sqlite3_stmt *st, struct auditrow_fields *f);
/* A row as AUDITROW_COLUMNS reads it; its strings live until the next step. */
void auditrow_read(sqlite3_stmt *st, struct audit_row *row);
/* Text column i (NULL when NULL) and its length in bytes. */
const char *auditrow_text(sqlite3_stmt *st, int i, size_t *ret_len);

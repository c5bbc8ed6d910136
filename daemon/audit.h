/* audit: the append-only audit log (table audit): rows appended, rows and
 * the chain's head read.
 *
 * Every row carries hash = hex SHA-256 over the previous row's hash and this
 * row's fields (auditrow.h), so that `revokerctl audit --verify` finds the
 * first row that was altered, inserted or deleted (auditverify.h); the
 * oldest rows go only through auditprune.h. Rows are appended inside the
 * caller's transaction; nothing here commits. The secret never reaches this
 * module: only the fingerprint.
 *
 * Lifecycle: audit_open() once on a connection (it prepares the append) ->
 * audit_append() inside transactions, audit_forget() after a rollback ->
 * audit_close() before the connection closes. The reads take the
 * connection and need no audit object. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "names.h"

struct audit_event {
    int64_t at_ms;            /* Unix ms */
    int64_t token_id;         /* <= 0: NULL */
    const char *fingerprint;  /* NULL allowed */
    enum audit_event_kind event; /* 0: none (refused) */
    int attempt;              /* <= 0: NULL */
    long http_status;         /* <= 0: NULL */
    const char *detail;       /* NULL allowed */
    int64_t duration_ms;      /* < 0: NULL */
};

struct audit_row {
    int64_t seq;
    int64_t at_ms;
    int64_t token_id;         /* 0 when NULL */
    const char *fingerprint;  /* NULL when NULL */
    const char *event;
    int attempt;              /* 0 when NULL */
    long http_status;         /* 0 when NULL */
    const char *detail;       /* NULL when NULL */
    int64_t duration_ms;      /* -1 when NULL */
    const char *hash;
};

struct audit;

int audit_open(struct db *db, struct audit **ret_audit);
void audit_close(struct audit *a); /* NULL is fine */
/* Inside the caller's transaction. After a rollback call audit_forget(). */
int audit_append(struct audit *a, const struct audit_event *e);
/* Drop the cached chain head (after a rollback). */
void audit_forget(struct audit *a);

struct audit_filter {
    int64_t since_ms;   /* 0: from the start */
    int64_t token_id;   /* 0: every token */
    enum audit_event_kind event; /* 0: every event */
    unsigned limit;     /* 0: no limit; otherwise the newest `limit` rows */
};
/* Rows in seq order. cb returns 0 to go on, non-zero to stop (returned). */
int audit_query(struct db *db, const struct audit_filter *f,
                int (*cb)(void *ud, const struct audit_row *row), void *ud);
/* A row as one compact JSON object, the fields of `revokerctl --json
 * audit`; *ret_json is malloc'd. 0 or -ENOMEM. */
int audit_row_json(const struct audit_row *row, char **ret_json);

/* ---- the chain's head, for a record kept outside the database ---- */

#define AUDIT_HASH_LEN 64 /* lower-case hex SHA-256 */

/* The newest row: "N:H" in text (audit_head_parse), "audit head: seq N
 * hash H" in the daemon's log (audithead.h). An empty log's head is seq 0
 * with 64 zeros, the hash the first row chains from. */
struct audit_head {
    int64_t seq;
    char hash[AUDIT_HASH_LEN + 1];
};

/* The head as committed now (one primary-key lookup). 0 or a negative errno. */
int audit_get_head(struct db *db, struct audit_head *ret_head);
/* Row seq's hash: 1 with ret_hash, 0 without the row, or a negative errno. */
int audit_hash_at(struct db *db, int64_t seq, char ret_hash[AUDIT_HASH_LEN + 1]);
/* "N:H": N a decimal seq (0 only with the 64 zeros), H 64 hex digits (upper
 * case taken, stored lower). 0 or -EINVAL. */
int audit_head_parse(const char *s, struct audit_head *ret_head);

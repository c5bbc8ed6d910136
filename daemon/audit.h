/* audit: the append-only audit log (table audit).
 *
 * Every row carries hash = hex SHA-256 over the previous row's hash and this
 * row's fields, so that `revokerctl audit --verify` finds the first row that
 * was altered, inserted or deleted. Rows are appended inside the caller's
 * transaction; nothing here commits. The secret never reaches this module:
 * only the fingerprint. */
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

/* Walk the chain. 0 when intact (ret_rows: rows checked); -EBADMSG with
 * *ret_bad_seq the first row whose hash does not match (or that follows a
 * gap) and why explaining it. One read transaction (unless the caller is
 * in one): a prune committed meanwhile is not taken for deleted rows. */
int audit_verify(struct db *db, int64_t *ret_rows, int64_t *ret_bad_seq, char *why, size_t whylen);

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
/* A head recorded earlier against the log now: audit_verify, then row
 * head->seq must exist with hash head->hash, so that the newest rows
 * deleted, or rewritten with their hashes recomputed, are caught. 0 when
 * both hold (ret_rows: rows checked); -EBADMSG with *ret_bad_seq and why
 * naming the first damaged row, the missing row N or the hash that
 * differs; another negative errno when the log cannot be read. */
int audit_verify_head(struct db *db, const struct audit_head *head, int64_t *ret_rows, int64_t *ret_bad_seq,
                      char *why, size_t whylen);
/* ---- pruning: the guarded delete of the oldest rows (retention.h) ----
 *
 * sql/009-retention.sql lets a row of audit go only below the latest row
 * of audit_anchor, and an anchor only through the SQL function
 * revokerd_prunes_audit(), which audit_open() defines on this connection
 * (a careless writer's guard: another connection may define it too).
 * audit_verify() starts at the latest anchor: its first_seq must be the
 * first row, chained from its prev_hash, and no row may lie below it. */

struct audit_anchor {
    int64_t id, at_ms;
    int64_t first_seq;          /* the first row kept */
    char prev_hash[2 * 32 + 1]; /* the hash that row chains from */
};
/* The latest anchor: 0, -ENOENT without one (or without the table), or
 * a database error. */
int audit_anchor_get(struct db *db, struct audit_anchor *ret);
/* The oldest rows that may go: up to limit rows from the first in seq
 * order while at < before_ms, never the newest row. cb (NULL allowed) sees
 * each; a non-zero return stops and is returned. *ret_keep_seq: the first
 * row that stays, 0 when none may go. Reads only. */
int audit_prune_plan(struct audit *a, int64_t before_ms, unsigned limit, int64_t *ret_keep_seq,
                     int (*cb)(void *ud, const struct audit_row *row), void *ud);
/* Inside the caller's transaction: writes the anchor (keep_seq and the
 * hash of the row before it), drops older anchors, deletes every row
 * before keep_seq; *ret_deleted rows. */
int audit_prune(struct audit *a, int64_t keep_seq, int64_t now_ms, unsigned *ret_deleted);
/* A row as one compact JSON object, the fields of `revokerctl --json
 * audit`; *ret_json is malloc'd. 0 or -ENOMEM. */
int audit_row_json(const struct audit_row *row, char **ret_json);

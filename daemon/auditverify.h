/* auditverify: the audit log's hash chain checked, for `revokerctl audit
 * --verify` (and the tests that check what the daemon wrote).
 *
 * The check walks the rows in seq order and recomputes each row's hash
 * from the previous row's stored hash (auditrow.h), so that the first row
 * altered, inserted or deleted is named, not every row after it. After a
 * prune (auditprune.h) the chain starts at the latest audit_anchor: its
 * first_seq must be the first row, chained from its prev_hash, and no row
 * may lie below it. A head recorded outside the file (audithead.h) is
 * checked too: the newest rows deleted, or rewritten with their hashes
 * recomputed, pass the walk but not the head.
 *
 * Each check is one read transaction (unless the caller is in one): a
 * prune committed meanwhile is not taken for deleted rows. Reads only;
 * no state between calls. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "db.h"

/* A row of audit_anchor (sql/009-retention.sql), written by auditprune. */
struct audit_anchor {
    int64_t id, at_ms;
    int64_t first_seq;          /* the first row kept */
    char prev_hash[2 * 32 + 1]; /* the hash that row chains from */
};
/* The latest anchor: 0, -ENOENT without one (or without the table), or
 * a database error. */
int auditverify_get_anchor(struct db *db, struct audit_anchor *ret);

/* Walk the chain. 0 when intact (ret_rows: rows checked); -EBADMSG with
 * *ret_bad_seq the first row whose hash does not match (or that follows a
 * gap) and why explaining it. */
int auditverify_chain(struct db *db, int64_t *ret_rows, int64_t *ret_bad_seq, char *why, size_t whylen);
/* A head recorded earlier against the log now: auditverify_chain, then
 * row head->seq must exist with hash head->hash, so that the newest rows
 * deleted, or rewritten with their hashes recomputed, are caught. 0 when
 * both hold (ret_rows: rows checked); -EBADMSG with *ret_bad_seq and why
 * naming the first damaged row, the missing row N or the hash that
 * differs; another negative errno when the log cannot be read. */
int auditverify_head(struct db *db, const struct audit_head *head, int64_t *ret_rows, int64_t *ret_bad_seq,
                     char *why, size_t whylen);

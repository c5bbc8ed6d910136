/* auditprune: the audit log's guarded delete of its oldest rows, for
 * retention (retention.h, through store_prune_audit_plan() and
 * store_prune_audit()).
 *
 * sql/009-retention.sql lets a row of audit go only below the latest row
 * of audit_anchor, and an anchor only through the SQL function
 * revokerd_prunes_audit(), which auditprune_open() defines on this
 * connection and which answers 1 only inside auditprune_apply() (a
 * careless writer's guard: another connection may define it too). The
 * anchor names the first row kept and the hash it chains from, so that
 * auditverify still checks the chain from there.
 *
 * Lifecycle: auditprune_open() once on the store's connection (it
 * prepares its statements) -> auditprune_plan() and auditprune_apply()
 * inside the caller's transactions -> auditprune_close() before the
 * connection closes. */
#pragma once

#include <stdint.h>

#include "audit.h"
#include "db.h"

struct auditprune;

int auditprune_open(struct db *db, struct auditprune **ret);
void auditprune_close(struct auditprune *p); /* NULL is fine */
/* The oldest rows that may go: up to limit rows from the first in seq
 * order while at < before_ms, never the newest row. cb (NULL allowed) sees
 * each; a non-zero return stops and is returned. *ret_keep_seq: the first
 * row that stays, 0 when none may go. Reads only. */
int auditprune_plan(struct auditprune *p, int64_t before_ms, unsigned limit, int64_t *ret_keep_seq,
                    int (*cb)(void *ud, const struct audit_row *row), void *ud);
/* Inside the caller's transaction: writes the anchor (keep_seq and the
 * hash of the row before it), drops older anchors, deletes every row
 * before keep_seq; *ret_deleted rows. */
int auditprune_apply(struct auditprune *p, int64_t keep_seq, int64_t now_ms, unsigned *ret_deleted);

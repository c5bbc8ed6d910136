/* audithead: the audit log's chain head, logged so that a record of it
 * lives outside the database.
 *
 * One timer on the loop: every interval ([audit] anchor_interval) the head
 * (audit_get_head: the newest row's seq and hash) is logged as one notice
 * line "audit head: seq N hash H", with the journal fields AUDIT_SEQ and
 * AUDIT_HASH (log_audit_head). `revokerctl audit --verify --head N:H`
 * checks such a head against the file. A line is logged every interval,
 * also when nothing was appended since the last one: a missing line is
 * then a sign of its own, and no state is kept. main also logs the head at
 * start (after READY) and at stop (after the engine's last commit), so that
 * the last line of a run names the final head.
 *
 * Lifecycle: audithead_new() starts the timer -> audithead_log() whenever a
 * head is wanted now, audithead_set_interval() on reload ->
 * audithead_close() before the database closes (frees itself in the
 * timer's close callback). */
#pragma once

#include <stdint.h>
#include <uv.h>

#include "db.h"

struct audithead;

/* db is read on the loop, between the engine's transactions. 0 or -ENOMEM. */
int audithead_new(uv_loop_t *loop, struct db *db, uint64_t interval_ms, struct audithead **ret_head);
/* Log the head now. 0, or the read's negative errno after a warning that
 * says so (no head line then). */
int audithead_log(struct audithead *h);
/* From now on, every interval_ms (the first line one interval from now). */
void audithead_set_interval(struct audithead *h, uint64_t interval_ms);
/* No more lines; NULL is fine. */
void audithead_close(struct audithead *h);

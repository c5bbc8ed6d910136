/* retention: deletes what [retention] says is old enough, so that the
 * database stops growing: finished tokens (revoked, or failed and not
 * retried) whose finished_at is older than [retention] tokens, and audit
 * rows older than [retention] audit, oldest first, through the audit's
 * guarded delete (auditprune.h: an audit_anchor row names the first row kept).
 * With [retention] audit_export, the rows about to go are first appended to
 * that JSON-lines file and fsynced, on the threadpool; the file's last line
 * says what is already there, so that a crash between the fsync and the
 * delete writes no row twice. When nothing is left to delete and the file
 * was created with auto_vacuum=INCREMENTAL (db.h), the free pages beyond a
 * reserve go back to the file system in small steps.
 *
 * Work is done in steps on the loop, each one transaction of at most
 * [retention] batch rows and a few milliseconds (the row count per step
 * adapts to the time a step took), paced like the hasher: after a step the
 * loop is left alone for a multiple of what the step took: once while
 * nobody else writes; while other writers commit, 49 times and at least
 * 100 ms, with at most 128 rows a step (a steady load needs a few rows a
 * second, and each step's WAL frames cost the engine's checkpoints too: at
 * 9 times and up to batch rows a 100 k drain was 2-26 % slower). Writes that can wait
 * (STORE_WRITE_CAN_WAIT): none while a checkpoint copies. A deleted row that
 * still held its secret asks for a checkpoint with a sweep
 * (store_checkpoint_request), at most every 10 s and at the end of a pass.
 *
 * Lifecycle: retention_new() after the store, retention_configure() on a
 * reload, retention_close() before the store is closed. */
#pragma once

#include <uv.h>

#include "config.h"
#include "store.h"

struct retention;

int retention_new(uv_loop_t *loop, struct store *store, const struct config *cfg, struct retention **ret);
/* New spans, batch and export file; the next step uses them. 0 or -ENOMEM. */
int retention_configure(struct retention *r, const struct config *cfg);
/* Stops; r is freed once a running export write has returned, then
 * closed(data) (NULL allowed). NULL is fine. */
void retention_close(struct retention *r, void (*closed)(void *data), void *data);

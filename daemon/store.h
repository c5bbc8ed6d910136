/* store: the one owner of the daemon's storage. It holds the SQLite
 * connection (db), the prepared queries on tokens, the audit log and the WAL
 * checkpoints, and it is the only way the engine and the control socket
 * reach them: they never see the tokens or audit objects.
 *
 * A write is store_begin() -> store_* calls -> store_end() (or
 * store_commit() / store_rollback()). These own two rules that callers used
 * to repeat: a rollback also forgets the audit log's cached chain head (the
 * rolled-back rows are gone, so the next append must read the head again),
 * and "may we write now": while a checkpoint's step 1 copies the WAL, a
 * write that can wait does (see checkpoint.h); one a client waits for goes.
 *
 * Lifecycle: main opens one store with store_open() after the configuration
 * and before the engine and the socket, hands it to both, and closes it with
 * store_close() after they stopped. This is where a second backend would go;
 * there is one, so it is concrete. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "audit.h"
#include "db.h"
#include "histogram.h"
#include "hold.h"
#include "schemacheck.h"
#include "tokens.h"

struct store;

/* Opens the database at path: takes its lock (one daemon per database,
 * dbfile.h: -EBUSY, err names the other's pid), creates and migrates it,
 * gives it and its -wal and -shm mode 0600 (dbfile_modes), checks its schema against the migrations'
 * (schemacheck.h; a damaged table is -EBADMSG); each repair is told to
 * note(note_data, type, name, how), NULL for none: an index, trigger or
 * view recreated, or type "file" with how "OLD, now NEW" for a mode
 * and prepares its queries. With a loop, WAL checkpoints run off the loop
 * (checkpoint.h); without one (NULL: tests, tools) SQLite checkpoints in
 * the commit as it does by default. On failure err says what for the
 * operator. */
int store_open(uv_loop_t *loop, const char *path, schemacheck_note_fn note, void *note_data,
               struct store **ret_store, char *err, size_t errlen);
/* The same with a database group (daemon.control_group): the files get
 * that group and mode 0660 instead, so that its members may write the
 * table. (gid_t)-1: none, as store_open. */
int store_open_group(uv_loop_t *loop, const char *path, gid_t group, schemacheck_note_fn note, void *note_data,
                     struct store **ret_store, char *err, size_t errlen);
/* Frees s once a running checkpoint step has returned (at once without
 * one), then closed(data). NULL is fine (closed still runs). */
void store_close(struct store *s, void (*closed)(void *data), void *data);

/* The connection itself, for what works on the file rather than on the
 * tables (watch's data_version), for audithead's read-only look at the
 * audit log's head between transactions, and for tests that seed rows. */
struct db *store_db(struct store *s);
/* 0 while the path (and the lock file beside it) still name the files that
 * are open; -ENOENT (removed) or -ESTALE (replaced), *ret_what the path. */
int store_check_file(const struct store *s, const char **ret_what);
/* Nonzero (a negative errno) while writes wait for a stuck checkpoint. */
int store_writes_held(const struct store *s);
/* When another process changed the schema since the last check: check and
 * repair it as store_open() does. 0; -EBADMSG with err saying what to do; or
 * a passing error (busy) with err set: try again later. */
int store_check_schema(struct store *s, char *err, size_t errlen);
/* The last database error, "sqlite3 code N (name): message", for a log line. */
const char *store_errmsg(const struct store *s);

/* ---- transactions ---- */

#define STORE_CUT_WAIT_MS 2000 /* a client's write waits this long for our own step 2 */
/* The engine's writes wait this long on the loop for another process's lock, then are tried
 * again a millisecond later: without any wait a flag committed every 10 ms by an application
 * reached the endpoint 10 ms later (p50) instead of 2.5; with SQLite's 50 ms, an application's
 * long transaction stopped the loop 50 ms a try. */
#define STORE_ENGINE_WAIT_MS 2

enum store_write {
    STORE_WRITE_CAN_WAIT, /* the engine's pages and batches: held while a checkpoint copies */
    STORE_WRITE_URGENT,   /* the engine's urgent lane: always goes; a lock in the way
                           * (step 2's, another process's) is tried again (dberror_busy) */
    STORE_WRITE_NOW,      /* a client waits for the reply: always goes; during step 2 it
                           * waits for the writer lock (STORE_CUT_WAIT_MS at most) */
};
/* May a write of this kind start now? Never while the WAL cannot be
 * checkpointed (checkpoint_stuck: a full disk): it would only grow. */
bool store_may_write(const struct store *s, enum store_write kind);
/* BEGIN IMMEDIATE. The checkpoint's error (-ENOSPC on a full disk) while
 * the WAL cannot be checkpointed, -EAGAIN when store_may_write() says no
 * otherwise (nothing is opened); on any failure no transaction is left
 * open. A begin or commit that fails with -ENOSPC or -EIO starts a
 * checkpoint pass: cutting the WAL may give the space back. */
int store_begin(struct store *s, enum store_write kind);
/* On failure the transaction is rolled back (store_rollback). */
int store_commit(struct store *s);
/* Safe without an open transaction. */
void store_rollback(struct store *s);
/* rc: the result of the work inside the transaction. Commits when it is 0,
 * rolls back otherwise; returns rc or the commit's failure. */
int store_end(struct store *s, int rc);

/* ---- the tokens and their audit rows (tokens.h says what each does) ---- */

int store_hash_new(struct store *s, unsigned limit, unsigned *ret_count);
void store_set_jwt_expiry(struct store *s, bool on);
/* tokens_tally(): rows the table's rules turned away, committed ones only. */
struct tokens_tally store_tally(const struct store *s);
int store_promote_due(struct store *s, int64_t now_ms, unsigned limit, unsigned *ret_count);
int store_promote_flagged(struct store *s, int64_t now_ms, unsigned limit, unsigned *ret_count);
int store_fetch_due(struct store *s, int64_t now_ms, unsigned limit,
                    int (*cb)(void *ud, const struct pending_row *row), void *ud);
int store_fetch_from(struct store *s, int64_t after_id, unsigned limit,
                     int (*cb)(void *ud, const struct pending_row *row), void *ud);
int store_fetch_urgent(struct store *s, int64_t now_ms, unsigned limit,
                       int (*cb)(void *ud, const struct pending_row *row), void *ud);
int store_fetch_urgent_from(struct store *s, int64_t after_id, unsigned limit,
                            int (*cb)(void *ud, const struct pending_row *row), void *ud);
int store_next_events(struct store *s, int64_t now_ms, int64_t urgent_after_ms, struct next_events *ret);
int store_record_outcome(struct store *s, const struct outcome_record *r, enum token_state *ret_was);
int store_revoke_secret(struct store *s, const char *token, size_t len, const char *subject,
                        const char *reason, int64_t now_ms, int64_t *ret_id, enum token_state *ret_state);
int store_track(struct store *s, const char *token, size_t len, const char *subject, int64_t expires_at,
                struct tokens_tracked *ret);
int store_revoke_id(struct store *s, int64_t id, const char *reason, int64_t now_ms, bool *ret_changed);
/* hold.h: hold, release, drop. */
int store_hold_id(struct store *s, int64_t id, const struct hold_who *who, hold_recall_fn recall, void *ud,
                  enum token_state *ret_state);
int store_release_id(struct store *s, int64_t id, const struct hold_who *who, enum token_state *ret_state);
/* hold_page(): a subject's rows, or every held one (subject NULL). */
int store_hold_page(struct store *s, const char *subject, int64_t after, struct hold_page_row *rows,
                    size_t max, size_t *ret_n);
int store_drop(struct store *s, int64_t id, const struct hold_who *who, bool scrub, hold_recall_fn recall,
               void *ud, enum token_state *ret_state);
int store_status(struct store *s, int64_t id, struct token_status *ret);
int store_requeue_id(struct store *s, int64_t id, int64_t now_ms);
int store_requeue_failed(struct store *s, int64_t now_ms, unsigned *ret_count);
int store_due_now(struct store *s, int64_t now_ms, unsigned *ret_count);
int store_count(struct store *s, bool full, struct state_counts *ret);

/* ---- retention (retention.h): the deletes, inside a store_begin() ---- */

/* Up to limit revoked or failed rows whose finished_at is before before_ms,
 * oldest first: *ret_count deleted, *ret_secrets of them still held their
 * secret (secure_delete zeroes it in the page; a checkpoint's sweep the
 * rest: store_checkpoint_request()). */
int store_prune_tokens(struct store *s, int64_t before_ms, unsigned limit, unsigned *ret_count,
                       unsigned *ret_secrets);
/* auditprune.h: auditprune_plan() (reads only) and auditprune_apply(). */
int store_prune_audit_plan(struct store *s, int64_t before_ms, unsigned limit, int64_t *ret_keep_seq,
                           int (*cb)(void *ud, const struct audit_row *row), void *ud);
int store_prune_audit(struct store *s, int64_t keep_seq, int64_t now_ms, unsigned *ret_deleted);
/* After the commit: counted for stats and metrics. */
void store_note_pruned(struct store *s, unsigned tokens, unsigned audit);
/* The database file's size and its free pages, in bytes. */
int store_file_size(const struct store *s, int64_t *ret_bytes, int64_t *ret_free_bytes);
/* One PRAGMA incremental_vacuum step (128 pages) when the file was created
 * with auto_vacuum=INCREMENTAL (db.h) and more than an eighth of it, and
 * more than 4 MiB, is free; *ret_more: a step ran. Inside a transaction. */
int store_vacuum_step(struct store *s, bool *ret_more);

/* ---- checkpoints ---- */

/* For the metrics. */
struct store_metrics {
    struct histogram commit;     /* store_commit()s: HISTOGRAM_COMMIT_US */
    struct histogram checkpoint; /* checkpoint passes: HISTOGRAM_CHECKPOINT_US */
    int64_t wal_frames;          /* the WAL as the last commit left it; 0 once a checkpoint cut it */
    unsigned sweeps;             /* checkpoint sweeps that ended well */
    bool sweep_due;              /* a cleared secret waits for its sweep (checkpoint.h) */
    int64_t db_size_bytes;       /* the database file (page_count * page_size), without the WAL */
    int64_t db_free_bytes;       /* of which free pages (the next rows reuse them) */
    uint64_t pruned_tokens, pruned_audit; /* rows retention deleted since start (store_note_pruned) */
};
void store_get_metrics(const struct store *s, struct store_metrics *ret);

/* cb hears how each checkpoint pass ended (checkpoint_cb in checkpoint.h):
 * the owner of the writes that waited. NULL stops it (before that owner
 * goes away). */
void store_on_checkpoint(struct store *s, void (*cb)(void *data, int err, const char *msg), void *data);
/* Start a checkpoint pass, unless one is running (checkpoint_request). */
void store_checkpoint_request(struct store *s);
/* *ret_ms: when to retry a checkpoint pass that failed (checkpoint_retry_ms);
 * true when the failure is worth a log line (the first of a stuck run, or a
 * failed sweep), false while a stuck checkpoint backs off. */
bool store_checkpoint_retry(const struct store *s, unsigned *ret_ms);
/* A TRUNCATE checkpoint now, on the loop (db_checkpoint): -EBUSY when
 * readers or writers are in the way. */
int store_checkpoint_now(struct store *s);

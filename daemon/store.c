/* store: the storage owner (see store.h). The token calls pass the audit
 * log along themselves, so that no caller holds either object. */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auditprune.h"
#include "checkpoint.h"
#include "dbfile.h"
#include "hold.h"
#include "util.h"

#define START_BUSY_TIMEOUT_MS 5000
#define STORE_VACUUM_PAGES 128                    /* pages given back per incremental_vacuum step */
#define STORE_VACUUM_KEEP_BYTES (4 * 1024 * 1024) /* free space left for the next rows */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

struct store {
    struct dbfile *file;     /* NULL for an in-memory database */
    struct schemacheck *schema;
    schemacheck_note_fn note;
    void *note_data;
    gid_t group; /* the database group, (gid_t)-1 for none */
    struct db *db;
    struct tokens *tokens;
    struct hold *hold;
    struct audit *audit;
    struct auditprune *prune;        /* retention's (store_prune_audit*) */
    struct tokens_tally begun_tally; /* tokens' tally at the last store_begin */
    struct histogram commit_time;    /* of store_commit(), for the metrics */
    sqlite3_stmt *prune_tokens, *file_size, *auto_vacuum, *vacuum; /* retention's (store_prune_*) */
    uint64_t pruned_tokens, pruned_audit;                          /* store_note_pruned() */
    struct checkpoint *ckpt; /* NULL without a loop */
    void (*ckpt_cb)(void *data, int err, const char *msg);
    void *ckpt_data;
    void (*closed)(void *data);
    void *closed_data;
};

static void on_checkpoint(void *data, int err, const char *msg)
{
    struct store *s = data;

    if (s->ckpt_cb)
        s->ckpt_cb(s->ckpt_data, err, msg);
}

static const struct {
    size_t offset;
    const char *sql;
} retention_sql[] = {
    /* Finished rows oldest first (sql/009's index tokens_finished); the
     * answer says which still held a secret. */
    {offsetof(struct store, prune_tokens),
     "DELETE FROM tokens WHERE id IN (SELECT id FROM tokens WHERE state IN ('revoked', 'failed') "
     "AND finished_at < ?1 ORDER BY finished_at LIMIT ?2) RETURNING token IS NOT NULL"},
    {offsetof(struct store, file_size),
     "SELECT page_count * page_size, freelist_count * page_size "
     "FROM pragma_page_count, pragma_page_size, pragma_freelist_count"},
    {offsetof(struct store, auto_vacuum), "PRAGMA auto_vacuum"},
    {offsetof(struct store, vacuum), "PRAGMA incremental_vacuum(" STRINGIFY(STORE_VACUUM_PAGES) ")"},
};

static void finalize_retention(struct store *s)
{
    for (size_t i = 0; i < ARRAY_SIZE(retention_sql); i++)
        sqlite3_finalize(*(sqlite3_stmt **)((char *)s + retention_sql[i].offset));
}

static int prepare_retention(struct store *s)
{
    for (size_t i = 0; i < ARRAY_SIZE(retention_sql); i++) {
        int rc =
            db_prepare(s->db, retention_sql[i].sql, (sqlite3_stmt **)((char *)s + retention_sql[i].offset));
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* After the checkpointer: it gives the connection SQLite's own checkpoints
 * back, then the connection goes. */
static void free_store(void *data)
{
    struct store *s = data;
    void (*closed)(void *) = s->closed;
    void *closed_data = s->closed_data;

    finalize_retention(s);
    tokens_close(s->tokens);
    hold_close(s->hold);
    auditprune_close(s->prune);
    audit_close(s->audit);
    db_close(s->db);
    schemacheck_free(s->schema);
    dbfile_close(s->file);
    free(s);
    if (closed)
        closed(closed_data);
}

static bool is_memory(const char *path)
{
    return path[0] == '\0' || strcmp(path, ":memory:") == 0;
}

static void on_tightened(void *ud, const char *path, unsigned old_mode, gid_t old_group, unsigned new_mode)
{
    struct store *s = ud;
    char how[96];

    snprintf(how, sizeof(how), "mode %04o group %u; now %04o%s", old_mode, (unsigned)old_group, new_mode,
             s->group == (gid_t)-1 ? "" : " in the database group");
    if (s->note)
        s->note(s->note_data, "file", path, how);
}

/* Before the database is touched: a second daemon changes nothing. */
static int lock_file(struct store *s, const char *path, char *err, size_t errlen)
{
    pid_t owner = 0;
    int rc;

    if (is_memory(path))
        return 0;
    rc = dbfile_lock(path, &s->file, &owner);
    if (rc == -EBUSY && owner > 0)
        snprintf(err, errlen, "another revokerd (pid %ld) is using %s", (long)owner, path);
    else if (rc == -EBUSY)
        snprintf(err, errlen, "another revokerd is using %s", path);
    else if (rc < 0)
        snprintf(err, errlen, "cannot lock %s.lock: %s", path, strerror(-rc));
    return rc;
}

int store_open(uv_loop_t *loop, const char *path, schemacheck_note_fn note, void *note_data,
               struct store **ret_store, char *err, size_t errlen)
{
    return store_open_group(loop, path, (gid_t)-1, note, note_data, ret_store, err, errlen);
}

/* The file that path names, through any symbolic link in it: the lock, the
 * -wal/-shm and the file check must be the ones beside the file SQLite
 * opens, or a second daemon given another name of the same file would run
 * beside the first. A file not created yet: its directory, resolved. */
static void resolve_path(const char *path, char *out, size_t outlen)
{
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len = strlen(path);

    if (len >= outlen) /* too long to resolve: SQLite will say so of the name given */
        len = outlen - 1;
    memcpy(out, path, len);
    out[len] = '\0';
    if (is_memory(path) || strncmp(path, "file:", 5) == 0)
        return;
    if (realpath(path, real)) {
        snprintf(out, outlen, "%s", real);
        return;
    }
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    if (realpath(dir, real)) {
        int n = snprintf(out, outlen, "%s/%s", strcmp(real, "/") == 0 ? "" : real, slash ? slash + 1 : path);
        if (n < 0 || (size_t)n >= outlen) { /* too long resolved: the name given */
            memcpy(out, path, len);
            out[len] = '\0';
        }
    }
}

int store_open_group(uv_loop_t *loop, const char *given_path, gid_t group, schemacheck_note_fn note,
                     void *note_data, struct store **ret_store, char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof(*s));
    char why[512], path[PATH_MAX];
    int rc;

    resolve_path(given_path, path, sizeof(path));
    if (strcmp(path, given_path) != 0 && note)
        note(note_data, "link", given_path, path);

    if (!s) {
        snprintf(err, errlen, "cannot open %s: out of memory", path);
        return -ENOMEM;
    }
    s->note = note;
    s->note_data = note_data;
    s->group = group;
    rc = lock_file(s, path, err, errlen);
    if (rc < 0)
        goto err_after_alloc;
    rc = db_open(path, 0, &s->db);
    if (rc < 0) {
        snprintf(err, errlen, "%s", db_open_error());
        goto err_after_alloc;
    }
    rc = is_memory(path) ? 0 : dbfile_modes(path, group, on_tightened, s);
    if (rc < 0) {
        snprintf(err, errlen, "cannot give %s(-wal, -shm) mode %s: %s%s", path,
                 group == (gid_t)-1 ? "0600" : "0660 and the group daemon.control_group", strerror(-rc),
                 rc == -EPERM ? " (a file of another user, or a group revokerd's user is not in: chown or "
                                "chmod it)" : "");
        goto err_after_open;
    }
    rc = s->file ? dbfile_remember(s->file) : 0;
    if (rc < 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
        goto err_after_open;
    }
    /* Before the queries are prepared: they name what may be missing. */
    rc = schemacheck_new(&s->schema);
    if (rc < 0) {
        snprintf(err, errlen, "cannot build the reference schema: %s", strerror(-rc));
        goto err_after_open;
    }
    /* At start an application holding the write lock for a moment must
     * not make the start fail (db.c waits as long when it migrates). */
    db_busy_wait(s->db->conn, START_BUSY_TIMEOUT_MS);
    rc = schemacheck_run(s->schema, s->db->conn, s->note, s->note_data, why, sizeof(why));
    db_busy_wait(s->db->conn, DB_BUSY_TIMEOUT_MS);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start on %s: %s", path, why);
        goto err_after_open;
    }
    rc = tokens_open(s->db, &s->tokens);
    if (rc == 0)
        rc = hold_open(s->db, &s->hold);
    if (rc == 0)
        rc = audit_open(s->db, &s->audit);
    if (rc == 0)
        rc = auditprune_open(s->db, &s->prune);
    if (rc == 0)
        rc = prepare_retention(s);
    if (rc < 0) {
        snprintf(err, errlen, "cannot prepare the queries on %s (%s): %s", path, strerror(-rc),
                 db_errmsg(s->db));
        goto err_after_open;
    }
    if (loop) {
        rc = checkpoint_new(loop, s->db, on_checkpoint, s, &s->ckpt);
        if (rc < 0) {
            snprintf(err, errlen, "cannot set up WAL checkpoints for %s: %s", path, strerror(-rc));
            goto err_after_open;
        }
    }
    *ret_store = s;
    return 0;

err_after_open:
    finalize_retention(s);
    tokens_close(s->tokens);
    hold_close(s->hold);
    auditprune_close(s->prune);
    audit_close(s->audit);
    db_close(s->db);
err_after_alloc:
    schemacheck_free(s->schema);
    dbfile_close(s->file);
    free(s);
    return rc;
}

void store_close(struct store *s, void (*closed)(void *data), void *data)
{
    if (!s) {
        if (closed)
            closed(data);
        return;
    }
    s->ckpt_cb = NULL;
    s->closed = closed;
    s->closed_data = data;
    checkpoint_close(s->ckpt, free_store, s); /* NULL: free_store now */
}

struct db *store_db(struct store *s)
{
    return s->db;
}

int store_check_file(const struct store *s, const char **ret_what)
{
    return s->file ? dbfile_check(s->file, ret_what) : 0;
}

int store_check_schema(struct store *s, char *err, size_t errlen)
{
    if (!schemacheck_changed(s->schema, s->db->conn))
        return 0;
    return schemacheck_run(s->schema, s->db->conn, s->note, s->note_data, err, errlen);
}

const char *store_errmsg(const struct store *s)
{
    /* While writes are held, that is why a write failed, not SQLite's last word. */
    if (checkpoint_stuck(s->ckpt))
        return "the WAL cannot be checkpointed (is the disk full?); nothing more is written until it can";
    return db_errmsg(s->db);
}

int store_writes_held(const struct store *s)
{
    return checkpoint_stuck(s->ckpt);
}

/* ---- transactions ---- */

bool store_may_write(const struct store *s, enum store_write kind)
{
    /* A commit made while step 1 copies is left for step 2 to copy, with an
     * fsync on the loop; a client's request is small and cannot wait. */
    if (checkpoint_stuck(s->ckpt))
        return false; /* the WAL cannot be reset: it must not grow (checkpoint.h) */
    return kind != STORE_WRITE_CAN_WAIT || !checkpoint_copying(s->ckpt);
}

/* A commit that failed for want of space or on an I/O error: a checkpoint
 * that cuts the WAL may give the space back; if it fails too, writes wait
 * for it (checkpoint_stuck). */
static void after_write_error(struct store *s, int rc)
{
    if (rc == -ENOSPC || rc == -EIO)
        checkpoint_request(s->ckpt);
}

int store_begin(struct store *s, enum store_write kind)
{
    int rc;

    if (checkpoint_stuck(s->ckpt))
        return checkpoint_stuck(s->ckpt);
    if (!store_may_write(s, kind))
        return -EAGAIN;
    if (s->tokens)
        s->begun_tally = tokens_tally(s->tokens);
    /* The engine's writes wait STORE_ENGINE_WAIT_MS on the loop for another
     * process's write lock (enough for an application's short commit), then
     * are tried again (dberror_busy). A client's write waits
     * DB_BUSY_TIMEOUT_MS, and for our own step 2 (its fsync) as long as it
     * did when step 2 ran on the loop. */
    db_busy_wait(s->db->conn, kind == STORE_WRITE_NOW ? DB_BUSY_TIMEOUT_MS : STORE_ENGINE_WAIT_MS);
    rc = db_begin(s->db);
    for (int i = 0; rc == -EBUSY && kind == STORE_WRITE_NOW && checkpoint_in_step2(s->ckpt) &&
                    i < STORE_CUT_WAIT_MS / DB_BUSY_TIMEOUT_MS;
         i++)
        rc = db_begin(s->db);
    db_busy_wait(s->db->conn, DB_BUSY_TIMEOUT_MS);
    if (rc < 0) {
        store_rollback(s);
        after_write_error(s, rc);
    }
    return rc;
}

int store_commit(struct store *s)
{
    static const uint64_t le_us[HISTOGRAM_MAX] = HISTOGRAM_COMMIT_US;
    uint64_t start = uv_hrtime();
    int rc = db_commit(s->db);

    histogram_observe(&s->commit_time, le_us, HISTOGRAM_MAX, (uv_hrtime() - start) / 1000);
    if (rc < 0) {
        store_rollback(s);
        after_write_error(s, rc);
    }
    return rc;
}

void store_rollback(struct store *s)
{
    db_rollback(s->db);
    /* The rows behind the cached chain head may be gone with it, and so
     * may the rows the tally counted. */
    audit_forget(s->audit);
    if (s->tokens)
        tokens_set_tally(s->tokens, &s->begun_tally);
}

struct tokens_tally store_tally(const struct store *s)
{
    return tokens_tally(s->tokens);
}

int store_end(struct store *s, int rc)
{
    if (rc == 0)
        return store_commit(s);
    store_rollback(s);
    return rc;
}

/* ---- the tokens ---- */

int store_hash_new(struct store *s, unsigned limit, unsigned *ret_count)
{
    return tokens_hash_new(s->tokens, limit, ret_count);
}

void store_set_jwt_expiry(struct store *s, bool on)
{
    tokens_set_jwt_expiry(s->tokens, on);
}

int store_promote_due(struct store *s, int64_t now_ms, unsigned limit, unsigned *ret_count)
{
    return tokens_promote_due(s->tokens, s->audit, now_ms, limit, ret_count);
}

int store_promote_flagged(struct store *s, int64_t now_ms, unsigned limit, unsigned *ret_count)
{
    return tokens_promote_flagged(s->tokens, s->audit, now_ms, limit, ret_count);
}

int store_fetch_due(struct store *s, int64_t now_ms, unsigned limit,
                    int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return tokens_fetch_due(s->tokens, now_ms, limit, cb, ud);
}

int store_fetch_from(struct store *s, int64_t after_id, unsigned limit,
                     int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return tokens_fetch_from(s->tokens, after_id, limit, cb, ud);
}

int store_fetch_urgent(struct store *s, int64_t now_ms, unsigned limit,
                       int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return tokens_fetch_urgent(s->tokens, now_ms, limit, cb, ud);
}

int store_fetch_urgent_from(struct store *s, int64_t after_id, unsigned limit,
                            int (*cb)(void *ud, const struct pending_row *row), void *ud)
{
    return tokens_fetch_urgent_from(s->tokens, after_id, limit, cb, ud);
}

int store_next_events(struct store *s, int64_t now_ms, int64_t urgent_after_ms, struct next_events *ret)
{
    return tokens_next_events(s->tokens, now_ms, urgent_after_ms, ret);
}

int store_record_outcome(struct store *s, const struct outcome_record *r, enum token_state *ret_was)
{
    return tokens_record_outcome(s->tokens, s->audit, r, ret_was);
}

int store_revoke_secret(struct store *s, const char *token, size_t len, const char *subject,
                        const char *reason, int64_t now_ms, int64_t *ret_id, enum token_state *ret_state)
{
    int64_t id = 0;
    enum token_state state = 0;
    int rc = tokens_revoke_secret(s->tokens, s->audit, token, len, subject, reason, now_ms, &id, &state);

    /* A held token stays held; the request is kept for its release. */
    if (rc == 0 && state == TOKEN_HELD)
        rc = hold_note_request(s->hold, id, reason, NULL);
    if (rc == 0 && ret_id)
        *ret_id = id;
    if (rc == 0 && ret_state)
        *ret_state = state;
    return rc;
}

int store_track(struct store *s, const char *token, size_t len, const char *subject, int64_t expires_at,
                struct tokens_tracked *ret)
{
    return tokens_track(s->tokens, token, len, subject, expires_at, ret);
}

int store_revoke_id(struct store *s, int64_t id, const char *reason, int64_t now_ms, bool *ret_changed)
{
    bool changed = false;
    int rc = tokens_revoke_id(s->tokens, s->audit, id, reason, now_ms, &changed);

    if (rc == 0 && !changed) /* held: kept for its release, as a secret's */
        rc = hold_note_request(s->hold, id, reason, NULL);
    if (rc == 0 && ret_changed)
        *ret_changed = changed;
    return rc;
}

int store_hold_id(struct store *s, int64_t id, const struct hold_who *who, hold_recall_fn recall, void *ud,
                  enum token_state *ret_state)
{
    return hold_id(s->hold, s->audit, id, who, recall, ud, ret_state);
}

int store_release_id(struct store *s, int64_t id, const struct hold_who *who, enum token_state *ret_state)
{
    return hold_release_id(s->hold, s->audit, id, who, ret_state);
}

int store_hold_page(struct store *s, const char *subject, int64_t after, struct hold_page_row *rows,
                    size_t max, size_t *ret_n)
{
    return hold_page(s->hold, subject, after, rows, max, ret_n);
}

int store_drop(struct store *s, int64_t id, const struct hold_who *who, bool scrub, hold_recall_fn recall,
               void *ud, enum token_state *ret_state)
{
    return hold_drop(s->hold, s->audit, id, who, scrub, recall, ud, ret_state);
}

int store_status(struct store *s, int64_t id, struct token_status *ret)
{
    return tokens_status(s->tokens, id, ret);
}

int store_requeue_id(struct store *s, int64_t id, int64_t now_ms)
{
    return tokens_requeue_id(s->tokens, s->audit, id, now_ms);
}

int store_requeue_failed(struct store *s, int64_t now_ms, unsigned *ret_count)
{
    return tokens_requeue_failed(s->tokens, s->audit, now_ms, ret_count);
}

int store_due_now(struct store *s, int64_t now_ms, unsigned *ret_count)
{
    return tokens_due_now(s->tokens, now_ms, ret_count);
}

int store_count(struct store *s, bool full, struct state_counts *ret)
{
    struct state_counts c;
    int rc = tokens_count(s->tokens, full, &c);

    if (rc == 0 && !full) /* the full count has them already */
        rc = hold_count(s->hold, &c.held);
    if (rc == 0)
        *ret = c;
    return rc;
}

/* ---- checkpoints ---- */

void store_on_checkpoint(struct store *s, void (*cb)(void *data, int err, const char *msg), void *data)
{
    s->ckpt_cb = cb;
    s->ckpt_data = data;
}

void store_get_metrics(const struct store *s, struct store_metrics *ret)
{
    struct checkpoint_stats cs;

    checkpoint_get_stats(s->ckpt, &cs);
    *ret = (struct store_metrics){.commit = s->commit_time,
                                  .checkpoint = cs.duration,
                                  .wal_frames = cs.wal_frames,
                                  .sweeps = cs.sweeps,
                                  .sweep_due = cs.sweep_due,
                                  .pruned_tokens = s->pruned_tokens,
                                  .pruned_audit = s->pruned_audit};
    (void)store_file_size(s, &ret->db_size_bytes, &ret->db_free_bytes);
}

/* ---- retention ---- */

int store_prune_tokens(struct store *s, int64_t before_ms, unsigned limit, unsigned *ret_count,
                       unsigned *ret_secrets)
{
    unsigned count = 0, secrets = 0;
    int rc;

    sqlite3_bind_int64(s->prune_tokens, 1, before_ms);
    sqlite3_bind_int64(s->prune_tokens, 2, limit);
    while ((rc = sqlite3_step(s->prune_tokens)) == SQLITE_ROW) {
        count++;
        secrets += sqlite3_column_int(s->prune_tokens, 0) != 0;
    }
    rc = rc == SQLITE_DONE ? 0 : db_fail(s->db, rc);
    db_done(s->prune_tokens);
    if (rc < 0)
        return rc;
    *ret_count = count;
    *ret_secrets = secrets;
    return 0;
}

int store_prune_audit_plan(struct store *s, int64_t before_ms, unsigned limit, int64_t *ret_keep_seq,
                           int (*cb)(void *ud, const struct audit_row *row), void *ud)
{
    return auditprune_plan(s->prune, before_ms, limit, ret_keep_seq, cb, ud);
}

int store_prune_audit(struct store *s, int64_t keep_seq, int64_t now_ms, unsigned *ret_deleted)
{
    return auditprune_apply(s->prune, keep_seq, now_ms, ret_deleted);
}

void store_note_pruned(struct store *s, unsigned tokens, unsigned audit)
{
    s->pruned_tokens += tokens;
    s->pruned_audit += audit;
}

int store_file_size(const struct store *s, int64_t *ret_bytes, int64_t *ret_free_bytes)
{
    int rc = db_row(s->db, s->file_size);

    if (rc <= 0)
        return rc < 0 ? rc : -EIO;
    *ret_bytes = sqlite3_column_int64(s->file_size, 0);
    *ret_free_bytes = sqlite3_column_int64(s->file_size, 1);
    db_done(s->file_size);
    return 0;
}

int store_vacuum_step(struct store *s, bool *ret_more)
{
    int64_t bytes, free_bytes, mode = 0;
    int rc = db_row(s->db, s->auto_vacuum);

    if (rc < 0)
        return rc;
    if (rc == 1) {
        mode = sqlite3_column_int64(s->auto_vacuum, 0);
        db_done(s->auto_vacuum);
    }
    *ret_more = false;
    if (mode != 2) /* not INCREMENTAL: freed pages are only reused */
        return 0;
    rc = store_file_size(s, &bytes, &free_bytes);
    if (rc < 0)
        return rc;
    /* Some free pages are kept: the next rows reuse them. */
    if (free_bytes <= STORE_VACUUM_KEEP_BYTES || free_bytes * 8 <= bytes)
        return 0;
    while ((rc = sqlite3_step(s->vacuum)) == SQLITE_ROW)
        ;
    rc = rc == SQLITE_DONE ? 0 : db_fail(s->db, rc);
    sqlite3_reset(s->vacuum);
    if (rc == 0)
        *ret_more = true;
    return rc;
}


void store_checkpoint_request(struct store *s)
{
    checkpoint_request(s->ckpt);
}

bool store_checkpoint_retry(const struct store *s, unsigned *ret_ms)
{
    *ret_ms = checkpoint_retry_ms(s->ckpt);
    return *ret_ms == CHECKPOINT_RETRY_MIN_MS || *ret_ms == CHECKPOINT_RETRY_SWEEP_MS;
}

int store_checkpoint_now(struct store *s)
{
    return db_checkpoint(s->db);
}

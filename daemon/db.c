#include "db.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "schema.h"
#include "util.h"

/* Opening and migrating happen before the loop runs: an application holding
 * a write lock for a moment must not make the start fail. */
#define DB_OPEN_BUSY_TIMEOUT_MS 5000

/* struct db is what callers see; the transaction statements live beside it. */
struct db_impl {
    struct db pub;
    sqlite3_stmt *begin, *commit, *rollback, *data_version;
};

static char open_error[512];
#define set_open_error(...) util_format(open_error, sizeof(open_error), __VA_ARGS__)

static struct db_impl *impl_of(struct db *db)
{
    return (struct db_impl *)db; /* pub is the first member */
}

/* The open error of a failed sqlite3 call on conn, in the form
 * "cannot open PATH: MESSAGE (sqlite3 code N)". Returns the errno. */
static int open_fail(sqlite3 *conn, const char *what, const char *path, int rc)
{
    int err = db_errno(rc);

    if ((rc & 0xff) == SQLITE_CANTOPEN && conn) {
        int sys = sqlite3_system_errno(conn);
        if (sys == EACCES || sys == EPERM)
            err = -EACCES;
    }
    set_open_error("%s %s: %s (sqlite3 code %d)", what, path,
                   conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc), rc);
    return err;
}

/* Create the file with mode 0600 when missing, whatever the umask: SQLite
 * would create it with 0644 & ~umask. An existing file keeps its mode here;
 * the daemon's store sets it (dbfile_modes: 0600, or 0660 in its group).
 * SQLite gives the -wal and -shm files the mode of the database file. */
static int create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        fd = open(path, O_RDWR | O_CLOEXEC);
    else if (fd >= 0 && fchmod(fd, 0600) < 0) {
        int err = -errno;
        set_open_error("cannot open %s: chmod 0600: %s", path, strerror(errno));
        close(fd);
        return err;
    }
    if (fd < 0) {
        int err = -errno;
        set_open_error("cannot open %s: %s", path, strerror(errno));
        return err;
    }
    close(fd);
    return 0;
}

static bool is_memory(const char *path)
{
    return strcmp(path, ":memory:") == 0 || path[0] == '\0';
}

static int exec_simple(sqlite3 *conn, const char *sql)
{
    return sqlite3_exec(conn, sql, NULL, NULL, NULL);
}

static int pragma_int(sqlite3 *conn, const char *sql, int64_t *ret)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(conn, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *ret = sqlite3_column_int64(stmt, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(stmt);
    return rc;
}

static int set_wal(sqlite3 *conn, bool memory)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(conn, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(stmt, 0);
        /* A database that cannot do WAL is refused: readers would block us. */
        rc = (mode && (strcmp(mode, "wal") == 0 || memory)) ? SQLITE_OK : SQLITE_CANTOPEN;
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* One transaction per migration step; user_version is re-read under the
 * write lock so that two processes starting together migrate once. */
static int migrate(sqlite3 *conn, const char *path)
{
    for (;;) {
        int64_t version = 0;
        int rc = exec_simple(conn, "BEGIN IMMEDIATE");
        if (rc != SQLITE_OK)
            return open_fail(conn, "cannot migrate", path, rc);
        rc = pragma_int(conn, "PRAGMA user_version", &version);
        if (rc != SQLITE_OK) {
            exec_simple(conn, "ROLLBACK");
            return open_fail(conn, "cannot open", path, rc);
        }
        if (version > (int64_t)schema_version) {
            exec_simple(conn, "ROLLBACK");
            set_open_error("cannot open %s: its schema version %" PRId64
                           " is newer than this revokerd supports (%u); refusing to touch it",
                           path, version, schema_version);
            return -EPROTONOSUPPORT;
        }
        if (version == (int64_t)schema_version) {
            rc = exec_simple(conn, "COMMIT");
            return rc == SQLITE_OK ? 0 : open_fail(conn, "cannot open", path, rc);
        }
        rc = exec_simple(conn, schema_migrations[version]);
        if (rc == SQLITE_OK) {
            char sql[64];
            snprintf(sql, sizeof(sql), "PRAGMA user_version = %" PRId64, version + 1);
            rc = exec_simple(conn, sql);
        }
        if (rc == SQLITE_OK)
            rc = exec_simple(conn, "COMMIT");
        if (rc != SQLITE_OK) {
            char what[PATH_MAX + 64];
            snprintf(what, sizeof(what), "%s to schema version %" PRId64, path, version + 1);
            int err = open_fail(conn, "cannot migrate", what, rc);
            exec_simple(conn, "ROLLBACK");
            return err;
        }
    }
}

/* Views are recreated at every start so that they match this binary. */
static int create_views(sqlite3 *conn, const char *path)
{
    int rc = exec_simple(conn, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = exec_simple(conn, schema_views);
    if (rc == SQLITE_OK)
        rc = exec_simple(conn, "COMMIT");
    if (rc != SQLITE_OK) {
        int err = open_fail(conn, "cannot create the views of", path, rc);
        exec_simple(conn, "ROLLBACK");
        return err;
    }
    return 0;
}

static int configure(sqlite3 *conn, const char *path, int flags)
{
    static const char *const pragmas[] = {
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        /* A secret set to NULL is overwritten in the page, not just unlinked. */
        "PRAGMA secure_delete=ON",
        /* When the WAL restarts, cut it to what is live: stale frames may
         * still hold secrets that were removed since. */
        "PRAGMA journal_size_limit=0",
    };
    int rc;

    db_busy_wait(conn, DB_OPEN_BUSY_TIMEOUT_MS);
    if (flags & DB_READONLY) {
        int64_t version = 0;
        rc = pragma_int(conn, "PRAGMA user_version", &version);
        if (rc != SQLITE_OK)
            return open_fail(conn, "cannot open", path, rc);
        if (version == 0) {
            set_open_error("cannot open %s: it has no revokerd schema (user_version 0)", path);
            return -ENODATA;
        }
        if (version > (int64_t)schema_version) {
            set_open_error("cannot open %s: its schema version %" PRId64
                           " is newer than this build supports (%u)",
                           path, version, schema_version);
            return -EPROTONOSUPPORT;
        }
        rc = exec_simple(conn, "PRAGMA query_only=ON");
        if (rc != SQLITE_OK)
            return open_fail(conn, "cannot open", path, rc);
        db_busy_wait(conn, DB_BUSY_TIMEOUT_MS);
        return 0;
    }

    /* A new file is created with room for PRAGMA incremental_vacuum, so
     * that pages freed by retention can go back to the file system
     * (retention.h). It must precede WAL mode, which writes the header; on
     * an existing file it does nothing until a VACUUM (README, Retention). */
    rc = exec_simple(conn, "PRAGMA auto_vacuum=INCREMENTAL");
    if (rc != SQLITE_OK)
        return open_fail(conn, "cannot open", path, rc);
    rc = set_wal(conn, is_memory(path));
    if (rc != SQLITE_OK)
        return open_fail(conn, "cannot set WAL mode on", path, rc);
    for (size_t i = 0; i < ARRAY_SIZE(pragmas); i++) {
        rc = exec_simple(conn, pragmas[i]);
        if (rc != SQLITE_OK)
            return open_fail(conn, "cannot open", path, rc);
    }
    int err = migrate(conn, path);
    if (err < 0)
        return err;
    err = create_views(conn, path);
    if (err < 0)
        return err;
    db_busy_wait(conn, DB_BUSY_TIMEOUT_MS);
    return 0;
}

/* The start of the current wait, per thread: a thread waits for one lock at
 * a time, and SQLite calls the handler with count 0 at each new wait. */
static _Thread_local struct timespec busy_since;

static int busy_wait(void *ud, int count)
{
    int64_t limit_ns = (int64_t)(intptr_t)ud * 1000000;
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (count == 0)
        busy_since = now;
    int64_t waited = (int64_t)(now.tv_sec - busy_since.tv_sec) * 1000000000 + (now.tv_nsec - busy_since.tv_nsec);
    if (waited >= limit_ns)
        return 0; /* SQLITE_BUSY */
    /* 50, 50, 100, 100, 200, 200, 400, 400 µs, then 1 ms steps. */
    long step_us = count < 8 ? 50L << (count / 2) : 1000L;
    struct timespec ts = {0, step_us * 1000};
    nanosleep(&ts, NULL);
    return 1;
}

void db_busy_wait(sqlite3 *conn, int ms)
{
    if (ms <= 0)
        sqlite3_busy_handler(conn, NULL, NULL);
    else
        sqlite3_busy_handler(conn, busy_wait, (void *)(intptr_t)ms);
}

static int prepare_own(struct db_impl *d)
{
    static const struct {
        size_t offset;
        const char *sql;
    } stmts[] = {
        {offsetof(struct db_impl, begin), "BEGIN IMMEDIATE"},
        {offsetof(struct db_impl, commit), "COMMIT"},
        {offsetof(struct db_impl, rollback), "ROLLBACK"},
        {offsetof(struct db_impl, data_version), "PRAGMA data_version"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(stmts); i++) {
        sqlite3_stmt **slot = (sqlite3_stmt **)((char *)d + stmts[i].offset);
        int rc = sqlite3_prepare_v3(d->pub.conn, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    slot, NULL);
        if (rc != SQLITE_OK)
            return open_fail(d->pub.conn, "cannot open", d->pub.path, rc);
    }
    return 0;
}

/* Run a statement without result rows and reset it. */
static int run(struct db *db, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        sqlite3_reset(stmt);
        return 0;
    }
    int err = db_fail(db, rc);
    sqlite3_reset(stmt);
    return err;
}

void db_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int db_run(struct db *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_DONE ? 0 : db_fail(db, rc);
    db_done(st);
    return err;
}

int db_row(struct db *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    int err = rc == SQLITE_DONE ? 0 : db_fail(db, rc);
    db_done(st);
    return err;
}

int db_errno(int sqlite_rc)
{
    if (sqlite_rc == SQLITE_IOERR_NOMEM)
        return -ENOMEM;
    switch (sqlite_rc & 0xff) {
    case SQLITE_OK:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    default:
        return -EIO;
    }
}

int db_fail(struct db *db, int sqlite_rc)
{
    util_format(db->errmsg, sizeof(db->errmsg), "sqlite3 code %d (%s): %s", sqlite_rc,
                sqlite3_errstr(sqlite_rc), db->conn ? sqlite3_errmsg(db->conn) : "no connection");
    return db_errno(sqlite_rc);
}

const char *db_errmsg(const struct db *db)
{
    return db->errmsg;
}

const char *db_open_error(void)
{
    return open_error;
}

int db_open(const char *path, int flags, struct db **ret_db)
{
    struct db_impl *d;
    int err, rc;

    if (!path || !ret_db) {
        set_open_error("cannot open database: no path given");
        return -EINVAL;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        set_open_error("cannot open %s: out of memory", path);
        return -ENOMEM;
    }
    d->pub.path = strdup(path);
    if (!d->pub.path) {
        set_open_error("cannot open %s: out of memory", path);
        err = -ENOMEM;
        goto err_after_alloc;
    }
    if (!(flags & DB_READONLY) && !is_memory(path)) {
        err = create_private(path);
        if (err < 0)
            goto err_after_alloc;
    }

    int oflags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
                 ((flags & DB_READONLY) ? SQLITE_OPEN_READONLY
                                        : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    rc = sqlite3_open_v2(path, &d->pub.conn, oflags, NULL);
    if (rc != SQLITE_OK) {
        err = open_fail(d->pub.conn, "cannot open", path, rc);
        goto err_after_open;
    }
    err = configure(d->pub.conn, path, flags);
    if (err < 0)
        goto err_after_open;
    err = prepare_own(d);
    if (err < 0)
        goto err_after_open;

    open_error[0] = '\0';
    *ret_db = &d->pub;
    return 0;

err_after_open:
    db_close(&d->pub);
    return err;
err_after_alloc:
    free(d->pub.path);
    free(d);
    return err;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    struct db_impl *d = impl_of(db);
    sqlite3_finalize(d->begin);
    sqlite3_finalize(d->commit);
    sqlite3_finalize(d->rollback);
    sqlite3_finalize(d->data_version);
    /* _v2: statements other modules still hold keep the connection alive
     * until they are finalized, whatever the order of the destructors. */
    sqlite3_close_v2(db->conn);
    free(db->path);
    free(d);
}

int db_begin(struct db *db)
{
    return run(db, impl_of(db)->begin);
}

int db_commit(struct db *db)
{
    return run(db, impl_of(db)->commit);
}

void db_rollback(struct db *db)
{
    if (!db || sqlite3_get_autocommit(db->conn))
        return;
    /* A failed ROLLBACK leaves SQLite to roll back on its own; the error
     * is kept in errmsg for whoever logs next. */
    (void)run(db, impl_of(db)->rollback);
}

int db_checkpoint(struct db *db)
{
    int rc;

    /* No busy handler: the loop must not wait for another process. */
    db_busy_wait(db->conn, 0);
    rc = sqlite3_wal_checkpoint_v2(db->conn, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    db_busy_wait(db->conn, DB_BUSY_TIMEOUT_MS);
    return rc == SQLITE_OK ? 0 : db_fail(db, rc);
}

int db_data_version(struct db *db, int64_t *ret_version)
{
    sqlite3_stmt *stmt = impl_of(db)->data_version;
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        int err = db_fail(db, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
        sqlite3_reset(stmt);
        return err;
    }
    *ret_version = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return 0;
}

int db_prepare(struct db *db, const char *sql, sqlite3_stmt **ret_stmt)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc);
    *ret_stmt = stmt;
    return 0;
}

int64_t db_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

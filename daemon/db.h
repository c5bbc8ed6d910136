/* db: the SQLite connection: open, configure, migrate, transactions.
 *
 * db_open() creates the file with mode 0600 if missing (whatever the umask),
 * sets WAL, synchronous=NORMAL, a short busy timeout (the loop must not
 * block long: callers retry on -EBUSY), foreign_keys and secure_delete, then
 * applies the embedded migrations (PRAGMA user_version) and recreates the
 * views. DB_READONLY opens an existing file for reading only (revokerctl
 * audit) and neither migrates nor writes.
 * Errors: SQLITE_* codes become negative errnos here, at the module edge
 * (BUSY/LOCKED -EBUSY, FULL -ENOSPC, NOMEM -ENOMEM, READONLY -EROFS,
 * CANTOPEN -ENOENT or -EACCES, CORRUPT/NOTADB -EBADMSG, other -EIO); the
 * original code and message are kept in db_errmsg() for the log line. */
#pragma once

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define DB_READONLY 1
#define DB_BUSY_TIMEOUT_MS 50
#define DB_ERRMSG_MAX 256 /* db_errmsg()'s text, cut visibly (util_format) */

struct db {
    sqlite3 *conn;
    char *path;
    char errmsg[DB_ERRMSG_MAX]; /* last error: "sqlite3 code N (name): message" */
};

/* How long a statement on conn waits for another connection's write lock:
 * up to ms (0: not at all), in steps that start at 50 µs (SQLite's own
 * busy timeout sleeps 1, 2, 5, 10 ms...; an application's transaction is
 * usually shorter than its first step, and the loop stood still for it). */
void db_busy_wait(sqlite3 *conn, int ms);

int db_open(const char *path, int flags, struct db **ret_db);
/* For a failed db_open (ret_db is not written then). */
const char *db_open_error(void);
void db_close(struct db *db); /* NULL is fine */

int db_begin(struct db *db);  /* BEGIN IMMEDIATE */
int db_commit(struct db *db);
void db_rollback(struct db *db); /* safe without an open transaction */

/* Copy the whole WAL into the database file and cut the WAL to 0 bytes
 * (TRUNCATE checkpoint), so that page images from before a secret was
 * cleared leave the disk. Never waits: -EBUSY while another connection
 * reads from or writes to the WAL; try again later. */
int db_checkpoint(struct db *db);

/* PRAGMA data_version: changes when another connection commits. */
int db_data_version(struct db *db, int64_t *ret_version);

/* Prepare a statement that lives as long as the connection
 * (SQLITE_PREPARE_PERSISTENT). 0 or a negative errno. */
int db_prepare(struct db *db, const char *sql, sqlite3_stmt **ret_stmt);
/* Convert rc and remember sqlite3_errmsg in db->errmsg. */
int db_fail(struct db *db, int sqlite_rc);
/* Statement steps for the modules that own prepared statements: reset and
 * unbind st (db_done); step a statement that returns no row and reset it
 * (db_run: 0 or db_fail's errno); step a query expected to give at most one
 * row (db_row: 1 with st left on the row, for the caller to read and then
 * db_done(); 0 with none, reset; or db_fail's errno). */
void db_done(sqlite3_stmt *st);
int db_run(struct db *db, sqlite3_stmt *st);
int db_row(struct db *db, sqlite3_stmt *st);
const char *db_errmsg(const struct db *db);
/* SQLITE_* -> negative errno, without touching any db. */
int db_errno(int sqlite_rc);
/* Unix milliseconds from the wall clock (CLOCK_REALTIME). */
int64_t db_now_ms(void);

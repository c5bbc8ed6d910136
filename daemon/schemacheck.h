/* schemacheck: the database's schema against what this binary's migrations
 * create, so that an application that drops an index, a trigger, a view or a
 * table is noticed at once and not as a stall or a lost audit.
 *
 * The reference is built once: an in-memory database with every migration
 * and the views applied; its sqlite_schema rows are what the file must hold.
 * schemacheck_run() compares the file's rows with it (objects named
 * sqlite_* are SQLite's own and not compared; objects the reference does not
 * have are the application's and left alone). A missing or different index,
 * trigger or view is recreated from the reference's SQL in one transaction,
 * and note() is called once for each; a missing or different table is
 * refused: that is data, and only the operator can restore it.
 * schemacheck_changed() reads PRAGMA schema_version (a header field; no
 * table is read), so the caller can check after every commit it notices.
 *
 * Lifecycle: schemacheck_new() -> (schemacheck_changed()? schemacheck_run())*
 * -> schemacheck_free(). */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

struct schemacheck;

/* type is "index", "trigger" or "view"; how is "missing" or "different". */
typedef void (*schemacheck_note_fn)(void *ud, const char *type, const char *name, const char *how);

int schemacheck_new(struct schemacheck **ret_check);
void schemacheck_free(struct schemacheck *c); /* NULL is fine */
/* True when the schema of conn changed since the last schemacheck_run (or
 * when it cannot tell). */
bool schemacheck_changed(struct schemacheck *c, sqlite3 *conn);
/* 0: the schema is as expected (after the repairs note() was told of);
 * -EBADMSG: a table is missing or altered, err says which and what to do;
 * -EBUSY: another connection holds the write lock, try again later; other
 * negative errnos with err set. */
int schemacheck_run(struct schemacheck *c, sqlite3 *conn, schemacheck_note_fn note, void *ud, char *err,
                    size_t err_len);

/* schemacheck: see header. */
#include "schemacheck.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "schema.h"
#include "util.h"

struct object {
    char *type, *name, *sql;
};

struct schemacheck {
    struct object *objects; /* the reference, in creation order */
    size_t n;
    int cookie;             /* schema_version at the last run; -1: never */
};

static const char list_sql[] =
    "SELECT type, name, sql FROM sqlite_schema "
    "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid";

static void objects_free(struct object *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(o[i].type);
        free(o[i].name);
        free(o[i].sql);
    }
    free(o);
}

/* -fanalyzer (gcc 12) loses the strdup()s in o[] when realloc() moves it and
 * reports them leaked; objects_free() or the caller frees them. */
ANALYZER_LEAKS_OFF
/* Every object of conn's schema (what list_sql selects). */
static int objects_read(sqlite3 *conn, struct object **ret, size_t *ret_n)
{
    sqlite3_stmt *stmt;
    struct object *o = NULL;
    size_t n = 0;
    int rc = sqlite3_prepare_v2(conn, list_sql, -1, &stmt, NULL);

    if (rc != SQLITE_OK)
        return db_errno(rc);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct object *grown = realloc(o, (n + 1) * sizeof(*o));
        if (!grown) {
            rc = SQLITE_NOMEM;
            break;
        }
        o = grown;
        o[n].type = strdup((const char *)sqlite3_column_text(stmt, 0));
        o[n].name = strdup((const char *)sqlite3_column_text(stmt, 1));
        o[n].sql = strdup((const char *)sqlite3_column_text(stmt, 2));
        n++;
        if (!o[n - 1].type || !o[n - 1].name || !o[n - 1].sql) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        objects_free(o, n);
        return db_errno(rc);
    }
    *ret = o;
    *ret_n = n;
    return 0;
}
ANALYZER_LEAKS_ON

static const struct object *find(const struct object *o, size_t n, const char *type, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(o[i].type, type) == 0 && strcmp(o[i].name, name) == 0)
            return &o[i];
    return NULL;
}

static int schema_cookie(sqlite3 *conn, int *ret)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(conn, "PRAGMA schema_version", -1, &stmt, NULL);

    if (rc != SQLITE_OK)
        return db_errno(rc);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *ret = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? 0 : db_errno(rc == SQLITE_DONE ? SQLITE_ERROR : rc);
}

int schemacheck_new(struct schemacheck **ret_check)
{
    struct schemacheck *c;
    sqlite3 *mem = NULL;
    int rc = sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);

    for (unsigned v = 0; rc == SQLITE_OK && v < schema_version; v++)
        rc = sqlite3_exec(mem, schema_migrations[v], NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(mem, schema_views, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_close(mem);
        return db_errno(rc);
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        sqlite3_close(mem);
        return -ENOMEM;
    }
    rc = objects_read(mem, &c->objects, &c->n);
    sqlite3_close(mem);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->cookie = -1;
    *ret_check = c;
    return 0;
}

void schemacheck_free(struct schemacheck *c)
{
    if (!c)
        return;
    objects_free(c->objects, c->n);
    free(c);
}

bool schemacheck_changed(struct schemacheck *c, sqlite3 *conn)
{
    int cookie = -1;

    return schema_cookie(conn, &cookie) < 0 || cookie != c->cookie;
}

static const char *restore_hint(const char *name)
{
    return strcmp(name, "audit") == 0 ? "the audit log was dropped or altered by another process"
                                      : "it was dropped or altered by another process";
}

/* The tables must be as the migrations left them. */
static int check_tables(const struct schemacheck *c, const struct object *have, size_t n, char *err,
                        size_t err_len)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct object *want = &c->objects[i], *got;

        if (strcmp(want->type, "table") != 0)
            continue;
        got = find(have, n, "table", want->name);
        if (got && strcmp(got->sql, want->sql) == 0)
            continue;
        snprintf(err, err_len,
                 "table %s is %s: %s; restore it from a backup or move the database away (revokerd then "
                 "creates a new one)",
                 want->name, got ? "not as revokerd's migrations create it" : "missing", restore_hint(want->name));
        return -EBADMSG;
    }
    return 0;
}

static int exec_fmt(sqlite3 *conn, const char *fmt, const char *arg)
{
    char *sql = sqlite3_mprintf(fmt, arg);
    int rc;

    if (!sql)
        return SQLITE_NOMEM;
    rc = sqlite3_exec(conn, sql, NULL, NULL, NULL);
    sqlite3_free(sql);
    return rc;
}

int schemacheck_run(struct schemacheck *c, sqlite3 *conn, schemacheck_note_fn note, void *ud, char *err,
                    size_t err_len)
{
    struct object *have = NULL;
    size_t n = 0, n_fixed = 0;
    int cookie = -1, rc;
    /* Told after the commit: what was recreated, and whether it differed. */
    struct {
        const struct object *o;
        bool differed;
    } *fixed = calloc(c->n ? c->n : 1, sizeof(*fixed));

    if (!fixed)
        return -ENOMEM;
    rc = sqlite3_exec(conn, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "cannot check the schema: %s", sqlite3_errmsg(conn));
        free(fixed);
        return db_errno(rc);
    }
    rc = objects_read(conn, &have, &n);
    if (rc < 0) {
        snprintf(err, err_len, "cannot read the schema: %s", sqlite3_errmsg(conn));
        goto err_after_begin;
    }
    rc = check_tables(c, have, n, err, err_len);
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        const struct object *want = &c->objects[i];
        const struct object *got = find(have, n, want->type, want->name);
        int src = SQLITE_OK;

        if (strcmp(want->type, "table") == 0 || (got && strcmp(got->sql, want->sql) == 0))
            continue;
        if (got) /* "DROP INDEX", "DROP TRIGGER", "DROP VIEW" */
            src = strcmp(want->type, "index") == 0     ? exec_fmt(conn, "DROP INDEX \"%w\"", want->name)
                  : strcmp(want->type, "trigger") == 0 ? exec_fmt(conn, "DROP TRIGGER \"%w\"", want->name)
                                                       : exec_fmt(conn, "DROP VIEW \"%w\"", want->name);
        if (src == SQLITE_OK)
            src = sqlite3_exec(conn, want->sql, NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            snprintf(err, err_len, "cannot recreate %s %s: %s", want->type, want->name, sqlite3_errmsg(conn));
            rc = db_errno(src);
            break;
        }
        fixed[n_fixed].o = want;
        fixed[n_fixed++].differed = got != NULL;
    }
    objects_free(have, n);
    if (rc < 0)
        goto err_after_begin;
    rc = sqlite3_exec(conn, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "cannot commit the schema repair: %s", sqlite3_errmsg(conn));
        rc = db_errno(rc);
        goto err_after_begin;
    }
    if (schema_cookie(conn, &cookie) == 0)
        c->cookie = cookie;
    for (size_t i = 0; note && i < n_fixed; i++)
        note(ud, fixed[i].o->type, fixed[i].o->name, fixed[i].differed ? "different" : "missing");
    free(fixed);
    return 0;

err_after_begin:
    sqlite3_exec(conn, "ROLLBACK", NULL, NULL, NULL);
    free(fixed);
    return rc;
}

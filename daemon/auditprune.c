/* auditprune: the audit log's guarded delete of its oldest rows (see
 * auditprune.h). */
#include "auditprune.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "auditrow.h"
#include "util.h"

struct auditprune {
    struct db *db;
    sqlite3_stmt *plan, *next_seq, *prev_hash, *anchor_add, *anchor_trim, *prune;
};

/* The guard of sql/009-retention.sql's triggers: 1 while this thread is in
 * auditprune_apply(), 0 otherwise; undefined on other processes' connections,
 * whose anchor fails. Per thread, not per object: a connection has one
 * function of that name, whichever auditprune object defined it last. */
static _Thread_local int pruning;

static void prunes_audit(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_int(ctx, pruning);
}

static int prepare(struct auditprune *p)
{
    static const struct {
        size_t offset;
        const char *sql;
    } stmts[] = {
        /* The newest row always stays: it is the chain's head. */
        {offsetof(struct auditprune, plan),
         "SELECT " AUDITROW_COLUMNS " FROM audit WHERE seq < "
         "(SELECT max(seq) FROM audit) ORDER BY seq LIMIT ?1"},
        {offsetof(struct auditprune, next_seq), "SELECT min(seq) FROM audit WHERE seq > ?1"},
        {offsetof(struct auditprune, prev_hash), "SELECT hash FROM audit WHERE seq = ?1 - 1"},
        {offsetof(struct auditprune, anchor_add),
         "INSERT INTO audit_anchor (at, first_seq, prev_hash) VALUES (?1, ?2, ?3)"},
        {offsetof(struct auditprune, anchor_trim), "DELETE FROM audit_anchor WHERE id < last_insert_rowid()"},
        {offsetof(struct auditprune, prune), "DELETE FROM audit WHERE seq < ?1"},
    };
    int rc = sqlite3_create_function(p->db->conn, "revokerd_prunes_audit", 0, SQLITE_UTF8, NULL, prunes_audit,
                                     NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(p->db, rc);
    for (size_t i = 0; i < ARRAY_SIZE(stmts); i++) {
        int err = db_prepare(p->db, stmts[i].sql, (sqlite3_stmt **)((char *)p + stmts[i].offset));
        if (err < 0)
            return err;
    }
    return 0;
}

int auditprune_open(struct db *db, struct auditprune **ret)
{
    struct auditprune *p = calloc(1, sizeof(*p));
    int err;

    if (!p)
        return -ENOMEM;
    p->db = db;
    err = prepare(p);
    if (err < 0) {
        auditprune_close(p);
        return err;
    }
    *ret = p;
    return 0;
}

void auditprune_close(struct auditprune *p)
{
    if (!p)
        return;
    sqlite3_finalize(p->plan);
    sqlite3_finalize(p->next_seq);
    sqlite3_finalize(p->prev_hash);
    sqlite3_finalize(p->anchor_add);
    sqlite3_finalize(p->anchor_trim);
    sqlite3_finalize(p->prune);
    free(p);
}

int auditprune_plan(struct auditprune *p, int64_t before_ms, unsigned limit, int64_t *ret_keep_seq,
                    int (*cb)(void *ud, const struct audit_row *row), void *ud)
{
    int64_t last = 0, keep = 0;
    int rc, err = 0;

    sqlite3_bind_int64(p->plan, 1, limit);
    while ((rc = sqlite3_step(p->plan)) == SQLITE_ROW) {
        struct audit_row row;
        auditrow_read(p->plan, &row);
        if (row.at_ms >= before_ms) {
            keep = row.seq;
            break;
        }
        if (cb && (err = cb(ud, &row)) != 0)
            break;
        last = row.seq;
    }
    if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = db_fail(p->db, rc);
    db_done(p->plan);
    if (err != 0)
        return err;
    if (last == 0) {
        *ret_keep_seq = 0;
        return 0;
    }
    if (keep == 0) { /* the page ended on a row that goes: the next one stays */
        sqlite3_bind_int64(p->next_seq, 1, last);
        rc = db_row(p->db, p->next_seq);
        if (rc < 0)
            return rc;
        keep = rc == 1 ? sqlite3_column_int64(p->next_seq, 0) : 0;
        if (rc == 1)
            db_done(p->next_seq);
        if (keep == 0)
            return -ENODATA; /* the newest row was to go: cannot be (plan's query keeps it) */
    }
    *ret_keep_seq = keep;
    return 0;
}

int auditprune_apply(struct auditprune *p, int64_t keep_seq, int64_t now_ms, unsigned *ret_deleted)
{
    char prev[AUDIT_HASH_LEN + 1];
    int rc;

    sqlite3_bind_int64(p->prev_hash, 1, keep_seq);
    rc = db_row(p->db, p->prev_hash);
    if (rc <= 0)
        return rc < 0 ? rc : -ENODATA;
    snprintf(prev, sizeof(prev), "%s", (const char *)sqlite3_column_text(p->prev_hash, 0));
    db_done(p->prev_hash);

    pruning = 1;
    sqlite3_bind_int64(p->anchor_add, 1, now_ms);
    sqlite3_bind_int64(p->anchor_add, 2, keep_seq);
    sqlite3_bind_text(p->anchor_add, 3, prev, -1, SQLITE_STATIC);
    rc = db_run(p->db, p->anchor_add);
    if (rc == 0)
        rc = db_run(p->db, p->anchor_trim);
    pruning = 0;
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(p->prune, 1, keep_seq);
    rc = db_run(p->db, p->prune);
    if (rc < 0)
        return rc;
    *ret_deleted = (unsigned)sqlite3_changes(p->db->conn);
    return 0;
}

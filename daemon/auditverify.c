/* auditverify: the audit chain checked from its latest anchor (see
 * auditverify.h). */
#include "auditverify.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "auditrow.h"
#include "util.h"

/* The latest anchor, if the schema has the table (a database not yet
 * migrated to version 9 has none): 1 and the fields, 0 without one. */
static int anchor_read(struct db *db, struct audit_anchor *ret)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        db->conn, "SELECT id, at, first_seq, prev_hash FROM audit_anchor ORDER BY id DESC LIMIT 1", -1, &st,
        NULL);
    if (rc != SQLITE_OK) {
        int err = db_fail(db, rc);
        sqlite3_stmt *t;
        /* No table: no anchor; any other failure is one. */
        if (sqlite3_prepare_v2(db->conn, "SELECT 1 FROM sqlite_schema WHERE name = 'audit_anchor'", -1, &t,
                               NULL) != SQLITE_OK)
            return err;
        rc = sqlite3_step(t);
        sqlite3_finalize(t);
        return rc == SQLITE_DONE ? 0 : err;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 3);
        *ret = (struct audit_anchor){.id = sqlite3_column_int64(st, 0),
                                     .at_ms = sqlite3_column_int64(st, 1),
                                     .first_seq = sqlite3_column_int64(st, 2)};
        snprintf(ret->prev_hash, sizeof(ret->prev_hash), "%s", h ? h : "");
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : db_fail(db, rc);
    }
    sqlite3_finalize(st);
    return rc;
}

static bool is_hash(const char *h)
{
    if (strlen(h) != AUDIT_HASH_LEN)
        return false;
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return true;
}

/* No row may be left below the anchor: the prune that wrote it deleted
 * them in the same transaction. One still there is named: the one the
 * anchor chains from with another hash, or else the lowest (an anchor
 * added without a prune, by a connection defining revokerd_prunes_audit()
 * itself, and the rows below it free to be replaced). */
static int anchor_check(struct db *db, const struct audit_anchor *an, int64_t *ret_bad, char *why,
                        size_t whylen)
{
    sqlite3_stmt *st;
    int rc;

    *ret_bad = an->first_seq;
    if (an->first_seq < 1 || !is_hash(an->prev_hash)) {
        util_format(why, whylen,
                    "the latest audit_anchor (id %" PRId64 ") is malformed: first_seq %" PRId64
                    ", prev_hash not 64 hex digits (altered)",
                    an->id, an->first_seq);
        return -EBADMSG;
    }
    rc = sqlite3_prepare_v2(db->conn,
                            "SELECT min(seq), (SELECT hash FROM audit WHERE seq = ?1 - 1) FROM audit "
                            "WHERE seq < ?1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc);
    sqlite3_bind_int64(st, 1, an->first_seq);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        const char *h = (const char *)sqlite3_column_text(st, 1);
        if (h && strcmp(h, an->prev_hash) != 0) {
            util_format(why, whylen,
                        "the latest audit_anchor (id %" PRId64 ", seq %" PRId64
                        ") does not chain from seq %" PRId64 " (a forged or altered anchor)",
                        an->id, an->first_seq, an->first_seq - 1);
        } else {
            *ret_bad = sqlite3_column_int64(st, 0);
            util_format(why, whylen,
                        "seq %" PRId64 " lies below the latest audit_anchor (id %" PRId64 ", seq %" PRId64
                        "), whose prune deletes every row below it (a forged anchor, or a row inserted)",
                        *ret_bad, an->id, an->first_seq);
        }
        rc = -EBADMSG;
    } else {
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(db, rc);
    }
    sqlite3_finalize(st);
    return rc;
}

static int verify_chain(struct db *db, int64_t *ret_rows, int64_t *ret_bad_seq, char *why, size_t whylen)
{
    sqlite3_stmt *st;
    EVP_MD_CTX *md;
    struct audit_anchor an = {0};
    char prev[AUDIT_HASH_LEN + 1], computed[AUDIT_HASH_LEN + 1];
    int64_t prev_seq = 0, rows = 0, bad_seq = 0;
    int rc, err = 0;

    memcpy(prev, AUDITROW_GENESIS, sizeof(AUDITROW_GENESIS));
    rc = anchor_read(db, &an);
    if (rc == 1) {
        err = anchor_check(db, &an, &bad_seq, why, whylen);
        if (err < 0) {
            if (err == -EBADMSG && ret_bad_seq)
                *ret_bad_seq = bad_seq;
            else if (err != -EBADMSG)
                util_format(why, whylen, "%s", db_errmsg(db));
            return err;
        }
        prev_seq = an.first_seq - 1;
        memcpy(prev, an.prev_hash, sizeof(prev));
    } else if (rc < 0) {
        util_format(why, whylen, "%s", db_errmsg(db));
        return rc;
    }
    md = EVP_MD_CTX_new();
    if (!md)
        return -ENOMEM;
    rc = sqlite3_prepare_v2(db->conn, "SELECT " AUDITROW_COLUMNS " FROM audit WHERE seq > ?1 ORDER BY seq",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        err = db_fail(db, rc);
        util_format(why, whylen, "%s", db_errmsg(db));
        EVP_MD_CTX_free(md);
        return err;
    }
    sqlite3_bind_int64(st, 1, prev_seq);

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct auditrow_fields f;
        size_t hash_len;
        const char *hash = auditrow_text(st, 9, &hash_len);
        bad_seq = sqlite3_column_int64(st, 0);

        if (!auditrow_read_fields(st, &f)) {
            util_format(why, whylen, "seq %" PRId64 ": a column holds a value of the wrong type "
                                     "(altered)", bad_seq);
            err = -EBADMSG;
            break;
        }
        if (f.seq != prev_seq + 1) {
            if (prev_seq == 0)
                util_format(why, whylen,
                            "seq %" PRId64 " is the first row: the log must start at seq 1 "
                            "(rows before it deleted)", f.seq);
            else if (rows == 0 && an.id)
                util_format(why, whylen,
                            "seq %" PRId64 " is the first row, but the audit anchor names seq %" PRId64
                            ": seq %" PRId64 "..%" PRId64 " are missing (deleted)",
                            f.seq, an.first_seq, an.first_seq, f.seq - 1);
            else if (f.seq == prev_seq + 2)
                util_format(why, whylen,
                            "seq %" PRId64 " follows seq %" PRId64 ": seq %" PRId64
                            " is missing (deleted)", f.seq, prev_seq, prev_seq + 1);
            else
                util_format(why, whylen,
                            "seq %" PRId64 " follows seq %" PRId64 ": seq %" PRId64 "..%" PRId64
                            " are missing (deleted, or a row inserted out of sequence)",
                            f.seq, prev_seq, prev_seq + 1, f.seq - 1);
            err = -EBADMSG;
            break;
        }
        /* The stored hash of the previous row chains this one, so the row
         * reported is the one that was changed, not every row after it. */
        err = auditrow_hash(md, prev, AUDIT_HASH_LEN, &f, computed);
        if (err < 0)
            break;
        if (!hash || hash_len != AUDIT_HASH_LEN || memcmp(hash, computed, AUDIT_HASH_LEN) != 0) {
            util_format(why, whylen,
                        "seq %" PRId64 ": its hash does not match its content and the previous "
                        "row's hash (altered, or inserted)", f.seq);
            err = -EBADMSG;
            break;
        }
        /* The column's buffer dies at the next step: keep a copy. */
        memcpy(prev, hash, AUDIT_HASH_LEN);
        prev[AUDIT_HASH_LEN] = '\0';
        prev_seq = f.seq;
        rows++;
    }
    if (err == 0 && rc != SQLITE_DONE) {
        err = db_fail(db, rc);
        util_format(why, whylen, "%s", db_errmsg(db));
    }
    if (err == 0 && rows == 0 && an.id) {
        util_format(why, whylen, "the audit anchor names seq %" PRId64 ", which is missing (deleted)",
                    an.first_seq);
        bad_seq = an.first_seq;
        err = -EBADMSG;
    }
    sqlite3_finalize(st);
    EVP_MD_CTX_free(md);
    if (err == -EBADMSG && ret_bad_seq)
        *ret_bad_seq = bad_seq;
    if (err == 0 && ret_rows)
        *ret_rows = rows;
    return err;
}

/* The log's first and last seq into ret_ends (0 and 0 when empty). 0, or
 * a negative errno with why set. */
static int log_ends(struct db *db, int64_t ret_ends[2], char *why, size_t whylen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->conn, "SELECT min(seq), max(seq) FROM audit", -1, &st, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ret_ends[0] = sqlite3_column_int64(st, 0), ret_ends[1] = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return 0;
    rc = db_fail(db, rc);
    util_format(why, whylen, "%s", db_errmsg(db));
    return rc;
}

static int verify_head(struct db *db, const struct audit_head *head, int64_t *ret_rows, int64_t *ret_bad_seq,
                       char *why, size_t whylen)
{
    int64_t rows = 0, bad = 0, ends[2] = {0, 0}, n = head->seq;
    char hash[AUDIT_HASH_LEN + 1] = "";
    int found, err = verify_chain(db, &rows, &bad, why, whylen);

    if (err == -EBADMSG && ret_bad_seq)
        *ret_bad_seq = bad;
    if (err < 0)
        return err;
    /* Every log extends the empty one; then row N as the head recorded it. */
    found = n == 0 ? 1 : audit_hash_at(db, n, hash);
    if (found < 0) {
        util_format(why, whylen, "%s", db_errmsg(db));
        return found;
    }
    if (found && (n == 0 || strcmp(hash, head->hash) == 0)) {
        if (ret_rows)
            *ret_rows = rows;
        return 0;
    }
    if (found) {
        util_format(why, whylen,
                    "seq %" PRId64 ": its hash is %s, the recorded head says %s (this row or one before it "
                    "was rewritten, and the hashes after it recomputed)",
                    n, hash, head->hash);
    } else {
        found = log_ends(db, ends, why, whylen);
        if (found < 0)
            return found;
        if (ends[1] == 0)
            util_format(why, whylen, "seq %" PRId64 " is missing: the log is empty (every row deleted)", n);
        else if (n > ends[1])
            util_format(why, whylen,
                        "seq %" PRId64 " is missing: the log ends at seq %" PRId64
                        " (the newest rows deleted)",
                        n, ends[1]);
        else if (auditverify_get_anchor(db, &(struct audit_anchor){0}) == 0)
            util_format(why, whylen,
                        "seq %" PRId64 " cannot be checked: the log starts at seq %" PRId64
                        " (older rows pruned by [retention] audit); check a newer head",
                        n, ends[0]);
        else
            util_format(why, whylen,
                        "seq %" PRId64 " is missing: the log starts at seq %" PRId64
                        " (the rows before it deleted)",
                        n, ends[0]);
    }
    if (ret_bad_seq)
        *ret_bad_seq = n;
    return -EBADMSG;
}

/* A check is several statements: in one read transaction, so that a prune
 * committed between them is not taken for deleted rows. */
static bool snapshot_begin(struct db *db)
{
    return sqlite3_get_autocommit(db->conn) && sqlite3_exec(db->conn, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
}

static int snapshot_end(struct db *db, bool began, int rc)
{
    if (began)
        sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL);
    return rc;
}

int auditverify_get_anchor(struct db *db, struct audit_anchor *ret)
{
    struct audit_anchor an;
    int rc = anchor_read(db, &an);

    if (rc < 0)
        return rc;
    if (rc == 0)
        return -ENOENT;
    *ret = an;
    return 0;
}

int auditverify_chain(struct db *db, int64_t *ret_rows, int64_t *ret_bad_seq, char *why, size_t whylen)
{
    bool began = snapshot_begin(db);
    return snapshot_end(db, began, verify_chain(db, ret_rows, ret_bad_seq, why, whylen));
}

int auditverify_head(struct db *db, const struct audit_head *head, int64_t *ret_rows, int64_t *ret_bad_seq,
                     char *why, size_t whylen)
{
    bool began = snapshot_begin(db);
    return snapshot_end(db, began, verify_head(db, head, ret_rows, ret_bad_seq, why, whylen));
}

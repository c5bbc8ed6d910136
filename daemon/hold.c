/* hold: holds, releases and drops (see hold.h). Each row is looked up and
 * changed one at a time; the many-row ops (bulk.c) read a page of ids
 * first (hold_page), as tokens.c does for the loops that move rows out of a
 * partial index (a subject's, the held ones). */
#include "hold.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secret.h"
#include "util.h"

struct hold {
    struct db *db;
    sqlite3_stmt *by_id, *set_held, *page_of_subject, *page_held;
    sqlite3_stmt *release_of, *set_pending, *set_active, *set_dropped, *note, *count;
};

static const struct {
    size_t offset;
    const char *sql;
} statements[] = {
#define S(field) offsetof(struct hold, field)
    {S(by_id), "SELECT state, token, fingerprint, attempts FROM tokens WHERE id = ?1"},
    /* Held while active: not due, so no due reason or time (release_row
     * tells a due row by them). Held while pending: all kept. */
    {S(set_held),
     "UPDATE tokens SET state = 'held', fingerprint = ?2, token_sha256 = ?3, last_event = 'held', "
     "due_reason = CASE WHEN state = 'pending' THEN due_reason END, "
     "due_at = CASE WHEN state = 'pending' THEN coalesce(due_at, ?4) END, "
     "next_attempt_at = CASE WHEN state = 'pending' THEN next_attempt_at END "
     "WHERE id = ?1 AND state IN ('active', 'pending')"},
    {S(page_of_subject),
     "SELECT id, state FROM tokens INDEXED BY tokens_subject WHERE subject = ?1 AND id > ?2 "
     "ORDER BY id LIMIT ?3"},
    {S(page_held),
     "SELECT id, state FROM tokens INDEXED BY tokens_held WHERE state = 'held' AND id > ?1 ORDER BY id "
     "LIMIT ?2"},
    /* Why a held row is due now, NULL when it is not: its due reason (it
     * was pending, or requested while held; a pending row without one is
     * routine, as the fetches read it), its flag, or its expiry (in Unix
     * seconds, ?2; text and blobs are tokens.c's to reject). */
    {S(release_of),
     "SELECT state, fingerprint, attempts, CASE WHEN due_reason IS NOT NULL THEN due_reason "
     "WHEN due_at IS NOT NULL THEN 'expired' WHEN flagged <> 0 THEN 'flagged' "
     "WHEN typeof(expires_at) IN ('integer', 'real') AND expires_at <= ?2 THEN 'expired' END "
     "FROM tokens WHERE id = ?1"},
    /* Its attempts and its backoff stay. */
    {S(set_pending),
     "UPDATE tokens SET state = 'pending', due_reason = ?2, due_at = coalesce(due_at, ?3), "
     "next_attempt_at = CASE WHEN next_attempt_at > ?3 THEN next_attempt_at ELSE ?3 END, "
     "last_event = 'released' WHERE id = ?1 AND state = 'held'"},
    {S(set_active),
     "UPDATE tokens SET state = 'active', next_attempt_at = NULL, last_event = 'released' "
     "WHERE id = ?1 AND state = 'held'"},
    {S(set_dropped),
     "UPDATE tokens SET state = 'failed', last_event = 'dropped', last_error = ?2, finished_at = ?3, "
     "next_attempt_at = NULL, token = CASE WHEN ?4 THEN NULL ELSE token END "
     "WHERE id = ?1 AND state IN ('pending', 'held')"},
    {S(note),
     "UPDATE tokens SET due_reason = CASE WHEN due_reason IS NULL OR due_reason = 'expired' THEN 'requested' "
     "ELSE due_reason END, flag_reason = coalesce(?2, flag_reason) WHERE id = ?1 AND state = 'held'"},
    {S(count),
     "SELECT count(*) FROM (SELECT 1 FROM tokens INDEXED BY tokens_held WHERE state = 'held' LIMIT ?1)"},
#undef S
};

static enum token_state column_state(sqlite3_stmt *st, int i)
{
    enum token_state state;

    return token_state_from_name((const char *)sqlite3_column_text(st, i), &state) < 0 ? 0 : state;
}

/* "uid 1000 (what): reason", what and reason left out when NULL. */
static void detail_of(const struct hold_who *who, const char *what, char *buf, size_t len)
{
    char uid[32] = "uid ?";

    if (who->uid != (uid_t)-1)
        snprintf(uid, sizeof(uid), "uid %lu", (unsigned long)who->uid);
    util_format(buf, len, "%s%s%s%s%s%s", uid, what ? " (" : "", what ? what : "", what ? ")" : "",
                who->reason ? ": " : "", who->reason ? who->reason : "");
}

static int append(struct hold *h, struct audit *a, int64_t id, const char *fp, enum audit_event_kind event,
                  int attempts, const char *detail, int64_t now_ms)
{
    if (sqlite3_changes64(h->db->conn) != 1)
        return -EIO; /* the row was read inside this transaction: cannot happen */
    struct audit_event e = {
        .at_ms = now_ms,
        .token_id = id,
        .fingerprint = fp && *fp ? fp : NULL,
        .event = event,
        .attempt = attempts,
        .detail = detail,
        .duration_ms = -1,
    };
    return audit_append(a, &e);
}

/* Hold one row that by_id found active or pending, with a secret. */
static int hold_row(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who)
{
    sqlite3_stmt *st = h->by_id;
    uint8_t sha[SECRET_SHA256_LEN];
    char fp[SECRET_FP_LEN + 1], detail[384];
    enum token_state was = column_state(st, 0);
    int attempts = sqlite3_column_int(st, 3);
    /* The fingerprint from the secret: a row held while active may not
     * have one yet, and the release's pending row needs it. */
    int err = secret_sha256(sqlite3_column_text(st, 1), (size_t)sqlite3_column_bytes(st, 1), sha);

    db_done(st);
    if (err < 0)
        return err;
    secret_fingerprint(sha, fp);
    st = h->set_held;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, fp, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, sha, SECRET_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, who->now_ms);
    err = db_run(h->db, st);
    if (err < 0)
        return err;
    detail_of(who, was == TOKEN_PENDING ? "was pending" : "was active", detail, sizeof(detail));
    return append(h, a, id, fp, AUDIT_HELD, attempts, detail, who->now_ms);
}

/* by_id on id: 1 with the statement on the row, -ENOENT, or an error. */
static int find(struct hold *h, int64_t id)
{
    sqlite3_bind_int64(h->by_id, 1, id);
    int r = db_row(h->db, h->by_id);
    return r == 0 ? -ENOENT : r;
}

/* A token the engine holds is taken back from its queue, or in flight. */
static int recall_of(hold_recall_fn recall, void *ud, int64_t id, enum token_state state)
{
    return recall && state == TOKEN_PENDING ? recall(ud, id) : 0;
}

/* find() + the checks every hold makes; 0 with by_id on the row. */
static int holdable(struct hold *h, int64_t id, hold_recall_fn recall, void *ud, enum token_state *ret_state)
{
    int r = find(h, id);
    if (r < 0)
        return r;
    enum token_state state = column_state(h->by_id, 0);
    bool has_secret = sqlite3_column_bytes(h->by_id, 1) > 0;

    if (ret_state)
        *ret_state = state;
    if (state != TOKEN_ACTIVE && state != TOKEN_PENDING)
        r = -EINVAL;
    else if (!has_secret)
        r = -ENOKEY;
    else
        r = recall_of(recall, ud, id, state);
    if (r < 0)
        db_done(h->by_id);
    return r;
}

int hold_id(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who, hold_recall_fn recall,
            void *ud, enum token_state *ret_state)
{
    int r = holdable(h, id, recall, ud, ret_state);
    return r < 0 ? r : hold_row(h, a, id, who);
}

/* Release one held row: pending when release_of finds it due, else active. */
static int release_row(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who,
                       enum token_state *ret_state)
{
    sqlite3_stmt *st = h->release_of;
    char fp[SECRET_FP_LEN + 1], due[16], what[48], detail[384];

    sqlite3_bind_int64(st, 1, id);
    /* Unix seconds reached, as tokens.c compares expires_at (floor). */
    sqlite3_bind_int64(st, 2, who->now_ms >= 0 ? who->now_ms / 1000 : -((-who->now_ms + 999) / 1000));
    int r = db_row(h->db, st);
    if (r <= 0)
        return r == 0 ? -ENOENT : r;
    enum token_state state = column_state(st, 0);
    if (state != TOKEN_HELD) {
        db_done(st);
        if (ret_state)
            *ret_state = state;
        return -EINVAL;
    }
    const char *fpv = (const char *)sqlite3_column_text(st, 1);
    const char *duev = (const char *)sqlite3_column_text(st, 3);
    int attempts = sqlite3_column_int(st, 2);
    util_format(fp, sizeof(fp), "%s", fpv ? fpv : "");
    util_format(due, sizeof(due), "%s", duev ? duev : "");
    db_done(st);

    if (due[0]) {
        st = h->set_pending;
        sqlite3_bind_text(st, 2, due, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, who->now_ms);
        snprintf(what, sizeof(what), "now pending, due: %s", due);
    } else {
        st = h->set_active;
        snprintf(what, sizeof(what), "now active, not due");
    }
    sqlite3_bind_int64(st, 1, id);
    int err = db_run(h->db, st);
    if (err < 0)
        return err;
    detail_of(who, what, detail, sizeof(detail));
    err = append(h, a, id, fp, AUDIT_RELEASED, attempts, detail, who->now_ms);
    if (err == 0 && ret_state)
        *ret_state = due[0] ? TOKEN_PENDING : TOKEN_ACTIVE;
    return err;
}

int hold_release_id(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who,
                    enum token_state *ret_state)
{
    return release_row(h, a, id, who, ret_state);
}

int hold_drop(struct hold *h, struct audit *a, int64_t id, const struct hold_who *who, bool scrub,
              hold_recall_fn recall, void *ud, enum token_state *ret_state)
{
    char fp[SECRET_FP_LEN + 1], detail[384];
    int r = find(h, id);

    if (r < 0)
        return r;
    sqlite3_stmt *st = h->by_id;
    enum token_state state = column_state(st, 0);
    const char *fpv = (const char *)sqlite3_column_text(st, 2);
    int attempts = sqlite3_column_int(st, 3);
    util_format(fp, sizeof(fp), "%s", fpv ? fpv : "");
    db_done(st);
    if (ret_state)
        *ret_state = state;
    if (state != TOKEN_PENDING && state != TOKEN_HELD)
        return -EINVAL;
    r = recall_of(recall, ud, id, state);
    if (r < 0)
        return r;

    detail_of(who, NULL, detail, sizeof(detail));
    char last_error[400];
    util_format(last_error, sizeof(last_error), "dropped by %s", detail);
    st = h->set_dropped;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, last_error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, who->now_ms);
    sqlite3_bind_int(st, 4, scrub);
    int err = db_run(h->db, st);
    if (err < 0)
        return err;
    return append(h, a, id, fp, AUDIT_DROPPED, attempts, detail, who->now_ms);
}

int hold_note_request(struct hold *h, int64_t id, const char *reason, bool *ret_held)
{
    sqlite3_stmt *st = h->note;

    sqlite3_bind_int64(st, 1, id);
    if (reason)
        sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    int err = db_run(h->db, st);
    if (err == 0 && ret_held)
        *ret_held = sqlite3_changes64(h->db->conn) == 1;
    return err;
}

int hold_page(struct hold *h, const char *subject, int64_t after, struct hold_page_row *rows, size_t max,
              size_t *ret_n)
{
    sqlite3_stmt *st = subject ? h->page_of_subject : h->page_held;
    int i = 1, r = 0;
    size_t n = 0;

    if (subject)
        sqlite3_bind_text(st, i++, subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, i++, after);
    sqlite3_bind_int64(st, i, (sqlite3_int64)max);
    while (n < max && (r = db_row(h->db, st)) > 0)
        rows[n++] = (struct hold_page_row){sqlite3_column_int64(st, 0), column_state(st, 1)};
    db_done(st); /* on a row when max were read; reset otherwise, which is harmless again */
    if (r < 0)
        return r;
    *ret_n = n;
    return 0;
}

int hold_count(struct hold *h, int64_t *ret_count)
{
    sqlite3_bind_int64(h->count, 1, HOLD_COUNT_CAP);
    int r = db_row(h->db, h->count);
    if (r < 0)
        return r;
    *ret_count = r ? sqlite3_column_int64(h->count, 0) : 0;
    if (r)
        db_done(h->count);
    return 0;
}

int hold_open(struct db *db, struct hold **ret_hold)
{
    struct hold *h = calloc(1, sizeof(*h));
    int err = 0;

    if (!h)
        return -ENOMEM;
    h->db = db;
    for (size_t i = 0; i < ARRAY_SIZE(statements) && err == 0; i++)
        err = db_prepare(db, statements[i].sql, (sqlite3_stmt **)((char *)h + statements[i].offset));
    if (err < 0) {
        hold_close(h);
        return err;
    }
    *ret_hold = h;
    return 0;
}

void hold_close(struct hold *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(statements); i++)
        sqlite3_finalize(*(sqlite3_stmt **)((char *)h + statements[i].offset));
    free(h);
}

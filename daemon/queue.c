/* queue: the queue and shape views (see queue.h). */
#include "queue.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "util.h"

/* ---- names ---- */

static const char *const reason_names[] = {NULL, "expired", "flagged", "requested"};
static const char *const state_names[] = {NULL, "pending", "held"};
static const char *const by_names[] = {NULL, "reason", "event"};

/* The index of name in names[1..n-1]: 0, or -EINVAL. */
static int index_of(const char *const *names, size_t n, const char *name, int *ret)
{
    for (size_t i = 1; name && i < n; i++)
        if (strcmp(names[i], name) == 0) {
            *ret = (int)i;
            return 0;
        }
    return -EINVAL;
}

int queue_reason_from_name(const char *name, enum queue_reason *ret)
{
    int i, r = index_of(reason_names, ARRAY_SIZE(reason_names), name, &i);
    if (r == 0)
        *ret = (enum queue_reason)i;
    return r;
}

int queue_state_from_name(const char *name, enum queue_state *ret)
{
    int i, r = index_of(state_names, ARRAY_SIZE(state_names), name, &i);
    if (r == 0)
        *ret = (enum queue_state)i;
    return r;
}

int queue_by_from_name(const char *name, enum queue_by *ret)
{
    int i, r = index_of(by_names, ARRAY_SIZE(by_names), name, &i);
    if (r == 0)
        *ret = (enum queue_by)i;
    return r;
}

const char *queue_reason_name(enum queue_reason r)
{
    return (size_t)r < ARRAY_SIZE(reason_names) ? reason_names[r] : NULL;
}

const char *queue_state_name(enum queue_state s)
{
    return (size_t)s < ARRAY_SIZE(state_names) ? state_names[s] : NULL;
}

const char *queue_by_name(enum queue_by b)
{
    return (size_t)b < ARRAY_SIZE(by_names) ? by_names[b] : NULL;
}

/* ---- the cursor ---- */

/* A decimal integer, all of s, optionally negative; false otherwise. */
static bool parse_int64(const char *s, size_t len, int64_t *ret)
{
    char buf[24], *end;

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!((buf[0] >= '0' && buf[0] <= '9') || (buf[0] == '-' && len > 1)))
        return false;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return false;
    *ret = v;
    return true;
}

int queue_cursor_parse(const char *s, struct queue_cursor *ret)
{
    struct queue_cursor c = {0};
    const char *colon = s ? strchr(s, ':') : NULL;

    if (!colon)
        return -EINVAL;
    if ((size_t)(colon - s) == 4 && memcmp(s, "null", 4) == 0)
        c.due_null = true;
    else if (!parse_int64(s, (size_t)(colon - s), &c.due_at))
        return -EINVAL;
    if (!parse_int64(colon + 1, strlen(colon + 1), &c.id) || c.id < 0)
        return -EINVAL;
    *ret = c;
    return 0;
}

void queue_cursor_format(const struct queue_cursor *c, char *buf, size_t len)
{
    if (c->due_null)
        snprintf(buf, len, "null:%" PRId64, c->id);
    else
        snprintf(buf, len, "%" PRId64 ":%" PRId64, c->due_at, c->id);
}

/* ---- a row ---- */

static json_t *text_or_null(const char *s)
{
    return *s ? json_string(s) : json_null();
}

/* A column applications write (subject) may hold bytes that are not UTF-8:
 * they show as '?' rather than the reply failing (as proto's status). */
static json_t *app_text_or_null(const char *s)
{
    json_t *v = text_or_null(s);
    char copy[512];

    if (v || !*s)
        return v;
    snprintf(copy, sizeof(copy), "%s", s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    return json_string(copy);
}

static json_t *iso_or_null(int64_t ms)
{
    char buf[UTIL_ISO_LEN];
    return util_iso_ms(ms, buf, sizeof(buf)) ? json_string(buf) : json_null();
}

json_t *queue_row_json(const struct queue_row *r)
{
    const char *reason = queue_reason_name(r->reason);
    bool urgent = r->reason == QUEUE_FLAGGED || r->reason == QUEUE_REQUESTED;

    return json_pack("{s:I,s:o,s:o,s:o,s:s,s:o,s:I,s:o,s:o,s:o,s:b}", "id", (json_int_t)r->id, "fingerprint",
                     text_or_null(r->fingerprint), "subject", app_text_or_null(r->subject), "reason",
                     reason ? json_string(reason) : json_null(), "lane", urgent ? "urgent" : "routine",
                     "due_at", r->due_null ? json_null() : iso_or_null(r->due_at), "attempts",
                     (json_int_t)r->attempts, "next_attempt_at", iso_or_null(r->next_attempt_at),
                     "last_event", app_text_or_null(r->last_event), "last_error",
                     app_text_or_null(r->last_error), "held", r->held);
}

/* ---- a page ---- */

/* Both read tokens_queue alone (covering: due_at, id, due_reason, state). A
 * row whose due_at is NULL sorts first: those are read by id, then the rest
 * from the cursor. */
static const char page_null_sql[] =
    "SELECT id, due_at, due_reason, state FROM tokens INDEXED BY tokens_queue "
    "WHERE state IN ('pending', 'held') AND due_at IS NULL AND id > ?1 ORDER BY due_at, id";
static const char page_after_sql[] =
    "SELECT id, due_at, due_reason, state FROM tokens INDEXED BY tokens_queue "
    "WHERE state IN ('pending', 'held') AND (due_at, id) > (?1, ?2) ORDER BY due_at, id";
static const char row_sql[] = "SELECT fingerprint, subject, attempts, next_attempt_at, last_event, "
                              "last_error FROM tokens WHERE id = ?1";

static void column_text(sqlite3_stmt *st, int col, char *buf, size_t len)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(buf, len, "%s", s ? (const char *)s : "");
}

static enum queue_reason reason_of(sqlite3_stmt *st, int col)
{
    enum queue_reason r = QUEUE_REASON_ANY;
    (void)queue_reason_from_name((const char *)sqlite3_column_text(st, col), &r);
    return r;
}

struct page {
    const struct queue_filter *f;
    sqlite3_stmt *row;
    json_t *rows;
    unsigned scanned;
    bool full, stopped;
    struct queue_cursor last;
};

/* The rest of the row's columns (the index has four), as JSON. */
static int add_row(struct db *db, struct page *p, struct queue_row *r)
{
    int rc;

    sqlite3_bind_int64(p->row, 1, r->id);
    rc = sqlite3_step(p->row);
    if (rc == SQLITE_ROW) {
        column_text(p->row, 0, r->fingerprint, sizeof(r->fingerprint));
        column_text(p->row, 1, r->subject, sizeof(r->subject));
        r->attempts = (unsigned)sqlite3_column_int64(p->row, 2);
        r->next_attempt_at = sqlite3_column_int64(p->row, 3);
        column_text(p->row, 4, r->last_event, sizeof(r->last_event));
        column_text(p->row, 5, r->last_error, sizeof(r->last_error));
        json_t *v = queue_row_json(r);
        rc = v && json_array_append_new(p->rows, v) == 0 ? SQLITE_OK : SQLITE_NOMEM;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK; /* gone since the index said so: not in this page */
    }
    sqlite3_reset(p->row);
    return rc == SQLITE_OK ? 0 : db_fail(db, rc);
}

/* Reads st's rows into the page until it is full or QUEUE_SCAN_MAX entries
 * were read. */
static int scan(struct db *db, struct page *p, sqlite3_stmt *st)
{
    int rc = SQLITE_DONE;

    while (!p->full && !p->stopped && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct queue_row r = {.id = sqlite3_column_int64(st, 0)};
        int type = sqlite3_column_type(st, 1);
        const char *state = (const char *)sqlite3_column_text(st, 3);

        /* due_at is revokerd's column and always an integer it wrote; a
         * real or text (another process's) would make a cursor that does
         * not move: the queue ends before such rows. */
        if (type != SQLITE_INTEGER && type != SQLITE_NULL) {
            p->stopped = true;
            break;
        }
        r.due_null = type == SQLITE_NULL;
        r.due_at = sqlite3_column_int64(st, 1);
        r.reason = reason_of(st, 2);
        r.held = state && strcmp(state, "held") == 0;
        p->last = (struct queue_cursor){.due_null = r.due_null, .due_at = r.due_at, .id = r.id};
        p->scanned++;
        if ((!p->f->reason || p->f->reason == r.reason) &&
            (!p->f->state || (p->f->state == QUEUE_HELD) == r.held)) {
            int err = add_row(db, p, &r);
            if (err < 0) {
                sqlite3_reset(st);
                return err;
            }
        }
        p->full = json_array_size(p->rows) >= p->f->limit || p->scanned >= QUEUE_SCAN_MAX;
    }
    if (!p->full && !p->stopped && rc != SQLITE_DONE) {
        sqlite3_reset(st);
        return db_fail(db, rc);
    }
    sqlite3_reset(st);
    return 0;
}

int queue_page(struct db *db, const struct queue_filter *f, json_t **ret_rows, bool *ret_more,
               struct queue_cursor *ret_next)
{
    sqlite3_stmt *null_st = NULL, *after_st = NULL;
    struct page p = {.f = f, .rows = json_array()};
    const struct queue_cursor *c = &f->after;
    int rc, err = 0;

    if (!p.rows)
        return -ENOMEM;
    rc = sqlite3_prepare_v2(db->conn, page_null_sql, -1, &null_st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db->conn, page_after_sql, -1, &after_st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db->conn, row_sql, -1, &p.row, NULL);
    if (rc != SQLITE_OK)
        err = db_fail(db, rc);
    /* One read transaction: the index and the rows agree. */
    if (err == 0 && (rc = sqlite3_exec(db->conn, "BEGIN DEFERRED", NULL, NULL, NULL)) != SQLITE_OK)
        err = db_fail(db, rc);
    if (err == 0) {
        if (!f->after_set || c->due_null) {
            sqlite3_bind_int64(null_st, 1, f->after_set ? c->id : 0);
            err = scan(db, &p, null_st);
        }
        if (err == 0 && !p.full && !p.stopped) {
            sqlite3_bind_int64(after_st, 1, f->after_set && !c->due_null ? c->due_at : INT64_MIN);
            sqlite3_bind_int64(after_st, 2, f->after_set && !c->due_null ? c->id : INT64_MIN);
            err = scan(db, &p, after_st);
        }
        sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL);
    }
    sqlite3_finalize(null_st);
    sqlite3_finalize(after_st);
    sqlite3_finalize(p.row);
    if (err < 0) {
        json_decref(p.rows);
        return err;
    }
    *ret_rows = p.rows;
    *ret_more = p.full;
    if (p.full)
        *ret_next = p.last;
    return 0;
}

/* ---- the shape ---- */

unsigned queue_bucket(int64_t age_ms)
{
    unsigned i = 0;

    if (age_ms < QUEUE_BUCKET_MS)
        return 0;
    /* Bucket i >= 1 holds [5 min * 2^(i-1), 5 min * 2^i). */
    for (int64_t m = age_ms / QUEUE_BUCKET_MS; m > 0 && i < QUEUE_NBUCKETS - 1; m >>= 1)
        i++;
    return i;
}

const char *queue_bucket_name(unsigned i)
{
    static const char *const names[QUEUE_NBUCKETS] = {"5m",   "10m",  "20m",  "40m",   "80m",
                                                      "160m", "320m", "640m", "1280m", "1280m+"};
    return i < QUEUE_NBUCKETS ? names[i] : NULL;
}

void queue_shape_init(struct queue_shape *s, enum queue_by by, int64_t now_ms)
{
    memset(s, 0, sizeof(*s));
    s->by = by;
    s->now_ms = now_ms;
    s->nrows = 1;
    s->rows[0].name = "TOTAL";
}

/* The row's name from a fixed table, so that a grid never quotes the
 * table's text (another process may write anything there). */
static const char *row_name(enum queue_by by, const char *name)
{
    enum queue_reason r;
    enum audit_event_kind e;
    const char *n = NULL;

    if (by == QUEUE_BY_REASON && queue_reason_from_name(name, &r) == 0)
        n = queue_reason_name(r);
    else if (by == QUEUE_BY_EVENT && audit_event_from_name(name, &e) == 0)
        n = audit_event_name(e);
    return n ? n : "other";
}

static void count(struct queue_shape_row *row, unsigned bucket)
{
    row->total++;
    row->count[bucket]++;
}

void queue_shape_add(struct queue_shape *s, const char *name, bool due_null, int64_t due_at)
{
    const char *n = row_name(s->by, name);
    /* A due_at before 1970 (another process's) is old: no overflow. */
    unsigned bucket = due_null || due_at < 0 ? QUEUE_NBUCKETS - 1 : queue_bucket(s->now_ms - due_at);
    unsigned i = 1;

    while (i < s->nrows && strcmp(s->rows[i].name, n) != 0)
        i++;
    if (i == s->nrows && s->nrows < QUEUE_SHAPE_ROWS)
        s->rows[s->nrows++].name = n;
    if (i == s->nrows) /* cannot happen: fewer names than rows */
        i = s->nrows - 1;
    count(&s->rows[0], bucket);
    count(&s->rows[i], bucket);
    if (!due_null && (s->oldest_due_ms == 0 || due_at < s->oldest_due_ms))
        s->oldest_due_ms = due_at;
}

static int by_total(const void *a, const void *b)
{
    const struct queue_shape_row *x = a, *y = b;
    if (x->total != y->total)
        return x->total > y->total ? -1 : 1;
    return strcmp(x->name, y->name);
}

json_t *queue_shape_json(const struct queue_shape *s)
{
    struct queue_shape_row rows[QUEUE_SHAPE_ROWS];
    json_t *buckets = json_array(), *list = json_array();
    bool ok = buckets && list && json_array_append_new(buckets, json_string("T")) == 0;

    memcpy(rows, s->rows, sizeof(rows));
    qsort(rows + 1, s->nrows - 1, sizeof(rows[0]), by_total);
    for (unsigned b = 0; ok && b < QUEUE_NBUCKETS; b++)
        ok = json_array_append_new(buckets, json_string(queue_bucket_name(b))) == 0;
    for (unsigned i = 0; ok && i < s->nrows; i++) {
        json_t *row = json_pack("{s:s,s:I}", "name", rows[i].name, "T", (json_int_t)rows[i].total);
        for (unsigned b = 0; row && b < QUEUE_NBUCKETS; b++)
            if (json_object_set_new(row, queue_bucket_name(b), json_integer((json_int_t)rows[i].count[b])) <
                0) {
                json_decref(row);
                row = NULL;
            }
        ok = row && json_array_append_new(list, row) == 0;
    }
    int64_t age_ms = s->oldest_due_ms > 0 && s->now_ms > s->oldest_due_ms ? s->now_ms - s->oldest_due_ms : 0;
    json_t *reply = ok
        ? json_pack("{s:b,s:s,s:o,s:o,s:o,s:O,s:O}", "ok", 1, "by", queue_by_name(s->by), "now",
                    iso_or_null(s->now_ms), "oldest_due_at", iso_or_null(s->oldest_due_ms), "oldest_age_s",
                    s->oldest_due_ms ? json_integer((json_int_t)(age_ms / 1000)) : json_null(), "buckets",
                    buckets, "rows", list)
        : NULL;
    json_decref(buckets);
    json_decref(list);
    return reply;
}

/* Through tokens_queue alone by reason; by event each row is read too. */
static const char shape_reason_sql[] = "SELECT due_at, due_reason FROM tokens INDEXED BY tokens_queue "
                                       "WHERE state IN ('pending', 'held') AND state = 'pending'";
static const char shape_event_sql[] = "SELECT due_at, last_event FROM tokens INDEXED BY tokens_queue "
                                      "WHERE state IN ('pending', 'held') AND state = 'pending'";
static const char *const shape_sql[] = {
    [QUEUE_BY_REASON] = shape_reason_sql, [QUEUE_BY_EVENT] = shape_event_sql};

const char *const queue_statements[] = {page_null_sql,    page_after_sql,  row_sql,
                                        shape_reason_sql, shape_event_sql, NULL};

int queue_shape_compute(sqlite3 *conn, enum queue_by by, int64_t now_ms, struct queue_shape *ret, char *err,
                        size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = by == QUEUE_BY_REASON || by == QUEUE_BY_EVENT ? SQLITE_OK : SQLITE_MISUSE;

    queue_shape_init(ret, by, now_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(conn, shape_sql[by], -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        queue_shape_add(ret, (const char *)sqlite3_column_text(st, 1),
                        sqlite3_column_type(st, 0) == SQLITE_NULL, sqlite3_column_int64(st, 0));
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE)
        snprintf(err, errlen, "cannot count the pending tokens: %s", sqlite3_errmsg(conn));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_errno(rc);
}

/* ---- shape off the loop ---- */

struct shape_waiter {
    struct shape_waiter *next;
    queue_shape_cb *cb;
    void *ud;
};

/* One count, for every request of its `by` that came before it started:
 * a burst of requests (or clients that leave before their reply) costs at
 * most one count per `by` after the one running. */
struct shape_job {
    struct shape_job *next;
    struct queue *q;
    uv_work_t work;
    enum queue_by by;
    struct shape_waiter *waiters;
    int err;
    char errmsg[200];
    struct queue_shape shape;
};

struct queue {
    uv_loop_t *loop;
    char *db_path;
    struct shape_job *running;
    struct shape_job *waiting; /* at most one per `by`, in request order */
    unsigned nwaiters;         /* requests not answered yet */
    bool closing;
};

/* On the threadpool: a connection of its own, read-only, for this count. */
static void shape_work(uv_work_t *w)
{
    struct shape_job *j = container_of(w, struct shape_job, work);
    sqlite3 *conn = NULL;
    int rc = sqlite3_open_v2(j->q->db_path, &conn, SQLITE_OPEN_READONLY, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(conn, 1000);
    if (rc != SQLITE_OK) {
        snprintf(j->errmsg, sizeof(j->errmsg), "cannot open the database read-only to count the tokens: %s",
                 conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc));
        j->err = db_errno(rc);
    } else {
        j->err = queue_shape_compute(conn, j->by, db_now_ms(), &j->shape, j->errmsg, sizeof(j->errmsg));
    }
    sqlite3_close(conn);
}

/* Tells every waiter of j and frees j. */
static void answer(struct queue *q, struct shape_job *j, int err, const char *msg)
{
    while (j->waiters) {
        struct shape_waiter *w = j->waiters;
        j->waiters = w->next;
        q->nwaiters--;
        w->cb(w->ud, err, err < 0 ? NULL : &j->shape, msg);
        free(w);
    }
    free(j);
}

static void shape_done(uv_work_t *w, int status);

static void start_next(struct queue *q)
{
    struct shape_job *j = q->waiting;

    if (q->running || !j)
        return;
    q->waiting = j->next;
    q->running = j;
    int rc = uv_queue_work(q->loop, &j->work, shape_work, shape_done);
    if (rc < 0) {
        q->running = NULL;
        answer(q, j, rc, uv_strerror(rc));
        start_next(q);
    }
}

static void finish(struct queue *q)
{
    if (q->closing && !q->running) {
        free(q->db_path);
        free(q);
    }
}

static void shape_done(uv_work_t *w, int status)
{
    struct shape_job *j = container_of(w, struct shape_job, work);
    struct queue *q = j->q;

    q->running = NULL;
    if (status < 0)
        answer(q, j, status, uv_strerror(status));
    else
        answer(q, j, j->err, j->err < 0 ? j->errmsg : NULL);
    if (q->closing)
        finish(q);
    else
        start_next(q);
}

int queue_new(uv_loop_t *loop, const char *db_path, struct queue **ret)
{
    struct queue *q = calloc(1, sizeof(*q));

    if (!q || !(q->db_path = strdup(db_path))) {
        free(q);
        return -ENOMEM;
    }
    q->loop = loop;
    *ret = q;
    return 0;
}

int queue_shape_start(struct queue *q, enum queue_by by, queue_shape_cb *cb, void *ud)
{
    struct shape_job *j, **tail = &q->waiting;
    struct shape_waiter *w;

    if (q->closing)
        return -ECANCELED;
    if (q->nwaiters >= QUEUE_SHAPE_WAITING)
        return -EBUSY;
    for (j = q->waiting; j && j->by != by; j = j->next)
        tail = &j->next;
    if (!(w = calloc(1, sizeof(*w))))
        return -ENOMEM;
    if (!j) {
        if (!(j = calloc(1, sizeof(*j)))) {
            free(w);
            return -ENOMEM;
        }
        j->q = q;
        j->by = by;
        *tail = j;
    }
    *w = (struct shape_waiter){.next = j->waiters, .cb = cb, .ud = ud};
    j->waiters = w;
    q->nwaiters++;
    start_next(q);
    return 0;
}

void queue_close(struct queue *q)
{
    if (!q)
        return;
    q->closing = true;
    while (q->waiting) {
        struct shape_job *j = q->waiting;
        q->waiting = j->next;
        answer(q, j, -ECANCELED, "revokerd is stopping");
    }
    finish(q);
}

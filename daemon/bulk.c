/* bulk: ops on many tokens in parts (see bulk.h). A job is one op: its
 * cursor (pass, last id done), what it did so far, and who waits for it.
 * The jobs wait in a list; an idle handle runs one part of the first a loop
 * turn, while the list is not empty. */
#include "bulk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PAGE_ROWS 64 /* rows read at once; a part reads pages until its budget is spent */
/* The engine is kicked after the first part that changed rows (a revoke's
 * first tokens go at once; the engine goes on fetching as it sends) and
 * after the last, not after each: a kick has it read the table, which with
 * a large pending set can cost more than a part (its routine fetch reads
 * the urgent rows it skips). */

struct job {
    struct job *next;
    struct bulk_env env;
    enum bulk_op op;
    const char *subject, *reason;
    char *copies; /* subject and reason of bulk_start's job, one block */
    uid_t uid;
    int pass; /* hold: 0 the pending rows, 1 the active and pending ones */
    int64_t after;
    size_t pass1_from; /* hold: res.ids from there were held in pass 1, in id order */
    bool unkicked;     /* rows changed since the last kick */
    bool kicked;       /* once */
    struct bulk_result res;
    bulk_done_fn *done;
    void *ud;
};

struct bulk {
    uv_idle_t idle;
    struct job *head, **tail;
    bool closing;
};

/* -fanalyzer (gcc 12) loses the block realloc() moves into l->v and reports
 * it leaked; the job frees it (bulk_result_free). */
ANALYZER_LEAKS_OFF
static int ids_add(struct bulk_ids *l, int64_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        int64_t *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
    return 0;
}
ANALYZER_LEAKS_ON

/* Small lists only: the ids left in flight (at most the engine's). */
static bool ids_has(const struct bulk_ids *l, int64_t id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == id)
            return true;
    return false;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A hold's in-flight ids that pass 1 held after all are no longer in flight. */
static void forget_held(struct job *j)
{
    struct bulk_ids *o = &j->res.other;
    const int64_t *held = j->res.ids.v ? j->res.ids.v + j->pass1_from : NULL; /* none held yet */
    size_t nheld = j->res.ids.n - j->pass1_from, k = 0;

    for (size_t i = 0; i < o->n; i++)
        if (nheld == 0 || !bsearch(&o->v[i], held, nheld, sizeof(*held), cmp_id))
            o->v[k++] = o->v[i];
    o->n = k;
}

static int recall(void *ud, int64_t id)
{
    const struct job *j = ud;
    return j->env.recall ? j->env.recall(j->env.ud, id) : 0;
}

static int file_check(const struct job *j)
{
    return j->env.file_check ? j->env.file_check(j->env.ud) : 0;
}

/* The engine sends what is due now (a revoke's), takes room a recall left. */
static void kick(struct job *j, bool now)
{
    if (!j->env.kick || !(now || (j->unkicked && !j->kicked)))
        return;
    j->env.kick(j->env.ud);
    j->kicked = true;
    j->unkicked = false;
}

/* One row of the page, in the part's transaction: 0 (changed or left
 * alone, as its state says) or an error that fails the part. */
static int act(struct job *j, const struct hold_page_row *row, const struct hold_who *who)
{
    struct store *s = j->env.store;
    bool changed = false;
    int r;

    switch (j->op) {
    case BULK_HOLD:
        if (row->state != TOKEN_PENDING && (j->pass == 0 || row->state != TOKEN_ACTIVE))
            return 0;
        r = store_hold_id(s, row->id, who, recall, j, NULL);
        if (r == -EINPROGRESS) /* left as it was; named once */
            return ids_has(&j->res.other, row->id) ? 0 : ids_add(&j->res.other, row->id);
        if (r == -ENOKEY) /* no secret: nothing could be sent */
            return 0;
        return r < 0 ? r : ids_add(&j->res.ids, row->id);
    case BULK_RELEASE:
        if (row->state != TOKEN_HELD)
            return 0;
        r = store_release_id(s, row->id, who, NULL);
        return r < 0 ? r : ids_add(&j->res.ids, row->id);
    case BULK_REVOKE:
        if (row->state != TOKEN_ACTIVE && row->state != TOKEN_HELD)
            return 0;
        /* Active: due now, requested; held: stays held, the request kept. */
        r = store_revoke_id(s, row->id, j->reason, who->now_ms, &changed);
        if (r < 0)
            return r;
        if (changed)
            return ids_add(&j->res.ids, row->id);
        return row->state == TOKEN_HELD ? ids_add(&j->res.other, row->id) : 0;
    }
    return -EINVAL;
}

/* The rows of one part, inside its transaction; *ret_end: the pass walked
 * its last row. */
static int walk_part(struct job *j, uint64_t start_ns, bool *ret_end)
{
    unsigned rows_max = j->env.part_rows ? j->env.part_rows : BULK_PART_ROWS;
    uint64_t budget = j->env.part_ns > 0 ? (uint64_t)j->env.part_ns : BULK_PART_MS * (uint64_t)1000000;
    struct hold_who who = {
        .uid = j->uid, .reason = j->op == BULK_HOLD ? j->reason : NULL, .now_ms = db_now_ms()};
    const char *subject = j->op == BULK_RELEASE && !j->subject ? NULL : j->subject;
    struct hold_page_row page[PAGE_ROWS];
    unsigned read = 0;

    *ret_end = false;
    while (read < rows_max) {
        size_t want = rows_max - read < PAGE_ROWS ? rows_max - read : PAGE_ROWS, n = 0;
        int r = store_hold_page(j->env.store, subject, j->after, page, want, &n);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n; i++) {
            if ((r = act(j, &page[i], &who)) < 0)
                return r;
            j->after = page[i].id;
            read++;
            /* At least one row a part, so that every part goes on. */
            if (uv_hrtime() - start_ns >= budget)
                return 0;
        }
        if (n < want) {
            *ret_end = true;
            return 0;
        }
    }
    return 0;
}

/* One part: its own transaction, committed; *ret_done once the op is. A
 * part that fails is rolled back, and what it had noted forgotten. */
static int part(struct job *j, bool *ret_done)
{
    uint64_t start_ns = uv_hrtime();
    size_t nids = j->res.ids.n, nother = j->res.other.n;
    bool end = false;
    int r = file_check(j);

    *ret_done = false;
    if (r == 0)
        r = store_begin(j->env.store, STORE_WRITE_NOW);
    if (r < 0)
        return r;
    r = walk_part(j, start_ns, &end);
    r = store_end(j->env.store, r);
    if (r == 0)
        r = file_check(j); /* a commit into a file no longer at the path is not acknowledged */
    j->unkicked |= r == 0 && j->res.ids.n > nids;
    if (r < 0) {
        j->res.ids.n = nids;
        j->res.other.n = nother;
        kick(j, true); /* after a rollback the engine reads what was recalled again */
        return r;
    }
    j->res.parts++;
    int64_t took = (int64_t)(uv_hrtime() - start_ns);
    if (took > j->res.longest_ns)
        j->res.longest_ns = took;
    if (end && j->op == BULK_HOLD && j->pass == 0) {
        j->pass = 1;
        j->after = 0;
        j->pass1_from = j->res.ids.n;
    } else if (end) {
        if (j->op == BULK_HOLD)
            forget_held(j);
        *ret_done = true;
    }
    kick(j, *ret_done);
    return 0;
}

static void job_init(struct job *j, const struct bulk_env *env, const struct bulk_request *req)
{
    *j = (struct job){
        .env = *env,
        .op = req->op,
        .subject = req->subject,
        .reason = req->reason,
        .uid = req->uid,
    };
}

void bulk_result_free(struct bulk_result *res)
{
    if (!res)
        return;
    free(res->ids.v);
    free(res->other.v);
    memset(res, 0, sizeof(*res));
}

int bulk_run(const struct bulk_env *env, const struct bulk_request *req, struct bulk_result *ret)
{
    struct job j;
    bool done = false;
    int r = 0;

    if (!req->subject && req->op != BULK_RELEASE)
        return -EINVAL;
    job_init(&j, env, req);
    while (r == 0 && !done)
        r = part(&j, &done);
    *ret = j.res;
    return r;
}

static void finish(struct job *j, int err)
{
    j->done(j->ud, err, &j->res);
    bulk_result_free(&j->res);
    free(j->copies);
    free(j);
}

static void on_idle(uv_idle_t *h)
{
    struct bulk *b = container_of(h, struct bulk, idle);
    struct job *j = b->head;
    bool done = false;
    int r = part(j, &done);

    if (r == 0 && !done)
        return;
    b->head = j->next;
    if (!b->head) {
        b->tail = &b->head;
        uv_idle_stop(h);
    }
    finish(j, r); /* may start another op */
}

int bulk_new(uv_loop_t *loop, struct bulk **ret)
{
    struct bulk *b = calloc(1, sizeof(*b));

    if (!b)
        return -ENOMEM;
    int r = uv_idle_init(loop, &b->idle);
    if (r < 0) {
        free(b);
        return r;
    }
    b->tail = &b->head;
    *ret = b;
    return 0;
}

int bulk_start(struct bulk *b, const struct bulk_env *env, const struct bulk_request *req, bulk_done_fn *done,
               void *ud)
{
    size_t ls = req->subject ? strlen(req->subject) + 1 : 0, lr = req->reason ? strlen(req->reason) + 1 : 0;

    if (b->closing)
        return -ECANCELED;
    if (!req->subject && req->op != BULK_RELEASE)
        return -EINVAL;
    struct job *j = malloc(sizeof(*j));
    char *copies = malloc(ls + lr + 1);
    if (!j || !copies) {
        free(j);
        free(copies);
        return -ENOMEM;
    }
    job_init(j, env, req);
    if (req->subject)
        j->subject = memcpy(copies, req->subject, ls);
    if (req->reason)
        j->reason = memcpy(copies + ls, req->reason, lr);
    j->copies = copies;
    j->done = done;
    j->ud = ud;
    int r = b->head ? 0 : uv_idle_start(&b->idle, on_idle);
    if (r < 0) {
        free(copies);
        free(j);
        return r;
    }
    *b->tail = j;
    b->tail = &j->next;
    return 0;
}

/* Appends ",\"key\":[id,...]" to buf at *at (room for it was counted). */
static void put_ids(char *buf, size_t room, size_t *at, const char *key, const struct bulk_ids *l)
{
    size_t n = *at;

    n += (size_t)snprintf(buf + n, room - n, ",\"%s\":[", key);
    for (size_t i = 0; i < l->n; i++) {
        char digits[24];
        size_t k = 0;
        for (uint64_t v = (uint64_t)l->v[i]; k == 0 || v > 0; v /= 10)
            digits[k++] = (char)('0' + v % 10);
        if (i > 0)
            buf[n++] = ',';
        while (k > 0)
            buf[n++] = digits[--k];
    }
    buf[n++] = ']';
    *at = n;
}

/* The reply, retry's shape: {"ok":true,"count":N,"ids":[...]}; a hold's
 * "in_flight" (those it could not recall), a revoke's "held" (kept for
 * their release),
 * each when not empty. Written out rather than built with jansson: a
 * million ids as JSON values take some 200 ms on the loop. */
char *bulk_reply_text(enum bulk_op op, const struct bulk_result *res)
{
    /* Ids are positive int64: at most 19 digits and a comma each. */
    size_t room = 96 + 20 * (res->ids.n + res->other.n), at = 0;
    char *buf = malloc(room);

    if (!buf)
        return NULL;
    at = (size_t)snprintf(buf, room, "{\"ok\":true,\"count\":%zu", res->ids.n);
    put_ids(buf, room, &at, "ids", &res->ids);
    if (res->other.n > 0)
        put_ids(buf, room, &at, op == BULK_HOLD ? "in_flight" : "held", &res->other);
    buf[at++] = '}';
    buf[at] = '\0';
    return buf;
}

static void on_closed(uv_handle_t *h)
{
    free(container_of((uv_idle_t *)h, struct bulk, idle));
}

void bulk_close(struct bulk *b)
{
    if (!b)
        return;
    b->closing = true;
    uv_idle_stop(&b->idle);
    while (b->head) {
        struct job *j = b->head;
        b->head = j->next;
        finish(j, -ECANCELED);
    }
    b->tail = &b->head;
    uv_close((uv_handle_t *)&b->idle, on_closed);
}

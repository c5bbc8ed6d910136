/* pages: bounded transactions and fetches of pages.h. */
#include "pages.h"

#include <uv.h>

enum {
    PAGE_ROWS = 512,         /* due rows promoted or new rows hashed per transaction, at most */
    PAGE_STEP = 16,          /* rows between two looks at the clock */
    PAGE_BUDGET_US = 2000,   /* a promotion transaction stops growing after this */
    HASH_BUDGET_US = 4000,   /* a hashing transaction stops growing after this */
    FETCH_PAGE = 256,        /* pending rows read per query */
};

struct page {
    struct store *store;
    int64_t now_ms;
    enum store_write kind;
};

static int promote_step(const struct page *p, unsigned *ret_count)
{
    return store_promote_due(p->store, p->now_ms, PAGE_STEP, ret_count);
}

static int promote_flagged_step(const struct page *p, unsigned *ret_count)
{
    return store_promote_flagged(p->store, p->now_ms, PAGE_STEP, ret_count);
}

static int hash_step(const struct page *p, unsigned *ret_count)
{
    return store_hash_new(p->store, PAGE_STEP, ret_count);
}

/* One transaction of steps (promote due rows, or hash new ones), bounded by
 * PAGE_ROWS rows and by time: a row costs up to tens of microseconds (index
 * pages at random places in a large table), and the loop must answer the
 * socket within milliseconds. */
static int run_page(const struct page *p, int (*step_fn)(const struct page *, unsigned *),
                    unsigned budget_us, unsigned *ret_count, bool *ret_more)
{
    uint64_t start = uv_hrtime();
    unsigned count = 0, step;
    bool more = false;
    int rc;

    rc = store_begin(p->store, p->kind);
    if (rc < 0)
        return rc;
    for (;;) {
        step = 0;
        rc = step_fn(p, &step);
        if (rc < 0)
            break;
        count += step;
        if (step < PAGE_STEP)
            break; /* nothing more is waiting */
        if (count >= PAGE_ROWS || uv_hrtime() - start >= budget_us * 1000ull) {
            more = true;
            break;
        }
    }
    rc = store_end(p->store, rc);
    if (rc < 0)
        return rc;
    *ret_count = count;
    *ret_more = more;
    return 0;
}

int pages_promote(struct store *s, int64_t now_ms, unsigned *ret_count, bool *ret_more)
{
    const struct page p = {.store = s, .now_ms = now_ms, .kind = STORE_WRITE_CAN_WAIT};

    return run_page(&p, promote_step, PAGE_BUDGET_US, ret_count, ret_more);
}

int pages_promote_flagged(struct store *s, int64_t now_ms, unsigned *ret_count, bool *ret_more)
{
    const struct page p = {.store = s, .now_ms = now_ms, .kind = STORE_WRITE_URGENT};

    return run_page(&p, promote_flagged_step, PAGE_BUDGET_US, ret_count, ret_more);
}

int pages_hash(struct store *s, unsigned *ret_count, bool *ret_more)
{
    const struct page p = {.store = s, .kind = STORE_WRITE_CAN_WAIT};

    return run_page(&p, hash_step, HASH_BUDGET_US, ret_count, ret_more);
}

struct fetch_ctx {
    const struct idset *held;
    int64_t now;
    bool routine; /* skip urgent rows: the urgent lane's own reads take them */
    unsigned seen, added;
    unsigned want;   /* stop after adding this many; 0: no limit */
    int64_t last_id; /* of the last row seen */
    int err;
    int (*take)(void *ud, const struct pending_row *row);
    void *ud;
};

static int on_pending_row(void *ud, const struct pending_row *row)
{
    struct fetch_ctx *f = ud;
    int rc;

    f->seen++;
    f->last_id = row->id;
    /* Id 0 cannot be held (the set's empty slot): such a row was always
     * skipped, as if held. */
    if (!row->token || row->next_attempt_at > f->now || row->id == 0 || (f->routine && row->urgent) ||
        idset_has(f->held, row->id))
        return 0;
    rc = f->take(f->ud, row);
    if (rc < 0) {
        f->err = rc;
        return 1;
    }
    f->added++;
    return f->want && f->added >= f->want;
}

/* A backlog in id order: up to FETCH_PAGE due rows after the cursor, which
 * wraps at the end. *ret_dense false: due rows are sparse among the pending
 * ones (retries waiting for later), the retry-time index finds them faster. */
static int fetch_backlog(struct pages_cursor *c, struct store *s, struct fetch_ctx *f, bool *ret_dense)
{
    unsigned limit = FETCH_PAGE + (unsigned)f->held->len;
    int rc;

    f->want = FETCH_PAGE;
    rc = (c->urgent ? store_fetch_urgent_from : store_fetch_from)(s, c->after_id, limit, on_pending_row, f);
    if (rc < 0)
        return rc;
    if (f->err < 0)
        return f->err;
    c->after_id = f->added < f->want && f->seen < limit ? 0 : f->last_id;
    *ret_dense = f->added >= FETCH_PAGE / 4;
    return 0;
}

/* In retry-time order, asking for FETCH_PAGE more than we hold: a short
 * answer proves that nothing else is due; a full one means a backlog, read
 * in id order from then on: neighbours share table pages and commits. */
int pages_fetch(struct pages_cursor *c, struct store *s, const struct idset *held, int64_t now_ms,
                int (*take)(void *ud, const struct pending_row *row), void *ud, bool *ret_all)
{
    const struct fetch_ctx start = {
        .held = held, .now = now_ms, .routine = !c->urgent, .take = take, .ud = ud};
    struct fetch_ctx f = start;
    unsigned limit;
    bool dense = false;
    int rc;

    if (c->backlog) {
        rc = fetch_backlog(c, s, &f, &dense);
        if (rc < 0)
            return rc;
        if (dense) {
            *ret_all = false;
            return 0;
        }
        c->backlog = false;
    }
    f = start;
    limit = FETCH_PAGE + (unsigned)held->len;
    rc = (c->urgent ? store_fetch_urgent : store_fetch_due)(s, now_ms, limit, on_pending_row, &f);
    if (rc < 0)
        return rc;
    if (f.err < 0)
        return f.err;
    *ret_all = f.seen < limit;
    if (!*ret_all)
        c->backlog = true;
    return 0;
}

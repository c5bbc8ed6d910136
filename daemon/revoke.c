/* revoke: the engine (see header for the pipeline).
 *
 * Work is done in bounded steps so the loop never blocks for long: an idle
 * handle runs one step per loop iteration (promote a page of due rows,
 * refill the queue, dispatch, hash a page of new rows) while there is more
 * to do, and stops itself
 * when there is not; then the due timer waits for the next event. Outcomes
 * are committed in groups from a check handle (after each poll phase) or a
 * short timer, never one transaction per request. */
#include "revoke.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "checkpoint.h"
#include "http.h"
#include "idset.h"
#include "log.h"
#include "outcome.h"
#include "policy.h"
#include "secret.h"
#include "tokens.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

enum {
    PAGE_ROWS = 512,         /* due rows promoted or new rows hashed per transaction, at most */
    PAGE_STEP = 16,          /* rows between two looks at the clock */
    PAGE_BUDGET_US = 2000,   /* a promotion transaction stops growing after this */
    FETCH_PAGE = 256,        /* pending rows read per query */
    BATCH_MAX = 128,         /* outcomes per commit */
    FLUSH_DELAY_MS = 5,      /* a small batch waits at most this long */
    DB_RETRY_MS = 250,       /* after a busy or failed transaction */
    RESCAN_MS = 30000,       /* the due timer never waits longer: safety rescan */
    SUMMARY_MS = 60000,      /* outcome summary line */
    FLAG_RECHECK_MS = 5,     /* a flag seen while arming the due timer */
    SCRUB_DELAY_MS = 1000,   /* WAL checkpoint after secrets were cleared: at most once a second */
    HASH_DELAY_MS = 1000,    /* new rows are hashed this long after a write is seen: in larger
                              * transactions, which share the hash index's interior pages */
    HASH_BUDGET_US = 4000,   /* a hashing transaction stops growing after this */
    TURN_BUDGET_US = 2000,   /* database work in one loop turn stops growing after this: a
                              * client's ping waits for at most a step or two */
};

struct job {
    struct http_request req;
    struct revoke *owner;
    struct job *next;
    int64_t id;
    char *token;
    size_t token_len;
    char fingerprint[SECRET_FP_LEN + 1];
    unsigned attempts;
    struct outcome_result out;
};

struct revoke {
    uv_loop_t *loop;
    struct db *db;
    struct tokens *tokens;
    struct audit *audit;
    struct http *http;
    struct checkpoint *ckpt;
    struct config cfg;
    struct health health;
    struct rng rng;

    uv_idle_t work;
    uv_timer_t due_timer;
    uv_timer_t gate_timer;
    uv_timer_t flush_timer;
    uv_timer_t db_timer;
    uv_timer_t summary_timer;
    uv_timer_t scrub_timer;
    uv_timer_t hash_timer;
    uv_check_t flush_check;
    unsigned open_handles;

    struct job *queue_head, *queue_tail;
    unsigned queued, in_flight;
    struct job *batch_head, *batch_tail;
    unsigned uncommitted;
    struct idset known; /* the ids held: queued, in flight, uncommitted */

    int64_t fetched_at_ms; /* wall time of the last fetch of pending rows */
    int64_t cursor;        /* in a backlog, pending rows are read in id order after this id */
    bool backlog;          /* the last fetch found more due rows than a page */
    uint64_t turn_db_ns;   /* database work done since the loop last polled */
    bool scan_due;        /* active rows may be due: promote */
    bool hash_due;        /* rows may have been written: hash them */
    bool fetch_due;       /* pending rows may be due and not held */
    bool db_blocked;      /* waiting for db_timer after a database error */
    bool stopping;
    void (*stop_cb)(void *);
    void *stop_data;

    struct health_rate rate;

    int64_t (*clock)(void *);
    void *clock_data;
    void (*change_cb)(void *);
    void *change_data;

    struct revoke_stats stats;
    uint64_t summary_base[5];
};

static void on_work(uv_idle_t *h);
static void on_gate_timer(uv_timer_t *h);
static void on_flush_timer(uv_timer_t *h);
static void on_db_timer(uv_timer_t *h);
static void on_due_timer(uv_timer_t *h);
static void on_summary_timer(uv_timer_t *h);
static void on_scrub_timer(uv_timer_t *h);
static void on_hash_timer(uv_timer_t *h);
static void on_checkpoint(void *data, int err, const char *msg);

/* ---- helpers ---- */

static int64_t wall_ms(struct revoke *r)
{
    return r->clock ? r->clock(r->clock_data) : db_now_ms();
}

static void changed(struct revoke *r)
{
    if (r->change_cb)
        r->change_cb(r->change_data);
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    if (j->token) {
        secret_wipe(j->token, j->token_len);
        free(j->token);
    }
    free(j);
}

static void schedule_work(struct revoke *r)
{
    if (!r->stopping && !r->db_blocked)
        uv_idle_start(&r->work, on_work);
}


/* A database step failed: keep everything in memory and try again later. */
static void db_trouble(struct revoke *r, const char *what, int rc)
{
    r->stats.db_errors++;
    snprintf(r->stats.db_error, sizeof(r->stats.db_error), "%s: %s", what, db_errmsg(r->db));
    log_err("database: %s failed (%s): %s; retrying in %d ms", what, strerror(-rc), db_errmsg(r->db),
            DB_RETRY_MS);
    if (!r->db_blocked) {
        r->db_blocked = true;
        uv_idle_stop(&r->work);
        uv_timer_start(&r->db_timer, on_db_timer, DB_RETRY_MS, 0);
    }
    changed(r);
}

/* ---- promote and fetch ---- */

static int promote_step(struct revoke *r, int64_t now, unsigned *ret_count)
{
    return tokens_promote_due(r->tokens, r->audit, now, PAGE_STEP, ret_count);
}

static int hash_step(struct revoke *r, int64_t now, unsigned *ret_count)
{
    (void)now;
    return tokens_hash_new(r->tokens, PAGE_STEP, ret_count);
}

/* One transaction of steps (promote due rows, or hash new ones), bounded by
 * PAGE_ROWS rows and by time: a row costs up to tens of microseconds (index
 * pages at random places in a large table), and the loop must answer the
 * socket within milliseconds. *ret_more: the page was cut short, more rows
 * may be waiting. */
static int run_page(struct revoke *r, int (*step_fn)(struct revoke *, int64_t, unsigned *),
                    unsigned budget_us, unsigned *ret_count, bool *ret_more)
{
    uint64_t start = uv_hrtime();
    int64_t now = wall_ms(r);
    unsigned count = 0, step;
    bool more = false;
    int rc;

    rc = db_begin(r->db);
    if (rc < 0)
        return rc;
    for (;;) {
        step = 0;
        rc = step_fn(r, now, &step);
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
    if (rc == 0)
        rc = db_commit(r->db);
    if (rc < 0) {
        db_rollback(r->db);
        audit_forget(r->audit);
        return rc;
    }
    *ret_count = count;
    *ret_more = more;
    return 0;
}

struct fetch_ctx {
    struct revoke *r;
    int64_t now;
    unsigned seen, added;
    unsigned want;   /* stop after adding this many; 0: no limit */
    int64_t last_id; /* of the last row seen */
    int err;
};

static int on_pending_row(void *ud, const struct pending_row *row)
{
    struct fetch_ctx *f = ud;
    struct revoke *r = f->r;
    struct job *j;

    f->seen++;
    f->last_id = row->id;
    /* Id 0 cannot be held (the set's empty slot): such a row was always
     * skipped, as if held. */
    if (!row->token || row->next_attempt_at > f->now || row->id == 0 || idset_has(&r->known, row->id))
        return 0;
    j = calloc(1, sizeof(*j));
    if (j)
        j->token = malloc(row->token_len + 1);
    if (!j || !j->token || idset_add(&r->known, row->id) < 0) {
        job_free(j);
        f->err = -ENOMEM;
        return 1;
    }
    memcpy(j->token, row->token, row->token_len);
    j->token[row->token_len] = '\0';
    j->token_len = row->token_len;
    j->owner = r;
    j->id = row->id;
    j->attempts = row->attempts;
    snprintf(j->fingerprint, sizeof(j->fingerprint), "%s", row->fingerprint ? row->fingerprint : "");
    if (r->queue_tail)
        r->queue_tail->next = j;
    else
        r->queue_head = j;
    r->queue_tail = j;
    r->queued++;
    f->added++;
    return f->want && f->added >= f->want;
}

/* A backlog in id order: up to FETCH_PAGE due rows after the cursor, which
 * wraps at the end. *ret_dense false: due rows are sparse among the pending
 * ones (retries waiting for later), the retry-time index finds them faster. */
static int fetch_backlog(struct revoke *r, struct fetch_ctx *f, bool *ret_dense)
{
    unsigned limit = FETCH_PAGE + (unsigned)r->known.len;
    int rc;

    f->want = FETCH_PAGE;
    rc = tokens_fetch_from(r->tokens, r->cursor, limit, on_pending_row, f);
    if (rc < 0)
        return rc;
    if (f->err < 0)
        return f->err;
    r->cursor = f->added < f->want && f->seen < limit ? 0 : f->last_id;
    *ret_dense = f->added >= FETCH_PAGE / 4;
    return 0;
}

/* Read due pending rows into the queue, skipping those we hold already, in
 * retry-time order. Asking for FETCH_PAGE more than we hold means a short
 * answer proves that nothing else is due; a full one means a backlog, read
 * in id order from then on: neighbours share table pages and commits. */
static int fetch_page(struct revoke *r)
{
    struct fetch_ctx f = {.r = r, .now = wall_ms(r)};
    unsigned limit;
    bool dense = false;
    int rc;

    r->fetched_at_ms = f.now;
    if (r->backlog) {
        rc = fetch_backlog(r, &f, &dense);
        if (rc < 0 || dense)
            return rc;
        r->backlog = false;
    }
    f = (struct fetch_ctx){.r = r, .now = f.now};
    limit = FETCH_PAGE + (unsigned)r->known.len;
    rc = tokens_fetch_due(r->tokens, f.now, limit, on_pending_row, &f);
    if (rc < 0)
        return rc;
    if (f.err < 0)
        return f.err;
    if (f.seen < limit)
        r->fetch_due = false;
    else
        r->backlog = true;
    return 0;
}

/* ---- the outcome batch ---- */

static void batch_add(struct revoke *r, struct job *j)
{
    secret_wipe(j->token, j->token_len);
    if (r->batch_tail)
        r->batch_tail->next = j;
    else
        r->batch_head = j;
    r->batch_tail = j;
    r->uncommitted++;
}

static struct outcome_job outcome_job_of(const struct job *j)
{
    return (struct outcome_job){
        .id = j->id,
        .fingerprint = j->fingerprint,
        .token = j->token,
        .token_len = j->token_len,
        .attempts = j->attempts,
    };
}

/* http_submit refused the token (it cannot go into a header): never sent. */
static void reject_unsendable(struct revoke *r, struct job *j)
{
    struct outcome_job oj = outcome_job_of(j);

    outcome_of_unsendable(&oj, wall_ms(r), &j->out);
    log_token(LOG_WARNING, j->id, j->fingerprint, audit_event_name(j->out.rec.event), 0,
              "token %" PRId64 " (%s): rejected: %s", j->id, j->fingerprint, j->out.detail);
    batch_add(r, j);
    if (!uv_is_active((uv_handle_t *)&r->flush_timer))
        uv_timer_start(&r->flush_timer, on_flush_timer, FLUSH_DELAY_MS, 0);
}

/* ---- dispatch ---- */

static void on_http_done(struct http_request *req, const struct http_result *res);

static unsigned uncommitted_cap(const struct revoke *r)
{
    return 4 * r->cfg.concurrency + 1024;
}

static void dispatch(struct revoke *r)
{
    while (r->queue_head && !r->stopping && r->in_flight < r->cfg.concurrency &&
           r->uncommitted < uncommitted_cap(r)) {
        uint64_t now = uv_now(r->loop), wake = UINT64_MAX, wait_ms;
        unsigned want = r->cfg.concurrency - r->in_flight;
        struct job *j;
        int rc;

        if (want > r->queued)
            want = r->queued;
        if (health_allowance(&r->health, now, r->in_flight, want, &wake) == 0) {
            if (wake != UINT64_MAX)
                uv_timer_start(&r->gate_timer, on_gate_timer, wake > now ? wake - now : 0, 0);
            return;
        }
        if (!health_rate_allows(&r->rate, r->cfg.rate_limit, uv_hrtime(), &wait_ms)) {
            uv_timer_start(&r->gate_timer, on_gate_timer, wait_ms, 0);
            return;
        }
        j = r->queue_head;
        j->req.token = j->token;
        j->req.token_len = j->token_len;
        j->req.done = on_http_done;
        rc = http_submit(r->http, &j->req);
        if (rc < 0 && rc != -EINVAL) {
            log_err("cannot start a request for token %" PRId64 ": %s; retrying in %d ms", j->id,
                    strerror(-rc), DB_RETRY_MS);
            uv_timer_start(&r->gate_timer, on_gate_timer, DB_RETRY_MS, 0);
            return;
        }
        r->queue_head = j->next;
        if (!r->queue_head)
            r->queue_tail = NULL;
        j->next = NULL;
        r->queued--;
        if (rc == -EINVAL) {
            reject_unsendable(r, j);
            continue;
        }
        r->in_flight++;
        r->stats.sent++;
        health_rate_take(&r->rate, r->cfg.rate_limit);
        health_on_send(&r->health);
    }
}

/* ---- outcomes ---- */

static void log_health_change(struct revoke *r, uint64_t now)
{
    const char *what = health_describe(&r->health, now);

    if (r->health.state == HEALTH_DOWN)
        log_warning("logout endpoint is down after %u failures in a row (%s); probing once per backoff "
                    "interval, no token is failed meanwhile",
                    r->cfg.down_after, r->health.last_error);
    else if (r->health.misconfigured)
        log_warning("logout endpoint looks misconfigured (%s): check logout.url; no token is failed",
                    r->health.last_error);
    else
        log_notice("logout endpoint is %s again", what);
}

static void count_outcome(struct revoke *r, const struct outcome_record *rec)
{
    switch (rec->event) {
    case AUDIT_REVOKED: r->stats.revoked++; break;
    case AUDIT_ALREADY_INVALID: r->stats.already_invalid++; break;
    case AUDIT_REJECTED: r->stats.rejected++; break;
    case AUDIT_GAVE_UP: r->stats.gave_up++; break;
    default: r->stats.retried++; break;
    }
}

static void log_outcome(const struct job *j)
{
    const struct outcome_record *rec = &j->out.rec;
    const char *event = audit_event_name(rec->event);
    int level = LOG_DEBUG;

    if (rec->event == AUDIT_REJECTED || rec->event == AUDIT_GAVE_UP)
        level = LOG_WARNING;
    else if (j->out.class == OUTCOME_TOKEN_RETRY)
        level = LOG_INFO;
    log_token(level, j->id, j->fingerprint, event, rec->http_status, "token %" PRId64 " (%s): %s: %s", j->id,
              j->fingerprint, event, j->out.detail);
}

static void on_http_done(struct http_request *req, const struct http_result *res)
{
    struct job *j = container_of(req, struct job, req);
    struct revoke *r = j->owner;
    uint64_t now = uv_now(r->loop);
    struct outcome_job oj = outcome_job_of(j);
    struct outcome_settings os = {
        .max_attempts = r->cfg.max_attempts,
        .retry_base_ms = r->cfg.retry_base_ms,
        .retry_max_delay_ms = r->cfg.retry_max_delay_ms,
        .retry_after_max_ms = r->cfg.retry_after_max_ms,
        .keep_secrets = r->cfg.keep_secrets,
    };

    r->in_flight--;
    /* A transfer cut short by our own shutdown says nothing about the token. */
    if (res->curl_code == CURLE_ABORTED_BY_CALLBACK) {
        idset_del(&r->known, j->id);
        job_free(j);
        goto out;
    }
    outcome_of_answer(&oj, res, &os, wall_ms(r), rng_next(&r->rng), &j->out);
    if (health_on_result(&r->health, now, j->out.class, j->out.retry_after_ms, rng_next(&r->rng), j->out.detail))
        log_health_change(r, now);
    log_outcome(j);
    batch_add(r, j);
out:
    if (r->stopping) {
        if (r->in_flight == 0)
            uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
        return;
    }
    dispatch(r);
    if (r->queued < r->cfg.concurrency)
        schedule_work(r);
    changed(r);
}

static void finish_stop(struct revoke *r);

/* Commit every outcome waiting in the batch in one transaction. */
static void flush(struct revoke *r)
{
    struct job *j, *next;
    uint64_t start;
    unsigned n = 0;
    bool scrub = false;
    int rc;

    if (!r->batch_head || r->db_blocked || checkpoint_copying(r->ckpt))
        return;
    start = uv_hrtime();
    rc = db_begin(r->db);
    for (j = r->batch_head; rc == 0 && j && n < BATCH_MAX; j = j->next, n++) {
        rc = tokens_record_outcome(r->tokens, r->audit, &j->out.rec);
        if (rc == -ESTALE) {
            log_notice("token %" PRId64 " (%s) changed state behind revokerd's back; outcome %s not recorded",
                       j->id, j->fingerprint, audit_event_name(j->out.rec.event));
            rc = 0;
        }
    }
    if (rc == 0)
        rc = db_commit(r->db);
    if (rc < 0) {
        db_rollback(r->db);
        audit_forget(r->audit);
        db_trouble(r, "recording outcomes", rc);
        return;
    }
    r->stats.db_error[0] = '\0';
    for (j = r->batch_head; n > 0; j = next, n--) {
        next = j->next;
        count_outcome(r, &j->out.rec);
        if (j->out.rec.state == TOKEN_PENDING)
            r->fetch_due = true;
        scrub |= j->out.rec.drop_secret;
        idset_del(&r->known, j->id);
        r->uncommitted--;
        job_free(j);
        r->batch_head = next;
    }
    if (!r->batch_head)
        r->batch_tail = NULL;
    if (!uv_is_active((uv_handle_t *)&r->summary_timer))
        uv_timer_start(&r->summary_timer, on_summary_timer, SUMMARY_MS, 0);
    if (scrub && !uv_is_active((uv_handle_t *)&r->scrub_timer))
        uv_timer_start(&r->scrub_timer, on_scrub_timer, SCRUB_DELAY_MS, 0);
    schedule_work(r);
    changed(r);
    r->turn_db_ns += uv_hrtime() - start;
}

/* The loop has spent its turn's share on database work: leave the rest to
 * the next turn, after the loop has looked at its sockets (a client's ping,
 * curl's responses). Counted as work done, not time since the poll, so an
 * embedder that sleeps between turns does not starve the engine. */
static bool turn_spent(const struct revoke *r)
{
    return r->turn_db_ns >= TURN_BUDGET_US * 1000ull;
}

static void on_flush_check(uv_check_t *h)
{
    struct revoke *r = container_of(h, struct revoke, flush_check);

    r->turn_db_ns = 0;
    if (r->uncommitted >= BATCH_MAX)
        flush(r);
    else if (r->uncommitted && !uv_is_active((uv_handle_t *)&r->flush_timer))
        uv_timer_start(&r->flush_timer, on_flush_timer, FLUSH_DELAY_MS, 0);
}

static void on_flush_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, flush_timer);

    /* One batch per call, the next after the loop looked at its sockets: a
     * backlog never blocks it long. Not 0 ms: libuv 1.44 runs a timer that
     * restarts itself with 0 again in the same pass, before any poll. */
    if (r->batch_head && !r->db_blocked && turn_spent(r)) {
        uv_timer_start(h, on_flush_timer, 1, 0);
        return;
    }
    if (r->batch_head && !r->db_blocked) {
        unsigned before = r->uncommitted;
        flush(r);
        if (r->batch_head && r->uncommitted != before) {
            uv_timer_start(h, on_flush_timer, 1, 0);
            return;
        }
    }
    if (r->stopping && r->in_flight == 0 && (!r->batch_head || r->db_blocked))
        finish_stop(r);
}

/* ---- the work step and timers ---- */

static void arm_due_timer(struct revoke *r)
{
    struct next_events next;
    int64_t now = wall_ms(r), target;
    int rc;

    /* Retries that came due since the last fetch were neither fetched nor
     * are they "after now": look from the fetch's time (they give 0 ms). */
    rc = tokens_next_events(r->tokens, r->fetched_at_ms < now ? r->fetched_at_ms : now, &next);
    if (rc < 0) {
        db_trouble(r, "looking for the next due token", rc);
        return;
    }
    if (next.flagged) {
        /* Flagged since the last promotion: look again shortly (a timer,
         * not the idle handle, so a row that cannot be promoted never
         * spins the loop). */
        uv_timer_start(&r->due_timer, on_due_timer, FLAG_RECHECK_MS, 0);
        return;
    }
    /* With a fetch deferred (the queue is full), retries are fetched when
     * the queue drains; the timer is for expiries only then, or a retry
     * that is due already would fire it at once, again and again. */
    target = next.expiry_ms;
    if (!r->fetch_due && next.retry_ms < target)
        target = next.retry_ms;
    uv_timer_start(&r->due_timer, on_due_timer, policy_timer_delay_ms(target, now, RESCAN_MS), 0);
}

/* One step of each: promote a page, fetch a page, dispatch, hash a page. */
static void work_step(struct revoke *r, uv_idle_t *h)
{
    bool more = false;
    unsigned count;
    int rc;

    if (r->scan_due && !checkpoint_copying(r->ckpt)) {
        rc = run_page(r, promote_step, PAGE_BUDGET_US, &count, &more);
        if (rc < 0) {
            db_trouble(r, "marking due tokens", rc);
            return;
        }
        if (count > 0) {
            r->fetch_due = true;
            changed(r);
        }
        if (!more)
            r->scan_due = false;
    }
    if (r->fetch_due && r->queued < 2 * r->cfg.concurrency) {
        rc = fetch_page(r);
        if (rc < 0) {
            db_trouble(r, "reading due tokens", rc);
            return;
        }
    }
    dispatch(r);
    /* Last: nothing waits for it but a later lookup, which also finds a
     * row that is not hashed yet. */
    if (r->hash_due && !more && !checkpoint_copying(r->ckpt)) {
        bool left = false;
        rc = run_page(r, hash_step, HASH_BUDGET_US, &count, &left);
        if (rc < 0) {
            db_trouble(r, "hashing new tokens", rc);
            return;
        }
        r->stats.hashed += count;
        r->hash_due = left;
        more = left;
    }
    if (more || (r->fetch_due && r->queued < 2 * r->cfg.concurrency && r->in_flight < r->cfg.concurrency))
        return;
    uv_idle_stop(h);
    /* Also while a fetch waits for room in the queue (a long queue held
     * back by a down endpoint): tokens that expire meanwhile must still be
     * marked due on time. */
    if (!r->scan_due)
        arm_due_timer(r);
}

static void on_work(uv_idle_t *h)
{
    struct revoke *r = container_of(h, struct revoke, work);
    uint64_t start;

    if (r->stopping || r->db_blocked) {
        uv_idle_stop(h);
        return;
    }
    if (turn_spent(r))
        return; /* the idle handle runs again after the next poll */
    start = uv_hrtime();
    work_step(r, h);
    r->turn_db_ns += uv_hrtime() - start;
}

static void on_due_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, due_timer);

    r->scan_due = true;
    r->fetch_due = true;
    schedule_work(r);
}

static void on_gate_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, gate_timer);

    dispatch(r);
    if (r->queued < r->cfg.concurrency)
        schedule_work(r);
}

static void on_db_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, db_timer);

    r->db_blocked = false;
    r->scan_due = true;
    r->hash_due = true;
    r->fetch_due = true;
    if (r->batch_head)
        uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
    schedule_work(r);
}

static void on_summary_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, summary_timer);
    uint64_t now[5] = {r->stats.revoked, r->stats.already_invalid, r->stats.rejected, r->stats.gave_up,
                       r->stats.retried};
    uint64_t d[5];

    for (int i = 0; i < 5; i++) {
        d[i] = now[i] - r->summary_base[i];
        r->summary_base[i] = now[i];
    }
    if (d[0] + d[1] + d[2] + d[3] + d[4])
        log_notice("last %d s: %" PRIu64 " revoked, %" PRIu64 " already invalid, %" PRIu64 " rejected, %" PRIu64
                   " gave up, %" PRIu64 " retries; endpoint %s",
                   SUMMARY_MS / 1000, d[0], d[1], d[2], d[3], d[4],
                   health_describe(&r->health, uv_now(r->loop)));
}

/* The rows of revoked tokens no longer hold their secrets (secure_delete
 * zeroed the bytes in the pages), but the WAL still holds the page images
 * written before: checkpoint them into the database file and cut the WAL. */
static void on_hash_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, hash_timer);

    r->hash_due = true;
    schedule_work(r);
}

static void on_scrub_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, scrub_timer);
    checkpoint_request(r->ckpt);
}

/* After every checkpoint pass, the scrub's and the WAL size's. */
static void on_checkpoint(void *data, int err, const char *msg)
{
    struct revoke *r = data;

    /* Writes held back while step 1 copied. */
    if (r->batch_head)
        uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
    if (r->scan_due || r->hash_due)
        schedule_work(r);
    if (err == -EBUSY) {
        uv_timer_start(&r->scrub_timer, on_scrub_timer, SCRUB_DELAY_MS, 0);
    } else if (err < 0) {
        log_err("database: cannot checkpoint the WAL (%s): %s; cleared secrets may stay in it; retrying in %d s",
                strerror(-err), msg, RESCAN_MS / 1000);
        uv_timer_start(&r->scrub_timer, on_scrub_timer, RESCAN_MS, 0);
    }
}

static struct http_options http_options_from(const struct config *cfg, const char *credential)
{
    return (struct http_options){
        .url = cfg->url,
        .timeout_ms = cfg->timeout_ms,
        .ca_file = cfg->ca_file,
        .extra_header = credential,
        .max_connections = cfg->concurrency,
    };
}

/* ---- lifecycle ---- */

static void closed(void *revoke)
{
    struct revoke *r = revoke;
    void (*cb)(void *) = r->stop_cb;
    void *data = r->stop_data;

    if (--r->open_handles > 0)
        return;
    tokens_close(r->tokens);
    audit_close(r->audit);
    config_free(&r->cfg);
    idset_free(&r->known);
    free(r);
    if (cb)
        cb(data);
}

static void on_handle_closed(uv_handle_t *h)
{
    closed(h->data);
}

static void on_http_closed(void *data)
{
    struct revoke *r = data;
    uv_handle_t *handles[] = {
        (uv_handle_t *)&r->work,        (uv_handle_t *)&r->due_timer,    (uv_handle_t *)&r->gate_timer,
        (uv_handle_t *)&r->flush_timer, (uv_handle_t *)&r->db_timer,     (uv_handle_t *)&r->summary_timer,
        (uv_handle_t *)&r->flush_check, (uv_handle_t *)&r->scrub_timer,  (uv_handle_t *)&r->hash_timer,
    };

    r->http = NULL;
    for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++)
        uv_close(handles[i], on_handle_closed);
    checkpoint_close(r->ckpt, closed, r);
}

static void finish_stop(struct revoke *r)
{
    struct job *j;

    if (!r->http)
        return; /* already finishing */
    if (r->batch_head) {
        unsigned lost = 0;
        for (j = r->batch_head; j; j = j->next)
            lost++;
        log_err("%u outcomes could not be committed at shutdown (%s); those tokens stay pending and are "
                "attempted again at the next start",
                lost, r->stats.db_error);
    }
    while ((j = r->batch_head)) {
        r->batch_head = j->next;
        job_free(j);
    }
    r->batch_tail = NULL;
    uv_timer_stop(&r->summary_timer);
    on_summary_timer(&r->summary_timer);
    if (uv_is_active((uv_handle_t *)&r->scrub_timer)) {
        uv_timer_stop(&r->scrub_timer);
        (void)db_checkpoint(r->db); /* busy: the last connection's close does it */
    }
    http_close(r->http, on_http_closed, r);
}

int revoke_new(uv_loop_t *loop, struct db *db, const struct config *cfg, const char *credential,
               struct revoke **ret)
{
    struct http_options ho = http_options_from(cfg, credential);
    struct revoke *r;
    int rc;

    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->db = db;
    rc = idset_init(&r->known, 1024);
    if (rc < 0)
        goto err_after_alloc;
    rc = config_copy(&r->cfg, cfg);
    if (rc < 0)
        goto err_after_alloc;
    rc = tokens_open(db, &r->tokens);
    if (rc < 0)
        goto err_after_config;
    rc = audit_open(db, &r->audit);
    if (rc < 0)
        goto err_after_tokens;
    rc = checkpoint_new(loop, db, on_checkpoint, r, &r->ckpt);
    if (rc < 0)
        goto err_after_audit;
    rc = http_new(loop, &ho, &r->http);
    if (rc < 0)
        goto err_after_checkpoint;

    health_init(&r->health, cfg->down_after, cfg->retry_base_ms, cfg->retry_max_delay_ms);
    rng_seed(&r->rng, 0);
    health_rate_init(&r->rate, uv_hrtime());
    r->stats.started_ms = uv_now(loop);
    uv_idle_init(loop, &r->work);
    uv_timer_init(loop, &r->due_timer);
    uv_timer_init(loop, &r->gate_timer);
    uv_timer_init(loop, &r->flush_timer);
    uv_timer_init(loop, &r->db_timer);
    uv_timer_init(loop, &r->summary_timer);
    uv_timer_init(loop, &r->scrub_timer);
    uv_timer_init(loop, &r->hash_timer);
    uv_check_init(loop, &r->flush_check);
    r->open_handles = 10; /* and the checkpointer */
    r->work.data = r->due_timer.data = r->gate_timer.data = r->flush_timer.data = r;
    r->db_timer.data = r->summary_timer.data = r->flush_check.data = r->scrub_timer.data = r;
    r->hash_timer.data = r;
    /* The loop lives as long as main's own handles say; ours never keep it. */
    uv_unref((uv_handle_t *)&r->flush_check);
    uv_unref((uv_handle_t *)&r->summary_timer);
    uv_unref((uv_handle_t *)&r->scrub_timer);
    uv_unref((uv_handle_t *)&r->hash_timer);
    /* A run that was killed may have left cleared secrets in the WAL. */
    uv_timer_start(&r->scrub_timer, on_scrub_timer, SCRUB_DELAY_MS, 0);
    uv_check_start(&r->flush_check, on_flush_check);
    uv_timer_start(&r->due_timer, on_due_timer, 0, 0);
    r->scan_due = r->fetch_due = r->hash_due = true;
    *ret = r;
    return 0;

err_after_checkpoint:
    checkpoint_close(r->ckpt, NULL, NULL); /* nothing running yet: freed now */
err_after_audit:
    audit_close(r->audit);
err_after_tokens:
    tokens_close(r->tokens);
err_after_config:
    config_free(&r->cfg);
err_after_alloc:
    idset_free(&r->known);
    free(r);
    return rc;
}

int revoke_configure(struct revoke *r, const struct config *cfg, const char *credential)
{
    struct http_options ho;
    struct config copy;
    int rc;

    rc = config_copy(&copy, cfg);
    if (rc < 0)
        return rc;
    ho = http_options_from(&copy, credential);
    rc = http_configure(r->http, &ho);
    if (rc < 0) {
        config_free(&copy);
        return rc;
    }
    config_free(&r->cfg);
    r->cfg = copy;
    health_configure(&r->health, copy.down_after, copy.retry_base_ms, copy.retry_max_delay_ms);
    revoke_kick(r);
    return 0;
}

void revoke_kick(struct revoke *r)
{
    r->scan_due = true;
    r->fetch_due = true;
    if (!uv_is_active((uv_handle_t *)&r->hash_timer))
        uv_timer_start(&r->hash_timer, on_hash_timer, HASH_DELAY_MS, 0);
    schedule_work(r);
}

void revoke_get_stats(struct revoke *r, struct revoke_stats *ret)
{
    *ret = r->stats;
    ret->queued = r->queued;
    ret->in_flight = r->in_flight;
    ret->uncommitted = r->uncommitted;
    ret->health = health_describe(&r->health, uv_now(r->loop));
    ret->last_error = r->health.last_error;
}

struct tokens *revoke_tokens(struct revoke *r)
{
    return r->tokens;
}

struct audit *revoke_audit(struct revoke *r)
{
    return r->audit;
}

void revoke_set_clock(struct revoke *r, int64_t (*now_ms)(void *), void *data)
{
    r->clock = now_ms;
    r->clock_data = data;
}

void revoke_on_change(struct revoke *r, void (*cb)(void *data), void *data)
{
    r->change_cb = cb;
    r->change_data = data;
}

void revoke_stop(struct revoke *r, void (*cb)(void *data), void *data)
{
    struct job *j;

    if (r->stopping)
        return;
    r->stopping = true;
    r->stop_cb = cb;
    r->stop_data = data;
    uv_idle_stop(&r->work);
    uv_timer_stop(&r->due_timer);
    uv_timer_stop(&r->gate_timer);
    /* Queued tokens were never sent: they stay pending for the next start. */
    while ((j = r->queue_head)) {
        r->queue_head = j->next;
        idset_del(&r->known, j->id);
        job_free(j);
    }
    r->queue_tail = NULL;
    r->queued = 0;
    if (r->in_flight == 0)
        uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
    else
        log_notice("stopping: waiting for %u requests in flight (at most %" PRIu64 " ms)", r->in_flight,
                   r->cfg.timeout_ms);
}

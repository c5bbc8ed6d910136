/* revoke: the engine (see header for the pipeline): scheduling, dispatch,
 * the outcome batch and the shutdown sequence.
 *
 * Work is done in bounded steps so the loop never blocks for long: an idle
 * handle runs one step per loop iteration (promote a page of due rows,
 * refill the queue, dispatch, hash a page of new rows: pages.c) while there
 * is more to do, and stops itself when there is not; then the due timer
 * waits for the next event. Outcomes (outcome.c) are committed in groups
 * from a check handle (after each poll phase) or a short timer, never one
 * transaction per request. */
#include "revoke.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dberror.h"
#include "http.h"
#include "idset.h"
#include "job.h"
#include "lanes.h"
#include "log.h"
#include "outcome.h"
#include "pages.h"
#include "policy.h"
#include "report.h"
#include "store.h"
#include "tokens.h"
#include "util.h"

enum {
    BATCH_MAX = 128,         /* outcomes per commit */
    SUBMIT_RETRY_MS = 250,   /* after curl could not start a request (out of memory) */
    FLUSH_DELAY_MS = 5,      /* a small batch waits at most this long */
    RESCAN_MS = 30000,       /* the due timer never waits longer: safety rescan */
    SUMMARY_MS = 60000,      /* outcome summary line */
    FLAG_RECHECK_MS = 5,     /* a flag seen while arming the due timer */
    SCRUB_DELAY_MS = 1000,   /* WAL checkpoint after secrets were cleared: at most once a second */
    HASH_DELAY_MS = 1000,    /* new rows are hashed this long after a write is seen: in larger
                              * transactions, which share the hash index's interior pages */
    TURN_BUDGET_US = 2000,   /* database work in one loop turn stops growing after this: a
                              * client's ping waits for at most a step or two */
};

struct revoke {
    uv_loop_t *loop;
    struct store *store;
    struct http *http;
    struct config cfg;
    struct health health;
    unsigned url_gen; /* one more at each reload that changes the URL */
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

    struct lanes queue; /* fetched, not yet sent: the urgent lane goes first */
    unsigned in_flight;
    struct job_list batch;   /* outcomes waiting for their commit */
    struct idset known; /* the ids held: queued, in flight, uncommitted */

    uint64_t turn_db_ns;   /* database work done since the loop last polled */
    bool scan_due;        /* active rows may be due: promote */
    bool flags_due;       /* rows may be flagged: promote those even while a checkpoint copies */
    bool hash_due;        /* rows may have been written: hash them */
    bool fetch_due;       /* pending rows may be due and not held */
    bool db_blocked;      /* waiting for db_timer after a database error */
    struct dberror dberr; /* the database error that persists, if any */
    bool stopping;
    void (*stop_cb)(void *);
    void *stop_data;

    struct health_rate rate;

    int64_t (*clock)(void *);
    void *clock_data;
    void (*change_cb)(void *);
    void *change_data;

    struct revoke_stats stats;
    struct report_counts counts, summary_base; /* committed outcomes: since start, at the last summary */
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

static void schedule_work(struct revoke *r)
{
    if (!r->stopping && !r->db_blocked)
        uv_idle_start(&r->work, on_work);
}

/* A database step failed: keep everything in memory and try again later. */
static void db_trouble(struct revoke *r, const char *what, int rc)
{
    uint64_t now = uv_now(r->loop), retry_ms;
    char msg[sizeof(r->dberr.msg)];

    /* Our own checkpoint's cut holds the lock (its fsync), or another
     * process's, for now: look again soon, quietly. */
    if (rc == -EBUSY && !store_may_write(r->store, STORE_WRITE_CAN_WAIT))
        retry_ms = DBERROR_BUSY_RETRY_MS;
    else if (!(rc == -EBUSY && dberror_busy(&r->dberr, now, &retry_ms))) {
        r->stats.db_errors++;
        util_format(msg, sizeof(msg), "%s (%s)", store_errmsg(r->store), strerror(-rc));
        enum dberror_say say = dberror_failed(&r->dberr, what, msg, now, &retry_ms);
        report_db_failure(&r->dberr, say, retry_ms, now);
        util_format(r->stats.db_error, sizeof(r->stats.db_error), "%s: %s", what, store_errmsg(r->store));
    }
    if (!r->db_blocked) {
        r->db_blocked = true;
        uv_idle_stop(&r->work);
        uv_timer_start(&r->db_timer, on_db_timer, retry_ms, 0);
    }
    changed(r);
}

/* Step what worked: the end of its persisting error, if it had one. wrote:
 * a write went through, which ends a lock's quiet retries (a read goes
 * through while another process holds the lock). */
static void db_fine(struct revoke *r, const char *what, bool wrote)
{
    if (wrote)
        dberror_not_busy(&r->dberr);
    if (!dberror_ok(&r->dberr, what))
        return;
    report_db_recovered(&r->dberr, uv_now(r->loop));
    dberror_clear(&r->dberr);
    r->stats.db_error[0] = '\0';
    changed(r);
}

/* ---- the outcome batch ---- */

static void batch_add(struct revoke *r, struct job *j)
{
    job_wipe_secret(j);
    job_list_push(&r->batch, j);
}

/* http_submit refused the token (it cannot go into a header): never sent. */
static void reject_unsendable(struct revoke *r, struct job *j)
{
    struct outcome_job oj = job_outcome_input(j);

    outcome_of_unsendable(&oj, wall_ms(r), &j->out);
    report_unsendable(j);
    batch_add(r, j);
    if (!uv_is_active((uv_handle_t *)&r->flush_timer))
        uv_timer_start(&r->flush_timer, on_flush_timer, FLUSH_DELAY_MS, 0);
}

/* ---- dispatch ---- */

_Static_assert(sizeof(((struct health *)0)->last_error) >= OUTCOME_WHY_MAX, "stats show a reason whole");
static void on_http_done(struct http_request *req, const struct http_result *res);

static unsigned uncommitted_cap(const struct revoke *r)
{
    return 4 * r->cfg.concurrency + 1024;
}

static void dispatch(struct revoke *r)
{
    while (lanes_head(&r->queue) && !r->stopping && r->in_flight < r->cfg.concurrency &&
           r->batch.len < uncommitted_cap(r)) {
        uint64_t now = uv_now(r->loop), wake = UINT64_MAX, wait_ms;
        unsigned want = r->cfg.concurrency - r->in_flight;
        struct job *j;
        int rc;

        if (want > lanes_len(&r->queue))
            want = lanes_len(&r->queue);
        if (health_allowance(&r->health, now, r->in_flight, want, &wake) == 0) {
            if (wake != UINT64_MAX)
                uv_timer_start(&r->gate_timer, on_gate_timer, wake > now ? wake - now : 0, 0);
            return;
        }
        if (!health_rate_allows(&r->rate, r->cfg.rate_limit, uv_hrtime(), &wait_ms)) {
            uv_timer_start(&r->gate_timer, on_gate_timer, wait_ms, 0);
            return;
        }
        j = lanes_head(&r->queue);
        j->req.token = j->token;
        j->req.token_len = j->token_len;
        j->req.done = on_http_done;
        j->url_gen = r->url_gen;
        rc = http_submit(r->http, &j->req);
        if (rc < 0 && rc != -EINVAL) {
            report_submit_failed(j, rc, SUBMIT_RETRY_MS);
            uv_timer_start(&r->gate_timer, on_gate_timer, SUBMIT_RETRY_MS, 0);
            return;
        }
        lanes_pop(&r->queue);
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

static void on_http_done(struct http_request *req, const struct http_result *res)
{
    struct job *j = container_of(req, struct job, req);
    struct revoke *r = j->owner;
    uint64_t now = uv_now(r->loop);
    struct outcome_job oj = job_outcome_input(j);
    struct outcome_settings os = {
        .max_attempts = r->cfg.max_attempts,
        .retry_base_ms = r->cfg.retry_base_ms,
        .retry_max_delay_ms = r->cfg.retry_max_delay_ms,
        .retry_after_max_ms = r->cfg.retry_after_max_ms,
        .keep_secrets = r->cfg.keep_secrets,
    };

    r->in_flight--;
    metrics_observe(&r->stats.requests, res);
    /* A transfer cut short by our own shutdown says nothing about the token. */
    if (res->curl_code == CURLE_ABORTED_BY_CALLBACK) {
        idset_del(&r->known, j->id);
        job_free(j);
        goto out;
    }
    outcome_of_answer(&oj, res, &os, wall_ms(r), rng_next(&r->rng), &j->out);
    if (j->url_gen != r->url_gen && policy_is_endpoint_level(j->out.class))
        j->out.rec.next_attempt_at = wall_ms(r); /* the old URL failed: the new one is tried at once */
    else if (health_on_result(&r->health, now, j->out.class, j->out.retry_after_ms, rng_next(&r->rng),
                              j->out.rec.last_error))
        report_health_change(&r->health, r->cfg.down_after, now);
    report_outcome(j);
    batch_add(r, j);
out:
    if (r->stopping) {
        if (r->in_flight == 0)
            uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
        return;
    }
    dispatch(r);
    if (r->queue.routine.len < r->cfg.concurrency || r->queue.urgent_due)
        schedule_work(r);
    changed(r);
}

static void finish_stop(struct revoke *r);

/* Commit every outcome waiting in the batch in one transaction. */
static void flush(struct revoke *r)
{
    struct job *j;
    uint64_t start;
    unsigned n = 0;
    bool scrub = false;
    int rc;

    if (!r->batch.head || r->db_blocked)
        return;
    if (store_writes_held(r->store)) { /* said, backed off, and no wait at a stop */
        db_trouble(r, "recording outcomes", store_writes_held(r->store));
        return;
    }
    if (!store_may_write(r->store, STORE_WRITE_CAN_WAIT))
        return;
    start = uv_hrtime();
    rc = store_begin(r->store, STORE_WRITE_CAN_WAIT);
    for (j = r->batch.head; rc == 0 && j && n < BATCH_MAX; j = j->next, n++) {
        enum token_state was = 0;

        rc = store_record_outcome(r->store, &j->out.rec, &was);
        if (rc == 0 && was)
            report_state_replaced(j, was);
        if (rc == -ESTALE) {
            report_row_gone(j);
            rc = 0;
        }
    }
    rc = store_end(r->store, rc);
    if (rc < 0) {
        db_trouble(r, "recording outcomes", rc);
        return;
    }
    db_fine(r, "recording outcomes", true);
    for (; n > 0; n--) {
        j = job_list_pop(&r->batch);
        report_count(&r->counts, j->out.rec.event);
        if (j->out.rec.state == TOKEN_PENDING)
            r->fetch_due = r->queue.urgent_due = true;
        scrub |= j->out.rec.drop_secret;
        idset_del(&r->known, j->id);
        job_free(j);
    }
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
    if (r->batch.len >= BATCH_MAX)
        flush(r);
    else if (r->batch.len && !uv_is_active((uv_handle_t *)&r->flush_timer))
        uv_timer_start(&r->flush_timer, on_flush_timer, FLUSH_DELAY_MS, 0);
}

static void on_flush_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, flush_timer);

    /* One batch per call, the next after the loop looked at its sockets: a
     * backlog never blocks it long. Not 0 ms: libuv 1.44 runs a timer that
     * restarts itself with 0 again in the same pass, before any poll. */
    if (r->batch.head && !r->db_blocked && turn_spent(r)) {
        uv_timer_start(h, on_flush_timer, 1, 0);
        return;
    }
    if (r->batch.head && !r->db_blocked) {
        unsigned before = r->batch.len;
        flush(r);
        if (r->batch.head && r->batch.len != before) {
            uv_timer_start(h, on_flush_timer, 1, 0);
            return;
        }
    }
    if (r->stopping && r->in_flight == 0 && (!r->batch.head || r->db_blocked))
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
    rc = store_next_events(r->store, r->queue.routine_read_ms < now ? r->queue.routine_read_ms : now,
                           r->queue.urgent_read_ms < now ? r->queue.urgent_read_ms : now, &next);
    if (rc < 0) {
        db_trouble(r, "looking for the next due token", rc);
        return;
    }
    db_fine(r, "looking for the next due token", false);
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
    if (!r->queue.urgent_due && next.urgent_retry_ms < target)
        target = next.urgent_retry_ms; /* its backoff ends: read first, however full the routine lane */
    uv_timer_start(&r->due_timer, on_due_timer, policy_timer_delay_ms(target, now, RESCAN_MS), 0);
}

/* One step of each: promote a page, fetch a page, dispatch, hash a page. */
static void work_step(struct revoke *r, uv_idle_t *h)
{
    bool more = false;
    unsigned count;
    int rc;

    bool bulk = store_may_write(r->store, STORE_WRITE_CAN_WAIT);
    if (r->scan_due && (bulk || r->flags_due)) {
        /* While a checkpoint copies, only flagged rows (a few, urgent). */
        rc = (bulk ? pages_promote : pages_promote_flagged)(r->store, wall_ms(r), &count, &more);
        r->flags_due = more;
        if (rc < 0) {
            db_trouble(r, "marking due tokens", rc);
            return;
        }
        db_fine(r, "marking due tokens", true);
        if (count > 0) {
            r->fetch_due = r->queue.urgent_due = true;
            changed(r);
        }
        if (!more && bulk)
            r->scan_due = false;
    }
    if ((r->fetch_due && r->queue.routine.len < 2 * r->cfg.concurrency) || r->queue.urgent_due) {
        rc = lanes_fill(&r->queue, r->store, &r->known, r, r->cfg.concurrency, wall_ms(r), &r->fetch_due);
        if (rc < 0) {
            db_trouble(r, "reading due tokens", rc);
            return;
        }
        db_fine(r, "reading due tokens", false);
    }
    dispatch(r);
    /* Last: nothing waits for it but a later lookup, which also finds a
     * row that is not hashed yet. */
    if (r->hash_due && !more && store_may_write(r->store, STORE_WRITE_CAN_WAIT)) {
        bool left = false;
        rc = pages_hash(r->store, &count, &left);
        if (rc < 0) {
            db_trouble(r, "hashing new tokens", rc);
            return;
        }
        db_fine(r, "hashing new tokens", true);
        r->stats.hashed += count;
        r->hash_due = left;
        more = left;
    }
    if (more ||
        (r->fetch_due && r->queue.routine.len < 2 * r->cfg.concurrency && r->in_flight < r->cfg.concurrency))
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

    r->scan_due = r->flags_due = true;
    r->fetch_due = r->queue.urgent_due = true;
    schedule_work(r);
}

static void on_gate_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, gate_timer);

    dispatch(r);
    if (r->queue.routine.len < r->cfg.concurrency || r->queue.urgent_due)
        schedule_work(r);
}

static void on_db_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, db_timer);

    r->db_blocked = false;
    r->scan_due = true;
    r->hash_due = true;
    r->fetch_due = r->queue.urgent_due = true;
    if (r->batch.head)
        uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
    schedule_work(r);
}

/* Outcomes committed, and rows the table's rules rejected before any request. */
static struct report_counts committed_counts(const struct revoke *r)
{
    struct tokens_tally t = store_tally(r->store);
    struct report_counts c = r->counts;

    c.rejected += t.no_token + t.expiry_rejected;
    return c;
}

static void on_summary_timer(uv_timer_t *h)
{
    struct revoke *r = container_of(h, struct revoke, summary_timer);
    struct report_counts now = committed_counts(r);

    report_summary(&now, &r->summary_base, SUMMARY_MS / 1000, health_describe(&r->health, uv_now(r->loop)));
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
    store_checkpoint_request(r->store);
}

/* After every checkpoint pass, the scrub's and the WAL size's. */
static void on_checkpoint(void *data, int err, const char *msg)
{
    struct revoke *r = data;

    /* Writes held back while step 1 copied. */
    if (r->batch.head)
        uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
    if (r->scan_due || r->hash_due)
        schedule_work(r);
    if (err == -EBUSY) {
        uv_timer_start(&r->scrub_timer, on_scrub_timer, SCRUB_DELAY_MS, 0);
    } else if (err < 0) {
        unsigned ms;
        if (store_checkpoint_retry(r->store, &ms)) /* said once, then quiet while it backs off */
            log_err("database: cannot checkpoint the WAL (%s): %s; writes wait for it; retrying in %u ms",
                    strerror(-err), msg, ms);
        uv_timer_start(&r->scrub_timer, on_scrub_timer, ms, 0);
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
    for (size_t i = 0; i < ARRAY_SIZE(handles); i++)
        uv_close(handles[i], on_handle_closed);
    store_on_checkpoint(r->store, NULL, NULL); /* a pass that ends now finds nothing to resume */
}

static void finish_stop(struct revoke *r)
{
    struct job *j;

    if (!r->http)
        return; /* already finishing */
    if (r->batch.head)
        log_err("%u outcomes could not be committed at shutdown (%s); those tokens stay pending and are "
                "attempted again at the next start",
                r->batch.len, r->stats.db_error);
    while ((j = job_list_pop(&r->batch)))
        job_free(j);
    uv_timer_stop(&r->summary_timer);
    on_summary_timer(&r->summary_timer);
    if (uv_is_active((uv_handle_t *)&r->scrub_timer)) {
        uv_timer_stop(&r->scrub_timer);
        (void)store_checkpoint_now(r->store); /* busy: the last connection's close does it */
    }
    http_close(r->http, on_http_closed, r);
}

int revoke_new(uv_loop_t *loop, struct store *store, const struct config *cfg, const char *credential,
               struct revoke **ret)
{
    struct http_options ho = http_options_from(cfg, credential);
    struct revoke *r;
    int rc;

    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->store = store;
    rc = idset_init(&r->known, 1024);
    if (rc < 0)
        goto err_after_alloc;
    rc = config_copy(&r->cfg, cfg);
    if (rc < 0)
        goto err_after_alloc;
    rc = http_new(loop, &ho, &r->http);
    if (rc < 0)
        goto err_after_config;
    store_on_checkpoint(store, on_checkpoint, r);

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
    r->open_handles = 9;
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
    r->scan_due = r->fetch_due = r->hash_due = r->queue.urgent_due = true;
    *ret = r;
    return 0;

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
    int rc = config_copy(&copy, cfg);

    if (rc < 0)
        return rc;
    ho = http_options_from(&copy, credential);
    rc = http_configure(r->http, &ho);
    if (rc < 0) {
        config_free(&copy);
        return rc;
    }
    if (strcmp(copy.url, r->cfg.url) != 0) { /* the old URL's failures say nothing about the new one */
        health_reset(&r->health, uv_now(r->loop));
        r->url_gen++;
    }
    config_free(&r->cfg);
    r->cfg = copy;
    health_configure(&r->health, copy.down_after, copy.retry_base_ms, copy.retry_max_delay_ms);
    revoke_kick(r);
    return 0;
}

void revoke_kick(struct revoke *r)
{
    r->scan_due = r->flags_due = true;
    r->fetch_due = r->queue.urgent_due = true;
    if (!uv_is_active((uv_handle_t *)&r->hash_timer))
        uv_timer_start(&r->hash_timer, on_hash_timer, HASH_DELAY_MS, 0);
    schedule_work(r);
}

void revoke_get_stats(struct revoke *r, struct revoke_stats *ret)
{
    struct report_counts c = committed_counts(r);
    struct tokens_tally t = store_tally(r->store);

    *ret = r->stats;
    ret->revoked = c.revoked;
    ret->already_invalid = c.already_invalid;
    ret->rejected = c.rejected;
    ret->gave_up = c.gave_up;
    ret->retried = c.retried;
    ret->keep_secrets = r->cfg.keep_secrets;
    ret->expiry_converted = t.expiry_converted;
    ret->expiry_rejected = t.expiry_rejected;
    ret->queued = lanes_len(&r->queue);
    ret->in_flight = r->in_flight;
    ret->uncommitted = r->batch.len;
    ret->health = health_describe(&r->health, uv_now(r->loop));
    ret->last_error = r->health.last_error;
    ret->db_error_for_ms = r->dberr.count ? uv_now(r->loop) - r->dberr.since_ms : 0;
    health_times(&r->health, uv_now(r->loop), &ret->down_ms, &ret->paused_ms);
}

int revoke_recall(struct revoke *r, int64_t id)
{
    return lanes_recall(&r->queue, &r->known, id);
}

void revoke_dropped(struct revoke *r, bool scrubbed)
{
    r->stats.dropped++;
    if (scrubbed && !uv_is_active((uv_handle_t *)&r->scrub_timer))
        uv_timer_start(&r->scrub_timer, on_scrub_timer, SCRUB_DELAY_MS, 0);
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
    while ((j = lanes_pop(&r->queue))) {
        idset_del(&r->known, j->id);
        job_free(j);
    }
    if (r->in_flight == 0)
        uv_timer_start(&r->flush_timer, on_flush_timer, 0, 0);
    else
        log_notice("stopping: waiting for %u requests in flight (at most %" PRIu64 " ms)", r->in_flight,
                   r->cfg.timeout_ms);
}

/* report: the operator's lines of report.h. */
#include "report.h"

#include <inttypes.h>
#include <string.h>

#include "log.h"

void report_count(struct report_counts *c, enum audit_event_kind e)
{
    switch (e) {
    case AUDIT_REVOKED: c->revoked++; break;
    case AUDIT_ALREADY_INVALID: c->already_invalid++; break;
    case AUDIT_REJECTED: c->rejected++; break;
    case AUDIT_GAVE_UP: c->gave_up++; break;
    default: c->retried++; break;
    }
}

void report_summary(const struct report_counts *now, struct report_counts *base, unsigned period_s,
                    const char *endpoint)
{
    struct report_counts d = {
        .revoked = now->revoked - base->revoked,
        .already_invalid = now->already_invalid - base->already_invalid,
        .rejected = now->rejected - base->rejected,
        .gave_up = now->gave_up - base->gave_up,
        .retried = now->retried - base->retried,
    };

    *base = *now;
    if (d.revoked + d.already_invalid + d.rejected + d.gave_up + d.retried)
        log_notice("last %u s: %" PRIu64 " revoked, %" PRIu64 " already invalid, %" PRIu64 " rejected, %" PRIu64
                   " gave up, %" PRIu64 " retries; endpoint %s",
                   period_s, d.revoked, d.already_invalid, d.rejected, d.gave_up, d.retried, endpoint);
}

void report_outcome(const struct job *j)
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

void report_unsendable(const struct job *j)
{
    log_token(LOG_WARNING, j->id, j->fingerprint, audit_event_name(j->out.rec.event), 0,
              "token %" PRId64 " (%s): rejected: %s", j->id, j->fingerprint, j->out.detail);
}

void report_submit_failed(const struct job *j, int err, int retry_ms)
{
    log_token(LOG_ERR, j->id, j->fingerprint, NULL, 0,
              "cannot start a request for token %" PRId64 ": %s; retrying in %d ms", j->id, strerror(-err), retry_ms);
}

void report_state_replaced(const struct job *j, enum token_state was)
{
    const char *event = audit_event_name(j->out.rec.event);

    log_token(LOG_NOTICE, j->id, j->fingerprint, event, 0,
              "token %" PRId64 " (%s): another process set its state to '%s' while its request was in flight; "
              "revokerd's outcome (%s) replaces it: the state column is revokerd's",
              j->id, j->fingerprint, token_state_name(was), event);
}

void report_row_gone(const struct job *j)
{
    log_token(LOG_NOTICE, j->id, j->fingerprint, NULL, 0,
              "token %" PRId64 " (%s) was deleted by another process while its request was in flight; "
              "outcome %s not recorded",
              j->id, j->fingerprint, audit_event_name(j->out.rec.event));
}

void report_health_change(const struct health *h, unsigned down_after, uint64_t now_ms)
{
    if (h->state == HEALTH_DOWN)
        log_warning("logout endpoint is down after %u failures in a row (%s); probing once per backoff "
                    "interval, no token is failed meanwhile",
                    down_after, h->last_error);
    else if (h->misconfigured)
        log_warning("logout endpoint looks misconfigured (%s): check logout.url; no token is failed",
                    h->last_error);
    else
        log_notice("logout endpoint is %s again", health_describe(h, now_ms));
}

void report_db_failure(const struct dberror *e, enum dberror_say say, uint64_t retry_ms, uint64_t now_ms)
{
    if (say == DBERROR_FIRST)
        log_err("database: %s failed: %s; retrying in %" PRIu64 " ms, backing off to %d s (repeats are counted "
                "and told once a minute)",
                e->what, e->msg, retry_ms, DBERROR_RETRY_MAX_MS / 1000);
    else if (say == DBERROR_STILL)
        log_err("database: %s still failing: %" PRIu64 " times in %" PRIu64 " s: %s; retrying every %" PRIu64
                " ms",
                e->what, e->count, (now_ms - e->since_ms) / 1000, e->msg, retry_ms);
}

void report_db_recovered(const struct dberror *e, uint64_t now_ms)
{
    log_notice("database: %s works again, after %" PRIu64 " failure(s) in %.1f s", e->what, e->count,
               (double)(now_ms - e->since_ms) / 1000.0);
}

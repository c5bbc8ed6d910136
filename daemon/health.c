/* health: the endpoint state machine of health.h.
 *
 * Probe bookkeeping: while DOWN, a probe goes out only when nothing else is in
 * flight. Requests sent before the endpoint went down may still complete
 * afterwards; because the probe waits for them, a completion while a probe is
 * in flight is always the probe's, and a completion while DOWN without one is
 * always such a leftover. Leftover failures say nothing new, so they neither
 * count as failed probes nor push the next probe back; a leftover token-level
 * answer does prove the endpoint answers and brings it UP.
 *
 * not_before never moves backwards: a Retry-After pause is never shortened by
 * a backoff or a recovery. */
#include "health.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static unsigned sat_inc(unsigned v)
{
    return v == ~0u ? v : v + 1;
}

static void push_not_before(struct health *h, uint64_t at_ms)
{
    if (at_ms > h->not_before_ms)
        h->not_before_ms = at_ms;
}

/* A Retry-After until at_ms: the window grows, or a new one starts. */
static void pause_until(struct health *h, uint64_t now_ms, uint64_t at_ms)
{
    if (now_ms >= h->pause_until_ms) {
        h->paused_ms += h->pause_until_ms - h->pause_from_ms;
        h->pause_from_ms = now_ms;
        h->pause_until_ms = now_ms;
    }
    if (at_ms > h->pause_until_ms)
        h->pause_until_ms = at_ms;
}

static void set_error(struct health *h, enum outcome o, const char *why)
{
    util_format(h->last_error, sizeof(h->last_error), "%s", why && *why ? why : policy_outcome_name(o));
}

void health_init(struct health *h, unsigned down_after, uint64_t base_ms, uint64_t max_ms)
{
    memset(h, 0, sizeof(*h));
    h->state = HEALTH_UP;
    health_configure(h, down_after, base_ms, max_ms);
}

void health_configure(struct health *h, unsigned down_after, uint64_t base_ms, uint64_t max_ms)
{
    /* Takes effect with the next failure; a running interval is kept. */
    h->down_after = down_after;
    h->base_ms = base_ms;
    h->max_ms = max_ms;
}

void health_reset(struct health *h, uint64_t now_ms)
{
    uint64_t down_ms, paused_ms;

    health_times(h, now_ms, &down_ms, &paused_ms); /* since start: they stay */
    health_init(h, h->down_after, h->base_ms, h->max_ms);
    h->down_ms = down_ms;
    h->paused_ms = paused_ms;
    h->pause_from_ms = h->pause_until_ms = now_ms;
}

unsigned health_allowance(const struct health *h, uint64_t now_ms, unsigned in_flight,
                          unsigned want, uint64_t *ret_wake_ms)
{
    uint64_t wake;

    if (want == 0) {
        wake = UINT64_MAX;
    } else if (h->state == HEALTH_UP) {
        if (now_ms >= h->not_before_ms)
            return want;
        wake = h->not_before_ms;
    } else if (h->probe_in_flight || in_flight > 0) {
        /* The probe's answer, or the last leftover, decides what comes next. */
        wake = UINT64_MAX;
    } else if (now_ms >= h->not_before_ms) {
        return 1;
    } else {
        wake = h->not_before_ms;
    }

    if (ret_wake_ms)
        *ret_wake_ms = wake;
    return 0;
}

void health_on_send(struct health *h)
{
    if (h->state == HEALTH_DOWN)
        h->probe_in_flight = true;
}

bool health_on_result(struct health *h, uint64_t now_ms, enum outcome o,
                      uint64_t retry_after_ms, uint64_t rnd, const char *why)
{
    bool changed = false;

    if (!policy_is_endpoint_level(o)) {
        /* The endpoint answered about the token: it is up and well aimed. */
        changed = h->state != HEALTH_UP || h->misconfigured;
        if (h->state == HEALTH_DOWN && now_ms > h->down_since_ms)
            h->down_ms += now_ms - h->down_since_ms;
        h->state = HEALTH_UP;
        h->failures_in_row = 0;
        h->probes_failed = 0;
        h->probe_in_flight = false;
        h->misconfigured = false;
        h->last_error[0] = '\0';
    } else {
        bool was_probe = h->state == HEALTH_DOWN && h->probe_in_flight;
        unsigned threshold = h->down_after ? h->down_after : 1;

        h->failures_in_row = sat_inc(h->failures_in_row);
        if (o == OUTCOME_ENDPOINT_MISCONFIGURED) {
            changed = !h->misconfigured;
            h->misconfigured = true;
            set_error(h, o, why);
        }

        if (h->state == HEALTH_UP) {
            if (h->failures_in_row >= threshold) {
                h->state = HEALTH_DOWN;
                h->down_since_ms = now_ms;
                h->probes_failed = 0;
                h->probe_in_flight = false;
                push_not_before(h, sat_add(now_ms, policy_backoff_ms(h->base_ms, h->max_ms, 1, rnd)));
                set_error(h, o, why);
                changed = true;
            }
        } else if (was_probe) {
            h->probe_in_flight = false;
            h->probes_failed = sat_inc(h->probes_failed);
            unsigned n = h->probes_failed == ~0u ? ~0u : h->probes_failed + 1;
            push_not_before(h, sat_add(now_ms, policy_backoff_ms(h->base_ms, h->max_ms, n, rnd)));
            set_error(h, o, why);
        }
        /* else: a leftover from before going down; see the top of the file. */
    }

    if (retry_after_ms > 0) {
        push_not_before(h, sat_add(now_ms, retry_after_ms));
        pause_until(h, now_ms, sat_add(now_ms, retry_after_ms));
    }
    return changed;
}

void health_times(const struct health *h, uint64_t now_ms, uint64_t *ret_down_ms, uint64_t *ret_paused_ms)
{
    uint64_t until = now_ms < h->pause_until_ms ? now_ms : h->pause_until_ms;

    *ret_down_ms = h->down_ms + (h->state == HEALTH_DOWN && now_ms > h->down_since_ms ? now_ms - h->down_since_ms : 0);
    *ret_paused_ms = h->paused_ms + (until > h->pause_from_ms ? until - h->pause_from_ms : 0);
}

const char *health_describe(const struct health *h, uint64_t now_ms)
{
    if (h->state == HEALTH_UP && now_ms < h->not_before_ms)
        return "paused";
    /* A wrong URL is the more useful thing to tell an operator than "down". */
    if (h->misconfigured)
        return "misconfigured";
    if (h->state == HEALTH_DOWN)
        return "down";
    return "up";
}

void health_rate_init(struct health_rate *r, uint64_t now_ns)
{
    r->bucket = 1;
    r->at_ns = now_ns;
}

bool health_rate_allows(struct health_rate *r, unsigned rate, uint64_t now_ns, uint64_t *ret_wait_ms)
{
    double per_s = rate, cap;

    if (rate == 0)
        return true;
    cap = per_s / 100 > 1 ? per_s / 100 : 1;
    r->bucket += (double)(now_ns - r->at_ns) * per_s / 1e9;
    if (r->bucket > cap)
        r->bucket = cap;
    r->at_ns = now_ns;
    if (r->bucket >= 1)
        return true;
    *ret_wait_ms = (uint64_t)((1 - r->bucket) * 1000 / per_s) + 1;
    return false;
}

void health_rate_take(struct health_rate *r, unsigned rate)
{
    if (rate)
        r->bucket -= 1;
}

/* health: what revokerd believes about the logout endpoint, and so whether a
 * request may go out now. Pure state machine; the caller passes monotonic
 * milliseconds and random numbers.
 *
 *   UP      requests flow at full concurrency.
 *   DOWN    after down_after endpoint-level failures in a row: one probe at a
 *           time, the next one a backoff interval after the previous failed
 *           (base, 2·base, ... max, with full jitter). Any token-level answer
 *           (2xx, 401, 4xx, 500) brings it back UP.
 *   paused  a Retry-After (429/503) holds every request until its time,
 *           capped at retry_after_max; independent of UP/DOWN.
 * misconfigured is set by a 3xx/404/405 answer (endpoint-level too) and
 * cleared by the next token-level answer.
 *
 * The rate limit (struct health_rate) answers the same question for
 * [logout] rate_limit: a token bucket refilled continuously, holding at
 * most 10 ms worth of requests (at least one), so bursts stay small. It
 * takes monotonic nanoseconds (uv_hrtime()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

enum health_state { HEALTH_UP, HEALTH_DOWN };

struct health {
    /* settings; health_configure() may change them at any time */
    unsigned down_after;
    uint64_t base_ms, max_ms;

    enum health_state state;
    unsigned failures_in_row;   /* endpoint-level failures since the last answer */
    unsigned probes_failed;     /* while DOWN */
    bool misconfigured;
    bool probe_in_flight;       /* DOWN: one request at a time */
    uint64_t not_before_ms;     /* no request before this monotonic time */
    char last_error[320];       /* why it is down or misconfigured (an outcome's reason); no secrets */

    /* For the metrics: time spent DOWN, and time held by Retry-After. */
    uint64_t down_since_ms, down_ms;          /* the current outage's start; the ended ones */
    uint64_t pause_from_ms, pause_until_ms;   /* the last Retry-After window */
    uint64_t paused_ms;                       /* the windows before it */
};

void health_init(struct health *h, unsigned down_after, uint64_t base_ms, uint64_t max_ms);
void health_configure(struct health *h, unsigned down_after, uint64_t base_ms, uint64_t max_ms);
/* UP, no failures, no pause, no last_error; the settings and the time
 * spent down or paused since start (the metrics' counters) kept. For a new
 * URL: what the old one did says nothing about it. */
void health_reset(struct health *h, uint64_t now_ms);

/* How many requests may start now, given in_flight running and a wish of
 * `want`. 0 means wait: *ret_wake_ms (if not NULL) is then the monotonic time
 * to ask again, or UINT64_MAX when only a completion can change the answer. */
unsigned health_allowance(const struct health *h, uint64_t now_ms, unsigned in_flight,
                          unsigned want, uint64_t *ret_wake_ms);
/* Call once for each request started. */
void health_on_send(struct health *h);
/* Call with each completion. retry_after_ms: from a 429/503's Retry-After
 * (already capped), 0 if none. rnd: random bits for jitter. why: short text
 * without secrets, for last_error. Returns true when the state changed
 * (UP<->DOWN or misconfigured set/cleared), so the caller logs it once. */
bool health_on_result(struct health *h, uint64_t now_ms, enum outcome o,
                      uint64_t retry_after_ms, uint64_t rnd, const char *why);
/* Milliseconds spent DOWN since health_init, and held by a Retry-After
 * (overlapping windows counted once), up to now_ms. */
void health_times(const struct health *h, uint64_t now_ms, uint64_t *ret_down_ms, uint64_t *ret_paused_ms);
/* "up", "down", "misconfigured", "paused" (Retry-After in force), for status. */
const char *health_describe(const struct health *h, uint64_t now_ms);

struct health_rate {
    double bucket;              /* requests that may go out now */
    uint64_t at_ns;             /* when bucket was last refilled */
};

/* A full bucket of one request at now_ns. */
void health_rate_init(struct health_rate *r, uint64_t now_ns);
/* May a request go out now at `rate` per second (0: no limit)? When not,
 * *ret_wait_ms is how long until one may. */
bool health_rate_allows(struct health_rate *r, unsigned rate, uint64_t now_ns, uint64_t *ret_wait_ms);
/* Call once for each request started. */
void health_rate_take(struct health_rate *r, unsigned rate);

/* policy: the pure decisions of revocation: what an HTTP answer means for a
 * token, how long to wait before the next attempt, what Retry-After says.
 * No I/O, no clock of its own: callers pass the time and the randomness. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum outcome {
    OUTCOME_REVOKED,          /* 2xx: revoked, final */
    OUTCOME_ALREADY_INVALID,  /* 401: already dead, final success */
    OUTCOME_REJECTED,         /* 422 and other final 4xx: failed, no retry */
    OUTCOME_TOKEN_RETRY,      /* 500, 501, 505, other unexpected: token-level, counts */
    OUTCOME_ENDPOINT_DOWN,    /* no answer, 408, 429, 502, 503, 504: endpoint-level */
    OUTCOME_ENDPOINT_MISCONFIGURED, /* 3xx, 404, 405: the URL is wrong: endpoint-level */
};

/* http_status: 0 when there was no HTTP response (transport error). */
enum outcome policy_classify(long http_status);
/* "revoked", "already_invalid", ... for logs. */
const char *policy_outcome_name(enum outcome o);
/* Endpoint-level outcomes never count towards a token's attempts. */
bool policy_is_endpoint_level(enum outcome o);

/* Full jitter: the n-th retry (n >= 1) waits uniformly in
 * [base, min(max, base * 2^(n-1))]. rnd is a uniformly random 64-bit value. */
uint64_t policy_backoff_ms(uint64_t base_ms, uint64_t max_ms, unsigned n, uint64_t rnd);

/* Retry-After: delta-seconds or an HTTP date (RFC 9110). now_s is Unix seconds.
 * Writes the delay in ms (0 for a date in the past), capped at cap_ms.
 * 0 or -EINVAL for anything else (which callers ignore). */
int policy_parse_retry_after(const char *value, int64_t now_s, uint64_t cap_ms, uint64_t *ret_delay_ms);

/* Delay for the timer that waits for a wall-clock instant: never negative,
 * never more than cap_ms, so that a wall-clock jump forward is noticed within
 * cap_ms and a jump backward only re-checks early (and finds nothing due). */
uint64_t policy_timer_delay_ms(int64_t target_wall_ms, int64_t now_wall_ms, uint64_t cap_ms);

/* A small, fast PRNG for jitter (xoshiro256**), seeded from getrandom(). */
struct rng { uint64_t s[4]; };
void rng_seed(struct rng *r, uint64_t seed); /* seed 0: from getrandom() */
uint64_t rng_next(struct rng *r);

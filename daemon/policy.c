/* policy: what an answer means, how long to wait, what Retry-After says.
 * Pure functions of their arguments (the rng aside); see policy.h. */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

/* Longer than any of RFC 9110's three HTTP-date forms (at most 33 chars). */
#define DATE_MAX 64

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    if (a != 0 && b > UINT64_MAX / a)
        return UINT64_MAX;
    return a * b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* High 64 bits of a * b, without a 128-bit type (ISO C has none). */
static uint64_t mul_hi64(uint64_t a, uint64_t b)
{
    uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
    uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
    uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
    uint64_t mid = (p0 >> 32) + (p1 & 0xffffffffu) + (p2 & 0xffffffffu);
    return p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* All digits, saturating at UINT64_MAX instead of wrapping. */
static uint64_t parse_digits(const char *s, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return UINT64_MAX;
        v = v * 10 + d;
    }
    return v;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* A seed from the kernel; if that fails (ancient kernel, seccomp), something
 * that at least differs between processes: jitter is not a secret. */
static uint64_t entropy_seed(void)
{
    uint64_t seed = 0;
    size_t got = 0;
    while (got < sizeof(seed)) {
        ssize_t n = getrandom((char *)&seed + got, sizeof(seed) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    if (got == sizeof(seed))
        return seed;

    struct timespec ts = {0};
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
           ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&seed;
}

enum outcome policy_classify(long http_status)
{
    long s = http_status;

    if (s >= 200 && s <= 299)
        return OUTCOME_REVOKED;
    if (s == 401)
        return OUTCOME_ALREADY_INVALID;
    if (s == 0 || s == 408 || s == 429 || s == 502 || s == 503 || s == 504)
        return OUTCOME_ENDPOINT_DOWN;
    /* A redirect or "no such path/method" says the URL is wrong, not the token. */
    if ((s >= 300 && s <= 399) || s == 404 || s == 405)
        return OUTCOME_ENDPOINT_MISCONFIGURED;
    if (s >= 400 && s <= 499)
        return OUTCOME_REJECTED;
    /* 500, 501, 505, other 5xx, 1xx and nonsense: unexpected, worth a retry
     * that counts, so that it ends in gave_up rather than looping forever. */
    return OUTCOME_TOKEN_RETRY;
}

const char *policy_outcome_name(enum outcome o)
{
    switch (o) {
    case OUTCOME_REVOKED:
        return "revoked";
    case OUTCOME_ALREADY_INVALID:
        return "already_invalid";
    case OUTCOME_REJECTED:
        return "rejected";
    case OUTCOME_TOKEN_RETRY:
        return "token_retry";
    case OUTCOME_ENDPOINT_DOWN:
        return "endpoint_down";
    case OUTCOME_ENDPOINT_MISCONFIGURED:
        return "endpoint_misconfigured";
    }
    return "unknown";
}

bool policy_is_endpoint_level(enum outcome o)
{
    return o == OUTCOME_ENDPOINT_DOWN || o == OUTCOME_ENDPOINT_MISCONFIGURED;
}

uint64_t policy_backoff_ms(uint64_t base_ms, uint64_t max_ms, unsigned n, uint64_t rnd)
{
    if (n == 0)
        n = 1;
    if (max_ms < base_ms)
        max_ms = base_ms;

    uint64_t shift = (uint64_t)n - 1;
    uint64_t hi;
    if (base_ms == 0)
        hi = 0;
    else if (shift >= 64 || base_ms > (UINT64_MAX >> shift))
        hi = UINT64_MAX;
    else
        hi = base_ms << shift;
    hi = min_u64(hi, max_ms);

    uint64_t span = hi - base_ms;
    if (span == UINT64_MAX) /* base 0, hi max: every value is in range */
        return rnd;
    /* Scale rnd onto [0, span]: monotone in rnd, so rnd 0 gives base and
     * UINT64_MAX gives the upper bound; no modulo bias. */
    return base_ms + mul_hi64(rnd, span + 1);
}

int policy_parse_retry_after(const char *value, int64_t now_s, uint64_t cap_ms, uint64_t *ret_delay_ms)
{
    if (!value)
        return -EINVAL;

    const char *b = value;
    while (is_ows(*b))
        b++;
    size_t len = strlen(b);
    while (len > 0 && is_ows(b[len - 1]))
        len--;
    if (len == 0)
        return -EINVAL;

    size_t digits = 0;
    while (digits < len && b[digits] >= '0' && b[digits] <= '9')
        digits++;

    uint64_t delay_ms;
    if (digits == len) {
        delay_ms = sat_mul(parse_digits(b, len), 1000);
    } else {
        /* Every HTTP-date form starts with a day name; this also keeps "-1"
         * and "1.5" away from curl_getdate(), which is lenient. */
        if (!isalpha((unsigned char)b[0]) || len >= DATE_MAX)
            return -EINVAL;
        char date[DATE_MAX];
        memcpy(date, b, len);
        date[len] = '\0';
        time_t t = curl_getdate(date, NULL);
        if (t == -1)
            return -EINVAL;
        int64_t at = (int64_t)t;
        if (at <= now_s)
            delay_ms = 0;
        else
            delay_ms = sat_mul((uint64_t)at - (uint64_t)now_s, 1000);
    }

    *ret_delay_ms = min_u64(delay_ms, cap_ms);
    return 0;
}

uint64_t policy_timer_delay_ms(int64_t target_wall_ms, int64_t now_wall_ms, uint64_t cap_ms)
{
    if (target_wall_ms <= now_wall_ms)
        return 0;
    /* The difference of two int64 values with target > now fits in uint64. */
    return min_u64((uint64_t)target_wall_ms - (uint64_t)now_wall_ms, cap_ms);
}

void rng_seed(struct rng *r, uint64_t seed)
{
    uint64_t x = seed ? seed : entropy_seed();
    /* splitmix64 outputs are a bijection of distinct counters: never all zero. */
    for (size_t i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Unit tests for policy: classification, backoff, Retry-After, timer delay, rng. */
#include <errno.h>
#include <limits.h>

#include "policy.h"
#include "unit.h"

static void test_classify(void)
{
    static const struct {
        long status;
        enum outcome want;
    } cases[] = {
        {0, OUTCOME_ENDPOINT_DOWN},
        {-1, OUTCOME_TOKEN_RETRY},
        {99, OUTCOME_TOKEN_RETRY},
        {100, OUTCOME_TOKEN_RETRY},
        {199, OUTCOME_TOKEN_RETRY},
        {200, OUTCOME_REVOKED},
        {204, OUTCOME_REVOKED},
        {299, OUTCOME_REVOKED},
        {300, OUTCOME_ENDPOINT_MISCONFIGURED},
        {302, OUTCOME_ENDPOINT_MISCONFIGURED},
        {399, OUTCOME_ENDPOINT_MISCONFIGURED},
        {400, OUTCOME_REJECTED},
        {401, OUTCOME_ALREADY_INVALID},
        {403, OUTCOME_REJECTED},
        {404, OUTCOME_ENDPOINT_MISCONFIGURED},
        {405, OUTCOME_ENDPOINT_MISCONFIGURED},
        {406, OUTCOME_REJECTED},
        {408, OUTCOME_ENDPOINT_DOWN},
        {422, OUTCOME_REJECTED},
        {429, OUTCOME_ENDPOINT_DOWN},
        {499, OUTCOME_REJECTED},
        {500, OUTCOME_TOKEN_RETRY},
        {501, OUTCOME_TOKEN_RETRY},
        {502, OUTCOME_ENDPOINT_DOWN},
        {503, OUTCOME_ENDPOINT_DOWN},
        {504, OUTCOME_ENDPOINT_DOWN},
        {505, OUTCOME_TOKEN_RETRY},
        {599, OUTCOME_TOKEN_RETRY},
        {600, OUTCOME_TOKEN_RETRY},
        {LONG_MAX, OUTCOME_TOKEN_RETRY},
        {LONG_MIN, OUTCOME_TOKEN_RETRY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum outcome got = policy_classify(cases[i].status);
        if (got != cases[i].want)
            fprintf(stderr, "status %ld: got %s, want %s\n", cases[i].status,
                    policy_outcome_name(got), policy_outcome_name(cases[i].want));
        CHECK_INT(got, cases[i].want);
    }
}

static void test_outcome_names_and_levels(void)
{
    static const struct {
        enum outcome o;
        const char *name;
        bool endpoint;
    } cases[] = {
        {OUTCOME_REVOKED, "revoked", false},
        {OUTCOME_ALREADY_INVALID, "already_invalid", false},
        {OUTCOME_REJECTED, "rejected", false},
        {OUTCOME_TOKEN_RETRY, "token_retry", false},
        {OUTCOME_ENDPOINT_DOWN, "endpoint_down", true},
        {OUTCOME_ENDPOINT_MISCONFIGURED, "endpoint_misconfigured", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_STR(policy_outcome_name(cases[i].o), cases[i].name);
        CHECK_INT(policy_is_endpoint_level(cases[i].o), cases[i].endpoint);
    }
    CHECK_STR(policy_outcome_name((enum outcome)99), "unknown");
}

static void test_backoff_table(void)
{
    static const struct {
        uint64_t base, max;
        unsigned n;
        uint64_t rnd, want;
    } cases[] = {
        /* n = 1: exactly base */
        {1000, 900000, 1, 0, 1000},
        {1000, 900000, 1, UINT64_MAX, 1000},
        /* n = 0 is treated as 1 */
        {1000, 900000, 0, UINT64_MAX, 1000},
        /* n = 2: [1000, 2000] */
        {1000, 900000, 2, 0, 1000},
        {1000, 900000, 2, UINT64_MAX, 2000},
        {1000, 900000, 2, UINT64_C(1) << 63, 1500},
        /* n = 4: [1000, 8000] */
        {1000, 900000, 4, UINT64_MAX, 8000},
        {1000, 900000, 4, UINT64_C(1) << 63, 4500},
        /* capped by max */
        {1000, 900000, 11, UINT64_MAX, 900000},
        {1000, 900000, 64, UINT64_MAX, 900000},
        {1000, 900000, 65, UINT64_MAX, 900000},
        {1000, 900000, UINT_MAX, UINT64_MAX, 900000},
        {1000, 900000, UINT_MAX, 0, 1000},
        /* max < base: base */
        {1000, 10, 5, UINT64_MAX, 1000},
        {1000, 10, 5, 0, 1000},
        /* huge base: no overflow of base * 2^(n-1) */
        {UINT64_MAX / 2, UINT64_MAX, 3, UINT64_MAX, UINT64_MAX},
        {UINT64_MAX, UINT64_MAX, UINT_MAX, UINT64_MAX, UINT64_MAX},
        {UINT64_MAX, UINT64_MAX, UINT_MAX, 0, UINT64_MAX},
        {UINT64_MAX - 5, UINT64_MAX, 2, UINT64_MAX, UINT64_MAX},
        {UINT64_MAX - 5, UINT64_MAX, 2, 0, UINT64_MAX - 5},
        /* base 0: zero */
        {0, 1000, 10, UINT64_MAX, 0},
        /* base 1, max unbounded: the full 2^(n-1) range */
        {1, UINT64_MAX, 64, UINT64_MAX, UINT64_C(1) << 63},
        {1, UINT64_MAX, 65, UINT64_MAX, UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = policy_backoff_ms(cases[i].base, cases[i].max, cases[i].n, cases[i].rnd);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu: backoff(%" PRIu64 ", %" PRIu64 ", %u, %#" PRIx64
                    ") = %" PRIu64 ", want %" PRIu64 "\n", i, cases[i].base, cases[i].max,
                    cases[i].n, cases[i].rnd, got, cases[i].want);
        CHECK(got == cases[i].want);
    }
}

/* Over many n and rnd: within bounds, both bounds reached, the upper bound
 * (rnd = UINT64_MAX) never shrinks as n grows, and rnd maps monotonically. */
static void test_backoff_bounds(void)
{
    static const struct {
        uint64_t base, max;
    } cfgs[] = {{1000, 900000}, {1, 1}, {250, 1000}, {1000, 1000}, {7, UINT64_MAX},
                {50, 49}, {UINT64_MAX / 3, UINT64_MAX - 1}};
    struct rng r;
    rng_seed(&r, 42);
    int bad = 0;
    for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++) {
        uint64_t base = cfgs[c].base, max = cfgs[c].max < base ? base : cfgs[c].max;
        uint64_t prev_top = 0;
        for (unsigned n = 1; n <= 80; n++) {
            uint64_t hi = n - 1 >= 64 || base > (UINT64_MAX >> (n - 1)) ? UINT64_MAX
                                                                        : base << (n - 1);
            if (hi > max)
                hi = max;
            uint64_t lo_got = policy_backoff_ms(cfgs[c].base, cfgs[c].max, n, 0);
            uint64_t top = policy_backoff_ms(cfgs[c].base, cfgs[c].max, n, UINT64_MAX);
            bad += lo_got != base;
            bad += top != hi;
            bad += top < prev_top;
            prev_top = top;
            uint64_t prev = lo_got;
            uint64_t rnds[200];
            for (size_t k = 0; k < 200; k++)
                rnds[k] = rng_next(&r);
            for (size_t k = 0; k < 200; k++) {
                uint64_t v = policy_backoff_ms(cfgs[c].base, cfgs[c].max, n, rnds[k]);
                bad += v < base || v > hi;
            }
            /* monotone in rnd */
            for (uint64_t x = 0; x < 64; x++) {
                uint64_t v = policy_backoff_ms(cfgs[c].base, cfgs[c].max, n,
                                               x == 63 ? UINT64_MAX : (UINT64_C(1) << x));
                bad += v < prev;
                prev = v;
            }
        }
    }
    CHECK_INT(bad, 0);
}

/* Full jitter really spreads: with base 1000 and n = 4 ([1000, 8000]) random
 * rnd values land in every eighth of the range. */
static void test_backoff_spread(void)
{
    struct rng r;
    rng_seed(&r, 7);
    unsigned buckets[8] = {0};
    for (int i = 0; i < 80000; i++) {
        uint64_t v = policy_backoff_ms(1000, 900000, 4, rng_next(&r));
        REQUIRE(v >= 1000 && v <= 8000);
        buckets[(v - 1000) * 8 / 7001]++;
    }
    for (int i = 0; i < 8; i++)
        CHECK(buckets[i] > 9000 && buckets[i] < 11000);
}

#define NOW 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */
#define HOUR_MS UINT64_C(3600000)

static void test_retry_after(void)
{
    static const struct {
        const char *value;
        int64_t now_s;
        uint64_t cap_ms;
        int ret;
        uint64_t delay_ms;
    } cases[] = {
        {"0", NOW, HOUR_MS, 0, 0},
        {"5", NOW, HOUR_MS, 0, 5000},
        {" 120 ", NOW, HOUR_MS, 0, 120000},
        {"\t7\t", NOW, HOUR_MS, 0, 7000},
        {"007", NOW, HOUR_MS, 0, 7000},
        {"3600", NOW, HOUR_MS, 0, HOUR_MS},
        {"3601", NOW, HOUR_MS, 0, HOUR_MS},
        {"99999999999999999999", NOW, HOUR_MS, 0, HOUR_MS},
        {"18446744073709551615", NOW, UINT64_MAX, 0, UINT64_MAX},
        {"99999999999999999999", NOW, UINT64_MAX, 0, UINT64_MAX},
        {"18446744073709551616", NOW, HOUR_MS, 0, HOUR_MS}, /* 2^64 must not wrap to 0 */
        {"18446744073709551", NOW, UINT64_MAX, 0, UINT64_C(18446744073709551000)},
        {"18446744073709552", NOW, UINT64_MAX, 0, UINT64_MAX},
        {"5", NOW, 0, 0, 0},
        /* IMF-fixdate, obsolete RFC 850 and asctime forms */
        {"Sun, 06 Nov 1994 08:51:37 GMT", NOW, HOUR_MS, 0, 120000},
        {"  Sun, 06 Nov 1994 08:51:37 GMT  ", NOW, HOUR_MS, 0, 120000},
        {"Sunday, 06-Nov-94 08:50:37 GMT", NOW, HOUR_MS, 0, 60000},
        {"Sun Nov  6 08:49:47 1994", NOW, HOUR_MS, 0, 10000},
        {"Sun, 06 Nov 1994 08:49:37 GMT", NOW, HOUR_MS, 0, 0},
        {"Sun, 06 Nov 1994 08:48:37 GMT", NOW, HOUR_MS, 0, 0},
        {"Thu, 01 Jan 1970 00:00:00 GMT", NOW, HOUR_MS, 0, 0},
        {"Sun, 06 Nov 1994 10:49:37 GMT", NOW, HOUR_MS, 0, HOUR_MS},
        {"Fri, 31 Dec 9999 23:59:59 GMT", NOW, UINT64_MAX, 0,
         (UINT64_C(253402300799) - NOW) * 1000},
        /* 2^63 + 784111897 seconds away: the ms saturate */
        {"Sun, 06 Nov 1994 08:51:37 GMT", INT64_MIN, UINT64_MAX, 0, UINT64_MAX},
        {"Sun, 06 Nov 1994 08:51:37 GMT", INT64_MAX, HOUR_MS, 0, 0},
        /* not a delay */
        {"", NOW, HOUR_MS, -EINVAL, 0},
        {"   ", NOW, HOUR_MS, -EINVAL, 0},
        {"-1", NOW, HOUR_MS, -EINVAL, 0},
        {"+5", NOW, HOUR_MS, -EINVAL, 0},
        {"1.5", NOW, HOUR_MS, -EINVAL, 0},
        {"5s", NOW, HOUR_MS, -EINVAL, 0},
        {"5 5", NOW, HOUR_MS, -EINVAL, 0},
        {"garbage", NOW, HOUR_MS, -EINVAL, 0},
        {"Sun", NOW, HOUR_MS, -EINVAL, 0},
        {"-1 Nov 1994", NOW, HOUR_MS, -EINVAL, 0},
        {"06 Nov 1994 08:51:37 GMT", NOW, HOUR_MS, -EINVAL, 0},
        {"Sun, 06 Nov 1994 08:51:37 GMT and then a long tail that is no date at all", NOW,
         HOUR_MS, -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t delay = UINT64_C(0xdeadbeef);
        int r = policy_parse_retry_after(cases[i].value, cases[i].now_s, cases[i].cap_ms, &delay);
        if (r != cases[i].ret || (r == 0 && delay != cases[i].delay_ms))
            fprintf(stderr, "\"%s\": ret %d delay %" PRIu64 ", want %d %" PRIu64 "\n",
                    cases[i].value, r, delay, cases[i].ret, cases[i].delay_ms);
        CHECK_INT(r, cases[i].ret);
        if (cases[i].ret == 0)
            CHECK(delay == cases[i].delay_ms);
        else
            CHECK(delay == UINT64_C(0xdeadbeef)); /* untouched on failure */
    }
    uint64_t delay = 1;
    CHECK_INT(policy_parse_retry_after(NULL, NOW, HOUR_MS, &delay), -EINVAL);
    CHECK(delay == 1);
}

static void test_timer_delay(void)
{
    static const struct {
        int64_t target, now;
        uint64_t cap, want;
    } cases[] = {
        {1000, 1000, 30000, 0},
        {999, 1000, 30000, 0},
        {1001, 1000, 30000, 1},
        {31000, 1000, 30000, 30000},
        {31001, 1000, 30000, 30000},
        {5000, 1000, 0, 0},
        {INT64_MIN, 1000, 30000, 0},
        {INT64_MIN, INT64_MAX, 30000, 0},
        {INT64_MAX, INT64_MIN, 30000, 30000},
        {INT64_MAX, INT64_MIN, UINT64_MAX, UINT64_MAX},
        {INT64_MAX, 0, UINT64_MAX, (uint64_t)INT64_MAX},
        {0, INT64_MIN, UINT64_MAX, UINT64_C(1) << 63},
        {-5, -10, 30000, 5},
        {INT64_MAX, INT64_MAX - 1, 30000, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = policy_timer_delay_ms(cases[i].target, cases[i].now, cases[i].cap);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu: got %" PRIu64 ", want %" PRIu64 "\n", i, got,
                    cases[i].want);
        CHECK(got == cases[i].want);
    }
}

/* Known answers computed independently (splitmix64 expansion of the seed,
 * then xoshiro256**), so that a broken generator fails here. */
static void test_rng_known_answers(void)
{
    static const struct {
        uint64_t seed;
        uint64_t out[5];
    } cases[] = {
        {1,
         {UINT64_C(0xb3f2af6d0fc710c5), UINT64_C(0x853b559647364cea),
          UINT64_C(0x92f89756082a4514), UINT64_C(0x642e1c7bc266a3a7),
          UINT64_C(0xb27a48e29a233673)}},
        {UINT64_C(0x123456789abcdef),
         {UINT64_C(0xa2c2a42038d4ec3d), UINT64_C(0x05fc25d0738e7b0f),
          UINT64_C(0x625e7bff938e701e), UINT64_C(0x1ba4ddc6fe2b5726),
          UINT64_C(0xdf0a2482ac9254cf)}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rng r;
        rng_seed(&r, cases[i].seed);
        for (size_t k = 0; k < 5; k++)
            CHECK(rng_next(&r) == cases[i].out[k]);
    }
}

static void test_rng_entropy_seed(void)
{
    struct rng a, b;
    rng_seed(&a, 0);
    rng_seed(&b, 0);
    CHECK(a.s[0] | a.s[1] | a.s[2] | a.s[3]);
    /* Two kernel seeds agreeing on 3 outputs would mean no entropy at all. */
    int same = 0;
    for (int i = 0; i < 3; i++)
        same += rng_next(&a) == rng_next(&b);
    CHECK(same < 3);
}

TEST_MAIN(CASE(test_classify), CASE(test_outcome_names_and_levels), CASE(test_backoff_table),
          CASE(test_backoff_bounds), CASE(test_backoff_spread), CASE(test_retry_after),
          CASE(test_timer_delay), CASE(test_rng_known_answers), CASE(test_rng_entropy_seed))

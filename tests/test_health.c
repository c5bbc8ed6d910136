/* Unit tests for health: the endpoint state machine, driven with explicit
 * monotonic times and fixed random values. */
#include <curl/curl.h> /* CURL_ERROR_SIZE: curl's message makes the longest reason */
#include <limits.h>

#include "health.h"
#include "util.h"
#include "unit.h"

#define BASE 1000
#define MAX 60000
#define RMAX UINT64_MAX /* rnd that picks the top of the jitter range */
#define RMIN 0          /* rnd that picks base */
#define NEVER UINT64_MAX

static const enum outcome down = OUTCOME_ENDPOINT_DOWN;
static const enum outcome misconf = OUTCOME_ENDPOINT_MISCONFIGURED;

/* Allowance with the wake time; wake is NEVER-1 when it was not written. */
static unsigned allow(const struct health *h, uint64_t now, unsigned in_flight, unsigned want,
                      uint64_t *wake)
{
    *wake = NEVER - 1;
    return health_allowance(h, now, in_flight, want, wake);
}

/* Fail `n` requests at `now` while UP; returns how many reported a change. */
static int fail_n(struct health *h, uint64_t now, unsigned n, enum outcome o)
{
    int changes = 0;
    for (unsigned i = 0; i < n; i++)
        changes += health_on_result(h, now, o, 0, RMAX, "connection refused");
    return changes;
}

static void test_init(void)
{
    struct health h;
    memset(&h, 0xa5, sizeof(h));
    health_init(&h, 5, BASE, MAX);
    CHECK_INT(h.state, HEALTH_UP);
    CHECK_INT(h.down_after, 5);
    CHECK(h.base_ms == BASE && h.max_ms == MAX);
    CHECK_INT(h.failures_in_row, 0);
    CHECK_INT(h.probes_failed, 0);
    CHECK(!h.misconfigured && !h.probe_in_flight);
    CHECK(h.not_before_ms == 0);
    CHECK_STR(h.last_error, "");
    CHECK_STR(health_describe(&h, 0), "up");

    uint64_t wake;
    CHECK_INT(allow(&h, 0, 0, 16, &wake), 16);
    CHECK(wake == NEVER - 1); /* not written when requests may go */
    CHECK_INT(allow(&h, 0, 15, 16, &wake), 16);
    CHECK_INT(health_allowance(&h, 0, 0, 3, NULL), 3);
}

/* UP -> DOWN after exactly down_after endpoint-level failures in a row,
 * whatever the down_after; a token-level answer in between resets the run. */
static void test_down_after_exactly(void)
{
    static const unsigned cases[] = {1, 2, 5, 9};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned d = cases[i];
        struct health h;
        health_init(&h, d, BASE, MAX);
        CHECK_INT(fail_n(&h, 100, d - 1, down), 0);
        CHECK_INT(h.state, HEALTH_UP);
        CHECK_INT(h.failures_in_row, d - 1);
        CHECK_STR(health_describe(&h, 100), "up");
        CHECK_INT(fail_n(&h, 100, 1, down), 1);
        CHECK_INT(h.state, HEALTH_DOWN);
        CHECK_STR(health_describe(&h, 100), "down");
        CHECK_STR(h.last_error, "connection refused");
    }

    /* 4 failures, an answer, 4 failures: still up */
    struct health h;
    health_init(&h, 5, BASE, MAX);
    fail_n(&h, 100, 4, down);
    CHECK(!health_on_result(&h, 100, OUTCOME_TOKEN_RETRY, 0, RMAX, "500"));
    CHECK_INT(h.failures_in_row, 0);
    fail_n(&h, 100, 4, down);
    CHECK_INT(h.state, HEALTH_UP);
    fail_n(&h, 100, 1, down);
    CHECK_INT(h.state, HEALTH_DOWN);

    /* down_after 0 behaves as 1 */
    health_init(&h, 0, BASE, MAX);
    CHECK(health_on_result(&h, 100, down, 0, RMAX, "x"));
    CHECK_INT(h.state, HEALTH_DOWN);
}

/* DOWN: the first probe after base, one at a time, the n-th interval after a
 * failed probe follows policy_backoff_ms(base, max, probes_failed + 1). */
static void test_probe_schedule(void)
{
    struct health h;
    health_init(&h, 3, BASE, MAX);
    uint64_t now = 10000, wake;
    fail_n(&h, now, 3, down);
    REQUIRE(h.state == HEALTH_DOWN);
    CHECK(h.not_before_ms == now + BASE);
    CHECK_INT(h.probes_failed, 0);

    /* nothing before base has passed */
    CHECK_INT(allow(&h, now + BASE - 1, 0, 16, &wake), 0);
    CHECK(wake == now + BASE);
    /* then exactly one */
    now += BASE;
    CHECK_INT(allow(&h, now, 0, 16, &wake), 1);
    CHECK_INT(allow(&h, now, 0, 1, &wake), 1);
    CHECK_INT(allow(&h, now, 0, 0, &wake), 0);
    health_on_send(&h);
    CHECK(h.probe_in_flight);
    /* a probe in flight: nothing more, and only its completion can change that */
    CHECK_INT(allow(&h, now, 1, 16, &wake), 0);
    CHECK(wake == NEVER);
    CHECK_INT(allow(&h, now + 10 * MAX, 1, 16, &wake), 0);
    CHECK(wake == NEVER);

    /* failed probes: intervals with rnd at the top are 2, 4, 8, 16, 32, 60, 60 s */
    static const uint64_t top[] = {2000, 4000, 8000, 16000, 32000, 60000, 60000};
    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
        now += 777; /* the probe took a while */
        CHECK(!health_on_result(&h, now, down, 0, RMAX, "timeout"));
        CHECK_INT(h.state, HEALTH_DOWN);
        CHECK(!h.probe_in_flight);
        CHECK_INT(h.probes_failed, i + 1);
        CHECK(h.not_before_ms == now + top[i]);
        CHECK(h.not_before_ms == now + policy_backoff_ms(BASE, MAX, (unsigned)i + 2, RMAX));
        CHECK_INT(allow(&h, now + top[i] - 1, 0, 16, &wake), 0);
        CHECK(wake == now + top[i]);
        now += top[i];
        CHECK_INT(allow(&h, now, 0, 16, &wake), 1);
        health_on_send(&h);
    }

    /* with rnd at the bottom every interval is base */
    CHECK(!health_on_result(&h, now, down, 0, RMIN, "timeout"));
    CHECK(h.not_before_ms == now + BASE);
    /* and a mid rnd lands in between, as policy says */
    now += BASE;
    health_on_send(&h);
    uint64_t mid = UINT64_C(1) << 63;
    CHECK(!health_on_result(&h, now, down, 0, mid, "timeout"));
    CHECK(h.not_before_ms == now + policy_backoff_ms(BASE, MAX, h.probes_failed + 1, mid));
    CHECK(h.not_before_ms > now + BASE && h.not_before_ms < now + MAX);
}

/* A successful probe (any token-level answer) brings it UP at full speed. */
static void test_recovery(void)
{
    static const enum outcome answers[] = {OUTCOME_REVOKED, OUTCOME_ALREADY_INVALID,
                                           OUTCOME_REJECTED, OUTCOME_TOKEN_RETRY};
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        struct health h;
        health_init(&h, 2, BASE, MAX);
        uint64_t now = 5000, wake;
        fail_n(&h, now, 2, down);
        now += BASE;
        CHECK_INT(allow(&h, now, 0, 16, &wake), 1);
        health_on_send(&h);
        CHECK(!health_on_result(&h, now + 10, down, 0, RMAX, "refused"));
        now += 10 + 2 * BASE;
        CHECK_INT(allow(&h, now, 0, 16, &wake), 1);
        health_on_send(&h);
        CHECK(health_on_result(&h, now + 5, answers[i], 0, RMAX, NULL));
        CHECK_INT(h.state, HEALTH_UP);
        CHECK_INT(h.failures_in_row, 0);
        CHECK_INT(h.probes_failed, 0);
        CHECK(!h.probe_in_flight);
        CHECK_STR(h.last_error, "");
        CHECK_STR(health_describe(&h, now + 5), "up");
        CHECK_INT(allow(&h, now + 5, 0, 16, &wake), 16);
        /* a second token-level answer changes nothing */
        CHECK(!health_on_result(&h, now + 6, answers[i], 0, RMAX, NULL));
        /* and it takes a full run of failures to go down again */
        CHECK_INT(fail_n(&h, now + 7, 1, down), 0);
        CHECK_INT(h.state, HEALTH_UP);
        CHECK_INT(fail_n(&h, now + 7, 1, down), 1);
        CHECK_INT(h.state, HEALTH_DOWN);
        /* the backoff starts over from base */
        CHECK(h.not_before_ms == now + 7 + BASE);
    }
}

/* 16 requests in flight, the endpoint dies: the 3rd failure takes it DOWN,
 * the 13 others complete afterwards. They are not probes: they must neither
 * count as failed probes, nor push the probe back, nor clear the flag of a
 * real probe; and no probe starts while they are still out. */
static void test_leftovers_after_down(void)
{
    struct health h;
    health_init(&h, 3, BASE, MAX);
    uint64_t now = 1000, wake;
    for (int i = 0; i < 16; i++) {
        CHECK_INT(allow(&h, now, (unsigned)i, 1, &wake), 1);
        health_on_send(&h);
    }
    CHECK(!h.probe_in_flight); /* sent while UP */
    unsigned in_flight = 16;
    fail_n(&h, now + 50, 3, down);
    in_flight -= 3;
    REQUIRE(h.state == HEALTH_DOWN);
    uint64_t probe_at = now + 50 + BASE;
    CHECK(h.not_before_ms == probe_at);

    /* leftovers still out: no probe, even after not_before */
    CHECK_INT(allow(&h, probe_at, in_flight, 16, &wake), 0);
    CHECK(wake == NEVER);

    /* 12 of them fail after a while, past the probe time */
    for (int i = 0; i < 12; i++) {
        CHECK(!health_on_result(&h, probe_at + 100 + (uint64_t)i, down, 0, RMAX, "timeout"));
        in_flight--;
    }
    CHECK_INT(h.probes_failed, 0);
    CHECK(h.not_before_ms == probe_at);
    CHECK_INT(h.state, HEALTH_DOWN);
    CHECK_INT(allow(&h, probe_at + 200, in_flight, 16, &wake), 0);

    /* the last leftover is done: now exactly one probe */
    CHECK(!health_on_result(&h, probe_at + 300, down, 0, RMAX, "timeout"));
    in_flight--;
    CHECK_INT(in_flight, 0);
    CHECK_INT(allow(&h, probe_at + 300, in_flight, 16, &wake), 1);
    health_on_send(&h);
    in_flight++;
    CHECK(h.probe_in_flight);
    CHECK_INT(allow(&h, probe_at + 300, in_flight, 16, &wake), 0);

    /* the probe fails: the second interval (n = 2) follows */
    CHECK(!health_on_result(&h, probe_at + 400, down, 0, RMAX, "timeout"));
    in_flight--;
    CHECK_INT(h.probes_failed, 1);
    CHECK(h.not_before_ms == probe_at + 400 + 2 * BASE);
}

/* A leftover that gets a real answer proves the endpoint answers. */
static void test_leftover_success_recovers(void)
{
    struct health h;
    health_init(&h, 2, BASE, MAX);
    uint64_t wake;
    fail_n(&h, 1000, 2, down);
    REQUIRE(h.state == HEALTH_DOWN);
    CHECK(health_on_result(&h, 3000, OUTCOME_REVOKED, 0, RMAX, NULL));
    CHECK_INT(h.state, HEALTH_UP);
    CHECK_INT(allow(&h, 3000, 5, 16, &wake), 16);
}

/* Retry-After holds every request until its time, then requests flow again;
 * it never shortens an earlier pause and is independent of UP/DOWN. */
static void test_retry_after_pause(void)
{
    struct health h;
    health_init(&h, 5, BASE, MAX);
    uint64_t now = 20000, wake;

    CHECK(!health_on_result(&h, now, down, 30000, RMAX, "429"));
    CHECK_INT(h.state, HEALTH_UP);
    CHECK(h.not_before_ms == now + 30000);
    CHECK_STR(health_describe(&h, now), "paused");
    for (uint64_t t = now; t < now + 30000; t += 7001) {
        CHECK_INT(allow(&h, t, 0, 16, &wake), 0);
        CHECK(wake == now + 30000);
    }
    CHECK_INT(allow(&h, now + 29999, 0, 16, &wake), 0);

    /* completions of requests sent before the 429 do not lift the pause */
    CHECK(!health_on_result(&h, now + 100, OUTCOME_REVOKED, 0, RMAX, NULL));
    CHECK_INT(allow(&h, now + 100, 0, 16, &wake), 0);
    CHECK_STR(health_describe(&h, now + 100), "paused");

    /* a shorter Retry-After does not shorten it, a longer one extends it */
    CHECK(!health_on_result(&h, now + 200, down, 1000, RMAX, "503"));
    CHECK(h.not_before_ms == now + 30000);
    CHECK(!health_on_result(&h, now + 300, down, 40000, RMAX, "503"));
    CHECK(h.not_before_ms == now + 40300);

    /* then full speed */
    CHECK_INT(allow(&h, now + 40300, 0, 16, &wake), 16);
    CHECK_STR(health_describe(&h, now + 40300), "up");

    /* huge values saturate instead of wrapping into the past */
    CHECK(!health_on_result(&h, now, OUTCOME_REVOKED, UINT64_MAX, RMAX, NULL));
    CHECK(h.not_before_ms == UINT64_MAX);
    CHECK_INT(allow(&h, UINT64_MAX - 1, 0, 16, &wake), 0);
}

/* The metrics' clocks: time DOWN (the current outage up to now, then the
 * ended ones), and time held by Retry-After, overlapping windows once. */
/* A new URL: UP and forgiven at once; the counters since start stay. */
static void test_reset_keeps_the_counters(void)
{
    struct health h;
    uint64_t d, p;

    health_init(&h, 2, BASE, MAX);
    health_on_result(&h, 1000, down, 3000, RMAX, "429"); /* paused 1 s .. 4 s */
    fail_n(&h, 10000, 2, down);                                           /* DOWN at 10 s */
    REQUIRE(h.state == HEALTH_DOWN);
    health_reset(&h, 12000);
    CHECK(h.state == HEALTH_UP);
    CHECK_INT(h.failures_in_row, 0);
    CHECK_STR(h.last_error, "");
    health_times(&h, 20000, &d, &p);
    CHECK_INT(d, 2000); /* 10 s .. 12 s, not growing after the reset */
    CHECK_INT(p, 3000);
}

static void test_times(void)
{
    struct health h;
    uint64_t d, p;

    health_init(&h, 2, BASE, MAX);
    health_times(&h, 5000, &d, &p);
    CHECK_INT(d, 0);
    CHECK_INT(p, 0);
    fail_n(&h, 10000, 2, down); /* DOWN at 10 s */
    REQUIRE(h.state == HEALTH_DOWN);
    health_times(&h, 12500, &d, &p);
    CHECK_INT(d, 2500);
    CHECK(!health_on_result(&h, 13000, down, 0, RMAX, "x")); /* a leftover: still DOWN */
    CHECK(health_on_result(&h, 14000, OUTCOME_REVOKED, 0, RMAX, NULL));
    health_times(&h, 20000, &d, &p);
    CHECK_INT(d, 4000);                                      /* 10 s .. 14 s, then UP */
    fail_n(&h, 30000, 2, down);
    CHECK(health_on_result(&h, 31000, OUTCOME_REVOKED, 0, RMAX, NULL));
    health_times(&h, 40000, &d, &p);
    CHECK_INT(d, 5000);
    CHECK_INT(p, 0);

    /* Retry-After 3 s at 50 s, 1 s more at 51 s (overlap), then 2 s at 60 s. */
    health_on_result(&h, 50000, down, 3000, RMAX, "429");
    health_times(&h, 51000, &d, &p);
    CHECK_INT(p, 1000);
    health_on_result(&h, 51000, down, 3000, RMAX, "429");   /* until 54 s */
    health_times(&h, 56000, &d, &p);
    CHECK_INT(p, 4000);
    health_on_result(&h, 60000, down, 2000, RMAX, "503");
    health_times(&h, 61000, &d, &p);
    CHECK_INT(p, 5000);
    health_times(&h, 70000, &d, &p);
    CHECK_INT(p, 6000);
    /* The two 429s at 50 s and 51 s were endpoint-level failures in a row:
     * DOWN since 51 s as well. */
    CHECK_INT(d, 5000 + 19000);
    health_configure(&h, 3, BASE, MAX);                     /* a reload keeps them */
    health_times(&h, 70000, &d, &p);
    CHECK_INT(d, 24000);
    CHECK_INT(p, 6000);
}

/* A Retry-After on the failure that takes it DOWN, or on a failed probe,
 * wins over a shorter backoff. */
static void test_retry_after_while_down(void)
{
    struct health h;
    health_init(&h, 2, BASE, MAX);
    uint64_t now = 1000, wake;
    fail_n(&h, now, 1, down);
    CHECK(health_on_result(&h, now, down, 120000, RMAX, "503"));
    CHECK_INT(h.state, HEALTH_DOWN);
    CHECK(h.not_before_ms == now + 120000);
    CHECK_STR(health_describe(&h, now), "down");
    CHECK_INT(allow(&h, now + BASE, 0, 16, &wake), 0);
    CHECK(wake == now + 120000);

    /* a pause set while UP is not shortened by going DOWN */
    health_init(&h, 2, BASE, MAX);
    CHECK(!health_on_result(&h, now, down, 90000, RMAX, "429"));
    CHECK(health_on_result(&h, now + 10, down, 0, RMAX, "refused"));
    CHECK(h.not_before_ms == now + 90000);

    /* the probe at the end of the pause fails with another Retry-After */
    now += 90000;
    CHECK_INT(allow(&h, now, 0, 16, &wake), 1);
    health_on_send(&h);
    CHECK(!health_on_result(&h, now + 5, down, 300000, RMAX, "503"));
    CHECK_INT(h.probes_failed, 1);
    CHECK(h.not_before_ms == now + 5 + 300000);
}

/* 3xx/404/405: endpoint-level failures that also set misconfigured, which the
 * next token-level answer clears. */
static void test_misconfigured(void)
{
    struct health h;
    health_init(&h, 3, BASE, MAX);
    uint64_t wake;

    CHECK(health_on_result(&h, 100, misconf, 0, RMAX, "HTTP 404 from https://x/v2/logot"));
    CHECK(h.misconfigured);
    CHECK_INT(h.state, HEALTH_UP);
    CHECK_INT(h.failures_in_row, 1);
    CHECK_STR(h.last_error, "HTTP 404 from https://x/v2/logot");
    CHECK_STR(health_describe(&h, 100), "misconfigured");
    CHECK_INT(allow(&h, 100, 0, 16, &wake), 16);
    /* a second one: no change to report */
    CHECK(!health_on_result(&h, 110, misconf, 0, RMAX, "HTTP 404"));
    /* the third counts towards down_after like any endpoint failure */
    CHECK(health_on_result(&h, 120, misconf, 0, RMAX, "HTTP 302"));
    CHECK_INT(h.state, HEALTH_DOWN);
    CHECK(h.misconfigured);
    CHECK_STR(health_describe(&h, 120), "misconfigured");
    CHECK_STR(h.last_error, "HTTP 302");

    /* the probe answers 404 again: still down, backoff grows */
    CHECK_INT(allow(&h, 120 + BASE, 0, 16, &wake), 1);
    health_on_send(&h);
    CHECK(!health_on_result(&h, 120 + BASE, misconf, 0, RMAX, "HTTP 404"));
    CHECK_INT(h.probes_failed, 1);

    /* fixed: the next answer is about the token */
    uint64_t t = h.not_before_ms;
    CHECK_INT(allow(&h, t, 0, 16, &wake), 1);
    health_on_send(&h);
    CHECK(health_on_result(&h, t, OUTCOME_REJECTED, 0, RMAX, "422"));
    CHECK(!h.misconfigured);
    CHECK_INT(h.state, HEALTH_UP);
    CHECK_STR(health_describe(&h, t), "up");

    /* misconfigured set and cleared while UP reports both changes */
    CHECK(health_on_result(&h, t, misconf, 0, RMAX, "HTTP 405"));
    CHECK(health_on_result(&h, t, OUTCOME_REVOKED, 0, RMAX, NULL));
    CHECK(!h.misconfigured);
    /* plain endpoint-down failures do not set it */
    fail_n(&h, t, 3, down);
    CHECK(!h.misconfigured);
    CHECK_STR(health_describe(&h, t), "down");
    /* no why: the outcome's name */
    CHECK(health_on_result(&h, t, misconf, 0, RMAX, NULL));
    CHECK_STR(h.last_error, "endpoint_misconfigured");
}

/* Return value: true exactly when UP/DOWN or misconfigured changed. */
static void test_change_reports(void)
{
    static const struct {
        enum outcome o;
        uint64_t retry_after;
        bool want;
        enum health_state state_after;
        bool misconf_after;
    } steps[] = {
        {OUTCOME_REVOKED, 0, false, HEALTH_UP, false},
        {OUTCOME_ENDPOINT_DOWN, 0, false, HEALTH_UP, false},
        {OUTCOME_ENDPOINT_DOWN, 5000, false, HEALTH_UP, false}, /* a pause is no change */
        {OUTCOME_ENDPOINT_DOWN, 0, true, HEALTH_DOWN, false},   /* 3rd: down */
        {OUTCOME_ENDPOINT_DOWN, 0, false, HEALTH_DOWN, false},
        {OUTCOME_ENDPOINT_MISCONFIGURED, 0, true, HEALTH_DOWN, true},
        {OUTCOME_ENDPOINT_MISCONFIGURED, 0, false, HEALTH_DOWN, true},
        {OUTCOME_ENDPOINT_DOWN, 0, false, HEALTH_DOWN, true},
        {OUTCOME_ALREADY_INVALID, 0, true, HEALTH_UP, false},
        {OUTCOME_ALREADY_INVALID, 0, false, HEALTH_UP, false},
        {OUTCOME_ENDPOINT_MISCONFIGURED, 0, true, HEALTH_UP, true},
        {OUTCOME_TOKEN_RETRY, 0, true, HEALTH_UP, false},
    };
    struct health h;
    health_init(&h, 3, BASE, MAX);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        bool got = health_on_result(&h, 1000 + i, steps[i].o, steps[i].retry_after, RMAX, "why");
        if (got != steps[i].want)
            fprintf(stderr, "step %zu: changed %d, want %d\n", i, got, steps[i].want);
        CHECK_INT(got, steps[i].want);
        CHECK_INT(h.state, steps[i].state_after);
        CHECK_INT(h.misconfigured, steps[i].misconf_after);
    }
}

/* health_configure mid-way: new settings apply from the next decision, a
 * running interval is kept. */
static void test_configure_midway(void)
{
    struct health h;
    health_init(&h, 5, BASE, MAX);
    uint64_t now = 1000, wake;

    /* 3 failures with down_after 5, then down_after lowered to 3: the next
     * failure takes it down */
    fail_n(&h, now, 3, down);
    health_configure(&h, 3, BASE, MAX);
    CHECK_INT(h.state, HEALTH_UP);
    CHECK_INT(h.down_after, 3);
    CHECK(health_on_result(&h, now, down, 0, RMAX, "x"));
    CHECK_INT(h.state, HEALTH_DOWN);
    CHECK(h.not_before_ms == now + BASE);

    /* base and max change while DOWN: the pending probe time stays, the next
     * interval uses the new values */
    health_configure(&h, 3, 200, 500);
    CHECK(h.not_before_ms == now + BASE);
    CHECK_INT(h.state, HEALTH_DOWN);
    now += BASE;
    CHECK_INT(allow(&h, now, 0, 16, &wake), 1);
    health_on_send(&h);
    CHECK(!health_on_result(&h, now, down, 0, RMAX, "x"));
    CHECK(h.not_before_ms == now + 400);
    now += 400;
    health_on_send(&h);
    CHECK(!health_on_result(&h, now, down, 0, RMAX, "x"));
    CHECK(h.not_before_ms == now + 500); /* capped by the new max */

    /* raising down_after while DOWN does not bring it up */
    health_configure(&h, 50, 200, 500);
    CHECK_INT(h.state, HEALTH_DOWN);
    CHECK_STR(health_describe(&h, now), "down");
}

/* Counters saturate; the backoff exponent does not wrap back to 1. */
static void test_saturation(void)
{
    struct health h;
    health_init(&h, 3, BASE, MAX);
    fail_n(&h, 0, 3, down);
    h.probes_failed = UINT_MAX - 1;
    h.failures_in_row = UINT_MAX;
    uint64_t now = UINT64_MAX - 10, wake;
    h.not_before_ms = 0;
    CHECK_INT(allow(&h, now, 0, 1, &wake), 1);
    health_on_send(&h);
    CHECK(!health_on_result(&h, now, down, 0, RMAX, "x"));
    CHECK(h.probes_failed == UINT_MAX);
    CHECK(h.failures_in_row == UINT_MAX);
    CHECK(h.not_before_ms == UINT64_MAX); /* now + 60 s saturates */

    health_init(&h, 3, BASE, MAX);
    fail_n(&h, 0, 3, down);
    h.probes_failed = UINT_MAX;
    h.not_before_ms = 0;
    health_on_send(&h);
    CHECK(!health_on_result(&h, 1000, down, 0, RMAX, "x"));
    CHECK(h.probes_failed == UINT_MAX);
    CHECK(h.not_before_ms == 1000 + MAX);
}

/* last_error holds an outcome's longest reason whole; a longer text is
 * cut visibly and never overflows. */
static void test_last_error_truncated(void)
{
    char why[400];
    struct health h;

    memset(why, 'e', sizeof(why) - 1);
    memcpy(why, "curl error 6 (", 14);
    why[14 + CURL_ERROR_SIZE - 1] = ')';
    why[14 + CURL_ERROR_SIZE] = '\0';
    health_init(&h, 1, BASE, MAX);
    CHECK(health_on_result(&h, 0, down, 0, RMAX, why));
    CHECK_STR(h.last_error, why);

    memset(why, 'e', sizeof(why) - 1);
    why[sizeof(why) - 1] = '\0';
    health_init(&h, 1, BASE, MAX);
    CHECK(health_on_result(&h, 0, down, 0, RMAX, why));
    CHECK_INT(strlen(h.last_error), sizeof(h.last_error) - 1);
    CHECK(strcmp(h.last_error + strlen(h.last_error) - 3, UTIL_ELLIPSIS) == 0);
}

/* The rate limit, driven with explicit nanoseconds. */
#define MS_NS 1000000ull

/* Requests let through one after the other at now_ns, each taken. */
static unsigned burst(struct health_rate *r, unsigned rate, uint64_t now_ns, uint64_t *ret_wait)
{
    unsigned n = 0;
    while (health_rate_allows(r, rate, now_ns, ret_wait)) {
        health_rate_take(r, rate);
        if (++n > 100000)
            break;
    }
    return n;
}

static void test_rate_unlimited(void)
{
    struct health_rate r;
    uint64_t wait = 77;

    health_rate_init(&r, 5 * MS_NS);
    for (int i = 0; i < 1000; i++) {
        CHECK(health_rate_allows(&r, 0, 5 * MS_NS, &wait));
        health_rate_take(&r, 0);
    }
    CHECK_INT(wait, 77); /* never written */
    CHECK(r.bucket == 1);
}

static void test_rate_table(void)
{
    static const struct {
        unsigned rate;
        uint64_t idle_ms;  /* after init, before the burst */
        unsigned burst;    /* requests let through at once */
        uint64_t wait_ms;  /* then asked to wait this long */
    } cases[] = {
        {1, 0, 1, 1001},        /* a fresh bucket holds one request */
        {1, 60000, 1, 1001},    /* never more than one below 100/s */
        {10, 0, 1, 101},
        {10, 1000, 1, 101},
        {100, 1000, 1, 11},
        {200, 1000, 2, 6},      /* 10 ms worth: 2 */
        {1000, 0, 1, 2},
        {1000, 10, 10, 2},
        {1000, 5, 6, 2},        /* 1 + 5 ms worth */
        {1000, 60000, 10, 2},   /* capped at 10 ms worth */
        {1000000, 60000, 10000, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct health_rate r;
        uint64_t wait = 0, t0 = 123456789;
        health_rate_init(&r, t0);
        unsigned n = burst(&r, cases[i].rate, t0 + cases[i].idle_ms * MS_NS, &wait);
        if (n != cases[i].burst || wait != cases[i].wait_ms)
            fprintf(stderr, "case %zu: rate %u: burst %u wait %" PRIu64 "\n", i, cases[i].rate, n, wait);
        CHECK_INT(n, cases[i].burst);
        CHECK_INT(wait, cases[i].wait_ms);
    }
}

/* The wait shrinks as the bucket refills; at the promised time one goes. */
static void test_rate_refill(void)
{
    struct health_rate r;
    uint64_t wait = 0, t = 1000 * MS_NS;

    health_rate_init(&r, t);
    CHECK(health_rate_allows(&r, 10, t, &wait));
    health_rate_take(&r, 10);
    CHECK(!health_rate_allows(&r, 10, t, &wait));
    CHECK_INT(wait, 101);
    CHECK(!health_rate_allows(&r, 10, t + 50 * MS_NS, &wait));
    CHECK_INT(wait, 51);
    CHECK(!health_rate_allows(&r, 10, t + 99 * MS_NS, &wait));
    CHECK_INT(wait, 2);
    CHECK(health_rate_allows(&r, 10, t + 100 * MS_NS, &wait));
    health_rate_take(&r, 10);
    CHECK(!health_rate_allows(&r, 10, t + 100 * MS_NS, &wait));
    CHECK_INT(wait, 101);
    /* A new rate (reload) applies at once to what is in the bucket. */
    CHECK(!health_rate_allows(&r, 1, t + 100 * MS_NS, &wait));
    CHECK_INT(wait, 1001);
    CHECK(health_rate_allows(&r, 1000, t + 101 * MS_NS, &wait));
}

TEST_MAIN(CASE(test_init), CASE(test_down_after_exactly), CASE(test_probe_schedule),
          CASE(test_recovery), CASE(test_leftovers_after_down),
          CASE(test_leftover_success_recovers), CASE(test_retry_after_pause), CASE(test_times), CASE(test_reset_keeps_the_counters),
          CASE(test_retry_after_while_down), CASE(test_misconfigured),
          CASE(test_change_reports), CASE(test_configure_midway), CASE(test_saturation),
          CASE(test_last_error_truncated), CASE(test_rate_unlimited), CASE(test_rate_table),
          CASE(test_rate_refill))

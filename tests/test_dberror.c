/* dberror: a persistent database error is said once, then once a minute
 * with its count, and its end once; retries back off from 250 ms to 4 s. */
#include "dberror.h"
#include "unit.h"

static void test_same_error_said_once_then_a_minute_later(void)
{
    struct dberror e = {0};
    uint64_t retry = 0, t = 1000;
    unsigned said = 0;

    CHECK_INT(dberror_failed(&e, "marking due tokens", "no such index: tokens_next", t, &retry), DBERROR_FIRST);
    CHECK_INT(retry, 250);
    /* Ten seconds of retries at the delays given: all quiet. */
    for (int i = 0; i < 40 && t < 10000; i++) {
        t += retry;
        if (dberror_failed(&e, "marking due tokens", "no such index: tokens_next", t, &retry) != DBERROR_QUIET)
            said++;
    }
    CHECK_INT(said, 0);
    CHECK_INT(retry, DBERROR_RETRY_MAX_MS);
    /* A minute after the first line: one summary with the count so far. */
    t = 1000 + DBERROR_SUMMARY_MS;
    CHECK_INT(dberror_failed(&e, "marking due tokens", "no such index: tokens_next", t, &retry), DBERROR_STILL);
    CHECK(e.count > 5);
    CHECK_INT(e.since_ms, 1000);
    CHECK_INT(dberror_failed(&e, "marking due tokens", "no such index: tokens_next", t + 4000, &retry),
              DBERROR_QUIET);
}

static void test_backoff_doubles_to_the_cap(void)
{
    static const uint64_t want[] = {250, 500, 1000, 2000, 4000, 4000, 4000};
    struct dberror e = {0};
    uint64_t retry = 0;

    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        (void)dberror_failed(&e, "recording outcomes", "database is locked", 100 * i, &retry);
        CHECK_INT(retry, want[i]);
    }
}

static void test_another_error_is_said_at_once(void)
{
    struct dberror e = {0};
    uint64_t retry = 0;

    (void)dberror_failed(&e, "recording outcomes", "database is locked", 0, &retry);
    (void)dberror_failed(&e, "recording outcomes", "database is locked", 250, &retry);
    CHECK_INT(dberror_failed(&e, "recording outcomes", "database or disk is full", 500, &retry), DBERROR_FIRST);
    CHECK_INT(retry, 250);
    CHECK_INT(e.count, 1);
    CHECK_INT(dberror_failed(&e, "reading due tokens", "database or disk is full", 750, &retry), DBERROR_FIRST);
}

static void test_only_the_failing_step_ends_it(void)
{
    struct dberror e = {0};
    uint64_t retry = 0;

    CHECK(!dberror_ok(&e, "recording outcomes")); /* nothing failed */
    (void)dberror_failed(&e, "marking due tokens", "no such index: tokens_next", 0, &retry);
    CHECK(!dberror_ok(&e, "recording outcomes"));
    CHECK(dberror_ok(&e, "marking due tokens"));
    dberror_clear(&e);
    CHECK(!dberror_ok(&e, "marking due tokens"));
    CHECK_INT(dberror_failed(&e, "marking due tokens", "no such index: tokens_next", 10, &retry), DBERROR_FIRST);
}

static void test_a_brief_lock_is_retried_quietly(void)
{
    struct dberror e = {0};
    uint64_t retry = 0, now = 1000;

    for (unsigned i = 0; i < 10; i++) {
        CHECK(dberror_busy(&e, now, &retry));
        CHECK_INT(retry, DBERROR_BUSY_RETRY_MS);
        now += 40;
    }
    CHECK_INT(e.count, 0); /* no failure said */
    /* It lasts: a failure like any other from then on. */
    CHECK(!dberror_busy(&e, 1000 + DBERROR_BUSY_QUIET_MS, &retry));
    /* A write that went through ends it: the next lock starts again. */
    dberror_not_busy(&e);
    CHECK(dberror_busy(&e, 5000, &retry));
    CHECK_INT(retry, 1);
    CHECK(dberror_busy(&e, 5000 + DBERROR_BUSY_QUIET_MS - 1, &retry));
}

TEST_MAIN(CASE(test_same_error_said_once_then_a_minute_later), CASE(test_backoff_doubles_to_the_cap),
          CASE(test_another_error_is_said_at_once), CASE(test_only_the_failing_step_ends_it),
          CASE(test_a_brief_lock_is_retried_quietly))

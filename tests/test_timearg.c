/* Tests of timearg: the time forms --since and the daemon's replies use, in
 * UTC and in a zone east of it (POSIX TZ strings, no tzdata needed). */
#include <errno.h>
#include <time.h>

#include "timearg.h"
#include "unit.h"

#define T_DAY INT64_C(1795737600000) /* 2026-11-27T00:00:00Z */
#define H INT64_C(3600000)

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static const struct {
    const char *tz, *s;
    int ret;
    int64_t ms;
} parse_cases[] = {
    {"UTC0", "2026-11-27", 0, T_DAY},
    {"UTC0", "2026-11-27 10:00", 0, T_DAY + 10 * H},
    {"UTC0", "2026-11-27T10:00", 0, T_DAY + 10 * H},
    {"UTC0", "2026-11-27 10:00:30", 0, T_DAY + 10 * H + 30000},
    {"UTC0", "2026-11-27 10:00:30.25", 0, T_DAY + 10 * H + 30250},
    {"UTC0", "2026-11-27T10:00:00.123456Z", 0, T_DAY + 10 * H + 123},
    {"UTC0", "2026-11-27T10:00:00Z", 0, T_DAY + 10 * H},
    {"UTC0", "2026-11-27T10:00:00+01:00", 0, T_DAY + 9 * H},
    {"UTC0", "2026-11-27T10:00:00-0500", 0, T_DAY + 15 * H},
    {"UTC0", "2026-11-27T10:00Z", 0, T_DAY + 10 * H},
    /* local time is the zone's: Tokyo is 9 h ahead; Z and offsets are not */
    {"JST-9", "2026-11-27", 0, T_DAY - 9 * H},
    {"JST-9", "2026-11-27 10:00", 0, T_DAY + H},
    {"JST-9", "2026-11-27T10:00:00Z", 0, T_DAY + 10 * H},
    {"JST-9", "2026-11-27T10:00:00+09:00", 0, T_DAY + H},
    {"UTC0", "", -EINVAL, 0},
    {"UTC0", "yesterday-ish", -EINVAL, 0},
    {"UTC0", "2026-11-27X", -EINVAL, 0},
    {"UTC0", "2026-11-27T10:00:00+1", -EINVAL, 0},
    {"UTC0", "2026-11-27T10:00:00+01:00x", -EINVAL, 0},
    {"UTC0", "2026-11-27T10:00:00Zulu", -EINVAL, 0},
    {"UTC0", "2026-11-27 10:00.5", -EINVAL, 0}, /* a fraction needs seconds */
    {"UTC0", "1h", -EINVAL, 0},                 /* a span is timearg_since's */
};

static void test_parse(void)
{
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        int64_t ms = -1;
        set_tz(parse_cases[i].tz);
        int r = timearg_parse(parse_cases[i].s, &ms);
        if (r != parse_cases[i].ret || (r == 0 && ms != parse_cases[i].ms)) {
            fprintf(stderr, "TZ=%s \"%s\": got %d, %lld; expected %d, %lld\n", parse_cases[i].tz,
                    parse_cases[i].s, r, (long long)ms, parse_cases[i].ret,
                    (long long)parse_cases[i].ms);
            unit_failures++;
        }
        if (r < 0)
            CHECK_INT(ms, -1); /* untouched on error */
    }
}

static void test_since(void)
{
    const int64_t now = T_DAY + 12 * H;
    int64_t ms = -1;

    set_tz("UTC0");
    CHECK_INT(timearg_since("1h", now, &ms), 0);
    CHECK_INT(ms, now - H);
    CHECK_INT(timearg_since("30min", now, &ms), 0);
    CHECK_INT(ms, now - H / 2);
    CHECK_INT(timearg_since("1h 30min", now, &ms), 0);
    CHECK_INT(ms, now - 3 * H / 2);
    CHECK_INT(timearg_since("2026-11-27", now, &ms), 0); /* a time before a span */
    CHECK_INT(ms, T_DAY);
    CHECK_INT(timearg_since("60000w", now, &ms), 0); /* before 1970: from the first row on */
    CHECK_INT(ms, 1);
    ms = -1;
    CHECK_INT(timearg_since("soon", now, &ms), -EINVAL);
    CHECK_INT(timearg_since("", now, &ms), -EINVAL);
    CHECK_INT(ms, -1);
}

static void test_until(void)
{
    static const struct {
        const char *s;
        int ret;
        int64_t secs;
    } cases[] = {
        {"1795000000", 0, 1795000000},                       /* Unix seconds */
        {"2026-11-27T10:00:00Z", 0, T_DAY / 1000 + 36000},   /* a time */
        {"2026-11-27 10:00:00.25", 0, T_DAY / 1000 + 36001}, /* rounded up */
        {"1h", 0, (T_DAY + 13 * H) / 1000},                  /* ahead of now */
        {"90s", 0, (T_DAY + 12 * H) / 1000 + 90},
        {"1h 30min", 0, (T_DAY + 12 * H + 3 * H / 2) / 1000},
        {"", -EINVAL, 0},
        {"soon", -EINVAL, 0},
        {"-5", -EINVAL, 0},
        {"99999999999999999999", -EINVAL, 0},
    };
    const int64_t now = T_DAY + 12 * H;

    set_tz("UTC0");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t s = -1;
        int r = timearg_until(cases[i].s, now, &s);
        if (r != cases[i].ret || (r == 0 && s != cases[i].secs))
            fprintf(stderr, "\"%s\": got %d, %lld\n", cases[i].s, r, (long long)s);
        CHECK_INT(r, cases[i].ret);
        CHECK_INT(s, r == 0 ? cases[i].secs : -1);
    }
}

static void test_local(void)
{
    char buf[64];

    set_tz("UTC0");
    timearg_local(T_DAY + 10 * H + 3000, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-27 10:00:03 UTC");
    set_tz("JST-9");
    timearg_local(T_DAY + 10 * H + 3999, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-27 19:00:03 JST");
    timearg_local(0, buf, sizeof(buf));
    CHECK_STR(buf, "-");
    timearg_local(-5, buf, sizeof(buf));
    CHECK_STR(buf, "-");
    timearg_local(T_DAY, buf, 8); /* too small for the whole: "-", not half a time */
    CHECK_STR(buf, "-");
}

TEST_MAIN(CASE(test_parse), CASE(test_since), CASE(test_until), CASE(test_local))

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

TEST_MAIN(CASE(test_parse), CASE(test_since), CASE(test_local))

/* timearg: strptime with a list of formats, mktime for local times and
 * timegm plus the offset for the others. */
#include "timearg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "util.h"

int timearg_parse(const char *s, int64_t *ret_ms)
{
    static const char *const formats[] = {
        "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
    };
    for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *p = strptime(s, formats[i], &tm);
        if (!p)
            continue;
        int64_t frac = 0;
        if (*p == '.' && i < 2) { /* fractions of a second after the formats with seconds */
            int64_t scale = 100;
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac += scale > 0 ? (*p - '0') * scale : 0;
        }
        time_t t;
        if (*p == '\0') {
            tm.tm_isdst = -1;
            t = mktime(&tm);
        } else if (*p == 'Z' && p[1] == '\0') {
            t = timegm(&tm);
        } else if (*p == '+' || *p == '-') {
            int hh, mm, n = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || p[1 + n] != '\0') {
                n = 0;
                if (sscanf(p + 1, "%2d%2d%n", &hh, &mm, &n) != 2 || p[1 + n] != '\0')
                    continue;
            }
            t = timegm(&tm);
            int off = (hh * 60 + mm) * 60;
            t += *p == '+' ? -off : off;
        } else {
            continue;
        }
        if (t == (time_t)-1)
            continue;
        *ret_ms = (int64_t)t * 1000 + frac;
        return 0;
    }
    return -EINVAL;
}

int timearg_since(const char *s, int64_t now_ms, int64_t *ret_ms)
{
    uint64_t span;
    if (timearg_parse(s, ret_ms) == 0)
        return 0;
    if (config_parse_duration(s, &span) == 0) {
        *ret_ms = (int64_t)span > now_ms ? 1 : now_ms - (int64_t)span;
        return 0;
    }
    return -EINVAL;
}

int timearg_until(const char *s, int64_t now_ms, int64_t *ret_s)
{
    uint64_t span;
    int64_t ms;
    size_t digits = strspn(s, "0123456789");

    if (digits > 0 && s[digits] == '\0') {
        if (digits > 15) /* past the year 3000 many times: no time */
            return -EINVAL;
        *ret_s = strtoll(s, NULL, 10);
        return 0;
    }
    if (timearg_parse(s, &ms) < 0) {
        if (config_parse_duration(s, &span) < 0 || span > (uint64_t)(INT64_MAX - now_ms))
            return -EINVAL;
        ms = now_ms + (int64_t)span;
    }
    *ret_s = ms / 1000 + (ms % 1000 > 0);
    return 0;
}

void timearg_local(int64_t ms, char *buf, size_t len)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    if (ms <= 0 || !localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
        snprintf(buf, len, "-");
}

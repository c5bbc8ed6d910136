/* util: the formatting helper (util.h). */
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void util_vformat(char *buf, size_t len, const char *fmt, va_list ap)
{
    size_t keep;
    int n;

    if (!buf || len == 0)
        return;
    n = vsnprintf(buf, len, fmt, ap);
    if (n < 0 || (size_t)n < len || len < sizeof(UTIL_ELLIPSIS))
        return;
    /* Cut: keep what leaves room for the ellipsis, without splitting a
     * character (buf[keep] is the first byte dropped) ... */
    keep = len - sizeof(UTIL_ELLIPSIS);
    while (keep > 0 && ((unsigned char)buf[keep] & 0xc0) == 0x80)
        keep--;
    /* ... and at the end of a word if one is near */
    for (size_t k = keep; k > 0 && keep - k < UTIL_CUT_WORD; k--) {
        if (buf[k] == ' ') {
            while (k > 0 && buf[k - 1] == ' ')
                k--;
            if (k > 0)
                keep = k;
            break;
        }
    }
    memcpy(buf + keep, UTIL_ELLIPSIS, sizeof(UTIL_ELLIPSIS));
}

void util_format(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    util_vformat(buf, len, fmt, ap);
    va_end(ap);
}

bool util_iso_ms(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char day[40];

    if (ms <= 0 || !gmtime_r(&t, &tm) || strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return false;
    snprintf(buf, len, "%s.%03dZ", day, (int)(ms % 1000));
    return true;
}

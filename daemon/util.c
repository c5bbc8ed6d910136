/* util: the formatting helper (util.h). */
#include "util.h"

#include <stdio.h>

void util_vformat(char *buf, size_t len, const char *fmt, va_list ap)
{
    if (!buf || len == 0)
        return;
    vsnprintf(buf, len, fmt, ap);
}

void util_format(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    util_vformat(buf, len, fmt, ap);
    va_end(ap);
}

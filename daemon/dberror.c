/* dberror: see header. */
#include "dberror.h"

#include <stdio.h>
#include <string.h>

enum dberror_say dberror_failed(struct dberror *e, const char *what, const char *msg, uint64_t now_ms,
                                uint64_t *ret_retry_ms)
{
    unsigned shift;

    if (e->count == 0 || strncmp(e->what, what, sizeof(e->what) - 1) != 0 ||
        strncmp(e->msg, msg, sizeof(e->msg) - 1) != 0) {
        snprintf(e->what, sizeof(e->what), "%s", what);
        snprintf(e->msg, sizeof(e->msg), "%s", msg);
        e->since_ms = now_ms;
        e->count = 1;
        e->told = 1;
        e->told_ms = now_ms;
        *ret_retry_ms = DBERROR_RETRY_MIN_MS;
        return DBERROR_FIRST;
    }
    e->count++;
    shift = e->count - 1 < 4 ? (unsigned)(e->count - 1) : 4; /* 250 ms << 4 = 4 s */
    *ret_retry_ms = (uint64_t)DBERROR_RETRY_MIN_MS << shift;
    if (*ret_retry_ms > DBERROR_RETRY_MAX_MS)
        *ret_retry_ms = DBERROR_RETRY_MAX_MS;
    if (now_ms - e->told_ms < DBERROR_SUMMARY_MS)
        return DBERROR_QUIET;
    e->told = e->count;
    e->told_ms = now_ms;
    return DBERROR_STILL;
}

bool dberror_ok(const struct dberror *e, const char *what)
{
    return e->count > 0 && strncmp(e->what, what, sizeof(e->what) - 1) == 0;
}

void dberror_clear(struct dberror *e)
{
    memset(e, 0, sizeof(*e));
}

bool dberror_busy(struct dberror *e, uint64_t now_ms, uint64_t *ret_retry_ms)
{
    if (!e->busy_since_ms)
        e->busy_since_ms = now_ms ? now_ms : 1;
    if (now_ms - e->busy_since_ms >= DBERROR_BUSY_QUIET_MS)
        return false;
    *ret_retry_ms = DBERROR_BUSY_RETRY_MS;
    return true;
}

void dberror_not_busy(struct dberror *e)
{
    e->busy_since_ms = 0;
}

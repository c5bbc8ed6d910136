/* audithead: a uv_timer_t and one audit_get_head() per line. */
#include "audithead.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "log.h"
#include "util.h"

struct audithead {
    uv_timer_t timer;
    struct db *db;
    uint64_t interval_ms;
};

static void on_timer(uv_timer_t *t)
{
    (void)audithead_log(container_of(t, struct audithead, timer));
}

static void on_closed(uv_handle_t *handle)
{
    free(container_of((uv_timer_t *)handle, struct audithead, timer));
}

int audithead_new(uv_loop_t *loop, struct db *db, uint64_t interval_ms, struct audithead **ret_head)
{
    struct audithead *h = calloc(1, sizeof(*h));

    if (!h)
        return -ENOMEM;
    h->db = db;
    uv_timer_init(loop, &h->timer);
    audithead_set_interval(h, interval_ms);
    *ret_head = h;
    return 0;
}

int audithead_log(struct audithead *h)
{
    struct audit_head head;
    int rc = audit_get_head(h->db, &head);

    if (rc < 0) {
        log_warning("cannot read the audit log's head (%s): no head line this time", db_errmsg(h->db));
        return rc;
    }
    log_audit_head(LOG_NOTICE, head.seq, head.hash, "audit head: seq %" PRId64 " hash %s", head.seq, head.hash);
    return 0;
}

void audithead_set_interval(struct audithead *h, uint64_t interval_ms)
{
    h->interval_ms = interval_ms ? interval_ms : 1;
    uv_timer_start(&h->timer, on_timer, h->interval_ms, h->interval_ms);
}

void audithead_close(struct audithead *h)
{
    if (h)
        uv_close((uv_handle_t *)&h->timer, on_closed);
}

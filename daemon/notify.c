#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define STATUS_INTERVAL_MS 1000
#define STATUS_MAX 512

struct notify {
    uv_loop_t *loop;
    uv_timer_t watchdog;
    uv_timer_t status_timer;
    unsigned open_handles;  /* freed when the last close callback ran */
    bool enabled;           /* NOTIFY_SOCKET was set at notify_new() */
    bool status_sent;       /* last_status/last_status_ms are valid */
    bool status_pending;
    bool failing;           /* the last sd_notify() failed (logged once) */
    uint64_t last_status_ms;
    char last_status[STATUS_MAX];
    char pending[STATUS_MAX];
};

/* sd_notify() fails only when the socket is unusable (gone, full, refused).
 * Nothing to do instead but go on; say so once per run of failures, because
 * systemd will time out the start or fire the watchdog for it. */
static void send_line(struct notify *n, const char *msg)
{
    int r = sd_notify(0, msg);

    if (r < 0 && !n->failing) {
        n->failing = true;
        log_err("sd_notify(%.*s) failed: %s; systemd may time out the start or the watchdog",
                (int)strcspn(msg, "="), msg, strerror(-r));
    } else if (r > 0 && n->failing) {
        n->failing = false;
        log_notice("sd_notify works again");
    }
}

static void send_status(struct notify *n, const char *text)
{
    char msg[sizeof("STATUS=") + STATUS_MAX];

    snprintf(msg, sizeof(msg), "STATUS=%s", text);
    send_line(n, msg);
    /* strlen(text) < STATUS_MAX: both come from STATUS_MAX buffers. */
    memcpy(n->last_status, text, strlen(text) + 1);
    n->last_status_ms = uv_now(n->loop);
    n->status_sent = true;
}

static void status_timer_cb(uv_timer_t *t)
{
    struct notify *n = t->data;

    if (!n->status_pending)
        return;
    n->status_pending = false;
    send_status(n, n->pending);
}

static void watchdog_cb(uv_timer_t *t)
{
    send_line(t->data, "WATCHDOG=1");
}

static void handle_closed(uv_handle_t *h)
{
    struct notify *n = h->data;

    if (--n->open_handles == 0)
        free(n);
}

int notify_new(uv_loop_t *loop, struct notify **ret_notify)
{
    struct notify *n;
    uint64_t usec = 0;
    int r;

    n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->loop = loop;
    const char *sock = getenv("NOTIFY_SOCKET");
    n->enabled = sock && *sock;

    r = uv_timer_init(loop, &n->watchdog);
    if (r < 0)
        goto err_after_alloc;
    n->watchdog.data = n;
    n->open_handles++;
    r = uv_timer_init(loop, &n->status_timer);
    if (r < 0)
        goto err_after_watchdog;
    n->status_timer.data = n;
    n->open_handles++;
    /* Neither timer is a reason for the loop to keep running. */
    uv_unref((uv_handle_t *)&n->watchdog);
    uv_unref((uv_handle_t *)&n->status_timer);

    /* sd_watchdog_enabled() checks WATCHDOG_PID against our pid too. A loop
     * timer, not a thread: a stuck loop must stop the pings. */
    if (n->enabled && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        uint64_t every_ms = usec / 2000;

        if (every_ms == 0)
            every_ms = 1;
        r = uv_timer_start(&n->watchdog, watchdog_cb, every_ms, every_ms);
        if (r < 0)
            goto err_after_status_timer;
        send_line(n, "WATCHDOG=1");
    }

    *ret_notify = n;
    return 0;

err_after_status_timer:
    uv_close((uv_handle_t *)&n->status_timer, handle_closed);
err_after_watchdog:
    uv_close((uv_handle_t *)&n->watchdog, handle_closed);
    return r;
err_after_alloc:
    free(n);
    return r;
}

void notify_ready(struct notify *n)
{
    if (n && n->enabled)
        send_line(n, "READY=1");
}

void notify_reloading(struct notify *n)
{
    struct timespec ts;
    char msg[64];

    if (!n || !n->enabled)
        return;
    /* systemd compares MONOTONIC_USEC with its own clock to match the
     * RELOADING=1 to the reload request it belongs to. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
    send_line(n, msg);
}

void notify_stopping(struct notify *n)
{
    if (!n || !n->enabled)
        return;
    /* A status line held back by the rate limit is the last word: say it. */
    if (n->status_pending) {
        n->status_pending = false;
        uv_timer_stop(&n->status_timer);
        send_status(n, n->pending);
    }
    send_line(n, "STOPPING=1");
}

void notify_status(struct notify *n, const char *fmt, ...)
{
    char text[STATUS_MAX];
    va_list ap;

    if (!n || !n->enabled)
        return;
    va_start(ap, fmt);
    util_vformat(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* A newline would start a new KEY=VALUE assignment in the datagram. */
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    /* The latest line wins: an older pending one is dropped, and a line equal
     * to what systemd already shows needs no datagram. */
    if (n->status_sent && strcmp(text, n->last_status) == 0) {
        n->status_pending = false;
        uv_timer_stop(&n->status_timer);
        return;
    }
    uint64_t now = uv_now(n->loop);
    if (!n->status_sent || now - n->last_status_ms >= STATUS_INTERVAL_MS) {
        n->status_pending = false;
        uv_timer_stop(&n->status_timer);
        send_status(n, text);
        return;
    }
    memcpy(n->pending, text, sizeof(text));
    if (!n->status_pending) {
        n->status_pending = true;
        /* Cannot fail on an initialized timer with a callback. */
        uv_timer_start(&n->status_timer, status_timer_cb,
                       n->last_status_ms + STATUS_INTERVAL_MS - now, 0);
    }
}

void notify_close(struct notify *n)
{
    if (!n)
        return;
    uv_close((uv_handle_t *)&n->watchdog, handle_closed);
    uv_close((uv_handle_t *)&n->status_timer, handle_closed);
}

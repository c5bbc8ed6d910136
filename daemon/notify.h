/* notify: talking to systemd through sd_notify.
 *
 * READY=1 once, STATUS= lines at most once a second (the latest wins),
 * WATCHDOG=1 from a loop timer at half of WATCHDOG_USEC when
 * sd_watchdog_enabled() says so, RELOADING=1 with MONOTONIC_USEC,
 * STOPPING=1. Without NOTIFY_SOCKET everything is a no-op. */
#pragma once

#include <stdbool.h>
#include <uv.h>

struct notify;

int notify_new(uv_loop_t *loop, struct notify **ret_notify);
void notify_ready(struct notify *n);
void notify_reloading(struct notify *n);
void notify_stopping(struct notify *n);
/* Queue a status line; sent now if the last one went out >= 1 s ago,
 * otherwise from a timer. The text must hold no secret. */
void notify_status(struct notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void notify_close(struct notify *n); /* frees itself once its timers are closed */

/* metrics_http: the optional HTTP listener for Prometheus ([metrics] listen),
 * GET /metrics (and HEAD) answered with metrics_render()'s text: the text
 * format 0.0.4, or OpenMetrics 1.0 when the Accept header prefers it. 404
 * for any other path, 405 (with Allow) for any other method.
 *
 * libmicrohttpd in its external-polling mode, driven from the daemon's loop:
 * one uv_poll_t watches MHD's epoll descriptor and one uv_timer_t follows
 * MHD_get_timeout(); MHD_run() after each wake. No thread. A scrape renders
 * from memory (metrics.h), so the loop never waits on the table for it.
 * A slow or hostile scraper is capped: METRICS_HTTP_MAX_CONNS connections
 * (one more closes the oldest, so that slow ones cannot lock a scraper
 * out), METRICS_HTTP_TIMEOUT_S of silence,
 * and METRICS_HTTP_CONN_MEMORY bytes per connection for the request line and
 * headers (a longer request is answered 431 and closed).
 *
 * Lifecycle: metrics_http_new() at start (binds; a bind error is fatal for
 * the caller), metrics_http_close(cb) at stop: the listening socket is
 * closed (a UNIX socket's file removed) and cb runs once the handles are. */
#pragma once

#include <stddef.h>
#include <uv.h>

#include "metrics.h"

#define METRICS_HTTP_MAX_CONNS 64
#define METRICS_HTTP_TIMEOUT_S 5
#define METRICS_HTTP_CONN_MEMORY (16 * 1024)

struct metrics_http;

/* listen: as listenaddr_parse() reads it (config_validate checked it).
 * m: where scrapes come from; NULL answers 503 (no counter). -errno and a
 * message in err when the address cannot be bound. */
int metrics_http_new(uv_loop_t *loop, const char *listen, struct metrics *m, struct metrics_http **ret, char *err,
                     size_t errlen);
/* NULL is fine (cb runs at once then, if given). */
void metrics_http_close(struct metrics_http *h, void (*cb)(void *data), void *data);

/* The format an Accept header asks for: OpenMetrics when it lists
 * application/openmetrics-text with a q at least that of text/plain (or of
 * the text/ * or * / * range that covers it); the text format otherwise,
 * also for NULL. */
enum metrics_exposition metrics_http_negotiate(const char *accept);

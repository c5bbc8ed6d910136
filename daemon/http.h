/* http: POST requests to the logout endpoint through libcurl's multi_socket
 * interface, driven by the libuv loop: one uv_poll_t per socket curl asks
 * for (curl_multi_assign), one uv_timer_t for curl's timeout, finished
 * transfers drained with curl_multi_info_read after every socket action.
 * Connections are kept alive and reused; easy handles are pooled.
 *
 * Lifecycle: http_new() -> http_submit()* -> http_close(cb). A submit that
 * fails calls nothing; a submit that succeeds calls req->done exactly once,
 * also when the request is cancelled by http_close (curl_code
 * CURLE_ABORTED_BY_CALLBACK). The caller owns the request struct and must
 * keep it alive until done runs. The Authorization header is built in a
 * buffer that is wiped after the transfer; the secret is never logged. */
#pragma once

#include <curl/curl.h>
#include <stdint.h>
#include <uv.h>

struct http_options {
    const char *url;
    uint64_t timeout_ms;      /* whole transfer */
    const char *ca_file;      /* NULL: system store */
    const char *extra_header; /* NULL or "Name: value" sent with every request (a client credential) */
    unsigned max_connections; /* the concurrency: connections kept open */
};

struct http_result {
    long status;              /* HTTP status; 0 when there was no response */
    CURLcode curl_code;       /* CURLE_OK when a response arrived */
    char error[CURL_ERROR_SIZE]; /* curl's message when curl_code != OK */
    char retry_after[64];     /* the Retry-After header's value, "" if none */
    char body[512];           /* start of the response body, NUL-terminated (for 4xx details) */
    uint64_t duration_ms;
    uint64_t duration_us;     /* the same, finer: for the metrics' histogram */
};

struct http_request;
typedef void (*http_done_cb)(struct http_request *req, const struct http_result *res);

struct http_request {
    /* set by the caller before http_submit */
    const char *token;        /* read during http_submit only (copied into the header, wiped later) */
    size_t token_len;
    void *data;
    http_done_cb done;
    /* private */
    void *priv;
};

struct http;

int http_new(uv_loop_t *loop, const struct http_options *o, struct http **ret_http);
/* New settings for the requests submitted from now on (reload). 0 or -ENOMEM. */
int http_configure(struct http *h, const struct http_options *o);
int http_submit(struct http *h, struct http_request *req);
unsigned http_in_flight(const struct http *h);
/* Abort what is in flight (each done runs), close every handle, then call
 * cb(data) once everything libuv owned is closed, and free h. */
void http_close(struct http *h, void (*cb)(void *data), void *data);

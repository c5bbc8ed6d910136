/* metrics_http: GET /metrics over libmicrohttpd on the daemon's loop (see
 * metrics_http.h). */
#include "metrics_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listenaddr.h"
#include "log.h"
#include "util.h"

struct metrics_http {
    uv_loop_t *loop;
    struct metrics *metrics;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;   /* MHD's epoll descriptor */
    uv_timer_t timer; /* MHD_get_timeout() */
    unsigned open_handles;
    unsigned conns; /* connections MHD holds (MHD_OPTION_NOTIFY_CONNECTION) */
    /* Each connection MHD holds, with its age (a counter), for on_accept;
     * MHD's CONNECTION_LIMIT keeps them within. */
    struct conn_slot {
        struct MHD_Connection *conn; /* NULL: free */
        uint64_t seq;
        bool closing; /* shut down for a newer one; MHD has not closed it yet */
    } slots[2 * METRICS_HTTP_MAX_CONNS];
    uint64_t seq;
    unsigned closing;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* bound by us: removed at close */
    void (*closed)(void *);
    void *closed_data;
};

/* ---- content negotiation ---- */

/* One media range of an Accept header, "type/subtype;param=v;q=0.5": its
 * q (1 without one; 0 for a malformed q). */
static double range_q(const char *range, size_t len)
{
    const char *q = NULL;

    for (size_t i = 0; i + 2 < len; i++)
        if (range[i] == ';') {
            size_t j = i + 1;
            while (j < len && range[j] == ' ')
                j++;
            if (j + 1 < len && (range[j] == 'q' || range[j] == 'Q') && range[j + 1] == '=')
                q = range + j + 2;
        }
    if (!q)
        return 1;
    char buf[16];
    size_t n = strcspn(q, ";,");
    if (n >= sizeof(buf))
        return 0;
    memcpy(buf, q, n);
    buf[n] = '\0';
    char *end;
    double v = strtod(buf, &end);
    return end != buf && v >= 0 && v <= 1 ? v : 0;
}

static bool range_is(const char *range, size_t len, const char *type)
{
    size_t n = strlen(type);

    while (len && *range == ' ')
        range++, len--;
    return len >= n && strncasecmp(range, type, n) == 0 && (len == n || range[n] == ';' || range[n] == ' ');
}

enum metrics_exposition metrics_http_negotiate(const char *accept)
{
    /* q of openmetrics; of text/plain, text/ *, * / * (most specific wins) */
    double om = -1, text = -1, text_any = -1, any = -1;

    for (const char *p = accept; p && *p;) {
        size_t len = strcspn(p, ",");
        double q = range_q(p, len);
        if (range_is(p, len, "application/openmetrics-text"))
            om = q > om ? q : om;
        else if (range_is(p, len, "text/plain"))
            text = q > text ? q : text;
        else if (range_is(p, len, "text/*"))
            text_any = q;
        else if (range_is(p, len, "*/*"))
            any = q;
        p += len + (p[len] == ',');
    }
    if (text < 0)
        text = text_any >= 0 ? text_any : any;
    return om > 0 && om >= text ? METRICS_OPENMETRICS : METRICS_TEXT;
}

/* ---- requests ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body, const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ok;

    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* The path of a request target: the absolute form ("http://host/metrics",
 * RFC 9112 3.2.2, as a proxy sends it) has one too. */
static const char *path_of(const char *url)
{
    size_t skip = strncasecmp(url, "http://", 7) == 0 ? 7 : strncasecmp(url, "https://", 8) == 0 ? 8 : 0;
    const char *path = skip ? strchr(url + skip, '/') : url;

    return path ? path : "";
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct metrics_http *h = cls;
    enum metrics_exposition fmt;
    struct MHD_Response *r;
    enum MHD_Result ok;
    char *text;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    /* Answered at the headers: a body is never read (MHD closes the
     * connection after the answer when one was sent). */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD /metrics\n", "GET, HEAD");
    if (strcmp(path_of(url), "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "not found: revokerd serves /metrics only\n", NULL);
    if (!h->metrics)
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                     "metrics unavailable: revokerd could not open the database to count the tokens (see its log)\n",
                     NULL);
    fmt = metrics_http_negotiate(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
    text = metrics_render(h->metrics, fmt);
    if (!text)
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n", NULL);
    r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, metrics_content_type(fmt));
    MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT);
    ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

/* MHD's own messages (a connection over the limit, a request too large)
 * are a scraper's doing, not the daemon's: debug. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];
    size_t n;

    (void)cls;
    util_vformat(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_debug("metrics listener: %s", msg);
}

/* Over the cap, the oldest connection is shut down (MHD sees its end and
 * closes it) and the new one is served: slow or idle connections cannot
 * lock a scraper out, whose request takes a millisecond. MHD's own limit
 * stops accepting instead, and the excess waits in the listen backlog:
 * with 80 half-sent requests against a limit of 64, 0.9.75 in external
 * epoll mode had not served or closed the last 16 after 30 s. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct metrics_http *h = cls;
    struct conn_slot *oldest = NULL;

    (void)addr;
    (void)addrlen;
    if (h->conns - h->closing < METRICS_HTTP_MAX_CONNS)
        return MHD_YES;
    for (size_t i = 0; i < ARRAY_SIZE(h->slots); i++)
        if (h->slots[i].conn && !h->slots[i].closing && (!oldest || h->slots[i].seq < oldest->seq))
            oldest = &h->slots[i];
    const union MHD_ConnectionInfo *info =
        oldest ? MHD_get_connection_info(oldest->conn, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
    if (!info || shutdown(info->connect_fd, SHUT_RDWR) < 0)
        return MHD_NO;
    oldest->closing = true;
    h->closing++;
    return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct metrics_http *h = cls;
    struct conn_slot *slot = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        h->conns++;
        for (size_t i = 0; i < ARRAY_SIZE(h->slots) && !*socket_context; i++)
            if (!h->slots[i].conn) {
                h->slots[i] = (struct conn_slot){.conn = conn, .seq = ++h->seq};
                *socket_context = &h->slots[i];
            }
        return;
    }
    if (h->conns)
        h->conns--;
    if (slot) {
        h->closing -= slot->closing;
        slot->conn = NULL;
        slot->closing = false;
    }
}

/* ---- the loop ---- */

static void on_timer(uv_timer_t *t);

/* Let MHD do what is ready, then wake again when it says. */
static void run(struct metrics_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms;

    MHD_run(h->mhd);
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *t)
{
    run(container_of(t, struct metrics_http, timer));
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status; /* an error on the epoll descriptor: MHD_run sees it */
    (void)events;
    run(container_of(p, struct metrics_http, poll));
}

/* ---- the socket ---- */

/* A stale UNIX socket file (nobody listening) is replaced; anything else
 * at the path is left alone. */
static int clear_unix_path(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, r;

    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket; not replacing it", path);
        return -EEXIST;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (r == 0) {
        snprintf(err, errlen, "something already listens on %s", path);
        return -EADDRINUSE;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        r = -errno;
        snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(-r));
        return r;
    }
    return 0;
}

/* Bound here rather than by MHD: one path for TCP and UNIX sockets (MHD
 * 0.9.75 binds IP addresses only) and our own error messages. */
static int bind_listener(struct metrics_http *h, const struct listenaddr *a, const char *text, int *ret_fd,
                         char *err, size_t errlen)
{
    int fam = a->ss.ss_family, one = 1, fd, r;

    if (fam == AF_UNIX) {
        r = clear_unix_path(text, err, errlen);
        if (r < 0)
            return r;
    }
    fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot create a socket for %s: %s", text, strerror(-r));
        return r;
    }
    if (fam != AF_UNIX)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fam == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot bind %s: %s", text, strerror(-r));
        close(fd);
        return r;
    }
    if (fam == AF_UNIX) {
        snprintf(h->unix_path, sizeof(h->unix_path), "%s", text);
        /* The metrics hold no secret: whoever may reach the directory may
         * scrape, as anyone on the host may scrape a loopback port. */
        (void)chmod(text, 0666);
    }
    if (listen(fd, METRICS_HTTP_MAX_CONNS) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot listen on %s: %s", text, strerror(-r));
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct metrics_http *h = handle->data;
    void (*cb)(void *) = h->closed;
    void *data = h->closed_data;

    if (--h->open_handles)
        return;
    free(h);
    if (cb)
        cb(data);
}

int metrics_http_new(uv_loop_t *loop, const char *listen, struct metrics *m, struct metrics_http **ret, char *err,
                     size_t errlen)
{
    struct metrics_http *h;
    struct listenaddr a;
    const union MHD_DaemonInfo *info;
    char why[256];
    int fd = -1, rc;

    if (listenaddr_parse(listen, &a, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "[metrics] listen: %s", why);
        return -EINVAL;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->loop = loop;
    h->metrics = m;
    rc = bind_listener(h, &a, listen, &fd, err, errlen);
    if (rc < 0)
        goto err_after_alloc;
    h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, on_accept, h, on_request, h,
                              MHD_OPTION_LISTEN_SOCKET, fd,
                              /* a backstop: on_accept keeps them below */
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)(2 * METRICS_HTTP_MAX_CONNS),
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_HTTP_TIMEOUT_S,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_HTTP_CONN_MEMORY,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                              MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, /* main ignores SIGPIPE */
                              MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot start the HTTP server on %s (libmicrohttpd refused it)", listen);
        close(fd);
        rc = -EIO;
        goto err_after_bind;
    }
    info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    rc = info ? uv_poll_init(loop, &h->poll, info->epoll_fd) : -ENOTSUP;
    if (rc < 0) {
        snprintf(err, errlen, "cannot watch the HTTP server's descriptor: %s", uv_strerror(rc));
        goto err_after_start;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h->timer.data = h;
    h->open_handles = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    run(h);
    if (!a.loopback) {
        char shown[LISTENADDR_TEXT_MAX];
        listenaddr_format(&a, shown, sizeof(shown));
        log_notice("metrics: listening on %s, which is not a loopback address: anyone who reaches it may scrape "
                   "(the metrics hold no secret)", shown);
    }
    *ret = h;
    return 0;

err_after_start:
    MHD_stop_daemon(h->mhd); /* closes fd */
err_after_bind:
    if (h->unix_path[0])
        unlink(h->unix_path);
err_after_alloc:
    free(h);
    return rc;
}

void metrics_http_close(struct metrics_http *h, void (*cb)(void *data), void *data)
{
    if (!h) {
        if (cb)
            cb(data);
        return;
    }
    h->closed = cb;
    h->closed_data = data;
    /* uv_close() takes the poll handle off MHD's epoll descriptor at
     * once: before MHD closes it. */
    uv_close((uv_handle_t *)&h->poll, on_handle_closed);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    if (h->unix_path[0])
        unlink(h->unix_path);
}

/* http: see header. The shape of curl's docs/examples/multi-uv.c, hardened:
 *
 * - Each socket curl tells us about gets a struct sock holding its uv_poll_t.
 *   There is at most one struct sock per fd number at any time, so two poll
 *   handles never watch one fd: when curl closes a socket its handle is
 *   closed, and if curl opens a new socket with the same number before the
 *   close callback ran, the closing sock takes the new socket over ("reborn")
 *   and its close callback initialises the handle again instead of freeing.
 * - No handle outlives its fd. A libuv handle left on a closed fd keeps the
 *   fd number's slot in the loop: the next socket given that number (a
 *   control client, say) has its events delivered to the old handle, and
 *   stopping that handle takes the new socket out of epoll. So a handle is
 *   kept after curl stops watching (CURL_POLL_REMOVE) only for a connection
 *   whose close we are sure to hear of: a socket we opened
 *   (CURLOPT_OPENSOCKETFUNCTION) that got connected (curl asked to read it),
 *   which curl closes through CURLOPT_CLOSESOCKETFUNCTION. Every other
 *   socket's handle is closed at REMOVE: the threaded resolver's socketpair
 *   (curl closes it right after the REMOVE, without our callback) and a
 *   connection attempt that failed (curl closes those without the callback,
 *   and tells REMOVE only afterwards).
 * - Keeping a connection's handle and its read interest between requests
 *   costs no system call; libuv's uv_poll_start always re-registers the fd
 *   (epoll DEL, then ADD), so it is called only when the interest changed or
 *   the fd is a new socket.
 * - Each handle remembers the inode of the socket it was opened on. A fd
 *   number that curl hands us again is checked against it (fstat, once per
 *   new socket, not per request), and builds with assertions check it at
 *   every event and before every stop: a handle on a fd that is no longer its
 *   socket aborts there, not as a silent control socket later.
 * - curl's timer becomes one uv_timer_t; a timeout of 0 is a 0 ms timer, so
 *   curl_multi_socket_action is never called from inside a curl callback.
 * - Finished transfers are drained after every socket action. A done
 *   callback may submit, reconfigure or close: the drain stops once closing.
 * - Memory of a handle is freed only in its close callback; struct http
 *   counts its open handles and frees itself when the last one closed.
 * - The secrets (the Authorization line, the extra header) live in curl's
 *   copies of our slist nodes for the duration of a transfer only; they are
 *   wiped before the list is freed. This module logs nothing. */
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <assert.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "secret.h"
#include "util.h"


#define AUTH_PREFIX "Authorization: Bearer "

enum sock_state {
    SOCK_UNOPENED, /* no uv handle (its init failed); curl still knows the socket */
    SOCK_ACTIVE,   /* poll handle open */
    SOCK_CLOSING,  /* uv_close called, close callback pending */
};

struct sock {
    uv_poll_t poll;
    struct http *h;
    curl_socket_t fd;
    int wanted;          /* UV_READABLE | UV_WRITABLE, what curl wants; 0: curl does not watch */
    int polled;          /* what the handle polls; 0: stopped */
    bool stale;          /* the fd number is a new socket since the handle last polled it */
    bool ours;           /* opened by on_open_socket: its close reaches on_close_socket */
    bool connected;      /* ours, and curl asked to read it: a connection curl may keep */
    ino_t ino;           /* the socket's inode when the handle (or struct) was made; 0: unknown */
    enum sock_state state;
    bool reborn;         /* CLOSING, but curl uses the fd again: reopen when closed */
    struct sock *prev, *next;
};

struct xfer {
    struct http *h;
    CURL *easy;
    struct curl_slist *headers;
    struct http_request *req;
    uint64_t start_ns;
    size_t body_len;
    bool answering;      /* a status line arrived */
    struct http_result res;
    struct xfer *prev, *next; /* h->busy (both) or h->idle (next only) */
};

struct http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    /* owned copies of the options */
    char *url, *ca_file, *extra_header;
    uint64_t timeout_ms;
    unsigned max_connections;

    struct sock *socks;
    struct xfer *busy;
    unsigned n_busy;
    struct xfer *idle;
    unsigned n_idle;

    unsigned open_handles; /* the timer and every open poll handle */
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
};

static void on_poll(uv_poll_t *poll, int status, int events);

/* ---- errors at the edge ---- */

static int easy_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_UNKNOWN_OPTION:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -ENOTSUP;
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return -EINVAL;
    default:
        return -EIO;
    }
}

static int multi_errno(CURLMcode c)
{
    switch (c) {
    case CURLM_OK:
        return 0;
    case CURLM_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLM_BAD_HANDLE:
    case CURLM_BAD_EASY_HANDLE:
    case CURLM_ADDED_ALREADY:
    case CURLM_UNKNOWN_OPTION:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* ---- options ---- */

/* Header text must not be able to start a new header line or request. */
static bool header_value_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static bool options_ok(const struct http_options *o)
{
    if (!o || !o->url || !o->url[0] || o->max_connections == 0 || o->timeout_ms == 0)
        return false;
    if (o->extra_header) {
        const char *colon = strchr(o->extra_header, ':');
        if (!colon || colon == o->extra_header || !header_value_ok(o->extra_header, strlen(o->extra_header)))
            return false;
    }
    return true;
}

static int multi_limits(CURLM *multi, unsigned max_connections)
{
    long n = (long)max_connections; /* unsigned fits in long on every target we build */
    CURLMcode mc;

    mc = curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, n);
    return multi_errno(mc);
}

/* Copy the strings of o; on failure nothing is kept. */
static int options_copy(const struct http_options *o, char **ret_url, char **ret_ca, char **ret_extra)
{
    char *url = strdup(o->url);
    char *ca = o->ca_file && o->ca_file[0] ? strdup(o->ca_file) : NULL;
    char *extra = o->extra_header ? strdup(o->extra_header) : NULL;

    if (!url || (o->ca_file && o->ca_file[0] && !ca) || (o->extra_header && !extra)) {
        free(url);
        free(ca);
        secret_free(extra);
        return -ENOMEM;
    }
    *ret_url = url;
    *ret_ca = ca;
    *ret_extra = extra;
    return 0;
}

/* ---- sockets ---- */

static void handle_closed(struct http *h);

static void sock_link(struct http *h, struct sock *s)
{
    s->prev = NULL;
    s->next = h->socks;
    if (h->socks)
        h->socks->prev = s;
    h->socks = s;
}

static void sock_unlink(struct http *h, struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

static struct sock *sock_find(struct http *h, curl_socket_t fd)
{
    for (struct sock *s = h->socks; s; s = s->next)
        if (s->fd == fd)
            return s;
    return NULL;
}

/* The inode of the socket at fd, 0 if fd is not open. */
static ino_t fd_inode(curl_socket_t fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* Builds with assertions: a handle only ever touches the socket it was
 * opened on (see the top of the file). */
static void sock_assert_owned(const struct sock *s)
{
#ifndef NDEBUG
    if (s->state == SOCK_ACTIVE && s->ino != 0 && fd_inode(s->fd) != s->ino) {
        fprintf(stderr, "http: the poll handle of fd %d outlived its socket\n", (int)s->fd);
        assert(!"a poll handle outlived its socket");
    }
#else
    (void)s;
#endif
}

/* Open the handle if needed and poll for what curl wants. */
static int sock_watch(struct http *h, struct sock *s)
{
    if (s->state == SOCK_UNOPENED) {
        if (uv_poll_init_socket(h->loop, &s->poll, s->fd) != 0)
            return -1;
        s->state = SOCK_ACTIVE;
        s->polled = 0;
        h->open_handles++;
    }
    if (s->polled == s->wanted && !s->stale)
        return 0;
    if (uv_poll_start(&s->poll, s->wanted, on_poll) != 0)
        return -1;
    s->polled = s->wanted;
    s->stale = false;
    return 0;
}

static void sock_stop(struct sock *s)
{
    if (s->state == SOCK_ACTIVE && s->polled) {
        sock_assert_owned(s);
        uv_poll_stop(&s->poll);
        s->polled = 0;
    }
}

static void on_sock_closed(uv_handle_t *handle)
{
    struct sock *s = container_of((uv_poll_t *)handle, struct sock, poll);
    struct http *h = s->h;

    if (s->reborn && !h->closing) {
        /* curl opened a socket with this number while we were closing:
         * only now may a new handle watch it. */
        s->reborn = false;
        s->stale = false;
        s->state = SOCK_UNOPENED;
        h->open_handles--;
        /* On failure the transfer ends at its timeout; the socket's close frees s. */
        (void)sock_watch(h, s);
        return;
    }
    sock_unlink(h, s);
    free(s);
    handle_closed(h);
}

/* The socket is closing (or we are done with curl). */
static void sock_release(struct http *h, struct sock *s)
{
    /* The socket is gone: a socket given its number later is new. */
    s->ours = false;
    s->connected = false;
    switch (s->state) {
    case SOCK_ACTIVE:
        sock_assert_owned(s);
        uv_poll_stop(&s->poll);
        s->state = SOCK_CLOSING;
        s->reborn = false;
        uv_close((uv_handle_t *)&s->poll, on_sock_closed);
        break;
    case SOCK_CLOSING:
        s->reborn = false;
        break;
    case SOCK_UNOPENED:
        sock_unlink(h, s);
        free(s);
        break;
    }
}

/* CURLMOPT_SOCKETFUNCTION. Returning -1 makes curl fail the transfers. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http *h = userp;
    struct sock *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* curl forgets the assignment itself. */
        if (!s)
            return 0;
        s->wanted = 0;
        if (!s->connected) {
            /* We would not hear of its close: the handle goes now. */
            sock_release(h, s);
            return 0;
        }
        /* A kept-alive connection; it closes through on_close_socket. */
        if (s->polled & UV_WRITABLE) /* would fire at once, for nobody */
            sock_stop(s);
        return 0;
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;

    if (!s) {
        /* A new socket, or a kept-alive connection watched again. */
        s = sock_find(h, fd);
        if (!s) {
            s = calloc(1, sizeof(*s));
            if (!s)
                return -1;
            s->h = h;
            s->fd = fd;
            s->state = SOCK_UNOPENED;
            s->ino = fd_inode(fd);
            sock_link(h, s);
        } else if (!(s->connected && s->state == SOCK_ACTIVE)) {
            /* Only a kept connection's number is known to hold its socket. */
            ino_t ino = fd_inode(fd);

            if (ino != s->ino) { /* not the socket we opened: curl's own */
                s->ours = false;
                s->connected = false;
                s->ino = ino;
                s->stale = true;
            }
        }
        if (curl_multi_assign(h->multi, fd, s) != CURLM_OK) {
            if (s->state == SOCK_UNOPENED)
                sock_release(h, s);
            return -1;
        }
    }
    s->wanted = events;
    if (s->ours && (events & UV_READABLE))
        s->connected = true;
    if (s->state == SOCK_CLOSING) {
        s->reborn = true;
        return 0;
    }
    return sock_watch(h, s);
}

/* CURLOPT_OPENSOCKETFUNCTION: what curl would do, and the socket recorded as
 * ours. A struct still holding this fd number now holds a different socket. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct http *h = clientp;
    struct sock *s;
    int fd;

    (void)purpose;
    fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    s = sock_find(h, fd);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            close(fd);
            return CURL_SOCKET_BAD;
        }
        s->h = h;
        s->fd = fd;
        s->state = SOCK_UNOPENED;
        sock_link(h, s);
    }
    s->stale = s->state == SOCK_ACTIVE;
    s->ours = true;
    s->connected = false;
    s->ino = fd_inode(fd);
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the handle goes first, while the fd is
 * still ours to take out of epoll. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    struct http *h = clientp;
    struct sock *s = sock_find(h, fd);

    if (s)
        sock_release(h, s);
    return close(fd);
}

/* ---- transfers ---- */

static void xfer_link(struct http *h, struct xfer *x)
{
    x->prev = NULL;
    x->next = h->busy;
    if (h->busy)
        h->busy->prev = x;
    h->busy = x;
    h->n_busy++;
}

static void xfer_unlink(struct http *h, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        h->busy = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    h->n_busy--;
}

/* Wipe every header line (the secrets are among them) and free the list. */
static void xfer_scrub(struct xfer *x)
{
    for (struct curl_slist *l = x->headers; l; l = l->next)
        if (l->data)
            secret_wipe(l->data, strlen(l->data));
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    /* A server may quote the token in its answer (body, Retry-After). */
    secret_wipe(&x->res, sizeof(x->res));
}

static void xfer_free(struct xfer *x)
{
    if (!x)
        return;
    xfer_scrub(x);
    curl_easy_cleanup(x->easy);
    free(x);
}

static struct xfer *xfer_get(struct http *h)
{
    struct xfer *x = h->idle;

    if (x) {
        h->idle = x->next;
        h->n_idle--;
        x->next = NULL;
        return x;
    }
    x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->h = h;
    x->easy = curl_easy_init();
    if (!x->easy) {
        free(x);
        return NULL;
    }
    return x;
}

/* Back to the pool, which keeps as many handles as connections. */
static void xfer_put(struct http *h, struct xfer *x)
{
    xfer_scrub(x);
    x->req = NULL;
    if (h->closing || h->n_idle >= h->max_connections) {
        xfer_free(x);
        return;
    }
    x->next = h->idle;
    h->idle = x;
    h->n_idle++;
}

static size_t on_header(char *buf, size_t size, size_t n, void *data)
{
    static const char name[] = "retry-after:";
    struct xfer *x = data;
    size_t len = size * n;

    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): only the final one counts. */
        x->res.retry_after[0] = '\0';
        x->answering = true;
    } else if (len >= sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
        const char *v = buf + sizeof(name) - 1, *end = buf + len;
        size_t vlen;

        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        vlen = (size_t)(end - v);
        if (vlen >= sizeof(x->res.retry_after))
            vlen = sizeof(x->res.retry_after) - 1;
        memcpy(x->res.retry_after, v, vlen);
        x->res.retry_after[vlen] = '\0';
    }
    return len;
}

/* Keep the start of the body for 4xx details, drop the rest. */
static size_t on_write(char *buf, size_t size, size_t n, void *data)
{
    struct xfer *x = data;
    size_t len = size * n, room = sizeof(x->res.body) - 1 - x->body_len;
    size_t take = len < room ? len : room;

    memcpy(x->res.body + x->body_len, buf, take);
    x->body_len += take;
    x->res.body[x->body_len] = '\0';
    return len;
}

static int headers_append(struct xfer *x, const char *line)
{
    struct curl_slist *l = curl_slist_append(x->headers, line);

    if (!l)
        return -ENOMEM;
    x->headers = l;
    return 0;
}

static int xfer_headers(struct http *h, struct xfer *x, const struct http_request *req)
{
    size_t plen = sizeof(AUTH_PREFIX) - 1, n = plen + req->token_len + 1;
    char *auth = malloc(n);
    int rc;

    if (!auth)
        return -ENOMEM;
    memcpy(auth, AUTH_PREFIX, plen);
    memcpy(auth + plen, req->token, req->token_len);
    auth[n - 1] = '\0';
    /* curl_slist_append copies: wipe ours now, the copy in xfer_scrub. */
    rc = headers_append(x, auth);
    secret_wipe(auth, n);
    free(auth);
    if (rc < 0)
        return rc;
    rc = headers_append(x, "Accept: application/json");
    if (rc == 0) /* the body is empty: no form content type */
        rc = headers_append(x, "Content-Type:");
    if (rc == 0 && h->extra_header)
        rc = headers_append(x, h->extra_header);
    return rc;
}

#define SETOPT(easy, opt, val)                                     \
    do {                                                           \
        CURLcode c_ = curl_easy_setopt(easy, opt, val);            \
        if (c_ != CURLE_OK)                                        \
            return easy_errno(c_);                                 \
    } while (0)

static int xfer_setup(struct http *h, struct xfer *x, struct http_request *req)
{
    CURL *e = x->easy;
    long timeout = h->timeout_ms > LONG_MAX ? LONG_MAX : (long)h->timeout_ms;
    int rc;

    curl_easy_reset(e);
    memset(&x->res, 0, sizeof(x->res));
    x->body_len = 0;
    x->answering = false;
    x->req = req;
    rc = xfer_headers(h, x, req);
    if (rc < 0)
        return rc;
    SETOPT(e, CURLOPT_URL, h->url);
    SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(e, CURLOPT_POST, 1L);
    SETOPT(e, CURLOPT_POSTFIELDSIZE, 0L);
    SETOPT(e, CURLOPT_POSTFIELDS, "");
    SETOPT(e, CURLOPT_HTTPHEADER, x->headers);
    SETOPT(e, CURLOPT_USERAGENT, "revokerd/" REVOKERD_VERSION);
    SETOPT(e, CURLOPT_TIMEOUT_MS, timeout);
    SETOPT(e, CURLOPT_NOSIGNAL, 1L);
    /* A transfer that ends while its name is still being resolved must not
     * wait for the resolver thread (curl would block the loop until
     * getaddrinfo returns): the thread is left to finish on its own. */
    SETOPT(e, CURLOPT_QUICK_EXIT, 1L);
    SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file)
        SETOPT(e, CURLOPT_CAINFO, h->ca_file);
    SETOPT(e, CURLOPT_ERRORBUFFER, x->res.error);
    SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(e, CURLOPT_HEADERDATA, x);
    SETOPT(e, CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(e, CURLOPT_WRITEDATA, x);
    SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(e, CURLOPT_OPENSOCKETDATA, h);
    SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SETOPT(e, CURLOPT_CLOSESOCKETDATA, h);
    SETOPT(e, CURLOPT_PRIVATE, x);
    return 0;
}

/* Take x out of the multi and the busy list, give its slot back, then tell
 * the caller. The result is copied first: done may submit again at once. */
static void xfer_finish(struct http *h, struct xfer *x, CURLcode code)
{
    struct http_request *req = x->req;
    struct http_result res;

    if (h->multi)
        curl_multi_remove_handle(h->multi, x->easy);
    x->res.curl_code = code;
    x->res.status = 0;
    if (code == CURLE_OK)
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->res.status);
    else if (code == CURLE_OUT_OF_MEMORY && x->answering)
        /* curl 7.88 says "Out of memory" for a header line over its 100 KiB
         * limit (CURL_MAX_HTTP_HEADER); a real shortage is far less likely
         * in the middle of an answer. */
        snprintf(x->res.error, sizeof(x->res.error),
                 "response headers too large: a header line over 100 KiB (or out of memory)");
    else if (!x->res.error[0])
        snprintf(x->res.error, sizeof(x->res.error), "%s", curl_easy_strerror(code));
    x->res.duration_us = (uv_hrtime() - x->start_ns) / 1000;
    x->res.duration_ms = x->res.duration_us / 1000;
    res = x->res;
    xfer_unlink(h, x);
    xfer_put(h, x);
    req->priv = NULL;
    req->done(req, &res);
    secret_wipe(&res, sizeof(res));
}

static void drain(struct http *h)
{
    CURLMsg *m;
    int left;

    /* A done callback may close h: then the multi is gone. */
    while (!h->closing && (m = curl_multi_info_read(h->multi, &left))) {
        char *priv = NULL;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv)
            xfer_finish(h, (struct xfer *)(void *)priv, m->data.result);
    }
}

/* ---- loop callbacks ---- */

static void on_poll(uv_poll_t *poll, int status, int events)
{
    struct sock *s = container_of(poll, struct sock, poll);
    struct http *h = s->h;
    int flags = 0, running;

    sock_assert_owned(s);

    if (!s->wanted) {
        /* An idle kept-alive connection: the server closed it or sent
         * something. curl looks at it before it reuses it. */
        sock_stop(s);
        return;
    }
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    drain(h);
}

static void on_timer(uv_timer_t *timer)
{
    struct http *h = container_of(timer, struct http, timer);
    int running;

    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(h);
}

/* CURLMOPT_TIMERFUNCTION: -1 stops, 0 is "soon" (next loop iteration). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct http *h = userp;

    (void)multi;
    if (timeout_ms < 0)
        return uv_timer_stop(&h->timer) == 0 ? 0 : -1;
    return uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

/* ---- lifecycle ---- */

static void handle_closed(struct http *h)
{
    void (*cb)(void *);
    void *data;

    if (--h->open_handles > 0 || !h->closing)
        return;
    cb = h->close_cb;
    data = h->close_data;
    free(h->url);
    free(h->ca_file);
    secret_free(h->extra_header);
    free(h);
    curl_global_cleanup();
    if (cb)
        cb(data);
}

static void on_timer_closed(uv_handle_t *handle)
{
    handle_closed(container_of((uv_timer_t *)handle, struct http, timer));
}

int http_new(uv_loop_t *loop, const struct http_options *o, struct http **ret_http)
{
    struct http *h;
    CURLcode cc;
    CURLMcode mc;
    int rc;

    if (!loop || !ret_http || !options_ok(o))
        return -EINVAL;
    cc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (cc != CURLE_OK)
        return easy_errno(cc);
    h = calloc(1, sizeof(*h));
    if (!h) {
        rc = -ENOMEM;
        goto err_after_global;
    }
    h->loop = loop;
    rc = options_copy(o, &h->url, &h->ca_file, &h->extra_header);
    if (rc < 0)
        goto err_after_alloc;
    h->timeout_ms = o->timeout_ms;
    h->max_connections = o->max_connections;
    h->multi = curl_multi_init();
    if (!h->multi) {
        rc = -ENOMEM;
        goto err_after_copy;
    }
    mc = curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    rc = multi_errno(mc);
    if (rc == 0)
        rc = multi_limits(h->multi, o->max_connections);
    if (rc < 0)
        goto err_after_multi;
    /* Last: a libuv handle cannot be given back synchronously. */
    rc = uv_timer_init(loop, &h->timer);
    if (rc < 0)
        goto err_after_multi;
    h->open_handles = 1;
    *ret_http = h;
    return 0;

err_after_multi:
    curl_multi_cleanup(h->multi);
err_after_copy:
    free(h->url);
    free(h->ca_file);
    secret_free(h->extra_header);
err_after_alloc:
    free(h);
err_after_global:
    curl_global_cleanup();
    return rc;
}

int http_configure(struct http *h, const struct http_options *o)
{
    char *url, *ca, *extra;
    int rc;

    if (!h || h->closing || !options_ok(o))
        return -EINVAL;
    rc = options_copy(o, &url, &ca, &extra);
    if (rc < 0)
        return rc;
    rc = multi_limits(h->multi, o->max_connections);
    if (rc < 0) {
        free(url);
        free(ca);
        secret_free(extra);
        return rc;
    }
    /* Transfers in flight keep curl's own copies of the old values. */
    free(h->url);
    free(h->ca_file);
    secret_free(h->extra_header);
    h->url = url;
    h->ca_file = ca;
    h->extra_header = extra;
    h->timeout_ms = o->timeout_ms;
    h->max_connections = o->max_connections;
    return 0;
}

int http_submit(struct http *h, struct http_request *req)
{
    struct xfer *x;
    CURLMcode mc;
    int rc;

    if (!h || !req || !req->done || !req->token)
        return -EINVAL;
    if (h->closing)
        return -ESHUTDOWN;
    if (!secret_token_ok(req->token, req->token_len))
        return -EINVAL;
    x = xfer_get(h);
    if (!x)
        return -ENOMEM;
    rc = xfer_setup(h, x, req);
    if (rc < 0)
        goto err_after_get;
    x->start_ns = uv_hrtime();
    mc = curl_multi_add_handle(h->multi, x->easy);
    if (mc != CURLM_OK) {
        rc = multi_errno(mc);
        goto err_after_get;
    }
    xfer_link(h, x);
    req->priv = x;
    return 0;

err_after_get:
    xfer_put(h, x);
    return rc;
}

unsigned http_in_flight(const struct http *h)
{
    return h ? h->n_busy : 0;
}

void http_close(struct http *h, void (*cb)(void *data), void *data)
{
    struct sock *s, *next;
    struct xfer *x;

    if (!h) {
        if (cb)
            cb(data);
        return;
    }
    if (h->closing)
        return;
    h->closing = true;
    h->close_cb = cb;
    h->close_data = data;

    /* Each done runs once; a submit from inside it is refused. */
    while ((x = h->busy)) {
        x->res.error[0] = '\0';
        xfer_finish(h, x, CURLE_ABORTED_BY_CALLBACK);
    }
    /* curl closes its cached connections now: stop watching them first. */
    for (s = h->socks; s; s = s->next)
        sock_stop(s);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    for (s = h->socks; s; s = next) {
        next = s->next;
        sock_release(h, s);
    }
    while ((x = h->idle)) {
        h->idle = x->next;
        xfer_free(x);
    }
    h->n_idle = 0;
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

/* ctl: the control socket on the loop (see ctl.h).
 *
 * Ownership: struct ctl owns the listener and a list of clients. A client
 * embeds two handles (its pipe and its idle timer) and frees itself when
 * both are closed and every write it queued has called back; ctl_close()
 * finishes when the listener is closed and no client is left.
 *
 * Per client, memory is bounded: the input buffer grows to at most one
 * line (PROTO_MAX_LINE + "\r\n"), and once CTL_HIGH_WATER bytes of replies
 * wait for the peer to read them, reading and processing pause until they
 * drain below CTL_LOW_WATER. A client that never reads is closed by its
 * idle timer, which only a complete request resets. */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "secret.h"
#include "util.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define CTL_BACKLOG 1024
#define CTL_READ_CHUNK 4096
#define CTL_BUF_MAX (PROTO_MAX_LINE + 2) /* one line, its '\r' and its '\n' */
#define CTL_HIGH_WATER (256 * 1024)
#define CTL_LOW_WATER (64 * 1024)


struct client {
    struct ctl *ctl;
    struct client *prev, *next;
    uv_pipe_t pipe;
    uv_timer_t idle;
    unsigned open_handles;  /* pipe and timer until their close callbacks ran */
    unsigned writes;        /* queued writes not yet called back */
    size_t queued_bytes;
    char *buf;              /* received bytes not yet handled: at most one partial line */
    size_t len, cap;
    uint64_t idle_ms;
    bool reading;           /* uv_read_start in force */
    bool unread_seen;       /* the idle timer found bytes waiting that were not read since */
    bool eof;               /* the peer shut down its side */
    bool draining;          /* final reply queued: close once writes are done */
    bool closing;           /* uv_close called */
    bool counted;           /* counts towards max_clients */
    bool awaiting;          /* a reply comes later (proto_batch_line: -EINPROGRESS): the next requests wait */
    uid_t uid;              /* the peer's (SO_PEERCRED), for proto's audit rows */
};

struct wreq {
    uv_write_t req;
    struct client *c;
    size_t len;
    char data[];
};

struct ctl {
    uv_loop_t *loop;
    const struct proto_env *env;
    uv_pipe_t listener;
    bool listener_open;
    char *path;             /* bound by us: unlinked at close */
    dev_t dev;
    ino_t ino;
    unsigned max_clients;
    uint64_t idle_ms;
    gid_t control_gid;
    struct client *clients; /* every client struct not yet freed */
    unsigned nclients;      /* accepted clients, not yet closing */
    bool warned_full;
    uint64_t refusal_logged_ms;   /* uv_now of the last "permission denied" line */
    unsigned refusals_unlogged;   /* refused since then, not logged one by one */
    struct ctl_refusals refused;  /* since start */
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
};

static void process_lines(struct client *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *ret);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void ctl_maybe_done(struct ctl *ctl)
{
    if (!ctl->closing || ctl->listener_open || ctl->clients)
        return;
    void (*cb)(void *) = ctl->close_cb;
    void *data = ctl->close_data;
    free(ctl->path);
    free(ctl);
    if (cb)
        cb(data);
}

static void client_free_buf(struct client *c)
{
    if (c->buf) {
        secret_wipe(c->buf, c->cap);
        free(c->buf);
    }
    c->buf = NULL;
    c->len = c->cap = 0;
}

static void client_maybe_free(struct client *c)
{
    if (c->open_handles > 0 || c->writes > 0 || c->awaiting)
        return;
    struct ctl *ctl = c->ctl;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctl->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    client_free_buf(c);
    free(c);
    ctl_maybe_done(ctl);
}

static void client_handle_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    c->open_handles--;
    client_maybe_free(c);
}

/* -fanalyzer (gcc 12) does not know that uv_write() keeps send_reply()'s
 * request until write_done() frees it, and reports it leaked here. */
ANALYZER_LEAKS_OFF
static void client_close(struct client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    if (c->counted) {
        c->counted = false;
        c->ctl->nclients--;
        if (c->ctl->nclients < c->ctl->max_clients)
            c->ctl->warned_full = false;
    }
    client_free_buf(c);
    /* Queued writes call back with UV_ECANCELED before the close callback. */
    uv_close((uv_handle_t *)&c->pipe, client_handle_closed);
    uv_close((uv_handle_t *)&c->idle, client_handle_closed);
}
ANALYZER_LEAKS_ON

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = container_of(req, struct wreq, req);
    struct client *c = w->c;

    c->writes--;
    c->queued_bytes -= w->len;
    free(w);
    if (c->closing) {
        client_maybe_free(c);
        return;
    }
    if (status < 0) {
        /* The peer went away before reading its reply. What it asked for
         * is committed already; nothing is lost but the reply. */
        log_debug("control socket: a client left before its reply: %s", uv_strerror(status));
        client_close(c);
        return;
    }
    if (c->draining) {
        if (c->writes == 0)
            client_close(c);
        return;
    }
    if (c->queued_bytes <= CTL_LOW_WATER)
        process_lines(c);
}

/* Queues reply + '\n' and frees reply. 0 or a negative errno. */
static int send_reply(struct client *c, char *reply)
{
    if (!reply)
        return -ENOMEM;
    size_t len = strlen(reply);
    struct wreq *w = malloc(sizeof(*w) + len + 1);
    if (!w) {
        free(reply);
        return -ENOMEM;
    }
    memcpy(w->data, reply, len);
    w->data[len] = '\n';
    w->len = len + 1;
    w->c = c;
    free(reply);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, write_done);
    if (r < 0) {
        free(w);
        return r;
    }
    c->writes++;
    c->queued_bytes += w->len;
    return 0;
}

static void idle_fired(uv_timer_t *t);

static void idle_restart(struct client *c)
{
    if (c->idle_ms > 0)
        uv_timer_start(&c->idle, idle_fired, c->idle_ms, 0);
}

/* A last error for the peer, then the connection is closed once it is
 * written (or when the idle timer fires, whichever comes first). */
static void client_refuse(struct client *c, const char *message)
{
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = false;
    c->draining = true;
    client_free_buf(c);
    if (send_reply(c, proto_error(message)) < 0 || c->writes == 0)
        client_close(c);
    else
        idle_restart(c); /* a deadline for a peer that never reads */
}

/* Counted for the metrics. -fanalyzer reports send_reply()'s request leaked
 * here too (see client_close). */
ANALYZER_LEAKS_OFF
static void refuse_long_line(struct client *c)
{
    c->ctl->refused.line_too_long++;
    client_refuse(c, "request line longer than 65536 bytes; closing the connection");
}
ANALYZER_LEAKS_ON

static void idle_fired(uv_timer_t *t)
{
    struct client *c = container_of(t, struct client, idle);
    uv_os_fd_t fd;
    int pending = 0;

    if (c->awaiting) { /* not idle: revokerd owes it a reply (an op in parts may take minutes) */
        idle_restart(c);
        return;
    }
    /* Timers run before I/O in a loop iteration: after a stall of the loop
     * a request may be waiting unread. It counts once, unless the client is
     * paused for not reading its replies (then it is closed as idle). Bytes
     * still unread a whole idle period later will never be read: close. */
    if (c->reading && !c->unread_seen && uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
        ioctl(fd, FIONREAD, &pending) == 0 && pending > 0) {
        c->unread_seen = true;
        idle_restart(c);
        return;
    }
    log_debug("control socket: closing a client idle for %" PRIu64 " ms", c->idle_ms);
    if (!c->draining && c->writes == 0) {
        /* Best effort, without queueing: the connection closes right after. */
        static char msg[] = "{\"ok\":false,\"error\":\"idle timeout: no request received; "
                            "closing the connection\"}\n";
        uv_buf_t b = uv_buf_init(msg, sizeof(msg) - 1);
        (void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
    }
    client_close(c);
}

/* A reply of the batch, in request order. */
static void on_reply(void *ud, char *reply)
{
    struct client *c = ud;

    if (c->closing) {
        free(reply);
        return;
    }
    if (send_reply(c, reply) < 0) {
        log_err("control socket: cannot queue a reply (out of memory); closing that client");
        client_close(c);
    }
}

/* The reply of a request run off the loop (shape): sent, and the requests
 * after it go on; a client closed meanwhile only frees itself now. */
static void deferred_reply(void *ud, char *reply)
{
    struct client *c = ud;

    c->awaiting = false;
    if (c->closing) {
        free(reply);
        client_maybe_free(c);
        return;
    }
    if (send_reply(c, reply) < 0) {
        log_err("control socket: cannot queue a reply (out of memory); closing that client");
        client_close(c);
        return;
    }
    process_lines(c);
}

static bool handle_line(struct client *c, struct proto_batch *b, char *line, size_t n)
{
    size_t len = n;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len > PROTO_MAX_LINE) {
        proto_batch_end(b); /* the replies before the refusal */
        refuse_long_line(c);
        return false;
    }
    if (len == 0) /* blank lines are not requests */
        return true;
    idle_restart(c);
    if (proto_batch_line(b, line, len) == -EINPROGRESS)
        c->awaiting = true; /* the next requests wait for deferred_reply */
    secret_wipe(line, n);
    return !c->closing;
}

/* Handles every complete line in the buffer, in order, while the peer keeps
 * up with the replies; what is left stays for later. The lines at hand are
 * one batch (proto_batch: `track` requests share a commit); its replies are
 * queued at its end, before anything looks at what is queued. */
static void process_lines(struct client *c)
{
    struct proto_batch b;
    size_t start = 0;

    proto_batch_begin(&b, c->ctl->env, on_reply, c);
    b.late = deferred_reply;
    b.uid = c->uid;
    while (!c->closing && !c->draining && !c->awaiting && c->queued_bytes < CTL_HIGH_WATER && start < c->len) {
        char *line = c->buf + start;
        char *nl = memchr(line, '\n', c->len - start);
        if (!nl)
            break;
        size_t n = (size_t)(nl - line);
        start += n + 1;
        if (!handle_line(c, &b, line, n))
            break;
    }
    proto_batch_end(&b);
    if (c->closing || c->draining)
        return;
    if (start > 0) {
        memmove(c->buf, c->buf + start, c->len - start);
        secret_wipe(c->buf + (c->len - start), start);
        c->len -= start;
    }
    bool complete_left = c->len > 0 && memchr(c->buf, '\n', c->len);
    if (!complete_left && c->len >= CTL_BUF_MAX) {
        refuse_long_line(c);
        return;
    }
    if (!complete_left && c->eof && !c->awaiting) {
        /* The peer shut down its side: a last line without '\n' counts. */
        bool ok = true;
        if (c->len > 0) {
            proto_batch_begin(&b, c->ctl->env, on_reply, c);
            b.late = deferred_reply;
            b.uid = c->uid;
            ok = handle_line(c, &b, c->buf, c->len);
            proto_batch_end(&b);
        }
        if (!ok || c->closing)
            return;
        c->len = 0;
        c->draining = true;
        if (c->writes == 0)
            client_close(c);
        return;
    }
    if (c->len == 0 && c->cap > CTL_READ_CHUNK)
        client_free_buf(c);

    bool pause = c->queued_bytes >= CTL_HIGH_WATER || complete_left || c->awaiting;
    if (pause && c->reading) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = false;
    }
    if (!pause && !c->reading && !c->eof) {
        if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
            c->reading = true;
        else
            client_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *ret)
{
    struct client *c = h->data;
    (void)suggested;
    if (c->cap - c->len < CTL_READ_CHUNK && c->cap < CTL_BUF_MAX) {
        size_t cap = c->cap ? c->cap * 2 : CTL_READ_CHUNK;
        if (cap < c->len + CTL_READ_CHUNK)
            cap = c->len + CTL_READ_CHUNK;
        if (cap > CTL_BUF_MAX)
            cap = CTL_BUF_MAX;
        /* Not realloc: the old block may hold a secret and must be wiped. */
        char *nb = malloc(cap);
        if (nb) {
            size_t len = c->len;
            if (len)
                memcpy(nb, c->buf, len);
            client_free_buf(c);
            c->buf = nb;
            c->cap = cap;
            c->len = len;
        }
    }
    *ret = uv_buf_init(c->buf ? c->buf + c->len : NULL, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct client *c = s->data;
    (void)b;
    if (nread == 0 || c->closing)
        return;
    c->unread_seen = false;
    if (nread == UV_EOF) {
        c->eof = true;
        c->reading = false;
        process_lines(c);
        return;
    }
    if (nread < 0) {
        if (nread == UV_ENOBUFS)
            log_err("control socket: out of memory reading a request; closing that client");
        client_close(c);
        return;
    }
    c->len += (size_t)nread;
    process_lines(c);
}

/* Supplementary groups of the peer as they were at connect() time
 * (SO_PEERGROUPS, Linux 4.13); without it, the Groups: line of
 * /proc/PID/status. Not getgrouplist(): that asks NSS (possibly over the
 * network, blocking the loop) about the user, not about the process. */
static bool peer_in_group(int fd, pid_t pid, gid_t gid)
{
    gid_t small[64], *groups = small;
    socklen_t len = sizeof(small);
    bool found = false;

    int r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    if (r < 0 && errno == ERANGE) {
        groups = malloc(len);
        if (!groups)
            return false;
        r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    }
    if (r == 0) {
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
            found = found || groups[i] == gid;
        if (groups != small)
            free(groups);
        return found;
    }
    if (groups != small)
        free(groups);

    char path[64], line[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Groups:", 7) != 0)
            continue;
        char *p = line + 7;
        for (;;) {
            char *end;
            errno = 0;
            unsigned long g = strtoul(p, &end, 10);
            if (end == p || errno)
                break;
            found = found || (gid_t)g == gid;
            p = end;
        }
        break;
    }
    fclose(f);
    return found;
}

static bool peer_allowed(const struct ctl *ctl, int fd, struct ucred *out)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        out->uid = (uid_t)-1;
        out->pid = 0;
        return false;
    }
    *out = cred;
    if (cred.uid == 0 || cred.uid == geteuid())
        return true;
    if (ctl->control_gid == (gid_t)-1)
        return false;
    return cred.gid == ctl->control_gid || peer_in_group(fd, cred.pid, ctl->control_gid);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ctl *ctl = container_of(server, struct ctl, listener);
    uv_os_fd_t fd;
    struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};

    if (status < 0) {
        log_err("control socket: accept failed: %s", uv_strerror(status));
        return;
    }
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        log_err("control socket: out of memory for a new client");
        return;
    }
    c->ctl = ctl;
    c->idle_ms = ctl->idle_ms;
    uv_pipe_init(ctl->loop, &c->pipe, 0);
    uv_timer_init(ctl->loop, &c->idle);
    c->pipe.data = c;
    c->idle.data = c;
    c->open_handles = 2;
    c->next = ctl->clients;
    if (c->next)
        c->next->prev = c;
    ctl->clients = c;

    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 || ctl->closing) {
        client_close(c);
        return;
    }
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 || !peer_allowed(ctl, fd, &cred)) {
        /* At most one line a second: a local user connecting in a loop
         * must not flood the journal. */
        uint64_t now = uv_now(ctl->loop);
        if (ctl->refusal_logged_ms == 0 || now - ctl->refusal_logged_ms >= 1000) {
            char more[64] = "";
            if (ctl->refusals_unlogged > 0)
                snprintf(more, sizeof(more), " (and %u more refused in the last %" PRIu64 " ms)",
                         ctl->refusals_unlogged, now - ctl->refusal_logged_ms);
            log_warning("control socket: permission denied for uid %ld (pid %ld): not root, "
                        "not the daemon's user and not in its control group%s",
                        cred.uid == (uid_t)-1 ? -1L : (long)cred.uid, (long)cred.pid, more);
            ctl->refusal_logged_ms = now ? now : 1;
            ctl->refusals_unlogged = 0;
        } else {
            ctl->refusals_unlogged++;
        }
        ctl->refused.uid++;
        client_refuse(c, "permission denied");
        return;
    }
    if (ctl->nclients >= ctl->max_clients) {
        char msg[64];
        if (!ctl->warned_full)
            log_warning("control socket: %u clients connected (daemon.max_clients); refusing more",
                        ctl->nclients);
        ctl->warned_full = true;
        ctl->refused.too_many++;
        snprintf(msg, sizeof(msg), "too many clients (max %u)", ctl->max_clients);
        client_refuse(c, msg);
        return;
    }
    c->counted = true;
    c->uid = cred.uid;
    ctl->nclients++;
    idle_restart(c);
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) < 0) {
        client_close(c);
        return;
    }
    c->reading = true;
}

/* 1: a process accepts connections there; 0: nobody (stale); <0: -errno. */
static int probe_live(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    int e = errno;
    close(fd);
    if (r == 0 || e == EAGAIN || e == EINPROGRESS) /* EAGAIN: alive, its backlog full */
        return 1;
    if (e == ECONNREFUSED || e == ENOENT)
        return 0;
    return -e;
}

static int bind_path(struct ctl *ctl, const char *path, int *ret_fd, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    size_t plen = strlen(path);

    if (plen == 0 || plen >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path '%s' is empty or too long (at most %zu bytes)", path,
                 sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, plen + 1);

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket; not replacing it", path);
            return -EEXIST;
        }
        int r = probe_live(&sa);
        if (r > 0) {
            snprintf(err, errlen, "another revokerd is already listening on %s", path);
            return -EADDRINUSE;
        }
        if (r < 0) {
            snprintf(err, errlen, "cannot check the existing socket %s: %s", path, strerror(-r));
            return r;
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            r = -errno;
            snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(-r));
            return r;
        }
        log_notice("control socket: replaced the stale socket file %s", path);
    } else if (errno != ENOENT) {
        int r = -errno;
        snprintf(err, errlen, "cannot inspect %s: %s", path, strerror(-r));
        return r;
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int r = -errno;
        snprintf(err, errlen, "cannot create a UNIX socket: %s", strerror(-r));
        return r;
    }
    /* Never a moment with looser permissions than 0660; chmod afterwards
     * pins the mode even where a default ACL would change it. */
    mode_t old = umask(0117);
    int r = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (r < 0) {
        close(fd);
        if (e == EADDRINUSE)
            snprintf(err, errlen, "another revokerd is already listening on %s", path);
        else
            snprintf(err, errlen, "cannot bind %s: %s", path, strerror(e));
        return -e;
    }
    if (chmod(path, 0660) < 0 || lstat(path, &st) < 0) {
        e = errno;
        unlink(path);
        close(fd);
        snprintf(err, errlen, "cannot set the mode of %s: %s", path, strerror(e));
        return -e;
    }
    if (ctl->control_gid != (gid_t)-1 && st.st_gid != ctl->control_gid &&
        lchown(path, (uid_t)-1, ctl->control_gid) < 0)
        log_warning("control socket: cannot give %s to group %u (%s); members of "
                    "daemon.control_group may not be able to connect",
                    path, (unsigned)ctl->control_gid, strerror(errno));
    ctl->dev = st.st_dev;
    ctl->ino = st.st_ino;
    *ret_fd = fd;
    return 0;
}

static int check_passed_fd(int fd, char *err, size_t errlen)
{
    int domain = 0, type = 0;
    socklen_t l1 = sizeof(domain), l2 = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l1) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2) < 0) {
        int r = -errno;
        snprintf(err, errlen, "the socket passed by systemd (fd %d) cannot be used: %s", fd,
                 strerror(-r));
        return r;
    }
    if (domain != AF_UNIX || type != SOCK_STREAM) {
        snprintf(err, errlen, "the socket passed by systemd (fd %d) is not a UNIX stream socket; "
                 "revokerd.socket needs ListenStream=/path", fd);
        return -EINVAL;
    }
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0)
        (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    struct ctl *ctl = container_of(h, struct ctl, listener);
    ctl->listener_open = false;
    ctl_maybe_done(ctl);
}

int ctl_new(uv_loop_t *loop, const struct ctl_options *o, const struct proto_env *env,
            struct ctl **ret_ctl, char *err, size_t errlen)
{
    int fd = -1, r;
    struct ctl *ctl = calloc(1, sizeof(*ctl));
    if (!ctl) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ctl->loop = loop;
    ctl->env = env;
    ctl->max_clients = o->max_clients;
    ctl->idle_ms = o->idle_ms;
    ctl->control_gid = o->control_gid;

    if (o->listen_fd >= 0) {
        r = check_passed_fd(o->listen_fd, err, errlen);
        if (r < 0)
            goto err_after_alloc;
        fd = o->listen_fd;
    } else {
        if (!o->path) {
            snprintf(err, errlen, "no control socket path configured");
            r = -EINVAL;
            goto err_after_alloc;
        }
        ctl->path = strdup(o->path);
        if (!ctl->path) {
            snprintf(err, errlen, "out of memory");
            r = -ENOMEM;
            goto err_after_alloc;
        }
        r = bind_path(ctl, o->path, &fd, err, errlen);
        if (r < 0)
            goto err_after_alloc;
    }
    /* listen() before handing the fd to libuv: the last step that can fail
     * for a reason an operator can act on. */
    if (listen(fd, CTL_BACKLOG) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot listen on %s: %s", ctl->path ? ctl->path : "the passed socket",
                 strerror(-r));
        goto err_after_bind;
    }
    uv_pipe_init(loop, &ctl->listener, 0);
    ctl->listener_open = true;
    r = uv_pipe_open(&ctl->listener, fd);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&ctl->listener, CTL_BACKLOG, on_connection);
    if (r < 0) {
        snprintf(err, errlen, "cannot serve the control socket: %s", uv_strerror(r));
        if (ctl->path && o->listen_fd < 0)
            unlink(ctl->path);
        /* The handle owns fd now; ctl is freed in the close callback. */
        ctl->closing = true;
        uv_close((uv_handle_t *)&ctl->listener, listener_closed);
        return r;
    }
    *ret_ctl = ctl;
    return 0;

err_after_bind:
    if (ctl->path) { /* bound by us (o->listen_fd < 0) */
        unlink(ctl->path);
        close(fd);
    }
err_after_alloc:
    free(ctl->path);
    free(ctl);
    return r;
}

void ctl_configure(struct ctl *c, unsigned max_clients, uint64_t idle_ms, gid_t control_gid)
{
    if (!c)
        return;
    c->max_clients = max_clients;
    c->idle_ms = idle_ms;
    c->control_gid = control_gid;
    if (c->nclients < max_clients)
        c->warned_full = false;
}

unsigned ctl_clients(const struct ctl *c)
{
    return c ? c->nclients : 0;
}

struct ctl_refusals ctl_get_refusals(const struct ctl *c)
{
    static const struct ctl_refusals none;
    return c ? c->refused : none;
}

void ctl_close(struct ctl *c, void (*cb)(void *data), void *data)
{
    struct stat st;

    if (!c) {
        if (cb)
            cb(data);
        return;
    }
    if (c->closing)
        return;
    c->closing = true;
    c->close_cb = cb;
    c->close_data = data;
    /* Only our own socket file: never one systemd passed us, nor a file
     * another process put there since. */
    if (c->path && lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        unlink(c->path);
    uv_close((uv_handle_t *)&c->listener, listener_closed);
    for (struct client *cl = c->clients; cl; cl = cl->next)
        client_close(cl);
}

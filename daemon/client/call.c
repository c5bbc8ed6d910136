/* call: a blocking client of the control socket, with poll(2) for the
 * deadline. */
#include "call.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "secret.h"

#define REPLY_MAX (64u << 20)

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r < 0)
            return r;
    }
    return 0;
}

/* One reply line, without its '\n'. */
static int read_line(int fd, uint64_t deadline, char **ret_line)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    int r;

    if (!buf)
        return -ENOMEM;
    for (;;) {
        char *nl = len ? memchr(buf, '\n', len) : NULL;
        if (nl) {
            *nl = '\0';
            *ret_line = buf;
            return 0;
        }
        if (len + 1 >= cap) {
            if (cap >= REPLY_MAX) {
                r = -EMSGSIZE;
                goto err_after_alloc;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                r = -ENOMEM;
                goto err_after_alloc;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0) {
            r = -ECONNRESET;
            goto err_after_alloc;
        }
        if (errno != EAGAIN && errno != EINTR) {
            r = -errno;
            goto err_after_alloc;
        }
        if ((r = wait_fd(fd, POLLIN, deadline)) < 0)
            goto err_after_alloc;
    }

err_after_alloc:
    free(buf);
    return r;
}

/* ---- exported ---- */

uint64_t call_deadline(uint64_t timeout_ms)
{
    return mono_ms() + timeout_ms;
}

int call_encode(json_t *req, char **ret_msg, size_t *ret_len)
{
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req); /* a token in it is wiped on free (secret_wipe_json) */
    if (!text)
        return -ENOMEM;
    size_t len = strlen(text);
    char *msg = malloc(len + 2);
    if (!msg) {
        secret_free(text);
        return -ENOMEM;
    }
    memcpy(msg, text, len);
    msg[len] = '\n';
    msg[len + 1] = '\0';
    secret_free(text);
    *ret_msg = msg;
    *ret_len = len + 1;
    return 0;
}

int call_connect(const char *path, uint64_t deadline, int *ret_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        int e = errno;
        if (e != EAGAIN && e != EINTR) {
            close(fd);
            return -e;
        }
        /* EAGAIN: the daemon's backlog is full; a UNIX socket cannot wait
         * for that with poll, so try again shortly until the deadline. */
        if (mono_ms() >= deadline) {
            close(fd);
            return -ETIMEDOUT;
        }
        poll(NULL, 0, 10);
    }
    *ret_fd = fd;
    return 0;
}

int call_exchange(int fd, const char *msg, size_t len, uint64_t deadline, struct call_reply *ret)
{
    char *line = NULL;
    int r = send_all(fd, msg, len, deadline);

    /* A refusal (permission denied, too many clients) may arrive and the
     * connection close before our request is written: read it anyway. */
    if (r < 0 && r != -EPIPE && r != -ECONNRESET)
        return r;
    if ((r = read_line(fd, deadline, &line)) < 0)
        return r;
    json_error_t je;
    json_t *reply = json_loads(line, 0, &je);
    if (!json_is_object(reply) || !json_is_boolean(json_object_get(reply, "ok"))) {
        json_decref(reply);
        free(line);
        return -EPROTO;
    }
    *ret = (struct call_reply){.line = line, .json = reply};
    return 0;
}

void call_reply_free(struct call_reply *r)
{
    json_decref(r->json);
    free(r->line);
    *r = (struct call_reply){0};
}

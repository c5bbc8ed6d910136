/* test_ctl: the control socket on a real loop, with real client sockets in
 * the same thread (the loop is run between client steps, with an iteration
 * cap) and, for peer credentials, forked clients under other uids. Every
 * case closes ctl and checks that uv_loop_close() returns 0, so a handle
 * left open fails the test. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "ctl.h"
#include "db.h"
#include "proto.h"
#include "store.h"
#include "unit.h"

static char dir[64];
static char sock_path[96];
static char db_path[128];
static uv_loop_t loop;
static struct proto_env env;
static struct ctl *ctl;
static bool closed;

/* ---- fixture ---- */

static void open_db(void)
{
    struct store *s;
    snprintf(dir, sizeof(dir), "/tmp/test_ctl.XXXXXX");
    REQUIRE(mkdtemp(dir));
    REQUIRE(chmod(dir, 0755) == 0); /* forked clients under other uids reach the socket */
    snprintf(sock_path, sizeof(sock_path), "%s/ctl.sock", dir);
    snprintf(db_path, sizeof(db_path), "%s/revokerd.db", dir);
    REQUIRE(store_open(NULL, db_path, NULL, NULL, &s, NULL, 0) == 0);
    env = (struct proto_env){.store = s};
}

static void close_db(void)
{
    char p[160];
    store_close(env.store, NULL, NULL);
    unlink(db_path);
    snprintf(p, sizeof(p), "%s-wal", db_path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db_path);
    unlink(p);
    unlink(sock_path);
    rmdir(dir);
}

static void on_closed(void *data)
{
    *(bool *)data = true;
}

static void spin(unsigned iterations)
{
    for (unsigned i = 0; i < iterations; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
}

static int start(unsigned max_clients, uint64_t idle_ms, gid_t gid)
{
    char err[256] = "";
    struct ctl_options o = {.path = sock_path, .listen_fd = -1, .max_clients = max_clients,
                            .idle_ms = idle_ms, .control_gid = gid};
    REQUIRE(uv_loop_init(&loop) == 0);
    int r = ctl_new(&loop, &o, &env, &ctl, err, sizeof(err));
    if (r < 0)
        fprintf(stderr, "ctl_new: %s\n", err);
    return r;
}

static void stop(void)
{
    closed = false;
    ctl_close(ctl, on_closed, &closed);
    for (int i = 0; i < 2000 && !closed; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(closed);
    CHECK_INT(uv_loop_close(&loop), 0);
    ctl = NULL;
}

/* ---- a client in this thread ---- */

struct cl {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
};

static int cl_connect(struct cl *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memset(c, 0, sizeof(*c));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(c->fd >= 0);
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    REQUIRE(c->buf);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    return 0;
}

static void cl_close(struct cl *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static void cl_pump(struct cl *c)
{
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            REQUIRE(c->buf);
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            c->eof = true;
        return;
    }
}

static void cl_send(struct cl *c, const char *data, size_t len)
{
    size_t off = 0;
    for (int i = 0; off < len && i < 100000; i++) {
        ssize_t n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    REQUIRE(off == len);
}

static void cl_sends(struct cl *c, const char *s)
{
    cl_send(c, s, strlen(s));
}

/* The next reply line (malloc'd, without '\n'), running the loop meanwhile;
 * NULL at EOF or after ~2 s. */
static char *cl_line(struct cl *c)
{
    for (int i = 0; i < 2000; i++) {
        cl_pump(c);
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            char *line = strndup(c->buf, n);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        if (c->eof)
            return NULL;
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    return NULL;
}

static bool cl_wait_eof(struct cl *c)
{
    for (int i = 0; i < 3000 && !c->eof; i++) {
        cl_pump(c);
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    return c->eof;
}

static bool line_ok(const char *line)
{
    json_t *j = line ? json_loads(line, 0, NULL) : NULL;
    bool ok = json_is_true(json_object_get(j, "ok"));
    json_decref(j);
    return ok;
}

static bool line_error_is(const char *line, const char *prefix)
{
    json_t *j = line ? json_loads(line, 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(j, "error"));
    bool ok = json_is_false(json_object_get(j, "ok")) && e && strncmp(e, prefix, strlen(prefix)) == 0;
    if (!ok)
        fprintf(stderr, "  reply: %s, expected error: %s\n", line ? line : "(none)", prefix);
    json_decref(j);
    return ok;
}

/* ---- cases ---- */

static void test_bind_mode_and_close(void)
{
    struct stat st;
    mode_t old = umask(0); /* the socket is 0660 whatever the umask */
    REQUIRE(start(8, 0, (gid_t)-1) == 0);
    umask(old);
    REQUIRE(lstat(sock_path, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_INT(st.st_mode & 07777, 0660);
    stop();
    CHECK(lstat(sock_path, &st) < 0 && errno == ENOENT); /* ours: removed */
}

static void test_stale_live_and_not_socket(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char err[256];
    struct ctl *second = NULL;
    struct ctl_options o = {.path = sock_path, .listen_fd = -1, .max_clients = 8,
                            .control_gid = (gid_t)-1};

    /* A socket file left by a crashed run: bound, then closed. */
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    close(fd);
    REQUIRE(start(8, 0, (gid_t)-1) == 0);

    /* A live one: the second is refused, and the first keeps its socket. */
    err[0] = '\0';
    CHECK_INT(ctl_new(&loop, &o, &env, &second, err, sizeof(err)), -EADDRINUSE);
    char want[200];
    snprintf(want, sizeof(want), "another revokerd is already listening on %s", sock_path);
    CHECK_STR(err, want);
    struct cl c;
    CHECK_INT(cl_connect(&c), 0);
    cl_sends(&c, "{\"op\":\"ping\"}\n");
    char *line = cl_line(&c);
    CHECK(line_ok(line));
    free(line);
    cl_close(&c);
    stop();

    /* Not a socket: never replaced. */
    fd = open(sock_path, O_CREAT | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(uv_loop_init(&loop) == 0);
    err[0] = '\0';
    CHECK_INT(ctl_new(&loop, &o, &env, &second, err, sizeof(err)), -EEXIST);
    snprintf(want, sizeof(want), "%s exists and is not a socket; not replacing it", sock_path);
    CHECK_STR(err, want);
    CHECK_INT(uv_loop_close(&loop), 0);
    unlink(sock_path);
}

static void test_listen_fd(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char err[256] = "";
    struct stat st;

    /* A socket passed by systemd: used as is, never unlinked. */
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 16) == 0);
    struct ctl_options o = {.path = "/nonexistent/ignored.sock", .listen_fd = fd,
                            .max_clients = 8, .control_gid = (gid_t)-1};
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(ctl_new(&loop, &o, &env, &ctl, err, sizeof(err)) == 0);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    struct cl c;
    CHECK_INT(cl_connect(&c), 0);
    cl_sends(&c, "{\"op\":\"ping\"}\n");
    char *line = cl_line(&c);
    CHECK(line_ok(line));
    free(line);
    cl_close(&c);
    stop();
    CHECK(lstat(sock_path, &st) == 0); /* still there: systemd owns it */
    unlink(sock_path);

    /* Not a UNIX stream socket: refused with a message. */
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    o.listen_fd = fd;
    REQUIRE(uv_loop_init(&loop) == 0);
    CHECK_INT(ctl_new(&loop, &o, &env, &ctl, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "is not a UNIX stream socket") != NULL);
    CHECK_INT(uv_loop_close(&loop), 0);
    close(fd);
}

static void test_lines(void)
{
    REQUIRE(start(8, 0, (gid_t)-1) == 0);
    struct cl c;
    CHECK_INT(cl_connect(&c), 0);

    /* Several requests in one write, "\r\n", a blank line (no reply), and
     * replies in request order. */
    cl_sends(&c, "{\"op\":\"ping\"}\r\n\n{\"op\":\"status\",\"id\":1}\n{\"op\":\"fly\"}\n");
    char *a = cl_line(&c), *b = cl_line(&c), *d = cl_line(&c);
    CHECK(line_ok(a));
    CHECK(line_error_is(b, "no token with id 1"));
    CHECK(line_error_is(d, "unknown op 'fly'"));
    free(a);
    free(b);
    free(d);

    /* One request cut into single bytes. */
    const char *req = "{\"op\":\"revoke\",\"token\":\"tok-SECRET-bytes\"}\n";
    for (size_t i = 0; req[i]; i++) {
        cl_send(&c, req + i, 1);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    a = cl_line(&c);
    CHECK(line_ok(a));
    CHECK(a && strstr(a, "tok-SECRET") == NULL);
    free(a);

    /* Binary garbage: an error, and the connection still works. */
    cl_send(&c, "\xff\xfe\x00\x01garbage\x80\n", 13);
    a = cl_line(&c);
    CHECK(line_error_is(a, "invalid JSON at line 1"));
    free(a);
    cl_sends(&c, "{\"op\":\"ping\"}\n");
    a = cl_line(&c);
    CHECK(line_ok(a));
    free(a);

    /* A last line without '\n' before the client shuts down its side. */
    cl_sends(&c, "{\"op\":\"ping\"}");
    shutdown(c.fd, SHUT_WR);
    a = cl_line(&c);
    CHECK(line_ok(a));
    free(a);
    CHECK(cl_wait_eof(&c));
    cl_close(&c);
    stop();
}

static void test_line_limit(void)
{
    REQUIRE(start(8, 0, (gid_t)-1) == 0);
    struct cl c;

    /* Exactly PROTO_MAX_LINE bytes (JSON padded with spaces) plus "\r\n": served. */
    char *big = malloc(PROTO_MAX_LINE + 16);
    REQUIRE(big);
    memset(big, ' ', PROTO_MAX_LINE);
    memcpy(big, "{\"op\":\"ping\"}", 13);
    memcpy(big + PROTO_MAX_LINE, "\r\n", 2);
    CHECK_INT(cl_connect(&c), 0);
    cl_send(&c, big, PROTO_MAX_LINE + 2);
    char *a = cl_line(&c);
    CHECK(line_ok(a));
    free(a);

    /* One byte more, no newline yet: the error, then the connection closes. */
    memset(big, 'x', PROTO_MAX_LINE + 8);
    cl_send(&c, big, PROTO_MAX_LINE + 8);
    a = cl_line(&c);
    CHECK(line_error_is(a, "request line longer than 65536 bytes; closing the connection"));
    free(a);
    CHECK(cl_wait_eof(&c));
    cl_close(&c);

    /* Others are unaffected. */
    CHECK_INT(cl_connect(&c), 0);
    cl_sends(&c, "{\"op\":\"ping\"}\n");
    a = cl_line(&c);
    CHECK(line_ok(a));
    free(a);
    cl_close(&c);
    free(big);
    stop();
}

static void test_max_clients(void)
{
    REQUIRE(start(2, 0, (gid_t)-1) == 0);
    struct cl c1, c2, c3, c4;
    CHECK_INT(cl_connect(&c1), 0);
    CHECK_INT(cl_connect(&c2), 0);
    spin(20);
    CHECK_INT(ctl_clients(ctl), 2);
    CHECK_INT(cl_connect(&c3), 0);
    char *a = cl_line(&c3);
    CHECK(line_error_is(a, "too many clients (max 2)"));
    free(a);
    CHECK(cl_wait_eof(&c3));
    cl_close(&c3);

    /* The first two still work; once one leaves there is room again. */
    cl_sends(&c1, "{\"op\":\"ping\"}\n");
    a = cl_line(&c1);
    CHECK(line_ok(a));
    free(a);
    cl_close(&c2);
    spin(20);
    CHECK_INT(ctl_clients(ctl), 1);
    CHECK_INT(cl_connect(&c4), 0);
    cl_sends(&c4, "{\"op\":\"ping\"}\n");
    a = cl_line(&c4);
    CHECK(line_ok(a));
    free(a);
    cl_close(&c4);
    cl_close(&c1);
    spin(20);
    CHECK_INT(ctl_clients(ctl), 0);
    stop();
}

/* Long against the 50 ms between busy's requests: a loaded machine must not
 * make busy look idle. */
#define IDLE_MS 600

static void test_idle(void)
{
    REQUIRE(start(8, IDLE_MS, (gid_t)-1) == 0);
    struct cl quiet, busy;
    CHECK_INT(cl_connect(&quiet), 0);
    CHECK_INT(cl_connect(&busy), 0);
    uint64_t t0 = uv_hrtime();
    /* busy sends a request every 50 ms: its timer restarts each time. */
    for (int i = 0; i < 8; i++) {
        cl_sends(&busy, "{\"op\":\"ping\"}\n");
        char *a = cl_line(&busy);
        CHECK(line_ok(a));
        free(a);
        spin(50);
    }
    char *a = cl_line(&quiet);
    CHECK(line_error_is(a, "idle timeout"));
    free(a);
    CHECK(cl_wait_eof(&quiet));
    CHECK(uv_hrtime() - t0 >= IDLE_MS * 1000000ull);
    cl_pump(&busy);
    CHECK(!busy.eof);

    /* The loop stalls past the idle time while a request waits unread
     * (timers run before I/O): the request counts, not the timer. */
    spin(5);
    cl_sends(&busy, "{\"op\":\"ping\"}\n");
    poll(NULL, 0, IDLE_MS * 3 / 2);
    a = cl_line(&busy);
    CHECK(line_ok(a));
    free(a);
    cl_pump(&busy);
    CHECK(!busy.eof);
    cl_close(&quiet);
    cl_close(&busy);
    stop();
}

/* A client that writes far more requests than it reads replies: the daemon
 * pauses it instead of buffering without bound, and every reply arrives,
 * in order, once the client reads. */
static void test_backpressure(void)
{
    enum { N = 30000 };
    REQUIRE(start(8, 0, (gid_t)-1) == 0);
    struct cl c;
    CHECK_INT(cl_connect(&c), 0);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));

    char req[64];
    size_t sent = 0;
    bool blocked = false;
    for (int i = 1; i <= N; i++) {
        int n = snprintf(req, sizeof(req), "{\"op\":\"status\",\"id\":%d}\n", 1000000 + i);
        size_t off = 0;
        for (int k = 0; off < (size_t)n && k < 200; k++) {
            ssize_t w = send(c.fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else
                uv_run(&loop, UV_RUN_NOWAIT);
        }
        if (off < (size_t)n) {
            blocked = true; /* the daemon stopped reading: the whole point */
            sent = (size_t)i - 1;
            /* finish this request once the client reads */
            for (int k = 0; off < (size_t)n; k++) {
                cl_pump(&c);
                ssize_t w = send(c.fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
                if (w > 0)
                    off += (size_t)w;
                uv_run(&loop, UV_RUN_NOWAIT);
                REQUIRE(k < 100000);
            }
            sent = (size_t)i;
            break;
        }
        sent = (size_t)i;
    }
    CHECK(blocked);
    /* Read every reply to what was sent, checking the order. */
    size_t got = 0;
    for (; got < sent; got++) {
        char *line = cl_line(&c);
        char want[64];
        snprintf(want, sizeof(want), "no token with id %zu", 1000000 + got + 1);
        if (!line_error_is(line, want)) {
            free(line);
            break;
        }
        free(line);
    }
    CHECK_INT(got, sent);
    cl_close(&c);
    stop();
}

/* A client that leaves right after its request: the request is still
 * carried out, and the daemon is fine. */
static void test_gone_before_reply(void)
{
    REQUIRE(start(8, 0, (gid_t)-1) == 0);
    struct cl c;
    CHECK_INT(cl_connect(&c), 0);
    cl_sends(&c, "{\"op\":\"revoke\",\"token\":\"tok-SECRET-gone\"}\n");
    cl_close(&c);
    spin(50);
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(store_db(env.store)->conn,
                               "SELECT count(*) FROM tokens WHERE token = 'tok-SECRET-gone' AND "
                               "state = 'pending'", -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    CHECK_INT(ctl_clients(ctl), 0);
    stop();
}

/* Closing with clients connected frees everything (uv_loop_close == 0). */
static void test_close_with_clients(void)
{
    REQUIRE(start(8, 1000, (gid_t)-1) == 0);
    struct cl c1, c2;
    CHECK_INT(cl_connect(&c1), 0);
    CHECK_INT(cl_connect(&c2), 0);
    cl_sends(&c1, "{\"op\":\"ping\"}\n{\"op\":\"pi");
    spin(20);
    CHECK_INT(ctl_clients(ctl), 2);
    stop();
    CHECK(cl_wait_eof(&c2));
    cl_close(&c1);
    cl_close(&c2);
}

/* A forked client under another uid and groups: the reply it got. */
static char *foreign_ping(uid_t uid, gid_t gid, gid_t extra_group)
{
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        gid_t groups[1] = {extra_group};
        if (setgroups(extra_group == (gid_t)-1 ? 0 : 1, groups) < 0 || setgid(gid) < 0 ||
            setuid(uid) < 0)
            _exit(3);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            dprintf(p[1], "connect: %s", strerror(errno));
            _exit(4);
        }
        /* A refusal may close the connection before the request is
         * written (EPIPE): the reply is still there to read. */
        (void)send(fd, "{\"op\":\"ping\"}\n", 14, MSG_NOSIGNAL);
        char buf[512];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0 && write(p[1], buf, (size_t)n) != n)
            _exit(6);
        _exit(0);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    char buf[512];
    size_t len = 0;
    for (int i = 0; i < 3000; i++) {
        ssize_t n = read(p[0], buf + len, sizeof(buf) - 1 - len);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0)
            break;
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    buf[len] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    return strdup(buf);
}

static void test_peer_credentials(void)
{
    if (geteuid() != 0) {
        printf("skip test_peer_credentials: needs root to run clients as other uids\n");
        return;
    }
    REQUIRE(start(8, 0, (gid_t)4242) == 0);
    /* The file mode is not what is under test here: open it up so that the
     * credentials check is what decides. */
    REQUIRE(chmod(sock_path, 0666) == 0);

    char *a = foreign_ping(65534, 65534, (gid_t)-1); /* nobody: refused */
    CHECK(line_error_is(a, "permission denied"));
    free(a);
    a = foreign_ping(65534, 65534, 4242);            /* in the control group: accepted */
    CHECK(line_ok(a));
    free(a);
    a = foreign_ping(65534, 4242, (gid_t)-1);        /* its primary group: accepted */
    CHECK(line_ok(a));
    free(a);
    a = foreign_ping(0, 0, (gid_t)-1);               /* root */
    CHECK(line_ok(a));
    free(a);

    /* Refusals in a burst: each refused, but not one log line each. */
    char logpath[128];
    snprintf(logpath, sizeof(logpath), "%s/stderr.log", dir);
    fflush(stderr);
    int saved = dup(2), logfd = open(logpath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    REQUIRE(saved >= 0 && logfd >= 0 && dup2(logfd, 2) == 2);
    for (int i = 0; i < 5; i++) {
        a = foreign_ping(65534, 65534, (gid_t)-1);
        CHECK(line_error_is(a, "permission denied"));
        free(a);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(logfd);
    FILE *f = fopen(logpath, "r");
    REQUIRE(f);
    char line[512];
    int logged = 0;
    while (fgets(line, sizeof(line), f))
        logged += strstr(line, "permission denied for uid 65534") != NULL;
    fclose(f);
    unlink(logpath);
    CHECK(logged < 5); /* e2e_ctl checks that the first one is logged */
    spin(20);
    CHECK_INT(ctl_clients(ctl), 0);
    stop();

    /* Without a control group only root and our own uid get in. */
    REQUIRE(start(8, 0, (gid_t)-1) == 0);
    REQUIRE(chmod(sock_path, 0666) == 0);
    a = foreign_ping(65534, 4242, 4242);
    CHECK(line_error_is(a, "permission denied"));
    free(a);
    stop();
}

static void setup(void)
{
    /* As revokerd's main does: ctl leaves SIGPIPE to the process, and some
     * cases here write to a peer that has left. */
    signal(SIGPIPE, SIG_IGN);
    open_db();
}

static void teardown(void)
{
    close_db();
}

TEST_MAIN(CASE(setup), CASE(test_bind_mode_and_close), CASE(test_stale_live_and_not_socket),
          CASE(test_listen_fd), CASE(test_lines), CASE(test_line_limit), CASE(test_max_clients),
          CASE(test_idle), CASE(test_backpressure), CASE(test_gone_before_reply),
          CASE(test_close_with_clients), CASE(test_peer_credentials), CASE(teardown))

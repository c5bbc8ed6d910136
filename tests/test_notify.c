/* test_notify: notify against a NOTIFY_SOCKET owned by the test, on a real
 * loop with deadlines. Every case sets the environment it needs before
 * notify_new() (sd_notify reads NOTIFY_SOCKET at each call) and ends with
 * uv_loop_close() == 0, so a handle left open fails it. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "notify.h"
#include "unit.h"

#define MAX_MSGS 256

struct msg {
    char text[600];
    uint64_t at_ms; /* since the fixture started */
};

struct fixture {
    uv_loop_t loop;
    uv_poll_t poll;
    uv_timer_t deadline;
    uv_timer_t driver; /* drives a case's calls at set times */
    char dir[32];
    char path[64];
    int fd;
    uint64_t t0_ns;
    struct msg msgs[MAX_MSGS];
    int count;
    /* run_until() stops once this holds */
    bool (*done)(struct fixture *f);
    /* the status case's state */
    struct notify *n;
    int step;
};

static uint64_t elapsed_ms(const struct fixture *f)
{
    return (uv_hrtime() - f->t0_ns) / 1000000;
}

static uint64_t mono_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct fixture *f = p->data;

    (void)events;
    REQUIRE(status == 0);
    for (;;) {
        char buf[sizeof(f->msgs[0].text)];
        ssize_t len = recv(f->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

        if (len < 0) {
            REQUIRE(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
            break;
        }
        REQUIRE(f->count < MAX_MSGS);
        buf[len] = '\0';
        memcpy(f->msgs[f->count].text, buf, (size_t)len + 1);
        f->msgs[f->count].at_ms = elapsed_ms(f);
        f->count++;
    }
    if (f->done && f->done(f))
        uv_stop(&f->loop);
}

static void deadline_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Sets NOTIFY_SOCKET (or not) and clears the watchdog variables; each case
 * sets what it needs on top before notify_new(). */
static void setup(struct fixture *f, bool with_socket)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    memset(f, 0, sizeof(*f));
    alarm(20); /* a loop kept alive by a timer would hang: fail instead */
    snprintf(f->dir, sizeof(f->dir), "/tmp/ntfyXXXXXX");
    REQUIRE(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/n", f->dir);
    REQUIRE(strlen(f->path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(f->fd >= 0);
    REQUIRE(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);

    if (with_socket)
        REQUIRE(setenv("NOTIFY_SOCKET", f->path, 1) == 0);
    else
        REQUIRE(unsetenv("NOTIFY_SOCKET") == 0);
    REQUIRE(unsetenv("WATCHDOG_USEC") == 0);
    REQUIRE(unsetenv("WATCHDOG_PID") == 0);

    REQUIRE(uv_loop_init(&f->loop) == 0);
    REQUIRE(uv_poll_init(&f->loop, &f->poll, f->fd) == 0);
    f->poll.data = f;
    REQUIRE(uv_poll_start(&f->poll, UV_READABLE, poll_cb) == 0);
    REQUIRE(uv_timer_init(&f->loop, &f->deadline) == 0);
    REQUIRE(uv_timer_init(&f->loop, &f->driver) == 0);
    f->driver.data = f;
    f->t0_ns = uv_hrtime();
}

/* Runs the loop until f->done holds or ms have passed. */
static void run_until(struct fixture *f, bool (*done)(struct fixture *f), uint64_t ms)
{
    f->done = done;
    REQUIRE(uv_timer_start(&f->deadline, deadline_cb, ms, 0) == 0);
    if (!done || !done(f))
        uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&f->deadline);
    f->done = NULL;
}

static void teardown(struct fixture *f, struct notify *n)
{
    notify_close(n);
    uv_close((uv_handle_t *)&f->poll, NULL);
    uv_close((uv_handle_t *)&f->deadline, NULL);
    uv_close((uv_handle_t *)&f->driver, NULL);
    /* notify frees itself in its close callbacks: the loop must run them. */
    CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(uv_loop_close(&f->loop), 0);
    close(f->fd);
    unlink(f->path);
    rmdir(f->dir);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    alarm(0);
}

static int count_exact(const struct fixture *f, const char *text)
{
    int c = 0;

    for (int i = 0; i < f->count; i++)
        c += strcmp(f->msgs[i].text, text) == 0;
    return c;
}

static int count_prefix(const struct fixture *f, const char *prefix)
{
    int c = 0;

    for (int i = 0; i < f->count; i++)
        c += strncmp(f->msgs[i].text, prefix, strlen(prefix)) == 0;
    return c;
}

static bool got_one(struct fixture *f)
{
    return f->count >= 1;
}

static void test_ready_once_and_no_watchdog(void)
{
    struct fixture f;
    struct notify *n = NULL;

    setup(&f, true);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    notify_ready(n);
    run_until(&f, got_one, 2000);
    CHECK_INT(f.count, 1);
    CHECK_STR(f.msgs[0].text, "READY=1");
    /* Without WATCHDOG_USEC: no ping, however long the loop runs. */
    run_until(&f, NULL, 500);
    CHECK_INT(count_exact(&f, "READY=1"), 1);
    CHECK_INT(count_exact(&f, "WATCHDOG=1"), 0);
    CHECK_INT(f.count, 1);
    teardown(&f, n);
}

static void test_stopping(void)
{
    struct fixture f;
    struct notify *n = NULL;

    setup(&f, true);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    notify_stopping(n);
    run_until(&f, got_one, 2000);
    CHECK_INT(f.count, 1);
    CHECK_STR(f.msgs[0].text, "STOPPING=1");
    teardown(&f, n);
}

static void test_reloading_carries_monotonic_usec(void)
{
    struct fixture f;
    struct notify *n = NULL;
    unsigned long long usec = 0;
    int used = 0;

    setup(&f, true);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    uint64_t before = mono_usec();
    notify_reloading(n);
    uint64_t after = mono_usec();
    run_until(&f, got_one, 2000);
    REQUIRE(f.count == 1);
    CHECK_INT(sscanf(f.msgs[0].text, "RELOADING=1\nMONOTONIC_USEC=%llu%n", &usec, &used), 1);
    CHECK_INT(used, (int)strlen(f.msgs[0].text));
    CHECK(usec >= before && usec <= after);
    teardown(&f, n);
}

/* Ten lines 10 ms apart: the first goes out at once, the last one second
 * after it, none of the eight in between. */
static void status_driver_cb(uv_timer_t *t)
{
    struct fixture *f = t->data;

    notify_status(f->n, "update %d", f->step);
    if (++f->step == 10)
        uv_timer_stop(t);
}

static void test_status_rate_limited(void)
{
    struct fixture f;
    struct notify *n = NULL;

    setup(&f, true);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    f.n = n;
    uint64_t start = elapsed_ms(&f);
    REQUIRE(uv_timer_start(&f.driver, status_driver_cb, 0, 10) == 0);
    run_until(&f, NULL, 1600);
    CHECK_INT(f.step, 10);
    CHECK_INT(count_prefix(&f, "STATUS="), 2);
    REQUIRE(f.count == 2);
    CHECK_STR(f.msgs[0].text, "STATUS=update 0");
    CHECK(f.msgs[0].at_ms - start < 100);
    CHECK_STR(f.msgs[1].text, "STATUS=update 9");
    uint64_t gap = f.msgs[1].at_ms - f.msgs[0].at_ms;
    CHECK(gap >= 950 && gap <= 1150);

    /* A line equal to the one shown sends nothing; another one, more than a
     * second after the last, goes out at once. */
    notify_status(n, "update %d", 9);
    run_until(&f, NULL, 700); /* the last line went out about 1 s ago */
    CHECK_INT(f.count, 2);
    uint64_t asked = elapsed_ms(&f);
    notify_status(n, "a\nSTATUS=b");
    run_until(&f, NULL, 300);
    REQUIRE(f.count == 3);
    CHECK_STR(f.msgs[2].text, "STATUS=a STATUS=b"); /* no second assignment */
    CHECK(f.msgs[2].at_ms - asked < 100);

    /* A pending line replaced by the one already shown is dropped. */
    notify_status(n, "shortly replaced");
    notify_status(n, "a\nSTATUS=b");
    run_until(&f, NULL, 1300);
    CHECK_INT(f.count, 3);
    teardown(&f, n);
}

static void test_watchdog_cadence(void)
{
    struct fixture f;
    struct notify *n = NULL;

    setup(&f, true);
    REQUIRE(setenv("WATCHDOG_USEC", "200000", 1) == 0);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    run_until(&f, NULL, 1000);
    int pings = count_exact(&f, "WATCHDOG=1");
    /* One at once, then every 100 ms: 11 on an idle machine. */
    CHECK(pings >= 7 && pings <= 13);
    CHECK_INT(pings, f.count);
    for (int i = 1; i < f.count; i++) {
        uint64_t gap = f.msgs[i].at_ms - f.msgs[i - 1].at_ms;
        if (gap < 60 || gap > 190) {
            fprintf(stderr, "watchdog gap %d: %llu ms\n", i, (unsigned long long)gap);
            CHECK(gap >= 60 && gap <= 190);
        }
    }
    teardown(&f, n);
}

/* sd_watchdog_enabled() decides: WATCHDOG_PID naming another process means
 * the watchdog is not ours. */
static void test_watchdog_other_pid(void)
{
    struct fixture f;
    struct notify *n = NULL;
    char pid[32];

    setup(&f, true);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
    REQUIRE(setenv("WATCHDOG_USEC", "200000", 1) == 0);
    REQUIRE(setenv("WATCHDOG_PID", pid, 1) == 0);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    run_until(&f, NULL, 500);
    CHECK_INT(f.count, 0);
    teardown(&f, n);
}

static void test_noop_without_notify_socket(void)
{
    struct fixture f;
    struct notify *n = NULL;

    setup(&f, false);
    REQUIRE(setenv("WATCHDOG_USEC", "200000", 1) == 0);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    notify_ready(n);
    notify_status(n, "one");
    notify_status(n, "two");
    notify_reloading(n);
    notify_stopping(n);
    /* Now the socket exists in the environment; the watchdog, decided at
     * notify_new(), stays off and nothing else is sent either. */
    REQUIRE(setenv("NOTIFY_SOCKET", f.path, 1) == 0);
    notify_ready(n);
    notify_status(n, "three");
    run_until(&f, NULL, 1300);
    CHECK_INT(f.count, 0);
    teardown(&f, n);
}

/* With the watchdog armed and a status line pending, a loop with nothing
 * else to do must still end. */
static void test_timers_do_not_keep_loop_alive(void)
{
    struct fixture f;
    struct notify *n = NULL;

    setup(&f, true);
    REQUIRE(setenv("WATCHDOG_USEC", "200000", 1) == 0);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    notify_status(n, "first");
    notify_status(n, "pending");
    uv_poll_stop(&f.poll);
    uint64_t start = elapsed_ms(&f);
    CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), 0); /* hangs (alarm) if not */
    CHECK(elapsed_ms(&f) - start < 500);
    teardown(&f, n);
}

static void test_close_null_and_unused(void)
{
    uv_loop_t loop;
    struct notify *n = NULL;

    notify_close(NULL);
    notify_ready(NULL);
    notify_status(NULL, "x");
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(unsetenv("NOTIFY_SOCKET") == 0);
    REQUIRE(notify_new(&loop, &n) == 0);
    notify_close(n);
    CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(uv_loop_close(&loop), 0);
}

/* stderr into a file while fn runs; the file's text. */
static void capture_stderr(void (*fn)(struct notify *), struct notify *n, char *buf, size_t len)
{
    char path[] = "/tmp/ntfylogXXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    ssize_t got;

    REQUIRE(fd >= 0 && saved >= 0);
    fflush(stderr);
    REQUIRE(dup2(fd, 2) == 2);
    fn(n);
    fflush(stderr);
    REQUIRE(dup2(saved, 2) == 2);
    close(saved);
    got = pread(fd, buf, len - 1, 0);
    buf[got > 0 ? got : 0] = '\0';
    close(fd);
    unlink(path);
}

static void ready_twice(struct notify *n)
{
    notify_ready(n);
    notify_ready(n);
}

static int occurrences(const char *hay, const char *needle)
{
    int c = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p++)
        c++;
    return c;
}

/* A socket nobody listens on: one log line for a run of failures, one when
 * it works again. */
static void test_failure_logged_once(void)
{
    struct fixture f;
    struct notify *n = NULL;
    char text[4096];

    setup(&f, true);
    REQUIRE(setenv("NOTIFY_SOCKET", "/nonexistent-revokerd-test/notify", 1) == 0);
    REQUIRE(notify_new(&f.loop, &n) == 0);
    capture_stderr(ready_twice, n, text, sizeof(text));
    CHECK_INT(occurrences(text, "sd_notify(READY) failed"), 1);
    REQUIRE(setenv("NOTIFY_SOCKET", f.path, 1) == 0);
    capture_stderr(ready_twice, n, text, sizeof(text));
    CHECK_INT(occurrences(text, "failed"), 0);
    CHECK_INT(occurrences(text, "sd_notify works again"), 1);
    run_until(&f, NULL, 200);
    CHECK_INT(count_exact(&f, "READY=1"), 2);
    teardown(&f, n);
}

TEST_MAIN(CASE(test_ready_once_and_no_watchdog), CASE(test_stopping),
          CASE(test_reloading_carries_monotonic_usec), CASE(test_status_rate_limited),
          CASE(test_watchdog_cadence), CASE(test_watchdog_other_pid),
          CASE(test_noop_without_notify_socket), CASE(test_timers_do_not_keep_loop_alive),
          CASE(test_failure_logged_once), CASE(test_close_null_and_unused))

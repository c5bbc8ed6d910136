/* http: real requests on a real loop against the stand-in endpoint
 * (tests/endpoint.py, path in $ENDPOINT), which records what it received. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "build-config.h"
#include "http.h"
#include "unit.h"

/* ---- the endpoint, one per test run ---- */

static struct {
    pid_t pid;
    char dir[64];
    char log[128];
    char url[128];
    char refused_url[128];
} ep;

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void endpoint_stop(void)
{
    char path[192];

    if (ep.pid <= 0)
        return;
    kill(ep.pid, SIGTERM);
    waitpid(ep.pid, NULL, 0);
    ep.pid = 0;
    unlink(ep.log);
    snprintf(path, sizeof(path), "%s/port", ep.dir);
    unlink(path);
    rmdir(ep.dir);
}

/* A port that refuses connections: bound once, then closed, never listened. */
static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    REQUIRE(fd >= 0);
    REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    REQUIRE(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void endpoint_start(void)
{
    const char *script = getenv("ENDPOINT");
    char port_file[192];
    pid_t parent;
    int port = 0;

    if (ep.pid > 0)
        return;
    REQUIRE(script);
    /* The tests talk to 127.0.0.1 directly. */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    snprintf(ep.dir, sizeof(ep.dir), "/tmp/revokerd-http-XXXXXX");
    REQUIRE(mkdtemp(ep.dir));
    snprintf(ep.log, sizeof(ep.log), "%s/log.jsonl", ep.dir);
    snprintf(port_file, sizeof(port_file), "%s/port", ep.dir);
    parent = getpid();
    ep.pid = fork();
    REQUIRE(ep.pid >= 0);
    if (ep.pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        /* Never outlive a test that was killed (by meson's timeout, say). */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(127);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execlp("python3", "python3", script, "--port", "0", "--port-file", port_file, "--log", ep.log,
               (char *)NULL);
        _exit(127);
    }
    atexit(endpoint_stop);
    for (int i = 0; i < 1000 && port == 0; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (port == 0) {
            REQUIRE(waitpid(ep.pid, NULL, WNOHANG) == 0);
            pause_ms(10);
        }
    }
    REQUIRE(port > 0);
    snprintf(ep.url, sizeof(ep.url), "http://127.0.0.1:%d/v2/token/logout", port);
    snprintf(ep.refused_url, sizeof(ep.refused_url), "http://127.0.0.1:%d/v2/token/logout", closed_port());
}

/* Every logged request whose token starts with prefix, in order. The
 * endpoint writes the line before it answers. */
static json_t *log_entries(const char *prefix)
{
    json_t *out = json_array();
    FILE *f = fopen(ep.log, "r");
    char *line = NULL;
    size_t cap = 0;

    REQUIRE(out);
    if (!f)
        return out;
    while (getline(&line, &cap, f) > 0) {
        json_t *e = json_loads(line, 0, NULL);
        const char *tok = json_string_value(json_object_get(e, "token"));
        if (tok && strncmp(tok, prefix, strlen(prefix)) == 0)
            json_array_append(out, e);
        json_decref(e);
    }
    free(line);
    fclose(f);
    return out;
}

/* Waits (bounded) until at least n entries with prefix are logged. */
static json_t *log_wait(const char *prefix, size_t n)
{
    json_t *a = log_entries(prefix);

    for (int i = 0; i < 500 && json_array_size(a) < n; i++) {
        json_decref(a);
        pause_ms(10);
        a = log_entries(prefix);
    }
    return a;
}

static size_t distinct_conns(json_t *entries)
{
    json_t *seen = json_object();
    size_t i, n;
    json_t *e;
    char key[32];

    json_array_foreach(entries, i, e) {
        snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(json_object_get(e, "conn")));
        json_object_set_new(seen, key, json_true());
    }
    n = json_object_size(seen);
    json_decref(seen);
    return n;
}

/* ---- the loop ---- */

struct call {
    struct http_request req;
    char token[96];
    int done;
    struct http_result res;
};

static unsigned completed;

static void on_done(struct http_request *req, const struct http_result *res)
{
    struct call *c = req->data;

    c->done++;
    c->res = *res;
    completed++;
}

static void call_init(struct call *c, const char *token)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->token, sizeof(c->token), "%s", token);
    c->req.token = c->token;
    c->req.token_len = strlen(c->token);
    c->req.data = c;
    c->req.done = on_done;
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop until *counter reaches want, at most max_ms; a guard timer
 * wakes UV_RUN_ONCE so the deadline holds even when nothing happens. */
static bool run_until(uv_loop_t *loop, const unsigned *counter, unsigned want, uint64_t max_ms)
{
    uint64_t end = uv_hrtime() + max_ms * 1000000;
    uv_timer_t guard;
    long iterations = 0;

    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 20, 20);
    while (*counter < want && uv_hrtime() < end && iterations++ < 10000000)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *counter >= want;
}

static unsigned closed;

static void on_closed(void *data)
{
    unsigned *n = data;

    (*n)++;
}

static struct http *new_http(uv_loop_t *loop, const char *url, uint64_t timeout_ms, unsigned conns,
                             const char *extra)
{
    struct http_options o = {.url = url, .timeout_ms = timeout_ms, .extra_header = extra, .max_connections = conns};
    struct http *h = NULL;

    REQUIRE(http_new(loop, &o, &h) == 0);
    REQUIRE(h);
    return h;
}

/* Close h, wait for its callback, and prove no handle was forgotten. */
static void close_all(uv_loop_t *loop, struct http *h)
{
    unsigned before = closed;

    http_close(h, on_closed, &closed);
    CHECK(run_until(loop, &closed, before + 1, 5000));
    CHECK_INT(closed, before + 1);
    CHECK_INT(uv_loop_close(loop), 0);
}

static struct http_result run_one(uv_loop_t *loop, struct http *h, const char *token)
{
    struct call c;
    unsigned want = completed + 1;

    call_init(&c, token);
    REQUIRE(http_submit(h, &c.req) == 0);
    CHECK(run_until(loop, &completed, want, 10000));
    CHECK_INT(c.done, 1);
    return c.res;
}

/* ---- cases ---- */

static void test_outcomes(void)
{
    static const struct {
        const char *token;
        long status;
        const char *body_has;
        const char *retry_after;
    } cases[] = {
        {"ok-1", 200, "{}", ""},
        {"s401-a", 401, "Invalid or expired", ""},
        {"s422-b", 422, "\"type\": \"value_error\"", ""},
        {"s503ra7-d", 503, "detail", "7"},
        {"s429ra120-e", 429, "detail", "120"},
        {"s500-f", 500, "detail", ""},
        {"s404-g", 404, "", ""},
        {"s302-h", 302, "", ""},
        {"garbage-i", 200, "", ""}, /* binary, longer than the kept start */
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    struct call calls[N];
    uv_loop_t loop;
    struct http *h;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 5000, 4, NULL);
    completed = 0;
    for (size_t i = 0; i < N; i++) {
        call_init(&calls[i], cases[i].token);
        REQUIRE(http_submit(h, &calls[i].req) == 0);
    }
    CHECK_INT(http_in_flight(h), N);
    CHECK(run_until(&loop, &completed, N, 10000));
    CHECK_INT(http_in_flight(h), 0);
    for (size_t i = 0; i < N; i++) {
        const struct http_result *r = &calls[i].res;
        CHECK_INT(calls[i].done, 1);
        CHECK_INT(r->curl_code, CURLE_OK);
        CHECK_INT(r->status, cases[i].status);
        CHECK_STR(r->error, "");
        CHECK_STR(r->retry_after, cases[i].retry_after);
        if (!strstr(r->body, cases[i].body_has))
            fprintf(stderr, "token %s: body \"%s\" lacks \"%s\"\n", cases[i].token, r->body, cases[i].body_has);
        CHECK(strstr(r->body, cases[i].body_has));
        CHECK(r->duration_ms < 5000);
        CHECK(calls[i].req.priv == NULL);
    }
    /* The redirect was not followed: one request for it. */
    json_t *redirects = log_wait("s302-h", 1);
    CHECK_INT(json_array_size(redirects), 1);
    json_decref(redirects);
    close_all(&loop, h);
}

/* What went over the wire, as the endpoint recorded it. */
static void test_request_recorded(void)
{
    const char *token = "rec-aZ09._~+/=";
    uv_loop_t loop;
    struct http *h;
    struct http_result r;
    json_t *entries, *e, *hd;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 5000, 2, "X-Client-Id: cid-7");
    r = run_one(&loop, h, token);
    CHECK_INT(r.status, 200);
    entries = log_wait("rec-", 1);
    REQUIRE(json_array_size(entries) == 1);
    e = json_array_get(entries, 0);
    hd = json_object_get(e, "headers");
    CHECK_STR(json_string_value(json_object_get(e, "method")), "POST");
    CHECK_STR(json_string_value(json_object_get(e, "path")), "/v2/token/logout");
    CHECK_STR(json_string_value(json_object_get(e, "token")), token);
    CHECK_STR(json_string_value(json_object_get(hd, "authorization")), "Bearer rec-aZ09._~+/=");
    CHECK_STR(json_string_value(json_object_get(hd, "user-agent")), "revokerd/" REVOKERD_VERSION);
    CHECK_STR(json_string_value(json_object_get(hd, "accept")), "application/json");
    CHECK_STR(json_string_value(json_object_get(hd, "x-client-id")), "cid-7");
    /* An empty body, without a form content type or chunking. */
    CHECK_STR(json_string_value(json_object_get(hd, "content-length")), "0");
    CHECK(json_object_get(hd, "content-type") == NULL);
    CHECK(json_object_get(hd, "transfer-encoding") == NULL);
    CHECK(json_object_get(hd, "expect") == NULL);
    json_decref(entries);
    close_all(&loop, h);
}

/* Bad input is refused synchronously, and then nothing is ever called. */
static void test_invalid(void)
{
    static const char *bad_tokens[] = {"", "a b", "x\r\nX-Evil: 1", "tab\there", "nul"};
    struct http_options o = {.url = "http://127.0.0.1:1/", .timeout_ms = 1000, .max_connections = 1};
    struct http *h = (struct http *)&o; /* must stay untouched */
    uv_loop_t loop;
    struct call c;

    REQUIRE(uv_loop_init(&loop) == 0);
    o.url = NULL;
    CHECK_INT(http_new(&loop, &o, &h), -EINVAL);
    o.url = "http://127.0.0.1:1/";
    o.max_connections = 0;
    CHECK_INT(http_new(&loop, &o, &h), -EINVAL);
    o.max_connections = 1;
    o.extra_header = "X-A: 1\r\nX-B: 2";
    CHECK_INT(http_new(&loop, &o, &h), -EINVAL);
    o.extra_header = "no colon";
    CHECK_INT(http_new(&loop, &o, &h), -EINVAL);
    CHECK(h == (struct http *)&o);
    o.extra_header = NULL;
    REQUIRE(http_new(&loop, &o, &h) == 0);

    completed = 0;
    for (size_t i = 0; i < sizeof(bad_tokens) / sizeof(bad_tokens[0]); i++) {
        call_init(&c, bad_tokens[i]);
        if (strcmp(bad_tokens[i], "nul") == 0)
            c.token[1] = '\0'; /* "n\0l": token_len says 3 */
        CHECK_INT(http_submit(h, &c.req), -EINVAL);
    }
    c.req.done = NULL;
    CHECK_INT(http_submit(h, &c.req), -EINVAL);
    CHECK_INT(http_in_flight(h), 0);
    o.url = "";
    CHECK_INT(http_configure(h, &o), -EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(completed, 0);
    close_all(&loop, h);
}

struct polls {
    unsigned open;
    uv_handle_t *last;
};

static void count_poll(uv_handle_t *handle, void *arg)
{
    struct polls *p = arg;

    if (handle->type == UV_POLL && !uv_is_closing(handle)) {
        p->open++;
        p->last = handle;
    }
}

/* The poll handles that are open and not closing; *ret_last one of them. */
static unsigned open_polls(uv_loop_t *loop, uv_handle_t **ret_last)
{
    struct polls p = {0};

    uv_walk(loop, count_poll, &p);
    *ret_last = p.last;
    return p.open;
}

/* Sequential requests reuse one kept-alive connection, and its poll
 * handle: curl stops watching the socket between two requests, the handle
 * stays (a new one costs five system calls a request). */
static void test_keepalive(void)
{
    enum { N = 50 };
    uv_loop_t loop;
    struct http *h;
    json_t *entries;
    char token[32];
    uv_handle_t *first = NULL, *now = NULL;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 5000, 4, NULL);
    for (int i = 0; i < N; i++) {
        snprintf(token, sizeof(token), "ka-%d", i);
        CHECK_INT(run_one(&loop, h, token).status, 200);
        CHECK_INT(open_polls(&loop, &now), 1);
        if (i == 0)
            first = now;
        CHECK(now == first);
    }
    entries = log_wait("ka-", N);
    CHECK_INT(json_array_size(entries), N);
    CHECK_INT(distinct_conns(entries), 1);
    json_decref(entries);
    close_all(&loop, h);
}

/* 200 at once over at most 16 connections, all answered. */
static void test_concurrency(void)
{
    enum { N = 200, CONNS = 16 };
    static struct call calls[N];
    uv_loop_t loop;
    struct http *h;
    json_t *entries;
    char token[32];
    size_t conns;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 10000, CONNS, NULL);
    completed = 0;
    for (int i = 0; i < N; i++) {
        snprintf(token, sizeof(token), "cc-%d", i);
        call_init(&calls[i], token);
        REQUIRE(http_submit(h, &calls[i].req) == 0);
    }
    CHECK_INT(http_in_flight(h), N);
    CHECK(run_until(&loop, &completed, N, 30000));
    for (int i = 0; i < N; i++) {
        CHECK_INT(calls[i].done, 1);
        CHECK_INT(calls[i].res.status, 200);
    }
    entries = log_wait("cc-", N);
    CHECK_INT(json_array_size(entries), N);
    conns = distinct_conns(entries);
    printf("# %d concurrent requests used %zu connections (max %d)\n", N, conns, CONNS);
    CHECK(conns <= CONNS);
    CHECK(conns >= 2);
    json_decref(entries);
    close_all(&loop, h);
}

static unsigned turns;

static void on_turn(uv_check_t *c)
{
    (void)c;
    turns++;
}

/* The server closes an idle kept-alive connection whose handle still
 * watches it: the handle stops (no busy loop on the readable EOF), and the
 * next request opens a new connection. */
static void test_idle_close(void)
{
    uv_loop_t loop;
    uv_check_t check;
    struct http *h;
    json_t *entries;
    uv_handle_t *poll;
    unsigned zero = 0;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 5000, 2, NULL);
    CHECK_INT(run_one(&loop, h, "idleclose-1").status, 200);
    CHECK_INT(open_polls(&loop, &poll), 1);

    /* 300 ms: the server closes after 50; a loop woken by the EOF again
     * and again would turn thousands of times, the guard timer 15. */
    uv_check_init(&loop, &check);
    uv_check_start(&check, on_turn);
    turns = 0;
    run_until(&loop, &zero, 1, 300);
    printf("# 300 ms around an idle close: %u loop turns\n", turns);
    CHECK(turns < 100);
    uv_close((uv_handle_t *)&check, NULL);

    CHECK_INT(run_one(&loop, h, "idleclose-2").status, 200);
    entries = log_wait("idleclose-", 2);
    CHECK_INT(json_array_size(entries), 2);
    CHECK_INT(distinct_conns(entries), 2);
    json_decref(entries);
    close_all(&loop, h);
}

static void test_timeout(void)
{
    uv_loop_t loop;
    struct http *h;
    struct http_result r;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 300, 2, NULL);
    r = run_one(&loop, h, "hang-t1");
    CHECK_INT(r.curl_code, CURLE_OPERATION_TIMEDOUT);
    CHECK_INT(r.status, 0);
    CHECK(r.error[0] != '\0');
    CHECK(r.duration_ms >= 250 && r.duration_ms < 3000);
    CHECK(strstr(r.error, "hang-t1") == NULL);
    close_all(&loop, h);
}

static void test_refused(void)
{
    uv_loop_t loop;
    struct http *h;
    struct http_result r;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.refused_url, 5000, 2, NULL);
    r = run_one(&loop, h, "refused-1");
    CHECK_INT(r.curl_code, CURLE_COULDNT_CONNECT);
    CHECK_INT(r.status, 0);
    CHECK(r.error[0] != '\0');
    close_all(&loop, h);
}

/* Connections reset by the server, mixed with good requests at full
 * concurrency: sockets close and their numbers are reused at once. */
static void test_reset(void)
{
    enum { N = 300, CONNS = 16 };
    static struct call calls[N];
    uv_loop_t loop;
    struct http *h;
    struct http_result r;
    char token[32];

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 10000, CONNS, NULL);
    r = run_one(&loop, h, "reset-single");
    CHECK(r.curl_code != CURLE_OK);
    CHECK_INT(r.status, 0);
    CHECK(r.error[0] != '\0');
    CHECK(strstr(r.error, "reset-single") == NULL);

    completed = 0;
    for (int i = 0; i < N; i++) {
        snprintf(token, sizeof(token), i % 2 ? "reset-%d" : "fine-%d", i);
        call_init(&calls[i], token);
        REQUIRE(http_submit(h, &calls[i].req) == 0);
    }
    CHECK(run_until(&loop, &completed, N, 60000));
    for (int i = 0; i < N; i++) {
        CHECK_INT(calls[i].done, 1);
        if (i % 2) {
            CHECK(calls[i].res.curl_code != CURLE_OK);
            CHECK_INT(calls[i].res.status, 0);
        } else {
            CHECK_INT(calls[i].res.curl_code, CURLE_OK);
            CHECK_INT(calls[i].res.status, 200);
        }
    }
    close_all(&loop, h);
}

/* curl 7.88 reports a header line over its limit as "Out of memory": the
 * result says what it was. */
static void test_big_header(void)
{
    uv_loop_t loop;
    struct http *h;
    struct http_result r;

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 10000, 2, NULL);
    r = run_one(&loop, h, "bigheader-1");
    CHECK_INT(r.status, 0);
    CHECK(r.curl_code != CURLE_OK);
    CHECK(strstr(r.error, "response headers too large") != NULL);
    /* The connection is not reused, the next request is fine. */
    CHECK_INT(run_one(&loop, h, "fine-after-big").status, 200);
    close_all(&loop, h);
}

/* New settings apply to the next submit; bad ones change nothing. */
static void test_configure(void)
{
    struct http_options o = {.url = ep.url, .timeout_ms = 5000, .max_connections = 4};
    uv_loop_t loop;
    struct http *h;
    json_t *entries;
    char extra[64];

    endpoint_start();
    o.url = ep.url;
    REQUIRE(uv_loop_init(&loop) == 0);
    h = new_http(&loop, ep.url, 5000, 4, "X-Client-Id: one");
    CHECK_INT(run_one(&loop, h, "cfg-1").status, 200);

    o.url = ep.refused_url;
    CHECK_INT(http_configure(h, &o), 0);
    CHECK_INT(run_one(&loop, h, "cfg-2").curl_code, CURLE_COULDNT_CONNECT);

    /* The options' strings are copied: the caller's buffers may go. */
    snprintf(extra, sizeof(extra), "X-Client-Id: two");
    o.url = ep.url;
    o.extra_header = extra;
    CHECK_INT(http_configure(h, &o), 0);
    memset(extra, 'x', sizeof(extra) - 1);
    CHECK_INT(run_one(&loop, h, "cfg-3").status, 200);

    o.max_connections = 0;
    CHECK_INT(http_configure(h, &o), -EINVAL);
    CHECK_INT(run_one(&loop, h, "cfg-4").status, 200);

    entries = log_wait("cfg-", 3);
    REQUIRE(json_array_size(entries) == 3);
    CHECK_STR(json_string_value(json_object_get(json_array_get(entries, 0), "token")), "cfg-1");
    CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(entries, 0), "headers"), "x-client-id")),
              "one");
    CHECK_STR(json_string_value(json_object_get(json_array_get(entries, 1), "token")), "cfg-3");
    CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(entries, 1), "headers"), "x-client-id")),
              "two");
    CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(entries, 2), "headers"), "x-client-id")),
              "two");
    json_decref(entries);
    close_all(&loop, h);
}

/* http_close with requests in flight: each done once, aborted; a submit
 * from inside such a done is refused and never calls back. */
static struct http *closing_h;
static struct call late;
static int late_rc;

static void on_done_submit_late(struct http_request *req, const struct http_result *res)
{
    on_done(req, res);
    if (req->data != &late && late_rc == 1) {
        call_init(&late, "ok-late");
        late_rc = http_submit(closing_h, &late.req);
    }
}

static void test_close_in_flight(void)
{
    enum { N = 6 };
    struct call calls[N];
    uv_loop_t loop;
    unsigned before;
    json_t *entries;
    char token[32];

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    closing_h = new_http(&loop, ep.url, 30000, 4, NULL);
    completed = 0;
    late_rc = 1;
    for (int i = 0; i < N; i++) {
        snprintf(token, sizeof(token), "hang-close-%d", i);
        call_init(&calls[i], token);
        calls[i].req.done = on_done_submit_late;
        REQUIRE(http_submit(closing_h, &calls[i].req) == 0);
    }
    /* Run until the endpoint holds 4 (the connection limit) of them. */
    for (int i = 0; i < 200; i++) {
        unsigned none = 0;
        run_until(&loop, &none, 1, 10);
        entries = log_entries("hang-close-");
        size_t seen = json_array_size(entries);
        json_decref(entries);
        if (seen >= 4)
            break;
    }
    CHECK_INT(completed, 0);
    CHECK_INT(http_in_flight(closing_h), N);
    before = closed;
    http_close(closing_h, on_closed, &closed);
    CHECK(run_until(&loop, &closed, before + 1, 5000));
    for (int i = 0; i < N; i++) {
        CHECK_INT(calls[i].done, 1);
        CHECK_INT(calls[i].res.curl_code, CURLE_ABORTED_BY_CALLBACK);
        CHECK_INT(calls[i].res.status, 0);
    }
    CHECK(late_rc < 0);
    CHECK_INT(late.done, 0);
    CHECK_INT(closed, before + 1);
    CHECK_INT(uv_loop_close(&loop), 0);
}

/* A done callback may close the client that called it. */
static struct http *self_closing_h;

static void on_done_close(struct http_request *req, const struct http_result *res)
{
    on_done(req, res);
    http_close(self_closing_h, on_closed, &closed);
}

static void test_close_from_done(void)
{
    enum { HANGS = 3 };
    struct call hangs[HANGS], ok;
    uv_loop_t loop;
    unsigned before = closed;
    char token[32];

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    self_closing_h = new_http(&loop, ep.url, 30000, 8, NULL);
    completed = 0;
    for (int i = 0; i < HANGS; i++) {
        snprintf(token, sizeof(token), "hang-self-%d", i);
        call_init(&hangs[i], token);
        REQUIRE(http_submit(self_closing_h, &hangs[i].req) == 0);
    }
    call_init(&ok, "ok-closer");
    ok.req.done = on_done_close;
    REQUIRE(http_submit(self_closing_h, &ok.req) == 0);
    CHECK(run_until(&loop, &closed, before + 1, 10000));
    CHECK_INT(ok.done, 1);
    CHECK_INT(ok.res.status, 200);
    for (int i = 0; i < HANGS; i++) {
        CHECK_INT(hangs[i].done, 1);
        CHECK_INT(hangs[i].res.curl_code, CURLE_ABORTED_BY_CALLBACK);
    }
    CHECK_INT(closed, before + 1);
    CHECK_INT(uv_loop_close(&loop), 0);
}

/* Throughput at concurrency 16, each done resubmitting its own request
 * struct. Printed, not asserted: the Python endpoint is the bottleneck. */
static struct http *perf_h;
static unsigned perf_left, perf_failed;
static int perf_seq;

static void on_perf_done(struct http_request *req, const struct http_result *res)
{
    struct call *c = req->data;

    completed++;
    if (res->status != 200)
        perf_failed++;
    if (perf_left == 0)
        return;
    perf_left--;
    snprintf(c->token, sizeof(c->token), "perf-%d", perf_seq++);
    c->req.token_len = strlen(c->token);
    if (http_submit(perf_h, &c->req) != 0)
        perf_failed++;
}

static void test_throughput(void)
{
    enum { TOTAL = 5000, CONC = 16 };
    struct call calls[CONC];
    uv_loop_t loop;
    uint64_t t0;
    double secs;
    char token[32];

    endpoint_start();
    REQUIRE(uv_loop_init(&loop) == 0);
    perf_h = new_http(&loop, ep.url, 10000, CONC, NULL);
    completed = perf_failed = 0;
    perf_left = TOTAL - CONC;
    perf_seq = CONC;
    t0 = uv_hrtime();
    for (int i = 0; i < CONC; i++) {
        snprintf(token, sizeof(token), "perf-%d", i);
        call_init(&calls[i], token);
        calls[i].req.done = on_perf_done;
        REQUIRE(http_submit(perf_h, &calls[i].req) == 0);
    }
    CHECK(run_until(&loop, &completed, TOTAL, 120000));
    secs = (double)(uv_hrtime() - t0) / 1e9;
    CHECK_INT(completed, TOTAL);
    CHECK_INT(perf_failed, 0);
    printf("# %d requests at concurrency %d in %.2f s: %.0f requests/s\n", TOTAL, CONC, secs, TOTAL / secs);
    close_all(&loop, perf_h);
}

TEST_MAIN(CASE(test_invalid), CASE(test_outcomes), CASE(test_request_recorded), CASE(test_keepalive),
          CASE(test_idle_close), CASE(test_concurrency), CASE(test_timeout), CASE(test_refused), CASE(test_reset), CASE(test_big_header),
          CASE(test_configure), CASE(test_close_in_flight), CASE(test_close_from_done), CASE(test_throughput))

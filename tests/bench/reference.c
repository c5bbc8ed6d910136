/* revokerd-reference: the benchmark's in-run reference (issue 19, item 1).
 *
 *   revokerd-reference DB URL [CONCURRENCY]
 *
 * The least a durable revoker has to do, written as plainly as we can, so
 * that the benchmark can report revokerd's drain as a ratio to it measured
 * in the same run, against the same nginx, on a copy of the same table
 * (absolute numbers do not travel between machines; ratios do better):
 *
 *  - due rows (state 'active', expires_at <= now) are read from the table
 *    in pages of 512 through its expiry index;
 *  - CONCURRENCY (16) requests in flight, libcurl's multi_socket API on a
 *    libuv loop (the shape of curl's docs/examples/multi-uv.c), one easy
 *    handle per slot, reused so connections stay open;
 *  - per outcome one row update (state, secret erased, finished_at) and one
 *    row in the real audit table (its indexes included), 100 outcomes per
 *    transaction, WAL with synchronous=NORMAL as revokerd runs it.
 *
 * Left out on purpose, since they are what revokerd adds: the hash chain and
 * fingerprints, the `due` step, secure_delete, retries and backoff, health
 * and the control socket. Any answer counts as an outcome (the benchmark's
 * nginx answers 200). Prints one JSON line: {"revoked":N,"seconds":S,
 * "cpu_s":C}. Written by hand because it is the thing being measured
 * against: it must stay this small. */
#include <curl/curl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#define PAGE 512
#define BATCH 100
#define MAX_SLOTS 64

struct row {
    int64_t id;
    char *token;
};

struct slot {
    CURL *easy;
    struct curl_slist *headers;
    struct row row;
    int busy;
};

struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
};

static struct {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    sqlite3 *db;
    sqlite3_stmt *page, *update, *audit, *begin, *commit;
    const char *url;
    struct slot slots[MAX_SLOTS];
    unsigned nslots, in_flight;
    struct row queue[PAGE];
    unsigned qhead, qlen;
    int64_t cursor_exp, cursor_id, now_s;
    int exhausted;
    int64_t done_id[BATCH];
    long done_code[BATCH];
    unsigned ndone;
    long revoked;
} g;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "revokerd-reference: %s: %s\n", what, why);
    exit(1);
}

static void sql_step(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        die("sqlite", sqlite3_errmsg(g.db));
    sqlite3_reset(s);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void flush(void)
{
    if (g.ndone == 0)
        return;
    int64_t at = now_ms();
    sql_step(g.begin);
    for (unsigned i = 0; i < g.ndone; i++) {
        sqlite3_bind_int64(g.update, 1, at);
        sqlite3_bind_int64(g.update, 2, g.done_id[i]);
        sql_step(g.update);
        sqlite3_bind_int64(g.audit, 1, at);
        sqlite3_bind_int64(g.audit, 2, g.done_id[i]);
        sqlite3_bind_int64(g.audit, 3, g.done_code[i]);
        sql_step(g.audit);
    }
    sql_step(g.commit);
    g.revoked += g.ndone;
    g.ndone = 0;
}

static void fetch(void)
{
    g.qhead = g.qlen = 0;
    sqlite3_bind_int64(g.page, 1, g.now_s);
    sqlite3_bind_int64(g.page, 2, g.cursor_exp);
    sqlite3_bind_int64(g.page, 3, g.cursor_id);
    int rc;
    while ((rc = sqlite3_step(g.page)) == SQLITE_ROW) {
        struct row *r = &g.queue[g.qlen++];
        r->id = sqlite3_column_int64(g.page, 0);
        r->token = strdup((const char *)sqlite3_column_text(g.page, 1));
        g.cursor_exp = sqlite3_column_int64(g.page, 2);
        g.cursor_id = r->id;
        if (!r->token)
            die("fetch", "out of memory");
    }
    if (rc != SQLITE_DONE)
        die("fetch", sqlite3_errmsg(g.db));
    sqlite3_reset(g.page);
    if (g.qlen < PAGE)
        g.exhausted = 1;
}

static void dispatch(void)
{
    for (unsigned i = 0; i < g.nslots; i++) {
        struct slot *s = &g.slots[i];
        if (s->busy)
            continue;
        if (g.qhead == g.qlen) {
            if (g.exhausted)
                return;
            fetch();
            if (g.qlen == 0)
                return;
        }
        s->row = g.queue[g.qhead++];
        char auth[8300];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", s->row.token);
        curl_slist_free_all(s->headers);
        s->headers = curl_slist_append(NULL, auth);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
        s->busy = 1;
        g.in_flight++;
        curl_multi_add_handle(g.multi, s->easy);
    }
}

static void check_done(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g.multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct slot *s;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        long code = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(g.multi, m->easy_handle);
        g.done_id[g.ndone] = s->row.id;
        g.done_code[g.ndone] = code;
        if (++g.ndone == BATCH)
            flush();
        free(s->row.token);
        s->busy = 0;
        g.in_flight--;
    }
    dispatch();
    if (g.in_flight == 0) {
        flush();
        uv_stop(g.loop);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *k = p->data;
    int flags = status < 0 ? CURL_CSELECT_ERR
                           : ((events & UV_READABLE) ? CURL_CSELECT_IN : 0) |
                                 ((events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(g.multi, k->fd, flags, &running);
    check_done();
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    int running;
    curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done();
}

static int timer_cb(CURLM *multi, long ms, void *userp)
{
    (void)multi, (void)userp;
    if (ms < 0)
        uv_timer_stop(&g.timer);
    else
        uv_timer_start(&g.timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

static void sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    (void)e, (void)userp;
    struct sock *k = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            uv_poll_stop(&k->poll);
            uv_close((uv_handle_t *)&k->poll, sock_closed);
            curl_multi_assign(g.multi, fd, NULL);
        }
        return 0;
    }
    if (!k) {
        k = calloc(1, sizeof(*k));
        if (!k)
            die("socket", "out of memory");
        k->fd = fd;
        uv_poll_init_socket(g.loop, &k->poll, fd);
        k->poll.data = k;
        curl_multi_assign(g.multi, fd, k);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&k->poll, ev, on_poll);
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p, (void)u;
    return size * n;
}

static sqlite3_stmt *prepare(const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(g.db, sql, -1, &s, NULL) != SQLITE_OK)
        die(sql, sqlite3_errmsg(g.db));
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: revokerd-reference DB URL [CONCURRENCY]\n");
        return 2;
    }
    g.url = argv[2];
    g.nslots = argc == 4 ? (unsigned)atoi(argv[3]) : 16;
    if (g.nslots < 1 || g.nslots > MAX_SLOTS)
        die("concurrency", "must be 1..64");
    if (sqlite3_open(argv[1], &g.db) != SQLITE_OK)
        die(argv[1], sqlite3_errmsg(g.db));
    sqlite3_busy_timeout(g.db, 10000);
    if (sqlite3_exec(g.db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL, NULL) !=
        SQLITE_OK)
        die("pragma", sqlite3_errmsg(g.db));
    g.page = prepare("SELECT id, token, expires_at FROM tokens INDEXED BY tokens_expiry"
                     " WHERE state = 'active' AND expires_at IS NOT NULL AND expires_at <= ?1"
                     " AND (expires_at, id) > (?2, ?3) ORDER BY expires_at, id LIMIT 512");
    g.update = prepare("UPDATE tokens SET state = 'revoked', token = NULL, last_event = 'revoked',"
                       " finished_at = ?1 WHERE id = ?2");
    /* A hash column of a hash's size, so the audit rows weigh what revokerd's do. */
    g.audit = prepare("INSERT INTO audit (at, token_id, event, attempt, http_status, hash)"
                      " VALUES (?1, ?2, 'revoked', 1, ?3, printf('%064d', 0))");
    g.begin = prepare("BEGIN IMMEDIATE");
    g.commit = prepare("COMMIT");
    g.now_s = now_ms() / 1000;
    g.cursor_exp = INT64_MIN;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    g.loop = uv_default_loop();
    uv_timer_init(g.loop, &g.timer);
    g.multi = curl_multi_init();
    curl_multi_setopt(g.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(g.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    for (unsigned i = 0; i < g.nslots; i++) {
        CURL *e = g.slots[i].easy = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, g.url);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &g.slots[i]);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dispatch();
    if (g.in_flight > 0)
        uv_run(g.loop, UV_RUN_DEFAULT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("{\"revoked\":%ld,\"seconds\":%.6f,\"cpu_s\":%.6f}\n", g.revoked,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, cpu);

    for (unsigned i = 0; i < g.nslots; i++) {
        curl_easy_cleanup(g.slots[i].easy);
        curl_slist_free_all(g.slots[i].headers);
    }
    curl_multi_cleanup(g.multi);
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_run(g.loop, UV_RUN_DEFAULT);
    sqlite3_finalize(g.page);
    sqlite3_finalize(g.update);
    sqlite3_finalize(g.audit);
    sqlite3_finalize(g.begin);
    sqlite3_finalize(g.commit);
    sqlite3_close(g.db);
    curl_global_cleanup();
    return 0;
}

/* revokerd: wires the modules together and owns the process: options,
 * configuration, signals, systemd notification. Order at start: parse
 * config, open and migrate the database, bind the control socket, set up the
 * engine (curl), READY=1 right before uv_run. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "audithead.h"
#include "build-config.h"
#include "bulk.h"
#include "config.h"
#include "ctl.h"
#include "dbfile.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "notify.h"
#include "proto.h"
#include "queue.h"
#include "retention.h"
#include "revoke.h"
#include "secret.h"
#include "store.h"
#include "util.h"
#include "watch.h"


struct options {
    const char *config_path; /* NULL: the default, if it exists */
    const char *database, *url, *socket;
    bool check_only;
};

struct daemon {
    uv_loop_t loop;
    struct options opts;
    struct config cfg;
    struct store *store;
    struct revoke *revoke;
    struct retention *retention; /* NULL: out of memory at start, nothing is pruned */
    struct watch *watch;
    struct ctl *ctl;
    struct metrics *metrics; /* NULL when the counter could not open the database */
    struct queue *queue;     /* shape's counts off the loop; NULL: on the loop */
    struct bulk *bulk;       /* ops on many tokens in parts; NULL: whole, on the loop */
    struct metrics_http *metrics_http; /* NULL unless [metrics] listen is set */
    struct notify *notify;
    struct audithead *audithead;
    struct proto_env env;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t status_timer;
    uv_timer_t file_timer;
    uint64_t status_sent_ms;
    bool stopping;
    bool file_lost;
    int exit_code;
};

/* Short: the manual pages, revokerd(8) and revokerd.conf(5), say the rest. */
static const char usage[] =
    "Usage: revokerd [OPTIONS]\n"
    "\n"
    "Revoke the API session tokens recorded in a SQLite table that expire, are flagged\n"
    "or are handed over on the control socket, at the API's logout endpoint.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE    the configuration file\n"
    "                       (default " REVOKERD_DEFAULT_CONFIG ", if it exists)\n"
    "  -d, --database PATH  the SQLite database (overrides daemon.database)\n"
    "  -u, --url URL        the logout endpoint (overrides logout.url)\n"
    "  -s, --socket PATH    the control socket (overrides daemon.socket)\n"
    "      --check-config   validate the configuration, print it, and exit\n"
    "  -h, --help           show this help and exit\n"
    "  -V, --version        show the version and exit\n"
    "\n"
    "See revokerd(8) and revokerd.conf(5).\n";

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},   {"database", required_argument, NULL, 'd'},
        {"url", required_argument, NULL, 'u'},      {"socket", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 'C'},   {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "c:d:u:s:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config_path = optarg; break;
        case 'd': o->database = optarg; break;
        case 'u': o->url = optarg; break;
        case 's': o->socket = optarg; break;
        case 'C': o->check_only = true; break;
        case 'h': fputs(usage, stdout); exit(0);
        case 'V': printf("revokerd %s\n", REVOKERD_VERSION); exit(0);
        default: fputs("Try 'revokerd --help'.\n", stderr); return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "revokerd: unexpected argument '%s'\nTry 'revokerd --help'.\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

static int replace_string(char **dst, const char *value)
{
    char *copy = strdup(value);

    if (!copy)
        return -ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
}

/* daemon.control_group: a group name, or a number (which need not name a
 * group in /etc/group). NULL when there is none by that name. */
static const struct group *find_group(const char *name)
{
    static struct group by_number;
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(name, &end, 10);
    if (name[0] >= '0' && name[0] <= '9' && *end == '\0' && errno == 0 && n < (gid_t)-1) {
        const struct group *g = getgrgid((gid_t)n);
        if (g)
            return g;
        by_number = (struct group){.gr_gid = (gid_t)n};
        return &by_number;
    }
    return getgrnam(name);
}

static gid_t control_gid(const struct config *c)
{
    const struct group *g = c->control_group ? find_group(c->control_group) : NULL;

    return g ? g->gr_gid : (gid_t)-1;
}

/* Defaults, then the file, then the command line, then the whole checked. */
static int read_config(const struct options *o, struct config *ret, char *err, size_t errlen)
{
    struct config c;
    const char *path = o->config_path;
    int rc = 0;

    config_defaults(&c);
    if (!path && access(REVOKERD_DEFAULT_CONFIG, F_OK) == 0)
        path = REVOKERD_DEFAULT_CONFIG;
    if (path)
        rc = config_load(&c, path, err, errlen);
    if (rc == 0 && o->database)
        rc = replace_string(&c.database, o->database);
    if (rc == 0 && o->url)
        rc = replace_string(&c.url, o->url);
    if (rc == 0 && o->socket)
        rc = replace_string(&c.socket, o->socket);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc == 0)
        rc = config_validate(&c, err, errlen);
    if (rc == 0 && c.control_group && !find_group(c.control_group)) {
        snprintf(err, errlen,
                 "daemon.control_group: there is no group named '%s'%s%s%s: create it (systemd-sysusers does, "
                 "from revokerd's sysusers.d entry), or set another group, or none: control_group =",
                 c.control_group, path ? " (set in " : "", path ? path : "", path ? ")" : "");
        rc = -EINVAL;
    }
    if (rc < 0) {
        config_free(&c);
        return rc;
    }
    *ret = c;
    return 0;
}


/* Every control client holds a file descriptor: make the soft RLIMIT_NOFILE
 * fit daemon.max_clients plus the database, curl's connections and the
 * loop's own (systemd gives services a soft limit of 1024; past it libuv
 * silently drops new connections). The loop uses epoll, so descriptors
 * above 1024 are fine. */
static void fit_fd_limit(const struct config *c)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)c->max_clients + 2 * (rlim_t)c->concurrency + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        log_warning("the file descriptor limit (RLIMIT_NOFILE hard %llu) is below the %llu that "
                    "daemon.max_clients = %u needs: raise LimitNOFILE= or lower daemon.max_clients",
                    (unsigned long long)rl.rlim_max, (unsigned long long)need, c->max_clients);
        need = rl.rlim_max;
    }
    if (need <= rl.rlim_cur)
        return;
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warning("cannot raise the file descriptor limit to %llu: %s", (unsigned long long)need,
                    strerror(errno));
}

/* ---- status line ---- */

static void send_status(struct daemon *d)
{
    struct revoke_stats s;
    struct state_counts counts = {0};
    char db_error[sizeof(s.db_error) + 48] = "";

    revoke_get_stats(d->revoke, &s);
    store_count(d->store, false, &counts);
    if (s.db_error[0])
        util_format(db_error, sizeof(db_error), "; database error for %" PRIu64 " s: %s",
                    s.db_error_for_ms / 1000, s.db_error);
    notify_status(d->notify,
                  "endpoint %s; %" PRId64 "%s pending, %u in flight, %" PRId64 "%s failed, %" PRId64
                  "%s held; since start %" PRIu64 " revoked, %" PRIu64 " already invalid, %" PRIu64
                  " rejected, %" PRIu64 " gave up, %" PRIu64 " dropped%s",
                  s.health, counts.pending, counts.pending >= TOKENS_COUNT_CAP ? "+" : "", s.in_flight,
                  counts.failed, counts.failed >= TOKENS_COUNT_CAP ? "+" : "", counts.held,
                  counts.held >= HOLD_COUNT_CAP ? "+" : "", s.revoked, s.already_invalid, s.rejected,
                  s.gave_up, s.dropped, db_error);
    d->status_sent_ms = uv_now(&d->loop);
    /* Quiet again after a burst: give the memory it took back to the
     * system (glibc keeps freed heap otherwise). At most once a second. */
    if (s.queued + s.in_flight + s.uncommitted == 0 && ctl_clients(d->ctl) == 0)
        malloc_trim(0);
}

static void on_status_timer(uv_timer_t *h)
{
    send_status(container_of(h, struct daemon, status_timer));
}

/* Counting pending rows costs a (small) index walk: do it at most once a
 * second, and only after something changed. */
static void on_engine_change(void *data)
{
    struct daemon *d = data;
    uint64_t now = uv_now(&d->loop), next = d->status_sent_ms + 1000;

    if (d->stopping || uv_is_active((uv_handle_t *)&d->status_timer))
        return;
    uv_timer_start(&d->status_timer, on_status_timer, next > now ? next - now : 0, 0);
}

static int schema_check(struct daemon *d);

static void on_table_changed(void *data)
{
    struct daemon *d = data;

    if (d->stopping || schema_check(d) < 0)
        return;
    revoke_kick(d->revoke);
}

static uint64_t uptime_ms(const struct proto_env *env)
{
    const struct daemon *d = container_of(env, struct daemon, env);

    return uv_now((uv_loop_t *)&d->loop) - env->started_ms;
}

/* ---- the database file ---- */

static void stop(struct daemon *d, const char *why);
static void on_file_timer(uv_timer_t *h);

#define FILE_CHECK_MS 2000

/* The path must keep naming the file we write: a removed or replaced
 * database would take every write from now on and lose it at exit. The
 * stop waits for the next loop turn, so that the request that noticed it
 * gets its refusal. */
static int file_check(struct daemon *d)
{
    const char *what = NULL;
    int rc;

    if (d->file_lost)
        return -ESTALE;
    rc = store_check_file(d->store, &what);
    if (rc == 0)
        return 0;
    d->file_lost = true;
    log_crit("%s was %s while revokerd ran (%s): stopping, so that a restart opens the file that is there now; "
             "revocations acknowledged in the last %d s may be only in the old file; socket requests are refused "
             "from now on",
             what, rc == -ENOENT ? "removed" : "replaced", strerror(-rc), FILE_CHECK_MS / 1000);
    notify_status(d->notify, "database file was removed or replaced: stopping");
    d->exit_code = 1;
    uv_timer_start(&d->file_timer, on_file_timer, 0, 0);
    return rc;
}

/* A repair the store made (store_open, store_check_schema). */
static void repair_note(void *data, const char *type, const char *name, const char *how)
{
    (void)data;
    if (strcmp(type, "link") == 0)
        log_notice("%s is %s through a symbolic link: revokerd locks, opens and checks that file", name, how);
    else if (strcmp(type, "file") == 0)
        log_warning("%s had %s: it holds secrets, only revokerd's user and daemon.control_group may use it",
                    name, how);
    else
        log_warning("%s %s was %s (dropped or changed by another process: an application's connection or the "
                    "sqlite3 command line); recreated as revokerd's migrations create it",
                    type, name, how);
}

/* After every commit of another process that changed the schema: recreate
 * a dropped index, trigger or view at once; a dropped or altered table ends
 * the daemon (exit 1), and a restart refuses to start on it. -EBADMSG then. */
static int schema_check(struct daemon *d)
{
    char err[512];
    int rc;

    rc = store_check_schema(d->store, err, sizeof(err));
    if (rc == -EBADMSG) {
        log_crit("%s", err);
        notify_status(d->notify, "the database's schema was damaged by another process: stopping");
        d->exit_code = 1;
        stop(d, "schema damaged");
        return rc;
    }
    if (rc < 0) /* busy, or a passing error: the next commit or the file timer tries again */
        log_debug("%s", err);
    return 0;
}

static int env_file_check(const struct proto_env *env)
{
    return file_check(container_of(env, struct daemon, env));
}

static void on_file_timer(uv_timer_t *h)
{
    struct daemon *d = container_of(h, struct daemon, file_timer);

    if (d->file_lost)
        stop(d, "database file removed or replaced");
    else if (file_check(d) == 0 && !d->stopping)
        (void)schema_check(d);
}

/* ---- the optional client credential (the engine is handed the header) ---- */

/* "Name: value" from $CREDENTIALS_DIRECTORY/logout-credential (systemd's
 * LoadCredential=), never from the environment or argv. */
static int load_credential(const struct config *cfg, char **ret_header)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    char path[4096], value[4096], *header;
    ssize_t n;
    size_t len;
    int fd;

    *ret_header = NULL;
    if (!cfg->credential_header)
        return 0;
    if (!dir) {
        log_err("logout.credential_header is set but $CREDENTIALS_DIRECTORY is not (use LoadCredential=logout-credential:...)");
        return -ENOENT;
    }
    snprintf(path, sizeof(path), "%s/logout-credential", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_err("cannot read the logout credential %s: %s", path, strerror(errno));
        return -errno;
    }
    n = read(fd, value, sizeof(value) - 1);
    close(fd);
    if (n < 0)
        return -EIO;
    len = (size_t)n;
    while (len && (value[len - 1] == '\n' || value[len - 1] == '\r'))
        len--;
    value[len] = '\0';
    if (len == 0 || memchr(value, '\n', len) || memchr(value, '\r', len)) {
        secret_wipe(value, sizeof(value));
        log_err("the logout credential in %s is empty or spans several lines", path);
        return -EINVAL;
    }
    len = strlen(cfg->credential_header) + 2 + len + 1;
    header = malloc(len);
    if (header)
        snprintf(header, len, "%s: %s", cfg->credential_header, value);
    secret_wipe(value, sizeof(value));
    if (!header)
        return -ENOMEM;
    *ret_header = header;
    return 0;
}

/* ---- reload and stop ---- */

/* A new URL: the engine forgot the old one's health (revoke_configure);
 * here the pending tokens' waits earned at the old URL end, so that the
 * new one is tried at once. Attempts stay. */
static void endpoint_changed(struct daemon *d)
{
    unsigned n = 0;
    int rc = store_begin(d->store, STORE_WRITE_NOW);

    if (rc == 0)
        rc = store_end(d->store, store_due_now(d->store, db_now_ms(), &n));
    if (rc < 0)
        log_warning("the endpoint changed, but the pending tokens' waits could not be ended (%s): they keep "
                    "them", store_errmsg(d->store));
    else
        log_notice("the endpoint changed: its health starts afresh, %u pending token%s due now", n,
                   n == 1 ? " is" : "s are");
    revoke_kick(d->revoke); /* the next retry it waits for may be the old one */
}

static void reload(struct daemon *d)
{
    struct config c;
    char err[512], *header;
    int rc;

    notify_reloading(d->notify);
    rc = read_config(&d->opts, &c, err, sizeof(err));
    if (rc < 0) {
        log_err("reload refused, keeping the running configuration: %s", err);
        notify_ready(d->notify);
        return;
    }
    if (strcmp(c.database, d->cfg.database) != 0)
        log_warning("daemon.database changed to %s: takes effect at the next restart", c.database);
    if (strcmp(c.socket, d->cfg.socket) != 0)
        log_warning("daemon.socket changed to %s: takes effect at the next restart", c.socket);
    if (strcmp(c.metrics_listen ? c.metrics_listen : "", d->cfg.metrics_listen ? d->cfg.metrics_listen : "") != 0)
        log_warning("metrics.listen changed to '%s': takes effect at the next restart",
                    c.metrics_listen ? c.metrics_listen : "");
    rc = load_credential(&c, &header);
    if (rc == 0)
        rc = revoke_configure(d->revoke, &c, header);
    secret_free(header);
    if (rc == 0 && strcmp(c.url, d->cfg.url) != 0)
        endpoint_changed(d);
    if (rc < 0) {
        log_err("reload refused, keeping the running configuration: applying it failed: %s", strerror(-rc));
        config_free(&c);
        notify_ready(d->notify);
        return;
    }
    fit_fd_limit(&c);
    if (c.audit_anchor_interval_ms != d->cfg.audit_anchor_interval_ms)
        audithead_set_interval(d->audithead, c.audit_anchor_interval_ms);
    ctl_configure(d->ctl, c.max_clients, c.client_idle_ms, control_gid(&c));
    log_set_level(c.log_level);
    store_set_jwt_expiry(d->store, c.jwt_expiry);
    if (d->retention && retention_configure(d->retention, &c) < 0)
        log_warning("retention: out of memory: the previous [retention] settings stay");
    config_free(&d->cfg);
    d->cfg = c;
    log_notice("configuration reloaded (endpoint %s, concurrency %u, rate limit %u/s)", c.url, c.concurrency,
               c.rate_limit);
    notify_ready(d->notify);
    on_engine_change(d);
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_engine_stopped(void *data)
{
    struct daemon *d = data;

    d->revoke = NULL;
    /* The engine's last outcome is committed: the final head. */
    (void)audithead_log(d->audithead);
    audithead_close(d->audithead);
    d->audithead = NULL;
    store_close(d->store, NULL, NULL);
    d->store = NULL;
    uv_close((uv_handle_t *)&d->sigterm, on_closed);
    uv_close((uv_handle_t *)&d->sigint, on_closed);
    uv_close((uv_handle_t *)&d->sighup, on_closed);
    uv_close((uv_handle_t *)&d->status_timer, on_closed);
    uv_close((uv_handle_t *)&d->file_timer, on_closed);
    notify_close(d->notify);
    d->notify = NULL;
}

static void stop(struct daemon *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = true;
    log_notice("%s: stopping", why);
    notify_stopping(d->notify);
    uv_timer_stop(&d->status_timer);
    uv_timer_stop(&d->file_timer);
    ctl_close(d->ctl, NULL, NULL);
    d->ctl = NULL;
    metrics_http_close(d->metrics_http, NULL, NULL);
    d->metrics_http = NULL;
    metrics_close(d->metrics, NULL, NULL);
    d->metrics = NULL;
    queue_close(d->queue);
    d->queue = NULL;
    d->env.queue = NULL; /* a late request counts on the loop rather than on a freed queue */
    bulk_close(d->bulk); /* the op running ends at its part boundary; the store is still open */
    d->bulk = NULL;
    d->env.bulk = NULL;
    watch_close(d->watch);
    d->watch = NULL;
    retention_close(d->retention, NULL, NULL);
    d->retention = NULL;
    revoke_stop(d->revoke, on_engine_stopped, d);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;

    if (signum == SIGHUP)
        reload(d);
    else
        stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start ---- */

static int listen_fd_from_systemd(int *ret_fd)
{
    int n = sd_listen_fds(1);

    *ret_fd = -1;
    if (n < 0) {
        log_crit("cannot take the sockets passed by systemd: %s", strerror(-n));
        return n;
    }
    if (n == 0)
        return 0;
    if (n > 1) {
        log_crit("systemd passed %d sockets; revokerd takes exactly one (the control socket)", n);
        return -EINVAL;
    }
    if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0) {
        log_crit("the socket systemd passed is not a listening UNIX stream socket");
        return -EINVAL;
    }
    *ret_fd = SD_LISTEN_FDS_START;
    return 0;
}

static int start(struct daemon *d)
{
    struct ctl_options co;
    char err[512], *header;
    int rc;

    rc = store_open_group(&d->loop, d->cfg.database, control_gid(&d->cfg), repair_note, d, &d->store, err,
                          sizeof(err));
    if (rc < 0) {
        log_crit("%s", err);
        return rc;
    }
    store_set_jwt_expiry(d->store, d->cfg.jwt_expiry);
    if (dbfile_dir_check(d->cfg.database, control_gid(&d->cfg)) < 0)
        log_warning("the directory of %s does not belong to daemon.control_group %s with mode g+rwx and setgid "
                    "(2770): its members can write the table only while -wal and -shm exist",
                    d->cfg.database, d->cfg.control_group);
    rc = load_credential(&d->cfg, &header);
    if (rc == 0)
        rc = revoke_new(&d->loop, d->store, &d->cfg, header, &d->revoke);
    secret_free(header);
    if (rc < 0) {
        log_crit("cannot set up the revocation engine: %s", strerror(-rc));
        return rc;
    }
    revoke_on_change(d->revoke, on_engine_change, d);
    if (retention_new(&d->loop, d->store, &d->cfg, &d->retention) < 0)
        log_warning("retention: out of memory: nothing is pruned");
    rc = metrics_new(&d->loop, d->cfg.database, &d->metrics, err, sizeof(err));
    if (rc < 0)
        log_warning("metrics: %s; the metrics op answers with an error", err);
    if (queue_new(&d->loop, d->cfg.database, &d->queue) < 0)
        log_warning("queue: out of memory; the shape op counts on the loop");
    if (bulk_new(&d->loop, &d->bulk) < 0)
        log_warning("bulk: out of memory; holds, releases and revokes of many tokens run whole on the loop");
    d->env = (struct proto_env){
        .store = d->store,
        .revoke = d->revoke,
        .started_ms = uv_now(&d->loop),
        .uptime_ms = uptime_ms,
        .file_check = env_file_check,
        .metrics = d->metrics,
        .queue = d->queue,
        .bulk = d->bulk,
    };
    co = (struct ctl_options){
        .path = d->cfg.socket,
        .max_clients = d->cfg.max_clients,
        .idle_ms = d->cfg.client_idle_ms,
        .control_gid = control_gid(&d->cfg),
    };
    rc = listen_fd_from_systemd(&co.listen_fd);
    if (rc < 0)
        return rc;
    fit_fd_limit(&d->cfg);
    rc = ctl_new(&d->loop, &co, &d->env, &d->ctl, err, sizeof(err));
    if (rc < 0) {
        log_crit("control socket: %s", err);
        return rc;
    }
    if (d->metrics) {
        metrics_set_sources(d->metrics, d->revoke, d->ctl);
        metrics_set_store(d->metrics, d->store);
    }
    if (d->cfg.metrics_listen) {
        rc = metrics_http_new(&d->loop, d->cfg.metrics_listen, d->metrics, &d->metrics_http, err, sizeof(err));
        if (rc < 0) {
            /* The operator's address: an error in the configuration. */
            log_crit("[metrics] listen: %s", err);
            d->exit_code = 2;
            return rc;
        }
    }
    rc = watch_new(&d->loop, store_db(d->store), on_table_changed, d, &d->watch);
    if (rc < 0)
        log_warning("cannot watch %s for changes (%s): other processes' writes are seen by the %d s rescan only",
                    d->cfg.database, strerror(-rc), 30);
    rc = notify_new(&d->loop, &d->notify);
    if (rc < 0) {
        log_crit("cannot set up systemd notification: %s", strerror(-rc));
        return rc;
    }
    rc = audithead_new(&d->loop, store_db(d->store), d->cfg.audit_anchor_interval_ms, &d->audithead);
    if (rc < 0) {
        log_crit("cannot set up the audit head's timer: %s", strerror(-rc));
        return rc;
    }
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sighup, on_signal, SIGHUP);
    uv_timer_init(&d->loop, &d->status_timer);
    uv_timer_init(&d->loop, &d->file_timer);
    uv_timer_start(&d->file_timer, on_file_timer, FILE_CHECK_MS, FILE_CHECK_MS);
    return 0;
}

int main(int argc, char **argv)
{
    static struct daemon d;
    char err[512];
    int rc;

    log_set_journal(sd_journal_sendv);
    log_init("revokerd");
    config_set_url_check(config_check_url);
    if (parse_options(argc, argv, &d.opts) < 0)
        return 2;
    if (read_config(&d.opts, &d.cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "revokerd: %s\n", err);
        return 2;
    }
    if (d.opts.check_only) {
        config_print(stdout, &d.cfg);
        config_free(&d.cfg);
        return 0;
    }
    log_set_level(d.cfg.log_level);
    /* No core dump, no ptrace by other users: the process holds secrets. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    secret_wipe_json(); /* jansson wipes what it frees, from the first request on */
    signal(SIGPIPE, SIG_IGN);
    /* libuv's threadpool runs the WAL checkpoints, the metrics' count of
     * tokens per state and a shape request's count (queue.h), each one at a
     * time: a thread each, so that a checkpoint (which holds the engine's
     * bulk commits while it is queued) never waits behind a count of a large
     * table; no more, as each thread keeps a malloc arena. */
    setenv("UV_THREADPOOL_SIZE", "3", 0);

    rc = uv_loop_init(&d.loop);
    if (rc < 0) {
        log_crit("cannot create the event loop: %s", uv_strerror(rc));
        return 1;
    }
    rc = start(&d);
    if (rc < 0) {
        /* Nothing ran yet: exit without the orderly drain. */
        return d.exit_code ? d.exit_code : 1;
    }
    log_notice("revokerd %s ready: database %s, endpoint %s, concurrency %u", REVOKERD_VERSION, d.cfg.database,
               d.cfg.url, d.cfg.concurrency);
    notify_ready(d.notify);
    (void)audithead_log(d.audithead);
    on_engine_change(&d);
    uv_run(&d.loop, UV_RUN_DEFAULT);

    rc = uv_loop_close(&d.loop);
    if (rc < 0)
        log_err("event loop closed with handles still open: %s", uv_strerror(rc));
    config_free(&d.cfg);
    log_notice("stopped");
    return d.exit_code;
}

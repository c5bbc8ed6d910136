/* revokerctl: the command-line client of revokerd.
 *
 * Every command but `audit` sends one request over the control socket and
 * prints its reply; `audit` reads the database directly, read-only, so it
 * works while the daemon is down. A token is only ever read from standard
 * input (argv is visible to every user in ps) and its buffers are wiped.
 *
 * Exit status: 0 success, 1 the daemon answered an error (or the audit log
 * failed verification, or the database cannot be read), 2 usage error,
 * 69 (EX_UNAVAILABLE) the daemon cannot be reached. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "build-config.h"
#include "config.h"
#include "db.h"
#include "secret.h"

#define EXIT_ANSWERED_ERROR 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE EX_UNAVAILABLE /* 69 */
#define REPLY_MAX (64u << 20)
#define DEFAULT_TIMEOUT_MS 10000

struct ctx {
    const char *config_path;   /* --config */
    const char *socket;        /* --socket, or from the config */
    const char *database;      /* --database, or from the config */
    bool json;
    uint64_t timeout_ms;
    struct config cfg;
    bool cfg_loaded;
};

/* ---- help texts ---- */

static const char usage_main[] =
    "Usage: revokerctl [OPTIONS] COMMAND [ARGS...]\n"
    "       revokerctl help [COMMAND]\n";

static const char help_main[] =
    "NAME\n"
    "    revokerctl - control revokerd, the session-token revocation daemon\n"
    "\n"
    "SYNOPSIS\n"
    "    revokerctl [--config FILE] [--socket PATH] [--database PATH] [--json]\n"
    "               [--timeout SPAN] COMMAND [ARGS...]\n"
    "\n"
    "DESCRIPTION\n"
    "    revokerctl hands tokens to revokerd for revocation and shows what the\n"
    "    daemon is doing and what it did. Every command but audit talks to the\n"
    "    daemon over its control socket (newline-delimited JSON); audit reads\n"
    "    the audit log straight from the database, read-only, so it works while\n"
    "    the daemon is down.\n"
    "\n"
    "COMMANDS\n"
    "    revoke --id N | --subject S | --token-stdin [--reason R]\n"
    "        Queue a token for revocation: by its id, every active token of a\n"
    "        subject, or a secret read from standard input (never from the\n"
    "        command line, where every user could see it with ps).\n"
    "    status ID\n"
    "        A token's state, attempts, last event and error, next attempt.\n"
    "    retry ID | --failed\n"
    "        Put a failed token (or every failed token) back in the queue.\n"
    "    stats\n"
    "        Counts per state, requests in flight, outcomes since start,\n"
    "        the endpoint's health and the daemon's uptime.\n"
    "    ping\n"
    "        Check that the daemon answers.\n"
    "    audit [--since TIME] [--token ID] [--event E] [--limit N] [--verify]\n"
    "        Show the audit log, or verify its hash chain.\n"
    "    help [COMMAND]\n"
    "        This text, or a command's own (also: revokerctl COMMAND --help).\n"
    "\n"
    "OPTIONS\n"
    "    -c, --config FILE\n"
    "        The daemon's configuration file, read for daemon.socket and\n"
    "        daemon.database (default " REVOKERD_DEFAULT_CONFIG ",\n"
    "        if it exists and is readable; built-in defaults otherwise).\n"
    "    -s, --socket PATH\n"
    "        The control socket (default: daemon.socket, /run/revokerd.sock).\n"
    "    -d, --database PATH\n"
    "        The database, for audit (default: daemon.database).\n"
    "    -j, --json\n"
    "        Print the daemon's JSON reply as it came (audit: one JSON object\n"
    "        per line) instead of the human-readable form.\n"
    "    -t, --timeout SPAN\n"
    "        How long to wait for the daemon to accept and answer (default 10s;\n"
    "        \"500ms\", \"30s\", \"2min\").\n"
    "    -h, --help\n"
    "        Show this help.  --version prints the version.\n"
    "    Options may also follow the command (revokerctl status 42 --json).\n"
    "\n"
    "EXIT STATUS\n"
    "    0   success\n"
    "    1   the daemon answered with an error; audit --verify found a damaged\n"
    "        chain; the database cannot be read\n"
    "    2   usage error (unknown command or option, bad argument, bad config)\n"
    "    69  the daemon cannot be reached (EX_UNAVAILABLE); the message names\n"
    "        the socket path and the reason\n"
    "\n"
    "TIMES\n"
    "    Times are shown in the local time zone (TZ). --since accepts\n"
    "    \"2026-11-27\" (local midnight), \"2026-11-27 10:00\", \"2026-11-27 10:00:30\",\n"
    "    an ISO 8601 time such as \"2026-11-27T10:00:00Z\" or\n"
    "    \"2026-11-27T10:00:00+01:00\", or a span back from now: \"1h\", \"30min\",\n"
    "    \"2d\".\n"
    "\n"
    "EXAMPLES\n"
    "    printf '%s' \"$TOKEN\" | revokerctl revoke --token-stdin --reason logout\n"
    "    revokerctl revoke --subject alice --reason \"account closed\"\n"
    "    revokerctl status 42\n"
    "    revokerctl retry --failed\n"
    "    revokerctl --json stats | jq .states\n"
    "    revokerctl audit --since 1h --event gave_up\n"
    "    revokerctl audit --verify\n"
    "\n"
    "FILES\n"
    "    " REVOKERD_DEFAULT_CONFIG "\n"
    "        The configuration shared with revokerd.\n"
    "\n"
    "SEE ALSO\n"
    "    revokerd(8); the README's \"Control socket\" section for the protocol.\n";

struct command {
    const char *name;
    int (*run)(struct ctx *x, int argc, char **argv);
    const char *help;
};

static const char help_revoke[] =
    "Usage: revokerctl revoke --id N | --subject S | --token-stdin [--reason R]\n"
    "\n"
    "Queue tokens for revocation; revokerd keeps trying until each is revoked\n"
    "(or rejected, or out of attempts). The reply comes after the request is\n"
    "committed to the database: once revokerctl says \"queued\", a crash or a\n"
    "restart does not lose it.\n"
    "\n"
    "    --id N          the token with id N, if it is active\n"
    "    --subject S     every active token of subject S\n"
    "    --token-stdin   a secret read from standard input (one trailing newline\n"
    "                    is removed; at most 8192 bytes). revokerd records it if\n"
    "                    the table does not hold it yet. There is no --token: a\n"
    "                    secret on the command line is visible to every user.\n"
    "    --reason R      why, kept with the token (flag_reason)\n"
    "\n"
    "Examples:\n"
    "    printf '%s' \"$TOKEN\" | revokerctl revoke --token-stdin --reason logout\n"
    "    revokerctl revoke --id 42\n"
    "    revokerctl revoke --subject alice --reason \"password reset\"\n";

static const char help_status[] =
    "Usage: revokerctl status ID\n"
    "\n"
    "Show token ID: its state (active, pending, revoked, failed), subject,\n"
    "fingerprint, attempts, last event and error, when it became due, when the\n"
    "next attempt is planned and when it finished. Times are local.\n";

static const char help_retry[] =
    "Usage: revokerctl retry ID | --failed\n"
    "\n"
    "Put failed tokens back in the queue with their attempts reset (audit\n"
    "event `requeued`): token ID, or with --failed every failed token. A token\n"
    "whose secret is no longer stored cannot be retried.\n";

static const char help_stats[] =
    "Usage: revokerctl stats\n"
    "\n"
    "Show the number of tokens per state (a scan of the table), requests\n"
    "queued and in flight, outcomes since the daemon started, the endpoint's\n"
    "health (up, down, paused, misconfigured) and the last errors, and uptime.\n";

static const char help_ping[] =
    "Usage: revokerctl ping\n"
    "\n"
    "Check that revokerd answers on its control socket; prints its version and\n"
    "uptime. Exit status 0 if it does, 69 if it cannot be reached.\n";

static const char help_audit[] =
    "Usage: revokerctl audit [--since TIME] [--token ID] [--event E] [--limit N]\n"
    "       revokerctl audit --verify\n"
    "\n"
    "Show the audit log from the database (read-only; the daemon need not run).\n"
    "\n"
    "    --since TIME  rows from TIME on: \"2026-11-27\", \"2026-11-27 10:00\", an\n"
    "                  ISO 8601 time (\"2026-11-27T10:00:00Z\"), or a span back\n"
    "                  from now (\"1h\", \"30min\")\n"
    "    --token ID    rows of token ID only\n"
    "    --event E     rows of one event: due revoked already_invalid retry\n"
    "                  rejected gave_up requeued\n"
    "    --limit N     the newest N matching rows (still printed oldest first)\n"
    "    --verify      walk the hash chain instead; exit 1 naming the first row\n"
    "                  that was altered, inserted or deleted\n"
    "\n"
    "Columns: local time, sequence number, token id, fingerprint, event, attempt,\n"
    "HTTP status, duration in ms, detail.\n";

/* ---- small helpers ---- */

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err(const char *fmt, ...)
{
    va_list ap;
    fputs("revokerctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("revokerctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nTry 'revokerctl help %s'.\n", cmd);
    else
        fputs("\nTry 'revokerctl --help'.\n", stderr);
    return EXIT_USAGE;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int parse_id(const char *s, int64_t *ret)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* "2026-11-27 10:00:03 CET"; "-" for none. */
static void local_time(int64_t ms, char *buf, size_t len)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    if (ms <= 0 || !localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
        snprintf(buf, len, "-");
}

/* Parses a date/time: "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS[.fff]]" and the
 * same with 'T', optionally followed by Z or an offset (+01:00, -0500);
 * local time without either. */
static int parse_time(const char *s, int64_t *ret_ms)
{
    static const char *const formats[] = {
        "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
    };
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *p = strptime(s, formats[i], &tm);
        if (!p)
            continue;
        int64_t frac = 0;
        if (*p == '.' && i < 2) {
            int64_t scale = 100;
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac += scale > 0 ? (*p - '0') * scale : 0;
        }
        time_t t;
        if (*p == '\0') {
            tm.tm_isdst = -1;
            t = mktime(&tm);
        } else if (*p == 'Z' && p[1] == '\0') {
            t = timegm(&tm);
        } else if (*p == '+' || *p == '-') {
            int hh, mm, n = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || p[1 + n] != '\0') {
                n = 0;
                if (sscanf(p + 1, "%2d%2d%n", &hh, &mm, &n) != 2 || p[1 + n] != '\0')
                    continue;
            }
            t = timegm(&tm);
            int off = (hh * 60 + mm) * 60;
            t += *p == '+' ? -off : off;
        } else {
            continue;
        }
        if (t == (time_t)-1)
            continue;
        *ret_ms = (int64_t)t * 1000 + frac;
        return 0;
    }
    return -EINVAL;
}

static int parse_since(const char *s, int64_t *ret_ms)
{
    uint64_t span;
    if (parse_time(s, ret_ms) == 0)
        return 0;
    if (config_parse_duration(s, &span) == 0) {
        int64_t now = db_now_ms();
        *ret_ms = (int64_t)span > now ? 1 : now - (int64_t)span;
        return 0;
    }
    return -EINVAL;
}

/* ---- configuration ---- */

/* The daemon's config file gives the defaults for --socket and --database.
 * Without --config a missing or unreadable default file means built-in
 * defaults (a user outside the daemon's group cannot read it). */
static int load_config(struct ctx *x)
{
    char msg[512];
    const char *path = x->config_path ? x->config_path : REVOKERD_DEFAULT_CONFIG;

    if (x->cfg_loaded)
        return 0;
    config_defaults(&x->cfg);
    x->cfg_loaded = true;
    if (!x->config_path && access(path, R_OK) != 0)
        return 0;
    int r = config_load(&x->cfg, path, msg, sizeof(msg));
    if (r == -ENOENT && !x->config_path)
        return 0;
    if (r < 0) {
        err("%s", msg[0] ? msg : strerror(-r));
        return EXIT_USAGE;
    }
    return 0;
}

static int need_socket(struct ctx *x)
{
    if (x->socket)
        return 0;
    int r = load_config(x);
    if (r)
        return r;
    x->socket = x->cfg.socket ? x->cfg.socket : "/run/revokerd.sock";
    return 0;
}

/* ---- the socket ---- */

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

static int connect_socket(const char *path, uint64_t deadline, int *ret_fd)
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

/* One reply line, without its '\n'. -ETIMEDOUT, -ECONNRESET (closed
 * before a whole line), -EMSGSIZE, -ENOMEM, -errno. */
static int read_line(int fd, uint64_t deadline, char **ret_line)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
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
                free(buf);
                return -EMSGSIZE;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return -ENOMEM;
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
            free(buf);
            return -ECONNRESET;
        }
        if (errno != EAGAIN && errno != EINTR) {
            int r = -errno;
            free(buf);
            return r;
        }
        int r = wait_fd(fd, POLLIN, deadline);
        if (r < 0) {
            free(buf);
            return r;
        }
    }
}

/* Sends req (consumed) and reads the reply. Returns 0 with *ret_line (the
 * raw line) and *ret_reply, or an exit status after printing why. */
static int call(struct ctx *x, json_t *req, char **ret_line, json_t **ret_reply)
{
    int fd = -1, r;
    char *line = NULL;
    uint64_t deadline = mono_ms() + x->timeout_ms;

    r = need_socket(x);
    if (r) {
        json_decref(req);
        return r;
    }
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req); /* a token in it is wiped on free (secret_wipe_json) */
    if (!text) {
        err("out of memory");
        return EXIT_ANSWERED_ERROR;
    }
    size_t tlen = strlen(text);
    char *msg = malloc(tlen + 2);
    if (!msg) {
        secret_free(text);
        err("out of memory");
        return EXIT_ANSWERED_ERROR;
    }
    memcpy(msg, text, tlen);
    msg[tlen] = '\n';
    msg[tlen + 1] = '\0';
    secret_free(text);

    r = connect_socket(x->socket, deadline, &fd);
    if (r < 0) {
        secret_free(msg);
        if (r == -ETIMEDOUT)
            err("cannot reach revokerd at %s: it did not accept the connection within %" PRIu64
                " ms", x->socket, x->timeout_ms);
        else
            err("cannot reach revokerd at %s: %s%s", x->socket, strerror(-r),
                r == -ENOENT || r == -ECONNREFUSED ? " (is revokerd running? --socket PATH)" : "");
        return EXIT_UNREACHABLE;
    }
    r = send_all(fd, msg, tlen + 1, deadline);
    secret_free(msg);
    /* A refusal (permission denied, too many clients) may arrive and the
     * connection close before our request is written: read it anyway. */
    if (r == 0 || r == -EPIPE || r == -ECONNRESET)
        r = read_line(fd, deadline, &line);
    close(fd);
    if (r == -ETIMEDOUT) {
        err("no reply from revokerd at %s within %" PRIu64 " ms", x->socket, x->timeout_ms);
        return EXIT_UNREACHABLE;
    }
    if (r < 0) {
        err("lost the connection to revokerd at %s: %s", x->socket, strerror(-r));
        return EXIT_UNREACHABLE;
    }
    json_error_t je;
    json_t *reply = json_loads(line, 0, &je);
    if (!json_is_object(reply) || !json_is_boolean(json_object_get(reply, "ok"))) {
        err("revokerd at %s sent a reply that is not a protocol reply", x->socket);
        json_decref(reply);
        free(line);
        return EXIT_ANSWERED_ERROR;
    }
    *ret_line = line;
    *ret_reply = reply;
    return 0;
}

static const char *jstr(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

static long long jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* For --json, the reply as it came; otherwise the daemon's error on stderr.
 * Returns true when the caller should print the human form. */
static bool reply_common(struct ctx *x, const char *line, json_t *reply, int *ret_status)
{
    bool ok = json_is_true(json_object_get(reply, "ok"));
    *ret_status = ok ? 0 : EXIT_ANSWERED_ERROR;
    if (x->json) {
        printf("%s\n", line);
        return false;
    }
    if (!ok) {
        err("revokerd: %s", jstr(reply, "error", "(no message)"));
        return false;
    }
    return true;
}

static void iso_to_local(json_t *o, const char *key, char *buf, size_t len)
{
    int64_t ms;
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || parse_time(s, &ms) < 0)
        snprintf(buf, len, "-");
    else
        local_time(ms, buf, len);
}

/* ---- options shared by every command ---- */

enum { OPT_VERSION = 256, OPT_TOKEN_STDIN, OPT_TOKEN, OPT_FAILED, OPT_VERIFY, OPT_SINCE,
       OPT_EVENT, OPT_LIMIT, OPT_REASON, OPT_SUBJECT, OPT_ID };

#define GLOBAL_OPTIONS                                                                     \
    {"config", required_argument, NULL, 'c'}, {"socket", required_argument, NULL, 's'},    \
    {"database", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},          \
    {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}
#define GLOBAL_SHORT "c:s:d:jt:h"

/* 1 when opt was a global option (handled), 0 when not, or an exit status
 * (2) as a negative number. */
static int global_option(struct ctx *x, int opt, const char *arg, const char *cmd)
{
    uint64_t ms;
    switch (opt) {
    case 'c': x->config_path = arg; return 1;
    case 's': x->socket = arg; return 1;
    case 'd': x->database = arg; return 1;
    case 'j': x->json = true; return 1;
    case 't':
        if (config_parse_duration(arg, &ms) < 0 || ms == 0)
            return -usage_error(cmd, "invalid --timeout '%s' (a span such as 5s or 500ms)", arg);
        x->timeout_ms = ms;
        return 1;
    default: return 0;
    }
}

static int bad_option(const char *cmd, int opt, char **argv)
{
    const char *name = argv[optind - 1];
    if (opt == ':')
        return usage_error(cmd, "option '%s' needs an argument", name);
    return usage_error(cmd, "unknown option '%s'", name);
}

static int help_for(const char *cmd);

/* ---- commands ---- */

/* Reads the token from standard input: one line from a terminal (not
 * echoed), everything up to EOF otherwise; one trailing newline removed. */
static int read_token(char **ret, size_t *ret_len)
{
    size_t cap = SECRET_MAX_LEN + 4, len = 0;
    char *buf = malloc(cap);
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;

    if (!buf) {
        err("out of memory");
        return EXIT_ANSWERED_ERROR;
    }
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        fputs("token: ", stderr);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            if (tty)
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
            secret_wipe(buf, cap);
            free(buf);
            err("cannot read the token from standard input: %s", strerror(e));
            return EXIT_USAGE;
        }
        len += (size_t)n;
        if (n == 0 || len == cap || (tty && memchr(buf, '\n', len)))
            break;
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    const char *problem = NULL;
    if (len == 0)
        problem = "no token on standard input";
    else if (len > SECRET_MAX_LEN)
        problem = "the token on standard input is longer than 8192 bytes";
    else if (memchr(buf, '\n', len))
        problem = "standard input holds more than one line; give one token";
    else if (memchr(buf, '\0', len))
        problem = "the token on standard input contains a NUL byte";
    if (problem) {
        secret_wipe(buf, cap);
        free(buf);
        return usage_error("revoke", "%s", problem);
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

static int cmd_revoke(struct ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {
        GLOBAL_OPTIONS,
        {"id", required_argument, NULL, OPT_ID},
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"token-stdin", no_argument, NULL, OPT_TOKEN_STDIN},
        {"token", optional_argument, NULL, OPT_TOKEN},
        {"reason", required_argument, NULL, OPT_REASON},
        {NULL, 0, NULL, 0},
    };
    const char *subject = NULL, *reason = NULL, *id_arg = NULL;
    bool from_stdin = false;
    int64_t id = 0;
    int opt, r;

    while ((opt = getopt_long(argc, argv, ":" GLOBAL_SHORT, opts, NULL)) != -1) {
        if ((r = global_option(x, opt, optarg, "revoke")) != 0) {
            if (r < 0)
                return -r;
            continue;
        }
        switch (opt) {
        case OPT_ID: id_arg = optarg; break;
        case OPT_SUBJECT: subject = optarg; break;
        case OPT_TOKEN_STDIN: from_stdin = true; break;
        case OPT_REASON: reason = optarg; break;
        case OPT_TOKEN:
            return usage_error("revoke", "a token is never taken from the command line (every "
                                         "user can read it with ps); use --token-stdin");
        case 'h': return help_for("revoke");
        default: return bad_option("revoke", opt, argv);
        }
    }
    if (optind < argc) /* not echoed: it may be a token typed by mistake */
        return usage_error("revoke", "unexpected argument; a token is read with --token-stdin, "
                                     "never from the command line");
    if ((id_arg != NULL) + (subject != NULL) + from_stdin != 1)
        return usage_error("revoke", "give exactly one of --id N, --subject S or --token-stdin");
    if (id_arg && parse_id(id_arg, &id) < 0)
        return usage_error("revoke", "invalid --id '%s' (a positive integer)", id_arg);
    if (subject && !*subject)
        return usage_error("revoke", "--subject must not be empty");

    json_t *req = json_pack("{s:s}", "op", "revoke");
    if (!req)
        return EXIT_ANSWERED_ERROR;
    if (reason && *reason && json_object_set_new(req, "reason", json_string(reason)) < 0) {
        json_decref(req);
        return usage_error("revoke", "--reason must be UTF-8 text");
    }
    if (id_arg)
        json_object_set_new(req, "id", json_integer(id));
    if (subject && json_object_set_new(req, "subject", json_string(subject)) < 0) {
        json_decref(req);
        return usage_error("revoke", "--subject must be UTF-8 text");
    }
    if (from_stdin) {
        char *token = NULL;
        size_t len = 0;
        if ((r = read_token(&token, &len)) != 0) {
            json_decref(req);
            return r;
        }
        json_t *v = json_stringn(token, len);
        secret_wipe(token, len);
        free(token);
        if (!v || json_object_set_new(req, "token", v) < 0) {
            json_decref(req);
            return usage_error("revoke", "the token must be UTF-8 text");
        }
    }

    char *line;
    json_t *reply;
    if ((r = call(x, req, &line, &reply)) != 0)
        return r;
    if (reply_common(x, line, reply, &r)) {
        if (from_stdin) {
            const char *state = jstr(reply, "state", "?");
            long long tid = jint(reply, "id");
            if (strcmp(state, "pending") == 0)
                printf("token %lld queued for revocation (pending)\n", tid);
            else if (strcmp(state, "failed") == 0)
                printf("token %lld failed earlier; 'revokerctl retry %lld' queues it again\n", tid,
                       tid);
            else
                printf("token %lld is already %s\n", tid, state);
        } else if (id_arg) {
            if (jint(reply, "count") > 0)
                printf("token %" PRId64 " queued for revocation (pending)\n", id);
            else
                printf("token %" PRId64 " was not active (state: %s); nothing queued\n", id,
                       jstr(reply, "state", "?"));
        } else {
            json_t *ids = json_object_get(reply, "ids");
            size_t i;
            json_t *v;
            if (jint(reply, "count") == 0) {
                printf("no active token of subject '%s'; nothing queued\n", subject);
            } else {
                printf("%lld token(s) of subject '%s' queued for revocation:", jint(reply, "count"),
                       subject);
                json_array_foreach(ids, i, v) printf(" %lld", (long long)json_integer_value(v));
                putchar('\n');
            }
        }
    }
    json_decref(reply);
    free(line);
    return r;
}

/* Commands whose arguments are "ID" or nothing share this parser. */
static int parse_simple(struct ctx *x, const char *cmd, int argc, char **argv, bool want_id,
                        int64_t *ret_id)
{
    static const struct option opts[] = {GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, r;
    while ((opt = getopt_long(argc, argv, ":" GLOBAL_SHORT, opts, NULL)) != -1) {
        if ((r = global_option(x, opt, optarg, cmd)) != 0) {
            if (r < 0)
                return -r;
            continue;
        }
        if (opt == 'h')
            return help_for(cmd) == 0 ? -1 : EXIT_USAGE;
        return bad_option(cmd, opt, argv);
    }
    if (want_id) {
        if (optind >= argc)
            return usage_error(cmd, "%s needs a token ID", cmd);
        if (parse_id(argv[optind], ret_id) < 0)
            return usage_error(cmd, "invalid token ID '%s' (a positive integer)", argv[optind]);
        optind++;
    }
    if (optind < argc)
        return usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return 0;
}

static int cmd_status(struct ctx *x, int argc, char **argv)
{
    int64_t id = 0;
    int r = parse_simple(x, "status", argc, argv, true, &id);
    if (r)
        return r < 0 ? 0 : r;

    char *line;
    json_t *reply;
    if ((r = call(x, json_pack("{s:s,s:I}", "op", "status", "id", (json_int_t)id), &line,
                  &reply)) != 0)
        return r;
    if (reply_common(x, line, reply, &r)) {
        char next[64], due[64], fin[64], exp[64];
        iso_to_local(reply, "next_attempt_at", next, sizeof(next));
        iso_to_local(reply, "due_at", due, sizeof(due));
        iso_to_local(reply, "finished_at", fin, sizeof(fin));
        iso_to_local(reply, "expires_at", exp, sizeof(exp));
        printf("token %lld\n", jint(reply, "id"));
        printf("  %-13s %s\n", "state", jstr(reply, "state", "?"));
        printf("  %-13s %s\n", "subject", jstr(reply, "subject", "-"));
        printf("  %-13s %s\n", "fingerprint", jstr(reply, "fingerprint", "-"));
        printf("  %-13s %lld\n", "attempts", jint(reply, "attempts"));
        printf("  %-13s %s\n", "last event", jstr(reply, "last_event", "-"));
        printf("  %-13s %s\n", "last error", jstr(reply, "last_error", "-"));
        printf("  %-13s %s\n", "due since", due);
        printf("  %-13s %s\n", "next attempt", next);
        printf("  %-13s %s\n", "finished", fin);
        printf("  %-13s %s\n", "expires", exp);
    }
    json_decref(reply);
    free(line);
    return r;
}

static int cmd_retry(struct ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {
        GLOBAL_OPTIONS, {"failed", no_argument, NULL, OPT_FAILED}, {NULL, 0, NULL, 0}};
    bool failed = false;
    int64_t id = 0;
    int opt, r;

    while ((opt = getopt_long(argc, argv, ":" GLOBAL_SHORT, opts, NULL)) != -1) {
        if ((r = global_option(x, opt, optarg, "retry")) != 0) {
            if (r < 0)
                return -r;
            continue;
        }
        if (opt == OPT_FAILED)
            failed = true;
        else if (opt == 'h')
            return help_for("retry");
        else
            return bad_option("retry", opt, argv);
    }
    if (failed == (optind < argc))
        return usage_error("retry", "give a token ID or --failed (not both)");
    if (!failed) {
        if (parse_id(argv[optind], &id) < 0)
            return usage_error("retry", "invalid token ID '%s' (a positive integer)", argv[optind]);
        if (optind + 1 < argc)
            return usage_error("retry", "unexpected argument '%s'", argv[optind + 1]);
    }

    char *line;
    json_t *reply;
    json_t *req = failed ? json_pack("{s:s,s:b}", "op", "retry", "failed", 1)
                         : json_pack("{s:s,s:I}", "op", "retry", "id", (json_int_t)id);
    if ((r = call(x, req, &line, &reply)) != 0)
        return r;
    if (reply_common(x, line, reply, &r)) {
        long long n = jint(reply, "count");
        if (!failed)
            printf("token %" PRId64 " queued again (pending)\n", id);
        else if (n == 0)
            printf("no failed token; nothing queued\n");
        else
            printf("%lld failed token(s) queued again\n", n);
    }
    json_decref(reply);
    free(line);
    return r;
}

static int cmd_stats(struct ctx *x, int argc, char **argv)
{
    int r = parse_simple(x, "stats", argc, argv, false, NULL);
    if (r)
        return r < 0 ? 0 : r;

    char *line;
    json_t *reply;
    if ((r = call(x, json_pack("{s:s}", "op", "stats"), &line, &reply)) != 0)
        return r;
    if (reply_common(x, line, reply, &r)) {
        json_t *st = json_object_get(reply, "states");
        json_t *tot = json_object_get(reply, "totals");
        json_t *ep = json_object_get(reply, "endpoint");
        char up[64];
        config_format_duration((uint64_t)jint(reply, "uptime_s") * 1000, up, sizeof(up));
        printf("%-12s %lld active, %lld pending, %lld revoked, %lld failed\n", "tokens",
               jint(st, "active"), jint(st, "pending"), jint(st, "revoked"), jint(st, "failed"));
        printf("%-12s %lld queued, %lld in flight, %lld outcomes not yet committed\n", "engine",
               jint(reply, "queued"), jint(reply, "in_flight"), jint(reply, "uncommitted"));
        printf("%-12s %lld requests: %lld revoked, %lld already invalid, %lld rejected, "
               "%lld gave up, %lld retried; %lld new tokens hashed\n",
               "since start", jint(tot, "sent"), jint(tot, "revoked"), jint(tot, "already_invalid"),
               jint(tot, "rejected"), jint(tot, "gave_up"), jint(tot, "retried"), jint(tot, "hashed"));
        const char *last = jstr(ep, "last_error", NULL);
        if (last)
            printf("%-12s %s (last error: %s)\n", "endpoint", jstr(ep, "health", "?"), last);
        else
            printf("%-12s %s\n", "endpoint", jstr(ep, "health", "?"));
        const char *dberr = jstr(reply, "db_error", NULL);
        printf("%-12s %s (%lld failed commits since start)\n", "database", dberr ? dberr : "ok",
               jint(reply, "db_errors"));
        printf("%-12s %s\n", "uptime", up);
    }
    json_decref(reply);
    free(line);
    return r;
}

static int cmd_ping(struct ctx *x, int argc, char **argv)
{
    int r = parse_simple(x, "ping", argc, argv, false, NULL);
    if (r)
        return r < 0 ? 0 : r;

    char *line;
    json_t *reply;
    if ((r = call(x, json_pack("{s:s}", "op", "ping"), &line, &reply)) != 0)
        return r;
    if (reply_common(x, line, reply, &r)) {
        char up[64];
        config_format_duration((uint64_t)jint(reply, "uptime_s") * 1000, up, sizeof(up));
        printf("revokerd %s is up at %s (uptime %s)\n", jstr(reply, "version", "?"), x->socket, up);
    }
    json_decref(reply);
    free(line);
    return r;
}

static const char *const audit_events[] = {
    "due", "revoked", "already_invalid", "retry", "rejected", "gave_up", "requeued", NULL,
};

struct audit_out {
    bool json;
    unsigned rows;
};

static int print_audit_row(void *ud, const struct audit_row *row)
{
    struct audit_out *o = ud;
    char when[64], at[80];

    o->rows++;
    if (o->json) {
        struct tm tm;
        time_t t = (time_t)(row->at_ms / 1000);
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(at, sizeof(at), "%s.%03dZ", when, (int)(row->at_ms % 1000));
        json_t *j = json_pack("{s:I,s:s,s:I,s:o,s:o,s:s,s:o,s:o,s:o,s:o,s:s}", "seq",
                              (json_int_t)row->seq, "at", at, "at_ms", (json_int_t)row->at_ms,
                              "token_id", row->token_id ? json_integer(row->token_id) : json_null(),
                              "fingerprint", row->fingerprint ? json_string(row->fingerprint) : json_null(),
                              "event", row->event ? row->event : "",
                              "attempt", row->attempt ? json_integer(row->attempt) : json_null(),
                              "http_status", row->http_status ? json_integer(row->http_status) : json_null(),
                              "detail", row->detail ? json_string(row->detail) : json_null(),
                              "duration_ms", row->duration_ms >= 0 ? json_integer(row->duration_ms) : json_null(),
                              "hash", row->hash ? row->hash : "");
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!s)
            return -ENOMEM;
        puts(s);
        free(s);
        return 0;
    }
    struct tm tm;
    time_t t = (time_t)(row->at_ms / 1000);
    if (!localtime_r(&t, &tm) || strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(when, sizeof(when), "?");
    char tok[24] = "-", att[16] = "-", http[16] = "-", dur[24] = "-";
    if (row->token_id)
        snprintf(tok, sizeof(tok), "%" PRId64, row->token_id);
    if (row->attempt)
        snprintf(att, sizeof(att), "%d", row->attempt);
    if (row->http_status)
        snprintf(http, sizeof(http), "%ld", row->http_status);
    if (row->duration_ms >= 0)
        snprintf(dur, sizeof(dur), "%" PRId64, row->duration_ms);
    printf("%-19s %7" PRId64 " %7s %-16s %-15s %3s %4s %6s %s\n", when, row->seq, tok,
           row->fingerprint ? row->fingerprint : "-", row->event ? row->event : "?", att, http,
           dur, row->detail ? row->detail : "");
    return 0;
}

static int cmd_audit(struct ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {
        GLOBAL_OPTIONS,
        {"since", required_argument, NULL, OPT_SINCE},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"event", required_argument, NULL, OPT_EVENT},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"verify", no_argument, NULL, OPT_VERIFY},
        {NULL, 0, NULL, 0},
    };
    struct audit_filter f = {0};
    bool verify = false;
    int opt, r;
    int64_t v;

    while ((opt = getopt_long(argc, argv, ":" GLOBAL_SHORT, opts, NULL)) != -1) {
        if ((r = global_option(x, opt, optarg, "audit")) != 0) {
            if (r < 0)
                return -r;
            continue;
        }
        switch (opt) {
        case OPT_SINCE:
            if (parse_since(optarg, &f.since_ms) < 0)
                return usage_error("audit", "invalid --since '%s' (\"2026-11-27\", "
                                            "\"2026-11-27 10:00\", an ISO time, or \"1h\")", optarg);
            break;
        case OPT_TOKEN:
            if (parse_id(optarg, &f.token_id) < 0)
                return usage_error("audit", "invalid --token '%s' (a token ID)", optarg);
            break;
        case OPT_EVENT: {
            bool known = false;
            for (size_t i = 0; audit_events[i]; i++)
                known = known || strcmp(optarg, audit_events[i]) == 0;
            if (!known)
                return usage_error("audit", "unknown --event '%s' (due revoked already_invalid "
                                            "retry rejected gave_up requeued)", optarg);
            f.event = optarg;
            break;
        }
        case OPT_LIMIT:
            if (parse_id(optarg, &v) < 0 || v > UINT32_MAX)
                return usage_error("audit", "invalid --limit '%s' (a positive integer)", optarg);
            f.limit = (unsigned)v;
            break;
        case OPT_VERIFY: verify = true; break;
        case 'h': return help_for("audit");
        default: return bad_option("audit", opt, argv);
        }
    }
    if (optind < argc)
        return usage_error("audit", "unexpected argument '%s'", argv[optind]);
    if (verify && (f.since_ms || f.token_id || f.event || f.limit))
        return usage_error("audit", "--verify checks the whole chain; it takes no filter");
    if (!x->database) {
        if ((r = load_config(x)) != 0)
            return r;
        x->database = x->cfg.database;
    }
    if (!x->database)
        return usage_error("audit", "no database configured; use --database PATH");

    struct db *db;
    r = db_open(x->database, DB_READONLY, &db);
    if (r < 0) {
        const char *why = db_open_error();
        err("cannot open the database %s: %s%s%s%s", x->database, strerror(-r),
            why && *why ? " (" : "", why && *why ? why : "", why && *why ? ")" : "");
        return EXIT_ANSWERED_ERROR;
    }

    if (verify) {
        int64_t rows = 0, bad = 0;
        char why[256] = "";
        r = audit_verify(db, &rows, &bad, why, sizeof(why));
        if (r == 0) {
            if (x->json)
                printf("{\"ok\":true,\"rows\":%" PRId64 "}\n", rows);
            else
                printf("audit log intact: %" PRId64 " rows, hash chain verified\n", rows);
        } else if (r == -EBADMSG) {
            if (x->json) {
                json_t *j = json_pack("{s:b,s:I,s:s}", "ok", 0, "bad_seq", (json_int_t)bad,
                                      "error", why);
                char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
                printf("%s\n", s ? s : "{\"ok\":false}");
                free(s);
                json_decref(j);
            } else {
                err("audit log damaged at seq %" PRId64 ": %s", bad, why);
            }
        } else {
            err("cannot verify the audit log in %s: %s (%s)", x->database, strerror(-r),
                db_errmsg(db));
        }
        db_close(db);
        return r == 0 ? 0 : EXIT_ANSWERED_ERROR;
    }

    struct audit_out out = {.json = x->json};
    if (!x->json)
        printf("%-19s %7s %7s %-16s %-15s %3s %4s %6s %s\n", "TIME", "SEQ", "TOKEN",
               "FINGERPRINT", "EVENT", "ATT", "HTTP", "MS", "DETAIL");
    r = audit_query(db, &f, print_audit_row, &out);
    if (r < 0)
        err("cannot read the audit log in %s: %s (%s)", x->database, strerror(-r), db_errmsg(db));
    db_close(db);
    return r < 0 ? EXIT_ANSWERED_ERROR : 0;
}

static int cmd_help(struct ctx *x, int argc, char **argv);

static const struct command commands[] = {
    {"revoke", cmd_revoke, help_revoke}, {"status", cmd_status, help_status},
    {"retry", cmd_retry, help_retry},    {"stats", cmd_stats, help_stats},
    {"ping", cmd_ping, help_ping},       {"audit", cmd_audit, help_audit},
    {"help", cmd_help, help_main},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int help_for(const char *cmd)
{
    const struct command *c = find_command(cmd);
    fputs(c ? c->help : help_main, stdout);
    return 0;
}

static int cmd_help(struct ctx *x, int argc, char **argv)
{
    (void)x;
    if (argc < 2) {
        fputs(help_main, stdout);
        return 0;
    }
    if (!find_command(argv[1]))
        return usage_error(NULL, "no command '%s'", argv[1]);
    return help_for(argv[1]);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        GLOBAL_OPTIONS, {"version", no_argument, NULL, OPT_VERSION}, {NULL, 0, NULL, 0}};
    struct ctx x = {.timeout_ms = DEFAULT_TIMEOUT_MS};
    int opt, r;

    secret_wipe_json();
    opterr = 0;
    /* '+': stop at the command; its own options are parsed by it. */
    while ((opt = getopt_long(argc, argv, "+:" GLOBAL_SHORT, opts, NULL)) != -1) {
        if ((r = global_option(&x, opt, optarg, NULL)) != 0) {
            if (r < 0)
                return -r;
            continue;
        }
        if (opt == 'h') {
            fputs(help_main, stdout);
            return 0;
        }
        if (opt == OPT_VERSION) {
            printf("revokerctl %s\n", REVOKERD_VERSION);
            return 0;
        }
        return bad_option(NULL, opt, argv);
    }
    if (optind >= argc) {
        fputs(usage_main, stderr);
        fputs("Try 'revokerctl --help'.\n", stderr);
        return EXIT_USAGE;
    }
    const struct command *c = find_command(argv[optind]);
    if (!c)
        return usage_error(NULL, "unknown command '%s' (revoke, status, retry, stats, ping, "
                                 "audit, help)", argv[optind]);
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0; /* glibc: start over on the command's arguments */
    r = c->run(&x, sub_argc, sub_argv);
    if (fflush(stdout) != 0 && r == 0) {
        err("cannot write the output: %s", strerror(errno));
        r = EXIT_ANSWERED_ERROR;
    }
    if (x.cfg_loaded)
        config_free(&x.cfg);
    return r;
}

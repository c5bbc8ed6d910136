/* config: defaults, the INI file (through inih), and the checks.
 *
 * inih does the INI syntax; our reader feeds it one physical line at a time
 * so that we always know the line number, and it refuses what inih would
 * silently mangle: lines longer than inih's buffer (inih splits them),
 * indented lines (inih glues them to the previous key as a continuation),
 * NUL bytes and unknown sections (inih does not report section headers). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/un.h>

#include "log.h"

#define MS_PER_S UINT64_C(1000)
#define MS_PER_MIN (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_MIN)
#define MS_PER_D (24 * MS_PER_H)
#define USEC_PER_S UINT64_C(1000000)

#define WHY_MAX 512 /* "what is wrong (what is expected)" */
#define QUOTE_MAX 64 /* a value echoed in a message is cut here */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define GROUP_NAME_MAX 64

enum key_type {
    KEY_PATH,      /* non-empty string */
    KEY_SOCKET,    /* non-empty string that fits sun_path */
    KEY_GROUP,     /* group name or gid; empty: unset */
    KEY_CA_FILE,   /* any string; empty: unset */
    KEY_HEADER,    /* HTTP header name; empty: unset */
    KEY_URL,       /* config_check_url */
    KEY_UINT,      /* unsigned, min..max */
    KEY_BOOL,
    KEY_DURATION,  /* uint64_t ms, min..max */
    KEY_LOG_LEVEL, /* int, log_level_parse */
};

struct key {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    uint64_t min, max;
};

#define KEY(sec, nm, ty, field, lo, hi) {sec, nm, ty, offsetof(struct config, field), lo, hi}

/* The order here is the order in "known keys" lists. */
static const struct key keys[] = {
    KEY("daemon", "database", KEY_PATH, database, 0, 0),
    KEY("daemon", "socket", KEY_SOCKET, socket, 0, 0),
    KEY("daemon", "control_group", KEY_GROUP, control_group, 0, 0),
    KEY("daemon", "max_clients", KEY_UINT, max_clients, 1, 65536),
    KEY("daemon", "client_idle", KEY_DURATION, client_idle_ms, 1, MS_PER_D),
    KEY("daemon", "keep_secrets", KEY_BOOL, keep_secrets, 0, 0),
    KEY("daemon", "log_level", KEY_LOG_LEVEL, log_level, 0, 0),
    KEY("logout", "url", KEY_URL, url, 0, 0),
    KEY("logout", "timeout", KEY_DURATION, timeout_ms, 1, MS_PER_H),
    KEY("logout", "concurrency", KEY_UINT, concurrency, 1, 1024),
    KEY("logout", "rate_limit", KEY_UINT, rate_limit, 0, 1000000),
    KEY("logout", "ca_file", KEY_CA_FILE, ca_file, 0, 0),
    KEY("logout", "down_after", KEY_UINT, down_after, 1, 1000),
    KEY("logout", "credential_header", KEY_HEADER, credential_header, 0, 0),
    KEY("retry", "base", KEY_DURATION, retry_base_ms, 1, MS_PER_D),
    KEY("retry", "max_delay", KEY_DURATION, retry_max_delay_ms, 1, 30 * MS_PER_D),
    KEY("retry", "max_attempts", KEY_UINT, max_attempts, 1, 1000),
    KEY("retry", "retry_after_max", KEY_DURATION, retry_after_max_ms, 0, 30 * MS_PER_D),
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const sections[] = {"daemon", "logout", "retry"};
#define SECTIONS_EXPECTED "expected [daemon], [logout] or [retry]"

static const size_t string_fields[] = {
    offsetof(struct config, database),      offsetof(struct config, socket),
    offsetof(struct config, control_group), offsetof(struct config, url),
    offsetof(struct config, ca_file),       offsetof(struct config, credential_header),
};
#define N_STRINGS (sizeof(string_fields) / sizeof(string_fields[0]))

static const struct unit {
    const char *name;
    uint64_t usec;
} units[] = {
    {"us", 1},
    {"usec", 1},
    {"ms", 1000},
    {"msec", 1000},
    {"s", USEC_PER_S},
    {"sec", USEC_PER_S},
    {"second", USEC_PER_S},
    {"seconds", USEC_PER_S},
    {"m", 60 * USEC_PER_S},
    {"min", 60 * USEC_PER_S},
    {"minute", 60 * USEC_PER_S},
    {"minutes", 60 * USEC_PER_S},
    {"h", 3600 * USEC_PER_S},
    {"hr", 3600 * USEC_PER_S},
    {"hour", 3600 * USEC_PER_S},
    {"hours", 3600 * USEC_PER_S},
    {"d", 86400 * USEC_PER_S},
    {"day", 86400 * USEC_PER_S},
    {"days", 86400 * USEC_PER_S},
    {"w", 604800 * USEC_PER_S},
    {"week", 604800 * USEC_PER_S},
    {"weeks", 604800 * USEC_PER_S},
};

/* The state of one config_load(). */
struct parse {
    FILE *f;
    const char *path;
    struct config *c;   /* the copy being filled */
    unsigned line;      /* of the line last handed to inih */
    unsigned seen[N_KEYS]; /* line where each key was set, 0: not yet */
    char *buf;          /* getline's */
    size_t cap;
    int error;          /* first error, negative errno; 0: none */
    unsigned error_line;
    char *err;
    size_t errlen;
};

static char **str_field(struct config *c, size_t offset)
{
    return (char **)(void *)((char *)c + offset);
}

static void *field(const struct config *c, const struct key *k)
{
    return (char *)c + k->offset;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Text from the file as it may appear in a message: cut, control bytes as '?'. */
static const char *clean(const char *v, char *buf, size_t len)
{
    size_t i = 0, o = 0;

    for (; v[i] && i < QUOTE_MAX && o + 4 < len; i++)
        buf[o++] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
    if (v[i] && o + 4 <= len) {
        memcpy(buf + o, "\xe2\x80\xa6", 3); /* … */
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* The same in quotes: for values. */
static const char *quote(const char *v, char *buf, size_t len)
{
    char tmp[QUOTE_MAX + 8];
    size_t n = strlen(clean(v, tmp, sizeof(tmp)));

    if (n + 3 > len)
        n = len - 3;
    buf[0] = '"';
    memcpy(buf + 1, tmp, n);
    buf[n + 1] = '"';
    buf[n + 2] = '\0';
    return buf;
}

static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Parses a decimal number: digits only (no sign, no space), no overflow. */
static int parse_u64(const char *s, uint64_t *ret)
{
    uint64_t v = 0;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -EINVAL;
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *ret = v;
    return 0;
}

static int parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* [logout] url's policy: config_check_url in revokerd (config_set_url_check),
 * NULL in revokerctl, which does not link libcurl. */
static int (*url_check)(const char *url, char *err, size_t errlen);

/* The checks of a final value, shared by config_load (which adds FILE:LINE)
 * and config_validate. why gets "what is wrong (what is expected)". */
static int check_value(const struct config *c, const struct key *k, char *why, size_t whylen)
{
    char q[QUOTE_MAX + 8], lo[64], hi[64];
    const char *s;
    uint64_t v;
    int r;

    switch (k->type) {
    case KEY_PATH:
    case KEY_SOCKET:
        s = *(char *const *)field(c, k);
        if (!s || !*s) {
            set_err(why, whylen, "not set (expected a path)");
            return -EINVAL;
        }
        if (k->type == KEY_SOCKET && strlen(s) > SOCKET_PATH_MAX) {
            set_err(why, whylen,
                    "path is %zu bytes long (expected at most %zu bytes, the limit of a UNIX socket "
                    "address)",
                    strlen(s), (size_t)SOCKET_PATH_MAX);
            return -EINVAL;
        }
        return 0;
    case KEY_GROUP:
        s = *(char *const *)field(c, k);
        if (!s)
            return 0;
        for (const char *p = s; *p; p++) {
            if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == ':' || *p == '/' || *p == ',') {
                set_err(why, whylen, "%s is not a group name (expected a group name or number; empty: none)",
                        quote(s, q, sizeof(q)));
                return -EINVAL;
            }
        }
        if (strlen(s) > GROUP_NAME_MAX) {
            set_err(why, whylen, "%s is too long (expected a group name of at most %d bytes)",
                    quote(s, q, sizeof(q)), GROUP_NAME_MAX);
            return -EINVAL;
        }
        return 0;
    case KEY_CA_FILE:
        return 0;
    case KEY_HEADER:
        s = *(char *const *)field(c, k);
        if (!s)
            return 0;
        for (const char *p = s; *p; p++) {
            if (!is_tchar((unsigned char)*p)) {
                set_err(why, whylen,
                        "%s is not an HTTP header name (expected letters, digits and "
                        "!#$%%&'*+-.^_`|~ only; empty: none)",
                        quote(s, q, sizeof(q)));
                return -EINVAL;
            }
        }
        if (strcasecmp(s, "authorization") == 0) {
            set_err(why, whylen,
                    "Authorization carries the bearer token (expected another header name)");
            return -EINVAL;
        }
        return 0;
    case KEY_URL:
        s = *(char *const *)field(c, k);
        if (!s || !*s) {
            set_err(why, whylen, "not set (expected https://HOST/PATH)");
            return -EINVAL;
        }
        r = url_check ? url_check(s, why, whylen) : 0;
        return r < 0 ? r : 0;
    case KEY_UINT:
        v = *(const unsigned *)field(c, k);
        if (v < k->min || v > k->max) {
            set_err(why, whylen, "%" PRIu64 " is out of range (expected a whole number from %" PRIu64
                    " to %" PRIu64 ")", v, k->min, k->max);
            return -EINVAL;
        }
        return 0;
    case KEY_DURATION:
        v = *(const uint64_t *)field(c, k);
        if (v < k->min || v > k->max) {
            config_format_duration(v, q, sizeof(q));
            config_format_duration(k->min, lo, sizeof(lo));
            config_format_duration(k->max, hi, sizeof(hi));
            set_err(why, whylen, "%s is out of range (expected a time span from %s to %s)", q, lo, hi);
            return -EINVAL;
        }
        return 0;
    case KEY_BOOL:
        return 0;
    case KEY_LOG_LEVEL:
        r = *(const int *)field(c, k);
        if (r < LOG_CRIT || r > LOG_DEBUG) {
            set_err(why, whylen, "%d is not a log level (expected crit, err, warning, notice, info or debug)",
                    r);
            return -EINVAL;
        }
        return 0;
    }
    return 0;
}

/* Parses value into c's field for k. 0, -EINVAL (why says why), -ENOMEM. */
static int set_value(struct config *c, const struct key *k, const char *value, char *why, size_t whylen)
{
    char q[QUOTE_MAX + 8];
    char **sp;
    char *copy;
    uint64_t v;
    bool b;
    int level, r;

    switch (k->type) {
    case KEY_PATH:
    case KEY_SOCKET:
    case KEY_URL:
    case KEY_GROUP:
    case KEY_CA_FILE:
    case KEY_HEADER:
        if (!*value && (k->type == KEY_PATH || k->type == KEY_SOCKET || k->type == KEY_URL)) {
            set_err(why, whylen, "empty value (expected %s)",
                    k->type == KEY_URL ? "https://HOST/PATH" : "a path");
            return -EINVAL;
        }
        copy = NULL;
        if (*value) {
            copy = strdup(value);
            if (!copy)
                return -ENOMEM;
        }
        sp = str_field(c, k->offset);
        free(*sp);
        *sp = copy;
        return check_value(c, k, why, whylen);
    case KEY_UINT:
        r = parse_u64(value, &v);
        if (r == -EINVAL) {
            set_err(why, whylen, "%s is not a whole number (expected a whole number from %" PRIu64
                    " to %" PRIu64 ")", quote(value, q, sizeof(q)), k->min, k->max);
            return -EINVAL;
        }
        if (r < 0 || v < k->min || v > k->max) {
            set_err(why, whylen, "%s is out of range (expected a whole number from %" PRIu64
                    " to %" PRIu64 ")", quote(value, q, sizeof(q)), k->min, k->max);
            return -EINVAL;
        }
        *(unsigned *)field(c, k) = (unsigned)v;
        return 0;
    case KEY_BOOL:
        if (parse_bool(value, &b) < 0) {
            set_err(why, whylen, "%s is not a boolean (expected true, false, yes, no, on, off, 1 or 0)",
                    quote(value, q, sizeof(q)));
            return -EINVAL;
        }
        *(bool *)field(c, k) = b;
        return 0;
    case KEY_DURATION:
        if (config_parse_duration(value, &v) < 0) {
            set_err(why, whylen,
                    "%s is not a time span (expected a number with a unit such as 500ms, 10s, 2min, "
                    "1h 30min; a bare number is seconds)",
                    quote(value, q, sizeof(q)));
            return -EINVAL;
        }
        *(uint64_t *)field(c, k) = v;
        return check_value(c, k, why, whylen);
    case KEY_LOG_LEVEL:
        if (log_level_parse(value, &level) < 0) {
            set_err(why, whylen,
                    "%s is not a log level (expected crit, err, warning, notice, info or debug)",
                    quote(value, q, sizeof(q)));
            return -EINVAL;
        }
        *(int *)field(c, k) = level;
        return 0;
    }
    return -EINVAL;
}

/* Records the first error of a parse, prefixed with FILE:LINE. */
static void parse_fail(struct parse *p, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void parse_fail(struct parse *p, int error, const char *fmt, ...)
{
    char msg[WHY_MAX + 256];
    va_list ap;

    if (p->error)
        return;
    p->error = error;
    p->error_line = p->line;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    set_err(p->err, p->errlen, "%s:%u: %s", p->path, p->line, msg);
}

/* "[name]" on a line: known section, nothing but a comment after it. */
static bool check_section_line(struct parse *p, const char *s, size_t len)
{
    char q[QUOTE_MAX + 8], name[QUOTE_MAX + 1];
    const char *close = memchr(s, ']', len);
    size_t n, rest;

    if (!close) {
        parse_fail(p, -EINVAL, "syntax error: section header without closing ']' (expected [section])");
        return false;
    }
    for (rest = (size_t)(close + 1 - s); rest < len && isspace((unsigned char)s[rest]); rest++)
        ;
    if (rest < len && s[rest] != ';' && s[rest] != '#') {
        parse_fail(p, -EINVAL, "syntax error: text after the section header (expected [section], "
                               "optionally followed by a ; comment)");
        return false;
    }
    n = (size_t)(close - s - 1);
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (strlen(sections[i]) == n && memcmp(sections[i], s + 1, n) == 0)
            return true;
    if (n > QUOTE_MAX)
        n = QUOTE_MAX;
    memcpy(name, s + 1, n);
    name[n] = '\0';
    parse_fail(p, -EINVAL, "[%s]: unknown section (" SECTIONS_EXPECTED ")", clean(name, q, sizeof(q)));
    return false;
}

/* inih's reader: one physical line per call, checked and left-trimmed. */
static char *read_line(char *str, int num, void *stream)
{
    struct parse *p = stream;
    ssize_t n;
    size_t len, max;
    const char *s;

    if (p->error || num < 3)
        return NULL;
    errno = 0;
    n = getline(&p->buf, &p->cap, p->f);
    if (n < 0) {
        int e = errno ? errno : EIO;

        if (ferror(p->f) || errno == ENOMEM) {
            p->line++;
            parse_fail(p, -e, "cannot read: %s", strerror(e));
        }
        return NULL;
    }
    p->line++;
    len = (size_t)n;
    s = p->buf;
    if (memchr(s, '\0', len)) {
        parse_fail(p, -EINVAL, "line contains a NUL byte (expected text)");
        return NULL;
    }
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    if (p->line == 1 && len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
        s += 3;
        len -= 3;
    }
    /* inih needs room for "\r\n\0" (its buffer holds num bytes) */
    max = (size_t)num - 3;
    if (len > max) {
        parse_fail(p, -EINVAL, "line too long: %zu bytes (expected at most %zu)", len, max);
        return NULL;
    }
    /* Indentation would make inih read this line as a continuation of the
     * previous value; a leading-space line is just a line here. On line 1
     * BOMs go too: inih skips one wherever it starts reading, and a section
     * header behind it must not escape check_section_line. */
    for (;;) {
        if (len > 0 && isspace((unsigned char)*s)) {
            s++;
            len--;
        } else if (p->line == 1 && len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
            s += 3;
            len -= 3;
        } else {
            break;
        }
    }
    if (len > 0 && *s == '[' && !check_section_line(p, s, len))
        return NULL;
    memcpy(str, s, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

static void list_keys(const char *section, char *buf, size_t len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < N_KEYS && o < len; i++) {
        if (strcmp(keys[i].section, section) != 0)
            continue;
        int w = snprintf(buf + o, len - o, "%s%s", o ? ", " : "", keys[i].name);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

static int handle_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    char why[WHY_MAX], q[QUOTE_MAX + 8];
    size_t i;
    int r;

    if (p->error)
        return 1; /* the reader stops at the next line */
    if (!*section) {
        parse_fail(p, -EINVAL, "%s: key outside any section (expected a [daemon], [logout] or [retry] "
                               "line before it)", clean(name, q, sizeof(q)));
        return 0;
    }
    for (i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            break;
    if (i == N_KEYS) {
        list_keys(section, why, sizeof(why));
        parse_fail(p, -EINVAL, "[%s] %s: unknown key (keys in [%s]: %s)", section, clean(name, q, sizeof(q)),
                   section, why);
        return 0;
    }
    if (p->seen[i]) {
        parse_fail(p, -EINVAL, "[%s] %s: set a second time (first on line %u; expected each key once)",
                   section, name, p->seen[i]);
        return 0;
    }
    p->seen[i] = p->line;
    r = set_value(p->c, &keys[i], value, why, sizeof(why));
    if (r == -ENOMEM) {
        parse_fail(p, r, "[%s] %s: out of memory", section, name);
        return 0;
    }
    if (r < 0) {
        parse_fail(p, r, "[%s] %s: %s", section, name, why);
        return 0;
    }
    return 1;
}

static void append(char *buf, size_t len, size_t *o, const char *fmt, uint64_t v)
{
    int w;

    if (*o >= len)
        return;
    w = snprintf(buf + *o, len - *o, fmt, *o ? " " : "", v);
    if (w > 0)
        *o += (size_t)w;
}

/* ---- exported ---- */

void config_defaults(struct config *c)
{
    /* An allocation failure leaves a string NULL, which config_validate refuses. */
    *c = (struct config){
        .database = strdup("/var/lib/revokerd/revokerd.db"),
        .socket = strdup("/run/revokerd.sock"),
        .control_group = NULL,
        .max_clients = 64,
        .client_idle_ms = 30 * MS_PER_S,
        .keep_secrets = false,
        .log_level = LOG_INFO,
        .url = strdup("https://api.loyalty.dog/v2/token/logout"),
        .timeout_ms = 10 * MS_PER_S,
        .concurrency = 16,
        .rate_limit = 0,
        .ca_file = NULL,
        .down_after = 5,
        .credential_header = NULL,
        .retry_base_ms = 1 * MS_PER_S,
        .retry_max_delay_ms = 15 * MS_PER_MIN,
        .max_attempts = 8,
        .retry_after_max_ms = 1 * MS_PER_H,
    };
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
    struct parse p = {.path = path, .err = err, .errlen = errlen};
    struct config tmp;
    int r;

    p.f = fopen(path, "re");
    if (!p.f) {
        r = -errno;
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(-r));
        return r;
    }
    r = config_copy(&tmp, c);
    if (r < 0) {
        set_err(err, errlen, "%s: out of memory", path);
        goto err_after_open;
    }
    p.c = &tmp;
    r = ini_parse_stream(read_line, &p, handle_key, &p);
    if (r > 0 && (!p.error || (unsigned)r < p.error_line)) {
        /* inih found a line it cannot read, before any error of ours */
        p.error = 0;
        p.line = (unsigned)r;
        parse_fail(&p, -EINVAL, "syntax error (expected \"key = value\", \"[section]\", a comment or "
                                "an empty line)");
    } else if (r < 0 && !p.error) {
        parse_fail(&p, -ENOMEM, "out of memory");
    }
    free(p.buf);
    if (p.error) {
        r = p.error;
        config_free(&tmp);
        goto err_after_open;
    }
    fclose(p.f);
    config_free(c);
    *c = tmp;
    return 0;

err_after_open:
    fclose(p.f);
    return r;
}

int config_validate(const struct config *c, char *err, size_t errlen)
{
    char why[WHY_MAX], a[64], b[64];

    for (size_t i = 0; i < N_KEYS; i++) {
        if (check_value(c, &keys[i], why, sizeof(why)) < 0) {
            set_err(err, errlen, "[%s] %s: %s", keys[i].section, keys[i].name, why);
            return -EINVAL;
        }
    }
    if (c->retry_max_delay_ms < c->retry_base_ms) {
        config_format_duration(c->retry_max_delay_ms, a, sizeof(a));
        config_format_duration(c->retry_base_ms, b, sizeof(b));
        set_err(err, errlen, "[retry] max_delay: %s is shorter than [retry] base %s (expected max_delay >= base)",
                a, b);
        return -EINVAL;
    }
    return 0;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < N_STRINGS; i++) {
        char **sp = str_field(c, string_fields[i]);

        free(*sp);
        *sp = NULL;
    }
}

int config_copy(struct config *dst, const struct config *src)
{
    struct config tmp = *src;

    for (size_t i = 0; i < N_STRINGS; i++) {
        char **sp = str_field(&tmp, string_fields[i]);

        if (!*sp)
            continue;
        *sp = strdup(*sp);
        if (!*sp) {
            /* the fields after i still point into src */
            for (size_t j = i + 1; j < N_STRINGS; j++)
                *str_field(&tmp, string_fields[j]) = NULL;
            config_free(&tmp);
            return -ENOMEM;
        }
    }
    *dst = tmp;
    return 0;
}

int config_parse_duration(const char *s, uint64_t *ret_ms)
{
    uint64_t total = 0;
    bool any = false;

    if (!s)
        return -EINVAL;
    for (;;) {
        uint64_t whole = 0, mult = USEC_PER_S, v, m;
        const char *frac = NULL, *u;
        size_t nfrac = 0, ulen;

        s += strspn(s, " \t");
        if (!*s)
            break;
        if (!isdigit((unsigned char)*s))
            return -EINVAL;
        for (; isdigit((unsigned char)*s); s++) {
            if (whole > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                return -EINVAL;
            whole = whole * 10 + (uint64_t)(*s - '0');
        }
        if (*s == '.') {
            frac = ++s;
            while (isdigit((unsigned char)*s))
                s++;
            nfrac = (size_t)(s - frac);
            if (nfrac == 0)
                return -EINVAL;
        }
        s += strspn(s, " \t");
        for (u = s; isalpha((unsigned char)*s); s++)
            ;
        ulen = (size_t)(s - u);
        if (ulen > 0) {
            size_t i;

            for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0)
                    break;
            if (i == sizeof(units) / sizeof(units[0]))
                return -EINVAL;
            mult = units[i].usec;
        }
        if (whole > UINT64_MAX / mult)
            return -EINVAL;
        v = whole * mult;
        m = mult;
        for (size_t i = 0; i < nfrac && m > 0; i++) {
            uint64_t d;

            m /= 10;
            d = (uint64_t)(frac[i] - '0') * m;
            if (v > UINT64_MAX - d)
                return -EINVAL;
            v += d;
        }
        if (total > UINT64_MAX - v)
            return -EINVAL;
        total += v;
        any = true;
        /* "1h30min" and "1h 30min" but not "5s," */
        if (*s && *s != ' ' && *s != '\t' && !isdigit((unsigned char)*s))
            return -EINVAL;
    }
    if (!any)
        return -EINVAL;
    /* rounded up: a non-zero span never becomes 0 ms */
    *ret_ms = total / 1000 + (total % 1000 != 0);
    return 0;
}

void config_format_duration(uint64_t ms, char *buf, size_t len)
{
    size_t o = 0;

    if (!buf || len == 0)
        return;
    buf[0] = '\0';
    if (ms == 0) {
        snprintf(buf, len, "0");
        return;
    }
    if (ms / MS_PER_D)
        append(buf, len, &o, "%s%" PRIu64 "d", ms / MS_PER_D);
    if (ms % MS_PER_D / MS_PER_H)
        append(buf, len, &o, "%s%" PRIu64 "h", ms % MS_PER_D / MS_PER_H);
    if (ms % MS_PER_H / MS_PER_MIN)
        append(buf, len, &o, "%s%" PRIu64 "min", ms % MS_PER_H / MS_PER_MIN);
    if (ms % MS_PER_MIN / MS_PER_S)
        append(buf, len, &o, "%s%" PRIu64 "s", ms % MS_PER_MIN / MS_PER_S);
    if (ms % MS_PER_S)
        append(buf, len, &o, "%s%" PRIu64 "ms", ms % MS_PER_S);
}

void config_set_url_check(int (*check)(const char *url, char *err, size_t errlen))
{
    url_check = check;
}

const char *config_quote(const char *value, char *buf, size_t len)
{
    return quote(value, buf, len);
}

/* config: defaults, the INI file, and the checks, all driven by the key
 * table in config-keys.h.
 *
 * The INI reader is our own, a few short functions, and not inih: Debian
 * builds libinih with multi-line values on, no section callback and no line
 * numbers for the handler, all fixed at its compile time, so that inih
 * would glue an indented line to the previous value, split a line longer
 * than 200 bytes in two, name an unknown section only at its first key (an
 * empty one never) and could not say on which line a key was first set;
 * the old config.c fed it one line at a time to work around all that. The
 * syntax is inih's
 * (which the shipped files were written for): "[section]", "key = value"
 * or "key: value", ';' and '#' comment lines, " ;" inline comments, a BOM
 * and CRLF endings; any line may be indented, and each line is checked
 * whole: a NUL byte, more than LINE_MAX_BYTES bytes, an unknown section,
 * text after a section header, an unknown or repeated key and a bad value
 * each stop the load with FILE:LINE and what was expected. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/un.h>

#include "listenaddr.h"
#include "log.h"
#include "util.h"

#define MS_PER_S CONFIG_S
#define MS_PER_MIN CONFIG_MIN
#define MS_PER_H CONFIG_H
#define MS_PER_D CONFIG_D
#define USEC_PER_S UINT64_C(1000000)

#define WHY_MAX 512 /* "what is wrong (what is expected)" */
#define QUOTE_MAX 64 /* a value echoed in a message is cut here */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define GROUP_NAME_MAX 64
/* inih's limit (200 with "\r\n\0"), which the files were written for */
#define LINE_MAX_BYTES 197
#define BOM "\xef\xbb\xbf"

enum key_type {
    KEY_PATH,
    KEY_SOCKET,
    KEY_OPT_PATH,
    KEY_GROUP,
    KEY_HEADER,
    KEY_LISTEN,
    KEY_URL,
    KEY_UINT,
    KEY_BOOL,
    KEY_DURATION,
    KEY_KEEP,
    KEY_LOG_LEVEL,
};

struct key {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    const char *def; /* as written in the file */
    uint64_t min, max;
};

#define KEY_ROW(sec, nm, ty, member, def, lo, hi, what) \
    {sec, nm, KEY_##ty, offsetof(struct config, member), def, lo, hi},

static const struct key keys[] = {CONFIG_KEYS(KEY_ROW)};
#define N_KEYS ARRAY_SIZE(keys)

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

static char **str_field(struct config *c, size_t offset)
{
    return (char **)(void *)((char *)c + offset);
}

static void *field(const struct config *c, const struct key *k)
{
    return (char *)c + k->offset;
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
            util_format(why, whylen, "not set (expected a path)");
            return -EINVAL;
        }
        if (k->type == KEY_SOCKET && strlen(s) > SOCKET_PATH_MAX) {
            util_format(why, whylen,
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
                util_format(why, whylen, "%s is not a group name (expected a group name or number; empty: none)",
                            quote(s, q, sizeof(q)));
                return -EINVAL;
            }
        }
        if (strlen(s) > GROUP_NAME_MAX) {
            util_format(why, whylen, "%s is too long (expected a group name of at most %d bytes)",
                        quote(s, q, sizeof(q)), GROUP_NAME_MAX);
            return -EINVAL;
        }
        return 0;
    case KEY_OPT_PATH:
        return 0;
    case KEY_HEADER:
        s = *(char *const *)field(c, k);
        if (!s)
            return 0;
        for (const char *p = s; *p; p++) {
            if (!is_tchar((unsigned char)*p)) {
                util_format(why, whylen,
                            "%s is not an HTTP header name (expected letters, digits and "
                            "!#$%%&'*+-.^_`|~ only; empty: none)",
                            quote(s, q, sizeof(q)));
                return -EINVAL;
            }
        }
        if (strcasecmp(s, "authorization") == 0) {
            util_format(why, whylen,
                        "Authorization carries the bearer token (expected another header name)");
            return -EINVAL;
        }
        return 0;
    case KEY_LISTEN: {
        struct listenaddr a;
        char reason[WHY_MAX];
        s = *(char *const *)field(c, k);
        if (!s || listenaddr_parse(s, &a, reason, sizeof(reason)) == 0)
            return 0;
        util_format(why, whylen, "%s: %s", quote(s, q, sizeof(q)), reason);
        return -EINVAL;
    }
    case KEY_URL:
        s = *(char *const *)field(c, k);
        if (!s || !*s) {
            util_format(why, whylen, "not set (expected https://HOST/PATH)");
            return -EINVAL;
        }
        r = url_check ? url_check(s, why, whylen) : 0;
        return r < 0 ? r : 0;
    case KEY_UINT:
        v = *(const unsigned *)field(c, k);
        if (v < k->min || v > k->max) {
            util_format(why, whylen, "%" PRIu64 " is out of range (expected a whole number from %" PRIu64
                        " to %" PRIu64 ")", v, k->min, k->max);
            return -EINVAL;
        }
        return 0;
    case KEY_DURATION:
    case KEY_KEEP:
        v = *(const uint64_t *)field(c, k);
        if (v < k->min || v > k->max) {
            config_format_duration(v, q, sizeof(q));
            config_format_duration(k->min, lo, sizeof(lo));
            config_format_duration(k->max, hi, sizeof(hi));
            util_format(why, whylen, "%s is out of range (expected a time span from %s to %s)", q, lo, hi);
            return -EINVAL;
        }
        return 0;
    case KEY_BOOL:
        return 0;
    case KEY_LOG_LEVEL:
        r = *(const int *)field(c, k);
        if (r < LOG_CRIT || r > LOG_DEBUG) {
            util_format(why, whylen, "%d is not a log level (expected crit, err, warning, notice, info or debug)",
                        r);
            return -EINVAL;
        }
        return 0;
    }
    return 0;
}

/* Parses value into c's field for k, and checks it unless !check (the
 * table's defaults: the URL check needs curl, and test_config checks them).
 * 0, -EINVAL (why says why), -ENOMEM. */
static int set_value(struct config *c, const struct key *k, const char *value, bool check, char *why,
                     size_t whylen)
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
    case KEY_OPT_PATH:
    case KEY_HEADER:
    case KEY_LISTEN:
        if (!*value && (k->type == KEY_PATH || k->type == KEY_SOCKET || k->type == KEY_URL)) {
            util_format(why, whylen, "empty value (expected %s)",
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
        return check ? check_value(c, k, why, whylen) : 0;
    case KEY_UINT:
        r = parse_u64(value, &v);
        if (r == -EINVAL) {
            util_format(why, whylen, "%s is not a whole number (expected a whole number from %" PRIu64
                        " to %" PRIu64 ")", quote(value, q, sizeof(q)), k->min, k->max);
            return -EINVAL;
        }
        if (r < 0 || (check && (v < k->min || v > k->max))) {
            util_format(why, whylen, "%s is out of range (expected a whole number from %" PRIu64
                        " to %" PRIu64 ")", quote(value, q, sizeof(q)), k->min, k->max);
            return -EINVAL;
        }
        *(unsigned *)field(c, k) = (unsigned)v;
        return 0;
    case KEY_BOOL:
        if (parse_bool(value, &b) < 0) {
            util_format(why, whylen, "%s is not a boolean (expected true, false, yes, no, on, off, 1 or 0)",
                        quote(value, q, sizeof(q)));
            return -EINVAL;
        }
        *(bool *)field(c, k) = b;
        return 0;
    case KEY_KEEP:
        if (!*value) { /* empty: kept forever, as 0 */
            *(uint64_t *)field(c, k) = 0;
            return 0;
        }
        /* fallthrough */
    case KEY_DURATION:
        if (config_parse_duration(value, &v) < 0) {
            util_format(why, whylen,
                        "%s is not a time span (expected a number with a unit such as 500ms, 10s, 2min, "
                        "1h 30min; a bare number is seconds)",
                        quote(value, q, sizeof(q)));
            return -EINVAL;
        }
        *(uint64_t *)field(c, k) = v;
        return check ? check_value(c, k, why, whylen) : 0;
    case KEY_LOG_LEVEL:
        if (log_level_parse(value, &level) < 0) {
            util_format(why, whylen,
                        "%s is not a log level (expected crit, err, warning, notice, info or debug)",
                        quote(value, q, sizeof(q)));
            return -EINVAL;
        }
        *(int *)field(c, k) = level;
        return 0;
    }
    return -EINVAL;
}


static bool is_string(enum key_type t)
{
    return t == KEY_PATH || t == KEY_SOCKET || t == KEY_OPT_PATH || t == KEY_GROUP || t == KEY_HEADER ||
           t == KEY_LISTEN || t == KEY_URL;
}

/* Rows are grouped by section: a section starts where the name changes. */
static bool starts_section(size_t i)
{
    return i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0;
}

/* "[daemon], [logout] or [retry]" */
static void list_sections(char *buf, size_t len)
{
    size_t n = 0, seen = 0, o = 0;

    for (size_t i = 0; i < N_KEYS; i++)
        n += starts_section(i);
    buf[0] = '\0';
    for (size_t i = 0; i < N_KEYS && o < len; i++) {
        if (!starts_section(i))
            continue;
        seen++;
        int w = snprintf(buf + o, len - o, "%s[%s]", seen == 1 ? "" : seen == n ? " or " : ", ", keys[i].section);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

/* "url, timeout, ...": the keys of a section */
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

/* The state of one config_load(). */
struct parse {
    FILE *f;
    const char *path;
    struct config *c;      /* the copy being filled */
    unsigned line;         /* of the line being read */
    const char *section;   /* the table's name of the current one; NULL: none yet */
    unsigned seen[N_KEYS]; /* line where each key was set, 0: not yet */
    char *buf;             /* getline's */
    size_t cap;
    int error;             /* negative errno; 0: none */
    char *err;
    size_t errlen;
};

/* Records the error that ends the parse, prefixed with FILE:LINE. */
static int parse_fail(struct parse *p, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int parse_fail(struct parse *p, int error, const char *fmt, ...)
{
    char msg[WHY_MAX + 256];
    va_list ap;

    p->error = error;
    va_start(ap, fmt);
    util_vformat(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    util_format(p->err, p->errlen, "%s:%u: %s", p->path, p->line, msg);
    return error;
}

static char *rstrip(char *s, char *end)
{
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return s;
}

/* Where chars (or an inline comment: ';' after a space) start in s. */
static char *find_chars_or_comment(char *s, const char *chars)
{
    bool was_space = false;

    for (; *s && !(chars && strchr(chars, *s)) && !(was_space && *s == ';'); s++)
        was_space = isspace((unsigned char)*s);
    return s;
}

/* "[name]": a known section, nothing but a comment after it. */
static int section_line(struct parse *p, const char *s, size_t len)
{
    char q[QUOTE_MAX + 8], name[QUOTE_MAX + 1], expected[WHY_MAX];
    const char *close = memchr(s, ']', len);
    size_t n, rest;

    if (!close)
        return parse_fail(p, -EINVAL, "syntax error: section header without closing ']' (expected [section])");
    for (rest = (size_t)(close + 1 - s); rest < len && isspace((unsigned char)s[rest]); rest++)
        ;
    if (rest < len && s[rest] != ';' && s[rest] != '#')
        return parse_fail(p, -EINVAL, "syntax error: text after the section header (expected [section], "
                                      "optionally followed by a ; comment)");
    n = (size_t)(close - s - 1);
    for (size_t i = 0; i < N_KEYS; i++) {
        if (starts_section(i) && strlen(keys[i].section) == n && memcmp(keys[i].section, s + 1, n) == 0) {
            p->section = keys[i].section;
            return 0;
        }
    }
    if (n > QUOTE_MAX)
        n = QUOTE_MAX;
    memcpy(name, s + 1, n);
    name[n] = '\0';
    list_sections(expected, sizeof(expected));
    return parse_fail(p, -EINVAL, "[%s]: unknown section (expected %s)", clean(name, q, sizeof(q)), expected);
}

/* "name = value" (or "name: value"), trimmed, in the current section. */
static int key_line(struct parse *p, char *s)
{
    char why[WHY_MAX], q[QUOTE_MAX + 8];
    char *end = find_chars_or_comment(s, "=:"), *name, *value;
    size_t i;
    int r;

    if (*end != '=' && *end != ':')
        return parse_fail(p, -EINVAL, "syntax error (expected \"key = value\", \"[section]\", a comment or "
                                      "an empty line)");
    name = rstrip(s, end);
    value = end + 1;
    end = find_chars_or_comment(value, NULL);
    while (isspace((unsigned char)*value))
        value++;
    value = rstrip(value, end); /* value <= end: end is at ';' or '\0' */
    if (!p->section) {
        list_sections(why, sizeof(why));
        return parse_fail(p, -EINVAL, "%s: key outside any section (expected a %s line before it)",
                          clean(name, q, sizeof(q)), why);
    }
    for (i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, p->section) == 0 && strcmp(keys[i].name, name) == 0)
            break;
    if (i == N_KEYS) {
        list_keys(p->section, why, sizeof(why));
        return parse_fail(p, -EINVAL, "[%s] %s: unknown key (keys in [%s]: %s)", p->section,
                          clean(name, q, sizeof(q)), p->section, why);
    }
    if (p->seen[i])
        return parse_fail(p, -EINVAL, "[%s] %s: set a second time (first on line %u; expected each key once)",
                          p->section, name, p->seen[i]);
    p->seen[i] = p->line;
    r = set_value(p->c, &keys[i], value, true, why, sizeof(why));
    if (r == -ENOMEM)
        return parse_fail(p, r, "[%s] %s: out of memory", p->section, name);
    if (r < 0)
        return parse_fail(p, r, "[%s] %s: %s", p->section, name, why);
    return 0;
}

/* One physical line: checked whole, then a comment, a section or a key. */
static int parse_line(struct parse *p, char *s, size_t len)
{
    if (memchr(s, '\0', len))
        return parse_fail(p, -EINVAL, "line contains a NUL byte (expected text)");
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    s[len] = '\0';
    if (p->line == 1 && len >= 3 && memcmp(s, BOM, 3) == 0) {
        s += 3;
        len -= 3;
    }
    if (len > LINE_MAX_BYTES)
        return parse_fail(p, -EINVAL, "line too long: %zu bytes (expected at most %d)", len, LINE_MAX_BYTES);
    /* any indentation, and on line 1 any further BOMs */
    for (;;) {
        if (len > 0 && isspace((unsigned char)*s)) {
            s++;
            len--;
        } else if (p->line == 1 && len >= 3 && memcmp(s, BOM, 3) == 0) {
            s += 3;
            len -= 3;
        } else {
            break;
        }
    }
    if (len == 0 || *s == ';' || *s == '#')
        return 0;
    if (*s == '[')
        return section_line(p, s, len);
    return key_line(p, s);
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


/* The value of c's field for k as the file writes it; buf for numbers. */
static const char *format_value(const struct config *c, const struct key *k, char *buf, size_t len)
{
    const char *s;

    if (is_string(k->type)) {
        s = *(char *const *)field(c, k);
        return s ? s : "";
    }
    switch (k->type) {
    case KEY_UINT:
        snprintf(buf, len, "%u", *(const unsigned *)field(c, k));
        return buf;
    case KEY_BOOL:
        return *(const bool *)field(c, k) ? "true" : "false";
    case KEY_DURATION:
    case KEY_KEEP:
        config_format_duration(*(const uint64_t *)field(c, k), buf, len);
        return buf;
    case KEY_LOG_LEVEL:
        return log_level_name(*(const int *)field(c, k));
    default:
        return "";
    }
}

static bool same_value(const struct config *a, const struct config *b, const struct key *k)
{
    const char *x, *y;

    if (is_string(k->type)) {
        x = *(char *const *)field(a, k);
        y = *(char *const *)field(b, k);
        return (!x && !y) || (x && y && strcmp(x, y) == 0);
    }
    switch (k->type) {
    case KEY_UINT:
        return *(const unsigned *)field(a, k) == *(const unsigned *)field(b, k);
    case KEY_BOOL:
        return *(const bool *)field(a, k) == *(const bool *)field(b, k);
    case KEY_DURATION:
    case KEY_KEEP:
        return *(const uint64_t *)field(a, k) == *(const uint64_t *)field(b, k);
    case KEY_LOG_LEVEL:
        return *(const int *)field(a, k) == *(const int *)field(b, k);
    default:
        return false;
    }
}

/* ---- exported ---- */

void config_defaults(struct config *c)
{
    *c = (struct config){0};
    /* An allocation failure leaves a string NULL, which config_validate refuses. */
    for (size_t i = 0; i < N_KEYS; i++)
        set_value(c, &keys[i], keys[i].def, false, NULL, 0);
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
    struct parse p = {.path = path, .err = err, .errlen = errlen};
    struct config tmp;
    ssize_t n;
    int r;

    p.f = fopen(path, "re");
    if (!p.f) {
        r = -errno;
        util_format(err, errlen, "%s: cannot open: %s", path, strerror(-r));
        return r;
    }
    r = config_copy(&tmp, c);
    if (r < 0) {
        util_format(err, errlen, "%s: out of memory", path);
        goto err_after_open;
    }
    p.c = &tmp;
    for (;;) {
        errno = 0;
        n = getline(&p.buf, &p.cap, p.f);
        p.line++;
        if (n < 0) {
            int e = errno ? errno : EIO;

            if (ferror(p.f) || errno == ENOMEM)
                parse_fail(&p, -e, "cannot read: %s", strerror(e));
            break;
        }
        if (parse_line(&p, p.buf, (size_t)n) < 0)
            break;
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
            util_format(err, errlen, "[%s] %s: %s", keys[i].section, keys[i].name, why);
            return -EINVAL;
        }
    }
    if (c->retry_max_delay_ms < c->retry_base_ms) {
        config_format_duration(c->retry_max_delay_ms, a, sizeof(a));
        config_format_duration(c->retry_base_ms, b, sizeof(b));
        util_format(err, errlen, "[retry] max_delay: %s is shorter than [retry] base %s (expected max_delay >= base)",
                    a, b);
        return -EINVAL;
    }
    return 0;
}


void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (is_string(keys[i].type)) {
            char **sp = str_field(c, keys[i].offset);

            free(*sp);
            *sp = NULL;
        }
    }
}

/* -fanalyzer (gcc 12) loses the strdup()s stored through str_field() and
 * reports them leaked; they end in *dst, or config_free(&tmp) frees them. */
ANALYZER_LEAKS_OFF
int config_copy(struct config *dst, const struct config *src)
{
    struct config tmp = *src;

    for (size_t i = 0; i < N_KEYS; i++) {
        char **sp = str_field(&tmp, keys[i].offset);

        if (!is_string(keys[i].type) || !*sp)
            continue;
        *sp = strdup(*sp);
        if (!*sp) {
            /* the strings after i still point into src */
            for (size_t j = i + 1; j < N_KEYS; j++)
                if (is_string(keys[j].type))
                    *str_field(&tmp, keys[j].offset) = NULL;
            config_free(&tmp);
            return -ENOMEM;
        }
    }
    *dst = tmp;
    return 0;
}
ANALYZER_LEAKS_ON

bool config_equal(const struct config *a, const struct config *b)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (!same_value(a, b, &keys[i]))
            return false;
    return true;
}

void config_print(FILE *f, const struct config *c)
{
    char buf[64];

    for (size_t i = 0; i < N_KEYS; i++) {
        if (starts_section(i))
            fprintf(f, "%s[%s]\n", i ? "\n" : "", keys[i].section);
        fprintf(f, "%s = %s\n", keys[i].name, format_value(c, &keys[i], buf, sizeof(buf)));
    }
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

            for (i = 0; i < ARRAY_SIZE(units); i++)
                if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0)
                    break;
            if (i == ARRAY_SIZE(units))
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

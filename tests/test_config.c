/* test_config: the INI file, its error messages, durations, URLs, validation;
 * and, row by row, the key table of config-keys.h: each default, each limit,
 * --check-config's output, and the shipped revokerd.conf and revokerd.conf(5)'s keys
 * against it (both found under $SOURCE_ROOT, which meson test sets). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "config_same.h"
#include "unit.h"

static char dir[64];
static unsigned file_no;

static void setup_dir(void)
{
    if (dir[0])
        return;
    snprintf(dir, sizeof(dir), "/tmp/test_config.XXXXXX");
    REQUIRE(mkdtemp(dir));
}

static void cleanup_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];

    if (!d)
        return;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (unlink(p) < 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Writes text (len bytes, or strlen) into a new file; returns its path. */
static const char *write_file_n(const char *text, size_t len, char *path, size_t pathlen)
{
    FILE *f;

    setup_dir();
    snprintf(path, pathlen, "%s/%u.conf", dir, ++file_no);
    f = fopen(path, "w");
    REQUIRE(f);
    REQUIRE(fwrite(text, 1, len, f) == len);
    REQUIRE(fclose(f) == 0);
    return path;
}

static const char *write_file(const char *text, char *path, size_t pathlen)
{
    return write_file_n(text, strlen(text), path, pathlen);
}

/* Loads text over defaults; path and err are the caller's. */
static int load_text(struct config *c, const char *text, char *path, char *err)
{
    write_file(text, path, 256);
    err[0] = '\0';
    return config_load(c, path, err, 1024);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

#define CHECK_PREFIX(s, prefix)                                                              \
    do {                                                                                     \
        if (!starts_with((s), (prefix))) {                                                   \
            fprintf(stderr, "%s:%d: \"%s\" does not start with \"%s\"\n", __FILE__, __LINE__, \
                    (s), (prefix));                                                          \
            unit_failures++;                                                                 \
        }                                                                                    \
    } while (0)

#define CHECK_CONTAINS(s, part)                                                              \
    do {                                                                                     \
        if (!strstr((s), (part))) {                                                          \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,    \
                    (s), (part));                                                            \
            unit_failures++;                                                                 \
        }                                                                                    \
    } while (0)

static void test_defaults(void)
{
    struct config c;
    char err[256] = "";

    config_defaults(&c);
    CHECK_STR(c.database, "/var/lib/revokerd/revokerd.db");
    CHECK_STR(c.socket, "/run/revokerd.sock");
    CHECK(c.control_group == NULL);
    CHECK_INT(c.max_clients, 64);
    CHECK_INT(c.client_idle_ms, 30000);
    CHECK(!c.keep_secrets);
    CHECK(c.jwt_expiry);
    CHECK_INT(c.log_level, LOG_INFO);
    CHECK_STR(c.url, "https://api.loyalty.dog/v2/token/logout");
    CHECK_INT(c.timeout_ms, 10000);
    CHECK_INT(c.concurrency, 16);
    CHECK_INT(c.rate_limit, 0);
    CHECK(c.ca_file == NULL);
    CHECK_INT(c.down_after, 5);
    CHECK(c.credential_header == NULL);
    CHECK_INT(c.retry_base_ms, 1000);
    CHECK_INT(c.retry_max_delay_ms, 15 * 60 * 1000);
    CHECK_INT(c.max_attempts, 8);
    CHECK_INT(c.retry_after_max_ms, 3600 * 1000);
    CHECK_INT(c.audit_anchor_interval_ms, 3600 * 1000);
    CHECK_INT(config_validate(&c, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    config_free(&c);
    config_free(&c); /* twice is fine: strings are NULL now */
    config_free(NULL);
}

/* The example file, comments and empty values included. */
static void test_example_file(void)
{
    static const char text[] =
        "; revokerd\n"
        "[daemon]\n"
        "database = /tmp/x/revokerd.db\n"
        "socket = /tmp/x/revokerd.sock   ; the control socket (its own issue)\n"
        "[logout]\n"
        "url = http://127.0.0.1:8080/v2/token/logout\n"
        "timeout = 10s\n"
        "concurrency = 16\n"
        "rate_limit = 0\n"
        "ca_file =\n"
        "down_after = 5\n"
        "[retry]\n"
        "base = 1s\n"
        "max_delay = 15min\n"
        "max_attempts = 8\n"
        "retry_after_max = 1h\n";
    struct config c;
    char path[256], err[1024];

    config_defaults(&c);
    CHECK_INT(load_text(&c, text, path, err), 0);
    CHECK_STR(err, "");
    CHECK_STR(c.database, "/tmp/x/revokerd.db");
    CHECK_STR(c.socket, "/tmp/x/revokerd.sock");
    CHECK_STR(c.url, "http://127.0.0.1:8080/v2/token/logout");
    CHECK(c.ca_file == NULL);
    CHECK_INT(config_validate(&c, err, sizeof(err)), 0);
    config_free(&c);
}

enum field_type { FT_STR, FT_UINT, FT_U64, FT_BOOL, FT_INT };

struct good_case {
    const char *section, *key, *value;
    enum field_type type;
    size_t offset;
    const char *str; /* FT_STR; NULL: expect NULL */
    uint64_t num;
};

#define GS(sec, key, val, field, expect) {sec, key, val, FT_STR, offsetof(struct config, field), expect, 0}
#define GU(sec, key, val, field, expect) {sec, key, val, FT_UINT, offsetof(struct config, field), NULL, expect}
#define GD(sec, key, val, field, expect) {sec, key, val, FT_U64, offsetof(struct config, field), NULL, expect}
#define GB(sec, key, val, expect) {sec, key, val, FT_BOOL, offsetof(struct config, keep_secrets), NULL, expect}
#define GL(val, expect) {"daemon", "log_level", val, FT_INT, offsetof(struct config, log_level), NULL, expect}

static const struct good_case good_cases[] = {
    GS("daemon", "database", "/srv/tokens.db", database, "/srv/tokens.db"),
    GS("daemon", "database", "relative.db", database, "relative.db"),
    GS("daemon", "socket", "/run/x/ctl.sock", socket, "/run/x/ctl.sock"),
    GS("daemon", "control_group", "revokerd", control_group, "revokerd"),
    GS("daemon", "control_group", "1234", control_group, "1234"),
    GS("daemon", "control_group", "", control_group, NULL),
    GU("daemon", "max_clients", "1", max_clients, 1),
    GU("daemon", "max_clients", "65536", max_clients, 65536),
    GU("daemon", "max_clients", "0010", max_clients, 10),
    GD("daemon", "client_idle", "250ms", client_idle_ms, 250),
    GD("daemon", "client_idle", "1d", client_idle_ms, 86400000),
    GB("daemon", "keep_secrets", "true", 1),
    GB("daemon", "keep_secrets", "yes", 1),
    GB("daemon", "keep_secrets", "on", 1),
    GB("daemon", "keep_secrets", "1", 1),
    GB("daemon", "keep_secrets", "TRUE", 1),
    GB("daemon", "keep_secrets", "false", 0),
    GB("daemon", "keep_secrets", "no", 0),
    GB("daemon", "keep_secrets", "off", 0),
    GB("daemon", "keep_secrets", "0", 0),
    GL("crit", LOG_CRIT),
    GL("err", LOG_ERR),
    GL("warning", LOG_WARNING),
    GL("notice", LOG_NOTICE),
    GL("info", LOG_INFO),
    GL("debug", LOG_DEBUG),
    GL("DEBUG", LOG_DEBUG),
    GS("logout", "url", "https://api.example.com/v2/token/logout", url, "https://api.example.com/v2/token/logout"),
    GS("logout", "url", "http://127.0.0.1:8080/v2/token/logout", url, "http://127.0.0.1:8080/v2/token/logout"),
    GS("logout", "url", "http://localhost/x", url, "http://localhost/x"),
    GS("logout", "url", "http://[::1]:9/x", url, "http://[::1]:9/x"),
    GD("logout", "timeout", "1ms", timeout_ms, 1),
    GD("logout", "timeout", "2.5s", timeout_ms, 2500),
    GD("logout", "timeout", "1h", timeout_ms, 3600000),
    GD("logout", "timeout", "30", timeout_ms, 30000),
    GU("logout", "concurrency", "1", concurrency, 1),
    GU("logout", "concurrency", "1024", concurrency, 1024),
    GU("logout", "rate_limit", "0", rate_limit, 0),
    GU("logout", "rate_limit", "1000000", rate_limit, 1000000),
    GS("logout", "ca_file", "/etc/revokerd/ca.pem", ca_file, "/etc/revokerd/ca.pem"),
    GS("logout", "ca_file", "", ca_file, NULL),
    GU("logout", "down_after", "1", down_after, 1),
    GU("logout", "down_after", "1000", down_after, 1000),
    GS("logout", "credential_header", "X-Client-Key", credential_header, "X-Client-Key"),
    GS("logout", "credential_header", "", credential_header, NULL),
    GD("retry", "base", "1ms", retry_base_ms, 1),
    GD("retry", "base", "1d", retry_base_ms, 86400000),
    GD("retry", "max_delay", "30d", retry_max_delay_ms, 30ULL * 86400000),
    GD("retry", "max_delay", "1h 30min", retry_max_delay_ms, 5400000),
    GU("retry", "max_attempts", "1", max_attempts, 1),
    GU("retry", "max_attempts", "1000", max_attempts, 1000),
    GD("retry", "retry_after_max", "0", retry_after_max_ms, 0),
    GD("audit", "anchor_interval", "1s", audit_anchor_interval_ms, 1000),
    GD("audit", "anchor_interval", "30d", audit_anchor_interval_ms, 30ULL * 86400000),
    GD("audit", "anchor_interval", "15min", audit_anchor_interval_ms, 900000),
    GS("metrics", "listen", "127.0.0.1:9469", metrics_listen, "127.0.0.1:9469"),
    GS("metrics", "listen", "[::1]:9469", metrics_listen, "[::1]:9469"),
    GS("metrics", "listen", "/run/revokerd/metrics.sock", metrics_listen, "/run/revokerd/metrics.sock"),
    GS("metrics", "listen", "", metrics_listen, NULL),
    GD("retry", "retry_after_max", "2h", retry_after_max_ms, 7200000),
    GD("retention", "tokens", "7d", retention_tokens_ms, 7ULL * 86400000),
    GD("retention", "tokens", "0", retention_tokens_ms, 0),
    GD("retention", "tokens", "", retention_tokens_ms, 0), /* empty: kept forever, as 0 */
    GD("retention", "audit", "", retention_audit_ms, 0),
};

static void test_good_values(void)
{
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const struct good_case *g = &good_cases[i];
        char text[512], path[256], err[1024];
        struct config c;
        char *base;
        int r;

        config_defaults(&c);
        /* start from a set string, so that "empty: unset" is seen to act */
        free(c.control_group);
        c.control_group = strdup("before");
        free(c.ca_file);
        c.ca_file = strdup("before");
        free(c.credential_header);
        c.credential_header = strdup("before");
        /* the opposite of what the case sets, so that the change is seen */
        c.keep_secrets = !g->num;
        base = (char *)&c;
        snprintf(text, sizeof(text), "[%s]\n%s = %s\n", g->section, g->key, g->value);
        r = load_text(&c, text, path, err);
        if (r != 0) {
            fprintf(stderr, "case %zu ([%s] %s = %s): %s\n", i, g->section, g->key, g->value, err);
            unit_failures++;
            config_free(&c);
            continue;
        }
        switch (g->type) {
        case FT_STR: {
            const char *got = *(char **)(void *)(base + g->offset);

            if (!config_same_str(got, g->str)) {
                fprintf(stderr, "case %zu ([%s] %s = %s): got \"%s\", expected \"%s\"\n", i, g->section,
                        g->key, g->value, got ? got : "(null)", g->str ? g->str : "(null)");
                unit_failures++;
            }
            break;
        }
        case FT_UINT:
            CHECK_INT(*(unsigned *)(void *)(base + g->offset), g->num);
            break;
        case FT_U64:
            CHECK_INT(*(uint64_t *)(void *)(base + g->offset), g->num);
            break;
        case FT_BOOL:
            CHECK_INT(*(bool *)(void *)(base + g->offset), g->num);
            break;
        case FT_INT:
            CHECK_INT(*(int *)(void *)(base + g->offset), g->num);
            break;
        }
        config_free(&c);
    }
}

struct bad_case {
    const char *section, *key, *value;
    const char *why; /* what follows "FILE:3: [section] key: " */
};

static const struct bad_case bad_cases[] = {
    {"daemon", "database", "", "empty value (expected a path)"},
    {"daemon", "socket", "", "empty value (expected a path)"},
    {"daemon", "socket",
     "/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
     "path is 113 bytes long (expected at most 107 bytes, the limit of a UNIX socket address)"},
    {"daemon", "control_group", "wheel:x",
     "\"wheel:x\" is not a group name (expected a group name or number; empty: none)"},
    {"daemon", "max_clients", "0", "\"0\" is out of range (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "65537", "\"65537\" is out of range (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "-1", "\"-1\" is not a whole number (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "+5", "\"+5\" is not a whole number (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "12x", "\"12x\" is not a whole number (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "1 2", "\"1 2\" is not a whole number (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "0x10", "\"0x10\" is not a whole number (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "", "\"\" is not a whole number (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "99999999999999999999999",
     "\"99999999999999999999999\" is out of range (expected a whole number from 1 to 65536)"},
    {"daemon", "max_clients", "4294967297",
     "\"4294967297\" is out of range (expected a whole number from 1 to 65536)"},
    {"daemon", "client_idle", "0", "0 is out of range (expected a time span from 1ms to 1d)"},
    {"daemon", "client_idle", "2d", "2d is out of range (expected a time span from 1ms to 1d)"},
    {"daemon", "client_idle", "soon",
     "\"soon\" is not a time span (expected a number with a unit such as 500ms, 10s, 2min, 1h 30min; a bare "
     "number is seconds)"},
    {"daemon", "keep_secrets", "maybe",
     "\"maybe\" is not a boolean (expected true, false, yes, no, on, off, 1 or 0)"},
    {"daemon", "keep_secrets", "", "\"\" is not a boolean (expected true, false, yes, no, on, off, 1 or 0)"},
    {"daemon", "keep_secrets", "2", "\"2\" is not a boolean (expected true, false, yes, no, on, off, 1 or 0)"},
    {"daemon", "log_level", "loud",
     "\"loud\" is not a log level (expected crit, err, warning, notice, info or debug)"},
    {"daemon", "log_level", "7", "\"7\" is not a log level (expected crit, err, warning, notice, info or debug)"},
    {"logout", "url", "", "empty value (expected https://HOST/PATH)"},
    {"logout", "url", "http://example.com/v2/token/logout",
     "plain http:// is refused for host \"example.com\": a bearer token must not cross a network in clear "
     "text; use https:// or a loopback host (localhost, 127.0.0.0/8, ::1)"},
    {"logout", "url", "ftp://example.com/x",
     "scheme \"ftp\" is not supported (expected https://, or http:// for a loopback host)"},
    {"logout", "url", "garbage", "not a valid URL: Bad scheme (CURLUcode 27) (expected https://HOST/PATH)"},
    {"logout", "timeout", "0", "0 is out of range (expected a time span from 1ms to 1h)"},
    {"logout", "timeout", "2h", "2h is out of range (expected a time span from 1ms to 1h)"},
    {"logout", "timeout", "1h 1ms", "1h 1ms is out of range (expected a time span from 1ms to 1h)"},
    {"logout", "timeout", "10x",
     "\"10x\" is not a time span (expected a number with a unit such as 500ms, 10s, 2min, 1h 30min; a bare "
     "number is seconds)"},
    {"logout", "timeout", "-1s",
     "\"-1s\" is not a time span (expected a number with a unit such as 500ms, 10s, 2min, 1h 30min; a bare "
     "number is seconds)"},
    {"logout", "concurrency", "0", "\"0\" is out of range (expected a whole number from 1 to 1024)"},
    {"logout", "concurrency", "1025", "\"1025\" is out of range (expected a whole number from 1 to 1024)"},
    {"logout", "rate_limit", "1000001", "\"1000001\" is out of range (expected a whole number from 0 to 1000000)"},
    {"logout", "rate_limit", "-1", "\"-1\" is not a whole number (expected a whole number from 0 to 1000000)"},
    {"logout", "down_after", "0", "\"0\" is out of range (expected a whole number from 1 to 1000)"},
    {"logout", "down_after", "1001", "\"1001\" is out of range (expected a whole number from 1 to 1000)"},
    {"logout", "credential_header", "X Key",
     "\"X Key\" is not an HTTP header name (expected letters, digits and !#$%&'*+-.^_`|~ only; empty: none)"},
    {"logout", "credential_header", "X:Key",
     "\"X:Key\" is not an HTTP header name (expected letters, digits and !#$%&'*+-.^_`|~ only; empty: none)"},
    {"logout", "credential_header", "authorization",
     "Authorization carries the bearer token (expected another header name)"},
    {"retry", "base", "0", "0 is out of range (expected a time span from 1ms to 1d)"},
    {"retry", "base", "25h", "1d 1h is out of range (expected a time span from 1ms to 1d)"},
    {"retry", "max_delay", "0", "0 is out of range (expected a time span from 1ms to 30d)"},
    {"retry", "max_delay", "31d", "31d is out of range (expected a time span from 1ms to 30d)"},
    {"retry", "max_attempts", "0", "\"0\" is out of range (expected a whole number from 1 to 1000)"},
    {"retry", "max_attempts", "1001", "\"1001\" is out of range (expected a whole number from 1 to 1000)"},
    {"retry", "retry_after_max", "31d", "31d is out of range (expected a time span from 0 to 30d)"},
    {"audit", "anchor_interval", "999ms", "999ms is out of range (expected a time span from 1s to 30d)"},
    {"audit", "anchor_interval", "0", "0 is out of range (expected a time span from 1s to 30d)"},
    {"audit", "anchor_interval", "31d", "31d is out of range (expected a time span from 1s to 30d)"},
    {"metrics", "listen", "localhost:9469",
     "\"localhost:9469\": not a numeric IPv4 address (expected IPv4:PORT, [IPv6]:PORT or an absolute UNIX "
     "socket path; empty: off; no host names)"},
    {"metrics", "listen", "127.0.0.1:0",
     "\"127.0.0.1:0\": the port is not a number from 1 to 65535 (expected IPv4:PORT, [IPv6]:PORT or an "
     "absolute UNIX socket path; empty: off)"},
    {"retry", "retry_after_max", "x",
     "\"x\" is not a time span (expected a number with a unit such as 500ms, 10s, 2min, 1h 30min; a bare "
     "number is seconds)"},
};

static void test_bad_values(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *b = &bad_cases[i];
        char text[512], path[256], err[1024], expect[1024];
        struct config c, before;

        config_defaults(&c);
        REQUIRE(config_copy(&before, &c) == 0);
        /* line 3: after a comment and the section */
        snprintf(text, sizeof(text), "# case %zu\n[%s]\n%s = %s\n", i, b->section, b->key, b->value);
        CHECK_INT(load_text(&c, text, path, err), -EINVAL);
        snprintf(expect, sizeof(expect), "%s:3: [%s] %s: %s", path, b->section, b->key, b->why);
        CHECK_STR(err, expect);
        CHECK(config_same(&c, &before));
        config_free(&before);
        config_free(&c);
    }
}

/* Whole-file problems: each names the file and the line. */
struct file_case {
    const char *text;
    unsigned line;
    const char *what; /* after "FILE:LINE: " */
};

static const struct file_case file_cases[] = {
    {"[logout]\ntmeout = 5s\n", 2,
     "[logout] tmeout: unknown key (keys in [logout]: url, timeout, concurrency, rate_limit, ca_file, "
     "down_after, credential_header)"},
    {"[daemon]\ndatabase = /x\n\n[retry]\nbase_ms = 5\n", 5,
     "[retry] base_ms: unknown key (keys in [retry]: base, max_delay, max_attempts, retry_after_max)"},
    {"[daemon]\nurl = https://a.example/\n", 2,
     "[daemon] url: unknown key (keys in [daemon]: database, socket, control_group, max_clients, "
     "client_idle, "
     "keep_secrets, jwt_expiry, log_level)"},
    {"[Logout]\ntimeout = 5s\n", 1,
     "[Logout]: unknown section (expected [daemon], [logout], [retry], [audit], [metrics] or [retention])"},
    {"; comment\n[daemon]\n[http]\n", 3,
     "[http]: unknown section (expected [daemon], [logout], [retry], [audit], [metrics] or [retention])"},
    {"timeout = 5s\n", 1,
     "timeout: key outside any section (expected a [daemon], [logout], [retry], [audit], [metrics] or "
     "[retention] line before it)"},
    {"[logout\ntimeout = 5s\n", 1, "syntax error: section header without closing ']' (expected [section])"},
    {"[logout] timeout = 5s\n", 1,
     "syntax error: text after the section header (expected [section], optionally followed by a ; comment)"},
    {"[logout]\ntimeout 5s\n", 2,
     "syntax error (expected \"key = value\", \"[section]\", a comment or an empty line)"},
    /* a syntax error before a bad value wins: the first error is reported */
    {"[logout]\njunk\ntimeout = x\n", 2,
     "syntax error (expected \"key = value\", \"[section]\", a comment or an empty line)"},
    {"[logout]\ntimeout = x\njunk\n", 2,
     "[logout] timeout: \"x\" is not a time span (expected a number with a unit such as 500ms, 10s, 2min, "
     "1h 30min; a bare number is seconds)"},
    {"[logout]\ntimeout = 5s\n[daemon]\n[logout]\ntimeout = 6s\n", 5,
     "[logout] timeout: set a second time (first on line 2; expected each key once)"},
    /* control bytes in names are not echoed */
    {"[logout]\nti\033me = 5s\n", 2,
     "[logout] ti?me: unknown key (keys in [logout]: url, timeout, concurrency, rate_limit, ca_file, "
     "down_after, credential_header)"},
};

static void test_file_errors(void)
{
    for (size_t i = 0; i < sizeof(file_cases) / sizeof(file_cases[0]); i++) {
        const struct file_case *fc = &file_cases[i];
        char path[256], err[1024], expect[1024];
        struct config c;

        config_defaults(&c);
        CHECK_INT(load_text(&c, fc->text, path, err), -EINVAL);
        snprintf(expect, sizeof(expect), "%s:%u: %s", path, fc->line, fc->what);
        CHECK_STR(err, expect);
        config_free(&c);
    }
}

static void test_syntax_accepted(void)
{
    struct config c;
    char path[256], err[1024];

    config_defaults(&c);
    /* indented keys are keys, not continuations of the previous value;
     * CRLF endings, a BOM, # and ; comments, ':' as separator */
    CHECK_INT(load_text(&c,
                        "\xef\xbb\xbf# x\r\n"
                        "  [logout]  ; the endpoint\r\n"
                        "    timeout = 7s ; inline\r\n"
                        "    concurrency = 3\r\n"
                        "\r\n"
                        "; done\r\n"
                        "\tdown_after: 9\r\n"
                        "[retry]\n"
                        "max_delay=2min",
                        path, err),
              0);
    CHECK_STR(err, "");
    CHECK_INT(c.timeout_ms, 7000);
    CHECK_INT(c.concurrency, 3);
    CHECK_INT(c.down_after, 9);
    CHECK_INT(c.retry_max_delay_ms, 120000);
    config_free(&c);

    /* an empty file changes nothing */
    config_defaults(&c);
    CHECK_INT(load_text(&c, "", path, err), 0);
    CHECK_INT(c.timeout_ms, 10000);
    config_free(&c);
}

static void test_overlay(void)
{
    struct config c;
    char path[256], err[1024];

    config_defaults(&c);
    CHECK_INT(load_text(&c, "[logout]\ntimeout = 3s\n", path, err), 0);
    CHECK_INT(load_text(&c, "[logout]\nconcurrency = 4\n[daemon]\ndatabase = /d.db\n", path, err), 0);
    CHECK_INT(c.timeout_ms, 3000);
    CHECK_INT(c.concurrency, 4);
    CHECK_STR(c.database, "/d.db");
    config_free(&c);
}

static void test_long_line(void)
{
    char text[600], path[256], err[1024], expect[1024];
    struct config c;
    size_t n;

    /* 197 bytes is the longest line: inih's buffer is 200 with "\r\n\0" */
    config_defaults(&c);
    n = (size_t)snprintf(text, sizeof(text), "[daemon]\ndatabase = /");
    memset(text + n, 'a', 197 - 12);
    n += 197 - 12;
    memcpy(text + n, "\n", 2);
    CHECK_INT(load_text(&c, text, path, err), 0);
    CHECK_INT(strlen(c.database), 197 - 11);
    config_free(&c);

    config_defaults(&c);
    n = (size_t)snprintf(text, sizeof(text), "[daemon]\n# x\ndatabase = /");
    memset(text + n, 'a', 400);
    n += 400;
    snprintf(text + n, sizeof(text) - n, "\n[nope]\n");
    CHECK_INT(load_text(&c, text, path, err), -EINVAL);
    snprintf(expect, sizeof(expect), "%s:3: line too long: 412 bytes (expected at most 197)", path);
    CHECK_STR(err, expect);
    CHECK_STR(c.database, "/var/lib/revokerd/revokerd.db");
    config_free(&c);

    /* 198 bytes, without a final newline */
    config_defaults(&c);
    n = (size_t)snprintf(text, sizeof(text), "[daemon]\ndatabase = /");
    memset(text + n, 'a', 198 - 12);
    text[n + 198 - 12] = '\0';
    CHECK_INT(load_text(&c, text, path, err), -EINVAL);
    snprintf(expect, sizeof(expect), "%s:2: line too long: 198 bytes (expected at most 197)", path);
    CHECK_STR(err, expect);
    config_free(&c);
}

static void test_nul_byte(void)
{
    static const char text[] = "[logout]\ntimeout = 5s\0 junk\n";
    char path[256], err[1024], expect[1024];
    struct config c;

    config_defaults(&c);
    write_file_n(text, sizeof(text) - 1, path, sizeof(path));
    CHECK_INT(config_load(&c, path, err, sizeof(err)), -EINVAL);
    snprintf(expect, sizeof(expect), "%s:2: line contains a NUL byte (expected text)", path);
    CHECK_STR(err, expect);
    config_free(&c);
}

static void test_missing_and_unreadable(void)
{
    char path[300], err[1024], expect[1024];
    struct config c, before;

    setup_dir();
    config_defaults(&c);
    REQUIRE(config_copy(&before, &c) == 0);
    snprintf(path, sizeof(path), "%s/does-not-exist.conf", dir);
    CHECK_INT(config_load(&c, path, err, sizeof(err)), -ENOENT);
    snprintf(expect, sizeof(expect), "%s: cannot open: No such file or directory", path);
    CHECK_STR(err, expect);
    CHECK(config_same(&c, &before));

    /* a directory opens but does not read */
    snprintf(path, sizeof(path), "%s/sub.d", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    CHECK_INT(config_load(&c, path, err, sizeof(err)), -EISDIR);
    snprintf(expect, sizeof(expect), "%s:1: cannot read: Is a directory", path);
    CHECK_STR(err, expect);
    CHECK(config_same(&c, &before));

    /* no err buffer is fine */
    CHECK_INT(config_load(&c, "/nonexistent/x.conf", NULL, 0), -ENOENT);
    config_free(&before);
    config_free(&c);
}

/* Every key of the file is valid but one: nothing of it may stick. */
static void test_failed_load_keeps_struct(void)
{
    struct config c, before;
    char path[256], err[1024];
    char *db;

    config_defaults(&c);
    CHECK_INT(load_text(&c, "[daemon]\ndatabase = /first.db\ncontrol_group = ops\n", path, err), 0);
    REQUIRE(config_copy(&before, &c) == 0);
    db = c.database;
    CHECK_INT(load_text(&c,
                        "[daemon]\ndatabase = /second.db\ncontrol_group =\nmax_clients = 3\n"
                        "[logout]\nurl = https://other.example/\nconcurrency = 2\ntimeout = 2h\n",
                        path, err),
              -EINVAL);
    CHECK(config_same(&c, &before));
    CHECK(c.database == db); /* not even reallocated */
    CHECK_STR(c.database, "/first.db");
    CHECK_STR(c.control_group, "ops");
    config_free(&before);
    config_free(&c);
}

static void test_copy(void)
{
    struct config a, b;

    config_defaults(&a);
    a.ca_file = strdup("/ca.pem");
    REQUIRE(a.ca_file);
    REQUIRE(config_copy(&b, &a) == 0);
    CHECK(config_same(&a, &b));
    CHECK(a.database != b.database);
    CHECK(a.ca_file != b.ca_file);
    CHECK(b.control_group == NULL);
    config_free(&a);
    CHECK_STR(b.database, "/var/lib/revokerd/revokerd.db");
    CHECK_STR(b.ca_file, "/ca.pem");
    config_free(&b);
}

struct duration_case {
    const char *text;
    int ret;
    uint64_t ms;
};

static const struct duration_case duration_cases[] = {
    {"50ms", 0, 50},
    {"2s", 0, 2000},
    {"15min", 0, 900000},
    {"1h", 0, 3600000},
    {"1h 30min", 0, 5400000},
    {"1h30min", 0, 5400000},
    {"1.5s", 0, 1500},
    {"1.5h", 0, 5400000},
    {"1.25min", 0, 75000},
    {"0.001s", 0, 1},
    {"5", 0, 5000},
    {"0", 0, 0},
    {"0s", 0, 0},
    {" 3s ", 0, 3000},
    {"2 s", 0, 2000},
    {"1 week 2 days", 0, 9 * 86400000ULL},
    {"1w", 0, 604800000},
    {"1weeks", 0, 604800000},
    {"1d", 0, 86400000},
    {"1day", 0, 86400000},
    {"3 hours", 0, 3 * 3600000},
    {"1hr", 0, 3600000},
    {"1hour", 0, 3600000},
    {"1m", 0, 60000},
    {"1minute", 0, 60000},
    {"2minutes", 0, 120000},
    {"10sec", 0, 10000},
    {"1second", 0, 1000},
    {"2seconds", 0, 2000},
    {"7msec", 0, 7},
    {"1000us", 0, 1},
    {"1000usec", 0, 1},
    {"1us", 0, 1},       /* rounded up: never 0 for a non-zero span */
    {"1500us", 0, 2},
    {"1.000001s", 0, 1001},
    {"1.0000001s", 0, 1000}, /* below a microsecond is dropped, as systemd does */
    {"1s 500ms", 0, 1500},
    {"1h 1", 0, 3601000}, /* a bare component is seconds */
    {"18446744073709551615us", 0, 18446744073709552ULL},
    {"30000000w", 0, 18144000000000000ULL},
    /* invalid */
    {"", -EINVAL, 0},
    {" ", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"ms", -EINVAL, 0},
    {"-1s", -EINVAL, 0},
    {"+1s", -EINVAL, 0},
    {"5x", -EINVAL, 0},
    {"5S", -EINVAL, 0},
    {"5secs", -EINVAL, 0},
    {"5 s s", -EINVAL, 0},
    {"1.s", -EINVAL, 0},
    {".5s", -EINVAL, 0},
    {"1..5s", -EINVAL, 0},
    {"1,5s", -EINVAL, 0},
    {"5s,", -EINVAL, 0},
    {"1h-30min", -EINVAL, 0},
    {"0x10", -EINVAL, 0},
    {"infinity", -EINVAL, 0},
    {"1e3", -EINVAL, 0},
    /* overflow */
    {"18446744073709551616us", -EINVAL, 0},
    {"99999999999999999999999", -EINVAL, 0},
    {"18446744073709551615ms", -EINVAL, 0},
    {"31000000w", -EINVAL, 0},
    {"18446744073709551615us 1us", -EINVAL, 0},
    {"18446744073709551615.5ms", -EINVAL, 0},
};

static void test_durations(void)
{
    for (size_t i = 0; i < sizeof(duration_cases) / sizeof(duration_cases[0]); i++) {
        const struct duration_case *d = &duration_cases[i];
        uint64_t ms = 12345;
        int r = config_parse_duration(d->text, &ms);

        if (r != d->ret || (r == 0 && ms != d->ms) || (r < 0 && ms != 12345)) {
            fprintf(stderr, "duration \"%s\": got %d, %" PRIu64 "; expected %d, %" PRIu64 "\n", d->text, r, ms,
                    d->ret, d->ms);
            unit_failures++;
        }
    }
    CHECK_INT(config_parse_duration(NULL, &(uint64_t){0}), -EINVAL);
}

static void test_format_duration(void)
{
    static const struct {
        uint64_t ms;
        const char *text;
    } cases[] = {
        {0, "0"},
        {1, "1ms"},
        {250, "250ms"},
        {1000, "1s"},
        {2500, "2s 500ms"},
        {60000, "1min"},
        {900000, "15min"},
        {3600000, "1h"},
        {5400000, "1h 30min"},
        {90061001, "1d 1h 1min 1s 1ms"},
        {30ULL * 86400000, "30d"},
        {18446744073709551615ULL, "213503982334d 14h 25min 51s 615ms"},
    };
    char buf[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t back = 0;

        config_format_duration(cases[i].ms, buf, sizeof(buf));
        CHECK_STR(buf, cases[i].text);
        /* what we print, we parse back */
        if (cases[i].ms < 18446744073709551ULL) {
            CHECK_INT(config_parse_duration(buf, &back), 0);
            CHECK_INT(back, cases[i].ms);
        }
    }
    /* a small buffer is cut, not overrun */
    memset(buf, 'X', sizeof(buf));
    config_format_duration(5400000, buf, 4);
    CHECK_STR(buf, "1h ");
    CHECK(buf[4] == 'X');
    config_format_duration(1, NULL, 0);
}

struct url_case {
    const char *url;
    int ret;
    const char *err; /* exact, for refusals */
};

static const struct url_case url_cases[] = {
    {"https://api.loyalty.dog/v2/token/logout", 0, NULL},
    {"https://10.0.0.1:8443/x", 0, NULL},
    {"HTTPS://API.EXAMPLE.COM/x", 0, NULL},
    {"http://127.0.0.1:8080/v2/token/logout", 0, NULL},
    {"http://127.9.8.7/x", 0, NULL},
    {"http://127.1/x", 0, NULL}, /* curl reads it as 127.0.0.1 */
    {"http://localhost/x", 0, NULL},
    {"http://LOCALHOST:1/x", 0, NULL},
    {"http://[::1]/x", 0, NULL},
    {"http://[::1]:8080/x", 0, NULL},
    {"http://[::ffff:127.0.0.1]/x", 0, NULL},
    {"http://example.com/v2/token/logout", -EINVAL,
     "plain http:// is refused for host \"example.com\": a bearer token must not cross a network in clear text; "
     "use https:// or a loopback host (localhost, 127.0.0.0/8, ::1)"},
    {"http://128.0.0.1/x", -EINVAL,
     "plain http:// is refused for host \"128.0.0.1\": a bearer token must not cross a network in clear text; "
     "use https:// or a loopback host (localhost, 127.0.0.0/8, ::1)"},
    {"http://10.0.0.1/x", -EINVAL, NULL},
    {"http://localhost.example.com/x", -EINVAL, NULL},
    {"http://127.0.0.1.nip.io/x", -EINVAL, NULL},
    {"http://[::2]/x", -EINVAL, NULL},
    {"http://[::ffff:10.0.0.1]/x", -EINVAL, NULL},
    {"ftp://example.com/x", -EINVAL,
     "scheme \"ftp\" is not supported (expected https://, or http:// for a loopback host)"},
    {"file:///etc/passwd", -EINVAL,
     "scheme \"file\" is not supported (expected https://, or http:// for a loopback host)"},
    {"gopher://x/", -EINVAL, NULL},
    {"garbage", -EINVAL, "not a valid URL: Bad scheme (CURLUcode 27) (expected https://HOST/PATH)"},
    {"https://", -EINVAL, NULL},
    {"https://a b/", -EINVAL, NULL},
    {"", -EINVAL, "no URL (expected https://HOST/PATH)"},
    {"https://user:secretpw@api.example.com/x", -EINVAL,
     "the URL holds a user name or password, which would show in logs (expected https://HOST/PATH; a client "
     "credential goes through credential_header)"},
};

/* revokerd installs config_check_url; without a check (revokerctl) only an
 * empty URL is refused. The other cases run with the check installed. */
static void test_url_check_installed(void)
{
    struct config c;
    char err[512];

    config_defaults(&c);
    free(c.url);
    c.url = strdup("ftp://example.com/x");
    REQUIRE(c.url);
    config_set_url_check(NULL);
    CHECK_INT(config_validate(&c, err, sizeof(err)), 0);
    free(c.url);
    c.url = strdup("");
    REQUIRE(c.url);
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    free(c.url);
    c.url = strdup("ftp://example.com/x");
    REQUIRE(c.url);
    config_set_url_check(config_check_url);
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "[logout] url: scheme \"ftp\" is not supported (expected https://, or http:// for a "
                   "loopback host)");
    config_free(&c);
}

static void test_urls(void)
{
    for (size_t i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
        char err[512] = "";
        int r = config_check_url(url_cases[i].url, err, sizeof(err));

        if (r != url_cases[i].ret) {
            fprintf(stderr, "url \"%s\": got %d (%s), expected %d\n", url_cases[i].url, r, err,
                    url_cases[i].ret);
            unit_failures++;
        }
        if (r < 0)
            CHECK(err[0] != '\0');
        if (url_cases[i].err)
            CHECK_STR(err, url_cases[i].err);
        CHECK(!strstr(err, "secretpw")); /* the URL is never echoed */
    }
    CHECK_INT(config_check_url(NULL, NULL, 0), -EINVAL);
}

static void test_validate(void)
{
    struct config c;
    char err[1024];

    config_defaults(&c);
    c.retry_base_ms = 2000;
    c.retry_max_delay_ms = 1500;
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "[retry] max_delay: 1s 500ms is shorter than [retry] base 2s (expected max_delay >= base)");
    c.retry_max_delay_ms = 2000; /* equal is fine */
    CHECK_INT(config_validate(&c, err, sizeof(err)), 0);

    /* a --url override is checked here */
    free(c.url);
    c.url = strdup("http://example.com/x");
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_PREFIX(err, "[logout] url: plain http:// is refused for host \"example.com\"");
    free(c.url);
    c.url = NULL;
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "[logout] url: not set (expected https://HOST/PATH)");
    c.url = strdup("http://localhost:1/x");

    c.credential_header = strdup("Bad Header");
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_PREFIX(err, "[logout] credential_header: \"Bad Header\" is not an HTTP header name");
    free(c.credential_header);
    c.credential_header = strdup("Authorization");
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_PREFIX(err, "[logout] credential_header: Authorization carries the bearer token");
    free(c.credential_header);
    c.credential_header = strdup("X-Api-Key");
    CHECK_INT(config_validate(&c, err, sizeof(err)), 0);

    free(c.database);
    c.database = strdup("");
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "[daemon] database: not set (expected a path)");
    free(c.database);
    c.database = NULL;
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    c.database = strdup("/x.db");

    c.concurrency = 0;
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "[logout] concurrency: 0 is out of range (expected a whole number from 1 to 1024)");
    c.concurrency = 16;
    c.timeout_ms = 0;
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "[logout] timeout: 0 is out of range (expected a time span from 1ms to 1h)");
    c.timeout_ms = 1;
    c.log_level = 9;
    CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK_PREFIX(err, "[daemon] log_level: 9 is not a log level");
    c.log_level = LOG_DEBUG;
    CHECK_INT(config_validate(&c, err, sizeof(err)), 0);
    CHECK_INT(config_validate(&c, NULL, 0), 0);
    config_free(&c);
}

/* ---- the key table (config-keys.h), row by row ---- */

struct row {
    const char *section, *name, *type, *def;
    size_t offset;
    uint64_t min, max;
    const char *what;
};

#define ROW(sec, nm, ty, member, def, lo, hi, what) {sec, nm, #ty, def, offsetof(struct config, member), lo, hi, what},
static const struct row rows[] = {CONFIG_KEYS(ROW)};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static bool row_is(const struct row *r, const char *type)
{
    return strcmp(r->type, type) == 0;
}

/* A time span: DURATION, or KEEP (a DURATION whose empty value is 0). */
static bool is_span(const struct row *r)
{
    return row_is(r, "DURATION") || row_is(r, "KEEP");
}

static uint64_t member_u64(const struct row *r, const struct config *c)
{
    const char *p = (const char *)c + r->offset;

    return row_is(r, "UINT") ? *(const unsigned *)(const void *)p : *(const uint64_t *)(const void *)p;
}

static void set_member(const struct row *r, struct config *c, uint64_t v)
{
    char *p = (char *)c + r->offset;

    if (row_is(r, "UINT"))
        *(unsigned *)(void *)p = (unsigned)v;
    else
        *(uint64_t *)(void *)p = v;
}

/* Gives r's member another value than it has. */
static void perturb(const struct row *r, struct config *c)
{
    char *p = (char *)c + r->offset;

    if (row_is(r, "UINT") || is_span(r)) {
        set_member(r, c, member_u64(r, c) + 1);
    } else if (row_is(r, "BOOL")) {
        *(bool *)(void *)p = !*(bool *)(void *)p;
    } else if (row_is(r, "LOG_LEVEL")) {
        *(int *)(void *)p = *(int *)(void *)p == LOG_CRIT ? LOG_DEBUG : *(int *)(void *)p - 1;
    } else {
        char **sp = (char **)(void *)p;
        char *other = strdup(*sp && strcmp(*sp, "other") == 0 ? "another" : "other");

        REQUIRE(other);
        free(*sp);
        *sp = other;
    }
}

/* What config_print writes for the defaults, made from the rows alone. */
static void expected_print(char *buf, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < N_ROWS; i++) {
        if (i == 0 || strcmp(rows[i].section, rows[i - 1].section) != 0)
            o += (size_t)snprintf(buf + o, len - o, "%s[%s]\n", i ? "\n" : "", rows[i].section);
        o += (size_t)snprintf(buf + o, len - o, "%s = %s\n", rows[i].name, rows[i].def);
        REQUIRE(o < len);
    }
}

static char *print_to_string(const struct config *c)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);

    REQUIRE(f);
    config_print(f, c);
    REQUIRE(fclose(f) == 0);
    REQUIRE(text);
    return text;
}

/* Each key's default, as the table writes it, is what --check-config prints
 * and what the file means: "[s]\nkey = default" loads to the defaults. */
static void test_table_defaults(void)
{
    char expect[4096], text[512], path[256], err[1024];
    struct config d, c;
    char *printed;

    /* rows are grouped by section: config.c finds sections where the name changes */
    for (size_t i = 1; i < N_ROWS; i++)
        for (size_t j = 0; j + 1 < i; j++)
            if (strcmp(rows[i].section, rows[i - 1].section) != 0 && strcmp(rows[i].section, rows[j].section) == 0) {
                fprintf(stderr, "[%s] %s: its section's rows are not together\n", rows[i].section, rows[i].name);
                unit_failures++;
                break;
            }
    config_defaults(&d);
    CHECK_INT(config_validate(&d, err, sizeof(err)), 0);
    expected_print(expect, sizeof(expect));
    printed = print_to_string(&d);
    CHECK_STR(printed, expect);
    free(printed);
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct row *r = &rows[i];

        config_defaults(&c);
        perturb(r, &c); /* so that the default is seen to be set */
        snprintf(text, sizeof(text), "[%s]\n%s = %s\n", r->section, r->name, r->def);
        if (load_text(&c, text, path, err) != 0) {
            fprintf(stderr, "[%s] %s: the default \"%s\" is refused: %s\n", r->section, r->name, r->def, err);
            unit_failures++;
        }
        if (!config_same(&c, &d)) {
            fprintf(stderr, "[%s] %s: the default \"%s\" read from a file is not config_defaults()'s\n",
                    r->section, r->name, r->def);
            unit_failures++;
        }
        config_free(&c);
    }
    config_free(&d);
}

/* Loads "[s]\nkey = value" over the defaults; 0, or -EINVAL and in msg
 * (1024 bytes) what follows "FILE:2: ". */
static int load_one(const struct row *r, const char *value, struct config *c, char *msg)
{
    char text[512], path[256], all[1024];

    config_defaults(c);
    snprintf(text, sizeof(text), "[%s]\n%s = %s\n", r->section, r->name, value);
    if (load_text(c, text, path, all) == 0)
        return 0;
    REQUIRE(strstr(all, ":2: "));
    snprintf(msg, 1024, "%s", strstr(all, ":2: ") + 4);
    return -EINVAL;
}

/* Every limit of every number and time span: the bounds are taken, one
 * past them is refused with the table's range, by the file and by
 * config_validate (a value set by code). */
static void test_table_limits(void)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct row *r = &rows[i];
        bool uint = row_is(r, "UINT");
        char lo[64], hi[64], val[64], range[256], expect[1024], err[1024];
        uint64_t bounds[2] = {r->min, r->max}, outside[2] = {r->min - 1, r->max + 1};
        struct config c;

        if (!uint && !is_span(r))
            continue;
        CHECK(r->min <= r->max && r->max > 0);
        config_format_duration(r->min, lo, sizeof(lo));
        config_format_duration(r->max, hi, sizeof(hi));
        if (uint)
            snprintf(range, sizeof(range), "(expected a whole number from %" PRIu64 " to %" PRIu64 ")", r->min,
                     r->max);
        else
            snprintf(range, sizeof(range), "(expected a time span from %s to %s)", lo, hi);
        for (int b = 0; b < 2; b++) {
            if (uint)
                snprintf(val, sizeof(val), "%" PRIu64, bounds[b]);
            else
                config_format_duration(bounds[b], val, sizeof(val));
            if (load_one(r, val, &c, err) != 0) {
                fprintf(stderr, "[%s] %s = %s (a bound) refused: %s\n", r->section, r->name, val, err);
                unit_failures++;
            }
            CHECK_INT(member_u64(r, &c), bounds[b]);
            config_free(&c);
        }
        for (int b = 0; b < 2; b++) {
            if (b == 0 && r->min == 0)
                continue;
            if (uint)
                snprintf(val, sizeof(val), "%" PRIu64, outside[b]);
            else
                config_format_duration(outside[b], val, sizeof(val));
            CHECK_INT(load_one(r, val, &c, err), -EINVAL);
            if (uint)
                snprintf(expect, sizeof(expect), "[%s] %s: \"%s\" is out of range %s", r->section, r->name, val,
                         range);
            else
                snprintf(expect, sizeof(expect), "[%s] %s: %s is out of range %s", r->section, r->name, val, range);
            CHECK_STR(err, expect);
            config_free(&c);

            config_defaults(&c);
            /* max_delay >= base is checked after the limits */
            set_member(r, &c, outside[b]);
            CHECK_INT(config_validate(&c, err, sizeof(err)), -EINVAL);
            snprintf(expect, sizeof(expect), "[%s] %s: %s is out of range %s", r->section, r->name, val, range);
            CHECK_STR(err, expect);
            config_free(&c);
        }
    }
}

/* What --check-config prints is a file that reads back the same. */
static void test_print_reads_back(void)
{
    static const char text[] = "[daemon]\ndatabase = /srv/t.db\ncontrol_group = ops\nmax_clients = 7\n"
                               "client_idle = 1h 30min 250ms\nkeep_secrets = yes\nlog_level = debug\n"
                               "[logout]\nurl = http://127.0.0.1:9/x\ntimeout = 2.5s\nrate_limit = 9\n"
                               "ca_file = /ca.pem\ncredential_header = X-Key\n"
                               "[retry]\nmax_delay = 2d\nmax_attempts = 3\nretry_after_max = 0\n";
    struct config c, back;
    char path[256], err[1024];
    char *printed;

    config_defaults(&c);
    CHECK_INT(load_text(&c, text, path, err), 0);
    printed = print_to_string(&c);
    config_defaults(&back);
    CHECK_INT(load_text(&back, printed, path, err), 0);
    CHECK(config_same(&c, &back));
    CHECK(strstr(printed, "\nclient_idle = 1h 30min 250ms\n"));
    CHECK(strstr(printed, "\nkeep_secrets = true\n"));
    free(printed);
    /* and each member on its own makes a difference to config_equal */
    for (size_t i = 0; i < N_ROWS; i++) {
        config_free(&back);
        REQUIRE(config_copy(&back, &c) == 0);
        perturb(&rows[i], &back);
        if (config_same(&c, &back)) {
            fprintf(stderr, "[%s] %s: config_equal does not see a change\n", rows[i].section, rows[i].name);
            unit_failures++;
        }
    }
    config_free(&back);
    config_free(&c);
}

static FILE *open_source(const char *rel, char *path, size_t len)
{
    const char *root = getenv("SOURCE_ROOT");
    FILE *f;

    if (!root) {
        fprintf(stderr, "SOURCE_ROOT is not set (meson test sets it to the source tree)\n");
        exit(1);
    }
    snprintf(path, len, "%s/%s", root, rel);
    f = fopen(path, "re");
    REQUIRE(f);
    return f;
}

static const struct row *find_row(const char *section, const char *name, size_t n)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (section && strcmp(rows[i].section, section) == 0 && strlen(rows[i].name) == n &&
            strncmp(rows[i].name, name, n) == 0)
            return &rows[i];
    return NULL;
}

/* The shipped systemd/revokerd.conf shows every key of the table once, in
 * table order: "#key = default" commented out, or "key = value" set to
 * something else on purpose (control_group = revokerd). */
static void test_shipped_conf(void)
{
    char path[512], err[1024], section[64] = "";
    unsigned found[N_ROWS] = {0}, lineno = 0;
    size_t cap = 0, last = 0;
    char *line = NULL;
    bool any = false;
    struct config c;
    ssize_t n;
    FILE *f = open_source("systemd/revokerd.conf", path, sizeof(path));

    while ((n = getline(&line, &cap, f)) > 0) {
        const char *s = line, *value;
        const struct row *r;
        bool commented;
        size_t len;

        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '[') {
            snprintf(section, sizeof(section), "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            bool known = false;
            for (size_t i = 0; i < N_ROWS; i++)
                known = known || strcmp(rows[i].section, section) == 0;
            if (!known) {
                fprintf(stderr, "%s:%u: [%s] is not a section of the table\n", path, lineno, section);
                unit_failures++;
            }
            continue;
        }
        commented = *s == '#';
        s += commented;
        len = strspn(s, "abcdefghijklmnopqrstuvwxyz_");
        if (len == 0 || strncmp(s + len, " =", 2) != 0 || (s[len + 2] && s[len + 2] != ' '))
            continue; /* prose */
        value = s[len + 2] ? s + len + 3 : "";
        r = find_row(section, s, len);
        if (!r) {
            fprintf(stderr, "%s:%u: \"%.*s\" in [%s] is not in the table of config-keys.h\n", path, lineno, (int)len,
                    s, section);
            unit_failures++;
            continue;
        }
        size_t i = (size_t)(r - rows);
        if (found[i]) {
            fprintf(stderr, "%s:%u: [%s] %s again (first on line %u)\n", path, lineno, r->section, r->name, found[i]);
            unit_failures++;
        }
        if (any && i < last) {
            fprintf(stderr, "%s:%u: [%s] %s is out of the table's order\n", path, lineno, r->section, r->name);
            unit_failures++;
        }
        found[i] = lineno;
        last = i;
        any = true;
        if (commented && strcmp(value, r->def) != 0) {
            fprintf(stderr, "%s:%u: [%s] %s: shows \"%s\", the table's default is \"%s\"\n", path, lineno, r->section,
                    r->name, value, r->def);
            unit_failures++;
        }
        if (!commented && strcmp(value, r->def) == 0) {
            fprintf(stderr, "%s:%u: [%s] %s is set to its default: comment it out\n", path, lineno, r->section,
                    r->name);
            unit_failures++;
        }
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < N_ROWS; i++) {
        if (!found[i]) {
            fprintf(stderr, "%s: [%s] %s is missing (expected a line \"#%s =%s%s\" with a comment above it)\n",
                    path, rows[i].section, rows[i].name, rows[i].name, rows[i].def[0] ? " " : "", rows[i].def);
            unit_failures++;
        }
    }
    config_defaults(&c);
    CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
    CHECK_INT(config_validate(&c, err, sizeof(err)), 0);
    config_free(&c);
}

/* The words of an scdoc paragraph without its markup: no '*' (bold), an
 * escaped character as itself, no '_' that opens or closes an underline,
 * one space for any run of blanks. */
static void plain_words(const char *s, char *out, size_t outlen)
{
    size_t o = 0;

    for (const char *p = s; *p && o + 1 < outlen; p++) {
        bool alnum_before = p > s && isalnum((unsigned char)p[-1]);
        bool alnum_after = isalnum((unsigned char)p[1]);

        if (*p == '\\' && p[1]) {
            out[o++] = *++p;
            continue;
        }
        if (*p == '*' || (*p == '_' && !(alnum_before && alnum_after)))
            continue;
        if (isspace((unsigned char)*p)) {
            if (o > 0 && out[o - 1] != ' ')
                out[o++] = ' ';
            continue;
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

/* revokerd.conf(5)'s KEYS (doc/revokerd.conf.5.scd): one entry per key of
 * the table, in its order, under its section: "*name* = default (lo to hi)"
 * with the range of a UINT or DURATION, and a paragraph that says the
 * table's description (its `code` marks left out, any case). */
static void check_key_entry(const char *path, const struct row *r, const char *head, const char *para)
{
    char expect[1024], lo[64], hi[64], range[160] = "", what[512], words[4096];
    size_t o = 0;

    if (row_is(r, "UINT"))
        snprintf(range, sizeof(range), " (%" PRIu64 " to %" PRIu64 ")", r->min, r->max);
    if (is_span(r)) {
        config_format_duration(r->min, lo, sizeof(lo));
        config_format_duration(r->max, hi, sizeof(hi));
        snprintf(range, sizeof(range), " (%s to %s)", lo, hi);
    }
    snprintf(expect, sizeof(expect), "*%s* =%s%s%s", r->name, r->def[0] ? " " : "", r->def, range);
    if (strcmp(head, expect) != 0) {
        fprintf(stderr, "%s: the entry of [%s] %s is\n  %s\nexpected\n  %s\n", path, r->section, r->name, head,
                expect);
        unit_failures++;
    }
    for (const char *p = r->what; *p && o + 1 < sizeof(what); p++)
        if (*p != '`')
            what[o++] = *p;
    what[o] = '\0';
    plain_words(para, words, sizeof(words));
    if (!strcasestr(words, what)) {
        fprintf(stderr, "%s: the entry of [%s] %s does not say the table's description\n  %s\nit says\n  %s\n",
                path, r->section, r->name, what, words);
        unit_failures++;
    }
}

static void test_man_keys(void)
{
    char path[512], section[64] = "", head[1024] = "", para[4096] = "";
    size_t cap = 0, i = 0;
    char *line = NULL;
    bool in_keys = false;
    const struct row *r = NULL;
    FILE *f = open_source("doc/revokerd.conf.5.scd", path, sizeof(path));

    for (bool more = true; more;) {
        more = getline(&line, &cap, f) > 0;
        if (!more)
            line[0] = '\0';
        line[strcspn(line, "\n")] = '\0';
        /* an entry ends at the first line that is not its paragraph */
        if (r && line[0] != '\t') {
            check_key_entry(path, r, head, para);
            r = NULL;
        }
        if (r) {
            strncat(para, line, sizeof(para) - strlen(para) - 2);
            strcat(para, " ");
            continue;
        }
        if (strncmp(line, "# ", 2) == 0)
            in_keys = strcmp(line, "# KEYS") == 0;
        if (!in_keys)
            continue;
        if (sscanf(line, "## [%63[a-z]]", section) == 1)
            continue;
        if (line[0] != '*' || !strstr(line, "* ="))
            continue;
        if (i == N_ROWS || strcmp(section, rows[i].section) != 0 ||
            strncmp(line + 1, rows[i].name, strlen(rows[i].name)) != 0 || line[1 + strlen(rows[i].name)] != '*') {
            fprintf(stderr, "%s: [%s] %s: expected the entry of [%s] %s\n", path, section, line,
                    i < N_ROWS ? rows[i].section : "-", i < N_ROWS ? rows[i].name : "(none: the table ends)");
            unit_failures++;
            break;
        }
        r = &rows[i++];
        snprintf(head, sizeof(head), "%s", line);
        para[0] = '\0';
    }
    for (; i < N_ROWS; i++) {
        fprintf(stderr, "%s: no entry for [%s] %s\n", path, rows[i].section, rows[i].name);
        unit_failures++;
    }
    free(line);
    fclose(f);
}

static void test_cleanup(void)
{
    cleanup_dir();
    CHECK(access(dir, F_OK) < 0);
}

TEST_MAIN(CASE(test_url_check_installed), CASE(test_defaults), CASE(test_example_file), CASE(test_good_values), CASE(test_bad_values),
          CASE(test_file_errors), CASE(test_syntax_accepted), CASE(test_overlay), CASE(test_long_line),
          CASE(test_nul_byte), CASE(test_missing_and_unreadable), CASE(test_failed_load_keeps_struct),
          CASE(test_copy), CASE(test_durations), CASE(test_format_duration), CASE(test_urls), CASE(test_validate),
          CASE(test_table_defaults), CASE(test_table_limits), CASE(test_print_reads_back), CASE(test_shipped_conf),
          CASE(test_man_keys), CASE(test_cleanup))

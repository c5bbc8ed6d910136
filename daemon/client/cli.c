/* cli: the options every command takes, the config file behind them, and
 * the messages on stderr. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"

#define CLI_SHORT "c:s:d:jt:h"

static void verror(const char *fmt, va_list ap)
{
    fputs("revokerctl: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* The daemon's config file gives the defaults for --socket and --database.
 * Without --config a missing or unreadable default file means built-in
 * defaults (a user outside the daemon's group cannot read it). */
static int load_config(struct cli *c)
{
    char msg[512] = "";
    const char *path = c->config_path ? c->config_path : REVOKERD_DEFAULT_CONFIG;

    if (c->cfg_loaded)
        return 0;
    config_defaults(&c->cfg);
    c->cfg_loaded = true;
    if (!c->config_path && access(path, R_OK) != 0)
        return 0;
    int r = config_load(&c->cfg, path, msg, sizeof(msg));
    if (r == -ENOENT && !c->config_path)
        return 0;
    if (r < 0) {
        cli_error("%s", msg[0] ? msg : strerror(-r));
        return r;
    }
    return 0;
}

/* ---- exported ---- */

void cli_init(struct cli *c)
{
    *c = (struct cli){.timeout_ms = CLI_DEFAULT_TIMEOUT_MS};
}

void cli_free(struct cli *c)
{
    if (c->cfg_loaded)
        config_free(&c->cfg);
    c->cfg_loaded = false;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nTry 'revokerctl help %s'.\n", cmd);
    else
        fputs("\nTry 'revokerctl --help'.\n", stderr);
    return EXIT_USAGE;
}

int cli_next_option(struct cli *c, const char *cmd, int argc, char **argv, const struct option *opts,
                    int *ret_opt)
{
    /* '+' before the command: stop at its name, its options are its own. */
    const char *shortopts = cmd ? ":" CLI_SHORT : "+:" CLI_SHORT;
    uint64_t ms;
    int opt;

    for (;;) {
        opt = getopt_long(argc, argv, shortopts, opts, NULL);
        switch (opt) {
        case 'c': c->config_path = optarg; continue;
        case 's': c->socket = optarg; continue;
        case 'd': c->database = optarg; continue;
        case 'j': c->json = true; continue;
        case 't':
            if (config_parse_duration(optarg, &ms) < 0 || ms == 0) {
                cli_usage_error(cmd, "invalid --timeout '%s' (a span such as 5s or 500ms)", optarg);
                return -EINVAL;
            }
            c->timeout_ms = ms;
            continue;
        case ':':
            cli_usage_error(cmd, "option '%s' needs an argument", argv[optind - 1]);
            return -EINVAL;
        case '?':
            cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
            return -EINVAL;
        default:
            *ret_opt = opt;
            return 0;
        }
    }
}

int cli_parse_id(const char *s, int64_t *ret_id)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -EINVAL;
    *ret_id = v;
    return 0;
}

int cli_socket(struct cli *c, const char **ret_path)
{
    if (!c->socket) {
        int r = load_config(c);
        if (r < 0)
            return r;
        c->socket = c->cfg.socket ? c->cfg.socket : CLI_DEFAULT_SOCKET;
    }
    *ret_path = c->socket;
    return 0;
}

int cli_database(struct cli *c, const char **ret_path)
{
    if (!c->database) {
        int r = load_config(c);
        if (r < 0)
            return r;
        c->database = c->cfg.database;
    }
    *ret_path = c->database;
    return 0;
}

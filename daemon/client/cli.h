/* cli: what every revokerctl command shares.
 *
 * The options that may stand anywhere on the line (--config, --socket,
 * --database, --json, --timeout, --help), the daemon's configuration file
 * they default from, the command table's entry, and how problems are told
 * on stderr. Lifecycle: main() sets up a struct cli (cli_init) and reads the
 * options before the command into it, the command reads the rest with
 * cli_next_option, main() frees it (cli_free). The config file is read once,
 * when a command first needs the socket or the database path.
 *
 * The modules under the commands (cli, call, timearg, token_stdin) return 0
 * or -errno; the command files (socket_cmds, audit_cmd, main.c) turn that
 * into a message and an exit status, cli_usage_error being their shorthand
 * for a usage error. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <sysexits.h>

#include "config.h"

/* Exit statuses (the man page's EXIT STATUS). */
#define EXIT_ANSWERED_ERROR 1 /* the daemon said no; a damaged audit log; the database cannot be read */
#define EXIT_USAGE 2          /* unknown command or option, bad argument, bad config file */
#define EXIT_UNREACHABLE EX_UNAVAILABLE /* 69: the daemon cannot be reached */

#define CLI_DEFAULT_SOCKET "/run/revokerd.sock"
#define CLI_DEFAULT_TIMEOUT_MS 10000

struct cli {
    const char *config_path; /* --config; NULL: REVOKERD_DEFAULT_CONFIG if readable */
    const char *socket;      /* --socket, or from the config */
    const char *database;    /* --database, or from the config */
    bool json;               /* --json */
    uint64_t timeout_ms;     /* --timeout */
    struct config cfg;
    bool cfg_loaded;
};

/* One command: `revokerctl NAME ARGS...` calls run(cli, argc, argv) with
 * argv[0] == NAME; it returns the exit status. */
struct command {
    const char *name;
    const char *summary; /* one line in `revokerctl --help` */
    const char *help;    /* `revokerctl help NAME`, `revokerctl NAME --help` */
    int (*run)(struct cli *c, int argc, char **argv);
};

/* The options every command takes: first in each command's getopt table. */
#define CLI_OPTIONS                                                                        \
    {"config", required_argument, NULL, 'c'}, {"socket", required_argument, NULL, 's'},    \
    {"database", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},          \
    {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}

void cli_init(struct cli *c);
void cli_free(struct cli *c);

/* "revokerctl: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, then "Try 'revokerctl help CMD'." (cmd NULL: "--help"). Returns
 * EXIT_USAGE, for a command's `return cli_usage_error(...)`. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The next option of command cmd (NULL: the options before the command,
 * where parsing stops at the command's name) that is not one of CLI_OPTIONS
 * (those are stored in c): 0 with *ret_opt its code ('h' for --help), or
 * with *ret_opt = -1 after the last option, as getopt (optind is then at the
 * first argument); -EINVAL after telling a usage error: an unknown option, a
 * missing argument, a bad --timeout. */
int cli_next_option(struct cli *c, const char *cmd, int argc, char **argv, const struct option *opts,
                    int *ret_opt);

/* A token or row id: a positive decimal integer. 0 or -EINVAL. */
int cli_parse_id(const char *s, int64_t *ret_id);

/* The control socket: --socket, else daemon.socket from the config file,
 * else CLI_DEFAULT_SOCKET. 0, or -errno after telling why the config file
 * cannot be used. */
int cli_socket(struct cli *c, const char **ret_path);
/* The database: --database, else daemon.database from the config file;
 * *ret_path is NULL if neither names one. 0, or -errno as cli_socket. */
int cli_database(struct cli *c, const char **ret_path);

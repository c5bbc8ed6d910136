/* revokerctl: the command-line client of revokerd.
 *
 * Every command but `audit` sends one request over the control socket and
 * prints its reply (socket_cmds); `audit` reads the database directly,
 * read-only, so it works while the daemon is down (audit_cmd). This file
 * holds the command table, the options before the command, and the short
 * --help; the manual is doc/revokerctl.1.scd. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "audit_cmd.h"
#include "build-config.h"
#include "cli.h"
#include "queue_cmds.h"
#include "secret.h"
#include "socket_cmds.h"
#include "util.h"

enum { OPT_VERSION = 256 };

static int help_run(struct cli *c, int argc, char **argv);

static const struct command help_cmd = {
    "help", "this text, or a command's own (also: revokerctl COMMAND --help)", NULL, help_run,
};

static const struct command *const commands[] = {
    &socket_cmd_revoke,  &socket_cmd_track,  &socket_cmd_status,  &socket_cmd_retry, &socket_cmd_hold,
    &socket_cmd_release, &socket_cmd_drop,   &socket_cmd_stats,   &socket_cmd_metrics, &socket_cmd_ping,
    &queue_cmd,          &shape_cmd,         &audit_cmd,          &help_cmd,
};

static const char usage[] =
    "Usage: revokerctl [OPTIONS] COMMAND [ARGS...]\n"
    "       revokerctl help [COMMAND]\n";

static const char options_help[] =
    "Options (before or after the command):\n"
    "  -c, --config FILE    the daemon's configuration, for daemon.socket and daemon.database\n"
    "                       (default " REVOKERD_DEFAULT_CONFIG ")\n"
    "  -s, --socket PATH    the control socket\n"
    "  -d, --database PATH  the database, for audit\n"
    "  -j, --json           print the daemon's JSON reply as it came\n"
    "  -t, --timeout SPAN   how long to wait for the daemon (default 10s)\n"
    "  -h, --help           this text; --version prints the version\n";

static void print_help(void)
{
    fputs(usage, stdout);
    fputs("\nControl revokerd, the session-token revocation daemon.\n\nCommands:\n", stdout);
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        printf("  %-8s %s\n", commands[i]->name, commands[i]->summary);
    putchar('\n');
    fputs(options_help, stdout);
    fputs("\nSee revokerctl(1).\n", stdout);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static int help_run(struct cli *c, int argc, char **argv)
{
    const struct command *cmd = argc < 2 ? &help_cmd : find_command(argv[1]);

    (void)c;
    if (!cmd)
        return cli_usage_error(NULL, "no command '%s'", argv[1]);
    if (cmd->help)
        fputs(cmd->help, stdout);
    else
        print_help(); /* help's own help is this */
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS, {"version", no_argument, NULL, OPT_VERSION}, {NULL, 0, NULL, 0}};
    struct cli c;
    int opt, r;

    secret_wipe_json();
    cli_init(&c);
    opterr = 0;
    while ((r = cli_next_option(&c, NULL, argc, argv, opts, &opt)) == 0 && opt != -1) {
        switch (opt) {
        case 'h': print_help(); return 0;
        case OPT_VERSION: printf("revokerctl %s\n", REVOKERD_VERSION); return 0;
        }
    }
    if (r < 0)
        return EXIT_USAGE;
    if (optind >= argc) {
        fputs(usage, stderr);
        fputs("Try 'revokerctl --help'.\n", stderr);
        return EXIT_USAGE;
    }
    const struct command *cmd = find_command(argv[optind]);
    if (!cmd)
        return cli_usage_error(NULL,
                               "unknown command '%s' (revoke, track, status, retry, hold, release, drop, "
                               "stats, metrics, ping, queue, shape, audit, help)",
                               argv[optind]);
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0; /* glibc: start over on the command's arguments */
    r = cmd->run(&c, sub_argc, sub_argv);
    if (fflush(stdout) != 0 && r == 0) {
        cli_error("cannot write the output: %s", strerror(errno));
        r = EXIT_ANSWERED_ERROR;
    }
    cli_free(&c);
    return r;
}

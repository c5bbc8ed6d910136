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
#include "secret.h"
#include "socket_cmds.h"

enum { OPT_VERSION = 256 };

static int help_run(struct cli *c, int argc, char **argv);

static const struct command help_cmd = {
    "help", "this text, or a command's own (also: revokerctl COMMAND --help)", NULL, help_run,
};

static const struct command *const commands[] = {
    &socket_cmd_revoke, &socket_cmd_status, &socket_cmd_retry, &socket_cmd_stats,
    &socket_cmd_ping, &audit_cmd, &help_cmd,
};

static const char usage[] =
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

static void print_help(void)
{
    fputs(help_main, stdout);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
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
        return cli_usage_error(NULL, "unknown command '%s' (revoke, status, retry, stats, ping, "
                                     "audit, help)", argv[optind]);
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

/* socket_cmds: the commands that ask revokerd over its control socket:
 * revoke, track, status, retry, hold, release, drop, stats, metrics and ping. Each sends one request and prints
 * the reply, in human form or, with --json, as it came. Exit status 0, 1
 * when the daemon answered an error, 2 for a usage error, 69 when the daemon
 * cannot be reached. */
#pragma once

#include "cli.h"

extern const struct command socket_cmd_revoke;
extern const struct command socket_cmd_track;
extern const struct command socket_cmd_status;
extern const struct command socket_cmd_retry;
extern const struct command socket_cmd_hold;
extern const struct command socket_cmd_release;
extern const struct command socket_cmd_drop;
extern const struct command socket_cmd_stats;
extern const struct command socket_cmd_metrics;
extern const struct command socket_cmd_ping;

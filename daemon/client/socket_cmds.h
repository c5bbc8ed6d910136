/* socket_cmds: the commands that ask revokerd over its control socket:
 * revoke, track, status, retry, hold, release, drop, stats, metrics and ping. Each sends one request and prints
 * the reply, in human form or, with --json, as it came. Exit status 0, 1
 * when the daemon answered an error, 2 for a usage error, 69 when the daemon
 * cannot be reached. */
#pragma once

#include <jansson.h>

#include "call.h"
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

/* For the commands of other files (queue_cmds): one request and its reply,
 * 0 with *ret or the exit status after saying what failed; and a reply's
 * ISO time field in local time ("-" without one). */
int socket_cmds_ask(struct cli *c, json_t *req, struct call_reply *ret);
void socket_cmds_local_time(json_t *o, const char *key, char *buf, size_t len);

/* queue_cmds: `revokerctl queue` and `revokerctl shape`, the operator's
 * views of the work waiting, read through the daemon (socket ops queue and
 * shape). queue pages through the daemon, a page per request, until its
 * --limit; shape is one request. Human output by default, with --json one
 * object per line (a token each for queue; the reply for shape). Exit
 * status as socket_cmds. */
#pragma once

#include "cli.h"

/* Rows revokerctl asks for per request: a page costs the daemon's loop a
 * few milliseconds (QUEUE_PAGE_MAX, 1000, is the most it answers). */
#define QUEUE_CMDS_PAGE 500

extern const struct command queue_cmd;
extern const struct command shape_cmd;

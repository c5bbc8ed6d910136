/* proto: the control socket's requests, one JSON object per line (jansson).
 *
 * proto_handle() parses one line, runs the request against the database
 * (short transactions on the loop) and returns the reply line. It never
 * fails silently: every bad input gets {"ok":false,"error":"..."} that says
 * what was wrong (and, for invalid JSON, where). A revoke's ok:true is built
 * only after its rows are committed. The fuzz target calls it directly. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "metrics.h"
#include "revoke.h"
#include "store.h"

#define PROTO_MAX_LINE (64 * 1024)

struct proto_env {
    struct store *store;
    struct revoke *revoke;     /* NULL in tests: no kick, stats without the engine */
    uint64_t started_ms;       /* for uptime: uv_now at start */
    uint64_t (*uptime_ms)(const struct proto_env *env); /* NULL: 0 */
    /* 0 while the database path still names the file that is open; a
     * negative errno once it was removed or replaced (see dbfile.h). Asked
     * before and after every write. NULL: always 0. */
    int (*file_check)(const struct proto_env *env);
    struct metrics *metrics;   /* NULL: the metrics op answers an error */
};

/* Returns a malloc'd reply without the trailing newline, or NULL on ENOMEM. */
char *proto_handle(const struct proto_env *env, const char *line, size_t len);
/* The same from a peer whose uid the socket read (SO_PEERCRED): the audit
 * rows of hold, release and drop name it. proto_handle() is "uid ?". */
char *proto_handle_as(const struct proto_env *env, uid_t uid, const char *line, size_t len);
/* A reply for errors found before parsing (line too long, ...). */
char *proto_error(const char *message);

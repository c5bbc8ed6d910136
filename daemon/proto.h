/* proto: the control socket's requests, one JSON object per line (jansson).
 *
 * proto_handle() parses one line, runs the request against the database
 * (short transactions on the loop) and returns the reply line. It never
 * fails silently: every bad input gets {"ok":false,"error":"..."} that says
 * what was wrong (and, for invalid JSON, where). A revoke's ok:true is built
 * only after its rows are committed. The fuzz target calls it directly. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "metrics.h"
#include "queue.h"
#include "revoke.h"
#include "store.h"

#define PROTO_MAX_LINE (64 * 1024)

struct bulk;

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
    struct queue *queue;       /* NULL: shape counts on the calling thread (tests, fuzz) */
    /* hold and release by subject or all, revoke by subject: in parts on
     * the loop (bulk.h), when the caller takes a later reply; NULL: whole,
     * on the calling thread (tests, fuzz). */
    struct bulk *bulk;
};

/* Returns a malloc'd reply without the trailing newline, or NULL on ENOMEM.
 * One line as a batch of its own (proto_batch below). */
char *proto_handle(const struct proto_env *env, const char *line, size_t len);
/* The same from a peer whose uid the socket read (SO_PEERCRED): the audit
 * rows of hold, release and drop name it. proto_handle() is "uid ?". */
char *proto_handle_as(const struct proto_env *env, uid_t uid, const char *line, size_t len);

/* The lines of one read from one client, so that many `track` requests
 * share one commit (an application hands over thousands a second). An op
 * marked to batch (track) runs in the batch's transaction, opened at the
 * first such request; it commits before any other request runs, once
 * PROTO_BATCH_MAX replies are held, and at proto_batch_end(). Until that
 * commit the replies are held: emit() gets every reply, in request order,
 * malloc'd (NULL: out of memory; the receiver frees it), an ok:true of a
 * write only after its commit; a failed commit turns each into the error.
 * Any other request runs as before, in its own transaction. A write that
 * finds another process's write lock waits for it (DB_BUSY_TIMEOUT_MS)
 * once a batch: the writes after it until proto_batch_end() fail at once.
 *
 * An op that runs off the loop (shape, on the threadpool) or in parts across
 * loop turns (bulk.h) does so only when the caller sets `late` and the
 * environment has a queue (a bulk): the batch's replies go first,
 * proto_batch_line() returns -EINPROGRESS, and late(ud, reply) comes once,
 * on the loop, later; the caller holds the requests after
 * it until then (replies go in request order). Without `late` it runs on the
 * calling thread.
 *
 * Lifecycle: proto_batch_begin(), proto_batch_line() for each line,
 * proto_batch_end(); lines may follow an end (a new transaction). Nothing
 * to free. */
#define PROTO_BATCH_MAX 256
typedef void proto_done_fn(void *ud, char *reply);
struct proto_batch {
    const struct proto_env *env;
    proto_done_fn *emit;
    proto_done_fn *late; /* NULL (proto_batch_begin's): every op on the calling thread */
    void *ud;
    uid_t uid;       /* the client's (SO_PEERCRED; (uid_t)-1 unknown), for hold, release, drop */
    bool open;       /* the batch's transaction is open */
    bool busy;       /* another process held the write lock: the batch's writes fail at once */
    unsigned writes; /* requests run in it: the engine is kicked after the commit */
    size_t held;
    struct {
        char *reply;
        bool written; /* an ok:true that holds only once committed */
    } replies[PROTO_BATCH_MAX];
};
void proto_batch_begin(struct proto_batch *b, const struct proto_env *env, proto_done_fn *emit, void *ud);
/* 0, or -EINPROGRESS: the reply comes through b->late. */
int proto_batch_line(struct proto_batch *b, const char *line, size_t len);
void proto_batch_end(struct proto_batch *b);
/* A reply for errors found before parsing (line too long, ...). */
char *proto_error(const char *message);

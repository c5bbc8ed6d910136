/* revoke: the engine. Finds due tokens, sends their logout requests, records
 * the outcomes. Owns the loop's revocation state: one timer armed for the
 * earliest next event, an idle handle that continues bounded work (pages of
 * promotions and fetches, so the loop never blocks long), the outcome batch
 * and its flush timer, the endpoint's health and the rate limit.
 *
 *   due tokens (promote: active -> pending, `due` audit, committed)
 *   -> queue (pending rows fetched, not yet sent)
 *   -> in flight (at most concurrency, gated by health and rate limit)
 *   -> batch (outcomes waiting for their grouped commit)
 * A token's id stays in the engine's memory from fetch until its outcome is
 * committed, so it is never sent twice at once. A crash loses only memory:
 * pending rows are fetched again after restart.
 *
 * Lifecycle: revoke_new() -> revoke_kick() whenever the table may have
 * changed -> revoke_stop(cb): no new work, in-flight requests finish (bounded
 * by the request timeout), outcomes are committed, handles closed, cb runs. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "health.h"
#include "metrics.h"
#include "store.h"

struct revoke;

struct revoke_stats {
    uint64_t started_ms;          /* uv_now at start */
    unsigned queued, in_flight, uncommitted;
    uint64_t sent;                /* requests started since start */
    uint64_t revoked, already_invalid, rejected, gave_up, retried; /* outcomes since start */
    uint64_t dropped;             /* tokens an operator dropped (hold.h) since start */
    bool keep_secrets;            /* daemon.keep_secrets: a drop keeps the secret too */
    uint64_t hashed;              /* rows hashed since start (tokens_hash_new) */
    uint64_t expiry_converted;    /* expires_at in milliseconds, rewritten in seconds */
    uint64_t expiry_rejected;     /* expires_at not a time: failed (also in rejected) */
    uint64_t db_errors;           /* failed commits (retried) */
    const char *health;           /* health_describe() */
    const char *last_error;       /* endpoint's last error, "" if none */
    char db_error[DB_ERRMSG_MAX + 64]; /* the last database error while it persists, "" if none */
    uint64_t db_error_for_ms;     /* how long it has lasted, 0 if none */
    struct metrics_requests requests; /* completed requests: durations, answers */
    uint64_t down_ms, paused_ms;  /* the endpoint DOWN, held by Retry-After (health_times) */
};

/* The engine reads cfg's [logout] and [retry] settings; it keeps a copy.
 * It writes through store (which must outlive it) and hears its checkpoints.
 * credential: NULL or the "Name: value" header sent with every request
 * (main loads it); copied, the caller wipes its own. */
int revoke_new(uv_loop_t *loop, struct store *store, const struct config *cfg, const char *credential,
               struct revoke **ret);
/* Apply reloadable settings (endpoint, timeouts, concurrency, rate limit,
 * retry policy, keep_secrets) and the credential as in revoke_new().
 * In-flight requests are kept. */
int revoke_configure(struct revoke *r, const struct config *cfg, const char *credential);
/* Something may be due (a commit by another process, a socket request):
 * look at the table again soon, on the loop. Cheap; may be called often. */
void revoke_kick(struct revoke *r);
void revoke_get_stats(struct revoke *r, struct revoke_stats *ret);
/* hold.h's recall for an operator's hold or drop (lanes_recall): a queued
 * job of id is forgotten (0); -EINPROGRESS once it was sent. */
int revoke_recall(struct revoke *r, int64_t id);
/* An operator dropped a token (hold.h), its secret scrubbed or kept
 * (revoke_stats.keep_secrets): counted; a scrub is checkpointed out of the
 * WAL as an outcome's is. */
void revoke_dropped(struct revoke *r, bool scrubbed);
/* Wall clock for tests (Unix ms); NULL restores db_now_ms. */
void revoke_set_clock(struct revoke *r, int64_t (*now_ms)(void *), void *data);
/* Called whenever counts change, at most as often as the caller throttles:
 * main turns it into STATUS=. */
void revoke_on_change(struct revoke *r, void (*cb)(void *data), void *data);
void revoke_stop(struct revoke *r, void (*cb)(void *data), void *data);

/* tokens: every query on table tokens, prepared once per connection.
 *
 * State machine (the daemon owns it):
 *   active --due (flagged, expired, requested)--> pending
 *   pending --2xx/401--> revoked      pending --4xx/attempts exhausted--> failed
 *   pending --retry--> pending (next_attempt_at later)
 *   failed --requeue--> pending
 *   active, pending <--hold, release--> held; pending, held --drop--> failed
 *   (hold.h: an operator's, with its own queries)
 * Functions that write must be called inside a transaction (db_begin); each
 * change of state appends its audit row through the given audit. Times are
 * Unix milliseconds except expires_at (Unix seconds, the applications' column). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "db.h"
#include "names.h"
#include "secret.h"

struct tokens;

/* The expires_at the table accepts, in Unix seconds: from 2000-01-01 to
 * before 3000-01-01 (sql/005-bad-expiry.sql). */
#define TOKENS_EXPIRY_MIN INT64_C(946684800)
#define TOKENS_EXPIRY_END INT64_C(32503680000)

int tokens_open(struct db *db, struct tokens **ret_tokens);
void tokens_close(struct tokens *t); /* NULL is fine */

/* Hash up to `limit` (at most TOKENS_HASH_STEP) rows that have a token but
 * no token_sha256 yet: the rows applications wrote since the last call
 * (the fingerprint is stored when the row is made due).
 * Hashing them soon after they are written keeps the lookup indexes out of
 * promotion and revocation (sql/003-hash-on-sight.sql). *ret_count: rows
 * hashed (< limit means none is left). */
#define TOKENS_HASH_STEP 64
int tokens_hash_new(struct tokens *t, unsigned limit, unsigned *ret_count);
/* [daemon] jwt_expiry (off until called): on, hashing a row whose token is
 * a JWT (jwt.h) also sets its expires_at from the `exp` claim when it is
 * NULL, and lowers it to exp when it is later (a bad expires_at is left to
 * tokens_promote_due's rules); tokens_track() reads exp too. */
void tokens_set_jwt_expiry(struct tokens *t, bool on);

/* Move up to `limit` due active tokens to pending: flagged ones first, then
 * those whose expires_at * 1000 <= now_ms. Each gets its fingerprint (and
 * token_sha256 if the hasher has not been there), due_reason/due_at,
 * next_attempt_at = now_ms and a `due` audit row (detail "flagged" or
 * "expired"). A row without a token goes straight to failed with a
 * `rejected` audit row. Then rows whose expires_at can never fall due (at
 * or after the year 3000 in seconds, text, blobs; sql/005): milliseconds
 * are rewritten in seconds, the rest fail with a `rejected` audit row
 * ("expires_at is not a time: ..."). Each is logged once. *ret_count: rows
 * handled (< limit means nothing more is due now). */
int tokens_promote_due(struct tokens *t, struct audit *a, int64_t now_ms, unsigned limit,
                       unsigned *ret_count);

/* Only the first phase of tokens_promote_due(): flagged rows (the urgent
 * lane's), a few, promoted even while bulk work waits (pages.h). */
int tokens_promote_flagged(struct tokens *t, struct audit *a, int64_t now_ms, unsigned limit,
                           unsigned *ret_count);

/* What the table's rules turned away since tokens_open(), counted as the
 * statements run: a transaction that rolls back must put back the copy
 * taken at its BEGIN (store does). */
struct tokens_tally {
    uint64_t no_token;         /* due without a token: failed, `rejected` */
    uint64_t expiry_rejected;  /* expires_at not a time: failed, `rejected` */
    uint64_t expiry_converted; /* expires_at in milliseconds: rewritten in seconds */
};
struct tokens_tally tokens_tally(const struct tokens *t);
void tokens_set_tally(struct tokens *t, const struct tokens_tally *tally);

struct pending_row {
    int64_t id;
    const char *token;            /* the secret; valid during the callback only */
    size_t token_len;
    const char *fingerprint;
    unsigned attempts;            /* token-level failures so far */
    int64_t next_attempt_at;
    bool urgent; /* due reason flagged or requested: the urgent lane */
};
/* Pending rows with next_attempt_at <= now_ms, ordered by (next_attempt_at,
 * id), at most `limit`, either lane. cb returns 0 to go on, non-zero to stop. A pending
 * row whose token is NULL is skipped (it cannot be sent). */
int tokens_fetch_due(struct tokens *t, int64_t now_ms, unsigned limit,
                     int (*cb)(void *ud, const struct pending_row *row), void *ud);
/* Pending rows with id > after_id, due or not, in id order, at most `limit`:
 * a backlog of due rows read this way shares table pages (sql/004). A row
 * whose token is NULL comes with row->token NULL. */
int tokens_fetch_from(struct tokens *t, int64_t after_id, unsigned limit,
                      int (*cb)(void *ud, const struct pending_row *row), void *ud);

/* The urgent lane (sql/006-urgent-lane.sql): due pending rows whose due
 * reason is not 'expired', with a token, by (next_attempt_at, id), at most
 * `limit`, as tokens_fetch_due(); small indexes however large the routine
 * backlog. */
int tokens_fetch_urgent(struct tokens *t, int64_t now_ms, unsigned limit,
                        int (*cb)(void *ud, const struct pending_row *row), void *ud);
/* tokens_fetch_from() for the urgent lane. */
int tokens_fetch_urgent_from(struct tokens *t, int64_t after_id, unsigned limit,
                             int (*cb)(void *ud, const struct pending_row *row), void *ud);
struct next_events {
    bool flagged;          /* an active token is flagged: due now */
    int64_t expiry_ms;     /* earliest expires_at*1000 of an active token; INT64_MAX: none */
    int64_t retry_ms;      /* earliest next_attempt_at > now_ms of a routine pending token; INT64_MAX */
    int64_t urgent_retry_ms; /* ... > urgent_after_ms of an urgent one (its backoff); INT64_MAX */
};
int tokens_next_events(struct tokens *t, int64_t now_ms, int64_t urgent_after_ms, struct next_events *ret);

struct outcome_record {
    int64_t token_id;
    const char *fingerprint;
    enum audit_event_kind event; /* revoked already_invalid retry rejected gave_up */
    enum token_state state;   /* revoked failed pending */
    unsigned attempts;        /* the token's new token-level failure count */
    int attempt;              /* for the audit row */
    int64_t next_attempt_at;  /* pending only */
    long http_status;         /* 0: none */
    const char *detail;       /* audit detail */
    const char *last_error;   /* NULL for success */
    int64_t duration_ms;
    int64_t at_ms;
    bool drop_secret;         /* set token = NULL (revoked, keep_secrets off) */
};
/* Update the row and append the audit row. The row is expected pending;
 * when another process wrote its state meanwhile (the state is revokerd's
 * column), the outcome replaces that state all the same, the audit row's
 * detail says so and *ret_was (may be NULL) is the state found, else 0.
 * -ESTALE when the row is gone: no audit row is written then. */
int tokens_record_outcome(struct tokens *t, struct audit *a, const struct outcome_record *r,
                          enum token_state *ret_was);

/* --- requests from the control socket --- */

struct token_status {
    int64_t id;
    enum token_state state;
    char fingerprint[SECRET_FP_LEN + 1]; /* "" if never hashed */
    char subject[256];                   /* "" if NULL (truncated) */
    char reason[256];                    /* flag_reason: the application's or a socket revoke's; "" if NULL */
    unsigned attempts;
    char last_event[24];                 /* "" if none */
    char last_error[512];                /* "" if none; holds what outcome.h writes whole */
    int64_t next_attempt_at;             /* 0 if none */
    int64_t expires_at;                  /* Unix s; 0 if none */
    int64_t due_at, finished_at;         /* 0 if none */
};

/* Find the token by SHA-256 (or by the secret for a row not yet hashed), or
 * insert it with `subject`; if it is active, make it pending now with a `due`
 * audit row (detail "requested") and reason stored in flag_reason.
 * Writes the row's id and its state after the call. -EINVAL for a token
 * that secret_token_ok() refuses: it could never be sent. */
int tokens_revoke_secret(struct tokens *t, struct audit *a, const char *token, size_t len,
                         const char *subject, const char *reason, int64_t now_ms,
                         int64_t *ret_id, enum token_state *ret_state);
struct tokens_tracked {
    int64_t id;
    enum token_state state;
    int64_t expires_at; /* Unix s; 0: none */
    bool created;       /* a new row; false: the token's row was there */
};
/* `track`: a live token to revoke at its expiry. Finds the token's row as
 * tokens_revoke_secret() does, or inserts it `active` with its hash,
 * fingerprint, subject and expiry. The expiry is expires_at (Unix s; 0:
 * none) or, with jwt_expiry on, the token's JWT exp where that is earlier
 * (or the only one). A row that was there keeps all but a NULL or later
 * expires_at while active, which takes the earlier one. No audit row: the
 * row is active, as one an application wrote. -EINVAL: a token that
 * secret_token_ok() refuses; -ENODATA: a new row, or an active one found
 * with a NULL expires_at, would have no expiry. */
int tokens_track(struct tokens *t, const char *token, size_t len, const char *subject, int64_t expires_at,
                 struct tokens_tracked *ret);
/* Make token `id` pending if active. -ENOENT if no such row. *ret_changed
 * tells whether it was active (and is now pending). */
int tokens_revoke_id(struct tokens *t, struct audit *a, int64_t id, const char *reason,
                     int64_t now_ms, bool *ret_changed);
/* Make every active token of `subject` pending. cb gets each id (may be NULL). */
int tokens_revoke_subject(struct tokens *t, struct audit *a, const char *subject,
                          const char *reason, int64_t now_ms, unsigned *ret_count,
                          void (*cb)(void *ud, int64_t id), void *ud);
/* -ENOENT if no such row. */
int tokens_status(struct tokens *t, int64_t id, struct token_status *ret);
/* failed -> pending, attempts reset, `requeued` audit row. -ENOENT no such
 * row, -EINVAL it is not failed (or its secret is gone). */
int tokens_requeue_id(struct tokens *t, struct audit *a, int64_t id, int64_t now_ms);
int tokens_requeue_failed(struct tokens *t, struct audit *a, int64_t now_ms, unsigned *ret_count);
/* Every pending token waiting past now_ms is due at now_ms (attempts
 * unchanged): after the endpoint's URL changed. */
int tokens_due_now(struct tokens *t, int64_t now_ms, unsigned *ret_count);

struct state_counts {
    int64_t active, pending, revoked, failed, held;
};
/* pending and failed through their partial indexes, up to TOKENS_COUNT_CAP
 * each (cheap: TOKENS_COUNT_CAP means at least that many); active, revoked
 * and held too, all exact, only when full is true (a scan: for `stats`, not
 * the status line; store_count() adds the held ones' cheap count). */
#define TOKENS_COUNT_CAP 1000
int tokens_count(struct tokens *t, bool full, struct state_counts *ret);

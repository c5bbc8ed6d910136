/* outcome: what one answer of the logout endpoint means for one token, as
 * the record that tokens_record_outcome() writes: the audit event, the
 * row's new state and attempts, when to try again, the detail and
 * last_error texts; and what the endpoint's health learns from it (the
 * policy class and a Retry-After delay).
 *
 * Pure: the job's fields, the answer, the settings, the wall time and the
 * random bits for jitter go in; the outcome comes out. No I/O, no clock.
 * An answer that quoted the token never gets the token into a text.
 *
 * Endpoint-level answers (no answer, 408, 429, 502-504, 3xx, 404, 405; see
 * policy_classify) are the endpoint's fault: they keep the token's
 * attempts, and the token waits at least retry.base (or the Retry-After).
 * Token-level failures count an attempt and end in gave_up at
 * max_attempts.
 *
 * The audit row's attempt (rec.attempt) is the number of token-level
 * attempts so far, this one included: attempts + 1 for a token-level answer
 * (success or failure), attempts as they stand for an endpoint-level failure
 * or a token never sent (0: the column is NULL). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "policy.h"
#include "tokens.h"

/* The fields of the job that the outcome depends on. */
struct outcome_job {
    int64_t id;
    const char *fingerprint;
    const char *token;        /* the secret: only to keep it out of the texts */
    size_t token_len;
    unsigned attempts;        /* token-level failures so far */
};

/* The settings of [logout] and [retry] that the rules read. */
struct outcome_settings {
    unsigned max_attempts;
    uint64_t retry_base_ms, retry_max_delay_ms;
    uint64_t retry_after_max_ms; /* cap on a Retry-After; 0: none is honoured */
    bool keep_secrets;           /* off: a revoked row's secret is dropped */
};

/* The reason of a failure ("HTTP 503", or "curl error N (curl's message)"
 * with up to CURL_ERROR_SIZE of curl's) and the texts built around it are
 * sized to hold it whole: the log, the audit and stats show all of it. Only
 * a rejection's message from the endpoint is cut, to its start. */
#define OUTCOME_WHY_MAX (CURL_ERROR_SIZE + 32)
#define OUTCOME_TEXT_MAX (OUTCOME_WHY_MAX + 128)

/* rec.detail and rec.last_error point into this struct: fill it in place,
 * do not copy it. */
struct outcome_result {
    enum outcome class;          /* policy_classify(); OUTCOME_REJECTED for an unsendable token */
    uint64_t retry_after_ms;     /* from a 429/503's Retry-After, capped; 0: none */
    struct outcome_record rec;
    char detail[OUTCOME_TEXT_MAX];
    char last_error[OUTCOME_TEXT_MAX]; /* the reason, or a rejection's detail */
};

/* The outcome of answer res to job j at wall time now_ms (Unix ms). rnd:
 * random bits for the backoff's jitter. */
void outcome_of_answer(const struct outcome_job *j, const struct http_result *res,
                       const struct outcome_settings *s, int64_t now_ms, uint64_t rnd,
                       struct outcome_result *ret);
/* The outcome of a token that cannot go into an Authorization header
 * (empty, too long, spaces or control characters): never sent, it will
 * never be accepted; failed now rather than retried forever. */
void outcome_of_unsendable(const struct outcome_job *j, int64_t now_ms, struct outcome_result *ret);

/* report: what the engine tells the operator about outcomes: the log line
 * of each outcome (by token id and fingerprint, never the secret), the
 * line when the endpoint's health changes, and the counts of committed
 * outcomes with their periodic summary line. Writes log lines only; the
 * engine decides when. */
#pragma once

#include <stdint.h>

#include "dberror.h"
#include "health.h"
#include "job.h"
#include "names.h"

struct report_counts {
    uint64_t revoked, already_invalid, rejected, gave_up, retried;
};

/* Count one committed outcome. */
void report_count(struct report_counts *c, enum audit_event_kind e);
/* One notice with what happened since *base, if anything did; then
 * *base = *now. period_s and endpoint (health_describe()) for the text. */
void report_summary(const struct report_counts *now, struct report_counts *base, unsigned period_s,
                    const char *endpoint);
/* The line for job j's outcome (j->out filled in); a warning for a token
 * that failed, info for a counted retry, debug for the rest. */
void report_outcome(const struct job *j);
/* The line for a token that was never sent (outcome_of_unsendable). */
void report_unsendable(const struct job *j);
/* http_submit failed with err (a negative errno); retried in retry_ms. */
void report_submit_failed(const struct job *j, int err, int retry_ms);
/* Another process wrote the row's state (was) while j's request was in
 * flight; j's outcome replaced it. */
void report_state_replaced(const struct job *j, enum token_state was);
/* Another process deleted j's row while its request was in flight. */
void report_row_gone(const struct job *j);
/* After health_on_result() reported a change: down, misconfigured or
 * answering again. */
void report_health_change(const struct health *h, unsigned down_after, uint64_t now_ms);
/* A database failure (dberror_failed's verdict say): an error line for a
 * new kind, a summary with the count a minute later, nothing in between. */
void report_db_failure(const struct dberror *e, enum dberror_say say, uint64_t retry_ms, uint64_t now_ms);
/* The failing step works again (dberror_ok was true). */
void report_db_recovered(const struct dberror *e, uint64_t now_ms);

/* job: one token the engine holds, from the fetch of its pending row to
 * the commit of its outcome: its own copy of the secret (wiped as soon as
 * the outcome is known, and when freed), the HTTP request, the outcome;
 * and the FIFO list that holds jobs (the engine's queue and its batch).
 *
 * Lifecycle: job_new() -> job_list_push() onto the queue -> popped and
 * sent -> the outcome filled in, job_wipe_secret(), pushed onto the batch
 * -> popped after the commit -> job_free(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "outcome.h"
#include "secret.h"
#include "tokens.h"

struct job {
    struct http_request req;
    void *owner;              /* the engine */
    struct job *next;         /* in a job_list */
    int64_t id;
    char *token;              /* NUL-terminated copy of the secret */
    size_t token_len;
    char fingerprint[SECRET_FP_LEN + 1];
    unsigned attempts;
    bool urgent; /* flagged or requested: the urgent lane (lanes.h) */
    unsigned url_gen; /* the engine's URL generation when it was sent */
    struct outcome_result out;
};

struct job_list {
    struct job *head, *tail;
    unsigned len;
};

/* A job for row (copies the secret). 0 or -ENOMEM. */
int job_new(const struct pending_row *row, void *owner, struct job **ret_job);
void job_free(struct job *j); /* NULL is fine; wipes the secret */
void job_wipe_secret(struct job *j);
/* The fields the outcome rules read. */
struct outcome_job job_outcome_input(const struct job *j);

void job_list_push(struct job_list *l, struct job *j);
/* The oldest job, taken off the list; NULL when empty. */
struct job *job_list_pop(struct job_list *l);
/* The job of token id, taken off the list; NULL when none is there. */
struct job *job_list_take(struct job_list *l, int64_t id);

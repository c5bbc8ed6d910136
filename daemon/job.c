/* job: the held token and the job list of job.h. */
#include "job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int job_new(const struct pending_row *row, void *owner, struct job **ret_job)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j)
        j->token = malloc(row->token_len + 1);
    if (!j || !j->token) {
        free(j);
        return -ENOMEM;
    }
    memcpy(j->token, row->token, row->token_len);
    j->token[row->token_len] = '\0';
    j->token_len = row->token_len;
    j->owner = owner;
    j->id = row->id;
    j->attempts = row->attempts;
    j->urgent = row->urgent;
    snprintf(j->fingerprint, sizeof(j->fingerprint), "%s", row->fingerprint ? row->fingerprint : "");
    *ret_job = j;
    return 0;
}

void job_wipe_secret(struct job *j)
{
    secret_wipe(j->token, j->token_len);
}

void job_free(struct job *j)
{
    if (!j)
        return;
    if (j->token) {
        job_wipe_secret(j);
        free(j->token);
    }
    free(j);
}

struct outcome_job job_outcome_input(const struct job *j)
{
    return (struct outcome_job){
        .id = j->id,
        .fingerprint = j->fingerprint,
        .token = j->token,
        .token_len = j->token_len,
        .attempts = j->attempts,
    };
}

void job_list_push(struct job_list *l, struct job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->len++;
}

struct job *job_list_pop(struct job_list *l)
{
    struct job *j = l->head;

    if (!j)
        return NULL;
    l->head = j->next;
    if (!l->head)
        l->tail = NULL;
    j->next = NULL;
    l->len--;
    return j;
}

struct job *job_list_take(struct job_list *l, int64_t id)
{
    struct job *prev = NULL;

    for (struct job *j = l->head; j; prev = j, j = j->next) {
        if (j->id != id)
            continue;
        if (prev)
            prev->next = j->next;
        else
            l->head = j->next;
        if (l->tail == j)
            l->tail = prev;
        j->next = NULL;
        l->len--;
        return j;
    }
    return NULL;
}

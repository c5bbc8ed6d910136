/* lanes: the engine's queue of fetched jobs, in two lanes. The urgent lane
 * holds tokens flagged or requested (over the socket, by id, token or
 * subject), the routine lane expired ones. Whenever both have work the
 * urgent lane goes first, so a leaked token waits for one free request
 * slot, not for a backlog of expiries; routine work gets every slot the
 * urgent lane does not need. Each lane is FIFO in the order it was fetched
 * (pages.h: by retry time, or a backlog in id order).
 *
 * lanes_fill() reads the table into them: the urgent rows first (a small
 * index), then a page of routine work when its lane has room.
 *
 * Lifecycle: zero-initialised; lanes_fill() (or lanes_push()) at fetch,
 * lanes_pop() at dispatch; the caller frees what it pops. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "idset.h"
#include "job.h"
#include "pages.h"
#include "store.h"

struct lanes {
    struct job_list urgent, routine;
    bool urgent_due;                           /* urgent rows may be due and not held: read them first */
    int64_t urgent_read_ms;                    /* wall time of the last read of due urgent rows */
    int64_t routine_read_ms;                   /* ... of due routine rows */
    struct pages_cursor urgent_cursor, cursor; /* where the next reads start */
};

/* Read due pending rows that held does not hold into the lanes (each job
 * owned by owner, its id added to held): while urgent_due and the urgent
 * lane holds fewer than `concurrency`, a page of urgent rows; then, while
 * *fetch_due and the routine lane holds fewer than 2 * concurrency, a page
 * of routine rows. urgent_due and *fetch_due are cleared once a read saw
 * every due row of its lane. 0 or a negative errno from the database or
 * -ENOMEM; what was read before stays in the lanes. */
int lanes_fill(struct lanes *l, struct store *s, struct idset *held, void *owner, unsigned concurrency,
               int64_t now_ms, bool *fetch_due);

/* Onto the lane of j->urgent. */
void lanes_push(struct lanes *l, struct job *j);
/* The job dispatch sends next (urgent first), without taking it; NULL: none. */
struct job *lanes_head(const struct lanes *l);
/* lanes_head(), taken off its lane. */
struct job *lanes_pop(struct lanes *l);
unsigned lanes_len(const struct lanes *l);
/* An operator's hold or drop of token id (hold.h): a queued job of it is
 * taken off its lane, freed and its id removed from held: 0. -EINPROGRESS
 * when held holds id but no lane does: sent, or its outcome uncommitted. */
int lanes_recall(struct lanes *l, struct idset *held, int64_t id);

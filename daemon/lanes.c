/* lanes: the two-lane queue of lanes.h. */
#include "lanes.h"

#include <errno.h>
#include <stddef.h>

void lanes_push(struct lanes *l, struct job *j)
{
    job_list_push(j->urgent ? &l->urgent : &l->routine, j);
}

struct job *lanes_head(const struct lanes *l)
{
    return l->urgent.head ? l->urgent.head : l->routine.head;
}

struct job *lanes_pop(struct lanes *l)
{
    return job_list_pop(l->urgent.head ? &l->urgent : &l->routine);
}

unsigned lanes_len(const struct lanes *l)
{
    return l->urgent.len + l->routine.len;
}

int lanes_recall(struct lanes *l, struct idset *held, int64_t id)
{
    struct job *j;

    if (!idset_has(held, id))
        return 0;
    j = job_list_take(&l->urgent, id);
    if (!j)
        j = job_list_take(&l->routine, id);
    if (!j)
        return -EINPROGRESS;
    idset_del(held, id);
    job_free(j);
    return 0;
}

struct fill {
    struct lanes *lanes;
    struct idset *held;
    void *owner;
};

/* A due pending row, held from now on. */
static int take_row(void *ud, const struct pending_row *row)
{
    struct fill *f = ud;
    struct job *j;
    int rc = job_new(row, f->owner, &j);

    if (rc == 0 && idset_add(f->held, row->id) < 0) {
        job_free(j);
        rc = -ENOMEM;
    }
    if (rc == 0)
        lanes_push(f->lanes, j);
    return rc;
}

int lanes_fill(struct lanes *l, struct store *s, struct idset *held, void *owner, unsigned concurrency,
               int64_t now_ms, bool *fetch_due)
{
    struct fill f = {.lanes = l, .held = held, .owner = owner};
    bool all = false;
    int rc = 0;

    if (l->urgent_due && l->urgent.len < concurrency) {
        l->urgent_read_ms = now_ms;
        l->urgent_cursor.urgent = true;
        rc = pages_fetch(&l->urgent_cursor, s, held, now_ms, take_row, &f, &all);
        if (rc == 0 && all)
            l->urgent_due = false;
    }
    if (rc < 0 || !*fetch_due || l->routine.len >= 2 * concurrency)
        return rc;
    all = false;
    l->routine_read_ms = now_ms;
    rc = pages_fetch(&l->cursor, s, held, now_ms, take_row, &f, &all);
    if (rc == 0 && all)
        *fetch_due = false;
    return rc;
}

/* idset: the id hash set of idset.h. */
#include "idset.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(const struct idset *s, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (s->cap - 1);
}

static size_t next_slot(const struct idset *s, size_t i)
{
    return (i + 1) & (s->cap - 1);
}

/* id is not a member and there is room. */
static void insert(struct idset *s, int64_t id)
{
    size_t i = slot_of(s, id);

    while (s->slots[i] != 0)
        i = next_slot(s, i);
    s->slots[i] = id;
    s->len++;
}

static int grow(struct idset *s)
{
    struct idset bigger = {.cap = s->cap * 2};

    bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
    if (!bigger.slots)
        return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i])
            insert(&bigger, s->slots[i]);
    free(s->slots);
    *s = bigger;
    return 0;
}

int idset_init(struct idset *s, size_t cap)
{
    int64_t *slots;

    if (cap < 2 || (cap & (cap - 1)) != 0)
        return -EINVAL;
    slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    *s = (struct idset){.slots = slots, .cap = cap};
    return 0;
}

void idset_free(struct idset *s)
{
    free(s->slots);
    *s = (struct idset){0};
}

bool idset_has(const struct idset *s, int64_t id)
{
    if (id == 0 || !s->slots)
        return false;
    for (size_t i = slot_of(s, id);; i = next_slot(s, i)) {
        if (s->slots[i] == id)
            return true;
        if (s->slots[i] == 0)
            return false;
    }
}

int idset_add(struct idset *s, int64_t id)
{
    if (id == 0)
        return -EINVAL;
    if (idset_has(s, id))
        return 0;
    if ((s->len + 1) * 2 > s->cap && grow(s) < 0)
        return -ENOMEM;
    insert(s, id);
    return 0;
}

void idset_del(struct idset *s, int64_t id)
{
    size_t i, j;

    if (id == 0 || !s->slots)
        return;
    for (i = slot_of(s, id); s->slots[i] != id; i = next_slot(s, i))
        if (s->slots[i] == 0)
            return;
    s->slots[i] = 0;
    s->len--;
    /* Backward shift: move later members of the run into the hole, unless
     * their home slot lies after the hole (they would be lost to lookups). */
    for (j = next_slot(s, i); s->slots[j] != 0; j = next_slot(s, j)) {
        size_t home = slot_of(s, s->slots[j]);
        bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!between) {
            s->slots[i] = s->slots[j];
            s->slots[j] = 0;
            i = j;
        }
    }
}

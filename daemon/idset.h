/* idset: a set of token ids (any int64_t but 0, which marks an empty
 * slot): the ids the engine holds from fetch until their outcome is
 * committed, so that none is sent twice at once. Open addressing with
 * linear probing and backward-shift deletion (no tombstones): a lookup
 * stops at the first empty slot. The table doubles when it is half full
 * and never shrinks.
 *
 * Lifecycle: idset_init() -> idset_add/has/del* -> idset_free(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idset {
    int64_t *slots; /* 0: empty */
    size_t cap, len;
};

/* An empty set with room for cap/2 ids before it grows (cap: a power of
 * two, at least 2). 0 or -ENOMEM, -EINVAL for a bad cap. */
int idset_init(struct idset *s, size_t cap);
void idset_free(struct idset *s); /* a zeroed or freed set is fine */
/* 0 also when id is a member already; -ENOMEM when the set cannot grow
 * (the set is unchanged); -EINVAL for id 0. */
int idset_add(struct idset *s, int64_t id);
bool idset_has(const struct idset *s, int64_t id); /* false for 0 */
/* Nothing happens for an id that is not a member. */
void idset_del(struct idset *s, int64_t id);

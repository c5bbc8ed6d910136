/* names: the tables of names.h. */
#include "names.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static const char *const state_names[TOKEN_STATE_MAX + 1] = {
    [TOKEN_ACTIVE] = "active",
    [TOKEN_PENDING] = "pending",
    [TOKEN_REVOKED] = "revoked",
    [TOKEN_FAILED] = "failed",
    [TOKEN_HELD] = "held",
};

static const char *const event_names[AUDIT_EVENT_MAX + 1] = {
    [AUDIT_DUE] = "due",
    [AUDIT_REVOKED] = "revoked",
    [AUDIT_ALREADY_INVALID] = "already_invalid",
    [AUDIT_RETRY] = "retry",
    [AUDIT_REJECTED] = "rejected",
    [AUDIT_GAVE_UP] = "gave_up",
    [AUDIT_REQUEUED] = "requeued",
    [AUDIT_HELD] = "held",
    [AUDIT_RELEASED] = "released",
    [AUDIT_DROPPED] = "dropped",
};

/* The index of name in table (1..max), or 0. */
static int index_of(const char *const *table, int max, const char *name)
{
    if (!name)
        return 0;
    for (int i = 1; i <= max; i++)
        if (strcmp(table[i], name) == 0)
            return i;
    return 0;
}

const char *token_state_name(enum token_state s)
{
    return s >= 1 && s <= TOKEN_STATE_MAX ? state_names[s] : NULL;
}

int token_state_from_name(const char *name, enum token_state *ret_state)
{
    int i = index_of(state_names, TOKEN_STATE_MAX, name);

    if (i == 0)
        return -EINVAL;
    *ret_state = (enum token_state)i;
    return 0;
}

const char *audit_event_name(enum audit_event_kind e)
{
    return e >= 1 && e <= AUDIT_EVENT_MAX ? event_names[e] : NULL;
}

int audit_event_from_name(const char *name, enum audit_event_kind *ret_event)
{
    int i = index_of(event_names, AUDIT_EVENT_MAX, name);

    if (i == 0)
        return -EINVAL;
    *ret_event = (enum audit_event_kind)i;
    return 0;
}

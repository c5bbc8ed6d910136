/* names: the states of a token (column tokens.state) and the events of the
 * audit log (column audit.event) as enums, each with the one table of the
 * names that the schema's CHECK constraints, the logs, the socket and
 * revokerctl use (sql/007-held.sql lists the same names).
 *
 * 0 is no value in either enum: a zeroed struct names no state or event,
 * and the functions that take one refuse it. No state; nothing to set up. */
#pragma once

enum token_state {
    TOKEN_ACTIVE = 1,
    TOKEN_PENDING,
    TOKEN_REVOKED,
    TOKEN_FAILED,
    TOKEN_HELD, /* an operator's hold: never sent until released (hold.h) */
};
#define TOKEN_STATE_MAX TOKEN_HELD

/* Not enum audit_event: struct audit_event (audit.h, the row that
 * audit_append() writes) has that tag, and C gives both one namespace. */
enum audit_event_kind {
    AUDIT_DUE = 1,
    AUDIT_REVOKED,
    AUDIT_ALREADY_INVALID,
    AUDIT_RETRY,
    AUDIT_REJECTED,
    AUDIT_GAVE_UP,
    AUDIT_REQUEUED,
    AUDIT_HELD,     /* the operator's hold, release and drop (hold.h) */
    AUDIT_RELEASED,
    AUDIT_DROPPED,
};
#define AUDIT_EVENT_MAX AUDIT_DROPPED

/* "active", "pending", ...; NULL for a value that is not in the enum. */
const char *token_state_name(enum token_state s);
/* 0, or -EINVAL for NULL or a name that is not a state. */
int token_state_from_name(const char *name, enum token_state *ret_state);

/* "due", "revoked", "already_invalid", ...; NULL for a value not in the enum. */
const char *audit_event_name(enum audit_event_kind e);
/* 0, or -EINVAL for NULL or a name that is not an event. */
int audit_event_from_name(const char *name, enum audit_event_kind *ret_event);

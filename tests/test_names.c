/* Unit tests for names: every state and event has one name, names go
 * round trip, anything else is refused, and the tables hold exactly the
 * names the schema's CHECK constraints allow. */
#include <errno.h>
#include <sqlite3.h>

#include "db.h"
#include "names.h"
#include "unit.h"

static const char *const states[] = {"active", "pending", "revoked", "failed", "held"};
static const char *const events[] = {"due",      "revoked", "already_invalid", "retry",
                                     "rejected", "gave_up", "requeued", "held",     "released", "dropped"};
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_states(void)
{
    enum token_state s;

    CHECK_INT(TOKEN_STATE_MAX, LEN(states));
    CHECK_STR(token_state_name(TOKEN_ACTIVE), "active");
    CHECK_STR(token_state_name(TOKEN_PENDING), "pending");
    CHECK_STR(token_state_name(TOKEN_REVOKED), "revoked");
    CHECK_STR(token_state_name(TOKEN_FAILED), "failed");
    for (int i = 1; i <= TOKEN_STATE_MAX; i++) {
        const char *name = token_state_name((enum token_state)i);
        REQUIRE(name);
        CHECK_STR(name, states[i - 1]);
        s = 0;
        CHECK_INT(token_state_from_name(name, &s), 0);
        CHECK_INT(s, i);
    }
    CHECK(token_state_name(0) == NULL);
    CHECK(token_state_name((enum token_state)(TOKEN_STATE_MAX + 1)) == NULL);
    CHECK(token_state_name((enum token_state)-1) == NULL);
}

static void test_events(void)
{
    enum audit_event_kind e;

    CHECK_INT(AUDIT_EVENT_MAX, LEN(events));
    CHECK_STR(audit_event_name(AUDIT_DUE), "due");
    CHECK_STR(audit_event_name(AUDIT_REVOKED), "revoked");
    CHECK_STR(audit_event_name(AUDIT_ALREADY_INVALID), "already_invalid");
    CHECK_STR(audit_event_name(AUDIT_RETRY), "retry");
    CHECK_STR(audit_event_name(AUDIT_REJECTED), "rejected");
    CHECK_STR(audit_event_name(AUDIT_GAVE_UP), "gave_up");
    CHECK_STR(audit_event_name(AUDIT_REQUEUED), "requeued");
    for (int i = 1; i <= AUDIT_EVENT_MAX; i++) {
        const char *name = audit_event_name((enum audit_event_kind)i);
        REQUIRE(name);
        CHECK_STR(name, events[i - 1]);
        e = 0;
        CHECK_INT(audit_event_from_name(name, &e), 0);
        CHECK_INT(e, i);
    }
    CHECK(audit_event_name(0) == NULL);
    CHECK(audit_event_name((enum audit_event_kind)(AUDIT_EVENT_MAX + 1)) == NULL);
    CHECK(audit_event_name((enum audit_event_kind)-1) == NULL);
}

/* Close misses are refused, and the out-parameter is left alone. */
static void test_unknown_names(void)
{
    static const char *const bad[] = {"", "Active", "PENDING", "pending ", " due", "revoke",
                                      "retried", "gave up", "gave_up\n", "expired", "unknown"};
    enum token_state s = TOKEN_FAILED;
    enum audit_event_kind e = AUDIT_REQUEUED;

    for (size_t i = 0; i < LEN(bad); i++) {
        CHECK_INT(token_state_from_name(bad[i], &s), -EINVAL);
        CHECK_INT(audit_event_from_name(bad[i], &e), -EINVAL);
    }
    CHECK_INT(token_state_from_name(NULL, &s), -EINVAL);
    CHECK_INT(audit_event_from_name(NULL, &e), -EINVAL);
    /* A state is no event, and an event no state (but "revoked" is both). */
    CHECK_INT(token_state_from_name("due", &s), -EINVAL);
    CHECK_INT(audit_event_from_name("active", &e), -EINVAL);
    CHECK_INT(s, TOKEN_FAILED);
    CHECK_INT(e, AUDIT_REQUEUED);
}

/* The quoted names in the first "<column> IN (...)" of table's CREATE
 * statement, as the migrations left it; the count. */
static size_t check_list(struct db *db, const char *table, const char *column, char names[16][32])
{
    sqlite3_stmt *st;
    char pattern[64];
    size_t n = 0;

    REQUIRE(sqlite3_prepare_v2(db->conn, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                               -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    const char *sql = (const char *)sqlite3_column_text(st, 0);
    snprintf(pattern, sizeof(pattern), "%s IN (", column);
    const char *p = strstr(sql, pattern);
    REQUIRE(p);
    const char *end = strchr(p, ')');
    REQUIRE(end);
    for (p = strchr(p, '\''); p && p < end && n < 16; p = strchr(p + 1, '\'')) {
        const char *q = strchr(p + 1, '\'');
        REQUIRE(q && q - p - 1 < 32);
        snprintf(names[n++], 32, "%.*s", (int)(q - p - 1), p + 1);
        p = q;
    }
    sqlite3_finalize(st);
    return n;
}

static void test_schema_agrees(void)
{
    struct db *db;
    char names[16][32];
    size_t n;

    REQUIRE(db_open(":memory:", 0, &db) == 0);
    n = check_list(db, "tokens", "state", names);
    CHECK_INT(n, TOKEN_STATE_MAX);
    for (size_t i = 0; i < n; i++) {
        enum token_state s;
        if (token_state_from_name(names[i], &s) < 0)
            fprintf(stderr, "schema state '%s' has no enum value\n", names[i]);
        CHECK_INT(token_state_from_name(names[i], &s), 0);
    }
    n = check_list(db, "audit", "event", names);
    CHECK_INT(n, AUDIT_EVENT_MAX);
    for (size_t i = 0; i < n; i++) {
        enum audit_event_kind e;
        if (audit_event_from_name(names[i], &e) < 0)
            fprintf(stderr, "schema event '%s' has no enum value\n", names[i]);
        CHECK_INT(audit_event_from_name(names[i], &e), 0);
    }
    db_close(db);
}

TEST_MAIN(CASE(test_states), CASE(test_events), CASE(test_unknown_names), CASE(test_schema_agrees))

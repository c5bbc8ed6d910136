/* Unit tests for report: the counts, the summary line and the outcome and
 * health lines, read back from stderr (a file: "<N>" prefixed lines). */
#include <errno.h>
#include <unistd.h>

#include "log.h"
#include "report.h"
#include "unit.h"

static int saved = -1;
static FILE *out;

static void capture_begin(void)
{
    fflush(stderr);
    out = tmpfile();
    REQUIRE(out);
    saved = dup(STDERR_FILENO);
    REQUIRE(dup2(fileno(out), STDERR_FILENO) == STDERR_FILENO);
}

/* What was written since capture_begin (static buffer). */
static const char *capture_end(void)
{
    static char text[4096];
    size_t n;

    fflush(stderr);
    REQUIRE(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    rewind(out);
    n = fread(text, 1, sizeof(text) - 1, out);
    text[n] = '\0';
    fclose(out);
    return text;
}

static void test_counts_and_summary(void)
{
    static const enum audit_event_kind events[] = {AUDIT_REVOKED, AUDIT_REVOKED, AUDIT_ALREADY_INVALID,
                                                   AUDIT_REJECTED, AUDIT_GAVE_UP, AUDIT_RETRY, AUDIT_RETRY,
                                                   AUDIT_RETRY};
    struct report_counts c = {0}, base = {0};

    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        report_count(&c, events[i]);
    CHECK_INT(c.revoked, 2);
    CHECK_INT(c.already_invalid, 1);
    CHECK_INT(c.rejected, 1);
    CHECK_INT(c.gave_up, 1);
    CHECK_INT(c.retried, 3);

    capture_begin();
    report_summary(&c, &base, 60, "up");
    report_summary(&c, &base, 60, "up"); /* nothing new: no line */
    report_count(&c, AUDIT_REVOKED);
    report_summary(&c, &base, 60, "paused");
    CHECK_STR(capture_end(), "<5>last 60 s: 2 revoked, 1 already invalid, 1 rejected, 1 gave up, 3 retries; "
                             "endpoint up\n"
                             "<5>last 60 s: 1 revoked, 0 already invalid, 0 rejected, 0 gave up, 0 retries; "
                             "endpoint paused\n");
    CHECK_INT(base.revoked, 3);
    CHECK_INT(base.retried, 3);
}

static void set_outcome(struct job *j, enum outcome class, enum audit_event_kind e, long status,
                        const char *detail)
{
    memset(j, 0, sizeof(*j));
    j->id = 42;
    snprintf(j->fingerprint, sizeof(j->fingerprint), "0123456789abcdef");
    j->out.class = class;
    j->out.rec.event = e;
    j->out.rec.http_status = status;
    snprintf(j->out.detail, sizeof(j->out.detail), "%s", detail);
}

static void test_outcome_lines(void)
{
    static const struct {
        enum outcome class;
        enum audit_event_kind event;
        long status;
        const char *detail;
    } cases[] = {
        {OUTCOME_REVOKED, AUDIT_REVOKED, 200, "HTTP 200"},
        {OUTCOME_REJECTED, AUDIT_REJECTED, 422, "HTTP 422: bad"},
        {OUTCOME_TOKEN_RETRY, AUDIT_GAVE_UP, 500, "HTTP 500 on attempt 3 of 3; giving up"},
        {OUTCOME_TOKEN_RETRY, AUDIT_RETRY, 500, "HTTP 500 on attempt 1 of 3"},
        {OUTCOME_ENDPOINT_DOWN, AUDIT_RETRY, 502, "endpoint failure: HTTP 502"},
    };
    struct job j;

    capture_begin();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_outcome(&j, cases[i].class, cases[i].event, cases[i].status, cases[i].detail);
        report_outcome(&j);
    }
    set_outcome(&j, OUTCOME_REJECTED, AUDIT_REJECTED, 0, "not sent: x");
    report_unsendable(&j);
    CHECK_STR(capture_end(), "<7>token 42 (0123456789abcdef): revoked: HTTP 200\n"
                             "<4>token 42 (0123456789abcdef): rejected: HTTP 422: bad\n"
                             "<4>token 42 (0123456789abcdef): gave_up: HTTP 500 on attempt 3 of 3; giving up\n"
                             "<6>token 42 (0123456789abcdef): retry: HTTP 500 on attempt 1 of 3\n"
                             "<7>token 42 (0123456789abcdef): retry: endpoint failure: HTTP 502\n"
                             "<4>token 42 (0123456789abcdef): rejected: not sent: x\n");
}

/* The engine's other lines about one token: the text names it by id and
 * fingerprint (the journal fields are test_log's). */
static void test_engine_token_lines(void)
{
    struct job j;

    set_outcome(&j, OUTCOME_REVOKED, AUDIT_REVOKED, 200, "HTTP 200");
    capture_begin();
    report_submit_failed(&j, -ENOMEM, 100);
    report_state_replaced(&j, TOKEN_FAILED);
    report_row_gone(&j);
    CHECK_STR(capture_end(), "<3>cannot start a request for token 42: Cannot allocate memory; retrying in 100 ms\n"
                             "<5>token 42 (0123456789abcdef): another process set its state to 'failed' while its "
                             "request was in flight; revokerd's outcome (revoked) replaces it: the state column is "
                             "revokerd's\n"
                             "<5>token 42 (0123456789abcdef) was deleted by another process while its request was "
                             "in flight; outcome revoked not recorded\n");
}

static void test_health_lines(void)
{
    struct health h;

    health_init(&h, 3, 1000, 60000);
    capture_begin();
    h.state = HEALTH_DOWN;
    snprintf(h.last_error, sizeof(h.last_error), "curl error 7 (refused)");
    report_health_change(&h, 3, 0);
    h.state = HEALTH_UP;
    h.misconfigured = true;
    snprintf(h.last_error, sizeof(h.last_error), "HTTP 404");
    report_health_change(&h, 3, 0);
    h.misconfigured = false;
    report_health_change(&h, 3, 0);
    CHECK_STR(capture_end(), "<4>logout endpoint is down after 3 failures in a row (curl error 7 (refused)); "
                             "probing once per backoff interval, no token is failed meanwhile\n"
                             "<4>logout endpoint looks misconfigured (HTTP 404): check logout.url; no token is "
                             "failed\n"
                             "<5>logout endpoint is up again\n");
}

static void setup(void)
{
    capture_begin();
    log_init("revokerd"); /* stderr is a file: "<N>" lines */
    log_set_level(LOG_DEBUG);
    capture_end();
}

TEST_MAIN(CASE(setup), CASE(test_counts_and_summary), CASE(test_outcome_lines),
          CASE(test_engine_token_lines), CASE(test_health_lines))

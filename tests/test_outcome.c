/* Unit tests for outcome: one table of answers and what each means for the
 * token (event, state, attempts, next attempt, texts) and for the endpoint
 * (class, Retry-After). Every field of the outcome is checked in every
 * case, so a change of any rule fails a row here. */
#include <stdint.h>

#include "outcome.h"
#include "unit.h"
#include "util.h"

#define NOW 1700000000000LL /* Tue, 14 Nov 2023 22:13:20 GMT */
#define TOKEN "tok-SECRET-abcdef123"
#define FP "0123456789abcdef"
#define DURATION 37
#define NOT_COUNTED "; not counted towards attempts; retried when the endpoint answers"

static const struct outcome_settings dflt = {
    .max_attempts = 3,
    .retry_base_ms = 1000,
    .retry_max_delay_ms = 60000,
    .retry_after_max_ms = 3600000,
    .keep_secrets = false,
};
static const struct outcome_settings keep = {
    .max_attempts = 3, .retry_base_ms = 1000, .retry_max_delay_ms = 60000,
    .retry_after_max_ms = 3600000, .keep_secrets = true,
};
static const struct outcome_settings slow_base = {
    .max_attempts = 8, .retry_base_ms = 5000, .retry_max_delay_ms = 60000,
    .retry_after_max_ms = 3600000,
};
static const struct outcome_settings no_retry_after = {
    .max_attempts = 3, .retry_base_ms = 1000, .retry_max_delay_ms = 60000,
    .retry_after_max_ms = 0,
};

struct ocase {
    const char *name;
    /* the answer and the job */
    long status;
    CURLcode curl;
    const char *error, *retry_after, *body;
    unsigned attempts;
    uint64_t rnd;
    const struct outcome_settings *s; /* NULL: dflt */
    /* the outcome */
    enum outcome class;
    uint64_t retry_after_ms;
    enum audit_event_kind event;
    enum token_state state;
    unsigned new_attempts;
    int64_t wait_ms;                  /* next_attempt_at - NOW; 0: not pending, next_attempt_at 0 */
    bool drop_secret;
    const char *detail, *last_error;  /* last_error NULL: none (a success) */
};

static const struct ocase cases[] = {
    /* 2xx and 401: revoked, final. */
    {.name = "200", .status = 200, .attempts = 0, .class = OUTCOME_REVOKED, .event = AUDIT_REVOKED,
     .state = TOKEN_REVOKED, .new_attempts = 0, .drop_secret = true, .detail = "HTTP 200"},
    {.name = "204 after retries", .status = 204, .attempts = 2, .class = OUTCOME_REVOKED,
     .event = AUDIT_REVOKED, .state = TOKEN_REVOKED, .new_attempts = 2, .drop_secret = true,
     .detail = "HTTP 204"},
    {.name = "200 keep_secrets", .status = 200, .s = &keep, .class = OUTCOME_REVOKED, .event = AUDIT_REVOKED,
     .state = TOKEN_REVOKED, .drop_secret = false, .detail = "HTTP 200"},
    {.name = "299 with a body", .status = 299, .body = "{\"detail\":\"ignored " TOKEN "\"}",
     .class = OUTCOME_REVOKED, .event = AUDIT_REVOKED, .state = TOKEN_REVOKED, .drop_secret = true,
     .detail = "HTTP 299"},
    {.name = "200 ignores Retry-After", .status = 200, .retry_after = "120", .class = OUTCOME_REVOKED,
     .event = AUDIT_REVOKED, .state = TOKEN_REVOKED, .drop_secret = true, .detail = "HTTP 200"},
    {.name = "401", .status = 401, .attempts = 1, .class = OUTCOME_ALREADY_INVALID,
     .event = AUDIT_ALREADY_INVALID, .state = TOKEN_REVOKED, .new_attempts = 1, .drop_secret = true,
     .detail = "HTTP 401: the token was already invalid"},
    {.name = "401 keep_secrets", .status = 401, .s = &keep, .class = OUTCOME_ALREADY_INVALID,
     .event = AUDIT_ALREADY_INVALID, .state = TOKEN_REVOKED, .drop_secret = false,
     .detail = "HTTP 401: the token was already invalid"},

    /* Other 4xx: rejected, failed, the body's message in the detail. */
    {.name = "422 FastAPI", .status = 422, .attempts = 2,
     .body = "{\"detail\":[{\"loc\":[\"header\",\"authorization\"],\"msg\":\"token malformed\","
             "\"type\":\"value_error\"}]}",
     .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED, .state = TOKEN_FAILED, .new_attempts = 2,
     .detail = "HTTP 422: token malformed", .last_error = "HTTP 422: token malformed"},
    {.name = "400 detail string", .status = 400, .body = "{\"detail\":\"bad request here\"}",
     .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 400: bad request here", .last_error = "HTTP 400: bad request here"},
    {.name = "403 text with control characters", .status = 403, .body = "forbidden\r\n\tnow\x7f!",
     .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 403: forbidden   now !", .last_error = "HTTP 403: forbidden   now !"},
    {.name = "422 empty body", .status = 422, .body = "", .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED,
     .state = TOKEN_FAILED, .detail = "HTTP 422: (no message)", .last_error = "HTTP 422: (no message)"},
    {.name = "400 garbage", .status = 400, .body = "<html><body>Bad</body></html>",
     .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 400: <html><body>Bad</body></html>",
     .last_error = "HTTP 400: <html><body>Bad</body></html>"},
    {.name = "422 JSON without a message", .status = 422, .body = "{\"detail\": 5}",
     .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 422: {\"detail\": 5}", .last_error = "HTTP 422: {\"detail\": 5}"},
    {.name = "422 msg not a string", .status = 422, .body = "{\"detail\":[{\"msg\":7}]}",
     .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 422: {\"detail\":[{\"msg\":7}]}", .last_error = "HTTP 422: {\"detail\":[{\"msg\":7}]}"},
    {.name = "400 truncated JSON", .status = 400, .body = "{\"detail\":\"cut", .class = OUTCOME_REJECTED,
     .event = AUDIT_REJECTED, .state = TOKEN_FAILED, .detail = "HTTP 400: {\"detail\":\"cut",
     .last_error = "HTTP 400: {\"detail\":\"cut"},
    {.name = "422 msg quotes the token", .status = 422,
     .body = "{\"detail\":[{\"msg\":\"invalid token " TOKEN " given\"}]}", .class = OUTCOME_REJECTED,
     .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 422: (the answer quoted the token; not recorded)",
     .last_error = "HTTP 422: (the answer quoted the token; not recorded)"},
    {.name = "400 text quotes the token", .status = 400, .body = "Bearer " TOKEN, .class = OUTCOME_REJECTED,
     .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 400: (the answer quoted the token; not recorded)",
     .last_error = "HTTP 400: (the answer quoted the token; not recorded)"},
    {.name = "400 garbage quoting the token", .status = 400, .body = "<p>" TOKEN "</p>\x01",
     .class = OUTCOME_REJECTED, .event = AUDIT_REJECTED, .state = TOKEN_FAILED,
     .detail = "HTTP 400: (the answer quoted the token; not recorded)",
     .last_error = "HTTP 400: (the answer quoted the token; not recorded)"},
    {.name = "404 quoting the token is no rejection", .status = 404, .body = TOKEN,
     .class = OUTCOME_ENDPOINT_MISCONFIGURED, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
     .wait_ms = 1000, .detail = "endpoint misconfigured: HTTP 404" NOT_COUNTED, .last_error = "HTTP 404"},

    /* 500, 501, 505, 1xx: token-level, counted, gave_up at max_attempts. */
    {.name = "500 first", .status = 500, .attempts = 0, .rnd = UINT64_MAX, .class = OUTCOME_TOKEN_RETRY,
     .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 1, .wait_ms = 1000,
     .detail = "HTTP 500 on attempt 1 of 3; next attempt in 1s", .last_error = "HTTP 500"},
    {.name = "500 second, top of the jitter", .status = 500, .attempts = 1, .rnd = UINT64_MAX,
     .class = OUTCOME_TOKEN_RETRY, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 2,
     .wait_ms = 2000, .detail = "HTTP 500 on attempt 2 of 3; next attempt in 2s", .last_error = "HTTP 500"},
    {.name = "500 second, bottom of the jitter", .status = 500, .attempts = 1, .rnd = 0,
     .class = OUTCOME_TOKEN_RETRY, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 2,
     .wait_ms = 1000, .detail = "HTTP 500 on attempt 2 of 3; next attempt in 1s", .last_error = "HTTP 500"},
    {.name = "500 middle of the jitter", .status = 500, .attempts = 1, .rnd = UINT64_MAX / 2 + 1,
     .class = OUTCOME_TOKEN_RETRY, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 2,
     .wait_ms = 1500, .detail = "HTTP 500 on attempt 2 of 3; next attempt in 1s 500ms",
     .last_error = "HTTP 500"},
    {.name = "500 last", .status = 500, .attempts = 2, .rnd = UINT64_MAX, .class = OUTCOME_TOKEN_RETRY,
     .event = AUDIT_GAVE_UP, .state = TOKEN_FAILED, .new_attempts = 3,
     .detail = "HTTP 500 on attempt 3 of 3; giving up", .last_error = "HTTP 500"},
    {.name = "500 past the last", .status = 500, .attempts = 7, .class = OUTCOME_TOKEN_RETRY,
     .event = AUDIT_GAVE_UP, .state = TOKEN_FAILED, .new_attempts = 8,
     .detail = "HTTP 500 on attempt 8 of 3; giving up", .last_error = "HTTP 500"},
    {.name = "500 body not recorded", .status = 500, .body = "{\"detail\":\"" TOKEN "\"}",
     .class = OUTCOME_TOKEN_RETRY, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 1,
     .wait_ms = 1000, .detail = "HTTP 500 on attempt 1 of 3; next attempt in 1s", .last_error = "HTTP 500"},
    {.name = "501", .status = 501, .class = OUTCOME_TOKEN_RETRY, .event = AUDIT_RETRY,
     .state = TOKEN_PENDING, .new_attempts = 1, .wait_ms = 1000,
     .detail = "HTTP 501 on attempt 1 of 3; next attempt in 1s", .last_error = "HTTP 501"},
    {.name = "505 ignores Retry-After", .status = 505, .retry_after = "120", .class = OUTCOME_TOKEN_RETRY,
     .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 1, .wait_ms = 1000,
     .detail = "HTTP 505 on attempt 1 of 3; next attempt in 1s", .last_error = "HTTP 505"},
    {.name = "100", .status = 100, .s = &slow_base, .attempts = 3, .rnd = UINT64_MAX,
     .class = OUTCOME_TOKEN_RETRY, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 4,
     .wait_ms = 40000, .detail = "HTTP 100 on attempt 4 of 8; next attempt in 40s", .last_error = "HTTP 100"},

    /* No answer: endpoint-level, attempts kept, at least retry.base. */
    {.name = "connection refused", .status = 0, .curl = CURLE_COULDNT_CONNECT, .attempts = 2,
     .error = "Failed to connect to 127.0.0.1 port 9 after 0 ms: Connection refused",
     .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 2,
     .wait_ms = 1000,
     .detail = "endpoint failure: curl error 7 (Failed to connect to 127.0.0.1 port 9 after 0 ms: "
               "Connection refused)" NOT_COUNTED,
     .last_error = "curl error 7 (Failed to connect to 127.0.0.1 port 9 after 0 ms: Connection refused)"},
    {.name = "timeout without curl's message", .status = 0, .curl = CURLE_OPERATION_TIMEDOUT, .error = "",
     .s = &slow_base, .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
     .wait_ms = 5000, .detail = "endpoint failure: curl error 28 (Timeout was reached)" NOT_COUNTED,
     .last_error = "curl error 28 (Timeout was reached)"},

    /* 408, 429, 502-504 and 3xx, 404, 405: endpoint-level. */
    {.name = "408", .status = 408, .attempts = 1, .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY,
     .state = TOKEN_PENDING, .new_attempts = 1, .wait_ms = 1000,
     .detail = "endpoint failure: HTTP 408" NOT_COUNTED, .last_error = "HTTP 408"},
    {.name = "502", .status = 502, .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY,
     .state = TOKEN_PENDING, .wait_ms = 1000, .detail = "endpoint failure: HTTP 502" NOT_COUNTED,
     .last_error = "HTTP 502"},
    {.name = "502 ignores Retry-After", .status = 502, .retry_after = "120", .class = OUTCOME_ENDPOINT_DOWN,
     .event = AUDIT_RETRY, .state = TOKEN_PENDING, .wait_ms = 1000,
     .detail = "endpoint failure: HTTP 502" NOT_COUNTED, .last_error = "HTTP 502"},
    {.name = "504", .status = 504, .attempts = 2, .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY,
     .state = TOKEN_PENDING, .new_attempts = 2, .wait_ms = 1000,
     .detail = "endpoint failure: HTTP 504" NOT_COUNTED, .last_error = "HTTP 504"},
    {.name = "302", .status = 302, .class = OUTCOME_ENDPOINT_MISCONFIGURED, .event = AUDIT_RETRY,
     .state = TOKEN_PENDING, .wait_ms = 1000, .detail = "endpoint misconfigured: HTTP 302" NOT_COUNTED,
     .last_error = "HTTP 302"},
    {.name = "405", .status = 405, .attempts = 2, .class = OUTCOME_ENDPOINT_MISCONFIGURED,
     .event = AUDIT_RETRY, .state = TOKEN_PENDING, .new_attempts = 2, .wait_ms = 1000,
     .detail = "endpoint misconfigured: HTTP 405" NOT_COUNTED, .last_error = "HTTP 405"},

    /* Retry-After on 429 and 503: seconds, an HTTP date, garbage, huge. */
    {.name = "429 without Retry-After", .status = 429, .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY,
     .state = TOKEN_PENDING, .wait_ms = 1000, .detail = "endpoint failure: HTTP 429" NOT_COUNTED,
     .last_error = "HTTP 429"},
    {.name = "429 Retry-After seconds", .status = 429, .retry_after = "120", .attempts = 1,
     .class = OUTCOME_ENDPOINT_DOWN, .retry_after_ms = 120000, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
     .new_attempts = 1, .wait_ms = 120000,
     .detail = "endpoint: HTTP 429; every request paused for 2min (Retry-After)", .last_error = "HTTP 429"},
    {.name = "503 Retry-After HTTP date", .status = 503, .retry_after = "Tue, 14 Nov 2023 22:15:20 GMT",
     .class = OUTCOME_ENDPOINT_DOWN, .retry_after_ms = 120000, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
     .wait_ms = 120000, .detail = "endpoint: HTTP 503; every request paused for 2min (Retry-After)",
     .last_error = "HTTP 503"},
    {.name = "503 Retry-After date in the past", .status = 503, .retry_after = "Tue, 14 Nov 2023 22:00:00 GMT",
     .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .wait_ms = 1000,
     .detail = "endpoint failure: HTTP 503" NOT_COUNTED, .last_error = "HTTP 503"},
    {.name = "429 Retry-After garbage", .status = 429, .retry_after = "soon", .class = OUTCOME_ENDPOINT_DOWN,
     .event = AUDIT_RETRY, .state = TOKEN_PENDING, .wait_ms = 1000,
     .detail = "endpoint failure: HTTP 429" NOT_COUNTED, .last_error = "HTTP 429"},
    {.name = "429 Retry-After fraction", .status = 429, .retry_after = "1.5", .class = OUTCOME_ENDPOINT_DOWN,
     .event = AUDIT_RETRY, .state = TOKEN_PENDING, .wait_ms = 1000,
     .detail = "endpoint failure: HTTP 429" NOT_COUNTED, .last_error = "HTTP 429"},
    {.name = "429 Retry-After negative", .status = 429, .retry_after = "-5", .class = OUTCOME_ENDPOINT_DOWN,
     .event = AUDIT_RETRY, .state = TOKEN_PENDING, .wait_ms = 1000,
     .detail = "endpoint failure: HTTP 429" NOT_COUNTED, .last_error = "HTTP 429"},
    {.name = "429 Retry-After huge, capped", .status = 429, .retry_after = "99999999999999999999999",
     .class = OUTCOME_ENDPOINT_DOWN, .retry_after_ms = 3600000, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
     .wait_ms = 3600000, .detail = "endpoint: HTTP 429; every request paused for 1h (Retry-After)",
     .last_error = "HTTP 429"},
    {.name = "503 Retry-After with spaces", .status = 503, .retry_after = "  30 ", .class = OUTCOME_ENDPOINT_DOWN,
     .retry_after_ms = 30000, .event = AUDIT_RETRY, .state = TOKEN_PENDING, .wait_ms = 30000,
     .detail = "endpoint: HTTP 503; every request paused for 30s (Retry-After)", .last_error = "HTTP 503"},
    {.name = "429 Retry-After shorter than base", .status = 429, .retry_after = "1", .s = &slow_base,
     .class = OUTCOME_ENDPOINT_DOWN, .retry_after_ms = 1000, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
     .wait_ms = 5000, .detail = "endpoint: HTTP 429; every request paused for 1s (Retry-After)",
     .last_error = "HTTP 429"},
    {.name = "429 Retry-After when retry_after_max is 0", .status = 429, .retry_after = "120",
     .s = &no_retry_after, .class = OUTCOME_ENDPOINT_DOWN, .event = AUDIT_RETRY, .state = TOKEN_PENDING,
     .wait_ms = 1000, .detail = "endpoint failure: HTTP 429" NOT_COUNTED, .last_error = "HTTP 429"},
};

static void fill_answer(const struct ocase *c, struct http_result *res)
{
    memset(res, 0, sizeof(*res));
    res->status = c->status;
    res->curl_code = c->curl;
    snprintf(res->error, sizeof(res->error), "%s", c->error ? c->error : "");
    snprintf(res->retry_after, sizeof(res->retry_after), "%s", c->retry_after ? c->retry_after : "");
    snprintf(res->body, sizeof(res->body), "%s", c->body ? c->body : "");
    res->duration_ms = DURATION;
}

/* What every outcome of the job shares, whatever the answer. */
static void check_common(const struct outcome_result *o, int attempt, const char *name)
{
    const struct outcome_record *rec = &o->rec;

    CHECK_INT(rec->token_id, 42);
    CHECK(rec->fingerprint && strcmp(rec->fingerprint, FP) == 0);
    CHECK_INT(rec->attempt, attempt);
    CHECK_INT(rec->at_ms, NOW);
    CHECK(rec->detail == o->detail);
    CHECK(!rec->last_error || rec->last_error == o->last_error);
    CHECK(!strstr(o->detail, TOKEN) && !strstr(o->last_error, TOKEN));
    if (strstr(o->detail, TOKEN))
        fprintf(stderr, "%s: the detail holds the token\n", name);
}

static void test_table(void)
{
    const struct outcome_job job0 = {.id = 42, .fingerprint = FP, .token = TOKEN, .token_len = strlen(TOKEN)};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ocase *c = &cases[i];
        struct outcome_job job = job0;
        struct http_result res;
        struct outcome_result o;
        int before = unit_failures;

        job.attempts = c->attempts;
        fill_answer(c, &res);
        memset(&o, 0xa5, sizeof(o));
        outcome_of_answer(&job, &res, c->s ? c->s : &dflt, NOW, c->rnd, &o);
        const struct outcome_record *rec = &o.rec;
        /* the audit's attempt: an endpoint-level failure is not one, so
         * the count as it stands; any other answer was attempt n + 1 */
        int attempt = policy_is_endpoint_level(c->class) ? (int)c->attempts : (int)c->attempts + 1;
        check_common(&o, attempt, c->name);
        CHECK_INT(o.class, c->class);
        CHECK_INT(o.retry_after_ms, c->retry_after_ms);
        CHECK_INT(rec->event, c->event);
        CHECK_INT(rec->state, c->state);
        CHECK_INT(rec->attempts, c->new_attempts);
        CHECK_INT(rec->next_attempt_at, c->wait_ms ? NOW + c->wait_ms : 0);
        CHECK_INT(rec->http_status, c->status);
        CHECK_INT(rec->duration_ms, DURATION);
        CHECK_INT(rec->drop_secret, c->drop_secret);
        CHECK_STR(o.detail, c->detail);
        if (c->last_error)
            CHECK_STR(rec->last_error, c->last_error);
        else
            CHECK(rec->last_error == NULL);
        if (unit_failures != before)
            fprintf(stderr, "  in case \"%s\": detail \"%s\", last_error \"%s\"\n", c->name, o.detail,
                    rec->last_error ? rec->last_error : "(none)");
    }
}

/* The body's start is kept (200 bytes): a token cut off at the end is
 * still caught from its first 8 bytes on; 7 bytes are not the token. */
static void test_quoted_token_cut_off(void)
{
    const struct outcome_job job = {.id = 42, .fingerprint = FP, .token = TOKEN, .token_len = strlen(TOKEN)};
    struct http_result res;
    struct outcome_result o;
    char want[256];

    for (size_t pad = 185; pad <= 196; pad++) {
        memset(&res, 0, sizeof(res));
        res.status = 400;
        memset(res.body, 'a', pad);
        snprintf(res.body + pad, sizeof(res.body) - pad, "%s", TOKEN);
        outcome_of_answer(&job, &res, &dflt, NOW, 0, &o);
        size_t kept = 199 - pad; /* bytes of the token that fit */
        if (kept >= 8)
            snprintf(want, sizeof(want), "HTTP 400: (the answer quoted the token; not recorded)");
        else
            snprintf(want, sizeof(want), "HTTP 400: %.*s%.*s", (int)pad, res.body, (int)kept, TOKEN);
        CHECK_STR(o.detail, want);
        CHECK_STR(o.rec.last_error, want);
        CHECK_INT(o.rec.event, AUDIT_REJECTED);
    }
}

/* A token of 8 bytes or fewer is caught only whole. */
static void test_short_token(void)
{
    const struct outcome_job job = {.id = 42, .fingerprint = FP, .token = "abcdefgh", .token_len = 8};
    struct http_result res = {.status = 422};
    struct outcome_result o;

    snprintf(res.body, sizeof(res.body), "{\"detail\":\"x abcdefgh y\"}");
    outcome_of_answer(&job, &res, &dflt, NOW, 0, &o);
    CHECK_STR(o.detail, "HTTP 422: (the answer quoted the token; not recorded)");
    snprintf(res.body, sizeof(res.body), "{\"detail\":\"x abcdefg\"}");
    outcome_of_answer(&job, &res, &dflt, NOW, 0, &o);
    CHECK_STR(o.detail, "HTTP 422: x abcdefg");
}

/* The longest message curl writes (CURL_ERROR_SIZE - 1 bytes) stays whole
 * in the reason and in the detail built around it. (Only a curl error, an
 * endpoint failure, makes a long reason: the others are "HTTP N".) */
static void test_long_texts(void)
{
    const struct outcome_job job = {.id = 42, .fingerprint = FP, .token = TOKEN, .token_len = strlen(TOKEN)};
    struct http_result res = {.status = 0, .curl_code = CURLE_COULDNT_RESOLVE_HOST};
    struct outcome_result o;
    char why[512], want[1024];

    memset(res.error, 'e', sizeof(res.error) - 1);
    snprintf(why, sizeof(why), "curl error 6 (%s)", res.error);
    outcome_of_answer(&job, &res, &dflt, NOW, 0, &o);
    snprintf(want, sizeof(want), "endpoint failure: %s" NOT_COUNTED, why);
    CHECK_STR(o.detail, want);
    CHECK_STR(o.last_error, why);
    CHECK(!strstr(o.detail, UTIL_ELLIPSIS));
}

static void test_unsendable(void)
{
    const struct outcome_job job = {.id = 42, .fingerprint = FP, .token = "has space", .token_len = 9,
                                    .attempts = 4};
    struct outcome_result o;

    memset(&o, 0xa5, sizeof(o));
    outcome_of_unsendable(&job, NOW, &o);
    check_common(&o, 4, "unsendable"); /* never sent: no attempt */
    CHECK_INT(o.class, OUTCOME_REJECTED);
    CHECK_INT(o.retry_after_ms, 0);
    CHECK_INT(o.rec.event, AUDIT_REJECTED);
    CHECK_INT(o.rec.state, TOKEN_FAILED);
    CHECK_INT(o.rec.attempts, 4);
    CHECK_INT(o.rec.next_attempt_at, 0);
    CHECK_INT(o.rec.http_status, 0);
    CHECK_INT(o.rec.duration_ms, 0);
    CHECK_INT(o.rec.drop_secret, false);
    CHECK_STR(o.detail, "not sent: the token is empty, longer than 8192 bytes, or holds spaces or control "
                        "characters");
    CHECK_STR(o.rec.last_error, o.detail);
}

TEST_MAIN(CASE(test_table), CASE(test_quoted_token_cut_off), CASE(test_short_token), CASE(test_long_texts),
          CASE(test_unsendable))

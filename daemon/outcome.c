/* outcome: the rules of outcome.h that turn an answer into a record. */
#include "outcome.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "secret.h"
#include "util.h"

_Static_assert(sizeof(((struct token_status *)0)->last_error) >= OUTCOME_TEXT_MAX,
               "revokerctl status shows a last_error whole");

/* True when text (n bytes) holds the token, or ends with its first 8 bytes
 * or more: the server quoted it and our cut fell inside it. */
static bool quotes_token(const char *text, size_t n, const char *token, size_t token_len)
{
    if (token_len == 0)
        return false;
    if (strstr(text, token))
        return true;
    for (size_t k = 8; k < token_len && k <= n; k++)
        if (memcmp(text + n - k, token, k) == 0)
            return true;
    return false;
}

/* The validation message of a FastAPI-style 422 body, else the body's start
 * with control characters dropped; never the token if the server echoed it. */
static void describe_rejection(const struct outcome_job *j, const struct http_result *res, char *buf,
                               size_t len)
{
    json_t *root = json_loads(res->body, 0, NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(root, "detail"), 0), "msg");
    const char *text = json_is_string(msg) ? json_string_value(msg) : NULL;
    json_t *detail = json_object_get(root, "detail");
    char clean[200];
    size_t n = 0;

    if (!text && json_is_string(detail))
        text = json_string_value(detail);
    if (!text)
        text = res->body;
    for (const char *p = text; *p && n + 1 < sizeof(clean); p++)
        clean[n++] = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
    clean[n] = '\0';
    if (quotes_token(clean, n, j->token, j->token_len))
        util_format(clean, sizeof(clean), "(the answer quoted the token; not recorded)");
    util_format(buf, len, "HTTP %ld: %s", res->status, n ? clean : "(no message)");
    json_decref(root);
}

static void describe_failure(const struct http_result *res, char *buf, size_t len)
{
    if (res->status)
        util_format(buf, len, "HTTP %ld", res->status);
    else
        util_format(buf, len, "curl error %d (%s)", (int)res->curl_code,
                    res->error[0] ? res->error : curl_easy_strerror(res->curl_code));
}

/* The fields every outcome of job j shares; the caller fills in the rest. */
static void result_init(const struct outcome_job *j, int64_t now_ms, struct outcome_result *ret)
{
    struct outcome_record *rec = &ret->rec;

    memset(ret, 0, sizeof(*ret));
    rec->token_id = j->id;
    rec->fingerprint = j->fingerprint;
    rec->attempts = j->attempts;
    rec->attempt = (int)j->attempts + 1; /* this answer was an attempt: the endpoint's are not */
    rec->detail = ret->detail;
    rec->at_ms = now_ms;
}

/* last_error = text: the outcome is not a success. */
static void set_last_error(struct outcome_result *ret, const char *text)
{
    util_format(ret->last_error, sizeof(ret->last_error), "%s", text);
    ret->rec.last_error = ret->last_error;
}

void outcome_of_answer(const struct outcome_job *j, const struct http_result *res,
                       const struct outcome_settings *s, int64_t now_ms, uint64_t rnd,
                       struct outcome_result *ret)
{
    struct outcome_record *rec = &ret->rec;
    enum outcome o = policy_classify(res->status);
    uint64_t retry_after_ms = 0;
    char why[OUTCOME_WHY_MAX];
    char span[64];

    result_init(j, now_ms, ret);
    ret->class = o;
    if ((res->status == 429 || res->status == 503) && res->retry_after[0])
        policy_parse_retry_after(res->retry_after, now_ms / 1000, s->retry_after_max_ms, &retry_after_ms);
    ret->retry_after_ms = retry_after_ms;
    rec->http_status = res->status;
    rec->duration_ms = (int64_t)res->duration_ms;
    describe_failure(res, why, sizeof(why));

    switch (o) {
    case OUTCOME_REVOKED:
    case OUTCOME_ALREADY_INVALID:
        rec->event = o == OUTCOME_REVOKED ? AUDIT_REVOKED : AUDIT_ALREADY_INVALID;
        rec->state = TOKEN_REVOKED;
        rec->drop_secret = !s->keep_secrets;
        util_format(ret->detail, sizeof(ret->detail), "HTTP %ld%s", res->status,
                    o == OUTCOME_ALREADY_INVALID ? ": the token was already invalid" : "");
        break;
    case OUTCOME_REJECTED:
        rec->event = AUDIT_REJECTED;
        rec->state = TOKEN_FAILED;
        describe_rejection(j, res, ret->detail, sizeof(ret->detail));
        set_last_error(ret, ret->detail);
        break;
    case OUTCOME_TOKEN_RETRY:
        rec->attempts = j->attempts + 1;
        set_last_error(ret, why);
        if (rec->attempts >= s->max_attempts) {
            rec->event = AUDIT_GAVE_UP;
            rec->state = TOKEN_FAILED;
            util_format(ret->detail, sizeof(ret->detail), "%s on attempt %u of %u; giving up", why, rec->attempts,
                        s->max_attempts);
        } else {
            uint64_t wait = policy_backoff_ms(s->retry_base_ms, s->retry_max_delay_ms, rec->attempts, rnd);
            rec->event = AUDIT_RETRY;
            rec->state = TOKEN_PENDING;
            rec->next_attempt_at = now_ms + (int64_t)wait;
            config_format_duration(wait, span, sizeof(span));
            util_format(ret->detail, sizeof(ret->detail), "%s on attempt %u of %u; next attempt in %s", why,
                        rec->attempts, s->max_attempts, span);
        }
        break;
    case OUTCOME_ENDPOINT_DOWN:
    case OUTCOME_ENDPOINT_MISCONFIGURED:
        /* The endpoint's fault, not the token's: attempts stay and the
         * health gate decides when requests go out. The token itself waits
         * at least retry.base: while other tokens keep the endpoint up, one
         * that is always reset or timed out must not be re-sent at once,
         * over and over. */
        rec->event = AUDIT_RETRY;
        rec->state = TOKEN_PENDING;
        rec->attempt = (int)j->attempts; /* not an attempt: the count as it stands */
        rec->next_attempt_at =
            now_ms + (int64_t)(retry_after_ms > s->retry_base_ms ? retry_after_ms : s->retry_base_ms);
        set_last_error(ret, why);
        if (retry_after_ms) {
            config_format_duration(retry_after_ms, span, sizeof(span));
            util_format(ret->detail, sizeof(ret->detail), "endpoint: %s; every request paused for %s (Retry-After)",
                        why, span);
        } else {
            util_format(ret->detail, sizeof(ret->detail), "endpoint %s: %s; not counted towards attempts; retried "
                        "when the endpoint answers", o == OUTCOME_ENDPOINT_MISCONFIGURED ? "misconfigured" : "failure",
                        why);
        }
        break;
    }
}

void outcome_of_unsendable(const struct outcome_job *j, int64_t now_ms, struct outcome_result *ret)
{
    struct outcome_record *rec = &ret->rec;

    result_init(j, now_ms, ret);
    ret->class = OUTCOME_REJECTED;
    rec->event = AUDIT_REJECTED;
    rec->state = TOKEN_FAILED;
    rec->attempt = (int)j->attempts; /* never sent: no attempt */
    util_format(ret->detail, sizeof(ret->detail), "not sent: the token is empty, longer than %d bytes, or holds "
                "spaces or control characters", SECRET_MAX_LEN);
    set_last_error(ret, ret->detail);
}

/* libFuzzer target for policy: the input as a Retry-After value and as
 * numbers for policy_classify, policy_backoff_ms and policy_timer_delay_ms.
 * Any broken invariant aborts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define NOW_S INT64_C(1700000000)
#define HOUR_MS UINT64_C(3600000)

static uint64_t take_u64(const uint8_t *data, size_t size, size_t at)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8 && at + i < size; i++)
        v |= (uint64_t)data[at + i] << (8 * i);
    return v;
}

static void check_retry_after(const char *value, int64_t now_s)
{
    static const uint64_t caps[] = {0, 1000, HOUR_MS, UINT64_MAX};
    uint64_t uncapped = 0;
    int r_max = policy_parse_retry_after(value, now_s, UINT64_MAX, &uncapped);
    if (r_max != 0 && r_max != -EINVAL)
        abort();

    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        const uint64_t canary = UINT64_C(0x5a5a5a5a5a5a5a5a);
        uint64_t delay = canary;
        int r = policy_parse_retry_after(value, now_s, caps[i], &delay);
        if (r != r_max)
            abort(); /* the cap never decides what parses */
        if (r == 0) {
            if (delay > caps[i])
                abort();
            if (delay != (uncapped < caps[i] ? uncapped : caps[i]))
                abort();
        } else if (delay != canary) {
            abort(); /* ret_* written only on success */
        }
    }

    /* Trimmed, all digits: always a delay. A leading '-' never is. */
    const char *b = value;
    while (*b == ' ' || *b == '\t')
        b++;
    size_t len = strlen(b);
    while (len > 0 && (b[len - 1] == ' ' || b[len - 1] == '\t'))
        len--;
    size_t digits = strspn(b, "0123456789");
    if (len > 0 && digits >= len && r_max != 0)
        abort();
    if (len > 0 && b[0] == '-' && r_max != -EINVAL)
        abort();
}

static void check_classify(long status)
{
    enum outcome o = policy_classify(status);
    if (strcmp(policy_outcome_name(o), "unknown") == 0)
        abort();
    bool endpoint = policy_is_endpoint_level(o);
    if (status >= 200 && status <= 299 && o != OUTCOME_REVOKED)
        abort();
    if (status == 401 && o != OUTCOME_ALREADY_INVALID)
        abort();
    if (o == OUTCOME_REJECTED && (status < 400 || status > 499))
        abort();
    if (endpoint != (o == OUTCOME_ENDPOINT_DOWN || o == OUTCOME_ENDPOINT_MISCONFIGURED))
        abort();
    if ((status < 0 || status >= 600) && o != OUTCOME_TOKEN_RETRY)
        abort();
}

static void check_backoff(uint64_t base, uint64_t max, unsigned n, uint64_t rnd)
{
    uint64_t v = policy_backoff_ms(base, max, n, rnd);
    uint64_t hi = max < base ? base : max;
    if (v < base || v > hi)
        abort();
    /* the upper end of the range is reached with rnd = UINT64_MAX and grows with n */
    uint64_t top = policy_backoff_ms(base, max, n, UINT64_MAX);
    if (v > top)
        abort();
    if (n < ~0u && policy_backoff_ms(base, max, n + 1, UINT64_MAX) < top)
        abort();
    if (policy_backoff_ms(base, max, n, 0) != base)
        abort();
}

static void check_timer(int64_t target, int64_t now, uint64_t cap)
{
    uint64_t d = policy_timer_delay_ms(target, now, cap);
    if (d > cap)
        abort();
    if (target <= now && d != 0)
        abort();
    if (target > now && cap > 0 && d == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = malloc(size + 1);
    if (!value)
        return 0;
    memcpy(value, data, size);
    value[size] = '\0';
    check_retry_after(value, NOW_S);
    check_retry_after(value, (int64_t)take_u64(data, size, 0));
    free(value);

    check_classify((long)take_u64(data, size, 0));
    if (size >= 2)
        check_classify((long)(data[0] | (data[1] << 8)) % 1000);

    check_backoff(take_u64(data, size, 0), take_u64(data, size, 8),
                  (unsigned)take_u64(data, size, 16), take_u64(data, size, 20));
    check_backoff(take_u64(data, size, 0) % 100000, take_u64(data, size, 8) % 10000000,
                  (unsigned)(take_u64(data, size, 16) % 80), take_u64(data, size, 20));
    check_timer((int64_t)take_u64(data, size, 0), (int64_t)take_u64(data, size, 8),
                take_u64(data, size, 16));
    return 0;
}

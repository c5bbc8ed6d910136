/* jwt: a JWT's `exp` (see jwt.h). */
#include "jwt.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>

#include "secret.h"

#define JWT_YEAR_2000 INT64_C(946684800)
#define JWT_YEAR_3000 INT64_C(32503680000) /* as in sql/005-bad-expiry.sql */

static bool b64url_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
        ch == '_';
}

/* The base64url text s (n bytes, no '.') into out (room for n * 3 / 4 + 3
 * bytes): 0 with *ret_len, or -EINVAL. */
static int b64url_decode(const char *s, size_t n, unsigned char *out, size_t *ret_len)
{
    char text[SECRET_MAX_LEN + 4];
    size_t chars = n, pad;
    int got;

    while (chars > 0 && s[chars - 1] == '=')
        chars--;
    if (chars == 0 || n - chars > 2 || (n != chars && n % 4 != 0) || chars % 4 == 1)
        return -EINVAL;
    for (size_t i = 0; i < chars; i++) {
        if (!b64url_char(s[i]))
            return -EINVAL;
        text[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    }
    pad = (4 - chars % 4) % 4;
    memset(text + chars, '=', pad);
    got = EVP_DecodeBlock(out, (const unsigned char *)text, (int)(chars + pad));
    secret_wipe(text, chars + pad);
    if (got < 0 || (size_t)got < pad)
        return -EINVAL;
    *ret_len = (size_t)got - pad; /* EVP_DecodeBlock counts the padding's zero bytes */
    return 0;
}

/* The claim as Unix seconds, or -EINVAL. */
static int exp_of(const json_t *payload, int64_t *ret_exp)
{
    const json_t *v = json_object_get(payload, "exp");
    int64_t exp;

    if (json_is_integer(v)) {
        exp = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d > (double)JWT_YEAR_2000 - 1.0 && d < (double)JWT_YEAR_3000)) /* also NaN */
            return -EINVAL;
        /* Rounded up, by hand: ceil() would need libm, which gcc inlines
         * and clang's fuzz build did not. */
        exp = (int64_t)d;
        if ((double)exp < d)
            exp++;
    } else {
        return -EINVAL;
    }
    if (exp < JWT_YEAR_2000 || exp >= JWT_YEAR_3000)
        return -EINVAL;
    *ret_exp = exp;
    return 0;
}

int jwt_exp(const char *token, size_t len, int64_t *ret_exp)
{
    unsigned char payload[SECRET_MAX_LEN / 4 * 3 + 3];
    const char *dot1, *dot2;
    size_t plen = 0;
    json_error_t je;
    int err;

    if (!token || len == 0 || len > SECRET_MAX_LEN)
        return -EINVAL;
    dot1 = memchr(token, '.', len);
    if (!dot1 || dot1 == token)
        return -EINVAL;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (!dot2 || dot2 == dot1 + 1 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return -EINVAL;
    /* The header and the signature only need to be base64url text. */
    for (const char *p = token; p < token + len; p++)
        if (p != dot1 && p != dot2 && !b64url_char(*p) && *p != '=')
            return -EINVAL;

    err = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, &plen);
    if (err < 0)
        return err;
    secret_wipe_json(); /* the claims' strings are wiped when jansson frees them */
    json_t *claims = json_loadb((const char *)payload, plen, JSON_REJECT_DUPLICATES, &je);
    secret_wipe(payload, sizeof(payload));
    if (!claims)
        return json_error_code(&je) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
    err = json_is_object(claims) ? exp_of(claims, ret_exp) : -EINVAL;
    json_decref(claims);
    return err;
}

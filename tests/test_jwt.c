/* test_jwt: which tokens carry a usable `exp`, as a table. */
#include <errno.h>
#include <openssl/evp.h>

#include "jwt.h"
#include "secret.h"
#include "unit.h"

/* base64url of s without padding (keep_pad: with it) into out. */
static void b64url(const char *s, size_t n, bool keep_pad, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    while (!keep_pad && len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
}

#define HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define SIG "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

enum shape { THREE, TWO, FOUR, PADDED, BAD_CHAR, EMPTY_SIG };

static const struct {
    const char *name;
    const char *payload; /* the JSON text, base64url-encoded into the token */
    enum shape shape;
    int rc;
    int64_t exp;
} cases[] = {
    {"integer", "{\"sub\":\"alice\",\"exp\":1795000000}", THREE, 0, 1795000000},
    {"integer, no other claim", "{\"exp\":1795000001}", THREE, 0, 1795000001},
    {"float rounded up", "{\"exp\":1795000000.25}", THREE, 0, 1795000001},
    {"float whole", "{\"exp\":1795000000.0}", THREE, 0, 1795000000},
    {"string", "{\"exp\":\"1795000000\"}", THREE, -EINVAL, 0},
    {"boolean", "{\"exp\":true}", THREE, -EINVAL, 0},
    {"null", "{\"exp\":null}", THREE, -EINVAL, 0},
    {"missing", "{\"sub\":\"alice\",\"iat\":1795000000}", THREE, -EINVAL, 0},
    {"zero", "{\"exp\":0}", THREE, -EINVAL, 0},
    {"negative", "{\"exp\":-1795000000}", THREE, -EINVAL, 0},
    {"before 2000", "{\"exp\":946684799}", THREE, -EINVAL, 0},
    {"2000 exactly", "{\"exp\":946684800}", THREE, 0, 946684800},
    {"milliseconds (after 3000)", "{\"exp\":1795000000000}", THREE, -EINVAL, 0},
    {"3000 exactly", "{\"exp\":32503680000}", THREE, -EINVAL, 0},
    {"huge integer", "{\"exp\":9223372036854775807}", THREE, -EINVAL, 0},
    {"too big for an integer", "{\"exp\":92233720368547758070}", THREE, -EINVAL, 0},
    {"huge float", "{\"exp\":1e300}", THREE, -EINVAL, 0},
    {"duplicate exp", "{\"exp\":1795000000,\"exp\":1}", THREE, -EINVAL, 0},
    {"nested exp only", "{\"a\":{\"exp\":1795000000}}", THREE, -EINVAL, 0},
    {"not JSON", "exp=1795000000", THREE, -EINVAL, 0},
    {"a JSON array", "[1795000000]", THREE, -EINVAL, 0},
    {"a JSON number", "1795000000", THREE, -EINVAL, 0},
    {"two parts", "{\"exp\":1795000000}", TWO, -EINVAL, 0},
    {"four parts", "{\"exp\":1795000000}", FOUR, -EINVAL, 0},
    {"padding", "{\"exp\":1795000000,\"p\":12}", PADDED, 0, 1795000000},
    {"bad base64url (+)", "{\"exp\":1795000000}", BAD_CHAR, -EINVAL, 0},
    {"unsecured, empty signature", "{\"exp\":1795000000}", EMPTY_SIG, 0, 1795000000},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char h[128], p[512], token[1024];
        bool pad = cases[i].shape == PADDED;
        b64url(HEADER, strlen(HEADER), pad, h);
        b64url(cases[i].payload, strlen(cases[i].payload), pad, p);
        switch (cases[i].shape) {
        case TWO: snprintf(token, sizeof(token), "%s.%s", h, p); break;
        case FOUR: snprintf(token, sizeof(token), "%s.%s.%s.%s", h, p, SIG, SIG); break;
        case BAD_CHAR: p[1] = '+'; /* fall through */
        case THREE:
        case PADDED: snprintf(token, sizeof(token), "%s.%s.%s", h, p, SIG); break;
        case EMPTY_SIG: snprintf(token, sizeof(token), "%s.%s.", h, p); break;
        }
        if (pad)
            CHECK(strchr(p, '=') != NULL); /* the case is what it says */
        int64_t exp = -1;
        int rc = jwt_exp(token, strlen(token), &exp);
        if (rc != cases[i].rc || (rc == 0 && exp != cases[i].exp))
            fprintf(stderr, "case '%s'\n", cases[i].name);
        CHECK_INT(rc, cases[i].rc);
        CHECK_INT(exp, rc == 0 ? cases[i].exp : -1); /* untouched on failure */
    }
}

/* Texts that are not built from a payload. */
static void test_malformed(void)
{
    static const char *const tokens[] = {
        "",
        "opaque-token-0123456789",
        "..",
        "a..c",
        ".eyJleHAiOjE3OTUwMDAwMDB9.c",            /* no header */
        "eyJhIjoxfQ.eyJleHAiOjE3OTUwMDAwMDB9=.c", /* padding that does not fit */
        "eyJhIjoxfQ.eyJleHAiOjE3OTUwMDAwMDB9A.c", /* length 4n+1: no base64 */
        "eyJhIjoxfQ.eyJleHAiOj E3OTUwMDAwMDB9.c", /* a space */
        "eyJhIjoxfQ.eyJleHAiOjE3OTUwMDAwMDB9.c d",
    };
    for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
        int64_t exp = -1;
        CHECK_INT(jwt_exp(tokens[i], strlen(tokens[i]), &exp), -EINVAL);
        CHECK_INT(exp, -1);
    }
    /* The same payload well formed is a JWT: the cases above fail for their shape. */
    static const char good[] = "eyJhIjoxfQ.eyJleHAiOjE3OTUwMDAwMDB9.c";
    int64_t exp = 0;
    CHECK_INT(jwt_exp(good, strlen(good), &exp), 0);
    CHECK_INT(exp, 1795000000);
}

/* A 16 KiB token (over SECRET_MAX_LEN) is refused by size; one of exactly
 * SECRET_MAX_LEN with a long claim is read. */
static void test_sizes(void)
{
    static char payload[16 * 1024], p[24 * 1024], token[32 * 1024];
    char h[128];
    int64_t exp = -1;

    b64url(HEADER, strlen(HEADER), false, h);
    int n = snprintf(payload, sizeof(payload), "{\"exp\":1795000000,\"x\":\"");
    size_t json_len = 16 * 1024 / 4 * 3; /* 16 KiB once encoded */
    memset(payload + n, 'x', json_len - n - 2);
    memcpy(payload + json_len - 2, "\"}", 3);
    b64url(payload, json_len, false, p);
    snprintf(token, sizeof(token), "%s.%s.%s", h, p, SIG);
    CHECK(strlen(token) > 16 * 1024);
    CHECK_INT(jwt_exp(token, strlen(token), &exp), -EINVAL);
    CHECK_INT(exp, -1);

    /* Exactly SECRET_MAX_LEN bytes: the claim cut to fit. */
    size_t room = SECRET_MAX_LEN - strlen(h) - strlen(SIG) - 2; /* payload chars */
    json_len = room / 4 * 3 + (room % 4 == 3 ? 2 : room % 4 == 2 ? 1 : 0);
    memset(payload + n, 'y', json_len - n - 2);
    memcpy(payload + json_len - 2, "\"}", 3);
    b64url(payload, json_len, false, p);
    snprintf(token, sizeof(token), "%s.%s.%s", h, p, SIG);
    CHECK_INT(strlen(token), SECRET_MAX_LEN);
    CHECK_INT(jwt_exp(token, strlen(token), &exp), 0);
    CHECK_INT(exp, 1795000000);
}

TEST_MAIN(CASE(test_table), CASE(test_malformed), CASE(test_sizes))

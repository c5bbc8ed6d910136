/* test_secret: the token rule, SHA-256 vectors, fingerprint and hex, wiping. */
#include "secret.h"
#include "unit.h"
#include "util.h"

static const struct {
    const char *input;
    size_t repeat; /* input repeated this many times */
    const char *hex;
} vectors[] = {
    /* FIPS 180-2 / NIST examples */
    {"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
};

static void test_vectors(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        size_t n = strlen(vectors[i].input), len = n * vectors[i].repeat;
        char *buf = malloc(len + 1);
        uint8_t digest[SECRET_SHA256_LEN];
        char hex[2 * SECRET_SHA256_LEN + 1], fp[SECRET_FP_LEN + 1];

        REQUIRE(buf);
        for (size_t k = 0; k < vectors[i].repeat; k++)
            memcpy(buf + k * n, vectors[i].input, n);
        REQUIRE(secret_sha256(buf, len, digest) == 0);
        secret_hex(digest, hex);
        CHECK_STR(hex, vectors[i].hex);
        /* the fingerprint is the first 16 hex digits of the digest */
        memset(fp, 'X', sizeof(fp));
        secret_fingerprint(digest, fp);
        CHECK_INT(strlen(fp), SECRET_FP_LEN);
        CHECK(strncmp(fp, vectors[i].hex, SECRET_FP_LEN) == 0);
        free(buf);
    }
}

static void test_fingerprint_abc(void)
{
    uint8_t digest[SECRET_SHA256_LEN];
    char fp[SECRET_FP_LEN + 1];

    REQUIRE(secret_sha256("abc", 3, digest) == 0);
    secret_fingerprint(digest, fp);
    CHECK_STR(fp, "ba7816bf8f01cfea");
}

/* Every byte value shows as two lower-case digits, in order. */
static void test_hex_bytes(void)
{
    uint8_t digest[SECRET_SHA256_LEN];
    char hex[2 * SECRET_SHA256_LEN + 1];

    for (size_t i = 0; i < SECRET_SHA256_LEN; i++)
        digest[i] = (uint8_t)(i * 8 + 7); /* 07 0f 17 ... ff */
    secret_hex(digest, hex);
    CHECK_STR(hex, "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
}

/* A literal and its length without the NUL. */
#define T(s) s, sizeof(s) - 1

/* The one rule for a token we can send: visible ASCII, 1..SECRET_MAX_LEN bytes. */
static void test_token_ok(void)
{
    static const struct {
        const char *t;
        size_t len;
        bool ok;
    } cases[] = {
        {T("tok-1"), true},
        {T("!"), true}, /* 0x21, the first visible byte */
        {T("~"), true}, /* 0x7e, the last */
        {T("A-Za-z0-9._~+/="), true}, /* RFC 6750 b64token */
        {T("{\"quoted\"}:;,<>?@[]^`|"), true}, /* visible, if not b64token */
        {T(""), false},
        {T("a b"), false}, /* 0x20 */
        {T("tab\there"), false},
        {T("x\r\nX-Evil: 1"), false},
        {T("n\0l"), false}, /* a NUL inside token_len */
        {T("del\x7f"), false},
        {T("caf\xc3\xa9"), false}, /* UTF-8: not ASCII */
        {T("\x80"), false},
        {T("\xff"), false},
        {T("\x01"), false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        if (secret_token_ok(cases[i].t, cases[i].len) != cases[i].ok) {
            fprintf(stderr, "case %zu: secret_token_ok gave %d\n", i, !cases[i].ok);
            unit_failures++;
        }
    }
    CHECK(!secret_token_ok(NULL, 3));

    /* The length limit: SECRET_MAX_LEN bytes go, one more does not. */
    static char big[SECRET_MAX_LEN + 1];
    memset(big, 'b', sizeof(big));
    CHECK(secret_token_ok(big, SECRET_MAX_LEN));
    CHECK(!secret_token_ok(big, SECRET_MAX_LEN + 1));
    big[SECRET_MAX_LEN - 1] = ' ';
    CHECK(!secret_token_ok(big, SECRET_MAX_LEN)); /* the last byte is checked */
}

static void test_wipe(void)
{
    char buf[64];
    char *s;

    memset(buf, 'k', sizeof(buf));
    secret_wipe(buf + 8, 32);
    for (size_t i = 0; i < sizeof(buf); i++)
        CHECK_INT(buf[i], i >= 8 && i < 40 ? 0 : 'k');
    secret_wipe(NULL, 10);
    secret_wipe(buf, 0);
    CHECK_INT(buf[0], 'k');

    s = strdup("s200-secret-token");
    REQUIRE(s);
    secret_free(s); /* no leak under ASan, no crash */
    secret_free(NULL);
}

TEST_MAIN(CASE(test_vectors), CASE(test_fingerprint_abc), CASE(test_hex_bytes), CASE(test_token_ok),
          CASE(test_wipe))

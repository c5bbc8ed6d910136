/* secret: the token rule, SHA-256 through OpenSSL's EVP interface, hex, and wiping. */
#include "secret.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* Fetched once: EVP_sha256() makes OpenSSL 3 look the implementation up on
 * every call (418 ns against 153 ns for a 64-byte token here). Kept for the
 * life of the process; the daemon has one thread. */
static EVP_MD *sha256_md;

static const EVP_MD *sha256(void)
{
    if (!sha256_md)
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    return sha256_md ? sha256_md : EVP_sha256();
}

static void to_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* jansson frees through this (secret_wipe_json). */
static void wiping_free(void *p)
{
    if (!p)
        return;
    secret_wipe(p, malloc_usable_size(p));
    free(p);
}

/* ---- exported ---- */

bool secret_token_ok(const char *t, size_t len)
{
    if (!t || len == 0 || len > SECRET_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

int secret_sha256(const void *data, size_t len, uint8_t ret_digest[SECRET_SHA256_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    /* EVP_Digest fails only when OpenSSL cannot allocate its context. */
    if (!EVP_Digest(data, len, md, &mdlen, sha256(), NULL) || mdlen != SECRET_SHA256_LEN)
        return -ENOMEM;
    memcpy(ret_digest, md, SECRET_SHA256_LEN);
    return 0;
}

void secret_fingerprint(const uint8_t digest[SECRET_SHA256_LEN], char ret_fp[SECRET_FP_LEN + 1])
{
    to_hex(digest, SECRET_FP_LEN / 2, ret_fp);
}

void secret_hex(const uint8_t digest[SECRET_SHA256_LEN], char ret_hex[2 * SECRET_SHA256_LEN + 1])
{
    to_hex(digest, SECRET_SHA256_LEN, ret_hex);
}

void secret_wipe(void *p, size_t n)
{
    if (p && n)
        explicit_bzero(p, n);
}

void secret_free(char *s)
{
    if (!s)
        return;
    secret_wipe(s, strlen(s));
    free(s);
}

void secret_wipe_json(void)
{
    json_set_alloc_funcs(malloc, wiping_free);
}

/* secret: what revokerd does with a bearer token's bytes.
 *
 * A token is identified everywhere but in the HTTP request by its SHA-256
 * (the lookup key) and its fingerprint (the first 16 hex digits of it, for
 * logs and the audit log). Buffers that held a secret are wiped.
 *
 * secret_token_ok() is the one rule for a token we can send, used by the
 * socket, the HTTP layer, the table and revokerctl. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRET_SHA256_LEN 32
#define SECRET_FP_LEN 16 /* hex digits, without the NUL */
#define SECRET_MAX_LEN 8192

/* True when t (len bytes) can go into an Authorization header as a bearer
 * token: 1..SECRET_MAX_LEN bytes, each visible ASCII (0x21..0x7e), so that no
 * space, CR, LF, NUL or other byte can end or change the header. RFC 6750's
 * b64token is narrower still. */
bool secret_token_ok(const char *t, size_t len);
/* 0, or -ENOMEM when OpenSSL cannot allocate (its only failure here). */
int secret_sha256(const void *data, size_t len, uint8_t ret_digest[SECRET_SHA256_LEN]);
/* Lower-case hex of the first 8 bytes of digest, NUL-terminated. */
void secret_fingerprint(const uint8_t digest[SECRET_SHA256_LEN], char ret_fp[SECRET_FP_LEN + 1]);
/* Lower-case hex of all 32 bytes, NUL-terminated. */
void secret_hex(const uint8_t digest[SECRET_SHA256_LEN], char ret_hex[2 * SECRET_SHA256_LEN + 1]);
/* Zero n bytes in a way the compiler cannot drop. NULL is fine. */
void secret_wipe(void *p, size_t n);
/* secret_wipe(s, strlen(s)) then free(s). NULL is fine. */
void secret_free(char *s);
/* Makes jansson zero every buffer before freeing it (a parsed request's
 * strings, the lexer's scratch space, a dumped request in revokerctl), so a
 * token does not linger in freed heap memory. Idempotent. */
void secret_wipe_json(void);

/* jwt: the expiry a bearer token carries in itself, when it is a JWT.
 *
 * jwt_exp() reads one thing from a token: the `exp` claim of a JWT (RFC
 * 7519), so that revokerd knows when to revoke a token whose row says
 * nothing (or too late). The signature is not verified: revokerd holds no
 * keys and needs none, since it only decides when to call logout. Nothing
 * else of the payload is kept, and no part of it is ever logged or
 * returned; the decoded bytes are wiped before the call returns.
 *
 * A JWT here: three base64url parts separated by '.', the first two not
 * empty (the third, the signature, may be: an unsecured JWT), the second
 * decoding to a JSON object (jansson, duplicate keys refused) whose `exp`
 * is a number in [2000-01-01, 3000-01-01) in Unix seconds, the range the
 * table's expires_at accepts (sql/005-bad-expiry.sql). A fraction is
 * rounded up: never earlier than the token says. '=' padding is accepted
 * where it is correct (some encoders write it). Anything else is an opaque
 * token: a string, boolean or missing `exp`, 0, a negative or later time
 * (milliseconds), a payload that is not JSON or not an object, two or four
 * parts, bad base64url, a token over SECRET_MAX_LEN bytes.
 *
 * base64url is decoded with OpenSSL's libcrypto (EVP_DecodeBlock, after
 * mapping '-_' to '+/'), which revokerd links for SHA-256 already.
 *
 * Pure: no state, no lifecycle. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* 0 with *ret_exp (Unix seconds); -EINVAL: not a JWT with a usable `exp`
 * (an opaque token); -ENOMEM. */
int jwt_exp(const char *token, size_t len, int64_t *ret_exp);

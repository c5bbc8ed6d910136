/* token_stdin: the secret of `revoke --token-stdin`, read from standard
 * input. A token is never taken from argv, which every user can read in ps.
 * From a terminal: one line, not echoed, after a "token: " prompt on
 * stderr; otherwise everything up to EOF. One trailing newline (or CRLF) is
 * removed. The caller wipes and frees the buffer (secret_wipe, free); on
 * error nothing is left behind. */
#pragma once

#include <stddef.h>

/* 0 with the token (ret_len bytes, not NUL-terminated), or: -ENODATA (no
 * token), -EMSGSIZE (longer than SECRET_MAX_LEN), -EBADMSG (more than one
 * line), -EILSEQ (a NUL byte), -ENOMEM, or read's -errno. */
int token_stdin_read(char **ret, size_t *ret_len);

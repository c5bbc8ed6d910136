/* token_stdin: read(2) into one buffer of SECRET_MAX_LEN and a little, with
 * echo off on a terminal. */
#include "token_stdin.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "secret.h"

/* One trailing newline (or CRLF) off; then one token, or which problem. */
static int trim_and_check(const char *buf, size_t *len)
{
    size_t n = *len;

    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    if (n == 0)
        return -ENODATA;
    if (n > SECRET_MAX_LEN)
        return -EMSGSIZE;
    if (memchr(buf, '\n', n))
        return -EBADMSG;
    if (memchr(buf, '\0', n))
        return -EILSEQ;
    *len = n;
    return 0;
}

/* ---- exported ---- */

int token_stdin_read(char **ret, size_t *ret_len)
{
    size_t cap = SECRET_MAX_LEN + 4, len = 0;
    char *buf = malloc(cap);
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    int r = 0;

    if (!buf)
        return -ENOMEM;
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        fputs("token: ", stderr);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        len += (size_t)n;
        if (n == 0 || len == cap || (tty && memchr(buf, '\n', len)))
            break;
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        if (r == 0)
            fputc('\n', stderr);
    }
    if (r == 0)
        r = trim_and_check(buf, &len);
    if (r < 0) {
        secret_wipe(buf, cap);
        free(buf);
        return r;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

/* listenaddr: the address a listener binds, from its configuration text
 * ([metrics] listen): "IPv4:PORT", "[IPv6]:PORT" or a UNIX socket path
 * starting with '/'. Numeric addresses only: a host name would make the
 * bind depend on DNS at start. Pure (no I/O), in the common library, so
 * that config_validate and the listener parse the same way.
 *
 * Lifecycle: none; listenaddr_parse() fills a value the caller owns. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define LISTENADDR_TEXT_MAX 128 /* "[v6]:port" or a sun_path, as written */

struct listenaddr {
    struct sockaddr_storage ss; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t len;
    bool loopback;              /* 127.0.0.0/8, ::1 or a UNIX socket */
};

/* 0, or -EINVAL with why saying what is wrong and what is expected. */
int listenaddr_parse(const char *text, struct listenaddr *ret, char *why, size_t whylen);
/* "127.0.0.1:9469", "[::1]:9469" or the path, for log lines. */
void listenaddr_format(const struct listenaddr *a, char *buf, size_t len);

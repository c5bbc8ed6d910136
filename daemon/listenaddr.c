/* listenaddr: "IPv4:PORT", "[IPv6]:PORT" or "/path" to a sockaddr (see
 * listenaddr.h). */
#include "listenaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "util.h"

#define EXPECTED "expected IPv4:PORT, [IPv6]:PORT or an absolute UNIX socket path; empty: off"

/* 1..65535, digits only. */
static int parse_port(const char *s, unsigned *ret)
{
    unsigned v = 0;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 6553)
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v == 0 || v > 65535)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int parse_unix(const char *text, struct listenaddr *a, char *why, size_t whylen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
    size_t n = strlen(text);

    if (n >= sizeof(un->sun_path)) {
        util_format(why, whylen, "the path is %zu bytes long (expected at most %zu bytes, the limit of a UNIX "
                    "socket address)", n, sizeof(un->sun_path) - 1);
        return -EINVAL;
    }
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, text, n + 1);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    a->loopback = true;
    return 0;
}

int listenaddr_parse(const char *text, struct listenaddr *ret, char *why, size_t whylen)
{
    struct listenaddr a = {0};
    char host[64];
    const char *port, *end;
    unsigned p;
    size_t n;

    if (!text || !*text) {
        util_format(why, whylen, "empty (" EXPECTED ")");
        return -EINVAL;
    }
    if (text[0] == '/') {
        if (parse_unix(text, &a, why, whylen) < 0)
            return -EINVAL;
        *ret = a;
        return 0;
    }
    if (text[0] == '[') {
        end = strchr(text, ']');
        if (!end || end[1] != ':') {
            util_format(why, whylen, "an IPv6 address needs its port after the bracket, as [::1]:9469 (" EXPECTED ")");
            return -EINVAL;
        }
        n = (size_t)(end - text - 1);
        port = end + 2;
    } else {
        end = strrchr(text, ':');
        if (!end) {
            util_format(why, whylen, "no port (" EXPECTED ", as 127.0.0.1:9469)");
            return -EINVAL;
        }
        n = (size_t)(end - text);
        port = end + 1;
    }
    if (parse_port(port, &p) < 0) {
        util_format(why, whylen, "the port is not a number from 1 to 65535 (" EXPECTED ")");
        return -EINVAL;
    }
    if (n >= sizeof(host)) {
        util_format(why, whylen, "the address is too long (" EXPECTED ")");
        return -EINVAL;
    }
    memcpy(host, text + (text[0] == '['), n);
    host[n] = '\0';
    if (text[0] == '[') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
            util_format(why, whylen, "not an IPv6 address in the brackets (" EXPECTED ")");
            return -EINVAL;
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        a.len = sizeof(*in6);
        a.loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
        if (strchr(host, ':')) {
            util_format(why, whylen, "an IPv6 address goes in brackets, as [::1]:9469 (" EXPECTED ")");
            return -EINVAL;
        }
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            util_format(why, whylen, "not a numeric IPv4 address (" EXPECTED "; no host names)");
            return -EINVAL;
        }
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)p);
        a.len = sizeof(*in);
        a.loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    *ret = a;
    return 0;
}

void listenaddr_format(const struct listenaddr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "";

    switch (a->ss.ss_family) {
    case AF_UNIX:
        snprintf(buf, len, "%s", ((const struct sockaddr_un *)&a->ss)->sun_path);
        return;
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
        return;
    }
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
        return;
    }
    default:
        snprintf(buf, len, "?");
    }
}

/* Unit tests for listenaddr: [metrics] listen's text to an address, every
 * accepted form and every refusal with its reason. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "listenaddr.h"
#include "unit.h"
#include "util.h"

static void test_parse(void)
{
    static const struct {
        const char *text;
        int family;     /* 0: refused */
        bool loopback;
        const char *shown; /* listenaddr_format, or a part of the reason */
    } cases[] = {
        {"127.0.0.1:9469", AF_INET, true, "127.0.0.1:9469"},
        {"127.1.2.3:1", AF_INET, true, "127.1.2.3:1"},
        {"0.0.0.0:9469", AF_INET, false, "0.0.0.0:9469"},
        {"192.0.2.7:65535", AF_INET, false, "192.0.2.7:65535"},
        {"[::1]:9469", AF_INET6, true, "[::1]:9469"},
        {"[::]:9469", AF_INET6, false, "[::]:9469"},
        {"[2001:db8::1]:80", AF_INET6, false, "[2001:db8::1]:80"},
        {"/run/revokerd/metrics.sock", AF_UNIX, true, "/run/revokerd/metrics.sock"},
        {"", 0, false, "empty"},
        {"127.0.0.1", 0, false, "no port"},
        {"127.0.0.1:", 0, false, "the port is not a number from 1 to 65535"},
        {"127.0.0.1:0", 0, false, "the port is not a number from 1 to 65535"},
        {"127.0.0.1:65536", 0, false, "the port is not a number from 1 to 65535"},
        {"127.0.0.1:99999999999", 0, false, "the port is not a number"},
        {"127.0.0.1:+80", 0, false, "the port is not a number"},
        {"localhost:9469", 0, false, "not a numeric IPv4 address"},
        {"300.0.0.1:9469", 0, false, "not a numeric IPv4 address"},
        {"::1:9469", 0, false, "an IPv6 address goes in brackets"},
        {"[::1]9469", 0, false, "needs its port after the bracket"},
        {"[::1", 0, false, "needs its port after the bracket"},
        {"[127.0.0.1]:80", 0, false, "not an IPv6 address"},
        {"relative/path.sock", 0, false, "no port"},
        {"/" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         0, false, "at most 107 bytes"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct listenaddr a = {.loopback = !cases[i].loopback};
        char why[256] = "", shown[LISTENADDR_TEXT_MAX];
        int rc = listenaddr_parse(cases[i].text, &a, why, sizeof(why));
        if (cases[i].family == 0) {
            CHECK_INT(rc, -EINVAL);
            if (!strstr(why, cases[i].shown) || !strstr(why, "expected")) {
                fprintf(stderr, "%s: %s\n", cases[i].text, why);
                CHECK(0);
            }
            continue;
        }
        CHECK_INT(rc, 0);
        CHECK_INT(a.ss.ss_family, cases[i].family);
        CHECK_INT(a.loopback, cases[i].loopback);
        listenaddr_format(&a, shown, sizeof(shown));
        CHECK_STR(shown, cases[i].shown);
    }
}

static void test_addresses_bind_as_written(void)
{
    struct listenaddr a;
    char why[256];

    REQUIRE(listenaddr_parse("127.0.0.1:9469", &a, why, sizeof(why)) == 0);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a.ss;
    CHECK_INT(ntohs(in->sin_port), 9469);
    CHECK_INT(ntohl(in->sin_addr.s_addr), 0x7f000001);
    CHECK_INT(a.len, sizeof(struct sockaddr_in));
    REQUIRE(listenaddr_parse("[::1]:80", &a, why, sizeof(why)) == 0);
    CHECK_INT(a.len, sizeof(struct sockaddr_in6));
    CHECK_INT(ntohs(((const struct sockaddr_in6 *)&a.ss)->sin6_port), 80);
    REQUIRE(listenaddr_parse("/tmp/m.sock", &a, why, sizeof(why)) == 0);
    CHECK_STR(((const struct sockaddr_un *)&a.ss)->sun_path, "/tmp/m.sock");
    CHECK_INT(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/tmp/m.sock") + 1);
}

TEST_MAIN(CASE(test_parse), CASE(test_addresses_bind_as_written))

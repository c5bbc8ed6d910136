/* config_url: config_check_url, the policy for [logout] url, with libcurl's
 * URL parser. Apart from config.c so that revokerctl, which reads only
 * [daemon], links config without libcurl: revokerd (and test_config)
 * install this check with config_set_url_check. */
#include "config.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char inner[INET6_ADDRSTRLEN + 1];
    size_t n = strlen(host);

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    /* curl writes IPv6 hosts in brackets: "[::1]" */
    if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(inner)) {
        memcpy(inner, host + 1, n - 2);
        inner[n - 2] = '\0';
        if (inet_pton(AF_INET6, inner, &a6) != 1)
            return false;
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

/* ---- exported ---- */

/* err is NULL with errlen 0 at most: snprintf writes nothing then. */
int config_check_url(const char *url, char *err, size_t errlen)
{
    char *scheme = NULL, *host = NULL, *user = NULL, q[CONFIG_QUOTE_LEN];
    CURLUcode uc;
    CURLU *u;
    int r = -EINVAL;

    if (!url || !*url) {
        snprintf(err, errlen, "no URL (expected https://HOST/PATH)");
        return -EINVAL;
    }
    u = curl_url();
    if (!u) {
        snprintf(err, errlen, "out of memory while checking the URL");
        return -ENOMEM;
    }
    /* Any scheme parses, so that the refusal below is the same for all. The
     * URL itself is never echoed: it might hold a password. */
    uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
        snprintf(err, errlen, "not a valid URL: %s (CURLUcode %d) (expected https://HOST/PATH)",
                curl_url_strerror(uc), (int)uc);
        goto out;
    }
    uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc != CURLUE_OK) {
        snprintf(err, errlen, "not a valid URL: %s (CURLUcode %d) (expected https://HOST/PATH)",
                curl_url_strerror(uc), (int)uc);
        goto out;
    }
    if (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0) {
        snprintf(err, errlen, "scheme %s is not supported (expected https://, or http:// for a loopback host)",
                config_quote(scheme, q, sizeof(q)));
        goto out;
    }
    uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc != CURLUE_OK || !host || !*host) {
        snprintf(err, errlen, "the URL has no host (expected https://HOST/PATH)");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(err, errlen,
                "the URL holds a user name or password, which would show in logs (expected "
                "https://HOST/PATH; a client credential goes through credential_header)");
        goto out;
    }
    if (strcasecmp(scheme, "http") == 0 && !is_loopback_host(host)) {
        snprintf(err, errlen,
                "plain http:// is refused for host %s: a bearer token must not cross a network in clear "
                "text; use https:// or a loopback host (localhost, 127.0.0.0/8, ::1)",
                config_quote(host, q, sizeof(q)));
        goto out;
    }
    r = 0;
out:
    curl_free(user);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return r;
}

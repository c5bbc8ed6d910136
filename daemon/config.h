/* config: revokerd's settings, from defaults, the INI file and the command line.
 *
 * config_defaults() fills a struct, config_load() overlays a file on it,
 * config_validate() checks the whole, config_free() frees the strings.
 * Every string member is heap-allocated (or NULL) and owned by the struct.
 * Errors are written to err as "FILE:LINE: [section] key: what is wrong". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config {
    /* [daemon] */
    char *database;           /* /var/lib/revokerd/revokerd.db */
    char *socket;             /* /run/revokerd.sock */
    char *control_group;      /* NULL: only root and the daemon's user */
    unsigned max_clients;     /* 64 */
    uint64_t client_idle_ms;  /* 30s: an idle control client is closed */
    bool keep_secrets;        /* false: NULL the token once revoked */
    int log_level;            /* LOG_INFO */
    /* [logout] */
    char *url;                /* https://api.loyalty.dog/v2/token/logout */
    uint64_t timeout_ms;      /* 10s */
    unsigned concurrency;     /* 16 */
    unsigned rate_limit;      /* 0: no limit; requests per second */
    char *ca_file;            /* NULL: the system's CA store */
    unsigned down_after;      /* 5 endpoint-level failures in a row */
    char *credential_header;  /* NULL; a header name whose value is read from
                                 $CREDENTIALS_DIRECTORY/logout-credential */
    /* [retry] */
    uint64_t retry_base_ms;        /* 1s */
    uint64_t retry_max_delay_ms;   /* 15min */
    unsigned max_attempts;         /* 8 */
    uint64_t retry_after_max_ms;   /* 1h */
};

void config_defaults(struct config *c);
/* 0, -ENOENT (file missing; err says so), -EINVAL (err says where and why),
 * -ENOMEM. On error c keeps what it had before the call. */
int config_load(struct config *c, const char *path, char *err, size_t errlen);
/* Whole-struct checks, such as the URL's scheme and host. 0 or -EINVAL. */
int config_validate(const struct config *c, char *err, size_t errlen);
void config_free(struct config *c);
/* Deep copy. 0 or -ENOMEM. */
int config_copy(struct config *dst, const struct config *src);

/* A systemd time span: "50ms", "2s", "15min", "1h 30min", bare number = s.
 * Units: us usec ms msec s sec second(s) m min minute(s) h hr hour(s)
 * d day(s) w week(s). 0 or -EINVAL (also on overflow). */
int config_parse_duration(const char *s, uint64_t *ret_ms);
/* "1h 30min 2s 5ms"-style rendering of ms, for messages. */
void config_format_duration(uint64_t ms, char *buf, size_t len);
/* Refuses http:// unless the host is loopback (127.0.0.0/8, ::1, localhost),
 * and anything that is not http or https. 0 or -EINVAL. In config_url.c,
 * which links libcurl. */
int config_check_url(const char *url, char *err, size_t errlen);
/* config_load and config_validate check [logout] url with check: revokerd
 * installs config_check_url. Without one only an empty URL is refused, which
 * is all revokerctl needs (it reads [daemon] alone and links no libcurl). */
void config_set_url_check(int (*check)(const char *url, char *err, size_t errlen));

/* A value as messages show it: in double quotes, control bytes as '?', cut
 * (with an ellipsis) after 64 bytes. buf of CONFIG_QUOTE_LEN holds any. */
#define CONFIG_QUOTE_LEN 72
const char *config_quote(const char *value, char *buf, size_t len);

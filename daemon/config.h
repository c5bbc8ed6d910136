/* config: revokerd's settings, from defaults, the INI file and the command line.
 *
 * The keys, their types, defaults and limits are the table in config-keys.h;
 * struct config has one member per row, in its order. config_defaults()
 * fills a struct, config_load() overlays a file on it, config_validate()
 * checks the whole, config_free() frees the strings. Every string member is
 * heap-allocated (or NULL) and owned by the struct.
 * Errors are written to err as "FILE:LINE: [section] key: what is wrong". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config-keys.h"

#define CONFIG_MEMBER(section, name, type, member, ...) CONFIG_CTYPE_##type member;

struct config {
    CONFIG_KEYS(CONFIG_MEMBER)
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
/* Whether every key holds the same value in both (strings by content). */
bool config_equal(const struct config *a, const struct config *b);
/* Writes c as an INI file that config_load reads back: every key, in table
 * order, "key = value" with durations in units and unset strings empty
 * (what --check-config prints). */
void config_print(FILE *f, const struct config *c);

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

/* timearg: times as revokerctl reads them from the command line and the
 * daemon's replies, and shows them, in the local time zone (TZ). Pure but
 * for the zone and, in timearg_since, the caller's clock. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS[.fff]]" and the same with 'T', local
 * time, or followed by Z or an offset (+01:00, -0500). 0 with Unix ms, or
 * -EINVAL. */
int timearg_parse(const char *s, int64_t *ret_ms);
/* --since: a time as timearg_parse reads it, or a span back from now_ms
 * ("1h", "30min", "2d"; config_parse_duration). 0 or -EINVAL. */
int timearg_since(const char *s, int64_t now_ms, int64_t *ret_ms);
/* --expires-at: Unix seconds (digits only), a time as timearg_parse reads
 * it, or a span ahead of now_ms ("1h", "30min"; a span needs its unit).
 * 0 with *ret_s in Unix seconds (a fraction rounded up), or -EINVAL. */
int timearg_until(const char *s, int64_t now_ms, int64_t *ret_s);
/* "2026-11-27 10:00:03 CET"; "-" for ms <= 0. */
void timearg_local(int64_t ms, char *buf, size_t len);

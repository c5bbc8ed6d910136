/* util: the few macros and the formatting helpers every module would
 * otherwise write for itself. No state, no libuv: the common library
 * (revokerctl's) uses it too. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The struct that embeds member at ptr (libuv's handles are embedded by
 * value; callbacks find their owner with this). */
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Elements of an array (not a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Around a function where gcc's -fanalyzer (tests/analyze.py) reports a leak
 * that is not one; the comment before it says why. Nothing for clang. */
#if defined(__GNUC__) && !defined(__clang__)
#define ANALYZER_LEAKS_OFF \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wanalyzer-malloc-leak\"")
#define ANALYZER_LEAKS_ON _Pragma("GCC diagnostic pop")
#else
#define ANALYZER_LEAKS_OFF
#define ANALYZER_LEAKS_ON
#endif

/* snprintf into buf (len bytes) for error and detail texts, which are capped
 * on purpose: a text that does not fit is cut visibly, at a word when one
 * ends in its last UTIL_CUT_WORD bytes, else at a UTF-8 character, and ends
 * in "…" (UTIL_ELLIPSIS). NULL buf or len 0 writes nothing. */
#define UTIL_ELLIPSIS "\xe2\x80\xa6"
#define UTIL_CUT_WORD 24
void util_format(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void util_vformat(char *buf, size_t len, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Unix ms as "2026-11-27T10:00:03.123Z" (UTC) into buf (at least
 * UTIL_ISO_LEN bytes); false for ms <= 0 or a time gmtime cannot show. */
#define UTIL_ISO_LEN 48
bool util_iso_ms(int64_t ms, char *buf, size_t len);

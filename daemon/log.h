/* log: one line per event on stderr, for people and for the journal.
 *
 * Levels and what they mean here:
 *   crit    the daemon exits after this line
 *   err     something failed; the daemon goes on (and says what it does instead)
 *   warning something is off and may need an operator (endpoint down, misconfigured)
 *   notice  normal but significant: start, ready, reload, stop, summaries
 *   info    per-token outcomes and other routine events
 *   debug   details for developers
 *
 * When stderr is the journal (JOURNAL_STREAM names stderr's device and inode)
 * and revokerd has handed over sd_journal_sendv (log_set_journal), lines go
 * to the journal with structured fields (PRIORITY, CODE_FILE, CODE_LINE and
 * CODE_FUNC of the caller, and TOKEN_ID, FINGERPRINT, EVENT, HTTP_STATUS for
 * a line about a token, AUDIT_SEQ and AUDIT_HASH for the audit chain's head);
 * otherwise they are written as
 * "<N>message" lines (sd-daemon prefixes) when stderr is not a terminal,
 * or as "revokerd: level: message" for a terminal.
 * A line names a token by id and fingerprint, never by its secret. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

struct iovec;

/* The journal's writer, sd_journal_sendv: revokerd passes it before
 * log_init. This module does not call libsystemd itself, so that revokerctl
 * can link it without; without a writer, lines go to stderr with their "<N>"
 * prefix, which journald reads too. */
void log_set_journal(int (*sendv)(const struct iovec *iov, int n));
/* Picks the output: journal fields, "<N>" prefixes (stderr not a tty), or plain. */
void log_init(const char *ident);
void log_set_level(int level);
int log_get_level(void);
/* "crit", "err", "warning", "notice", "info", "debug" -> LOG_*. 0 or -EINVAL. */
int log_level_parse(const char *name, int *ret_level);
const char *log_level_name(int level);

/* Where a line is logged from, for the journal's CODE_FILE (the file name
 * without its directories), CODE_LINE and CODE_FUNC. The macros below pass
 * their caller's: the journal then points at revoke.c, not at log.c. */
struct log_site {
    const char *file;
    int line;
    const char *func;
};
#define LOG_SITE (&(const struct log_site){__FILE__, __LINE__, __func__})

void log_write_at(const struct log_site *at, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line about one token: adds TOKEN_ID, FINGERPRINT (NULL: none), EVENT
 * (NULL: none) and HTTP_STATUS (http_status <= 0: none) as journal fields.
 * Every line that names a token goes through here, so that
 * `journalctl TOKEN_ID=42` finds them all. */
void log_token_at(const struct log_site *at, int level, int64_t token_id, const char *fingerprint,
                  const char *event, long http_status, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* A line about the audit chain's head (audithead.h): adds AUDIT_SEQ and
 * AUDIT_HASH (hash NULL: neither) as journal fields, so that
 * `journalctl AUDIT_SEQ=N` finds the line and journald's sealing covers it. */
void log_audit_head_at(const struct log_site *at, int level, int64_t seq, const char *hash, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));

#define log_write(level, ...) log_write_at(LOG_SITE, (level), __VA_ARGS__)
#define log_token(level, token_id, fingerprint, event, http_status, ...) \
    log_token_at(LOG_SITE, (level), (token_id), (fingerprint), (event), (http_status), __VA_ARGS__)
#define log_audit_head(level, seq, hash, ...) log_audit_head_at(LOG_SITE, (level), (seq), (hash), __VA_ARGS__)

#define log_crit(...) log_write(LOG_CRIT, __VA_ARGS__)
#define log_err(...) log_write(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_write(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_write(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)

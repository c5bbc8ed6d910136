/* log: format on the stack, one write(2) or one journal datagram per line.
 *
 * The line is formatted at a fixed offset in one buffer so that whatever
 * goes in front of it ("<3>", "revokerd: err: " or "MESSAGE=") is copied in
 * without a second buffer, and the whole line leaves in a single system
 * call: lines of concurrent writers never interleave. */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048
#define HEAD_MAX 96 /* room for the longest head: "MESSAGE=", "<7>" or "IDENT: warning: " */
#define IDENT_MAX 64
#define ELLIPSIS "\xe2\x80\xa6" /* … marks a cut line */

enum mode {
    MODE_PREFIX,  /* "<N>message": stderr is a pipe or file (journald reads the prefix) */
    MODE_TTY,     /* "ident: level: message": a person reads it */
    MODE_JOURNAL, /* the journal writer (sd_journal_sendv) with fields */
};

static struct {
    bool initialized;
    enum mode mode;
    int level;
    char ident[IDENT_MAX];
    int (*journal_sendv)(const struct iovec *iov, int n);
} state = {false, MODE_PREFIX, LOG_INFO, "revokerd", NULL};

static const char *const level_names[] = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};

/* $JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to the
 * journal; it only counts if that is still what stderr is. */
static bool stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char *end;

    if (!e || !*e)
        return false;
    errno = 0;
    dev = strtoull(e, &end, 10);
    if (errno || end == e || *end != ':')
        return false;
    e = end + 1;
    ino = strtoull(e, &end, 10);
    if (errno || end == e || *end)
        return false;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* One line: head + sanitised message (+ fields in the journal). */
static void emit(int level, bool token, int64_t token_id, const char *fingerprint, const char *event,
                 long http_status, const char *fmt, va_list ap)
{
    char buf[LINE_MAX_BYTES];
    char *msg = buf + HEAD_MAX;
    size_t room = sizeof(buf) - HEAD_MAX - 1; /* the 1 for '\n' */
    char head[HEAD_MAX];
    size_t mlen, hlen;
    int n;

    n = vsnprintf(msg, room, fmt, ap);
    if (n < 0) {
        snprintf(msg, room, "(unformattable log message: %s)", fmt);
        mlen = strlen(msg);
    } else if ((size_t)n >= room) {
        /* cut at a character boundary, then mark the cut */
        mlen = room - 1 - (sizeof(ELLIPSIS) - 1);
        while (mlen > 0 && ((unsigned char)msg[mlen] & 0xc0) == 0x80)
            mlen--;
        memcpy(msg + mlen, ELLIPSIS, sizeof(ELLIPSIS) - 1);
        mlen += sizeof(ELLIPSIS) - 1;
    } else {
        mlen = (size_t)n;
    }
    /* one message is one line: no newline, no terminal escape gets through */
    for (size_t i = 0; i < mlen; i++)
        if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
            msg[i] = ' ';
    msg[mlen] = '\0';

    if (state.mode == MODE_JOURNAL) {
        char prio[16], id[32], fp[64], ev[64], st[32];
        struct iovec iov[7];
        int k = 0;

        memcpy(msg - 8, "MESSAGE=", 8);
        iov[k++] = (struct iovec){msg - 8, mlen + 8};
        snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
        iov[k++] = (struct iovec){prio, strlen(prio)};
        snprintf(head, sizeof(head), "SYSLOG_IDENTIFIER=%s", state.ident);
        iov[k++] = (struct iovec){head, strlen(head)};
        if (token) {
            snprintf(id, sizeof(id), "TOKEN_ID=%" PRId64, token_id);
            iov[k++] = (struct iovec){id, strlen(id)};
            if (fingerprint) {
                snprintf(fp, sizeof(fp), "FINGERPRINT=%s", fingerprint);
                iov[k++] = (struct iovec){fp, strlen(fp)};
            }
            if (event) {
                snprintf(ev, sizeof(ev), "EVENT=%s", event);
                iov[k++] = (struct iovec){ev, strlen(ev)};
            }
            if (http_status > 0) {
                snprintf(st, sizeof(st), "HTTP_STATUS=%ld", http_status);
                iov[k++] = (struct iovec){st, strlen(st)};
            }
        }
        if (state.journal_sendv(iov, k) >= 0)
            return;
        /* journald is gone: stderr still reaches it, or someone */
    }

    if (state.mode == MODE_TTY)
        snprintf(head, sizeof(head), "%s: %s: ", state.ident, log_level_name(level));
    else
        snprintf(head, sizeof(head), "<%d>", level);
    hlen = strlen(head);
    memcpy(msg - hlen, head, hlen);
    msg[mlen] = '\n';
    write_all(msg - hlen, hlen + mlen + 1);
}

/* ---- exported ---- */

void log_set_journal(int (*sendv)(const struct iovec *iov, int n))
{
    state.journal_sendv = sendv;
}

void log_init(const char *ident)
{
    snprintf(state.ident, sizeof(state.ident), "%s", ident && *ident ? ident : "revokerd");
    if (state.journal_sendv && stderr_is_journal())
        state.mode = MODE_JOURNAL;
    else if (isatty(STDERR_FILENO))
        state.mode = MODE_TTY;
    else
        state.mode = MODE_PREFIX;
    state.initialized = true;
}

void log_set_level(int level)
{
    if (level < LOG_EMERG)
        level = LOG_EMERG;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    state.level = level;
}

int log_get_level(void)
{
    return state.level;
}

int log_level_parse(const char *name, int *ret_level)
{
    if (!name)
        return -EINVAL;
    for (int l = LOG_CRIT; l <= LOG_DEBUG; l++) {
        if (strcasecmp(name, level_names[l]) == 0) {
            *ret_level = l;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(int level)
{
    if (level < LOG_EMERG || level > LOG_DEBUG)
        return "unknown";
    return level_names[level];
}

void log_write(int level, const char *fmt, ...)
{
    va_list ap;
    int saved_errno;

    if (level > state.level)
        return;
    /* callers may log between a failure and their look at errno */
    saved_errno = errno;
    if (level < LOG_EMERG)
        level = LOG_EMERG;
    if (!state.initialized)
        log_init(NULL);
    va_start(ap, fmt);
    emit(level, false, 0, NULL, NULL, 0, fmt, ap);
    va_end(ap);
    errno = saved_errno;
}

void log_token(int level, int64_t token_id, const char *fingerprint, const char *event, long http_status,
               const char *fmt, ...)
{
    va_list ap;
    int saved_errno;

    if (level > state.level)
        return;
    /* callers may log between a failure and their look at errno */
    saved_errno = errno;
    if (level < LOG_EMERG)
        level = LOG_EMERG;
    if (!state.initialized)
        log_init(NULL);
    va_start(ap, fmt);
    emit(level, true, token_id, fingerprint, event, http_status, fmt, ap);
    va_end(ap);
    errno = saved_errno;
}

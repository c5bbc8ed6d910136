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

/* The journal fields of a line about a token (log_token) or about the
 * audit chain's head (log_audit_head). */
struct line_fields {
    bool token; /* TOKEN_ID and the three below */
    int64_t id;
    const char *fingerprint, *event; /* NULL: no field */
    long http_status;                /* <= 0: no field */
    const char *audit_hash;          /* non-NULL: AUDIT_SEQ and AUDIT_HASH */
    int64_t audit_seq;
};

/* The file name without its directories: meson passes "../daemon/revoke.c". */
static const char *base_name(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;

    return slash ? slash + 1 : path ? path : "?";
}

/* msg (mlen bytes, "MESSAGE=" room in front) and its fields to the journal;
 * the writer's result. */
static int send_journal(const struct log_site *at, int level, const struct line_fields *t, char *msg,
                        size_t mlen)
{
    char prio[16], ident[HEAD_MAX], file[96], line[32], func[96], id[32], fp[64], ev[64], st[32], seq[40],
        hash[96];
    struct iovec iov[12];
    int k = 0;

#define FIELD(buf, ...) \
    (snprintf(buf, sizeof(buf), __VA_ARGS__), iov[k++] = (struct iovec){buf, strlen(buf)})
    memcpy(msg - 8, "MESSAGE=", 8);
    iov[k++] = (struct iovec){msg - 8, mlen + 8};
    FIELD(prio, "PRIORITY=%d", level);
    FIELD(ident, "SYSLOG_IDENTIFIER=%s", state.ident);
    FIELD(file, "CODE_FILE=%s", base_name(at->file));
    FIELD(line, "CODE_LINE=%d", at->line);
    FIELD(func, "CODE_FUNC=%s", at->func ? at->func : "?");
    if (t && t->token) {
        FIELD(id, "TOKEN_ID=%" PRId64, t->id);
        if (t->fingerprint)
            FIELD(fp, "FINGERPRINT=%s", t->fingerprint);
        if (t->event)
            FIELD(ev, "EVENT=%s", t->event);
        if (t->http_status > 0)
            FIELD(st, "HTTP_STATUS=%ld", t->http_status);
    }
    if (t && t->audit_hash) {
        FIELD(seq, "AUDIT_SEQ=%" PRId64, t->audit_seq);
        FIELD(hash, "AUDIT_HASH=%.64s", t->audit_hash);
    }
#undef FIELD
    return state.journal_sendv(iov, k);
}

/* One line: head + sanitised message (+ fields in the journal). */
static void emit(const struct log_site *at, int level, const struct line_fields *t, const char *fmt,
                 va_list ap)
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

    /* if journald is gone, stderr still reaches it, or someone */
    if (state.mode == MODE_JOURNAL && send_journal(at, level, t, msg, mlen) >= 0)
        return;

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

/* Both entry points: the level filter, errno kept. */
static void vlog(const struct log_site *at, int level, const struct line_fields *t, const char *fmt,
                 va_list ap)
{
    /* callers may log between a failure and their look at errno */
    int saved_errno = errno;

    if (level < LOG_EMERG)
        level = LOG_EMERG;
    if (!state.initialized)
        log_init(NULL);
    emit(at, level, t, fmt, ap);
    errno = saved_errno;
}

void log_write_at(const struct log_site *at, int level, const char *fmt, ...)
{
    va_list ap;

    if (level > state.level)
        return;
    va_start(ap, fmt);
    vlog(at, level, NULL, fmt, ap);
    va_end(ap);
}

void log_token_at(const struct log_site *at, int level, int64_t token_id, const char *fingerprint,
                  const char *event, long http_status, const char *fmt, ...)
{
    const struct line_fields t = {.token = true,
                                  .id = token_id,
                                  .fingerprint = fingerprint,
                                  .event = event,
                                  .http_status = http_status};
    va_list ap;

    if (level > state.level)
        return;
    va_start(ap, fmt);
    vlog(at, level, &t, fmt, ap);
    va_end(ap);
}

void log_audit_head_at(const struct log_site *at, int level, int64_t seq, const char *hash, const char *fmt,
                       ...)
{
    const struct line_fields t = {.audit_hash = hash, .audit_seq = seq};
    va_list ap;

    if (level > state.level)
        return;
    va_start(ap, fmt);
    vlog(at, level, hash ? &t : NULL, fmt, ap);
    va_end(ap);
}

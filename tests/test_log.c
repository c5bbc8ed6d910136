/* test_log: output formats, level filtering, one line per message, journal fields.
 *
 * stderr is redirected (dup2) to a file, a pty or a journal stand-in; write(2)
 * is wrapped to count the system calls a line takes and to simulate short
 * writes and EINTR. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

static int stderr_writes;     /* write(2) calls on fd 2 */
static int short_writes_left; /* that many writes on fd 2 take at most 5 bytes */
static int eintr_left;        /* that many writes on fd 2 fail with EINTR */

ssize_t write(int fd, const void *buf, size_t n)
{
    if (fd == STDERR_FILENO) {
        stderr_writes++;
        if (eintr_left > 0) {
            eintr_left--;
            errno = EINTR;
            return -1;
        }
        if (short_writes_left > 0) {
            short_writes_left--;
            if (n > 5)
                n = 5;
        }
    }
    return syscall(SYS_write, fd, buf, n);
}

static int saved_stderr = -1;
static int capture_fd = -1;

/* stderr -> a fresh temporary file; the log module sees a non-tty. */
static void capture_begin(const char *ident)
{
    char path[] = "/tmp/test_log.XXXXXX";

    fflush(stderr);
    capture_fd = mkstemp(path);
    REQUIRE(capture_fd >= 0);
    unlink(path);
    saved_stderr = dup(STDERR_FILENO);
    REQUIRE(saved_stderr >= 0);
    REQUIRE(dup2(capture_fd, STDERR_FILENO) == STDERR_FILENO);
    log_init(ident);
    stderr_writes = 0;
}

/* Restores stderr; returns what was written (static buffer). */
static const char *capture_end(void)
{
    static char out[16384];
    ssize_t n;

    REQUIRE(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
    close(saved_stderr);
    REQUIRE(lseek(capture_fd, 0, SEEK_SET) == 0);
    n = read(capture_fd, out, sizeof(out) - 1);
    REQUIRE(n >= 0);
    out[n] = '\0';
    close(capture_fd);
    log_init("test_log"); /* back to the real stderr's mode */
    return out;
}

static void test_prefix_lines(void)
{
    static const struct {
        int level;
        const char *line;
    } cases[] = {
        {LOG_CRIT, "<2>m 2\n"},   {LOG_ERR, "<3>m 3\n"},  {LOG_WARNING, "<4>m 4\n"},
        {LOG_NOTICE, "<5>m 5\n"}, {LOG_INFO, "<6>m 6\n"}, {LOG_DEBUG, "<7>m 7\n"},
    };

    unsetenv("JOURNAL_STREAM");
    log_set_level(LOG_DEBUG);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        capture_begin("revokerd");
        log_write(cases[i].level, "m %d", cases[i].level);
        CHECK_INT(stderr_writes, 1);
        CHECK_STR(capture_end(), cases[i].line);
    }

    /* the macros map to their levels */
    capture_begin("revokerd");
    log_crit("c");
    log_err("e");
    log_warning("w");
    log_notice("n");
    log_info("i");
    log_debug("d%s", "!");
    CHECK_INT(stderr_writes, 6);
    CHECK_STR(capture_end(), "<2>c\n<3>e\n<4>w\n<5>n\n<6>i\n<7>d!\n");

    /* log_token's fields go to the journal only; the text is the caller's */
    capture_begin("revokerd");
    log_token(LOG_INFO, 42, "ba7816bf8f01cfea", "revoked", 200, "token %d (%s) revoked", 42, "ba7816bf8f01cfea");
    CHECK_STR(capture_end(), "<6>token 42 (ba7816bf8f01cfea) revoked\n");
}

static void test_level_filter(void)
{
    unsetenv("JOURNAL_STREAM");
    log_set_level(LOG_WARNING);
    CHECK_INT(log_get_level(), LOG_WARNING);
    capture_begin("revokerd");
    log_debug("d");
    log_info("i");
    log_notice("n");
    log_token(LOG_INFO, 1, "00", "due", 0, "t");
    log_warning("w");
    log_token(LOG_ERR, 1, "00", "retry", 500, "t %d", 1);
    log_crit("c");
    CHECK_INT(stderr_writes, 3); /* dropped lines cost no system call */
    CHECK_STR(capture_end(), "<4>w\n<3>t 1\n<2>c\n");

    log_set_level(LOG_ERR);
    capture_begin("revokerd");
    log_warning("w");
    log_err("e");
    CHECK_STR(capture_end(), "<3>e\n");

    /* out-of-range levels are clamped */
    log_set_level(99);
    CHECK_INT(log_get_level(), LOG_DEBUG);
    log_set_level(-5);
    CHECK_INT(log_get_level(), LOG_EMERG);
    log_set_level(LOG_INFO);
}

static void test_sanitise(void)
{
    unsetenv("JOURNAL_STREAM");
    log_set_level(LOG_DEBUG);
    capture_begin("revokerd");
    log_err("a\nb\r\nc\td\033[31me\x7f%s", "\nforged line");
    CHECK_INT(stderr_writes, 1);
    CHECK_STR(capture_end(), "<3>a b  c d [31me  forged line\n");

    /* UTF-8 is kept as is */
    capture_begin("revokerd");
    log_info("caf\xc3\xa9 \xe2\x80\x94 ok");
    CHECK_STR(capture_end(), "<6>caf\xc3\xa9 \xe2\x80\x94 ok\n");
}

static void test_truncation(void)
{
    static char big[5000];
    const char *out;
    size_t len;

    unsetenv("JOURNAL_STREAM");
    log_set_level(LOG_DEBUG);
    memset(big, 'x', sizeof(big) - 1);
    capture_begin("revokerd");
    log_info("%s", big);
    out = capture_end();
    len = strlen(out);
    CHECK(len <= 2048);
    CHECK(len > 1900);
    CHECK(strncmp(out, "<6>xxxx", 7) == 0);
    CHECK(strcmp(out + len - 4, "\xe2\x80\xa6\n") == 0);
    CHECK(!memchr(out, '\n', len - 1)); /* one line */

    /* the cut never splits a character: only whole two-byte characters remain */
    for (size_t i = 0; i + 2 < sizeof(big); i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof(big) - 1] = '\0';
    capture_begin("revokerd");
    log_info("%s", big);
    out = capture_end();
    len = strlen(out);
    CHECK(len <= 2048);
    CHECK(strcmp(out + len - 4, "\xe2\x80\xa6\n") == 0);
    CHECK_INT((len - 3 - 4) % 2, 0);
    CHECK((unsigned char)out[len - 5] == 0xa9);
}

static void test_one_write_despite_short_writes(void)
{
    unsetenv("JOURNAL_STREAM");
    log_set_level(LOG_DEBUG);

    /* a short write is continued, not lost */
    capture_begin("revokerd");
    short_writes_left = 2;
    log_notice("a line of some length");
    CHECK_INT(stderr_writes, 3);
    short_writes_left = 0;
    CHECK_STR(capture_end(), "<5>a line of some length\n");

    /* EINTR is retried */
    capture_begin("revokerd");
    eintr_left = 2;
    log_notice("after EINTR");
    CHECK_INT(stderr_writes, 3);
    eintr_left = 0;
    CHECK_STR(capture_end(), "<5>after EINTR\n");
}

static void test_errno_kept(void)
{
    unsetenv("JOURNAL_STREAM");
    log_set_level(LOG_INFO);
    capture_begin("revokerd");
    errno = EAGAIN;
    log_err("x");
    CHECK_INT(errno, EAGAIN);
    errno = ENOSPC;
    log_debug("dropped");
    CHECK_INT(errno, ENOSPC);
    capture_end();
}

static void test_journal_stream_mismatch(void)
{
    static const char *const values[] = {"1:2", "abc", "", "12:", ":12", "1:2:3", "-1:5"};
    struct stat st;
    char v[64];

    log_set_level(LOG_INFO);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        setenv("JOURNAL_STREAM", values[i], 1);
        capture_begin("revokerd");
        log_err("x");
        CHECK_STR(capture_end(), "<3>x\n");
    }
    /* right device, wrong inode */
    capture_begin("revokerd");
    REQUIRE(fstat(STDERR_FILENO, &st) == 0);
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", v, 1);
    log_init("revokerd");
    log_err("y");
    CHECK_STR(capture_end(), "<3>y\n");
    unsetenv("JOURNAL_STREAM");
}

static void test_tty(void)
{
    struct termios t;
    struct pollfd pfd;
    char out[256];
    size_t got = 0;
    int master, slave;

    unsetenv("JOURNAL_STREAM");
    REQUIRE(openpty(&master, &slave, NULL, NULL, NULL) == 0);
    REQUIRE(tcgetattr(slave, &t) == 0);
    cfmakeraw(&t); /* no "\n" -> "\r\n" */
    REQUIRE(tcsetattr(slave, TCSANOW, &t) == 0);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    REQUIRE(dup2(slave, STDERR_FILENO) == STDERR_FILENO);
    log_init("revokerd");
    log_set_level(LOG_DEBUG);
    log_warning("endpoint down\n(%d in a row)", 5);
    log_token(LOG_ERR, 7, "0123456789abcdef", "gave_up", 500, "token 7 gave up");
    REQUIRE(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
    close(saved_stderr);
    log_init("test_log");
    close(slave);

    static const char expect[] = "revokerd: warning: endpoint down (5 in a row)\nrevokerd: err: token 7 gave up\n";
    pfd = (struct pollfd){.fd = master, .events = POLLIN};
    while (got < sizeof(expect) - 1 && poll(&pfd, 1, 2000) > 0) {
        ssize_t n = read(master, out + got, sizeof(out) - 1 - got);

        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    CHECK_STR(out, expect);
    close(master);
    log_set_level(LOG_INFO);
}

/* ---- journal: a private /run with our own journal socket ---- */

static int recv_fields(int fd, char *buf, size_t len)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (poll(&pfd, 1, 2000) <= 0)
        return -1;
    n = recv(fd, buf, len - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* The native protocol is "FIELD=value\n" for values without a newline. */
static bool has_field(const char *dgram, const char *field)
{
    size_t n = strlen(field);

    for (const char *p = dgram; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);

        if (l == n && memcmp(p, field, n) == 0)
            return true;
        if (!nl)
            break;
        p = nl + 1;
    }
    return false;
}

static bool has_key(const char *dgram, const char *key)
{
    char k[64];

    snprintf(k, sizeof(k), "\n%s=", key);
    return strncmp(dgram, k + 1, strlen(k + 1)) == 0 || strstr(dgram, k);
}

/* How many fields named key the datagram holds. */
static int count_key(const char *dgram, const char *key)
{
    size_t n = strlen(key);
    int count = 0;

    for (const char *p = dgram; *p;) {
        const char *nl = strchr(p, '\n');

        if (strncmp(p, key, n) == 0 && p[n] == '=')
            count++;
        if (!nl)
            break;
        p = nl + 1;
    }
    return count;
}

static int journal_child(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[] = "/tmp/test_log.XXXXXX", d[4096], v[64];
    struct stat st;
    int sock, file, real_stderr;

    if (unshare(CLONE_NEWNS) < 0)
        return 77;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") < 0)
        return 77;
    REQUIRE(mkdir("/run/systemd", 0755) == 0 && mkdir("/run/systemd/journal", 0755) == 0);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(sock >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/run/systemd/journal/socket");
    REQUIRE(bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0);

    file = mkstemp(path);
    REQUIRE(file >= 0);
    unlink(path);
    real_stderr = dup(STDERR_FILENO);
    REQUIRE(real_stderr >= 0);
    REQUIRE(dup2(file, STDERR_FILENO) == STDERR_FILENO);
    REQUIRE(fstat(STDERR_FILENO, &st) == 0);
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
    log_set_journal(sd_journal_sendv); /* as revokerd does */
    log_init("revokerd-test");
    log_set_level(LOG_DEBUG);

    int line = __LINE__ + 1;
    log_token(LOG_INFO, 42, "ba7816bf8f01cfea", "revoked", 200, "token 42 (ba7816bf8f01cfea) revoked\nin 12 ms");
    if (recv_fields(sock, d, sizeof(d)) == 0) {
        char want[64];

        /* the caller's place, once: sd_journal_sendv adds none of its own */
        CHECK(has_field(d, "CODE_FILE=test_log.c"));
        snprintf(want, sizeof(want), "CODE_LINE=%d", line);
        CHECK(has_field(d, want));
        CHECK(has_field(d, "CODE_FUNC=journal_child"));
        CHECK_INT(count_key(d, "CODE_FILE"), 1);
        CHECK_INT(count_key(d, "CODE_LINE"), 1);
        CHECK(has_field(d, "MESSAGE=token 42 (ba7816bf8f01cfea) revoked in 12 ms"));
        CHECK(has_field(d, "PRIORITY=6"));
        CHECK(has_field(d, "SYSLOG_IDENTIFIER=revokerd-test"));
        CHECK(has_field(d, "TOKEN_ID=42"));
        CHECK(has_field(d, "FINGERPRINT=ba7816bf8f01cfea"));
        CHECK(has_field(d, "EVENT=revoked"));
        CHECK(has_field(d, "HTTP_STATUS=200"));
        CHECK(!has_key(d, "AUDIT_SEQ"));
    } else {
        CHECK(!"no datagram for log_token");
    }

    /* no HTTP status: no field */
    log_token(LOG_WARNING, -1, "0000000000000000", "retry", 0, "token -1 retry");
    if (recv_fields(sock, d, sizeof(d)) == 0) {
        CHECK(has_field(d, "TOKEN_ID=-1"));
        CHECK(has_field(d, "PRIORITY=4"));
        CHECK(has_field(d, "EVENT=retry"));
        CHECK(!has_key(d, "HTTP_STATUS"));
    } else {
        CHECK(!"no datagram for log_token without status");
    }

    /* a line that knows only the token's id still carries TOKEN_ID */
    log_token(LOG_INFO, 7, NULL, NULL, 0, "control: revocation requested for token 7");
    if (recv_fields(sock, d, sizeof(d)) == 0) {
        CHECK(has_field(d, "TOKEN_ID=7"));
        CHECK(!has_key(d, "FINGERPRINT"));
        CHECK(!has_key(d, "EVENT"));
        CHECK(!has_key(d, "HTTP_STATUS"));
    } else {
        CHECK(!"no datagram for log_token with an id only");
    }

    /* a line about the audit chain's head: its two fields, no token's */
    log_audit_head(LOG_NOTICE, 1234, "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
                   "audit head: seq %d hash %s", 1234,
                   "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
    if (recv_fields(sock, d, sizeof(d)) == 0) {
        CHECK(has_field(d,
                        "MESSAGE=audit head: seq 1234 hash "
                        "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"));
        CHECK(has_field(d, "PRIORITY=5"));
        CHECK(has_field(d, "AUDIT_SEQ=1234"));
        CHECK(has_field(d, "AUDIT_HASH=5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"));
        CHECK_INT(count_key(d, "AUDIT_SEQ"), 1);
        CHECK(has_field(d, "CODE_FUNC=journal_child"));
        CHECK(!has_key(d, "TOKEN_ID"));
        CHECK(!has_key(d, "FINGERPRINT"));
    } else {
        CHECK(!"no datagram for log_audit_head");
    }

    /* a plain line has no token fields, and its own place */
    line = __LINE__ + 1;
    log_err("plain %s", "line");
    if (recv_fields(sock, d, sizeof(d)) == 0) {
        char want[64];

        snprintf(want, sizeof(want), "CODE_LINE=%d", line);
        CHECK(has_field(d, want));
        CHECK(has_field(d, "CODE_FILE=test_log.c"));
        CHECK(has_field(d, "CODE_FUNC=journal_child"));
        CHECK(has_field(d, "MESSAGE=plain line"));
        CHECK(has_field(d, "PRIORITY=3"));
        CHECK(!has_key(d, "TOKEN_ID"));
        CHECK(!has_key(d, "FINGERPRINT"));
        CHECK(!has_key(d, "EVENT"));
        CHECK(!has_key(d, "AUDIT_SEQ"));
        CHECK(!has_key(d, "AUDIT_HASH"));
    } else {
        CHECK(!"no datagram for log_err");
    }

    /* dropped by level: nothing is sent */
    log_set_level(LOG_NOTICE);
    log_info("dropped");
    {
        struct pollfd pfd = {.fd = sock, .events = POLLIN};

        CHECK_INT(poll(&pfd, 1, 100), 0);
    }

    /* journald not answering (its socket refuses): the line still reaches
     * stderr, with its prefix. (A missing socket is ENOENT, which
     * sd_journal_sendv swallows by design.) */
    close(sock);
    log_err("journal gone");
    {
        char out[256];
        ssize_t n = pread(file, out, sizeof(out) - 1, 0);

        REQUIRE(n >= 0);
        out[n] = '\0';
        CHECK_STR(out, "<3>journal gone\n"); /* and nothing else reached stderr before */
        /* no journal writer (revokerctl links no libsystemd): stderr, prefixed */
        log_set_journal(NULL);
        log_init("revokerd-test");
        log_err("no writer");
        n = pread(file, out, sizeof(out) - 1, 0);
        REQUIRE(n >= 0);
        out[n] = '\0';
        CHECK_STR(out, "<3>journal gone\n<3>no writer\n");
        if (unit_failures) {
            /* the failed checks wrote into the file: show them */
            n = pread(file, d, sizeof(d) - 1, 0);
            if (n > 0 && dup2(real_stderr, STDERR_FILENO) == STDERR_FILENO)
                fprintf(stderr, "journal child:\n%.*s", (int)n, d);
        }
    }
    return unit_failures ? 1 : 0;
}

static void test_journal(void)
{
    int status;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(journal_child());
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        printf("skip test_journal: cannot make a private /run (needs root and mount namespaces)\n");
        return;
    }
    CHECK_INT(WEXITSTATUS(status), 0);
}

/* ---- journal: a stand-in writer, without root ---- */

static char fake_fields[4096];
static int fake_calls;

/* The iovecs as the native protocol would carry them, one per line. */
static int fake_sendv(const struct iovec *iov, int n)
{
    size_t o = 0;

    fake_calls++;
    for (int i = 0; i < n && o + iov[i].iov_len + 2 < sizeof(fake_fields); i++) {
        memcpy(fake_fields + o, iov[i].iov_base, iov[i].iov_len);
        o += iov[i].iov_len;
        fake_fields[o++] = '\n';
    }
    fake_fields[o] = '\0';
    return 0;
}

/* The audit head's fields reach the writer, with the line as MESSAGE, and
 * a line at a level filtered out costs no call. */
static void test_audit_head_fields(void)
{
    char path[] = "/tmp/test_log.XXXXXX", v[64];
    struct stat st;
    int file = mkstemp(path), saved;

    REQUIRE(file >= 0);
    unlink(path);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    REQUIRE(saved >= 0 && dup2(file, STDERR_FILENO) == STDERR_FILENO);
    REQUIRE(fstat(STDERR_FILENO, &st) == 0);
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
    log_set_journal(fake_sendv);
    log_init("revokerd");
    log_set_level(LOG_NOTICE);
    fake_calls = 0;

    log_audit_head(LOG_NOTICE, 42, "ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2",
                   "audit head: seq %d hash %s", 42,
                   "ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2");
    CHECK_INT(fake_calls, 1);
    CHECK(has_field(
        fake_fields,
        "MESSAGE=audit head: seq 42 hash ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2"));
    CHECK(has_field(fake_fields, "AUDIT_SEQ=42"));
    CHECK(has_field(fake_fields,
                    "AUDIT_HASH=ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2"));
    CHECK(has_field(fake_fields, "PRIORITY=5"));
    CHECK(has_field(fake_fields, "CODE_FUNC=test_audit_head_fields"));
    CHECK(!has_key(fake_fields, "TOKEN_ID"));

    /* a hash longer than one (a cell edited by hand) is cut to 64 */
    log_audit_head(LOG_NOTICE, 7, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefEXTRA",
                   "h");
    CHECK(has_field(fake_fields,
                    "AUDIT_HASH=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    /* no hash: no audit fields */
    log_audit_head(LOG_NOTICE, 7, NULL, "no head");
    CHECK(!has_key(fake_fields, "AUDIT_SEQ"));
    CHECK(!has_key(fake_fields, "AUDIT_HASH"));
    CHECK(has_field(fake_fields, "MESSAGE=no head"));
    /* filtered out by level */
    log_audit_head(LOG_INFO, 8, "00", "dropped");
    CHECK_INT(fake_calls, 3);

    REQUIRE(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    close(file);
    unsetenv("JOURNAL_STREAM");
    log_set_journal(NULL);
    log_init("test_log");
    log_set_level(LOG_INFO);
}

static void test_level_names(void)
{
    static const struct {
        const char *name;
        int ret, level;
    } cases[] = {
        {"crit", 0, LOG_CRIT},      {"err", 0, LOG_ERR},       {"warning", 0, LOG_WARNING},
        {"notice", 0, LOG_NOTICE},  {"info", 0, LOG_INFO},     {"debug", 0, LOG_DEBUG},
        {"INFO", 0, LOG_INFO},      {"Debug", 0, LOG_DEBUG},   {"emerg", -EINVAL, 0},
        {"alert", -EINVAL, 0},      {"error", -EINVAL, 0},     {"warn", -EINVAL, 0},
        {"", -EINVAL, 0},           {"info ", -EINVAL, 0},     {"6", -EINVAL, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int level = -100;

        CHECK_INT(log_level_parse(cases[i].name, &level), cases[i].ret);
        CHECK_INT(level, cases[i].ret == 0 ? cases[i].level : -100);
        if (cases[i].ret == 0)
            CHECK_STR(log_level_name(cases[i].level), cases[i].name[0] == 'I' ? "info"
                                                      : cases[i].name[0] == 'D' ? "debug"
                                                                                : cases[i].name);
    }
    CHECK_INT(log_level_parse(NULL, &(int){0}), -EINVAL);
    CHECK_STR(log_level_name(LOG_EMERG), "emerg");
    CHECK_STR(log_level_name(8), "unknown");
    CHECK_STR(log_level_name(-1), "unknown");
}

TEST_MAIN(CASE(test_prefix_lines), CASE(test_level_filter), CASE(test_sanitise), CASE(test_truncation),
          CASE(test_one_write_despite_short_writes), CASE(test_errno_kept),
          CASE(test_journal_stream_mismatch), CASE(test_tty), CASE(test_journal),
          CASE(test_audit_head_fields), CASE(test_level_names))

/* test_audithead: the head lines on a real loop and SQLite file, through
 * the log module's journal path with a stand-in writer (no root needed):
 * every interval and on demand a line "audit head: seq N hash H" with the
 * fields AUDIT_SEQ and AUDIT_HASH naming the committed head; a warning
 * and no fields when the head cannot be read; no handle left after close. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "audit.h"
#include "audithead.h"
#include "db.h"
#include "log.h"
#include "unit.h"

#define MAX_LINES 64

static struct line {
    char message[256], seq[32], hash[96];
} lines[MAX_LINES];
static int n_lines;

static void field(const struct iovec *v, const char *key, char *out, size_t len)
{
    size_t k = strlen(key);

    if (v->iov_len > k && memcmp(v->iov_base, key, k) == 0)
        snprintf(out, len, "%.*s", (int)(v->iov_len - k), (const char *)v->iov_base + k);
}

static int fake_sendv(const struct iovec *iov, int n)
{
    struct line *l = &lines[n_lines < MAX_LINES ? n_lines : MAX_LINES - 1];

    memset(l, 0, sizeof(*l));
    for (int i = 0; i < n; i++) {
        field(&iov[i], "MESSAGE=", l->message, sizeof(l->message));
        field(&iov[i], "AUDIT_SEQ=", l->seq, sizeof(l->seq));
        field(&iov[i], "AUDIT_HASH=", l->hash, sizeof(l->hash));
    }
    if (n_lines < MAX_LINES)
        n_lines++;
    return 0;
}

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)type, (void)f;
    return remove(p);
}

/* Turns of the loop until want lines came, at most cap turns (each waits
 * for the next timer): no wall-clock deadline to miss on a loaded host. */
static void run_until_lines(uv_loop_t *loop, int want, int cap)
{
    for (int i = 0; i < cap && n_lines < want; i++)
        uv_run(loop, UV_RUN_ONCE);
}

static void append(struct db *db, struct audit *a, int64_t at)
{
    const struct audit_event e = {at, 3, "0123456789abcdef", AUDIT_REVOKED, 1, 200, NULL, 9};

    REQUIRE(db_begin(db) == 0);
    REQUIRE(audit_append(a, &e) == 0);
    REQUIRE(db_commit(db) == 0);
}

/* The line, its fields and the committed head agree. */
static void check_line(const struct line *l, struct db *db)
{
    struct audit_head h;
    char want[256];

    REQUIRE(audit_get_head(db, &h) == 0);
    snprintf(want, sizeof(want), "audit head: seq %" PRId64 " hash %s", h.seq, h.hash);
    CHECK_STR(l->message, want);
    snprintf(want, sizeof(want), "%" PRId64, h.seq);
    CHECK_STR(l->seq, want);
    CHECK_STR(l->hash, h.hash);
}

static void test_lines(void)
{
    char dir[] = "/tmp/test_audithead.XXXXXX", path[128], stream[64], journal[128];
    uv_loop_t loop;
    struct db *db;
    struct audit *a;
    struct audithead *h;
    struct stat st;
    int saved, file;

    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/a.db", dir);
    snprintf(journal, sizeof(journal), "%s/stderr", dir);
    /* stderr is "the journal": the lines go to the stand-in writer */
    file = open(journal, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(file >= 0);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    REQUIRE(saved >= 0 && dup2(file, STDERR_FILENO) == STDERR_FILENO);
    REQUIRE(fstat(STDERR_FILENO, &st) == 0);
    snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", stream, 1);
    log_set_journal(fake_sendv);
    log_init("revokerd");
    log_set_level(LOG_NOTICE);

    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(db_open(path, 0, &db) == 0);
    REQUIRE(audit_open(db, &a) == 0);

    /* the empty log's head, on demand */
    REQUIRE(audithead_new(&loop, db, 5, &h) == 0);
    CHECK_INT(n_lines, 0); /* nothing before it is asked or the interval passes */
    CHECK_INT(audithead_log(h), 0);
    CHECK_INT(n_lines, 1);
    CHECK_STR(lines[0].seq, "0");
    CHECK_STR(lines[0].hash, "0000000000000000000000000000000000000000000000000000000000000000");
    check_line(&lines[0], db);

    /* every interval, the committed head; also when nothing changed */
    for (int i = 0; i < 3; i++)
        append(db, a, 1000 + i);
    run_until_lines(&loop, 4, 100);
    CHECK(n_lines >= 4); /* one turn may run the timer twice (before and after its poll) */
    for (int i = 1; i < n_lines; i++) {
        CHECK_STR(lines[i].seq, "3");
        check_line(&lines[i], db);
    }
    append(db, a, 2000);
    int before = n_lines;
    run_until_lines(&loop, before + 1, 100);
    CHECK(n_lines >= before + 1);
    for (int i = before; i < n_lines; i++) {
        CHECK_STR(lines[i].seq, "4");
        check_line(&lines[i], db);
    }

    /* a longer interval: no line for a few turns that do not wait */
    audithead_set_interval(h, 600 * 1000);
    before = n_lines;
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(n_lines, before);

    /* the head cannot be read: a warning, no fields, the error returned */
    sqlite3 *other;
    REQUIRE(sqlite3_open(path, &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "DROP TABLE audit", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    CHECK(audithead_log(h) < 0);
    CHECK_INT(n_lines, before + 1);
    CHECK(strstr(lines[before].message, "cannot read the audit log's head (") != NULL);
    CHECK(strstr(lines[before].message, "no such table: audit") != NULL);
    CHECK_STR(lines[before].seq, "");
    CHECK_STR(lines[before].hash, "");

    /* closed: its handle leaves the loop, and it frees itself */
    audithead_close(h);
    audithead_close(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    audit_close(a);
    db_close(db);

    fflush(stderr);
    REQUIRE(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    close(file);
    if (unit_failures) {
        /* the failed checks went to the file that stood for stderr */
        FILE *f = fopen(journal, "r");
        char buf[512];

        while (f && fgets(buf, sizeof(buf), f))
            fputs(buf, stderr);
        if (f)
            fclose(f);
    }
    unsetenv("JOURNAL_STREAM");
    log_set_journal(NULL);
    log_init("test_audithead");
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TEST_MAIN(CASE(test_lines))

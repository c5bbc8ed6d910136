/* retention: the pruning steps of retention.h. */
#include "retention.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "auditverify.h"
#include "log.h"
#include "util.h"

enum {
    STEP_BUDGET_US = 4000,  /* a step's transaction should take at most this */
    STEP_MIN_ROWS = 16,     /* the adaptive row count never goes below */
    STEP_FIRST_ROWS = 64,   /* nor starts above */
    BUSY_FACTOR = 49,       /* others commit: wait 49 times what a step took (2 % of the loop), */
    BUSY_MIN_MS = 100,      /* at least this, */
    BUSY_ROWS = 128,        /* with at most this many rows a step (its WAL frames cost the engine's checkpoints) */
    IDLE_FACTOR = 1,        /* nobody else writes: as long as it took */
    RETRY_MS = 20,          /* a checkpoint copies (writes that can wait wait) */
    ERROR_RETRY_MS = 60000, /* after a failed step or export write */
    CHECK_MIN_MS = 1000,    /* nothing to do: look again after a tenth of the shortest span, */
    CHECK_MAX_MS = 60000,   /* within these */
    SWEEP_EVERY_MS = 10000, /* deleted secrets: a checkpoint with a sweep at most this often */
    TAIL_MAX = 65536,       /* the export file's last line is found in this many bytes */
};

enum kind { KIND_TOKENS, KIND_AUDIT, KIND_VACUUM, KIND_N };

struct retention {
    uv_loop_t *loop;
    struct store *store;
    uint64_t tokens_ms, audit_ms;
    unsigned batch;
    char *export_path;

    uv_timer_t timer;
    uv_work_t work;
    unsigned open_handles; /* the timer, and the export write while it runs */
    bool working;
    bool reopen; /* the export file changed while a write ran */
    bool closing;
    void (*closed)(void *data);
    void *closed_data;

    unsigned step_rows[KIND_N]; /* adaptive, up to batch */
    unsigned row_cap;           /* this step's: BUSY_ROWS while others commit */
    enum kind turn;             /* tokens and audit take turns */
    uint64_t commits_seen;      /* the store's commit count after our last step */

    int export_fd;        /* -1: none, or not usable (audit pruning waits) */
    int64_t exported_seq; /* the last row in the file */
    char exported_hash[AUDIT_HASH_LEN + 1];
    bool export_checked;  /* its last row matched the log's */
    char *buf;            /* the lines of the running write */
    size_t len, cap;
    int64_t buf_seq; /* the last row in buf */
    int work_err;

    bool secrets_deleted; /* a sweep is owed */
    uint64_t last_sweep_ms;
    uint64_t pass_tokens, pass_audit; /* deleted since the pass began */
    int64_t first_seq;                /* the audit's first row after the last prune */
    uint64_t pass_start_ms;
    bool in_pass;
};

static void schedule(struct retention *r, uint64_t ms);

/* ---- the export file ---- */

/* The last complete line's "seq", and a torn last line (a crash in a write)
 * cut off. 0 for an empty file. */
static int export_tail(int fd, int64_t *ret_seq, char ret_hash[AUDIT_HASH_LEN + 1])
{
    struct stat st;
    char buf[TAIL_MAX + 1];
    off_t from;
    ssize_t n;

    if (fstat(fd, &st) < 0)
        return -errno;
    *ret_seq = 0;
    *ret_hash = '\0';
    if (st.st_size == 0)
        return 0;
    from = st.st_size > TAIL_MAX ? st.st_size - TAIL_MAX : 0;
    n = pread(fd, buf, (size_t)(st.st_size - from), from);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    char *end = memrchr(buf, '\n', (size_t)n);
    if (!end)
        return from == 0 && ftruncate(fd, 0) == 0 ? 0 : -EBADMSG;
    if (end + 1 != buf + n && ftruncate(fd, from + (end + 1 - buf)) < 0)
        return -errno;
    *end = '\0';
    char *line = memrchr(buf, '\n', (size_t)(end - buf));
    line = line ? line + 1 : buf;
    json_t *j = json_loads(line, 0, NULL);
    json_t *seq = json_object_get(j, "seq");
    const char *hash = json_string_value(json_object_get(j, "hash"));
    int rc = json_is_integer(seq) ? 0 : -EBADMSG;
    if (rc == 0)
        *ret_seq = json_integer_value(seq);
    if (rc == 0 && hash)
        util_format(ret_hash, AUDIT_HASH_LEN + 1, "%s", hash);
    json_decref(j);
    return rc;
}

static void export_close(struct retention *r)
{
    if (r->export_fd >= 0)
        close(r->export_fd);
    r->export_fd = -1;
}

static void export_open(struct retention *r)
{
    int rc;

    export_close(r);
    if (!r->export_path)
        return;
    r->export_fd = open(r->export_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (r->export_fd < 0) {
        log_err("retention: cannot open the audit export %s: %s; audit rows are not pruned until a reload "
                "names a file that opens",
                r->export_path, strerror(errno));
        return;
    }
    r->export_checked = false;
    rc = export_tail(r->export_fd, &r->exported_seq, r->exported_hash);
    if (rc < 0) {
        log_err(
            "retention: the audit export %s does not end with a JSON line holding \"seq\" (%s); audit rows "
            "are not pruned until it is repaired or another file is named",
            r->export_path, strerror(-rc));
        export_close(r);
    }
}

/* The file's last row must be the log's row of that seq, or one pruned
 * already: a file of another database, or a database restored under a
 * newer file, would let rows be deleted as if exported. 0 when it
 * matches; else the file is closed with an error (audit rows are kept). */
static int export_check(struct retention *r)
{
    struct db *db = store_db(r->store);
    struct audit_head head;
    struct audit_anchor an;
    char hash[AUDIT_HASH_LEN + 1] = "";
    const char *why = NULL;
    int64_t e = r->exported_seq;
    int found = e > 0 ? audit_hash_at(db, e, hash) : 0, rc;

    if (found < 0)
        return found;
    rc = auditverify_get_anchor(db, &an);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    bool anchored = rc == 0;
    if (found == 1 && strcmp(hash, r->exported_hash) != 0) {
        why = "another hash";
    } else if (found == 0 && e > 0) {
        rc = audit_get_head(db, &head);
        if (rc < 0)
            return rc;
        if (head.seq < e)
            why = "its newest row is older";
        else if (anchored && an.first_seq - 1 == e && strcmp(an.prev_hash, r->exported_hash) != 0)
            why = "the audit anchor chains from another hash";
    }
    if (why) {
        log_err("retention: the audit export %s ends at seq %" PRId64
                ", which does not match the audit log (%s: "
                "the file of another database, or the database restored from a backup); audit rows are not "
                "pruned until it is repaired or another file is named",
                r->export_path, e, why);
        export_close(r);
        return 0;
    }
    /* Pruned before the file held them (it was new, or cut): a gap. */
    if (found == 0 && anchored && an.first_seq - 1 > e)
        log_warning("retention: the audit export %s ends at seq %" PRId64
                    " but the audit log starts at seq %" PRId64 ": seq %" PRId64 "..%" PRId64
                    " are in neither (pruned before the file held them, or the file "
                    "was cut)",
                    r->export_path, e, an.first_seq, e + 1, an.first_seq - 1);
    r->export_checked = true;
    return 0;
}

static int on_export_row(void *ud, const struct audit_row *row)
{
    struct retention *r = ud;
    char *line;
    int rc;

    if (row->seq <= r->exported_seq)
        return 0; /* written before a crash, not yet deleted */
    rc = audit_row_json(row, &line);
    if (rc < 0)
        return rc;
    size_t n = strlen(line);
    if (r->len + n + 1 > r->cap) {
        size_t cap = (r->len + n + 1) * 2;
        char *grown = realloc(r->buf, cap);
        if (!grown) {
            free(line);
            return -ENOMEM;
        }
        r->buf = grown;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, line, n);
    r->buf[r->len + n] = '\n';
    r->len += n + 1;
    r->buf_seq = row->seq;
    free(line);
    return 0;
}

/* On the threadpool: the lines, then fsync; a failed write is cut off. */
static void export_write(uv_work_t *w)
{
    struct retention *r = container_of(w, struct retention, work);
    off_t size = lseek(r->export_fd, 0, SEEK_END);
    size_t done = 0;

    r->work_err = 0;
    while (done < r->len) {
        ssize_t n = write(r->export_fd, r->buf + done, r->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->work_err = -errno;
            break;
        }
        done += (size_t)n;
    }
    if (r->work_err == 0 && fsync(r->export_fd) < 0)
        r->work_err = -errno;
    if (r->work_err < 0 && size >= 0 && ftruncate(r->export_fd, size) < 0)
        r->work_err = -EIO;
}

static void free_retention(struct retention *r)
{
    void (*closed)(void *) = r->closed;
    void *data = r->closed_data;

    export_close(r);
    free(r->buf);
    free(r->export_path);
    free(r);
    if (closed)
        closed(data);
}

static void handle_closed(struct retention *r)
{
    if (--r->open_handles == 0)
        free_retention(r);
}

static void after_export(uv_work_t *w, int status)
{
    struct retention *r = container_of(w, struct retention, work);

    r->working = false;
    if (status == 0 && r->work_err == 0)
        r->exported_seq = r->buf_seq;
    r->len = 0;
    if (r->closing) {
        handle_closed(r);
        return;
    }
    r->open_handles--;
    if (r->reopen) {
        r->reopen = false;
        export_open(r);
    }
    if (status < 0 || r->work_err < 0) {
        log_err("retention: cannot append to the audit export %s: %s; audit rows are kept, retrying in %d s",
                r->export_path, status < 0 ? uv_strerror(status) : strerror(-r->work_err),
                ERROR_RETRY_MS / 1000);
        schedule(r, ERROR_RETRY_MS);
        return;
    }
    schedule(r, 0);
}

/* ---- the steps ---- */

static uint64_t commits(struct retention *r)
{
    struct store_metrics m;

    store_get_metrics(r->store, &m);
    return m.commit.count;
}

static unsigned step_rows(const struct retention *r, enum kind k)
{
    return r->step_rows[k] < r->row_cap ? r->step_rows[k] : r->row_cap;
}

static int prune_tokens(struct retention *r, int64_t now_ms, unsigned *ret_n)
{
    unsigned n = 0, secrets = 0;
    int rc = store_begin(r->store, STORE_WRITE_CAN_WAIT);

    if (rc < 0)
        return rc;
    rc = store_end(r->store,
                   store_prune_tokens(r->store, now_ms - (int64_t)r->tokens_ms, step_rows(r, KIND_TOKENS), &n,
                                      &secrets));
    if (rc < 0)
        return rc;
    store_note_pruned(r->store, n, 0);
    r->pass_tokens += n;
    r->secrets_deleted |= secrets > 0;
    *ret_n = n;
    return 0;
}

/* 1: an export write was started; the step ends there. */
static int prune_audit(struct retention *r, int64_t now_ms, unsigned *ret_n)
{
    int64_t before = now_ms - (int64_t)r->audit_ms, keep = 0;
    unsigned n = 0;
    int rc;

    if (r->export_path && r->export_fd >= 0 && !r->export_checked && (rc = export_check(r)) < 0)
        return rc;
    if (r->export_path && r->export_fd < 0)
        return 0; /* never delete what the export should hold */
    if (r->export_path) {
        r->len = 0;
        rc = store_prune_audit_plan(r->store, before, step_rows(r, KIND_AUDIT), &keep, on_export_row, r);
        if (rc < 0)
            return rc;
        if (r->len > 0) {
            rc = uv_queue_work(r->loop, &r->work, export_write, after_export);
            if (rc < 0)
                return -ENOMEM;
            r->working = true;
            r->open_handles++;
            return 1;
        }
    }
    rc = store_begin(r->store, STORE_WRITE_CAN_WAIT);
    if (rc < 0)
        return rc;
    /* Again inside the transaction: the same rows, as only the newest grow. */
    rc = store_prune_audit_plan(r->store, before, step_rows(r, KIND_AUDIT), &keep, NULL, NULL);
    if (rc == 0 && r->export_path && keep > r->exported_seq + 1)
        keep = r->exported_seq + 1;
    if (rc == 0 && keep > 0)
        rc = store_prune_audit(r->store, keep, now_ms, &n);
    rc = store_end(r->store, rc);
    if (rc < 0)
        return rc;
    store_note_pruned(r->store, 0, n);
    if (n > 0)
        r->first_seq = keep;
    r->pass_audit += n;
    *ret_n = n;
    return 0;
}

static int vacuum(struct retention *r, unsigned *ret_n)
{
    bool more = false;
    int rc = store_begin(r->store, STORE_WRITE_CAN_WAIT);

    if (rc < 0)
        return rc;
    rc = store_end(r->store, store_vacuum_step(r->store, &more));
    if (rc < 0)
        return rc;
    *ret_n = more;
    return 0;
}

/* Rows per step: halved when a step took longer than the budget, doubled
 * (up to batch) when it took less than half of it. */
static void adapt(struct retention *r, enum kind k, uint64_t took_us)
{
    unsigned *rows = &r->step_rows[k];

    if (took_us > STEP_BUDGET_US && *rows > STEP_MIN_ROWS)
        *rows /= 2;
    else if (took_us < STEP_BUDGET_US / 2 && *rows < r->batch)
        *rows = *rows * 2 > r->batch ? r->batch : *rows * 2;
    if (*rows > r->batch)
        *rows = r->batch;
}

static uint64_t idle_ms(const struct retention *r)
{
    uint64_t span = 0;

    if (r->tokens_ms)
        span = r->tokens_ms;
    if (r->audit_ms && (!span || r->audit_ms < span))
        span = r->audit_ms;
    span /= 10;
    return span < CHECK_MIN_MS ? CHECK_MIN_MS : span > CHECK_MAX_MS ? CHECK_MAX_MS : span;
}

static void sweep(struct retention *r, bool pass_end)
{
    uint64_t now = uv_now(r->loop);

    if (!r->secrets_deleted || (!pass_end && now - r->last_sweep_ms < SWEEP_EVERY_MS))
        return;
    r->secrets_deleted = false;
    r->last_sweep_ms = now;
    store_checkpoint_request(r->store);
}

static void pass_end(struct retention *r)
{
    sweep(r, true);
    /* The first seq leaves the file with a notice: a record of the anchor
     * against oldest rows deleted by another writer (README). */
    if (r->in_pass && r->pass_audit)
        log_notice("retention: %" PRIu64 " finished token(s) and %" PRIu64
                   " audit row(s) deleted in %.1f s; the audit log starts at seq %" PRId64,
                   r->pass_tokens, r->pass_audit, (double)(uv_now(r->loop) - r->pass_start_ms) / 1000,
                   r->first_seq);
    else if (r->in_pass && r->pass_tokens)
        log_info("retention: %" PRIu64 " finished token(s) deleted in %.1f s", r->pass_tokens,
                 (double)(uv_now(r->loop) - r->pass_start_ms) / 1000);
    r->in_pass = false;
    r->pass_tokens = r->pass_audit = 0;
}

static void on_timer(uv_timer_t *h)
{
    struct retention *r = container_of(h, struct retention, timer);
    int64_t now_ms = db_now_ms();
    uint64_t start = uv_hrtime(), busy = commits(r) != r->commits_seen;
    unsigned n = 0;
    enum kind k = KIND_TOKENS;
    int rc = 0;

    if (r->closing || r->working)
        return;
    if (!store_may_write(r->store, STORE_WRITE_CAN_WAIT)) {
        schedule(r, RETRY_MS);
        return;
    }
    r->row_cap = busy ? BUSY_ROWS : UINT_MAX;
    /* Tokens and audit take turns; the vacuum comes when neither has work. */
    for (unsigned i = 0; i < 2 && rc == 0 && n == 0; i++) {
        k = (enum kind)((r->turn + i) % 2);
        if (k == KIND_TOKENS && r->tokens_ms)
            rc = prune_tokens(r, now_ms, &n);
        else if (k == KIND_AUDIT && r->audit_ms)
            rc = prune_audit(r, now_ms, &n);
    }
    r->turn = (enum kind)((k + 1) % 2);
    if (rc == 1)
        return; /* after_export goes on */
    if (rc == 0 && n == 0) {
        k = KIND_VACUUM;
        rc = vacuum(r, &n);
    }
    uint64_t took_us = (uv_hrtime() - start) / 1000;
    r->commits_seen = commits(r);
    if (rc == -EAGAIN || rc == -EBUSY) {
        schedule(r, RETRY_MS);
        return;
    }
    if (rc < 0) {
        log_warning("retention: a pruning step failed: %s (%s); retrying in %d s", strerror(-rc),
                    store_errmsg(r->store), ERROR_RETRY_MS / 1000);
        schedule(r, ERROR_RETRY_MS);
        return;
    }
    if (n == 0) {
        pass_end(r);
        schedule(r, idle_ms(r));
        return;
    }
    if (!r->in_pass) {
        r->in_pass = true;
        r->pass_start_ms = uv_now(r->loop);
    }
    adapt(r, k, took_us);
    sweep(r, false);
    uint64_t wait_ms = took_us * (busy ? BUSY_FACTOR : IDLE_FACTOR) / 1000 + 1;
    schedule(r, busy && wait_ms < BUSY_MIN_MS ? BUSY_MIN_MS : wait_ms);
}

static void schedule(struct retention *r, uint64_t ms)
{
    if (!r->closing)
        uv_timer_start(&r->timer, on_timer, ms, 0);
}

/* ---- lifecycle ---- */

int retention_configure(struct retention *r, const struct config *cfg)
{
    const char *path = cfg->retention_audit_export;
    bool same = (!path && !r->export_path) || (path && r->export_path && strcmp(path, r->export_path) == 0);

    if (!same) {
        char *copy = path ? strdup(path) : NULL;
        if (path && !copy)
            return -ENOMEM;
        free(r->export_path);
        r->export_path = copy;
    }
    r->tokens_ms = cfg->retention_tokens_ms;
    r->audit_ms = cfg->retention_audit_ms;
    r->batch = cfg->retention_batch;
    for (unsigned k = 0; k < KIND_N; k++)
        r->step_rows[k] = r->batch < STEP_FIRST_ROWS ? r->batch : STEP_FIRST_ROWS;
    /* A write in flight keeps its descriptor until it returns. */
    if (r->working)
        r->reopen = !same || r->export_fd < 0;
    else if (!same || r->export_fd < 0)
        export_open(r);
    schedule(r, 0);
    return 0;
}

int retention_new(uv_loop_t *loop, struct store *store, const struct config *cfg, struct retention **ret)
{
    struct retention *r = calloc(1, sizeof(*r));
    int rc;

    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->store = store;
    r->export_fd = -1;
    uv_timer_init(loop, &r->timer);
    r->open_handles = 1;
    r->commits_seen = commits(r);
    rc = retention_configure(r, cfg);
    if (rc < 0) {
        retention_close(r, NULL, NULL);
        return rc;
    }
    *ret = r;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(container_of((uv_timer_t *)h, struct retention, timer));
}

void retention_close(struct retention *r, void (*closed)(void *data), void *data)
{
    if (!r) {
        if (closed)
            closed(data);
        return;
    }
    r->closing = true;
    r->closed = closed;
    r->closed_data = data;
    pass_end(r);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

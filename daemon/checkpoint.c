#include "checkpoint.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum {
    STEP2_FRAMES = 128, /* at most this much left for step 2 to copy, */
    STEP1_ROUNDS = 4,   /* unless step 1 ran this many times more */
    /* wal.c's WAL_CKPT_LOCK: the shm lock every checkpointer holds while it
     * writes pages into the database file. */
    SHM_CKPT_LOCK = 1,
    SWEEP_CHUNK = 64,   /* pages read at once */
    STEP2_BUSY_MS = 20, /* step 2 waits this long for the writer lock and readers */
};

struct checkpoint {
    uv_loop_t *loop;
    struct db *db;
    sqlite3 *conn; /* step 1's own; used by the threadpool only while running */
    uv_work_t work;
    checkpoint_cb cb;
    void *data;
    int step1_rc, step1_frames;
    int step2_rc;
    int sweep_rc;
    unsigned sweep_pages; /* rewritten by the last sweep */
    /* checkpoint_request()s so far, those the running sweep serves, those
     * served by a sweep that ended well: a sweep is due while they differ. */
    unsigned requests, sweep_serves, swept;
    /* requests when step 2 was queued: one that comes after it may have
     * cleared a secret in a commit step 2 did not cut. */
    unsigned cut_serves;
    bool committed_while_cutting; /* the WAL is not empty after step 2 */
    /* The sweep reads the whole file: it may take at most a tenth of the
     * time (one of the two cores' worth of a busy drain otherwise). */
    uint64_t sweep_started_ms, next_sweep_ms;
    int wal_frames;  /* the WAL's size at the last commit */
    unsigned rounds; /* step 1 again in this pass */
    uint64_t pass_started_ns; /* uv_hrtime at the pass's first step 1 */
    struct checkpoint_stats stats;
    bool running;  /* step 1, step 2 or the sweep is queued or running */
    bool cutting;  /* it is step 2 (queued or running) */
    atomic_bool in_step2; /* step 2's checkpoint runs on the threadpool (set there) */
    bool sweeping; /* it is the sweep */
    bool failed;  /* the last pass failed (not busy): wait for checkpoint_request() */
    int stuck_err;     /* step 1 or 2 failed for want of space or on I/O: writes wait; 0 when not */
    unsigned stuck_passes; /* failed passes since the WAL was last cut */
    bool closing;
    void (*closed)(void *data);
    void *closed_data;
};

static void start(struct checkpoint *c);
static void step2(uv_work_t *w);
static void after_step2(uv_work_t *w, int status);

enum { SWEEP_DUTY = 9 }; /* wait 9 times a sweep's duration before the next */

static void free_now(struct checkpoint *c)
{
    void (*closed)(void *) = c->closed;
    void *data = c->closed_data;

    sqlite3_close(c->conn);
    free(c);
    if (closed)
        closed(data);
}

/* After each commit of the loop's connection; frames: the WAL's size. */
static int on_commit(void *data, sqlite3 *conn, const char *schema, int frames)
{
    struct checkpoint *c = data;

    c->wal_frames = frames;
    c->committed_while_cutting |= c->cutting;
    if (frames >= CHECKPOINT_FRAMES_INLINE) {
        /* The loop has not come back for step 2 (a long turn: a flood of
         * socket requests): do what SQLite would have done, here. */
        (void)sqlite3_wal_checkpoint_v2(conn, schema, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        c->stats.inline_passes++;
    }
    if (frames >= CHECKPOINT_FRAMES && !c->failed && !c->running && !c->closing)
        start(c);
    return SQLITE_OK;
}

/* Step 1, on the threadpool: touches c->conn, c->step1_rc and
 * c->step1_frames only. */
static void step1(uv_work_t *w)
{
    struct checkpoint *c = w->data;
    int log_frames = 0;

    c->step1_frames = 0;
    c->step1_rc = sqlite3_wal_checkpoint_v2(c->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                            &c->step1_frames);
}

/* ---- step 3, the sweep: free space of b-tree pages zeroed in the file ----
 *
 * secure_delete zeroes a cell when it is deleted, but when a balance
 * rebuilds a page (btree.c's rebuildPage(), the fallback of editPage())
 * the cells are written anew from the end of the page and the bytes
 * between the cell pointers and the new cell content area are left as
 * they were: copies of cells that were there, secrets included. A row
 * that grows (its hash, its due state) is what splits pages; the copy
 * outlives the row's own secret, which the scrub cleared. */

static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)be16(p) << 16 | be16(p + 2);
}

/* Zero p[0..n); true if a byte was not zero. */
static bool zero_range(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            memset(p + i, 0, n - i);
            return true;
        }
    }
    return false;
}

/* Zero the unallocated space and the freeblocks' bodies of one b-tree page
 * (hdr: 100 on page 1); true if it changed. A page that does not parse as
 * a b-tree page (overflow, freelist, or damaged) is left alone. */
static bool sweep_page(unsigned char *page, unsigned hdr, unsigned usable)
{
    unsigned char type = page[hdr];
    unsigned ncell, content, cells, pc, n = 0;
    bool changed;

    if (type != 2 && type != 5 && type != 10 && type != 13)
        return false;
    ncell = be16(page + hdr + 3);
    content = be16(page + hdr + 5);
    if (content == 0)
        content = 65536;
    cells = hdr + (type == 10 || type == 13 ? 8 : 12) + 2 * ncell;
    if (cells > content || content > usable)
        return false;
    /* The chain must be what btree.c makes: ascending, inside the content
     * area, not overlapping. */
    for (pc = be16(page + hdr + 1); pc; pc = be16(page + pc)) {
        unsigned size = pc + 4 <= usable ? be16(page + pc + 2) : 0;
        unsigned next = size ? be16(page + pc) : 0;
        if (pc < content || size < 4 || pc + size > usable || (next && next < pc + size) ||
            ++n > usable / 4)
            return false;
    }
    changed = zero_range(page + cells, content - cells);
    for (pc = be16(page + hdr + 1); pc; pc = be16(page + pc))
        changed |= zero_range(page + pc + 4, be16(page + pc + 2) - 4);
    return changed;
}

/* Every page of the file through f; the caller holds the checkpoint lock,
 * so no checkpointer writes a page between its read and its write here. */
static int sweep_file(sqlite3_file *f, unsigned *ret_pages)
{
    const struct sqlite3_io_methods *m = f->pMethods;
    unsigned char head[100], *buf;
    sqlite3_int64 size;
    unsigned psize, usable, per_map, lock_page, pages, written = 0;
    bool autovacuum;
    int rc;

    rc = m->xFileSize(f, &size);
    if (rc != SQLITE_OK || size < (sqlite3_int64)sizeof(head))
        return rc;
    rc = m->xRead(f, head, sizeof(head), 0);
    if (rc != SQLITE_OK)
        return rc;
    psize = be16(head + 16) == 1 ? 65536 : be16(head + 16);
    if (psize < 512 || (psize & (psize - 1)) || head[20] >= psize - 480)
        return SQLITE_CORRUPT;
    usable = psize - head[20];
    pages = (unsigned)(size / psize);
    /* Overflow and freelist trunk pages start with a page number: its high
     * byte is 0 below 2^24 pages, so none looks like a b-tree page. */
    if (size / psize >= 1 << 24)
        return SQLITE_OK;
    autovacuum = be32(head + 52) != 0;
    per_map = usable / 5 + 1;
    lock_page = (unsigned)(0x40000000 / psize) + 1; /* PENDING_BYTE's page: never used */
    buf = malloc((size_t)psize * SWEEP_CHUNK);
    if (!buf)
        return SQLITE_NOMEM;
    for (unsigned first = 1; first <= pages && rc == SQLITE_OK; first += SWEEP_CHUNK) {
        unsigned n = pages - first + 1 < SWEEP_CHUNK ? pages - first + 1 : SWEEP_CHUNK;
        sqlite3_int64 at = (sqlite3_int64)(first - 1) * psize;
        rc = m->xRead(f, buf, (int)(n * psize), at);
        for (unsigned i = 0; i < n && rc == SQLITE_OK; i++) {
            unsigned pgno = first + i;
            unsigned char *page = buf + (size_t)i * psize;
            /* Pointer-map pages of an auto_vacuum database are no b-tree. */
            if (pgno == lock_page || (autovacuum && pgno >= 2 && (pgno - 2) % per_map == 0))
                continue;
            if (sweep_page(page, pgno == 1 ? 100 : 0, usable)) {
                rc = m->xWrite(f, page, (int)psize, at + (sqlite3_int64)i * psize);
                written++;
            }
        }
    }
    free(buf);
    if (rc == SQLITE_OK && written)
        rc = m->xSync(f, SQLITE_SYNC_NORMAL);
    if (rc == SQLITE_OK)
        *ret_pages = written;
    return rc;
}

/* On the threadpool, through step 1's connection (idle meanwhile). */
static void sweep(uv_work_t *w)
{
    struct checkpoint *c = w->data;
    sqlite3_file *f = NULL;
    int rc;

    c->sweep_pages = 0;
    rc = sqlite3_file_control(c->conn, "main", SQLITE_FCNTL_FILE_POINTER, &f);
    if (rc == SQLITE_OK && (!f || !f->pMethods || f->pMethods->iVersion < 2 || !f->pMethods->xShmLock))
        rc = SQLITE_MISUSE;
    if (rc == SQLITE_OK)
        rc = f->pMethods->xShmLock(f, SHM_CKPT_LOCK, 1, SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE);
    if (rc != SQLITE_OK) {
        c->sweep_rc = rc;
        return;
    }
    c->sweep_rc = sweep_file(f, &c->sweep_pages);
    (void)f->pMethods->xShmLock(f, SHM_CKPT_LOCK, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
}

static void pass_ended(struct checkpoint *c, int err, const char *msg)
{
    static const uint64_t le_us[HISTOGRAM_MAX] = HISTOGRAM_CHECKPOINT_US;

    histogram_observe(&c->stats.duration, le_us, HISTOGRAM_MAX, (uv_hrtime() - c->pass_started_ns) / 1000);
    /* Readers in the way (-EBUSY) are common and pass: keep the WAL's size
     * asking. Anything else would fail again at every commit. */
    c->failed = err < 0 && err != -EBUSY;
    if (err == 0)
        c->stats.passes++;
    if (c->cb)
        c->cb(c->data, err, msg);
}

static void after_sweep(uv_work_t *w, int status)
{
    struct checkpoint *c = w->data;
    int rc = status == 0 ? c->sweep_rc : SQLITE_ERROR;

    c->running = c->sweeping = false;
    if (c->closing) {
        free_now(c);
        return;
    }
    if (rc != SQLITE_OK) {
        /* Another checkpointer holds the lock (BUSY): the next pass sweeps. */
        pass_ended(c, db_errno(rc),
                   rc == SQLITE_BUSY ? "another connection checkpoints" : sqlite3_errstr(rc));
        return;
    }
    c->swept = c->sweep_serves;
    c->next_sweep_ms = uv_now(c->loop) + SWEEP_DUTY * (uv_now(c->loop) - c->sweep_started_ms);
    c->stats.sweeps++;
    c->stats.pages_swept += c->sweep_pages;
    /* Pages the loop's connection read before the sweep would bring the old
     * bytes back with its next change to them. */
    if (c->sweep_pages)
        sqlite3_db_release_memory(c->db->conn);
    /* A request that came while the sweep ran may have cleared a secret in
     * a page already swept: "busy" makes the engine ask again (in 1 s),
     * and the pass that serves it sweeps once its turn has come. */
    if (c->requests != c->swept)
        pass_ended(c, -EBUSY, "secrets were cleared during the sweep");
    else
        pass_ended(c, 0, NULL);
}

/* Out of space, or the disk failing: each commit would only grow a WAL that
 * cannot be reset, so writes wait (checkpoint_stuck). Other failures
 * (corruption, a read-only file) are retried and logged as before. */
static bool holds_writes(int err)
{
    return err == -ENOSPC || err == -EIO;
}

static void after_step1(uv_work_t *w, int status)
{
    struct checkpoint *c = w->data;

    c->running = false;
    if (c->closing) {
        free_now(c);
        return;
    }
    if (status == 0 && c->step1_frames > 0)
        c->stats.frames_off_loop += (uint64_t)c->step1_frames;
    if (status == 0 && c->step1_rc != SQLITE_OK && c->step1_rc != SQLITE_BUSY) {
        int err = db_errno(c->step1_rc);
        if (holds_writes(err)) {
            c->stuck_err = err;
            c->stuck_passes++;
        }
        pass_ended(c, err, sqlite3_errmsg(c->conn));
        return;
    }
    /* Much was committed while step 1 ran (its fsync takes long under
     * load), or it was kept out (BUSY: a commit was rewriting the WAL index,
     * or another process checkpoints): step 1 again, so that step 2's copy
     * and fsync on the loop stay short. */
    bool busy = c->step1_rc == SQLITE_BUSY;
    if ((busy || c->wal_frames - c->step1_frames > STEP2_FRAMES) && c->rounds < STEP1_ROUNDS) {
        c->rounds++;
        start(c);
        return;
    }
    c->rounds = 0;
    if (!sqlite3_get_autocommit(c->db->conn)) {
        pass_ended(c, -EBUSY, "a transaction is open");
        return;
    }
    c->running = c->cutting = true;
    c->cut_serves = c->requests;
    c->committed_while_cutting = false;
    (void)uv_queue_work(c->loop, &c->work, step2, after_step2);
}

/* Step 2, on the threadpool through step 1's connection: its fsync and the
 * WAL's truncation took 20-40 ms of the loop on a busy disk. It takes the
 * writer lock, and waits a little for it and for readers (the loop's are
 * short). */
static void step2(uv_work_t *w)
{
    struct checkpoint *c = w->data;

    db_busy_wait(c->conn, STEP2_BUSY_MS);
    atomic_store(&c->in_step2, true);
    c->step2_rc = sqlite3_wal_checkpoint_v2(c->conn, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    atomic_store(&c->in_step2, false);
    db_busy_wait(c->conn, 0);
}

static void after_step2(uv_work_t *w, int status)
{
    struct checkpoint *c = w->data;
    int rc = status == 0 ? c->step2_rc : SQLITE_ERROR;
    int err = rc == SQLITE_OK ? 0 : db_errno(rc);

    c->running = c->cutting = false;
    if (c->closing) {
        free_now(c);
        return;
    }
    if (err == 0) {
        if (!c->committed_while_cutting) /* between its end and this callback */
            c->wal_frames = 0;
        c->stuck_err = 0;
        c->stuck_passes = 0;
    } else if (holds_writes(err)) {
        c->stuck_err = err;
        c->stuck_passes++;
    }
    if (err == 0 && c->requests != c->swept && uv_now(c->loop) < c->next_sweep_ms) {
        /* Its turn comes later: the engine's retry of a busy pass asks again. */
        pass_ended(c, -EBUSY, "the sweep waits its turn");
        return;
    }
    if (err == 0 && c->requests != c->swept) {
        c->running = c->sweeping = true;
        c->sweep_started_ms = uv_now(c->loop);
        c->sweep_serves = c->cut_serves;
        (void)uv_queue_work(c->loop, &c->work, sweep, after_sweep);
        return;
    }
    pass_ended(c, err, err < 0 ? sqlite3_errmsg(c->conn) : NULL);
}

static void start(struct checkpoint *c)
{
    if (c->rounds == 0)
        c->pass_started_ns = uv_hrtime();
    c->running = true;
    c->work.data = c;
    (void)uv_queue_work(c->loop, &c->work, step1, after_step1); /* fails for NULL callbacks only */
}

int checkpoint_new(uv_loop_t *loop, struct db *db, checkpoint_cb cb, void *data,
                   struct checkpoint **ret)
{
    struct checkpoint *c = calloc(1, sizeof(*c));
    const char *path = sqlite3_db_filename(db->conn, "main");

    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->db = db;
    c->cb = cb;
    c->data = data;
    if (path && path[0]) {
        int rc = sqlite3_open_v2(path, &c->conn, SQLITE_OPEN_READWRITE, NULL);
        /* A connection learns that the file is in WAL mode when it first
         * reads it; until then a checkpoint through it does nothing. */
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c->conn, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            int err = db_errno(rc);
            sqlite3_close(c->conn);
            free(c);
            return err;
        }
        sqlite3_wal_hook(db->conn, on_commit, c);
    }
    *ret = c;
    return 0;
}

void checkpoint_request(struct checkpoint *c)
{
    if (!c || !c->conn || c->closing)
        return;
    c->requests++;
    /* A running pass serves this request too: its step 2 copies and cuts
     * whatever was committed until then. */
    if (!c->running)
        start(c);
}

int checkpoint_stuck(const struct checkpoint *c)
{
    return c ? c->stuck_err : 0;
}

unsigned checkpoint_retry_ms(const struct checkpoint *c)
{
    unsigned n = c && c->stuck_passes ? c->stuck_passes - 1 : 0;
    unsigned ms;

    if (!c || !c->stuck_err)
        return CHECKPOINT_RETRY_SWEEP_MS; /* the WAL was cut: only the sweep failed */
    ms = CHECKPOINT_RETRY_MIN_MS << (n < 4 ? n : 4);

    return ms < CHECKPOINT_RETRY_MAX_MS ? ms : CHECKPOINT_RETRY_MAX_MS;
}

bool checkpoint_copying(const struct checkpoint *c)
{
    return c && c->running && !c->sweeping;
}

bool checkpoint_cutting(const struct checkpoint *c)
{
    return c && c->running && c->cutting;
}

bool checkpoint_in_step2(struct checkpoint *c)
{
    return c && atomic_load(&c->in_step2);
}

void checkpoint_get_stats(const struct checkpoint *c, struct checkpoint_stats *ret)
{
    static const struct checkpoint_stats none;
    *ret = c ? c->stats : none;
    ret->wal_frames = c ? c->wal_frames : 0;
    ret->sweep_due = c && c->requests != c->swept;
}

void checkpoint_close(struct checkpoint *c, void (*closed)(void *data), void *data)
{
    if (!c) {
        if (closed)
            closed(data);
        return;
    }
    if (c->conn)
        sqlite3_wal_autocheckpoint(c->db->conn, CHECKPOINT_FRAMES);
    c->closing = true;
    c->closed = closed;
    c->closed_data = data;
    if (!c->running)
        free_now(c);
}

#include "checkpoint.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

enum {
    STEP2_FRAMES = 128, /* at most this much left for step 2 to copy, */
    STEP1_ROUNDS = 4,   /* unless step 1 ran this many times more */
};

struct checkpoint {
    uv_loop_t *loop;
    struct db *db;
    sqlite3 *conn; /* step 1's own; used by the threadpool only while running */
    uv_work_t work;
    checkpoint_cb cb;
    void *data;
    int step1_rc, step1_frames;
    int wal_frames;  /* the WAL's size at the last commit */
    unsigned rounds; /* step 1 again in this pass */
    struct checkpoint_stats stats;
    bool running; /* step 1 is queued or running */
    bool failed;  /* the last pass failed (not busy): wait for checkpoint_request() */
    bool closing;
    void (*closed)(void *data);
    void *closed_data;
};

static void start(struct checkpoint *c);

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

static void pass_ended(struct checkpoint *c, int err, const char *msg)
{
    /* Readers in the way (-EBUSY) are common and pass: keep the WAL's size
     * asking. Anything else would fail again at every commit. */
    c->failed = err < 0 && err != -EBUSY;
    if (err == 0)
        c->stats.passes++;
    if (c->cb)
        c->cb(c->data, err, msg);
}

/* Step 2, on the loop. */
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
        pass_ended(c, db_errno(c->step1_rc), sqlite3_errmsg(c->conn));
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
    int err = db_checkpoint(c->db);
    if (err == 0)
        c->wal_frames = 0;
    pass_ended(c, err, err < 0 ? db_errmsg(c->db) : NULL);
}

static void start(struct checkpoint *c)
{
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
    /* A running pass serves this request too: its step 2 copies and cuts
     * whatever was committed until then. */
    if (!c->running)
        start(c);
}

bool checkpoint_copying(const struct checkpoint *c)
{
    return c && c->running;
}

void checkpoint_get_stats(const struct checkpoint *c, struct checkpoint_stats *ret)
{
    static const struct checkpoint_stats none;
    *ret = c ? c->stats : none;
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

/* checkpoint: WAL checkpoints without a long fsync on the loop.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that crosses its
 * threshold: it copies the WAL's pages into the database file and fsyncs
 * it, on the loop (10-60 ms under load, during which no socket is served).
 * checkpoint_new() turns it off for the loop's connection (its wal_hook
 * takes over) and runs each checkpoint as a pass of two steps:
 *  1. a PASSIVE checkpoint on libuv's threadpool, through a connection of
 *     its own: it copies what the WAL held when it started and fsyncs, and
 *     never takes the writer lock, so the loop keeps committing meanwhile;
 *  2. a TRUNCATE checkpoint, on the threadpool through the same connection:
 *     it copies only what was committed during step 1, fsyncs and cuts the
 *     WAL to 0 bytes, so that the WAL stays bounded under a steady stream of
 *     commits and page images from before a secret was cleared leave the
 *     disk. It holds the writer lock meanwhile (tens of ms): the owner's
 *     writes wait for it (checkpoint_copying, checkpoint_cutting). On the
 *     loop, its fsync and truncation made the loop's worst turns during a
 *     drain (20-40 ms each on a busy disk);
 *  3. after a pass that checkpoint_request() asked for (the owner's scrub),
 *     the sweep, on the threadpool, holding SQLite's checkpoint lock: the
 *     unused space and the freeblocks of every b-tree page in the database
 *     file are zeroed. secure_delete does not reach the bytes a page
 *     rebuilt in a balance leaves between its cell pointers and its cells:
 *     old copies of rows, secrets included (see sweep_page()). A sweep kept
 *     out by another process's checkpoint ends the pass with -EBUSY and the
 *     next pass sweeps.
 * A pass starts when the WAL reaches CHECKPOINT_FRAMES frames, or on
 * checkpoint_request(); cb hears how each pass ended. After a pass that
 * failed for another reason than readers in the way (-EBUSY), only
 * checkpoint_request() starts the next one (the owner's retry timer).
 * If one loop turn lasts so long that the WAL reaches CHECKPOINT_FRAMES_INLINE
 * frames before step 2 runs, the commit checkpoints as SQLite would (PASSIVE),
 * so that the WAL stays bounded whatever the loop does.
 * While step 1 or 2 fails (not busy: a full disk, an I/O error) the WAL
 * cannot be reset and each commit only makes it longer; on a full disk each
 * frame takes space the checkpoint needs to grow the database file into.
 * checkpoint_stuck() says so until a step 2 has cut the WAL: the store then
 * starts no write (store.h), so the WAL stays at its size when the
 * checkpoint first failed (below CHECKPOINT_FRAMES_INLINE frames) and space
 * that returns goes to the checkpoint; the owner retries after
 * checkpoint_retry_ms(), 250 ms doubling to 4 s (doc/disk-full.md).
 * An in-memory database has no WAL: nothing is done. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "histogram.h"

#define CHECKPOINT_FRAMES 1000        /* SQLite's own default threshold */
#define CHECKPOINT_FRAMES_INLINE 4000 /* step 2 is late: checkpoint in the commit */
#define CHECKPOINT_RETRY_MIN_MS 250   /* a stuck checkpoint is retried this soon, */
#define CHECKPOINT_RETRY_MAX_MS 4000  /* doubling to this */
#define CHECKPOINT_RETRY_SWEEP_MS 30000 /* a failed sweep (the WAL was cut) */

struct checkpoint;
/* err: 0, -EBUSY (readers or writers in the way: try again soon) or another
 * negative errno; msg says what SQLite said. */
typedef void (*checkpoint_cb)(void *data, int err, const char *msg);

int checkpoint_new(uv_loop_t *loop, struct db *db, checkpoint_cb cb, void *data,
                   struct checkpoint **ret);
/* Step 1 or 2 is running. A commit made during step 1 is left for step 2
 * to copy; during step 2 a write waits for the writer lock. The owner's
 * writes that can wait should (cb says when the pass ended). */
bool checkpoint_copying(const struct checkpoint *c);
/* Step 2 is queued or running: it will take the writer lock. */
bool checkpoint_cutting(const struct checkpoint *c);
/* Step 2's checkpoint is running on the threadpool now (any thread). */
bool checkpoint_in_step2(struct checkpoint *c);
/* 0, or the negative errno of the step 1 or 2 that failed last: the WAL
 * cannot be reset and must not grow (see above). */
int checkpoint_stuck(const struct checkpoint *c);
/* When to retry a pass that failed: 250 ms, doubling per failed pass to
 * 4 s, while stuck; 30 s after a sweep that failed. */
unsigned checkpoint_retry_ms(const struct checkpoint *c);
/* Start a pass with a sweep, unless one is running: its step 2 serves this
 * request, and its sweep unless the sweep had begun (then another pass). */
void checkpoint_request(struct checkpoint *c);
struct checkpoint_stats {
    unsigned passes;          /* that ended well */
    uint64_t frames_off_loop; /* WAL frames that step 1 copied (frames a later pass copies
                               * again count again) */
    unsigned inline_passes;   /* PASSIVE checkpoints in a commit, SQLite's way: the WAL
                               * reached CHECKPOINT_FRAMES_INLINE before step 2 came */
    unsigned sweeps;          /* step 3s that ended well */
    uint64_t pages_swept;     /* pages they rewrote */
    struct histogram duration; /* of each pass, from its step 1 to its end (HISTOGRAM_CHECKPOINT_US) */
    int wal_frames;           /* the WAL's size at the last commit; 0 once step 2 cut it */
    bool sweep_due;           /* a checkpoint_request() (a secret cleared) that no sweep has
                               * served yet: old copies may still be in the file's free space */
};
void checkpoint_get_stats(const struct checkpoint *c, struct checkpoint_stats *ret);
/* The loop's connection gets SQLite's automatic checkpoint back; c is freed
 * now, or when a running step 1 returns; then closed(data). */
void checkpoint_close(struct checkpoint *c, void (*closed)(void *data), void *data);

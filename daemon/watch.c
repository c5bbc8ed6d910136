/* watch: see header. inotify (through uv_fs_event_t) says "a file changed";
 * PRAGMA data_version says whether that change was another connection's
 * commit. Our own commits fire the watchers too but leave data_version.
 *
 * One commit is several events (a write per WAL frame) and wakes the loop
 * for each; an application that commits one row at a time makes thousands
 * a second, and those wake-ups cost more than the work. So the first event
 * is checked at once and stops both watches; data_version is then polled
 * every POLL_MS instead, one check and one engine kick for every commit of
 * those POLL_MS; once a poll finds nothing new, the watches start again.
 *
 * A writer appends its frames to the -wal file (the event) before it
 * publishes the commit in the -shm index (an mmap write: no event), with an
 * fsync in between. So a check can be too early, and a commit whose frames
 * were written while the watches were stopped gives no event: after a check
 * that found nothing new (the watches running), re-check after 1, 2, 4 ...
 * 128 ms. */
#include "watch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"


struct watch {
    uv_loop_t *loop;
    struct db *db;
    watch_cb cb;
    void *data;
    uv_fs_event_t db_event;
    uv_fs_event_t wal_event;
    uv_timer_t recheck;
    unsigned recheck_ms;    /* the last re-check's delay; 0: none yet */
    bool polling;           /* the watches are stopped: a check every POLL_MS */
    bool db_watched, wal_watched;
    int64_t version;
    char wal_path[4096];
    unsigned open_handles;
    bool closing;
};

static void on_handle_closed(uv_handle_t *h)
{
    struct watch *w = h->data;

    if (--w->open_handles == 0 && w->closing)
        free(w);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status);
static void on_timer(uv_timer_t *h);

enum {
    POLL_MS = 5, /* while commits come: at most 5 ms more to notice a flag */
    RECHECK_FIRST_MS = 1,
    RECHECK_LAST_MS = 128,
};

/* Compare data_version; true when it changed (and cb ran). */
static bool check(struct watch *w)
{
    int64_t version;

    if (w->closing || db_data_version(w->db, &version) < 0)
        return false;
    if (version == w->version)
        return false;
    w->version = version;
    w->cb(w->data);
    return true;
}

/* The -wal file comes and goes (a checkpoint may truncate or delete it):
 * watch it when it exists, and look again after every event. */
static void start_watches(struct watch *w)
{
    int rc;

    if (w->closing)
        return;
    if (!w->db_watched) {
        rc = uv_fs_event_start(&w->db_event, on_fs_event, w->db->path, 0);
        if (rc < 0)
            log_debug("cannot watch %s: %s; the safety rescan still runs", w->db->path, uv_strerror(rc));
        w->db_watched = rc == 0;
    }
    if (!w->wal_watched)
        w->wal_watched = uv_fs_event_start(&w->wal_event, on_fs_event, w->wal_path, 0) == 0;
}

static void stop_watches(struct watch *w)
{
    uv_fs_event_stop(&w->db_event);
    uv_fs_event_stop(&w->wal_event);
    w->db_watched = w->wal_watched = false;
}

/* The next check in ms: POLL_MS after a change (more may come), or
 * RECHECK_FIRST_MS after an event whose commit was not published yet (a
 * lone flag is seen a millisecond later, not five). */
static void start_polling(struct watch *w, unsigned ms)
{
    stop_watches(w);
    w->polling = true;
    w->recheck_ms = ms == POLL_MS ? 0 : ms;
    uv_timer_start(&w->recheck, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *h)
{
    struct watch *w = h->data;

    if (check(w)) {
        start_polling(w, POLL_MS); /* more may come: keep polling */
        return;
    }
    if (w->polling) {
        /* Quiet for POLL_MS: the watches again, then the re-checks for a
         * commit whose frames came while they were stopped. */
        w->polling = false;
        start_watches(w);
    }
    if (w->recheck_ms >= RECHECK_LAST_MS) {
        w->recheck_ms = 0;
        return;
    }
    w->recheck_ms = w->recheck_ms ? w->recheck_ms * 2 : RECHECK_FIRST_MS;
    uv_timer_start(&w->recheck, on_timer, w->recheck_ms, 0);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct watch *w = h->data;

    (void)filename;
    (void)events;
    if (w->closing || w->polling)
        return;
    if (status < 0)
        log_debug("watching the database failed: %s; the safety rescan still runs", uv_strerror(status));
    /* The wal may be deleted or replaced (UV_RENAME): it is watched anew,
     * by path, when the watches start again. A commit is seen now when
     * its index is published already; the polls see the rest. */
    start_polling(w, check(w) ? POLL_MS : RECHECK_FIRST_MS);
}

int watch_new(uv_loop_t *loop, struct db *db, watch_cb cb, void *data, struct watch **ret_watch)
{
    struct watch *w;
    int rc;

    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->loop = loop;
    w->db = db;
    w->cb = cb;
    w->data = data;
    if ((size_t)snprintf(w->wal_path, sizeof(w->wal_path), "%s-wal", db->path) >= sizeof(w->wal_path)) {
        free(w);
        return -ENAMETOOLONG;
    }
    rc = db_data_version(db, &w->version);
    if (rc < 0) {
        free(w);
        return rc;
    }
    uv_fs_event_init(loop, &w->db_event);
    uv_fs_event_init(loop, &w->wal_event);
    uv_timer_init(loop, &w->recheck);
    w->db_event.data = w;
    w->wal_event.data = w;
    w->recheck.data = w;
    w->open_handles = 3;
    rc = uv_fs_event_start(&w->db_event, on_fs_event, db->path, 0);
    w->db_watched = rc == 0;
    if (rc < 0) {
        w->closing = true;
        uv_close((uv_handle_t *)&w->db_event, on_handle_closed);
        uv_close((uv_handle_t *)&w->wal_event, on_handle_closed);
        uv_close((uv_handle_t *)&w->recheck, on_handle_closed);
        return rc;
    }
    start_watches(w);
    *ret_watch = w;
    return 0;
}

void watch_check(struct watch *w)
{
    check(w);
}

void watch_close(struct watch *w)
{
    if (!w)
        return;
    w->closing = true;
    uv_close((uv_handle_t *)&w->db_event, on_handle_closed);
    uv_close((uv_handle_t *)&w->wal_event, on_handle_closed);
    uv_close((uv_handle_t *)&w->recheck, on_handle_closed);
}

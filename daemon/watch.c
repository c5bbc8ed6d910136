/* watch: see header. inotify (through uv_fs_event_t) says "a file changed";
 * PRAGMA data_version says whether that change was another connection's
 * commit. Our own commits fire the watchers too but leave data_version.
 *
 * A writer appends its frames to the -wal file (the inotify event) before it
 * publishes the commit in the -shm index (an mmap write: no event), with an
 * fsync in between. So one check at the event can be too early: after an
 * event that found nothing new, re-check after 1, 2, 4 ... 128 ms. */
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
    unsigned recheck_ms;    /* next re-check delay; 0: none pending */
    bool wal_watched;
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

enum { RECHECK_FIRST_MS = 1, RECHECK_LAST_MS = 128 };

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

static void on_recheck(uv_timer_t *h)
{
    struct watch *w = h->data;

    if (check(w) || w->recheck_ms >= RECHECK_LAST_MS) {
        w->recheck_ms = 0;
        return;
    }
    w->recheck_ms *= 2;
    uv_timer_start(&w->recheck, on_recheck, w->recheck_ms, 0);
}

/* The -wal file comes and goes (a checkpoint may truncate or delete it):
 * watch it when it exists, and look again after every event. */
static void watch_wal(struct watch *w)
{
    if (w->wal_watched || w->closing)
        return;
    if (uv_fs_event_start(&w->wal_event, on_fs_event, w->wal_path, 0) == 0)
        w->wal_watched = true;
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct watch *w = h->data;

    (void)filename;
    if (w->closing)
        return;
    if (status < 0)
        log_debug("watching the database failed: %s; the safety rescan still runs", uv_strerror(status));
    if (h == &w->wal_event && (events & UV_RENAME)) {
        /* Deleted or replaced: the old inode is gone, watch the new one. */
        uv_fs_event_stop(&w->wal_event);
        w->wal_watched = false;
    }
    watch_wal(w);
    if (check(w)) {
        uv_timer_stop(&w->recheck);
        w->recheck_ms = 0;
    } else {
        w->recheck_ms = RECHECK_FIRST_MS;
        uv_timer_start(&w->recheck, on_recheck, w->recheck_ms, 0);
    }
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
    if (rc < 0) {
        w->closing = true;
        uv_close((uv_handle_t *)&w->db_event, on_handle_closed);
        uv_close((uv_handle_t *)&w->wal_event, on_handle_closed);
        uv_close((uv_handle_t *)&w->recheck, on_handle_closed);
        return rc;
    }
    watch_wal(w);
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

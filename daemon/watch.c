/* watch: see header. inotify (through uv_fs_event_t) says "a file changed";
 * PRAGMA data_version says whether that change was another connection's
 * commit. Our own commits fire the watchers too but leave data_version. */
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
    watch_check(w);
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
    w->db_event.data = w;
    w->wal_event.data = w;
    w->open_handles = 2;
    rc = uv_fs_event_start(&w->db_event, on_fs_event, db->path, 0);
    if (rc < 0) {
        w->closing = true;
        uv_close((uv_handle_t *)&w->db_event, on_handle_closed);
        uv_close((uv_handle_t *)&w->wal_event, on_handle_closed);
        return rc;
    }
    watch_wal(w);
    *ret_watch = w;
    return 0;
}

void watch_check(struct watch *w)
{
    int64_t version;

    if (w->closing || db_data_version(w->db, &version) < 0)
        return;
    if (version != w->version) {
        w->version = version;
        w->cb(w->data);
    }
}

void watch_close(struct watch *w)
{
    if (!w)
        return;
    w->closing = true;
    uv_close((uv_handle_t *)&w->db_event, on_handle_closed);
    uv_close((uv_handle_t *)&w->wal_event, on_handle_closed);
}

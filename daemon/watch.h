/* watch: notice commits made by other processes to the database.
 *
 * uv_fs_event_t handles watch the database file and its -wal file; on an
 * event, PRAGMA data_version is compared with the last value seen and, when
 * it changed, cb runs (on the loop). While commits keep coming the watches
 * are stopped and data_version is read every 5 ms instead: cb runs once for
 * all the commits of those 5 ms, and their events wake nobody. A watched file that is
 * replaced or appears later (the -wal file) is watched again. The daemon's
 * own commits do not change data_version and so do not call cb. */
#pragma once

#include <uv.h>

#include "db.h"

struct watch;
typedef void (*watch_cb)(void *data);

int watch_new(uv_loop_t *loop, struct db *db, watch_cb cb, void *data, struct watch **ret_watch);
/* Compare data_version now (also used by the safety rescan). */
void watch_check(struct watch *w);
void watch_close(struct watch *w); /* frees itself once its handles are closed */

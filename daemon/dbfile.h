/* dbfile: the database as a file on disk, for the daemon alone: one daemon
 * per database, and the file it works on is the file at the path.
 *
 * dbfile_lock() takes an exclusive flock(2) on "<database>.lock" beside the
 * database (created 0600 if missing) and writes the daemon's pid into it; a
 * second daemon on the same database gets -EBUSY and the holder's pid. The
 * lock is the kernel's: it ends with the process, so a crash leaves nothing
 * stale behind. dbfile_remember() notes which inodes the database and the
 * lock file are once the database is open; dbfile_check() says whether the
 * paths still name them (a removed or replaced database would otherwise
 * swallow every write that follows, unseen). revokerctl takes no lock.
 *
 * dbfile_modes() gives the database and its -wal and -shm (SQLite gives
 * those the database's mode, and they hold secrets) mode 0600, or 0660 and
 * the database group (daemon.control_group) when there is one: never
 * anything for others, never another group.
 *
 * Lifecycle: dbfile_lock() -> dbfile_remember() -> dbfile_check()* ->
 * dbfile_close() (after the database is closed; the lock file stays). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

struct dbfile;

/* 0, -EBUSY (another process holds the lock: *ret_owner is its pid, 0 if
 * unknown) or another negative errno from open/flock. */
int dbfile_lock(const char *db_path, struct dbfile **ret_file, pid_t *ret_owner);
/* Note the database's and the lock file's inodes as they are now. */
int dbfile_remember(struct dbfile *f);
/* 0 while both paths name the remembered files; -ENOENT when one was
 * removed, -ESTALE when one was replaced. ret_what (may be NULL) names the
 * path that changed. */
int dbfile_check(const struct dbfile *f, const char **ret_what);
void dbfile_close(struct dbfile *f); /* NULL is fine */

/* Called with each file dbfile_modes() changed: its old mode and group. */
typedef void (*dbfile_fixed_fn)(void *ud, const char *path, unsigned old_mode, gid_t old_group,
                                unsigned new_mode);
/* Each of DB, DB-wal and DB-shm that exists gets mode 0600, or with a
 * group (not (gid_t)-1) that group and mode 0660 (lchown before chmod),
 * whatever it had; then fixed(). Files already so are left alone. 0 or the
 * first failing call's negative errno (-EPERM: a file of another user, or
 * a group the process is not in). */
int dbfile_modes(const char *db_path, gid_t group, dbfile_fixed_fn fixed, void *ud);
/* With a group: 0 when the database's directory belongs to it with g+rwx
 * and setgid (so members can create DB-wal and DB-shm, and they get the
 * group), -EACCES when not, another negative errno from stat. Without a
 * group ((gid_t)-1) always 0. */
int dbfile_dir_check(const char *db_path, gid_t group);

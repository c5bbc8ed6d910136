/* dbfile: see header. */
#include "dbfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_id {
    dev_t dev;
    ino_t ino;
};

struct dbfile {
    char *db_path, *lock_path;
    int lock_fd;
    struct file_id db, lock;
};

static int id_of(const char *path, struct file_id *ret)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return -errno;
    *ret = (struct file_id){st.st_dev, st.st_ino};
    return 0;
}

static int same_file(const char *path, const struct file_id *want)
{
    struct file_id now;
    int rc = id_of(path, &now);

    if (rc < 0)
        return rc;
    return now.dev == want->dev && now.ino == want->ino ? 0 : -ESTALE;
}

/* The pid the holder wrote, 0 if unreadable. */
static pid_t read_owner(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    long pid;
    char *end;

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 && pid <= 0x7fffffff ? (pid_t)pid : 0;
}

static int write_owner(int fd)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    ssize_t w;

    if (ftruncate(fd, 0) < 0)
        return -errno;
    w = pwrite(fd, buf, (size_t)n, 0);
    if (w < 0)
        return -errno;
    return w == n ? 0 : -EIO;
}

int dbfile_lock(const char *db_path, struct dbfile **ret_file, pid_t *ret_owner)
{
    struct dbfile *f;
    int rc;

    if (!db_path || !ret_file)
        return -EINVAL;
    f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->lock_fd = -1;
    f->db_path = strdup(db_path);
    if (!f->db_path || asprintf(&f->lock_path, "%s.lock", db_path) < 0) {
        f->lock_path = NULL;
        rc = -ENOMEM;
        goto err;
    }
    f->lock_fd = open(f->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f->lock_fd < 0) {
        rc = -errno;
        goto err;
    }
    if (flock(f->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (rc == -EBUSY && ret_owner)
            *ret_owner = read_owner(f->lock_fd);
        goto err;
    }
    rc = write_owner(f->lock_fd);
    if (rc < 0)
        goto err;
    *ret_file = f;
    return 0;

err:
    dbfile_close(f);
    return rc;
}

int dbfile_remember(struct dbfile *f)
{
    struct stat st;
    int rc = id_of(f->db_path, &f->db);

    if (rc < 0)
        return rc;
    if (fstat(f->lock_fd, &st) < 0)
        return -errno;
    f->lock = (struct file_id){st.st_dev, st.st_ino};
    return 0;
}

int dbfile_check(const struct dbfile *f, const char **ret_what)
{
    int rc = same_file(f->db_path, &f->db);

    if (rc < 0) {
        if (ret_what)
            *ret_what = f->db_path;
        return rc;
    }
    /* Without its lock file a second daemon could start beside us. */
    rc = same_file(f->lock_path, &f->lock);
    if (rc < 0 && ret_what)
        *ret_what = f->lock_path;
    return rc;
}

void dbfile_close(struct dbfile *f)
{
    if (!f)
        return;
    if (f->lock_fd >= 0)
        close(f->lock_fd); /* ends the lock */
    free(f->db_path);
    free(f->lock_path);
    free(f);
}

int dbfile_modes(const char *db_path, gid_t group, dbfile_fixed_fn fixed, void *ud)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    mode_t want = group == (gid_t)-1 ? 0600 : 0660;

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char path[4096];
        struct stat st;

        if (snprintf(path, sizeof(path), "%s%s", db_path, suffixes[i]) >= (int)sizeof(path))
            return -ENAMETOOLONG;
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if ((st.st_mode & 07777) == want && (group == (gid_t)-1 || st.st_gid == group))
            continue;
        /* The group first: a chmod 0660 under the wrong group would open
         * the secrets to that group for a moment. */
        if (group != (gid_t)-1 && st.st_gid != group && lchown(path, (uid_t)-1, group) < 0)
            return -errno;
        if (chmod(path, want) < 0)
            return -errno;
        if (fixed)
            fixed(ud, path, st.st_mode & 07777, st.st_gid, want);
    }
    return 0;
}

int dbfile_dir_check(const char *db_path, gid_t group)
{
    char dir[4096];
    const char *slash = strrchr(db_path, '/');
    struct stat st;

    if (group == (gid_t)-1)
        return 0;
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (snprintf(dir, sizeof(dir), "%.*s", slash == db_path ? 1 : (int)(slash - db_path), db_path) >=
             (int)sizeof(dir))
        return -ENAMETOOLONG;
    if (stat(dir, &st) < 0)
        return -errno;
    return st.st_gid == group && (st.st_mode & 02070) == 02070 ? 0 : -EACCES;
}

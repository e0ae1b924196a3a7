/* wal_file.c - what the wal*.c files share below the formats: little-endian
 * numbers, error messages, file I/O that retries on EINTR and reports short
 * writes, and the data dir with its lock (DIR/LOCK, held with flock() while a
 * node runs, holding its pid so a second process is refused by name).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wal_internal.h"

/* ---------------------------------------------------------------- numbers and errors */

int wal_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void wal_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void wal_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t wal_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t wal_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Counted on past 2^64 - 1 to 0, as writing goes on after a slot of seq
 * 2^64 - 1: a is newer when it is 1 to 2^63 - 1 ahead of b. With a plain
 * comparison fuzz_datadir found a meta slot with a good checksum and seq
 * 2^64 - 1 taken; the next slot written had seq 0 and lost to it, so the
 * next open gave the term and vote from before the save ("a second open
 * gives another log, term, vote or snapshot"). In the log's header a
 * truncation's lower mark lost the same way, and the next open failed:
 * "DIR/log: cut short at 4128, below the synced end 4194". (Refusing the
 * largest seq only moves the edge: a slot of 2^64 - 2 is then followed by
 * one refused.) With the slots' parities (wal_meta.c, wal.c) the two
 * sequence numbers differ by an odd number, so one of them is newer. */
bool wal_seq_newer(uint64_t a, uint64_t b)
{
    uint64_t ahead = a - b;
    return ahead != 0 && ahead < (UINT64_C(1) << 63);
}

/* ---------------------------------------------------------------- file I/O */

int (*wal_fault_hook)(const char *op);

/* Whether a test has the next operation fail (errno EIO) or crash (it exits). */
static int fault(const char *op)
{
    if (wal_fault_hook != NULL && wal_fault_hook(op) != 0) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* Write all n bytes at off. Returns 0, or -1 with errno set. */
int wal_write_all_at(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *bytes = p;
    if (fault("write") < 0)
        return -1;
    while (n > 0) {
        ssize_t k = pwrite(fd, bytes, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        bytes += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Read up to n bytes at off, stopping early only at end of file.
 * Returns the count read, or -1 with errno set. */
ssize_t wal_read_at(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *bytes = p;
    size_t done = 0;
    while (done < n) {
        ssize_t k = pread(fd, bytes + done, n - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        done += (size_t)k;
    }
    return (ssize_t)done;
}

int wal_sync_data(int fd)
{
    if (fault("fdatasync") < 0)
        return -1;
    int rc;
    do
        rc = fdatasync(fd);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* fsync: data and every attribute, for a file about to be renamed into place. */
int wal_sync_all(int fd)
{
    if (fault("fsync") < 0)
        return -1;
    int rc;
    do
        rc = fsync(fd);
    while (rc < 0 && errno == EINTR);
    return rc;
}

int wal_truncate_to(int fd, uint64_t size)
{
    if (fault("ftruncate") < 0)
        return -1;
    int rc;
    do
        rc = ftruncate(fd, (off_t)size);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* fsync a directory, so that names created in it survive a crash. */
int wal_sync_dir(const char *path)
{
    if (fault("fsync dir") < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc;
    do
        rc = fsync(fd);
    while (rc < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int wal_rename(const char *from, const char *to)
{
    if (fault("rename") < 0)
        return -1;
    return rename(from, to);
}

int wal_make_path(char *out, size_t outlen, const char *dir, const char *name, char *err,
                  size_t errlen)
{
    int k = snprintf(out, outlen, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= outlen)
        return wal_fail(err, errlen, "data dir path %s is too long", dir);
    return 0;
}

/* The directory holding path ("." or "/" at the top). */
static void parent_dir(const char *path, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", path);
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    char *slash = strrchr(out, '/');
    if (slash == NULL)
        snprintf(out, outlen, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

/* ---------------------------------------------------------------- dir and lock */

int wal_make_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0755) == 0) {
        char parent[PATH_MAX];
        parent_dir(dir, parent, sizeof parent);
        if (wal_sync_dir(parent) < 0)
            return wal_fail(err, errlen, "cannot sync %s: %s", parent, strerror(errno));
        return 0;
    }
    if (errno != EEXIST)
        return wal_fail(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) < 0)
        return wal_fail(err, errlen, "cannot use data dir %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return wal_fail(err, errlen, "data dir %s is not a directory", dir);
    return 0;
}

int wal_take_lock(struct wal *w, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (wal_make_path(path, sizeof path, w->dir, "LOCK", err, errlen) < 0)
        return -1;
    w->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->lock_fd < 0)
        return wal_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));

    while (flock(w->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return wal_fail(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        char text[32];
        ssize_t k = wal_read_at(w->lock_fd, text, sizeof text - 1, 0);
        long pid = 0;
        if (k > 0) {
            text[k] = '\0';
            pid = strtol(text, NULL, 10);
        }
        if (pid > 0)
            return wal_fail(err, errlen, "data dir %s is in use by another process (pid %ld)",
                            w->dir, pid);
        return wal_fail(err, errlen, "data dir %s is in use by another process", w->dir);
    }

    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (wal_truncate_to(w->lock_fd, 0) < 0 ||
        wal_write_all_at(w->lock_fd, text, (size_t)len, 0) < 0)
        return wal_fail(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

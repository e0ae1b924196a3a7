/* wal_compact.c - dropping the log's dead prefix without stopping the caller.
 *
 * After a snapshot at index I the entries <= I may go (wal.c, "The log's
 * base"). wal_snapshot_taken rewrites the log at once: the kept records to
 * log.tmp, fsync, rename over log, fsync of the dir. On a node's event loop
 * that is two syncs, and a wait for the sync in flight, while heartbeats and
 * replies wait. Here the same is done in three steps (wal.h):
 *
 *   begin   on the loop: which records to keep (from an offset to the end as
 *           it is now), with a descriptor of the log of its own;
 *   copy    on a helper thread: those records behind a new header into
 *           DIR/log.compact, fsynced. The loop goes on appending to the old
 *           log, and its syncs go on;
 *   finish  on the loop, between two syncs: the records appended since begin
 *           are copied too (a few, from the page cache), and log.compact
 *           becomes the log file the loop appends to; the next sync (on the
 *           storage thread) fdatasyncs it, renames it over DIR/log, fsyncs
 *           the dir and closes the old file.
 *
 * Why a crash loses nothing: until the rename, DIR/log is the old file,
 * which holds every record synced so far (records appended after finish go
 * to log.compact only, and nothing is acknowledged before the sync that
 * renames it completes). After the rename, log.compact was fdatasynced
 * through its end first. In between, records the old log had synced may be
 * unsynced in log.compact: the in-memory mark says so (it is carried over
 * from the old file), so a reset after a failure keeps them, and the
 * storage's own accounting holds their acknowledgements until the next sync.
 *
 * If the log changed meanwhile otherwise than by appending (a truncation, a
 * reset after a failure, a new file: w->log_gen), the copy is stale and
 * dropped, as is a copy that failed; the log then keeps its prefix until the
 * next snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_internal.h"

void wal_compact_clear(struct wal_compaction *job)
{
    memset(job, 0, sizeof *job);
    job->src_fd = -1;
    job->fd = -1;
}

int wal_compact_prepare(struct wal *w, uint64_t base, uint64_t from, size_t n_records,
                        struct wal_compaction *job, char *err, size_t errlen)
{
    /* A previous compaction not renamed yet: this one waits for the next
     * snapshot. */
    if (w->rename_pending)
        return 0;
    job->src_fd = dup(w->log_fd);
    if (job->src_fd < 0)
        return wal_fail(err, errlen, "cannot duplicate the descriptor of %s/log: %s", w->dir,
                        strerror(errno));
    job->wanted = true;
    job->dir = w->dir;
    job->from = from;
    job->len = w->log_end - from;
    job->base = base;
    job->n_records = n_records;
    job->gen = w->log_gen;
    return 0;
}

int wal_compact_copy(struct wal_compaction *job)
{
    char path[PATH_MAX], src[PATH_MAX];
    char *err = job->copy_err;
    size_t errlen = sizeof job->copy_err;
    if (wal_make_path(path, sizeof path, job->dir, WAL_COMPACT_FILE, err, errlen) < 0 ||
        wal_make_path(src, sizeof src, job->dir, "log", err, errlen) < 0) {
        job->copy_errno = ENAMETOOLONG;
        return -1;
    }
    job->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (job->fd < 0) {
        job->copy_errno = errno;
        return wal_fail(err, errlen, "cannot create %s: %s", path, strerror(errno));
    }
    if (wal_write_log_file(job->fd, path, job->src_fd, src, job->from, job->len, job->base,
                           job->n_records, err, errlen) < 0) {
        job->copy_errno = errno != 0 ? errno : EIO;
        return -1;
    }
    return 0;
}

void wal_compact_abandon(struct wal_compaction *job)
{
    if (job->src_fd >= 0)
        close(job->src_fd);
    if (job->fd >= 0) {
        close(job->fd);
        char path[PATH_MAX];
        if (wal_make_path(path, sizeof path, job->dir, WAL_COMPACT_FILE, NULL, 0) == 0)
            unlink(path); /* best effort: wal_open removes it anyway */
    }
    wal_compact_clear(job);
}

int wal_compact_finish(struct wal *w, struct wal_compaction *job, char *err, size_t errlen)
{
    if (!job->wanted)
        return 0;
    if (job->copy_errno != 0 || job->fd < 0) {
        wal_fail(err, errlen, "%s", job->copy_err[0] ? job->copy_err : "the copy failed");
        wal_compact_abandon(job);
        return -1;
    }
    /* Stale: the records it copied changed since, or another compaction
     * won. The log keeps its prefix for now. */
    if (job->gen != w->log_gen || w->rename_pending || job->base <= w->base ||
        job->base > w->base + w->n_records) {
        wal_compact_abandon(job);
        return 0;
    }
    /* The records appended since begin: from the old file's page cache. */
    uint64_t copied_end = job->from + job->len;
    uint64_t tail = w->log_end - copied_end;
    if (tail > 0) {
        uint8_t *buf = malloc((size_t)tail);
        if (buf == NULL) {
            wal_compact_abandon(job);
            return wal_fail(err, errlen, "out of memory compacting %s/log", w->dir);
        }
        ssize_t got = wal_read_at(w->log_fd, buf, (size_t)tail, copied_end);
        int rc = got == (ssize_t)tail
                     ? wal_write_all_at(job->fd, buf, (size_t)tail, LOG_DATA_START + job->len)
                     : -1;
        int saved = got >= 0 && got != (ssize_t)tail ? EIO : errno;
        free(buf);
        if (rc < 0) {
            wal_compact_abandon(job);
            return wal_fail(err, errlen, "cannot copy the end of %s/log: %s", w->dir,
                            strerror(saved));
        }
    }
    /* The new file is w's log from now on. */
    size_t drop = (size_t)(job->base - w->base);
    size_t keep = w->n_records - drop;
    uint64_t shift = job->from - LOG_DATA_START;
    for (size_t i = 0; i < keep; i++)
        w->offsets[i] = w->offsets[drop + i] - shift;
    w->n_records = keep;
    w->base = job->base;
    w->log_end -= shift;
    w->file_size = w->log_end;
    /* The mark as the old file had it: what is synced there is durable
     * until the rename, which syncs the new file first. */
    if (w->synced_index <= w->base || w->synced_end <= job->from) {
        w->synced_index = w->base;
        w->synced_end = LOG_DATA_START;
    } else {
        w->synced_end -= shift;
    }
    w->header_seq = 0; /* the new file's slot, written by the copy */
    w->mark_pending = false;
    w->old_fd = w->log_fd;
    w->log_fd = job->fd;
    w->log_gen++;
    w->rename_pending = true;
    close(job->src_fd);
    wal_compact_clear(job);
    return 0;
}

int wal_compact_rename_run(const char *dir, int old_fd)
{
    char path[PATH_MAX], compact[PATH_MAX];
    if (wal_make_path(path, sizeof path, dir, "log", NULL, 0) < 0 ||
        wal_make_path(compact, sizeof compact, dir, WAL_COMPACT_FILE, NULL, 0) < 0)
        return ENAMETOOLONG;
    /* ENOENT: an earlier attempt renamed it and failed to sync the dir. */
    if (wal_rename(compact, path) < 0 && errno != ENOENT)
        return errno;
    if (wal_sync_dir(dir) < 0)
        return errno;
    /* Closing the last descriptor of the old file frees its blocks: here, off
     * the caller's loop when run by the storage thread. */
    if (old_fd >= 0)
        close(old_fd);
    return 0;
}

int wal_compact_rename(struct wal *w, char *err, size_t errlen)
{
    if (!w->rename_pending)
        return 0;
    if (wal_sync_data(w->log_fd) < 0)
        return wal_fail(err, errlen, "cannot sync %s/%s: %s", w->dir, WAL_COMPACT_FILE,
                        strerror(errno));
    int rv = wal_compact_rename_run(w->dir, w->old_fd);
    if (rv != 0)
        return wal_fail(err, errlen, "cannot rename %s/%s over %s/log: %s", w->dir,
                        WAL_COMPACT_FILE, w->dir, strerror(rv));
    w->rename_pending = false;
    w->old_fd = -1;
    w->mark_pending = false;
    return 0;
}

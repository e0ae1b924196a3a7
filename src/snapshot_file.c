/* snapshot_file.c - snapshot files: writing, receiving, reading, loading,
 * finding the newest at open, removing old ones (the API is in
 * snapshot_file.h).
 *
 * All numbers are little-endian. DIR/snap-<index>-<term> (both as 20
 * decimal digits, so that names sort by index):
 *   header, 64 bytes:
 *     magic u32 "RKVS" | version u32 (1) | index u64 | term u64 |
 *     length u64 (payload bytes) | payload_crc u32 (CRC-32C of the payload) |
 *     zeros | crc u32 (at 60, over bytes 0..59)
 *   payload: length bytes, opaque; the file ends right after it.
 *
 * Checks, in order (the first failing one is reported with its offset):
 *   file shorter than the header: "cut short at N, inside the header";
 *   magic (offset 0), version (4), header crc (0: some header byte);
 *   index (8) and term (16) must match the file's name (or the install);
 *   file shorter than 64 + length: "cut short at N, the header says M";
 *   longer: damage at 64 + length; payload crc: damage at 64 (one checksum
 *   covers the payload, so a bad byte inside it is reported at its start).
 *
 * Writing (snapfile_writer): the payload goes to DIR/snapshot.tmp from
 * offset 64 as it comes, then the header at 0 (its checksums are known only
 * then), fsync, rename to the final name, fsync of the dir. Receiving:
 * DIR/snapshot-recv.tmp gets the leader's bytes (header included) at their
 * offsets; the install verifies it whole before the same rename and fsync.
 * A crash at any step leaves a temporary file (removed at the next open)
 * or the whole snapshot.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "snapshot_file.h"
#include "wal_internal.h"

#define SNAP_MAGIC 0x53564b52u /* "RKVS" */
#define SNAP_VERSION 1u
#define SNAP_CRC_AT 60
#define SNAP_TMP "snapshot.tmp"
#define SNAP_RECV_TMP "snapshot-recv.tmp"
#define SNAP_READ_CHUNK (1u << 20)

struct snapfile_writer {
    char *dir;
    int fd;
    uint64_t index, term;
    uint64_t length;       /* payload bytes so far */
    uint64_t written_back; /* payload bytes handed to writeback (sync_file_range) */
    uint64_t piece_start;  /* where the piece handed over last begins */
    uint32_t crc;          /* of the payload so far */
};

/* How much of a snapshot being written may wait in the page cache: past
 * this the writer starts writing it to disk, and waits until the piece
 * before it is on the disk. Without it the whole file went to the disk at
 * the final fsync, and the log's fdatasync (which flushes the disk's cache)
 * queued behind it; with the wait, at most two pieces are on their way at
 * any moment and the writer goes at the disk's pace, so each of the log's
 * fdatasyncs finds little of the snapshot ahead of it. */
#define SNAPFILE_WRITEBACK_STEP (1u << 20)

struct snapfile_reader {
    int fd;
    uint64_t size;
    char path[PATH_MAX];
};

int snapfile_path(char *out, size_t outlen, const char *dir, uint64_t index, uint64_t term,
                  char *err, size_t errlen)
{
    int k = snprintf(out, outlen, "%s/snap-%020" PRIu64 "-%020" PRIu64, dir, index, term);
    if (k < 0 || (size_t)k >= outlen)
        return wal_fail(err, errlen, "data dir path %s is too long", dir);
    return 0;
}

/* "snap-<20 digits>-<20 digits>" exactly. */
static bool parse_name(const char *name, uint64_t *index, uint64_t *term)
{
    if (strlen(name) != 5 + 20 + 1 + 20 || strncmp(name, "snap-", 5) != 0 || name[25] != '-')
        return false;
    uint64_t v[2] = {0, 0};
    for (int part = 0; part < 2; part++) {
        const char *p = name + 5 + 21 * part;
        for (int i = 0; i < 20; i++) {
            if (p[i] < '0' || p[i] > '9')
                return false;
            uint64_t d = (uint64_t)(p[i] - '0');
            if (v[part] > (UINT64_MAX - d) / 10)
                return false;
            v[part] = v[part] * 10 + d;
        }
    }
    *index = v[0];
    *term = v[1];
    return *index > 0 && *term > 0;
}

static void header_encode(uint8_t *h, uint64_t index, uint64_t term, uint64_t length,
                          uint32_t payload_crc)
{
    memset(h, 0, SNAPFILE_HEADER_SIZE);
    wal_put_u32(h, SNAP_MAGIC);
    wal_put_u32(h + 4, SNAP_VERSION);
    wal_put_u64(h + 8, index);
    wal_put_u64(h + 16, term);
    wal_put_u64(h + 24, length);
    wal_put_u32(h + 32, payload_crc);
    wal_put_u32(h + SNAP_CRC_AT, crc32c(0, h, SNAP_CRC_AT));
}

/* Verify the open file at path as the snapshot of index, term; hand the
 * payload to fn (if any) as it is read. *length: the payload's size. */
static int verify(int fd, const char *path, uint64_t index, uint64_t term,
                  int (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx, uint64_t *length,
                  char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return wal_fail(err, errlen, "cannot stat %s: %s", path, strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    uint8_t h[SNAPFILE_HEADER_SIZE];
    ssize_t got = wal_read_at(fd, h, sizeof h, 0);
    if (got < 0)
        return wal_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    if ((size_t)got < sizeof h)
        return wal_fail(err, errlen, "%s: cut short at %zd, inside the header", path, got);
    if (wal_get_u32(h) != SNAP_MAGIC)
        return wal_fail(err, errlen, "%s: damaged at offset 0 (bad magic)", path);
    if (wal_get_u32(h + 4) != SNAP_VERSION)
        return wal_fail(err, errlen, "%s: damaged at offset 4 (unknown version %" PRIu32 ")", path,
                        wal_get_u32(h + 4));
    if (wal_get_u32(h + SNAP_CRC_AT) != crc32c(0, h, SNAP_CRC_AT))
        return wal_fail(err, errlen, "%s: damaged at offset 0 (bad header checksum)", path);
    if (wal_get_u64(h + 8) != index)
        return wal_fail(err, errlen,
                        "%s: damaged at offset 8 (index %" PRIu64 ", expected %" PRIu64 ")", path,
                        wal_get_u64(h + 8), index);
    if (wal_get_u64(h + 16) != term)
        return wal_fail(err, errlen,
                        "%s: damaged at offset 16 (term %" PRIu64 ", expected %" PRIu64 ")", path,
                        wal_get_u64(h + 16), term);
    uint64_t len = wal_get_u64(h + 24);
    if (len > size - SNAPFILE_HEADER_SIZE)
        return wal_fail(err, errlen,
                        "%s: cut short at %" PRIu64 ", the header says %" PRIu64 " bytes", path,
                        size, len);
    if (len < size - SNAPFILE_HEADER_SIZE)
        return wal_fail(err, errlen,
                        "%s: damaged at offset %" PRIu64 " (bytes past the end the header gives)",
                        path, SNAPFILE_HEADER_SIZE + len);

    uint8_t *buf = malloc(SNAP_READ_CHUNK);
    if (buf == NULL)
        return wal_fail(err, errlen, "out of memory reading %s", path);
    uint32_t crc = 0;
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < SNAP_READ_CHUNK ? (size_t)(len - done) : SNAP_READ_CHUNK;
        got = wal_read_at(fd, buf, n, SNAPFILE_HEADER_SIZE + done);
        if (got < 0 || (size_t)got != n) {
            if (got >= 0)
                errno = EIO; /* the file shrank while we read it */
            wal_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
            free(buf);
            return -1;
        }
        crc = crc32c(crc, buf, n);
        if (fn != NULL && fn(ctx, buf, n) < 0) {
            free(buf);
            return wal_fail(err, errlen, "loading %s: stopped", path);
        }
        done += n;
    }
    free(buf);
    if (crc != wal_get_u32(h + 32))
        return wal_fail(
            err, errlen,
            "%s: damaged at offset %u (bad checksum of the payload, bytes %u..%" PRIu64 ")", path,
            SNAPFILE_HEADER_SIZE, SNAPFILE_HEADER_SIZE, SNAPFILE_HEADER_SIZE + len);
    *length = len;
    return 0;
}

/* ---------------------------------------------------------------- writing */

int snapfile_writer_open(const char *dir, uint64_t index, uint64_t term,
                         struct snapfile_writer **out, char *err, size_t errlen)
{
    *out = NULL;
    if (index == 0 || term == 0)
        return wal_fail(err, errlen, "cannot write a snapshot at index %" PRIu64 ", term %" PRIu64,
                        index, term);
    char tmp[PATH_MAX];
    if (wal_make_path(tmp, sizeof tmp, dir, SNAP_TMP, err, errlen) < 0)
        return -1;
    struct snapfile_writer *sw = calloc(1, sizeof *sw);
    if (sw == NULL || (sw->dir = strdup(dir)) == NULL) {
        free(sw);
        return wal_fail(err, errlen, "out of memory writing %s", tmp);
    }
    sw->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sw->fd < 0) {
        wal_fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(sw->dir);
        free(sw);
        return -1;
    }
    sw->index = index;
    sw->term = term;
    *out = sw;
    return 0;
}

int snapfile_writer_append(struct snapfile_writer *sw, const void *data, size_t len, char *err,
                           size_t errlen)
{
    if (len == 0)
        return 0;
    if (wal_write_all_at(sw->fd, data, len, SNAPFILE_HEADER_SIZE + sw->length) < 0)
        return wal_fail(err, errlen, "cannot write %s/%s at offset %" PRIu64 ": %s", sw->dir,
                        SNAP_TMP, SNAPFILE_HEADER_SIZE + sw->length, strerror(errno));
    sw->crc = crc32c(sw->crc, data, len);
    sw->length += len;
    if (sw->length - sw->written_back >= SNAPFILE_WRITEBACK_STEP) {
        /* Start this piece, then wait for the one before. An error here
         * shows again at the final fsync, which decides. */
        (void)sync_file_range(sw->fd, (off_t)(SNAPFILE_HEADER_SIZE + sw->written_back),
                              (off_t)(sw->length - sw->written_back), SYNC_FILE_RANGE_WRITE);
        if (sw->written_back > 0)
            (void)sync_file_range(sw->fd, (off_t)(SNAPFILE_HEADER_SIZE + sw->piece_start),
                                  (off_t)(sw->written_back - sw->piece_start),
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
        sw->piece_start = sw->written_back;
        sw->written_back = sw->length;
    }
    return 0;
}

void snapfile_writer_abort(struct snapfile_writer *sw)
{
    if (sw == NULL)
        return;
    char tmp[PATH_MAX];
    close(sw->fd);
    if (wal_make_path(tmp, sizeof tmp, sw->dir, SNAP_TMP, NULL, 0) == 0)
        unlink(tmp);
    free(sw->dir);
    free(sw);
}

/* Rename tmp to the snapshot's name and fsync the dir. */
static int put_in_place(const char *dir, const char *tmp, uint64_t index, uint64_t term, char *err,
                        size_t errlen)
{
    char path[PATH_MAX];
    if (snapfile_path(path, sizeof path, dir, index, term, err, errlen) < 0)
        return -1;
    if (wal_rename(tmp, path) < 0)
        return wal_fail(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (wal_sync_dir(dir) < 0)
        return wal_fail(err, errlen, "cannot sync data dir %s: %s", dir, strerror(errno));
    return 0;
}

int snapfile_writer_finish(struct snapfile_writer *sw, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (wal_make_path(tmp, sizeof tmp, sw->dir, SNAP_TMP, err, errlen) < 0) {
        snapfile_writer_abort(sw);
        return -1;
    }
    uint8_t h[SNAPFILE_HEADER_SIZE];
    header_encode(h, sw->index, sw->term, sw->length, sw->crc);
    if (wal_write_all_at(sw->fd, h, sizeof h, 0) < 0) {
        wal_fail(err, errlen, "cannot write %s at offset 0: %s", tmp, strerror(errno));
        goto fail;
    }
    if (wal_sync_all(sw->fd) < 0) {
        wal_fail(err, errlen, "cannot sync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (put_in_place(sw->dir, tmp, sw->index, sw->term, err, errlen) < 0)
        goto fail;
    close(sw->fd);
    free(sw->dir);
    free(sw);
    return 0;
fail:
    snapfile_writer_abort(sw);
    return -1;
}

/* ---------------------------------------------------------------- receiving */

int snapfile_recv_chunk(const char *dir, uint64_t offset, const void *data, size_t len, bool done,
                        char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (wal_make_path(tmp, sizeof tmp, dir, SNAP_RECV_TMP, err, errlen) < 0)
        return -1;
    int flags = O_RDWR | O_CLOEXEC | (offset == 0 ? O_CREAT | O_TRUNC : 0);
    int fd = open(tmp, flags, 0644);
    if (fd < 0)
        return wal_fail(err, errlen, "cannot open %s: %s", tmp, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        wal_fail(err, errlen, "cannot stat %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (offset > (uint64_t)st.st_size) {
        wal_fail(err, errlen, "cannot write %s at offset %" PRIu64 ": it holds %" PRIu64 " bytes",
                 tmp, offset, (uint64_t)st.st_size);
        goto fail;
    }
    if (len > 0 && wal_write_all_at(fd, data, len, offset) < 0) {
        wal_fail(err, errlen, "cannot write %s at offset %" PRIu64 ": %s", tmp, offset,
                 strerror(errno));
        goto fail;
    }
    if ((uint64_t)st.st_size > offset + len && wal_truncate_to(fd, offset + len) < 0) {
        wal_fail(err, errlen, "cannot truncate %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (done && wal_sync_all(fd) < 0) {
        wal_fail(err, errlen, "cannot sync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    return 0;
fail:
    close(fd);
    return -1;
}

int snapfile_recv_install(const char *dir, uint64_t index, uint64_t term, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (wal_make_path(tmp, sizeof tmp, dir, SNAP_RECV_TMP, err, errlen) < 0)
        return -1;
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wal_fail(err, errlen, "cannot open %s: %s", tmp, strerror(errno));
    uint64_t len;
    int rc = verify(fd, tmp, index, term, NULL, NULL, &len, err, errlen);
    close(fd);
    if (rc < 0)
        return -1;
    return put_in_place(dir, tmp, index, term, err, errlen);
}

/* ---------------------------------------------------------------- reading */

int snapfile_reader_open(const char *dir, uint64_t index, uint64_t term,
                         struct snapfile_reader **out, char *err, size_t errlen)
{
    *out = NULL;
    struct snapfile_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return wal_fail(err, errlen, "out of memory opening a snapshot in %s", dir);
    if (snapfile_path(r->path, sizeof r->path, dir, index, term, err, errlen) < 0) {
        free(r);
        return -1;
    }
    r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (r->fd < 0 || fstat(r->fd, &st) < 0) {
        wal_fail(err, errlen, "cannot open %s: %s", r->path, strerror(errno));
        if (r->fd >= 0)
            close(r->fd);
        free(r);
        return -1;
    }
    r->size = (uint64_t)st.st_size;
    *out = r;
    return 0;
}

uint64_t snapfile_reader_size(const struct snapfile_reader *r)
{
    return r->size;
}

int snapfile_read_at(struct snapfile_reader *r, uint64_t offset, void *buf, size_t cap, size_t *got,
                     char *err, size_t errlen)
{
    *got = 0;
    if (offset >= r->size)
        return 0;
    size_t n = r->size - offset < cap ? (size_t)(r->size - offset) : cap;
    ssize_t k = wal_read_at(r->fd, buf, n, offset);
    if (k < 0 || (size_t)k != n) {
        if (k >= 0)
            errno = EIO; /* the file shrank: it is never written in place */
        return wal_fail(err, errlen, "cannot read %s at offset %" PRIu64 ": %s", r->path, offset,
                        strerror(errno));
    }
    *got = n;
    return 0;
}

void snapfile_reader_close(struct snapfile_reader *r)
{
    if (r == NULL)
        return;
    close(r->fd);
    free(r);
}

/* ---------------------------------------------------------------- loading */

int snapfile_load_stream(const char *dir, uint64_t index, uint64_t term,
                         int (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx, char *err,
                         size_t errlen)
{
    char path[PATH_MAX];
    if (snapfile_path(path, sizeof path, dir, index, term, err, errlen) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wal_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
    uint64_t len;
    int rc = verify(fd, path, index, term, fn, ctx, &len, err, errlen);
    close(fd);
    return rc;
}

struct load_buf {
    uint8_t *p;
    uint64_t len, cap;
};

static int load_piece(void *ctx, const uint8_t *p, size_t n)
{
    struct load_buf *b = ctx;
    if (b->len + n > b->cap) {
        uint64_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > SIZE_MAX)
            return -1;
        uint8_t *grown = realloc(b->p, (size_t)cap);
        if (grown == NULL)
            return -1;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

int snapfile_load(const char *dir, uint64_t index, uint64_t term, uint8_t **payload, uint64_t *len,
                  char *err, size_t errlen)
{
    struct load_buf b = {0};
    *payload = NULL;
    *len = 0;
    if (snapfile_load_stream(dir, index, term, load_piece, &b, err, errlen) < 0) {
        free(b.p);
        return -1;
    }
    *payload = b.p;
    *len = b.len;
    return 0;
}

/* ---------------------------------------------------------------- the dir */

/* Visit every snapshot name in dir. */
static int list_snapshots(const char *dir, void (*fn)(void *ctx, uint64_t index, uint64_t term),
                          void *ctx, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return wal_fail(err, errlen, "cannot read data dir %s: %s", dir, strerror(errno));
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL)
            break;
        uint64_t index, term;
        if (parse_name(e->d_name, &index, &term))
            fn(ctx, index, term);
    }
    int saved = errno;
    closedir(d);
    if (saved != 0)
        return wal_fail(err, errlen, "cannot read data dir %s: %s", dir, strerror(saved));
    return 0;
}

struct newest {
    uint64_t index, term;
};

static void note_newest(void *ctx, uint64_t index, uint64_t term)
{
    struct newest *n = ctx;
    if (index > n->index || (index == n->index && term > n->term)) {
        n->index = index;
        n->term = term;
    }
}

int snapfile_open_dir(const char *dir, uint64_t *index, uint64_t *term, char *err, size_t errlen)
{
    *index = *term = 0;
    const char *tmps[] = {SNAP_TMP, SNAP_RECV_TMP};
    for (size_t i = 0; i < sizeof tmps / sizeof tmps[0]; i++) {
        char tmp[PATH_MAX];
        if (wal_make_path(tmp, sizeof tmp, dir, tmps[i], err, errlen) < 0)
            return -1;
        if (unlink(tmp) < 0 && errno != ENOENT)
            return wal_fail(err, errlen, "cannot remove %s: %s", tmp, strerror(errno));
    }
    struct newest n = {0, 0};
    if (list_snapshots(dir, note_newest, &n, err, errlen) < 0)
        return -1;
    if (n.index == 0)
        return 0;
    if (snapfile_load_stream(dir, n.index, n.term, NULL, NULL, err, errlen) < 0)
        return -1;
    *index = n.index;
    *term = n.term;
    return 0;
}

struct remove_ctx {
    const char *dir;
    uint64_t below;
    int failed_errno;
    char failed[PATH_MAX];
    int removed;
};

static void remove_old(void *ctx, uint64_t index, uint64_t term)
{
    struct remove_ctx *c = ctx;
    char path[PATH_MAX];
    if (index >= c->below || c->failed_errno != 0)
        return;
    if (snapfile_path(path, sizeof path, c->dir, index, term, NULL, 0) < 0)
        return;
    if (unlink(path) < 0 && errno != ENOENT) {
        c->failed_errno = errno;
        snprintf(c->failed, sizeof c->failed, "%s", path);
        return;
    }
    c->removed++;
}

int snapfile_remove_below(const char *dir, uint64_t index, char *err, size_t errlen)
{
    struct remove_ctx c = {.dir = dir, .below = index};
    if (list_snapshots(dir, remove_old, &c, err, errlen) < 0)
        return -1;
    if (c.failed_errno != 0)
        return wal_fail(err, errlen, "cannot remove %s: %s", c.failed, strerror(c.failed_errno));
    /* No fsync of the dir: a removal lost in a crash leaves an old snapshot
     * that nothing reads (snapfile_open_dir takes the newest) and the next
     * clean-up removes. */
    return 0;
}

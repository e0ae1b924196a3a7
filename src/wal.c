/* wal.c - the data dir: the lock, the hard state (meta) and the log.
 *
 * meta: two 64-byte slots, written in turn; the valid one with the higher
 * sequence number wins:
 *   magic u32 | version u32 | seq u64 | term u64 | voted_for u32 | zeros | crc u32 (at 60)
 *
 * log: one record an entry, appended; all numbers little-endian:
 *   magic u32 | length u32 | crc u32 | term u64 | index u64 | type u8 | payload
 * The crc covers the header (without the crc field) and the payload.
 */
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "crc32c.h"

#define META_MAGIC 0x4d564b52u /* "RKVM" */
#define META_VERSION 1u
#define META_SLOT_SIZE 64
#define META_CRC_AT 60

#define LOG_MAGIC 0x4c564b52u /* "RKVL" */
#define LOG_HEADER_SIZE 29
#define LOG_MAX_PAYLOAD (64u * 1024u * 1024u)
/* The log file is extended with zeros this much at a time, ahead of the
 * records: overwriting blocks that already exist lets fdatasync skip the
 * inode (the file's size does not change), which makes every sync cheaper.
 * Recovery reads the zeros after the last record as the end of the log. */
#define LOG_PREALLOCATE (4u * 1024u * 1024u)

#define READ_CHUNK (1u << 20)
#define KEEP_OUT_BUFFER (16u * 1024u * 1024u) /* larger append buffers are freed after use */

struct wal {
    char *dir;
    int lock_fd;
    int meta_fd;
    int log_fd;
    uint64_t meta_seq; /* sequence number of the newest meta slot */
    uint64_t *offsets; /* offsets[i]: where the record with index i + 1 starts */
    size_t n_records;
    size_t offsets_cap;
    uint64_t log_end;   /* where the next record goes */
    uint64_t file_size; /* the file's size: log_end, or more once zeros are written ahead */
    uint8_t *out;       /* wal_append's buffer, reused between calls */
    size_t out_cap;
};

/* ---------------------------------------------------------------- helpers */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Write all n bytes at off. Returns 0, or -1 with errno set. */
static int write_all_at(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *bytes = p;
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
static ssize_t read_at(int fd, void *p, size_t n, uint64_t off)
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

static int sync_data(int fd)
{
    int rc;
    do
        rc = fdatasync(fd);
    while (rc < 0 && errno == EINTR);
    return rc;
}

static int truncate_to(int fd, uint64_t size)
{
    int rc;
    do
        rc = ftruncate(fd, (off_t)size);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* fsync a directory, so that names created in it survive a crash. */
static int sync_dir(const char *path)
{
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

static int make_path(char *out, size_t outlen, const char *dir, const char *name, char *err,
                     size_t errlen)
{
    int k = snprintf(out, outlen, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= outlen)
        return fail(err, errlen, "data dir path %s is too long", dir);
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

static int make_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0755) == 0) {
        char parent[PATH_MAX];
        parent_dir(dir, parent, sizeof parent);
        if (sync_dir(parent) < 0)
            return fail(err, errlen, "cannot sync %s: %s", parent, strerror(errno));
        return 0;
    }
    if (errno != EEXIST)
        return fail(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) < 0)
        return fail(err, errlen, "cannot use data dir %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(err, errlen, "data dir %s is not a directory", dir);
    return 0;
}

static int take_lock(struct wal *w, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (make_path(path, sizeof path, w->dir, "LOCK", err, errlen) < 0)
        return -1;
    w->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->lock_fd < 0)
        return fail(err, errlen, "cannot open %s: %s", path, strerror(errno));

    while (flock(w->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return fail(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        char text[32];
        ssize_t k = read_at(w->lock_fd, text, sizeof text - 1, 0);
        long pid = 0;
        if (k > 0) {
            text[k] = '\0';
            pid = strtol(text, NULL, 10);
        }
        if (pid > 0)
            return fail(err, errlen, "data dir %s is in use by another process (pid %ld)", w->dir,
                        pid);
        return fail(err, errlen, "data dir %s is in use by another process", w->dir);
    }

    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (truncate_to(w->lock_fd, 0) < 0 || write_all_at(w->lock_fd, text, (size_t)len, 0) < 0)
        return fail(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* ---------------------------------------------------------------- meta */

static void meta_encode(uint8_t *slot, uint64_t seq, uint64_t term, uint32_t voted_for)
{
    memset(slot, 0, META_SLOT_SIZE);
    put_u32(slot, META_MAGIC);
    put_u32(slot + 4, META_VERSION);
    put_u64(slot + 8, seq);
    put_u64(slot + 16, term);
    put_u32(slot + 24, voted_for);
    put_u32(slot + META_CRC_AT, crc32c(0, slot, META_CRC_AT));
}

static bool meta_decode(const uint8_t *slot, uint64_t *seq, uint64_t *term, uint32_t *voted_for)
{
    if (get_u32(slot) != META_MAGIC || get_u32(slot + 4) != META_VERSION)
        return false;
    if (get_u32(slot + META_CRC_AT) != crc32c(0, slot, META_CRC_AT))
        return false;
    *seq = get_u64(slot + 8);
    *term = get_u64(slot + 16);
    *voted_for = get_u32(slot + 24);
    return true;
}

/* Create meta with term 0 and no vote: written to meta.tmp, synced, then
 * renamed, so a crash leaves either no meta or a whole one. */
static int create_meta(struct wal *w, const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (make_path(tmp, sizeof tmp, w->dir, "meta.tmp", err, errlen) < 0)
        return -1;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    w->meta_fd = fd;

    uint8_t slots[2 * META_SLOT_SIZE] = {0};
    meta_encode(slots, 0, 0, RAFT_NONE);
    if (write_all_at(fd, slots, sizeof slots, 0) < 0 || sync_data(fd) < 0)
        return fail(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, path) < 0)
        return fail(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
    if (sync_dir(w->dir) < 0)
        return fail(err, errlen, "cannot sync data dir %s: %s", w->dir, strerror(errno));
    w->meta_seq = 0;
    return 0;
}

static int open_meta(struct wal *w, uint64_t *term, uint32_t *voted_for, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (make_path(path, sizeof path, w->dir, "meta", err, errlen) < 0)
        return -1;
    *term = 0;
    *voted_for = RAFT_NONE;

    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
    if (fd < 0)
        return create_meta(w, path, err, errlen);
    w->meta_fd = fd;

    uint8_t slots[2 * META_SLOT_SIZE];
    ssize_t got = read_at(fd, slots, sizeof slots, 0);
    if (got < 0)
        return fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    if (got == 0) {
        close(fd);
        w->meta_fd = -1;
        return create_meta(w, path, err, errlen);
    }

    bool found = false;
    for (int i = 0; i < 2; i++) {
        uint64_t seq, slot_term;
        uint32_t slot_vote;
        if (got < (i + 1) * META_SLOT_SIZE)
            break;
        if (!meta_decode(slots + i * META_SLOT_SIZE, &seq, &slot_term, &slot_vote))
            continue;
        if (found && seq <= w->meta_seq)
            continue;
        found = true;
        w->meta_seq = seq;
        *term = slot_term;
        *voted_for = slot_vote;
    }
    if (!found)
        return fail(err, errlen, "%s: damaged at offset 0 (bad checksum)", path);
    return 0;
}

int wal_save_hard_state(struct wal *w, uint64_t term, uint32_t voted_for, char *err, size_t errlen)
{
    uint64_t seq = w->meta_seq + 1;
    uint8_t slot[META_SLOT_SIZE];
    meta_encode(slot, seq, term, voted_for);
    if (write_all_at(w->meta_fd, slot, sizeof slot, (seq % 2) * META_SLOT_SIZE) < 0 ||
        sync_data(w->meta_fd) < 0)
        return fail(err, errlen, "cannot write %s/meta: %s", w->dir, strerror(errno));
    w->meta_seq = seq;
    return 0;
}

/* ---------------------------------------------------------------- log reading */

/* Reads a file front to back through a buffer of about READ_CHUNK bytes. */
struct reader {
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t base; /* file offset of buf[0] */
    size_t len;    /* bytes in buf */
};

/* Point at the n bytes at off (off + n <= size), valid until the next call.
 * Cheap when reading forward. NULL with errno set on a read error. */
static const uint8_t *reader_at(struct reader *r, uint64_t off, size_t n)
{
    if (off >= r->base && off + n <= r->base + r->len)
        return r->buf + (off - r->base);
    if (n > r->cap || r->buf == NULL) {
        size_t cap = n > READ_CHUNK ? n : READ_CHUNK;
        uint8_t *buf = realloc(r->buf, cap);
        if (buf == NULL)
            return NULL;
        r->buf = buf;
        r->cap = cap;
    }
    if (off >= r->base && off < r->base + r->len) {
        size_t keep = (size_t)(r->base + r->len - off);
        memmove(r->buf, r->buf + (off - r->base), keep);
        r->len = keep;
    } else {
        r->len = 0;
    }
    r->base = off;
    while (r->len < n) {
        ssize_t k = pread(r->fd, r->buf + r->len, r->cap - r->len, (off_t)(r->base + r->len));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return NULL;
        if (k == 0) {
            errno = EIO; /* the file shrank while we read it */
            return NULL;
        }
        r->len += (size_t)k;
    }
    return r->buf;
}

struct record {
    uint32_t magic;
    uint32_t len;
    uint32_t crc;
    uint64_t term;
    uint64_t index;
    uint8_t type;
};

static void header_encode(uint8_t *h, const struct raft_entry *e)
{
    put_u32(h, LOG_MAGIC);
    put_u32(h + 4, e->len);
    put_u32(h + 8, 0); /* crc, filled in once the payload is in place */
    put_u64(h + 12, e->term);
    put_u64(h + 20, e->index);
    h[28] = e->type;
}

static void header_decode(const uint8_t *h, struct record *rec)
{
    rec->magic = get_u32(h);
    rec->len = get_u32(h + 4);
    rec->crc = get_u32(h + 8);
    rec->term = get_u64(h + 12);
    rec->index = get_u64(h + 20);
    rec->type = h[28];
}

/* Checksum of a record laid out in memory: header, then payload. */
static uint32_t record_crc(const uint8_t *rec, uint32_t len)
{
    uint32_t crc = crc32c(0, rec, 8);
    crc = crc32c(crc, rec + 12, LOG_HEADER_SIZE - 12);
    return crc32c(crc, rec + LOG_HEADER_SIZE, len);
}

/* Whether a whole record with a good checksum starts at off. -1: read error. */
static int record_valid_at(struct reader *r, uint64_t off, bool *valid)
{
    *valid = false;
    if (r->size - off < LOG_HEADER_SIZE)
        return 0;
    const uint8_t *h = reader_at(r, off, LOG_HEADER_SIZE);
    if (h == NULL)
        return -1;
    struct record rec;
    header_decode(h, &rec);
    if (rec.magic != LOG_MAGIC || rec.len > LOG_MAX_PAYLOAD ||
        rec.len > r->size - off - LOG_HEADER_SIZE)
        return 0;
    const uint8_t *p = reader_at(r, off, LOG_HEADER_SIZE + (size_t)rec.len);
    if (p == NULL)
        return -1;
    *valid = record_crc(p, rec.len) == rec.crc;
    return 0;
}

/* Whether a valid record starts anywhere after the bad one at off. If none
 * does, the bad record is a torn tail. -1: read error. */
static int valid_record_after(struct reader *r, uint64_t off, bool *found)
{
    *found = false;
    for (uint64_t at = off + 1; at + LOG_HEADER_SIZE <= r->size; at++) {
        const uint8_t *h = reader_at(r, at, 4);
        if (h == NULL)
            return -1;
        if (get_u32(h) != LOG_MAGIC)
            continue;
        if (record_valid_at(r, at, found) < 0)
            return -1;
        if (*found)
            return 0;
    }
    return 0;
}

static int add_offset(struct wal *w, uint64_t off)
{
    if (w->n_records == w->offsets_cap) {
        size_t cap = w->offsets_cap ? 2 * w->offsets_cap : 1024;
        uint64_t *offsets = realloc(w->offsets, cap * sizeof *offsets);
        if (offsets == NULL)
            return -1;
        w->offsets = offsets;
        w->offsets_cap = cap;
    }
    w->offsets[w->n_records++] = off;
    return 0;
}

static void free_entries(struct raft_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(entries[i].data);
    free(entries);
}

/* Read every record; drop a torn tail; fail on any other damage. */
static int read_log(struct wal *w, struct raft_entry **entries_out, size_t *n_out, char *err,
                    size_t errlen)
{
    struct stat st;
    if (fstat(w->log_fd, &st) < 0)
        return fail(err, errlen, "cannot stat %s/log: %s", w->dir, strerror(errno));

    struct reader r = {.fd = w->log_fd, .size = (uint64_t)st.st_size};
    struct raft_entry *entries = NULL;
    size_t n = 0, cap = 0;
    uint64_t off = 0;
    char reason[64];

    while (off < r.size) {
        uint64_t rest = r.size - off;
        if (rest < LOG_HEADER_SIZE)
            break; /* torn: cut short inside a header */
        const uint8_t *h = reader_at(&r, off, LOG_HEADER_SIZE);
        if (h == NULL)
            goto err_read;
        struct record rec;
        header_decode(h, &rec);

        if (rec.magic != LOG_MAGIC) {
            snprintf(reason, sizeof reason, "bad magic");
        } else if (rec.len > LOG_MAX_PAYLOAD) {
            snprintf(reason, sizeof reason, "length %" PRIu32 " over limit", rec.len);
        } else if (rec.len > rest - LOG_HEADER_SIZE) {
            snprintf(reason, sizeof reason, "length %" PRIu32 " past end of file", rec.len);
        } else {
            const uint8_t *p = reader_at(&r, off, LOG_HEADER_SIZE + (size_t)rec.len);
            if (p == NULL)
                goto err_read;
            if (record_crc(p, rec.len) == rec.crc) {
                if (rec.index != n + 1) {
                    fail(err, errlen,
                         "%s/log: damaged at offset %" PRIu64 " (index %" PRIu64 ", expected %zu)",
                         w->dir, off, rec.index, n + 1);
                    goto err_free;
                }
                if (n == cap) {
                    size_t new_cap = cap ? 2 * cap : 1024;
                    struct raft_entry *grown = realloc(entries, new_cap * sizeof *grown);
                    if (grown == NULL)
                        goto err_memory;
                    entries = grown;
                    cap = new_cap;
                }
                struct raft_entry *e = &entries[n];
                *e = (struct raft_entry){
                    .term = rec.term, .index = rec.index, .type = rec.type, .len = rec.len};
                if (rec.len > 0) {
                    e->data = malloc(rec.len);
                    if (e->data == NULL)
                        goto err_memory;
                    memcpy(e->data, p + LOG_HEADER_SIZE, rec.len);
                }
                n++;
                if (add_offset(w, off) < 0)
                    goto err_memory;
                off += LOG_HEADER_SIZE + (uint64_t)rec.len;
                continue;
            }
            snprintf(reason, sizeof reason, "bad checksum");
        }

        /* A bad record: a torn tail when nothing valid follows it. */
        bool found;
        if (valid_record_after(&r, off, &found) < 0)
            goto err_read;
        if (found) {
            fail(err, errlen, "%s/log: damaged at offset %" PRIu64 " (%s)", w->dir, off, reason);
            goto err_free;
        }
        break;
    }

    if (off < r.size && (truncate_to(w->log_fd, off) < 0 || sync_data(w->log_fd) < 0)) {
        fail(err, errlen, "cannot drop the torn tail of %s/log: %s", w->dir, strerror(errno));
        goto err_free;
    }
    free(r.buf);
    w->log_end = off;
    w->file_size = off;
    *entries_out = entries;
    *n_out = n;
    return 0;

err_memory:
    fail(err, errlen, "out of memory reading %s/log", w->dir);
    goto err_free;
err_read:
    fail(err, errlen, "cannot read %s/log: %s", w->dir, strerror(errno));
err_free:
    free(r.buf);
    free_entries(entries, n);
    return -1;
}

static int open_log(struct wal *w, struct raft_entry **entries, size_t *n, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (make_path(path, sizeof path, w->dir, "log", err, errlen) < 0)
        return -1;
    w->log_fd = open(path, O_RDWR | O_CLOEXEC);
    if (w->log_fd >= 0)
        return read_log(w, entries, n, err, errlen);
    if (errno != ENOENT)
        return fail(err, errlen, "cannot open %s: %s", path, strerror(errno));

    w->log_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->log_fd < 0)
        return fail(err, errlen, "cannot create %s: %s", path, strerror(errno));
    if (sync_dir(w->dir) < 0)
        return fail(err, errlen, "cannot sync data dir %s: %s", w->dir, strerror(errno));
    w->log_end = 0;
    w->file_size = 0;
    return 0;
}

/* ---------------------------------------------------------------- API */

int wal_open(const char *dir, struct wal **out, uint64_t *term, uint32_t *voted_for,
             struct raft_entry **entries, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *term = 0;
    *voted_for = RAFT_NONE;
    *entries = NULL;
    *n = 0;

    struct wal *w = calloc(1, sizeof *w);
    if (w == NULL)
        return fail(err, errlen, "out of memory opening data dir %s", dir);
    w->lock_fd = w->meta_fd = w->log_fd = -1;
    w->dir = strdup(dir);
    if (w->dir == NULL) {
        free(w);
        return fail(err, errlen, "out of memory opening data dir %s", dir);
    }

    if (make_dir(dir, err, errlen) < 0 || take_lock(w, err, errlen) < 0 ||
        open_meta(w, term, voted_for, err, errlen) < 0 ||
        open_log(w, entries, n, err, errlen) < 0) {
        wal_close(w);
        *term = 0;
        *voted_for = RAFT_NONE;
        return -1;
    }
    *out = w;
    return 0;
}

int wal_truncate(struct wal *w, uint64_t from, char *err, size_t errlen)
{
    if (from == 0)
        return fail(err, errlen, "cannot truncate %s/log from index 0", w->dir);
    if (from > w->n_records)
        return 0;
    uint64_t off = w->offsets[from - 1];
    if (truncate_to(w->log_fd, off) < 0)
        return fail(err, errlen, "cannot truncate %s/log: %s", w->dir, strerror(errno));
    w->n_records = (size_t)(from - 1);
    w->log_end = off;
    w->file_size = off;
    return 0;
}

/* Make the file at least `need` bytes long by writing zeros after its end, a
 * LOG_PREALLOCATE step at a time. Made durable by the next wal_sync. */
static int preallocate(struct wal *w, uint64_t need, char *err, size_t errlen)
{
    static const uint8_t zeros[64 * 1024];
    if (need <= w->file_size)
        return 0;
    uint64_t target = (need + LOG_PREALLOCATE - 1) / LOG_PREALLOCATE * LOG_PREALLOCATE;
    while (w->file_size < target) {
        size_t n =
            target - w->file_size < sizeof zeros ? (size_t)(target - w->file_size) : sizeof zeros;
        if (write_all_at(w->log_fd, zeros, n, w->file_size) < 0)
            return fail(err, errlen, "cannot extend %s/log: %s", w->dir, strerror(errno));
        w->file_size += n;
    }
    return 0;
}

int wal_append(struct wal *w, const struct raft_entry *entries, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return 0;

    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        uint64_t expected = (uint64_t)w->n_records + 1 + i;
        if (e->index != expected)
            return fail(err, errlen, "cannot append entry %" PRIu64 ": expected index %" PRIu64,
                        e->index, expected);
        if (e->len > LOG_MAX_PAYLOAD)
            return fail(err, errlen,
                        "cannot append entry %" PRIu64 ": %" PRIu32
                        " bytes is over the limit of %u",
                        e->index, e->len, LOG_MAX_PAYLOAD);
        if (e->len > 0 && e->data == NULL)
            return fail(err, errlen, "cannot append entry %" PRIu64 ": no data", e->index);
        total += LOG_HEADER_SIZE + (size_t)e->len;
    }

    /* Get all memory first, so nothing can fail after the write. */
    if (w->n_records + n > w->offsets_cap) {
        size_t cap = w->offsets_cap ? w->offsets_cap : 1024;
        while (cap < w->n_records + n)
            cap *= 2;
        uint64_t *offsets = realloc(w->offsets, cap * sizeof *offsets);
        if (offsets == NULL)
            return fail(err, errlen, "out of memory appending to %s/log", w->dir);
        w->offsets = offsets;
        w->offsets_cap = cap;
    }
    if (total > w->out_cap) {
        uint8_t *out = realloc(w->out, total);
        if (out == NULL)
            return fail(err, errlen, "out of memory appending to %s/log", w->dir);
        w->out = out;
        w->out_cap = total;
    }

    if (preallocate(w, w->log_end + total, err, errlen) < 0)
        return -1;

    /* All records into one buffer, one write. */
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        uint8_t *rec = w->out + pos;
        header_encode(rec, e);
        if (e->len > 0)
            memcpy(rec + LOG_HEADER_SIZE, e->data, e->len);
        put_u32(rec + 8, record_crc(rec, e->len));
        pos += LOG_HEADER_SIZE + (size_t)e->len;
    }
    if (write_all_at(w->log_fd, w->out, total, w->log_end) < 0) {
        int saved = errno;
        /* Best effort: cut off whatever part of the batch reached the file. */
        if (truncate_to(w->log_fd, w->log_end) < 0) {
            /* the next append overwrites it anyway */
        } else {
            w->file_size = w->log_end;
        }
        return fail(err, errlen, "cannot write %s/log: %s", w->dir, strerror(saved));
    }

    uint64_t off = w->log_end;
    for (size_t i = 0; i < n; i++) {
        w->offsets[w->n_records++] = off;
        off += LOG_HEADER_SIZE + (uint64_t)entries[i].len;
    }
    w->log_end = off;

    if (w->out_cap > KEEP_OUT_BUFFER) {
        free(w->out);
        w->out = NULL;
        w->out_cap = 0;
    }
    return 0;
}

int wal_sync(struct wal *w, char *err, size_t errlen)
{
    if (sync_data(w->log_fd) < 0)
        return fail(err, errlen, "cannot sync %s/log: %s", w->dir, strerror(errno));
    return 0;
}

uint64_t wal_last_index(const struct wal *w)
{
    return w->n_records;
}

uint64_t wal_log_size(const struct wal *w)
{
    return w->log_end;
}

void wal_close(struct wal *w)
{
    if (w == NULL)
        return;
    if (w->log_fd >= 0) {
        /* A clean close leaves no zeros after the last record. */
        if (w->file_size > w->log_end && truncate_to(w->log_fd, w->log_end) == 0)
            sync_data(w->log_fd);
        close(w->log_fd);
    }
    if (w->meta_fd >= 0)
        close(w->meta_fd);
    if (w->lock_fd >= 0) {
        flock(w->lock_fd, LOCK_UN); /* also for a forked copy of this descriptor */
        close(w->lock_fd);
    }
    free(w->offsets);
    free(w->out);
    free(w->dir);
    free(w);
}

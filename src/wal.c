/* wal.c - DIR/log: the header with its synced mark, the records, recovery,
 * and the API (open, append, sync, truncate, close). The lock and the file
 * helpers are in wal_file.c, DIR/meta in wal_meta.c, and the log as the first
 * release wrote it (no header) in wal_legacy.c.
 *
 * All numbers are little-endian.
 *
 * log: a header of LOG_DATA_START (4096) bytes, then one record an entry.
 *   header: slot A at 0 and slot B at 512, each in its own 512-byte sector,
 *   64 bytes each, zeros elsewhere; slot A holds the even sequence numbers,
 *   B the odd ones (a slot of the other parity is invalid), and the valid
 *   slot with the newer sequence number wins, counted on past 2^64 - 1 to 0
 *   (wal_seq_newer):
 *     magic u32 "RKVH" | version u32 (1) | seq u64 | synced_end u64 |
 *     synced_index u64 | base u64 | zeros | crc u32 (at 60, over bytes 0..59)
 *   base: the index before the first record (0 in logs written before
 *   snapshots existed, which had zeros there); the records hold base + 1,
 *   base + 2, ... It is the same in both slots: it changes only when the log
 *   is rewritten whole (see "The log's base" below).
 *   record, from offset 4096 on, each right after the previous one:
 *     magic u32 "RKVL" | length u32 | crc u32 | term u64 | index u64 | type u8 |
 *     payload (length bytes)
 *   The record crc covers its header (without the crc field) and payload.
 * Once DIR/meta has its META_LOG_HEADER flag (wal_meta.c), a log that is
 * missing or has no header is damage.
 *
 * The synced mark (synced_end, synced_index): the byte offset just past the
 * record with index synced_index, where the log ended at a completed
 * fdatasync. Everything before it was durable when the slot was written, so
 * the mark is true whenever it reaches the disk:
 *   - wal_sync: fdatasync, then write the next slot with the new end, without
 *     syncing it; the next fdatasync (or wal_close) carries it. No extra sync a
 *     write: the mark on disk may lag one sync behind, never run ahead.
 *   - A slot is overwritten only once the other slot is durable, so a torn
 *     slot leaves the other, older but true.
 *   - wal_truncate lowers the mark to at most the cut and syncs it, then cuts
 *     the file and syncs the cut, before any record is written over the cut
 *     region: after a power cut no truncated record can reappear after a new
 *     one.
 *
 * Recovery (wal_open):
 *   - up to the mark every record must be there and valid: magic, length,
 *     crc, index = previous + 1, term not below the previous record's, the
 *     last one ending exactly at synced_end with index synced_index. Anything
 *     else is damage: "FILE: damaged at offset N (reason)"; a file shorter
 *     than the mark is "FILE: cut short at N, below the synced end M".
 *   - past the mark nothing was promised: records are read while they are
 *     valid and continue the sequence (index + 1, term not lower); the first
 *     one that is not ends the log and the rest of the file is dropped. There
 *     is no looking further for a valid record, so no stored value (a payload
 *     may hold a well-formed record) changes what recovery does.
 *   - the kept tail is synced and the mark raised to it, so everything
 *     wal_open returns is durable.
 * Limits: the mark on disk may lag one sync, so the records of the last sync
 * before a crash can lie past it; damage there cannot be told from a torn
 * write and is dropped. A write that shares a page with synced records is
 * assumed to leave those records' bytes intact (as every log does).
 *
 * While the node runs the file is extended with zeros ahead of the records
 * (LOG_PREALLOCATE); recovery reads them as the end of the log, and a clean
 * wal_close cuts them off.
 *
 * The log's base (log compaction). Once a snapshot at index I is durable
 * (snapshot_file.c), entries <= I may go: wal_snapshot_taken drops them when
 * they take at least as many bytes as what follows (so the copying is paid
 * for by what it frees), wal_install_snapshot always. Dropping rewrites the
 * log: the kept records go to log.tmp behind a header with base = I, fsync,
 * rename over log, fsync of the dir. A crash leaves the old log or the new
 * one, and both are valid with the snapshot. wal_open checks the log against
 * the newest snapshot S (0: none):
 *   - base > S: entries S + 1 .. base are nowhere: damage ("FILE: damaged at
 *     offset 0 (the log starts after index B, the newest snapshot ends at
 *     S)"). A log cut at the front is damage the same way, since its first
 *     record must hold base + 1.
 *   - the log ends before S, or holds S with a term other than the
 *     snapshot's: the log was being replaced by an installed snapshot; it
 *     starts afresh, empty with base S (rewritten as above).
 *   - else entries base + 1 .. S are dead but harmless (raft_restore skips
 *     them).
 * wal_append of entry S + 1 to a log that ends before S starts the log afresh
 * the same way (a follower that installed a snapshot past its log).
 *
 * A new log is created whole: a header, written to log.tmp, fsynced and
 * renamed over log, and the dir fsynced (wal_write_new_log; an old log is
 * converted the same way), so a crash leaves no log or a whole one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "snapshot_file.h"
#include "wal_internal.h"

/* The log file is extended with zeros this much at a time, ahead of the
 * records: overwriting blocks that already exist lets fdatasync skip the
 * inode (the file's size does not change), which makes every sync cheaper.
 * Recovery reads the zeros after the last record as the end of the log. */
#define LOG_PREALLOCATE (4u * 1024u * 1024u)

#define READ_CHUNK (1u << 20)
#define KEEP_OUT_BUFFER (16u * 1024u * 1024u) /* larger append buffers are freed after use */

/* ---------------------------------------------------------------- log header */

static void header_slot_encode(uint8_t *slot, uint64_t seq, uint64_t synced_end,
                               uint64_t synced_index, uint64_t base)
{
    memset(slot, 0, HEADER_SLOT_SIZE);
    wal_put_u32(slot, HEADER_MAGIC);
    wal_put_u32(slot + 4, HEADER_VERSION);
    wal_put_u64(slot + 8, seq);
    wal_put_u64(slot + 16, synced_end);
    wal_put_u64(slot + 24, synced_index);
    wal_put_u64(slot + 32, base);
    wal_put_u32(slot + HEADER_CRC_AT, crc32c(0, slot, HEADER_CRC_AT));
}

/* A slot with the right magic, version and checksum, and a mark that can be
 * true: at least a record header's worth of bytes for every record. */
static bool header_slot_decode(const uint8_t *slot, uint64_t *seq, uint64_t *synced_end,
                               uint64_t *synced_index, uint64_t *base)
{
    if (wal_get_u32(slot) != HEADER_MAGIC || wal_get_u32(slot + 4) != HEADER_VERSION)
        return false;
    if (wal_get_u32(slot + HEADER_CRC_AT) != crc32c(0, slot, HEADER_CRC_AT))
        return false;
    uint64_t end = wal_get_u64(slot + 16), index = wal_get_u64(slot + 24);
    uint64_t first = wal_get_u64(slot + 32);
    if (end < LOG_DATA_START || index < first ||
        (end - LOG_DATA_START) / LOG_HEADER_SIZE < index - first ||
        (index == first) != (end == LOG_DATA_START))
        return false;
    *seq = wal_get_u64(slot + 8);
    *synced_end = end;
    *synced_index = index;
    *base = first;
    return true;
}

/* Write the next header slot with the mark (end, index). The slot written
 * before must be durable first, so that a torn write of this one leaves it:
 * it is, unless a slot was written since the last fdatasync. With sync the new
 * slot is durable on return; without, the next fdatasync carries it. */
static int write_mark(struct wal *w, uint64_t end, uint64_t index, bool sync, char *err,
                      size_t errlen)
{
    if (w->mark_pending) {
        if (wal_sync_data(w->log_fd) < 0)
            return wal_fail(err, errlen, "cannot sync %s/log: %s", w->dir, strerror(errno));
        w->mark_pending = false;
    }
    uint64_t seq = w->header_seq + 1; /* after 2^64 - 1, 0: newer all the same */
    uint8_t slot[HEADER_SLOT_SIZE];
    header_slot_encode(slot, seq, end, index, w->base);
    if (wal_write_all_at(w->log_fd, slot, sizeof slot, (seq % 2) * HEADER_SLOT_STRIDE) < 0)
        return wal_fail(err, errlen, "cannot write the header of %s/log: %s", w->dir,
                        strerror(errno));
    w->mark_pending = true;
    if (sync) {
        if (wal_sync_data(w->log_fd) < 0)
            return wal_fail(err, errlen, "cannot sync %s/log: %s", w->dir, strerror(errno));
        w->mark_pending = false;
    }
    w->header_seq = seq;
    w->synced_end = end;
    w->synced_index = index;
    return 0;
}

/* Read both header slots of path; the valid one with the higher sequence
 * number gives the mark. */
static int read_header(struct wal *w, const char *path, char *err, size_t errlen)
{
    uint8_t slots[HEADER_SLOT_STRIDE + HEADER_SLOT_SIZE];
    ssize_t got = wal_read_at(w->log_fd, slots, sizeof slots, 0);
    if (got < 0)
        return wal_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    bool found = false;
    for (int i = 0; i < 2; i++) {
        uint64_t seq, end, index, base;
        if (got < i * HEADER_SLOT_STRIDE + HEADER_SLOT_SIZE)
            break;
        if (!header_slot_decode(slots + i * HEADER_SLOT_STRIDE, &seq, &end, &index, &base) ||
            seq % 2 != (uint64_t)i)
            continue;
        if (found && !wal_seq_newer(seq, w->header_seq))
            continue;
        found = true;
        w->header_seq = seq;
        w->synced_end = end;
        w->synced_index = index;
        w->base = base;
    }
    if (!found)
        return wal_fail(err, errlen, "%s: damaged at offset 0 (no valid header slot)", path);
    return 0;
}

/* ---------------------------------------------------------------- log records */

/* Point at the n bytes at off (off + n <= size), valid until the next call.
 * Cheap when reading forward. NULL with errno set on a read error. */
const uint8_t *wal_reader_at(struct reader *r, uint64_t off, size_t n)
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

static void header_encode(uint8_t *h, const struct raft_entry *e)
{
    wal_put_u32(h, LOG_MAGIC);
    wal_put_u32(h + 4, e->len);
    wal_put_u32(h + 8, 0); /* crc, filled in once the payload is in place */
    wal_put_u64(h + 12, e->term);
    wal_put_u64(h + 20, e->index);
    h[28] = e->type;
}

static void header_decode(const uint8_t *h, struct record *rec)
{
    rec->magic = wal_get_u32(h);
    rec->len = wal_get_u32(h + 4);
    rec->crc = wal_get_u32(h + 8);
    rec->term = wal_get_u64(h + 12);
    rec->index = wal_get_u64(h + 20);
    rec->type = h[28];
}

/* Checksum of a record laid out in memory: header, then payload. */
static uint32_t record_crc(const uint8_t *rec, uint32_t len)
{
    uint32_t crc = crc32c(0, rec, 8);
    crc = crc32c(crc, rec + 12, LOG_HEADER_SIZE - 12);
    return crc32c(crc, rec + LOG_HEADER_SIZE, len);
}

/* Whether a whole record with a good checksum lies at off, before end (the
 * synced end when synced, else the end of the file). 1: yes, with rec and
 * *payload filled in (valid until the next read). 0: no, with the reason.
 * -1: read error. Index and term are the caller's to check. */
int wal_read_record(struct reader *r, uint64_t off, uint64_t end, bool synced, struct record *rec,
                    const uint8_t **payload, char *reason, size_t reasonlen)
{
    char limit[64];
    if (synced)
        snprintf(limit, sizeof limit, "the synced end %" PRIu64, end);
    else
        snprintf(limit, sizeof limit, "end of file");

    if (end - off < LOG_HEADER_SIZE) {
        snprintf(reason, reasonlen, "record header past %s", limit);
        return 0;
    }
    const uint8_t *h = wal_reader_at(r, off, LOG_HEADER_SIZE);
    if (h == NULL)
        return -1;
    header_decode(h, rec);
    if (rec->magic != LOG_MAGIC) {
        snprintf(reason, reasonlen, "bad magic");
        return 0;
    }
    if (rec->len > LOG_MAX_PAYLOAD) {
        snprintf(reason, reasonlen, "length %" PRIu32 " over limit", rec->len);
        return 0;
    }
    if (rec->len > end - off - LOG_HEADER_SIZE) {
        snprintf(reason, reasonlen, "length %" PRIu32 " past %s", rec->len, limit);
        return 0;
    }
    const uint8_t *p = wal_reader_at(r, off, LOG_HEADER_SIZE + (size_t)rec->len);
    if (p == NULL)
        return -1;
    if (record_crc(p, rec->len) != rec->crc) {
        snprintf(reason, reasonlen, "bad checksum");
        return 0;
    }
    *payload = p + LOG_HEADER_SIZE;
    return 1;
}

static void free_entries(struct raft_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(entries[i].data);
    free(entries);
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

/* Keep the record at off as the next entry. -1: out of memory. */
int wal_keep_record(struct wal *w, struct entry_list *l, const struct record *rec,
                    const uint8_t *payload, uint64_t off)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        struct raft_entry *grown = realloc(l->v, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        l->v = grown;
        l->cap = cap;
    }
    struct raft_entry *e = &l->v[l->n];
    *e = (struct raft_entry){
        .term = rec->term, .index = rec->index, .type = rec->type, .len = rec->len};
    if (rec->len > 0) {
        e->data = malloc(rec->len);
        if (e->data == NULL)
            return -1;
        memcpy(e->data, payload, rec->len);
    }
    l->n++;
    return add_offset(w, off);
}

/* Read a log with a header (path is w->dir/log): every record up to the mark
 * must be valid, then a tail is kept while it continues the sequence, and the
 * rest of the file dropped. See the top of this file. */
static int read_log(struct wal *w, const char *path, struct entry_list *l, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(w->log_fd, &st) < 0)
        return wal_fail(err, errlen, "cannot stat %s: %s", path, strerror(errno));
    if (read_header(w, path, err, errlen) < 0)
        return -1;
    struct reader r = {.fd = w->log_fd, .size = (uint64_t)st.st_size};
    if (r.size < w->synced_end)
        return wal_fail(err, errlen, "%s: cut short at %" PRIu64 ", below the synced end %" PRIu64,
                        path, r.size, w->synced_end);

    uint64_t off = LOG_DATA_START, last_term = 0;
    struct record rec;
    const uint8_t *payload;
    char reason[96];

    /* Up to the mark: all of it was durable, so anything wrong is damage. */
    while (off < w->synced_end) {
        int k =
            wal_read_record(&r, off, w->synced_end, true, &rec, &payload, reason, sizeof reason);
        if (k < 0)
            goto err_read;
        if (k == 1 && rec.index != w->base + l->n + 1) {
            snprintf(reason, sizeof reason, "index %" PRIu64 ", expected %" PRIu64, rec.index,
                     w->base + l->n + 1);
            k = 0;
        } else if (k == 1 && rec.term < last_term) {
            snprintf(reason, sizeof reason,
                     "term %" PRIu64 " below the previous record's term %" PRIu64, rec.term,
                     last_term);
            k = 0;
        }
        if (k == 0) {
            wal_fail(err, errlen, "%s: damaged at offset %" PRIu64 " (%s)", path, off, reason);
            goto err_free;
        }
        if (wal_keep_record(w, l, &rec, payload, off) < 0)
            goto err_memory;
        last_term = rec.term;
        off += LOG_HEADER_SIZE + (uint64_t)rec.len;
    }
    if (w->base + l->n != w->synced_index) {
        wal_fail(err, errlen,
                 "%s: damaged at offset %" PRIu64 " (the synced end follows index %" PRIu64
                 ", the header says %" PRIu64 ")",
                 path, off, w->base + l->n, w->synced_index);
        goto err_free;
    }

    /* Past the mark nothing was promised: keep what continues the log. */
    while (off < r.size) {
        int k = wal_read_record(&r, off, r.size, false, &rec, &payload, reason, sizeof reason);
        if (k < 0)
            goto err_read;
        if (k == 0 || rec.index != w->base + l->n + 1 || rec.term < last_term)
            break;
        if (wal_keep_record(w, l, &rec, payload, off) < 0)
            goto err_memory;
        last_term = rec.term;
        off += LOG_HEADER_SIZE + (uint64_t)rec.len;
    }
    free(r.buf);
    r.buf = NULL;

    /* Drop the rest; make what is kept durable and mark it. */
    if (off < r.size && wal_truncate_to(w->log_fd, off) < 0) {
        wal_fail(err, errlen, "cannot drop the unsynced tail of %s: %s", path, strerror(errno));
        goto err_free;
    }
    if ((off < r.size || off > w->synced_end) && wal_sync_data(w->log_fd) < 0) {
        wal_fail(err, errlen, "cannot sync %s: %s", path, strerror(errno));
        goto err_free;
    }
    if (off > w->synced_end && write_mark(w, off, w->base + l->n, true, err, errlen) < 0)
        goto err_free;
    w->log_end = off;
    w->file_size = off;
    return 0;

err_memory:
    wal_fail(err, errlen, "out of memory reading %s", path);
    goto err_free;
err_read:
    wal_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
err_free:
    free(r.buf);
    return -1;
}

/* ---------------------------------------------------------------- creating and opening */

int wal_write_log_file(int fd, const char *path, int src_fd, const char *src_path, uint64_t src_off,
                       uint64_t src_len, uint64_t base, uint64_t n_records, char *err,
                       size_t errlen)
{
    uint8_t *buf = malloc(READ_CHUNK);
    if (buf == NULL)
        return wal_fail(err, errlen, "out of memory writing %s", path);
    memset(buf, 0, LOG_DATA_START);
    header_slot_encode(buf, 0, LOG_DATA_START + src_len, base + n_records, base);
    int rc = -1;
    if (wal_write_all_at(fd, buf, LOG_DATA_START, 0) < 0) {
        wal_fail(err, errlen, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    for (uint64_t done = 0; done < src_len;) {
        size_t n = src_len - done < READ_CHUNK ? (size_t)(src_len - done) : READ_CHUNK;
        ssize_t got = wal_read_at(src_fd, buf, n, src_off + done);
        if (got < 0 || (size_t)got != n) {
            if (got >= 0)
                errno = EIO; /* the file shrank while we copied it */
            wal_fail(err, errlen, "cannot read %s: %s", src_path, strerror(errno));
            goto out;
        }
        if (wal_write_all_at(fd, buf, n, LOG_DATA_START + done) < 0) {
            wal_fail(err, errlen, "cannot write %s: %s", path, strerror(errno));
            goto out;
        }
        done += n;
    }
    if (wal_sync_all(fd) < 0) {
        wal_fail(err, errlen, "cannot sync %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* Put a new log in place of w->dir/log: a header with base and marking
 * everything synced, then the src_len bytes of records at src_off in src_fd
 * (-1, 0 and 0 for an empty log), holding n_records records. Written to
 * log.tmp, fsynced, renamed over log, then the dir fsynced: a crash leaves
 * the old file or the new one. On success w->log_fd is the new file (the old
 * descriptor is closed) and w's mark and base are the new log's; the caller
 * fixes the offsets. On failure w is unchanged. */
int wal_write_new_log(struct wal *w, int src_fd, uint64_t src_off, uint64_t src_len, uint64_t base,
                      uint64_t n_records, char *err, size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    if (wal_make_path(path, sizeof path, w->dir, "log", err, errlen) < 0 ||
        wal_make_path(tmp, sizeof tmp, w->dir, "log.tmp", err, errlen) < 0)
        return -1;
    /* A compacted log still waiting for its rename goes in place first. */
    if (wal_compact_rename(w, err, errlen) < 0)
        return -1;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return wal_fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    if (wal_write_log_file(fd, tmp, src_fd, path, src_off, src_len, base, n_records, err, errlen) <
        0)
        goto err_close;
    if (wal_rename(tmp, path) < 0) {
        wal_fail(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto err_close;
    }
    /* The new file is the log now, whether or not the rename is durable yet:
     * if the dir sync fails, wal_sync tries it again before it succeeds. */
    int rc = 0;
    w->dir_unsynced = wal_sync_dir(w->dir) < 0;
    if (w->dir_unsynced)
        rc = wal_fail(err, errlen, "cannot sync data dir %s: %s", w->dir, strerror(errno));
    if (w->log_fd >= 0)
        close(w->log_fd);
    w->log_fd = fd;
    w->log_gen++;
    w->header_seq = 0;
    w->synced_end = LOG_DATA_START + src_len;
    w->base = base;
    w->synced_index = base + n_records;
    w->mark_pending = false;
    w->log_end = w->synced_end;
    w->file_size = w->synced_end;
    return rc;

err_close:
    close(fd);
    unlink(tmp); /* best effort: wal_open removes it anyway */
    return -1;
}

/* Open DIR/log into w and l: create it, read it, or convert a first-release
 * log (wal_legacy.c); then mark in DIR/meta that the log has a header. */
static int open_log(struct wal *w, struct entry_list *l, char *err, size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX], compact[PATH_MAX];
    if (wal_make_path(path, sizeof path, w->dir, "log", err, errlen) < 0 ||
        wal_make_path(tmp, sizeof tmp, w->dir, "log.tmp", err, errlen) < 0 ||
        wal_make_path(compact, sizeof compact, w->dir, WAL_COMPACT_FILE, err, errlen) < 0)
        return -1;
    /* Left by a crash while creating, converting or compacting the log: the
     * log is whole without them. */
    if (unlink(tmp) < 0 && errno != ENOENT)
        return wal_fail(err, errlen, "cannot remove %s: %s", tmp, strerror(errno));
    if (unlink(compact) < 0 && errno != ENOENT)
        return wal_fail(err, errlen, "cannot remove %s: %s", compact, strerror(errno));

    bool has_header = (w->meta_flags & META_LOG_HEADER) != 0;
    w->log_fd = open(path, O_RDWR | O_CLOEXEC);
    if (w->log_fd < 0) {
        if (errno != ENOENT)
            return wal_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
        if (has_header)
            return wal_fail(err, errlen, "%s is missing (%s/meta says it was created)", path,
                            w->dir);
        if (w->snap_index > 0)
            return wal_fail(err, errlen, "%s is missing (a snapshot at index %" PRIu64 " exists)",
                            path, w->snap_index);
        if (wal_write_new_log(w, -1, 0, 0, 0, 0, err, errlen) < 0)
            return -1;
    } else {
        struct stat st;
        if (fstat(w->log_fd, &st) < 0)
            return wal_fail(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        uint64_t size = (uint64_t)st.st_size;
        bool legacy = false;
        if (wal_log_is_legacy(w, path, size, &legacy, err, errlen) < 0)
            return -1;
        if (legacy && has_header && size < LOG_DATA_START)
            return wal_fail(err, errlen, "%s: cut short at %" PRIu64 ", inside the header", path,
                            size);
        if (legacy && has_header)
            return wal_fail(err, errlen, "%s: damaged at offset 0 (no header)", path);
        if (legacy) {
            if (wal_convert_legacy_log(w, path, l, err, errlen) < 0)
                return -1;
        } else if (read_log(w, path, l, err, errlen) < 0) {
            return -1;
        }
    }
    /* From now on a log without a header is damage. */
    if (!has_header &&
        wal_write_meta(w, w->term, w->voted_for, w->meta_flags | META_LOG_HEADER, err, errlen) < 0)
        return -1;
    w->log_ready = true;
    return 0;
}

/* ---------------------------------------------------------------- the base */

/* Replace the log with an empty one starting after base. (wal_write_new_log
 * may fail after the new file took the old one's place: a dir sync failed.
 * The new file is then w's log all the same.) */
static int restart_log(struct wal *w, uint64_t base, char *err, size_t errlen)
{
    int old_fd = w->log_fd;
    int rc = wal_write_new_log(w, -1, 0, 0, base, 0, err, errlen);
    if (w->log_fd != old_fd)
        w->n_records = 0;
    return rc;
}

/* Rewrite the log without the entries <= index (base < index <= last). */
static int drop_through(struct wal *w, uint64_t index, char *err, size_t errlen)
{
    size_t k = (size_t)(index - w->base);
    uint64_t from = k < w->n_records ? w->offsets[k] : w->log_end;
    size_t keep = w->n_records - k;
    int old_fd = w->log_fd;
    int rc = wal_write_new_log(w, w->log_fd, from, w->log_end - from, index, keep, err, errlen);
    if (w->log_fd == old_fd)
        return rc;
    for (size_t i = 0; i < keep; i++)
        w->offsets[i] = w->offsets[k + i] - from + LOG_DATA_START;
    w->n_records = keep;
    return rc;
}

/* The term of the stored entry at index (base < index <= last), read back
 * from the file. */
static int stored_term(struct wal *w, uint64_t index, uint64_t *term, char *err, size_t errlen)
{
    uint64_t off = w->offsets[index - w->base - 1];
    uint8_t h[LOG_HEADER_SIZE];
    ssize_t got = wal_read_at(w->log_fd, h, sizeof h, off);
    if (got != (ssize_t)sizeof h) {
        if (got >= 0)
            errno = EIO;
        return wal_fail(err, errlen, "cannot read %s/log at offset %" PRIu64 ": %s", w->dir, off,
                        strerror(errno));
    }
    struct record rec;
    header_decode(h, &rec);
    *term = rec.term;
    return 0;
}

/* The snapshot (index, term) is durable and the newest: make the log fit it
 * (see "The log's base" at the top). With a job, a prefix to drop is left to
 * it (wal_compact_begin) instead of rewritten here. */
static int settle_log(struct wal *w, uint64_t index, uint64_t term, struct wal_compaction *job,
                      char *err, size_t errlen)
{
    uint64_t last = w->base + w->n_records;
    if (w->base >= index)
        return 0;
    uint64_t t = 0;
    if (last >= index && stored_term(w, index, &t, err, errlen) < 0)
        return -1;
    if (last < index || t != term) {
        if (job == NULL)
            return restart_log(w, index, err, errlen);
        job->restart = true; /* for the caller to do with nothing in flight */
        return 0;
    }
    size_t k = (size_t)(index - w->base);
    uint64_t from = k < w->n_records ? w->offsets[k] : w->log_end;
    if (from - LOG_DATA_START < w->log_end - from)
        return 0;
    if (job != NULL)
        return wal_compact_prepare(w, index, from, w->n_records - k, job, err, errlen);
    return drop_through(w, index, err, errlen);
}

/* wal_open: the log read into l, against the newest snapshot. */
static int check_log(struct wal *w, struct entry_list *l, char *err, size_t errlen)
{
    uint64_t s = w->snap_index;
    if (w->base > s)
        return wal_fail(err, errlen,
                        "%s/log: damaged at offset 0 (the log starts after index %" PRIu64
                        ", the newest snapshot ends at %" PRIu64 ")",
                        w->dir, w->base, s);
    if (s == 0 || w->base == s)
        return 0;
    uint64_t last = w->base + l->n;
    if (last >= s && l->v[s - w->base - 1].term == w->snap_term)
        return 0;
    /* Being replaced by an installed snapshot when the node stopped. */
    free_entries(l->v, l->n);
    *l = (struct entry_list){0};
    return restart_log(w, s, err, errlen);
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
        return wal_fail(err, errlen, "out of memory opening data dir %s", dir);
    w->lock_fd = w->meta_fd = w->log_fd = w->old_fd = -1;
    w->dir = strdup(dir);
    if (w->dir == NULL) {
        free(w);
        return wal_fail(err, errlen, "out of memory opening data dir %s", dir);
    }

    struct entry_list l = {0};
    if (wal_make_dir(dir, err, errlen) < 0 || wal_take_lock(w, err, errlen) < 0 ||
        wal_open_meta(w, err, errlen) < 0 ||
        snapfile_open_dir(dir, &w->snap_index, &w->snap_term, err, errlen) < 0 ||
        open_log(w, &l, err, errlen) < 0 || check_log(w, &l, err, errlen) < 0 ||
        snapfile_remove_below(dir, w->snap_index, err, errlen) < 0) {
        free_entries(l.v, l.n);
        wal_close(w);
        return -1;
    }
    *out = w;
    *term = w->term;
    *voted_for = w->voted_for;
    *entries = l.v;
    *n = l.n;
    return 0;
}

/* Drop the records with index >= from. The mark comes down first (synced),
 * then the file is cut and the cut synced: no record is ever written over
 * the cut region before the cut is durable, so a power cut cannot leave a
 * truncated record after a new one. */
int wal_truncate(struct wal *w, uint64_t from, char *err, size_t errlen)
{
    if (from <= w->base)
        return wal_fail(err, errlen,
                        "cannot truncate %s/log from index %" PRIu64 ": it starts after %" PRIu64,
                        w->dir, from, w->base);
    if (from > w->base + w->n_records)
        return 0;
    /* A compacted log still waiting for its rename goes in place first. */
    if (wal_compact_rename(w, err, errlen) < 0)
        return -1;
    w->log_gen++;
    uint64_t off = w->offsets[from - w->base - 1];
    if (w->synced_end > off && write_mark(w, off, from - 1, true, err, errlen) < 0)
        return -1;
    if (wal_truncate_to(w->log_fd, off) < 0)
        return wal_fail(err, errlen, "cannot truncate %s/log: %s", w->dir, strerror(errno));
    w->n_records = (size_t)(from - 1 - w->base);
    w->log_end = off;
    w->file_size = off;
    if (wal_sync_data(w->log_fd) < 0)
        return wal_fail(err, errlen, "cannot sync %s/log: %s", w->dir, strerror(errno));
    w->mark_pending = false;
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
        if (wal_write_all_at(w->log_fd, zeros, n, w->file_size) < 0)
            return wal_fail(err, errlen, "cannot extend %s/log: %s", w->dir, strerror(errno));
        w->file_size += n;
    }
    return 0;
}

int wal_append(struct wal *w, const struct raft_entry *entries, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    /* A follower that installed a snapshot past its log: start it afresh. */
    if (entries[0].index == w->snap_index + 1 && w->base + w->n_records < w->snap_index &&
        restart_log(w, w->snap_index, err, errlen) < 0)
        return -1;

    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        uint64_t expected = w->base + w->n_records + 1 + i;
        if (e->index != expected)
            return wal_fail(err, errlen, "cannot append entry %" PRIu64 ": expected index %" PRIu64,
                            e->index, expected);
        if (e->len > LOG_MAX_PAYLOAD)
            return wal_fail(err, errlen,
                            "cannot append entry %" PRIu64 ": %" PRIu32
                            " bytes is over the limit of %u",
                            e->index, e->len, LOG_MAX_PAYLOAD);
        if (e->len > 0 && e->data == NULL)
            return wal_fail(err, errlen, "cannot append entry %" PRIu64 ": no data", e->index);
        total += LOG_HEADER_SIZE + (size_t)e->len;
    }

    /* Get all memory first, so nothing can fail after the write. */
    if (w->n_records + n > w->offsets_cap) {
        size_t cap = w->offsets_cap ? w->offsets_cap : 1024;
        while (cap < w->n_records + n)
            cap *= 2;
        uint64_t *offsets = realloc(w->offsets, cap * sizeof *offsets);
        if (offsets == NULL)
            return wal_fail(err, errlen, "out of memory appending to %s/log", w->dir);
        w->offsets = offsets;
        w->offsets_cap = cap;
    }
    if (total > w->out_cap) {
        uint8_t *out = realloc(w->out, total);
        if (out == NULL)
            return wal_fail(err, errlen, "out of memory appending to %s/log", w->dir);
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
        wal_put_u32(rec + 8, record_crc(rec, e->len));
        pos += LOG_HEADER_SIZE + (size_t)e->len;
    }
    if (wal_write_all_at(w->log_fd, w->out, total, w->log_end) < 0) {
        int saved = errno;
        /* Best effort: cut off whatever part of the batch reached the file. */
        if (wal_truncate_to(w->log_fd, w->log_end) < 0) {
            /* the next append overwrites it anyway */
        } else {
            w->file_size = w->log_end;
        }
        return wal_fail(err, errlen, "cannot write %s/log: %s", w->dir, strerror(saved));
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

/* fdatasync, then record the new end in the next header slot without syncing
 * it: the mark is true from the moment it is written, and the next fdatasync
 * (or wal_close) makes it durable. */
int wal_sync(struct wal *w, char *err, size_t errlen)
{
    if (w->dir_unsynced) {
        if (wal_sync_dir(w->dir) < 0)
            return wal_fail(err, errlen, "cannot sync data dir %s: %s", w->dir, strerror(errno));
        w->dir_unsynced = false;
    }
    if (wal_sync_data(w->log_fd) < 0)
        return wal_fail(err, errlen, "cannot sync %s/log: %s", w->dir, strerror(errno));
    w->mark_pending = false;
    if (wal_compact_rename(w, err, errlen) < 0)
        return -1;
    if (w->synced_end == w->log_end && w->synced_index == w->base + w->n_records)
        return 0;
    return write_mark(w, w->log_end, w->base + w->n_records, false, err, errlen);
}

int wal_sync_begin(struct wal *w, struct wal_sync_point *p, char *err, size_t errlen)
{
    if (w->dir_unsynced) {
        if (wal_sync_dir(w->dir) < 0)
            return wal_fail(err, errlen, "cannot sync data dir %s: %s", w->dir, strerror(errno));
        w->dir_unsynced = false;
    }
    p->fd = w->log_fd;
    p->end = w->log_end;
    p->index = w->base + w->n_records;
    p->dir = w->dir;
    p->rename = w->rename_pending;
    p->old_fd = w->old_fd;
    return 0;
}

int wal_sync_run(const struct wal_sync_point *p)
{
    if (wal_sync_data(p->fd) < 0)
        return errno;
    return p->rename ? wal_compact_rename_run(p->dir, p->old_fd) : 0;
}

/* As wal_sync after its fdatasync: the mark now says the log is synced
 * through the point (made durable by the next fdatasync). No header slot
 * is written between begin and end, so the fdatasync just done also made the
 * slot written before it durable. */
int wal_sync_end(struct wal *w, const struct wal_sync_point *p, int run_errno, char *err,
                 size_t errlen)
{
    if (run_errno != 0)
        return wal_fail(err, errlen, "cannot sync %s/log: %s", w->dir, strerror(run_errno));
    w->mark_pending = false;
    if (p->rename) {
        w->rename_pending = false; /* and the old file closed */
        w->old_fd = -1;
    }
    if (w->synced_end == p->end && w->synced_index == p->index)
        return 0;
    return write_mark(w, p->end, p->index, false, err, errlen);
}

int wal_unsynced(const struct wal *w)
{
    return w->synced_end != w->log_end || w->synced_index != w->base + w->n_records ||
           w->rename_pending;
}

/* After a failed write or sync nothing past the synced mark is trusted: a
 * failed fsync may have dropped the pages it could not write, and a later
 * one would then report success for data that is not there. Cut the file
 * back to the mark, so that a retry writes every unsynced record afresh and
 * no half-written record can be read back after it. */
int wal_reset_to_synced(struct wal *w, char *err, size_t errlen)
{
    w->log_gen++;
    if (wal_truncate_to(w->log_fd, w->synced_end) < 0)
        return wal_fail(err, errlen, "cannot truncate %s/log: %s", w->dir, strerror(errno));
    w->n_records = (size_t)(w->synced_index - w->base);
    w->log_end = w->synced_end;
    w->file_size = w->synced_end;
    return 0;
}

uint64_t wal_last_index(const struct wal *w)
{
    return w->base + w->n_records;
}

uint64_t wal_first_index(const struct wal *w)
{
    return w->base + 1;
}

void wal_snapshot(const struct wal *w, uint64_t *index, uint64_t *term)
{
    *index = w->snap_index;
    *term = w->snap_term;
}

static int snapshot_taken(struct wal *w, uint64_t index, uint64_t term, struct wal_compaction *job,
                          char *err, size_t errlen)
{
    if (index == w->snap_index && term == w->snap_term)
        return settle_log(w, index, term, job, err, errlen);
    if (index <= w->snap_index)
        return wal_fail(err, errlen,
                        "snapshot at index %" PRIu64 " is not past the newest in %s (%" PRIu64 ")",
                        index, w->dir, w->snap_index);
    w->snap_index = index;
    w->snap_term = term;
    return settle_log(w, index, term, job, err, errlen);
}

int wal_snapshot_taken(struct wal *w, uint64_t index, uint64_t term, char *err, size_t errlen)
{
    return snapshot_taken(w, index, term, NULL, err, errlen);
}

int wal_compact_begin(struct wal *w, uint64_t index, uint64_t term, struct wal_compaction *job,
                      char *err, size_t errlen)
{
    wal_compact_clear(job);
    return snapshot_taken(w, index, term, job, err, errlen);
}

int wal_install_snapshot(struct wal *w, uint64_t index, uint64_t term, char *err, size_t errlen)
{
    /* Asked again after a failure past the rename: fit the log again. */
    if (index == w->snap_index && term == w->snap_term)
        return settle_log(w, index, term, NULL, err, errlen);
    if (index <= w->snap_index)
        return wal_fail(err, errlen,
                        "cannot install a snapshot at index %" PRIu64
                        " in %s: it has one at %" PRIu64,
                        index, w->dir, w->snap_index);
    if (snapfile_recv_install(w->dir, index, term, err, errlen) < 0) {
        /* Renamed, but the dir sync failed: it is the newest snapshot all
         * the same (a retry goes on from here; wal_sync syncs the dir). */
        char path[PATH_MAX];
        if (snapfile_path(path, sizeof path, w->dir, index, term, NULL, 0) == 0 &&
            access(path, F_OK) == 0) {
            w->snap_index = index;
            w->snap_term = term;
            w->dir_unsynced = true;
        }
        return -1;
    }
    w->snap_index = index;
    w->snap_term = term;
    return settle_log(w, index, term, NULL, err, errlen);
}

int wal_remove_snapshots_below(struct wal *w, uint64_t index, char *err, size_t errlen)
{
    return snapfile_remove_below(w->dir, index < w->snap_index ? index : w->snap_index, err,
                                 errlen);
}

uint64_t wal_log_size(const struct wal *w)
{
    return w->log_end;
}

uint64_t wal_bytes_after_snapshot(const struct wal *w)
{
    if (w->snap_index <= w->base)
        return w->log_end - LOG_DATA_START;
    size_t k = (size_t)(w->snap_index - w->base);
    uint64_t from = k < w->n_records ? w->offsets[k] : w->log_end;
    return w->log_end - from;
}

void wal_close(struct wal *w)
{
    if (w == NULL)
        return;
    if (w->log_fd >= 0 && w->log_ready) {
        /* A clean close leaves no zeros after the last record, and the exact
         * mark. Nothing to report errors to: what fails here is recovered
         * from at the next open like a crash. A compacted log still waiting
         * for its rename goes in place first (or, failing, stays the old
         * log). */
        if (wal_compact_rename(w, NULL, 0) < 0) {
            /* the old log stays */
        }
        if (w->file_size > w->log_end && wal_truncate_to(w->log_fd, w->log_end) == 0)
            w->file_size = w->log_end;
        if (wal_sync_data(w->log_fd) == 0) {
            w->mark_pending = false;
            if (w->synced_end != w->log_end || w->synced_index != w->base + w->n_records)
                write_mark(w, w->log_end, w->base + w->n_records, true, NULL, 0);
        }
    }
    if (w->log_fd >= 0)
        close(w->log_fd);
    if (w->old_fd >= 0)
        close(w->old_fd);
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

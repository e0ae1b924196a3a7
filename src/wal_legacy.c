/* wal_legacy.c - the log as the first release wrote it, and its conversion.
 *
 * An old log has no header: records from offset 0, in the record format of
 * wal.c (magic "RKVL", length, crc, term, index, type, payload). A log is old
 * when the file is empty, starts with a record's magic, or has the header's
 * magic at neither slot (an old log whose first record is torn). Once DIR/meta
 * says the log has a header, such a file is damage instead (wal.c).
 *
 * It is read the old way: a bad record with no valid record anywhere after
 * it is a torn tail, otherwise damage. It is then converted: the records are
 * copied behind a header into log.tmp, which is fsynced and renamed over log,
 * and the dir fsynced (wal_write_new_log), so a crash leaves the old file or
 * the new one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wal_internal.h"

/* Whether the open log file is an old one: records from offset 0, no header.
 * It is when empty, when it starts with a record's magic, or when neither
 * header slot has the header's magic (an old log whose first record is torn). */
int wal_log_is_legacy(struct wal *w, const char *path, uint64_t size, bool *legacy, char *err,
                      size_t errlen)
{
    uint8_t head[HEADER_SLOT_STRIDE + 4];
    ssize_t got = wal_read_at(w->log_fd, head, sizeof head, 0);
    if (got < 0)
        return wal_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    uint32_t first = got >= 4 ? wal_get_u32(head) : 0;
    uint32_t second = got >= (ssize_t)sizeof head ? wal_get_u32(head + HEADER_SLOT_STRIDE) : 0;
    *legacy = size == 0 || first == LOG_MAGIC || (first != HEADER_MAGIC && second != HEADER_MAGIC);
    return 0;
}

/* Whether a whole record with a good checksum starts at off. -1: read error. */
static int record_valid_at(struct reader *r, uint64_t off, bool *valid)
{
    struct record rec;
    const uint8_t *payload;
    char reason[80];
    int k = wal_read_record(r, off, r->size, false, &rec, &payload, reason, sizeof reason);
    *valid = k == 1;
    return k < 0 ? -1 : 0;
}

/* Old logs only: whether a valid record starts anywhere after the bad one at
 * off. If none does, the bad record is a torn tail. -1: read error. */
static int legacy_valid_record_after(struct reader *r, uint64_t off, bool *found)
{
    *found = false;
    for (uint64_t at = off + 1; at + LOG_HEADER_SIZE <= r->size; at++) {
        const uint8_t *h = wal_reader_at(r, at, 4);
        if (h == NULL)
            return -1;
        if (wal_get_u32(h) != LOG_MAGIC)
            continue;
        if (record_valid_at(r, at, found) < 0)
            return -1;
        if (*found)
            return 0;
    }
    return 0;
}

/* Read an old log (records from offset 0, no header) the old way: a bad
 * record is a torn tail when no valid record starts anywhere after it, else
 * damage. *end: where the last good record ends. The file is left as it is. */
static int read_legacy_log(struct wal *w, const char *path, struct entry_list *l, uint64_t *end,
                           char *err, size_t errlen)
{
    struct stat st;
    if (fstat(w->log_fd, &st) < 0)
        return wal_fail(err, errlen, "cannot stat %s: %s", path, strerror(errno));
    struct reader r = {.fd = w->log_fd, .size = (uint64_t)st.st_size};
    uint64_t off = 0;
    struct record rec;
    const uint8_t *payload;
    char reason[96];

    while (off < r.size) {
        int k = wal_read_record(&r, off, r.size, false, &rec, &payload, reason, sizeof reason);
        if (k < 0)
            goto err_read;
        if (k == 1) {
            if (rec.index != l->n + 1) {
                wal_fail(err, errlen,
                         "%s: damaged at offset %" PRIu64 " (index %" PRIu64 ", expected %zu)",
                         path, off, rec.index, l->n + 1);
                goto err_free;
            }
            /* Terms never go down in a log, and the converted log is read
             * with that check (wal.c). Without it here fuzz_datadir found
             * such a log converted, and the next open stopped with
             * "DIR/log: damaged at offset 4128 (term 1 below the previous
             * record's term 2)": refused before converting, at its offset in
             * the old file. */
            if (l->n > 0 && rec.term < l->v[l->n - 1].term) {
                wal_fail(err, errlen,
                         "%s: damaged at offset %" PRIu64 " (term %" PRIu64
                         " below the previous record's term %" PRIu64 ")",
                         path, off, rec.term, l->v[l->n - 1].term);
                goto err_free;
            }
            if (wal_keep_record(w, l, &rec, payload, off) < 0)
                goto err_memory;
            off += LOG_HEADER_SIZE + (uint64_t)rec.len;
            continue;
        }
        if (r.size - off < LOG_HEADER_SIZE)
            break; /* torn: cut short inside a header */
        bool found;
        if (legacy_valid_record_after(&r, off, &found) < 0)
            goto err_read;
        if (found) {
            wal_fail(err, errlen, "%s: damaged at offset %" PRIu64 " (%s)", path, off, reason);
            goto err_free;
        }
        break;
    }
    free(r.buf);
    *end = off;
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

/* Read the old log at path, then put its records behind a header: the
 * offsets kept while reading move up by the header's size. */
int wal_convert_legacy_log(struct wal *w, const char *path, struct entry_list *l, char *err,
                           size_t errlen)
{
    uint64_t end = 0;
    if (read_legacy_log(w, path, l, &end, err, errlen) < 0)
        return -1;
    if (wal_write_new_log(w, w->log_fd, 0, end, 0, l->n, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < w->n_records; i++)
        w->offsets[i] += LOG_DATA_START;
    return 0;
}

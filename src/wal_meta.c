/* wal_meta.c - DIR/meta: the hard state (currentTerm and votedFor).
 *
 * All numbers are little-endian. Two 64-byte slots at offsets 0 and 64,
 * written in turn (slot seq % 2; a slot of the other parity is invalid) and
 * fsynced, so a torn write leaves the other slot intact; the valid one with
 * the newer sequence number wins, counted on past 2^64 - 1 to 0
 * (wal_seq_newer):
 *   magic u32 "RKVM" | version u32 (1) | seq u64 | term u64 | voted_for u32 |
 *   flags u32 | zeros | crc u32 (at 60, over bytes 0..59)
 * flags bit 0 (META_LOG_HEADER): DIR/log was created in (or converted to) the
 * format with a header (see wal.c), so a log that is missing or has no header
 * is damage, never an old log or a new node. Older metas have 0 there.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "wal_internal.h"

#define META_MAGIC 0x4d564b52u /* "RKVM" */
#define META_VERSION 1u
#define META_SLOT_SIZE 64
#define META_CRC_AT 60

static void meta_encode(uint8_t *slot, uint64_t seq, uint64_t term, uint32_t voted_for,
                        uint32_t flags)
{
    memset(slot, 0, META_SLOT_SIZE);
    wal_put_u32(slot, META_MAGIC);
    wal_put_u32(slot + 4, META_VERSION);
    wal_put_u64(slot + 8, seq);
    wal_put_u64(slot + 16, term);
    wal_put_u32(slot + 24, voted_for);
    wal_put_u32(slot + 28, flags);
    wal_put_u32(slot + META_CRC_AT, crc32c(0, slot, META_CRC_AT));
}

static bool meta_decode(const uint8_t *slot, uint64_t *seq, uint64_t *term, uint32_t *voted_for,
                        uint32_t *flags)
{
    if (wal_get_u32(slot) != META_MAGIC || wal_get_u32(slot + 4) != META_VERSION)
        return false;
    if (wal_get_u32(slot + META_CRC_AT) != crc32c(0, slot, META_CRC_AT))
        return false;
    *seq = wal_get_u64(slot + 8);
    *term = wal_get_u64(slot + 16);
    *voted_for = wal_get_u32(slot + 24);
    *flags = wal_get_u32(slot + 28);
    return true;
}

/* Create meta with term 0 and no vote: written to meta.tmp, synced, then
 * renamed, so a crash leaves either no meta or a whole one. */
static int create_meta(struct wal *w, const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (wal_make_path(tmp, sizeof tmp, w->dir, "meta.tmp", err, errlen) < 0)
        return -1;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return wal_fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    w->meta_fd = fd;

    uint8_t slots[2 * META_SLOT_SIZE] = {0};
    meta_encode(slots, 0, 0, RAFT_NONE, 0);
    if (wal_write_all_at(fd, slots, sizeof slots, 0) < 0 || wal_sync_data(fd) < 0)
        return wal_fail(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    if (wal_rename(tmp, path) < 0)
        return wal_fail(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
    if (wal_sync_dir(w->dir) < 0)
        return wal_fail(err, errlen, "cannot sync data dir %s: %s", w->dir, strerror(errno));
    w->meta_seq = 0;
    return 0;
}

/* Read the valid slot with the higher sequence number; a missing or empty
 * meta is created. */
int wal_open_meta(struct wal *w, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (wal_make_path(path, sizeof path, w->dir, "meta", err, errlen) < 0)
        return -1;
    w->term = 0;
    w->voted_for = RAFT_NONE;
    w->meta_flags = 0;

    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return wal_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
    if (fd < 0)
        return create_meta(w, path, err, errlen);
    w->meta_fd = fd;

    uint8_t slots[2 * META_SLOT_SIZE];
    ssize_t got = wal_read_at(fd, slots, sizeof slots, 0);
    if (got < 0)
        return wal_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    if (got == 0) {
        close(fd);
        w->meta_fd = -1;
        return create_meta(w, path, err, errlen);
    }

    bool found = false;
    for (int i = 0; i < 2; i++) {
        uint64_t seq, slot_term;
        uint32_t slot_vote, slot_flags;
        if (got < (i + 1) * META_SLOT_SIZE)
            break;
        if (!meta_decode(slots + i * META_SLOT_SIZE, &seq, &slot_term, &slot_vote, &slot_flags) ||
            seq % 2 != (uint64_t)i)
            continue;
        if (found && !wal_seq_newer(seq, w->meta_seq))
            continue;
        found = true;
        w->meta_seq = seq;
        w->term = slot_term;
        w->voted_for = slot_vote;
        w->meta_flags = slot_flags;
    }
    if (!found)
        return wal_fail(err, errlen, "%s: damaged at offset 0 (bad checksum)", path);
    return 0;
}

/* Write the next slot (seq % 2), the other one being durable, and sync it. */
int wal_write_meta(struct wal *w, uint64_t term, uint32_t voted_for, uint32_t flags, char *err,
                   size_t errlen)
{
    uint64_t seq = w->meta_seq + 1; /* after 2^64 - 1, 0: newer all the same */
    uint8_t slot[META_SLOT_SIZE];
    meta_encode(slot, seq, term, voted_for, flags);
    if (wal_write_all_at(w->meta_fd, slot, sizeof slot, (seq % 2) * META_SLOT_SIZE) < 0 ||
        wal_sync_data(w->meta_fd) < 0)
        return wal_fail(err, errlen, "cannot write %s/meta: %s", w->dir, strerror(errno));
    w->meta_seq = seq;
    w->term = term;
    w->voted_for = voted_for;
    w->meta_flags = flags;
    return 0;
}

int wal_save_hard_state(struct wal *w, uint64_t term, uint32_t voted_for, char *err, size_t errlen)
{
    return wal_write_meta(w, term, voted_for, w->meta_flags, err, errlen);
}

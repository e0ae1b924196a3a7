/* wal_internal.h - shared between the wal*.c files; not for callers.
 *
 *   wal_file.c    byte order, error text, file I/O helpers, the dir and its lock
 *   wal_meta.c    DIR/meta: the hard state (its layout is described there)
 *   wal.c         DIR/log: header and synced mark, records, recovery, the API
 *                 (the log's layout and rules are described there)
 *   wal_legacy.c  reading and converting a first-release log (no header)
 */
#ifndef RAFTKV_WAL_INTERNAL_H
#define RAFTKV_WAL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "raft.h"
#include "wal.h"

/* The log's layout, shared by wal.c and wal_legacy.c (see the top of wal.c). */
#define HEADER_MAGIC 0x48564b52u /* "RKVH" */
#define HEADER_VERSION 1u
#define HEADER_SLOT_SIZE 64
#define HEADER_SLOT_STRIDE 512 /* slot A at 0, slot B at 512: one sector each */
#define HEADER_CRC_AT 60
#define LOG_DATA_START 4096u /* the first record; the header has a page to itself */

#define LOG_MAGIC 0x4c564b52u /* "RKVL" */
#define LOG_HEADER_SIZE 29
#define LOG_MAX_PAYLOAD (64u * 1024u * 1024u)

#define META_LOG_HEADER 1u /* meta flags: the log has a header (see wal_meta.c) */

#define WAL_COMPACT_FILE "log.compact" /* a log without a dead prefix, being made */

struct wal {
    char *dir;
    int lock_fd;
    int meta_fd;
    int log_fd;
    uint64_t meta_seq; /* sequence number of the newest meta slot */
    uint64_t term;     /* the hard state as last saved */
    uint32_t voted_for;
    uint32_t meta_flags;
    uint64_t base;       /* the log holds entries base + 1 .. base + n_records */
    uint64_t snap_index; /* the newest snapshot in the dir (0: none) */
    uint64_t snap_term;
    uint64_t *offsets; /* offsets[i]: where the record with index base + 1 + i starts */
    size_t n_records;
    size_t offsets_cap;
    uint64_t log_end;    /* where the next record goes */
    uint64_t file_size;  /* the file's size: log_end, or more once zeros are written ahead */
    uint64_t header_seq; /* sequence number of the newest header slot */
    uint64_t synced_end; /* the mark in the newest header slot */
    uint64_t synced_index;
    bool mark_pending; /* a header slot was written since the last fdatasync */
    bool log_ready;    /* the log was read (or created) whole: wal_close may write it */
    bool dir_unsynced; /* the log was renamed into place but the dir sync failed */
    uint8_t *out;      /* wal_append's buffer, reused between calls */
    size_t out_cap;
    /* Bumped whenever records already written change otherwise than by
     * appending (truncated, reset, a new file): a compaction copied before
     * is stale (wal_compact.c). */
    uint64_t log_gen;
    /* A compacted log (WAL_COMPACT_FILE) is w's log file, to be renamed over
     * DIR/log by the next sync; old_fd is the old log's, closed then. */
    bool rename_pending;
    int old_fd;
};

/* Reads a file front to back through a buffer of about READ_CHUNK (wal.c) bytes. */
struct reader {
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t base; /* file offset of buf[0] */
    size_t len;    /* bytes in buf */
};

/* A record's header, decoded. */
struct record {
    uint32_t magic;
    uint32_t len;
    uint32_t crc;
    uint64_t term;
    uint64_t index;
    uint8_t type;
};

/* The entries read so far. */
struct entry_list {
    struct raft_entry *v;
    size_t n;
    size_t cap;
};

/* wal_file.c: helpers. Those returning int give 0, or -1 with errno set
 * (with err filled in where they take one). */
/* Put the formatted message in err (if any); returns -1. */
int wal_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Little-endian numbers, as every wal file stores them. */
void wal_put_u32(uint8_t *p, uint32_t v);
void wal_put_u64(uint8_t *p, uint64_t v);
uint32_t wal_get_u32(const uint8_t *p);
uint64_t wal_get_u64(const uint8_t *p);
/* The two-slot files (meta, the log's header): slot 0 holds the even
 * sequence numbers, slot 1 the odd ones, each written with the other's + 1;
 * whether the slot holding a is the newer of the two (see wal_file.c). */
bool wal_seq_newer(uint64_t a, uint64_t b);
/* Write all n bytes at off. */
int wal_write_all_at(int fd, const void *p, size_t n, uint64_t off);
/* Read up to n bytes at off, fewer only at end of file; the count or -1. */
ssize_t wal_read_at(int fd, void *p, size_t n, uint64_t off);
/* fdatasync, retried on EINTR. */
int wal_sync_data(int fd);
/* fsync (data and attributes), for a file about to be renamed into place. */
int wal_sync_all(int fd);
/* ftruncate, retried on EINTR. */
int wal_truncate_to(int fd, uint64_t size);
/* fsync a dir, so that names made in it survive a crash. */
int wal_sync_dir(const char *path);
/* rename(); made durable by wal_sync_dir. */
int wal_rename(const char *from, const char *to);
/* Tests only: called before every write, fdatasync, fsync, ftruncate,
 * rename and dir fsync of the wal*.c and snapshot_file.c code with the
 * operation's name ("write", "fsync", ...). Nonzero: the operation fails
 * with EIO; a test may also _exit() there to simulate a crash. NULL in a
 * node. */
extern int (*wal_fault_hook)(const char *op);
/* out = "dir/name", or an error if it does not fit. */
int wal_make_path(char *out, size_t outlen, const char *dir, const char *name, char *err,
                  size_t errlen);
/* Create DIR (and sync its parent) unless it is there. */
int wal_make_dir(const char *dir, char *err, size_t errlen);
/* flock DIR/LOCK and write our pid there; a second process is refused. */
int wal_take_lock(struct wal *w, char *err, size_t errlen);

/* wal_meta.c: the hard state. */
/* Read DIR/meta into w (term, vote, flags), creating it if missing or empty. */
int wal_open_meta(struct wal *w, char *err, size_t errlen);
/* Write the next meta slot and fdatasync it. */
int wal_write_meta(struct wal *w, uint64_t term, uint32_t voted_for, uint32_t flags, char *err,
                   size_t errlen);

/* wal.c: the log. */
/* The n bytes at off, read through r; NULL with errno set on a read error. */
const uint8_t *wal_reader_at(struct reader *r, uint64_t off, size_t n);
/* Whether a whole record with a good checksum lies at off, before end: 1, 0
 * (with the reason), or -1 on a read error. */
int wal_read_record(struct reader *r, uint64_t off, uint64_t end, bool synced, struct record *rec,
                    const uint8_t **payload, char *reason, size_t reasonlen);
/* Keep the record at off as the next entry of l and of w's offsets. -1: no memory. */
int wal_keep_record(struct wal *w, struct entry_list *l, const struct record *rec,
                    const uint8_t *payload, uint64_t off);
/* Put a log with a header (base: the index before its first record) and
 * the src_len bytes at src_off of src_fd (n_records records) in place of
 * DIR/log. */
int wal_write_new_log(struct wal *w, int src_fd, uint64_t src_off, uint64_t src_len, uint64_t base,
                      uint64_t n_records, char *err, size_t errlen);

/* wal_legacy.c: the first-release log. */
/* Whether the open DIR/log (size bytes) is a first-release log, with no header. */
int wal_log_is_legacy(struct wal *w, const char *path, uint64_t size, bool *legacy, char *err,
                      size_t errlen);
/* Read a first-release log into l and w's offsets, then convert it in place. */
int wal_convert_legacy_log(struct wal *w, const char *path, struct entry_list *l, char *err,
                           size_t errlen);

/* wal.c: a log file in fd (named path): a header with base marking
 * everything synced, then src_len bytes of records from src_fd at src_off,
 * holding n_records records; fsynced. */
int wal_write_log_file(int fd, const char *path, int src_fd, const char *src_path, uint64_t src_off,
                       uint64_t src_len, uint64_t base, uint64_t n_records, char *err,
                       size_t errlen);

/* wal_compact.c */
void wal_compact_clear(struct wal_compaction *job);
/* Fill job to drop the records before offset from (entries <= base), keeping
 * n_records records. */
int wal_compact_prepare(struct wal *w, uint64_t base, uint64_t from, size_t n_records,
                        struct wal_compaction *job, char *err, size_t errlen);
/* With rename_pending: sync the log file, rename it over DIR/log, sync the
 * dir, close the old file. 0 when nothing was pending. */
int wal_compact_rename(struct wal *w, char *err, size_t errlen);
/* The rename part, touching nothing but its arguments (for wal_sync_run): 0
 * or an errno value. */
int wal_compact_rename_run(const char *dir, int old_fd);

#endif

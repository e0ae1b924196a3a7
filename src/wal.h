/* wal.h - durable storage for one node's Raft state, in its data dir:
 *
 *   DIR/LOCK  held with flock() while a node runs: a second process is refused
 *   DIR/meta  currentTerm and votedFor: two checksummed slots written in turn,
 *             so a torn write leaves the other slot intact
 *   DIR/log   a 4096-byte header, then one checksummed record an entry,
 *             appended. The header holds the synced mark (two checksummed
 *             slots written in turn): where the log ended, and its last index,
 *             at a completed sync; and the log's base: the index before its
 *             first record (0 until a snapshot lets the log drop a prefix).
 *   DIR/snap-<index>-<term>  snapshots (snapshot_file.h); the newest one
 *             and the log together hold every committed entry.
 *
 * Nothing is durable until wal_sync() (or wal_save_hard_state(), which syncs
 * itself) returns 0. On wal_open, every record up to the synced mark must be
 * there and valid, else wal_open fails with a message naming the file and
 * byte offset ("DIR/log: damaged at offset N (reason)", "DIR/log: cut short
 * at N, below the synced end M"). Past the mark nothing was promised: records
 * are kept while they are valid and continue the log, and the rest is
 * dropped (a crash mid-write, whatever reached the disk). A log written
 * before the header existed (records from offset 0) is read as before and
 * converted on open.
 *
 * The code, each file with its byte layout and rules at the top:
 *   wal.c         the log: header and synced mark, records, recovery; the API
 *   wal_meta.c    the meta file
 *   wal_legacy.c  the first-release log and its conversion
 *   wal_file.c    file I/O helpers, the data dir and its lock
 *   snapshot_file.c  snapshot files
 *
 * Snapshots, what a node does (raft.h gives the order of a ready):
 *   - at start: wal_open; wal_snapshot gives the newest snapshot (index,
 *     term; 0, 0: none): load it (snapfile_load) into the state machine, then
 *     raft_restore(term, vote, index, term, entries, n).
 *   - taking one at applied index I (term T): snapfile_writer_open(dir, I,
 *     T), snapfile_writer_append the state in pieces, snapfile_writer_finish
 *     (durable), wal_snapshot_taken(w, I, T) (the log may drop entries <= I),
 *     then raft_compact(r, I).
 *   - sending one: snapfile_reader_open(dir, index, term) and
 *     snapfile_read_at the chunk's offset; done when offset + len reaches
 *     snapfile_reader_size.
 *   - receiving one: rd.snapshot_chunk -> snapfile_recv_chunk (step e);
 *     rd.snapshot_install -> wal_install_snapshot (step c), then load it
 *     into the state machine before applying.
 *   - now and then: wal_remove_snapshots_below(w, I) with the smallest
 *     index raft_snapshot_in_use still says yes to (or the newest's).
 */
#ifndef RAFTKV_WAL_H
#define RAFTKV_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

struct wal;

/* Create DIR if missing, take the lock, find the newest snapshot, read
 * everything back. On success *entries is a malloc'd array of *n entries
 * with index wal_first_index(w) .. wal_first_index(w) + n - 1 (1..n when
 * there is no snapshot), each with malloc'd data (the caller owns it:
 * raft_restore takes it). With a snapshot at S the log starts at or before
 * S + 1 (entries <= S are dead: raft_restore skips them). Snapshots older
 * than the newest are removed. */
int wal_open(const char *dir, struct wal **out, uint64_t *term, uint32_t *voted_for,
             struct raft_entry **entries, size_t *n, char *err, size_t errlen);
/* Write term and vote and fsync them. */
int wal_save_hard_state(struct wal *w, uint64_t term, uint32_t voted_for, char *err, size_t errlen);
/* Drop stored entries with index >= from (> the log's base); durable on
 * return (it syncs). */
int wal_truncate(struct wal *w, uint64_t from, char *err, size_t errlen);
/* Append entries (their indexes follow the last stored one; or the first is
 * the newest snapshot's index + 1 and the log ends before the snapshot: the
 * log then starts afresh after it). Not yet durable. */
int wal_append(struct wal *w, const struct raft_entry *entries, size_t n, char *err, size_t errlen);
/* Make every append so far durable (fdatasync), then record in the header
 * that the log is synced through here (made durable by the next sync). */
int wal_sync(struct wal *w, char *err, size_t errlen);
/* A sync in the background (a storage thread), in three steps:
 * wal_sync_begin notes what a sync started now covers (every append so
 * far); wal_sync_run does the fdatasync, touching nothing but the point, so
 * that another thread may run it while the caller goes on appending;
 * wal_sync_end records the result as wal_sync does (the synced mark).
 * Between begin and end the caller may use wal_append and the queries only
 * (no truncate, sync, snapshot, reset or close), and must not begin
 * another. */
struct wal_sync_point {
    int fd;
    uint64_t end;   /* log bytes the sync covers */
    uint64_t index; /* the last entry it covers */
    const char *dir;
    bool rename; /* then rename a compacted log into place (wal_compact_finish) */
    int old_fd;  /* ... and close the old log */
};
int wal_sync_begin(struct wal *w, struct wal_sync_point *p, char *err, size_t errlen);
int wal_sync_run(const struct wal_sync_point *p); /* 0, or an errno value */
int wal_sync_end(struct wal *w, const struct wal_sync_point *p, int run_errno, char *err,
                 size_t errlen);
/* Whether entries appended since the last completed sync wait for one. */
int wal_unsynced(const struct wal *w);
/* After a failed append, truncate or sync: forget every record past the
 * last completed sync (wal_last_index says where that is); they are written
 * again by the next wal_append. */
int wal_reset_to_synced(struct wal *w, char *err, size_t errlen);
/* The last stored entry's index: wal_first_index(w) - 1 when the log is empty. */
uint64_t wal_last_index(const struct wal *w);
/* The index of the first entry the log holds (or would hold): base + 1. */
uint64_t wal_first_index(const struct wal *w);
/* The newest snapshot in the dir: 0, 0 if none. */
void wal_snapshot(const struct wal *w, uint64_t *index, uint64_t *term);
/* This node wrote snapshot (index, term) durably (snapfile_writer_finish):
 * it is now the newest; the log drops the entries <= index if they take at
 * least as many bytes as those after (a rewrite, crash-safe), else keeps
 * them until a later snapshot. */
int wal_snapshot_taken(struct wal *w, uint64_t index, uint64_t term, char *err, size_t errlen);
/* The same without stopping the caller for the rewrite (a node's loop):
 *   wal_compact_begin(w, I, T, &job) does what wal_snapshot_taken does, but
 *     a rewrite is left to job (job.wanted); job.restart: the log does not
 *     hold I with term T, and must start afresh: call wal_snapshot_taken,
 *     with nothing in flight (it is the newest snapshot already).
 *   wal_compact_copy(&job), on any thread, touching nothing of w: writes the
 *     records kept, as they were at begin, behind a new header into
 *     DIR/log.compact, and fsyncs it.
 *   wal_compact_finish(w, &job), with no sync in flight: copies the records
 *     appended since begin and makes log.compact w's log file; the next sync
 *     (wal_sync, or wal_sync_begin/run/end: wal_unsynced says one is due)
 *     renames it over DIR/log, syncs the dir and closes the old file. Until
 *     that rename DIR/log is the old log, which holds every record synced so
 *     far. A copy that failed, or made before the log changed otherwise than
 *     by appends (a truncation, a reset, a new file), is dropped: the log
 *     stays as it was. Returns 0 (job freed), or -1 with err (job freed,
 *     the log as it was).
 *   wal_compact_abandon(&job): drop it (any thread).
 * A crash at any point leaves DIR/log whole; wal_open removes log.compact. */
struct wal_compaction {
    bool wanted;  /* a copy to make */
    bool restart; /* see above */
    const char *dir;
    int src_fd; /* the log as it was (its own descriptor) */
    uint64_t from, len, base, n_records, gen;
    int fd;         /* the new file */
    int copy_errno; /* wal_compact_copy: 0, or why it failed */
    char copy_err[256];
};
int wal_compact_begin(struct wal *w, uint64_t index, uint64_t term, struct wal_compaction *job,
                      char *err, size_t errlen);
int wal_compact_copy(struct wal_compaction *job);
int wal_compact_finish(struct wal *w, struct wal_compaction *job, char *err, size_t errlen);
void wal_compact_abandon(struct wal_compaction *job);
/* rd.snapshot_install: the received DIR/snapshot-recv.tmp (complete and
 * synced) is verified and becomes snapshot (index, term), durably; then the
 * log is fitted to it: if it holds index with that term it goes on (the
 * prefix dropped as above), else it starts afresh, empty, after index.
 * Asked again for the same snapshot (the ready is retried after a failure),
 * it only fits the log. */
int wal_install_snapshot(struct wal *w, uint64_t index, uint64_t term, char *err, size_t errlen);
/* Remove the snapshots with an index below index (never the newest). */
int wal_remove_snapshots_below(struct wal *w, uint64_t index, char *err, size_t errlen);
/* Where the next record goes in DIR/log: the header and the records. The
 * file itself may be longer while the node runs: it is extended with zeros
 * ahead of the records, and cut back on a clean wal_close (or when opened
 * after a crash). */
uint64_t wal_log_size(const struct wal *w);
/* Bytes of log records past the newest snapshot (what a new one would drop). */
uint64_t wal_bytes_after_snapshot(const struct wal *w);
/* Sync, cut off the zeros ahead, record the exact synced mark, release. */
void wal_close(struct wal *w);

#endif

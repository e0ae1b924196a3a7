/* wal.h - durable storage for one node's Raft state, in its data dir:
 *
 *   DIR/LOCK  held with flock() while a node runs: a second process is refused
 *   DIR/meta  currentTerm and votedFor: two checksummed slots written in turn,
 *             so a torn write leaves the other slot intact
 *   DIR/log   a 4096-byte header, then one checksummed record an entry,
 *             appended. The header holds the synced mark (two checksummed
 *             slots written in turn): where the log ended, and its last index,
 *             at a completed sync.
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
 */
#ifndef RAFTKV_WAL_H
#define RAFTKV_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

struct wal;

/* Create DIR if missing, take the lock, read everything back.
 * On success *entries is a malloc'd array of *n entries with index 1..n, each
 * with malloc'd data (the caller owns it: raft_restore takes it). */
int wal_open(const char *dir, struct wal **out, uint64_t *term, uint32_t *voted_for,
             struct raft_entry **entries, size_t *n, char *err, size_t errlen);
/* Write term and vote and fsync them. */
int wal_save_hard_state(struct wal *w, uint64_t term, uint32_t voted_for, char *err, size_t errlen);
/* Drop stored entries with index >= from; durable on return (it syncs). */
int wal_truncate(struct wal *w, uint64_t from, char *err, size_t errlen);
/* Append entries (their indexes follow the last stored one). Not yet durable. */
int wal_append(struct wal *w, const struct raft_entry *entries, size_t n, char *err, size_t errlen);
/* Make every append so far durable (fdatasync), then record in the header
 * that the log is synced through here (made durable by the next sync). */
int wal_sync(struct wal *w, char *err, size_t errlen);
/* After a failed append, truncate or sync: forget every record past the
 * last completed sync (wal_last_index says where that is); they are written
 * again by the next wal_append. */
int wal_reset_to_synced(struct wal *w, char *err, size_t errlen);
uint64_t wal_last_index(const struct wal *w);
/* Where the next record goes in DIR/log: the header and the records. The
 * file itself may be longer while the node runs: it is extended with zeros
 * ahead of the records, and cut back on a clean wal_close (or when opened
 * after a crash). */
uint64_t wal_log_size(const struct wal *w);
/* Sync, cut off the zeros ahead, record the exact synced mark, release. */
void wal_close(struct wal *w);

#endif

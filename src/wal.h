/* wal.h - durable storage for one node's Raft state, in its data dir:
 *
 *   DIR/LOCK  held with flock() while a node runs: a second process is refused
 *   DIR/meta  currentTerm and votedFor: two checksummed slots written in turn,
 *             so a torn write leaves the other slot intact
 *   DIR/log   the log: one checksummed record an entry, appended
 *
 * A torn last record (a crash mid-write) is detected by its checksum or short
 * length and dropped; damage anywhere else makes wal_open fail with a message
 * naming the file and byte offset. Nothing is durable until wal_sync() (or
 * wal_save_hard_state(), which syncs itself) returns 0.
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
/* Drop stored entries with index >= from. */
int wal_truncate(struct wal *w, uint64_t from, char *err, size_t errlen);
/* Append entries (their indexes follow the last stored one). Not yet durable. */
int wal_append(struct wal *w, const struct raft_entry *entries, size_t n, char *err, size_t errlen);
/* Make every append and truncate so far durable (fdatasync). */
int wal_sync(struct wal *w, char *err, size_t errlen);
uint64_t wal_last_index(const struct wal *w);
/* Bytes of records in DIR/log. The file itself may be longer while the node
 * runs: it is extended with zeros ahead of the records, and cut back to the
 * records on a clean wal_close (or when opened after a crash). */
uint64_t wal_log_size(const struct wal *w);
void wal_close(struct wal *w);

#endif

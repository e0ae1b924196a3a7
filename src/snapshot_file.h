/* snapshot_file.h - snapshot files in a node's data dir (snapfile_*).
 *
 *   DIR/snap-<index>-<term>  a snapshot: the state machine as of entry
 *                            <index> (of term <term>), 20 decimal digits
 *                            each; a checksummed header, then the payload
 *   DIR/snapshot.tmp         one being written by this node (snapfile_writer)
 *   DIR/snapshot-recv.tmp    one being received from a leader
 *
 * The payload is opaque bytes (the caller's state machine). A snapshot
 * appears whole or not at all: it is written to a temporary file, fsynced,
 * renamed to its name and the dir fsynced. The byte layout is at the top of
 * snapshot_file.c.
 *
 * What the leader sends (RAFT_MSG_SNAPSHOT chunks) are the bytes of the
 * whole file, header included (snapfile_reader); the follower writes them
 * at their offsets into DIR/snapshot-recv.tmp (snapfile_recv_chunk) and,
 * once installed (wal_install_snapshot, which calls snapfile_recv_install),
 * the file checks out exactly like one it wrote itself.
 *
 * Opening the data dir (wal_open, through snapfile_open_dir) removes the
 * temporary files (a crash mid-write or mid-transfer: the core forgets an
 * unfinished transfer) and verifies the newest snapshot, by index. A damaged
 * newest snapshot stops the node ("DIR/snap-...: damaged at offset N
 * (reason)"): an older intact one is NOT used instead, because the log may
 * already have been cut to start after the newest, and the entries between
 * the two would be silently lost. Older snapshots are removed by
 * wal_remove_snapshots_below once no transfer uses them.
 *
 * Functions returning int give 0, or -1 with a message naming the file (and
 * byte offset, for damage) in err.
 */
#ifndef RAFTKV_SNAPSHOT_FILE_H
#define RAFTKV_SNAPSHOT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAPFILE_HEADER_SIZE 64u

/* ---- writing this node's snapshot: open, append the payload in order, finish */
struct snapfile_writer;
/* Start DIR/snapshot.tmp (replacing a leftover one) for the state as of
 * index, term (both > 0). */
int snapfile_writer_open(const char *dir, uint64_t index, uint64_t term,
                         struct snapfile_writer **out, char *err, size_t errlen);
/* The next len bytes of the payload. */
int snapfile_writer_append(struct snapfile_writer *sw, const void *data, size_t len, char *err,
                           size_t errlen);
/* Write the header, fsync, rename to DIR/snap-<index>-<term>, fsync the dir:
 * the snapshot is durable on return. Frees sw, also on failure (the
 * temporary file is then removed). Then call wal_snapshot_taken. */
int snapfile_writer_finish(struct snapfile_writer *sw, char *err, size_t errlen);
/* Give up: close and remove the temporary file; frees sw. */
void snapfile_writer_abort(struct snapfile_writer *sw);

/* ---- receiving one (follower): rd.snapshot_chunk, then rd.snapshot_install */
/* Write len bytes of the leader's file at offset into DIR/snapshot-recv.tmp:
 * offset 0 starts it afresh; an offset past what the file holds is refused;
 * anything after offset + len is cut off. done: the file is complete; it is
 * fsynced. */
int snapfile_recv_chunk(const char *dir, uint64_t offset, const void *data, size_t len, bool done,
                        char *err, size_t errlen);
/* Verify DIR/snapshot-recv.tmp as a snapshot of index, term, rename it to
 * DIR/snap-<index>-<term> and fsync the dir. wal_install_snapshot calls it. */
int snapfile_recv_install(const char *dir, uint64_t index, uint64_t term, char *err, size_t errlen);

/* ---- reading the file's bytes (leader: the chunks it sends) */
struct snapfile_reader;
int snapfile_reader_open(const char *dir, uint64_t index, uint64_t term,
                         struct snapfile_reader **out, char *err, size_t errlen);
/* The file's size: a transfer is done when offset + len reaches it. */
uint64_t snapfile_reader_size(const struct snapfile_reader *r);
/* Up to cap bytes at offset into buf; *got is 0 at or past the end. */
int snapfile_read_at(struct snapfile_reader *r, uint64_t offset, void *buf, size_t cap, size_t *got,
                     char *err, size_t errlen);
void snapfile_reader_close(struct snapfile_reader *r);

/* ---- loading the payload (restoring the state machine) */
/* Verify DIR/snap-<index>-<term> and return its payload (malloc'd). */
int snapfile_load(const char *dir, uint64_t index, uint64_t term, uint8_t **payload, uint64_t *len,
                  char *err, size_t errlen);
/* The same, handing the payload to fn in pieces; the checksum is known only
 * at the end, so on failure the caller must throw away what fn built. fn
 * returns 0, or -1 to stop (the load then fails with "stopped"). */
int snapfile_load_stream(const char *dir, uint64_t index, uint64_t term,
                         int (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx, char *err,
                         size_t errlen);

/* ---- the dir */
/* Remove the temporary files; find the newest snapshot by index (then term)
 * and verify it whole. *index = *term = 0: none. Damage: -1, naming the file
 * and offset. Older snapshots are left alone. */
int snapfile_open_dir(const char *dir, uint64_t *index, uint64_t *term, char *err, size_t errlen);
/* Remove every snapshot with an index below index (not made durable: an old
 * snapshot left by a crash is only removed again). */
int snapfile_remove_below(const char *dir, uint64_t index, char *err, size_t errlen);
/* "DIR/snap-<index>-<term>", or -1 if it does not fit. */
int snapfile_path(char *out, size_t outlen, const char *dir, uint64_t index, uint64_t term,
                  char *err, size_t errlen);

#endif

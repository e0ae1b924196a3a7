/* snapshot.c - log compaction and InstallSnapshot in the node (Raft paper,
 * section 7 and Figure 13). The issue:
 *
 *   "A node snapshots its state machine by itself ... Triggered when the log
 *   since the last snapshot passes a threshold ... Taking a snapshot must
 *   not stall the node: clients and heartbeats keep being served while it is
 *   written ... A snapshot is written durably and atomically ... only then
 *   are the entries it covers dropped ... A follower whose next entry the
 *   leader no longer has gets the snapshot by InstallSnapshot (Figure 13):
 *   sent in chunks over nanomsg ... A restart loads the newest snapshot and
 *   replays only the log after it."
 *
 * Taking one: the store's copy-on-write view written by a helper thread
 * (snapshot_writer.c) into snapfile_writer (durable and atomic: temporary
 * file, fsync, rename, fsync of the dir), while the loop goes on serving
 * clients and peers; every loop turn it looks whether the thread is done.
 * When it succeeded the loop, in this order, records it (wal_snapshot_taken:
 * the log may drop the entries it covers), tells the core (raft_compact) and
 * has the storage thread remove older snapshot files no transfer uses
 * (raft_snapshot_in_use).
 *
 * Sending one (leader): each RAFT_MSG_SNAPSHOT gets up to SNAPSHOT_CHUNK
 * bytes of the file at the core's offset (snapfile_read_at); done when they
 * reach the end. Receiving one (follower): rd.snapshot_chunk goes into the
 * temporary file (snapfile_recv_chunk), rd.snapshot_install makes it the
 * node's snapshot (wal_install_snapshot) and then the store is loaded from
 * it before anything after it is applied.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node.h"

#define SNAPSHOT_CHUNK (1024u * 1024u) /* bytes of the file in one message */
#define SNAPSHOT_RETRY_MS 1000         /* after a failure, wait before the next */

/* ------------------------------------------------------------ the files on disk */

static int snapshot_keep(struct node *n, uint64_t index)
{
    for (size_t i = 0; i < n->n_snap_kept; i++)
        if (n->snap_kept[i] == index)
            return 0;
    if (n->n_snap_kept == n->cap_snap_kept) {
        size_t cap = n->cap_snap_kept ? n->cap_snap_kept * 2 : 8;
        uint64_t *p = realloc(n->snap_kept, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        n->snap_kept = p;
        n->cap_snap_kept = cap;
    }
    n->snap_kept[n->n_snap_kept++] = index;
    return 0;
}

/* Remove the snapshot files below the oldest one still in use: the core's,
 * or one a leader is still sending (raft.h: "the caller keeps an older
 * snapshot file while raft_snapshot_in_use says so, and may delete it
 * after"). */
static void snapshot_remove_unused(struct node *n)
{
    if (n->n_snap_kept < 2)
        return;
    uint64_t oldest_used = n->raft.log.snapshot_index;
    for (size_t i = 0; i < n->n_snap_kept; i++)
        if (n->snap_kept[i] < oldest_used && raft_snapshot_in_use(&n->raft, n->snap_kept[i]))
            oldest_used = n->snap_kept[i];
    bool any_below = false;
    for (size_t i = 0; i < n->n_snap_kept; i++)
        any_below |= n->snap_kept[i] < oldest_used;
    if (!any_below)
        return;
    /* Never the newest snapshot, which oldest_used cannot pass. */
    uint64_t newest_index, newest_term;
    wal_snapshot(n->wal, &newest_index, &newest_term);
    storage_remove_snapshots_below(n, oldest_used < newest_index ? oldest_used : newest_index);
    size_t kept = 0;
    for (size_t i = 0; i < n->n_snap_kept; i++)
        if (n->snap_kept[i] >= oldest_used)
            n->snap_kept[kept++] = n->snap_kept[i];
    n->n_snap_kept = kept;
    if (n->snap_reader != NULL && n->reader_index < oldest_used) {
        snapfile_reader_close(n->snap_reader);
        n->snap_reader = NULL;
    }
}

/* ------------------------------------------------------------ start */

/* The payload: "RKCF", the configuration's length (4 bytes, little-endian)
 * and the configuration as of the snapshot's index (raft_members_encode),
 * then the store (kv_snapshot_write). A payload without the prefix (written
 * before membership changes) holds the store only: the cluster file's
 * configuration stands for it. */
#define SNAPSHOT_MEMBERS_MAGIC "RKCF"

static int snapshot_split(const uint8_t *payload, uint64_t len, struct raft_members *members,
                          bool *has_members, uint64_t *kv_at)
{
    *has_members = false;
    *kv_at = 0;
    if (len < 8 || memcmp(payload, SNAPSHOT_MEMBERS_MAGIC, 4) != 0)
        return 0;
    uint32_t mlen = (uint32_t)payload[4] | (uint32_t)payload[5] << 8 | (uint32_t)payload[6] << 16 |
                    (uint32_t)payload[7] << 24;
    if (mlen > len - 8 || raft_members_decode(payload + 8, mlen, members) != 0)
        return -1;
    *has_members = true;
    *kv_at = 8 + (uint64_t)mlen;
    return 0;
}

/* Load DIR/snap-<index>-<term> into a new store and its configuration. */
static int snapshot_load_kv(struct node *n, uint64_t index, uint64_t term, struct kv **out,
                            struct raft_members *members, bool *has_members, char *err,
                            size_t errlen)
{
    uint8_t *payload = NULL;
    uint64_t len = 0;
    if (snapfile_load(n->opt.data_dir, index, term, &payload, &len, err, errlen) != 0)
        return -1;
    char why[256];
    uint64_t kv_at;
    if (snapshot_split(payload, len, members, has_members, &kv_at) != 0) {
        free(payload);
        snprintf(err, errlen, "%s/snap-%" PRIu64 "-%" PRIu64 ": damaged configuration",
                 n->opt.data_dir, index, term);
        return -1;
    }
    /* An empty payload comes back as NULL, and NULL + 0 is undefined in C. */
    const uint8_t *store = payload != NULL ? payload + kv_at : NULL;
    int rc = kv_snapshot_load(store, (size_t)(len - kv_at), out, why, sizeof(why));
    free(payload);
    if (rc != KV_SNAPSHOT_OK) {
        snprintf(err, errlen, "%s/snap-%" PRIu64 "-%" PRIu64 ": %s", n->opt.data_dir, index, term,
                 rc == KV_SNAPSHOT_NOMEM ? "out of memory" : why);
        return -1;
    }
    return 0;
}

int snapshot_load_newest(struct node *n, uint64_t *index, uint64_t *term, char *err, size_t errlen)
{
    wal_snapshot(n->wal, index, term);
    if (*index == 0) {
        n->kv = kv_new();
        if (n->kv == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    if (snapshot_load_kv(n, *index, *term, &n->kv, &n->loaded_members, &n->has_loaded_members, err,
                         errlen) != 0)
        return -1;
    if (snapshot_keep(n, *index) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ taking one */

/* ------------------------------------------------------------ in words */

/* 1234567 -> "1,234,567": counts in events a person reads. */
static const char *with_commas(uint64_t v, char *out, size_t len)
{
    char digits[24];
    int nd = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t k = 0;
    for (int i = 0; i < nd && k + 2 < len; i++) {
        if (i > 0 && (nd - i) % 3 == 0)
            out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = '\0';
    return out;
}

/* Bytes as "812 B", "48 KiB", "3.2 MiB". */
static const char *in_kib(uint64_t bytes, char *out, size_t len)
{
    if (bytes < 1024)
        snprintf(out, len, "%" PRIu64 " B", bytes);
    else if (bytes < 1024 * 1024)
        snprintf(out, len, "%" PRIu64 " KiB", (bytes + 512) / 1024);
    else
        snprintf(out, len, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return out;
}

static uint64_t chunks_for(uint64_t bytes)
{
    return bytes == 0 ? 1 : (bytes + SNAPSHOT_CHUNK - 1) / SNAPSHOT_CHUNK;
}

/* The size of DIR/snap-<index>-<term>; 0 if it cannot be read. */
static uint64_t snapshot_file_size(const struct node *n, uint64_t index, uint64_t term)
{
    char path[PATH_MAX];
    struct stat st;
    if (snapfile_path(path, sizeof path, n->opt.data_dir, index, term, NULL, 0) != 0 ||
        stat(path, &st) != 0)
        return 0;
    return (uint64_t)st.st_size;
}

void snapshot_send_progress(const struct node *n, const struct raft_progress *pr, uint32_t *chunk,
                            uint32_t *chunks)
{
    uint64_t size = n->snap_reader != NULL && n->reader_index == pr->snapshot_index
                        ? snapfile_reader_size(n->snap_reader)
                        : snapshot_file_size(n, pr->snapshot_index, pr->snapshot_term);
    uint64_t total = chunks_for(size);
    uint64_t at = pr->snapshot_offset / SNAPSHOT_CHUNK + 1;
    *chunks = (uint32_t)(total < UINT32_MAX ? total : UINT32_MAX);
    *chunk = (uint32_t)(at < *chunks ? at : *chunks);
}

/* ------------------------------------------------------------ taking one */

/* The payload's head: "RKCF", the configuration's length and the
 * configuration as of index (see snapshot_split). NULL when it cannot be
 * made. */
static uint8_t *snapshot_head(struct node *n, uint64_t index, size_t *len)
{
    struct raft_members members;
    uint8_t *blob = NULL;
    uint32_t blob_len = 0;
    if (raft_members_at(&n->raft, index, &members) != RAFT_OK ||
        raft_members_encode(&members, &blob, &blob_len) != 0)
        return NULL;
    uint8_t *head = malloc(8 + (size_t)blob_len);
    if (head != NULL) {
        memcpy(head, SNAPSHOT_MEMBERS_MAGIC, 4);
        for (int i = 0; i < 4; i++)
            head[4 + i] = (uint8_t)(blob_len >> (8 * i));
        memcpy(head + 8, blob, blob_len);
        *len = 8 + (size_t)blob_len;
    }
    free(blob);
    return head;
}

/* Start writing the state as of the last applied index. */
static void snapshot_start(struct node *n)
{
    struct raft *r = &n->raft;
    uint64_t index = r->last_applied, term = raft_term_at(r, index);
    char err[512];
    size_t head_len = 0;
    uint8_t *head = snapshot_head(n, index, &head_len);
    if (head == NULL) {
        snprintf(err, sizeof err, "no configuration at #%" PRIu64 " (or out of memory)", index);
    } else if (snapshot_writer_start(n, index, term, head, head_len, &n->snap_writer, err,
                                     sizeof err) == 0) {
        n->snap_index = index;
        n->snap_term = term;
        n->snap_started_ms = clock_monotonic_ms();
        n->snap_keys = kv_count(n->kv);
        if (n->snap_slot != NULL)
            n->snap_slot_bound = true;
        return;
    }
    node_event(n, "cannot start a snapshot: %s", err);
    n->snap_retry_ms = clock_monotonic_ms() + SNAPSHOT_RETRY_MS;
}

static void snapshot_answer(struct node *n, const char *error)
{
    struct reply_slot *slot = n->snap_slot;
    if (slot == NULL || !n->snap_slot_bound)
        return;
    n->snap_slot = NULL;
    n->snap_slot_bound = false;
    if (error == NULL)
        resp_write_simple(&slot->data, "OK");
    else
        resp_write_error(&slot->data, error);
    client_slot_done(n, slot);
}

/* The child wrote snap-<index>-<term> durably: the log may drop what it
 * covers, then the core forgets it. Returns 0, or -1 with err. */
static int snapshot_taken(struct node *n, char *err, size_t errlen)
{
    uint64_t index = n->snap_index, term = n->snap_term;
    if (snapshot_keep(n, index) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    uint64_t newest_index, newest_term;
    wal_snapshot(n->wal, &newest_index, &newest_term);
    if (index <= newest_index) {
        /* A snapshot from the leader got past it meanwhile: this one is
         * older and goes with the next clean-up. */
        return 0;
    }
    /* The log drops what the snapshot covers: copied by a helper thread
     * while the loop goes on (log_compaction.c), or, when it does not hold
     * the snapshot's last entry, started afresh here with nothing in flight. */
    struct wal_compaction job;
    if (wal_compact_begin(n->wal, index, term, &job, err, errlen) != 0)
        return -1;
    if (job.restart && (storage_drain(n, true, err, errlen) != 0 ||
                        wal_snapshot_taken(n->wal, index, term, err, errlen) != 0))
        return -1;
    if (job.wanted && log_compaction_running(n))
        wal_compact_abandon(&job); /* one at a time: the next snapshot drops it */
    else if (job.wanted && log_compaction_start(n, &job, err, errlen) != 0)
        node_event(n, "could not drop the log before the snapshot (%s): it stays until the next",
                   err);
    int compacted = raft_compact_with(&n->raft, index, storage_free_later, n);
    storage_free_handover(n);
    if (compacted != RAFT_OK) {
        snprintf(err, errlen, "the core refused to compact up to %" PRIu64, index);
        return -1;
    }
    n->snapshots_taken++;
    char keys[32], size[32];
    node_event(n,
               "took a snapshot up to #%" PRIu64 " (%s keys, %s) in %" PRIu64 " ms; term %" PRIu64,
               index, with_commas(n->snap_keys, keys, sizeof keys),
               in_kib(snapshot_file_size(n, index, term), size, sizeof size),
               clock_monotonic_ms() - n->snap_started_ms, term);
    return 0;
}

static void snapshot_reap(struct node *n)
{
    if (!snapshot_writer_done(n->snap_writer))
        return;
    char err[512];
    const char *failed = NULL;
    int rc = snapshot_writer_finish(n->snap_writer, err, sizeof err);
    n->snap_writer = NULL;
    if (rc != 0 || snapshot_taken(n, err, sizeof(err)) != 0)
        failed = err;
    if (failed != NULL) {
        node_event(n, "snapshot at index %" PRIu64 " failed: %s", n->snap_index, failed);
        n->snap_retry_ms = clock_monotonic_ms() + SNAPSHOT_RETRY_MS;
        char msg[600];
        snprintf(msg, sizeof(msg), "ERR snapshot failed: %s", failed);
        snapshot_answer(n, msg);
    } else {
        snapshot_answer(n, NULL);
    }
    n->status_dirty = true;
}

/* Whether there is anything applied past the last snapshot. */
static bool snapshot_has_news(const struct node *n)
{
    uint64_t newest_index, newest_term;
    wal_snapshot(n->wal, &newest_index, &newest_term);
    return n->raft.last_applied > newest_index && n->raft.last_applied > n->raft.log.snapshot_index;
}

/* The index at which this node takes its next snapshot by itself
 * (--snapshot-entries N; 0: none). The nodes of a cluster take theirs at
 * different indexes: node i at the multiples of N shifted by (i - 1) / n of
 * N, n the nodes of the cluster file (3 nodes, N = 100,000: node 1 at
 * 100,000, 200,000 ...; node 2 at 133,333, 233,333 ...; node 3 at 166,666
 * ...). Counted from each one's last snapshot, as they were, all of them
 * took one at the same index, so at the same moment: every node writing a
 * whole state at once, the writes acknowledged meanwhile waited for the
 * slowest fdatasync of the three (bench/RESULTS.md: SET's p99 at 50
 * clients on one machine was lower staggered in 14 of 18 pairs of runs).
 * Staggered, while one node writes its snapshot the others, a majority,
 * go on undisturbed (when writing one takes less time than N / n entries).
 * The next one is the first such index at least N / 2 past the snapshot
 * the node has, so that one installed from the leader (taken at the
 * leader's index) is not followed at once by one of its own. */
uint64_t snapshot_next_due(const struct node *n)
{
    uint64_t every = n->opt.snapshot_entries;
    if (every == 0)
        return 0;
    uint64_t nodes = n->cluster.n > 0 ? n->cluster.n : 1;
    uint64_t shift = every / nodes * ((n->opt.id - 1) % nodes);
    uint64_t half = every / 2 > 0 ? every / 2 : 1;
    uint64_t earliest = n->raft.log.snapshot_index + half;
    /* The smallest k * every + shift >= earliest, k at least 1. */
    uint64_t k = earliest > shift ? (earliest - shift + every - 1) / every : 1;
    return k * every + shift;
}

/* Whether the log has grown past a threshold: the index of
 * snapshot_next_due applied, or --snapshot-bytes of log records on disk
 * past the last snapshot. */
static bool snapshot_due(const struct node *n)
{
    const struct raft *r = &n->raft;
    uint64_t due = snapshot_next_due(n);
    if (due > 0 && r->last_applied >= due)
        return true;
    uint64_t max_bytes = n->opt.snapshot_bytes;
    return max_bytes > 0 && wal_bytes_after_snapshot(n->wal) >= max_bytes;
}

void snapshot_tick(struct node *n)
{
    if (n->snap_writer != NULL)
        snapshot_reap(n);
    snapshot_remove_unused(n);
    if (n->snap_writer != NULL || n->disk_error)
        return;
    if (n->snap_slot != NULL) {
        if (!snapshot_has_news(n)) {
            n->snap_slot_bound = true;
            snapshot_answer(n, NULL); /* the newest snapshot already holds it all */
            return;
        }
        snapshot_start(n);
        return;
    }
    if (snapshot_due(n) && snapshot_has_news(n) && clock_monotonic_ms() >= n->snap_retry_ms)
        snapshot_start(n);
}

void snapshot_request(struct node *n, struct reply_slot *slot)
{
    if (n->snap_slot != NULL) {
        resp_write_error(&slot->data, "ERR a RAFT.SNAPSHOT is already in progress");
        client_slot_done(n, slot);
        return;
    }
    n->snap_slot = slot;
    n->snap_slot_bound = false; /* a running child may predate the request */
    snapshot_tick(n);
}

/* ------------------------------------------------------------ sending one */

int snapshot_attach_chunk(struct node *n, struct raft_msg *m)
{
    char err[512];
    if (n->snap_reader != NULL &&
        (n->reader_index != m->snapshot_index || n->reader_term != m->snapshot_term)) {
        snapfile_reader_close(n->snap_reader);
        n->snap_reader = NULL;
    }
    if (n->snap_reader == NULL) {
        if (snapfile_reader_open(n->opt.data_dir, m->snapshot_index, m->snapshot_term,
                                 &n->snap_reader, err, sizeof(err)) != 0) {
            node_event(n, "cannot send snapshot %" PRIu64 ": %s", m->snapshot_index, err);
            return -1;
        }
        n->reader_index = m->snapshot_index;
        n->reader_term = m->snapshot_term;
    }
    if (n->snap_chunk == NULL) {
        n->snap_chunk = malloc(SNAPSHOT_CHUNK);
        if (n->snap_chunk == NULL)
            return -1;
    }
    size_t got = 0;
    if (snapfile_read_at(n->snap_reader, m->offset, n->snap_chunk, SNAPSHOT_CHUNK, &got, err,
                         sizeof(err)) != 0) {
        node_event(n, "cannot send snapshot %" PRIu64 ": %s", m->snapshot_index, err);
        return -1;
    }
    m->data = n->snap_chunk;
    m->len = (uint32_t)got;
    m->done = m->offset + got >= snapfile_reader_size(n->snap_reader);
    return 0;
}

void snapshot_note_delivered(struct node *n, const struct raft_msg *m)
{
    /* Every peer message passes here: the type is looked at first. */
    if (m->type != RAFT_MSG_SNAPSHOT_REPLY || !m->success)
        return;
    int slot = raft_node_slot(&n->raft, m->from);
    if (slot < 0 || n->raft.role != RAFT_LEADER || m->term != n->raft.current_term ||
        n->snap_announced[slot] == m->snapshot_index)
        return;
    /* Told once per transfer, when the follower says it has it all (a
     * transfer begun while it was down is told when it is back). */
    n->snap_announced[slot] = m->snapshot_index;
    n->snapshots_sent++;
    if (n->snap_reader == NULL || n->reader_index != m->snapshot_index) {
        node_event(n, "sent node %u a snapshot (#%" PRIu64 ")", m->from, m->snapshot_index);
        return;
    }
    uint64_t bytes = snapfile_reader_size(n->snap_reader), chunks = chunks_for(bytes);
    char size[32];
    node_event(n, "sent node %u a snapshot (#%" PRIu64 ", %s in %" PRIu64 " chunk%s)", m->from,
               m->snapshot_index, in_kib(bytes, size, sizeof size), chunks, chunks == 1 ? "" : "s");
}

/* ------------------------------------------------------------ receiving one */

int snapshot_write_chunk(struct node *n, const struct raft_snapshot_chunk *c, char *err,
                         size_t errlen)
{
    return snapfile_recv_chunk(n->opt.data_dir, c->offset, c->data, c->len, c->done, err, errlen);
}

int snapshot_install(struct node *n, const struct raft_snapshot_install *in, char *err,
                     size_t errlen)
{
    if (wal_install_snapshot(n->wal, in->index, in->term, err, errlen) != 0)
        return -1;
    if (snapshot_keep(n, in->index) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int snapshot_restore(struct node *n, const struct raft_snapshot_install *in, char *err,
                     size_t errlen)
{
    struct kv *kv;
    struct raft_members members;
    bool has_members;
    if (snapshot_load_kv(n, in->index, in->term, &kv, &members, &has_members, err, errlen) != 0)
        return -1;
    /* A snapshot being written reads the old store: it goes with it. */
    if (n->snap_writer != NULL)
        snapshot_writer_store_replaced(n->snap_writer);
    else
        kv_free(n->kv);
    n->kv = kv;
    if (has_members)
        raft_set_snapshot_members(&n->raft, &members);
    pending_on_snapshot(n, in->index);
    n->snapshots_installed++;
    char keys[32];
    node_event(
        n, "installed the snapshot up to #%" PRIu64 " (term %" PRIu64 ", %s keys) from the leader",
        in->index, in->term, with_commas(kv_count(kv), keys, sizeof keys));
    return 0;
}

/* ------------------------------------------------------------ shutting down */

void snapshot_shutdown(struct node *n)
{
    if (n->snap_writer != NULL) {
        snapshot_writer_cancel(n->snap_writer);
        n->snap_writer = NULL;
        n->snap_slot_bound = true;
        snapshot_answer(n, "ERR the node is shutting down before the snapshot was written");
    }
    if (n->snap_slot != NULL) {
        n->snap_slot_bound = true;
        snapshot_answer(n, "ERR the node is shutting down before the snapshot was written");
    }
    if (n->snap_reader != NULL)
        snapfile_reader_close(n->snap_reader);
    n->snap_reader = NULL;
    free(n->snap_chunk);
    n->snap_chunk = NULL;
    free(n->snap_kept);
    n->snap_kept = NULL;
    n->n_snap_kept = n->cap_snap_kept = 0;
}

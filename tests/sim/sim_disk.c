/* sim_disk.c - what a node's disk keeps across a crash, as the WAL keeps it.
 *
 * - The hard state (term, vote) is written and synced in one step, and
 *   atomically: wal_save_hard_state writes one of two checksummed slots, so a
 *   crash while it writes leaves the old hard state or the new one.
 * - Entries are appended to the log and are durable only once synced. A
 *   crash before the sync keeps a random prefix of them, possibly none,
 *   possibly all: the WAL's recovery keeps the records up to the last
 *   completed sync plus the longest valid prefix of what was written after
 *   it, and drops everything after the first missing record.
 * - A truncation is durable before anything written after it (the WAL makes
 *   it so), so a crash never brings truncated entries back.
 * - After a failed write or sync (a full disk, EIO) the node cuts the log
 *   back to its last sync (wal_reset_to_synced): nothing unsynced is kept,
 *   and a retry writes it afresh. A failed hard-state save leaves the slot
 *   written last, so the durable hard state is the last one saved.
 * - A snapshot is written to a temporary file, synced and renamed into
 *   place: a crash keeps the old one or the new one. The log entries it
 *   covers are dropped after it is durable (sim_disk_drop_prefix), so a
 *   crash may keep them; raft_restore skips them.
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void sim_disk_save_hard_state(struct sim_disk *d, uint64_t term, uint32_t vote)
{
    d->term = term;
    d->vote = vote;
    if (vote == RAFT_NONE)
        return;
    if (term >= d->n_vote_of_term) {
        size_t n = term + 64;
        d->vote_of_term = sim_realloc(d->vote_of_term, n * sizeof(*d->vote_of_term));
        memset(d->vote_of_term + d->n_vote_of_term, 0,
               (n - d->n_vote_of_term) * sizeof(*d->vote_of_term));
        d->n_vote_of_term = n;
    }
    d->vote_of_term[term] = vote;
}

uint64_t sim_disk_last(const struct sim_disk *d)
{
    return d->base + d->len;
}

const struct raft_entry *sim_disk_entry(const struct sim_disk *d, uint64_t index)
{
    if (index <= d->base || index > sim_disk_last(d))
        return NULL;
    return &d->entries[index - d->base - 1];
}

void sim_disk_drop_prefix(struct sim_disk *d, uint64_t upto)
{
    size_t drop = 0;
    while (drop < d->len && d->base + drop + 1 <= upto)
        free(d->entries[drop++].data);
    if (drop > 0)
        memmove(d->entries, d->entries + drop, (d->len - drop) * sizeof(*d->entries));
    d->len -= drop;
    d->synced = d->synced > drop ? d->synced - drop : 0;
    if (upto > d->base)
        d->base = upto;
}

void sim_disk_save_snapshot(struct sim_disk *d, uint64_t index, uint64_t term, const uint8_t *data,
                            size_t len)
{
    if (d->snap != NULL && d->snap_index != index) {
        d->old = sim_realloc(d->old, (d->n_old + 1) * sizeof(*d->old));
        d->old[d->n_old++] = (struct sim_snapshot){
            .index = d->snap_index, .term = d->snap_term, .data = d->snap, .len = d->snap_len};
        d->snap = NULL;
    }
    free(d->snap);
    d->snap = sim_realloc(NULL, len);
    memcpy(d->snap, data, len);
    d->snap_len = len;
    d->snap_index = index;
    d->snap_term = term;
}

const uint8_t *sim_disk_snapshot(const struct sim_disk *d, uint64_t index, uint64_t *term,
                                 size_t *len)
{
    if (d->snap != NULL && d->snap_index == index) {
        *term = d->snap_term;
        *len = d->snap_len;
        return d->snap;
    }
    for (size_t i = 0; i < d->n_old; i++) {
        if (d->old[i].index == index) {
            *term = d->old[i].term;
            *len = d->old[i].len;
            return d->old[i].data;
        }
    }
    return NULL;
}

void sim_disk_prune_snapshots(struct sim_disk *d, const struct raft *r)
{
    size_t kept = 0;
    for (size_t i = 0; i < d->n_old; i++) {
        if (r != NULL && raft_snapshot_in_use(r, d->old[i].index))
            d->old[kept++] = d->old[i];
        else
            free(d->old[i].data);
    }
    d->n_old = kept;
}

void sim_disk_truncate(struct sim_disk *d, uint64_t from)
{
    while (d->len > 0 && d->base + d->len >= from) {
        free(d->entries[d->len - 1].data);
        d->len--;
    }
    if (d->synced > d->len)
        d->synced = d->len;
}

void sim_disk_append(struct sim_disk *d, uint64_t term, uint8_t type, const void *data,
                     uint32_t len)
{
    /* Entries at or below the snapshot are dead: the entry after it starts
     * the log again (raft.h). */
    if (sim_disk_last(d) < d->snap_index)
        sim_disk_drop_prefix(d, d->snap_index);
    if (d->len == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->entries = sim_realloc(d->entries, d->cap * sizeof(*d->entries));
    }
    struct raft_entry *e = &d->entries[d->len];
    e->term = term;
    e->index = d->base + d->len + 1;
    e->type = type;
    e->len = len;
    e->data = NULL;
    if (len > 0) {
        e->data = sim_realloc(NULL, len);
        memcpy(e->data, data, len);
    }
    d->len++;
}

void sim_disk_sync(struct sim_disk *d)
{
    d->synced = d->len;
}

void sim_disk_sync_through(struct sim_disk *d, uint64_t index)
{
    if (index <= d->base)
        return;
    size_t n = (size_t)(index - d->base);
    if (n > d->len)
        n = d->len;
    if (n > d->synced)
        d->synced = n;
}

size_t sim_disk_reset_to_synced(struct sim_disk *d)
{
    size_t lost = d->len - d->synced;
    sim_disk_truncate(d, d->base + d->synced + 1);
    return lost;
}

size_t sim_disk_crash(struct sim_disk *d, struct sim_rng *g)
{
    size_t kept = d->synced + (size_t)sim_rng_below(g, d->len - d->synced + 1);
    size_t lost = d->len - kept;
    sim_disk_truncate(d, d->base + kept + 1);
    d->synced = d->len;
    return lost;
}

void sim_disk_free(struct sim_disk *d)
{
    for (size_t i = 0; i < d->len; i++)
        free(d->entries[i].data);
    free(d->entries);
    free(d->vote_of_term);
    free(d->snap);
    sim_disk_prune_snapshots(d, NULL);
    free(d->old);
    memset(d, 0, sizeof(*d));
}

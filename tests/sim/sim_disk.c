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

void sim_disk_truncate(struct sim_disk *d, uint64_t from)
{
    while (d->len > 0 && d->len >= from) {
        free(d->entries[d->len - 1].data);
        d->len--;
    }
    if (d->synced > d->len)
        d->synced = d->len;
}

void sim_disk_append(struct sim_disk *d, uint64_t term, uint8_t type, const void *data,
                     uint32_t len)
{
    if (d->len == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->entries = sim_realloc(d->entries, d->cap * sizeof(*d->entries));
    }
    struct raft_entry *e = &d->entries[d->len];
    e->term = term;
    e->index = d->len + 1;
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

size_t sim_disk_reset_to_synced(struct sim_disk *d)
{
    size_t lost = d->len - d->synced;
    sim_disk_truncate(d, d->synced + 1);
    return lost;
}

size_t sim_disk_crash(struct sim_disk *d, struct sim_rng *g)
{
    size_t kept = d->synced + (size_t)sim_rng_below(g, d->len - d->synced + 1);
    size_t lost = d->len - kept;
    sim_disk_truncate(d, kept + 1);
    d->synced = d->len;
    return lost;
}

void sim_disk_free(struct sim_disk *d)
{
    for (size_t i = 0; i < d->len; i++)
        free(d->entries[i].data);
    free(d->entries);
    free(d->vote_of_term);
    memset(d, 0, sizeof(*d));
}

/* raft_read.c - linearizable reads without writing the log (ReadIndex,
 * Raft dissertation 6.4):
 * 1. the leader must have committed an entry of its own term;
 * 2. it records its commit index as the read index;
 * 3. it sends a round of heartbeats and waits for a majority to answer, so it
 *    knows it was still the leader when the read arrived;
 * 4. it serves the read once it has applied up to the read index. */
#include <stdlib.h>

#include "raft_internal.h"

int raft_read(struct raft *r, uint64_t read_id)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (r->n_reads == r->cap_reads) {
        size_t cap = r->cap_reads ? r->cap_reads * 2 : 16;
        struct raft_pending_read *p = realloc(r->reads, cap * sizeof(*p));
        if (p == NULL)
            return RAFT_ENOMEM;
        r->reads = p;
        r->cap_reads = cap;
    }
    /* Only heartbeats sent after this moment can confirm leadership. */
    r->reads[r->n_reads++] = (struct raft_pending_read){
        .read_id = read_id,
        .seq = r->read_seq + 1,
    };
    if (raft_quorum(r) > 1)
        r->read_broadcast_needed = true;
    raft_reads_check(r);
    return RAFT_OK;
}

int raft_read_emit(struct raft *r, uint64_t read_id, uint64_t index, bool ok)
{
    if (r->n_out_reads == r->cap_out_reads) {
        size_t cap = r->cap_out_reads ? r->cap_out_reads * 2 : 16;
        struct raft_read_result *p = realloc(r->out_reads, cap * sizeof(*p));
        if (p == NULL)
            return RAFT_ENOMEM;
        r->out_reads = p;
        r->cap_out_reads = cap;
    }
    r->out_reads[r->n_out_reads++] =
        (struct raft_read_result){.read_id = read_id, .index = index, .ok = ok};
    return RAFT_OK;
}

/* How many nodes, the leader included, have answered heartbeat round seq. */
static size_t raft_acks_for(const struct raft *r, uint64_t seq)
{
    size_t n = 0;
    for (size_t i = 0; i < r->members.n; i++) {
        uint32_t id = r->members.m[i].id;
        if (r->members.m[i].role == RAFT_VOTER &&
            (id == r->cfg.id || r->progress[id - 1].acked_seq >= seq))
            n++;
    }
    return n;
}

void raft_reads_check(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->n_reads == 0)
        return;
    if (raft_term_at(r, r->commit_index) != r->current_term)
        return; /* step 1: wait for this term's no-op to commit */
    size_t done = 0;
    while (done < r->n_reads && raft_acks_for(r, r->reads[done].seq) >= raft_quorum(r)) {
        if (raft_read_emit(r, r->reads[done].read_id, r->commit_index, true) != 0)
            break;
        done++;
    }
    if (done > 0) {
        for (size_t i = done; i < r->n_reads; i++)
            r->reads[i - done] = r->reads[i];
        r->n_reads -= done;
    }
}

void raft_reads_fail_all(struct raft *r)
{
    for (size_t i = 0; i < r->n_reads; i++)
        raft_read_emit(r, r->reads[i].read_id, 0, false);
    r->n_reads = 0;
}

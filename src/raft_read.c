/* raft_read.c - linearizable reads without writing the log (ReadIndex,
 * Raft dissertation 6.4):
 * 1. the leader must have committed an entry of its own term;
 * 2. it records its commit index as the read index;
 * 3. it sends a round of heartbeats and waits for a majority to answer, so it
 *    knows it was still the leader when the read arrived;
 * 4. it serves the read once it has applied up to the read index.
 *
 * Leases (6.4.1), when cfg.lease_ms is set: "the leader would use the normal
 * heartbeat mechanism to maintain a lease. Once the leader's heartbeats were
 * acknowledged by a majority of the cluster, it would extend its lease to
 * start + election timeout / clock drift bound, since the followers
 * shouldn't time out before then." Step 3 is skipped while the lease holds;
 * the caller checks it again after reading the state machine (a process
 * paused between the check and the read must not serve what it read). */
#include <stdlib.h>

#include "raft_internal.h"

static int raft_read_register(struct raft *r, uint64_t read_id, bool lease_allowed)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (lease_allowed && raft_lease_end(r) > r->now_ms)
        return raft_read_emit(r, read_id, r->commit_index, true, true);
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

int raft_read(struct raft *r, uint64_t read_id)
{
    return raft_read_register(r, read_id, true);
}

int raft_read_by_round(struct raft *r, uint64_t read_id)
{
    return raft_read_register(r, read_id, false);
}

void raft_round_start(struct raft *r)
{
    r->read_seq++;
    r->round_started_ms[r->read_seq % RAFT_LEASE_ROUNDS] = r->now_ms;
}

void raft_note_round_answered(struct raft *r, struct raft_progress *pr, const struct raft_msg *m)
{
    if (m->read_seq > pr->acked_seq)
        pr->acked_seq = m->read_seq;
    /* A node without leases (another --lease-reads, another timeout) may
     * vote sooner than this leader's lease assumes: it counts for
     * ReadIndex, not for the lease. */
    if (m->promise_ms >= r->cfg.election_min_ms && m->read_seq > pr->lease_seq)
        pr->lease_seq = m->read_seq;
}

uint32_t raft_lease_promise(const struct raft *r)
{
    return r->cfg.lease_ms > 0 ? r->cfg.election_min_ms : 0;
}

void raft_lease_revoke(struct raft *r)
{
    r->lease_min_seq = r->read_seq + 1;
}

/* When the round a follower last answered with a promise started, if it
 * counts. Every message of round seq left at or after that start, and the
 * follower took it as from the leader of this term: it will not vote for
 * another for an election timeout after. */
static bool raft_round_start_of(const struct raft *r, uint64_t seq, uint64_t *start)
{
    if (seq == 0 || seq < r->lease_min_seq || r->read_seq - seq >= RAFT_LEASE_ROUNDS)
        return false;
    *start = r->round_started_ms[seq % RAFT_LEASE_ROUNDS];
    return true;
}

uint64_t raft_lease_end(const struct raft *r)
{
    if (r->cfg.lease_ms == 0 || r->role != RAFT_LEADER || r->lease_given_up)
        return 0;
    if (raft_term_at(r, r->commit_index) != r->current_term)
        return 0; /* step 1 holds for leases too */
    /* The starts of the rounds the voters answered; the leader's own
     * "answer" is now. The latest a majority reached bounds the lease. */
    uint64_t starts[RAFT_MAX_NODES];
    size_t n = 0;
    for (size_t i = 0; i < r->members.n; i++) {
        const struct raft_member *m = &r->members.m[i];
        if (m->role != RAFT_VOTER)
            continue;
        uint64_t start;
        if (m->id == r->cfg.id)
            starts[n++] = UINT64_MAX;
        else if (raft_round_start_of(r, r->progress[m->id - 1].lease_seq, &start))
            starts[n++] = start;
    }
    if (n < raft_quorum(r))
        return 0; /* (a round may start at time 0: no value stands for "none") */
    uint64_t start = raft_quorum_reaches(r, starts, n);
    return start == UINT64_MAX ? UINT64_MAX : start + r->cfg.lease_ms;
}

int raft_read_emit(struct raft *r, uint64_t read_id, uint64_t index, bool ok, bool lease)
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
        (struct raft_read_result){.read_id = read_id, .index = index, .ok = ok, .lease = lease};
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
        if (raft_read_emit(r, r->reads[done].read_id, r->commit_index, true, false) != 0)
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
        raft_read_emit(r, r->reads[i].read_id, 0, false, false);
    r->n_reads = 0;
}

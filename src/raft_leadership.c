/* raft_leadership.c - how a leader keeps or hands over its leadership:
 * CheckQuorum (dissertation 6.2 and 9.6) and leadership transfer (3.10). */
#include <stdlib.h>

#include "raft_internal.h"

static int raft_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Dissertation 6.2: "a leader steps down if an election timeout elapses
 * without a successful round of heartbeats to a majority of its cluster;
 * this allows clients to retry their requests with another server". How
 * long since a majority (the leader counting itself) last answered: the
 * quorum-th smallest of the times since each voter's last reply. */
void raft_check_quorum(struct raft *r)
{
    if (r->role != RAFT_LEADER || !r->cfg.check_quorum)
        return;
    uint64_t ago[RAFT_MAX_NODES];
    size_t n = 0;
    for (size_t i = 0; i < r->members.n; i++) {
        uint32_t id = r->members.m[i].id;
        if (r->members.m[i].role != RAFT_VOTER)
            continue;
        ago[n++] = id == r->cfg.id ? 0 : r->now_ms - r->progress[id - 1].last_ack_ms;
    }
    /* A leader that removed itself counts no answer of its own. */
    qsort(ago, n, sizeof(ago[0]), raft_cmp_u64);
    size_t q = raft_quorum(r);
    uint64_t silent = q <= n ? ago[q - 1] : UINT64_MAX;
    if (silent < r->cfg.election_max_ms)
        return;
    struct raft_note note = {.type = RAFT_NOTE_QUORUM_LOST, .term = r->current_term, .ms = silent};
    raft_note(r, &note);
    raft_become_follower(r, r->current_term, RAFT_NONE);
}

/* Dissertation 3.10, step 2: "The prior leader sends a TimeoutNow request to
 * the target server", once "the target server's log [is] up to date". */
void raft_transfer_maybe_send(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->transfer_to == RAFT_NONE || r->transfer_sent)
        return;
    int slot = raft_node_slot(r, r->transfer_to);
    if (slot < 0 || r->progress[slot].match < raft_last_index(r))
        return;
    struct raft_msg m = {
        .type = RAFT_MSG_TIMEOUT_NOW,
        .from = r->cfg.id,
        .to = r->transfer_to,
        .term = r->current_term,
    };
    if (raft_send(r, &m) != RAFT_OK)
        return;
    r->transfer_sent = true;
    struct raft_note note = {
        .type = RAFT_NOTE_TRANSFER_SENT, .node = r->transfer_to, .term = r->current_term};
    raft_note(r, &note);
}

/* Dissertation 3.10, step 1: "The prior leader stops accepting new client
 * requests"; and: "If the transfer does not complete within [an election
 * timeout], the prior leader aborts the transfer and resumes accepting
 * client requests". */
int raft_transfer(struct raft *r, uint32_t target)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (target == r->cfg.id || !raft_is_voter(r, target))
        return RAFT_EINVAL;
    r->transfer_to = target;
    r->transfer_sent = false;
    /* The target's RequestVote sets leader stickiness aside: no lease read
     * may be served after this in this term (6.4.1), even if it fails. */
    r->lease_given_up = true;
    r->transfer_deadline_ms = r->now_ms + r->cfg.election_max_ms;
    raft_transfer_maybe_send(r);
    return RAFT_OK;
}

void raft_transfer_tick(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->transfer_to == RAFT_NONE ||
        r->now_ms < r->transfer_deadline_ms)
        return;
    struct raft_note note = {.type = RAFT_NOTE_TRANSFER_FAILED,
                             .node = r->transfer_to,
                             .term = r->current_term,
                             .ms = r->cfg.election_max_ms};
    raft_note(r, &note);
    r->transfer_to = RAFT_NONE;
    r->transfer_sent = false;
}

/* Dissertation 3.10, step 2: "Upon receiving this request, the target server
 * ... start[s] a new election". Only from the leader of our term. */
int raft_recv_timeout_now(struct raft *r, const struct raft_msg *m)
{
    if (m->term != r->current_term || r->role != RAFT_FOLLOWER || r->leader_id != m->from)
        return RAFT_OK;
    struct raft_note note = {.type = RAFT_NOTE_TIMEOUT_NOW, .node = m->from, .term = m->term};
    raft_note(r, &note);
    raft_become_candidate(r, true);
    return RAFT_OK;
}

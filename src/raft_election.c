/* raft_election.c - RequestVote, both sides. */
#include "raft_internal.h"

/* 5.4.1: "Raft determines which of two logs is more up-to-date by comparing
 * the index and term of the last entries in the logs. If the logs have last
 * entries with different terms, then the log with the later term is more
 * up-to-date. If the logs end with the same term, then whichever log is longer
 * is more up-to-date." */
static bool raft_log_up_to_date(const struct raft *r, uint64_t last_index, uint64_t last_term)
{
    uint64_t my_term = raft_last_term(r);
    if (last_term != my_term)
        return last_term > my_term;
    return last_index >= raft_last_index(r);
}

/* Figure 2, RequestVote RPC, receiver implementation:
 * 1. Reply false if term < currentTerm.
 * 2. If votedFor is null or candidateId, and candidate's log is at least as
 *    up-to-date as receiver's log, grant vote. */
int raft_recv_vote(struct raft *r, const struct raft_msg *m)
{
    bool granted = false;
    if (m->term == r->current_term && (r->voted_for == RAFT_NONE || r->voted_for == m->from) &&
        raft_log_up_to_date(r, m->last_log_index, m->last_log_term)) {
        granted = true;
        if (r->voted_for != m->from) {
            r->voted_for = m->from;
            r->hard_state_dirty = true; /* the reply leaves after the fsync */
        }
        raft_reset_election_timer(r);
    }
    struct raft_msg reply = {
        .type = RAFT_MSG_VOTE_REPLY,
        .from = r->cfg.id,
        .to = m->from,
        .term = r->current_term,
        .granted = granted,
    };
    return raft_send(r, &reply);
}

/* Figure 2, Candidates: "If votes received from majority of servers: become
 * leader". */
int raft_recv_vote_reply(struct raft *r, const struct raft_msg *m)
{
    if (r->role != RAFT_CANDIDATE || m->term != r->current_term || !m->granted)
        return RAFT_OK;
    r->votes |= 1u << m->from;
    if ((size_t)__builtin_popcount(r->votes) >= raft_quorum(r))
        raft_become_leader(r);
    return RAFT_OK;
}

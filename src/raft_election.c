/* raft_election.c - RequestVote and Pre-Vote, both sides. */
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

/* Dissertation 4.2.3 and 9.6: "if a server receives a RequestVote request
 * within the minimum election timeout of hearing from a current leader, it
 * does not update its term or grant its vote". A leader is in its own lease
 * (with CheckQuorum it steps down when it loses its majority). */
bool raft_in_lease(const struct raft *r)
{
    if (r->role == RAFT_LEADER)
        return true;
    bool lately = r->now_ms - r->leader_contact_ms < r->cfg.election_min_ms;
    /* With leases, answering a leader is a promise that holds whatever
     * happens next: a step down to a new term forgets the leader, not the
     * promise (leader_contact_ms stays). */
    return lately && (r->leader_id != RAFT_NONE || r->cfg.lease_ms > 0);
}

/* Dissertation 4.1: "servers process incoming RPC requests without
 * consulting their current configurations": a server votes even when its
 * latest configuration leaves it out (one removed by an entry that may yet
 * be undone, or a learner made a voter by an entry that has not reached it:
 * refusing could leave a cluster without a majority). The exception is a
 * server waiting to join, which has received nothing at all yet. */
static bool raft_may_vote(const struct raft *r)
{
    return raft_is_member(r, r->cfg.id) || raft_last_index(r) > 0;
}

uint64_t raft_leader_heard_ago(const struct raft *r)
{
    return r->role == RAFT_LEADER ? 0 : r->now_ms - r->leader_contact_ms;
}

/* Figure 2, RequestVote RPC, receiver implementation:
 * 1. Reply false if term < currentTerm.
 * 2. If votedFor is null or candidateId, and candidate's log is at least as
 *    up-to-date as receiver's log, grant vote. */
int raft_recv_vote(struct raft *r, const struct raft_msg *m)
{
    bool granted = false;
    if (raft_may_vote(r) && m->term == r->current_term &&
        (r->voted_for == RAFT_NONE || r->voted_for == m->from) &&
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
    if (raft_has_majority(r, r->votes))
        raft_become_leader(r);
    return RAFT_OK;
}

/* Dissertation 9.6, Pre-Vote: "a candidate only increments its term if it
 * first learns from a majority of the cluster that they would be willing to
 * grant the candidate their votes (if the candidate's log is sufficiently
 * up-to-date, and the voters have not received heartbeats from a valid
 * leader for at least a baseline election timeout)". m->term is the term
 * the pre-candidate would campaign in. Nothing here changes our own state:
 * a pre-vote is a question, not a vote. */
int raft_recv_prevote(struct raft *r, const struct raft_msg *m)
{
    bool in_lease = raft_in_lease(r);
    bool granted = !in_lease && raft_may_vote(r) && m->term > r->current_term &&
                   raft_log_up_to_date(r, m->last_log_index, m->last_log_term);
    struct raft_msg reply = {
        .type = RAFT_MSG_PREVOTE_REPLY,
        .from = r->cfg.id,
        .to = m->from,
        /* Granted: the term asked about, so the pre-candidate can tell the
         * answer to this round; refused: ours, which it may have to learn. */
        .term = granted ? m->term : r->current_term,
        .granted = granted,
    };
    if (!granted && in_lease) {
        reply.leader_hint = r->leader_id;
        reply.leader_ago_ms = raft_leader_heard_ago(r);
    }
    if (reply.term == 0)
        return RAFT_OK; /* a server that never saw a term (not a member yet) stays quiet */
    return raft_send(r, &reply);
}

/* A majority of pre-votes (ours included): start the real election. */
int raft_recv_prevote_reply(struct raft *r, const struct raft_msg *m)
{
    if (r->role != RAFT_PRECANDIDATE)
        return RAFT_OK;
    if (!m->granted) {
        if (m->term <= r->current_term) {
            struct raft_note note = {
                .type = RAFT_NOTE_PREVOTE_REFUSED,
                .node = m->from,
                .term = r->current_term + 1,
                .leader = m->leader_hint,
                .ms = m->leader_ago_ms,
            };
            raft_note(r, &note);
        }
        return RAFT_OK;
    }
    if (m->term != r->current_term + 1)
        return RAFT_OK; /* an answer to an older round */
    r->votes |= 1u << m->from;
    if (raft_has_majority(r, r->votes))
        raft_become_candidate(r, false);
    return RAFT_OK;
}

/* raft_convert.c - role changes, all in one place. */
#include <string.h>

#include "raft_internal.h"

/* Election timeouts are "chosen randomly from a fixed interval" (5.2), drawn
 * afresh each time the timer is reset. */
void raft_reset_election_timer(struct raft *r)
{
    uint32_t span = r->cfg.election_max_ms - r->cfg.election_min_ms + 1;
    r->election_timeout_ms = r->cfg.election_min_ms + (uint32_t)(raft_random(r) % span);
    r->election_started_ms = r->now_ms;
    r->election_deadline_ms = r->now_ms + r->election_timeout_ms;
}

/* Messages are queued as events are taken in and leave only after the
 * ready that follows has been persisted. A message of an older term promises
 * what the new term may already have undone: a vote granted in term 5 that
 * was never written because term 6 replaced it, an acknowledgement of
 * entries that a later message of the same batch truncated, a deposed
 * leader's AppendEntries naming positions that may be rewritten. Losing
 * messages is always allowed (5.1: "servers retry RPCs if they do not
 * receive a response in a timely manner"): when the term rises, drop them. */
static void raft_drop_queued_before(struct raft *r, uint64_t term)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->n_out; i++)
        if (r->out_msgs[i].term >= term)
            r->out_msgs[kept++] = r->out_msgs[i];
    r->n_out = kept;
}

/* A follower that only learns of a higher term keeps its timer running:
 * Figure 2 resets it on hearing from the current leader or granting a vote,
 * so a candidate that cannot win does not hold everyone's elections off.
 * A leader or candidate stepping down starts a fresh timeout. */
void raft_become_follower(struct raft *r, uint64_t term, uint32_t leader_id)
{
    bool was_leader = r->role == RAFT_LEADER;
    bool was_follower = r->role == RAFT_FOLLOWER;
    if (term > r->current_term) {
        r->current_term = term;
        r->voted_for = RAFT_NONE;
        r->hard_state_dirty = true;
        raft_drop_queued_before(r, term);
    }
    r->role = RAFT_FOLLOWER;
    r->leader_id = leader_id;
    if (leader_id != RAFT_NONE)
        r->leader_contact_ms = r->now_ms;
    r->votes = 0;
    r->transfer_to = RAFT_NONE;
    r->transfer_sent = false;
    if (!was_follower)
        raft_reset_election_timer(r);
    if (was_leader) {
        raft_reads_fail_all(r);
        r->read_broadcast_needed = false;
    }
}

/* Figure 2, Candidates: "On conversion to candidate, start election:
 * increment currentTerm, vote for self, reset election timer, send RequestVote
 * RPCs to all other servers". */
void raft_become_candidate(struct raft *r, bool transfer)
{
    if (r->current_term >= RAFT_TERM_MAX)
        return; /* never reached by a real cluster: messages past it are dropped */
    if (r->role == RAFT_LEADER)
        raft_reads_fail_all(r);
    r->role = RAFT_CANDIDATE;
    r->current_term++;
    raft_drop_queued_before(r, r->current_term);
    r->voted_for = r->cfg.id;
    r->hard_state_dirty = true;
    r->leader_id = RAFT_NONE;
    r->votes = 1u << r->cfg.id;
    raft_reset_election_timer(r);
    if (raft_has_majority(r, r->votes)) {
        raft_become_leader(r);
        return;
    }
    for (size_t i = 0; i < r->members.n; i++) {
        uint32_t peer = r->members.m[i].id;
        if (peer == r->cfg.id || r->members.m[i].role != RAFT_VOTER)
            continue;
        struct raft_msg m = {
            .type = RAFT_MSG_VOTE,
            .from = r->cfg.id,
            .to = peer,
            .term = r->current_term,
            .last_log_index = raft_last_index(r),
            .last_log_term = raft_last_term(r),
            .transfer = transfer,
        };
        raft_send(r, &m);
    }
}

/* Dissertation 9.6: before raising its term, a server that timed out asks
 * the others whether they would vote for it in the next term. Its own term,
 * vote and log stay as they are, so a server cut off from the rest can time
 * out for as long as it likes without raising its term. */
void raft_become_precandidate(struct raft *r)
{
    if (r->current_term >= RAFT_TERM_MAX)
        return;
    if (r->role == RAFT_LEADER)
        raft_reads_fail_all(r);
    r->role = RAFT_PRECANDIDATE;
    r->leader_id = RAFT_NONE;
    r->votes = 1u << r->cfg.id;
    raft_reset_election_timer(r);
    if (raft_has_majority(r, r->votes)) {
        raft_become_candidate(r, false);
        return;
    }
    for (size_t i = 0; i < r->members.n; i++) {
        uint32_t peer = r->members.m[i].id;
        if (peer == r->cfg.id || r->members.m[i].role != RAFT_VOTER)
            continue;
        struct raft_msg m = {
            .type = RAFT_MSG_PREVOTE,
            .from = r->cfg.id,
            .to = peer,
            .term = r->current_term + 1,
            .last_log_index = raft_last_index(r),
            .last_log_term = raft_last_term(r),
        };
        raft_send(r, &m);
    }
}

/* Figure 2, Leaders: "Upon election: send initial empty AppendEntries RPCs
 * (heartbeat) to each server". Volatile state on leaders, "reinitialized after
 * election": nextIndex = leader last log index + 1, matchIndex = 0.
 * Section 8: "each leader commit a blank no-op entry into the log at the start
 * of its term", so that reads can learn the commit index. */
void raft_become_leader(struct raft *r)
{
    r->role = RAFT_LEADER;
    r->leader_id = r->cfg.id;
    r->transfer_to = RAFT_NONE;
    r->transfer_sent = false;
    /* The lease starts afresh: only rounds of this term count. */
    r->lease_given_up = false;
    raft_lease_revoke(r);
    struct raft_entry noop = {
        .term = r->current_term,
        .index = raft_last_index(r) + 1,
        .type = RAFT_ENTRY_NOOP,
    };
    raft_log_append(&r->log, &noop);
    for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
        struct raft_progress *pr = &r->progress[i];
        memset(pr, 0, sizeof(*pr));
        pr->next = noop.index;
        pr->last_ack_ms = r->now_ms;
    }
    r->read_broadcast_needed = false;
    if (r->cfg.lease_ms > 0)
        raft_round_start(r);
    raft_broadcast_append(r, true);
    r->heartbeat_due_ms = r->now_ms + r->cfg.heartbeat_ms;
}

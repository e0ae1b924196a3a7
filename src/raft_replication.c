/* raft_replication.c - AppendEntries, both sides, and the commit rule. */
#include <stdlib.h>

#include "raft_internal.h"

/* A message is still out while its last entry lies above what the follower
 * acknowledged and below nextIndex (a rejection moves nextIndex back). */
static bool raft_inflight_live(const struct raft_progress *pr, uint64_t last)
{
    return last > pr->match && last < pr->next;
}

bool raft_pipeline_open(const struct raft *r, const struct raft_progress *pr)
{
    if (pr->next - pr->match > RAFT_MAX_INFLIGHT)
        return false;
    size_t live = 0;
    for (size_t i = 0; i < pr->n_inflight; i++)
        live += raft_inflight_live(pr, pr->inflight_last[i]);
    return live < r->cfg.max_inflight_appends;
}

static void raft_inflight_add(const struct raft *r, struct raft_progress *pr, uint64_t last)
{
    size_t k = 0;
    for (size_t i = 0; i < pr->n_inflight; i++)
        if (raft_inflight_live(pr, pr->inflight_last[i]))
            pr->inflight_last[k++] = pr->inflight_last[i];
    pr->n_inflight = k;
    if (k < r->cfg.max_inflight_appends)
        pr->inflight_last[pr->n_inflight++] = last;
}

/* Send AppendEntries to the peer in slot: the entries from its nextIndex on,
 * as many as one message may carry. A heartbeat goes even when there is
 * nothing to carry. In the pipeline nextIndex moves past what was sent at
 * once, with at most cfg.max_inflight_appends such messages out; after a
 * rejection (probe) one message is out at a time. A peer whose nextIndex
 * was compacted away gets the snapshot instead (raft_snapshot.c). */
void raft_send_append(struct raft *r, int slot, bool heartbeat)
{
    struct raft_progress *pr = &r->progress[slot];
    if (pr->mode == RAFT_PROGRESS_SNAPSHOT || pr->next <= r->log.snapshot_index) {
        raft_send_snapshot(r, slot, heartbeat);
        return;
    }
    uint64_t last = raft_last_index(r);
    uint64_t prev = pr->next - 1;
    size_t n = 0;
    size_t bytes = 0;
    if (raft_pipeline_open(r, pr) || pr->mode == RAFT_PROGRESS_PROBE) {
        for (uint64_t i = pr->next; i <= last && n < RAFT_MAX_BATCH_ENTRIES; i++) {
            size_t len = raft_entry_at(r, i)->len;
            if (n > 0 && bytes + len > RAFT_MAX_BATCH_BYTES)
                break;
            bytes += len;
            n++;
        }
    }
    if (n == 0 && !heartbeat)
        return;
    struct raft_msg m = {
        .type = RAFT_MSG_APPEND,
        .from = r->cfg.id,
        .to = (uint32_t)slot + 1,
        .term = r->current_term,
        .prev_index = prev,
        .prev_term = raft_term_at(r, prev),
        .commit = r->commit_index,
        .n_entries = n,
        .read_seq = r->read_seq,
    };
    if (raft_send(r, &m) != 0)
        return;
    pr->last_send_ms = r->now_ms;
    if (pr->mode == RAFT_PROGRESS_PIPELINE && n > 0) {
        pr->next += n;
        raft_inflight_add(r, pr, pr->next - 1);
    }
}

void raft_broadcast_append(struct raft *r, bool heartbeat)
{
    for (size_t i = 0; i < r->members.n; i++)
        if (r->members.m[i].id != r->cfg.id)
            raft_send_append(r, (int)r->members.m[i].id - 1, heartbeat);
}

/* Where a follower whose entry at prev_index has the wrong term should have
 * the leader look next: the first index of that term in its log, so that the
 * leader skips the whole term in one round trip (5.3, "the follower can
 * include the term of the conflicting entry and the first index it stores for
 * that term"). */
static void raft_reject_hint(const struct raft *r, uint64_t prev, struct raft_msg *reply)
{
    uint64_t last = raft_last_index(r);
    if (prev > last) {
        reply->hint_index = last + 1;
        reply->hint_term = 0;
        return;
    }
    uint64_t conflict_term = raft_term_at(r, prev);
    uint64_t first = prev;
    while (first > r->commit_index + 1 && raft_term_at(r, first - 1) == conflict_term)
        first--;
    reply->hint_index = first;
    reply->hint_term = conflict_term;
}

/* Figure 2, AppendEntries RPC, receiver implementation:
 * 1. Reply false if term < currentTerm.
 * 2. Reply false if log doesn't contain an entry at prevLogIndex whose term
 *    matches prevLogTerm.
 * 3. If an existing entry conflicts with a new one (same index but different
 *    terms), delete the existing entry and all that follow it.
 * 4. Append any new entries not already in the log.
 * 5. If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index
 *    of last new entry). */
int raft_recv_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg reply = {
        .type = RAFT_MSG_APPEND_REPLY,
        .from = r->cfg.id,
        .to = m->from,
        .term = r->current_term,
        .read_seq = m->read_seq,
        .promise_ms = raft_lease_promise(r),
    };
    if (m->term < r->current_term) /* rule 1: tell the stale leader our term */
        return raft_send(r, &reply);

    /* A current leader exists: candidates step down, and a follower learns
     * who leads. Figure 2, Followers: the election timer restarts on every
     * AppendEntries from the current leader, its first heartbeat included
     * (a follower that just restarted, or refused this leader its vote, is
     * already a follower of this term and must not time out all the same). */
    if (r->role != RAFT_FOLLOWER || r->leader_id != m->from)
        raft_become_follower(r, m->term, m->from);
    raft_reset_election_timer(r);
    r->leader_contact_ms = r->now_ms;

    /* Entries up to the snapshot's index are committed, so they are the
     * leader's too: skip those the message carries. */
    uint64_t prev = m->prev_index, prev_term = m->prev_term;
    const struct raft_entry *entries = m->entries;
    size_t n = m->n_entries;
    if (prev < r->log.snapshot_index) {
        uint64_t skip = r->log.snapshot_index - prev;
        if (skip >= n) {
            reply.success = true;
            reply.match_index = prev + n;
            return raft_send(r, &reply);
        }
        prev = r->log.snapshot_index;
        prev_term = entries[skip - 1].term;
        entries += skip;
        n -= (size_t)skip;
    }

    if (prev > raft_last_index(r) || raft_term_at(r, prev) != prev_term) { /* rule 2 */
        reply.rejected_index = m->prev_index;
        raft_reject_hint(r, prev, &reply);
        return raft_send(r, &reply);
    }
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        uint64_t index = prev + 1 + i;
        if (index <= raft_last_index(r)) {
            if (raft_term_at(r, index) == e->term)
                continue;
            if (index <= r->commit_index)
                return RAFT_EINVAL;            /* would rewrite a committed entry: never */
            raft_log_truncate(&r->log, index); /* rule 3 */
            raft_unstable_from(r, index);
            raft_members_on_truncate(r, index);
        }
        struct raft_entry copy = *e;
        copy.index = index;
        if (raft_log_append(&r->log, &copy) != 0) /* rule 4 */
            return RAFT_ENOMEM;
        raft_members_on_append(r, &copy); /* a configuration is in force once appended */
    }
    uint64_t last_new = prev + n;
    if (m->commit > r->commit_index) { /* rule 5 */
        uint64_t commit = m->commit < last_new ? m->commit : last_new;
        if (commit > r->commit_index)
            r->commit_index = commit;
    }
    reply.success = true;
    reply.match_index = last_new;
    return raft_send(r, &reply);
}

/* Last index of the leader's log holding term, 0 if none. */
static uint64_t raft_last_index_of_term(const struct raft *r, uint64_t term)
{
    for (uint64_t i = raft_last_index(r); i > 0; i--) {
        uint64_t t = raft_term_at(r, i);
        if (t == term)
            return i;
        if (t < term)
            break;
    }
    return 0;
}

/* Figure 2, Leaders: "If successful: update nextIndex and matchIndex for
 * follower. If AppendEntries fails because of log inconsistency: decrement
 * nextIndex and retry" (here: jump to the follower's hint). */
int raft_recv_append_reply(struct raft *r, const struct raft_msg *m)
{
    int slot = raft_node_slot(r, m->from);
    if (r->role != RAFT_LEADER || m->term != r->current_term || slot < 0)
        return RAFT_OK;
    struct raft_progress *pr = &r->progress[slot];
    pr->last_ack_ms = r->now_ms;
    raft_note_round_answered(r, pr, m);
    if (pr->mode == RAFT_PROGRESS_SNAPSHOT) {
        /* Answers to what was sent before the snapshot: its reply decides. */
        raft_reads_check(r);
        return RAFT_OK;
    }

    if (m->success) {
        if (m->match_index > raft_last_index(r))
            return RAFT_EINVAL;
        if (m->match_index > pr->match)
            pr->match = m->match_index;
        if (pr->next < pr->match + 1)
            pr->next = pr->match + 1;
        if (pr->mode == RAFT_PROGRESS_PROBE) {
            pr->mode = RAFT_PROGRESS_PIPELINE;
            pr->next = pr->match + 1;
        }
        raft_maybe_commit(r);
        raft_transfer_maybe_send(r);
    } else {
        /* Stale rejections (of a message older than the one in flight) say
         * nothing new. */
        bool stale = pr->mode == RAFT_PROGRESS_PROBE ? m->rejected_index != pr->next - 1
                                                     : m->rejected_index < pr->match + 1;
        if (!stale) {
            uint64_t next = m->hint_index;
            if (m->hint_term != 0) {
                uint64_t mine = raft_last_index_of_term(r, m->hint_term);
                if (mine > 0)
                    next = mine + 1;
            }
            if (next > m->rejected_index)
                next = m->rejected_index;
            if (next > raft_last_index(r) + 1)
                next = raft_last_index(r) + 1;
            if (next < 1)
                next = 1;
            /* A follower that rejects at or below what it once acknowledged
             * has lost entries (a damaged disk): forget what it had. matchIndex
             * only feeds the commit rule, and commitIndex never moves back. */
            if (pr->match >= next)
                pr->match = next - 1;
            pr->next = next;
            pr->mode = RAFT_PROGRESS_PROBE;
            raft_send_append(r, slot, true);
        }
    }
    raft_reads_check(r);
    return RAFT_OK;
}

static bool raft_is_success_reply(const struct raft_msg *m)
{
    return m->type == RAFT_MSG_APPEND_REPLY && m->success && m->to >= 1 && m->to <= RAFT_MAX_NODES;
}

/* Several successful replies sent at once say no more than their last with
 * the largest matchIndex and read_seq: raft_recv_append_reply above takes
 * the maximum of each ("update nextIndex and matchIndex", never back) and
 * the time of arrival, the same for one message as for all. */
size_t raft_coalesce_replies(struct raft_msg *msgs, size_t n)
{
    /* From the last back: each peer's latest successful reply absorbs the
     * earlier ones of its term, which are marked (type 0) and dropped. */
    size_t latest[RAFT_MAX_NODES + 1];
    bool seen[RAFT_MAX_NODES + 1] = {false};
    for (size_t i = n; i-- > 0;) {
        struct raft_msg *m = &msgs[i];
        if (!raft_is_success_reply(m))
            continue;
        if (seen[m->to] && msgs[latest[m->to]].term == m->term) {
            struct raft_msg *keep = &msgs[latest[m->to]];
            if (m->match_index > keep->match_index)
                keep->match_index = m->match_index;
            if (m->read_seq > keep->read_seq)
                keep->read_seq = m->read_seq;
            if (m->promise_ms < keep->promise_ms) /* the same node's: the same */
                keep->promise_ms = m->promise_ms;
            m->type = 0;
        } else {
            seen[m->to] = true;
            latest[m->to] = i;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].type != 0)
            msgs[k++] = msgs[i];
    return k;
}

/* Figure 2, Leaders: "If there exists an N such that N > commitIndex, a
 * majority of matchIndex[i] >= N, and log[N].term == currentTerm: set
 * commitIndex = N". The leader's own matchIndex is what it has made durable. */
void raft_maybe_commit(struct raft *r)
{
    uint64_t match[RAFT_MAX_NODES];
    size_t voters = 0;
    for (size_t i = 0; i < r->members.n; i++) {
        uint32_t id = r->members.m[i].id;
        if (r->members.m[i].role == RAFT_VOTER)
            match[voters++] = id == r->cfg.id ? r->persisted_index : r->progress[id - 1].match;
    }
    /* 4.2.2: a leader that removed itself replicates, but does not count
     * itself in majorities. */
    uint64_t n = raft_quorum_reaches(r, match, voters);
    if (n > r->commit_index && raft_term_at(r, n) == r->current_term)
        r->commit_index = n;
}

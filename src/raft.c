/* raft.c - the core's life cycle, its event entry points and its output.
 *
 * Every event (tick, message, proposal, read) changes state and queues
 * output; raft_ready() hands the output over in the order the caller must
 * carry it out, and raft_advance() tells the core it was done.
 */
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

const char *raft_strerror(int err)
{
    switch (err) {
    case RAFT_OK:
        return "ok";
    case RAFT_ENOTLEADER:
        return "not the leader";
    case RAFT_ENOMEM:
        return "out of memory";
    case RAFT_EINVAL:
        return "invalid argument";
    case RAFT_EBUSY:
        return "a leadership transfer is under way";
    default:
        return "unknown error";
    }
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "Follower";
    case RAFT_CANDIDATE:
        return "Candidate";
    case RAFT_LEADER:
        return "Leader";
    case RAFT_PRECANDIDATE:
        return "PreCandidate";
    }
    return "Unknown";
}

int raft_init(struct raft *r, const struct raft_config *cfg, uint64_t now_ms)
{
    memset(r, 0, sizeof(*r));
    if ((cfg->n_nodes < 1 && cfg->initial.n < 1) || cfg->n_nodes > RAFT_MAX_NODES ||
        cfg->initial.n > RAFT_MAX_NODES || cfg->heartbeat_ms == 0 || cfg->election_min_ms == 0 ||
        cfg->election_min_ms > cfg->election_max_ms || cfg->id < 1 || cfg->id > RAFT_MAX_NODES ||
        cfg->max_inflight_appends > RAFT_MAX_INFLIGHT_MSGS || cfg->lease_ms >= cfg->election_min_ms)
        return RAFT_EINVAL;
    r->cfg = *cfg;
    if (r->cfg.max_inflight_appends == 0)
        r->cfg.max_inflight_appends = RAFT_DEFAULT_INFLIGHT_MSGS;
    raft_members_initial(r);
    r->rng = cfg->seed ? cfg->seed : 0x9e3779b97f4a7c15ull;
    r->now_ms = now_ms;
    r->role = RAFT_FOLLOWER;
    r->leader_id = RAFT_NONE;
    /* A restarted voter does not know whom it heard from before: with
     * leases, a leader may still count on it for election_min_ms, as if it
     * had just heard from one (raft_in_lease). */
    if (r->cfg.lease_ms > 0)
        r->leader_contact_ms = now_ms;
    raft_reset_election_timer(r);
    return RAFT_OK;
}

/* The log starts after the snapshot. A log that still holds entries the
 * snapshot covers (the node died between making the snapshot durable and
 * dropping them) keeps what follows the snapshot only if it holds the
 * snapshot's last entry, as an install does (Figure 13, steps 6 and 7). */
static size_t raft_restore_first_kept(uint64_t snapshot_index, uint64_t snapshot_term,
                                      const struct raft_entry *entries, size_t n)
{
    if (n == 0 || entries[0].index > snapshot_index)
        return 0;
    uint64_t k = snapshot_index - entries[0].index; /* position of snapshot_index */
    if (k < n && entries[k].index == snapshot_index && entries[k].term == snapshot_term)
        return (size_t)k + 1;
    return n; /* the whole log was being replaced by the snapshot */
}

int raft_restore(struct raft *r, uint64_t term, uint32_t voted_for, uint64_t snapshot_index,
                 uint64_t snapshot_term, struct raft_entry *entries, size_t n)
{
    int rv = RAFT_OK;
    if (term > RAFT_TERM_MAX || snapshot_index > RAFT_INDEX_MAX || snapshot_term > term ||
        (snapshot_index == 0) != (snapshot_term == 0))
        rv = RAFT_EINVAL;
    r->current_term = term;
    r->voted_for = voted_for;
    r->log.snapshot_index = snapshot_index;
    r->log.snapshot_term = snapshot_term;
    size_t first = raft_restore_first_kept(snapshot_index, snapshot_term, entries, n);
    for (size_t i = 0; i < n; i++) {
        if (rv == RAFT_OK && i >= first && entries[i].index != raft_last_index(r) + 1)
            rv = RAFT_EINVAL;
        if (rv == RAFT_OK && i >= first)
            rv = raft_log_append_owned(&r->log, &entries[i]);
        raft_entry_free(&entries[i]);
    }
    /* A discarded log that went past the snapshot: storage drops that part
     * with the first ready (what it keeps at or below the snapshot is dead). */
    if (first == n && n > 0 && entries[n - 1].index > snapshot_index)
        r->truncate_from = snapshot_index + 1;
    free(entries);
    /* The configuration in force: the log's latest (the snapshot's comes
     * with raft_set_snapshot_members). */
    raft_members_refresh(r);
    /* The state machine starts from the snapshot, which holds only
     * committed entries. */
    r->commit_index = snapshot_index;
    r->last_applied = snapshot_index;
    r->stable_index = raft_last_index(r);
    r->persisted_index = raft_last_index(r);
    return rv;
}

void raft_close(struct raft *r)
{
    raft_log_free(&r->log);
    raft_snapshot_free(r);
    free(r->out_msgs);
    free(r->out_reads);
    free(r->out_notes);
    free(r->reads);
    memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------ queries */

uint64_t raft_first_index(const struct raft *r)
{
    return r->log.snapshot_index + 1;
}

uint64_t raft_last_index(const struct raft *r)
{
    return r->log.snapshot_index + r->log.len;
}

uint64_t raft_term_at(const struct raft *r, uint64_t index)
{
    if (index == r->log.snapshot_index)
        return r->log.snapshot_term; /* 0 at index 0 */
    if (index < r->log.snapshot_index || index > raft_last_index(r))
        return 0;
    return r->log.entries[index - r->log.snapshot_index - 1].term;
}

uint64_t raft_last_term(const struct raft *r)
{
    return raft_term_at(r, raft_last_index(r));
}

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
    if (index <= r->log.snapshot_index || index > raft_last_index(r))
        return NULL;
    return &r->log.entries[index - r->log.snapshot_index - 1];
}

size_t raft_quorum(const struct raft *r)
{
    return (size_t)__builtin_popcount(raft_voters_mask(r)) / 2 + 1;
}

static int raft_cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

uint64_t raft_quorum_reaches(const struct raft *r, uint64_t *values, size_t n)
{
    size_t q = raft_quorum(r);
    if (q == 0 || q > n)
        return 0;
    qsort(values, n, sizeof(values[0]), raft_cmp_desc);
    return values[q - 1];
}

int raft_node_slot(const struct raft *r, uint32_t id)
{
    return raft_is_member(r, id) ? (int)id - 1 : -1;
}

/* ------------------------------------------------------------ helpers */

/* xorshift64*: the core's only source of randomness, seeded by the caller. */
uint64_t raft_random(struct raft *r)
{
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 0x2545f4914f6cdd1dull;
}

/* Notes are best effort: one that finds no memory is not told. */
void raft_note(struct raft *r, const struct raft_note *note)
{
    if (r->n_out_notes == r->cap_out_notes) {
        size_t cap = r->cap_out_notes ? r->cap_out_notes * 2 : 8;
        struct raft_note *p = realloc(r->out_notes, cap * sizeof(*p));
        if (p == NULL)
            return;
        r->out_notes = p;
        r->cap_out_notes = cap;
    }
    r->out_notes[r->n_out_notes++] = *note;
}

int raft_send(struct raft *r, const struct raft_msg *m)
{
    if (r->n_out == r->cap_out) {
        size_t cap = r->cap_out ? r->cap_out * 2 : 16;
        struct raft_msg *p = realloc(r->out_msgs, cap * sizeof(*p));
        if (p == NULL)
            return RAFT_ENOMEM;
        r->out_msgs = p;
        r->cap_out = cap;
    }
    r->out_msgs[r->n_out++] = *m;
    return RAFT_OK;
}

void raft_unstable_from(struct raft *r, uint64_t from)
{
    if (r->stable_index >= from) {
        if (r->truncate_from == 0 || from < r->truncate_from)
            r->truncate_from = from;
        r->stable_index = from - 1;
    }
    if (r->persisted_index >= from)
        r->persisted_index = from - 1;
}

/* ------------------------------------------------------------ events */

/* Figure 2, Followers and Candidates: "If election timeout elapses without
 * receiving AppendEntries RPC from current leader or granting vote to
 * candidate: convert to candidate" (with Pre-Vote, first ask: 9.6). Leaders:
 * "repeat [heartbeats] during idle periods to prevent election timeouts";
 * with CheckQuorum, step down without a majority (raft_leadership.c). */
void raft_tick(struct raft *r, uint64_t now_ms)
{
    if (now_ms > r->now_ms)
        r->now_ms = now_ms;
    if (r->role == RAFT_LEADER) {
        raft_transfer_tick(r);
        raft_check_quorum(r);
        raft_membership_tick(r);
        if (r->role != RAFT_LEADER)
            return;
        if (r->now_ms >= r->heartbeat_due_ms) {
            if (r->cfg.lease_ms > 0)
                raft_round_start(r); /* every heartbeat renews the lease */
            raft_broadcast_append(r, true);
            r->heartbeat_due_ms = r->now_ms + r->cfg.heartbeat_ms;
        }
        return;
    }
    if (r->now_ms < r->election_deadline_ms)
        return;
    if (!raft_may_stand(r)) {
        /* A learner, a server not yet added, or one whose removal is
         * committed: it does not stand (raft_may_stand). */
        raft_reset_election_timer(r);
        return;
    }
    if (r->cfg.prevote)
        raft_become_precandidate(r);
    else
        raft_become_candidate(r, false);
}

void raft_set_options(struct raft *r, bool prevote, bool check_quorum)
{
    r->cfg.prevote = prevote;
    r->cfg.check_quorum = check_quorum;
}

/* Whether a message's numbers could have come from a correct peer. Anything
 * else (a term near 2^64, entries whose indexes or terms do not follow,
 * indexes past any real log) is dropped before it can change anything. */
static bool raft_msg_plausible(const struct raft_msg *m)
{
    if (m->term == 0 || m->term > RAFT_TERM_MAX)
        return false;
    switch (m->type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        return m->last_log_term <= m->term && m->last_log_index <= RAFT_INDEX_MAX &&
               (m->last_log_index == 0) == (m->last_log_term == 0);
    case RAFT_MSG_VOTE_REPLY:
    case RAFT_MSG_PREVOTE_REPLY:
        return m->leader_hint <= RAFT_MAX_NODES;
    case RAFT_MSG_TIMEOUT_NOW:
        return true;
    case RAFT_MSG_APPEND: {
        if (m->prev_index > RAFT_INDEX_MAX || m->prev_term > m->term ||
            m->commit > RAFT_INDEX_MAX || m->n_entries > RAFT_MAX_BATCH_ENTRIES ||
            (m->n_entries > 0 && m->entries == NULL))
            return false;
        uint64_t term = m->prev_term;
        for (size_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            if (e->index != m->prev_index + 1 + i || e->term < term || e->term > m->term ||
                e->term == 0 || e->type > RAFT_ENTRY_CONFIG || (e->len > 0 && e->data == NULL))
                return false;
            term = e->term;
        }
        return true;
    }
    case RAFT_MSG_APPEND_REPLY:
        return m->match_index <= RAFT_INDEX_MAX && m->rejected_index <= RAFT_INDEX_MAX &&
               m->hint_index <= RAFT_INDEX_MAX && m->hint_term <= m->term;
    case RAFT_MSG_SNAPSHOT:
        /* A snapshot ends at a real entry of a term no later than the
         * leader's; a chunk has bytes (or ends the file) and fits in it. */
        return m->snapshot_index > 0 && m->snapshot_index <= RAFT_INDEX_MAX &&
               m->snapshot_term > 0 && m->snapshot_term <= m->term &&
               m->len <= RAFT_SNAPSHOT_CHUNK_MAX && m->offset <= RAFT_SNAPSHOT_MAX_BYTES - m->len &&
               (m->len > 0 || m->done) && (m->len == 0 || m->data != NULL) && m->n_entries == 0;
    case RAFT_MSG_SNAPSHOT_REPLY:
        return m->snapshot_index <= RAFT_INDEX_MAX && m->offset <= RAFT_SNAPSHOT_MAX_BYTES &&
               m->next_offset <= RAFT_SNAPSHOT_MAX_BYTES;
    }
    return false;
}

/* Whether a message with a term above ours moves us to it. A pre-vote and
 * a granted pre-vote reply carry the term of an election that has not
 * started (9.6). With CheckQuorum, a RequestVote that reaches a node which
 * heard from a live leader lately is ignored, term and all (4.2.3: this is
 * also what keeps a removed server, which hears no more heartbeats, from
 * disrupting the cluster), unless a leadership transfer asked for it. */
static bool raft_term_is_news(struct raft *r, const struct raft_msg *m)
{
    if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_REPLY && m->granted))
        return false;
    bool sticky = r->cfg.check_quorum || r->cfg.lease_ms > 0;
    if (m->type == RAFT_MSG_VOTE && sticky && !m->transfer && raft_in_lease(r)) {
        struct raft_note note = {
            .type = RAFT_NOTE_VOTE_IGNORED,
            .node = m->from,
            .term = m->term,
            .leader = r->leader_id,
            .ms = raft_leader_heard_ago(r),
        };
        raft_note(r, &note);
        return false;
    }
    return true;
}

/* Figure 2, All Servers: "If RPC request or response contains term T >
 * currentTerm: set currentTerm = T, convert to follower". */
int raft_step(struct raft *r, const struct raft_msg *m)
{
    /* From any server id: a leader may add us before we know of it (4.1:
     * "servers process incoming RPC requests without consulting their
     * current configurations"). Votes and acknowledgements count only from
     * members, below. */
    if (m->to != r->cfg.id || m->from == r->cfg.id || m->from < 1 || m->from > RAFT_MAX_NODES ||
        !raft_msg_plausible(m))
        return RAFT_EINVAL;
    if (m->term > r->current_term && !raft_term_is_news(r, m)) {
        if (m->type == RAFT_MSG_VOTE)
            return RAFT_OK; /* ignored: no answer either */
    } else if (m->term > r->current_term) {
        bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT;
        uint32_t leader = from_leader ? m->from : RAFT_NONE;
        raft_become_follower(r, m->term, leader);
    }
    switch (m->type) {
    case RAFT_MSG_VOTE:
        return raft_recv_vote(r, m);
    case RAFT_MSG_VOTE_REPLY:
        return raft_recv_vote_reply(r, m);
    case RAFT_MSG_APPEND:
        return raft_recv_append(r, m);
    case RAFT_MSG_APPEND_REPLY:
        return raft_recv_append_reply(r, m);
    case RAFT_MSG_SNAPSHOT:
        return raft_recv_snapshot(r, m);
    case RAFT_MSG_SNAPSHOT_REPLY:
        return raft_recv_snapshot_reply(r, m);
    case RAFT_MSG_PREVOTE:
        return raft_recv_prevote(r, m);
    case RAFT_MSG_PREVOTE_REPLY:
        return raft_recv_prevote_reply(r, m);
    case RAFT_MSG_TIMEOUT_NOW:
        return raft_recv_timeout_now(r, m);
    }
    return RAFT_EINVAL;
}

/* Figure 2, Leaders: "If command received from client: append entry to local
 * log, respond after entry applied to state machine". The entry is sent with
 * the next raft_ready(), together with every other entry proposed before it:
 * one message and one fsync carry them all. */
int raft_propose(struct raft *r, const uint8_t *data, uint32_t len, uint64_t *index, uint64_t *term)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (r->transfer_to != RAFT_NONE)
        return RAFT_EBUSY;
    struct raft_entry e = {
        .term = r->current_term,
        .index = raft_last_index(r) + 1,
        .type = RAFT_ENTRY_COMMAND,
        .len = len,
        .data = (uint8_t *)data,
    };
    if (raft_log_append(&r->log, &e) != 0)
        return RAFT_ENOMEM;
    *index = e.index;
    *term = e.term;
    return RAFT_OK;
}

bool raft_timeout_now(struct raft *r)
{
    if (r->role == RAFT_LEADER || !raft_may_stand(r))
        return false;
    /* With leases, a node that answered a leader lately promised it no vote
     * for another, its own included: it does not stand before the promise
     * ends (a leadership transfer is how to move leadership at once). Nor
     * do voters set their leader aside for it: that leader did not give its
     * lease up, as it does for a transfer. */
    if (r->cfg.lease_ms > 0 && raft_in_lease(r))
        return false;
    raft_become_candidate(r, r->cfg.lease_ms == 0);
    return true;
}

/* ------------------------------------------------------------ output */

/* A leader's peer has entries waiting and room in its pipeline. */
static bool raft_peer_wants_append(const struct raft *r, uint32_t id)
{
    const struct raft_progress *pr = &r->progress[id - 1];
    if (id == r->cfg.id || pr->mode != RAFT_PROGRESS_PIPELINE)
        return false;
    if (pr->next > raft_last_index(r))
        return false;
    return raft_pipeline_open(r, pr);
}

bool raft_has_ready(const struct raft *r)
{
    if (r->hard_state_dirty || r->truncate_from != 0 || r->stable_index < raft_last_index(r) ||
        r->n_out > 0 || r->n_out_reads > 0 || r->n_out_notes > 0 ||
        r->commit_index > r->last_applied || r->install_pending || r->snap_recv.buf_len > 0 ||
        r->snap_recv.buf_done)
        return true;
    if (r->role != RAFT_LEADER)
        return false;
    if (r->read_broadcast_needed)
        return true;
    for (size_t i = 0; i < r->members.n; i++)
        if (raft_peer_wants_append(r, r->members.m[i].id))
            return true;
    return false;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    memset(rd, 0, sizeof(*rd));
    if (r->role == RAFT_LEADER) {
        if (r->read_broadcast_needed) {
            /* Dissertation 6.4: a new heartbeat round confirms leadership
             * for every read registered since the last one. */
            raft_round_start(r);
            r->read_broadcast_needed = false;
            raft_broadcast_append(r, true);
        } else {
            for (size_t i = 0; i < r->members.n; i++)
                if (raft_peer_wants_append(r, r->members.m[i].id))
                    raft_send_append(r, (int)r->members.m[i].id - 1, false);
        }
    }
    /* Outgoing AppendEntries name their entries by position; point at them
     * now that the log will not move until raft_advance. */
    for (size_t i = 0; i < r->n_out; i++) {
        struct raft_msg *m = &r->out_msgs[i];
        if (m->type == RAFT_MSG_APPEND && m->n_entries > 0)
            m->entries = raft_entry_at(r, m->prev_index + 1);
    }

    raft_snapshot_ready(r, rd);
    rd->hard_state_changed = r->hard_state_dirty;
    rd->term = r->current_term;
    rd->voted_for = r->voted_for;
    rd->truncate_from = r->truncate_from;
    if (r->stable_index < raft_last_index(r)) {
        rd->entries = &r->log.entries[r->stable_index - r->log.snapshot_index];
        rd->n_entries = raft_last_index(r) - r->stable_index;
    }
    rd->persist_before_send = r->hard_state_dirty || r->truncate_from != 0 ||
                              r->role != RAFT_LEADER || rd->snapshot_install != NULL ||
                              rd->snapshot_chunk != NULL;
    rd->msgs = r->out_msgs;
    rd->n_msgs = r->n_out;
    if (r->commit_index > r->last_applied) {
        rd->apply_from = r->last_applied + 1;
        rd->apply_to = r->commit_index;
    }
    rd->reads = r->out_reads;
    rd->n_reads = r->n_out_reads;
    rd->notes = r->out_notes;
    rd->n_notes = r->n_out_notes;
    r->ready_stable_to = raft_last_index(r);
    r->ready_apply_to = rd->apply_to;
}

void raft_storage_failed(struct raft *r, uint64_t durable_index)
{
    if (r->stable_index > durable_index)
        r->stable_index = durable_index;
    if (r->persisted_index > durable_index)
        r->persisted_index = durable_index;
    /* What the snapshot covers is durable in it. */
    if (r->stable_index < r->log.snapshot_index)
        r->stable_index = r->log.snapshot_index;
    if (r->persisted_index < r->log.snapshot_index)
        r->persisted_index = r->log.snapshot_index;
    raft_snapshot_storage_failed(r);
    r->n_out = 0;
    r->n_out_reads = 0;
    r->n_out_notes = 0; /* the caller told them when it took the ready */
    if (r->role == RAFT_LEADER)
        raft_become_follower(r, r->current_term, RAFT_NONE);
}

/* The part of raft_advance that does not depend on the entries being
 * durable. */
static void raft_advance_common(struct raft *r, const struct raft_ready *rd)
{
    if (rd->hard_state_changed)
        r->hard_state_dirty = false;
    r->truncate_from = 0;
    r->stable_index = r->ready_stable_to;
    if (rd->apply_to > r->last_applied)
        r->last_applied = rd->apply_to;
    r->n_out = 0;
    r->n_out_reads = 0;
    r->n_out_notes = 0;
    /* A snapshot received in full is installed now that it is durable. */
    raft_snapshot_advance(r, rd);
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    raft_advance_common(r, rd);
    r->persisted_index = r->ready_stable_to;
    if (r->role == RAFT_LEADER) {
        /* The leader's own copy now counts toward a majority. */
        raft_maybe_commit(r);
        raft_reads_check(r);
        raft_membership_tick(r);
    }
}

void raft_advance_unsynced(struct raft *r, const struct raft_ready *rd)
{
    raft_advance_common(r, rd);
    if (r->role == RAFT_LEADER) {
        raft_reads_check(r);
        raft_membership_tick(r);
    }
}

/* Figure 2, Leaders: the commit rule counts the leader's own matchIndex,
 * which is what its storage has made durable ("a log entry is committed
 * once the leader that created the entry has replicated it on a majority of
 * the servers", 5.3; replicated means stored durably). */
void raft_synced(struct raft *r, uint64_t index, uint64_t term)
{
    if (index <= r->persisted_index || index > r->stable_index || raft_term_at(r, index) != term)
        return;
    r->persisted_index = index;
    if (r->role == RAFT_LEADER) {
        raft_maybe_commit(r);
        raft_reads_check(r);
        raft_membership_tick(r);
    }
}

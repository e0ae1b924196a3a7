/* sim_scenarios.c - directed tests, each named after a rule of the Raft
 * paper. They run on the simulated cluster with a reliable 1 ms network, so
 * the checker watches them too; logs are set up by writing the nodes' disks
 * before they start. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim.h"

#define EXPECT(s, cond, ...)                                                                       \
    do {                                                                                           \
        if (!(s)->failed && !(cond))                                                               \
            sim_fail((s), __VA_ARGS__);                                                            \
        if ((s)->failed)                                                                           \
            return;                                                                                \
    } while (0)

/* Messages seen leaving the nodes: [type][from][to][granted, success, or
 * for InstallSnapshot done]. */
struct seen {
    uint32_t count[10][RAFT_MAX_NODES + 1][RAFT_MAX_NODES + 1][2];
    struct raft_msg last_vote_reply;
    uint64_t snapshot_offset[RAFT_MAX_NODES + 1][RAFT_MAX_NODES + 1]; /* furthest chunk sent */
    uint64_t snapshot_term[RAFT_MAX_NODES + 1][RAFT_MAX_NODES + 1];   /* of the last one */
    uint32_t snapshot_starts[RAFT_MAX_NODES + 1][RAFT_MAX_NODES + 1]; /* chunks at offset 0 */
};

static void observe(void *arg, const struct raft_msg *m)
{
    struct seen *seen = arg;
    bool yes = m->type == RAFT_MSG_VOTE_REPLY || m->type == RAFT_MSG_PREVOTE_REPLY ? m->granted
               : m->type == RAFT_MSG_SNAPSHOT                                      ? m->done
                                                                                   : m->success;
    if (m->type < 1 || m->type > 9 || m->from > RAFT_MAX_NODES || m->to > RAFT_MAX_NODES)
        return;
    seen->count[m->type][m->from][m->to][yes]++;
    if (m->type == RAFT_MSG_VOTE_REPLY)
        seen->last_vote_reply = *m;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        if (m->offset > seen->snapshot_offset[m->from][m->to])
            seen->snapshot_offset[m->from][m->to] = m->offset;
        seen->snapshot_term[m->from][m->to] = m->term;
        if (m->offset == 0)
            seen->snapshot_starts[m->from][m->to]++;
    }
}

/* Long election timeouts, so that only forced elections happen unless a
 * scenario waits for more than a second. */
static const struct sim_params quiet = {
    .election_min_ms = 1000,
    .election_max_ms = 2000,
    .heartbeat_ms = 100,
    .tick_ms = 10,
    .tick_at_deadlines = true,
    .send_first = 1.0,
    .down_min_ms = 10,
    .down_max_ms = 10,
    .disk_retry_ms = 1000,
};

/* The real defaults of raftkv-node. */
static const struct sim_params lively = {
    .election_min_ms = 150,
    .election_max_ms = 300,
    .heartbeat_ms = 50,
    .tick_ms = 10,
    .tick_at_deadlines = true,
    .send_first = 1.0,
    .down_min_ms = 10,
    .down_max_ms = 10,
    .disk_retry_ms = 1000,
};

/* A hand-made log: terms[i] is the term of index i + 1; the data names the
 * index and term, so equal index and term means equal entry. */
static void write_log(struct sim_node *nd, uint64_t term, const uint64_t *terms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char data[32];
        int len = snprintf(data, sizeof(data), "entry %zu of term %" PRIu64, i + 1, terms[i]);
        sim_disk_append(&nd->disk, terms[i], RAFT_ENTRY_COMMAND, data, (uint32_t)len);
    }
    sim_disk_sync(&nd->disk);
    nd->disk.term = term;
}

/* Terms for a log of n entries: term t from index from[t - 1] on. */
static void write_log_by_terms(struct sim_node *nd, uint64_t term, const uint64_t *from,
                               size_t n_terms, size_t n)
{
    uint64_t terms[512];
    for (size_t i = 0; i < n && i < 512; i++) {
        terms[i] = 1;
        for (size_t t = 0; t < n_terms; t++)
            if (i + 1 >= from[t])
                terms[i] = t + 1;
    }
    write_log(nd, term, terms, n);
}

static struct sim_node *node(struct sim *s, uint32_t id)
{
    return sim_node_by_id(s, id);
}

static bool has_leader(struct sim *s, void *arg)
{
    (void)arg;
    return sim_leader(s) != NULL;
}

static bool is_leader(struct sim *s, void *arg)
{
    const struct sim_node *nd = arg;
    (void)s;
    return nd->up && nd->r.role == RAFT_LEADER;
}

/* Every live node has committed at least *index. */
static bool all_committed(struct sim *s, void *arg)
{
    uint64_t index = *(const uint64_t *)arg;
    for (size_t i = 0; i < s->n; i++)
        if (!s->nodes[i].up || s->nodes[i].r.commit_index < index)
            return false;
    return true;
}

/* A leader whose own-term entry has committed. */
static bool leader_ready(struct sim *s, void *arg)
{
    (void)arg;
    struct sim_node *ld = sim_leader(s);
    return ld != NULL && raft_term_at(&ld->r, ld->r.commit_index) == ld->r.current_term;
}

static bool logs_equal(const struct sim_node *a, const struct sim_node *b)
{
    if (a->r.log.len != b->r.log.len)
        return false;
    for (size_t i = 0; i < a->r.log.len; i++)
        if (!sim_entry_equal(&a->r.log.entries[i], &b->r.log.entries[i]))
            return false;
    return true;
}

/* The snapshots' scenarios: small chunks, so that a snapshot takes many. */
static const struct sim_params quiet_chunks = {
    .election_min_ms = 1000,
    .election_max_ms = 2000,
    .heartbeat_ms = 100,
    .tick_ms = 10,
    .tick_at_deadlines = true,
    .send_first = 1.0,
    .down_min_ms = 10,
    .down_max_ms = 10,
    .disk_retry_ms = 1000,
    .snapshot_chunk = 4,
};

struct node_index {
    struct sim_node *nd;
    uint64_t index;
};

static bool node_committed(struct sim *s, void *arg)
{
    const struct node_index *ni = arg;
    (void)s;
    return ni->nd->up && ni->nd->r.commit_index >= ni->index && ni->nd->applied >= ni->index;
}

/* The leader sent a chunk past offset 8 to the node. */
static bool transfer_under_way(struct sim *s, void *arg)
{
    const struct seen *seen = arg;
    (void)s;
    return seen->snapshot_offset[1][3] >= 8;
}

/* Nodes 1 and 2 have applied *index. */
static bool two_applied(struct sim *s, void *arg)
{
    uint64_t index = *(const uint64_t *)arg;
    return s->nodes[0].applied >= index && s->nodes[1].applied >= index;
}

/* Propose count commands at the leader (node 1 or 2), one batch, and wait
 * until nodes 1 and 2 have applied them; the index of the last, 0 if that
 * failed. */
static uint64_t write_and_commit(struct sim *s, struct sim_node *ld, size_t count)
{
    if (sim_propose_batch(s, ld, count) != count)
        return 0;
    uint64_t index = raft_last_index(&ld->r);
    return sim_run_until(s, s->now + 2000, two_applied, &index) ? index : 0;
}

/* ------------------------------------------------------------ scenarios */

/* 5.4.1: "the voter denies its vote if its own log is more up-to-date than
 * that of the candidate". */
static void stale_candidate_gets_no_vote(struct sim *s, struct seen *seen)
{
    write_log(node(s, 1), 2, (const uint64_t[]){1}, 1);
    write_log(node(s, 2), 2, (const uint64_t[]){1, 2}, 2);
    write_log(node(s, 3), 2, (const uint64_t[]){1, 2}, 2);
    sim_start_all(s);
    sim_timeout_now(s, node(s, 1));
    sim_run_for(s, 20);
    EXPECT(s, seen->count[RAFT_MSG_VOTE_REPLY][2][1][0] == 1, "node 2 did not refuse node 1");
    EXPECT(s, seen->count[RAFT_MSG_VOTE_REPLY][3][1][0] == 1, "node 3 did not refuse node 1");
    EXPECT(s, seen->count[RAFT_MSG_VOTE_REPLY][2][1][1] == 0, "node 2 voted for a stale log");
    EXPECT(s, seen->count[RAFT_MSG_VOTE_REPLY][3][1][1] == 0, "node 3 voted for a stale log");
    EXPECT(s, node(s, 1)->r.role != RAFT_LEADER, "a stale candidate became leader");
    /* The others time out in their turn; one of them leads, never node 1. */
    EXPECT(s, sim_run_until(s, s->now + 5000, has_leader, NULL), "no leader after 5 s");
    EXPECT(s, sim_leader(s)->id != 1, "node 1 with its stale log became leader");
    uint64_t index = 3;
    EXPECT(s, sim_run_until(s, s->now + 2000, all_committed, &index), "no commit everywhere");
    EXPECT(s, s->committed[1].e.term == 2, "entry 2 of term 2 was lost");
}

/* 5.4.2 and Figure 8: "Raft never commits log entries from previous terms
 * by counting replicas. Only log entries from the leader's current term are
 * committed by counting replicas". */
static void leader_counts_only_its_own_term(struct sim *s, struct seen *seen)
{
    (void)seen;
    write_log(node(s, 1), 3, (const uint64_t[]){1, 2}, 2);
    write_log(node(s, 2), 3, (const uint64_t[]){1, 2}, 2);
    write_log(node(s, 3), 3, (const uint64_t[]){1}, 1);
    sim_start_all(s);
    sim_timeout_now(s, node(s, 1));
    EXPECT(s, sim_run_until(s, s->now + 50, is_leader, node(s, 1)), "node 1 was not elected");
    /* Its AppendEntries get lost; node 2 answers that it holds index 2, as
     * it would to an AppendEntries carrying entries up to 2: entry 2 of term
     * 2 is now on a majority. */
    s->net.cut[0][1] = s->net.cut[0][2] = true;
    struct raft_msg ack = {
        .type = RAFT_MSG_APPEND_REPLY,
        .from = 2,
        .to = 1,
        .term = node(s, 1)->r.current_term,
        .success = true,
        .match_index = 2,
    };
    sim_inject(s, node(s, 1), &ack);
    EXPECT(s, node(s, 1)->r.commit_index == 0,
           "entry 2 of term 2 committed by counting in term %" PRIu64 " (commit %" PRIu64 ")",
           node(s, 1)->r.current_term, node(s, 1)->r.commit_index);
    /* Once its no-op of term 4 is on a majority, everything before commits. */
    sim_net_heal(s);
    uint64_t index = 3;
    EXPECT(s, sim_run_until(s, s->now + 2000, all_committed, &index), "no commit everywhere");
    EXPECT(s, s->committed[1].e.term == 2 && s->committed[2].e.term == 4,
           "committed terms %" PRIu64 ", %" PRIu64, s->committed[1].e.term, s->committed[2].e.term);
}

/* Figure 2, AppendEntries rule 3: "If an existing entry conflicts with a new
 * one (same index but different terms), delete the existing entry and all
 * that follow it". Section 8: a new leader starts with a no-op. */
static void conflict_truncates_follower_log(struct sim *s, struct seen *seen)
{
    (void)seen;
    write_log(node(s, 1), 3, (const uint64_t[]){1, 3}, 2);
    write_log(node(s, 2), 3, (const uint64_t[]){1, 3}, 2);
    write_log(node(s, 3), 2, (const uint64_t[]){1, 2, 2}, 3);
    sim_start_all(s);
    sim_timeout_now(s, node(s, 1));
    uint64_t index = 3;
    EXPECT(s, sim_run_until(s, s->now + 2000, all_committed, &index), "no commit everywhere");
    const struct raft *r3 = &node(s, 3)->r;
    EXPECT(s, r3->log.len == 3 && raft_term_at(r3, 2) == 3 && raft_term_at(r3, 3) == 4,
           "node 3 log: %zu entries, terms %" PRIu64 ", %" PRIu64 ", %" PRIu64, r3->log.len,
           raft_term_at(r3, 1), raft_term_at(r3, 2), raft_term_at(r3, 3));
    EXPECT(s, node(s, 3)->disk.len == 3 && node(s, 3)->disk.entries[1].term == 3,
           "node 3 did not truncate its disk");
    EXPECT(s, raft_entry_at(r3, 3)->type == RAFT_ENTRY_NOOP,
           "the new term does not start with a no-op");
}

/* 5.3: "the follower can include the term of the conflicting entry and the
 * first index it stores for that term. With this information, the leader can
 * decrement nextIndex to bypass all of the conflicting entries in that term". */
static void far_behind_follower_uses_hint(struct sim *s, struct seen *seen)
{
    write_log_by_terms(node(s, 1), 3, (const uint64_t[]){1, 51, 101}, 3, 200);
    write_log_by_terms(node(s, 2), 1, (const uint64_t[]){1}, 1, 10);
    write_log_by_terms(node(s, 3), 2, (const uint64_t[]){1, 51}, 2, 120);
    sim_start_all(s);
    sim_timeout_now(s, node(s, 1));
    uint64_t index = 201;
    EXPECT(s, sim_run_until(s, s->now + 2000, all_committed, &index), "no commit everywhere");
    for (uint32_t id = 2; id <= 3; id++) {
        uint32_t rejected = seen->count[RAFT_MSG_APPEND_REPLY][id][1][0];
        EXPECT(s, rejected <= 3, "node %u needed %u rejections to find where its log matches", id,
               rejected);
        EXPECT(s, logs_equal(node(s, 1), node(s, id)), "node %u's log differs from the leader's",
               id);
    }
}

/* Dissertation 6.4: a leader serves a read only after a heartbeat round
 * confirms it still leads; one that has been deposed answers "not leader". */
static void deposed_leader_read_fails(struct sim *s, struct seen *seen)
{
    (void)seen;
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, 5000, leader_ready, NULL), "no leader within 5 s");
    struct sim_node *old = sim_leader(s);
    struct sim_node *follower = old->id == 1 ? node(s, 2) : node(s, 1);
    uint64_t read_id, index, term;
    EXPECT(s, sim_read(s, follower, &read_id) == RAFT_ENOTLEADER, "a follower took a read");
    EXPECT(s, sim_propose(s, old, &index, &term) == RAFT_OK, "the leader refused a write");

    sim_net_isolate(s, old->slot);
    EXPECT(s, sim_read(s, old, &read_id) == RAFT_OK, "the isolated leader refused a read");
    uint64_t old_term = old->r.current_term;
    struct sim_node *ld = NULL;
    uint64_t deadline = s->now + 5000;
    while ((ld = sim_leader(s)) == NULL || ld == old) {
        EXPECT(s, sim_step(s, deadline), "the majority elected no new leader");
    }
    EXPECT(s, ld->r.current_term > old_term, "new leader's term is not higher");
    EXPECT(s, sim_run_until(s, s->now + 2000, leader_ready, NULL), "new leader did not commit");
    const struct sim_read *rd = &s->reads[read_id - 1];
    EXPECT(s, !rd->answered || !rd->ok, "the deposed leader served a read");

    sim_net_heal(s);
    deadline = s->now + 3000;
    while (!rd->answered)
        EXPECT(s, sim_step(s, deadline), "the deposed leader never answered its read");
    EXPECT(s, !rd->ok, "the deposed leader served a read after the heal");
}

/* 5.4: an entry is committed once stored on a majority: a leader cut off
 * with a minority keeps its writes uncommitted, and they are replaced. */
/* The leader and one follower on one side of a partition of 5. */
static struct sim_node *cut_leader_with_one(struct sim *s)
{
    sim_start_all(s);
    if (!sim_run_until(s, 5000, leader_ready, NULL)) {
        sim_fail(s, "no leader within 5 s");
        return NULL;
    }
    struct sim_node *old = sim_leader(s);
    struct sim_node *buddy = old->id == 1 ? node(s, 2) : node(s, 1);
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = 0; j < s->n; j++) {
            bool a = &s->nodes[i] == old || &s->nodes[i] == buddy;
            bool b = &s->nodes[j] == old || &s->nodes[j] == buddy;
            s->net.cut[i][j] = a != b;
        }
    return old;
}

static void minority_leader_never_commits(struct sim *s, struct seen *seen)
{
    (void)seen;
    struct sim_node *old = cut_leader_with_one(s);
    if (old == NULL)
        return;
    struct sim_node *buddy = old->id == 1 ? node(s, 2) : node(s, 1);
    uint64_t first_command = s->n_commands;
    EXPECT(s, sim_propose_batch(s, old, 5) == 5, "the leader refused writes");
    uint64_t commit = old->r.commit_index;
    sim_run_for(s, 3000);
    EXPECT(s, old->r.commit_index == commit && buddy->r.commit_index <= commit,
           "the minority committed: commit %" PRIu64 " -> %" PRIu64, commit, old->r.commit_index);
    struct sim_node *ld = sim_leader(s);
    EXPECT(s, ld != NULL && ld != old && ld != buddy, "the majority has no leader");
    uint64_t index, term;
    EXPECT(s, sim_propose(s, ld, &index, &term) == RAFT_OK, "the new leader refused a write");
    sim_net_heal(s);
    EXPECT(s, sim_run_until(s, s->now + 5000, all_committed, &index),
           "the cluster did not converge after the heal");
    for (uint64_t id = first_command; id < first_command + 5; id++)
        EXPECT(s, s->commands[id].committed_at == 0, "minority write #%" PRIu64 " committed", id);
    EXPECT(s, raft_term_at(&old->r, index) == term, "the old leader's log was not repaired");
}

/* Figure 2: votedFor is persistent state: "updated on stable storage before
 * responding to RPCs"; a node grants at most one vote per term. */
static void vote_survives_restart(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    struct sim_node *n3 = node(s, 3);
    struct raft_msg ask = {.type = RAFT_MSG_VOTE, .from = 1, .to = 3, .term = 5};
    sim_inject(s, n3, &ask);
    EXPECT(s, seen->last_vote_reply.to == 1 && seen->last_vote_reply.granted, "vote not granted");
    sim_crash(s, n3, 0);
    sim_start(s, n3);
    ask.from = 2;
    sim_inject(s, n3, &ask);
    EXPECT(s, seen->last_vote_reply.to == 2 && !seen->last_vote_reply.granted,
           "a second vote in term 5 after a restart");
    ask.from = 1;
    sim_inject(s, n3, &ask);
    EXPECT(s, seen->last_vote_reply.to == 1 && seen->last_vote_reply.granted,
           "the same candidate asking again was refused");
}

/* Figure 2, AppendEntries rule 5: "set commitIndex = min(leaderCommit, index
 * of last new entry)": entries beyond those may not be the leader's. */
static void follower_commits_only_what_it_got(struct sim *s, struct seen *seen)
{
    (void)seen;
    write_log(node(s, 1), 3, (const uint64_t[]){1, 1, 3}, 3);
    write_log(node(s, 2), 3, (const uint64_t[]){1, 1, 3}, 3);
    write_log(node(s, 3), 2, (const uint64_t[]){1, 1, 2}, 3);
    sim_start_all(s);
    /* An AppendEntries of term 3 carrying only entry 2, leader commit 3. */
    struct raft_entry two = node(s, 1)->disk.entries[1];
    struct raft_msg append = {
        .type = RAFT_MSG_APPEND,
        .from = 1,
        .to = 3,
        .term = 3,
        .prev_index = 1,
        .prev_term = 1,
        .commit = 3,
        .n_entries = 1,
        .entries = &two,
    };
    sim_inject(s, node(s, 3), &append);
    EXPECT(s, node(s, 3)->r.commit_index == 2,
           "node 3 committed %" PRIu64 " with a stale entry 3 of term 2",
           node(s, 3)->r.commit_index);
}

/* Figure 2: votedFor is "updated on stable storage before responding to
 * RPCs". A vote granted in term 5 and replaced by term 6 later in the same
 * batch was never written: its reply must not leave. */
static void vote_replaced_in_batch_is_not_sent(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    const struct raft_msg batch[] = {
        {.type = RAFT_MSG_VOTE, .from = 1, .to = 3, .term = 5},
        {.type = RAFT_MSG_VOTE, .from = 2, .to = 3, .term = 6},
    };
    sim_inject_batch(s, node(s, 3), batch, 2);
    EXPECT(s, seen->count[RAFT_MSG_VOTE_REPLY][3][2][1] == 1,
           "node 3 did not vote for 2 in term 6");
    EXPECT(s, seen->count[RAFT_MSG_VOTE_REPLY][3][1][1] == 0,
           "node 3 sent its vote of term 5, which term 6 replaced before it was written");
}

/* Figure 2, AppendEntries: success means the follower's log now holds the
 * leader's entries, on stable storage. Entries of term 2 acknowledged and
 * then, in the same batch, replaced by a conflicting entry of term 3 were
 * never written: the term-2 acknowledgement must not leave. */
static void ack_undone_in_batch_is_not_sent(struct sim *s, struct seen *seen)
{
    for (uint32_t id = 1; id <= 3; id++)
        write_log(node(s, id), 2, (const uint64_t[]){1}, 1);
    sim_start_all(s);
    const struct raft_entry of_term2[] = {
        {.term = 2, .index = 2, .type = RAFT_ENTRY_COMMAND, .len = 5, .data = (uint8_t *)"old 2"},
        {.term = 2, .index = 3, .type = RAFT_ENTRY_COMMAND, .len = 5, .data = (uint8_t *)"old 3"},
    };
    const struct raft_entry of_term3 = {
        .term = 3, .index = 2, .type = RAFT_ENTRY_COMMAND, .len = 5, .data = (uint8_t *)"new 2"};
    const struct raft_msg batch[] = {
        {.type = RAFT_MSG_APPEND,
         .from = 1,
         .to = 3,
         .term = 2,
         .prev_index = 1,
         .prev_term = 1,
         .n_entries = 2,
         .entries = of_term2},
        {.type = RAFT_MSG_APPEND,
         .from = 2,
         .to = 3,
         .term = 3,
         .prev_index = 1,
         .prev_term = 1,
         .n_entries = 1,
         .entries = &of_term3},
    };
    sim_inject_batch(s, node(s, 3), batch, 2);
    const struct sim_disk *d = &node(s, 3)->disk;
    EXPECT(s, d->len == 2 && d->entries[1].term == 3, "node 3 did not take the entry of term 3");
    EXPECT(s, seen->count[RAFT_MSG_APPEND_REPLY][3][2][1] == 1, "node 3 did not acknowledge to 2");
    EXPECT(s, seen->count[RAFT_MSG_APPEND_REPLY][3][1][1] == 0,
           "node 3 acknowledged entries of term 2 that term 3 replaced");
}

/* A leader whose disk fails cannot count its own copy of the entries: it
 * steps down (raft_storage_failed), even though its AppendEntries left
 * before its fsync. While its disk fails it promises nothing and does not
 * campaign; another node leads and commits. Once the disk works again it
 * writes what it lost and catches up: all logs end up the same. */
static void leader_disk_fails_mid_append(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, 5000, leader_ready, NULL), "no leader within 5 s");
    struct sim_node *old = sim_leader(s);
    uint64_t old_term = old->r.current_term;
    size_t stored = old->disk.len;
    uint32_t appends = 0, asked = 0;
    for (uint32_t id = 1; id <= 3; id++) {
        appends += seen->count[RAFT_MSG_APPEND][old->id][id][0];
        asked += seen->count[RAFT_MSG_VOTE][old->id][id][0];
    }

    sim_disk_failing(s, old, s->now + 2500, SIM_DISK_APPEND);
    EXPECT(s, sim_propose_batch(s, old, 5) == 5, "the leader refused writes");
    uint32_t appends_after = 0;
    for (uint32_t id = 1; id <= 3; id++)
        appends_after += seen->count[RAFT_MSG_APPEND][old->id][id][0];
    EXPECT(s, appends_after > appends, "the leader sent no AppendEntries before its fsync");
    EXPECT(s, old->disk_error && old->disk_failures == 1, "the leader's persist did not fail");
    EXPECT(s, old->r.role == RAFT_FOLLOWER && old->r.current_term == old_term,
           "the leader did not step down: %s of term %" PRIu64, raft_role_name(old->r.role),
           old->r.current_term);
    EXPECT(s, old->disk.len == stored && old->r.log.len == stored + 5,
           "after the failed append: %zu entries on disk (%zu before), %zu in memory",
           old->disk.len, stored, old->r.log.len);

    /* The others elect a leader among themselves and commit. */
    struct sim_node *ld = NULL;
    uint64_t deadline = s->now + 2000;
    while ((ld = sim_leader(s)) == NULL || ld == old ||
           raft_term_at(&ld->r, ld->r.commit_index) != ld->r.current_term)
        EXPECT(s, sim_step(s, deadline), "no new leader committed while the disk failed");
    EXPECT(s, old->disk_error, "the disk recovered too early for the scenario");
    uint64_t index, term;
    EXPECT(s, sim_propose(s, ld, &index, &term) == RAFT_OK, "the new leader refused a write");
    struct sim_node *third = NULL;
    for (uint32_t id = 1; id <= 3; id++)
        if (node(s, id) != old && node(s, id) != ld)
            third = node(s, id);
    deadline = s->now + 1000;
    while (ld->r.commit_index < index || third->r.commit_index < index)
        EXPECT(s, sim_step(s, deadline), "the new leader's write did not commit");
    EXPECT(s, old->disk_error && old->r.role != RAFT_LEADER,
           "the failed node recovered or led too early for the scenario");
    uint32_t asked_after = 0;
    for (uint32_t id = 1; id <= 3; id++)
        asked_after += seen->count[RAFT_MSG_VOTE][old->id][id][0];
    EXPECT(s, asked_after == asked, "the node whose disk failed asked for votes");

    /* The disk works again at 2.5 s; the node retries every second. */
    deadline = s->now + 3000;
    while (old->disk_error || old->r.log.len != ld->r.log.len ||
           old->r.commit_index < ld->r.commit_index || old->applied < old->r.commit_index)
        EXPECT(s, sim_step(s, deadline), "the node whose disk failed did not catch up");
    EXPECT(s, old->disk_failures >= 2, "no retry failed while the disk was failing (%u failures)",
           old->disk_failures);
    EXPECT(s, sim_run_until(s, s->now + 3000, all_committed, &index), "no commit everywhere");
    sim_run_for(s, 200);
    for (uint32_t id = 1; id <= 3; id++)
        EXPECT(s, logs_equal(node(s, id), ld), "node %u's log differs from the leader's", id);
    EXPECT(s, old->disk.len == old->r.log.len && old->disk.synced == old->disk.len,
           "the recovered node's disk holds %zu entries (%zu synced), its log %zu", old->disk.len,
           old->disk.synced, old->r.log.len);
    for (size_t k = 0; k < old->disk.len; k++)
        EXPECT(s, sim_entry_equal(&old->disk.entries[k], &old->r.log.entries[k]),
               "the recovered node's disk differs from its log at %zu", k + 1);
}

/* Section 7: "the leader must occasionally send snapshots to followers
 * that lag behind". A follower down while the leader took 40 entries and
 * compacted them comes back and gets the snapshot, in many chunks, then the
 * entries after it; its state is the leader's. */
static void lagging_follower_gets_snapshot(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    sim_timeout_now(s, node(s, 1));
    EXPECT(s, sim_run_until(s, s->now + 1000, leader_ready, NULL), "no leader");
    struct sim_node *ld = node(s, 1), *lag = node(s, 3);
    sim_crash(s, lag, 0);
    uint64_t index = write_and_commit(s, ld, 40);
    EXPECT(s, index > 0, "the writes did not commit");
    EXPECT(s, sim_compact(s, ld, true) && sim_compact(s, node(s, 2), true), "no compaction");
    EXPECT(s, raft_first_index(&ld->r) > 40, "the leader kept its log");
    sim_propose_batch(s, ld, 5);
    index = raft_last_index(&ld->r);
    sim_start(s, lag);
    struct node_index want = {lag, index};
    EXPECT(s, sim_run_until(s, s->now + 3000, node_committed, &want),
           "the lagging follower did not catch up");
    EXPECT(s, lag->installs == 1, "node 3 installed %u snapshots", lag->installs);
    uint32_t chunks =
        seen->count[RAFT_MSG_SNAPSHOT][1][3][0] + seen->count[RAFT_MSG_SNAPSHOT][1][3][1];
    EXPECT(s, chunks >= 8, "the snapshot went in %u chunks", chunks);
    EXPECT(s, lag->r.log.snapshot_index == ld->r.log.snapshot_index,
           "node 3 installed snapshot %" PRIu64 ", the leader has %" PRIu64,
           lag->r.log.snapshot_index, ld->r.log.snapshot_index);
    EXPECT(s, sim_run_until(s, s->now + 1000, all_committed, &index), "no commit everywhere");
    EXPECT(s, lag->applied == ld->applied && lag->sm_state == ld->sm_state,
           "node 3's state machine differs from the leader's");
}

/* A crash in the middle of receiving a snapshot loses what was received
 * (it was never installed): after the restart the follower wants offset 0,
 * the leader starts again and the follower installs the whole snapshot. */
static void crash_mid_transfer(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    sim_timeout_now(s, node(s, 1));
    EXPECT(s, sim_run_until(s, s->now + 1000, leader_ready, NULL), "no leader");
    struct sim_node *ld = node(s, 1), *lag = node(s, 3);
    sim_crash(s, lag, 0);
    uint64_t index = write_and_commit(s, ld, 30);
    EXPECT(s, index > 0, "the writes did not commit");
    EXPECT(s, sim_compact(s, ld, true), "no compaction");
    sim_start(s, lag);
    EXPECT(s, sim_run_until(s, s->now + 1000, transfer_under_way, seen),
           "node 1 sent no chunks past the first");
    EXPECT(s, lag->installs == 0 && lag->recv_len >= 8, "node 3 received %zu bytes", lag->recv_len);
    sim_crash(s, lag, s->now + 20);
    struct node_index want = {lag, index};
    EXPECT(s, sim_run_until(s, s->now + 3000, node_committed, &want),
           "node 3 did not catch up after its restart");
    EXPECT(s, lag->installs == 1, "node 3 installed %u snapshots", lag->installs);
    EXPECT(s, seen->snapshot_starts[1][3] >= 2, "node 1 never started the transfer again");
    EXPECT(s, lag->applied == ld->applied && lag->sm_state == ld->sm_state,
           "node 3's state machine differs from the leader's");
}

/* A leader change in the middle of a transfer: the new leader's chunks
 * start a new transfer at offset 0 (Figure 13, step 2); the follower
 * installs the new leader's snapshot, never a mix of the two. */
static void leader_change_mid_transfer(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    sim_timeout_now(s, node(s, 1));
    EXPECT(s, sim_run_until(s, s->now + 1000, leader_ready, NULL), "no leader");
    struct sim_node *old = node(s, 1), *next = node(s, 2), *lag = node(s, 3);
    sim_crash(s, lag, 0);
    uint64_t index = write_and_commit(s, old, 30);
    EXPECT(s, index > 0, "the writes did not commit");
    EXPECT(s, sim_compact(s, old, true) && sim_compact(s, next, false), "no compaction");
    sim_start(s, lag);
    EXPECT(s, sim_run_until(s, s->now + 1000, transfer_under_way, seen),
           "node 1 sent no chunks past the first");
    EXPECT(s, lag->installs == 0, "the transfer ended before the leader change");
    /* Node 1 can no longer reach node 3; node 2 takes over. */
    s->net.cut[0][2] = true;
    sim_timeout_now(s, next);
    EXPECT(s, sim_run_until(s, s->now + 1000, is_leader, next), "node 2 did not win");
    struct node_index want = {lag, index};
    EXPECT(s, sim_run_until(s, s->now + 3000, node_committed, &want),
           "node 3 did not catch up from the new leader");
    EXPECT(s, lag->installs == 1, "node 3 installed %u snapshots", lag->installs);
    EXPECT(s,
           seen->snapshot_term[2][3] == next->r.current_term &&
               seen->count[RAFT_MSG_SNAPSHOT][2][3][1] > 0,
           "node 2 did not send its snapshot to the end");
    EXPECT(s, lag->r.log.snapshot_index == next->r.log.snapshot_index,
           "node 3 installed snapshot %" PRIu64 ", node 2 has %" PRIu64, lag->r.log.snapshot_index,
           next->r.log.snapshot_index);
    sim_net_heal(s);
    uint64_t last = write_and_commit(s, next, 3);
    EXPECT(s, last > 0, "no write after the transfer");
    want.index = last;
    EXPECT(s, sim_run_until(s, s->now + 1000, node_committed, &want), "node 3 did not apply");
    EXPECT(s, lag->applied == next->applied && lag->sm_state == next->sm_state,
           "node 3's state machine differs from node 2's");
}

/* Figure 13, step 6: "If existing log entry has same index and term as
 * snapshot's last included entry, retain log entries following it". Node 3
 * holds entries 1..20 but knows only 0 committed; the leader's snapshot
 * ends at 12: node 3 keeps 13..20. */
static void snapshot_keeps_later_entries(struct sim *s, struct seen *seen)
{
    (void)seen;
    struct sim_node *ld = node(s, 1), *f = node(s, 3);
    sim_start_all(s);
    sim_net_isolate(s, f->slot);
    sim_timeout_now(s, ld);
    EXPECT(s, sim_run_until(s, s->now + 1000, leader_ready, NULL), "no leader");
    uint64_t mid = write_and_commit(s, ld, 11);
    EXPECT(s, mid == 12, "the first writes did not commit at 12 (%" PRIu64 ")", mid);
    EXPECT(s, sim_compact(s, ld, true), "no compaction");
    uint64_t last = write_and_commit(s, ld, 8);
    EXPECT(s, last == 20, "the last writes did not commit at 20 (%" PRIu64 ")", last);
    EXPECT(s, f->r.commit_index == 0 && raft_last_index(&f->r) == 0, "node 3 heard the leader");

    /* Node 3 gets the leader's entries 1..20 (from the record of what was
     * committed), without the commit index. */
    struct raft_entry entries[20];
    for (size_t i = 0; i < 20; i++)
        entries[i] = s->committed[i].e;
    struct raft_msg append = {
        .type = RAFT_MSG_APPEND,
        .from = 1,
        .to = 3,
        .term = ld->r.current_term,
        .n_entries = 20,
        .entries = entries,
    };
    sim_inject(s, f, &append);
    EXPECT(s, raft_last_index(&f->r) == 20 && f->r.commit_index == 0, "node 3 did not take them");

    /* Then the leader's snapshot, all its chunks in one batch. */
    struct raft_msg chunks[64];
    size_t n = 0;
    const struct sim_disk *d = &ld->disk;
    for (uint64_t off = 0; off < d->snap_len && n < 64; off += 4, n++) {
        uint64_t len = d->snap_len - off < 4 ? d->snap_len - off : 4;
        chunks[n] = (struct raft_msg){
            .type = RAFT_MSG_SNAPSHOT,
            .from = 1,
            .to = 3,
            .term = ld->r.current_term,
            .snapshot_index = d->snap_index,
            .snapshot_term = d->snap_term,
            .offset = off,
            .data = d->snap + off,
            .len = (uint32_t)len,
            .done = off + len == d->snap_len,
        };
    }
    sim_inject_batch(s, f, chunks, n);
    EXPECT(s, f->installs == 1, "node 3 installed %u snapshots", f->installs);
    EXPECT(s,
           f->r.log.snapshot_index == 12 && raft_last_index(&f->r) == 20 &&
               f->r.commit_index == 12 && f->applied == 12,
           "node 3: snapshot %" PRIu64 ", log to %" PRIu64 ", commit %" PRIu64 ", applied %" PRIu64,
           f->r.log.snapshot_index, raft_last_index(&f->r), f->r.commit_index, f->applied);
    EXPECT(s, sim_disk_last(&f->disk) == 20 && f->disk.snap_index == 12,
           "node 3's disk: snapshot %" PRIu64 ", log to %" PRIu64, f->disk.snap_index,
           sim_disk_last(&f->disk));
    sim_net_heal(s);
    struct node_index want = {f, 20};
    EXPECT(s, sim_run_until(s, s->now + 1000, node_committed, &want), "node 3 did not apply 20");
    EXPECT(s, f->applied == ld->applied && f->sm_state == ld->sm_state,
           "node 3's state machine differs from the leader's");
}

/* ------------------------------------------------ Pre-Vote, CheckQuorum, transfer */

/* The node defaults with Pre-Vote and CheckQuorum, and without them. */
static const struct sim_params lively_prevote = {
    .election_min_ms = 150,
    .election_max_ms = 300,
    .heartbeat_ms = 50,
    .tick_ms = 10,
    .tick_at_deadlines = true,
    .send_first = 1.0,
    .down_min_ms = 10,
    .down_max_ms = 10,
    .disk_retry_ms = 1000,
    .prevote = true,
    .check_quorum = true,
};

/* A follower cut off for 3 s, then back; what happens to the leader. */
static void isolate_and_rejoin(struct sim *s, struct sim_node **leader, uint64_t *term,
                               struct sim_node **cut)
{
    sim_start_all(s);
    *leader = NULL;
    if (!sim_run_until(s, 5000, leader_ready, NULL)) {
        sim_fail(s, "no leader within 5 s");
        return;
    }
    *leader = sim_leader(s);
    *term = (*leader)->r.current_term;
    *cut = (*leader)->id == 3 ? node(s, 2) : node(s, 3);
    sim_net_isolate(s, (*cut)->slot);
    sim_run_for(s, 3000);
    sim_net_heal(s);
    sim_run_for(s, 1000);
}

/* Dissertation 9.6: with Pre-Vote a server cut off from the others never
 * raises its term (no majority answers its pre-votes), so when it comes
 * back the leader goes on undisturbed. */
static void prevote_rejoin_keeps_leader(struct sim *s, struct seen *seen)
{
    struct sim_node *ld, *cut;
    uint64_t term;
    isolate_and_rejoin(s, &ld, &term, &cut);
    if (s->failed)
        return;
    EXPECT(s, seen->count[RAFT_MSG_PREVOTE][cut->id][ld->id][0] > 0 || cut->r.role == RAFT_FOLLOWER,
           "the cut-off node never asked for pre-votes");
    EXPECT(s, cut->r.current_term == term,
           "the cut-off node raised its term to %" PRIu64 " from %" PRIu64, cut->r.current_term,
           term);
    EXPECT(s, ld->r.role == RAFT_LEADER && ld->r.current_term == term,
           "the leader was disturbed: now a %s of term %" PRIu64 " (was leader of %" PRIu64 ")",
           raft_role_name(ld->r.role), ld->r.current_term, term);
    EXPECT(s, seen->count[RAFT_MSG_VOTE][cut->id][ld->id][0] == 0,
           "the cut-off node started a real election");
}

/* The same without Pre-Vote: the cut-off node's term climbs, and when it
 * comes back the leader has to step down (the disruption Pre-Vote is for:
 * this is what the scenario above checks is gone). */
static void no_prevote_rejoin_deposes_leader(struct sim *s, struct seen *seen)
{
    (void)seen;
    struct sim_node *ld, *cut;
    uint64_t term;
    isolate_and_rejoin(s, &ld, &term, &cut);
    if (s->failed)
        return;
    EXPECT(s, cut->r.current_term > term + 3, "the cut-off node's term did not climb (%" PRIu64 ")",
           cut->r.current_term);
    struct sim_node *now = sim_leader(s);
    EXPECT(s, now == NULL || now->r.current_term > term,
           "the leader of term %" PRIu64 " was not deposed", term);
}

struct stepped_down {
    struct sim_node *nd;
    uint64_t term;
};

static bool has_stepped_down(struct sim *s, void *arg)
{
    const struct stepped_down *sd = arg;
    (void)s;
    return sd->nd->r.role != RAFT_LEADER || sd->nd->r.current_term != sd->term;
}

/* Dissertation 6.2 and 9.6, CheckQuorum: "a leader steps down if an
 * election timeout elapses without a successful round of heartbeats to a
 * majority of its cluster". */
static void check_quorum_minority_leader_steps_down(struct sim *s, struct seen *seen)
{
    (void)seen;
    struct sim_node *old = cut_leader_with_one(s);
    if (old == NULL)
        return;
    struct stepped_down sd = {old, old->r.current_term};
    uint64_t cut_at = s->now;
    EXPECT(s, sim_run_until(s, s->now + 1000, has_stepped_down, &sd),
           "the minority leader still leads 1 s after the partition");
    EXPECT(s, old->r.current_term == sd.term, "it stepped down to a new term, not by CheckQuorum");
    EXPECT(s, s->now - cut_at <= s->p.election_max_ms + 2 * s->p.heartbeat_ms + s->p.tick_ms,
           "it stepped down only after %" PRIu64 " ms", s->now - cut_at);
}

/* Without CheckQuorum the same leader keeps leading its minority. */
static void no_check_quorum_minority_leader_stays(struct sim *s, struct seen *seen)
{
    (void)seen;
    struct sim_node *old = cut_leader_with_one(s);
    if (old == NULL)
        return;
    struct stepped_down sd = {old, old->r.current_term};
    EXPECT(s, !sim_run_until(s, s->now + 3000, has_stepped_down, &sd),
           "without CheckQuorum the minority leader stepped down");
}

/* Dissertation 4.2.3: with CheckQuorum, a RequestVote of a higher term that
 * reaches a node which heard from its leader lately is ignored: no term
 * change, no answer. */
static void sticky_follower_ignores_vote(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, 5000, leader_ready, NULL), "no leader within 5 s");
    struct sim_node *ld = sim_leader(s);
    struct sim_node *f = ld->id == 1 ? node(s, 2) : node(s, 1);
    uint32_t other = 6 - ld->id - f->id;
    uint64_t term = f->r.current_term;
    struct raft_msg ask = {.type = RAFT_MSG_VOTE,
                           .from = other,
                           .to = f->id,
                           .term = term + 5,
                           .last_log_index = 1000,
                           .last_log_term = term + 4};
    sim_inject(s, f, &ask);
    EXPECT(s, f->r.current_term == term, "the follower moved to term %" PRIu64, f->r.current_term);
    EXPECT(s,
           seen->count[RAFT_MSG_VOTE_REPLY][f->id][other][0] +
                   seen->count[RAFT_MSG_VOTE_REPLY][f->id][other][1] ==
               0,
           "the follower answered the RequestVote");
    /* A transfer's RequestVote is heard all the same. */
    ask.transfer = true;
    sim_inject(s, f, &ask);
    EXPECT(s, f->r.current_term == term + 5 && f->r.voted_for == other,
           "a transfer's RequestVote was not granted (term %" PRIu64 ", vote %u)",
           f->r.current_term, f->r.voted_for);
}

struct transfer_target {
    struct sim_node *nd;
    uint64_t after_term;
};

static bool target_leads(struct sim *s, void *arg)
{
    const struct transfer_target *t = arg;
    (void)s;
    return t->nd->r.role == RAFT_LEADER && t->nd->r.current_term > t->after_term;
}

/* Dissertation 3.10: the leader stops taking writes, brings the target up
 * to date, sends it TimeoutNow; the target wins the next term at once. */
static void transfer_hands_over(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, 5000, leader_ready, NULL), "no leader within 5 s");
    struct sim_node *old = sim_leader(s);
    struct sim_node *target = old->id == 3 ? node(s, 1) : node(s, 3);
    uint64_t term = old->r.current_term;
    /* The target is behind: its messages are held back until the transfer starts. */
    sim_net_isolate(s, target->slot);
    EXPECT(s, sim_propose_batch(s, old, 5) == 5, "the leader refused writes");
    sim_run_for(s, 20);
    sim_net_heal(s);
    EXPECT(s, sim_transfer(s, old, target->id) == RAFT_OK, "the transfer was refused");
    uint64_t index, t;
    EXPECT(s, sim_propose(s, old, &index, &t) == RAFT_EBUSY,
           "the leader took a write during the transfer");
    uint64_t asked = s->now;
    struct transfer_target want = {target, term};
    EXPECT(s, sim_run_until(s, s->now + 1000, target_leads, &want), "node %u did not take over",
           target->id);
    EXPECT(s, target->r.current_term == term + 1, "node %u leads term %" PRIu64 ", not %" PRIu64,
           target->id, target->r.current_term, term + 1);
    EXPECT(s, s->now - asked < s->p.election_min_ms,
           "the transfer took %" PRIu64 " ms, more than an election timeout", s->now - asked);
    EXPECT(s, seen->count[RAFT_MSG_TIMEOUT_NOW][old->id][target->id][0] == 1,
           "TimeoutNow sent %u times", seen->count[RAFT_MSG_TIMEOUT_NOW][old->id][target->id][0]);
    EXPECT(s, sim_propose(s, target, &index, &t) == RAFT_OK, "the new leader refused a write");
    EXPECT(s, sim_run_until(s, s->now + 1000, all_committed, &index), "the write did not commit");
}

/* "If the transfer does not complete within [an election timeout], the
 * prior leader aborts the transfer and resumes accepting client requests." */
static void transfer_to_unreachable_gives_up(struct sim *s, struct seen *seen)
{
    (void)seen;
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, 5000, leader_ready, NULL), "no leader within 5 s");
    struct sim_node *old = sim_leader(s);
    struct sim_node *target = old->id == 3 ? node(s, 1) : node(s, 3);
    sim_net_isolate(s, target->slot);
    EXPECT(s, sim_propose_batch(s, old, 2) == 2, "the leader refused writes");
    EXPECT(s, sim_transfer(s, old, target->id) == RAFT_OK, "the transfer was refused");
    uint64_t index, t;
    EXPECT(s, sim_propose(s, old, &index, &t) == RAFT_EBUSY, "a write was taken mid-transfer");
    sim_run_for(s, s->p.election_max_ms + s->p.tick_ms);
    EXPECT(s, old->r.role == RAFT_LEADER && old->r.transfer_to == RAFT_NONE,
           "the leader did not give the transfer up (a %s, transfer to %u)",
           raft_role_name(old->r.role), old->r.transfer_to);
    EXPECT(s, sim_propose(s, old, &index, &t) == RAFT_OK, "the leader takes no writes again");
}

/* ------------------------------------------------ leases (dissertation 6.4.1) */

/* The node's defaults with --lease-reads on: 150 ms less 15 for drift, 2
 * for whole milliseconds, and 11 for a core clock that may lag a tick. */
static const struct sim_params lively_lease = {
    .election_min_ms = 150,
    .election_max_ms = 300,
    .heartbeat_ms = 50,
    .tick_ms = 10,
    .tick_at_deadlines = true,
    .send_first = 1.0,
    .down_min_ms = 10,
    .down_max_ms = 10,
    .disk_retry_ms = 1000,
    .prevote = true,
    .check_quorum = true,
    .lease_ms = 122,
};

/* Reads asked of node nd every 5 ms for ms; how many it served. Each one
 * served is checked against everything committed anywhere when it was
 * asked (sim_check_read). */
static size_t lease_reads_for(struct sim *s, struct sim_node *nd, uint64_t ms)
{
    size_t first = s->n_reads, served = 0;
    uint64_t until = s->now + ms;
    while (s->now < until && !s->failed) {
        uint64_t id;
        sim_read(s, nd, &id);
        sim_run_for(s, 5);
    }
    for (size_t i = first; i < s->n_reads; i++)
        if (s->reads[i].answered && s->reads[i].ok)
            served++;
    return served;
}

struct lease_wait {
    const struct sim_node *leader;
    uint64_t end; /* raft_lease_end before */
};

static bool lease_renewed(struct sim *s, void *arg)
{
    (void)s;
    const struct lease_wait *w = arg;
    return raft_lease_end(&w->leader->r) > w->end;
}

/* A leader cut off from the others, which (without CheckQuorum) would lead
 * its side for ever, serves reads on its lease only until the followers
 * could elect another: while the majority elects a leader and commits,
 * every read it serves covers all that was committed when it was asked.
 * planted_lease_ms > 0 puts a bug in: a lease that long. drift > 0: the
 * leader's clock runs that much slower than the simulation's, the others'
 * that much faster (the worst case for a lease). */
static void lease_cut_off_leader(struct sim *s, uint32_t planted_lease_ms, double drift)
{
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, 5000, leader_ready, NULL), "no leader within 5 s");
    struct sim_node *old = sim_leader(s);
    uint64_t index, term, id;
    EXPECT(s, sim_propose(s, old, &index, &term) == RAFT_OK, "the leader refused a write");
    EXPECT(s, sim_run_until(s, s->now + 1000, all_committed, &index), "the write did not commit");
    size_t before = s->n_reads;
    EXPECT(s, sim_read(s, old, &id) == RAFT_OK && s->reads[before].answered && s->reads[before].ok,
           "the leader did not serve a read at once on its lease");
    if (planted_lease_ms > 0)
        old->r.cfg.lease_ms = planted_lease_ms;
    for (size_t i = 0; i < s->n; i++)
        s->nodes[i].clock_rate = &s->nodes[i] == old ? 1.0 - drift : 1.0 + drift;
    raft_set_options(&old->r, true, false);
    /* Cut it off just after a heartbeat round renewed its lease: the
     * followers' last word from it is that round, the worst case. */
    struct lease_wait w = {old, raft_lease_end(&old->r)};
    EXPECT(s, sim_run_until(s, s->now + 1000, lease_renewed, &w), "the lease was not renewed");
    sim_net_isolate(s, old->slot);
    size_t served = lease_reads_for(s, old, 1500 + 3 * (uint64_t)s->p.election_max_ms);
    struct sim_node *ld = sim_leader(s);
    EXPECT(s, ld != NULL && ld != old && ld->r.current_term > term,
           "the majority elected no new leader");
    EXPECT(s, old->r.role == RAFT_LEADER, "the cut-off leader stepped down");
    EXPECT(s, served > 0, "the cut-off leader served no read on its lease");
    sim_net_heal(s);
    sim_run_for(s, 1000);
}

static void lease_cut_off_leader_stops_serving(struct sim *s, struct seen *seen)
{
    (void)seen;
    lease_cut_off_leader(s, 0, 0.0);
}

/* The node's lease with a 1000-1200 ms election timeout, a clock ticked
 * before every event (no lag) and a tenth for drift: 1000 - 100 - 2. Long,
 * so that what drift eats of it is tens of milliseconds. */
static const struct sim_params slow_lease = {
    .election_min_ms = 1000,
    .election_max_ms = 1200,
    .heartbeat_ms = 100,
    .tick_ms = 10,
    .tick_at_deadlines = true,
    .tick_before_event = true,
    .send_first = 1.0,
    .down_min_ms = 10,
    .down_max_ms = 10,
    .disk_retry_ms = 1000,
    .prevote = true,
    .check_quorum = true,
    .lease_ms = 898,
};

/* Clock rates 10% apart (the leader's 5% slow, the others' 5% fast): the
 * cut-off leader's lease, by its own slow clock, still ends before the
 * followers' fast clocks let them elect another. */
static void lease_holds_with_drifting_clocks(struct sim *s, struct seen *seen)
{
    (void)seen;
    lease_cut_off_leader(s, 0, 0.05);
}

/* Dissertation 3.10 with leases: the target's RequestVote sets the voters'
 * stickiness aside, so the leader gives its lease up when the transfer
 * starts. Here it hears nothing back (one-way cut): it would go on
 * leading, and serving reads, while the target wins and commits. */
static void lease_transfer(struct sim *s, bool planted_keep_lease)
{
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, 5000, leader_ready, NULL), "no leader within 5 s");
    struct sim_node *old = sim_leader(s);
    struct sim_node *target = old->id == 3 ? node(s, 1) : node(s, 3);
    raft_set_options(&old->r, true, false);
    for (size_t i = 0; i < s->n; i++)
        s->net.cut[i][old->slot] = true;
    EXPECT(s, sim_transfer(s, old, target->id) == RAFT_OK, "the transfer was refused");
    if (planted_keep_lease)
        old->r.lease_given_up = false;
    lease_reads_for(s, old, 300);
    EXPECT(s, target->r.role == RAFT_LEADER, "node %u did not take over", target->id);
    sim_net_heal(s);
    sim_run_for(s, 1000);
}

static void lease_transfer_gives_lease_up(struct sim *s, struct seen *seen)
{
    (void)seen;
    lease_transfer(s, false);
}

/* The checker must catch the bugs the scenarios above are for: a lease
 * that outlives the followers' election timeout, one kept through a
 * transfer, and one that leaves nothing for clocks that drift (the node's
 * less only its whole milliseconds, 998 ms, with the clocks 10% apart). Each runs on a cluster of
 * its own that must fail. */
static void lease_bugs_are_caught(struct sim *s, struct seen *seen)
{
    (void)seen;
    static const char *const bugs[] = {"a lease longer than an election timeout",
                                       "a lease kept in a transfer",
                                       "a lease with no margin for drift"};
    for (int bug = 0; bug < 3 && !s->failed; bug++) {
        struct sim planted;
        sim_init(&planted, 3, 77 + (uint64_t)bug, bug == 2 ? &slow_lease : &lively_lease,
                 s->verbose);
        if (bug == 0)
            lease_cut_off_leader(&planted, 10 * lively_lease.election_max_ms, 0.0);
        else if (bug == 1)
            lease_transfer(&planted, true);
        else
            lease_cut_off_leader(&planted, 1000 - 2, 0.05);
        bool caught = planted.failed && strstr(planted.failure, "linearizability") != NULL;
        char why[sizeof planted.failure];
        snprintf(why, sizeof why, "%s", planted.failed ? planted.failure : "no failure");
        sim_free(&planted);
        EXPECT(s, caught, "the checker missed a planted lease bug (%s): %s", bugs[bug], why);
    }
    sim_start_all(s);
    sim_run_for(s, 100);
}

/* ------------------------------------------------ membership (chapter 4) */

/* Only node 1 is a voter at first; nodes 2 and 3 wait to join. */
static const struct sim_params lively_one_voter = {
    .election_min_ms = 150,
    .election_max_ms = 300,
    .heartbeat_ms = 50,
    .tick_ms = 10,
    .tick_at_deadlines = true,
    .send_first = 1.0,
    .down_min_ms = 10,
    .down_max_ms = 10,
    .disk_retry_ms = 1000,
    .initial_voters = 1,
    .prevote = true,
    .check_quorum = true,
};

struct voters_are {
    struct sim_node *nd;
    uint32_t mask; /* bit per id */
};

static bool config_committed(struct sim *s, void *arg)
{
    const struct voters_are *v = arg;
    (void)s;
    return v->nd->up && raft_voters_mask(&v->nd->r) == v->mask &&
           v->nd->r.commit_index >= v->nd->r.members_index;
}

/* Propose a configuration at the leader: id added as a learner (add) or
 * removed. */
static int change(struct sim *s, struct sim_node *ld, uint32_t id, bool add)
{
    struct raft_members next = ld->r.members;
    if (add) {
        next.m[next.n++] = (struct raft_member){.id = id, .role = RAFT_LEARNER};
    } else {
        for (size_t i = 0; i < next.n; i++)
            if (next.m[i].id == id)
                next.m[i] = next.m[--next.n];
    }
    uint64_t index;
    (void)s;
    return raft_change_members(&ld->r, &next, &index);
}

/* 4.2.1: a new server joins as a learner, catches up, and becomes a voter;
 * one change at a time; a server nobody added never stands or votes. */
static void grow_one_at_a_time(struct sim *s, struct seen *seen)
{
    sim_start_all(s);
    struct sim_node *n1 = node(s, 1), *n2 = node(s, 2), *n3 = node(s, 3);
    EXPECT(s, sim_run_until(s, s->now + 2000, leader_ready, NULL), "node 1 did not lead alone");
    EXPECT(s, sim_leader(s) == n1, "a server not in the configuration leads");
    EXPECT(s,
           seen->count[RAFT_MSG_VOTE][2][1][0] + seen->count[RAFT_MSG_PREVOTE][2][1][0] == 0 &&
               n2->r.current_term == 0,
           "node 2, not added yet, stood for election");
    EXPECT(s, sim_propose_batch(s, n1, 20) == 20, "writes refused");
    EXPECT(s, change(s, n1, 2, true) == RAFT_OK, "adding node 2 refused");
    EXPECT(s, change(s, n1, 3, true) == RAFT_EBUSY, "a second change while one is pending");
    struct voters_are two = {n1, (1u << 1) | (1u << 2)};
    EXPECT(s, sim_run_until(s, s->now + 3000, config_committed, &two),
           "node 2 did not become a voter");
    EXPECT(s, raft_is_voter(&n2->r, 2), "node 2 does not know it is a voter");
    EXPECT(s, change(s, n1, 3, true) == RAFT_OK, "adding node 3 refused");
    struct voters_are three = {n1, (1u << 1) | (1u << 2) | (1u << 3)};
    EXPECT(s, sim_run_until(s, s->now + 3000, config_committed, &three),
           "node 3 did not become a voter");
    /* Two changes at once are refused. */
    struct raft_members two_gone = n1->r.members;
    two_gone.n = 1;
    uint64_t index;
    EXPECT(s, raft_change_members(&n1->r, &two_gone, &index) == RAFT_EINVAL,
           "a change of two servers at once was taken");
    /* The cluster of three survives its leader's crash. */
    sim_crash(s, n1, 0);
    EXPECT(s, sim_run_until(s, s->now + 3000, has_leader, NULL), "no leader after node 1 crashed");
    EXPECT(s, n3->r.commit_index >= 22, "node 3 did not commit the writes");
}

/* 4.2.2: a leader that removes itself manages the cluster until the change
 * commits, without counting itself, then steps down; the others go on and
 * the removed server stays quiet. */
static void leader_removes_itself(struct sim *s, struct seen *seen)
{
    (void)seen;
    sim_start_all(s);
    EXPECT(s, sim_run_until(s, s->now + 3000, leader_ready, NULL), "no leader");
    struct sim_node *old = sim_leader(s);
    uint64_t term = old->r.current_term;
    EXPECT(s, change(s, old, old->id, false) == RAFT_OK, "the leader could not remove itself");
    struct stepped_down sd = {old, term};
    EXPECT(s, sim_run_until(s, s->now + 2000, has_stepped_down, &sd),
           "the removed leader did not step down");
    EXPECT(s, sim_run_until(s, s->now + 3000, has_leader, NULL), "the others elected no leader");
    struct sim_node *ld = sim_leader(s);
    EXPECT(s, ld != old && !raft_is_member(&ld->r, old->id), "the new leader still has node %u",
           old->id);
    uint64_t index, t;
    EXPECT(s, sim_propose(s, ld, &index, &t) == RAFT_OK, "the new leader refused a write");
    uint64_t quiet_term = old->r.current_term;
    sim_run_for(s, 3000);
    EXPECT(s, old->r.current_term == quiet_term && old->r.role == RAFT_FOLLOWER,
           "the removed server stood for election (term %" PRIu64 " -> %" PRIu64 ")", quiet_term,
           old->r.current_term);
    EXPECT(s, sim_leader(s) == ld, "the leader changed after the removal");
}

struct scenario {
    const char *name;
    size_t n;
    const struct sim_params *params;
    void (*run)(struct sim *s, struct seen *seen);
};

static const struct scenario scenarios[] = {
    {"a candidate with a stale log gets no vote", 3, &quiet, stale_candidate_gets_no_vote},
    {"a leader commits only entries of its own term by counting (Figure 8)", 3, &quiet,
     leader_counts_only_its_own_term},
    {"AppendEntries conflict truncates the follower's log", 3, &quiet,
     conflict_truncates_follower_log},
    {"a follower whose log is far behind catches up via the hint", 3, &quiet,
     far_behind_follower_uses_hint},
    {"a deposed leader's read fails", 3, &lively, deposed_leader_read_fails},
    {"5 nodes: a minority leader's writes never commit", 5, &lively, minority_leader_never_commits},
    {"a vote survives a restart: one vote per term", 3, &quiet, vote_survives_restart},
    {"a follower commits no further than the entries the leader sent", 3, &quiet,
     follower_commits_only_what_it_got},
    {"a vote replaced by a higher term in the same batch is not sent", 3, &quiet,
     vote_replaced_in_batch_is_not_sent},
    {"an acknowledgement undone in the same batch is not sent", 3, &quiet,
     ack_undone_in_batch_is_not_sent},
    {"a leader whose disk fails mid-append steps down, recovers and catches up", 3, &lively,
     leader_disk_fails_mid_append},
    {"a follower far behind a compacted leader catches up by InstallSnapshot", 3, &quiet_chunks,
     lagging_follower_gets_snapshot},
    {"a leader change mid-transfer restarts the snapshot from offset 0", 3, &quiet_chunks,
     leader_change_mid_transfer},
    {"a crash mid-transfer loses the partial snapshot; the transfer starts again", 3, &quiet_chunks,
     crash_mid_transfer},
    {"a snapshot keeps the follower's later entries (Figure 13, step 6)", 3, &quiet_chunks,
     snapshot_keeps_later_entries},
    {"Pre-Vote: a follower cut off and back leaves the leader and its term alone", 3,
     &lively_prevote, prevote_rejoin_keeps_leader},
    {"without Pre-Vote the same follower deposes the leader", 3, &lively,
     no_prevote_rejoin_deposes_leader},
    {"CheckQuorum: 5 nodes, a leader cut off with one follower steps down", 5, &lively_prevote,
     check_quorum_minority_leader_steps_down},
    {"without CheckQuorum that leader keeps leading its minority", 5, &lively,
     no_check_quorum_minority_leader_stays},
    {"leader stickiness: a RequestVote reaching a follower in lease is ignored", 3, &lively_prevote,
     sticky_follower_ignores_vote},
    {"leadership transfer: writes stop, the target catches up and wins the next term", 3,
     &lively_prevote, transfer_hands_over},
    {"a transfer to an unreachable node is given up after an election timeout", 3, &lively_prevote,
     transfer_to_unreachable_gives_up},
    {"membership: 1 -> 2 -> 3 voters, each a learner first, one change at a time", 3,
     &lively_one_voter, grow_one_at_a_time},
    {"membership: a leader that removes itself steps down once that commits", 3, &lively_prevote,
     leader_removes_itself},
    {"leases: a cut-off leader stops serving reads before another can be elected", 3, &lively_lease,
     lease_cut_off_leader_stops_serving},
    {"leases: a leader that starts a transfer gives its lease up", 3, &lively_lease,
     lease_transfer_gives_lease_up},
    {"leases: clocks 10% apart, a cut-off leader still stops serving in time", 3, &slow_lease,
     lease_holds_with_drifting_clocks},
    {"leases: the checker catches a lease too long, one kept through a transfer, one without "
     "a margin for drift",
     3, &lively_lease, lease_bugs_are_caught},
};

int sim_run_scenarios(bool verbose)
{
    int failed = 0;
    size_t count = sizeof(scenarios) / sizeof(scenarios[0]);
    for (size_t i = 0; i < count; i++) {
        const struct scenario *sc = &scenarios[i];
        struct sim s;
        struct seen seen;
        memset(&seen, 0, sizeof(seen));
        if (verbose)
            printf("scenario: %s\n", sc->name);
        sim_init(&s, sc->n, 1000 + i, sc->params, verbose);
        s.observe = observe;
        s.observe_arg = &seen;
        sc->run(&s, &seen);
        if (!s.failed)
            sim_check_full(&s);
        if (s.failed) {
            printf("FAIL scenario \"%s\" %s\n", sc->name, s.failure);
            failed++;
        } else if (verbose) {
            printf("scenario ok: %s\n", sc->name);
        }
        sim_free(&s);
    }
    printf("sim: %zu scenarios, %d failed\n", count, failed);
    return failed;
}

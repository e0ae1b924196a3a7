/* test_raft.c - rules of the pure Raft core checked one event at a time on a
 * single core, fed by hand the messages a batch of the node would take in
 * before one persist. (Whole clusters are in tests/sim.) */
#include "check.h"
#include "raft.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Node 2 of a 3-node cluster, timeouts 150-300 ms, heartbeat 50 ms. */
static struct raft_config node2_config(void)
{
    return (struct raft_config){
        .id = 2,
        .n_nodes = 3,
        .node_ids = {1, 2, 3},
        .election_min_ms = 150,
        .election_max_ms = 300,
        .heartbeat_ms = 50,
        .seed = 42,
    };
}

static void core_init(struct raft *r, uint64_t term)
{
    struct raft_config cfg = node2_config();
    CHECK_INT_EQ(raft_init(r, &cfg, 0), RAFT_OK);
    CHECK_INT_EQ(raft_restore(r, term, RAFT_NONE, 0, 0, NULL, 0), RAFT_OK);
}

/* Carry out the ready as the node does (nothing to persist here) and return
 * a copy of its messages. */
static size_t core_drain(struct raft *r, struct raft_msg *out, size_t cap)
{
    size_t n = 0;
    while (raft_has_ready(r)) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        for (size_t i = 0; i < rd.n_msgs && n < cap; i++)
            out[n++] = rd.msgs[i];
        raft_advance(r, &rd);
    }
    return n;
}

static struct raft_msg append_msg(uint64_t term, uint32_t from, uint64_t prev_index,
                                  uint64_t prev_term, const struct raft_entry *entries, size_t n)
{
    return (struct raft_msg){
        .type = RAFT_MSG_APPEND,
        .from = from,
        .to = 2,
        .term = term,
        .prev_index = prev_index,
        .prev_term = prev_term,
        .entries = entries,
        .n_entries = n,
    };
}

/* Figure 2, Followers: the election timer restarts on every AppendEntries
 * from the current leader, its first one included: a follower of this term
 * that does not know the leader yet (it just restarted, or refused the
 * leader its vote) must not time out right after hearing from it. */
static void test_first_heartbeat_resets_timer(void)
{
    struct raft r;
    struct raft_msg out[16];
    core_init(&r, 5);
    uint64_t first_deadline = r.election_deadline_ms;
    /* Shortly before the timeout, the new leader of term 5 speaks. */
    uint64_t now = first_deadline - 10;
    raft_tick(&r, now);
    CHECK_INT_EQ(r.role, RAFT_FOLLOWER);
    struct raft_msg hb = append_msg(5, 1, 0, 0, NULL, 0);
    CHECK_INT_EQ(raft_step(&r, &hb), RAFT_OK);
    core_drain(&r, out, 16);
    CHECK_INT_EQ(r.leader_id, 1);
    CHECK(r.election_deadline_ms >= now + 150);
    raft_tick(&r, first_deadline + 1);
    CHECK_INT_EQ(r.role, RAFT_FOLLOWER);
    CHECK_INT_EQ(r.current_term, 5);
    raft_close(&r);
}

/* A batch: entries accepted at term 3, then a term-4 leader's conflicting
 * entry at the same index. The term-3 acknowledgement promises entries the
 * persisted log no longer has: it must not leave. */
static void test_no_reply_promises_a_truncated_entry(void)
{
    struct raft r;
    struct raft_msg out[16];
    core_init(&r, 3);
    uint8_t a = 'a', b = 'b';
    struct raft_entry e3[2] = {
        {.term = 3, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 2, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
    };
    struct raft_entry e4 = {
        .term = 4, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &b};
    struct raft_msg m3 = append_msg(3, 1, 0, 0, e3, 2);
    struct raft_msg m4 = append_msg(4, 3, 0, 0, &e4, 1);
    CHECK_INT_EQ(raft_step(&r, &m3), RAFT_OK);
    CHECK_INT_EQ(raft_step(&r, &m4), RAFT_OK);
    size_t n = core_drain(&r, out, 16);
    CHECK_INT_EQ(raft_last_index(&r), 1);
    CHECK_INT_EQ(raft_term_at(&r, 1), 4);
    size_t replies = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i].type != RAFT_MSG_APPEND_REPLY)
            continue;
        replies++;
        CHECK_INT_EQ(out[i].term, 4);
        CHECK(out[i].match_index <= 1);
    }
    CHECK_INT_EQ(replies, 1);
    raft_close(&r);
}

/* A batch: a vote granted in term 5, then a RequestVote of term 6 that this
 * node grants as well. The hard state written is term 6 and its vote; the term-5
 * grant was never written and must not leave. */
static void test_no_vote_sent_that_was_not_written(void)
{
    struct raft r;
    struct raft_msg out[16];
    core_init(&r, 4);
    struct raft_msg v5 = {.type = RAFT_MSG_VOTE, .from = 1, .to = 2, .term = 5};
    struct raft_msg v6 = {
        .type = RAFT_MSG_VOTE, .from = 3, .to = 2, .term = 6, .last_log_index = 0};
    CHECK_INT_EQ(raft_step(&r, &v5), RAFT_OK);
    CHECK_INT_EQ(raft_step(&r, &v6), RAFT_OK);
    struct raft_ready rd;
    raft_ready(&r, &rd);
    CHECK(rd.hard_state_changed);
    CHECK_INT_EQ(rd.term, 6);
    for (size_t i = 0; i < rd.n_msgs; i++) {
        CHECK_INT_EQ(rd.msgs[i].term, 6);
        if (rd.msgs[i].type == RAFT_MSG_VOTE_REPLY && rd.msgs[i].granted)
            CHECK_INT_EQ(rd.voted_for, rd.msgs[i].to);
    }
    raft_advance(&r, &rd);
    core_drain(&r, out, 16);
    raft_close(&r);
}

/* Numbers no correct peer sends are dropped before they change anything. */
static void test_implausible_messages_dropped(void)
{
    struct raft r;
    core_init(&r, 3);
    struct raft_msg huge = {.type = RAFT_MSG_VOTE, .from = 1, .to = 2, .term = UINT64_MAX};
    CHECK_INT_EQ(raft_step(&r, &huge), RAFT_EINVAL);
    huge.term = RAFT_TERM_MAX + 1;
    CHECK_INT_EQ(raft_step(&r, &huge), RAFT_EINVAL);
    CHECK_INT_EQ(r.current_term, 3);

    uint8_t a = 'a';
    struct raft_entry gap[2] = {
        {.term = 3, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 5, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
    };
    struct raft_msg m = append_msg(3, 1, 0, 0, gap, 2);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_EINVAL); /* indexes do not follow */
    struct raft_entry future = {
        .term = 9, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a};
    m = append_msg(3, 1, 0, 0, &future, 1);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_EINVAL); /* an entry from a later term */
    m = append_msg(3, 1, RAFT_INDEX_MAX + 1, 3, NULL, 0);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_EINVAL);
    struct raft_msg reply = {
        .type = RAFT_MSG_APPEND_REPLY, .from = 1, .to = 2, .term = 3, .hint_index = UINT64_MAX};
    CHECK_INT_EQ(raft_step(&r, &reply), RAFT_EINVAL);
    struct raft_msg snap = {.type = RAFT_MSG_SNAPSHOT,
                            .from = 1,
                            .to = 2,
                            .term = 3,
                            .snapshot_index = 5,
                            .snapshot_term = 4,
                            .len = 0,
                            .done = true};
    CHECK_INT_EQ(raft_step(&r, &snap), RAFT_EINVAL); /* a snapshot of a later term */
    snap.snapshot_term = 3;
    snap.offset = RAFT_SNAPSHOT_MAX_BYTES;
    snap.len = 1;
    snap.data = &a;
    CHECK_INT_EQ(raft_step(&r, &snap), RAFT_EINVAL); /* past the largest snapshot */
    snap.offset = 0;
    snap.len = RAFT_SNAPSHOT_CHUNK_MAX + 1;
    CHECK_INT_EQ(raft_step(&r, &snap), RAFT_EINVAL); /* a chunk too large */
    snap.len = 0;
    snap.done = false;
    CHECK_INT_EQ(raft_step(&r, &snap), RAFT_EINVAL); /* an empty chunk that does not end it */
    CHECK_INT_EQ(raft_last_index(&r), 0);
    CHECK_INT_EQ(r.leader_id, RAFT_NONE);
    raft_close(&r);
}

static struct raft_msg snapshot_msg(uint64_t term, uint64_t index, uint64_t snap_term,
                                    uint64_t offset, const char *data, bool done)
{
    return (struct raft_msg){
        .type = RAFT_MSG_SNAPSHOT,
        .from = 1,
        .to = 2,
        .term = term,
        .snapshot_index = index,
        .snapshot_term = snap_term,
        .offset = offset,
        .data = (const uint8_t *)data,
        .len = (uint32_t)strlen(data),
        .done = done,
    };
}

/* Figure 13, receiver: chunks in order are handed to the caller; a chunk
 * out of order is answered with the offset wanted; after the last chunk is
 * durable the snapshot is installed (rule 7: a log that does not hold the
 * snapshot's last entry is discarded) and only then is success sent. */
static void test_snapshot_received_in_chunks(void)
{
    struct raft r;
    struct raft_msg out[16];
    core_init(&r, 3);
    uint8_t a = 'a';
    struct raft_entry old = {
        .term = 2, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a};
    struct raft_msg m = append_msg(3, 1, 0, 0, &old, 1);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    core_drain(&r, out, 16);

    m = snapshot_msg(3, 10, 3, 4, "efgh", false); /* not the first chunk */
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    size_t n = core_drain(&r, out, 16);
    CHECK_INT_EQ(n, 1);
    CHECK(!out[0].success);
    CHECK_INT_EQ(out[0].next_offset, 0);
    CHECK_INT_EQ(out[0].offset, 4);

    m = snapshot_msg(3, 10, 3, 0, "abcd", false);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    struct raft_ready rd;
    raft_ready(&r, &rd);
    CHECK(rd.snapshot_chunk != NULL);
    CHECK(rd.snapshot_install == NULL);
    if (rd.snapshot_chunk != NULL) {
        CHECK_INT_EQ(rd.snapshot_chunk->offset, 0);
        CHECK_INT_EQ(rd.snapshot_chunk->len, 4);
        CHECK(!rd.snapshot_chunk->done);
    }
    CHECK_INT_EQ(rd.n_msgs, 1);
    CHECK_INT_EQ(rd.msgs[0].next_offset, 4);
    raft_advance(&r, &rd);

    m = snapshot_msg(3, 10, 3, 0, "abcd", false); /* a duplicate */
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    n = core_drain(&r, out, 16);
    CHECK_INT_EQ(n, 1);
    CHECK_INT_EQ(out[0].next_offset, 4);

    m = snapshot_msg(3, 10, 3, 4, "ef", true);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    raft_ready(&r, &rd);
    CHECK(rd.snapshot_chunk != NULL && rd.snapshot_chunk->done);
    CHECK_INT_EQ(rd.n_msgs, 0); /* no reply before the install */
    raft_advance(&r, &rd);
    raft_ready(&r, &rd);
    CHECK(rd.snapshot_install != NULL);
    if (rd.snapshot_install != NULL) {
        CHECK_INT_EQ(rd.snapshot_install->index, 10);
        CHECK_INT_EQ(rd.snapshot_install->term, 3);
    }
    CHECK_INT_EQ(rd.n_msgs, 1);
    CHECK(rd.msgs[0].success);
    CHECK_INT_EQ(rd.msgs[0].snapshot_index, 10);
    CHECK_INT_EQ(rd.apply_to, 0);
    raft_advance(&r, &rd);
    CHECK_INT_EQ(raft_last_index(&r), 10);
    CHECK_INT_EQ(raft_last_term(&r), 3);
    CHECK(raft_entry_at(&r, 1) == NULL);
    CHECK_INT_EQ(r.commit_index, 10);
    CHECK_INT_EQ(r.last_applied, 10);
    CHECK(!raft_has_ready(&r));
    raft_close(&r);
}

/* Figure 13, rule 6: a follower that holds the snapshot's last entry keeps
 * the entries that follow it. */
static void test_snapshot_keeps_matching_suffix(void)
{
    struct raft r;
    struct raft_msg out[16];
    core_init(&r, 3);
    uint8_t a = 'a';
    struct raft_entry e[3] = {
        {.term = 3, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 2, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 3, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
    };
    struct raft_msg m = append_msg(3, 1, 0, 0, e, 3);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    core_drain(&r, out, 16);
    m = snapshot_msg(3, 2, 3, 0, "state", true);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    core_drain(&r, out, 16);
    CHECK_INT_EQ(r.log.snapshot_index, 2);
    CHECK_INT_EQ(raft_last_index(&r), 3);
    CHECK(raft_entry_at(&r, 3) != NULL);
    CHECK(raft_entry_at(&r, 2) == NULL);
    CHECK_INT_EQ(raft_term_at(&r, 2), 3);
    CHECK_INT_EQ(r.commit_index, 2);
    raft_close(&r);
}

/* Restart from a snapshot and a log that still holds what it covers. */
static void test_restore_from_snapshot(void)
{
    struct raft_config cfg = node2_config();
    struct raft r;
    struct raft_entry *e = calloc(4, sizeof(*e));
    for (int i = 0; i < 4; i++)
        e[i] = (struct raft_entry){.term = 2, .index = (uint64_t)i + 3, .type = RAFT_ENTRY_NOOP};
    CHECK_INT_EQ(raft_init(&r, &cfg, 0), RAFT_OK);
    CHECK_INT_EQ(raft_restore(&r, 2, RAFT_NONE, 4, 2, e, 4), RAFT_OK);
    CHECK_INT_EQ(raft_first_index(&r), 5);
    CHECK_INT_EQ(raft_last_index(&r), 6);
    CHECK_INT_EQ(r.commit_index, 4);
    CHECK_INT_EQ(r.last_applied, 4);
    raft_close(&r);

    /* The log's entry at the snapshot's index is of another term: the log
     * was being replaced by the snapshot. */
    e = calloc(4, sizeof(*e));
    for (int i = 0; i < 4; i++)
        e[i] = (struct raft_entry){.term = 1, .index = (uint64_t)i + 3, .type = RAFT_ENTRY_NOOP};
    CHECK_INT_EQ(raft_init(&r, &cfg, 0), RAFT_OK);
    CHECK_INT_EQ(raft_restore(&r, 2, RAFT_NONE, 4, 2, e, 4), RAFT_OK);
    CHECK_INT_EQ(raft_last_index(&r), 4);
    CHECK_INT_EQ(raft_last_term(&r), 2);
    raft_close(&r);

    /* A gap between the snapshot and the log. */
    e = calloc(1, sizeof(*e));
    e[0] = (struct raft_entry){.term = 2, .index = 9, .type = RAFT_ENTRY_NOOP};
    CHECK_INT_EQ(raft_init(&r, &cfg, 0), RAFT_OK);
    CHECK_INT_EQ(raft_restore(&r, 2, RAFT_NONE, 4, 2, e, 1), RAFT_EINVAL);
    raft_close(&r);
}

/* Only applied entries may be compacted; the log keeps answering. */
static void test_compact_applied_only(void)
{
    struct raft r;
    struct raft_msg out[16];
    core_init(&r, 3);
    uint8_t a = 'a';
    struct raft_entry e[3] = {
        {.term = 3, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 2, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 3, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
    };
    struct raft_msg m = append_msg(3, 1, 0, 0, e, 3);
    m.commit = 2;
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    core_drain(&r, out, 16);
    CHECK_INT_EQ(r.last_applied, 2);
    CHECK_INT_EQ(raft_compact(&r, 3), RAFT_EINVAL);
    CHECK_INT_EQ(raft_compact(&r, 2), RAFT_OK);
    CHECK_INT_EQ(raft_compact(&r, 1), RAFT_EINVAL);
    CHECK_INT_EQ(raft_last_index(&r), 3);
    CHECK_INT_EQ(raft_term_at(&r, 2), 3);
    CHECK_INT_EQ(raft_term_at(&r, 1), 0);
    /* An AppendEntries that starts inside the snapshot is taken from it on. */
    m = append_msg(3, 1, 0, 0, e, 3);
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    size_t n = core_drain(&r, out, 16);
    CHECK_INT_EQ(n, 1);
    CHECK(out[0].success);
    CHECK_INT_EQ(out[0].match_index, 3);
    raft_close(&r);
}

static void count_dropped(void *arg, uint8_t *data)
{
    size_t *n = arg;
    (*n)++;
    free(data);
}

/* raft_compact_with hands each dropped entry's data to the caller, once,
 * and compacts as raft_compact does. */
static void test_compact_hands_data_over(void)
{
    struct raft r;
    struct raft_msg out[16];
    core_init(&r, 3);
    uint8_t a = 'a';
    struct raft_entry e[3] = {
        {.term = 3, .index = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 2, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
        {.term = 3, .index = 3, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &a},
    };
    struct raft_msg m = append_msg(3, 1, 0, 0, e, 3);
    m.commit = 3;
    CHECK_INT_EQ(raft_step(&r, &m), RAFT_OK);
    core_drain(&r, out, 16);
    size_t dropped = 0;
    CHECK_INT_EQ(raft_compact_with(&r, 4, count_dropped, &dropped), RAFT_EINVAL);
    CHECK_INT_EQ(raft_compact_with(&r, 2, count_dropped, &dropped), RAFT_OK);
    CHECK_INT_EQ(dropped, 2);
    CHECK_INT_EQ(r.log.snapshot_index, 2);
    CHECK_INT_EQ(raft_term_at(&r, 2), 3);
    CHECK(raft_entry_at(&r, 3) != NULL && raft_entry_at(&r, 3)->len == 1);
    raft_close(&r); /* frees entry 3 itself: no double free under ASan */
}

/* Node 2 elected in term 2 by node 1's vote, its no-op at index 1 written:
 * node 1's reply acknowledging that no-op, for the caller to step. */
static struct raft_msg become_leader_of_term_2(struct raft *r)
{
    struct raft_msg out[16];
    core_init(r, 1);
    raft_timeout_now(r); /* term 2, candidate */
    core_drain(r, out, 16);
    struct raft_msg grant = {
        .type = RAFT_MSG_VOTE_REPLY, .from = 1, .to = 2, .term = 2, .granted = true};
    CHECK_INT_EQ(raft_step(r, &grant), RAFT_OK);
    core_drain(r, out, 16); /* its no-op at index 1, synced at once */
    return (struct raft_msg){.type = RAFT_MSG_APPEND_REPLY,
                             .from = 1,
                             .to = 2,
                             .term = 2,
                             .success = true,
                             .match_index = 1};
}

/* Figure 2, Leaders: an entry is committed once it is stored on a
 * majority, and the leader's own copy is stored only once its storage
 * synced it. With the sync in the background (raft_advance_unsynced), a
 * follower's acknowledgement alone must not commit the entry in a 3-node
 * cluster; raft_synced does, and a report of another term's entry at that
 * index does not. */
static void test_leader_counts_itself_once_synced(void)
{
    struct raft r;
    struct raft_msg ack = become_leader_of_term_2(&r);
    CHECK_INT_EQ(r.role, RAFT_LEADER);
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    CHECK_INT_EQ(r.commit_index, 1);

    uint64_t index, term;
    CHECK_INT_EQ(raft_propose(&r, (const uint8_t *)"x", 1, &index, &term), RAFT_OK);
    CHECK_INT_EQ(index, 2);
    struct raft_ready rd;
    raft_ready(&r, &rd);
    CHECK_INT_EQ(rd.n_entries, 2 - 1);
    CHECK(!rd.persist_before_send);
    raft_advance_unsynced(&r, &rd);
    CHECK(!raft_has_ready(&r) || r.stable_index == 2); /* not asked to store it again */
    CHECK_INT_EQ(r.persisted_index, 1);
    ack.match_index = 2;
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    CHECK_INT_EQ(r.commit_index, 1); /* one copy of two: not stored on a majority */
    raft_synced(&r, 2, 1);           /* not the entry at 2: ignored */
    CHECK_INT_EQ(r.commit_index, 1);
    raft_synced(&r, 2, 2);
    CHECK_INT_EQ(r.persisted_index, 2);
    CHECK_INT_EQ(r.commit_index, 2);
    raft_close(&r);
}

/* Appends to node 1 with entries in them, in out[0 .. n): their count, the
 * entries they carry added to *entries. */
static size_t appends_to_1(const struct raft_msg *out, size_t n, size_t *entries)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i].type == RAFT_MSG_APPEND && out[i].to == 1 && out[i].n_entries > 0) {
            count++;
            *entries += out[i].n_entries;
        }
    }
    return count;
}

/* k proposals, each followed by its ready: the AppendEntries with entries
 * sent to node 1 meanwhile, their entries added to *entries. */
static size_t propose_counting_appends(struct raft *r, int k, size_t *entries)
{
    struct raft_msg out[16];
    size_t sent = 0;
    for (int i = 0; i < k; i++) {
        uint64_t index, term;
        CHECK_INT_EQ(raft_propose(r, (const uint8_t *)"x", 1, &index, &term), RAFT_OK);
        sent += appends_to_1(out, core_drain(r, out, 16), entries);
    }
    return sent;
}

/* With max_inflight_appends 2 a leader has at most 2 AppendEntries with
 * entries out to a follower; what is proposed meanwhile goes in one message
 * once an acknowledgement frees a place. */
static void test_inflight_messages_bounded(void)
{
    struct raft r;
    struct raft_msg out[16];
    struct raft_msg ack = become_leader_of_term_2(&r);
    r.cfg.max_inflight_appends = 2;
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK); /* node 1: pipeline from 2 */
    core_drain(&r, out, 16);

    size_t entries = 0;
    size_t sent = propose_counting_appends(&r, 5, &entries); /* entries 2 .. 6 */
    CHECK_INT_EQ(sent, 2);                                   /* entries 2 and 3; 4 .. 6 wait */
    CHECK_INT_EQ(entries, 2);

    ack.match_index = 2; /* the first is acknowledged: 4 .. 6 go in one */
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    entries = 0;
    CHECK_INT_EQ(appends_to_1(out, core_drain(&r, out, 16), &entries), 1);
    CHECK_INT_EQ(entries, 3);

    entries = 0;
    CHECK_INT_EQ(propose_counting_appends(&r, 1, &entries), 0); /* 3 and 4-6 out */
    ack.match_index = 6;                                        /* both acknowledged by one reply */
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    CHECK_INT_EQ(appends_to_1(out, core_drain(&r, out, 16), &entries), 1);
    CHECK_INT_EQ(entries, 1);
    raft_close(&r);
}

/* The default, one AppendEntries with entries out at a time: everything
 * proposed while it is out leaves in the next, once it is acknowledged; a
 * window larger than the core can hold is refused at raft_init. */
static void test_inflight_default_one(void)
{
    struct raft r;
    struct raft_msg out[16];
    struct raft_msg ack = become_leader_of_term_2(&r);
    CHECK_INT_EQ(r.cfg.max_inflight_appends, RAFT_DEFAULT_INFLIGHT_MSGS);
    CHECK_INT_EQ(RAFT_DEFAULT_INFLIGHT_MSGS, 1);
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    core_drain(&r, out, 16);

    size_t entries = 0;
    size_t sent = propose_counting_appends(&r, 4, &entries); /* entries 2 .. 5 */
    CHECK_INT_EQ(sent, 1);                                   /* entry 2; 3 .. 5 wait */
    CHECK_INT_EQ(entries, 1);
    ack.match_index = 2;
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    entries = 0;
    CHECK_INT_EQ(appends_to_1(out, core_drain(&r, out, 16), &entries), 1);
    CHECK_INT_EQ(entries, 3);
    struct raft_config cfg = r.cfg;
    raft_close(&r);

    cfg.max_inflight_appends = RAFT_MAX_INFLIGHT_MSGS + 1;
    CHECK_INT_EQ(raft_init(&r, &cfg, 0), RAFT_EINVAL);
}

static struct raft_msg reply_to(uint32_t to, uint64_t term, bool success, uint64_t match,
                                uint64_t read_seq)
{
    struct raft_msg m = {.type = RAFT_MSG_APPEND_REPLY, .from = 2, .to = to, .term = term};
    m.success = success;
    m.match_index = match;
    m.read_seq = read_seq;
    return m;
}

/* Replies released together: a peer's successful ones of a term fold into
 * the last, with the largest match and read round; the rest pass as they
 * were, in order. */
static void test_coalesce_replies(void)
{
    struct raft_msg vote = {.type = RAFT_MSG_VOTE_REPLY, .from = 2, .to = 1, .term = 4};
    struct raft_msg m[] = {
        reply_to(1, 4, true, 10, 7), /* folds into [4] */
        reply_to(3, 4, true, 12, 1), /* another peer, a term before its next */
        vote,
        reply_to(1, 4, false, 0, 8), /* a refusal passes as it is */
        reply_to(1, 4, true, 9, 5),  /* the last of term 4 for 1: keeps */
        reply_to(3, 5, true, 11, 0), /* peer 3, a newer term: not folded */
    };
    size_t n = raft_coalesce_replies(m, sizeof(m) / sizeof(m[0]));
    CHECK_INT_EQ(n, 5);
    CHECK(m[0].to == 3 && m[0].term == 4 && m[0].match_index == 12);
    CHECK_INT_EQ(m[1].type, RAFT_MSG_VOTE_REPLY);
    CHECK(m[2].type == RAFT_MSG_APPEND_REPLY && !m[2].success && m[2].read_seq == 8);
    /* The survivor: the largest match (10, from the first) and round (7). */
    CHECK(m[3].to == 1 && m[3].term == 4 && m[3].success);
    CHECK_INT_EQ(m[3].match_index, 10);
    CHECK_INT_EQ(m[3].read_seq, 7);
    CHECK(m[4].to == 3 && m[4].term == 5 && m[4].match_index == 11);
    CHECK_INT_EQ(raft_coalesce_replies(m, 0), 0);
}

/* ------------------------------------------------ leases (6.4.1) */

/* node2_config with a 100 ms lease. */
static struct raft_config lease_config(void)
{
    struct raft_config cfg = node2_config();
    cfg.lease_ms = 100;
    return cfg;
}

/* Times in the lease tests: LEASE_T0 + x. The node starts 150 ms before,
 * so that its hold on votes after a start (election_min_ms) is over. */
#define LEASE_T0 1000

/* Node 2 of 3 with a 100 ms lease, leader of term 2 whose no-op node 1
 * acknowledged at LEASE_T0 (the round its election heartbeat started). */
static void lease_leader(struct raft *r)
{
    struct raft_config cfg = lease_config();
    struct raft_msg out[16];
    CHECK_INT_EQ(raft_init(r, &cfg, LEASE_T0 - 150), RAFT_OK);
    CHECK_INT_EQ(raft_restore(r, 1, RAFT_NONE, 0, 0, NULL, 0), RAFT_OK);
    raft_tick(r, LEASE_T0); /* its own timeout may run out now */
    CHECK(r->role == RAFT_CANDIDATE || raft_timeout_now(r));
    size_t n = core_drain(r, out, 16);
    CHECK(n == 2 && out[0].type == RAFT_MSG_VOTE && !out[0].transfer); /* no stickiness set aside */
    struct raft_msg grant = {
        .type = RAFT_MSG_VOTE_REPLY, .from = 1, .to = 2, .term = 2, .granted = true};
    CHECK_INT_EQ(raft_step(r, &grant), RAFT_OK);
    n = core_drain(r, out, 16);
    CHECK(n == 2 && out[0].type == RAFT_MSG_APPEND && out[0].read_seq == 1);
    CHECK_INT_EQ(raft_lease_end(r), 0); /* no answer yet, and the no-op is not committed */
    struct raft_msg ack = reply_to(2, 2, true, 1, 1);
    ack.from = 1;
    ack.promise_ms = 150; /* node 1 runs with leases too */
    CHECK_INT_EQ(raft_step(r, &ack), RAFT_OK);
    CHECK_INT_EQ(r->commit_index, 1);
    core_drain(r, out, 16);
}

/* The read a ready holds, if exactly one. */
static bool one_read(struct raft *r, struct raft_read_result *res, size_t *msgs)
{
    struct raft_ready rd;
    raft_ready(r, &rd);
    bool one = rd.n_reads == 1;
    if (one)
        *res = rd.reads[0];
    *msgs = rd.n_msgs;
    raft_advance(r, &rd);
    return one;
}

/* While a majority answered a round started less than lease_ms ago the
 * leader serves reads at once, with no round; after, by a round again.
 * Every heartbeat starts a round and renews the lease; a revoke (the
 * caller's clock stalled) and a transfer end it. Only answers that promise
 * no vote for another for at least the leader's election_min_ms count. */
static void test_lease_reads(void)
{
    struct raft r;
    struct raft_msg out[16];
    struct raft_read_result res;
    size_t msgs;
    lease_leader(&r);
    CHECK_INT_EQ(raft_lease_end(&r), LEASE_T0 + 100);
    CHECK_INT_EQ(raft_read(&r, 7), RAFT_OK);
    CHECK(one_read(&r, &res, &msgs) && res.read_id == 7 && res.ok && res.lease && res.index == 1);
    CHECK_INT_EQ(msgs, 0); /* no heartbeat round for it */

    raft_tick(&r, LEASE_T0 + 50); /* heartbeat: round 2, not answered */
    CHECK_INT_EQ(core_drain(&r, out, 16), 2);
    CHECK_INT_EQ(out[0].read_seq, 2);
    raft_tick(&r, LEASE_T0 + 99);
    CHECK_INT_EQ(raft_read(&r, 8), RAFT_OK);
    CHECK(one_read(&r, &res, &msgs) && res.lease);
    raft_tick(&r, LEASE_T0 + 100); /* the lease of round 1 is over; heartbeat: round 3 */
    CHECK_INT_EQ(raft_lease_end(&r), LEASE_T0 + 100);
    CHECK_INT_EQ(raft_read(&r, 9), RAFT_OK);
    CHECK(!one_read(&r, &res, &msgs));
    CHECK(msgs >= 2); /* a round for it: round 4, from LEASE_T0 + 100 */
    struct raft_msg ack = reply_to(2, 2, true, 1, 4);
    ack.from = 3;
    ack.promise_ms = 150;
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    CHECK(one_read(&r, &res, &msgs) && res.read_id == 9 && res.ok && !res.lease);
    CHECK_INT_EQ(raft_lease_end(&r), LEASE_T0 + 200);

    raft_lease_revoke(&r); /* rounds started before now no longer count */
    CHECK_INT_EQ(raft_lease_end(&r), 0);
    raft_tick(&r, LEASE_T0 + 150);
    core_drain(&r, out, 16); /* heartbeat: round 5 from LEASE_T0 + 150 */
    ack.read_seq = 5;
    ack.promise_ms = 100; /* a node whose timeout is shorter than ours */
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    CHECK_INT_EQ(raft_lease_end(&r), 0);
    ack.promise_ms = 0; /* a node without leases */
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    CHECK_INT_EQ(raft_lease_end(&r), 0);
    ack.promise_ms = 150;
    CHECK_INT_EQ(raft_step(&r, &ack), RAFT_OK);
    CHECK_INT_EQ(raft_lease_end(&r), LEASE_T0 + 250);
    CHECK_INT_EQ(raft_read_by_round(&r, 10), RAFT_OK); /* a read that came too late */
    CHECK(!one_read(&r, &res, &msgs));

    CHECK_INT_EQ(raft_transfer(&r, 3), RAFT_OK); /* its RequestVote sets stickiness aside */
    CHECK_INT_EQ(raft_lease_end(&r), 0);
    raft_close(&r);
}

/* A voter with leases on does not know, after a restart, which leader it
 * heard from: it ignores RequestVote for election_min_ms after raft_init,
 * as it would after hearing from a leader. Without leases (and CheckQuorum
 * off) it votes at once. A lease as long as the election timeout is
 * refused. */
static void test_lease_voter_waits_after_restart(void)
{
    for (int lease = 0; lease <= 1; lease++) {
        struct raft r;
        struct raft_config cfg = lease_config();
        cfg.lease_ms = lease ? 100 : 0;
        struct raft_msg out[16];
        CHECK_INT_EQ(raft_init(&r, &cfg, 1000), RAFT_OK);
        CHECK_INT_EQ(raft_restore(&r, 1, RAFT_NONE, 0, 0, NULL, 0), RAFT_OK);
        raft_tick(&r, 1100);
        struct raft_msg vote = {
            .type = RAFT_MSG_VOTE, .from = 3, .to = 2, .term = 3, .last_log_index = 0};
        CHECK_INT_EQ(raft_step(&r, &vote), RAFT_OK);
        size_t n = core_drain(&r, out, 16);
        if (lease) {
            CHECK_INT_EQ(n, 0);
            CHECK_INT_EQ(r.current_term, 1);
            raft_tick(&r, 1150);
            CHECK_INT_EQ(raft_step(&r, &vote), RAFT_OK);
            n = core_drain(&r, out, 16);
        }
        CHECK(n == 1 && out[0].type == RAFT_MSG_VOTE_REPLY && out[0].granted);
        raft_close(&r);
        cfg.lease_ms = 150;
        CHECK_INT_EQ(raft_init(&r, &cfg, 0), RAFT_EINVAL);
    }
}

/* With leases, a follower that answered a leader neither stands when told
 * to (an operator's timeout) nor votes for another candidate within
 * election_min_ms of the leader's last word, even once a higher term made
 * it forget that leader. */
static void test_lease_promise_holds(void)
{
    struct raft r;
    struct raft_config cfg = lease_config();
    struct raft_msg out[16];
    CHECK_INT_EQ(raft_init(&r, &cfg, 0), RAFT_OK);
    CHECK_INT_EQ(raft_restore(&r, 1, RAFT_NONE, 0, 0, NULL, 0), RAFT_OK);
    raft_tick(&r, 200);
    core_drain(&r, out, 16);
    struct raft_msg hb = append_msg(5, 1, 0, 0, NULL, 0);
    CHECK_INT_EQ(raft_step(&r, &hb), RAFT_OK);
    core_drain(&r, out, 16);
    CHECK(r.role == RAFT_FOLLOWER && r.leader_id == 1);
    raft_tick(&r, 250);
    CHECK(!raft_timeout_now(&r)); /* told to stand: it does not */
    CHECK(r.role == RAFT_FOLLOWER && r.current_term == 5);
    struct raft_msg news = reply_to(2, 6, false, 0, 0); /* a term 6 exists */
    news.from = 3;
    CHECK_INT_EQ(raft_step(&r, &news), RAFT_OK);
    CHECK(r.current_term == 6 && r.leader_id == RAFT_NONE);
    core_drain(&r, out, 16);
    raft_tick(&r, 300);
    struct raft_msg vote = {.type = RAFT_MSG_VOTE, .from = 3, .to = 2, .term = 7};
    CHECK_INT_EQ(raft_step(&r, &vote), RAFT_OK);
    CHECK_INT_EQ(core_drain(&r, out, 16), 0);
    CHECK_INT_EQ(r.current_term, 6);
    raft_tick(&r, 350); /* 150 ms after the leader's word */
    CHECK_INT_EQ(raft_step(&r, &vote), RAFT_OK);
    CHECK(core_drain(&r, out, 16) == 1 && out[0].granted && r.current_term == 7);
    raft_close(&r);
}

int main(void)
{
    test_leader_counts_itself_once_synced();
    test_compact_hands_data_over();
    test_snapshot_received_in_chunks();
    test_snapshot_keeps_matching_suffix();
    test_restore_from_snapshot();
    test_compact_applied_only();
    test_implausible_messages_dropped();
    test_first_heartbeat_resets_timer();
    test_no_reply_promises_a_truncated_entry();
    test_no_vote_sent_that_was_not_written();
    test_coalesce_replies();
    test_inflight_messages_bounded();
    test_inflight_default_one();
    test_lease_reads();
    test_lease_voter_waits_after_restart();
    test_lease_promise_holds();
    CHECK_DONE();
}

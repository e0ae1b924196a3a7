/* test_raft.c - rules of the pure Raft core checked one event at a time on a
 * single core, fed by hand the messages a batch of the node would take in
 * before one persist. (Whole clusters are in tests/sim.) */
#include "check.h"
#include "raft.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Node 2 of a 3-node cluster, timeouts 150-300 ms, heartbeat 50 ms. */
static void core_init(struct raft *r, uint64_t term)
{
    struct raft_config cfg = {
        .id = 2,
        .n_nodes = 3,
        .node_ids = {1, 2, 3},
        .election_min_ms = 150,
        .election_max_ms = 300,
        .heartbeat_ms = 50,
        .seed = 42,
    };
    CHECK_INT_EQ(raft_init(r, &cfg, 0), RAFT_OK);
    CHECK_INT_EQ(raft_restore(r, term, RAFT_NONE, NULL, 0), RAFT_OK);
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
    CHECK_INT_EQ(raft_last_index(&r), 0);
    CHECK_INT_EQ(r.leader_id, RAFT_NONE);
    raft_close(&r);
}

int main(void)
{
    test_implausible_messages_dropped();
    test_first_heartbeat_resets_timer();
    test_no_reply_promises_a_truncated_entry();
    test_no_vote_sent_that_was_not_written();
    CHECK_DONE();
}

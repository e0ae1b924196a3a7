/* test_cockpit_model.c - the cockpit's model: statuses in, events, cluster
 * view and safety checks out. The model is plain C with no curses, so it is
 * compiled in here directly. */
#include "../../ui/cockpit/model.c"
#include "../../ui/cockpit/wire_model.c"
#include "../../ui/cockpit/wire_text.c"

#include "check.h"

static struct model m;
static struct cluster three;

static void setup(void)
{
    model_free(&m);
    memset(&three, 0, sizeof three);
    three.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        three.nodes[i].id = i + 1;
        snprintf(three.nodes[i].client_addr, sizeof three.nodes[i].client_addr, "127.0.0.1:640%u",
                 i + 1);
    }
    model_init(&m, &three);
    model_set_time(&m, 1000, 1700000000000ull);
    for (uint32_t id = 1; id <= 3; id++)
        model_set_process(&m, id, PROC_RUNNING, (int)(100 + id), 0);
}

/* A status with a log of (index, term) pairs and optional event lines. */
struct fake {
    Raftkv__Status st;
    Raftkv__LogEntryView entries[8];
    Raftkv__LogEntryView *entry_ptrs[8];
    char *events[4];
};

static Raftkv__Status *status(struct fake *f, uint32_t id, uint32_t role, uint64_t term,
                              uint64_t commit, const uint64_t (*log)[2], size_t n_log)
{
    memset(f, 0, sizeof *f);
    raftkv__status__init(&f->st);
    f->st.id = id;
    f->st.pid = 100 + id;
    f->st.role = role;
    f->st.term = term;
    f->st.commit_index = commit;
    f->st.last_applied = commit;
    f->st.speed = 1;
    for (size_t i = 0; i < n_log; i++) {
        raftkv__log_entry_view__init(&f->entries[i]);
        f->entries[i].index = log[i][0];
        f->entries[i].term = log[i][1];
        f->entries[i].text = "no-op";
        f->entry_ptrs[i] = &f->entries[i];
    }
    f->st.n_log_tail = n_log;
    f->st.log_tail = f->entry_ptrs;
    f->st.events = f->events;
    return &f->st;
}

static bool has_event(const char *text)
{
    for (uint64_t seq = model_first_event(&m); seq < m.n_events; seq++)
        if (strstr(model_event_at(&m, seq)->text, text))
            return true;
    return false;
}

/* Figure 3, Election Safety: at most one leader can be elected in a term. */
static void test_two_leaders_in_one_term(void)
{
    setup();
    struct fake f;
    model_apply_status(&m, status(&f, 1, ROLE_LEADER, 5, 0, NULL, 0));
    model_apply_status(&m, status(&f, 1, ROLE_LEADER, 5, 0, NULL, 0));
    model_apply_status(&m, status(&f, 2, ROLE_LEADER, 6, 0, NULL, 0));
    CHECK_INT_EQ(m.violations, 0);
    model_apply_status(&m, status(&f, 3, ROLE_LEADER, 5, 0, NULL, 0));
    CHECK_INT_EQ(m.violations, 1);
    CHECK(has_event("two leaders in term 5: node 1 and node 3"));
    model_apply_status(&m, status(&f, 3, ROLE_LEADER, 5, 0, NULL, 0));
    CHECK_INT_EQ(m.violations, 1); /* told once */
}

/* Log Matching: committed entries at the same index have the same term. */
static void test_committed_entries_agree(void)
{
    setup();
    struct fake f;
    const uint64_t a[][2] = {{1, 1}, {2, 1}, {3, 2}};
    const uint64_t b[][2] = {{1, 1}, {2, 1}, {3, 3}};
    model_apply_status(&m, status(&f, 1, ROLE_FOLLOWER, 3, 2, a, 3));
    model_apply_status(&m, status(&f, 2, ROLE_FOLLOWER, 3, 2, b, 3));
    CHECK_INT_EQ(m.violations, 0); /* #3 differs but is not committed */
    model_apply_status(&m, status(&f, 2, ROLE_FOLLOWER, 3, 3, b, 3));
    model_apply_status(&m, status(&f, 1, ROLE_FOLLOWER, 3, 3, a, 3));
    CHECK_INT_EQ(m.violations, 1);
    CHECK(has_event("disagree on committed entry #3"));
}

/* State Machine Safety: the same applied index gives the same data. */
static void test_same_digest_at_same_index(void)
{
    setup();
    struct fake f;
    Raftkv__Status *st = status(&f, 1, ROLE_FOLLOWER, 1, 4, NULL, 0);
    st->state_digest = 0xabc;
    model_apply_status(&m, st);
    st = status(&f, 2, ROLE_FOLLOWER, 1, 4, NULL, 0);
    st->state_digest = 0xabc;
    model_apply_status(&m, st);
    CHECK_INT_EQ(m.violations, 0);
    st = status(&f, 3, ROLE_FOLLOWER, 1, 4, NULL, 0);
    st->state_digest = 0xdef;
    model_apply_status(&m, st);
    CHECK_INT_EQ(m.violations, 1);
    CHECK(has_event("hold different data"));
}

static void test_events_in_words(void)
{
    setup();
    struct fake f;
    model_apply_status(&m, status(&f, 3, ROLE_FOLLOWER, 3, 0, NULL, 0));
    Raftkv__Status *st = status(&f, 3, ROLE_CANDIDATE, 4, 0, NULL, 0);
    f.events[0] = "term 4 Follower -> Candidate (timed out after 212 ms)";
    st->n_events = 1;
    model_apply_status(&m, st);
    CHECK(has_event("node 3 timed out after 212 ms and started term 4"));
    st = status(&f, 3, ROLE_LEADER, 4, 0, NULL, 0);
    f.events[0] = "node 3: term 4 Candidate -> Leader (votes from 1,3)";
    st->n_events = 1;
    model_apply_status(&m, st);
    CHECK(has_event("node 3 won the election for term 4 (votes from 1,3)"));
    st = status(&f, 3, ROLE_LEADER, 4, 0, NULL, 0);
    f.events[0] = "cut off from 1,2";
    st->n_events = 1;
    model_apply_status(&m, st);
    CHECK(has_event("node 3: cut off from 1,2"));
}

static void test_split_vote(void)
{
    setup();
    struct fake f;
    model_apply_status(&m, status(&f, 1, ROLE_CANDIDATE, 5, 0, NULL, 0));
    model_apply_status(&m, status(&f, 2, ROLE_CANDIDATE, 5, 0, NULL, 0));
    model_apply_status(&m, status(&f, 1, ROLE_CANDIDATE, 6, 0, NULL, 0));
    CHECK(!has_event("split vote"));
    model_apply_status(&m, status(&f, 2, ROLE_FOLLOWER, 6, 0, NULL, 0));
    CHECK(has_event("split vote in term 5: candidates 1,2"));
    /* A term someone won is no split vote. */
    model_apply_status(&m, status(&f, 1, ROLE_LEADER, 6, 0, NULL, 0));
    model_apply_status(&m, status(&f, 1, ROLE_FOLLOWER, 7, 0, NULL, 0));
    CHECK(!has_event("split vote in term 6"));
}

static void test_roles_and_view(void)
{
    setup();
    struct fake f;
    model_apply_status(&m, status(&f, 1, ROLE_LEADER, 2, 0, NULL, 0));
    model_apply_status(&m, status(&f, 2, ROLE_FOLLOWER, 2, 0, NULL, 0));
    model_apply_status(&m, status(&f, 3, ROLE_FOLLOWER, 2, 0, NULL, 0));
    struct model_view v;
    model_get_view(&m, &v);
    CHECK_INT_EQ(v.leader, 1);
    CHECK_INT_EQ(v.largest_group, 3);
    CHECK(v.majority && v.leader_in_majority);

    /* Node 1 cut off: the others are still a majority, node 1 is not in it. */
    Raftkv__Status *st = status(&f, 1, ROLE_LEADER, 2, 0, NULL, 0);
    uint32_t blocked[] = {2, 3};
    st->blocked = blocked;
    st->n_blocked = 2;
    model_apply_status(&m, st);
    model_get_view(&m, &v);
    CHECK_INT_EQ(v.largest_group, 2);
    CHECK(v.majority && !v.leader_in_majority);

    model_set_process(&m, 2, PROC_STOPPED, 102, 0);
    CHECK_INT_EQ(model_role_of(&m, model_node(&m, 2)), ROLE_SUSPENDED);
    model_set_process(&m, 3, PROC_EXITED, 0, -9);
    CHECK_INT_EQ(model_role_of(&m, model_node(&m, 3)), ROLE_DOWN);
    model_get_view(&m, &v);
    CHECK(!v.majority);

    /* A late report of the killed process changes nothing. */
    model_apply_status(&m, status(&f, 3, ROLE_LEADER, 9, 0, NULL, 0));
    CHECK_INT_EQ(model_role_of(&m, model_node(&m, 3)), ROLE_DOWN);

    /* A node that stops reporting is noticed. */
    model_set_time(&m, 1000 + MODEL_SILENT_MS + 1, 1700000002000ull);
    model_tick(&m);
    CHECK(has_event("node 1 has not reported"));
    CHECK(!model_node_live(&m, model_node(&m, 1)));
}

int main(void)
{
    test_two_leaders_in_one_term();
    test_committed_entries_agree();
    test_same_digest_at_same_index();
    test_events_in_words();
    test_split_vote();
    test_roles_and_view();
    model_free(&m);
    CHECK_DONE();
}

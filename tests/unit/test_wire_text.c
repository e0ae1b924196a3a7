/* test_wire_text.c - the cockpit's wire: messages in words (one table of
 * types), and the matching of a sender's and a receiver's records into one
 * message. Plain C with no curses, compiled in directly. */
#include "../../ui/cockpit/wire_model.c"
#include "../../ui/cockpit/wire_text.c"

#include "check.h"

static struct wire_rec rec(uint32_t event, uint32_t type, uint32_t from, uint32_t to, uint64_t id,
                           uint64_t term)
{
    return (struct wire_rec){
        .node = event == WREC_SENT ? from : to,
        .event = event,
        .type = type,
        .from = from,
        .to = to,
        .id = id,
        .term = term,
    };
}

static void test_words(void)
{
    char out[WIRE_TEXT];
    struct wire_rec r = rec(WREC_SENT, 3, 1, 3, 7, 4);
    r.prev_index = 7;
    r.prev_term = 4;
    r.n_entries = 2;
    r.commit = 7;
    wire_text(&r, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 3  AppendEntries t4 [8..9] commit 7");
    r.n_entries = 1;
    wire_text(&r, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 3  AppendEntries t4 [8] commit 7");
    r.n_entries = 0;
    r.heartbeat = true;
    r.count = 4;
    wire_text(&r, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 3  AppendEntries t4 heartbeat commit 7 (x4)");
    CHECK(wire_type_glyph(3, true) == '.');
    r.heartbeat = false;
    r.count = 0;
    wire_text(&r, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 3  AppendEntries t4 [] after #7 t4 commit 7");

    struct wire_rec ok = rec(WREC_SENT, 4, 3, 1, 9, 4);
    ok.success = true;
    ok.match_index = 9;
    wire_text(&ok, false, out, sizeof out);
    CHECK_STR_EQ(out, "3 -> 1  AppendEntries reply t4 ok match 9");
    struct wire_rec no = rec(WREC_SENT, 4, 3, 1, 10, 4);
    no.rejected_index = 8;
    no.hint_index = 5;
    no.hint_term = 2;
    wire_text(&no, false, out, sizeof out);
    CHECK_STR_EQ(out, "3 -> 1  AppendEntries reply t4 refused #8, hint #5 t2");
    struct wire_rec stale = rec(WREC_SENT, 4, 3, 1, 11, 9);
    wire_text(&stale, false, out, sizeof out);
    CHECK_STR_EQ(out, "3 -> 1  AppendEntries reply t9 refused (stale term)");

    struct wire_rec vote = rec(WREC_SENT, 1, 2, 1, 3, 5);
    vote.last_log_index = 9;
    vote.last_log_term = 4;
    wire_text(&vote, true, out, sizeof out);
    CHECK_STR_EQ(out, "2 -> all RequestVote t5 last #9 t4");
    struct wire_rec granted = rec(WREC_SENT, 2, 3, 2, 4, 5);
    granted.granted = true;
    wire_text(&granted, false, out, sizeof out);
    CHECK_STR_EQ(out, "3 -> 2  vote granted t5");
    granted.granted = false;
    wire_text(&granted, false, out, sizeof out);
    CHECK_STR_EQ(out, "3 -> 2  vote refused t5");

    struct wire_rec snap = rec(WREC_SENT, 5, 1, 2, 5, 3);
    snap.snapshot_index = 120;
    snap.snapshot_term = 2;
    snap.done = true;
    wire_text(&snap, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 2  InstallSnapshot t3 snap #120 t2 at byte 0, last chunk");

    /* The core's later types, one table line each. */
    struct wire_rec pre = rec(WREC_SENT, 7, 2, 1, 7, 6);
    pre.last_log_index = 9;
    pre.last_log_term = 4;
    wire_text(&pre, true, out, sizeof out);
    CHECK_STR_EQ(out, "2 -> all PreVote t6 last #9 t4");
    CHECK(wire_type_broadcast(7) && wire_type_broadcast(1) && !wire_type_broadcast(3));
    struct wire_rec pre_reply = rec(WREC_SENT, 8, 1, 2, 8, 6);
    pre_reply.granted = true;
    wire_text(&pre_reply, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 2  pre-vote granted t6");
    pre_reply.granted = false;
    pre_reply.leader_hint = 3;
    pre_reply.leader_ago_ms = 40;
    wire_text(&pre_reply, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 2  pre-vote refused t6 (leader 3 heard 40 ms ago)");
    pre_reply.leader_hint = 1;
    wire_text(&pre_reply, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 2  pre-vote refused t6 (1 leads)");
    struct wire_rec now = rec(WREC_SENT, 9, 1, 3, 9, 4);
    wire_text(&now, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 3  TimeoutNow t4");
    CHECK(wire_type_glyph(9, false) == '!');

    /* A type the table does not know yet still reads sensibly. */
    struct wire_rec unknown = rec(WREC_SENT, 42, 1, 2, 6, 3);
    CHECK(wire_type_class(42) == WCLASS_OTHER && !wire_type_broadcast(42));
    wire_text(&unknown, false, out, sizeof out);
    CHECK_STR_EQ(out, "1 -> 2  message type 42 t3");
    CHECK(wire_type_glyph(42, false) == '#');
    char name[32];
    CHECK_STR_EQ(wire_type_name(2, name, sizeof name), "RequestVote reply");

    wire_lost_text(WLOST_DROP, 30, out, sizeof out);
    CHECK_STR_EQ(out, "LOST: drop 30%");
    wire_lost_text(WLOST_CUT, 0, out, sizeof out);
    CHECK_STR_EQ(out, "LOST: link cut");
}

static struct wire_model w;

static void test_matching(void)
{
    wire_model_init(&w);
    struct wire_rec sent = rec(WREC_SENT, 1, 2, 1, 11, 5);
    const struct wire_msg *m = wire_apply(&w, &sent, 1000, 0);
    CHECK_INT_EQ(m->state, WMSG_IN_FLIGHT);
    struct wire_rec got = rec(WREC_RECEIVED, 1, 2, 1, 11, 5);
    const struct wire_msg *m2 = wire_apply(&w, &got, 1010, 0);
    CHECK(m2 == m);
    CHECK_INT_EQ(m->state, WMSG_DELIVERED);
    CHECK_INT_EQ(w.n, 1);

    /* The receiver's report first, then the sender's: still one message. */
    struct wire_rec got2 = rec(WREC_RECEIVED, 1, 2, 3, 12, 5);
    wire_apply(&w, &got2, 1020, 0);
    struct wire_rec sent2 = rec(WREC_SENT, 1, 2, 3, 12, 5);
    m = wire_apply(&w, &sent2, 1021, 0);
    CHECK_INT_EQ(w.n, 2);
    CHECK_INT_EQ(m->state, WMSG_DELIVERED);

    /* Same number from another sender: another message. */
    struct wire_rec other = rec(WREC_SENT, 2, 1, 2, 11, 5);
    wire_apply(&w, &other, 1030, 0);
    CHECK_INT_EQ(w.n, 3);

    /* Held messages, numbered in the order held. */
    struct wire_rec h1 = rec(WREC_HELD, 3, 1, 3, 20, 5);
    struct wire_rec h2 = rec(WREC_HELD, 3, 1, 2, 21, 5);
    wire_apply(&w, &h2, 1040, 0);
    wire_apply(&w, &h1, 1041, 0);
    uint64_t held[8];
    CHECK_INT_EQ(wire_held(&w, held, 8), 2);
    CHECK_INT_EQ(wire_msg_at(&w, held[0])->rec.id, 21);
    CHECK_INT_EQ(wire_msg_at(&w, held[1])->rec.id, 20);
    struct wire_rec d = rec(WREC_DISCARDED, 3, 1, 2, 21, 5);
    wire_apply(&w, &d, 1050, 0);
    CHECK_INT_EQ(wire_held(&w, held, 8), 1);

    struct wire_line lines[16];
    size_t n = wire_lines(&w, 1060, 1.0, 3, lines, 16);
    CHECK(n >= 2);
    CHECK_INT_EQ(lines[0].held_number, 1);
    CHECK_STR_EQ(lines[0].state, "held [1]");
    /* The two RequestVotes of node 2 in term 5 read as one line to all. */
    bool all = false;
    for (size_t i = 0; i < n; i++)
        all |= strcmp(lines[i].text, "2 -> all RequestVote t5 last #0 t0") == 0;
    CHECK(all);

    /* Lost, with the sender's percent. */
    struct wire_rec lost = rec(WREC_LOST, 3, 1, 3, 30, 5);
    lost.lost = WLOST_DROP;
    m = wire_apply(&w, &lost, 1070, 30);
    CHECK_INT_EQ(m->state, WMSG_LOST);
    n = wire_lines(&w, 1080, 1.0, 3, lines, 16);
    CHECK_STR_EQ(lines[n - 1].state, "LOST: drop 30%");

    /* Heartbeats can be hidden. */
    wire_model_init(&w);
    struct wire_rec hb = rec(WREC_SENT, 3, 1, 2, 40, 5);
    hb.heartbeat = true;
    wire_apply(&w, &hb, 2000, 0);
    CHECK_INT_EQ(wire_lines(&w, 2000, 1.0, 3, lines, 16), 1);
    w.hide_heartbeats = true;
    CHECK_INT_EQ(wire_lines(&w, 2000, 1.0, 3, lines, 16), 0);

    /* A message travels on screen for 100 ms of node time: 1 s at speed 0.1. */
    wire_model_init(&w);
    struct wire_rec a = rec(WREC_SENT, 3, 1, 2, 50, 5);
    struct wire_rec b = rec(WREC_RECEIVED, 3, 1, 2, 50, 5);
    wire_apply(&w, &a, 3000, 0);
    wire_apply(&w, &b, 3001, 0);
    wire_lines(&w, 3500, 0.1, 3, lines, 16);
    CHECK_INT_EQ(lines[0].shown, WMSG_IN_FLIGHT);
    wire_lines(&w, 4100, 0.1, 3, lines, 16);
    CHECK_STR_EQ(lines[0].state, "delivered");

    /* More messages than the ring holds: the oldest go. */
    wire_model_init(&w);
    for (uint64_t i = 1; i <= WIRE_MSGS + 10; i++) {
        struct wire_rec s = rec(WREC_SENT, 3, 1, 2, i, 5);
        wire_apply(&w, &s, 5000, 0);
    }
    CHECK(wire_msg_at(&w, 0) == NULL);
    CHECK(wire_msg_at(&w, w.n - 1) != NULL);
    struct wire_rec late = rec(WREC_RECEIVED, 3, 1, 2, 3, 5); /* its send was forgotten */
    wire_apply(&w, &late, 5001, 0);
    CHECK_INT_EQ(w.n, WIRE_MSGS + 11);
}

int main(void)
{
    test_words();
    test_matching();
    CHECK_DONE();
}

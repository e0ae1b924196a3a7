/* wire_model.h - the messages on the wire, as the cockpit knows them: what each
 * node reported sending, receiving, losing and holding (WireRecord in
 * proto/raftkv.proto), matched by sender and message number, and put into
 * words a student can read. No curses here: draw_wire.c paints the lines
 * wire_lines() makes, a replay feeds wire_apply() from a file.
 */
#ifndef RAFTKV_UI_WIRE_MODEL_H
#define RAFTKV_UI_WIRE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MSGS 1024      /* messages kept (a ring) */
#define WIRE_TEXT 112       /* one message in words */
#define WIRE_UNSEEN_MS 3000 /* sent this long ago and never seen arriving: said so */
#define WIRE_TRANSIT_MS 100 /* drawn in flight at least this long in node time */
#define WIRE_TRANSIT_MAX_MS 2000

/* What a node reported (WireRecord events). */
enum wire_rec_event {
    WREC_SENT = 1,
    WREC_RECEIVED = 2,
    WREC_LOST = 3,
    WREC_HELD = 4,
    WREC_DISCARDED = 5,
};

/* Why a message was lost (WireRecord.lost). */
enum wire_rec_lost {
    WLOST_CUT = 1,
    WLOST_DROP = 2,
    WLOST_BUSY = 3,
    WLOST_SUSPENDED = 4,
};

/* One WireRecord as plain C, with the node that reported it. */
struct wire_rec {
    uint32_t node;
    uint32_t event, lost, type, from, to;
    uint64_t id;
    uint64_t term;
    uint64_t last_log_index, last_log_term;
    bool granted;
    uint32_t leader_hint;   /* refused: the leader the voter heard from lately */
    uint64_t leader_ago_ms; /* and how long ago */
    uint64_t prev_index, prev_term, commit;
    uint32_t n_entries;
    bool success;
    uint64_t match_index, rejected_index, hint_index, hint_term;
    uint64_t snapshot_index, snapshot_term, offset, next_offset;
    bool done;
    bool heartbeat;
    uint32_t count; /* heartbeats it stands for; 0 or 1: one */
};

enum wire_msg_state {
    WMSG_IN_FLIGHT,
    WMSG_DELIVERED,
    WMSG_LOST,
    WMSG_HELD,    /* frozen: waiting at its receiver */
    WMSG_DROPPED, /* a held message dropped by hand */
};

struct wire_msg {
    uint64_t seq; /* order first seen */
    struct wire_rec rec;
    enum wire_msg_state state;
    uint32_t lost;             /* enum wire_rec_lost */
    uint32_t drop_percent;     /* WLOST_DROP: the sender's percent then */
    uint64_t sent_ms, done_ms; /* the model's clock */
    uint64_t held_seq;         /* order held */
};

struct wire_model {
    struct wire_msg msgs[WIRE_MSGS];
    uint64_t n;                    /* total; msgs[seq % WIRE_MSGS] */
    uint64_t index[WIRE_MSGS * 2]; /* (from, id) hash -> seq + 1 */
    uint64_t held_counter;
    bool hide_heartbeats;
    uint64_t unreported; /* records the nodes could not send */
    uint64_t records;    /* records taken */
};

void wire_model_init(struct wire_model *w);
/* Take one record at time now_ms; drop_percent is the sender's (for "drop 30%"). */
const struct wire_msg *wire_apply(struct wire_model *w, const struct wire_rec *r, uint64_t now_ms,
                                  uint32_t drop_percent);
const struct wire_msg *wire_msg_at(const struct wire_model *w, uint64_t seq);
/* Held messages, oldest first: their seqs into out (at most max); the count. */
size_t wire_held(const struct wire_model *w, uint64_t *out, size_t max);

/* ---- words (wire_text.c) */

/* "AppendEntries", "RequestVote reply", or "message type 9" for a type no
 * table line names. */
const char *wire_type_name(uint32_t type, char *buf, size_t size);
/* How a type is coloured in the panel. */
enum wire_class { WCLASS_OTHER, WCLASS_VOTE, WCLASS_APPEND, WCLASS_REPLY, WCLASS_SNAPSHOT };
enum wire_class wire_type_class(uint32_t type);
/* Whether a type goes to every other node at once (RequestVote, PreVote):
 * such messages read as one line "2 -> all". */
bool wire_type_broadcast(uint32_t type);
/* A glyph for the type: '?' RequestVote, 'v' its reply, '>' AppendEntries,
 * '<' its reply, 'S' InstallSnapshot, 's' its reply, 'p' PreVote, '!' TimeoutNow,
 * '.' a heartbeat, '#' unknown. */
char wire_type_glyph(uint32_t type, bool heartbeat);
/* "1 -> 3  AppendEntries t4 [8..9] commit 7"; to_all: "2 -> all RequestVote ...". */
void wire_text(const struct wire_rec *r, bool to_all, char *out, size_t size);
/* "LOST: link cut", "LOST: drop 30%". */
void wire_lost_text(uint32_t lost, uint32_t drop_percent, char *out, size_t size);

/* ---- lines for the panel */

struct wire_line {
    char text[WIRE_TEXT];
    char state[40]; /* "delivered", "in flight", "held", "LOST: link cut" */
    char glyph;
    uint32_t type;
    bool heartbeat;
    enum wire_msg_state shown; /* IN_FLIGHT also while drawn travelling */
    int held_number;           /* 1..: its number for :deliver N; 0 when not held */
    double progress;           /* in flight: 0..1 of the way */
    uint32_t from, to;         /* to 0: all */
};

/* The held messages (numbered, oldest first), then the newest others,
 * oldest first: at most max lines. speed scales the drawn transit time
 * (WIRE_TRANSIT_MS of node time). */
size_t wire_lines(const struct wire_model *w, uint64_t now_ms, double speed, size_t n_nodes,
                  struct wire_line *out, size_t max);

#endif

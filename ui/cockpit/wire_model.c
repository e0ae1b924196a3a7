/* wire_model.c - the messages on the wire: records from the nodes in, one entry a
 * message out, matched by its sender and the sender's message number (the
 * sender's "sent" and the receiver's "received" are two records of one
 * message, in either order). No curses here. */
#include "wire_model.h"

#include <stdio.h>
#include <string.h>

#define WIRE_INDEX (WIRE_MSGS * 2)

void wire_model_init(struct wire_model *w)
{
    memset(w, 0, sizeof *w);
}

const struct wire_msg *wire_msg_at(const struct wire_model *w, uint64_t seq)
{
    if (seq >= w->n || w->n - seq > WIRE_MSGS)
        return NULL;
    return &w->msgs[seq % WIRE_MSGS];
}

static size_t wire_hash(uint32_t from, uint64_t id)
{
    uint64_t h = (id * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)from * 0xc2b2ae3d27d4eb4full);
    return (size_t)((h >> 17) % WIRE_INDEX);
}

static struct wire_msg *wire_find(struct wire_model *w, const struct wire_rec *r)
{
    if (r->id == 0)
        return NULL;
    uint64_t slot = w->index[wire_hash(r->from, r->id)];
    if (slot == 0)
        return NULL;
    uint64_t seq = slot - 1;
    if (seq >= w->n || w->n - seq > WIRE_MSGS)
        return NULL;
    struct wire_msg *m = &w->msgs[seq % WIRE_MSGS];
    if (m->rec.from != r->from || m->rec.id != r->id || m->rec.to != r->to)
        return NULL;
    return m;
}

static struct wire_msg *wire_add(struct wire_model *w, const struct wire_rec *r, uint64_t now_ms)
{
    struct wire_msg *m = &w->msgs[w->n % WIRE_MSGS];
    memset(m, 0, sizeof *m);
    m->seq = w->n++;
    m->rec = *r;
    m->state = WMSG_IN_FLIGHT;
    m->sent_ms = m->done_ms = now_ms;
    if (r->id != 0)
        w->index[wire_hash(r->from, r->id)] = m->seq + 1;
    return m;
}

const struct wire_msg *wire_apply(struct wire_model *w, const struct wire_rec *r, uint64_t now_ms,
                                  uint32_t drop_percent)
{
    w->records++;
    struct wire_msg *m = wire_find(w, r);
    if (m == NULL) {
        m = wire_add(w, r, now_ms);
    } else if (r->event == WREC_SENT) {
        /* The receiver's report came first: the sender's says how many. */
        m->rec.count = r->count;
        return m;
    }
    switch ((enum wire_rec_event)r->event) {
    case WREC_SENT:
        m->state = WMSG_IN_FLIGHT;
        break;
    case WREC_RECEIVED:
        m->state = WMSG_DELIVERED;
        m->done_ms = now_ms;
        break;
    case WREC_LOST:
        m->state = WMSG_LOST;
        m->lost = r->lost;
        m->drop_percent = drop_percent;
        m->done_ms = now_ms;
        break;
    case WREC_HELD:
        m->state = WMSG_HELD;
        m->held_seq = ++w->held_counter;
        break;
    case WREC_DISCARDED:
        m->state = WMSG_DROPPED;
        m->done_ms = now_ms;
        break;
    }
    return m;
}

size_t wire_held(const struct wire_model *w, uint64_t *out, size_t max)
{
    uint64_t all[WIRE_MSGS];
    size_t n = 0;
    uint64_t first = w->n > WIRE_MSGS ? w->n - WIRE_MSGS : 0;
    for (uint64_t seq = first; seq < w->n; seq++)
        if (w->msgs[seq % WIRE_MSGS].state == WMSG_HELD)
            all[n++] = seq;
    /* Oldest held first (insertion sort: a handful while a class talks). */
    for (size_t i = 1; i < n; i++) {
        uint64_t s = all[i];
        uint64_t key = w->msgs[s % WIRE_MSGS].held_seq;
        size_t j = i;
        while (j > 0 && w->msgs[all[j - 1] % WIRE_MSGS].held_seq > key) {
            all[j] = all[j - 1];
            j--;
        }
        all[j] = s;
    }
    size_t k = n < max ? n : max;
    memcpy(out, all, k * sizeof *out);
    return k;
}

/* ------------------------------------------------------------ lines */

static void wire_fill_line(const struct wire_msg *m, bool to_all, uint64_t now_ms,
                           double transit_ms, struct wire_line *l)
{
    memset(l, 0, sizeof *l);
    wire_text(&m->rec, to_all, l->text, sizeof l->text);
    l->glyph = wire_type_glyph(m->rec.type, m->rec.heartbeat);
    l->type = m->rec.type;
    l->heartbeat = m->rec.heartbeat;
    l->from = m->rec.from;
    l->to = to_all ? 0 : m->rec.to;
    l->shown = m->state;
    uint64_t age = now_ms > m->sent_ms ? now_ms - m->sent_ms : 0;
    switch (m->state) {
    case WMSG_IN_FLIGHT:
        if (age >= WIRE_UNSEEN_MS) {
            snprintf(l->state, sizeof l->state, "not seen arriving");
            l->shown = WMSG_DELIVERED;
            break;
        }
        l->progress = (double)age / transit_ms;
        if (l->progress > 0.95)
            l->progress = 0.95; /* it has not arrived yet */
        snprintf(l->state, sizeof l->state, "in flight");
        break;
    case WMSG_DELIVERED:
        if ((double)age < transit_ms) {
            /* Drawn travelling for a moment, so a person sees it go. */
            l->shown = WMSG_IN_FLIGHT;
            l->progress = (double)age / transit_ms;
            snprintf(l->state, sizeof l->state, "in flight");
        } else {
            snprintf(l->state, sizeof l->state, "delivered");
        }
        break;
    case WMSG_LOST:
        wire_lost_text(m->lost, m->drop_percent, l->state, sizeof l->state);
        break;
    case WMSG_HELD:
        snprintf(l->state, sizeof l->state, "held");
        break;
    case WMSG_DROPPED:
        snprintf(l->state, sizeof l->state, "dropped by hand");
        break;
    }
}

/* Whether b is the same vote request as a, to another node, sent with it. */
static bool wire_same_broadcast(const struct wire_msg *a, const struct wire_msg *b)
{
    return a->rec.type == b->rec.type && a->rec.from == b->rec.from && a->rec.term == b->rec.term &&
           a->rec.last_log_index == b->rec.last_log_index &&
           a->rec.last_log_term == b->rec.last_log_term && a->rec.to != b->rec.to &&
           a->state == b->state && a->state != WMSG_HELD;
}

size_t wire_lines(const struct wire_model *w, uint64_t now_ms, double speed, size_t n_nodes,
                  struct wire_line *out, size_t max)
{
    if (max == 0)
        return 0;
    double transit = WIRE_TRANSIT_MS / (speed > 0.001 ? speed : 0.001);
    if (transit > WIRE_TRANSIT_MAX_MS)
        transit = WIRE_TRANSIT_MAX_MS;
    uint64_t held[WIRE_MSGS];
    size_t n_held = wire_held(w, held, WIRE_MSGS);
    size_t n = 0;
    /* Held first, numbered; half the lines at most when others wait too. */
    size_t held_room = n_held < max ? n_held : max;
    for (size_t i = 0; i < held_room; i++) {
        const struct wire_msg *m = &w->msgs[held[i] % WIRE_MSGS];
        wire_fill_line(m, false, now_ms, transit, &out[n]);
        out[n].held_number = (int)i + 1;
        snprintf(out[n].state, sizeof out[n].state, "held [%zu]", i + 1);
        n++;
    }
    if (n >= max)
        return n;
    /* Then the newest others, walking back; a RequestVote to every other
     * node is one line "-> all". */
    struct wire_line recent[64];
    size_t n_recent = 0, want = max - n < 64 ? max - n : 64;
    uint64_t first = w->n > WIRE_MSGS ? w->n - WIRE_MSGS : 0;
    for (uint64_t seq = w->n; seq > first && n_recent < want;) {
        const struct wire_msg *m = &w->msgs[(seq - 1) % WIRE_MSGS];
        seq--;
        if (m->state == WMSG_HELD || (w->hide_heartbeats && m->rec.heartbeat))
            continue;
        size_t group = 1;
        if (wire_type_broadcast(m->rec.type) && n_nodes > 2) {
            while (seq > first && group < n_nodes - 1 &&
                   wire_same_broadcast(m, &w->msgs[(seq - 1) % WIRE_MSGS])) {
                seq--;
                group++;
            }
        }
        wire_fill_line(m, group == n_nodes - 1 && n_nodes > 2, now_ms, transit,
                       &recent[n_recent++]);
    }
    for (size_t i = n_recent; i-- > 0;)
        out[n++] = recent[i];
    return n;
}

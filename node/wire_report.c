/* wire_report.c - what the node tells the supervisor about its messages, and
 * the frozen node that holds them.
 *
 * Every peer message sent, received, lost or held is noted as a WireRecord
 * (proto/raftkv.proto) and the records leave in one WireReport every
 * WIRE_FLUSH_MS, or at once when WIRE_REPORT_MAX wait. A heartbeat (an
 * AppendEntries with no entries and the commit index last sent, or a plain
 * success reply with the match last sent) is reported on its own at most
 * every WIRE_HEARTBEAT_EVERY_MS on each link; those between are counted into
 * the next one. A message reported on its own says so (PeerMessage.wire_shown),
 * so its receiver reports its arrival on its own too. Everything that changes
 * something (a vote, entries, a new commit index, a rejection) is reported.
 *
 * Frozen (Control.frozen): the clock stands still (loop.c) and every peer
 * message that passes the transport's checks is held here, reported as held,
 * until the supervisor delivers or drops it by (from, wire_id), or thaws the
 * node, which delivers everything held in the order it came.
 */
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "raftkv.pb-c.h"

#define WIRE_FLUSH_MS 20
#define WIRE_HEARTBEAT_EVERY_MS 200
#define WIRE_HELD_MAX 4096 /* a frozen node holds at most this many; then it loses them */

static int wire_slot_of(const struct node *n, uint32_t id)
{
    for (size_t i = 0; i < n->cluster.n; i++)
        if (n->cluster.nodes[i].id == id)
            return (int)i;
    return -1;
}

/* Whether m is a heartbeat on its link, and the link's heartbeat counters. */
static struct wire_heartbeats *wire_heartbeat_of(struct node *n, enum wire_event ev,
                                                 const struct raft_msg *m, bool *heartbeat)
{
    *heartbeat = false;
    int dir = ev == WIRE_RECEIVED ? 1 : 0;
    int kind;
    if (m->type == RAFT_MSG_APPEND && m->n_entries == 0)
        kind = 0;
    else if (m->type == RAFT_MSG_APPEND_REPLY && m->success)
        kind = 1;
    else
        return NULL;
    int slot = wire_slot_of(n, ev == WIRE_RECEIVED ? m->from : m->to);
    if (slot < 0)
        return NULL;
    struct wire_heartbeats *hb = &n->wire.hb[dir][slot][kind];
    if (kind == 0) {
        *heartbeat = m->commit == hb->last_commit;
        hb->last_commit = m->commit;
    } else {
        *heartbeat = m->match_index == hb->last_match;
        hb->last_match = m->match_index;
    }
    return hb;
}

static Raftkv__WireRecord *wire_new_record(struct node *n)
{
    if (n->wire.records == NULL) {
        n->wire.records = calloc(WIRE_REPORT_MAX, sizeof(*n->wire.records));
        if (n->wire.records == NULL)
            return NULL;
    }
    if (n->wire.n_records == WIRE_REPORT_MAX)
        wire_report_tick(n, UINT64_MAX); /* full: send now */
    if (n->wire.n_records == WIRE_REPORT_MAX)
        return NULL;
    Raftkv__WireRecord *r = &n->wire.records[n->wire.n_records++];
    raftkv__wire_record__init(r);
    return r;
}

bool wire_report(struct node *n, enum wire_event ev, enum wire_lost lost, const struct raft_msg *m,
                 uint64_t id, bool shown)
{
    if (!n->wire.on || n->status_out < 0)
        return false;
    bool heartbeat = false;
    uint32_t count = 1;
    if (ev == WIRE_SENT || ev == WIRE_RECEIVED || ev == WIRE_LOST) {
        struct wire_heartbeats *hb = wire_heartbeat_of(n, ev, m, &heartbeat);
        if (heartbeat && hb != NULL) {
            uint64_t now = clock_monotonic_ms();
            /* The receiver follows the sender's choice, so both ends agree;
             * a message reported sent and then lost is reported lost. */
            bool alone = ev == WIRE_RECEIVED || (ev == WIRE_LOST && shown)
                             ? shown
                             : now - hb->last_report_ms >= WIRE_HEARTBEAT_EVERY_MS;
            if (!alone) {
                hb->skipped++;
                return false;
            }
            hb->last_report_ms = now;
            count += hb->skipped;
            hb->skipped = 0;
        }
    }
    Raftkv__WireRecord *r = wire_new_record(n);
    if (r == NULL) {
        n->wire.unreported++;
        return false;
    }
    r->event = (uint32_t)ev;
    r->lost = (uint32_t)lost;
    r->type = (uint32_t)m->type;
    r->from = m->from;
    r->to = m->to;
    r->id = id;
    r->term = m->term;
    r->last_log_index = m->last_log_index;
    r->last_log_term = m->last_log_term;
    r->granted = m->granted;
    r->prev_index = m->prev_index;
    r->prev_term = m->prev_term;
    r->commit = m->commit;
    r->n_entries = (uint32_t)m->n_entries;
    r->success = m->success;
    r->match_index = m->match_index;
    r->rejected_index = m->rejected_index;
    r->hint_index = m->hint_index;
    r->hint_term = m->hint_term;
    r->snapshot_index = m->snapshot_index;
    r->snapshot_term = m->snapshot_term;
    r->offset = m->offset;
    r->done = m->done;
    r->next_offset = m->next_offset;
    r->leader_hint = m->leader_hint;
    r->leader_ago_ms = m->leader_ago_ms;
    r->heartbeat = heartbeat;
    r->count = count > 1 ? count : 0;
    return true;
}

bool wire_report_peer(struct node *n, enum wire_event ev, enum wire_lost lost, uint32_t from,
                      const Raftkv__PeerMessage *pm)
{
    struct raft_msg m;
    wire_peer_header_to_raft(pm, from, &m);
    return wire_report(n, ev, lost, &m, pm->wire_id, pm->wire_shown);
}

void wire_report_tick(struct node *n, uint64_t now_ms)
{
    struct wire_state *w = &n->wire;
    if (n->status_out < 0 || (w->n_records == 0 && w->unreported == 0))
        return;
    if (now_ms < w->next_flush_ms && w->n_records < WIRE_REPORT_MAX)
        return;
    Raftkv__WireRecord *ptrs[WIRE_REPORT_MAX];
    for (size_t i = 0; i < w->n_records; i++)
        ptrs[i] = &w->records[i];
    Raftkv__WireReport rep = RAFTKV__WIRE_REPORT__INIT;
    rep.n_records = w->n_records;
    rep.records = ptrs;
    rep.unreported = w->unreported;
    Raftkv__Envelope env = RAFTKV__ENVELOPE__INIT;
    env.body_case = RAFTKV__ENVELOPE__BODY_WIRE;
    env.wire = &rep;
    if (transport_pack(n, &env) != 0 ||
        nn_send(n->status_out, n->pack.data, n->pack.len, NN_DONTWAIT) < 0)
        w->unreported += w->n_records; /* the supervisor is busy or gone */
    else
        w->unreported = 0;
    w->n_records = 0;
    w->next_flush_ms = clock_monotonic_ms() + WIRE_FLUSH_MS;
}

/* ------------------------------------------------------------ freezing */

void wire_hold(struct node *n, uint32_t from, Raftkv__Envelope *env)
{
    struct wire_state *w = &n->wire;
    if (w->n_held == w->cap_held) {
        size_t cap = w->cap_held ? w->cap_held * 2 : 64;
        struct held_msg *p = cap <= WIRE_HELD_MAX ? realloc(w->held, cap * sizeof(*p)) : NULL;
        if (p == NULL) {
            n->msgs_dropped++;
            wire_report_peer(n, WIRE_LOST, WIRE_LOST_BUSY, from, env->peer);
            raftkv__envelope__free_unpacked(env, NULL);
            return;
        }
        w->held = p;
        w->cap_held = cap;
    }
    w->held[w->n_held++] = (struct held_msg){.from = from, .id = env->peer->wire_id, .env = env};
    wire_report_peer(n, WIRE_HELD, 0, from, env->peer);
    n->status_dirty = true;
}

/* Take held message i out of the list: deliver it, or drop it. */
static void wire_release(struct node *n, size_t i, bool deliver)
{
    struct wire_state *w = &n->wire;
    struct held_msg h = w->held[i];
    memmove(&w->held[i], &w->held[i + 1], (w->n_held - i - 1) * sizeof(*w->held));
    w->n_held--;
    if (deliver) {
        transport_deliver(n, h.from, h.env->peer);
    } else {
        n->msgs_dropped++;
        wire_report_peer(n, WIRE_DISCARDED, 0, h.from, h.env->peer);
    }
    raftkv__envelope__free_unpacked(h.env, NULL);
    n->status_dirty = true;
}

static bool wire_release_ref(struct node *n, const Raftkv__HeldRef *ref, bool deliver)
{
    for (size_t i = 0; i < n->wire.n_held; i++) {
        if (n->wire.held[i].from == ref->from && n->wire.held[i].id == ref->id) {
            wire_release(n, i, deliver);
            return true;
        }
    }
    return false;
}

void wire_control(struct node *n, const Raftkv__Control *c)
{
    struct wire_state *w = &n->wire;
    bool stepped = false;
    if (c->set_wire)
        w->on = c->wire;
    if (c->set_frozen && c->frozen != w->frozen) {
        w->frozen = c->frozen;
        if (!w->frozen) {
            /* Time frozen does not count toward the core's timers. */
            n->last_real_ms = clock_monotonic_ms();
            stepped = w->n_held > 0;
            while (w->n_held > 0)
                wire_release(n, 0, true);
        }
    }
    for (size_t i = 0; i < c->n_discard; i++)
        wire_release_ref(n, c->discard[i], false);
    for (size_t i = 0; i < c->n_deliver; i++)
        stepped |= wire_release_ref(n, c->deliver[i], true);
    if (c->tick_ms > 0 && !n->suspended) {
        n->raft_clock_ms += c->tick_ms;
        raft_tick(&n->raft, n->raft_clock_ms);
        stepped = true;
    }
    if (stepped)
        node_process_ready(n);
}

void wire_close(struct node *n)
{
    for (size_t i = 0; i < n->wire.n_held; i++)
        raftkv__envelope__free_unpacked(n->wire.held[i].env, NULL);
    free(n->wire.held);
    free(n->wire.records);
    n->wire.held = NULL;
    n->wire.records = NULL;
    n->wire.n_held = n->wire.cap_held = n->wire.n_records = 0;
}

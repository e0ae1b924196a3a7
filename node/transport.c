/* transport.c - peer messages over nanomsg, and the faults the supervisor
 * injects into them (partitions, loss, delay).
 *
 * Each node binds one NN_PULL socket at its peer URL and connects one NN_PUSH
 * socket to every other node's. One Envelope a nanomsg message, after a MAC
 * when the cluster has a secret (src/wire.h); messages that fail the MAC,
 * from another cluster, from unknown senders, or that do not decode are
 * dropped and counted. Without a secret every peer URL must be on loopback
 * (protected mode). Nothing here blocks: a peer that cannot take a message
 * right now loses it, and Raft sends it again.
 */
#include <errno.h>
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <nanomsg/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "raftkv.pb-c.h"

#define TRANSPORT_MAX_MESSAGE (16 * 1024 * 1024) /* larger ones are dropped */
#define TRANSPORT_MAX_RECEIVE 1024               /* messages taken in one turn */
#define TRANSPORT_WARN_EVERY_MS 5000             /* one line about dropped messages a while */
/* With a secret, a control's seq (the supervisor's wall clock in microseconds
 * when it started counting) may be this much before the node started:
 * clocks of two machines differ a little. */
#define TRANSPORT_CONTROL_SLACK_US (300ull * 1000 * 1000)

/* Peer messages are small and latency-bound: no Nagle delay. Fails
 * harmlessly on ipc:// sockets. */
static void transport_nodelay(int s)
{
    int one = 1;
    nn_setsockopt(s, NN_TCP, NN_TCP_NODELAY, &one, sizeof(one));
}

static int transport_nn_error(char *err, size_t errlen, const char *what, const char *url)
{
    snprintf(err, errlen, "%s %s: %s", what, url, nn_strerror(nn_errno()));
    return -1;
}

int transport_fd(const struct node *n)
{
    int fd = -1;
    size_t sz = sizeof(fd);
    if (nn_getsockopt(n->peer_in, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz) != 0)
        return -1;
    return fd;
}

int transport_auth_init(struct node *n, char *err, size_t errlen)
{
    if (n->opt.secret_path != NULL) {
        char warn[512];
        if (wire_key_load(n->opt.secret_path, &n->key, warn, sizeof(warn), err, errlen) != 0)
            return -1;
        if (warn[0] != '\0')
            fprintf(stderr, "raftkv-node: warning: %s\n", warn);
        uint64_t now_us = clock_wall_ms() * 1000;
        n->control_seq_floor =
            now_us > TRANSPORT_CONTROL_SLACK_US ? now_us - TRANSPORT_CONTROL_SLACK_US : 0;
        if (!n->opt.quiet)
            printf("node %u: peer, control and status messages are authenticated with the "
                   "secret in %s (not encrypted)\n",
                   n->opt.id, n->opt.secret_path);
        return 0;
    }
    for (size_t i = 0; i < n->cluster.n; i++) {
        const struct cluster_node *c = &n->cluster.nodes[i];
        if (!cluster_url_is_loopback(c->peer_url)) {
            snprintf(err, errlen,
                     "%s: node %u's peer URL %s is not on loopback and there is no "
                     "--secret-file: anyone who reaches it could write to the cluster. Give "
                     "every node the same --secret-file (README: Security), or use "
                     "tcp://127.0.0.1:PORT or ipc:// URLs",
                     n->opt.config_path, c->id, c->peer_url);
            return -1;
        }
    }
    if (!n->opt.quiet)
        printf("node %u: protected mode: no --secret-file, peers on loopback only (any local "
               "user can still send to them)\n",
               n->opt.id);
    return 0;
}

void transport_disconnect_peer(struct node *n, size_t i)
{
    if (n->peer_out[i] >= 0)
        nn_close(n->peer_out[i]);
    n->peer_out[i] = -1;
}

int transport_connect_peer(struct node *n, size_t i, char *err, size_t errlen)
{
    const struct cluster_node *peer = &n->cluster.nodes[i];
    char url[CLUSTER_URL_MAX + 64], why[CLUSTER_URL_MAX + 128];
    /* nanomsg resolves peers' names itself and keeps trying; say so now
     * rather than have the node wait without a word. */
    if (cluster_resolve_url(peer->peer_url, url, sizeof(url), why, sizeof(why)) != 0)
        fprintf(stderr, "raftkv-node: warning: node %u's peer URL %s: %s (will keep trying)\n",
                peer->id, peer->peer_url, why);
    int s = nn_socket(AF_SP, NN_PUSH);
    if (s < 0)
        return transport_nn_error(err, errlen, "cannot open a socket for", peer->peer_url);
    /* Reconnect to a restarted peer well within an election timeout. */
    int sndbuf = 4 * 1024 * 1024, ivl = 25, ivl_max = 0, linger = 0;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDBUF, &sndbuf, sizeof(sndbuf));
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RECONNECT_IVL, &ivl, sizeof(ivl));
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RECONNECT_IVL_MAX, &ivl_max, sizeof(ivl_max));
    nn_setsockopt(s, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger));
    transport_nodelay(s);
    if (nn_connect(s, peer->peer_url) < 0) {
        nn_close(s);
        return transport_nn_error(err, errlen, "cannot connect to", peer->peer_url);
    }
    n->peer_out[i] = s;
    return 0;
}

int transport_open(struct node *n, char *err, size_t errlen)
{
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        n->peer_out[i] = -1;
    /* nanomsg binds to addresses and interface names only: a host name in
     * the cluster file is resolved here. */
    char url[CLUSTER_URL_MAX + 64], why[CLUSTER_URL_MAX + 128];
    if (cluster_resolve_url(n->self->peer_url, url, sizeof(url), why, sizeof(why)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", n->self->peer_url, why);
        return -1;
    }
    n->peer_in = nn_socket(AF_SP, NN_PULL);
    if (n->peer_in < 0)
        return transport_nn_error(err, errlen, "cannot open a socket for", n->self->peer_url);
    int maxsize = 4 * TRANSPORT_MAX_MESSAGE;
    nn_setsockopt(n->peer_in, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof(maxsize));
    transport_nodelay(n->peer_in);
    if (nn_bind(n->peer_in, url) < 0)
        return transport_nn_error(err, errlen, "cannot listen on", n->self->peer_url);
    for (size_t i = 0; i < n->cluster.n; i++)
        if (n->cluster.nodes[i].id != n->opt.id && transport_connect_peer(n, i, err, errlen) != 0)
            return -1;
    if (n->opt.status_url != NULL) {
        n->status_out = nn_socket(AF_SP, NN_PUSH);
        if (n->status_out < 0 || nn_connect(n->status_out, n->opt.status_url) < 0)
            return transport_nn_error(err, errlen, "cannot connect to", n->opt.status_url);
    }
    return 0;
}

void transport_close(struct node *n)
{
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        if (n->peer_out[i] >= 0)
            nn_close(n->peer_out[i]);
    if (n->peer_in >= 0)
        nn_close(n->peer_in);
    if (n->status_out >= 0)
        nn_close(n->status_out);
    for (size_t i = 0; i < n->n_delayed; i++)
        free(n->delayed[i].data);
    free(n->delayed);
    wire_close(n);
    buf_free(&n->pack);
}

static int transport_slot_of(const struct node *n, uint32_t id)
{
    for (size_t i = 0; i < n->cluster.n; i++)
        if (n->cluster.nodes[i].id == id)
            return (int)i;
    return -1;
}

static bool transport_raw_send(struct node *n, int slot, const void *data, size_t len)
{
    if (nn_send(n->peer_out[slot], data, len, NN_DONTWAIT) < 0) {
        n->msgs_dropped++; /* the peer is not keeping up or not there */
        return false;
    }
    n->msgs_sent++;
    n->sent_to[slot]++;
    return true;
}

static void transport_delay(struct node *n, int slot, const void *data, size_t len)
{
    if (n->n_delayed == n->cap_delayed) {
        size_t cap = n->cap_delayed ? n->cap_delayed * 2 : 64;
        struct delayed_msg *p = realloc(n->delayed, cap * sizeof(*p));
        if (p == NULL) {
            n->msgs_dropped++;
            return;
        }
        n->delayed = p;
        n->cap_delayed = cap;
    }
    void *copy = malloc(len);
    if (copy == NULL) {
        n->msgs_dropped++;
        return;
    }
    memcpy(copy, data, len);
    n->delayed[n->n_delayed++] = (struct delayed_msg){
        .due_ms = clock_monotonic_ms() + n->delay_ms, .to_slot = slot, .data = copy, .len = len};
}

void transport_flush_delayed(struct node *n, uint64_t now_ms)
{
    size_t kept = 0;
    for (size_t i = 0; i < n->n_delayed; i++) {
        struct delayed_msg *d = &n->delayed[i];
        if (d->due_ms <= now_ms) {
            uint32_t to = n->cluster.nodes[d->to_slot].id;
            if (n->blocked & (1u << to))
                n->msgs_dropped++;
            else
                transport_raw_send(n, d->to_slot, d->data, d->len);
            free(d->data);
        } else {
            n->delayed[kept++] = *d;
        }
    }
    n->n_delayed = kept;
}

uint64_t transport_next_due(const struct node *n)
{
    uint64_t due = 0;
    for (size_t i = 0; i < n->n_delayed; i++)
        if (due == 0 || n->delayed[i].due_ms < due)
            due = n->delayed[i].due_ms;
    return due;
}

static uint64_t transport_random(struct node *n)
{
    n->rng ^= n->rng >> 12;
    n->rng ^= n->rng << 25;
    n->rng ^= n->rng >> 27;
    return n->rng * 0x2545f4914f6cdd1dull;
}

void transport_send(struct node *n, const struct raft_msg *m)
{
    int slot = transport_slot_of(n, m->to);
    if (slot < 0 || n->peer_out[slot] < 0)
        return;
    uint64_t wire_id = ++n->wire.next_id;
    if (n->blocked & (1u << m->to)) {
        n->msgs_dropped++;
        wire_report(n, WIRE_LOST, WIRE_LOST_CUT, m, wire_id, false);
        return;
    }
    if (n->drop_percent > 0 && transport_random(n) % 100 < n->drop_percent) {
        n->msgs_dropped++;
        wire_report(n, WIRE_LOST, WIRE_LOST_DROP, m, wire_id, false);
        return;
    }
    Raftkv__Entry stack_entries[16], *entries = stack_entries;
    Raftkv__Entry *stack_ptrs[16], **ptrs = stack_ptrs;
    if (m->n_entries > 16) {
        entries = malloc(m->n_entries * sizeof(*entries));
        ptrs = malloc(m->n_entries * sizeof(*ptrs));
        if (entries == NULL || ptrs == NULL) {
            free(entries == stack_entries ? NULL : entries);
            free(ptrs == stack_ptrs ? NULL : ptrs);
            n->msgs_dropped++;
            return;
        }
    }
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        raftkv__entry__init(&entries[i]);
        entries[i].term = e->term;
        entries[i].index = e->index;
        entries[i].type = e->type;
        entries[i].data.len = e->len;
        entries[i].data.data = e->data;
        ptrs[i] = &entries[i];
    }
    Raftkv__PeerMessage pm = RAFTKV__PEER_MESSAGE__INIT;
    pm.type = (uint32_t)m->type;
    pm.to = m->to;
    pm.term = m->term;
    pm.last_log_index = m->last_log_index;
    pm.last_log_term = m->last_log_term;
    pm.transfer = m->transfer;
    pm.granted = m->granted;
    pm.leader_hint = m->leader_hint;
    pm.leader_ago_ms = m->leader_ago_ms;
    pm.prev_index = m->prev_index;
    pm.prev_term = m->prev_term;
    pm.commit = m->commit;
    pm.n_entries = m->n_entries;
    pm.entries = ptrs;
    pm.read_seq = m->read_seq;
    pm.promise_ms = m->promise_ms;
    pm.success = m->success;
    pm.match_index = m->match_index;
    pm.rejected_index = m->rejected_index;
    pm.hint_index = m->hint_index;
    pm.hint_term = m->hint_term;
    /* InstallSnapshot: the chunk was attached by snapshot_attach_chunk. */
    pm.snapshot_index = m->snapshot_index;
    pm.snapshot_term = m->snapshot_term;
    pm.offset = m->offset;
    pm.data.data = (uint8_t *)m->data;
    pm.data.len = m->len;
    pm.done = m->done;
    pm.next_offset = m->next_offset;
    pm.wire_id = wire_id;
    pm.wire_shown = wire_report(n, WIRE_SENT, 0, m, wire_id, false);
    Raftkv__Envelope env = RAFTKV__ENVELOPE__INIT;
    env.body_case = RAFTKV__ENVELOPE__BODY_PEER;
    env.peer = &pm;
    if (transport_pack(n, &env) == 0) {
        if (n->delay_ms > 0)
            transport_delay(n, slot, n->pack.data, n->pack.len);
        else if (!transport_raw_send(n, slot, n->pack.data, n->pack.len) && pm.wire_shown)
            wire_report(n, WIRE_LOST, WIRE_LOST_BUSY, m, wire_id, true);
    } else {
        n->msgs_dropped++;
    }
    if (entries != stack_entries) {
        free(entries);
        free(ptrs);
    }
}

/* Stamp an envelope with our cluster and id and encode it into n->pack,
 * after its MAC when there is a secret. */
int transport_pack(struct node *n, Raftkv__Envelope *env)
{
    env->cluster_id = n->cluster.cluster_id;
    env->from = n->opt.id;
    return wire_seal(&n->key, env, &n->pack);
}

/* One line about dropped messages now and then, not one per message. */
static void transport_warn(struct node *n, uint64_t *next_ms, const char *what, uint64_t count)
{
    uint64_t now = clock_monotonic_ms();
    if (now < *next_ms)
        return;
    *next_ms = now + TRANSPORT_WARN_EVERY_MS;
    node_event(n, "%s (%" PRIu64 " so far)", what, count);
}

/* Whether a control is new. Without a secret anyone may send anything, so a
 * control without seq is taken (as the tests' own do); with one, seq must be
 * above the last one taken and not from before this node started. */
static bool transport_control_fresh(struct node *n, uint64_t seq)
{
    if (!n->key.enabled && seq == 0)
        return true;
    if (seq <= n->control_seq || seq <= n->control_seq_floor) {
        n->stale_controls++;
        return false;
    }
    n->control_seq = seq;
    return true;
}

static void transport_control(struct node *n, const Raftkv__Control *c)
{
    if (!transport_control_fresh(n, c->seq))
        return;
    if (c->set_blocked) {
        uint32_t mask = 0;
        for (size_t i = 0; i < c->n_blocked; i++)
            if (c->blocked[i] >= 1 && c->blocked[i] <= CLUSTER_MAX_NODES &&
                c->blocked[i] != n->opt.id)
                mask |= 1u << c->blocked[i];
        if (mask != n->blocked) {
            n->blocked = mask;
            if (mask == 0)
                node_event(n, "network healed");
            else {
                char ids[64];
                cluster_ids_text(mask, ids, sizeof(ids));
                node_event(n, "cut off from %s", ids);
            }
        }
    }
    if (c->set_drop)
        n->drop_percent = c->drop_percent > 100 ? 100 : c->drop_percent;
    if (c->set_delay)
        n->delay_ms = c->delay_ms > 60000 ? 60000 : c->delay_ms;
    if (c->set_speed && c->speed >= 0.01 && c->speed <= 100)
        n->opt.speed = c->speed;
    if (c->set_prevote || c->set_check_quorum) {
        bool prevote = c->set_prevote ? c->prevote : n->raft.cfg.prevote;
        bool check_quorum = c->set_check_quorum ? c->check_quorum : n->raft.cfg.check_quorum;
        if (prevote != n->raft.cfg.prevote || check_quorum != n->raft.cfg.check_quorum) {
            raft_set_options(&n->raft, prevote, check_quorum);
            node_event(n, "pre-vote %s, check-quorum %s", prevote ? "on" : "off",
                       check_quorum ? "on" : "off");
        }
    }
    if (c->set_suspend) {
        if (c->suspend_ms > 0)
            node_suspend(n, c->suspend_ms);
        else
            node_resume(n);
    }
    wire_control(n, c);
    if (c->timeout_now && !n->suspended && !n->disk_error) {
        if (!raft_timeout_now(&n->raft) && n->raft.cfg.lease_ms > 0 && n->raft.role != RAFT_LEADER)
            node_event(n, "did not stand when told to: with leases it heard from a leader less "
                          "than an election timeout ago (RAFT.TRANSFER moves leadership now)");
        node_process_ready(n);
    }
    n->status_dirty = true;
    if (c->status_now)
        status_publish(n);
}

/* A peer message: checked, then taken in, or held while frozen (env is then
 * kept: returns true). */
static bool transport_peer(struct node *n, uint32_t from, Raftkv__Envelope *env)
{
    const Raftkv__PeerMessage *pm = env->peer;
    /* From any node id: one added by a configuration this node has not seen
     * yet (it learns the address from that configuration, and answers
     * then). */
    if (!wire_peer_valid(pm, from, n->opt.id)) {
        n->bad_messages++;
        return false;
    }
    if (n->suspended || (n->blocked & (1u << from))) {
        n->msgs_dropped++;
        wire_report_peer(n, WIRE_LOST, n->suspended ? WIRE_LOST_SUSPENDED : WIRE_LOST_CUT, from,
                         pm);
        return false;
    }
    if (n->wire.frozen) {
        wire_hold(n, from, env);
        return true;
    }
    transport_deliver(n, from, pm);
    return false;
}

void transport_deliver(struct node *n, uint32_t from, const Raftkv__PeerMessage *pm)
{
    int slot = transport_slot_of(n, from); /* -1: a node not known yet */
    n->msgs_received++;
    if (slot >= 0)
        n->received_from[slot]++;
    struct raft_entry stack_entries[16], *entries = stack_entries;
    if (pm->n_entries > 16) {
        entries = malloc(pm->n_entries * sizeof(*entries));
        if (entries == NULL) {
            n->msgs_dropped++;
            return;
        }
    }
    struct raft_msg m;
    wire_peer_to_raft(pm, from, entries, &m);
    wire_report(n, WIRE_RECEIVED, 0, &m, pm->wire_id, pm->wire_shown);
    snapshot_note_delivered(n, &m);
    if (raft_step(&n->raft, &m) == RAFT_EINVAL)
        n->bad_messages++;
    if (entries != stack_entries)
        free(entries);
}

void transport_receive(struct node *n)
{
    for (int i = 0; i < TRANSPORT_MAX_RECEIVE; i++) {
        void *msg = NULL;
        int len = nn_recv(n->peer_in, &msg, NN_MSG, NN_DONTWAIT);
        if (len < 0)
            return; /* EAGAIN: nothing more now */
        if (len > TRANSPORT_MAX_MESSAGE) {
            n->bad_messages++;
            nn_freemsg(msg);
            continue;
        }
        Raftkv__Envelope *env = NULL;
        enum wire_verdict v = wire_open(&n->key, n->cluster.cluster_id, msg, (size_t)len, &env);
        nn_freemsg(msg);
        if (v == WIRE_BAD_MAC) {
            n->auth_failures++;
            transport_warn(n, &n->next_auth_warn_ms,
                           "dropped a message that failed authentication (is --secret-file "
                           "the same on every node?)",
                           n->auth_failures);
        } else if (v == WIRE_OTHER_CLUSTER) {
            n->bad_messages++;
            n->other_cluster++;
            transport_warn(n, &n->next_cluster_warn_ms,
                           "dropped a message from another cluster (is every node started "
                           "with the same cluster file?)",
                           n->other_cluster);
        } else if (v != WIRE_OK) {
            n->bad_messages++;
        } else if (env->body_case == RAFTKV__ENVELOPE__BODY_PEER) {
            if (transport_peer(n, env->from, env))
                env = NULL; /* held */
        } else if (env->body_case == RAFTKV__ENVELOPE__BODY_CONTROL && env->from == 0) {
            transport_control(n, env->control);
        } else {
            n->bad_messages++;
        }
        if (env != NULL)
            raftkv__envelope__free_unpacked(env, NULL);
    }
}

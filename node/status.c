/* status.c - what the node tells its supervisor: role, term, log tail, KV
 * table, progress of each peer, counters; on every change and at least every
 * STATUS_INTERVAL_MS. */
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node.h"
#include "raftkv.pb-c.h"

#define STATUS_INTERVAL_MS 200
#define STATUS_MIN_GAP_MS 30 /* at most this often, however much changes */
#define STATUS_LOG_TAIL 16
#define STATUS_KV_MAX 64
#define STATUS_VALUE_MAX 64

struct status_kv {
    Raftkv__KvView views[STATUS_KV_MAX];
    Raftkv__KvView *ptrs[STATUS_KV_MAX];
    size_t n;
    uint64_t now_ms;
};

static void status_add_kv(const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                          uint64_t deadline_ms, void *ctx)
{
    struct status_kv *s = ctx;
    if (s->n == STATUS_KV_MAX)
        return;
    Raftkv__KvView *v = &s->views[s->n];
    raftkv__kv_view__init(v);
    v->key.data = (uint8_t *)key;
    v->key.len = klen > STATUS_VALUE_MAX ? STATUS_VALUE_MAX : klen;
    v->value.data = (uint8_t *)val;
    v->value.len = vlen > STATUS_VALUE_MAX ? STATUS_VALUE_MAX : vlen;
    v->ttl_ms = deadline_ms == 0          ? -1
                : deadline_ms > s->now_ms ? (int64_t)(deadline_ms - s->now_ms)
                                          : 0;
    s->ptrs[s->n] = v;
    s->n++;
}

static uint64_t ago(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

void status_publish(struct node *n)
{
    if (n->status_out < 0)
        return;
    const struct raft *r = &n->raft;
    uint64_t now = clock_monotonic_ms();
    Raftkv__Status st = RAFTKV__STATUS__INIT;
    st.id = n->opt.id;
    st.pid = (uint32_t)getpid();
    st.role = (uint32_t)r->role;
    st.term = r->current_term;
    st.voted_for = r->voted_for;
    st.leader = r->leader_id;
    st.commit_index = r->commit_index;
    st.last_applied = r->last_applied;
    st.last_index = raft_last_index(r);
    st.last_term = raft_last_term(r);
    st.commit_term = raft_term_at(r, r->commit_index);
    st.election_timeout_ms = r->election_timeout_ms;
    uint64_t elapsed = ago(r->now_ms, r->election_started_ms);
    st.election_elapsed_ms =
        (uint32_t)(elapsed > r->election_timeout_ms ? r->election_timeout_ms : elapsed);
    st.heartbeat_ms = r->cfg.heartbeat_ms;
    st.snapshot_index = r->log.snapshot_index;
    st.snapshot_term = r->log.snapshot_term;
    st.log_first_index = wal_first_index(n->wal);
    st.log_bytes = wal_log_size(n->wal);
    st.frozen = n->wire.frozen;
    st.held = (uint32_t)n->wire.n_held;
    st.wire = n->wire.on;

    /* The log's last entries, oldest first. */
    Raftkv__LogEntryView views[STATUS_LOG_TAIL], *view_ptrs[STATUS_LOG_TAIL];
    char texts[STATUS_LOG_TAIL][96];
    uint64_t last = raft_last_index(r);
    uint64_t first = last > STATUS_LOG_TAIL ? last - STATUS_LOG_TAIL + 1 : 1;
    if (first < raft_first_index(r))
        first = raft_first_index(r); /* entries before it are in the snapshot */
    size_t nv = 0;
    for (uint64_t i = first; i <= last; i++, nv++) {
        const struct raft_entry *e = raft_entry_at(r, i);
        raftkv__log_entry_view__init(&views[nv]);
        views[nv].index = i;
        views[nv].term = e->term;
        if (e->type == RAFT_ENTRY_NOOP)
            snprintf(texts[nv], sizeof(texts[nv]), "no-op");
        else if (e->type == RAFT_ENTRY_CONFIG)
            raft_members_describe(e->data, e->len, texts[nv], sizeof(texts[nv]));
        else
            kv_cmd_describe(e->data, e->len, texts[nv], sizeof(texts[nv]));
        views[nv].text = texts[nv];
        view_ptrs[nv] = &views[nv];
    }
    st.n_log_tail = nv;
    st.log_tail = view_ptrs;

    static struct status_kv kvs;
    kvs.n = 0;
    kvs.now_ms = commands_now(n);
    kv_foreach(n->kv, STATUS_KV_MAX, status_add_kv, &kvs);
    st.n_kv = kvs.n;
    st.kv = kvs.ptrs;
    st.kv_count = kv_count(n->kv);

    Raftkv__PeerProgress peers[CLUSTER_MAX_NODES], *peer_ptrs[CLUSTER_MAX_NODES];
    uint32_t blocked[CLUSTER_MAX_NODES];
    size_t np = 0, nb = 0;
    for (size_t i = 0; i < n->cluster.n; i++) {
        uint32_t id = n->cluster.nodes[i].id;
        if (n->blocked & (1u << id))
            blocked[nb++] = id;
        if (id == n->opt.id)
            continue;
        const struct raft_progress *pr = &r->progress[id - 1];
        raftkv__peer_progress__init(&peers[np]);
        peers[np].id = id;
        peers[np].next = pr->next;
        peers[np].match = pr->match;
        peers[np].last_ack_ago_ms = ago(r->now_ms, pr->last_ack_ms);
        peers[np].last_send_ago_ms = ago(r->now_ms, pr->last_send_ms);
        peers[np].blocked = (n->blocked & (1u << id)) != 0;
        peers[np].sent = n->sent_to[i];
        peers[np].received = n->received_from[i];
        if (r->role == RAFT_LEADER && pr->mode == RAFT_PROGRESS_SNAPSHOT) {
            peers[np].snapshot_index = pr->snapshot_index;
            snapshot_send_progress(n, pr, &peers[np].snapshot_chunk, &peers[np].snapshot_chunks);
        }
        peer_ptrs[np] = &peers[np];
        np++;
    }
    st.n_peers = np;
    st.peers = peer_ptrs;
    st.n_blocked = nb;
    st.blocked = blocked;
    st.msgs_sent = n->msgs_sent;
    st.msgs_received = n->msgs_received;
    st.msgs_dropped = n->msgs_dropped;
    st.bad_messages = n->bad_messages;
    st.auth_failures = n->auth_failures;
    st.stale_controls = n->stale_controls;
    st.state_digest = kv_digest(n->kv);
    st.speed = n->opt.speed;
    st.drop_percent = n->drop_percent;
    st.delay_ms = n->delay_ms;
    st.suspended = n->suspended;
    st.suspend_left_ms = n->suspended ? (uint32_t)ago(n->suspend_until_ms, now) : 0;
    st.uptime_ms = now - n->started_ms;
    st.votes = r->votes;
    st.prevote = r->cfg.prevote;
    st.check_quorum = r->cfg.check_quorum;
    st.transfer_to = r->role == RAFT_LEADER ? r->transfer_to : 0;
    st.lease_ms = r->cfg.lease_ms;
    st.lease_held = r->cfg.lease_ms > 0 && node_lease_holds(n);
    uint32_t voters[RAFT_MAX_NODES], learners[RAFT_MAX_NODES];
    size_t nvoters = 0, nlearners = 0;
    for (size_t i = 0; i < r->members.n; i++) {
        if (r->members.m[i].role == RAFT_VOTER)
            voters[nvoters++] = r->members.m[i].id;
        else
            learners[nlearners++] = r->members.m[i].id;
    }
    st.n_voters = nvoters;
    st.voters = voters;
    st.n_learners = nlearners;
    st.learners = learners;
    st.config_index = r->members_index;
    st.n_events = n->n_events;
    st.events = n->events;
    st.seq = ++n->status_seq;
    st.client_address = (char *)n->self->client_addr;

    Raftkv__Envelope env = RAFTKV__ENVELOPE__INIT;
    env.body_case = RAFTKV__ENVELOPE__BODY_STATUS;
    env.status = &st;
    if (transport_pack(n, &env) != 0)
        return;
    if (nn_send(n->status_out, n->pack.data, n->pack.len, NN_DONTWAIT) < 0)
        return; /* the supervisor is busy or gone: keep the events for next time */
    for (size_t i = 0; i < n->n_events; i++)
        free(n->events[i]);
    n->n_events = 0;
    n->status_dirty = false;
    n->next_status_ms = now + STATUS_INTERVAL_MS;
}

void status_maybe_publish(struct node *n, uint64_t now_ms)
{
    if (n->status_out < 0)
        return;
    uint64_t earliest = n->next_status_ms > STATUS_INTERVAL_MS
                            ? n->next_status_ms - STATUS_INTERVAL_MS + STATUS_MIN_GAP_MS
                            : 0;
    if (now_ms >= n->next_status_ms || (n->status_dirty && now_ms >= earliest))
        status_publish(n);
}

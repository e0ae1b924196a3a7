/* membership.c - membership changes in the node (dissertation chapter 4):
 * RAFT.ADDNODE and RAFT.REMOVENODE, the address book that follows the
 * configuration in force, and RAFT.INFO's members: and learners:.
 *
 * The core keeps the configuration (raft_membership.c); its entries carry
 * every member's peer URL and client address. The cluster file gives the
 * first configuration and the cluster's identity and is never edited: a
 * node that joins later starts with the same file, its own id and
 * addresses on the command line and --join, and waits (no votes, no
 * elections) until a configuration naming it reaches it.
 *
 * A change's reply waits for its outcome: RAFT.ADDNODE answers +OK once the
 * node is a voter in a committed configuration (it joins as a learner, and
 * the leader makes it a voter once it has caught up), RAFT.REMOVENODE once
 * the configuration without it is committed. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "node.h"

/* A learner given this long (core clock) to catch up before the client is
 * told; it stays a learner, and becomes a voter when it does. */
#define MEMBERSHIP_ADD_WAIT_MS 60000

void membership_initial(const struct node *n, struct raft_config *cfg)
{
    for (size_t i = 0; i < n->cluster.n && cfg->initial.n < RAFT_MAX_NODES; i++) {
        const struct cluster_node *c = &n->cluster.nodes[i];
        if (n->opt.join && c->id == n->opt.id)
            continue; /* added on the command line: not in the first configuration */
        struct raft_member *m = &cfg->initial.m[cfg->initial.n++];
        m->id = c->id;
        m->role = RAFT_VOTER;
        snprintf(m->peer, sizeof m->peer, "%s", c->peer_url);
        snprintf(m->client, sizeof m->client, "%s", c->client_addr);
    }
}

/* ------------------------------------------------------------ address book */

/* Every member of the configuration in force has an entry in n->cluster
 * (its addresses: the configuration's, not the file's, for a node added again
 * elsewhere) and, once the transport is open (sockets), a socket. Members that
 * leave keep theirs: a removed node may still be caught up on its removal. */
static void membership_address_book(struct node *n, bool sockets)
{
    const struct raft *r = &n->raft;
    for (size_t i = 0; i < r->members.n; i++) {
        const struct raft_member *m = &r->members.m[i];
        char err[512];
        const struct cluster_node *known = cluster_find(&n->cluster, m->id);
        if (known != NULL &&
            (strcmp(known->peer_url, m->peer) == 0 && strcmp(known->client_addr, m->client) == 0))
            continue;
        if (known != NULL && m->id == n->opt.id && sockets)
            continue; /* this node's own addresses change only at a restart */
        struct cluster one = {0};
        if (cluster_add(&one, m->id, m->peer, m->client, err, sizeof err) != 0) {
            node_event(n, "cannot reach node %u of the configuration: %s", m->id, err);
            continue;
        }
        size_t k;
        if (known != NULL) { /* removed and added again at other addresses */
            k = (size_t)(known - n->cluster.nodes);
            n->cluster.nodes[k] = one.nodes[0];
            if (sockets)
                transport_disconnect_peer(n, k);
        } else if (n->cluster.n < CLUSTER_MAX_NODES) {
            k = n->cluster.n++;
            n->cluster.nodes[k] = one.nodes[0];
        } else {
            continue;
        }
        if (sockets && m->id != n->opt.id && transport_connect_peer(n, k, err, sizeof err) != 0)
            node_event(n, "cannot connect to node %u: %s", m->id, err);
    }
}

void membership_start(struct node *n)
{
    membership_address_book(n, false);
    n->self = cluster_find(&n->cluster, n->opt.id);
    /* The role it starts in; the first loop turn prints the configuration. */
    const struct raft_member *self = raft_members_find(&n->raft.members, n->opt.id);
    n->shown_member_role = self == NULL ? -1 : self->role;
    n->members_shown = true;
    n->shown_members_index = UINT64_MAX;
}

void membership_sync(struct node *n)
{
    const struct raft *r = &n->raft;
    if (n->shown_members_index == r->members_index && n->members_shown)
        return;
    if (!n->members_shown)
        n->shown_member_role = -2; /* the first: nothing changed yet */
    n->shown_members_index = r->members_index;
    membership_address_book(n, true);
    char ids[64];
    raft_members_ids_text(&r->members, ids, sizeof ids);
    const struct raft_member *self = raft_members_find(&r->members, n->opt.id);
    int role = self == NULL ? -1 : self->role;
    if (role != n->shown_member_role && n->shown_member_role != -2) {
        if (role == RAFT_LEARNER)
            node_event(n, "joined as a learner (config #%" PRIu64 ": %s)", r->members_index, ids);
        else if (role == RAFT_VOTER)
            node_event(n, "is a voter (config #%" PRIu64 ": %s)", r->members_index, ids);
        else
            node_event(n, "left the cluster (config #%" PRIu64 ": %s)", r->members_index, ids);
    }
    n->shown_member_role = role;
    n->members_shown = true;
    node_event(n, "configuration #%" PRIu64 ": %s%s", r->members_index, ids,
               self != NULL ? "" : " (this node is not a member)");
}

void membership_info(const struct node *n, struct buf *out)
{
    const struct raft *r = &n->raft;
    char voters[32] = "", learners[32] = "";
    size_t nv = 0, nl = 0;
    for (size_t i = 0; i < r->members.n; i++) {
        const struct raft_member *m = &r->members.m[i];
        char *dst = m->role == RAFT_VOTER ? voters : learners;
        size_t *used = m->role == RAFT_VOTER ? &nv : &nl;
        int k = snprintf(dst + *used, sizeof voters - *used, "%s%u", *used ? "," : "", m->id);
        if (k > 0)
            *used += (size_t)k;
    }
    buf_printf(out, "members:%s\r\nlearners:%s\r\nconfig_index:%" PRIu64 "\r\n", voters, learners,
               r->members_index);
}

/* ------------------------------------------------------------ changes */

static void membership_answer(struct node *n, const char *error)
{
    struct reply_slot *slot = n->member_slot;
    if (slot == NULL)
        return;
    n->member_slot = NULL;
    if (error == NULL)
        resp_write_simple(&slot->data, "OK");
    else
        resp_write_error(&slot->data, error);
    client_slot_done(n, slot);
}

static void reply_now(struct node *n, struct reply_slot *slot, const char *error)
{
    resp_write_error(&slot->data, error);
    client_slot_done(n, slot);
}

/* Propose next; on success the slot waits for the outcome. */
static void membership_propose(struct node *n, struct reply_slot *slot,
                               const struct raft_members *next, bool add, uint32_t id)
{
    uint64_t index;
    int rc = raft_change_members(&n->raft, next, &index);
    if (rc == RAFT_ENOTLEADER) {
        commands_reply_not_leader(n, &slot->data);
        client_slot_done(n, slot);
        return;
    }
    if (rc == RAFT_EBUSY) {
        reply_now(n, slot,
                  n->raft.transfer_to != RAFT_NONE
                      ? "TRYAGAIN a leadership transfer is under way"
                      : "TRYAGAIN a membership change is still uncommitted (or this new leader "
                        "has not committed an entry of its term yet): one change at a time");
        return;
    }
    if (rc != RAFT_OK) {
        reply_now(n, slot,
                  rc == RAFT_ENOMEM ? "ERR out of memory" : "ERR that is not a change of one node");
        return;
    }
    membership_sync(n);
    n->member_slot = slot;
    n->member_add = add;
    n->member_id = id;
    n->member_index = index;
    n->member_term = n->raft.current_term;
    n->member_deadline_ms = n->raft.now_ms + MEMBERSHIP_ADD_WAIT_MS;
    if (add)
        node_event(n,
                   "adds node %u as a learner (config #%" PRIu64
                   "); it becomes a voter once it has caught up",
                   id, index);
    else
        node_event(n, "removes node %u (config #%" PRIu64 ")", id, index);
}

void membership_request_add(struct node *n, struct reply_slot *slot, uint32_t id,
                            const char *peer_url, const char *client_addr)
{
    char err[512];
    if (n->member_slot != NULL) {
        reply_now(n, slot, "TRYAGAIN a membership change is already under way: one at a time");
        return;
    }
    if (raft_is_member(&n->raft, id)) {
        snprintf(err, sizeof err, "ERR node %u is already a member", id);
        reply_now(n, slot, err);
        return;
    }
    /* The same checks as a line of the cluster file, against the members. */
    struct cluster check = {0};
    const struct raft *r = &n->raft;
    for (size_t i = 0; i < r->members.n; i++)
        if (cluster_add(&check, r->members.m[i].id, r->members.m[i].peer, r->members.m[i].client,
                        err, sizeof err) != 0)
            break;
    char why[400];
    if (cluster_add(&check, id, peer_url, client_addr, why, sizeof why) != 0) {
        snprintf(err, sizeof err, "ERR %s", why);
        reply_now(n, slot, err);
        return;
    }
    if (!n->key.enabled && !cluster_url_is_loopback(peer_url)) {
        snprintf(err, sizeof err,
                 "ERR peer URL %s is not on loopback and the cluster has no --secret-file",
                 peer_url);
        reply_now(n, slot, err);
        return;
    }
    struct raft_members next = r->members;
    struct raft_member *m = &next.m[next.n++];
    memset(m, 0, sizeof *m);
    m->id = id;
    m->role = RAFT_LEARNER;
    snprintf(m->peer, sizeof m->peer, "%s", peer_url);
    snprintf(m->client, sizeof m->client, "%s", client_addr);
    membership_propose(n, slot, &next, true, id);
}

void membership_request_remove(struct node *n, struct reply_slot *slot, uint32_t id)
{
    char err[128];
    if (n->member_slot != NULL) {
        reply_now(n, slot, "TRYAGAIN a membership change is already under way: one at a time");
        return;
    }
    if (!raft_is_member(&n->raft, id)) {
        snprintf(err, sizeof err, "ERR node %u is not a member", id);
        reply_now(n, slot, err);
        return;
    }
    struct raft_members next = n->raft.members;
    for (size_t i = 0; i < next.n; i++)
        if (next.m[i].id == id)
            next.m[i] = next.m[--next.n];
    if ((raft_voters_mask(&n->raft) & ~(1u << id)) == 0) {
        reply_now(n, slot, "ERR cannot remove the last voter");
        return;
    }
    membership_propose(n, slot, &next, false, id);
}

void membership_check(struct node *n)
{
    const struct raft *r = &n->raft;
    membership_sync(n);
    if (n->member_slot == NULL)
        return;
    char msg[200];
    bool committed = r->commit_index >= r->members_index;
    if (n->member_add) {
        if (raft_is_voter(r, n->member_id) && committed) {
            membership_answer(n, NULL);
        } else if (!raft_is_member(r, n->member_id)) {
            snprintf(msg, sizeof msg,
                     "ERR node %u's addition was undone by a leader change; add it again",
                     n->member_id);
            membership_answer(n, msg);
        } else if (r->role != RAFT_LEADER) {
            snprintf(msg, sizeof msg,
                     "UNCERTAIN this node stopped leading before node %u became a voter; see "
                     "RAFT.INFO members at the leader",
                     n->member_id);
            membership_answer(n, msg);
        } else if (r->now_ms >= n->member_deadline_ms) {
            snprintf(msg, sizeof msg,
                     "ERR node %u has not caught up within %u s: it stays a learner and becomes a "
                     "voter when it does",
                     n->member_id, MEMBERSHIP_ADD_WAIT_MS / 1000);
            membership_answer(n, msg);
        }
        return;
    }
    if (r->commit_index >= n->member_index && raft_term_at(r, n->member_index) == n->member_term) {
        membership_answer(n, NULL);
    } else if (r->current_term != n->member_term ||
               raft_term_at(r, n->member_index) != n->member_term) {
        snprintf(msg, sizeof msg,
                 "UNCERTAIN leadership changed before node %u's removal committed; see RAFT.INFO "
                 "members at the leader",
                 n->member_id);
        membership_answer(n, msg);
    }
}

void membership_shutdown(struct node *n)
{
    membership_answer(n, "UNCERTAIN the node is shutting down before the membership change ended");
}

/* transfer.c - RAFT.TRANSFER <id>: hand leadership to another node
 * (dissertation 3.10).
 *
 * The core does the protocol (raft_leadership.c): it stops taking
 * proposals, brings the target up to date, sends it TimeoutNow, and gives up
 * after an election timeout. Here the node keeps the client's reply until
 * the outcome is known: +OK once this node hears from the target as leader
 * of a later term; an error when the core gave up, or when no outcome is
 * known after two election timeouts (the old leader stepped down, but the
 * target did not win). Writes that arrive meanwhile get -TRYAGAIN (they
 * were not applied: a client retries them at the new leader). */
#include <inttypes.h>
#include <stdio.h>

#include "node.h"

static void transfer_answer(struct node *n, const char *error)
{
    struct reply_slot *slot = n->transfer_slot;
    if (slot == NULL)
        return;
    n->transfer_slot = NULL;
    if (error == NULL)
        resp_write_simple(&slot->data, "OK");
    else
        resp_write_error(&slot->data, error);
    client_slot_done(n, slot);
}

void transfer_request(struct node *n, struct reply_slot *slot, uint32_t target)
{
    struct raft *r = &n->raft;
    if (n->transfer_slot != NULL) {
        resp_write_error(&slot->data, "ERR a leadership transfer is already under way");
        client_slot_done(n, slot);
        return;
    }
    if (r->role == RAFT_LEADER && target == n->opt.id) {
        resp_write_simple(&slot->data, "OK"); /* it leads already */
        client_slot_done(n, slot);
        return;
    }
    int rc = raft_transfer(r, target);
    if (rc == RAFT_ENOTLEADER) {
        commands_reply_not_leader(n, &slot->data);
        client_slot_done(n, slot);
        return;
    }
    if (rc != RAFT_OK) {
        char msg[96];
        snprintf(msg, sizeof msg, "ERR node %u is not another voting member of the cluster",
                 target);
        resp_write_error(&slot->data, msg);
        client_slot_done(n, slot);
        return;
    }
    node_event(n, "handing leadership to node %u: no new writes until it leads", target);
    n->transfer_slot = slot;
    n->transfer_target = target;
    n->transfer_term = r->current_term;
    n->transfer_deadline_ms = r->now_ms + 2ull * r->cfg.election_max_ms;
    transfer_check(n);
}

void transfer_check(struct node *n)
{
    const struct raft *r = &n->raft;
    if (n->transfer_slot == NULL)
        return;
    char msg[160];
    if (r->leader_id == n->transfer_target && r->current_term > n->transfer_term) {
        node_event(n, "handed leadership to node %u (term %" PRIu64 ")", n->transfer_target,
                   r->current_term);
        transfer_answer(n, NULL);
    } else if (r->role == RAFT_LEADER && r->current_term == n->transfer_term &&
               r->transfer_to == RAFT_NONE) {
        snprintf(msg, sizeof msg,
                 "ERR node %u did not take over within an election timeout (%u ms); this node "
                 "leads and takes writes again",
                 n->transfer_target, r->cfg.election_max_ms);
        transfer_answer(n, msg);
    } else if (r->now_ms >= n->transfer_deadline_ms) {
        if (r->leader_id != RAFT_NONE)
            snprintf(msg, sizeof msg, "ERR node %u did not take over; node %u leads term %" PRIu64,
                     n->transfer_target, r->leader_id, r->current_term);
        else
            snprintf(msg, sizeof msg, "ERR node %u did not take over; no leader is known yet",
                     n->transfer_target);
        transfer_answer(n, msg);
    }
}

void transfer_shutdown(struct node *n)
{
    transfer_answer(n, "ERR the node is shutting down before the transfer ended");
}

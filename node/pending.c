/* pending.c - client requests waiting for the log or for a read check, and
 * what each one is finally told.
 *
 * A write waits for its log entry to be applied. Its answer says only what
 * is known (the contract in README.md, "Commands"):
 *   - the entry at its index was applied with its term: the state machine's
 *     answer, whoever leads now;
 *   - an entry of another term was applied at that index: it never will be,
 *     so "-TRYAGAIN";
 *   - the node stopped leading that term and the index is still not applied
 *     after PENDING_FATE_TIMEOUTS longest election timeouts, or the node
 *     shuts down: "-UNCERTAIN", since a new leader may still commit it.
 * A log entry of another term at that index that is not committed proves
 * nothing: a later leader holding the old entry may still win and commit it.
 *
 * A read waits for ReadIndex to confirm the leadership, then until the node
 * has applied both the read index and the connection's earlier writes (so a
 * connection's commands take effect in order, as in Redis); then it runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

/* How long, in the core's clock, a node that lost leadership waits for the
 * fate of the writes it proposed before answering -UNCERTAIN. */
#define PENDING_FATE_TIMEOUTS 4

static const char *const uncertain_stepped_down =
    "UNCERTAIN leadership changed before the write committed; it may or may not have been "
    "applied";
static const char *const uncertain_shutdown =
    "UNCERTAIN the node is shutting down before the write committed; it may or may not have "
    "been applied";
static const char *const not_applied = "TRYAGAIN leader changed, the write was not applied";

static void slot_error(struct node *n, struct reply_slot *s, const char *msg)
{
    resp_write_error(&s->data, msg);
    client_slot_done(n, s);
}

static void reply_from_kv(struct buf *out, const struct kv_reply *r)
{
    switch (r->type) {
    case KV_REPLY_OK:
        resp_write_simple(out, "OK");
        break;
    case KV_REPLY_INT:
        resp_write_int(out, r->integer);
        break;
    case KV_REPLY_NIL:
        resp_write_nil(out);
        break;
    case KV_REPLY_BULK:
        resp_write_bulk(out, r->bulk, r->bulk_len);
        break;
    case KV_REPLY_ERR:
        resp_write_error(out, r->err);
        break;
    }
}

/* ------------------------------------------------------------ writes */

int pending_write_push(struct node *n, uint64_t index, uint64_t term, struct reply_slot *slot)
{
    if (n->writes_head == n->n_writes) {
        n->writes_head = 0;
        n->n_writes = 0;
        n->writes_unsorted = false;
    }
    /* Normally each write sits past the last one. After a leader change and
     * a re-election a new write can take a lower index than an older write
     * still waiting (whose entry was cut from this log, yet may be committed
     * by another leader): then the list is searched whole. */
    if (n->n_writes > n->writes_head && index <= n->writes[n->n_writes - 1].index)
        n->writes_unsorted = true;
    if (n->n_writes == n->cap_writes) {
        if (n->writes_head > 0) {
            memmove(n->writes, n->writes + n->writes_head,
                    (n->n_writes - n->writes_head) * sizeof(*n->writes));
            n->n_writes -= n->writes_head;
            n->writes_head = 0;
        } else {
            size_t cap = n->cap_writes ? n->cap_writes * 2 : 256;
            struct pending_write *p = realloc(n->writes, cap * sizeof(*p));
            if (p == NULL)
                return -1;
            n->writes = p;
            n->cap_writes = cap;
        }
    }
    n->writes[n->n_writes++] =
        (struct pending_write){.index = index, .term = term, .slot = slot, .lost_ms = 0};
    return 0;
}

/* Drop answered writes from the front. */
static void pending_writes_pop(struct node *n)
{
    while (n->writes_head < n->n_writes && n->writes[n->writes_head].slot == NULL)
        n->writes_head++;
}

/* Figure 2, Leaders: "respond after entry applied to state machine". Also
 * answers writes proposed in an earlier term of this node's leadership.
 * reply is NULL for an entry that is no command (a leader's no-op). */
void pending_on_applied(struct node *n, uint64_t index, uint64_t term, const struct kv_reply *reply)
{
    for (size_t i = n->writes_head; i < n->n_writes; i++) {
        struct pending_write *w = &n->writes[i];
        if (w->slot == NULL)
            continue;
        if (!n->writes_unsorted && w->index > index)
            break;
        if (w->index == index && w->term == term && reply != NULL) {
            reply_from_kv(&w->slot->data, reply);
            client_slot_done(n, w->slot);
        } else if (w->index == index) {
            /* Another term's entry was applied at this index: ours was not
             * and never will be (committed entries never change). */
            slot_error(n, w->slot, not_applied);
        } else if (w->index < index) {
            /* Its index went by without being applied here one entry at a
             * time (a snapshot covered it): what was there is not known. */
            slot_error(n, w->slot, uncertain_stepped_down);
        } else {
            continue;
        }
        w->slot = NULL;
    }
    pending_writes_pop(n);
}

/* The entries up to index came in a snapshot, never applied one by one
 * here: whether a write among them is the one proposed cannot be told. */
void pending_on_snapshot(struct node *n, uint64_t index)
{
    for (size_t i = n->writes_head; i < n->n_writes; i++) {
        struct pending_write *w = &n->writes[i];
        if (w->slot == NULL || w->index > index)
            continue;
        slot_error(n, w->slot, uncertain_stepped_down);
        w->slot = NULL;
    }
    pending_writes_pop(n);
}

/* ------------------------------------------------------------ reads */

static void pending_read_free(struct pending_read *p)
{
    for (size_t i = 0; i < p->argc; i++)
        free(p->argv[i]);
    free(p->argv);
    free(p->argl);
    p->argv = NULL;
    p->argl = NULL;
    p->argc = 0;
}

int pending_read_push(struct node *n, uint64_t read_id, struct reply_slot *slot, size_t argc,
                      const uint8_t *const *argv, const size_t *argl, uint64_t after_index)
{
    if (n->n_reads == n->cap_reads) {
        size_t cap = n->cap_reads ? n->cap_reads * 2 : 256;
        struct pending_read *p = realloc(n->reads, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        n->reads = p;
        n->cap_reads = cap;
    }
    struct pending_read *p = &n->reads[n->n_reads];
    memset(p, 0, sizeof(*p));
    p->argv = calloc(argc, sizeof(*p->argv));
    p->argl = calloc(argc, sizeof(*p->argl));
    if (p->argv == NULL || p->argl == NULL) {
        pending_read_free(p);
        return -1;
    }
    for (size_t i = 0; i < argc; i++) {
        p->argv[i] = malloc(argl[i] + 1);
        if (p->argv[i] == NULL) {
            p->argc = i;
            pending_read_free(p);
            return -1;
        }
        memcpy(p->argv[i], argv[i], argl[i]);
        p->argl[i] = argl[i];
        p->argc = i + 1;
    }
    p->read_id = read_id;
    p->slot = slot;
    p->wait_index = after_index;
    n->n_reads++;
    return 0;
}

/* Drop answered reads, keeping the others in order. */
static void pending_reads_compact(struct node *n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n->n_reads; i++)
        if (n->reads[i].slot != NULL)
            n->reads[kept++] = n->reads[i];
    n->n_reads = kept;
}

/* The read's reply is in its slot: send it, and let the connection's next
 * write go (it waited for this read). */
static void pending_read_finish(struct node *n, struct pending_read *p)
{
    struct client *c = p->slot->client;
    if (c != NULL && c->reads_pending > 0 && --c->reads_pending == 0 && c->in.len > 0)
        c->parse_again = true;
    client_slot_done(n, p->slot);
    p->slot = NULL;
    pending_read_free(p);
}

static void pending_read_answer_error(struct node *n, struct pending_read *p, const char *msg)
{
    resp_write_error(&p->slot->data, msg);
    pending_read_finish(n, p);
}

/* The core's answer to a ReadIndex request. */
void pending_on_read(struct node *n, const struct raft_read_result *rr)
{
    for (size_t i = 0; i < n->n_reads; i++) {
        struct pending_read *p = &n->reads[i];
        if (p->slot == NULL || p->confirmed || p->read_id != rr->read_id)
            continue;
        if (!rr->ok) {
            commands_reply_not_leader(n, &p->slot->data);
            pending_read_finish(n, p);
            pending_reads_compact(n);
            return;
        }
        p->confirmed = true;
        p->lease = rr->lease;
        if (rr->index > p->wait_index)
            p->wait_index = rr->index;
        return;
    }
}

/* Run every confirmed read whose index has been applied. */
void pending_serve_reads(struct node *n)
{
    uint64_t applied = kv_applied_index(n->kv);
    bool answered = false;
    n->reads_backlog = false;
    for (size_t i = 0; i < n->n_reads; i++) {
        struct pending_read *p = &n->reads[i];
        if (p->slot == NULL || !p->confirmed || p->wait_index > applied)
            continue;
        /* Replies of many large values are built over several loop turns,
         * between which the node hears its peers and sends heartbeats. */
        if (n->serve_budget == 0) {
            n->reads_backlog = true;
            break;
        }
        uint64_t wait = 0;
        /* A client that has gone (or was cut for not reading) is owed
         * nothing: building its reply would only cost time. */
        const struct client *c = p->slot->client;
        int rc = c == NULL || c->gone
                     ? COMMANDS_READ_DONE
                     : commands_run_read(n, p->argc, (const uint8_t *const *)p->argv, p->argl,
                                         &p->slot->data, &wait);
        if (rc == COMMANDS_READ_WAIT) {
            p->wait_index = wait;
            continue;
        }
        if (rc == COMMANDS_READ_NOT_LEADER) {
            commands_reply_not_leader(n, &p->slot->data);
        } else if (p->lease && !node_lease_holds(n)) {
            /* Read on the lease, but the lease ran out before the read was
             * done (a stall in between): what was read may be stale. Ask
             * again by a heartbeat round. */
            buf_reset(&p->slot->data);
            n->reads_lease_late++;
            p->confirmed = false;
            p->lease = false;
            if (raft_read_by_round(&n->raft, p->read_id) == RAFT_OK)
                continue;
            commands_reply_not_leader(n, &p->slot->data);
        } else if (p->lease) {
            n->reads_on_lease++;
        }
        size_t built = p->slot->data.len;
        n->serve_budget = built >= n->serve_budget ? 0 : n->serve_budget - built;
        pending_read_finish(n, p);
        answered = true;
    }
    if (answered)
        pending_reads_compact(n);
}

/* ------------------------------------------------------------ fate */

/* A node that no longer leads the term of a waiting write learns its fate
 * from the next leader's commit index. If that takes too long (the node is
 * cut off, or no leader is elected), the client is told it is uncertain and
 * may retry with the same client id and sequence number. Confirmed reads
 * waiting for an index are simply failed after the same time. */
void pending_check(struct node *n)
{
    const struct raft *r = &n->raft;
    /* Real time, scaled like the core's timers: the core's clock stands
     * still while the disk fails, and a client should not wait for that. */
    uint64_t now = clock_monotonic_ms();
    uint64_t limit =
        (uint64_t)((double)PENDING_FATE_TIMEOUTS * r->cfg.election_max_ms / n->opt.speed + 0.5);
    for (size_t i = n->writes_head; i < n->n_writes; i++) {
        struct pending_write *w = &n->writes[i];
        if (w->slot == NULL)
            continue;
        bool leads_its_term = r->role == RAFT_LEADER && r->current_term == w->term;
        if (!leads_its_term && w->lost_ms == 0)
            w->lost_ms = now == 0 ? 1 : now;
        if (w->lost_ms != 0 && now - w->lost_ms >= limit) {
            slot_error(n, w->slot, uncertain_stepped_down);
            w->slot = NULL;
        }
    }
    pending_writes_pop(n);
    bool answered = false;
    for (size_t i = 0; i < n->n_reads; i++) {
        struct pending_read *p = &n->reads[i];
        if (p->slot == NULL || !p->confirmed)
            continue;
        if (r->role == RAFT_LEADER) {
            p->lost_ms = 0;
            continue;
        }
        if (p->lost_ms == 0) {
            p->lost_ms = now == 0 ? 1 : now;
        } else if (now - p->lost_ms >= limit) {
            pending_read_answer_error(n, p, "TRYAGAIN leader changed, retry the request");
            answered = true;
        }
    }
    if (answered)
        pending_reads_compact(n);
}

void pending_fail_unconfirmed_reads(struct node *n)
{
    bool answered = false;
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].slot != NULL && !n->reads[i].confirmed) {
            pending_read_answer_error(n, &n->reads[i],
                                      "TRYAGAIN leader changed, retry the request");
            answered = true;
        }
    }
    if (answered)
        pending_reads_compact(n);
}

/* The node stops: every waiting client hears what is known. */
void pending_fail_all_on_shutdown(struct node *n)
{
    for (size_t i = n->writes_head; i < n->n_writes; i++)
        if (n->writes[i].slot != NULL)
            slot_error(n, n->writes[i].slot, uncertain_shutdown);
    n->writes_head = n->n_writes = 0;
    for (size_t i = 0; i < n->n_reads; i++)
        if (n->reads[i].slot != NULL)
            pending_read_answer_error(n, &n->reads[i], "TRYAGAIN the node is shutting down");
    n->n_reads = 0;
}

void pending_free(struct node *n)
{
    for (size_t i = n->writes_head; i < n->n_writes; i++) {
        struct reply_slot *slot = n->writes[i].slot;
        if (slot == NULL)
            continue;
        buf_free(&slot->data);
        if (slot->client == NULL)
            free(slot);
    }
    for (size_t i = 0; i < n->n_reads; i++) {
        struct pending_read *p = &n->reads[i];
        if (p->slot != NULL && p->slot->client == NULL) {
            buf_free(&p->slot->data);
            free(p->slot);
        }
        pending_read_free(p);
    }
    free(n->writes);
    free(n->reads);
    n->writes = NULL;
    n->reads = NULL;
}

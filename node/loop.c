/* loop.c - the node's one event loop.
 *
 * Every turn: advance the core's clock, take in peer messages and client
 * requests, then carry out what the core asks, in the order persist, send,
 * apply (raft.h). Everything that arrived during one turn shares one fsync
 * and one message per peer.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "node.h"

/* Ready descriptors taken per turn; more wait for the next. */
#define NODE_READY_MAX 256

static volatile sig_atomic_t node_stop_requested;

static void node_on_signal(int sig)
{
    (void)sig;
    node_stop_requested = 1;
}

/* Storage failing under the core leaves nothing safe to do but stop. */
static void node_fatal(struct node *n, const char *err)
{
    fprintf(stderr, "raftkv-node %u: %s\n", n->opt.id, err);
    exit(1);
}

/* Persist what the ready asks. Returns 0, or -1 with err filled. */
static int node_persist(struct node *n, const struct raft_ready *rd, char *err, size_t errlen)
{
    if (rd->hard_state_changed &&
        wal_save_hard_state(n->wal, rd->term, rd->voted_for, err, errlen) != 0)
        return -1;
    if (rd->truncate_from != 0 && wal_truncate(n->wal, rd->truncate_from, err, errlen) != 0)
        return -1;
    /* c. The received snapshot becomes the node's, durably, before the log
     * drops the entries it covers (wal_install_snapshot does both). */
    if (rd->snapshot_install != NULL && snapshot_install(n, rd->snapshot_install, err, errlen) != 0)
        return -1;
    /* After a failed attempt the log may hold some of these already. */
    size_t skip = 0;
    while (skip < rd->n_entries && rd->entries[skip].index <= wal_last_index(n->wal))
        skip++;
    if (rd->n_entries > skip &&
        wal_append(n->wal, rd->entries + skip, rd->n_entries - skip, err, errlen) != 0)
        return -1;
    if (rd->truncate_from != 0 || rd->n_entries > 0) {
        if (wal_sync(n->wal, err, errlen) != 0)
            return -1;
        n->log_syncs++; /* RAFT.INFO counts these with the storage thread's */
        n->log_syncs_on_loop++;
    }
    /* e. A chunk of a snapshot being received (synced when it is the last). */
    if (rd->snapshot_chunk != NULL && snapshot_write_chunk(n, rd->snapshot_chunk, err, errlen) != 0)
        return -1;
    return 0;
}

/* How often a node whose disk failed tries again. */
#define NODE_DISK_RETRY_MS 1000

/* The disk failed under a ready (full, or an I/O error). Nothing it held is
 * promised to anyone: its messages are dropped, the log forgets what was not
 * synced, a leader steps down, and the node stops timing out (it must not
 * lead while it cannot write). It keeps answering what it can and tries
 * again every second; writes are refused meanwhile (-MISCONF). */
static void node_disk_failed(struct node *n, const char *why)
{
    char err[512];
    storage_forget(n);
    if (wal_reset_to_synced(n->wal, err, sizeof(err)) != 0)
        node_event(n, "%s", err);
    raft_storage_failed(&n->raft, wal_last_index(n->wal));
    pending_fail_unconfirmed_reads(n);
    if (!n->disk_error)
        node_event(n,
                   "cannot write its log (%s): stepped down, refusing writes, retrying every "
                   "second",
                   why);
    n->disk_error = true;
    snprintf(n->disk_error_text, sizeof(n->disk_error_text), "%s", why);
    n->disk_retry_ms = clock_monotonic_ms() + NODE_DISK_RETRY_MS;
}

/* A RAFT_MSG_SNAPSHOT leaves with its chunk of the file attached. */
static void node_send(struct node *n, const struct raft_msg *m)
{
    write_path_sent(n, m);
    if (m->type != RAFT_MSG_SNAPSHOT) {
        transport_send(n, m);
        return;
    }
    struct raft_msg with_data = *m;
    if (snapshot_attach_chunk(n, &with_data) != 0) {
        n->msgs_dropped++; /* sent again at the next heartbeat */
        return;
    }
    transport_send(n, &with_data);
}

static void node_apply(struct node *n, const struct raft_ready *rd)
{
    /* 3. "the state machine is restored from it before anything after it is
     * applied" (raft.h). */
    if (rd->snapshot_install != NULL) {
        char err[512];
        if (snapshot_restore(n, rd->snapshot_install, err, sizeof(err)) != 0)
            node_fatal(n, err);
        n->status_dirty = true;
    }
    if (rd->apply_to == 0)
        return;
    for (uint64_t i = rd->apply_from; i <= rd->apply_to; i++) {
        const struct raft_entry *e = raft_entry_at(&n->raft, i);
        if (e->type != RAFT_ENTRY_COMMAND) {
            kv_apply_noop(n->kv, i);
            pending_on_applied(n, i, e->term, NULL); /* a write waiting here was not applied */
            continue;
        }
        struct kv_reply reply;
        if (kv_apply(n->kv, i, e->data, e->len, &reply) != 0)
            node_fatal(n, "out of memory applying the log");
        pending_on_applied(n, i, e->term, &reply);
        kv_reply_free(&reply);
    }
    n->status_dirty = true;
}

/* What the core did besides changing role or term, in words. A leader
 * that lost its majority says so in its role line (node_note_state). */
static void node_tell_notes(struct node *n, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_notes; i++) {
        const struct raft_note *t = &rd->notes[i];
        switch (t->type) {
        case RAFT_NOTE_QUORUM_LOST:
            snprintf(n->role_reason, sizeof n->role_reason,
                     "no word from a majority for %" PRIu64 " ms", t->ms);
            break;
        case RAFT_NOTE_PREVOTE_REFUSED:
            if (t->leader == t->node)
                node_event(
                    n, "asked for pre-votes in term %" PRIu64 " and was refused (node %u leads)",
                    t->term, t->node);
            else if (t->leader != RAFT_NONE)
                node_event(n,
                           "asked for pre-votes in term %" PRIu64
                           " and was refused (node %u heard from leader %u %" PRIu64 " ms ago)",
                           t->term, t->node, t->leader, t->ms);
            else
                node_event(n,
                           "asked for pre-votes in term %" PRIu64
                           " and was refused by node %u (its log is newer, or its term is past)",
                           t->term, t->node);
            break;
        case RAFT_NOTE_VOTE_IGNORED:
            if (t->leader == n->opt.id)
                node_event(n,
                           "ignored node %u's RequestVote for term %" PRIu64
                           " (it leads, and hears from a majority)",
                           t->node, t->term);
            else if (t->leader == RAFT_NONE)
                node_event(n,
                           "ignored node %u's RequestVote for term %" PRIu64
                           " (with leases it votes no sooner than an election timeout after "
                           "hearing from a leader, or after starting)",
                           t->node, t->term);
            else
                node_event(n,
                           "ignored node %u's RequestVote for term %" PRIu64
                           " (heard from leader %u %" PRIu64 " ms ago)",
                           t->node, t->term, t->leader, t->ms);
            break;
        case RAFT_NOTE_PROMOTED: {
            char ids[64];
            raft_members_ids_text(&n->raft.members, ids, sizeof ids);
            node_event(n, "node %u caught up and became a voter (config #%" PRIu64 ": %s)", t->node,
                       t->index, ids);
            break;
        }
        case RAFT_NOTE_TIMEOUT_NOW:
            snprintf(n->role_reason, sizeof n->role_reason, "TimeoutNow from node %u", t->node);
            break;
        case RAFT_NOTE_TRANSFER_SENT:
            node_event(n, "sent TimeoutNow to node %u: its log is up to date, it stands now",
                       t->node);
            break;
        case RAFT_NOTE_TRANSFER_FAILED:
            node_event(
                n, "gave up handing leadership to node %u after %" PRIu64 " ms; takes writes again",
                t->node, t->ms);
            break;
        }
    }
}

/* Print a line when role or term changed. */
static void node_note_state(struct node *n)
{
    struct raft *r = &n->raft;
    if (r->role == n->shown_role && r->current_term == n->shown_term)
        return;
    if (r->role == RAFT_PRECANDIDATE) {
        node_event(n,
                   "term %" PRIu64 " %s -> PreCandidate (timed out after %u ms; asks for "
                   "pre-votes for term %" PRIu64 ")",
                   r->current_term, raft_role_name(n->shown_role), n->raft.election_timeout_ms,
                   r->current_term + 1);
    } else if (n->shown_role == RAFT_LEADER && r->role == RAFT_FOLLOWER &&
               n->role_reason[0] != '\0') {
        node_event(n, "term %" PRIu64 " Leader -> Follower (%s)", r->current_term, n->role_reason);
    } else if (r->role == RAFT_LEADER) {
        char votes[64];
        cluster_ids_text(r->votes, votes, sizeof(votes));
        node_event(n, "term %" PRIu64 " %s -> Leader (votes from %s)", r->current_term,
                   raft_role_name(n->shown_role), votes);
    } else if (r->role == RAFT_CANDIDATE && n->role_reason[0] != '\0') {
        node_event(n, "term %" PRIu64 " %s -> Candidate (%s)", r->current_term,
                   raft_role_name(n->shown_role), n->role_reason);
    } else if (r->role == RAFT_CANDIDATE) {
        node_event(n, "term %" PRIu64 " %s -> Candidate (timed out after %u ms)", r->current_term,
                   raft_role_name(n->shown_role), n->raft.election_timeout_ms);
    } else if (n->shown_role != r->role) {
        node_event(n, "term %" PRIu64 " %s -> Follower", r->current_term,
                   raft_role_name(n->shown_role));
    } else {
        node_event(n, "term %" PRIu64 " Follower (new term)", r->current_term);
    }
    n->shown_role = r->role;
    n->shown_term = r->current_term;
    n->role_reason[0] = '\0';
}

/* Reply bytes that reads may build in one loop turn (pending_serve_reads). */
#define NODE_SERVE_BUDGET (1u * 1024u * 1024u)

void node_process_ready(struct node *n)
{
    int rounds = 0;
    n->serve_budget = NODE_SERVE_BUDGET;
    if (n->reads_backlog)
        pending_serve_reads(n);
    while (raft_has_ready(&n->raft) && rounds++ < 16) {
        if (n->disk_error && clock_monotonic_ms() < n->disk_retry_ms)
            break;
        struct raft_ready rd;
        raft_ready(&n->raft, &rd);
        node_tell_notes(n, &rd);
        node_note_state(n);
        char err[512];
        if (storage_can_defer(n, &rd) && !storage_sync_inline(n, &rd)) {
            /* The entries are written now and synced by the storage thread
             * while this loop goes on. A leader's AppendEntries leave at
             * once; its own copy counts toward a majority only once
             * raft_synced says it is durable. Anything else waits for the
             * sync: "Respond to RPCs only after updating stable storage"
             * (dissertation, Figure 3.1). */
            if (!rd.persist_before_send)
                for (size_t i = 0; i < rd.n_msgs; i++)
                    node_send(n, &rd.msgs[i]);
            if (storage_write(n, &rd, err, sizeof(err)) != 0) {
                node_disk_failed(n, err);
                break;
            }
            if (rd.persist_before_send)
                for (size_t i = 0; i < rd.n_msgs; i++)
                    storage_send_after_sync(n, &rd.msgs[i]);
            node_apply(n, &rd);
            for (size_t i = 0; i < rd.n_reads; i++)
                pending_on_read(n, &rd.reads[i]);
            raft_advance_unsynced(&n->raft, &rd);
            pending_serve_reads(n);
            continue;
        }
        /* The rest is persisted here, after what the storage thread has;
         * so is a single small write while the thread is idle (the
         * fdatasync on the loop saves the two hand-offs). */
        if (storage_drain(n, false, err, sizeof(err)) != 0) {
            node_disk_failed(n, err);
            break;
        }
        if (rd.persist_before_send) {
            if (node_persist(n, &rd, err, sizeof(err)) != 0) {
                node_disk_failed(n, err);
                break;
            }
            for (size_t i = 0; i < rd.n_msgs; i++)
                node_send(n, &rd.msgs[i]);
        } else {
            /* A leader's AppendEntries may leave before its own fsync: its
             * own copy counts toward a majority only after raft_advance. */
            for (size_t i = 0; i < rd.n_msgs; i++)
                node_send(n, &rd.msgs[i]);
            if (node_persist(n, &rd, err, sizeof(err)) != 0) {
                node_disk_failed(n, err);
                break;
            }
        }
        if (n->disk_error) {
            n->disk_error = false;
            node_event(n, "its log can be written again");
        }
        node_apply(n, &rd);
        for (size_t i = 0; i < rd.n_reads; i++)
            pending_on_read(n, &rd.reads[i]);
        raft_advance(&n->raft, &rd);
        /* After raft_advance: a read may propose the delete of an expired
         * key, which the next ready carries. */
        pending_serve_reads(n);
    }
    node_note_state(n);
    pending_check(n);
    transfer_check(n);
    membership_check(n);
}

void node_suspend(struct node *n, uint64_t ms)
{
    n->suspended = true;
    n->suspend_until_ms = clock_monotonic_ms() + ms;
    node_event(n, "suspended for %" PRIu64 " ms", ms);
}

void node_resume(struct node *n)
{
    if (!n->suspended)
        return;
    n->suspended = false;
    /* Time spent asleep does not count toward the core's timers: a resumed
     * node behaves like a process that was paused (and holds no lease). */
    n->last_real_ms = clock_monotonic_ms();
    raft_lease_revoke(&n->raft);
    node_event(n, "resumed");
}

/* Dissertation 6.4.1: "the leader would use the normal heartbeat mechanism
 * to maintain a lease ... to start + election timeout / clock drift bound,
 * since the followers shouldn't time out before then". A follower counts
 * its election timeout from the core's clock at the start of the turn that
 * took the heartbeat in, which may lag the moment the heartbeat arrived by
 * up to the clock's largest step; so the lease is the minimum election
 * timeout less that step, less 3 ms for a clock read in whole milliseconds,
 * less a tenth for clocks that run at different rates. */
uint32_t node_lease_ms(const struct node_options *o)
{
    /* The step and the whole milliseconds are real time: in the core's
     * clock they are scaled by --speed (rounded up). */
    uint32_t real = (uint32_t)ceil((double)(NODE_CLOCK_STEP_MAX_MS + 2) * o->speed);
    uint32_t margin = real + 1 + o->election_min_ms / 10;
    return o->election_min_ms > margin ? o->election_min_ms - margin : 0;
}

/* The core's clock now: its value at the turn's start, moved on by the real
 * time since. A step longer than the clock may move at once is a stall:
 * the lease cannot be trusted across it. */
bool node_lease_holds(const struct node *n)
{
    uint64_t real = clock_monotonic_ms();
    uint64_t elapsed = real > n->last_real_ms ? real - n->last_real_ms : 0;
    if (elapsed > NODE_CLOCK_STEP_MAX_MS || n->suspended || n->disk_error || n->wire.frozen)
        return false;
    /* One more millisecond: the monotonic clock is read in whole ones. */
    uint64_t now = n->raft_clock_ms + (uint64_t)((double)(elapsed + 1) * n->opt.speed + 0.5);
    return now < raft_lease_end(&n->raft);
}

/* Advance the core's clock by real time elapsed, scaled by speed. One turn
 * moves it by at most a little more than the loop sleeps: after a stall (a slow disk, a
 * busy machine) the messages that arrived meanwhile are taken in before the
 * core can decide that nobody spoke to it. */
static void node_advance_clock(struct node *n, uint64_t now)
{
    /* While the disk fails, as while suspended, the core's clock stands
     * still: the node must not campaign, and when it writes again it must not
     * time out at once for the time that passed and depose a healthy leader
     * (the heartbeats it took in meanwhile restarted its timer at that time). */
    if (n->disk_error || n->wire.frozen) {
        n->last_real_ms = now;
        raft_lease_revoke(&n->raft); /* real time passes; the core's does not */
        return;
    }
    if (now > n->last_real_ms) {
        uint64_t elapsed = now - n->last_real_ms;
        if (elapsed > NODE_CLOCK_STEP_MAX_MS) {
            elapsed = NODE_CLOCK_STEP_MAX_MS;
            raft_lease_revoke(&n->raft); /* a stall: the core's clock fell behind */
        }
        n->raft_clock_ms += (uint64_t)((double)elapsed * n->opt.speed + 0.5);
        n->last_real_ms = now;
    }
}

/* What the loop waits for on each descriptor this turn (the peers' is
 * watched throughout, from node_run). Suspended, only the peers: their
 * messages are taken and lost, controls still work, and a finished sync
 * waits for the resume (its pipe would wake the loop at once, again and
 * again). */
static void node_watch(struct node *n, uint64_t now)
{
    bool awake = !n->suspended;
    if (poller_watch(n, &n->listen_source, n->listen_fd,
                     awake && clients_want_accept(n, now) ? EPOLLIN : 0) != 0 ||
        poller_watch(n, &n->storage_source, storage_fd(n), awake ? EPOLLIN : 0) != 0)
        node_fatal(n, strerror(errno));
    for (struct client *c = n->clients; c != NULL; c = c->next)
        clients_watch(n, c, awake);
}

/* How long the loop may sleep: until the core's next timer, or sooner. */
static int node_poll_timeout(struct node *n, uint64_t now)
{
    uint64_t wait = NODE_POLL_MAX_MS;
    if (n->disk_error)
        wait = n->disk_retry_ms > now
                   ? (n->disk_retry_ms - now < wait ? n->disk_retry_ms - now : wait)
                   : 0;
    else if (raft_has_ready(&n->raft) || n->reads_backlog)
        return 0;
    const struct raft *r = &n->raft;
    uint64_t due = r->role == RAFT_LEADER ? r->heartbeat_due_ms : r->election_deadline_ms;
    if (!n->suspended) {
        uint64_t in = due > n->raft_clock_ms ? due - n->raft_clock_ms : 0;
        in = (uint64_t)((double)in / n->opt.speed);
        if (in < wait)
            wait = in;
    }
    uint64_t delayed = transport_next_due(n);
    if (delayed != 0)
        wait = delayed > now ? (delayed - now < wait ? delayed - now : wait) : 0;
    return (int)wait;
}

int node_run(struct node *n)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = node_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct epoll_event ready[NODE_READY_MAX];
    char err[512];
    if (storage_start(n, err, sizeof(err)) != 0)
        node_fatal(n, err);
    if (poller_watch(n, &n->peers_source, transport_fd(n), EPOLLIN) != 0)
        node_fatal(n, strerror(errno));
    while (!node_stop_requested) {
        uint64_t now = clock_monotonic_ms();
        node_watch(n, now);
        int timeout = node_poll_timeout(n, now);
        int n_ready = poller_wait(n, ready, NODE_READY_MAX, timeout);
        if (n_ready < 0)
            node_fatal(n, strerror(errno));
        bool storage_woken = false, accept_ready = false;
        for (int i = 0; i < n_ready; i++) {
            const struct poll_source *s = ready[i].data.ptr;
            storage_woken |= s == &n->storage_source;
            accept_ready |= s == &n->listen_source;
        }

        now = clock_monotonic_ms();
        if (n->suspended && now >= n->suspend_until_ms)
            node_resume(n);
        if (n->suspended) {
            n->last_real_ms = now;
            transport_receive(n); /* peer messages are lost; controls still work */
            wire_report_tick(n, now);
            status_maybe_publish(n, now);
            continue;
        }
        struct turn_timer *t = &n->turn;
        turn_timer_begin(t);
        node_advance_clock(n, now);
        if (storage_poll(n, storage_woken, err, sizeof(err)) != 0)
            node_disk_failed(n, err);
        write_path_observe(n);
        turn_timer_mark(t, TURN_STORAGE);
        raft_tick(&n->raft, n->raft_clock_ms);
        transport_receive(n);
        write_path_observe(n);
        turn_timer_mark(t, TURN_PEERS);
        if (accept_ready)
            clients_accept(n);
        for (int i = 0; i < n_ready; i++) {
            const struct poll_source *s = ready[i].data.ptr;
            if (s->client != NULL && (ready[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                clients_read(n, s->client);
        }
        for (struct client *c = n->clients; c != NULL; c = c->next) {
            if (c->parse_again) {
                c->parse_again = false;
                clients_parse(n, c);
            }
        }
        if (!n->wire.frozen) /* nothing changes while frozen */
            commands_sweep_expired(n);
        write_path_observe(n);
        turn_timer_mark(t, TURN_CLIENTS_IN);
        node_process_ready(n);
        write_path_observe(n);
        turn_timer_mark(t, TURN_CORE);
        snapshot_tick(n);
        turn_timer_mark(t, TURN_SNAPSHOT);
        transport_flush_delayed(n, now);
        for (struct client *c = n->clients; c != NULL; c = c->next)
            if (c->out.len > 0)
                clients_write(n, c);
        clients_reap(n);
        write_path_replied(n);
        turn_timer_mark(t, TURN_CLIENTS_OUT);
        wire_report_tick(n, now);
        status_maybe_publish(n, now);
        turn_timer_mark(t, TURN_REPORTS);
        turn_timer_end(n, t);
    }
    /* What was written is made durable, and the replies waiting for it
     * leave, before the clients hear the rest. */
    storage_stop(n);
    /* Tell every waiting client what is known before the connections close. */
    pending_fail_all_on_shutdown(n);
    snapshot_shutdown(n);
    transfer_shutdown(n);
    membership_shutdown(n);
    for (struct client *c = n->clients; c != NULL; c = c->next)
        if (c->out.len > 0)
            clients_write(n, c);
    if (!n->opt.quiet) {
        printf("node %u: stopped\n", n->opt.id);
        fflush(stdout);
    }
    return 0;
}

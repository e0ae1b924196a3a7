/* raft_snapshot.c - log compaction and InstallSnapshot (Raft paper,
 * section 7 and Figure 13).
 *
 * The core never touches a snapshot's bytes on disk. The caller writes a
 * snapshot of its state machine and then tells the core with raft_compact;
 * a leader's RAFT_MSG_SNAPSHOT names a chunk by offset and the caller
 * attaches the bytes; a follower hands the chunks it accepts to the caller
 * in the ready (rd.snapshot_chunk) and, once the last one is durable, asks
 * it to install the snapshot (rd.snapshot_install). raft.h gives the order.
 *
 * Leader side, per peer (struct raft_progress, as cowsql/raft's progress.c):
 * a peer whose nextIndex is at or below the snapshot's index switches to
 * snapshot mode with the newest snapshot; one chunk is in flight at a time,
 * sent again at every heartbeat until its reply comes; when the follower
 * says it installed the snapshot, matchIndex = snapshot index, nextIndex =
 * matchIndex + 1 and the peer goes back to probe mode (and to a newer
 * snapshot, if the leader compacted past it meanwhile).
 */
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

/* ------------------------------------------------------------ compaction */

/* Queued AppendEntries name their entries by position: drop those the
 * compaction leaves pointing at nothing. Losing messages is always allowed
 * (5.1). */
static void raft_drop_queued_compacted(struct raft *r, uint64_t index)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->n_out; i++) {
        const struct raft_msg *m = &r->out_msgs[i];
        bool stale = m->type == RAFT_MSG_APPEND && m->n_entries > 0 && m->prev_index < index;
        if (!stale)
            r->out_msgs[kept++] = r->out_msgs[i];
    }
    r->n_out = kept;
}

/* Section 7: "Each server takes snapshots independently, covering just the
 * committed entries in its log. [...] Once a server completes writing a
 * snapshot, it may delete all log entries up through the last included
 * index, as well as any prior snapshot." The caller has written it; here
 * the entries go. */
int raft_compact(struct raft *r, uint64_t index)
{
    return raft_compact_with(r, index, NULL, NULL);
}

int raft_compact_with(struct raft *r, uint64_t index, void (*drop_data)(void *arg, uint8_t *data),
                      void *arg)
{
    if (index == r->log.snapshot_index)
        return RAFT_OK;
    if (index < r->log.snapshot_index || index > r->last_applied)
        return RAFT_EINVAL;
    raft_members_on_compact(r, index);
    raft_log_compact(&r->log, index, raft_term_at(r, index), drop_data, arg);
    /* What the snapshot covers is durable in it. */
    if (r->stable_index < index)
        r->stable_index = index;
    if (r->persisted_index < index)
        r->persisted_index = index;
    raft_drop_queued_compacted(r, index);
    /* A transfer under way goes on with the snapshot it started with:
     * restarting it at every compaction could keep a follower from ever
     * finishing one. */
    return RAFT_OK;
}

bool raft_snapshot_in_use(const struct raft *r, uint64_t index)
{
    if (index == r->log.snapshot_index)
        return true;
    if (r->role != RAFT_LEADER)
        return false;
    for (size_t i = 0; i < r->members.n; i++) {
        const struct raft_progress *pr = &r->progress[r->members.m[i].id - 1];
        if (r->members.m[i].id != r->cfg.id && pr->mode == RAFT_PROGRESS_SNAPSHOT &&
            pr->snapshot_index == index)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ leader */

/* Figure 13, Invoked by leader to send chunks of a snapshot to a follower.
 * Arguments: term, leaderId, lastIncludedIndex, lastIncludedTerm, offset,
 * data[] (attached by the caller), done (set by the caller). */
void raft_send_snapshot(struct raft *r, int slot, bool heartbeat)
{
    struct raft_progress *pr = &r->progress[slot];
    if (pr->mode != RAFT_PROGRESS_SNAPSHOT) {
        /* Section 7: "the leader must occasionally send snapshots to
         * followers that lag behind", when "the leader has already
         * discarded the next log entry that it needs to send". */
        pr->mode = RAFT_PROGRESS_SNAPSHOT;
        pr->snapshot_index = r->log.snapshot_index;
        pr->snapshot_term = r->log.snapshot_term;
        pr->snapshot_offset = 0;
    } else if (!heartbeat) {
        return; /* one chunk in flight; the heartbeat sends it again */
    }
    struct raft_msg m = {
        .type = RAFT_MSG_SNAPSHOT,
        .from = r->cfg.id,
        .to = (uint32_t)slot + 1,
        .term = r->current_term,
        .snapshot_index = pr->snapshot_index,
        .snapshot_term = pr->snapshot_term,
        .offset = pr->snapshot_offset,
        .read_seq = r->read_seq,
    };
    if (raft_send(r, &m) == RAFT_OK)
        pr->last_send_ms = r->now_ms;
}

/* The follower's answer to the chunk in flight: installed, or the offset it
 * wants next (a chunk further on, or 0 when it lost the transfer). Answers
 * to other chunks (duplicates, reordered) are stale: acting on them would
 * put more chunks in flight. */
int raft_recv_snapshot_reply(struct raft *r, const struct raft_msg *m)
{
    int slot = raft_node_slot(r, m->from);
    if (r->role != RAFT_LEADER || m->term != r->current_term || slot < 0)
        return RAFT_OK;
    struct raft_progress *pr = &r->progress[slot];
    pr->last_ack_ms = r->now_ms;
    raft_note_round_answered(r, pr, m);
    if (m->success) {
        /* The follower holds every entry up to snapshot_index, durably. */
        if (m->snapshot_index <= raft_last_index(r) && m->snapshot_index > pr->match)
            pr->match = m->snapshot_index;
        if (pr->mode == RAFT_PROGRESS_SNAPSHOT && m->snapshot_index >= pr->snapshot_index) {
            pr->mode = RAFT_PROGRESS_PROBE;
            pr->next = pr->match + 1;
            raft_send_append(r, slot, true);
        } else if (pr->mode != RAFT_PROGRESS_SNAPSHOT && pr->next <= pr->match) {
            pr->next = pr->match + 1;
        }
        raft_maybe_commit(r);
        raft_transfer_maybe_send(r);
    } else if (pr->mode == RAFT_PROGRESS_SNAPSHOT && m->snapshot_index == pr->snapshot_index &&
               m->offset == pr->snapshot_offset) {
        pr->snapshot_offset = m->next_offset;
        if (m->next_offset == 0) {
            /* The follower lost the transfer: start over with the newest. */
            pr->snapshot_index = r->log.snapshot_index;
            pr->snapshot_term = r->log.snapshot_term;
        }
        raft_send_snapshot(r, slot, true);
    }
    raft_reads_check(r);
    return RAFT_OK;
}

/* ------------------------------------------------------------ follower */

static int raft_snapshot_buffer(struct raft_snapshot_recv *rv, const uint8_t *data, size_t len)
{
    if (rv->buf_len + len > rv->buf_cap) {
        size_t cap = rv->buf_cap ? rv->buf_cap : 4096;
        while (cap < rv->buf_len + len)
            cap *= 2;
        uint8_t *p = realloc(rv->buf, cap);
        if (p == NULL)
            return RAFT_ENOMEM;
        rv->buf = p;
        rv->buf_cap = cap;
    }
    if (len > 0)
        memcpy(rv->buf + rv->buf_len, data, len);
    rv->buf_len += len;
    return RAFT_OK;
}

static void raft_snapshot_forget(struct raft_snapshot_recv *rv)
{
    rv->active = false;
    rv->complete = false;
    rv->offset = 0;
    rv->buf_len = 0;
    rv->buf_offset = 0;
    rv->buf_done = false;
}

/* Figure 13, InstallSnapshot RPC, receiver implementation:
 * 1. Reply immediately if term < currentTerm.
 * 2. Create new snapshot file if first chunk (offset is 0).
 * 3. Write data into snapshot file at given offset.
 * 4. Reply and wait for more data chunks if done is false.
 * (5-8 happen once the last chunk is durable: raft_snapshot_install.)
 *
 * A transfer is one leader's (one term's) one snapshot. A chunk of another
 * transfer that is not its first, a duplicate, or one past a gap is answered
 * with the offset wanted. A snapshot the follower has already committed
 * through (its log or its own snapshot holds all it covers) needs no
 * install: it is answered as installed at once. */
int raft_recv_snapshot(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg reply = {
        .type = RAFT_MSG_SNAPSHOT_REPLY,
        .from = r->cfg.id,
        .to = m->from,
        .term = r->current_term,
        .snapshot_index = m->snapshot_index,
        .offset = m->offset,
        .read_seq = m->read_seq,
        .promise_ms = raft_lease_promise(r),
    };
    if (m->term < r->current_term) /* rule 1 */
        return raft_send(r, &reply);

    /* A current leader exists, as for AppendEntries. */
    if (r->role != RAFT_FOLLOWER || r->leader_id != m->from)
        raft_become_follower(r, m->term, m->from);
    raft_reset_election_timer(r);
    r->leader_contact_ms = r->now_ms;

    if (m->snapshot_index <= r->commit_index) {
        reply.success = true;
        return raft_send(r, &reply);
    }
    struct raft_snapshot_recv *rv = &r->snap_recv;
    bool same = rv->active && rv->term == m->term && rv->index == m->snapshot_index &&
                rv->snap_term == m->snapshot_term;
    if (!same) {
        if (m->offset != 0) { /* rule 2: a transfer starts at offset 0 */
            reply.next_offset = 0;
            return raft_send(r, &reply);
        }
        raft_snapshot_forget(rv);
        rv->active = true;
        rv->term = m->term;
        rv->leader = m->from;
        rv->index = m->snapshot_index;
        rv->snap_term = m->snapshot_term;
    } else if (rv->complete) {
        return RAFT_OK; /* waits for its install; the reply comes then */
    } else if (m->offset != rv->offset) {
        reply.next_offset = rv->offset;
        return raft_send(r, &reply);
    }
    /* Rule 3: the bytes go to the caller with the next ready. */
    if (rv->buf_len == 0)
        rv->buf_offset = rv->offset;
    if (raft_snapshot_buffer(rv, m->data, m->len) != RAFT_OK)
        return RAFT_ENOMEM;
    rv->offset += m->len;
    if (m->done) {
        rv->complete = true;
        rv->buf_done = true;
        return RAFT_OK;
    }
    reply.next_offset = rv->offset; /* rule 4 */
    return raft_send(r, &reply);
}

/* Figure 13, receiver implementation, once the last chunk is durable:
 * 5. Save snapshot file, discard any existing or partial snapshot with a
 *    smaller index.
 * 6. If existing log entry has same index and term as snapshot's last
 *    included entry, retain log entries following it and reply.
 * 7. Discard the entire log.
 * 8. Reset state machine using snapshot contents.
 * The core changes its log and its commit and applied indexes now; the
 * caller does 5 and 8 with the next ready (snapshot_install), before the
 * reply leaves. */
static void raft_snapshot_install(struct raft *r)
{
    struct raft_snapshot_recv *rv = &r->snap_recv;
    uint64_t index = rv->index, term = rv->snap_term;
    struct raft_msg reply = {
        .type = RAFT_MSG_SNAPSHOT_REPLY,
        .from = r->cfg.id,
        .to = rv->leader,
        .term = r->current_term,
        .snapshot_index = index,
        .success = true,
    };
    raft_snapshot_forget(rv);
    if (index > r->commit_index) { /* else the log got there meanwhile */
        if (raft_term_at(r, index) != term) {
            /* Rule 7: nothing of the log is kept; storage drops entries
             * past the snapshot too. */
            raft_log_truncate(&r->log, index + 1);
            raft_unstable_from(r, index + 1);
        }
        /* Rule 6 (or 7, the log now ending at or before index). The
         * configuration it holds comes from the caller's file
         * (raft_set_snapshot_members); until then, what the log keeps. */
        raft_log_compact(&r->log, index, term, NULL, NULL);
        raft_members_refresh(r);
        if (r->stable_index < index)
            r->stable_index = index;
        if (r->persisted_index < index)
            r->persisted_index = index;
        r->commit_index = index;
        r->last_applied = index; /* rule 8, by the caller */
        r->install_pending = true;
        r->install = (struct raft_snapshot_install){.index = index, .term = term};
    }
    raft_send(r, &reply);
}

void raft_snapshot_ready(struct raft *r, struct raft_ready *rd)
{
    struct raft_snapshot_recv *rv = &r->snap_recv;
    if (r->install_pending)
        rd->snapshot_install = &r->install;
    if (rv->buf_len > 0 || rv->buf_done) {
        r->ready_chunk = (struct raft_snapshot_chunk){
            .index = rv->index,
            .term = rv->snap_term,
            .offset = rv->buf_offset,
            .data = rv->buf,
            .len = rv->buf_len,
            .done = rv->buf_done,
        };
        rd->snapshot_chunk = &r->ready_chunk;
    }
}

void raft_snapshot_advance(struct raft *r, const struct raft_ready *rd)
{
    if (rd->snapshot_install != NULL)
        r->install_pending = false;
    if (rd->snapshot_chunk != NULL) {
        r->snap_recv.buf_len = 0;
        r->snap_recv.buf_done = false;
        if (rd->snapshot_chunk->done)
            raft_snapshot_install(r);
    }
}

/* The chunks handed over may not be on disk: start the transfer again. A
 * pending install stays pending: the next ready asks for it again. */
void raft_snapshot_storage_failed(struct raft *r)
{
    raft_snapshot_forget(&r->snap_recv);
}

void raft_snapshot_free(struct raft *r)
{
    free(r->snap_recv.buf);
    r->snap_recv.buf = NULL;
}

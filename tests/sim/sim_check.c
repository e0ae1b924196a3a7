/* sim_check.c - the safety properties of the Raft paper (Figure 3), checked
 * after every event, plus the durability promises of Figure 2:
 *
 * - Election Safety: at most one leader can be elected in a given term.
 * - Leader Append-Only: a leader never overwrites or deletes entries in its
 *   log; it only appends new entries.
 * - Log Matching: if two logs contain an entry with the same index and term,
 *   then the logs are identical in all entries up through the given index.
 * - Leader Completeness: if a log entry is committed in a given term, then
 *   that entry will be present in the logs of the leaders for all
 *   higher-numbered terms.
 * - State Machine Safety: if a server has applied a log entry at a given
 *   index to its state machine, no other server will ever apply a different
 *   log entry for the same index.
 *
 * Messages keep the promises of Figure 2 ("updated on stable storage before
 * responding to RPCs"): a granted vote is on disk when it leaves, and an
 * acknowledgement of entries up to N in term T holds, after any crash, the
 * entries of term T's leader up to N (sim_check_sent). A node whose disk
 * failed (node->disk_error) promises nothing and does not lead until a
 * persist succeeds again.
 *
 * Snapshots (section 7): a state machine restored from a snapshot, at a
 * start or an install, must be the state of the committed entries up to
 * the snapshot's index, as one that applied them (State Machine Safety
 * across snapshots); entries a snapshot covers are checked through it.
 *
 * The checks are incremental: after an event only the node it touched has
 * changed, and only from the first log index that differs from what the
 * checker saw last time (its shadow of the log).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

bool sim_entry_equal(const struct raft_entry *a, const struct raft_entry *b)
{
    return a->term == b->term && a->type == b->type && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static const char *entry_type_name(uint8_t type)
{
    return type == RAFT_ENTRY_NOOP     ? "no-op"
           : type == RAFT_ENTRY_CONFIG ? "configuration"
                                       : "command";
}

/* FNV-1a: the shadow keeps a hash of each entry's data, not the data. */
static uint64_t data_hash(const struct raft_entry *e)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < e->len; i++)
        h = (h ^ e->data[i]) * 0x100000001b3ull;
    return h;
}

uint64_t sim_state_apply(uint64_t state, const struct raft_entry *e)
{
    uint64_t z = state ^ data_hash(e) ^ (e->term << 8) ^ e->type;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull; /* splitmix64's finalizer */
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A client command made by sim_propose: its id, or -1. */
static int64_t command_id(const struct raft_entry *e)
{
    if (e->type != RAFT_ENTRY_COMMAND || e->len < 12 || memcmp(e->data, "cmd:", 4) != 0)
        return -1;
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id |= (uint64_t)e->data[4 + i] << (8 * i);
    return (int64_t)(id & INT64_MAX);
}

void sim_note_command(struct sim *s, uint64_t id, uint64_t index, uint64_t term)
{
    if (id != s->n_commands)
        return;
    if (s->n_commands == s->cap_commands) {
        s->cap_commands = s->cap_commands ? s->cap_commands * 2 : 256;
        s->commands = sim_realloc(s->commands, s->cap_commands * sizeof(*s->commands));
    }
    s->commands[s->n_commands++] = (struct sim_command){.index = index, .term = term};
}

/* Record entry index as committed, or check it is what was committed there. */
static void record_committed(struct sim *s, struct sim_node *nd, uint64_t index,
                             const struct raft_entry *e)
{
    if (index <= s->n_committed) {
        struct sim_committed *c = &s->committed[index - 1];
        if (!sim_entry_equal(&c->e, e)) {
            sim_fail(s,
                     "state machine safety: node %u has a %s of term %" PRIu64 " at index %" PRIu64
                     ", where a %s of term %" PRIu64 " was committed",
                     nd->id, entry_type_name(e->type), e->term, index, entry_type_name(c->e.type),
                     c->e.term);
            return;
        }
        if (nd->r.current_term < c->term_seen)
            c->term_seen = nd->r.current_term;
        return;
    }
    if (index != s->n_committed + 1) {
        sim_fail(s, "checker: node %u commits %" PRIu64 " past the record's end %zu", nd->id, index,
                 s->n_committed);
        return;
    }
    if (s->n_committed == s->cap_committed) {
        s->cap_committed = s->cap_committed ? s->cap_committed * 2 : 256;
        s->committed = sim_realloc(s->committed, s->cap_committed * sizeof(*s->committed));
    }
    struct sim_committed *c = &s->committed[s->n_committed++];
    c->e = *e;
    c->e.index = index;
    c->e.data = NULL;
    if (e->len > 0) {
        c->e.data = sim_realloc(NULL, e->len);
        memcpy(c->e.data, e->data, e->len);
    }
    c->term_seen = nd->r.current_term;
    c->state = sim_state_apply(index > 1 ? s->committed[index - 2].state : 0, e);

    int64_t id = command_id(e);
    if (id < 0)
        return;
    if ((uint64_t)id >= s->n_commands) {
        sim_fail(s, "node %u: committed command #%" PRId64 " at %" PRIu64 " was never proposed",
                 nd->id, id, index);
        return;
    }
    struct sim_command *cmd = &s->commands[id];
    if (cmd->index != index || cmd->term != e->term || cmd->committed_at != 0)
        sim_fail(s,
                 "command #%" PRId64 " committed at %" PRIu64 "/%" PRIu64
                 ", but it was proposed at %" PRIu64 "/%" PRIu64,
                 id, index, e->term, cmd->index, cmd->term);
    cmd->committed_at = index;
}

/* Election Safety, and the leader's own vote must be on its disk. */
static void note_leader(struct sim *s, struct sim_node *nd)
{
    uint64_t term = nd->r.current_term;
    if (term >= s->n_leader_of_term) {
        size_t n = term + 64;
        s->leader_of_term = sim_realloc(s->leader_of_term, n * sizeof(*s->leader_of_term));
        memset(s->leader_of_term + s->n_leader_of_term, 0,
               (n - s->n_leader_of_term) * sizeof(*s->leader_of_term));
        s->n_leader_of_term = n;
    }
    uint32_t *leader = &s->leader_of_term[term];
    if (*leader == RAFT_NONE)
        *leader = nd->id;
    else if (*leader != nd->id)
        sim_fail(s, "election safety: term %" PRIu64 " has two leaders, %u and %u", term, *leader,
                 nd->id);
    if (nd->disk.term != term || nd->disk.vote != nd->id)
        sim_fail(s, "node %u leads term %" PRIu64 " but its disk says term %" PRIu64 ", vote %u",
                 nd->id, term, nd->disk.term, nd->disk.vote);
}

/* Leader Completeness for one leader, from where it was last verified. An
 * entry first seen committed by a node in term T was committed in a term no
 * later than T, so every leader of term T or later must hold it; a deposed
 * leader still in an older term need not. */
static void check_complete(struct sim *s, struct sim_node *ld)
{
    const struct raft *r = &ld->r;
    for (uint64_t k = ld->complete_upto + 1; k <= s->n_committed && !s->failed; k++) {
        const struct sim_committed *c = &s->committed[k - 1];
        /* Entries its snapshot covers: its snapshot state was checked. */
        if (c->term_seen <= r->current_term && k >= r->log.snapshot_index) {
            const struct raft_entry *e = raft_entry_at(r, k);
            if (k > raft_last_index(r))
                sim_fail(s,
                         "leader completeness: leader %u of term %" PRIu64
                         " lacks committed entry %" PRIu64,
                         ld->id, r->current_term, k);
            else if (e == NULL ? raft_term_at(r, k) != c->e.term : !sim_entry_equal(e, &c->e))
                sim_fail(s,
                         "leader completeness: leader %u of term %" PRIu64 " has term %" PRIu64
                         " at committed index %" PRIu64 ", committed was term %" PRIu64,
                         ld->id, r->current_term, raft_term_at(r, k), k, c->e.term);
        }
        ld->complete_upto = k;
    }
}

/* Log Matching between a (changed from index first) and b. Checking that an
 * equal term at k means equal entries at k and an equal term at k - 1 is
 * enough: by induction the logs agree up through k. */
static void check_matching(struct sim *s, const struct sim_node *a, const struct sim_node *b,
                           uint64_t first)
{
    const struct raft *ra = &a->r, *rb = &b->r;
    uint64_t common =
        raft_last_index(ra) < raft_last_index(rb) ? raft_last_index(ra) : raft_last_index(rb);
    /* Only entries both still hold. */
    if (first <= ra->log.snapshot_index)
        first = ra->log.snapshot_index + 1;
    if (first <= rb->log.snapshot_index)
        first = rb->log.snapshot_index + 1;
    for (uint64_t k = first; k <= common; k++) {
        const struct raft_entry *ea = raft_entry_at(ra, k), *eb = raft_entry_at(rb, k);
        if (ea->term != eb->term)
            continue;
        if (!sim_entry_equal(ea, eb)) {
            sim_fail(s,
                     "log matching: nodes %u and %u hold different entries of term %" PRIu64
                     " at index %" PRIu64,
                     a->id, b->id, ea->term, k);
            return;
        }
        uint64_t ta = raft_term_at(ra, k - 1), tb = raft_term_at(rb, k - 1);
        if (k > 1 && ta != tb) {
            sim_fail(s,
                     "log matching: nodes %u and %u agree on term %" PRIu64 " at index %" PRIu64
                     " but not at %" PRIu64 " (%" PRIu64 " vs %" PRIu64 ")",
                     a->id, b->id, ea->term, k, k - 1, ta, tb);
            return;
        }
    }
}

/* Shadow position i is index i + 1; an entry compacted away did not change. */
static bool shadow_differs(const struct sim_node *nd, size_t i)
{
    const struct raft_entry *e = raft_entry_at(&nd->r, i + 1);
    const struct sim_shadow *sh = &nd->shadow[i];
    if (e == NULL)
        return false;
    if (e->term != sh->term || e->len != sh->len || e->type != sh->type)
        return true;
    return e->data != sh->data && data_hash(e) != sh->hash;
}

/* The first index where the log differs from the shadow (a changed or
 * removed entry), or one past the shadow when it only grew. A log changes by
 * truncating and appending, so the quick way looks back from the end over
 * the changed suffix only; every FULL_SCAN_EVERY checks of a node the whole
 * log is compared, so a change in the middle cannot go unseen for long. */
#define FULL_SCAN_EVERY 64

static uint64_t first_change(struct sim_node *nd)
{
    size_t len = raft_last_index(&nd->r);
    size_t common = len < nd->shadow_len ? len : nd->shadow_len;
    if (++nd->checks % FULL_SCAN_EVERY == 0) {
        for (size_t i = 0; i < common; i++)
            if (shadow_differs(nd, i))
                return i + 1;
        return common + 1;
    }
    size_t i = common;
    while (i > 0 && shadow_differs(nd, i - 1))
        i--;
    return i + 1;
}

static void trace_changes(struct sim *s, struct sim_node *nd)
{
    const struct raft *r = &nd->r;
    if (r->role != nd->seen_role || r->current_term != nd->seen_term) {
        if (r->role == RAFT_LEADER) {
            char votes[64] = "";
            size_t used = 0;
            for (uint32_t id = 1; id <= s->n && used + 4 < sizeof(votes); id++)
                if (r->votes & (1u << id))
                    used += (size_t)snprintf(votes + used, sizeof(votes) - used, "%s%u",
                                             used ? "," : "", id);
            sim_trace(s, nd->id, "term %" PRIu64 " %s -> Leader (votes from %s)", r->current_term,
                      raft_role_name(nd->seen_role), votes);
        } else if (r->role != nd->seen_role) {
            sim_trace(s, nd->id, "term %" PRIu64 " %s -> %s", r->current_term,
                      raft_role_name(nd->seen_role), raft_role_name(r->role));
        } else {
            sim_trace(s, nd->id, "term %" PRIu64 " (was %" PRIu64 ") %s", r->current_term,
                      nd->seen_term, raft_role_name(r->role));
        }
    }
    if (r->commit_index != nd->seen_commit)
        sim_trace(s, nd->id, "commit %" PRIu64 " (log %" PRIu64 ")", r->commit_index,
                  raft_last_index(r));
}

void sim_check_node(struct sim *s, struct sim_node *nd)
{
    if (!nd->up || s->failed)
        return;
    const struct raft *r = &nd->r;
    if (s->verbose)
        trace_changes(s, nd);

    /* Figure 2: currentTerm "increases monotonically". */
    if (r->current_term < nd->seen_term) {
        sim_fail(s, "node %u: term went back from %" PRIu64 " to %" PRIu64, nd->id, nd->seen_term,
                 r->current_term);
        return;
    }
    bool same_leader =
        nd->seen_role == RAFT_LEADER && r->role == RAFT_LEADER && nd->seen_term == r->current_term;

    uint64_t first = first_change(nd);
    if (same_leader && first <= nd->shadow_len) {
        sim_fail(s, "leader append-only: leader %u of term %" PRIu64 " changed its entry %" PRIu64,
                 nd->id, r->current_term, first);
        return;
    }
    uint64_t last = raft_last_index(r), base = r->log.snapshot_index;
    for (uint64_t k = first > base ? first : base + 1; k <= last; k++) {
        const struct raft_entry *e = raft_entry_at(r, k);
        if (e->index != k || e->term > r->current_term || e->term == 0 ||
            e->term < raft_term_at(r, k - 1) || e->type > RAFT_ENTRY_CONFIG ||
            (e->len > 0 && e->data == NULL)) {
            sim_fail(s,
                     "node %u: bad log entry at position %" PRIu64 ": index %" PRIu64
                     ", term %" PRIu64 " (current term %" PRIu64 "), type %u",
                     nd->id, k, e->index, e->term, r->current_term, e->type);
            return;
        }
    }

    /* Commit index: never back, never past the log, applied behind it; every
     * committed entry agrees with the global record. */
    if (r->commit_index < nd->seen_commit) {
        sim_fail(s, "node %u: commit index went back from %" PRIu64 " to %" PRIu64, nd->id,
                 nd->seen_commit, r->commit_index);
        return;
    }
    if (r->commit_index > last || r->last_applied > r->commit_index || r->commit_index < base ||
        base > s->n_committed) {
        sim_fail(s,
                 "node %u: commit %" PRIu64 ", applied %" PRIu64 ", snapshot %" PRIu64
                 ", log %" PRIu64 ", %zu committed anywhere",
                 nd->id, r->commit_index, r->last_applied, base, last, s->n_committed);
        return;
    }
    if (base > 0 && s->committed[base - 1].e.term != r->log.snapshot_term) {
        sim_fail(s,
                 "node %u: snapshot ends at %" PRIu64 " of term %" PRIu64
                 ", the entry committed there is of term %" PRIu64,
                 nd->id, base, r->log.snapshot_term, s->committed[base - 1].e.term);
        return;
    }
    uint64_t from = first < nd->seen_commit + 1 ? first : nd->seen_commit + 1;
    if (from <= base)
        from = base + 1;
    for (uint64_t k = from; k <= r->commit_index && !s->failed; k++)
        record_committed(s, nd, k, raft_entry_at(r, k));
    nd->seen_commit = r->commit_index;

    for (size_t i = 0; i < s->n && !s->failed; i++) {
        const struct sim_node *other = &s->nodes[i];
        if (other != nd && other->up)
            check_matching(s, nd, other, first);
    }

    if (last > nd->shadow_cap) {
        nd->shadow_cap = last * 2;
        nd->shadow = sim_realloc(nd->shadow, nd->shadow_cap * sizeof(*nd->shadow));
    }
    for (uint64_t k = first > base ? first : base + 1; k <= last; k++) {
        const struct raft_entry *e = raft_entry_at(r, k);
        nd->shadow[k - 1] = (struct sim_shadow){
            .term = e->term, .data = e->data, .hash = data_hash(e), .len = e->len, .type = e->type};
    }
    nd->shadow_len = last;

    if (r->role == RAFT_LEADER && !same_leader)
        nd->complete_upto = 0;
    else if (first - 1 < nd->complete_upto)
        nd->complete_upto = first - 1;
    if (r->role == RAFT_LEADER && nd->disk_error) {
        sim_fail(s, "node %u leads term %" PRIu64 " while its disk is failing", nd->id,
                 r->current_term);
        return;
    }
    if (r->role == RAFT_LEADER)
        note_leader(s, nd);
    nd->seen_role = r->role;
    nd->seen_term = r->current_term;

    for (size_t i = 0; i < s->n && !s->failed; i++)
        if (s->nodes[i].up && s->nodes[i].r.role == RAFT_LEADER)
            check_complete(s, &s->nodes[i]);
}

/* After raft_restore: the core holds exactly what the disk held. */
void sim_check_restored(struct sim *s, struct sim_node *nd)
{
    const struct raft *r = &nd->r;
    const struct sim_disk *d = &nd->disk;
    /* The log past the snapshot, unless it does not hold the snapshot's
     * last entry (it was being replaced: raft.h, raft_restore). */
    uint64_t last = d->snap_index;
    const struct raft_entry *at = sim_disk_entry(d, d->snap_index);
    if (d->base >= d->snap_index || (at != NULL && at->term == d->snap_term))
        last = sim_disk_last(d) > d->snap_index ? sim_disk_last(d) : d->snap_index;
    if (r->current_term != d->term || r->voted_for != d->vote || raft_last_index(r) != last ||
        r->log.snapshot_index != d->snap_index || r->log.snapshot_term != d->snap_term ||
        r->role != RAFT_FOLLOWER || r->commit_index != d->snap_index ||
        r->last_applied != d->snap_index) {
        sim_fail(s,
                 "node %u restarted as a %s with term %" PRIu64 ", vote %u, snapshot %" PRIu64
                 ", log to %" PRIu64 ", commit %" PRIu64 "; disk: term %" PRIu64
                 ", vote %u, snapshot %" PRIu64 ", log to %" PRIu64,
                 nd->id, raft_role_name(r->role), r->current_term, r->voted_for,
                 r->log.snapshot_index, raft_last_index(r), r->commit_index, d->term, d->vote,
                 d->snap_index, sim_disk_last(d));
        return;
    }
    for (uint64_t k = d->snap_index + 1; k <= last; k++) {
        if (!sim_entry_equal(raft_entry_at(r, k), sim_disk_entry(d, k))) {
            sim_fail(s, "node %u restored entry %" PRIu64 " differs from its disk", nd->id, k);
            return;
        }
    }
}

/* Before a ready is written: terms only go up on disk, one durable vote per
 * term, entries appended right after what remains. */
void sim_check_persist(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    struct sim_disk *d = &nd->disk;
    if (rd->hard_state_changed) {
        if (rd->term < d->term) {
            sim_fail(s, "node %u: persisted term goes back from %" PRIu64 " to %" PRIu64, nd->id,
                     d->term, rd->term);
            return;
        }
        uint32_t vote = rd->term < d->n_vote_of_term ? d->vote_of_term[rd->term] : RAFT_NONE;
        if (rd->voted_for != RAFT_NONE && vote != RAFT_NONE && vote != rd->voted_for) {
            sim_fail(s, "node %u voted twice in term %" PRIu64 ": for %u and for %u", nd->id,
                     rd->term, vote, rd->voted_for);
            return;
        }
    }
    /* The node appends only the entries past its log's end (after a failed
     * attempt the log may hold some already): those it skips must be the
     * ones it holds, and none may be missing in between. */
    uint64_t kept = sim_disk_last(d) > d->snap_index ? sim_disk_last(d) : d->snap_index;
    if (rd->truncate_from != 0 && rd->truncate_from - 1 < kept)
        kept = rd->truncate_from - 1;
    if (rd->snapshot_install != NULL && kept < rd->snapshot_install->index)
        kept = rd->snapshot_install->index;
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        uint64_t first = rd->entries[0].index;
        if (first == 0 || first > kept + 1 || e->index != first + i) {
            sim_fail(s,
                     "node %u: ready appends index %" PRIu64 " after %" PRIu64
                     " stored entries (truncate_from %" PRIu64 ")",
                     nd->id, e->index, kept, rd->truncate_from);
            return;
        }
        const struct raft_entry *on_disk = sim_disk_entry(d, e->index);
        if (e->index <= kept && on_disk != NULL && !sim_entry_equal(e, on_disk)) {
            sim_fail(s,
                     "node %u: ready writes index %" PRIu64 " of term %" PRIu64
                     ", the disk keeps term %" PRIu64 " there and no truncation comes first",
                     nd->id, e->index, e->term, on_disk->term);
            return;
        }
    }
}

/* Remember the leader's log when it sends its first AppendEntries of its
 * term: only AppendEntries carry entries, and only the leader of the term
 * sends them, so every entry acknowledged in that term came from this log. */
static void record_leader_log(struct sim *s, const struct sim_node *ld)
{
    const struct raft *r = &ld->r;
    uint64_t term = r->current_term;
    if (term >= s->n_leader_logs) {
        size_t n = term + 64;
        s->leader_logs = sim_realloc(s->leader_logs, n * sizeof(*s->leader_logs));
        memset(s->leader_logs + s->n_leader_logs, 0,
               (n - s->n_leader_logs) * sizeof(*s->leader_logs));
        s->n_leader_logs = n;
    }
    struct sim_leader_log *ll = &s->leader_logs[term];
    if (ll->n > 0)
        return;
    size_t runs = 0;
    /* Entries its snapshot covers are committed: they need no record. */
    uint64_t first = r->log.snapshot_index + 1, last = raft_last_index(r);
    for (uint64_t k = first; k <= last; k++)
        if (k == first || raft_term_at(r, k) != raft_term_at(r, k - 1))
            runs++;
    if (runs == 0)
        return; /* all in its snapshot: recorded at a later send, if any */
    ll->first = sim_realloc(NULL, runs * sizeof(*ll->first));
    ll->term = sim_realloc(NULL, runs * sizeof(*ll->term));
    for (uint64_t k = first; k <= last; k++) {
        if (k == first || raft_term_at(r, k) != raft_term_at(r, k - 1)) {
            ll->first[ll->n] = k;
            ll->term[ll->n] = raft_term_at(r, k);
            ll->n++;
        }
    }
}

/* The term of entry index in the log of term's leader; 0 when unknown (a
 * hand-made AppendEntries of a scenario). */
static uint64_t leader_term_at(const struct sim *s, uint64_t term, uint64_t index)
{
    if (term >= s->n_leader_logs)
        return 0;
    const struct sim_leader_log *ll = &s->leader_logs[term];
    for (size_t i = ll->n; i > 0; i--)
        if (ll->first[i - 1] <= index)
            return ll->term[i - 1];
    return 0;
}

/* "success, match N" in term T tells the leader of T that this node holds
 * its entries up to N: they must survive any crash (be synced), and the
 * durable entry at N must be the one that leader has there (then, by Log
 * Matching, the logs agree up through N); when the leader is unknown (a
 * hand-made message), at least not one of a later term. */
static void check_ack(struct sim *s, const struct sim_node *nd, const struct raft_msg *m)
{
    const struct sim_disk *d = &nd->disk;
    uint64_t n = m->match_index;
    if (n == 0 || n <= d->snap_index) /* in its snapshot: committed, durable */
        return;
    uint64_t want = leader_term_at(s, m->term, n);
    uint64_t have = n <= d->base + d->synced ? sim_disk_entry(d, n)->term : 0;
    if (want != 0 ? have == want : have != 0 && have <= m->term)
        return;
    if (have == 0)
        sim_fail(s,
                 "node %u acknowledged entries up to %" PRIu64 " in term %" PRIu64
                 " before persisting them (%zu on disk, %zu synced)",
                 nd->id, n, m->term, d->len, d->synced);
    else if (want != 0)
        sim_fail(s,
                 "node %u acknowledged entries up to %" PRIu64 " in term %" PRIu64
                 " (the leader's entry %" PRIu64 " is of term %" PRIu64
                 "), but its disk holds term %" PRIu64 " there",
                 nd->id, n, m->term, n, want, have);
    else
        sim_fail(s,
                 "node %u acknowledged entries up to %" PRIu64 " in term %" PRIu64
                 ", but its disk holds term %" PRIu64 " there",
                 nd->id, n, m->term, have);
}

/* Every message: from its sender, to a member, and whatever it promises is
 * already durable on the sender's disk. */
void sim_check_sent(struct sim *s, struct sim_node *nd, const struct raft_msg *m)
{
    const struct raft *r = &nd->r;
    const struct sim_disk *d = &nd->disk;
    if (m->from != nd->id || m->to == nd->id || sim_node_by_id(s, m->to) == NULL) {
        sim_fail(s, "node %u sent a %s from %u to %u", nd->id, sim_msg_name(m->type), m->from,
                 m->to);
        return;
    }
    /* Pre-Vote (9.6) asks about the next term without being in it (the
     * node may have moved on by the time the question leaves: it was asked
     * in an earlier term); a granted pre-vote answers in the asker's term.
     * Neither promises anything that must be on disk. */
    if (m->type == RAFT_MSG_PREVOTE) {
        if (m->term > r->current_term + 1)
            sim_fail(s, "node %u sent a PreVote of term %" PRIu64 " as a %s of term %" PRIu64,
                     nd->id, m->term, raft_role_name(r->role), r->current_term);
        return;
    }
    if (m->type == RAFT_MSG_PREVOTE_REPLY && m->granted)
        return;
    if (m->term > r->current_term || m->term > d->term) {
        sim_fail(s,
                 "node %u sent a %s of term %" PRIu64 " (current %" PRIu64 ", on disk %" PRIu64 ")",
                 nd->id, sim_msg_name(m->type), m->term, r->current_term, d->term);
        return;
    }
    if (nd->disk_error && ((m->type == RAFT_MSG_VOTE_REPLY && m->granted) ||
                           (m->type == RAFT_MSG_APPEND_REPLY && m->success) ||
                           (m->type == RAFT_MSG_SNAPSHOT_REPLY && m->success))) {
        sim_fail(s, "node %u %s to %u in term %" PRIu64 " while its disk is failing", nd->id,
                 m->type == RAFT_MSG_VOTE_REPLY ? "granted its vote" : "acknowledged entries",
                 m->to, m->term);
        return;
    }
    switch (m->type) {
    case RAFT_MSG_VOTE:
        if (d->term != m->term || d->vote != nd->id)
            sim_fail(s,
                     "node %u asked for votes in term %" PRIu64
                     " before persisting its own vote (disk: term %" PRIu64 ", vote %u)",
                     nd->id, m->term, d->term, d->vote);
        break;
    case RAFT_MSG_VOTE_REPLY:
        if (m->granted && (d->term != m->term || d->vote != m->to))
            sim_fail(s,
                     "node %u granted its vote to %u in term %" PRIu64
                     " before persisting it (disk: term %" PRIu64 ", vote %u)",
                     nd->id, m->to, m->term, d->term, d->vote);
        break;
    case RAFT_MSG_APPEND:
        if (r->role != RAFT_LEADER || m->term != r->current_term) {
            sim_fail(s, "node %u sent AppendEntries of term %" PRIu64 " as a %s of term %" PRIu64,
                     nd->id, m->term, raft_role_name(r->role), r->current_term);
            break;
        }
        record_leader_log(s, nd);
        if (m->n_entries > RAFT_MAX_BATCH_ENTRIES || (m->prev_index == 0) != (m->prev_term == 0)) {
            sim_fail(s, "node %u: AppendEntries with %zu entries after %" PRIu64 "/%" PRIu64,
                     nd->id, m->n_entries, m->prev_index, m->prev_term);
            break;
        }
        for (size_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            uint64_t before = i == 0 ? m->prev_term : m->entries[i - 1].term;
            if (e->index != m->prev_index + 1 + i || e->term > m->term || e->term < before) {
                sim_fail(s,
                         "node %u: AppendEntries after %" PRIu64 " carries index %" PRIu64
                         " term %" PRIu64 " at position %zu",
                         nd->id, m->prev_index, e->index, e->term, i);
                break;
            }
        }
        break;
    case RAFT_MSG_APPEND_REPLY:
        if (m->success)
            check_ack(s, nd, m);
        break;
    case RAFT_MSG_SNAPSHOT: {
        /* Only the leader sends it, of a snapshot file its disk has, with
         * the bytes of that file (attached by sim_cluster.c). */
        uint64_t term = 0;
        size_t size = 0;
        const uint8_t *file = sim_disk_snapshot(d, m->snapshot_index, &term, &size);
        if (r->role != RAFT_LEADER || m->term != r->current_term || file == NULL ||
            m->snapshot_term != term || m->offset + m->len > size ||
            m->done != (m->offset + m->len == size) ||
            (m->len > 0 && memcmp(m->data, file + m->offset, m->len) != 0))
            sim_fail(s,
                     "node %u (a %s of term %" PRIu64 ") sent InstallSnapshot of term %" PRIu64
                     ", snapshot %" PRIu64 "/%" PRIu64 ", offset %" PRIu64 ", %u bytes; its disk "
                     "has %s file of %zu bytes",
                     nd->id, raft_role_name(r->role), r->current_term, m->term, m->snapshot_index,
                     m->snapshot_term, m->offset, m->len, file ? "a" : "no such", size);
        break;
    }
    case RAFT_MSG_SNAPSHOT_REPLY:
        /* "Installed" promises every entry up to snapshot_index, durably:
         * in its snapshot, or in its synced log as committed. */
        if (m->success) {
            uint64_t k = m->snapshot_index;
            const struct raft_entry *e = sim_disk_entry(d, k);
            bool in_log = e != NULL && k <= d->base + d->synced && k <= s->n_committed &&
                          e->term == s->committed[k - 1].e.term;
            if (k > d->snap_index && !in_log)
                sim_fail(s,
                         "node %u said it installed snapshot %" PRIu64 " but its disk has "
                         "snapshot %" PRIu64 " and the log to %" PRIu64 " (%zu synced)",
                         nd->id, k, d->snap_index, sim_disk_last(d), d->synced);
        }
        break;
    case RAFT_MSG_PREVOTE_REPLY: /* a refusal: our term, nothing promised */
        break;
    case RAFT_MSG_TIMEOUT_NOW: {
        /* Dissertation 3.10: only a leader, and only to a target whose log
         * holds all of the leader's. */
        int slot = raft_node_slot(r, m->to);
        if (r->role != RAFT_LEADER || m->term != r->current_term || slot < 0 ||
            r->progress[slot].match < raft_last_index(r))
            sim_fail(s,
                     "node %u sent TimeoutNow to %u in term %" PRIu64 " as a %s (its match %" PRIu64
                     ", last %" PRIu64 ")",
                     nd->id, m->to, m->term, raft_role_name(r->role),
                     slot < 0 ? 0 : r->progress[slot].match, raft_last_index(r));
        break;
    }
    default:
        sim_fail(s, "node %u sent a message of unknown type %d", nd->id, (int)m->type);
    }
}

/* State Machine Safety: entries applied in order, only once committed, and
 * each the entry committed at its index. */
void sim_check_apply(struct sim *s, struct sim_node *nd, uint64_t index, const struct raft_entry *e)
{
    if (index != nd->applied + 1 || index > nd->r.commit_index || e == NULL) {
        sim_fail(s,
                 "node %u applies index %" PRIu64 " (applied %" PRIu64 ", commit %" PRIu64
                 ", entry %s)",
                 nd->id, index, nd->applied, nd->r.commit_index, e ? "present" : "missing");
        return;
    }
    record_committed(s, nd, index, e);
    nd->applied = index;
    nd->sm_state = sim_state_apply(nd->sm_state, e);
    if (!s->failed && nd->sm_state != s->committed[index - 1].state)
        sim_fail(s, "state machine safety: node %u's state after applying %" PRIu64 " differs",
                 nd->id, index);
}

void sim_check_snapshot_state(struct sim *s, struct sim_node *nd, uint64_t index, uint64_t state,
                              const char *how)
{
    if (index == 0)
        return;
    if (index > s->n_committed)
        sim_fail(s, "node %u %s a snapshot at %" PRIu64 ", past the %zu entries ever committed",
                 nd->id, how, index, s->n_committed);
    else if (s->committed[index - 1].state != state)
        sim_fail(s,
                 "state machine safety: node %u %s a snapshot at %" PRIu64
                 " whose state is not that of the committed entries up to it",
                 nd->id, how, index);
}

/* ReadIndex: an ok read has been applied up to its index, and that index
 * covers everything committed anywhere before the read was asked. */
void sim_check_read(struct sim *s, struct sim_node *nd, const struct raft_read_result *res)
{
    if (res->read_id == 0 || res->read_id > s->n_reads) {
        sim_fail(s, "node %u answered read #%" PRIu64 ", which nobody asked", nd->id, res->read_id);
        return;
    }
    struct sim_read *rd = &s->reads[res->read_id - 1];
    if (rd->failed_by_node && rd->node == nd->id && rd->life == nd->life)
        return; /* the node answered it already, as pending_on_read ignores it */
    if (rd->node != nd->id || rd->life != nd->life || rd->answered) {
        sim_fail(s, "node %u answered read #%" PRIu64 " (asked of node %u, answered %s)", nd->id,
                 res->read_id, rd->node, rd->answered ? "already" : "not yet");
        return;
    }
    rd->answered = true;
    rd->ok = res->ok;
    rd->index = res->index;
    if (!res->ok)
        return;
    if (res->index < rd->must_cover)
        sim_fail(s,
                 "linearizability: read #%" PRIu64 " on node %u served at index %" PRIu64
                 ", but %" PRIu64 " was committed before it was asked",
                 res->read_id, nd->id, res->index, rd->must_cover);
    else if (nd->applied < res->index)
        sim_fail(s,
                 "read #%" PRIu64 " on node %u is ready at index %" PRIu64 " but only %" PRIu64
                 " is applied",
                 res->read_id, nd->id, res->index, nd->applied);
}

/* Everything again, from scratch: for the end of a run. */
void sim_check_full(struct sim *s)
{
    for (size_t i = 0; i < s->n && !s->failed; i++) {
        struct sim_node *a = &s->nodes[i];
        if (!a->up)
            continue;
        const struct raft *r = &a->r;
        for (size_t j = i + 1; j < s->n && !s->failed; j++)
            if (s->nodes[j].up)
                check_matching(s, a, &s->nodes[j], 1);
        uint64_t last = raft_last_index(r), base = r->log.snapshot_index;
        /* (A node whose disk still fails holds more in memory: one removed
         * from the cluster need not have recovered by the end. A log that
         * ends at or below the snapshot is dead, all of it: raft_restore
         * skipped it, and the next append drops it.) */
        if (!a->disk_error && sim_disk_last(&a->disk) != last &&
            !(last == base && sim_disk_last(&a->disk) <= base)) {
            sim_fail(s, "node %u: log to %" PRIu64 " in memory, to %" PRIu64 " on disk", a->id,
                     last, sim_disk_last(&a->disk));
            break;
        }
        for (uint64_t k = base + 1; k <= last && !s->failed && !a->disk_error; k++)
            if (sim_disk_entry(&a->disk, k) == NULL ||
                !sim_entry_equal(raft_entry_at(r, k), sim_disk_entry(&a->disk, k)))
                sim_fail(s, "node %u: entry %" PRIu64 " in memory differs from its disk", a->id, k);
        for (uint64_t k = base + 1; k <= r->commit_index && !s->failed; k++)
            record_committed(s, a, k, raft_entry_at(r, k));
        if (r->role == RAFT_LEADER) {
            a->complete_upto = 0;
            check_complete(s, a);
        }
    }
    /* A read is answered unless its node crashed or still leads that term. */
    for (size_t i = 0; i < s->n_reads && !s->failed; i++) {
        const struct sim_read *rd = &s->reads[i];
        const struct sim_node *nd = sim_node_by_id(s, rd->node);
        if (rd->answered || !nd->up || nd->life != rd->life)
            continue;
        if (nd->r.role != RAFT_LEADER || nd->r.current_term != rd->term)
            sim_fail(
                s, "read #%zu on node %u was never answered after it stopped leading term %" PRIu64,
                i + 1, rd->node, rd->term);
    }
}

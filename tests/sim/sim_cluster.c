/* sim_cluster.c - the simulated nodes and how they are driven: as the real
 * node (node/loop.c) drives its core. A turn: a tick, then a batch of the
 * messages waiting in the node's inbox (and the client requests of that
 * moment), then while the core has a ready: persist, send, apply, serve
 * reads, advance. While the disk writes the node is busy and messages pile
 * up for the next turn, so one ready answers many messages. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void *sim_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL) {
        fprintf(stderr, "raftkv-sim: out of memory\n");
        exit(2);
    }
    return q;
}

void sim_init(struct sim *s, size_t n, uint64_t seed, const struct sim_params *p, bool verbose)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    s->p = *p;
    if (s->p.disk_retry_ms == 0)
        s->p.disk_retry_ms = 1000;
    s->verbose = verbose;
    sim_rng_seed(&s->rng, seed);
    s->net.max_delay_ms = 1;
    s->work_limit = 20000000;
    for (size_t i = 0; i < n; i++) {
        s->nodes[i].id = (uint32_t)i + 1;
        s->nodes[i].slot = i;
        s->nodes[i].clock_rate = 1.0;
        if (s->p.clock_drift > 0) /* in steps of a thousandth */
            s->nodes[i].clock_rate += (double)((int64_t)sim_rng_range(&s->rng, 0, 2000) - 1000) /
                                      1000.0 * s->p.clock_drift;
    }
}

/* ------------------------------------------------------------ snapshots */

/* A snapshot file: "snap", then index, term and the state machine (8 bytes
 * each, little endian), then filler drawn from the state, so that a file
 * takes several of the sim's small chunks. */
#define SNAPSHOT_HEADER 28
#define SNAPSHOT_MEMBERS_MAX (2 + RAFT_MAX_NODES * 6)
#define SNAPSHOT_MAX (SNAPSHOT_HEADER + 72 + 2 + SNAPSHOT_MEMBERS_MAX)

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A snapshot file: a header, filler standing for the state machine's
 * bytes, then the configuration as of index (as the node's file holds it).
 * The sim's members carry no addresses. */
static size_t snapshot_make(uint64_t index, uint64_t term, uint64_t state,
                            const struct raft_members *members, uint8_t *buf)
{
    memcpy(buf, "snap", 4);
    put_u64(buf + 4, index);
    put_u64(buf + 12, term);
    put_u64(buf + 20, state);
    size_t filler = 8 + (size_t)(state % 64);
    for (size_t i = 0; i < filler; i++)
        buf[SNAPSHOT_HEADER + i] = (uint8_t)(state >> (i % 8 * 8)) ^ (uint8_t)i;
    size_t at = SNAPSHOT_HEADER + filler;
    uint8_t *data;
    uint32_t len;
    if (raft_members_encode(members, &data, &len) != 0 || len > SNAPSHOT_MEMBERS_MAX) {
        fprintf(stderr, "raftkv-sim: cannot encode a configuration\n");
        exit(2);
    }
    buf[at] = (uint8_t)len;
    memcpy(buf + at + 1, data, len);
    free(data);
    return at + 1 + len;
}

static bool snapshot_parse(const uint8_t *buf, size_t len, uint64_t *index, uint64_t *term,
                           uint64_t *state, struct raft_members *members)
{
    if (len < SNAPSHOT_HEADER || memcmp(buf, "snap", 4) != 0)
        return false;
    *index = get_u64(buf + 4);
    *term = get_u64(buf + 12);
    *state = get_u64(buf + 20);
    size_t at = SNAPSHOT_HEADER + 8 + (size_t)(*state % 64);
    if (at + 1 > len || at + 1 + buf[at] != len ||
        raft_members_decode(buf + at + 1, buf[at], members) != 0)
        return false;
    uint8_t again[SNAPSHOT_MAX];
    return snapshot_make(*index, *term, *state, members, again) == len &&
           memcmp(again, buf, len) == 0;
}

static void recv_clear(struct sim_node *nd)
{
    nd->recv_len = 0;
    nd->recv_index = nd->recv_term = 0;
    nd->recv_done = false;
}

static void inbox_clear(struct sim_node *nd)
{
    for (size_t i = 0; i < nd->inbox_len; i++)
        sim_packet_free(&nd->inbox[i]);
    nd->inbox_len = 0;
}

void sim_free(struct sim *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->up)
            raft_close(&nd->r);
        nd->up = false;
        sim_disk_free(&nd->disk);
        inbox_clear(nd);
        free(nd->inbox);
        nd->inbox = NULL;
        free(nd->shadow);
        nd->shadow = NULL;
        free(nd->recv);
        nd->recv = NULL;
        free(nd->held);
        nd->held = NULL;
        free(nd->held_seq);
        nd->held_seq = NULL;
    }
    sim_net_free(s);
    for (size_t i = 0; i < s->n_committed; i++)
        free(s->committed[i].e.data);
    free(s->committed);
    free(s->reads);
    free(s->lease_retry);
    free(s->commands);
    free(s->leader_of_term);
    for (size_t i = 0; i < s->n_leader_logs; i++) {
        free(s->leader_logs[i].first);
        free(s->leader_logs[i].term);
    }
    free(s->leader_logs);
    s->leader_logs = NULL;
    s->committed = NULL;
    s->reads = NULL;
    s->commands = NULL;
    s->leader_of_term = NULL;
}

void sim_fail(struct sim *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    int n = snprintf(s->failure, sizeof(s->failure), "at %" PRIu64 " ms: ", s->now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure + n, sizeof(s->failure) - (size_t)n, fmt, ap);
    va_end(ap);
    if (s->verbose)
        printf("FAIL %s\n", s->failure);
}

void sim_trace(struct sim *s, uint32_t id, const char *fmt, ...)
{
    if (!s->verbose)
        return;
    if (id == RAFT_NONE)
        printf("%8" PRIu64 " ms  --  ", s->now);
    else
        printf("%8" PRIu64 " ms  n%u  ", s->now, id);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

const char *sim_msg_name(enum raft_msg_type type)
{
    switch (type) {
    case RAFT_MSG_VOTE:
        return "RequestVote";
    case RAFT_MSG_VOTE_REPLY:
        return "RequestVote reply";
    case RAFT_MSG_APPEND:
        return "AppendEntries";
    case RAFT_MSG_APPEND_REPLY:
        return "AppendEntries reply";
    case RAFT_MSG_SNAPSHOT:
        return "InstallSnapshot";
    case RAFT_MSG_SNAPSHOT_REPLY:
        return "InstallSnapshot reply";
    case RAFT_MSG_PREVOTE:
        return "PreVote";
    case RAFT_MSG_PREVOTE_REPLY:
        return "PreVote reply";
    case RAFT_MSG_TIMEOUT_NOW:
        return "TimeoutNow";
    }
    return "unknown message";
}

static void msg_describe(const struct raft_msg *m, char *buf, size_t size)
{
    switch (m->type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        snprintf(buf, size, "%s from %u, term %" PRIu64 ", last %" PRIu64 "/%" PRIu64 "%s",
                 sim_msg_name(m->type), m->from, m->term, m->last_log_index, m->last_log_term,
                 m->transfer ? ", transfer" : "");
        break;
    case RAFT_MSG_VOTE_REPLY:
    case RAFT_MSG_PREVOTE_REPLY:
        snprintf(buf, size, "%s from %u, term %" PRIu64 ", %s", sim_msg_name(m->type), m->from,
                 m->term, m->granted ? "granted" : "refused");
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        snprintf(buf, size, "TimeoutNow from %u, term %" PRIu64, m->from, m->term);
        break;
    case RAFT_MSG_APPEND:
        snprintf(buf, size,
                 "AppendEntries from %u, term %" PRIu64 ", prev %" PRIu64 "/%" PRIu64
                 ", %zu entries, commit %" PRIu64,
                 m->from, m->term, m->prev_index, m->prev_term, m->n_entries, m->commit);
        break;
    case RAFT_MSG_APPEND_REPLY:
        if (m->success)
            snprintf(buf, size, "AppendEntries reply from %u, term %" PRIu64 ", match %" PRIu64,
                     m->from, m->term, m->match_index);
        else
            snprintf(buf, size,
                     "AppendEntries reply from %u, term %" PRIu64 ", rejected %" PRIu64
                     ", hint %" PRIu64 "/%" PRIu64,
                     m->from, m->term, m->rejected_index, m->hint_index, m->hint_term);
        break;
    case RAFT_MSG_SNAPSHOT:
        snprintf(buf, size,
                 "InstallSnapshot from %u, term %" PRIu64 ", snapshot %" PRIu64 "/%" PRIu64
                 ", offset %" PRIu64 ", %u bytes%s",
                 m->from, m->term, m->snapshot_index, m->snapshot_term, m->offset, m->len,
                 m->done ? ", done" : "");
        break;
    case RAFT_MSG_SNAPSHOT_REPLY:
        if (m->success)
            snprintf(buf, size,
                     "InstallSnapshot reply from %u, term %" PRIu64 ", installed %" PRIu64, m->from,
                     m->term, m->snapshot_index);
        else
            snprintf(buf, size,
                     "InstallSnapshot reply from %u, term %" PRIu64 ", snapshot %" PRIu64
                     ", chunk %" PRIu64 ", wants %" PRIu64,
                     m->from, m->term, m->snapshot_index, m->offset, m->next_offset);
        break;
    default:
        snprintf(buf, size, "message of type %d from %u", (int)m->type, m->from);
    }
}

struct sim_node *sim_node_by_id(struct sim *s, uint32_t id)
{
    if (id == RAFT_NONE || id > s->n)
        return NULL;
    return &s->nodes[id - 1];
}

static double node_clock_exact(const struct sim *s, const struct sim_node *nd)
{
    double since = nd->disk_error ? 0.0 : (double)(s->now - nd->clock_seen_ms) * nd->clock_rate;
    return nd->clock_ms + since;
}

uint64_t sim_node_clock(const struct sim *s, const struct sim_node *nd)
{
    return (uint64_t)node_clock_exact(s, nd);
}

/* When, in the simulation's time, the node's clock reaches node_ms. */
static uint64_t sim_time_of(const struct sim *s, const struct sim_node *nd, uint64_t node_ms)
{
    uint64_t now = sim_node_clock(s, nd);
    if (node_ms <= now)
        return s->now;
    double wait = (double)(node_ms - now) / nd->clock_rate;
    uint64_t whole = (uint64_t)wait;
    return s->now + whole + ((double)whole < wait ? 1 : 0);
}

struct sim_node *sim_leader(struct sim *s)
{
    struct sim_node *best = NULL;
    for (size_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->up && nd->r.role == RAFT_LEADER &&
            (best == NULL || nd->r.current_term > best->r.current_term))
            best = nd;
    }
    return best;
}

/* ------------------------------------------------------------ one ready */

static uint64_t down_time(struct sim *s)
{
    return sim_rng_range(&s->rng, s->p.down_min_ms, s->p.down_max_ms);
}

enum persist_result { PERSIST_OK, PERSIST_CRASHED, PERSIST_FAILED };

/* On a failing disk: the step of this ready's persist that fails, the one
 * asked for if the ready has it, else one drawn at random. False when the
 * ready writes nothing, so nothing can fail. */
static bool failing_step(struct sim *s, struct sim_node *nd, const struct raft_ready *rd,
                         enum sim_disk_op *at)
{
    enum sim_disk_op ops[4];
    size_t n = 0;
    if (rd->hard_state_changed)
        ops[n++] = SIM_DISK_HARD_STATE;
    if (rd->truncate_from != 0)
        ops[n++] = SIM_DISK_TRUNCATE;
    if (rd->n_entries > 0)
        ops[n++] = SIM_DISK_APPEND;
    if (rd->truncate_from != 0 || rd->n_entries > 0)
        ops[n++] = SIM_DISK_SYNC;
    if (n == 0)
        return false;
    *at = ops[sim_rng_below(&s->rng, n)];
    for (size_t i = 0; i < n; i++)
        if (ops[i] == nd->disk_fail_op)
            *at = ops[i];
    nd->disk_fail_op = SIM_DISK_ANY;
    return true;
}

/* The persist failed at step `what`, as node_disk_failed handles it: the log
 * back to its last sync, the core told how far storage goes, the ready's
 * reads failed (the core forgets them; the node answers TRYAGAIN), no ready
 * carried out before the retry, no tick meanwhile. */
static void storage_forget(struct sim_node *nd);

static enum persist_result node_disk_failed(struct sim *s, struct sim_node *nd,
                                            const struct raft_ready *rd, const char *what)
{
    storage_forget(nd);
    struct sim_disk *d = &nd->disk;
    size_t lost = sim_disk_reset_to_synced(d);
    nd->disk_failures++;
    nd->disk_error = true;
    nd->disk_retry_ms = s->now + s->p.disk_retry_ms;
    sim_trace(s, nd->id,
              "disk failed %s: %zu unsynced entries dropped, %zu kept, term %" PRIu64
              " vote %u on disk; retry at %" PRIu64 " ms",
              what, lost, d->len, d->term, d->vote, nd->disk_retry_ms);
    for (size_t i = 0; rd != NULL && i < rd->n_reads && !s->failed; i++) {
        struct raft_read_result res = {.read_id = rd->reads[i].read_id, .ok = false};
        sim_trace(s, nd->id, "read #%" PRIu64 " failed with the disk", res.read_id);
        sim_check_read(s, nd, &res);
    }
    /* The reads still waiting for a heartbeat round are failed at once
     * (the node's pending_fail_unconfirmed_reads): the core steps down and
     * fails them too, but no ready is carried out before the retry. */
    for (size_t i = 0; i < s->n_reads && !s->failed; i++) {
        struct sim_read *w = &s->reads[i];
        if (w->node == nd->id && w->life == nd->life && !w->answered) {
            sim_trace(s, nd->id, "read #%zu failed with the disk", i + 1);
            w->answered = true;
            w->ok = false;
            w->failed_by_node = true;
        }
    }
    raft_storage_failed(&nd->r, sim_disk_last(d));
    return PERSIST_FAILED;
}

/* Figure 13, steps 5 and 8, as the node will do them: the received
 * snapshot renamed into place (durable), then the log entries it covers
 * dropped, then the state machine restored from it. A crash may strike
 * between the rename and the drop. */
static enum persist_result node_install(struct sim *s, struct sim_node *nd,
                                        const struct raft_snapshot_install *in, bool crash)
{
    struct sim_disk *d = &nd->disk;
    uint64_t index, term, state;
    struct raft_members members;
    if (!nd->recv_done || nd->recv_index != in->index || nd->recv_term != in->term ||
        !snapshot_parse(nd->recv, nd->recv_len, &index, &term, &state, &members) ||
        index != in->index || term != in->term) {
        sim_fail(s,
                 "node %u: asked to install snapshot %" PRIu64 "/%" PRIu64
                 ", but it received %" PRIu64 "/%" PRIu64 " (%zu bytes, %s)",
                 nd->id, in->index, in->term, nd->recv_index, nd->recv_term, nd->recv_len,
                 nd->recv_done ? "complete" : "incomplete");
        return PERSIST_OK;
    }
    sim_disk_save_snapshot(d, index, term, nd->recv, nd->recv_len);
    if (crash && sim_rng_chance(&s->rng, 0.5)) {
        sim_trace(s, nd->id, "crash after installing snapshot %" PRIu64 ", before dropping the log",
                  index);
        sim_crash(s, nd, s->now + down_time(s));
        return PERSIST_CRASHED;
    }
    sim_disk_drop_prefix(d, index);
    raft_set_snapshot_members(&nd->r, &members);
    nd->sm_state = state;
    nd->applied = index;
    nd->installs++;
    sim_check_snapshot_state(s, nd, index, state, "installed");
    sim_trace(s, nd->id, "installed snapshot %" PRIu64 "/%" PRIu64 ", log to %" PRIu64, index, term,
              sim_disk_last(d));
    return PERSIST_OK;
}

/* A chunk of a snapshot being received goes to its temporary file. */
static void node_write_chunk(struct sim *s, struct sim_node *nd,
                             const struct raft_snapshot_chunk *c)
{
    if (c->offset == 0) {
        recv_clear(nd);
        nd->recv_index = c->index;
        nd->recv_term = c->term;
    } else if (c->index != nd->recv_index || c->term != nd->recv_term ||
               c->offset != nd->recv_len || nd->recv_done) {
        sim_fail(s,
                 "node %u: chunk of snapshot %" PRIu64 " at %" PRIu64
                 " does not follow what it received (%" PRIu64 ", %zu bytes)",
                 nd->id, c->index, c->offset, nd->recv_index, nd->recv_len);
        return;
    }
    if (nd->recv_len + c->len > nd->recv_cap) {
        nd->recv_cap = (nd->recv_len + c->len) * 2;
        nd->recv = sim_realloc(nd->recv, nd->recv_cap);
    }
    if (c->len > 0)
        memcpy(nd->recv + nd->recv_len, c->data, c->len);
    nd->recv_len += c->len;
    nd->recv_done = c->done;
}

/* Step 1 of a ready, as node/loop.c does it: the hard state (written and
 * synced by itself), the truncation, the entries not already in the log, one
 * fsync if the log changed. A crash may strike while the hard state is
 * written (it lands or not) or between the append and the fsync (a prefix of
 * the entries lands). A failing disk fails one step; those before it are
 * done, a failed truncation may have landed, a failed append wrote a prefix. */
static enum persist_result node_persist(struct sim *s, struct sim_node *nd,
                                        const struct raft_ready *rd)
{
    sim_check_persist(s, nd, rd);
    if (s->failed)
        return PERSIST_OK;
    struct sim_disk *d = &nd->disk;
    enum sim_disk_op fail_at = SIM_DISK_ANY;
    bool fails = s->now < nd->disk_fail_until_ms && failing_step(s, nd, rd, &fail_at);
    bool crash = !fails && sim_rng_chance(&s->rng, s->p.crash_in_persist);
    if (rd->hard_state_changed) {
        if (fails && fail_at == SIM_DISK_HARD_STATE)
            return node_disk_failed(s, nd, rd, "saving the hard state");
        if (crash && sim_rng_chance(&s->rng, 0.5)) {
            bool landed = sim_rng_chance(&s->rng, 0.5);
            if (landed)
                sim_disk_save_hard_state(d, rd->term, rd->voted_for);
            sim_trace(s, nd->id, "crash while writing term %" PRIu64 ", vote %u: %s", rd->term,
                      rd->voted_for, landed ? "written" : "lost");
            sim_crash(s, nd, s->now + down_time(s));
            return PERSIST_CRASHED;
        }
        sim_disk_save_hard_state(d, rd->term, rd->voted_for);
    }
    if (rd->truncate_from != 0) {
        if (fails && fail_at == SIM_DISK_TRUNCATE) {
            /* wal_truncate lowers the synced mark before it cuts. */
            bool landed = sim_rng_chance(&s->rng, 0.5);
            if (landed)
                sim_disk_truncate(d, rd->truncate_from);
            return node_disk_failed(s, nd, rd,
                                    landed ? "syncing a truncation" : "lowering the synced mark");
        }
        sim_disk_truncate(d, rd->truncate_from);
    }
    if (rd->snapshot_install != NULL) {
        enum persist_result res = node_install(s, nd, rd->snapshot_install, crash);
        if (res != PERSIST_OK || s->failed)
            return res;
    }
    /* After a failed attempt the log may hold some of these already. */
    size_t skip = 0;
    while (skip < rd->n_entries && rd->entries[skip].index <= sim_disk_last(d))
        skip++;
    size_t count = rd->n_entries - skip;
    if (fails && fail_at == SIM_DISK_APPEND)
        count = (size_t)sim_rng_below(&s->rng, count + 1);
    for (size_t i = skip; i < skip + count; i++) {
        const struct raft_entry *e = &rd->entries[i];
        sim_disk_append(d, e->term, e->type, e->data, e->len);
    }
    if (fails && fail_at == SIM_DISK_APPEND)
        return node_disk_failed(s, nd, rd, "appending");
    if (crash) {
        sim_trace(s, nd->id, "crash before the fsync of %zu entries", d->len - d->synced);
        /* (a chunk written but not synced is lost with the node) */
        sim_crash(s, nd, s->now + down_time(s));
        return PERSIST_CRASHED;
    }
    if (rd->truncate_from != 0 || rd->n_entries > 0) {
        if (fails && fail_at == SIM_DISK_SYNC)
            return node_disk_failed(s, nd, rd, "syncing");
        sim_disk_sync(d);
    }
    if (rd->snapshot_chunk != NULL)
        node_write_chunk(s, nd, rd->snapshot_chunk);
    if (nd->disk_error) {
        nd->disk_error = false;
        sim_trace(s, nd->id, "its disk can be written again");
    }
    return PERSIST_OK;
}

/* The caller's half of InstallSnapshot: the chunk of its snapshot file at
 * the offset the core asks for, done when it reaches the end. */
static void attach_chunk(struct sim *s, struct sim_node *nd, struct raft_msg *m)
{
    uint64_t term;
    size_t size;
    const uint8_t *file = sim_disk_snapshot(&nd->disk, m->snapshot_index, &term, &size);
    if (file == NULL || term != m->snapshot_term || m->offset > size) {
        sim_fail(s,
                 "node %u: asked to send snapshot %" PRIu64 "/%" PRIu64 " from %" PRIu64
                 ", its disk has no such file (newest %" PRIu64 ")",
                 nd->id, m->snapshot_index, m->snapshot_term, m->offset, nd->disk.snap_index);
        return;
    }
    size_t chunk = s->p.snapshot_chunk ? s->p.snapshot_chunk : 16;
    size_t len = size - (size_t)m->offset;
    if (len > chunk)
        len = chunk;
    m->data = file + m->offset;
    m->len = (uint32_t)len;
    m->done = m->offset + len == size;
}

static void send_msg(struct sim *s, struct sim_node *nd, struct raft_msg m)
{
    if (m.type == RAFT_MSG_SNAPSHOT)
        attach_chunk(s, nd, &m);
    sim_check_sent(s, nd, &m);
    if (s->observe != NULL)
        s->observe(s->observe_arg, &m);
    sim_net_send(s, &m);
}

static void node_send(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_msgs && !s->failed; i++)
        send_msg(s, nd, rd->msgs[i]);
}

/* ------------------------------------------------------------ the storage thread */

/* As node/storage_thread.c: a ready with only entries to persist has them
 * written and goes on; one background sync at a time makes them durable
 * (everything written meanwhile goes into the next); a leader counts its
 * own copy once raft_synced says so; messages that promise durability
 * (persist_before_send) wait for the sync covering what was written before
 * them. Anything else on the disk first waits for the sync in flight and
 * syncs the rest (storage_drain). */

static bool storage_can_defer(struct sim *s, const struct sim_node *nd, const struct raft_ready *rd)
{
    if (s->p.defer_sync <= 0 || nd->disk_error || rd->hard_state_changed ||
        rd->truncate_from != 0 || rd->snapshot_install != NULL || rd->snapshot_chunk != NULL)
        return false;
    if (rd->n_entries > 0 && rd->entries[0].index != sim_disk_last(&nd->disk) + 1)
        return false;
    if (rd->persist_before_send)
        for (size_t i = 0; i < rd->n_msgs; i++)
            if (rd->msgs[i].n_entries > 0 || rd->msgs[i].len > 0)
                return false;
    return sim_rng_chance(&s->rng, s->p.defer_sync);
}

/* As the node's: what a sync released leaves at once, the replies to one
 * leader coalesced (raft_coalesce_replies). */
static void storage_release(struct sim *s, struct sim_node *nd)
{
    size_t k = 0, n_out = 0;
    struct raft_msg *out = sim_realloc(NULL, (nd->n_held > 0 ? nd->n_held : 1) * sizeof(*out));
    for (size_t i = 0; i < nd->n_held; i++) {
        if (nd->held_seq[i] <= nd->synced_seq && !s->failed) {
            out[n_out++] = nd->held[i];
        } else {
            nd->held[k] = nd->held[i];
            nd->held_seq[k] = nd->held_seq[i];
            k++;
        }
    }
    nd->n_held = k;
    n_out = raft_coalesce_replies(out, n_out);
    for (size_t i = 0; i < n_out; i++)
        send_msg(s, nd, out[i]);
    free(out);
}

static void storage_send_after_sync(struct sim *s, struct sim_node *nd, const struct raft_msg *m)
{
    /* Only a successful AppendEntries reply past what the core knows
     * durable waits (storage_promises_unsynced). */
    uint64_t durable = nd->r.persisted_index;
    bool promises =
        m->success && ((m->type == RAFT_MSG_APPEND_REPLY && m->match_index > durable) ||
                       (m->type == RAFT_MSG_SNAPSHOT_REPLY && m->snapshot_index > durable));
    if (nd->synced_seq == nd->written_seq || !promises) {
        send_msg(s, nd, *m);
        return;
    }
    if (nd->n_held == nd->cap_held) {
        nd->cap_held = nd->cap_held ? nd->cap_held * 2 : 16;
        nd->held = sim_realloc(nd->held, nd->cap_held * sizeof(*nd->held));
        nd->held_seq = sim_realloc(nd->held_seq, nd->cap_held * sizeof(*nd->held_seq));
    }
    nd->held[nd->n_held] = *m;
    nd->held_seq[nd->n_held++] = nd->written_seq;
}

/* A failure or a crash: the sync in flight is gone, and so are the
 * messages that waited for it (they promised what is not on disk). */
static void storage_forget(struct sim_node *nd)
{
    nd->syncing = false;
    nd->n_held = 0;
    nd->synced_seq = nd->written_seq;
}

static void storage_kick(struct sim *s, struct sim_node *nd)
{
    struct sim_disk *d = &nd->disk;
    if (nd->syncing || d->synced == d->len)
        return;
    nd->syncing = true;
    nd->busy_seq = nd->written_seq;
    nd->sync_index = sim_disk_last(d);
    nd->sync_term = raft_term_at(&nd->r, nd->sync_index);
    nd->sync_done_ms = s->now + sim_rng_range(&s->rng, 0, s->p.disk_ms);
}

/* The sync in flight completes (or fails, on a failing disk). notify: tell
 * the core (not between raft_ready and raft_advance). */
static bool storage_end(struct sim *s, struct sim_node *nd, const struct raft_ready *rd,
                        bool notify)
{
    nd->syncing = false;
    if (s->now < nd->disk_fail_until_ms) {
        node_disk_failed(s, nd, rd, "syncing in the background");
        return false;
    }
    sim_disk_sync_through(&nd->disk, nd->sync_index);
    nd->synced_seq = nd->busy_seq;
    nd->deferred_syncs++;
    sim_trace(s, nd->id, "synced through %" PRIu64 " in the background", nd->sync_index);
    if (notify)
        raft_synced(&nd->r, nd->sync_index, nd->sync_term);
    storage_release(s, nd);
    return true;
}

/* Before the disk is used directly: wait for the sync in flight (the node
 * is blocked meanwhile), then sync the rest. */
static bool storage_drain(struct sim *s, struct sim_node *nd, const struct raft_ready *rd,
                          bool notify)
{
    if (nd->syncing) {
        if (nd->sync_done_ms > nd->busy_until_ms)
            nd->busy_until_ms = nd->sync_done_ms;
        if (!storage_end(s, nd, rd, notify))
            return false;
    }
    struct sim_disk *d = &nd->disk;
    if (d->synced != d->len) {
        if (s->now < nd->disk_fail_until_ms) {
            node_disk_failed(s, nd, rd, "syncing before a direct write");
            return false;
        }
        sim_disk_sync(d);
        if (notify) {
            uint64_t last = sim_disk_last(d);
            raft_synced(&nd->r, last, raft_term_at(&nd->r, last));
        }
    }
    nd->synced_seq = nd->written_seq;
    storage_release(s, nd);
    return true;
}

/* A deferred ready: send what may leave now, write the entries, hold the
 * rest, apply, advance without counting the entries durable. A crash may
 * strike before the sync. */
static bool node_deferred_ready(struct sim *s, struct sim_node *nd, struct raft_ready *rd)
{
    struct sim_disk *d = &nd->disk;
    sim_check_persist(s, nd, rd);
    if (!rd->persist_before_send)
        node_send(s, nd, rd);
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        sim_disk_append(d, e->term, e->type, e->data, e->len);
    }
    if (rd->n_entries > 0) {
        nd->written_seq++;
        storage_kick(s, nd);
    }
    if (sim_rng_chance(&s->rng, s->p.crash_in_persist) && !s->failed) {
        sim_trace(s, nd->id, "crash with %zu entries written, not synced", d->len - d->synced);
        sim_crash(s, nd, s->now + down_time(s));
        return false;
    }
    if (rd->persist_before_send)
        for (size_t i = 0; i < rd->n_msgs && !s->failed; i++)
            storage_send_after_sync(s, nd, &rd->msgs[i]);
    return true;
}

/* Section 7: a node snapshots its state machine now and then, as of what
 * it applied, makes the snapshot durable, tells the core, and drops the log
 * entries it covers (not always at once: a crash may come first). */
static void node_maybe_compact(struct sim *s, struct sim_node *nd)
{
    const struct raft *r = &nd->r;
    uint64_t gap = s->p.compact_gap ? s->p.compact_gap : 1;
    if (s->p.compact_chance == 0 || nd->disk_error || r->install_pending ||
        nd->applied < r->log.snapshot_index + gap || !sim_rng_chance(&s->rng, s->p.compact_chance))
        return;
    sim_compact(s, nd, sim_rng_chance(&s->rng, 0.7));
}

bool sim_compact(struct sim *s, struct sim_node *nd, bool drop_log)
{
    struct raft *r = &nd->r;
    struct sim_disk *d = &nd->disk;
    if (!nd->up || s->failed || nd->applied <= r->log.snapshot_index)
        return false;
    /* The log may be rewritten: nothing may be syncing it (snapshot.c). */
    if (!storage_drain(s, nd, NULL, true))
        return false;
    uint64_t index = nd->applied;
    uint64_t term = raft_term_at(r, index);
    uint8_t buf[SNAPSHOT_MAX];
    struct raft_members members;
    if (raft_members_at(r, index, &members) != RAFT_OK) {
        sim_fail(s, "node %u: no configuration at %" PRIu64, nd->id, index);
        return false;
    }
    size_t len = snapshot_make(index, term, nd->sm_state, &members, buf);
    sim_disk_save_snapshot(d, index, term, buf, len);
    int rv = raft_compact(r, index);
    if (rv != RAFT_OK) {
        sim_fail(s, "node %u: raft_compact(%" PRIu64 "): %s", nd->id, index, raft_strerror(rv));
        return false;
    }
    if (drop_log)
        sim_disk_drop_prefix(d, index);
    nd->compactions++;
    sim_trace(s, nd->id, "snapshot at %" PRIu64 "/%" PRIu64 ", %zu bytes; log compacted%s", index,
              term, len, drop_log ? "" : " (on disk later)");
    return true;
}

static void node_apply(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    if (rd->apply_to == 0 || rd->apply_to < rd->apply_from)
        return;
    for (uint64_t k = rd->apply_from; k <= rd->apply_to && !s->failed; k++)
        sim_check_apply(s, nd, k, raft_entry_at(&nd->r, k));
    if (!s->failed)
        sim_trace(s, nd->id, "applied %" PRIu64 "..%" PRIu64, rd->apply_from, rd->apply_to);
}

/* As pending_serve_reads: a read confirmed by the lease is served only if
 * the lease still holds by the node's clock when it is served (the core's
 * may lag); else it is asked again, by a heartbeat round. */
static void node_reads(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_reads && !s->failed; i++) {
        const struct raft_read_result *res = &rd->reads[i];
        if (res->ok && res->lease && raft_lease_end(&nd->r) <= sim_node_clock(s, nd)) {
            sim_trace(s, nd->id, "read #%" PRIu64 ": the lease ran out before it was served",
                      res->read_id);
            if (s->n_lease_retry == s->cap_lease_retry) {
                s->cap_lease_retry = s->cap_lease_retry ? s->cap_lease_retry * 2 : 16;
                s->lease_retry =
                    sim_realloc(s->lease_retry, s->cap_lease_retry * sizeof(*s->lease_retry));
            }
            s->lease_retry[s->n_lease_retry++] = res->read_id;
            continue;
        }
        sim_trace(s, nd->id, "read #%" PRIu64 " %s, index %" PRIu64, res->read_id,
                  res->ok ? "ok" : "failed", res->index);
        sim_check_read(s, nd, res);
    }
}

/* After raft_advance: the lease reads that came too late, by a round. */
static void node_retry_lease_reads(struct sim *s, struct sim_node *nd)
{
    for (size_t i = 0; i < s->n_lease_retry && !s->failed; i++) {
        if (raft_read_by_round(&nd->r, s->lease_retry[i]) == RAFT_OK)
            continue;
        struct raft_read_result res = {.read_id = s->lease_retry[i], .ok = false};
        sim_check_read(s, nd, &res);
    }
    s->n_lease_retry = 0;
}

/* Carries out every ready. A crash may strike between the first and second
 * of persist and send, or inside persist; when the core allows it, sending
 * may come first. A ready that wrote the disk keeps the node busy a while.
 * After a failed persist no ready is carried out before the retry time. */
static void node_process_ready(struct sim *s, struct sim_node *nd)
{
    bool wrote = false;
    for (int round = 0; nd->up && !s->failed && raft_has_ready(&nd->r); round++) {
        if (round == 1000) {
            sim_fail(s, "node %u: still has a ready after 1000 rounds for one event", nd->id);
            return;
        }
        if (nd->disk_error && s->now < nd->disk_retry_ms)
            break;
        struct raft_ready rd;
        raft_ready(&nd->r, &rd);
        for (size_t i = 0; i < rd.n_notes; i++)
            if (rd.notes[i].type == RAFT_NOTE_PROMOTED)
                sim_trace(s, nd->id, "membership: node %u caught up, a voter from #%" PRIu64,
                          rd.notes[i].node, rd.notes[i].index);
        if (storage_can_defer(s, nd, &rd)) {
            if (!node_deferred_ready(s, nd, &rd))
                return;
            node_apply(s, nd, &rd);
            node_reads(s, nd, &rd);
            if (s->failed)
                return;
            raft_advance_unsynced(&nd->r, &rd);
            node_retry_lease_reads(s, nd);
            if (rd.apply_to != 0)
                node_maybe_compact(s, nd);
            continue;
        }
        if (!storage_drain(s, nd, &rd, false))
            break;
        bool send_first = !rd.persist_before_send && sim_rng_chance(&s->rng, s->p.send_first);
        bool crash = sim_rng_chance(&s->rng, s->p.crash_in_ready);
        wrote = wrote || rd.hard_state_changed || rd.truncate_from != 0 || rd.n_entries > 0;
        if (send_first)
            node_send(s, nd, &rd);
        else if (node_persist(s, nd, &rd) != PERSIST_OK)
            break;
        if (crash && !s->failed) {
            sim_trace(s, nd->id, "crash after %s, before %s", send_first ? "sending" : "persisting",
                      send_first ? "persisting" : "sending");
            sim_crash(s, nd, s->now + down_time(s));
            return;
        }
        if (send_first) {
            if (node_persist(s, nd, &rd) != PERSIST_OK)
                break;
        } else {
            node_send(s, nd, &rd);
        }
        node_apply(s, nd, &rd);
        node_reads(s, nd, &rd);
        if (s->failed)
            return;
        raft_advance(&nd->r, &rd);
        node_retry_lease_reads(s, nd);
        if (rd.apply_to != 0)
            node_maybe_compact(s, nd);
    }
    if (nd->up && wrote && s->p.disk_ms > 0)
        nd->busy_until_ms = s->now + sim_rng_range(&s->rng, 0, s->p.disk_ms);
}

/* While a node's disk is failing its core is ahead of the disk: the hard
 * state may not be saved yet, entries past what storage holds wait for the
 * retry. What the core counts as stored (stable_index) must be on the disk,
 * synced, and its last entry the one the core has there. */
static void check_failing_disk(struct sim *s, struct sim_node *nd)
{
    const struct raft *r = &nd->r;
    const struct sim_disk *d = &nd->disk;
    uint64_t stored = r->stable_index;
    const struct raft_entry *mem = raft_entry_at(r, stored);
    const struct raft_entry *disk = sim_disk_entry(d, stored);
    if (d->term > r->current_term ||
        (d->term == r->current_term && d->vote != RAFT_NONE && d->vote != r->voted_for))
        sim_fail(s,
                 "node %u: disk failing: term %" PRIu64 " vote %u in memory, term %" PRIu64
                 " vote %u on disk",
                 nd->id, r->current_term, r->voted_for, d->term, d->vote);
    else if (d->synced != d->len)
        sim_fail(s, "node %u: disk failing: %zu entries on disk but only %zu synced", nd->id,
                 d->len, d->synced);
    else if (stored > (sim_disk_last(d) > d->snap_index ? sim_disk_last(d) : d->snap_index) ||
             stored > raft_last_index(r) ||
             (mem != NULL && (disk == NULL || !sim_entry_equal(disk, mem))))
        sim_fail(s,
                 "node %u: disk failing: the core counts %" PRIu64
                 " entries stored, the disk holds to %" PRIu64 " (log to %" PRIu64 ")",
                 nd->id, stored, sim_disk_last(d), raft_last_index(r));
}

/* After an event: all readies, then the checks. */
static void node_after_event(struct sim *s, struct sim_node *nd)
{
    node_process_ready(s, nd);
    if (!nd->up || s->failed)
        return;
    struct raft *r = &nd->r;
    sim_disk_prune_snapshots(&nd->disk, r);
    if (nd->disk_error)
        check_failing_disk(s, nd);
    else if (nd->disk.term != r->current_term || nd->disk.vote != r->voted_for)
        sim_fail(s,
                 "node %u: hard state term %" PRIu64 " vote %u not persisted (disk: term %" PRIu64
                 " vote %u) after its readies",
                 nd->id, r->current_term, r->voted_for, nd->disk.term, nd->disk.vote);
    else if ((sim_disk_last(&nd->disk) > nd->disk.snap_index
                  ? sim_disk_last(&nd->disk)
                  : nd->disk.snap_index) != raft_last_index(r) ||
             (nd->disk.synced != nd->disk.len && !nd->syncing) ||
             nd->disk.snap_index != r->log.snapshot_index)
        sim_fail(s,
                 "node %u: log to %" PRIu64 " after snapshot %" PRIu64 " in memory, but to %" PRIu64
                 " (%zu of %zu synced) after snapshot %" PRIu64 " on disk after its readies",
                 nd->id, raft_last_index(r), r->log.snapshot_index, sim_disk_last(&nd->disk),
                 nd->disk.synced, nd->disk.len, nd->disk.snap_index);
    else if (r->persisted_index > nd->disk.base + nd->disk.synced &&
             r->persisted_index > nd->disk.snap_index)
        sim_fail(s,
                 "node %u: the core counts entries up to %" PRIu64 " durable, the disk has "
                 "synced up to %" PRIu64 " (%zu written)",
                 nd->id, r->persisted_index, nd->disk.base + nd->disk.synced, nd->disk.len);
    else if (r->last_applied != nd->applied)
        sim_fail(s, "node %u: last_applied %" PRIu64 " but %" PRIu64 " entries were applied",
                 nd->id, r->last_applied, nd->applied);
    sim_check_node(s, nd);
    if (s->p.tick_at_deadlines) {
        uint64_t due = r->role == RAFT_LEADER ? r->heartbeat_due_ms : r->election_deadline_ms;
        due = sim_time_of(s, nd, due);
        if (due > s->now && due < nd->next_tick_ms)
            nd->next_tick_ms = due;
    }
}

/* How many waiting messages a turn takes in: mostly a few, sometimes dozens
 * (the node takes in all that wait, up to about a thousand). */
static size_t batch_size(struct sim *s)
{
    uint64_t most = s->p.max_batch > 1 ? s->p.max_batch : 1;
    if (most > 8 && sim_rng_chance(&s->rng, 0.8))
        most = 8;
    return (size_t)sim_rng_range(&s->rng, 1, most);
}

/* The start of a turn: the clock (the real loop ticks the core first; with
 * tick_before_event false the core's clock may lag, as with a slow loop;
 * while its disk fails the node does not tick it, so that it cannot
 * campaign), then a batch of the messages in the inbox, oldest first. */
static void node_take_in(struct sim *s, struct sim_node *nd, bool tick)
{
    nd->clock_ms = node_clock_exact(s, nd);
    nd->clock_seen_ms = s->now;
    uint64_t clock = (uint64_t)nd->clock_ms;
    if ((tick || s->p.tick_before_event) && !nd->disk_error && nd->r.now_ms < clock) {
        uint64_t term = nd->r.current_term;
        raft_tick(&nd->r, clock);
        if (nd->r.current_term != term)
            sim_trace(s, nd->id, "timed out: term %" PRIu64 " %s", nd->r.current_term,
                      raft_role_name(nd->r.role));
    }
    size_t n = batch_size(s);
    if (n > nd->inbox_len)
        n = nd->inbox_len;
    if (n > 1)
        sim_trace(s, nd->id, "takes in %zu messages", n);
    size_t i = 0;
    for (; i < n && !s->failed; i++) {
        struct sim_packet *p = &nd->inbox[i];
        if (s->verbose) {
            char what[160];
            msg_describe(&p->msg, what, sizeof(what));
            sim_trace(s, nd->id, "recv %s", what);
        }
        s->net.delivered++;
        int rv = raft_step(&nd->r, &p->msg);
        if (rv != RAFT_OK)
            sim_fail(s, "node %u: raft_step: %s", nd->id, raft_strerror(rv));
        sim_packet_free(p);
    }
    if (i > 0) {
        memmove(nd->inbox, nd->inbox + i, (nd->inbox_len - i) * sizeof(*nd->inbox));
        nd->inbox_len -= i;
    }
}

/* ------------------------------------------------------------ life cycle */

void sim_start(struct sim *s, struct sim_node *nd)
{
    if (nd->up || s->failed)
        return;
    struct raft_config cfg = {
        .id = nd->id,
        .n_nodes = s->p.initial_voters ? s->p.initial_voters : s->n,
        .election_min_ms = s->p.election_min_ms,
        .election_max_ms = s->p.election_max_ms,
        .heartbeat_ms = s->p.heartbeat_ms,
        .seed = sim_rng_next(&s->rng) | 1,
        .prevote = s->p.prevote,
        .check_quorum = s->p.check_quorum,
        .max_inflight_appends = s->p.max_inflight,
        .lease_ms = s->p.lease_ms,
    };
    for (size_t i = 0; i < cfg.n_nodes; i++)
        cfg.node_ids[i] = s->nodes[i].id;
    int rv = raft_init(&nd->r, &cfg, s->now);
    if (rv != RAFT_OK) {
        raft_close(&nd->r);
        sim_fail(s, "node %u: raft_init: %s", nd->id, raft_strerror(rv));
        return;
    }
    /* raft_restore takes ownership of a fresh deep copy of the disk; what
     * recovery read is on disk (a scenario's hand-written log too). */
    struct sim_disk *d = &nd->disk;
    sim_disk_sync(d);
    struct raft_entry *copy = NULL;
    if (d->len > 0) {
        copy = sim_realloc(NULL, d->len * sizeof(*copy));
        for (size_t i = 0; i < d->len; i++) {
            copy[i] = d->entries[i];
            copy[i].data = NULL;
            if (d->entries[i].len > 0) {
                copy[i].data = sim_realloc(NULL, d->entries[i].len);
                memcpy(copy[i].data, d->entries[i].data, d->entries[i].len);
            }
        }
    }
    rv = raft_restore(&nd->r, d->term, d->vote, d->snap_index, d->snap_term, copy, d->len);
    /* The state machine starts from the snapshot. */
    uint64_t sm_index = 0, sm_term = 0, sm_state = 0;
    struct raft_members members;
    if (d->snap_len > 0 &&
        (!snapshot_parse(d->snap, d->snap_len, &sm_index, &sm_term, &sm_state, &members) ||
         sm_index != d->snap_index || sm_term != d->snap_term)) {
        raft_close(&nd->r);
        sim_fail(s, "node %u: its snapshot file is not snapshot %" PRIu64, nd->id, d->snap_index);
        return;
    }
    if (d->snap_len > 0)
        raft_set_snapshot_members(&nd->r, &members);
    recv_clear(nd);
    nd->sm_state = sm_state;
    nd->up = true;
    nd->life++;
    nd->disk_error = false;
    nd->restart_ms = 0;
    nd->shadow_len = 0;
    nd->seen_commit = 0;
    nd->seen_term = nd->r.current_term;
    nd->seen_role = nd->r.role;
    nd->applied = d->snap_index;
    nd->complete_upto = 0;
    nd->next_tick_ms = s->now + sim_rng_range(&s->rng, 1, s->p.tick_ms);
    nd->clock_ms = (double)s->now;
    nd->clock_seen_ms = s->now;
    sim_trace(s, nd->id,
              "start #%u: term %" PRIu64 ", vote %u, snapshot %" PRIu64 ", log %" PRIu64
              "..%" PRIu64,
              nd->life, d->term, d->vote, d->snap_index, d->base + 1, sim_disk_last(d));
    if (rv != RAFT_OK) {
        sim_fail(s, "node %u: raft_restore: %s", nd->id, raft_strerror(rv));
        return;
    }
    sim_check_snapshot_state(s, nd, d->snap_index, sm_state, "restarted from");
    sim_check_restored(s, nd);
    node_after_event(s, nd);
}

void sim_start_all(struct sim *s)
{
    for (size_t i = 0; i < s->n; i++)
        sim_start(s, &s->nodes[i]);
}

void sim_crash(struct sim *s, struct sim_node *nd, uint64_t restart_ms)
{
    if (!nd->up)
        return;
    raft_close(&nd->r);
    nd->up = false;
    nd->restart_ms = restart_ms;
    nd->busy_until_ms = 0;
    nd->disk_error = false;
    storage_forget(nd);
    s->net.lost += nd->inbox_len;
    inbox_clear(nd);
    recv_clear(nd); /* a snapshot being received was never installed */
    size_t lost = sim_disk_crash(&nd->disk, &s->rng);
    char until[48] = "";
    if (restart_ms)
        snprintf(until, sizeof(until), ": down until %" PRIu64 " ms", restart_ms);
    if (lost > 0)
        sim_trace(s, nd->id, "crash%s; %zu unsynced entries lost, %zu kept", until, lost,
                  nd->disk.len);
    else
        sim_trace(s, nd->id, "crash%s", until);
}

void sim_disk_failing(struct sim *s, struct sim_node *nd, uint64_t until_ms, enum sim_disk_op at)
{
    nd->disk_fail_until_ms = until_ms;
    nd->disk_fail_op = at;
    if (until_ms > s->now)
        sim_trace(s, nd->id, "disk: every write fails until %" PRIu64 " ms", until_ms);
}

/* ------------------------------------------------------------ events */

/* A message reaches its node's inbox, if the node is up and the link works;
 * the node takes it in at its next turn. */
static void deliver(struct sim *s)
{
    struct sim_packet p;
    if (!sim_net_pop(s, &p))
        return;
    struct sim_node *from = sim_node_by_id(s, p.msg.from);
    struct sim_node *to = sim_node_by_id(s, p.msg.to);
    if (to == NULL || from == NULL || !to->up || s->net.cut[from->slot][to->slot]) {
        s->net.lost++;
        if (s->verbose) {
            char what[160];
            msg_describe(&p.msg, what, sizeof(what));
            sim_trace(s, p.msg.to, "lost %s", what);
        }
        sim_packet_free(&p);
        return;
    }
    if (to->inbox_len == to->inbox_cap) {
        to->inbox_cap = to->inbox_cap ? to->inbox_cap * 2 : 16;
        to->inbox = sim_realloc(to->inbox, to->inbox_cap * sizeof(*to->inbox));
    }
    p.deliver_ms = s->now;
    to->inbox[to->inbox_len++] = p;
}

/* When an up node's next turn is due: its next tick, its retry after a
 * failed persist, or once a message waits (after the others arriving at the
 * same moment), not while busy. */
static uint64_t node_turn_ms(const struct sim_node *nd)
{
    uint64_t t = nd->next_tick_ms;
    if (nd->disk_error && nd->disk_retry_ms < t && raft_has_ready(&nd->r))
        t = nd->disk_retry_ms;
    if (nd->inbox_len > 0 && nd->inbox[0].deliver_ms < t)
        t = nd->inbox[0].deliver_ms;
    if (nd->syncing && nd->sync_done_ms < t)
        t = nd->sync_done_ms;
    return t > nd->busy_until_ms ? t : nd->busy_until_ms;
}

static void node_turn(struct sim *s, struct sim_node *nd)
{
    bool tick = s->now >= nd->next_tick_ms;
    if (tick)
        nd->next_tick_ms = s->now + s->p.tick_ms;
    /* storage_poll: a finished background sync, then the next one. */
    if (nd->syncing && s->now >= nd->sync_done_ms && storage_end(s, nd, NULL, true))
        storage_kick(s, nd);
    node_take_in(s, nd, tick);
    node_after_event(s, nd);
}

/* Deliveries come before turns due at the same time, so that messages
 * arriving together are taken in together. */
bool sim_step(struct sim *s, uint64_t until)
{
    if (s->failed)
        return false;
    enum { NONE, DELIVER, TURN, RESTART } kind = NONE;
    uint64_t best = UINT64_MAX;
    struct sim_node *who = NULL;
    if (s->net.len > 0) {
        best = s->net.heap[0].deliver_ms;
        kind = DELIVER;
    }
    for (size_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (!nd->up && nd->restart_ms == 0)
            continue;
        uint64_t t = nd->up ? node_turn_ms(nd) : nd->restart_ms;
        if (t < best) {
            best = t;
            kind = nd->up ? TURN : RESTART;
            who = nd;
        }
    }
    if (kind == NONE || best > until) {
        if (until > s->now && until != UINT64_MAX)
            s->now = until;
        return false;
    }
    if (best > s->now)
        s->now = best;
    s->events++;
    s->work++;
    if (s->work > s->work_limit) {
        sim_fail(s, "runaway: more than %" PRIu64 " events and copied entries in one run",
                 s->work_limit);
        return false;
    }
    switch (kind) {
    case DELIVER:
        deliver(s);
        break;
    case TURN:
        node_turn(s, who);
        break;
    case RESTART:
        sim_start(s, who);
        break;
    case NONE:
        break;
    }
    return true;
}

bool sim_run_until(struct sim *s, uint64_t deadline_ms, sim_pred *pred, void *arg)
{
    while (!s->failed) {
        if (pred != NULL && pred(s, arg))
            return true;
        if (!sim_step(s, deadline_ms))
            return !s->failed && (pred == NULL || pred(s, arg));
    }
    return false;
}

void sim_run_for(struct sim *s, uint64_t ms)
{
    sim_run_until(s, s->now + ms, NULL, NULL);
}

void sim_inject_batch(struct sim *s, struct sim_node *nd, const struct raft_msg *msgs, size_t n)
{
    if (!nd->up || s->failed)
        return;
    s->events++;
    for (size_t i = 0; i < n && !s->failed; i++) {
        char what[160];
        msg_describe(&msgs[i], what, sizeof(what));
        sim_trace(s, nd->id, "recv (injected) %s", what);
        int rv = raft_step(&nd->r, &msgs[i]);
        if (rv != RAFT_OK)
            sim_fail(s, "node %u: raft_step: %s", nd->id, raft_strerror(rv));
    }
    node_after_event(s, nd);
}

void sim_inject(struct sim *s, struct sim_node *nd, const struct raft_msg *m)
{
    sim_inject_batch(s, nd, m, 1);
}

/* Client requests are taken in in a turn of their own, after the messages
 * waiting then (node/loop.c reads its peers before its clients); a request
 * refused because the node has just stepped down is fine. */

/* A client command: "cmd:", its id (8 bytes, little endian), random bytes. */
static int propose_one(struct sim *s, struct sim_node *nd, uint64_t *index, uint64_t *term)
{
    uint8_t data[32];
    uint64_t id = s->n_commands;
    uint32_t len = 12 + (uint32_t)sim_rng_below(&s->rng, sizeof(data) - 12 + 1);
    memcpy(data, "cmd:", 4);
    for (int i = 0; i < 8; i++)
        data[4 + i] = (uint8_t)(id >> (8 * i));
    for (uint32_t i = 12; i < len; i++)
        data[i] = (uint8_t)sim_rng_next(&s->rng);
    bool leader = nd->r.role == RAFT_LEADER;
    int rv = raft_propose(&nd->r, data, len, index, term);
    if (rv == RAFT_OK) {
        sim_trace(s, nd->id, "propose #%" PRIu64 ": index %" PRIu64 ", term %" PRIu64, id, *index,
                  *term);
        if (!leader)
            sim_fail(s, "node %u: a %s accepted a proposal", nd->id, raft_role_name(nd->r.role));
        else if (*index != raft_last_index(&nd->r) || *term != nd->r.current_term)
            sim_fail(s,
                     "node %u: proposal placed at %" PRIu64 "/%" PRIu64 ", log ends at %" PRIu64
                     "/%" PRIu64,
                     nd->id, *index, *term, raft_last_index(&nd->r), raft_last_term(&nd->r));
        sim_note_command(s, id, *index, *term);
    } else {
        sim_trace(s, nd->id, "propose refused: %s", raft_strerror(rv));
        bool transferring = leader && nd->r.transfer_to != RAFT_NONE;
        if (transferring ? rv != RAFT_EBUSY : (leader || rv != RAFT_ENOTLEADER))
            sim_fail(s, "node %u: a %s refused a proposal: %s", nd->id, raft_role_name(nd->r.role),
                     raft_strerror(rv));
    }
    return rv;
}

int sim_propose(struct sim *s, struct sim_node *nd, uint64_t *index, uint64_t *term)
{
    if (!nd->up || s->failed)
        return RAFT_ENOTLEADER;
    s->events++;
    node_take_in(s, nd, false);
    int rv = propose_one(s, nd, index, term);
    node_after_event(s, nd);
    return rv;
}

size_t sim_propose_batch(struct sim *s, struct sim_node *nd, size_t count)
{
    if (!nd->up || s->failed)
        return 0;
    s->events++;
    node_take_in(s, nd, false);
    size_t taken = 0;
    for (size_t i = 0; i < count && !s->failed; i++) {
        uint64_t index, term;
        if (propose_one(s, nd, &index, &term) != RAFT_OK)
            break;
        taken++;
    }
    node_after_event(s, nd);
    return taken;
}

int sim_read(struct sim *s, struct sim_node *nd, uint64_t *read_id)
{
    if (!nd->up || s->failed)
        return RAFT_ENOTLEADER;
    s->events++;
    node_take_in(s, nd, false);
    uint64_t id = s->n_reads + 1;
    bool leader = nd->r.role == RAFT_LEADER;
    int rv = raft_read(&nd->r, id);
    if (rv == RAFT_OK) {
        if (s->n_reads == s->cap_reads) {
            s->cap_reads = s->cap_reads ? s->cap_reads * 2 : 64;
            s->reads = sim_realloc(s->reads, s->cap_reads * sizeof(*s->reads));
        }
        s->reads[s->n_reads++] = (struct sim_read){
            .node = nd->id,
            .life = nd->life,
            .term = nd->r.current_term,
            .must_cover = s->n_committed,
        };
        *read_id = id;
        sim_trace(s, nd->id, "read #%" PRIu64 " asked, %zu entries committed", id, s->n_committed);
        if (!leader)
            sim_fail(s, "node %u: a %s accepted a read", nd->id, raft_role_name(nd->r.role));
    } else {
        sim_trace(s, nd->id, "read refused: %s", raft_strerror(rv));
        if (leader || rv != RAFT_ENOTLEADER)
            sim_fail(s, "node %u: a %s refused a read: %s", nd->id, raft_role_name(nd->r.role),
                     raft_strerror(rv));
    }
    node_after_event(s, nd);
    return rv;
}

void sim_timeout_now(struct sim *s, struct sim_node *nd)
{
    /* As the node: one that cannot write its disk does not stand. */
    if (!nd->up || s->failed || nd->disk_error)
        return;
    s->events++;
    node_take_in(s, nd, false);
    sim_trace(s, nd->id, "election timeout forced%s",
              raft_timeout_now(&nd->r) ? "" : ": it does not stand");
    node_after_event(s, nd);
}

int sim_transfer(struct sim *s, struct sim_node *nd, uint32_t target)
{
    if (!nd->up || s->failed)
        return RAFT_ENOTLEADER;
    s->events++;
    node_take_in(s, nd, false);
    int rv = raft_transfer(&nd->r, target);
    sim_trace(s, nd->id, "leadership transfer to %u asked: %s", target, raft_strerror(rv));
    bool possible = nd->r.role == RAFT_LEADER && target != nd->id && raft_is_voter(&nd->r, target);
    if ((rv == RAFT_OK) != possible)
        sim_fail(s, "node %u: a %s answered a transfer to %u: %s", nd->id,
                 raft_role_name(nd->r.role), target, raft_strerror(rv));
    node_after_event(s, nd);
    return rv;
}

void sim_set_options(struct sim *s, bool prevote, bool check_quorum)
{
    s->p.prevote = prevote;
    s->p.check_quorum = check_quorum;
    sim_trace(s, RAFT_NONE, "options: pre-vote %s, check-quorum %s", prevote ? "on" : "off",
              check_quorum ? "on" : "off");
    for (size_t i = 0; i < s->n; i++)
        if (s->nodes[i].up)
            raft_set_options(&s->nodes[i].r, prevote, check_quorum);
}

int sim_change_members(struct sim *s, struct sim_node *nd, bool add)
{
    if (!nd->up || s->failed)
        return RAFT_ENOTLEADER;
    s->events++;
    node_take_in(s, nd, false);
    struct raft_members next = nd->r.members;
    uint32_t id = 0;
    if (add) {
        /* A server not in the configuration joins as a learner. */
        uint32_t outside[RAFT_MAX_NODES];
        size_t n_out = 0;
        for (size_t i = 0; i < s->n; i++)
            if (!raft_is_member(&nd->r, s->nodes[i].id))
                outside[n_out++] = s->nodes[i].id;
        if (n_out > 0) {
            id = outside[sim_rng_below(&s->rng, n_out)];
            next.m[next.n++] = (struct raft_member){.id = id, .role = RAFT_LEARNER};
        }
    } else if (next.n > 1) {
        size_t k = sim_rng_below(&s->rng, next.n);
        id = next.m[k].id;
        next.m[k] = next.m[--next.n];
    }
    int rv = RAFT_EINVAL;
    uint64_t index = 0;
    if (id != 0) {
        rv = raft_change_members(&nd->r, &next, &index);
        char ids[64];
        raft_members_ids_text(&next, ids, sizeof ids);
        sim_trace(s, nd->id, "membership: %s node %u -> %s: %s%s", add ? "add" : "remove", id, ids,
                  raft_strerror(rv), rv == RAFT_OK ? "" : " (refused)");
        bool leader = nd->r.role == RAFT_LEADER;
        if ((rv == RAFT_ENOTLEADER) == leader && !(leader && rv == RAFT_OK))
            sim_fail(s, "node %u: a %s answered a membership change: %s", nd->id,
                     raft_role_name(nd->r.role), raft_strerror(rv));
    }
    node_after_event(s, nd);
    return rv;
}

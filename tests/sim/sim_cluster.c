/* sim_cluster.c - the simulated nodes and how they are driven: exactly as the
 * real node drives its core. One event (tick, message, proposal, read), then
 * while the core has a ready: persist, send, apply, serve reads, advance. */
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
    s->verbose = verbose;
    sim_rng_seed(&s->rng, seed);
    s->net.max_delay_ms = 1;
    s->work_limit = 20000000;
    for (size_t i = 0; i < n; i++) {
        s->nodes[i].id = (uint32_t)i + 1;
        s->nodes[i].slot = i;
    }
}

static void disk_free(struct sim_disk *d)
{
    for (size_t i = 0; i < d->len; i++)
        free(d->entries[i].data);
    free(d->entries);
    free(d->vote_of_term);
    memset(d, 0, sizeof(*d));
}

void sim_free(struct sim *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->up)
            raft_close(&nd->r);
        nd->up = false;
        disk_free(&nd->disk);
        free(nd->shadow);
        nd->shadow = NULL;
    }
    sim_net_free(s);
    for (size_t i = 0; i < s->n_committed; i++)
        free(s->committed[i].e.data);
    free(s->committed);
    free(s->reads);
    free(s->commands);
    free(s->leader_of_term);
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
    }
    return "unknown message";
}

static void msg_describe(const struct raft_msg *m, char *buf, size_t size)
{
    switch (m->type) {
    case RAFT_MSG_VOTE:
        snprintf(buf, size, "RequestVote from %u, term %" PRIu64 ", last %" PRIu64 "/%" PRIu64,
                 m->from, m->term, m->last_log_index, m->last_log_term);
        break;
    case RAFT_MSG_VOTE_REPLY:
        snprintf(buf, size, "RequestVote reply from %u, term %" PRIu64 ", %s", m->from, m->term,
                 m->granted ? "granted" : "refused");
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

void sim_disk_append(struct sim_disk *d, uint64_t term, uint8_t type, const void *data,
                     uint32_t len)
{
    if (d->len == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->entries = sim_realloc(d->entries, d->cap * sizeof(*d->entries));
    }
    struct raft_entry *e = &d->entries[d->len];
    e->term = term;
    e->index = d->len + 1;
    e->type = type;
    e->len = len;
    e->data = NULL;
    if (len > 0) {
        e->data = sim_realloc(NULL, len);
        memcpy(e->data, data, len);
    }
    d->len++;
}

static void disk_truncate(struct sim_disk *d, uint64_t from)
{
    while (d->len > 0 && d->len >= from) {
        free(d->entries[d->len - 1].data);
        d->len--;
    }
}

/* ------------------------------------------------------------ one ready */

static void node_persist(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    sim_check_persist(s, nd, rd);
    if (s->failed)
        return;
    if (rd->hard_state_changed) {
        nd->disk.term = rd->term;
        nd->disk.vote = rd->voted_for;
    }
    if (rd->truncate_from != 0)
        disk_truncate(&nd->disk, rd->truncate_from);
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        sim_disk_append(&nd->disk, e->term, e->type, e->data, e->len);
    }
}

static void node_send(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_msgs && !s->failed; i++) {
        const struct raft_msg *m = &rd->msgs[i];
        sim_check_sent(s, nd, m);
        if (s->observe != NULL)
            s->observe(s->observe_arg, m);
        sim_net_send(s, m);
    }
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

static void node_reads(struct sim *s, struct sim_node *nd, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_reads && !s->failed; i++) {
        const struct raft_read_result *res = &rd->reads[i];
        sim_trace(s, nd->id, "read #%" PRIu64 " %s, index %" PRIu64, res->read_id,
                  res->ok ? "ok" : "failed", res->index);
        sim_check_read(s, nd, res);
    }
}

static uint64_t down_time(struct sim *s)
{
    return sim_rng_range(&s->rng, s->p.down_min_ms, s->p.down_max_ms);
}

/* Carries out every ready. A crash may strike between the first and second
 * of persist and send; when the core allows it, sending may come first. */
static void node_process_ready(struct sim *s, struct sim_node *nd)
{
    for (int round = 0; nd->up && !s->failed && raft_has_ready(&nd->r); round++) {
        if (round == 1000) {
            sim_fail(s, "node %u: still has a ready after 1000 rounds for one event", nd->id);
            return;
        }
        struct raft_ready rd;
        raft_ready(&nd->r, &rd);
        bool send_first = !rd.persist_before_send && sim_rng_chance(&s->rng, s->p.send_first);
        bool crash = sim_rng_chance(&s->rng, s->p.crash_in_ready);
        if (send_first)
            node_send(s, nd, &rd);
        else
            node_persist(s, nd, &rd);
        if (crash && !s->failed) {
            sim_trace(s, nd->id, "crash after %s, before %s", send_first ? "sending" : "persisting",
                      send_first ? "persisting" : "sending");
            sim_crash(s, nd, s->now + down_time(s));
            return;
        }
        if (send_first)
            node_persist(s, nd, &rd);
        else
            node_send(s, nd, &rd);
        node_apply(s, nd, &rd);
        node_reads(s, nd, &rd);
        if (s->failed)
            return;
        raft_advance(&nd->r, &rd);
    }
}

/* After an event: all readies, then the checks. */
static void node_after_event(struct sim *s, struct sim_node *nd)
{
    node_process_ready(s, nd);
    if (!nd->up || s->failed)
        return;
    struct raft *r = &nd->r;
    if (nd->disk.term != r->current_term || nd->disk.vote != r->voted_for)
        sim_fail(s,
                 "node %u: hard state term %" PRIu64 " vote %u not persisted (disk: term %" PRIu64
                 " vote %u) after its readies",
                 nd->id, r->current_term, r->voted_for, nd->disk.term, nd->disk.vote);
    else if (nd->disk.len != r->log.len)
        sim_fail(s, "node %u: %zu entries in memory but %zu on disk after its readies", nd->id,
                 r->log.len, nd->disk.len);
    else if (r->last_applied != nd->applied)
        sim_fail(s, "node %u: last_applied %" PRIu64 " but %" PRIu64 " entries were applied",
                 nd->id, r->last_applied, nd->applied);
    sim_check_node(s, nd);
    if (s->p.tick_at_deadlines) {
        uint64_t due = r->role == RAFT_LEADER ? r->heartbeat_due_ms : r->election_deadline_ms;
        if (due > s->now && due < nd->next_tick_ms)
            nd->next_tick_ms = due;
    }
}

/* The real loop reads the clock before handling what poll() returned. */
static void node_catch_up_clock(struct sim *s, struct sim_node *nd)
{
    if (s->p.tick_before_event && nd->up && nd->r.now_ms < s->now) {
        raft_tick(&nd->r, s->now);
        node_after_event(s, nd);
    }
}

/* ------------------------------------------------------------ life cycle */

void sim_start(struct sim *s, struct sim_node *nd)
{
    if (nd->up || s->failed)
        return;
    struct raft_config cfg = {
        .id = nd->id,
        .n_nodes = s->n,
        .election_min_ms = s->p.election_min_ms,
        .election_max_ms = s->p.election_max_ms,
        .heartbeat_ms = s->p.heartbeat_ms,
        .seed = sim_rng_next(&s->rng) | 1,
    };
    for (size_t i = 0; i < s->n; i++)
        cfg.node_ids[i] = s->nodes[i].id;
    int rv = raft_init(&nd->r, &cfg, s->now);
    if (rv != RAFT_OK) {
        raft_close(&nd->r);
        sim_fail(s, "node %u: raft_init: %s", nd->id, raft_strerror(rv));
        return;
    }
    /* raft_restore takes ownership of a fresh deep copy of the disk. */
    struct sim_disk *d = &nd->disk;
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
    rv = raft_restore(&nd->r, d->term, d->vote, copy, d->len);
    nd->up = true;
    nd->life++;
    nd->restart_ms = 0;
    nd->shadow_len = 0;
    nd->seen_commit = 0;
    nd->seen_term = nd->r.current_term;
    nd->seen_role = nd->r.role;
    nd->applied = 0;
    nd->complete_upto = 0;
    nd->next_tick_ms = s->now + sim_rng_range(&s->rng, 1, s->p.tick_ms);
    sim_trace(s, nd->id, "start #%u: term %" PRIu64 ", vote %u, %zu entries", nd->life, d->term,
              d->vote, d->len);
    if (rv != RAFT_OK) {
        sim_fail(s, "node %u: raft_restore: %s", nd->id, raft_strerror(rv));
        return;
    }
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
    if (restart_ms)
        sim_trace(s, nd->id, "crash: down until %" PRIu64 " ms", restart_ms);
    else
        sim_trace(s, nd->id, "crash");
}

/* ------------------------------------------------------------ events */

static void deliver(struct sim *s)
{
    struct sim_packet p;
    if (!sim_net_pop(s, &p))
        return;
    struct sim_node *from = sim_node_by_id(s, p.msg.from);
    struct sim_node *to = sim_node_by_id(s, p.msg.to);
    char what[160];
    if (s->verbose)
        msg_describe(&p.msg, what, sizeof(what));
    if (to == NULL || from == NULL || !to->up || s->net.cut[from->slot][to->slot]) {
        s->net.lost++;
        sim_trace(s, p.msg.to, "lost %s", what);
        sim_packet_free(&p);
        return;
    }
    node_catch_up_clock(s, to);
    if (!to->up || s->failed) {
        sim_packet_free(&p);
        return;
    }
    s->net.delivered++;
    sim_trace(s, to->id, "recv %s", what);
    int rv = raft_step(&to->r, &p.msg);
    sim_packet_free(&p);
    if (rv != RAFT_OK) {
        sim_fail(s, "node %u: raft_step: %s", to->id, raft_strerror(rv));
        return;
    }
    node_after_event(s, to);
}

static void tick(struct sim *s, struct sim_node *nd)
{
    raft_tick(&nd->r, s->now);
    nd->next_tick_ms = s->now + s->p.tick_ms;
    node_after_event(s, nd);
}

bool sim_step(struct sim *s, uint64_t until)
{
    if (s->failed)
        return false;
    enum { NONE, DELIVER, TICK, RESTART } kind = NONE;
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
        uint64_t t = nd->up ? nd->next_tick_ms : nd->restart_ms;
        if (t < best) {
            best = t;
            kind = nd->up ? TICK : RESTART;
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
    case TICK:
        tick(s, who);
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

void sim_inject(struct sim *s, struct sim_node *nd, const struct raft_msg *m)
{
    if (!nd->up || s->failed)
        return;
    s->events++;
    char what[160];
    msg_describe(m, what, sizeof(what));
    sim_trace(s, nd->id, "recv (injected) %s", what);
    int rv = raft_step(&nd->r, m);
    if (rv != RAFT_OK) {
        sim_fail(s, "node %u: raft_step: %s", nd->id, raft_strerror(rv));
        return;
    }
    node_after_event(s, nd);
}

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
        if (leader || rv != RAFT_ENOTLEADER)
            sim_fail(s, "node %u: a %s refused a proposal: %s", nd->id, raft_role_name(nd->r.role),
                     raft_strerror(rv));
    }
    return rv;
}

int sim_propose(struct sim *s, struct sim_node *nd, uint64_t *index, uint64_t *term)
{
    node_catch_up_clock(s, nd);
    if (!nd->up || s->failed)
        return RAFT_ENOTLEADER;
    s->events++;
    int rv = propose_one(s, nd, index, term);
    node_after_event(s, nd);
    return rv;
}

size_t sim_propose_batch(struct sim *s, struct sim_node *nd, size_t count)
{
    node_catch_up_clock(s, nd);
    if (!nd->up || s->failed)
        return 0;
    s->events++;
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
    node_catch_up_clock(s, nd);
    if (!nd->up || s->failed)
        return RAFT_ENOTLEADER;
    s->events++;
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
    node_catch_up_clock(s, nd);
    if (!nd->up || s->failed)
        return;
    s->events++;
    sim_trace(s, nd->id, "election timeout forced");
    raft_timeout_now(&nd->r);
    node_after_event(s, nd);
}

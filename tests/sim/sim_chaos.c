/* sim_chaos.c - one seeded random run: a chaotic phase (loss, duplicates,
 * delays, partitions, crashes, failing disks, forced elections, client
 * writes and reads), then everything heals and the cluster must make
 * progress: within 10 virtual seconds a leader, a fresh write committed on
 * every node, a successful read, and every node whose disk failed writing
 * again and caught up. Every choice comes from the seed. */
#include <inttypes.h>
#include <stdio.h>

#include "sim.h"

#define HEAL_DEADLINE_MS 10000

/* How hard a run shakes the cluster: drawn from the seed. */
struct chaos {
    uint64_t chaos_ms;
    uint64_t propose_every_ms;
    uint64_t read_every_ms;
    uint64_t fault_every_ms; /* 0: no faults */
    bool partitions;
    bool crashes;
    bool disk_failures; /* a node's disk fails every write for 200..3000 ms */
    bool transfers;     /* leadership transfers, and Pre-Vote/CheckQuorum switched */
    bool membership;    /* servers added and removed, one at a time */
    double drop, dup;
    uint32_t max_delay_ms;

    uint64_t next_propose_ms, next_read_ms, next_fault_ms;
};

static uint64_t pick(struct sim_rng *g, const uint64_t *choices, size_t n)
{
    return choices[sim_rng_below(g, n)];
}

#define PICK(g, ...)                                                                               \
    pick(g, (const uint64_t[]){__VA_ARGS__},                                                       \
         sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t))

static void draw_params(struct sim_rng *g, struct sim_params *p, struct chaos *c)
{
    p->election_min_ms = (uint32_t)PICK(g, 150, 150, 100, 200, 300);
    p->election_max_ms = p->election_min_ms * 2;
    p->heartbeat_ms = (uint32_t)PICK(g, 50, 50, 30, 20);
    p->tick_ms = (uint32_t)PICK(g, 1, 5, 10, 10, 20, 50);
    p->tick_at_deadlines = sim_rng_chance(g, 0.5);
    p->tick_before_event = sim_rng_chance(g, 0.5);
    p->send_first = PICK(g, 0, 50, 100) / 100.0;
    p->crash_in_ready = PICK(g, 0, 0, 2, 10) / 1000.0;
    p->crash_in_persist = PICK(g, 0, 2, 5, 10) / 1000.0;
    p->down_min_ms = 10;
    p->down_max_ms = (uint32_t)PICK(g, 100, 1000, 3000);
    /* One message a turn keeps up with the load only on a fast disk. */
    p->max_batch = (uint32_t)PICK(g, 1, 8, 8, 32, 64);
    p->disk_ms = p->max_batch == 1 ? 0 : (uint32_t)PICK(g, 0, 1, 2, 5, 10, 20);

    c->chaos_ms = sim_rng_range(g, 5000, 20000);
    c->propose_every_ms = PICK(g, 5, 20, 50, 100, 300);
    c->read_every_ms = PICK(g, 10, 50, 100, 300);
    c->fault_every_ms = PICK(g, 0, 200, 500, 1000, 2000);
    c->partitions = sim_rng_chance(g, 0.7);
    c->crashes = sim_rng_chance(g, 0.6);
    c->drop = PICK(g, 0, 0, 1, 5, 10, 30) / 100.0;
    c->dup = PICK(g, 0, 0, 2, 10) / 100.0;
    c->max_delay_ms = (uint32_t)PICK(g, 1, 3, 10, 20, 50);
    c->disk_failures = sim_rng_chance(g, 0.4);
    /* The node retries every second with 150-300 ms election timeouts. */
    p->disk_retry_ms = (uint32_t)PICK(g, 1000, 1000, 500, 200);
    /* Snapshots: often enough that lagging and restarted nodes need one,
     * in chunks small enough that a file takes several. */
    p->compact_chance = PICK(g, 0, 2, 10, 30, 100) / 100.0;
    p->compact_gap = (uint32_t)PICK(g, 1, 5, 20, 100);
    /* The node leaves every ready it can to its storage thread; a mix
     * also tries the hand-over between the two ways. */
    p->defer_sync = PICK(g, 0, 50, 100, 100) / 100.0;
    p->snapshot_chunk = (uint32_t)PICK(g, 3, 8, 16, 40, 4096);
    /* Dissertation 9.6, on by default in the node: mostly on here too. */
    p->prevote = sim_rng_chance(g, 0.7);
    p->check_quorum = sim_rng_chance(g, 0.7);
    c->transfers = sim_rng_chance(g, 0.5);
    c->membership = sim_rng_chance(g, 0.4);
    if (c->membership && !p->prevote)
        p->check_quorum = true; /* see fault() */
    /* Membership runs start with fewer voters than servers, sometimes one. */
    p->initial_voters = 0;
    if (c->membership)
        p->initial_voters = (uint32_t)PICK(g, 0, 1, 2, 3);
    /* The node's default, and windows up to the core's largest. */
    p->max_inflight = (uint32_t)PICK(g, 1, 1, 2, 3, RAFT_MAX_INFLIGHT_MSGS);
    /* Leader leases in a third of the runs, as long as the node would
     * make them (node/loop.c, node_lease_ms): the minimum election timeout
     * less a tenth for drift, 2 ms for whole milliseconds, and the most a
     * core's clock can lag when it takes a message in (here: without a tick
     * before each event, a tick period and a busy disk). */
    /* Clocks that drift, within what the lease allows for (rates within
     * 10% of each other): up to 4% either way, in half the runs. */
    p->clock_drift = PICK(g, 0, 0, 1, 4) / 100.0;
    uint32_t lag = p->tick_before_event ? 0 : p->tick_ms + p->disk_ms + 1;
    uint32_t margin = lag + p->election_min_ms / 10 + 2;
    p->lease_ms = 0;
    if (sim_rng_chance(g, 0.35) && p->election_min_ms > margin)
        p->lease_ms = p->election_min_ms - margin;
}

static uint64_t next_time(struct sim *s, uint64_t every)
{
    return s->now + sim_rng_range(&s->rng, 1, 2 * every);
}

/* A random client: mostly at a leader (a stale one too), sometimes anywhere. */
static struct sim_node *client_target(struct sim *s)
{
    struct sim_node *leaders[RAFT_MAX_NODES], *live[RAFT_MAX_NODES];
    size_t n_leaders = 0, n_live = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (!nd->up)
            continue;
        live[n_live++] = nd;
        if (nd->r.role == RAFT_LEADER)
            leaders[n_leaders++] = nd;
    }
    if (n_leaders > 0 && sim_rng_chance(&s->rng, 0.9))
        return leaders[sim_rng_below(&s->rng, n_leaders)];
    return n_live > 0 ? live[sim_rng_below(&s->rng, n_live)] : NULL;
}

static void client_propose(struct sim *s, struct chaos *c)
{
    c->next_propose_ms = next_time(s, c->propose_every_ms);
    struct sim_node *nd = client_target(s);
    if (nd == NULL)
        return;
    size_t count = sim_rng_chance(&s->rng, 0.2) ? sim_rng_range(&s->rng, 2, 20) : 1;
    sim_propose_batch(s, nd, count);
}

static void client_read(struct sim *s, struct chaos *c)
{
    c->next_read_ms = next_time(s, c->read_every_ms);
    struct sim_node *nd = client_target(s);
    uint64_t id;
    if (nd != NULL)
        sim_read(s, nd, &id);
}

/* Half the time the leader: faults there make logs diverge. */
static struct sim_node *random_node(struct sim *s)
{
    struct sim_node *ld = sim_leader(s);
    if (ld != NULL && sim_rng_chance(&s->rng, 0.5))
        return ld;
    return &s->nodes[sim_rng_below(&s->rng, s->n)];
}

static void partition(struct sim *s)
{
    sim_net_heal(s);
    uint64_t shape = sim_rng_below(&s->rng, 3);
    if (shape == 0) {
        size_t slot = random_node(s)->slot;
        sim_net_isolate(s, slot);
        sim_trace(s, RAFT_NONE, "net: node %zu isolated", slot + 1);
    } else if (shape == 1) {
        /* Two sides, neither empty. */
        bool side[RAFT_MAX_NODES];
        size_t first = sim_rng_below(&s->rng, s->n);
        for (size_t i = 0; i < s->n; i++)
            side[i] = i == first ? false : sim_rng_chance(&s->rng, 0.5);
        side[(first + 1 + sim_rng_below(&s->rng, s->n - 1)) % s->n] = true;
        char desc[64];
        size_t used = 0;
        for (int want = 0; want < 2; want++) {
            used += (size_t)snprintf(desc + used, sizeof(desc) - used, "%s", want ? " | " : "");
            for (size_t i = 0; i < s->n; i++)
                if (side[i] == (bool)want)
                    used += (size_t)snprintf(desc + used, sizeof(desc) - used, "%zu ", i + 1);
        }
        for (size_t i = 0; i < s->n; i++)
            for (size_t j = 0; j < s->n; j++)
                s->net.cut[i][j] = side[i] != side[j];
        sim_trace(s, RAFT_NONE, "net: partition %s", desc);
    } else {
        /* Some links fail one way only. */
        for (size_t i = 0; i < s->n; i++)
            for (size_t j = 0; j < s->n; j++)
                s->net.cut[i][j] = i != j && sim_rng_chance(&s->rng, 0.3);
        sim_trace(s, RAFT_NONE, "net: random one-way link failures");
    }
}

static void fault(struct sim *s, struct chaos *c)
{
    c->next_fault_ms = next_time(s, c->fault_every_ms);
    if (c->disk_failures && sim_rng_chance(&s->rng, 0.25)) {
        struct sim_node *nd = random_node(s);
        sim_disk_failing(s, nd, s->now + sim_rng_range(&s->rng, 200, 3000), SIM_DISK_ANY);
        return;
    }
    if (c->membership && sim_rng_chance(&s->rng, 0.25)) {
        struct sim_node *ld = sim_leader(s);
        if (ld != NULL)
            sim_change_members(s, ld, sim_rng_chance(&s->rng, 0.55));
        return;
    }
    if (c->transfers && sim_rng_chance(&s->rng, 0.2)) {
        struct sim_node *ld = sim_leader(s);
        if (ld != NULL && sim_rng_chance(&s->rng, 0.85)) {
            sim_transfer(s, ld, s->nodes[sim_rng_below(&s->rng, s->n)].id);
        } else {
            {
                /* With membership changes one of them stays on: without either,
                 * a removed server that never learned of its removal keeps
                 * deposing leaders (dissertation 4.2.3; README, Limits). */
                bool prevote = sim_rng_chance(&s->rng, 0.7);
                bool check_quorum = sim_rng_chance(&s->rng, 0.7) || (c->membership && !prevote);
                sim_set_options(s, prevote, check_quorum);
            }
        }
        return;
    }
    uint64_t roll = sim_rng_below(&s->rng, 100);
    if (roll < 35 && c->partitions) {
        partition(s);
    } else if (roll < 55 && c->partitions) {
        sim_net_heal(s);
        sim_trace(s, RAFT_NONE, "net: healed");
    } else if (roll < 85 && c->crashes) {
        struct sim_node *nd = random_node(s);
        uint64_t down = sim_rng_range(&s->rng, s->p.down_min_ms, s->p.down_max_ms);
        sim_crash(s, nd, s->now + down);
    } else {
        struct sim_node *nd = &s->nodes[sim_rng_below(&s->rng, s->n)];
        sim_timeout_now(s, nd);
    }
}

/* Runs events up to limit, then the client and fault events due then. */
static void run_until_next(struct sim *s, struct chaos *c, uint64_t limit, bool faults)
{
    uint64_t next = c->next_propose_ms < c->next_read_ms ? c->next_propose_ms : c->next_read_ms;
    if (faults && c->next_fault_ms < next)
        next = c->next_fault_ms;
    if (next > limit)
        next = limit;
    if (sim_step(s, next))
        return;
    if (s->now >= c->next_propose_ms)
        client_propose(s, c);
    else if (s->now >= c->next_read_ms)
        client_read(s, c);
    else if (faults && s->now >= c->next_fault_ms)
        fault(s, c);
}

/* What the healed cluster must do, one goal after the other. */
struct liveness {
    int stage; /* 0 write, 1 wait commit, 2 read, 3 wait read, 4 wait disks, 5 done */
    uint64_t index, term, read_id;
    struct sim_node *proposer; /* the leader that took the write, in life */
    unsigned life;
};

/* The servers that must keep up: the members of the leader's configuration
 * (every server when there is no leader). */
static bool must_keep_up(struct sim *s, const struct sim_node *nd)
{
    const struct sim_node *ld = sim_leader(s);
    return ld == NULL || raft_is_member(&ld->r, nd->id);
}

static bool committed_everywhere(struct sim *s, uint64_t index, uint64_t term)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (!must_keep_up(s, nd))
            continue;
        /* An entry a snapshot covers was checked through the snapshot. */
        if (!nd->up || nd->r.commit_index < index ||
            (index >= nd->r.log.snapshot_index && raft_term_at(&nd->r, index) != term))
            return false;
    }
    return true;
}

/* A write not yet committed is lost for good once its leader's term is
 * over: a new leader may truncate it (a stale leader takes writes too). */
static bool write_may_commit(struct sim *s, const struct liveness *lv)
{
    if (s->n_committed >= lv->index)
        return s->committed[lv->index - 1].e.term == lv->term;
    const struct sim_node *nd = lv->proposer;
    return nd->up && nd->life == lv->life && nd->r.role == RAFT_LEADER &&
           nd->r.current_term == lv->term;
}

/* Every node writes its disk again and has stored and applied the write: a
 * node's core may learn of a commit while its disk still fails. */
static bool disks_caught_up(struct sim *s, uint64_t index)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (!must_keep_up(s, nd))
            continue;
        uint64_t stored = sim_disk_last(&nd->disk) > nd->disk.snap_index ? sim_disk_last(&nd->disk)
                                                                         : nd->disk.snap_index;
        if (!nd->up || nd->disk_error || stored < index || nd->applied < index)
            return false;
    }
    return true;
}

static void liveness_step(struct sim *s, struct liveness *lv)
{
    struct sim_node *ld = sim_leader(s);
    switch (lv->stage) {
    case 0:
        if (ld != NULL && sim_propose(s, ld, &lv->index, &lv->term) == RAFT_OK) {
            lv->proposer = ld;
            lv->life = ld->life;
            lv->stage = 1;
        }
        break;
    case 1:
        if (committed_everywhere(s, lv->index, lv->term))
            lv->stage = 2;
        else if (!write_may_commit(s, lv))
            lv->stage = 0; /* write again */
        break;
    case 2:
        if (ld != NULL && sim_read(s, ld, &lv->read_id) == RAFT_OK)
            lv->stage = 3;
        break;
    case 3: {
        const struct sim_read *rd = &s->reads[lv->read_id - 1];
        if (rd->answered)
            lv->stage = rd->ok ? 4 : 2;
        break;
    }
    case 4:
        if (disks_caught_up(s, lv->index))
            lv->stage = 5;
        break;
    }
}

static const char *liveness_goal(int stage)
{
    static const char *goals[] = {"no leader took a write",
                                  "the write did not commit everywhere",
                                  "no leader took a read",
                                  "the read did not succeed",
                                  "a node's disk did not recover or it did not catch up",
                                  "done"};
    return goals[stage];
}

bool sim_run_seed(uint64_t seed, size_t n, uint64_t steps, bool verbose)
{
    struct sim_rng g;
    sim_rng_seed(&g, seed ^ ((uint64_t)n << 56));
    struct sim_params p;
    struct chaos c;
    draw_params(&g, &p, &c);
    struct sim s;
    sim_init(&s, n, sim_rng_next(&g), &p, verbose);
    s.work_limit += 100 * steps;
    s.net.drop = c.drop;
    s.net.dup = c.dup;
    s.net.max_delay_ms = c.max_delay_ms;
    if (verbose) {
        char faults[128] = "no faults";
        if (c.fault_every_ms)
            snprintf(faults, sizeof(faults), "faults every %" PRIu64 " ms (%s%s%sforced elections)",
                     c.fault_every_ms, c.partitions ? "partitions, " : "",
                     c.crashes ? "crashes, " : "", c.disk_failures ? "failing disks, " : "");
        printf(
            "seed %" PRIu64 ": %zu nodes, election %u-%u ms, heartbeat %u ms, tick %u ms%s%s, "
            "chaos %" PRIu64 " ms, loss %.0f%%, dup %.0f%%, delay 1-%u ms, %s, crash in ready "
            "%.1f%%, in persist %.1f%%, send first %.0f%%, batches up to %u, disk 0-%u ms, "
            "disk retry %u ms, compact %.0f%% every %u+, chunks of %u, pre-vote %s, "
            "check-quorum %s%s%s, initial voters %u, deferred syncs %.0f%%, appends in flight %u, "
            "lease %u ms, clock drift %.0f%%\n",
            seed, n, p.election_min_ms, p.election_max_ms, p.heartbeat_ms, p.tick_ms,
            p.tick_at_deadlines ? " and at deadlines" : "",
            p.tick_before_event ? ", before events" : "", c.chaos_ms, c.drop * 100, c.dup * 100,
            c.max_delay_ms, faults, p.crash_in_ready * 100, p.crash_in_persist * 100,
            p.send_first * 100, p.max_batch, p.disk_ms, p.disk_retry_ms, p.compact_chance * 100,
            p.compact_gap, p.snapshot_chunk, p.prevote ? "on" : "off",
            p.check_quorum ? "on" : "off", c.transfers ? ", transfers" : "",
            c.membership ? ", membership changes" : "",
            p.initial_voters ? p.initial_voters : (unsigned)n, p.defer_sync * 100, p.max_inflight,
            p.lease_ms, p.clock_drift * 100);
    }

    sim_start_all(&s);
    c.next_propose_ms = next_time(&s, c.propose_every_ms);
    c.next_read_ms = next_time(&s, c.read_every_ms);
    c.next_fault_ms = c.fault_every_ms ? next_time(&s, c.fault_every_ms) : UINT64_MAX;
    bool faults = c.fault_every_ms != 0;
    uint64_t chaos_end = steps ? UINT64_MAX : c.chaos_ms;
    while (!s.failed && s.now < chaos_end && (steps == 0 || s.events < steps))
        run_until_next(&s, &c, chaos_end, faults);

    /* Heal: no loss, no partition, every node up, no more crashes, every
     * disk writable (a node whose disk failed notices at its next retry). */
    uint64_t heal_ms = s.now;
    if (!s.failed)
        sim_trace(&s, RAFT_NONE, "heal: everything up, no loss, no partition");
    s.net.drop = 0;
    s.net.dup = 0;
    if (s.net.max_delay_ms > 10)
        s.net.max_delay_ms = 10;
    s.p.crash_in_ready = 0;
    s.p.crash_in_persist = 0;
    sim_net_heal(&s);
    for (size_t i = 0; i < n; i++) {
        sim_disk_failing(&s, &s.nodes[i], 0, SIM_DISK_ANY);
        sim_start(&s, &s.nodes[i]);
    }
    struct liveness lv = {0};
    uint64_t deadline = heal_ms + HEAL_DEADLINE_MS;
    while (!s.failed && lv.stage != 5 && s.now < deadline) {
        run_until_next(&s, &c, deadline, false);
        liveness_step(&s, &lv);
    }
    if (!s.failed && lv.stage != 5) {
        for (size_t i = 0; i < n && verbose; i++) {
            const struct raft *r = &s.nodes[i].r;
            char ids[64];
            raft_members_ids_text(&r->members, ids, sizeof ids);
            sim_trace(&s, s.nodes[i].id,
                      "%s of term %" PRIu64 ", log to %" PRIu64 "/%" PRIu64 ", commit %" PRIu64
                      ", configuration %s (from #%" PRIu64 ")",
                      raft_role_name(r->role), r->current_term, raft_last_index(r),
                      raft_last_term(r), r->commit_index, ids, r->members_index);
        }
        sim_fail(&s, "liveness: %d ms after healing, %s", HEAL_DEADLINE_MS,
                 liveness_goal(lv.stage));
    }
    if (!s.failed)
        sim_check_full(&s);

    bool ok = !s.failed;
    if (!ok)
        printf("FAIL seed %" PRIu64 " %s (replay: raftkv-sim --nodes %zu --seed %" PRIu64
               " --verbose)\n",
               seed, s.failure, n, seed);
    else if (verbose) {
        unsigned disk_failures = 0, compactions = 0, installs = 0;
        for (size_t i = 0; i < n; i++) {
            disk_failures += s.nodes[i].disk_failures;
            compactions += s.nodes[i].compactions;
            installs += s.nodes[i].installs;
        }
        printf("seed %" PRIu64 ": ok, %" PRIu64 " events, work %" PRIu64 ", %" PRIu64
               " messages (%" PRIu64 " lost), %zu entries committed, %zu reads, %u failed "
               "persists, %u snapshots taken, %u installed, healed in %" PRIu64 " ms\n",
               seed, s.events, s.work, s.net.sent, s.net.lost, s.n_committed, s.n_reads,
               disk_failures, compactions, installs, s.now - heal_ms);
    }
    fflush(stdout);
    sim_free(&s);
    return ok;
}

/* sim.h - a deterministic simulation of a cluster of pure Raft cores.
 *
 * N cores live in one process on one virtual clock (milliseconds). Each is
 * driven as the real node (node/loop.c) drives it: one turn takes in a tick
 * and a batch of waiting messages (or client requests), then every ready is
 * carried out as persist, send, apply, reads, advance; while its disk
 * writes, a node takes nothing in and messages wait for the next turn. The
 * network delays, drops, duplicates and reorders messages and can be
 * partitioned; nodes crash and restart from what their disk kept
 * (sim_disk.c: unsynced writes are lost or torn). A disk can also fail for a
 * while (full, I/O errors): the node then does what node/loop.c does, tells
 * the core raft_storage_failed, stops ticking it and retries the persist
 * every disk_retry_ms. All randomness comes from
 * one seed, so a failing run replays exactly. After every turn the checker
 * (sim_check.c) verifies the safety properties of the Raft paper's Figure 3
 * and that no message promises what the disk could lose.
 */
#ifndef RAFTKV_SIM_H
#define RAFTKV_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* ------------------------------------------------------------ randomness */

/* xorshift64*, seeded through splitmix64. */
struct sim_rng {
    uint64_t state;
};

void sim_rng_seed(struct sim_rng *g, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *g);
uint64_t sim_rng_below(struct sim_rng *g, uint64_t n);               /* [0, n), 0 when n == 0 */
uint64_t sim_rng_range(struct sim_rng *g, uint64_t lo, uint64_t hi); /* [lo, hi] */
bool sim_rng_chance(struct sim_rng *g, double p);

/* ------------------------------------------------------------ the cluster */

/* An older snapshot file, kept while raft_snapshot_in_use. */
struct sim_snapshot {
    uint64_t index, term;
    uint8_t *data;
    size_t len;
};

/* What a node wrote to its disk (sim_disk.c). The hard state is durable as
 * soon as it is written; entries[0..synced) are durable, the rest were
 * written but not yet synced and a crash keeps only a prefix of them. The
 * snapshot is replaced atomically (a file renamed into place) and durable
 * at once; the log may still hold entries it covers (dropped lazily). */
struct sim_disk {
    uint64_t term;
    uint32_t vote;
    struct raft_entry *entries; /* entries[i] has index base + 1 + i; deep copies */
    size_t len, cap;
    uint64_t base;
    size_t synced; /* entries that survive any crash */
    uint64_t snap_index, snap_term;
    uint8_t *snap; /* the snapshot file (sim_cluster.c: snapshot_make) */
    size_t snap_len;
    struct sim_snapshot *old; /* older snapshot files a leader still sends */
    size_t n_old;
    uint32_t *vote_of_term; /* every vote ever made durable, by term */
    size_t n_vote_of_term;
};

/* The steps of a persist, in order; a failing disk fails one of them. */
enum sim_disk_op {
    SIM_DISK_ANY = 0, /* whichever step the ready has, drawn at random */
    SIM_DISK_HARD_STATE,
    SIM_DISK_TRUNCATE,
    SIM_DISK_APPEND,
    SIM_DISK_SYNC,
};

/* A message in flight, owning a copy of its entries. */
struct sim_packet {
    uint64_t deliver_ms; /* in a node's inbox: when it arrived there */
    uint64_t seq;        /* tie-break: equal times deliver in send order */
    struct raft_msg msg;
};

struct sim_net {
    struct sim_packet *heap; /* min-heap on (deliver_ms, seq) */
    size_t len, cap;
    uint64_t next_seq;
    double drop; /* chance a message is lost */
    double dup;  /* chance a message arrives twice */
    /* (snapshot chunks are attached by the sender, sim_cluster.c) */
    uint32_t max_delay_ms;                    /* delays are 1..max_delay_ms */
    bool cut[RAFT_MAX_NODES][RAFT_MAX_NODES]; /* [from slot][to slot]: link down */
    uint64_t sent, lost, delivered;
};

/* The checker's memory of one entry of a node's log. */
struct sim_shadow {
    uint64_t term;
    const uint8_t *data; /* where the data was: unchanged entries keep it */
    uint64_t hash;       /* of the data: a re-made but equal entry matches */
    uint32_t len;
    uint8_t type;
};

struct sim_node {
    uint32_t id;
    size_t slot;
    bool up;
    unsigned life;       /* how many times it was started */
    uint64_t restart_ms; /* while down: when it comes back, 0 = not by itself */
    uint64_t next_tick_ms;
    /* The core's clock, as the node's loop keeps it: clock_ms at the last
     * turn (clock_seen_ms, the simulation's time), running at clock_rate
     * times the simulation's (machines' clocks drift), and standing still
     * while the disk fails (node_advance_clock) to go on from there. */
    double clock_ms;
    uint64_t clock_seen_ms;
    double clock_rate;
    uint64_t busy_until_ms; /* its disk is writing: no turn before then */
    struct raft r;          /* valid while up */
    struct sim_disk disk;
    struct sim_packet *inbox; /* arrived, not yet taken in, in arrival order */
    size_t inbox_len, inbox_cap;

    /* The state machine: a hash of every entry applied, in order, as of
     * index `applied`; restored from a snapshot at start and at an install. */
    uint64_t sm_state;
    /* A snapshot being received: a temporary file, lost in a crash. */
    uint8_t *recv;
    size_t recv_len, recv_cap;
    uint64_t recv_index, recv_term;
    bool recv_done;
    unsigned compactions, installs; /* in all lives */

    /* A failing disk: every persist until disk_fail_until_ms fails at one of
     * its steps (disk_fail_op for the next one, if the ready has that step). */
    uint64_t disk_fail_until_ms;
    enum sim_disk_op disk_fail_op;
    /* The node's view, as node->disk_error: a persist failed and none has
     * succeeded since. It does not tick its core, and carries out no ready
     * before disk_retry_ms. A restart forgets it. */
    bool disk_error;
    uint64_t disk_retry_ms;
    unsigned disk_failures; /* persists that failed, in all lives */

    /* What the checker saw of this node after its last event. */
    struct sim_shadow *shadow;
    size_t shadow_len, shadow_cap;
    uint64_t seen_commit;
    uint64_t seen_term;
    enum raft_role seen_role;
    /* The storage thread (node/storage_thread.c): entries written but not
     * synced, one background sync in flight until sync_done_ms covering
     * up to sync_index, and the messages that wait for a sync. */
    bool syncing;
    uint64_t sync_done_ms;
    uint64_t sync_index, sync_term;
    uint64_t written_seq, busy_seq, synced_seq;
    struct raft_msg *held;
    uint64_t *held_seq;
    size_t n_held, cap_held;
    uint64_t deferred_syncs; /* background syncs completed, in all lives */

    uint64_t applied;       /* the state machine's last applied index */
    uint64_t complete_upto; /* committed entries verified in its log while leader */
    uint64_t checks;        /* how many times the checker looked at it */
};

struct sim_params {
    uint32_t election_min_ms, election_max_ms, heartbeat_ms;
    uint32_t tick_ms;        /* a node is ticked at least this often */
    bool tick_at_deadlines;  /* and also exactly when its timers expire */
    bool tick_before_event;  /* every turn ticks the clock, not only when a tick is due */
    double send_first;       /* chance to send before persisting, when the core allows it */
    double crash_in_ready;   /* chance to crash between persisting and sending */
    double crash_in_persist; /* chance to crash writing the hard state or before the fsync */
    uint32_t down_min_ms, down_max_ms; /* how long a crashed node stays down */
    uint32_t max_batch;                /* most messages one turn takes in (0 or 1: one at a time) */
    uint32_t disk_ms;        /* a turn that writes the disk keeps the node busy 0..disk_ms */
    uint32_t disk_retry_ms;  /* after a failed persist, the next try (node: 1000); 0 = 1000 */
    double compact_chance;   /* after a ready that applied, chance to snapshot and compact */
    uint32_t compact_gap;    /* only when this many entries were applied since the snapshot */
    uint32_t snapshot_chunk; /* bytes a leader puts in one InstallSnapshot (0: 16) */
    uint32_t initial_voters; /* the first k nodes are the initial voters; 0: all */
    bool prevote;            /* the cores' options at start (dissertation 9.6) */
    bool check_quorum;
    double defer_sync;     /* chance a ready that may leaves its fsync to the storage thread */
    uint32_t max_inflight; /* AppendEntries with entries out to a follower (node: 1 by default) */
    uint32_t lease_ms;     /* leader leases (raft_config.lease_ms); 0: off, as in the node */
    double clock_drift;    /* each node's clock runs at 1 +- up to this the simulation's */
};

/* A read asked of a leader, as the checker remembers it. */
struct sim_read {
    uint32_t node;
    unsigned life;
    uint64_t term;
    uint64_t must_cover; /* everything committed anywhere when it was asked */
    bool answered;
    bool ok;
    uint64_t index;
    /* Failed by the node itself when its disk failed (the client heard
     * TRYAGAIN): what the core says of it later is not passed on. */
    bool failed_by_node;
};

/* A client command: where the leader said it would sit, where it committed. */
struct sim_command {
    uint64_t index, term;
    uint64_t committed_at;
};

/* The committed entry at one index, as first seen committed by any node. */
struct sim_committed {
    struct raft_entry e;
    uint64_t state;     /* the state machine after applying entries up to it */
    uint64_t term_seen; /* lowest current_term of a node that saw it committed */
};

/* The log of the leader of a term while it led, as runs of equal terms:
 * run i holds term[i] from index first[i] on (the last run is the leader's
 * own term, which it only appends to). */
struct sim_leader_log {
    uint64_t *first, *term;
    size_t n;
};

typedef void sim_observer(void *arg, const struct raft_msg *m);

struct sim {
    size_t n;
    struct sim_node nodes[RAFT_MAX_NODES];
    struct sim_params p;
    struct sim_net net;
    struct sim_rng rng;
    uint64_t now;
    uint64_t events;
    uint64_t work;       /* events plus entries copied into messages */
    uint64_t work_limit; /* more than this is a runaway, not a test */
    bool verbose;
    bool failed;
    char failure[512];

    /* Global record kept by the checker. */
    uint32_t *leader_of_term;
    size_t n_leader_of_term;
    struct sim_leader_log *leader_logs; /* by term: recorded at its first AppendEntries */
    size_t n_leader_logs;
    struct sim_committed *committed;
    size_t n_committed, cap_committed;
    struct sim_read *reads; /* read id k is reads[k - 1] */
    size_t n_reads, cap_reads;
    /* Lease reads of the ready being carried out whose lease ran out before
     * they were served: asked again by a round after raft_advance. */
    uint64_t *lease_retry;
    size_t n_lease_retry, cap_lease_retry;
    struct sim_command *commands; /* command id k is commands[k] */
    size_t n_commands, cap_commands;

    /* Scenario hook: sees every message a node sends. */
    sim_observer *observe;
    void *observe_arg;
};

/* sim_cluster.c: the nodes and how they are driven. */
void *sim_realloc(void *p, size_t size); /* exits when memory runs out */
void sim_init(struct sim *s, size_t n, uint64_t seed, const struct sim_params *p, bool verbose);
void sim_free(struct sim *s);
void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_trace(struct sim *s, uint32_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sim_start(struct sim *s, struct sim_node *nd);
void sim_start_all(struct sim *s);
void sim_crash(struct sim *s, struct sim_node *nd, uint64_t restart_ms);
/* The node's disk fails every write until until_ms (s->now or earlier: it
 * works again); the first persist to fail fails at step `at` if it has it. */
void sim_disk_failing(struct sim *s, struct sim_node *nd, uint64_t until_ms, enum sim_disk_op at);
/* Runs the next tick, delivery or restart due at or before until; false
 * (with the clock moved to until) when there is none. */
bool sim_step(struct sim *s, uint64_t until);
void sim_run_for(struct sim *s, uint64_t ms);
typedef bool sim_pred(struct sim *s, void *arg);
bool sim_run_until(struct sim *s, uint64_t deadline_ms, sim_pred *pred, void *arg);
/* Client events at one node. Return the core's result. */
int sim_propose(struct sim *s, struct sim_node *nd, uint64_t *index, uint64_t *term);
/* Several commands in one go, as a node batches its clients; how many were taken. */
size_t sim_propose_batch(struct sim *s, struct sim_node *nd, size_t count);
int sim_read(struct sim *s, struct sim_node *nd, uint64_t *read_id);
void sim_timeout_now(struct sim *s, struct sim_node *nd);
/* A leadership transfer asked of nd (raft_transfer); the core's result. */
int sim_transfer(struct sim *s, struct sim_node *nd, uint32_t target);
/* A membership change at nd: a node outside the configuration added as a
 * learner, or a member removed (add false); the core's result. */
int sim_change_members(struct sim *s, struct sim_node *nd, bool add);
/* Pre-Vote and CheckQuorum turned on or off at every live node. */
void sim_set_options(struct sim *s, bool prevote, bool check_quorum);
/* Snapshot the node's state machine as of what it applied, durably, then
 * raft_compact; drop_log: drop the covered log from the disk too. */
bool sim_compact(struct sim *s, struct sim_node *nd, bool drop_log);
/* Hands hand-made messages to a node as if they had arrived; a batch is
 * taken in by one turn, before one ready. */
void sim_inject(struct sim *s, struct sim_node *nd, const struct raft_msg *m);
void sim_inject_batch(struct sim *s, struct sim_node *nd, const struct raft_msg *msgs, size_t n);
struct sim_node *sim_node_by_id(struct sim *s, uint32_t id);
/* The node's core clock now (the simulation's, less what it stood still). */
uint64_t sim_node_clock(const struct sim *s, const struct sim_node *nd);
/* The live leader with the highest term, NULL if none. */
struct sim_node *sim_leader(struct sim *s);
const char *sim_msg_name(enum raft_msg_type type);

/* sim_disk.c: the disk model. */
void sim_disk_save_hard_state(struct sim_disk *d, uint64_t term, uint32_t vote);
uint64_t sim_disk_last(const struct sim_disk *d); /* the last index the log holds, or base */
/* The entry at index, NULL when the log does not hold it. */
const struct raft_entry *sim_disk_entry(const struct sim_disk *d, uint64_t index);
void sim_disk_truncate(struct sim_disk *d, uint64_t from);
void sim_disk_drop_prefix(struct sim_disk *d, uint64_t upto); /* entries <= upto */
/* Replace the snapshot (write, sync, rename: atomic and durable). */
void sim_disk_save_snapshot(struct sim_disk *d, uint64_t index, uint64_t term, const uint8_t *data,
                            size_t len);
/* The snapshot file ending at index, the newest or an older one; NULL if gone. */
const uint8_t *sim_disk_snapshot(const struct sim_disk *d, uint64_t index, uint64_t *term,
                                 size_t *len);
/* Delete the older snapshot files the core no longer uses. */
void sim_disk_prune_snapshots(struct sim_disk *d, const struct raft *r);
void sim_disk_append(struct sim_disk *d, uint64_t term, uint8_t type, const void *data,
                     uint32_t len);
void sim_disk_sync(struct sim_disk *d);
void sim_disk_sync_through(struct sim_disk *d, uint64_t index); /* entries <= index */
/* After a failed write or sync, as wal_reset_to_synced: the unsynced entries
 * are dropped; how many. The hard state keeps what was last saved. */
size_t sim_disk_reset_to_synced(struct sim_disk *d);
size_t sim_disk_crash(struct sim_disk *d, struct sim_rng *g); /* how many entries were lost */
void sim_disk_free(struct sim_disk *d);

/* sim_net.c: the network. */
void sim_net_send(struct sim *s, const struct raft_msg *m);
bool sim_net_pop(struct sim *s, struct sim_packet *out); /* caller frees with sim_packet_free */
void sim_packet_free(struct sim_packet *p);
void sim_net_heal(struct sim *s);
void sim_net_isolate(struct sim *s, size_t slot);
void sim_net_free(struct sim *s);

/* sim_check.c: the safety properties, checked after every event. */
void sim_check_node(struct sim *s, struct sim_node *nd);
void sim_check_restored(struct sim *s, struct sim_node *nd);
void sim_check_sent(struct sim *s, struct sim_node *nd, const struct raft_msg *m);
void sim_check_persist(struct sim *s, struct sim_node *nd, const struct raft_ready *rd);
void sim_check_apply(struct sim *s, struct sim_node *nd, uint64_t index,
                     const struct raft_entry *e);
void sim_check_read(struct sim *s, struct sim_node *nd, const struct raft_read_result *res);
void sim_check_full(struct sim *s);
void sim_note_command(struct sim *s, uint64_t id, uint64_t index, uint64_t term);
bool sim_entry_equal(const struct raft_entry *a, const struct raft_entry *b);
/* The state machine after applying e to state. */
uint64_t sim_state_apply(uint64_t state, const struct raft_entry *e);
/* A node's state machine was restored from a snapshot at index: it must be
 * the state of the committed entries up to index. */
void sim_check_snapshot_state(struct sim *s, struct sim_node *nd, uint64_t index, uint64_t state,
                              const char *how);

/* sim_chaos.c: one seeded random run; true when it passed. */
bool sim_run_seed(uint64_t seed, size_t n, uint64_t steps, bool verbose);

/* sim_scenarios.c: directed tests; returns how many failed. */
int sim_run_scenarios(bool verbose);

#endif

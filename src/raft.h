/* raft.h - the pure Raft core.
 *
 * The core is a state machine with no sockets, files, clock or rand() inside.
 * The caller feeds it one event at a time (a tick with the current time, a
 * message, a client proposal, a read request) and then collects what it must
 * do with raft_ready(): hard state and entries to persist, messages to send,
 * committed entries to apply, reads that are now safe to serve. The caller
 * carries these out in the order: persist, send, apply; then calls
 * raft_advance().
 *
 * Fields of struct raft may be read by anyone (status, tests); only
 * raft_*.c change them.
 */
#ifndef RAFTKV_RAFT_H
#define RAFTKV_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_MAX_NODES 9
#define RAFT_NONE 0 /* "no node": votedFor unset, leader unknown */

/* Limits on one AppendEntries message. */
#define RAFT_MAX_BATCH_ENTRIES 1024
#define RAFT_MAX_BATCH_BYTES (4u * 1024u * 1024u)
/* Entries a leader sends ahead of a follower's acknowledgements. */
#define RAFT_MAX_INFLIGHT 8192

/* No term or index from the network is trusted beyond these: a message that
 * claims more is dropped, so nothing can wrap (a term of 2^64 - 1 would turn
 * into 0 at the next election). Real clusters stay far below. */
#define RAFT_TERM_MAX (UINT64_C(1) << 62)
#define RAFT_INDEX_MAX (UINT64_C(1) << 62)

enum raft_role { RAFT_FOLLOWER = 0, RAFT_CANDIDATE = 1, RAFT_LEADER = 2 };

enum raft_entry_type { RAFT_ENTRY_NOOP = 0, RAFT_ENTRY_COMMAND = 1 };

struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* enum raft_entry_type */
    uint32_t len;
    uint8_t *data; /* owned by whoever holds the entry; NULL when len == 0 */
};

enum raft_msg_type {
    RAFT_MSG_VOTE = 1,
    RAFT_MSG_VOTE_REPLY = 2,
    RAFT_MSG_APPEND = 3,
    RAFT_MSG_APPEND_REPLY = 4,
};

/* One message between nodes. Fields not used by a type are zero. */
struct raft_msg {
    enum raft_msg_type type;
    uint32_t from;
    uint32_t to;
    uint64_t term;

    /* RequestVote: the candidate's last log entry. */
    uint64_t last_log_index;
    uint64_t last_log_term;
    /* RequestVote reply. */
    bool granted;

    /* AppendEntries. Outgoing entries point into the sender's log and stay
     * valid until the next call into the core; incoming ones are copied. */
    uint64_t prev_index;
    uint64_t prev_term;
    uint64_t commit;
    size_t n_entries;
    const struct raft_entry *entries;
    uint64_t read_seq; /* leader's heartbeat round, echoed back (ReadIndex) */

    /* AppendEntries reply. */
    bool success;
    uint64_t match_index;    /* success: last index known to match */
    uint64_t rejected_index; /* failure: the prev_index that was rejected */
    uint64_t hint_index;     /* failure: where the leader should look next */
    uint64_t hint_term;      /* failure: term of the conflicting entry, 0 if none */
};

/* A read request that is now safe (or can never be) served. */
struct raft_read_result {
    uint64_t read_id;
    uint64_t index; /* serve once last_applied >= index */
    bool ok;        /* false: this node is no longer the leader */
};

struct raft_progress {
    uint64_t next;         /* next index to send */
    uint64_t match;        /* highest index known replicated */
    bool probing;          /* after a rejection: one message at a time */
    uint64_t acked_seq;    /* highest read_seq echoed back */
    uint64_t last_ack_ms;  /* time of the last reply from this peer */
    uint64_t last_send_ms; /* time of the last AppendEntries sent */
};

struct raft_config {
    uint32_t id;
    size_t n_nodes;
    uint32_t node_ids[RAFT_MAX_NODES]; /* every member, self included */
    uint32_t election_min_ms;
    uint32_t election_max_ms;
    uint32_t heartbeat_ms;
    uint64_t seed; /* randomness for election timeouts */
};

struct raft_pending_read {
    uint64_t read_id;
    uint64_t index;
    uint64_t seq; /* heartbeat round that must reach a majority */
};

struct raft_ready {
    /* 1. Persist. */
    bool hard_state_changed;
    uint64_t term;
    uint32_t voted_for;
    uint64_t truncate_from;           /* drop stored entries >= this first; 0 = none */
    const struct raft_entry *entries; /* then append these */
    size_t n_entries;
    /* 2. Send. When false the messages may leave before the fsync (a leader
     * writing its disk while followers write theirs). */
    bool persist_before_send;
    const struct raft_msg *msgs;
    size_t n_msgs;
    /* 3. Apply entries apply_from..apply_to (inclusive) via raft_entry_at. */
    uint64_t apply_from;
    uint64_t apply_to;
    /* 4. Reads. Those ok are safe once entries up to apply_to are applied. */
    const struct raft_read_result *reads;
    size_t n_reads;
};

struct raft_log {
    struct raft_entry *entries; /* entries[i] has index i + 1 */
    size_t len;
    size_t cap;
};

struct raft {
    struct raft_config cfg;
    uint64_t now_ms;
    uint64_t rng;

    /* Figure 2, persistent state on all servers. */
    uint64_t current_term;
    uint32_t voted_for;
    struct raft_log log;

    /* Figure 2, volatile state on all servers. */
    uint64_t commit_index;
    uint64_t last_applied;

    enum raft_role role;
    uint32_t leader_id;
    uint64_t election_deadline_ms;
    uint32_t election_timeout_ms; /* the timeout drawn for this round */
    uint64_t election_started_ms; /* when the current timeout round began */
    uint32_t votes;               /* bitmask of granted votes, bit = node id */
    uint64_t heartbeat_due_ms;

    /* Figure 2, volatile state on leaders (index by position in cfg.node_ids). */
    struct raft_progress progress[RAFT_MAX_NODES];

    /* Storage bookkeeping. */
    uint64_t stable_index;    /* entries handed to storage */
    uint64_t persisted_index; /* entries storage confirmed durable */
    uint64_t truncate_from;   /* pending truncation for the next ready */
    bool hard_state_dirty;

    /* ReadIndex (dissertation 6.4). */
    uint64_t read_seq;
    bool read_broadcast_needed;
    struct raft_pending_read *reads;
    size_t n_reads, cap_reads;

    /* Output buffers, reset by raft_advance. */
    struct raft_msg *out_msgs;
    size_t n_out, cap_out;
    struct raft_read_result *out_reads;
    size_t n_out_reads, cap_out_reads;
    uint64_t ready_apply_to;
    uint64_t ready_stable_to;
};

enum raft_error {
    RAFT_OK = 0,
    RAFT_ENOTLEADER = -1,
    RAFT_ENOMEM = -2,
    RAFT_EINVAL = -3,
};

const char *raft_strerror(int err);
const char *raft_role_name(enum raft_role role);

/* Lifecycle. raft_restore takes ownership of entries (an array of n, which it
 * frees) and must come before the first tick. */
int raft_init(struct raft *r, const struct raft_config *cfg, uint64_t now_ms);
int raft_restore(struct raft *r, uint64_t term, uint32_t voted_for, struct raft_entry *entries,
                 size_t n);
void raft_close(struct raft *r);

/* Events. */
void raft_tick(struct raft *r, uint64_t now_ms);
int raft_step(struct raft *r, const struct raft_msg *m);
/* Append a client command; on success *index and *term say where it sits. */
int raft_propose(struct raft *r, const uint8_t *data, uint32_t len, uint64_t *index,
                 uint64_t *term);
/* Ask for a linearizable read; the answer arrives in a later ready. */
int raft_read(struct raft *r, uint64_t read_id);
/* Start an election now (the cockpit's "timeout N"). */
void raft_timeout_now(struct raft *r);

/* Output. */
bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r, const struct raft_ready *rd);
/* Instead of raft_advance when persisting the ready failed (a full disk, an
 * I/O error): storage holds entries up to durable_index only. The ready's
 * messages are dropped (they promised what is not on disk), its reads are
 * the caller's to fail, and a leader steps down, since it can no longer
 * count its own copy. The next ready asks to persist the rest again. */
void raft_storage_failed(struct raft *r, uint64_t durable_index);

/* Queries. */
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_last_term(const struct raft *r);
uint64_t raft_term_at(const struct raft *r, uint64_t index); /* 0 if absent */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
size_t raft_quorum(const struct raft *r);
int raft_node_slot(const struct raft *r, uint32_t id); /* position in cfg.node_ids, -1 */

/* Entries. */
void raft_entry_free(struct raft_entry *e);
int raft_entry_copy(struct raft_entry *dst, const struct raft_entry *src);

#endif

/* raft.h - the pure Raft core.
 *
 * The core is a state machine with no sockets, files, clock or rand() inside.
 * The caller feeds it one event at a time (a tick with the current time, a
 * message, a client proposal, a read request, a compaction) and then
 * collects what it must do with raft_ready(): a received snapshot to install,
 * hard state and entries to persist, snapshot bytes to store, messages to
 * send, committed entries to apply, reads that are now safe to serve. The
 * caller carries these out in the order of struct raft_ready (persist, the
 * install among it; send; restore the state machine and apply; reads); then
 * calls raft_advance().
 *
 * Log compaction (Raft paper, section 7). The caller owns the snapshot
 * files; the core only knows the last one's index and term:
 *
 * - Taking a snapshot: when the state machine has applied index I, the
 *   caller may write a snapshot of it, make it durable, and then call
 *   raft_compact(r, I): the core forgets entries <= I. The caller's log
 *   storage may drop entries <= I at any time after the snapshot is durable
 *   (a log that still holds them is fine: raft_restore skips them).
 * - Sending one (leader): a peer that needs entries the log no longer has
 *   gets RAFT_MSG_SNAPSHOT messages, one chunk at a time. The core fills in
 *   the term, the snapshot's index and term and the chunk's offset; before
 *   sending, the caller attaches up to its chunk size of bytes of its
 *   snapshot file from that offset (data, len) and sets done when they reach
 *   the file's end. A transfer starts with the newest snapshot (that of the
 *   last raft_compact, raft_restore or install) and goes on with it after
 *   later compactions, so the caller keeps an older snapshot file while
 *   raft_snapshot_in_use says so, and may delete it after.
 * - Receiving one (follower): each chunk accepted comes out in
 *   rd.snapshot_chunk, to be written into a temporary file (offset 0 starts
 *   a new one); after the last chunk (done) is durable and raft_advance
 *   called, a later ready carries rd.snapshot_install: the temporary file
 *   becomes the node's snapshot, durably, before the log entries it covers
 *   are dropped, and the state machine is restored from it before anything
 *   after it is applied. A crash before the install forgets the transfer.
 * - Restart: raft_restore takes the snapshot's index and term and the log
 *   entries the storage holds; the state machine starts from the snapshot.
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
/* AppendEntries carrying entries that a leader has out to a follower at
 * once, unacknowledged (struct raft_config's max_inflight_appends, at most
 * RAFT_MAX_INFLIGHT_MSGS). Entries proposed meanwhile go with the next, in
 * one message: a message costs a send, a receive and a wake-up on each
 * side, and the follower syncs them together anyway. With 1, a follower
 * syncs each batch alone and the leader's next batch holds everything
 * proposed meanwhile (fewest messages and syncs); with 2, the next batch
 * reaches the follower while it syncs the one before (more overlap where
 * a round trip costs more than a sync). */
#define RAFT_MAX_INFLIGHT_MSGS 8
#define RAFT_DEFAULT_INFLIGHT_MSGS 1
/* Heartbeat rounds whose start a leader remembers for its lease. */
#define RAFT_LEASE_ROUNDS 64
/* Limits on a snapshot from the network: one chunk, and the whole file. */
#define RAFT_SNAPSHOT_CHUNK_MAX (16u * 1024u * 1024u)
#define RAFT_SNAPSHOT_MAX_BYTES (UINT64_C(1) << 40)

/* No term or index from the network is trusted beyond these: a message that
 * claims more is dropped, so nothing can wrap (a term of 2^64 - 1 would turn
 * into 0 at the next election). Real clusters stay far below. */
#define RAFT_TERM_MAX (UINT64_C(1) << 62)
#define RAFT_INDEX_MAX (UINT64_C(1) << 62)

/* A pre-candidate (dissertation 9.6) asks whether it could win an election
 * before starting one: its term does not change until a majority says yes. */
enum raft_role { RAFT_FOLLOWER = 0, RAFT_CANDIDATE = 1, RAFT_LEADER = 2, RAFT_PRECANDIDATE = 3 };

/* A configuration entry's data is a struct raft_members, encoded by
 * raft_members_encode (dissertation chapter 4: a configuration is an entry
 * of the log, in force on a server as soon as it is in its log). */
enum raft_entry_type { RAFT_ENTRY_NOOP = 0, RAFT_ENTRY_COMMAND = 1, RAFT_ENTRY_CONFIG = 2 };

/* A member of the cluster. Voters elect leaders and count toward
 * majorities; learners receive the log and do neither (a new server
 * catching up, dissertation 4.2.1). The addresses are the caller's: the
 * core only carries them in configuration entries. */
#define RAFT_ADDR_MAX 256
enum raft_member_role { RAFT_VOTER = 0, RAFT_LEARNER = 1 };

struct raft_member {
    uint32_t id; /* 1 .. RAFT_MAX_NODES */
    uint8_t role;
    char peer[RAFT_ADDR_MAX];   /* where its peers reach it (a nanomsg URL) */
    char client[RAFT_ADDR_MAX]; /* where clients reach it (host:port) */
};

struct raft_members {
    size_t n;
    struct raft_member m[RAFT_MAX_NODES];
};

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
    RAFT_MSG_SNAPSHOT = 5,       /* InstallSnapshot (Figure 13), one chunk */
    RAFT_MSG_SNAPSHOT_REPLY = 6, /* its reply */
    RAFT_MSG_PREVOTE = 7,        /* Pre-Vote (dissertation 9.6): "could I win term `term`?" */
    RAFT_MSG_PREVOTE_REPLY = 8,  /* its reply: granted, or refused with our term */
    RAFT_MSG_TIMEOUT_NOW = 9,    /* leadership transfer (3.10): "start an election now" */
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
    /* RequestVote: sent by a leadership transfer's target (TimeoutNow), so
     * voters that heard from the leader lately vote all the same. */
    bool transfer;
    /* RequestVote and PreVote reply. */
    bool granted;
    /* Refused because the voter heard from leader leader_hint leader_ago_ms
     * ago (leader stickiness); 0: for another reason (log, term, vote). */
    uint32_t leader_hint;
    uint64_t leader_ago_ms;

    /* AppendEntries. Outgoing entries point into the sender's log and stay
     * valid until the next call into the core; incoming ones are copied. */
    uint64_t prev_index;
    uint64_t prev_term;
    uint64_t commit;
    size_t n_entries;
    const struct raft_entry *entries;
    uint64_t read_seq; /* leader's heartbeat round, echoed back (ReadIndex) */
    /* Replies to AppendEntries and InstallSnapshot: how long after taking
     * the message in the sender grants no vote to another candidate, by its
     * own clock (its election_min_ms when it runs with leases; 0 when it
     * promises nothing). A leader's lease counts only answers that promise
     * at least its own election_min_ms. */
    uint32_t promise_ms;

    /* AppendEntries reply. */
    bool success;
    uint64_t match_index;    /* success: last index known to match */
    uint64_t rejected_index; /* failure: the prev_index that was rejected */
    uint64_t hint_index;     /* failure: where the leader should look next */
    uint64_t hint_term;      /* failure: term of the conflicting entry, 0 if none */

    /* InstallSnapshot (Figure 13): the snapshot replaces the log up to and
     * including snapshot_index (lastIncludedIndex, lastIncludedTerm). The
     * core sends it with data NULL and len 0: the caller attaches the chunk
     * of its snapshot file at offset (data, len > 0) and sets done when the
     * chunk ends the file. Incoming chunks are copied. read_seq as above. */
    uint64_t snapshot_index;
    uint64_t snapshot_term;
    uint64_t offset; /* where the chunk goes in the file; reply: the chunk answered */
    const uint8_t *data;
    uint32_t len;
    bool done;
    /* InstallSnapshot reply: success = installed (the follower now holds
     * everything up to snapshot_index); else next_offset is the byte of the
     * snapshot the follower wants next (0: start again). */
    uint64_t next_offset;
};

/* A read request that is now safe (or can never be) served. */
struct raft_read_result {
    uint64_t read_id;
    uint64_t index; /* serve once last_applied >= index */
    bool ok;        /* false: this node is no longer the leader */
    /* Confirmed by the leader's lease, not by a heartbeat round: serve it
     * only if, by a clock read after the state machine was read,
     * raft_lease_end is still ahead; else ask again with raft_read_by_round. */
    bool lease;
};

/* How a leader sends to a peer (as cowsql/raft's progress.c). */
enum raft_progress_mode {
    RAFT_PROGRESS_PIPELINE = 0, /* entries sent ahead of the acknowledgements */
    RAFT_PROGRESS_PROBE = 1,    /* after a rejection: one message at a time */
    RAFT_PROGRESS_SNAPSHOT = 2, /* the entries it needs are compacted: a snapshot, chunk by chunk */
};

struct raft_progress {
    uint64_t next;  /* next index to send */
    uint64_t match; /* highest index known replicated */
    enum raft_progress_mode mode;
    uint64_t snapshot_index;  /* snapshot mode: the snapshot being sent */
    uint64_t snapshot_term;   /* its last entry's term */
    uint64_t snapshot_offset; /* snapshot mode: the chunk in flight */
    uint64_t acked_seq;       /* highest read_seq echoed back */
    uint64_t lease_seq;       /* ... in replies that promise enough for a lease */
    uint64_t last_ack_ms;     /* time of the last reply from this peer */
    uint64_t last_send_ms;    /* time of the last AppendEntries sent */
    /* Pipeline mode: the last index of each AppendEntries with entries sent
     * and not known acknowledged (those above match and below next). */
    uint64_t inflight_last[RAFT_MAX_INFLIGHT_MSGS];
    size_t n_inflight;
};

struct raft_config {
    uint32_t id;
    /* The initial configuration, until the log or a snapshot holds another:
     * voters node_ids[0 .. n_nodes), self included unless it joins later
     * (it then waits, passive, for a configuration that names it). With
     * initial.n > 0 the voters and their addresses come from there instead. */
    size_t n_nodes;
    uint32_t node_ids[RAFT_MAX_NODES];
    struct raft_members initial;
    uint32_t election_min_ms;
    uint32_t election_max_ms;
    uint32_t heartbeat_ms;
    uint64_t seed; /* randomness for election timeouts */
    /* Dissertation 9.6; both may change at run time (raft_set_options). */
    bool prevote;      /* ask for pre-votes before raising the term */
    bool check_quorum; /* a leader without a majority steps down; leader stickiness */
    /* AppendEntries with entries out to one follower at once, 1 to
     * RAFT_MAX_INFLIGHT_MSGS; 0: RAFT_DEFAULT_INFLIGHT_MSGS. */
    uint32_t max_inflight_appends;
    /* Leader leases (dissertation 6.4.1), 0: off. A leader may serve a read
     * without a heartbeat round while a majority, itself included, answered
     * a round it started less than lease_ms ago. Safe only if no voter can
     * grant a vote within lease_ms of the leader starting that round: the
     * caller derives it from election_min_ms, less its clocks' drift and
     * how far its clock can lag when a message is taken in (README, "Lease
     * reads"). With it on, this node also ignores RequestVote for
     * election_min_ms after it last heard from a leader, whatever
     * check_quorum says and whatever its role since, and after raft_init (a
     * restarted voter forgot whom it heard); raft_timeout_now does nothing
     * meanwhile, and sets no transfer flag after. */
    uint32_t lease_ms;
};

/* Things the core did that a person watching wants told, beyond role and
 * term changes (which the caller sees in struct raft). */
enum raft_note_type {
    RAFT_NOTE_QUORUM_LOST = 1,     /* the leader stepped down: no word from a majority for ms */
    RAFT_NOTE_PREVOTE_REFUSED = 2, /* node refused our pre-vote for term (leader, ms: why) */
    RAFT_NOTE_VOTE_IGNORED = 3,    /* we ignored node's RequestVote for term: leader, ms ago */
    RAFT_NOTE_TRANSFER_FAILED = 4, /* the transfer to node did not end within ms */
    RAFT_NOTE_TRANSFER_SENT = 5,   /* node is up to date: TimeoutNow sent to it */
    RAFT_NOTE_TIMEOUT_NOW = 6,     /* node (the leader) sent us TimeoutNow: we stand now */
    RAFT_NOTE_PROMOTED = 7,        /* the learner node caught up: a voter from entry index */
};

struct raft_note {
    enum raft_note_type type;
    uint32_t node;
    uint64_t term;
    uint32_t leader; /* heard from this leader ... */
    uint64_t ms;     /* ... this long ago; or a duration */
    uint64_t index;  /* a log index the note is about */
};

struct raft_pending_read {
    uint64_t read_id;
    uint64_t index;
    uint64_t seq; /* heartbeat round that must reach a majority */
};

/* A chunk of a snapshot being received: write len bytes at offset into the
 * temporary file of snapshot index/term (offset 0: a new file, replacing any
 * partial one); when done, the file is complete: sync it. It is not the
 * node's snapshot until a later ready says snapshot_install. */
struct raft_snapshot_chunk {
    uint64_t index, term;
    uint64_t offset;
    const uint8_t *data; /* valid until raft_advance */
    size_t len;
    bool done;
};

/* The received snapshot (complete and synced in an earlier ready) is now
 * the node's: it covers every entry up to index, of term term. */
struct raft_snapshot_install {
    uint64_t index, term;
};

struct raft_ready {
    /* 1. Persist, in this order:
     *  a. the hard state;
     *  b. truncate_from: drop stored entries >= it (durably);
     *  c. snapshot_install, when set: make the received snapshot file the
     *     node's snapshot, durably (it replaces the older one), and only then
     *     drop every entry <= its index from the log storage. A crash in
     *     between leaves a log raft_restore knows how to read;
     *  d. the entries, then one fsync;
     *  e. snapshot_chunk, when set (see struct raft_snapshot_chunk). */
    bool hard_state_changed;
    uint64_t term;
    uint32_t voted_for;
    uint64_t truncate_from; /* drop stored entries >= this first; 0 = none */
    const struct raft_snapshot_install *snapshot_install; /* NULL: none */
    const struct raft_entry *entries;                     /* then append these */
    size_t n_entries;
    const struct raft_snapshot_chunk *snapshot_chunk; /* NULL: none */
    /* 2. Send. When false the messages may leave before the fsync (a leader
     * writing its disk while followers write theirs). */
    bool persist_before_send;
    const struct raft_msg *msgs;
    size_t n_msgs;
    /* 3. Apply. First, when snapshot_install is set, restore the state
     * machine from that snapshot (its state as of its index); then apply
     * entries apply_from..apply_to (inclusive) via raft_entry_at. */
    uint64_t apply_from;
    uint64_t apply_to;
    /* 4. Reads. Those ok are safe once entries up to apply_to are applied. */
    const struct raft_read_result *reads;
    size_t n_reads;
    /* 5. Notes, to tell (in any order with the rest). */
    const struct raft_note *notes;
    size_t n_notes;
};

/* The log after the last snapshot: entries[i] has index snapshot_index +
 * 1 + i. With no snapshot, snapshot_index and snapshot_term are 0. */
struct raft_log {
    struct raft_entry *entries;
    size_t len;
    size_t cap;
    uint64_t snapshot_index; /* lastIncludedIndex of the last snapshot */
    uint64_t snapshot_term;  /* lastIncludedTerm */
};

/* A follower's snapshot transfer (raft_snapshot.c). One leader a term sends
 * one snapshot at a time, so (term, index, snap_term) names a transfer. */
struct raft_snapshot_recv {
    bool active;
    bool complete;   /* the last chunk was taken: waits for its install */
    uint64_t term;   /* the leader's */
    uint32_t leader; /* who sends it */
    uint64_t index, snap_term;
    uint64_t offset; /* bytes taken so far: the offset wanted next */
    /* Bytes taken since the last ready, from buf_offset on. */
    uint8_t *buf;
    size_t buf_len, buf_cap;
    uint64_t buf_offset;
    bool buf_done;
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
    uint32_t votes;               /* bitmask of granted votes (or pre-votes), bit = node id */
    uint64_t heartbeat_due_ms;
    uint64_t leader_contact_ms; /* when a leader was last heard from (leases: or raft_init) */

    /* Leadership transfer (dissertation 3.10), leader side. */
    uint32_t transfer_to;          /* the target; RAFT_NONE: no transfer */
    uint64_t transfer_deadline_ms; /* given up after this */
    bool transfer_sent;            /* TimeoutNow went out */

    /* The configuration in force (dissertation 4.1: the latest in the log,
     * committed or not), the log index it came from (0: the initial one or
     * the snapshot's), and the configuration as of the snapshot's index. */
    struct raft_members members;
    uint64_t members_index;
    struct raft_members snap_members;

    /* Figure 2, volatile state on leaders (index: node id - 1). */
    struct raft_progress progress[RAFT_MAX_NODES];

    /* Storage bookkeeping. */
    uint64_t stable_index;    /* entries handed to storage */
    uint64_t persisted_index; /* entries storage confirmed durable */
    uint64_t truncate_from;   /* pending truncation for the next ready */
    bool hard_state_dirty;

    /* ReadIndex (dissertation 6.4). */
    uint64_t read_seq;
    /* Leases (6.4.1): when each recent heartbeat round started, by seq
     * modulo RAFT_LEASE_ROUNDS; rounds before lease_min_seq do not count
     * (a new term, a new configuration, a stall of the caller's clock); a
     * leadership transfer gives the lease up for the rest of the term. */
    uint64_t round_started_ms[RAFT_LEASE_ROUNDS];
    uint64_t lease_min_seq;
    bool lease_given_up;
    bool read_broadcast_needed;
    struct raft_pending_read *reads;
    size_t n_reads, cap_reads;

    /* InstallSnapshot, follower side. */
    struct raft_snapshot_recv snap_recv;
    bool install_pending; /* the next ready says snapshot_install */
    struct raft_snapshot_install install;
    struct raft_snapshot_chunk ready_chunk;

    /* Output buffers, reset by raft_advance. */
    struct raft_msg *out_msgs;
    size_t n_out, cap_out;
    struct raft_read_result *out_reads;
    size_t n_out_reads, cap_out_reads;
    struct raft_note *out_notes;
    size_t n_out_notes, cap_out_notes;
    uint64_t ready_apply_to;
    uint64_t ready_stable_to;
};

enum raft_error {
    RAFT_OK = 0,
    RAFT_ENOTLEADER = -1,
    RAFT_ENOMEM = -2,
    RAFT_EINVAL = -3,
    RAFT_EBUSY = -4, /* a leadership transfer is under way: no new entries */
};

const char *raft_strerror(int err);
const char *raft_role_name(enum raft_role role);

/* Lifecycle. raft_restore takes ownership of entries (an array of n, which it
 * frees) and must come before the first tick. snapshot_index and
 * snapshot_term name the snapshot storage holds (0, 0: none); the state
 * machine must have been restored from it. The entries must follow each
 * other; they may start at or before the snapshot (a log whose covered
 * prefix was not dropped yet): those are skipped, and if the entry at
 * snapshot_index is not of snapshot_term, or the log ends before it, the
 * whole log is (it was being replaced by the snapshot; the first ready
 * truncates what of it lies past snapshot_index). A log starting past
 * snapshot_index + 1 is refused (RAFT_EINVAL).
 *
 * Log storage and the snapshot: entries at or below the snapshot's index
 * are dead. Storage may drop them at any time, and appending the entry
 * after the snapshot to a log that ends before it drops them all: the log
 * starts again after the snapshot. */
int raft_init(struct raft *r, const struct raft_config *cfg, uint64_t now_ms);
int raft_restore(struct raft *r, uint64_t term, uint32_t voted_for, uint64_t snapshot_index,
                 uint64_t snapshot_term, struct raft_entry *entries, size_t n);
void raft_close(struct raft *r);

/* Events. */
void raft_tick(struct raft *r, uint64_t now_ms);
int raft_step(struct raft *r, const struct raft_msg *m);
/* Append a client command; on success *index and *term say where it sits. */
int raft_propose(struct raft *r, const uint8_t *data, uint32_t len, uint64_t *index,
                 uint64_t *term);
/* Ask for a linearizable read; the answer arrives in a later ready. With
 * leases on and held, the answer is in the next ready at once (lease). */
int raft_read(struct raft *r, uint64_t read_id);
/* The same, always by a heartbeat round (a lease read that came too late). */
int raft_read_by_round(struct raft *r, uint64_t read_id);
/* Until when (core clock) the leader's lease lets it serve reads without a
 * round; 0: no lease. */
uint64_t raft_lease_end(const struct raft *r);
/* The caller's clock stood still or jumped (a stall, a pause, a suspended
 * process): rounds started before now no longer count toward the lease. */
void raft_lease_revoke(struct raft *r);
/* Start an election now (the cockpit's "timeout N"): a real one, without a
 * pre-vote round, as a leadership transfer's target does. */
bool raft_timeout_now(struct raft *r); /* false: it does not stand (see lease_ms) */
/* Leadership transfer (dissertation 3.10): stop taking proposals, bring
 * `target` up to date, send it TimeoutNow. Given up (proposals taken again)
 * after an election timeout; RAFT_ENOTLEADER, or RAFT_EINVAL for a target
 * that is not another voter. A transfer already under way is replaced. */
int raft_transfer(struct raft *r, uint32_t target);
/* Turn Pre-Vote and CheckQuorum on or off (dissertation 9.6). */
void raft_set_options(struct raft *r, bool prevote, bool check_quorum);
/* Whether this node heard from a live leader within the minimum election
 * timeout (or is one): it then refuses pre-votes and ignores RequestVote. */
bool raft_in_lease(const struct raft *r);
/* The caller has made a snapshot of the state machine as of applied index
 * `index` durable: forget the entries up to it (section 7). Only applied
 * entries may be compacted: index <= last_applied, else RAFT_EINVAL, as for
 * an index below the snapshot the core has; index equal to it does nothing. */
int raft_compact(struct raft *r, uint64_t index);
/* raft_compact, but the data buffers of the entries it drops are handed to
 * drop_data (the caller frees them later: freeing a long log at once stalls
 * a process whose pages a fork made copy-on-write, one fault a page). */
int raft_compact_with(struct raft *r, uint64_t index, void (*drop_data)(void *arg, uint8_t *data),
                      void *arg);
/* Whether the snapshot ending at index is the core's, or one a leader is
 * still sending to a peer: its file must be kept. */
bool raft_snapshot_in_use(const struct raft *r, uint64_t index);

/* Messages that leave at one moment (the replies a node held until a sync
 * covered them): successful AppendEntries replies of one term to one peer
 * fold into the last of them, which then carries the largest matchIndex and
 * heartbeat round of all (the leader keeps the maximum of each, so it learns
 * the same from one as from all). Compacts msgs[0..n) in place, order kept;
 * returns how many are left. */
size_t raft_coalesce_replies(struct raft_msg *msgs, size_t n);

/* Output. */
bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r, const struct raft_ready *rd);
/* Storage that syncs in the background (a storage thread): instead of
 * raft_advance, once the ready was carried out with its entries written but
 * not yet durable (the hard state, a truncation, a snapshot install or chunk
 * must have been made durable as for raft_advance). The core does not ask
 * for those entries again, but a leader counts its own copy toward a
 * majority only after raft_synced reports it durable. Messages of a ready
 * with persist_before_send must wait for that raft_synced too. */
void raft_advance_unsynced(struct raft *r, const struct raft_ready *rd);
/* Storage made every entry up to index durable; term is the term of the
 * entry at index as it was written. Ignored when the core's log no longer
 * holds that entry at index (it was replaced since: the replacement is
 * reported by a later call), or has not handed it to storage. May be called
 * between raft_advance and the next raft_ready. */
void raft_synced(struct raft *r, uint64_t index, uint64_t term);
/* Instead of raft_advance when persisting the ready failed (a full disk, an
 * I/O error): storage holds entries up to durable_index only (the snapshot's
 * index when the log after it is empty). The ready's messages are dropped
 * (they promised what is not on disk), its reads are the caller's to fail,
 * and a leader steps down, since it can no longer count its own copy. The
 * next ready asks to persist the rest again, snapshot_install included; a
 * snapshot being received is forgotten (the leader sends it again). */
void raft_storage_failed(struct raft *r, uint64_t durable_index);

/* Queries. */
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_last_term(const struct raft *r);
/* The term at index: snapshot_term at the snapshot's index, 0 if absent. */
uint64_t raft_term_at(const struct raft *r, uint64_t index);
/* The entry at index, NULL if absent (past the log, or compacted). */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
uint64_t raft_first_index(const struct raft *r);       /* of the first entry in memory */
size_t raft_quorum(const struct raft *r);              /* a majority of the voters */
int raft_node_slot(const struct raft *r, uint32_t id); /* id - 1 for a member, else -1 */
bool raft_is_voter(const struct raft *r, uint32_t id);
bool raft_is_member(const struct raft *r, uint32_t id); /* voter or learner */
uint32_t raft_voters_mask(const struct raft *r);        /* bit per voter id */

/* Membership changes (dissertation chapter 4, one server at a time). */
/* Propose `next` as the configuration: it must differ from the one in force
 * by one server (added as a learner, a learner made a voter, or one removed)
 * and keep a voter. Leader only (RAFT_ENOTLEADER); RAFT_EBUSY while a change
 * is uncommitted, before the leader has committed an entry of its term, or
 * during a transfer; RAFT_EINVAL for anything else. In force at once; *index
 * is its entry's. The leader makes a caught-up learner a voter by itself,
 * and a leader that removed itself steps down once that commits. */
int raft_change_members(struct raft *r, const struct raft_members *next, uint64_t *index);
/* The configuration in force at index (index <= last index, and not below
 * the snapshot's): for a snapshot taken there. */
int raft_members_at(const struct raft *r, uint64_t index, struct raft_members *out);
/* The configuration a snapshot holds: after raft_restore from it, and after
 * a snapshot_install ready (read from the installed file), before
 * raft_advance. Without it the initial configuration stands for the
 * snapshot. */
void raft_set_snapshot_members(struct raft *r, const struct raft_members *m);
/* Encoding of a configuration entry's data; decode checks it (ids 1-9, each
 * once, a voter, addresses that fit): 0, or -1. encode returns malloc'ed data. */
int raft_members_encode(const struct raft_members *m, uint8_t **data, uint32_t *len);
int raft_members_decode(const uint8_t *data, uint32_t len, struct raft_members *m);
const struct raft_member *raft_members_find(const struct raft_members *m, uint32_t id);
/* "1,2,3 learners 4": the ids of a configuration, for people. */
void raft_members_ids_text(const struct raft_members *m, char *out, size_t len);
/* A configuration entry's data in words: "config 1,2,3 learners 4". */
void raft_members_describe(const uint8_t *data, uint32_t len, char *out, size_t outlen);

/* Entries. */
void raft_entry_free(struct raft_entry *e);
int raft_entry_copy(struct raft_entry *dst, const struct raft_entry *src);

#endif

/* node.h - one raftkv node: the state every part of the process shares,
 * owned here and changed by the files named below. */
#ifndef RAFTKV_NODE_H
#define RAFTKV_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "clock.h"
#include "cluster.h"
#include "kv.h"
#include "raft.h"
#include "resp.h"
#include "snapshot_file.h"
#include "wal.h"
#include "wire.h"

#define NODE_MAX_EVENTS 32 /* state-change lines kept for the next status */

/* ------------------------------------------------------------ clients.c */

/* One reply owed to a client, in request order. A slot waiting for the log
 * or a read is filled later; replies leave strictly in order. */
struct reply_slot {
    struct reply_slot *next;
    struct client *client; /* NULL once the client has gone */
    bool ready;
    struct buf data;
};

/* A descriptor in the loop's epoll set (poller.c). */
struct client;
struct poll_source {
    int fd;
    uint32_t events;       /* what the set waits for on fd now; 0: not in the set */
    struct client *client; /* whose socket; NULL for the node's own descriptors */
};

struct client {
    struct client *next;
    int fd;
    struct poll_source source; /* its socket in the loop's epoll set */
    uint64_t id;
    struct buf in;
    struct buf out;
    struct reply_slot *head, *tail;
    size_t pending;            /* slots not yet ready */
    bool closing;              /* close once out is written */
    uint64_t last_write_index; /* log index of its latest write: its reads wait for it */
    size_t reads_pending;      /* reads not answered yet: its next write waits for them */
    bool parse_again;          /* requests wait in `in` and may go now */
    bool authenticated;        /* AUTH succeeded (access.c) */
    bool access_checked;       /* remote worked out */
    bool remote;               /* not a loopback client: refused in protected mode */
    struct buf name;           /* CLIENT SETNAME */
    struct resp_parser parser; /* how far the request at the start of `in` was checked */
    size_t out_sent;           /* bytes at the start of out already written */
    size_t queued;             /* bytes of ready replies waiting behind one that is not */
    bool paused;               /* requests wait until the client reads its replies */
    bool gone;                 /* nothing more is sent: the peer left or broke a limit */
    uint64_t last_active_ms;   /* last byte read or written (--timeout) */
};

/* A write waiting for its log entry to be applied (pending.c). */
struct pending_write {
    uint64_t index;
    uint64_t term;
    struct reply_slot *slot;
    uint64_t lost_ms; /* when this node stopped leading term (monotonic ms); 0 while it leads */
};

/* A read waiting for ReadIndex, then for wait_index to be applied. */
struct pending_read {
    uint64_t read_id;
    struct reply_slot *slot; /* NULL once answered */
    bool confirmed;          /* ReadIndex said this node led when the read arrived */
    bool lease;              /* ... by its lease: checked again once served (node_lease_holds) */
    uint64_t wait_index;     /* serve once this index is applied */
    uint64_t lost_ms;        /* when this node stopped leading (monotonic ms); 0 while it leads */
    size_t argc;
    uint8_t **argv;
    size_t *argl;
};

/* ------------------------------------------------------------ transport.c */

struct delayed_msg {
    uint64_t due_ms;
    int to_slot;
    void *data;
    size_t len;
};

/* ------------------------------------------------------------ wire_report.c */

#define WIRE_REPORT_MAX 512 /* records waiting before a report leaves at once */

/* Heartbeats of one kind on one link, reported at most every so often. */
struct wire_heartbeats {
    uint64_t last_report_ms;
    uint32_t skipped;     /* heartbeats since, folded into the next report */
    uint64_t last_commit; /* AppendEntries: the commit last carried */
    uint64_t last_match;  /* replies: the match last carried */
};

/* A peer message held while the node is frozen. */
struct held_msg {
    uint32_t from;
    uint64_t id;
    struct Raftkv__Envelope *env; /* owned: freed once delivered or dropped */
};

struct wire_state {
    bool on;     /* report messages to the supervisor (Control.wire) */
    bool frozen; /* the clock stands still, peer messages are held */
    uint64_t next_id;
    struct Raftkv__WireRecord *records; /* WIRE_REPORT_MAX of them, allocated on first use */
    size_t n_records;
    uint64_t unreported;
    uint64_t next_flush_ms;
    /* [sent, received][peer slot][AppendEntries, its reply] */
    struct wire_heartbeats hb[2][CLUSTER_MAX_NODES][2];
    struct held_msg *held;
    size_t n_held, cap_held;
};

enum wire_event {
    WIRE_SENT = 1,
    WIRE_RECEIVED = 2,
    WIRE_LOST = 3,
    WIRE_HELD = 4,
    WIRE_DISCARDED = 5, /* a held message dropped by hand */
};

enum wire_lost {
    WIRE_LOST_CUT = 1,       /* the link is cut (partition, isolate) */
    WIRE_LOST_DROP = 2,      /* lost at random (drop PERCENT) */
    WIRE_LOST_BUSY = 3,      /* the peer is not taking messages (down, or behind) */
    WIRE_LOST_SUSPENDED = 4, /* the receiver is suspended */
};

struct node_options {
    const char *config_path;
    const char *data_dir;
    const char *status_url;
    uint32_t id;
    uint32_t election_min_ms;
    uint32_t election_max_ms;
    uint32_t heartbeat_ms;
    double speed;
    bool quiet;
    int64_t clock_offset_ms; /* added to the wall clock: for tests of clock skew */
    const char *secret_path; /* --secret-file: MACs on peer, control and status messages */
    const char *requirepass_file;
    char *requirepass;            /* loaded from requirepass_file; NULL: protected mode */
    bool admin_commands;          /* RAFT.SUSPEND and DEBUG allowed */
    uint64_t client_output_limit; /* unsent reply bytes a client may hold; 0: no limit */
    uint64_t client_input_limit;  /* bytes an unfinished request may reach */
    uint32_t maxclients;          /* 0: not given (10000, fewer if open files are short) */
    uint32_t timeout_s;           /* close a client idle this long; 0: never */
    uint32_t tcp_keepalive_s;     /* TCP keepalive probes after this idle time; 0: off */
    uint64_t snapshot_entries;    /* snapshot once the log since the last has this many; 0: never */
    uint64_t snapshot_bytes;      /* ... or once the log on disk is this big; 0: never */
    bool prevote, check_quorum;   /* dissertation 9.6 */
    uint32_t max_inflight;        /* AppendEntries with entries out to a follower at once */
    bool lease_reads;             /* leader leases (dissertation 6.4.1): README, "Lease reads" */
    bool sched_batch;             /* ask for SCHED_BATCH: README, "raftkv-node" */
    bool join;                    /* not in the cluster file: wait to be added */
    const char *peer_url;         /* --peer, with --join */
    const char *client_addr;      /* --client, with --join */
};

/* turn_timer.c: where one loop turn spends its time. */
enum turn_phase {
    TURN_STORAGE,
    TURN_PEERS,
    TURN_CLIENTS_IN,
    TURN_CORE,
    TURN_SNAPSHOT,
    TURN_CLIENTS_OUT,
    TURN_REPORTS,
    TURN_N_PHASES
};
struct turn_timer {
    uint64_t started_us, mark_us;
    uint64_t phase_us[TURN_N_PHASES];
    uint64_t max_us, max_phase_us; /* the longest turn, and its longest phase */
    int max_phase;
    uint64_t slow_turns;
};

/* write_path.c: when each of the last entries passed each stage of a write. */
enum write_stage {
    WRITE_APPENDED,
    WRITE_SENT,
    WRITE_REPLICATED,
    WRITE_SYNCED,
    WRITE_COMMITTED,
    WRITE_REPLIED,
    WRITE_PATH_STAGES
};
#define WRITE_PATH_WINDOW 16384
struct write_path {
    uint64_t (*at)[WRITE_PATH_STAGES]; /* by index % WRITE_PATH_WINDOW, microseconds; 0: not yet */
    uint64_t last[WRITE_PATH_STAGES];  /* the highest index noted at each stage */
    enum raft_role role;               /* the role the notes were taken in */
};

struct node {
    struct node_options opt;
    struct cluster cluster;
    const struct cluster_node *self;
    struct raft raft;
    struct wal *wal;
    struct kv *kv;
    uint64_t rng;
    uint64_t started_ms;
    bool sched_batch; /* the threads run as SCHED_BATCH (--sched-batch, if the kernel agreed) */

    /* Time: the core runs on a clock that advances at `speed`. */
    uint64_t last_real_ms;
    uint64_t raft_clock_ms;
    uint64_t last_stamp_ms; /* last time stamped into a command */

    /* Peers and the supervisor (nanomsg). */
    int peer_in;                     /* NN_PULL bound at our peer URL */
    int peer_out[CLUSTER_MAX_NODES]; /* NN_PUSH to each peer, by cluster slot */
    int status_out;                  /* NN_PUSH to the supervisor, or -1 */
    uint32_t blocked;                /* bit per node id: cut off */
    uint32_t drop_percent;
    uint32_t delay_ms;
    struct delayed_msg *delayed;
    size_t n_delayed, cap_delayed;
    uint64_t msgs_sent, msgs_received, msgs_dropped, bad_messages;
    uint64_t replies_coalesced; /* replies folded into a later one (storage_release) */
    uint64_t reads_on_lease;    /* reads served on the leader's lease (RAFT.INFO) */
    uint64_t reads_lease_late;  /* ... whose lease ran out while they were read: asked again */
    uint64_t sent_to[CLUSTER_MAX_NODES], received_from[CLUSTER_MAX_NODES];
    struct buf pack;            /* scratch for encoding */
    struct wire_key key;        /* from --secret-file; disabled without one */
    uint64_t auth_failures;     /* messages whose MAC did not verify */
    uint64_t stale_controls;    /* authentic controls whose seq was not new */
    uint64_t other_cluster;     /* messages of another cluster id */
    uint64_t control_seq;       /* seq of the last control taken */
    uint64_t control_seq_floor; /* with a secret, a control's seq must exceed this */
    uint64_t next_auth_warn_ms; /* rate limit of the warnings below */
    uint64_t next_cluster_warn_ms;

    struct wire_state wire; /* what it tells the supervisor of its messages; freezing */

    /* Suspension (RAFT.SUSPEND or the supervisor). */
    bool suspended;
    uint64_t suspend_until_ms;

    /* What the loop sleeps on (poller.c). */
    int epoll_fd;
    struct poll_source peers_source, listen_source, storage_source;

    /* Clients (Redis protocol). */
    int listen_fd;
    struct client *clients;
    size_t n_clients;
    size_t max_clients;        /* --maxclients, or what the open-file limit leaves */
    int spare_fd;              /* /dev/null, given up to refuse a client when fds run out */
    uint64_t accept_resume_ms; /* out of descriptors: accept nothing before this */
    uint64_t clients_rejected, clients_output_limit_closed, clients_input_limit_closed;
    uint64_t clients_timed_out;
    uint64_t next_client_id;
    struct resp_request req;
    struct pending_write *writes; /* slot NULL once answered */
    size_t n_writes, cap_writes, writes_head;
    bool writes_unsorted; /* a write waits at a lower index than an older one */
    struct pending_read *reads;
    size_t n_reads, cap_reads;
    uint64_t next_read_id;
    uint64_t sweep_index; /* last expiry sweep proposed; none in flight once applied */
    uint64_t next_sweep_ms;
    bool active_expire;  /* the leader's background sweeper (DEBUG SET-ACTIVE-EXPIRE) */
    size_t serve_budget; /* reply bytes reads may still build this loop turn */
    bool reads_backlog;  /* confirmed reads wait for the next turn's budget */

    struct turn_timer turn;       /* how long the loop's turns take */
    struct write_path write_path; /* where a write's time goes (RAFT.LATENCY) */

    /* The log's fdatasync in a helper thread (storage_thread.c). */
    struct storage *storage;
    struct log_compaction *compaction; /* a log being rewritten (log_compaction.c) */
    uint64_t log_syncs;                /* syncs of the log completed */
    uint64_t log_syncs_on_loop;        /* ... of them run by the loop itself */

    /* Storage failing (loop.c): retried every second, writes refused. */
    bool disk_error;
    char disk_error_text[256];
    uint64_t disk_retry_ms;

    /* Snapshots (snapshot.c): one being written by a helper thread
     * (snapshot_writer.c), the snapshot files on disk, the file a leader
     * reads chunks from. */
    struct snapshot_writer *snap_writer; /* NULL: none being written */
    uint64_t snap_index, snap_term, snap_started_ms;
    uint64_t snap_keys; /* keys in the state being written */

    char role_reason[96];               /* why the next role change happened, when not a term */
    struct raft_members loaded_members; /* the newest snapshot's, at start */
    bool has_loaded_members;

    /* Membership (membership.c): the change waiting for its outcome. */
    struct reply_slot *member_slot;
    bool member_add;
    uint32_t member_id;
    uint64_t member_index, member_term;
    uint64_t member_deadline_ms; /* core clock */
    bool members_shown;
    uint64_t shown_members_index;
    int shown_member_role; /* RAFT_VOTER, RAFT_LEARNER, -1 not a member */

    /* RAFT.TRANSFER (transfer.c): the client waiting for the outcome. */
    struct reply_slot *transfer_slot;
    uint32_t transfer_target;
    uint64_t transfer_term;        /* the term it was asked in */
    uint64_t transfer_deadline_ms; /* core clock */
    struct reply_slot *snap_slot;  /* RAFT.SNAPSHOT waiting */
    bool snap_slot_bound;          /* the child running covers that request */
    uint64_t snap_retry_ms;        /* after a failure, no automatic one before this */
    uint64_t *snap_kept;           /* indexes of the snapshot files on disk */
    size_t n_snap_kept, cap_snap_kept;
    struct snapfile_reader *snap_reader;
    uint64_t reader_index, reader_term;
    uint8_t *snap_chunk;
    uint64_t snap_announced[CLUSTER_MAX_NODES]; /* last transfer told of, per peer slot */
    uint64_t snapshots_taken, snapshots_sent, snapshots_installed;

    /* Status and state-change lines. */
    enum raft_role shown_role;
    uint64_t shown_term;
    uint64_t status_seq;
    uint64_t next_status_ms;
    bool status_dirty;
    char *events[NODE_MAX_EVENTS];
    size_t n_events;
};

/* write_path.c */
int write_path_init(struct write_path *w); /* -1: out of memory */
void write_path_free(struct write_path *w);
/* At the marks of a loop turn: note what moved on (appended, synced,
 * replicated, committed). */
void write_path_observe(struct node *n);
void write_path_sent(struct node *n, const struct raft_msg *m); /* an AppendEntries left */
void write_path_replied(struct node *n); /* the turn's replies were written */
void write_path_reset(struct node *n);   /* RAFT.LATENCY RESET: a new window from now */
/* RAFT.LATENCY's lines; -1 when memory ran out. */
int write_path_info(const struct node *n, struct buf *out);

/* turn_timer.c */
void turn_timer_begin(struct turn_timer *t);
void turn_timer_mark(struct turn_timer *t, enum turn_phase phase); /* phase just ended */
void turn_timer_end(struct node *n, struct turn_timer *t);
void turn_timer_info(const struct turn_timer *t, struct buf *out);

/* main.c */
void node_event(struct node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* loop.c */
int node_run(struct node *n);
void node_suspend(struct node *n, uint64_t ms);
void node_resume(struct node *n);
void node_process_ready(struct node *n);
/* The longest the loop sleeps, and the most one turn moves the core's clock. */
#define NODE_POLL_MAX_MS 50
#define NODE_CLOCK_STEP_MAX_MS (NODE_POLL_MAX_MS + 10)
/* The lease a leader may hold with these options (raft_config.lease_ms);
 * 0 when the election timeout is too short for one. */
uint32_t node_lease_ms(const struct node_options *o);
/* Whether the leader's lease still holds now, by a clock read at this
 * moment: a lease read is sent only if this is true after it was served. */
bool node_lease_holds(const struct node *n);

/* poller.c: the loop's epoll set. */
struct epoll_event;
int poller_open(struct node *n, char *err, size_t errlen);
void poller_close(struct node *n);
/* Wait for events (EPOLLIN, EPOLLOUT) on fd through s from now on; 0 or a
 * negative fd: not at all. Returns 0, or -1 with errno. */
int poller_watch(struct node *n, struct poll_source *s, int fd, uint32_t events);
void poller_forget(struct node *n, struct poll_source *s); /* before fd is closed */
/* Up to max_ready sources that are ready (data.ptr: the poll_source), within
 * timeout_ms; 0 if interrupted, -1 with errno on failure. */
int poller_wait(struct node *n, struct epoll_event *ready, int max_ready, int timeout_ms);

/* transport.c */
struct Raftkv__Envelope;
int transport_pack(struct node *n, struct Raftkv__Envelope *env); /* into n->pack */
/* Load --secret-file, or check every peer URL is on loopback (protected mode). */
int transport_auth_init(struct node *n, char *err, size_t errlen);
int transport_open(struct node *n, char *err, size_t errlen);
/* A socket to n->cluster.nodes[i] (a node added by a configuration). */
int transport_connect_peer(struct node *n, size_t i, char *err, size_t errlen);
void transport_disconnect_peer(struct node *n, size_t i);
void transport_close(struct node *n);
void transport_send(struct node *n, const struct raft_msg *m);
void transport_receive(struct node *n); /* everything waiting on peer_in */
/* Take in a peer message that passed every check (now, or when a freeze lets it go). */
void transport_deliver(struct node *n, uint32_t from, const struct Raftkv__PeerMessage *pm);
void transport_flush_delayed(struct node *n, uint64_t now_ms);
uint64_t transport_next_due(const struct node *n); /* 0: nothing delayed */
int transport_fd(const struct node *n);

/* clients.c */
int clients_listen(struct node *n, char *err, size_t errlen);
void clients_close_all(struct node *n);
void clients_accept(struct node *n);
/* Whether to poll a client for input: not while its replies or requests pile up. */
bool clients_want_input(const struct node *n, const struct client *c);
/* Put c's socket in the loop's epoll set for what it waits for now (awake:
 * the node is not suspended); a client the kernel cannot watch is dropped. */
void clients_watch(struct node *n, struct client *c, bool awake);
/* Whether to poll the listening socket: not for a while after descriptors ran out. */
bool clients_want_accept(const struct node *n, uint64_t now_ms);
/* Client counters, as INFO lines. */
int clients_info(const struct node *n, struct buf *out);
void clients_read(struct node *n, struct client *c);
/* Run the requests already read from c, up to one that must wait. */
void clients_parse(struct node *n, struct client *c);
void clients_write(struct node *n, struct client *c);
void clients_reap(struct node *n);
struct reply_slot *client_slot_new(struct client *c);
void client_slot_done(struct node *n, struct reply_slot *s);

/* commands.c */
/* RAFT.INFO's word for a role: follower, candidate, leader, precandidate. */
const char *commands_role_word(enum raft_role role);
void commands_dispatch(struct node *n, struct client *c, size_t argc, const uint8_t **argv,
                       const size_t *argl);
/* Whether a request must wait before it is dispatched: a write waits for the
 * connection's unanswered reads, so that a read never sees a write sent
 * after it on the same connection. */
bool commands_must_wait(const struct client *c, size_t argc, const uint8_t **argv,
                        const size_t *argl);
enum { COMMANDS_READ_DONE = 0, COMMANDS_READ_WAIT = 1, COMMANDS_READ_NOT_LEADER = 2 };
/* Run a confirmed read into out; or ask to wait until *wait_index is applied
 * (an expired key's delete was proposed); or say this node cannot. */
int commands_run_read(struct node *n, size_t argc, const uint8_t *const *argv, const size_t *argl,
                      struct buf *out, uint64_t *wait_index);
void commands_reply_not_leader(struct node *n, struct buf *out);
void commands_sweep_expired(struct node *n);
/* The time a leader stamps into commands and judges expiry by: its wall
 * clock, never below the log's clock (kv_time_floor) or an earlier stamp. */
uint64_t commands_now(struct node *n);

/* access.c */
bool access_host_is_loopback(const char *host);
/* 0: c may run commands; -1: *why is the error to answer (the client may be
 * marked closing). */
int access_check(struct node *n, struct client *c, const char **why);
/* AUTH's arguments (argv[0] is "AUTH"): NULL on success, or the error. */
const char *access_auth(struct node *n, struct client *c, size_t argc, const uint8_t *const *argv,
                        const size_t *argl);

/* pending.c */
int pending_write_push(struct node *n, uint64_t index, uint64_t term, struct reply_slot *slot);
void pending_on_applied(struct node *n, uint64_t index, uint64_t term,
                        const struct kv_reply *reply);
int pending_read_push(struct node *n, uint64_t read_id, struct reply_slot *slot, size_t argc,
                      const uint8_t *const *argv, const size_t *argl, uint64_t after_index);
void pending_on_read(struct node *n, const struct raft_read_result *rr);
void pending_serve_reads(struct node *n);
void pending_check(struct node *n);
/* Reads still waiting for ReadIndex are answered -TRYAGAIN now. */
void pending_fail_unconfirmed_reads(struct node *n);
void pending_fail_all_on_shutdown(struct node *n);
void pending_free(struct node *n);
/* A snapshot up to index replaced the state machine: writes at or below it
 * are answered -UNCERTAIN (their entries were never applied here). */
void pending_on_snapshot(struct node *n, uint64_t index);

/* snapshot_writer.c: the store as a view (kv_view_begin) written to
 * DIR/snap-<index>-<term> behind head (taken, freed when done) by a thread. */
struct snapshot_writer;
int snapshot_writer_start(struct node *n, uint64_t index, uint64_t term, uint8_t *head,
                          size_t head_len, struct snapshot_writer **out, char *err, size_t errlen);
bool snapshot_writer_done(struct snapshot_writer *w);
/* The node's store was replaced (an installed snapshot): the writer's goes
 * with it when it finishes. */
void snapshot_writer_store_replaced(struct snapshot_writer *w);
/* Once done: wait for the thread, end the view, free w. 0, or -1 with the
 * thread's error. */
int snapshot_writer_finish(struct snapshot_writer *w, char *err, size_t errlen);
/* Stop it now (the temporary file is removed) and free w. */
void snapshot_writer_cancel(struct snapshot_writer *w);

/* log_compaction.c: after a snapshot, the log's dead prefix dropped by a
 * helper thread (wal_compact_*). start takes job (wal_compact_begin's);
 * poll finishes it once the copy is done and wait at once: both only with
 * no sync in flight. */
struct log_compaction;
struct wal_compaction;
bool log_compaction_running(const struct node *n);
int log_compaction_start(struct node *n, struct wal_compaction *job, char *err, size_t errlen);
void log_compaction_poll(struct node *n);
void log_compaction_wait(struct node *n);

/* snapshot.c */
/* At start, after wal_open: the newest snapshot into n->kv (an empty store
 * without one); *index and *term name it for raft_restore. */
int snapshot_load_newest(struct node *n, uint64_t *index, uint64_t *term, char *err, size_t errlen);
/* Every loop turn: reap a finished child, start one when the log is long. */
void snapshot_tick(struct node *n);
/* The log index at which the node takes its next snapshot by itself (0: never). */
uint64_t snapshot_next_due(const struct node *n);
/* Leader sending pr a snapshot: the chunk in flight (1-based) of how many. */
void snapshot_send_progress(const struct node *n, const struct raft_progress *pr, uint32_t *chunk,
                            uint32_t *chunks);
/* RAFT.SNAPSHOT: slot is answered once a snapshot is durable and compacted. */
void snapshot_request(struct node *n, struct reply_slot *slot);
/* Leader: the chunk of the snapshot file a RAFT_MSG_SNAPSHOT carries. 0, or
 * -1 when the file cannot be read (the message is not sent). */
int snapshot_attach_chunk(struct node *n, struct raft_msg *m);
/* A peer message just received: a follower's reply that it installed a
 * snapshot this leader sent goes to the event log (once per transfer). */
void snapshot_note_delivered(struct node *n, const struct raft_msg *m);
/* Follower, the ready's persist steps c and e, and the restore before apply. */
int snapshot_install(struct node *n, const struct raft_snapshot_install *in, char *err,
                     size_t errlen);
int snapshot_write_chunk(struct node *n, const struct raft_snapshot_chunk *c, char *err,
                         size_t errlen);
int snapshot_restore(struct node *n, const struct raft_snapshot_install *in, char *err,
                     size_t errlen);
/* Shutting down: stop a child, answer a waiting RAFT.SNAPSHOT, free. */
void snapshot_shutdown(struct node *n);

/* membership.c */
void membership_initial(const struct node *n, struct raft_config *cfg);
/* At start, before the transport opens: the address book from the
 * configuration in force (this node's own addresses included). */
void membership_start(struct node *n);
void membership_sync(struct node *n);  /* address book and sockets follow the configuration */
void membership_check(struct node *n); /* every loop turn */
void membership_info(const struct node *n, struct buf *out);
void membership_request_add(struct node *n, struct reply_slot *slot, uint32_t id,
                            const char *peer_url, const char *client_addr);
void membership_request_remove(struct node *n, struct reply_slot *slot, uint32_t id);
void membership_shutdown(struct node *n);

/* wire_report.c */
/* Note one message for the supervisor. Returns whether it was reported on
 * its own (false: folded into a count of heartbeats, or reporting is off). */
bool wire_report(struct node *n, enum wire_event ev, enum wire_lost lost, const struct raft_msg *m,
                 uint64_t id, bool shown);
bool wire_report_peer(struct node *n, enum wire_event ev, enum wire_lost lost, uint32_t from,
                      const struct Raftkv__PeerMessage *pm);
/* Send the records waiting, when it is time. */
void wire_report_tick(struct node *n, uint64_t now_ms);
/* Frozen: keep env (a peer message from `from` that passed every check). */
void wire_hold(struct node *n, uint32_t from, struct Raftkv__Envelope *env);
/* Freeze, thaw, deliver, drop, tick, reporting on or off. */
void wire_control(struct node *n, const struct Raftkv__Control *c);
void wire_close(struct node *n);

/* transfer.c */
void transfer_request(struct node *n, struct reply_slot *slot, uint32_t target);
void transfer_check(struct node *n); /* every loop turn */
void transfer_shutdown(struct node *n);

/* storage_thread.c */
int storage_start(struct node *n, char *err, size_t errlen);
void storage_stop(struct node *n);    /* makes everything written durable first */
int storage_fd(const struct node *n); /* readable when a sync finished */
/* Whether a sync is in flight or messages wait for one. */
bool storage_pending(const struct node *n);
/* Every loop turn: a finished sync is recorded, the core told, the
 * messages waiting for it sent, the next sync started. woken: epoll saw
 * storage_fd readable. -1: it failed. */
int storage_poll(struct node *n, bool woken, char *err, size_t errlen);
/* Whether a ready may be carried out with its entries written but not yet
 * synced (no hard state, truncation or snapshot to persist first). */
bool storage_can_defer(const struct node *n, const struct raft_ready *rd);
/* Whether a ready that may be deferred is better synced on the loop at
 * once: a small write while the thread is idle and nothing waits for it. */
bool storage_sync_inline(const struct node *n, const struct raft_ready *rd);
/* Write the ready's entries to the log and have them synced in the
 * background (with whatever else waits). */
int storage_write(struct node *n, const struct raft_ready *rd, char *err, size_t errlen);
/* Send m once everything written so far is durable. */
void storage_send_after_sync(struct node *n, const struct raft_msg *m);
/* Wait until nothing is in flight and everything written is durable, so
 * that the log can be used directly. notify: tell the core (not between
 * raft_ready and raft_advance, which counts it itself). */
int storage_drain(struct node *n, bool notify, char *err, size_t errlen);
/* After a failure: wait for the sync in flight and drop waiting messages. */
void storage_forget(struct node *n);
/* raft_compact_with's drop_data (arg: the node): data is gathered, and
 * after storage_free_handover the thread frees it, a few buffers at a time
 * while no sync waits. */
void storage_free_later(void *arg, uint8_t *data);
void storage_free_handover(struct node *n);
/* Remove the snapshot files below index, on the storage thread. */
void storage_remove_snapshots_below(struct node *n, uint64_t index);

/* status.c */
void status_publish(struct node *n);
void status_maybe_publish(struct node *n, uint64_t now_ms);

#endif

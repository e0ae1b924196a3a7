/* model.h - what the cockpit knows about the cluster.
 *
 * Built from the nodes' Status messages and from the supervisor's reports
 * (started, stopped, exited). No curses here: draw.c only reads the model,
 * and the headless mode prints its event log as lines.
 *
 * The model also checks Raft's safety properties across nodes, live:
 * at most one leader per term, committed entries agree, and the same applied
 * index gives the same state digest.
 */
#ifndef RAFTKV_UI_MODEL_H
#define RAFTKV_UI_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "raftkv.pb-c.h"
#include "wire_model.h"

#define MODEL_LOG_MAX 32  /* log tail entries kept per node */
#define MODEL_KV_MAX 64   /* KV rows kept per node */
#define MODEL_TEXT 80     /* one command or value, shortened */
#define MODEL_KEY 40      /* one key, shortened */
#define MODEL_EVENTS 1024 /* event log ring */
#define MODEL_EVENT_TEXT 200
#define MODEL_SILENT_MS 1500 /* no report for this long: the node looks silent */

/* What a person sees for a node: its Raft role, or why it has none. */
enum model_role {
    ROLE_FOLLOWER = 0, /* the values 0-3 are Status.role */
    ROLE_CANDIDATE = 1,
    ROLE_LEADER = 2,
    ROLE_PRECANDIDATE = 3, /* asking for pre-votes (dissertation 9.6) */
    ROLE_SUSPENDED,        /* SIGSTOPped by us, or suspended by RAFT.SUSPEND */
    ROLE_DOWN,             /* no process */
    ROLE_STARTING,         /* process started, no report yet */
};

/* The process behind a node, as the supervisor knows it. */
enum model_process { PROC_NOT_STARTED, PROC_RUNNING, PROC_STOPPED, PROC_EXITED };

enum model_event_kind {
    EV_INFO,
    EV_ELECTION, /* timeouts, votes, new terms */
    EV_LEADER,   /* a node became leader or stepped down */
    EV_COMMIT,
    EV_FAULT,  /* something the cockpit did to the cluster */
    EV_CLIENT, /* a client command and its answer */
    EV_NODE,   /* a line a node printed, a node starting or exiting */
    EV_VIOLATION,
    EV_SCRIPT,
};

struct model_entry {
    uint64_t index;
    uint64_t term;
    char text[MODEL_TEXT];
};

struct model_kv {
    char key[MODEL_KEY];
    char value[MODEL_TEXT];
    int64_t ttl_ms; /* -1: no TTL */
};

struct model_peer {
    uint32_t id;
    uint64_t next, match;
    uint64_t last_ack_ago_ms, last_send_ago_ms;
    uint64_t sent, received;
    bool blocked;
    uint64_t snapshot_index;                  /* being sent a snapshot (leader's view); 0: no */
    uint32_t snapshot_chunk, snapshot_chunks; /* chunk in flight (1-based) of how many */
};

struct model_node {
    uint32_t id;
    char client_addr[CLUSTER_HOST_MAX + 8];

    /* From the supervisor. */
    enum model_process process;
    int pid;
    uint64_t process_since_ms; /* when process last changed */
    int exit_code;             /* PROC_EXITED: >= 0 exit status, < 0 -signal */

    /* From the last Status of this process. */
    bool have_status;
    uint64_t last_report_ms;
    bool silent_reported;
    uint32_t role; /* Status.role */
    uint64_t term;
    uint32_t voted_for, leader;
    uint64_t commit_index, last_applied, last_index, last_term, commit_term;
    uint64_t snapshot_index, snapshot_term; /* its newest snapshot; 0: none */
    uint32_t election_timeout_ms, election_elapsed_ms, heartbeat_ms;
    struct model_entry log[MODEL_LOG_MAX];
    size_t n_log;
    struct model_kv kv[MODEL_KV_MAX];
    size_t n_kv;
    uint64_t kv_count;
    struct model_peer peers[CLUSTER_MAX_NODES];
    size_t n_peers;
    uint64_t msgs_sent, msgs_received, msgs_dropped, bad_messages;
    uint64_t state_digest;
    double speed;
    uint32_t drop_percent, delay_ms;
    bool prevote, check_quorum;          /* the node's Raft options */
    uint32_t lease_ms;                   /* leader leases: the lease (core ms); 0: off */
    bool lease_held;                     /* a leader holding its lease */
    uint32_t transfer_to;                /* leader handing leadership to this node; 0: no */
    uint32_t voters_mask, learners_mask; /* its configuration, bit per id */
    uint64_t config_index;
    bool suspended;
    uint32_t suspend_left_ms;
    uint64_t uptime_ms;
    uint32_t votes;
    uint64_t seq;
    uint32_t blocked_mask; /* bit per node id */
    bool frozen;           /* its clock is stopped, peer messages held */
    uint32_t held;         /* peer messages it holds */
    bool wire;             /* it reports its messages */

    /* Derived. */
    uint64_t forced_timeout_ms; /* when the cockpit last forced its timeout */
    bool lagging;
    uint64_t lag_commit; /* its commit index when it was seen behind */
};

struct model_event {
    uint64_t seq;
    uint64_t wall_ms;
    enum model_event_kind kind;
    char text[MODEL_EVENT_TEXT];
};

/* A summary of the whole cluster, computed on demand. */
struct model_view {
    uint32_t leader;         /* 0: none */
    uint64_t term;           /* the highest term any live node reports */
    size_t up;               /* nodes running and reporting */
    size_t largest_group;    /* nodes that can all reach each other */
    bool majority;           /* largest_group is a majority */
    bool leader_in_majority; /* and no node it can reach is in a newer term */
    uint64_t commit_index;   /* the leader's */
    /* The configuration: the leader's, else the newest a live node has. */
    uint32_t voters_mask, learners_mask; /* bit per id; 0: not reported */
    uint64_t config_index;
};

struct model_term_leader {
    uint64_t term;
    uint32_t leader;
    bool violated;
};

struct model_term_votes {
    uint64_t term;
    uint32_t candidates; /* bit per node id */
    uint32_t moved_on;   /* candidates seen in a later term */
    bool won;
    bool reported;
};

struct model_slot {
    uint64_t index; /* 0: empty */
    uint64_t value; /* entry term, or state digest */
    uint32_t node;
};

#define MODEL_SLOTS 4096
#define MODEL_VOTE_TERMS 32

struct model;

/* Who else hears what the model takes in (the recorder): statuses, wire
 * records, events and process changes, each as it arrives. Any may be NULL. */
struct model_observer {
    void *ctx;
    void (*on_status)(void *ctx, const struct model *m, const Raftkv__Status *st);
    void (*on_wire)(void *ctx, const struct model *m, const struct wire_rec *r);
    void (*on_event)(void *ctx, const struct model *m, const struct model_event *e);
    void (*on_process)(void *ctx, const struct model *m, uint32_t id, int process, int pid,
                       int exit_code);
};

struct model {
    size_t n;
    struct model_node nodes[CLUSTER_MAX_NODES];
    uint64_t now_ms;  /* monotonic, set by model_set_time */
    uint64_t wall_ms; /* wall clock, for time stamps */

    /* Safety: term -> leader, committed index -> term, applied index -> digest. */
    struct model_term_leader *term_leaders;
    size_t n_term_leaders, cap_term_leaders;
    struct model_slot committed[MODEL_SLOTS];
    struct model_slot applied[MODEL_SLOTS];
    uint64_t violations;
    char last_violation[MODEL_EVENT_TEXT];
    uint64_t checks; /* statuses checked */

    struct model_term_votes votes[MODEL_VOTE_TERMS];
    uint64_t announced_commit; /* commits already told in the event log */

    struct model_event events[MODEL_EVENTS];
    uint64_t n_events; /* total; events[seq % MODEL_EVENTS] */

    struct wire_model wire; /* messages on the wire */
    struct model_observer observer;
    /* A replay: events come from the recording (model_replay_event), not
     * from what the model works out, so they are the same lines. */
    bool replay;
};

/* Set up for the nodes in c (file order). Returns 0 or -1 (no memory). */
int model_init(struct model *m, const struct cluster *c);
/* A card for a node added later; the existing one if there is one. */
struct model_node *model_add_node(struct model *m, uint32_t id, const char *client_addr);
/* Whether the configuration in force (model_view's) has id as a learner. */
bool model_is_learner(const struct model *m, uint32_t id);
/* A node removed from the cluster: its card goes. */
void model_remove_node(struct model *m, uint32_t id);
void model_free(struct model *m);
void model_set_time(struct model *m, uint64_t now_ms, uint64_t wall_ms);

struct model_node *model_node(struct model *m, uint32_t id);
const struct model_node *model_node_const(const struct model *m, uint32_t id);

/* Apply one Status. Statuses from a pid other than the one the supervisor
 * started are ignored (late reports of a killed process). */
void model_apply_status(struct model *m, const Raftkv__Status *st);

/* The supervisor's view of a node's process. */
void model_set_process(struct model *m, uint32_t id, enum model_process p, int pid, int exit_code);
void model_note_forced_timeout(struct model *m, uint32_t id);

/* Once per loop: notices nodes that went silent. */
void model_tick(struct model *m);

enum model_role model_role_of(const struct model *m, const struct model_node *n);
const char *model_role_name(enum model_role r);
/* Parse "leader", "follower", ... (any case). -1 if unknown. */
int model_role_parse(const char *s);
uint64_t model_report_age_ms(const struct model *m, const struct model_node *n);
bool model_node_live(const struct model *m, const struct model_node *n);
void model_get_view(const struct model *m, struct model_view *v);
const struct model_kv *model_find_kv(const struct model_node *n, const char *key);

void model_event(struct model *m, enum model_event_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A recorded event, as it was (a replay). */
void model_replay_event(struct model *m, enum model_event_kind kind, uint64_t wall_ms,
                        const char *text);
const char *model_event_kind_name(enum model_event_kind k);
int model_event_kind_parse(const char *s); /* -1: unknown */
/* One record of a node's WireReport. */
void model_apply_wire(struct model *m, const struct wire_rec *r);
const struct model_event *model_event_at(const struct model *m, uint64_t seq);
/* The oldest event still kept. */
uint64_t model_first_event(const struct model *m);

#endif

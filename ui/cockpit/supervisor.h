/* supervisor.h - starts, stops and breaks raftkv-node processes.
 *
 * Process faults are signals (suspend = SIGSTOP, resume = SIGCONT, kill =
 * SIGKILL); network faults and timers are Control messages pushed to each
 * node's peer URL. The faults we want are remembered and sent again until a
 * node's status shows them, so a restarted node gets them too.
 *
 * The data dir holds the cluster secret (DATA_DIR/secret, 32 random bytes,
 * mode 0600, made on first use): every node is started with --secret-file,
 * every control carries a MAC and a new seq, and a status is believed only
 * when its MAC verifies.
 *
 * No orphans: every child gets PR_SET_PDEATHSIG(SIGKILL), and the cockpit
 * stops every node on quit, on SIGINT/SIGTERM/SIGHUP and on a crash.
 */
#ifndef RAFTKV_UI_SUPERVISOR_H
#define RAFTKV_UI_SUPERVISOR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "cluster.h"
#include "model.h"
#include "wire.h"

struct sup_options {
    size_t nodes;            /* when no config file is given */
    const char *data_dir;    /* NULL: a fresh temporary dir, removed on quit */
    const char *config_path; /* NULL: write one */
    const char *node_bin;    /* NULL: raftkv-node next to this program */
    int port_base;           /* 0: free ports chosen by the system */
    double speed;
    const char *requirepass_file; /* passed to every node; NULL: none */
    bool lease_reads;             /* every node gets --lease-reads on */
};

struct sup_node {
    uint32_t id;
    pid_t pid;             /* 0: no process */
    bool stopped;          /* SIGSTOPped by us */
    bool killed;           /* we sent SIGKILL; not reaped yet */
    bool restart_pending;  /* start again once reaped */
    uint64_t resume_at_ms; /* suspend N seconds: SIGCONT then; 0: never */
    char data_dir[PATH_MAX];
    char log_path[PATH_MAX];
    int control;           /* NN_PUSH connected to the node's peer URL */
    uint32_t want_blocked; /* bit per node id */
    uint64_t last_control_ms;
    uint64_t timeout_until_ms; /* a timeout_now not yet delivered */
    bool joined;               /* added by the cockpit: started with --join */
    bool removing;             /* stopped once the configuration leaves it out */
};

struct supervisor {
    struct cluster cluster;
    char dir[PATH_MAX];
    bool remove_dir;
    char cluster_path[PATH_MAX];
    char node_bin[PATH_MAX];
    char status_url[PATH_MAX + 16];
    int status_sock; /* NN_PULL */
    int status_fd;   /* its NN_RCVFD, for poll */
    double speed;
    uint32_t drop_percent;
    uint32_t delay_ms;
    bool frozen;                /* every node's clock stopped, peer messages held (:freeze) */
    bool wire_on;               /* nodes report their messages (:wire on) */
    bool prevote, check_quorum; /* dissertation 9.6, on every node */
    struct sup_node nodes[CLUSTER_MAX_NODES];
    struct model *model;
    char requirepass_file[PATH_MAX]; /* "" when none */
    bool lease_reads;                /* nodes serve reads on leader leases */
    uint64_t statuses, bad_statuses;
    uint64_t auth_failures;     /* statuses whose MAC did not verify */
    char secret_path[PATH_MAX]; /* DATA_DIR/secret: every node gets --secret-file */
    struct wire_key key;        /* from it: controls sealed, statuses verified */
    uint64_t control_seq;       /* last Control.seq sent */
    struct buf pack;            /* scratch for encoding controls */
};

/* Make the data dir, write or load the cluster file, bind the status socket.
 * Returns 0, or -1 with err filled. */
int sup_open(struct supervisor *s, const struct sup_options *o, char *err, size_t errlen);
/* The model to report to (set before starting nodes). */
void sup_attach_model(struct supervisor *s, struct model *m);
void sup_start_all(struct supervisor *s, uint64_t now_ms);
/* Stop every node (SIGTERM, then SIGKILL after a grace time), remove a
 * temporary data dir. */
void sup_close(struct supervisor *s);

struct sup_node *sup_node(struct supervisor *s, uint32_t id);

/* Faults. Each returns 0, or -1 with err filled ("node 2 is down"). */
int sup_suspend(struct supervisor *s, uint32_t id, double seconds, uint64_t now_ms, char *err,
                size_t errlen);
int sup_resume(struct supervisor *s, uint32_t id, char *err, size_t errlen);
int sup_kill(struct supervisor *s, uint32_t id, char *err, size_t errlen);
int sup_restart(struct supervisor *s, uint32_t id, uint64_t now_ms, char *err, size_t errlen);
int sup_isolate(struct supervisor *s, uint32_t id, uint64_t now_ms, char *err, size_t errlen);
/* groups[i] is a bit mask of node ids; nodes in no group form one more. */
int sup_partition(struct supervisor *s, const uint32_t *groups, size_t n_groups, uint64_t now_ms,
                  char *err, size_t errlen);
void sup_heal(struct supervisor *s, uint64_t now_ms);
/* Every running node's last status shows the partitions, loss, delay and
 * speed asked for. */
bool sup_faults_settled(const struct supervisor *s);
int sup_drop(struct supervisor *s, uint32_t percent, uint64_t now_ms, char *err, size_t errlen);
int sup_delay(struct supervisor *s, uint32_t ms, uint64_t now_ms, char *err, size_t errlen);
/* Pre-Vote and CheckQuorum on or off at every node (-1: leave as is). */
int sup_raft_options(struct supervisor *s, int prevote, int check_quorum, uint64_t now_ms,
                     char *err, size_t errlen);
/* A new node (the lowest free id, fresh loopback ports, --join) started:
 * *id, its peer URL and client address for RAFT.ADDNODE. */
int sup_add_node(struct supervisor *s, uint64_t now_ms, uint32_t *id, char *err, size_t errlen);
/* Node id is being removed: its process is stopped, and its card goes, once
 * the configuration in force leaves it out. */
int sup_remove_node(struct supervisor *s, uint32_t id, char *err, size_t errlen);
int sup_speed(struct supervisor *s, double speed, uint64_t now_ms, char *err, size_t errlen);
int sup_timeout(struct supervisor *s, uint32_t id, uint64_t now_ms, char *err, size_t errlen);
/* Freeze or thaw every node (a thaw delivers what they hold). */
void sup_freeze(struct supervisor *s, bool frozen, uint64_t now_ms);
/* Deliver (or drop) the message from `from` numbered id held by node `to`. */
int sup_release(struct supervisor *s, uint32_t to, uint32_t from, uint64_t id, bool deliver,
                char *err, size_t errlen);
/* Advance node id's clock by ms of its own time. */
int sup_tick_node(struct supervisor *s, uint32_t id, uint32_t ms, char *err, size_t errlen);
/* Nodes report their messages, or stop. */
void sup_wire(struct supervisor *s, bool on, uint64_t now_ms);

/* Once per loop: reap children, resume on schedule, resend faults. */
void sup_tick(struct supervisor *s, uint64_t now_ms);
/* Read every waiting Status into the model (never blocks). */
void sup_receive(struct supervisor *s);
/* From a signal handler: SIGKILL every node. Async-signal-safe. */
void sup_kill_all_now(void);

#endif

/* client.h - the cockpit's own Redis-protocol client, one request at a time,
 * never blocking: the main loop polls its socket.
 *
 * It talks to the leader, follows "-MOVED", waits out "-TRYAGAIN" and moves on
 * from a node that does not answer. Writes go as RAFT.REQ <client-id> <seq>
 * so a retry after a leader change is applied once.
 */
#ifndef RAFTKV_UI_CLIENT_H
#define RAFTKV_UI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cluster.h"

#define CLIENT_QUEUE 32
#define CLIENT_MAX_ARGS 8
#define CLIENT_TEXT 256

/* The raftkv-cli commands the cockpit takes. */
struct client_command {
    const char *name;  /* "setval" */
    const char *redis; /* "SET" */
    int min_args, max_args;
    bool write;
    const char *usage; /* "setval <key> <value>" */
    const char *help;
};

const struct client_command *client_command_find(const char *name);
const struct client_command *client_command_at(size_t i); /* NULL past the end */

struct client_result {
    int id;
    bool ok; /* false: an error reply, or no answer in time */
    char command[CLIENT_TEXT];
    char text[CLIENT_TEXT]; /* as raftkv-cli prints it: "OK", "None", "7", "error: ..." */
    uint32_t node;          /* the node that answered; 0 if none */
    uint64_t ms;            /* from the first attempt to the answer */
};

/* What the model knows, to pick a node. */
struct client_hints {
    uint32_t leader;    /* 0: unknown */
    uint32_t live_mask; /* bit per node id: running and reporting */
    double speed;       /* node timers' speed: slower clusters get more time */
};

struct client_op {
    int id;
    const struct client_command *cmd;
    size_t argc;
    char *argv[CLIENT_MAX_ARGS];
    uint64_t seq;         /* writes */
    uint32_t only_node;   /* != 0: ask this node once, follow no redirect */
    uint64_t started_ms;  /* when it reached the head of the queue; 0: waiting */
    bool maybe_applied;   /* an attempt was sent and got no definite answer */
    bool renamed;         /* sent again under a fresh client id once already */
    uint64_t deadline_ms; /* set when started */
};

enum client_state {
    CLIENT_IDLE,
    CLIENT_CONNECTING,
    CLIENT_SENDING,
    CLIENT_WAITING,
    CLIENT_BACKOFF
};

struct client {
    const struct cluster *cluster;
    uint64_t client_id;
    uint64_t next_seq;
    int next_id;

    struct client_op queue[CLIENT_QUEUE];
    size_t head, count;

    enum client_state state;
    int fd;
    uint32_t target;                     /* node id being asked, 0 if an address from MOVED */
    char redirect[CLUSTER_HOST_MAX + 8]; /* "host:port" from -MOVED, tried next */
    uint64_t attempt_deadline_ms;
    uint64_t retry_at_ms;
    uint32_t tried_mask;
    size_t round_robin;
    struct buf out, in;
    char last_error[128];
    const char *password; /* sent with AUTH before every request; NULL: none */
    bool auth_pending;    /* the AUTH reply comes first */

    struct client_result results[CLIENT_QUEUE];
    size_t rhead, rcount;
};

void client_init(struct client *c, const struct cluster *cluster, uint64_t seed);
void client_close(struct client *c);

/* Queue a command ("setval", args...); only_node != 0 asks that node only.
 * Returns its id (> 0), or -1 with err filled: unknown command, wrong
 * arguments (with the usage), queue full. */
int client_submit(struct client *c, size_t argc, char **argv, uint32_t only_node, char *err,
                  size_t errlen);
bool client_busy(const struct client *c);
/* The socket to poll and for what, or -1. */
int client_poll_fd(const struct client *c, short *events);
void client_tick(struct client *c, uint64_t now_ms, const struct client_hints *h);
bool client_take_result(struct client *c, struct client_result *out);

#endif

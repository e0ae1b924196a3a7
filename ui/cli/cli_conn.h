/* cli_conn.h - raftkv-cli's link to the cluster: the nodes it knows, the one it
 * talks to, and one request/reply exchange that follows MOVED to the leader and
 * retries through elections and unreachable nodes until the command's time is up. */
#ifndef RAFTKV_CLI_CONN_H
#define RAFTKV_CLI_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cluster.h"
#include "resp.h"

#define CLI_MAX_NODES 32
#define CLI_ADDR_MAX (CLUSTER_HOST_MAX + 8)

struct cli_node {
    uint32_t id; /* 0 while unknown */
    char host[CLUSTER_HOST_MAX];
    int port;
    char addr[CLI_ADDR_MAX]; /* "host:port" */
};

/* Where a request may be answered. */
enum cli_route {
    CLI_ROUTE_LEADER, /* the leader: follow MOVED, wait out TRYAGAIN, try other nodes */
    CLI_ROUTE_ANY,    /* any node: try the others while this one is unreachable */
    CLI_ROUTE_THIS,   /* only the node we talk to */
};

struct cli_conn {
    struct cli_node nodes[CLI_MAX_NODES]; /* the cluster file's, then ones learned */
    size_t n;
    size_t current; /* the node we talk to */
    int fd;         /* -1 while not connected */
    struct buf in;  /* received, not yet parsed */
    struct buf out;
    int64_t timeout_ms; /* total time one command may take */
    uint64_t client_id; /* random, never 0: makes retried writes apply once */
    uint64_t seq;       /* the last write's sequence number */
    char *password;     /* sent with AUTH on every new connection; NULL: none */
    bool maybe_applied; /* the last call sent its request without a definite answer
                           (a timeout, a dropped connection, UNCERTAIN) at least once */
};

/* Returns 0, or -1 with err filled when no random client id could be drawn. */
int cli_conn_init(struct cli_conn *c, int64_t timeout_ms, char *err, size_t errlen);
/* A fresh random client id, its sequence numbers starting again at 1. */
int cli_conn_new_client_id(struct cli_conn *c);
void cli_conn_close(struct cli_conn *c);

/* Add a node (or find it by address; a known id is kept, an unknown one filled in).
 * Returns its index, or -1 when the table is full. */
int cli_conn_add_node(struct cli_conn *c, uint32_t id, const char *host, int port);
/* Add every node of a cluster file. Returns 0, or -1 when the table is full. */
int cli_conn_add_cluster(struct cli_conn *c, const struct cluster *cluster);
/* The index of node id, or -1. */
int cli_conn_find_id(const struct cli_conn *c, uint32_t id);

/* Talk to node index from now on (closes the old connection if it changes). */
void cli_conn_select(struct cli_conn *c, size_t index);
const struct cli_node *cli_conn_node(const struct cli_conn *c);
/* "node 2 127.0.0.1:6402", or "127.0.0.1:6402" while the id is unknown. */
void cli_conn_describe(const struct cli_conn *c, char *out, size_t outlen);

/* Connect to the current node now (within the timeout, one attempt).
 * Returns 0, or -1 with err filled. */
int cli_conn_open(struct cli_conn *c, char *err, size_t errlen);

/* The next write's sequence number. */
uint64_t cli_conn_next_seq(struct cli_conn *c);

/* Send one command and wait for its reply, retrying as route allows until the
 * timeout has passed. A retry resends the same bytes, so a write carrying a
 * (client id, seq) pair applies once. Returns 0 with *reply set (possibly a
 * RESP_ERROR other than MOVED/TRYAGAIN; free it with resp_value_free), or -1
 * with err filled, e.g. "no node reachable (tried 127.0.0.1:6401, ...)". */
int cli_conn_call(struct cli_conn *c, enum cli_route route, size_t argc, const char *const *argv,
                  const size_t *argl, struct resp_value *reply, char *err, size_t errlen);

#endif

/* cluster.h - the cluster file: one line a node, "id peer-url client-address".
 *
 *   # id  peer (nanomsg URL)      client (Redis protocol)
 *   1     tcp://127.0.0.1:7001    127.0.0.1:6401
 *
 * '#' starts a comment; blank lines are skipped. ids are 1..9 and unique; peer
 * URLs are tcp:// or ipc://; client addresses are host:port.
 */
#ifndef RAFTKV_CLUSTER_H
#define RAFTKV_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLUSTER_MAX_NODES 9
#define CLUSTER_URL_MAX 256
#define CLUSTER_HOST_MAX 128

struct cluster_node {
    uint32_t id;
    char peer_url[CLUSTER_URL_MAX];
    char client_host[CLUSTER_HOST_MAX];
    int client_port;
    char client_addr[CLUSTER_HOST_MAX + 8]; /* "host:port" */
};

struct cluster {
    size_t n;
    struct cluster_node nodes[CLUSTER_MAX_NODES]; /* in file order */
    uint64_t cluster_id;                          /* hash of the node list: messages carry it */
};

/* Parse text; name is used in errors, e.g. "cluster.conf:3: expected 3 fields, got 2".
 * Returns 0, or -1 with err filled. */
int cluster_parse(const char *text, const char *name, struct cluster *out, char *err,
                  size_t errlen);
/* Read and parse a file: errors name the path (and line). */
int cluster_load(const char *path, struct cluster *out, char *err, size_t errlen);
const struct cluster_node *cluster_find(const struct cluster *c, uint32_t id);
/* A node that joins later (from the command line or a configuration entry):
 * the same checks as a line of the file, and cluster_id does not change
 * (it names the cluster file). Returns 0, or -1 with err filled. */
int cluster_add(struct cluster *c, uint32_t id, const char *peer_url, const char *client_addr,
                char *err, size_t errlen);
/* "1,2,3" from a mask with bit N set for node id N ("" when empty). */
void cluster_ids_text(uint32_t mask, char *out, size_t size);
/* Split "host:port"; returns 0, or -1 with err filled. */
int cluster_parse_hostport(const char *s, char *host, size_t hostlen, int *port, char *err,
                           size_t errlen);

/* Whether a peer URL stays on this machine: ipc://, or tcp:// to 127.x.x.x,
 * localhost or ::1. A wildcard ("tcp://" then "*:P"), an interface name or any other
 * host is not. */
bool cluster_url_is_loopback(const char *url);
/* url with a tcp:// host name turned into the numeric address it resolves to
 * (nanomsg binds only to addresses and interface names); other URLs as they
 * are. Returns 0, or -1 with err filled ("cannot resolve host X: reason"). */
int cluster_resolve_url(const char *url, char *out, size_t outlen, char *err, size_t errlen);

#endif

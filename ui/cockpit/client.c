/* client.c - a non-blocking Redis-protocol client for the cockpit's commands. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resp.h"

#define RETRY_MS 100        /* after TRYAGAIN or a refused connection */
#define ATTEMPT_MS 1000     /* one node's time to answer, at speed 1 */
#define OP_DEADLINE_MS 5000 /* one command's time, at speed 1 */

static const struct client_command commands[] = {
    {"setval", "SET", 2, 2, true, "setval <key> <value>", "store value under key"},
    {"getval", "GET", 1, 1, false, "getval <key>", "read a key (None if missing)"},
    {"incr", "INCR", 1, 1, true, "incr <key>", "add 1 to an integer key"},
    {"expire", "EXPIRE", 2, 2, true, "expire <key> <seconds>", "delete key after seconds"},
    {"ttl", "TTL", 1, 1, false, "ttl <key>", "seconds left (-1 no TTL, -2 no key)"},
    {"del", "DEL", 1, 1, true, "del <key>", "delete a key"},
    {"getleader", "RAFT.LEADER", 0, 0, false, "getleader", "ask a node who leads"},
    {"raft.snapshot", "RAFT.SNAPSHOT", 0, 0, false, "raft.snapshot",
     "the node asked takes a snapshot now (see snapshot N)"},
    {"raft.transfer", "RAFT.TRANSFER", 1, 1, false, "raft.transfer <id>",
     "the leader hands leadership to node id (see transfer N)"},
    {"raft.addnode", "RAFT.ADDNODE", 3, 3, false, "raft.addnode <id> <peer-url> <client>",
     "the leader adds a node started with --join (see add)"},
    {"raft.removenode", "RAFT.REMOVENODE", 1, 1, false, "raft.removenode <id>",
     "the leader removes a node (see remove N)"},
};

const struct client_command *client_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

const struct client_command *client_command_at(size_t i)
{
    return i < sizeof commands / sizeof commands[0] ? &commands[i] : NULL;
}

/* A new random client id (never 0, never the old one). */
static uint64_t client_fresh_id(uint64_t old)
{
    uint64_t id = 0;
    while (id == 0 || id == old) {
        if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
            id = old * 6364136223846793005ull + 1442695040888963407ull;
    }
    return id;
}

void client_init(struct client *c, const struct cluster *cluster, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->cluster = cluster;
    c->client_id = seed ? seed : 1;
    c->next_seq = 1;
    c->next_id = 1;
    c->fd = -1;
}

static void op_free(struct client_op *op)
{
    for (size_t i = 0; i < op->argc; i++)
        free(op->argv[i]);
    op->argc = 0;
}

static void disconnect(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_reset(&c->out);
    buf_reset(&c->in);
}

void client_close(struct client *c)
{
    disconnect(c);
    while (c->count) {
        op_free(&c->queue[c->head]);
        c->head = (c->head + 1) % CLIENT_QUEUE;
        c->count--;
    }
    buf_free(&c->out);
    buf_free(&c->in);
}

static double slowness(const struct client_hints *h)
{
    return (h && h->speed > 0 && h->speed < 1) ? 1.0 / h->speed : 1.0;
}

int client_submit(struct client *c, size_t argc, char **argv, uint32_t only_node, char *err,
                  size_t errlen)
{
    const struct client_command *cmd = argc ? client_command_find(argv[0]) : NULL;
    if (!cmd) {
        snprintf(err, errlen, "unknown client command '%s'", argc ? argv[0] : "");
        return -1;
    }
    int nargs = (int)argc - 1;
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        snprintf(err, errlen, "usage: %s", cmd->usage);
        return -1;
    }
    if (c->count == CLIENT_QUEUE) {
        snprintf(err, errlen, "too many client commands waiting; try again soon");
        return -1;
    }
    struct client_op *op = &c->queue[(c->head + c->count) % CLIENT_QUEUE];
    memset(op, 0, sizeof *op);
    for (size_t i = 0; i < argc; i++) {
        op->argv[i] = strdup(argv[i]);
        if (!op->argv[i]) {
            op->argc = i;
            op_free(op);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    op->argc = argc;
    op->cmd = cmd;
    op->id = c->next_id++;
    op->seq = cmd->write ? c->next_seq++ : 0;
    op->only_node = only_node;
    c->count++;
    return op->id;
}

bool client_busy(const struct client *c)
{
    return c->count > 0;
}

int client_poll_fd(const struct client *c, short *events)
{
    if (c->fd < 0)
        return -1;
    switch (c->state) {
    case CLIENT_CONNECTING:
    case CLIENT_SENDING:
        *events = POLLOUT;
        return c->fd;
    case CLIENT_WAITING:
        *events = POLLIN;
        return c->fd;
    default:
        return -1;
    }
}

/* ------------------------------------------------------------ results */

static void finish(struct client *c, bool ok, const char *text, uint64_t now_ms)
{
    struct client_op *op = &c->queue[c->head];
    if (c->rcount == CLIENT_QUEUE) { /* nobody reads results: drop the oldest */
        c->rhead = (c->rhead + 1) % CLIENT_QUEUE;
        c->rcount--;
    }
    struct client_result *r = &c->results[(c->rhead + c->rcount++) % CLIENT_QUEUE];
    memset(r, 0, sizeof *r);
    r->id = op->id;
    r->ok = ok;
    r->node = ok ? c->target : 0;
    r->ms = now_ms - op->started_ms;
    size_t used = 0;
    for (size_t i = 0; i < op->argc && used + 2 < sizeof r->command; i++)
        used += (size_t)snprintf(r->command + used, sizeof r->command - used, "%s%s", i ? " " : "",
                                 op->argv[i]);
    snprintf(r->text, sizeof r->text, "%s", text);

    disconnect(c);
    op_free(op);
    c->head = (c->head + 1) % CLIENT_QUEUE;
    c->count--;
    c->state = CLIENT_IDLE;
    c->redirect[0] = '\0';
    c->tried_mask = 0;
    c->last_error[0] = '\0';
}

bool client_take_result(struct client *c, struct client_result *out)
{
    if (!c->rcount)
        return false;
    *out = c->results[c->rhead];
    c->rhead = (c->rhead + 1) % CLIENT_QUEUE;
    c->rcount--;
    return true;
}

/* ------------------------------------------------------------ attempts */

static uint32_t node_of_addr(const struct client *c, const char *addr)
{
    for (size_t i = 0; i < c->cluster->n; i++)
        if (strcmp(c->cluster->nodes[i].client_addr, addr) == 0)
            return c->cluster->nodes[i].id;
    return 0;
}

/* Pick whom to ask: a redirect, else the leader, else the next live node. */
static uint32_t pick_target(struct client *c, const struct client_hints *h)
{
    if (c->queue[c->head].only_node)
        return c->queue[c->head].only_node;
    uint32_t live = h ? h->live_mask : 0;
    if (c->redirect[0]) {
        uint32_t id = node_of_addr(c, c->redirect);
        c->redirect[0] = '\0';
        if (id && (!live || (live & (1u << id))))
            return id;
    }
    if (h && h->leader && !(c->tried_mask & (1u << h->leader)))
        return h->leader;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < c->cluster->n; k++) {
            const struct cluster_node *n = &c->cluster->nodes[c->round_robin++ % c->cluster->n];
            uint32_t b = 1u << n->id;
            if ((pass == 0 && live && !(live & b)) || (c->tried_mask & b))
                continue;
            return n->id;
        }
        c->tried_mask = 0;
    }
    return c->cluster->nodes[0].id;
}

static int open_connection(const char *host, int port)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int build_request(struct client *c, const struct client_op *op)
{
    const uint8_t *argv[CLIENT_MAX_ARGS + 4];
    size_t argl[CLIENT_MAX_ARGS + 4];
    char id[24], seq[24];
    size_t n = 0;
    if (op->cmd->write) {
        snprintf(id, sizeof id, "%" PRIu64, c->client_id);
        snprintf(seq, sizeof seq, "%" PRIu64, op->seq);
        argv[n++] = (const uint8_t *)"RAFT.REQ";
        argv[n++] = (const uint8_t *)id;
        argv[n++] = (const uint8_t *)seq;
    }
    argv[n++] = (const uint8_t *)op->cmd->redis;
    for (size_t i = 1; i < op->argc; i++)
        argv[n++] = (const uint8_t *)op->argv[i];
    for (size_t i = 0; i < n; i++)
        argl[i] = strlen((const char *)argv[i]);
    buf_reset(&c->out);
    /* Every attempt opens a new connection: AUTH goes first on it. */
    c->auth_pending = c->password != NULL;
    if (c->auth_pending) {
        const uint8_t *auth[2] = {(const uint8_t *)"AUTH", (const uint8_t *)c->password};
        size_t auth_len[2] = {4, strlen(c->password)};
        if (resp_write_command(&c->out, 2, auth, auth_len) < 0)
            return -1;
    }
    return resp_write_command(&c->out, n, argv, argl);
}

static void start_attempt(struct client *c, uint64_t now_ms, const struct client_hints *h)
{
    struct client_op *op = &c->queue[c->head];
    c->target = pick_target(c, h);
    const struct cluster_node *n = cluster_find(c->cluster, c->target);
    if (!n || build_request(c, op) < 0) {
        finish(c, false, "error: cannot build the request", now_ms);
        return;
    }
    c->fd = open_connection(n->client_host, n->client_port);
    if (c->fd < 0) {
        snprintf(c->last_error, sizeof c->last_error, "cannot connect to node %u", c->target);
        c->tried_mask |= 1u << c->target;
        c->state = CLIENT_BACKOFF;
        c->retry_at_ms = now_ms + RETRY_MS;
        return;
    }
    double attempt = ATTEMPT_MS * slowness(h);
    c->attempt_deadline_ms = now_ms + (uint64_t)(attempt > 10000 ? 10000 : attempt);
    if (op->only_node)
        c->attempt_deadline_ms = op->deadline_ms;
    c->state = CLIENT_CONNECTING;
}

/* This node failed us: try another one soon. */
static void give_up_on_node(struct client *c, uint64_t now_ms, const char *why)
{
    snprintf(c->last_error, sizeof c->last_error, "node %u %s", c->target, why);
    /* Once bytes of the request may have left, its fate is unknown. */
    if (c->state == CLIENT_SENDING || c->state == CLIENT_WAITING)
        c->queue[c->head].maybe_applied = true;
    if (c->queue[c->head].only_node) {
        char text[CLIENT_TEXT];
        snprintf(text, sizeof text, "error: %.128s", c->last_error);
        finish(c, false, text, now_ms);
        return;
    }
    c->tried_mask |= 1u << c->target;
    disconnect(c);
    c->state = CLIENT_BACKOFF;
    c->retry_at_ms = now_ms + RETRY_MS;
}

static void format_reply(const struct client_op *op, const struct resp_value *v, char *out,
                         size_t size)
{
    switch (v->type) {
    case RESP_SIMPLE:
        snprintf(out, size, "%s", v->str);
        break;
    case RESP_INT:
        snprintf(out, size, "%" PRId64, v->integer);
        break;
    case RESP_BULK:
        snprintf(out, size, "%s", v->str);
        break;
    case RESP_NIL:
        snprintf(out, size, "%s",
                 strcmp(op->cmd->name, "getleader") == 0 ? "no leader known" : "None");
        break;
    case RESP_ERROR:
        snprintf(out, size, "error: %s", strncmp(v->str, "ERR ", 4) == 0 ? v->str + 4 : v->str);
        break;
    case RESP_ARRAY:
        snprintf(out, size, "(array of %zu)", v->n);
        break;
    }
}

static void handle_reply(struct client *c, const struct resp_value *v, uint64_t now_ms)
{
    struct client_op *op = &c->queue[c->head];
    if (v->type == RESP_ERROR && strncmp(v->str, "MOVED ", 6) == 0 && !op->only_node) {
        const char *addr = strchr(v->str + 6, ' ');
        snprintf(c->redirect, sizeof c->redirect, "%s", addr ? addr + 1 : "");
        snprintf(c->last_error, sizeof c->last_error, "node %u sent us to %.64s", c->target,
                 c->redirect);
        disconnect(c);
        c->state = CLIENT_BACKOFF;
        c->retry_at_ms = now_ms; /* at once */
        return;
    }
    /* TRYAGAIN: not applied. UNCERTAIN: the node lost leadership before it
     * learned the write's fate. The retry carries the same client id and
     * sequence number, so it applies at most once and gets the first answer. */
    /* The state machine knows no session for our client id (its first
     * request never reached the log, or it was idle for an hour): if no
     * attempt of this request can have been applied, send it again under a
     * fresh client id at seq 1. */
    if (v->type == RESP_ERROR && strncmp(v->str, "ERR unknown client session", 26) == 0 &&
        op->cmd->write && !op->maybe_applied && !op->renamed) {
        c->client_id = client_fresh_id(c->client_id);
        c->next_seq = 1;
        op->seq = c->next_seq++;
        op->renamed = true;
        disconnect(c);
        c->state = CLIENT_BACKOFF;
        c->retry_at_ms = now_ms;
        return;
    }
    bool uncertain = v->type == RESP_ERROR && strncmp(v->str, "UNCERTAIN", 9) == 0;
    if (uncertain)
        op->maybe_applied = true;
    if (v->type == RESP_ERROR && (uncertain || strncmp(v->str, "TRYAGAIN", 8) == 0) &&
        !op->only_node) {
        give_up_on_node(c, now_ms,
                        uncertain ? "lost leadership before the write committed"
                                  : "knows no leader yet");
        c->tried_mask &= ~(1u << c->target); /* it may know one soon */
        return;
    }
    char text[CLIENT_TEXT];
    format_reply(op, v, text, sizeof text);
    finish(c, v->type != RESP_ERROR, text, now_ms);
}

static void on_writable(struct client *c, uint64_t now_ms)
{
    if (c->state == CLIENT_CONNECTING) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
            give_up_on_node(c, now_ms, "refused the connection");
            return;
        }
        c->state = CLIENT_SENDING;
    }
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            give_up_on_node(c, now_ms, "closed the connection");
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    c->state = CLIENT_WAITING;
}

static void on_readable(struct client *c, uint64_t now_ms)
{
    uint8_t chunk[4096];
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
        if (n == 0) {
            give_up_on_node(c, now_ms, "closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            give_up_on_node(c, now_ms, "closed the connection");
            return;
        }
        if (buf_append(&c->in, chunk, (size_t)n) < 0) {
            give_up_on_node(c, now_ms, "sent more than we can hold");
            return;
        }
    }
    for (;;) {
        struct resp_value v;
        size_t used;
        char err[128];
        int rc = resp_parse_reply(c->in.data, c->in.len, &v, &used, err, sizeof err);
        if (rc == RESP_PARSE_MORE)
            return;
        if (rc == RESP_PARSE_ERROR) {
            give_up_on_node(c, now_ms, "sent a bad reply");
            return;
        }
        buf_consume(&c->in, used);
        if (!c->auth_pending) {
            handle_reply(c, &v, now_ms);
            resp_value_free(&v);
            return;
        }
        c->auth_pending = false;
        if (v.type == RESP_ERROR) {
            char text[CLIENT_TEXT];
            snprintf(text, sizeof text, "error: authentication failed: %.160s", v.str);
            resp_value_free(&v);
            finish(c, false, text, now_ms);
            return;
        }
        resp_value_free(&v);
    }
}

void client_tick(struct client *c, uint64_t now_ms, const struct client_hints *h)
{
    if (!c->count)
        return;
    struct client_op *op = &c->queue[c->head];
    if (!op->started_ms) { /* its time runs from now, not from when it was queued */
        double limit = OP_DEADLINE_MS * slowness(h);
        op->started_ms = now_ms ? now_ms : 1;
        op->deadline_ms = now_ms + (uint64_t)(limit > 60000 ? 60000 : limit);
    }
    if (now_ms >= op->deadline_ms) {
        char text[CLIENT_TEXT];
        snprintf(text, sizeof text, "error: no answer in %.1f s%s%.128s",
                 (double)(now_ms - op->started_ms) / 1000.0, c->last_error[0] ? "; last: " : "",
                 c->last_error);
        finish(c, false, text, now_ms);
        return;
    }
    switch (c->state) {
    case CLIENT_IDLE:
        start_attempt(c, now_ms, h);
        break;
    case CLIENT_BACKOFF:
        if (now_ms >= c->retry_at_ms)
            start_attempt(c, now_ms, h);
        break;
    case CLIENT_CONNECTING:
    case CLIENT_SENDING:
    case CLIENT_WAITING: {
        struct pollfd p = {.fd = c->fd, .events = c->state == CLIENT_WAITING ? POLLIN : POLLOUT};
        if (poll(&p, 1, 0) > 0) {
            if (c->state == CLIENT_WAITING)
                on_readable(c, now_ms);
            else
                on_writable(c, now_ms);
        }
        if (c->fd >= 0 && c->state != CLIENT_BACKOFF && now_ms >= c->attempt_deadline_ms)
            give_up_on_node(c, now_ms, "did not answer in time");
        break;
    }
    }
}

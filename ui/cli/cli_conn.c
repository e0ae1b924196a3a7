/* cli_conn.c - the request loop: connect, send, receive with deadlines, follow
 * MOVED, back off on TRYAGAIN and on unreachable nodes. */
#include "cli_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli_net.h"

#define ATTEMPT_MS 1000   /* a node silent this long is passed over */
#define BACKOFF_MIN_MS 20 /* first pause between rounds of retries */
#define BACKOFF_MAX_MS 200
#define RECV_CHUNK 65536

/* How one exchange with one node ended. */
enum exchange_result {
    EXCHANGE_ANSWER,      /* *reply holds the node's answer */
    EXCHANGE_UNREACHABLE, /* connect, send or receive failed or timed out */
    EXCHANGE_FATAL,       /* protocol error or no memory: retrying will not help */
};

static int random_client_id(uint64_t *id)
{
    do {
        if (getrandom(id, sizeof *id, 0) != (ssize_t)sizeof *id) {
            int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return -1;
            ssize_t got = read(fd, id, sizeof *id);
            close(fd);
            if (got != (ssize_t)sizeof *id)
                return -1;
        }
    } while (*id == 0);
    return 0;
}

int cli_conn_init(struct cli_conn *c, int64_t timeout_ms, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    if (random_client_id(&c->client_id) < 0) {
        snprintf(err, errlen, "cannot draw a random client id: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int cli_conn_new_client_id(struct cli_conn *c)
{
    if (random_client_id(&c->client_id) < 0)
        return -1;
    c->seq = 0;
    return 0;
}

static void drop_connection(struct cli_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_reset(&c->in);
}

void cli_conn_close(struct cli_conn *c)
{
    drop_connection(c);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c->password);
    c->password = NULL;
}

int cli_conn_add_node(struct cli_conn *c, uint32_t id, const char *host, int port)
{
    for (size_t i = 0; i < c->n; i++) {
        struct cli_node *node = &c->nodes[i];
        if (node->port == port && strcmp(node->host, host) == 0) {
            if (node->id == 0)
                node->id = id;
            return (int)i;
        }
    }
    if (c->n == CLI_MAX_NODES || strlen(host) >= CLUSTER_HOST_MAX)
        return -1;
    struct cli_node *node = &c->nodes[c->n];
    node->id = id;
    snprintf(node->host, sizeof node->host, "%s", host);
    node->port = port;
    snprintf(node->addr, sizeof node->addr, "%s:%d", host, port);
    return (int)c->n++;
}

int cli_conn_add_cluster(struct cli_conn *c, const struct cluster *cluster)
{
    for (size_t i = 0; i < cluster->n; i++) {
        const struct cluster_node *node = &cluster->nodes[i];
        if (cli_conn_add_node(c, node->id, node->client_host, node->client_port) < 0)
            return -1;
    }
    return 0;
}

int cli_conn_find_id(const struct cli_conn *c, uint32_t id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->nodes[i].id == id)
            return (int)i;
    return -1;
}

void cli_conn_select(struct cli_conn *c, size_t index)
{
    if (index != c->current)
        drop_connection(c);
    c->current = index;
}

const struct cli_node *cli_conn_node(const struct cli_conn *c)
{
    return &c->nodes[c->current];
}

void cli_conn_describe(const struct cli_conn *c, char *out, size_t outlen)
{
    const struct cli_node *node = cli_conn_node(c);
    if (node->id != 0)
        snprintf(out, outlen, "node %" PRIu32 " %s", node->id, node->addr);
    else
        snprintf(out, outlen, "%s", node->addr);
}

/* Read one whole reply from the current connection. */
static enum exchange_result read_reply(struct cli_conn *c, int64_t deadline,
                                       struct resp_value *reply, char *err, size_t errlen)
{
    for (;;) {
        size_t used = 0;
        char perr[128];
        int r = resp_parse_reply(c->in.data, c->in.len, reply, &used, perr, sizeof perr);
        if (r == RESP_PARSE_DONE) {
            buf_consume(&c->in, used);
            if (c->in.len > 0) /* bytes nobody asked for: start afresh next time */
                drop_connection(c);
            return EXCHANGE_ANSWER;
        }
        if (r == RESP_PARSE_ERROR) {
            snprintf(err, errlen, "bad reply from %s: %s", cli_conn_node(c)->addr, perr);
            drop_connection(c);
            return EXCHANGE_FATAL;
        }
        if (buf_reserve(&c->in, RECV_CHUNK) < 0) {
            snprintf(err, errlen, "out of memory");
            drop_connection(c);
            return EXCHANGE_FATAL;
        }
        ssize_t got =
            cli_net_recv(c->fd, c->in.data + c->in.len, RECV_CHUNK, deadline, err, errlen);
        if (got < 0) {
            drop_connection(c);
            return EXCHANGE_UNREACHABLE;
        }
        c->in.len += (size_t)got;
    }
}

/* AUTH on a new connection, as redis-cli -a does. */
static enum exchange_result authenticate(struct cli_conn *c, int64_t deadline, char *err,
                                         size_t errlen)
{
    const char *argv[2] = {"AUTH", c->password};
    size_t argl[2] = {4, strlen(c->password)};
    struct buf cmd = {0};
    if (resp_write_command(&cmd, 2, (const uint8_t *const *)argv, argl) < 0) {
        buf_free(&cmd);
        snprintf(err, errlen, "out of memory");
        return EXCHANGE_FATAL;
    }
    int sent = cli_net_send_all(c->fd, cmd.data, cmd.len, deadline, err, errlen);
    buf_free(&cmd);
    if (sent < 0) {
        drop_connection(c);
        return EXCHANGE_UNREACHABLE;
    }
    struct resp_value reply;
    enum exchange_result r = read_reply(c, deadline, &reply, err, errlen);
    if (r != EXCHANGE_ANSWER)
        return r;
    if (reply.type == RESP_ERROR) {
        snprintf(err, errlen, "authentication failed at %s: %s", cli_conn_node(c)->addr, reply.str);
        resp_value_free(&reply);
        drop_connection(c);
        return EXCHANGE_FATAL;
    }
    resp_value_free(&reply);
    return EXCHANGE_ANSWER;
}

static enum exchange_result connect_current(struct cli_conn *c, int64_t deadline, char *err,
                                            size_t errlen)
{
    if (c->fd >= 0)
        return EXCHANGE_ANSWER;
    const struct cli_node *node = cli_conn_node(c);
    int fd = cli_net_connect(node->host, node->port, deadline, err, errlen);
    if (fd < 0)
        return EXCHANGE_UNREACHABLE;
    c->fd = fd;
    buf_reset(&c->in);
    if (c->password != NULL)
        return authenticate(c, deadline, err, errlen);
    return EXCHANGE_ANSWER;
}

int cli_conn_open(struct cli_conn *c, char *err, size_t errlen)
{
    return connect_current(c, cli_now_ms() + c->timeout_ms, err, errlen) == EXCHANGE_ANSWER ? 0
                                                                                            : -1;
}

uint64_t cli_conn_next_seq(struct cli_conn *c)
{
    return ++c->seq;
}

/* Send the request in c->out to the current node and read one reply. */
static enum exchange_result exchange(struct cli_conn *c, int64_t deadline, struct resp_value *reply,
                                     char *err, size_t errlen)
{
    enum exchange_result r = connect_current(c, deadline, err, errlen);
    if (r != EXCHANGE_ANSWER)
        return r;
    /* From here on the node may have taken the request: without an answer
     * (or with UNCERTAIN) its fate is unknown. */
    if (cli_net_send_all(c->fd, c->out.data, c->out.len, deadline, err, errlen) < 0) {
        c->maybe_applied = true;
        drop_connection(c);
        return EXCHANGE_UNREACHABLE;
    }
    r = read_reply(c, deadline, reply, err, errlen);
    if (r != EXCHANGE_ANSWER ||
        (reply->type == RESP_ERROR && strncmp(reply->str, "UNCERTAIN", 9) == 0))
        c->maybe_applied = true;
    return r;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "MOVED 0 127.0.0.1:6402": add the leader's address and talk to it.
 * Returns 0, or -1 when the answer cannot be understood. */
static int follow_moved(struct cli_conn *c, const char *moved)
{
    const char *addr = strrchr(moved, ' ');
    if (addr == NULL)
        return -1;
    char host[CLUSTER_HOST_MAX];
    int port;
    char err[128];
    if (cluster_parse_hostport(addr + 1, host, sizeof host, &port, err, sizeof err) < 0)
        return -1;
    int index = cli_conn_add_node(c, 0, host, port);
    if (index < 0)
        return -1;
    cli_conn_select(c, (size_t)index);
    return 0;
}

/* The error for a command whose time ran out. */
static void explain_timeout(const struct cli_conn *c, const size_t *order, size_t ntried,
                            bool any_answered, const char *last_answer, char *err, size_t errlen)
{
    if (any_answered) {
        snprintf(err, errlen, "no leader found within %.3g s (last answer: %s)",
                 (double)c->timeout_ms / 1000.0, last_answer);
        return;
    }
    size_t used = (size_t)snprintf(err, errlen, "no node reachable (tried ");
    for (size_t i = 0; i < ntried && used < errlen; i++)
        used += (size_t)snprintf(err + used, errlen - used, "%s%s", i > 0 ? ", " : "",
                                 c->nodes[order[i]].addr);
    if (ntried == 0 && used < errlen)
        used += (size_t)snprintf(err + used, errlen - used, "%s", cli_conn_node(c)->addr);
    if (used < errlen)
        snprintf(err + used, errlen - used, ")");
}

int cli_conn_call(struct cli_conn *c, enum cli_route route, size_t argc, const char *const *argv,
                  const size_t *argl, struct resp_value *reply, char *err, size_t errlen)
{
    buf_reset(&c->out);
    if (resp_write_command(&c->out, argc, (const uint8_t *const *)argv, argl) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    int64_t deadline = cli_now_ms() + c->timeout_ms;
    c->maybe_applied = false; /* set by any attempt whose fate is unknown */
    bool tried[CLI_MAX_NODES] = {false};
    size_t order[CLI_MAX_NODES]; /* the nodes that failed, in the order they did */
    size_t ntried = 0;
    bool any_answered = false;
    char last_answer[256] = "";
    int64_t backoff = BACKOFF_MIN_MS;
    size_t unreachable_in_row = 0;
    size_t moved_in_row = 0;

    while (cli_now_ms() < deadline) {
        int64_t attempt_deadline = cli_now_ms() + ATTEMPT_MS;
        if (attempt_deadline > deadline)
            attempt_deadline = deadline;
        bool reused = c->fd >= 0;
        char why[512];
        enum exchange_result r = exchange(c, attempt_deadline, reply, why, sizeof why);

        if (r == EXCHANGE_FATAL) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
        if (r == EXCHANGE_UNREACHABLE) {
            /* A connection kept from an earlier command may have been closed by a
             * restarted node: try that node once more on a new connection. */
            if (reused && strcmp(why, CLI_NET_TIMED_OUT) != 0)
                continue;
            if (!tried[c->current]) {
                tried[c->current] = true;
                order[ntried++] = c->current;
            }
            unreachable_in_row++;
            size_t round = route == CLI_ROUTE_THIS ? 1 : c->n;
            if (route != CLI_ROUTE_THIS)
                cli_conn_select(c, (c->current + 1) % c->n);
            if (unreachable_in_row % round == 0) {
                cli_sleep_until(backoff, deadline);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            }
            continue;
        }

        unreachable_in_row = 0;
        if (route != CLI_ROUTE_LEADER || reply->type != RESP_ERROR)
            return 0;
        if (starts_with(reply->str, "MOVED ")) {
            any_answered = true;
            snprintf(last_answer, sizeof last_answer, "%s", reply->str);
            int moved = follow_moved(c, reply->str);
            resp_value_free(reply);
            if (moved < 0) {
                snprintf(err, errlen, "cannot follow '%s'", last_answer);
                return -1;
            }
            /* Two redirects in a row: nodes disagree on the leader during an election. */
            if (++moved_in_row > 1) {
                cli_sleep_until(backoff, deadline);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            }
            continue;
        }
        /* TRYAGAIN: not applied; UNCERTAIN: the node lost leadership before
         * it learned the write's fate. Either way the same request (the same
         * client id and sequence number) goes again: it applies at most once,
         * and a retry of an applied write gets the first answer. */
        if (starts_with(reply->str, "TRYAGAIN") || starts_with(reply->str, "UNCERTAIN")) {
            any_answered = true;
            moved_in_row = 0;
            snprintf(last_answer, sizeof last_answer, "%s", reply->str);
            resp_value_free(reply);
            cli_sleep_until(backoff, deadline);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            /* This node may be cut off from the others: ask the next one. */
            cli_conn_select(c, (c->current + 1) % c->n);
            continue;
        }
        return 0; /* any other error is the command's answer */
    }
    explain_timeout(c, order, ntried, any_answered, last_answer, err, errlen);
    return -1;
}

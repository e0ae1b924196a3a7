/* clients.c - Redis-protocol client connections: accept, read and parse
 * requests, and write replies back strictly in request order.
 *
 * Every client is bounded, as in Redis: its unsent replies (past
 * --client-output-limit it is disconnected), an unfinished request
 * (--client-input-limit), the number of clients (--maxclients), idle time
 * (--timeout). A client that does not read its replies is not served more
 * requests until it does, and running out of descriptors is answered with an
 * error instead of a spinning accept(). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node.h"

#define CLIENT_READ_CHUNK (64 * 1024)
/* Past this many unsent reply bytes a client's next requests wait until it
 * reads: a client that never reads cannot make the node build replies
 * without end. */
#define CLIENT_OUTPUT_PAUSE (1024 * 1024)
/* Hand replies to the kernel as soon as this much is waiting, so that a
 * client reading a long pipeline holds little in the node's memory. */
#define CLIENT_WRITE_EAGER (256 * 1024)
#define CLIENT_MAX_PENDING 4096 /* replies owed before input stops */
/* Reads a client may have in flight: their replies are built in one loop turn
 * and may be big (GET of a large value), so a pipeline of them is served a
 * batch at a time rather than all in one turn that would starve the peers. */
#define CLIENT_MAX_READS_IN_FLIGHT 16
#define CLIENT_DEFAULT_MAX 10000   /* --maxclients, as Redis */
#define CLIENT_RESERVED_FDS 32     /* kept for the log, peers and reconnections */
#define CLIENT_ACCEPT_PAUSE_MS 100 /* out of descriptors and no spare */
#define CLIENT_ACCEPT_BATCH 256    /* connections taken per loop turn */
#define CLIENT_REFUSED "-ERR max number of clients reached\r\n"

/* How many clients fit the open-file limit. Raise the soft limit toward what
 * --maxclients needs, as Redis does; if it stays short and --maxclients was
 * not given, serve fewer clients, keeping descriptors for the node's own
 * files and peer connections (a peer that reconnects needs one). An explicit
 * --maxclients is kept: past the limit, clients are refused when accept()
 * runs out of descriptors. */
static void clients_fit_open_files(struct node *n)
{
    size_t want = n->opt.maxclients != 0 ? n->opt.maxclients : CLIENT_DEFAULT_MAX;
    n->max_clients = want;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    rlim_t need = (rlim_t)want + CLIENT_RESERVED_FDS;
    if (rl.rlim_cur < need) {
        struct rlimit raised = rl;
        raised.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl = raised;
    }
    if (rl.rlim_cur >= need || n->opt.maxclients != 0)
        return;
    /* The limit is below need, so at most some ten thousand descriptors to look at. */
    rlim_t open_now = 0;
    for (rlim_t fd = 0; fd < rl.rlim_cur; fd++)
        if (fcntl((int)fd, F_GETFD) != -1)
            open_now++;
    rlim_t keep = open_now + CLIENT_RESERVED_FDS / 2;
    n->max_clients = rl.rlim_cur > keep ? (size_t)(rl.rlim_cur - keep) : 1;
    if (!n->opt.quiet) {
        printf("node %u: at most %zu clients, as the open-file limit (ulimit -n) is %llu\n",
               n->opt.id, n->max_clients, (unsigned long long)rl.rlim_cur);
        fflush(stdout);
    }
}

int clients_listen(struct node *n, char *err, size_t errlen)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", n->self->client_port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(n->self->client_host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "client address %s: %s", n->self->client_addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 512) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", n->self->client_addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    n->listen_fd = fd;
    /* Held to be given up when descriptors run out: see client_accept_without_fds. */
    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (n->spare_fd < 0) {
        snprintf(err, errlen, "/dev/null: %s", strerror(errno));
        return -1;
    }
    clients_fit_open_files(n);
    return 0;
}

bool clients_want_accept(const struct node *n, uint64_t now_ms)
{
    return now_ms >= n->accept_resume_ms;
}

/* Refuse a connection with an error it can read, as Redis does. The socket is
 * new, so the short line fits its send buffer; if the write fails all the same,
 * the client sees the connection close, which is all that is left to do. */
static void client_refuse(struct node *n, int fd)
{
    if (write(fd, CLIENT_REFUSED, sizeof(CLIENT_REFUSED) - 1) < 0) {
        /* nothing more to tell this client */
    }
    close(fd);
    n->clients_rejected++;
}

/* accept() found no descriptor left: give up the spare one to take the
 * waiting connection and refuse it, then take the spare back. Without this
 * the connection would stay queued, epoll would report it again at once and
 * the loop would spin while the client hangs. Returns 0 if one was refused. */
static int client_accept_without_fds(struct node *n)
{
    if (n->spare_fd < 0)
        n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (n->spare_fd < 0)
        return -1;
    close(n->spare_fd);
    int fd = accept4(n->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        client_refuse(n, fd);
    /* Another thread (nanomsg's) may take the descriptor meanwhile: then
     * there is no spare until one frees up, and accepting pauses. */
    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 ? 0 : -1;
}

/* Latency first (TCP_NODELAY), and --tcp-keepalive probes as Redis sets them:
 * after the idle time, then every third of it, three times. Both are best
 * effort: a connection without them still works, so a failure refuses no one. */
static void client_set_options(const struct node *n, int fd)
{
    int one = 1;
    int failed = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (n->opt.tcp_keepalive_s > 0) {
        int idle = (int)n->opt.tcp_keepalive_s;
        int interval = idle / 3 > 0 ? idle / 3 : 1;
        int count = 3;
        failed |= setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        failed |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        failed |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
        failed |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    }
    if (failed != 0) {
        /* see above: the connection is served as it is */
    }
}

void clients_accept(struct node *n)
{
    for (int i = 0; i < CLIENT_ACCEPT_BATCH; i++) {
        int fd = accept4(n->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if ((e == EMFILE || e == ENFILE) && client_accept_without_fds(n) == 0)
                continue;
            /* No descriptor and no spare, or no kernel memory: stop polling
             * the listening socket for a moment rather than spin on it. */
            if (e != EAGAIN && e != EWOULDBLOCK)
                n->accept_resume_ms = clock_monotonic_ms() + CLIENT_ACCEPT_PAUSE_MS;
            return;
        }
        if (n->n_clients >= n->max_clients) {
            client_refuse(n, fd);
            continue;
        }
        struct client *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            return;
        }
        client_set_options(n, fd);
        c->fd = fd;
        c->source.client = c;
        c->id = ++n->next_client_id;
        c->last_active_ms = clock_monotonic_ms();
        c->next = n->clients;
        n->clients = c;
        n->n_clients++;
    }
}

static void client_drop(struct client *c);

bool clients_want_input(const struct node *n, const struct client *c)
{
    return !c->closing && c->pending < CLIENT_MAX_PENDING &&
           c->out.len - c->out_sent + c->queued < CLIENT_OUTPUT_PAUSE &&
           c->in.len < n->opt.client_input_limit;
}

void clients_watch(struct node *n, struct client *c, bool awake)
{
    uint32_t events = 0;
    if (awake && clients_want_input(n, c))
        events |= EPOLLIN;
    if (awake && c->out.len > 0)
        events |= EPOLLOUT;
    if (poller_watch(n, &c->source, c->fd, events) != 0 && !c->closing)
        client_drop(c); /* the kernel is out of memory for it: let it go */
}

/* Bytes of replies the client has not taken yet. */
static size_t client_unsent(const struct client *c)
{
    return c->out.len - c->out_sent + c->queued;
}

/* Nothing more will be sent to c: free what waits for it; the client is
 * closed at the end of the loop turn. */
static void client_drop(struct client *c)
{
    c->gone = true;
    c->closing = true;
    buf_free(&c->out);
    c->out_sent = 0;
    for (struct reply_slot *s = c->head; s != NULL; s = s->next)
        if (s->ready)
            buf_free(&s->data);
    c->queued = 0;
}

/* Hand c's unsent replies to the kernel, as much as it takes now. */
static void client_flush(struct client *c)
{
    while (c->out_sent < c->out.len) {
        ssize_t put = write(c->fd, c->out.data + c->out_sent, c->out.len - c->out_sent);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                client_drop(c);
            break;
        }
        c->out_sent += (size_t)put;
        c->last_active_ms = clock_monotonic_ms();
    }
    /* Move the rest to the front only once half is sent, so that a long
     * output written in many pieces is copied a bounded number of times. */
    if (c->out_sent == c->out.len) {
        c->out_sent = 0;
        c->out.len = 0;
        if (c->out.cap > CLIENT_OUTPUT_PAUSE)
            buf_free(&c->out); /* a big burst is over: give its memory back */
    } else if (c->out_sent > c->out.len / 2) {
        buf_consume(&c->out, c->out_sent);
        c->out_sent = 0;
    }
    if (c->paused && client_unsent(c) < CLIENT_OUTPUT_PAUSE)
        c->parse_again = true;
}

struct reply_slot *client_slot_new(struct client *c)
{
    struct reply_slot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->client = c;
    if (c->tail != NULL)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    c->pending++;
    return s;
}

/* A slot's reply is written: move every ready reply at the head of its
 * client's queue to the output. A slot whose client has gone is freed. A
 * client whose unsent replies pass --client-output-limit is disconnected, as
 * Redis does with client-output-buffer-limit: a client that asks and never
 * reads cannot hold the node's memory. */
void client_slot_done(struct node *n, struct reply_slot *s)
{
    s->ready = true;
    struct client *c = s->client;
    if (c == NULL) {
        buf_free(&s->data);
        free(s);
        return;
    }
    c->pending--;
    if (c->gone)
        buf_free(&s->data); /* nobody to send it to */
    c->queued += s->data.len;
    uint64_t limit = n->opt.client_output_limit;
    if (!c->gone && limit > 0 && client_unsent(c) > limit) {
        n->clients_output_limit_closed++;
        client_drop(c);
    }
    while (c->head != NULL && c->head->ready) {
        struct reply_slot *h = c->head;
        c->queued -= h->data.len;
        if (!c->gone && c->out.len == 0 && h->data.len >= CLIENT_READ_CHUNK) {
            /* A big reply becomes the output as it is, without a copy. */
            struct buf empty = c->out;
            c->out = h->data;
            h->data = empty;
        } else if (!c->gone && buf_append(&c->out, h->data.data, h->data.len) != 0) {
            client_drop(c);
        }
        c->head = h->next;
        if (c->head == NULL)
            c->tail = NULL;
        buf_free(&h->data);
        free(h);
    }
    if (!c->gone && c->out.len - c->out_sent >= CLIENT_WRITE_EAGER)
        client_flush(c);
    if (c->paused)
        c->parse_again = true; /* a read in flight is answered: see clients_write */
}

static void client_error_and_close(struct node *n, struct client *c, const char *msg)
{
    struct reply_slot *s = client_slot_new(c);
    if (s != NULL) {
        resp_write_error(&s->data, msg);
        client_slot_done(n, s);
    }
    c->closing = true;
}

void clients_read(struct node *n, struct client *c)
{
    if (c->closing)
        return;
    for (int round = 0; round < 16; round++) {
        if (buf_reserve(&c->in, CLIENT_READ_CHUNK) != 0) {
            client_drop(c);
            return;
        }
        ssize_t got = read(c->fd, c->in.data + c->in.len, CLIENT_READ_CHUNK);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            client_drop(c); /* nobody to write to */
            return;
        }
        if (got < 0)
            break;
        c->in.len += (size_t)got;
        c->last_active_ms = clock_monotonic_ms();
        if ((size_t)got < CLIENT_READ_CHUNK)
            break;
    }
    clients_parse(n, c);
}

/* Run the requests in c->in, in order, until one is unfinished, must wait
 * for the connection's reads, or the client has too many replies unread.
 * The parser goes on from where the unfinished request stopped (c->parser),
 * so a big request arriving in many reads is checked once. */
void clients_parse(struct node *n, struct client *c)
{
    size_t off = 0;
    int rc = RESP_PARSE_DONE;
    c->paused = false;
    while (off < c->in.len && !c->closing) {
        if (client_unsent(c) >= CLIENT_OUTPUT_PAUSE ||
            c->reads_pending >= CLIENT_MAX_READS_IN_FLIGHT) {
            c->paused = true; /* clients_write goes on once replies are read or answered */
            break;
        }
        size_t used = 0;
        char err[128];
        /* Where a password is asked, a client that has not given it may
         * send only small requests, as in Redis (AUTH is one). */
        c->parser.unauthenticated = n->opt.requirepass != NULL && !c->authenticated;
        rc = resp_parse_request_next(&c->parser, c->in.data + off, c->in.len - off, &n->req, &used,
                                     err, sizeof(err));
        if (rc == RESP_PARSE_MORE)
            break;
        if (rc == RESP_PARSE_ERROR) {
            /* As Redis: answer with the protocol error, then hang up. */
            char msg[160];
            snprintf(msg, sizeof(msg), "ERR %s", err);
            client_error_and_close(n, c, msg);
            break;
        }
        if (n->req.argc > 0) {
            if (commands_must_wait(c, n->req.argc, n->req.argv, n->req.argl))
                break; /* parsed again once the reads are answered */
            commands_dispatch(n, c, n->req.argc, n->req.argv, n->req.argl);
        }
        off += used;
    }
    /* Nothing consumed, nothing moved: a big request arriving a byte at a
     * time is not copied at every read either. */
    if (off > 0)
        buf_consume(&c->in, off);
    if (c->in.len == 0 && c->in.cap > CLIENT_OUTPUT_PAUSE)
        buf_free(&c->in); /* a big request is done: give its memory back */
    if (rc == RESP_PARSE_MORE && c->in.len > n->opt.client_input_limit) {
        n->clients_input_limit_closed++;
        client_error_and_close(n, c, "ERR request too large");
    }
}

void clients_write(struct node *n, struct client *c)
{
    client_flush(c);
    /* The client read its replies, or its reads were answered: its next
     * requests may go now (clients_parse checks again). */
    if (c->parse_again && c->paused && !c->closing) {
        c->parse_again = false;
        clients_parse(n, c);
    }
}

static void client_free(struct node *n, struct client *c)
{
    /* Slots still waiting for the log or a read are detached: whoever
     * completes them frees them. */
    struct reply_slot *s = c->head;
    while (s != NULL) {
        struct reply_slot *next = s->next;
        if (s->ready) {
            buf_free(&s->data);
            free(s);
        } else {
            s->client = NULL;
            s->next = NULL;
        }
        s = next;
    }
    poller_forget(n, &c->source);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->name);
    free(c);
}

/* Clients idle for --timeout are closed, as Redis does: no byte read or
 * written for that long. Not one waiting for a reply the node owes it (a write
 * being committed, a read being confirmed): that wait is the node's. */
void clients_reap(struct node *n)
{
    uint64_t now = clock_monotonic_ms();
    uint64_t idle_ms = (uint64_t)n->opt.timeout_s * 1000;
    struct client **pp = &n->clients;
    while (*pp != NULL) {
        struct client *c = *pp;
        if (idle_ms > 0 && !c->gone && c->pending == 0 && now - c->last_active_ms >= idle_ms) {
            n->clients_timed_out++;
            client_drop(c);
        }
        if (c->closing && c->out.len == 0) {
            *pp = c->next;
            n->n_clients--;
            client_free(n, c);
        } else {
            pp = &c->next;
        }
    }
}

void clients_close_all(struct node *n)
{
    while (n->clients != NULL) {
        struct client *c = n->clients;
        n->clients = c->next;
        client_free(n, c);
    }
    n->n_clients = 0;
    if (n->listen_fd >= 0)
        close(n->listen_fd);
    n->listen_fd = -1;
    /* 0 before clients_listen opened it (and stdin is never the spare). */
    if (n->spare_fd > 0)
        close(n->spare_fd);
    n->spare_fd = -1;
}

int clients_info(const struct node *n, struct buf *out)
{
    return buf_printf(
        out,
        "connected_clients:%zu\r\nmaxclients:%zu\r\nrejected_connections:%" PRIu64
        "\r\nclient_output_limit_disconnects:%" PRIu64 "\r\nclient_input_limit_disconnects:%" PRIu64
        "\r\nclient_idle_timeouts:%" PRIu64 "\r\n",
        n->n_clients, n->max_clients, n->clients_rejected, n->clients_output_limit_closed,
        n->clients_input_limit_closed, n->clients_timed_out);
}

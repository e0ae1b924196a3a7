/* clients.c - Redis-protocol client connections: accept, read and parse
 * requests, and write replies back strictly in request order. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node.h"

#define CLIENT_READ_CHUNK (64 * 1024)
#define CLIENT_MAX_INPUT (RESP_MAX_BULK + 1024 * 1024) /* unparsed bytes held per client */

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
    return 0;
}

void clients_accept(struct node *n)
{
    for (;;) {
        int fd = accept4(n->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct client *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        c->id = ++n->next_client_id;
        c->next = n->clients;
        n->clients = c;
        n->n_clients++;
    }
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
 * client's queue to the output. A slot whose client has gone is freed. */
void client_slot_done(struct node *n, struct reply_slot *s)
{
    (void)n;
    s->ready = true;
    struct client *c = s->client;
    if (c == NULL) {
        buf_free(&s->data);
        free(s);
        return;
    }
    c->pending--;
    while (c->head != NULL && c->head->ready) {
        struct reply_slot *h = c->head;
        if (buf_append(&c->out, h->data.data, h->data.len) != 0)
            c->closing = true;
        c->head = h->next;
        if (c->head == NULL)
            c->tail = NULL;
        buf_free(&h->data);
        free(h);
    }
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
            c->closing = true;
            return;
        }
        ssize_t got = read(c->fd, c->in.data + c->in.len, CLIENT_READ_CHUNK);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            c->closing = true;
            c->out.len = 0; /* nobody to write to */
            return;
        }
        if (got < 0)
            break;
        c->in.len += (size_t)got;
        if ((size_t)got < CLIENT_READ_CHUNK)
            break;
    }
    clients_parse(n, c);
}

void clients_parse(struct node *n, struct client *c)
{
    size_t off = 0;
    while (off < c->in.len && !c->closing) {
        size_t used = 0;
        char err[128];
        int rc =
            resp_parse_request(c->in.data + off, c->in.len - off, &n->req, &used, err, sizeof(err));
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
    buf_consume(&c->in, off);
    if (c->in.len > CLIENT_MAX_INPUT)
        client_error_and_close(n, c, "ERR request too large");
}

void clients_write(struct node *n, struct client *c)
{
    (void)n;
    while (c->out.len > 0) {
        ssize_t put = write(c->fd, c->out.data, c->out.len);
        if (put < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            c->out.len = 0;
            c->closing = true;
            return;
        }
        buf_consume(&c->out, (size_t)put);
    }
}

static void client_free(struct client *c)
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
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->name);
    free(c);
}

void clients_reap(struct node *n)
{
    struct client **pp = &n->clients;
    while (*pp != NULL) {
        struct client *c = *pp;
        if (c->closing && c->out.len == 0) {
            *pp = c->next;
            n->n_clients--;
            client_free(c);
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
        client_free(c);
    }
    n->n_clients = 0;
    if (n->listen_fd >= 0)
        close(n->listen_fd);
    n->listen_fd = -1;
}

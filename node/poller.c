/* poller.c - what the loop sleeps on: one epoll set over the node's sockets.
 *
 * The loop waits for its peers (nanomsg's receive descriptor), the storage
 * thread's wake pipe, the listening socket and every client. poll() would
 * hand the kernel every client's socket on every turn and have it look at
 * each one: with 50 busy clients that was a fifth of a leader's loop (a
 * profile of GET at 50 clients: do_sys_poll, sock_poll, tcp_poll, fdget and
 * the wait-queue locks). An epoll set is kept in the kernel, and a wait
 * returns only the sockets that are ready. A socket's entry changes only
 * when what the loop waits for on it changes: a client paused, or with
 * replies the kernel did not take at once.
 *
 * A source that waits for nothing is taken out of the set rather than kept
 * with no events: epoll reports a hang-up or an error even then, and a
 * suspended node would be woken by it on every turn.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "node.h"

int poller_open(struct node *n, char *err, size_t errlen)
{
    n->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (n->epoll_fd < 0) {
        snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void poller_close(struct node *n)
{
    if (n->epoll_fd >= 0)
        close(n->epoll_fd);
    n->epoll_fd = -1;
}

int poller_watch(struct node *n, struct poll_source *s, int fd, uint32_t events)
{
    if (fd < 0)
        events = 0;
    /* Already watching this descriptor for these events: nothing to tell the kernel. */
    if (events == s->events && (events == 0 || fd == s->fd))
        return 0;
    if (s->events != 0 && (events == 0 || fd != s->fd)) {
        if (epoll_ctl(n->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL) != 0)
            return -1;
        s->events = 0;
    }
    if (events == 0)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = s};
    int op = s->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(n->epoll_fd, op, fd, &ev) != 0)
        return -1;
    s->fd = fd;
    s->events = events;
    return 0;
}

void poller_forget(struct node *n, struct poll_source *s)
{
    if (s->events != 0)
        (void)epoll_ctl(n->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL); /* closed next anyway */
    s->events = 0;
}

int poller_wait(struct node *n, struct epoll_event *ready, int max_ready, int timeout_ms)
{
    int got = epoll_wait(n->epoll_fd, ready, max_ready, timeout_ms);
    if (got < 0 && errno == EINTR)
        return 0;
    return got;
}

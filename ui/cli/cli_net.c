/* cli_net.c - sockets with deadlines: non-blocking sockets and poll(). */
#include "cli_net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

int64_t cli_now_ms(void)
{
    return (int64_t)clock_monotonic_ms();
}

void cli_sleep_until(int64_t ms, int64_t deadline)
{
    int64_t now = cli_now_ms();
    int64_t until = now + ms < deadline ? now + ms : deadline;
    while (now < until) {
        struct timespec ts = {(until - now) / 1000, ((until - now) % 1000) * 1000000};
        nanosleep(&ts, NULL);
        now = cli_now_ms();
    }
}

/* Wait until fd is ready for events or the deadline passes.
 * Returns 1 ready, 0 timed out, -1 on a poll error (errno set). */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - cli_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static const char *error_text(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return "connection refused";
    case ECONNRESET:
        return "connection reset";
    case EPIPE:
        return "connection closed";
    case ETIMEDOUT:
        return CLI_NET_TIMED_OUT;
    case EHOSTUNREACH:
        return "host unreachable";
    case ENETUNREACH:
        return "network unreachable";
    default:
        return strerror(err);
    }
}

/* Try one resolved address. Returns the socket or -1 with err filled. */
static int connect_addr(const struct addrinfo *ai, int64_t deadline, char *err, size_t errlen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            snprintf(err, errlen, "%s", error_text(errno));
            goto err_after_socket;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r <= 0) {
            snprintf(err, errlen, "%s", r == 0 ? CLI_NET_TIMED_OUT : strerror(errno));
            goto err_after_socket;
        }
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
            so_error = errno;
        if (so_error != 0) {
            snprintf(err, errlen, "%s", error_text(so_error));
            goto err_after_socket;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;

err_after_socket:
    close(fd);
    return -1;
}

int cli_net_connect(const char *host, int port, int64_t deadline, char *err, size_t errlen)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *list = NULL;
    int r = getaddrinfo(host, service, &hints, &list);
    if (r != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = list; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_addr(ai, deadline, err, errlen);
    freeaddrinfo(list);
    return fd;
}

int cli_net_send_all(int fd, const void *p, size_t n, int64_t deadline, char *err, size_t errlen)
{
    const uint8_t *bytes = p;
    while (n > 0) {
        ssize_t sent = send(fd, bytes, n, MSG_NOSIGNAL);
        if (sent > 0) {
            bytes += sent;
            n -= (size_t)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, errlen, "%s", error_text(errno));
            return -1;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r <= 0) {
            snprintf(err, errlen, "%s", r == 0 ? CLI_NET_TIMED_OUT : strerror(errno));
            return -1;
        }
    }
    return 0;
}

ssize_t cli_net_recv(int fd, void *p, size_t n, int64_t deadline, char *err, size_t errlen)
{
    for (;;) {
        ssize_t got = recv(fd, p, n, 0);
        if (got > 0)
            return got;
        if (got == 0) {
            snprintf(err, errlen, "connection closed");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, errlen, "%s", error_text(errno));
            return -1;
        }
        int r = wait_fd(fd, POLLIN, deadline);
        if (r <= 0) {
            snprintf(err, errlen, "%s", r == 0 ? CLI_NET_TIMED_OUT : strerror(errno));
            return -1;
        }
    }
}

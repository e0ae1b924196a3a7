/* cli_net.h - sockets with deadlines for raftkv-cli: nothing here blocks past
 * the deadline it is given (a time on the monotonic clock, in ms). */
#ifndef RAFTKV_CLI_NET_H
#define RAFTKV_CLI_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The error text of an operation that ran out of time. */
#define CLI_NET_TIMED_OUT "timed out"

/* Milliseconds on the monotonic clock. */
int64_t cli_now_ms(void);

/* Sleep for ms, but never past deadline. */
void cli_sleep_until(int64_t ms, int64_t deadline);

/* Open a TCP connection to host:port. Returns the socket (non-blocking), or -1
 * with err filled ("connection refused", "timed out", ...). */
int cli_net_connect(const char *host, int port, int64_t deadline, char *err, size_t errlen);

/* Send all n bytes. Returns 0, or -1 with err filled. */
int cli_net_send_all(int fd, const void *p, size_t n, int64_t deadline, char *err, size_t errlen);

/* Receive what is there (at most n bytes), waiting until deadline for something.
 * Returns the count (> 0), or -1 with err filled; a closed connection is an error. */
ssize_t cli_net_recv(int fd, void *p, size_t n, int64_t deadline, char *err, size_t errlen);

#endif

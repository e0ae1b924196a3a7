/* access.c - who may use the client port, as Redis decides it:
 *
 *   --requirepass-file FILE  every client must first say AUTH <password> (or
 *                            AUTH default <password>, or HELLO 2 AUTH default
 *                            <password>); until then "-NOAUTH".
 *   no password              protected mode: only loopback clients are
 *                            served; others get "-DENIED" and are closed; and
 *                            the client address may not be a non-loopback or
 *                            wildcard one (checked at start).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "node.h"

/* "localhost", 127.0.0.0/8 and ::1; a wildcard (0.0.0.0, ::, "*") is not. */
bool access_host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

static bool access_peer_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_UNIX)
        return true;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
    }
    return false;
}

/* Compare without an early exit, so that the time taken does not tell how
 * much of a guess was right. */
static bool access_password_equal(const char *want, const uint8_t *got, size_t len)
{
    size_t want_len = strlen(want);
    unsigned diff = (unsigned)(want_len ^ len);
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned)(uint8_t)want[i] ^ (i < len ? got[i] : 0u);
    return diff == 0;
}

int access_check(struct node *n, struct client *c, const char **why)
{
    if (n->opt.requirepass != NULL) {
        if (c->authenticated)
            return 0;
        *why = "NOAUTH Authentication required.";
        return -1;
    }
    if (!c->access_checked) {
        c->access_checked = true;
        c->remote = !access_peer_is_loopback(c->fd);
    }
    if (!c->remote)
        return 0;
    *why = "DENIED Running in protected mode: no password is set (--requirepass-file), so only "
           "loopback clients are served";
    c->closing = true;
    return -1;
}

/* AUTH <password> | AUTH <user> <password>: only the user "default" exists. */
const char *access_auth(struct node *n, struct client *c, size_t argc, const uint8_t *const *argv,
                        const size_t *argl)
{
    if (argc < 2 || argc > 3)
        return "ERR wrong number of arguments for 'auth' command";
    if (n->opt.requirepass == NULL)
        return "ERR AUTH <password> called without any password configured for the default "
               "user. Are you sure your configuration is correct?";
    bool user_ok = argc == 2 || (argl[1] == 7 && memcmp(argv[1], "default", 7) == 0);
    size_t p = argc - 1;
    if (!access_password_equal(n->opt.requirepass, argv[p], argl[p]) || !user_ok) {
        c->authenticated = false;
        return "WRONGPASS invalid username-password pair or user is disabled.";
    }
    c->authenticated = true;
    return NULL;
}

/* cluster.c - the cluster file: one line a node, "id peer-url client-address". */
#include "error.h"
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLUSTER_FILE_MAX (1024 * 1024)
#define CLUSTER_ADDR_MAX (CLUSTER_HOST_MAX + 8)
#define FNV_OFFSET_BASIS 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

struct field {
    const char *p;
    size_t len;
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool field_starts_with(struct field f, const char *prefix)
{
    size_t n = strlen(prefix);
    return f.len >= n && memcmp(f.p, prefix, n) == 0;
}

int cluster_parse_hostport(const char *s, char *host, size_t hostlen, int *port, char *err,
                           size_t errlen)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL) {
        error_set(err, errlen, "missing port in '%s' (expected host:port)", s);
        return -1;
    }
    size_t host_len = (size_t)(colon - s);
    if (host_len == 0) {
        error_set(err, errlen, "missing host in '%s' (expected host:port)", s);
        return -1;
    }
    if (host_len >= hostlen) {
        error_set(err, errlen, "host too long in '%s' (max %zu bytes)", s,
                  hostlen > 0 ? hostlen - 1 : 0);
        return -1;
    }

    const char *digits = colon + 1;
    size_t ndigits = strlen(digits);
    long value = 0;
    bool ok = ndigits >= 1 && ndigits <= 5;
    for (size_t i = 0; ok && i < ndigits; i++) {
        if (digits[i] < '0' || digits[i] > '9')
            ok = false;
        else
            value = value * 10 + (digits[i] - '0');
    }
    if (!ok || value < 1 || value > 65535) {
        error_set(err, errlen, "invalid port in '%s' (expected 1..65535)", s);
        return -1;
    }

    memcpy(host, s, host_len);
    host[host_len] = '\0';
    *port = (int)value;
    return 0;
}

/* 64-bit FNV-1a over "<id> <peer_url> <client_addr>\n" for each node in order. */
static uint64_t cluster_hash(const struct cluster *c)
{
    uint64_t hash = FNV_OFFSET_BASIS;
    char line[16 + CLUSTER_URL_MAX + CLUSTER_ADDR_MAX];

    for (size_t i = 0; i < c->n; i++) {
        const struct cluster_node *node = &c->nodes[i];
        int n = snprintf(line, sizeof line, "%u %s %s\n", (unsigned)node->id, node->peer_url,
                         node->client_addr);
        for (int k = 0; k < n && k < (int)sizeof line; k++) {
            hash ^= (uint8_t)line[k];
            hash *= FNV_PRIME;
        }
    }
    return hash == 0 ? 1 : hash;
}

/* Check one line's three fields and add the node to c. line_of[i] is the line
 * that defined c->nodes[i], for error messages about duplicates. */
static int add_node(struct cluster *c, int *line_of, const struct field *f, const char *name,
                    int line, char *err, size_t errlen)
{
    struct cluster_node node;
    memset(&node, 0, sizeof node);

    if (c->n == CLUSTER_MAX_NODES) {
        error_set(err, errlen, "%s:%d: too many nodes (max %d)", name, line, CLUSTER_MAX_NODES);
        return -1;
    }

    if (f[0].len != 1 || f[0].p[0] < '1' || f[0].p[0] > '9') {
        error_set(err, errlen, "%s:%d: invalid id '%.*s' (expected 1..9)", name, line,
                  (int)(f[0].len > 32 ? 32 : f[0].len), f[0].p);
        return -1;
    }
    node.id = (uint32_t)(f[0].p[0] - '0');

    if (!(field_starts_with(f[1], "tcp://") || field_starts_with(f[1], "ipc://")) ||
        f[1].len == strlen("tcp://")) {
        error_set(err, errlen, "%s:%d: invalid peer url '%.*s' (expected tcp://... or ipc://...)",
                  name, line, (int)(f[1].len > 64 ? 64 : f[1].len), f[1].p);
        return -1;
    }
    if (f[1].len >= CLUSTER_URL_MAX) {
        error_set(err, errlen, "%s:%d: peer url too long (max %d bytes)", name, line,
                  CLUSTER_URL_MAX - 1);
        return -1;
    }
    memcpy(node.peer_url, f[1].p, f[1].len);

    if (f[2].len >= CLUSTER_ADDR_MAX) {
        error_set(err, errlen, "%s:%d: client address too long (max %d bytes)", name, line,
                  CLUSTER_ADDR_MAX - 1);
        return -1;
    }
    memcpy(node.client_addr, f[2].p, f[2].len);
    char reason[256];
    if (cluster_parse_hostport(node.client_addr, node.client_host, sizeof node.client_host,
                               &node.client_port, reason, sizeof reason) < 0) {
        error_set(err, errlen, "%s:%d: %s", name, line, reason);
        return -1;
    }

    for (size_t i = 0; i < c->n; i++) {
        const struct cluster_node *other = &c->nodes[i];
        if (other->id == node.id) {
            error_set(err, errlen, "%s:%d: duplicate id %u (also on line %d)", name, line,
                      (unsigned)node.id, line_of[i]);
            return -1;
        }
        if (strcmp(other->peer_url, node.peer_url) == 0) {
            error_set(err, errlen, "%s:%d: duplicate peer url '%s' (also on line %d)", name, line,
                      node.peer_url, line_of[i]);
            return -1;
        }
        if (strcmp(other->client_addr, node.client_addr) == 0) {
            error_set(err, errlen, "%s:%d: duplicate client address '%s' (also on line %d)", name,
                      line, node.client_addr, line_of[i]);
            return -1;
        }
    }

    line_of[c->n] = line;
    c->nodes[c->n++] = node;
    return 0;
}

int cluster_parse(const char *text, const char *name, struct cluster *out, char *err, size_t errlen)
{
    struct cluster c;
    int line_of[CLUSTER_MAX_NODES];
    const char *p = text;
    int line = 0;

    memset(&c, 0, sizeof c);
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        if (eol == NULL)
            eol = p + strlen(p);
        const char *hash = memchr(p, '#', (size_t)(eol - p));
        const char *stop = hash != NULL ? hash : eol;
        line++;

        /* Split into fields; count them all, keep the first three. */
        struct field f[3];
        size_t nfields = 0;
        const char *q = p;
        for (;;) {
            while (q < stop && is_space(*q))
                q++;
            if (q == stop)
                break;
            const char *start = q;
            while (q < stop && !is_space(*q))
                q++;
            if (nfields < 3)
                f[nfields] = (struct field){start, (size_t)(q - start)};
            nfields++;
        }
        p = *eol == '\n' ? eol + 1 : eol;

        if (nfields == 0)
            continue;
        if (nfields != 3) {
            error_set(err, errlen, "%s:%d: expected 3 fields (id peer-url client-address), got %zu",
                      name, line, nfields);
            return -1;
        }
        if (add_node(&c, line_of, f, name, line, err, errlen) < 0)
            return -1;
    }

    if (c.n == 0) {
        error_set(err, errlen, "%s: no nodes (expected lines of: id peer-url client-address)",
                  name);
        return -1;
    }
    c.cluster_id = cluster_hash(&c);
    *out = c;
    return 0;
}

int cluster_load(const char *path, struct cluster *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        error_set(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *text = malloc(CLUSTER_FILE_MAX + 1);
    if (text == NULL) {
        fclose(f);
        error_set(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t n = fread(text, 1, CLUSTER_FILE_MAX + 1, f);
    int read_errno = errno;
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        error_set(err, errlen, "%s: %s", path, strerror(read_errno));
        free(text);
        return -1;
    }
    if (n > CLUSTER_FILE_MAX) {
        error_set(err, errlen, "%s: file too big (max %d bytes)", path, CLUSTER_FILE_MAX);
        free(text);
        return -1;
    }
    if (memchr(text, '\0', n) != NULL) {
        error_set(err, errlen, "%s: contains a NUL byte", path);
        free(text);
        return -1;
    }
    text[n] = '\0';
    int r = cluster_parse(text, path, out, err, errlen);
    free(text);
    return r;
}

const struct cluster_node *cluster_find(const struct cluster *c, uint32_t id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->nodes[i].id == id)
            return &c->nodes[i];
    }
    return NULL;
}

void cluster_ids_text(uint32_t mask, char *out, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return;
    out[0] = '\0';
    for (uint32_t id = 1; id <= CLUSTER_MAX_NODES && used + 3 < size; id++)
        if (mask & (1u << id))
            used += (size_t)snprintf(out + used, size - used, "%s%u", used ? "," : "", id);
}

/* Split a tcp:// URL into host and port text; false for anything else. */
static bool tcp_url_split(const char *url, char *host, size_t hostlen, const char **port)
{
    if (strncmp(url, "tcp://", 6) != 0)
        return false;
    const char *h = url + 6;
    const char *colon = strrchr(h, ':');
    if (colon == NULL || colon == h || (size_t)(colon - h) >= hostlen)
        return false;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = '\0';
    *port = colon + 1;
    return true;
}

bool cluster_url_is_loopback(const char *url)
{
    if (strncmp(url, "ipc://", 6) == 0)
        return true;
    char host[CLUSTER_URL_MAX];
    const char *port;
    if (!tcp_url_split(url, host, sizeof host, &port))
        return false;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0)
        return true;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

int cluster_resolve_url(const char *url, char *out, size_t outlen, char *err, size_t errlen)
{
    char host[CLUSTER_URL_MAX];
    const char *port;
    struct in_addr a;
    if (!tcp_url_split(url, host, sizeof host, &port) || strcmp(host, "*") == 0 ||
        strchr(host, ';') != NULL || strchr(host, '[') != NULL ||
        inet_pton(AF_INET, host, &a) == 1) {
        if (snprintf(out, outlen, "%s", url) >= (int)outlen) {
            error_set(err, errlen, "url too long: %s", url);
            return -1;
        }
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        if (if_nametoindex(host) != 0) { /* an interface name: nanomsg takes it */
            if (res != NULL)
                freeaddrinfo(res);
            snprintf(out, outlen, "%s", url);
            return 0;
        }
        error_set(err, errlen, "cannot resolve host %s: %s", host,
                  rc != 0 ? gai_strerror(rc) : "no address");
        if (res != NULL)
            freeaddrinfo(res);
        return -1;
    }
    char ip[INET_ADDRSTRLEN];
    const struct sockaddr_in *sin = (const struct sockaddr_in *)res->ai_addr;
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
    freeaddrinfo(res);
    if (snprintf(out, outlen, "tcp://%s:%s", ip, port) >= (int)outlen) {
        error_set(err, errlen, "url too long: %s", url);
        return -1;
    }
    return 0;
}

int cluster_add(struct cluster *c, uint32_t id, const char *peer_url, const char *client_addr,
                char *err, size_t errlen)
{
    if (id < 1 || id > CLUSTER_MAX_NODES) {
        error_set(err, errlen, "invalid id %u (expected 1..9)", (unsigned)id);
        return -1;
    }
    if (cluster_find(c, id) != NULL) {
        error_set(err, errlen, "node %u is already in the cluster", (unsigned)id);
        return -1;
    }
    if (c->n == CLUSTER_MAX_NODES) {
        error_set(err, errlen, "too many nodes (max %d)", CLUSTER_MAX_NODES);
        return -1;
    }
    size_t url_len = strlen(peer_url);
    if ((strncmp(peer_url, "tcp://", 6) != 0 && strncmp(peer_url, "ipc://", 6) != 0) ||
        url_len <= 6 || url_len >= CLUSTER_URL_MAX) {
        error_set(err, errlen, "invalid peer url '%.64s' (expected tcp://... or ipc://...)",
                  peer_url);
        return -1;
    }
    struct cluster_node node;
    memset(&node, 0, sizeof node);
    node.id = id;
    memcpy(node.peer_url, peer_url, url_len);
    if (strlen(client_addr) >= CLUSTER_ADDR_MAX) {
        error_set(err, errlen, "client address too long (max %d bytes)", CLUSTER_ADDR_MAX - 1);
        return -1;
    }
    strcpy(node.client_addr, client_addr);
    if (cluster_parse_hostport(node.client_addr, node.client_host, sizeof node.client_host,
                               &node.client_port, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->nodes[i].peer_url, node.peer_url) == 0) {
            error_set(err, errlen, "peer url '%s' is node %u's", node.peer_url,
                      (unsigned)c->nodes[i].id);
            return -1;
        }
        if (strcmp(c->nodes[i].client_addr, node.client_addr) == 0) {
            error_set(err, errlen, "client address '%s' is node %u's", node.client_addr,
                      (unsigned)c->nodes[i].id);
            return -1;
        }
    }
    c->nodes[c->n++] = node;
    return 0;
}

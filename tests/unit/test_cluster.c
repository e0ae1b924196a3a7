/* test_cluster.c - the cluster file parser.
 *
 * Usage: test_cluster [SOURCE_DIR]; with SOURCE_DIR it also loads the shipped
 * assets/cluster.conf and assets/cluster5.conf. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cluster.h"

/* The text of assets/cluster.conf and assets/cluster5.conf. */
static const char cluster3_text[] = "# raftkv cluster: one line a node.\n"
                                    "# id  peer (nanomsg URL)      client (Redis protocol)\n"
                                    "1     tcp://127.0.0.1:7001    127.0.0.1:6401\n"
                                    "2     tcp://127.0.0.1:7002    127.0.0.1:6402\n"
                                    "3     tcp://127.0.0.1:7003    127.0.0.1:6403\n";

static const char cluster5_text[] = "# raftkv cluster of five nodes on loopback.\n"
                                    "# id  peer (nanomsg URL)      client (Redis protocol)\n"
                                    "1     tcp://127.0.0.1:7001    127.0.0.1:6401\n"
                                    "2     tcp://127.0.0.1:7002    127.0.0.1:6402\n"
                                    "3     tcp://127.0.0.1:7003    127.0.0.1:6403\n"
                                    "4     tcp://127.0.0.1:7004    127.0.0.1:6404\n"
                                    "5     tcp://127.0.0.1:7005    127.0.0.1:6405\n";

/* 64-bit FNV-1a, written out here so the test pins the definition. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static void test_shipped_text(void)
{
    struct cluster c;
    char err[256] = "";

    CHECK_INT_EQ(cluster_parse(cluster3_text, "cluster.conf", &c, err, sizeof err), 0);
    CHECK_STR_EQ(err, "");
    CHECK_INT_EQ(c.n, 3);
    for (size_t i = 0; i < 3 && i < c.n; i++) {
        char url[64], addr[64];
        snprintf(url, sizeof url, "tcp://127.0.0.1:%zu", 7001 + i);
        snprintf(addr, sizeof addr, "127.0.0.1:%zu", 6401 + i);
        CHECK_INT_EQ(c.nodes[i].id, i + 1);
        CHECK_STR_EQ(c.nodes[i].peer_url, url);
        CHECK_STR_EQ(c.nodes[i].client_host, "127.0.0.1");
        CHECK_INT_EQ(c.nodes[i].client_port, 6401 + i);
        CHECK_STR_EQ(c.nodes[i].client_addr, addr);
    }
    CHECK(c.cluster_id == fnv1a("1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                                "2 tcp://127.0.0.1:7002 127.0.0.1:6402\n"
                                "3 tcp://127.0.0.1:7003 127.0.0.1:6403\n"));

    const struct cluster_node *node = cluster_find(&c, 2);
    CHECK(node != NULL && node == &c.nodes[1]);
    CHECK(cluster_find(&c, 4) == NULL);
    CHECK(cluster_find(&c, 0) == NULL);

    struct cluster c5;
    CHECK_INT_EQ(cluster_parse(cluster5_text, "cluster5.conf", &c5, err, sizeof err), 0);
    CHECK_INT_EQ(c5.n, 5);
    CHECK_INT_EQ(c5.nodes[4].id, 5);
    CHECK_STR_EQ(c5.nodes[4].peer_url, "tcp://127.0.0.1:7005");
    CHECK_INT_EQ(c5.nodes[4].client_port, 6405);
    CHECK(c5.cluster_id != c.cluster_id);
}

static void test_cluster_id(void)
{
    struct cluster a, b;
    char err[256];

    /* Same nodes: same id, whatever the spacing and comments. */
    CHECK_INT_EQ(cluster_parse(cluster3_text, "a", &a, err, sizeof err), 0);
    CHECK_INT_EQ(cluster_parse("1 tcp://127.0.0.1:7001 127.0.0.1:6401 # one\r\n"
                               "\n"
                               "\t2\ttcp://127.0.0.1:7002\t127.0.0.1:6402\n"
                               "   # comment only\n"
                               "3 tcp://127.0.0.1:7003 127.0.0.1:6403",
                               "b", &b, err, sizeof err),
                 0);
    CHECK(a.cluster_id == b.cluster_id);
    CHECK(a.cluster_id != 0);

    /* Parsing the same text twice gives the same id. */
    CHECK_INT_EQ(cluster_parse(cluster3_text, "b", &b, err, sizeof err), 0);
    CHECK(a.cluster_id == b.cluster_id);

    /* Any difference in the nodes changes it: a port, an address, the order. */
    CHECK_INT_EQ(cluster_parse("1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                               "2 tcp://127.0.0.1:7002 127.0.0.1:6402\n"
                               "3 tcp://127.0.0.1:7003 127.0.0.1:6404\n",
                               "b", &b, err, sizeof err),
                 0);
    CHECK(a.cluster_id != b.cluster_id);
    CHECK_INT_EQ(cluster_parse("1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                               "3 tcp://127.0.0.1:7003 127.0.0.1:6403\n"
                               "2 tcp://127.0.0.1:7002 127.0.0.1:6402\n",
                               "b", &b, err, sizeof err),
                 0);
    CHECK(a.cluster_id != b.cluster_id);
    CHECK_INT_EQ(cluster_parse("1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                               "2 tcp://127.0.0.1:7002 127.0.0.1:6402\n",
                               "b", &b, err, sizeof err),
                 0);
    CHECK(a.cluster_id != b.cluster_id);
}

static void test_ipc_and_layout(void)
{
    struct cluster c;
    char err[256];

    CHECK_INT_EQ(cluster_parse("\n\n# ipc peers\n"
                               "2 ipc:///tmp/raftkv-2.ipc localhost:6402#trailing comment\n"
                               "7 ipc:///tmp/raftkv-7.ipc   localhost:1   \n"
                               "9 tcp://[::1]:7009 ::1:65535",
                               "ipc.conf", &c, err, sizeof err),
                 0);
    CHECK_INT_EQ(c.n, 3);
    CHECK_INT_EQ(c.nodes[0].id, 2);
    CHECK_STR_EQ(c.nodes[0].peer_url, "ipc:///tmp/raftkv-2.ipc");
    CHECK_STR_EQ(c.nodes[0].client_host, "localhost");
    CHECK_INT_EQ(c.nodes[0].client_port, 6402);
    CHECK_STR_EQ(c.nodes[0].client_addr, "localhost:6402");
    CHECK_INT_EQ(c.nodes[1].id, 7);
    CHECK_INT_EQ(c.nodes[1].client_port, 1);
    CHECK_STR_EQ(c.nodes[2].client_host, "::1");
    CHECK_INT_EQ(c.nodes[2].client_port, 65535);
    CHECK(cluster_find(&c, 7) == &c.nodes[1]);
    CHECK(cluster_find(&c, 1) == NULL);

    /* Nine nodes is the most. */
    char nine[1024] = "";
    for (int i = 1; i <= 9; i++) {
        char line[96];
        snprintf(line, sizeof line, "%d tcp://127.0.0.1:%d 127.0.0.1:%d\n", i, 7000 + i, 6400 + i);
        strcat(nine, line);
    }
    CHECK_INT_EQ(cluster_parse(nine, "nine.conf", &c, err, sizeof err), 0);
    CHECK_INT_EQ(c.n, 9);
}

static void check_parse_error(const char *text, const char *want)
{
    struct cluster c;
    char err[256] = "";

    c.n = 77;
    CHECK_INT_EQ(cluster_parse(text, "test.conf", &c, err, sizeof err), -1);
    CHECK_STR_EQ(err, want);
    CHECK_INT_EQ(c.n, 77); /* untouched on error */
}

static void test_errors(void)
{
    struct cluster c;
    char err[256];

    CHECK_INT_EQ(cluster_parse("# a cluster\n"
                               "1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                               "2 tcp://127.0.0.1:7002\n",
                               "assets/cluster.conf", &c, err, sizeof err),
                 -1);
    CHECK_STR_EQ(err,
                 "assets/cluster.conf:3: expected 3 fields (id peer-url client-address), got 2");

    check_parse_error("1 tcp://a:1 a:1 extra\n",
                      "test.conf:1: expected 3 fields (id peer-url client-address), got 4");
    check_parse_error("\n\n  1  # tcp://a:1 a:1\n",
                      "test.conf:3: expected 3 fields (id peer-url client-address), got 1");
    check_parse_error("", "test.conf: no nodes (expected lines of: id peer-url client-address)");
    check_parse_error("# only\n\n  # comments\n",
                      "test.conf: no nodes (expected lines of: id peer-url client-address)");

    check_parse_error("0 tcp://a:1 a:1\n", "test.conf:1: invalid id '0' (expected 1..9)");
    check_parse_error("10 tcp://a:1 a:1\n", "test.conf:1: invalid id '10' (expected 1..9)");
    check_parse_error("x tcp://a:1 a:1\n", "test.conf:1: invalid id 'x' (expected 1..9)");
    check_parse_error("-1 tcp://a:1 a:1\n", "test.conf:1: invalid id '-1' (expected 1..9)");
    check_parse_error("1 tcp://a:1 a:1\n1 tcp://a:2 a:2\n",
                      "test.conf:2: duplicate id 1 (also on line 1)");

    check_parse_error(
        "1 http://a:1 a:1\n",
        "test.conf:1: invalid peer url 'http://a:1' (expected tcp://... or ipc://...)");
    check_parse_error("1 127.0.0.1:7001 a:1\n",
                      "test.conf:1: invalid peer url '127.0.0.1:7001' (expected tcp://... or "
                      "ipc://...)");
    check_parse_error("1 tcp:// a:1\n",
                      "test.conf:1: invalid peer url 'tcp://' (expected tcp://... or ipc://...)");
    check_parse_error("1 tcp://a:1 a:1\n\n2 tcp://a:1 a:2\n",
                      "test.conf:3: duplicate peer url 'tcp://a:1' (also on line 1)");

    char long_url[400];
    snprintf(long_url, sizeof long_url, "1 tcp://%0300d a:1\n", 0);
    check_parse_error(long_url, "test.conf:1: peer url too long (max 255 bytes)");

    check_parse_error("1 tcp://a:1 127.0.0.1\n",
                      "test.conf:1: missing port in '127.0.0.1' (expected host:port)");
    check_parse_error("1 tcp://a:1 :6401\n",
                      "test.conf:1: missing host in ':6401' (expected host:port)");
    check_parse_error("1 tcp://a:1 h:0\n",
                      "test.conf:1: invalid port in 'h:0' (expected 1..65535)");
    check_parse_error("1 tcp://a:1 h:65536\n",
                      "test.conf:1: invalid port in 'h:65536' (expected 1..65535)");
    check_parse_error("1 tcp://a:1 h:\n", "test.conf:1: invalid port in 'h:' (expected 1..65535)");
    check_parse_error("1 tcp://a:1 h:12x\n",
                      "test.conf:1: invalid port in 'h:12x' (expected 1..65535)");
    check_parse_error("1 tcp://a:1 h:-1\n",
                      "test.conf:1: invalid port in 'h:-1' (expected 1..65535)");
    check_parse_error("1 tcp://a:1 h:1\n2 tcp://a:2 h:1\n",
                      "test.conf:2: duplicate client address 'h:1' (also on line 1)");

    char long_addr[400];
    snprintf(long_addr, sizeof long_addr, "1 tcp://a:1 %0200d:1\n", 0);
    check_parse_error(long_addr, "test.conf:1: client address too long (max 135 bytes)");
    snprintf(long_addr, sizeof long_addr, "1 tcp://a:1 %0128d:1\n", 0);
    char want[400];
    snprintf(want, sizeof want, "test.conf:1: host too long in '%0128d:1' (max 127 bytes)", 0);
    check_parse_error(long_addr, want);

    char ten[1024] = "";
    for (int i = 1; i <= 10; i++) {
        char line[96];
        snprintf(line, sizeof line, "%d tcp://127.0.0.1:%d 127.0.0.1:%d\n", i, 7000 + i, 6400 + i);
        strcat(ten, line);
    }
    check_parse_error(ten, "test.conf:10: too many nodes (max 9)");
}

static void test_hostport(void)
{
    char host[16], err[128];
    int port = 0;

    CHECK_INT_EQ(
        cluster_parse_hostport("localhost:6379", host, sizeof host, &port, err, sizeof err), 0);
    CHECK_STR_EQ(host, "localhost");
    CHECK_INT_EQ(port, 6379);
    CHECK_INT_EQ(
        cluster_parse_hostport("10.0.0.1:65535", host, sizeof host, &port, err, sizeof err), 0);
    CHECK_STR_EQ(host, "10.0.0.1");
    CHECK_INT_EQ(port, 65535);
    CHECK_INT_EQ(cluster_parse_hostport("localhost", host, sizeof host, &port, err, sizeof err),
                 -1);
    CHECK_STR_EQ(err, "missing port in 'localhost' (expected host:port)");
    CHECK_INT_EQ(cluster_parse_hostport("a-very-long-host-name:1", host, sizeof host, &port, err,
                                        sizeof err),
                 -1);
    CHECK_STR_EQ(err, "host too long in 'a-very-long-host-name:1' (max 15 bytes)");
    CHECK_INT_EQ(cluster_parse_hostport("h:099999", host, sizeof host, &port, err, sizeof err), -1);
    CHECK_STR_EQ(err, "invalid port in 'h:099999' (expected 1..65535)");
}

static void test_load(const char *source_dir)
{
    struct cluster c;
    char err[512];

    CHECK_INT_EQ(cluster_load("/nonexistent-raftkv/cluster.conf", &c, err, sizeof err), -1);
    CHECK_STR_EQ(err, "/nonexistent-raftkv/cluster.conf: No such file or directory");
    CHECK_INT_EQ(cluster_load("/", &c, err, sizeof err), -1);
    CHECK_STR_EQ(err, "/: Is a directory");

    /* A file with a bad line: the error names the path and the line. */
    char path[] = "/tmp/raftkv-test-cluster-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        static const char text[] = "# nodes\n1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                                   "2 tcp://127.0.0.1:7002 127.0.0.1:99999\n";
        CHECK_INT_EQ(write(fd, text, sizeof text - 1), sizeof text - 1);
        close(fd);
        char want[256];
        snprintf(want, sizeof want, "%s:3: invalid port in '127.0.0.1:99999' (expected 1..65535)",
                 path);
        CHECK_INT_EQ(cluster_load(path, &c, err, sizeof err), -1);
        CHECK_STR_EQ(err, want);

        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f != NULL) {
            fputs(cluster3_text, f);
            fclose(f);
        }
        struct cluster from_text;
        CHECK_INT_EQ(cluster_parse(cluster3_text, "x", &from_text, err, sizeof err), 0);
        CHECK_INT_EQ(cluster_load(path, &c, err, sizeof err), 0);
        CHECK(c.cluster_id == from_text.cluster_id);
        unlink(path);
    }

    if (source_dir == NULL)
        return;
    /* The shipped files parse and hold the nodes embedded above. */
    const char *names[2] = {"cluster.conf", "cluster5.conf"};
    const char *texts[2] = {cluster3_text, cluster5_text};
    size_t counts[2] = {3, 5};
    for (int i = 0; i < 2; i++) {
        char file[1024];
        struct cluster embedded;
        snprintf(file, sizeof file, "%s/assets/%s", source_dir, names[i]);
        int r = cluster_load(file, &c, err, sizeof err);
        if (r != 0)
            fprintf(stderr, "%s\n", err);
        CHECK_INT_EQ(r, 0);
        CHECK_INT_EQ(c.n, counts[i]);
        CHECK_INT_EQ(cluster_parse(texts[i], names[i], &embedded, err, sizeof err), 0);
        CHECK(r == 0 && c.cluster_id == embedded.cluster_id);
    }
}

int main(int argc, char **argv)
{
    test_shipped_text();
    test_cluster_id();
    test_ipc_and_layout();
    test_errors();
    test_hostport();
    test_load(argc > 1 ? argv[1] : NULL);
    CHECK_DONE();
}

/* raftkv-forge - craft the messages an outsider would send to a node's peer
 * port, with the project's own schema (proto/raftkv.proto), for the tests of
 * peer authentication (tests/integration/test_node_auth.py).
 *
 *   raftkv-forge --config FILE --to N [options] append|vote|suspend MS|timeout
 *
 *   append      an AppendEntries from --from carrying one entry, SET KEY VALUE,
 *               at --prev-index + 1 in --term, committing it
 *   vote        a RequestVote from --from in --term, claiming a log of
 *               --last-index / --last-term
 *   suspend MS  a supervisor's Control: suspend for MS milliseconds
 *   timeout     a supervisor's Control: start an election now
 *
 * The message goes to node N's peer URL (or --url), stamped with the cluster
 * id of FILE; with --secret-file it carries a MAC made with that file, as a
 * node's would. --repeat sends the very same bytes again. Controls carry
 * --seq (default: the wall clock in microseconds).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "cluster.h"
#include "kv.h"
#include "raft.h"
#include "raftkv.pb-c.h"
#include "wire.h"

static const char usage[] =
    "usage: raftkv-forge --config FILE --to N [--from N] [--url URL] [--secret-file FILE]\n"
    "                    [--term T] [--prev-index I] [--prev-term T] [--commit C]\n"
    "                    [--last-index I] [--last-term T] [--key K] [--value V]\n"
    "                    [--seq S] [--repeat N] append|vote|suspend MS|timeout\n";

struct forge {
    const char *config, *url, *secret, *key, *value;
    uint32_t to, from;
    uint64_t term, prev_index, prev_term, commit, last_index, last_term, seq;
    long repeat;
};

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-')
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct forge *f)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},      {"to", required_argument, NULL, 't'},
        {"from", required_argument, NULL, 'f'},        {"url", required_argument, NULL, 'u'},
        {"secret-file", required_argument, NULL, 's'}, {"term", required_argument, NULL, 'T'},
        {"prev-index", required_argument, NULL, 'i'},  {"prev-term", required_argument, NULL, 'p'},
        {"commit", required_argument, NULL, 'C'},      {"last-index", required_argument, NULL, 'l'},
        {"last-term", required_argument, NULL, 'L'},   {"key", required_argument, NULL, 'k'},
        {"value", required_argument, NULL, 'v'},       {"seq", required_argument, NULL, 'q'},
        {"repeat", required_argument, NULL, 'r'},      {NULL, 0, NULL, 0},
    };
    memset(f, 0, sizeof(*f));
    f->key = "pwned";
    f->value = "by-outsider";
    f->term = 1000000;
    f->last_index = 1000000;
    f->last_term = 1000000;
    f->repeat = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        uint64_t v = 0;
        if (strchr("tfTipClLqr", ch) != NULL && parse_u64(optarg, &v) != 0) {
            fprintf(stderr, "raftkv-forge: not a number: '%s'\n", optarg);
            return -1;
        }
        switch (ch) {
        case 'c':
            f->config = optarg;
            break;
        case 'u':
            f->url = optarg;
            break;
        case 's':
            f->secret = optarg;
            break;
        case 'k':
            f->key = optarg;
            break;
        case 'v':
            f->value = optarg;
            break;
        case 't':
            f->to = (uint32_t)v;
            break;
        case 'f':
            f->from = (uint32_t)v;
            break;
        case 'T':
            f->term = v;
            break;
        case 'i':
            f->prev_index = v;
            break;
        case 'p':
            f->prev_term = v;
            break;
        case 'C':
            f->commit = v;
            break;
        case 'l':
            f->last_index = v;
            break;
        case 'L':
            f->last_term = v;
            break;
        case 'q':
            f->seq = v;
            break;
        case 'r':
            f->repeat = (long)v;
            break;
        default:
            return -1;
        }
    }
    if (f->config == NULL || f->to == 0 || optind >= argc) {
        fprintf(stderr, "raftkv-forge: --config, --to and a kind of message are required\n");
        return -1;
    }
    return 0;
}

/* Connect, send the same bytes `repeat` times, give nanomsg time to write
 * them out (it has no linger), close. */
static int send_bytes(const char *url, const struct buf *b, long repeat)
{
    int s = nn_socket(AF_SP, NN_PUSH);
    if (s < 0) {
        fprintf(stderr, "raftkv-forge: nn_socket: %s\n", nn_strerror(nn_errno()));
        return -1;
    }
    int timeout = 5000;
    if (nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &timeout, sizeof(timeout)) < 0 ||
        nn_connect(s, url) < 0) {
        fprintf(stderr, "raftkv-forge: %s: %s\n", url, nn_strerror(nn_errno()));
        nn_close(s);
        return -1;
    }
    for (long i = 0; i < repeat; i++) {
        if (nn_send(s, b->data, b->len, 0) < 0) {
            fprintf(stderr, "raftkv-forge: send to %s: %s\n", url, nn_strerror(nn_errno()));
            nn_close(s);
            return -1;
        }
    }
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    nn_close(s);
    printf("raftkv-forge: sent %ld message(s) of %zu bytes to %s\n", repeat, b->len, url);
    return 0;
}

int main(int argc, char **argv)
{
    struct forge f;
    if (parse_options(argc, argv, &f) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    struct cluster c;
    char err[512];
    if (cluster_load(f.config, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "raftkv-forge: %s\n", err);
        return 1;
    }
    const struct cluster_node *to = cluster_find(&c, f.to);
    if (to == NULL && f.url == NULL) {
        fprintf(stderr, "raftkv-forge: %s has no node %u\n", f.config, f.to);
        return 1;
    }
    if (f.from == 0) /* some other node of the cluster */
        for (size_t i = 0; i < c.n && f.from == 0; i++)
            if (c.nodes[i].id != f.to)
                f.from = c.nodes[i].id;
    struct wire_key key = {0};
    char warn[512];
    if (f.secret != NULL && wire_key_load(f.secret, &key, warn, sizeof(warn), err, sizeof(err))) {
        fprintf(stderr, "raftkv-forge: %s\n", err);
        return 1;
    }

    const char *kind = argv[optind];
    Raftkv__Envelope env = RAFTKV__ENVELOPE__INIT;
    env.cluster_id = c.cluster_id;
    Raftkv__PeerMessage pm = RAFTKV__PEER_MESSAGE__INIT;
    Raftkv__Control ctl = RAFTKV__CONTROL__INIT;
    Raftkv__Entry entry = RAFTKV__ENTRY__INIT, *entries[1] = {&entry};
    uint8_t *cmd_data = NULL;
    if (strcmp(kind, "append") == 0 || strcmp(kind, "vote") == 0) {
        env.from = f.from;
        env.body_case = RAFTKV__ENVELOPE__BODY_PEER;
        env.peer = &pm;
        pm.to = f.to;
        pm.term = f.term;
        if (strcmp(kind, "vote") == 0) {
            pm.type = RAFT_MSG_VOTE;
            pm.last_log_index = f.last_index;
            pm.last_log_term = f.last_term;
        } else {
            struct kv_cmd cmd = {.op = KV_OP_SET, .now_ms = clock_wall_ms(), .nargs = 2};
            cmd.args[0] = (struct kv_arg){(const uint8_t *)f.key, (uint32_t)strlen(f.key)};
            cmd.args[1] = (struct kv_arg){(const uint8_t *)f.value, (uint32_t)strlen(f.value)};
            uint32_t len;
            if (kv_cmd_encode(&cmd, &cmd_data, &len) != 0) {
                fprintf(stderr, "raftkv-forge: cannot encode the command\n");
                return 1;
            }
            entry.term = f.term;
            entry.index = f.prev_index + 1;
            entry.type = RAFT_ENTRY_COMMAND;
            entry.data.data = cmd_data;
            entry.data.len = len;
            pm.type = RAFT_MSG_APPEND;
            pm.prev_index = f.prev_index;
            pm.prev_term = f.prev_term;
            pm.commit = f.commit ? f.commit : f.prev_index + 1;
            pm.n_entries = 1;
            pm.entries = entries;
        }
    } else if (strcmp(kind, "suspend") == 0 || strcmp(kind, "timeout") == 0) {
        env.from = 0;
        env.body_case = RAFTKV__ENVELOPE__BODY_CONTROL;
        env.control = &ctl;
        ctl.seq = f.seq ? f.seq : clock_wall_ms() * 1000;
        if (strcmp(kind, "timeout") == 0) {
            ctl.timeout_now = 1;
        } else {
            uint64_t ms;
            if (optind + 1 >= argc || parse_u64(argv[optind + 1], &ms) != 0 || ms > UINT32_MAX) {
                fprintf(stderr, "raftkv-forge: suspend wants milliseconds\n");
                return 2;
            }
            ctl.set_suspend = 1;
            ctl.suspend_ms = (uint32_t)ms;
        }
    } else {
        fprintf(stderr, "raftkv-forge: unknown kind of message '%s'\n", kind);
        fputs(usage, stderr);
        return 2;
    }

    struct buf b = {0};
    int rc = wire_seal(&key, &env, &b) == 0 ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "raftkv-forge: out of memory\n");
    else
        rc = send_bytes(f.url ? f.url : to->peer_url, &b, f.repeat);
    buf_free(&b);
    free(cmd_data);
    return rc == 0 ? 0 : 1;
}

/* main.c - raftkv-node: flags, start-up and shut-down. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "node.h"
#include "password.h"

static const char *node_usage =
    "usage: raftkv-node --config FILE --id N --data DIR [--election-timeout MIN-MAX]\n"
    "                   [--heartbeat MS] [--quiet] [--status URL] [--speed X] [--secret-file "
    "FILE]\n"
    "  --config FILE             the cluster file (one line a node: id peer-url client-address)\n"
    "  --id N                    which node of the file this process is\n"
    "  --data DIR                where term, vote and log are kept (created if missing)\n"
    "  --election-timeout MIN-MAX  milliseconds, drawn at random each time (default 150-300)\n"
    "  --heartbeat MS            leader heartbeat interval (default 50)\n"
    "  --quiet                   do not print state changes\n"
    "  --status URL              push status to a supervisor at this nanomsg URL\n"
    "  --speed X                 run timers at factor X (default 1; 0.1 is ten times slower)\n"
    "  --clock-offset-ms MS      add MS (may be negative) to the wall clock: tests of clock skew\n"
    "  --secret-file FILE        the cluster secret, the same file on every node: MACs on peer,\n"
    "                            control and status messages; without it every peer URL must be\n"
    "                            on loopback (protected mode)\n"
    "  --requirepass-file FILE   clients must AUTH with the password in FILE first; without it\n"
    "                            only loopback clients are served (protected mode)\n"
    "  --admin-commands on|off   allow RAFT.SUSPEND and DEBUG (default on)\n"
    "  --client-output-limit BYTES  disconnect a client holding more unsent replies\n"
    "                            (default 32mb; 0: no limit; suffixes kb, mb, gb)\n"
    "  --client-input-limit BYTES  refuse a request growing past this (default 16mb)\n"
    "  --maxclients N            refuse clients past N (default 10000, fewer if ulimit -n is low)\n"
    "  --timeout SECONDS         close clients idle this long (default 0: never)\n"
    "  --tcp-keepalive SECONDS   TCP keepalive probes on idle clients (default 0: off)\n"
    "  --snapshot-entries N      snapshot the state and compact the log once N entries were\n"
    "                            applied since the last snapshot (default 100000; 0: only on\n"
    "                            RAFT.SNAPSHOT)\n"
    "  --join --peer URL --client HOST:PORT  a node that is not in the cluster file: it waits,\n"
    "                            granting no votes, until RAFT.ADDNODE at the leader adds it\n"
    "  --prevote on|off          ask for pre-votes before starting an election (default on)\n"
    "  --check-quorum on|off     a leader without a majority steps down; followers that hear\n"
    "                            from a leader ignore other candidates (default on)\n"
    "  --snapshot-bytes BYTES    also snapshot once the log on disk passes this size (default\n"
    "                            64mb; 0: no size limit; suffixes kb, mb, gb)\n"
    "  --max-inflight-appends N  AppendEntries with entries out to a follower at once,\n"
    "                            unacknowledged (1 to 8, default 1)\n"
    "  --lease-reads on|off      a leader serves reads on a lease instead of a heartbeat round\n"
    "                            (default off; only answers of nodes with it count; assumes\n"
    "                            clocks that run at rates within 10% of each other: README)\n"
    "  --sched-batch on|off      run the node's threads as SCHED_BATCH: a thread that wakes\n"
    "                            another keeps the CPU until it sleeps (default on)\n";

/* One line per state change: on stdout, and kept for the next status. */
void node_event(struct node *n, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (!n->opt.quiet) {
        printf("node %u: %s\n", n->opt.id, line);
        fflush(stdout);
    }
    if (n->n_events == NODE_MAX_EVENTS) {
        free(n->events[0]);
        memmove(n->events, n->events + 1, (NODE_MAX_EVENTS - 1) * sizeof(n->events[0]));
        n->n_events--;
    }
    n->events[n->n_events] = strdup(line);
    if (n->events[n->n_events] != NULL)
        n->n_events++;
    n->status_dirty = true;
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < min || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* A size in bytes, as Redis writes them: 1048576, 1024kb, 64mb, 1gb (also k,
 * m, g; powers of 1024), from min to max. */
static int parse_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t factor;
    } units[] = {{"", 1},          {"k", 1u << 10}, {"kb", 1u << 10}, {"m", 1u << 20},
                 {"mb", 1u << 20}, {"g", 1u << 30}, {"gb", 1u << 30}};
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *s == '-')
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        if (v > max / units[i].factor || v * units[i].factor < min)
            return -1;
        *out = v * units[i].factor;
        return 0;
    }
    return -1;
}

/* Long options without a short letter. */
enum {
    OPT_CLIENT_OUTPUT_LIMIT = 1000,
    OPT_CLIENT_INPUT_LIMIT,
    OPT_MAXCLIENTS,
    OPT_TIMEOUT,
    OPT_TCP_KEEPALIVE,
    OPT_SNAPSHOT_ENTRIES,
    OPT_SNAPSHOT_BYTES,
    OPT_PREVOTE,
    OPT_CHECK_QUORUM,
    OPT_JOIN,
    OPT_PEER,
    OPT_CLIENT,
    OPT_MAX_INFLIGHT,
    OPT_LEASE_READS,
    OPT_SCHED_BATCH,
};

static int parse_options(int argc, char **argv, struct node_options *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"id", required_argument, NULL, 'i'},
        {"data", required_argument, NULL, 'd'},
        {"election-timeout", required_argument, NULL, 'e'},
        {"heartbeat", required_argument, NULL, 'b'},
        {"quiet", no_argument, NULL, 'q'},
        {"status", required_argument, NULL, 's'},
        {"speed", required_argument, NULL, 'x'},
        {"clock-offset-ms", required_argument, NULL, 'o'},
        {"secret-file", required_argument, NULL, 'S'},
        {"requirepass-file", required_argument, NULL, 'P'},
        {"admin-commands", required_argument, NULL, 'A'},
        {"client-output-limit", required_argument, NULL, OPT_CLIENT_OUTPUT_LIMIT},
        {"client-input-limit", required_argument, NULL, OPT_CLIENT_INPUT_LIMIT},
        {"maxclients", required_argument, NULL, OPT_MAXCLIENTS},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"tcp-keepalive", required_argument, NULL, OPT_TCP_KEEPALIVE},
        {"snapshot-entries", required_argument, NULL, OPT_SNAPSHOT_ENTRIES},
        {"snapshot-bytes", required_argument, NULL, OPT_SNAPSHOT_BYTES},
        {"prevote", required_argument, NULL, OPT_PREVOTE},
        {"join", no_argument, NULL, OPT_JOIN},
        {"peer", required_argument, NULL, OPT_PEER},
        {"client", required_argument, NULL, OPT_CLIENT},
        {"check-quorum", required_argument, NULL, OPT_CHECK_QUORUM},
        {"max-inflight-appends", required_argument, NULL, OPT_MAX_INFLIGHT},
        {"lease-reads", required_argument, NULL, OPT_LEASE_READS},
        {"sched-batch", required_argument, NULL, OPT_SCHED_BATCH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->election_min_ms = 150;
    o->election_max_ms = 300;
    o->heartbeat_ms = 50;
    o->speed = 1.0;
    o->admin_commands = true;
    o->client_output_limit = 32u << 20; /* four of the largest value (RESP_MAX_BULK) */
    o->client_input_limit = 16u << 20;  /* the largest value and room for the rest */
    /* As Redis rewrites its AOF only once it has grown by 64 MB: each
     * snapshot writes the whole store, so not too often; 100000 entries of
     * 256 bytes are about 30 MB of log. */
    o->snapshot_entries = 100000;
    o->snapshot_bytes = 64ull << 20;
    o->prevote = true;
    o->max_inflight = RAFT_DEFAULT_INFLIGHT_MSGS;
    o->check_quorum = true;
    o->sched_batch = true;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config_path = optarg;
            break;
        case 'i':
            if (parse_u32(optarg, 1, CLUSTER_MAX_NODES, &o->id) != 0) {
                fprintf(stderr, "raftkv-node: --id must be a number from 1 to %d, not '%s'\n",
                        CLUSTER_MAX_NODES, optarg);
                return -1;
            }
            break;
        case 'd':
            o->data_dir = optarg;
            break;
        case 'e': {
            char lo[32], hi[32];
            const char *dash = strchr(optarg, '-');
            size_t l = dash ? (size_t)(dash - optarg) : 0;
            if (dash == NULL || l == 0 || l >= sizeof(lo) || strlen(dash + 1) >= sizeof(hi)) {
                fprintf(stderr, "raftkv-node: --election-timeout wants MIN-MAX in ms, not '%s'\n",
                        optarg);
                return -1;
            }
            memcpy(lo, optarg, l);
            lo[l] = '\0';
            strcpy(hi, dash + 1);
            if (parse_u32(lo, 1, 600000, &o->election_min_ms) != 0 ||
                parse_u32(hi, 1, 600000, &o->election_max_ms) != 0 ||
                o->election_min_ms > o->election_max_ms) {
                fprintf(stderr,
                        "raftkv-node: --election-timeout wants MIN-MAX in ms with MIN <= MAX, "
                        "not '%s'\n",
                        optarg);
                return -1;
            }
            break;
        }
        case 'b':
            if (parse_u32(optarg, 1, 600000, &o->heartbeat_ms) != 0) {
                fprintf(stderr, "raftkv-node: --heartbeat wants milliseconds, not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'q':
            o->quiet = true;
            break;
        case 's':
            o->status_url = optarg;
            break;
        case 'x': {
            char *end;
            o->speed = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(o->speed >= 0.01 && o->speed <= 100)) {
                fprintf(stderr, "raftkv-node: --speed wants a factor from 0.01 to 100, not '%s'\n",
                        optarg);
                return -1;
            }
            break;
        }
        case 'o': {
            char *end;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || v < -86400000LL * 365 ||
                v > 86400000LL * 365) {
                fprintf(stderr,
                        "raftkv-node: --clock-offset-ms wants milliseconds within a year, not "
                        "'%s'\n",
                        optarg);
                return -1;
            }
            o->clock_offset_ms = v;
            break;
        }
        case 'P':
            o->requirepass_file = optarg;
            break;
        case 'A':
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
                fprintf(stderr, "raftkv-node: --admin-commands wants on or off, not '%s'\n",
                        optarg);
                return -1;
            }
            o->admin_commands = strcmp(optarg, "on") == 0;
            break;
        case 'S':
            o->secret_path = optarg;
            break;
        case OPT_CLIENT_OUTPUT_LIMIT:
            if (parse_bytes(optarg, 0, UINT64_MAX, &o->client_output_limit) != 0) {
                fprintf(stderr,
                        "raftkv-node: --client-output-limit wants bytes (e.g. 32mb; 0: no "
                        "limit), not '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_CLIENT_INPUT_LIMIT:
            if (parse_bytes(optarg, 1024, 1u << 30, &o->client_input_limit) != 0) {
                fprintf(stderr,
                        "raftkv-node: --client-input-limit wants bytes from 1kb to 1gb, not "
                        "'%s'\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_MAXCLIENTS:
            if (parse_u32(optarg, 1, 1000000, &o->maxclients) != 0) {
                fprintf(stderr,
                        "raftkv-node: --maxclients wants a number from 1 to 1000000, "
                        "not '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_TIMEOUT:
            if (parse_u32(optarg, 0, 86400 * 365, &o->timeout_s) != 0) {
                fprintf(stderr, "raftkv-node: --timeout wants seconds (0: never), not '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_TCP_KEEPALIVE:
            if (parse_u32(optarg, 0, 86400, &o->tcp_keepalive_s) != 0) {
                fprintf(stderr,
                        "raftkv-node: --tcp-keepalive wants seconds up to 86400 (0: off), not "
                        "'%s'\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_SNAPSHOT_ENTRIES: {
            uint32_t v;
            if (parse_u32(optarg, 0, 1000000000, &v) != 0) {
                fprintf(stderr,
                        "raftkv-node: --snapshot-entries wants a number of entries (0: never "
                        "on its own), not '%s'\n",
                        optarg);
                return -1;
            }
            o->snapshot_entries = v;
            break;
        }
        case OPT_JOIN:
            o->join = true;
            break;
        case OPT_PEER:
            o->peer_url = optarg;
            break;
        case OPT_CLIENT:
            o->client_addr = optarg;
            break;
        case OPT_PREVOTE:
        case OPT_CHECK_QUORUM:
        case OPT_LEASE_READS:
        case OPT_SCHED_BATCH: {
            const char *name = ch == OPT_PREVOTE        ? "prevote"
                               : ch == OPT_CHECK_QUORUM ? "check-quorum"
                               : ch == OPT_LEASE_READS  ? "lease-reads"
                                                        : "sched-batch";
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
                fprintf(stderr, "raftkv-node: --%s wants on or off, not '%s'\n", name, optarg);
                return -1;
            }
            bool *flag = ch == OPT_PREVOTE        ? &o->prevote
                         : ch == OPT_CHECK_QUORUM ? &o->check_quorum
                         : ch == OPT_LEASE_READS  ? &o->lease_reads
                                                  : &o->sched_batch;
            *flag = strcmp(optarg, "on") == 0;
            break;
        }
        case OPT_MAX_INFLIGHT:
            if (parse_u32(optarg, 1, RAFT_MAX_INFLIGHT_MSGS, &o->max_inflight) != 0) {
                fprintf(stderr,
                        "raftkv-node: --max-inflight-appends wants a number from 1 to %d, not "
                        "'%s'\n",
                        RAFT_MAX_INFLIGHT_MSGS, optarg);
                return -1;
            }
            break;
        case OPT_SNAPSHOT_BYTES:
            if (parse_bytes(optarg, 0, UINT64_MAX, &o->snapshot_bytes) != 0) {
                fprintf(stderr,
                        "raftkv-node: --snapshot-bytes wants bytes (e.g. 64mb; 0: no size "
                        "limit), not '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case 'h':
            fputs(node_usage, stdout);
            exit(0);
        default:
            if (optopt != 0)
                fprintf(stderr, "raftkv-node: option --%s needs a value\n", argv[optind - 1] + 2);
            else
                fprintf(stderr, "raftkv-node: unknown option '%s'\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftkv-node: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->config_path == NULL || o->id == 0 || o->data_dir == NULL) {
        fprintf(stderr, "raftkv-node: --config, --id and --data are required\n");
        return -1;
    }
    if (o->heartbeat_ms >= o->election_min_ms) {
        fprintf(stderr,
                "raftkv-node: --heartbeat (%u ms) must be shorter than the election "
                "timeout (%u ms)\n",
                o->heartbeat_ms, o->election_min_ms);
        return -1;
    }
    if (o->lease_reads && node_lease_ms(o) == 0) {
        fprintf(stderr,
                "raftkv-node: --lease-reads leaves no lease with a minimum election timeout of "
                "%u ms at --speed %g: the lease is that timeout less a clock step, a tenth and "
                "2 ms (README, \"Lease reads\"); raise --election-timeout\n",
                o->election_min_ms, o->speed);
        return -1;
    }
    return 0;
}

static void node_free_entries(struct raft_entry *entries, size_t count)
{
    for (size_t i = 0; i < count; i++)
        raft_entry_free(&entries[i]);
    free(entries);
}

/* Read the data dir back: "A restart loads the newest snapshot and replays
 * only the log after it." The store starts from the snapshot; the core gets
 * its index and term and the log (raft_restore skips what the snapshot
 * covers), and applies the entries after it once they are known committed. */
static int node_open_storage(struct node *n, char *err, size_t errlen)
{
    uint64_t term;
    uint32_t vote;
    struct raft_entry *entries;
    size_t count;
    if (wal_open(n->opt.data_dir, &n->wal, &term, &vote, &entries, &count, err, errlen) != 0)
        return -1;
    if (term > RAFT_TERM_MAX) {
        snprintf(err, errlen, "%s/meta: term %" PRIu64 " is past the largest a cluster can reach",
                 n->opt.data_dir, term);
        node_free_entries(entries, count);
        return -1;
    }
    uint64_t snap_index, snap_term;
    if (snapshot_load_newest(n, &snap_index, &snap_term, err, errlen) != 0) {
        node_free_entries(entries, count);
        return -1;
    }
    if (raft_restore(&n->raft, term, vote, snap_index, snap_term, entries, count) != RAFT_OK) {
        snprintf(err, errlen,
                 "%s: the log does not follow the snapshot at index %" PRIu64 " (term %" PRIu64 ")",
                 n->opt.data_dir, snap_index, snap_term);
        return -1;
    }
    if (n->has_loaded_members)
        raft_set_snapshot_members(&n->raft, &n->loaded_members);
    membership_start(n); /* addresses from the configuration in force, not the file */
    return 0;
}

static int node_init(struct node *n, char *err, size_t errlen)
{
    /* Not open yet: node_close, run after a failure here, closes only what opened. */
    n->listen_fd = -1;
    n->epoll_fd = -1;
    n->peer_in = -1;
    n->status_out = -1;
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        n->peer_out[i] = -1;
    if (cluster_load(n->opt.config_path, &n->cluster, err, errlen) != 0)
        return -1;
    if (n->opt.join) {
        /* Not in the file: its addresses come from the command line. */
        if (n->opt.peer_url == NULL || n->opt.client_addr == NULL) {
            snprintf(err, errlen, "--join needs --peer URL and --client HOST:PORT");
            return -1;
        }
        char why[400];
        if (cluster_find(&n->cluster, n->opt.id) != NULL) {
            snprintf(err, errlen,
                     "%s: node %u is in the cluster file: it is a member from the start, "
                     "start it without --join",
                     n->opt.config_path, n->opt.id);
            return -1;
        }
        if (cluster_add(&n->cluster, n->opt.id, n->opt.peer_url, n->opt.client_addr, why,
                        sizeof why) != 0) {
            snprintf(err, errlen, "--join: %s", why);
            return -1;
        }
    } else if (n->opt.peer_url != NULL || n->opt.client_addr != NULL) {
        snprintf(err, errlen,
                 "--peer and --client go with --join (a node of the cluster file "
                 "takes its addresses from there)");
        return -1;
    }
    n->self = cluster_find(&n->cluster, n->opt.id);
    if (n->self == NULL) {
        snprintf(err, errlen,
                 "%s: no node with id %u (a node that joins later is started with --join "
                 "--peer URL --client HOST:PORT)",
                 n->opt.config_path, n->opt.id);
        return -1;
    }
    if (transport_auth_init(n, err, errlen) != 0)
        return -1;
    if (n->opt.requirepass_file != NULL &&
        password_load(n->opt.requirepass_file, &n->opt.requirepass, err, errlen) != 0)
        return -1;
    if (n->opt.requirepass == NULL && !access_host_is_loopback(n->self->client_host)) {
        snprintf(err, errlen,
                 "client address %s is not a loopback address and no --requirepass-file is "
                 "given: anyone who reaches it could read and write; set a password or use "
                 "127.0.0.1",
                 n->self->client_addr);
        return -1;
    }
    n->started_ms = clock_monotonic_ms();
    n->last_real_ms = n->started_ms;
    n->raft_clock_ms = 0;
    n->rng = clock_wall_ms() ^ ((uint64_t)getpid() << 32) ^ n->opt.id;
    struct raft_config cfg = {
        .id = n->opt.id,
        .n_nodes = n->cluster.n,
        .election_min_ms = n->opt.election_min_ms,
        .election_max_ms = n->opt.election_max_ms,
        .heartbeat_ms = n->opt.heartbeat_ms,
        .seed = n->rng | 1,
        .prevote = n->opt.prevote,
        .check_quorum = n->opt.check_quorum,
        .max_inflight_appends = n->opt.max_inflight,
        .lease_ms = n->opt.lease_reads ? node_lease_ms(&n->opt) : 0,
    };
    membership_initial(n, &cfg);
    for (size_t i = 0; i < n->cluster.n; i++)
        cfg.node_ids[i] = n->cluster.nodes[i].id;
    if (raft_init(&n->raft, &cfg, n->raft_clock_ms) != RAFT_OK) {
        snprintf(err, errlen, "bad raft configuration");
        return -1;
    }
    if (node_open_storage(n, err, errlen) != 0)
        return -1;
    n->active_expire = true;
    n->wire.on = true; /* reported only with --status */
    if (transport_open(n, err, errlen) != 0)
        return -1;
    if (clients_listen(n, err, errlen) != 0)
        return -1;
    if (poller_open(n, err, errlen) != 0)
        return -1;
    if (write_path_init(&n->write_path) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    n->shown_role = n->raft.role;
    n->shown_term = n->raft.current_term;
    n->status_dirty = true;
    return 0;
}

static void node_close(struct node *n)
{
    storage_stop(n);
    snapshot_shutdown(n);
    transfer_shutdown(n);
    membership_shutdown(n);
    clients_close_all(n);
    poller_close(n);
    pending_free(n);
    transport_close(n);
    if (n->wal != NULL)
        wal_close(n->wal);
    if (n->kv != NULL)
        kv_free(n->kv);
    raft_close(&n->raft);
    write_path_free(&n->write_path);
    resp_request_free(&n->req);
    for (size_t i = 0; i < n->n_events; i++)
        free(n->events[i]);
    free(n->opt.requirepass);
}

/* SCHED_BATCH (sched(7)): a thread this node wakes (nanomsg's worker on a
 * received message, the loop, the storage thread) waits for the waker to
 * sleep instead of taking its CPU at once. Without it the woken thread often
 * preempted the waker while the waker still held nanomsg's socket lock, and
 * the two handed the CPU back and forth on that lock: README, "raftkv-node".
 * Called before any thread starts, so that every thread inherits it. The
 * cost: a node woken while another program runs on its CPU waits for that
 * program's time slice (milliseconds, against election timeouts of 150). */
static void node_set_sched(struct node *n)
{
    n->sched_batch = false;
    if (!n->opt.sched_batch)
        return;
    struct sched_param param = {.sched_priority = 0};
    if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) {
        fprintf(stderr, "raftkv-node: SCHED_BATCH refused (%s); running as SCHED_OTHER\n",
                strerror(errno));
        return;
    }
    n->sched_batch = true;
}

int main(int argc, char **argv)
{
    static struct node node;
    if (parse_options(argc, argv, &node.opt) != 0) {
        fputs(node_usage, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    node_set_sched(&node);
    char err[512] = "";
    if (node_init(&node, err, sizeof(err)) != 0) {
        fprintf(stderr, "raftkv-node: %s\n", err);
        node_close(&node);
        return 1;
    }
    if (!node.opt.quiet) {
        printf("node %u: started, term %" PRIu64 ", %" PRIu64
               " log entries, snapshot_index %" PRIu64 ", peers on %s, clients on %s\n",
               node.opt.id, node.raft.current_term, raft_last_index(&node.raft),
               node.raft.log.snapshot_index, node.self->peer_url, node.self->client_addr);
        if (node.opt.requirepass == NULL)
            printf("node %u: protected mode: no --requirepass-file, clients on loopback only\n",
                   node.opt.id);
        fflush(stdout);
    }
    int rv = node_run(&node);
    node_close(&node);
    return rv;
}

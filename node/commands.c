/* commands.c - the command table: every Redis-protocol command the node
 * answers, and the path each one takes.
 *
 *   write  (SET, INCR, DEL, EXPIRE)  through the log: answered once applied
 *   read   (GET, TTL, EXISTS)        through ReadIndex: answered by a leader
 *                                    that has confirmed it still leads
 *   local  (PING, INFO, RAFT.*, ...) answered by any node at once
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node.h"

#define SWEEP_INTERVAL_MS 100
#define SWEEP_MAX_KEYS 128

enum command_flags {
    CMD_WRITE = 1,
    CMD_READ = 2,
    CMD_LOCAL = 4,
    CMD_NOAUTH = 8,    /* allowed before AUTH */
    CMD_ADMIN = 16,    /* refused with --admin-commands off */
    CMD_DEFERRED = 32, /* answered later: RAFT.SNAPSHOT, RAFT.TRANSFER */
};

struct args {
    size_t argc;
    const uint8_t *const *argv;
    const size_t *argl;
};

struct command {
    const char *name; /* lower case */
    int arity;        /* Redis's convention: N exactly, -N at least N */
    int flags;
    /* CMD_WRITE: fill cmd from the arguments, or write an error to err. */
    int (*build)(struct node *n, const struct args *a, struct kv_cmd *cmd, char *err,
                 size_t errlen);
    /* CMD_READ and CMD_LOCAL: write the reply. */
    void (*run)(struct node *n, struct client *c, const struct args *a, struct buf *out);
    /* CMD_DEFERRED: take the slot and answer it when the outcome is known. */
    void (*defer)(struct node *n, struct reply_slot *slot, const struct args *a);
};

/* ------------------------------------------------------------ helpers */

static bool arg_is(const struct args *a, size_t i, const char *word)
{
    size_t len = strlen(word);
    return a->argl[i] == len && strncasecmp((const char *)a->argv[i], word, len) == 0;
}

/* A base-10 signed 64-bit integer, all of the argument, by Redis's rules. */
static int arg_int64(const struct args *a, size_t i, int64_t *out)
{
    return kv_parse_int64(a->argv[i], a->argl[i], out) ? 0 : -1;
}

static int arg_uint64(const struct args *a, size_t i, uint64_t *out)
{
    char tmp[32];
    if (a->argl[i] == 0 || a->argl[i] >= sizeof(tmp) || !isdigit(a->argv[i][0]))
        return -1;
    memcpy(tmp, a->argv[i], a->argl[i]);
    tmp[a->argl[i]] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(tmp, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int check_key(const struct args *a, size_t i, char *err, size_t errlen)
{
    if (a->argl[i] > KV_MAX_KEY) {
        snprintf(err, errlen, "ERR key too large (%zu bytes, at most %u)", a->argl[i], KV_MAX_KEY);
        return -1;
    }
    return 0;
}

static void cmd_add_arg(struct kv_cmd *cmd, const struct args *a, size_t i)
{
    cmd->args[cmd->nargs].p = a->argv[i];
    cmd->args[cmd->nargs].len = (uint32_t)a->argl[i];
    cmd->nargs++;
}

/* ------------------------------------------------------------ writes */

static int build_set(struct node *n, const struct args *a, struct kv_cmd *cmd, char *err,
                     size_t errlen)
{
    (void)n;
    if (a->argc != 3) {
        snprintf(err, errlen, "ERR syntax error");
        return -1;
    }
    if (check_key(a, 1, err, errlen) != 0)
        return -1;
    if (a->argl[2] > KV_MAX_VALUE) {
        snprintf(err, errlen, "ERR value too large (%zu bytes, at most %u)", a->argl[2],
                 KV_MAX_VALUE);
        return -1;
    }
    cmd->op = KV_OP_SET;
    cmd_add_arg(cmd, a, 1);
    cmd_add_arg(cmd, a, 2);
    return 0;
}

static int build_incr(struct node *n, const struct args *a, struct kv_cmd *cmd, char *err,
                      size_t errlen)
{
    (void)n;
    if (check_key(a, 1, err, errlen) != 0)
        return -1;
    cmd->op = KV_OP_INCR;
    cmd_add_arg(cmd, a, 1);
    return 0;
}

static int build_del(struct node *n, const struct args *a, struct kv_cmd *cmd, char *err,
                     size_t errlen)
{
    (void)n;
    if (a->argc - 1 > KV_MAX_ARGS) {
        snprintf(err, errlen, "ERR too many keys (at most %d)", KV_MAX_ARGS);
        return -1;
    }
    cmd->op = KV_OP_DEL;
    for (size_t i = 1; i < a->argc; i++) {
        if (check_key(a, i, err, errlen) != 0)
            return -1;
        cmd_add_arg(cmd, a, i);
    }
    return 0;
}

/* EXPIRE k s: the leader turns "s seconds from now" into an absolute deadline
 * stamped into the entry, so every replica expires the key at the same time. */
static int build_expire(struct node *n, const struct args *a, struct kv_cmd *cmd, char *err,
                        size_t errlen)
{
    (void)n;
    int64_t secs;
    if (arg_int64(a, 2, &secs) != 0) {
        snprintf(err, errlen, "ERR value is not an integer or out of range");
        return -1;
    }
    /* As Redis: a deadline that does not fit in 64 bits is refused, not
     * clamped into a TTL of millions of years. */
    int64_t now = (int64_t)cmd->now_ms;
    if (secs > (INT64_MAX - now) / 1000 || secs < INT64_MIN / 1000) {
        snprintf(err, errlen, "ERR invalid expire time in 'expire' command");
        return -1;
    }
    if (check_key(a, 1, err, errlen) != 0)
        return -1;
    cmd->op = KV_OP_EXPIRE;
    cmd->deadline_ms = now + secs * 1000;
    cmd_add_arg(cmd, a, 1);
    return 0;
}

/* ------------------------------------------------------------ reads */

static void run_get(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)c;
    const uint8_t *val;
    uint32_t vlen;
    if (kv_get(n->kv, a->argv[1], (uint32_t)a->argl[1], commands_now(n), &val, &vlen))
        resp_write_bulk(out, val, vlen);
    else
        resp_write_nil(out);
}

static void run_ttl(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)c;
    int64_t ms = kv_ttl_ms(n->kv, a->argv[1], (uint32_t)a->argl[1], commands_now(n));
    /* Redis rounds the seconds left to the nearest second. */
    resp_write_int(out, ms < 0 ? ms : (ms + 500) / 1000);
}

static void run_exists(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)c;
    int64_t count = 0;
    uint64_t now = commands_now(n);
    for (size_t i = 1; i < a->argc; i++)
        count += kv_ttl_ms(n->kv, a->argv[i], (uint32_t)a->argl[i], now) != -2;
    resp_write_int(out, count);
}

/* ------------------------------------------------------------ local */

static void run_ping(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)n;
    (void)c;
    if (a->argc > 2) {
        resp_write_error(out, "ERR wrong number of arguments for 'ping' command");
        return;
    }
    if (a->argc == 2)
        resp_write_bulk(out, a->argv[1], a->argl[1]);
    else
        resp_write_simple(out, "PONG");
}

static void run_echo(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)n;
    (void)c;
    resp_write_bulk(out, a->argv[1], a->argl[1]);
}

static void run_ok(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)n;
    (void)c;
    (void)a;
    resp_write_simple(out, "OK");
}

/* CLIENT ID | GETNAME | SETNAME name | SETINFO attr value (redis-cli and
 * client libraries send these); anything else is refused. */
static void run_client(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)n;
    if (a->argc == 2 && arg_is(a, 1, "id")) {
        resp_write_int(out, (int64_t)c->id);
    } else if (a->argc == 2 && arg_is(a, 1, "getname")) {
        if (c->name.len > 0)
            resp_write_bulk(out, c->name.data, c->name.len);
        else
            resp_write_nil(out);
    } else if (a->argc == 3 && arg_is(a, 1, "setname")) {
        for (size_t i = 0; i < a->argl[2]; i++) {
            if (a->argv[2][i] <= ' ' || a->argv[2][i] > '~') {
                resp_write_error(out, "ERR Client names cannot contain spaces, newlines or "
                                      "special characters.");
                return;
            }
        }
        buf_reset(&c->name);
        if (buf_append(&c->name, a->argv[2], a->argl[2]) != 0) {
            resp_write_error(out, "ERR out of memory");
            return;
        }
        resp_write_simple(out, "OK");
    } else if (a->argc == 4 && arg_is(a, 1, "setinfo")) {
        resp_write_simple(out, "OK");
    } else {
        struct buf msg = {0};
        buf_append_str(&msg, "ERR unknown subcommand or wrong number of arguments for '");
        buf_append(&msg, a->argv[1], a->argl[1] > 64 ? 64 : a->argl[1]);
        buf_append_str(&msg, "'. Try CLIENT ID, GETNAME, SETNAME, SETINFO.");
        buf_append(&msg, "", 1);
        for (size_t i = 0; msg.data != NULL && i + 1 < msg.len; i++)
            if (msg.data[i] < ' ')
                msg.data[i] = '?';
        resp_write_error(out, msg.data ? (const char *)msg.data : "ERR unknown subcommand");
        buf_free(&msg);
    }
}

static void run_quit(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    run_ok(n, c, a, out);
    c->closing = true;
}

static void run_select(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)n;
    (void)c;
    if (arg_is(a, 1, "0"))
        resp_write_simple(out, "OK");
    else
        resp_write_error(out, "ERR DB index is out of range");
}

/* COMMAND, COMMAND DOCS, COMMAND COUNT: redis-cli asks at start; an empty
 * answer makes it fall back to its built-in help. */
static void run_command(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)n;
    (void)c;
    if (a->argc >= 2 && arg_is(a, 1, "count"))
        resp_write_int(out, 0);
    else
        resp_write_array(out, 0);
}

static void run_config(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)n;
    (void)c;
    if (a->argc == 3 && arg_is(a, 1, "get")) {
        static const char *known[][2] = {{"save", ""}, {"appendonly", "yes"}, {"databases", "1"}};
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
            if (arg_is(a, 2, known[i][0])) {
                resp_write_array(out, 2);
                resp_write_bulk(out, known[i][0], strlen(known[i][0]));
                resp_write_bulk(out, known[i][1], strlen(known[i][1]));
                return;
            }
        }
        resp_write_array(out, 0);
        return;
    }
    resp_write_error(out, "ERR CONFIG supports only GET here");
}

const char *commands_role_word(enum raft_role role)
{
    static const char *const roles[] = {"follower", "candidate", "leader", "precandidate"};
    return (size_t)role < sizeof roles / sizeof roles[0] ? roles[role] : "unknown";
}

static void info_raft(struct node *n, struct buf *out)
{
    const struct raft *r = &n->raft;
    buf_printf(out,
               "id:%u\r\nrole:%s\r\nterm:%" PRIu64 "\r\nleader:%u\r\ncommit_index:%" PRIu64
               "\r\nlast_applied:%" PRIu64 "\r\nlast_log_index:%" PRIu64
               "\r\nlast_log_term:%" PRIu64 "\r\nvoted_for:%u\r\nkeys:%zu\r\nnodes:%zu\r\n",
               n->opt.id, commands_role_word(r->role), r->current_term, r->leader_id,
               r->commit_index, r->last_applied, raft_last_index(r), raft_last_term(r),
               r->voted_for, kv_count(n->kv), n->cluster.n);
    buf_printf(out,
               "peer_auth:%s\r\nauth_failures:%" PRIu64 "\r\nstale_controls:%" PRIu64
               "\r\nbad_messages:%" PRIu64 "\r\n",
               n->key.enabled ? "secret" : "loopback-only", n->auth_failures, n->stale_controls,
               n->bad_messages);
    uint64_t log_first = wal_first_index(n->wal);
    buf_printf(out,
               "snapshot_index:%" PRIu64 "\r\nsnapshot_term:%" PRIu64 "\r\nlog_first_index:%" PRIu64
               "\r\nlog_bytes:%" PRIu64 "\r\nsnapshot_in_progress:%d\r\nsnapshots_taken:%" PRIu64
               "\r\nsnapshots_sent:%" PRIu64 "\r\nsnapshots_installed:%" PRIu64
               "\r\nsnapshot_next_due:%" PRIu64 "\r\n",
               r->log.snapshot_index, r->log.snapshot_term, log_first, wal_log_size(n->wal),
               n->snap_writer != NULL, n->snapshots_taken, n->snapshots_sent,
               n->snapshots_installed, snapshot_next_due(n));
    membership_info(n, out);
    buf_printf(out, "prevote:%s\r\ncheck_quorum:%s\r\ntransfer_to:%u\r\n",
               r->cfg.prevote ? "on" : "off", r->cfg.check_quorum ? "on" : "off",
               r->role == RAFT_LEADER ? r->transfer_to : 0);
    /* Lease reads: the lease's length, whether it holds now, what it served. */
    buf_printf(out,
               "lease_ms:%u\r\nlease_held:%d\r\nreads_on_lease:%" PRIu64
               "\r\nreads_lease_late:%" PRIu64 "\r\n",
               r->cfg.lease_ms, r->cfg.lease_ms > 0 && node_lease_holds(n), n->reads_on_lease,
               n->reads_lease_late);
    /* log_syncs against last_log_index: how many entries one fsync carries;
     * log_syncs_on_loop: how many of the syncs the loop ran itself. */
    buf_printf(out,
               "log_syncs:%" PRIu64 "\r\nlog_syncs_on_loop:%" PRIu64 "\r\npersisted_index:%" PRIu64
               "\r\n",
               n->log_syncs, n->log_syncs_on_loop, r->persisted_index);
    /* Peer messages: msgs_sent per write is what the transport costs. */
    buf_printf(out,
               "msgs_sent:%" PRIu64 "\r\nmsgs_received:%" PRIu64 "\r\nmsgs_dropped:%" PRIu64
               "\r\nreplies_coalesced:%" PRIu64 "\r\n",
               n->msgs_sent, n->msgs_received, n->msgs_dropped, n->replies_coalesced);
    buf_printf(out, "sched:%s\r\n", n->sched_batch ? "batch" : "normal");
    turn_timer_info(&n->turn, out);
    clients_info(n, out);
}

static void run_raft_info(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)c;
    (void)a;
    struct buf text = {0};
    info_raft(n, &text);
    resp_write_bulk(out, text.data, text.len);
    buf_free(&text);
}

static void run_raft_latency(struct node *n, struct client *c, const struct args *a,
                             struct buf *out)
{
    (void)c;
    if (a->argc == 2 && arg_is(a, 1, "reset")) {
        write_path_reset(n);
        resp_write_simple(out, "OK");
        return;
    }
    if (a->argc != 1) {
        resp_write_error(out, "ERR RAFT.LATENCY takes no argument, or RESET");
        return;
    }
    struct buf text = {0};
    if (write_path_info(n, &text) != 0)
        resp_write_error(out, "ERR out of memory");
    else
        resp_write_bulk(out, text.data, text.len);
    buf_free(&text);
}

static void run_info(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)c;
    (void)a;
    struct buf text = {0};
    buf_printf(&text,
               "# Server\r\nredis_version:7.0.0\r\nraftkv_version:0.1.0\r\nredis_mode:"
               "standalone\r\nprocess_id:%d\r\ntcp_port:%d\r\nuptime_in_seconds:%" PRIu64
               "\r\n\r\n# Replication\r\nrole:%s\r\n\r\n# Raft\r\n",
               (int)getpid(), n->self->client_port, (clock_monotonic_ms() - n->started_ms) / 1000,
               n->raft.role == RAFT_LEADER ? "master" : "slave");
    info_raft(n, &text);
    buf_printf(&text, "\r\n# Keyspace\r\ndb0:keys=%zu,expires=%zu,avg_ttl=0\r\n", kv_count(n->kv),
               kv_count_with_ttl(n->kv));
    resp_write_bulk(out, text.data, text.len);
    buf_free(&text);
}

static void run_auth(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    const char *err = access_auth(n, c, a->argc, a->argv, a->argl);
    if (err != NULL)
        resp_write_error(out, err);
    else
        resp_write_simple(out, "OK");
}

/* HELLO [2 [AUTH user password] [SETNAME name]] */
static void run_hello(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    if (a->argc >= 2 && !arg_is(a, 1, "2")) {
        resp_write_error(out, "NOPROTO unsupported protocol version");
        return;
    }
    for (size_t i = 2; i < a->argc; i++) {
        if (arg_is(a, i, "auth") && i + 2 < a->argc) {
            const char *err = access_auth(n, c, 3, a->argv + i, a->argl + i);
            if (err != NULL) {
                resp_write_error(out, err);
                return;
            }
            i += 2;
        } else if (arg_is(a, i, "setname") && i + 1 < a->argc) {
            i += 1;
        } else {
            resp_write_error(out, "ERR syntax error in HELLO option");
            return;
        }
    }
    const char *why;
    if (access_check(n, c, &why) != 0) {
        resp_write_error(out, n->opt.requirepass != NULL
                                  ? "NOAUTH HELLO must be called with the client already "
                                    "authenticated, otherwise the HELLO <proto> AUTH <user> "
                                    "<pass> option can be used to authenticate the client and "
                                    "select the RESP protocol version at the same time"
                                  : why);
        return;
    }
    char id[32];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *role = n->raft.role == RAFT_LEADER ? "master" : "replica";
    const char *pairs[][2] = {{"server", "redis"}, {"version", "7.0.0"},   {"proto", NULL},
                              {"id", NULL},        {"mode", "standalone"}, {"role", role},
                              {"modules", NULL}};
    resp_write_array(out, 14);
    for (size_t i = 0; i < 7; i++) {
        resp_write_bulk(out, pairs[i][0], strlen(pairs[i][0]));
        if (i == 2)
            resp_write_int(out, 2);
        else if (i == 3)
            resp_write_int(out, (int64_t)c->id);
        else if (i == 6)
            resp_write_array(out, 0);
        else
            resp_write_bulk(out, pairs[i][1], strlen(pairs[i][1]));
    }
}

static void run_raft_leader(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)c;
    (void)a;
    const struct cluster_node *leader = cluster_find(&n->cluster, n->raft.leader_id);
    if (leader == NULL) {
        resp_write_nil(out);
        return;
    }
    char text[CLUSTER_HOST_MAX + 32];
    int len = snprintf(text, sizeof(text), "%u %s", leader->id, leader->client_addr);
    resp_write_bulk(out, text, (size_t)len);
}

static void run_raft_suspend(struct node *n, struct client *c, const struct args *a,
                             struct buf *out)
{
    (void)c;
    int64_t secs;
    if (arg_int64(a, 1, &secs) != 0 || secs <= 0 || secs > 86400) {
        resp_write_error(out, "ERR seconds must be a whole number from 1 to 86400");
        return;
    }
    resp_write_simple(out, "OK");
    node_suspend(n, (uint64_t)secs * 1000);
}

/* DEBUG DIGEST: a digest of the data set as of the last applied index, from
 * any node (compare nodes at the same RAFT.INFO last_applied).
 * DEBUG SET-ACTIVE-EXPIRE 0|1: stop or restart the leader's background
 * deletion of expired keys (reads still delete what they find expired). */
static void run_debug(struct node *n, struct client *c, const struct args *a, struct buf *out)
{
    (void)c;
    if (a->argc == 2 && arg_is(a, 1, "digest")) {
        char hex[KV_STATE_DIGEST_HEX + 1];
        kv_state_digest(n->kv, hex);
        resp_write_simple(out, hex);
        return;
    }
    if (a->argc == 3 && arg_is(a, 1, "set-active-expire") &&
        (arg_is(a, 2, "0") || arg_is(a, 2, "1"))) {
        n->active_expire = arg_is(a, 2, "1");
        resp_write_simple(out, "OK");
        return;
    }
    resp_write_error(out, "ERR DEBUG supports DIGEST and SET-ACTIVE-EXPIRE 0|1");
}

static void defer_raft_snapshot(struct node *n, struct reply_slot *slot, const struct args *a)
{
    (void)a;
    snapshot_request(n, slot);
}

static bool arg_node_id(const struct args *a, size_t i, uint32_t *id)
{
    int64_t v;
    if (arg_int64(a, i, &v) != 0 || v < 1 || v > CLUSTER_MAX_NODES)
        return false;
    *id = (uint32_t)v;
    return true;
}

/* An argument as a C string (addresses are short; longer ones are refused). */
static bool arg_text(const struct args *a, size_t i, char *out, size_t len)
{
    if (a->argl[i] == 0 || a->argl[i] >= len || memchr(a->argv[i], '\0', a->argl[i]) != NULL)
        return false;
    memcpy(out, a->argv[i], a->argl[i]);
    out[a->argl[i]] = '\0';
    return true;
}

static void defer_raft_addnode(struct node *n, struct reply_slot *slot, const struct args *a)
{
    uint32_t id;
    char peer[RAFT_ADDR_MAX], client[RAFT_ADDR_MAX];
    const char *bad = !arg_node_id(a, 1, &id)                  ? "a node id from 1 to 9"
                      : !arg_text(a, 2, peer, sizeof peer)     ? "a peer URL (tcp://HOST:PORT)"
                      : !arg_text(a, 3, client, sizeof client) ? "a client address HOST:PORT"
                                                               : NULL;
    if (bad != NULL) {
        char msg[128];
        snprintf(msg, sizeof msg, "ERR RAFT.ADDNODE <id> <peer-url> <client-address>: wants %s",
                 bad);
        resp_write_error(&slot->data, msg);
        client_slot_done(n, slot);
        return;
    }
    membership_request_add(n, slot, id, peer, client);
}

static void defer_raft_removenode(struct node *n, struct reply_slot *slot, const struct args *a)
{
    uint32_t id;
    if (!arg_node_id(a, 1, &id)) {
        resp_write_error(&slot->data, "ERR RAFT.REMOVENODE wants a node id from 1 to 9");
        client_slot_done(n, slot);
        return;
    }
    membership_request_remove(n, slot, id);
}

static void defer_raft_transfer(struct node *n, struct reply_slot *slot, const struct args *a)
{
    uint32_t id;
    if (!arg_node_id(a, 1, &id)) {
        resp_write_error(&slot->data, "ERR RAFT.TRANSFER wants a node id from 1 to 9");
        client_slot_done(n, slot);
        return;
    }
    transfer_request(n, slot, id);
}

/* ------------------------------------------------------------ the table */

static const struct command command_table[] = {
    {"get", 2, CMD_READ, NULL, run_get, NULL},
    {"set", -3, CMD_WRITE, build_set, NULL, NULL},
    {"incr", 2, CMD_WRITE, build_incr, NULL, NULL},
    {"del", -2, CMD_WRITE, build_del, NULL, NULL},
    {"expire", 3, CMD_WRITE, build_expire, NULL, NULL},
    {"ttl", 2, CMD_READ, NULL, run_ttl, NULL},
    {"exists", -2, CMD_READ, NULL, run_exists, NULL},
    {"ping", -1, CMD_LOCAL, NULL, run_ping, NULL},
    {"echo", 2, CMD_LOCAL, NULL, run_echo, NULL},
    {"quit", -1, CMD_LOCAL | CMD_NOAUTH, NULL, run_quit, NULL},
    {"auth", -2, CMD_LOCAL | CMD_NOAUTH, NULL, run_auth, NULL},
    {"select", 2, CMD_LOCAL, NULL, run_select, NULL},
    {"command", -1, CMD_LOCAL, NULL, run_command, NULL},
    {"config", -2, CMD_LOCAL, NULL, run_config, NULL},
    {"info", -1, CMD_LOCAL, NULL, run_info, NULL},
    {"hello", -1, CMD_LOCAL | CMD_NOAUTH, NULL, run_hello, NULL},
    {"client", -2, CMD_LOCAL, NULL, run_client, NULL},
    {"debug", -2, CMD_LOCAL | CMD_ADMIN, NULL, run_debug, NULL},
    {"raft.leader", 1, CMD_LOCAL, NULL, run_raft_leader, NULL},
    {"raft.info", 1, CMD_LOCAL, NULL, run_raft_info, NULL},
    {"raft.latency", -1, CMD_LOCAL, NULL, run_raft_latency, NULL},
    {"raft.suspend", 2, CMD_LOCAL | CMD_ADMIN, NULL, run_raft_suspend, NULL},
    {"raft.snapshot", 1, CMD_DEFERRED, NULL, NULL, defer_raft_snapshot},
    {"raft.transfer", 2, CMD_DEFERRED, NULL, NULL, defer_raft_transfer},
    {"raft.addnode", 4, CMD_DEFERRED | CMD_ADMIN, NULL, NULL, defer_raft_addnode},
    {"raft.removenode", 2, CMD_DEFERRED | CMD_ADMIN, NULL, NULL, defer_raft_removenode},
};

static const struct command *command_find(const uint8_t *name, size_t len)
{
    for (size_t i = 0; i < sizeof(command_table) / sizeof(command_table[0]); i++) {
        const struct command *cmd = &command_table[i];
        if (strlen(cmd->name) == len && strncasecmp(cmd->name, (const char *)name, len) == 0)
            return cmd;
    }
    return NULL;
}

static bool arity_ok(const struct command *cmd, size_t argc)
{
    return cmd->arity >= 0 ? argc == (size_t)cmd->arity : argc >= (size_t)-cmd->arity;
}

/* Redis's words for a command it does not know. */
static void reply_unknown(struct buf *out, const struct args *a)
{
    struct buf msg = {0};
    buf_append_str(&msg, "ERR unknown command '");
    buf_append(&msg, a->argv[0], a->argl[0] > 128 ? 128 : a->argl[0]);
    buf_append_str(&msg, "', with args beginning with: ");
    for (size_t i = 1; i < a->argc && msg.len < 256; i++) {
        buf_append_str(&msg, "'");
        buf_append(&msg, a->argv[i], a->argl[i] > 64 ? 64 : a->argl[i]);
        buf_append_str(&msg, "' ");
    }
    buf_append(&msg, "", 1);
    /* The error is one line of text: line breaks become spaces and a NUL
     * (which would cut the message short) a '?'. */
    for (size_t i = 0; i + 1 < msg.len; i++)
        if (msg.data[i] == '\r' || msg.data[i] == '\n')
            msg.data[i] = ' ';
        else if (msg.data[i] == '\0')
            msg.data[i] = '?';
    resp_write_error(out, msg.data ? (const char *)msg.data : "ERR unknown command");
    buf_free(&msg);
}

/* A follower sends the client to the leader: "-MOVED 0 host:port", which
 * redis-cli -c follows; with no leader known, "-TRYAGAIN". */
void commands_reply_not_leader(struct node *n, struct buf *out)
{
    const struct cluster_node *leader = cluster_find(&n->cluster, n->raft.leader_id);
    if ((leader == NULL || leader->id == n->opt.id) && n->disk_error) {
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "MISCONF this node cannot write its log (%s); it takes no writes until it can",
                 n->disk_error_text);
        resp_write_error(out, msg);
        return;
    }
    if ((leader == NULL || leader->id == n->opt.id) && !raft_is_member(&n->raft, n->opt.id)) {
        resp_write_error(out, "TRYAGAIN this node is not a member of the cluster (removed, or not "
                              "added yet): ask a member");
        return;
    }
    if (leader == NULL || leader->id == n->opt.id) {
        resp_write_error(out, "TRYAGAIN no leader");
        return;
    }
    char msg[CLUSTER_HOST_MAX + 32];
    snprintf(msg, sizeof(msg), "MOVED 0 %s", leader->client_addr);
    resp_write_error(out, msg);
}

static void slot_error(struct node *n, struct reply_slot *s, const char *msg)
{
    resp_write_error(&s->data, msg);
    client_slot_done(n, s);
}

/* ------------------------------------------------------------ dispatch */

uint64_t commands_now(struct node *n)
{
    int64_t wall = (int64_t)clock_wall_ms() + n->opt.clock_offset_ms;
    uint64_t now = wall > 0 ? (uint64_t)wall : 0;
    uint64_t floor = kv_time_floor(n->kv);
    if (now < floor)
        now = floor;
    if (now < n->last_stamp_ms)
        now = n->last_stamp_ms;
    return now;
}

/* Stamp the leader's time into a command: it never goes backwards. */
static uint64_t command_stamp(struct node *n)
{
    n->last_stamp_ms = commands_now(n);
    return n->last_stamp_ms;
}

static void propose(struct node *n, struct reply_slot *slot, const struct kv_cmd *cmd)
{
    uint8_t *data;
    uint32_t len;
    uint64_t index, term;
    if (kv_cmd_encode(cmd, &data, &len) != 0) {
        slot_error(n, slot, "ERR out of memory");
        return;
    }
    int rc = raft_propose(&n->raft, data, len, &index, &term);
    free(data);
    if (rc == RAFT_EBUSY) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "TRYAGAIN leadership is being handed to node %u; the write was not applied",
                 n->raft.transfer_to);
        slot_error(n, slot, msg);
        return;
    }
    if (rc != RAFT_OK) {
        slot_error(n, slot, "ERR cannot append to the log");
        return;
    }
    if (pending_write_push(n, index, term, slot) != 0) {
        slot_error(n, slot, "ERR out of memory");
        return;
    }
    if (slot->client != NULL)
        slot->client->last_write_index = index;
}

static void dispatch_write(struct node *n, struct reply_slot *slot, const struct command *cmd,
                           const struct args *a, uint64_t client_id, uint64_t seq)
{
    static struct kv_cmd kc; /* large (KV_MAX_ARGS): not on the stack */
    memset(&kc, 0, sizeof(kc));
    kc.now_ms = command_stamp(n);
    kc.client_id = client_id;
    kc.seq = seq;
    char err[160];
    if (cmd->build(n, a, &kc, err, sizeof(err)) != 0) {
        slot_error(n, slot, err);
        return;
    }
    propose(n, slot, &kc);
}

/* RAFT.REQ <client-id> <seq> <write command...>: the write applies once per
 * (client-id, seq), however often it is retried (dissertation 6.3). */
static void dispatch_request(struct node *n, struct reply_slot *slot, const struct args *a)
{
    uint64_t client_id, seq;
    if (a->argc < 4) {
        slot_error(n, slot, "ERR wrong number of arguments for 'raft.req' command");
        return;
    }
    if (arg_uint64(a, 1, &client_id) != 0 || client_id == 0 || arg_uint64(a, 2, &seq) != 0) {
        slot_error(n, slot, "ERR client id and sequence must be whole numbers, id not 0");
        return;
    }
    struct args inner = {a->argc - 3, a->argv + 3, a->argl + 3};
    const struct command *cmd = command_find(inner.argv[0], inner.argl[0]);
    if (cmd == NULL || !(cmd->flags & CMD_WRITE)) {
        slot_error(n, slot, "ERR RAFT.REQ wraps a write command: SET, INCR, DEL or EXPIRE");
        return;
    }
    if (!arity_ok(cmd, inner.argc)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "ERR wrong number of arguments for '%s' command", cmd->name);
        slot_error(n, slot, msg);
        return;
    }
    if (n->raft.role != RAFT_LEADER) {
        commands_reply_not_leader(n, &slot->data);
        client_slot_done(n, slot);
        return;
    }
    dispatch_write(n, slot, cmd, &inner, client_id, seq);
}

static bool is_raft_req(const uint8_t *name, size_t len)
{
    return len == 8 && strncasecmp((const char *)name, "raft.req", 8) == 0;
}

bool commands_must_wait(const struct client *c, size_t argc, const uint8_t **argv,
                        const size_t *argl)
{
    if (c->reads_pending == 0)
        return false;
    if (is_raft_req(argv[0], argl[0]))
        return true;
    const struct command *cmd = command_find(argv[0], argl[0]);
    return cmd != NULL && (cmd->flags & CMD_WRITE) && argc > 0;
}

void commands_dispatch(struct node *n, struct client *c, size_t argc, const uint8_t **argv,
                       const size_t *argl)
{
    struct reply_slot *slot = client_slot_new(c);
    if (slot == NULL) {
        c->closing = true;
        return;
    }
    struct args a = {argc, argv, argl};
    bool req = is_raft_req(argv[0], argl[0]);
    const struct command *cmd = req ? NULL : command_find(argv[0], argl[0]);
    /* With a password, AUTH, HELLO and QUIT come first; in protected mode a
     * remote client gets nothing at all. */
    const char *why;
    bool before_auth = cmd != NULL && (cmd->flags & CMD_NOAUTH) && n->opt.requirepass != NULL;
    if (!before_auth && access_check(n, c, &why) != 0) {
        slot_error(n, slot, why);
        return;
    }
    if (req) {
        dispatch_request(n, slot, &a);
        return;
    }
    if (cmd == NULL) {
        reply_unknown(&slot->data, &a);
        client_slot_done(n, slot);
        return;
    }
    if (!arity_ok(cmd, argc)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "ERR wrong number of arguments for '%s' command", cmd->name);
        slot_error(n, slot, msg);
        return;
    }
    if ((cmd->flags & CMD_ADMIN) && !n->opt.admin_commands) {
        char msg[96];
        snprintf(msg, sizeof(msg), "ERR %s is disabled on this node (--admin-commands off)",
                 cmd->name);
        slot_error(n, slot, msg);
        return;
    }
    if (cmd->flags & CMD_DEFERRED) {
        cmd->defer(n, slot, &a);
        return;
    }
    if (cmd->flags & CMD_LOCAL) {
        cmd->run(n, c, &a, &slot->data);
        client_slot_done(n, slot);
        return;
    }
    if (n->raft.role != RAFT_LEADER) {
        commands_reply_not_leader(n, &slot->data);
        client_slot_done(n, slot);
        return;
    }
    if (cmd->flags & CMD_WRITE) {
        dispatch_write(n, slot, cmd, &a, 0, 0);
        return;
    }
    /* A read waits for the connection's earlier writes, so that a
     * connection's commands take effect in the order they were sent. */
    uint64_t read_id = ++n->next_read_id;
    if (pending_read_push(n, read_id, slot, argc, argv, argl, c->last_write_index) != 0) {
        slot_error(n, slot, "ERR out of memory");
        return;
    }
    c->reads_pending++;
    if (raft_read(&n->raft, read_id) != RAFT_OK) {
        struct raft_read_result rr = {.read_id = read_id, .ok = false};
        pending_on_read(n, &rr);
    }
}

/* ------------------------------------------------------------ expiry */

/* Propose deleting key if it is expired at the time stamped into the entry. */
static int propose_sweep(struct node *n, const uint8_t *key, uint32_t klen, uint64_t *index)
{
    static struct kv_cmd kc;
    memset(&kc, 0, sizeof(kc));
    kc.op = KV_OP_SWEEP;
    kc.now_ms = command_stamp(n);
    kc.nargs = 1;
    kc.args[0].p = key;
    kc.args[0].len = klen;
    uint8_t *data;
    uint32_t len;
    uint64_t term;
    if (kv_cmd_encode(&kc, &data, &len) != 0)
        return -1;
    int rc = raft_propose(&n->raft, data, len, index, &term);
    free(data);
    if (rc != RAFT_OK)
        return -1;
    n->sweep_index = *index;
    return 0;
}

static void sweep_one(const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                      uint64_t deadline_ms, void *ctx)
{
    (void)val;
    (void)vlen;
    (void)deadline_ms;
    uint64_t index;
    propose_sweep(ctx, key, klen, &index);
}

/* The leader deletes expired keys through the log, as a Redis master sends
 * DEL to its replicas; followers never expire keys by their own clock. One
 * sweep at a time is in flight. */
void commands_sweep_expired(struct node *n)
{
    uint64_t now = clock_monotonic_ms();
    if (!n->active_expire || n->raft.role != RAFT_LEADER || now < n->next_sweep_ms)
        return;
    n->next_sweep_ms = now + SWEEP_INTERVAL_MS;
    if (kv_count_with_ttl(n->kv) == 0 || n->raft.last_applied < n->sweep_index)
        return;
    kv_foreach_expired(n->kv, commands_now(n), SWEEP_MAX_KEYS, sweep_one, n);
}

/* A read that finds a key expired by this leader's clock but not yet by the
 * log's clock first has the delete committed, then runs. Judged by the
 * leader's clock alone, expiry could go back in time: a leader whose clock
 * runs ahead answers nil, dies before its delete commits, and the next leader
 * (its clock behind) answers the old value. Once the delete is in the log,
 * every later leader agrees. Every read command's arguments are keys. */
int commands_run_read(struct node *n, size_t argc, const uint8_t *const *argv, const size_t *argl,
                      struct buf *out, uint64_t *wait_index)
{
    uint64_t now = commands_now(n);
    uint64_t floor = kv_time_floor(n->kv);
    for (size_t i = 1; i < argc; i++) {
        int64_t left = kv_ttl_ms(n->kv, argv[i], (uint32_t)argl[i], floor);
        if (left < 0 || floor + (uint64_t)left > now)
            continue;
        if (n->raft.role != RAFT_LEADER ||
            propose_sweep(n, argv[i], (uint32_t)argl[i], wait_index) != 0)
            return COMMANDS_READ_NOT_LEADER;
        return COMMANDS_READ_WAIT;
    }
    const struct command *cmd = command_find(argv[0], argl[0]);
    struct args a = {argc, argv, argl};
    cmd->run(n, NULL, &a, out);
    return COMMANDS_READ_DONE;
}

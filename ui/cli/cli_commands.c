/* cli_commands.c - the command table and one handler per command. */
#include "cli_commands.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli_line.h"

#define SUSPEND_MAX_SECONDS 86400

struct cli_command {
    const char *name;
    int min_args; /* not counting the name */
    int max_args;
    const char *usage;
    const char *help;
    enum cli_status (*run)(struct cli_conn *c, int argc, char **argv);
};

static enum cli_status run_connect(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_getleader(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_suspend(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_getval(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_setval(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_incr(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_expire(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_ttl(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_del(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_transfer(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_addnode(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_removenode(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_members(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_latency(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_help(struct cli_conn *c, int argc, char **argv);
static enum cli_status run_quit(struct cli_conn *c, int argc, char **argv);

static const struct cli_command commands[] = {
    {"connect", 1, 2, "connect <id>|<host:port>|<host> <port>", "talk to another node",
     run_connect},
    {"getleader", 0, 0, "getleader", "leader's id and address, or None", run_getleader},
    {"suspend", 1, 1, "suspend <seconds>", "stop the node we talk to for a while", run_suspend},
    {"getval", 1, 1, "getval <key>", "the value, or None", run_getval},
    {"setval", 2, 2, "setval <key> <value>", "set the value (clears a TTL)", run_setval},
    {"incr", 1, 1, "incr <key>", "add 1 (a missing key counts as 0)", run_incr},
    {"expire", 2, 2, "expire <key> <seconds>", "delete in seconds: 1, or 0 if no key", run_expire},
    {"ttl", 1, 1, "ttl <key>", "seconds left; -1 no TTL, -2 no key", run_ttl},
    {"del", 1, CLI_LINE_MAX_WORDS - 1, "del <key> [key ...]", "delete: how many keys there were",
     run_del},
    {"transfer", 1, 1, "transfer <id>", "the leader hands leadership to node id", run_transfer},
    {"addnode", 3, 3, "addnode <id> <peer-url> <client-address>",
     "add a node (started with --join): a learner, then a voter once caught up", run_addnode},
    {"removenode", 1, 1, "removenode <id>", "remove a node from the cluster", run_removenode},
    {"members", 0, 0, "members", "the voters and learners, as the node asked knows them",
     run_members},
    {"latency", 0, 1, "latency [reset]",
     "where the node's last writes spent their time, stage by stage", run_latency},
    {"help", 0, 1, "help [command]", "this list", run_help},
    {"quit", 0, 0, "quit", "leave (also exit, Ctrl-D)", run_quit},
    {"exit", 0, 0, "exit", NULL, run_quit},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const struct cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcasecmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

const char *cli_command_name(size_t i)
{
    return i < NCOMMANDS ? commands[i].name : NULL;
}

void cli_command_help(FILE *out)
{
    fprintf(out, "commands (upper or lower case):\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (commands[i].help != NULL)
            fprintf(out, "  %-39s %s\n", commands[i].usage, commands[i].help);
    fprintf(out, "Requests follow the leader and are retried until the timeout;\n"
                 "a retried write applies once.\n");
}

static enum cli_status usage(const struct cli_command *cmd)
{
    fprintf(stderr, "usage: %s\n", cmd->usage);
    return CLI_USAGE;
}

enum cli_status cli_command_run(struct cli_conn *c, int argc, char **argv)
{
    const struct cli_command *cmd = find_command(argv[0]);
    if (cmd == NULL) {
        fprintf(stderr, "error: unknown command '%s' (try help)\n", argv[0]);
        return CLI_USAGE;
    }
    if (argc - 1 < cmd->min_args || argc - 1 > cmd->max_args)
        return usage(cmd);
    return cmd->run(c, argc, argv);
}

/* Parse a whole decimal integer. Returns 0, or -1 when s is not one. */
static int parse_int(const char *s, long long *out)
{
    if (*s == '\0' || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Print a reply the way the command line shows it: nil as None. */
static enum cli_status print_reply(const struct resp_value *v)
{
    switch (v->type) {
    case RESP_ERROR:
        fprintf(stderr, "error: %s\n", v->str);
        return CLI_FAILED;
    case RESP_NIL:
        printf("None\n");
        break;
    case RESP_SIMPLE:
    case RESP_BULK:
        fwrite(v->str, 1, v->len, stdout);
        putchar('\n');
        break;
    case RESP_INT:
        printf("%" PRId64 "\n", v->integer);
        break;
    case RESP_ARRAY:
        for (size_t i = 0; i < v->n; i++) {
            printf("%zu) ", i + 1);
            enum cli_status s = print_reply(&v->elems[i]);
            if (s != CLI_OK)
                return s;
        }
        break;
    }
    fflush(stdout);
    return CLI_OK;
}

/* Send a request as route allows and print its answer. */
static enum cli_status call_and_print(struct cli_conn *c, enum cli_route route, size_t argc,
                                      const char *const *argv)
{
    size_t argl[CLI_LINE_MAX_WORDS + 4];
    for (size_t i = 0; i < argc; i++)
        argl[i] = strlen(argv[i]);
    struct resp_value reply;
    char err[1024];
    if (cli_conn_call(c, route, argc, argv, argl, &reply, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return CLI_FAILED;
    }
    enum cli_status s = print_reply(&reply);
    resp_value_free(&reply);
    return s;
}

/* A write goes as RAFT.REQ <client-id> <seq> CMD args...: retries reuse the
 * pair, so it applies at most once. The state machine forgets a client id
 * idle for an hour, and knows none whose first request never reached the log
 * (say it was refused for its arguments): it then refuses the request
 * ("unknown client session"). If no attempt of this request can have been
 * applied, it goes again under a fresh client id at seq 1; otherwise its
 * fate is unknown and the user is told so. */
static enum cli_status write_and_print(struct cli_conn *c, size_t argc, const char *const *argv)
{
    for (int round = 0;; round++) {
        char id[24], seq[24];
        snprintf(id, sizeof id, "%" PRIu64, c->client_id);
        snprintf(seq, sizeof seq, "%" PRIu64, cli_conn_next_seq(c));
        const char *req[CLI_LINE_MAX_WORDS + 4] = {"RAFT.REQ", id, seq};
        for (size_t i = 0; i < argc; i++)
            req[3 + i] = argv[i];
        size_t argl[CLI_LINE_MAX_WORDS + 4];
        for (size_t i = 0; i < argc + 3; i++)
            argl[i] = strlen(req[i]);
        struct resp_value reply;
        char err[512];
        if (cli_conn_call(c, CLI_ROUTE_LEADER, argc + 3, req, argl, &reply, err, sizeof err) < 0) {
            fprintf(stderr, "error: %s\n", err);
            return CLI_FAILED;
        }
        bool unknown_session =
            reply.type == RESP_ERROR && strncmp(reply.str, "ERR unknown client session", 26) == 0;
        if (unknown_session && round == 0 && !c->maybe_applied) {
            resp_value_free(&reply);
            if (cli_conn_new_client_id(c) < 0) {
                fprintf(stderr, "error: cannot draw a random client id\n");
                return CLI_FAILED;
            }
            continue;
        }
        if (unknown_session) {
            resp_value_free(&reply);
            fprintf(stderr, "error: the write's fate is unknown: an earlier attempt may have "
                            "been applied, and the cluster no longer knows this client\n");
            if (cli_conn_new_client_id(c) < 0)
                fprintf(stderr, "error: cannot draw a random client id\n");
            return CLI_FAILED;
        }
        enum cli_status s = print_reply(&reply);
        resp_value_free(&reply);
        return s;
    }
}

static enum cli_status run_connect(struct cli_conn *c, int argc, char **argv)
{
    const struct cli_command *cmd = find_command("connect");
    char host[CLUSTER_HOST_MAX];
    int port = 0;
    char err[256];
    int index;
    long long id;

    if (argc == 2 && parse_int(argv[1], &id) == 0) {
        if (id <= 0 || id > UINT32_MAX || (index = cli_conn_find_id(c, (uint32_t)id)) < 0) {
            fprintf(stderr,
                    "error: no node %s is known (give --config FILE, or connect "
                    "<host:port>)\n",
                    argv[1]);
            return CLI_FAILED;
        }
    } else {
        if (argc == 2) {
            if (cluster_parse_hostport(argv[1], host, sizeof host, &port, err, sizeof err) < 0) {
                fprintf(stderr, "error: %s\n", err);
                return usage(cmd);
            }
        } else {
            long long p;
            if (parse_int(argv[2], &p) < 0 || p < 1 || p > 65535) {
                fprintf(stderr, "error: port must be 1-65535, got '%s'\n", argv[2]);
                return usage(cmd);
            }
            snprintf(host, sizeof host, "%s", argv[1]);
            port = (int)p;
        }
        index = cli_conn_add_node(c, 0, host, port);
        if (index < 0) {
            fprintf(stderr, "error: too many nodes known (at most %d)\n", CLI_MAX_NODES);
            return CLI_FAILED;
        }
    }
    cli_conn_select(c, (size_t)index);
    char name[CLI_ADDR_MAX + 32];
    cli_conn_describe(c, name, sizeof name);
    if (cli_conn_open(c, err, sizeof err) < 0) {
        fprintf(stderr, "error: cannot connect to %s: %s\n", name, err);
        return CLI_FAILED;
    }
    printf("connected to %s\n", name);
    fflush(stdout);
    return CLI_OK;
}

/* A one-word request (RAFT.LEADER, RAFT.INFO) to whichever node answers:
 * 0 and the reply, or -1 with the error printed. */
static int call_word(struct cli_conn *c, const char *word, struct resp_value *reply)
{
    const char *req[] = {word};
    size_t argl[] = {strlen(word)};
    char err[1024];
    if (cli_conn_call(c, CLI_ROUTE_ANY, 1, req, argl, reply, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    return 0;
}

static enum cli_status run_getleader(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct resp_value reply;
    if (call_word(c, "RAFT.LEADER", &reply) < 0)
        return CLI_FAILED;
    /* "<id> <host:port>": remember the leader's id for connect <id>. */
    if (reply.type == RESP_BULK) {
        unsigned id;
        char err[256];
        char addr[CLI_ADDR_MAX], host[CLUSTER_HOST_MAX];
        int port;
        if (sscanf(reply.str, "%u %127s", &id, addr) == 2 &&
            cluster_parse_hostport(addr, host, sizeof host, &port, err, sizeof err) == 0)
            cli_conn_add_node(c, id, host, port);
    }
    enum cli_status s = print_reply(&reply);
    resp_value_free(&reply);
    return s;
}

static enum cli_status run_suspend(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    long long seconds;
    if (parse_int(argv[1], &seconds) < 0 || seconds < 1 || seconds > SUSPEND_MAX_SECONDS) {
        fprintf(stderr, "error: seconds must be a whole number from 1 to %d, got '%s'\n",
                SUSPEND_MAX_SECONDS, argv[1]);
        return usage(find_command("suspend"));
    }
    const char *req[] = {"RAFT.SUSPEND", argv[1]};
    return call_and_print(c, CLI_ROUTE_THIS, 2, req);
}

static bool node_id_ok(const char *s, const char *command)
{
    long long id;
    if (parse_int(s, &id) == 0 && id >= 1 && id <= CLUSTER_MAX_NODES)
        return true;
    fprintf(stderr, "error: a node id is a number from 1 to %d, got '%s'\n", CLUSTER_MAX_NODES, s);
    usage(find_command(command));
    return false;
}

static enum cli_status run_transfer(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    if (!node_id_ok(argv[1], "transfer"))
        return CLI_USAGE;
    const char *req[] = {"RAFT.TRANSFER", argv[1]};
    return call_and_print(c, CLI_ROUTE_LEADER, 2, req);
}

static enum cli_status run_addnode(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    if (!node_id_ok(argv[1], "addnode"))
        return CLI_USAGE;
    const char *req[] = {"RAFT.ADDNODE", argv[1], argv[2], argv[3]};
    return call_and_print(c, CLI_ROUTE_LEADER, 4, req);
}

static enum cli_status run_removenode(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    if (!node_id_ok(argv[1], "removenode"))
        return CLI_USAGE;
    const char *req[] = {"RAFT.REMOVENODE", argv[1]};
    return call_and_print(c, CLI_ROUTE_LEADER, 2, req);
}

/* As call_word, for a request answered with text (RAFT.INFO, RAFT.LATENCY):
 * 0 and the text, or -1 with *status set and any other reply printed. */
static int call_word_text(struct cli_conn *c, const char *word, struct resp_value *reply,
                          enum cli_status *status)
{
    if (call_word(c, word, reply) < 0) {
        *status = CLI_FAILED;
        return -1;
    }
    if (reply->type != RESP_BULK) {
        *status = print_reply(reply);
        resp_value_free(reply);
        return -1;
    }
    return 0;
}

/* The value of "name:" in RAFT.INFO text, "" if absent. */
static void info_field(const char *text, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            size_t k = strcspn(p + nl + 1, "\r\n");
            if (k >= len)
                k = len - 1;
            memcpy(out, p + nl + 1, k);
            out[k] = '\0';
            return;
        }
    }
}

static enum cli_status run_members(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct resp_value reply;
    enum cli_status status;
    /* The view of the node asked: a follower may be a little behind. */
    if (call_word_text(c, "RAFT.INFO", &reply, &status) < 0)
        return status;
    char voters[64], learners[64], index[32];
    info_field(reply.str, "members", voters, sizeof voters);
    info_field(reply.str, "learners", learners, sizeof learners);
    info_field(reply.str, "config_index", index, sizeof index);
    printf("members %s\nlearners %s\nconfig #%s\n", voters[0] ? voters : "-",
           learners[0] ? learners : "-", index[0] ? index : "?");
    resp_value_free(&reply);
    return CLI_OK;
}

/* RAFT.LATENCY of the node we talk to, as a table in milliseconds. */
static enum cli_status run_latency(struct cli_conn *c, int argc, char **argv)
{
    if (argc == 2 && strcasecmp(argv[1], "reset") != 0) {
        fprintf(stderr, "usage: latency [reset]\n");
        return CLI_USAGE;
    }
    if (argc == 2) {
        const char *req[] = {"RAFT.LATENCY", "RESET"};
        return call_and_print(c, CLI_ROUTE_ANY, 2, req);
    }
    struct resp_value reply;
    enum cli_status status;
    if (call_word_text(c, "RAFT.LATENCY", &reply, &status) < 0)
        return status;
    static const char *const stages[] = {"sent", "replicated", "synced", "committed", "replied"};
    char role[32], writes[32];
    info_field(reply.str, "role", role, sizeof role);
    info_field(reply.str, "writes", writes, sizeof writes);
    printf("%s, %s writes; ms from the turn that appended each to the log:\n", role, writes);
    printf("  %-11s %8s %8s %8s\n", "stage", "p50", "p99", "max");
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        char name[48], p50[32], p99[32], max[32];
        snprintf(name, sizeof name, "%s_p50_us", stages[i]);
        info_field(reply.str, name, p50, sizeof p50);
        snprintf(name, sizeof name, "%s_p99_us", stages[i]);
        info_field(reply.str, name, p99, sizeof p99);
        snprintf(name, sizeof name, "%s_max_us", stages[i]);
        info_field(reply.str, name, max, sizeof max);
        if (p50[0] != '\0')
            printf("  %-11s %8.2f %8.2f %8.2f\n", stages[i], atof(p50) / 1000, atof(p99) / 1000,
                   atof(max) / 1000);
    }
    resp_value_free(&reply);
    return CLI_OK;
}

static enum cli_status run_getval(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    const char *req[] = {"GET", argv[1]};
    return call_and_print(c, CLI_ROUTE_LEADER, 2, req);
}

static enum cli_status run_setval(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    const char *req[] = {"SET", argv[1], argv[2]};
    return write_and_print(c, 3, req);
}

static enum cli_status run_incr(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    const char *req[] = {"INCR", argv[1]};
    return write_and_print(c, 2, req);
}

static enum cli_status run_expire(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    long long seconds;
    if (parse_int(argv[2], &seconds) < 0) {
        fprintf(stderr, "error: seconds must be a whole number, got '%s'\n", argv[2]);
        return usage(find_command("expire"));
    }
    const char *req[] = {"EXPIRE", argv[1], argv[2]};
    return write_and_print(c, 3, req);
}

static enum cli_status run_ttl(struct cli_conn *c, int argc, char **argv)
{
    (void)argc;
    const char *req[] = {"TTL", argv[1]};
    return call_and_print(c, CLI_ROUTE_LEADER, 2, req);
}

static enum cli_status run_del(struct cli_conn *c, int argc, char **argv)
{
    const char *req[CLI_LINE_MAX_WORDS] = {"DEL"};
    for (int i = 1; i < argc; i++)
        req[i] = argv[i];
    return write_and_print(c, (size_t)argc, req);
}

static enum cli_status run_help(struct cli_conn *c, int argc, char **argv)
{
    (void)c;
    if (argc == 2) {
        const struct cli_command *cmd = find_command(argv[1]);
        if (cmd == NULL) {
            fprintf(stderr, "error: unknown command '%s' (try help)\n", argv[1]);
            return CLI_USAGE;
        }
        printf("usage: %s\n", cmd->usage);
        return CLI_OK;
    }
    cli_command_help(stdout);
    return CLI_OK;
}

static enum cli_status run_quit(struct cli_conn *c, int argc, char **argv)
{
    (void)c;
    (void)argc;
    (void)argv;
    return CLI_QUIT;
}

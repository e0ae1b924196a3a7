/* command.c - the cockpit's commands: parsed from the ':' line or a script,
 * run against the supervisor (faults) or the client (data). Errors go back
 * as messages; nothing here can stop the cockpit but `quit`. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cockpit.h"
#include "record.h"

#define MAX_WORDS 16

struct command {
    const char *name;
    const char *args;
    const char *help;
    int min_args, max_args;
    void (*run)(struct cockpit *ck, int argc, char **argv, struct command_outcome *out);
};

static void fail(struct cockpit *ck, struct command_outcome *out, const char *msg)
{
    out->error = true;
    cockpit_message(ck, true, "%s", msg);
}

/* ------------------------------------------------------------ arguments */

static bool parse_uint(const char *s, unsigned long max, unsigned long *v)
{
    if (!*s || !isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long x = strtoul(s, &end, 10);
    if (errno || *end || x > max)
        return false;
    *v = x;
    return true;
}

static bool parse_double(const char *s, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(x))
        return false;
    *v = x;
    return true;
}

/* A node: its id, or "leader" for the current leader. */
static bool parse_node(struct cockpit *ck, const char *s, uint32_t *id, struct command_outcome *out)
{
    char msg[128];
    if (strcmp(s, "leader") == 0) {
        struct model_view v;
        model_get_view(&ck->model, &v);
        if (!v.leader) {
            fail(ck, out, "there is no leader right now");
            return false;
        }
        *id = v.leader;
        return true;
    }
    unsigned long x;
    if (!parse_uint(s, CLUSTER_MAX_NODES, &x) || !sup_node(&ck->sup, (uint32_t)x)) {
        snprintf(msg, sizeof msg, "'%s' is not a node of this cluster (1-%zu or 'leader')", s,
                 ck->sup.cluster.n);
        fail(ck, out, msg);
        return false;
    }
    *id = (uint32_t)x;
    return true;
}

static void report(struct cockpit *ck, struct command_outcome *out, int rc, const char *err,
                   const char *ok)
{
    if (rc < 0)
        fail(ck, out, err);
    else
        cockpit_message(ck, false, "%s", ok);
}

/* ------------------------------------------------------------ commands */

static void run_suspend(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    uint32_t id;
    double seconds = 0;
    char err[160], ok[64];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    if (argc > 2 && (!parse_double(argv[2], &seconds) || seconds <= 0 || seconds > 3600)) {
        fail(ck, out, "suspend: seconds must be a number between 0 and 3600");
        return;
    }
    snprintf(ok, sizeof ok, "suspended node %u", id);
    report(ck, out, sup_suspend(&ck->sup, id, seconds, ck->now_ms, err, sizeof err), err, ok);
}

static void run_resume(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    char err[160], ok[64];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    snprintf(ok, sizeof ok, "resumed node %u", id);
    report(ck, out, sup_resume(&ck->sup, id, err, sizeof err), err, ok);
}

static void run_kill(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    char err[160], ok[64];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    snprintf(ok, sizeof ok, "killed node %u", id);
    report(ck, out, sup_kill(&ck->sup, id, err, sizeof err), err, ok);
}

static void run_restart(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    char err[160], ok[64];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    snprintf(ok, sizeof ok, "restarting node %u", id);
    report(ck, out, sup_restart(&ck->sup, id, ck->now_ms, err, sizeof err), err, ok);
}

static void run_isolate(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    char err[160], ok[64];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    snprintf(ok, sizeof ok, "isolated node %u", id);
    report(ck, out, sup_isolate(&ck->sup, id, ck->now_ms, err, sizeof err), err, ok);
}

static void run_partition(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    uint32_t groups[CLUSTER_MAX_NODES];
    size_t n = 0;
    char err[160];
    for (int i = 1; i < argc && n < CLUSTER_MAX_NODES; i++) {
        uint32_t mask = 0;
        char word[64];
        snprintf(word, sizeof word, "%s", argv[i]);
        for (char *save = NULL, *tok = strtok_r(word, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            uint32_t id;
            if (!parse_node(ck, tok, &id, out))
                return;
            mask |= 1u << id;
        }
        if (!mask) {
            fail(ck, out, "partition: empty group (write groups as 1,2 3,4,5)");
            return;
        }
        groups[n++] = mask;
    }
    report(ck, out, sup_partition(&ck->sup, groups, n, ck->now_ms, err, sizeof err), err,
           "partitioned the network");
}

static void run_heal(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    (void)argv;
    (void)out;
    sup_heal(&ck->sup, ck->now_ms);
    cockpit_message(ck, false, "healed the network");
}

/* ------------------------------------------------------------ the wire, frozen */

static void run_freeze(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    (void)argv;
    if (ck->sup.frozen) {
        fail(ck, out, "the cluster is frozen already (:thaw lets time run)");
        return;
    }
    sup_freeze(&ck->sup, true, ck->now_ms);
    cockpit_message(ck, false, "frozen: n delivers the oldest held message, x drops it");
}

static void run_thaw(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    (void)argv;
    if (!ck->sup.frozen) {
        fail(ck, out, "the cluster is not frozen (:freeze stops it)");
        return;
    }
    sup_freeze(&ck->sup, false, ck->now_ms);
    cockpit_message(ck, false, "thawed: time runs again");
}

/* Take held message wm off the list: tell its receiver to deliver or drop it. */
static int release_one(struct cockpit *ck, struct wire_msg *wm, bool deliver,
                       struct command_outcome *out)
{
    char err[160];
    if (sup_release(&ck->sup, wm->rec.to, wm->rec.from, wm->rec.id, deliver, err, sizeof err) < 0) {
        fail(ck, out, err);
        return -1;
    }
    /* Off the held list now, so the next key picks the next one; the node's
     * own report confirms it. */
    wm->state = deliver ? WMSG_DELIVERED : WMSG_DROPPED;
    wm->sent_ms = wm->done_ms = ck->now_ms;
    return 0;
}

/* Deliver or drop held message `number` (1 = the oldest held), or "all". */
static void release_held(struct cockpit *ck, const char *number, bool deliver,
                         struct command_outcome *out)
{
    const char *verb = deliver ? "deliver" : "drop";
    char msg[WIRE_TEXT + 96];
    if (!ck->sup.frozen) {
        snprintf(msg, sizeof msg, "%s N works on a frozen cluster (:freeze first)", verb);
        fail(ck, out, msg);
        return;
    }
    static uint64_t held[WIRE_MSGS];
    size_t n = wire_held(&ck->model.wire, held, WIRE_MSGS);
    if (strcmp(number, "all") == 0) {
        size_t done = 0;
        while (done < n &&
               release_one(ck, &ck->model.wire.msgs[held[done] % WIRE_MSGS], deliver, out) == 0)
            done++;
        model_event(&ck->model, EV_FAULT, "%s by hand: all %zu held message%s",
                    deliver ? "delivered" : "dropped", done, done == 1 ? "" : "s");
        if (!out->error)
            cockpit_message(ck, false, "%s %zu held message%s", deliver ? "delivered" : "dropped",
                            done, done == 1 ? "" : "s");
        return;
    }
    unsigned long k;
    if (!parse_uint(number, WIRE_MSGS, &k) || k < 1 || k > n) {
        if (n == 0)
            snprintf(msg, sizeof msg, "no message is held right now");
        else
            snprintf(msg, sizeof msg, "%s: give a held message's number, 1-%zu, or all", verb, n);
        fail(ck, out, msg);
        return;
    }
    struct wire_msg *wm = &ck->model.wire.msgs[held[k - 1] % WIRE_MSGS];
    char text[WIRE_TEXT];
    if (release_one(ck, wm, deliver, out) < 0)
        return;
    wire_text(&wm->rec, false, text, sizeof text);
    model_event(&ck->model, EV_FAULT, "%s by hand: %s", deliver ? "delivered" : "dropped", text);
    cockpit_message(ck, false, "%s %s", deliver ? "delivered" : "dropped", text);
}

static void run_deliver(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    release_held(ck, argc > 1 ? argv[1] : "1", true, out);
}

static void run_tick(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    unsigned long ms;
    char err[160], ok[96];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    if (!parse_uint(argv[2], 60000, &ms) || ms == 0) {
        fail(ck, out, "tick: give milliseconds of the node's time, 1-60000");
        return;
    }
    if (sup_tick_node(&ck->sup, id, (uint32_t)ms, err, sizeof err) < 0) {
        fail(ck, out, err);
        return;
    }
    model_event(&ck->model, EV_FAULT, "advanced node %u's clock by %lu ms", id, ms);
    snprintf(ok, sizeof ok, "node %u's clock moved %lu ms", id, ms);
    cockpit_message(ck, false, "%s", ok);
}

static void run_wire(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    bool heartbeats = strcmp(argv[1], "heartbeats") == 0;
    const char *word = heartbeats ? (argc > 2 ? argv[2] : "") : argv[1];
    bool on = strcmp(word, "on") == 0;
    if ((!on && strcmp(word, "off") != 0) || (!heartbeats && argc > 2)) {
        fail(ck, out, "usage: wire on|off, or wire heartbeats on|off");
        return;
    }
    if (heartbeats) {
        ck->model.wire.hide_heartbeats = !on;
        cockpit_message(ck, false, "heartbeats %s in the wire panel", on ? "shown" : "hidden");
        return;
    }
    ck->ui.wire_hidden = !on;
    sup_wire(&ck->sup, on, ck->now_ms);
    cockpit_message(ck, false, "%s",
                    on ? "wire panel on: nodes report their messages"
                       : "wire panel off: nodes stop reporting their messages");
}

static void run_drop(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    unsigned long pct;
    /* Frozen, "drop N" drops held message N; "drop 30%" is always loss. */
    if (ck->sup.frozen && !strchr(argv[1], '%')) {
        release_held(ck, argv[1], false, out);
        return;
    }
    char err[160], ok[64];
    const char *word = argv[1];
    char tmp[32];
    size_t len = strlen(word);
    if (len && len < sizeof tmp && word[len - 1] == '%') { /* "drop 20%" */
        memcpy(tmp, word, len - 1);
        tmp[len - 1] = '\0';
        word = tmp;
    }
    if (!parse_uint(word, 100, &pct)) {
        fail(ck, out, "drop: give a percent between 0 and 100");
        return;
    }
    snprintf(ok, sizeof ok, "every node loses %lu%% of its messages", pct);
    report(ck, out, sup_drop(&ck->sup, (uint32_t)pct, ck->now_ms, err, sizeof err), err, ok);
}

static void run_delay(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    unsigned long ms;
    char err[160], ok[64];
    if (!parse_uint(argv[1], 60000, &ms)) {
        fail(ck, out, "delay: give milliseconds between 0 and 60000");
        return;
    }
    snprintf(ok, sizeof ok, "every message is held %lu ms", ms);
    report(ck, out, sup_delay(&ck->sup, (uint32_t)ms, ck->now_ms, err, sizeof err), err, ok);
}

static void run_timeout(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    char err[160], ok[64];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    /* Sent even when it looks like the leader: the model may be a moment behind. */
    const struct model_node *n = model_node_const(&ck->model, id);
    if (n && model_role_of(&ck->model, n) == ROLE_LEADER) {
        snprintf(ok, sizeof ok, "node %u looks like the leader: a leader ignores timeouts", id);
        report(ck, out, sup_timeout(&ck->sup, id, ck->now_ms, err, sizeof err), err, ok);
        return;
    }
    snprintf(ok, sizeof ok, "node %u starts an election", id);
    report(ck, out, sup_timeout(&ck->sup, id, ck->now_ms, err, sizeof err), err, ok);
}

static void run_speed(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    double x;
    char err[160], ok[64];
    if (!parse_double(argv[1], &x)) {
        fail(ck, out, "speed: give a factor such as 0.1 (slow) or 1 (real time)");
        return;
    }
    snprintf(ok, sizeof ok, "speed %g", x);
    report(ck, out, sup_speed(&ck->sup, x, ck->now_ms, err, sizeof err), err, ok);
}

static void run_pause(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    (void)argv;
    (void)out;
    ck->ui.paused = !ck->ui.paused;
    cockpit_message(ck, false, "%s",
                    ck->ui.paused ? "display paused (the cluster runs on)" : "display resumed");
}

static void run_screenshot(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    char written[2 * UI_LINE_MAX], err[256];
    if (!ck->ui.active) {
        fail(ck, out, "screenshot needs the screen: run without --headless");
        return;
    }
    draw_screen(ck); /* what is on screen now, not a moment ago */
    if (screenshot_write(ck, argc > 1 ? argv[1] : NULL, written, sizeof written, err, sizeof err) <
        0) {
        fail(ck, out, err);
        return;
    }
    model_event(&ck->model, EV_INFO, "screenshot written: %s", written);
    cockpit_message(ck, false, "wrote %s", written);
}

static void run_help(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    (void)argv;
    (void)out;
    if (ck->ui.active) {
        ck->ui.mode = UI_HELP;
        ck->ui.help_top = 0;
        return;
    }
    const char *lines[64];
    size_t n = command_help_lines(lines, 64);
    printf("commands:\n");
    for (size_t i = 0; i < n; i++)
        printf("%s\n", lines[i]);
    fflush(stdout);
}

static void run_quit(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    (void)argv;
    (void)out;
    ck->quit = true;
}

static void submit_client(struct cockpit *ck, int argc, char **argv, uint32_t only_node,
                          struct command_outcome *out)
{
    char err[160];
    int id = client_submit(&ck->client, (size_t)argc, argv, only_node, err, sizeof err);
    if (id < 0) {
        fail(ck, out, err);
        return;
    }
    out->client_op = id;
    out->direct = only_node != 0;
    if (ck->sup.frozen) {
        model_event(&ck->model, EV_CLIENT,
                    "the cluster is frozen: client command '%s' waits until :thaw", argv[0]);
        cockpit_message(ck, false, "%s waits: the cluster is frozen (:thaw)", argv[0]);
        return;
    }
    if (only_node)
        cockpit_message(ck, false, "%s: asking node %u only...", argv[0], only_node);
    else
        cockpit_message(ck, false, "%s: asking the leader...", argv[0]);
}

/* snapshot N: node N (or the leader) takes a snapshot now and compacts its
 * log (RAFT.SNAPSHOT); the event log narrates it. */
static void run_snapshot(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    if (!parse_node(ck, argv[1], &id, out))
        return;
    char *request[] = {"raft.snapshot"};
    submit_client(ck, 1, request, id, out);
}

/* transfer N: the leader hands leadership to node N (RAFT.TRANSFER). */
static void run_transfer(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    if (!parse_node(ck, argv[1], &id, out))
        return;
    char target[16];
    snprintf(target, sizeof target, "%u", id);
    char *request[] = {"raft.transfer", target};
    submit_client(ck, 2, request, 0, out);
}

/* add: a new node process with --join (the next free id), then RAFT.ADDNODE
 * at the leader: a learner until it catches up, then a voter. */
static void run_add(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    (void)argv;
    uint32_t id;
    char err[256];
    if (sup_add_node(&ck->sup, ck->now_ms, &id, err, sizeof err) < 0) {
        fail(ck, out, err);
        return;
    }
    const struct cluster_node *c = cluster_find(&ck->sup.cluster, id);
    char ids[16], peer[CLUSTER_URL_MAX], client[CLUSTER_HOST_MAX + 8];
    snprintf(ids, sizeof ids, "%u", id);
    snprintf(peer, sizeof peer, "%s", c->peer_url);
    snprintf(client, sizeof client, "%s", c->client_addr);
    char *request[] = {"raft.addnode", ids, peer, client};
    submit_client(ck, 4, request, 0, out);
}

/* remove N: RAFT.REMOVENODE at the leader; once the configuration leaves
 * node N out, its process is stopped and its card goes. */
static void run_remove(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    uint32_t id;
    char err[160];
    if (!parse_node(ck, argv[1], &id, out))
        return;
    if (sup_remove_node(&ck->sup, id, err, sizeof err) < 0) {
        fail(ck, out, err);
        return;
    }
    char ids[16];
    snprintf(ids, sizeof ids, "%u", id);
    char *request[] = {"raft.removenode", ids};
    submit_client(ck, 2, request, 0, out);
}

/* "on" / "off": 1 / 0, -1 otherwise. */
static int parse_on_off(const char *s)
{
    return strcmp(s, "on") == 0 ? 1 : strcmp(s, "off") == 0 ? 0 : -1;
}

static void run_prevote(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    char err[160];
    int on = parse_on_off(argv[1]);
    if (on < 0) {
        fail(ck, out, "prevote: say on or off");
        return;
    }
    report(ck, out, sup_raft_options(&ck->sup, on, -1, ck->now_ms, err, sizeof err), err,
           on ? "pre-vote on at every node" : "pre-vote off at every node");
}

static void run_checkquorum(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    (void)argc;
    char err[160];
    int on = parse_on_off(argv[1]);
    if (on < 0) {
        fail(ck, out, "checkquorum: say on or off");
        return;
    }
    report(ck, out, sup_raft_options(&ck->sup, -1, on, ck->now_ms, err, sizeof err), err,
           on ? "check-quorum on at every node" : "check-quorum off at every node");
}

static void run_on(struct cockpit *ck, int argc, char **argv, struct command_outcome *out)
{
    uint32_t id;
    if (!parse_node(ck, argv[1], &id, out))
        return;
    submit_client(ck, argc - 2, argv + 2, id, out);
}

static const struct command commands[] = {
    {"suspend", "N [seconds]", "stop node N (SIGSTOP), for a while if seconds given", 1, 2,
     run_suspend},
    {"resume", "N", "continue a suspended node (SIGCONT)", 1, 1, run_resume},
    {"kill", "N", "kill node N (SIGKILL); its data dir stays", 1, 1, run_kill},
    {"restart", "N", "start node N again from its data dir", 1, 1, run_restart},
    {"isolate", "N", "cut node N off from every other node", 1, 1, run_isolate},
    {"partition", "1,2 3,4,5", "split the network into groups", 1, CLUSTER_MAX_NODES,
     run_partition},
    {"heal", "", "end partitions, message loss and delays", 0, 0, run_heal},
    {"drop", "PERCENT|N", "every node loses this share of its messages; frozen: drop held N|all", 1,
     1, run_drop},
    {"delay", "MS", "every node holds its messages this long", 1, 1, run_delay},
    {"timeout", "N", "make node N start an election now", 1, 1, run_timeout},
    {"speed", "X", "node timers run at factor X (0.1 = ten times slower)", 1, 1, run_speed},
    {"freeze", "", "stop every node's clock and hold every peer message", 0, 0, run_freeze},
    {"thaw", "", "deliver what is held and let time run again", 0, 0, run_thaw},
    {"deliver", "[N|all]", "frozen: deliver held message N (default 1, the oldest)", 0, 1,
     run_deliver},
    {"tick", "N MS", "advance node N's clock by MS ms of its own time", 2, 2, run_tick},
    {"wire", "on|off", "the wire panel; 'wire heartbeats off' hides heartbeats", 1, 2, run_wire},
    {"pause", "", "freeze or unfreeze the display", 0, 0, run_pause},
    {"screenshot", "[FILE]", "write the screen to FILE.txt and FILE.svg", 0, 1, run_screenshot},
    {"snapshot", "N", "node N takes a snapshot now and compacts its log", 1, 1, run_snapshot},
    {"transfer", "N", "the leader hands leadership to node N", 1, 1, run_transfer},
    {"add", "", "start a new node and add it (a learner, then a voter once caught up)", 0, 0,
     run_add},
    {"remove", "N", "remove node N from the cluster (its process stops)", 1, 1, run_remove},
    {"prevote", "on|off", "Pre-Vote at every node (a timed-out node asks first)", 1, 1,
     run_prevote},
    {"checkquorum", "on|off", "CheckQuorum at every node (a cut-off leader steps down)", 1, 1,
     run_checkquorum},
    {"on", "N COMMAND ...", "send a client command to node N only, no retries", 2, 6, run_on},
    {"help", "", "show keys and commands", 0, 1, run_help},
    {"quit", "", "stop every node and leave", 0, 0, run_quit},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* Split a line into words; "double quotes" keep spaces. Returns the count, or
 * -1 for an unclosed quote. */
static int split_words(char *line, char **words, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            return n;
        if (n == max)
            return n;
        if (*p == '"') {
            char *start = ++p;
            while (*p && *p != '"')
                p++;
            if (!*p)
                return -1;
            *p++ = '\0';
            words[n++] = start;
        } else {
            words[n++] = p;
            while (*p && !isspace((unsigned char)*p))
                p++;
            if (*p)
                *p++ = '\0';
        }
    }
}

void command_run(struct cockpit *ck, const char *line, struct command_outcome *out)
{
    memset(out, 0, sizeof *out);
    if (ck->recorder != NULL)
        record_command(ck->recorder, ck->now_ms, line);
    char copy[UI_LINE_MAX];
    char *words[MAX_WORDS];
    snprintf(copy, sizeof copy, "%s", line);
    int argc = split_words(copy, words, MAX_WORDS);
    if (argc < 0) {
        fail(ck, out, "a quote is not closed");
        return;
    }
    if (argc == 0)
        return;
    for (char *p = words[0]; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (client_command_find(words[0])) {
        submit_client(ck, argc, words, 0, out);
        return;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->name, words[0]) != 0)
            continue;
        if (argc - 1 < c->min_args || argc - 1 > c->max_args) {
            char msg[128];
            snprintf(msg, sizeof msg, "usage: %s %s", c->name, c->args);
            fail(ck, out, msg);
            return;
        }
        c->run(ck, argc, words, out);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "unknown command '%s' (help lists them)", words[0]);
    fail(ck, out, msg);
}

/* ------------------------------------------------------------ completion, history */

static const char *name_at(size_t i)
{
    if (i < N_COMMANDS)
        return commands[i].name;
    const struct client_command *c = client_command_at(i - N_COMMANDS);
    return c ? c->name : NULL;
}

size_t command_complete(struct cockpit *ck, char *line, size_t size, size_t *len, char *shown,
                        size_t shown_size)
{
    (void)ck;
    shown[0] = '\0';
    line[*len] = '\0';
    if (strchr(line, ' '))
        return 0; /* only command names are completed */
    const char *first = NULL;
    size_t matches = 0, common = 0, used = 0;
    for (size_t i = 0; name_at(i); i++) {
        const char *name = name_at(i);
        if (strncmp(name, line, *len) != 0)
            continue;
        if (!first) {
            first = name;
            common = strlen(name);
        } else {
            size_t k = 0;
            while (k < common && first[k] == name[k])
                k++;
            common = k;
        }
        matches++;
        if (used + strlen(name) + 2 < shown_size)
            used +=
                (size_t)snprintf(shown + used, shown_size - used, "%s%s", used ? " " : "", name);
    }
    if (!matches)
        return 0;
    if (common + 2 < size) {
        memcpy(line, first, common);
        *len = common;
        if (matches == 1)
            line[(*len)++] = ' ';
        line[*len] = '\0';
    }
    if (matches == 1)
        shown[0] = '\0';
    return matches;
}

void command_history_add(struct cockpit *ck, const char *line)
{
    struct ui_state *ui = &ck->ui;
    if (!*line)
        return;
    if (ui->n_history && strcmp(ui->history[ui->n_history - 1], line) == 0) {
        ui->history_pos = ui->n_history;
        return;
    }
    if (ui->n_history == UI_HISTORY) {
        memmove(ui->history[0], ui->history[1], sizeof ui->history[0] * (UI_HISTORY - 1));
        ui->n_history--;
    }
    snprintf(ui->history[ui->n_history++], UI_LINE_MAX, "%s", line);
    ui->history_pos = ui->n_history;
}

size_t command_help_lines(const char **lines, size_t max)
{
    static char text[N_COMMANDS + 16][96];
    size_t n = 0;
    for (size_t i = 0; name_at(i) && n < max && n < sizeof text / sizeof text[0]; i++) {
        if (i < N_COMMANDS) {
            char head[40];
            snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].args);
            snprintf(text[n], sizeof text[n], "  %-24s %s", head, commands[i].help);
        } else {
            const struct client_command *c = client_command_at(i - N_COMMANDS);
            snprintf(text[n], sizeof text[n], "  %-24s %s", c->usage, c->help);
        }
        lines[n] = text[n];
        n++;
    }
    return n;
}

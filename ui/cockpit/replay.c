/* replay.c - `raftkv --replay FILE`: a recording (record.c) shown again
 * without starting any node. The lines feed the same model the live
 * cockpit has (statuses, wire records, process changes); events come from
 * the recording itself, so they are the lines that were seen. Seeking back
 * replays from the start: a model is cheap to rebuild.
 *
 * Keys: space pause, +/- speed (faster than real too), [ ] previous / next
 * event, { } ten seconds back / on, g go to a time, P screenshot, w wire
 * panel, q quit. --headless prints the event lines and exits.
 */
#include "replay.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <ncurses.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonl.h"
#include "record.h"

#define REPLAY_DRAW_MS 80
#define REPLAY_SEEK_MS 10000

enum replay_kind { RK_STATUS, RK_SEEN, RK_MSG, RK_EVENT, RK_PROCESS, RK_COMMAND };

struct replay_item {
    uint64_t t_ms;
    enum replay_kind kind;
    uint32_t node;
    uint8_t *pb; /* RK_STATUS: the packed Status */
    size_t pb_len;
    struct wire_rec rec;         /* RK_MSG */
    int event_kind;              /* RK_EVENT */
    uint64_t wall_ms;            /* RK_EVENT */
    char *text;                  /* RK_EVENT, RK_COMMAND */
    int process, pid, exit_code; /* RK_PROCESS */
    uint32_t elapsed;            /* RK_SEEN */
};

struct replay {
    char *path;
    struct replay_item *items;
    size_t n, cap;
    uint64_t start_wall;
    double speed_recorded;
    struct cluster cluster;
    char cluster_path[1024];
    uint64_t duration_ms;

    /* Playing. */
    size_t pos;    /* items applied: [0, pos) */
    uint64_t t_ms; /* where the replay is */
    double speed;  /* replay speed: 1 = as recorded */
    bool paused;
    bool going; /* typing a time after 'g' */
    char goto_text[32];
    char last_command[UI_LINE_MAX];
};

/* ------------------------------------------------------------ loading */

static int replay_fail(char *err, size_t errlen, const char *path, size_t lineno, const char *what)
{
    snprintf(err, errlen, "%s:%zu: %s", path, lineno, what);
    return -1;
}

static const char *const process_names[] = {"not started", "running", "stopped", "exited"};

static int replay_parse_cluster(struct replay *rp, const char *ids, const char *clients)
{
    char a[256], b[CLUSTER_MAX_NODES * (CLUSTER_HOST_MAX + 10)];
    snprintf(a, sizeof a, "%s", ids);
    snprintf(b, sizeof b, "%s", clients);
    char *sa = NULL, *sb = NULL;
    char *id = strtok_r(a, " ", &sa), *client = strtok_r(b, " ", &sb);
    rp->cluster.n = 0;
    while (id != NULL) {
        if (rp->cluster.n == CLUSTER_MAX_NODES || client == NULL)
            return -1;
        char *end;
        long v = strtol(id, &end, 10);
        if (*end || v < 1 || v > CLUSTER_MAX_NODES)
            return -1;
        struct cluster_node *cn = &rp->cluster.nodes[rp->cluster.n++];
        cn->id = (uint32_t)v;
        snprintf(cn->client_addr, sizeof cn->client_addr, "%s", client);
        char *colon = strrchr(client, ':');
        if (colon == NULL)
            return -1;
        *colon = '\0';
        snprintf(cn->client_host, sizeof cn->client_host, "%s", client);
        cn->client_port = atoi(colon + 1);
        id = strtok_r(NULL, " ", &sa);
        client = strtok_r(NULL, " ", &sb);
    }
    return rp->cluster.n > 0 ? 0 : -1;
}

static struct replay_item *replay_new_item(struct replay *rp)
{
    if (rp->n == rp->cap) {
        size_t cap = rp->cap ? rp->cap * 2 : 1024;
        struct replay_item *p = realloc(rp->items, cap * sizeof *p);
        if (p == NULL)
            return NULL;
        rp->items = p;
        rp->cap = cap;
    }
    struct replay_item *it = &rp->items[rp->n++];
    memset(it, 0, sizeof *it);
    return it;
}

/* The fields of a "msg" line into a wire record. */
static bool replay_msg(const struct jsonl_object *o, struct wire_rec *r)
{
    uint64_t v;
    struct {
        const char *key;
        bool required;
        uint64_t *u64;
        uint32_t *u32;
        bool *b;
    } fields[] = {
        {"node", true, NULL, &r->node, NULL},
        {"ev", true, NULL, &r->event, NULL},
        {"type", true, NULL, &r->type, NULL},
        {"from", true, NULL, &r->from, NULL},
        {"to", true, NULL, &r->to, NULL},
        {"id", true, &r->id, NULL, NULL},
        {"term", true, &r->term, NULL, NULL},
        {"lost", false, NULL, &r->lost, NULL},
        {"last_log_index", false, &r->last_log_index, NULL, NULL},
        {"last_log_term", false, &r->last_log_term, NULL, NULL},
        {"granted", false, NULL, NULL, &r->granted},
        {"leader_hint", false, NULL, &r->leader_hint, NULL},
        {"leader_ago_ms", false, &r->leader_ago_ms, NULL, NULL},
        {"prev_index", false, &r->prev_index, NULL, NULL},
        {"prev_term", false, &r->prev_term, NULL, NULL},
        {"commit", false, &r->commit, NULL, NULL},
        {"n_entries", false, NULL, &r->n_entries, NULL},
        {"success", false, NULL, NULL, &r->success},
        {"match_index", false, &r->match_index, NULL, NULL},
        {"rejected_index", false, &r->rejected_index, NULL, NULL},
        {"hint_index", false, &r->hint_index, NULL, NULL},
        {"hint_term", false, &r->hint_term, NULL, NULL},
        {"snapshot_index", false, &r->snapshot_index, NULL, NULL},
        {"snapshot_term", false, &r->snapshot_term, NULL, NULL},
        {"offset", false, &r->offset, NULL, NULL},
        {"next_offset", false, &r->next_offset, NULL, NULL},
        {"done", false, NULL, NULL, &r->done},
        {"heartbeat", false, NULL, NULL, &r->heartbeat},
        {"count", false, NULL, &r->count, NULL},
    };
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        bool b;
        if (fields[i].b != NULL && jsonl_get_bool(o, fields[i].key, &b)) {
            *fields[i].b = b;
            continue;
        }
        if (!jsonl_get_u64(o, fields[i].key, &v)) {
            if (fields[i].required)
                return false;
            continue;
        }
        if (fields[i].u64)
            *fields[i].u64 = v;
        else if (fields[i].u32)
            *fields[i].u32 = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
        else
            *fields[i].b = v != 0;
    }
    return true;
}

/* One line into an item. 0, or -1 with why. */
static int replay_line(struct replay *rp, struct jsonl_object *o, size_t lineno, char *why,
                       size_t whylen)
{
    double t;
    const char *kind;
    if (!jsonl_get_num(o, "t", &t) || t < 0 || t > 1e9 || !jsonl_get_str(o, "k", &kind)) {
        snprintf(why, whylen, "every line needs \"t\" (seconds, >= 0) and \"k\" (its kind)");
        return -1;
    }
    uint64_t t_ms = (uint64_t)(t * 1000.0 + 0.5);
    if (lineno == 1) {
        uint64_t format;
        const char *ids, *clients, *cluster_file = "";
        double speed = 1;
        if (strcmp(kind, "start") != 0 || !jsonl_get_u64(o, "format", &format) ||
            !jsonl_get_u64(o, "wall", &rp->start_wall) || !jsonl_get_str(o, "nodes", &ids) ||
            !jsonl_get_str(o, "clients", &clients)) {
            snprintf(why, whylen,
                     "the first line must be the \"start\" line (format, wall, nodes, clients): "
                     "is this a raftkv recording?");
            return -1;
        }
        if (format != RECORD_FORMAT) {
            snprintf(why, whylen, "recording format %" PRIu64 ", this raftkv reads format %d",
                     format, RECORD_FORMAT);
            return -1;
        }
        jsonl_get_str(o, "cluster_file", &cluster_file);
        jsonl_get_num(o, "speed", &speed);
        snprintf(rp->cluster_path, sizeof rp->cluster_path, "%s", cluster_file);
        rp->speed_recorded = speed;
        if (replay_parse_cluster(rp, ids, clients) != 0) {
            snprintf(why, whylen, "\"nodes\" and \"clients\" must list the same nodes");
            return -1;
        }
        return 0;
    }
    if (rp->n > 0 && t_ms < rp->items[rp->n - 1].t_ms) {
        snprintf(why, whylen, "time goes backwards (%.3f after %.3f)", t,
                 (double)rp->items[rp->n - 1].t_ms / 1000.0);
        return -1;
    }
    struct replay_item *it = replay_new_item(rp);
    if (it == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    it->t_ms = t_ms;
    uint64_t node = 0;
    bool has_node = jsonl_get_u64(o, "node", &node);
    if (has_node && (node < 1 || !cluster_find(&rp->cluster, (uint32_t)node))) {
        snprintf(why, whylen, "node %" PRIu64 " is not in the \"start\" line's nodes", node);
        return -1;
    }
    it->node = (uint32_t)node;
    const char *text;
    if (strcmp(kind, "status") == 0) {
        const char *pb;
        if (!has_node || !jsonl_get_str(o, "pb", &pb)) {
            snprintf(why, whylen, "a status needs \"node\" and \"pb\"");
            return -1;
        }
        it->kind = RK_STATUS;
        it->pb = malloc(strlen(pb) * 3 / 4 + 4);
        long len = it->pb ? jsonl_base64_decode(pb, it->pb) : -1;
        Raftkv__Status *st = len >= 0 ? raftkv__status__unpack(NULL, (size_t)len, it->pb) : NULL;
        if (st == NULL || st->id != node) {
            if (st)
                raftkv__status__free_unpacked(st, NULL);
            snprintf(why, whylen, "\"pb\" is not node %" PRIu64 "'s Status (base64 protobuf)",
                     node);
            return -1;
        }
        raftkv__status__free_unpacked(st, NULL);
        it->pb_len = (size_t)len;
    } else if (strcmp(kind, "seen") == 0) {
        uint64_t elapsed = 0;
        if (!has_node) {
            snprintf(why, whylen, "\"seen\" needs \"node\"");
            return -1;
        }
        jsonl_get_u64(o, "elapsed", &elapsed);
        it->kind = RK_SEEN;
        it->elapsed = elapsed > UINT32_MAX ? UINT32_MAX : (uint32_t)elapsed;
    } else if (strcmp(kind, "msg") == 0) {
        it->kind = RK_MSG;
        if (!replay_msg(o, &it->rec)) {
            snprintf(why, whylen, "a msg needs node, ev, type, from, to, id and term (numbers)");
            return -1;
        }
    } else if (strcmp(kind, "event") == 0) {
        const char *k;
        if (!jsonl_get_str(o, "text", &text) || !jsonl_get_str(o, "kind", &k) ||
            !jsonl_get_u64(o, "wall", &it->wall_ms)) {
            snprintf(why, whylen, "an event needs \"kind\", \"wall\" and \"text\"");
            return -1;
        }
        it->kind = RK_EVENT;
        it->event_kind = model_event_kind_parse(k);
        if (it->event_kind < 0) {
            snprintf(why, whylen, "unknown event kind '%.40s'", k);
            return -1;
        }
        it->text = strdup(text);
    } else if (strcmp(kind, "process") == 0) {
        const char *state;
        double pid = 0, code = 0;
        if (!has_node || !jsonl_get_str(o, "state", &state)) {
            snprintf(why, whylen, "a process line needs \"node\" and \"state\"");
            return -1;
        }
        it->kind = RK_PROCESS;
        it->process = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(state, process_names[i]) == 0)
                it->process = i;
        if (it->process < 0) {
            snprintf(why, whylen, "unknown process state '%.40s'", state);
            return -1;
        }
        jsonl_get_num(o, "pid", &pid);
        jsonl_get_num(o, "exit", &code);
        it->pid = (int)pid;
        it->exit_code = (int)code;
    } else if (strcmp(kind, "command") == 0) {
        if (!jsonl_get_str(o, "text", &text)) {
            snprintf(why, whylen, "a command needs \"text\"");
            return -1;
        }
        it->kind = RK_COMMAND;
        it->text = strdup(text);
    } else {
        snprintf(why, whylen, "unknown kind '%.40s'", kind);
        return -1;
    }
    if ((it->kind == RK_EVENT || it->kind == RK_COMMAND) && it->text == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

static void replay_free(struct replay *rp)
{
    if (rp == NULL)
        return;
    for (size_t i = 0; i < rp->n; i++) {
        free(rp->items[i].pb);
        free(rp->items[i].text);
    }
    free(rp->items);
    free(rp->path);
    free(rp);
}

struct replay *replay_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    struct replay *rp = calloc(1, sizeof *rp);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int rc = rp && (rp->path = strdup(path)) ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory reading %s", path);
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len > JSONL_LINE_MAX) {
            rc = replay_fail(err, errlen, path, lineno, "line too long");
            break;
        }
        if (memchr(line, '\0', (size_t)len) != NULL) {
            rc = replay_fail(err, errlen, path, lineno, "a NUL byte: not a text file");
            break;
        }
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' && lineno > 1)
            continue; /* blank lines are fine */
        static struct jsonl_object o;
        char why[256];
        if (jsonl_parse(line, &o, why, sizeof why) != 0 ||
            replay_line(rp, &o, lineno, why, sizeof why) != 0)
            rc = replay_fail(err, errlen, path, lineno, why);
    }
    if (rc == 0 && ferror(f))
        rc = replay_fail(err, errlen, path, lineno, strerror(errno));
    if (rc == 0 && lineno == 0)
        rc = replay_fail(err, errlen, path, 1, "empty file: not a raftkv recording");
    free(line);
    fclose(f);
    if (rc != 0) {
        replay_free(rp);
        return NULL;
    }
    rp->duration_ms = rp->n ? rp->items[rp->n - 1].t_ms : 0;
    rp->speed = 1;
    return rp;
}

/* ------------------------------------------------------------ playing */

static void replay_time(struct cockpit *ck, struct replay *rp, uint64_t t_ms)
{
    model_set_time(&ck->model, t_ms + 1, rp->start_wall + t_ms);
}

static void replay_reset(struct cockpit *ck, struct replay *rp)
{
    bool hide = ck->model.wire.hide_heartbeats;
    model_free(&ck->model);
    model_init(&ck->model, &rp->cluster);
    ck->model.replay = true;
    ck->model.wire.hide_heartbeats = hide;
    rp->pos = 0;
    rp->last_command[0] = '\0';
}

static void replay_apply(struct cockpit *ck, struct replay *rp, const struct replay_item *it)
{
    struct model *m = &ck->model;
    replay_time(ck, rp, it->t_ms);
    switch (it->kind) {
    case RK_STATUS: {
        Raftkv__Status *st = raftkv__status__unpack(NULL, it->pb_len, it->pb);
        if (st != NULL) {
            model_apply_status(m, st);
            raftkv__status__free_unpacked(st, NULL);
        }
        break;
    }
    case RK_SEEN: {
        struct model_node *n = model_node(m, it->node);
        if (n != NULL && n->have_status) {
            n->last_report_ms = m->now_ms;
            n->election_elapsed_ms = it->elapsed;
        }
        break;
    }
    case RK_MSG:
        model_apply_wire(m, &it->rec);
        break;
    case RK_EVENT:
        model_replay_event(m, (enum model_event_kind)it->event_kind, it->wall_ms, it->text);
        break;
    case RK_PROCESS:
        model_set_process(m, it->node, (enum model_process)it->process, it->pid, it->exit_code);
        break;
    case RK_COMMAND:
        snprintf(rp->last_command, sizeof rp->last_command, "%s", it->text);
        break;
    }
}

/* Show the recording as it was at t_ms. */
static void replay_seek(struct cockpit *ck, struct replay *rp, uint64_t t_ms)
{
    if (t_ms > rp->duration_ms)
        t_ms = rp->duration_ms;
    if (t_ms < rp->t_ms || rp->pos == 0)
        replay_reset(ck, rp);
    while (rp->pos < rp->n && rp->items[rp->pos].t_ms <= t_ms)
        replay_apply(ck, rp, &rp->items[rp->pos++]);
    rp->t_ms = t_ms;
    replay_time(ck, rp, t_ms);
    /* The header's speed: the nodes' own. */
    for (size_t i = 0; i < ck->model.n; i++)
        if (ck->model.nodes[i].have_status && ck->model.nodes[i].speed > 0)
            ck->sup.speed = ck->model.nodes[i].speed;
}

void replay_setup(struct cockpit *ck, struct replay *rp)
{
    memset(&ck->sup.cluster, 0, sizeof ck->sup.cluster);
    ck->sup.cluster = rp->cluster;
    snprintf(ck->sup.cluster_path, sizeof ck->sup.cluster_path, "%s", rp->cluster_path);
    ck->sup.speed = rp->speed_recorded;
    ck->ui.selected = rp->cluster.nodes[0].id;
    replay_reset(ck, rp);
    rp->t_ms = 0;
}

void replay_print_all(struct cockpit *ck, struct replay *rp)
{
    while (rp->pos < rp->n) {
        const struct replay_item *it = &rp->items[rp->pos++];
        replay_apply(ck, rp, it);
        if (it->kind == RK_EVENT)
            cockpit_print_events(ck);
    }
}

/* ------------------------------------------------------------ keys */

static const double replay_speeds[] = {0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32};
#define N_REPLAY_SPEEDS (sizeof replay_speeds / sizeof replay_speeds[0])

static void replay_change_speed(struct replay *rp, bool faster)
{
    double next = rp->speed;
    if (faster) {
        for (size_t i = 0; i < N_REPLAY_SPEEDS; i++)
            if (replay_speeds[i] > rp->speed + 1e-9) {
                next = replay_speeds[i];
                break;
            }
    } else {
        for (size_t i = N_REPLAY_SPEEDS; i-- > 0;)
            if (replay_speeds[i] < rp->speed - 1e-9) {
                next = replay_speeds[i];
                break;
            }
    }
    rp->speed = next;
}

/* The time of the event before (dir < 0) or after (dir > 0) now. */
static bool replay_event_near(const struct replay *rp, int dir, uint64_t *t_ms)
{
    if (dir > 0) {
        for (size_t i = 0; i < rp->n; i++)
            if (rp->items[i].kind == RK_EVENT && rp->items[i].t_ms > rp->t_ms) {
                *t_ms = rp->items[i].t_ms;
                return true;
            }
    } else {
        for (size_t i = rp->n; i-- > 0;)
            if (rp->items[i].kind == RK_EVENT && rp->items[i].t_ms < rp->t_ms) {
                *t_ms = rp->items[i].t_ms;
                return true;
            }
    }
    return false;
}

/* "83", "83.5", "1:23", "1:23.5" -> ms; -1 if not a time. */
long long replay_parse_time(const char *s)
{
    unsigned minutes = 0;
    double seconds;
    char *end;
    const char *colon = strchr(s, ':');
    if (colon != NULL) {
        minutes = (unsigned)strtoul(s, &end, 10);
        if (end != colon || end == s)
            return -1;
        s = colon + 1;
    }
    if (!isdigit((unsigned char)*s))
        return -1;
    seconds = strtod(s, &end);
    if (*end != '\0' || seconds < 0 || (colon != NULL && seconds >= 60) || minutes > 100000)
        return -1;
    return (long long)((minutes * 60.0 + seconds) * 1000.0 + 0.5);
}

static void format_clock(uint64_t ms, char *out, size_t size)
{
    snprintf(out, size, "%" PRIu64 ":%02" PRIu64 ".%" PRIu64, ms / 60000, ms / 1000 % 60,
             ms / 100 % 10);
}

static void replay_goto_key(struct cockpit *ck, struct replay *rp, int key)
{
    size_t len = strlen(rp->goto_text);
    if (key == '\n' || key == '\r' || key == KEY_ENTER) {
        rp->going = false;
        long long t = replay_parse_time(rp->goto_text);
        if (t < 0) {
            cockpit_message(ck, true, "go to: '%s' is not a time (83, 83.5 or 1:23)",
                            rp->goto_text);
            return;
        }
        replay_seek(ck, rp, (uint64_t)t); /* the bottom line shows where */
    } else if (key == 27 || key == 7 || key == 3) {
        rp->going = false;
    } else if ((key == KEY_BACKSPACE || key == 127 || key == 8) && len > 0) {
        rp->goto_text[len - 1] = '\0';
    } else if ((isdigit(key) || key == ':' || key == '.') && len + 1 < sizeof rp->goto_text) {
        rp->goto_text[len] = (char)key;
        rp->goto_text[len + 1] = '\0';
    }
}

static void replay_key(struct cockpit *ck, struct replay *rp, int key)
{
    uint64_t t;
    if (rp->going) {
        replay_goto_key(ck, rp, key);
        return;
    }
    if (ck->ui.mode == UI_HELP) {
        ck->ui.mode = UI_NORMAL;
        return;
    }
    switch (key) {
    case ' ':
        rp->paused = !rp->paused;
        if (!rp->paused && rp->t_ms >= rp->duration_ms)
            replay_seek(ck, rp, 0); /* at the end: from the start again */
        break;
    case '+':
    case '=':
    case '-':
        replay_change_speed(rp, key != '-'); /* the bottom line shows it */
        break;
    case ']':
    case '[':
        if (replay_event_near(rp, key == ']' ? 1 : -1, &t)) {
            replay_seek(ck, rp, t);
            rp->paused = true;
        } else {
            cockpit_message(ck, true, "no %s event", key == ']' ? "later" : "earlier");
        }
        break;
    case '}':
        replay_seek(ck, rp, rp->t_ms + REPLAY_SEEK_MS);
        break;
    case '{':
        replay_seek(ck, rp, rp->t_ms > REPLAY_SEEK_MS ? rp->t_ms - REPLAY_SEEK_MS : 0);
        break;
    case 'g':
        rp->going = true;
        rp->goto_text[0] = '\0';
        break;
    case 'P': {
        char written[2 * UI_LINE_MAX], err[256];
        draw_screen(ck);
        if (screenshot_write(ck, NULL, written, sizeof written, err, sizeof err) < 0)
            cockpit_message(ck, true, "%s", err);
        else
            cockpit_message(ck, false, "wrote %s", written);
        break;
    }
    case 'w':
        ck->ui.wire_hidden = !ck->ui.wire_hidden;
        break;
    case '?':
        ck->ui.mode = UI_HELP;
        ck->ui.help_top = 0;
        break;
    case 'q':
        ck->quit = true;
        break;
    case 12: /* ctrl-l */
    case KEY_RESIZE:
        clearok(curscr, TRUE);
        break;
    default:
        if (key >= '1' && key <= '9' && cluster_find(&rp->cluster, (uint32_t)(key - '0')))
            ck->ui.selected = (uint32_t)(key - '0');
        break;
    }
}

static void replay_status_line(struct cockpit *ck, struct replay *rp)
{
    char now[32], total[32];
    format_clock(rp->t_ms, now, sizeof now);
    format_clock(rp->duration_ms, total, sizeof total);
    if (rp->going)
        snprintf(ck->ui.status_line, sizeof ck->ui.status_line,
                 "go to (83, 83.5 or 1:23), Enter: %s_", rp->goto_text);
    else
        snprintf(
            ck->ui.status_line, sizeof ck->ui.status_line,
            "REPLAY %s / %s x%g%s%s%.60s  space pause  +/- speed  [ ] event  { } 10s  g go to  "
            "P shot  q quit",
            now, total, rp->speed, rp->paused ? " PAUSED" : "", rp->last_command[0] ? "  > " : "",
            rp->last_command);
}

void replay_run(struct cockpit *ck, struct replay *rp)
{
    uint64_t last = clock_monotonic_ms(), last_draw = 0;
    replay_seek(ck, rp, 0);
    while (!ck->quit && !cockpit_quit_signal()) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        if (poll(&pfd, 1, 40) < 0 && errno != EINTR)
            break;
        uint64_t now = clock_monotonic_ms();
        ck->now_ms = now;
        if (!rp->paused) {
            uint64_t t = rp->t_ms + (uint64_t)((double)(now - last) * rp->speed + 0.5);
            if (t >= rp->duration_ms) {
                t = rp->duration_ms;
                rp->paused = true;
            }
            replay_seek(ck, rp, t);
        }
        last = now;
        int key;
        bool redraw = false;
        while (!ck->quit && (key = getch()) != ERR) {
            replay_key(ck, rp, key);
            redraw = true;
        }
        if (redraw || now - last_draw >= REPLAY_DRAW_MS) {
            replay_status_line(ck, rp);
            draw_screen(ck);
            last_draw = now;
        }
    }
}

void replay_close(struct replay *rp)
{
    replay_free(rp);
}

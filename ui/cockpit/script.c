/* script.c - run cockpit commands from a file, one a line, with waits and
 * expectations that poll until a deadline:
 *
 *   # a comment               wait 2s | wait 500ms     wait-leader   wait-client
 *   echo TEXT                 expect leader N|none     expect role N ROLE
 *   expect getval KEY VALUE   expect kv N|all KEY VALUE|None
 *   expect log N|all committed|uncommitted|absent TEXT
 *   expect event TEXT         (an event since the last command)
 *   expect held N             (frozen: N messages held in the wire)
 *   expect wire TEXT          (a message on the wire since the last command reads TEXT)
 *   any cockpit command; a client command ending in '&' runs in the background
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cockpit.h"

#define EXPECT_MS 10000      /* an expectation's time to come true, at speed 1 */
#define WAIT_LEADER_MS 15000 /* wait-leader's time, at speed 1 */
#define RETRY_GETVAL_MS 200

enum script_state {
    SCRIPT_RUN,
    SCRIPT_SLEEP,
    SCRIPT_WAIT_LEADER,
    SCRIPT_WAIT_CLIENT,
    SCRIPT_WAIT_OP,
    SCRIPT_SETTLE,
    SCRIPT_EXPECT,
    SCRIPT_DONE,
    SCRIPT_FAILED,
};

struct script_line {
    int lineno;
    char *text;
};

struct script {
    char *path;
    struct script_line *lines;
    size_t n, pos;
    const struct script_line *cur;
    enum script_state state;
    uint64_t until_ms;
    int op; /* client op awaited (a command, or an expectation's getval) */
    bool op_done;
    struct client_result result;
    uint64_t next_try_ms;
    size_t expectations;
    uint64_t first_event;
    uint64_t first_wire; /* "expect wire" looks at messages from here on */
    uint64_t noted_term; /* note-term: the highest term then */
    char why[256];
};

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

struct script *script_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read script %s: %s", path, strerror(errno));
        return NULL;
    }
    struct script *s = calloc(1, sizeof *s);
    size_t cap = 0;
    char line[UI_LINE_MAX * 2];
    int lineno = 0;
    bool ok = s && (s->path = strdup(path));
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        char *t = trim(line);
        if (!*t || *t == '#')
            continue;
        if (s->n == cap) {
            cap = cap ? cap * 2 : 32;
            struct script_line *p = realloc(s->lines, cap * sizeof *p);
            if (!p) {
                ok = false;
                break;
            }
            s->lines = p;
        }
        s->lines[s->n].lineno = lineno;
        s->lines[s->n].text = strdup(t);
        if (!s->lines[s->n].text) {
            ok = false;
            break;
        }
        s->n++;
    }
    fclose(f);
    if (!ok) {
        snprintf(err, errlen, "out of memory reading %s", path);
        script_free(s);
        return NULL;
    }
    return s;
}

void script_free(struct script *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->lines[i].text);
    free(s->lines);
    free(s->path);
    free(s);
}

bool script_finished(const struct script *s)
{
    return s->state == SCRIPT_DONE || s->state == SCRIPT_FAILED;
}

static double slowness(const struct cockpit *ck)
{
    return ck->sup.speed < 1 ? 1.0 / ck->sup.speed : 1.0;
}

static void script_fail(struct cockpit *ck, struct script *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void script_fail(struct cockpit *ck, struct script *s, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    s->state = SCRIPT_FAILED;
    model_event(&ck->model, EV_VIOLATION, "script failed at %s:%d: %s: %s", s->path,
                s->cur ? s->cur->lineno : 0, s->cur ? s->cur->text : "", why);
    cockpit_message(ck, true, "script failed at line %d: %s", s->cur ? s->cur->lineno : 0, why);
    if (ck->opt.headless) {
        fprintf(stderr, "raftkv: script %s:%d: %s failed: %s\n", s->path,
                s->cur ? s->cur->lineno : 0, s->cur ? s->cur->text : "", why);
        ck->exit_code = 1;
        ck->quit = true;
    }
}

/* "2s", "500ms", "1.5" (seconds). */
static bool parse_duration(const char *w, uint64_t *ms)
{
    char *end;
    errno = 0;
    double x = strtod(w, &end);
    if (errno || end == w || x < 0 || x > 86400)
        return false;
    if (strcmp(end, "ms") == 0)
        *ms = (uint64_t)x;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        *ms = (uint64_t)(x * 1000.0);
    else
        return false;
    return true;
}

static int split(char *line, char **w, int max)
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t", &save); t && n < max;
         t = strtok_r(NULL, " \t", &save))
        w[n++] = t;
    return n;
}

static void join(char **w, int from, int n, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = from; i < n && used + 1 < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i > from ? " " : "", w[i]);
}

/* ------------------------------------------------------------ expectations */

enum { HOLDS = 1, NOT_YET = 0, BAD = -1 };

static int node_set(struct cockpit *ck, const char *w, const struct model_node **set, size_t *n)
{
    *n = 0;
    if (strcmp(w, "all") == 0) {
        for (size_t i = 0; i < ck->model.n; i++)
            set[(*n)++] = &ck->model.nodes[i];
        return 0;
    }
    char *end;
    unsigned long id = strtoul(w, &end, 10);
    const struct model_node *node = *end ? NULL : model_node_const(&ck->model, (uint32_t)id);
    if (!node)
        return -1;
    set[(*n)++] = node;
    return 0;
}

static int expect_kv(struct cockpit *ck, struct script *s, char **w, int n)
{
    const struct model_node *set[CLUSTER_MAX_NODES];
    size_t count;
    if (n != 5 || node_set(ck, w[2], set, &count) < 0)
        return BAD;
    bool want_none = strcmp(w[4], "None") == 0;
    for (size_t i = 0; i < count; i++) {
        const struct model_node *node = set[i];
        if (!node->have_status || node->process != PROC_RUNNING) {
            snprintf(s->why, sizeof s->why, "node %u is not reporting", node->id);
            return NOT_YET;
        }
        const struct model_kv *kv = model_find_kv(node, w[3]);
        if (want_none && kv) {
            snprintf(s->why, sizeof s->why, "node %u still has %s = %s", node->id, w[3], kv->value);
            return NOT_YET;
        }
        if (!want_none && (!kv || strcmp(kv->value, w[4]) != 0)) {
            snprintf(s->why, sizeof s->why, "node %u has %s = %s", node->id, w[3],
                     kv ? kv->value : "None");
            return NOT_YET;
        }
    }
    return HOLDS;
}

static int expect_log(struct cockpit *ck, struct script *s, char **w, int n)
{
    const struct model_node *set[CLUSTER_MAX_NODES];
    size_t count;
    if (n < 5 || node_set(ck, w[2], set, &count) < 0)
        return BAD;
    const char *state = w[3];
    if (strcmp(state, "committed") && strcmp(state, "uncommitted") && strcmp(state, "absent"))
        return BAD;
    char text[UI_LINE_MAX];
    join(w, 4, n, text, sizeof text);
    for (size_t i = 0; i < count; i++) {
        const struct model_node *node = set[i];
        if (!node->have_status) {
            snprintf(s->why, sizeof s->why, "node %u is not reporting", node->id);
            return NOT_YET;
        }
        const struct model_entry *found = NULL;
        for (size_t k = 0; k < node->n_log; k++)
            if (strstr(node->log[k].text, text))
                found = &node->log[k];
        bool committed = found && found->index <= node->commit_index;
        bool ok = strcmp(state, "absent") == 0      ? !found
                  : strcmp(state, "committed") == 0 ? committed
                                                    : found && !committed;
        if (!ok) {
            if (found)
                snprintf(s->why, sizeof s->why,
                         "node %u has #%" PRIu64 " %s, %s (commit index %" PRIu64 ")", node->id,
                         found->index, found->text, committed ? "committed" : "not committed",
                         node->commit_index);
            else
                snprintf(s->why, sizeof s->why, "node %u's log tail has no '%.160s'", node->id,
                         text);
            return NOT_YET;
        }
    }
    return HOLDS;
}

static int expect_getval(struct cockpit *ck, struct script *s, char **w, int n)
{
    if (n != 4)
        return BAD;
    if (s->op && s->op_done) {
        s->op = 0;
        s->op_done = false;
        if (strcmp(s->result.text, w[3]) == 0)
            return HOLDS;
        snprintf(s->why, sizeof s->why, "getval %.64s answered %.160s", w[2], s->result.text);
        s->next_try_ms = ck->now_ms + RETRY_GETVAL_MS;
        return NOT_YET;
    }
    if (!s->op && ck->now_ms >= s->next_try_ms) {
        char *argv[] = {"getval", w[2]};
        char err[160];
        int id = client_submit(&ck->client, 2, argv, 0, err, sizeof err);
        if (id < 0) {
            snprintf(s->why, sizeof s->why, "%s", err);
            s->next_try_ms = ck->now_ms + RETRY_GETVAL_MS;
        } else {
            s->op = id;
            s->op_done = false;
        }
    }
    return NOT_YET;
}

static int evaluate(struct cockpit *ck, struct script *s)
{
    char line[UI_LINE_MAX * 2];
    char *w[32];
    snprintf(line, sizeof line, "%s", s->cur->text);
    int n = split(line, w, 32);
    if (n < 2)
        return BAD;
    const char *what = w[1];
    struct model_view v;
    model_get_view(&ck->model, &v);

    if (strcmp(what, "leader") == 0 && n == 3) {
        uint32_t want = 0;
        if (strcmp(w[2], "none") != 0) {
            char *end;
            want = (uint32_t)strtoul(w[2], &end, 10);
            if (*end || !want)
                return BAD;
        }
        if (v.leader == want)
            return HOLDS;
        if (v.leader)
            snprintf(s->why, sizeof s->why, "the leader is node %u (term %" PRIu64 ")", v.leader,
                     v.term);
        else
            snprintf(s->why, sizeof s->why, "there is no leader");
        return NOT_YET;
    }
    if (strcmp(what, "held") == 0 && n == 3) {
        char *end;
        unsigned long want = strtoul(w[2], &end, 10);
        if (*end)
            return BAD;
        static uint64_t held[WIRE_MSGS];
        size_t got = wire_held(&ck->model.wire, held, WIRE_MSGS);
        if (got == want)
            return HOLDS;
        snprintf(s->why, sizeof s->why, "%zu messages are held", got);
        return NOT_YET;
    }
    if (strcmp(what, "wire") == 0 && n >= 3) {
        char text[UI_LINE_MAX], words[WIRE_TEXT];
        join(w, 2, n, text, sizeof text);
        uint64_t first = ck->model.wire.n > WIRE_MSGS ? ck->model.wire.n - WIRE_MSGS : 0;
        if (first < s->first_wire)
            first = s->first_wire;
        for (uint64_t seq = first; seq < ck->model.wire.n; seq++) {
            wire_text(&wire_msg_at(&ck->model.wire, seq)->rec, false, words, sizeof words);
            if (strstr(words, text))
                return HOLDS;
        }
        snprintf(s->why, sizeof s->why, "no message on the wire reads '%.160s'", text);
        return NOT_YET;
    }
    if (strcmp(what, "role") == 0 && n == 4) {
        char *end;
        unsigned long id = strtoul(w[2], &end, 10);
        const struct model_node *node = *end ? NULL : model_node_const(&ck->model, (uint32_t)id);
        int want = model_role_parse(w[3]);
        if (!node || want < 0)
            return BAD;
        enum model_role got = model_role_of(&ck->model, node);
        if ((int)got == want)
            return HOLDS;
        snprintf(s->why, sizeof s->why, "node %u is %s", node->id, model_role_name(got));
        return NOT_YET;
    }
    if (strcmp(what, "kv") == 0)
        return expect_kv(ck, s, w, n);
    if (strcmp(what, "log") == 0)
        return expect_log(ck, s, w, n);
    if (strcmp(what, "getval") == 0)
        return expect_getval(ck, s, w, n);
    if (strcmp(what, "term") == 0 && n == 3) {
        /* The highest term of any live node against the one note-term saw. */
        bool same = strcmp(w[2], "same") == 0;
        if (!same && strcmp(w[2], "higher") != 0)
            return BAD;
        if (same ? v.term == s->noted_term : v.term > s->noted_term)
            return HOLDS;
        snprintf(s->why, sizeof s->why, "the highest term is %" PRIu64 ", noted %" PRIu64, v.term,
                 s->noted_term);
        return NOT_YET;
    }
    if (strcmp(what, "event") == 0 && n >= 3) {
        char text[UI_LINE_MAX];
        join(w, 2, n, text, sizeof text);
        for (uint64_t seq = s->first_event; seq < ck->model.n_events; seq++) {
            const struct model_event *e = model_event_at(&ck->model, seq);
            if (e && e->kind != EV_SCRIPT && strstr(e->text, text))
                return HOLDS;
        }
        snprintf(s->why, sizeof s->why, "no event says '%.200s'", text);
        return NOT_YET;
    }
    return BAD;
}

/* ------------------------------------------------------------ running */

static void run_line(struct cockpit *ck, struct script *s)
{
    char line[UI_LINE_MAX * 2];
    char *w[32];
    snprintf(line, sizeof line, "%s", s->cur->text);
    int n = split(line, w, 32);
    if (n == 0)
        return;

    if (strcmp(w[0], "wait") == 0) {
        uint64_t ms;
        if (n != 2 || !parse_duration(w[1], &ms)) {
            script_fail(ck, s, "usage: wait 2s | wait 500ms");
            return;
        }
        s->state = SCRIPT_SLEEP;
        s->until_ms = ck->now_ms + ms;
        return;
    }
    if (strcmp(w[0], "wait-leader") == 0) {
        s->state = SCRIPT_WAIT_LEADER;
        s->until_ms = ck->now_ms + (uint64_t)(WAIT_LEADER_MS * slowness(ck));
        return;
    }
    if (strcmp(w[0], "note-term") == 0) {
        struct model_view v;
        model_get_view(&ck->model, &v);
        s->noted_term = v.term;
        model_event(&ck->model, EV_SCRIPT, "noted term %" PRIu64, v.term);
        return;
    }
    if (strcmp(w[0], "wait-client") == 0) {
        s->state = SCRIPT_WAIT_CLIENT;
        return;
    }
    if (strcmp(w[0], "echo") == 0) {
        const char *text = s->cur->text + 4;
        while (isspace((unsigned char)*text))
            text++;
        model_event(&ck->model, EV_SCRIPT, "%s", text);
        return;
    }
    if (strcmp(w[0], "expect") == 0) {
        s->state = SCRIPT_EXPECT;
        s->until_ms = ck->now_ms + (uint64_t)(EXPECT_MS * slowness(ck));
        s->op = 0;
        s->op_done = false;
        s->next_try_ms = 0;
        s->why[0] = '\0';
        return;
    }

    /* A cockpit command; "&" at the end: do not wait for a client answer. */
    bool background = strcmp(w[n - 1], "&") == 0;
    char cmd[UI_LINE_MAX * 2];
    snprintf(cmd, sizeof cmd, "%s", s->cur->text);
    if (background) {
        char *amp = strrchr(cmd, '&');
        *amp = '\0';
    }
    model_event(&ck->model, EV_SCRIPT, "> %s", s->cur->text);
    s->first_event = ck->model.n_events; /* "expect event" looks from here on */
    s->first_wire = ck->model.wire.n;
    struct command_outcome out;
    command_run(ck, cmd, &out);
    if (out.error) {
        script_fail(ck, s, "%s", ck->ui.message);
        return;
    }
    if (out.client_op > 0 && !background) {
        s->state = SCRIPT_WAIT_OP;
        s->op = out.client_op;
        s->op_done = false;
        return;
    }
    /* Network faults reach the nodes as messages: the next line runs once
     * every node reports them in force, so a script never races its own
     * faults. */
    static const char *const network[] = {"delay",  "drop",  "partition", "isolate",
                                          "heal",   "speed", "prevote",   "checkquorum",
                                          "freeze", "thaw",  "wire"};
    for (size_t i = 0; i < sizeof(network) / sizeof(network[0]); i++) {
        if (strcmp(w[0], network[i]) == 0) {
            s->state = SCRIPT_SETTLE;
            s->until_ms = ck->now_ms + (uint64_t)(EXPECT_MS * slowness(ck));
        }
    }
}

void script_tick(struct cockpit *ck)
{
    struct script *s = ck->script;
    if (!s)
        return;
    for (int steps = 0; steps < 100 && !ck->quit; steps++) {
        switch (s->state) {
        case SCRIPT_DONE:
        case SCRIPT_FAILED:
            return;
        case SCRIPT_RUN:
            if (s->pos == s->n) {
                s->state = SCRIPT_DONE;
                model_event(&ck->model, EV_SCRIPT, "script passed: %zu expectations held",
                            s->expectations);
                cockpit_message(ck, false, "script passed: %zu expectations held", s->expectations);
                if (ck->opt.headless)
                    ck->quit = true;
                return;
            }
            if (s->pos == 0)
                s->first_event = ck->model.n_events;
            s->cur = &s->lines[s->pos++];
            run_line(ck, s);
            break;
        case SCRIPT_SLEEP:
            if (ck->now_ms < s->until_ms)
                return;
            s->state = SCRIPT_RUN;
            break;
        case SCRIPT_WAIT_LEADER: {
            struct model_view v;
            model_get_view(&ck->model, &v);
            if (v.leader && v.leader_in_majority) {
                model_event(&ck->model, EV_SCRIPT, "ok: node %u leads term %" PRIu64, v.leader,
                            v.term);
                s->state = SCRIPT_RUN;
                break;
            }
            if (ck->now_ms >= s->until_ms) {
                script_fail(ck, s, "no leader with a majority in %.0f s",
                            WAIT_LEADER_MS * slowness(ck) / 1000.0);
                return;
            }
            return;
        }
        case SCRIPT_WAIT_CLIENT:
            if (client_busy(&ck->client))
                return;
            s->state = SCRIPT_RUN;
            break;
        case SCRIPT_WAIT_OP:
            if (!s->op_done)
                return;
            s->op = 0;
            s->op_done = false;
            s->state = SCRIPT_RUN;
            break;
        case SCRIPT_SETTLE:
            if (!sup_faults_settled(&ck->sup)) {
                if (ck->now_ms >= s->until_ms) {
                    script_fail(ck, s, "the nodes did not report '%s' in force", s->cur->text);
                    return;
                }
                return;
            }
            s->state = SCRIPT_RUN;
            break;
        case SCRIPT_EXPECT: {
            int r = evaluate(ck, s);
            if (r == BAD) {
                script_fail(ck, s, "cannot read this expectation (see the list in --help)");
                return;
            }
            if (r == HOLDS) {
                s->expectations++;
                model_event(&ck->model, EV_SCRIPT, "ok: %s", s->cur->text);
                s->state = SCRIPT_RUN;
                break;
            }
            if (ck->now_ms >= s->until_ms && !(s->op && !s->op_done)) {
                script_fail(ck, s, "%s", s->why[0] ? s->why : "it did not happen in time");
                return;
            }
            return;
        }
        }
    }
}

bool script_on_client_result(struct cockpit *ck, const struct client_result *r)
{
    struct script *s = ck->script;
    if (!s || !s->op || r->id != s->op)
        return false;
    s->result = *r;
    s->op_done = true;
    return s->state == SCRIPT_EXPECT; /* an expectation's own getval */
}

/* model.c - the cluster as the cockpit sees it: Status messages in, a model,
 * an event log in plain words and live safety checks out. No curses here. */
#include "model.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LAG_ENTRIES 3 /* a follower this far behind the leader's commit is lagging */

static const char *const role_names[] = {
    [ROLE_FOLLOWER] = "Follower",         [ROLE_CANDIDATE] = "Candidate", [ROLE_LEADER] = "Leader",
    [ROLE_PRECANDIDATE] = "PreCandidate", [ROLE_SUSPENDED] = "Suspended", [ROLE_DOWN] = "Down",
    [ROLE_STARTING] = "Starting",
};

const char *model_role_name(enum model_role r)
{
    if ((size_t)r >= sizeof role_names / sizeof role_names[0])
        return "?";
    return role_names[r];
}

int model_role_parse(const char *s)
{
    for (size_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++)
        if (strcasecmp(s, role_names[i]) == 0)
            return (int)i;
    return -1;
}

int model_init(struct model *m, const struct cluster *c)
{
    memset(m, 0, sizeof *m);
    wire_model_init(&m->wire);
    m->n = c->n;
    for (size_t i = 0; i < c->n; i++) {
        struct model_node *n = &m->nodes[i];
        n->id = c->nodes[i].id;
        snprintf(n->client_addr, sizeof n->client_addr, "%s", c->nodes[i].client_addr);
        n->process = PROC_NOT_STARTED;
        n->voted_for = 0;
    }
    return 0;
}

void model_free(struct model *m)
{
    free(m->term_leaders);
    m->term_leaders = NULL;
    m->n_term_leaders = m->cap_term_leaders = 0;
}

void model_set_time(struct model *m, uint64_t now_ms, uint64_t wall_ms)
{
    m->now_ms = now_ms;
    m->wall_ms = wall_ms;
}

struct model_node *model_node(struct model *m, uint32_t id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->nodes[i].id == id)
            return &m->nodes[i];
    return NULL;
}

const struct model_node *model_node_const(const struct model *m, uint32_t id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->nodes[i].id == id)
            return &m->nodes[i];
    return NULL;
}

/* ------------------------------------------------------------ event log */

static const char *const event_kind_names[] = {
    [EV_INFO] = "info",     [EV_ELECTION] = "election",   [EV_LEADER] = "leader",
    [EV_COMMIT] = "commit", [EV_FAULT] = "fault",         [EV_CLIENT] = "client",
    [EV_NODE] = "node",     [EV_VIOLATION] = "violation", [EV_SCRIPT] = "script",
};

const char *model_event_kind_name(enum model_event_kind k)
{
    if ((size_t)k >= sizeof event_kind_names / sizeof event_kind_names[0])
        return "info";
    return event_kind_names[k];
}

int model_event_kind_parse(const char *s)
{
    for (size_t i = 0; i < sizeof event_kind_names / sizeof event_kind_names[0]; i++)
        if (strcmp(s, event_kind_names[i]) == 0)
            return (int)i;
    return -1;
}

static struct model_event *new_event(struct model *m, enum model_event_kind kind, uint64_t wall_ms)
{
    struct model_event *e = &m->events[m->n_events % MODEL_EVENTS];
    e->seq = m->n_events++;
    e->wall_ms = wall_ms;
    e->kind = kind;
    return e;
}

void model_event(struct model *m, enum model_event_kind kind, const char *fmt, ...)
{
    if (m->replay)
        return; /* the recording has the events */
    struct model_event *e = new_event(m, kind, m->wall_ms);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
    if (m->observer.on_event)
        m->observer.on_event(m->observer.ctx, m, e);
}

void model_replay_event(struct model *m, enum model_event_kind kind, uint64_t wall_ms,
                        const char *text)
{
    struct model_event *e = new_event(m, kind, wall_ms);
    snprintf(e->text, sizeof e->text, "%s", text);
}

void model_apply_wire(struct model *m, const struct wire_rec *r)
{
    const struct model_node *from = model_node_const(m, r->from);
    wire_apply(&m->wire, r, m->now_ms, from ? from->drop_percent : 0);
    if (m->observer.on_wire)
        m->observer.on_wire(m->observer.ctx, m, r);
}

const struct model_event *model_event_at(const struct model *m, uint64_t seq)
{
    if (seq >= m->n_events || seq < model_first_event(m))
        return NULL;
    return &m->events[seq % MODEL_EVENTS];
}

uint64_t model_first_event(const struct model *m)
{
    return m->n_events > MODEL_EVENTS ? m->n_events - MODEL_EVENTS : 0;
}

static void violation(struct model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(struct model *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->last_violation, sizeof m->last_violation, fmt, ap);
    va_end(ap);
    m->violations++;
    model_event(m, EV_VIOLATION, "SAFETY VIOLATION: %s", m->last_violation);
}

/* ------------------------------------------------------------ helpers */

/* Copy bytes for display: unprintable bytes become '.', too long ends in '~'. */
static void copy_text(char *dst, size_t size, const void *src, size_t len)
{
    const unsigned char *p = src;
    size_t n = len < size - 1 ? len : size - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (p[i] >= 32 && p[i] < 127) ? (char)p[i] : '.';
    if (len > size - 1 && n > 0)
        dst[n - 1] = '~';
    dst[n] = '\0';
}

static uint32_t node_bit(uint32_t id)
{
    return id < 32 ? 1u << id : 0;
}

/* "1,2,3" from a bit mask of node ids. */
static void mask_text(uint32_t mask, char *out, size_t size)
{
    cluster_ids_text(mask, out, size);
    if (!out[0])
        snprintf(out, size, "none");
}

uint64_t model_report_age_ms(const struct model *m, const struct model_node *n)
{
    if (!n->have_status || m->now_ms < n->last_report_ms)
        return 0;
    return m->now_ms - n->last_report_ms;
}

enum model_role model_role_of(const struct model *m, const struct model_node *n)
{
    (void)m;
    switch (n->process) {
    case PROC_NOT_STARTED:
    case PROC_EXITED:
        return ROLE_DOWN;
    case PROC_STOPPED:
        return ROLE_SUSPENDED;
    case PROC_RUNNING:
        break;
    }
    if (!n->have_status)
        return ROLE_STARTING;
    if (n->suspended)
        return ROLE_SUSPENDED;
    return n->role <= ROLE_PRECANDIDATE ? (enum model_role)n->role : ROLE_FOLLOWER;
}

bool model_node_live(const struct model *m, const struct model_node *n)
{
    return n->process == PROC_RUNNING && n->have_status && !n->suspended &&
           model_report_age_ms(m, n) < MODEL_SILENT_MS;
}

const struct model_kv *model_find_kv(const struct model_node *n, const char *key)
{
    for (size_t i = 0; i < n->n_kv; i++)
        if (strcmp(n->kv[i].key, key) == 0)
            return &n->kv[i];
    return NULL;
}

/* Two live nodes can talk when neither blocks the other. */
static bool can_talk(const struct model_node *a, const struct model_node *b)
{
    return !(a->blocked_mask & node_bit(b->id)) && !(b->blocked_mask & node_bit(a->id));
}

static size_t find_root(size_t *parent, size_t i)
{
    while (parent[i] != i)
        i = parent[i] = parent[parent[i]];
    return i;
}

void model_get_view(const struct model *m, struct model_view *v)
{
    memset(v, 0, sizeof *v);
    size_t parent[CLUSTER_MAX_NODES], size[CLUSTER_MAX_NODES];
    bool live[CLUSTER_MAX_NODES];
    const struct model_node *leader = NULL;
    size_t leader_slot = 0;

    for (size_t i = 0; i < m->n; i++) {
        const struct model_node *n = &m->nodes[i];
        parent[i] = i;
        size[i] = 1;
        live[i] = model_node_live(m, n);
        if (!live[i])
            continue;
        v->up++;
        if (n->term > v->term)
            v->term = n->term;
        if (n->role == ROLE_LEADER && (!leader || n->term > leader->term)) {
            leader = n;
            leader_slot = i;
        }
    }
    /* Groups of nodes that can reach each other (union-find). */
    for (size_t i = 0; i < m->n; i++)
        for (size_t j = i + 1; j < m->n; j++) {
            if (!live[i] || !live[j] || !can_talk(&m->nodes[i], &m->nodes[j]))
                continue;
            size_t a = find_root(parent, i), b = find_root(parent, j);
            if (a != b) {
                parent[b] = a;
                size[a] += size[b];
            }
        }
    for (size_t i = 0; i < m->n; i++)
        if (live[i] && find_root(parent, i) == i && size[i] > v->largest_group)
            v->largest_group = size[i];
    v->majority = v->largest_group * 2 > m->n;
    if (leader) {
        v->leader = leader->id;
        v->commit_index = leader->commit_index;
        /* It can commit when its group is a majority and nobody there is in a newer term. */
        size_t root = find_root(parent, leader_slot);
        bool newest = true;
        for (size_t i = 0; i < m->n; i++)
            if (live[i] && find_root(parent, i) == root && m->nodes[i].term > leader->term)
                newest = false;
        v->leader_in_majority = newest && size[root] * 2 > m->n;
    }
    const struct model_node *cfg = leader;
    for (size_t i = 0; i < m->n && cfg == NULL; i++)
        if (live[i] && m->nodes[i].voters_mask != 0 &&
            (cfg == NULL || m->nodes[i].config_index > cfg->config_index))
            cfg = &m->nodes[i];
    if (cfg != NULL) {
        v->voters_mask = cfg->voters_mask;
        v->learners_mask = cfg->learners_mask;
        v->config_index = cfg->config_index;
    }
}

bool model_is_learner(const struct model *m, uint32_t id)
{
    struct model_view v;
    model_get_view(m, &v);
    return (v.learners_mask & (1u << id)) != 0;
}

/* ------------------------------------------------------------ safety checks */

/* Election Safety: at most one leader per term. */
static void note_leader(struct model *m, uint64_t term, uint32_t id)
{
    for (size_t i = m->n_term_leaders; i-- > 0;) {
        struct model_term_leader *t = &m->term_leaders[i];
        if (t->term != term)
            continue;
        if (t->leader != id && !t->violated) {
            t->violated = true;
            violation(m, "two leaders in term %" PRIu64 ": node %u and node %u", term, t->leader,
                      id);
        }
        return;
    }
    if (m->n_term_leaders == m->cap_term_leaders) {
        size_t cap = m->cap_term_leaders ? m->cap_term_leaders * 2 : 64;
        struct model_term_leader *p = realloc(m->term_leaders, cap * sizeof *p);
        if (!p)
            return; /* the check is best effort when memory runs out */
        m->term_leaders = p;
        m->cap_term_leaders = cap;
    }
    m->term_leaders[m->n_term_leaders++] = (struct model_term_leader){term, id, false};
}

/* Log Matching on committed entries: an index committed anywhere has one term. */
static void check_committed(struct model *m, uint32_t id, uint64_t index, uint64_t term)
{
    if (index == 0)
        return;
    struct model_slot *s = &m->committed[index % MODEL_SLOTS];
    if (s->index != index) {
        *s = (struct model_slot){index, term, id};
        return;
    }
    if (s->value != term && s->node != 0) {
        violation(m,
                  "nodes %u and %u disagree on committed entry #%" PRIu64 " (term %" PRIu64
                  " vs %" PRIu64 ")",
                  s->node, id, index, s->value, term);
        s->node = 0; /* told once */
    }
}

/* State Machine Safety: the same applied index gives the same data. */
static void check_applied(struct model *m, uint32_t id, uint64_t index, uint64_t digest)
{
    if (index == 0)
        return;
    struct model_slot *s = &m->applied[index % MODEL_SLOTS];
    if (s->index != index) {
        *s = (struct model_slot){index, digest, id};
        return;
    }
    if (s->value != digest && s->node != 0) {
        violation(m,
                  "nodes %u and %u applied the log up to #%" PRIu64
                  " but hold different data (digest %016" PRIx64 " vs %016" PRIx64 ")",
                  s->node, id, index, s->value, digest);
        s->node = 0;
    }
}

/* ------------------------------------------------------------ elections */

static struct model_term_votes *term_votes(struct model *m, uint64_t term)
{
    struct model_term_votes *t = &m->votes[term % MODEL_VOTE_TERMS];
    if (t->term != term)
        *t = (struct model_term_votes){.term = term};
    return t;
}

/* A split vote: two or more candidates in a term, all moved on, nobody won. */
static void check_split_vote(struct model *m, struct model_term_votes *t)
{
    if (t->won || t->reported || __builtin_popcount(t->candidates) < 2)
        return;
    if ((t->candidates & ~t->moved_on) != 0)
        return;
    char who[40];
    mask_text(t->candidates, who, sizeof who);
    t->reported = true;
    model_event(m, EV_ELECTION,
                "split vote in term %" PRIu64 ": candidates %s split the votes, nobody got a "
                "majority; the next timeout starts a new election",
                t->term, who);
}

static void note_candidate(struct model *m, uint32_t id, uint64_t term)
{
    term_votes(m, term)->candidates |= node_bit(id);
}

static void note_moved_on(struct model *m, uint32_t id, uint64_t old_term)
{
    struct model_term_votes *t = &m->votes[old_term % MODEL_VOTE_TERMS];
    if (t->term != old_term || !(t->candidates & node_bit(id)))
        return;
    t->moved_on |= node_bit(id);
    check_split_vote(m, t);
}

static void note_won(struct model *m, uint32_t id, uint64_t term)
{
    term_votes(m, term)->won = true;
    note_leader(m, term, id);
}

/* "node 2 timed out after 212 ms and started term 5" and friends. */
static void tell_role_change(struct model *m, struct model_node *n, const struct model_node *prev,
                             bool had, int from, int to, uint64_t term, const char *votes,
                             uint32_t timeout_ms, const char *reason)
{
    if (to == ROLE_PRECANDIDATE) {
        /* Pre-Vote (dissertation 9.6): the term stays until a majority says yes. */
        uint32_t timeout = timeout_ms ? timeout_ms : n->election_timeout_ms;
        model_event(m, EV_ELECTION,
                    "node %u %s after %u ms and asks for pre-votes for term %" PRIu64
                    " (its term stays %" PRIu64 " until a majority says yes)",
                    n->id, from == ROLE_CANDIDATE ? "timed out again" : "timed out", timeout,
                    term + 1, term);
        return;
    }
    if (to == ROLE_CANDIDATE && from == ROLE_PRECANDIDATE) {
        note_candidate(m, n->id, term);
        model_event(m, EV_ELECTION, "node %u got a majority of pre-votes and started term %" PRIu64,
                    n->id, term);
        return;
    }
    if (to == ROLE_CANDIDATE && reason && strncmp(reason, "TimeoutNow", 10) == 0) {
        note_candidate(m, n->id, term);
        n->forced_timeout_ms = 0;
        model_event(m, EV_ELECTION, "node %u got %s and started term %" PRIu64 " at once", n->id,
                    reason, term);
        return;
    }
    if (to == ROLE_CANDIDATE) {
        note_candidate(m, n->id, term);
        if (n->forced_timeout_ms && m->now_ms - n->forced_timeout_ms < 3000) {
            n->forced_timeout_ms = 0; /* the next timeout is its own */
            model_event(m, EV_ELECTION, "node %u was told to time out and started term %" PRIu64,
                        n->id, term);
            return;
        }
        uint32_t timeout = timeout_ms;
        if (!timeout)
            timeout = (had && prev->role != ROLE_LEADER && prev->election_timeout_ms)
                          ? prev->election_timeout_ms
                          : n->election_timeout_ms;
        model_event(m, EV_ELECTION, "node %u %s after %u ms and started term %" PRIu64, n->id,
                    from == ROLE_CANDIDATE ? "timed out again" : "timed out", timeout, term);
    } else if (to == ROLE_LEADER) {
        note_won(m, n->id, term);
        if (votes && *votes)
            model_event(m, EV_LEADER,
                        "node %u won the election for term %" PRIu64 " (votes from %s)", n->id,
                        term, votes);
        else
            model_event(m, EV_LEADER, "node %u is now the leader of term %" PRIu64, n->id, term);
    } else if (from == ROLE_LEADER) {
        if (reason && *reason)
            model_event(m, EV_LEADER, "node %u stepped down: %s", n->id, reason);
        else if (had && prev->term >= term)
            model_event(m, EV_LEADER, "node %u stepped down in term %" PRIu64, n->id, term);
        else
            model_event(m, EV_LEADER,
                        "node %u stepped down: it saw term %" PRIu64 ", newer than its own", n->id,
                        term);
    } else if (from == ROLE_PRECANDIDATE) {
        if (n->leader)
            model_event(m, EV_ELECTION,
                        "node %u stopped asking for pre-votes: node %u leads term %" PRIu64, n->id,
                        n->leader, term);
        else
            model_event(m, EV_ELECTION,
                        "node %u stopped asking for pre-votes: it saw term %" PRIu64, n->id, term);
    } else if (from == ROLE_CANDIDATE) {
        if (n->leader)
            model_event(m, EV_ELECTION, "node %u gave up its election: node %u leads term %" PRIu64,
                        n->id, n->leader, term);
        else
            model_event(m, EV_ELECTION, "node %u gave up its election: it saw term %" PRIu64, n->id,
                        term);
    }
}

/* Parse a role change the node printed, with or without its "node 2: " prefix:
 *   term 5 Follower -> Candidate (timed out after 212 ms)
 *   term 5 Candidate -> Leader (votes from 1,2)
 */
struct role_line {
    uint64_t term;
    int from, to;
    uint32_t timeout_ms; /* 0: not said */
    char votes[64];
    char reason[96]; /* "no word from a majority for 300 ms" */
};

static const char *skip_prefix(const char *line)
{
    unsigned id;
    int used = 0;
    if (sscanf(line, "node %u: %n", &id, &used) == 1 && used > 0)
        return line + used;
    return line;
}

static bool parse_role_line(const char *line, struct role_line *r)
{
    char a[16], b[16];
    int used = 0;
    line = skip_prefix(line);
    if (sscanf(line, "term %" SCNu64 " %15s -> %15s%n", &r->term, a, b, &used) != 3)
        return false;
    r->from = model_role_parse(a);
    r->to = model_role_parse(b);
    if (r->from < 0 || r->to < 0)
        return false;
    r->votes[0] = '\0';
    r->timeout_ms = 0;
    const char *rest = line + used;
    const char *v = strstr(rest, "votes from ");
    if (v) {
        v += strlen("votes from ");
        size_t k = 0;
        while (v[k] && v[k] != ')' && k + 1 < sizeof r->votes) {
            r->votes[k] = v[k];
            k++;
        }
        r->votes[k] = '\0';
    }
    const char *t = strstr(rest, "timed out after ");
    if (t)
        r->timeout_ms = (uint32_t)strtoul(t + strlen("timed out after "), NULL, 10);
    r->reason[0] = '\0';
    const char *q = strstr(rest, "(no word from a majority");
    if (q == NULL)
        q = strstr(rest, "(TimeoutNow from node");
    if (q) {
        q++;
        size_t k = 0;
        while (q[k] && q[k] != ')' && k + 1 < sizeof r->reason) {
            r->reason[k] = q[k];
            k++;
        }
        r->reason[k] = '\0';
    }
    return true;
}

/* Lines the node words as a sentence with itself as the subject ("took a
 * snapshot up to #10000 ..."), told as "node 2 took a snapshot ...". */
static bool is_narration(const char *line)
{
    static const char *const verbs[] = {
        "took a snapshot ",     "sent node ",         "installed the snapshot ",
        "asked for pre-votes ", "ignored node ",      "sent TimeoutNow ",
        "gave up handing ",     "handed leadership ", "handing leadership ",
        "adds node ",           "removes node ",      "joined as a learner ",
        "is a voter ",          "left the cluster "};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strncmp(line, verbs[i], strlen(verbs[i])) == 0)
            return true;
    return false;
}

/* The node's own lines: role changes in words, everything else as printed.
 * Returns whether a role change was among them. */
static bool tell_node_lines(struct model *m, struct model_node *n, const struct model_node *prev,
                            bool had, const Raftkv__Status *st)
{
    bool role_line = false;
    for (size_t i = 0; i < st->n_events; i++) {
        const char *line = st->events[i];
        struct role_line r;
        if (parse_role_line(line, &r)) {
            role_line = true;
            /* A candidate that did not win moved on from its term. */
            if (r.from == ROLE_CANDIDATE && r.to == ROLE_CANDIDATE)
                note_moved_on(m, n->id, r.term - 1);
            else if (r.from == ROLE_CANDIDATE && r.to == ROLE_PRECANDIDATE)
                note_moved_on(m, n->id, r.term);
            else if (r.from == ROLE_CANDIDATE && r.to == ROLE_FOLLOWER)
                note_moved_on(m, n->id, had && prev->term < r.term ? prev->term : r.term - 1);
            tell_role_change(m, n, prev, had, r.from, r.to, r.term, r.votes, r.timeout_ms,
                             r.reason);
        } else if (strstr(line, "(new term)")) {
            continue; /* a follower moving to a newer term: votes and leaders tell it */
        } else if (is_narration(skip_prefix(line))) {
            model_event(m, EV_NODE, "node %u %s", n->id, skip_prefix(line));
        } else if (strncmp(skip_prefix(line), "node ", 5) == 0 &&
                   isdigit((unsigned char)skip_prefix(line)[5])) {
            /* A sentence about another node ("node 4 caught up and became a
             * voter ..."): told as it is. */
            model_event(m, EV_NODE, "%s", skip_prefix(line));
        } else {
            model_event(m, EV_NODE, "node %u: %s", n->id, skip_prefix(line));
        }
    }
    return role_line;
}

/* ------------------------------------------------------------ status */

static void copy_status(struct model_node *n, const Raftkv__Status *st)
{
    n->role = st->role;
    n->term = st->term;
    n->voted_for = st->voted_for;
    n->leader = st->leader;
    n->commit_index = st->commit_index;
    n->last_applied = st->last_applied;
    n->snapshot_index = st->snapshot_index;
    n->snapshot_term = st->snapshot_term;
    n->last_index = st->last_index;
    n->last_term = st->last_term;
    n->commit_term = st->commit_term;
    n->election_timeout_ms = st->election_timeout_ms;
    n->election_elapsed_ms = st->election_elapsed_ms;
    n->heartbeat_ms = st->heartbeat_ms;

    /* Keep the newest entries when there are more than we hold. */
    size_t skip = st->n_log_tail > MODEL_LOG_MAX ? st->n_log_tail - MODEL_LOG_MAX : 0;
    n->n_log = 0;
    for (size_t i = skip; i < st->n_log_tail; i++) {
        const Raftkv__LogEntryView *e = st->log_tail[i];
        struct model_entry *d = &n->log[n->n_log++];
        d->index = e->index;
        d->term = e->term;
        copy_text(d->text, sizeof d->text, e->text ? e->text : "", e->text ? strlen(e->text) : 0);
    }
    n->n_kv = 0;
    for (size_t i = 0; i < st->n_kv && n->n_kv < MODEL_KV_MAX; i++) {
        const Raftkv__KvView *e = st->kv[i];
        struct model_kv *d = &n->kv[n->n_kv++];
        copy_text(d->key, sizeof d->key, e->key.data, e->key.len);
        copy_text(d->value, sizeof d->value, e->value.data, e->value.len);
        d->ttl_ms = e->ttl_ms;
    }
    n->kv_count = st->kv_count;
    n->n_peers = 0;
    for (size_t i = 0; i < st->n_peers && n->n_peers < CLUSTER_MAX_NODES; i++) {
        const Raftkv__PeerProgress *p = st->peers[i];
        n->peers[n->n_peers++] = (struct model_peer){
            .id = p->id,
            .next = p->next,
            .match = p->match,
            .last_ack_ago_ms = p->last_ack_ago_ms,
            .last_send_ago_ms = p->last_send_ago_ms,
            .sent = p->sent,
            .received = p->received,
            .blocked = p->blocked,
            .snapshot_index = p->snapshot_index,
            .snapshot_chunk = p->snapshot_chunk,
            .snapshot_chunks = p->snapshot_chunks,
        };
    }
    n->msgs_sent = st->msgs_sent;
    n->msgs_received = st->msgs_received;
    n->msgs_dropped = st->msgs_dropped;
    n->bad_messages = st->bad_messages;
    n->state_digest = st->state_digest;
    n->speed = st->speed;
    n->drop_percent = st->drop_percent;
    n->prevote = st->prevote;
    n->check_quorum = st->check_quorum;
    n->lease_ms = st->lease_ms;
    n->lease_held = st->lease_held;
    n->transfer_to = st->transfer_to;
    n->voters_mask = n->learners_mask = 0;
    for (size_t i = 0; i < st->n_voters; i++)
        if (st->voters[i] >= 1 && st->voters[i] <= CLUSTER_MAX_NODES)
            n->voters_mask |= 1u << st->voters[i];
    for (size_t i = 0; i < st->n_learners; i++)
        if (st->learners[i] >= 1 && st->learners[i] <= CLUSTER_MAX_NODES)
            n->learners_mask |= 1u << st->learners[i];
    n->config_index = st->config_index;
    if (n->client_addr[0] == '\0' && st->client_address != NULL)
        snprintf(n->client_addr, sizeof n->client_addr, "%s", st->client_address);
    n->delay_ms = st->delay_ms;
    n->suspended = st->suspended;
    n->suspend_left_ms = st->suspend_left_ms;
    n->uptime_ms = st->uptime_ms;
    n->votes = st->votes;
    n->seq = st->seq;
    n->blocked_mask = 0;
    for (size_t i = 0; i < st->n_blocked; i++)
        n->blocked_mask |= node_bit(st->blocked[i]);
    for (size_t i = 0; i < n->n_peers; i++)
        if (n->peers[i].blocked)
            n->blocked_mask |= node_bit(n->peers[i].id);
    n->frozen = st->frozen;
    n->held = st->held;
    n->wire = st->wire;
}

static const struct model_node *view_leader(const struct model *m)
{
    struct model_view v;
    model_get_view(m, &v);
    return v.leader ? model_node_const(m, v.leader) : NULL;
}

/* "committed #12 SET greeting hello (term 4, stored on nodes 1,2,3)" */
static void tell_commits(struct model *m, const struct model_node *n)
{
    if (n->role != ROLE_LEADER || n->commit_index <= m->announced_commit)
        return;
    uint64_t from = m->announced_commit + 1;
    size_t told = 0, skipped = 0;
    for (size_t i = 0; i < n->n_log; i++) {
        const struct model_entry *e = &n->log[i];
        if (e->index < from || e->index > n->commit_index)
            continue;
        if (told == 3) {
            skipped++;
            continue;
        }
        uint32_t mask = node_bit(n->id);
        for (size_t p = 0; p < n->n_peers; p++)
            if (n->peers[p].match >= e->index)
                mask |= node_bit(n->peers[p].id);
        char on[40];
        mask_text(mask, on, sizeof on);
        model_event(m, EV_COMMIT, "committed #%" PRIu64 " %s (term %" PRIu64 ", stored on %s)",
                    e->index, e->text, e->term, on);
        told++;
    }
    if (skipped)
        model_event(m, EV_COMMIT, "committed %zu more entries, up to #%" PRIu64, skipped,
                    n->commit_index);
    m->announced_commit = n->commit_index;
}

static void tell_lag(struct model *m, struct model_node *n)
{
    const struct model_node *l = view_leader(m);
    if (!l || l == n || n->role == ROLE_LEADER || l->term < n->term)
        return;
    if (!n->lagging && n->commit_index + LAG_ENTRIES <= l->commit_index) {
        n->lagging = true;
        n->lag_commit = n->commit_index;
        model_event(m, EV_INFO,
                    "node %u is behind: it has committed up to #%" PRIu64
                    ", the leader up to #%" PRIu64,
                    n->id, n->commit_index, l->commit_index);
    } else if (n->lagging && n->commit_index >= l->commit_index) {
        n->lagging = false;
        model_event(m, EV_INFO,
                    "node %u caught up: the leader repaired its log up to #%" PRIu64
                    " (it was at #%" PRIu64 ")",
                    n->id, n->commit_index, n->lag_commit);
    }
}

void model_apply_status(struct model *m, const Raftkv__Status *st)
{
    struct model_node *n = model_node(m, st->id);
    if (!n || (n->process != PROC_RUNNING && n->process != PROC_STOPPED))
        return;
    if (n->pid > 0 && (int)st->pid != n->pid)
        return; /* a late report of a process that is gone */
    if (m->observer.on_status)
        m->observer.on_status(m->observer.ctx, m, st);

    static struct model_node prev; /* large: kept off the stack */
    prev = *n;
    bool had = n->have_status;
    copy_status(n, st);
    n->have_status = true;
    n->last_report_ms = m->now_ms;
    m->checks++;

    if (!had)
        model_event(m, EV_NODE,
                    "node %u is up: %s in term %" PRIu64 ", log up to #%" PRIu64 ", %" PRIu64
                    " keys",
                    n->id, model_role_name(n->role <= 2 ? (enum model_role)n->role : ROLE_FOLLOWER),
                    n->term, n->last_index, n->kv_count);
    else if (n->silent_reported)
        model_event(m, EV_NODE, "node %u reports again", n->id);
    n->silent_reported = false;

    bool role_line = tell_node_lines(m, n, &prev, had, st);
    if (had && !role_line && prev.role != n->role)
        tell_role_change(m, n, &prev, had, (int)prev.role, (int)n->role, n->term, "", 0, "");

    /* Votes granted to others. */
    if (had && n->voted_for && n->voted_for != n->id &&
        (n->voted_for != prev.voted_for || n->term != prev.term))
        model_event(m, EV_ELECTION, "node %u voted for node %u in term %" PRIu64, n->id,
                    n->voted_for, n->term);

    /* Elections: who ran in which term, who won. */
    if (n->role == ROLE_CANDIDATE)
        note_candidate(m, n->id, n->term);
    if (had && prev.role == ROLE_CANDIDATE && n->term > prev.term)
        note_moved_on(m, n->id, prev.term);
    if (n->role == ROLE_LEADER)
        note_won(m, n->id, n->term);

    /* Safety checks. */
    for (size_t i = 0; i < n->n_log; i++)
        if (n->log[i].index <= n->commit_index)
            check_committed(m, n->id, n->log[i].index, n->log[i].term);
    if (n->commit_index && n->commit_term)
        check_committed(m, n->id, n->commit_index, n->commit_term);
    check_applied(m, n->id, n->last_applied, n->state_digest);

    tell_commits(m, n);
    tell_lag(m, n);
}

/* A card for a node that joins later (the cockpit's add, or a recording of
 * one). */
struct model_node *model_add_node(struct model *m, uint32_t id, const char *client_addr)
{
    struct model_node *n = model_node(m, id);
    if (n != NULL || id < 1 || id > CLUSTER_MAX_NODES || m->n == CLUSTER_MAX_NODES)
        return n;
    n = &m->nodes[m->n++];
    memset(n, 0, sizeof *n);
    n->id = id;
    snprintf(n->client_addr, sizeof n->client_addr, "%s", client_addr ? client_addr : "");
    n->process = PROC_NOT_STARTED;
    return n;
}

void model_remove_node(struct model *m, uint32_t id)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->nodes[i].id != id)
            continue;
        for (size_t j = i + 1; j < m->n; j++)
            m->nodes[j - 1] = m->nodes[j];
        m->n--;
        return;
    }
}

void model_set_process(struct model *m, uint32_t id, enum model_process p, int pid, int exit_code)
{
    struct model_node *n = model_node(m, id);
    if (!n && p == PROC_RUNNING)
        n = model_add_node(m, id, NULL);
    if (!n)
        return;
    if (m->observer.on_process)
        m->observer.on_process(m->observer.ctx, m, id, (int)p, pid, exit_code);
    if (p == PROC_RUNNING && pid != n->pid) {
        /* A new process: what the old one said no longer holds. */
        n->have_status = false;
        n->silent_reported = false;
        n->lagging = false;
        n->n_log = n->n_kv = n->n_peers = 0;
        n->role = ROLE_FOLLOWER;
        n->suspended = false;
        n->blocked_mask = 0;
    }
    n->process = p;
    n->pid = pid;
    n->exit_code = exit_code;
    n->process_since_ms = m->now_ms;
}

void model_note_forced_timeout(struct model *m, uint32_t id)
{
    struct model_node *n = model_node(m, id);
    if (n)
        n->forced_timeout_ms = m->now_ms ? m->now_ms : 1;
}

void model_tick(struct model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        struct model_node *n = &m->nodes[i];
        if (n->process != PROC_RUNNING || !n->have_status || n->silent_reported)
            continue;
        uint64_t age = model_report_age_ms(m, n);
        if (age >= MODEL_SILENT_MS) {
            n->silent_reported = true;
            model_event(m, EV_NODE, "node %u has not reported for %.1f s", n->id,
                        (double)age / 1000.0);
        }
    }
}

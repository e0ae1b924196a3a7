/* write_path.c - where a write's time goes, stage by stage (RAFT.LATENCY).
 *
 * For each of the last WRITE_PATH_WINDOW log indexes the node notes, by the
 * monotonic clock, when the entry
 *   appended    entered this node's log: on a leader the loop turn that
 *               read the request and proposed it, on a follower the turn
 *               that took its AppendEntries in;
 *   sent        left in an AppendEntries for the first time (a leader);
 *   replicated  was acknowledged by a first follower: on its disk (a leader);
 *   synced      was on this node's own disk (its fdatasync returned);
 *   committed   was known committed here;
 *   replied     was applied and the turn's replies were written.
 * RAFT.LATENCY gives, for each stage, the median, the 99th percentile and
 * the longest time since "appended" over the entries of the window that
 * reached the last stage: on a leader, a write's way from its request to
 * its reply, and which part of it is the wait for a follower, for the
 * disk, or for the leader's own turn.
 *
 * The notes are taken where the loop already marks the phases of its turn
 * (loop.c): a look at the core's indexes, a clock read, and a store for
 * each entry that moved on. An entry is noted once a stage, the first time
 * it gets there. A change of role, or a log cut back, starts the window
 * afresh: what a follower saw says nothing of the leader's path; so does
 * RAFT.LATENCY RESET (the entries already in the log are left out).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node.h"

static const char *const stage_names[WRITE_PATH_STAGES] = {
    [WRITE_APPENDED] = "appended",     [WRITE_SENT] = "sent",
    [WRITE_REPLICATED] = "replicated", [WRITE_SYNCED] = "synced",
    [WRITE_COMMITTED] = "committed",   [WRITE_REPLIED] = "replied",
};

static uint64_t write_path_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int write_path_init(struct write_path *w)
{
    memset(w, 0, sizeof(*w));
    w->at = calloc(WRITE_PATH_WINDOW, sizeof(*w->at));
    return w->at != NULL ? 0 : -1;
}

void write_path_free(struct write_path *w)
{
    free(w->at);
    w->at = NULL;
}

/* Forget every note: the next entries start a new window. */
static void write_path_restart(struct write_path *w, uint64_t from_index, enum raft_role role)
{
    memset(w->at, 0, WRITE_PATH_WINDOW * sizeof(*w->at));
    for (int s = 0; s < WRITE_PATH_STAGES; s++)
        w->last[s] = from_index;
    w->role = role;
}

void write_path_reset(struct node *n)
{
    struct write_path *w = &n->write_path;
    if (w->at != NULL)
        write_path_restart(w, raft_last_index(&n->raft), n->raft.role);
}

/* The oldest index whose row is still its own: the window's last
 * WRITE_PATH_WINDOW appended entries. */
static uint64_t write_path_oldest(const struct write_path *w)
{
    uint64_t newest = w->last[WRITE_APPENDED];
    return newest >= WRITE_PATH_WINDOW ? newest - WRITE_PATH_WINDOW + 1 : 1;
}

/* Note stage s at time now for every entry past the last noted, up to
 * index. An entry appended takes its row afresh (the row held the entry
 * WRITE_PATH_WINDOW before it); a later stage of an entry whose row is
 * taken already is not noted. */
static void write_path_note(struct write_path *w, int s, uint64_t index, uint64_t now)
{
    if (index <= w->last[s])
        return;
    uint64_t from = w->last[s] + 1;
    if (s == WRITE_APPENDED) {
        if (index - from >= WRITE_PATH_WINDOW)
            from = index - WRITE_PATH_WINDOW + 1;
        for (uint64_t i = from; i <= index; i++) {
            memset(w->at[i % WRITE_PATH_WINDOW], 0, sizeof(w->at[0]));
            w->at[i % WRITE_PATH_WINDOW][s] = now;
        }
    } else {
        uint64_t oldest = write_path_oldest(w);
        for (uint64_t i = from > oldest ? from : oldest; i <= index; i++)
            w->at[i % WRITE_PATH_WINDOW][s] = now;
    }
    w->last[s] = index;
}

void write_path_observe(struct node *n)
{
    struct write_path *w = &n->write_path;
    const struct raft *r = &n->raft;
    if (w->at == NULL)
        return;
    uint64_t last = raft_last_index(r);
    /* A new role, a log cut back, or one that a snapshot installed moved
     * on (its entries were never appended here): start afresh. */
    if (r->role != w->role || last < w->last[WRITE_APPENDED] ||
        r->log.snapshot_index > w->last[WRITE_APPENDED])
        write_path_restart(w, last, r->role);
    uint64_t now = write_path_now_us();
    write_path_note(w, WRITE_APPENDED, last, now);
    /* Only what this node has: a leader's own copy may lag its log. */
    write_path_note(w, WRITE_SYNCED, r->persisted_index < last ? r->persisted_index : last, now);
    if (r->role == RAFT_LEADER) {
        /* The furthest any other voter has acknowledged. */
        uint64_t first = 0;
        for (size_t i = 0; i < r->members.n; i++) {
            uint32_t id = r->members.m[i].id;
            uint64_t match = r->progress[id - 1].match;
            if (id != r->cfg.id && r->members.m[i].role == RAFT_VOTER && match > first)
                first = match;
        }
        if (first > last)
            first = last;
        write_path_note(w, WRITE_REPLICATED, first, now);
    }
    write_path_note(w, WRITE_COMMITTED, r->commit_index < last ? r->commit_index : last, now);
}

void write_path_sent(struct node *n, const struct raft_msg *m)
{
    struct write_path *w = &n->write_path;
    if (w->at == NULL || m->type != RAFT_MSG_APPEND || m->n_entries == 0 || n->raft.role != w->role)
        return;
    uint64_t last_sent = m->entries[m->n_entries - 1].index;
    if (last_sent <= w->last[WRITE_APPENDED])
        write_path_note(w, WRITE_SENT, last_sent, write_path_now_us());
}

void write_path_replied(struct node *n)
{
    struct write_path *w = &n->write_path;
    if (w->at == NULL || n->raft.role != w->role)
        return;
    uint64_t applied = n->raft.last_applied;
    if (applied <= w->last[WRITE_APPENDED])
        write_path_note(w, WRITE_REPLIED, applied, write_path_now_us());
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int write_path_info(const struct node *n, struct buf *out)
{
    const struct write_path *w = &n->write_path;
    buf_printf(out, "role:%s\r\n", commands_role_word(w->role));
    uint64_t *took = w->at != NULL ? malloc(WRITE_PATH_WINDOW * sizeof(*took)) : NULL;
    if (took == NULL) {
        buf_printf(out, "writes:0\r\n");
        return w->at != NULL ? -1 : 0;
    }
    /* The entries of the window that reached the last stage. */
    uint64_t begin = write_path_oldest(w), end = w->last[WRITE_REPLIED];
    size_t writes = 0;
    for (uint64_t i = begin; i <= end; i++)
        if (w->at[i % WRITE_PATH_WINDOW][WRITE_APPENDED] != 0 &&
            w->at[i % WRITE_PATH_WINDOW][WRITE_REPLIED] != 0)
            writes++;
    buf_printf(out, "writes:%zu\r\n", writes);
    for (int s = WRITE_APPENDED + 1; s < WRITE_PATH_STAGES; s++) {
        size_t k = 0;
        for (uint64_t i = begin; i <= end; i++) {
            const uint64_t *t = w->at[i % WRITE_PATH_WINDOW];
            if (t[WRITE_APPENDED] != 0 && t[WRITE_REPLIED] != 0 && t[s] != 0)
                took[k++] = t[s] > t[WRITE_APPENDED] ? t[s] - t[WRITE_APPENDED] : 0;
        }
        if (k == 0)
            continue; /* a stage this node does not go through (sent, on a follower) */
        qsort(took, k, sizeof(*took), compare_u64);
        buf_printf(out,
                   "%s_p50_us:%" PRIu64 "\r\n%s_p99_us:%" PRIu64 "\r\n%s_max_us:%" PRIu64 "\r\n",
                   stage_names[s], took[k / 2], stage_names[s], took[k * 99 / 100], stage_names[s],
                   took[k - 1]);
    }
    free(took);
    return 0;
}

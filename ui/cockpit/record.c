/* record.c - see record.h. One JSON object a line, "t" (seconds since the
 * start) and "k" (the kind) first in each. */
#include "record.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

#define RECORD_FULL_EVERY_MS 5000 /* a status in full at least this often */
#define RECORD_SEEN_EVERY_MS 1000 /* else "seen" at most this often */
#define RECORD_HEARTBEAT_MS 1000  /* heartbeats of one kind on one link */
#define RECORD_FLUSH_BYTES (64 * 1024)
#define RECORD_TYPES 16 /* message types kept apart for heartbeats */

struct record_node {
    bool have;
    uint64_t signature;
    uint64_t last_full_ms, last_seen_ms;
};

struct record_heartbeats {
    uint64_t last_ms;
    uint32_t skipped;
};

struct recorder {
    FILE *f;
    char path[4096];
    uint64_t start_ms;
    struct buf line;
    struct buf pb;
    int write_errno; /* the first write error */
    struct record_node nodes[CLUSTER_MAX_NODES + 1];
    /* [from][to][type][event] */
    struct record_heartbeats hb[CLUSTER_MAX_NODES + 1][CLUSTER_MAX_NODES + 1][RECORD_TYPES][6];
};

static void record_write(struct recorder *r)
{
    if (r->line.len > 0 && r->write_errno == 0 &&
        fwrite(r->line.data, 1, r->line.len, r->f) != r->line.len)
        r->write_errno = errno ? errno : EIO;
    buf_reset(&r->line);
}

static void record_begin(struct recorder *r, uint64_t now_ms, const char *kind)
{
    buf_reset(&r->line);
    jsonl_begin(&r->line);
    double t = now_ms > r->start_ms ? (double)(now_ms - r->start_ms) / 1000.0 : 0.0;
    jsonl_num(&r->line, "t", t, 3);
    jsonl_str(&r->line, "k", kind);
}

static void record_end(struct recorder *r)
{
    jsonl_end(&r->line);
    record_write(r);
}

struct recorder *record_open(const char *path, const struct cluster *c, const char *cluster_path,
                             double speed, uint64_t now_ms, uint64_t wall_ms, char *err,
                             size_t errlen)
{
    struct recorder *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "--record %s: out of memory", path);
        return NULL;
    }
    r->f = fopen(path, "w");
    if (r->f == NULL) {
        snprintf(err, errlen, "--record %s: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    snprintf(r->path, sizeof r->path, "%s", path);
    r->start_ms = now_ms;
    char ids[64] = "", clients[CLUSTER_MAX_NODES * (CLUSTER_HOST_MAX + 10)] = "";
    size_t ui = 0, uc = 0;
    for (size_t i = 0; i < c->n; i++) {
        ui += (size_t)snprintf(ids + ui, sizeof ids - ui, "%s%u", i ? " " : "", c->nodes[i].id);
        uc += (size_t)snprintf(clients + uc, sizeof clients - uc, "%s%s", i ? " " : "",
                               c->nodes[i].client_addr);
    }
    record_begin(r, now_ms, "start");
    jsonl_u64(&r->line, "format", RECORD_FORMAT);
    jsonl_u64(&r->line, "wall", wall_ms);
    jsonl_str(&r->line, "nodes", ids);
    jsonl_str(&r->line, "clients", clients);
    jsonl_str(&r->line, "cluster_file", cluster_path);
    jsonl_num(&r->line, "speed", speed, 3);
    record_end(r);
    record_flush(r);
    return r;
}

/* ------------------------------------------------------------ statuses */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

/* What a card shows, timers and counters aside: a new value means a full status. */
static uint64_t status_signature(const Raftkv__Status *st)
{
    uint64_t h = st->pid;
    uint64_t fields[] = {st->role,         st->term,         st->voted_for,
                         st->leader,       st->commit_index, st->last_applied,
                         st->last_index,   st->last_term,    st->kv_count,
                         st->state_digest, st->suspended,    st->snapshot_index,
                         st->frozen,       st->held,         st->drop_percent,
                         st->delay_ms,     st->votes,        (uint64_t)(st->speed * 1000),
                         st->n_blocked,    st->n_events,     st->wire,
                         st->lease_held};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        h = mix(h, fields[i]);
    for (size_t i = 0; i < st->n_blocked; i++)
        h = mix(h, st->blocked[i]);
    for (size_t i = 0; i < st->n_peers; i++)
        h = mix(mix(h, st->peers[i]->match), st->peers[i]->blocked);
    for (size_t i = 0; i < st->n_kv; i++) /* TTLs count down: only whether there is one */
        h = mix(h, st->kv[i]->ttl_ms >= 0);
    return h;
}

static void record_on_status(void *ctx, const struct model *m, const Raftkv__Status *st)
{
    struct recorder *r = ctx;
    if (st->id == 0 || st->id > CLUSTER_MAX_NODES)
        return;
    struct record_node *n = &r->nodes[st->id];
    uint64_t sig = status_signature(st);
    bool full =
        !n->have || sig != n->signature || m->now_ms - n->last_full_ms >= RECORD_FULL_EVERY_MS;
    if (!full) {
        if (m->now_ms - n->last_seen_ms < RECORD_SEEN_EVERY_MS)
            return;
        n->last_seen_ms = m->now_ms;
        record_begin(r, m->now_ms, "seen");
        jsonl_u64(&r->line, "node", st->id);
        jsonl_u64(&r->line, "elapsed", st->election_elapsed_ms);
        record_end(r);
        return;
    }
    n->have = true;
    n->signature = sig;
    n->last_full_ms = n->last_seen_ms = m->now_ms;
    size_t size = raftkv__status__get_packed_size(st);
    buf_reset(&r->pb);
    if (buf_reserve(&r->pb, size) != 0)
        return;
    r->pb.len = raftkv__status__pack(st, r->pb.data);
    record_begin(r, m->now_ms, "status");
    jsonl_u64(&r->line, "node", st->id);
    jsonl_u64(&r->line, "role", st->role);
    jsonl_u64(&r->line, "term", st->term);
    jsonl_u64(&r->line, "commit", st->commit_index);
    jsonl_base64(&r->line, "pb", r->pb.data, r->pb.len);
    record_end(r);
}

/* ------------------------------------------------------------ messages */

static void record_on_wire(void *ctx, const struct model *m, const struct wire_rec *w)
{
    struct recorder *r = ctx;
    uint32_t count = w->count > 1 ? w->count : 1;
    if (w->heartbeat && w->from <= CLUSTER_MAX_NODES && w->to <= CLUSTER_MAX_NODES &&
        w->type < RECORD_TYPES && w->event < 6) {
        struct record_heartbeats *hb = &r->hb[w->from][w->to][w->type][w->event];
        if (m->now_ms - hb->last_ms < RECORD_HEARTBEAT_MS) {
            hb->skipped += count;
            return;
        }
        hb->last_ms = m->now_ms;
        count += hb->skipped;
        hb->skipped = 0;
    }
    char text[WIRE_TEXT];
    struct wire_rec shown = *w;
    shown.count = count;
    wire_text(&shown, false, text, sizeof text);
    record_begin(r, m->now_ms, "msg");
    jsonl_u64(&r->line, "node", w->node);
    jsonl_u64(&r->line, "ev", w->event);
    jsonl_u64(&r->line, "type", w->type);
    jsonl_u64(&r->line, "from", w->from);
    jsonl_u64(&r->line, "to", w->to);
    jsonl_u64(&r->line, "id", w->id);
    jsonl_u64(&r->line, "term", w->term);
    /* The rest only when set: most are zero for most types. */
    struct {
        const char *key;
        uint64_t value;
        bool is_bool;
    } opt[] = {
        {"lost", w->lost, false},
        {"last_log_index", w->last_log_index, false},
        {"last_log_term", w->last_log_term, false},
        {"granted", w->granted, true},
        {"leader_hint", w->leader_hint, false},
        {"leader_ago_ms", w->leader_ago_ms, false},
        {"prev_index", w->prev_index, false},
        {"prev_term", w->prev_term, false},
        {"commit", w->commit, false},
        {"n_entries", w->n_entries, false},
        {"success", w->success, true},
        {"match_index", w->match_index, false},
        {"rejected_index", w->rejected_index, false},
        {"hint_index", w->hint_index, false},
        {"hint_term", w->hint_term, false},
        {"snapshot_index", w->snapshot_index, false},
        {"snapshot_term", w->snapshot_term, false},
        {"offset", w->offset, false},
        {"next_offset", w->next_offset, false},
        {"done", w->done, true},
        {"heartbeat", w->heartbeat, true},
        {"count", count > 1 ? count : 0, false},
    };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        if (opt[i].value != 0 && opt[i].is_bool)
            jsonl_bool(&r->line, opt[i].key, true);
        else if (opt[i].value != 0)
            jsonl_u64(&r->line, opt[i].key, opt[i].value);
    jsonl_str(&r->line, "text", text);
    record_end(r);
}

/* ------------------------------------------------------------ events, processes, commands */

static void record_on_event(void *ctx, const struct model *m, const struct model_event *e)
{
    struct recorder *r = ctx;
    record_begin(r, m->now_ms, "event");
    jsonl_str(&r->line, "kind", model_event_kind_name(e->kind));
    jsonl_u64(&r->line, "wall", e->wall_ms);
    jsonl_str(&r->line, "text", e->text);
    record_end(r);
}

static const char *const process_names[] = {
    [PROC_NOT_STARTED] = "not started",
    [PROC_RUNNING] = "running",
    [PROC_STOPPED] = "stopped",
    [PROC_EXITED] = "exited",
};

static void record_on_process(void *ctx, const struct model *m, uint32_t id, int process, int pid,
                              int exit_code)
{
    struct recorder *r = ctx;
    if (process < 0 || process > PROC_EXITED)
        return;
    r->nodes[id <= CLUSTER_MAX_NODES ? id : 0].have = false; /* a new process: its status in full */
    record_begin(r, m->now_ms, "process");
    jsonl_u64(&r->line, "node", id);
    jsonl_str(&r->line, "state", process_names[process]);
    jsonl_i64(&r->line, "pid", pid);
    jsonl_i64(&r->line, "exit", exit_code);
    record_end(r);
}

void record_attach(struct recorder *r, struct model *m)
{
    m->observer = (struct model_observer){
        .ctx = r,
        .on_status = record_on_status,
        .on_wire = record_on_wire,
        .on_event = record_on_event,
        .on_process = record_on_process,
    };
}

void record_command(struct recorder *r, uint64_t now_ms, const char *line)
{
    if (r == NULL)
        return;
    record_begin(r, now_ms, "command");
    jsonl_str(&r->line, "text", line);
    record_end(r);
}

void record_flush(struct recorder *r)
{
    if (r != NULL && r->write_errno == 0 && fflush(r->f) != 0)
        r->write_errno = errno ? errno : EIO;
}

int record_close(struct recorder *r, char *err, size_t errlen)
{
    if (r == NULL)
        return 0;
    record_flush(r);
    int rc = 0;
    if (fclose(r->f) != 0 && r->write_errno == 0)
        r->write_errno = errno ? errno : EIO;
    if (r->write_errno != 0) {
        snprintf(err, errlen, "--record %s: %s (the recording is incomplete)", r->path,
                 strerror(r->write_errno));
        rc = -1;
    }
    buf_free(&r->line);
    buf_free(&r->pb);
    free(r);
    return rc;
}

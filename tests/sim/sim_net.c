/* sim_net.c - the simulated network: every message gets a delivery time of
 * 1..max_delay_ms from now (so messages overtake each other), may be lost or
 * duplicated, and is delivered only if the link from sender to receiver is up
 * at delivery time. Randomness: xorshift64* seeded through splitmix64. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ------------------------------------------------------------ randomness */

void sim_rng_seed(struct sim_rng *g, uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull; /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    g->state = z ? z : 1;
}

uint64_t sim_rng_next(struct sim_rng *g)
{
    g->state ^= g->state >> 12;
    g->state ^= g->state << 25;
    g->state ^= g->state >> 27;
    return g->state * 0x2545f4914f6cdd1dull;
}

uint64_t sim_rng_below(struct sim_rng *g, uint64_t n)
{
    uint64_t x = sim_rng_next(g);
    return n ? x % n : 0;
}

uint64_t sim_rng_range(struct sim_rng *g, uint64_t lo, uint64_t hi)
{
    return hi <= lo ? lo : lo + sim_rng_below(g, hi - lo + 1);
}

bool sim_rng_chance(struct sim_rng *g, double p)
{
    uint64_t x = sim_rng_next(g) >> 11; /* 53 bits */
    return (double)x / (double)(1ull << 53) < p;
}

/* ------------------------------------------------------------ packets */

static bool packet_before(const struct sim_packet *a, const struct sim_packet *b)
{
    return a->deliver_ms != b->deliver_ms ? a->deliver_ms < b->deliver_ms : a->seq < b->seq;
}

static void heap_swap(struct sim_packet *a, struct sim_packet *b)
{
    struct sim_packet t = *a;
    *a = *b;
    *b = t;
}

static void heap_push(struct sim *s, const struct sim_packet *p)
{
    struct sim_net *net = &s->net;
    if (net->len == net->cap) {
        size_t cap = net->cap ? net->cap * 2 : 64;
        net->heap = sim_realloc(net->heap, cap * sizeof(*net->heap));
        net->cap = cap;
    }
    size_t i = net->len++;
    net->heap[i] = *p;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!packet_before(&net->heap[i], &net->heap[parent]))
            break;
        heap_swap(&net->heap[i], &net->heap[parent]);
        i = parent;
    }
}

bool sim_net_pop(struct sim *s, struct sim_packet *out)
{
    struct sim_net *net = &s->net;
    if (net->len == 0)
        return false;
    *out = net->heap[0];
    net->heap[0] = net->heap[--net->len];
    size_t i = 0;
    for (;;) {
        size_t left = 2 * i + 1, right = left + 1, least = i;
        if (left < net->len && packet_before(&net->heap[left], &net->heap[least]))
            least = left;
        if (right < net->len && packet_before(&net->heap[right], &net->heap[least]))
            least = right;
        if (least == i)
            break;
        heap_swap(&net->heap[i], &net->heap[least]);
        i = least;
    }
    return true;
}

void sim_packet_free(struct sim_packet *p)
{
    struct raft_entry *entries = (struct raft_entry *)p->msg.entries;
    for (size_t i = 0; i < p->msg.n_entries; i++)
        free(entries[i].data);
    free(entries);
    p->msg.entries = NULL;
    p->msg.n_entries = 0;
    free((uint8_t *)p->msg.data);
    p->msg.data = NULL;
}

/* A deep copy of m: its entries point into the sender's log, a snapshot
 * chunk into the sender's snapshot. */
static void packet_make(struct sim *s, struct sim_packet *p, const struct raft_msg *m)
{
    memset(p, 0, sizeof(*p));
    p->msg = *m;
    p->msg.entries = NULL;
    p->msg.data = NULL;
    if (m->len > 0) {
        uint8_t *data = sim_realloc(NULL, m->len);
        memcpy(data, m->data, m->len);
        p->msg.data = data;
    }
    if (m->n_entries == 0)
        return;
    s->work += m->n_entries;
    struct raft_entry *entries = sim_realloc(NULL, m->n_entries * sizeof(*entries));
    for (size_t i = 0; i < m->n_entries; i++) {
        entries[i] = m->entries[i];
        entries[i].data = NULL;
        if (m->entries[i].len > 0) {
            entries[i].data = sim_realloc(NULL, m->entries[i].len);
            memcpy(entries[i].data, m->entries[i].data, m->entries[i].len);
        }
    }
    p->msg.entries = entries;
}

void sim_net_send(struct sim *s, const struct raft_msg *m)
{
    struct sim_net *net = &s->net;
    net->sent++;
    if (sim_rng_chance(&s->rng, net->drop)) {
        net->lost++;
        if (s->verbose)
            sim_trace(s, m->from, "lost %s to %u", sim_msg_name(m->type), m->to);
        return;
    }
    int copies = sim_rng_chance(&s->rng, net->dup) ? 2 : 1;
    for (int i = 0; i < copies; i++) {
        struct sim_packet p;
        packet_make(s, &p, m);
        uint32_t max = net->max_delay_ms ? net->max_delay_ms : 1;
        p.deliver_ms = s->now + sim_rng_range(&s->rng, 1, max);
        p.seq = net->next_seq++;
        heap_push(s, &p);
    }
}

void sim_net_heal(struct sim *s)
{
    memset(s->net.cut, 0, sizeof(s->net.cut));
}

void sim_net_isolate(struct sim *s, size_t slot)
{
    for (size_t i = 0; i < s->n; i++) {
        if (i == slot)
            continue;
        s->net.cut[slot][i] = true;
        s->net.cut[i][slot] = true;
    }
}

void sim_net_free(struct sim *s)
{
    for (size_t i = 0; i < s->net.len; i++)
        sim_packet_free(&s->net.heap[i]);
    free(s->net.heap);
    s->net.heap = NULL;
    s->net.len = s->net.cap = 0;
}

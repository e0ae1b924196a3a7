/* kv_view.c - walking the store: its keys in key order (KEYS, the cockpit's
 * table), the expired ones in table order, the order a snapshot writes them
 * in, and views: what a snapshot writer reads while the store goes on
 * changing (copy-on-write, kv_internal.h).
 */
#include "kv_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- visiting */

int kv_key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

static int item_cmp(const struct kv_item *a, const struct kv_item *b)
{
    return kv_key_cmp(a->data, a->klen, b->data, b->klen);
}

static int item_ptr_cmp(const void *a, const void *b)
{
    return item_cmp(*(struct kv_item *const *)a, *(struct kv_item *const *)b);
}

static void visit(const struct kv_item *it, kv_visit_fn fn, void *ctx)
{
    fn(it->data, it->klen, kv_item_val(it), it->vlen, it->deadline_ms, ctx);
}

/* A max-heap of the smallest keys seen so far: the largest is at the top. */
static void heap_sift_up(struct kv_item **heap, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (item_cmp(heap[parent], heap[i]) >= 0)
            break;
        struct kv_item *t = heap[parent];
        heap[parent] = heap[i];
        heap[i] = t;
        i = parent;
    }
}

static void heap_sift_down(struct kv_item **heap, size_t n, size_t i)
{
    for (;;) {
        size_t largest = i, l = 2 * i + 1, r = 2 * i + 2;
        if (l < n && item_cmp(heap[l], heap[largest]) > 0)
            largest = l;
        if (r < n && item_cmp(heap[r], heap[largest]) > 0)
            largest = r;
        if (largest == i)
            return;
        struct kv_item *t = heap[largest];
        heap[largest] = heap[i];
        heap[i] = t;
        i = largest;
    }
}

/* Without memory to sort: find each next key by a full scan. */
static void foreach_by_scanning(const struct kv *kv, size_t want, kv_visit_fn fn, void *ctx)
{
    const struct kv_item *prev = NULL;
    for (size_t k = 0; k < want; k++) {
        const struct kv_item *next = NULL;
        for (size_t i = 0; i < kv->nslots; i++) {
            const struct kv_item *it = kv->slots[i];
            if (it == NULL || (prev != NULL && item_cmp(it, prev) <= 0))
                continue;
            if (next == NULL || item_cmp(it, next) < 0)
                next = it;
        }
        if (next == NULL)
            return;
        visit(next, fn, ctx);
        prev = next;
    }
}

void kv_foreach(const struct kv *kv, size_t max, kv_visit_fn fn, void *ctx)
{
    if (kv->count == 0)
        return;
    size_t want = max == 0 || max > kv->count ? kv->count : max;
    struct kv_item **pick = malloc(want * sizeof(*pick));
    if (pick == NULL) {
        foreach_by_scanning(kv, want, fn, ctx);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < kv->nslots; i++) {
        struct kv_item *it = kv->slots[i];
        if (it == NULL)
            continue;
        if (want == kv->count) {
            pick[n++] = it;
        } else if (n < want) {
            pick[n] = it;
            heap_sift_up(pick, n++);
        } else if (item_cmp(it, pick[0]) < 0) {
            pick[0] = it;
            heap_sift_down(pick, n, 0);
        }
    }
    qsort(pick, n, sizeof(*pick), item_ptr_cmp);
    for (size_t i = 0; i < n; i++)
        visit(pick[i], fn, ctx);
    free(pick);
}

/* In table order, which follows from the applied log alone. */
void kv_foreach_expired(const struct kv *kv, uint64_t now_ms, size_t max, kv_visit_fn fn, void *ctx)
{
    size_t seen_with_ttl = 0, visited = 0;
    for (size_t i = 0; i < kv->nslots && seen_with_ttl < kv->count_with_ttl; i++) {
        const struct kv_item *it = kv->slots[i];
        if (it == NULL || it->deadline_ms == 0)
            continue;
        seen_with_ttl++;
        if (it->deadline_ms <= now_ms) {
            visit(it, fn, ctx);
            if (++visited == max)
                return;
        }
    }
}

/* The rank's seed: any constant will do, as long as it never changes. */
#define SNAPSHOT_RANK_SEED 0x726b76736e617032ULL

uint64_t kv_snapshot_rank(const uint8_t *key, uint32_t klen)
{
    return kv_hash_bytes(SNAPSHOT_RANK_SEED, key, klen);
}

struct ranked_item {
    uint64_t rank;
    struct kv_item *item;
};

static int ranked_cmp(const void *a, const void *b)
{
    const struct ranked_item *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return item_cmp(x->item, y->item);
}

/* Sort by rank, then key. Ranks are spread evenly (a hash), so one pass of
 * a bucket sort on their top bits leaves a few items a bucket, each bucket
 * then sorted in place. Sorting 200,000 pointers by the keys they point at
 * took 175 ms (a cache miss a comparison); a radix sort of 16 bits a pass
 * (four passes of stores scattered over 65,536 buckets) left a 200,000-key
 * snapshot at 47 ms; with this and the arrays on huge pages, 18 ms
 * (build/snapshot-write-bench). */
#define RANK_BUCKET_ITEMS 4   /* aimed at per bucket */
#define RANK_INSERTION_MAX 24 /* larger buckets (keys made to collide) go to qsort */

static unsigned rank_bucket_bits(size_t n)
{
    unsigned bits = 1;
    while (bits < 24 && ((size_t)1 << bits) * RANK_BUCKET_ITEMS < n)
        bits++;
    return bits;
}

static void sort_bucket(struct ranked_item *v, size_t n)
{
    if (n > RANK_INSERTION_MAX) {
        qsort(v, n, sizeof(*v), ranked_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        struct ranked_item x = v[i];
        size_t j = i;
        while (j > 0 && ranked_cmp(&v[j - 1], &x) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

int kv_snapshot_items(struct kv_item **items, size_t n)
{
    if (n == 0)
        return 0;
    unsigned bits = rank_bucket_bits(n);
    size_t nbuckets = (size_t)1 << bits;
    struct ranked_item *ranked = kv_array_alloc(n * sizeof(*ranked));
    struct ranked_item *sorted = kv_array_alloc(n * sizeof(*sorted));
    size_t *start = calloc(nbuckets + 1, sizeof(*start));
    if (ranked == NULL || sorted == NULL || start == NULL) {
        kv_array_free(ranked, n * sizeof(*ranked));
        kv_array_free(sorted, n * sizeof(*sorted));
        free(start);
        return -1;
    }
    /* Rank every item and count each bucket's items. */
    for (size_t i = 0; i < n; i++) {
        /* Each item is a cache miss: ask for one a few ahead. */
        if (i + KV_PREFETCH_AHEAD < n)
            __builtin_prefetch(items[i + KV_PREFETCH_AHEAD]);
        uint64_t rank = kv_snapshot_rank(items[i]->data, items[i]->klen);
        ranked[i] = (struct ranked_item){rank, items[i]};
        start[(rank >> (64 - bits)) + 1]++;
    }
    for (size_t b = 0; b < nbuckets; b++)
        start[b + 1] += start[b];
    /* Place each in its bucket (start[b] moves to bucket b's end)... */
    for (size_t i = 0; i < n; i++)
        sorted[start[ranked[i].rank >> (64 - bits)]++] = ranked[i];
    /* ...and sort each bucket: bucket b now ends at start[b]. */
    size_t from = 0;
    for (size_t b = 0; b < nbuckets; b++) {
        sort_bucket(sorted + from, start[b] - from);
        from = start[b];
    }
    for (size_t i = 0; i < n; i++)
        items[i] = sorted[i].item;
    kv_array_free(ranked, n * sizeof(*ranked));
    kv_array_free(sorted, n * sizeof(*sorted));
    free(start);
    return 0;
}

/* ---------------------------------------------------------------- views */

void kv_view_free(struct kv_view *v)
{
    for (size_t i = 0; i < v->n_sessions; i++)
        kv_reply_free(&v->sessions[i].reply);
    free(v->sessions);
    kv_array_free(v->items, v->cap_items * sizeof(*v->items));
    free(v);
}

int kv_view_fill(const struct kv *kv, struct kv_view **out)
{
    *out = NULL;
    struct kv_view *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return -1;
    v->applied_index = kv->applied_index;
    v->digest = kv->digest;
    v->time_floor_ms = kv->time_floor_ms;
    v->cap_items = kv->count + 1;
    v->items = kv_array_alloc(v->cap_items * sizeof(*v->items));
    v->sessions = malloc((kv->nsessions > 0 ? kv->nsessions : 1) * sizeof(*v->sessions));
    if (v->items == NULL || v->sessions == NULL) {
        kv_view_free(v);
        return -1;
    }
    /* The slots only: no item is read here (that is the writer's work). */
    /* Without a branch: whether a slot is empty is a coin toss at this load,
     * and mispredicting half of them cost more than the reads. The write
     * past the last item lands in a spare place at the end. */
    struct kv_item **items = v->items;
    size_t n = 0;
    for (size_t i = 0; i < kv->nslots; i++) {
        items[n] = kv->slots[i];
        n += kv->slots[i] != NULL;
    }
    v->n_items = n;
    for (size_t i = 0; i < kv->nsessions; i++) {
        const struct kv_session *s = kv->lru[i];
        if (kv_session_expired(s, kv->time_floor_ms))
            continue;
        struct kv_session *c = &v->sessions[v->n_sessions];
        *c = *s;
        if (kv_reply_copy(&c->reply, &s->reply) != 0) {
            kv_view_free(v);
            return -1;
        }
        v->n_sessions++;
    }
    *out = v;
    return 0;
}

int kv_view_begin(struct kv *kv, struct kv_view **out)
{
    *out = NULL;
    if (kv->viewed || kv_view_fill(kv, out) != 0)
        return -1;
    kv->viewed = true;
    return 0;
}

size_t kv_view_count(const struct kv_view *v)
{
    return v->n_items;
}

void kv_view_end(struct kv *kv, struct kv_view *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < kv->n_retired; i++)
        free(kv->retired[i]);
    free(kv->retired);
    kv->retired = NULL;
    kv->n_retired = kv->cap_retired = 0;
    kv->viewed = false;
    kv_view_free(v);
}

/* kv_internal.h - what the store's files share: its layout, and the helpers
 * kv.c (the table and the commands), kv_session.c (exactly-once sessions),
 * kv_view.c (walks, a snapshot's order, views) and kv_snapshot.c (the
 * snapshot format) use across files. Not for anyone else: the public
 * interface is kv.h. */
#ifndef RAFTKV_KV_INTERNAL_H
#define RAFTKV_KV_INTERNAL_H

#include "kv.h"

struct kv_item {
    uint64_t hash;
    uint64_t deadline_ms; /* 0: no TTL */
    uint32_t klen;
    uint32_t vlen;
    uint8_t data[]; /* key, then value */
};

struct kv_session {
    uint64_t client_id;
    uint64_t seq;          /* last seq applied for this client */
    uint64_t cmd_hash;     /* kv_cmd_hash of the command applied at seq */
    uint64_t last_used_ms; /* the log's clock when a request of this client was last applied */
    size_t lru_pos;        /* index in kv->lru */
    struct kv_reply reply; /* the reply to seq */
};

struct kv {
    /* SipHash key of the table, drawn at random for each process (as Redis
     * does): keys chosen to collide for one process do not collide for
     * another. Only the table's layout depends on it, never what is stored,
     * visited in order or digested. */
    uint8_t hash_key[KV_HASH_KEY_BYTES];
    struct kv_item **slots; /* NULL: empty slot */
    size_t nslots;          /* a power of two */
    size_t count;
    size_t count_with_ttl;
    size_t item_bytes;

    struct kv_session **sessions; /* open addressing by client_id */
    size_t nsession_slots;
    size_t nsessions;
    /* The same sessions in a binary min-heap ordered by (last_used_ms,
     * client_id): the least recently used is lru[0]. nsession_slots long. */
    struct kv_session **lru;

    uint64_t applied_index;
    uint64_t digest;
    uint64_t time_floor_ms; /* the highest now_ms applied: the log's clock */

    /* While a view is open (kv_view_begin), items are never changed or freed
     * in place: a change puts a new copy in the slot and the old item goes
     * here, for kv_view_end to free. */
    bool viewed;
    struct kv_item **retired;
    size_t n_retired, cap_retired;
};

/* What kv_view_begin records: the items and the live sessions (copied: they
 * change in place) as they were, and the header's numbers. */
struct kv_view {
    struct kv_item **items; /* kv->count of them, in no order (kv_array_alloc) */
    size_t n_items, cap_items;
    struct kv_session *sessions; /* copies, replies included */
    size_t n_sessions;
    uint64_t applied_index, digest, time_floor_ms;
};
/* The large arrays a snapshot uses for a moment (the view's list, the sort's
 * arrays): from 2 MiB up, mapped apart and backed by huge pages where the
 * system allows, so the memory comes a few 2 MiB faults at a time instead of
 * one fault every 4 KiB (for a million keys, 2,000 faults on the loop when a
 * view opened); below that, malloc. Freed with the size asked for. */
void *kv_array_alloc(size_t bytes);
void kv_array_free(void *p, size_t bytes);

/* A view of kv without opening it (for a writer on the store's own thread,
 * the store unchanged meanwhile); kv_view_free frees any view's own memory. */
int kv_view_fill(const struct kv *kv, struct kv_view **out);
void kv_view_free(struct kv_view *v);

/* murmur3's 64-bit finalizer: every bit of x moves every bit of the result. */
static inline uint64_t kv_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* A word-at-a-time hash of n bytes, the same on every machine (kv.c). */
uint64_t kv_hash_bytes(uint64_t seed, const uint8_t *p, size_t n);

/* dst becomes a copy of src, text included: 0, or -1 when memory runs out. */
int kv_reply_copy(struct kv_reply *dst, const struct kv_reply *src);

/* kv_session.c: the session of a client id, or NULL; a new one (seq 0, an OK
 * reply, last used at now_ms; NULL when memory runs out); dropping one; a
 * request of its client applied at now_ms; dropping up to max sessions idle
 * at now_ms, least recently used first; freeing them all. */
struct kv_session *kv_session_find(const struct kv *kv, uint64_t client_id);
struct kv_session *kv_session_add(struct kv *kv, uint64_t client_id, uint64_t now_ms);
void kv_session_drop(struct kv *kv, struct kv_session *s);
void kv_session_touch(struct kv *kv, struct kv_session *s, uint64_t now_ms);
void kv_sessions_sweep(struct kv *kv, uint64_t now_ms, size_t max);
void kv_sessions_free(struct kv *kv);

static inline const uint8_t *kv_item_val(const struct kv_item *it)
{
    return it->data + it->klen;
}

/* Whether s has been idle for longer than KV_SESSION_IDLE_MS at now_ms. */
bool kv_session_expired(const struct kv_session *s, uint64_t now_ms);

/* A snapshot's order (kv_snapshot.c): by a key's rank, a hash of its bytes
 * that is the same in every process (not the table's keyed hash), then by
 * key bytes (kv_key_cmp) when two ranks are equal. It depends on nothing
 * but the keys, so equal stores give identical snapshots, and it sorts far
 * faster than the keys themselves. kv_snapshot_items sorts n items into
 * that order: 0, or -1 when memory runs out. */
uint64_t kv_snapshot_rank(const uint8_t *key, uint32_t klen);
/* How far ahead a walk over every item prefetches the next ones. */
#define KV_PREFETCH_AHEAD 8
int kv_snapshot_items(struct kv_item **items, size_t n);
/* Sorted by key bytes, then a shorter key first: <0, 0, >0. */
int kv_key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);

/* Building a store from a snapshot. Room for count keys without resizing;
 * then a key that is not in the store yet, with its deadline (0: none). 0, or
 * -1 when memory runs out. Its sessions come from kv_session_add. */
int kv_reserve_items(struct kv *kv, size_t count);
int kv_load_item(struct kv *kv, const uint8_t *key, uint32_t klen, const uint8_t *val,
                 uint32_t vlen, uint64_t deadline_ms);

#endif

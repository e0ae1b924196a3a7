/* kv_internal.h - what kv.c shares with kv_snapshot.c: the store's layout and
 * the few helpers a snapshot needs to write it out and build it back. Not for
 * anyone else: the public interface is kv.h. */
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
};

static inline const uint8_t *kv_item_val(const struct kv_item *it)
{
    return it->data + it->klen;
}

/* Whether s has been idle for longer than KV_SESSION_IDLE_MS at now_ms. */
bool kv_session_expired(const struct kv_session *s, uint64_t now_ms);

/* Every item, sorted by key (kv_foreach's order), in a malloc'd array of
 * kv->count pointers; *out is NULL for an empty store. 0, or -1 when memory
 * runs out. */
int kv_sorted_items(const struct kv *kv, struct kv_item ***out);
/* Sorted by key bytes, then a shorter key first: <0, 0, >0. */
int kv_key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);

/* Building a store from a snapshot. Room for count keys without resizing;
 * then a key that is not in the store yet, with its deadline (0: none); then a
 * session for a client id not in the store yet, last used at last_used_ms,
 * with seq 0 and an OK reply. 0 (or the session), or -1 (NULL) when memory
 * runs out. */
int kv_reserve_items(struct kv *kv, size_t count);
int kv_load_item(struct kv *kv, const uint8_t *key, uint32_t klen, const uint8_t *val,
                 uint32_t vlen, uint64_t deadline_ms);
struct kv_session *kv_load_session(struct kv *kv, uint64_t client_id, uint64_t last_used_ms);

#endif

/* kv.c - the key-value state machine: a hash table of keys with optional
 * deadlines, the sessions that make writes exactly-once, and the digest of
 * the applied log.
 *
 * The table uses open addressing with linear probing; a slot holds a pointer
 * to one allocation with the item's header, key and value. Deletion shifts
 * the following entries back, so there are no tombstones.
 */
#include "kv_internal.h"

#include <endian.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define KV_MIN_SLOTS 16
#define MALLOC_OVERHEAD 16 /* rough bytes the allocator adds to each block */

#define ENTRY_TAG 0x656e747279000001ULL
#define NOOP_TAG 0x6e6f6f7000000002ULL
#define CMD_TAG 0x636d640000000003ULL

/* ---------------------------------------------------------------- hashing */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Little-endian whatever the machine, so digests agree across machines. */
static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* load_le(p, 8) in one load (the compiler keeps the byte loop above). */
static uint64_t load_le64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return le64toh(w);
}

static uint64_t hash_step(uint64_t h, uint64_t w)
{
    w *= 0x87c37b91114253d5ULL;
    w = rotl64(w, 31);
    w *= 0x4cf5ad432745937fULL;
    h ^= w;
    return rotl64(h, 27) * 5 + 0x52dce729;
}

/* A word-at-a-time hash (multiply-rotate steps, murmur's finalizer). */
static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        h = hash_step(h, load_le64(p + i));
    if (i < n)
        h = hash_step(h, load_le(p + i, n - i));
    return mix64(h);
}

/* ---------------------------------------------------------------- replies */

void kv_reply_free(struct kv_reply *r)
{
    if (r == NULL)
        return;
    free(r->bulk);
    r->bulk = NULL;
    r->bulk_len = 0;
}

static void reply_error(struct kv_reply *r, const char *msg)
{
    r->type = KV_REPLY_ERR;
    snprintf(r->err, sizeof(r->err), "%s", msg);
}

static void reply_int(struct kv_reply *r, int64_t v)
{
    r->type = KV_REPLY_INT;
    r->integer = v;
}

static int reply_copy(struct kv_reply *dst, const struct kv_reply *src)
{
    *dst = *src;
    dst->bulk = NULL;
    if (src->type == KV_REPLY_BULK && src->bulk != NULL) {
        dst->bulk = malloc(src->bulk_len > 0 ? src->bulk_len : 1);
        if (dst->bulk == NULL)
            return -1;
        memcpy(dst->bulk, src->bulk, src->bulk_len);
    }
    return 0;
}

/* ---------------------------------------------------------------- large arrays */

#define HUGE_PAGE_BYTES ((size_t)2 << 20)

static size_t huge_round(size_t bytes)
{
    return (bytes + HUGE_PAGE_BYTES - 1) & ~(HUGE_PAGE_BYTES - 1);
}

void *kv_array_alloc(size_t bytes)
{
    if (bytes < HUGE_PAGE_BYTES)
        return calloc(bytes > 0 ? bytes : 1, 1);
    if (bytes > SIZE_MAX - 2 * HUGE_PAGE_BYTES)
        return NULL;
    size_t len = huge_round(bytes);
    /* Map one huge page more, then cut what lies outside an aligned run. */
    uint8_t *base = mmap(NULL, len + HUGE_PAGE_BYTES, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    uint8_t *p = (uint8_t *)huge_round((uintptr_t)base);
    if (p > base)
        munmap(base, (size_t)(p - base));
    /* p lies less than a huge page past base: something is always left. */
    munmap(p + len, HUGE_PAGE_BYTES - (size_t)(p - base));
    /* Only advice: without huge pages the array works the same. */
    (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}

void kv_array_free(void *p, size_t bytes)
{
    if (p == NULL)
        return;
    if (bytes < HUGE_PAGE_BYTES)
        free(p);
    else
        munmap(p, huge_round(bytes));
}

/* ---------------------------------------------------------------- the table */

static size_t item_size(uint32_t klen, uint32_t vlen)
{
    return sizeof(struct kv_item) + (size_t)klen + vlen + MALLOC_OVERHEAD;
}

static bool item_expired(const struct kv_item *it, uint64_t now_ms)
{
    return it->deadline_ms != 0 && it->deadline_ms <= now_ms;
}

/* The slot holding key, or SIZE_MAX. */
static size_t find_slot(const struct kv *kv, const uint8_t *key, uint32_t klen, uint64_t hash)
{
    size_t mask = kv->nslots - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const struct kv_item *it = kv->slots[i];
        if (it == NULL)
            return SIZE_MAX;
        if (it->hash == hash && it->klen == klen && memcmp(it->data, key, klen) == 0)
            return i;
    }
}

static void place_item(struct kv_item **slots, size_t nslots, struct kv_item *it)
{
    size_t mask = nslots - 1;
    size_t i = it->hash & mask;
    while (slots[i] != NULL)
        i = (i + 1) & mask;
    slots[i] = it;
}

static int resize_table(struct kv *kv, size_t nslots)
{
    struct kv_item **slots = kv_array_alloc(nslots * sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < kv->nslots; i++) {
        if (kv->slots[i] != NULL)
            place_item(slots, nslots, kv->slots[i]);
    }
    kv_array_free(kv->slots, kv->nslots * sizeof(*kv->slots));
    kv->slots = slots;
    kv->nslots = nslots;
    return 0;
}

/* Keep the load at most 3/4 after one more insertion. */
static int make_room_for_one(struct kv *kv)
{
    if ((kv->count + 1) * 4 <= kv->nslots * 3)
        return 0;
    if (kv->nslots > SIZE_MAX / 2 / sizeof(*kv->slots))
        return -1;
    return resize_table(kv, kv->nslots * 2);
}

/* A new key, without a TTL. */
static int insert_item(struct kv *kv, const uint8_t *key, uint32_t klen, uint64_t hash,
                       const uint8_t *val, uint32_t vlen)
{
    if (make_room_for_one(kv) != 0)
        return -1;
    struct kv_item *it = malloc(sizeof(*it) + (size_t)klen + vlen);
    if (it == NULL)
        return -1;
    it->hash = hash;
    it->deadline_ms = 0;
    it->klen = klen;
    it->vlen = vlen;
    if (klen > 0)
        memcpy(it->data, key, klen);
    if (vlen > 0)
        memcpy(it->data + klen, val, vlen);
    place_item(kv->slots, kv->nslots, it);
    kv->count++;
    kv->item_bytes += item_size(klen, vlen);
    return 0;
}

/* Keep an item a view may hold until the view ends. 0, or -1 when memory
 * runs out (nothing changed). */
static int retire_item(struct kv *kv, struct kv_item *it)
{
    if (kv->n_retired == kv->cap_retired) {
        size_t cap = kv->cap_retired ? kv->cap_retired * 2 : 256;
        struct kv_item **p = realloc(kv->retired, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        kv->retired = p;
        kv->cap_retired = cap;
    }
    kv->retired[kv->n_retired++] = it;
    return 0;
}

/* New value for the item in slot i; nothing changes when memory runs out. */
/* The item in slot i, made ready to change and room for a value of vlen
 * bytes (the old value kept as far as it fits): resized in place, or, while
 * a view may be reading it, a new copy in its slot and the old one retired.
 * NULL when memory runs out (nothing changed). */
static struct kv_item *item_to_change(struct kv *kv, size_t i, uint32_t vlen)
{
    struct kv_item *old = kv->slots[i];
    size_t bytes = sizeof(*old) + (size_t)old->klen + vlen;
    struct kv_item *it;
    if (kv->viewed) {
        it = malloc(bytes);
        if (it == NULL || retire_item(kv, old) != 0) {
            free(it);
            return NULL;
        }
        memcpy(it, old, sizeof(*old) + old->klen + (vlen < old->vlen ? vlen : old->vlen));
    } else {
        it = realloc(old, bytes);
        if (it == NULL)
            return NULL; /* old is untouched and still in its slot */
    }
    kv->slots[i] = it;
    return it;
}

static int replace_value(struct kv *kv, size_t i, const uint8_t *val, uint32_t vlen, bool clear_ttl)
{
    uint32_t old_vlen = kv->slots[i]->vlen;
    struct kv_item *it = item_to_change(kv, i, vlen);
    if (it == NULL)
        return -1;
    kv->item_bytes = kv->item_bytes - item_size(it->klen, old_vlen) + item_size(it->klen, vlen);
    it->vlen = vlen;
    if (vlen > 0)
        memcpy(it->data + it->klen, val, vlen);
    if (clear_ttl && it->deadline_ms != 0) {
        it->deadline_ms = 0;
        kv->count_with_ttl--;
    }
    return 0;
}

/* Delete the item in slot i and shift back the entries that probed past it. */
static void remove_slot(struct kv *kv, size_t i)
{
    struct kv_item *it = kv->slots[i];
    size_t mask = kv->nslots - 1;

    kv->count--;
    if (it->deadline_ms != 0)
        kv->count_with_ttl--;
    kv->item_bytes -= item_size(it->klen, it->vlen);
    /* With a view open it is kept for the view (or, if even that runs out
     * of memory, left allocated: the view may be writing it). */
    if (!kv->viewed)
        free(it);
    else
        (void)retire_item(kv, it);

    size_t hole = i;
    kv->slots[hole] = NULL;
    for (size_t j = (hole + 1) & mask; kv->slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = kv->slots[j]->hash & mask;
        /* The entry stays if its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            kv->slots[hole] = kv->slots[j];
            kv->slots[j] = NULL;
            hole = j;
        }
    }

    /* Shrink when mostly empty; if memory is short the table just stays big. */
    if (kv->nslots > KV_MIN_SLOTS && kv->count * 8 < kv->nslots)
        (void)resize_table(kv, kv->nslots / 2);
}

/* The slot of key if it is live at now_ms; an expired key is deleted. */
static size_t find_live(struct kv *kv, const uint8_t *key, uint32_t klen, uint64_t hash,
                        uint64_t now_ms)
{
    size_t i = find_slot(kv, key, klen, hash);
    if (i != SIZE_MAX && item_expired(kv->slots[i], now_ms)) {
        remove_slot(kv, i);
        return SIZE_MAX;
    }
    return i;
}

/* ---------------------------------------------------------------- sessions */

bool kv_session_expired(const struct kv_session *s, uint64_t now_ms)
{
    return now_ms > s->last_used_ms && now_ms - s->last_used_ms > KV_SESSION_IDLE_MS;
}

static size_t session_home(uint64_t client_id, size_t nslots)
{
    return mix64(client_id) & (nslots - 1);
}

static struct kv_session *session_find(const struct kv *kv, uint64_t client_id)
{
    if (kv->nsession_slots == 0)
        return NULL;
    size_t mask = kv->nsession_slots - 1;
    for (size_t i = session_home(client_id, kv->nsession_slots);; i = (i + 1) & mask) {
        struct kv_session *s = kv->sessions[i];
        if (s == NULL || s->client_id == client_id)
            return s;
    }
}

static void session_place(struct kv_session **slots, size_t nslots, struct kv_session *s)
{
    size_t mask = nslots - 1;
    size_t i = session_home(s->client_id, nslots);
    while (slots[i] != NULL)
        i = (i + 1) & mask;
    slots[i] = s;
}

/* Take s out of the table, shifting back the sessions that probed past it. */
static void session_unplace(struct kv *kv, const struct kv_session *s)
{
    size_t mask = kv->nsession_slots - 1;
    size_t hole = session_home(s->client_id, kv->nsession_slots);
    while (kv->sessions[hole] != s)
        hole = (hole + 1) & mask;
    kv->sessions[hole] = NULL;
    for (size_t j = (hole + 1) & mask; kv->sessions[j] != NULL; j = (j + 1) & mask) {
        size_t home = session_home(kv->sessions[j]->client_id, kv->nsession_slots);
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            kv->sessions[hole] = kv->sessions[j];
            kv->sessions[j] = NULL;
            hole = j;
        }
    }
}

/* The LRU heap: least recently used first, ties by client id, so the order
 * depends on the applied log alone. */
static bool lru_before(const struct kv_session *a, const struct kv_session *b)
{
    if (a->last_used_ms != b->last_used_ms)
        return a->last_used_ms < b->last_used_ms;
    return a->client_id < b->client_id;
}

static void lru_set(struct kv *kv, size_t i, struct kv_session *s)
{
    kv->lru[i] = s;
    s->lru_pos = i;
}

static void lru_up(struct kv *kv, size_t i)
{
    struct kv_session *s = kv->lru[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!lru_before(s, kv->lru[parent]))
            break;
        lru_set(kv, i, kv->lru[parent]);
        i = parent;
    }
    lru_set(kv, i, s);
}

static void lru_down(struct kv *kv, size_t i)
{
    struct kv_session *s = kv->lru[i];
    size_t n = kv->nsessions;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && lru_before(kv->lru[child + 1], kv->lru[child]))
            child++;
        if (!lru_before(kv->lru[child], s))
            break;
        lru_set(kv, i, kv->lru[child]);
        i = child;
    }
    lru_set(kv, i, s);
}

/* Room for one more session in the table and the heap. */
static int session_make_room(struct kv *kv)
{
    if ((kv->nsessions + 1) * 4 <= kv->nsession_slots * 3)
        return 0;
    size_t n = kv->nsession_slots == 0 ? KV_MIN_SLOTS : kv->nsession_slots * 2;
    if (n > SIZE_MAX / sizeof(struct kv_session *))
        return -1;
    struct kv_session **slots = calloc(n, sizeof(*slots));
    struct kv_session **lru = realloc(kv->lru, n * sizeof(*lru));
    if (slots == NULL || lru == NULL) {
        free(slots);
        if (lru != NULL)
            kv->lru = lru; /* a bigger heap does no harm */
        return -1;
    }
    kv->lru = lru;
    for (size_t i = 0; i < kv->nsession_slots; i++) {
        if (kv->sessions[i] != NULL)
            session_place(slots, n, kv->sessions[i]);
    }
    free(kv->sessions);
    kv->sessions = slots;
    kv->nsession_slots = n;
    return 0;
}

/* A new session with seq 0 and an OK reply, last used at now_ms. NULL when
 * memory runs out. */
static struct kv_session *session_add(struct kv *kv, uint64_t client_id, uint64_t now_ms)
{
    if (session_make_room(kv) != 0)
        return NULL;
    struct kv_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->client_id = client_id;
    s->last_used_ms = now_ms;
    s->reply.type = KV_REPLY_OK;
    session_place(kv->sessions, kv->nsession_slots, s);
    kv->nsessions++;
    lru_set(kv, kv->nsessions - 1, s);
    lru_up(kv, kv->nsessions - 1);
    return s;
}

static void session_drop(struct kv *kv, struct kv_session *s)
{
    session_unplace(kv, s);
    size_t i = s->lru_pos, last = kv->nsessions - 1;
    kv->nsessions--;
    if (i != last) {
        struct kv_session *moved = kv->lru[last];
        lru_set(kv, i, moved);
        lru_up(kv, i);
        if (moved->lru_pos == i)
            lru_down(kv, i);
    }
    kv_reply_free(&s->reply);
    free(s);
}

/* A request of this client was applied at now_ms (never before the last). */
static void session_touch(struct kv *kv, struct kv_session *s, uint64_t now_ms)
{
    if (now_ms > s->last_used_ms) {
        s->last_used_ms = now_ms;
        lru_down(kv, s->lru_pos);
    }
}

/* Drop up to max sessions that have expired at now_ms, least recently used
 * first: the work per applied command stays bounded, and since each command
 * adds at most one session, the sweep keeps up. */
static void sessions_sweep(struct kv *kv, uint64_t now_ms, size_t max)
{
    for (size_t n = 0; n < max && kv->nsessions > 0; n++) {
        if (!kv_session_expired(kv->lru[0], now_ms))
            return;
        session_drop(kv, kv->lru[0]);
    }
}

struct kv_session *kv_load_session(struct kv *kv, uint64_t client_id, uint64_t last_used_ms)
{
    return session_add(kv, client_id, last_used_ms);
}

/* ---------------------------------------------------------------- commands */

bool kv_parse_int64(const uint8_t *p, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    if (len == 1 && p[0] == '0') {
        *out = 0;
        return true;
    }
    bool negative = p[0] == '-';
    uint32_t i = negative ? 1 : 0;
    if (i >= len || p[i] < '1' || p[i] > '9')
        return false;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t digit = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    if (negative) {
        if (v > (uint64_t)INT64_MAX + 1)
            return false;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v;
    }
    return true;
}

static uint64_t key_hash_bytes(const struct kv *kv, const uint8_t *p, size_t len)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, p, len, kv->hash_key);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = (h << 8) | out[i];
    return h;
}

static uint64_t key_hash(const struct kv *kv, const struct kv_arg *key)
{
    return key_hash_bytes(kv, key->p, key->len);
}

static int do_set(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply)
{
    const struct kv_arg *key = &cmd->args[0], *val = &cmd->args[1];
    uint64_t hash = key_hash(kv, key);
    size_t i = find_live(kv, key->p, key->len, hash, cmd->now_ms);
    int rc = i == SIZE_MAX ? insert_item(kv, key->p, key->len, hash, val->p, val->len)
                           : replace_value(kv, i, val->p, val->len, true);
    if (rc != 0)
        return -1;
    reply->type = KV_REPLY_OK;
    return 0;
}

static int do_del(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply)
{
    int64_t deleted = 0;
    for (uint32_t a = 0; a < cmd->nargs; a++) {
        const struct kv_arg *key = &cmd->args[a];
        size_t i = find_live(kv, key->p, key->len, key_hash(kv, key), cmd->now_ms);
        if (i != SIZE_MAX) {
            remove_slot(kv, i);
            deleted++;
        }
    }
    reply_int(reply, deleted);
    return 0;
}

static int do_incr(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply)
{
    const struct kv_arg *key = &cmd->args[0];
    uint64_t hash = key_hash(kv, key);
    size_t i = find_live(kv, key->p, key->len, hash, cmd->now_ms);
    int64_t v = 0;
    bool valid = i == SIZE_MAX || kv_parse_int64(kv_item_val(kv->slots[i]), kv->slots[i]->vlen, &v);
    if (!valid || v == INT64_MAX) {
        reply_error(reply, "ERR value is not an integer or out of range");
        return 0;
    }
    v++;
    char text[24];
    int n = snprintf(text, sizeof(text), "%" PRId64, v);
    int rc = i == SIZE_MAX
                 ? insert_item(kv, key->p, key->len, hash, (const uint8_t *)text, (uint32_t)n)
                 : replace_value(kv, i, (const uint8_t *)text, (uint32_t)n, false);
    if (rc != 0)
        return -1;
    reply_int(reply, v);
    return 0;
}

static int do_expire(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply)
{
    const struct kv_arg *key = &cmd->args[0];
    size_t i = find_live(kv, key->p, key->len, key_hash(kv, key), cmd->now_ms);
    if (i == SIZE_MAX) {
        reply_int(reply, 0);
        return 0;
    }
    if (cmd->deadline_ms <= 0 || (uint64_t)cmd->deadline_ms <= cmd->now_ms) {
        remove_slot(kv, i);
    } else {
        struct kv_item *it = item_to_change(kv, i, kv->slots[i]->vlen);
        if (it == NULL)
            return -1;
        if (it->deadline_ms == 0)
            kv->count_with_ttl++;
        it->deadline_ms = (uint64_t)cmd->deadline_ms;
    }
    reply_int(reply, 1);
    return 0;
}

static int do_sweep(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply)
{
    const struct kv_arg *key = &cmd->args[0];
    size_t i = find_slot(kv, key->p, key->len, key_hash(kv, key));
    bool expired = i != SIZE_MAX && item_expired(kv->slots[i], cmd->now_ms);
    if (expired)
        remove_slot(kv, i);
    reply_int(reply, expired ? 1 : 0);
    return 0;
}

struct kv_op_info {
    const char *name;
    uint32_t min_args, max_args;
    int (*run)(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply);
};

static const struct kv_op_info kv_ops[] = {
    [KV_OP_SET] = {"set", 2, 2, do_set},       [KV_OP_DEL] = {"del", 1, KV_MAX_ARGS, do_del},
    [KV_OP_INCR] = {"incr", 1, 1, do_incr},    [KV_OP_EXPIRE] = {"expire", 1, 1, do_expire},
    [KV_OP_SWEEP] = {"sweep", 1, 1, do_sweep},
};

/* Check the command, then run it. 0, or -1 when memory runs out. */
static int execute(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply)
{
    if (cmd->op >= sizeof(kv_ops) / sizeof(kv_ops[0]) || kv_ops[cmd->op].run == NULL) {
        reply_error(reply, "ERR unknown command");
        return 0;
    }
    const struct kv_op_info *info = &kv_ops[cmd->op];
    if (cmd->nargs < info->min_args || cmd->nargs > info->max_args) {
        snprintf(reply->err, sizeof(reply->err), "ERR wrong number of arguments for '%s' command",
                 info->name);
        reply->type = KV_REPLY_ERR;
        return 0;
    }
    /* Every argument is a key except SET's value. */
    uint32_t nkeys = cmd->op == KV_OP_SET ? 1 : cmd->nargs;
    for (uint32_t a = 0; a < nkeys; a++) {
        if (cmd->args[a].len > KV_MAX_KEY) {
            reply_error(reply, "ERR key too large");
            return 0;
        }
    }
    if (cmd->op == KV_OP_SET && cmd->args[1].len > KV_MAX_VALUE) {
        reply_error(reply, "ERR value too large");
        return 0;
    }
    return info->run(kv, cmd, reply);
}

/* The command a client's seq stands for: its op and arguments. Not its
 * times: a retry at another leader carries another now_ms, and an EXPIRE
 * another deadline, and is still the same request. */
uint64_t kv_cmd_hash(const struct kv_cmd *cmd)
{
    uint64_t h = mix64(CMD_TAG ^ cmd->op ^ ((uint64_t)cmd->nargs << 8));
    for (uint32_t a = 0; a < cmd->nargs; a++)
        h = hash_bytes(h ^ mix64(cmd->args[a].len), cmd->args[a].p, cmd->args[a].len);
    return h;
}

/* Raft dissertation 6.3: apply a client's seq once, answer retries from the
 * session, refuse older ones. The rules are in kv.h. */
static int execute_once(struct kv *kv, const struct kv_cmd *cmd, struct kv_reply *reply)
{
    if (cmd->seq == 0) {
        reply_error(reply, "ERR sequence numbers start at 1");
        return 0;
    }
    struct kv_session *s = session_find(kv, cmd->client_id);
    if (s != NULL && kv_session_expired(s, cmd->now_ms)) {
        session_drop(kv, s);
        s = NULL;
    }
    uint64_t hash = kv_cmd_hash(cmd);
    if (s == NULL && cmd->seq != 1) {
        snprintf(reply->err, sizeof(reply->err),
                 "ERR unknown client session (expired?) for seq %" PRIu64
                 ": start a new client id at seq 1",
                 cmd->seq);
        reply->type = KV_REPLY_ERR;
        return 0;
    }
    if (s != NULL) {
        session_touch(kv, s, cmd->now_ms);
        if (cmd->seq == s->seq && hash != s->cmd_hash) {
            reply_error(reply, "ERR sequence number already used for a different command");
            return 0;
        }
        if (cmd->seq == s->seq)
            return reply_copy(reply, &s->reply);
        if (cmd->seq < s->seq) {
            snprintf(reply->err, sizeof(reply->err),
                     "ERR stale request: seq %" PRIu64 " is below the last applied %" PRIu64
                     " for this client (one request in flight per client id)",
                     cmd->seq, s->seq);
            reply->type = KV_REPLY_ERR;
            return 0;
        }
    } else {
        if (kv->nsessions >= KV_MAX_SESSIONS)
            session_drop(kv, kv->lru[0]);
        s = session_add(kv, cmd->client_id, cmd->now_ms);
        if (s == NULL)
            return -1;
    }
    if (execute(kv, cmd, reply) != 0)
        return -1;
    s->seq = cmd->seq;
    s->cmd_hash = hash;
    kv_reply_free(&s->reply);
    return reply_copy(&s->reply, reply);
}

/* ---------------------------------------------------------------- public */

struct kv *kv_new(void)
{
    if (sodium_init() < 0)
        return NULL;
    uint8_t key[KV_HASH_KEY_BYTES];
    randombytes_buf(key, sizeof(key));
    return kv_new_keyed(key);
}

struct kv *kv_new_keyed(const uint8_t key[KV_HASH_KEY_BYTES])
{
    if (sodium_init() < 0)
        return NULL;
    struct kv *kv = calloc(1, sizeof(*kv));
    if (kv == NULL)
        return NULL;
    memcpy(kv->hash_key, key, KV_HASH_KEY_BYTES);
    kv->slots = kv_array_alloc(KV_MIN_SLOTS * sizeof(*kv->slots));
    if (kv->slots == NULL) {
        free(kv);
        return NULL;
    }
    kv->nslots = KV_MIN_SLOTS;
    return kv;
}

void kv_free(struct kv *kv)
{
    if (kv == NULL)
        return;
    for (size_t i = 0; i < kv->nslots; i++)
        free(kv->slots[i]);
    kv_array_free(kv->slots, kv->nslots * sizeof(*kv->slots));
    for (size_t i = 0; i < kv->n_retired; i++)
        free(kv->retired[i]);
    free(kv->retired);
    for (size_t i = 0; i < kv->nsession_slots; i++) {
        if (kv->sessions[i] != NULL) {
            kv_reply_free(&kv->sessions[i]->reply);
            free(kv->sessions[i]);
        }
    }
    free(kv->sessions);
    free(kv->lru);
    free(kv);
}

/* The reply may be NULL when nobody waits for it. */
int kv_apply(struct kv *kv, uint64_t index, const uint8_t *data, uint32_t len,
             struct kv_reply *reply)
{
    struct kv_reply unused;
    struct kv_cmd cmd;
    int rc = 0;

    if (reply == NULL)
        reply = &unused;
    memset(reply, 0, sizeof(*reply));
    int decoded = kv_cmd_decode(data, len, &cmd);
    if (decoded == 0) {
        /* The log's clock never goes back: a leader whose clock is behind
         * the last one's applies its commands at the time already reached,
         * so a key that expired stays expired. */
        if (cmd.now_ms < kv->time_floor_ms)
            cmd.now_ms = kv->time_floor_ms;
        kv->time_floor_ms = cmd.now_ms;
        sessions_sweep(kv, cmd.now_ms, KV_SESSION_SWEEP_MAX);
    }
    if (decoded != 0)
        reply_error(reply, "ERR malformed command");
    else if (cmd.client_id == 0)
        rc = execute(kv, &cmd, reply);
    else
        rc = execute_once(kv, &cmd, reply);
    if (reply == &unused)
        kv_reply_free(&unused);
    if (rc != 0)
        return -1;

    kv->digest = hash_bytes(kv->digest ^ mix64(index ^ ENTRY_TAG), data, len);
    kv->applied_index = index;
    return 0;
}

void kv_apply_noop(struct kv *kv, uint64_t index)
{
    kv->digest = mix64(kv->digest ^ mix64(index ^ NOOP_TAG));
    kv->applied_index = index;
}

bool kv_get(const struct kv *kv, const uint8_t *key, uint32_t klen, uint64_t now_ms,
            const uint8_t **val, uint32_t *vlen)
{
    size_t i = find_slot(kv, key, klen, key_hash_bytes(kv, key, klen));
    if (i == SIZE_MAX || item_expired(kv->slots[i], now_ms))
        return false;
    *val = kv_item_val(kv->slots[i]);
    *vlen = kv->slots[i]->vlen;
    return true;
}

int64_t kv_ttl_ms(const struct kv *kv, const uint8_t *key, uint32_t klen, uint64_t now_ms)
{
    size_t i = find_slot(kv, key, klen, key_hash_bytes(kv, key, klen));
    if (i == SIZE_MAX || item_expired(kv->slots[i], now_ms))
        return -2;
    if (kv->slots[i]->deadline_ms == 0)
        return -1;
    return (int64_t)(kv->slots[i]->deadline_ms - now_ms);
}

uint64_t kv_applied_index(const struct kv *kv)
{
    return kv->applied_index;
}

uint64_t kv_digest(const struct kv *kv)
{
    return kv->digest;
}

uint64_t kv_key_hash(const struct kv *kv, const uint8_t *key, size_t len)
{
    return key_hash_bytes(kv, key, len);
}

size_t kv_longest_probe(const struct kv *kv)
{
    size_t longest = 0, mask = kv->nslots - 1;
    for (size_t i = 0; i < kv->nslots; i++) {
        const struct kv_item *it = kv->slots[i];
        if (it == NULL)
            continue;
        size_t home = it->hash & mask;
        size_t dist = (i - home) & mask;
        if (dist > longest)
            longest = dist;
    }
    return longest;
}

uint64_t kv_time_floor(const struct kv *kv)
{
    return kv->time_floor_ms;
}

/* Two independent lanes of the same hash over one key's key, value and
 * deadline; the data set's digest is the XOR of every key's, so it does not
 * depend on the table's layout or the order keys were added in. */
void kv_state_digest(const struct kv *kv, char out[KV_STATE_DIGEST_HEX + 1])
{
    static const uint64_t lane_seed[2] = {0x64696765737431ULL, 0x64696765737432ULL};
    uint64_t lanes[2] = {0, 0};
    for (size_t i = 0; i < kv->nslots; i++) {
        const struct kv_item *it = kv->slots[i];
        if (it == NULL)
            continue;
        for (int l = 0; l < 2; l++) {
            uint64_t h = hash_bytes(lane_seed[l], it->data, it->klen);
            h = hash_bytes(h, kv_item_val(it), it->vlen);
            lanes[l] ^= mix64(h ^ mix64(it->deadline_ms + lane_seed[l]));
        }
    }
    snprintf(out, KV_STATE_DIGEST_HEX + 1, "%016" PRIx64 "%016" PRIx64, lanes[0], lanes[1]);
}

/* Keys held, including expired ones not deleted yet. */
size_t kv_count(const struct kv *kv)
{
    return kv->count;
}

size_t kv_session_count(const struct kv *kv)
{
    return kv->nsessions;
}

size_t kv_count_with_ttl(const struct kv *kv)
{
    return kv->count_with_ttl;
}

size_t kv_memory(const struct kv *kv)
{
    size_t bytes = sizeof(*kv) + kv->nslots * sizeof(*kv->slots) + kv->item_bytes;
    bytes += kv->nsession_slots * (sizeof(*kv->sessions) + sizeof(*kv->lru));
    bytes += kv->nsessions * (sizeof(struct kv_session) + MALLOC_OVERHEAD);
    return bytes;
}

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
    return hash_bytes(SNAPSHOT_RANK_SEED, key, klen);
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
        if (reply_copy(&c->reply, &s->reply) != 0) {
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

/* ---------------------------------------------------------------- loading */

int kv_reserve_items(struct kv *kv, size_t count)
{
    size_t nslots = kv->nslots;
    while (count * 4 > nslots * 3) {
        if (nslots > SIZE_MAX / 4 / sizeof(*kv->slots))
            return -1;
        nslots *= 2;
    }
    return nslots == kv->nslots ? 0 : resize_table(kv, nslots);
}

int kv_load_item(struct kv *kv, const uint8_t *key, uint32_t klen, const uint8_t *val,
                 uint32_t vlen, uint64_t deadline_ms)
{
    uint64_t hash = key_hash_bytes(kv, key, klen);
    if (insert_item(kv, key, klen, hash, val, vlen) != 0)
        return -1;
    if (deadline_ms != 0) {
        size_t i = find_slot(kv, key, klen, hash);
        kv->slots[i]->deadline_ms = deadline_ms;
        kv->count_with_ttl++;
    }
    return 0;
}

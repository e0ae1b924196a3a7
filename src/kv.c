/* kv.c - the key-value state machine: a hash table of keys with optional
 * deadlines, the commands that change it (applied once per client seq, with
 * the sessions of kv_session.c), and the digest of the applied log. Walks,
 * a snapshot's order and views are in kv_view.c.
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
uint64_t kv_hash_bytes(uint64_t seed, const uint8_t *p, size_t n)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        h = hash_step(h, load_le64(p + i));
    if (i < n)
        h = hash_step(h, load_le(p + i, n - i));
    return kv_mix64(h);
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

int kv_reply_copy(struct kv_reply *dst, const struct kv_reply *src)
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
    uint64_t h = kv_mix64(CMD_TAG ^ cmd->op ^ ((uint64_t)cmd->nargs << 8));
    for (uint32_t a = 0; a < cmd->nargs; a++)
        h = kv_hash_bytes(h ^ kv_mix64(cmd->args[a].len), cmd->args[a].p, cmd->args[a].len);
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
    struct kv_session *s = kv_session_find(kv, cmd->client_id);
    if (s != NULL && kv_session_expired(s, cmd->now_ms)) {
        kv_session_drop(kv, s);
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
        kv_session_touch(kv, s, cmd->now_ms);
        if (cmd->seq == s->seq && hash != s->cmd_hash) {
            reply_error(reply, "ERR sequence number already used for a different command");
            return 0;
        }
        if (cmd->seq == s->seq)
            return kv_reply_copy(reply, &s->reply);
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
            kv_session_drop(kv, kv->lru[0]);
        s = kv_session_add(kv, cmd->client_id, cmd->now_ms);
        if (s == NULL)
            return -1;
    }
    if (execute(kv, cmd, reply) != 0)
        return -1;
    s->seq = cmd->seq;
    s->cmd_hash = hash;
    kv_reply_free(&s->reply);
    return kv_reply_copy(&s->reply, reply);
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
    kv_sessions_free(kv);
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
        kv_sessions_sweep(kv, cmd.now_ms, KV_SESSION_SWEEP_MAX);
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

    kv->digest = kv_hash_bytes(kv->digest ^ kv_mix64(index ^ ENTRY_TAG), data, len);
    kv->applied_index = index;
    return 0;
}

void kv_apply_noop(struct kv *kv, uint64_t index)
{
    kv->digest = kv_mix64(kv->digest ^ kv_mix64(index ^ NOOP_TAG));
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
            uint64_t h = kv_hash_bytes(lane_seed[l], it->data, it->klen);
            h = kv_hash_bytes(h, kv_item_val(it), it->vlen);
            lanes[l] ^= kv_mix64(h ^ kv_mix64(it->deadline_ms + lane_seed[l]));
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

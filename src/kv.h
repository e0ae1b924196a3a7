/* kv.h - the key-value state machine.
 *
 * Deterministic: applying the same log gives byte-identical state on every
 * node. It never reads the clock: each command carries the leader's time
 * (now_ms) and an EXPIRE carries an absolute deadline, so expiry is the same on
 * every replica. A key whose deadline is <= a command's now_ms (or the time
 * floor, kv_time_floor) is treated as missing by that command. Followers never expire keys on their
 * own: the leader proposes KV_OP_SWEEP entries, which delete a key only if it is still expired at
 * the entry's now_ms.
 *
 * Exactly-once writes (Raft dissertation 6.3): a command with client_id != 0
 * and a seq <= the last seq applied for that client is not applied again; it
 * gets the reply remembered for that seq.
 */
#ifndef RAFTKV_KV_H
#define RAFTKV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAX_KEY (64u * 1024u)
#define KV_MAX_VALUE (1024u * 1024u)
#define KV_MAX_ARGS 256 /* keys in one DEL */

enum kv_op {
    KV_OP_SET = 1,    /* args: key value; clears any TTL */
    KV_OP_DEL = 2,    /* args: key...; reply: number deleted */
    KV_OP_INCR = 3,   /* args: key; keeps the TTL */
    KV_OP_EXPIRE = 4, /* args: key; deadline_ms absolute; deadline <= now_ms deletes */
    KV_OP_SWEEP = 5,  /* args: key; delete it if expired at now_ms (leader's sweeper) */
};

struct kv_arg {
    const uint8_t *p;
    uint32_t len;
};

struct kv_cmd {
    uint8_t op; /* enum kv_op */
    uint64_t now_ms;
    uint64_t client_id; /* 0: no exactly-once tracking */
    uint64_t seq;
    int64_t deadline_ms; /* KV_OP_EXPIRE */
    uint32_t nargs;
    struct kv_arg args[KV_MAX_ARGS];
};

/* Redis's rule for integers: base 10, no spaces, no '+', no leading zeros,
 * at most 20 characters, within int64. */
bool kv_parse_int64(const uint8_t *p, size_t len, int64_t *out);

/* Encode into a malloc'd buffer (the log entry's data). 0 or -1. */
int kv_cmd_encode(const struct kv_cmd *cmd, uint8_t **out, uint32_t *len);
/* Decode; args point into buf. 0, or -1 for a malformed buffer. */
int kv_cmd_decode(const uint8_t *buf, uint32_t len, struct kv_cmd *cmd);
/* One line for people: "SET greeting hello", "EXPIRE k @1700000000123" (values
 * shortened to fit). Writes at most size bytes, NUL-terminated. */
void kv_cmd_describe(const uint8_t *buf, uint32_t len, char *out, size_t size);

enum kv_reply_type { KV_REPLY_OK, KV_REPLY_INT, KV_REPLY_NIL, KV_REPLY_BULK, KV_REPLY_ERR };

struct kv_reply {
    enum kv_reply_type type;
    int64_t integer;
    uint8_t *bulk; /* malloc'd, KV_REPLY_BULK */
    size_t bulk_len;
    char err[128]; /* KV_REPLY_ERR: e.g. "ERR value is not an integer or out of range" */
};
void kv_reply_free(struct kv_reply *r);

struct kv;

#define KV_HASH_KEY_BYTES 16 /* crypto_shorthash_KEYBYTES: SipHash-2-4 */
/* A store whose hash table is keyed at random (kv_new), or with the given
 * key (tests). NULL when memory or the random source fails. */
struct kv *kv_new(void);
struct kv *kv_new_keyed(const uint8_t key[KV_HASH_KEY_BYTES]);
/* The table's hash of a key, and the longest distance of any key from its
 * home slot (tests and diagnostics). */
uint64_t kv_key_hash(const struct kv *kv, const uint8_t *key, size_t len);
size_t kv_longest_probe(const struct kv *kv);
void kv_free(struct kv *kv);

/* Apply the log entry at index (data as made by kv_cmd_encode). Malformed data
 * changes nothing and gives an error reply; so does everything else that fails.
 * Returns 0, or -1 when memory runs out (fatal for the node). */
int kv_apply(struct kv *kv, uint64_t index, const uint8_t *data, uint32_t len,
             struct kv_reply *reply);
/* Record that index was applied without a command (a no-op entry). */
void kv_apply_noop(struct kv *kv, uint64_t index);

/* Reads, at a given time (the leader's clock). */
bool kv_get(const struct kv *kv, const uint8_t *key, uint32_t klen, uint64_t now_ms,
            const uint8_t **val, uint32_t *vlen);
/* Milliseconds left, -1 no TTL, -2 no such key. */
int64_t kv_ttl_ms(const struct kv *kv, const uint8_t *key, uint32_t klen, uint64_t now_ms);

uint64_t kv_applied_index(const struct kv *kv);
/* Digest of every log entry applied so far: equal at equal indexes on every
 * node. Cheap: kept up to date by kv_apply. */
uint64_t kv_digest(const struct kv *kv);
/* Digest of the data set itself (keys, values, deadlines), as DEBUG DIGEST
 * shows it: hex, all zeros for an empty store. Walks every key. */
#define KV_STATE_DIGEST_HEX 32
void kv_state_digest(const struct kv *kv, char out[KV_STATE_DIGEST_HEX + 1]);
/* The log's clock: the highest now_ms of any command applied. Commands are
 * applied at max(their now_ms, this), so time in the state machine never
 * goes back, whatever the clocks of successive leaders. */
uint64_t kv_time_floor(const struct kv *kv);
size_t kv_count(const struct kv *kv);
size_t kv_count_with_ttl(const struct kv *kv);
size_t kv_memory(const struct kv *kv); /* bytes held, roughly */

/* Visit keys in a deterministic order (sorted by key) up to max (0 = all).
 * deadline_ms is 0 when the key has no TTL. */
typedef void (*kv_visit_fn)(const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                            uint64_t deadline_ms, void *ctx);
void kv_foreach(const struct kv *kv, size_t max, kv_visit_fn fn, void *ctx);
/* Keys with deadline <= now_ms, at most max of them (the leader's sweeper). */
void kv_foreach_expired(const struct kv *kv, uint64_t now_ms, size_t max, kv_visit_fn fn,
                        void *ctx);

#endif

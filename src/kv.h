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
 * Exactly-once writes (Raft dissertation 6.3). A command with client_id != 0
 * belongs to that client's session: the last seq applied for it, a hash of
 * that command (op and arguments, kv_cmd_hash) and its reply. One request in
 * flight per client id: a client sends seq 1 first, then higher seqs (gaps
 * are allowed), and retries a request with the same seq and command until it
 * has an answer. The rules, in order, at the command's now_ms:
 *
 * - seq 0: refused, "ERR sequence numbers start at 1".
 * - A session idle for longer than KV_SESSION_IDLE_MS (no request of its
 *   client applied, by the log's clock: kv_time_floor) has expired: it is gone.
 * - No session and seq 1: a new session; the command applies.
 * - No session and seq > 1: refused, "ERR unknown client session (expired?)
 *   for seq N: start a new client id at seq 1". The session may have expired
 *   after this very request was applied, so applying it could apply it twice;
 *   refusing is safe. The client should report the request's fate as unknown
 *   if it is a retry, or send it again under a fresh client id if it is not.
 * - seq == last: the remembered reply, not applied again; but a different
 *   command under that seq is refused, "ERR sequence number already used for a
 *   different command".
 * - seq < last: refused, "ERR stale request: seq N is below the last applied M
 *   for this client (one request in flight per client id)".
 * - seq > last: the command applies and its reply is remembered.
 *
 * Every request that reaches a session (even a refused one) counts as use.
 * The number of sessions is also capped at KV_MAX_SESSIONS: adding one more
 * drops the least recently used (the smallest client id among equals). Both
 * rules depend on the applied log alone, so every replica drops the same
 * sessions at the same entry. Expired sessions are freed a few at a time as
 * commands apply (KV_SESSION_SWEEP_MAX a command); one that is not freed yet
 * is already treated as gone. What expiry cannot catch: a seq 1 retried more
 * than KV_SESSION_IDLE_MS after it was applied applies again.
 */
#ifndef RAFTKV_KV_H
#define RAFTKV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAX_KEY (64u * 1024u)
#define KV_MAX_VALUE (1024u * 1024u)
#define KV_MAX_ARGS 256 /* keys in one DEL */

#define KV_SESSION_IDLE_MS (60u * 60u * 1000u) /* a session idle longer expires */
#define KV_MAX_SESSIONS 100000u                /* more: the least recently used goes */
#define KV_SESSION_SWEEP_MAX 8                 /* expired sessions freed per command */

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
/* What a session remembers of the command at its seq: op and arguments. */
uint64_t kv_cmd_hash(const struct kv_cmd *cmd);

enum kv_reply_type { KV_REPLY_OK, KV_REPLY_INT, KV_REPLY_NIL, KV_REPLY_BULK, KV_REPLY_ERR };

struct kv_reply {
    enum kv_reply_type type;
    int64_t integer;
    uint8_t *bulk; /* malloc'd, KV_REPLY_BULK */
    size_t bulk_len;
    char err[160]; /* KV_REPLY_ERR: e.g. "ERR value is not an integer or out of range" */
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
/* Sessions held, including expired ones not freed yet. */
size_t kv_session_count(const struct kv *kv);
size_t kv_memory(const struct kv *kv); /* bytes held, roughly */

/* Visit keys in a deterministic order (sorted by key) up to max (0 = all).
 * deadline_ms is 0 when the key has no TTL. */
typedef void (*kv_visit_fn)(const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                            uint64_t deadline_ms, void *ctx);
void kv_foreach(const struct kv *kv, size_t max, kv_visit_fn fn, void *ctx);
/* Keys with deadline <= now_ms, at most max of them (the leader's sweeper). */
void kv_foreach_expired(const struct kv *kv, uint64_t now_ms, size_t max, kv_visit_fn fn,
                        void *ctx);

/* Snapshots (Raft section 7): the whole state that makes replicas identical
 * (keys with values and deadlines, live sessions, the log's clock, the applied
 * index and the log digest) as bytes; the format is described in
 * kv_snapshot.c. Equal states give identical bytes.
 *
 * kv_snapshot_write hands the bytes to write in order, in pieces of at most
 * KV_SNAPSHOT_CHUNK bytes (or one value, when larger); the store is not copied.
 * write returns 0, or -1 to stop. Returns 0, or -1 when write failed or memory
 * ran out. */
#define KV_SNAPSHOT_CHUNK (64u * 1024u)
typedef int (*kv_snapshot_write_fn)(const uint8_t *p, size_t n, void *ctx);
int kv_snapshot_write(const struct kv *kv, kv_snapshot_write_fn write, void *ctx);

/* Writing a snapshot on another thread while the store goes on changing
 * (copy-on-write, Raft section 7). kv_view_begin records which items and
 * sessions the store holds now (a pass over the table's slots, no copy of
 * the data); until kv_view_end, a change to an item puts a new copy in its
 * place and keeps the old one for the view. kv_snapshot_write_view writes
 * the view's bytes, exactly what kv_snapshot_write gave at kv_view_begin; it
 * may run on any thread while the store's thread goes on applying, once per
 * view (it frees the view's list of items as it ends, on its own thread).
 * kv_view_end, on the store's thread once the writer has finished, frees
 * the view and the items only it held. One view at a time: begin returns 0,
 * or -1 when one is open or memory runs out. */
struct kv_view;
int kv_view_begin(struct kv *kv, struct kv_view **out);
size_t kv_view_count(const struct kv_view *v); /* keys in it */
int kv_snapshot_write_view(struct kv_view *v, kv_snapshot_write_fn write, void *ctx);
void kv_view_end(struct kv *kv, struct kv_view *v);

/* A new store (its hash table keyed at random, as kv_new) from a snapshot's
 * bytes. Everything is checked; a damaged or truncated snapshot is refused
 * with a message naming the byte offset and what is wrong: "at byte 72: keys
 * out of order". Returns KV_SNAPSHOT_OK and sets *out, or an error and sets
 * err. */
enum { KV_SNAPSHOT_OK = 0, KV_SNAPSHOT_DAMAGED = -1, KV_SNAPSHOT_NOMEM = -2 };
int kv_snapshot_load(const uint8_t *data, size_t len, struct kv **out, char *err, size_t errlen);

#endif

/* kv_snapshot.c - the KV state as bytes, and back (Raft section 7).
 *
 * Layout, version 3. Integers are little-endian, unsigned unless noted;
 * "varint" is LEB128 (7 bits a byte, low first, the top bit saying another
 * byte follows), in its shortest form.
 *
 *   offset  size
 *   0       8     magic "rkvsnap\0"
 *   8       4     version (3; 1 and 2 are read too)
 *   12      4     flags (0)
 *   16      8     applied index (kv_applied_index)
 *   24      8     log digest (kv_digest)
 *   32      8     the log's clock, ms (kv_time_floor)
 *   40      8     key count
 *   48      8     session count
 *   56            key count x key, in snapshot order (kv_snapshot_rank: a
 *                 fixed hash of the key, then key bytes, a shorter key first;
 *                 version 1 sorted by key bytes alone):
 *                   varint klen (<= KV_MAX_KEY), varint vlen (<= KV_MAX_VALUE),
 *                   varint deadline_ms (0: no TTL), klen bytes key, vlen bytes
 *                   value (versions 1 and 2: u32 klen, u32 vlen, u64 deadline:
 *                   16 bytes where a short key without a TTL now takes 3)
 *                 session count x session, sorted by client id:
 *                   u64 client id (not 0), u64 last seq (>= 1),
 *                   u64 command hash (kv_cmd_hash), u64 last used ms (<= the clock),
 *                   u8 reply type (enum kv_reply_type), i64 reply integer (0 unless INT),
 *                   u32 text length, text (BULK: the value; ERR: the message,
 *                   shorter than kv_reply.err, no NUL; otherwise empty)
 *   end-4   4     CRC-32C of every byte before it
 *
 * Only sessions still live at the clock are written (an expired one not yet
 * freed is already gone for every command), so equal states give identical
 * bytes, and the loader refuses anything the writer would not write: keys or
 * sessions out of order or repeated, an expired session, counts that cannot
 * fit in the bytes that follow, trailing bytes.
 */
#include "crc32c.h"
#include "kv_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAP_MAGIC "rkvsnap"
#define SNAP_MAGIC_LEN 8
#define SNAP_VERSION 3
#define SNAP_VERSION_FIXED 2     /* fixed-size lengths and deadline */
#define SNAP_VERSION_KEY_ORDER 1 /* keys sorted by their bytes alone, fixed sizes */
#define SNAP_HEADER 56
#define SNAP_TRAILER 4
#define SNAP_KEY_FIXED 16 /* a key's lengths and deadline, versions 1 and 2 */
#define SNAP_KEY_MIN 3    /* the same as three varints, at the least */
#define VARINT_MAX 10     /* bytes of a 64-bit varint, at most */
#define SNAP_SESSION_FIXED 45

/* ---------------------------------------------------------------- writing */

struct snap_out {
    kv_snapshot_write_fn write;
    void *ctx;
    uint32_t crc;
    int failed;
    size_t len; /* bytes in buf */
    uint8_t *buf;
};

/* The CRC is taken over whole buffers as they leave, not over each field
 * as it comes in: a million calls for a few bytes each cost more than the
 * bytes. */
static void out_flush(struct snap_out *o)
{
    if (o->len > 0 && !o->failed) {
        o->crc = crc32c(o->crc, o->buf, o->len);
        if (o->write(o->buf, o->len, o->ctx) != 0)
            o->failed = 1;
    }
    o->len = 0;
}

static void out_bytes(struct snap_out *o, const void *p, size_t n)
{
    if (o->failed || n == 0)
        return;
    if (o->len + n > KV_SNAPSHOT_CHUNK)
        out_flush(o);
    if (n >= KV_SNAPSHOT_CHUNK) {
        /* A big value goes straight through. */
        o->crc = crc32c(o->crc, p, n);
        if (!o->failed && o->write(p, n, o->ctx) != 0)
            o->failed = 1;
        return;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void out_u8(struct snap_out *o, uint8_t v)
{
    out_bytes(o, &v, 1);
}

static void out_u32(struct snap_out *o, uint32_t v)
{
    uint8_t b[4];
    put_le(b, v, 4);
    out_bytes(o, b, 4);
}

static void out_u64(struct snap_out *o, uint64_t v)
{
    uint8_t b[8];
    put_le(b, v, 8);
    out_bytes(o, b, 8);
}

static void out_varint(struct snap_out *o, uint64_t v)
{
    uint8_t b[VARINT_MAX];
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    out_bytes(o, b, n);
}

static int session_id_cmp(const void *a, const void *b)
{
    const struct kv_session *x = a, *y = b;
    return (x->client_id > y->client_id) - (x->client_id < y->client_id);
}

static void out_reply(struct snap_out *o, const struct kv_reply *r)
{
    out_u8(o, (uint8_t)r->type);
    out_u64(o, r->type == KV_REPLY_INT ? (uint64_t)r->integer : 0);
    if (r->type == KV_REPLY_BULK) {
        out_u32(o, (uint32_t)r->bulk_len);
        out_bytes(o, r->bulk, r->bulk_len);
    } else if (r->type == KV_REPLY_ERR) {
        const char *nul = memchr(r->err, '\0', sizeof(r->err));
        size_t n = nul != NULL ? (size_t)(nul - r->err) : sizeof(r->err) - 1;
        out_u32(o, (uint32_t)n);
        out_bytes(o, r->err, n);
    } else {
        out_u32(o, 0);
    }
}

int kv_snapshot_write_view(struct kv_view *v, kv_snapshot_write_fn write, void *ctx)
{
    struct snap_out o = {write, ctx, 0, 0, 0, NULL};
    o.buf = malloc(KV_SNAPSHOT_CHUNK);
    if (o.buf == NULL || kv_snapshot_items(v->items, v->n_items) != 0) {
        free(o.buf);
        return -1;
    }
    qsort(v->sessions, v->n_sessions, sizeof(*v->sessions), session_id_cmp);

    uint8_t magic[SNAP_MAGIC_LEN] = SNAP_MAGIC;
    out_bytes(&o, magic, sizeof(magic));
    out_u32(&o, SNAP_VERSION);
    out_u32(&o, 0);
    out_u64(&o, v->applied_index);
    out_u64(&o, v->digest);
    out_u64(&o, v->time_floor_ms);
    out_u64(&o, v->n_items);
    out_u64(&o, v->n_sessions);
    for (size_t i = 0; i < v->n_items; i++) {
        if (i + KV_PREFETCH_AHEAD < v->n_items)
            __builtin_prefetch(v->items[i + KV_PREFETCH_AHEAD]);
        const struct kv_item *it = v->items[i];
        out_varint(&o, it->klen);
        out_varint(&o, it->vlen);
        out_varint(&o, it->deadline_ms);
        out_bytes(&o, it->data, it->klen);
        out_bytes(&o, kv_item_val(it), it->vlen);
    }
    for (size_t i = 0; i < v->n_sessions; i++) {
        const struct kv_session *s = &v->sessions[i];
        out_u64(&o, s->client_id);
        out_u64(&o, s->seq);
        out_u64(&o, s->cmd_hash);
        out_u64(&o, s->last_used_ms);
        out_reply(&o, &s->reply);
    }
    out_flush(&o); /* o.crc now covers every byte */
    uint8_t crc[4];
    put_le(crc, o.crc, 4);
    out_bytes(&o, crc, sizeof(crc));
    out_flush(&o); /* (the CRC it adds to o.crc is not used) */
    free(o.buf);
    /* Written: the list (8 bytes a key) goes now, on the writer's thread. */
    kv_array_free(v->items, v->cap_items * sizeof(*v->items));
    v->items = NULL;
    v->n_items = v->cap_items = 0;
    return o.failed ? -1 : 0;
}

int kv_snapshot_write(const struct kv *kv, kv_snapshot_write_fn write, void *ctx)
{
    struct kv_view *v;
    if (kv_view_fill(kv, &v) != 0)
        return -1;
    int rc = kv_snapshot_write_view(v, write, ctx);
    kv_view_free(v);
    return rc;
}

/* ---------------------------------------------------------------- loading */

/* A bounded reader; the first error is kept with its offset. */
struct snap_in {
    const uint8_t *p;
    size_t len; /* up to the CRC */
    size_t pos;
    char *err;
    size_t errlen;
};

static int in_fail(struct snap_in *in, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int in_fail(struct snap_in *in, size_t at, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (in->err != NULL && in->errlen > 0)
        snprintf(in->err, in->errlen, "at byte %zu: %s", at, what);
    return KV_SNAPSHOT_DAMAGED;
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static size_t in_left(const struct snap_in *in)
{
    return in->len - in->pos;
}

/* n bytes at the current position, or NULL (and an error) when fewer are left. */
static const uint8_t *in_take(struct snap_in *in, size_t n, const char *what)
{
    if (n > in_left(in)) {
        in_fail(in, in->pos, "%s: needs %zu bytes, %zu left", what, n, in_left(in));
        return NULL;
    }
    const uint8_t *p = in->p + in->pos;
    in->pos += n;
    return p;
}

static int in_u64(struct snap_in *in, uint64_t *v, const char *what)
{
    const uint8_t *p = in_take(in, 8, what);
    if (p == NULL)
        return -1;
    *v = get_le(p, 8);
    return 0;
}

static int in_u32(struct snap_in *in, uint32_t *v, const char *what)
{
    const uint8_t *p = in_take(in, 4, what);
    if (p == NULL)
        return -1;
    *v = (uint32_t)get_le(p, 4);
    return 0;
}

/* A varint in its shortest form: a longer one (a last byte of 0), or one
 * past 64 bits, is damage (the writer never makes it, and bytes that load
 * must write back the same). */
static int in_varint(struct snap_in *in, uint64_t *v, const char *what)
{
    size_t at = in->pos;
    uint64_t x = 0;
    for (unsigned i = 0; i < VARINT_MAX; i++) {
        const uint8_t *p = in_take(in, 1, what);
        if (p == NULL)
            return -1;
        if (i == VARINT_MAX - 1 && *p > 1)
            break;
        x |= (uint64_t)(*p & 0x7f) << (7 * i);
        if ((*p & 0x80) == 0) {
            if (i > 0 && *p == 0)
                return in_fail(in, at, "%s: a varint longer than it needs", what);
            *v = x;
            return 0;
        }
    }
    return in_fail(in, at, "%s: a varint past 64 bits", what);
}

struct snap_header {
    uint32_t version;
    uint64_t applied_index, digest, time_floor_ms, nkeys, nsessions;
};

static int load_header(struct snap_in *in, size_t total, struct snap_header *h)
{
    if (total < SNAP_HEADER + SNAP_TRAILER)
        return in_fail(in, total, "truncated: %zu bytes, a snapshot has at least %d", total,
                       SNAP_HEADER + SNAP_TRAILER);
    if (memcmp(in->p, SNAP_MAGIC, SNAP_MAGIC_LEN) != 0)
        return in_fail(in, 0, "not a KV snapshot (bad magic)");
    uint32_t version = (uint32_t)get_le(in->p + 8, 4);
    if (version < SNAP_VERSION_KEY_ORDER || version > SNAP_VERSION)
        return in_fail(in, 8, "unsupported version %" PRIu32 " (this build reads %d to %d)",
                       version, SNAP_VERSION_KEY_ORDER, SNAP_VERSION);
    h->version = version;
    uint32_t flags = (uint32_t)get_le(in->p + 12, 4);
    if (flags != 0)
        return in_fail(in, 12, "unknown flags 0x%" PRIx32, flags);
    uint32_t stored = (uint32_t)get_le(in->p + in->len, 4);
    uint32_t computed = crc32c(0, in->p, in->len);
    if (stored != computed)
        return in_fail(in, in->len,
                       "checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                       "): damaged or truncated",
                       stored, computed);
    in->pos = 16;
    if (in_u64(in, &h->applied_index, "applied index") != 0 ||
        in_u64(in, &h->digest, "log digest") != 0 ||
        in_u64(in, &h->time_floor_ms, "time floor") != 0 ||
        in_u64(in, &h->nkeys, "key count") != 0 || in_u64(in, &h->nsessions, "session count") != 0)
        return KV_SNAPSHOT_DAMAGED;
    /* Counts capped before anything is allocated for them. */
    size_t left = in_left(in);
    size_t key_min = version == SNAP_VERSION ? SNAP_KEY_MIN : SNAP_KEY_FIXED;
    if (h->nkeys > left / key_min)
        return in_fail(in, 40, "key count %" PRIu64 " cannot fit in the %zu bytes that follow",
                       h->nkeys, left);
    if (h->nsessions > KV_MAX_SESSIONS)
        return in_fail(in, 48, "session count %" PRIu64 " is over the cap of %u", h->nsessions,
                       KV_MAX_SESSIONS);
    if (h->nsessions > (left - h->nkeys * key_min) / SNAP_SESSION_FIXED)
        return in_fail(in, 48, "session count %" PRIu64 " cannot fit in the %zu bytes that follow",
                       h->nsessions, left);
    return KV_SNAPSHOT_OK;
}

/* Whether key comes after prev in the snapshot's order (the version's). */
static bool in_order(uint32_t version, uint64_t prev_rank, const uint8_t *prev, uint32_t prev_len,
                     uint64_t rank, const uint8_t *key, uint32_t klen)
{
    if (version != SNAP_VERSION_KEY_ORDER && rank != prev_rank)
        return rank > prev_rank;
    return kv_key_cmp(prev, prev_len, key, klen) < 0;
}

static int load_keys(struct snap_in *in, struct kv *kv, uint32_t version, uint64_t nkeys)
{
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    uint64_t prev_rank = 0;
    if (kv_reserve_items(kv, (size_t)nkeys) != 0)
        return KV_SNAPSHOT_NOMEM;
    for (uint64_t k = 0; k < nkeys; k++) {
        size_t at = in->pos, vlen_at;
        uint64_t klen, vlen, deadline;
        if (version == SNAP_VERSION) {
            if (in_varint(in, &klen, "key length") != 0)
                return KV_SNAPSHOT_DAMAGED;
            vlen_at = in->pos;
            if (in_varint(in, &vlen, "value length") != 0 ||
                in_varint(in, &deadline, "deadline") != 0)
                return KV_SNAPSHOT_DAMAGED;
        } else {
            uint32_t k32, v32;
            vlen_at = at + 4;
            if (in_u32(in, &k32, "key length") != 0 || in_u32(in, &v32, "value length") != 0 ||
                in_u64(in, &deadline, "deadline") != 0)
                return KV_SNAPSHOT_DAMAGED;
            klen = k32;
            vlen = v32;
        }
        if (klen > KV_MAX_KEY)
            return in_fail(in, at, "key %" PRIu64 " is %" PRIu64 " bytes, over %u", k, klen,
                           KV_MAX_KEY);
        if (vlen > KV_MAX_VALUE)
            return in_fail(in, vlen_at, "value of key %" PRIu64 " is %" PRIu64 " bytes, over %u", k,
                           vlen, KV_MAX_VALUE);
        uint32_t key_len = (uint32_t)klen, val_len = (uint32_t)vlen; /* checked above */
        const uint8_t *key = in_take(in, key_len, "key");
        if (key == NULL)
            return KV_SNAPSHOT_DAMAGED;
        const uint8_t *val = in_take(in, val_len, "value");
        if (val == NULL)
            return KV_SNAPSHOT_DAMAGED;
        uint64_t rank = version == SNAP_VERSION_KEY_ORDER ? 0 : kv_snapshot_rank(key, key_len);
        if (k > 0 && !in_order(version, prev_rank, prev, prev_len, rank, key, key_len))
            return in_fail(in, at, "key %" PRIu64 " out of order or repeated", k);
        if (kv_load_item(kv, key, key_len, val, val_len, deadline) != 0)
            return KV_SNAPSHOT_NOMEM;
        prev = key;
        prev_len = key_len;
        prev_rank = rank;
    }
    return KV_SNAPSHOT_OK;
}

static int load_reply(struct snap_in *in, struct kv_reply *r, uint64_t n)
{
    size_t at = in->pos;
    const uint8_t *p = in_take(in, 1, "reply type");
    uint64_t integer;
    uint32_t tlen;
    if (p == NULL || in_u64(in, &integer, "reply integer") != 0 ||
        in_u32(in, &tlen, "reply length") != 0)
        return KV_SNAPSHOT_DAMAGED;
    uint8_t type = p[0];
    if (type > KV_REPLY_ERR)
        return in_fail(in, at, "session %" PRIu64 ": unknown reply type %u", n, type);
    if (type != KV_REPLY_INT && integer != 0)
        return in_fail(in, at + 1, "session %" PRIu64 ": an integer in a reply of type %u", n,
                       type);
    if (type != KV_REPLY_BULK && type != KV_REPLY_ERR && tlen != 0)
        return in_fail(in, at + 9, "session %" PRIu64 ": text in a reply of type %u", n, type);
    if (type == KV_REPLY_BULK && tlen > KV_MAX_VALUE)
        return in_fail(in, at + 9, "session %" PRIu64 ": a reply of %" PRIu32 " bytes", n, tlen);
    if (type == KV_REPLY_ERR && (tlen == 0 || tlen >= sizeof(r->err)))
        return in_fail(in, at + 9, "session %" PRIu64 ": an error message of %" PRIu32 " bytes", n,
                       tlen);
    size_t text_at = in->pos;
    const uint8_t *text = in_take(in, tlen, "reply text");
    if (text == NULL)
        return KV_SNAPSHOT_DAMAGED;
    r->type = (enum kv_reply_type)type;
    r->integer = (int64_t)integer;
    if (type == KV_REPLY_ERR) {
        if (memchr(text, '\0', tlen) != NULL)
            return in_fail(in, text_at, "session %" PRIu64 ": a NUL in an error message", n);
        memcpy(r->err, text, tlen);
        r->err[tlen] = '\0';
    } else if (type == KV_REPLY_BULK) {
        r->bulk = malloc(tlen > 0 ? tlen : 1);
        if (r->bulk == NULL)
            return KV_SNAPSHOT_NOMEM;
        if (tlen > 0)
            memcpy(r->bulk, text, tlen);
        r->bulk_len = tlen;
    }
    return KV_SNAPSHOT_OK;
}

static int load_sessions(struct snap_in *in, struct kv *kv, uint64_t nsessions)
{
    uint64_t prev_id = 0;
    for (uint64_t n = 0; n < nsessions; n++) {
        size_t at = in->pos;
        uint64_t client_id, seq, hash, last_used;
        if (in_u64(in, &client_id, "client id") != 0 || in_u64(in, &seq, "seq") != 0 ||
            in_u64(in, &hash, "command hash") != 0 || in_u64(in, &last_used, "last used") != 0)
            return KV_SNAPSHOT_DAMAGED;
        if (client_id == 0)
            return in_fail(in, at, "session %" PRIu64 " has client id 0", n);
        if (client_id <= prev_id)
            return in_fail(in, at, "session %" PRIu64 " out of order or repeated", n);
        if (seq == 0)
            return in_fail(in, at + 8, "session %" PRIu64 " has seq 0", n);
        if (last_used > kv->time_floor_ms)
            return in_fail(in, at + 24, "session %" PRIu64 " last used after the clock", n);
        struct kv_session *s = kv_session_add(kv, client_id, last_used);
        if (s == NULL)
            return KV_SNAPSHOT_NOMEM;
        if (kv_session_expired(s, kv->time_floor_ms))
            return in_fail(in, at + 24, "session %" PRIu64 " expired", n);
        s->seq = seq;
        s->cmd_hash = hash;
        int rc = load_reply(in, &s->reply, n);
        if (rc != KV_SNAPSHOT_OK)
            return rc;
        prev_id = client_id;
    }
    return KV_SNAPSHOT_OK;
}

int kv_snapshot_load(const uint8_t *data, size_t len, struct kv **out, char *err, size_t errlen)
{
    struct snap_in in = {data, len >= SNAP_TRAILER ? len - SNAP_TRAILER : 0, 0, err, errlen};
    struct snap_header h = {0};
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (data == NULL && len > 0)
        return in_fail(&in, 0, "no data");
    int rc = load_header(&in, len, &h);
    if (rc != KV_SNAPSHOT_OK)
        return rc;

    struct kv *kv = kv_new();
    if (kv == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory (or no random source) for a new store");
        return KV_SNAPSHOT_NOMEM;
    }
    kv->applied_index = h.applied_index;
    kv->digest = h.digest;
    kv->time_floor_ms = h.time_floor_ms;
    rc = load_keys(&in, kv, h.version, h.nkeys);
    if (rc == KV_SNAPSHOT_OK)
        rc = load_sessions(&in, kv, h.nsessions);
    if (rc == KV_SNAPSHOT_OK && in.pos != in.len)
        rc = in_fail(&in, in.pos, "%zu bytes after the last session", in.len - in.pos);
    if (rc == KV_SNAPSHOT_NOMEM && err != NULL && errlen > 0)
        snprintf(err, errlen, "at byte %zu: out of memory building the store", in.pos);
    if (rc != KV_SNAPSHOT_OK) {
        kv_free(kv);
        return rc;
    }
    *out = kv;
    return KV_SNAPSHOT_OK;
}

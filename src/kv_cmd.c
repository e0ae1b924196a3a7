/* kv_cmd.c - the log entry layout of a KV command, and its one-line description.
 *
 * Layout, version 1 (integers are unsigned LEB128 varints: 7 bits a byte,
 * least significant group first, shortest form only):
 *
 *   u8      version (1)
 *   u8      op (enum kv_op)
 *   varint  now_ms
 *   varint  client_id
 *   varint  seq
 *   varint  deadline_ms, zigzag-encoded      only for KV_OP_EXPIRE
 *   varint  nargs                            <= KV_MAX_ARGS
 *   nargs x { varint len; len bytes }
 *
 * Nothing may follow the last argument, so a buffer decodes to exactly one
 * command and encoding that command gives back the same bytes.
 */
#include "kv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KV_CMD_VERSION 1
#define VARINT_MAX_BYTES 10

static bool op_is_known(uint8_t op)
{
    return op >= KV_OP_SET && op <= KV_OP_SWEEP;
}

static uint64_t zigzag_encode(int64_t v)
{
    return ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
}

static int64_t zigzag_decode(uint64_t u)
{
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A bounded reader over the entry. */
struct reader {
    const uint8_t *buf;
    uint32_t len;
    uint32_t pos;
};

static int read_u8(struct reader *r, uint8_t *out)
{
    if (r->pos >= r->len)
        return -1;
    *out = r->buf[r->pos++];
    return 0;
}

/* Shortest-form varints only: an encoding with a zero last byte (other than a
 * single 0) or more than 64 bits is refused. */
static int read_varint(struct reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < VARINT_MAX_BYTES; i++) {
        uint8_t b;
        if (read_u8(r, &b) != 0)
            return -1;
        if (i == VARINT_MAX_BYTES - 1 && b > 1)
            return -1; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            if (b == 0 && i > 0)
                return -1; /* not the shortest form */
            *out = v;
            return 0;
        }
    }
    return -1;
}

int kv_cmd_encode(const struct kv_cmd *cmd, uint8_t **out, uint32_t *len)
{
    *out = NULL;
    *len = 0;
    if (!op_is_known(cmd->op) || cmd->nargs > KV_MAX_ARGS)
        return -1;

    uint64_t size = 2 + varint_size(cmd->now_ms) + varint_size(cmd->client_id) +
                    varint_size(cmd->seq) + varint_size(cmd->nargs);
    if (cmd->op == KV_OP_EXPIRE)
        size += varint_size(zigzag_encode(cmd->deadline_ms));
    for (uint32_t i = 0; i < cmd->nargs; i++) {
        if (cmd->args[i].len > 0 && cmd->args[i].p == NULL)
            return -1;
        size += varint_size(cmd->args[i].len) + cmd->args[i].len;
    }
    if (size > UINT32_MAX)
        return -1;

    uint8_t *buf = malloc((size_t)size);
    if (buf == NULL)
        return -1;
    uint8_t *p = buf;
    *p++ = KV_CMD_VERSION;
    *p++ = cmd->op;
    p = varint_put(p, cmd->now_ms);
    p = varint_put(p, cmd->client_id);
    p = varint_put(p, cmd->seq);
    if (cmd->op == KV_OP_EXPIRE)
        p = varint_put(p, zigzag_encode(cmd->deadline_ms));
    p = varint_put(p, cmd->nargs);
    for (uint32_t i = 0; i < cmd->nargs; i++) {
        p = varint_put(p, cmd->args[i].len);
        if (cmd->args[i].len > 0)
            memcpy(p, cmd->args[i].p, cmd->args[i].len);
        p += cmd->args[i].len;
    }
    *out = buf;
    *len = (uint32_t)size;
    return 0;
}

int kv_cmd_decode(const uint8_t *buf, uint32_t len, struct kv_cmd *cmd)
{
    struct reader r = {buf, len, 0};
    uint8_t version;
    uint64_t nargs, deadline = 0;

    if (buf == NULL && len > 0)
        return -1;
    cmd->nargs = 0;
    cmd->deadline_ms = 0;
    if (read_u8(&r, &version) != 0 || version != KV_CMD_VERSION)
        return -1;
    if (read_u8(&r, &cmd->op) != 0 || !op_is_known(cmd->op))
        return -1;
    if (read_varint(&r, &cmd->now_ms) != 0 || read_varint(&r, &cmd->client_id) != 0 ||
        read_varint(&r, &cmd->seq) != 0)
        return -1;
    if (cmd->op == KV_OP_EXPIRE && read_varint(&r, &deadline) != 0)
        return -1;
    cmd->deadline_ms = zigzag_decode(deadline);
    if (read_varint(&r, &nargs) != 0 || nargs > KV_MAX_ARGS)
        return -1;
    for (uint32_t i = 0; i < (uint32_t)nargs; i++) {
        uint64_t alen;
        if (read_varint(&r, &alen) != 0 || alen > r.len - r.pos)
            return -1;
        cmd->args[i].p = r.buf + r.pos;
        cmd->args[i].len = (uint32_t)alen;
        r.pos += (uint32_t)alen;
    }
    if (r.pos != r.len)
        return -1; /* trailing bytes */
    cmd->nargs = (uint32_t)nargs;
    return 0;
}

/* ---------------------------------------------------------------- describe */

/* Writes whole units (a character or a \xNN escape) while they fit in limit
 * characters; the first unit that does not fit is replaced, together with what
 * follows, by "...". last_fit remembers where "..." can still go. */
struct desc {
    char *out;
    size_t len;
    size_t last_fit;
    bool cut;
};

static void desc_put(struct desc *d, const char *unit, size_t n, size_t limit)
{
    if (d->cut)
        return;
    if (d->len + n > limit) {
        size_t at = limit >= 3 ? d->last_fit : 0;
        size_t dots = limit >= 3 ? 3 : limit;
        memcpy(d->out + at, "...", dots);
        d->len = at + dots;
        d->cut = true;
        return;
    }
    memcpy(d->out + d->len, unit, n);
    d->len += n;
    if (limit >= 3 && d->len <= limit - 3)
        d->last_fit = d->len;
}

static void desc_text(struct desc *d, const char *s, size_t limit)
{
    for (; *s != '\0'; s++)
        desc_put(d, s, 1, limit);
}

/* Printable ASCII as is, every other byte as \xNN. */
static void desc_bytes(struct desc *d, const uint8_t *p, uint32_t n, size_t limit)
{
    for (uint32_t i = 0; i < n && !d->cut; i++) {
        char unit[5];
        if (p[i] >= 0x20 && p[i] < 0x7f) {
            unit[0] = (char)p[i];
            desc_put(d, unit, 1, limit);
        } else {
            snprintf(unit, sizeof(unit), "\\x%02x", p[i]);
            desc_put(d, unit, 4, limit);
        }
    }
}

static const char *op_name(uint8_t op)
{
    switch (op) {
    case KV_OP_SET:
        return "SET";
    case KV_OP_DEL:
        return "DEL";
    case KV_OP_INCR:
        return "INCR";
    case KV_OP_EXPIRE:
        return "EXPIRE";
    case KV_OP_SWEEP:
        return "SWEEP";
    }
    return "?";
}

/* " until 14:03:07.250": the deadline as a local time of day, to the
 * millisecond; " @<ms>" when it is not a plausible date. */
static void describe_deadline(int64_t deadline_ms, char *out, size_t size)
{
    time_t t = (time_t)(deadline_ms / 1000);
    struct tm tm;
    if (deadline_ms <= 0 || localtime_r(&t, &tm) == NULL) {
        snprintf(out, size, " @%" PRId64, deadline_ms);
        return;
    }
    snprintf(out, size, " until %02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(deadline_ms % 1000));
}

void kv_cmd_describe(const uint8_t *buf, uint32_t len, char *out, size_t size)
{
    struct kv_cmd cmd_storage;
    struct kv_cmd *cmd = &cmd_storage;
    struct desc d = {out, 0, 0, false};

    if (out == NULL || size == 0)
        return;
    size_t limit = size - 1;
    if (kv_cmd_decode(buf, len, cmd) != 0) {
        char text[48];
        snprintf(text, sizeof(text), "<malformed, %" PRIu32 " bytes>", len);
        desc_text(&d, text, limit);
        out[d.len] = '\0';
        return;
    }

    /* EXPIRE keeps room for its deadline after the key. */
    char suffix[40] = "";
    if (cmd->op == KV_OP_EXPIRE)
        describe_deadline(cmd->deadline_ms, suffix, sizeof(suffix));
    size_t args_limit = limit;
    if (strlen(suffix) + strlen("EXPIRE ...") <= limit)
        args_limit = limit - strlen(suffix);

    desc_text(&d, op_name(cmd->op), args_limit);
    for (uint32_t i = 0; i < cmd->nargs; i++) {
        desc_text(&d, " ", args_limit);
        desc_bytes(&d, cmd->args[i].p, cmd->args[i].len, args_limit);
    }
    if (args_limit < limit)
        d.cut = false; /* the room kept for the suffix */
    desc_text(&d, suffix, limit);
    out[d.len] = '\0';
}

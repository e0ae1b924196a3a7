/* jsonl.c - see jsonl.h. */
#include "jsonl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ writing */

static void jsonl_comma(struct buf *b)
{
    if (b->len > 0 && b->data[b->len - 1] != '{')
        buf_append(b, ",", 1);
}

static void jsonl_key(struct buf *b, const char *key)
{
    jsonl_comma(b);
    buf_printf(b, "\"%s\":", key);
}

void jsonl_begin(struct buf *b)
{
    buf_append(b, "{", 1);
}

void jsonl_str(struct buf *b, const char *key, const char *value)
{
    jsonl_key(b, key);
    buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p == '\n')
            buf_append_str(b, "\\n");
        else if (*p < 0x20 || *p == 0x7f)
            buf_printf(b, "\\u%04x", *p);
        else
            buf_append(b, p, 1);
    }
    buf_append(b, "\"", 1);
}

void jsonl_u64(struct buf *b, const char *key, uint64_t value)
{
    jsonl_key(b, key);
    buf_printf(b, "%" PRIu64, value);
}

void jsonl_i64(struct buf *b, const char *key, int64_t value)
{
    jsonl_key(b, key);
    buf_printf(b, "%" PRId64, value);
}

void jsonl_num(struct buf *b, const char *key, double value, int decimals)
{
    jsonl_key(b, key);
    buf_printf(b, "%.*f", decimals, isfinite(value) ? value : 0.0);
}

void jsonl_bool(struct buf *b, const char *key, bool value)
{
    jsonl_key(b, key);
    buf_append_str(b, value ? "true" : "false");
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void jsonl_base64(struct buf *b, const char *key, const uint8_t *data, size_t len)
{
    jsonl_key(b, key);
    buf_append(b, "\"", 1);
    if (buf_reserve(b, (len + 2) / 3 * 4 + 2) != 0)
        return;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        char out[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                       i + 1 < len ? b64[(v >> 6) & 63] : '=', i + 2 < len ? b64[v & 63] : '='};
        buf_append(b, out, 4);
    }
    buf_append(b, "\"", 1);
}

void jsonl_end(struct buf *b)
{
    buf_append(b, "}\n", 2);
}

/* ------------------------------------------------------------ reading */

struct jsonl_reader {
    char *p;
    char *start;
    char *err;
    size_t errlen;
};

static int jsonl_fail(struct jsonl_reader *r, const char *what)
{
    snprintf(r->err, r->errlen, "column %td: %s", r->p - r->start + 1, what);
    return -1;
}

static void jsonl_space(struct jsonl_reader *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n')
        r->p++;
}

static int jsonl_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string at r->p (after its quote is checked), unescaped in place. */
static int jsonl_string(struct jsonl_reader *r, const char **out)
{
    if (*r->p != '"')
        return jsonl_fail(r, "expected a string");
    char *w = ++r->p;
    *out = w;
    for (;;) {
        char c = *r->p;
        if (c == '\0')
            return jsonl_fail(r, "a string is not closed");
        if ((unsigned char)c < 0x20)
            return jsonl_fail(r, "a control character in a string (write it as \\uXXXX)");
        r->p++;
        if (c == '"')
            break;
        if (c != '\\') {
            *w++ = c;
            continue;
        }
        char e = *r->p++;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            *w++ = e;
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'u': {
            int v = 0;
            for (int i = 0; i < 4; i++) {
                int h = jsonl_hex(r->p[i]);
                if (h < 0)
                    return jsonl_fail(r, "bad \\u escape");
                v = v * 16 + h;
            }
            r->p += 4;
            *w++ = v < 0x80 && v > 0 ? (char)v : '?'; /* the recorder writes only ASCII */
            break;
        }
        default:
            return jsonl_fail(r, "bad escape in a string");
        }
    }
    *w = '\0';
    return 0;
}

int jsonl_parse(char *line, struct jsonl_object *o, char *err, size_t errlen)
{
    struct jsonl_reader r = {line, line, err, errlen};
    o->n = 0;
    jsonl_space(&r);
    if (*r.p != '{')
        return jsonl_fail(&r, "expected '{' (a JSON object a line)");
    r.p++;
    jsonl_space(&r);
    if (*r.p == '}') {
        r.p++;
    } else {
        for (;;) {
            jsonl_space(&r);
            if (o->n == JSONL_MAX_FIELDS)
                return jsonl_fail(&r, "too many fields");
            struct jsonl_field *f = &o->fields[o->n];
            if (jsonl_string(&r, &f->key) != 0)
                return -1;
            jsonl_space(&r);
            if (*r.p != ':')
                return jsonl_fail(&r, "expected ':' after a key");
            r.p++;
            jsonl_space(&r);
            char c = *r.p;
            if (c == '"') {
                f->type = JSONL_STRING;
                if (jsonl_string(&r, &f->str) != 0)
                    return -1;
            } else if (c == '-' || isdigit((unsigned char)c)) {
                char *end;
                errno = 0;
                f->num = strtod(r.p, &end);
                if (end == r.p || errno == ERANGE || !isfinite(f->num))
                    return jsonl_fail(&r, "bad number");
                f->type = JSONL_NUMBER;
                r.p = end;
            } else if (strncmp(r.p, "true", 4) == 0 || strncmp(r.p, "false", 5) == 0) {
                f->type = JSONL_BOOL;
                f->num = c == 't';
                r.p += c == 't' ? 4 : 5;
            } else if (strncmp(r.p, "null", 4) == 0) {
                f->type = JSONL_NULL;
                r.p += 4;
            } else if (c == '{' || c == '[') {
                return jsonl_fail(&r, "nested objects and arrays are not part of the format");
            } else {
                return jsonl_fail(&r, "expected a value");
            }
            o->n++;
            jsonl_space(&r);
            if (*r.p == ',') {
                r.p++;
                continue;
            }
            if (*r.p == '}') {
                r.p++;
                break;
            }
            return jsonl_fail(&r, "expected ',' or '}'");
        }
    }
    jsonl_space(&r);
    if (*r.p != '\0')
        return jsonl_fail(&r, "text after the object");
    return 0;
}

const struct jsonl_field *jsonl_get(const struct jsonl_object *o, const char *key)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->fields[i].key, key) == 0)
            return &o->fields[i];
    return NULL;
}

bool jsonl_get_str(const struct jsonl_object *o, const char *key, const char **out)
{
    const struct jsonl_field *f = jsonl_get(o, key);
    if (f == NULL || f->type != JSONL_STRING)
        return false;
    *out = f->str;
    return true;
}

bool jsonl_get_num(const struct jsonl_object *o, const char *key, double *out)
{
    const struct jsonl_field *f = jsonl_get(o, key);
    if (f == NULL || f->type != JSONL_NUMBER)
        return false;
    *out = f->num;
    return true;
}

bool jsonl_get_u64(const struct jsonl_object *o, const char *key, uint64_t *out)
{
    double d;
    if (!jsonl_get_num(o, key, &d) || d < 0 || d > 18446744073709549568.0 || d != floor(d))
        return false;
    *out = (uint64_t)d;
    return true;
}

bool jsonl_get_bool(const struct jsonl_object *o, const char *key, bool *out)
{
    const struct jsonl_field *f = jsonl_get(o, key);
    if (f == NULL || f->type != JSONL_BOOL)
        return false;
    *out = f->num != 0;
    return true;
}

long jsonl_base64_decode(const char *in, uint8_t *out)
{
    long n = 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t len = strlen(in);
    while (len > 0 && in[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(b64, in[i]);
        if (p == NULL || in[i] == '\0')
            return -1;
        acc = (acc << 6) | (uint32_t)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return n;
}

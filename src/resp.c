/* resp.c - the Redis protocol (RESP2).
 *
 * The reply parser is stateless: each call looks at the bytes given from the
 * start, so a caller simply calls again when more bytes arrive. The request
 * parser keeps how far it got (struct resp_parser), so that a server reading
 * a big request in many pieces does not check its start again at every read.
 * Every count is checked against its cap before anything is allocated for it.
 */
#include "error.h"
#include "resp.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A number line has at most a sign and 19 digits (int64). */
#define RESP_MAX_DIGITS 19
/* Longest header we write: a prefix, a sign, 19 digits and "\r\n". */
#define RESP_HEADER_MAX 24

enum number_result { NUMBER_BAD = -1, NUMBER_MORE = 0, NUMBER_OK = 1 };

/* A byte for an error message: itself if printable, else "\x01". */
static const char *byte_text(uint8_t c, char text[8])
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(text, 8, "%c", c);
    else
        snprintf(text, 8, "\\x%02x", c);
    return text;
}

/* Parse a decimal int64 followed by "\r\n", strictly (no '+', no leading zeros,
 * no "-0"), reading no further than end. On NUMBER_OK *next is past the "\r\n".
 * A bad character is reported at once, so the scan never runs past 20 bytes. */
static int parse_number_line(const uint8_t *p, const uint8_t *end, int64_t *value,
                             const uint8_t **next)
{
    bool negative = false;
    uint64_t magnitude = 0;
    int digits = 0;

    if (p < end && *p == '-') {
        negative = true;
        p++;
    }
    while (p < end && *p != '\r') {
        if (*p < '0' || *p > '9')
            return NUMBER_BAD;
        if (digits == RESP_MAX_DIGITS || (digits == 1 && magnitude == 0))
            return NUMBER_BAD;
        magnitude = magnitude * 10 + (uint64_t)(*p - '0');
        digits++;
        p++;
    }
    if (end - p < 2)
        return NUMBER_MORE;
    if (p[1] != '\n' || digits == 0 || (negative && magnitude == 0))
        return NUMBER_BAD;
    if (negative) {
        if (magnitude > (uint64_t)INT64_MAX + 1)
            return NUMBER_BAD;
        *value = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    } else {
        if (magnitude > (uint64_t)INT64_MAX)
            return NUMBER_BAD;
        *value = (int64_t)magnitude;
    }
    *next = p + 2;
    return NUMBER_OK;
}

/* ------------------------------------------------------------ requests */

/* Make room for n arguments. Called once a request is whole, so memory is
 * spent only on arguments that arrived. */
static int request_reserve(struct resp_request *req, size_t n)
{
    if (n <= req->cap)
        return 0;
    size_t cap = n < 8 ? 8 : n;
    const uint8_t **argv = realloc(req->argv, cap * sizeof *argv);
    if (argv == NULL)
        return -1;
    req->argv = argv;
    size_t *argl = realloc(req->argl, cap * sizeof *argl);
    if (argl == NULL)
        return -1;
    req->argl = argl;
    req->cap = cap;
    return 0;
}

/* Make room for one more inline argument; limit is the most the line can need. */
static int request_grow(struct resp_request *req, size_t limit)
{
    size_t cap = req->cap == 0 ? 8 : req->cap * 2;
    return request_reserve(req, cap < limit ? cap : limit);
}

/* parse_number_line, counting the bytes it looks at: up to *next when whole,
 * else up to end (a number line still arriving is at most 21 bytes long, as
 * a bad byte ends it at once). */
static int number_line_counted(struct resp_parser *ps, const uint8_t *p, const uint8_t *end,
                               int64_t *value, const uint8_t **next)
{
    int r = parse_number_line(p, end, value, next);
    ps->examined += (uint64_t)((r == NUMBER_OK ? *next : end) - p);
    return r;
}

/* The request [in, in + len) was checked whole: point argv at its
 * arguments. Only the headers are read again, not the data. */
static int multibulk_fill(struct resp_parser *ps, const uint8_t *in, size_t len,
                          struct resp_request *req)
{
    const uint8_t *end = in + len, *p;
    int64_t n;

    if (request_reserve(req, ps->count) < 0)
        return -1;
    number_line_counted(ps, in + 1, end, &n, &p);
    for (size_t i = 0; i < ps->count; i++) {
        const uint8_t *data;
        number_line_counted(ps, p + 1, end, &n, &data);
        req->argv[i] = data;
        req->argl[i] = (size_t)n;
        p = data + n + 2;
    }
    req->argc = ps->count;
    return 0;
}

/* "*<count>\r\n" then count times "$<len>\r\n<len bytes>\r\n", going on from
 * where the parser stopped: the data of a bulk string is never read, only
 * its length checked against what arrived and the "\r\n" after it. */
static int parse_multibulk(struct resp_parser *ps, const uint8_t *in, size_t len,
                           struct resp_request *req, size_t *consumed, char *err, size_t errlen)
{
    const uint8_t *end = in + len;
    const uint8_t *p = in + ps->checked;
    int r;

    if (!ps->multibulk) {
        int64_t count;
        r = number_line_counted(ps, in + 1, end, &count, &p);
        if (r == NUMBER_MORE)
            return RESP_PARSE_MORE;
        if (r == NUMBER_BAD || count > RESP_MAX_ARGS) {
            error_set(err, errlen, "Protocol error: invalid multibulk length");
            return RESP_PARSE_ERROR;
        }
        if (ps->unauthenticated && count > RESP_UNAUTH_MAX_ARGS) {
            error_set(err, errlen, "Protocol error: unauthenticated multibulk length");
            return RESP_PARSE_ERROR;
        }
        /* "*0" and "*-1" carry no command: consume them, as Redis does. */
        ps->multibulk = true;
        ps->count = count > 0 ? (size_t)count : 0;
        ps->checked = (size_t)(p - in);
    }
    while (ps->done < ps->count) {
        if (!ps->in_bulk) {
            const uint8_t *data;
            int64_t n;

            if (p == end)
                return RESP_PARSE_MORE;
            ps->examined++;
            if (*p != '$') {
                char text[8];
                error_set(err, errlen, "Protocol error: expected '$', got '%s'",
                          byte_text(*p, text));
                return RESP_PARSE_ERROR;
            }
            r = number_line_counted(ps, p + 1, end, &n, &data);
            if (r == NUMBER_MORE)
                return RESP_PARSE_MORE;
            if (r == NUMBER_BAD || n < 0 || n > RESP_MAX_BULK) {
                error_set(err, errlen, "Protocol error: invalid bulk length");
                return RESP_PARSE_ERROR;
            }
            if (ps->unauthenticated && n > (int64_t)RESP_UNAUTH_MAX_BULK) {
                error_set(err, errlen, "Protocol error: unauthenticated bulk length");
                return RESP_PARSE_ERROR;
            }
            ps->in_bulk = true;
            ps->bulk_len = (size_t)n;
            p = data;
            ps->checked = (size_t)(p - in);
        }
        if ((size_t)(end - p) < ps->bulk_len + 2)
            return RESP_PARSE_MORE;
        ps->examined += 2;
        if (p[ps->bulk_len] != '\r' || p[ps->bulk_len + 1] != '\n') {
            error_set(err, errlen, "Protocol error: invalid bulk length");
            return RESP_PARSE_ERROR;
        }
        p += ps->bulk_len + 2;
        ps->checked = (size_t)(p - in);
        ps->in_bulk = false;
        ps->done++;
    }
    if (multibulk_fill(ps, in, ps->checked, req) < 0) {
        error_set(err, errlen, "out of memory");
        return RESP_PARSE_ERROR;
    }
    *consumed = ps->checked;
    return RESP_PARSE_DONE;
}

static bool is_blank(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static uint8_t unescape(uint8_t c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return c;
    }
}

/* Split an inline line into arguments, as redis-cli and Redis do: blanks
 * separate arguments; "double quotes" take \n \r \t \b \a \xHH and \<any>;
 * 'single quotes' take \'; a closing quote must be followed by a blank or the
 * end. Each input byte gives at most one output byte, so the arguments fit in
 * len bytes of scratch and their pointers stay valid while we add more. */
static int split_inline(const uint8_t *line, size_t len, struct resp_request *req, char *err,
                        size_t errlen)
{
    const uint8_t *p = line, *end = line + len;
    size_t argc = 0;

    buf_reset(&req->scratch);
    if (len == 0)
        return RESP_PARSE_DONE;
    if (buf_reserve(&req->scratch, len) < 0) {
        error_set(err, errlen, "out of memory");
        return RESP_PARSE_ERROR;
    }
    uint8_t *out = req->scratch.data;

    for (;;) {
        while (p < end && is_blank(*p))
            p++;
        if (p == end)
            break;

        uint8_t *arg = out;
        enum { PLAIN, IN_DOUBLE, IN_SINGLE } mode = PLAIN;
        bool done = false;
        while (!done) {
            if (mode == PLAIN) {
                if (p == end || is_blank(*p)) {
                    done = true;
                } else if (*p == '"') {
                    mode = IN_DOUBLE;
                    p++;
                } else if (*p == '\'') {
                    mode = IN_SINGLE;
                    p++;
                } else {
                    *out++ = *p++;
                }
            } else if (p == end) {
                goto unbalanced;
            } else if (mode == IN_DOUBLE && *p == '\\' && end - p >= 4 && p[1] == 'x' &&
                       hex_value(p[2]) >= 0 && hex_value(p[3]) >= 0) {
                *out++ = (uint8_t)(hex_value(p[2]) << 4 | hex_value(p[3]));
                p += 4;
            } else if (mode == IN_DOUBLE && *p == '\\' && end - p >= 2) {
                *out++ = unescape(p[1]);
                p += 2;
            } else if (mode == IN_SINGLE && *p == '\\' && end - p >= 2 && p[1] == '\'') {
                *out++ = '\'';
                p += 2;
            } else if ((mode == IN_DOUBLE && *p == '"') || (mode == IN_SINGLE && *p == '\'')) {
                p++;
                if (p < end && !is_blank(*p))
                    goto unbalanced;
                done = true;
            } else {
                *out++ = *p++;
            }
        }

        if (argc == req->cap && request_grow(req, len) < 0) {
            error_set(err, errlen, "out of memory");
            return RESP_PARSE_ERROR;
        }
        req->argv[argc] = arg;
        req->argl[argc] = (size_t)(out - arg);
        argc++;
    }
    req->argc = argc;
    return RESP_PARSE_DONE;

unbalanced:
    error_set(err, errlen, "Protocol error: unbalanced quotes in request");
    return RESP_PARSE_ERROR;
}

/* A line ending in "\n" (or "\r\n") of at most RESP_MAX_INLINE bytes. The
 * search for the newline goes on from where the previous call stopped. */
static int parse_inline(struct resp_parser *ps, const uint8_t *in, size_t len,
                        struct resp_request *req, size_t *consumed, char *err, size_t errlen)
{
    size_t scan = len < RESP_MAX_INLINE + 1 ? len : RESP_MAX_INLINE + 1;
    const uint8_t *newline = NULL;
    if (ps->checked < scan) {
        newline = memchr(in + ps->checked, '\n', scan - ps->checked);
        size_t upto = newline != NULL ? (size_t)(newline - in) + 1 : scan;
        ps->examined += upto - ps->checked;
        ps->checked = upto;
    }
    if (newline == NULL) {
        if (len > RESP_MAX_INLINE) {
            error_set(err, errlen, "Protocol error: too big inline request");
            return RESP_PARSE_ERROR;
        }
        return RESP_PARSE_MORE;
    }
    size_t line_len = (size_t)(newline - in);
    if (line_len > 0 && in[line_len - 1] == '\r')
        line_len--;
    ps->examined += line_len;
    int r = split_inline(in, line_len, req, err, errlen);
    if (r == RESP_PARSE_DONE)
        *consumed = (size_t)(newline - in) + 1;
    return r;
}

/* Back to the start of a request; what the parser keeps over its life stays. */
static void parser_restart(struct resp_parser *ps)
{
    uint64_t examined = ps->examined;
    bool unauthenticated = ps->unauthenticated;
    memset(ps, 0, sizeof *ps);
    ps->examined = examined;
    ps->unauthenticated = unauthenticated;
}

int resp_parse_request_next(struct resp_parser *ps, const uint8_t *in, size_t len,
                            struct resp_request *req, size_t *consumed, char *err, size_t errlen)
{
    req->argc = 0;
    *consumed = 0;
    if (len < ps->checked)
        parser_restart(ps); /* not the bytes checked before: start this request again */
    if (len == 0)
        return RESP_PARSE_MORE;
    int r = in[0] == '*' ? parse_multibulk(ps, in, len, req, consumed, err, errlen)
                         : parse_inline(ps, in, len, req, consumed, err, errlen);
    if (r != RESP_PARSE_DONE)
        req->argc = 0;
    if (r != RESP_PARSE_MORE)
        parser_restart(ps); /* the next call starts a new request */
    return r;
}

int resp_parse_request(const uint8_t *in, size_t len, struct resp_request *req, size_t *consumed,
                       char *err, size_t errlen)
{
    struct resp_parser ps = {0};
    return resp_parse_request_next(&ps, in, len, req, consumed, err, errlen);
}

void resp_request_free(struct resp_request *req)
{
    free(req->argv);
    free(req->argl);
    buf_free(&req->scratch);
    memset(req, 0, sizeof *req);
}

/* ------------------------------------------------------------ writers */

/* Write prefix, the number and "\r\n" to dst (RESP_HEADER_MAX bytes of room). */
static size_t format_header(uint8_t *dst, uint8_t prefix, bool negative, uint64_t magnitude)
{
    uint8_t digits[20];
    size_t n = 0, at = 0;

    do {
        digits[n++] = (uint8_t)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude > 0);
    dst[at++] = prefix;
    if (negative)
        dst[at++] = '-';
    while (n > 0)
        dst[at++] = digits[--n];
    dst[at++] = '\r';
    dst[at++] = '\n';
    return at;
}

static int write_header(struct buf *out, uint8_t prefix, bool negative, uint64_t magnitude)
{
    if (buf_reserve(out, RESP_HEADER_MAX) < 0)
        return -1;
    out->len += format_header(out->data + out->len, prefix, negative, magnitude);
    return 0;
}

/* "+text\r\n" or "-text\r\n"; CR and LF inside would end the line, so they
 * become spaces, as in Redis. */
static int write_line(struct buf *out, uint8_t prefix, const char *s)
{
    size_t n = strlen(s);
    if (n > SIZE_MAX - 3 || buf_reserve(out, n + 3) < 0)
        return -1;
    uint8_t *dst = out->data + out->len;
    dst[0] = prefix;
    for (size_t i = 0; i < n; i++)
        dst[1 + i] = (s[i] == '\r' || s[i] == '\n') ? ' ' : (uint8_t)s[i];
    dst[n + 1] = '\r';
    dst[n + 2] = '\n';
    out->len += n + 3;
    return 0;
}

int resp_write_simple(struct buf *out, const char *s)
{
    return write_line(out, '+', s);
}

int resp_write_error(struct buf *out, const char *msg)
{
    return write_line(out, '-', msg);
}

int resp_write_int(struct buf *out, int64_t v)
{
    uint64_t magnitude = v < 0 ? -(uint64_t)v : (uint64_t)v;
    return write_header(out, ':', v < 0, magnitude);
}

/* Append one bulk string; the caller has reserved room for it. */
static void put_bulk(struct buf *out, const void *p, size_t n)
{
    out->len += format_header(out->data + out->len, '$', false, n);
    if (n > 0)
        memcpy(out->data + out->len, p, n);
    out->data[out->len + n] = '\r';
    out->data[out->len + n + 1] = '\n';
    out->len += n + 2;
}

int resp_write_bulk(struct buf *out, const void *p, size_t n)
{
    if (n > SIZE_MAX - RESP_HEADER_MAX - 2 || buf_reserve(out, RESP_HEADER_MAX + n + 2) < 0)
        return -1;
    put_bulk(out, p, n);
    return 0;
}

int resp_write_nil(struct buf *out)
{
    return buf_append(out, "$-1\r\n", 5);
}

int resp_write_array(struct buf *out, size_t n)
{
    return write_header(out, '*', false, n);
}

int resp_write_command(struct buf *out, size_t argc, const uint8_t *const *argv, const size_t *argl)
{
    /* Reserve everything first, so a failure leaves out unchanged. */
    size_t total = RESP_HEADER_MAX;
    for (size_t i = 0; i < argc; i++) {
        size_t one = RESP_HEADER_MAX + argl[i] + 2;
        if (argl[i] > SIZE_MAX / 2 || one > SIZE_MAX - total)
            return -1;
        total += one;
    }
    if (buf_reserve(out, total) < 0)
        return -1;
    out->len += format_header(out->data + out->len, '*', false, argc);
    for (size_t i = 0; i < argc; i++)
        put_bulk(out, argv[i], argl[i]);
    return 0;
}

/* ------------------------------------------------------------ replies */

static int copy_string(struct resp_value *v, const uint8_t *p, size_t n)
{
    v->str = malloc(n + 1);
    if (v->str == NULL)
        return -1;
    if (n > 0)
        memcpy(v->str, p, n);
    v->str[n] = '\0';
    v->len = n;
    return 0;
}

/* Parse one value starting at p. With v == NULL it only checks that the
 * value is whole and valid, allocating nothing; resp_parse_reply does that
 * first, so memory is allocated only for bytes that have arrived. */
static int parse_value(const uint8_t *p, const uint8_t *end, int depth, struct resp_value *v,
                       const uint8_t **next, char *err, size_t errlen)
{
    const uint8_t *data;
    int64_t n;
    int r;

    if (p == end)
        return RESP_PARSE_MORE;
    switch (*p) {
    case '+':
    case '-': {
        const uint8_t *line = p + 1;
        size_t avail = (size_t)(end - line);
        const uint8_t *cr =
            memchr(line, '\r', avail < RESP_MAX_INLINE + 1 ? avail : RESP_MAX_INLINE + 1);
        if (cr == NULL) {
            if (avail > RESP_MAX_INLINE) {
                error_set(err, errlen, "Protocol error: too big reply line");
                return RESP_PARSE_ERROR;
            }
            return RESP_PARSE_MORE;
        }
        if (cr + 1 == end)
            return RESP_PARSE_MORE;
        if (cr[1] != '\n') {
            error_set(err, errlen, "Protocol error: invalid reply line");
            return RESP_PARSE_ERROR;
        }
        if (v != NULL) {
            v->type = *p == '+' ? RESP_SIMPLE : RESP_ERROR;
            if (copy_string(v, line, (size_t)(cr - line)) < 0)
                goto out_of_memory;
        }
        *next = cr + 2;
        return RESP_PARSE_DONE;
    }
    case ':':
        r = parse_number_line(p + 1, end, &n, next);
        if (r == NUMBER_MORE)
            return RESP_PARSE_MORE;
        if (r == NUMBER_BAD) {
            error_set(err, errlen, "Protocol error: invalid integer");
            return RESP_PARSE_ERROR;
        }
        if (v != NULL) {
            v->type = RESP_INT;
            v->integer = n;
        }
        return RESP_PARSE_DONE;
    case '$':
        r = parse_number_line(p + 1, end, &n, &data);
        if (r == NUMBER_MORE)
            return RESP_PARSE_MORE;
        if (r == NUMBER_BAD || n < -1 || n > RESP_MAX_BULK) {
            error_set(err, errlen, "Protocol error: invalid bulk length");
            return RESP_PARSE_ERROR;
        }
        if (n == -1) {
            if (v != NULL)
                v->type = RESP_NIL;
            *next = data;
            return RESP_PARSE_DONE;
        }
        if ((size_t)(end - data) < (size_t)n + 2)
            return RESP_PARSE_MORE;
        if (data[n] != '\r' || data[n + 1] != '\n') {
            error_set(err, errlen, "Protocol error: invalid bulk length");
            return RESP_PARSE_ERROR;
        }
        if (v != NULL) {
            v->type = RESP_BULK;
            if (copy_string(v, data, (size_t)n) < 0)
                goto out_of_memory;
        }
        *next = data + n + 2;
        return RESP_PARSE_DONE;
    case '*':
        r = parse_number_line(p + 1, end, &n, &data);
        if (r == NUMBER_MORE)
            return RESP_PARSE_MORE;
        if (r == NUMBER_BAD || n < -1 || n > RESP_MAX_ARGS) {
            error_set(err, errlen, "Protocol error: invalid multibulk length");
            return RESP_PARSE_ERROR;
        }
        if (n == -1) {
            if (v != NULL)
                v->type = RESP_NIL;
            *next = data;
            return RESP_PARSE_DONE;
        }
        if (depth >= RESP_MAX_DEPTH) {
            error_set(err, errlen, "Protocol error: reply nested too deeply");
            return RESP_PARSE_ERROR;
        }
        if (v != NULL) {
            v->type = RESP_ARRAY;
            if (n > 0) {
                /* Zeroed elements are safe to free if we stop half way. */
                v->elems = calloc((size_t)n, sizeof *v->elems);
                if (v->elems == NULL)
                    goto out_of_memory;
                v->n = (size_t)n;
            }
        }
        for (int64_t i = 0; i < n; i++) {
            r = parse_value(data, end, depth + 1, v != NULL ? &v->elems[i] : NULL, &data, err,
                            errlen);
            if (r != RESP_PARSE_DONE)
                return r;
        }
        *next = data;
        return RESP_PARSE_DONE;
    default: {
        char text[8];
        error_set(err, errlen, "Protocol error: unknown reply type '%s'", byte_text(*p, text));
        return RESP_PARSE_ERROR;
    }
    }

out_of_memory:
    error_set(err, errlen, "out of memory");
    return RESP_PARSE_ERROR;
}

int resp_parse_reply(const uint8_t *in, size_t len, struct resp_value *out, size_t *consumed,
                     char *err, size_t errlen)
{
    const uint8_t *next = in;

    *consumed = 0;
    int r = parse_value(in, in + len, 0, NULL, &next, err, errlen);
    if (r != RESP_PARSE_DONE)
        return r;
    memset(out, 0, sizeof *out);
    r = parse_value(in, in + len, 0, out, &next, err, errlen);
    if (r != RESP_PARSE_DONE) {
        resp_value_free(out);
        return RESP_PARSE_ERROR;
    }
    *consumed = (size_t)(next - in);
    return RESP_PARSE_DONE;
}

void resp_value_free(struct resp_value *v)
{
    if (v->type == RESP_ARRAY) {
        for (size_t i = 0; i < v->n; i++)
            resp_value_free(&v->elems[i]);
        free(v->elems);
    }
    free(v->str);
    memset(v, 0, sizeof *v);
}

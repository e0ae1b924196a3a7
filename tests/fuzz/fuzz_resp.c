/* fuzz_resp.c - a libFuzzer target for the RESP parsers.
 *
 * The bytes are read as a stream of requests, then as a stream of replies,
 * as a server and a client would. Besides not crashing, every result must
 * keep the parsers' promises: a request or reply found is never found in a
 * shorter prefix, consumed bytes stay within the input, what the writers
 * produce from a parsed request or reply parses back to the same thing, and
 * the request parser fed in pieces (resp_parse_request_next) answers as it
 * does given everything from the start, and an unauthenticated parser as the
 * plain one, but for its own limits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_resp: %s\n", what);
    abort();
}

/* Reuse the same request arrays on every call, as a server does. */
static struct resp_request request, other_request;
static struct buf wire;

static int same_args(const struct resp_request *a, const struct resp_request *b)
{
    if (a->argc != b->argc)
        return 0;
    for (size_t i = 0; i < a->argc; i++) {
        if (a->argl[i] != b->argl[i] || memcmp(a->argv[i], b->argv[i], a->argl[i]) != 0)
            return 0;
    }
    return 1;
}

static void check_requests(const uint8_t *data, size_t size)
{
    char err[128];
    size_t pos = 0;

    while (pos < size) {
        const uint8_t *in = data + pos;
        size_t len = size - pos, used = 0;
        err[0] = '\0';
        int r = resp_parse_request(in, len, &request, &used, err, sizeof err);
        if (r == RESP_PARSE_ERROR) {
            if (err[0] == '\0' || request.argc != 0 || used != 0)
                fail("request error without message, or with arguments");
            return;
        }
        if (r == RESP_PARSE_MORE) {
            if (request.argc != 0 || used != 0)
                fail("request incomplete but arguments given");
            return;
        }
        if (r != RESP_PARSE_DONE || used == 0 || used > len)
            fail("request consumed a wrong number of bytes");
        if (request.argc > RESP_MAX_ARGS)
            fail("request over the argument cap");
        for (size_t i = 0; i < request.argc; i++) {
            if (request.argl[i] > RESP_MAX_BULK)
                fail("argument over the bulk cap");
            if (in[0] == '*' &&
                (request.argv[i] < in || request.argv[i] + request.argl[i] > in + used))
                fail("multibulk argument outside the request");
        }

        /* Write the request as a client would; it parses back the same. */
        if (request.argc > 0) {
            buf_reset(&wire);
            if (resp_write_command(&wire, request.argc, request.argv, request.argl) < 0)
                fail("out of memory");
            size_t back = 0;
            if (resp_parse_request(wire.data, wire.len, &other_request, &back, err, sizeof err) !=
                    RESP_PARSE_DONE ||
                back != wire.len || !same_args(&request, &other_request))
                fail("written command does not parse back the same");
        }

        /* Shorter prefixes of a whole request are incomplete. */
        size_t cuts[2] = {used - 1, used / 2};
        for (int k = 0; k < 2; k++) {
            size_t ignored;
            if (resp_parse_request(in, cuts[k], &other_request, &ignored, err, sizeof err) !=
                RESP_PARSE_MORE)
                fail("a prefix of a request is not incomplete");
        }
        pos += used;
    }
}

/* Read the bytes as a server does: they arrive in pieces (sizes taken from
 * the data itself), each arrival parsed with resp_parse_request_next going on
 * from where it stopped, each whole request consumed. Every answer must be the
 * one resp_parse_request gives on the same bytes from the start, and the
 * bytes examined must stay a small multiple of the bytes received. */
static void check_incremental(const uint8_t *data, size_t size)
{
    struct resp_parser ps = {0};
    size_t start = 0, have = 0, piece = 0, received = 0;

    while (have < size) {
        size_t n = 1 + data[piece++ % size] % 7;
        have = have + n < size ? have + n : size;
        for (;;) {
            const uint8_t *in = data + start;
            size_t len = have - start, used1 = 0, used2 = 0;
            char err1[128] = "", err2[128] = "";
            int r2 =
                resp_parse_request_next(&ps, in, len, &other_request, &used2, err2, sizeof err2);
            int r1 = resp_parse_request(in, len, &request, &used1, err1, sizeof err1);
            if (r1 != r2 || used1 != used2 || strcmp(err1, err2) != 0 ||
                !same_args(&request, &other_request))
                fail("incremental parse differs from a parse from the start");
            if (r1 == RESP_PARSE_ERROR)
                return;
            if (r1 == RESP_PARSE_MORE || len == 0)
                break;
            start += used1;
        }
        received = have;
    }
    /* Number lines cut short are read again (at most 21 bytes each time), and
     * a whole multibulk request's headers once more: 24 bytes a piece is a
     * generous bound that a parse from byte 0 each time would pass at once. */
    if (ps.examined > 3 * (uint64_t)received + 24 * (uint64_t)piece + 64)
        fail("incremental parser examined too many bytes");
}

/* An unauthenticated parser (Redis's limits before AUTH) answers as the
 * plain parser does, except that a multibulk request may end in its own
 * errors; whatever it accepts has at most 10 arguments of 16384 bytes. */
static void check_unauthenticated(const uint8_t *data, size_t size)
{
    struct resp_parser ps = {.unauthenticated = true};
    char err1[128] = "", err2[128] = "";
    size_t used1 = 0, used2 = 0;
    int r2 = resp_parse_request_next(&ps, data, size, &other_request, &used2, err2, sizeof err2);
    if (r2 == RESP_PARSE_ERROR && strstr(err2, "unauthenticated") != NULL) {
        if (size == 0 || data[0] != '*' || other_request.argc != 0 || used2 != 0)
            fail("an unauthenticated error for what is not a multibulk request");
        return;
    }
    int r1 = resp_parse_request(data, size, &request, &used1, err1, sizeof err1);
    if (r1 != r2 || used1 != used2 || strcmp(err1, err2) != 0 ||
        !same_args(&request, &other_request))
        fail("unauthenticated parse differs from the plain one below the limits");
    if (r2 == RESP_PARSE_DONE && size > 0 && data[0] == '*') {
        if (other_request.argc > RESP_UNAUTH_MAX_ARGS)
            fail("unauthenticated request over the argument limit");
        for (size_t i = 0; i < other_request.argc; i++)
            if (other_request.argl[i] > RESP_UNAUTH_MAX_BULK)
                fail("unauthenticated argument over the bulk limit");
    }
}

/* Write v back with the reply writers. */
static void write_value(struct buf *out, const struct resp_value *v)
{
    int r = 0;
    switch (v->type) {
    case RESP_SIMPLE:
        r = resp_write_simple(out, v->str);
        break;
    case RESP_ERROR:
        r = resp_write_error(out, v->str);
        break;
    case RESP_INT:
        r = resp_write_int(out, v->integer);
        break;
    case RESP_BULK:
        r = resp_write_bulk(out, v->str, v->len);
        break;
    case RESP_NIL:
        r = resp_write_nil(out);
        break;
    case RESP_ARRAY:
        r = resp_write_array(out, v->n);
        for (size_t i = 0; r == 0 && i < v->n; i++)
            write_value(out, &v->elems[i]);
        break;
    }
    if (r < 0)
        fail("out of memory");
}

/* b was parsed from what write_value made of a. Line writers turn CR and LF
 * into spaces and stop at a NUL. */
static int same_value(const struct resp_value *a, const struct resp_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case RESP_SIMPLE:
    case RESP_ERROR: {
        size_t n = strlen(a->str);
        if (b->len != n)
            return 0;
        for (size_t i = 0; i < n; i++) {
            char want = a->str[i] == '\n' || a->str[i] == '\r' ? ' ' : a->str[i];
            if (b->str[i] != want)
                return 0;
        }
        return 1;
    }
    case RESP_INT:
        return a->integer == b->integer;
    case RESP_BULK:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0 && b->str[b->len] == '\0';
    case RESP_NIL:
        return 1;
    case RESP_ARRAY:
        if (a->n != b->n)
            return 0;
        for (size_t i = 0; i < a->n; i++) {
            if (!same_value(&a->elems[i], &b->elems[i]))
                return 0;
        }
        return 1;
    }
    return 0;
}

static void check_replies(const uint8_t *data, size_t size)
{
    char err[128];
    size_t pos = 0;

    while (pos < size) {
        const uint8_t *in = data + pos;
        size_t len = size - pos, used = 0;
        struct resp_value value;
        err[0] = '\0';
        int r = resp_parse_reply(in, len, &value, &used, err, sizeof err);
        if (r == RESP_PARSE_ERROR) {
            if (err[0] == '\0' || used != 0)
                fail("reply error without message");
            return;
        }
        if (r == RESP_PARSE_MORE) {
            if (used != 0)
                fail("reply incomplete but bytes consumed");
            return;
        }
        if (r != RESP_PARSE_DONE || used == 0 || used > len)
            fail("reply consumed a wrong number of bytes");

        buf_reset(&wire);
        write_value(&wire, &value);
        struct resp_value back;
        size_t back_used = 0;
        if (resp_parse_reply(wire.data, wire.len, &back, &back_used, err, sizeof err) !=
            RESP_PARSE_DONE)
            fail("written reply does not parse");
        if (back_used != wire.len || !same_value(&value, &back))
            fail("written reply parses back different");
        resp_value_free(&back);
        resp_value_free(&value);

        size_t ignored;
        struct resp_value unused;
        if (resp_parse_reply(in, used - 1, &unused, &ignored, err, sizeof err) != RESP_PARSE_MORE)
            fail("a prefix of a reply is not incomplete");
        pos += used;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_requests(data, size);
    check_incremental(data, size);
    check_unauthenticated(data, size);
    check_replies(data, size);
    return 0;
}

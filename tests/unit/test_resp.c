/* test_resp.c - the RESP2 request parser, reply parser and writers, and buf. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "check.h"
#include "resp.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

/* A request sample and the arguments it must give. */
struct sample {
    const char *bytes;
    size_t len;
    size_t argc;
    const char *args[4];
    size_t argl[4];
};

#define SAMPLE(s, n, ...)                                                                          \
    {                                                                                              \
        s, sizeof(s) - 1, n, __VA_ARGS__                                                           \
    }

static const struct sample samples[] = {
    SAMPLE("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 2, {"GET", "k"}, {3, 1}),
    SAMPLE("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$6\r\na\r\nb\0c\r\n", 3, {"SET", "", "a\r\nb\0c"},
           {3, 0, 6}),
    SAMPLE("*1\r\n$4\r\nPING\r\n", 1, {"PING"}, {4}),
    SAMPLE("*0\r\n", 0, {NULL}, {0}),
    SAMPLE("*-1\r\n", 0, {NULL}, {0}),
    SAMPLE("PING\n", 1, {"PING"}, {4}),
    SAMPLE("SET k \"hello world\"\r\n", 3, {"SET", "k", "hello world"}, {3, 1, 11}),
    SAMPLE("SET 'it\\'s' \"a\\x41\\n\"\r\n", 3, {"SET", "it's", "aA\n"}, {3, 4, 3}),
    SAMPLE("  GET \t k  \r\n", 2, {"GET", "k"}, {3, 1}),
    SAMPLE("\r\n", 0, {NULL}, {0}),
    SAMPLE("\n", 0, {NULL}, {0}),
};

/* Parse exactly len bytes from a heap copy of that size, so that ASan
 * notices any read past the end. */
static int parse_exact(const uint8_t *bytes, size_t len, struct resp_request *req, size_t *consumed,
                       char *err, size_t errlen)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, bytes, len);
    err[0] = '\0';
    int r = resp_parse_request(copy, len, req, consumed, err, errlen);
    /* Arguments point into copy: compare them before it goes. */
    static uint8_t saved[4][64];
    for (size_t i = 0; r == RESP_PARSE_DONE && i < req->argc && i < 4; i++) {
        size_t n = req->argl[i] < 64 ? req->argl[i] : 64;
        memcpy(saved[i], req->argv[i], n);
        req->argv[i] = saved[i];
    }
    free(copy);
    return r;
}

static int args_equal(const struct resp_request *req, const struct sample *s)
{
    if (req->argc != s->argc)
        return 0;
    for (size_t i = 0; i < s->argc; i++) {
        if (req->argl[i] != s->argl[i] || memcmp(req->argv[i], s->args[i], s->argl[i]) != 0)
            return 0;
    }
    return 1;
}

/* Every proper prefix of a request is MORE; the whole of it is DONE. */
static void test_split_everywhere(void)
{
    struct resp_request req = {0};
    char err[128];
    size_t consumed;

    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
        const struct sample *sample = &samples[s];
        const uint8_t *bytes = (const uint8_t *)sample->bytes;
        int prefixes_ok = 1;
        for (size_t k = 0; k < sample->len; k++) {
            int r = parse_exact(bytes, k, &req, &consumed, err, sizeof err);
            if (r != RESP_PARSE_MORE || consumed != 0 || req.argc != 0) {
                fprintf(stderr, "sample %zu, prefix %zu: result %d (%s)\n", s, k, r, err);
                prefixes_ok = 0;
            }
        }
        CHECK(prefixes_ok);
        int r = parse_exact(bytes, sample->len, &req, &consumed, err, sizeof err);
        CHECK_INT_EQ(r, RESP_PARSE_DONE);
        CHECK_INT_EQ(consumed, sample->len);
        CHECK(args_equal(&req, sample));
    }
    resp_request_free(&req);
}

/* All samples back to back, fed to a receive buffer a few bytes at a time, as
 * a server does: parse after each arrival, consume each request found. */
static void test_trickle_pipeline(void)
{
    struct buf stream = {0}, inbox = {0};
    struct resp_request req = {0};
    char err[128];
    size_t nsamples = sizeof samples / sizeof samples[0];

    for (size_t s = 0; s < nsamples; s++)
        CHECK_INT_EQ(buf_append(&stream, samples[s].bytes, samples[s].len), 0);

    for (size_t chunk = 1; chunk <= 7; chunk++) {
        size_t fed = 0, found = 0, matched = 0;
        buf_reset(&inbox);
        while (fed < stream.len) {
            size_t n = stream.len - fed < chunk ? stream.len - fed : chunk;
            CHECK_INT_EQ(buf_append(&inbox, stream.data + fed, n), 0);
            fed += n;
            for (;;) {
                size_t consumed;
                int r = resp_parse_request(inbox.data, inbox.len, &req, &consumed, err, sizeof err);
                if (r != RESP_PARSE_DONE) {
                    CHECK_INT_EQ(r, RESP_PARSE_MORE);
                    break;
                }
                if (found < nsamples && args_equal(&req, &samples[found]))
                    matched++;
                found++;
                buf_consume(&inbox, consumed);
            }
        }
        CHECK_INT_EQ(found, nsamples);
        CHECK_INT_EQ(matched, nsamples);
        CHECK_INT_EQ(inbox.len, 0);
    }
    resp_request_free(&req);
    buf_free(&stream);
    buf_free(&inbox);
}

static void test_pipelined(void)
{
    static const char in[] = "*1\r\n$4\r\nPING\r\n"
                             "SET a b\r\n"
                             "*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
                             "\r\n"
                             "*3\r\n$4\r\nINCR\r\n$3\r\nctr\r\n$1\r\nx\r\n";
    const uint8_t *p = (const uint8_t *)in;
    size_t left = sizeof in - 1;
    struct resp_request req = {0};
    char err[128];
    size_t consumed, argcs[8], n = 0;

    while (left > 0 && n < 8) {
        int r = resp_parse_request(p, left, &req, &consumed, err, sizeof err);
        CHECK_INT_EQ(r, RESP_PARSE_DONE);
        if (r != RESP_PARSE_DONE)
            break;
        if (n == 2) {
            /* Multibulk arguments point into the input, not copied. */
            CHECK(req.argv[0] == p + 8);
            CHECK(req.argv[1] == p + 17);
        }
        argcs[n++] = req.argc;
        p += consumed;
        left -= consumed;
    }
    CHECK_INT_EQ(n, 5);
    CHECK_INT_EQ(argcs[0], 1);
    CHECK_INT_EQ(argcs[1], 3);
    CHECK_INT_EQ(argcs[2], 2);
    CHECK_INT_EQ(argcs[3], 0);
    CHECK_INT_EQ(argcs[4], 3);
    CHECK_INT_EQ(left, 0);
    resp_request_free(&req);
}

/* Once the arrays have grown, parsing allocates nothing: same arrays, same cap. */
static void test_arrays_reused(void)
{
    struct resp_request req = {0};
    struct buf big = {0};
    char err[128];
    size_t consumed;

    CHECK_INT_EQ(resp_write_array(&big, 100), 0);
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(resp_write_bulk(&big, "x", 1), 0);
    CHECK_INT_EQ(resp_parse_request(big.data, big.len, &req, &consumed, err, sizeof err),
                 RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 100);
    CHECK(req.cap >= 100);
    const uint8_t **argv = req.argv;
    size_t *argl = req.argl;
    size_t cap = req.cap;
    for (int i = 0; i < 1000; i++) {
        CHECK_INT_EQ(resp_parse_request(LIT("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), &req, &consumed, err,
                                        sizeof err),
                     RESP_PARSE_DONE);
    }
    CHECK(req.argv == argv && req.argl == argl && req.cap == cap);
    resp_request_free(&req);
    CHECK(req.argv == NULL && req.cap == 0);
    buf_free(&big);
}

static void check_request_error(const char *in, size_t len, const char *want)
{
    struct resp_request req = {0};
    char err[128];
    size_t consumed = 99;

    int r = parse_exact((const uint8_t *)in, len, &req, &consumed, err, sizeof err);
    CHECK_INT_EQ(r, RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, want);
    CHECK_INT_EQ(req.argc, 0);
    CHECK_INT_EQ(consumed, 0);
    resp_request_free(&req);
}

#define REQUEST_ERROR(lit, want) check_request_error(lit, sizeof(lit) - 1, want)

static void test_request_errors(void)
{
    const char *mbulk = "Protocol error: invalid multibulk length";
    const char *bulk = "Protocol error: invalid bulk length";
    const char *quotes = "Protocol error: unbalanced quotes in request";

    REQUEST_ERROR("*abc\r\n", mbulk);
    REQUEST_ERROR("*\r\n", mbulk);
    REQUEST_ERROR("*-\r\n", mbulk);
    REQUEST_ERROR("*+1\r\n", mbulk);
    REQUEST_ERROR("*01\r\n", mbulk);
    REQUEST_ERROR("*1x", mbulk);
    REQUEST_ERROR("*1\n", mbulk);
    REQUEST_ERROR("*1\rx", mbulk);
    REQUEST_ERROR("*1048577\r\n", mbulk);
    REQUEST_ERROR("*99999999999999999999999999\r\n", mbulk);
    REQUEST_ERROR("*1\r\nx\r\n", "Protocol error: expected '$', got 'x'");
    REQUEST_ERROR("*2\r\n$1\r\na\r\n:1\r\n", "Protocol error: expected '$', got ':'");
    REQUEST_ERROR("*1\r\n\x01", "Protocol error: expected '$', got '\\x01'");
    REQUEST_ERROR("*1\r\n$abc\r\n", bulk);
    REQUEST_ERROR("*1\r\n$-1\r\n", bulk);
    REQUEST_ERROR("*1\r\n$8388609\r\n", bulk);
    REQUEST_ERROR("*1\r\n$3\r\nabcd\r\n", bulk);
    REQUEST_ERROR("*1\r\n$3\r\nabc\n\r", bulk);
    REQUEST_ERROR("SET \"abc\r\n", quotes);
    REQUEST_ERROR("SET 'abc\r\n", quotes);
    REQUEST_ERROR("GET \"a\"b\r\n", quotes);
    REQUEST_ERROR("GET 'a'b\n", quotes);
    REQUEST_ERROR("GET \"a\\\"\n", quotes);

    /* A short error buffer is filled, never overrun. */
    struct resp_request req = {0};
    char small[9];
    size_t consumed;
    memset(small, 'z', sizeof small);
    CHECK_INT_EQ(resp_parse_request(LIT("*x\r\n"), &req, &consumed, small, 8), RESP_PARSE_ERROR);
    CHECK_STR_EQ(small, "Protoco");
    CHECK_INT_EQ(small[8], 'z');
    resp_request_free(&req);
}

/* Lengths are checked against their caps before anything is allocated. */
static void test_request_caps(void)
{
    struct resp_request req = {0};
    char err[128];
    size_t consumed;

    CHECK_INT_EQ(resp_parse_request(LIT("*99999999999\r\n"), &req, &consumed, err, sizeof err),
                 RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: invalid multibulk length");
    CHECK(req.cap == 0 && req.argv == NULL);

    CHECK_INT_EQ(resp_parse_request(LIT("*1\r\n$999999999\r\n"), &req, &consumed, err, sizeof err),
                 RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: invalid bulk length");
    CHECK(req.cap == 0 && req.argv == NULL);

    /* The biggest allowed counts wait for their bytes without allocating. */
    CHECK_INT_EQ(resp_parse_request(LIT("*1048576\r\n"), &req, &consumed, err, sizeof err),
                 RESP_PARSE_MORE);
    CHECK_INT_EQ(
        resp_parse_request(LIT("*1048576\r\n$8388608\r\n"), &req, &consumed, err, sizeof err),
        RESP_PARSE_MORE);
    CHECK(req.cap == 0 && req.argv == NULL);

    /* Arrays are sized once the request is whole, not from the announced count. */
    CHECK_INT_EQ(resp_parse_request(LIT("*1048576\r\n$1\r\na\r\n$1\r\nb\r\n"), &req, &consumed, err,
                                    sizeof err),
                 RESP_PARSE_MORE);
    CHECK(req.cap == 0 && req.argv == NULL);
    resp_request_free(&req);

    /* Inline lines: up to RESP_MAX_INLINE bytes before the newline. */
    size_t max = RESP_MAX_INLINE;
    uint8_t *line = malloc(max + 2);
    CHECK(line != NULL);
    if (line == NULL)
        return;
    memset(line, 'a', max + 2);
    CHECK_INT_EQ(parse_exact(line, max, &req, &consumed, err, sizeof err), RESP_PARSE_MORE);
    CHECK_INT_EQ(parse_exact(line, max + 1, &req, &consumed, err, sizeof err), RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: too big inline request");
    line[max] = '\n';
    CHECK_INT_EQ(parse_exact(line, max + 1, &req, &consumed, err, sizeof err), RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 1);
    CHECK_INT_EQ(req.argl[0], max);
    CHECK_INT_EQ(consumed, max + 1);
    line[max] = 'a';
    line[max + 1] = '\n';
    CHECK_INT_EQ(parse_exact(line, max + 2, &req, &consumed, err, sizeof err), RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: too big inline request");
    free(line);
    resp_request_free(&req);
}

/* Inline arguments, split and unescaped as Redis does. */
static void check_inline(const char *in, size_t argc, const char *a0, size_t l0, const char *a1,
                         size_t l1)
{
    struct resp_request req = {0};
    char err[128];
    size_t consumed;

    int r = resp_parse_request((const uint8_t *)in, strlen(in), &req, &consumed, err, sizeof err);
    CHECK_INT_EQ(r, RESP_PARSE_DONE);
    CHECK_INT_EQ(consumed, strlen(in));
    CHECK_INT_EQ(req.argc, argc);
    if (r == RESP_PARSE_DONE && req.argc == argc && argc >= 1) {
        CHECK_INT_EQ(req.argl[0], l0);
        CHECK(memcmp(req.argv[0], a0, l0) == 0);
    }
    if (r == RESP_PARSE_DONE && req.argc == argc && argc >= 2) {
        CHECK_INT_EQ(req.argl[1], l1);
        CHECK(memcmp(req.argv[1], a1, l1) == 0);
    }
    resp_request_free(&req);
}

static void test_inline_quotes(void)
{
    check_inline("\"a b\" 'c d'\r\n", 2, "a b", 3, "c d", 3);
    check_inline("\"\\x41\\x4a\\t\\r\\b\\a\\\\\" x\n", 2, "AJ\t\r\b\a\\", 7, "x", 1);
    check_inline("\"\\xZZ\" \"\\q\"\n", 2, "xZZ", 3, "q", 1);
    check_inline("'\\n' '\\''\n", 2, "\\n", 2, "'", 1);
    check_inline("\"a\\\"b\" ''\n", 2, "a\"b", 3, "", 0);
    check_inline("foo\"bar baz\" x\n", 2, "foobar baz", 10, "x", 1);
    check_inline("\"\"\n", 1, "", 0, NULL, 0);
    check_inline("   \t \r\n", 0, NULL, 0, NULL, 0);
    check_inline("a\rb\r\n", 2, "a", 1, "b", 1);
    check_inline("\"\\x00\" 'a b'\n", 2, "\0", 1, "a b", 3);
}

/* ------------------------------------------------------------ incremental */

/* Feed bytes to resp_parse_request_next one more byte a call, each time from
 * a fresh heap copy (the bytes move, as a receive buffer's do when it grows),
 * and compare every answer with resp_parse_request on the same prefix. */
static int next_agrees(const uint8_t *bytes, size_t len)
{
    struct resp_parser ps = {0};
    struct resp_request whole = {0}, step = {0};
    int ok = 1;

    for (size_t k = 0; k <= len; k++) {
        char err1[128] = "", err2[128] = "";
        size_t used1 = 7, used2 = 7;
        uint8_t *copy = malloc(k > 0 ? k : 1);
        if (copy == NULL)
            abort();
        memcpy(copy, bytes, k);
        int r1 = resp_parse_request(copy, k, &whole, &used1, err1, sizeof err1);
        int r2 = resp_parse_request_next(&ps, copy, k, &step, &used2, err2, sizeof err2);
        if (r1 != r2 || used1 != used2 || whole.argc != step.argc || strcmp(err1, err2) != 0)
            ok = 0;
        for (size_t i = 0; ok && i < whole.argc; i++) {
            if (whole.argl[i] != step.argl[i] ||
                memcmp(whole.argv[i], step.argv[i], whole.argl[i]) != 0)
                ok = 0;
        }
        free(copy);
        if (!ok)
            fprintf(stderr, "prefix %zu of %zu: whole %d '%s', step %d '%s'\n", k, len, r1, err1,
                    r2, err2);
        if (!ok || r1 != RESP_PARSE_MORE)
            break;
    }
    resp_request_free(&whole);
    resp_request_free(&step);
    return ok;
}

#define NEXT_AGREES(lit) CHECK(next_agrees((const uint8_t *)(lit), sizeof(lit) - 1))

static void test_next_agrees(void)
{
    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++)
        CHECK(next_agrees((const uint8_t *)samples[s].bytes, samples[s].len));
    NEXT_AGREES("*abc\r\n");
    NEXT_AGREES("*1048577\r\n");
    NEXT_AGREES("*1\r\nx\r\n");
    NEXT_AGREES("*2\r\n$1\r\na\r\n:1\r\n");
    NEXT_AGREES("*1\r\n$8388609\r\n");
    NEXT_AGREES("*1\r\n$3\r\nabcd\r\n");
    NEXT_AGREES("*1\r\n$3\r\nabc\n\r");
    NEXT_AGREES("*2\r\n$-1\r\n");
    NEXT_AGREES("SET \"abc\r\n");
    NEXT_AGREES("GET 'a'b\n");
}

/* An unauthenticated parser takes Redis's limits, request after request:
 * 10 elements, 16384 bytes each. */
static void test_unauthenticated(void)
{
    struct resp_parser ps = {.unauthenticated = true};
    struct resp_request req = {0};
    char err[128];
    size_t used;

    CHECK_INT_EQ(resp_parse_request_next(&ps,
                                         LIT("*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n"),
                                         &req, &used, err, sizeof err),
                 RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 3);
    CHECK(ps.unauthenticated); /* kept for the next request */
    CHECK_INT_EQ(resp_parse_request_next(&ps, LIT("*11\r\n"), &req, &used, err, sizeof err),
                 RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: unauthenticated multibulk length");
    CHECK(ps.unauthenticated);
    CHECK_INT_EQ(
        resp_parse_request_next(&ps, LIT("*1\r\n$16385\r\n"), &req, &used, err, sizeof err),
        RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: unauthenticated bulk length");
    /* At the limits, a request. */
    CHECK_INT_EQ(resp_parse_request_next(&ps,
                                         LIT("*10\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                                             "$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                                             "$1\r\na\r\n$1\r\na\r\n"),
                                         &req, &used, err, sizeof err),
                 RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 10);
    CHECK_INT_EQ(
        resp_parse_request_next(&ps, LIT("*1\r\n$16384\r\n"), &req, &used, err, sizeof err),
        RESP_PARSE_MORE);
    /* Inline lines keep their own limit. */
    ps = (struct resp_parser){.unauthenticated = true};
    CHECK_INT_EQ(resp_parse_request_next(&ps, LIT("a b c d e f g h i j k l\r\n"), &req, &used, err,
                                         sizeof err),
                 RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 12);
    /* Authenticated, the same bytes start a request. */
    ps.unauthenticated = false;
    CHECK_INT_EQ(resp_parse_request_next(&ps, LIT("*11\r\n"), &req, &used, err, sizeof err),
                 RESP_PARSE_MORE);
    resp_request_free(&req);
}

/* A parser goes from one request to the next; a shorter input than before
 * (another request) starts afresh. */
static void test_next_sequence(void)
{
    struct resp_parser ps = {0};
    struct resp_request req = {0};
    char err[128];
    size_t used;

    CHECK_INT_EQ(
        resp_parse_request_next(&ps, LIT("*2\r\n$3\r\nGET\r\n$1"), &req, &used, err, sizeof err),
        RESP_PARSE_MORE);
    CHECK(ps.checked > 0);
    CHECK_INT_EQ(resp_parse_request_next(&ps, LIT("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), &req, &used,
                                         err, sizeof err),
                 RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 2);
    CHECK_INT_EQ(used, 20);
    CHECK_INT_EQ(ps.checked, 0);
    CHECK_INT_EQ(resp_parse_request_next(&ps, LIT("PING\r\n"), &req, &used, err, sizeof err),
                 RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 1);
    CHECK_INT_EQ(resp_parse_request_next(&ps, LIT("*1\r\n$4\r\nPI"), &req, &used, err, sizeof err),
                 RESP_PARSE_MORE);
    CHECK_INT_EQ(resp_parse_request_next(&ps, LIT("*1\r\n"), &req, &used, err, sizeof err),
                 RESP_PARSE_MORE);
    CHECK_INT_EQ(
        resp_parse_request_next(&ps, LIT("*1\r\n$4\r\nPING\r\n"), &req, &used, err, sizeof err),
        RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 1);
    resp_request_free(&req);
}

/* Feed in[0..len) step bytes more a call; return the parser's bytes
 * examined, and check the request ends whole with want_argc arguments. */
static uint64_t feed_slowly(const uint8_t *in, size_t len, size_t step, size_t want_argc,
                            double *cpu_s)
{
    struct resp_parser ps = {0};
    struct resp_request req = {0};
    char err[128];
    size_t used = 0;
    int r = RESP_PARSE_MORE;
    clock_t start = clock();

    for (size_t k = step < len ? step : len; r == RESP_PARSE_MORE; k += step) {
        if (k > len)
            k = len;
        r = resp_parse_request_next(&ps, in, k, &req, &used, err, sizeof err);
        if (k == len)
            break;
    }
    *cpu_s = (double)(clock() - start) / CLOCKS_PER_SEC;
    CHECK_INT_EQ(r, RESP_PARSE_DONE);
    CHECK_INT_EQ(used, len);
    CHECK_INT_EQ(req.argc, want_argc);
    resp_request_free(&req);
    return ps.examined;
}

/* However a request is cut, its bytes are examined a bounded number of times:
 * a parser that started again at byte 0 on every read would examine a 7 MB
 * request fed a byte at a time some 10^13 times. The CPU time is printed, never
 * asserted. */
static void test_next_linear(void)
{
    struct buf in = {0};
    double cpu;

    /* The most elements a request may have, each "$1\r\na\r\n": 7.3 MB. */
    int built = resp_write_array(&in, RESP_MAX_ARGS);
    for (size_t i = 0; i < RESP_MAX_ARGS; i++)
        built |= buf_append(&in, "$1\r\na\r\n", 7);
    CHECK_INT_EQ(built, 0);
    uint64_t examined = feed_slowly(in.data, in.len, 1, RESP_MAX_ARGS, &cpu);
    printf("resp: %zu-element array (%zu bytes) fed 1 byte a call: %.2f bytes examined per "
           "byte, %.3f s CPU\n",
           (size_t)RESP_MAX_ARGS, in.len, (double)examined / (double)in.len, cpu);
    CHECK(examined <= 4 * (uint64_t)in.len);
    examined = feed_slowly(in.data, in.len, 1000, RESP_MAX_ARGS, &cpu);
    printf("resp: the same fed 1000 bytes a call: %.2f bytes examined per byte, %.3f s CPU\n",
           (double)examined / (double)in.len, cpu);
    CHECK(examined <= 4 * (uint64_t)in.len);

    /* One big bulk string trickled: its data is never read. */
    buf_reset(&in);
    const uint8_t *argv[3] = {(const uint8_t *)"SET", (const uint8_t *)"k", NULL};
    size_t argl[3] = {3, 1, 7000000};
    uint8_t *value = calloc(1, argl[2]);
    CHECK(value != NULL);
    if (value == NULL)
        return;
    argv[2] = value;
    CHECK_INT_EQ(resp_write_command(&in, 3, argv, argl), 0);
    examined = feed_slowly(in.data, in.len, 1, 3, &cpu);
    printf("resp: a 7 MB SET fed 1 byte a call: %" PRIu64 " bytes examined, %.3f s CPU\n", examined,
           cpu);
    CHECK(examined <= 200);
    free(value);

    /* The longest inline line, a byte at a time. */
    buf_reset(&in);
    built = 0;
    for (size_t i = 0; i < RESP_MAX_INLINE; i++)
        built |= buf_append(&in, i % 8 == 7 ? " " : "x", 1);
    built |= buf_append(&in, "\n", 1);
    CHECK_INT_EQ(built, 0);
    examined = feed_slowly(in.data, in.len, 1, RESP_MAX_INLINE / 8, &cpu);
    printf("resp: a %zu-byte inline line fed 1 byte a call: %.2f bytes examined per byte\n", in.len,
           (double)examined / (double)in.len);
    CHECK(examined <= 3 * (uint64_t)in.len);
    buf_free(&in);
}

/* ------------------------------------------------------------ replies */

static int parse_reply_exact(const char *in, size_t len, struct resp_value *v, size_t *consumed,
                             char *err, size_t errlen)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, in, len);
    err[0] = '\0';
    int r = resp_parse_reply(copy, len, v, consumed, err, errlen);
    free(copy);
    return r;
}

/* Every proper prefix is MORE and leaves *out alone; the whole is DONE. */
static int reply_whole(const char *in, size_t len, struct resp_value *v)
{
    char err[128];
    size_t consumed;
    int prefixes_ok = 1;

    for (size_t k = 0; k < len; k++) {
        struct resp_value untouched = {.type = RESP_INT, .integer = 777};
        int r = parse_reply_exact(in, k, &untouched, &consumed, err, sizeof err);
        if (r != RESP_PARSE_MORE || consumed != 0 || untouched.type != RESP_INT ||
            untouched.integer != 777) {
            fprintf(stderr, "reply prefix %zu of %zu: result %d (%s)\n", k, len, r, err);
            prefixes_ok = 0;
        }
    }
    CHECK(prefixes_ok);
    int r = parse_reply_exact(in, len, v, &consumed, err, sizeof err);
    CHECK_INT_EQ(r, RESP_PARSE_DONE);
    CHECK_INT_EQ(consumed, len);
    return r == RESP_PARSE_DONE;
}

#define REPLY_WHOLE(lit, v) reply_whole(lit, sizeof(lit) - 1, v)

static void test_reply_types(void)
{
    struct resp_value v;

    if (REPLY_WHOLE("+OK\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_SIMPLE);
        CHECK_STR_EQ(v.str, "OK");
        CHECK_INT_EQ(v.len, 2);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("-ERR unknown command 'x'\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_ERROR);
        CHECK_STR_EQ(v.str, "ERR unknown command 'x'");
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("+\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_SIMPLE);
        CHECK_STR_EQ(v.str, "");
        resp_value_free(&v);
    }
    if (REPLY_WHOLE(":42\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_INT);
        CHECK_INT_EQ(v.integer, 42);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE(":-9223372036854775808\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_INT);
        CHECK(v.integer == INT64_MIN);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE(":9223372036854775807\r\n", &v)) {
        CHECK(v.integer == INT64_MAX);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("$6\r\na\r\n\0bc\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_BULK);
        CHECK_INT_EQ(v.len, 6);
        CHECK(memcmp(v.str, "a\r\n\0bc", 7) == 0);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("$0\r\n\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_BULK);
        CHECK_INT_EQ(v.len, 0);
        CHECK_STR_EQ(v.str, "");
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("$-1\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_NIL);
        CHECK(v.str == NULL);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("*-1\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_NIL);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("*0\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_ARRAY);
        CHECK_INT_EQ(v.n, 0);
        resp_value_free(&v);
    }
    if (REPLY_WHOLE("*4\r\n:1\r\n*3\r\n+a\r\n$-1\r\n$2\r\nbc\r\n*0\r\n-ERR x\r\n", &v)) {
        CHECK_INT_EQ(v.type, RESP_ARRAY);
        CHECK_INT_EQ(v.n, 4);
        if (v.n == 4) {
            CHECK_INT_EQ(v.elems[0].type, RESP_INT);
            CHECK_INT_EQ(v.elems[0].integer, 1);
            CHECK_INT_EQ(v.elems[1].type, RESP_ARRAY);
            CHECK_INT_EQ(v.elems[1].n, 3);
            if (v.elems[1].n == 3) {
                CHECK_INT_EQ(v.elems[1].elems[0].type, RESP_SIMPLE);
                CHECK_STR_EQ(v.elems[1].elems[0].str, "a");
                CHECK_INT_EQ(v.elems[1].elems[1].type, RESP_NIL);
                CHECK_INT_EQ(v.elems[1].elems[2].type, RESP_BULK);
                CHECK_STR_EQ(v.elems[1].elems[2].str, "bc");
            }
            CHECK_INT_EQ(v.elems[2].type, RESP_ARRAY);
            CHECK_INT_EQ(v.elems[2].n, 0);
            CHECK_INT_EQ(v.elems[3].type, RESP_ERROR);
            CHECK_STR_EQ(v.elems[3].str, "ERR x");
        }
        resp_value_free(&v);
        CHECK(v.elems == NULL && v.n == 0);
    }
}

static void test_reply_depth(void)
{
    struct buf in = {0};
    struct resp_value v;
    char err[128];
    size_t consumed;

    /* RESP_MAX_DEPTH nested arrays parse; one more is an error. */
    for (int i = 0; i < RESP_MAX_DEPTH; i++)
        CHECK_INT_EQ(buf_append_str(&in, "*1\r\n"), 0);
    CHECK_INT_EQ(buf_append_str(&in, ":7\r\n"), 0);
    CHECK_INT_EQ(resp_parse_reply(in.data, in.len, &v, &consumed, err, sizeof err),
                 RESP_PARSE_DONE);
    const struct resp_value *inner = &v;
    int levels = 0;
    while (inner->type == RESP_ARRAY && inner->n == 1) {
        inner = &inner->elems[0];
        levels++;
    }
    CHECK_INT_EQ(levels, RESP_MAX_DEPTH);
    CHECK_INT_EQ(inner->type, RESP_INT);
    CHECK_INT_EQ(inner->integer, 7);
    resp_value_free(&v);

    buf_reset(&in);
    for (int i = 0; i < RESP_MAX_DEPTH + 1; i++)
        CHECK_INT_EQ(buf_append_str(&in, "*1\r\n"), 0);
    CHECK_INT_EQ(buf_append_str(&in, ":7\r\n"), 0);
    CHECK_INT_EQ(resp_parse_reply(in.data, in.len, &v, &consumed, err, sizeof err),
                 RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: reply nested too deeply");
    buf_free(&in);
}

static void check_reply_error(const char *in, size_t len, const char *want)
{
    struct resp_value v = {.type = RESP_INT, .integer = 5};
    char err[128];
    size_t consumed = 99;

    CHECK_INT_EQ(parse_reply_exact(in, len, &v, &consumed, err, sizeof err), RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, want);
    CHECK_INT_EQ(consumed, 0);
    CHECK(v.type == RESP_INT && v.integer == 5);
}

#define REPLY_ERROR(lit, want) check_reply_error(lit, sizeof(lit) - 1, want)

static void test_reply_errors_and_caps(void)
{
    REPLY_ERROR("*99999999999\r\n", "Protocol error: invalid multibulk length");
    REPLY_ERROR("*1048577\r\n", "Protocol error: invalid multibulk length");
    REPLY_ERROR("*-2\r\n", "Protocol error: invalid multibulk length");
    REPLY_ERROR("$999999999\r\n", "Protocol error: invalid bulk length");
    REPLY_ERROR("$-2\r\n", "Protocol error: invalid bulk length");
    REPLY_ERROR("$3\r\nabcde", "Protocol error: invalid bulk length");
    REPLY_ERROR(":12a\r\n", "Protocol error: invalid integer");
    REPLY_ERROR(":9223372036854775808\r\n", "Protocol error: invalid integer");
    REPLY_ERROR(":\r\n", "Protocol error: invalid integer");
    REPLY_ERROR("+OK\rx", "Protocol error: invalid reply line");
    REPLY_ERROR("?x\r\n", "Protocol error: unknown reply type '?'");
    REPLY_ERROR("*2\r\n:1\r\n\r\n", "Protocol error: unknown reply type '\\x0d'");
    REPLY_ERROR("*2\r\n:1\r\n*1\r\n$x", "Protocol error: invalid bulk length");

    /* Big announced counts wait for their bytes and leave *out alone. */
    struct resp_value v = {.type = RESP_INT, .integer = 5};
    char err[128];
    size_t consumed;
    CHECK_INT_EQ(resp_parse_reply(LIT("*1048576\r\n"), &v, &consumed, err, sizeof err),
                 RESP_PARSE_MORE);
    CHECK_INT_EQ(resp_parse_reply(LIT("$8388608\r\n"), &v, &consumed, err, sizeof err),
                 RESP_PARSE_MORE);
    CHECK(v.type == RESP_INT && v.integer == 5);

    /* A reply line without "\r" is capped like an inline request. */
    size_t max = RESP_MAX_INLINE;
    char *line = malloc(max + 2);
    CHECK(line != NULL);
    if (line == NULL)
        return;
    memset(line, 'a', max + 2);
    line[0] = '+';
    CHECK_INT_EQ(parse_reply_exact(line, max + 1, &v, &consumed, err, sizeof err), RESP_PARSE_MORE);
    CHECK_INT_EQ(parse_reply_exact(line, max + 2, &v, &consumed, err, sizeof err),
                 RESP_PARSE_ERROR);
    CHECK_STR_EQ(err, "Protocol error: too big reply line");
    free(line);
}

static void test_reply_pipeline(void)
{
    static const char in[] = "+OK\r\n:1\r\n$1\r\nx\r\n*1\r\n$-1\r\n";
    const uint8_t *p = (const uint8_t *)in;
    size_t left = sizeof in - 1, consumed;
    enum resp_type types[4] = {RESP_SIMPLE, RESP_INT, RESP_BULK, RESP_ARRAY};
    char err[128];
    int n = 0;

    while (left > 0 && n < 4) {
        struct resp_value v;
        int r = resp_parse_reply(p, left, &v, &consumed, err, sizeof err);
        CHECK_INT_EQ(r, RESP_PARSE_DONE);
        if (r != RESP_PARSE_DONE)
            break;
        CHECK_INT_EQ(v.type, types[n]);
        resp_value_free(&v);
        p += consumed;
        left -= consumed;
        n++;
    }
    CHECK_INT_EQ(n, 4);
    CHECK_INT_EQ(left, 0);
}

/* ------------------------------------------------------------ writers */

static int buf_equals(const struct buf *b, const char *want, size_t len)
{
    if (b->len != len || memcmp(b->data, want, len) != 0) {
        fprintf(stderr, "got %zu bytes: '%.*s'\n", b->len, (int)b->len, (const char *)b->data);
        return 0;
    }
    return 1;
}

#define CHECK_BUF(b, lit) CHECK(buf_equals(b, lit, sizeof(lit) - 1))

static void test_writers(void)
{
    struct buf out = {0};

    CHECK_INT_EQ(resp_write_simple(&out, "OK"), 0);
    CHECK_BUF(&out, "+OK\r\n");
    buf_reset(&out);
    CHECK_INT_EQ(resp_write_simple(&out, "a\r\nb"), 0);
    CHECK_BUF(&out, "+a  b\r\n");
    buf_reset(&out);
    CHECK_INT_EQ(resp_write_error(&out, "ERR unknown command 'FOO'"), 0);
    CHECK_BUF(&out, "-ERR unknown command 'FOO'\r\n");
    buf_reset(&out);
    CHECK_INT_EQ(resp_write_int(&out, 0), 0);
    CHECK_INT_EQ(resp_write_int(&out, 42), 0);
    CHECK_INT_EQ(resp_write_int(&out, -1), 0);
    CHECK_INT_EQ(resp_write_int(&out, INT64_MIN), 0);
    CHECK_INT_EQ(resp_write_int(&out, INT64_MAX), 0);
    CHECK_BUF(&out, ":0\r\n:42\r\n:-1\r\n:-9223372036854775808\r\n:9223372036854775807\r\n");
    buf_reset(&out);
    CHECK_INT_EQ(resp_write_bulk(&out, "abc", 3), 0);
    CHECK_INT_EQ(resp_write_bulk(&out, "", 0), 0);
    CHECK_INT_EQ(resp_write_bulk(&out, "a\0\r\n", 4), 0);
    CHECK_BUF(&out, "$3\r\nabc\r\n$0\r\n\r\n$4\r\na\0\r\n\r\n");
    buf_reset(&out);
    CHECK_INT_EQ(resp_write_nil(&out), 0);
    CHECK_INT_EQ(resp_write_array(&out, 3), 0);
    CHECK_INT_EQ(resp_write_array(&out, 0), 0);
    CHECK_INT_EQ(resp_write_array(&out, 1234567), 0);
    CHECK_BUF(&out, "$-1\r\n*3\r\n*0\r\n*1234567\r\n");
    buf_reset(&out);

    const uint8_t *argv[3] = {(const uint8_t *)"SET", (const uint8_t *)"k",
                              (const uint8_t *)"v\r\n"};
    size_t argl[3] = {3, 1, 3};
    CHECK_INT_EQ(resp_write_command(&out, 3, argv, argl), 0);
    CHECK_BUF(&out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n");
    CHECK_INT_EQ(resp_write_command(&out, 0, NULL, NULL), 0);
    CHECK_BUF(&out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n*0\r\n");

    /* What the client writes, the server parses back. */
    struct resp_request req = {0};
    char err[128];
    size_t consumed;
    CHECK_INT_EQ(resp_parse_request(out.data, out.len, &req, &consumed, err, sizeof err),
                 RESP_PARSE_DONE);
    CHECK_INT_EQ(req.argc, 3);
    for (size_t i = 0; i < 3 && i < req.argc; i++) {
        CHECK_INT_EQ(req.argl[i], argl[i]);
        CHECK(memcmp(req.argv[i], argv[i], argl[i]) == 0);
    }
    resp_request_free(&req);
    buf_free(&out);
}

static void test_buf(void)
{
    struct buf b = {0};

    CHECK_INT_EQ(buf_append_str(&b, "hello "), 0);
    CHECK_INT_EQ(buf_printf(&b, "%s %d", "world", 42), 0);
    CHECK_BUF(&b, "hello world 42");
    buf_consume(&b, 6);
    CHECK_BUF(&b, "world 42");
    buf_consume(&b, 100);
    CHECK_INT_EQ(b.len, 0);

    /* A long printf grows the buffer and keeps what was there. */
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_INT_EQ(buf_append(&b, "ab", 2), 0);
    CHECK_INT_EQ(buf_printf(&b, "%s|", big), 0);
    CHECK_INT_EQ(b.len, 2 + 999 + 1);
    CHECK(b.data[0] == 'a' && b.data[1] == 'b' && b.data[2] == 'x' && b.data[1001] == '|');
    CHECK(b.cap >= b.len);

    /* Text that exactly fills the room left (its NUL does not fit). */
    buf_reset(&b);
    size_t room = b.cap;
    char fill[4096];
    memset(fill, '-', sizeof fill);
    CHECK(room >= 8 && room - 4 <= sizeof fill);
    CHECK_INT_EQ(buf_append(&b, fill, room - 4), 0);
    CHECK_INT_EQ(b.cap - b.len, 4);
    CHECK_INT_EQ(buf_printf(&b, "%s", "abcd"), 0);
    CHECK_INT_EQ(b.len, room);
    CHECK(memcmp(b.data + room - 4, "abcd", 4) == 0);

    CHECK_INT_EQ(buf_reserve(&b, 10000), 0);
    CHECK(b.cap - b.len >= 10000);
    CHECK_INT_EQ(buf_reserve(&b, SIZE_MAX), -1);
    CHECK_INT_EQ(b.len, room); /* unchanged */
    buf_reset(&b);
    CHECK_INT_EQ(b.len, 0);
    CHECK_INT_EQ(buf_append(&b, NULL, 0), 0);
    buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

int main(void)
{
    test_split_everywhere();
    test_trickle_pipeline();
    test_pipelined();
    test_arrays_reused();
    test_request_errors();
    test_request_caps();
    test_inline_quotes();
    test_next_agrees();
    test_next_sequence();
    test_unauthenticated();
    test_next_linear();
    test_reply_types();
    test_reply_depth();
    test_reply_errors_and_caps();
    test_reply_pipeline();
    test_writers();
    test_buf();
    CHECK_DONE();
}

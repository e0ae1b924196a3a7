/* test_kv.c - the key-value state machine and its command codec. */
#include "buf.h"
#include "check.h"
#include "crc32c.h"
#include "kv.h"
#include "kv_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Each evaluates its reply expression once: it applies a command. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        struct kv_reply check_r_ = (expr);                                                         \
        CHECK_INT_EQ(check_r_.type, KV_REPLY_OK);                                                  \
    } while (0)
#define CHECK_REPLY_INT(expr, v)                                                                   \
    do {                                                                                           \
        struct kv_reply check_r_ = (expr);                                                         \
        CHECK_INT_EQ(check_r_.type, KV_REPLY_INT);                                                 \
        CHECK_INT_EQ(check_r_.integer, (v));                                                       \
    } while (0)
#define CHECK_REPLY_ERR(expr, msg)                                                                 \
    do {                                                                                           \
        struct kv_reply check_r_ = (expr);                                                         \
        CHECK_INT_EQ(check_r_.type, KV_REPLY_ERR);                                                 \
        CHECK_STR_EQ(check_r_.err, (msg));                                                         \
    } while (0)

#define NOT_INTEGER "ERR value is not an integer or out of range"

static uint64_t next_index;

/* Encode cmd and apply it as the next log entry. */
static struct kv_reply apply_cmd(struct kv *kv, const struct kv_cmd *cmd)
{
    struct kv_reply r;
    uint8_t *data;
    uint32_t len;
    memset(&r, 0, sizeof(r));
    CHECK_INT_EQ(kv_cmd_encode(cmd, &data, &len), 0);
    CHECK_INT_EQ(kv_apply(kv, ++next_index, data, len, &r), 0);
    CHECK_INT_EQ(kv_applied_index(kv), next_index);
    free(data);
    kv_reply_free(&r); /* no command here answers with a bulk */
    return r;
}

/* A command with string arguments, NULL-terminated. */
static struct kv_reply vrun(struct kv *kv, uint64_t client_id, uint64_t seq, uint8_t op,
                            uint64_t now_ms, int64_t deadline_ms, va_list ap)
{
    static struct kv_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = op;
    cmd.now_ms = now_ms;
    cmd.client_id = client_id;
    cmd.seq = seq;
    cmd.deadline_ms = deadline_ms;
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *)) {
        cmd.args[cmd.nargs].p = (const uint8_t *)s;
        cmd.args[cmd.nargs].len = (uint32_t)strlen(s);
        cmd.nargs++;
    }
    return apply_cmd(kv, &cmd);
}

static struct kv_reply run(struct kv *kv, uint8_t op, uint64_t now_ms, ...)
{
    va_list ap;
    va_start(ap, now_ms);
    struct kv_reply r = vrun(kv, 0, 0, op, now_ms, 0, ap);
    va_end(ap);
    return r;
}

static struct kv_reply run_as(struct kv *kv, uint64_t client_id, uint64_t seq, uint8_t op,
                              uint64_t now_ms, ...)
{
    va_list ap;
    va_start(ap, now_ms);
    struct kv_reply r = vrun(kv, client_id, seq, op, now_ms, 0, ap);
    va_end(ap);
    return r;
}

static struct kv_reply expire(struct kv *kv, const char *key, int64_t deadline_ms, uint64_t now_ms)
{
    static struct kv_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_EXPIRE;
    cmd.now_ms = now_ms;
    cmd.deadline_ms = deadline_ms;
    cmd.nargs = 1;
    cmd.args[0].p = (const uint8_t *)key;
    cmd.args[0].len = (uint32_t)strlen(key);
    return apply_cmd(kv, &cmd);
}

/* The value as a string (copied), or NULL when missing at now_ms. */
static const char *get(const struct kv *kv, const char *key, uint64_t now_ms)
{
    static char text[256];
    const uint8_t *val;
    uint32_t vlen;
    if (!kv_get(kv, (const uint8_t *)key, (uint32_t)strlen(key), now_ms, &val, &vlen))
        return NULL;
    if (vlen >= sizeof(text))
        vlen = sizeof(text) - 1;
    memcpy(text, val, vlen);
    text[vlen] = '\0';
    return text;
}

static int64_t ttl(const struct kv *kv, const char *key, uint64_t now_ms)
{
    return kv_ttl_ms(kv, (const uint8_t *)key, (uint32_t)strlen(key), now_ms);
}

/* Apply raw bytes as the next entry. */
static struct kv_reply apply_raw(struct kv *kv, const uint8_t *data, uint32_t len)
{
    struct kv_reply r;
    CHECK_INT_EQ(kv_apply(kv, ++next_index, data, len, &r), 0);
    kv_reply_free(&r);
    return r;
}

/* ---------------------------------------------------------------- basics */

static void test_set_get_del(void)
{
    struct kv *kv = kv_new();
    CHECK(kv != NULL);
    CHECK(get(kv, "greeting", 0) == NULL);
    CHECK_INT_EQ(ttl(kv, "greeting", 0), -2);

    CHECK_OK(run(kv, KV_OP_SET, 0, "greeting", "hello", NULL));
    CHECK_STR_EQ(get(kv, "greeting", 0), "hello");
    CHECK_INT_EQ(ttl(kv, "greeting", 0), -1);
    CHECK_OK(run(kv, KV_OP_SET, 0, "greeting", "a longer hello than before", NULL));
    CHECK_STR_EQ(get(kv, "greeting", 0), "a longer hello than before");
    CHECK_OK(run(kv, KV_OP_SET, 0, "greeting", "", NULL));
    CHECK_STR_EQ(get(kv, "greeting", 0), "");
    CHECK_OK(run(kv, KV_OP_SET, 0, "", "empty key", NULL));
    CHECK_STR_EQ(get(kv, "", 0), "empty key");
    CHECK_INT_EQ(kv_count(kv), 2);

    CHECK_OK(run(kv, KV_OP_SET, 0, "a", "1", NULL));
    CHECK_OK(run(kv, KV_OP_SET, 0, "b", "2", NULL));
    CHECK_REPLY_INT(run(kv, KV_OP_DEL, 0, "a", "missing", "b", NULL), 2);
    CHECK(get(kv, "a", 0) == NULL);
    CHECK(get(kv, "b", 0) == NULL);
    CHECK_OK(run(kv, KV_OP_SET, 0, "a", "1", NULL));
    CHECK_REPLY_INT(run(kv, KV_OP_DEL, 0, "a", "a", NULL), 1); /* counted once */
    CHECK_REPLY_INT(run(kv, KV_OP_DEL, 0, "a", NULL), 0);
    CHECK_INT_EQ(kv_count(kv), 2);
    kv_free(kv);
}

static void test_binary_safe(void)
{
    struct kv *kv = kv_new();
    static struct kv_cmd cmd;
    const uint8_t key1[] = {'a', 0, 0xff};
    const uint8_t key2[] = {'a', 0};
    const uint8_t val[] = {0, 1, 2, 0, 0xfe};
    const uint8_t *got;
    uint32_t glen;

    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_SET;
    cmd.nargs = 2;
    cmd.args[0] = (struct kv_arg){key1, sizeof(key1)};
    cmd.args[1] = (struct kv_arg){val, sizeof(val)};
    CHECK_OK(apply_cmd(kv, &cmd));
    cmd.args[0] = (struct kv_arg){key2, sizeof(key2)};
    cmd.args[1] = (struct kv_arg){val, 1};
    CHECK_OK(apply_cmd(kv, &cmd));
    CHECK_OK(run(kv, KV_OP_SET, 0, "a", "plain", NULL));
    CHECK_INT_EQ(kv_count(kv), 3);

    CHECK(kv_get(kv, key1, sizeof(key1), 0, &got, &glen));
    CHECK_INT_EQ(glen, sizeof(val));
    CHECK(memcmp(got, val, sizeof(val)) == 0);
    CHECK(kv_get(kv, key2, sizeof(key2), 0, &got, &glen));
    CHECK_INT_EQ(glen, 1);
    CHECK_STR_EQ(get(kv, "a", 0), "plain");
    kv_free(kv);
}

/* ---------------------------------------------------------------- INCR */

static void test_incr(void)
{
    struct kv *kv = kv_new();
    CHECK_REPLY_INT(run(kv, KV_OP_INCR, 0, "counter", NULL), 1);
    CHECK_REPLY_INT(run(kv, KV_OP_INCR, 0, "counter", NULL), 2);
    CHECK_STR_EQ(get(kv, "counter", 0), "2");

    const char *bad[] = {"abc",
                         " 1",
                         "1 ",
                         "01",
                         "+1",
                         "",
                         "-",
                         "-0",
                         "1.5",
                         "0x10",
                         "00",
                         "123456789012345678901",
                         "99999999999999999999",
                         "-9223372036854775809",
                         "9223372036854775808"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_OK(run(kv, KV_OP_SET, 0, "n", bad[i], NULL));
        CHECK_REPLY_ERR(run(kv, KV_OP_INCR, 0, "n", NULL), NOT_INTEGER);
        CHECK_STR_EQ(get(kv, "n", 0), bad[i]); /* unchanged */
    }

    const struct {
        const char *from, *to;
        int64_t reply;
    } good[] = {
        {"0", "1", 1},
        {"-1", "0", 0},
        {"-5", "-4", -4},
        {"41", "42", 42},
        {"9223372036854775806", "9223372036854775807", INT64_MAX},
        {"-9223372036854775808", "-9223372036854775807", INT64_MIN + 1},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK_OK(run(kv, KV_OP_SET, 0, "n", good[i].from, NULL));
        CHECK_REPLY_INT(run(kv, KV_OP_INCR, 0, "n", NULL), good[i].reply);
        CHECK_STR_EQ(get(kv, "n", 0), good[i].to);
    }

    /* Overflow: an error and nothing changes. */
    CHECK_OK(run(kv, KV_OP_SET, 0, "max", "9223372036854775807", NULL));
    CHECK_REPLY_ERR(run(kv, KV_OP_INCR, 0, "max", NULL), NOT_INTEGER);
    CHECK_STR_EQ(get(kv, "max", 0), "9223372036854775807");
    kv_free(kv);
}

/* ---------------------------------------------------------------- TTL */

static void test_ttl_kept_by_incr_cleared_by_set(void)
{
    struct kv *kv = kv_new();
    CHECK_REPLY_INT(run(kv, KV_OP_INCR, 100, "c", NULL), 1);
    CHECK_REPLY_INT(expire(kv, "c", 1000, 100), 1);
    CHECK_INT_EQ(kv_count_with_ttl(kv), 1);
    CHECK_INT_EQ(ttl(kv, "c", 100), 900);
    CHECK_REPLY_INT(run(kv, KV_OP_INCR, 200, "c", NULL), 2);
    CHECK_INT_EQ(ttl(kv, "c", 200), 800); /* INCR keeps the TTL */
    CHECK_OK(run(kv, KV_OP_SET, 300, "c", "fresh", NULL));
    CHECK_INT_EQ(ttl(kv, "c", 300), -1); /* SET clears it */
    CHECK_INT_EQ(kv_count_with_ttl(kv), 0);
    CHECK_STR_EQ(get(kv, "c", 5000), "fresh");

    /* EXPIRE on a missing key. */
    CHECK_REPLY_INT(expire(kv, "missing", 1000, 300), 0);
    CHECK_INT_EQ(kv_count(kv), 1);

    /* A deadline again replaces the old one. */
    CHECK_REPLY_INT(expire(kv, "c", 1000, 300), 1);
    CHECK_REPLY_INT(expire(kv, "c", 2000, 300), 1);
    CHECK_INT_EQ(ttl(kv, "c", 300), 1700);
    CHECK_INT_EQ(kv_count_with_ttl(kv), 1);
    kv_free(kv);
}

static void test_expire_in_the_past_deletes(void)
{
    struct kv *kv = kv_new();
    const int64_t deadlines[] = {50, 100, 0, -5, INT64_MIN};
    for (size_t i = 0; i < sizeof(deadlines) / sizeof(deadlines[0]); i++) {
        CHECK_OK(run(kv, KV_OP_SET, 100, "k", "v", NULL));
        CHECK_REPLY_INT(expire(kv, "k", deadlines[i], 100), 1);
        CHECK_INT_EQ(kv_count(kv), 0);
        CHECK_INT_EQ(kv_count_with_ttl(kv), 0);
        CHECK(get(kv, "k", 0) == NULL); /* gone, even for an earlier reader */
    }
    kv_free(kv);
}

static void test_expired_keys_are_missing(void)
{
    struct kv *kv = kv_new();
    const char *keys[] = {"get", "incr", "del", "expire", "set"};
    for (size_t i = 0; i < 5; i++) {
        CHECK_OK(run(kv, KV_OP_SET, 0, keys[i], "7", NULL));
        CHECK_REPLY_INT(expire(kv, keys[i], 1000, 0), 1);
    }
    CHECK_INT_EQ(kv_count_with_ttl(kv), 5);

    CHECK_STR_EQ(get(kv, "get", 999), "7");
    CHECK_INT_EQ(ttl(kv, "get", 999), 1);
    CHECK(get(kv, "get", 1000) == NULL);
    CHECK_INT_EQ(ttl(kv, "get", 1000), -2);
    CHECK(get(kv, "get", 5000) == NULL);

    CHECK_REPLY_INT(run(kv, KV_OP_INCR, 1000, "incr", NULL), 1); /* from 0, not 7 */
    CHECK_INT_EQ(ttl(kv, "incr", 1000), -1);
    CHECK_REPLY_INT(run(kv, KV_OP_DEL, 1500, "del", NULL), 0);
    CHECK_REPLY_INT(expire(kv, "expire", 9000, 2000), 0);
    CHECK(get(kv, "expire", 0) == NULL);
    CHECK_OK(run(kv, KV_OP_SET, 1000, "set", "new", NULL));
    CHECK_INT_EQ(ttl(kv, "set", 1000), -1);
    CHECK_STR_EQ(get(kv, "set", 99999), "new");

    /* Only "get" is still held (expired); the commands deleted the others. */
    CHECK_INT_EQ(kv_count(kv), 3);
    CHECK_INT_EQ(kv_count_with_ttl(kv), 1);
    kv_free(kv);
}

static void test_sweep(void)
{
    struct kv *kv = kv_new();
    CHECK_OK(run(kv, KV_OP_SET, 0, "k", "v", NULL));
    CHECK_REPLY_INT(expire(kv, "k", 1000, 0), 1);
    CHECK_REPLY_INT(run(kv, KV_OP_SWEEP, 500, "k", NULL), 0); /* not expired yet */
    CHECK_STR_EQ(get(kv, "k", 500), "v");
    CHECK_REPLY_INT(run(kv, KV_OP_SWEEP, 1000, "k", NULL), 1);
    CHECK_INT_EQ(kv_count(kv), 0);
    CHECK_INT_EQ(kv_count_with_ttl(kv), 0);
    CHECK_REPLY_INT(run(kv, KV_OP_SWEEP, 1000, "k", NULL), 0); /* already gone */

    /* The sweep was proposed, then a SET cleared the TTL: the key stays. */
    CHECK_OK(run(kv, KV_OP_SET, 0, "k", "v", NULL));
    CHECK_REPLY_INT(expire(kv, "k", 1000, 0), 1);
    CHECK_OK(run(kv, KV_OP_SET, 900, "k", "kept", NULL));
    CHECK_REPLY_INT(run(kv, KV_OP_SWEEP, 1000, "k", NULL), 0);
    CHECK_STR_EQ(get(kv, "k", 1000), "kept");

    /* Or a later EXPIRE moved the deadline. */
    CHECK_REPLY_INT(expire(kv, "k", 1500, 900), 1);
    CHECK_REPLY_INT(expire(kv, "k", 3000, 1000), 1);
    CHECK_REPLY_INT(run(kv, KV_OP_SWEEP, 2000, "k", NULL), 0);
    CHECK_STR_EQ(get(kv, "k", 2000), "kept");
    kv_free(kv);
}

/* ---------------------------------------------------------------- limits and errors */

static void test_size_limits(void)
{
    struct kv *kv = kv_new();
    static struct kv_cmd cmd;
    uint8_t *big = calloc(KV_MAX_VALUE + 1, 1);
    CHECK(big != NULL);
    memset(big, 'x', KV_MAX_VALUE + 1);

    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_SET;
    cmd.nargs = 2;
    cmd.args[0] = (struct kv_arg){big, KV_MAX_KEY};
    cmd.args[1] = (struct kv_arg){big, KV_MAX_VALUE};
    CHECK_OK(apply_cmd(kv, &cmd));
    CHECK_INT_EQ(kv_count(kv), 1);

    cmd.args[0] = (struct kv_arg){big, KV_MAX_KEY + 1};
    cmd.args[1] = (struct kv_arg){(const uint8_t *)"v", 1};
    CHECK_REPLY_ERR(apply_cmd(kv, &cmd), "ERR key too large");
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"k", 1};
    cmd.args[1] = (struct kv_arg){big, KV_MAX_VALUE + 1};
    CHECK_REPLY_ERR(apply_cmd(kv, &cmd), "ERR value too large");
    CHECK_INT_EQ(kv_count(kv), 1);
    CHECK(get(kv, "k", 0) == NULL);

    /* Refused over an existing value: the old one stays. */
    CHECK_OK(run(kv, KV_OP_SET, 0, "k", "old", NULL));
    CHECK_REPLY_ERR(apply_cmd(kv, &cmd), "ERR value too large");
    CHECK_STR_EQ(get(kv, "k", 0), "old");

    /* Keys of the other commands too; DEL deletes nothing then. */
    cmd.op = KV_OP_DEL;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"k", 1};
    cmd.args[1] = (struct kv_arg){big, KV_MAX_KEY + 1};
    CHECK_REPLY_ERR(apply_cmd(kv, &cmd), "ERR key too large");
    CHECK_STR_EQ(get(kv, "k", 0), "old");
    cmd.op = KV_OP_INCR;
    cmd.nargs = 1;
    cmd.args[0] = (struct kv_arg){big, KV_MAX_KEY + 1};
    CHECK_REPLY_ERR(apply_cmd(kv, &cmd), "ERR key too large");
    CHECK_INT_EQ(kv_count(kv), 2);
    free(big);
    kv_free(kv);
}

static void test_bad_commands_change_nothing(void)
{
    struct kv *kv = kv_new();
    CHECK_OK(run(kv, KV_OP_SET, 0, "k", "v", NULL));

    CHECK_REPLY_ERR(run(kv, KV_OP_SET, 0, "k", NULL),
                    "ERR wrong number of arguments for 'set' command");
    CHECK_REPLY_ERR(run(kv, KV_OP_SET, 0, "k", "v2", "extra", NULL),
                    "ERR wrong number of arguments for 'set' command");
    CHECK_REPLY_ERR(run(kv, KV_OP_INCR, 0, "k", "k", NULL),
                    "ERR wrong number of arguments for 'incr' command");
    CHECK_REPLY_ERR(run(kv, KV_OP_DEL, 0, NULL), "ERR wrong number of arguments for 'del' command");
    CHECK_REPLY_ERR(run(kv, KV_OP_EXPIRE, 0, NULL),
                    "ERR wrong number of arguments for 'expire' command");
    CHECK_REPLY_ERR(run(kv, KV_OP_SWEEP, 0, "k", "k", NULL),
                    "ERR wrong number of arguments for 'sweep' command");

    /* An unknown op, another version, garbage, nothing at all. */
    const uint8_t unknown_op[] = {1, 9, 0, 0, 0, 1, 1, 'k'};
    const uint8_t version_2[] = {2, KV_OP_DEL, 0, 0, 0, 1, 1, 'k'};
    const uint8_t garbage[] = {0xde, 0xad, 0xbe, 0xef};
    CHECK_REPLY_ERR(apply_raw(kv, unknown_op, sizeof(unknown_op)), "ERR malformed command");
    CHECK_REPLY_ERR(apply_raw(kv, version_2, sizeof(version_2)), "ERR malformed command");
    CHECK_REPLY_ERR(apply_raw(kv, garbage, sizeof(garbage)), "ERR malformed command");
    CHECK_REPLY_ERR(apply_raw(kv, NULL, 0), "ERR malformed command");
    CHECK_INT_EQ(kv_applied_index(kv), next_index); /* still counted as applied */

    CHECK_STR_EQ(get(kv, "k", 0), "v");
    CHECK_INT_EQ(kv_count(kv), 1);

    /* A NULL reply is allowed when nobody waits for it. */
    const uint8_t del_k[] = {1, KV_OP_DEL, 0, 0, 0, 1, 1, 'k'};
    CHECK_INT_EQ(kv_apply(kv, ++next_index, del_k, sizeof(del_k), NULL), 0);
    CHECK_INT_EQ(kv_count(kv), 0);
    kv_free(kv);
}

/* ---------------------------------------------------------------- exactly once */

static void test_exactly_once(void)
{
    struct kv *kv = kv_new();
    CHECK_REPLY_INT(run_as(kv, 7, 1, KV_OP_INCR, 0, "c", NULL), 1);
    CHECK_REPLY_INT(run_as(kv, 7, 1, KV_OP_INCR, 0, "c", NULL), 1); /* retry */
    CHECK_REPLY_INT(run_as(kv, 7, 1, KV_OP_INCR, 0, "c", NULL), 1);
    CHECK_STR_EQ(get(kv, "c", 0), "1");
    CHECK_REPLY_INT(run_as(kv, 7, 2, KV_OP_INCR, 0, "c", NULL), 2);
    CHECK_REPLY_INT(run_as(kv, 7, 2, KV_OP_INCR, 0, "c", NULL), 2);
    CHECK_REPLY_ERR(run_as(kv, 7, 1, KV_OP_INCR, 0, "c", NULL),
                    "ERR stale request: seq 1 is below the last applied 2 for this client (one "
                    "request in flight per client id)");
    CHECK_STR_EQ(get(kv, "c", 0), "2");

    /* A retry answers with the remembered reply even if the key changed since. */
    CHECK_OK(run(kv, KV_OP_SET, 0, "c", "100", NULL));
    CHECK_REPLY_INT(run_as(kv, 7, 2, KV_OP_INCR, 0, "c", NULL), 2);
    CHECK_STR_EQ(get(kv, "c", 0), "100");

    /* Another client has its own sequence; seqs may skip. */
    CHECK_REPLY_INT(run_as(kv, 8, 1, KV_OP_INCR, 0, "c", NULL), 101);
    CHECK_REPLY_INT(run_as(kv, 7, 10, KV_OP_INCR, 0, "c", NULL), 102);
    CHECK_REPLY_INT(run_as(kv, 8, 1, KV_OP_INCR, 0, "c", NULL), 101);

    /* Errors are remembered too; other reply types as well. */
    CHECK_OK(run(kv, KV_OP_SET, 0, "s", "abc", NULL));
    CHECK_REPLY_ERR(run_as(kv, 7, 11, KV_OP_INCR, 0, "s", NULL), NOT_INTEGER);
    CHECK_OK(run(kv, KV_OP_SET, 0, "s", "5", NULL));
    CHECK_REPLY_ERR(run_as(kv, 7, 11, KV_OP_INCR, 0, "s", NULL), NOT_INTEGER);
    CHECK_STR_EQ(get(kv, "s", 0), "5");
    CHECK_OK(run_as(kv, 7, 12, KV_OP_SET, 0, "s", "six", NULL));
    CHECK_OK(run(kv, KV_OP_SET, 0, "s", "seven", NULL));
    CHECK_OK(run_as(kv, 7, 12, KV_OP_SET, 0, "s", "six", NULL));
    CHECK_STR_EQ(get(kv, "s", 0), "seven");

    /* Client 0 is not tracked: every apply counts. */
    CHECK_REPLY_INT(run_as(kv, 0, 1, KV_OP_INCR, 0, "z", NULL), 1);
    CHECK_REPLY_INT(run_as(kv, 0, 1, KV_OP_INCR, 0, "z", NULL), 2);

    /* Many clients at once. */
    char key[32];
    for (uint64_t client = 100; client < 1100; client++) {
        snprintf(key, sizeof(key), "c%llu", (unsigned long long)client % 10);
        CHECK_REPLY_INT(run_as(kv, client, 1, KV_OP_INCR, 0, key, NULL),
                        (int64_t)(client - 100) / 10 + 1);
    }
    for (uint64_t client = 100; client < 1100; client++) {
        snprintf(key, sizeof(key), "c%llu", (unsigned long long)client % 10);
        CHECK_REPLY_INT(run_as(kv, client, 1, KV_OP_INCR, 0, key, NULL),
                        (int64_t)(client - 100) / 10 + 1);
    }
    CHECK_STR_EQ(get(kv, "c3", 0), "100");
    kv_free(kv);
}

/* ---------------------------------------------------------------- determinism */

/* kv_foreach's output as "key=value@deadline;" text. */
struct listing {
    char text[65536];
    size_t len;
};

static void list_visit(const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                       uint64_t deadline_ms, void *ctx)
{
    struct listing *l = ctx;
    char line[256];
    int n = snprintf(line, sizeof(line), "%.*s=%.*s@%llu;", (int)klen, (const char *)key, (int)vlen,
                     (const char *)val, (unsigned long long)deadline_ms);
    if (n > 0 && l->len + (size_t)n < sizeof(l->text)) {
        memcpy(l->text + l->len, line, (size_t)n + 1);
        l->len += (size_t)n;
    }
}

static const char *listing(const struct kv *kv, size_t max)
{
    static struct listing l;
    memset(&l, 0, sizeof(l));
    kv_foreach(kv, max, list_visit, &l);
    return l.text;
}

static uint64_t lcg_state;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(lcg_state >> 33);
}

static void test_same_log_same_state(void)
{
    struct kv *a = kv_new(), *b = kv_new(), *c = kv_new();
    static struct kv_cmd cmd;
    char key[16], val[16];
    lcg_state = 42;
    CHECK_INT_EQ(kv_digest(a), kv_digest(b));

    for (uint64_t index = 1; index <= 3000; index++) {
        if (index % 50 == 0) {
            kv_apply_noop(a, index);
            kv_apply_noop(b, index);
            kv_apply_noop(c, index);
            continue;
        }
        memset(&cmd, 0, sizeof(cmd));
        cmd.op = (uint8_t)(1 + lcg() % 5);
        cmd.now_ms = index * 10;
        cmd.client_id = lcg() % 4;
        cmd.seq = index;
        cmd.deadline_ms = (int64_t)(index * 10) + (int64_t)(lcg() % 400) - 50;
        snprintf(key, sizeof(key), "key%u", lcg() % 200);
        snprintf(val, sizeof(val), "%u", lcg() % 1000);
        cmd.nargs = cmd.op == KV_OP_SET ? 2 : 1;
        cmd.args[0] = (struct kv_arg){(const uint8_t *)key, (uint32_t)strlen(key)};
        cmd.args[1] = (struct kv_arg){(const uint8_t *)val, (uint32_t)strlen(val)};
        uint8_t *data;
        uint32_t len;
        struct kv_reply ra, rb;
        CHECK_INT_EQ(kv_cmd_encode(&cmd, &data, &len), 0);
        CHECK_INT_EQ(kv_apply(a, index, data, len, &ra), 0);
        CHECK_INT_EQ(kv_apply(b, index, data, len, &rb), 0);
        CHECK_INT_EQ(ra.type, rb.type);
        CHECK_INT_EQ(ra.integer, rb.integer);
        kv_reply_free(&ra);
        kv_reply_free(&rb);
        /* c skips one entry: its digest must differ from then on. */
        if (index != 1234)
            CHECK_INT_EQ(kv_apply(c, index, data, len, NULL), 0);
        else
            kv_apply_noop(c, index);
        free(data);
    }
    CHECK(kv_count(a) > 10);
    CHECK(kv_count_with_ttl(a) > 0);
    CHECK_INT_EQ(kv_applied_index(a), 3000);
    CHECK_INT_EQ(kv_applied_index(b), 3000);
    CHECK_INT_EQ(kv_applied_index(c), 3000);
    CHECK(kv_digest(a) == kv_digest(b));
    CHECK(kv_digest(a) != kv_digest(c));
    CHECK_INT_EQ(kv_count(a), kv_count(b));
    char first[65536];
    snprintf(first, sizeof(first), "%s", listing(a, 0));
    CHECK_STR_EQ(first, listing(b, 0));
    CHECK(strlen(first) > 0);

    /* A no-op and an empty entry at the same index differ. */
    struct kv *d = kv_new(), *e = kv_new();
    kv_apply_noop(d, 1);
    CHECK_INT_EQ(kv_apply(e, 1, NULL, 0, NULL), 0);
    CHECK(kv_digest(d) != kv_digest(e));
    CHECK_INT_EQ(kv_applied_index(d), 1);
    CHECK_INT_EQ(kv_applied_index(e), 1);

    /* The same entries at other indexes differ too. */
    struct kv *f = kv_new(), *g = kv_new();
    const uint8_t del_k[] = {1, KV_OP_DEL, 0, 0, 0, 1, 1, 'k'};
    CHECK_INT_EQ(kv_apply(f, 1, del_k, sizeof(del_k), NULL), 0);
    CHECK_INT_EQ(kv_apply(g, 2, del_k, sizeof(del_k), NULL), 0);
    CHECK(kv_digest(f) != kv_digest(g));
    kv_free(f);
    kv_free(g);
    kv_free(a);
    kv_free(b);
    kv_free(c);
    kv_free(d);
    kv_free(e);
}

/* ---------------------------------------------------------------- visiting */

static void test_foreach_sorted(void)
{
    struct kv *kv = kv_new();
    CHECK_STR_EQ(listing(kv, 0), "");
    CHECK_OK(run(kv, KV_OP_SET, 0, "b", "2", NULL));
    CHECK_OK(run(kv, KV_OP_SET, 0, "ab", "3", NULL));
    CHECK_OK(run(kv, KV_OP_SET, 0, "a", "1", NULL));
    CHECK_OK(run(kv, KV_OP_SET, 0, "", "0", NULL));
    CHECK_OK(run(kv, KV_OP_SET, 0, "B", "4", NULL));
    CHECK_REPLY_INT(expire(kv, "ab", 777, 0), 1);
    CHECK_STR_EQ(listing(kv, 0), "=0@0;B=4@0;a=1@0;ab=3@777;b=2@0;");
    CHECK_STR_EQ(listing(kv, 2), "=0@0;B=4@0;");
    CHECK_STR_EQ(listing(kv, 5), "=0@0;B=4@0;a=1@0;ab=3@777;b=2@0;");
    CHECK_STR_EQ(listing(kv, 99), "=0@0;B=4@0;a=1@0;ab=3@777;b=2@0;");

    /* Small tables of every size: each max gives the start of the full listing. */
    lcg_state = 3;
    for (int round = 0; round < 200; round++) {
        struct kv *small = kv_new();
        int keys = 1 + round % 12;
        char name[16];
        for (int i = 0; i < keys; i++) {
            snprintf(name, sizeof(name), "%u", lcg() % 1000);
            CHECK_OK(run(small, KV_OP_SET, 0, name, "v", NULL));
        }
        static char all[65536];
        snprintf(all, sizeof(all), "%s", listing(small, 0));
        for (size_t max = 1; max <= kv_count(small); max++) {
            const char *part = listing(small, max);
            size_t semis = 0;
            for (const char *p = part; *p != '\0'; p++)
                semis += *p == ';';
            CHECK_INT_EQ(semis, max);
            CHECK(strncmp(all, part, strlen(part)) == 0);
        }
        kv_free(small);
    }

    /* The first max keys of a big table equal the start of the full listing. */
    char key[16];
    lcg_state = 7;
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "k%u", lcg() % 100000);
        CHECK_OK(run(kv, KV_OP_SET, 0, key, "v", NULL));
    }
    static char full[65536];
    snprintf(full, sizeof(full), "%s", listing(kv, 0));
    for (size_t max = 1; max < 40; max += 7) {
        const char *part = listing(kv, max);
        CHECK(strncmp(full, part, strlen(part)) == 0);
        size_t semis = 0;
        for (const char *p = part; *p != '\0'; p++)
            semis += *p == ';';
        CHECK_INT_EQ(semis, max);
    }
    kv_free(kv);
}

struct expired_list {
    int count;
    uint64_t deadline_sum;
    bool saw_live;
    uint64_t now_ms;
};

static void expired_visit(const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                          uint64_t deadline_ms, void *ctx)
{
    struct expired_list *l = ctx;
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    l->count++;
    l->deadline_sum += deadline_ms;
    if (deadline_ms == 0 || deadline_ms > l->now_ms)
        l->saw_live = true;
}

static void test_foreach_expired(void)
{
    struct kv *kv = kv_new();
    struct expired_list l;
    char key[16];
    for (int i = 1; i <= 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CHECK_OK(run(kv, KV_OP_SET, 0, key, "v", NULL));
        if (i % 2 == 0)
            CHECK_REPLY_INT(expire(kv, key, i * 10, 0), 1); /* deadlines 20, 40, ... 1000 */
    }
    CHECK_INT_EQ(kv_count_with_ttl(kv), 50);

    memset(&l, 0, sizeof(l));
    l.now_ms = 10;
    kv_foreach_expired(kv, 10, 0, expired_visit, &l);
    CHECK_INT_EQ(l.count, 0);

    memset(&l, 0, sizeof(l));
    l.now_ms = 200; /* deadlines 20..200: 10 keys */
    kv_foreach_expired(kv, 200, 0, expired_visit, &l);
    CHECK_INT_EQ(l.count, 10);
    CHECK_INT_EQ(l.deadline_sum, 1100);
    CHECK(!l.saw_live);

    memset(&l, 0, sizeof(l));
    l.now_ms = 200;
    kv_foreach_expired(kv, 200, 4, expired_visit, &l);
    CHECK_INT_EQ(l.count, 4);
    CHECK(!l.saw_live);

    memset(&l, 0, sizeof(l));
    l.now_ms = UINT64_MAX;
    kv_foreach_expired(kv, UINT64_MAX, 0, expired_visit, &l);
    CHECK_INT_EQ(l.count, 50);
    kv_free(kv);
}

/* ---------------------------------------------------------------- codec */

static bool cmd_equal(const struct kv_cmd *a, const struct kv_cmd *b)
{
    if (a->op != b->op || a->now_ms != b->now_ms || a->client_id != b->client_id ||
        a->seq != b->seq || a->nargs != b->nargs)
        return false;
    if (a->op == KV_OP_EXPIRE && a->deadline_ms != b->deadline_ms)
        return false;
    for (uint32_t i = 0; i < a->nargs; i++) {
        if (a->args[i].len != b->args[i].len ||
            (a->args[i].len > 0 && memcmp(a->args[i].p, b->args[i].p, a->args[i].len) != 0))
            return false;
    }
    return true;
}

static void check_round_trip(const struct kv_cmd *cmd)
{
    static struct kv_cmd back;
    uint8_t *data;
    uint32_t len;
    CHECK_INT_EQ(kv_cmd_encode(cmd, &data, &len), 0);
    CHECK_INT_EQ(kv_cmd_decode(data, len, &back), 0);
    CHECK(cmd_equal(cmd, &back));
    /* Every shorter prefix, and one trailing byte more, are malformed. */
    for (uint32_t cut = 0; cut < len; cut++)
        CHECK_INT_EQ(kv_cmd_decode(data, cut, &back), -1);
    uint8_t *longer = malloc(len + 1);
    CHECK(longer != NULL);
    memcpy(longer, data, len);
    longer[len] = 0;
    CHECK_INT_EQ(kv_cmd_decode(longer, len + 1, &back), -1);
    free(longer);
    free(data);
}

static void test_codec_round_trip(void)
{
    static struct kv_cmd cmd;
    const uint8_t binary[] = {0, 0xff, 0x80, '\n'};

    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_SET;
    cmd.nargs = 2;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"greeting", 8};
    cmd.args[1] = (struct kv_arg){(const uint8_t *)"hello", 5};
    check_round_trip(&cmd);
    cmd.now_ms = 1700000000123ULL;
    cmd.client_id = UINT64_MAX;
    cmd.seq = 1ULL << 63;
    cmd.args[1] = (struct kv_arg){binary, sizeof(binary)};
    check_round_trip(&cmd);
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"", 0};
    cmd.args[1] = (struct kv_arg){NULL, 0};
    check_round_trip(&cmd);

    const int64_t deadlines[] = {0, 1, -1, 1700000000123LL, INT64_MAX, INT64_MIN};
    cmd.op = KV_OP_EXPIRE;
    cmd.nargs = 1;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"k", 1};
    for (size_t i = 0; i < sizeof(deadlines) / sizeof(deadlines[0]); i++) {
        cmd.deadline_ms = deadlines[i];
        check_round_trip(&cmd);
    }

    cmd.op = KV_OP_DEL;
    cmd.nargs = KV_MAX_ARGS;
    for (uint32_t i = 0; i < KV_MAX_ARGS; i++)
        cmd.args[i] = (struct kv_arg){binary, i % 5};
    check_round_trip(&cmd);

    /* Encode refuses what it cannot represent. */
    uint8_t *data;
    uint32_t len;
    cmd.nargs = KV_MAX_ARGS + 1;
    CHECK_INT_EQ(kv_cmd_encode(&cmd, &data, &len), -1);
    cmd.nargs = 1;
    cmd.op = 0;
    CHECK_INT_EQ(kv_cmd_encode(&cmd, &data, &len), -1);
    cmd.op = 6;
    CHECK_INT_EQ(kv_cmd_encode(&cmd, &data, &len), -1);

    /* A small SET stays small. */
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_SET;
    cmd.now_ms = 1700000000123ULL;
    cmd.client_id = 12345;
    cmd.seq = 99;
    cmd.nargs = 2;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"k", 1};
    cmd.args[1] = (struct kv_arg){(const uint8_t *)"v", 1};
    CHECK_INT_EQ(kv_cmd_encode(&cmd, &data, &len), 0);
    CHECK(len <= 20);
    free(data);
}

static void test_codec_rejects_garbage(void)
{
    static struct kv_cmd cmd;
    /* Hand-made buffers: version, op, now, client, seq, [deadline], nargs, args. */
    const struct {
        uint8_t bytes[16];
        uint32_t len;
        int want;
    } cases[] = {
        {{1, KV_OP_DEL, 0, 0, 0, 1, 1, 'k'}, 8, 0},
        {{1, KV_OP_DEL, 0, 0, 0, 1, 2, 'k'}, 8, -1},       /* arg past the end */
        {{1, KV_OP_DEL, 0, 0, 0, 0x81, 0x02, 0}, 8, -1},   /* 257 args */
        {{1, KV_OP_DEL, 0x80, 0, 0, 0, 1, 1, 'k'}, 9, -1}, /* overlong varint */
        {{1, KV_OP_DEL, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02}, 12, -1},
        {{1, KV_OP_DEL, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0},
         15,
         0}, /* UINT64_MAX now, no args */
        {{1, 0, 0, 0, 0, 0}, 6, -1},
        {{1, 6, 0, 0, 0, 0}, 6, -1},
        {{0, KV_OP_DEL, 0, 0, 0, 0}, 6, -1},
        {{1, KV_OP_EXPIRE, 0, 0, 0, 1, 1, 'k'}, 8, -1}, /* deadline missing */
        {{1, KV_OP_EXPIRE, 0, 0, 0, 3, 1, 1, 'k'}, 9, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_INT_EQ(kv_cmd_decode(cases[i].bytes, cases[i].len, &cmd), cases[i].want);
    CHECK_INT_EQ(kv_cmd_decode(cases[5].bytes, cases[5].len, &cmd), 0);
    CHECK(cmd.now_ms == UINT64_MAX);
    CHECK_INT_EQ(kv_cmd_decode(cases[10].bytes, cases[10].len, &cmd), 0);
    CHECK_INT_EQ(cmd.deadline_ms, -2); /* zigzag 3 */

    /* Valid entries with random damage: decode fails or gives arguments
     * inside the buffer. */
    uint8_t buf[64];
    int decoded = 0, refused = 0;
    lcg_state = 1;
    for (int round = 0; round < 20000; round++) {
        memset(&cmd, 0, sizeof(cmd));
        cmd.op = (uint8_t)(1 + lcg() % 5);
        cmd.now_ms = lcg() % 300;
        cmd.deadline_ms = (int64_t)(lcg() % 300) - 100;
        cmd.nargs = lcg() % 4;
        for (uint32_t i = 0; i < cmd.nargs; i++)
            cmd.args[i] = (struct kv_arg){buf, lcg() % 8};
        uint8_t *data;
        uint32_t len;
        CHECK_INT_EQ(kv_cmd_encode(&cmd, &data, &len), 0);
        memcpy(buf, data, len);
        free(data);
        for (uint32_t flips = lcg() % 3; flips > 0; flips--)
            buf[lcg() % len] = (uint8_t)lcg();
        len = lcg() % 4 == 0 ? lcg() % (len + 1) : len;
        if (kv_cmd_decode(buf, len, &cmd) != 0) {
            refused++;
            continue;
        }
        decoded++;
        CHECK(cmd.nargs <= KV_MAX_ARGS);
        for (uint32_t i = 0; i < cmd.nargs; i++)
            CHECK(cmd.args[i].p >= buf && cmd.args[i].p + cmd.args[i].len <= buf + len);
    }
    CHECK(refused > 0);
    CHECK(decoded > 0);
}

static const char *describe(const struct kv_cmd *cmd, size_t size)
{
    static char out[512];
    uint8_t *data;
    uint32_t len;
    memset(out, '#', sizeof(out));
    CHECK_INT_EQ(kv_cmd_encode(cmd, &data, &len), 0);
    kv_cmd_describe(data, len, out, size);
    CHECK(size == 0 || strlen(out) < size);
    free(data);
    return out;
}

static void test_describe(void)
{
    static struct kv_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_SET;
    cmd.nargs = 2;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"greeting", 8};
    cmd.args[1] = (struct kv_arg){(const uint8_t *)"hello", 5};
    CHECK_STR_EQ(describe(&cmd, 100), "SET greeting hello");
    CHECK_STR_EQ(describe(&cmd, 19), "SET greeting hello"); /* exactly fits */
    CHECK_STR_EQ(describe(&cmd, 18), "SET greeting h...");
    CHECK_STR_EQ(describe(&cmd, 4), "...");
    CHECK_STR_EQ(describe(&cmd, 2), ".");
    CHECK_STR_EQ(describe(&cmd, 1), "");

    const uint8_t odd[] = {'a', 0, 0xff, '\n'};
    cmd.args[1] = (struct kv_arg){odd, sizeof(odd)};
    CHECK_STR_EQ(describe(&cmd, 100), "SET greeting a\\x00\\xff\\x0a");
    CHECK_STR_EQ(describe(&cmd, 22), "SET greeting a\\x00..."); /* no half escapes */

    cmd.op = KV_OP_DEL;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"a", 1};
    cmd.args[1] = (struct kv_arg){(const uint8_t *)"b", 1};
    CHECK_STR_EQ(describe(&cmd, 100), "DEL a b");
    cmd.op = KV_OP_INCR;
    cmd.nargs = 1;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"counter", 7};
    CHECK_STR_EQ(describe(&cmd, 100), "INCR counter");
    cmd.op = KV_OP_SWEEP;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"k", 1};
    CHECK_STR_EQ(describe(&cmd, 100), "SWEEP k");
    cmd.op = KV_OP_EXPIRE;
    cmd.deadline_ms = 1700000000123LL; /* 2023-11-14 22:13:20.123 UTC */
    setenv("TZ", "UTC", 1);
    tzset();
    CHECK_STR_EQ(describe(&cmd, 100), "EXPIRE k until 22:13:20.123");
    cmd.deadline_ms = 0;
    CHECK_STR_EQ(describe(&cmd, 100), "EXPIRE k @0");
    cmd.deadline_ms = 1700000000123LL;

    /* A long key is shortened, the deadline kept. */
    static char long_key[300];
    memset(long_key, 'x', sizeof(long_key));
    cmd.args[0] = (struct kv_arg){(const uint8_t *)long_key, sizeof(long_key)};
    CHECK_STR_EQ(describe(&cmd, 32), "EXPIRE xx... until 22:13:20.123");

    /* A big value in a small line. */
    uint8_t *big = malloc(KV_MAX_VALUE);
    CHECK(big != NULL);
    memset(big, 'v', KV_MAX_VALUE);
    cmd.op = KV_OP_SET;
    cmd.nargs = 2;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"k", 1};
    cmd.args[1] = (struct kv_arg){big, KV_MAX_VALUE};
    CHECK_STR_EQ(describe(&cmd, 16), "SET k vvvvvv...");
    free(big);

    char out[64];
    const uint8_t garbage[] = {7, 7, 7};
    kv_cmd_describe(garbage, sizeof(garbage), out, sizeof(out));
    CHECK_STR_EQ(out, "<malformed, 3 bytes>");
}

/* ---------------------------------------------------------------- scale */

static void test_100k_keys(void)
{
    struct kv *kv = kv_new();
    static struct kv_cmd cmd;
    enum { N = 100000 };
    char key[32], val[32];
    size_t empty_memory = kv_memory(kv);

    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_SET;
    cmd.nargs = 2;
    for (int i = 0; i < N; i++) {
        int klen = snprintf(key, sizeof(key), "key:%06d", i);
        int vlen = snprintf(val, sizeof(val), "value-%d", i);
        cmd.args[0] = (struct kv_arg){(const uint8_t *)key, (uint32_t)klen};
        cmd.args[1] = (struct kv_arg){(const uint8_t *)val, (uint32_t)vlen};
        struct kv_reply r = apply_cmd(kv, &cmd);
        if (r.type != KV_REPLY_OK)
            CHECK_OK(r);
    }
    CHECK_INT_EQ(kv_count(kv), N);
    size_t full_memory = kv_memory(kv);
    CHECK(full_memory > empty_memory + (size_t)N * 20);
    CHECK(full_memory < (size_t)N * 100); /* about 20 bytes of data a key */

    int found = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "key:%06d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        const char *got = get(kv, key, 0);
        found += got != NULL && strcmp(got, val) == 0;
    }
    CHECK_INT_EQ(found, N);
    CHECK(get(kv, "key:100000", 0) == NULL);
    CHECK_STR_EQ(listing(kv, 2), "key:000000=value-0@0;key:000001=value-1@0;");

    /* Delete the even keys, then the rest. */
    cmd.op = KV_OP_DEL;
    cmd.nargs = 1;
    int deleted = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = pass; i < N; i += 2) {
            int klen = snprintf(key, sizeof(key), "key:%06d", i);
            cmd.args[0] = (struct kv_arg){(const uint8_t *)key, (uint32_t)klen};
            struct kv_reply r = apply_cmd(kv, &cmd);
            deleted += r.type == KV_REPLY_INT && r.integer == 1;
        }
        if (pass == 0) {
            CHECK_INT_EQ(kv_count(kv), N / 2);
            found = 0;
            for (int i = 0; i < N; i++) {
                snprintf(key, sizeof(key), "key:%06d", i);
                found += (get(kv, key, 0) != NULL) == (i % 2 == 1);
            }
            CHECK_INT_EQ(found, N);
        }
    }
    CHECK_INT_EQ(deleted, N);
    CHECK_INT_EQ(kv_count(kv), 0);
    CHECK(kv_memory(kv) < empty_memory + 4096); /* the table shrank back */
    kv_free(kv);
}

/* Keys chosen so that one table's hash puts them all in one home slot: with
 * that table's key they pile up (the attack works), with a random key they
 * spread; and the data set's digest does not depend on the table's key. */
static void test_hash_flooding(void)
{
    static const uint8_t known[KV_HASH_KEY_BYTES] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                     9, 10, 11, 12, 13, 14, 15, 16};
    enum { N = 600, BITS = 13 };
    struct kv *target = kv_new_keyed(known);
    struct kv *random_keyed = kv_new();
    CHECK(target != NULL && random_keyed != NULL);
    static char keys[N][24];
    size_t found = 0;
    for (uint64_t k = 0; found < N; k++) {
        char key[24];
        int len = snprintf(key, sizeof(key), "flood:%" PRIu64, k);
        if ((kv_key_hash(target, (const uint8_t *)key, (size_t)len) & ((1u << BITS) - 1)) == 0)
            memcpy(keys[found++], key, (size_t)len + 1);
    }
    for (size_t i = 0; i < N; i++) {
        CHECK_OK(run(target, KV_OP_SET, 1, keys[i], "v", NULL));
        CHECK_OK(run(random_keyed, KV_OP_SET, 1, keys[i], "v", NULL));
    }
    size_t piled = kv_longest_probe(target), spread = kv_longest_probe(random_keyed);
    printf("hash flooding: %d chosen keys, longest probe %zu with the known key, %zu with a "
           "random one\n",
           N, piled, spread);
    CHECK(piled >= N - 1);
    CHECK(spread < 64);
    char a[KV_STATE_DIGEST_HEX + 1], b[KV_STATE_DIGEST_HEX + 1];
    kv_state_digest(target, a);
    kv_state_digest(random_keyed, b);
    CHECK_STR_EQ(a, b);
    kv_free(target);
    kv_free(random_keyed);
}

/* ---------------------------------------------------------------- sessions */

#define UNKNOWN_SESSION(seq)                                                                       \
    "ERR unknown client session (expired?) for seq " #seq ": start a new client id at seq 1"
#define HOUR KV_SESSION_IDLE_MS

static void test_session_rules(void)
{
    struct kv *kv = kv_new();
    /* A seq used again for another command is refused; the same command gets
     * its reply. */
    CHECK_REPLY_INT(run_as(kv, 7, 1, KV_OP_INCR, 100, "c", NULL), 1);
    CHECK_REPLY_ERR(run_as(kv, 7, 1, KV_OP_INCR, 100, "d", NULL),
                    "ERR sequence number already used for a different command");
    CHECK_REPLY_ERR(run_as(kv, 7, 1, KV_OP_SET, 100, "c", "1", NULL),
                    "ERR sequence number already used for a different command");
    CHECK(get(kv, "d", 100) == NULL);
    CHECK_REPLY_INT(run_as(kv, 7, 1, KV_OP_INCR, 100, "c", NULL), 1);
    CHECK_STR_EQ(get(kv, "c", 100), "1");

    /* An EXPIRE retried at another leader carries another deadline: still the
     * same request. */
    CHECK_OK(run_as(kv, 7, 2, KV_OP_SET, 100, "e", "v", NULL));
    static struct kv_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_EXPIRE;
    cmd.now_ms = 200;
    cmd.client_id = 7;
    cmd.seq = 3;
    cmd.deadline_ms = 10000;
    cmd.nargs = 1;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"e", 1};
    CHECK_REPLY_INT(apply_cmd(kv, &cmd), 1);
    cmd.now_ms = 300;
    cmd.deadline_ms = 20000;
    CHECK_REPLY_INT(apply_cmd(kv, &cmd), 1);
    CHECK_INT_EQ(ttl(kv, "e", 300), 9700);

    /* seq 0 and an unknown client's seq > 1 are refused and change nothing. */
    CHECK_REPLY_ERR(run_as(kv, 8, 0, KV_OP_INCR, 300, "c", NULL),
                    "ERR sequence numbers start at 1");
    CHECK_REPLY_ERR(run_as(kv, 9, 5, KV_OP_INCR, 300, "c", NULL), UNKNOWN_SESSION(5));
    CHECK_STR_EQ(get(kv, "c", 300), "1");
    CHECK_INT_EQ(kv_session_count(kv), 1);
    kv_free(kv);
}

/* Two replicas apply the same log: sessions expire at the same entry, by the
 * log's clock alone. */
static void test_session_expiry(void)
{
    struct kv *r[2] = {kv_new(), kv_new()};
    for (int i = 0; i < 2; i++) {
        uint64_t saved = next_index;
        next_index = 0;
        const uint64_t t = 1000;
        CHECK_REPLY_INT(run_as(r[i], 5, 1, KV_OP_INCR, t, "x", NULL), 1);
        CHECK_REPLY_INT(run_as(r[i], 5, 2, KV_OP_INCR, t, "x", NULL), 2);
        CHECK_REPLY_INT(run_as(r[i], 6, 1, KV_OP_INCR, t, "y", NULL), 1);
        /* Idle for exactly the limit: still there. */
        CHECK_REPLY_INT(run_as(r[i], 6, 2, KV_OP_INCR, t + HOUR, "y", NULL), 2);
        CHECK_REPLY_INT(run_as(r[i], 6, 2, KV_OP_INCR, t + HOUR, "y", NULL), 2);
        CHECK_INT_EQ(kv_session_count(r[i]), 2);
        /* One more millisecond, by another client's command: 5 expires. */
        CHECK_OK(run(r[i], KV_OP_SET, t + HOUR + 1, "z", "1", NULL));
        CHECK_INT_EQ(kv_session_count(r[i]), 1);
        /* The retry of 5's applied seq 2 is refused, not applied again. */
        CHECK_REPLY_ERR(run_as(r[i], 5, 2, KV_OP_INCR, t + HOUR + 2, "x", NULL),
                        UNKNOWN_SESSION(2));
        CHECK_REPLY_ERR(run_as(r[i], 5, 3, KV_OP_INCR, t + HOUR + 2, "x", NULL),
                        UNKNOWN_SESSION(3));
        CHECK_STR_EQ(get(r[i], "x", t + HOUR + 2), "2");
        /* A fresh start at seq 1 is a new session. */
        CHECK_REPLY_INT(run_as(r[i], 5, 1, KV_OP_INCR, t + HOUR + 3, "x", NULL), 3);
        CHECK_REPLY_INT(run_as(r[i], 5, 2, KV_OP_INCR, t + HOUR + 3, "x", NULL), 4);
        /* A leader whose clock is behind does not bring a session back: the
         * log's clock never goes back. */
        CHECK_REPLY_INT(run_as(r[i], 6, 3, KV_OP_INCR, t + HOUR + 4, "y", NULL), 3);
        CHECK_OK(run(r[i], KV_OP_SET, t + 2 * HOUR + 10, "z", "1", NULL));
        CHECK_REPLY_ERR(run_as(r[i], 6, 4, KV_OP_INCR, t + HOUR + 5, "y", NULL),
                        UNKNOWN_SESSION(4));
        CHECK_STR_EQ(get(r[i], "y", t + 2 * HOUR + 10), "3");

        /* Many sessions expire at once: freed a few per command. */
        uint64_t t2 = t + 4 * HOUR;
        for (uint64_t c = 1000; c < 1100; c++)
            CHECK_REPLY_INT(run_as(r[i], c, 1, KV_OP_INCR, t2, "w", NULL), (int64_t)(c - 999));
        CHECK_INT_EQ(kv_session_count(r[i]), 100);
        CHECK_OK(run(r[i], KV_OP_SET, t2 + HOUR + 1, "z", "2", NULL));
        CHECK_INT_EQ(kv_session_count(r[i]), 100 - KV_SESSION_SWEEP_MAX);
        for (int k = 0; k < 100; k++)
            CHECK_OK(run(r[i], KV_OP_SET, t2 + HOUR + 1, "z", "2", NULL));
        CHECK_INT_EQ(kv_session_count(r[i]), 0);
        /* An expired session not freed yet is gone already. */
        uint64_t t3 = t2 + HOUR + 1;
        for (uint64_t c = 2000; c < 2020; c++)
            CHECK_REPLY_INT(run_as(r[i], c, 1, KV_OP_INCR, t3, "v", NULL), (int64_t)(c - 1999));
        CHECK_REPLY_ERR(run_as(r[i], 2019, 2, KV_OP_INCR, t3 + HOUR + 1, "v", NULL),
                        UNKNOWN_SESSION(2));
        CHECK_INT_EQ(kv_session_count(r[i]), 20 - KV_SESSION_SWEEP_MAX - 1);
        CHECK_STR_EQ(get(r[i], "v", t3 + HOUR + 1), "20");
        if (i == 1)
            CHECK_INT_EQ(kv_applied_index(r[0]), next_index);
        else
            next_index = saved;
    }
    CHECK(kv_digest(r[0]) == kv_digest(r[1]));
    kv_free(r[0]);
    kv_free(r[1]);
}

/* More than KV_MAX_SESSIONS clients: the least recently used goes, the
 * smallest client id among equals. */
static void test_session_cap(void)
{
    struct kv *kv = kv_new();
    for (uint64_t c = 1; c <= KV_MAX_SESSIONS; c++)
        CHECK_OK(run_as(kv, c, 1, KV_OP_SET, 100, "k", "v", NULL));
    CHECK_INT_EQ(kv_session_count(kv), KV_MAX_SESSIONS);
    CHECK_OK(run_as(kv, 1, 2, KV_OP_SET, 200, "k", "v", NULL)); /* 1 is used again */
    CHECK_OK(run_as(kv, KV_MAX_SESSIONS + 1, 1, KV_OP_SET, 200, "k", "v", NULL));
    CHECK_INT_EQ(kv_session_count(kv), KV_MAX_SESSIONS);
    CHECK_REPLY_ERR(run_as(kv, 2, 2, KV_OP_SET, 200, "k", "v", NULL), UNKNOWN_SESSION(2));
    CHECK_OK(run_as(kv, 1, 3, KV_OP_SET, 200, "k", "v", NULL));
    CHECK_OK(run_as(kv, 3, 2, KV_OP_SET, 200, "k", "v", NULL));
    kv_free(kv);
}

/* ---------------------------------------------------------------- snapshots */

static int buf_write(const uint8_t *p, size_t n, void *ctx)
{
    struct buf *b = ctx;
    return buf_append(b, p, n);
}

struct pieces {
    struct buf b;
    size_t count, largest;
};

static int pieces_write(const uint8_t *p, size_t n, void *ctx)
{
    struct pieces *pc = ctx;
    pc->count++;
    if (n > pc->largest)
        pc->largest = n;
    return buf_append(&pc->b, p, n);
}

static int failing_write(const uint8_t *p, size_t n, void *ctx)
{
    (void)p;
    (void)n;
    int *left = ctx;
    return (*left)-- > 0 ? 0 : -1;
}

static struct buf snapshot(const struct kv *kv)
{
    struct buf b = {0};
    CHECK_INT_EQ(kv_snapshot_write(kv, buf_write, &b), 0);
    return b;
}

static struct kv *load(const struct buf *b)
{
    struct kv *kv = NULL;
    char err[200];
    int rc = kv_snapshot_load(b->data, b->len, &kv, err, sizeof(err));
    CHECK_INT_EQ(rc, KV_SNAPSHOT_OK);
    if (rc != KV_SNAPSHOT_OK)
        fprintf(stderr, "load: %s\n", err);
    return kv;
}

static bool same_bytes(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Everything visible about two stores agrees, and so do their snapshots. */
static void check_same_store(const struct kv *a, const struct kv *b)
{
    char da[KV_STATE_DIGEST_HEX + 1], db[KV_STATE_DIGEST_HEX + 1];
    kv_state_digest(a, da);
    kv_state_digest(b, db);
    CHECK_STR_EQ(da, db);
    CHECK(kv_digest(a) == kv_digest(b));
    CHECK_INT_EQ(kv_applied_index(a), kv_applied_index(b));
    CHECK_INT_EQ(kv_time_floor(a), kv_time_floor(b));
    CHECK_INT_EQ(kv_count(a), kv_count(b));
    CHECK_INT_EQ(kv_count_with_ttl(a), kv_count_with_ttl(b));
    struct buf sa = snapshot(a), sb = snapshot(b);
    CHECK(same_bytes(&sa, &sb));
    buf_free(&sa);
    buf_free(&sb);
}

static void test_snapshot_empty(void)
{
    struct kv *a = kv_new();
    struct buf s = snapshot(a);
    CHECK_INT_EQ(s.len, 60);
    struct kv *b = load(&s);
    if (b != NULL) {
        check_same_store(a, b);
        CHECK_INT_EQ(kv_count(b), 0);
        CHECK_INT_EQ(kv_session_count(b), 0);
        CHECK_OK(run(b, KV_OP_SET, 0, "k", "v", NULL));
    }
    buf_free(&s);
    kv_free(a);
    kv_free(b);
}

/* A reply compared field by field. */
static void check_same_reply(const struct kv_reply *x, const struct kv_reply *y)
{
    CHECK_INT_EQ(x->type, y->type);
    CHECK_INT_EQ(x->integer, y->integer);
    CHECK_STR_EQ(x->err, y->err);
    CHECK_INT_EQ(x->bulk_len, y->bulk_len);
}

static void test_snapshot_round_trip(void)
{
    struct kv *a = kv_new();
    static uint8_t big[1024 * 1024];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + i / 251);
    static struct kv_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.op = KV_OP_SET;
    cmd.now_ms = 5000;
    cmd.nargs = 2;
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"big", 3};
    cmd.args[1] = (struct kv_arg){big, sizeof(big)};
    CHECK_OK(apply_cmd(a, &cmd));
    const uint8_t bin_key[] = {0, 1, 0, 0xff}, bin_val[] = {0xff, 0, 0, 'x', 0};
    cmd.args[0] = (struct kv_arg){bin_key, sizeof(bin_key)};
    cmd.args[1] = (struct kv_arg){bin_val, sizeof(bin_val)};
    CHECK_OK(apply_cmd(a, &cmd));
    cmd.args[0] = (struct kv_arg){(const uint8_t *)"", 0};
    cmd.args[1] = (struct kv_arg){(const uint8_t *)"", 0};
    CHECK_OK(apply_cmd(a, &cmd));
    CHECK_OK(run(a, KV_OP_SET, 5000, "ttl", "t", NULL));
    CHECK_REPLY_INT(expire(a, "ttl", 90000, 5000), 1);
    CHECK_OK(run(a, KV_OP_SET, 5000, "gone", "g", NULL));
    CHECK_REPLY_INT(expire(a, "gone", 6000, 5000), 1); /* expired, not swept yet */
    CHECK_REPLY_INT(run_as(a, 11, 1, KV_OP_INCR, 7000, "n", NULL), 1);
    CHECK_OK(run_as(a, 12, 1, KV_OP_SET, 7000, "s", "x", NULL));
    CHECK_REPLY_ERR(run_as(a, 13, 1, KV_OP_INCR, 7000, "s", NULL), NOT_INTEGER);
    kv_apply_noop(a, ++next_index);

    struct pieces pc = {{0}, 0, 0};
    CHECK_INT_EQ(kv_snapshot_write(a, pieces_write, &pc), 0);
    CHECK(pc.count >= 3);
    CHECK_INT_EQ(pc.largest, sizeof(big)); /* the big value went through in one piece */
    struct kv *b = load(&pc.b);
    if (b != NULL) {
        check_same_store(a, b);
        CHECK_INT_EQ(kv_session_count(b), 3);
        const uint8_t *v;
        uint32_t vlen;
        CHECK(kv_get(b, (const uint8_t *)"big", 3, 7000, &v, &vlen));
        CHECK(vlen == sizeof(big) && memcmp(v, big, sizeof(big)) == 0);
        CHECK(kv_get(b, bin_key, sizeof(bin_key), 7000, &v, &vlen));
        CHECK(vlen == sizeof(bin_val) && memcmp(v, bin_val, sizeof(bin_val)) == 0);
        CHECK(kv_get(b, (const uint8_t *)"", 0, 7000, &v, &vlen) && vlen == 0);
        CHECK_INT_EQ(ttl(b, "ttl", 7000), 83000);
        CHECK_INT_EQ(ttl(b, "gone", 7000), -2);
        CHECK_INT_EQ(kv_count(b), 7);
        static char first[65536];
        snprintf(first, sizeof(first), "%s", listing(a, 0));
        CHECK(strlen(first) > 20);
        CHECK_STR_EQ(first, listing(b, 0));
        /* Retries get the remembered replies from both. */
        struct kv *both[2] = {a, b};
        uint64_t at = next_index;
        for (int i = 0; i < 2; i++) {
            next_index = at;
            CHECK_REPLY_INT(run_as(both[i], 11, 1, KV_OP_INCR, 8000, "n", NULL), 1);
            CHECK_OK(run_as(both[i], 12, 1, KV_OP_SET, 8000, "s", "x", NULL));
            CHECK_REPLY_ERR(run_as(both[i], 13, 1, KV_OP_INCR, 8000, "s", NULL), NOT_INTEGER);
            CHECK_REPLY_ERR(run_as(both[i], 13, 1, KV_OP_INCR, 8000, "n", NULL),
                            "ERR sequence number already used for a different command");
            CHECK_REPLY_INT(run_as(both[i], 11, 2, KV_OP_INCR, 8000, "n", NULL), 2);
            CHECK_REPLY_ERR(run_as(both[i], 14, 2, KV_OP_INCR, 8000, "n", NULL),
                            UNKNOWN_SESSION(2));
        }
        check_same_store(a, b);
    }
    /* A writer that fails stops the snapshot. */
    int left = 2;
    CHECK_INT_EQ(kv_snapshot_write(a, failing_write, &left), -1);
    buf_free(&pc.b);
    kv_free(a);
    kv_free(b);
}

/* The snapshot's order when many keys fall into one bucket of the sort (keys
 * made to share the top bits of their rank, as someone who knows the fixed
 * rank hash could): that bucket is sorted by qsort, the others by insertion;
 * the order is the same either way, which loading checks key by key. */
static void test_snapshot_crowded_bucket(void)
{
    struct kv *a = kv_new();
    char key[32];
    int crowded = 0, others = 0;
    for (int i = 0; crowded < 40 || others < 20; i++) {
        snprintf(key, sizeof(key), "crowd%d", i);
        /* 60 keys: 16 buckets of the rank's top 4 bits. */
        bool top_zero = kv_snapshot_rank((const uint8_t *)key, (uint32_t)strlen(key)) >> 60 == 0;
        if (top_zero ? crowded++ >= 40 : others++ >= 20)
            continue;
        CHECK_OK(run(a, KV_OP_SET, 1000, key, "v", NULL));
    }
    struct buf sa = snapshot(a);
    struct kv *back = load(&sa);
    CHECK(back != NULL && kv_count(back) == 60);
    struct buf sb = snapshot(back);
    /* Loaded into a table keyed and filled differently: the same bytes. */
    CHECK(sb.len == sa.len && memcmp(sb.data, sa.data, sa.len) == 0);
    buf_free(&sa);
    buf_free(&sb);
    kv_free(back);
    kv_free(a);
}

/* Equal data built in different orders, in tables keyed and sized
 * differently, gives the same bytes. */
static void test_snapshot_canonical(void)
{
    const uint8_t k1[KV_HASH_KEY_BYTES] = {1}, k2[KV_HASH_KEY_BYTES] = {2};
    struct kv *a = kv_new_keyed(k1), *b = kv_new_keyed(k2), *c = kv_new();
    char key[16], val[16];
    uint64_t start = next_index;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i * i);
        CHECK_OK(run(a, KV_OP_SET, 1000, key, val, NULL));
    }
    next_index = start;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i * i);
        CHECK_OK(run(b, KV_OP_SET, 1000, key, val, NULL));
    }
    check_same_store(a, b); /* the same log, other tables */

    /* c: the keys in reverse order, with 2000 others added and deleted. */
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "tmp%d", i);
        CHECK_OK(run(c, KV_OP_SET, 1000, key, "x", NULL));
    }
    for (int i = 299; i >= 0; i--) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i * i);
        CHECK_OK(run(c, KV_OP_SET, 1000, key, val, NULL));
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "tmp%d", i);
        CHECK_REPLY_INT(run(c, KV_OP_DEL, 1000, key, NULL), 1);
    }
    struct buf sa = snapshot(a), sc = snapshot(c);
    /* The log differs (digest, applied index); the state after it does not. */
    CHECK(sa.len == sc.len && sa.len > 40);
    if (sa.len == sc.len)
        CHECK(memcmp(sa.data + 32, sc.data + 32, sa.len - 32 - 4) == 0);
    CHECK(memcmp(sa.data + 16, sc.data + 16, 16) != 0);
    buf_free(&sa);
    buf_free(&sc);
    kv_free(a);
    kv_free(b);
    kv_free(c);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Bytes in the varint at p. */
static size_t varint_size(const uint8_t *p)
{
    size_t n = 1;
    while (p[n - 1] & 0x80)
        n++;
    return n;
}

/* Bytes of a snapshot of version `version` holding keys a=1 and b=2 in the
 * order given (and no sessions), with its checksum. */
static size_t two_key_snapshot(uint8_t *out, uint32_t version, const char *first,
                               const char *second)
{
    size_t n = 0;
    memcpy(out, "rkvsnap", 8);
    n = 8;
    const uint64_t header[] = {7, 0, 1000, 2, 0}; /* applied, digest, clock, keys, sessions */
    put32(out + n, version);
    put32(out + n + 4, 0);
    n += 8;
    for (size_t i = 0; i < 5; i++, n += 8)
        for (int b = 0; b < 8; b++)
            out[n + (size_t)b] = (uint8_t)(header[i] >> (8 * b));
    const char *keys[2] = {first, second};
    for (int k = 0; k < 2; k++) {
        put32(out + n, 1);
        put32(out + n + 4, 1);
        memset(out + n + 8, 0, 8);
        out[n + 16] = (uint8_t)keys[k][0];
        out[n + 17] = keys[k][0] == 'a' ? '1' : '2';
        n += 18;
    }
    put32(out + n, crc32c(0, out, n));
    return n + 4;
}

/* Version 1 (keys sorted by their bytes) still loads; version 2 wants the
 * rank order; what a store loaded from either writes back is version 3. */
static void test_snapshot_versions(void)
{
    uint8_t bytes[128];
    char err[200];
    struct kv *b = NULL;
    size_t len = two_key_snapshot(bytes, 1, "a", "b");
    CHECK_INT_EQ(kv_snapshot_load(bytes, len, &b, err, sizeof(err)), KV_SNAPSHOT_OK);
    const uint8_t *val = NULL;
    uint32_t vlen = 0;
    CHECK(b != NULL && kv_get(b, (const uint8_t *)"b", 1, 1000, &val, &vlen) && vlen == 1 &&
          val[0] == '2');
    struct buf again = snapshot(b);
    /* Each key's lengths and deadline: 3 bytes instead of 16. */
    CHECK(again.len == len - 2 * 13 && le32(again.data + 8) == 3);
    struct kv *c = NULL;
    CHECK_INT_EQ(kv_snapshot_load(again.data, again.len, &c, err, sizeof(err)), KV_SNAPSHOT_OK);
    kv_free(c);
    buf_free(&again);
    kv_free(b);

    len = two_key_snapshot(bytes, 1, "b", "a");
    b = NULL;
    CHECK_INT_EQ(kv_snapshot_load(bytes, len, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    CHECK_STR_EQ(err, "at byte 74: key 1 out of order or repeated");

    bool a_first =
        kv_snapshot_rank((const uint8_t *)"a", 1) < kv_snapshot_rank((const uint8_t *)"b", 1);
    len = two_key_snapshot(bytes, 2, a_first ? "a" : "b", a_first ? "b" : "a");
    CHECK_INT_EQ(kv_snapshot_load(bytes, len, &b, err, sizeof(err)), KV_SNAPSHOT_OK);
    kv_free(b);
    b = NULL;
    len = two_key_snapshot(bytes, 2, a_first ? "b" : "a", a_first ? "a" : "b");
    CHECK_INT_EQ(kv_snapshot_load(bytes, len, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    CHECK_STR_EQ(err, "at byte 74: key 1 out of order or repeated");
}

/* A view keeps what the store held when it was opened, whatever the store
 * does meanwhile: its bytes are the snapshot of that moment. (Without the
 * copy-on-write, a value replaced in place or a key freed under the view
 * shows here, or as a use after free under AddressSanitizer.) */
static void test_snapshot_view(void)
{
    struct kv *a = kv_new();
    char key[16], val[32];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "value-%d", i);
        CHECK_OK(run(a, KV_OP_SET, 1000, key, val, NULL));
    }
    CHECK_REPLY_INT(expire(a, "k1", 90000, 1000), 1);
    CHECK_REPLY_INT(run_as(a, 7, 1, KV_OP_INCR, 1000, "n", NULL), 1);
    struct buf before = snapshot(a);

    struct kv_view *v = NULL;
    CHECK_INT_EQ(kv_view_begin(a, &v), 0);
    struct kv_view *second = NULL;
    CHECK_INT_EQ(kv_view_begin(a, &second), -1); /* one at a time */
    CHECK_INT_EQ((int)kv_view_count(v), 501);
    for (int i = 0; i < 500; i += 2) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "a much longer new value %d", i);
        CHECK_OK(run(a, KV_OP_SET, 2000, key, val, NULL));
    }
    for (int i = 1; i < 500; i += 4) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK_REPLY_INT(run(a, KV_OP_DEL, 2000, key, NULL), 1);
    }
    CHECK_REPLY_INT(expire(a, "k3", 95000, 2000), 1);
    CHECK_REPLY_INT(run_as(a, 7, 2, KV_OP_INCR, 2000, "n", NULL), 2);
    for (int i = 0; i < 3000; i++) { /* the table grows under the view */
        snprintf(key, sizeof key, "new%d", i);
        CHECK_OK(run(a, KV_OP_SET, 2000, key, "x", NULL));
    }
    struct buf during = {0};
    CHECK_INT_EQ(kv_snapshot_write_view(v, buf_write, &during), 0);
    CHECK(during.len == before.len && memcmp(during.data, before.data, before.len) == 0);
    kv_view_end(a, v);

    /* The store has every change, and a snapshot of it now says so. */
    const uint8_t *got = NULL;
    uint32_t got_len = 0;
    CHECK(kv_get(a, (const uint8_t *)"k0", 2, 2000, &got, &got_len) && got_len == 25);
    CHECK(!kv_get(a, (const uint8_t *)"k1", 2, 2000, &got, &got_len));
    CHECK_INT_EQ((int)kv_count(a), 500 - 125 + 1 + 3000);
    struct buf after = snapshot(a);
    struct kv *b = NULL;
    char err[200];
    CHECK_INT_EQ(kv_snapshot_load(after.data, after.len, &b, err, sizeof err), KV_SNAPSHOT_OK);
    check_same_store(a, b);
    /* And views can be opened again. */
    CHECK_INT_EQ(kv_view_begin(a, &v), 0);
    kv_view_end(a, v);
    kv_free(b);
    buf_free(&before);
    buf_free(&during);
    buf_free(&after);
    kv_free(a);
}

static void test_snapshot_damage(void)
{
    struct kv *a = kv_new();
    CHECK_OK(run(a, KV_OP_SET, 1000, "a", "1", NULL));
    CHECK_OK(run(a, KV_OP_SET, 1000, "b", "2x", NULL));
    CHECK_REPLY_INT(expire(a, "b", 50000, 1000), 1);
    CHECK_REPLY_INT(run_as(a, 3, 1, KV_OP_INCR, 1000, "a", NULL), 2);
    CHECK_REPLY_ERR(run_as(a, 4, 1, KV_OP_INCR, 1000, "b", NULL), NOT_INTEGER);
    struct buf s = snapshot(a);
    uint8_t *copy = malloc(s.len);
    char err[200];
    struct kv *b;

    /* Every byte damaged, in three ways: the checksum catches it. */
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    int refused = 0, named = 0;
    for (size_t at = 0; at < s.len; at++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(copy, s.data, s.len);
            copy[at] ^= flips[f];
            b = NULL;
            int rc = kv_snapshot_load(copy, s.len, &b, err, sizeof(err));
            refused += rc == KV_SNAPSHOT_DAMAGED && b == NULL;
            named += strncmp(err, "at byte ", 8) == 0;
            kv_free(b);
        }
    }
    CHECK_INT_EQ(refused, (int)(s.len * sizeof(flips)));
    CHECK_INT_EQ(named, (int)(s.len * sizeof(flips)));

    /* The same damage with a checksum made to match: the structure checks
     * refuse it, or it is a valid snapshot that writes back to these bytes. */
    int accepted = 0;
    for (size_t at = 0; at + 4 < s.len; at++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(copy, s.data, s.len);
            copy[at] ^= flips[f];
            put32(copy + s.len - 4, crc32c(0, copy, s.len - 4));
            b = NULL;
            int rc = kv_snapshot_load(copy, s.len, &b, err, sizeof(err));
            if (rc == KV_SNAPSHOT_OK) {
                accepted++;
                struct buf again = snapshot(b);
                CHECK(again.len == s.len && memcmp(again.data, copy, s.len) == 0);
                buf_free(&again);
            } else {
                CHECK_INT_EQ(rc, KV_SNAPSHOT_DAMAGED);
                CHECK(strncmp(err, "at byte ", 8) == 0);
            }
            kv_free(b);
        }
    }
    CHECK(accepted > 0); /* values, deadlines, the header's numbers */

    /* Some messages. */
    memcpy(copy, s.data, s.len);
    copy[8] = 4;
    CHECK_INT_EQ(kv_snapshot_load(copy, s.len, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    CHECK_STR_EQ(err, "at byte 8: unsupported version 4 (this build reads 1 to 3)");
    memcpy(copy, s.data, s.len);
    copy[0] = 'R';
    CHECK_INT_EQ(kv_snapshot_load(copy, s.len, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    CHECK_STR_EQ(err, "at byte 0: not a KV snapshot (bad magic)");
    /* The first key ("a" or "b", whichever ranks first) made the second:
     * repeated. */
    memcpy(copy, s.data, s.len);
    /* The first key: one-byte key and value lengths, then its deadline (a
     * varint of one byte, or more for "b", which has a TTL). */
    size_t first_key = 56 + 2 + varint_size(copy + 58);
    uint8_t first_vlen = copy[57];
    copy[first_key] = (uint8_t)('a' + 'b' - copy[first_key]);
    put32(copy + s.len - 4, crc32c(0, copy, s.len - 4));
    CHECK_INT_EQ(kv_snapshot_load(copy, s.len, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    char want[80];
    snprintf(want, sizeof want, "at byte %zu: key 1 out of order or repeated",
             first_key + 1 + first_vlen);
    CHECK_STR_EQ(err, want);
    /* A varint longer than it needs (the first key's length, 1, as 0x81
     * 0x00): refused, though it reads as the same number. */
    memcpy(copy, s.data, s.len);
    uint8_t *longer = malloc(s.len + 1);
    memcpy(longer, copy, 56);
    longer[56] = 0x81;
    longer[57] = 0x00;
    memcpy(longer + 58, copy + 57, s.len - 57);
    put32(longer + s.len + 1 - 4, crc32c(0, longer, s.len + 1 - 4));
    CHECK_INT_EQ(kv_snapshot_load(longer, s.len + 1, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    CHECK_STR_EQ(err, "at byte 56: key length: a varint longer than it needs");
    free(longer);
    memcpy(copy, s.data, s.len);
    copy[40] = 200; /* key count */
    put32(copy + s.len - 4, crc32c(0, copy, s.len - 4));
    CHECK_INT_EQ(kv_snapshot_load(copy, s.len, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    CHECK(strstr(err, "at byte 40: key count 200 cannot fit") == err);
    memcpy(copy, s.data, s.len);
    CHECK(le32(copy + s.len - 4) == crc32c(0, copy, s.len - 4));

    /* Truncated at every length, or one byte too long. */
    int truncated = 0;
    for (size_t n = 0; n < s.len; n++) {
        b = NULL;
        truncated += kv_snapshot_load(s.data, n, &b, err, sizeof(err)) == KV_SNAPSHOT_DAMAGED;
        kv_free(b);
    }
    CHECK_INT_EQ(truncated, (int)s.len);
    CHECK_INT_EQ(kv_snapshot_load(NULL, 0, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);
    CHECK_STR_EQ(err, "at byte 0: truncated: 0 bytes, a snapshot has at least 60");
    CHECK_INT_EQ(buf_append(&s, "", 1), 0);
    CHECK_INT_EQ(kv_snapshot_load(s.data, s.len, &b, err, sizeof(err)), KV_SNAPSHOT_DAMAGED);

    free(copy);
    buf_free(&s);
    kv_free(a);
}

/* A random log with every kind of request: new seqs, retries, stale and
 * mismatched ones, seqs after expiry, client 0, no-ops, time jumps. */
struct log_gen {
    uint64_t now;
    uint64_t seq[8];
    uint64_t id[8];
    uint64_t last_id;
    char key[16], val[16], key2[16];
};

/* The next entry into cmd; false for a no-op. */
static bool gen_entry(struct log_gen *g, struct kv_cmd *cmd)
{
    if (lcg() % 40 == 0)
        return false;
    memset(cmd, 0, sizeof(*cmd));
    uint32_t jump = lcg() % 100;
    g->now += jump == 0 ? KV_SESSION_IDLE_MS / 2 : jump < 3 ? 5000 : lcg() % 50;
    if (lcg() % 30 == 0)
        cmd->now_ms = g->now - lcg() % 10000; /* a leader whose clock is behind */
    else
        cmd->now_ms = g->now;
    cmd->op = (uint8_t)(1 + lcg() % 5);
    snprintf(g->key, sizeof(g->key), "k%u", lcg() % 60);
    snprintf(g->key2, sizeof(g->key2), "k%u", lcg() % 60);
    snprintf(g->val, sizeof(g->val), lcg() % 4 == 0 ? "x%u" : "%u", lcg() % 100);
    cmd->deadline_ms = (int64_t)g->now + (int64_t)(lcg() % 20000) - 1000;
    cmd->args[0] = (struct kv_arg){(const uint8_t *)g->key, (uint32_t)strlen(g->key)};
    cmd->args[1] = (struct kv_arg){(const uint8_t *)g->val, (uint32_t)strlen(g->val)};
    cmd->args[2] = (struct kv_arg){(const uint8_t *)g->key2, (uint32_t)strlen(g->key2)};
    cmd->nargs = cmd->op == KV_OP_SET ? 2 : cmd->op == KV_OP_DEL ? 1 + lcg() % 2 : 1;
    uint32_t who = lcg() % 10;
    if (who >= 8)
        return true; /* client 0 */
    if (g->id[who] == 0 || lcg() % 50 == 0) {
        g->id[who] = ++g->last_id;
        g->seq[who] = 0;
    }
    cmd->client_id = g->id[who];
    uint32_t how = lcg() % 10;
    if (how < 6 || g->seq[who] == 0)
        g->seq[who] += 1 + (lcg() % 8 == 0); /* a new request, now and then a gap */
    cmd->seq = how == 8 && g->seq[who] > 1 ? g->seq[who] - 1 : g->seq[who];
    if (how == 9 && g->seq[who] > 0)
        cmd->seq = g->seq[who] + 5; /* after a session expired, or a jump */
    return true;
}

static void apply_both(struct kv *a, struct kv *b, uint64_t index, const struct kv_cmd *cmd,
                       bool noop)
{
    if (noop) {
        kv_apply_noop(a, index);
        if (b != NULL)
            kv_apply_noop(b, index);
        return;
    }
    uint8_t *data;
    uint32_t len;
    struct kv_reply ra, rb;
    CHECK_INT_EQ(kv_cmd_encode(cmd, &data, &len), 0);
    CHECK_INT_EQ(kv_apply(a, index, data, len, &ra), 0);
    if (b != NULL) {
        CHECK_INT_EQ(kv_apply(b, index, data, len, &rb), 0);
        check_same_reply(&ra, &rb);
        kv_reply_free(&rb);
        char da[KV_STATE_DIGEST_HEX + 1], db[KV_STATE_DIGEST_HEX + 1];
        kv_state_digest(a, da);
        kv_state_digest(b, db);
        CHECK_STR_EQ(da, db);
        CHECK(kv_digest(a) == kv_digest(b));
    }
    kv_reply_free(&ra);
    free(data);
}

static void test_snapshot_random_log(void)
{
    enum { N = 4000 };
    static const int cuts[] = {0, 1, 777, 2000, 3999};
    int kinds[KV_REPLY_ERR + 1] = {0};
    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        struct kv *a = kv_new(), *b = NULL;
        struct log_gen g;
        memset(&g, 0, sizeof(g));
        g.now = 1700000000000ULL;
        lcg_state = 7;
        static struct kv_cmd cmd;
        for (int i = 1; i <= N; i++) {
            if (i - 1 == cuts[c]) {
                struct buf s = snapshot(a);
                b = load(&s);
                buf_free(&s);
                if (b == NULL)
                    break;
                check_same_store(a, b);
            }
            bool noop = !gen_entry(&g, &cmd);
            apply_both(a, b, (uint64_t)i, &cmd, noop);
        }
        if (b != NULL)
            check_same_store(a, b);
        if (c == 0) {
            /* The log exercised every rule. */
            struct kv *r = kv_new();
            struct log_gen g2;
            memset(&g2, 0, sizeof(g2));
            g2.now = 1700000000000ULL;
            lcg_state = 7;
            int unknown = 0, stale = 0, mismatch = 0;
            for (int i = 1; i <= N; i++) {
                if (!gen_entry(&g2, &cmd)) {
                    kv_apply_noop(r, (uint64_t)i);
                    continue;
                }
                uint8_t *data;
                uint32_t len;
                struct kv_reply rep;
                CHECK_INT_EQ(kv_cmd_encode(&cmd, &data, &len), 0);
                CHECK_INT_EQ(kv_apply(r, (uint64_t)i, data, len, &rep), 0);
                kinds[rep.type]++;
                unknown += strstr(rep.err, "unknown client session") != NULL;
                stale += strstr(rep.err, "stale request") != NULL;
                mismatch += strstr(rep.err, "different command") != NULL;
                kv_reply_free(&rep);
                free(data);
            }
            CHECK(unknown > 10 && stale > 10 && mismatch > 10);
            CHECK(kinds[KV_REPLY_OK] > 100 && kinds[KV_REPLY_INT] > 100);
            CHECK(kv_count(r) > 10 && kv_count_with_ttl(r) > 0);
            kv_free(r);
        }
        kv_free(a);
        kv_free(b);
    }
}

int main(void)
{
    test_hash_flooding();
    test_set_get_del();
    test_binary_safe();
    test_incr();
    test_ttl_kept_by_incr_cleared_by_set();
    test_expire_in_the_past_deletes();
    test_expired_keys_are_missing();
    test_sweep();
    test_size_limits();
    test_bad_commands_change_nothing();
    test_exactly_once();
    test_same_log_same_state();
    test_foreach_sorted();
    test_foreach_expired();
    test_codec_round_trip();
    test_codec_rejects_garbage();
    test_describe();
    test_100k_keys();
    test_session_rules();
    test_session_expiry();
    test_session_cap();
    test_snapshot_empty();
    test_snapshot_round_trip();
    test_snapshot_canonical();
    test_snapshot_crowded_bucket();
    test_snapshot_damage();
    test_snapshot_versions();
    test_snapshot_view();
    test_snapshot_random_log();
    CHECK_DONE();
}

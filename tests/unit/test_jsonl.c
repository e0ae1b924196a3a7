/* test_jsonl.c - the recording's lines: flat JSON objects written and read
 * back, base64, and clear errors for what is not the format. */
#include "../../ui/cockpit/jsonl.c"

#include "check.h"

static void test_round_trip(void)
{
    struct buf b = {0};
    uint8_t bytes[] = {0, 1, 2, 250, 251, 252, 253};
    jsonl_begin(&b);
    jsonl_num(&b, "t", 1.5, 3);
    jsonl_str(&b, "k", "event");
    jsonl_str(&b, "text", "say \"hi\"\\ now\n\ttab");
    jsonl_u64(&b, "wall", 1796169895125ull);
    jsonl_i64(&b, "exit", -9);
    jsonl_bool(&b, "granted", true);
    jsonl_base64(&b, "pb", bytes, sizeof bytes);
    jsonl_end(&b);
    buf_append(&b, "", 1);
    CHECK_STR_EQ((char *)b.data,
                 "{\"t\":1.500,\"k\":\"event\",\"text\":\"say \\\"hi\\\"\\\\ now\\n\\u0009tab\","
                 "\"wall\":1796169895125,\"exit\":-9,\"granted\":true,\"pb\":\"AAEC+vv8/Q==\"}\n");

    struct jsonl_object o;
    char err[128];
    CHECK_INT_EQ(jsonl_parse((char *)b.data, &o, err, sizeof err), 0);
    const char *s;
    double d;
    uint64_t u;
    bool flag;
    CHECK(jsonl_get_num(&o, "t", &d) && d == 1.5);
    CHECK(jsonl_get_str(&o, "k", &s) && strcmp(s, "event") == 0);
    CHECK(jsonl_get_str(&o, "text", &s) && strcmp(s, "say \"hi\"\\ now\n\ttab") == 0);
    CHECK(jsonl_get_u64(&o, "wall", &u) && u == 1796169895125ull);
    CHECK(!jsonl_get_u64(&o, "exit", &u)); /* negative */
    CHECK(jsonl_get_num(&o, "exit", &d) && d == -9);
    CHECK(jsonl_get_bool(&o, "granted", &flag) && flag);
    CHECK(!jsonl_get_str(&o, "wall", &s)); /* a number, not a string */
    CHECK(jsonl_get(&o, "missing") == NULL);
    uint8_t back[16];
    CHECK(jsonl_get_str(&o, "pb", &s));
    CHECK_INT_EQ(jsonl_base64_decode(s, back), sizeof bytes);
    CHECK(memcmp(back, bytes, sizeof bytes) == 0);
    CHECK_INT_EQ(jsonl_base64_decode("AA*A", back), -1);
    buf_free(&b);
}

static void expect_error(const char *text, const char *what)
{
    char line[256], err[128];
    struct jsonl_object o;
    snprintf(line, sizeof line, "%s", text);
    CHECK_INT_EQ(jsonl_parse(line, &o, err, sizeof err), -1);
    if (strstr(err, what) == NULL)
        fprintf(stderr, "for %s: '%s' does not say '%s'\n", text, err, what);
    CHECK(strstr(err, what) != NULL);
}

static void test_errors(void)
{
    expect_error("", "expected '{'");
    expect_error("[1]", "expected '{'");
    expect_error("{\"a\":1", "expected ',' or '}'");
    expect_error("{\"a\" 1}", "expected ':'");
    expect_error("{\"a\":\"x}", "not closed");
    expect_error("{\"a\":{\"b\":1}}", "nested");
    expect_error("{\"a\":[1]}", "nested");
    expect_error("{\"a\":1} x", "text after");
    expect_error("{\"a\":nope}", "expected a value");
    expect_error("{\"a\":\"\\q\"}", "bad escape");
    expect_error("{\"a\":1e999}", "bad number");
    expect_error("{a:1}", "expected a string");
    expect_error("{\"a\":\"x\ty\"}", "control character");
    char err[128], line[] = "  { }  ";
    struct jsonl_object o;
    CHECK_INT_EQ(jsonl_parse(line, &o, err, sizeof err), 0);
    CHECK_INT_EQ(o.n, 0);
    char nul[] = "{\"a\":null,\"b\":false}";
    CHECK_INT_EQ(jsonl_parse(nul, &o, err, sizeof err), 0);
    CHECK_INT_EQ(o.n, 2);
    CHECK(jsonl_get(&o, "a")->type == JSONL_NULL);
}

int main(void)
{
    test_round_trip();
    test_errors();
    CHECK_DONE();
}

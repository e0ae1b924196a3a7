/* fuzz_main.c - runs a fuzz target without libFuzzer, for ctest.
 *
 * Usage: fuzz_resp_smoke [INPUTS] (default 200000). Builds a deterministic
 * corpus from a seeded xorshift generator: valid requests and replies, alone or
 * back to back, with a few random mutations each. Each input goes through
 * LLVMFuzzerTestOneInput in a heap block of its exact size, so that a sanitizer
 * build notices any read past the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_RNG_SEED 0x2545f4914f6cdd1dull
#include "fuzz_rng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX 4096

static const char *const seeds[] = {
    "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
    "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n",
    "*1\r\n$4\r\nPING\r\n",
    "*0\r\n",
    "*-1\r\n",
    "PING\r\n",
    "SET k \"hello world\"\r\n",
    "SET 'it\\'s' \"a\\x41\\n\\\"q\"\n",
    "  GET \t k  \r\n",
    "\r\n",
    "+OK\r\n",
    "-ERR unknown command 'FOO'\r\n",
    ":42\r\n",
    ":-9223372036854775808\r\n",
    "$3\r\nabc\r\n",
    "$0\r\n\r\n",
    "$-1\r\n",
    "*3\r\n:1\r\n*2\r\n+a\r\n$-1\r\n*0\r\n",
    "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
};

static const char *const numbers[] = {"0",           "-1",      "1",       "-2",
                                      "1048576",     "1048577", "8388608", "8388609",
                                      "99999999999", "01",      "-0",      "9223372036854775808"};

static const uint8_t special[] = {'\r', '\n', '*',  '$', '+', '-', ':', '"', '\'',
                                  '\\', ' ',  '\t', 'x', '0', '9', 0,   0xff};

static size_t append(uint8_t *dst, size_t len, const void *src, size_t n)
{
    if (n > INPUT_MAX - len)
        n = INPUT_MAX - len;
    memcpy(dst + len, src, n);
    return len + n;
}

/* One random change to input[0..len); returns the new length. */
static size_t mutate(uint8_t *input, size_t len)
{
    size_t at = below(len + 1);
    switch (below(7)) {
    case 0: /* flip a bit */
        if (len > 0)
            input[below(len)] ^= (uint8_t)(1u << below(8));
        return len;
    case 1: /* a byte the parsers care about */
        if (len > 0)
            input[below(len)] = special[below(sizeof special)];
        return len;
    case 2: /* insert a byte */
        if (len == INPUT_MAX)
            return len;
        memmove(input + at + 1, input + at, len - at);
        input[at] = (uint8_t)next_random();
        return len + 1;
    case 3: /* delete a byte */
        if (len == 0 || at == len)
            return len;
        memmove(input + at, input + at + 1, len - at - 1);
        return len - 1;
    case 4: /* cut the end */
        return at;
    case 5: { /* replace a run of digits by an interesting number */
        const char *number = numbers[below(sizeof numbers / sizeof numbers[0])];
        size_t n = strlen(number), start = at, end = at;
        while (start > 0 && input[start - 1] >= '0' && input[start - 1] <= '9')
            start--;
        while (end < len && input[end] >= '0' && input[end] <= '9')
            end++;
        if (len - (end - start) + n > INPUT_MAX)
            return len;
        memmove(input + start + n, input + end, len - end);
        memcpy(input + start, number, n);
        return len - (end - start) + n;
    }
    default: { /* repeat a piece */
        size_t from = below(len), n = below(len - from + 1);
        if (n > INPUT_MAX - len)
            return len;
        memmove(input + at + n, input + at, len - at);
        memmove(input + at, input + (from < at ? from : from + n), n);
        return len + n;
    }
    }
}

int main(int argc, char **argv)
{
    long inputs = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    size_t nseeds = sizeof seeds / sizeof seeds[0];
    static uint8_t input[INPUT_MAX];

    for (long i = 0; i < inputs; i++) {
        /* One to three seeds back to back, then up to four changes. */
        size_t len = 0, pieces = 1 + below(3);
        for (size_t k = 0; k < pieces; k++) {
            const char *seed = seeds[below(nseeds)];
            len = append(input, len, seed, strlen(seed));
        }
        size_t changes = below(5);
        for (size_t k = 0; k < changes; k++)
            len = mutate(input, len);

        uint8_t *exact = malloc(len > 0 ? len : 1);
        if (exact == NULL) {
            fprintf(stderr, "fuzz: out of memory\n");
            return 1;
        }
        memcpy(exact, input, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    printf("fuzz: %ld inputs, no failure\n", inputs);
    return 0;
}

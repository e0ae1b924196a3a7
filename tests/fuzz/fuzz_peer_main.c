/* fuzz_peer_main.c - runs the fuzz_peer target without libFuzzer, for ctest.
 *
 * Usage: fuzz_peer_smoke [INPUTS] (default 100000), or fuzz_peer_smoke
 * --corpus DIR to write the seeds for the libFuzzer target. The corpus is made here,
 * deterministically: Envelopes of every kind (AppendEntries with entries,
 * RequestVote, both replies, controls, a status, another cluster's) encoded
 * with the project's schema, one or two back to back, then up to four random
 * changes (bit flips, bytes in or out, cuts, large varints). Each input goes
 * through LLVMFuzzerTestOneInput in a heap block of its exact size, so that a
 * sanitizer build notices any read past the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "raftkv.pb-c.h"

#define FUZZ_RNG_SEED 0x9e3779b97f4a7c15ull
#include "fuzz_rng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX 8192
#define SEEDS_MAX 16

static uint8_t seeds[SEEDS_MAX][1024];
static size_t seed_len[SEEDS_MAX], n_seeds;

static void add_seed(uint64_t cluster_id, uint32_t from, Raftkv__PeerMessage *pm,
                     Raftkv__Control *c, Raftkv__Status *st)
{
    Raftkv__Envelope env = RAFTKV__ENVELOPE__INIT;
    env.cluster_id = cluster_id;
    env.from = from;
    if (pm != NULL) {
        env.body_case = RAFTKV__ENVELOPE__BODY_PEER;
        env.peer = pm;
    } else if (c != NULL) {
        env.body_case = RAFTKV__ENVELOPE__BODY_CONTROL;
        env.control = c;
    } else if (st != NULL) {
        env.body_case = RAFTKV__ENVELOPE__BODY_STATUS;
        env.status = st;
    }
    size_t len = raftkv__envelope__get_packed_size(&env);
    if (n_seeds == SEEDS_MAX || len > sizeof(seeds[0])) {
        fprintf(stderr, "fuzz_peer_smoke: seed too big\n");
        exit(1);
    }
    raftkv__envelope__pack(&env, seeds[n_seeds]);
    seed_len[n_seeds++] = len;
}

static void make_seeds(void)
{
    struct cluster c;
    char err[256];
    if (cluster_parse("1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                      "2 tcp://127.0.0.1:7002 127.0.0.1:6402\n"
                      "3 tcp://127.0.0.1:7003 127.0.0.1:6403\n",
                      "fuzz", &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_peer_smoke: %s\n", err);
        exit(1);
    }
    uint64_t id = c.cluster_id;
    Raftkv__Entry e[3];
    Raftkv__Entry *ep[3];
    static uint8_t cmd[] = "\x01SET greeting hello";
    for (size_t i = 0; i < 3; i++) {
        raftkv__entry__init(&e[i]);
        e[i].term = 2;
        e[i].index = 5 + i;
        e[i].type = i == 0 ? 0 : 1;
        e[i].data.data = i == 0 ? NULL : cmd;
        e[i].data.len = i == 0 ? 0 : sizeof(cmd) - 1;
        ep[i] = &e[i];
    }
    Raftkv__PeerMessage pm = RAFTKV__PEER_MESSAGE__INIT;
    pm.type = 3;
    pm.to = 1;
    pm.term = 2;
    pm.prev_index = 4;
    pm.prev_term = 1;
    pm.commit = 6;
    pm.read_seq = 9;
    pm.n_entries = 3;
    pm.entries = ep;
    add_seed(id, 2, &pm, NULL, NULL); /* AppendEntries with entries */
    pm.n_entries = 0;
    add_seed(id, 3, &pm, NULL, NULL); /* a heartbeat */
    Raftkv__PeerMessage vote = RAFTKV__PEER_MESSAGE__INIT;
    vote.type = 1;
    vote.to = 1;
    vote.term = 3;
    vote.last_log_index = 7;
    vote.last_log_term = 2;
    add_seed(id, 2, &vote, NULL, NULL);
    vote.type = 2;
    vote.granted = 1;
    add_seed(id, 3, &vote, NULL, NULL);
    Raftkv__PeerMessage reply = RAFTKV__PEER_MESSAGE__INIT;
    reply.type = 4;
    reply.to = 1;
    reply.term = 2;
    reply.success = 1;
    reply.match_index = 7;
    reply.rejected_index = 3;
    reply.hint_index = 2;
    reply.hint_term = 1;
    add_seed(id, 2, &reply, NULL, NULL);
    add_seed(id ^ 1, 2, &reply, NULL, NULL); /* another cluster */
    Raftkv__Control ctl = RAFTKV__CONTROL__INIT;
    uint32_t blocked[] = {2, 3};
    ctl.set_blocked = 1;
    ctl.n_blocked = 2;
    ctl.blocked = blocked;
    ctl.set_suspend = 1;
    ctl.suspend_ms = 300;
    ctl.seq = 1700000000000000ull;
    add_seed(id, 0, NULL, &ctl, NULL);
    Raftkv__Status st = RAFTKV__STATUS__INIT;
    st.id = 2;
    st.term = 4;
    st.client_address = "127.0.0.1:6402";
    add_seed(id, 2, NULL, NULL, &st);
}

/* One random change to input[0..len); returns the new length. */
static size_t mutate(uint8_t *input, size_t len)
{
    static const uint8_t special[] = {0x00, 0x01, 0x03, 0x08, 0x0a, 0x10, 0x12,
                                      0x1a, 0x22, 0x52, 0x7f, 0x80, 0xff};
    size_t at = below(len + 1);
    switch (below(6)) {
    case 0:
        if (len > 0)
            input[below(len)] ^= (uint8_t)(1u << below(8));
        return len;
    case 1:
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
    default: { /* a ten-byte varint: the largest values */
        static const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
        if (len + sizeof big > INPUT_MAX)
            return len;
        memmove(input + at + sizeof big, input + at, len - at);
        memcpy(input + at, big, sizeof big);
        return len + sizeof big;
    }
    }
}

/* Each seed as a file in dir, plain and to be sealed: a corpus to start
 * the libFuzzer target from (fuzz_peer DIR). */
static int write_corpus(const char *dir)
{
    for (size_t i = 0; i < n_seeds; i++) {
        for (uint8_t mode = 0; mode < 2; mode++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/seed-%zu-%u", dir, i, mode);
            FILE *f = fopen(path, "wb");
            if (f == NULL || fwrite(&mode, 1, 1, f) != 1 ||
                fwrite(seeds[i], 1, seed_len[i], f) != seed_len[i] || fclose(f) != 0) {
                perror(path);
                return 1;
            }
        }
    }
    printf("fuzz_peer: %zu seeds written to %s\n", 2 * n_seeds, dir);
    return 0;
}

int main(int argc, char **argv)
{
    static uint8_t input[INPUT_MAX];
    make_seeds();
    if (argc > 2 && strcmp(argv[1], "--corpus") == 0)
        return write_corpus(argv[2]);
    long inputs = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    for (long i = 0; i < inputs; i++) {
        size_t len = 0;
        input[len++] = (uint8_t)below(8); /* the mode byte */
        size_t pieces = 1 + below(2);
        for (size_t k = 0; k < pieces; k++) {
            size_t s = below(n_seeds);
            memcpy(input + len, seeds[s], seed_len[s]);
            len += seed_len[s];
        }
        size_t changes = below(5);
        for (size_t k = 0; k < changes; k++)
            len = mutate(input, len);
        uint8_t *exact = malloc(len > 0 ? len : 1);
        if (exact == NULL) {
            fprintf(stderr, "fuzz_peer_smoke: out of memory\n");
            return 1;
        }
        memcpy(exact, input, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    printf("fuzz_peer: %ld inputs, no failure\n", inputs);
    return 0;
}

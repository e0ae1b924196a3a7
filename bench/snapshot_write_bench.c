/* snapshot_write_bench.c - how long a snapshot of the store takes, part by
 * part, on this machine: the loop's share (kv_view_begin, and kv_view_end
 * after some keys changed under the view) and the writer thread's
 * (kv_snapshot_write_view: ordering the keys and producing the bytes, here
 * into a sink that only checksums them, so no disk is involved).
 *
 *   build/snapshot-write-bench [KEYS [ROUNDS [CHANGES]]]
 *
 * KEYS keys (default 200,000) of 16 bytes ("key:%012d") with 16-byte
 * values, set in order as a loader would; ROUNDS snapshots (default 8), with
 * CHANGES overwrites of random keys (default 5,000) while each view is
 * open. Prints the minimum and median of each part in milliseconds, and the
 * snapshot's size. A benchmark: it asserts nothing. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t next_index;

/* SET key value as the next log entry; exits on failure (a benchmark). */
static void set_key(struct kv *kv, uint64_t i, uint64_t tag)
{
    char key[32], val[32];
    snprintf(key, sizeof key, "key:%012" PRIu64, i);
    snprintf(val, sizeof val, "%016" PRIu64, tag % UINT64_C(10000000000000000));
    struct kv_cmd cmd = {.op = KV_OP_SET, .now_ms = 1, .nargs = 2};
    cmd.args[0] = (struct kv_arg){(const uint8_t *)key, (uint32_t)strlen(key)};
    cmd.args[1] = (struct kv_arg){(const uint8_t *)val, (uint32_t)strlen(val)};
    uint8_t *data;
    uint32_t len;
    struct kv_reply r;
    memset(&r, 0, sizeof r);
    if (kv_cmd_encode(&cmd, &data, &len) != 0 || kv_apply(kv, ++next_index, data, len, &r) != 0) {
        fprintf(stderr, "snapshot-write-bench: out of memory\n");
        exit(1);
    }
    kv_reply_free(&r);
    free(data);
}

/* Counts the bytes and keeps the last four: the snapshot's own CRC-32C of
 * everything before it, which tells two snapshots apart. (A CRC over the
 * whole, that CRC included, is the same constant for every snapshot.) */
struct checksum_sink {
    uint8_t tail[4];
    size_t bytes;
};

static int sink(const uint8_t *p, size_t n, void *ctx)
{
    struct checksum_sink *s = ctx;
    for (size_t i = n > 4 ? n - 4 : 0; i < n; i++) {
        memmove(s->tail, s->tail + 1, 3);
        s->tail[3] = p[i];
    }
    s->bytes += n;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_part(const char *name, double *t, int rounds)
{
    qsort(t, (size_t)rounds, sizeof *t, cmp_double);
    printf("  %-34s min %8.2f ms   median %8.2f ms\n", name, t[0], t[rounds / 2]);
}

int main(int argc, char **argv)
{
    long keys = argc > 1 ? atol(argv[1]) : 200000;
    int rounds = argc > 2 ? atoi(argv[2]) : 8;
    long changes = argc > 3 ? atol(argv[3]) : 5000;
    if (keys <= 0 || rounds <= 0 || rounds > 1000 || changes < 0) {
        fprintf(stderr, "usage: snapshot-write-bench [KEYS [ROUNDS [CHANGES]]]\n");
        return 2;
    }
    struct kv *kv = kv_new();
    if (kv == NULL) {
        fprintf(stderr, "snapshot-write-bench: cannot make a store\n");
        return 1;
    }
    double t0 = now_ms();
    for (long i = 0; i < keys; i++)
        set_key(kv, (uint64_t)i, (uint64_t)i);
    printf("snapshot of %ld keys, 16-byte keys and values (%ld SETs in %.0f ms), %d rounds, "
           "%ld keys changed under each view\n",
           keys, keys, now_ms() - t0, rounds, changes);

    double *begin = calloc((size_t)rounds, sizeof(double));
    double *write = calloc((size_t)rounds, sizeof(double));
    double *end = calloc((size_t)rounds, sizeof(double));
    if (begin == NULL || write == NULL || end == NULL)
        return 1;
    srand(1);
    struct checksum_sink s = {0};
    for (int r = 0; r < rounds; r++) {
        struct kv_view *v;
        double a = now_ms();
        if (kv_view_begin(kv, &v) != 0) {
            fprintf(stderr, "snapshot-write-bench: out of memory\n");
            return 1;
        }
        double b = now_ms();
        for (long c = 0; c < changes; c++)
            set_key(kv, (uint64_t)rand() % (uint64_t)keys, (uint64_t)rand());
        s = (struct checksum_sink){0};
        double c0 = now_ms();
        if (kv_snapshot_write_view(v, sink, &s) != 0) {
            fprintf(stderr, "snapshot-write-bench: out of memory\n");
            return 1;
        }
        double c1 = now_ms();
        kv_view_end(kv, v);
        double d = now_ms();
        begin[r] = b - a;
        write[r] = c1 - c0;
        end[r] = d - c1;
    }
    print_part("loop: kv_view_begin", begin, rounds);
    print_part("writer: kv_snapshot_write_view", write, rounds);
    print_part("loop: kv_view_end", end, rounds);
    printf("  snapshot bytes: %zu (its crc32c %02x%02x%02x%02x)\n", s.bytes, s.tail[3], s.tail[2],
           s.tail[1], s.tail[0]);
    free(begin);
    free(write);
    free(end);
    kv_free(kv);
    return 0;
}

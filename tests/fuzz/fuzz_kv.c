/* fuzz_kv.c - decode, describe and apply arbitrary bytes as KV log entries.
 *
 * The input is used twice: whole, as one entry; then as a series of entries,
 * each a length byte followed by that many bytes. Each entry is copied into a
 * block of exactly its size so a read past its end is caught. Checks that a
 * decoded entry encodes back to the same bytes and that the table's counts
 * agree with what the visitors see.
 */
#include "kv.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tally {
    size_t visits;
    size_t with_ttl;
};

static void count_visit(const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                        uint64_t deadline_ms, void *ctx)
{
    struct tally *t = ctx;
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    t->visits++;
    t->with_ttl += deadline_ms != 0;
}

static void apply_entry(struct kv *kv, uint64_t index, const uint8_t *bytes, size_t n)
{
    static struct kv_cmd cmd;
    uint8_t *entry = malloc(n > 0 ? n : 1);
    if (entry == NULL)
        return;
    if (n > 0)
        memcpy(entry, bytes, n);

    if (kv_cmd_decode(entry, (uint32_t)n, &cmd) == 0) {
        uint8_t *again;
        uint32_t again_len;
        if (kv_cmd_encode(&cmd, &again, &again_len) != 0)
            abort();
        if (again_len != n || memcmp(again, entry, n) != 0)
            abort();
        free(again);
    }

    char line[48];
    kv_cmd_describe(entry, (uint32_t)n, line, sizeof(line));
    if (strlen(line) >= sizeof(line))
        abort();

    struct kv_reply reply;
    if (kv_apply(kv, index, entry, (uint32_t)n, &reply) != 0)
        abort();
    kv_reply_free(&reply);
    free(entry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > UINT32_MAX)
        return 0;
    struct kv *kv = kv_new();
    if (kv == NULL)
        return 0;

    uint64_t index = 1;
    apply_entry(kv, index, data, size);
    for (size_t pos = 0; pos < size;) {
        size_t n = data[pos++];
        if (n > size - pos)
            n = size - pos;
        if (index % 8 == 0)
            kv_apply_noop(kv, ++index);
        apply_entry(kv, ++index, data + pos, n);
        pos += n;
    }
    if (kv_applied_index(kv) != index)
        abort();

    struct tally all = {0, 0}, first = {0, 0}, expired = {0, 0};
    kv_foreach(kv, 0, count_visit, &all);
    kv_foreach(kv, 3, count_visit, &first);
    kv_foreach_expired(kv, UINT64_MAX, 0, count_visit, &expired);
    if (all.visits != kv_count(kv) || all.with_ttl != kv_count_with_ttl(kv))
        abort();
    if (first.visits != (kv_count(kv) < 3 ? kv_count(kv) : 3))
        abort();
    if (expired.visits != kv_count_with_ttl(kv))
        abort();
    kv_free(kv);
    return 0;
}

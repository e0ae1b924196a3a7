/* fuzz_datadir_main.c - runs the fuzz_datadir target without libFuzzer, for
 * ctest.
 *
 * Usage: fuzz_datadir_smoke [INPUTS] (default 40000), or fuzz_datadir_smoke
 * --corpus DIR to write the seeds for the libFuzzer target. With
 * FUZZ_DATADIR_LAST=FILE in the environment each input is written to FILE
 * before it runs: after a failure FILE holds the input that failed, for
 * fuzz_datadir (the libFuzzer target) to run again.
 *
 * The seeds are real data dirs, made here with the library: wal_open,
 * wal_save_hard_state, wal_append, wal_sync, wal_close; snapshots written
 * with snapfile_writer_* holding a KV snapshot (kv_snapshot_write of a store
 * the entries were applied to), behind the configuration prefix a node
 * writes or without it. Six of them: a log alone; a snapshot whose prefix
 * the log dropped; one whose prefix the log still holds; a snapshot at the
 * log's end (an empty log after it); a first-release log (no header); a
 * record past the synced mark. Their files are read back and encoded as
 * fuzz_datadir's inputs (see the top of fuzz_datadir.c).
 *
 * Each input is a seed with up to four random changes to its files, from a
 * fixed xorshift seed, so every run is the same: a bit flipped, a byte set,
 * a field moved a little (the header's mark, a record's index or term, the
 * meta's term, the snapshot's length), bytes in or out, a file cut,
 * extended with a copy of its own bytes, dropped or replaced by another,
 * header slots swapped, another snapshot name, a flag (checksums fixed, an
 * older snapshot, leftovers, a crash point). With the checksums fixed (most
 * inputs) the changes reach the checks behind them. Each input goes through
 * LLVMFuzzerTestOneInput in a heap block of its exact size.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "crc32c.h"
#include "fuzz_datadir.h"
#include "kv.h"
#include "raft.h"
#include "snapshot_file.h"
#include "wal.h"
#include "wal_internal.h" /* the log's layout */

#define FUZZ_RNG_SEED 0x6a09e667f3bcc909ull
#include "fuzz_rng.h"

/* fuzz_datadir.c's input: the flags and parts in fuzz_datadir.h. */
#define FILE_MAX 65535u /* a part's length is a u16 */
#define INPUT_MAX (1 + 1 + 16 + N_PARTS * (2 + FILE_MAX))

/* The log's layout is wal_internal.h's; meta's slots are as long as the log
 * header's, which lets one swap serve both. */
_Static_assert(META_SLOT == HEADER_SLOT_SIZE, "meta and log header slots differ");

#define MAX_SEEDS 8

/* A data dir's files, as fuzz_datadir writes them. */
struct dirfiles {
    unsigned flags; /* fuzz_datadir's flags, without FLAG_SHORT_HEADER */
    uint8_t crash;
    uint64_t index, term; /* the snapshot's name */
    uint8_t file[N_PARTS][FILE_MAX];
    size_t len[N_PARTS];
};

static struct dirfiles seeds[MAX_SEEDS];
static size_t n_seeds;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_datadir_smoke: %s: %s\n", what, err);
    exit(1);
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i > 0; i--)
        v = (v << 8) | p[i - 1];
    return v;
}

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---------------------------------------------------------------- seeds */

/* The entries of the seeds' logs, index 1 to 8: a no-op, the configuration,
 * then commands (SET, EXPIRE, DEL, INCR; some with a client session). */
#define N_ENTRIES 8
static struct raft_entry entries[N_ENTRIES];
static struct raft_members members;

static void command(uint64_t index, uint64_t term, uint8_t op, uint64_t client, const char *key,
                    const char *value, int64_t deadline)
{
    struct kv_cmd cmd = {.op = op,
                         .now_ms = 1000000 + 10 * index,
                         .client_id = client,
                         .seq = index,
                         .deadline_ms = deadline,
                         .nargs = 1};
    cmd.args[0] = (struct kv_arg){(const uint8_t *)key, (uint32_t)strlen(key)};
    if (value != NULL) {
        cmd.args[1] = (struct kv_arg){(const uint8_t *)value, (uint32_t)strlen(value)};
        cmd.nargs = 2;
    }
    struct raft_entry *e = &entries[index - 1];
    *e = (struct raft_entry){.term = term, .index = index, .type = RAFT_ENTRY_COMMAND};
    if (kv_cmd_encode(&cmd, &e->data, &e->len) != 0)
        die("kv_cmd_encode", "failed");
}

static void make_entries(void)
{
    members.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        members.m[i] = (struct raft_member){.id = i + 1, .role = RAFT_VOTER};
        snprintf(members.m[i].peer, RAFT_ADDR_MAX, "ipc:///tmp/raftkv-%u.sock", i + 1);
        snprintf(members.m[i].client, RAFT_ADDR_MAX, "127.0.0.1:%u", 6401 + i);
    }
    entries[0] = (struct raft_entry){.term = 1, .index = 1, .type = RAFT_ENTRY_NOOP};
    entries[1] = (struct raft_entry){.term = 1, .index = 2, .type = RAFT_ENTRY_CONFIG};
    if (raft_members_encode(&members, &entries[1].data, &entries[1].len) != 0)
        die("raft_members_encode", "failed");
    command(3, 1, KV_OP_SET, 7, "greeting", "hello", 0);
    command(4, 2, KV_OP_SET, 0, "counter", "41", 0);
    command(5, 2, KV_OP_EXPIRE, 7, "greeting", NULL, 1000000 + 3600000);
    command(6, 2, KV_OP_SET, 9, "gone", "soon", 0);
    command(7, 3, KV_OP_DEL, 9, "gone", NULL, 0);
    command(8, 3, KV_OP_INCR, 0, "counter", NULL, 0);
}

static void read_file(const char *path, uint8_t *out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path, strerror(errno));
    ssize_t k = read(fd, out, FILE_MAX);
    if (k < 0)
        die(path, strerror(errno));
    if (k == FILE_MAX)
        die(path, "too large for a seed");
    *len = (size_t)k;
    if (close(fd) < 0)
        die(path, strerror(errno));
}

/* kv_snapshot_write's sink: appends to a struct buf. */
static int add_bytes(const uint8_t *p, size_t n, void *ctx)
{
    return buf_append(ctx, p, n);
}

/* A node's snapshot at index: the store the entries up to it built, behind
 * the configuration prefix (node/snapshot.c) when with_members. */
static void write_snapshot(const char *dir, uint64_t index, bool with_members)
{
    char err[512];
    struct kv *kv = kv_new();
    if (kv == NULL)
        die("kv_new", "failed");
    for (uint64_t i = 1; i <= index; i++) {
        const struct raft_entry *e = &entries[i - 1];
        if (e->type != RAFT_ENTRY_COMMAND) {
            kv_apply_noop(kv, i);
            continue;
        }
        struct kv_reply reply;
        if (kv_apply(kv, i, e->data, e->len, &reply) != 0)
            die("kv_apply", "out of memory");
        kv_reply_free(&reply);
    }
    struct buf b = {0};
    if (with_members) {
        uint8_t *m;
        uint32_t mlen;
        uint8_t head[8] = {'R', 'K', 'C', 'F'};
        if (raft_members_encode(&members, &m, &mlen) != 0)
            die("raft_members_encode", "failed");
        put_le(head + 4, mlen, 4);
        if (add_bytes(head, sizeof head, &b) != 0 || add_bytes(m, mlen, &b) != 0)
            die("snapshot", "out of memory");
        free(m);
    }
    if (kv_snapshot_write(kv, add_bytes, &b) != 0)
        die("kv_snapshot_write", "failed");
    kv_free(kv);

    struct snapfile_writer *sw;
    if (snapfile_writer_open(dir, index, entries[index - 1].term, &sw, err, sizeof err) != 0)
        die("snapfile_writer_open", err);
    if (snapfile_writer_append(sw, b.data, b.len, err, sizeof err) != 0) {
        snapfile_writer_abort(sw);
        die("snapfile_writer_append", err);
    }
    if (snapfile_writer_finish(sw, err, sizeof err) != 0)
        die("snapfile_writer_finish", err);
    buf_free(&b);
}

static void append(struct wal *w, uint64_t from, uint64_t to)
{
    char err[512];
    if (wal_append(w, &entries[from - 1], (size_t)(to - from + 1), err, sizeof err) != 0)
        die("wal_append", err);
    if (wal_sync(w, err, sizeof err) != 0)
        die("wal_sync", err);
}

/* One scenario's data dir, read back into a seed. snap: the snapshot's
 * index (0: none), taken after entries 1..upto were written; then the rest
 * up to last. */
static void add_seed(uint64_t upto, uint64_t snap, bool with_members, uint64_t last)
{
    char dir[PATH_MAX], err[512], path[PATH_MAX + 64];
    fuzz_datadir_make_dir(dir, sizeof dir);
    struct wal *w;
    uint64_t term;
    uint32_t vote;
    struct raft_entry *got;
    size_t n;
    if (wal_open(dir, &w, &term, &vote, &got, &n, err, sizeof err) != 0)
        die("wal_open", err);
    for (size_t i = 0; i < n; i++)
        raft_entry_free(&got[i]);
    free(got);
    if (wal_save_hard_state(w, 3, 1, err, sizeof err) != 0)
        die("wal_save_hard_state", err);
    append(w, 1, upto);
    if (snap > 0) {
        write_snapshot(dir, snap, with_members);
        if (wal_snapshot_taken(w, snap, entries[snap - 1].term, err, sizeof err) != 0)
            die("wal_snapshot_taken", err);
    }
    if (last > upto)
        append(w, upto + 1, last);
    wal_close(w);

    struct dirfiles *s = &seeds[n_seeds++];
    s->flags = FLAG_LOG | FLAG_META;
    snprintf(path, sizeof path, "%s/log", dir);
    read_file(path, s->file[PART_LOG], &s->len[PART_LOG]);
    snprintf(path, sizeof path, "%s/meta", dir);
    read_file(path, s->file[PART_META], &s->len[PART_META]);
    if (snap > 0) {
        s->flags |= FLAG_SNAP;
        s->index = snap;
        s->term = entries[snap - 1].term;
        if (snapfile_path(path, sizeof path, dir, s->index, s->term, err, sizeof err) != 0)
            die("snapfile_path", err);
        read_file(path, s->file[PART_SNAP], &s->len[PART_SNAP]);
    }
    fuzz_datadir_remove_dir(dir);
}

static void reseal_slot(uint8_t *slot)
{
    put_le(slot + 60, crc32c(0, slot, 60), 4);
}

/* The first seed as the first release wrote it: records from offset 0, and a
 * meta without the flag that says the log has a header. */
static void add_first_release_seed(void)
{
    struct dirfiles *s = &seeds[n_seeds++];
    *s = seeds[0];
    s->len[PART_LOG] = seeds[0].len[PART_LOG] - LOG_DATA_START;
    memcpy(s->file[PART_LOG], seeds[0].file[PART_LOG] + LOG_DATA_START, s->len[PART_LOG]);
    for (size_t at = 0; at + META_SLOT <= s->len[PART_META]; at += META_SLOT) {
        put_le(s->file[PART_META] + at + 28, 0, 4);
        reseal_slot(s->file[PART_META] + at);
    }
}

/* The first seed with one more record after the synced mark (a write the
 * node did not sync before it stopped: recovery keeps it). */
static void add_unsynced_tail_seed(void)
{
    struct dirfiles *s = &seeds[n_seeds++];
    *s = seeds[0];
    uint8_t *rec = s->file[PART_LOG] + s->len[PART_LOG];
    static const char text[] = "\x01 not synced";
    uint32_t len = sizeof text - 1;
    put_le(rec, 0x4c564b52u, 4); /* "RKVL" */
    put_le(rec + 4, len, 4);
    put_le(rec + 12, 3, 8);
    put_le(rec + 20, N_ENTRIES + 1, 8);
    rec[28] = RAFT_ENTRY_NOOP;
    memcpy(rec + LOG_HEADER_SIZE, text, len);
    uint32_t crc = crc32c(0, rec, 8);
    crc = crc32c(crc, rec + 12, LOG_HEADER_SIZE - 12);
    put_le(rec + 8, crc32c(crc, rec + LOG_HEADER_SIZE, len), 4);
    s->len[PART_LOG] += LOG_HEADER_SIZE + len;
}

static void make_seeds(void)
{
    make_entries();
    add_seed(N_ENTRIES, 0, false, N_ENTRIES); /* a log alone: must stay seeds[0] */
    add_seed(6, 4, true, N_ENTRIES);          /* the prefix through 4 dropped */
    add_seed(N_ENTRIES, 2, true, N_ENTRIES);  /* the prefix through 2 still there */
    add_seed(5, 5, false, 5);                 /* an empty log after the snapshot */
    add_first_release_seed();
    add_unsynced_tail_seed();
    for (size_t i = 0; i < N_ENTRIES; i++)
        raft_entry_free(&entries[i]);
}

/* ---------------------------------------------------------------- encoding */

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* Whether the log is zeros outside its header slots and records, as
 * fuzz_datadir's short header writes it. */
static bool header_shortens(const struct dirfiles *d)
{
    const uint8_t *p = d->file[PART_LOG];
    return d->len[PART_LOG] >= LOG_DATA_START &&
           all_zero(p + HEADER_SLOT_SIZE, HEADER_SLOT_STRIDE - HEADER_SLOT_SIZE) &&
           all_zero(p + HEADER_SLOT_STRIDE + HEADER_SLOT_SIZE,
                    LOG_DATA_START - HEADER_SLOT_STRIDE - HEADER_SLOT_SIZE);
}

static size_t put_part(uint8_t *out, size_t len, const uint8_t *p, size_t n)
{
    if (n > FILE_MAX)
        n = FILE_MAX;
    put_le(out + len, n, 2);
    memcpy(out + len + 2, p, n);
    return len + 2 + n;
}

static size_t encode(const struct dirfiles *d, bool shorten, uint8_t *out)
{
    size_t len = 0;
    shorten = shorten && (d->flags & FLAG_LOG) && header_shortens(d);
    out[len++] = (uint8_t)(d->flags | (shorten ? FLAG_SHORT_HEADER : 0));
    if (d->flags & FLAG_CRASH)
        out[len++] = d->crash;
    if (d->flags & FLAG_SNAP) {
        put_le(out + len, d->index, 8);
        put_le(out + len + 8, d->term, 8);
        len += 16;
    }
    if (d->flags & FLAG_LOG) {
        if (shorten) {
            static uint8_t part[FILE_MAX];
            const uint8_t *p = d->file[PART_LOG];
            size_t records = d->len[PART_LOG] - LOG_DATA_START;
            if (records > FILE_MAX - SHORT_HEADER)
                records = FILE_MAX - SHORT_HEADER;
            memcpy(part, p, HEADER_SLOT_SIZE);
            memcpy(part + HEADER_SLOT_SIZE, p + HEADER_SLOT_STRIDE, HEADER_SLOT_SIZE);
            memcpy(part + SHORT_HEADER, p + LOG_DATA_START, records);
            len = put_part(out, len, part, SHORT_HEADER + records);
        } else {
            len = put_part(out, len, d->file[PART_LOG], d->len[PART_LOG]);
        }
    }
    if (d->flags & FLAG_META)
        len = put_part(out, len, d->file[PART_META], d->len[PART_META]);
    if (d->flags & FLAG_SNAP)
        len = put_part(out, len, d->file[PART_SNAP], d->len[PART_SNAP]);
    return len;
}

/* ---------------------------------------------------------------- changes */

/* A field worth moving a little: where and how wide. */
struct field {
    size_t at, width;
};

/* The start of a random record of the log (the first if it has none). */
static size_t some_record(const struct dirfiles *d)
{
    const uint8_t *p = d->file[PART_LOG];
    size_t len = d->len[PART_LOG];
    size_t off = len >= 4 && get_le(p, 4) == LOG_MAGIC ? 0 : LOG_DATA_START, chosen = off;
    for (size_t k = 1; off + LOG_HEADER_SIZE <= len; k++) {
        size_t n = (size_t)get_le(p + off + 4, 4);
        if (n > len - off - LOG_HEADER_SIZE)
            break;
        if (below(k) == 0)
            chosen = off;
        off += LOG_HEADER_SIZE + n;
    }
    return chosen;
}

static struct field some_field(const struct dirfiles *d, int f)
{
    switch (f) {
    case PART_LOG:
        if (below(2) == 0) /* a header slot's seq, synced end, synced index or base */
            return (struct field){HEADER_SLOT_STRIDE * below(2) + 8 * (1 + below(4)), 8};
        else { /* a record's length, term, index or type */
            static const struct field rec[] = {{4, 4}, {12, 8}, {20, 8}, {28, 1}};
            struct field x = rec[below(4)];
            x.at += some_record(d);
            return x;
        }
    case PART_META: { /* seq, term, vote, flags */
        static const struct field meta[] = {{8, 8}, {16, 8}, {24, 4}, {28, 4}};
        struct field x = meta[below(4)];
        x.at += META_SLOT * below(2);
        return x;
    }
    default: { /* index, term, length; the configuration's length; the store's counts */
        static const struct field snap[] = {{8, 8}, {16, 8}, {24, 8}, {68, 4}};
        if (below(3) > 0)
            return snap[below(4)];
        size_t kv_at = 64;
        if (d->len[f] >= 72 && memcmp(d->file[f] + 64, "RKCF", 4) == 0)
            kv_at += 8 + (size_t)get_le(d->file[f] + 68, 4);
        return (struct field){kv_at + 8 * (1 + below(6)), 8};
    }
    }
}

static void nudge(struct dirfiles *d, int f)
{
    static const int64_t deltas[] = {1,   -1, 2, -2, LOG_HEADER_SIZE, -(int64_t)LOG_HEADER_SIZE,
                                     4096};
    struct field x = some_field(d, f);
    if (x.at + x.width > d->len[f])
        return;
    uint8_t *p = d->file[f] + x.at;
    uint64_t v = get_le(p, x.width);
    if (below(8) == 0)
        v = below(2) ? 0 : UINT64_MAX;
    else
        v += (uint64_t)deltas[below(sizeof deltas / sizeof deltas[0])];
    put_le(p, v, x.width);
}

static int some_file(const struct dirfiles *d)
{
    int present[N_PARTS], n = 0;
    for (int i = 0; i < N_PARTS; i++)
        if (d->flags & (1u << i))
            present[n++] = i;
    return n == 0 ? -1 : present[below((size_t)n)];
}

static void mutate(struct dirfiles *d)
{
    int f = some_file(d);
    if (f < 0) {
        d->flags |= 1u << below(N_PARTS);
        return;
    }
    uint8_t *p = d->file[f];
    size_t len = d->len[f], at = below(len + 1), n = 1 + below(8);
    switch (below(12)) {
    case 0: /* flip a bit */
        if (len > 0)
            p[below(len)] ^= (uint8_t)(1u << below(8));
        break;
    case 1: { /* set a byte */
        static const uint8_t bytes[] = {0, 1, 0x7f, 0x80, 0xff};
        if (len > 0)
            p[below(len)] = bytes[below(sizeof bytes)];
        break;
    }
    case 2:
    case 3:
        nudge(d, f);
        break;
    case 4: /* insert bytes */
        if (len + n > FILE_MAX)
            break;
        memmove(p + at + n, p + at, len - at);
        for (size_t i = 0; i < n; i++)
            p[at + i] = (uint8_t)next_random();
        d->len[f] += n;
        break;
    case 5: /* delete bytes */
        if (at + n > len)
            break;
        memmove(p + at, p + at + n, len - at - n);
        d->len[f] -= n;
        break;
    case 6: /* cut, anywhere or at a record's start */
        d->len[f] = f == PART_LOG && below(2) ? some_record(d) : at;
        break;
    case 7: { /* extend with a copy of its own bytes */
        size_t from = below(len), k = below(len - from + 1);
        if (len + k > FILE_MAX)
            break;
        memcpy(p + len, p + from, k);
        d->len[f] += k;
        break;
    }
    case 8: { /* drop a file, or put another one in its place */
        int g = (int)below(N_PARTS);
        if (g == f || !(d->flags & (1u << g))) {
            d->flags &= ~(1u << f);
            break;
        }
        memcpy(p, d->file[g], d->len[g]);
        d->len[f] = d->len[g];
        break;
    }
    case 9: /* swap the two header slots */
        if (f != PART_SNAP) {
            size_t other = f == PART_LOG ? HEADER_SLOT_STRIDE : HEADER_SLOT_SIZE;
            uint8_t slot[HEADER_SLOT_SIZE];
            if (len < other + HEADER_SLOT_SIZE)
                break;
            memcpy(slot, p, HEADER_SLOT_SIZE);
            memcpy(p, p + other, HEADER_SLOT_SIZE);
            memcpy(p + other, slot, HEADER_SLOT_SIZE);
        }
        break;
    case 10: /* another snapshot name */
        if (below(2))
            d->index += below(2) ? 1 : (uint64_t)-1;
        else
            d->term += below(2) ? 1 : (uint64_t)-1;
        break;
    default: { /* a flag: checksums fixed, an older snapshot, leftovers, a crash */
        static const unsigned flags[] = {FLAG_FIX_CRC, FLAG_OLDER_SNAP, FLAG_LEFTOVERS, FLAG_CRASH};
        d->flags ^= flags[below(4)];
        d->crash = (uint8_t)below(256);
        break;
    }
    }
}

/* Most inputs that change the snapshot's size keep its length field true,
 * so that the changes reach the payload. */
static void fit_snapshot_length(struct dirfiles *d)
{
    if ((d->flags & FLAG_SNAP) && d->len[PART_SNAP] >= SNAPFILE_HEADER_SIZE && below(4) > 0)
        put_le(d->file[PART_SNAP] + 24, d->len[PART_SNAP] - SNAPFILE_HEADER_SIZE, 8);
}

/* ---------------------------------------------------------------- main */

static void run(const uint8_t *input, size_t len)
{
    const char *last = getenv("FUZZ_DATADIR_LAST");
    if (last != NULL) {
        FILE *f = fopen(last, "wb");
        if (f == NULL || fwrite(input, 1, len, f) != len || fclose(f) != 0)
            die(last, "cannot write");
    }
    uint8_t *exact = malloc(len > 0 ? len : 1);
    if (exact == NULL)
        die("input", "out of memory");
    memcpy(exact, input, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
}

/* Each seed as it is, then with every flag: checksums fixed, an older
 * snapshot, leftovers, a crash at the 5th I/O operation. */
static int write_corpus(const char *dir)
{
    static uint8_t input[INPUT_MAX];
    static struct dirfiles d;
    for (size_t i = 0; i < n_seeds; i++) {
        for (int variant = 0; variant < 2; variant++) {
            d = seeds[i];
            if (variant == 1) {
                d.flags |= FLAG_FIX_CRC | FLAG_OLDER_SNAP | FLAG_LEFTOVERS | FLAG_CRASH;
                d.crash = 4;
            }
            size_t len = encode(&d, true, input);
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/seed-%zu-%d", dir, i, variant);
            FILE *f = fopen(path, "wb");
            if (f == NULL)
                die(path, strerror(errno));
            if (fwrite(input, 1, len, f) != len || fclose(f) != 0)
                die(path, "cannot write");
        }
    }
    printf("fuzz_datadir_smoke: %zu seeds in %s\n", 2 * n_seeds, dir);
    return 0;
}

int main(int argc, char **argv)
{
    make_seeds();
    if (argc > 2 && strcmp(argv[1], "--corpus") == 0)
        return write_corpus(argv[2]);
    long inputs = argc > 1 ? strtol(argv[1], NULL, 10) : 40000;
    if (inputs < (long)n_seeds)
        inputs = (long)n_seeds;
    static uint8_t input[INPUT_MAX];
    static struct dirfiles d;

    /* Every seed untouched first: each must open. */
    for (size_t i = 0; i < n_seeds; i++)
        run(input, encode(&seeds[i], true, input));
    if (fuzz_datadir_opened != n_seeds)
        die("seeds", "a seed's data dir does not open");
    for (long i = (long)n_seeds; i < inputs; i++) {
        d = seeds[(size_t)i % n_seeds];
        if (below(4) > 0)
            d.flags |= FLAG_FIX_CRC;
        size_t changes = 1 + below(4);
        for (size_t k = 0; k < changes; k++)
            mutate(&d);
        fit_snapshot_length(&d);
        run(input, encode(&d, below(4) > 0, input));
    }
    printf("fuzz_datadir_smoke: %ld inputs (%lu opened), no failure\n", inputs,
           fuzz_datadir_opened);
    return 0;
}

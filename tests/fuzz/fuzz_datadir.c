/* fuzz_datadir.c - a libFuzzer target for what a node does with its data dir
 * at start: whatever bytes DIR/log, DIR/meta and a snapshot file hold, the
 * node must stop with a clear error (a message) or open them, never crash,
 * hang, leak or upset a sanitizer.
 *
 * Each input is written into a fresh temporary dir (mkdtemp under $TMPDIR,
 * else /tmp; removed when done), then the dir goes through node/main.c's
 * start with the library's functions: wal_open; the newest snapshot loaded
 * as node/snapshot.c does (snapfile_load, the "RKCF" configuration prefix,
 * kv_snapshot_load); raft_restore with the entries and the core's first
 * ready; wal_close. Then the dir is opened again, as the next start would.
 *
 * The input:
 *   byte 0  flags:
 *     bit 0   DIR/log is written
 *     bit 1   DIR/meta is written
 *     bit 2   a snapshot is written, DIR/snap-<index>-<term>
 *     bit 3   the checksums are fixed before writing: the log's header slots
 *             and records (as far as their lengths reach), the meta slots,
 *             the snapshot's header and payload checksums and the KV
 *             snapshot's own, so that changed bytes reach the checks behind
 *             them (a length field is left as it is)
 *     bit 4   short log header: the log part's first 128 bytes are the two
 *             header slots (slot A at 0, slot B at 512, zeros elsewhere up
 *             to 4096); the rest of the part follows from 4096
 *     bit 5   an older snapshot too: the same bytes, named for index - 1
 *     bit 6   a crash's leftovers: log.tmp, log.compact, meta.tmp,
 *             snapshot.tmp and snapshot-recv.tmp, a few bytes each
 *     bit 7   a crash: the files are also written into a second dir, opened
 *             with every write, sync, truncate and rename failing from the
 *             Nth on, as if the process died there, then opened again
 *   [bit 7]   one byte: N is 1 + (byte % 32)
 *   [bit 2]   index u64 and term u64, little-endian: the snapshot's name
 *   then, for the log, the meta and the snapshot in that order, each one
 *   that is written: its length (u16, little-endian, cut to the bytes left)
 *   and its bytes. A short input reads as zeros; bytes left over are ignored.
 *
 * Checks besides not crashing: every error comes with a message; an open
 * returns entries wal_first_index .. wal_last_index in order, terms never
 * going down, its log file is wal_log_size long, the crash's leftovers and
 * the older snapshots are gone; the snapshot it verified loads; the core
 * keeps the whole log (wal_open already fitted it to the snapshot); a second
 * open gives the same term, vote, snapshot and entries; and after a crash in
 * wal_open the dir opens to what an undisturbed open gave.
 *
 * FUZZ_DATADIR_VERBOSE=1 in the environment prints each error message and
 * what each open gave.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "fuzz_datadir.h"
#include "kv.h"
#include "raft.h"
#include "snapshot_file.h"
#include "wal.h"
#include "wal_internal.h" /* wal_fault_hook; the log's layout */

unsigned long fuzz_datadir_opened;

/* The layouts, from the top of src/wal_meta.c and src/snapshot_file.c. */
#define SLOT_CRC_AT 60 /* meta, log header and snapshot header alike */
#define SNAP_PAYLOAD_CRC_AT 32
#define CRASH_POINTS 32

static const char *const leftovers[] = {"log.tmp", "log.compact", "meta.tmp", "snapshot.tmp",
                                        "snapshot-recv.tmp"};

struct input {
    unsigned flags;
    unsigned crash_at; /* bit 7: the first I/O operation to fail, from 1 */
    uint64_t snap_index, snap_term;
    uint8_t *file[N_PARTS]; /* the files' bytes (malloc'd, exactly len) */
    size_t len[N_PARTS];
};

/* What an open gave, to compare two opens. */
struct outcome {
    uint64_t term, first, last, snap_index, snap_term;
    uint32_t vote, digest;
};

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_datadir: %s\n", what);
    abort();
}

/* A failed call must say why. */
static void need_message(const char *call, const char *err)
{
    if (err[0] == '\0') {
        fprintf(stderr, "fuzz_datadir: %s failed without a message\n", call);
        abort();
    }
    if (getenv("FUZZ_DATADIR_VERBOSE") != NULL)
        fprintf(stderr, "%s: %s\n", call, err);
}

/* ---------------------------------------------------------------- the input */

struct cursor {
    const uint8_t *p;
    size_t left;
};

/* n bytes as a little-endian number; zeros past the end. */
static uint64_t take_le(struct cursor *c, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        uint64_t byte = 0;
        if (c->left > 0) {
            byte = *c->p++;
            c->left--;
        }
        v |= byte << (8 * i);
    }
    return v;
}

static uint8_t *copy_bytes(const uint8_t *p, size_t n)
{
    uint8_t *out = malloc(n > 0 ? n : 1);
    if (out == NULL)
        fail("out of memory");
    if (n > 0)
        memcpy(out, p, n);
    return out;
}

/* With a short header, the log's file from its part: the two slots in
 * place, zeros up to the first record, then the records. */
static uint8_t *expand_log(const uint8_t *part, size_t n, size_t *len)
{
    *len = LOG_DATA_START + (n > SHORT_HEADER ? n - SHORT_HEADER : 0);
    uint8_t *out = calloc(1, *len);
    if (out == NULL)
        fail("out of memory");
    size_t a = n < HEADER_SLOT_SIZE ? n : HEADER_SLOT_SIZE;
    if (a > 0)
        memcpy(out, part, a);
    if (n > HEADER_SLOT_SIZE)
        memcpy(out + HEADER_SLOT_STRIDE, part + a, (n < SHORT_HEADER ? n : SHORT_HEADER) - a);
    if (n > SHORT_HEADER)
        memcpy(out + LOG_DATA_START, part + SHORT_HEADER, n - SHORT_HEADER);
    return out;
}

static void parse(const uint8_t *data, size_t size, struct input *in)
{
    struct cursor c = {data, size};
    memset(in, 0, sizeof *in);
    in->flags = (unsigned)take_le(&c, 1);
    if (in->flags & FLAG_CRASH)
        in->crash_at = 1 + (unsigned)take_le(&c, 1) % CRASH_POINTS;
    if (in->flags & FLAG_SNAP) {
        in->snap_index = take_le(&c, 8);
        in->snap_term = take_le(&c, 8);
    }
    for (int i = 0; i < N_PARTS; i++) {
        if (!(in->flags & (1u << i)))
            continue;
        size_t n = (size_t)take_le(&c, 2);
        if (n > c.left)
            n = c.left;
        if (i == PART_LOG && (in->flags & FLAG_SHORT_HEADER))
            in->file[i] = expand_log(c.p, n, &in->len[i]);
        else {
            in->file[i] = copy_bytes(c.p, n);
            in->len[i] = n;
        }
        c.p += n;
        c.left -= n;
    }
}

static void free_input(struct input *in)
{
    for (int i = 0; i < N_PARTS; i++)
        free(in->file[i]);
}

/* ---------------------------------------------------------------- fixing checksums */

static void put_crc(uint8_t *at, uint32_t crc)
{
    wal_put_u32(at, crc);
}

/* The slot of SLOT_CRC_AT + 4 bytes at p: its checksum over what precedes it. */
static void fix_slot(uint8_t *p, size_t len, size_t at)
{
    if (at + SLOT_CRC_AT + 4 <= len)
        put_crc(p + at + SLOT_CRC_AT, crc32c(0, p + at, SLOT_CRC_AT));
}

/* Header slots, then records while their lengths fit: from 0 in a log that
 * starts with a record (the first release's), else from 4096. */
static void fix_log(uint8_t *p, size_t len)
{
    fix_slot(p, len, 0);
    fix_slot(p, len, HEADER_SLOT_STRIDE);
    size_t off = len >= 4 && wal_get_u32(p) == LOG_MAGIC ? 0 : LOG_DATA_START;
    while (off + LOG_HEADER_SIZE <= len) {
        uint32_t n = wal_get_u32(p + off + 4);
        if (n > len - off - LOG_HEADER_SIZE)
            break;
        uint32_t crc = crc32c(0, p + off, 8); /* the crc field is left out */
        crc = crc32c(crc, p + off + 12, LOG_HEADER_SIZE - 12);
        crc = crc32c(crc, p + off + LOG_HEADER_SIZE, n);
        put_crc(p + off + 8, crc);
        off += LOG_HEADER_SIZE + (size_t)n;
    }
}

/* The KV snapshot behind the configuration prefix ends with the CRC-32C of
 * every byte before it; then the file's payload checksum, then its header's. */
static void fix_snapshot(uint8_t *p, size_t len)
{
    if (len < SNAPFILE_HEADER_SIZE)
        return;
    uint8_t *payload = p + SNAPFILE_HEADER_SIZE;
    size_t n = len - SNAPFILE_HEADER_SIZE, kv_at = 0;
    if (n >= 8 && memcmp(payload, "RKCF", 4) == 0 && wal_get_u32(payload + 4) <= n - 8)
        kv_at = 8 + (size_t)wal_get_u32(payload + 4);
    if (n - kv_at >= 4)
        put_crc(p + len - 4, crc32c(0, payload + kv_at, n - kv_at - 4));
    put_crc(p + SNAP_PAYLOAD_CRC_AT, crc32c(0, payload, n));
    fix_slot(p, len, 0);
}

static void fix_checksums(struct input *in)
{
    if (in->file[PART_LOG] != NULL)
        fix_log(in->file[PART_LOG], in->len[PART_LOG]);
    if (in->file[PART_META] != NULL) {
        fix_slot(in->file[PART_META], in->len[PART_META], 0);
        fix_slot(in->file[PART_META], in->len[PART_META], META_SLOT);
    }
    if (in->file[PART_SNAP] != NULL)
        fix_snapshot(in->file[PART_SNAP], in->len[PART_SNAP]);
}

/* ---------------------------------------------------------------- the dir */

void fuzz_datadir_make_dir(char *out, size_t outlen)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    int k = snprintf(out, outlen, "%s/raftkv-fuzz-datadir-XXXXXX", tmp);
    if (k < 0 || (size_t)k >= outlen || mkdtemp(out) == NULL)
        fail("cannot make a temporary dir");
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

void fuzz_datadir_remove_dir(const char *dir)
{
    if (nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fail("cannot remove the temporary dir");
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        fail("cannot create a file in the temporary dir");
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            fail("cannot write a file in the temporary dir");
        p += k;
        n -= (size_t)k;
    }
    if (close(fd) < 0)
        fail("cannot close a file in the temporary dir");
}

static void path_in(char *out, size_t outlen, const char *dir, const char *name)
{
    int k = snprintf(out, outlen, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= outlen)
        fail("path too long");
}

static void populate(const char *dir, const struct input *in)
{
    char path[PATH_MAX];
    if (in->flags & FLAG_LOG) {
        path_in(path, sizeof path, dir, "log");
        write_file(path, in->file[PART_LOG], in->len[PART_LOG]);
    }
    if (in->flags & FLAG_META) {
        path_in(path, sizeof path, dir, "meta");
        write_file(path, in->file[PART_META], in->len[PART_META]);
    }
    if (in->flags & FLAG_SNAP) {
        if (snapfile_path(path, sizeof path, dir, in->snap_index, in->snap_term, NULL, 0) < 0)
            fail("path too long");
        write_file(path, in->file[PART_SNAP], in->len[PART_SNAP]);
        if ((in->flags & FLAG_OLDER_SNAP) && in->snap_index > 0) {
            if (snapfile_path(path, sizeof path, dir, in->snap_index - 1, in->snap_term, NULL, 0) <
                0)
                fail("path too long");
            write_file(path, in->file[PART_SNAP], in->len[PART_SNAP]);
        }
    }
    if (in->flags & FLAG_LEFTOVERS) {
        for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0]; i++) {
            path_in(path, sizeof path, dir, leftovers[i]);
            write_file(path, (const uint8_t *)"leftover", 8);
        }
    }
}

/* "snap-<20 digits>-<20 digits>" with both above 0, as snapshot_file.c reads
 * names: the index. 0: not a snapshot's name. */
static uint64_t snapshot_name_index(const char *name)
{
    if (strlen(name) != 46 || strncmp(name, "snap-", 5) != 0 || name[25] != '-')
        return 0;
    uint64_t v[2] = {0, 0};
    for (int part = 0; part < 2; part++) {
        for (int i = 0; i < 20; i++) {
            char ch = name[5 + 21 * part + i];
            if (ch < '0' || ch > '9')
                return 0;
            uint64_t d = (uint64_t)(ch - '0');
            if (v[part] > (UINT64_MAX - d) / 10)
                return 0;
            v[part] = v[part] * 10 + d;
        }
    }
    return v[1] > 0 ? v[0] : 0;
}

/* ---------------------------------------------------------------- opening */

static void free_entries(struct raft_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        raft_entry_free(&entries[i]);
    free(entries);
}

static void describe(const struct wal *w, uint64_t term, uint32_t vote, const struct raft_entry *e,
                     size_t n, struct outcome *out)
{
    *out = (struct outcome){.term = term, .vote = vote};
    out->first = wal_first_index(w);
    out->last = wal_last_index(w);
    wal_snapshot(w, &out->snap_index, &out->snap_term);
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t h[21];
        wal_put_u64(h, e[i].index);
        wal_put_u64(h + 8, e[i].term);
        wal_put_u32(h + 16, e[i].len);
        h[20] = e[i].type;
        crc = crc32c(crc, h, sizeof h);
        if (e[i].len > 0)
            crc = crc32c(crc, e[i].data, e[i].len);
    }
    out->digest = crc;
}

static bool same_outcome(const struct outcome *a, const struct outcome *b)
{
    return a->term == b->term && a->vote == b->vote && a->first == b->first && a->last == b->last &&
           a->snap_index == b->snap_index && a->snap_term == b->snap_term && a->digest == b->digest;
}

/* What every successful wal_open must give (see wal.h). */
static void check_open(const char *dir, const struct wal *w, const struct raft_entry *e, size_t n)
{
    uint64_t first = wal_first_index(w), last = wal_last_index(w), index, term;
    wal_snapshot(w, &index, &term);
    if (first == 0 || last != first - 1 + n)
        fail("wal_last_index does not match the entries returned");
    if ((index == 0) != (term == 0) || first - 1 > index)
        fail("the log starts after the newest snapshot");
    for (size_t i = 0; i < n; i++) {
        if (e[i].index != first + i)
            fail("an entry out of sequence");
        if (i > 0 && e[i].term < e[i - 1].term)
            fail("an entry's term below the one before");
        if (e[i].len > LOG_MAX_PAYLOAD || (e[i].len > 0 && e[i].data == NULL))
            fail("an entry's data does not match its length");
    }
    char path[PATH_MAX];
    struct stat st;
    path_in(path, sizeof path, dir, "log");
    if (stat(path, &st) < 0 || (uint64_t)st.st_size != wal_log_size(w))
        fail("the log file is not wal_log_size long after wal_open");
    for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0]; i++) {
        path_in(path, sizeof path, dir, leftovers[i]);
        if (strcmp(leftovers[i], "meta.tmp") != 0 && access(path, F_OK) == 0)
            fail("a crash's leftover survived wal_open");
    }
    if (index > 0) {
        if (snapfile_path(path, sizeof path, dir, index, term, NULL, 0) < 0 ||
            access(path, F_OK) != 0)
            fail("the newest snapshot's file is missing");
    }
    /* Older snapshots are removed. */
    DIR *d = opendir(dir);
    if (d == NULL)
        fail("cannot read the temporary dir");
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t k = snapshot_name_index(de->d_name);
        if (k > 0 && k < index)
            fail("a snapshot older than the newest survived wal_open");
    }
    closedir(d);
}

/* wal_open; an error must have a message and return nothing. */
static int open_dir(const char *dir, struct wal **w, uint64_t *term, uint32_t *vote,
                    struct raft_entry **e, size_t *n, const char *call)
{
    char err[512] = "";
    if (wal_open(dir, w, term, vote, e, n, err, sizeof err) == 0)
        return 0;
    need_message(call, err);
    if (*w != NULL || *e != NULL || *n != 0)
        fail("wal_open failed but returned something");
    return -1;
}

/* ---------------------------------------------------------------- the node's start */

/* node/snapshot.c's snapshot_load_kv: the payload, the configuration before
 * the store ("RKCF", its length u32, raft_members_encode's bytes) if it
 * starts so, then the store. -1: the node stops (with a message of its own
 * when the configuration does not decode). */
static int load_snapshot(const char *dir, uint64_t index, uint64_t term, struct kv **kv,
                         struct raft_members *members, bool *has_members)
{
    uint8_t *payload;
    uint64_t len;
    char err[512] = "";
    if (snapfile_load(dir, index, term, &payload, &len, err, sizeof err) != 0) {
        need_message("snapfile_load", err);
        fail("snapfile_load refused the snapshot wal_open verified");
    }
    uint64_t kv_at = 0;
    *has_members = false;
    if (len >= 8 && memcmp(payload, "RKCF", 4) == 0) {
        uint32_t mlen = wal_get_u32(payload + 4);
        if (mlen > len - 8 || raft_members_decode(payload + 8, mlen, members) != 0) {
            free(payload);
            return -1;
        }
        *has_members = true;
        kv_at = 8 + (uint64_t)mlen;
    }
    /* (The node passes payload + kv_at also when an empty payload is NULL.) */
    const uint8_t *kv_bytes = payload != NULL ? payload + kv_at : NULL;
    int rc = kv_snapshot_load(kv_bytes, (size_t)(len - kv_at), kv, err, sizeof err);
    free(payload);
    if (rc == KV_SNAPSHOT_DAMAGED)
        need_message("kv_snapshot_load", err);
    return rc == KV_SNAPSHOT_OK ? 0 : -1;
}

/* node_open_storage after wal_open: the term checked, the store from the
 * newest snapshot, the core restored with the entries (it takes them). */
static void node_start(const char *dir, struct wal *w, uint64_t term, uint32_t vote,
                       struct raft_entry *entries, size_t n)
{
    if (term > RAFT_TERM_MAX) { /* the node stops: "term ... past the largest" */
        free_entries(entries, n);
        return;
    }
    uint64_t index, snap_term;
    wal_snapshot(w, &index, &snap_term);
    struct kv *kv = NULL;
    struct raft_members members;
    bool has_members = false;
    if (index == 0)
        kv = kv_new();
    else if (load_snapshot(dir, index, snap_term, &kv, &members, &has_members) != 0)
        kv = NULL;
    if (kv == NULL) {
        free_entries(entries, n);
        return;
    }

    struct raft_config cfg = {
        .id = 1,
        .n_nodes = 3,
        .node_ids = {1, 2, 3},
        .election_min_ms = 150,
        .election_max_ms = 300,
        .heartbeat_ms = 50,
        .seed = 1,
    };
    struct raft r;
    if (raft_init(&r, &cfg, 0) != RAFT_OK)
        fail("raft_init");
    uint64_t last = wal_last_index(w);
    if (raft_restore(&r, term, vote, index, snap_term, entries, n) == RAFT_OK) {
        if (has_members)
            raft_set_snapshot_members(&r, &members);
        /* wal_open fitted the log to the snapshot: the core keeps all of it. */
        struct raft_ready rd;
        raft_ready(&r, &rd);
        if (raft_last_index(&r) != last || rd.truncate_from != 0)
            fail("the core drops entries wal_open kept");
    }
    raft_close(&r);
    kv_free(kv);
}

/* ---------------------------------------------------------------- the runs */

/* A node's start and then its next; true with what the first open gave when
 * it opened. */
static bool start_twice(const char *dir, struct outcome *first)
{
    struct wal *w;
    struct raft_entry *e;
    size_t n;
    uint64_t term;
    uint32_t vote;
    if (open_dir(dir, &w, &term, &vote, &e, &n, "wal_open") != 0)
        return false;
    check_open(dir, w, e, n);
    describe(w, term, vote, e, n, first);
    node_start(dir, w, term, vote, e, n);
    wal_close(w);

    struct outcome again;
    if (open_dir(dir, &w, &term, &vote, &e, &n, "wal_open (again)") != 0)
        fail("a data dir that opened and closed does not open again");
    check_open(dir, w, e, n);
    describe(w, term, vote, e, n, &again);
    free_entries(e, n);
    wal_close(w);
    if (!same_outcome(first, &again))
        fail("a second open gives another log, term, vote or snapshot");
    fuzz_datadir_opened++;
    if (getenv("FUZZ_DATADIR_VERBOSE") != NULL)
        fprintf(stderr,
                "opened: term %" PRIu64 ", entries %" PRIu64 "..%" PRIu64 ", snapshot %" PRIu64
                " (term %" PRIu64 ")\n",
                first->term, first->first, first->last, first->snap_index, first->snap_term);
    return true;
}

static unsigned crash_at, io_ops;

static int crash_hook(const char *op)
{
    (void)op;
    return ++io_ops >= crash_at;
}

/* wal_open and wal_close with every I/O operation failing from the Nth, then
 * an undisturbed open: it must give what one gave before (ref; NULL when that
 * failed). */
static void crash_then_start(const char *dir, unsigned at, const struct outcome *ref)
{
    struct wal *w;
    struct raft_entry *e;
    size_t n;
    uint64_t term;
    uint32_t vote;
    io_ops = 0;
    crash_at = at;
    wal_fault_hook = crash_hook;
    if (open_dir(dir, &w, &term, &vote, &e, &n, "wal_open (crashing)") == 0) {
        free_entries(e, n);
        wal_close(w);
    }
    wal_fault_hook = NULL;

    if (open_dir(dir, &w, &term, &vote, &e, &n, "wal_open (after a crash)") != 0) {
        if (ref != NULL)
            fail("after a crash in wal_open the data dir no longer opens");
        return;
    }
    check_open(dir, w, e, n);
    struct outcome after;
    describe(w, term, vote, e, n, &after);
    free_entries(e, n);
    wal_close(w);
    if (ref != NULL && !same_outcome(ref, &after))
        fail("after a crash in wal_open the data dir opens to another log");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in;
    parse(data, size, &in);
    if (in.flags & FLAG_FIX_CRC)
        fix_checksums(&in);

    char dir[PATH_MAX];
    fuzz_datadir_make_dir(dir, sizeof dir);
    populate(dir, &in);
    struct outcome ref;
    bool opened = start_twice(dir, &ref);
    fuzz_datadir_remove_dir(dir);

    if (in.crash_at > 0) {
        fuzz_datadir_make_dir(dir, sizeof dir);
        populate(dir, &in);
        crash_then_start(dir, in.crash_at, opened ? &ref : NULL);
        fuzz_datadir_remove_dir(dir);
    }
    free_input(&in);
    return 0;
}

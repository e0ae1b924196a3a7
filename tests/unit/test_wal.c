/* test_wal.c - the data dir: hard state, log records, the synced mark, torn
 * tails, damage, old logs, lock; the log's base after a snapshot (prefix
 * drop, a crash or error at each of its steps, a follower's install). Real files under a temp dir,
 * real fsync. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "crc32c.h"
#include "snapshot_file.h"
#include "wal.h"
#include "wal_internal.h" /* wal_fault_hook */

static char root[] = "/tmp/raftkv-test-wal-XXXXXX";
static char err[512];

/* The on-disk format, as described at the top of src/wal.c (the log) and
 * src/wal_meta.c (the meta file). */
#define DATA_START 4096L /* the first record; before it the header */
#define SLOT_STRIDE 512L /* header slot A at 0, slot B at 512 */
#define REC 29L          /* a record's header */

/* ---------------------------------------------------------------- helpers */

static void sub_dir(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/%s", root, name);
}

static void file_in(char *out, size_t outlen, const char *dir, const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
}

static long file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    return (long)st.st_size;
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    long size = file_size(path);
    FILE *f = fopen(path, "rb");
    if (size < 0 || f == NULL) {
        if (f != NULL)
            fclose(f);
        return NULL;
    }
    uint8_t *data = malloc((size_t)size + 1);
    *len = fread(data, 1, (size_t)size, f);
    fclose(f);
    return data;
}

static void write_whole(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static void xor_byte(const char *path, long off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    uint8_t b = 0;
    CHECK(fd >= 0);
    CHECK(pread(fd, &b, 1, off) == 1);
    b ^= mask;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Recompute the checksum of the record at rec (after changing a field). */
static void reseal(uint8_t *rec)
{
    uint32_t len = (uint32_t)get_le(rec + 4, 4);
    uint32_t crc = crc32c(0, rec, 8);
    crc = crc32c(crc, rec + 12, 17);
    crc = crc32c(crc, rec + REC, len);
    put_le(rec + 8, crc, 4);
}

/* A well-formed log record, encoded as wal.c does. Returns its size. */
static size_t encode_record(uint8_t *out, uint64_t term, uint64_t index, const char *text)
{
    uint32_t len = (uint32_t)strlen(text);
    put_le(out, 0x4c564b52u, 4); /* "RKVL" */
    put_le(out + 4, len, 4);
    put_le(out + 12, term, 8);
    put_le(out + 20, index, 8);
    out[28] = RAFT_ENTRY_COMMAND;
    memcpy(out + REC, text, len);
    reseal(out);
    return (size_t)REC + len;
}

/* Header slot i (0: A, 1: B) of the log file in data. */
static uint64_t slot_seq(const uint8_t *data, int i)
{
    return get_le(data + i * SLOT_STRIDE + 8, 8);
}

static uint64_t slot_end(const uint8_t *data, int i)
{
    return get_le(data + i * SLOT_STRIDE + 16, 8);
}

/* The slot holding the newest mark (both assumed valid). */
static int newest_slot(const uint8_t *data)
{
    return slot_seq(data, 1) > slot_seq(data, 0) ? 1 : 0;
}

static struct raft_entry make_entry(uint64_t term, uint64_t index, const char *text)
{
    struct raft_entry e = {.term = term, .index = index, .type = RAFT_ENTRY_COMMAND};
    e.len = (uint32_t)strlen(text);
    if (e.len > 0) {
        e.data = malloc(e.len);
        memcpy(e.data, text, e.len);
    }
    return e;
}

static void free_entries(struct raft_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(entries[i].data);
    free(entries);
}

static bool data_is(const struct raft_entry *e, const char *text)
{
    size_t len = strlen(text);
    return e->len == len && (len == 0 || memcmp(e->data, text, len) == 0);
}

/* Append one entry holding text, then sync. */
static void append_text(struct wal *w, uint64_t term, const char *text)
{
    struct raft_entry e = make_entry(term, wal_last_index(w) + 1, text);
    CHECK_INT_EQ(wal_append(w, &e, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_sync(w, err, sizeof err), 0);
    free(e.data);
}

struct opened {
    struct wal *w;
    uint64_t term;
    uint32_t vote;
    struct raft_entry *entries;
    size_t n;
};

static int open_dir(const char *dir, struct opened *o)
{
    memset(o, 0, sizeof *o);
    err[0] = '\0';
    return wal_open(dir, &o->w, &o->term, &o->vote, &o->entries, &o->n, err, sizeof err);
}

static void close_opened(struct opened *o)
{
    wal_close(o->w);
    free_entries(o->entries, o->n);
    memset(o, 0, sizeof *o);
}

/* Append one entry holding text, not synced. */
static void append_unsynced(struct wal *w, uint64_t term, const char *text)
{
    struct raft_entry e = make_entry(term, wal_last_index(w) + 1, text);
    CHECK_INT_EQ(wal_append(w, &e, 1, err, sizeof err), 0);
    free(e.data);
}

/* Run fn on dir, opened in a child process that then exits without
 * wal_close, as a crash would: what was written is in the file, and what was
 * not synced is not marked as synced. */
static void run_then_crash(const char *dir, void (*fn)(struct wal *w, void *arg), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child < 0)
        return;
    if (child == 0) {
        struct opened o;
        if (open_dir(dir, &o) != 0) {
            fprintf(stderr, "child: %s\n", err);
            _exit(1);
        }
        int before = check_failures;
        fn(o.w, arg);
        _exit(check_failures == before ? 0 : 2);
    }
    int status = 0;
    CHECK_INT_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---------------------------------------------------------------- tests */

static void test_crc32c(void)
{
    CHECK_INT_EQ(crc32c(0, "123456789", 9), 0xe3069283u);
    CHECK_INT_EQ(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
    CHECK_INT_EQ(crc32c(0, "", 0), 0);
}

static void test_round_trip(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "round-trip");
    struct opened o;

    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 0);
    CHECK_INT_EQ(o.vote, 0);
    CHECK_INT_EQ(o.n, 0);
    CHECK_INT_EQ(wal_last_index(o.w), 0);

    size_t big_len = 1024 * 1024;
    struct raft_entry batch[4] = {
        {.term = 1, .index = 1, .type = RAFT_ENTRY_NOOP},
        make_entry(1, 2, "set a 1"),
        {.term = 2, .index = 3, .type = RAFT_ENTRY_COMMAND, .len = (uint32_t)big_len},
        make_entry(2, 4, "del a"),
    };
    batch[2].data = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        batch[2].data[i] = (uint8_t)(i * 31 + 7);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 5, 2, err, sizeof err), 0);
    CHECK_INT_EQ(wal_append(o.w, batch, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_append(o.w, batch + 1, 3, err, sizeof err), 0);
    CHECK_INT_EQ(wal_sync(o.w, err, sizeof err), 0);
    CHECK_INT_EQ(wal_last_index(o.w), 4);

    /* Wrong index: refused, nothing written. */
    struct raft_entry wrong = make_entry(2, 7, "x");
    CHECK_INT_EQ(wal_append(o.w, &wrong, 1, err, sizeof err), -1);
    CHECK(strstr(err, "expected index 5") != NULL);
    free(wrong.data);
    CHECK_INT_EQ(wal_truncate(o.w, 0, err, sizeof err), -1);
    CHECK_INT_EQ(wal_truncate(o.w, 9, err, sizeof err), 0); /* past the end: nothing */
    CHECK_INT_EQ(wal_last_index(o.w), 4);
    close_opened(&o);

    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 5);
    CHECK_INT_EQ(o.vote, 2);
    CHECK_INT_EQ(o.n, 4);
    CHECK_INT_EQ(wal_last_index(o.w), 4);
    for (size_t i = 0; i < o.n && i < 4; i++) {
        CHECK_INT_EQ(o.entries[i].index, i + 1);
        CHECK_INT_EQ(o.entries[i].term, batch[i].term);
        CHECK_INT_EQ(o.entries[i].type, batch[i].type);
        CHECK_INT_EQ(o.entries[i].len, batch[i].len);
        CHECK(batch[i].len == 0 || memcmp(o.entries[i].data, batch[i].data, batch[i].len) == 0);
    }
    CHECK(o.n < 1 || o.entries[0].data == NULL);

    /* Hard state saved many times: the last one wins. */
    for (uint64_t t = 6; t <= 9; t++)
        CHECK_INT_EQ(wal_save_hard_state(o.w, t, (uint32_t)t % 3, err, sizeof err), 0);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 9);
    CHECK_INT_EQ(o.vote, 0);
    CHECK_INT_EQ(o.n, 4);
    close_opened(&o);

    for (size_t i = 0; i < 4; i++)
        free(batch[i].data);
}

/* Thousands of records: read back across the reader's buffer refills. */
static void test_many_records(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "many");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);

    enum { total = 3000, per_batch = 100, size = 999 };
    struct raft_entry batch[per_batch];
    uint8_t data[size];
    for (int b = 0; b < total / per_batch; b++) {
        for (int i = 0; i < per_batch; i++) {
            uint64_t index = (uint64_t)(b * per_batch + i + 1);
            batch[i] = (struct raft_entry){.term = 1 + index / 1000,
                                           .index = index,
                                           .type = RAFT_ENTRY_COMMAND,
                                           .len = (uint32_t)(index % size),
                                           .data = data};
        }
        for (int i = 0; i < size; i++)
            data[i] = (uint8_t)(b + i);
        CHECK_INT_EQ(wal_append(o.w, batch, per_batch, err, sizeof err), 0);
    }
    CHECK_INT_EQ(wal_sync(o.w, err, sizeof err), 0);
    close_opened(&o);

    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, total);
    int bad = 0;
    for (size_t i = 0; i < o.n; i++) {
        const struct raft_entry *e = &o.entries[i];
        uint64_t index = i + 1;
        int b = (int)(i / per_batch);
        if (e->index != index || e->term != 1 + index / 1000 || e->len != index % size)
            bad++;
        for (uint32_t k = 0; k < e->len; k++)
            if (e->data[k] != (uint8_t)(b + (int)k))
                bad++;
    }
    CHECK_INT_EQ(bad, 0);
    close_opened(&o);
}

static void test_truncate_then_append(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "truncate");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    const char *texts[] = {"one", "two", "three", "four", "five"};
    for (int i = 0; i < 5; i++)
        append_text(o.w, 1, texts[i]);
    CHECK_INT_EQ(wal_truncate(o.w, 3, err, sizeof err), 0);
    CHECK_INT_EQ(wal_last_index(o.w), 2);
    append_text(o.w, 2, "THREE");
    append_text(o.w, 2, "FOUR");
    close_opened(&o);

    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 4);
    if (o.n == 4) {
        CHECK(data_is(&o.entries[0], "one") && o.entries[0].term == 1);
        CHECK(data_is(&o.entries[1], "two") && o.entries[1].term == 1);
        CHECK(data_is(&o.entries[2], "THREE") && o.entries[2].term == 2);
        CHECK(data_is(&o.entries[3], "FOUR") && o.entries[3].term == 2);
    }
    /* Truncate everything, reopen: empty. */
    CHECK_INT_EQ(wal_truncate(o.w, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_sync(o.w, err, sizeof err), 0);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 0);
    append_text(o.w, 3, "again");
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 1);
    CHECK(o.n == 1 && data_is(&o.entries[0], "again") && o.entries[0].index == 1);
    close_opened(&o);
}

static void test_meta_slots(void)
{
    char dir[256], meta[300];
    sub_dir(dir, sizeof dir, "meta");
    file_in(meta, sizeof meta, dir, "meta");
    struct opened o;

    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 1, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 2, 2, err, sizeof err), 0);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 3, 3, err, sizeof err), 0);
    close_opened(&o);

    /* Garble the newest slot, then the other one: the intact one is used. */
    size_t len = 0;
    uint8_t *saved = read_whole(meta, &len);
    CHECK(saved != NULL && len == 128);
    int newest = -1;
    for (int slot = 0; slot < 2; slot++) {
        write_whole(meta, saved, len);
        xor_byte(meta, slot * 64 + 20, 0x40);
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK(o.term == 2 || o.term == 3);
        if (o.term == 2)
            newest = slot;
        CHECK_INT_EQ(o.vote, o.term);
        close_opened(&o);
    }
    CHECK(newest >= 0);

    /* After reopening on the older slot, saves go on alternating. */
    write_whole(meta, saved, len);
    xor_byte(meta, newest * 64 + 20, 0x40);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 2);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 4, 4, err, sizeof err), 0);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 4);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 5, 5, err, sizeof err), 0);
    close_opened(&o);
    xor_byte(meta, (1 - newest) * 64 + 20, 0x40); /* the slot term 5 went into */
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 4);
    CHECK_INT_EQ(o.vote, 4);
    close_opened(&o);

    /* Both slots bad: refused. */
    xor_byte(meta, newest * 64 + 3, 0x01);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    char expected[400];
    snprintf(expected, sizeof expected, "%s: damaged at offset 0 (bad checksum)", meta);
    CHECK_STR_EQ(err, expected);

    /* An empty meta: term 0, no vote. */
    write_whole(meta, saved, 0);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 0);
    CHECK_INT_EQ(o.vote, 0);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 7, 1, err, sizeof err), 0);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 7);
    CHECK_INT_EQ(o.vote, 1);
    close_opened(&o);
    free(saved);
}

/* A log of three records "first", "second" and a 40-byte one. Sizes of the
 * file after one, two and three records. */
static void make_three(const char *dir, long size[3])
{
    char log[300];
    file_in(log, sizeof log, dir, "log");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    append_text(o.w, 1, "first");
    size[0] = (long)wal_log_size(o.w);
    append_text(o.w, 1, "second");
    size[1] = (long)wal_log_size(o.w);
    append_text(o.w, 2, "0123456789012345678901234567890123456789");
    size[2] = (long)wal_log_size(o.w);
    CHECK(file_size(log) >= size[2]); /* zeros written ahead while open */
    close_opened(&o);
    CHECK_INT_EQ(file_size(log), size[2]); /* and cut back on a clean close */
}

static void check_two_left(const char *dir, long expected_size)
{
    char log[300];
    file_in(log, sizeof log, dir, "log");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 2);
    CHECK(o.n == 2 && data_is(&o.entries[1], "second"));
    CHECK_INT_EQ(file_size(log), expected_size);
    close_opened(&o);
}

/* "first" and "second" synced, then the 40-byte third record appended and
 * never synced: the process dies. */
static void third_unsynced(struct wal *w, void *arg)
{
    (void)arg;
    append_text(w, 1, "first");
    append_text(w, 1, "second");
    append_unsynced(w, 2, "0123456789012345678901234567890123456789");
}

/* The log as make_three leaves it, but with the third record past the synced
 * mark (as after a crash before its sync): a torn third record is dropped.
 * Before the synced mark this test cut the closed log of make_three at every
 * byte; that log is synced through its end now, so such a cut is damage
 * (test_cut_short). */
static void test_torn_tail(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "torn");
    file_in(log, sizeof log, dir, "log");
    run_then_crash(dir, third_unsynced, NULL);
    long size[3];
    size[0] = DATA_START + REC + 5;
    size[1] = size[0] + REC + 6;
    size[2] = size[1] + REC + 40;
    size_t len = 0;
    uint8_t *full = read_whole(log, &len);
    CHECK(full != NULL && (long)len >= size[2]); /* zeros written ahead */
    CHECK_INT_EQ(slot_end(full, newest_slot(full)), size[1]);
    len = (size_t)size[2];

    /* Torn at every byte of the third record. */
    int failures_before = check_failures;
    for (long cut = size[1]; cut < size[2] && check_failures == failures_before; cut++) {
        write_whole(log, full, (size_t)cut);
        struct opened o;
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, 2);
        CHECK_INT_EQ(wal_last_index(o.w), 2);
        CHECK_INT_EQ(file_size(log), size[1]);
        append_text(o.w, 3, "after");
        close_opened(&o);

        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, 3);
        CHECK(o.n == 3 && data_is(&o.entries[2], "after") && o.entries[2].index == 3 &&
              o.entries[2].term == 3);
        close_opened(&o);
        if (check_failures != failures_before)
            fprintf(stderr, "torn tail: failed with the log cut at %ld\n", cut);
    }

    /* Last record's payload garbled: dropped. */
    write_whole(log, full, len);
    xor_byte(log, size[2] - 1, 0x01);
    check_two_left(dir, size[1]);

    /* Last record's checksum field garbled: dropped. */
    write_whole(log, full, len);
    xor_byte(log, size[1] + 8, 0x80);
    check_two_left(dir, size[1]);

    /* Last record's magic garbled: dropped. */
    write_whole(log, full, len);
    xor_byte(log, size[1], 0x01);
    check_two_left(dir, size[1]);

    /* Zeros after the last record (a file extended but never written): the
     * unsynced record is whole, kept, and now marked synced. */
    uint8_t *padded = calloc(1, len + 4096);
    memcpy(padded, full, len);
    write_whole(log, padded, len + 4096);
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    CHECK_INT_EQ(file_size(log), size[2]);
    close_opened(&o);
    size_t now_len;
    uint8_t *now = read_whole(log, &now_len);
    CHECK(now != NULL && slot_end(now, newest_slot(now)) == (uint64_t)size[2]);
    free(now);

    /* The last record's bytes zeroed: dropped. */
    memcpy(padded, full, len);
    memset(padded + size[1], 0, len - (size_t)size[1]);
    write_whole(log, padded, len);
    check_two_left(dir, size[1]);

    free(padded);
    free(full);
}

static void expect_damage(const char *dir, long offset, const char *reason)
{
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    char expected[400];
    snprintf(expected, sizeof expected, "%s/log: damaged at offset %ld (%s)", dir, offset, reason);
    CHECK_STR_EQ(err, expected);
    CHECK(strstr(err, "log") != NULL);
}

/* Damage anywhere up to the synced mark is refused with the file and offset
 * of the record. The log of make_three is synced through its end. */
static void test_damage(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "damage");
    file_in(log, sizeof log, dir, "log");
    long size[3];
    make_three(dir, size);
    size_t len = 0;
    uint8_t *full = read_whole(log, &len);
    char past_end[64];
    snprintf(past_end, sizeof past_end, "length 65542 past the synced end %ld", size[2]);

    /* Middle record's payload. */
    xor_byte(log, size[1] - 1, 0x01);
    expect_damage(dir, size[0], "bad checksum");

    /* Middle record's magic. */
    write_whole(log, full, len);
    xor_byte(log, size[0], 0x01);
    expect_damage(dir, size[0], "bad magic");

    /* Middle record's length: over the limit. */
    write_whole(log, full, len);
    xor_byte(log, size[0] + 7, 0x40);
    expect_damage(dir, size[0], "length 1073741830 over limit");

    /* Middle record's length: past the synced end, yet records follow. */
    write_whole(log, full, len);
    xor_byte(log, size[0] + 6, 0x01);
    expect_damage(dir, size[0], past_end);

    /* First record. */
    write_whole(log, full, len);
    xor_byte(log, DATA_START + 12, 0x01);
    expect_damage(dir, DATA_START, "bad checksum");

    /* Last record: synced, so damage too (before the synced mark, a bad last
     * record was taken for a torn tail and dropped). */
    write_whole(log, full, len);
    xor_byte(log, size[2] - 1, 0x01);
    expect_damage(dir, size[1], "bad checksum");
    write_whole(log, full, len);
    xor_byte(log, size[1], 0x01);
    expect_damage(dir, size[1], "bad magic");

    /* An index out of order, with a good checksum. */
    uint8_t *copy = malloc(len);
    memcpy(copy, full, len);
    copy[size[0] + 20] = 7;
    reseal(copy + size[0]);
    write_whole(log, copy, len);
    expect_damage(dir, size[0], "index 7, expected 2");

    /* A term lower than the previous record's, with a good checksum. */
    memcpy(copy, full, len);
    copy[size[1] + 12] = 0;
    reseal(copy + size[1]);
    write_whole(log, copy, len);
    expect_damage(dir, size[1], "term 0 below the previous record's term 1");

    /* A header slot (well-formed) whose mark names the wrong index. */
    memcpy(copy, full, len);
    int newest = newest_slot(copy);
    uint8_t *slot = copy + newest * SLOT_STRIDE;
    put_le(slot + 24, 2, 8);
    put_le(slot + 60, crc32c(0, slot, 60), 4);
    write_whole(log, copy, len);
    expect_damage(dir, size[2], "the synced end follows index 3, the header says 2");
    free(copy);

    /* The damaged file was left alone and the lock released: repaired, it opens. */
    CHECK_INT_EQ(file_size(log), (long)len);
    write_whole(log, full, len);
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    close_opened(&o);
    free(full);
}

/* A log cut below its synced mark (an operator's mistake, a bad disk) is
 * damage naming the file and both offsets, never a torn tail; and so is a
 * log that is missing or has lost its header once meta says it has one. */
static void test_cut_short(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "cut-short");
    file_in(log, sizeof log, dir, "log");
    long size[3];
    make_three(dir, size);
    size_t len = 0;
    uint8_t *full = read_whole(log, &len);
    struct opened o;
    char expected[700];

    int failures_before = check_failures;
    for (long cut = DATA_START; cut < size[2] && check_failures == failures_before; cut++) {
        write_whole(log, full, (size_t)cut);
        CHECK_INT_EQ(open_dir(dir, &o), -1);
        snprintf(expected, sizeof expected, "%s: cut short at %ld, below the synced end %ld", log,
                 cut, size[2]);
        CHECK_STR_EQ(err, expected);
        CHECK_INT_EQ(file_size(log), cut); /* left alone */
        if (check_failures != failures_before)
            fprintf(stderr, "cut short: failed with the log cut at %ld\n", cut);
    }

    /* Cut inside the header: the slot left gives an older mark, still above. */
    write_whole(log, full, 1000);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    snprintf(expected, sizeof expected, "%s: cut short at 1000, below the synced end ", log);
    CHECK(strncmp(err, expected, strlen(expected)) == 0);

    /* Cut to nothing, or gone: meta says the log was created with a header. */
    write_whole(log, full, 0);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    snprintf(expected, sizeof expected, "%s: cut short at 0, inside the header", log);
    CHECK_STR_EQ(err, expected);
    CHECK_INT_EQ(unlink(log), 0);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    snprintf(expected, sizeof expected, "%s is missing (%s/meta says it was created)", log, dir);
    CHECK_STR_EQ(err, expected);

    write_whole(log, full, len);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    close_opened(&o);
    free(full);
}

/* Three entries synced, then four appended in one write and never synced;
 * each of those is 9000 bytes, more than two pages. */
static void four_unsynced(struct wal *w, void *arg)
{
    (void)arg;
    append_text(w, 1, "s1");
    append_text(w, 1, "s2");
    append_text(w, 2, "s3");
    struct raft_entry batch[4];
    for (int i = 0; i < 4; i++) {
        batch[i] = (struct raft_entry){.term = 2,
                                       .index = (uint64_t)(4 + i),
                                       .type = RAFT_ENTRY_COMMAND,
                                       .len = 9000,
                                       .data = malloc(9000)};
        memset(batch[i].data, 'a' + i, 9000);
    }
    CHECK_INT_EQ(wal_append(w, batch, 4, err, sizeof err), 0);
    for (int i = 0; i < 4; i++)
        free(batch[i].data);
}

/* A power cut while unsynced records were being written: later pages reached
 * the disk, an earlier one did not. The node starts with every synced entry
 * and the unsynced ones before the hole; the rest is dropped. */
static void test_unsynced_hole(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "hole");
    file_in(log, sizeof log, dir, "log");
    run_then_crash(dir, four_unsynced, NULL);
    long synced = DATA_START + 3 * REC + 6;
    long rec[5]; /* rec[i]: where unsynced record i (index 4 + i) starts; rec[4]: the end */
    for (int i = 0; i <= 4; i++)
        rec[i] = synced + i * (REC + 9000);
    size_t len = 0;
    uint8_t *full = read_whole(log, &len);
    CHECK(full != NULL && (long)len >= rec[4]);
    CHECK_INT_EQ(slot_end(full, newest_slot(full)), synced);

    /* lost: the page lost, keep: entries expected back. */
    struct {
        long lost;
        size_t keep;
    } cases[] = {
        {(rec[1] / 4096 + 1) * 4096, 4}, /* inside record 5 */
        {(rec[2] / 4096) * 4096, 4},     /* record 5's end and record 6's header */
        {(rec[2] / 4096 + 1) * 4096, 5}, /* inside record 6 */
        {(synced / 4096 + 1) * 4096, 3}, /* inside record 4 */
        {DATA_START, 0},                 /* the page of records 1-3: synced, so damage */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, full, len);
        memset(copy + cases[c].lost, 0, 4096);
        write_whole(log, copy, len);
        free(copy);
        struct opened o;
        if (cases[c].keep == 0) {
            expect_damage(dir, DATA_START, "bad magic");
            continue;
        }
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, cases[c].keep);
        CHECK(o.n >= 3 && data_is(&o.entries[0], "s1") && data_is(&o.entries[2], "s3"));
        for (size_t i = 3; i < o.n; i++)
            CHECK(o.entries[i].len == 9000 && o.entries[i].data[8999] == 'a' + (int)(i - 3));
        CHECK_INT_EQ(file_size(log), rec[cases[c].keep - 3]);
        append_text(o.w, 3, "next");
        close_opened(&o);
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, cases[c].keep + 1);
        CHECK(o.n == cases[c].keep + 1 && data_is(&o.entries[o.n - 1], "next"));
        close_opened(&o);
    }
    free(full);
}

/* A value holding a well-formed record, stored in an unsynced entry, or
 * (*arg true) in a synced entry followed by an unsynced one. */
static void stored_record(struct wal *w, void *arg)
{
    bool synced_carrier = *(const bool *)arg;
    char value[400];
    uint8_t inner[200];
    append_text(w, 1, "a");
    append_text(w, 1, "b");
    /* The carrier is entry 3; the record inside it claims index 3 (or 4). */
    size_t n = encode_record(inner, 1, synced_carrier ? 4 : 3, "smuggled");
    memset(value, 'v', sizeof value);
    memcpy(value + 40, inner, n);
    struct raft_entry e = {.term = 1, .index = 3, .type = RAFT_ENTRY_COMMAND, .len = 198};
    e.data = (uint8_t *)value;
    CHECK_INT_EQ(wal_append(w, &e, 1, err, sizeof err), 0);
    if (synced_carrier) {
        CHECK_INT_EQ(wal_sync(w, err, sizeof err), 0);
        e.index = 4; /* carries a record too, claiming index 5 */
        n = encode_record(inner, 1, 5, "smuggled");
        memcpy(value + 40, inner, n);
        value[0] = 'w';
        CHECK_INT_EQ(wal_append(w, &e, 1, err, sizeof err), 0);
    }
}

/* No stored value changes what recovery does: a value holding a well-formed
 * record, then a torn last record, reopens with every synced entry (before
 * the synced mark: "damaged at offset 78 (length 198 past end of file)"). */
static void test_stored_record(void)
{
    char dir[256], log[300];
    long start = DATA_START + 2 * REC + 2; /* the last record, 29 + 198 bytes */
    for (int variant = 0; variant < 2; variant++) {
        sub_dir(dir, sizeof dir, variant == 0 ? "stored-torn" : "stored-synced");
        file_in(log, sizeof log, dir, "log");
        bool synced_carrier = variant == 1;
        run_then_crash(dir, stored_record, &synced_carrier);
        if (variant == 1)
            start += REC + 198;
        size_t len = 0;
        uint8_t *full = read_whole(log, &len);
        CHECK(full != NULL && (long)len >= start + REC + 198);
        size_t keep = variant == 0 ? 2 : 3;

        int failures_before = check_failures;
        for (long cut = start; cut < start + REC + 198 && check_failures == failures_before;
             cut++) {
            write_whole(log, full, (size_t)cut);
            struct opened o;
            CHECK_INT_EQ(open_dir(dir, &o), 0);
            CHECK_INT_EQ(o.n, keep);
            if (o.n == 3)
                CHECK(o.entries[2].len == 198 && o.entries[2].data[40] == 0x52 &&
                      o.entries[2].data[197] == 'v');
            CHECK_INT_EQ(file_size(log), start);
            close_opened(&o);
            if (check_failures != failures_before)
                fprintf(stderr, "stored record, variant %d: failed with the log cut at %ld\n",
                        variant, cut);
        }
        /* Untorn, everything is there. */
        write_whole(log, full, len);
        struct opened o;
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, keep + 1);
        close_opened(&o);
        free(full);
    }
}

/* A torn header slot leaves the other one: its mark is older, and the
 * records after it are read as a tail that continues the log. */
static void test_header_slots(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "header");
    file_in(log, sizeof log, dir, "log");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    append_text(o.w, 1, "one");
    append_text(o.w, 1, "two");
    append_text(o.w, 1, "three");
    close_opened(&o);
    size_t len = 0;
    uint8_t *full = read_whole(log, &len);
    CHECK(full != NULL && (long)len == DATA_START + 3 * REC + 11);
    int newest = newest_slot(full);
    CHECK_INT_EQ(slot_end(full, newest), (long)len);
    CHECK_INT_EQ(slot_end(full, 1 - newest), DATA_START + 2 * REC + 6);
    CHECK_INT_EQ(slot_seq(full, newest), slot_seq(full, 1 - newest) + 1);

    for (int torn = 0; torn < 2; torn++) {
        write_whole(log, full, len);
        uint8_t junk[32];
        memset(junk, 0xa5, sizeof junk);
        int fd = open(log, O_RDWR);
        CHECK(fd >= 0 && pwrite(fd, junk, sizeof junk, torn * SLOT_STRIDE + 30) == 32);
        close(fd);
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, 3);
        CHECK(o.n == 3 && data_is(&o.entries[2], "three"));
        append_text(o.w, 2, "four"); /* goes on writing slots in turn */
        append_text(o.w, 2, "five");
        close_opened(&o);
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, 5);
        close_opened(&o);
    }

    /* The newest slot torn, and the log cut between the two marks: a torn
     * tail as far as the disk can tell. */
    write_whole(log, full, len - 2);
    xor_byte(log, newest * SLOT_STRIDE + 20, 0x10);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 2);
    close_opened(&o);

    /* Both slots bad: refused. */
    write_whole(log, full, len);
    xor_byte(log, 20, 0x10);
    xor_byte(log, SLOT_STRIDE + 20, 0x10);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    char expected[400];
    snprintf(expected, sizeof expected, "%s: damaged at offset 0 (no valid header slot)", log);
    CHECK_STR_EQ(err, expected);
    free(full);
}

/* Give the two 64-byte slots at a and b in path the largest sequence
 * numbers of their parities (slot a holds the even ones), the newer one
 * staying the newer, and reseal them (the checksum at 60). */
static void slots_seq_max(const char *path, long a, long b)
{
    size_t len = 0;
    uint8_t *data = read_whole(path, &len);
    CHECK(data != NULL && (long)len >= b + 64);
    if (data == NULL || (long)len < b + 64) {
        free(data);
        return;
    }
    bool b_newer = get_le(data + b + 8, 8) > get_le(data + a + 8, 8);
    uint64_t seq_a = b_newer ? UINT64_MAX - 3 : UINT64_MAX - 1;
    put_le(data + a + 8, seq_a, 8);
    put_le(data + b + 8, b_newer ? UINT64_MAX : UINT64_MAX - 2, 8);
    put_le(data + a + 60, crc32c(0, data + a, 60), 4);
    put_le(data + b + 60, crc32c(0, data + b, 60), 4);
    write_whole(path, data, len);
    free(data);
}

/* Slots of meta and of the log's header with good checksums and the largest
 * sequence numbers: the slots written after them, from seq 0 on, are the
 * newer at the next open (fuzz_datadir found them lost). */
static void test_slot_seq_max(void)
{
    char dir[256], meta[300], log[300];
    sub_dir(dir, sizeof dir, "seq-max");
    file_in(meta, sizeof meta, dir, "meta");
    file_in(log, sizeof log, dir, "log");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 1, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 2, 2, err, sizeof err), 0);
    append_text(o.w, 1, "one");
    append_text(o.w, 1, "two");
    append_text(o.w, 1, "three");
    close_opened(&o);

    /* Terms and votes saved after the open are what the next open gives. */
    slots_seq_max(meta, 0, 64);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 2);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 7, 3, err, sizeof err), 0);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 7);
    CHECK_INT_EQ(o.vote, 3);
    CHECK_INT_EQ(wal_save_hard_state(o.w, 8, 1, err, sizeof err), 0);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.term, 8);
    close_opened(&o);

    /* A truncation: the next open reads the log as it was cut. */
    slots_seq_max(log, 0, SLOT_STRIDE);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    CHECK_INT_EQ(wal_truncate(o.w, 2, err, sizeof err), 0);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 1);
    CHECK(o.n == 1 && data_is(&o.entries[0], "one"));
    if (o.w != NULL)
        append_text(o.w, 2, "two again");
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 2);
    CHECK(o.n == 2 && data_is(&o.entries[1], "two again"));
    close_opened(&o);

    /* A slot of the wrong parity is no slot: the older slot's place given
     * a newer seq of the newer one's parity (and another term). */
    size_t len = 0;
    uint8_t *data = read_whole(meta, &len);
    CHECK(data != NULL && len == 128);
    if (data != NULL && len == 128) {
        long newer = get_le(data + 72, 8) > get_le(data + 8, 8) ? 64 : 0, older = 64 - newer;
        memcpy(data + older, data + newer, 64);
        put_le(data + older + 8, get_le(data + newer + 8, 8) + 2, 8);
        put_le(data + older + 16, 99, 8);
        put_le(data + older + 60, crc32c(0, data + older, 60), 4);
        write_whole(meta, data, len);
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.term, 8);
        close_opened(&o);
        memset(data + newer, 0, 64);
        write_whole(meta, data, len);
        CHECK_INT_EQ(open_dir(dir, &o), -1);
    }
    free(data);
}

/* Five entries of term 1, each synced; truncate from 3; "THREE" of term 2,
 * the same length as "three", appended and not synced; the process dies. */
static void truncate_then_crash(struct wal *w, void *arg)
{
    (void)arg;
    const char *texts[] = {"one", "two", "three", "four", "five"};
    for (int i = 0; i < 5; i++)
        append_text(w, 1, texts[i]);
    CHECK_INT_EQ(wal_truncate(w, 3, err, sizeof err), 0);
    append_unsynced(w, 2, "THREE");
}

static void five_synced(struct wal *w, void *arg)
{
    (void)arg;
    const char *texts[] = {"one", "two", "three", "four", "five"};
    for (int i = 0; i < 5; i++)
        append_text(w, 1, texts[i]);
}

/* A truncated record never comes back after a new one. */
static void test_truncate_crash(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "truncate-crash");
    file_in(log, sizeof log, dir, "log");
    long cut = DATA_START + 2 * REC + 6; /* where "three" was, and "THREE" is */
    long end = cut + 3 * REC + 13;       /* where "five" ended */

    /* The process dies after the truncation and the new append. */
    run_then_crash(dir, truncate_then_crash, NULL);
    size_t len = 0;
    uint8_t *after = read_whole(log, &len);
    CHECK(after != NULL && (long)len >= cut + REC + 5);
    CHECK_INT_EQ(slot_end(after, newest_slot(after)), cut); /* the mark came down */
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    CHECK(o.n == 3 && data_is(&o.entries[2], "THREE") && o.entries[2].term == 2);
    close_opened(&o);

    /* If the cut had not reached the disk (wal_truncate syncs it, so it
     * does), "four" would sit right after "THREE" with the next index: its
     * term going down ends the log there. */
    char dir2[256], log2[300];
    sub_dir(dir2, sizeof dir2, "truncate-crash-before");
    file_in(log2, sizeof log2, dir2, "log");
    run_then_crash(dir2, five_synced, NULL);
    size_t before_len;
    uint8_t *before = read_whole(log2, &before_len);
    CHECK(before != NULL && (long)before_len >= end);
    uint8_t *mixed = malloc((size_t)end);
    memcpy(mixed, before, (size_t)end);
    memcpy(mixed, after, (size_t)(cut + REC + 5)); /* lowered mark, "THREE" */
    write_whole(log, mixed, (size_t)end);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    CHECK(o.n == 3 && data_is(&o.entries[2], "THREE"));
    CHECK_INT_EQ(file_size(log), cut + REC + 5);
    close_opened(&o);

    /* The mark lowered but the cut lost, and no new record: the old records
     * are an intact tail, as if the truncation had not happened. */
    memcpy(mixed, before, (size_t)end);
    memcpy(mixed, after, (size_t)DATA_START);
    write_whole(log, mixed, (size_t)end);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 5);
    CHECK(o.n == 5 && data_is(&o.entries[4], "five") && o.entries[4].term == 1);
    close_opened(&o);
    free(mixed);
    free(before);
    free(after);
}

/* A meta file as the code before the synced mark wrote it. */
static void write_old_meta(const char *dir, uint64_t term, uint32_t vote)
{
    uint8_t slots[128] = {0};
    put_le(slots, 0x4d564b52u, 4); /* "RKVM" */
    put_le(slots + 4, 1, 4);
    put_le(slots + 16, term, 8);
    put_le(slots + 24, vote, 4);
    put_le(slots + 60, crc32c(0, slots, 60), 4);
    char meta[300];
    file_in(meta, sizeof meta, dir, "meta");
    write_whole(meta, slots, sizeof slots);
}

/* Logs written before the synced mark (records from offset 0, no header) are
 * read as before and converted. */
static void test_old_log(void)
{
    char dir[256], log[300], tmp[300];
    uint8_t old[1024];
    size_t size[3];
    size[0] = encode_record(old, 1, 1, "one");
    size[1] = size[0] + encode_record(old + size[0], 1, 2, "two");
    size[2] = size[1] + encode_record(old + size[1], 2, 3, "the third entry");
    struct opened o;

    /* A clean old log, and one torn in its last record with zeros ahead; each
     * also with a log.tmp left by a crash in the middle of a conversion. */
    for (int variant = 0; variant < 4; variant++) {
        char name[64];
        snprintf(name, sizeof name, "old-%d", variant);
        sub_dir(dir, sizeof dir, name);
        file_in(log, sizeof log, dir, "log");
        file_in(tmp, sizeof tmp, dir, "log.tmp");
        CHECK_INT_EQ(mkdir(dir, 0755), 0);
        write_old_meta(dir, 5, 2);
        bool torn = variant % 2 == 1;
        uint8_t file[4096] = {0};
        memcpy(file, old, torn ? size[2] - 4 : size[2]);
        write_whole(log, file, torn ? sizeof file : size[2]);
        if (variant >= 2)
            write_whole(tmp, old, size[1] + 10);

        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.term, 5);
        CHECK_INT_EQ(o.vote, 2);
        size_t n = torn ? 2 : 3;
        CHECK_INT_EQ(o.n, n);
        CHECK(o.n >= 2 && data_is(&o.entries[1], "two") && o.entries[1].index == 2);
        CHECK(torn || (o.n == 3 && data_is(&o.entries[2], "the third entry")));
        long converted = DATA_START + (long)size[n - 1];
        CHECK_INT_EQ(file_size(log), converted);
        CHECK_INT_EQ(file_size(tmp), -1);
        size_t len = 0;
        uint8_t *now = read_whole(log, &len);
        CHECK(now != NULL && memcmp(now, "RKVH", 4) == 0 &&
              memcmp(now + DATA_START, old, size[n - 1]) == 0);
        CHECK(now != NULL && slot_end(now, 0) == (uint64_t)converted);
        free(now);
        append_text(o.w, 6, "new");
        close_opened(&o);

        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(o.n, n + 1);
        CHECK(o.n == n + 1 && data_is(&o.entries[n], "new") && o.entries[n].index == n + 1);
        CHECK_INT_EQ(o.term, 5);
        close_opened(&o);
    }

    /* An empty old log. */
    sub_dir(dir, sizeof dir, "old-empty");
    file_in(log, sizeof log, dir, "log");
    CHECK_INT_EQ(mkdir(dir, 0755), 0);
    write_old_meta(dir, 1, 1);
    write_whole(log, old, 0);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 0);
    CHECK_INT_EQ(file_size(log), DATA_START);
    close_opened(&o);

    /* A damaged old log: refused as before, and left as it was. */
    sub_dir(dir, sizeof dir, "old-damaged");
    file_in(log, sizeof log, dir, "log");
    CHECK_INT_EQ(mkdir(dir, 0755), 0);
    write_old_meta(dir, 1, 1);
    uint8_t bad[1024];
    memcpy(bad, old, size[2]);
    bad[size[0] + REC] ^= 0x01;
    write_whole(log, bad, size[2]);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    char expected[400];
    snprintf(expected, sizeof expected, "%s: damaged at offset %zu (bad checksum)", log, size[0]);
    CHECK_STR_EQ(err, expected);
    size_t len = 0;
    uint8_t *now = read_whole(log, &len);
    CHECK(now != NULL && len == size[2] && memcmp(now, bad, len) == 0);
    free(now);

    /* An old log whose terms go down: refused, as the converted log would be
     * at the next open (fuzz_datadir found one converted, then refused). */
    sub_dir(dir, sizeof dir, "old-term-down");
    file_in(log, sizeof log, dir, "log");
    CHECK_INT_EQ(mkdir(dir, 0755), 0);
    write_old_meta(dir, 2, 1);
    size_t down = encode_record(bad, 2, 1, "one");
    down += encode_record(bad + down, 1, 2, "two");
    write_whole(log, bad, down);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    snprintf(expected, sizeof expected,
             "%s: damaged at offset %zu (term 1 below the previous record's term 2)", log, size[0]);
    CHECK_STR_EQ(err, expected);
}

static void test_lock(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "lock");
    struct opened first, second;
    CHECK_INT_EQ(open_dir(dir, &first), 0);
    CHECK_INT_EQ(open_dir(dir, &second), -1);
    CHECK(strstr(err, "in use") != NULL);
    CHECK(strstr(err, dir) != NULL);
    char pid[64];
    snprintf(pid, sizeof pid, "(pid %ld)", (long)getpid());
    CHECK(strstr(err, pid) != NULL);
    close_opened(&first);
    CHECK_INT_EQ(open_dir(dir, &second), 0);
    close_opened(&second);
}

static void test_lock_killed_child(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "lock-child");
    int ready[2];
    CHECK_INT_EQ(pipe(ready), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child < 0)
        return;
    if (child == 0) {
        close(ready[0]);
        struct opened o;
        if (open_dir(dir, &o) != 0)
            _exit(1);
        char c = 'x';
        if (write(ready[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
    CHECK_INT_EQ(poll(&pfd, 1, 10000), 1);
    char c = 0;
    CHECK_INT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);

    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    CHECK(strstr(err, "in use") != NULL);
    char pid[64];
    snprintf(pid, sizeof pid, "(pid %ld)", (long)child);
    CHECK(strstr(err, pid) != NULL);

    CHECK_INT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    CHECK_INT_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    close_opened(&o);
}

static void test_missing_parent(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "no/such/dir");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    CHECK(o.w == NULL);
    char expected[400];
    snprintf(expected, sizeof expected, "cannot create data dir %s: %s", dir, strerror(ENOENT));
    CHECK_STR_EQ(err, expected);
}

/* A process killed while its log file runs ahead with zeros: the records are
 * all there, the zeros are cut off at the next open, and appends go on. */
static void test_killed_with_zeros_ahead(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "zeros-ahead");
    file_in(log, sizeof log, dir, "log");
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child < 0)
        return;
    if (child == 0) {
        struct opened o;
        if (open_dir(dir, &o) != 0)
            _exit(1);
        for (int i = 0; i < 3; i++)
            append_text(o.w, 1, "kept");
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    int status = 0;
    CHECK_INT_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(file_size(log) > 3 * 29); /* zeros were written ahead */

    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    CHECK_INT_EQ(file_size(log), (long)wal_log_size(o.w));
    append_text(o.w, 2, "after");
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 4);
    CHECK(o.n == 4 && data_is(&o.entries[3], "after"));
    close_opened(&o);
}

/* ---------------------------------------------------------------- snapshots and the log's base */

/* Fault injection (wal_fault_hook): the k-th file operation fails, or
 * crashes the process. */
static int fault_at, fault_count;
static bool fault_crash;

static int fault_hook(const char *op)
{
    (void)op;
    if (++fault_count != fault_at)
        return 0;
    if (fault_crash)
        _exit(0);
    return 1;
}

static void fault_arm(int at, bool crash)
{
    fault_at = at;
    fault_count = 0;
    fault_crash = crash;
    wal_fault_hook = fault_hook;
}

/* Entry i holds "entry-i". */
static void entry_text(char *out, size_t outlen, uint64_t index)
{
    snprintf(out, outlen, "entry-%llu", (unsigned long long)index);
}

static void append_entries(struct wal *w, uint64_t term, uint64_t through)
{
    char text[32];
    while (wal_last_index(w) < through) {
        entry_text(text, sizeof text, wal_last_index(w) + 1);
        append_text(w, term, text);
    }
}

/* Every entry of o is entry-<index>, indexes following on from first. */
static bool entries_ok(const struct opened *o, uint64_t first)
{
    char text[32];
    for (size_t i = 0; i < o->n; i++) {
        entry_text(text, sizeof text, o->entries[i].index);
        if (o->entries[i].index != first + i || !data_is(&o->entries[i], text))
            return false;
    }
    return true;
}

static int write_snapshot(const char *dir, uint64_t index, uint64_t term)
{
    struct snapfile_writer *sw;
    if (snapfile_writer_open(dir, index, term, &sw, err, sizeof err) != 0)
        return -1;
    if (snapfile_writer_append(sw, "state", 5, err, sizeof err) != 0) {
        snapfile_writer_abort(sw);
        return -1;
    }
    return snapfile_writer_finish(sw, err, sizeof err);
}

/* A fresh dir `name` (its path into dir) holding entries 1..10 of term 1,
 * and a snapshot at 8. */
static void make_ten_and_snapshot(char *dir, size_t len, const char *name)
{
    sub_dir(dir, len, name);
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    append_entries(o.w, 1, 10);
    close_opened(&o);
    CHECK_INT_EQ(write_snapshot(dir, 8, 1), 0);
}

/* After a snapshot at 8, the log drops entries 1..8 (they outweigh 9..10);
 * reopened, it starts at 9. A small prefix is kept. */
static void test_prefix_drop(void)
{
    char dir[256], log[300];
    make_ten_and_snapshot(dir, sizeof dir, "prefix-drop");
    file_in(log, sizeof log, dir, "log");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 10);
    CHECK_INT_EQ(wal_first_index(o.w), 1);
    uint64_t si, st;
    wal_snapshot(o.w, &si, &st);
    CHECK(si == 8 && st == 1);
    CHECK_INT_EQ(wal_snapshot_taken(o.w, 8, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 9);
    CHECK_INT_EQ(wal_last_index(o.w), 10);
    CHECK_INT_EQ(wal_log_size(o.w), DATA_START + (REC + 7) + (REC + 8)); /* "entry-9", "entry-10" */
    append_entries(o.w, 1, 12);
    CHECK_INT_EQ(wal_truncate(o.w, 12, err, sizeof err), 0);
    CHECK_INT_EQ(wal_truncate(o.w, 8, err, sizeof err), -1); /* in the snapshot */
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    CHECK(o.n == 3 && entries_ok(&o, 9));
    CHECK_INT_EQ(wal_first_index(o.w), 9);
    CHECK_INT_EQ(wal_last_index(o.w), 11);
    CHECK_INT_EQ(file_size(log), DATA_START + (REC + 7) + 2 * (REC + 8));
    close_opened(&o);

    /* A snapshot at 2 of 10: the prefix is small and stays. */
    char dir2[256];
    sub_dir(dir2, sizeof dir2, "prefix-small");
    CHECK_INT_EQ(open_dir(dir2, &o), 0);
    append_entries(o.w, 1, 10);
    CHECK_INT_EQ(write_snapshot(dir2, 2, 1), 0);
    CHECK_INT_EQ(wal_snapshot_taken(o.w, 2, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 1);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir2, &o), 0);
    CHECK_INT_EQ(o.n, 10);
    CHECK(entries_ok(&o, 1));
    wal_snapshot(o.w, &si, &st);
    CHECK(si == 2 && st == 1);
    close_opened(&o);
}

/* A log that starts after the newest snapshot ends is damage; so is a log
 * cut at the front. */
static void test_log_after_snapshot(void)
{
    char dir[256], log[300], snap[400];
    make_ten_and_snapshot(dir, sizeof dir, "log-after-snapshot");
    file_in(log, sizeof log, dir, "log");
    file_in(snap, sizeof snap, dir, "snap-00000000000000000008-00000000000000000001");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(wal_snapshot_taken(o.w, 8, 1, err, sizeof err), 0);
    close_opened(&o);

    /* The snapshot gone: entries 1..8 are nowhere. */
    char moved[300];
    file_in(moved, sizeof moved, dir, "moved-away");
    CHECK_INT_EQ(rename(snap, moved), 0);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    CHECK(strstr(err, log) != NULL &&
          strstr(err, "damaged at offset 0 (the log starts after index 8, the newest snapshot "
                      "ends at 0)") != NULL);
    /* An older snapshot is no better. */
    CHECK_INT_EQ(write_snapshot(dir, 5, 1), 0);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    CHECK(strstr(err, "the log starts after index 8, the newest snapshot ends at 5") != NULL);
    CHECK_INT_EQ(rename(moved, snap), 0);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    close_opened(&o);

    /* The first record (index 9) cut off the front: record 10 where 9 should be. */
    size_t len = 0;
    uint8_t *data = read_whole(log, &len);
    CHECK(data != NULL && (long)len == DATA_START + (REC + 7) + (REC + 8));
    memmove(data + DATA_START, data + DATA_START + REC + 7, REC + 8);
    write_whole(log, data, len);
    CHECK_INT_EQ(open_dir(dir, &o), -1);
    CHECK(strstr(err, log) != NULL && strstr(err, "damaged at offset 4096 (index 10, expected 9)"));
    free(data);
}

/* Run the prefix drop in a child that crashes at its k-th file operation.
 * 1: it crashed; 0: the drop finished. */
static int drop_crash_at(const char *dir, int k)
{
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        struct opened o;
        if (open_dir(dir, &o) != 0)
            _exit(4);
        fault_arm(k, true);
        if (wal_snapshot_taken(o.w, 8, 1, err, sizeof err) != 0)
            _exit(5);
        _exit(3);
    }
    int status = 0;
    CHECK_INT_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A crash, or an error, at every file operation of dropping the prefix
 * leaves a log that with the snapshot holds every entry. */
static void test_prefix_drop_crash(void)
{
    int k;
    for (k = 1; k < 100; k++) {
        char name[64], dir[256];
        snprintf(name, sizeof name, "drop-crash-%d", k);
        make_ten_and_snapshot(dir, sizeof dir, name);
        int crashed = drop_crash_at(dir, k);
        struct opened o;
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        uint64_t first = wal_first_index(o.w);
        CHECK(first == 1 || first == 9);
        if (!crashed)
            CHECK_INT_EQ(first, 9);
        CHECK_INT_EQ(wal_last_index(o.w), 10);
        CHECK(entries_ok(&o, first));
        char tmp[300];
        file_in(tmp, sizeof tmp, dir, "log.tmp");
        CHECK_INT_EQ(file_size(tmp), -1);
        close_opened(&o);
        if (!crashed)
            break;
    }
    CHECK(k > 3 && k < 100);

    for (k = 1; k < 100; k++) {
        char name[64], dir[256];
        snprintf(name, sizeof name, "drop-error-%d", k);
        make_ten_and_snapshot(dir, sizeof dir, name);
        struct opened o;
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        fault_arm(k, false);
        int rc = wal_snapshot_taken(o.w, 8, 1, err, sizeof err);
        wal_fault_hook = NULL;
        /* The wal goes on either way: the next entry, synced, survives. */
        uint64_t first = wal_first_index(o.w);
        append_entries(o.w, 1, 11);
        close_opened(&o);
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(wal_first_index(o.w), first);
        CHECK_INT_EQ(wal_last_index(o.w), 11);
        CHECK(entries_ok(&o, first));
        close_opened(&o);
        if (rc == 0)
            break;
    }
    CHECK(k > 3 && k < 100);
}

/* The steps of a compaction off the caller's thread (wal_compact.c), with
 * appends and syncs between them as a node's loop makes them: begin, then
 * entries 11 and 12 appended and synced (compact_async_start); the copy,
 * entry 13 appended, finish and, with sync_after, the sync that renames
 * (compact_async_end). */
static int compact_async_start(struct wal *w, struct wal_compaction *job)
{
    if (wal_compact_begin(w, 8, 1, job, err, sizeof err) != 0 || !job->wanted || job->restart)
        return -1;
    append_entries(w, 1, 12);
    return wal_sync(w, err, sizeof err);
}

static int compact_async_end(struct wal *w, struct wal_compaction *job, bool sync_after)
{
    if (wal_compact_copy(job) != 0) {
        wal_compact_abandon(job);
        return -1;
    }
    /* 13 is not synced before finish: it moves to the new file unsynced. */
    char text[32];
    entry_text(text, sizeof text, 13);
    struct raft_entry e = make_entry(1, 13, text);
    int rc = wal_append(w, &e, 1, err, sizeof err);
    free(e.data);
    if (rc != 0) {
        wal_compact_abandon(job);
        return -1;
    }
    if (wal_compact_finish(w, job, err, sizeof err) != 0)
        return -1;
    return sync_after ? wal_sync(w, err, sizeof err) : 0;
}

/* The log drops its prefix while appends and syncs go on; reopened it holds
 * every entry from 9. */
static void test_compact_async(void)
{
    char dir[256], compact[300];
    make_ten_and_snapshot(dir, sizeof dir, "compact-async");
    file_in(compact, sizeof compact, dir, "log.compact");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    struct wal_compaction job;
    CHECK_INT_EQ(compact_async_start(o.w, &job), 0);
    CHECK_INT_EQ(compact_async_end(o.w, &job, false), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 9);
    CHECK_INT_EQ(wal_last_index(o.w), 13);
    CHECK(wal_unsynced(o.w));      /* the rename waits for a sync */
    CHECK(file_size(compact) > 0); /* ... and DIR/log is still the old file */
    CHECK_INT_EQ(wal_sync(o.w, err, sizeof err), 0);
    CHECK(!wal_unsynced(o.w));
    CHECK_INT_EQ(file_size(compact), -1);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 9);
    CHECK_INT_EQ(wal_last_index(o.w), 13);
    CHECK(entries_ok(&o, 9));
    close_opened(&o);

    /* The moved records are where the log says: cut from 12, append again. */
    char dir3[256];
    make_ten_and_snapshot(dir3, sizeof dir3, "compact-cut");
    CHECK_INT_EQ(open_dir(dir3, &o), 0);
    CHECK_INT_EQ(compact_async_start(o.w, &job), 0);
    CHECK_INT_EQ(compact_async_end(o.w, &job, true), 0);
    CHECK_INT_EQ(wal_truncate(o.w, 12, err, sizeof err), 0);
    append_entries(o.w, 1, 14);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir3, &o), 0);
    CHECK_INT_EQ(wal_last_index(o.w), 14);
    CHECK(entries_ok(&o, 9));
    close_opened(&o);

    /* A truncation between begin and finish makes the copy stale: dropped,
     * the log keeps its prefix. */
    char dir2[256];
    make_ten_and_snapshot(dir2, sizeof dir2, "compact-stale");
    CHECK_INT_EQ(open_dir(dir2, &o), 0);
    CHECK_INT_EQ(wal_compact_begin(o.w, 8, 1, &job, err, sizeof err), 0);
    CHECK(job.wanted);
    CHECK_INT_EQ(wal_compact_copy(&job), 0);
    CHECK_INT_EQ(wal_truncate(o.w, 10, err, sizeof err), 0);
    CHECK_INT_EQ(wal_compact_finish(o.w, &job, err, sizeof err), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 1);
    CHECK_INT_EQ(wal_last_index(o.w), 9);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir2, &o), 0);
    CHECK_INT_EQ(wal_last_index(o.w), 9);
    CHECK(entries_ok(&o, 1));
    close_opened(&o);
}

/* A crash at every file operation from the copy to the sync that renames:
 * reopened, the log fits the snapshot and holds every entry synced before
 * (through 12), in order. */
static void test_compact_async_crash(void)
{
    int k;
    for (k = 1; k < 200; k++) {
        char name[64], dir[256];
        snprintf(name, sizeof name, "compact-crash-%d", k);
        make_ten_and_snapshot(dir, sizeof dir, name);
        fflush(stdout);
        fflush(stderr);
        pid_t child = fork();
        if (child == 0) {
            struct opened c;
            struct wal_compaction job;
            if (open_dir(dir, &c) != 0 || compact_async_start(c.w, &job) != 0)
                _exit(4);
            fault_arm(k, true);
            _exit(compact_async_end(c.w, &job, true) == 0 ? 3 : 5);
        }
        int status = 0;
        CHECK_INT_EQ(waitpid(child, &status, 0), child);
        CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3));
        bool crashed = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        struct opened o;
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        uint64_t first = wal_first_index(o.w);
        CHECK(first == 1 || first == 9);
        if (!crashed)
            CHECK_INT_EQ(first, 9);
        CHECK(wal_last_index(o.w) >= 12); /* synced before the crash */
        CHECK(entries_ok(&o, first));
        close_opened(&o);
        if (!crashed)
            break;
    }
    CHECK(k > 5 && k < 200);
}

/* An error at every file operation from the copy to the renaming sync: the
 * wal goes on as a node's does after a failed write (it forgets what was
 * not synced, writes it again and syncs); reopened, the log fits the
 * snapshot and holds every entry. */
static void test_compact_async_errors(void)
{
    int k;
    for (k = 1; k < 200; k++) {
        char name[64], dir[256];
        snprintf(name, sizeof name, "compact-error-%d", k);
        make_ten_and_snapshot(dir, sizeof dir, name);
        struct opened o;
        struct wal_compaction job;
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK_INT_EQ(compact_async_start(o.w, &job), 0);
        fault_arm(k, false);
        int rc = compact_async_end(o.w, &job, true);
        wal_fault_hook = NULL;
        if (rc != 0) {
            CHECK_INT_EQ(wal_reset_to_synced(o.w, err, sizeof err), 0);
            append_entries(o.w, 1, 13);
        }
        append_entries(o.w, 1, 14);
        CHECK_INT_EQ(wal_sync(o.w, err, sizeof err), 0);
        uint64_t first = wal_first_index(o.w);
        close_opened(&o);
        CHECK_INT_EQ(open_dir(dir, &o), 0);
        CHECK(first == 1 || first == 9);
        CHECK_INT_EQ(wal_first_index(o.w), first);
        CHECK_INT_EQ(wal_last_index(o.w), 14);
        CHECK(entries_ok(&o, first));
        close_opened(&o);
        if (rc == 0)
            break;
    }
    CHECK(k > 5 && k < 200);
}

/* Receive the file of a snapshot (index, term) made in a leader dir into dir. */
static void receive_snapshot(const char *dir, uint64_t index, uint64_t term)
{
    char leader[256], path[300];
    sub_dir(leader, sizeof leader, "leader");
    mkdir(leader, 0755);
    CHECK_INT_EQ(write_snapshot(leader, index, term), 0);
    CHECK_INT_EQ(snapfile_path(path, sizeof path, leader, index, term, err, sizeof err), 0);
    size_t len = 0;
    uint8_t *file = read_whole(path, &len);
    CHECK(file != NULL && len > 10);
    CHECK_INT_EQ(snapfile_recv_chunk(dir, 0, file, 10, false, err, sizeof err), 0);
    CHECK_INT_EQ(snapfile_recv_chunk(dir, 10, file + 10, len - 10, true, err, sizeof err), 0);
    free(file);
    unlink(path);
}

/* A follower installs a snapshot past its log: the log starts afresh after
 * it. One that holds the snapshot's last entry keeps what follows. */
static void test_follower_install(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "follower-past");
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    append_entries(o.w, 1, 3);
    receive_snapshot(dir, 10, 2);
    CHECK_INT_EQ(wal_install_snapshot(o.w, 10, 2, err, sizeof err), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 11);
    CHECK_INT_EQ(wal_last_index(o.w), 10);
    CHECK_INT_EQ(wal_install_snapshot(o.w, 10, 2, err, sizeof err), 0); /* asked again */
    CHECK_INT_EQ(wal_install_snapshot(o.w, 9, 2, err, sizeof err), -1);
    append_entries(o.w, 2, 11);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    uint64_t si, st;
    wal_snapshot(o.w, &si, &st);
    CHECK(si == 10 && st == 2);
    CHECK_INT_EQ(o.n, 1);
    CHECK(o.n == 1 && entries_ok(&o, 11) && o.entries[0].term == 2);
    close_opened(&o);

    /* It holds entry 10 of term 1 and more: 11 and 12 are kept. */
    char dir2[256];
    sub_dir(dir2, sizeof dir2, "follower-holds");
    CHECK_INT_EQ(open_dir(dir2, &o), 0);
    append_entries(o.w, 1, 12);
    receive_snapshot(dir2, 10, 1);
    CHECK_INT_EQ(wal_install_snapshot(o.w, 10, 1, err, sizeof err), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 11);
    CHECK_INT_EQ(wal_last_index(o.w), 12);
    close_opened(&o);
    CHECK_INT_EQ(open_dir(dir2, &o), 0);
    CHECK_INT_EQ(o.n, 2);
    CHECK(entries_ok(&o, 11));
    close_opened(&o);

    /* Entry 10 of another term: the whole log goes. */
    char dir3[256];
    sub_dir(dir3, sizeof dir3, "follower-conflict");
    CHECK_INT_EQ(open_dir(dir3, &o), 0);
    append_entries(o.w, 1, 12);
    receive_snapshot(dir3, 10, 2);
    CHECK_INT_EQ(wal_install_snapshot(o.w, 10, 2, err, sizeof err), 0);
    CHECK_INT_EQ(wal_first_index(o.w), 11);
    CHECK_INT_EQ(wal_last_index(o.w), 10);
    close_opened(&o);

    /* The node stopped between the snapshot's rename and the log's rewrite:
     * the open finishes the job. */
    char dir4[256];
    sub_dir(dir4, sizeof dir4, "follower-stopped");
    CHECK_INT_EQ(open_dir(dir4, &o), 0);
    append_entries(o.w, 1, 12);
    close_opened(&o);
    CHECK_INT_EQ(write_snapshot(dir4, 10, 2), 0);
    CHECK_INT_EQ(open_dir(dir4, &o), 0);
    CHECK_INT_EQ(o.n, 0);
    CHECK_INT_EQ(wal_first_index(o.w), 11);
    close_opened(&o);

    /* An error at every step of the install: the entry after the snapshot
     * can be appended once the snapshot is there (the log then restarts),
     * and a reopen agrees. */
    for (int k = 1; k < 100; k++) {
        char name[64], d[256];
        snprintf(name, sizeof name, "follower-error-%d", k);
        sub_dir(d, sizeof d, name);
        CHECK_INT_EQ(open_dir(d, &o), 0);
        append_entries(o.w, 1, 3);
        receive_snapshot(d, 10, 2);
        fault_arm(k, false);
        int rc = wal_install_snapshot(o.w, 10, 2, err, sizeof err);
        wal_fault_hook = NULL;
        wal_snapshot(o.w, &si, &st);
        if (si == 10) {
            char text[32];
            entry_text(text, sizeof text, 11);
            struct raft_entry e = make_entry(2, 11, text);
            CHECK_INT_EQ(wal_append(o.w, &e, 1, err, sizeof err), 0);
            CHECK_INT_EQ(wal_sync(o.w, err, sizeof err), 0);
            free(e.data);
        }
        close_opened(&o);
        CHECK_INT_EQ(open_dir(d, &o), 0);
        uint64_t si2, st2;
        wal_snapshot(o.w, &si2, &st2);
        CHECK_INT_EQ(si2, si);
        if (si == 10) {
            CHECK_INT_EQ(o.n, 1);
            CHECK(entries_ok(&o, 11));
        } else {
            CHECK_INT_EQ(o.n, 3);
            CHECK(entries_ok(&o, 1));
        }
        close_opened(&o);
        if (rc == 0)
            break;
        CHECK(k < 99);
    }
}

int main(void)
{
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_crc32c();
    test_round_trip();
    test_many_records();
    test_truncate_then_append();
    test_meta_slots();
    test_torn_tail();
    test_damage();
    test_cut_short();
    test_unsynced_hole();
    test_stored_record();
    test_header_slots();
    test_slot_seq_max();
    test_truncate_crash();
    test_old_log();
    test_lock();
    test_lock_killed_child();
    test_killed_with_zeros_ahead();
    test_missing_parent();
    test_prefix_drop();
    test_log_after_snapshot();
    test_prefix_drop_crash();
    test_compact_async();
    test_compact_async_crash();
    test_compact_async_errors();
    test_follower_install();
    CHECK(nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
    CHECK_DONE();
}

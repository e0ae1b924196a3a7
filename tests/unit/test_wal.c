/* test_wal.c - the data dir: hard state, log records, torn tails, damage, lock. */
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
#include "wal.h"

static char root[] = "/tmp/raftkv-test-wal-XXXXXX";
static char err[512];

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
    size_t len;
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

static void test_torn_tail(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "torn");
    file_in(log, sizeof log, dir, "log");
    long size[3];
    make_three(dir, size);
    size_t len;
    uint8_t *full = read_whole(log, &len);
    CHECK(full != NULL && (long)len == size[2]);

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

    /* Zeros after the last record (a file extended but never written): dropped. */
    uint8_t *padded = calloc(1, len + 4096);
    memcpy(padded, full, len);
    write_whole(log, padded, len + 4096);
    struct opened o;
    CHECK_INT_EQ(open_dir(dir, &o), 0);
    CHECK_INT_EQ(o.n, 3);
    CHECK_INT_EQ(file_size(log), size[2]);
    close_opened(&o);

    /* The last record's bytes zeroed: dropped. */
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

static void test_damage(void)
{
    char dir[256], log[300];
    sub_dir(dir, sizeof dir, "damage");
    file_in(log, sizeof log, dir, "log");
    long size[3];
    make_three(dir, size);
    size_t len;
    uint8_t *full = read_whole(log, &len);

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

    /* Middle record's length: past the end of the file, yet records follow. */
    write_whole(log, full, len);
    xor_byte(log, size[0] + 6, 0x01);
    expect_damage(dir, size[0], "length 65542 past end of file");

    /* First record. */
    write_whole(log, full, len);
    xor_byte(log, 12, 0x01);
    expect_damage(dir, 0, "bad checksum");

    /* An index out of order, with a good checksum. */
    write_whole(log, full, len);
    uint8_t *copy = malloc(len);
    memcpy(copy, full, len);
    uint8_t *rec = copy + size[0];
    rec[20] = 7;
    uint32_t crc = crc32c(0, rec, 8);
    crc = crc32c(crc, rec + 12, 17);
    crc = crc32c(crc, rec + 29, (size_t)(size[1] - size[0] - 29));
    for (int i = 0; i < 4; i++)
        rec[8 + i] = (uint8_t)(crc >> (8 * i));
    write_whole(log, copy, len);
    expect_damage(dir, size[0], "index 7, expected 2");
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
    test_lock();
    test_lock_killed_child();
    test_killed_with_zeros_ahead();
    test_missing_parent();
    CHECK(nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
    CHECK_DONE();
}

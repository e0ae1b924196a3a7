/* test_snapshot_file.c - snapshot files (src/snapshot_file.c): round trip,
 * chunked reading and receiving, damage at every byte, leftover temporary
 * files, newest wins, old ones removed, and a crash or an I/O error at every
 * step of writing and installing one. Real files under a temp dir, real
 * fsync. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "snapshot_file.h"
#include "wal.h"
#include "wal_internal.h"

static char root[] = "/tmp/raftkv-test-snapfile-XXXXXX";
static char err[512];

/* ---------------------------------------------------------------- helpers */

static void sub_dir(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/%s", root, name);
    mkdir(out, 0755);
}

static bool exists(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void snap_name(char *out, size_t outlen, uint64_t index, uint64_t term)
{
    snprintf(out, outlen, "snap-%020llu-%020llu", (unsigned long long)index,
             (unsigned long long)term);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
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
    CHECK_INT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* payload[i] = a byte depending on i and seed */
static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 8));
}

/* Write a snapshot of n bytes (seed) in chunks of 7. */
static int write_snapshot(const char *dir, uint64_t index, uint64_t term, size_t n, unsigned seed)
{
    uint8_t *p = malloc(n + 1);
    fill(p, n, seed);
    struct snapfile_writer *sw;
    int rc = snapfile_writer_open(dir, index, term, &sw, err, sizeof err);
    for (size_t off = 0; rc == 0 && off < n; off += 7)
        rc = snapfile_writer_append(sw, p + off, n - off < 7 ? n - off : 7, err, sizeof err);
    if (rc == 0)
        rc = snapfile_writer_finish(sw, err, sizeof err);
    else if (sw != NULL)
        snapfile_writer_abort(sw);
    free(p);
    return rc;
}

static bool payload_is(const char *dir, uint64_t index, uint64_t term, size_t n, unsigned seed)
{
    uint8_t *got;
    uint64_t len;
    if (snapfile_load(dir, index, term, &got, &len, err, sizeof err) != 0)
        return false;
    uint8_t *want = malloc(n + 1);
    fill(want, n, seed);
    bool same = len == n && (n == 0 || memcmp(got, want, n) == 0);
    free(want);
    free(got);
    return same;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Fault injection: the k-th file operation (counting from 1) crashes the
 * process or fails. */
static int fault_at;
static int fault_count;
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

static void fault_off(void)
{
    wal_fault_hook = NULL;
}

/* Run fn in a child that crashes at its k-th file operation. 1: it crashed
 * there; 0: fn finished first (exit 3); -1: fn failed. */
static int crash_at(int k, int (*fn)(const char *dir), const char *dir)
{
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child < 0)
        return -1;
    if (child == 0) {
        fault_arm(k, true);
        int rc = fn(dir);
        if (rc != 0)
            fprintf(stderr, "child: %s\n", err);
        _exit(rc == 0 ? 3 : 4);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
        return -1;
    if (WEXITSTATUS(status) == 0)
        return 1;
    return WEXITSTATUS(status) == 3 ? 0 : -1;
}

/* ---------------------------------------------------------------- tests */

static void test_round_trip(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "round-trip");
    CHECK_INT_EQ(write_snapshot(dir, 7, 3, 1000, 1), 0);
    char name[64];
    snap_name(name, sizeof name, 7, 3);
    CHECK(exists(dir, name));
    CHECK(!exists(dir, "snapshot.tmp"));
    CHECK(payload_is(dir, 7, 3, 1000, 1));

    uint64_t index, term;
    CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), 0);
    CHECK_INT_EQ(index, 7);
    CHECK_INT_EQ(term, 3);

    /* The leader's chunks are the file's bytes; received at their offsets
     * and installed, they give the same snapshot. */
    char other[256];
    sub_dir(other, sizeof other, "round-trip-follower");
    struct snapfile_reader *r;
    CHECK_INT_EQ(snapfile_reader_open(dir, 7, 3, &r, err, sizeof err), 0);
    CHECK_INT_EQ(snapfile_reader_size(r), SNAPFILE_HEADER_SIZE + 1000);
    uint8_t buf[100];
    uint64_t off = 0;
    for (;;) {
        size_t got;
        CHECK_INT_EQ(snapfile_read_at(r, off, buf, sizeof buf, &got, err, sizeof err), 0);
        bool done = off + got == snapfile_reader_size(r);
        CHECK_INT_EQ(snapfile_recv_chunk(other, off, buf, got, done, err, sizeof err), 0);
        off += got;
        if (done || got == 0)
            break;
    }
    snapfile_reader_close(r);
    CHECK_INT_EQ(snapfile_recv_install(other, 7, 3, err, sizeof err), 0);
    CHECK(payload_is(other, 7, 3, 1000, 1));
    CHECK(!exists(other, "snapshot-recv.tmp"));

    /* A resent chunk at an earlier offset cuts off what followed; a chunk
     * past the end is refused. */
    CHECK_INT_EQ(snapfile_recv_chunk(other, 0, buf, 50, false, err, sizeof err), 0);
    CHECK_INT_EQ(snapfile_recv_chunk(other, 10, buf, 5, false, err, sizeof err), 0);
    CHECK_INT_EQ(snapfile_recv_chunk(other, 16, buf, 5, false, err, sizeof err), -1);
    CHECK(strstr(err, "snapshot-recv.tmp") != NULL && strstr(err, "offset 16") != NULL);
    /* Installing it as another snapshot is refused (header). */
    CHECK_INT_EQ(snapfile_recv_install(other, 8, 3, err, sizeof err), -1);
    CHECK(strstr(err, "snapshot-recv.tmp") != NULL);

    /* An empty payload. */
    CHECK_INT_EQ(write_snapshot(dir, 9, 3, 0, 0), 0);
    CHECK(payload_is(dir, 9, 3, 0, 0));
}

/* Every byte of a small snapshot flipped, and every shorter length, is
 * refused with the file and an offset. */
static void test_damage_every_byte(void)
{
    char dir[256], path[600], name[64];
    sub_dir(dir, sizeof dir, "damage");
    CHECK_INT_EQ(write_snapshot(dir, 5, 2, 40, 9), 0);
    snap_name(name, sizeof name, 5, 2);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    uint8_t *good = read_whole(path, &len);
    CHECK_INT_EQ(len, SNAPFILE_HEADER_SIZE + 40);
    uint8_t *bad = malloc(len + 1);
    uint64_t index, term;
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, good, len);
        bad[i] ^= 0x10;
        write_whole(path, bad, len);
        err[0] = '\0';
        CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), -1);
        const char *want = i < 4    ? "damaged at offset 0 (bad magic)"
                           : i < 8  ? "damaged at offset 4"
                           : i < 64 ? "damaged at offset 0 (bad header checksum)"
                                    : "damaged at offset 64 (bad checksum of the payload";
        if (strstr(err, want) == NULL || strstr(err, path) == NULL)
            fprintf(stderr, "byte %zu: %s\n", i, err);
        CHECK(strstr(err, want) != NULL && strstr(err, path) != NULL);
    }
    for (size_t n = 0; n < len; n++) {
        write_whole(path, good, n);
        CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), -1);
        CHECK(strstr(err, path) != NULL && strstr(err, "cut short at") != NULL);
    }
    memcpy(bad, good, len);
    bad[len] = 0;
    write_whole(path, bad, len + 1);
    CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), -1);
    CHECK(strstr(err, "damaged at offset 104") != NULL);

    /* A header claiming another index than the name. */
    write_whole(path, good, len);
    char renamed[600];
    snap_name(name, sizeof name, 6, 2);
    snprintf(renamed, sizeof renamed, "%s/%s", dir, name);
    CHECK_INT_EQ(rename(path, renamed), 0);
    CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), -1);
    CHECK(strstr(err, "damaged at offset 8") != NULL);
    CHECK_INT_EQ(rename(renamed, path), 0);
    CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), 0);

    /* A damaged newest snapshot stops the open, though an older one is
     * intact: the log may start after the older one. */
    CHECK_INT_EQ(write_snapshot(dir, 9, 2, 40, 1), 0);
    snap_name(name, sizeof name, 9, 2);
    char newest[600];
    snprintf(newest, sizeof newest, "%s/%s", dir, name);
    size_t nlen;
    uint8_t *n9 = read_whole(newest, &nlen);
    n9[70] ^= 1;
    write_whole(newest, n9, nlen);
    CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), -1);
    CHECK(strstr(err, newest) != NULL && strstr(err, "offset 64") != NULL);
    struct wal *w;
    uint64_t t;
    uint32_t v;
    struct raft_entry *e;
    size_t ne;
    CHECK_INT_EQ(wal_open(dir, &w, &t, &v, &e, &ne, err, sizeof err), -1);
    CHECK(strstr(err, newest) != NULL && strstr(err, "damaged at offset 64") != NULL);
    CHECK(exists(dir, "snap-00000000000000000005-00000000000000000002"));
    free(n9);
    free(bad);
    free(good);
}

/* Leftover temporary files go; the newest wins; older ones are removed. */
static void test_dir(void)
{
    char dir[256], path[600];
    sub_dir(dir, sizeof dir, "dir");
    struct wal *w;
    uint64_t t;
    uint32_t v;
    struct raft_entry *e;
    size_t ne;
    CHECK_INT_EQ(wal_open(dir, &w, &t, &v, &e, &ne, err, sizeof err), 0); /* a node's dir */
    wal_close(w);
    free(e);
    CHECK_INT_EQ(write_snapshot(dir, 5, 1, 10, 1), 0);
    CHECK_INT_EQ(write_snapshot(dir, 12, 2, 20, 2), 0);
    CHECK_INT_EQ(write_snapshot(dir, 9, 2, 30, 3), 0);
    snprintf(path, sizeof path, "%s/snapshot.tmp", dir);
    write_whole(path, (const uint8_t *)"junk", 4);
    snprintf(path, sizeof path, "%s/snapshot-recv.tmp", dir);
    write_whole(path, (const uint8_t *)"junk", 4);
    snprintf(path, sizeof path, "%s/snap-1-1", dir); /* not a snapshot name: ignored */
    write_whole(path, (const uint8_t *)"junk", 4);

    uint64_t index, term;
    CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), 0);
    CHECK_INT_EQ(index, 12);
    CHECK_INT_EQ(term, 2);
    CHECK(!exists(dir, "snapshot.tmp"));
    CHECK(!exists(dir, "snapshot-recv.tmp"));
    CHECK(exists(dir, "snap-00000000000000000005-00000000000000000001"));

    CHECK_INT_EQ(snapfile_remove_below(dir, 9, err, sizeof err), 0);
    CHECK(!exists(dir, "snap-00000000000000000005-00000000000000000001"));
    CHECK(exists(dir, "snap-00000000000000000009-00000000000000000002"));

    /* wal_open keeps only the newest, and says which it is. */
    CHECK_INT_EQ(wal_open(dir, &w, &t, &v, &e, &ne, err, sizeof err), 0);
    wal_snapshot(w, &index, &term);
    CHECK_INT_EQ(index, 12);
    CHECK_INT_EQ(term, 2);
    CHECK(!exists(dir, "snap-00000000000000000009-00000000000000000002"));
    CHECK(exists(dir, "snap-00000000000000000012-00000000000000000002"));
    /* A newer one while a transfer may still use the older: both stay
     * until the caller removes the older. */
    CHECK_INT_EQ(write_snapshot(dir, 20, 3, 5, 4), 0);
    CHECK_INT_EQ(wal_snapshot_taken(w, 20, 3, err, sizeof err), 0);
    CHECK(exists(dir, "snap-00000000000000000012-00000000000000000002"));
    CHECK_INT_EQ(wal_remove_snapshots_below(w, 100, err, sizeof err), 0); /* never the newest */
    CHECK(!exists(dir, "snap-00000000000000000012-00000000000000000002"));
    CHECK(exists(dir, "snap-00000000000000000020-00000000000000000003"));
    CHECK_INT_EQ(wal_snapshot_taken(w, 19, 3, err, sizeof err), -1);
    wal_close(w);
    free(e);
}

static int write_new(const char *dir)
{
    return write_snapshot(dir, 30, 4, 100, 7);
}

/* A crash at every file operation of writing a snapshot leaves the old
 * snapshot or the new one; an error at every one leaves the old. */
static void test_write_crash(void)
{
    char dir[256];
    sub_dir(dir, sizeof dir, "write-crash");
    CHECK_INT_EQ(write_snapshot(dir, 20, 3, 50, 6), 0);
    int k;
    for (k = 1; k < 100; k++) {
        int rc = crash_at(k, write_new, dir);
        CHECK(rc >= 0);
        uint64_t index, term;
        CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), 0);
        CHECK(!exists(dir, "snapshot.tmp"));
        if (rc == 1) {
            CHECK(index == 20 || index == 30);
            CHECK(payload_is(dir, 20, 3, 50, 6)); /* the old one stays until removed */
        }
        if (index == 30)
            CHECK(payload_is(dir, 30, 4, 100, 7));
        char name[64];
        snap_name(name, sizeof name, 30, 4);
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        unlink(path);
        if (rc == 0)
            break;
    }
    CHECK(k > 3 && k < 100);

    for (k = 1;; k++) {
        fault_arm(k, false);
        int rc = write_new(dir);
        fault_off();
        uint64_t index, term;
        CHECK_INT_EQ(snapfile_open_dir(dir, &index, &term, err, sizeof err), 0);
        if (rc == 0) {
            CHECK_INT_EQ(index, 30);
            break;
        }
        CHECK(index == 20 || index == 30); /* a failed dir sync: renamed all the same */
        CHECK(!exists(dir, "snapshot.tmp"));
        CHECK(payload_is(dir, 20, 3, 50, 6));
        char path[600];
        snprintf(path, sizeof path, "%s/snap-00000000000000000030-00000000000000000004", dir);
        unlink(path);
        CHECK(k < 100);
        if (k >= 100)
            break;
    }
}

static const uint8_t *recv_file;
static size_t recv_len;

/* A follower: open, receive the leader's file in two chunks, install. */
static int install_new(const char *dir)
{
    struct wal *w;
    uint64_t t;
    uint32_t v;
    struct raft_entry *e;
    size_t ne;
    if (wal_open(dir, &w, &t, &v, &e, &ne, err, sizeof err) != 0)
        return -1;
    free(e);
    int rc = snapfile_recv_chunk(dir, 0, recv_file, 30, false, err, sizeof err);
    if (rc == 0)
        rc = snapfile_recv_chunk(dir, 30, recv_file + 30, recv_len - 30, true, err, sizeof err);
    if (rc == 0)
        rc = wal_install_snapshot(w, 40, 5, err, sizeof err);
    wal_close(w);
    return rc;
}

/* Installing a received snapshot: a crash at every step leaves the old
 * snapshot or the new one, and the open succeeds. */
static void test_install_crash(void)
{
    char leader[256], dir[256];
    sub_dir(leader, sizeof leader, "install-leader");
    CHECK_INT_EQ(write_snapshot(leader, 40, 5, 64, 8), 0);
    char name[64], path[600];
    snap_name(name, sizeof name, 40, 5);
    snprintf(path, sizeof path, "%s/%s", leader, name);
    size_t len;
    uint8_t *file = read_whole(path, &len);
    sub_dir(dir, sizeof dir, "install-crash");
    recv_file = file;
    recv_len = len;
    int k;
    for (k = 1; k < 200; k++) {
        int rc = crash_at(k, install_new, dir);
        CHECK(rc >= 0);
        struct wal *w;
        uint64_t t, index, term;
        uint32_t v;
        struct raft_entry *e;
        size_t ne;
        CHECK_INT_EQ(wal_open(dir, &w, &t, &v, &e, &ne, err, sizeof err), 0);
        wal_snapshot(w, &index, &term);
        CHECK(index == 0 || index == 40);
        if (rc == 0)
            CHECK_INT_EQ(index, 40);
        if (index == 40) {
            CHECK_INT_EQ(wal_first_index(w), 41);
            CHECK(payload_is(dir, 40, 5, 64, 8));
        }
        wal_close(w);
        free(e);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        unlink(path);
        snprintf(path, sizeof path, "%s/log", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/meta", dir);
        unlink(path);
        if (rc == 0)
            break;
    }
    CHECK(k < 200);
    free(file);
}

int main(void)
{
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_damage_every_byte();
    test_dir();
    test_write_crash();
    test_install_crash();
    CHECK(nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
    CHECK_DONE();
}

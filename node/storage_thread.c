/* storage_thread.c - the log's fdatasync off the event loop.
 *
 * The loop writes a ready's entries into the log (write(2): the page cache,
 * microseconds) and goes on: it reads clients, proposes, sends
 * AppendEntries and takes in replies while one helper thread runs the
 * fdatasync. One sync is in flight at a time; everything written while it
 * runs goes into the next one (group commit). When a sync completes, the
 * thread wakes the loop through a pipe, and the loop
 *   - records the synced mark in the log's header (wal_sync_end),
 *   - tells the core the entries are durable (raft_synced): only then does a
 *     leader count its own copy toward a majority,
 *   - sends the messages that waited for it: a follower's AppendEntries
 *     reply promises that the entries are on its disk ("If successful"
 *     means stored, Figure 2), so it leaves only after the sync covering
 *     them, while the follower already takes in the next batch,
 *   - starts the next sync if more was written meanwhile.
 *
 * Between syncs the thread also does what would only make the loop wait:
 * freeing the entries a compaction dropped, and removing snapshot files no
 * longer used (an unlink waits for the file system's journal).
 *
 * The thread touches nothing but the sync point (a file descriptor), the
 * buffers and the snapshot files it is handed: the log's bookkeeping stays
 * with the loop. Anything else on the log (the hard
 * state, a truncation, a snapshot, a reset after a failure, closing) first
 * waits until nothing is in flight (storage_drain), and is done on the loop
 * as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node.h"

struct sync_waiting_msg {
    struct raft_msg msg;
    uint64_t seq; /* sent once the sync covering write number seq is done */
};

struct storage {
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wake[2];     /* thread -> loop: a sync finished */
    const char *dir; /* the data dir, where the snapshot files are */

    /* Shared with the thread, under mu. */
    bool job;  /* a sync point waits for the thread */
    bool done; /* the thread ran it: run_errno says how it went */
    bool quit;
    /* Buffers to free (the data of compacted log entries), a few at a time
     * while no sync waits: freeing 100,000 entries at once stalled the loop
     * for hundreds of milliseconds. */
    uint8_t **garbage;
    size_t n_garbage, cap_garbage;
    uint64_t remove_below;  /* snapshots below this index go; 0: none to remove */
    char remove_error[300]; /* the last removal that failed, for the loop to tell */
    int run_errno;
    struct wal_sync_point point;

    /* The loop's own. */
    bool busy;            /* a sync in flight: begun, not yet ended */
    uint64_t written_seq; /* writes handed to the log, counted */
    uint64_t busy_seq;    /* the writes the sync in flight covers */
    uint64_t synced_seq;  /* the writes known durable */
    uint64_t busy_index, busy_term;
    struct sync_waiting_msg *held;
    size_t n_held, cap_held;
    /* Buffers gathered by storage_free_later, handed to the thread at once
     * by storage_free_handover: one lock and one wake-up for a compaction,
     * not one for each of its 100,000 entries (2 to 5 ms of the loop's turn,
     * the thread woken at each and fighting it for the lock). */
    uint8_t **to_free;
    size_t n_to_free, cap_to_free;
};

/* How many buffers the thread frees between two looks for a sync. */
#define STORAGE_FREE_STEP 256

static void *storage_main(void *arg)
{
    struct storage *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->job && !s->quit && s->n_garbage == 0 && s->remove_below == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit)
            break;
        if (!s->job && s->remove_below != 0) {
            uint64_t below = s->remove_below;
            s->remove_below = 0;
            pthread_mutex_unlock(&s->mu);
            char err[sizeof s->remove_error];
            int rv = snapfile_remove_below(s->dir, below, err, sizeof err);
            pthread_mutex_lock(&s->mu);
            if (rv != 0) {
                memcpy(s->remove_error, err, sizeof err);
                ssize_t w = write(s->wake[1], "r", 1); /* for the loop to tell */
                (void)w;
            }
            continue;
        }
        if (!s->job) {
            uint8_t *batch[STORAGE_FREE_STEP];
            size_t k = s->n_garbage < STORAGE_FREE_STEP ? s->n_garbage : STORAGE_FREE_STEP;
            s->n_garbage -= k;
            memcpy(batch, s->garbage + s->n_garbage, k * sizeof(batch[0]));
            pthread_mutex_unlock(&s->mu);
            for (size_t i = 0; i < k; i++)
                free(batch[i]);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        struct wal_sync_point p = s->point;
        pthread_mutex_unlock(&s->mu);
        int rv = wal_sync_run(&p);
        pthread_mutex_lock(&s->mu);
        s->job = false;
        s->done = true;
        s->run_errno = rv;
        pthread_cond_broadcast(&s->cv);
        /* The pipe holds at most a few bytes: a full one already wakes the loop. */
        ssize_t w = write(s->wake[1], "s", 1);
        (void)w;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int storage_start(struct node *n, char *err, size_t errlen)
{
    struct storage *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->wake[0] = s->wake[1] = -1;
    s->dir = n->opt.data_dir;
    n->storage = s;
    if (pipe(s->wake) != 0) {
        snprintf(err, errlen, "cannot make a pipe: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(s->wake[i], F_GETFL);
        if (fl < 0 || fcntl(s->wake[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(s->wake[i], F_SETFD, FD_CLOEXEC) != 0) {
            snprintf(err, errlen, "cannot set up the storage pipe: %s", strerror(errno));
            return -1;
        }
    }
    int rv = pthread_mutex_init(&s->mu, NULL);
    if (rv == 0)
        rv = pthread_cond_init(&s->cv, NULL);
    if (rv == 0)
        rv = pthread_create(&s->thread, NULL, storage_main, s);
    if (rv != 0) {
        snprintf(err, errlen, "cannot start the storage thread: %s", strerror(rv));
        return -1;
    }
    s->thread_started = true;
    return 0;
}

int storage_fd(const struct node *n)
{
    return n->storage != NULL ? n->storage->wake[0] : -1;
}

bool storage_pending(const struct node *n)
{
    const struct storage *s = n->storage;
    return s != NULL && (s->busy || s->n_held > 0);
}

/* Released messages are sent this many at a time. */
#define STORAGE_RELEASE_BATCH 32

static void storage_send_released(struct node *n, struct raft_msg *msgs, size_t count)
{
    size_t left = raft_coalesce_replies(msgs, count);
    n->replies_coalesced += count - left;
    for (size_t i = 0; i < left; i++)
        transport_send(n, &msgs[i]);
}

/* Send the held messages the completed syncs cover, in the order they were
 * held; drop all of them when the sync failed (they promised what is not on
 * disk). A follower's replies held for one sync leave as one per leader
 * (raft_coalesce_replies): at 50 clients it held about three. */
static void storage_release(struct node *n, bool failed)
{
    struct storage *s = n->storage;
    struct raft_msg out[STORAGE_RELEASE_BATCH];
    size_t k = 0, n_out = 0;
    for (size_t i = 0; i < s->n_held; i++) {
        if (failed) {
            n->msgs_dropped++;
        } else if (s->held[i].seq <= s->synced_seq) {
            out[n_out++] = s->held[i].msg;
            if (n_out == STORAGE_RELEASE_BATCH) {
                storage_send_released(n, out, n_out);
                n_out = 0;
            }
        } else {
            s->held[k++] = s->held[i];
        }
    }
    storage_send_released(n, out, n_out);
    s->n_held = failed ? 0 : k;
}

/* Start a sync of everything written so far, if none is in flight. */
static int storage_kick(struct node *n, char *err, size_t errlen)
{
    struct storage *s = n->storage;
    if (s->busy || !wal_unsynced(n->wal))
        return 0;
    struct wal_sync_point p;
    if (wal_sync_begin(n->wal, &p, err, errlen) != 0)
        return -1;
    s->busy = true;
    s->busy_seq = s->written_seq;
    s->busy_index = p.index;
    s->busy_term = raft_term_at(&n->raft, p.index);
    pthread_mutex_lock(&s->mu);
    s->point = p;
    s->job = true;
    s->done = false;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* The sync in flight finished (the caller checked): record it. With notify,
 * tell the core; without, the caller is between raft_ready and
 * raft_advance, and raft_advance will count everything synced. */
static int storage_end(struct node *n, bool notify, char *err, size_t errlen)
{
    struct storage *s = n->storage;
    pthread_mutex_lock(&s->mu);
    int run_errno = s->run_errno;
    s->done = false;
    pthread_mutex_unlock(&s->mu);
    s->busy = false;
    if (wal_sync_end(n->wal, &s->point, run_errno, err, errlen) != 0) {
        storage_release(n, true);
        return -1;
    }
    s->synced_seq = s->busy_seq;
    n->log_syncs++;
    if (notify)
        raft_synced(&n->raft, s->busy_index, s->busy_term);
    storage_release(n, false);
    return 0;
}

/* A removal of old snapshots that failed on the thread (it woke the loop). */
static void storage_tell_remove_error(struct node *n)
{
    struct storage *s = n->storage;
    char remove_error[sizeof s->remove_error];
    pthread_mutex_lock(&s->mu);
    memcpy(remove_error, s->remove_error, sizeof remove_error);
    s->remove_error[0] = '\0';
    pthread_mutex_unlock(&s->mu);
    if (remove_error[0] != '\0')
        node_event(n, "cannot remove old snapshots: %s", remove_error);
}

int storage_poll(struct node *n, bool woken, char *err, size_t errlen)
{
    struct storage *s = n->storage;
    /* Only when epoll saw the pipe readable: a read that finds it empty
     * would be a wasted system call on every loop turn. A byte left behind
     * (storage_wait ended that sync) only wakes one more turn. */
    char drain[64];
    while (woken && read(s->wake[0], drain, sizeof(drain)) > 0)
        ;
    if (woken)
        storage_tell_remove_error(n);
    if (s->busy) {
        pthread_mutex_lock(&s->mu);
        bool done = s->done;
        pthread_mutex_unlock(&s->mu);
        if (!done)
            return 0;
        if (storage_end(n, true, err, errlen) != 0)
            return -1;
    }
    /* No sync in flight: the moment a compacted log can take the old one's
     * place (its rename goes with the next sync). */
    log_compaction_poll(n);
    return storage_kick(n, err, errlen);
}

/* Wait for the sync in flight, if any, and record it. */
static int storage_wait(struct node *n, bool notify, char *err, size_t errlen)
{
    struct storage *s = n->storage;
    if (!s->busy)
        return 0;
    pthread_mutex_lock(&s->mu);
    while (!s->done)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return storage_end(n, notify, err, errlen);
}

int storage_drain(struct node *n, bool notify, char *err, size_t errlen)
{
    struct storage *s = n->storage;
    if (s == NULL)
        return 0;
    if (storage_wait(n, notify, err, errlen) != 0)
        return -1;
    log_compaction_wait(n);
    if (wal_unsynced(n->wal)) {
        if (wal_sync(n->wal, err, errlen) != 0) {
            storage_release(n, true);
            return -1;
        }
        n->log_syncs++;
        s->synced_seq = s->written_seq;
        if (notify) {
            uint64_t last = wal_last_index(n->wal);
            raft_synced(&n->raft, last, raft_term_at(&n->raft, last));
        }
    }
    s->synced_seq = s->written_seq;
    storage_release(n, false);
    return 0;
}

void storage_forget(struct node *n)
{
    struct storage *s = n->storage;
    if (s == NULL)
        return;
    char err[256];
    if (storage_wait(n, false, err, sizeof(err)) != 0) {
        /* the caller is handling a failure already */
    }
    storage_release(n, true);
}

bool storage_can_defer(const struct node *n, const struct raft_ready *rd)
{
    if (n->storage == NULL || n->disk_error || rd->hard_state_changed || rd->truncate_from != 0 ||
        rd->snapshot_install != NULL || rd->snapshot_chunk != NULL)
        return false;
    /* The entries must continue the log as it is (no restart after an
     * installed snapshot, no retry of a failed write). */
    if (rd->n_entries > 0 && rd->entries[0].index != wal_last_index(n->wal) + 1)
        return false;
    /* Held messages are kept by value: only those that point at nothing. */
    if (rd->persist_before_send)
        for (size_t i = 0; i < rd->n_msgs; i++)
            if (rd->msgs[i].n_entries > 0 || rd->msgs[i].len > 0)
                return false;
    return true;
}

/* At most this many new entries, of at most this many bytes, are synced on
 * the loop itself when the thread is idle (storage_sync_inline). */
#define STORAGE_INLINE_MAX_ENTRIES 1
#define STORAGE_INLINE_MAX_BYTES (16u * 1024u)

bool storage_sync_inline(const struct node *n, const struct raft_ready *rd)
{
    const struct storage *s = n->storage;
    /* One client writing one command at a time: a hand-off to the thread
     * costs two wake-ups (the condition variable there, the pipe back) on
     * the write's path, while the loop has nothing else to do meanwhile.
     * Larger batches, or any while a sync is in flight, are what arrives
     * under load: they go to the thread, which groups them (the loop keeps
     * reading clients during the fdatasync). So does a large entry (a
     * value of a megabyte takes milliseconds to write and sync, which no
     * other client should wait for). Not while the log is being compacted:
     * the loop would wait for the copy (storage_drain). */
    return s != NULL && rd->n_entries > 0 && rd->n_entries <= STORAGE_INLINE_MAX_ENTRIES &&
           rd->entries[0].len <= STORAGE_INLINE_MAX_BYTES && !s->busy && s->n_held == 0 &&
           !log_compaction_running(n);
}

int storage_write(struct node *n, const struct raft_ready *rd, char *err, size_t errlen)
{
    struct storage *s = n->storage;
    if (rd->n_entries == 0)
        return 0;
    if (wal_append(n->wal, rd->entries, rd->n_entries, err, errlen) != 0)
        return -1;
    s->written_seq++;
    return storage_kick(n, err, errlen);
}

/* Whether m promises anything about entries not yet durable here: a
 * successful AppendEntries reply ("success" means the entries up to
 * match_index are stored) or InstallSnapshot reply (everything up to
 * snapshot_index is held: the log may be what holds it) past what is
 * synced. One up to what is synced already (a heartbeat's, which ReadIndex
 * waits for) leaves at once, so that reads do not wait for an unrelated
 * write's fsync. A granted vote was made durable before (a vote is never
 * deferred); refusals promise nothing. */
static bool storage_promises_unsynced(const struct node *n, const struct raft_msg *m)
{
    uint64_t durable = n->raft.persisted_index;
    if (m->type == RAFT_MSG_APPEND_REPLY)
        return m->success && m->match_index > durable;
    if (m->type == RAFT_MSG_SNAPSHOT_REPLY)
        return m->success && m->snapshot_index > durable;
    return false;
}

void storage_send_after_sync(struct node *n, const struct raft_msg *m)
{
    struct storage *s = n->storage;
    if (s->synced_seq == s->written_seq || !storage_promises_unsynced(n, m)) {
        transport_send(n, m);
        return;
    }
    if (s->n_held == s->cap_held) {
        size_t cap = s->cap_held ? s->cap_held * 2 : 16;
        struct sync_waiting_msg *p = realloc(s->held, cap * sizeof(*p));
        if (p == NULL) {
            n->msgs_dropped++; /* as a lost message: the sender tries again */
            return;
        }
        s->held = p;
        s->cap_held = cap;
    }
    s->held[s->n_held++] = (struct sync_waiting_msg){.msg = *m, .seq = s->written_seq};
}

void storage_free_later(void *arg, uint8_t *data)
{
    struct node *n = arg;
    struct storage *s = n->storage;
    if (s == NULL || !s->thread_started) {
        free(data);
        return;
    }
    if (s->n_to_free == s->cap_to_free) {
        size_t cap = s->cap_to_free ? s->cap_to_free * 2 : 1024;
        uint8_t **p = realloc(s->to_free, cap * sizeof(*p));
        if (p == NULL) {
            free(data); /* now, then */
            return;
        }
        s->to_free = p;
        s->cap_to_free = cap;
    }
    s->to_free[s->n_to_free++] = data;
}

void storage_free_handover(struct node *n)
{
    struct storage *s = n->storage;
    if (s == NULL || s->n_to_free == 0)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->n_garbage == 0) {
        /* The usual case: the thread's list is empty, so the two swap. */
        uint8_t **list = s->garbage;
        size_t cap = s->cap_garbage;
        s->garbage = s->to_free;
        s->cap_garbage = s->cap_to_free;
        s->n_garbage = s->n_to_free;
        s->to_free = list;
        s->cap_to_free = cap;
        s->n_to_free = 0;
    } else {
        size_t need = s->n_garbage + s->n_to_free;
        if (need > s->cap_garbage) {
            uint8_t **p = realloc(s->garbage, need * sizeof(*p));
            if (p == NULL) {
                pthread_mutex_unlock(&s->mu);
                return; /* kept for the next handover */
            }
            s->garbage = p;
            s->cap_garbage = need;
        }
        memcpy(s->garbage + s->n_garbage, s->to_free, s->n_to_free * sizeof(*s->to_free));
        s->n_garbage = need;
        s->n_to_free = 0;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void storage_remove_snapshots_below(struct node *n, uint64_t index)
{
    struct storage *s = n->storage;
    char err[256];
    if (s == NULL || !s->thread_started) {
        if (snapfile_remove_below(n->opt.data_dir, index, err, sizeof err) != 0)
            node_event(n, "cannot remove old snapshots: %s", err);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (index > s->remove_below)
        s->remove_below = index;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void storage_stop(struct node *n)
{
    struct storage *s = n->storage;
    if (s == NULL)
        return;
    if (s->thread_started) {
        char err[256];
        if (n->wal != NULL && storage_drain(n, false, err, sizeof(err)) != 0)
            fprintf(stderr, "raftkv-node: %s\n", err);
        pthread_mutex_lock(&s->mu);
        s->quit = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
    }
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    for (size_t i = 0; i < s->n_garbage; i++)
        free(s->garbage[i]);
    free(s->garbage);
    for (size_t i = 0; i < s->n_to_free; i++)
        free(s->to_free[i]);
    free(s->to_free);
    free(s->held);
    free(s);
    n->storage = NULL;
}

/* snapshot_writer.c - a snapshot written by a helper thread while the loop
 * goes on serving clients and peers.
 *
 * The paper (section 7): "Copy-on-write techniques are used so that new
 * updates can be accepted without impacting the snapshot being written."
 * The store provides the copy-on-write itself (kv_view_begin in kv.h): the
 * loop opens a view, which records which items the store holds (a pass over
 * the table's slots, no copy of the data); from then until the view ends, a
 * change to an item puts a new copy in the table and keeps the old one for
 * the view. This thread sorts the view into the snapshot's order, writes it
 * behind the payload's head (the configuration, snapshot.c) into
 * snapfile_writer (temporary file, fsync, rename, fsync of the dir) and says
 * it is done; the loop then ends the view, which frees what only the view
 * held.
 *
 * Why not fork(), as Redis's BGSAVE and this node's first snapshots did: on
 * this 2-core machine a node that had forked spent a third of its time in
 * page faults, the kernel copying each page the parent touched (and, the
 * node having threads, interrupting the other core to flush its TLB), and
 * SET throughput while snapshots were taken back to back fell to half. The
 * view costs one malloc and copy per item changed while a snapshot is
 * written, nothing per page.
 *
 * The thread runs at a lower priority (nice 10): on a busy machine the loop,
 * which heartbeats and replies, goes first. It reads nothing but the view
 * and the head it is given, and writes nothing but its own files, result
 * and flag.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "node.h"

/* The thread's nice value (higher: yields the CPU to the loop). */
#define SNAPSHOT_WRITER_NICE 10

struct snapshot_writer {
    pthread_t thread;
    const char *dir;
    uint64_t index, term;
    uint8_t *head; /* written before the store */
    size_t head_len;
    struct kv *kv; /* the store the view is of */
    struct kv_view *view;
    bool free_store; /* kv was replaced meanwhile: free it with the view */
    atomic_bool cancel;
    atomic_bool done;
    int failed;
    char err[512];
};

struct writer_sink {
    struct snapshot_writer *w;
    struct snapfile_writer *sw;
};

/* kv_snapshot_write_view's sink: the file, unless the loop asked to stop. */
static int sink_append(const uint8_t *p, size_t len, void *ctx)
{
    struct writer_sink *s = ctx;
    if (atomic_load(&s->w->cancel)) {
        snprintf(s->w->err, sizeof s->w->err, "stopped: the node is shutting down");
        return -1;
    }
    return snapfile_writer_append(s->sw, p, len, s->w->err, sizeof s->w->err);
}

static void *writer_main(void *arg)
{
    struct snapshot_writer *w = arg;
    /* Linux applies a nice value to one thread when given its id. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SNAPSHOT_WRITER_NICE) != 0) {
        /* not allowed: the thread runs at the loop's priority */
    }
    struct writer_sink sink = {.w = w};
    w->failed = 1;
    if (snapfile_writer_open(w->dir, w->index, w->term, &sink.sw, w->err, sizeof w->err) == 0) {
        if (sink_append(w->head, w->head_len, &sink) == 0 &&
            kv_snapshot_write_view(w->view, sink_append, &sink) == 0) {
            w->failed = snapfile_writer_finish(sink.sw, w->err, sizeof w->err) != 0;
        } else {
            if (w->err[0] == '\0')
                snprintf(w->err, sizeof w->err, "out of memory writing the store");
            snapfile_writer_abort(sink.sw);
        }
    }
    /* The sort's arrays (40 bytes a key) were freed into this thread's
     * malloc arena, which keeps them: give them back to the system, or a
     * node holds on to them between snapshots. */
    malloc_trim(0);
    atomic_store(&w->done, true);
    return NULL;
}

int snapshot_writer_start(struct node *n, uint64_t index, uint64_t term, uint8_t *head,
                          size_t head_len, struct snapshot_writer **out, char *err, size_t errlen)
{
    *out = NULL;
    struct snapshot_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        free(head);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->dir = n->opt.data_dir;
    w->index = index;
    w->term = term;
    w->head = head;
    w->head_len = head_len;
    w->kv = n->kv;
    atomic_init(&w->cancel, false);
    atomic_init(&w->done, false);
    if (kv_view_begin(n->kv, &w->view) != 0) {
        snprintf(err, errlen, "out of memory opening a view of the store");
        free(w->head);
        free(w);
        return -1;
    }
    int rv = pthread_create(&w->thread, NULL, writer_main, w);
    if (rv != 0) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(rv));
        kv_view_end(w->kv, w->view);
        free(w->head);
        free(w);
        return -1;
    }
    *out = w;
    return 0;
}

bool snapshot_writer_done(struct snapshot_writer *w)
{
    return atomic_load(&w->done);
}

void snapshot_writer_store_replaced(struct snapshot_writer *w)
{
    w->free_store = true;
}

int snapshot_writer_finish(struct snapshot_writer *w, char *err, size_t errlen)
{
    pthread_join(w->thread, NULL);
    int failed = w->failed;
    if (failed)
        snprintf(err, errlen, "%s", w->err);
    kv_view_end(w->kv, w->view);
    if (w->free_store)
        kv_free(w->kv);
    free(w->head);
    free(w);
    return failed ? -1 : 0;
}

void snapshot_writer_cancel(struct snapshot_writer *w)
{
    atomic_store(&w->cancel, true);
    char err[512];
    if (snapshot_writer_finish(w, err, sizeof err) != 0) {
        /* stopped: the temporary file is gone, the older snapshot stands */
    }
}

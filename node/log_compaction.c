/* log_compaction.c - after a snapshot, the log's dead prefix dropped without
 * stopping the loop (the steps and why they are safe: src/wal_compact.c).
 *
 * snapshot.c begins it (wal_compact_begin) once the snapshot is durable; a
 * helper thread copies the records kept into DIR/log.compact and fsyncs it
 * (wal_compact_copy) while the loop goes on appending and the storage
 * thread goes on syncing; at the next moment no sync is in flight (between
 * two, in storage_poll) the loop finishes it (wal_compact_finish: a few
 * records copied, a descriptor swapped), and the next sync renames the new
 * file into place. One at a time: a snapshot taken while one runs leaves
 * its prefix to the next.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

struct log_compaction {
    pthread_t thread;
    struct wal_compaction job;
    atomic_bool done;
};

static void *compaction_main(void *arg)
{
    struct log_compaction *c = arg;
    if (wal_compact_copy(&c->job) != 0) {
        /* wal_compact_finish reports it */
    }
    atomic_store(&c->done, true);
    return NULL;
}

bool log_compaction_running(const struct node *n)
{
    return n->compaction != NULL;
}

int log_compaction_start(struct node *n, struct wal_compaction *job, char *err, size_t errlen)
{
    struct log_compaction *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        wal_compact_abandon(job);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->job = *job;
    atomic_init(&c->done, false);
    int rv = pthread_create(&c->thread, NULL, compaction_main, c);
    if (rv != 0) {
        wal_compact_abandon(&c->job);
        free(c);
        snprintf(err, errlen, "cannot start a thread: %s", strerror(rv));
        return -1;
    }
    n->compaction = c;
    return 0;
}

/* Join the thread and finish: with no sync in flight. */
static void compaction_end(struct node *n)
{
    struct log_compaction *c = n->compaction;
    pthread_join(c->thread, NULL);
    n->compaction = NULL;
    char err[512];
    uint64_t before = wal_first_index(n->wal);
    if (wal_compact_finish(n->wal, &c->job, err, sizeof err) != 0)
        node_event(n, "could not drop the log before its snapshot (%s): it stays until the next",
                   err);
    else if (wal_first_index(n->wal) != before)
        n->status_dirty = true;
    free(c);
}

void log_compaction_poll(struct node *n)
{
    if (n->compaction != NULL && atomic_load(&n->compaction->done))
        compaction_end(n);
}

void log_compaction_wait(struct node *n)
{
    if (n->compaction != NULL)
        compaction_end(n);
}

/* raft_log.c - the in-memory log: the entries after the last snapshot,
 * entries[i] holding index snapshot_index + 1 + i. */
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

static int raft_log_grow(struct raft_log *log)
{
    if (log->len < log->cap)
        return 0;
    size_t cap = log->cap ? log->cap * 2 : 256;
    struct raft_entry *p = realloc(log->entries, cap * sizeof(*p));
    if (p == NULL)
        return RAFT_ENOMEM;
    log->entries = p;
    log->cap = cap;
    return 0;
}

int raft_log_append_owned(struct raft_log *log, struct raft_entry *e)
{
    if (raft_log_grow(log) != 0)
        return RAFT_ENOMEM;
    log->entries[log->len++] = *e;
    e->data = NULL;
    e->len = 0;
    return 0;
}

int raft_log_append(struct raft_log *log, const struct raft_entry *e)
{
    struct raft_entry copy;
    if (raft_entry_copy(&copy, e) != 0)
        return RAFT_ENOMEM;
    if (raft_log_append_owned(log, &copy) != 0) {
        raft_entry_free(&copy);
        return RAFT_ENOMEM;
    }
    return 0;
}

void raft_log_truncate(struct raft_log *log, uint64_t from)
{
    while (log->len > 0 && log->snapshot_index + log->len >= from) {
        raft_entry_free(&log->entries[log->len - 1]);
        log->len--;
    }
}

void raft_log_compact(struct raft_log *log, uint64_t index, uint64_t term,
                      void (*drop_data)(void *arg, uint8_t *data), void *arg)
{
    size_t drop = 0;
    while (drop < log->len && log->snapshot_index + drop + 1 <= index) {
        struct raft_entry *e = &log->entries[drop++];
        if (drop_data != NULL && e->data != NULL) {
            drop_data(arg, e->data);
            e->data = NULL;
            e->len = 0;
        } else {
            raft_entry_free(e);
        }
    }
    if (drop > 0)
        memmove(log->entries, log->entries + drop, (log->len - drop) * sizeof(*log->entries));
    log->len -= drop;
    log->snapshot_index = index; /* entries[0], if any, now holds index + 1 */
    log->snapshot_term = term;
}

void raft_log_free(struct raft_log *log)
{
    raft_log_truncate(log, 1);
    free(log->entries);
    memset(log, 0, sizeof(*log));
}

void raft_entry_free(struct raft_entry *e)
{
    free(e->data);
    e->data = NULL;
    e->len = 0;
}

int raft_entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len > 0) {
        dst->data = malloc(src->len);
        if (dst->data == NULL)
            return RAFT_ENOMEM;
        memcpy(dst->data, src->data, src->len);
    }
    return 0;
}

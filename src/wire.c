/* wire.c - see wire.h. Every primitive is libsodium's. */
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

/* Keys the hash of the secret file: a key made from the same bytes for any
 * other purpose differs. crypto_generichash wants 16 to 64 key bytes. */
static const char wire_context[] = "raftkv-secret-v1";

int wire_key_from_bytes(const uint8_t *secret, size_t len, struct wire_key *k)
{
    memset(k, 0, sizeof(*k));
    if (sodium_init() < 0)
        return -1;
    if (crypto_generichash(k->key, sizeof(k->key), secret, len, (const uint8_t *)wire_context,
                           sizeof(wire_context) - 1) != 0)
        return -1;
    k->enabled = true;
    return 0;
}

int wire_key_load(const char *path, struct wire_key *k, char *warn, size_t warnlen, char *err,
                  size_t errlen)
{
    memset(k, 0, sizeof(*k));
    error_set(warn, warnlen, "%s", "");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_set(err, errlen, "secret file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        error_set(err, errlen, "secret file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        error_set(err, errlen, "secret file %s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size < WIRE_SECRET_MIN || st.st_size > WIRE_SECRET_MAX) {
        error_set(err, errlen,
                  "secret file %s: %lld bytes; it must hold %d to %d bytes (make one with: "
                  "head -c 32 /dev/urandom > %s; chmod 600 %s)",
                  path, (long long)st.st_size, WIRE_SECRET_MIN, WIRE_SECRET_MAX, path, path);
        close(fd);
        return -1;
    }
    uint8_t secret[WIRE_SECRET_MAX];
    size_t len = 0;
    while (len < (size_t)st.st_size) {
        ssize_t got = read(fd, secret + len, (size_t)st.st_size - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            error_set(err, errlen, "secret file %s: %s", path,
                      got < 0 ? strerror(errno) : "shorter than its size");
            sodium_memzero(secret, sizeof(secret));
            close(fd);
            return -1;
        }
        len += (size_t)got;
    }
    close(fd);
    int rc = wire_key_from_bytes(secret, len, k);
    sodium_memzero(secret, sizeof(secret));
    if (rc != 0) {
        error_set(err, errlen, "secret file %s: libsodium does not start", path);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        error_set(warn, warnlen,
                  "secret file %s has mode %04o: other users may read it (chmod 600 %s)", path,
                  (unsigned)(st.st_mode & 07777), path);
    return 0;
}

int wire_secret_create(const char *path, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        error_set(err, errlen, "cannot make %s: libsodium does not start", path);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 0;
        error_set(err, errlen, "cannot make %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t secret[WIRE_SECRET_CREATE];
    randombytes_buf(secret, sizeof(secret));
    ssize_t w = write(fd, secret, sizeof(secret));
    int failure = w == (ssize_t)sizeof(secret) ? 0 : w < 0 ? errno : EIO;
    sodium_memzero(secret, sizeof(secret));
    if (failure == 0 && fsync(fd) != 0)
        failure = errno;
    if (close(fd) != 0 && failure == 0)
        failure = errno;
    if (failure != 0) {
        error_set(err, errlen, "cannot write %s: %s", path, strerror(failure));
        unlink(path);
        return -1;
    }
    return 0;
}

int wire_seal(const struct wire_key *k, const Raftkv__Envelope *env, struct buf *out)
{
    size_t tag = k->enabled ? WIRE_TAG_BYTES : 0;
    size_t len = raftkv__envelope__get_packed_size(env);
    buf_reset(out);
    if (buf_reserve(out, tag + len) != 0)
        return -1;
    raftkv__envelope__pack(env, out->data + tag);
    if (k->enabled)
        crypto_auth(out->data, out->data + tag, len, k->key);
    out->len = tag + len;
    return 0;
}

enum wire_verdict wire_open(const struct wire_key *k, uint64_t cluster_id, const uint8_t *msg,
                            size_t len, Raftkv__Envelope **env)
{
    *env = NULL;
    if (k->enabled) {
        if (len < WIRE_TAG_BYTES ||
            crypto_auth_verify(msg, msg + WIRE_TAG_BYTES, len - WIRE_TAG_BYTES, k->key) != 0)
            return WIRE_BAD_MAC;
        msg += WIRE_TAG_BYTES;
        len -= WIRE_TAG_BYTES;
    }
    Raftkv__Envelope *e = raftkv__envelope__unpack(NULL, len, msg);
    if (e == NULL)
        return WIRE_GARBAGE;
    if (e->cluster_id != cluster_id) {
        raftkv__envelope__free_unpacked(e, NULL);
        return WIRE_OTHER_CLUSTER;
    }
    *env = e;
    return WIRE_OK;
}

bool wire_peer_valid(const Raftkv__PeerMessage *pm, uint32_t from, uint32_t self)
{
    if (pm == NULL || from < 1 || from > CLUSTER_MAX_NODES || from == self || pm->to != self ||
        pm->type < RAFT_MSG_VOTE || pm->type > RAFT_MSG_TIMEOUT_NOW ||
        pm->n_entries > RAFT_MAX_BATCH_ENTRIES)
        return false;
    /* A snapshot chunk carries bytes and no entries; nothing else carries
     * bytes. The core checks indexes, terms and offsets. */
    if (pm->type == RAFT_MSG_SNAPSHOT)
        return pm->n_entries == 0 && pm->data.len <= RAFT_SNAPSHOT_CHUNK_MAX;
    return pm->data.len == 0;
}

void wire_peer_header_to_raft(const Raftkv__PeerMessage *pm, uint32_t from, struct raft_msg *m)
{
    *m = (struct raft_msg){
        .type = (enum raft_msg_type)pm->type,
        .from = from,
        .to = pm->to,
        .term = pm->term,
        .last_log_index = pm->last_log_index,
        .last_log_term = pm->last_log_term,
        .transfer = pm->transfer,
        .granted = pm->granted,
        .leader_hint = pm->leader_hint,
        .leader_ago_ms = pm->leader_ago_ms,
        .prev_index = pm->prev_index,
        .prev_term = pm->prev_term,
        .commit = pm->commit,
        .n_entries = pm->n_entries,
        .read_seq = pm->read_seq,
        .promise_ms = pm->promise_ms,
        .success = pm->success,
        .match_index = pm->match_index,
        .rejected_index = pm->rejected_index,
        .hint_index = pm->hint_index,
        .hint_term = pm->hint_term,
        .snapshot_index = pm->snapshot_index,
        .snapshot_term = pm->snapshot_term,
        .offset = pm->offset,
        .data = pm->data.len > 0 ? pm->data.data : NULL,
        .len = (uint32_t)pm->data.len,
        .done = pm->done,
        .next_offset = pm->next_offset,
    };
}

void wire_peer_to_raft(const Raftkv__PeerMessage *pm, uint32_t from, struct raft_entry *entries,
                       struct raft_msg *m)
{
    for (size_t i = 0; i < pm->n_entries; i++) {
        const Raftkv__Entry *pe = pm->entries[i];
        entries[i] = (struct raft_entry){
            .term = pe->term,
            .index = pe->index,
            .type = (uint8_t)pe->type,
            .len = (uint32_t)pe->data.len,
            .data = pe->data.data,
        };
    }
    wire_peer_header_to_raft(pm, from, m);
    m->entries = entries;
}

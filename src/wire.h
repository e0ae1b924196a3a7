/* wire.h - the bytes of one nanomsg message between raftkv processes: an
 * optional MAC, then one protobuf Envelope (proto/raftkv.proto).
 *
 * With a cluster secret (--secret-file), every message is
 *
 *   [tag: 32 bytes][Envelope]
 *
 * where tag is HMAC-SHA-512-256 (libsodium crypto_auth) of the Envelope bytes
 * under a key derived from the secret file's bytes (BLAKE2b-256, libsodium
 * crypto_generichash). A message whose tag does not verify is never decoded.
 * Without a secret a message is just the Envelope, as before.
 *
 * The MAC proves a message was made by a holder of the secret: a node or the
 * supervisor. It hides nothing: the traffic is not encrypted.
 */
#ifndef RAFTKV_WIRE_H
#define RAFTKV_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cluster.h"
#include "raft.h"
#include "raftkv.pb-c.h"

#define WIRE_TAG_BYTES 32     /* crypto_auth_BYTES */
#define WIRE_KEY_BYTES 32     /* crypto_auth_KEYBYTES */
#define WIRE_SECRET_MIN 16    /* a shorter secret file is refused */
#define WIRE_SECRET_MAX 65536 /* and so is a longer one: surely the wrong file */
#define WIRE_SECRET_CREATE 32 /* random bytes in a secret file the cockpit makes */

struct wire_key {
    bool enabled; /* false: no secret, messages carry no MAC */
    uint8_t key[WIRE_KEY_BYTES];
};

/* The key from a secret's bytes (any length; wire_key_load checks it). */
int wire_key_from_bytes(const uint8_t *secret, size_t len, struct wire_key *k);
/* Read a secret file and derive the key. Refuses an unreadable, empty, too
 * short or too long file (err filled, -1). A file others may read is taken,
 * with a warning in warn (else warn is ""). */
int wire_key_load(const char *path, struct wire_key *k, char *warn, size_t warnlen, char *err,
                  size_t errlen);
/* Write WIRE_SECRET_CREATE random bytes to path, mode 0600, unless the file
 * exists. Returns 0, or -1 with err filled. */
int wire_secret_create(const char *path, char *err, size_t errlen);

/* Encode env into out (replacing its contents), with a tag first when the
 * key is enabled. 0, or -1 when memory runs out. */
int wire_seal(const struct wire_key *k, const Raftkv__Envelope *env, struct buf *out);

enum wire_verdict {
    WIRE_OK,            /* *env is set: free it with raftkv__envelope__free_unpacked */
    WIRE_BAD_MAC,       /* too short for a tag, or the tag does not verify */
    WIRE_GARBAGE,       /* authentic or unauthenticated, but not an Envelope */
    WIRE_OTHER_CLUSTER, /* an Envelope of another cluster id */
};

/* Verify (when the key is enabled) and decode one message. */
enum wire_verdict wire_open(const struct wire_key *k, uint64_t cluster_id, const uint8_t *msg,
                            size_t len, Raftkv__Envelope **env);

/* Whether pm is a message node `self` may take from node `from`: a sender
 * id 1-9 other than itself (not necessarily one it knows: a configuration
 * may have added it), addressed to self, a known type, at most
 * RAFT_MAX_BATCH_ENTRIES entries. */
bool wire_peer_valid(const Raftkv__PeerMessage *pm, uint32_t from, uint32_t self);
/* The core's message from a valid pm; entries (room for pm->n_entries) get
 * the entries, pointing into pm's data. */
/* The same without the entries (m->entries NULL; n_entries says how many). */
void wire_peer_header_to_raft(const Raftkv__PeerMessage *pm, uint32_t from, struct raft_msg *m);
void wire_peer_to_raft(const Raftkv__PeerMessage *pm, uint32_t from, struct raft_entry *entries,
                       struct raft_msg *m);

#endif

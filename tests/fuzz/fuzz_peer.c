/* fuzz_peer.c - a libFuzzer target for what a node does with the bytes that
 * reach its peer port: verify the MAC and decode the Envelope (wire_open),
 * check a PeerMessage (wire_peer_valid), turn it into the core's message
 * (wire_peer_to_raft) and step a fresh follower with it, as node/transport.c
 * does. The first byte picks how the rest is read:
 *
 *   bit 0 clear   no secret: the rest is a message as it comes
 *   bits 0-1 = 1  a secret, and the rest sealed here with the right tag, so
 *                 the decoder behind the MAC is reached
 *   bits 0-1 = 3  a secret, the rest as it comes: refused unless the tag
 *                 verifies
 *   bit 2         our cluster id put first (a later one in the rest wins)
 *
 * Besides not crashing: a right tag is never refused, nothing of another
 * cluster is taken, and the core's message says what the PeerMessage said.
 * (Re-encoding a decoded Envelope need not give one that decodes: protobuf-c
 * keeps an unknown field of number 0, written in a long form, and writes it
 * back in a form it then refuses. The node never re-encodes what it got.)
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "raft.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_peer: %s\n", what);
    abort();
}

static struct cluster cluster;
static struct wire_key key, no_key;
static struct raft_entry entries[RAFT_MAX_BATCH_ENTRIES];

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    const char *text = "1 tcp://127.0.0.1:7001 127.0.0.1:6401\n"
                       "2 tcp://127.0.0.1:7002 127.0.0.1:6402\n"
                       "3 tcp://127.0.0.1:7003 127.0.0.1:6403\n";
    char err[256];
    static const uint8_t secret[] = "a fuzzing secret of 32 bytes....";
    if (cluster_parse(text, "fuzz", &cluster, err, sizeof(err)) != 0 ||
        wire_key_from_bytes(secret, sizeof(secret) - 1, &key) != 0)
        fail("setup");
}

/* What node 1 does with a decoded peer message. */
static void take_peer(const Raftkv__Envelope *env)
{
    const Raftkv__PeerMessage *pm = env->peer;
    if (!wire_peer_valid(pm, env->from, 1))
        return;
    struct raft_msg m;
    wire_peer_to_raft(pm, env->from, entries, &m);
    if (m.from != env->from || m.to != 1 || m.n_entries != pm->n_entries || m.term != pm->term)
        fail("the core's message differs from the PeerMessage");
    for (size_t i = 0; i < m.n_entries; i++)
        if (m.entries[i].len != pm->entries[i]->data.len)
            fail("an entry's length differs");
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
    raft_step(&r, &m);
    raft_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    const struct wire_key *k = (mode & 1) ? &key : &no_key;
    /* Bit 2: our cluster id first (a later field 1 in the bytes overrides
     * it), so that the fuzzer gets past the cluster check. */
    uint8_t prefix[16];
    size_t np = 0;
    if (mode & 4) {
        prefix[np++] = 0x08; /* field 1, varint */
        for (uint64_t v = cluster.cluster_id; v != 0 || np == 1; v >>= 7)
            prefix[np++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
    }
    bool seal = (mode & 3) == 1;
    size_t tag = seal ? WIRE_TAG_BYTES : 0;
    size_t len = tag + np + size;
    uint8_t *msg = malloc(len > 0 ? len : 1); /* exactly sized: ASan sees any overread */
    if (msg == NULL)
        return 0;
    memcpy(msg + tag, prefix, np);
    memcpy(msg + tag + np, data, size);
    if (seal)
        crypto_auth(msg, msg + tag, np + size, key.key);
    Raftkv__Envelope *env = NULL;
    enum wire_verdict v = wire_open(k, cluster.cluster_id, msg, len, &env);
    if ((v == WIRE_OK) != (env != NULL))
        fail("an envelope without WIRE_OK, or WIRE_OK without one");
    if (seal && v == WIRE_BAD_MAC)
        fail("a right tag was refused");
    if (v == WIRE_OK) {
        if (env->cluster_id != cluster.cluster_id)
            fail("an envelope of another cluster was taken");
        if (env->body_case == RAFTKV__ENVELOPE__BODY_PEER)
            take_peer(env);
        raftkv__envelope__free_unpacked(env, NULL);
    }
    free(msg);
    return 0;
}

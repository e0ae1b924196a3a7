/* kv_session.c - the clients' sessions (dissertation 6.3): for each client
 * id, the last seq applied and its reply, so that a retried write is answered
 * from here instead of applied twice. An open-addressing table finds a
 * session by client id; a min-heap by (last use, client id) finds the least
 * recently used, so that sessions idle past KV_SESSION_IDLE_MS, or past the
 * cap, are dropped in an order that depends on the applied log alone.
 */
#include "kv_internal.h"

#include <stdlib.h>

#define KV_MIN_SESSION_SLOTS 16

bool kv_session_expired(const struct kv_session *s, uint64_t now_ms)
{
    return now_ms > s->last_used_ms && now_ms - s->last_used_ms > KV_SESSION_IDLE_MS;
}

static size_t session_home(uint64_t client_id, size_t nslots)
{
    return kv_mix64(client_id) & (nslots - 1);
}

struct kv_session *kv_session_find(const struct kv *kv, uint64_t client_id)
{
    if (kv->nsession_slots == 0)
        return NULL;
    size_t mask = kv->nsession_slots - 1;
    for (size_t i = session_home(client_id, kv->nsession_slots);; i = (i + 1) & mask) {
        struct kv_session *s = kv->sessions[i];
        if (s == NULL || s->client_id == client_id)
            return s;
    }
}

static void session_place(struct kv_session **slots, size_t nslots, struct kv_session *s)
{
    size_t mask = nslots - 1;
    size_t i = session_home(s->client_id, nslots);
    while (slots[i] != NULL)
        i = (i + 1) & mask;
    slots[i] = s;
}

/* Take s out of the table, shifting back the sessions that probed past it. */
static void session_unplace(struct kv *kv, const struct kv_session *s)
{
    size_t mask = kv->nsession_slots - 1;
    size_t hole = session_home(s->client_id, kv->nsession_slots);
    while (kv->sessions[hole] != s)
        hole = (hole + 1) & mask;
    kv->sessions[hole] = NULL;
    for (size_t j = (hole + 1) & mask; kv->sessions[j] != NULL; j = (j + 1) & mask) {
        size_t home = session_home(kv->sessions[j]->client_id, kv->nsession_slots);
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            kv->sessions[hole] = kv->sessions[j];
            kv->sessions[j] = NULL;
            hole = j;
        }
    }
}

/* The LRU heap: least recently used first, ties by client id, so the order
 * depends on the applied log alone. */
static bool lru_before(const struct kv_session *a, const struct kv_session *b)
{
    if (a->last_used_ms != b->last_used_ms)
        return a->last_used_ms < b->last_used_ms;
    return a->client_id < b->client_id;
}

static void lru_set(struct kv *kv, size_t i, struct kv_session *s)
{
    kv->lru[i] = s;
    s->lru_pos = i;
}

static void lru_up(struct kv *kv, size_t i)
{
    struct kv_session *s = kv->lru[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!lru_before(s, kv->lru[parent]))
            break;
        lru_set(kv, i, kv->lru[parent]);
        i = parent;
    }
    lru_set(kv, i, s);
}

static void lru_down(struct kv *kv, size_t i)
{
    struct kv_session *s = kv->lru[i];
    size_t n = kv->nsessions;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && lru_before(kv->lru[child + 1], kv->lru[child]))
            child++;
        if (!lru_before(kv->lru[child], s))
            break;
        lru_set(kv, i, kv->lru[child]);
        i = child;
    }
    lru_set(kv, i, s);
}

/* Room for one more session in the table and the heap. */
static int session_make_room(struct kv *kv)
{
    if ((kv->nsessions + 1) * 4 <= kv->nsession_slots * 3)
        return 0;
    size_t n = kv->nsession_slots == 0 ? KV_MIN_SESSION_SLOTS : kv->nsession_slots * 2;
    if (n > SIZE_MAX / sizeof(struct kv_session *))
        return -1;
    struct kv_session **slots = calloc(n, sizeof(*slots));
    struct kv_session **lru = realloc(kv->lru, n * sizeof(*lru));
    if (slots == NULL || lru == NULL) {
        free(slots);
        if (lru != NULL)
            kv->lru = lru; /* a bigger heap does no harm */
        return -1;
    }
    kv->lru = lru;
    for (size_t i = 0; i < kv->nsession_slots; i++) {
        if (kv->sessions[i] != NULL)
            session_place(slots, n, kv->sessions[i]);
    }
    free(kv->sessions);
    kv->sessions = slots;
    kv->nsession_slots = n;
    return 0;
}

/* A new session with seq 0 and an OK reply, last used at now_ms. NULL when
 * memory runs out. */
struct kv_session *kv_session_add(struct kv *kv, uint64_t client_id, uint64_t now_ms)
{
    if (session_make_room(kv) != 0)
        return NULL;
    struct kv_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->client_id = client_id;
    s->last_used_ms = now_ms;
    s->reply.type = KV_REPLY_OK;
    session_place(kv->sessions, kv->nsession_slots, s);
    kv->nsessions++;
    lru_set(kv, kv->nsessions - 1, s);
    lru_up(kv, kv->nsessions - 1);
    return s;
}

void kv_session_drop(struct kv *kv, struct kv_session *s)
{
    session_unplace(kv, s);
    size_t i = s->lru_pos, last = kv->nsessions - 1;
    kv->nsessions--;
    if (i != last) {
        struct kv_session *moved = kv->lru[last];
        lru_set(kv, i, moved);
        lru_up(kv, i);
        if (moved->lru_pos == i)
            lru_down(kv, i);
    }
    kv_reply_free(&s->reply);
    free(s);
}

/* A request of this client was applied at now_ms (never before the last). */
void kv_session_touch(struct kv *kv, struct kv_session *s, uint64_t now_ms)
{
    if (now_ms > s->last_used_ms) {
        s->last_used_ms = now_ms;
        lru_down(kv, s->lru_pos);
    }
}

/* Drop up to max sessions that have expired at now_ms, least recently used
 * first: the work per applied command stays bounded, and since each command
 * adds at most one session, the sweep keeps up. */
void kv_sessions_sweep(struct kv *kv, uint64_t now_ms, size_t max)
{
    for (size_t n = 0; n < max && kv->nsessions > 0; n++) {
        if (!kv_session_expired(kv->lru[0], now_ms))
            return;
        kv_session_drop(kv, kv->lru[0]);
    }
}

void kv_sessions_free(struct kv *kv)
{
    for (size_t i = 0; i < kv->nsession_slots; i++) {
        if (kv->sessions[i] != NULL) {
            kv_reply_free(&kv->sessions[i]->reply);
            free(kv->sessions[i]);
        }
    }
    free(kv->sessions);
    free(kv->lru);
}

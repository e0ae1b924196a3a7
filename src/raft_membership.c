/* raft_membership.c - cluster membership changes, one server at a time
 * (Raft dissertation, chapter 4).
 *
 * A configuration is an entry of the log (RAFT_ENTRY_CONFIG). Section 4.1:
 * "a server always uses the latest configuration in its log, regardless of
 * whether the entry is committed", so a configuration takes effect where it
 * is appended, and a truncation that removes it brings back the one before
 * (found by looking back through the log, else the snapshot's). Safety
 * comes from changing one server at a time, so that any majority of the old
 * voters and any majority of the new ones overlap, and from waiting for a
 * change to commit before the next (4.1), and for the leader's own-term
 * entry to commit before the first (the fix to the single-server change
 * bug, Ongaro's raft-dev post of 2015).
 *
 * Encoding of a configuration entry's data: 1 byte version (1), 1 byte
 * count, then per member: id (1 byte), role (1 byte), peer address length
 * (2 bytes, little-endian) and bytes, client address length and bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

#define MEMBERS_VERSION 1

/* Learners within this many entries of the leader's log become voters. */
#define RAFT_PROMOTE_GAP 128

/* ------------------------------------------------------------ encoding */

static size_t put_str(uint8_t *p, const char *s)
{
    size_t len = strlen(s);
    p[0] = (uint8_t)(len & 0xff);
    p[1] = (uint8_t)(len >> 8);
    memcpy(p + 2, s, len);
    return 2 + len;
}

int raft_members_encode(const struct raft_members *m, uint8_t **data, uint32_t *len)
{
    size_t size = 2;
    for (size_t i = 0; i < m->n; i++)
        size += 2 + 4 + strlen(m->m[i].peer) + strlen(m->m[i].client);
    uint8_t *p = malloc(size);
    if (p == NULL)
        return -1;
    size_t at = 0;
    p[at++] = MEMBERS_VERSION;
    p[at++] = (uint8_t)m->n;
    for (size_t i = 0; i < m->n; i++) {
        p[at++] = (uint8_t)m->m[i].id;
        p[at++] = m->m[i].role;
        at += put_str(p + at, m->m[i].peer);
        at += put_str(p + at, m->m[i].client);
    }
    *data = p;
    *len = (uint32_t)at;
    return 0;
}

static int get_str(const uint8_t *data, uint32_t len, size_t *at, char *out)
{
    if (*at + 2 > len)
        return -1;
    size_t n = (size_t)data[*at] | (size_t)data[*at + 1] << 8;
    *at += 2;
    if (n >= RAFT_ADDR_MAX || *at + n > len || memchr(data + *at, '\0', n) != NULL)
        return -1;
    memcpy(out, data + *at, n);
    out[n] = '\0';
    *at += n;
    return 0;
}

int raft_members_decode(const uint8_t *data, uint32_t len, struct raft_members *m)
{
    memset(m, 0, sizeof(*m));
    if (data == NULL || len < 2 || data[0] != MEMBERS_VERSION || data[1] == 0 ||
        data[1] > RAFT_MAX_NODES)
        return -1;
    size_t at = 2;
    uint32_t seen = 0;
    bool voter = false;
    for (size_t i = 0; i < data[1]; i++) {
        if (at + 2 > len)
            return -1;
        struct raft_member *x = &m->m[i];
        x->id = data[at++];
        x->role = data[at++];
        if (x->id < 1 || x->id > RAFT_MAX_NODES || (seen & (1u << x->id)) ||
            (x->role != RAFT_VOTER && x->role != RAFT_LEARNER))
            return -1;
        seen |= 1u << x->id;
        voter |= x->role == RAFT_VOTER;
        if (get_str(data, len, &at, x->peer) != 0 || get_str(data, len, &at, x->client) != 0)
            return -1;
    }
    m->n = data[1];
    return at == len && voter ? 0 : -1;
}

const struct raft_member *raft_members_find(const struct raft_members *m, uint32_t id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->m[i].id == id)
            return &m->m[i];
    return NULL;
}

void raft_members_ids_text(const struct raft_members *m, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int role = RAFT_VOTER; role <= RAFT_LEARNER; role++) {
        bool first = true;
        for (size_t i = 0; i < m->n && used < len; i++) {
            if (m->m[i].role != role)
                continue;
            const char *sep =
                first ? (role == RAFT_LEARNER ? (used ? " learners " : "learners ") : "") : ",";
            int k = snprintf(out + used, len - used, "%s%u", sep, m->m[i].id);
            if (k < 0)
                return;
            used += (size_t)k;
            first = false;
        }
    }
}

void raft_members_describe(const uint8_t *data, uint32_t len, char *out, size_t outlen)
{
    struct raft_members m;
    if (raft_members_decode(data, len, &m) != 0) {
        snprintf(out, outlen, "config (damaged)");
        return;
    }
    char ids[64];
    raft_members_ids_text(&m, ids, sizeof ids);
    snprintf(out, outlen, "config %s", ids);
}

/* ------------------------------------------------------------ queries */

bool raft_is_voter(const struct raft *r, uint32_t id)
{
    const struct raft_member *x = raft_members_find(&r->members, id);
    return x != NULL && x->role == RAFT_VOTER;
}

bool raft_is_member(const struct raft *r, uint32_t id)
{
    return raft_members_find(&r->members, id) != NULL;
}

uint32_t raft_voters_mask(const struct raft *r)
{
    uint32_t mask = 0;
    for (size_t i = 0; i < r->members.n; i++)
        if (r->members.m[i].role == RAFT_VOTER)
            mask |= 1u << r->members.m[i].id;
    return mask;
}

bool raft_has_majority(const struct raft *r, uint32_t votes)
{
    return (size_t)__builtin_popcount(votes & raft_voters_mask(r)) >= raft_quorum(r);
}

/* 4.2.2: "a server that is not part of its own latest configuration should
 * still start new elections, as it might still be needed until the Cnew
 * entry is committed [...]. It does not count its own vote in elections
 * unless it is part of its latest configuration." A server waiting to join
 * (no configuration entry yet) and one whose removal it knows committed do
 * not stand. */
bool raft_may_stand(const struct raft *r)
{
    return raft_is_voter(r, r->cfg.id) ||
           (r->members_index > 0 && r->members_index > r->commit_index);
}

/* ------------------------------------------------------------ in force */

/* A leader starts tracking a member it did not know: probe from the end of
 * its log, as after an election. */
static void raft_members_track_new(struct raft *r, const struct raft_members *old)
{
    if (r->role != RAFT_LEADER)
        return;
    for (size_t i = 0; i < r->members.n; i++) {
        uint32_t id = r->members.m[i].id;
        if (id == r->cfg.id || raft_members_find(old, id) != NULL)
            continue;
        /* A new server has nothing: send it all (the snapshot, if the log
         * starts after one). It cannot answer before it has a
         * configuration that gives it our address. */
        struct raft_progress *pr = &r->progress[id - 1];
        memset(pr, 0, sizeof(*pr));
        pr->next = raft_first_index(r);
        pr->mode = RAFT_PROGRESS_PROBE;
        pr->last_ack_ms = r->now_ms;
    }
}

static void raft_members_set(struct raft *r, const struct raft_members *m, uint64_t index)
{
    struct raft_members old = r->members;
    r->members = *m;
    r->members_index = index;
    raft_members_track_new(r, &old);
    /* The lease's majority is counted anew in the new configuration. */
    if (r->role == RAFT_LEADER)
        raft_lease_revoke(r);
}

void raft_members_initial(struct raft *r)
{
    struct raft_members m = {0};
    if (r->cfg.initial.n > 0) {
        m = r->cfg.initial;
    } else {
        for (size_t i = 0; i < r->cfg.n_nodes && i < RAFT_MAX_NODES; i++)
            m.m[m.n++] = (struct raft_member){.id = r->cfg.node_ids[i], .role = RAFT_VOTER};
    }
    r->snap_members = m;
    r->members = m;
    r->members_index = 0;
}

/* The latest configuration entry at or below index, else the snapshot's
 * (whose entry is at or below the snapshot's index: that index stands for
 * it, so that a learner must hold the snapshot before it is promoted). */
static uint64_t raft_members_find_at(const struct raft *r, uint64_t index, struct raft_members *out)
{
    for (uint64_t i = index; i > r->log.snapshot_index; i--) {
        const struct raft_entry *e = raft_entry_at(r, i);
        if (e != NULL && e->type == RAFT_ENTRY_CONFIG &&
            raft_members_decode(e->data, e->len, out) == 0)
            return i;
    }
    *out = r->snap_members;
    return r->log.snapshot_index;
}

int raft_members_at(const struct raft *r, uint64_t index, struct raft_members *out)
{
    if (index < r->log.snapshot_index || index > raft_last_index(r))
        return RAFT_EINVAL;
    raft_members_find_at(r, index, out);
    return RAFT_OK;
}

void raft_members_refresh(struct raft *r)
{
    struct raft_members m;
    uint64_t index = raft_members_find_at(r, raft_last_index(r), &m);
    raft_members_set(r, &m, index);
}

void raft_members_on_append(struct raft *r, const struct raft_entry *e)
{
    struct raft_members m;
    if (e->type == RAFT_ENTRY_CONFIG && raft_members_decode(e->data, e->len, &m) == 0)
        raft_members_set(r, &m, e->index);
}

void raft_members_on_truncate(struct raft *r, uint64_t from)
{
    if (r->members_index >= from)
        raft_members_refresh(r);
}

void raft_members_on_compact(struct raft *r, uint64_t index)
{
    struct raft_members m;
    raft_members_find_at(r, index, &m);
    r->snap_members = m;
}

void raft_set_snapshot_members(struct raft *r, const struct raft_members *m)
{
    r->snap_members = *m;
    raft_members_refresh(r);
}

/* ------------------------------------------------------------ changes */

/* How next differs from the configuration in force: exactly one server
 * added as a learner, made a voter from a learner, or removed. */
static bool raft_one_change(const struct raft_members *cur, const struct raft_members *next)
{
    int changes = 0;
    for (size_t i = 0; i < next->n; i++) {
        const struct raft_member *now = raft_members_find(cur, next->m[i].id);
        if (now == NULL)
            changes += next->m[i].role == RAFT_LEARNER ? 1 : 2; /* a voter goes in as a learner */
        else if (now->role != next->m[i].role)
            changes += now->role == RAFT_LEARNER ? 1 : 2; /* a voter is not made a learner */
    }
    for (size_t i = 0; i < cur->n; i++)
        if (raft_members_find(next, cur->m[i].id) == NULL)
            changes++;
    return changes == 1;
}

static bool raft_change_pending(const struct raft *r)
{
    return r->members_index > r->commit_index;
}

int raft_change_members(struct raft *r, const struct raft_members *next, uint64_t *index)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    uint8_t *data;
    uint32_t len;
    struct raft_members check;
    if (raft_members_encode(next, &data, &len) != 0)
        return RAFT_ENOMEM;
    int rv = RAFT_OK;
    if (raft_members_decode(data, len, &check) != 0 || !raft_one_change(&r->members, next))
        rv = RAFT_EINVAL;
    else if (raft_change_pending(r) || r->transfer_to != RAFT_NONE ||
             raft_term_at(r, r->commit_index) != r->current_term)
        rv = RAFT_EBUSY;
    if (rv == RAFT_OK) {
        struct raft_entry e = {
            .term = r->current_term,
            .index = raft_last_index(r) + 1,
            .type = RAFT_ENTRY_CONFIG,
            .len = len,
            .data = data,
        };
        if (raft_log_append(&r->log, &e) != 0) {
            rv = RAFT_ENOMEM;
        } else {
            raft_members_on_append(r, &e);
            *index = e.index;
            /* A one-voter cluster commits by itself once it is durable. */
        }
    }
    free(data);
    return rv;
}

/* Leader, at every tick and advance: 4.2.1, a new server joins as a
 * learner and becomes a voter once "the new server's log [has] caught up";
 * 4.2.2, a leader that is not in the configuration steps down once the
 * configuration that removed it is committed. */
void raft_membership_tick(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    if (!raft_is_voter(r, r->cfg.id)) {
        if (r->members_index <= r->commit_index)
            raft_become_follower(r, r->current_term, RAFT_NONE);
        return;
    }
    if (raft_change_pending(r) || r->transfer_to != RAFT_NONE ||
        raft_term_at(r, r->commit_index) != r->current_term)
        return;
    for (size_t i = 0; i < r->members.n; i++) {
        /* Caught up: it holds the configuration that added it (so it knows
         * it is a member, and votes when asked), and nearly all the rest. */
        const struct raft_member *x = &r->members.m[i];
        uint64_t match = r->progress[x->id - 1].match;
        if (x->role != RAFT_LEARNER || match < r->members_index ||
            match + RAFT_PROMOTE_GAP < raft_last_index(r))
            continue;
        struct raft_members next = r->members;
        next.m[i].role = RAFT_VOTER;
        uint64_t index;
        if (raft_change_members(r, &next, &index) == RAFT_OK) {
            struct raft_note note = {.type = RAFT_NOTE_PROMOTED,
                                     .node = next.m[i].id,
                                     .term = r->current_term,
                                     .index = index};
            raft_note(r, &note);
        }
        return;
    }
}

/* wire_text.c - a Raft message in words, from one table: a message type
 * is one line below (its name, glyph and how its fields read), so a new
 * type is one more line; a type no line names still reads "message type N". */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "wire_model.h"

struct wire_type {
    uint32_t type;
    const char *name; /* as the paper names it */
    const char *word; /* replies: what is granted ("vote") */
    char glyph;
    enum wire_class class; /* its colour */
    bool broadcast;        /* sent to every other node at once: one line "-> all" */
    /* The words after the name, from the message's fields. */
    void (*describe)(const struct wire_type *t, const struct wire_rec *r, char *out, size_t size);
};

static void describe_term(const struct wire_type *t, const struct wire_rec *r, char *out,
                          size_t size)
{
    snprintf(out, size, "%s t%" PRIu64, t->name, r->term);
}

static void describe_vote(const struct wire_type *t, const struct wire_rec *r, char *out,
                          size_t size)
{
    snprintf(out, size, "%s t%" PRIu64 " last #%" PRIu64 " t%" PRIu64, t->name, r->term,
             r->last_log_index, r->last_log_term);
}

/* "vote granted t5": the reply reads as what it says; a refusal because
 * the voter heard from a leader lately says which and when. */
static void describe_vote_reply(const struct wire_type *t, const struct wire_rec *r, char *out,
                                size_t size)
{
    if (!r->granted && r->leader_hint != 0 && r->leader_hint == r->from)
        snprintf(out, size, "%s refused t%" PRIu64 " (%u leads)", t->word, r->term, r->leader_hint);
    else if (!r->granted && r->leader_hint != 0)
        snprintf(out, size, "%s refused t%" PRIu64 " (leader %u heard %" PRIu64 " ms ago)", t->word,
                 r->term, r->leader_hint, r->leader_ago_ms);
    else
        snprintf(out, size, "%s %s t%" PRIu64, t->word, r->granted ? "granted" : "refused",
                 r->term);
}

static void describe_append(const struct wire_type *t, const struct wire_rec *r, char *out,
                            size_t size)
{
    uint64_t first = r->prev_index + 1, last = r->prev_index + r->n_entries;
    if (r->n_entries > 1)
        snprintf(out, size, "%s t%" PRIu64 " [%" PRIu64 "..%" PRIu64 "] commit %" PRIu64, t->name,
                 r->term, first, last, r->commit);
    else if (r->n_entries == 1)
        snprintf(out, size, "%s t%" PRIu64 " [%" PRIu64 "] commit %" PRIu64, t->name, r->term,
                 first, r->commit);
    else if (r->heartbeat)
        snprintf(out, size, "%s t%" PRIu64 " heartbeat commit %" PRIu64, t->name, r->term,
                 r->commit);
    else
        snprintf(out, size, "%s t%" PRIu64 " [] after #%" PRIu64 " t%" PRIu64 " commit %" PRIu64,
                 t->name, r->term, r->prev_index, r->prev_term, r->commit);
}

static void describe_append_reply(const struct wire_type *t, const struct wire_rec *r, char *out,
                                  size_t size)
{
    if (r->success)
        snprintf(out, size, "%s t%" PRIu64 " ok match %" PRIu64 "%s", t->name, r->term,
                 r->match_index, r->heartbeat ? " heartbeat" : "");
    else if (r->rejected_index == 0 && r->hint_index == 0) /* the sender's term is old */
        snprintf(out, size, "%s t%" PRIu64 " refused (stale term)", t->name, r->term);
    else if (r->hint_term)
        snprintf(out, size, "%s t%" PRIu64 " refused #%" PRIu64 ", hint #%" PRIu64 " t%" PRIu64,
                 t->name, r->term, r->rejected_index, r->hint_index, r->hint_term);
    else
        snprintf(out, size, "%s t%" PRIu64 " refused #%" PRIu64 ", hint #%" PRIu64, t->name,
                 r->term, r->rejected_index, r->hint_index);
}

static void describe_snapshot(const struct wire_type *t, const struct wire_rec *r, char *out,
                              size_t size)
{
    snprintf(out, size, "%s t%" PRIu64 " snap #%" PRIu64 " t%" PRIu64 " at byte %" PRIu64 "%s",
             t->name, r->term, r->snapshot_index, r->snapshot_term, r->offset,
             r->done ? ", last chunk" : "");
}

static void describe_snapshot_reply(const struct wire_type *t, const struct wire_rec *r, char *out,
                                    size_t size)
{
    if (r->success)
        snprintf(out, size, "%s t%" PRIu64 " installed #%" PRIu64, t->name, r->term,
                 r->snapshot_index);
    else
        snprintf(out, size, "%s t%" PRIu64 " wants byte %" PRIu64, t->name, r->term,
                 r->next_offset);
}

/* One line a message type (src/raft.h enum raft_msg_type). */
static const struct wire_type wire_types[] = {
    {1, "RequestVote", NULL, '?', WCLASS_VOTE, true, describe_vote},
    {2, "RequestVote reply", "vote", 'v', WCLASS_VOTE, false, describe_vote_reply},
    {3, "AppendEntries", NULL, '>', WCLASS_APPEND, false, describe_append},
    {4, "AppendEntries reply", NULL, '<', WCLASS_REPLY, false, describe_append_reply},
    {5, "InstallSnapshot", NULL, 'S', WCLASS_SNAPSHOT, false, describe_snapshot},
    {6, "InstallSnapshot reply", NULL, 's', WCLASS_SNAPSHOT, false, describe_snapshot_reply},
    {7, "PreVote", NULL, 'p', WCLASS_VOTE, true, describe_vote},
    {8, "PreVote reply", "pre-vote", 'v', WCLASS_VOTE, false, describe_vote_reply},
    {9, "TimeoutNow", NULL, '!', WCLASS_VOTE, false, describe_term},
};

#define WIRE_N_TYPES (sizeof wire_types / sizeof wire_types[0])

static const struct wire_type *wire_type_find(uint32_t type)
{
    for (size_t i = 0; i < WIRE_N_TYPES; i++)
        if (wire_types[i].type == type)
            return &wire_types[i];
    return NULL;
}

const char *wire_type_name(uint32_t type, char *buf, size_t size)
{
    const struct wire_type *t = wire_type_find(type);
    if (t != NULL)
        return t->name;
    snprintf(buf, size, "message type %u", type);
    return buf;
}

enum wire_class wire_type_class(uint32_t type)
{
    const struct wire_type *t = wire_type_find(type);
    return t != NULL ? t->class : WCLASS_OTHER;
}

bool wire_type_broadcast(uint32_t type)
{
    const struct wire_type *t = wire_type_find(type);
    return t != NULL && t->broadcast;
}

char wire_type_glyph(uint32_t type, bool heartbeat)
{
    if (heartbeat)
        return '.';
    const struct wire_type *t = wire_type_find(type);
    return t != NULL ? t->glyph : '#';
}

void wire_text(const struct wire_rec *r, bool to_all, char *out, size_t size)
{
    char to[16], body[WIRE_TEXT], name[32];
    if (to_all)
        snprintf(to, sizeof to, "all");
    else
        snprintf(to, sizeof to, "%u", r->to);
    const struct wire_type *t = wire_type_find(r->type);
    if (t != NULL) {
        t->describe(t, r, body, sizeof body);
    } else {
        const struct wire_type unknown = {r->type,      wire_type_name(r->type, name, sizeof name),
                                          NULL,         '#',
                                          WCLASS_OTHER, false,
                                          describe_term};
        describe_term(&unknown, r, body, sizeof body);
    }
    if (r->count > 1)
        snprintf(out, size, "%u -> %-2s %s (x%u)", r->from, to, body, r->count);
    else
        snprintf(out, size, "%u -> %-2s %s", r->from, to, body);
}

void wire_lost_text(uint32_t lost, uint32_t drop_percent, char *out, size_t size)
{
    switch (lost) {
    case WLOST_CUT:
        snprintf(out, size, "LOST: link cut");
        return;
    case WLOST_DROP:
        snprintf(out, size, "LOST: drop %u%%", drop_percent);
        return;
    case WLOST_BUSY:
        snprintf(out, size, "LOST: not taken");
        return;
    case WLOST_SUSPENDED:
        snprintf(out, size, "LOST: receiver suspended");
        return;
    default:
        snprintf(out, size, "LOST");
        return;
    }
}

/* raft_internal.h - shared between the raft_*.c files; not for callers. */
#ifndef RAFTKV_RAFT_INTERNAL_H
#define RAFTKV_RAFT_INTERNAL_H

#include "raft.h"

/* raft_log.c: the in-memory log. */
int raft_log_append(struct raft_log *log, const struct raft_entry *e); /* copies */
int raft_log_append_owned(struct raft_log *log, struct raft_entry *e); /* takes data */
void raft_log_truncate(struct raft_log *log, uint64_t from);           /* drop >= from */
/* Drop entries <= index; the snapshot now ends at index, of term. */
/* drop_data: NULL frees the dropped entries' data; else it gets each. */
void raft_log_compact(struct raft_log *log, uint64_t index, uint64_t term,
                      void (*drop_data)(void *arg, uint8_t *data), void *arg);
void raft_log_free(struct raft_log *log);

/* raft.c: the largest value that a majority of the voters reach, given one
 * value per voter (n of them; sorted in place): the quorum-th largest; 0
 * with fewer values than a majority. */
uint64_t raft_quorum_reaches(const struct raft *r, uint64_t *values, size_t n);

/* raft.c: output helpers. */
int raft_send(struct raft *r, const struct raft_msg *m);
void raft_note(struct raft *r, const struct raft_note *note);
uint64_t raft_random(struct raft *r);
/* Forget durable copies of entries >= from: they must be written again. */
void raft_unstable_from(struct raft *r, uint64_t from);

/* raft_convert.c: role changes, all in one place. */
void raft_become_follower(struct raft *r, uint64_t term, uint32_t leader_id);
/* transfer: a campaign a leader asked for (TimeoutNow) or an operator forced:
 * no pre-vote round, and voters set aside leader stickiness. */
void raft_become_candidate(struct raft *r, bool transfer);
void raft_become_precandidate(struct raft *r);
void raft_become_leader(struct raft *r);
void raft_reset_election_timer(struct raft *r);

/* raft_election.c */
int raft_recv_vote(struct raft *r, const struct raft_msg *m);
int raft_recv_vote_reply(struct raft *r, const struct raft_msg *m);
int raft_recv_prevote(struct raft *r, const struct raft_msg *m);
/* How long ago the leader was heard from (0 for the leader itself). */
uint64_t raft_leader_heard_ago(const struct raft *r);
int raft_recv_prevote_reply(struct raft *r, const struct raft_msg *m);

/* raft_leadership.c: CheckQuorum and leadership transfer. */
void raft_check_quorum(struct raft *r);
void raft_transfer_tick(struct raft *r);
void raft_transfer_maybe_send(struct raft *r);
int raft_recv_timeout_now(struct raft *r, const struct raft_msg *m);

/* raft_replication.c */
int raft_recv_append(struct raft *r, const struct raft_msg *m);
int raft_recv_append_reply(struct raft *r, const struct raft_msg *m);
/* Whether the leader may send a follower more entries now (raft_replication.c):
 * fewer than RAFT_MAX_INFLIGHT entries and cfg.max_inflight_appends
 * AppendEntries with entries out, unacknowledged. */
bool raft_pipeline_open(const struct raft *r, const struct raft_progress *pr);
void raft_send_append(struct raft *r, int slot, bool heartbeat);
void raft_broadcast_append(struct raft *r, bool heartbeat);
void raft_maybe_commit(struct raft *r);

/* raft_snapshot.c */
/* The peer in slot needs the snapshot: start sending it, or (heartbeat)
 * send the chunk in flight again. */
void raft_send_snapshot(struct raft *r, int slot, bool heartbeat);
int raft_recv_snapshot(struct raft *r, const struct raft_msg *m);
int raft_recv_snapshot_reply(struct raft *r, const struct raft_msg *m);
void raft_snapshot_ready(struct raft *r, struct raft_ready *rd);
void raft_snapshot_advance(struct raft *r, const struct raft_ready *rd);
void raft_snapshot_storage_failed(struct raft *r);
void raft_snapshot_free(struct raft *r);

/* raft_membership.c: the configuration in force follows the log. */
void raft_members_initial(struct raft *r);
void raft_members_refresh(struct raft *r);
void raft_members_on_append(struct raft *r, const struct raft_entry *e);
void raft_members_on_truncate(struct raft *r, uint64_t from);
void raft_members_on_compact(struct raft *r, uint64_t index); /* before the entries go */
void raft_membership_tick(struct raft *r);
/* Whether the votes (bit per id) hold a majority of the voters: a server's
 * own vote counts only if it is one of them (4.2.2). */
bool raft_has_majority(const struct raft *r, uint32_t votes);
/* Whether this server may stand for election (4.2.2). */
bool raft_may_stand(const struct raft *r);

/* raft_read.c */
void raft_reads_check(struct raft *r);
void raft_reads_fail_all(struct raft *r);
int raft_read_emit(struct raft *r, uint64_t read_id, uint64_t index, bool ok, bool lease);
/* A new heartbeat round: read_seq goes up, and its start is remembered. */
void raft_round_start(struct raft *r);
/* A peer answered round m->read_seq (ReadIndex), and, if it promised long
 * enough, for the lease too. */
void raft_note_round_answered(struct raft *r, struct raft_progress *pr, const struct raft_msg *m);
/* What this node promises a leader it answers: promise_ms of its replies. */
uint32_t raft_lease_promise(const struct raft *r);

#endif

/* turn_timer.c - where one turn of the event loop spends its time.
 *
 * Every heartbeat, client reply and vote leaves from the one loop (loop.c),
 * so a turn that runs long delays all of them: a follower that hears nothing
 * for an election timeout stands for election. The loop marks the end of
 * each phase of a turn (turn_timer_mark); the timer keeps the longest turn
 * and the phase that took most of it, counts the turns over
 * TURN_SLOW_MS, and says so in the event log when one turn took more than
 * half the shortest election timeout (the margin heartbeats have).
 * RAFT.INFO shows the figures (loop_turn_max_us, loop_turn_max_phase,
 * loop_turns_slow).
 */
#include <inttypes.h>
#include <time.h>

#include "node.h"

/* Turns at least this long are counted as slow. */
#define TURN_SLOW_MS 20

static const char *const phase_names[TURN_N_PHASES] = {
    [TURN_STORAGE] = "storage bookkeeping",   [TURN_PEERS] = "peer messages",
    [TURN_CLIENTS_IN] = "client input",       [TURN_CORE] = "the core's ready",
    [TURN_SNAPSHOT] = "snapshot bookkeeping", [TURN_CLIENTS_OUT] = "client output",
    [TURN_REPORTS] = "status reports",
};

static uint64_t turn_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void turn_timer_begin(struct turn_timer *t)
{
    t->started_us = turn_now_us();
    t->mark_us = t->started_us;
    for (int i = 0; i < TURN_N_PHASES; i++)
        t->phase_us[i] = 0;
}

void turn_timer_mark(struct turn_timer *t, enum turn_phase phase)
{
    uint64_t now = turn_now_us();
    t->phase_us[phase] += now - t->mark_us;
    t->mark_us = now;
}

void turn_timer_end(struct node *n, struct turn_timer *t)
{
    uint64_t took = t->mark_us - t->started_us;
    int worst = 0;
    for (int i = 1; i < TURN_N_PHASES; i++)
        if (t->phase_us[i] > t->phase_us[worst])
            worst = i;
    if (took >= (uint64_t)TURN_SLOW_MS * 1000u)
        t->slow_turns++;
    if (took > t->max_us) {
        t->max_us = took;
        t->max_phase = worst;
        t->max_phase_us = t->phase_us[worst];
    }
    uint64_t margin_us = (uint64_t)((double)n->opt.election_min_ms / n->opt.speed * 500.0);
    if (took > margin_us)
        node_event(n,
                   "one turn of its event loop took %" PRIu64 " ms (%s: %" PRIu64
                   " ms); heartbeats and replies waited",
                   took / 1000u, phase_names[worst], t->phase_us[worst] / 1000u);
}

void turn_timer_info(const struct turn_timer *t, struct buf *out)
{
    buf_printf(out,
               "loop_turn_max_us:%" PRIu64
               "\r\nloop_turn_max_phase:%s\r\nloop_turn_max_phase_us:%" PRIu64
               "\r\nloop_turns_slow:%" PRIu64 "\r\n",
               t->max_us, t->max_us > 0 ? phase_names[t->max_phase] : "none", t->max_phase_us,
               t->slow_turns);
}

/* raftkv-sim - deterministic simulation tests of the pure Raft core.
 *
 *   raftkv-sim --nodes N --seeds K [--first-seed S] [--steps M] [--verbose]
 *   raftkv-sim --nodes N --seed S [--steps M] [--verbose]
 *
 * First the directed scenarios (sim_scenarios.c), then K seeded random runs
 * (sim_chaos.c). A failing seed is printed with the command that replays it;
 * the exit status is non-zero when anything failed. --steps M ends each
 * run's chaotic phase after M events instead of after a random virtual time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: raftkv-sim --nodes N --seeds K [--first-seed S] [--steps M] [--verbose]\n"
            "       raftkv-sim --nodes N --seed S [--steps M] [--verbose]\n"
            "  --nodes N       cluster size, 1..%d (default 3)\n"
            "  --seeds K       how many seeded runs (default 100)\n"
            "  --first-seed S  the first seed (default 1)\n"
            "  --seed S        run one seed, skip the scenarios\n"
            "  --steps M       end the chaotic phase after M events\n"
            "  --verbose       trace every event\n",
            RAFT_MAX_NODES);
}

static bool parse_u64(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (text == NULL || *text == '\0' || *text == '-')
        return false;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    uint64_t nodes = 3, seeds = 100, first_seed = 1, one_seed = 0, steps = 0;
    bool have_one_seed = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t *target = NULL;
        if (strcmp(arg, "--verbose") == 0) {
            verbose = true;
            continue;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(arg, "--nodes") == 0) {
            target = &nodes;
        } else if (strcmp(arg, "--seeds") == 0) {
            target = &seeds;
        } else if (strcmp(arg, "--first-seed") == 0) {
            target = &first_seed;
        } else if (strcmp(arg, "--seed") == 0) {
            target = &one_seed;
            have_one_seed = true;
        } else if (strcmp(arg, "--steps") == 0) {
            target = &steps;
        } else {
            fprintf(stderr, "raftkv-sim: unknown option %s\n", arg);
            usage(stderr);
            return 2;
        }
        if (!parse_u64(value, target)) {
            fprintf(stderr, "raftkv-sim: %s needs a number, got %s\n", arg,
                    value ? value : "nothing");
            return 2;
        }
        i++;
    }
    if (nodes < 1 || nodes > RAFT_MAX_NODES) {
        fprintf(stderr, "raftkv-sim: --nodes must be 1..%d\n", RAFT_MAX_NODES);
        return 2;
    }

    if (have_one_seed) {
        bool ok = sim_run_seed(one_seed, (size_t)nodes, steps, verbose);
        printf("sim: %" PRIu64 " nodes, seed %" PRIu64 ", %s\n", nodes, one_seed,
               ok ? "ok" : "failed");
        return ok ? 0 : 1;
    }

    int scenarios_failed = sim_run_scenarios(verbose);
    uint64_t failed = 0;
    for (uint64_t k = 0; k < seeds; k++)
        if (!sim_run_seed(first_seed + k, (size_t)nodes, steps, verbose))
            failed++;
    printf("sim: %" PRIu64 " nodes, %" PRIu64 " seeds, %" PRIu64 " failed", nodes, seeds, failed);
    if (scenarios_failed)
        printf(", %d scenarios failed", scenarios_failed);
    printf("\n");
    return failed == 0 && scenarios_failed == 0 ? 0 : 1;
}

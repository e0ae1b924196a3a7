"""test_jepsen.py - the ctest entry of the Jepsen-style test (jepsen.py).

Three short runs on real nodes, each with client threads on a few keys while
faults hit the cluster one at a time: 3 nodes with lease reads (kill, pause,
partition, loss, leadership transfer, removing and adding back a node), 5 nodes with the same plus real network isolation in namespaces
(skipped with a reason where namespaces cannot be made), and 3 nodes with
every fault and a snapshot every 200 entries. Each run must be linearizable key by key, converge to one
digest on every node, and keep every acknowledged write. Under the
sanitizers (a slower node) the runs are shorter with fewer clients.

Seeds are random, printed with each run; a failure prints the command that
replays the run's fault schedule.
"""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import check, step  # noqa: E402
import jepsen  # noqa: E402

# (nodes, faults, extra node flags). The first run serves reads on leader
# leases (a paused or cut-off leader must not serve a stale one); the last
# takes a snapshot every 200 entries, so that compaction and InstallSnapshot
# happen under the faults.
RUNS = (
    (3, ("kill", "pause", "partition", "loss", "transfer", "membership"),
     ("--lease-reads", "on")),
    (5, ("kill", "pause", "partition", "loss", "netns", "transfer", "membership"), ()),
    (3, ("kill", "pause", "partition", "loss", "netns", "transfer", "membership"),
     ("--snapshot-entries", "200")),
)


def main(opt):
    seconds, clients = (12, 4) if opt.sanitized else (20, 6)
    first = random.SystemRandom().randrange(1, 1 << 31)
    for r, (nodes, faults, node_args) in enumerate(RUNS):
        seed = first + r
        step(f"run {r + 1}: seed {seed}, {nodes} nodes, {seconds} s, {clients} clients, "
             f"faults {','.join(faults)}" + (f", nodes with {' '.join(node_args)}"
                                             if node_args else ""))
        opt.node_arg = list(node_args)
        result = jepsen.run_once(opt, nodes, seconds, seed, faults, clients=clients, slot=r % 5)
        print(result.summary(), flush=True)
        check(len(result.faults) > 0 and sum(op.status == "ok" for op in result.history) > 100,
              f"faults were injected ({len(result.faults)}) while clients got answers")
        check(result.ok, f"linearizable, converged, no acknowledged write lost (replay: "
                         f"python3 tests/jepsen/jepsen.py --build {opt.build} --port-base "
                         f"{opt.port_base} --nodes {nodes} --seconds {seconds} --seed {seed} "
                         f"--faults {','.join(faults)}"
                         + "".join(f" --node-arg={a}" for a in node_args) + ")")


if __name__ == "__main__":
    sys.exit(harness.run(main, harness.parse_args(__doc__)))

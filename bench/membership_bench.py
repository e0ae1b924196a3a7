#!/usr/bin/env python3
"""membership_bench.py - figures of leadership transfer and membership changes.

Usage:
    python3 bench/membership_bench.py --build DIR --port-base N [--quick]

On this machine, nodes on loopback, fsync on (the test harness's clusters,
tests/integration/harness.py):

  1. RAFT.TRANSFER: the time from sending it to the leader to the first SET
     the new leader accepts, for 20 transfers (each to the next node in
     turn); median and max.
  2. SET throughput at 50 clients (redis-benchmark -c 50 -t set against the
     leader) while the cluster grows 3 -> 5 (RAFT.ADDNODE of two nodes
     started with --join, one after the other), against the same run with
     no change; interleaved rounds, each grow on fresh nodes 4 and 5.
  3. A new node catching up 100,000 keys: from RAFT.ADDNODE to its +OK
     (the node is then a voter: it holds the snapshot and the log).

It asserts nothing; exit status 1 only when a figure could not be measured.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from harness import Cluster  # noqa: E402


def options():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--port-base", type=int, default=30100)
    ap.add_argument("--quick", action="store_true")
    opt = ap.parse_args()
    opt.build = os.path.abspath(opt.build)
    opt.sanitized = harness.sanitized_build(opt.build)
    opt.node_bin = os.path.join(opt.build, "raftkv-node")
    opt.cli_bin = os.path.join(opt.build, "raftkv-cli")
    return opt


def set_at(c, i, key, value):
    try:
        with c.client(i, timeout=2) as r:
            return r.call("SET", key, value)
    except (OSError, harness.ProtocolError):
        return None


def transfers(opt, count):
    with Cluster(opt, 3, slot=0, name="bench-transfer") as c:
        c.start()
        ms = []
        for k in range(count):
            leader = c.wait_leader()
            target = c.ids[(c.ids.index(leader) + 1) % len(c.ids)]
            started = time.monotonic()
            reply = c.call(leader, "RAFT.TRANSFER", str(target), timeout=10)
            if reply != "OK":
                print(f"  transfer {k + 1}: {reply!r}")
                continue
            while set_at(c, target, "t", str(k)) != "OK":
                if time.monotonic() - started > 10:
                    break
            ms.append((time.monotonic() - started) * 1000)
        c.shutdown()
    return ms


def load_keys(c, leader, count):
    with c.client(leader, timeout=30) as r:
        for start in range(0, count, 2000):
            part = [("SET", f"key:{i:07d}", "v" * 16) for i in range(start, min(count, start + 2000))]
            replies = r.pipeline(part)
            if any(x != "OK" for x in replies):
                raise harness.TestFailure(f"load: {replies[:1]}")


def redis_benchmark(port, requests):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set",
                          "-c", "50", "-n", str(requests), "-r", "100000", "-d", "256", "-q"],
                         capture_output=True, text=True, timeout=600).stdout
    m = re.findall(r"SET: ([\d.]+) requests per second, p50=([\d.]+) msec", out.replace("\r", "\n"))
    return (float(m[-1][0]), float(m[-1][1])) if m else (None, None)


def grow_round(opt, slot, grow, requests):
    """One round on a fresh cluster of 3 (+2 joining): SET/s at 50 clients,
    with the grow 3 -> 5 under way or not."""
    with Cluster(opt, 5, slot=slot, name="bench-grow", in_file=3) as c:
        c.start([1, 2, 3])
        leader = c.wait_leader(ids=[1, 2, 3])
        load_keys(c, leader, 20000)
        result = {}

        def bench():
            result["ops"] = redis_benchmark(c.node(leader).client_port, requests)

        t = threading.Thread(target=bench)
        t.start()
        took = []
        if grow:
            for i in (4, 5):
                c.start_node(i, extra=c.join_args(i))
                nd = c.node(i)
                started = time.monotonic()
                reply = c.call(leader, "RAFT.ADDNODE", str(i), nd.peer_url, nd.client_addr,
                               timeout=60)
                took.append((i, reply, time.monotonic() - started))
        t.join()
        c.shutdown()
    return result.get("ops", (None, None)), took


def catch_up(opt, keys):
    with Cluster(opt, 4, slot=3, name="bench-catchup", in_file=3,
                 node_args=["--snapshot-entries", "20000"]) as c:
        c.start([1, 2, 3])
        leader = c.wait_leader(ids=[1, 2, 3])
        load_keys(c, leader, keys)
        c.start_node(4, extra=c.join_args(4))
        nd = c.node(4)
        started = time.monotonic()
        reply = c.call(leader, "RAFT.ADDNODE", "4", nd.peer_url, nd.client_addr, timeout=120)
        took = time.monotonic() - started
        info = c.info(4)
        c.shutdown()
    return reply, took, info


def main():
    opt = options()
    print(f"membership bench: {opt.node_bin}, load average {os.getloadavg()[0]:.2f}")
    ok = True
    n_transfers = 5 if opt.quick else 20
    ms = transfers(opt, n_transfers)
    if ms:
        print(f"[1] RAFT.TRANSFER to the first SET the new leader accepts: median "
              f"{statistics.median(ms):.1f} ms, max {max(ms):.1f} ms ({len(ms)} transfers)")
    else:
        ok = False
    rounds = 1 if opt.quick else 3
    requests = 20000 if opt.quick else 60000
    grow_ops, still_ops = [], []
    for k in range(rounds):
        for grow in (True, False) if k % 2 == 0 else (False, True):
            (ops, p50), took = grow_round(opt, 1 if grow else 2, grow, requests)
            label = "grow 3 -> 5" if grow else "no change  "
            extra = "; ".join(f"node {i} {reply} in {s:.2f} s" for i, reply, s in took)
            print(f"    round {k + 1} {label}: {ops} SET/s, p50 {p50} ms" +
                  (f" ({extra})" if extra else ""))
            if ops is None:
                ok = False
                continue
            (grow_ops if grow else still_ops).append(ops)
    if grow_ops and still_ops:
        g, s = statistics.median(grow_ops), statistics.median(still_ops)
        print(f"[2] SET at 50 clients while growing 3 -> 5: {g:.0f}/s against {s:.0f}/s without "
              f"({g / s:.2f}x; medians of {len(grow_ops)})")
    keys = 20000 if opt.quick else 100000
    reply, took, info = catch_up(opt, keys)
    print(f"[3] a new node catching up {keys} keys: RAFT.ADDNODE answered {reply!r} after "
          f"{took:.2f} s; it holds {info.get('keys')} keys, snapshots_installed "
          f"{info.get('snapshots_installed')}")
    ok = ok and reply == "OK"
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        harness._kill_children()
        for c in list(harness._clusters):
            shutil.rmtree(c.tmp, ignore_errors=True)

#!/usr/bin/env python3
"""What the wire panel costs the nodes: SET throughput with redis-benchmark
(50 clients) on a 3-node cluster, in three set-ups, interleaved:

  nodes     raftkv-node processes started by hand, no cockpit
  wire-off  started by the cockpit (--headless), ':wire off' (no reports)
  wire-on   started by the cockpit, the wire on (the default)

It prints each run and the median of each set-up: SET/s, and the CPU time
the three nodes spent per SET (their utime + stime over the benchmark, from
/proc), which a busy machine disturbs less than the throughput; it asserts
nothing.

  python3 bench/wire_overhead.py --build build --port-base 4700 --runs 3 --requests 100000
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time


def redis_cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                       timeout=5)
    return r.stdout.strip()


def wait_leader(ports, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in ports:
            try:
                out = redis_cli(p, "RAFT.LEADER")
            except subprocess.TimeoutExpired:
                continue
            m = re.match(r"(\d+) \S+:(\d+)", out)
            if m:
                return int(m.group(2))
        time.sleep(0.2)
    raise RuntimeError("no leader")


def cpu_seconds(pids):
    """utime + stime of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children(ppid):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == ppid:
                found.append(int(pid))
        except (OSError, IndexError, ValueError):
            pass
    return found


def measured(port, requests, pids, cockpit=None):
    """(SET/s, node CPU microseconds per SET, cockpit CPU microseconds per SET)."""
    before, cockpit_before = cpu_seconds(pids), cpu_seconds([cockpit] if cockpit else [])
    ops = bench(port, requests)
    after, cockpit_after = cpu_seconds(pids), cpu_seconds([cockpit] if cockpit else [])
    return (ops, (after - before) / requests * 1e6,
            (cockpit_after - cockpit_before) / requests * 1e6)


def bench(port, requests):
    r = subprocess.run(["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(requests),
                        "-t", "set", "-q"], capture_output=True, text=True, timeout=600)
    m = re.search(r"SET: ([\d.]+) requests per second", r.stdout.replace("\r", "\n"))
    if not m:
        raise RuntimeError(f"redis-benchmark said: {r.stdout[-300:]} {r.stderr[-300:]}")
    return float(m.group(1))


def run_nodes(build, port, work, requests):
    conf = os.path.join(work, "cluster.conf")
    with open(conf, "w") as f:
        for i in range(3):
            f.write(f"{i + 1} tcp://127.0.0.1:{port + i} 127.0.0.1:{port + 3 + i}\n")
    procs = [subprocess.Popen([os.path.join(build, "raftkv-node"), "--config", conf, "--id",
                               str(i + 1), "--data", os.path.join(work, f"n{i + 1}"), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(3)]
    try:
        leader = wait_leader([port + 3 + i for i in range(3)])
        return measured(leader, requests, [p.pid for p in procs])
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=10)


def run_cockpit(build, port, work, requests, wire):
    script = os.path.join(work, "script.txt")
    with open(script, "w") as f:
        f.write("wait-leader\n" + ("" if wire else "wire off\n") + "wait 3600s\n")
    cockpit = subprocess.Popen([os.path.join(build, "raftkv"), "--headless", "--speed", "1",
                                "--port-base", str(port), "--data", os.path.join(work, "d"),
                                "--script", script],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        leader = wait_leader([port + 3 + i for i in range(3)])
        time.sleep(1.0)  # the wire setting reaches every node
        return measured(leader, requests, children(cockpit.pid), cockpit.pid)
    finally:
        cockpit.send_signal(signal.SIGTERM)
        cockpit.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--port-base", type=int, default=4700)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100000)
    args = ap.parse_args()
    results = {"nodes": [], "wire-off": [], "wire-on": []}
    cpu = {"nodes": [], "wire-off": [], "wire-on": []}
    for run in range(args.runs):
        for mode in results:
            work = tempfile.mkdtemp(prefix="raftkv-wirebench-")
            try:
                if mode == "nodes":
                    ops, us, cockpit_us = run_nodes(args.build, args.port_base, work,
                                                    args.requests)
                else:
                    ops, us, cockpit_us = run_cockpit(args.build, args.port_base, work,
                                                      args.requests, mode == "wire-on")
            finally:
                shutil.rmtree(work, ignore_errors=True)
            results[mode].append(ops)
            cpu[mode].append(us)
            print(f"run {run + 1} {mode:9s} {ops:10.0f} SET/s {us:7.1f} node CPU us/SET"
                  f" {cockpit_us:6.1f} cockpit CPU us/SET", flush=True)
    base = statistics.median(results["wire-off"])
    base_cpu = statistics.median(cpu["wire-off"])
    for mode, values in results.items():
        med, med_cpu = statistics.median(values), statistics.median(cpu[mode])
        print(f"median {mode:9s} {med:10.0f} SET/s ({(med / base - 1) * 100:+.1f}% vs wire-off)"
              f" {med_cpu:7.1f} node CPU us/SET ({(med_cpu / base_cpu - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Every demo in assets/scenarios/ passes headless.

Each scenario runs as `raftkv --headless --script FILE` on its own ports and
data dir; it must exit 0 (every expectation held) and leave no node running.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cockpit_checks import (  # noqa: E402  (tests/cockpit_checks.py)
    node_processes, parse_args, wait_until)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "assets", "scenarios")
PORTS_PER_RUN = 12  # a 5-node cluster needs 10 (peers and clients)
PORT_BLOCKS = 8     # runs take the blocks in turn: one run's nodes are gone before the next
RUN_TIMEOUT_S = 150


def run_scenario(build, path, port_base, work):
    data = os.path.join(work, os.path.basename(path)[:-4])
    cmd = [
        os.path.join(build, "raftkv"),
        "--headless",
        "--script", path,
        "--port-base", str(port_base),
        "--data", data,
        "--node-bin", os.path.join(build, "raftkv-node"),
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or "", e.stderr or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
    seconds = time.monotonic() - started
    problems = []
    if rc != 0:
        problems.append(f"exit status {rc}")
    if "script passed" not in out:
        problems.append("no 'script passed' line")
    if not wait_until(lambda: not node_processes(data), 5):
        pids = node_processes(data)
        problems.append(f"nodes left running: {pids}")
        for pid in pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    return problems, seconds, out, err


def main():
    args = parse_args()
    if args is None:
        return 1
    build = args.build

    scenarios = sorted(f for f in os.listdir(SCENARIOS) if f.endswith(".txt"))
    if len(scenarios) < 6:
        print(f"expected at least 6 scenarios in {SCENARIOS}, found {len(scenarios)}")
        return 1

    work = tempfile.mkdtemp(prefix="raftkv-scenarios-")
    failed = 0
    try:
        for i, name in enumerate(scenarios):
            path = os.path.join(SCENARIOS, name)
            with open(path) as f:
                first = f.readline()
            if not first.startswith("#"):
                print(f"FAIL {name}: no comment header saying what it shows")
                failed += 1
                continue
            problems, seconds, out, err = run_scenario(
                build, path, args.port_base + (i % PORT_BLOCKS) * PORTS_PER_RUN, work)
            if problems:
                failed += 1
                print(f"FAIL {name} ({seconds:.1f} s): {'; '.join(problems)}")
                print("---- stdout\n" + out[-6000:])
                print("---- stderr\n" + err[-3000:])
            else:
                print(f"ok   {name} ({seconds:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(scenarios) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

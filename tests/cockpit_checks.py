"""What the cockpit's tests share: checks that count, polling with a deadline,
the raftkv-node processes on this machine, and the common command line.

Used by tests/integration/test_cockpit_*.py and tests/tui/test_cockpit_tmux.py."""
import argparse
import os
import shutil
import time

FAILURES = []
PASSED = []


def check(condition, what):
    """Record one check; the script's exit status comes from report()."""
    if condition:
        PASSED.append(what)
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        FAILURES.append(what)
    return condition


def report():
    print(f"{len(PASSED)} passed, {len(FAILURES)} failed")
    return 1 if FAILURES else 0


def wait_until(predicate, timeout_s, interval_s=0.05):
    """Poll predicate until it holds or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


def read_proc(pid, name):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return None


def proc_stat_field(pid, n):
    """Field n after the command name of /proc/PID/stat (0: state, 1: ppid)."""
    stat = read_proc(pid, "stat")
    if not stat:
        return None
    # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
    return stat.decode().rsplit(")", 1)[1].split()[n]


def node_processes(text):
    """{pid: argv} of live raftkv-node processes with text in an argument."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        raw = read_proc(pid, "cmdline")
        if not raw:
            continue
        args = raw.decode(errors="replace").split("\0")
        if not args[0].endswith("raftkv-node") or not any(text in a for a in args):
            continue
        if proc_stat_field(pid, 0) in (None, "Z"):
            continue
        found[int(pid)] = args
    return found


def parse_args(need_tmux=False):
    """--build DIR --port-base N; None when a program the test needs is missing."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True)
    parser.add_argument("--port-base", type=int, required=True)
    args = parser.parse_args()
    args.build = os.path.abspath(args.build)
    if need_tmux and not shutil.which("tmux"):
        print("tmux is not installed")
        return None
    for program in ("raftkv", "raftkv-node"):
        if not os.access(os.path.join(args.build, program), os.X_OK):
            print(f"missing {program} in {args.build}")
            return None
    return args

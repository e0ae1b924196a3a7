#!/usr/bin/env python3
"""The cockpit's supervisor, with real processes.

- it starts one raftkv-node per cluster line, as its children;
- faults hit the right process: suspend 2 stops node 2 (state T), resume
  continues it, kill 3 ends node 3, restart 3 starts a new process, isolate 1
  reaches node 1 and the others (their logs say who they are cut off from);
- no node is left after the script ends, after SIGTERM, after SIGKILL of the
  supervisor (the nodes die with it), also when a node was stopped;
- a node program that cannot run is an error, not a hang.

The cockpit runs headless with a script; this test watches /proc and the
cockpit's output while the script waits.
"""
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cockpit_checks import (  # noqa: E402  (tests/cockpit_checks.py)
    FAILURES, check, node_processes, parse_args, proc_stat_field, report, wait_until)
from harness import Redis, parse_info  # noqa: E402  (tests/integration/harness.py)

def node_pids(data_dir):
    """{node id: pid} of live raftkv-node processes using data_dir."""
    return {int(args[args.index("--id") + 1]): pid
            for pid, args in node_processes(data_dir).items() if "--id" in args}


def proc_state(pid):
    return proc_stat_field(pid, 0)


def proc_ppid(pid):
    ppid = proc_stat_field(pid, 1)
    return int(ppid) if ppid is not None else None


def kill_leftovers(data_dir):
    for pid in node_pids(data_dir).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Cockpit:
    """raftkv --headless, its output read line by line in the background."""

    def __init__(self, build, port_base, data_dir, script=None, node_bin=None, extra=()):
        cmd = [os.path.join(build, "raftkv"), "--headless", "--port-base", str(port_base),
               "--data", data_dir,
               "--node-bin", node_bin or os.path.join(build, "raftkv-node")] + list(extra)
        if script:
            cmd += ["--script", script]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text, timeout_s):
        """Wait for an output line containing text; True if it came."""
        deadline = time.monotonic() + timeout_s
        for line in self.seen:
            if text in line:
                return True
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                return False
            self.seen.append(line)
            if text in line:
                return True
        return False

    def wait_exit(self, timeout_s):
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def output(self):
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return "\n".join(self.seen[-80:])


FAULTS_SCRIPT = """\
wait-leader
echo MARK all-up
wait 1s
suspend 2
echo MARK suspended-2
wait 4s
resume 2
echo MARK resumed-2
wait 4s
kill 3
echo MARK killed-3
wait 4s
restart 3
expect role 3 Follower
echo MARK restarted-3
wait 4s
isolate 1
echo MARK isolated-1
wait 4s
heal
wait-leader
suspend 1
echo MARK done
"""


def test_faults(build, port_base, work):
    data = os.path.join(work, "faults")
    script = os.path.join(work, "faults.txt")
    with open(script, "w") as f:
        f.write(FAULTS_SCRIPT)
    ck = Cockpit(build, port_base, data, script=script)
    try:
        check(ck.wait_for("MARK all-up", 30), "a leader is elected")
        pids = wait_until(lambda: len(node_pids(data)) == 3 and node_pids(data), 5) or {}
        check(sorted(pids) == [1, 2, 3], f"three node processes started (found {pids})")
        check(all(proc_ppid(p) == ck.proc.pid for p in pids.values()),
              "every node is a child of the cockpit")
        check(os.path.exists(os.path.join(data, "cluster.conf")), "cluster.conf written")
        check(all(os.path.isdir(os.path.join(data, f"node{i}")) for i in (1, 2, 3)),
              "one data dir per node")

        check(ck.wait_for("MARK suspended-2", 20), "suspend 2 ran")
        check(wait_until(lambda: proc_state(pids.get(2)) == "T", 3),
              "suspend 2 stops node 2's process (state T)")
        check(all(proc_state(pids[i]) != "T" for i in (1, 3)), "nodes 1 and 3 keep running")

        check(ck.wait_for("MARK resumed-2", 20), "resume 2 ran")
        check(wait_until(lambda: proc_state(pids[2]) in ("S", "R", "D"), 3),
              "resume 2 continues node 2")

        check(ck.wait_for("MARK killed-3", 20), "kill 3 ran")
        check(wait_until(lambda: 3 not in node_pids(data), 3), "kill 3 ends node 3's process")
        check(pids[1] in node_pids(data).values() and pids[2] in node_pids(data).values(),
              "nodes 1 and 2 are untouched")

        check(ck.wait_for("MARK restarted-3", 30), "restart 3 ran and node 3 follows")
        new3 = node_pids(data).get(3)
        check(new3 is not None and new3 != pids[3], "restart 3 starts a new process")

        check(ck.wait_for("MARK isolated-1", 20), "isolate 1 ran")

        def cut_off():
            logs = {}
            for i in (1, 2, 3):
                try:
                    with open(os.path.join(data, f"node{i}.log")) as f:
                        logs[i] = f.read()
                except OSError:
                    logs[i] = ""
            return ("cut off from 2,3" in logs[1] and "cut off from 1" in logs[2]
                    and "cut off from 1" in logs[3])
        check(wait_until(cut_off, 3), "isolate 1 reaches node 1 (cut off from 2,3) and the others")

        check(ck.wait_for("MARK done", 30), "the script reached its end")
        rc = ck.wait_exit(20)
        check(rc == 0, f"the cockpit exits 0 when the script passes (got {rc})")
        check(wait_until(lambda: not node_pids(data), 5),
              "no node is left after the script ends (one was suspended)")
    finally:
        if ck.proc.poll() is None:
            ck.proc.kill()
        kill_leftovers(data)
        if FAILURES:
            print(ck.output())


def peer_schemes(data):
    """The URL schemes of the peers in the cockpit's cluster file."""
    with open(os.path.join(data, "cluster.conf")) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return {row[1].split("://")[0] for row in rows}


def test_signal(build, port_base, work, sig, stop_one, long_path=False):
    name = signal.Signals(sig).name
    data = os.path.join(work, f"signal-{name}{'-stopped' if stop_one else ''}")
    if long_path:  # too long for a Unix socket's path: the peers go on TCP
        data = os.path.join(data, "d" * max(1, 110 - len(data)))
    script = None
    if stop_one:
        script = os.path.join(work, f"stop-{name}.txt")
        with open(script, "w") as f:
            f.write("wait-leader\nsuspend 2\necho MARK ready\nwait 600s\n")
    ck = Cockpit(build, port_base, data, script=script)
    try:
        if stop_one:
            check(ck.wait_for("MARK ready", 30), f"{name}: cluster up, node 2 suspended")
        pids = wait_until(lambda: len(node_pids(data)) == 3 and node_pids(data), 30) or {}
        check(len(pids) == 3, f"{name}: three nodes running")
        # The cockpit's rule: a socket path (DIR/peerN.ipc) under 100 bytes.
        want = "ipc" if len(os.path.join(data, "peer1.ipc")) < 100 else "tcp"
        check(want == "tcp" or not long_path, f"{name}: the long data dir is long enough")
        check(peer_schemes(data) == {want},
              f"{name}: the peers talk over {want}:// ({len(data)}-byte data dir)")
        check(ck.wait_for("won the election", 30), f"{name}: a leader is elected")
        os.kill(ck.proc.pid, sig)
        rc = ck.wait_exit(15)
        if sig == signal.SIGTERM:
            check(rc == (1 if stop_one else 0), f"{name}: the cockpit exits (status {rc})")
        else:
            check(rc == -sig, f"{name}: the cockpit died (status {rc})")
        check(wait_until(lambda: not any(os.path.exists(f"/proc/{p}") and
                                         proc_state(p) not in (None, "Z")
                                         for p in pids.values()), 10),
              f"{name}{' with a stopped node' if stop_one else ''}: every node is gone")
    finally:
        if ck.proc.poll() is None:
            ck.proc.kill()
        kill_leftovers(data)


def test_bad_node_program(build, port_base, work):
    data = os.path.join(work, "bad-bin")
    proc = subprocess.run([os.path.join(build, "raftkv"), "--headless", "--port-base",
                           str(port_base), "--data", data, "--node-bin", "/nonexistent/node"],
                          capture_output=True, text=True, timeout=30)
    check(proc.returncode != 0 and "/nonexistent/node" in proc.stderr,
          f"a node program that cannot run is reported (status {proc.returncode}: "
          f"{proc.stderr.strip()})")


LEASE_SCRIPT = """\
wait-leader
setval lk lv
expect getval lk lv
echo MARK lease
wait 2s
"""


def raft_info(port):
    """RAFT.INFO of the node on a client port, as a dict."""
    with Redis("127.0.0.1", port) as r:
        return parse_info(r.call("RAFT.INFO"))


def test_lease_reads(build, port_base, work):
    """raftkv --lease-reads starts every node with --lease-reads on."""
    data = os.path.join(work, "lease")
    script = os.path.join(work, "lease.txt")
    with open(script, "w") as f:
        f.write(LEASE_SCRIPT)
    ck = Cockpit(build, port_base, data, script=script, extra=["--lease-reads"])
    try:
        check(ck.wait_for("MARK lease", 30), "a write and a read through a leasing cluster")
        procs = node_processes(data)
        check(len(procs) == 3 and all("--lease-reads" in a and a[a.index("--lease-reads") + 1] ==
                                      "on" for a in procs.values()),
              "every node runs with --lease-reads on")
        # Clients on P+N..P+2N-1; at the cockpit's speed 1 the lease is 72 ms.
        leases = [raft_info(port_base + 3 + i).get("lease_ms") for i in range(3)]
        check(leases == [72] * 3, f"every node has a 72 ms lease (RAFT.INFO: {leases})")
        check(ck.wait_exit(30) == 0, "the script ends with status 0")
    finally:
        if ck.proc.poll() is None:
            ck.proc.kill()
        kill_leftovers(data)


def main():
    args = parse_args()
    if args is None:
        return 1
    build = args.build
    work = tempfile.mkdtemp(prefix="raftkv-supervisor-")
    try:
        test_faults(build, args.port_base, work)
        test_signal(build, args.port_base + 10, work, signal.SIGTERM, False)
        test_signal(build, args.port_base + 20, work, signal.SIGKILL, False, long_path=True)
        test_signal(build, args.port_base + 30, work, signal.SIGKILL, True)
        test_signal(build, args.port_base + 40, work, signal.SIGTERM, True)
        test_bad_node_program(build, args.port_base + 50, work)
        test_lease_reads(build, args.port_base + 60, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report()

if __name__ == "__main__":
    sys.exit(main())

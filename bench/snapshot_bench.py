#!/usr/bin/env python3
"""snapshot_bench.py - figures for log compaction and snapshots (issue 8).

Usage:
    python3 bench/snapshot_bench.py [--build DIR] [--port-base N] [--quick] [--keep]

Starts 3-node raftkv clusters (fsync on, default timers) in a temporary
directory and measures:

  1. Disk and memory, with and without compaction. A fresh cluster with the
     default thresholds (--snapshot-entries 100000, --snapshot-bytes 64mb)
     and one with none (--snapshot-entries 0 --snapshot-bytes 0) each take
     a million SETs over 10,000 keys (key:%012d of i mod 10000 -> 16
     bytes), pipelined on 4 connections at the leader (batches of 2000;
     not redis-benchmark, which stops at the first leader change, and on a
     loaded 2-core machine there were some). Once every node has applied
     the log and no snapshot is being written, it reads each node's data dir
     (bytes allocated on disk as du counts them, and the files' sizes: log,
     snapshots) and its VmRSS and VmHWM from /proc/PID/status, and
     RAFT.INFO's log_bytes, log_first_index and snapshots_taken.
  2. Restart of a node holding 1,000,000 keys. A cluster without automatic
     snapshots gets 1,000,000 distinct keys (key:%012d -> 16 bytes,
     pipelined on 4 connections). A follower is stopped with SIGTERM and
     started again; the time from the start to its first answer (RAFT.INFO)
     and to the moment its last_applied reaches the leader's commit index is
     taken, first replaying the whole log (no snapshot), then, after
     RAFT.SNAPSHOT on that follower, from the snapshot (the log after it is
     empty). Rounds of each; the node's 'started' line says what it loaded.
  3. A follower caught up by InstallSnapshot. On a cluster with the default
     thresholds a follower is killed (SIGKILL), 100,000 keys are written at
     the leader, RAFT.SNAPSHOT is taken there, and the follower is started:
     the time from the start until its last_applied reaches the leader's
     commit index and its DEBUG DIGEST equals the leader's, with the
     follower's snapshots_installed (0 at its start) and the snapshots the
     leader sent and the follower installed, from their output lines (a
     transfer started while the follower was down shows there). 3 trials,
     the follower killed in turn. For comparison, the
     same on a cluster without snapshots, where the follower is caught up by
     AppendEntries from the log.
  4. SET throughput while snapshots are being taken. Four clusters, with
     --snapshot-entries 5000 (a 7 MiB snapshot about twice a second: back
     to back), 10000, 100000 (the default: about one a run on each node),
     and with --snapshot-entries 0
     --snapshot-bytes 0, each preloaded with 200,000 keys (so a snapshot
     takes a moment), then `redis-benchmark -t set -c 50 -r 200000 -d 16
     -n 100000` at the leader, the clusters' rounds interleaved (ABCD DCBA
     ABCD ..., 5 rounds each).
     ops/s, p50 and p99 of each round, their medians, the ratios (the
     issue's goal: less than 10% lower throughput, p99 not above 2x) and
     the snapshots taken by each node during the rounds.

The machine's load average is printed at the start, at each phase and at
the end: other work on the machine makes the figures noisy, which is why
the runs that are compared are interleaved. Leader changes are not hidden:
the loader sends a batch that met one again to the new leader, a
redis-benchmark run cut short by one (it stops at the first error reply) is
run again (up to 3 times) and counted apart, and each is noted with the
state changes the nodes printed and the line each printed just before. A
node whose port was taken when it restarted (on loopback, ports above 32768
are also the local ports of outgoing connections) is started again, timed
from the start that worked, and noted. It asserts nothing. Node processes
and the temporary directory are always removed (unless --keep).

Options:
  --build DIR      where raftkv-node is (default: build/ next to bench/)
  --port-base N    cluster k uses ports N+10k+1..3 (peers) and N+10k+6..8
                   (clients); a block with a port in use moves up by 10
                   until one is free (default 31000)
  --quick          a short run: 100,000 SETs, 100,000 keys to restart,
                   20,000 to catch up, 20,000 preloaded, 2 rounds
  --keep           keep the temporary directory (node logs, data) and print its path
  --only PART      run only footprint, restart, catch-up or throughput (may be repeated)

Exit status 0 when every figure was measured, 1 otherwise. Python 3 stdlib
and redis-benchmark (Debian redis-tools) only; the RESP client and the
redis-benchmark output parser are bench/raftkv_bench.py's.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raftkv_bench import (  # noqa: E402
    HOST, BenchError, RespConn, RespError, check_port_free, die_with_parent, parse_fields,
    parse_redis_benchmark)


# ------------------------------------------------------------ nodes and clusters


class Node:
    def __init__(self, cluster, node_id, peer_port, client_port):
        self.cluster = cluster
        self.id = node_id
        self.peer_port = peer_port
        self.client_port = client_port
        self.data_dir = os.path.join(cluster.root, "node%d" % node_id)
        self.log_path = os.path.join(cluster.root, "node%d.log" % node_id)
        self.proc = None
        self.conn = None

    def start(self):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.cluster.binary, "--config", self.cluster.conf_path, "--id", str(self.id),
                 "--data", self.data_dir] + list(self.cluster.node_args),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent)
        finally:
            log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _drop_conn(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def kill9(self):
        self._drop_conn()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout=60.0):
        """SIGTERM, and the seconds until the process exited (None if it
        was not running)."""
        self._drop_conn()
        if not self.running():
            return None
        t0 = time.monotonic()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise BenchError("node %d did not stop within %.0f s of SIGTERM" % (self.id, timeout))
        return time.monotonic() - t0

    def call(self, *args, timeout=2.0):
        """One command on the kept connection; None when the node does not answer."""
        try:
            if self.conn is None:
                self.conn = RespConn(HOST, self.client_port, timeout=timeout)
            self.conn.sock.settimeout(timeout)
            return self.conn.call(*args)
        except (OSError, ConnectionError, ValueError):
            self._drop_conn()
            return None

    def info(self):
        reply = self.call("RAFT.INFO")
        return parse_fields(reply) if isinstance(reply, bytes) else None

    def digest(self):
        reply = self.call("DEBUG", "DIGEST", timeout=30.0)
        if isinstance(reply, bytes):
            reply = reply.decode()
        if reply is None or isinstance(reply, RespError):
            raise BenchError("node %d: DEBUG DIGEST answered %r" % (self.id, reply))
        return reply

    def snapshot_now(self, timeout=300.0):
        t0 = time.monotonic()
        reply = self.call("RAFT.SNAPSHOT", timeout=timeout)
        if reply != "OK":
            raise BenchError("node %d: RAFT.SNAPSHOT answered %r" % (self.id, reply))
        return time.monotonic() - t0

    def status_kib(self, field):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise BenchError("no %s for node %d" % (field, self.id))

    def log_lines(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return [l.rstrip("\n") for l in f]
        except FileNotFoundError:
            return []

    def disk(self):
        """Bytes allocated on disk (as du counts), bytes of the files, and
        the sizes of the log and of the snapshot files."""
        alloc = size = 0
        log = 0
        snaps = []
        for name in os.listdir(self.data_dir):
            st = os.stat(os.path.join(self.data_dir, name))
            alloc += st.st_blocks * 512
            size += st.st_size
            if name == "log":
                log = st.st_size
            elif name.startswith("snap-"):
                snaps.append(st.st_size)
        return {"alloc": alloc, "size": size, "log": log, "snaps": snaps}


class Cluster:
    def __init__(self, binary, root, port_base, node_args):
        self.binary = binary
        self.root = root
        self.node_args = node_args
        os.makedirs(root)
        self.conf_path = os.path.join(root, "cluster.conf")
        self.nodes = [Node(self, i, port_base + i, port_base + 5 + i) for i in (1, 2, 3)]
        with open(self.conf_path, "w") as f:
            f.write("# id  peer  client\n")
            for n in self.nodes:
                f.write("%d tcp://%s:%d %s:%d\n" % (n.id, HOST, n.peer_port, HOST, n.client_port))
        self.expected_down = set()

    def start(self):
        for n in self.nodes:
            n.start()

    def stop(self):
        for n in self.nodes:
            try:
                n.stop(timeout=30.0)
            except BenchError:
                pass

    def remove(self, keep):
        self.stop()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def check_alive(self):
        for n in self.nodes:
            if n.proc is not None and n.id not in self.expected_down and n.proc.poll() is not None:
                raise BenchError("node %d exited with status %d (see %s): %s" % (
                    n.id, n.proc.returncode, n.log_path, " | ".join(n.log_lines()[-3:])))

    def wait_leader(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            infos = {n.id: n.info() for n in self.nodes if n.running()}
            leaders = [(int(i["term"]), nid) for nid, i in infos.items()
                       if i is not None and i.get("role") == "leader"]
            if leaders:
                term, nid = max(leaders)
                agree = sum(1 for i in infos.values()
                            if i is not None and i.get("leader") == str(nid) and int(i["term"]) == term)
                if agree >= 2:
                    return self.node(nid), term
            time.sleep(0.02)
        raise BenchError("no leader within %.0f s" % timeout)

    def followers(self, leader):
        return [n for n in self.nodes if n.id != leader.id]

    def wait_settled(self, nodes=None, timeout=120.0):
        """Until every node has applied the leader's commit index and none is
        writing a snapshot; returns the leader's RAFT.INFO and each node's."""
        nodes = nodes or self.nodes
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            leader, _ = self.wait_leader()
            li = leader.info()
            infos = {n.id: n.info() for n in nodes}
            if li is not None and all(i is not None for i in infos.values()):
                target = int(li["commit_index"])
                if all(int(i["last_applied"]) >= target and i.get("snapshot_in_progress", "0") == "0"
                       for i in infos.values()):
                    return li, infos
            if time.monotonic() > deadline:
                raise BenchError("nodes did not apply the leader's commit index within %.0f s: %s" % (
                    timeout, ", ".join("node %d last_applied %s" % (nid, i and i.get("last_applied"))
                                       for nid, i in infos.items())))
            time.sleep(0.05)

    def marks(self):
        return {n.id: len(n.log_lines()) for n in self.nodes}

    def events_since(self, marks):
        """Each node's state changes since marks, each with the line the
        node printed just before it (what it was doing)."""
        out = []
        for n in self.nodes:
            lines = n.log_lines()
            start = marks.get(n.id, 0)
            for k in range(start, len(lines)):
                if "->" in lines[k] or "new term" in lines[k]:
                    if k > start and "->" not in lines[k - 1] and "new term" not in lines[k - 1]:
                        out.append(lines[k - 1].strip())
                    out.append(lines[k].strip())
        return out

    def elections(self):
        """State-change lines ('-> Candidate', '-> Leader') of every node so far."""
        out = []
        for n in self.nodes:
            out.extend(l for l in n.log_lines() if "-> Candidate" in l or "-> Leader" in l)
        return out


def start_cluster(binary, root, port_base, node_args):
    """A started cluster on the first block of 10 ports from port_base on
    whose 6 ports are free. Ports above 32768 are also the local ports of
    outgoing loopback connections, and one closed a moment ago stays taken
    for a minute (TIME_WAIT): the blocks are tried 10 ports apart."""
    skipped = []
    for attempt in range(200):
        base = port_base + 10 * attempt
        try:
            for port in [base + i for i in (1, 2, 3, 6, 7, 8)]:
                check_port_free(port)
        except BenchError as e:
            skipped.append(str(e).split()[1])
            continue
        if skipped:
            print("  ports %s in use: cluster on ports %d-%d" % (",".join(skipped), base + 1, base + 8), flush=True)
        cluster = Cluster(binary, root, base, node_args)
        cluster.start()
        return cluster
    raise BenchError("no free block of ports from %d to %d: pick another --port-base" % (
        port_base, port_base + 2000))


# ------------------------------------------------------------ helpers

NO_SNAPSHOTS = ["--snapshot-entries", "0", "--snapshot-bytes", "0"]
# [4]'s clusters with snapshots: a snapshot of the whole store every 5,000
# entries (back to back: about twice a second at this load), every 10,000,
# and every 100,000 (the default, node/main.c).
WITH_SNAPSHOTS = (("every 5,000", 5000), ("every 10,000", 10000), ("every 100,000 (default)", 100000))


def loadavg():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def mib(n_bytes):
    return n_bytes / 1048576.0


def load_keys(cluster, count, prefix=b"key:", value_tag=b"", conns=4, batch=2000, key_space=0):
    """SET prefix%012d -> a 16-byte value for i < count (i modulo key_space
    when key_space is given), pipelined on conns connections at once, at whichever node leads: a batch that met a leader
    change (MOVED, TRYAGAIN, a closed connection) is sent again in full to
    the new leader (setting a key twice to the same value changes nothing).
    Returns (seconds taken, batches sent again)."""
    errors = []
    resent = [0]
    lock = threading.Lock()

    def current_leader():
        with lock:
            return cluster.wait_leader()[0]

    def worker(w):
        c = None
        try:
            for first in range(w * batch, count, conns * batch):
                cmds = [(b"SET", b"%s%012d" % (prefix, i % key_space if key_space else i),
                         (value_tag + b"%016d" % i)[-16:])
                        for i in range(first, min(first + batch, count))]
                for attempt in range(10):
                    try:
                        if c is None:
                            c = RespConn(HOST, current_leader().client_port, timeout=120.0)
                        bad = [r for r in c.pipeline(cmds) if r != "OK"]
                    except (OSError, ConnectionError, ValueError) as e:
                        bad = [str(e)]
                    if not bad:
                        break
                    if not all(isinstance(r, str) and r.split(" ", 1)[0] in ("MOVED", "TRYAGAIN", "UNCERTAIN")
                               or not isinstance(r, RespError) for r in bad):
                        errors.append("SET answered %r" % (bad[0],))
                        return
                    with lock:
                        resent[0] += 1
                    if c is not None:
                        c.close()
                        c = None
                    time.sleep(0.1)
                else:
                    errors.append("a batch failed 10 times: %r" % (bad[0],))
                    return
        except BenchError as e:
            errors.append(str(e))
        finally:
            if c is not None:
                c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError("loading %d keys: %s" % (count, errors[0]))
    return time.monotonic() - t0, resent[0]


def redis_benchmark(port, args, timeout=900):
    cmd = ["redis-benchmark", "-h", HOST, "-p", str(port)] + args
    print("    $ " + " ".join(cmd), flush=True)
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        raise BenchError("redis-benchmark not found (Debian package redis-tools)")
    except subprocess.TimeoutExpired:
        raise BenchError("redis-benchmark did not finish within %d s" % timeout)
    out = done.stdout.decode(errors="replace")
    err = done.stderr.decode(errors="replace").strip()
    r = parse_redis_benchmark(out)
    if done.returncode != 0 or "ops" not in r or "p50" not in r:
        why = ((err or out).strip().splitlines()[-1:] or ["no output"])[0][-200:]
        raise BenchError("redis-benchmark stopped (status %d): %s" % (done.returncode, why))
    r["errors"] = [l for l in re.split(r"[\r\n]", out + "\n" + err) if "rror" in l]
    return r


# ------------------------------------------------------------ 1: disk and memory


def run_footprint(binary, root, port_base, name, label, node_args, requests, keep, notes):
    print("\n[1] %s: %d SETs over 10000 keys (%s)" % (
        label, requests, " ".join(node_args) or "default thresholds"), flush=True)
    cluster = start_cluster(binary, os.path.join(root, name), port_base, node_args)
    try:
        return footprint_once(cluster, label, requests, notes)
    finally:
        cluster.remove(keep)


def footprint_once(cluster, label, requests, notes):
    leader, term = cluster.wait_leader()
    cluster.wait_settled()
    marks = cluster.marks()
    load_s, resent = load_keys(cluster, requests, key_space=10000)
    events = cluster.events_since(marks)
    if resent or [l for l in events if "->" in l]:
        notes.append("[1] %s: leader changes during the load (%d batches of 2000 sent again); the nodes "
                     "said: %s" % (label, resent, describe_events(events)))
    li, infos = cluster.wait_settled(timeout=300.0)
    time.sleep(0.5)  # let a snapshot finished just now drop the old one
    li, infos = cluster.wait_settled(timeout=300.0)
    leader, term = cluster.wait_leader()
    rows = []
    for n in cluster.nodes:
        d = n.disk()
        i = infos[n.id]
        rows.append({
            "id": n.id, "role": "leader" if n is leader else "follower", "disk": d,
            "rss": n.status_kib("VmRSS"), "hwm": n.status_kib("VmHWM"),
            "log_bytes": int(i["log_bytes"]), "log_first": int(i["log_first_index"]),
            "snap_index": int(i["snapshot_index"]), "taken": int(i["snapshots_taken"]),
            "keys": int(i["keys"]), "applied": int(i["last_applied"])})
    print("    loaded in %.1f s (%.0f SET/s, 4 connections pipelined, %d batches sent again after a leader "
          "change); commit index %s, %s" % (load_s, requests / load_s, resent, li["commit_index"], loadavg()),
          flush=True)
    for x in rows:
        d = x["disk"]
        print("    node %d (%s): dir %.1f MiB on disk (files %.1f MiB: log %.1f MiB, %d snapshot%s %.2f MiB); "
              "RAFT.INFO log_bytes %d, log_first_index %d, snapshot_index %d, snapshots_taken %d, keys %d; "
              "VmRSS %.1f MiB (VmHWM %.1f MiB)" % (
                  x["id"], x["role"], mib(d["alloc"]), mib(d["size"]), mib(d["log"]), len(d["snaps"]),
                  "" if len(d["snaps"]) == 1 else "s", mib(sum(d["snaps"])), x["log_bytes"],
                  x["log_first"], x["snap_index"], x["taken"], x["keys"],
                  x["rss"] / 1024.0, x["hwm"] / 1024.0), flush=True)
    elections = cluster.elections()
    return {"rows": rows, "ops": requests / load_s, "load_s": load_s,
            "elections": len([e for e in elections if "-> Leader" in e])}


# ------------------------------------------------------------ 2: restart


def start_and_poll(cluster, node, ready, timeout, notes):
    """Start node and poll its RAFT.INFO every 10 ms until ready(info).
    Returns (seconds to the first answer, seconds to ready, both from the
    start, and the start's time.monotonic()). A start that fails because a
    port of the node is taken (on loopback, ports above 32768 are also
    handed out as the local ports of outgoing connections, and stay taken a
    minute after they close) is retried every 0.5 s for up to 75 s, timed
    from the start that worked, and noted with who held the port."""
    for attempt in range(150):
        marks = len(node.log_lines())
        t0 = time.monotonic()
        node.start()
        answer_s = None
        deadline = t0 + timeout
        while True:
            if node.proc.poll() is not None:
                lines = node.log_lines()[marks:]
                taken = [l for l in lines if "Address already in use" in l]
                if not taken:
                    raise BenchError("node %d exited with status %d on its start: %s" % (
                        node.id, node.proc.returncode, " | ".join(lines[-3:])))
                m = re.search(r":(\d+): Address already in use", taken[0])
                who = ""
                if m:
                    ss = subprocess.run(["ss", "-tanp"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                    who = " | ".join(" ".join(l.split()) for l in ss.stdout.decode(errors="replace").splitlines()
                                     if ":%s " % m.group(1) in l)
                if attempt == 0:
                    notes.append("node %d could not start: %s (%s); started again every 0.5 s" % (
                        node.id, taken[0].strip(), who or "ss shows no holder now"))
                time.sleep(0.5)
                break
            cluster.check_alive()
            i = node.info()
            now = time.monotonic()
            if i is not None:
                if answer_s is None:
                    answer_s = now - t0
                if ready(i):
                    return answer_s, time.monotonic() - t0, t0
            if now > deadline:
                raise BenchError("node %d: not there within %.0f s of its start (RAFT.INFO last_applied %s)" % (
                    node.id, timeout, i and i.get("last_applied")))
            time.sleep(0.01)
    raise BenchError("node %d could not start: its ports stayed taken" % node.id)


def time_restart(cluster, node, leader, target, notes, timeout=600.0):
    """SIGTERM node, start it, and time its first answer and its applying
    target. Returns (stop_s, answer_s, applied_s, started line)."""
    marks = len(node.log_lines())
    stop_s = node.stop()
    answer_s, applied_s, _ = start_and_poll(cluster, node, lambda i: int(i["last_applied"]) >= target,
                                         timeout, notes)
    started = [l for l in node.log_lines()[marks:] if ": started" in l]
    return stop_s, answer_s, applied_s, (started[-1] if started else "(no 'started' line)")


def run_restart(binary, root, port_base, keys, rounds, keep):
    print("\n[2] restart of a node holding %d keys (cluster without automatic snapshots)" % keys, flush=True)
    cluster = start_cluster(binary, os.path.join(root, "restart"), port_base, NO_SNAPSHOTS)
    result = {"replay": [], "snapshot": [], "notes": []}
    try:
        cluster.wait_leader()
        load_s, resent = load_keys(cluster, keys)
        li, infos = cluster.wait_settled(timeout=300.0)
        leader, term = cluster.wait_leader()
        target = int(li["commit_index"])
        if resent:
            events = cluster.events_since({})
            result["notes"].append("[2] loading: %d batches sent again after a leader change; the nodes said: %s" % (
                resent, describe_events(events)))
        node = cluster.followers(leader)[0]
        print("    loaded %d keys in %.1f s (%.0f SET/s, 4 connections pipelined); commit index %d; "
              "node %d (a follower) is restarted; %s" % (keys, load_s, keys / load_s, target, node.id,
                                                          loadavg()), flush=True)
        print("    node %d: keys %s, log_bytes %s, snapshot_index %s, VmRSS %.1f MiB" % (
            node.id, infos[node.id]["keys"], infos[node.id]["log_bytes"],
            infos[node.id]["snapshot_index"], node.status_kib("VmRSS") / 1024.0), flush=True)
        for kind in ("replay", "snapshot"):
            if kind == "snapshot":
                snap_s = node.snapshot_now()
                i = node.info()
                result["snap_s"] = snap_s
                print("    RAFT.SNAPSHOT on node %d: +OK after %.2f s; snapshot_index %s, log_first_index %s, "
                      "log_bytes %s, snapshot file %.1f MiB" % (
                          node.id, snap_s, i["snapshot_index"], i["log_first_index"], i["log_bytes"],
                          mib(sum(node.disk()["snaps"]))), flush=True)
            for rnd in range(1, rounds + 1):
                stop_s, answer_s, applied_s, started = time_restart(cluster, node, leader, target,
                                                                    result["notes"])
                i = node.info()
                if int(i["keys"]) != keys:
                    raise BenchError("node %d holds %s keys after its restart, not %d" % (node.id, i["keys"], keys))
                result[kind].append((answer_s, applied_s))
                print("    %-8s round %d: SIGTERM to exit %.2f s; start to first answer %.2f s, "
                      "to last_applied %d %.2f s; VmRSS %.1f MiB; %s" % (
                          kind, rnd, stop_s, answer_s, target, applied_s,
                          node.status_kib("VmRSS") / 1024.0, started.strip()), flush=True)
        leader2, term2 = cluster.wait_leader()
        if term2 != term:
            result["notes"].append("restart: the term changed from %d to %d during the restarts (%s)" % (
                term, term2, "; ".join(cluster.elections()[-4:])))
        return result
    finally:
        cluster.remove(keep)


# ------------------------------------------------------------ 3: catch-up


def describe_events(events, limit=12):
    """The nodes' state changes (and the line before each), at most limit."""
    shown = " | ".join(events[:limit])
    return shown + (" | ... %d more lines" % (len(events) - limit) if len(events) > limit else "")


def sent_snapshots(cluster, marks):
    out = []
    for n in cluster.nodes:
        out.extend(l.strip() for l in n.log_lines()[marks.get(n.id, 0):] if "a snapshot (#" in l)
    return out


def run_catch_up(binary, root, port_base, name, label, node_args, keys, trials, keep, snapshot):
    print("\n[3] %s: a follower killed, %d keys written, the follower restarted (%s)" % (
        label, keys, " ".join(node_args) or "default thresholds"), flush=True)
    cluster = start_cluster(binary, os.path.join(root, name), port_base, node_args)
    times = []
    notes = []
    try:
        leader, term = cluster.wait_leader()
        cluster.wait_settled()
        for trial in range(1, trials + 1):
            leader, term = cluster.wait_leader()
            follower = cluster.followers(leader)[trial % 2]
            cluster.expected_down.add(follower.id)
            follower.kill9()
            marks_down = cluster.marks()
            load_s, resent = load_keys(cluster, keys, value_tag=b"t%d-" % trial)
            leader, term2 = cluster.wait_leader()
            snap_s = leader.snapshot_now() if snapshot else None
            li = leader.info()
            target = int(li["commit_index"])
            leader_digest = leader.digest()
            marks = len(follower.log_lines())
            sent_while_down = sent_snapshots(cluster, marks_down)
            marks_up = cluster.marks()
            events = [l for l in cluster.events_since(marks_down)]
            if resent or term2 != term:
                notes.append("[3] %s, trial %d: the leader changed while node %d was down (term %d -> %d, "
                             "%d batches sent again); the nodes said: %s" % (
                                 label, trial, follower.id, term, term2, resent, describe_events(events)))
            cluster.expected_down.discard(follower.id)
            seen = {}

            def caught_up(i):
                if int(i["last_applied"]) < target:
                    return False
                seen.setdefault("applied_s", time.monotonic())
                seen["digest"] = follower.digest()
                return seen["digest"] == leader_digest

            try:
                _, done_s, t0 = start_and_poll(cluster, follower, caught_up, 300.0, notes)
            except BenchError as e:
                raise BenchError("%s; its DEBUG DIGEST %s, the leader's %s at #%d" % (
                    e, seen.get("digest"), leader_digest, target))
            applied_s = seen["applied_s"] - t0
            i = follower.info()
            new_lines = follower.log_lines()[marks:]
            installs = [l.strip() for l in new_lines if "installed the snapshot" in l]
            sent_after = sent_snapshots(cluster, marks_up)
            times.append(done_s)
            print("    trial %d: node %d down while %d keys were written (%.1f s)%s; commit index %d; "
                  "node %d caught up in %.2f s (last_applied reached at %.2f s, DEBUG DIGEST equal at %.2f s); "
                  "snapshots_installed %d, snapshot_index %s" % (
                      trial, follower.id, keys, load_s,
                      "" if snap_s is None else ", RAFT.SNAPSHOT at the leader %.2f s" % snap_s,
                      target, follower.id, done_s, applied_s, done_s, int(i["snapshots_installed"]),
                      i["snapshot_index"]), flush=True)
            for what, lines in (("the leader, while node %d was down" % follower.id, sent_while_down),
                                ("the leader, after node %d started" % follower.id, sent_after),
                                ("node %d" % follower.id, installs)):
                for l in lines:
                    print("      %s: %s" % (what, l), flush=True)
            if sent_while_down:
                notes.append("[3] trial %d: the leader sent node %d a snapshot while it was down (%s), and node %d "
                             "installed %d snapshot%s after its start (%s)" % (
                                 trial, follower.id, "; ".join(sent_while_down), follower.id, len(installs),
                                 "" if len(installs) == 1 else "s", "; ".join(installs)))
            times[-1] = (done_s, int(i["snapshots_installed"]))
        return times, notes
    finally:
        cluster.remove(keep)


# ------------------------------------------------------------ 4: throughput


def run_throughput(binary, root, port_base, preload, requests, rounds, keep):
    print("\n[4] SET throughput at 50 clients, with snapshots (--snapshot-entries 5000, 10000 and 100000) "
          "and without", flush=True)
    configs = [(label, ["--snapshot-entries", str(every)]) for label, every in WITH_SNAPSHOTS]
    configs.append(("without", NO_SNAPSHOTS))
    clusters = {}
    results = {label: [] for label, _ in configs}
    cut = {label: 0 for label, _ in configs}
    notes = []
    try:
        for k, (label, args) in enumerate(configs):
            c = start_cluster(binary, os.path.join(root, "throughput-%d" % k), port_base + 10 * k, args)
            clusters[label] = c
            c.wait_leader()
            load_s, resent = load_keys(c, preload)
            li, _ = c.wait_settled(timeout=300.0)
            leader, _ = c.wait_leader()
            if resent:
                notes.append("[4] %s, preload: %d batches sent again after a leader change; the nodes said: %s" % (
                    label, resent, describe_events(c.events_since({}))))
            print("    %s: preloaded %d keys in %.1f s; leader node %d; keys %s, snapshot_index %s" % (
                label, preload, load_s, leader.id, li["keys"], li["snapshot_index"]), flush=True)
        order = []
        for rnd in range(rounds):
            labels = [label for label, _ in configs]
            order.extend(labels if rnd % 2 == 0 else labels[::-1])
        for n, label in enumerate(order, 1):
            c = clusters[label]
            leader, term = c.wait_leader()
            c.wait_settled(timeout=300.0)
            before = {x.id: int(x.info()["snapshots_taken"]) for x in c.nodes}
            la0 = os.getloadavg()[0]
            r = None
            for attempt in range(1, 4):
                marks = c.marks()
                try:
                    r = redis_benchmark(leader.client_port, ["-t", "set", "-c", "50", "-r", str(preload),
                                                             "-n", str(requests), "-d", "16", "-P", "1"])
                    break
                except BenchError as e:
                    events = c.events_since(marks)
                    if not [l for l in events if "->" in l]:
                        raise
                    cut[label] += 1
                    note = "[4] %s, run %d, attempt %d cut short: %s; the nodes said: %s" % (
                        label, n, attempt, e, describe_events(events))
                    notes.append(note)
                    print("      " + note + ("; running it again" if attempt < 3 else "; giving up this run"),
                          flush=True)
                    leader, term = c.wait_leader()
                    c.wait_settled(timeout=300.0)
                    before = {x.id: int(x.info()["snapshots_taken"]) for x in c.nodes}
            if r is None:
                continue
            c.wait_settled(timeout=300.0)
            infos = {x.id: x.info() for x in c.nodes}
            after = {i: int(v["snapshots_taken"]) for i, v in infos.items()}
            turns = ", ".join("node %d %.0f ms (%s)" % (i, int(v.get("loop_turn_max_us", 0)) / 1000.0,
                                                       v.get("loop_turn_max_phase", "?"))
                              for i, v in sorted(infos.items()))
            leader2, term2 = c.wait_leader()
            taken = {i: after[i] - before[i] for i in after}
            r["taken"] = taken
            r["leader"] = leader.id
            r["round"] = (n - 1) // len(configs)
            r["elections"] = term2 != term
            results[label].append(r)
            print("      %-14s %.0f ops/s, p50 %.2f ms, p99 %.2f ms (max %.1f ms); snapshots taken during "
                  "the run: leader %d, followers %s; load average %.2f -> %.2f" % (
                      label, r["ops"], r["p50"], r["p99"], r.get("max", float("nan")), taken[leader.id],
                      "/".join(str(taken[x.id]) for x in c.followers(leader)), la0, os.getloadavg()[0]),
                  flush=True)
            print("        the longest loop turn so far: %s" % turns, flush=True)
            if term2 != term:
                notes.append("throughput, %s, run %d: the term changed %d -> %d" % (label, n, term, term2))
            if r["errors"]:
                notes.append("throughput, %s, run %d: redis-benchmark reported errors: %s" % (
                    label, n, r["errors"][0].strip()))
        return results, cut, notes
    finally:
        for c in clusters.values():
            c.remove(keep)


# ------------------------------------------------------------ main

PARTS = ("footprint", "restart", "catch-up", "throughput")


class Skipped(Exception):
    """A part left out with --only."""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "build"), metavar="DIR",
                    help="where raftkv-node is")
    ap.add_argument("--port-base", type=int, default=31000, metavar="N", help="first port of the blocks used")
    ap.add_argument("--quick", action="store_true", help="a short run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--only", choices=PARTS, action="append", metavar="PART",
                    help="run only this part (%s); may be given more than once" % ", ".join(PARTS))
    args = ap.parse_args()
    parts = set(args.only or PARTS)
    if not 1024 <= args.port_base <= 65000:
        ap.error("--port-base must be from 1024 to 65000")
    q = args.quick
    sets = 100000 if q else 1000000
    restart_keys = 100000 if q else 1000000
    restart_rounds = 1 if q else 2
    catch_keys = 20000 if q else 100000
    catch_trials = 1 if q else 3
    preload = 20000 if q else 200000
    tp_requests = 30000 if q else 100000
    tp_rounds = 2 if q else 5

    binary = os.path.join(os.path.abspath(args.build), "raftkv-node")
    if not os.access(binary, os.X_OK):
        print("snapshot_bench: %s not found: build it first (--build DIR)" % binary, file=sys.stderr)
        return 1

    def on_signal(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    root = tempfile.mkdtemp(prefix="raftkv-snapbench-")
    summary = []
    notes = []
    ok = True
    load_start = loadavg()
    started = time.monotonic()

    def failed(what, e):
        nonlocal ok
        ok = False
        print("    failed: %s" % e, flush=True)
        summary.append("%s: could not be measured (%s)" % (what, e))

    try:
        print("snapshot bench: %s, 3 nodes, fsync on, %d CPUs, data in %s" % (
            binary, os.cpu_count() or 1, root), flush=True)
        print("at the start: " + load_start, flush=True)

        # 1: disk and memory
        fp = {}
        for k, (name, label, nargs) in enumerate((("footprint-compaction", "compaction (defaults)", []),
                                                  ("footprint-none", "no compaction", NO_SNAPSHOTS))
                                                 if "footprint" in parts else ()):
            try:
                fp[label] = run_footprint(binary, root, args.port_base + 10 * k, name, label, nargs, sets,
                                          args.keep, notes)
            except BenchError as e:
                failed("[1] %s" % label, e)
        if fp:
            summary.append("[1] after %d SETs over 10,000 keys (16-byte values, pipelined, 4 connections):" % sets)
        for label, res in fp.items():
            rows = res["rows"]
            summary.append("    %-21s data dir %s MiB on disk (log %s MiB, snapshots %s MiB); VmRSS %s MiB "
                           "(node %s; leader first); snapshots taken %s; load %.0f SET/s" % (
                               label + ":",
                               " / ".join("%.1f" % mib(x["disk"]["alloc"]) for x in rows_leader_first(rows)),
                               " / ".join("%.1f" % mib(x["disk"]["log"]) for x in rows_leader_first(rows)),
                               " / ".join("%.2f" % mib(sum(x["disk"]["snaps"])) for x in rows_leader_first(rows)),
                               " / ".join("%.1f" % (x["rss"] / 1024.0) for x in rows_leader_first(rows)),
                               "/".join(str(x["id"]) for x in rows_leader_first(rows)),
                               " / ".join(str(x["taken"]) for x in rows_leader_first(rows)), res["ops"]))
        if len(fp) == 2:
            a, b = fp["compaction (defaults)"]["rows"], fp["no compaction"]["rows"]
            da = sum(x["disk"]["alloc"] for x in a) / 3.0
            db = sum(x["disk"]["alloc"] for x in b) / 3.0
            ra = sum(x["rss"] for x in a) / 3.0
            rb = sum(x["rss"] for x in b) / 3.0
            summary.append("    per node on average: disk %.1f MiB with compaction vs %.1f MiB without (%.1fx less); "
                           "VmRSS %.1f MiB vs %.1f MiB (%.1fx less)" % (
                               mib(da), mib(db), db / da if da else float("nan"),
                               ra / 1024.0, rb / 1024.0, rb / ra if ra else float("nan")))
        print("  " + loadavg(), flush=True)

        # 2: restart
        try:
            if "restart" not in parts:
                raise Skipped()
            rs = run_restart(binary, root, args.port_base + 20, restart_keys, restart_rounds, args.keep)
            notes.extend(rs["notes"])
            for kind, text in (("snapshot", "from its snapshot"), ("replay", "replaying the whole log")):
                v = rs[kind]
                summary.append("[2] restart of a follower holding %d keys, %s: applied the commit index "
                               "%s s after its start (first answer %s s)%s" % (
                                   restart_keys, text, " / ".join("%.2f" % x[1] for x in v),
                                   " / ".join("%.2f" % x[0] for x in v),
                                   "; RAFT.SNAPSHOT took %.2f s" % rs["snap_s"] if kind == "snapshot" else ""))
        except Skipped:
            pass
        except BenchError as e:
            failed("[2] restart", e)
        print("  " + loadavg(), flush=True)

        # 3: catch-up
        for k, (name, label, nargs) in enumerate((("catchup-snapshot", "by snapshot (defaults)", []),
                                                  ("catchup-log", "by log (no snapshots)", NO_SNAPSHOTS))
                                                 if "catch-up" in parts else ()):
            try:
                t, cnotes = run_catch_up(binary, root, args.port_base + 30 + 10 * k, name, label, nargs,
                                         catch_keys, catch_trials, args.keep, snapshot=not nargs)
                notes.extend(cnotes)
                summary.append("[3] follower catching up %d keys %s: %s s (median %.2f s); snapshots_installed %s" % (
                    catch_keys, label, " / ".join("%.2f" % x[0] for x in t),
                    statistics.median(x[0] for x in t), " / ".join(str(x[1]) for x in t)))
            except BenchError as e:
                failed("[3] catch-up %s" % label, e)
        print("  " + loadavg(), flush=True)

        # 4: throughput
        try:
            if "throughput" not in parts:
                raise Skipped()
            res, cut, tnotes = run_throughput(binary, root, args.port_base + 50, preload, tp_requests, tp_rounds, args.keep)
            notes.extend(tnotes)
            med = {}
            for label, runs in res.items():
                if not runs:
                    raise BenchError("%s: every run was cut short by a leader change" % label)
                med[label] = {k: statistics.median(r[k] for r in runs) for k in ("ops", "p50", "p99")}
                summary.append("[4] SET, 50 clients, %d keys, %-13s ops/s %s (median %.0f); p50 median %.2f ms; "
                               "p99 %s ms (median %.2f)%s" % (
                                   preload, label + ":", " / ".join("%.0f" % r["ops"] for r in runs),
                                   med[label]["ops"], med[label]["p50"],
                                   " / ".join("%.2f" % r["p99"] for r in runs), med[label]["p99"],
                                   "; snapshots taken by the leader per run %s" % " / ".join(
                                       str(r["taken"][r["leader"]]) for r in runs)
                                   if label != "without" else ""))
                summary.append("    %s: runs complete: %d (with a leader change that redis-benchmark "
                               "survived: %d); runs cut short by a leader change and run again: %d" % (
                                   label, len(runs), sum(1 for r in runs if r["elections"]), cut[label]))
            wo = med["without"]
            for label, _ in WITH_SNAPSHOTS:
                w = med[label]
                ops_ratio = w["ops"] / wo["ops"]
                p99_ratio = w["p99"] / wo["p99"]
                summary.append("    %s / without (medians): throughput %.2f (%+.1f%%; goal: no more than 10%% "
                               "lower: %s), p50 %.2fx, p99 %.2fx (goal: at most 2x: %s)" % (
                                   label, ops_ratio, (ops_ratio - 1) * 100, "met" if ops_ratio >= 0.9 else "NOT met",
                                   w["p50"] / wo["p50"], p99_ratio, "met" if p99_ratio <= 2.0 else "NOT met"))
                # Each round's run against the run without snapshots of the
                # same round (minutes apart, not tens of minutes): less of
                # the machine's drift in it than in the ratio of medians.
                without_by_round = {r["round"]: r for r in res["without"]}
                paired = [r["ops"] / without_by_round[r["round"]]["ops"] for r in res[label]
                          if r["round"] in without_by_round]
                if paired:
                    summary.append("      round by round: throughput %s (median %.2f)" % (
                        " / ".join("%.2f" % x for x in paired), statistics.median(paired)))
        except Skipped:
            pass
        except BenchError as e:
            failed("[4] throughput", e)
    except BenchError as e:
        ok = False
        print("snapshot_bench: %s" % e, file=sys.stderr)
    except KeyboardInterrupt:
        ok = False
        print("snapshot_bench: interrupted", file=sys.stderr)
    finally:
        if args.keep:
            print("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)

    print("\n==== raftkv snapshots: 3 nodes, fsync on, this machine (%d CPUs), %.0f s ====" % (
        os.cpu_count() or 1, time.monotonic() - started))
    print("at the start: %s; at the end: %s" % (load_start, loadavg()))
    for line in summary:
        print(line)
    if notes:
        print("notes:")
        for n in notes:
            print("  - " + n)
    return 0 if ok else 1


def rows_leader_first(rows):
    return sorted(rows, key=lambda x: (x["role"] != "leader", x["id"]))


if __name__ == "__main__":
    sys.exit(main())

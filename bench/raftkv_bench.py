#!/usr/bin/env python3
"""raftkv_bench.py - figures for a 3-node raftkv cluster on this machine.

Usage:
    python3 bench/raftkv_bench.py [--build DIR] [--port-base N] [--quick]
                                  [--requests N] [--trials N] [--keys N] [--keep]

Starts 3 raftkv-node processes (fsync on, default timers) in a temporary
directory and measures:

  0. The disk: fdatasync latency of small appends (p50, p99, max) for a
     few seconds. A thread keeps timing one fdatasync every 50 ms while
     the figures are taken, so that slow phases can be told apart: a disk
     stall shows there, a stall of the nodes alone does not.
  1. SET throughput and latency against the leader with redis-benchmark
     (Debian redis-tools): `redis-benchmark -t set -n N -c 1 -P 1` and the
     same with -c 50 (5 N requests). ops/s, p50 and p99 come from
     redis-benchmark's summary; its 250 ms progress ticks show throughput
     dips. redis-benchmark exits at the first error reply, so a run that a
     leader change stopped is run again (at most 3 times) and reported.
  2. Failover: a client writes without pause (SET, following MOVED and
     TRYAGAIN to whichever node leads); the leader is killed with SIGKILL,
     and the time from the kill to the acknowledgement of the first write
     sent after it is taken. The killed node is restarted and must catch
     up before the next trial. Median and max over the trials.
  3. Memory: on a fresh cluster, loads K keys (key:000001 -> a 16-byte
     value, pipelined) and reads VmRSS of the leader and both followers
     from /proc/PID/status once every node has applied the log.

Then it prints a summary block, with notes on anything that disturbed the
figures (elections, other processes using the CPUs, disk stalls). Node
processes and the temporary directory are always removed.

Options:
  --build DIR      where raftkv-node is (default: build/ next to bench/)
  --port-base N    ports N+1..N+3 (peers) and N+6..N+8 (clients) for the
                   benchmark cluster, N+11..N+18 for the memory one; a block
                   with a port in use moves up by 100 (default 31000)
  --quick          a short run: 2000 requests, 3 trials, 10000 keys
  --requests N     SET requests with 1 client (default 20000; 50 clients get 5 N)
  --trials N       failover trials (default 20)
  --keys N         keys loaded for the memory figure (default 100000)
  --keep           keep the temporary directory (node logs) and print its path

Exit status 0 when every figure was measured, 1 otherwise. Python 3 stdlib only.
"""

import argparse
import ctypes
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"


class BenchError(Exception):
    """A figure could not be measured."""


# ------------------------------------------------------------ RESP client


class RespError(str):
    """An error reply (-ERR ..., -MOVED ..., -TRYAGAIN ...)."""


class RespConn:
    """A small blocking Redis-protocol (RESP2) connection."""

    def __init__(self, host, port, timeout=2.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addr = "%s:%d" % (host, port)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by " + self.addr)
        self.buf += data

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def read_reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise ConnectionError("bad reply from %s: %r" % (self.addr, line[:40]))

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        return self.read_reply()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.read_reply() for _ in commands]


# ------------------------------------------------------------ the cluster

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In the child before exec: a node gets SIGKILL if the bench itself is
    killed, so no node outlives it even then."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def parse_fields(reply):
    """The "name:value" lines of RAFT.INFO or RAFT.LATENCY as a dict of strings."""
    fields = {}
    for line in reply.decode().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


class Node:
    def __init__(self, cluster, node_id, peer_port, client_port):
        self.cluster = cluster
        self.id = node_id
        self.peer_port = peer_port
        self.client_port = client_port
        self.data_dir = os.path.join(cluster.root, "node%d" % node_id)
        self.log_path = os.path.join(cluster.root, "node%d.log" % node_id)
        self.proc = None
        self.killed = False  # by the bench, on purpose
        self.info_conn = None

    def start(self):
        self.killed = False
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [
                    self.cluster.binary,
                    "--config", self.cluster.conf_path,
                    "--id", str(self.id),
                    "--data", self.data_dir,
                ] + list(self.cluster.node_args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C reaches the bench only; it stops the nodes
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL, without waiting: the caller times what follows."""
        self.killed = True
        os.kill(self.proc.pid, signal.SIGKILL)

    def stop(self):
        if self.info_conn is not None:
            self.info_conn.close()
            self.info_conn = None
        if not self.running():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def info(self):
        """RAFT.INFO as a dict, or None when the node does not answer. The
        connection is kept: polling must not fill the port range with
        sockets in TIME_WAIT."""
        try:
            if self.info_conn is None:
                self.info_conn = RespConn(HOST, self.client_port, timeout=1.0)
            reply = self.info_conn.call("RAFT.INFO")
        except (OSError, ConnectionError, ValueError):
            if self.info_conn is not None:
                self.info_conn.close()
            self.info_conn = None
            return None
        if not isinstance(reply, bytes):
            return None
        return parse_fields(reply)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError("no VmRSS for node %d" % self.id)


def check_port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the node does: TIME_WAIT is fine
    try:
        s.bind((HOST, port))
    except OSError:
        raise BenchError("port %d is in use" % port)
    finally:
        s.close()


def peer_url(peers, root, node):
    """A node's nanomsg URL: tcp:// on loopback, or ipc:// (a Unix socket in
    root, as the cockpit's clusters use)."""
    if peers == "ipc":
        return "ipc://%s/peer%d.ipc" % (root, node.id)
    return "tcp://%s:%d" % (HOST, node.peer_port)


class Cluster:
    def __init__(self, binary, root, port_base, peers="tcp", node_args=()):
        self.binary = binary
        self.node_args = node_args
        self.root = root
        os.makedirs(root)
        self.conf_path = os.path.join(root, "cluster.conf")
        self.nodes = [Node(self, i, port_base + i, port_base + 5 + i) for i in (1, 2, 3)]
        with open(self.conf_path, "w") as f:
            f.write("# id  peer  client\n")
            for n in self.nodes:
                f.write("%d %s %s:%d\n" % (n.id, peer_url(peers, root, n), HOST, n.client_port))

    def start(self):
        for n in self.nodes:
            n.start()

    def stop(self):
        for n in self.nodes:
            n.stop()

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def check_alive(self):
        for n in self.nodes:
            if n.proc is not None and not n.killed and n.proc.poll() is not None:
                raise BenchError(
                    "node %d exited with status %d (see %s)" % (n.id, n.proc.returncode, n.log_path)
                )

    def wait_leader(self, timeout=10.0, exclude=None):
        """The node that says it leads, once the others agree; (node, term)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            infos = {n.id: n.info() for n in self.nodes if n.running() and n.id != exclude}
            leaders = [
                (int(i["term"]), nid)
                for nid, i in infos.items()
                if i is not None and i.get("role") == "leader"
            ]
            if leaders:
                term, nid = max(leaders)
                agree = sum(
                    1 for i in infos.values()
                    if i is not None and i.get("leader") == str(nid) and int(i["term"]) == term
                )
                if agree >= 2:
                    return self.node(nid), term
            time.sleep(0.02)
        raise BenchError("no leader within %.0f s" % timeout)

    def wait_applied(self, nodes, timeout=30.0):
        """Wait until every node in nodes has applied the leader's commit index."""
        leader, _ = self.wait_leader()
        info = leader.info()
        if info is None:
            raise BenchError("leader %d does not answer RAFT.INFO" % leader.id)
        target = int(info["commit_index"])
        deadline = time.monotonic() + timeout
        for n in nodes:
            while True:
                self.check_alive()
                i = n.info()
                if i is not None and i.get("leader", "0") != "0" and int(i["last_applied"]) >= target:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(
                        "node %d did not apply index %d within %.0f s" % (n.id, target, timeout)
                    )
                time.sleep(0.02)
        return target

    def _state_lines(self, node):
        try:
            with open(node.log_path, errors="replace") as f:
                return [l.rstrip("\n") for l in f if "->" in l or "new term" in l]
        except FileNotFoundError:
            return []

    def event_marks(self):
        """How many state-change lines each node has printed so far."""
        return {n.id: len(self._state_lines(n)) for n in self.nodes}

    def events_since(self, marks):
        """State-change lines printed since event_marks() gave marks."""
        lines = []
        for n in self.nodes:
            lines.extend(self._state_lines(n)[marks.get(n.id, 0) :])
        return lines


def start_cluster(binary, root, port_base, peers="tcp", node_args=()):
    """A started cluster on port_base, or on the next free block of 10 ports:
    loopback connections take ephemeral ports from the same range. peers:
    "tcp" or "ipc", how the nodes reach each other; node_args: more flags."""
    for attempt in range(20):
        base = port_base + 100 * attempt
        try:
            for port in [base + i for i in (1, 2, 3, 6, 7, 8)]:
                check_port_free(port)
        except BenchError as e:
            print("  %s; trying %d" % (e, base + 100), flush=True)
            continue
        cluster = Cluster(binary, root, base, peers, node_args)
        cluster.start()
        return cluster
    raise BenchError("no free ports from %d on: pick another --port-base" % port_base)


# ------------------------------------------------------------ machine load

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def proc_stat_cpu():
    """The machine's "cpu" line of /proc/stat (all CPUs, since boot), in
    ticks: user, nice, system, idle, iowait, irq, softirq, steal, ..."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def cpu_busy_s():
    """CPU seconds spent by processes of the whole machine since boot (all
    CPUs): user, nice and system time. Interrupts are left out: loopback
    networking is mostly ours."""
    v = proc_stat_cpu()
    return (v[0] + v[1] + v[2]) / TICKS_PER_S


def steal_s():
    """CPU seconds the hypervisor gave to other machines while this one's
    vCPUs wanted to run (the steal column of /proc/stat), all CPUs, since
    boot. Figures taken while it grows were measured on a machine that was
    not all there."""
    v = proc_stat_cpu()
    return (v[7] if len(v) > 7 else 0) / TICKS_PER_S


def kernel_threads_cpu_s():
    """CPU seconds of kernel threads (block I/O, journal): work the nodes'
    fsyncs cause as much as anyone's."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[6]) & 0x00200000:  # flags: PF_KTHREAD
                total += (int(fields[11]) + int(fields[12])) / TICKS_PER_S
        except (OSError, IndexError, ValueError):
            pass
    return total


def proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def own_cpu_s(cluster):
    """CPU seconds used by this script, its reaped children and the running nodes."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total + sum(proc_cpu_s(n.proc.pid) for n in cluster.nodes if n.running())


def machine_busy_percent(seconds):
    """Percent of all CPUs busy over the next seconds, this script aside."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0, busy0 = time.monotonic(), cpu_busy_s()
    time.sleep(seconds)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    wall = time.monotonic() - t0
    return max(0.0, cpu_busy_s() - busy0 - own) / (wall * (os.cpu_count() or 1)) * 100.0


class LoadMeter:
    """How much of the machine other processes took during a phase."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.t0, self.busy0, self.own0 = time.monotonic(), cpu_busy_s(), own_cpu_s(cluster)
        self.kthreads0 = kernel_threads_cpu_s()

    def others_percent(self):
        """Percent of all CPUs busy with processes other than ours."""
        wall = time.monotonic() - self.t0
        busy = cpu_busy_s() - self.busy0
        own = own_cpu_s(self.cluster) - self.own0
        own += kernel_threads_cpu_s() - self.kthreads0
        return max(0.0, busy - own) / (wall * (os.cpu_count() or 1)) * 100.0


# ------------------------------------------------------------ the disk


def fsync_probe(path, seconds):
    """fdatasync latency of small appends on the disk under path (ms):
    p50, p99, max. One fsync plus two loopback round trips is the floor of a
    replicated write."""
    name = os.path.join(path, "fsync-probe")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lat = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.write(fd, b"x" * 64)
            t = time.monotonic()
            os.fdatasync(fd)
            lat.append((time.monotonic() - t) * 1000.0)
    finally:
        os.close(fd)
        os.unlink(name)
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1], len(lat)


def fsync_pair_probe(path, seconds):
    """Whether the disk under path overlaps two fdatasyncs. Rounds of two
    kinds, taken in turn: one process appends and fdatasyncs alone; two
    processes, each on a file of its own, do so at the same moment (the way
    a leader and a follower on one machine sync the same entry). Returns the
    p50 (ms) of one alone and of the pair (from the start to both done), and
    the rounds of each. A pair near 1x one alone: the disk runs them side by
    side; near 2x: one after the other, and a replicated write at one client
    waits for two fdatasyncs where a single server waits for one."""
    names = [os.path.join(path, "pair-probe-%d" % i) for i in (0, 1)]
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:  # the second writer: one append and fdatasync a go
        code = 0
        try:
            os.close(go_w)
            os.close(done_r)
            fd = os.open(names[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            while os.read(go_r, 1) == b"g":
                os.write(fd, b"x" * 64)
                os.fdatasync(fd)
                os.write(done_w, b"d")
        except OSError:
            code = 1
        os._exit(code)
    os.close(go_r)
    os.close(done_w)
    alone, pair = [], []
    fd = os.open(names[0], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            os.write(fd, b"x" * 64)
            os.fdatasync(fd)
            alone.append((time.monotonic() - t) * 1000.0)
            t = time.monotonic()
            os.write(go_w, b"g")
            os.write(fd, b"x" * 64)
            os.fdatasync(fd)
            if os.read(done_r, 1) != b"d":
                break
            pair.append((time.monotonic() - t) * 1000.0)
    finally:
        os.close(fd)
        os.close(go_w)  # the child reads end of file and exits
        os.waitpid(child, 0)
        os.close(done_r)
        for name in names:
            if os.path.exists(name):
                os.unlink(name)
    if not alone or not pair:
        return None
    alone.sort()
    pair.sort()
    return alone[len(alone) // 2], pair[len(pair) // 2], len(pair)


class DiskWatch(threading.Thread):
    """Times one small fdatasync every 50 ms, to tell disk stalls from
    stalls of the nodes themselves."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.name_ = os.path.join(path, "disk-watch")
        self.samples = []  # (monotonic start, ms)
        self.stop_flag = threading.Event()

    def run(self):
        fd = os.open(self.name_, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self.stop_flag.wait(0.05):
                os.write(fd, b"x" * 64)
                t = time.monotonic()
                os.fdatasync(fd)
                self.samples.append((t, (time.monotonic() - t) * 1000.0))
        finally:
            os.close(fd)

    def stalls(self, start, end, over_ms=50.0):
        """(seconds after start, ms) of the probe fsyncs slower than over_ms."""
        return [(t - start, ms) for t, ms in list(self.samples) if start <= t <= end and ms > over_ms]

    def stop(self):
        self.stop_flag.set()
        self.join(5.0)


def describe_stalls(stalls):
    shown = ", ".join("%.2f s: %.0f ms" % s for s in stalls[:10])
    return shown + (" ..." if len(stalls) > 10 else "")


# ------------------------------------------------------------ 1: redis-benchmark

TICK_RE = re.compile(r"rps=([0-9.]+) \(overall: ([0-9.]+)\) avg_msec=([0-9.]+|-?nan)")
PCT_RE = re.compile(r"^\s*([0-9.]+)% <= ([0-9.]+) milliseconds")


def parse_redis_benchmark(text):
    """ops/s, p50, p99 (ms) and the 250 ms progress ticks from default output."""
    result = {"ticks": []}
    for part in re.split(r"[\r\n]", text):
        m = TICK_RE.search(part)
        if m and m.group(3) not in ("nan", "-nan"):
            result["ticks"].append(float(m.group(1)))
    m = re.search(r"throughput summary:\s*([0-9.]+)\s*requests per second", text)
    if m:
        result["ops"] = float(m.group(1))
    # The summary table: a header naming the columns, then one row of numbers.
    lines = text.replace("\r", "\n").split("\n")
    for i, line in enumerate(lines[:-1]):
        cols = line.split()
        if "p50" in cols and "p99" in cols:
            values = lines[i + 1].split()
            if len(values) == len(cols):
                try:
                    row = dict(zip(cols, (float(v) for v in values)))
                except ValueError:
                    continue
                result.update(p50=row["p50"], p99=row["p99"])
                if "avg" in row:
                    result["avg"] = row["avg"]
                if "max" in row:
                    result["max"] = row["max"]
    # Older or differently formatted output: the percentile distribution.
    if "p50" not in result:
        dist = [(float(a), float(b)) for a, b in (PCT_RE.match(l).groups() for l in lines if PCT_RE.match(l))]
        for pct, name in ((50.0, "p50"), (99.0, "p99")):
            over = [ms for p, ms in dist if p >= pct]
            if over:
                result[name] = over[0]
    if "ops" not in result:
        m = re.search(r"SET:\s*([0-9.]+)\s*requests per second", text)
        if m:
            result["ops"] = float(m.group(1))
    return result


class LeaderChanged(BenchError):
    """redis-benchmark stopped at an error reply that a leader change caused."""


def run_redis_benchmark_once(cluster, clients, requests, disk):
    leader, term = cluster.wait_leader()
    marks = cluster.event_marks()
    cmd = ["redis-benchmark", "-h", HOST, "-p", str(leader.client_port),
           "-t", "set", "-n", str(requests), "-c", str(clients), "-P", "1"]
    print("  $ " + " ".join(cmd), flush=True)
    meter = LoadMeter(cluster)
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=max(120, requests / 100))
    except FileNotFoundError:
        raise BenchError("redis-benchmark not found (Debian package redis-tools)")
    except subprocess.TimeoutExpired:
        raise BenchError("redis-benchmark did not finish in time")
    ended = time.monotonic()
    out = done.stdout.decode(errors="replace")
    err = done.stderr.decode(errors="replace").strip()
    r = parse_redis_benchmark(out)
    events = cluster.events_since(marks)
    stalls = disk.stalls(started, ended)
    if done.returncode != 0 or "ops" not in r or "p50" not in r:
        why = ((err or out).strip().splitlines()[-1:] or ["no output"])[0][-200:]
        text = "redis-benchmark stopped (status %d): %s" % (done.returncode, why)
        if events:
            text += "; state changes: " + "; ".join(events)
        if stalls:
            text += "; disk stalls: " + describe_stalls(stalls)
        if events or "TRYAGAIN" in why or "MOVED" in why:
            raise LeaderChanged(text)
        raise BenchError(text)
    r["errors"] = [l for l in re.split(r"[\r\n]", out + "\n" + err) if "rror" in l]
    r["elections"] = events
    r["stalls"] = stalls
    r["leader"], r["term"] = leader.id, term
    r["others"] = meter.others_percent()
    return r


def run_set_benchmark(cluster, clients, requests, disk, attempts=3):
    """redis-benchmark against the leader. It exits at the first error reply,
    so a run stopped by a leader change is started again (up to attempts)."""
    stopped = []
    for _ in range(attempts):
        try:
            r = run_redis_benchmark_once(cluster, clients, requests, disk)
        except LeaderChanged as e:
            print("  %s: running it again" % e, flush=True)
            stopped.append(str(e))
            continue
        r["stopped"] = stopped
        return r
    raise BenchError("%d runs in a row stopped by a leader change (last: %s)" % (attempts, stopped[-1]))


def describe_ticks(ticks):
    """Progress ticks (250 ms each): min / median / max, and those under half the median."""
    body = ticks[1:-1] if len(ticks) > 3 else ticks  # first and last are partial
    if not body:
        return "no progress ticks", []
    med = statistics.median(body)
    dips = [(i, t) for i, t in enumerate(body, 1) if t < med / 2]
    text = "250 ms ticks: min %.0f, median %.0f, max %.0f ops/s; %d of %d under half the median" % (
        min(body), med, max(body), len(dips), len(body))
    return text, dips


# ------------------------------------------------------------ 2: failover


class Writer(threading.Thread):
    """Writes SET without pause to whichever node leads, following MOVED."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports = ports
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.acked = threading.Event()
        self.kill_at = None
        self.first_ack = None
        self.acks = 0
        self.last_ack_at = 0.0
        self.errors = {}

    def arm(self, kill_at):
        with self.lock:
            self.kill_at = kill_at
            self.first_ack = None
            self.acked.clear()

    def _note(self, what):
        self.errors[what] = self.errors.get(what, 0) + 1

    def run(self):
        # One connection a node, kept open: hopping between nodes after
        # MOVED must not leave thousands of sockets in TIME_WAIT.
        conns = {}
        port = self.ports[0]
        seq = 0
        value = b"v" * 16
        while not self.stop_flag.is_set():
            conn = conns.get(port)
            if conn is None:
                try:
                    conn = conns[port] = RespConn(HOST, port, timeout=1.0)
                except OSError:
                    self._note("connect refused")
                    port = self.ports[(self.ports.index(port) + 1) % len(self.ports)]
                    time.sleep(0.002)
                    continue
            seq += 1
            sent_at = time.monotonic()
            try:
                reply = conn.call(b"SET", b"failover:%d" % (seq % 1000), value)
            except (OSError, ConnectionError, ValueError):
                self._note("connection lost")
                conn.close()
                del conns[port]
                port = self.ports[(self.ports.index(port) + 1) % len(self.ports)]
                continue
            now = time.monotonic()
            if isinstance(reply, RespError):
                word = reply.split(" ", 1)[0]
                self._note(word)
                if word == "MOVED":
                    new_port = int(reply.split()[-1].rsplit(":", 1)[1])
                    if new_port in self.ports and new_port != port:
                        port = new_port
                        continue
                time.sleep(0.002)
                continue
            if reply != "OK":
                self._note("unexpected reply")
                continue
            with self.lock:
                self.acks += 1
                self.last_ack_at = now
                if self.kill_at is not None and self.first_ack is None and sent_at > self.kill_at:
                    self.first_ack = now
                    self.acked.set()
        for conn in conns.values():
            conn.close()


def wait_writing(writer, timeout=10.0):
    """Until the writer has had acknowledgements for a little while."""
    deadline = time.monotonic() + timeout
    with writer.lock:
        start = writer.acks
    while time.monotonic() < deadline:
        time.sleep(0.05)
        with writer.lock:
            if writer.acks - start >= 20 and time.monotonic() - writer.last_ack_at < 0.05:
                return
    raise BenchError("the writer makes no progress")


def run_failover(cluster, trials, disk):
    writer = Writer([n.client_port for n in cluster.nodes])
    writer.start()
    times = []
    notes = []
    rejoin_candidacies = []
    try:
        for trial in range(1, trials + 1):
            wait_writing(writer)
            leader, term = cluster.wait_leader()
            marks = cluster.event_marks()
            kill_at = time.monotonic()
            writer.arm(kill_at)
            leader.kill9()
            if not writer.acked.wait(15.0):
                raise BenchError("trial %d: no write acknowledged within 15 s of the kill" % trial)
            ms = (writer.first_ack - kill_at) * 1000.0
            times.append(ms)
            leader.proc.wait()
            new_leader, new_term = cluster.wait_leader(exclude=leader.id)
            # Bring the killed node back and let it catch up while writes go on.
            leader.start()
            restarted_at = time.monotonic()
            cluster.wait_applied([leader])
            caught_up_ms = (time.monotonic() - restarted_at) * 1000.0
            wait_writing(writer)
            after, after_term = cluster.wait_leader()
            events = cluster.events_since(marks)
            line = "  trial %2d: killed node %d (term %d): write acknowledged after %6.1f ms, " \
                   "node %d leads term %d; node %d caught up in %.0f ms" % (
                       trial, leader.id, term, ms, new_leader.id, new_term, leader.id, caught_up_ms)
            stalls = disk.stalls(kill_at, writer.first_ack)
            if stalls:
                line += "; disk stalls after the kill: " + describe_stalls(stalls)
            print(line, flush=True)
            rejoin = [e for e in events if e.startswith("node %d:" % leader.id) and "-> Candidate" in e]
            if rejoin:
                rejoin_candidacies.append(trial)
            if after_term != new_term:
                note = ("trial %d: the restarted node %d stood for election %d times and deposed "
                        "leader node %d (term %d -> %d, %d leaders elected meanwhile)" % (
                            trial, leader.id, len(rejoin), new_leader.id, new_term, after_term,
                            len([e for e in events if "-> Leader" in e])))
                notes.append(note)
                print("    " + note, flush=True)
            if new_term != term + 1:
                notes.append("trial %d: the election after the kill took %d terms" % (trial, new_term - term))
    finally:
        writer.stop_flag.set()
        writer.join(5.0)
    if rejoin_candidacies:
        notes.append("the restarted node stood for election before hearing from the leader in "
                     "%d of %d trials (trials %s)" % (len(rejoin_candidacies), len(times),
                                                    ", ".join(map(str, rejoin_candidacies))))
    return times, notes, dict(writer.errors)


# ------------------------------------------------------------ 3: memory


def run_memory(cluster, keys):
    leader, _ = cluster.wait_leader()
    cluster.wait_applied(cluster.nodes)
    base = {n.id: n.rss_kib() for n in cluster.nodes}
    conn = RespConn(HOST, leader.client_port, timeout=30.0)
    started = time.monotonic()
    try:
        batch = 1000
        for first in range(1, keys + 1, batch):
            cmds = [
                (b"SET", b"key:%06d" % i, b"%016d" % i)
                for i in range(first, min(first + batch, keys + 1))
            ]
            for reply in conn.pipeline(cmds):
                if reply != "OK":
                    raise BenchError("loading keys: SET answered %r" % (reply,))
        load_s = time.monotonic() - started
        check = conn.call(b"GET", b"key:%06d" % keys)
        if check != b"%016d" % keys:
            raise BenchError("key:%06d reads back as %r" % (keys, check))
    finally:
        conn.close()
    cluster.wait_applied(cluster.nodes)
    for n in cluster.nodes:
        i = n.info()
        if i is not None and "keys" in i and int(i["keys"]) != keys:
            raise BenchError("node %d holds %s keys, not %d" % (n.id, i["keys"], keys))
    rss = {n.id: n.rss_kib() for n in cluster.nodes}
    return leader, base, rss, load_s


# ------------------------------------------------------------ main


def mib(kib):
    return kib / 1024.0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "build"), metavar="DIR", help="where raftkv-node is")
    ap.add_argument("--port-base", type=int, default=31000, metavar="N", help="first port of the blocks used")
    ap.add_argument("--quick", action="store_true", help="a short run")
    ap.add_argument("--requests", type=int, metavar="N", help="SET requests with 1 client")
    ap.add_argument("--trials", type=int, metavar="N", help="failover trials")
    ap.add_argument("--keys", type=int, metavar="N", help="keys for the memory figure")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    quick = args.quick
    requests = args.requests or (2000 if args.quick else 20000)
    trials = args.trials or (3 if args.quick else 20)
    keys = args.keys or (10000 if args.quick else 100000)
    if not 1024 <= args.port_base <= 65500:
        ap.error("--port-base must be from 1024 to 65500")
    if keys > 999999:
        ap.error("--keys must be below 1000000")

    binary = os.path.join(os.path.abspath(args.build), "raftkv-node")
    if not os.access(binary, os.X_OK):
        print("raftkv_bench: %s not found: build it first (--build DIR)" % binary, file=sys.stderr)
        return 1

    # SIGTERM and SIGHUP end the run through the same clean-up as ^C.
    def on_signal(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    root = tempfile.mkdtemp(prefix="raftkv-bench-")
    disk = None
    clusters = []
    summary = []
    notes = []
    ok = True
    try:
        print("raftkv bench: %s, 3 nodes, fsync on, data in %s" % (binary, root), flush=True)
        idle_busy = machine_busy_percent(1.0)
        print("before the start, other processes kept %.0f%% of the %d CPUs busy" % (
            idle_busy, os.cpu_count() or 1), flush=True)
        if idle_busy > 10:
            notes.append("before the start, other processes kept %.0f%% of the CPUs busy: "
                         "other work shares the machine" % idle_busy)
        p50, p99, worst, count = fsync_probe(root, 1.0 if quick else 3.0)
        disk_line = "fdatasync of a small append on this disk: p50 %.2f ms, p99 %.2f ms, max %.1f ms" % (
            p50, p99, worst)
        print(disk_line + " (%d in a row)" % count, flush=True)
        disk = DiskWatch(root)
        disk.start()
        main_cluster = start_cluster(binary, os.path.join(root, "bench"), args.port_base)
        clusters.append(main_cluster)
        leader, term = main_cluster.wait_leader()
        print("leader: node %d (term %d)" % (leader.id, term), flush=True)

        for clients, n in ((1, requests), (50, 5 * requests)):
            label = "SET %d client%s" % (clients, "" if clients == 1 else "s")
            print("\n%s: %d requests" % (label, n), flush=True)
            try:
                r = run_set_benchmark(main_cluster, clients, n, disk)
            except BenchError as e:
                ok = False
                print("  failed: %s" % e, flush=True)
                summary.append("%s: failed (%s)" % (label, e))
                continue
            ticks, dips = describe_ticks(r["ticks"])
            line = "%s: %.0f ops/s p50 %.2f ms p99 %.2f ms" % (label, r["ops"], r["p50"], r["p99"])
            print("  " + line, flush=True)
            print("  avg %.2f ms, max %.2f ms; %s" % (
                r.get("avg", float("nan")), r.get("max", float("nan")), ticks))
            print("  ticks: " + " ".join("%.0f" % t for t in r["ticks"]))
            if dips:
                shown = ", ".join("%.2f s: %.0f" % (i * 0.25, t) for i, t in dips[:12])
                print("  dips (time into the run: ops/s): %s%s" % (shown, " ..." if len(dips) > 12 else ""))
                notes.append("%s: %d of %d 250 ms ticks under half the median" % (
                    label, len(dips), len(r["ticks"]) - 2))
            if r["stalls"]:
                print("  disk stalls (probe fdatasync over 50 ms, time into the run): " +
                      describe_stalls(r["stalls"]))
            print("  other processes kept %.0f%% of the %d CPUs busy meanwhile" % (
                r["others"], os.cpu_count() or 1))
            if r["others"] > 10:
                notes.append("%s: other processes kept %.0f%% of the CPUs busy: the figure is low" % (
                    label, r["others"]))
            for e in r["errors"][:5]:
                print("  redis-benchmark: " + e.strip())
            if r["errors"]:
                notes.append("%s: redis-benchmark reported %d errors" % (label, len(r["errors"])))
            if r["elections"]:
                notes.append("%s: elections during the run: %s" % (label, "; ".join(r["elections"])))
            for stop in r["stopped"]:
                notes.append("%s: a run was stopped by a leader change: %s" % (label, stop))
            summary.append(line)

        print("\nfailover: %d trials" % trials, flush=True)
        try:
            times, fnotes, werrors = run_failover(main_cluster, trials, disk)
            line = "failover (%d trials): median %.0f ms, max %.0f ms" % (
                len(times), statistics.median(times), max(times))
            print("  " + line + " (min %.0f ms)" % min(times))
            print("  client saw: " + ", ".join("%s %d" % kv for kv in sorted(werrors.items())))
            summary.append(line)
            notes.extend(fnotes)
        except BenchError as e:
            ok = False
            print("  failed: %s" % e, flush=True)
            summary.append("failover: failed (%s)" % e)
        main_cluster.stop()

        print("\nmemory: %d keys on a fresh cluster" % keys, flush=True)
        try:
            mem_cluster = start_cluster(binary, os.path.join(root, "memory"), args.port_base + 10)
            clusters.append(mem_cluster)
            leader, base, rss, load_s = run_memory(mem_cluster, keys)
            followers = [n for n in mem_cluster.nodes if n.id != leader.id]
            print("  loaded in %.1f s (%.0f SET/s pipelined); RSS before: %s" % (
                load_s, keys / load_s,
                ", ".join("node %d %.1f MiB" % (i, mib(k)) for i, k in sorted(base.items()))))
            line = "RSS with %d keys: leader %.1f MiB, followers %s MiB" % (
                keys, mib(rss[leader.id]), " / ".join("%.1f" % mib(rss[n.id]) for n in followers))
            print("  " + line, flush=True)
            summary.append(line)
            mem_cluster.stop()
        except BenchError as e:
            ok = False
            print("  failed: %s" % e, flush=True)
            summary.append("memory: failed (%s)" % e)
    except BenchError as e:
        ok = False
        print("raftkv_bench: %s" % e, file=sys.stderr)
    except KeyboardInterrupt:
        ok = False
        print("raftkv_bench: interrupted", file=sys.stderr)
    finally:
        for c in clusters:
            c.stop()
        if disk is not None:
            disk.stop()
        if not ok:
            for c in clusters:
                for n in c.nodes:
                    try:
                        with open(n.log_path, errors="replace") as f:
                            tail = f.readlines()[-5:]
                        print("--- %s (last lines)\n%s" % (n.log_path, "".join(tail)), file=sys.stderr)
                    except FileNotFoundError:
                        pass
        if args.keep:
            print("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)

    print("\n==== raftkv: 3 nodes, fsync on, this machine ====")
    if disk is not None:
        print(disk_line)
    for line in summary:
        print(line)
    if notes:
        print("notes:")
        for n in notes:
            print("  - " + n)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

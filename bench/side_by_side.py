#!/usr/bin/env python3
"""side_by_side.py - raftkv beside Redis and etcd on this machine, one run.

Usage:
    python3 bench/side_by_side.py [--build DIR] [--port-base N] [--quick]
                                  [--rounds N] [--requests N] [--keys N]
                                  [--trials N] [--no-etcd] [--keep]
                                  [--peers ipc|tcp] [--baseline DIR]
                                  [--baseline-peers ipc|tcp] [--no-lease]
                                  [--warmup N]

Three systems, all with every write synced to the same disk before it is
acknowledged:

  raftkv  3 raftkv-node processes (fsync on), redis-benchmark against the
          leader. The nodes reach each other over ipc:// (Unix sockets),
          as the cockpit's clusters on one machine do; --peers tcp puts
          them on tcp:// loopback ports, as nodes on separate machines
          would be.
  redis   one redis-server --appendonly yes --appendfsync always (Debian
          redis-server), no replication, redis-benchmark against it.
  etcd    a 3-member etcd (Debian etcd-server, 3.4) when installed, load
          against the leader. Debian ships no etcd benchmark tool (it lives
          in etcd's tools/benchmark, a separate Go program), so the load
          comes from a small generator below: one Python process, one
          keep-alive HTTP/1.1 connection a client, requests to the v3
          JSON gateway (POST /v3/kv/put, /v3/kv/range; a range is
          linearizable by default). Its own CPU use is printed: a
          generator at 100% of a core would cap etcd's figure.

First a warm-up, not counted: N writes to each system (default 150,000
SETs at 50 clients, 16 deep; etcd a tenth, as puts), printed. A new raftkv
node's heap grows with its log until the first snapshot (100,000 entries)
compacts it, and every page touched the first time is a page fault, tens
of microseconds on a virtual machine: a new cluster's first 100,000 writes
take about twice the CPU a write of those after. The rounds measure each
system in its steady state.

The figures (issue 11), each taken for every system in turn, round after
round (interleaved, so that a slow phase of the shared machine hits all of
them alike); the table gives the median over the rounds and the ratios:

  SET, 1 client             -t set -c 1 -d 256          (etcd: generator, 1 client)
  SET, 50 clients           -t set -c 50 -d 256         (etcd: generator, 50 clients)
  SET, 50 clients -P 16     -t set -c 50 -P 16 -d 256   (etcd: no pipelining over HTTP/1.1)
  GET, 50 clients           -t get -c 50 -d 256, linearizable in raftkv and etcd;
                            also on a second raftkv cluster with --lease-reads on
                            (leader leases, an option: README "Lease reads";
                            --no-lease leaves it out)

and with each, the CPU the system's server processes spent a request (user
and system time of every thread, from /proc/PID/stat before and after: all
three nodes of raftkv and etcd, redis-server's one process; not the load
generator), which moves much less than throughput on a shared machine;

then, once: kill -9 of raftkv's leader to the next acknowledged write
(raftkv_bench.py's failover, median and max over the trials), and resident
memory of raftkv's leader and of redis-server after loading K keys
(16-byte values, pipelined), and the fdatasync p50 of the disk, measured
first, with whether the disk overlaps two fdatasyncs made at once (near
1x one alone: side by side; near 2x: one after the other, and then a
write at one client waits for two where Redis waits for one).

Each round also runs floor-probe (bench/floor_probe.c, built with the
rest) for a second a kind, with 1 client and with 50: writes answered by
a server that syncs one copy, against a leader that sends each write to
two followers, syncs its own copy and waits for one follower's, with
nothing else in the way (no Raft, no nanomsg, no parsing). At one client
its ratio is about the best any replicated store's figure against Redis
can be on this disk at that moment; at 50 it is a plain group commit, not
a floor. Then the same again with the followers' messages over nanomsg
(`floor-probe --nanomsg`: NN_PUSH/NN_PULL on ipc://, as raftkv's nodes
talk), which is the floor for a store that must use nanomsg between its
nodes. The summary prints all four beside raftkv/redis. And each round
prints the steal time of /proc/stat: the share of the CPUs' time the
hypervisor gave to other machines while the round ran; when some rounds
had 5% or more, the summary also gives the medians over the calm rounds.

Around raftkv's SET at 50 clients each round asks the leader for
RAFT.LATENCY (RESET before, the figures after): the medians and 99th
percentiles of a write's stages, from the turn that proposed it to each
stage (handed to nanomsg for a follower, acknowledged by a first follower,
on the leader's own disk, committed, replied); the summary gives their
medians over the rounds.

It asserts nothing; it is not a test. Exit status 0 when every figure was
measured. Ports: the raftkv cluster uses N+1..N+8, redis N+20, etcd
N+31..N+36, the lease cluster N+51..N+58 (default N = 33000). Python 3 stdlib only.
"""

import argparse
import base64
import json
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raftkv_bench as rb  # noqa: E402

HOST = rb.HOST
VALUE_SIZE = 256

# ------------------------------------------------------------ the systems


def wait_port(port, timeout=15.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise rb.BenchError("process exited with status %d" % proc.returncode)
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise rb.BenchError("nothing listens on port %d after %.0f s" % (port, timeout))


def free_block(base, offsets):
    """base, or the first of base + 100, base + 200, ... whose ports base +
    offsets are all free (loopback connections take ephemeral ports from the
    same range)."""
    for attempt in range(20):
        b = base + 100 * attempt
        try:
            for o in offsets:
                rb.check_port_free(b + o)
            return b
        except rb.BenchError:
            continue
    raise rb.BenchError("no free ports from %d on: pick another --port-base" % base)


def spawn(cmd, log_path):
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=rb.die_with_parent)
    finally:
        log.close()


def stop_proc(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise rb.BenchError("no VmRSS for pid %d" % pid)


def with_cpu(system, n, load):
    """load(port)'s result, with cpu_us: the CPU (user and system, every
    thread) the system's server processes spent on each of its n requests.
    A process that exited meanwhile counts 0."""
    port = system.port()
    before = sum(rb.proc_cpu_s(pid) for pid in system.pids())
    r = load(port)
    r["cpu_us"] = (sum(rb.proc_cpu_s(pid) for pid in system.pids()) - before) * 1e6 / n
    return r


class Raftkv:
    def __init__(self, binary, root, port_base, name="raftkv", peers="ipc", node_args=()):
        self.name = name
        self.cluster = rb.start_cluster(binary, root, port_base, peers, node_args)

    def port(self):
        leader, _ = self.cluster.wait_leader()
        return leader.client_port

    def pids(self):
        return [n.proc.pid for n in self.cluster.nodes if n.running()]

    def stop(self):
        self.cluster.stop()


WRITE_STAGES = ("sent", "replicated", "synced", "committed", "replied")


def write_path(system, reset=False):
    """The leader's RAFT.LATENCY as {stage: (p50 ms, p99 ms)}, or None (not a
    raftkv cluster, or a build without the command). reset: empty its window."""
    if not isinstance(system, Raftkv):
        return None
    try:
        leader, _ = system.cluster.wait_leader()
        conn = rb.RespConn(rb.HOST, leader.client_port)
        try:
            reply = conn.call("RAFT.LATENCY", *(["RESET"] if reset else []))
        finally:
            conn.close()
    except (OSError, ConnectionError, rb.BenchError):
        return None
    if reset or not isinstance(reply, bytes):
        return None
    fields = rb.parse_fields(reply)
    try:
        return {st: (int(fields[st + "_p50_us"]) / 1000, int(fields[st + "_p99_us"]) / 1000)
                for st in WRITE_STAGES if st + "_p50_us" in fields}
    except ValueError:
        return None


def fmt_write_path(wp):
    return ", ".join("%s %.2f / %.2f" % (st, wp[st][0], wp[st][1]) for st in WRITE_STAGES if st in wp)


class Redis:
    name = "redis"

    def __init__(self, root, port):
        port = free_block(port, [0])
        os.makedirs(root)
        self.port_ = port
        self.proc = spawn(["redis-server", "--port", str(port), "--bind", HOST, "--dir", root,
                           "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                           "--daemonize", "no", "--protected-mode", "yes"],
                          os.path.join(root, "redis.log"))
        wait_port(port, proc=self.proc)

    def port(self):
        return self.port_

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        stop_proc(self.proc)


class Etcd:
    name = "etcd"

    def __init__(self, root, port_base):
        self.procs = []
        port_base = free_block(port_base, range(1, 7))
        self.client_ports = [port_base + i for i in (1, 2, 3)]
        peer_ports = [port_base + i for i in (4, 5, 6)]
        os.makedirs(root)
        initial = ",".join("e%d=http://%s:%d" % (i + 1, HOST, p) for i, p in enumerate(peer_ports))
        for i in range(3):
            cport, pport = self.client_ports[i], peer_ports[i]
            self.procs.append(spawn([
                "etcd", "--name", "e%d" % (i + 1), "--data-dir", os.path.join(root, "e%d" % (i + 1)),
                "--listen-client-urls", "http://%s:%d" % (HOST, cport),
                "--advertise-client-urls", "http://%s:%d" % (HOST, cport),
                "--listen-peer-urls", "http://%s:%d" % (HOST, pport),
                "--initial-advertise-peer-urls", "http://%s:%d" % (HOST, pport),
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "side-by-side", "--log-level", "warn",
            ], os.path.join(root, "e%d.log" % (i + 1))))
        for p, proc in zip(self.client_ports, self.procs):
            wait_port(p, proc=proc)

    def pids(self):
        return [p.pid for p in self.procs]

    def _status(self, port):
        body = http_post(port, "/v3/maintenance/status", {})
        return int(body["header"]["member_id"]), int(body.get("leader", 0))

    def port(self, timeout=15.0):
        """The leader's client port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ids = {}
                leader = 0
                for p in self.client_ports:
                    member, lead = self._status(p)
                    ids[member] = p
                    leader = lead or leader
                if leader in ids:
                    return ids[leader]
            except (OSError, ValueError, KeyError, rb.BenchError):
                pass
            time.sleep(0.1)
        raise rb.BenchError("etcd elected no leader within %.0f s" % timeout)

    def stop(self):
        for p in self.procs:
            stop_proc(p)


def http_post(port, path, obj, timeout=5.0):
    data = json.dumps(obj).encode()
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (
                      path.encode(), HOST.encode(), port, len(data), data))
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise rb.BenchError("etcd answered %r" % head[:60])
    if b"chunked" in head.lower():
        body = dechunk(body)
    return json.loads(body)


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


# ------------------------------------------------------------ etcd load generator


def etcd_load(port, clients, requests, op):
    """requests PUTs (op "put") or linearizable ranges ("get") of a 256-byte
    value over `clients` keep-alive connections at once, each waiting for
    its answer before the next. Returns ops/s, p50, p99 (ms) and the
    generator's CPU share of one core."""
    key = base64.b64encode(b"key:bench").decode()
    value = base64.b64encode(b"x" * VALUE_SIZE).decode()
    if op == "put":
        path, body = b"/v3/kv/put", json.dumps({"key": key, "value": value}).encode()
    else:
        path, body = b"/v3/kv/range", json.dumps({"key": key}).encode()
    req = (b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (path, HOST.encode(), port, len(body), body))
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(clients):
        s = socket.create_connection((HOST, port), timeout=5.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns.append({"sock": s, "buf": b"", "sent": 0.0})
        sel.register(s, selectors.EVENT_READ, conns[-1])
    lat = []
    issued = 0
    cpu0 = time.process_time()
    t0 = time.monotonic()
    for c in conns:
        if issued < requests:
            c["sent"] = time.monotonic()
            c["sock"].sendall(req)
            issued += 1
    done = 0
    while done < requests:
        events = sel.select(timeout=10.0)
        if not events:
            raise rb.BenchError("etcd stopped answering")
        for k, _ in events:
            c = k.data
            chunk = c["sock"].recv(65536)
            if not chunk:
                raise rb.BenchError("etcd closed a connection")
            c["buf"] += chunk
            while True:
                head_end = c["buf"].find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = c["buf"][:head_end]
                if b"chunked" in head.lower():
                    term = c["buf"].find(b"\r\n0\r\n\r\n", head_end)
                    if term < 0:
                        break
                    end = term + 7
                else:
                    i = head.lower().find(b"content-length:")
                    n = int(head[i + 15:].split(b"\r\n", 1)[0])
                    end = head_end + 4 + n
                    if len(c["buf"]) < end:
                        break
                if not head.startswith(b"HTTP/1.1 200"):
                    raise rb.BenchError("etcd answered %r" % head[:60])
                c["buf"] = c["buf"][end:]
                now = time.monotonic()
                lat.append((now - c["sent"]) * 1000.0)
                done += 1
                if issued < requests:
                    c["sent"] = now
                    c["sock"].sendall(req)
                    issued += 1
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    for c in conns:
        sel.unregister(c["sock"])
        c["sock"].close()
    lat.sort()
    return {"ops": requests / wall, "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)],
            "gen_cpu": cpu / wall * 100.0}


# ------------------------------------------------------------ redis-benchmark


def redis_bench(port, test, clients, requests, pipeline):
    cmd = ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", test, "-n", str(requests),
           "-c", str(clients), "-P", str(pipeline), "-d", str(VALUE_SIZE)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=max(180, requests / 50))
    out = done.stdout.decode(errors="replace")
    r = rb.parse_redis_benchmark(out)
    if done.returncode != 0 or "ops" not in r or "p50" not in r:
        err = (done.stderr.decode(errors="replace") + out).strip().splitlines()
        raise rb.BenchError("%s: %s" % (" ".join(cmd), (err or ["no output"])[-1][-200:]))
    return r


# (key, label, redis-benchmark test, clients, pipeline, request multiplier, etcd op)
FIGURES = [
    ("set1", "SET, 1 client", "set", 1, 1, 1, "put"),
    ("set50", "SET, 50 clients", "set", 50, 1, 5, "put"),
    ("set50p16", "SET, 50 clients -P 16", "set", 50, 16, 20, None),
    ("get50", "GET, 50 clients", "get", 50, 1, 10, "get"),
]


def measure(system, fig, requests):
    """The figure's result, with cpu_us: the CPU the system's server
    processes (all of a cluster's nodes, every thread) spent a request."""
    key, label, test, clients, pipeline, mult, etcd_op = fig
    n = requests * mult
    if system.name == "lease" and test != "get":
        return None  # the lease changes reads only
    if system.name == "etcd":
        if etcd_op is None:
            return None
        n = min(n, requests * 2)
        return with_cpu(system, n, lambda port: etcd_load(port, clients, n, etcd_op))
    for attempt in range(3):
        try:
            return with_cpu(system, n,
                            lambda port: redis_bench(port, test, clients, n, pipeline))
        except rb.BenchError as e:
            if system.name == "redis" or attempt == 2:
                raise
            print("    %s; again" % e, flush=True)  # a leader change stops redis-benchmark
    return None


def warm_up(system, writes):
    """Writes before the first round, not counted. A new raftkv node's heap
    grows with its log until the first snapshot compacts it (100,000
    entries by default); after that the memory of compacted entries is used
    again. Until then every few writes touch a new page, and a page fault
    costs tens of microseconds on a virtual machine: the first 100,000
    writes of a new cluster take about twice the CPU of the writes after.
    Every system gets the same writes (etcd, far slower, a tenth of them)
    so that the rounds measure each in its steady state."""
    if system.name == "etcd":
        n = max(1, writes // 10)
        return with_cpu(system, n, lambda port: etcd_load(port, 50, n, "put"))
    return with_cpu(system, writes, lambda port: redis_bench(port, "set", 50, writes, 16))


# ------------------------------------------------------------ memory


def load_keys(system, keys):
    """SET key:0000001.. to 16-byte values, 1000 pipelined at a time. A batch
    that a leader change interrupted (MOVED, TRYAGAIN, UNCERTAIN, a lost
    connection) is sent again to the new leader: the same SETs again leave
    the same data. Returns how many batches were sent again."""
    conn = rb.RespConn(HOST, system.port(), timeout=60.0)
    again = 0
    try:
        batch = 1000
        first = 1
        while first <= keys:
            cmds = [(b"SET", b"key:%07d" % i, b"%016d" % i)
                    for i in range(first, min(first + batch, keys + 1))]
            try:
                bad = [r for r in conn.pipeline(cmds) if r != "OK"]
            except (OSError, ConnectionError) as e:
                bad = [str(e)]
            if bad:
                if not isinstance(system, Raftkv) or again >= 50:
                    raise rb.BenchError("loading keys: SET answered %r" % (bad[0],))
                again += 1
                conn.close()
                time.sleep(0.2)
                conn = rb.RespConn(HOST, system.port(), timeout=60.0)
                continue
            first += batch
        if conn.call(b"GET", b"key:%07d" % keys) != b"%016d" % keys:
            raise rb.BenchError("the last key does not read back")
    finally:
        conn.close()
    return again


# ------------------------------------------------------------ main


# A round whose steal time (the share of the CPUs' time the hypervisor gave
# to other machines) stays under this counts as calm; the summary also
# gives the medians of the calm rounds alone.
CALM_STEAL = 0.05


def floor_probe(binary, root, seconds, clients, nanomsg=False):
    """One run of floor-probe (bench/floor_probe.c) with `clients` clients,
    one round of `seconds` a kind, its followers over Unix sockets or over
    nanomsg: a dict with the two-copies ratio ("floor") and each kind's
    writes/s and p50, or None when the program is missing or failed
    (printed)."""
    if not os.access(binary, os.X_OK):
        return None
    os.makedirs(root, exist_ok=True)
    try:
        done = subprocess.run([binary] + (["--nanomsg"] if nanomsg else []) +
                              [root, "%g" % seconds, "1", str(clients)],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60 + 10 * seconds)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("  floor-probe failed: %s" % e, flush=True)
        return None
    out = done.stdout.decode(errors="replace")
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(one copy|leader and a follower|both followers): ([0-9]+) writes/s, "
                     r"p50 ([0-9.]+) ms", line)
        if m:
            found[m.group(1)] = (float(m.group(2)), float(m.group(3)))
        m = re.match(r"floor: ([0-9.]+)x one copy", line)
        if m:
            found["floor"] = float(m.group(1))
    if done.returncode != 0 or "floor" not in found or "one copy" not in found:
        print("  floor-probe failed (exit %d): %s" % (done.returncode, out.strip()[-300:]), flush=True)
        return None
    return found


def round_ratios(results, other, fig_key):
    """raftkv's ops/s over `other`'s for `fig_key`, round by round (None
    where either was not measured)."""
    mine, theirs = results.get(("raftkv", fig_key), []), results.get((other, fig_key), [])
    return [a["ops"] / b["ops"] if a is not None and b is not None else None
            for a, b in zip(mine, theirs)]


class Done(Exception):
    """The figures asked for are taken."""


def fmt_fig(r):
    if r is None:
        return "-"
    return "%.0f/s p50 %.2f p99 %.2f, cpu %.0f us a request" % (r["ops"], r["p50"], r["p99"],
                                                                r["cpu_us"])


def median_of(results, field):
    vals = [r[field] for r in results if r is not None and field in r]
    return statistics.median(vals) if vals else None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "build"), metavar="DIR")
    ap.add_argument("--port-base", type=int, default=33000, metavar="N")
    ap.add_argument("--quick", action="store_true", help="a short run")
    ap.add_argument("--rounds", type=int, metavar="N", help="interleaved rounds (default 3, quick 1)")
    ap.add_argument("--requests", type=int, metavar="N",
                    help="SETs with 1 client a round (default 3000, quick 1000); others scale")
    ap.add_argument("--warmup", type=int, metavar="N",
                    help="writes each system takes before the first round, not counted "
                         "(default 150000, past raftkv's first snapshot, also with --quick; etcd a tenth)")
    ap.add_argument("--keys", type=int, metavar="N", help="keys for memory (default 1000000, quick 100000)")
    ap.add_argument("--trials", type=int, metavar="N", help="failover trials (default 10, quick 3)")
    ap.add_argument("--no-etcd", action="store_true", help="leave etcd out")
    ap.add_argument("--no-redis", action="store_true", help="leave redis out")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also measure the raftkv-node built in DIR (an older commit), as 'before'")
    ap.add_argument("--no-memory", action="store_true", help="skip failover and memory")
    ap.add_argument("--peers", choices=("ipc", "tcp"), default="ipc",
                    help="how raftkv's nodes reach each other: ipc:// Unix sockets, as the "
                         "cockpit's clusters do (default), or tcp:// on loopback")
    ap.add_argument("--baseline-peers", choices=("ipc", "tcp"), metavar="ipc|tcp",
                    help="the same for --baseline (default: as --peers); --baseline with this "
                         "build's own dir compares the two")
    ap.add_argument("--no-lease", action="store_true",
                    help="leave out the GET figure of a raftkv cluster with --lease-reads on")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    requests = args.requests or (1000 if args.quick else 3000)
    keys = args.keys or (100000 if args.quick else 1000000)
    trials = args.trials or (3 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else 150000
    binary = os.path.join(os.path.abspath(args.build), "raftkv-node")
    if not os.access(binary, os.X_OK):
        print("side_by_side: %s not found: build it first (--build DIR)" % binary, file=sys.stderr)
        return 1
    if shutil.which("redis-benchmark") is None:
        print("side_by_side: redis-benchmark not installed (Debian redis-tools)", file=sys.stderr)
        return 1

    def on_signal(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    root = tempfile.mkdtemp(prefix="raftkv-side-")
    systems = []
    ok = True
    results = {}  # (system, figure key) -> [result per round]
    floors = []  # floor_probe's result per round, one client (None: failed)
    floors50 = []  # and 50 clients
    floors_nn, floors50_nn = [], []  # the same with the followers over nanomsg
    steals = []  # the share of CPU time stolen by the hypervisor, per round
    paths = {}  # system name -> [its leader's write path (RAFT.LATENCY) per round]
    extra = []
    mem = {}
    disk_line = "fdatasync: not measured"
    base = args.port_base
    try:
        print("side by side: %s; data in %s; %d rounds" % (binary, root, rounds), flush=True)
        p50, p99, worst, count = rb.fsync_probe(root, 1.0 if args.quick else 3.0)
        disk_line = "fdatasync of a small append: p50 %.3f ms, p99 %.3f ms, max %.1f ms (%d)" % (
            p50, p99, worst, count)
        pair = rb.fsync_pair_probe(root, 1.0 if args.quick else 3.0)
        if pair is not None:
            disk_line += ("\ntwo fdatasyncs at once (two processes, two files, as a leader and"
                          " a follower sync an entry): p50 %.3f ms, %.2fx one alone (p50 %.3f ms,"
                          " %d rounds each, taken in turn)" % (pair[1], pair[1] / pair[0],
                                                               pair[0], pair[2]))
        print(disk_line, flush=True)
        systems.append(Raftkv(binary, os.path.join(root, "raftkv"), base, peers=args.peers))
        if args.baseline:
            systems.append(Raftkv(os.path.join(os.path.abspath(args.baseline), "raftkv-node"),
                                  os.path.join(root, "before"), base + 40, name="before",
                                  peers=args.baseline_peers or args.peers))
        if not args.no_lease:
            systems.append(Raftkv(binary, os.path.join(root, "lease"), base + 50, name="lease",
                                  peers=args.peers, node_args=("--lease-reads", "on")))
        if args.no_redis:
            print("redis: left out (--no-redis)")
        elif shutil.which("redis-server"):
            systems.append(Redis(os.path.join(root, "redis"), base + 20))
        else:
            print("redis-server: not installed, skipped (Debian redis-server)")
        if args.no_etcd:
            print("etcd: left out (--no-etcd)")
        elif shutil.which("etcd"):
            systems.append(Etcd(os.path.join(root, "etcd"), base + 30))
        else:
            print("etcd: not installed, skipped (Debian etcd-server)")
        for s in systems:
            s.port()  # a leader is elected
        if warmup > 0:
            print("\nwarm-up (not counted)", flush=True)
            for s in systems:
                try:
                    r = warm_up(s, warmup)
                    print("  %-22s %-7s %s" % ("SET, 50 clients -P 16" if s.name != "etcd"
                                               else "put, 50 clients", s.name, fmt_fig(r)),
                          flush=True)
                except rb.BenchError as e:
                    ok = False
                    print("  warm-up %-7s failed: %s" % (s.name, e), flush=True)
        probe_binary = os.path.join(os.path.abspath(args.build), "floor-probe")
        if not os.access(probe_binary, os.X_OK):
            print("floor-probe: not built, the floor and the group commit are not measured")
        for rnd in range(1, rounds + 1):
            print("\nround %d" % rnd, flush=True)
            steal0, wall0 = rb.steal_s(), time.monotonic()
            for clients, nanomsg, found in ((1, False, floors), (1, True, floors_nn),
                                            (50, False, floors50), (50, True, floors50_nn)):
                fl = floor_probe(probe_binary, os.path.join(root, "floor"),
                                 0.5 if args.quick else 1.0, clients, nanomsg)
                found.append(fl)
                if fl is not None:
                    print("  %-22s %-7s two copies %.2fx one copy's writes/s (p50: one copy %.3f "
                          "ms; leader and a follower %.3f ms; both followers %.3f ms)" % (
                              "floor, %d client%s" % (clients, "s" if clients > 1 else ""),
                              "nanomsg" if nanomsg else "probe", fl["floor"], fl["one copy"][1],
                              fl["leader and a follower"][1], fl["both followers"][1]), flush=True)
            for fig in FIGURES:
                for s in systems:
                    if fig[0] == "set50":
                        write_path(s, reset=True)
                    try:
                        r = measure(s, fig, requests)
                    except rb.BenchError as e:
                        ok = False
                        print("  %-22s %-7s failed: %s" % (fig[1], s.name, e), flush=True)
                        r = None
                    results.setdefault((s.name, fig[0]), []).append(r)
                    if r is not None:
                        more = " (generator %.0f%% of a core)" % r["gen_cpu"] if "gen_cpu" in r else ""
                        print("  %-22s %-7s %s%s" % (fig[1], s.name, fmt_fig(r), more), flush=True)
                        wp = write_path(s) if fig[0] == "set50" else None
                        if wp:
                            paths.setdefault(s.name, []).append(wp)
                            print("  %-22s %-7s write path on the leader (RAFT.LATENCY, ms from the "
                                  "proposing turn, p50 / p99): %s" % ("", s.name, fmt_write_path(wp)),
                                  flush=True)
            stolen = (rb.steal_s() - steal0) / ((time.monotonic() - wall0) * (os.cpu_count() or 1))
            steals.append(stolen)
            print("  steal: %.1f%% of the CPUs' time went to other machines this round" % (
                100 * stolen), flush=True)

        if args.no_memory:
            raise Done()
        print("\nfailover: kill -9 of raftkv's leader, %d trials" % trials, flush=True)
        disk = rb.DiskWatch(root)
        disk.start()
        try:
            times, _, _ = rb.run_failover(systems[0].cluster, trials, disk)
            extra.append("kill -9 of the leader to the next acknowledged write: median %.0f ms, "
                         "max %.0f ms (%d trials)" % (statistics.median(times), max(times), len(times)))
        except rb.BenchError as e:
            ok = False
            extra.append("failover: failed (%s)" % e)
        finally:
            disk.stop()
        for s in systems:
            s.stop()
        systems = []

        print("\nmemory: %d keys, 16-byte values" % keys, flush=True)
        try:
            rk = Raftkv(binary, os.path.join(root, "raftkv-mem"), base + 10)
            systems.append(rk)
            leader, _ = rk.cluster.wait_leader()
            t = time.monotonic()
            again = load_keys(rk, keys)
            rk.cluster.wait_applied(rk.cluster.nodes)
            leader, _ = rk.cluster.wait_leader()
            mem["raftkv"] = rss_kib(leader.proc.pid)
            print("  raftkv leader: %.1f MiB (loaded in %.1f s); followers %s MiB" % (
                mem["raftkv"] / 1024, time.monotonic() - t,
                " / ".join("%.1f" % (rss_kib(n.proc.pid) / 1024) for n in rk.cluster.nodes
                           if n is not leader)), flush=True)
            if again:
                extra.append("loading %d keys into raftkv: %d batches sent again after a leader "
                             "change" % (keys, again))
            rk.stop()
            if shutil.which("redis-server"):
                rd = Redis(os.path.join(root, "redis-mem"), base + 21)
                systems.append(rd)
                load_keys(rd, keys)
                mem["redis"] = rss_kib(rd.proc.pid)
                print("  redis-server: %.1f MiB" % (mem["redis"] / 1024), flush=True)
                rd.stop()
        except (rb.BenchError, OSError) as e:
            ok = False
            print("  failed: %s" % e, flush=True)
    except Done:
        pass
    except rb.BenchError as e:
        ok = False
        print("side_by_side: %s" % e, file=sys.stderr)
    except KeyboardInterrupt:
        ok = False
        print("side_by_side: interrupted", file=sys.stderr)
    finally:
        for s in systems:
            s.stop()
        if args.keep:
            print("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)

    names = ["raftkv", "before", "redis", "etcd"] if args.baseline else ["raftkv", "redis", "etcd"]
    if not args.no_lease:
        names.insert(1, "lease")
    names = [nm for nm in names if nm == "raftkv" or nm in mem or any(
        r is not None for f in FIGURES for r in results.get((nm, f[0]), []))]
    print("\n==== %s, %s, %d CPUs; medians of %d interleaved rounds ====" % (
        time.strftime("%Y-%m-%d"), os.uname().nodename, os.cpu_count() or 1, rounds))
    print(disk_line)
    heads = {"raftkv": "raftkv", "before": "raftkv before", "redis": "redis (appendfsync always)",
             "etcd": "etcd (3 members)", "lease": "raftkv --lease-reads on"}
    others = [o for o in names if o not in ("raftkv", "lease")]
    print("| figure | %s | %s |" % (" | ".join(heads[nm] for nm in names),
                                    " | ".join("raftkv/%s" % o for o in others)))
    print("|" + " --- |" * (1 + len(names) + len(others)))
    for fig in FIGURES:
        cells, ops = [], {}
        for nm in names:
            rs = results.get((nm, fig[0]), [])
            o = median_of(rs, "ops")
            if o is None:
                cells.append("-")
                continue
            ops[nm] = o
            cells.append("%.0f ops/s, p50 %.2f ms, p99 %.2f ms" % (
                o, median_of(rs, "p50"), median_of(rs, "p99")))
        ratio = ["%.2fx" % (ops["raftkv"] / ops[o]) if "raftkv" in ops and o in ops else "-"
                 for o in others]
        print("| %s | %s | %s |" % (fig[1], " | ".join(cells), " | ".join(ratio)))
    if mem:
        cells = ["%.1f MiB%s" % (mem[nm] / 1024, " (leader)" if nm == "raftkv" else "")
                 if nm in mem else "-" for nm in names]
        ratio = ["%.2fx" % (mem["raftkv"] / mem[o]) if "raftkv" in mem and o in mem else "-"
                 for o in others]
        print("| resident memory, %d keys (16-byte values) | %s | %s |" % (
            keys, " | ".join(cells), " | ".join(ratio)))
    for e in extra:
        print(e)
    gets = {nm: median_of(results.get((nm, "get50"), []), "ops") for nm in ("raftkv", "lease", "redis")}
    if gets["lease"] and gets["redis"] and gets["raftkv"]:
        print("GET 50 clients with --lease-reads on: %.0f ops/s = %.2fx redis's GET, %.2fx "
              "raftkv's by ReadIndex" % (gets["lease"], gets["lease"] / gets["redis"],
                                          gets["lease"] / gets["raftkv"]))
    p99s = {nm: median_of(results.get((nm, "set50"), []), "p99") for nm in ("raftkv", "redis")}
    if p99s["raftkv"] and p99s["redis"]:
        print("SET 50 clients p99: raftkv %.2f ms = %.2fx redis's" % (
            p99s["raftkv"], p99s["raftkv"] / p99s["redis"]))
    probe_lines = (
        ("set1", floors, "SET 1 client, the floor (floor-probe: two of three copies synced, the "
         "faster of its two ways, against one, no Raft and no nanomsg; a run each round)"),
        ("set50", floors50, "SET 50 clients, a plain group commit (floor-probe, 50 clients: a "
         "batch a turn, one write and fdatasync, two of three copies against one; not a floor, "
         "a design that overlaps batches can do better)"),
        ("set1", floors_nn, "SET 1 client, the floor over nanomsg (floor-probe --nanomsg: the "
         "same, the followers' messages through NN_PUSH/NN_PULL on ipc:// as raftkv's nodes "
         "send theirs)"),
        ("set50", floors50_nn, "SET 50 clients, the group commit over nanomsg (floor-probe "
         "--nanomsg, 50 clients)"))
    for fig_key, found, label in probe_lines:
        if not any(found):
            continue
        pairs = [x for x in round_ratios(results, "redis", fig_key) if x is not None]
        print("%s: %.2fx (rounds %s); raftkv/redis %s" % (
            label, statistics.median(f["floor"] for f in found if f),
            " ".join("%.2f" % f["floor"] for f in found if f),
            "%.2fx (rounds %s)" % (statistics.median(pairs), " ".join("%.2f" % x for x in pairs))
            if pairs else "not measured"))
    for nm, wps in sorted(paths.items()):
        med = {st: (statistics.median(w[st][0] for w in wps if st in w),
                    statistics.median(w[st][1] for w in wps if st in w))
               for st in WRITE_STAGES if any(st in w for w in wps)}
        print("SET 50 clients, %s's write path on the leader (RAFT.LATENCY, ms from the proposing "
              "turn, medians over %d rounds of p50 / p99): %s" % (nm, len(wps), fmt_write_path(med)))
    if steals:
        print("steal (CPU time the hypervisor gave to other machines), by round: %s" % (
            " ".join("%.1f%%" % (100 * x) for x in steals)))
    print("\nThe ratios round by round (each round measures the systems one after the "
          "other, so a round's ratio is a pair; the median of these moves less than the "
          "ratio of the medians above):")
    for o in others:
        for fig in FIGURES:
            pairs = [x for x in round_ratios(results, o, fig[0]) if x is not None]
            if pairs:
                print("  raftkv/%s, %s: %s (median %.2fx)" % (
                    o, fig[1], " ".join("%.2f" % x for x in pairs), statistics.median(pairs)))
    calm = [i for i, x in enumerate(steals) if x < CALM_STEAL]
    if steals and calm and len(calm) < len(steals):
        parts = []
        for o in others:
            for fig in FIGURES:
                by_round = round_ratios(results, o, fig[0])
                pairs = [by_round[i] for i in calm if i < len(by_round) and by_round[i] is not None]
                if pairs:
                    parts.append("raftkv/%s %s %.2fx" % (o, fig[1], statistics.median(pairs)))
        for name, found in (("the floor, 1 client", floors), ("the group commit, 50 clients", floors50),
                            ("the floor over nanomsg, 1 client", floors_nn),
                            ("the group commit over nanomsg, 50 clients", floors50_nn)):
            ratios = [found[i]["floor"] for i in calm if i < len(found) and found[i]]
            if ratios:
                parts.append("%s %.2fx" % (name, statistics.median(ratios)))
        print("  the rounds with steal under %.0f%% only (%d of %d: round %s), medians of their "
              "ratios: %s" % (100 * CALM_STEAL, len(calm), len(steals),
                              " ".join(str(i + 1) for i in calm), "; ".join(parts)))
    print("\nCPU a request, the servers' processes (raftkv and etcd: the three nodes; "
          "medians of the rounds):")
    print("| figure | %s | %s |" % (" | ".join(heads[nm] for nm in names),
                                    " | ".join("raftkv/%s" % o for o in others)))
    print("|" + " --- |" * (1 + len(names) + len(others)))
    for fig in FIGURES:
        cpu = {nm: median_of(results.get((nm, fig[0]), []), "cpu_us") for nm in names}
        cells = ["%.1f us" % cpu[nm] if cpu[nm] is not None else "-" for nm in names]
        ratio = ["%.2fx" % (cpu["raftkv"] / cpu[o]) if cpu["raftkv"] and cpu[o] else "-"
                 for o in others]
        print("| %s | %s | %s |" % (fig[1], " | ".join(cells), " | ".join(ratio)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""jepsen.py - a Jepsen-style linearizability test of a real raftkv cluster.

One run: start N raftkv-node processes, let C client threads send GET, SET
(unique values), INCR and DEL on a few keys over RESP while a nemesis injects
faults one at a time on a seeded schedule, then heal everything and check:

  (a) the history of every client op is linearizable, key by key (lincheck.py);
  (b) every node converges to the same DEBUG DIGEST at the same last_applied;
  (c) the final reads through the leader are consistent with that history
      (the history plus a final GET of every key is still linearizable), so
      no acknowledged write is lost.

Each op is recorded with its invoke and complete times (time.monotonic) and
its outcome: ok (with the reply), fail (certainly not applied: -MOVED,
-TRYAGAIN, any -ERR of a write) or info (unknown: -UNCERTAIN, a timeout, a
dropped connection). After an info op the client thread goes on as a new
process, as Jepsen does.

Faults, one at a time, the target being the leader half of the time:
  kill       kill -9, then restart from its data dir
  pause      SIGSTOP, then SIGCONT
  partition  the nodes' control messages: a minority cut off, one node
             isolated, or a random split
  loss       every node loses a share of its outgoing peer messages
  transfer   RAFT.TRANSFER at the leader to another node (leadership moves
             while clients write; the old leader refuses writes meanwhile)
  membership RAFT.REMOVENODE of a node (the leader itself half the time), and
             at the end of the fault RAFT.ADDNODE of it again (with the data
             it has: it catches up as a learner, then votes again)
  netns      each node in its own network namespace behind a veth pair on
             198.18.0.0/15; a node is isolated for real (link down, or netem
             loss 100%). Needs root; skipped with the reason otherwise.

Command line (ports port-base..port-base+99 only):

  python3 tests/jepsen/jepsen.py --build DIR --port-base N --nodes 3|5 --seconds S \\
      --runs K --seed SEED [--faults kill,pause,partition,loss,netns] [--keep-history FILE]

Run i uses seed SEED+i-1; `--seed S --runs 1` replays one run's fault schedule.
As a library: run_once() returns a RunResult.
"""
import argparse
import hashlib
import hmac
import itertools
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import ProtocolError, Redis, RespError  # noqa: E402
import lincheck  # noqa: E402

FAULTS = ("kill", "pause", "partition", "loss", "netns", "transfer", "membership")
DEFAULT_FAULTS = ("kill", "pause", "partition", "loss")
IO_TIMEOUT = 1.5       # s a client waits for a reply before calling the op info
HEAL_TIMEOUT = 30      # s to get one leader again after the run
CONVERGE_TIMEOUT = 30  # s for every node to reach the same digest


# ---------------------------------------------------------------- clusters


class LoopbackCluster(harness.Cluster):
    """harness.Cluster with the two things the runner asks of any cluster:
    connect(address) a client, control(i, message) a node."""

    def connect(self, address, timeout=IO_TIMEOUT):
        host, port = address.rsplit(":", 1)
        return Redis(host, int(port), timeout=timeout)

    def client(self, i, timeout=5.0):
        return self.connect(self.nodes[i].client_addr, timeout)

    def control(self, i, control):
        harness.send_control(self, i, control)


class NetnsCluster(LoopbackCluster):
    """Every node in its own network namespace, joined to the root namespace
    by a veth pair whose root ends sit on one bridge: node i is A.i, the
    bridge A.254, A = 198.18-19.x.0/24 picked by the port base. Names carry
    the port base, so parallel tests (distinct bases) do not clash.

    Nodes are off loopback, so they run with a cluster secret (controls carry
    a MAC and a fresh seq) and a client password. isolate(i, how) cuts node i
    off for real: "down" takes its link down, "netem" drops every packet both
    ways; heal_network() undoes it. The namespaces, links and bridge are
    deleted at cleanup, which harness runs at exit and on failure."""

    def __init__(self, opt, n, slot=0, name="netns", node_args=()):
        super().__init__(opt, n, slot=slot, name=name, node_args=node_args)
        block = opt.port_base // 100
        self.subnet = f"198.{18 + block // 256 % 2}.{block % 256}"
        self.tag = f"rj{opt.port_base}"
        self.bridge = f"{self.tag}br"
        self.netns = {i: f"raftkv-jepsen-{opt.port_base}-n{i}" for i in self.ids}
        self.host_if = {i: f"{self.tag}h{i}" for i in self.ids}
        self.isolated = {}
        self.netem, self.no_netem = False, ""
        self.password = os.urandom(12).hex()
        self.secret = os.path.join(self.tmp, "secret")
        self.password_file = os.path.join(self.tmp, "password")
        with open(self.secret, "wb") as f:
            f.write(os.urandom(32))
        with open(self.password_file, "w") as f:
            f.write(self.password + "\n")
        os.chmod(self.secret, 0o600)
        os.chmod(self.password_file, 0o600)
        with open(self.secret, "rb") as f:
            self.mac_key = hashlib.blake2b(f.read(), digest_size=32,
                                           key=b"raftkv-secret-v1").digest()
        self.control_seq = time.time_ns() // 1000
        for i, nd in self.nodes.items():
            nd.peer_url = f"tcp://{self.subnet}.{i}:{nd.peer_port}"
            nd.client_addr = f"{self.subnet}.{i}:{nd.client_port}"
        with open(self.config, "w") as f:
            f.write("# id  peer (nanomsg URL)  client (Redis protocol), one namespace each\n")
            for nd in self.nodes.values():
                f.write(f"{nd.id} {nd.peer_url} {nd.client_addr}\n")
        try:
            self.setup_network()
        except OSError:
            self.cleanup()
            raise

    @staticmethod
    def ip(*args, check=True):
        """Run one iproute2/tc command; raise OSError with its message on failure."""
        p = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and p.returncode != 0:
            raise OSError(f"{' '.join(args)}: {p.stderr.strip() or 'exit status ' + str(p.returncode)}")
        return p

    def setup_network(self):
        self.teardown_network()  # leftovers of a run killed before its cleanup
        try:
            self.ip("ip", "link", "add", self.bridge, "type", "bridge")
            self.ip("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            self.ip("ip", "link", "set", self.bridge, "up")
            for i in self.ids:
                ns, host_if = self.netns[i], self.host_if[i]
                self.ip("ip", "netns", "add", ns)
                self.ip("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                        "netns", ns)
                self.ip("ip", "link", "set", host_if, "master", self.bridge, "up")
                self.ip("ip", "-n", ns, "addr", "add", f"{self.subnet}.{i}/24", "dev", "eth0")
                self.ip("ip", "-n", ns, "link", "set", "eth0", "up")
                self.ip("ip", "-n", ns, "link", "set", "lo", "up")
            probe = self.ip("tc", "qdisc", "add", "dev", self.host_if[1], "root", "netem", "loss",
                            "0%", check=False)
            self.netem = probe.returncode == 0
            if self.netem:
                self.ip("tc", "qdisc", "del", "dev", self.host_if[1], "root")
            else:
                self.no_netem = probe.stderr.strip()
        except OSError:
            self.teardown_network()
            raise

    def teardown_network(self):
        for i in self.ids:
            self.ip("ip", "netns", "del", self.netns[i], check=False)
            self.ip("ip", "link", "del", self.host_if[i], check=False)
        self.ip("ip", "link", "del", self.bridge, check=False)

    def cleanup(self):
        super().cleanup()
        self.teardown_network()

    def node_command(self, i, extra=()):
        return ["ip", "netns", "exec", self.netns[i]] + super().node_command(i, extra) + [
            "--secret-file", self.secret, "--requirepass-file", self.password_file]

    def connect(self, address, timeout=IO_TIMEOUT):
        r = super().connect(address, timeout)
        try:
            reply = r.call("AUTH", self.password)
        except (OSError, ProtocolError):
            r.close()
            raise
        if reply != "OK":
            r.close()
            raise ProtocolError(f"AUTH at {address} answered {reply!r}")
        return r

    def control(self, i, control):
        """A control with a fresh seq, sealed with the cluster's MAC, to node
        i's peer port (raw nanomsg over TCP, as harness.send_control does)."""
        self.control_seq = max(self.control_seq + 1, time.time_ns() // 1000)
        control += harness.pb_uint(13, self.control_seq)
        envelope = harness.control_envelope(self, control)
        tag = hmac.new(self.mac_key, envelope, hashlib.sha512).digest()[:32]
        nd = self.nodes[i]
        s = socket.create_connection((f"{self.subnet}.{i}", nd.peer_port), timeout=3.0)
        try:
            s.sendall(harness.sp_header(harness.SP_PUSH))
            got = b""
            while len(got) < 8:
                chunk = s.recv(8 - len(got))
                if not chunk:
                    raise ConnectionResetError(f"node {i} closed the control connection")
                got += chunk
            s.sendall(harness.sp_frame(tag + envelope))
        finally:
            s.close()

    def isolate(self, i, how):
        """Cut node i off the network for real: its link down, or netem loss
        100% on both ends of its veth pair (when the kernel has netem; else
        the link goes down). Returns how it was done."""
        if how == "netem" and not self.netem:
            how = "down"
        if how == "down":
            self.ip("ip", "link", "set", self.host_if[i], "down")
        else:
            self.ip("tc", "qdisc", "add", "dev", self.host_if[i], "root", "netem", "loss", "100%")
            self.ip("ip", "netns", "exec", self.netns[i], "tc", "qdisc", "add", "dev", "eth0",
                    "root", "netem", "loss", "100%")
        self.isolated[i] = how
        return how

    def heal_network(self):
        for i, how in list(self.isolated.items()):
            if how == "down":
                self.ip("ip", "link", "set", self.host_if[i], "up")
            else:
                self.ip("tc", "qdisc", "del", "dev", self.host_if[i], "root", check=False)
                self.ip("ip", "netns", "exec", self.netns[i], "tc", "qdisc", "del", "dev",
                        "eth0", "root", check=False)
            del self.isolated[i]


def netns_unavailable():
    """Why network namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "ip or tc (iproute2) not installed"
    return None


# ---------------------------------------------------------------- clients


class History:
    """Every op of a run, appended by the client threads; process ids handed out here."""

    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()
        self.processes = itertools.count()
        self.values = itertools.count(1)

    def add(self, op):
        with self.lock:
            self.ops.append(op)

    def counts(self):
        return {s: sum(op.status == s for op in self.ops) for s in lincheck.STATUSES}


def classify(kind, reply):
    """(status, result) for one reply: ok with the value, fail (certainly not
    applied) or info (may or may not have been applied)."""
    if isinstance(reply, RespError):
        text = str(reply)
        if text.startswith(("MOVED", "TRYAGAIN")) or kind == "GET":
            return "fail", text
        if text.startswith("UNCERTAIN"):
            return "info", text
        if text.startswith(("ERR", "MISCONF")):
            return "fail", text
        return "info", text  # an error this runner does not know: assume nothing
    if kind == "GET":
        if reply is None:
            return "ok", None
        if isinstance(reply, bytes) and reply.lstrip(b"-").isdigit():
            return "ok", int(reply)
    elif kind == "SET" and reply == "OK":
        return "ok", "OK"
    elif kind in ("INCR", "DEL") and isinstance(reply, int):
        return "ok", reply
    return "info", f"unexpected reply {reply!r}"


class Client(threading.Thread):
    """One client thread: finds the leader (follows -MOVED, moves on after
    -TRYAGAIN or a dead connection) and records every op it sends."""

    MIX = (("GET", 4), ("SET", 2), ("INCR", 3), ("DEL", 1))

    def __init__(self, cluster, history, keys, seed, stop):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.history = history
        self.keys = keys
        self.rng = random.Random(seed)
        self.stop = stop
        self.addresses = [nd.client_addr for nd in cluster.nodes.values()]
        self.target = self.rng.choice(self.addresses)
        self.conn = None
        self.process = next(history.processes)

    def next_node(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.target = self.addresses[(self.addresses.index(self.target) + 1) % len(self.addresses)
                                     if self.target in self.addresses else 0]

    def run(self):
        kinds = [k for k, weight in self.MIX for _ in range(weight)]
        while not self.stop.is_set():
            if self.conn is None:
                try:
                    self.conn = self.cluster.connect(self.target)
                except (OSError, ProtocolError):
                    self.next_node()
                    time.sleep(0.05)
                    continue
            kind, key = self.rng.choice(kinds), self.rng.choice(self.keys)
            arg = next(self.history.values) * 1000 if kind == "SET" else None
            command = (kind, key, arg) if kind == "SET" else (kind, key)
            invoke = time.monotonic()
            try:
                reply = self.conn.call(*command)
                status, result = classify(kind, reply)
            except (OSError, ProtocolError, ValueError) as e:
                reply, status, result = None, "info", type(e).__name__
            complete = time.monotonic()
            self.history.add(lincheck.Op(self.process, kind, key, arg, invoke,
                                         math.inf if status == "info" else complete,
                                         result, status))
            if status == "info":
                self.process = next(self.history.processes)
                self.next_node()
            elif isinstance(reply, RespError) and reply.startswith("MOVED "):
                self.conn.close()
                self.conn = None
                self.target = reply.split()[-1]
            elif isinstance(reply, RespError) and reply.startswith("TRYAGAIN"):
                time.sleep(0.05)
                self.next_node()


# ---------------------------------------------------------------- the nemesis


class Fault:
    """One planned fault: start (s after the run began), how long it lasts,
    kind, whether it aims at the leader, and the seeded draws its kind uses."""

    def __init__(self, start, duration, kind, on_leader, pick, variant, shuffle, percent):
        self.start, self.duration, self.kind = start, duration, kind
        self.on_leader, self.pick, self.variant = on_leader, pick, variant
        self.shuffle, self.percent = shuffle, percent
        self.done = ""

    def __str__(self):
        return f"{self.start:5.1f}s {self.done or self.kind}"


def plan_faults(seed, seconds, kinds, n):
    """The seeded schedule: faults one at a time, with a quiet gap before each.
    Only the seed decides it (who leads when it runs may differ)."""
    rng = random.Random(seed)
    faults, t = [], 0.0
    while True:
        t += rng.uniform(0.5, 1.5)
        duration = rng.uniform(1.0, 3.0)
        kind = rng.choice(kinds)
        on_leader = rng.random() < 0.5
        pick = rng.randrange(n)
        variant = rng.random()
        shuffle = rng.sample(range(n), n)
        percent = rng.randrange(20, 61)
        if t + duration > seconds - 0.5:
            return faults
        faults.append(Fault(t, duration, kind, on_leader, pick, variant, shuffle, percent))
        t += duration


class Nemesis:
    """Carries out a schedule on a cluster, and heals everything afterwards."""

    def __init__(self, cluster):
        self.cluster = cluster

    def target(self, fault):
        """The leader if the fault aims at it and one is known, else the drawn node."""
        ids = self.cluster.ids
        if fault.on_leader:
            try:
                leader = self.cluster.current_leader()
            except (OSError, ProtocolError):
                leader = None
            if leader is not None:
                return leader, "leader "
        return ids[fault.pick], ""

    def partition(self, groups):
        for group in groups:
            for i in group:
                self.cluster.control(i, harness.control_blocked(
                    [j for j in self.cluster.ids if j not in group]))

    def inject(self, fault):
        """Start the fault; return the function that ends it."""
        c = self.cluster
        ids = c.ids
        i, who = self.target(fault)
        if fault.kind == "kill":
            c.kill(i)
            fault.done = f"kill -9 {who}n{i}"
            return lambda: c.start_node(i)
        if fault.kind == "pause":
            c.pause(i)
            fault.done = f"SIGSTOP {who}n{i}"
            return lambda: c.resume(i)
        if fault.kind == "partition":
            others = [ids[k] for k in fault.shuffle if ids[k] != i]
            if fault.variant < 1 / 3:
                cut = [i] + others[:(len(ids) - 1) // 2 - 1]
                fault.done = f"partition minority {sorted(cut)} ({who}n{i}) from the rest"
                groups = [cut, others[(len(ids) - 1) // 2 - 1:]]
            elif fault.variant < 2 / 3:
                fault.done = f"partition isolate {who}n{i}"
                groups = [[i], others]
            else:
                order = [ids[k] for k in fault.shuffle]
                at = 1 + fault.pick % (len(ids) - 1)
                groups = [order[:at], order[at:]]
                fault.done = f"partition split {sorted(groups[0])} | {sorted(groups[1])}"
            self.partition(groups)
            return lambda: self.partition([ids])
        if fault.kind == "transfer":
            # RAFT.TRANSFER at the leader to the drawn node (the next one if
            # that is the leader): leadership moves while clients write.
            leader = None
            try:
                leader = c.current_leader()
            except (OSError, ProtocolError):
                pass
            if leader is None:
                fault.done = "transfer skipped: no leader known"
                return lambda: None
            target = ids[fault.pick] if ids[fault.pick] != leader else \
                ids[(ids.index(leader) + 1) % len(ids)]
            try:
                reply = c.call(leader, "RAFT.TRANSFER", str(target), timeout=3.0)
            except (OSError, ProtocolError) as e:
                reply = f"no answer ({e})"
            fault.done = f"transfer n{leader} -> n{target}: {reply}"
            return lambda: None
        if fault.kind == "membership":
            leader = self.any_leader()
            if leader is None:
                fault.done = "membership skipped: no leader known"
                return lambda: None
            victim = leader if fault.on_leader else ids[fault.pick]
            try:
                reply = c.call(leader, "RAFT.REMOVENODE", str(victim), timeout=5.0)
            except (OSError, ProtocolError) as e:
                reply = f"no answer ({e})"
            fault.done = f"remove {'leader ' if victim == leader else ''}n{victim}: {reply}"
            return lambda: self.add_back(victim)
        if fault.kind == "loss":
            for j in ids:
                c.control(j, harness.pb_uint(3, 1) + harness.pb_uint(4, fault.percent))
            fault.done = f"loss {fault.percent}% on every node"
            return lambda: [c.control(j, harness.pb_uint(3, 1) + harness.pb_uint(4, 0))
                            for j in ids]
        how = c.isolate(i, "down" if fault.variant < 0.5 else "netem")
        fault.done = f"netns isolate {who}n{i} ({'link down' if how == 'down' else 'netem loss 100%'})"
        return c.heal_network

    def any_leader(self):
        """The live node that says it leads the highest term (a removed node
        names no leader, so the nodes need not agree)."""
        best, term = None, -1
        for i in self.cluster.live_ids():
            try:
                info = self.cluster.info(i, timeout=1.0)
            except (OSError, ProtocolError):
                continue
            if info.get("role") == "leader" and info.get("term", 0) > term:
                best, term = i, info["term"]
        return best

    def voters(self, leader):
        try:
            members = str(self.cluster.info(leader, timeout=1.0).get("members", ""))
        except (OSError, ProtocolError):
            return None
        return {int(x) for x in members.split(",") if x}

    def add_back(self, i, timeout=30.0):
        """RAFT.ADDNODE i at the leader until i is a voter again."""
        nd = self.cluster.node(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.any_leader()
            voters = self.voters(leader) if leader is not None else None
            if voters is not None and i in voters:
                return True
            if leader is not None:
                try:
                    self.cluster.call(leader, "RAFT.ADDNODE", str(i), nd.peer_url, nd.client_addr,
                                      timeout=10.0)
                except (OSError, ProtocolError):
                    pass
            time.sleep(0.1)
        return False

    def run(self, faults, started, stop_at):
        """Run each fault at its planned time (later if the previous one ran
        late) until stop_at; return the faults injected."""
        injected = []
        for fault in faults:
            delay = started + fault.start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if time.monotonic() + fault.duration > stop_at:
                break
            end = self.inject(fault)
            injected.append(fault)
            time.sleep(fault.duration)
            end()
        return injected

    def heal(self):
        """Every node running, resumed, connected, losing nothing."""
        c = self.cluster
        for i, nd in c.nodes.items():
            if nd.alive() and nd.paused:
                c.resume(i)
            if not nd.alive():
                c.start_node(i)
        if isinstance(c, NetnsCluster):
            c.heal_network()
        for i in c.ids:
            harness.wait_until(lambda: c.control(i, harness.control_blocked([]) +
                                                 harness.pb_uint(3, 1) + harness.pb_uint(4, 0))
                               or True, 10, f"node {i} to take the healing control")
        # Every node a voter again (a membership fault's own add may have
        # failed across a leader change).
        for i in c.ids:
            if not self.add_back(i):
                raise harness.TestFailure(f"node {i} could not be added back to the cluster")


# ---------------------------------------------------------------- one run


class RunResult:
    """What one run did and found; ok when every check passed."""

    def __init__(self, seed, nodes, seconds):
        self.seed, self.nodes, self.seconds = seed, nodes, seconds
        self.history = []
        self.faults = []
        self.skipped = []
        self.problems = []
        self.checks = []
        self.took = 0.0

    @property
    def ok(self):
        return not self.problems

    def summary(self):
        counts = {s: sum(op.status == s for op in self.history) for s in lincheck.STATUSES}
        lines = [f"seed {self.seed}, {self.nodes} nodes, {self.seconds:g} s: "
                 f"ops {len(self.history)} (ok {counts['ok']} / fail {counts['fail']} / "
                 f"info {counts['info']}), {len(self.faults)} faults, took {self.took:.1f} s"]
        lines += [f"  skipped {s}" for s in self.skipped]
        lines += [f"  fault {f}" for f in self.faults]
        lines += [f"  check {c}" for c in self.checks]
        lines.append(f"  verdict: {'PASS' if self.ok else 'FAIL'}")
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def read_digests(cluster):
    """{node: (last_applied, digest)} when each node's last_applied did not
    move while its digest was taken; None for a node that moved. A build
    without DEBUG DIGEST gives digest None (last_applied is compared alone)."""
    out = {}
    for i in cluster.ids:
        before = cluster.info(i)["last_applied"]
        digest = cluster.call(i, "DEBUG", "DIGEST", timeout=2.0)
        after = cluster.info(i)["last_applied"]
        if isinstance(digest, RespError):
            if "unknown command" not in digest.lower():
                raise ProtocolError(f"node {i}: DEBUG DIGEST answered {digest!r}")
            digest = None
        out[i] = (after, digest) if before == after else None
    return out


def final_reads(cluster, keys, deadline):
    """A GET of every key through the leader, as ok ops after everything else."""
    ops = []
    for key in keys:
        while True:
            addresses = [nd.client_addr for nd in cluster.nodes.values()]
            for address in addresses:
                invoke = time.monotonic()
                try:
                    with cluster.connect(address, timeout=2.0) as r:
                        reply = r.call("GET", key)
                except (OSError, ProtocolError):
                    continue
                status, result = classify("GET", reply)
                if status == "ok":
                    ops.append(lincheck.Op("final", "GET", key, None, invoke, time.monotonic(),
                                           result, "ok"))
                    break
            else:
                if time.monotonic() > deadline:
                    harness.fail(f"no node answered GET {key} within {HEAL_TIMEOUT} s of healing")
                time.sleep(0.1)
                continue
            break
    return ops


def run_once(opt, nodes, seconds, seed, faults=DEFAULT_FAULTS, clients=6, keys=4, slot=0,
             history_file=None, log=print):
    """One run on a fresh cluster: returns a RunResult (see the module docstring)."""
    result = RunResult(seed, nodes, seconds)
    started = time.monotonic()
    kinds = [k for k in faults if k != "netns"]
    cluster = None
    if "netns" in faults:
        reason = netns_unavailable()
        if reason is None:
            try:
                cluster = NetnsCluster(opt, nodes, slot=slot, name=f"jepsen-netns-{seed}",
                                       node_args=getattr(opt, "node_arg", ()))
                kinds.append("netns")
                if not cluster.netem:
                    log(f"netns: no netem here ({cluster.no_netem}): isolating by link down only")
            except OSError as e:
                reason = str(e)
        if reason is not None:
            log(f"skipped netns fault: {reason}")
            result.skipped.append(f"netns fault: {reason}")
    if cluster is None:
        cluster = LoopbackCluster(opt, nodes, slot=slot, name=f"jepsen-{seed}",
                                  node_args=getattr(opt, "node_arg", ()))
    if not kinds:
        harness.fail("no fault left to inject")
    key_names = [f"jk{k}" for k in range(keys)]
    try:
        cluster.start()
        cluster.wait_leader(timeout=15)
        history = History()
        stop = threading.Event()
        workers = [Client(cluster, history, key_names, seed * 1000 + w, stop)
                   for w in range(clients)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        nemesis = Nemesis(cluster)
        result.faults = nemesis.run(plan_faults(seed, seconds, kinds, nodes), t0, t0 + seconds)
        remaining = t0 + seconds - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        stop.set()
        for w in workers:
            w.join(timeout=IO_TIMEOUT + 5)
        result.history = sorted(history.ops, key=lambda op: op.invoke_time)

        nemesis.heal()
        cluster.wait_leader(timeout=HEAL_TIMEOUT)
        finals = final_reads(cluster, key_names, time.monotonic() + HEAL_TIMEOUT)
        if history_file:
            with open(history_file, "w") as f:
                for op in result.history + finals:
                    d = op.as_dict()
                    d["complete_time"] = None if d["complete_time"] == math.inf else d["complete_time"]
                    f.write(json.dumps(d) + "\n")
        check_history(result, finals)
        check_convergence(cluster, result)
        cluster.check_sanitizers()
    finally:
        cluster.cleanup()
    result.took = time.monotonic() - started
    return result


def check_history(result, finals):
    """Checks (a) and (c), filling result.checks and result.problems."""
    t = time.monotonic()
    verdict = lincheck.check_history(result.history)
    took = time.monotonic() - t
    if not verdict.ok:
        result.checks.append(f"(a) NOT linearizable ({took:.1f} s to check)")
        result.problems.append("not linearizable:\n" + verdict.report())
        return
    result.checks.append(f"(a) linearizable, {len(verdict.keys)} keys ({took:.1f} s to check)")
    with_finals = lincheck.check_history(result.history + finals)
    values = ", ".join(f"{op.key}={'nil' if op.result is None else op.result}" for op in finals)
    if with_finals.ok:
        result.checks.append(f"(c) final reads agree with the history: {values}")
    else:
        result.checks.append(f"(c) final reads contradict the history: {values}")
        result.problems.append("an acknowledged write is not visible:\n" + with_finals.report())


def check_convergence(cluster, result):
    """Check (b): every node at the same last_applied with the same digest."""
    seen = {}

    def converged():
        seen.update(read_digests(cluster))
        return all(v is not None for v in seen.values()) and len(set(seen.values())) == 1

    try:
        harness.wait_until(converged, CONVERGE_TIMEOUT, "every node at the same digest")
    except harness.TestFailure:
        result.checks.append("(b) nodes did not converge")
        result.problems.append(f"nodes did not converge: {seen}")
        return
    index, digest = next(iter(seen.values()))
    if digest is None:
        result.checks.append(f"(b) every node at last_applied {index} (no DEBUG DIGEST in this "
                             f"build: digests not compared)")
    else:
        result.checks.append(f"(b) every node at last_applied {index}, digest {digest}")


# ---------------------------------------------------------------- command line


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="build dir holding raftkv-node")
    ap.add_argument("--port-base", type=int, required=True,
                    help=f"first of the {harness.PORTS_PER_SCRIPT} ports this may use")
    ap.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=None, help="first run's seed (default: random)")
    ap.add_argument("--faults", default=",".join(DEFAULT_FAULTS),
                    help=f"comma-separated, from {','.join(FAULTS)}")
    ap.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                    help="pass ARG to every raftkv-node (repeat: --node-arg=--snapshot-entries "
                         "--node-arg=50)")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--keep-history", metavar="FILE",
                    help="write each run's history, one JSON op a line (run i > 1: FILE.i)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="fail after this many seconds (default: generous for the runs asked)")
    opt = ap.parse_args(argv)
    opt.faults = [f for f in opt.faults.split(",") if f]
    unknown = [f for f in opt.faults if f not in FAULTS]
    if unknown or not opt.faults:
        ap.error(f"unknown fault(s) {','.join(unknown)} (choose from {','.join(FAULTS)})")
    if opt.seed is None:
        opt.seed = random.SystemRandom().randrange(1, 1 << 31)
    if opt.timeout is None:
        # The check grows with the operations, and so with the machine's
        # speed: 100 s for 200 s of 1,067,617 operations on a fast one.
        opt.timeout = opt.runs * (2 * opt.seconds + 120) + 60
    opt.build = os.path.abspath(opt.build)
    opt.node_bin = os.path.join(opt.build, "raftkv-node")
    opt.cli_bin = os.path.join(opt.build, "raftkv-cli")
    if not os.access(opt.node_bin, os.X_OK):
        ap.error(f"{opt.node_bin} is not built")
    return opt


def main(opt):
    failed = []
    for r in range(opt.runs):
        seed = opt.seed + r
        history_file = None
        if opt.keep_history:
            history_file = opt.keep_history if r == 0 else f"{opt.keep_history}.{r + 1}"
        print(f"== run {r + 1}/{opt.runs}: seed {seed}, {opt.nodes} nodes, {opt.seconds:g} s, "
              f"faults {','.join(opt.faults)}", flush=True)
        result = run_once(opt, opt.nodes, opt.seconds, seed, opt.faults, opt.clients, opt.keys,
                          slot=r % 5, history_file=history_file)
        print(result.summary(), flush=True)
        if not result.ok:
            failed.append(seed)
    if failed:
        harness.fail(f"{len(failed)} of {opt.runs} runs failed; replay with --seed "
                     f"{failed[0]} --runs 1 --nodes {opt.nodes} --seconds {opt.seconds:g} "
                     f"--faults {','.join(opt.faults)}")


if __name__ == "__main__":
    options = parse_args()
    sys.exit(harness.run(main, options))

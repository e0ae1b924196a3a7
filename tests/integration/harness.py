"""harness.py - shared pieces of the integration tests: real raftkv-node
processes on loopback, a small Redis-protocol (RESP2) client, and polling with
deadlines.

Every test script is run as `python3 test_x.py --build BUILD_DIR --port-base N`
and may use ports N..N+99 only. A Cluster takes a slot of 20 ports: peer ports
base+0.., client ports base+10..

Processes never outlive the test: every node is started in its own session
with a parent-death signal, and cleanup (atexit, SIGTERM, failures, timeouts)
kills whatever is still running.
"""
import argparse
import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

PORTS_PER_SCRIPT = 100
PORTS_PER_CLUSTER = 20
DEFAULT_TEST_TIMEOUT = 150  # seconds; ctest allows 300


class TestFailure(Exception):
    """A check failed: the message says what was expected and what happened."""


def fail(message):
    raise TestFailure(message)


def step(message):
    """Say what the test is about to check."""
    print(f"== {message}", flush=True)


def check(condition, what):
    """Fail with `what` unless condition holds; print it when it does."""
    if not condition:
        fail(what)
    print(f"   ok: {what}", flush=True)


def check_eq(actual, expected, what):
    if actual != expected:
        fail(f"{what}: expected {expected!r}, got {actual!r}")
    print(f"   ok: {what}", flush=True)


def wait_until(predicate, timeout, what, interval=0.02):
    """Poll predicate until it returns something true; return that value.
    Connection and protocol errors count as "not yet". On timeout, fail naming
    `what` and the last error seen."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ProtocolError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_error!r})" if last_error is not None else ""
            fail(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)


# ---------------------------------------------------------------- arguments


def sanitized_build(build):
    """Whether the build dir was configured with RAFTKV_SANITIZE=ON (its nodes
    run several times slower: tests that time the loop scale their timers)."""
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            return any(line.startswith("RAFTKV_SANITIZE:") and line.strip().endswith("=ON")
                       for line in f)
    except OSError:
        return False


def parse_args(description=None):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--build", required=True, help="build dir holding raftkv-node, raftkv-cli")
    ap.add_argument("--port-base", type=int, required=True,
                    help=f"first of the {PORTS_PER_SCRIPT} ports this script may use")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TEST_TIMEOUT,
                    help="fail the whole script after this many seconds")
    opt = ap.parse_args()
    opt.build = os.path.abspath(opt.build)
    opt.sanitized = sanitized_build(opt.build)
    opt.node_bin = os.path.join(opt.build, "raftkv-node")
    opt.cli_bin = os.path.join(opt.build, "raftkv-cli")
    if not os.access(opt.node_bin, os.X_OK):
        ap.error(f"{opt.node_bin} is not built")
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
        if opt.port_base <= high and opt.port_base + PORTS_PER_SCRIPT > low:
            print(f"warning: ports {opt.port_base}..{opt.port_base + PORTS_PER_SCRIPT - 1} overlap "
                  f"the ephemeral range {low}..{high}: outgoing connections may take them",
                  file=sys.stderr)
    except (OSError, ValueError):
        pass
    return opt


# ---------------------------------------------------------------- RESP client


class ProtocolError(Exception):
    """The server sent something that is not RESP2."""


class RespError(str):
    """An error reply ("-ERR ..."): a str, told apart from +simple replies by type."""

    def __repr__(self):
        return f"RespError({str(self)!r})"


def _as_bytes(arg):
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, (bytearray, memoryview)):
        return bytes(arg)
    return str(arg).encode()


def encode_command(*args):
    """A RESP multibulk request."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _as_bytes(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class Redis:
    """A blocking RESP2 client with a timeout on every socket operation.

    Replies: +simple -> str, -error -> RespError, :n -> int, $bulk -> bytes,
    nil -> None, *array -> list."""

    def __init__(self, host, port, timeout=5.0):
        self.address = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, timeout):
        self.sock.settimeout(timeout)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, *args):
        self.sock.sendall(encode_command(*args))

    def call(self, *args):
        self.send(*args)
        return self.read_reply()

    def pipeline(self, commands):
        """Send every command at once, then read the replies in order."""
        self.sock.sendall(b"".join(encode_command(*c) for c in commands))
        return [self.read_reply() for _ in commands]

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionResetError(f"{self.address} closed the connection")
        self.buf += chunk

    def _readline(self):
        start = 0
        while True:
            end = self.buf.find(b"\r\n", start)
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return line
            start = max(0, len(self.buf) - 1)
            self._fill()

    def _readexact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_reply(self):
        line = self._readline()
        if not line:
            raise ProtocolError("empty reply line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._readexact(n + 2)
            if data[-2:] != b"\r\n":
                raise ProtocolError(f"bulk of {n} bytes not followed by CRLF")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read_reply() for _ in range(n)]
        raise ProtocolError(f"unexpected reply line {line[:80]!r}")


def parse_info(text):
    """RAFT.INFO's "field:value" lines as a dict; numbers as int."""
    if isinstance(text, bytes):
        text = text.decode()
    fields = {}
    for line in text.split("\r\n"):
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            fields[key] = int(value) if value.lstrip("-").isdigit() else value
    return fields


# ---------------------------------------------------------------- processes

_clusters = []
_children = []  # every Popen any test made: killed at exit if still running


def _child_setup():
    """In the child, before exec: die with the test (PR_SET_PDEATHSIG = 1)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def popen(args, **kwargs):
    """subprocess.Popen that is killed when the test ends, however it ends.
    (preexec_fn runs Python in the child: start processes from the main
    thread while no other thread is busy, as the tests here do.)"""
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("preexec_fn", _child_setup)
    p = subprocess.Popen(args, **kwargs)
    _children.append(p)
    return p


def _kill_children():
    for p in _children:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
            except ProcessLookupError:
                pass
    for p in _children:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            text = f.read()[-8192:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Node:
    def __init__(self, cluster, node_id, peer_port, client_port):
        self.cluster = cluster
        self.id = node_id
        self.peer_port = peer_port
        self.client_port = client_port
        self.peer_url = f"tcp://127.0.0.1:{peer_port}"
        self.client_addr = f"127.0.0.1:{client_port}"
        self.data_dir = os.path.join(cluster.tmp, f"data{node_id}")
        self.out_path = os.path.join(cluster.tmp, f"node{node_id}.out")
        self.err_path = os.path.join(cluster.tmp, f"node{node_id}.err")
        self.proc = None
        self.paused = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def errors(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


class Cluster:
    """N raftkv-node processes on loopback, from one cluster file.

    slot picks 20 of the script's 100 ports, so one script can run several
    clusters at once (slot 0..4)."""

    def __init__(self, opt, n, slot=0, name="cluster", node_args=(), ipc=False, in_file=None):
        """in_file: only nodes 1..in_file are in the cluster file; the others
        join later (start them with extra=cluster.join_args(i))."""
        if not 1 <= n <= 9 or not 0 <= slot < PORTS_PER_SCRIPT // PORTS_PER_CLUSTER:
            raise ValueError("cluster size 1..9, slot 0..4")
        self.opt = opt
        self.name = name
        self.node_args = list(node_args)
        self.tmp = tempfile.mkdtemp(prefix=f"raftkv-{name}-")
        base = opt.port_base + slot * PORTS_PER_CLUSTER
        self.nodes = {i: Node(self, i, base + i, base + 10 + i) for i in range(1, n + 1)}
        if ipc:  # peers over Unix sockets in the cluster's temp dir
            for node in self.nodes.values():
                node.peer_url = f"ipc://{self.tmp}/peer{node.id}.ipc"
        self.config = os.path.join(self.tmp, "cluster.conf")
        with open(self.config, "w") as f:
            f.write("# id  peer (nanomsg URL)  client (Redis protocol)\n")
            for node in self.nodes.values():
                if in_file is None or node.id <= in_file:
                    f.write(f"{node.id} {node.peer_url} {node.client_addr}\n")
        _clusters.append(self)

    def join_args(self, i):
        """The flags of a node that is not in the cluster file."""
        nd = self.nodes[i]
        return ["--join", "--peer", nd.peer_url, "--client", nd.client_addr]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dump_logs()
        self.cleanup()

    @property
    def ids(self):
        return list(self.nodes)

    def node(self, i):
        return self.nodes[i]

    def live_ids(self):
        """Nodes running and not SIGSTOPped."""
        return [i for i, nd in self.nodes.items() if nd.alive() and not nd.paused]

    # -------------------------------------------------------- lifecycle

    def node_command(self, i, extra=()):
        nd = self.nodes[i]
        return [self.opt.node_bin, "--config", self.config, "--id", str(i), "--data",
                nd.data_dir] + self.node_args + list(extra)

    def start(self, ids=None, wait=True):
        for i in ids or self.ids:
            self.start_node(i, wait=False)
        if wait:
            for i in ids or self.ids:
                self.wait_serving(i)

    def start_node(self, i, extra=(), wait=True):
        nd = self.nodes[i]
        if nd.alive():
            fail(f"node {i} is already running")
        with open(nd.out_path, "ab") as out, open(nd.err_path, "ab") as err:
            nd.proc = popen(self.node_command(i, extra), stdin=subprocess.DEVNULL, stdout=out,
                            stderr=err)
        nd.paused = False
        if wait:
            self.wait_serving(i)

    def wait_serving(self, i, timeout=10):
        """Until node i answers PING on its client port."""
        nd = self.nodes[i]

        def serving():
            if not nd.alive():
                fail(f"node {i} exited with status {nd.proc.returncode} while starting: "
                     f"{nd.errors().strip()!r}")
            with self.client(i, timeout=1) as r:
                return r.call("PING") == "PONG"

        wait_until(serving, timeout, f"node {i} to answer PING on {nd.client_addr}")

    def kill(self, i):
        """kill -9."""
        nd = self.nodes[i]
        if nd.alive():
            nd.proc.kill()
        nd.proc.wait(timeout=10)
        nd.paused = False

    def pause(self, i):
        os.kill(self.nodes[i].proc.pid, signal.SIGSTOP)
        self.nodes[i].paused = True

    def resume(self, i):
        os.kill(self.nodes[i].proc.pid, signal.SIGCONT)
        self.nodes[i].paused = False

    def stop(self, i, timeout=15):
        """SIGTERM: the node must exit 0 (under ASan this also checks for leaks)."""
        nd = self.nodes[i]
        if not nd.alive():
            fail(f"node {i} is not running (exit status {nd.proc.returncode}): "
                 f"{_tail(nd.err_path)!r}")
        if nd.paused:
            self.resume(i)
        nd.proc.terminate()
        try:
            rc = nd.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            nd.proc.kill()
            nd.proc.wait()
            fail(f"node {i} did not exit within {timeout} s of SIGTERM")
        if rc != 0:
            fail(f"node {i} exited with status {rc} on SIGTERM: {_tail(nd.err_path)!r}")

    def restart(self, i, wait=True):
        if self.nodes[i].alive():
            self.kill(i)
        self.start_node(i, wait=wait)

    def check_alive(self, ids=None):
        """Every given node (default: every started one) is still running."""
        for i in ids or self.ids:
            nd = self.nodes[i]
            if nd.proc is None:
                continue
            if not nd.alive():
                fail(f"node {i} died with status {nd.proc.returncode}: {_tail(nd.err_path)!r}")

    def check_sanitizers(self):
        """No sanitizer report in any node's stderr (killed nodes included)."""
        for nd in self.nodes.values():
            text = nd.errors()
            for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                if marker in text:
                    fail(f"node {nd.id}: sanitizer report in its stderr:\n{_tail(nd.err_path, 40)}")

    def shutdown(self):
        """The normal end of a test: every running node stops cleanly."""
        for i in self.ids:
            if self.nodes[i].alive():
                self.stop(i)
        self.check_sanitizers()

    def cleanup(self):
        """Kill anything still running and remove the files. Idempotent."""
        for nd in self.nodes.values():
            if nd.alive():
                try:
                    os.kill(nd.proc.pid, signal.SIGCONT)
                    nd.proc.kill()
                except ProcessLookupError:
                    pass
                nd.proc.wait(timeout=10)
        if self in _clusters:
            _clusters.remove(self)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def dump_logs(self, out=sys.stderr):
        for nd in self.nodes.values():
            for path in (nd.out_path, nd.err_path):
                tail = _tail(path)
                if tail:
                    print(f"--- {self.name} {os.path.basename(path)} (last lines)\n{tail}",
                          file=out)

    # -------------------------------------------------------- talking to nodes

    def client(self, i, timeout=5.0):
        nd = self.nodes[i]
        return Redis("127.0.0.1", nd.client_port, timeout=timeout)

    def call(self, i, *args, timeout=5.0):
        """One command on a fresh connection to node i."""
        with self.client(i, timeout=timeout) as r:
            return r.call(*args)

    def info(self, i, timeout=2.0):
        reply = self.call(i, "RAFT.INFO", timeout=timeout)
        if not isinstance(reply, bytes):
            raise ProtocolError(f"RAFT.INFO answered {reply!r}")
        return parse_info(reply)

    def infos(self, ids=None, timeout=2.0):
        return {i: self.info(i, timeout=timeout) for i in (ids or self.live_ids())}

    def current_leader(self, ids=None):
        """The leader every given live node agrees on, or None: exactly one
        node says role:leader, and every node names it as leader."""
        ids = ids or self.live_ids()
        infos = self.infos(ids)
        leaders = [i for i, f in infos.items() if f["role"] == "leader"]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        if all(f["leader"] == leader for f in infos.values()):
            return leader
        return None

    def wait_leader(self, timeout=10, ids=None, exclude=()):
        """Wait for one agreed leader among the live nodes (minus exclude)."""

        def agreed():
            live = [i for i in (ids or self.live_ids()) if i not in exclude]
            return self.current_leader(live)

        return wait_until(agreed, timeout, "one leader all live nodes agree on")

    def leader_call(self, *args, timeout=10.0):
        """Run a command at whoever leads, following MOVED and TRYAGAIN and
        waiting out elections. Only for commands safe to repeat."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for i in self.live_ids():
                try:
                    reply = self.call(i, *args, timeout=2.0)
                except (OSError, ProtocolError) as e:
                    last = e
                    continue
                if isinstance(reply, RespError) and (reply.startswith("MOVED") or
                                                     reply.startswith("TRYAGAIN")):
                    last = reply
                    continue
                return reply
            time.sleep(0.05)
        fail(f"no leader answered {args[0]} within {timeout} s (last: {last!r})")

    def wait_applied(self, ids, index, timeout=10):
        """Until every node in ids has applied at least `index`."""
        wait_until(lambda: all(self.info(i)["last_applied"] >= index for i in ids), timeout,
                   f"nodes {ids} to apply up to index {index}")

    # -------------------------------------------------------- raftkv-cli

    def cli(self, *args, timeout_s=5, extra=(), stdin=None, wall=30):
        """raftkv-cli --config FILE --timeout S ARGS...: (rc, stdout, stderr, seconds)."""
        cmd = [self.opt.cli_bin, "--config", self.config, "--timeout", str(timeout_s)]
        cmd += list(extra) + [str(a) for a in args]
        return run_program(cmd, stdin=stdin, wall=wall)


class LeaderClient:
    """A client that finds the leader by itself, as a real client would: it
    follows MOVED, waits out TRYAGAIN (and UNCERTAIN for RAFT.REQ), and moves on to the next node of the
    cluster file when a connection fails. It only uses the cluster file, so a
    writer thread may use it while the test kills nodes."""

    def __init__(self, cluster, io_timeout=2.0):
        self.addresses = [nd.client_addr for nd in cluster.nodes.values()]
        self.io_timeout = io_timeout
        self.target = self.addresses[0]
        self.conn = None
        self.redirects = 0
        self.connection_errors = 0

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _next_node(self):
        self.close()
        i = self.addresses.index(self.target) if self.target in self.addresses else -1
        self.target = self.addresses[(i + 1) % len(self.addresses)]

    def call(self, *args, timeout=10.0, on_retry=None):
        """Send until a node answers something other than MOVED/TRYAGAIN.
        on_retry(reason) runs before every resend (e.g. to count attempts)."""
        deadline = time.monotonic() + timeout
        last = None
        first = True
        while True:
            if not first:
                if time.monotonic() >= deadline:
                    fail(f"{args[0]!r} got no answer from a leader within {timeout:g} s "
                         f"(last: {last!r})")
                if on_retry is not None:
                    on_retry(last)
            first = False
            try:
                if self.conn is None:
                    host, port = self.target.rsplit(":", 1)
                    self.conn = Redis(host, int(port), timeout=self.io_timeout)
                reply = self.conn.call(*args)
            except (OSError, ProtocolError, ValueError) as e:
                last = e
                self.connection_errors += 1
                self._next_node()
                time.sleep(0.02)
                continue
            if isinstance(reply, RespError) and reply.startswith("MOVED "):
                last = reply
                self.redirects += 1
                self.close()
                self.target = reply.split()[-1]
                continue
            if isinstance(reply, RespError) and reply.startswith("TRYAGAIN"):
                last = reply
                time.sleep(0.05)
                continue
            # UNCERTAIN: the write's fate is unknown. Only a RAFT.REQ can be
            # sent again safely (the same client id and seq apply once).
            if (isinstance(reply, RespError) and reply.startswith("UNCERTAIN")
                    and str(args[0]).upper() == "RAFT.REQ"):
                last = reply
                time.sleep(0.05)
                continue
            return reply


def run_program(cmd, stdin=None, wall=30, env=None):
    """Run a program to its end: (rc, stdout, stderr, seconds). Killed after wall s."""
    start = time.monotonic()
    p = popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(input=stdin.encode() if isinstance(stdin, str) else stdin,
                                 timeout=wall)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        fail(f"{os.path.basename(cmd[0])} {' '.join(cmd[1:])[:200]}: still running after {wall} s")
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), \
        time.monotonic() - start


# ---------------------------------------------------------------- nanomsg wire (raw TCP)

SP_PUSH = 0x50  # NN_PROTO_PIPELINE * 16 + 0 (nanomsg/pipeline.h)
SP_PULL = 0x51


def sp_header(protocol):
    """nanomsg's 8-byte TCP handshake: 0x00 'S' 'P' 0x00, protocol, 2 reserved."""
    return b"\x00SP\x00" + protocol.to_bytes(2, "big") + b"\x00\x00"


def sp_frame(payload):
    """One message on a nanomsg TCP connection: 8-byte big-endian length, payload."""
    return len(payload).to_bytes(8, "big") + payload


def sp_connect_push(port, timeout=3.0):
    """Connect to a node's peer port as an NN_PUSH and finish the handshake.
    Returns the socket; fails unless the node answers with a PULL header."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(sp_header(SP_PUSH))
    got = b""
    while len(got) < 8:
        chunk = s.recv(8 - len(got))
        if not chunk:
            s.close()
            fail(f"peer port {port} closed the connection during the SP handshake")
        got += chunk
    if got != sp_header(SP_PULL):
        s.close()
        fail(f"peer port {port} answered the SP handshake with {got!r}")
    return s


# Protocol buffers, just enough to write an Envelope (proto/raftkv.proto).

def pb_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_uint(field, value):
    return pb_varint(field << 3 | 0) + pb_varint(value)


def pb_bytes(field, data):
    return pb_varint(field << 3 | 2) + pb_varint(len(data)) + data


def cluster_id(cluster):
    """The cluster id every message carries: 64-bit FNV-1a over the node lines
    "<id> <peer-url> <client-address>\\n" in file order (src/cluster.c)."""
    h = 0xCBF29CE484222325
    for nd in cluster.nodes.values():
        for byte in f"{nd.id} {nd.peer_url} {nd.client_addr}\n".encode():
            h ^= byte
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h or 1


def control_envelope(cluster, control):
    """Envelope{cluster_id, from = 0, control}: what the supervisor sends."""
    return pb_uint(1, cluster_id(cluster)) + pb_bytes(4, control)


CONTROL_TIMEOUT_NOW = pb_uint(9, 1)  # Control.timeout_now = true: start an election now


def send_control(cluster, i, control):
    """Push one Control message to node i's peer port over raw TCP."""
    s = sp_connect_push(cluster.node(i).peer_port)
    try:
        s.sendall(sp_frame(control_envelope(cluster, control)))
    finally:
        s.close()


def control_blocked(ids):
    """Control{set_blocked, blocked = ids}: node neither sends to nor hears
    from these peers; an empty list heals."""
    return pb_uint(1, 1) + b"".join(pb_uint(2, j) for j in ids)


def partition(cluster, groups):
    """Cut the cluster into groups (lists of ids): each node is blocked from
    every node outside its group. partition(cluster, [cluster.ids]) heals."""
    for group in groups:
        for i in group:
            send_control(cluster, i, control_blocked([j for j in cluster.ids if j not in group]))


def make_leader(cluster, i, timeout=10):
    """Move leadership to node i (its log must be up to date): ask it to start
    an election now, again every second, until every live node follows it."""
    last_sent = [0.0]

    def led_by_i():
        if time.monotonic() - last_sent[0] >= 1.0:
            send_control(cluster, i, CONTROL_TIMEOUT_NOW)
            last_sent[0] = time.monotonic()
        return cluster.current_leader() == i

    wait_until(led_by_i, timeout, f"node {i} to become the leader after timeout_now")


# ---------------------------------------------------------------- running a test


def wait_same_state(cluster, ids, timeout=60):
    """Until every node in ids has applied the same index; then their
    digests must agree."""
    def same():
        infos = cluster.infos(ids)
        applied = {f["last_applied"] for f in infos.values()}
        commit = {f["commit_index"] for f in infos.values()}
        return len(applied) == 1 and applied == commit and infos

    infos = wait_until(same, timeout, f"nodes {ids} to apply the same index")
    applied = next(iter(infos.values()))["last_applied"]
    digests = {i: cluster.call(i, "DEBUG", "DIGEST") for i in ids}
    check(len(set(digests.values())) == 1,
          f"every node has the same DEBUG DIGEST at last_applied {applied}: {digests}")
    return applied


def _on_alarm(signum, frame):
    raise TestFailure("the test ran out of time")


def _on_term(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def _cleanup_all():
    for c in list(_clusters):
        c.cleanup()
    _kill_children()


def run(main, opt):
    """Run main(opt) with a deadline; on any failure print why and the nodes'
    last log lines; always leave no process behind. Returns the exit status."""
    atexit.register(_cleanup_all)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(opt.timeout))
    start = time.monotonic()
    status = 1
    try:
        main(opt)
        status = 0
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        signal.alarm(0)
        if status != 0:
            for c in _clusters:
                c.dump_logs()
        _cleanup_all()
    took = time.monotonic() - start
    print(f"{'PASS' if status == 0 else 'FAILED'} in {took:.1f} s", flush=True)
    return status

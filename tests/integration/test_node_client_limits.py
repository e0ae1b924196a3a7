#!/usr/bin/env python3
"""Bounded clients: no client can take the node's memory, CPU or descriptors.

- A client that sends 300 GETs of a 1 MiB value and never reads is
  disconnected once its unsent replies pass --client-output-limit (4mb here;
  with the default 32mb it is paused instead, 16 reads in flight): the node's
  memory stays bounded, the leader keeps its term, another client's PING stays
  answered. A client that reads late is paused, not cut, and gets every reply.
- 24 connections trickling bytes onto 7 MB arrays cost the node little CPU
  (the parser goes on from where it stopped); PING stays answered, the leader
  keeps its term, and a finished array is parsed right.
- --maxclients refuses one client too many with an error; --timeout closes an
  idle client and not a busy one.
- Out of descriptors (ulimit -n 64): new clients get an error, not a hang,
  existing ones are served, and the node does not spin.

- Clients that hang up while their node is suspended (RAFT.SUSPEND) cost it
  no CPU meanwhile, and are gone once it resumes.

- A lone 1 MiB SET is synced by the storage thread, not by the event loop
  (RAFT.INFO log_syncs_on_loop), while a lone small one is synced by the loop.

Timing figures are printed; only loose sanity bounds are asserted."""
import os
import socket
import statistics
import subprocess
import time

from harness import (Cluster, Redis, RespError, check, check_eq, encode_command, fail, parse_args,
                     popen, run, step, wait_until)

MIB = 1 << 20
REFUSED = b"-ERR max number of clients reached\r\n"


def proc_status(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    fail(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ping_ms(cluster, i):
    start = time.monotonic()
    with cluster.client(i, timeout=5) as r:
        reply = r.call("PING")
    if reply != "PONG":
        fail(f"PING answered {reply!r}")
    return (time.monotonic() - start) * 1000


def read_until_closed(sock, timeout):
    """Read until the peer closes; the bytes read. Fails if it stays open."""
    sock.settimeout(0.5)
    got = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += len(chunk)
    fail(f"the connection is still open after {timeout} s ({got} bytes read)")


def leader_and_term(cluster):
    """A leader whose term has held for a second (the start-up elections are over)."""
    seen = {}

    def settled():
        leader = cluster.wait_leader()
        term = cluster.info(leader)["term"]
        if seen.get("lt") != (leader, term):
            seen["lt"], seen["since"] = (leader, term), time.monotonic()
        return time.monotonic() - seen["since"] >= 1.0 and seen["lt"]

    return wait_until(settled, 20, "a leader that keeps its term for a second", interval=0.1)


def check_same_leader(cluster, leader, term, what):
    """The leader kept its term. Should it not, the message says whether its
    event loop stalled (its longest turn, from RAFT.INFO) or the machine
    kept a heartbeat from arriving in time."""
    info = cluster.info(leader)
    check(info["role"] == "leader" and info["term"] == term,
          f"{what}: node {leader} still leads term {term} (role {info['role']}, "
          f"term {info['term']}; its longest loop turn {info['loop_turn_max_us'] / 1000:.1f} ms, "
          f"in {info['loop_turn_max_phase']})")


def syncs(cluster, i):
    """(all fsyncs of node i's log, those its event loop ran itself)."""
    info = cluster.info(i)
    return info["log_syncs"], info["log_syncs_on_loop"]


def test_large_write_off_the_loop(cluster):
    step("a lone small SET is synced by the loop; a lone 1 MiB SET by the storage thread")
    leader, _ = leader_and_term(cluster)
    # One write at a time on a quiet cluster: each is a lone write.
    before = syncs(cluster, leader)
    check_eq(cluster.leader_call("SET", "small", "v" * 100), "OK", "SET small (100 bytes)")
    after = syncs(cluster, leader)
    check_eq((after[0] - before[0], after[1] - before[1]), (1, 1),
             "the small SET: one sync, run by the loop (log_syncs, log_syncs_on_loop)")
    before = after
    check_eq(cluster.leader_call("SET", "big", b"v" * MIB), "OK", "SET big (1 MiB)")
    after = syncs(cluster, leader)
    check(after[0] > before[0] and after[1] == before[1],
          f"the 1 MiB SET was synced by the storage thread, not the loop (log_syncs "
          f"+{after[0] - before[0]}, log_syncs_on_loop +{after[1] - before[1]})")


def test_hangups_while_suspended(cluster):
    step("20 clients hang up while their node is suspended: it does not spin")
    leader, _ = leader_and_term(cluster)
    node = next(i for i in cluster.ids if i != leader)
    pid = cluster.node(node).proc.pid
    port = cluster.node(node).client_port
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    for s in conns:
        s.sendall(b"PING\r\n")
        check_eq(s.recv(64), b"+PONG\r\n", "PING before the suspension")
    check_eq(cluster.call(node, "RAFT.SUSPEND", 3), "OK", f"RAFT.SUSPEND 3 at node {node}")
    for s in conns:
        s.close()
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(1.5)  # a measurement window: the node is suspended throughout
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    print(f"   suspended node's CPU with 20 hung-up clients: {cpu * 100:.0f}% of a core",
          flush=True)
    check(cpu < 0.3, f"the suspended node used {cpu * 100:.0f}% of a core (< 30%)")
    wait_until(lambda: cluster.info(node, timeout=1)["connected_clients"] <= 1, 20,
               f"node {node} to resume and let the 20 clients go")


def test_non_reading_client(cluster):
    step("a client sends 300 GETs of a 1 MiB value and never reads")
    leader, term = leader_and_term(cluster)
    value = b"v" * MIB
    check_eq(cluster.leader_call("SET", "big", value), "OK", "SET big (1 MiB)")
    pid = cluster.node(leader).proc.pid
    rss_before = proc_status(pid, "VmRSS")
    closed_before = cluster.info(leader)["client_output_limit_disconnects"]

    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the kernel holds little
    hog.settimeout(5)
    hog.connect(("127.0.0.1", cluster.node(leader).client_port))
    hog.sendall(encode_command("GET", "big") * 300)
    pings = []

    def cut():
        pings.append(ping_ms(cluster, leader))
        return cluster.info(leader)["client_output_limit_disconnects"] > closed_before

    wait_until(cut, 20, "the non-reading client to be disconnected")
    for _ in range(10):
        pings.append(ping_ms(cluster, leader))
    peak = proc_status(pid, "VmHWM")
    rss_after = proc_status(pid, "VmRSS")
    print(f"   leader RSS before {rss_before // 1024} MiB, peak {peak // 1024} MiB, after "
          f"{rss_after // 1024} MiB; PING median {statistics.median(pings):.1f} ms, "
          f"max {max(pings):.1f} ms ({len(pings)} pings)", flush=True)
    check(peak < 200 * 1024, f"the leader's peak RSS ({peak // 1024} MiB) stays well below the "
          "300 MiB the replies would take")
    got = read_until_closed(hog, 20)
    hog.close()
    check(got < 300 * MIB, f"the node closed the connection after {got // MIB} MiB of replies")
    check_same_leader(cluster, leader, term, "after the non-reading client")

    step("a client that reads late is paused, not cut, and gets every reply")
    # 128 KiB values: even 16 reads in flight at once stay below the 4 MiB limit.
    medium = b"m" * (128 << 10)
    check_eq(cluster.leader_call("SET", "medium", medium), "OK", "SET medium (128 KiB)")
    late = Redis("127.0.0.1", cluster.node(leader).client_port, timeout=10)
    late.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    for _ in range(100):
        late.send("GET", "medium")
        time.sleep(0.005)
    wait_until(lambda: cluster.info(leader)["connected_clients"] >= 2, 5, "the late reader")
    time.sleep(0.3)  # let the node serve what it will: nothing more until the client reads
    rss_paused = proc_status(pid, "VmRSS")
    print(f"   leader RSS with 12.5 MiB of replies asked and unread: {rss_paused // 1024} MiB",
          flush=True)
    check_eq(cluster.info(leader)["client_output_limit_disconnects"], closed_before + 1,
             "the late reader was not disconnected")
    replies = [late.read_reply() for _ in range(100)]
    check(all(r == medium for r in replies), "it got all 100 replies, each the whole value")
    check_eq(late.call("PING"), "PONG", "and its connection still serves")
    late.close()
    check_same_leader(cluster, leader, term, "after the late reader")


def test_trickling_parser(cluster):
    step("24 connections trickle bytes onto 7 MB arrays")
    leader, term = leader_and_term(cluster)
    pid = cluster.node(leader).proc.pid
    port = cluster.node(leader).client_port
    elements = 1 << 20  # RESP_MAX_ARGS
    element = b"$1\r\na\r\n"
    body = element * (elements - 20000)  # 7.2 MB: the array stays unfinished
    conns = []
    rss0 = proc_status(pid, "VmRSS")
    for _ in range(24):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"*%d\r\n" % elements)
        s.sendall(body)
        conns.append(s)
    sent = len(body) + 10
    # Until the node holds it all: then the trickle alone is measured.
    wait_until(lambda: proc_status(pid, "VmRSS") - rss0 > 24 * sent * 0.9 / 1024, 30,
               "the leader to take in the 24 arrays")
    trickle = element * 20000
    pings = []
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    pos = 0
    while time.monotonic() - t0 < 3:
        for s in conns:
            s.sendall(trickle[pos:pos + 1])
        pos += 1
        pings.append(ping_ms(cluster, leader))
        time.sleep(0.01)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    print(f"   {pos} bytes trickled on each of 24 connections holding {sent // MIB} MiB each: "
          f"node CPU {cpu * 100:.0f}% of a core, PING median {statistics.median(pings):.1f} ms, "
          f"max {max(pings):.1f} ms ({len(pings)} pings)", flush=True)
    check(cpu < 0.5, f"the node used {cpu * 100:.0f}% of a core (< 50%) while bytes trickled")
    check_same_leader(cluster, leader, term, "while bytes trickled")

    step("a trickled array, finished, is parsed whole")
    s = conns[0]
    s.sendall(trickle[pos:])
    s.settimeout(10)
    got = b""
    while b"\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            fail(f"the node closed the connection after {got!r}")
        got += chunk
    check(got.startswith(b"-ERR unknown command 'a'"),
          f"the {elements}-element array ran as one command: {got[:60]!r}")
    for s in conns:
        s.close()
    check_same_leader(cluster, leader, term, "after the trickle")


def connect_and_ping(port, timeout=3.0):
    """A connection that answered PING, or the first line of the error it got."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"PING\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        s.close()
        fail(f"a new client got no answer within {timeout} s (it hangs)")
    except ConnectionResetError:
        got = b""
    if got == b"+PONG\r\n":
        return s
    s.close()
    return got


def test_maxclients_and_timeout(opt):
    step("--maxclients 5 --timeout 1: one client too many is refused; idle ones are closed")
    with Cluster(opt, 1, slot=1, name="maxclients",
                 node_args=["--maxclients", "5", "--timeout", "1"]) as c:
        c.start()
        port = c.node(1).client_port
        conns = []

        def open_one():
            got = connect_and_ping(port)
            if isinstance(got, socket.socket):
                conns.append(got)
                return True
            return False  # a harness connection not yet reaped: try again

        for k in range(5):
            wait_until(open_one, 5, f"client {k + 1} of 5 to be served")
        got = connect_and_ping(port)
        check_eq(got, REFUSED, "the 6th client gets the error")
        busy, idle = conns[0], conns[1:]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            busy.sendall(b"PING\r\n")
            if busy.recv(64) != b"+PONG\r\n":
                fail("the busy client was not answered")
            time.sleep(0.2)
        for s in idle:
            read_until_closed(s, 5)
            s.close()
        print("   ok: the 4 idle clients were closed", flush=True)
        busy.sendall(b"PING\r\n")
        check_eq(busy.recv(64), b"+PONG\r\n", "the busy client is still served")
        info = c.info(1)
        check(info["client_idle_timeouts"] >= 4 and info["rejected_connections"] >= 1,
              f"INFO counts them: {info['client_idle_timeouts']} idle timeouts, "
              f"{info['rejected_connections']} rejected")
        busy.close()
        c.stop(1)


def start_with_fd_limit(cluster, i, limit, extra=()):
    """Start node i under `ulimit -n limit` (bash execs the node: same pid)."""
    nd = cluster.node(i)
    cmd = ["bash", "-c", f'ulimit -n {limit} && exec "$@"', "bash"] + cluster.node_command(
        i, extra)
    with open(nd.out_path, "ab") as out, open(nd.err_path, "ab") as err:
        nd.proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    cluster.wait_serving(i)


def fill_until_refused(cluster, i, most=200):
    port = cluster.node(i).client_port
    conns = []
    for _ in range(most):
        got = connect_and_ping(port)
        if not isinstance(got, socket.socket):
            return conns, got
        conns.append(got)
    fail(f"{most} clients served under ulimit -n 64")


def check_out_of_fds(cluster, conns, refused, what):
    pid = cluster.node(1).proc.pid
    print(f"   {len(conns)} clients served, then: {refused!r}", flush=True)
    check_eq(refused, REFUSED, f"{what}: the next client gets the error, not a hang")
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for _ in range(5):
        if connect_and_ping(cluster.node(1).client_port) != REFUSED:
            fail("another new client was not refused with the error")
        time.sleep(0.2)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    print(f"   node CPU while full and refusing: {cpu * 100:.0f}% of a core", flush=True)
    check(cpu < 0.5, f"the node does not spin ({cpu * 100:.0f}% of a core, < 50%)")
    for s in conns[:3] + conns[-3:]:
        s.sendall(b"PING\r\n")
        if s.recv(64) != b"+PONG\r\n":
            fail("an existing client was not served")
    print("   ok: existing clients are still served", flush=True)
    conns.pop().close()

    def served():
        got = connect_and_ping(cluster.node(1).client_port)
        if isinstance(got, socket.socket):
            conns.append(got)
            return True
        return False

    wait_until(served, 5, "a new client to be served once one left")
    for s in conns:
        s.close()


def test_out_of_descriptors(opt):
    step("ulimit -n 64, default --maxclients: the node serves what fits, then refuses")
    with Cluster(opt, 1, slot=2, name="fds") as c:
        start_with_fd_limit(c, 1, 64)
        conns, refused = fill_until_refused(c, 1)
        check("at most" in c.node(1).output(), "the node said how many clients fit")
        check_out_of_fds(c, conns, refused, "maxclients fitted to ulimit -n")
        c.stop(1)

    step("ulimit -n 64, --maxclients 1000: accept() runs out of descriptors")
    with Cluster(opt, 1, slot=3, name="emfile") as c:
        start_with_fd_limit(c, 1, 64, extra=["--maxclients", "1000"])
        conns, refused = fill_until_refused(c, 1)
        check_out_of_fds(c, conns, refused, "out of descriptors")
        info = c.info(1)
        check(info["rejected_connections"] >= 6,
              f"INFO counts {info['rejected_connections']} rejected connections")
        c.stop(1)


def main(opt):
    # Whether an attack stalls the loop shows as the leader losing its term.
    # A sanitizer build runs several times slower on a loaded machine: its
    # timers are scaled the same way, so a stall of the same weight is seen.
    timers = ["--election-timeout", "600-1200", "--heartbeat", "100"] if opt.sanitized else []
    with Cluster(opt, 3, slot=0, name="limits",
                 node_args=["--client-output-limit", "4mb"] + timers) as cluster:
        cluster.start()
        test_large_write_off_the_loop(cluster)
        test_hangups_while_suspended(cluster)
        test_non_reading_client(cluster)
        test_trickling_parser(cluster)
        cluster.check_alive()
        for i in cluster.ids:
            cluster.stop(i)
        cluster.check_sanitizers()
    test_maxclients_and_timeout(opt)
    test_out_of_descriptors(opt)


if __name__ == "__main__":
    raise SystemExit(run(main, parse_args(__doc__)))

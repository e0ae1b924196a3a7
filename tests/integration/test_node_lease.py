#!/usr/bin/env python3
"""Lease reads (--lease-reads on, dissertation 6.4.1) on real processes.

- A leader holding its lease serves GETs without a heartbeat round each:
  RAFT.INFO counts them in reads_on_lease, and the leader sends no more peer
  messages than its heartbeats while it serves hundreds (without leases each
  GET costs a round, two messages).
- A leader paused (SIGSTOP) and cut off while the others elect a new leader
  and overwrite a key must not serve the old value when it wakes up, though
  its own clock says its lease has time left: the pause is a stall of its
  clock, and it holds no lease across one (a GET sent to it while it slept
  gets an error, never the old value).
- A leader with leases whose followers run without them holds no lease
  (their answers promise nothing) and serves reads by heartbeat rounds; once
  one follower runs with leases too, its answers and the leader's own make
  a majority, and the lease holds.
- Bad values of the flag, and a lease that an election timeout too short
  would leave empty, are refused with a clear message."""
import socket
import sys
import time

from harness import (Cluster, RespError, check, check_eq, encode_command, fail, parse_args,
                     partition, run, run_program, step, wait_until)

LEASE = ["--lease-reads", "on"]


def serves_on_lease(opt):
    with Cluster(opt, 3, slot=0, name="lease", node_args=LEASE) as c:
        step("a leader with its lease serves GETs without heartbeat rounds")
        c.start()
        leader = c.wait_leader()
        check_eq(c.call(leader, "SET", "k", "v1"), "OK", "a write")
        info = wait_until(lambda: (lambda f: f if f["lease_held"] == 1 else None)(c.info(leader)),
                          5, "the leader to hold its lease")
        check_eq(info["lease_ms"], 72, "the lease at the default 150 ms timeout: 150-60-3-15")
        followers = [i for i in c.ids if i != leader]
        for i in followers:
            check_eq(c.info(i)["lease_held"], 0, f"follower {i} holds no lease")
        before = c.info(leader)
        gets = 300
        start = time.monotonic()
        with c.client(leader) as r:
            for _ in range(gets):
                if r.call("GET", "k") != b"v1":
                    fail("a GET on the lease did not answer the value written")
        elapsed_ms = (time.monotonic() - start) * 1000
        after = c.info(leader)
        on_lease = after["reads_on_lease"] - before["reads_on_lease"]
        late = after["reads_lease_late"] - before["reads_lease_late"]
        check(on_lease + late >= gets * 0.9,
              f"{on_lease} of {gets} GETs were served on the lease ({late} came too late)")
        sent = after["msgs_sent"] - before["msgs_sent"]
        # Heartbeats to two followers every 50 ms, and rounds for the few
        # reads that found the lease lapsed; a round a GET would be 2 * gets.
        allowed = 2 * (elapsed_ms / 50 + 2) + 2 * (gets - on_lease) + 10
        check(sent <= allowed,
              f"the leader sent {sent} peer messages in {elapsed_ms:.0f} ms for {gets} GETs "
              f"(at most {allowed:.0f}: heartbeats, not a round a GET)")


def paused_leader_serves_nothing_stale(opt):
    # Long timeouts (a lease of 837 ms) so that the lease it held when it
    # was paused would still run after it wakes, were the pause not a stall.
    args = LEASE + ["--election-timeout", "1000-2000"]
    with Cluster(opt, 3, slot=1, name="lease-pause", node_args=args) as c:
        step("a leader paused and cut off does not serve its old value on waking")
        c.start()
        old = c.wait_leader()
        check_eq(c.call(old, "SET", "k", "v1"), "OK", "a write through the leader")
        others = [i for i in c.ids if i != old]
        wait_until(lambda: c.info(old)["lease_held"] == 1, 5, "the leader to hold its lease")
        conn = socket.create_connection(("127.0.0.1", c.node(old).client_port), timeout=15)
        partition(c, [[old], others])
        c.pause(old)
        new = c.wait_leader(ids=others)
        check(new != old, f"node {new} leads the majority")
        check_eq(c.call(new, "SET", "k", "v2"), "OK", "the new leader overwrites the key")
        conn.sendall(encode_command("GET", "k"))  # waits in the socket while it sleeps
        c.resume(old)
        buf = b""
        while b"\r\n" not in buf:
            data = conn.recv(4096)
            if not data:
                break
            buf += data
        conn.close()
        check(not buf.startswith(b"$2\r\nv1"),
              f"the woken leader did not serve the old value (it answered {buf[:80]!r})")
        check(buf.startswith(b"-") or buf.startswith(b"$2\r\nv2"),
              f"it answered an error or the new value: {buf[:80]!r}")
        partition(c, [c.ids])
        wait_until(lambda: c.info(old)["role"] == "follower", 10, f"node {old} to follow again")


def mixed_settings(opt):
    with Cluster(opt, 3, slot=2, name="lease-mixed") as c:
        step("a leader with leases among followers without them holds no lease")
        c.start_node(1, extra=LEASE, wait=False)
        c.start([2, 3])
        c.wait_serving(1)
        leader = c.wait_leader()
        if leader != 1:
            check_eq(c.call(leader, "RAFT.TRANSFER", "1", timeout=10), "OK",
                     "leadership handed to node 1, the one with leases")
        wait_until(lambda: c.current_leader() == 1, 10, "node 1 to lead")
        check_eq(c.call(1, "SET", "m", "1"), "OK", "a write")
        deadline = time.monotonic() + 1.0  # ten heartbeats: never a lease
        while time.monotonic() < deadline:
            info = c.info(1)
            if info["lease_held"] != 0:
                fail("node 1 held a lease on answers that promise nothing")
        with c.client(1) as r:
            for _ in range(20):
                if r.call("GET", "m") != b"1":
                    fail("a GET by heartbeat round did not answer the value written")
        check_eq(c.info(1)["reads_on_lease"], 0,
                 "no lease for 1 s, and 20 GETs served by heartbeat rounds")
        step("one follower restarted with leases: the lease holds")
        c.stop(2)
        c.start_node(2, extra=LEASE)
        wait_until(lambda: c.info(1)["lease_held"] == 1, 10, "node 1 to hold its lease")
        with c.client(1) as r:
            for _ in range(20):
                if r.call("GET", "m") != b"1":
                    fail("a GET on the lease did not answer the value written")
        check(c.info(1)["reads_on_lease"] >= 15,
              "GETs served on the lease once node 2 promises too")


def bad_flags(opt):
    step("bad --lease-reads values are refused")
    base = [opt.node_bin, "--config", "/nonexistent", "--id", "1", "--data", "/tmp/unused"]
    rc, out, err, _ = run_program(base + ["--lease-reads", "maybe"])
    check(rc == 2 and "--lease-reads wants on or off, not 'maybe'" in err,
          "--lease-reads maybe: usage, exit 2")
    rc, out, err, _ = run_program(base + ["--lease-reads", "on", "--election-timeout", "60-100",
                                       "--heartbeat", "10"])
    check(rc == 2 and "leaves no lease with a minimum election timeout of 60 ms" in err,
          "--lease-reads with a 60 ms election timeout: refused, with the reason")


def main(opt):
    bad_flags(opt)
    serves_on_lease(opt)
    paused_leader_serves_nothing_stale(opt)
    mixed_settings(opt)


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

#!/usr/bin/env python3
"""A write's answer says only what is known (README, Commands):

- a leader that loses its leadership before its write commits keeps the
  write waiting; when it learns that the write's entry was committed by the
  next leader, it answers the real result, never "-TRYAGAIN";
- when it cannot learn the fate within four election timeouts, it answers
  "-UNCERTAIN ..."; the same request retried (RAFT.REQ, same client id and
  sequence number) then gets the first answer, and the write applied once;
- a node shut down with writes waiting answers them "-UNCERTAIN ...";
- commands pipelined on one connection take effect in order (a GET after a
  SET sees it);
- DEBUG DIGEST agrees on every node at the same applied index.

The entry is made to reach the followers but not its acknowledgements the
leader: the followers hold their outgoing messages (delay), then the leader
is cut off, the followers elect a new leader that commits the entry."""
import struct
import sys
import threading
import time

from harness import (Cluster, Redis, RespError, check, check_eq, control_blocked, make_leader,
                     parse_args, partition, pb_uint, run, send_control, step, wait_until)


def control_delay(ms):
    return pb_uint(5, 1) + pb_uint(6, ms)


def control_speed(factor):
    """Control{set_speed, speed}: speed is a double (field 8, 64-bit wire type)."""
    return pb_uint(7, 1) + bytes([8 << 3 | 1]) + struct.pack("<d", factor)


class PendingCall:
    """One request sent on its own connection; the reply is read by a thread
    so that the test can act on the cluster meanwhile."""

    def __init__(self, cluster, i, *args):
        self.conn = cluster.client(i, timeout=30)
        self.reply = None
        self.error = None
        self.done = threading.Event()
        self.conn.send(*args)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            self.reply = self.conn.read_reply()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.done.set()

    def wait(self, timeout, what):
        wait_until(self.done.is_set, timeout, what)
        self.conn.close()
        if self.error is not None:
            raise self.error
        return self.reply


def strand_write(cluster, leader, request):
    """Send request to the leader so that its entry reaches the followers but
    the leader never hears their acknowledgements; then cut the leader off and
    let the followers elect a leader that commits it. Returns (call, index,
    new leader)."""
    followers = [i for i in cluster.ids if i != leader]
    last = cluster.info(leader)["last_log_index"]
    for i in followers:
        send_control(cluster, i, control_delay(60000))
    call = PendingCall(cluster, leader, *request)
    index = last + 1
    wait_until(lambda: all(cluster.info(i)["last_log_index"] >= index for i in followers), 5,
               f"the write's entry (#{index}) to reach both followers")
    check(not call.done.is_set(), "the leader has not answered: it heard no acknowledgement")
    partition(cluster, [[leader], followers])
    for i in followers:
        send_control(cluster, i, control_delay(0))
    new = cluster.wait_leader(ids=followers, timeout=10)
    wait_until(lambda: cluster.info(new)["commit_index"] >= index, 5,
               f"node {new} to commit #{index}")
    check(True, f"node {new} leads and committed #{index}; node {leader} still believes it leads")
    return call, index, new


def test_stepped_down_leader_answers_the_result(cluster):
    step("a leader that steps down answers a write the next leader committed with its result")
    leader = cluster.wait_leader()
    make_leader(cluster, 1)
    leader = 1
    call, index, new = strand_write(cluster, leader, ("RAFT.REQ", "7001", "1", "INCR", "fate"))
    partition(cluster, [cluster.ids])
    reply = call.wait(10, "the old leader's answer after the heal")
    check_eq(reply, 1, f"node {leader} answered the INCR with its result, not TRYAGAIN")
    retry = cluster.leader_call("RAFT.REQ", "7001", "1", "INCR", "fate")
    check_eq(retry, 1, "the same request again gets the same answer")
    check_eq(cluster.leader_call("GET", "fate"), b"1", "the INCR applied once")


def test_uncertain_when_the_fate_is_unknown(cluster):
    step("a leader that cannot learn its write's fate answers UNCERTAIN; a retry applies once")
    make_leader(cluster, 1)
    leader = 1
    call, index, new = strand_write(cluster, leader, ("RAFT.REQ", "7002", "1", "INCR", "fate2"))
    other = next(i for i in cluster.ids if i not in (leader, new))
    # The old leader hears only `other`, which learns nothing new and whose
    # timers crawl (it never runs an election): the old leader learns the new
    # term, steps down, and never hears the commit index.
    send_control(cluster, other, control_speed(0.01))
    send_control(cluster, new, control_blocked([leader, other]))
    send_control(cluster, other, control_blocked([new]))
    send_control(cluster, leader, control_blocked([new]))
    started = time.monotonic()
    reply = call.wait(15, "the old leader's answer")
    took = time.monotonic() - started
    check(isinstance(reply, RespError) and reply.startswith("UNCERTAIN "),
          f"node {leader} answered {reply!r} after {took:.2f} s")
    send_control(cluster, other, control_speed(1.0))
    partition(cluster, [cluster.ids])
    cluster.wait_leader(timeout=10)
    retry = cluster.leader_call("RAFT.REQ", "7002", "1", "INCR", "fate2")
    check_eq(retry, 1, "the same request retried gets the first answer")
    check_eq(cluster.leader_call("GET", "fate2"), b"1", "the INCR applied once")


def test_shutdown_answers_uncertain(cluster):
    step("a node shut down with a write waiting answers UNCERTAIN")
    make_leader(cluster, 1)
    others = [i for i in cluster.ids if i != 1]
    partition(cluster, [[1], others])
    call = PendingCall(cluster, 1, "RAFT.REQ", "7003", "1", "SET", "fate3", "x")
    wait_until(lambda: cluster.info(1)["last_log_index"] > cluster.info(1)["commit_index"], 5,
               "the write to be in node 1's log, uncommitted")
    cluster.stop(1)
    reply = call.wait(5, "node 1's answer as it stops")
    check(isinstance(reply, RespError) and reply.startswith("UNCERTAIN "),
          f"node 1 answered {reply!r} as it stopped")
    for i in others:
        send_control(cluster, i, control_blocked([]))
    cluster.start_node(1)


def test_pipelined_in_order(cluster):
    step("commands pipelined on one connection take effect in order")
    leader = cluster.wait_leader()
    with cluster.client(leader) as r:
        commands = []
        for k in range(50):
            commands += [("SET", "order", str(k)), ("GET", "order"), ("INCR", "order"),
                         ("GET", "order"), ("DEL", "order"), ("EXISTS", "order")]
        replies = r.pipeline(commands)
    expected = []
    for k in range(50):
        expected += ["OK", str(k).encode(), k + 1, str(k + 1).encode(), 1, 0]
    check_eq(replies, expected, "every GET sees the write sent before it (300 commands)")


def test_digest(cluster):
    step("DEBUG DIGEST agrees on every node at the same applied index")
    leader = cluster.wait_leader()
    before = cluster.call(leader, "DEBUG", "DIGEST")
    cluster.leader_call("SET", "digest:key", "value")
    index = cluster.info(leader)["commit_index"]
    cluster.wait_applied(cluster.ids, index)

    def digests():
        got = {}
        for i in cluster.ids:
            with cluster.client(i) as r:
                info, digest = r.pipeline([("RAFT.INFO",), ("DEBUG", "DIGEST")])
            applied = int(info.split(b"last_applied:")[1].split(b"\r\n")[0])
            got[i] = (applied, digest)
        return got if len(set(got.values())) == 1 else None

    got = wait_until(digests, 10, "every node to show the same digest at the same index")
    digest = got[leader][1]
    check(isinstance(digest, str) and len(digest) == 32 and digest != before,
          f"one digest on every node ({digest}), changed by the SET")
    with Redis("127.0.0.1", cluster.node(leader).client_port) as r:
        check_eq(r.call("DEBUG", "NOSUCH"),
                 RespError("ERR DEBUG supports DIGEST and SET-ACTIVE-EXPIRE 0|1"),
                 "an unknown DEBUG subcommand is refused")


def main(opt):
    with Cluster(opt, 3, name="fate") as cluster:
        cluster.start()
        test_stepped_down_leader_answers_the_result(cluster)
        test_uncertain_when_the_fate_is_unknown(cluster)
        test_pipelined_in_order(cluster)
        test_digest(cluster)
        test_shutdown_answers_uncertain(cluster)
        cluster.check_alive()
        cluster.shutdown()
    with Cluster(opt, 1, slot=1, name="fate1") as single:
        single.start()
        test_pipelined_in_order(single)
        single.shutdown()


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

#!/usr/bin/env python3
"""kill -9 of the leader (with 5 nodes: and of a follower) while a client
writes: a new leader serves writes, no acknowledged write is lost, and the
killed nodes restart from their data dirs and catch up to the same KV table."""
import socket
import sys
import threading
import time

from harness import (Cluster, LeaderClient, RespError, TestFailure, check, check_eq, fail,
                     make_leader, parse_args, partition, run, step, wait_until)

PAIRS_BEFORE_KILL = 150
PAIRS_AFTER_KILL = 150


class Writer(threading.Thread):
    """Writes SET fo:<i> v<i>, then INCR fo:counter as RAFT.REQ, over and over,
    retrying each until it is acknowledged; remembers what was acknowledged."""

    def __init__(self, cluster, client_id):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.client_id = client_id
        self.acked = {}  # key -> value, acknowledged SETs
        self.incr_replies = []  # answers to the acknowledged INCRs, in order
        self.stop_requested = threading.Event()
        self.error = None

    def run(self):
        client = LeaderClient(self.cluster)
        try:
            i = 0
            while not self.stop_requested.is_set():
                key, value = f"fo:{i}", f"v{i}"
                reply = client.call("SET", key, value, timeout=20)
                if reply != "OK":
                    raise TestFailure(f"SET {key} answered {reply!r}")
                self.acked[key] = value
                # A retried RAFT.REQ with the same (client, seq) applies once.
                reply = client.call("RAFT.REQ", self.client_id, i + 1, "INCR", "fo:counter",
                                    timeout=20)
                if not isinstance(reply, int):
                    raise TestFailure(f"RAFT.REQ ... INCR fo:counter answered {reply!r}")
                self.incr_replies.append(reply)
                i += 1
        except BaseException as e:
            self.error = e
        finally:
            client.close()

    def finish(self):
        self.stop_requested.set()
        self.join(timeout=30)
        if self.is_alive():
            fail("the writer did not stop")
        if self.error is not None:
            fail(f"the writer failed: {self.error}")


def read_all(cluster, i, keys):
    """GET every key and the counter from node i in one pipeline."""
    with cluster.client(i, timeout=10) as r:
        replies = r.pipeline([("GET", k) for k in keys] + [("GET", "fo:counter")])
    return replies[:-1], replies[-1]


def scenario(opt, n, slot, kill_follower):
    with Cluster(opt, n, slot=slot, name=f"failover{n}") as cluster:
        step(f"start {n} nodes")
        cluster.start()
        old = cluster.wait_leader()
        check(True, f"node {old} leads")

        victims = [old]
        if kill_follower:
            victims.append(next(i for i in cluster.ids if i != old))
        who = "the leader" if len(victims) == 1 else "the leader and a follower"
        step(f"a client writes; kill -9 of {who} in the middle")
        writer = Writer(cluster, client_id=7001)
        writer.start()
        wait_until(lambda: writer.error or len(writer.incr_replies) >= PAIRS_BEFORE_KILL, 30,
                   f"{PAIRS_BEFORE_KILL} acknowledged SET+INCR pairs")
        if writer.error:
            writer.finish()
        for i in victims:
            cluster.kill(i)
        killed_at = time.monotonic()
        acked_at_kill = len(writer.incr_replies)
        check(True, f"killed nodes {victims} after {acked_at_kill} acknowledged pairs")

        others = [i for i in cluster.ids if i not in victims]
        new = cluster.wait_leader(ids=others, timeout=10)
        check(new != old, f"node {new} took over {time.monotonic() - killed_at:.2f} s after "
              "the kill")
        wait_until(lambda: writer.error or
                   len(writer.incr_replies) >= acked_at_kill + PAIRS_AFTER_KILL, 30,
                   f"{PAIRS_AFTER_KILL} more acknowledged pairs after the kill")
        writer.finish()
        check(True, f"the new leader served writes: {len(writer.incr_replies)} pairs in all")

        acked = dict(writer.acked)
        n_incr = len(writer.incr_replies)
        check_eq(writer.incr_replies, list(range(1, n_incr + 1)),
                 "each acknowledged INCR answered the next number: none lost, none twice")

        step("every acknowledged write is at the new leader")
        keys = sorted(acked)
        values, counter = read_all(cluster, new, keys)
        lost = [k for k, v in zip(keys, values) if v != acked[k].encode()]
        check(not lost, f"all {len(keys)} acknowledged SETs readable (lost: {lost[:5]})")
        check_eq(counter, str(n_incr).encode(), "the counter equals the acknowledged INCRs")

        step(f"restart nodes {victims} from their data dirs")
        for i in victims:
            cluster.start_node(i)
        commit = cluster.info(new)["commit_index"]
        cluster.wait_applied(cluster.ids, commit, timeout=15)
        check(True, f"nodes {victims} applied up to the leader's commit index {commit}")
        infos = cluster.infos(cluster.ids)
        check(len({f["keys"] for f in infos.values()}) == 1,
              f"every node holds the same number of keys "
              f"({ {i: f['keys'] for i, f in infos.items()} })")
        # A restarted node may time out before the leader's heartbeats reach
        # it and call an election (Raft without PreVote): any one leader that
        # every node follows will do.
        leader = wait_until(lambda: cluster.current_leader(cluster.ids), 10,
                            "every node, the restarted ones too, to follow one leader")
        check(True, f"every node follows node {leader}" +
              ("" if leader == new else " (the restarted nodes caused an election)"))

        # Comparing the replicas: only a leader answers GET (followers send
        # MOVED), so each node in turn is made leader with a timeout_now
        # control message (its log is complete, so it wins the election) and
        # every acknowledged key is read from it. GET there is served from
        # that node's own state machine, so this reads each replica's KV table;
        # with the equal key counts above, the tables are the same.
        step("every replica, made leader in turn, holds every acknowledged write")
        for i in victims + others:
            make_leader(cluster, i)
            values, counter = read_all(cluster, i, keys)
            lost = [k for k, v in zip(keys, values) if v != acked[k].encode()]
            check(not lost and counter == str(n_incr).encode(),
                  f"node {i} as leader: all {len(keys)} SETs and counter {n_incr} "
                  f"(lost: {lost[:5]}, counter {counter!r})")
        wait_until(lambda: len({(f["keys"], f["last_applied"])
                                for f in cluster.infos(cluster.ids).values()}) == 1, 10,
                   "every node to reach the same key count and last applied index")
        check(True, "every node: same key count and same last applied index")

        step("shut down")
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly")


def isolated_leader(opt):
    """A leader cut off from the others keeps believing it leads, but must not
    answer a read from its stale state, nor acknowledge a write. This is the
    paper's Raft: with CheckQuorum (on by default, test_node_prevote.py) the
    cut-off leader steps down by itself."""
    with Cluster(opt, 3, slot=2, name="isolated", node_args=["--check-quorum", "off"]) as cluster:
        step("3 nodes: the leader is cut off from the others")
        cluster.start()
        old = cluster.wait_leader()
        others = [i for i in cluster.ids if i != old]
        check_eq(cluster.call(old, "SET", "iso", "old"), "OK", f"SET iso old at node {old}")
        partition(cluster, [[old], others])
        wait_until(lambda: all("cut off from" in cluster.node(i).output() for i in cluster.ids),
                   5, "every node to report the partition")
        new = cluster.wait_leader(ids=others)
        check(new != old, f"node {new} leads the majority side")
        check_eq(cluster.call(new, "SET", "iso", "new"), "OK", f"SET iso new at node {new}")

        step(f"node {old}, deposed without knowing it, serves nothing stale")
        stale = cluster.client(old, timeout=1.5)
        try:
            reply = stale.call("GET", "iso")
        except (socket.timeout, TimeoutError):
            reply = "no answer"
        check(reply != b"old", f"GET at the isolated old leader does not answer the old value "
              f"({reply!r})")
        stale.close()
        writer = cluster.client(old, timeout=1.5)
        writer.send("SET", "iso", "stale")
        try:
            reply = writer.read_reply()
        except (socket.timeout, TimeoutError):
            reply = "no answer"
        check(reply != "OK", f"SET at the isolated old leader is not acknowledged ({reply!r})")

        step("heal: the old leader follows, its write never applies")
        partition(cluster, [cluster.ids])
        leader = wait_until(lambda: cluster.current_leader(cluster.ids), 10,
                            "every node to follow one leader")
        check(True, f"every node follows node {leader}")
        writer.settimeout(5)
        reply = writer.read_reply()
        check(isinstance(reply, RespError) and reply.startswith("TRYAGAIN"),
              f"the pending SET at node {old} fails once it learns of the new leader ({reply!r})")
        writer.close()
        check_eq(cluster.call(leader, "GET", "iso"), b"new", "the value is the new leader's")
        cluster.wait_applied(cluster.ids, cluster.info(leader)["commit_index"])
        make_leader(cluster, old)
        check_eq(cluster.call(old, "GET", "iso"), b"new", f"node {old}, leader again, agrees")
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly")


def main(opt):
    scenario(opt, 3, slot=0, kill_follower=False)
    scenario(opt, 5, slot=1, kill_follower=True)
    isolated_leader(opt)


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

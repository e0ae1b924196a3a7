#!/usr/bin/env python3
"""Exactly-once writes: RAFT.REQ <client-id> <seq> <write> applies once per
(client-id, seq), however often it is retried: at the same leader, and at a
new leader after the old one was killed or suspended mid-request."""
import sys

from harness import (Cluster, LeaderClient, RespError, check, check_eq, encode_command,
                     parse_args, run, step, wait_until)


def test_same_leader(cluster):
    step("retries at the same leader")
    leader = cluster.wait_leader()
    with cluster.client(leader) as r:
        check_eq(r.call("RAFT.REQ", 42, 1, "INCR", "eo:a"), 1, "RAFT.REQ 42 1 INCR answers 1")
        check_eq(r.call("RAFT.REQ", 42, 1, "INCR", "eo:a"), 1, "the retry gets the first answer")
        check_eq(r.call("RAFT.REQ", 42, 1, "INCR", "eo:a"), 1, "so does a second retry")
        check_eq(r.call("GET", "eo:a"), b"1", "the counter increased once")
        check_eq(r.call("RAFT.REQ", 42, 2, "INCR", "eo:a"), 2, "the next seq applies")
        check_eq(r.call("RAFT.REQ", 43, 1, "INCR", "eo:a"), 3, "another client's seq 1 applies")
        check_eq(r.call("GET", "eo:a"), b"3", "counter 3")

        check_eq(r.call("RAFT.REQ", 42, 3, "SET", "eo:s", "first"), "OK", "RAFT.REQ SET")
        check_eq(r.call("SET", "eo:s", "second"), "OK", "a plain SET overwrites it")
        check_eq(r.call("RAFT.REQ", 42, 3, "SET", "eo:s", "first"), "OK",
                 "the retried RAFT.REQ SET gets the first answer")
        check_eq(r.call("GET", "eo:s"), b"second", "... and is not applied again")

        err = r.call("RAFT.REQ", 42, 4, "INCR", "eo:s")
        check(isinstance(err, RespError) and "not an integer" in err, f"a failing INCR ({err!r})")
        check_eq(r.call("RAFT.REQ", 42, 4, "INCR", "eo:s"), err, "its retry gets the same error")

        stale = r.call("RAFT.REQ", 42, 2, "INCR", "eo:a")
        check_eq(r.call("GET", "eo:a"), b"3",
                 f"an older seq does not apply (it answered {stale!r})")

        for args, what in (((0, 1, "INCR", "eo:a"), "client id 0"),
                           (("x", 1, "INCR", "eo:a"), "a client id that is no number"),
                           ((42, "-1", "INCR", "eo:a"), "a negative seq"),
                           ((42, 9, "GET", "eo:a"), "a read command inside"),
                           ((42, 9, "NOPE", "eo:a"), "an unknown command inside"),
                           ((42, 9, "INCR"), "a wrapped command with too few arguments"),
                           ((42, 9), "no command at all")):
            reply = r.call("RAFT.REQ", *args)
            check(isinstance(reply, RespError), f"RAFT.REQ with {what} is an error ({reply!r})")
        check_eq(r.call("GET", "eo:a"), b"3", "none of them changed anything")

    for i in cluster.ids:
        if i != leader:
            reply = cluster.call(i, "RAFT.REQ", 42, 5, "INCR", "eo:a")
            check(isinstance(reply, RespError) and reply.startswith("MOVED 0 "),
                  f"node {i}, a follower, answers RAFT.REQ with MOVED ({reply!r})")


def force_away(cluster, leader, how):
    if how == "kill -9":
        cluster.kill(leader)
    else:
        check_eq(cluster.call(leader, "RAFT.SUSPEND", 2), "OK", f"RAFT.SUSPEND 2 at node {leader}")


def restore(cluster, old, how):
    if how == "kill -9":
        cluster.start_node(old)
    else:
        wait_until(lambda: f"node {old}: resumed" in cluster.node(old).output(), 5,
                   f"node {old} to resume")
    wait_until(lambda: cluster.current_leader(cluster.ids), 10, "every node to follow one leader")


def test_acked_then_forced_away(cluster, how, client_id):
    step(f"an acknowledged RAFT.REQ INCR, leader forced away ({how}), retried at the new leader")
    leader = cluster.wait_leader()
    first = int(cluster.call(leader, "GET", "eo:b") or 0) + 1
    check_eq(cluster.call(leader, "RAFT.REQ", client_id, 1, "INCR", "eo:b"), first,
             "the INCR applies")
    force_away(cluster, leader, how)
    others = [i for i in cluster.ids if i != leader]
    new = cluster.wait_leader(ids=others)
    check_eq(cluster.call(new, "RAFT.REQ", client_id, 1, "INCR", "eo:b"), first,
             f"the retry at node {new} gets the first answer")
    check_eq(cluster.call(new, "GET", "eo:b"), str(first).encode(), "the counter increased once")
    restore(cluster, leader, how)


def test_unanswered_then_forced_away(cluster, how, client_id, key):
    step(f"a RAFT.REQ INCR whose answer is lost to a leader change ({how})")
    leader = cluster.wait_leader()
    before = int(cluster.call(leader, "GET", key) or 0)
    others = [i for i in cluster.ids if i != leader]
    with cluster.client(leader) as r:
        request = encode_command("RAFT.REQ", client_id, 1, "INCR", key)
        if how == "kill -9":
            r.send_raw(request)
            cluster.kill(leader)
        else:
            # Both in one write: the INCR is proposed, then the node sleeps
            # before its answer can go out.
            r.send_raw(request + encode_command("RAFT.SUSPEND", 2))
        new = cluster.wait_leader(ids=others)
        retry = LeaderClient(cluster)
        retry.target = cluster.node(new).client_addr
        reply = retry.call("RAFT.REQ", client_id, 1, "INCR", key, timeout=10)
        again = retry.call("RAFT.REQ", client_id, 1, "INCR", key, timeout=10)
        retry.close()
    check_eq(reply, before + 1, f"the retry at the new leader answers {before + 1}")
    check_eq(again, before + 1, "a second retry answers the same")
    check_eq(cluster.call(new, "GET", key), str(before + 1).encode(),
             "the counter increased exactly once")
    restore(cluster, leader, how)
    check_eq(cluster.leader_call("GET", key), str(before + 1).encode(),
             "still once after the old leader is back")


def test_client_session_rules(cluster):
    step("client sessions: an id the cluster does not know, a seq reused for another command")
    leader = cluster.wait_leader()
    with cluster.client(leader) as r:
        reply = r.call("RAFT.REQ", "300", "2", "SET", "eo:s", "x")
        check(isinstance(reply, RespError) and reply.startswith("ERR unknown client session"),
              f"seq 2 from a client id with no session is refused ({reply!r})")
        check_eq(r.call("RAFT.REQ", "300", "1", "SET", "eo:s", "x"), "OK", "seq 1 starts one")
        check_eq(r.call("RAFT.REQ", "300", "1", "SET", "eo:s", "y"),
                 RespError("ERR sequence number already used for a different command"),
                 "the same seq for a different command is refused")
        check_eq(r.call("GET", "eo:s"), b"x", "and changes nothing")
    # raftkv-cli's first write refused before the log (a key too large) leaves
    # its client id unknown to the cluster: the next write goes again under a
    # fresh id instead of failing for ever.
    script = "setval " + "k" * 70000 + " v\nsetval eo:cli 1\nincr eo:cli\ngetval eo:cli\n"
    rc, out, err, _ = cluster.cli(stdin=script)
    check(out.split() == ["OK", "2", "2"] and "key too large" in err,
          f"raftkv-cli goes on after its first write was refused (out {out.split()!r}, "
          f"err {err.strip()[:80]!r})")


def main(opt):
    with Cluster(opt, 3, name="exactly-once") as cluster:
        step("start 3 nodes")
        cluster.start()
        test_same_leader(cluster)
        test_client_session_rules(cluster)
        test_acked_then_forced_away(cluster, "kill -9", 100)
        test_acked_then_forced_away(cluster, "RAFT.SUSPEND", 101)
        for n, how in enumerate(["kill -9", "RAFT.SUSPEND", "kill -9", "RAFT.SUSPEND"]):
            test_unanswered_then_forced_away(cluster, how, 200 + n, "eo:c")
        # Every node applied the same history.
        leader = cluster.wait_leader()
        commit = cluster.info(leader)["commit_index"]
        cluster.wait_applied(cluster.ids, commit)
        counts = {i: f["keys"] for i, f in cluster.infos(cluster.ids).items()}
        check(len(set(counts.values())) == 1, f"every node holds the same keys ({counts})")
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly")


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

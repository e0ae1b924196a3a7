#!/usr/bin/env python3
"""RAFT.SUSPEND and `raftkv-cli suspend` on the leader: another node takes
over, and the resumed node follows the new leader and catches up."""
import re
import socket
import sys
import time

from harness import (Cluster, RespError, check, check_eq, fail, parse_args, run, run_program,
                     step, wait_until)


def check_not_answering(cluster, i):
    """A suspended node accepts no request: PING gets no answer within 0.5 s."""
    try:
        with cluster.client(i, timeout=0.5) as r:
            reply = r.call("PING")
    except (socket.timeout, TimeoutError):
        check(True, f"node {i} does not answer clients while suspended")
        return
    except OSError as e:
        fail(f"node {i}: PING while suspended: {e!r}")
    fail(f"node {i} answered {reply!r} while suspended")


def suspend_round(cluster, old, how, seconds):
    others = [i for i in cluster.ids if i != old]
    addr = cluster.node(old).client_addr
    if how == "RAFT.SUSPEND":
        check_eq(cluster.call(old, "RAFT.SUSPEND", seconds), "OK", f"RAFT.SUSPEND {seconds} "
                 "answers +OK")
    else:
        rc, out, err, _ = run_program([cluster.opt.cli_bin, "--connect", addr, "suspend",
                                       str(seconds)])
        check(rc == 0 and out == "OK\n", f"raftkv-cli --connect {addr} suspend {seconds}: OK, "
              f"exit 0 (got {rc}, {out!r}, {err!r})")
    suspended_at = time.monotonic()
    wait_until(lambda: f"node {old}: suspended for {seconds * 1000} ms" in
               cluster.node(old).output(), 2, f"node {old} to print 'suspended for ...'")
    check(True, f"node {old} printed 'suspended for {seconds * 1000} ms'")
    check_not_answering(cluster, old)

    new = cluster.wait_leader(ids=others, timeout=5)
    took = time.monotonic() - suspended_at
    check(new != old and took < seconds,
          f"node {new} took over {took:.2f} s after the suspend, while node {old} sleeps")
    check(re.search(rf"node {new}: term \d+ Candidate -> Leader \(votes from [\d,]+\)",
                    cluster.node(new).output()), f"node {new} printed its election")
    keys = [f"su:{how}:{i}" for i in range(50)]
    with cluster.client(new) as r:
        replies = r.pipeline([("SET", k, k) for k in keys])
    check_eq(replies, ["OK"] * len(keys), "the new leader serves writes during the suspension")
    check(time.monotonic() - suspended_at < seconds, "... all before the suspension ended")

    wait_until(lambda: f"node {old}: resumed" in cluster.node(old).output(), seconds + 3,
               f"node {old} to print 'resumed'")
    check(time.monotonic() - suspended_at >= seconds - 0.2,
          f"node {old} resumed after about {seconds} s")
    wait_until(lambda: re.search(rf"node {old}: term \d+ Leader -> Follower",
                                 cluster.node(old).output()), 5,
               f"node {old} to print that it stepped down")
    check(True, f"node {old} printed that it stepped down")
    # Usually the new leader still leads. On a starved machine the resumed node
    # may time out before the leader's heartbeats reach it and call an
    # election (Raft without PreVote); it must then follow whoever wins.
    now = wait_until(lambda: cluster.current_leader(cluster.ids), 10,
                     "every node to follow one leader")
    check(now != old, f"node {old} follows node {now}" +
          ("" if now == new else f" (node {new} lost the lead to an election after the resume)"))
    commit = cluster.info(now)["commit_index"]
    cluster.wait_applied([old], commit)
    check(True, f"node {old} applied up to the leader's commit index {commit}")
    check_eq(cluster.call(old, "GET", keys[0]),
             RespError(f"MOVED 0 {cluster.node(now).client_addr}"),
             f"node {old} sends clients to node {now}")
    check_eq(cluster.call(now, "GET", keys[-1]), keys[-1].encode(),
             "the writes made during the suspension are there")
    return now


def main(opt):
    with Cluster(opt, 3, name="suspend") as cluster:
        step("start 3 nodes")
        cluster.start()
        leader = cluster.wait_leader()
        check_eq(cluster.call(leader, "SET", "before", "1"), "OK", f"node {leader} leads, SET")

        step("RAFT.SUSPEND on the leader")
        leader = suspend_round(cluster, leader, "RAFT.SUSPEND", 3)

        step("raftkv-cli suspend on the leader")
        leader = suspend_round(cluster, leader, "raftkv-cli", 2)

        step("the data survived both changes")
        check_eq(cluster.call(leader, "GET", "before"), b"1", "a key from before is there")
        check_eq(cluster.call(leader, "RAFT.SUSPEND", "abc"),
                 RespError("ERR seconds must be a whole number from 1 to 86400"),
                 "RAFT.SUSPEND abc is an error")
        check_eq(cluster.call(leader, "RAFT.SUSPEND", "0"),
                 RespError("ERR seconds must be a whole number from 1 to 86400"),
                 "RAFT.SUSPEND 0 is an error")
        check_eq(cluster.call(leader, "RAFT.SUSPEND", "86401"),
                 RespError("ERR seconds must be a whole number from 1 to 86400"),
                 "RAFT.SUSPEND over a day is an error (as raftkv-cli's limit)")
        check_eq(cluster.info(leader)["role"], "leader", "bad arguments suspended nothing")
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly")


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

#!/usr/bin/env python3
"""Expiry: a key with a TTL disappears on every node at its deadline, also
when the leader that stamped the deadline is killed; GET never answers a
value past the deadline, and never misses it before.

Times: the leader stamps its wall clock (in whole ms) into the EXPIRE entry;
this test runs on the same machine and reads the same clock. With t_sent and
t_acked taken around EXPIRE k s, the deadline D lies in
[t_sent + s, t_acked + s]. A GET sent after t_acked + s + EPS must answer nil;
a GET whose answer arrived before t_sent + s - EPS must answer the value.
EPS covers the millisecond truncation of both stamps."""
import sys
import time

from harness import (Cluster, RespError, check, check_eq, fail, parse_args, run, step,
                     wait_until)

EPS = 0.005
SWEEP_TOLERANCE = 1.0  # the leader sweeps every 100 ms; commit and polling add a little


def expire(cluster, leader, keys, seconds):
    """EXPIRE every key; returns the window (d_min, d_max) holding the deadlines."""
    with cluster.client(leader) as r:
        t_sent = time.time()
        replies = r.pipeline([("EXPIRE", k, seconds) for k in keys])
        t_acked = time.time()
    check_eq(replies, [1] * len(keys), f"EXPIRE {seconds} on {len(keys)} keys answers 1")
    return t_sent + seconds, t_acked + seconds


def watch_expiry(cluster, leader, key, value, d_min, d_max, ids, keys_before, n_expiring):
    """Until d_max + SWEEP_TOLERANCE: GET key at the leader, RAFT.INFO keys at
    every node in ids. Check GET against the deadline window, and that every
    node's key count drops by n_expiring, never before d_min, at the latest by
    d_max + SWEEP_TOLERANCE. Returns the leader at the end, and how many nils
    GET answered while the leader still held every key (expired but not yet
    deleted: a read must first have the delete committed)."""
    dropped_at = {}
    nil_before_delete = 0
    gets = 0
    conns = {i: cluster.client(i) for i in ids}
    get_conn = cluster.client(leader)
    try:
        while time.time() < d_max + SWEEP_TOLERANCE and len(dropped_at) < len(ids):
            t0 = time.time()
            reply = get_conn.call("GET", key)
            t1 = time.time()
            if isinstance(reply, RespError):
                # The lead changed during the watch (a starved follower called
                # an election): ask whoever leads now.
                if not reply.startswith(("MOVED", "TRYAGAIN")):
                    fail(f"GET {key} answered {reply!r}")
                get_conn.close()
                leader = cluster.wait_leader(ids=ids, timeout=5)
                get_conn = cluster.client(leader)
                print(f"   (the lead moved to node {leader} during the watch)")
                continue
            gets += 1
            if reply is not None and t0 > d_max + EPS:
                fail(f"GET {key} answered {reply!r} {t0 - d_max:.3f} s past the deadline")
            if reply != value and t1 < d_min - EPS:
                fail(f"GET {key} answered {reply!r} {d_min - t1:.3f} s before the deadline")
            for i in ids:
                if i in dropped_at:
                    continue
                info = conns[i].call("RAFT.INFO")
                t1 = time.time()  # the node answered before this
                count = int(info.split(b"keys:")[1].split(b"\r\n")[0])
                if not keys_before - n_expiring <= count <= keys_before:
                    fail(f"node {i} holds {count} keys, expected {keys_before - n_expiring} "
                         f"to {keys_before}")
                if count < keys_before and t1 < d_min - EPS:
                    fail(f"node {i} deleted keys {d_min - t1:.3f} s before the deadline")
                if count == keys_before - n_expiring:
                    dropped_at[i] = t1
                elif i == leader and reply is None and count == keys_before:
                    nil_before_delete += 1
            time.sleep(0.002)
    finally:
        get_conn.close()
        for c in conns.values():
            c.close()
    missing = [i for i in ids if i not in dropped_at]
    if missing:
        fail(f"nodes {missing} still hold the keys {SWEEP_TOLERANCE} s past the deadline")
    late = max(dropped_at.values()) - d_max
    check(True, f"GET answered the value before the deadline and nil after it ({gets} GETs)")
    check(True, f"every node ({ids}) dropped the {n_expiring} keys, none before the deadline, "
          f"the last {max(late, 0):.3f} s after it")
    return leader, nil_before_delete


def test_expire_everywhere(cluster):
    step("keys with a TTL disappear on every node")
    leader = cluster.wait_leader()
    with cluster.client(leader) as r:
        expiring = [f"ex:{i}" for i in range(5)]
        replies = r.pipeline([("SET", k, "soon gone") for k in expiring] +
                             [("SET", "ex:long", "stays"), ("SET", "ex:none", "stays"),
                              ("EXPIRE", "ex:long", 100)])
        check_eq(replies, ["OK"] * 7 + [1], "SET 7 keys, EXPIRE one of them 100")
    commit = cluster.info(leader)["commit_index"]
    cluster.wait_applied(cluster.ids, commit)
    keys_before = cluster.info(leader)["keys"]
    d_min, d_max = expire(cluster, leader, expiring, 1)
    ttl = cluster.call(leader, "TTL", "ex:0")
    check(ttl in (0, 1), f"TTL right after EXPIRE 1 answers 1 (rounded) ({ttl!r})")
    leader, nils = watch_expiry(cluster, leader, "ex:0", b"soon gone", d_min, d_max,
                                cluster.ids, keys_before, len(expiring))
    check_eq(nils, 0, "GET answered nil only once the key's delete was applied")
    with cluster.client(leader) as r:
        check_eq(r.pipeline([("EXISTS", *expiring), ("GET", "ex:long"), ("GET", "ex:none"),
                             ("TTL", "ex:0")]), [0, b"stays", b"stays", -2],
                 "the expired keys are gone, the others stay")
    return leader


def test_expire_across_leader_change(cluster, leader):
    step("a deadline stays the same when the leader that stamped it dies")
    with cluster.client(leader) as r:
        keys = [f"lc:{i}" for i in range(3)]
        check_eq(r.pipeline([("SET", k, "v") for k in keys]), ["OK"] * 3, "SET 3 keys")
    cluster.wait_applied(cluster.ids, cluster.info(leader)["commit_index"])
    keys_before = cluster.info(leader)["keys"]
    d_min, d_max = expire(cluster, leader, keys, 2)
    cluster.kill(leader)
    killed_at = time.time()
    check(True, f"killed the leader, node {leader}, {d_min - killed_at:.2f} s before the deadline")
    others = [i for i in cluster.ids if i != leader]
    new = cluster.wait_leader(ids=others)
    check(time.time() < d_min - 0.2, f"node {new} leads {time.time() - killed_at:.2f} s later, "
          "before the deadline")
    ttl = cluster.call(new, "TTL", keys[0])
    check(ttl in (1, 2), f"the new leader knows the TTL ({ttl!r})")
    new, _ = watch_expiry(cluster, new, keys[0], b"v", d_min, d_max, others, keys_before,
                          len(keys))

    step(f"node {leader} restarts and holds the same keys")
    cluster.start_node(leader)
    cluster.wait_applied(cluster.ids, cluster.info(new)["commit_index"])
    counts = {i: f["keys"] for i, f in cluster.infos(cluster.ids).items()}
    check(len(set(counts.values())) == 1 and counts[leader] == keys_before - len(keys),
          f"every node holds {keys_before - len(keys)} keys ({counts})")


def test_persist_and_set(cluster):
    step("SET clears a TTL: the key outlives the old deadline")
    leader = cluster.wait_leader()
    with cluster.client(leader) as r:
        check_eq(r.pipeline([("SET", "keep", "1"), ("EXPIRE", "keep", 1), ("SET", "keep", "2")]),
                 ["OK", 1, "OK"], "SET, EXPIRE 1, SET")
        deadline = time.time() + 1.5
    wait_until(lambda: time.time() > deadline, 3, "the old deadline to pass")
    check_eq(cluster.call(leader, "GET", "keep"), b"2", "the key is still there")
    check_eq(cluster.call(leader, "TTL", "keep"), -1, "with no TTL")


def main(opt):
    with Cluster(opt, 3, name="expiry") as cluster:
        step("start 3 nodes")
        cluster.start()
        leader = test_expire_everywhere(cluster)
        test_persist_and_set(cluster)
        test_expire_across_leader_change(cluster, leader)
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly")


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

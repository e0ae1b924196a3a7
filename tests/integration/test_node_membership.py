#!/usr/bin/env python3
"""Membership changes on real processes (Raft dissertation, chapter 4).

- A node that is not in the cluster file starts with --join and waits: it
  grants no votes, starts no elections and serves no writes.
- RAFT.ADDNODE at the leader adds it as a learner, catches it up and makes
  it a voter; the reply comes once that configuration is committed. The
  cluster grows 3 -> 5 while clients write; a second change while one is
  pending is refused.
- RAFT.REMOVENODE: shrink 5 -> 3, removing the leader itself (it steps down
  once the change commits and stays quiet afterwards); a dead node is
  replaced by a new one.
- Every acknowledged write is on every member (DEBUG DIGEST equal at the same
  last_applied, every key read back); the configuration survives a restart
  of every node (the cluster file is not what they use), with and without
  snapshots; a node removed and added again at new addresses restarts at
  those; raftkv-cli addnode, removenode and members."""
import shutil
import sys
import threading
import time

from harness import (Cluster, LeaderClient, RespError, check, check_eq, parse_args, run, step,
                     wait_until)


def members(c, i):
    info = c.info(i)
    return str(info["members"]), str(info["learners"])


def wait_members(c, ids, voters, timeout=20):
    want = ",".join(str(v) for v in sorted(voters))

    def agree():
        for i in ids:
            got, learners = members(c, i)
            if ",".join(sorted(got.split(","))) != want or learners not in ("", "None"):
                return False
        return True

    wait_until(agree, timeout, f"nodes {ids} to have voters {want}")


def leader_of(c, ids):
    return wait_until(lambda: c.current_leader(ids), 15, f"a leader among {ids}")


def writers(c, acked, stop, n=3):
    lock = threading.Lock()

    def writer(w):
        lc = LeaderClient(c, io_timeout=2.0)
        seq = 0
        try:
            while not stop.is_set():
                key = f"m{w}:{seq}"
                try:
                    reply = lc.call("SET", key, str(seq), timeout=10.0)
                except Exception:  # noqa: BLE001 - its node may have been removed or killed
                    lc._next_node()
                    continue
                if reply == "OK":
                    with lock:
                        acked[key] = str(seq)
                seq += 1
        finally:
            lc.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n)]
    for t in threads:
        t.start()
    return threads


def check_data(c, ids, acked):
    leader = leader_of(c, ids)
    commit = c.info(leader)["commit_index"]
    c.wait_applied(ids, commit, timeout=30)
    items = sorted(acked.items())
    lost = []
    with c.client(leader, timeout=30) as r:
        for start in range(0, len(items), 1000):
            part = items[start:start + 1000]
            got = r.pipeline([("GET", k) for k, _ in part])
            lost += [k for (k, v), g in zip(part, got) if g != v.encode()]
    check(not lost, f"every acknowledged write ({len(items)}) is there (lost {lost[:5]})")

    def same():
        applied = {c.info(i)["last_applied"] for i in ids}
        return len(applied) == 1
    wait_until(same, 20, f"nodes {ids} to apply the same index")
    digests = {i: c.call(i, "DEBUG", "DIGEST") for i in ids}
    check(len(set(digests.values())) == 1, f"every member holds the same data {digests}")


def main(opt):
    with Cluster(opt, 6, name="members", in_file=3,
                 node_args=["--snapshot-entries", "2000"]) as c:
        step("3 nodes from the cluster file; nodes 4 and 5 start with --join")
        c.start([1, 2, 3])
        leader = c.wait_leader(ids=[1, 2, 3])
        c.start_node(4, extra=c.join_args(4))
        c.start_node(5, extra=c.join_args(5))
        check_eq(c.info(4)["term"], 0, "node 4 waits: no term, no election")
        reply = c.call(4, "SET", "x", "1")
        check(isinstance(reply, RespError), f"node 4 takes no writes ({reply!r})")
        wait_members(c, [1, 2, 3], [1, 2, 3])

        acked, stop = {}, threading.Event()
        threads = writers(c, acked, stop)
        try:
            wait_until(lambda: len(acked) >= 300, 30, "300 acknowledged writes")
            step("grow 3 -> 5 while clients write")
            nd4 = c.node(4)
            started = time.monotonic()
            reply = c.call(leader, "RAFT.ADDNODE", "4", nd4.peer_url, nd4.client_addr, timeout=60)
            check_eq(reply, "OK", "RAFT.ADDNODE 4 answers once node 4 is a voter")
            print(f"figure: node 4 added and caught up in {time.monotonic() - started:.2f} s "
                  f"({c.info(leader)['commit_index']} entries)", flush=True)
            wait_members(c, [1, 2, 3, 4], [1, 2, 3, 4])
            rc, out, err, _ = c.cli("addnode", "5", c.node(5).peer_url, c.node(5).client_addr,
                                    timeout_s=60, wall=90)
            check(rc == 0 and out.strip() == "OK", f"raftkv-cli addnode 5 ({rc}, {out!r}, {err!r})")
            wait_members(c, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
            rc, out, err, _ = c.cli("members")
            check(rc == 0 and "1,2,3,4,5" in out.replace(" ", ""), f"raftkv-cli members: {out!r}")

            step("shrink 5 -> 3, the leader first")
            leader = leader_of(c, [1, 2, 3, 4, 5])
            term = c.info(leader)["term"]
            check_eq(c.call(leader, "RAFT.REMOVENODE", str(leader), timeout=30), "OK",
                     f"node {leader} removes itself")
            rest = [i for i in [1, 2, 3, 4, 5] if i != leader]
            new = leader_of(c, rest)
            check(new != leader, f"node {new} leads after node {leader} left")
            wait_members(c, rest, rest)
            removed = leader
            quiet_term = c.info(removed)["term"]
            other = next(i for i in rest if i != new)
            rc, out, err, _ = c.cli("removenode", str(other), timeout_s=30, wall=60)
            check(rc == 0 and out.strip() == "OK", f"raftkv-cli removenode {other} ({rc}, {err!r})")
            rest = [i for i in rest if i != other]
            wait_members(c, rest, rest)
            check_eq(c.info(removed)["term"], quiet_term, f"removed node {removed} stays quiet")
            check(c.info(new)["term"] >= term, "terms never go back")

            step("replace a dead node by a new one")
            dead = next(i for i in rest if i != leader_of(c, rest))
            c.kill(dead)
            leader = leader_of(c, [i for i in rest if i != dead])
            check_eq(c.call(leader, "RAFT.REMOVENODE", str(dead), timeout=30), "OK",
                     f"node {dead} (dead) removed")
            rest = [i for i in rest if i != dead]
            c.start_node(6, extra=c.join_args(6))
            nd6 = c.node(6)
            check_eq(c.call(leader, "RAFT.ADDNODE", "6", nd6.peer_url, nd6.client_addr,
                            timeout=60), "OK", "node 6 added in its place")
            rest.append(6)
            wait_members(c, rest, rest)
            before = len(acked)
            wait_until(lambda: len(acked) >= before + 200, 30, "writes go on")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        check_data(c, rest, acked)

        step("a node removed and added again at new addresses, with a fresh data dir")
        leader = leader_of(c, rest)
        # A node of the cluster file if there is one: after the restart below
        # it must take its new addresses from the configuration, not the file.
        again = min(i for i in rest if i != leader)
        check_eq(c.call(leader, "RAFT.REMOVENODE", str(again), timeout=30), "OK",
                 f"node {again} removed")
        c.stop(again)
        rest = [i for i in rest if i != again]
        nd = c.node(again)
        base = opt.port_base  # slot 0: ports base+1..9 and base+11..19; 9 and 19 are free
        nd.peer_port, nd.client_port = base + 9, base + 19
        nd.peer_url = f"tcp://127.0.0.1:{nd.peer_port}"
        nd.client_addr = f"127.0.0.1:{nd.client_port}"
        shutil.rmtree(nd.data_dir)
        c.start_node(again, extra=c.join_args(again))
        check_eq(c.call(leader, "RAFT.ADDNODE", str(again), nd.peer_url, nd.client_addr,
                        timeout=60), "OK", f"node {again} added again at {nd.peer_url}")
        rest.append(again)
        wait_members(c, rest, rest)
        check_eq(c.call(leader, "SET", "moved", "yes"), "OK", "a write after the move")
        check_data(c, rest, acked)

        step("bad requests get clear errors")
        leader = leader_of(c, rest)
        reply = c.call(leader, "RAFT.ADDNODE", "6", "tcp://127.0.0.1:1", "127.0.0.1:2")
        check(isinstance(reply, RespError) and "already a member" in reply, f"{reply!r}")
        reply = c.call(leader, "RAFT.ADDNODE", "7", "udp://x", "127.0.0.1:2")
        check(isinstance(reply, RespError) and "peer url" in reply, f"{reply!r}")
        reply = c.call(leader, "RAFT.REMOVENODE", "9")
        check(isinstance(reply, RespError) and "not a member" in reply, f"{reply!r}")

        step("every member restarts: the configuration comes from the log, not the file")
        for i in rest:
            c.stop(i)
        for i in rest:
            c.start_node(i, extra=c.join_args(i) if i > 3 else (), wait=False)
        for i in rest:
            c.wait_serving(i)
        leader = leader_of(c, rest)
        wait_members(c, rest, rest)
        check_data(c, rest, acked)
        for i in rest:
            c.check_alive([i])
        c.shutdown()


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

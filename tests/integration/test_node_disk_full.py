#!/usr/bin/env python3
"""A full disk does not stop a node (a real tmpfs of 16 MiB holds its data dir):

- the leader whose disk fills steps down instead of exiting; the others go on
  taking writes; the full node keeps answering what it can (PING, RAFT.INFO,
  a write is sent to the new leader with -MOVED);
- a one-node cluster whose disk is full answers writes -MISCONF and loses
  nothing it acknowledged;
- once space returns, the node writes again by itself (no restart) and
  catches up: the same DEBUG DIGEST at the same applied index everywhere,
  without an election (its timers stood still while its disk failed).

Mounting a tmpfs needs root; without it the test says it was skipped."""
import atexit
import os
import subprocess
import sys

from harness import (Cluster, LeaderClient, RespError, check, check_eq, make_leader, parse_args,
                     run, step, wait_until)

TMPFS_SIZE = "16m"
VALUE = "v" * 65536


def mount_tmpfs(path):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or f"mount exited {r.returncode}"
    atexit.register(lambda: subprocess.run(["umount", "-l", path], capture_output=True))
    return None


def fill(path):
    """Take every free byte of the file system holding path."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


def digests_agree(cluster, ids):
    got = {}
    for i in ids:
        with cluster.client(i) as r:
            info, digest = r.pipeline([("RAFT.INFO",), ("DEBUG", "DIGEST")])
        got[i] = (int(info.split(b"last_applied:")[1].split(b"\r\n")[0]), digest)
    return got if len(set(got.values())) == 1 else None


def test_cluster(opt):
    with Cluster(opt, 3, name="diskfull") as cluster:
        victim = 3
        disk = cluster.node(victim).data_dir
        why = mount_tmpfs(disk)
        if why is not None:
            print(f"skipped: cannot mount a tmpfs ({why})")
            return False
        step("the leader's disk fills up")
        cluster.start()
        make_leader(cluster, victim)
        writer = LeaderClient(cluster)
        check_eq(writer.call("SET", "before", "1"), "OK", "a write before the disk fills")
        filler = fill(disk)
        term = cluster.info(victim)["term"]
        acked = []
        for k in range(120):  # 7.5 MiB: past the log's zeros written ahead
            reply = writer.call("RAFT.REQ", "4242", str(k + 1), "SET", f"big:{k}", VALUE)
            if reply == "OK":
                acked.append(k)
        check(len(acked) == 120, f"every write was acknowledged ({len(acked)} of 120)")
        wait_until(lambda: "cannot write its log" in cluster.node(victim).output(), 10,
                   f"node {victim} to say it cannot write its log")
        check(cluster.node(victim).alive(), f"node {victim} is still running")
        info = cluster.info(victim)
        check(info["role"] != "leader", f"node {victim} stepped down ({info['role']}, "
              f"term {info['term']}, was {term})")
        with cluster.client(victim) as r:
            check_eq(r.call("PING"), "PONG", f"node {victim} still answers PING")
            reply = r.call("SET", "k", "v")
            check(isinstance(reply, RespError) and reply.startswith(("MOVED", "MISCONF")),
                  f"a write sent to node {victim} is refused ({reply!r})")
        leader = cluster.wait_leader(exclude=[victim])
        check_eq(cluster.call(leader, "GET", "big:0"), VALUE.encode(),
                 f"node {leader} leads and serves reads")

        step("space returns: the node writes again by itself")
        term_before = cluster.info(leader)["term"]
        os.unlink(filler)
        wait_until(lambda: "its log can be written again" in cluster.node(victim).output(), 15,
                   f"node {victim} to write its log again")
        check_eq(writer.call("SET", "after", "1"), "OK", "a write after space returned")
        commit = cluster.info(leader)["commit_index"]
        cluster.wait_applied(cluster.ids, commit, timeout=20)
        got = wait_until(lambda: digests_agree(cluster, cluster.ids), 10,
                         "the same digest at the same index on every node")
        check(True, f"every node at index {got[victim][0]} with digest {got[victim][1]}")
        check_eq((cluster.info(leader)["role"], cluster.info(leader)["term"]),
                 ("leader", term_before),
                 f"node {leader} still leads in the same term: the recovered node did not "
                 "time out at once and depose it")
        writer.close()
        cluster.shutdown()
    return True


def test_single(opt):
    with Cluster(opt, 1, slot=1, name="diskfull1") as cluster:
        disk = cluster.node(1).data_dir
        if mount_tmpfs(disk) is not None:
            return
        step("a one-node cluster with a full disk answers writes -MISCONF")
        cluster.start()
        cluster.wait_leader()
        with cluster.client(1) as r:
            check_eq(r.call("SET", "keep", "1"), "OK", "a write before the disk fills")
            filler = fill(disk)
            replies = [r.call("SET", f"big:{k}", VALUE) for k in range(80)]
        refused = [x for x in replies if isinstance(x, RespError)]
        check(refused and all(x.startswith(("MISCONF", "UNCERTAIN", "TRYAGAIN")) for x in refused),
              f"writes past the full disk are refused ({len(refused)} of 80; first: "
              f"{refused[0] if refused else None!r})")
        wait_until(lambda: cluster.call(1, "SET", "x", "1").startswith("MISCONF"), 10,
                   "a new write to be answered MISCONF")
        check(True, "a new write is answered -MISCONF ...")
        os.unlink(filler)
        wait_until(lambda: cluster.call(1, "SET", "x", "2") == "OK", 15,
                   "writes to be taken again once space returned")
        check_eq(cluster.call(1, "GET", "keep"), b"1", "nothing acknowledged was lost")
        cluster.shutdown()


def main(opt):
    if test_cluster(opt):
        test_single(opt)


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

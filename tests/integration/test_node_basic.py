#!/usr/bin/env python3
"""3 and 5 real nodes: one leader is elected; every command works through the
Redis protocol and through raftkv-cli; followers send clients to the leader.
Writes from several connections at once reach every node alike with one
AppendEntries in flight to a follower (the default) and with four. Every thread
of a node runs as SCHED_BATCH, or as SCHED_OTHER with --sched-batch off."""
import os
import sys
import threading
import time

from harness import (Cluster, RespError, check, check_eq, fail, parse_args, parse_info, run,
                     run_program, step, wait_same_state)

NOT_INTEGER = "ERR value is not an integer or out of range"


def check_one_leader(cluster, leader, samples=10):
    """Over a short while, every node agrees on the same single leader and term."""
    for _ in range(samples):
        infos = cluster.infos()
        leaders = [i for i, f in infos.items() if f["role"] == "leader"]
        if leaders != [leader]:
            fail(f"expected node {leader} as the only leader, roles are "
                 f"{ {i: f['role'] for i, f in infos.items()} }")
        terms = {f["term"] for f in infos.values()}
        if len(terms) != 1:
            fail(f"nodes disagree on the term: { {i: f['term'] for i, f in infos.items()} }")
        time.sleep(0.05)
    check(True, f"node {leader} is the only leader, every node agrees, one term")


def check_sched(cluster, batch):
    """Every thread of every node (the loop, nanomsg's worker, the storage
    thread) runs with the policy asked for, and RAFT.INFO says which."""
    want = os.SCHED_BATCH if batch else os.SCHED_OTHER
    for i in cluster.ids:
        pid = cluster.node(i).proc.pid
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        policies = {t: os.sched_getscheduler(t) for t in tids}
        check(len(tids) >= 3 and set(policies.values()) == {want},
              f"node {i}: its {len(tids)} threads run as "
              f"{'SCHED_BATCH' if batch else 'SCHED_OTHER'} ({policies})")
        check_eq(cluster.info(i)["sched"], "batch" if batch else "normal",
                 f"node {i}: RAFT.INFO sched")


def check_resp_commands(cluster, leader):
    lc = cluster.client(leader)
    addr = cluster.node(leader).client_addr
    followers = [i for i in cluster.ids if i != leader]

    step("PING, SET, GET through RESP")
    check_eq(lc.call("PING"), "PONG", "PING answers +PONG")
    check_eq(lc.call("PING", "hello"), b"hello", "PING msg answers the message")
    check_eq(lc.call("SET", "greeting", "hello"), "OK", "SET answers +OK")
    check_eq(lc.call("GET", "greeting"), b"hello", "GET answers the value")
    check_eq(lc.call("GET", "missing"), None, "GET of a missing key answers nil")
    check_eq(lc.call("SET", "bin", b"a\x00b\r\nc"), "OK", "SET a binary value")
    check_eq(lc.call("GET", "bin"), b"a\x00b\r\nc", "binary value comes back unchanged")
    check_eq(lc.call("set", "greeting", "hi"), "OK", "command names are case-insensitive")
    check_eq(lc.call("GET", "greeting"), b"hi", "SET overwrites")

    step("INCR")
    check_eq(lc.call("INCR", "counter"), 1, "INCR of a missing key starts from 0")
    check_eq(lc.call("INCR", "counter"), 2, "INCR adds one")
    check_eq(lc.call("SET", "word", "abc"), "OK", "SET a non-integer")
    check_eq(lc.call("INCR", "word"), RespError(NOT_INTEGER), "INCR of a non-integer fails")
    check_eq(lc.call("GET", "word"), b"abc", "a failed INCR changes nothing")
    check_eq(lc.call("SET", "big", "9223372036854775807"), "OK", "SET INT64_MAX")
    check_eq(lc.call("INCR", "big"), RespError(NOT_INTEGER), "INCR overflow fails")
    check_eq(lc.call("GET", "big"), b"9223372036854775807", "an overflowing INCR changes nothing")
    check_eq(lc.call("SET", "neg", "-5"), "OK", "SET a negative number")
    check_eq(lc.call("INCR", "neg"), -4, "INCR of a negative number")
    check_eq(lc.call("SET", "ttlcount", "5"), "OK", "SET a number")
    check_eq(lc.call("EXPIRE", "ttlcount", "100"), 1, "EXPIRE it")
    check_eq(lc.call("INCR", "ttlcount"), 6, "INCR a key with a TTL")
    ttl = lc.call("TTL", "ttlcount")
    check(isinstance(ttl, int) and 98 <= ttl <= 100, f"INCR keeps the TTL (TTL {ttl!r})")
    check_eq(lc.call("SET", "ttlcount", "7"), "OK", "SET it again")
    check_eq(lc.call("TTL", "ttlcount"), -1, "SET clears the TTL")

    step("DEL, EXISTS")
    lc.call("SET", "d1", "x")
    lc.call("SET", "d2", "y")
    check_eq(lc.call("EXISTS", "d1", "d2", "nope"), 2, "EXISTS counts the keys that exist")
    check_eq(lc.call("EXISTS", "d1", "d1"), 2, "EXISTS counts a repeated key twice (Redis)")
    check_eq(lc.call("DEL", "d1", "d2", "nope"), 2, "DEL answers how many keys it deleted")
    check_eq(lc.call("DEL", "d1"), 0, "DEL of a missing key answers 0")
    check_eq(lc.call("EXISTS", "d1", "d2"), 0, "deleted keys are gone")
    check_eq(lc.call("GET", "d2"), None, "GET of a deleted key answers nil")

    step("EXPIRE, TTL")
    lc.call("SET", "e", "v")
    check_eq(lc.call("TTL", "e"), -1, "TTL of a key without one answers -1")
    check_eq(lc.call("TTL", "nope"), -2, "TTL of a missing key answers -2")
    check_eq(lc.call("EXPIRE", "e", "100"), 1, "EXPIRE of an existing key answers 1")
    ttl = lc.call("TTL", "e")
    check(isinstance(ttl, int) and 99 <= ttl <= 100, f"TTL answers the seconds left ({ttl!r})")
    check_eq(lc.call("EXPIRE", "nope", "10"), 0, "EXPIRE of a missing key answers 0")
    check_eq(lc.call("EXPIRE", "e", "abc"), RespError(NOT_INTEGER), "EXPIRE with a bad time")
    check_eq(lc.call("EXPIRE", "e", "0"), 1, "EXPIRE 0 answers 1")
    check_eq(lc.call("GET", "e"), None, "EXPIRE 0 deletes the key")
    lc.call("SET", "e", "v")
    check_eq(lc.call("EXPIRE", "e", "-5"), 1, "EXPIRE with a negative time answers 1")
    check_eq(lc.call("EXISTS", "e"), 0, "a negative time deletes the key")

    step("RAFT.LEADER and RAFT.INFO")
    want = f"{leader} {addr}".encode()
    for i in cluster.ids:
        check_eq(cluster.call(i, "RAFT.LEADER"), want, f"node {i}: RAFT.LEADER names the leader")
    for i in cluster.ids:
        info = cluster.info(i)
        for field in ("id", "role", "term", "leader", "commit_index", "last_applied",
                      "last_log_index", "voted_for"):
            if field not in info:
                fail(f"node {i}: RAFT.INFO has no '{field}' field: {info}")
        check(info["id"] == i and info["role"] == ("leader" if i == leader else "follower")
              and info["leader"] == leader and info["last_applied"] <= info["commit_index"]
              <= info["last_log_index"],
              f"node {i}: RAFT.INFO id, role, leader, and applied <= commit <= last index")
    info = cluster.info(leader)
    check_eq(info["voted_for"], leader, "the leader voted for itself")

    step("errors in Redis's words")
    check_eq(lc.call("FOO", "a", "b"),
             RespError("ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
             "unknown command")
    check_eq(lc.call("foo"), RespError("ERR unknown command 'foo', with args beginning with: "),
             "unknown command without arguments")
    check_eq(lc.call("GET"), RespError("ERR wrong number of arguments for 'get' command"),
             "GET without a key")
    check_eq(lc.call("SET", "k"), RespError("ERR wrong number of arguments for 'set' command"),
             "SET without a value")
    check_eq(lc.call("INCR", "a", "b"),
             RespError("ERR wrong number of arguments for 'incr' command"), "INCR with two keys")
    check_eq(lc.call("DEL"), RespError("ERR wrong number of arguments for 'del' command"),
             "DEL without a key")
    check_eq(lc.call("EXPIRE", "k"),
             RespError("ERR wrong number of arguments for 'expire' command"), "EXPIRE, one arg")
    check_eq(lc.call("TTL"), RespError("ERR wrong number of arguments for 'ttl' command"),
             "TTL without a key")
    check_eq(lc.call("PING"), "PONG", "the connection still works after errors")

    step("followers answer MOVED with the leader's address")
    moved = RespError(f"MOVED 0 {addr}")
    for i in followers:
        with cluster.client(i) as fc:
            check_eq(fc.call("SET", "k", "v"), moved, f"node {i}: SET answers MOVED")
            check_eq(fc.call("GET", "greeting"), moved, f"node {i}: GET answers MOVED")
            check_eq(fc.call("INCR", "counter"), moved, f"node {i}: INCR answers MOVED")
            check_eq(fc.call("TTL", "greeting"), moved, f"node {i}: TTL answers MOVED")
            check_eq(fc.call("PING"), "PONG", f"node {i}: PING is answered locally")
    check_eq(lc.call("GET", "counter"), b"2", "writes sent to followers did not happen")

    step("size limits: 64 KiB keys, 1 MiB values")
    key_ok, key_big = b"k" * 65536, b"K" * 65537
    val_ok, val_big = b"v" * (1 << 20), b"w" * ((1 << 20) + 1)
    check_eq(lc.call("SET", key_ok, "x"), "OK", "a 65536-byte key is stored")
    check_eq(lc.call("GET", key_ok), b"x", "the 65536-byte key reads back")
    reply = lc.call("SET", key_big, "x")
    check(isinstance(reply, RespError), f"SET of a 65537-byte key is refused ({reply!r:.80})")
    reply = lc.call("INCR", key_big)
    check(isinstance(reply, RespError), f"INCR of a 65537-byte key is refused ({reply!r:.80})")
    check_eq(lc.call("EXISTS", key_big), 0, "nothing stored under the 65537-byte key")
    check_eq(lc.call("SET", "bigval", val_ok), "OK", "a 1 MiB value is stored")
    check(lc.call("GET", "bigval") == val_ok, "the 1 MiB value reads back unchanged")
    reply = lc.call("SET", "toobig", val_big)
    check(isinstance(reply, RespError), f"SET of a 1 MiB + 1 value is refused ({reply!r:.80})")
    check_eq(lc.call("GET", "toobig"), None, "nothing stored for the refused value")
    reply = lc.call("SET", "bigval", val_big)
    check(isinstance(reply, RespError), "overwriting with a too large value is refused")
    check(lc.call("GET", "bigval") == val_ok, "the old value is kept")
    check_eq(lc.call("DEL", key_ok, "bigval"), 2, "DEL of the large key and value")

    step("pipelining and many clients")
    replies = lc.pipeline([("INCR", "pipe")] * 200 + [("GET", "pipe")])
    check_eq(replies, list(range(1, 201)) + [b"200"], "200 pipelined INCRs answered in order")
    clients = [cluster.client(leader) for _ in range(8)]
    for c in clients:
        c.send_raw(b"".join(b"*2\r\n$4\r\nINCR\r\n$4\r\nmany\r\n" for _ in range(25)))
    seen = sorted(c.read_reply() for c in clients for _ in range(25))
    check_eq(seen, list(range(1, 201)), "8 clients x 25 INCRs: every number handed out once")
    for c in clients:
        c.close()
    check_eq(lc.call("INCR", "many"), 201, "the counter saw every INCR")
    check_eq(lc.call("GET", "counter"), b"2", "other keys untouched")
    lc.close()

    # Every node applied the same writes.
    commit = cluster.info(leader)["commit_index"]
    cluster.wait_applied(cluster.ids, commit)
    check(True, f"every node applied the log up to {commit}")


def check_cli(cluster, leader):
    addr = cluster.node(leader).client_addr
    followers = [i for i in cluster.ids if i != leader]

    def cli_ok(args, want_out, what):
        rc, out, err, _ = cluster.cli(*args)
        if rc != 0 or out != want_out:
            fail(f"raftkv-cli {' '.join(args)}: expected exit 0 and {want_out!r}, "
                 f"got exit {rc}, stdout {out!r}, stderr {err!r}")
        check(True, what)

    def cli_err(args, rc_want, err_part, what):
        rc, out, err, _ = cluster.cli(*args)
        if rc != rc_want or err_part not in err:
            fail(f"raftkv-cli {' '.join(args)}: expected exit {rc_want} and {err_part!r} on "
                 f"stderr, got exit {rc}, stdout {out!r}, stderr {err!r}")
        check(True, what)

    step("raftkv-cli one-shot commands")
    cli_ok(["getleader"], f"{leader} {addr}\n", "getleader prints '<id> <host:port>'")
    cli_ok(["setval", "cli_key", "cli value"], "OK\n", "setval prints OK")
    cli_ok(["getval", "cli_key"], "cli value\n", "getval prints the value")
    cli_ok(["getval", "cli_missing"], "None\n", "getval of a missing key prints None")
    cli_ok(["incr", "cli_n"], "1\n", "incr of a missing key prints 1")
    cli_ok(["incr", "cli_n"], "2\n", "incr prints the new value")
    cli_err(["incr", "cli_key"], 1, "value is not an integer or out of range",
            "incr of a non-integer: error, exit 1")
    cli_ok(["expire", "cli_key", "100"], "1\n", "expire prints 1")
    rc, out, err, _ = cluster.cli("ttl", "cli_key")
    check(rc == 0 and out.strip() in ("99", "100"), f"ttl prints the seconds left ({out!r})")
    cli_ok(["ttl", "cli_missing"], "-2\n", "ttl of a missing key prints -2")
    cli_ok(["ttl", "cli_n"], "-1\n", "ttl without a TTL prints -1")
    cli_ok(["expire", "cli_missing", "5"], "0\n", "expire of a missing key prints 0")
    cli_ok(["del", "cli_key"], "1\n", "del prints 1")
    cli_ok(["del", "cli_key"], "0\n", "del again prints 0")
    cli_ok(["getval", "cli_key"], "None\n", "a deleted key reads as None")
    check_eq(cluster.call(leader, "GET", "cli_n"), b"2", "the CLI's writes are seen over RESP")

    step("raftkv-cli errors")
    cli_err(["suspend", "abc"], 2, "usage: suspend <seconds>", "suspend abc: usage, exit 2")
    cli_err(["suspend"], 2, "usage: suspend <seconds>", "suspend without seconds: usage, exit 2")
    cli_err(["setval", "k"], 2, "usage: setval <key> <value>", "setval with one argument")
    cli_err(["frobnicate"], 2, "error: unknown command 'frobnicate'", "unknown command, exit 2")
    check(cluster.info(leader)["role"] == "leader", "bad arguments suspended nothing")

    step("raftkv-cli follows MOVED from a follower")
    follower = cluster.node(followers[0])
    rc, out, err, _ = run_cli_connect(cluster, follower.client_addr, "setval", "via_follower", "1")
    check(rc == 0 and out == "OK\n", f"setval through a follower (exit {rc}, {out!r}, {err!r})")
    rc, out, err, _ = run_cli_connect(cluster, follower.client_addr, "getval", "via_follower")
    check(rc == 0 and out == "1\n", f"getval through a follower (exit {rc}, {out!r}, {err!r})")

    step("raftkv-cli reading commands from a pipe")
    rc, out, err, _ = cluster.cli(stdin="setval p 5\nincr p\ngetval p\nquit\nincr p\n")
    check(rc == 0 and out == "OK\n6\n6\n", f"piped commands run in order until quit "
          f"(exit {rc}, {out!r}, {err!r})")


def run_cli_connect(cluster, address, *args):
    return run_program([cluster.opt.cli_bin, "--connect", address, "--timeout", "5"] +
                       list(args))


def check_dead_cluster(cluster):
    step("raftkv-cli against a cluster that is down")
    tried = ", ".join(nd.client_addr for nd in cluster.nodes.values())
    rc, out, err, took = cluster.cli("getval", "k", timeout_s=1)
    check(rc == 1 and err == f"error: no node reachable (tried {tried})\n",
          f"'error: no node reachable (tried ...)', exit 1 (got {rc}, {err!r})")
    check(took < 3.0, f"reported within the 1 s timeout (took {took:.2f} s)")


def test_three(opt):
    step("3 nodes: start and elect")
    with Cluster(opt, 3, slot=0, name="basic3") as cluster:
        cluster.start()
        leader = cluster.wait_leader(timeout=10)
        check_one_leader(cluster, leader)
        check_sched(cluster, batch=True)
        check_resp_commands(cluster, leader)
        check_cli(cluster, leader)
        check_one_leader(cluster, leader, samples=3)
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly on SIGTERM")
        check_dead_cluster(cluster)


def test_five(opt):
    step("5 nodes: start and elect")
    with Cluster(opt, 5, slot=1, name="basic5") as cluster:
        cluster.start()
        leader = cluster.wait_leader(timeout=10)
        check_one_leader(cluster, leader)
        addr = cluster.node(leader).client_addr
        check_eq(cluster.call(leader, "SET", "five", "nodes"), "OK", "SET at the leader")
        check_eq(cluster.call(leader, "INCR", "n5"), 1, "INCR at the leader")
        check_eq(cluster.call(leader, "GET", "five"), b"nodes", "GET at the leader")
        for i in cluster.ids:
            if i != leader:
                check_eq(cluster.call(i, "GET", "five"), RespError(f"MOVED 0 {addr}"),
                         f"node {i} answers MOVED")
        rc, out, err, _ = cluster.cli("getleader")
        check_eq((rc, out), (0, f"{leader} {addr}\n"), "raftkv-cli getleader")
        rc, out, err, _ = cluster.cli("setval", "five", "cli")
        check_eq((rc, out), (0, "OK\n"), "raftkv-cli setval")
        rc, out, err, _ = cluster.cli("getval", "five")
        check_eq((rc, out), (0, "cli\n"), "raftkv-cli getval")
        commit = cluster.info(leader)["commit_index"]
        cluster.wait_applied(cluster.ids, commit)
        check(True, f"all 5 nodes applied up to {commit}")
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly on SIGTERM")
        check_dead_cluster(cluster)


def test_ipc(opt):
    step("3 nodes with ipc:// peer URLs: elect, write, fail over")
    with Cluster(opt, 3, slot=2, name="basic-ipc", ipc=True) as cluster:
        check(all(n.peer_url.startswith("ipc://") for n in cluster.nodes.values()),
              "the cluster file names ipc:// peers")
        cluster.start()
        leader = cluster.wait_leader(timeout=10)
        check_eq(cluster.call(leader, "SET", "over", "ipc"), "OK", "SET at the leader")
        check_eq(cluster.call(leader, "INCR", "hits"), 1, "INCR at the leader")
        cluster.kill(leader)
        new_leader = cluster.wait_leader(timeout=10, exclude=(leader,))
        check(new_leader != leader, f"node {new_leader} leads after node {leader} was killed")
        check_eq(cluster.call(new_leader, "GET", "over"), b"ipc", "the write survived")
        check_eq(cluster.call(new_leader, "INCR", "hits"), 2, "INCR at the new leader")
        cluster.check_alive([i for i in cluster.ids if i != leader])
        cluster.shutdown()


def check_write_path(cluster, leader, writes):
    """RAFT.LATENCY after writes: every stage a node's writes go through,
    with each entry's times from appended in the order a write takes them
    (so also their percentiles): sent <= replicated <= committed <= replied
    on the leader; committed <= replied on a follower."""
    for i in cluster.ids:
        lat = parse_info(cluster.call(i, "RAFT.LATENCY"))
        role = "leader" if i == leader else "follower"
        check_eq(lat["role"], role, f"node {i}: RAFT.LATENCY role")
        check(lat["writes"] >= writes, f"node {i}: RAFT.LATENCY covers {lat['writes']} writes "
              f"(at least {writes})")
        stages = (["sent", "replicated"] if i == leader else []) + ["synced", "committed", "replied"]
        for s in stages:
            p50, p99, top = (lat[f"{s}_{q}_us"] for q in ("p50", "p99", "max"))
            check(0 <= p50 <= p99 <= top < 60_000_000,
                  f"node {i}: {s} p50 {p50} <= p99 {p99} <= max {top} us")
        if i != leader:
            check("sent_p50_us" not in lat and "replicated_p50_us" not in lat,
                  f"node {i}: a follower shows no sent or replicated stage")
        order = (["sent", "replicated"] if i == leader else []) + ["committed", "replied"]
        for q in ("p50", "p99", "max"):
            times = [lat[f"{s}_{q}_us"] for s in order]
            check(times == sorted(times), f"node {i}: {q} of {' <= '.join(order)}: {times}")


def test_inflight_window(opt, window, slot, sched_batch=True):
    step(f"--max-inflight-appends {window}{'' if sched_batch else ', --sched-batch off'}: "
         "4 connections write at once; every node applies the same")
    args = ["--max-inflight-appends", str(window)]
    if not sched_batch:
        args += ["--sched-batch", "off"]
    with Cluster(opt, 3, slot=slot, name=f"basic-window{window}", node_args=args) as cluster:
        cluster.start()
        leader = cluster.wait_leader(timeout=10)
        check_sched(cluster, sched_batch)
        errors = []

        def writer(w):
            try:
                with cluster.client(leader, timeout=30) as r:
                    for batch in range(10):
                        cmds = [("SET", f"w{w}:{i}", str(i))
                                for i in range(batch * 100, batch * 100 + 100)]
                        if r.pipeline(cmds) != ["OK"] * len(cmds):
                            errors.append(f"writer {w}: a SET of batch {batch} failed")
                    r.call("INCR", "done")
            except Exception as e:  # reported below, in the test's thread
                errors.append(f"writer {w}: {e}")

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check(not errors and not any(t.is_alive() for t in threads),
              f"4,000 SETs from 4 connections answered OK ({errors[:2]})")
        check_eq(cluster.call(leader, "GET", "done"), b"4", "and 4 INCRs")
        applied = wait_same_state(cluster, cluster.ids)
        check(applied >= 4004, f"every node applied the same {applied} entries")
        check_write_path(cluster, leader, 4004)
        rc, out, err, _ = run_cli_connect(cluster, cluster.node(leader).client_addr, "latency")
        rows = [line.split() for line in out.splitlines()[2:]]
        check(rc == 0 and out.startswith("leader, 4004 writes;") and
              [r[0] for r in rows] == ["sent", "replicated", "synced", "committed", "replied"] and
              all(float(r[1]) <= float(r[2]) <= float(r[3]) for r in rows),
              f"raftkv-cli latency prints the leader's stages in ms (exit {rc}, {out!r}, {err!r})")
        rc, out, err, _ = run_cli_connect(cluster, cluster.node(leader).client_addr, "latency", "x")
        check(rc == 2 and "usage: latency [reset]" in err,
              f"raftkv-cli latency x: usage, exit 2 (exit {rc}, {err!r})")
        check_eq(cluster.call(leader, "RAFT.LATENCY", "RESET"), "OK", "RAFT.LATENCY RESET")
        check_eq(parse_info(cluster.call(leader, "RAFT.LATENCY"))["writes"], 0,
                 "after it, no writes in the window")
        check_eq(cluster.call(leader, "SET", "after-reset", "1"), "OK", "one more SET")
        lat = parse_info(cluster.call(leader, "RAFT.LATENCY"))
        check(lat["writes"] == 1 and lat["replied_p50_us"] == lat["replied_max_us"],
              f"the window holds that one write ({lat['writes']}, replied after "
              f"{lat['replied_p50_us']} us)")
        cluster.check_alive()


def main(opt):
    test_three(opt)
    test_five(opt)
    test_ipc(opt)
    test_inflight_window(opt, 1, 3)
    test_inflight_window(opt, 4, 4, sched_batch=False)


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

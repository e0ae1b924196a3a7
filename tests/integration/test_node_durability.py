#!/usr/bin/env python3
"""Durability: kill -9 of every node while clients write, then restart: every
acknowledged write is there. Also: a data dir in use is refused, a damaged log
stops the node with the file and offset, a torn tail is dropped, and bad flags
or a bad cluster file get clear errors."""
import os
import re
import shutil
import sys
import threading

from harness import (Cluster, LeaderClient, RespError, TestFailure, check, check_eq, fail,
                     parse_args, run, run_program, step, wait_until)


class Stopped(Exception):
    """The test asked the writer to stop."""


class Writer(threading.Thread):
    """Base: runs self.write_one() until stopped; any failure is kept in self.error."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop_requested = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop_requested.is_set():
                self.write_one()
        except Stopped:
            pass
        except BaseException as e:
            self.error = e

    def retry(self, reason):
        if self.stop_requested.is_set():
            raise Stopped()

    def finish(self):
        self.stop_requested.set()
        self.join(timeout=30)
        if self.is_alive():
            fail(f"{type(self).__name__} did not stop")
        if self.error is not None:
            fail(f"{type(self).__name__} failed: {self.error}")


class IncrWriter(Writer):
    """Plain INCR du:counter: every send counts as an attempt, every :n reply
    as acknowledged. After a crash the counter must lie between the two."""

    def __init__(self, cluster):
        super().__init__(cluster)
        self.client = LeaderClient(cluster)
        self.attempted = 0
        self.acked = 0

    def retry(self, reason):
        super().retry(reason)
        self.attempted += 1

    def write_one(self):
        self.attempted += 1
        reply = self.client.call("INCR", "du:counter", timeout=20, on_retry=self.retry)
        if not isinstance(reply, int):
            raise TestFailure(f"INCR du:counter answered {reply!r}")
        self.acked += 1


class SetWriter(Writer):
    """SET du:s:<round>:<i> one at a time."""

    def __init__(self, cluster, round_no):
        super().__init__(cluster)
        self.client = LeaderClient(cluster)
        self.round_no = round_no
        self.i = 0
        self.acked = {}

    def write_one(self):
        key, value = f"du:s:{self.round_no}:{self.i}", f"value {self.round_no} {self.i}"
        reply = self.client.call("SET", key, value, timeout=20, on_retry=self.retry)
        if reply != "OK":
            raise TestFailure(f"SET {key} answered {reply!r}")
        self.acked[key] = value
        self.i += 1


class PipeWriter(Writer):
    """Batches of 25 pipelined SETs on one connection to the leader: many
    writes share each fsync. A write answered with MOVED or TRYAGAIN (a
    leader change) is not acknowledged; the next batch goes to the leader."""

    def __init__(self, cluster, round_no):
        super().__init__(cluster)
        self.client = LeaderClient(cluster)
        self.round_no = round_no
        self.batch = 0
        self.acked = {}

    def write_one(self):
        # A read only the leader answers: afterwards client.conn is the leader's.
        self.client.call("EXISTS", "du:none", timeout=20, on_retry=self.retry)
        items = [(f"du:p:{self.round_no}:{self.batch}:{j}", f"p{self.batch}.{j}")
                 for j in range(25)]
        try:
            replies = self.client.conn.pipeline([("SET", k, v) for k, v in items])
        except OSError:
            self.client.close()
            return
        for (key, value), reply in zip(items, replies):
            if reply == "OK":
                self.acked[key] = value
            elif isinstance(reply, RespError) and reply.startswith(("MOVED", "TRYAGAIN")):
                self.client.close()
            else:
                raise TestFailure(f"pipelined SET {key} answered {reply!r}")
        self.batch += 1


def read_keys(cluster, leader, expected):
    keys = sorted(expected)
    with cluster.client(leader, timeout=20) as r:
        values = r.pipeline([("GET", k) for k in keys])
    return [k for k, v in zip(keys, values) if v != expected[k].encode()]


def crash_round(cluster, round_no, incr, acked_sets, kill_order):
    leader = cluster.wait_leader()
    counter_before = int(cluster.call(leader, "GET", "du:counter") or 0)
    writers = [incr, SetWriter(cluster, round_no), PipeWriter(cluster, round_no)]
    for w in writers:
        w.start()
    wait_until(lambda: any(w.error for w in writers) or
               (incr.acked >= 100 and len(writers[1].acked) >= 100 and
                len(writers[2].acked) >= 300), 30, "100 INCRs, 100 SETs, 300 pipelined SETs")
    order = {"leader first": [leader] + [i for i in cluster.ids if i != leader],
             "followers first": [i for i in cluster.ids if i != leader] + [leader]}[kill_order]
    for i in order:
        cluster.node(i).proc.kill()  # all at once, then reap
    for i in order:
        cluster.kill(i)
    for w in writers:
        w.finish()
    check(True, f"round {round_no}: killed nodes {order} ({kill_order}) with kill -9 while "
          f"writing: {incr.acked} INCRs, {len(writers[1].acked)} SETs, "
          f"{len(writers[2].acked)} pipelined SETs acknowledged")
    acked_sets.update(writers[1].acked)
    acked_sets.update(writers[2].acked)

    cluster.start()
    leader = cluster.wait_leader()
    counter = int(cluster.call(leader, "GET", "du:counter", timeout=10))
    low, high = counter_before + incr.acked, counter_before + incr.attempted
    check(low <= counter <= high, f"after restart the counter is {counter}: at least the "
          f"{low} acknowledged, at most the {high} attempted")
    lost = read_keys(cluster, leader, acked_sets)
    check(not lost, f"all {len(acked_sets)} acknowledged SETs so far are there (lost: {lost[:5]})")
    return counter


def test_crash_all(cluster):
    step("kill -9 of every node during writes, twice")
    cluster.start()
    acked_sets = {}
    for round_no, kill_order in ((1, "leader first"), (2, "followers first")):
        incr = IncrWriter(cluster)
        crash_round(cluster, round_no, incr, acked_sets, kill_order)
    return acked_sets


def test_data_dir_in_use(cluster, opt):
    step("a second process on a data dir in use is refused")
    nd = cluster.node(1)
    rc, out, err, _ = run_program(cluster.node_command(1), wall=10)
    check(rc == 1 and f"data dir {nd.data_dir} is in use by another process" in err,
          f"exit 1 and 'data dir ... is in use by another process' (got {rc}, {err!r})")
    rc, out, err, _ = run_program(cluster.node_command(2)[:-2] + ["--data", nd.data_dir],
                                  wall=10)
    check(rc == 1 and "in use by another process" in err,
          f"also when another id points at it (got {rc}, {err!r})")
    cluster.check_alive()
    check_eq(cluster.call(1, "PING"), "PONG", "the running node is undisturbed")


def count_entries_started(nd):
    """The entry count from the node's last 'started, term T, N log entries' line."""
    found = re.findall(r"started, term \d+, (\d+) log entries", nd.output())
    if not found:
        fail(f"node {nd.id} printed no 'started' line")
    return int(found[-1])


def test_damaged_log(cluster, acked_sets):
    step("a damaged log stops the node; a torn tail does not")
    victim = 3
    nd = cluster.node(victim)
    leader = cluster.wait_leader()
    cluster.wait_applied(cluster.ids, cluster.info(leader)["commit_index"])
    entries = cluster.info(victim)["last_log_index"]
    cluster.stop(victim)
    log = os.path.join(nd.data_dir, "log")
    pristine = log + ".pristine"
    shutil.copyfile(log, pristine)
    size = os.path.getsize(log)
    check(entries >= 300, f"node {victim} stopped with {entries} log entries ({size} bytes)")

    # Flip one byte in the middle of the file.
    pos = size // 2
    with open(log, "r+b") as f:
        f.seek(pos)
        byte = f.read(1)
        f.seek(pos)
        f.write(bytes([byte[0] ^ 0x5A]))
    rc, out, err, _ = run_program(cluster.node_command(victim), wall=15)
    m = re.search(r"damaged at offset (\d+)", err)
    check(rc == 1 and f"{nd.data_dir}/log" in err and m is not None,
          f"refuses to start: exit 1 and a message naming {nd.data_dir}/log and an offset "
          f"(got {rc}, {err.strip()!r})")
    offset = int(m.group(1))
    check(offset <= pos < offset + 4096, f"the offset {offset} is that of the record holding "
          f"byte {pos}")

    # Cut the last few bytes: below what was synced, so damage, not a torn
    # tail (acknowledged entries must not vanish without a word).
    shutil.copyfile(pristine, log)
    with open(log, "r+b") as f:
        f.truncate(size - 3)
    rc, out, err, _ = run_program(cluster.node_command(victim), wall=15)
    check(rc == 1 and f"{nd.data_dir}/log: cut short at {size - 3}, below the synced end {size}"
          in err, f"a log cut below its synced end is refused (got {rc}, {err.strip()!r})")

    # Half a record after the synced end: a torn tail, dropped at start.
    shutil.copyfile(pristine, log)
    with open(log, "r+b") as f:
        f.seek(size // 2)
        partial = f.read(40)
        f.seek(size)
        f.write(partial)
    cluster.start_node(victim)
    check_eq(count_entries_started(nd), entries,
             "with a torn tail past the synced end the node starts with every entry")
    commit = cluster.info(leader)["commit_index"]
    cluster.wait_applied(cluster.ids, commit)
    check(True, f"node {victim} caught up to the commit index {commit}")
    wait_until(lambda: len({f["keys"] for f in cluster.infos(cluster.ids).values()}) == 1, 10,
               "every node to hold the same number of keys")
    check(True, "every node holds the same number of keys")
    os.unlink(pristine)


def test_bad_flags(cluster, opt):
    step("bad flags: usage, exit 2")
    conf, data = cluster.config, os.path.join(cluster.tmp, "unused")
    cases = [
        [],
        ["--bogus"],
        ["--config", conf, "--id", "1"],
        ["--config", conf, "--id", "abc", "--data", data],
        ["--config", conf, "--id", "0", "--data", data],
        ["--config", conf, "--id", "1", "--data", data, "--election-timeout", "300-100"],
        ["--config", conf, "--id", "1", "--data", data, "--election-timeout", "fast"],
        ["--config", conf, "--id", "1", "--data", data, "--heartbeat", "500"],
        ["--config", conf, "--id", "1", "--data", data, "--speed", "-1"],
        ["--config", conf, "--id", "1", "--data", data, "extra"],
        ["--config"],
        ["--config", conf, "--id", "1", "--data", data, "--max-inflight-appends", "0"],
        ["--config", conf, "--id", "1", "--data", data, "--max-inflight-appends", "9"],
        ["--config", conf, "--id", "1", "--data", data, "--sched-batch", "maybe"],
    ]
    for args in cases:
        rc, out, err, _ = run_program([opt.node_bin] + args, wall=10)
        if rc != 2 or "usage: raftkv-node" not in err:
            fail(f"raftkv-node {' '.join(args)}: expected usage on stderr and exit 2, got exit "
                 f"{rc}, stderr {err!r}")
    check(True, f"{len(cases)} kinds of bad flags: usage and exit 2")
    rc, out, err, _ = run_program([opt.node_bin, "--help"], wall=10)
    check(rc == 0 and out.startswith("usage: raftkv-node"), "--help: usage on stdout, exit 0")

    step("a malformed cluster file is named with its line")
    bad = os.path.join(cluster.tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write("# a comment\n1 tcp://127.0.0.1:1 127.0.0.1:2\n2 tcp://127.0.0.1:3\n")
    rc, out, err, _ = run_program([opt.node_bin, "--config", bad, "--id", "1", "--data", data],
                                  wall=10)
    check(rc == 1 and f"{bad}:3" in err, f"error names {bad}:3, exit 1 (got {rc}, {err!r})")
    rc, out, err, _ = run_program([opt.node_bin, "--config", bad + ".missing", "--id", "1",
                                   "--data", data], wall=10)
    check(rc == 1 and "bad.conf.missing" in err, f"a missing file is named (got {rc}, {err!r})")
    rc, out, err, _ = run_program([opt.node_bin, "--config", conf, "--id", "7", "--data", data],
                                  wall=10)
    check(rc == 1 and "7" in err, f"an id not in the file is an error, exit 1 (got {rc}, {err!r})")


def main(opt):
    with Cluster(opt, 3, name="durability") as cluster:
        acked_sets = test_crash_all(cluster)
        test_data_dir_in_use(cluster, opt)
        test_damaged_log(cluster, acked_sets)
        leader = cluster.wait_leader()
        lost = read_keys(cluster, leader, acked_sets)
        check(not lost, f"all {len(acked_sets)} acknowledged SETs still there (lost: {lost[:5]})")
        test_bad_flags(cluster, opt)
        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly")


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

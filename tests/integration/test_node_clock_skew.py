#!/usr/bin/env python3
"""Expiry across clocks that disagree (--clock-offset-ms shifts a node's wall
clock). Node 1's clock runs 20 s ahead, node 3's 20 s behind, node 2's is
right.

- The log's clock never goes back: a leader whose clock is behind stamps
  commands at the time the log has already reached, so an EXPIRE it takes
  gives the key the TTL asked for, as seen by every later leader.
- A read that saw a key expired never sees it again: a leader whose clock is
  ahead finds the key expired, has its delete committed, then answers nil; a
  leader whose clock is behind then answers nil too, and INCR starts again
  from 0. The background sweeper is turned off (DEBUG SET-ACTIVE-EXPIRE 0) so
  that only the read can delete the key."""
import sys

from harness import Cluster, check, check_eq, make_leader, parse_args, run, step

OFFSETS = {1: 20000, 2: 0, 3: -20000}


def start_skewed(cluster):
    for i, offset in OFFSETS.items():
        cluster.start_node(i, extra=["--clock-offset-ms", str(offset)], wait=False)
    for i in cluster.ids:
        cluster.wait_serving(i)
    cluster.wait_leader()
    for i in cluster.ids:
        check_eq(cluster.call(i, "DEBUG", "SET-ACTIVE-EXPIRE", "0"), "OK",
                 f"node {i}: background expiry off")


def test_time_never_goes_back(cluster):
    step("a leader whose clock is 20 s behind stamps at the log's time")
    make_leader(cluster, 2)
    check_eq(cluster.call(2, "SET", "floor:warm", "x"), "OK", "node 2 (clock right) takes a SET")
    make_leader(cluster, 3)
    check_eq(cluster.call(3, "SET", "floor", "v"), "OK", "node 3 (clock 20 s behind) takes SET")
    check_eq(cluster.call(3, "EXPIRE", "floor", 10), 1, "and EXPIRE floor 10")
    make_leader(cluster, 2)
    ttl = cluster.call(2, "TTL", "floor")
    check(5 <= ttl <= 10, f"node 2 (clock right) sees the TTL asked for ({ttl} s), "
          "not a deadline 20 s in the past")


def test_expired_stays_expired(cluster):
    step("a key a leader found expired is never seen again")
    make_leader(cluster, 2)
    with cluster.client(2) as r:
        check_eq(r.pipeline([("SET", "skew", "10"), ("EXPIRE", "skew", 12)]), ["OK", 1],
                 "node 2 (clock right): SET skew 10, EXPIRE skew 12")
    make_leader(cluster, 1)
    check_eq(cluster.call(1, "GET", "skew"), None,
             "node 1 (clock 20 s ahead) finds it expired and answers nil")
    make_leader(cluster, 3)
    check_eq(cluster.call(3, "GET", "skew"), None,
             "node 3 (clock 20 s behind) answers nil too: the delete was committed")
    check_eq(cluster.call(3, "INCR", "skew"), 1, "INCR starts from 0, not from the old 10")
    check_eq(cluster.call(3, "TTL", "skew"), -1, "and the new key has no TTL")


def main(opt):
    with Cluster(opt, 3, name="skew") as cluster:
        step("start 3 nodes with clocks 20 s ahead, right, 20 s behind")
        start_skewed(cluster)
        test_time_never_goes_back(cluster)
        test_expired_stays_expired(cluster)
        cluster.check_alive()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

#!/usr/bin/env python3
"""redis-cli (one-shot, commands from a pipe, -c following MOVED) and
redis-benchmark -t set,get,incr against a 3-node cluster: they run without
errors, and the benchmark's counter equals the number of INCRs it sent."""
import re
import shutil
import sys

from harness import Cluster, check, check_eq, fail, parse_args, run, run_program, step

REQUESTS = 10000


def need(program):
    path = shutil.which(program)
    if path is None:
        fail(f"{program} is not installed: apt-get install redis-tools")
    return path


def redis_cli(port, *args, stdin=None):
    return run_program([need("redis-cli"), "-h", "127.0.0.1", "-p", str(port)] +
                       [str(a) for a in args], stdin=stdin, wall=30)


def cli_expect(port, args, want, what, rc_want=0):
    rc, out, err, _ = redis_cli(port, *args)
    if rc != rc_want or out != want:
        fail(f"redis-cli -p {port} {' '.join(map(str, args))}: expected exit {rc_want} and "
             f"{want!r}, got exit {rc}, stdout {out!r}, stderr {err!r}")
    check(True, what)


def main(opt):
    need("redis-cli")
    need("redis-benchmark")
    # redis-benchmark gives up at the first error, so a leader change under
    # its load (a starved follower timing out on a busy 2-core machine) would
    # fail the test: longer election timeouts keep one leader throughout.
    with Cluster(opt, 3, name="redis-tools",
                 node_args=["--election-timeout", "1000-2000"]) as cluster:
        step("start 3 nodes")
        cluster.start()
        leader = cluster.wait_leader()
        lport = cluster.node(leader).client_port
        follower = next(i for i in cluster.ids if i != leader)
        fport = cluster.node(follower).client_port

        step("redis-cli one-shot against the leader")
        cli_expect(lport, ["PING"], "PONG\n", "PING")
        cli_expect(lport, ["SET", "tool:k", "hello world"], "OK\n", "SET")
        cli_expect(lport, ["GET", "tool:k"], "hello world\n", "GET")
        cli_expect(lport, ["GET", "tool:missing"], "\n", "GET of a missing key (nil)")
        cli_expect(lport, ["INCR", "tool:n"], "1\n", "INCR")
        cli_expect(lport, ["EXPIRE", "tool:k", "100"], "1\n", "EXPIRE")
        rc, out, err, _ = redis_cli(lport, "TTL", "tool:k")
        check(rc == 0 and out.strip() in ("99", "100"), f"TTL ({out!r})")
        cli_expect(lport, ["EXISTS", "tool:k", "tool:n", "tool:x"], "2\n", "EXISTS")
        cli_expect(lport, ["DEL", "tool:n"], "1\n", "DEL")
        rc, out, err, _ = redis_cli(lport, "RAFT.LEADER")
        check_eq(out, f"{leader} {cluster.node(leader).client_addr}\n", "RAFT.LEADER")
        rc, out, err, _ = redis_cli(lport, "RAFT.INFO")
        check(rc == 0 and "role:leader" in out and f"id:{leader}" in out, "RAFT.INFO")
        rc, out, err, _ = redis_cli(lport, "INFO")
        check(rc == 0 and "redis_version:" in out, "INFO")
        rc, out, err, _ = redis_cli(lport, "INCR", "tool:k")
        check("value is not an integer or out of range" in out + err,
              f"an error reply is shown ({out!r}, {err!r})")
        rc, out, err, _ = redis_cli(lport, "NOSUCH", "x")
        check("unknown command 'NOSUCH'" in out + err, f"an unknown command ({out!r}, {err!r})")

        step("redis-cli with commands from a pipe")
        rc, out, err, _ = redis_cli(lport, stdin="SET tool:p 5\nINCR tool:p\nINCR tool:p\n"
                                    "GET tool:p\nPING\n")
        check(rc == 0 and out == "OK\n6\n7\n7\nPONG\n", f"piped session (exit {rc}, {out!r}, "
              f"{err!r})")

        step("redis-cli against a follower")
        rc, out, err, _ = redis_cli(fport, "GET", "tool:k")
        check(f"MOVED 0 {cluster.node(leader).client_addr}" in out + err,
              f"without -c: the MOVED error is shown ({out!r}, {err!r})")
        rc, out, err, _ = redis_cli(fport, "-c", "SET", "tool:c", "via follower")
        check(rc == 0 and out == "OK\n", f"-c: SET follows MOVED (exit {rc}, {out!r}, {err!r})")
        rc, out, err, _ = redis_cli(fport, "-c", "GET", "tool:c")
        check(rc == 0 and out == "via follower\n", f"-c: GET follows MOVED ({out!r}, {err!r})")
        rc, out, err, _ = redis_cli(fport, "-c", stdin="INCR tool:cc\nINCR tool:cc\nGET tool:cc\n")
        redirect = f"-> Redirected to slot [0] located at {cluster.node(leader).client_addr}\n"
        check(rc == 0 and out == redirect + "1\n2\n2\n",
              f"-c with commands from a pipe: redirected once, then answered (exit {rc}, "
              f"{out!r}, {err!r})")
        check_eq(cluster.call(leader, "GET", "tool:c"), b"via follower",
                 "the write is at the leader")

        step(f"redis-benchmark -t set,get,incr -n {REQUESTS}")
        cluster.call(leader, "DEL", "counter:__rand_int__")
        rc, out, err, took = run_program([need("redis-benchmark"), "-h", "127.0.0.1", "-p",
                                          str(lport), "-t", "set,get,incr", "-n", str(REQUESTS),
                                          "-q"], wall=120)
        if rc != 0:
            fail(f"redis-benchmark exited {rc}: {out!r} {err!r}")
        check(True, f"redis-benchmark exits 0 ({took:.1f} s)")
        for test in ("SET", "GET", "INCR"):
            m = re.search(rf"(?:^|\r){test}: ([\d.]+) requests per second", out, re.M)
            check(m is not None, f"it reports {test} ({m.group(0).strip() if m else out!r})")
        check("error" not in (out + err).lower(), f"no errors reported ({err!r})")
        check_eq(cluster.call(leader, "GET", "counter:__rand_int__"), str(REQUESTS).encode(),
                 f"the INCR counter equals {REQUESTS}")
        commit = cluster.info(leader)["commit_index"]
        cluster.wait_applied(cluster.ids, commit, timeout=20)
        check(True, f"every node applied the benchmark's writes (commit index {commit})")

        cluster.check_alive()
        cluster.shutdown()
        check(True, "every node stopped cleanly")


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

#!/usr/bin/env python3
"""Peer and control messages are authenticated (--secret-file).

With a secret, messages an outsider crafts with the project's own schema
(tests/tools/raftkv-forge.c: an AppendEntries committing SET pwned
by-outsider, a RequestVote in a far later term, a supervisor's suspend and
timeout) change nothing, whether sent without a MAC or with one made from the
wrong secret; the auth failure counter rises and the cluster keeps working.
With the right secret a control works, once: the same bytes sent twice, or
an old sequence number, are dropped. Without a secret the nodes say they are
in protected mode and work on loopback as before; a peer URL off loopback is
refused; so are secret files that are missing or too short."""
import os
import subprocess
import sys
import time

from harness import (Cluster, check, check_eq, fail, parse_args, run, run_program, step,
                     wait_until)

FORGED_TERM = 1000000


def write_secret(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def forge(opt, cluster, to, kind, *args, secret=None, config=None, url=None, extra=()):
    """Run raftkv-forge; it must have sent the message."""
    cmd = [os.path.join(opt.build, "raftkv-forge"), "--config", config or cluster.config,
           "--to", str(to)]
    if secret:
        cmd += ["--secret-file", secret]
    if url:
        cmd += ["--url", url]
    cmd += list(extra) + [kind] + [str(a) for a in args]
    rc, out, err, _ = run_program(cmd, wall=20)
    if rc != 0:
        fail(f"raftkv-forge {kind} to node {to} failed ({rc}): {err.strip()}")
    return out


def forge_all(opt, cluster, leader, infos, secret, what):
    """Every kind of forged message to every node."""
    lead = infos[leader]
    for i in cluster.ids:
        # What a real leader would send next: the forged entry follows the log
        # and is committed at once.
        forge(opt, cluster, i, "append", secret=secret,
              extra=["--from", str(leader if i != leader else next(j for j in cluster.ids
                                                                    if j != i)),
                     "--term", str(lead["term"]), "--prev-index", str(lead["last_log_index"]),
                     "--prev-term", str(lead["last_log_term"])])
        forge(opt, cluster, i, "vote", secret=secret, extra=["--term", str(FORGED_TERM)])
        forge(opt, cluster, i, "suspend", 4294967295, secret=secret)
        forge(opt, cluster, i, "timeout", secret=secret)
    check(True, f"an AppendEntries (SET pwned), a RequestVote (term {FORGED_TERM}), a suspend "
          f"for 49.7 days and a timeout to every node, {what}")


def check_untouched(cluster, before, what):
    infos = cluster.infos(cluster.ids)
    for i in cluster.ids:
        out = cluster.node(i).output()
        check("suspended for 4294967295 ms" not in out, f"node {i} was not suspended ({what})")
        check(infos[i]["term"] < FORGED_TERM, f"node {i} did not take the forged term "
              f"({infos[i]['term']})")
    check_eq(cluster.leader_call("GET", "pwned"), None, f"GET pwned is nil ({what})")
    return infos


def check_serving(cluster, what):
    cluster.check_alive()
    n = cluster.leader_call("INCR", "auth:writes", timeout=10)
    leader = cluster.wait_leader(timeout=10)
    cluster.wait_applied(cluster.ids, cluster.info(leader)["commit_index"], timeout=10)
    check(True, f"a write commits on every node ({what}; INCR -> {n})")


def test_with_secret(opt):
    with Cluster(opt, 3, slot=0, name="auth") as cluster:
        secret = write_secret(os.path.join(cluster.tmp, "secret"), os.urandom(32))
        wrong = write_secret(os.path.join(cluster.tmp, "wrong"), os.urandom(32))
        cluster.node_args += ["--secret-file", secret]
        step("a cluster with a secret: every node says so")
        cluster.start()
        leader = cluster.wait_leader()
        check_eq(cluster.leader_call("SET", "k", "v"), "OK", "SET k v")
        for i in cluster.ids:
            check("authenticated with the secret in" in cluster.node(i).output(),
                  f"node {i} says its messages are authenticated")
        infos = cluster.infos(cluster.ids)
        check(all(f["peer_auth"] == "secret" and f["auth_failures"] == 0
                  for f in infos.values()), "RAFT.INFO: peer_auth:secret, auth_failures:0")

        step("forged messages without a MAC")
        forge_all(opt, cluster, leader, infos, None, "without a MAC")
        wait_until(lambda: all(f["auth_failures"] >= 4
                               for f in cluster.infos(cluster.ids).values()),
                   10, "every node to count 4 auth failures")
        check_untouched(cluster, infos, "no MAC")

        step("forged messages with a MAC from the wrong secret")
        forge_all(opt, cluster, leader, infos, wrong, "with the wrong secret's MAC")
        wait_until(lambda: all(f["auth_failures"] >= 8
                               for f in cluster.infos(cluster.ids).values()),
                   10, "every node to count 8 auth failures")
        check_untouched(cluster, infos, "wrong secret")
        for i in cluster.ids:
            check("dropped a message that failed authentication" in cluster.node(i).output(),
                  f"node {i} logged the failures (once in a while)")
        check_serving(cluster, "after 32 forged messages")

        step("with the right secret a control works, once")
        i = cluster.ids[-1]
        forge(opt, cluster, i, "suspend", 300, secret=secret)
        wait_until(lambda: f"node {i}: suspended for 300 ms" in cluster.node(i).output(), 10,
                   f"node {i} to take a control made with the right secret")
        wait_until(lambda: f"node {i}: resumed" in cluster.node(i).output(), 10,
                   f"node {i} to resume")
        stale = cluster.info(i)["stale_controls"]
        forge(opt, cluster, i, "suspend", 400, secret=secret, extra=["--repeat", "2"])
        wait_until(lambda: cluster.info(i)["stale_controls"] == stale + 1, 10,
                   "the second copy to be counted as stale")
        check_eq(cluster.node(i).output().count("suspended for 400 ms"), 1,
                 "the same control sent twice is obeyed once")
        forge(opt, cluster, i, "suspend", 500, secret=secret, extra=["--seq", "12345"])
        wait_until(lambda: cluster.info(i)["stale_controls"] == stale + 2, 10,
                   "a control with an old seq to be counted as stale")
        check("suspended for 500 ms" not in cluster.node(i).output(),
              "a control numbered from before the node started is dropped")
        wait_until(lambda: f"node {i}: resumed" in cluster.node(i).output().split(
            "suspended for 400 ms")[-1], 10, f"node {i} to resume")

        step("a message from another cluster (same secret, other cluster file)")
        other = os.path.join(cluster.tmp, "other.conf")
        with open(cluster.config) as f, open(other, "w") as g:
            g.write(f.read() + "# another cluster: one more node\n"
                    f"9 tcp://127.0.0.1:{cluster.node(1).peer_port + 50} 127.0.0.1:1\n")
        forge(opt, cluster, 1, "vote", secret=secret, config=other,
              url=cluster.node(1).peer_url, extra=["--term", str(FORGED_TERM)])
        wait_until(lambda: "dropped a message from another cluster" in cluster.node(1).output(),
                   10, "node 1 to say it got a message from another cluster")
        check_untouched(cluster, infos, "another cluster")
        check_serving(cluster, "at the end")
        cluster.shutdown()
        check(True, "every node stopped cleanly")


def test_without_secret(opt):
    with Cluster(opt, 3, slot=1, name="noauth") as cluster:
        step("no secret, loopback: protected mode, works as before")
        cluster.start()
        cluster.wait_leader()
        for i in cluster.ids:
            check("protected mode: no --secret-file, peers on loopback only" in
                  cluster.node(i).output(), f"node {i} says it is in protected mode")
        check_eq(cluster.info(1)["peer_auth"], "loopback-only", "RAFT.INFO peer_auth")
        check_eq(cluster.leader_call("SET", "k", "v"), "OK", "SET k v")
        # Protected mode trusts whoever can reach loopback: a control is taken.
        forge(opt, cluster, 2, "suspend", 250)
        wait_until(lambda: "node 2: suspended for 250 ms" in cluster.node(2).output(), 10,
                   "node 2 to take an unauthenticated control (protected mode trusts loopback)")
        check_serving(cluster, "no secret")

        step("no secret: a RequestVote with term 2^64 - 1 is dropped, nothing wraps")
        before = cluster.infos()
        for i in cluster.ids:
            forge(opt, cluster, i, "vote", extra=["--term", str(2**64 - 1)])
        wait_until(lambda: all(cluster.info(i)["bad_messages"] > before[i]["bad_messages"]
                               for i in cluster.ids),
                   10, "every node to count the forged vote as a bad message")
        check(True, "every node counted it in RAFT.INFO bad_messages")
        after = cluster.infos()
        check(all(after[i]["term"] < 2**62 for i in cluster.ids),
              f"no node took the term ({[after[i]['term'] for i in cluster.ids]})")
        cluster.leader_call("SET", "after-huge-term", "1")
        check(True, "the cluster still elects and writes")
        check_serving(cluster, "a huge term")

        cluster.shutdown()


def start_alone(opt, tmp, config, node_id, extra=()):
    """Start one node; return (exit status or None if it runs, stdout, stderr)."""
    data = os.path.join(tmp, f"alone{node_id}-{time.monotonic_ns()}")
    p = subprocess.Popen([opt.node_bin, "--config", config, "--id", str(node_id), "--data", data]
                         + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=1.5)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, err = p.communicate(timeout=10)
        return None, out.decode(), err.decode()
    return p.returncode, out.decode(), err.decode()


def test_refusals(opt):
    with Cluster(opt, 1, slot=2, name="refuse") as cluster:
        tmp = cluster.tmp
        base = opt.port_base + 2 * 20
        step("a peer URL off loopback without a secret is refused")
        # Nothing is ever sent to 192.0.2.1 (TEST-NET-1): the node refuses first.
        for url in [f"tcp://192.0.2.1:{base + 2}", f"tcp://0.0.0.0:{base + 2}",
                    f"tcp://*:{base + 2}"]:
            conf = os.path.join(tmp, "remote.conf")
            with open(conf, "w") as f:
                f.write(f"1 tcp://127.0.0.1:{base + 1} 127.0.0.1:{base + 11}\n"
                        f"2 {url} 127.0.0.1:{base + 12}\n")
            rc, out, err = start_alone(opt, tmp, conf, 1)
            check(rc == 1 and url in err and "--secret-file" in err and "not on loopback" in err,
                  f"{url}: refused ({rc}): {err.strip()[:200]}")

        step("a wildcard peer URL with a secret is taken")
        secret = write_secret(os.path.join(tmp, "secret"), os.urandom(32))
        conf = os.path.join(tmp, "wild.conf")
        with open(conf, "w") as f:
            f.write(f"1 tcp://0.0.0.0:{base + 1} 127.0.0.1:{base + 11}\n")
        rc, out, err = start_alone(opt, tmp, conf, 1, ["--secret-file", secret])
        check(rc is None and "authenticated" in out, f"it runs ({rc}, {err.strip()[:200]})")

        step("a host name is resolved to bind (it said No such device)")
        conf = os.path.join(tmp, "name.conf")
        with open(conf, "w") as f:
            f.write(f"1 tcp://localhost:{base + 1} 127.0.0.1:{base + 11}\n")
        rc, out, err = start_alone(opt, tmp, conf, 1)
        check(rc is None and "protected mode" in out,
              f"tcp://localhost:PORT binds ({rc}, {err.strip()[:200]})")

        step("bad secret files are refused")
        short = write_secret(os.path.join(tmp, "short"), b"hunter2\n")
        missing = os.path.join(tmp, "missing")
        for path, why in [(short, "it must hold 16"), (missing, "No such file")]:
            rc, out, err = start_alone(opt, tmp, cluster.config, 1, ["--secret-file", path])
            check(rc == 1 and why in err, f"{os.path.basename(path)}: refused: {err.strip()}")
        loose = write_secret(os.path.join(tmp, "loose"), os.urandom(32), mode=0o644)
        rc, out, err = start_alone(opt, tmp, cluster.config, 1, ["--secret-file", loose])
        check(rc is None and "other users may read it" in err,
              f"a secret others may read: a warning ({err.strip()[:200]})")


def main(opt):
    if not os.access(os.path.join(opt.build, "raftkv-forge"), os.X_OK):
        fail(f"{opt.build}/raftkv-forge is not built")
    test_with_secret(opt)
    test_without_secret(opt)
    test_refusals(opt)


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

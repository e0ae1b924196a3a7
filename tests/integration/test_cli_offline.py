#!/usr/bin/env python3
"""raftkv-cli without a cluster: flags, argument errors, help, and an
unreachable cluster reported within the timeout."""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL: {what}", file=sys.stderr)


def closed_port():
    """A loopback port nothing listens on: bound, then released."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cli, args, stdin=None, timeout=10):
    start = time.monotonic()
    p = subprocess.run([cli] + args, input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--port-base", type=int, default=20000)
    opt = ap.parse_args()
    cli = os.path.join(opt.build, "raftkv-cli")

    rc, out, err, _ = run(cli, ["--help"])
    check(rc == 0 and out.startswith("usage: raftkv-cli"), "--help prints usage, exit 0")
    for name in ["connect", "getleader", "suspend", "getval", "setval", "incr", "expire",
                 "ttl", "del", "latency", "help", "quit"]:
        check(name in out, f"--help names {name}")

    for bad in (["--bogus"], ["--timeout", "abc"], ["--timeout", "0"], ["--timeout"]):
        rc, out, err, _ = run(cli, bad)
        check(rc == 2 and "usage: raftkv-cli" in err and out == "", f"{bad}: usage, exit 2")

    usage_cases = [
        (["setval", "a"], "usage: setval <key> <value>"),
        (["getval"], "usage: getval <key>"),
        (["SETVAL", "a", "b", "c"], "usage: setval <key> <value>"),
        (["suspend", "abc"], "usage: suspend <seconds>"),
        (["latency", "now"], "usage: latency [reset]"),
        (["suspend", "0"], "usage: suspend <seconds>"),
        (["suspend", "-3"], "usage: suspend <seconds>"),
        (["suspend"], "usage: suspend <seconds>"),
        (["expire", "k", "soon"], "usage: expire <key> <seconds>"),
        (["connect", "a", "b"], "usage: connect"),
        (["getleader", "x"], "usage: getleader"),
        (["foo"], "error: unknown command 'foo' (try help)"),
    ]
    for args, want in usage_cases:
        rc, out, err, _ = run(cli, args)
        check(rc == 2 and want in err and out == "", f"{args}: '{want}', exit 2 (got {rc} {err!r})")

    rc, out, err, _ = run(cli, ["connect", "5"])
    check(rc == 1 and "error: no node 5 is known" in err, "connect 5 without --config")

    # One unreachable address: refused connections are retried until the timeout.
    port = closed_port()
    rc, out, err, took = run(cli, ["--connect", f"127.0.0.1:{port}", "--timeout", "1",
                                   "getval", "k"])
    check(rc == 1 and err == f"error: no node reachable (tried 127.0.0.1:{port})\n",
          f"unreachable node message (got {err!r})")
    check(0.9 <= took <= 2.0, f"unreachable node reported within the timeout (took {took:.2f} s)")

    # A whole cluster down: every node is tried, in the file's order.
    ports = [closed_port() for _ in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "cluster.conf")
        with open(conf, "w") as f:
            for i, p in enumerate(ports, 1):
                f.write(f"{i} tcp://127.0.0.1:{opt.port_base + i} 127.0.0.1:{p}\n")
        rc, out, err, took = run(cli, ["--config", conf, "--timeout", "1", "setval", "k", "v"])
        tried = ", ".join(f"127.0.0.1:{p}" for p in ports)
        check(rc == 1 and err == f"error: no node reachable (tried {tried})\n",
              f"unreachable cluster message (got {err!r})")
        check(0.9 <= took <= 2.0, f"unreachable cluster within the timeout (took {took:.2f} s)")

        rc, out, err, _ = run(cli, ["--config", conf, "--timeout", "1", "connect", "2"])
        check(rc == 1 and f"error: cannot connect to node 2 127.0.0.1:{ports[1]}" in err,
              f"connect <id> to a node that is down (got {err!r})")

        bad = os.path.join(tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write("# comment\n1 tcp://127.0.0.1:1\n")
        rc, out, err, _ = run(cli, ["--config", bad, "getval", "k"])
        check(rc == 1 and "bad.conf:2" in err, f"malformed cluster file named (got {err!r})")

    # Commands from a pipe: errors do not stop the session, quit does; the
    # exit status is the worst line's (2: wrong arguments), so a script learns
    # that something failed.
    rc, out, err, took = run(cli, ["--connect", f"127.0.0.1:{port}", "--timeout", "1"],
                             stdin='help getval\nsetval "a b\nSetVal a\nfoo\n\nquit\ngetval x\n')
    check(rc == 2, f"piped session with bad lines exits 2 (got {rc})")
    check(out == "usage: getval <key>\n", f"piped help (got {out!r})")
    check("error: unbalanced quotes" in err, "unbalanced quotes reported")
    check("usage: setval <key> <value>" in err, "mixed-case command name accepted")
    check("error: unknown command 'foo'" in err, "unknown command reported")
    check("no node reachable" not in err and took < 0.9, "nothing runs after quit")
    rc, out, err, _ = run(cli, ["--connect", f"127.0.0.1:{port}", "--timeout", "1"],
                          stdin='help getval\nquit\n')
    check(rc == 0, f"piped session whose lines all worked exits 0 (got {rc})")
    rc, out, err, _ = run(cli, ["--connect", f"127.0.0.1:{port}", "--timeout", "1"],
                          stdin='setval k a\0b\n')
    check(rc == 2 and "line 1 holds a NUL byte" in err,
          f"a line with a NUL byte is refused, not cut (got {rc}, {err!r})")

    if failures:
        print(f"{failures} check(s) failed", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Who may use the client port (Redis's conventions):

- with --requirepass-file every command but AUTH, HELLO and QUIT answers
  -NOAUTH until AUTH <password> (or AUTH default <password>, or HELLO 2 AUTH
  default <password>); a wrong password answers -WRONGPASS; before AUTH a
  request of more than 10 arguments, or an argument over 16384 bytes, is a
  protocol error that closes the connection;
- redis-cli -a, raftkv-cli with REDISCLI_AUTH and with --askpass (typed on a
  terminal) work;
- without a password (protected mode) the node says so at start, and refuses
  to start on a non-loopback or wildcard client address;
- --admin-commands off refuses RAFT.SUSPEND and DEBUG;
- the cockpit started with --requirepass-file passes it to its nodes, and its
  own client authenticates."""
import os
import pty
import select
import shutil
import socket
import sys
import time

from harness import (Cluster, Redis, RespError, check, check_eq, encode_command, fail, parse_args,
                     run, run_program, step, wait_until)

PASSWORD = "correct horse battery staple"


def test_password(cluster):
    step("with a password: NOAUTH first, then AUTH")
    leader = cluster.wait_leader()
    port = cluster.node(leader).client_port
    with Redis("127.0.0.1", port) as r:
        check_eq(r.call("GET", "k"), RespError("NOAUTH Authentication required."),
                 "GET before AUTH: NOAUTH")
        check_eq(r.call("RAFT.REQ", "9", "1", "SET", "k", "v"),
                 RespError("NOAUTH Authentication required."), "RAFT.REQ before AUTH: NOAUTH")
        check_eq(r.call("AUTH", "wrong"),
                 RespError("WRONGPASS invalid username-password pair or user is disabled."),
                 "a wrong password: WRONGPASS")
        check_eq(r.call("AUTH", "someone", PASSWORD),
                 RespError("WRONGPASS invalid username-password pair or user is disabled."),
                 "a user other than default: WRONGPASS")
        check_eq(r.call("AUTH", PASSWORD), "OK", "AUTH <password>")
        check_eq(r.call("SET", "k", "v"), "OK", "then SET works")
    with Redis("127.0.0.1", port) as r:
        check_eq(r.call("AUTH", "default", PASSWORD), "OK", "AUTH default <password>")
        check_eq(r.call("GET", "k"), b"v", "then GET works")
    with Redis("127.0.0.1", port) as r:
        hello = r.call("HELLO", "2", "AUTH", "default", PASSWORD)
        check(isinstance(hello, list) and hello[0] == b"server", "HELLO 2 AUTH default <password>")
        check_eq(r.call("GET", "k"), b"v", "then GET works")

    step("before AUTH only small requests: at most 10 arguments of 16384 bytes, as in Redis")
    for what, request, error in [
            ("an 11-argument DEL", encode_command("DEL", *[f"k{i}" for i in range(10)]),
             b"-ERR Protocol error: unauthenticated multibulk length\r\n"),
            ("a SET of a 16385-byte value", encode_command("SET", "k", "v" * 16385),
             b"-ERR Protocol error: unauthenticated bulk length\r\n")]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request)
            got = read_all(s)
        check_eq(got, error, f"{what} before AUTH: the error, then the connection is closed")
    with Redis("127.0.0.1", port) as r:
        check_eq(r.call("AUTH", PASSWORD), "OK", "AUTH")
        check_eq(r.call("DEL", *[f"k{i}" for i in range(10)]), 0,
                 "after AUTH the 11-argument DEL runs")
        check_eq(r.call("SET", "big", "v" * 16385), "OK", "and so does the 16385-byte SET")

    step("redis-cli -a, raftkv-cli with REDISCLI_AUTH and --askpass")
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        fail("redis-cli is not installed (quickstart installs redis-tools)")
    rc, out, err, _ = run_program([redis_cli, "-p", str(port), "-a", PASSWORD, "--no-auth-warning",
                                   "GET", "k"])
    check_eq((rc, out.strip()), (0, "v"), "redis-cli -a")
    env = dict(os.environ, REDISCLI_AUTH=PASSWORD)
    rc, out, err, _ = run_program([cluster.opt.cli_bin, "--config", cluster.config,
                                   "setval", "k", "w"], env=env)
    check_eq((rc, out.strip()), (0, "OK"), "raftkv-cli with REDISCLI_AUTH")
    env = dict(os.environ, REDISCLI_AUTH="wrong")
    rc, out, err, _ = run_program([cluster.opt.cli_bin, "--config", cluster.config,
                                   "getval", "k"], env=env)
    check(rc == 1 and "authentication failed" in err and "WRONGPASS" in err,
          f"raftkv-cli with a wrong password fails and says why ({err.strip()!r})")
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    out = askpass(cluster, env)
    check("w" in out.splitlines()[-1], f"raftkv-cli --askpass: the password typed at the prompt "
          f"works ({out.splitlines()[-1]!r})")


def read_all(sock):
    """Everything the node sends until it closes the connection."""
    got = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            fail(f"the connection stayed open after {got[:80]!r}")
        if not chunk:
            return got
        got += chunk


def askpass(cluster, env):
    """Run raftkv-cli --askpass getval k on a terminal, type the password."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(cluster.opt.cli_bin, [cluster.opt.cli_bin, "--config", cluster.config,
                                        "--askpass", "getval", "k"], env)
    out = b""
    sent = False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"password" in out:
            os.write(fd, PASSWORD.encode() + b"\n")
            sent = True
    os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode(errors="replace").replace("\r", "")
    check(sent, f"raftkv-cli --askpass asked for the password ({text!r})")
    check(PASSWORD not in text, "and did not echo it")
    return text


def test_admin_off(opt):
    step("--admin-commands off refuses RAFT.SUSPEND and DEBUG")
    with Cluster(opt, 1, slot=2, name="access-admin",
                 node_args=["--admin-commands", "off"]) as c:
        c.start()
        c.wait_leader()
        check_eq(c.call(1, "RAFT.SUSPEND", "5"),
                 RespError("ERR raft.suspend is disabled on this node (--admin-commands off)"),
                 "RAFT.SUSPEND refused")
        check_eq(c.call(1, "DEBUG", "DIGEST"),
                 RespError("ERR debug is disabled on this node (--admin-commands off)"),
                 "DEBUG refused")
        check_eq(c.call(1, "PING"), "PONG", "the node still answers")
        c.shutdown()


def test_protected_mode(opt):
    step("without a password: protected mode")
    with Cluster(opt, 1, slot=3, name="access-open") as c:
        c.start()
        wait_until(lambda: "protected mode" in c.node(1).output(), 5,
                   "the node to say it runs in protected mode")
        check(True, "the node says at start that clients are served on loopback only")
        c.shutdown()
        for host in ("0.0.0.0", "192.0.2.1"):
            conf = os.path.join(c.tmp, f"open-{host}.conf")
            with open(conf, "w") as f:
                f.write(f"1 tcp://127.0.0.1:{c.node(1).peer_port} {host}:{c.node(1).client_port}\n")
            rc, out, err, _ = run_program([opt.node_bin, "--config", conf, "--id", "1", "--data",
                                           os.path.join(c.tmp, "d-" + host)], wall=10)
            check(rc == 1 and "not a loopback address" in err and "--requirepass-file" in err,
                  f"client address {host} without a password is refused ({err.strip()!r})")


def test_cockpit(opt, pwfile):
    step("the cockpit with --requirepass-file: its nodes ask for the password, its client gives it")
    cockpit = os.path.join(opt.build, "raftkv")
    script = pwfile + ".script"
    with open(script, "w") as f:
        f.write("wait-leader\nsetval greeting hello\nexpect getval greeting hello\n"
                "expect kv all greeting hello\n")
    try:
        rc, out, err, _ = run_program([cockpit, "--headless", "--script", script,
                                       "--requirepass-file", pwfile, "--port-base",
                                       str(opt.port_base + 80)], wall=60)
    finally:
        os.unlink(script)
    check(rc == 0 and "script passed" in out,
          f"a scripted setval/getval through the cockpit's client works (exit {rc}, "
          f"{out.strip().splitlines()[-2:] if out.strip() else err.strip()!r})")


def main(opt):
    tmp_pw = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"raftkv-pw-{os.getpid()}")
    with open(tmp_pw, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(tmp_pw, 0o600)
    try:
        with Cluster(opt, 3, name="access", node_args=["--requirepass-file", tmp_pw]) as cluster:
            cluster.start(wait=False)
            for i in cluster.ids:
                wait_until(lambda i=i: cluster.node(i).alive() and ping_noauth(cluster, i), 10,
                           f"node {i} to answer")
            cluster.wait_leader = lambda **kw: wait_leader_auth(cluster, **kw)
            test_password(cluster)
            cluster.shutdown()
        test_cockpit(opt, tmp_pw)
    finally:
        os.unlink(tmp_pw)
    test_admin_off(opt)
    test_protected_mode(opt)


def ping_noauth(cluster, i):
    with Redis("127.0.0.1", cluster.node(i).client_port, timeout=1) as r:
        return r.call("PING") == RespError("NOAUTH Authentication required.")


def wait_leader_auth(cluster, timeout=10):
    def leader():
        for i in cluster.ids:
            with Redis("127.0.0.1", cluster.node(i).client_port, timeout=1) as r:
                r.call("AUTH", PASSWORD)
                info = r.call("RAFT.INFO")
                if isinstance(info, bytes) and b"role:leader" in info:
                    return i
        return None
    return wait_until(leader, timeout, "a leader")


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

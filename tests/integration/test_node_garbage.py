#!/usr/bin/env python3
"""Garbage on the client and peer ports disturbs nothing: random bytes and
malformed RESP to the client ports; random bytes, bad nanomsg handshakes,
random frames, oversized frames and forged messages (another cluster, an
unknown sender, the wrong addressee, a bad type, a control message from a
peer) to the peer ports. Afterwards every node runs, answers, and a write
commits; no forged term was taken up."""
import random
import selectors
import socket
import struct
import sys
import time

from harness import (CONTROL_TIMEOUT_NOW, Cluster, RespError, check, check_eq, cluster_id, fail,
                     parse_args, pb_bytes, pb_uint, run, sp_connect_push, sp_frame, sp_header,
                     step, wait_until)

FORGED_TERM = 1000000


def drain(sock, seconds=0.3):
    """Read whatever comes back until the peer closes or goes quiet."""
    sock.settimeout(seconds)
    got = b""
    try:
        while len(got) < 1 << 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, TimeoutError, ConnectionResetError):
        pass
    return got


def send_and_close(port, data, read=True):
    """Connect, send, read the answer for a moment, close. Returns the answer."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
    except OSError as e:
        fail(f"cannot connect to port {port}: {e!r}")
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # the node hung up before taking everything: fine
        return drain(s) if read else b""
    finally:
        s.close()


def client_garbage(rng):
    """(name, bytes) pairs: malformed Redis-protocol requests."""
    junk = bytes(rng.getrandbits(8) for _ in range(65536))
    return [
        ("64 KiB of random bytes", junk),
        ("random bytes after a star", b"*" + junk[:4096]),
        ("random bytes after a dollar", b"*1\r\n$" + junk[:4096]),
        ("a huge multibulk count", b"*999999999999\r\n"),
        ("a multibulk count over the cap", b"*1048577\r\n$4\r\nPING\r\n"),
        ("a multibulk count at the cap, then nothing", b"*1048576\r\n"),
        ("an overflowing multibulk count", b"*99999999999999999999999999\r\n"),
        ("a negative multibulk count", b"*-5\r\n"),
        ("a null multibulk", b"*-1\r\n*1\r\n$4\r\nPING\r\n"),
        ("an empty multibulk", b"*0\r\n*1\r\n$4\r\nPING\r\n"),
        ("a negative bulk length", b"*2\r\n$-5\r\nhello\r\n"),
        ("a bulk length of -1 in a request", b"*1\r\n$-1\r\n"),
        ("a huge bulk length", b"*1\r\n$99999999999\r\n"),
        ("a bulk length over the cap", b"*2\r\n$3\r\nGET\r\n$8388609\r\n"),
        ("a bulk without its CRLF", b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n"),
        ("a bulk length that is not a number", b"*1\r\n$abc\r\n"),
        ("a count that is not a number", b"*x\r\n"),
        ("a nested array", b"*1\r\n*1\r\n*1\r\n$4\r\nPING\r\n"),
        ("an integer instead of a bulk", b"*1\r\n:5\r\n"),
        ("an inline line over 64 KiB", b"SET " + b"a" * 70000),
        ("an inline command full of NULs", b"\x00\x00PING\x00\r\n"),
        ("a bare CR LF flood", b"\r\n" * 10000),
        ("a request cut in half", b"*3\r\n$3\r\nSET\r\n$1\r\nk"),
        ("an inline command with unbalanced quotes", b'SET "abc\r\n'),
        ("a request of 100000 empty arguments", b"*100000\r\n" + b"$0\r\n\r\n" * 100000),
    ]


def send_all_and_drain(targets, seconds=1.0):
    """Send each (port, data) on its own connection, all at once; collect what
    comes back on each until it closes or `seconds` have passed."""
    sel = selectors.DefaultSelector()
    answers = [b""] * len(targets)
    for n, (port, data) in enumerate(targets):
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            s.close()  # the node hung up before taking everything: fine
            continue
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, n)
    deadline = time.monotonic() + seconds
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            try:
                chunk = key.fileobj.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                chunk = b""
            if chunk:
                answers[key.data] += chunk
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return answers


def test_client_ports(cluster, rng):
    step("garbage to every client port")
    cases = client_garbage(rng)
    targets = [(cluster.node(i).client_port, data) for _, data in cases for i in cluster.ids]
    answers = send_all_and_drain(targets)
    cluster.check_alive()
    check(True, f"{len(cases)} kinds of malformed requests to {len(cluster.ids)} nodes: all "
          "still running")
    by_name = {name: answers[n * len(cluster.ids)] for n, (name, _) in enumerate(cases)}
    bad = by_name["a huge multibulk count"]
    check(bad.startswith(b"-") and b"Protocol error" in bad,
          f"a huge multibulk count gets a protocol error ({bad[:60]!r})")
    bad = by_name["a null multibulk"]
    check(bad == b"+PONG\r\n", f"a null multibulk is skipped as Redis does ({bad[:60]!r})")

    step("many connections opened and dropped")
    for _ in range(3):
        socks = [socket.create_connection(("127.0.0.1", cluster.node(i).client_port))
                 for i in cluster.ids for _ in range(30)]
        for n, s in enumerate(socks):
            s.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\n"[: n % 17])
            if n % 2:
                # SO_LINGER on, 0 s: close() sends a reset
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    cluster.check_alive()
    check(True, "270 connections dropped mid-request, some with a reset")


def peer_message_ae(to, term, msg_type=3):
    """A PeerMessage: AppendEntries (type 3) to `to` in `term`, commit 999."""
    return (pb_uint(1, msg_type) + pb_uint(2, to) + pb_uint(3, term) + pb_uint(7, 0) +
            pb_uint(9, 999))


def envelope(cid, sender, peer=None, control=None):
    data = pb_uint(1, cid) + (pb_uint(2, sender) if sender else b"")
    if peer is not None:
        data += pb_bytes(3, peer)
    if control is not None:
        data += pb_bytes(4, control)
    return data


def suspend_control(ms):
    return pb_uint(10, 1) + pb_uint(11, ms)  # set_suspend, suspend_ms


def test_peer_ports(cluster, rng):
    step("garbage to every peer port: raw bytes and bad handshakes")
    for i in cluster.ids:
        port = cluster.node(i).peer_port
        send_and_close(port, bytes(rng.getrandbits(8) for _ in range(8192)))
        send_and_close(port, b"\x00SP\x00\x00\x10\x00\x00" + b"x" * 100)  # PAIR, not PUSH
        send_and_close(port, b"\x00SP\x01\x00\x50\x00\x00")  # bad version byte
        send_and_close(port, sp_header(0x50)[:5])  # cut short
        send_and_close(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    cluster.check_alive()
    check(True, "random bytes, a PAIR header, a bad header, half a header, HTTP: still running")

    step("random and oversized frames after a valid PUSH handshake")
    for i in cluster.ids:
        s = sp_connect_push(cluster.node(i).peer_port)
        frames = [sp_frame(b"")]
        for _ in range(200):
            frames.append(sp_frame(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 600)))))
        # Protobuf that decodes, but wrong: field numbers and wire types at random.
        frames.append(sp_frame(pb_uint(1, 1) + pb_bytes(3, b"\xff" * 50)))
        frames.append(sp_frame(pb_bytes(3, pb_bytes(10, b"\x08" * 1000))))
        s.sendall(b"".join(frames))
        # 17 MiB: over the node's 16 MiB message limit, under nanomsg's.
        s.sendall(sp_frame(bytes(17 * 1024 * 1024)))
        # Then a real control message: once it is taken up, so was all of the above.
        s.sendall(sp_frame(envelope(cluster_id(cluster), 0, control=suspend_control(200 + i))))
        wait_until(lambda: f"node {i}: suspended for {200 + i} ms" in cluster.node(i).output(),
                   10, f"node {i} to take a control message sent after the garbage frames")
        s.close()
        wait_until(lambda: f"node {i}: resumed" in cluster.node(i).output(), 5,
                   f"node {i} to resume")
        # A length far over any limit: nanomsg hangs up.
        send_and_close(cluster.node(i).peer_port,
                       sp_header(0x50) + (1 << 62).to_bytes(8, "big") + b"x" * 1000)
    cluster.check_alive()
    check(True, "random frames, wrong protobuf, a 17 MiB frame (all read: a control message "
          "after them was taken), a 2^62-byte length: still running")

    step("forged messages are dropped")
    cid = cluster_id(cluster)
    for i in cluster.ids:
        other = next(j for j in cluster.ids if j != i)
        lines_before = cluster.node(i).output().count("suspended for")
        s = sp_connect_push(cluster.node(i).peer_port)
        forged = [
            # another cluster, a leader in a far later term
            envelope(cid ^ 1, other, peer=peer_message_ae(i, FORGED_TERM)),
            # this cluster, an unknown sender
            envelope(cid, 42, peer=peer_message_ae(i, FORGED_TERM)),
            # this cluster, a known sender, addressed to somebody else
            envelope(cid, other, peer=peer_message_ae(other, FORGED_TERM)),
            # this cluster, a message type that does not exist
            envelope(cid, other, peer=peer_message_ae(i, FORGED_TERM, msg_type=99)),
            # a RequestVote from node i to itself
            envelope(cid, i, peer=peer_message_ae(i, FORGED_TERM, msg_type=1)),
            # control messages: from another cluster, from a peer instead of 0
            envelope(cid ^ 1, 0, control=suspend_control(7777)),
            envelope(cid, other, control=suspend_control(5555)),
            envelope(cid ^ 1, 0, control=CONTROL_TIMEOUT_NOW),
            # no body at all
            envelope(cid, other),
            # what comes last is real: a supervisor's 300 ms suspend
            envelope(cid, 0, control=suspend_control(300 + i)),
        ]
        s.sendall(b"".join(sp_frame(f) for f in forged))
        # The real control message is taken up, so everything before it on
        # this connection was read (nanomsg keeps one connection's order).
        wait_until(lambda: f"node {i}: suspended for {300 + i} ms" in cluster.node(i).output(),
                   5, f"node {i} to take the real control message after the forged ones")
        s.close()
        out = cluster.node(i).output()
        check(out.count("suspended for") == lines_before + 1,
              f"node {i}: forged control messages ignored, the real one taken")
        wait_until(lambda: f"node {i}: resumed" in cluster.node(i).output(), 5,
                   f"node {i} to resume")
    cluster.check_alive()
    terms = {i: f["term"] for i, f in cluster.infos(cluster.ids).items()}
    check(max(terms.values()) < FORGED_TERM, f"no node took up the forged term ({terms})")


def check_still_serving(cluster, what):
    step(f"the cluster still serves ({what})")
    cluster.check_alive()
    for i in cluster.ids:
        check_eq(cluster.call(i, "PING", timeout=2), "PONG", f"node {i} answers PING")
    leader = cluster.wait_leader(timeout=10)
    start = time.monotonic()
    check_eq(cluster.leader_call("INCR", "garbage:writes", timeout=5) > 0, True,
             "a write commits")
    check(time.monotonic() - start < 5, f"within {time.monotonic() - start:.2f} s")
    cluster.wait_applied(cluster.ids, cluster.info(leader)["commit_index"], timeout=5)
    check(True, "every node applied it")


def main(opt):
    rng = random.Random(20240601)
    with Cluster(opt, 3, name="garbage") as cluster:
        step("start 3 nodes")
        cluster.start()
        leader = cluster.wait_leader()
        check_eq(cluster.call(leader, "SET", "before", "1"), "OK", f"node {leader} leads, SET")

        # A client that sends half a request and waits must not hold up others.
        slow = cluster.client(leader)
        slow.send_raw(b"*2\r\n$3\r\nGET\r\n$6\r\nbef")

        test_client_ports(cluster, rng)
        check_still_serving(cluster, "after client-port garbage")
        test_peer_ports(cluster, rng)
        check_still_serving(cluster, "after peer-port garbage")

        step("the slow client's request completes")
        slow.send_raw(b"ore\r\n")
        reply = slow.read_reply()
        check(reply == b"1" or (isinstance(reply, RespError) and reply.startswith("MOVED")),
              f"the half-sent GET, finished, is answered ({reply!r})")
        slow.close()
        check_eq(cluster.leader_call("GET", "before"), b"1", "the data is intact")
        cluster.shutdown()
        check(True, "every node stopped cleanly")


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__)))

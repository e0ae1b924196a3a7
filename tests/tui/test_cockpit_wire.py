#!/usr/bin/env python3
"""The wire panel and the frozen cluster, in a real terminal.

tmux runs `raftkv` at speed 0.1 and 160x50 (the panel beside the events); capture-pane reads the screen:

- during an election a RequestVote line and its replies appear in the wire
  panel, the RequestVote drawn in flight before it is delivered;
- a cut link's messages are shown lost, and `drop 30%` is on the links line;
- `f` freezes: for 5 seconds, though the leader is cut off and a write is
  typed, every term, commit index and log line on screen stays the same (the
  write waits, and is applied after the thaw), and RAFT.INFO on a node's client port answers at once
  with the same term and commit;
- frozen, `t` makes a candidate whose RequestVotes are held; `n` delivers
  exactly one (one "delivered by hand" event, the receiver votes, the other
  receiver does not), and `n` again and again ends the election with one
  leader in the candidate's term; `:tick N 400` then fires node N's
  election timer;
- at 80x24 the panel is there and `w` hides it.
"""
import os
import re
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cockpit_checks import FAILURES, check, parse_args, report, wait_until  # noqa: E402
from test_cockpit_tmux import Terminal, cards, node_pids  # noqa: E402

IN_FLIGHT = re.compile(r"\[=*>\s*\]")  # the bar of a message travelling
HELD = re.compile(r"x ?(\d{1,2}) (\S) (\d) -> (\d)  (.*?)\s+held \[(\d+)\]")


def leader_of(term):
    roles = cards(term.screen())
    leaders = [i for i, r in roles.items() if r == "Leader"]
    return leaders[0] if len(roles) == 3 and len(leaders) == 1 else None


def card_terms(screen):
    """{node: term} from the cards' "term N" lines (three cards side by side)."""
    for line in screen.splitlines():
        found = re.findall(r"term (\d+)\s+voted for (\S+)", line)
        if len(found) == 3:
            return {i + 1: (int(t), v) for i, (t, v) in enumerate(found)}
    return {}


def steady_rows(screen):
    """The rows that must not change while frozen: terms, commits, log lines."""
    rows = []
    for line in screen.splitlines()[3:]:
        if "events" in line or "wire" in line:
            break
        if re.search(r"term \d+|commit \d+|^x[ +]\d+\s+t\d+ ", line):
            rows.append(line)
    return rows


def held_list(screen):
    """[(number, from, to, words)] of the held messages in the wire panel."""
    return [(int(m.group(6)), int(m.group(3)), int(m.group(4)), m.group(5).strip())
            for m in HELD.finditer(screen)]


def resp(port, *args, timeout=2.0):
    """One RESP request to a node's client port; the reply's text."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            m = re.match(rb"\$(\d+)\r\n", data)
            if m and len(data) >= m.end() + int(m.group(1)) + 2:
                break
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                break
        return data.decode(errors="replace")


def raft_info(port):
    text = resp(port, "RAFT.INFO")
    fields = dict(re.findall(r"^(\w+):(\S*)", text, re.M))
    return fields.get("term"), fields.get("commit_index"), fields.get("role")


def run_wire(build, port, work):
    data = os.path.join(work, "data-wire")
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    command = (f"{build}/raftkv --port-base {port} --data {data} --speed 0.1 "
               f"--node-bin {build}/raftkv-node")
    term = Terminal(port, 160, 50, command, work, env)
    try:
        leader = wait_until(lambda: leader_of(term), 40)
        if not check(leader, "one leader on screen"):
            return
        check(wait_until(lambda: "AppendEntries t" in term.screen()
                         and "heartbeat" in term.screen(), 10),
              "the wire panel shows the leader's AppendEntries, marked as heartbeats")

        # An election at speed 0.1, heartbeats hidden so its lines stay.
        term.type(":wire heartbeats off")
        term.keys("Enter")
        check(wait_until(lambda: "heartbeats hidden" in term.screen(), 5),
              ":wire heartbeats off says so in the panel's title")
        follower = next(i for i in (1, 2, 3) if i != leader)
        new_term = card_terms(term.screen()).get(follower, (0, ""))[0] + 1
        vote = re.compile(rf"{follower} -> (all|\d)\s+RequestVote t{new_term} ")
        term.type(f":timeout {follower}")
        term.keys("Enter")
        replies = re.compile(rf"\d -> {follower}\s+vote (granted|refused) t{new_term}")
        seen_flight = seen_delivered = seen_reply = False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (seen_flight and seen_delivered and seen_reply):
            screen = term.screen()
            for line in screen.splitlines():
                if vote.search(line) and IN_FLIGHT.search(line):
                    seen_flight = True
                if vote.search(line) and "delivered" in line:
                    seen_delivered = True
                if replies.search(line):
                    seen_reply = True
            time.sleep(0.05)
        check(seen_flight, f"node {follower}'s RequestVote t{new_term} is drawn in flight")
        check(seen_delivered, "then it is shown delivered")
        check(seen_reply, f"its replies ('vote granted t{new_term}') appear in the wire panel")
        term.type(":wire heartbeats on")
        term.keys("Enter")

        # A cut link, a lossy network.
        leader = wait_until(lambda: leader_of(term), 30)
        cut = next(i for i in (1, 2, 3) if i != leader)
        term.type(f":isolate {cut}")
        term.keys("Enter")
        check(wait_until(lambda: re.search(r"LOST: link cut", term.screen()), 15),
              f"isolating node {cut}: its messages are shown 'LOST: link cut'")
        check(wait_until(lambda: re.search(rf"{min(leader, cut)}-{max(leader, cut)} CUT",
                                           term.screen()), 10),
              "the links line shows the cut link")
        term.type(":heal")
        term.keys("Enter")
        term.type(":drop 30%")
        term.keys("Enter")
        check(wait_until(lambda: "1-2 drop 30%" in term.screen(), 10),
              "drop 30% is on the links line")
        term.type(":heal")
        term.keys("Enter")
        leader = wait_until(lambda: leader_of(term), 40)
        if not check(leader, "one leader after healing"):
            return

        # Frozen: nothing changes for 5 seconds.
        client_port = port + 3 + (leader - 1)
        candidate = next(i for i in (1, 2, 3) if i != leader)
        term.type(str(candidate))  # selected, for 't' later (frozen, a number delivers)
        term.type("f")
        check(wait_until(lambda: "FROZEN" in term.screen(), 10), "f freezes: FROZEN on screen")
        time.sleep(1.0)  # statuses in flight when the freeze went out settle
        before_rows = steady_rows(term.screen())
        before_info = raft_info(client_port)
        # Were the clocks running, the followers would elect a new leader
        # within these 5 s, and the write would be committed.
        term.type(f":isolate {leader}")
        term.keys("Enter")
        term.type(":setval frozen yes")
        term.keys("Enter")
        check(wait_until(lambda: "client command 'setval' waits until :thaw" in term.screen(), 5),
              "frozen: a client command waits, and the event log says so")
        changed = []
        end = time.monotonic() + 5
        while time.monotonic() < end:
            rows = steady_rows(term.screen())
            if rows != before_rows:
                changed = rows
                break
            time.sleep(0.25)
        check(before_rows and not changed,
              "frozen: terms, commits and logs on screen stay the same for 5 s"
              + (f" (changed: {changed})" if changed else ""))
        started = time.monotonic()
        after_info = raft_info(client_port)
        check(after_info == before_info and after_info[0] is not None
              and time.monotonic() - started < 1.0,
              f"frozen: RAFT.INFO answers at once, same term and commit ({after_info})")

        term.type(":heal")
        term.keys("Enter")
        # Messages already on their way when the nodes froze were held too.
        for _ in range(2):
            time.sleep(0.5)
            term.type(":deliver all")
            term.keys("Enter")
        check(wait_until(lambda: not held_list(term.screen())
                         and "delivered by hand: all" in term.screen(), 10),
              ":deliver all empties the held list")

        # Frozen: a timeout, then the election by hand.
        old = card_terms(term.screen())
        cand_term = old[candidate][0] + 1
        term.type("t")  # frozen, 't' still forces the selected node's timeout
        held = wait_until(lambda: len(held_list(term.screen())) == 2 and held_list(term.screen()),
                          15)
        check(held and all(f == candidate and "RequestVote" in w for _, f, _, w in held),
              f"frozen: node {candidate}'s two RequestVotes t{cand_term} are held, numbered"
              f" ({held})")
        if not held:
            return
        first_to = held[0][2]
        other_to = held[1][2]
        delivered_before = term.screen().count("delivered by hand")
        term.type("n")

        def one_delivered():
            screen = term.screen()
            terms = card_terms(screen)
            lst = held_list(screen)
            return (terms.get(first_to) == (cand_term, str(candidate))
                    and terms.get(other_to, (0, ""))[0] == old[other_to][0]
                    and len(lst) == 2
                    and (lst[0][1], lst[0][2]) == (candidate, other_to)
                    and (lst[1][1], lst[1][2]) == (first_to, candidate)
                    and "vote granted" in lst[1][3])
        check(wait_until(one_delivered, 10),
              f"n delivers exactly one: node {first_to} votes for {candidate} in term "
              f"{cand_term}, node {other_to} does not, node {first_to}'s vote is held")
        time.sleep(1.0)
        screen = term.screen()
        check(screen.count("delivered by hand") == delivered_before + 1
              and f"delivered by hand: {candidate} -> {first_to}  RequestVote t{cand_term}"
              in screen,
              "the event log tells the one delivery")

        # The rest, one by one, until a leader.
        def leader_now():
            roles = cards(term.screen())
            return roles.get(candidate) == "Leader"
        for _ in range(12):
            if leader_now():
                break
            term.type("n")
            wait_until(leader_now, 1.5)
        check(wait_until(leader_now, 10),
              f"the election stepped by hand ends with node {candidate} Leader")
        check(wait_until(lambda: list(cards(term.screen()).values()).count("Leader") == 1, 5),
              "exactly one Leader on screen")
        for _ in range(12):
            if not held_list(term.screen()):
                break
            term.type("n")
            time.sleep(0.4)

        # :tick moves one node's clock: past its election timeout, it runs.
        ticked = next(i for i in (1, 2, 3) if i != candidate)
        term.type(f":tick {ticked} 400")
        term.keys("Enter")
        # With Pre-Vote on, it asks for pre-votes first and stays a Follower.
        check(wait_until(lambda: any(f == ticked and re.match(r"(RequestVote|PreVote) t", w)
                                     for _, f, _, w in held_list(term.screen())), 10),
              f":tick {ticked} 400 fires node {ticked}'s election timer: its RequestVotes "
              "(or PreVotes) are held")
        term.type("f")
        check(wait_until(lambda: "FROZEN" not in term.screen(), 10), "f again thaws")
        check(wait_until(lambda: leader_of(term), 30), "after the thaw, one leader")
        check(wait_until(lambda: term.screen().count("frozen = yes") == 3, 30),
              "the write typed while frozen is applied on every node after the thaw")

        term.type("q")
        term.type("y")
        check(wait_until(lambda: not term.alive(), 15), "the cockpit exits")
    finally:
        if FAILURES:
            print(f"---- last screen\n{term.screen()}")
        term.close()
        for pid in node_pids(data):
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def run_small(build, port, work):
    data = os.path.join(work, "data-small")
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    command = (f"{build}/raftkv --port-base {port} --data {data} "
               f"--node-bin {build}/raftkv-node")
    term = Terminal(port, 80, 24, command, work, env)
    try:
        check(wait_until(lambda: leader_of(term), 40), "80x24: one leader")
        check(wait_until(lambda: re.search(r"wire.*\n(.*\n)*.*events", term.screen())
                         and "AppendEntries" in term.screen(), 10),
              "80x24: the wire panel is above the events")
        term.type("w")
        check(wait_until(lambda: " wire " not in term.screen() and "events" in term.screen(), 10),
              "80x24: w hides the wire panel, the events stay")
        term.type("q")
        term.type("y")
        wait_until(lambda: not term.alive(), 15)
    finally:
        if FAILURES:
            print(f"---- last screen (80x24)\n{term.screen()}")
        term.close()
        for pid in node_pids(data):
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def main():
    args = parse_args(need_tmux=True)
    if args is None:
        return 1
    work = tempfile.mkdtemp(prefix="raftkv-tui-wire-")
    try:
        run_wire(args.build, args.port_base, work)
        run_small(args.build, args.port_base + 20, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())

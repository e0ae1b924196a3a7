#!/usr/bin/env python3
"""The real cockpit in a real terminal.

tmux runs `raftkv` at 120x40 (with --lease-reads) and at 80x24 (with
NO_COLOR set); the test reads the screen with capture-pane and checks, as a
person would: one Leader and two Followers, the lease on the leader's card
(and none without --lease-reads), `:setval greeting hello` showing in all three
KV tables, `s` on the leader's card leading to a new leader, `:screenshot`
and `P` writing both files, and `q` (confirmed) leaving no node running.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cockpit_checks import (  # noqa: E402  (tests/cockpit_checks.py)
    FAILURES, check, node_processes, parse_args, report, wait_until)

# A card's title: " 2  * Leader" or ">2< - Follower" (selected).
CARD = re.compile(r"[ >]([1-9])[ <] [*?\-ZX~] (Leader|Candidate|Follower|Suspended|Down|Starting)")


def node_pids(text):
    """pids of live raftkv-node processes with text in their command line."""
    return list(node_processes(text))


class Terminal:
    """A detached tmux session on a private server."""

    def __init__(self, port, cols, rows, command, cwd, env):
        self.socket = f"raftkv-test-{port}"
        self.tmux(["kill-server"], check=False)
        self.tmux(["new-session", "-d", "-x", str(cols), "-y", str(rows), "-c", cwd,
                   command], env=env)

    def tmux(self, args, check=True, env=None):
        return subprocess.run(["tmux", "-L", self.socket] + args, capture_output=True,
                              text=True, check=check, env=env)

    def screen(self):
        r = self.tmux(["capture-pane", "-p"], check=False)
        return r.stdout if r.returncode == 0 else ""

    def keys(self, *keys):
        self.tmux(["send-keys"] + list(keys))

    def type(self, text):
        self.tmux(["send-keys", "-l", text])

    def alive(self):
        return self.tmux(["has-session"], check=False).returncode == 0

    def close(self):
        self.tmux(["kill-server"], check=False)


def cards(screen):
    """{node id: role} from the card titles on screen."""
    return {int(m.group(1)): m.group(2) for m in CARD.finditer(screen)}


def one_leader_two_followers(term):
    roles = cards(term.screen())
    leaders = [i for i, r in roles.items() if r == "Leader"]
    followers = [i for i, r in roles.items() if r == "Follower"]
    if len(roles) == 3 and len(leaders) == 1 and len(followers) == 2:
        return leaders[0]
    return None


def run_size(build, port, cols, rows, work, no_color, lease=False):
    label = f"{cols}x{rows}{' NO_COLOR' if no_color else ''}{' --lease-reads' if lease else ''}"
    data = os.path.join(work, f"data-{cols}x{rows}")
    shots = os.path.join(work, f"shots-{cols}x{rows}")
    os.makedirs(shots)
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    command = (f"{build}/raftkv --port-base {port} --data {data} "
               f"--node-bin {build}/raftkv-node" + (" --lease-reads" if lease else ""))
    term = Terminal(port, cols, rows, command, shots, env)
    try:
        leader = wait_until(lambda: one_leader_two_followers(term), 40)
        if not check(leader, f"{label}: one Leader and two Followers on screen"):
            return
        screen = term.screen()
        check("cluster.conf" in screen and f"127.0.0.1:{port + 3}" in screen,
              f"{label}: header shows the cluster file and client addresses")
        # At speed 0.1 the 127 ms lease (150 less 8, less 15) takes 1270 ms.
        if lease:
            check(wait_until(lambda: "lease 1270ms" in term.screen(), 10),
                  f"{label}: the leader's card shows the lease it holds")
        else:
            check(not re.search(r"lease (\d+ms|lapsed)", screen),
                  f"{label}: no lease without --lease-reads")

        term.type(":setval greeting hello")
        term.keys("Enter")
        check(wait_until(lambda: term.screen().count("greeting = hello") == 3, 30),
              f"{label}: ':setval greeting hello' shows in all three KV tables")

        term.type(str(leader))
        term.type("s")

        def new_leader():
            roles = cards(term.screen())
            others = [i for i, r in roles.items() if r == "Leader" and i != leader]
            return others and roles.get(leader) == "Suspended"
        check(wait_until(new_leader, 60),
              f"{label}: 's' on the leader's card (node {leader}) leads to a new leader")

        term.type(":screenshot shot")
        term.keys("Enter")
        txt, svg = os.path.join(shots, "shot.txt"), os.path.join(shots, "shot.svg")
        check(wait_until(lambda: os.path.exists(txt) and os.path.exists(svg), 10),
              f"{label}: ':screenshot shot' writes shot.txt and shot.svg")
        if os.path.exists(txt) and os.path.exists(svg):
            with open(txt) as f:
                text = f.read()
            with open(svg) as f:
                image = f.read()
            check("Leader" in text and "Suspended" in text and len(text.splitlines()) == rows,
                  f"{label}: the text screenshot holds the screen")
            check(image.startswith("<svg") and image.rstrip().endswith("</svg>")
                  and "Suspended" in image, f"{label}: the SVG screenshot holds the screen")

        term.type("P")
        check(wait_until(lambda: any(re.match(r"raftkv-.*\.svg$", f) for f in os.listdir(shots))
                         and any(re.match(r"raftkv-.*\.txt$", f) for f in os.listdir(shots)), 10),
              f"{label}: key P writes raftkv-<time>.txt and .svg")

        check(len(node_pids(data)) == 3, f"{label}: three nodes run before quitting")
        term.type("q")
        check(wait_until(lambda: "Quit" in term.screen(), 5), f"{label}: q asks first")
        term.type("y")
        check(wait_until(lambda: not term.alive(), 15), f"{label}: the cockpit exits")
        check(wait_until(lambda: not node_pids(data), 10),
              f"{label}: no node is left running after q")
    finally:
        if FAILURES:
            print(f"---- last screen ({label})\n{term.screen()}")
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
    build = args.build
    work = tempfile.mkdtemp(prefix="raftkv-tui-")
    try:
        run_size(build, args.port_base, 120, 40, work, no_color=False, lease=True)
        run_size(build, args.port_base + 20, 80, 24, work, no_color=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""raftkv --replay FILE in a real terminal.

A scenario is recorded headless (assets/scenarios/leader-crash.txt with
--record), then replayed in tmux at 120x40: the cards, the wire and the
events of the run come back without any node started; space pauses, '{'
goes back to the start, ']' steps to the next event (one more event line
on screen), 'g' goes to a time, '+' speeds up, 'P' writes a screenshot of
that moment, 'q' quits.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cockpit_checks import FAILURES, check, node_processes, parse_args, report, wait_until  # noqa
from test_cockpit_tmux import Terminal, cards  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSITION = re.compile(r"REPLAY (\d+):(\d\d)\.(\d) / (\d+):(\d\d)\.(\d) x([\d.]+)( PAUSED)?")


def position(screen):
    """(at seconds, of seconds, speed, paused) from the bottom line."""
    m = POSITION.search(screen)
    if not m:
        return (-1, -1, 0, False)
    at = int(m.group(1)) * 60 + int(m.group(2)) + int(m.group(3)) / 10
    total = int(m.group(4)) * 60 + int(m.group(5)) + int(m.group(6)) / 10
    return at, total, float(m.group(7)), bool(m.group(8))


def event_rows(screen):
    return len(re.findall(r"^x\d\d:\d\d:\d\d\.\d ", screen, re.M))


def main():
    args = parse_args(need_tmux=True)
    if args is None:
        return 1
    work = tempfile.mkdtemp(prefix="raftkv-tui-replay-")
    rec = os.path.join(work, "crash.jsonl")
    term = None
    try:
        r = subprocess.run([os.path.join(args.build, "raftkv"), "--headless", "--speed", "0.5",
                            "--port-base", str(args.port_base), "--script",
                            os.path.join(ROOT, "assets/scenarios/leader-crash.txt"),
                            "--record", rec], capture_output=True, text=True, timeout=180)
        if not check(r.returncode == 0, "a scenario recorded headless"):
            print(r.stdout[-2000:], r.stderr[-2000:])
            return report()
        with open(rec) as f:
            cluster_file = json.loads(f.readline())["cluster_file"]
        term = Terminal(args.port_base, 120, 40, f"{args.build}/raftkv --replay {rec}", work,
                        dict(os.environ))
        check(wait_until(lambda: position(term.screen())[1] > 0, 10),
              "the replay shows where it is: REPLAY m:ss.s / m:ss.s")
        check(wait_until(lambda: "script passed" in term.screen()
                         and position(term.screen())[3], 60),
              "it plays to the end and pauses there, the last events on screen")
        screen = term.screen()
        roles = cards(screen)
        check(len(roles) == 3 and list(roles.values()).count("Leader") == 1,
              f"the cards show the run's end: one leader ({roles})")
        check("wire" in screen and "AppendEntries" in screen, "the wire panel shows its messages")
        check(not node_processes(cluster_file), "no node was started by the replay")

        term.type("{")
        check(wait_until(lambda: position(term.screen())[0] == 0 or "script passed"
                         not in term.screen(), 5) and "script passed" not in term.screen(),
              "'{' goes back: the last events are not there yet")
        term.type(" ")
        term.type(" ")  # play, then pause again where it is
        wait_until(lambda: position(term.screen())[3], 5)
        at = position(term.screen())[0]
        rows = event_rows(term.screen())
        term.type("]")
        # The bottom line shows tenths: the next event may be at the same one.
        check(wait_until(lambda: position(term.screen())[0] >= at
                         and event_rows(term.screen()) > rows, 5),
              f"']' steps to the next event ({at} s, {rows} event rows before)")

        term.type("g")
        term.type("0.5")
        term.keys("Enter")
        check(wait_until(lambda: position(term.screen())[0] == 0.5, 5), "'g 0.5' goes to 0:00.5")
        term.type("+")
        check(wait_until(lambda: position(term.screen())[2] == 2, 5),
              "'+' replays faster than real time (x2)")
        term.type("g")
        term.type("9:99")
        term.keys("Enter")
        check(wait_until(lambda: "not a time" in term.screen(), 5),
              "'g' with a bad time says so and stays")

        term.type("P")
        check(wait_until(lambda: any(re.match(r"raftkv-.*\.txt$", f) for f in os.listdir(work))
                         and any(re.match(r"raftkv-.*\.svg$", f) for f in os.listdir(work)), 10),
              "P writes a screenshot of that moment")
        term.type("q")
        check(wait_until(lambda: not term.alive(), 10), "q leaves the replay")
    finally:
        if term is not None:
            if FAILURES:
                print(f"---- last screen\n{term.screen()}")
            term.close()
        shutil.rmtree(work, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""raftkv --record and --replay, headless.

- Scripted scenarios (assets/scenarios/leader-crash.txt, and
  election-by-hand.txt on a frozen cluster) recorded with --record, then
  replayed with --replay --headless: the same event lines, in the same order,
  with the same times; held messages and deliveries by hand are recorded.
- Every line of the recording is a flat JSON object with "t" (never going
  back) and "k" of a documented kind; the messages are there in words.
- An idle cluster costs little: at the rate measured, ten minutes stay
  under 5 MB.
- Bad recordings (missing, empty, not JSON, not a recording, a broken
  status, time going back, an unknown kind) get a clear error naming the
  file and line, exit status 2, and never a crash.
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cockpit_checks import check, parse_args, report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  ")
KINDS = {"start", "status", "seen", "msg", "event", "process", "command"}


def run(args, timeout=180):
    return subprocess.run(args, capture_output=True, text=True, errors="replace",
                          timeout=timeout)


def event_lines(text):
    return [line for line in text.splitlines() if EVENT_LINE.match(line)]


def main():
    args = parse_args()
    if args is None:
        return 1
    raftkv = os.path.join(args.build, "raftkv")
    node_bin = os.path.join(args.build, "raftkv-node")
    work = tempfile.mkdtemp(prefix="raftkv-record-")
    try:
        rec = os.path.join(work, "leader-crash.jsonl")
        live = run([raftkv, "--headless", "--port-base", str(args.port_base), "--node-bin",
                    node_bin, "--script", os.path.join(ROOT, "assets/scenarios/leader-crash.txt"),
                    "--record", rec])
        check(live.returncode == 0, f"the recorded scenario passes (exit {live.returncode})")
        if live.returncode != 0:
            print(live.stdout[-3000:], live.stderr[-2000:])
        replay = run([raftkv, "--replay", rec, "--headless"])
        check(replay.returncode == 0, f"--replay --headless exits 0 ({replay.stderr.strip()})")
        want, got = event_lines(live.stdout), event_lines(replay.stdout)
        check(len(want) > 10 and want == got,
              f"the replay prints the same {len(want)} event lines in the same order")
        if want != got:
            for a, b in zip(want, got):
                if a != b:
                    print(f"  live:   {a}\n  replay: {b}")
                    break
            print(f"  {len(want)} live lines, {len(got)} replayed")

        kinds, times, bad = {}, [], []
        with open(rec) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines, 1):
            try:
                o = json.loads(line)
            except ValueError as e:
                bad.append(f"line {i}: {e}")
                continue
            if not isinstance(o, dict) or "t" not in o or o.get("k") not in KINDS or any(
                    isinstance(v, (dict, list)) for v in o.values()):
                bad.append(f"line {i}: {line[:80]}")
                continue
            kinds[o["k"]] = kinds.get(o["k"], 0) + 1
            times.append(o["t"])
        check(not bad, f"every line is a flat JSON object of a known kind ({bad[:3]})")
        check(lines and json.loads(lines[0])["k"] == "start", "the first line is the start line")
        check(times == sorted(times), "times never go back")
        texts = "\n".join(lines)
        check(all(kinds.get(k) for k in ("status", "msg", "event", "process", "command")),
              f"statuses, messages, events, processes and commands are recorded ({kinds})")
        check(re.search(r'"text":"\d -> \d  RequestVote t\d+ last #\d+ t\d+"', texts)
              and re.search(r'"text":"\d -> \d  AppendEntries t\d+ \[\d+(\.\.\d+)?\] commit',
                            texts),
              "the messages are recorded with their words")
        check('"text":"kill 1"' in texts, "the script's commands are recorded")

        # A frozen cluster, stepped by hand.
        frozen = os.path.join(work, "by-hand.jsonl")
        live2 = run([raftkv, "--headless", "--port-base", str(args.port_base + 20), "--node-bin",
                     node_bin, "--script",
                     os.path.join(ROOT, "assets/scenarios/election-by-hand.txt"),
                     "--record", frozen])
        check(live2.returncode == 0, f"election-by-hand.txt recorded (exit {live2.returncode})")
        replay2 = run([raftkv, "--replay", frozen, "--headless"])
        want2 = event_lines(live2.stdout)
        check(replay2.returncode == 0 and want2 and want2 == event_lines(replay2.stdout),
              f"its replay prints the same {len(want2)} event lines")
        with open(frozen) as f:
            held = [json.loads(line) for line in f if '"k":"msg"' in line]
        check(sum(1 for m in held if m["ev"] == 4 and m["type"] == 1) == 2
              and any(m["ev"] == 2 and m["type"] == 2 and m.get("granted") for m in held),
              "the held RequestVotes and the votes delivered by hand are recorded")

        # The cost of an idle cluster.
        idle = os.path.join(work, "idle.jsonl")
        script = os.path.join(work, "idle.txt")
        with open(script, "w") as f:
            f.write("wait-leader\nwait 6s\n")
        r = run([raftkv, "--headless", "--port-base", str(args.port_base + 10), "--node-bin",
                 node_bin, "--script", script, "--record", idle])
        check(r.returncode == 0, "an idle cluster recorded for 6 s")
        with open(idle) as f:
            idle_lines = f.read().splitlines()
        seconds = max(json.loads(idle_lines[-1])["t"], 1.0)
        per_ten_minutes = os.path.getsize(idle) / seconds * 600
        check(per_ten_minutes < 5e6,
              f"ten idle minutes cost about {per_ten_minutes / 1e6:.2f} MB (under 5 MB)")

        # Bad recordings.
        def bad_file(name, content, expect):
            path = os.path.join(work, name)
            if content is not None:
                with open(path, "wb") as f:
                    f.write(content)
            r = run([raftkv, "--replay", path, "--headless"], timeout=30)
            ok = r.returncode == 2 and re.search(expect, r.stderr) is not None
            check(ok, f"{name}: exit 2 and '{expect}' ({r.returncode}: {r.stderr.strip()})")

        start = lines[0].encode() + b"\n"
        bad_file("missing.jsonl", None, r"cannot read .*missing\.jsonl")
        bad_file("empty.jsonl", b"", r"empty\.jsonl:1: empty file")
        bad_file("text.jsonl", b"hello\n", r"text\.jsonl:1: column 1: expected '\{'")
        bad_file("other.jsonl", b'{"t":0,"k":"status"}\n', r"other\.jsonl:1: the first line")
        bad_file("pb.jsonl", start + b'{"t":1,"k":"status","node":1,"pb":"AAAA!!"}\n',
                 r"pb\.jsonl:2: \"pb\" is not node 1's Status")
        bad_file("back.jsonl", start + b'{"t":5,"k":"command","text":"a"}\n'
                 b'{"t":4,"k":"command","text":"b"}\n', r"back\.jsonl:3: time goes backwards")
        bad_file("kind.jsonl", start + b'{"t":1,"k":"teleport"}\n',
                 r"kind\.jsonl:2: unknown kind 'teleport'")
        bad_file("node.jsonl", start + b'{"t":1,"k":"seen","node":7}\n',
                 r"node\.jsonl:2: node 7 is not in")
        bad_file("nested.jsonl", start + b'{"t":1,"k":"command","text":["a"]}\n',
                 r"nested\.jsonl:2: column \d+: nested")
        bad_file("cut.jsonl", start + b'{"t":1,"k":"command","text":"a', r"cut\.jsonl:2: .*not closed")
        # Damaged copies of a real recording: refused or replayed, never a crash.
        rng = random.Random(20261202)
        with open(rec, "rb") as f:
            good = f.read()
        outcomes = set()
        for i in range(40):
            data = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(len(data))
                if rng.random() < 0.5:
                    data[at] = rng.randrange(256)
                else:
                    del data[at:at + rng.randint(1, 40)]
            path = os.path.join(work, f"damaged{i}.jsonl")
            with open(path, "wb") as f:
                f.write(bytes(data))
            r = run([raftkv, "--replay", path, "--headless"], timeout=30)
            outcomes.add(r.returncode)
            if r.returncode not in (0, 2) or (r.returncode == 2 and "damaged" not in r.stderr):
                check(False, f"damaged{i}.jsonl: exit {r.returncode}: {r.stderr[-300:]}")
                break
        check(outcomes <= {0, 2} and 2 in outcomes,
              f"40 damaged recordings: each refused with its line, or replayed ({outcomes})")

        r = run([raftkv, "--replay", rec, "--script", script], timeout=30)
        check(r.returncode == 2 and "--replay starts no node" in r.stderr,
              "--replay with --script is refused")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())

"""test_lincheck_checker.py - the linearizability checker's own tests (no nodes).

Hand-made histories show what it accepts (concurrent ops in either order,
info ops that took effect and info ops that never did, failed ops ignored) and
that it rejects a stale read, a lost acknowledged write and a doubled
increment, naming the key and the op it could not place. Seeded random
histories of a simulated linearizable register, thousands of ops a key with
info ops among them, must be accepted within a time budget, and the same
histories with one read corrupted must be rejected.

Run like every test script: python3 test_lincheck_checker.py --build DIR --port-base N
(neither is used: no process is started and no port opened).
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, step  # noqa: E402
from lincheck import Op, check_history  # noqa: E402

INF = float("inf")


def op(process, kind, arg_or_result, t0, t1, status="ok", key="k"):
    """Shorthand: op(1, "SET", 5, 0, 1) is p1 SET 5 -> OK over [0, 1];
    op(2, "GET", 5, 1, 2) is p2 GET -> 5; info ops have t1 = INF."""
    if kind == "SET":
        return Op(process, kind, key, arg_or_result, t0, t1, "OK" if status == "ok" else None,
                  status)
    return Op(process, kind, key, None, t0, t1, arg_or_result if status == "ok" else None, status)


def accepts(history, what):
    result = check_history(history)
    if not result.ok:
        print(result.report())
    check(result.ok, f"accepted: {what}")


def rejects(history, what, stuck_call=None):
    """The checker must refuse the history; print its excerpt; when
    stuck_call (e.g. "GET") is given, the op it could not place is that one."""
    result = check_history(history)
    check(not result.ok, f"rejected: {what}")
    report = result.report()
    print("\n".join("      | " + line for line in report.splitlines()))
    failure = result.failures()[0]
    check("not linearizable" in report and repr(failure.key) in report,
          "the excerpt names the key")
    if stuck_call is not None:
        check(failure.stuck.op == stuck_call, f"the op it could not place is a {stuck_call}")


def hand_made():
    step("linearizable histories are accepted")
    accepts([], "an empty history")
    accepts([op(1, "GET", None, 0, 1), op(1, "SET", 1, 2, 3), op(2, "GET", 1, 4, 5),
             op(2, "INCR", 2, 6, 7), op(1, "DEL", 1, 8, 9), op(2, "DEL", 0, 10, 11),
             op(1, "INCR", 1, 12, 13)], "a sequential history of every op")
    accepts([op(1, "SET", 1, 0, 10), op(2, "GET", None, 1, 2), op(3, "GET", 1, 3, 4),
             op(2, "GET", 1, 5, 6)], "a read inside a slow write sees the old or the new value")
    accepts([op(1, "INCR", 2, 0, 5), op(2, "INCR", 1, 1, 6)],
            "concurrent increments linearized against their real-time order")
    accepts([op(1, "SET", 1, 0, 1), op(2, "SET", 2, 2, INF, status="info"),
             op(3, "GET", 1, 3, 4), op(3, "GET", 2, 5, 6), op(1, "GET", 2, 7, 8)],
            "an info write that took effect later than its invoke")
    accepts([op(1, "SET", 1, 0, 1), op(2, "SET", 2, 2, INF, status="info"),
             op(3, "GET", 1, 3, 4), op(1, "GET", 1, 5, 6)],
            "an info write that never took effect")
    accepts([op(1, "INCR", 1, 0, 1), op(2, "INCR", None, 2, INF, status="info"),
             op(3, "INCR", 3, 3, 4)], "an info increment that took effect")
    accepts([op(1, "INCR", 1, 0, 1), op(2, "INCR", None, 2, INF, status="info"),
             op(3, "INCR", 2, 3, 4)], "an info increment that never took effect")
    accepts([op(1, "SET", 1, 0, 1), op(2, "SET", 2, 2, 3, status="fail"),
             op(3, "GET", 1, 4, 5)], "a failed write is ignored")
    accepts([op(1, "SET", 1, 0, 1, key="a"), op(2, "SET", 1, 0, 1, key="b"),
             op(1, "DEL", 1, 2, 3, key="a"), op(2, "GET", 1, 4, 5, key="b")],
            "keys are independent")

    step("a stale read is rejected")
    rejects([op(1, "SET", 1, 0, 1), op(1, "SET", 2, 2, 3), op(2, "GET", 1, 4, 5)],
            "a read after an acknowledged overwrite returns the old value", "GET")
    step("a lost acknowledged write is rejected")
    rejects([op(1, "SET", 1, 0, 1), op(2, "SET", 7, 2, 3), op(3, "INCR", 2, 4, 5),
             op(1, "GET", 2, 6, 7)],
            "an INCR continues from the value before an acknowledged SET", "INCR")
    rejects([op(1, "SET", 1, 0, 1), op(2, "DEL", 1, 2, 3), op(3, "GET", 1, 4, 5)],
            "an acknowledged DEL is lost", "GET")
    step("a doubled increment is rejected")
    rejects([op(1, "INCR", 1, 0, 1), op(2, "INCR", 3, 2, 3), op(3, "GET", 3, 4, 5)],
            "one INCR applied twice (1 then 3)", "INCR")
    rejects([op(1, "INCR", 1, 0, 1), op(2, "INCR", None, 2, INF, status="info"),
             op(3, "INCR", 4, 3, 4)],
            "an info INCR can explain one extra increment, not two", "INCR")
    step("a failed op must not have happened")
    rejects([op(1, "SET", 1, 0, 1), op(2, "SET", 2, 2, 3, status="fail"),
             op(3, "GET", 2, 4, 5)], "a read sees a write that was reported failed", "GET")


def simulated_history(seed, n_ops, processes=6, keys=("k",), info_rate=0.03, fail_rate=0.03):
    """A random history of a linearizable register: each op takes effect at a
    random instant between its invoke and its completion. Info ops take effect
    (or not, half of the time) and their outcome is forgotten; failed ops never
    take effect. Processes that saw an info op continue under a new id."""
    rng = random.Random(seed)
    now = {p: rng.random() for p in range(processes)}
    pid = {p: p for p in range(processes)}
    next_pid = processes
    next_value = 1000
    planned = []
    for _ in range(n_ops):
        p = min(now, key=now.get)
        kind = rng.choice(("GET", "GET", "SET", "INCR", "DEL"))
        t0 = now[p]
        t1 = t0 + rng.expovariate(1.0)
        status = rng.choices(("ok", "info", "fail"), (1 - info_rate - fail_rate, info_rate,
                                                     fail_rate))[0]
        happens = status == "ok" or (status == "info" and rng.random() < 0.5)
        at = rng.uniform(t0, t1 + (5 if status == "info" else 0)) if happens else None
        arg = None
        if kind == "SET":
            arg = next_value
            next_value += 1000
        planned.append((at, Op(pid[p], kind, rng.choice(keys), arg, t0,
                               INF if status == "info" else t1, None, status)))
        now[p] = t1 + rng.random() * 0.1
        if status == "info":
            pid[p] = next_pid
            next_pid += 1
    state = {}
    for at, o in sorted((x for x in planned if x[0] is not None), key=lambda x: x[0]):
        value = state.get(o.key)
        if o.op == "SET":
            state[o.key], o.result = o.arg, "OK"
        elif o.op == "GET":
            o.result = value
        elif o.op == "INCR":
            state[o.key] = o.result = (value or 0) + 1
        else:
            o.result = 0 if value is None else 1
            state[o.key] = None
    for _, o in planned:
        if o.status != "ok":
            o.result = None
    return [o for _, o in planned]


def simulated():
    step("random linearizable histories are accepted, fast")
    for seed in range(1, 41):
        history = simulated_history(seed, 300, processes=rng_processes(seed))
        result = check_history(history)
        if not result.ok:
            print(result.report())
        check(result.ok, f"seed {seed}: 300 ops, {rng_processes(seed)} processes")
    for processes, n_ops, budget in ((5, 3000, 20), (8, 3000, 30)):
        history = simulated_history(processes, n_ops, processes=processes)
        start = time.monotonic()
        result = check_history(history)
        took = time.monotonic() - start
        info = sum(o.status == "info" for o in history)
        check(result.ok and took < budget,
              f"{n_ops} ops on one key, {processes} processes, {info} info: "
              f"linearizable in {took:.2f} s (budget {budget} s)")

    step("the same histories with one read corrupted are rejected")
    for seed in range(1, 11):
        history = simulated_history(seed, 300, processes=rng_processes(seed))
        reads = [o for o in history if o.op == "GET" and o.status == "ok"]
        victim = random.Random(seed).choice(reads[len(reads) // 2:])
        victim.result = 999999
        start = time.monotonic()
        result = check_history(history)
        check(not result.ok and result.failures()[0].stuck is victim,
              f"seed {seed}: a GET answering a value never written is the op found "
              f"({time.monotonic() - start:.2f} s)")


def rng_processes(seed):
    return 2 + seed % 7


def main(opt):
    hand_made()
    simulated()


if __name__ == "__main__":
    sys.exit(harness.run(main, harness.parse_args(__doc__)))

"""lincheck.py - a linearizability checker for raftkv histories.

The model is one key holding nil or an integer, with four operations:

    SET v  -> "OK"          the key becomes v
    GET    -> v or None     the key is unchanged
    INCR   -> new value     nil counts as 0
    DEL    -> 1 or 0        1 if the key existed; the key becomes nil

Keys are independent, so a history is linearizable exactly when each key's
sub-history is (P-compositionality, Herlihy and Wing): check_history() splits
the history by key and checks each part on its own.

Each part is checked with a Wing-Gong-Lowe style search for a linearization,
run breadth first over configurations (ok ops linearized, value, info ops
used), one layer per ok op, with dominated configurations dropped (see
_Search): a history of thousands of ops a key and a handful of concurrent
clients takes about a second, accepted or not.

An operation is a dict (or any object with these attributes):

    process, op ("SET" | "GET" | "INCR" | "DEL"), key, arg (SET's value),
    invoke_time, complete_time, result, status ("ok" | "fail" | "info")

"fail" operations certainly did not happen and are dropped. "info" operations
may or may not have happened: their return is at +infinity and any output is
accepted, so each may take effect anywhere after its invoke, or never. An
info GET changes nothing and is dropped.

Run as a program, it checks a history file written by jepsen.py
--keep-history (one JSON operation a line):

    python3 tests/jepsen/lincheck.py HISTORY.jsonl
"""
import json
import math
import sys

OPS = ("SET", "GET", "INCR", "DEL")
STATUSES = ("ok", "fail", "info")


class Op:
    """One client operation, as recorded by the runner."""

    __slots__ = ("process", "op", "key", "arg", "invoke_time", "complete_time", "result",
                 "status")

    def __init__(self, process, op, key, arg=None, invoke_time=0.0, complete_time=0.0,
                 result=None, status="ok"):
        if op not in OPS:
            raise ValueError(f"unknown op {op!r} (expected one of {', '.join(OPS)})")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r} (expected one of {', '.join(STATUSES)})")
        self.process = process
        self.op = op
        self.key = key
        self.arg = arg
        self.invoke_time = invoke_time
        self.complete_time = complete_time
        self.result = result
        self.status = status

    @classmethod
    def coerce(cls, value):
        """An Op from an Op, a dict with the fields above, or any object with them."""
        if isinstance(value, cls):
            return value
        get = value.get if isinstance(value, dict) else lambda name: getattr(value, name, None)
        return cls(get("process"), get("op"), get("key"), get("arg"), get("invoke_time"),
                   get("complete_time"), get("result"), get("status") or "ok")

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def describe(self, t0=0.0):
        """One line: process, times relative to t0, the call and its outcome."""
        call = f"{self.op} {self.arg}" if self.op == "SET" else self.op
        end = "      ..." if self.status == "info" else f"{self.complete_time - t0:9.4f}"
        if self.status == "ok":
            outcome = f"-> {'nil' if self.result is None else self.result}"
        elif self.status == "info":
            outcome = f"-> ? (info{': ' + str(self.result) if self.result else ''})"
        else:
            outcome = f"-> failed{' (' + str(self.result)[:48] + ')' if self.result else ''}"
        return f"p{self.process:<4} {self.invoke_time - t0:9.4f} {end}  {call:<14} {outcome}"


# ---------------------------------------------------------------- the model


def step(state, op):
    """Apply op to the register's state: (accepted, new state). Info ops accept
    any output; ok ops only the one the model gives."""
    kind = op.op
    if kind == "SET":
        return (op.status == "info" or op.result == "OK"), op.arg
    if kind == "GET":
        return op.result == state, state
    if kind == "INCR":
        new = (state or 0) + 1
        return (op.status == "info" or op.result == new), new
    # DEL
    return (op.status == "info" or op.result == (0 if state is None else 1)), None


# ---------------------------------------------------------------- the search


class KeyResult:
    """The verdict for one key. When not linearizable: the op whose return the
    search could not get past, the most ops it ever linearized, the states it
    could be in there, and a readable excerpt of the history around that op."""

    def __init__(self, key, ok, ops, linearized=0, stuck=None, states=(), order=(), failed=()):
        self.key = key
        self.ok = ok
        self.ops = ops
        self.failed = list(failed)
        self.linearized = linearized
        self.stuck = stuck
        self.states = sorted(set(states), key=lambda s: (s is not None, s or 0))
        self.order = list(order)

    def excerpt(self, before=8, after=4):
        """The key, the ops around the point where the search could not go on
        (ops overlapping the stuck one, a few before and after), each marked
        '*' if the longest linearization found had taken it, '!' for the stuck
        op, and the last steps of that linearization."""
        if self.ok:
            return f"key {self.key!r}: linearizable ({len(self.ops)} ops)"
        # Failed ops were left out of the search, but one may be the culprit
        # (a write reported failed that did happen): the excerpt shows them.
        t0 = min(op.invoke_time for op in self.ops)
        stuck = self.stuck
        by_invoke = sorted(self.ops, key=lambda op: op.invoke_time)
        at = by_invoke.index(stuck)
        window = [op for op in by_invoke if op.status == "ok" and
                  op.invoke_time <= stuck.complete_time and op.complete_time >= stuck.invoke_time]
        window += by_invoke[max(0, at - before):at + after + 1]
        taken = set(map(id, self.order))
        states = ", ".join("nil" if s is None else str(s) for s in self.states)
        low, high = min(op.invoke_time for op in window), max(op.invoke_time for op in window)
        window += [op for op in self.failed if low <= op.invoke_time <= high]
        lines = [f"key {self.key!r}: not linearizable",
                 f"  the search linearized at most {self.linearized} of the key's ok ops, then "
                 f"could not place:",
                 f"    {stuck.describe(t0)}",
                 f"  the key's value could only be: {states}",
                 "  ops around it (times in s from the key's first op; * = in the longest "
                 "linearization, ! = the op it could not place, x = reported failed):",
                 f"         {'process':<6}{'invoke':>8} {'complete':>9}  call"]
        for op in sorted({id(op): op for op in window}.values(), key=lambda op: op.invoke_time):
            mark = "!" if op is stuck else ("*" if id(op) in taken else
                                            "x" if op.status == "fail" else " ")
            lines.append(f"    {mark}    {op.describe(t0)}")
        if self.order:
            lines.append("  the longest linearization ended with:")
            for op in self.order[-6:]:
                lines.append(f"         {op.describe(t0)}")
        return "\n".join(lines)


def check_key(key, ops):
    """Wing-Gong-Lowe search over one key's ops: a KeyResult."""
    return _Search(key, ops).run()


class _Infos:
    """A key's info ops, by kind and in invoke order. Identical info ops
    (INCRs, DELs) are interchangeable once invoked, so a search takes the
    earliest unused ones: those used are always the first few of each list,
    and a count says how many.

    A SET is anonymous when no ok op could see its value, even after every
    info INCR (no GET of v..v+k, no INCR to v+1..v+k+1): all it can do is make
    the key exist, and any anonymous SET does that as well as another."""

    def __init__(self, ops):
        self.ops = ops
        infos = sorted((i for i, op in enumerate(ops) if op.status == "info"),
                       key=lambda i: ops[i].invoke_time)
        self.incrs = [i for i in infos if ops[i].op == "INCR"]
        self.dels = [i for i in infos if ops[i].op == "DEL"]
        seen = set()
        for op in ops:
            if op.status == "ok" and isinstance(op.result, int) and op.op in ("GET", "INCR"):
                top = op.result - (op.op == "INCR")
                seen.update(range(top - len(self.incrs), top + 1))
        self.sets = [i for i in infos if ops[i].op == "SET" and ops[i].arg in seen]
        self.anonymous = [i for i in infos if ops[i].op == "SET" and ops[i].arg not in seen]
        self.sets_by_value = {}
        for i in self.sets:
            self.sets_by_value.setdefault(ops[i].arg, []).append(i)


class _Avail:
    """The info ops one configuration may still use before an ok op: unused,
    and invoked by the frontier (the earliest return still to come)."""

    __slots__ = ("infos", "used", "n_incrs", "n_dels", "frontier")

    def __init__(self, infos, used, n_incrs, n_dels, frontier):
        self.infos = infos
        self.used = used
        self.n_incrs = n_incrs
        self.n_dels = n_dels
        self.frontier = frontier

    def incrs(self, j):
        """The next j INCRs, or None if fewer are available."""
        chosen = self.infos.incrs[self.n_incrs:self.n_incrs + j]
        if len(chosen) < j or (j and self.infos.ops[chosen[-1]].invoke_time > self.frontier):
            return None
        return tuple(chosen)

    def dele(self):
        """The next DEL as a 1-tuple, or None."""
        dels = self.infos.dels
        if self.n_dels < len(dels) and self.infos.ops[dels[self.n_dels]].invoke_time <= self.frontier:
            return (dels[self.n_dels],)
        return None

    def set_of(self, value):
        """An unused SET of value as a 1-tuple, or None."""
        for i in self.infos.sets_by_value.get(value, ()):
            if not self.used >> i & 1 and self.infos.ops[i].invoke_time <= self.frontier:
                return (i,)
        return None

    def makers(self):
        """The minimal ways to make a missing key exist: the earliest unused
        anonymous SET if one is available (it is good for nothing else), or
        else one INCR or any one SET whose value some op could see."""
        ops = self.infos.ops
        for i in self.infos.anonymous:
            if not self.used >> i & 1:
                if ops[i].invoke_time <= self.frontier:
                    return [(i,)]
                break
        incr = self.incrs(1)
        return ([incr] if incr else []) + [
            (i,) for i in self.infos.sets
            if not self.used >> i & 1 and ops[i].invoke_time <= self.frontier]


def _blocks_to(target, state, avail):
    """Every minimal block of info ops turning state into target: nothing, a
    DEL, INCRs, a DEL and INCRs, or a SET and INCRs."""
    if target == state and (target is None) == (state is None):
        return [()]
    if target is None:
        block = avail.dele()
        return [block] if block else []
    if not isinstance(target, int):
        return []
    blocks = []
    if state is not None or target >= 1:
        block = avail.incrs(target - (state or 0)) if target > (state or 0) else None
        if block:
            blocks.append(block)
    if state is not None and target >= 1:
        dele, incrs = avail.dele(), avail.incrs(target)
        if dele and incrs:
            blocks.append(dele + incrs)
    named = avail.infos.sets_by_value
    for j in range(len(avail.infos.incrs) - avail.n_incrs + 1):
        if target - j in named:
            incrs = avail.incrs(j)
            if incrs is None:
                break
            block = avail.set_of(target - j)
            if block:
                blocks.append(block + incrs)
    return blocks


def _blocks_for(op, state, avail):
    """Every minimal block of info ops after which ok op gives its recorded result."""
    if op.op == "SET":
        return [()]
    if op.op == "GET":
        return _blocks_to(op.result, state, avail)
    if op.op == "INCR":
        if not isinstance(op.result, int):
            return []
        blocks = _blocks_to(op.result - 1, state, avail)
        return blocks + _blocks_to(None, state, avail) if op.result == 1 else blocks
    if op.result == 0:
        return _blocks_to(None, state, avail)
    if op.result != 1:
        return []
    if state is not None:
        return [()]
    return avail.makers()


class _Search:
    """The search for one key: breadth first, one layer per ok op linearized
    (as Knossos's linear checker does).

    A configuration is (ok ops linearized, the value, info ops used). From
    one, the ok ops that may come next are those not linearized whose call
    precedes the frontier, the earliest return of an ok op not linearized.

    Info ops are not placed on their own: trying every place for each of them
    explodes. Instead an ok op may be preceded by the few info ops that make
    it possible (a block): to read 7, the info SET 7, or an info SET 5 and two
    info INCRs. Any linearization can be rewritten this way: an info op either
    leads to the value the next ok op needs, or can be dropped, since every
    ok op's outcome fixes the value after it. An info op may join a block once
    invoked before the frontier; info ops never used never happened.

    Within a layer, a configuration is dropped when another with the same ok
    ops and value used a subset of its info ops: more info ops left can only
    give more choices.
    """

    def __init__(self, key, ops):
        self.key = key
        self.failed = [op for op in ops if op.status == "fail"]
        self.ops = [op for op in ops
                    if op.status != "fail" and not (op.status == "info" and op.op == "GET")]
        self.ok = sorted((i for i, op in enumerate(self.ops) if op.status == "ok"),
                         key=lambda i: self.ops[i].invoke_time)
        self.infos = _Infos(self.ops)

    def next_calls(self, done_bits):
        """(positions in self.ok that may come next, the frontier op)."""
        ops, ok = self.ops, self.ok
        p = (~done_bits & (done_bits + 1)).bit_length() - 1  # first not linearized
        frontier = None
        calls = []
        while p < len(ok):
            op = ops[ok[p]]
            if frontier is not None and op.invoke_time > frontier.complete_time:
                break
            if not done_bits >> p & 1:
                calls.append(p)
                if frontier is None or op.complete_time < frontier.complete_time:
                    frontier = op
            p += 1
        return calls, frontier

    def run(self):
        ops, ok, infos = self.ops, self.ok, self.infos
        # layer: {(done bits over self.ok, value): [(info used bits, INCRs used,
        #          DELs used, path back: (previous path, op, block))]}
        layer = {(0, None): [(0, 0, 0, None)]}
        for _ in range(len(ok)):
            following = {}
            for (done_bits, state), entries in layer.items():
                calls, frontier = self.next_calls(done_bits)
                for used, n_incrs, n_dels, path in entries:
                    avail = _Avail(infos, used, n_incrs, n_dels, frontier.complete_time)
                    for p in calls:
                        op = ops[ok[p]]
                        for block in _blocks_for(op, state, avail):
                            value = state
                            new_used, new_incrs, new_dels = used, n_incrs, n_dels
                            for j in block:
                                value = step(value, ops[j])[1]
                                new_used |= 1 << j
                                new_incrs += ops[j].op == "INCR"
                                new_dels += ops[j].op == "DEL"
                            value = step(value, op)[1]
                            kept = following.setdefault((done_bits | 1 << p, value), [])
                            if any(e[0] & ~new_used == 0 for e in kept):
                                continue
                            kept[:] = [e for e in kept if new_used & ~e[0] != 0]
                            kept.append((new_used, new_incrs, new_dels, (path, ok[p], block)))
            if not following:
                return self.stuck(layer)
            layer = following
        return KeyResult(self.key, True, ops)

    def stuck(self, layer):
        """The verdict when no configuration of the layer can go on: the
        frontier op most of them could not get past, the values they had, and
        one of their linearizations."""
        ops = self.ops
        fronts = {}
        for (done_bits, state), entries in layer.items():
            frontier = self.next_calls(done_bits)[1]
            fronts.setdefault(id(frontier), (frontier, set(), entries[0][3]))[1].add(state)
        frontier, states, path = max(fronts.values(), key=lambda f: len(f[1]))
        order = []
        while path is not None:
            path, i, block = path
            order[:0] = [ops[j] for j in block + (i,)]
        done = bin(next(iter(layer))[0]).count("1")
        return KeyResult(self.key, False, ops, done, frontier, states, order, self.failed)


class Result:
    """The verdict for a whole history: ok, and per key a KeyResult."""

    def __init__(self, keys):
        self.keys = keys
        self.ok = all(r.ok for r in keys.values())

    def failures(self):
        return [r for r in self.keys.values() if not r.ok]

    def report(self):
        if self.ok:
            return f"linearizable ({sum(len(r.ops) for r in self.keys.values())} ops, " \
                   f"{len(self.keys)} keys)"
        return "\n".join(r.excerpt() for r in self.failures())


def check_history(history):
    """Check a history (Ops or dicts) key by key: a Result."""
    by_key = {}
    for value in history:
        op = Op.coerce(value)
        by_key.setdefault(op.key, []).append(op)
    return Result({key: check_key(key, ops) for key, ops in sorted(by_key.items())})


def load_history(path):
    """A history file: one JSON op a line; complete_time null means +inf."""
    ops = []
    with open(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                if d.get("complete_time") is None:
                    d["complete_time"] = math.inf
                ops.append(Op.coerce(d))
    return ops


def main(argv):
    if len(argv) != 2:
        print("usage: lincheck.py HISTORY.jsonl", file=sys.stderr)
        return 2
    result = check_history(load_history(argv[1]))
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Constructive scheduling: serial schedule generation with dispatching rules.

The same generator serves three purposes:
* a fast first schedule (the answer when CP-SAT finds none in time),
* a warm start (hint) for CP-SAT,
* the decoder of the LNS: given a priority list and fixed modes it rebuilds a
  full schedule that respects every constraint it can see (calendars, setups,
  pools, materials, precedences). Max lags and deadlines it can only check, so
  the result says whether it is feasible.

Ready operations are kept in a heap keyed by their earliest possible start and
the rule's priority; keys are refreshed lazily (a popped operation whose start
moved later is pushed back), which gives non-delay-like schedules in
O(n log n) for machines without insertion.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right, insort
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from paichan.solver.compiled import CProblem
from paichan.solver.timing import place

RULES = ("mwkr", "spt", "edd", "wspt", "fifo")
MAX_REPUSH = 3  # times an operation's heap key is refreshed before it is placed anyway


@dataclass(slots=True)
class Timetable:
    """A full assignment: per operation mode, start, end and setup before."""

    mode: list[int]
    start: list[int]
    end: list[int]
    setup: list[int]
    feasible: bool
    violations: list[str]


class _MachineState:
    """Busy intervals of one machine, for append or gap-insertion placement."""

    __slots__ = ("busy", "last_end", "last_family")

    def __init__(self, family: str | None) -> None:
        self.busy: list[tuple[int, int]] = []
        self.last_end = 0
        self.last_family = family


def _remaining_work(cp: CProblem) -> list[float]:
    """Minimal work from each operation to the end of its order (incl. itself)."""
    rem = [0.0] * len(cp.ops)
    for i in reversed(cp.topo):
        c = cp.ops[i]
        d = min(m.duration for m in c.modes)
        rem[i] = d + max((rem[s] for s in c.succs), default=0.0)
    return rem


def priorities(cp: CProblem, rule: str) -> list[float]:
    """Static priority per operation (smaller is more urgent)."""
    rem = _remaining_work(cp)
    out = [0.0] * len(cp.ops)
    for c in cp.ops:
        d = min(m.duration for m in c.modes)
        due = cp.order_due[c.order]
        w = max(cp.order_weight[c.order], 1)
        if rule == "mwkr":
            out[c.idx] = -rem[c.idx]
        elif rule == "spt":
            out[c.idx] = d
        elif rule == "edd":
            out[c.idx] = (due if due is not None else cp.horizon) - rem[c.idx]
        elif rule == "wspt":
            out[c.idx] = d / w - rem[c.idx] / (10 * w)
        elif rule == "fifo":
            out[c.idx] = c.release * 1_000_000 + c.idx
        else:
            raise ValueError(f"unknown dispatching rule '{rule}'")
    return out


def generate(
    cp: CProblem,
    priority: Sequence[float],
    modes: Sequence[int] | None = None,
    insertion: bool | None = None,
    min_start: Sequence[int] | None = None,
) -> Timetable:
    """Schedule every operation; ``modes`` fixes each operation's mode if given."""
    n = len(cp.ops)
    if insertion is None:
        insertion = n <= 5000 and not cp.has_setups
    win_ends = [[e for _, e in m.windows] for m in cp.machines]
    pool_win_ends = [[e for _, e in p.windows] for p in cp.pools]
    mstate = [_MachineState(m.initial_family) for m in cp.machines]
    pool_use = [PoolProfile() for _ in cp.pools]
    ledgers = [MaterialLedger(m.stock, m.receipts) for m in cp.materials]
    mode = [-1] * n
    start = [0] * n
    end = [0] * n
    setup = [0] * n
    violations: list[str] = []
    order_group: dict[int, str] = {}
    feasible_groups = _feasible_groups(cp)

    def commit(i: int, k: int, s: int, e: int, su: int) -> None:
        c = cp.ops[i]
        mode[i], start[i], end[i], setup[i] = k, s, e, su
        md = c.modes[k]
        if cp.order_one_group[c.order] and md.group is not None:
            order_group.setdefault(c.order, md.group)
        st = mstate[md.machine]
        if e > s:
            if insertion:
                insort(st.busy, (s, e))
            if e >= st.last_end:
                st.last_end = e
                st.last_family = c.family
        for p, amount in md.secondary:
            pool_use[p].add(s, e, amount)
        for mat, q in c.materials:
            ledgers[mat].add(s, q)

    # Work already started or done is fixed first.
    for c in cp.ops:
        if c.fixed:
            assert c.fixed_mode is not None and c.fixed_start is not None and c.fixed_end is not None
            commit(c.idx, c.fixed_mode, c.fixed_start, c.fixed_end, 0)

    indeg = [0] * n
    for c in cp.ops:
        indeg[c.idx] = sum(1 for p, _, _ in c.preds if not cp.ops[p].fixed) if not c.fixed else 0
    heap: list[tuple[int, float, int]] = []
    for c in cp.ops:
        if not c.fixed and indeg[c.idx] == 0:
            heapq.heappush(heap, (_ready_time(cp, c.idx, end, min_start), priority[c.idx], c.idx))

    def best_placement(i: int) -> tuple[int, int, int, int]:
        c = cp.ops[i]
        t0 = _ready_time(cp, i, end, min_start)
        best: tuple[int, int, int, int] | None = None
        given = modes is not None and modes[i] >= 0  # -1: the reference has no mode for it (e.g. a new order)
        choices: Sequence[int] = [modes[i]] if given else range(len(c.modes))  # type: ignore[index]
        if not given and cp.order_one_group[c.order]:
            group = order_group.get(c.order)
            allowed = {group} if group is not None else feasible_groups[c.order]
            choices = [k for k in choices if c.modes[k].group is None or c.modes[k].group in allowed] or list(choices)
        for k in choices:
            md = c.modes[k]
            m = cp.machines[md.machine]
            st = mstate[md.machine]
            t = t0
            for _ in range(1000):
                t_prev = t
                if insertion:
                    su = 0
                    t = gap_start(st.busy, t, md.duration, m.windows, win_ends[md.machine], c.span)
                else:
                    su = m.setup_time(st.last_family, c.family) if m.has_setups else 0
                    t = max(t, st.last_end + su)
                s, e = place(m.windows, win_ends[md.machine], t, md.duration, c.span)
                for p, amount in md.secondary:
                    pool = cp.pools[p]
                    s2 = pool_use[p].earliest(pool.capacity, amount, s, e - s)
                    s2, _ = place(pool.windows, pool_win_ends[p], s2, e - s, False)
                    s = max(s, s2)
                for mat, q in c.materials:
                    s = max(s, ledgers[mat].earliest(q, s))
                t = s
                if t == t_prev:
                    break
            s, e = place(m.windows, win_ends[md.machine], t, md.duration, c.span)
            key = (e, md.duration, s, k)
            if best is None or key < (best[1], c.modes[best[3]].duration, best[0], best[3]):
                best = (s, e, su, k)
        assert best is not None
        return best

    repushed = [0] * n
    while heap:
        t_key, prio, i = heapq.heappop(heap)
        s, e, su, k = best_placement(i)
        if heap and s > t_key and (s, prio) > heap[0][:2] and repushed[i] < MAX_REPUSH:
            repushed[i] += 1  # lazily refreshed key; capped so that large shops stay O(n log n)
            heapq.heappush(heap, (s, prio, i))
            continue
        commit(i, k, s, e, su)
        for j in cp.ops[i].succs:
            if cp.ops[j].fixed:
                continue
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(heap, (_ready_time(cp, j, end, min_start), priority[j], j))

    violations.extend(record_setups(cp, mode, start, end, setup))
    for o, ids in enumerate(cp.order_ops):
        if cp.order_one_group[o]:
            used = {cp.ops[i].modes[mode[i]].group for i in ids} - {None}
            if len(used) > 1:
                violations.append(f"order {cp.order_ids[o]} spans groups {sorted(used)}")  # type: ignore[type-var]
    for c in cp.ops:
        if c.pinned:  # a planner's pin does not wait for its predecessors: they must have ended in time
            for p, lo, hi in c.preds:
                if start[c.idx] - end[p] < lo or (hi is not None and start[c.idx] - end[p] > hi):
                    violations.append(f"pinned {c.id} at {start[c.idx]} is not after {cp.ops[p].id} + {lo}")
        if c.fixed:
            continue
        for p, _lo, hi in c.preds:
            if hi is not None and start[c.idx] - end[p] > hi:
                violations.append(f"max lag {hi} after {cp.ops[p].id} exceeded by {c.id}")
        if c.deadline is not None and end[c.idx] > c.deadline:
            violations.append(f"order {cp.order_ids[c.order]} misses its deadline {c.deadline}")
    return Timetable(mode, start, end, setup, not violations, violations)


def record_setups(cp: CProblem, mode: list[int], start: list[int], end: list[int], setup: list[int]) -> list[str]:
    """Setup before each operation on a machine with setups, from the final sequence.

    Fixed (started/done) work was committed without one; planned work got it while
    being appended. Returns the places where the changeover does not fit.
    """
    out: list[str] = []
    seqs: dict[int, list[int]] = {}
    for c in cp.ops:
        m = c.modes[mode[c.idx]].machine
        if not cp.machines[m].has_setups:
            continue
        if end[c.idx] > start[c.idx]:
            seqs.setdefault(m, []).append(c.idx)
        else:
            setup[c.idx] = 0  # zero-duration work takes no machine time and needs no changeover
    for m, ids in seqs.items():
        mach = cp.machines[m]
        ids.sort(key=lambda i: (start[i], end[i]))
        prev_family, free = mach.initial_family, 0
        for i in ids:
            setup[i] = mach.setup_time(prev_family, cp.ops[i].family)
            if start[i] - setup[i] < free:
                out.append(f"setup of {cp.ops[i].id} on {mach.id} does not fit after the previous operation")
            prev_family, free = cp.ops[i].family, max(free, end[i])
    return out


def material_release(cp: CProblem, priority: Sequence[float]) -> list[int]:
    """Earliest start per operation when scarce material goes to the most urgent first.

    Consumers of each material, most urgent (smallest priority) first, are given the
    earliest time at which stock plus receipts cover their own demand and that of
    every more urgent consumer. Dispatching alone hands material to whoever is ready
    first; holding less urgent work back keeps it for the orders that are due.
    """
    ready = [0] * len(cp.ops)
    for mat in cp.materials:
        users = sorted(((priority[c.idx], c.idx, q) for c in cp.ops for mm, q in c.materials
                        if mm == mat.idx and not c.fixed))
        if not users:
            continue
        total_need = sum(q for _, _, q in users)
        if mat.stock + 1e-9 >= total_need:
            continue
        supply = [(0, mat.stock)] + [(t, q) for t, q in mat.receipts]
        k, level, need = 0, 0.0, 0.0
        for _, i, q in users:
            need += q
            while k < len(supply) and level + 1e-9 < need:
                level += supply[k][1]
                k += 1
            ready[i] = max(ready[i], supply[k - 1][0])
    return ready


def _feasible_groups(cp: CProblem) -> dict[int, set[str]]:
    """For one-group orders: the groups that have a mode for every operation."""
    out: dict[int, set[str]] = {}
    for o, ids in enumerate(cp.order_ops):
        if not cp.order_one_group[o]:
            continue
        groups: set[str] | None = None
        for i in ids:
            g = {md.group for md in cp.ops[i].modes if md.group is not None}
            if g:
                groups = g if groups is None else groups & g
        out[o] = groups or set()
    return out


def _ready_time(cp: CProblem, i: int, end: list[int], min_start: Sequence[int] | None = None) -> int:
    c = cp.ops[i]
    t = c.release if min_start is None else max(c.release, min_start[i])
    for p, lo, _ in c.preds:
        t = max(t, end[p] + lo)
    return t


def gap_start(
    busy: list[tuple[int, int]], t: int, d: int, windows: list[tuple[int, int]], win_ends: list[int], span: bool
) -> int:
    """Earliest start >= t whose calendar placement fits between busy intervals."""
    while True:
        s, e = place(windows, win_ends, t, d, span)
        if e == s:
            return s
        j = bisect_right(busy, (s, 1 << 62)) - 1
        if j >= 0 and busy[j][1] > s:
            t = busy[j][1]
            continue
        if j + 1 < len(busy) and busy[j + 1][0] < e:
            t = busy[j + 1][1]
            continue
        return s


class PoolProfile:
    """A pool's usage over time as a step function: change points and the level after each.

    ``earliest`` and ``add`` touch only the steps around the query, so placing n
    operations costs about O(n log n) rather than O(n^2) per pool.
    """

    __slots__ = ("levels", "times")

    def __init__(self) -> None:
        self.times: list[int] = [-(1 << 62)]  # level[k] holds on [times[k], times[k+1])
        self.levels: list[int] = [0]

    def earliest(self, cap: int, amount: int, t: int, d: int) -> int:
        """Earliest start >= t with ``amount`` free for ``d`` time units."""
        if d == 0:
            return t
        c = t
        k = bisect_right(self.times, c) - 1
        while True:
            j = k
            while j < len(self.times) and (j == k or self.times[j] < c + d):
                if self.levels[j] + amount > cap:
                    break
                j += 1
            else:
                return c
            c = self.times[j + 1] if j + 1 < len(self.times) else c  # after the step that is too full
            k = j + 1

    def _split(self, t: int) -> int:
        k = bisect_right(self.times, t) - 1
        if self.times[k] != t:
            self.times.insert(k + 1, t)
            self.levels.insert(k + 1, self.levels[k])
            k += 1
        return k

    def add(self, s: int, e: int, amount: int) -> None:
        if e <= s:
            return
        i = self._split(s)
        j = self._split(e)
        for k in range(i, j):
            self.levels[k] += amount


class MaterialLedger:
    """Stock, receipts and what placed work consumes, checked just before each receipt.

    Receipts come at fixed times and work consumes at its start, so the stock can only
    run short just before a receipt (or at the end): work starting before receipt time
    ``r`` must fit in what arrived before ``r``. A query costs O(receipts^2), whatever the
    number of consumers.
    """

    __slots__ = ("before", "times", "total", "total_supply", "used")

    def __init__(self, stock: float, receipts: list[tuple[int, float]]) -> None:
        self.times = sorted({t for t, _ in receipts})
        self.before = [stock + sum(q for t, q in receipts if t < r) for r in self.times]
        self.total_supply = stock + sum(q for _, q in receipts)
        self.used = [0.0] * len(self.times)  # consumption starting before times[j]
        self.total = 0.0

    def _fits(self, q: float, c: int) -> bool:
        if self.total + q > self.total_supply + 1e-9:
            return False
        j = bisect_right(self.times, c)  # receipts after c: their checkpoint sees this consumption
        return all(self.used[k] + q <= self.before[k] + 1e-9 for k in range(j, len(self.times)))

    def earliest(self, q: float, t: int) -> int:
        """Earliest start >= t at which consuming q never drives the stock negative."""
        candidates = [t, *self.times[bisect_right(self.times, t):]]
        return next((c for c in candidates if self._fits(q, c)), candidates[-1])

    def add(self, c: int, q: float) -> None:
        for k in range(bisect_right(self.times, c), len(self.times)):
            self.used[k] += q
        self.total += q


def generate_repaired(
    cp: CProblem,
    priority: Sequence[float],
    modes: Sequence[int] | None = None,
    insertion: bool | None = None,
    rounds: int = 25,
    min_start: Sequence[int] | None = None,
) -> Timetable:
    """:func:`generate`, re-run with predecessors delayed until max lags hold.

    A successor that starts too long after its predecessor makes the
    predecessor start later (just in time) on the next pass; bounded rounds.
    """
    has_max_lag = any(hi is not None for c in cp.ops for _, _, hi in c.preds)
    tt = generate(cp, priority, modes, insertion, min_start=min_start)
    if not has_max_lag:
        return tt
    extra = list(min_start) if min_start is not None else [0] * len(cp.ops)
    for _ in range(rounds):
        if tt.feasible:
            return tt
        changed = False
        for c in cp.ops:
            for p, _lo, hi in c.preds:
                if hi is not None and not cp.ops[p].fixed and tt.start[c.idx] - tt.end[p] > hi:
                    need = tt.start[c.idx] - hi - (tt.end[p] - tt.start[p])
                    if need > extra[p]:
                        extra[p] = need
                        changed = True
        if not changed:
            return tt
        tt = generate(cp, priority, modes, insertion, min_start=extra)
    return tt


def construct(cp: CProblem, rules: Sequence[str] = RULES) -> Iterator[tuple[str, Timetable]]:
    """Run several dispatching rules, yielding each complete timetable as soon as it exists.

    With scarce material, the due-date rules also run with material allocated by
    urgency (:func:`material_release`), as ``edd+mat`` and ``wspt+mat``.
    """
    scarce = any(c.materials for c in cp.ops) and cp.materials
    dated = any(d is not None for d in cp.order_due)
    # with due dates the due-date rules come first: a caller short of time stops after any rule
    order = sorted(rules, key=lambda r: r not in ("edd", "wspt")) if dated else list(rules)
    for rule in order:
        prio = priorities(cp, rule)
        if scarce and rule in ("edd", "wspt"):
            ready = material_release(cp, prio)
            if any(ready):
                yield f"{rule}+mat", generate_repaired(cp, prio, min_start=ready)
        yield rule, generate_repaired(cp, prio)

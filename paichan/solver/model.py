"""The CP-SAT model: variables, constraints and objective, built in that order.

Modelling choices (see docs/ARCHITECTURE.md for the why):
* one optional interval per (operation, mode) plus a master start/end per
  operation; exactly one mode is present;
* per machine a no-overlap over its intervals; calendar breaks are fixed
  intervals in a second no-overlap that holds only the operations that may
  not span a break. Operations that may span a break get, per break, a
  before / after / across choice, and stretch by the breaks they cross;
* sequence-dependent setups by a circuit per machine (arc literals give
  the successor and carry the setup time);
* secondary resources (pools) by cumulative constraints; materials by a
  reservoir per material (consumption at operation start);
* work already started or done is fixed; with ``explain=True`` deadlines,
  max lags, material supplies and fixed work are guarded by assumption
  literals so an infeasible core can be reported in words.

``free`` restricts the model to a subset of operations (LNS neighbourhoods):
every other operation is pinned to its time in ``base`` and enters only as a
fixed interval where it shares a resource with a free one.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from ortools.sat.python import cp_model

from paichan.domain import Objective, ObjectiveName
from paichan.solver.compiled import CProblem
from paichan.solver.heuristic import Timetable

LinearExpr = cp_model.LinearExprT


def lsum(items: Iterable[LinearExpr]) -> LinearExpr:
    """Sum of CP-SAT expressions and integers.

    Python's ``sum`` chains ``__add__``/``__radd__`` of whatever ortools returned (an
    ``IntConstant`` for ``0 * x`` in some releases, which cannot be added to a sum);
    ``LinearExpr.sum`` takes the mixed list as it is.
    """
    exprs: list[LinearExpr] = []
    const = 0
    for x in items:
        if isinstance(x, int):
            const += x
        else:
            exprs.append(x)
    if not exprs:
        return const
    return cp_model.LinearExpr.sum(exprs) + const if const else cp_model.LinearExpr.sum(exprs)


@dataclass
class OpVars:
    start: cp_model.IntVar
    end: cp_model.IntVar
    intervals: list[cp_model.IntervalVar | None]  # per mode (None: mode impossible)
    presence: list[cp_model.IntVar | int]  # per mode; 1 for a single mode
    durations: list[cp_model.IntVar | int]  # per mode (variable for span ops)


@dataclass
class Built:
    """A built model and the handles needed to read, hint and explain it."""

    model: cp_model.CpModel
    ops: dict[int, OpVars]
    terms: dict[ObjectiveName, LinearExpr]
    arcs: dict[int, list[tuple[int, int, cp_model.IntVar, int]]]  # machine -> (from op|-1, to op|-1, lit, setup)
    setup_vars: dict[int, LinearExpr]  # setup before each op (machines with setups)
    assumptions: dict[int, str] = field(default_factory=dict)  # literal index -> reason text
    horizon: int = 0
    # literals that state a time comparison, so that a timetable hints them too:
    # (literal, op, "start>=" | "end<=", time)
    thresholds: list[tuple[cp_model.IntVar, int, str, int]] = field(default_factory=list)
    calendar_used: list[tuple[cp_model.IntVar, int, list[int]]] = field(default_factory=list)  # (lit, op, modes)


class ModelBuilder:
    """Builds the CP-SAT model of a (sub)problem."""

    def __init__(
        self,
        cp: CProblem,
        horizon: int,
        free: set[int] | None = None,
        base: Timetable | None = None,
        reference: Timetable | None = None,
        explain: bool = False,
        ub: list[int] | None = None,
    ) -> None:
        self.cp = cp
        self.horizon = horizon
        self.ub = ub  # per operation: no improving schedule ends it later (see end_bounds)
        self.free = free
        self.base = base
        self.reference = reference
        self.explain = explain
        self.m = cp_model.CpModel()
        self.built = Built(self.m, {}, {}, {}, {}, horizon=horizon)

    # ------------------------------------------------------------------ helpers
    def _guard(self, reason: str) -> cp_model.IntVar | None:
        """An assumption literal enforcing a relaxable constraint (explain mode)."""
        if not self.explain:
            return None
        lit = self.m.new_bool_var(reason)
        self.m.add_assumption(lit)
        self.built.assumptions[lit.index] = reason
        return lit

    def _start_bounds(self, i: int) -> tuple[int, int]:
        """The domain bounds of an operation's start variable (or its pinned start)."""
        v = self.built.ops.get(i)
        if v is None:
            s = self._pinned(i)[1]
            return s, s
        dom = list(v.start.proto.domain)  # ortools' repeated field: no negative indexing
        return dom[0], dom[len(dom) - 1]

    def estimate(self) -> int:
        """About how many literals the model needs (modes, break choices), known before building it.

        Without an incumbent to cut the horizon, span-able operations over a long horizon
        can need hundreds of thousands of break literals: building that alone can take
        longer than the caller's time limit.
        """
        cp = self.cp
        bounds = {m.calendar: ([s for s, _ in m.windows], [e for _, e in m.windows]) for m in cp.machines}
        n = 0
        for c in cp.ops:
            if not self._in_model(c.idx):
                continue
            n += len(c.modes) + 2
            if c.span and not c.fixed:
                lo, hi = c.release, max(c.release, self._end_ub(c.idx))
                for cal in {cp.machines[md.machine].calendar for md in c.modes if md.duration > 0}:
                    starts, ends = bounds[cal]
                    n += 2 * max(0, bisect_left(starts, hi) - bisect_right(ends, lo))
        on_machine: dict[int, int] = {}  # setup circuits: an arc literal per ordered pair of a machine's operations
        for c in cp.ops:
            if self._in_model(c.idx):
                for md in c.modes:
                    if md.duration > 0 and cp.machines[md.machine].has_setups:
                        on_machine[md.machine] = on_machine.get(md.machine, 0) + 1
        return n + sum(k * k for k in on_machine.values())

    def _end_ub(self, i: int) -> int:
        return self.horizon if self.ub is None else max(0, min(self.horizon, self.ub[i]))

    def _in_model(self, i: int) -> bool:
        return self.free is None or i in self.free

    def _pinned(self, i: int) -> tuple[int, int, int]:
        """(mode, start, end) of an operation fixed by base timetable or shop floor."""
        c = self.cp.ops[i]
        if c.fixed:
            assert c.fixed_mode is not None and c.fixed_start is not None and c.fixed_end is not None
            return c.fixed_mode, c.fixed_start, c.fixed_end
        assert self.base is not None
        return self.base.mode[i], self.base.start[i], self.base.end[i]

    # ---------------------------------------------------------------- variables
    def variables(self) -> None:
        cp, m = self.cp, self.m
        for c in cp.ops:
            if not self._in_model(c.idx):
                continue
            i = c.idx
            if c.fixed and not self.explain:
                k, s0, e0 = self._pinned(i)
                start = m.new_constant(s0)
                end = m.new_constant(e0)
                intervals: list[cp_model.IntervalVar | None] = [None] * len(c.modes)
                presence: list[cp_model.IntVar | int] = [0] * len(c.modes)
                durations: list[cp_model.IntVar | int] = [0] * len(c.modes)
                intervals[k] = m.new_fixed_size_interval_var(s0, e0 - s0, f"fix{i}")
                presence[k] = 1
                durations[k] = e0 - s0
                self.built.ops[i] = OpVars(start, end, intervals, presence, durations)
                continue
            lo = 0 if c.fixed else c.release
            hi = max(lo, self._end_ub(i))
            start = m.new_int_var(lo, hi, f"s{i}")
            end = m.new_int_var(lo, hi, f"e{i}")
            m.add(end >= start)
            intervals = []
            presence = []
            durations = []
            single = len(c.modes) == 1
            for k, md in enumerate(c.modes):
                windows = cp.machines[md.machine].windows
                if c.span and windows and md.duration > 0:
                    extra = sum(min(e, hi) - max(s, lo) for s, e in windows if e > lo and s < hi)
                    dur: cp_model.IntVar | int = m.new_int_var(md.duration, md.duration + max(0, extra), f"d{i}_{k}")
                else:
                    dur = md.duration
                if single:
                    lit: cp_model.IntVar | int = 1
                    iv = m.new_interval_var(start, dur, end, f"i{i}")
                else:
                    lit = m.new_bool_var(f"p{i}_{k}")
                    iv = m.new_optional_interval_var(start, dur, end, lit, f"i{i}_{k}")
                intervals.append(iv)
                presence.append(lit)
                durations.append(dur)
            if not single:
                m.add_exactly_one([p for p in presence if not isinstance(p, int)])
            self.built.ops[i] = OpVars(start, end, intervals, presence, durations)

    # -------------------------------------------------------------- constraints
    def constraints(self) -> None:
        self._fixed_work()
        self._dates()
        self._precedences()
        self._machines()
        self._spans()
        self._pools()
        self._materials()
        self._groups()

    def _groups(self) -> None:
        """Orders with ``one_group``: every operation's mode comes from one group (e.g. one line)."""
        cp, m = self.cp, self.m
        for o, ids in enumerate(cp.order_ops):
            if not cp.order_one_group[o]:
                continue
            chosen: dict[str, cp_model.IntVar] = {}
            for i in ids:
                for md in cp.ops[i].modes:
                    if md.group is not None and md.group not in chosen:
                        chosen[md.group] = m.new_bool_var(f"grp{o}_{md.group}")
            if len(chosen) <= 1:
                continue
            m.add_exactly_one(list(chosen.values()))
            for i in ids:
                if self._in_model(i):
                    v = self.built.ops[i]
                    for k, md in enumerate(cp.ops[i].modes):
                        if md.group is not None and not isinstance(v.presence[k], int):
                            m.add_implication(v.presence[k], chosen[md.group])
                        elif md.group is not None and v.presence[k] == 1:
                            m.add(chosen[md.group] == 1)
                else:
                    k, _, _ = self._pinned(i)
                    g = cp.ops[i].modes[k].group
                    if g is not None:
                        m.add(chosen[g] == 1)

    def _fixed_work(self) -> None:
        if not self.explain:
            return
        for c in self.cp.ops:
            if c.fixed and self._in_model(c.idx):
                k, s0, e0 = self._pinned(c.idx)
                v = self.built.ops[c.idx]
                what = "pinned by the planner" if c.pinned else "shop-floor actual"
                g = self._guard(f"operation {c.id} is {'pinned' if c.pinned else c.status.value} on "
                                f"{self.cp.machines[c.modes[k].machine].id} at {s0}..{e0} ({what})")
                assert g is not None
                self.m.add(v.start == s0).only_enforce_if(g)
                self.m.add(v.end == e0).only_enforce_if(g)
                if not isinstance(v.presence[k], int):
                    self.m.add(v.presence[k] == 1).only_enforce_if(g)

    def _dates(self) -> None:
        for c in self.cp.ops:
            if c.deadline is None or not self._in_model(c.idx) or c.fixed:
                continue
            v = self.built.ops[c.idx]
            g = self._guard(f"order {self.cp.order_ids[c.order]} must end by its deadline {c.deadline}")
            ct = self.m.add(v.end <= c.deadline)
            if g is not None:
                ct.only_enforce_if(g)

    def _endpoint(self, i: int) -> LinearExpr:
        if self._in_model(i):
            return self.built.ops[i].end
        return self._pinned(i)[2]

    def _startpoint(self, i: int) -> LinearExpr:
        if self._in_model(i):
            return self.built.ops[i].start
        return self._pinned(i)[1]

    def _precedences(self) -> None:
        for c in self.cp.ops:
            for p, lo, hi in c.preds:
                if not (self._in_model(c.idx) or self._in_model(p)):
                    continue
                if c.fixed and self.cp.ops[p].fixed:
                    continue
                s, e = self._startpoint(c.idx), self._endpoint(p)
                if isinstance(s, int) and isinstance(e, int):
                    continue
                self.m.add(s >= e + lo)
                if hi is not None:
                    g = self._guard(f"{c.id} must start within {hi} after {self.cp.ops[p].id} ends (max lag)")
                    ct = self.m.add(s <= e + hi)
                    if g is not None:
                        ct.only_enforce_if(g)

    def _machine_members(self) -> dict[int, list[tuple[int, int]]]:
        """machine -> [(op, mode)] for modes on it that take time, in the model or pinned there.

        Zero-duration work takes no machine time (and no setup): CP-SAT's no-overlap would
        still forbid a zero-size interval inside another one, so it stays out.
        """
        members: dict[int, list[tuple[int, int]]] = {}
        for c in self.cp.ops:
            if self._in_model(c.idx):
                for k, md in enumerate(c.modes):
                    if self.built.ops[c.idx].intervals[k] is not None and self._takes_time(c.idx, k):
                        members.setdefault(md.machine, []).append((c.idx, k))
        if self.free is not None:
            touched = set(members)
            for c in self.cp.ops:
                if not self._in_model(c.idx):
                    k, s, e = self._pinned(c.idx)
                    if c.modes[k].machine in touched and e > s:
                        members[c.modes[k].machine].append((c.idx, k))
        return members

    def _takes_time(self, i: int, k: int) -> bool:
        c = self.cp.ops[i]
        if c.fixed:
            _, s, e = self._pinned(i)
            return e > s
        return c.modes[k].duration > 0

    def _interval_of(self, i: int, k: int) -> cp_model.IntervalVar:
        if self._in_model(i):
            iv = self.built.ops[i].intervals[k]
            assert iv is not None
            return iv
        _, s, e = self._pinned(i)
        return self.m.new_fixed_size_interval_var(s, e - s, f"pin{i}")

    def _machines(self) -> None:
        cp, m = self.cp, self.m
        for mi, members in self._machine_members().items():
            mach = cp.machines[mi]
            intervals = {(i, k): self._interval_of(i, k) for i, k in members}
            if len(intervals) > 1:
                m.add_no_overlap(list(intervals.values()))
            rigid = [(i, k) for i, k in members if self._in_model(i) and not cp.ops[i].span and not cp.ops[i].fixed]
            if mach.windows and rigid:
                lo = min(cp.ops[i].release for i, _ in rigid)
                hi = max(self._end_ub(i) for i, _ in rigid)
                breaks = [
                    m.new_fixed_size_interval_var(s, e - s, f"brk{mi}_{s}")
                    for s, e in mach.windows
                    if e > lo and s < hi
                ]
                if breaks:
                    m.add_no_overlap([intervals[ik] for ik in rigid] + breaks)
            if mach.has_setups:
                self._setups(mi, members)

    def _spans(self) -> None:
        """Operations that may pause over breaks stretch by each break they cross.

        One set of choices per (operation, calendar) among its modes, binding only when
        a mode on that calendar is chosen: a break of a machine the operation does not
        run on must not constrain it. Per break two literals, ``before`` (ends by the
        break) and ``after`` (starts after it); neither means it runs across the break.
        """
        cp, m = self.cp, self.m
        for c in cp.ops:
            i = c.idx
            if not c.span or c.fixed or not self._in_model(i):
                continue
            v = self.built.ops[i]
            by_calendar: dict[int, list[int]] = {}
            for k, md in enumerate(c.modes):
                if md.duration > 0 and cp.machines[md.machine].windows:
                    by_calendar.setdefault(cp.machines[md.machine].calendar, []).append(k)
            lo, hi = c.release, max(c.release, self._end_ub(i))
            for cal, ks in by_calendar.items():
                windows = [(s, e) for s, e in cp.machines[c.modes[ks[0]].machine].windows if e > lo and s < hi]
                lits = [v.presence[k] for k in ks]
                used: list[cp_model.IntVar] = []  # empty: the operation surely runs on this calendar
                if not any(isinstance(x, int) for x in lits) and len(ks) < len(c.modes):
                    if len(ks) == 1:
                        used = [lits[0]]  # type: ignore[list-item]
                    else:
                        u = m.new_bool_var(f"cal{i}_{cal}")
                        m.add(u == lsum(lits))
                        used = [u]
                        self.built.calendar_used.append((u, i, ks))
                crossed: list[tuple[LinearExpr, int]] = []
                prev: tuple[cp_model.IntVar, cp_model.IntVar] | None = None
                for w, (s, e) in enumerate(windows):
                    before = m.new_bool_var(f"b{i}_{cal}_{w}")
                    after = m.new_bool_var(f"a{i}_{cal}_{w}")
                    m.add(v.end <= s).only_enforce_if(before)
                    m.add(v.start >= e).only_enforce_if(after)
                    self.built.thresholds += [(before, i, "end<=", s), (after, i, "start>=", e)]
                    across = [*used, before.Not(), after.Not()]
                    m.add(v.start < s).only_enforce_if(across)
                    m.add(v.end > e).only_enforce_if(across)
                    if prev is not None:
                        m.add_implication(after, prev[1])  # starts after this break: after the earlier ones too
                        m.add_implication(prev[0], before)
                    prev = (before, after)
                    crossed.append((1 - before - after, e - s))
                for k in ks:
                    ct = m.add(v.durations[k] == c.modes[k].duration + lsum(x * length for x, length in crossed))
                    if not isinstance(v.presence[k], int):
                        ct.only_enforce_if(v.presence[k])

    def _setups(self, mi: int, members: list[tuple[int, int]]) -> None:
        """Circuit over the machine's operations; an arc i->j carries setup(i, j)."""
        cp, m = self.cp, self.m
        mach = cp.machines[mi]
        nodes, left = self._setup_nodes(members)
        arcs: list[tuple[int, int, LinearExpr]] = []
        recorded: list[tuple[int, int, cp_model.IntVar, int]] = []
        incoming: dict[int, list[tuple[LinearExpr, int]]] = {}
        for a, (i, k) in enumerate(nodes, start=1):
            present = self._presence(i, k)
            first = m.new_bool_var(f"first{mi}_{i}")
            last = m.new_bool_var(f"last{mi}_{i}")
            arcs.append((0, a, first))
            arcs.append((a, 0, last))
            if not isinstance(present, int):
                arcs.append((a, a, present.Not()))
            su0 = mach.setup_time(mach.initial_family, cp.ops[i].family) if left is None else 0
            if left is not None and i != left:
                m.add(first == 0)  # the window's sequence continues from the pinned work before it
            if su0:
                m.add(self._startpoint(i) >= su0).only_enforce_if(first)
            recorded.append((-1, i, first, su0))
            recorded.append((i, -1, last, 0))
            incoming.setdefault(i, []).append((first, su0))
            for b, (j, _q) in enumerate(nodes, start=1):
                if a == b:
                    continue
                lit = m.new_bool_var(f"arc{mi}_{i}_{j}")
                arcs.append((a, b, lit))
                su = mach.setup_time(cp.ops[i].family, cp.ops[j].family)
                m.add(self._startpoint(j) >= self._endpoint(i) + su).only_enforce_if(lit)
                recorded.append((i, j, lit, su))
                incoming.setdefault(j, []).append((lit, su))
        if not nodes:
            return
        if any(not isinstance(self._presence(i, k), int) for i, k in nodes):
            arcs.append((0, 0, m.new_bool_var(f"idle{mi}")))  # every optional node may be absent
        m.add_circuit([(a, b, lit) for a, b, lit in arcs])  # type: ignore[misc]
        self.built.arcs[mi] = recorded
        for j, ins in incoming.items():  # an operation with modes on several machines: only one arc is on
            incoming_setup: LinearExpr = lsum(lit * su for lit, su in ins if su)
            self.built.setup_vars[j] = self.built.setup_vars.get(j, 0) + incoming_setup  # type: ignore[operator]

    def _setup_nodes(self, members: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], int | None]:
        """The machine's operations in its setup circuit, and the pinned one the sequence starts from.

        In a full model that is every operation (and no start). In an LNS window only the
        pinned work that free operations could follow or precede matters: the pinned
        operations overlapping the window's time span plus the nearest one on each side;
        the circuit then starts at the last pinned operation before the window.
        """
        if self.free is None:
            return members, None
        free = [(i, k) for i, k in members if self._in_model(i)]
        if not free:
            return [], None
        lo = min(self.cp.ops[i].release for i, _ in free)
        hi = max(self._end_ub(i) for i, _ in free)
        pinned = sorted((self._pinned(i)[1], self._pinned(i)[2], i, k) for i, k in members if not self._in_model(i))
        before = [x for x in pinned if x[1] <= lo]
        after = [x for x in pinned if x[0] >= hi]
        inside = [x for x in pinned if x[1] > lo and x[0] < hi]
        kept = before[-1:] + inside + after[:1]
        left = before[-1][2] if before else None
        return free + [(i, k) for _, _, i, k in kept], left

    def _presence(self, i: int, k: int) -> cp_model.IntVar | int:
        if self._in_model(i):
            return self.built.ops[i].presence[k]
        return 1

    def _pools(self) -> None:
        cp, m = self.cp, self.m
        # pool -> (interval, amount, (start, end) if started/done work else an empty span)
        users: dict[int, list[tuple[cp_model.IntervalVar, int, tuple[int, int]]]] = {}
        for c in cp.ops:
            if self._in_model(c.idx):
                for k, md in enumerate(c.modes):
                    for p, amount in md.secondary:
                        if self.built.ops[c.idx].intervals[k] is not None and self._takes_time(c.idx, k):
                            span = self._pinned(c.idx)[1:] if c.fixed else (0, 0)
                            users.setdefault(p, []).append((self._interval_of(c.idx, k), amount, span))
        if self.free is not None:
            for c in cp.ops:
                if not self._in_model(c.idx):
                    k, s0, e0 = self._pinned(c.idx)
                    for p, amount in c.modes[k].secondary:
                        if p in users and e0 > s0:
                            span = (s0, e0) if c.fixed else (0, 0)
                            users[p].append((self._interval_of(c.idx, k), amount, span))
        for p, uses in users.items():
            pool = cp.pools[p]
            ivs = [iv for iv, _, _ in uses]
            dem = [a for _, a, _ in uses]
            running = [(s, e, a) for _, a, (s, e) in uses if e > s]  # started/done work keeps its pool
            for s, e in pool.windows:
                # a downtime takes what started work does not already hold: that work runs on
                cuts = sorted({s, e} | {t for rs, re, _ in running for t in (rs, re) if s < t < e})
                for a, b in pairwise(cuts):
                    held = sum(x for rs, re, x in running if rs < b and re > a)
                    if pool.capacity - held > 0:
                        ivs.append(m.new_fixed_size_interval_var(a, b - a, f"pw{p}_{a}"))
                        dem.append(pool.capacity - held)
            m.add_cumulative(ivs, dem, pool.capacity)

    def _materials(self) -> None:
        """Stock plus receipts so far covers consumption so far, at every receipt interval.

        Receipts come at fixed times and work consumes at its start, so the level can only
        go negative just before a receipt: for each receipt time t, what starts before t
        must fit in what arrived before t (stock + earlier receipts). One literal per
        (consumer, receipt), ``start >= t``, instead of a reservoir, whose expansion is
        quadratic in the consumers.
        """
        cp, m = self.cp, self.m
        scale = _quantity_scale(cp)
        for mat in cp.materials:
            users = [(c.idx, round(q * scale)) for c in cp.ops for mm, q in c.materials if mm == mat.idx]
            if not users or not any(self._in_model(i) for i, _ in users):
                continue
            g = self._guard(f"material {mat.id}: stock {mat.stock:g} plus receipts "
                            + ", ".join(f"{q:g}@{t}" for t, q in mat.receipts))
            supply = round(mat.stock * scale)
            bounds = {i: self._start_bounds(i) for i, _ in users}
            checkpoints: list[tuple[int, int]] = []  # (receipt time t, supply that arrived before t)
            for t, q in mat.receipts:
                if checkpoints and checkpoints[-1][0] == t:
                    supply += round(q * scale)
                    continue
                checkpoints.append((t, supply))
                supply += round(q * scale)
            checkpoints.append((cp.horizon + 1, supply))  # everything, by the end
            for t, available in checkpoints:
                terms: list[LinearExpr] = []
                const = 0
                for i, q in users:
                    s = self._startpoint(i)
                    lo, hi = bounds[i]
                    if isinstance(s, int):
                        const += q if s < t else 0
                    elif lo >= t:
                        continue
                    elif hi < t:
                        const += q
                    else:
                        late = m.new_bool_var(f"mat{mat.idx}_{i}_{t}")
                        m.add(s >= t).only_enforce_if(late)
                        m.add(s < t).only_enforce_if(late.Not())
                        self.built.thresholds.append((late, i, "start>=", t))
                        terms.append(q * (1 - late))
                if not terms and const <= available:
                    continue
                ct = m.add(lsum(terms) + const <= available)
                if g is not None:
                    ct.only_enforce_if(g)

    # ---------------------------------------------------------------- objective
    def objective_terms(self) -> dict[ObjectiveName, LinearExpr]:
        cp, m, H = self.cp, self.m, self.horizon
        terms: dict[ObjectiveName, LinearExpr] = {}
        ops = self.built.ops
        sinks = [c.idx for c in cp.ops if not self._dominated(c.idx, None)]
        makespan = m.new_int_var(0, H, "makespan")
        pinned_end = 0  # operations outside the (sub)model only contribute a constant
        for i in sinks:
            e = self._endpoint(i)
            if isinstance(e, int):
                pinned_end = max(pinned_end, e)
            else:
                m.add(makespan >= e)
        if pinned_end:
            m.add(makespan >= pinned_end)
        terms[ObjectiveName.MAKESPAN] = makespan
        tard: list[LinearExpr] = []
        for o, ids in enumerate(cp.order_ops):
            due = cp.order_due[o]
            if due is None or not ids or cp.order_weight[o] == 0:  # weight 0: no term (0 * x is no help)
                continue
            ends = [self._endpoint(i) for i in ids if not self._dominated(i, o)]
            if all(isinstance(e, int) for e in ends):
                tard.append(cp.order_weight[o] * max(0, max(ends) - due))
                continue
            t = m.new_int_var(0, H, f"tard{o}")
            for e in ends:
                m.add(t >= e - due)
            tard.append(cp.order_weight[o] * t)
        terms[ObjectiveName.WEIGHTED_TARDINESS] = lsum(tard)
        terms[ObjectiveName.SETUP] = lsum(self.built.setup_vars.values())
        dev: list[LinearExpr] = []
        if self.reference is not None:
            ref = self.reference
            for i, v in ops.items():
                if cp.ops[i].fixed or ref.mode[i] < 0:
                    continue
                d = m.new_int_var(0, H, f"dev{i}")
                m.add_abs_equality(d, v.start - ref.start[i])
                dev.append(d)
                lit = v.presence[ref.mode[i]]
                if not isinstance(lit, int):
                    dev.append(_change_penalty(cp, i) * (1 - lit))
        terms[ObjectiveName.STABILITY] = lsum(dev)
        self.built.terms = terms
        return terms

    def _dominated(self, i: int, order: int | None) -> bool:
        """Does a successor (of ``order``, if given) surely end no earlier than ``i``?

        True when a successor follows with a non-negative min lag; with a negative lag
        the successor may end first, so ``i``'s own end counts for makespan and tardiness.
        """
        cp = self.cp
        for j in cp.ops[i].succs:
            if order is not None and cp.ops[j].order != order:
                continue
            if any(p == i and lo >= 0 for p, lo, _ in cp.ops[j].preds):
                return True
        return False

    def build(self) -> Built:
        self.variables()
        self.constraints()
        self.objective_terms()
        return self.built


def end_bounds(cp: CProblem, objective: Objective, incumbent: float) -> list[int] | None:
    """Per operation, the latest end of any schedule at least as good as ``incumbent``.

    Every objective term is non-negative, so ``w_makespan * makespan <= incumbent`` and
    ``w_tardiness * weight * (end - due) <= incumbent`` for each order: no improving
    schedule ends an operation later. These cuts keep the optimum and let breaks far
    beyond them drop out of the model. None for lexicographic objectives.
    """
    if objective.lexicographic is not None:
        return None
    limit = int(incumbent) + 1
    wm = objective.weights.get(ObjectiveName.MAKESPAN, 0)
    wt = objective.weights.get(ObjectiveName.WEIGHTED_TARDINESS, 0)
    cap = limit // wm if wm > 0 else cp.horizon
    ub = [min(cp.horizon, cap)] * len(cp.ops)
    if wt > 0:
        for o, ids in enumerate(cp.order_ops):
            due, w = cp.order_due[o], cp.order_weight[o]
            if due is not None and w > 0:
                for i in ids:
                    ub[i] = min(ub[i], due + limit // (wt * w))
    for c in cp.ops:  # fixed work is where it is
        if c.fixed and c.fixed_end is not None:
            ub[c.idx] = max(ub[c.idx], c.fixed_end)
    return ub


def _change_penalty(cp: CProblem, i: int) -> int:
    """Cost of moving an operation to another machine, in time units of deviation."""
    return max(1, max(md.duration for md in cp.ops[i].modes))


def _quantity_scale(cp: CProblem) -> int:
    """Integer scale that makes material quantities whole numbers.

    Powers of ten up to 1e9: a quantity with more decimals is rounded at 1e-9, far
    below the checker's tolerance (1e-6), so the model never lets work start short.
    """
    values = [m.stock for m in cp.materials] + [q for m in cp.materials for _, q in m.receipts]
    values += [q for c in cp.ops for _, q in c.materials]
    scale = 1
    while scale < 10**9 and not all(abs(v * scale - round(v * scale)) < 1e-9 * max(1.0, abs(v)) for v in values):
        scale *= 10
    return scale


def add_hint(built: Built, cp: CProblem, tt: Timetable) -> None:
    """Hint every decision variable from a complete timetable."""
    m = built.model
    for i, v in built.ops.items():
        if cp.ops[i].fixed:  # fixed work is constants, cached and shared: a hint on one is invalid
            continue
        m.add_hint(v.start, tt.start[i])
        m.add_hint(v.end, tt.end[i])
        for k, lit in enumerate(v.presence):
            if not isinstance(lit, int):
                m.add_hint(lit, int(tt.mode[i] == k))
            dur = v.durations[k]
            if not isinstance(dur, int) and tt.mode[i] == k:
                m.add_hint(dur, tt.end[i] - tt.start[i])
    for lit, i, kind, t in built.thresholds:
        m.add_hint(lit, int(tt.start[i] >= t) if kind == "start>=" else int(tt.end[i] <= t))
    for lit, i, ks in built.calendar_used:
        m.add_hint(lit, int(tt.mode[i] in ks))
    for mi, arcs in built.arcs.items():
        nodes = {i for a, b, _, _ in arcs for i in (a, b) if i >= 0}
        on_machine = [i for i in nodes if cp.ops[i].modes[tt.mode[i]].machine == mi]
        order = [i for _, i in sorted((tt.start[i], i) for i in on_machine)]
        nxt = dict(zip([-1, *order], [*order, -1], strict=True))
        for a, b, lit, _ in arcs:
            m.add_hint(lit, int(nxt.get(a, -2) == b))

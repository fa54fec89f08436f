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

from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from paichan.domain import ObjectiveName
from paichan.solver.compiled import CProblem
from paichan.solver.heuristic import Timetable

LinearExpr = cp_model.LinearExprT


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
    ) -> None:
        self.cp = cp
        self.horizon = horizon
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
        cp, m, H = self.cp, self.m, self.horizon
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
            start = m.new_int_var(lo, H, f"s{i}")
            end = m.new_int_var(lo, H, f"e{i}")
            intervals = []
            presence = []
            durations = []
            single = len(c.modes) == 1
            for k, md in enumerate(c.modes):
                windows = cp.machines[md.machine].windows
                if c.span and windows and md.duration > 0:
                    extra = sum(e - s for s, e in windows if e > lo)
                    dur: cp_model.IntVar | int = m.new_int_var(md.duration, md.duration + extra, f"d{i}_{k}")
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
                g = self._guard(f"operation {c.id} is {c.status.value} on {self.cp.machines[c.modes[k].machine].id} "
                                f"at {s0}..{e0} (shop-floor actual)")
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
        """machine -> [(op, mode)] for modes on it, in the model or pinned there."""
        members: dict[int, list[tuple[int, int]]] = {}
        for c in self.cp.ops:
            if self._in_model(c.idx):
                for k, md in enumerate(c.modes):
                    if self.built.ops[c.idx].intervals[k] is not None:
                        members.setdefault(md.machine, []).append((c.idx, k))
        if self.free is not None:
            touched = set(members)
            for c in self.cp.ops:
                if not self._in_model(c.idx):
                    k, _, _ = self._pinned(c.idx)
                    if c.modes[k].machine in touched:
                        members[c.modes[k].machine].append((c.idx, k))
        return members

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
            m.add_no_overlap(list(intervals.values()))
            if mach.windows:
                lo = min((cp.ops[i].release for i, _ in members), default=0)
                breaks = [
                    m.new_fixed_size_interval_var(s, e - s, f"brk{mi}_{s}")
                    for s, e in mach.windows
                    if e > lo
                ]
                rigid = [iv for (i, k), iv in intervals.items() if not cp.ops[i].span and not cp.ops[i].fixed]
                if rigid and breaks:
                    m.add_no_overlap(rigid + breaks)
                for i, k in members:
                    c = cp.ops[i]
                    if c.span and not c.fixed and self._in_model(i) and c.modes[k].duration > 0:
                        self._span(i, k, [(s, e) for s, e in mach.windows if e > lo])
            if mach.has_setups:
                self._setups(mi, members)

    def _span(self, i: int, k: int, windows: list[tuple[int, int]]) -> None:
        """Operation may pause over breaks: it stretches by each break it crosses."""
        m = self.m
        v = self.built.ops[i]
        lit = v.presence[k]
        crossed = []
        for w, (s, e) in enumerate(windows):
            before, after, across = (m.new_bool_var(f"b{i}_{k}_{w}{x}") for x in "bac")
            m.add_exactly_one([before, after, across])
            m.add(v.end <= s).only_enforce_if(before)
            m.add(v.start >= e).only_enforce_if(after)
            m.add(v.start < s).only_enforce_if(across)
            m.add(v.end > e).only_enforce_if(across)
            crossed.append((across, e - s))
        dur = v.durations[k]
        expr = self.cp.ops[i].modes[k].duration + sum(x * length for x, length in crossed)
        ct = m.add(dur == expr)
        if not isinstance(lit, int):
            ct.only_enforce_if(lit)

    def _setups(self, mi: int, members: list[tuple[int, int]]) -> None:
        """Circuit over the machine's operations; an arc i->j carries setup(i, j)."""
        cp, m = self.cp, self.m
        mach = cp.machines[mi]
        nodes = [(i, k) for i, k in members if cp.ops[i].modes[k].duration > 0]
        arcs: list[tuple[int, int, cp_model.IntVar | int]] = []
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
            su0 = mach.setup_time(mach.initial_family, cp.ops[i].family)
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
        for j, ins in incoming.items():
            self.built.setup_vars[j] = sum(lit * su for lit, su in ins if su)

    def _presence(self, i: int, k: int) -> cp_model.IntVar | int:
        if self._in_model(i):
            return self.built.ops[i].presence[k]
        return 1

    def _pools(self) -> None:
        cp, m = self.cp, self.m
        users: dict[int, list[tuple[cp_model.IntervalVar, int]]] = {}
        for c in cp.ops:
            if self._in_model(c.idx):
                for k, md in enumerate(c.modes):
                    for p, amount in md.secondary:
                        if self.built.ops[c.idx].intervals[k] is not None:
                            users.setdefault(p, []).append((self._interval_of(c.idx, k), amount))
        if self.free is not None:
            for c in cp.ops:
                if not self._in_model(c.idx):
                    k, _, _ = self._pinned(c.idx)
                    for p, amount in c.modes[k].secondary:
                        if p in users:
                            users[p].append((self._interval_of(c.idx, k), amount))
        for p, uses in users.items():
            pool = cp.pools[p]
            ivs = [iv for iv, _ in uses]
            dem = [a for _, a in uses]
            for s, e in pool.windows:
                ivs.append(m.new_fixed_size_interval_var(s, e - s, f"pw{p}_{s}"))
                dem.append(pool.capacity)
            m.add_cumulative(ivs, dem, pool.capacity)

    def _materials(self) -> None:
        cp, m = self.cp, self.m
        scale = _quantity_scale(cp)
        for mat in cp.materials:
            users = [(c.idx, q) for c in cp.ops for mm, q in c.materials if mm == mat.idx]
            if not users or not any(self._in_model(i) for i, _ in users):
                continue
            times: list[LinearExpr] = [0]
            changes = [round(mat.stock * scale)]
            for t, q in mat.receipts:
                times.append(t)
                changes.append(round(q * scale))
            for i, q in users:
                times.append(self._startpoint(i))
                changes.append(-round(q * scale))
            g = self._guard(f"material {mat.id}: stock {mat.stock:g} plus receipts "
                            + ", ".join(f"{q:g}@{t}" for t, q in mat.receipts))
            if g is None:
                m.add_reservoir_constraint(times, changes, 0, sum(c for c in changes if c > 0))
            else:
                actives = [g] + [1] * (len(times) - 1)
                m.add_reservoir_constraint_with_active(
                    times, changes, [a if not isinstance(a, int) else m.new_constant(1) for a in actives],
                    0, sum(c for c in changes if c > 0),
                )

    # ---------------------------------------------------------------- objective
    def objective_terms(self) -> dict[ObjectiveName, LinearExpr]:
        cp, m, H = self.cp, self.m, self.horizon
        terms: dict[ObjectiveName, LinearExpr] = {}
        ops = self.built.ops
        sinks = [c.idx for c in cp.ops if not c.succs]
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
            if due is None or not ids:
                continue
            ends = [
                self._endpoint(i)
                for i in ids
                if not cp.ops[i].succs or all(cp.ops[s].order != o for s in cp.ops[i].succs)
            ]
            if all(isinstance(e, int) for e in ends):
                tard.append(cp.order_weight[o] * max(0, max(ends) - due))  # type: ignore[type-var]
                continue
            t = m.new_int_var(0, H, f"tard{o}")
            for e in ends:
                m.add(t >= e - due)
            tard.append(cp.order_weight[o] * t)
        terms[ObjectiveName.WEIGHTED_TARDINESS] = sum(tard) if tard else 0
        terms[ObjectiveName.SETUP] = sum(self.built.setup_vars.values()) if self.built.setup_vars else 0
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
        terms[ObjectiveName.STABILITY] = sum(dev) if dev else 0
        self.built.terms = terms
        return terms

    def build(self) -> Built:
        self.variables()
        self.constraints()
        self.objective_terms()
        return self.built


def _change_penalty(cp: CProblem, i: int) -> int:
    """Cost of moving an operation to another machine, in time units of deviation."""
    return max(1, max(md.duration for md in cp.ops[i].modes))


def _quantity_scale(cp: CProblem) -> int:
    """Integer scale so that every material quantity becomes a whole number."""
    values = [m.stock for m in cp.materials] + [q for m in cp.materials for _, q in m.receipts]
    values += [q for c in cp.ops for _, q in c.materials]
    for scale in (1, 10, 100, 1000):
        if all(abs(v * scale - round(v * scale)) < 1e-9 for v in values):
            return scale
    return 1000


def add_hint(built: Built, cp: CProblem, tt: Timetable) -> None:
    """Hint every decision variable from a complete timetable."""
    m = built.model
    for i, v in built.ops.items():
        m.add_hint(v.start, tt.start[i])
        m.add_hint(v.end, tt.end[i])
        for k, lit in enumerate(v.presence):
            if not isinstance(lit, int):
                m.add_hint(lit, int(tt.mode[i] == k))
            dur = v.durations[k]
            if not isinstance(dur, int) and tt.mode[i] == k:
                m.add_hint(dur, tt.end[i] - tt.start[i])
    for mi, arcs in built.arcs.items():
        nodes = {i for a, b, _, _ in arcs for i in (a, b) if i >= 0}
        on_machine = [i for i in nodes if cp.ops[i].modes[tt.mode[i]].machine == mi]
        order = [i for _, i in sorted((tt.start[i], i) for i in on_machine)]
        nxt = dict(zip([-1, *order], [*order, -1], strict=True))
        for a, b, lit, _ in arcs:
            m.add_hint(lit, int(nxt.get(a, -2) == b))

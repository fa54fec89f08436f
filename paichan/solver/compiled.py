"""An index-based view of a Problem, built once and shared by heuristic and model.

Pydantic models are right at the boundary but slow to walk in inner loops; this
flattens them into integer-indexed records (operations, machines, pools,
materials) with derived data: effective release, deadlines, successor lists,
a planning horizon and each resource's non-working windows up to it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from functools import lru_cache

import networkx as nx

from paichan.domain import Calendar, OperationStatus, Problem, ResourceKind, merge_windows
from paichan.solver.timing import fit_start, place, span_end


@dataclass(slots=True)
class CMode:
    machine: int
    duration: int
    secondary: list[tuple[int, int]]  # (pool index, amount)
    group: str | None = None


@dataclass(slots=True)
class COp:
    idx: int
    id: str
    order: int
    position: int  # in its order's routing
    modes: list[CMode]
    family: str | None
    preds: list[tuple[int, int, int | None]]  # (pred op, min_lag, max_lag)
    materials: list[tuple[int, float]]
    span: bool
    status: OperationStatus
    release: int  # max(order release, now) for planned ops
    deadline: int | None
    pinned: bool = False  # planned, but a planner's pin fixes its mode and start (its materials still count)
    fixed_mode: int | None = None  # started/done/pinned: index of the actual (pinned) machine's mode
    fixed_start: int | None = None
    fixed_end: int | None = None
    succs: list[int] = field(default_factory=list)

    @property
    def fixed(self) -> bool:
        return self.status != OperationStatus.PLANNED or self.pinned


@dataclass(slots=True)
class CMachine:
    idx: int
    id: str
    windows: list[tuple[int, int]]  # non-working, merged, sorted
    calendar: int  # machines with identical windows share this id (one set of break choices per calendar)
    setup: dict[tuple[str | None, str | None], int]  # only non-zero entries used
    default_setup: int
    initial_family: str | None
    has_setups: bool

    def setup_time(self, a: str | None, b: str | None) -> int:
        if a is None or b is None or a == b:
            return 0
        return self.setup.get((a, b), self.default_setup)


@dataclass(slots=True)
class CPool:
    idx: int
    id: str
    capacity: int
    windows: list[tuple[int, int]]


@dataclass(slots=True)
class CMaterial:
    idx: int
    id: str
    stock: float
    receipts: list[tuple[int, float]]  # sorted by time


@dataclass(slots=True)
class CProblem:
    problem: Problem
    ops: list[COp]
    machines: list[CMachine]
    pools: list[CPool]
    materials: list[CMaterial]
    order_ids: list[str]
    order_due: list[int | None]
    order_weight: list[int]
    order_ops: list[list[int]]
    order_one_group: list[bool]
    horizon: int
    topo: list[int]  # a topological order of operations

    @property
    def has_calendars(self) -> bool:
        return any(m.windows for m in self.machines) or any(p.windows for p in self.pools)

    @property
    def has_setups(self) -> bool:
        return any(m.has_setups for m in self.machines)


def compile_problem(problem: Problem, horizon: int | None = None) -> CProblem:
    """Flatten a *validated* problem; ``horizon`` overrides the computed one."""
    res_index: dict[str, int] = {}
    pool_index: dict[str, int] = {}
    for r in problem.resources:
        if r.kind == ResourceKind.MACHINE:
            res_index[r.id] = len(res_index)
        else:
            pool_index[r.id] = len(pool_index)
    mat_index = {m.id: i for i, m in enumerate(problem.materials)}
    op_index = {op.id: i for i, (_, op) in enumerate(problem.operations())}

    ops: list[COp] = []
    order_ops: list[list[int]] = []
    for oi, order in enumerate(problem.orders):
        ids: list[int] = []
        for k, op in enumerate(order.operations):
            modes = [
                CMode(res_index[m.resource], m.duration, [(pool_index[s.resource], s.amount) for s in m.secondary],
                      m.group)
                for m in op.modes
            ]
            preds: list[tuple[int, int, int | None]]
            if op.predecessors is None:
                preds = [(op_index[order.operations[k - 1].id], 0, None)] if k > 0 else []
            else:
                preds = [(op_index[p.operation], p.min_lag, p.max_lag) for p in op.predecessors]
            c = COp(
                idx=len(ops),
                id=op.id,
                order=oi,
                position=k,
                modes=modes,
                family=op.family,
                preds=preds,
                # started/done work has consumed already: Material.stock is stock now
                materials=(
                    [(mat_index[u.material], u.quantity) for u in op.materials]
                    if op.status == OperationStatus.PLANNED
                    else []
                ),
                span=op.can_span_breaks,
                status=op.status,
                release=max(order.release, problem.now),
                deadline=order.deadline,
            )
            if op.status != OperationStatus.PLANNED and op.actual is not None:
                c.fixed_mode = next(i for i, m in enumerate(op.modes) if m.resource == op.actual.resource)
                c.fixed_start = op.actual.start
                run = modes[c.fixed_mode].duration
                c.fixed_end = op.actual.end if op.status == OperationStatus.DONE else op.actual.start + run
            elif op.pin is not None:
                c.pinned = True
                c.fixed_mode = next(i for i, m in enumerate(op.modes) if m.resource == op.pin.resource)
                c.fixed_start = op.pin.start
                c.fixed_end = op.pin.start + modes[c.fixed_mode].duration
            ids.append(c.idx)
            ops.append(c)
        order_ops.append(ids)
    for c in ops:
        for p, _, _ in c.preds:
            ops[p].succs.append(c.idx)

    machine_calendars = [r.calendar for r in problem.resources if r.kind == ResourceKind.MACHINE]
    for c in ops:  # a running operation that may span breaks resumes after them
        if ((c.status == OperationStatus.STARTED or c.pinned) and c.span and c.fixed_start is not None
                and c.fixed_mode is not None):
            md = c.modes[c.fixed_mode]
            c.fixed_end = _running_end(machine_calendars[md.machine], c.fixed_start, md.duration)

    topo = _topological(ops)
    expanded: dict[str, list[tuple[int, int]]] = {}
    if horizon is None:
        horizon, expanded = _horizon(problem, ops, topo)
    machines: list[CMachine] = []
    pools: list[CPool] = []
    calendar_ids: dict[tuple[tuple[int, int], ...], int] = {}
    for r in problem.resources:
        windows = _clip(expanded[r.id], horizon) if r.id in expanded else _expand(r.calendar, horizon)
        if r.kind == ResourceKind.MACHINE:
            machines.append(
                CMachine(
                    idx=len(machines),
                    id=r.id,
                    windows=windows,
                    calendar=calendar_ids.setdefault(tuple(windows), len(calendar_ids)),
                    setup={(s.from_family, s.to_family): s.time for s in r.setups},
                    default_setup=r.default_setup,
                    initial_family=r.initial_family,
                    has_setups=r.has_setups,
                )
            )
        else:
            pools.append(CPool(len(pools), r.id, r.capacity, windows))
    materials = [
        CMaterial(i, m.id, m.stock, sorted((r.time, r.quantity) for r in m.receipts))
        for i, m in enumerate(problem.materials)
    ]
    return CProblem(
        problem=problem,
        ops=ops,
        machines=machines,
        pools=pools,
        materials=materials,
        order_ids=[o.id for o in problem.orders],
        order_due=[o.due for o in problem.orders],
        order_weight=[o.priority for o in problem.orders],
        order_ops=order_ops,
        order_one_group=[o.one_group for o in problem.orders],
        horizon=horizon,
        topo=topo,
    )


def _topological(ops: list[COp]) -> list[int]:
    """A topological order of the operations (networkx: the project's one topological sort)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(ops)))
    graph.add_edges_from((p, c.idx) for c in ops for p, _, _ in c.preds)
    try:
        return list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible as e:
        raise ValueError("precedence graph has a cycle (validate the problem first)") from e


def _expand(calendar: Calendar, horizon: int) -> list[tuple[int, int]]:
    """Merged non-working windows in ``[0, horizon)``: :meth:`Calendar.unavailable`, faster.

    One period's gaps between shifts are computed once and repeated (cached per shift
    pattern), and the few downtimes are spliced in, so calendars over horizons of
    years on hundreds of machines expand in milliseconds each.
    """
    windows = list(_periodic(calendar.period, tuple((w.start, w.end) for w in calendar.shifts), horizon))
    for d in sorted(calendar.downtimes, key=lambda d: d.start):
        a, b = max(0, d.start), min(d.end, horizon)
        if b <= a:
            continue
        lo = bisect_left([e for _, e in windows], a)  # first window ending at or after a (touching merges)
        hi = bisect_right([x for x, _ in windows], b)  # windows starting at or before b
        if lo < hi:
            a, b = min(a, windows[lo][0]), max(b, windows[hi - 1][1])
        windows[lo:hi] = [(a, b)]
    return windows


@lru_cache(maxsize=64)
def _periodic(period: int | None, shifts: tuple[tuple[int, int], ...], horizon: int) -> tuple[tuple[int, int], ...]:
    """The gaps between shifts, repeated every period up to the horizon."""
    if not shifts or not period:
        return ()
    gaps: list[tuple[int, int]] = []
    cursor = 0
    for a, b in merge_windows(list(shifts)):
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < period:
        gaps.append((cursor, period))
    windows = [(a + k, b + k) for k in range(0, horizon, period) for a, b in gaps]
    return tuple(merge_windows([(a, min(b, horizon)) for a, b in windows if a < horizon]))


def _clip(windows: list[tuple[int, int]], horizon: int) -> list[tuple[int, int]]:
    return [(a, min(b, horizon)) for a, b in windows if a < horizon]


def _horizon(problem: Problem, ops: list[COp], topo: list[int]) -> tuple[int, dict[str, list[tuple[int, int]]]]:
    """An end time by which a feasible schedule surely exists (max lags aside).

    A serial schedule is simulated: every planned operation, in topological
    order, starts after the previous one has ended (plus the longest setup),
    in the mode that ends last under its machine's and pools' calendars, and
    not before material is there for the whole demand. Nothing overlaps, so
    it is feasible; its end bounds the horizon however much time calendars,
    long downtimes or late receipts cost. Returns it with the calendars'
    windows as expanded for the simulation (they cover the horizon).
    """
    planned = [c for c in ops if not c.fixed]
    base = max([problem.now] + [o.release for o in problem.orders] + [c.fixed_end or 0 for c in ops])
    # pinned work consumes too (started/done work has no materials left): all of it counts for the material date
    base = max(base, _material_ready(problem, [c for c in ops if c.materials]))
    max_setup = max(
        [r.default_setup for r in problem.resources] + [s.time for r in problem.resources for s in r.setups] + [0]
    )
    calendars = {r.id: r.calendar for r in problem.resources}
    machine_ids = [r.id for r in problem.resources if r.kind == ResourceKind.MACHINE]
    pool_ids = [r.id for r in problem.resources if r.kind != ResourceKind.MACHINE]
    order = topo
    limit = base + sum(max((m.duration for m in c.modes), default=0) + max_setup for c in planned) + 1
    limit += sum(max([0] + [lo for _, lo, _ in c.preds]) for c in planned)
    while True:
        limit *= 2
        win = {rid: _expand(cal, limit) for rid, cal in calendars.items()}
        ends = {rid: [e for _, e in w] for rid, w in win.items()}
        t = base
        end = [c.fixed_end or 0 for c in ops]
        for i in order:
            c = ops[i]
            if c.fixed:
                continue
            t0 = max([t + max_setup, c.release] + [end[p] + lo for p, lo, _ in c.preds])
            best = None
            for md in c.modes:
                rid = machine_ids[md.machine]
                s = t0
                for _ in range(100):  # machine and pool calendars agree on a start
                    s, e = place(win[rid], ends[rid], s, md.duration, c.span)
                    s2 = s
                    for p, _ in md.secondary:
                        pid = pool_ids[p]
                        s2 = max(s2, fit_start(win[pid], ends[pid], s, e - s))
                    if s2 == s:
                        break
                    s = s2
                if best is None or e > best:  # any mode may be forced (groups, pins): the slowest
                    best = e
            end[i] = best if best is not None else t0
            t = max(t, end[i])
        if t < limit:
            return t + 1, win


def _running_end(calendar: Calendar, start: int, duration: int) -> int:
    """End of work that started at ``start`` and pauses over the calendar's breaks."""
    limit = start + duration + 1
    while True:
        limit *= 2
        win = calendar.unavailable(limit)
        end = span_end(win, [e for _, e in win], start, duration)[1]
        if end < limit:
            return end


def _material_ready(problem: Problem, planned: list[COp]) -> int:
    """When every material's stock plus receipts covers all planned demand for it."""
    demand: dict[int, float] = {}
    for c in planned:
        for mat, q in c.materials:
            demand[mat] = demand.get(mat, 0.0) + q
    ready = 0
    for mi, need in demand.items():
        m = problem.materials[mi]
        level = m.stock
        if level + 1e-9 >= need:
            continue
        for r in sorted(m.receipts, key=lambda r: r.time):
            level += r.quantity
            if level + 1e-9 >= need:
                ready = max(ready, r.time)
                break
        else:  # validation rejects demand above supply; be safe anyway
            ready = max(ready, max((r.time for r in m.receipts), default=0))
    return ready

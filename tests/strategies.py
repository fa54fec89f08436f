"""Hypothesis strategies for small, "factory-shaped" scheduling problems.

Used by the model-checker agreement tests (tests/test_agreement.py): the CP-SAT
model and the independent checker restate the same semantics twice, and rich
random problems are where the two drift apart. Problems stay SMALL (1-5 orders
of 1-4 operations on 2-5 machines, times of a few hundred units) so that one
CP-SAT solve takes well under a second. Every feature can be switched off by a
flag of :func:`problems`, so a test (or a hunt for one bug) can narrow the space.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import assume
from hypothesis import strategies as st

from paichan.domain import (
    Actual,
    Calendar,
    Downtime,
    DowntimeKind,
    Material,
    MaterialUse,
    Mode,
    Objective,
    ObjectiveName,
    Operation,
    OperationStatus,
    Order,
    Predecessor,
    Problem,
    Receipt,
    Resource,
    ResourceKind,
    SecondaryUse,
    SetupTime,
    TimeWindow,
    find_problems,
)

PERIOD = 100  # shift pattern period of calendared machines
FAMILIES = ("A", "B", "C")
POOL = "P"
#: calendar shapes: around the clock, one day shift, two shifts with a break
SHIFT_PATTERNS: dict[str, list[tuple[int, int]]] = {"24h": [], "day": [(10, 80)], "two": [(0, 40), (50, 90)]}
PLAIN_QUANTITIES = (1.0, 2.0, 0.5, 1.5, 3.0)
FINE_QUANTITIES = (0.3333, 0.1234, 1.0001)  # more than 3 decimals
PLAN_HORIZON = 600  # calendar windows are computed up to here when placing shop-floor actuals


@dataclass(frozen=True)
class Features:
    """Which features a generated problem may use (all on by default)."""

    calendars: bool = True  # shift patterns with a period of 100
    downtimes: bool = True  # maintenance / breakdown windows on machines (and the pool)
    long_windows: bool = True  # sometimes a downtime of 100-300 units or a late receipt
    span: bool = True  # operations that may pause over breaks
    multi_mode: bool = True  # 1-3 eligible machines per operation
    zero_durations: bool = True
    setups: bool = True  # families, SetupTime, default_setup, initial_family
    pool: bool = True  # one operator pool, capacity 1-2
    materials: bool = True  # stock and receipts, consumption at start
    fine_quantities: bool = True  # quantities such as 0.3333
    lags: bool = True  # explicit predecessor lists with min/max lags
    negative_lags: bool = True
    dates: bool = True  # release, due, deadline, priority
    groups: bool = True  # one_group orders with mode groups
    fixed_work: bool = True  # now > 0 with started / done operations
    objectives: bool = True  # weights mixing makespan, weighted tardiness, setup
    lexicographic: bool = True  # sometimes a lexicographic objective instead of weights


def _working(windows: list[tuple[int, int]], t: int) -> bool:
    return not any(s <= t < e for s, e in windows)


def _rigid_start(windows: list[tuple[int, int]], t: int, d: int) -> int:
    """Earliest start >= t with [start, start + d) in working time (mirrors the semantics, not the solver)."""
    while True:
        hit = next(((s, e) for s, e in windows if s < t + max(d, 1) and e > t), None)
        if hit is None:
            return t
        t = hit[1]


def _span_placement(windows: list[tuple[int, int]], t: int, d: int) -> tuple[int, int]:
    """(start, end) of an operation that may pause: start in working time, end after d working units."""
    while not _working(windows, t):
        t += 1
    if d == 0:
        return t, t
    left, cur = d, t
    while left:
        if _working(windows, cur):
            left -= 1
        cur += 1
    return t, cur


@st.composite
def calendars(draw: st.DrawFn, f: Features, machine: bool = True) -> Calendar:
    """24h or a shift pattern (period 100), plus 0-2 maintenance/breakdown downtimes."""
    shape = draw(st.sampled_from(list(SHIFT_PATTERNS))) if f.calendars and machine else "24h"
    shifts = [TimeWindow(start=s, end=e) for s, e in SHIFT_PATTERNS[shape]]
    downtimes: list[Downtime] = []
    if f.downtimes:
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.integers(0, 250))
            kind = draw(st.sampled_from([DowntimeKind.MAINTENANCE, DowntimeKind.BREAKDOWN]))
            length = draw(st.integers(100, 300)) if f.long_windows and draw(st.integers(0, 5)) == 0 else None
            downtimes.append(Downtime(start=start, end=start + (length or draw(st.integers(5, 40))), kind=kind))
    return Calendar(period=PERIOD if shifts else None, shifts=shifts, downtimes=downtimes)


@st.composite
def machine_resources(draw: st.DrawFn, f: Features, count: int) -> list[Resource]:
    """``count`` machines, each with its own calendar and maybe setups."""
    out: list[Resource] = []
    for i in range(count):
        setups: list[SetupTime] = []
        default_setup = 0
        initial: str | None = None
        if f.setups and draw(st.booleans()):
            pairs = [(a, b) for a in FAMILIES for b in FAMILIES if a != b]
            for a, b in draw(st.lists(st.sampled_from(pairs), max_size=4, unique=True)):
                setups.append(SetupTime(from_family=a, to_family=b, time=draw(st.integers(0, 10))))
            default_setup = draw(st.integers(0, 5))
            initial = draw(st.none() | st.sampled_from(FAMILIES))
        out.append(
            Resource(
                id=f"M{i + 1}",
                calendar=draw(calendars(f)),
                setups=setups,
                default_setup=default_setup,
                initial_family=initial,
            )
        )
    return out


def _max_setup(r: Resource) -> int:
    return max([r.default_setup, *(s.time for s in r.setups)])


@st.composite
def problems(
    draw: st.DrawFn,
    features: Features | None = None,
    max_orders: int = 5,
    max_ops: int = 4,
    max_machines: int = 5,
) -> Problem:
    """A small rich problem that passes :func:`paichan.domain.validate` (it may still be infeasible)."""
    f = features or Features()
    n_machines = draw(st.integers(2, max_machines))
    machines = draw(machine_resources(f, n_machines))
    resources: list[Resource] = list(machines)
    pool: Resource | None = None
    if f.pool and draw(st.booleans()):
        pool = Resource(
            id=POOL, kind=ResourceKind.POOL, capacity=draw(st.integers(1, 2)), calendar=draw(calendars(f, False))
        )
        resources.append(pool)
    line_of = {m.id: ("L1" if i % 2 == 0 else "L2") for i, m in enumerate(machines)}

    n_materials = draw(st.integers(0, 2)) if f.materials else 0
    quantities = PLAIN_QUANTITIES + (FINE_QUANTITIES if f.fine_quantities else ())
    demand = [0.0] * n_materials

    orders: list[Order] = []
    all_ops: list[str] = []
    for o in range(draw(st.integers(1, max_orders))):
        oid = f"O{o + 1}"
        grouped = f.groups and draw(st.integers(0, 3)) == 0
        ops: list[Operation] = []
        for k in range(draw(st.integers(1, max_ops))):
            n_modes = draw(st.integers(1, min(3, n_machines))) if f.multi_mode else 1
            chosen = draw(st.lists(st.sampled_from(machines), min_size=n_modes, max_size=n_modes,
                                   unique_by=lambda r: r.id))
            span = f.span and draw(st.booleans())
            modes = []
            for r in chosen:
                dur = draw(st.integers(0, 15) if f.zero_durations else st.integers(1, 15))
                secondary = []
                if pool is not None and draw(st.integers(0, 2)) == 0:
                    secondary = [SecondaryUse(resource=POOL, amount=draw(st.integers(1, pool.capacity)))]
                group = line_of[r.id] if f.groups and draw(st.integers(0, 2)) > 0 else None
                modes.append(Mode(resource=r.id, duration=dur, secondary=secondary, group=group))
            preds: list[Predecessor] | None = None
            if f.lags and draw(st.integers(0, 2)) == 0:
                earlier = [op.id for op in ops] + (all_ops if draw(st.integers(0, 3)) == 0 else [])
                picked = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)) if earlier else []
                preds = []
                for p in picked:
                    lo = draw(st.integers(-8 if f.negative_lags else 0, 10))
                    hi = None if draw(st.integers(0, 2)) else lo + draw(st.integers(0, 25))
                    preds.append(Predecessor(operation=p, min_lag=lo, max_lag=hi))
            materials: list[MaterialUse] = []
            for mi in range(n_materials):
                if draw(st.integers(0, 2)) == 0:
                    q = draw(st.sampled_from(quantities))
                    materials.append(MaterialUse(material=f"R{mi + 1}", quantity=q))
                    demand[mi] += q
            family = draw(st.none() | st.sampled_from(FAMILIES)) if f.setups else None
            ops.append(
                Operation(id=f"{oid}-{k + 1}", modes=modes, family=family, predecessors=preds,
                          materials=materials, can_span_breaks=span)
            )
        all_ops += [op.id for op in ops]
        release = draw(st.integers(0, 50)) if f.dates and draw(st.booleans()) else 0
        due = release + draw(st.integers(10, 150)) if f.dates and draw(st.booleans()) else None
        deadline = release + draw(st.integers(40, 300)) if f.dates and draw(st.integers(0, 3)) == 0 else None
        priority = draw(st.integers(0, 3)) if f.dates else 1
        orders.append(Order(id=oid, release=release, due=due, deadline=deadline, priority=priority,
                            one_group=grouped, operations=ops))

    materials_out: list[Material] = []
    for mi in range(n_materials):
        need = demand[mi]
        stock = round(need * draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])), 4)
        receipts: list[Receipt] = []
        rest = need - stock
        parts = draw(st.integers(1, 2))
        for j in range(parts):
            qty = round(rest / parts, 4) + (draw(st.sampled_from([0.0, 0.5, 1.0])) if j == parts - 1 else 0.0)
            if qty > 0:
                late = f.long_windows and draw(st.integers(0, 5)) == 0
                when = draw(st.integers(300, 500) if late else st.integers(0, 200))
                receipts.append(Receipt(time=when, quantity=qty))
        if sum(r.quantity for r in receipts) + stock < need - 1e-9:  # rounding: top up the stock
            stock = round(stock + 0.001, 4)
        materials_out.append(Material(id=f"R{mi + 1}", stock=stock, receipts=receipts))

    now = draw(st.integers(10, 80)) if f.fixed_work and draw(st.booleans()) else 0
    problem = Problem(name="agreement", now=now, resources=resources, orders=orders, materials=materials_out,
                      objective=draw(objectives(f)))
    if now:
        _fix_shop_floor(draw, problem)
        problem = Problem.model_validate_json(problem.model_dump_json())  # re-run the field validators
    assume(not find_problems(problem))
    return problem


@st.composite
def objectives(draw: st.DrawFn, f: Features) -> Objective:
    """Weights mixing makespan, weighted tardiness and setup (at least one positive)."""
    if not f.objectives:
        return Objective()
    terms = [ObjectiveName.MAKESPAN, ObjectiveName.WEIGHTED_TARDINESS, ObjectiveName.SETUP]
    if f.lexicographic and draw(st.integers(0, 5)) == 0:
        return Objective(lexicographic=draw(st.permutations(terms).map(lambda ts: ts[: 1 + len(ts) // 2])))
    weights = {
        ObjectiveName.MAKESPAN: draw(st.sampled_from([0, 1, 2])),
        ObjectiveName.WEIGHTED_TARDINESS: draw(st.sampled_from([0, 1, 3])),
        ObjectiveName.SETUP: draw(st.sampled_from([0, 1])),
    }
    if not any(weights.values()):
        weights[ObjectiveName.MAKESPAN] = 1
    return Objective(weights=weights)


def _fix_shop_floor(draw: st.DrawFn, problem: Problem) -> None:
    """Turn a prefix of some orders into done / started work, consistent with calendars, lags and setups.

    Fixed operations are laid out one machine at a time (and one at a time on the
    pool), after every predecessor plus its min lag and within its max lag, with a
    gap of the machine's largest setup before each; a done one ends by ``now``, a
    started one starts before ``now``. An operation is fixed only if all its
    predecessors are done, so planned work never has to precede fixed work.
    """
    now = problem.now
    res = {r.id: r for r in problem.resources}
    windows = {r.id: r.calendar.unavailable(PLAN_HORIZON) for r in problem.resources}
    cursor: dict[str, int] = {}
    pool_free = 0
    done_end: dict[str, int] = {}
    for order in problem.orders:
        n_fixed = draw(st.integers(0, min(2, len(order.operations))))
        for k, op in enumerate(order.operations[:n_fixed]):
            links = (
                [(order.operations[k - 1].id, 0, None)] if k > 0 else []
            ) if op.predecessors is None else [(p.operation, p.min_lag, p.max_lag) for p in op.predecessors]
            if any(p not in done_end for p, _, _ in links):
                break
            mi = draw(st.integers(0, len(op.modes) - 1))
            mode = op.modes[mi]
            machine = res[mode.resource]
            gap = _max_setup(machine)
            t = max([cursor.get(machine.id, 0) + gap] + [done_end[p] + lo for p, lo, _ in links] + [0])
            if mode.secondary:
                t = max(t, pool_free)
            t += draw(st.integers(0, 5))
            win = windows[machine.id]
            if op.can_span_breaks:
                start, end = _span_placement(win, t, mode.duration)
            else:
                start = _rigid_start(win, t, mode.duration)
                end = start + mode.duration
            if any(hi is not None and start > done_end[p] + hi for p, _, hi in links) or start >= now:
                break
            started = end > now or (k == n_fixed - 1 and draw(st.booleans()))
            if not started:  # the shop floor may report a done operation a little late
                end = min(now, end + draw(st.integers(0, 3)))
            if started and op.can_span_breaks and mode.duration > 1 and draw(st.integers(0, 2)) == 0:
                # a breakdown while it runs: it pauses and resumes after the repair
                down = Downtime(start=start + 1, end=start + 1 + draw(st.integers(1, 20)), kind=DowntimeKind.BREAKDOWN)
                machine.calendar.downtimes.append(down)
                windows[machine.id] = machine.calendar.unavailable(PLAN_HORIZON)
                start, end = _span_placement(windows[machine.id], start, mode.duration)
            op.status = OperationStatus.STARTED if started else OperationStatus.DONE
            op.actual = Actual(resource=machine.id, start=start, end=None if started else end)
            cursor[machine.id] = end
            if mode.secondary:
                pool_free = end
            if started:
                break
            done_end[op.id] = end

"""Independent feasibility checker: does a schedule obey every rule of its problem?

This module deliberately imports nothing from :mod:`paichan.solver`. It restates
the scheduling rules from scratch, with plain sweeps over sorted lists, so that a
bug in the solver's model cannot hide behind the same bug here. Every rule
produces :class:`Violation` records naming the operation, the resource and the
numbers involved; :func:`check` collects them all and :func:`assert_feasible`
turns them into an exception for tests and benchmarks.

Rules checked (the contract shared with the solver):

1. coverage: each operation scheduled exactly once, no unknown ids, right order id;
2. mode: a valid mode index whose machine is the scheduled resource;
3. duration and machine calendar (with or without pausing over breaks);
4. machines: no overlap, changeovers reserved before each operation;
5. pools: capacity at every instant, no use during the pool's own downtime;
6. precedence with min and max lags;
7. release date and ``now`` for planned operations;
8. hard order deadlines;
9. material stock never negative, consumption at operation start (started and
   done operations have consumed already: ``Material.stock`` is stock now);
10. started and done operations stay where the shop floor reported them;
11. an order with ``one_group`` runs all its operations in modes of one group.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from itertools import accumulate, pairwise

from pydantic import BaseModel, Field

from paichan.checker.calendar import non_working
from paichan.domain import (
    KPIs,
    Mode,
    Operation,
    OperationStatus,
    Order,
    Problem,
    Resource,
    ResourceKind,
    Schedule,
    ScheduledOperation,
)

MATERIAL_TOLERANCE = 1e-6  # stock may dip this far below zero (float rounding)
MAX_LISTED = 20  # violations quoted in a ScheduleInvalid message


class Violation(BaseModel):
    """One broken rule, with the operation concerned and a readable explanation."""

    kind: str
    operation: str | None
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


class CheckReport(BaseModel):
    """Everything :func:`check` found, plus KPIs when every operation is scheduled."""

    violations: list[Violation] = Field(default_factory=list)
    kpis: KPIs | None = None

    @property
    def ok(self) -> bool:
        """True when the schedule breaks no rule."""
        return not self.violations


class ScheduleInvalid(AssertionError):
    """Raised by :func:`assert_feasible`; carries the full :class:`CheckReport`."""

    def __init__(self, report: CheckReport):
        self.report = report
        shown = report.violations[:MAX_LISTED]
        lines = "\n".join(f"  - {v}" for v in shown)
        more = len(report.violations) - len(shown)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"schedule is infeasible: {len(report.violations)} violation(s):\n{lines}{tail}")


def check(problem: Problem, schedule: Schedule) -> CheckReport:
    """Check ``schedule`` against every rule of ``problem``; never raises on bad input."""
    checker = _Checker(problem, schedule)
    violations = checker.run()
    complete = not any(v.kind == "missing" for v in violations)
    entries = {oid: p.entry for oid, p in checker.placed.items()}
    kpis = _kpis(problem, entries) if complete else None
    return CheckReport(violations=violations, kpis=kpis)


def assert_feasible(problem: Problem, schedule: Schedule) -> KPIs:
    """Return the schedule's KPIs, or raise :class:`ScheduleInvalid` listing what is wrong."""
    report = check(problem, schedule)
    if not report.ok or report.kpis is None:
        raise ScheduleInvalid(report)
    return report.kpis


def compute_kpis(problem: Problem, schedule: Schedule) -> KPIs:
    """Makespan, tardiness, setup and utilisation of ``schedule``.

    Only entries for operations of ``problem`` count (the first one if an
    operation is listed twice), so the figures stay meaningful for a schedule
    that also has other defects.
    """
    return _kpis(problem, _first_entries(problem, schedule))


def _kpis(problem: Problem, entries: dict[str, ScheduledOperation]) -> KPIs:
    """KPIs from the schedule entry of each (scheduled) operation, keyed by operation id."""
    makespan = max((e.end for e in entries.values()), default=0)

    weighted = total = late = 0
    for order in problem.orders:
        ends = [entries[op.id].end for op in order.operations if op.id in entries]
        if order.due is None or not ends:
            continue
        tardiness = max(0, max(ends) - order.due)
        weighted += order.priority * tardiness
        total += tardiness
        late += tardiness > 0

    busy: dict[str, int] = defaultdict(int)
    for e in entries.values():
        busy[e.resource] += max(0, e.end - e.start)
    utilisation = {
        r.id: (busy[r.id] / makespan if makespan > 0 else 0.0)
        for r in problem.resources
        if r.kind == ResourceKind.MACHINE
    }
    return KPIs(
        makespan=makespan,
        weighted_tardiness=weighted,
        total_tardiness=total,
        late_orders=late,
        total_setup=_required_setup(problem, entries),
        utilisation=utilisation,
    )


# --------------------------------------------------------------------------- helpers


def _required_setup(problem: Problem, entries: dict[str, ScheduledOperation]) -> int:
    """Changeover time the machine sequences need: a property of the sequence, not of what the
    schedule chose to reserve (reserving more is allowed, counting it would reward padding)."""
    families = {op.id: op.family for _, op in problem.operations()}
    by_machine: dict[str, list[ScheduledOperation]] = defaultdict(list)
    for e in entries.values():
        if e.end > e.start:  # zero-duration work takes no machine time and no changeover
            by_machine[e.resource].append(e)
    total = 0
    for r in problem.resources:
        seq = sorted(by_machine.get(r.id, []), key=lambda e: (e.start, e.end, e.operation))
        previous = r.initial_family
        for e in seq:
            total += r.setup_time(previous, families.get(e.operation))
            previous = families.get(e.operation)
    return total


def _first_entries(problem: Problem, schedule: Schedule) -> dict[str, ScheduledOperation]:
    """The first schedule entry of each operation of the problem (unknown ids dropped)."""
    known = {op.id for _, op in problem.operations()}
    entries: dict[str, ScheduledOperation] = {}
    for e in schedule.operations:
        if e.operation in known and e.operation not in entries:
            entries[e.operation] = e
    return entries


class _Windows:
    """Sorted, disjoint half-open non-working windows answering queries in O(log n)."""

    def __init__(self, windows: list[tuple[int, int]]):
        self.starts = [s for s, _ in windows]
        self.ends = [e for _, e in windows]
        self.prefix = [0, *accumulate(e - s for s, e in windows)]

    def containing(self, t: int) -> tuple[int, int] | None:
        """The window that contains instant ``t``, if any."""
        i = bisect_right(self.starts, t) - 1
        if i >= 0 and t < self.ends[i]:
            return self.starts[i], self.ends[i]
        return None

    def first_intersecting(self, start: int, end: int) -> tuple[int, int] | None:
        """The earliest window sharing time with ``[start, end)``, if any."""
        i = bisect_right(self.ends, start)
        if start < end and i < len(self.starts) and self.starts[i] < end:
            return self.starts[i], self.ends[i]
        return None

    def overlap(self, start: int, end: int) -> int:
        """Total non-working time inside ``[start, end)``."""
        if end <= start:
            return 0
        i = bisect_right(self.ends, start)  # first window ending after start
        j = bisect_left(self.starts, end)  # first window starting at or after end
        if i >= j:
            return 0
        total = self.prefix[j] - self.prefix[i]
        total -= max(0, start - self.starts[i])  # clip the first window
        total -= max(0, self.ends[j - 1] - end)  # clip the last window
        return total


@dataclass(slots=True)
class _Placed:
    """An operation of the problem matched with its (first) schedule entry."""

    order: Order
    op: Operation
    position: int  # index of the operation in its order's routing
    entry: ScheduledOperation
    mode: Mode | None  # None when entry.mode is not a valid index
    fixed: bool  # started or done: the shop floor, not the scheduler, decides where it is


class _Checker:
    """Runs every rule once and accumulates violations in rule order."""

    def __init__(self, problem: Problem, schedule: Schedule):
        self.problem = problem
        self.schedule = schedule
        self.resources: dict[str, Resource] = {r.id: r for r in problem.resources}
        self.out: list[Violation] = []
        self.placed: dict[str, _Placed] = {}
        self.horizon = 1 + max((max(e.start, e.end) for e in schedule.operations), default=0)
        self._windows: dict[str, _Windows] = {}

    def add(self, kind: str, operation: str | None, message: str) -> None:
        self.out.append(Violation(kind=kind, operation=operation, message=message))

    def windows(self, resource: Resource) -> _Windows:
        """Non-working windows of ``resource`` up to the horizon (cached)."""
        if resource.id not in self._windows:
            self._windows[resource.id] = _Windows(non_working(resource.calendar, max(1, self.horizon)))
        return self._windows[resource.id]

    def run(self) -> list[Violation]:
        self.coverage()
        self.modes()
        self.durations()
        self.machines()
        self.pools()
        self.precedence()
        self.dates()
        self.materials()
        self.fixed_work()
        self.groups()
        return self.out

    # 11 ------------------------------------------------------------------ groups
    def groups(self) -> None:
        """Orders with ``one_group``: all chosen modes belong to one group (one line)."""
        for order in self.problem.orders:
            if not order.one_group:
                continue
            seen: dict[str, str] = {}
            for op in order.operations:
                p = self.placed.get(op.id)
                if p is not None and p.mode is not None and p.mode.group is not None:
                    seen.setdefault(p.mode.group, op.id)
            if len(seen) > 1:
                where = ", ".join(f"{g} ({o})" for g, o in seen.items())
                self.add("group", next(iter(seen.values())),
                         f"order '{order.id}' must run in one group but uses {where}")

    # 1 ------------------------------------------------------------------ coverage
    def coverage(self) -> None:
        """Each operation exactly once, no strangers, the right order id."""
        where: dict[str, tuple[Order, int, Operation]] = {}
        for order in self.problem.orders:
            for k, op in enumerate(order.operations):
                where.setdefault(op.id, (order, k, op))
        for e in self.schedule.operations:
            if e.operation not in where:
                self.add("unknown_operation", e.operation, f"schedule lists unknown operation '{e.operation}'")
                continue
            if e.operation in self.placed:
                self.add("duplicate", e.operation, f"operation '{e.operation}' is scheduled more than once")
                continue
            order, k, op = where[e.operation]
            mode = op.modes[e.mode] if e.mode < len(op.modes) else None
            self.placed[op.id] = _Placed(order, op, k, e, mode, op.status != OperationStatus.PLANNED)
            if e.order != order.id:
                self.add(
                    "order", op.id, f"operation '{op.id}' belongs to order '{order.id}', schedule says '{e.order}'"
                )
        for order in self.problem.orders:
            for op in order.operations:
                if op.id not in self.placed:
                    self.add("missing", op.id, f"operation '{op.id}' of order '{order.id}' is not scheduled")

    # 2 ---------------------------------------------------------------------- modes
    def modes(self) -> None:
        """The mode index exists and its machine is the scheduled resource."""
        for p in self.placed.values():
            e = p.entry
            if p.mode is None:
                self.add(
                    "mode", p.op.id, f"operation '{p.op.id}' has {len(p.op.modes)} mode(s); mode {e.mode} is invalid"
                )
            elif e.resource != p.mode.resource:
                self.add(
                    "mode",
                    p.op.id,
                    f"operation '{p.op.id}' mode {e.mode} runs on '{p.mode.resource}', scheduled on '{e.resource}'",
                )
            if e.resource not in self.resources:
                self.add("mode", p.op.id, f"operation '{p.op.id}' is scheduled on unknown resource '{e.resource}'")

    # 3 ------------------------------------------------------------ duration/calendar
    def durations(self) -> None:
        """Elapsed time matches the mode duration and respects the machine calendar."""
        for p in self.placed.values():
            if p.mode is None or p.fixed:
                continue  # invalid mode is reported already; fixed work is checked in rule 10
            e, op, d = p.entry, p.op, p.mode.duration
            resource = self.resources.get(e.resource)
            if d == 0:
                if e.end != e.start:
                    self.add("duration", op.id, f"operation '{op.id}' has duration 0 but runs [{e.start}, {e.end})")
                continue
            win = self.windows(resource) if resource is not None else _Windows([])
            if not op.can_span_breaks:
                if e.end - e.start != d:
                    self.add(
                        "duration",
                        op.id,
                        f"operation '{op.id}' runs [{e.start}, {e.end}) = {e.end - e.start}, mode duration is {d}",
                    )
                hit = win.first_intersecting(e.start, e.end)
                if hit is not None:
                    self.add(
                        "calendar",
                        op.id,
                        f"operation '{op.id}' [{e.start}, {e.end}) on '{e.resource}' overlaps non-working "
                        f"window [{hit[0]}, {hit[1]}) and may not span breaks",
                    )
                continue
            working = (e.end - e.start) - win.overlap(e.start, e.end)
            if working != d:
                self.add(
                    "duration",
                    op.id,
                    f"operation '{op.id}' [{e.start}, {e.end}) holds {working} working time on '{e.resource}', "
                    f"mode duration is {d}",
                )
            ends = [("last", e.end - 1)] if e.end > e.start else []
            for what, t in [("first", e.start), *ends]:
                hit = win.containing(t)
                if hit is not None:
                    self.add(
                        "calendar",
                        op.id,
                        f"operation '{op.id}' [{e.start}, {e.end}): its {what} time unit {t} lies inside "
                        f"non-working window [{hit[0]}, {hit[1]}) of '{e.resource}'",
                    )

    # 4 ------------------------------------------------------------------- machines
    def machines(self) -> None:
        """One operation at a time per machine, with changeover time reserved in between."""
        by_machine: dict[str, list[_Placed]] = defaultdict(list)
        for p in self.placed.values():
            r = self.resources.get(p.entry.resource)
            if r is not None and r.kind == ResourceKind.MACHINE and p.entry.end > p.entry.start:
                by_machine[r.id].append(p)
        for rid, ops in by_machine.items():
            machine = self.resources[rid]
            ops.sort(key=lambda p: (p.entry.start, p.entry.end, p.op.id))
            first = ops[0]
            required = machine.setup_time(machine.initial_family, first.op.family)
            self._setup(machine, first, None, required, 0)
            longest = first  # the operation with the latest end so far
            for a, b in pairwise(ops):
                if b.entry.start < longest.entry.end:
                    self.add(
                        "overlap",
                        b.op.id,
                        f"operations '{b.op.id}' [{b.entry.start}, {b.entry.end}) and '{longest.op.id}' "
                        f"[{longest.entry.start}, {longest.entry.end}) overlap on machine '{rid}'",
                    )
                else:
                    required = machine.setup_time(a.op.family, b.op.family)
                    self._setup(machine, b, a, required, a.entry.end)
                if b.entry.end > longest.entry.end:
                    longest = b

    def _setup(self, machine: Resource, b: _Placed, a: _Placed | None, required: int, free_from: int) -> None:
        """``b`` reserves at least ``required`` changeover after ``free_from`` (end of ``a`` or 0)."""
        e = b.entry
        if a is not None:
            after = f"after '{a.op.id}' (family {a.op.family!r})"
        else:
            after = f"from initial family {machine.initial_family!r}"
        if e.setup_before < required:
            self.add(
                "setup",
                b.op.id,
                f"operation '{b.op.id}' (family {b.op.family!r}) on '{machine.id}' {after} needs setup "
                f"{required}, reserves {e.setup_before}",
            )
        if e.start - e.setup_before < free_from:
            self.add(
                "setup",
                b.op.id,
                f"setup of operation '{b.op.id}' on '{machine.id}' starts at {e.start - e.setup_before}, "
                f"before the machine is free at {free_from}",
            )

    # 5 ---------------------------------------------------------------------- pools
    def pools(self) -> None:
        """Secondary pools never exceed capacity and are not used while unavailable."""
        events: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for p in self.placed.values():
            e = p.entry
            if p.mode is None or e.end <= e.start:
                continue
            for use in p.mode.secondary:
                pool = self.resources.get(use.resource)
                if pool is None or pool.kind != ResourceKind.POOL:
                    self.add("pool", p.op.id, f"operation '{p.op.id}' uses '{use.resource}', which is not a pool")
                    continue
                events[pool.id].append((e.start, use.amount, p.op.id))
                events[pool.id].append((e.end, -use.amount, p.op.id))
                hit = None if p.fixed else self.windows(pool).first_intersecting(e.start, e.end)
                if hit is not None:
                    self.add(
                        "pool",
                        p.op.id,
                        f"operation '{p.op.id}' [{e.start}, {e.end}) uses pool '{pool.id}' during its "
                        f"non-working window [{hit[0]}, {hit[1]})",
                    )
        for pid, evs in events.items():
            capacity = self.resources[pid].capacity
            evs.sort(key=lambda ev: (ev[0], ev[1]))  # releases (negative) before new uses at the same instant
            load = 0
            for t, delta, opid in evs:
                load += delta
                if delta > 0 and load > capacity:
                    self.add(
                        "pool",
                        opid,
                        f"pool '{pid}' holds {load} > capacity {capacity} at {t} when operation '{opid}' starts",
                    )

    # 6 ----------------------------------------------------------------- precedence
    def precedence(self) -> None:
        """``min_lag <= start(op) - end(pred) <= max_lag`` for every link not between two started/done operations."""
        for p in self.placed.values():
            links: list[tuple[str, int, int | None]]
            if p.op.predecessors is None:
                links = [(p.order.operations[p.position - 1].id, 0, None)] if p.position > 0 else []
            else:
                links = [(link.operation, link.min_lag, link.max_lag) for link in p.op.predecessors]
            for pred_id, min_lag, max_lag in links:
                pred = self.placed.get(pred_id)
                if pred is None:
                    continue  # reported as missing (or an invalid problem)
                if p.fixed and pred.fixed:
                    continue  # both happened already: the shop floor's order is history, nothing to plan
                gap = p.entry.start - pred.entry.end
                if gap < min_lag:
                    self.add(
                        "precedence",
                        p.op.id,
                        f"operation '{p.op.id}' starts at {p.entry.start}, {gap} after predecessor '{pred_id}' "
                        f"ends at {pred.entry.end}; min lag is {min_lag}",
                    )
                if max_lag is not None and gap > max_lag:
                    self.add(
                        "max_lag",
                        p.op.id,
                        f"operation '{p.op.id}' starts at {p.entry.start}, {gap} after predecessor '{pred_id}' "
                        f"ends at {pred.entry.end}; max lag is {max_lag}",
                    )

    # 7, 8 ---------------------------------------------------------------- dates
    def dates(self) -> None:
        """Planned work starts after release and now; every order ends by its deadline."""
        now = self.problem.now
        for p in self.placed.values():
            e = p.entry
            if not p.fixed:
                if e.start < p.order.release:
                    self.add(
                        "release",
                        p.op.id,
                        f"operation '{p.op.id}' starts at {e.start}, before order '{p.order.id}' release "
                        f"{p.order.release}",
                    )
                if e.start < now:
                    self.add("now", p.op.id, f"planned operation '{p.op.id}' starts at {e.start}, before now ({now})")
            if p.order.deadline is not None and e.end > p.order.deadline:
                self.add(
                    "deadline",
                    p.op.id,
                    f"operation '{p.op.id}' ends at {e.end}, after order '{p.order.id}' deadline {p.order.deadline}",
                )

    # 9 ------------------------------------------------------------------ materials
    def materials(self) -> None:
        """Stock plus receipts so far never falls below consumption so far."""
        materials = {m.id: m for m in self.problem.materials}
        uses: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
        for p in self.placed.values():
            if p.op.status != OperationStatus.PLANNED:
                continue  # already consumed: stock is "stock now"
            for use in p.op.materials:
                if use.material not in materials:
                    self.add("material", p.op.id, f"operation '{p.op.id}' uses unknown material '{use.material}'")
                else:
                    uses[use.material].append((p.entry.start, use.quantity, p.op.id))
        for mid, consumption in uses.items():
            material = materials[mid]
            # (time, kind, quantity, op): receipts (kind 0) count before consumption (kind 1) at equal times
            events = [(r.time, 0, r.quantity, "") for r in material.receipts]
            events += [(t, 1, q, opid) for t, q, opid in consumption]
            events.sort()
            balance = material.stock
            i = 0
            while i < len(events):
                t = events[i][0]
                consumers: list[str] = []
                while i < len(events) and events[i][0] == t:
                    _, kind, qty, opid = events[i]
                    balance += -qty if kind else qty
                    if kind:
                        consumers.append(opid)
                    i += 1
                if consumers and balance < -MATERIAL_TOLERANCE:
                    names = ", ".join(f"'{c}'" for c in consumers)
                    self.add(
                        "material",
                        consumers[0],
                        f"material '{mid}' is short by {-balance:g} at {t} when operation(s) {names} start",
                    )

    # 10 -------------------------------------------------------------- fixed work
    def fixed_work(self) -> None:
        """Started and done operations stay on the reported resource and times; pinned ones at their pin."""
        for p in self.placed.values():
            pin = p.op.pin
            if pin is not None and not p.fixed:
                if p.entry.resource != pin.resource:
                    self.add("pinned", p.op.id,
                             f"pinned operation '{p.op.id}' is on '{p.entry.resource}', its pin says '{pin.resource}'")
                if p.entry.start != pin.start:
                    self.add("pinned", p.op.id,
                             f"pinned operation '{p.op.id}' starts at {p.entry.start}, its pin says {pin.start}")
            if not p.fixed or p.op.actual is None:
                continue
            e, op, actual = p.entry, p.op, p.op.actual
            status = op.status.value
            if e.resource != actual.resource:
                self.add(
                    "fixed",
                    op.id,
                    f"{status} operation '{op.id}' is on '{actual.resource}', schedule says '{e.resource}'",
                )
            if e.start != actual.start:
                self.add(
                    "fixed",
                    op.id,
                    f"{status} operation '{op.id}' started at {actual.start}, schedule says {e.start}",
                )
            if op.status == OperationStatus.DONE:
                if e.end != actual.end:
                    self.add("fixed", op.id, f"done operation '{op.id}' ended at {actual.end}, schedule says {e.end}")
                continue
            mode = p.mode if p.mode is not None and p.mode.resource == actual.resource else None
            if mode is None:
                mode = next((m for m in op.modes if m.resource == actual.resource), None)
            if mode is None:
                self.add(
                    "fixed",
                    op.id,
                    f"started operation '{op.id}' runs on '{actual.resource}', which none of its modes uses",
                )
            elif op.can_span_breaks:
                # a running operation pauses over breaks and breakdowns, then resumes
                resource = self.resources.get(actual.resource)
                win = self.windows(resource) if resource is not None else None
                working = (e.end - e.start) - (win.overlap(e.start, e.end) if win is not None else 0)
                if working != mode.duration:
                    self.add(
                        "fixed",
                        op.id,
                        f"started operation '{op.id}' [{e.start}, {e.end}) holds {working} working time, "
                        f"needs {mode.duration}",
                    )
            elif e.end != e.start + mode.duration:
                self.add(
                    "fixed",
                    op.id,
                    f"started operation '{op.id}' should end at {e.start} + {mode.duration} = "
                    f"{e.start + mode.duration}, schedule says {e.end}",
                )

"""Seeded generators of factory-shaped problems, for benchmarks and tests.

:func:`factory_instance` builds the kind of problem a real plant hands over, with every
constraint type at once (mixed shift calendars with maintenance, flexible machines with
different speeds, sequence-dependent setups, an operator pool, release/due dates with
priorities, optionally materials with receipts over time), so solvers are compared on more
than the plain job shops of the literature. Depends only on :mod:`paichan.domain`.
"""

from __future__ import annotations

import math
import random
from datetime import datetime

from paichan.domain import (
    Calendar,
    Downtime,
    DowntimeKind,
    Material,
    MaterialUse,
    Mode,
    Objective,
    ObjectiveName,
    Operation,
    Order,
    Predecessor,
    Problem,
    Receipt,
    Resource,
    ResourceKind,
    SecondaryUse,
    SetupTime,
    TimeWindow,
)

__all__ = ["STAGES", "factory_instance"]

DAY = 1440


class _Stage:
    """A production stage: duration range, and which features its operations have."""

    def __init__(self, name: str, durations: tuple[int, int], *, setups: bool = False, manned: float = 0.0,
                 spans: bool = False, lag_after: int = 0):
        self.name, self.durations, self.setups = name, durations, setups
        self.manned = manned  # share of the stage's machines that need an operator from the pool
        self.spans = spans  # operations may pause over breaks (manual work resumes next shift)
        self.lag_after = lag_after  # min lag before the next step (cooling, drying)


STAGES: tuple[_Stage, ...] = (
    _Stage("cut", (20, 60), setups=True),
    _Stage("mill", (30, 120), manned=0.3),
    _Stage("weld", (40, 180), manned=0.7, spans=True),
    _Stage("paint", (30, 90), setups=True, lag_after=45),
    _Stage("assemble", (30, 150), manned=0.8, spans=True),
    _Stage("pack", (10, 40)),
)
FAMILIES = ("white", "grey", "blue", "black")
OPS_PER_MACHINE = 30  # target operations per machine (about); sets machines per stage


def _calendar(rng: random.Random, kind: str, maintenance_day: int) -> Calendar:
    """24 h, two shifts (06:00-22:00) or day shift (06:00-14:00), plus one maintenance window."""
    shifts = {"24h": [], "2-shift": [TimeWindow(start=360, end=1320)], "day": [TimeWindow(start=360, end=840)]}[kind]
    start = maintenance_day * DAY + (360 if kind != "24h" else rng.choice([0, 360, 720, 1080]))
    length = rng.choice([120, 180, 240])
    down = Downtime(start=start, end=start + length, kind=DowntimeKind.MAINTENANCE, reason="planned maintenance")
    return Calendar(period=DAY if shifts else None, shifts=shifts, downtimes=[down])


def _working_per_day(kind: str) -> int:
    return {"24h": 1440, "2-shift": 960, "day": 480}[kind]


def factory_instance(operations: int, seed: int, *, materials: bool = True, spanning: bool = True) -> Problem:
    """A seeded factory problem of about ``operations`` operations (within 2).

    Orders of 3-6 steps through the stages cut -> mill -> weld -> paint -> assemble -> pack
    (skipping some); 2-3 eligible machines per step with different speeds; machines on 24 h,
    two-shift or day-shift calendars with one maintenance window each; product-family setups
    on the cutting and painting machines; an operator pool for manned machines; release, due
    dates and priorities; objective 100 x weighted tardiness + makespan. ``materials`` adds
    two materials (stock plus daily receipts) consumed by each order's first step;
    ``spanning=False`` makes every operation fit wholly inside working time (no pausing
    over breaks), for peers without that notion. Due dates are set from the bottleneck
    stage's load so that good schedules are mostly, but not entirely, on time.
    """
    if operations < 3:
        raise ValueError("operations must be at least 3")
    rng = random.Random(seed)

    # Routings first: they fix how much work each stage gets.
    routes: list[list[int]] = []
    total = 0
    while operations - total >= 3:
        k = min(rng.randint(3, 6), operations - total)
        if 0 < operations - total - k < 3:  # leave no remainder too short for an order
            k = operations - total if operations - total <= 6 else operations - total - 3
        routes.append(sorted(rng.sample(range(len(STAGES)), k)))
        total += k
    per_stage = [sum(s in r for r in routes) for s in range(len(STAGES))]

    # Machines: speed factor, calendar kind, manned or not; setups on setup stages.
    weights = {"24h": 0.3, "2-shift": 0.45, "day": 0.25}
    setup_matrix = {(a, b): (15 + 15 * abs(i - j) + (30 if j < i else 0))
                    for i, a in enumerate(FAMILIES) for j, b in enumerate(FAMILIES) if a != b}
    machines: list[list[tuple[str, float]]] = []  # per stage: (id, speed)
    resources: list[Resource] = []
    manned: set[str] = set()
    capacity_per_day = [0.0] * len(STAGES)
    horizon_days = 1
    for si, stage in enumerate(STAGES):
        count = max(3, math.ceil(per_stage[si] / OPS_PER_MACHINE))
        stage_machines = []
        for k in range(count):
            mid = f"{stage.name.upper()}{k + 1:02d}"
            kind = rng.choices(list(weights), weights=list(weights.values()))[0]
            speed = rng.uniform(0.8, 1.25)
            stage_machines.append((mid, speed))
            capacity_per_day[si] += _working_per_day(kind) / speed
            if rng.random() < stage.manned:
                manned.add(mid)
            setups = [SetupTime(from_family=a, to_family=b, time=t) for (a, b), t in setup_matrix.items()]
            resources.append(Resource(
                id=mid, name=f"{stage.name} machine {k + 1}", calendar=_calendar(rng, kind, rng.randint(0, 3)),
                setups=setups if stage.setups else [], default_setup=30 if stage.setups else 0,
                initial_family=rng.choice(FAMILIES) if stage.setups else None,
            ))
        machines.append(stage_machines)
        mean_duration = sum(stage.durations) / 2
        horizon_days = max(horizon_days, math.ceil(per_stage[si] * mean_duration / capacity_per_day[si]))
    operators = max(2, round(0.6 * len(manned)))
    resources.append(Resource(id="OPERATORS", name="operator pool", kind=ResourceKind.POOL, capacity=operators))

    # Orders: releases over ~90% of the bottleneck's busy time, so queues build up.
    release_span = max(1, int(0.9 * horizon_days * DAY))
    orders: list[Order] = []
    first_uses: list[tuple[Operation, str, int]] = []
    for j, route in enumerate(routes):
        oid = f"SO-{j + 1:05d}"
        family = rng.choice(FAMILIES)
        quantity = rng.randint(1, 10)
        release = rng.randrange(0, release_span, 30)
        ops: list[Operation] = []
        work = 0
        for step, si in enumerate(route):
            stage = STAGES[si]
            base = rng.randint(*stage.durations)
            eligible = rng.sample(machines[si], min(len(machines[si]), rng.choice((2, 3))))
            modes = []
            for mid, speed in eligible:
                duration = max(1, round(base * speed * rng.uniform(0.9, 1.1)))
                secondary = [SecondaryUse(resource="OPERATORS")] if mid in manned else []
                modes.append(Mode(resource=mid, duration=duration, secondary=secondary))
            work += min(m.duration for m in modes)
            previous = STAGES[route[step - 1]] if step else None
            preds = None
            if previous is not None and previous.lag_after:
                preds = [Predecessor(operation=ops[-1].id, min_lag=previous.lag_after)]
            ops.append(Operation(
                id=f"{oid}/{10 * (step + 1)}", name=stage.name, modes=modes, family=family, predecessors=preds,
                can_span_breaks=spanning and stage.spans,
            ))
        # Flow allowance: the route's work stretched to calendar time, times a tightness factor.
        allowance = max(DAY // 2, round(work * rng.uniform(2.0, 5.0)) + rng.choice((0, 480, 960)))
        orders.append(Order(
            id=oid, product=f"cabinet-{family}", quantity=quantity, release=release, due=release + allowance,
            priority=rng.choice((1, 1, 1, 2, 3, 5)), operations=ops,
        ))
        first_uses.append((ops[0], "STEEL" if route[0] == 0 else "PARTS", quantity))

    mats: list[Material] = []
    if materials:
        for mid, unit in (("STEEL", "sheet"), ("PARTS", "kit")):
            uses = [(op, q) for op, m, q in first_uses if m == mid]
            if not uses:
                continue
            demand = sum(q for _, q in uses)
            for op, q in uses:
                op.materials = [MaterialUse(material=mid, quantity=q)]
            stock = math.ceil(0.3 * demand)
            days = max(1, math.ceil(release_span / DAY))
            per_day = math.ceil(1.1 * (demand - stock) / days) + 1
            receipts = [Receipt(time=d * DAY + 420, quantity=per_day, source=f"PO-{mid}-{d + 1}") for d in range(days)]
            mats.append(Material(id=mid, name=mid.lower(), unit=unit, stock=stock, receipts=receipts))

    return Problem(
        name=f"factory-{operations}-s{seed}" + ("" if materials else "-nomat") + ("" if spanning else "-nospan"),
        origin=datetime(2026, 11, 23, 0, 0), time_unit="minute", resources=resources, orders=orders,
        materials=mats,
        objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 100, ObjectiveName.MAKESPAN: 1}),
    )

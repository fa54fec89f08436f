"""Example problems: a small demo plant and generated large flexible job shops.

The demo plant exercises every constraint type the solver supports (shift
calendars, maintenance, a breakdown, setups by product family, an operator
pool, materials with a late receipt, due dates, a hard deadline, min/max lags,
work already started), so ``paichan demo`` shows the whole model at work.
"""

from __future__ import annotations

import random
from datetime import datetime

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
)

DAY = 1440


def demo_plant(orders: int = 12, seed: int = 7) -> Problem:
    """A two-shift plant: cut -> weld -> paint -> pack, five machines, one operator pool."""
    rng = random.Random(seed)
    two_shifts = Calendar(period=DAY, shifts=[TimeWindow(start=360, end=1320)])  # 06:00-22:00
    families = ["red", "blue", "green"]
    setups = [SetupTime(from_family=a, to_family=b, time=30 if b != "red" else 45)
              for a in families for b in families if a != b]
    resources = [
        Resource(id="CUT1", name="Laser cutter 1", calendar=two_shifts),
        Resource(id="CUT2", name="Laser cutter 2", calendar=Calendar(
            period=DAY, shifts=[TimeWindow(start=360, end=1320)],
            downtimes=[Downtime(start=DAY + 360, end=DAY + 600, kind=DowntimeKind.MAINTENANCE, reason="lens service")],
        )),
        Resource(id="WELD1", name="Welding robot", calendar=Calendar(
            downtimes=[Downtime(start=500, end=620, kind=DowntimeKind.BREAKDOWN, reason="wire feeder jam")]
        )),
        Resource(id="PAINT1", name="Paint line", calendar=two_shifts, setups=setups, initial_family="red"),
        Resource(id="PACK1", name="Packing station", calendar=two_shifts),
        Resource(id="OPS", name="Operators", kind=ResourceKind.POOL, capacity=2),
    ]
    materials = [
        Material(id="SHEET", name="Steel sheet 2mm", unit="pcs", stock=30,
                 receipts=[Receipt(time=DAY + 480, quantity=40, source="PO-4711"),
                           Receipt(time=2 * DAY + 480, quantity=8 * orders, source="PO-4712")]),
        Material(id="PAINT-RED", unit="l", stock=2 * orders),
    ]
    order_list: list[Order] = []
    for k in range(orders):
        fam = families[k % 3]
        qty = rng.choice([5, 10, 15])
        oid = f"SO-{1001 + k}"
        cut = Operation(
            id=f"{oid}/10", name="cut", family=fam,
            modes=[Mode(resource="CUT1", duration=4 * qty), Mode(resource="CUT2", duration=5 * qty)],
            materials=[MaterialUse(material="SHEET", quantity=qty / 2)],
        )
        weld = Operation(
            id=f"{oid}/20", name="weld", family=fam,
            modes=[Mode(resource="WELD1", duration=3 * qty + 20, secondary=[SecondaryUse(resource="OPS")])],
            can_span_breaks=True,
        )
        paint = Operation(
            id=f"{oid}/30", name="paint", family=fam,
            modes=[Mode(resource="PAINT1", duration=2 * qty + 15)],
            materials=[MaterialUse(material="PAINT-RED", quantity=2)] if fam == "red" else [],
        )
        pack = Operation(
            id=f"{oid}/40", name="pack", family=fam,
            modes=[Mode(resource="PACK1", duration=qty + 10, secondary=[SecondaryUse(resource="OPS")])],
            # packing must follow painting within 8 hours (drying / dust)
            predecessors=[Predecessor(operation=f"{oid}/30", min_lag=30, max_lag=480)],
        )
        release = rng.choice([0, 0, 120, 360, DAY])
        order_list.append(Order(
            id=oid, product=f"cabinet-{fam}", quantity=qty, release=release,
            due=release + rng.choice([DAY, DAY + 720, 2 * DAY]), priority=rng.choice([1, 1, 2, 5]),
            deadline=4 * DAY if k == 0 else None, operations=[cut, weld, paint, pack],
        ))
    first = order_list[0].operations[0]
    first.status = OperationStatus.STARTED
    first.actual = Actual(resource="CUT1", start=360)
    return Problem(
        name="demo-plant", origin=datetime(2026, 11, 23, 0, 0), time_unit="minute", now=380,
        resources=resources, orders=order_list, materials=materials,
        objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 10, ObjectiveName.MAKESPAN: 1,
                                     ObjectiveName.SETUP: 1}),
    )


def flexible_job_shop(jobs: int, ops_per_job: int, machines: int, seed: int = 0,
                      max_eligible: int = 3, durations: tuple[int, int] = (1, 99)) -> Problem:
    """A random flexible job shop (1..max_eligible eligible machines per operation)."""
    rng = random.Random(seed)
    resources = [Resource(id=f"m{i}") for i in range(machines)]
    orders = []
    for j in range(jobs):
        ops = []
        for k in range(ops_per_job):
            eligible = rng.sample(range(machines), rng.randint(1, max_eligible))
            base = rng.randint(*durations)
            ops.append(Operation(id=f"j{j}.{k}", modes=[
                Mode(resource=f"m{i}", duration=max(1, base + rng.randint(-base // 5, base // 5))) for i in eligible
            ]))
        orders.append(Order(id=f"j{j}", operations=ops))
    return Problem(name=f"fjsp-{jobs}x{ops_per_job}-{machines}m", time_unit="unit", resources=resources,
                   orders=orders)

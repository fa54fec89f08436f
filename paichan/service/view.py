"""The plan as the planner's page draws it: machines by plant and line, bars, calendars, late orders and why.

One JSON document (:func:`plan_view`) feeds both the live page served by ``paichan serve``
and the self-contained ``gantt.html`` that ``paichan run`` writes, so the two draw the same
thing. Operations are columns of small integers (5,500 of them are ~200 KB of JSON), indexes
into ``machines`` and ``orders``. :func:`plan_patch` is what changes between two plans, pushed
to open pages instead of the whole plan.

An order is *late* when it ends after its due date and *at risk* when it ends less than
:func:`risk_margin` before it (an hour, or a tenth of the order's own work if that is longer).
"""

from __future__ import annotations

from typing import Any

from paichan.adapters.b2mml_write import plant_of
from paichan.domain import KPIs, OperationStatus, Problem, ResourceKind, Schedule
from paichan.domain.problem import Calendar
from paichan.service.planning import ExplainIndex, explain_order, line_of

SECONDS = {"second": 1, "minute": 60, "hour": 3600}
# window kinds, in the order the page's legend lists them
WINDOW_KINDS = ["off_shift", "break", "maintenance", "holiday", "breakdown"]
OP_STATE = {OperationStatus.PLANNED: 0, OperationStatus.STARTED: 1, OperationStatus.DONE: 2}


def risk_margin(problem: Problem, work: int) -> int:
    """How close to its due date an on-time order may end before it counts as at risk (time units)."""
    hour = 3600 // SECONDS.get(problem.time_unit, 60)
    return max(hour, work // 10)


def machine_windows(cal: Calendar, horizon: int) -> list[tuple[int, int, int]]:
    """A machine's non-working windows in ``[0, horizon)`` as (start, end, kind index)."""
    out = [(s, e, 0) for s, e in Calendar(period=cal.period, shifts=cal.shifts).unavailable(horizon)]
    for d in cal.downtimes:
        if d.end > 0 and d.start < horizon:
            out.append((max(0, d.start), min(d.end, horizon), WINDOW_KINDS.index(d.kind.value)))
    return sorted(out)


def horizon_of(problem: Problem, schedule: Schedule) -> int:
    """How far the page draws: the plan's end, the last due date or now, and a twentieth more."""
    end = max((s.end for s in schedule.operations), default=1)
    dues = [o.due for o in problem.orders if o.due is not None]
    return max(end, max(dues, default=0), problem.now) + max(1, end // 20)


def order_rows(problem: Problem, schedule: Schedule) -> list[dict[str, Any]]:
    """Each order's end, tardiness and status (late / at_risk / on_time / no_due / done)."""
    ends: dict[str, int] = {}
    work: dict[str, int] = {}
    for s in schedule.operations:
        ends[s.order] = max(ends.get(s.order, 0), s.end)
        work[s.order] = work.get(s.order, 0) + s.end - s.start
    rows = []
    for o in problem.orders:
        end = ends.get(o.id)
        if all(op.status == OperationStatus.DONE for op in o.operations):
            status = "done"
        elif o.due is None or end is None:
            status = "no_due"
        elif end > o.due:
            status = "late"
        elif end > o.due - risk_margin(problem, work.get(o.id, 0)):
            status = "at_risk"
        else:
            status = "on_time"
        rows.append({"id": o.id, "product": o.product, "due": o.due, "priority": o.priority, "end": end,
                     "tardiness": max(0, end - o.due) if end is not None and o.due is not None else 0,
                     "status": status})
    return rows


def reason_of(problem: Problem, schedule: Schedule, order_id: str, index: ExplainIndex) -> dict[str, Any]:
    """Why an order ends when it does, in a few structured words the page translates."""
    ex = explain_order(problem, schedule, order_id, index)
    waits: dict[str, int] = {}
    for link in ex["critical_chain"]:  # type: ignore[attr-defined]
        w = str(link.get("waited_for", ""))
        key = ("machine" if w.startswith("machine") else "previous" if w.startswith("previous")
               else "material" if w.startswith("material") else "release" if w.startswith("release")
               else "calendar")
        waits[key] = waits.get(key, 0) + 1
    materials = sorted({str(m["material"]) for m in ex["material_waits"]})  # type: ignore[attr-defined]
    return {"bottleneck": ex["bottleneck"], "waits": waits, "materials": materials,
            "chain": len(ex["critical_chain"])}  # type: ignore[arg-type]


def plan_view(problem: Problem, schedule: Schedule, *, kpis: KPIs | None = None, title: str | None = None,
              origin: str | None = None, pinned: set[str] | None = None, reasons: int = 300) -> dict[str, Any]:
    """The whole page's data for one plan; ``reasons`` caps how many late/at-risk orders are explained."""
    machines = [r for r in problem.resources if r.kind == ResourceKind.MACHINE]
    first: dict[tuple[str, str], int] = {}
    for i, m in enumerate(machines):
        first.setdefault((plant_of(m.id), line_of(m.id)), i)
    machines.sort(key=lambda m: first[(plant_of(m.id), line_of(m.id))])
    mix = {m.id: i for i, m in enumerate(machines)}
    orders = order_rows(problem, schedule)
    oix = {o["id"]: i for i, o in enumerate(orders)}
    op_info = {op.id: (o, op) for o, op in problem.operations()}
    pinned = pinned or set()
    cols: dict[str, list[Any]] = {k: [] for k in ("id", "order", "machine", "start", "end", "setup", "state",
                                                  "pinned", "family")}
    families: list[str] = []
    fix: dict[str, int] = {}
    for s in sorted(schedule.operations, key=lambda s: (s.resource, s.start)):
        if s.resource not in mix:
            continue
        o, op = op_info[s.operation]
        fam = op.family or o.product or o.id
        if fam not in fix:
            fix[fam] = len(families)
            families.append(fam)
        cols["id"].append(s.operation)
        cols["order"].append(oix[s.order])
        cols["machine"].append(mix[s.resource])
        cols["start"].append(s.start)
        cols["end"].append(s.end)
        cols["setup"].append(s.setup_before)
        cols["state"].append(OP_STATE[op.status])
        cols["pinned"].append(1 if (op.pin is not None or s.operation in pinned) else 0)
        cols["family"].append(fix[fam])
    horizon = horizon_of(problem, schedule)
    windows = [[i, s, e, k] for i, m in enumerate(machines) for s, e, k in machine_windows(m.calendar, horizon)]
    index = ExplainIndex(problem, schedule)
    late = sorted((o for o in orders if o["status"] in ("late", "at_risk")),
                  key=lambda o: (o["status"] != "late", -o["tardiness"] * o["priority"], o["end"] or 0))
    for row in late[:reasons]:
        row["reason"] = reason_of(problem, schedule, row["id"], index)
    return {
        "title": title or problem.name,
        "origin": origin or (problem.origin.isoformat() if problem.origin else None),
        "unit_seconds": SECONDS.get(problem.time_unit),
        "now": problem.now,
        "horizon": horizon,
        "machines": [{"id": m.id, "name": m.name or m.id.split("/")[-1], "plant": plant_of(m.id),
                      "line": line_of(m.id)} for m in machines],
        "orders": orders,
        "families": families,
        "ops": cols,
        "windows": windows,
        "window_kinds": WINDOW_KINDS,
        "kpis": kpis.model_dump() if kpis else None,
        "late": [o["id"] for o in late],
    }


def plan_patch(problem: Problem, before: Schedule, after: Schedule) -> dict[str, Any]:
    """What an open page changes when ``after`` replaces ``before``: moved operations and orders' new rows."""
    b = before.by_operation()
    ops = [[s.operation, s.resource, s.start, s.end, s.setup_before] for s in after.operations
           if (old := b.get(s.operation)) is None or (old.resource, old.start, old.end) != (s.resource, s.start, s.end)]
    rows_b = {o["id"]: o for o in order_rows(problem, before)}
    orders = [o for o in order_rows(problem, after) if rows_b.get(o["id"]) != o]
    return {"ops": ops, "orders": orders}

"""Whole-problem validation: references, cycles, impossible dates and supply.

Each finding names the record (``orders[3].operations[1]`` style path plus the
id) and the field, so a planner can fix the source data. :func:`validate`
collects every finding and raises one :class:`ProblemError` listing them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from paichan.domain.problem import Calendar, OperationStatus, Problem, ResourceKind


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a problem."""

    path: str  # e.g. "orders[2](id=O3).operations[0](id=O3-10).modes[1].resource"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ProblemError(ValueError):
    """A problem that cannot be scheduled as given; lists every finding."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        lines = "\n".join(f"  - {f}" for f in findings)
        super().__init__(f"{len(findings)} problem(s) in the scheduling data:\n{lines}")


def find_problems(problem: Problem) -> list[Finding]:
    """All cross-record problems in ``problem`` (empty when it is consistent)."""
    out: list[Finding] = []
    res = {r.id: r for r in problem.resources}
    mats = {m.id: m for m in problem.materials}

    _duplicates(out, "resources", [r.id for r in problem.resources])
    _duplicates(out, "orders", [o.id for o in problem.orders])
    _duplicates(out, "materials", [m.id for m in problem.materials])
    op_ids = [op.id for _, op in problem.operations()]
    _duplicates(out, "operations", op_ids)
    known_ops = set(op_ids)

    graph: nx.DiGraph = nx.DiGraph()
    demand: dict[str, float] = {}
    op_order = {}
    for oi, order in enumerate(problem.orders):
        opath = f"orders[{oi}](id={order.id})"
        if not order.operations:
            out.append(Finding(opath + ".operations", "order has no operations"))
        if order.deadline is not None and order.deadline < order.release:
            out.append(Finding(opath + ".deadline", f"deadline {order.deadline} is before release {order.release}"))
        for k, op in enumerate(order.operations):
            op_order[op.id] = order.id
            path = f"{opath}.operations[{k}](id={op.id})"
            graph.add_node(op.id)
            if not op.modes:
                out.append(Finding(path + ".modes", "operation has no mode (no machine can run it)"))
            feasible_modes = 0
            for mi, mode in enumerate(op.modes):
                mpath = f"{path}.modes[{mi}]"
                r = res.get(mode.resource)
                if r is None:
                    out.append(Finding(mpath + ".resource", f"unknown resource '{mode.resource}'"))
                    continue
                if r.kind != ResourceKind.MACHINE:
                    out.append(Finding(mpath + ".resource", f"'{mode.resource}' is a pool, not a machine"))
                    continue
                ok = True
                for si, sec in enumerate(mode.secondary):
                    p = res.get(sec.resource)
                    if p is None:
                        out.append(Finding(f"{mpath}.secondary[{si}].resource", f"unknown resource '{sec.resource}'"))
                        ok = False
                    elif p.kind != ResourceKind.POOL:
                        out.append(Finding(f"{mpath}.secondary[{si}].resource", f"'{sec.resource}' is not a pool"))
                        ok = False
                    elif sec.amount > p.capacity:
                        out.append(
                            Finding(
                                f"{mpath}.secondary[{si}].amount",
                                f"needs {sec.amount} of '{sec.resource}' whose capacity is {p.capacity}",
                            )
                        )
                        ok = False
                if ok and not op.can_span_breaks and not _fits_somewhere(r.calendar, mode.duration):
                    out.append(
                        Finding(mpath, f"duration {mode.duration} fits in no working window of '{r.id}'"
                                " and the operation may not span breaks")
                    )
                    ok = False
                feasible_modes += ok
            if op.modes and feasible_modes == 0:
                out.append(Finding(path + ".modes", "operation has no feasible mode"))
            if op.status != OperationStatus.PLANNED and op.actual is not None:
                if op.actual.resource not in {m.resource for m in op.modes}:
                    out.append(
                        Finding(
                            path + ".actual.resource", f"'{op.actual.resource}' is not one of the operation's modes"
                        )
                    )
            if op.pin is not None:
                if op.status != OperationStatus.PLANNED:
                    out.append(Finding(path + ".pin", f"operation is {op.status.value}: the shop floor fixes it, "
                                                      "a pin cannot"))
                elif op.pin.resource not in {m.resource for m in op.modes}:
                    out.append(Finding(path + ".pin.resource",
                                       f"'{op.pin.resource}' is not one of the operation's modes"))
                elif op.pin.start < max(order.release, problem.now):
                    out.append(Finding(path + ".pin.start", f"{op.pin.start} is before the earliest start "
                                                            f"max(release, now) = {max(order.release, problem.now)}"))
            for mu_i, mu in enumerate(op.materials):
                if mu.material not in mats:
                    out.append(Finding(f"{path}.materials[{mu_i}].material", f"unknown material '{mu.material}'"))
                else:
                    demand[mu.material] = demand.get(mu.material, 0.0) + mu.quantity
            preds = op.predecessors
            if preds is None:
                if k > 0:
                    graph.add_edge(order.operations[k - 1].id, op.id)
            else:
                for pi, link in enumerate(preds):
                    if link.operation not in known_ops:
                        out.append(
                            Finding(f"{path}.predecessors[{pi}].operation", f"unknown operation '{link.operation}'")
                        )
                    elif link.operation == op.id:
                        out.append(Finding(f"{path}.predecessors[{pi}].operation", "operation precedes itself"))
                    else:
                        graph.add_edge(link.operation, op.id)

    try:
        cycle = nx.find_cycle(graph)
        ops = [u for u, _ in cycle] + [cycle[0][0]]
        out.append(Finding("precedence", "cycle: " + " -> ".join(f"{o}(order {op_order.get(o)})" for o in ops)))
    except nx.NetworkXNoCycle:
        pass

    for mi, m in enumerate(problem.materials):
        supply = m.stock + sum(r.quantity for r in m.receipts)
        need = demand.get(m.id, 0.0)
        if need > supply + 1e-9:
            out.append(
                Finding(
                    f"materials[{mi}](id={m.id})",
                    f"operations consume {need:g} but stock plus all receipts is only {supply:g}",
                )
            )
    return out


def validate(problem: Problem) -> Problem:
    """Raise :class:`ProblemError` if ``problem`` has any finding; return it otherwise."""
    findings = find_problems(problem)
    if findings:
        raise ProblemError(findings)
    return problem


def _duplicates(out: list[Finding], kind: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            out.append(Finding(kind, f"duplicate id '{i}'"))
        seen.add(i)


def _fits_somewhere(calendar: Calendar, duration: int) -> bool:
    """True if the shift pattern has a working stretch of at least ``duration``.

    Downtimes are finite, so only the repeating shift pattern can make a
    duration impossible; three periods cover stretches across a period edge.
    """
    if duration == 0 or not calendar.shifts or calendar.period is None:
        return True
    pattern = Calendar(period=calendar.period, shifts=calendar.shifts)
    windows = pattern.unavailable(3 * calendar.period)
    if not windows:
        return True
    cursor = 0
    for s, e in windows:
        if s - cursor >= duration:
            return True
        cursor = max(cursor, e)
    return 3 * calendar.period - cursor >= duration

"""Objective values of a timetable, as the solver sees them.

This is the solver's own arithmetic (used to compare candidate solutions
quickly); the independent checker recomputes KPIs on its own.
"""

from __future__ import annotations

from paichan.domain import Objective, ObjectiveName, Schedule, ScheduledOperation
from paichan.solver.compiled import CProblem
from paichan.solver.heuristic import Timetable


def terms(cp: CProblem, tt: Timetable, reference: Timetable | None = None) -> dict[ObjectiveName, int]:
    """Every objective term of ``tt`` (stability is 0 without a reference)."""
    makespan = max(tt.end, default=0)
    wt = 0
    for o, ids in enumerate(cp.order_ops):
        due = cp.order_due[o]
        if due is not None and ids:
            wt += cp.order_weight[o] * max(0, max(tt.end[i] for i in ids) - due)
    stability = 0
    if reference is not None:
        for c in cp.ops:
            i = c.idx
            if c.fixed or reference.mode[i] < 0:
                continue
            stability += abs(tt.start[i] - reference.start[i])
            if tt.mode[i] != reference.mode[i]:
                stability += max(1, max(md.duration for md in c.modes))
    return {
        ObjectiveName.MAKESPAN: makespan,
        ObjectiveName.WEIGHTED_TARDINESS: wt,
        ObjectiveName.SETUP: sum(tt.setup),
        ObjectiveName.STABILITY: stability,
    }


def scalar(objective: Objective, values: dict[ObjectiveName, int]) -> float:
    """Weighted sum; for lexicographic objectives, the first term (for logging)."""
    if objective.lexicographic is not None:
        return float(values[objective.lexicographic[0]])
    return float(sum(w * values[t] for t, w in objective.weights.items()))


def key(objective: Objective, values: dict[ObjectiveName, int]) -> tuple[float, ...]:
    """Comparison key: smaller is better, lexicographic when asked for."""
    if objective.lexicographic is not None:
        return tuple(float(values[t]) for t in objective.lexicographic)
    return (scalar(objective, values),)


def to_schedule(cp: CProblem, tt: Timetable) -> Schedule:
    """Timetable (indices) -> domain Schedule (ids)."""
    ops = [
        ScheduledOperation(
            operation=c.id,
            order=cp.order_ids[c.order],
            resource=cp.machines[c.modes[tt.mode[c.idx]].machine].id,
            mode=tt.mode[c.idx],
            start=tt.start[c.idx],
            end=tt.end[c.idx],
            setup_before=tt.setup[c.idx],
        )
        for c in cp.ops
    ]
    return Schedule(problem=cp.problem.name, operations=ops)


def from_schedule(cp: CProblem, schedule: Schedule) -> Timetable:
    """Domain Schedule -> timetable; operations it lacks get mode -1."""
    by_id = schedule.by_operation()
    n = len(cp.ops)
    tt = Timetable([-1] * n, [0] * n, [0] * n, [0] * n, True, [])
    for c in cp.ops:
        s = by_id.get(c.id)
        if s is None or not 0 <= s.mode < len(c.modes):
            tt.feasible = False
            continue
        tt.mode[c.idx], tt.start[c.idx], tt.end[c.idx], tt.setup[c.idx] = s.mode, s.start, s.end, s.setup_before
    return tt

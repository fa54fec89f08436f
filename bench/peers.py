"""Peer solvers to compare paichan against on JSSP/FJSP benchmarks.

* :func:`solve_plain_cpsat` is the textbook OR-Tools model of the examples
  ``jobshop_sat.py`` / ``flexible_job_shop_sat.py``: no hints, no heuristics,
  no redundant constraints. It is the "what you get for free" baseline.
* :func:`solve_pyjobshop` runs PyJobShop's OR-Tools backend, a maintained
  general-purpose CP-SAT scheduling model.

Both only model what the benchmark files contain (machines, alternatives,
linear routings, makespan) and refuse problems with anything else, so a
comparison never silently drops a constraint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from paichan.domain import ObjectiveName, Operation, Problem, ResourceKind, Schedule, ScheduledOperation

__all__ = ["PeerResult", "solve_plain_cpsat", "solve_pyjobshop"]


@dataclass
class PeerResult:
    """Outcome of one peer run; times are seconds since the peer was called."""

    status: str  # "optimal" | "feasible" | "infeasible" | "unknown"
    schedule: Schedule | None
    makespan: int | None
    bound: float | None
    wall_time: float
    first_solution_time: float | None


def _require_plain(problem: Problem) -> None:
    """Reject features the peers do not model (they would be silently ignored)."""
    unsupported: list[str] = []
    if problem.materials:
        unsupported.append("materials")
    if problem.now:
        unsupported.append("now > 0")
    if set(problem.objective.terms()) != {ObjectiveName.MAKESPAN}:
        unsupported.append(f"objective {[t.value for t in problem.objective.terms()]}")
    for r in problem.resources:
        if r.kind != ResourceKind.MACHINE or r.has_setups or r.calendar.shifts or r.calendar.downtimes:
            unsupported.append(f"resource {r.id} (pool, setups or calendar)")
    for order, op in problem.operations():
        if order.release or order.deadline is not None:
            unsupported.append(f"order {order.id} release/deadline")
        if op.predecessors is not None or op.actual is not None or op.materials or any(m.secondary for m in op.modes):
            unsupported.append(f"operation {op.id} (explicit predecessors, actuals, materials or secondary resources)")
        if not op.modes:
            unsupported.append(f"operation {op.id} has no modes")
    if unsupported:
        shown = "; ".join(sorted(set(unsupported))[:5])
        raise ValueError(f"peer solvers handle plain JSSP/FJSP only; {problem.name} has: {shown}")


def _status(name: str) -> str:
    return {"OPTIMAL": "optimal", "FEASIBLE": "feasible", "INFEASIBLE": "infeasible"}.get(name, "unknown")


class _FirstSolution(cp_model.CpSolverSolutionCallback):
    """Records the wall time of the first solution (nothing else)."""

    def __init__(self, t0: float):
        super().__init__()
        self._t0 = t0
        self.first: float | None = None

    def on_solution_callback(self) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self._t0


def solve_plain_cpsat(problem: Problem, time_limit: float, workers: int, seed: int = 0) -> PeerResult:
    """Textbook CP-SAT job shop / flexible job shop, as in the OR-Tools examples."""
    t0 = time.perf_counter()
    _require_plain(problem)
    model = cp_model.CpModel()
    horizon = sum(max(m.duration for m in op.modes) for _, op in problem.operations())
    per_machine: dict[str, list[cp_model.IntervalVar]] = {r.id: [] for r in problem.resources}
    starts: dict[str, cp_model.IntVar] = {}
    presences: dict[str, list[cp_model.IntVar]] = {}
    job_ends: list[cp_model.IntVar] = []
    for order in problem.orders:
        previous_end: cp_model.IntVar | None = None
        for op in order.operations:
            durations = [m.duration for m in op.modes]
            start = model.new_int_var(0, horizon, f"start_{op.id}")
            duration = model.new_int_var(min(durations), max(durations), f"duration_{op.id}")
            end = model.new_int_var(0, horizon, f"end_{op.id}")
            interval = model.new_interval_var(start, duration, end, f"interval_{op.id}")
            starts[op.id] = start
            if previous_end is not None:
                model.add(start >= previous_end)
            previous_end = end
            if len(op.modes) > 1:
                lits = []
                for a, mode in enumerate(op.modes):
                    lit = model.new_bool_var(f"presence_{op.id}_{a}")
                    l_start = model.new_int_var(0, horizon, f"start_{op.id}_{a}")
                    l_end = model.new_int_var(0, horizon, f"end_{op.id}_{a}")
                    l_interval = model.new_optional_interval_var(
                        l_start, mode.duration, l_end, lit, f"interval_{op.id}_{a}"
                    )
                    model.add(start == l_start).only_enforce_if(lit)
                    model.add(duration == mode.duration).only_enforce_if(lit)
                    model.add(end == l_end).only_enforce_if(lit)
                    per_machine[mode.resource].append(l_interval)
                    lits.append(lit)
                model.add_exactly_one(lits)
                presences[op.id] = lits
            else:
                per_machine[op.modes[0].resource].append(interval)
        if previous_end is not None:
            job_ends.append(previous_end)
    for intervals in per_machine.values():
        if len(intervals) > 1:
            model.add_no_overlap(intervals)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, job_ends)
    model.minimize(makespan)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    callback = _FirstSolution(t0)
    code = solver.solve(model, callback)
    status = _status(solver.status_name(code))
    wall = time.perf_counter() - t0
    if status not in ("optimal", "feasible"):
        return PeerResult(status, None, None, None, wall, callback.first)

    entries = []
    for order in problem.orders:
        for op in order.operations:
            mode = 0
            if op.id in presences:
                mode = next(a for a, lit in enumerate(presences[op.id]) if solver.boolean_value(lit))
            s = solver.value(starts[op.id])
            entries.append(ScheduledOperation(
                operation=op.id, order=order.id, resource=op.modes[mode].resource, mode=mode,
                start=s, end=s + op.modes[mode].duration,
            ))
    schedule = Schedule(problem=problem.name, operations=entries)
    return PeerResult(status, schedule, int(solver.objective_value), solver.best_objective_bound, wall, callback.first)


def solve_pyjobshop(problem: Problem, time_limit: float, workers: int, seed: int = 0) -> PeerResult:
    """PyJobShop (OR-Tools backend). First-solution time is not exposed by its API, so it is None."""
    from pyjobshop import Model
    from pyjobshop.Result import SolveStatus as PjsStatus

    t0 = time.perf_counter()
    _require_plain(problem)
    model = Model()
    machines = {r.id: model.add_machine(name=r.id) for r in problem.resources}
    mode_of: list[tuple[int, int]] = []  # pyjobshop mode index -> (operation index, index into op.modes)
    flat: list[tuple[str, Operation]] = []  # (order id, Operation) in task order
    for order in problem.orders:
        job = model.add_job(name=order.id)
        previous = None
        for op in order.operations:
            task = model.add_task(job=job, name=op.id)
            for a, mode in enumerate(op.modes):
                model.add_mode(task, machines[mode.resource], mode.duration)
                mode_of.append((len(flat), a))
            flat.append((order.id, op))
            if previous is not None:
                model.add_end_before_start(previous, task)
            previous = task
    model.set_objective(weight_makespan=1)
    result = model.solve(
        solver="ortools", time_limit=time_limit, num_workers=workers, display=False, random_seed=seed
    )
    wall = time.perf_counter() - t0
    status = {
        PjsStatus.OPTIMAL: "optimal",
        PjsStatus.FEASIBLE: "feasible",
        PjsStatus.INFEASIBLE: "infeasible",
    }.get(result.status, "unknown")
    if status not in ("optimal", "feasible"):
        return PeerResult(status, None, None, None, wall, None)

    entries = []
    for idx, task in enumerate(result.best.tasks):
        op_index, a = mode_of[task.mode]
        order_id, op = flat[op_index]
        if op_index != idx:
            raise RuntimeError(f"pyjobshop returned mode {task.mode} of another task for task {idx} ({op.id})")
        entries.append(ScheduledOperation(
            operation=op.id, order=order_id, resource=op.modes[a].resource, mode=a, start=task.start, end=task.end,
        ))
    schedule = Schedule(problem=problem.name, operations=entries)
    return PeerResult(status, schedule, int(result.objective), float(result.lower_bound), wall, None)

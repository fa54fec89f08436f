"""Peer solvers to compare paichan against on JSSP/FJSP benchmarks.

* :func:`solve_plain_cpsat` is the textbook OR-Tools model of the examples
  ``jobshop_sat.py`` / ``flexible_job_shop_sat.py``: no hints, no heuristics,
  no redundant constraints. It is the "what you get for free" baseline.
* :func:`solve_pyjobshop` runs PyJobShop's OR-Tools backend, a maintained
  general-purpose CP-SAT scheduling model.

Both only model what the benchmark files contain (machines, alternatives,
linear routings, makespan) and refuse problems with anything else, so a
comparison never silently drops a constraint.

* :func:`solve_pyjobshop_rich` translates factory-shaped problems
  (:func:`paichan.generators.factory_instance`: calendars, setups, pools,
  dates, weights) to PyJobShop and refuses, by name, what it cannot express.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from paichan.domain import (
    ObjectiveName,
    Operation,
    OperationStatus,
    Problem,
    ResourceKind,
    Schedule,
    ScheduledOperation,
)

__all__ = ["PeerResult", "RichPeerResult", "solve_plain_cpsat", "solve_pyjobshop", "solve_pyjobshop_rich"]


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
            chosen = 0
            if op.id in presences:
                chosen = next(a for a, lit in enumerate(presences[op.id]) if solver.boolean_value(lit))
            s = solver.value(starts[op.id])
            entries.append(ScheduledOperation(
                operation=op.id, order=order.id, resource=op.modes[chosen].resource, mode=chosen,
                start=s, end=s + op.modes[chosen].duration,
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


# --------------------------------------------------------------------------- rich (factory-shaped) problems

#: PyJobShop 0.0.9 keeps setup times in a dense resources x tasks x tasks int64 matrix
#: (``pyjobshop.solvers.utils.setup_times_matrix``); above this size the translation refuses.
PYJOBSHOP_SETUP_MATRIX_LIMIT = 8 * 2**30


@dataclass
class RichPeerResult(PeerResult):
    """A :class:`PeerResult` plus what shows whether the peer did real work."""

    objective: float | None = None  # the solver's own objective (makespan is the schedule's)
    first_objective: float | None = None  # the solver's own objective of its first solution
    solutions: int = 0  # improving solutions seen
    build_time: float = 0.0  # seconds spent translating and building the model before search
    horizon: int | None = None
    note: str = ""


def _pyjobshop_refusals(problem: Problem) -> list[str]:
    """Features of ``problem`` the PyJobShop translation cannot express faithfully."""
    out: list[str] = []
    if problem.objective.lexicographic is not None:
        out.append("lexicographic objective")
    if problem.objective.weights.get(ObjectiveName.STABILITY, 0) > 0:
        out.append("stability objective (no reference schedule in PyJobShop)")
    for m in problem.materials:
        if m.receipts:
            out.append(f"material receipts over time (material {m.id}; PyJobShop consumables are initial stock only)")
        if m.stock != int(m.stock):
            out.append(f"fractional stock (material {m.id})")
    spanning_pools: set[str] = set()
    for order, op in problem.operations():
        if op.status != OperationStatus.PLANNED or op.actual is not None:
            out.append(f"started/done operations (operation {op.id})")
        if order.one_group:
            out.append(f"one_group orders (order {order.id})")
        if any(u.quantity != int(u.quantity) for u in op.materials):
            out.append(f"fractional material use (operation {op.id})")
        if op.can_span_breaks:
            spanning_pools.update(s.resource for m in op.modes for s in m.secondary)
    resources = {r.id: r for r in problem.resources}
    for r in problem.resources:
        if r.has_setups:
            zero = [op.id for _, op in problem.operations() for m in op.modes if m.resource == r.id and m.duration == 0]
            if zero:
                out.append(f"zero-duration operations on setup machine {r.id} (operation {zero[0]})")
    for pid in sorted(spanning_pools):
        cal = resources[pid].calendar
        if cal.shifts or cal.downtimes:
            out.append(f"pool {pid} with a calendar used by operations that span breaks (PyJobShop pauses them, "
                       "paichan forbids pool use in its breaks)")
    return sorted(set(out))


def _pyjobshop_horizon(problem: Problem) -> int:
    """The time up to which breaks are listed and by which every task must end.

    PyJobShop partitions each mode's start times by the breaks it would cross, quadratic in the
    number of breaks; listing them up to a worst-case serial horizon makes the model build take
    minutes. Twice the latest due date or release, plus a week, is far beyond any sensible
    schedule of the generated factory problems; a peer that runs out of it reports infeasible.
    """
    latest = max([problem.now] + [o.release for o in problem.orders]
                 + [o.due for o in problem.orders if o.due is not None]
                 + [o.deadline for o in problem.orders if o.deadline is not None])
    return 2 * latest + 7 * 1440


def _setup_before(problem: Problem, entries: list[ScheduledOperation]) -> None:
    """Set ``setup_before`` to the changeover each entry needs after its predecessor on the machine."""
    resources = {r.id: r for r in problem.resources}
    families = {op.id: op.family for _, op in problem.operations()}
    by_machine: dict[str, list[ScheduledOperation]] = {}
    for e in entries:
        if e.end > e.start:
            by_machine.setdefault(e.resource, []).append(e)
    for rid, ops in by_machine.items():
        machine = resources[rid]
        if not machine.has_setups:
            continue
        ops.sort(key=lambda e: (e.start, e.end, e.operation))
        previous = machine.initial_family
        for e in ops:
            e.setup_before = machine.setup_time(previous, families[e.operation])
            previous = families[e.operation]


class _Progress(cp_model.CpSolverSolutionCallback):
    """Records time and objective of the first solution and counts improving ones."""

    def __init__(self, t0: float):
        super().__init__()
        self._t0 = t0
        self.first: float | None = None
        self.first_objective: float | None = None
        self.count = 0

    def on_solution_callback(self) -> None:
        self.count += 1
        if self.first is None:
            self.first = time.perf_counter() - self._t0
            self.first_objective = self.objective_value


def solve_pyjobshop_rich(
    problem: Problem, time_limit: float, workers: int, seed: int = 0, horizon: int | None = None
) -> RichPeerResult:
    """Factory problems through PyJobShop's OR-Tools model (calendars, setups, pools, dates, weights).

    Translation: machine calendars become machine breaks (listed up to ``horizon``, which also caps
    every task's end); ``can_span_breaks`` becomes ``allow_breaks`` (same semantics: pause over
    breaks, start and end in working time); setups become per-pair ``SetupTime`` constraints on the
    machine, the initial family a zero-length task fixed at the machine's first working instant that
    every other task follows (so the first setup cannot overlap a break at time 0 there, slightly
    stricter than paichan's rule);
    pools become renewables; materials without receipts become consumables; release/now, deadline,
    due date and priority go to jobs/tasks; precedences with min lags become end-before-start with
    a delay, max lags start-before-end with a negative delay. Anything else raises ``ValueError``
    naming the feature. PyJobShop's CP-SAT search gets ``time_limit`` minus the translation and
    model-build time (at least 1 s), so its wall time is comparable to paichan's.
    """
    from pyjobshop import Model
    from pyjobshop.solvers.ortools import CPModel

    t0 = time.perf_counter()
    refusals = _pyjobshop_refusals(problem)
    if refusals:
        raise ValueError("PyJobShop translation cannot express: " + "; ".join(refusals[:6]))
    weights = problem.objective.weights
    horizon = horizon or _pyjobshop_horizon(problem)
    n_tasks = len(problem.operations()) + sum(r.has_setups for r in problem.resources)
    dense = len(problem.resources) * n_tasks * n_tasks * 8
    if any(r.has_setups for r in problem.resources) and dense > PYJOBSHOP_SETUP_MATRIX_LIMIT:
        raise ValueError(f"setup times: PyJobShop 0.0.9 builds a dense resources x tasks x tasks matrix, "
                         f"{dense / 2**30:.0f} GiB here (limit {PYJOBSHOP_SETUP_MATRIX_LIMIT / 2**30:.0f} GiB)")

    model = Model()
    res: dict[str, object] = {}
    for r in problem.resources:
        breaks = [(s, e) for s, e in r.calendar.unavailable(horizon)]
        if r.kind == ResourceKind.MACHINE:
            res[r.id] = model.add_machine(breaks=breaks, name=r.id)
        else:
            res[r.id] = model.add_renewable(capacity=r.capacity, breaks=breaks, name=r.id)
    for m in problem.materials:
        res[m.id] = model.add_consumable(capacity=int(m.stock), name=m.id)

    tasks: dict[str, object] = {}
    flat: list[tuple[str, Operation]] = []  # (order id, operation), in task order
    mode_of: list[tuple[int, int]] = []  # pyjobshop mode index -> (index into flat, index into op.modes)
    for order in problem.orders:
        job = model.add_job(
            weight=order.priority, release_date=order.release,
            deadline=order.deadline if order.deadline is not None else horizon,
            due_date=order.due if order.due is not None else horizon, name=order.id,
        )
        for op in order.operations:
            task = model.add_task(job=job, earliest_start=max(order.release, problem.now), latest_end=horizon,
                                  allow_breaks=op.can_span_breaks, name=op.id)
            tasks[op.id] = task
            for a, mode in enumerate(op.modes):
                used = [res[mode.resource]] + [res[s.resource] for s in mode.secondary]
                demands = [0] + [s.amount for s in mode.secondary]
                used += [res[u.material] for u in op.materials]
                demands += [int(u.quantity) for u in op.materials]
                model.add_mode(task, used, mode.duration, demands)
                mode_of.append((len(flat), a))
            flat.append((order.id, op))
        for k, op in enumerate(order.operations):
            links = ([(order.operations[k - 1].id, 0, None)] if k else []) if op.predecessors is None else [
                (p.operation, p.min_lag, p.max_lag) for p in op.predecessors]
            for pred, min_lag, max_lag in links:
                model.add_end_before_start(tasks[pred], tasks[op.id], min_lag)
                if max_lag is not None:
                    model.add_start_before_end(tasks[op.id], tasks[pred], -max_lag)

    for r in problem.resources:
        if not r.has_setups:
            continue
        on_machine = [op for _, op in flat if any(m.resource == r.id for m in op.modes)]
        if r.initial_family is not None:
            # PyJobShop starts no task inside a break, so the marker sits at the first working instant.
            breaks = r.calendar.unavailable(horizon)
            first = breaks[0][1] if breaks and breaks[0][0] <= 0 else 0
            dummy = model.add_task(earliest_start=first, latest_start=first, latest_end=first,
                                   name=f"initial:{r.id}")
            model.add_mode(dummy, res[r.id], 0)
            for first_op in on_machine:
                d = r.setup_time(r.initial_family, first_op.family)
                if d:
                    model.add_setup_time(res[r.id], dummy, tasks[first_op.id], d)
        for before in on_machine:
            for after in on_machine:
                d = r.setup_time(before.family, after.family) if before.id != after.id else 0
                if d:
                    model.add_setup_time(res[r.id], tasks[before.id], tasks[after.id], d)

    model.set_objective(
        weight_makespan=weights.get(ObjectiveName.MAKESPAN, 0),
        weight_total_tardiness=weights.get(ObjectiveName.WEIGHTED_TARDINESS, 0),
        weight_total_setup_time=weights.get(ObjectiveName.SETUP, 0),
    )
    data = model.data()
    cpm = CPModel(data)
    build = time.perf_counter() - t0
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(1.0, time_limit - build)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    progress = _Progress(t0)
    code = solver.solve(cpm.model, progress)
    status = _status(solver.status_name(code))
    wall = time.perf_counter() - t0
    out = RichPeerResult(status, None, None, None, wall, progress.first, first_objective=progress.first_objective,
                         solutions=progress.count, build_time=build, horizon=horizon)
    if status not in ("optimal", "feasible"):
        return out

    variables = cpm.variables
    entries = []
    for t, (order_id, op) in enumerate(flat):
        var = variables.task_vars[t]
        chosen = [i for i in data.task2modes(t) if solver.boolean_value(variables.mode_vars[i])]
        if len(chosen) != 1:
            raise RuntimeError(f"pyjobshop selected {len(chosen)} modes for task {t} ({op.id})")
        index, a = mode_of[chosen[0]]
        if index != t:
            raise RuntimeError(f"pyjobshop returned mode {chosen[0]} of another task for task {t} ({op.id})")
        entries.append(ScheduledOperation(
            operation=op.id, order=order_id, resource=op.modes[a].resource, mode=a,
            start=solver.value(var.start), end=solver.value(var.end),
        ))
    _setup_before(problem, entries)
    out.schedule = Schedule(problem=problem.name, operations=entries)
    out.makespan = max((e.end for e in entries), default=0)
    out.objective = solver.objective_value
    out.bound = solver.best_objective_bound
    return out

"""solve(): heuristic start, CP-SAT (monolithic or decomposed), explanations.

Flow: validate -> compile -> cheap infeasibility pre-checks -> dispatching
rules (best one is the incumbent and the fallback answer) -> CP-SAT warm
started from the incumbent (or the LNS decomposition for large problems) ->
if CP-SAT proves infeasibility, a second solve with assumption literals names
the conflicting orders/constraints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ortools.sat.python import cp_model

from paichan.domain import Objective, ObjectiveName, Problem, validate
from paichan.solver import evaluate, tabu
from paichan.solver.api import SolutionEvent, SolveParams, SolveResult, SolveStatus
from paichan.solver.compiled import CProblem, compile_problem
from paichan.solver.heuristic import RULES, Timetable, construct
from paichan.solver.model import Built, ModelBuilder, add_hint

Callback = Callable[[SolutionEvent], None]

#: above this many operations the monolithic model gives way to LNS windows
DECOMPOSE_ABOVE = 3000


class _Progress:
    """Keeps the incumbent, the history and forwards improvements to the caller."""

    def __init__(self, cp: CProblem, objective: Objective, reference: Timetable | None, t0: float,
                 on_solution: Callback | None) -> None:
        self.cp, self.objective, self.reference, self.t0 = cp, objective, reference, t0
        self.on_solution = on_solution
        self.best: Timetable | None = None
        self.best_key: tuple[float, ...] | None = None
        self.best_values: dict[ObjectiveName, int] | None = None
        self.history: list[SolutionEvent] = []
        self.first_time: float | None = None
        self.bound: float | None = None
        self.lock = threading.Lock()

    def offer(self, tt: Timetable, source: str) -> bool:
        """Take ``tt`` if feasible and better; report it. Returns True if taken."""
        if not tt.feasible:
            return False
        with self.lock:
            return self._offer(tt, source)

    def _offer(self, tt: Timetable, source: str) -> bool:
        values = evaluate.terms(self.cp, tt, self.reference)
        k = evaluate.key(self.objective, values)
        if self.best_key is not None and k >= self.best_key:
            return False
        self.best, self.best_key, self.best_values = tt, k, values
        now = time.monotonic() - self.t0
        if self.first_time is None:
            self.first_time = now
        ev = SolutionEvent(time=now, objective=evaluate.scalar(self.objective, values), bound=self.bound, source=source)
        self.history.append(ev)
        if self.on_solution is not None:
            self.on_solution(ev)
        return True


def solve(problem: Problem, params: SolveParams | None = None, on_solution: Callback | None = None) -> SolveResult:
    """Schedule ``problem``; raises :class:`paichan.domain.ProblemError` on bad data."""
    params = params or SolveParams()
    t0 = time.monotonic()
    deadline = t0 + params.time_limit
    validate(problem)
    cp = compile_problem(problem)
    objective = problem.objective
    reference = evaluate.from_schedule(cp, params.reference) if params.reference is not None else None
    progress = _Progress(cp, objective, reference, t0, on_solution)

    reasons = precheck(cp)
    if reasons:
        return SolveResult(status=SolveStatus.INFEASIBLE, infeasibility=reasons, wall_time=time.monotonic() - t0)

    if reference is not None and reference.feasible:
        progress.offer(_repair_reference(cp, reference), "reference")
    if params.use_heuristic:
        rules = RULES if len(cp.ops) <= 20000 else ("wspt", "mwkr")
        for rule, tt in construct(cp, rules):
            progress.offer(tt, f"heuristic:{rule}")
            if time.monotonic() > deadline:
                break

    decompose = params.decompose if params.decompose is not None else len(cp.ops) > DECOMPOSE_ABOVE
    stats: dict[str, float | int | str] = {"operations": len(cp.ops)}
    if progress.best is not None and tabu.applicable(cp):
        stats["method"] = "tabu+cp-sat"
        status = _core_search(cp, objective, progress, params, deadline, stats)
    elif decompose and progress.best is not None:
        from paichan.solver.lns import improve

        stats["method"] = "lns"
        improve(cp, objective, progress, params, deadline, stats)
        status = SolveStatus.FEASIBLE
    else:
        stats["method"] = "cp-sat"
        status = _monolithic(cp, objective, progress, params, deadline, stats)

    if status == SolveStatus.INFEASIBLE:
        reasons = explain(cp, reference, params, max(1.0, min(10.0, deadline - time.monotonic() + 5)))
        return SolveResult(
            status=status, infeasibility=reasons, wall_time=time.monotonic() - t0, stats=stats, history=progress.history
        )
    if progress.best is None:
        return SolveResult(status=SolveStatus.UNKNOWN, wall_time=time.monotonic() - t0, stats=stats,
                           history=progress.history)
    obj = evaluate.scalar(objective, progress.best_values or {})
    bound = progress.bound
    if status == SolveStatus.OPTIMAL:
        bound = obj
    elif bound is not None and objective.lexicographic is None and bound >= obj - 1e-9:
        status = SolveStatus.OPTIMAL  # e.g. the tabu search reached CP-SAT's lower bound
    gap = None if bound is None else (0.0 if obj == 0 else max(0.0, (obj - bound) / abs(obj)))
    return SolveResult(
        status=status,
        schedule=evaluate.to_schedule(cp, progress.best),
        objective=obj,
        best_bound=bound,
        gap=gap,
        wall_time=time.monotonic() - t0,
        first_solution_time=progress.first_time,
        stats=stats,
        history=progress.history,
    )


def precheck(cp: CProblem) -> list[str]:
    """Infeasibilities visible without search: routing too long for a deadline."""
    out: list[str] = []
    earliest = [0] * len(cp.ops)
    for i in cp.topo:
        c = cp.ops[i]
        if c.fixed:
            earliest[i] = c.fixed_end or 0
            continue
        s = c.release
        for p, lo, _ in c.preds:
            s = max(s, earliest[p] + lo)
        earliest[i] = s + min(m.duration for m in c.modes)
    for o, ids in enumerate(cp.order_ops):
        dl = cp.problem.orders[o].deadline
        if dl is None or not ids:
            continue
        need = max(earliest[i] for i in ids)
        if need > dl:
            out.append(
                f"order {cp.order_ids[o]}: deadline {dl} cannot be met; released at "
                f"{cp.problem.orders[o].release} its routing needs until at least {need} even on idle machines"
            )
    return out


def _repair_reference(cp: CProblem, ref: Timetable) -> Timetable:
    """The reference schedule re-timed with its modes and sequence (it may be stale)."""
    from paichan.solver.heuristic import generate_repaired

    prio = [float(s) for s in ref.start]
    return generate_repaired(cp, prio, modes=ref.mode, insertion=False)


class _Collector(cp_model.CpSolverSolutionCallback):
    """Forwards CP-SAT's improving solutions to the progress tracker."""

    def __init__(self, built: Built, cp: CProblem, progress: _Progress, source: str) -> None:
        super().__init__()
        self.built, self.cp, self.progress, self.source = built, cp, progress, source

    def on_solution_callback(self) -> None:
        self.progress.bound = self.best_objective_bound
        self.progress.offer(read_timetable(self, self.built, self.cp), self.source)


def read_timetable(solver: cp_model.CpSolver | cp_model.CpSolverSolutionCallback, built: Built,
                   cp: CProblem, base: Timetable | None = None) -> Timetable:
    """The timetable in the solver's current solution (base fills ops not in the model)."""
    n = len(cp.ops)
    if base is not None:
        tt = Timetable(list(base.mode), list(base.start), list(base.end), list(base.setup), True, [])
    else:
        tt = Timetable([-1] * n, [0] * n, [0] * n, [0] * n, True, [])
    for i, v in built.ops.items():
        tt.start[i] = solver.value(v.start)
        tt.end[i] = solver.value(v.end)
        tt.mode[i] = next(k for k, p in enumerate(v.presence) if (p if isinstance(p, int) else solver.value(p)))
        sv = built.setup_vars.get(i)
        tt.setup[i] = int(solver.value(sv)) if sv is not None and not isinstance(sv, int) else 0
    return tt


def _cpsat(built: Built, params: SolveParams, time_limit: float, workers: int,
           callback: cp_model.CpSolverSolutionCallback | None) -> tuple[cp_model.CpSolver, int]:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, time_limit)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = params.seed
    solver.parameters.log_search_progress = params.log
    return solver, solver.solve(built.model, callback)


def _build_full(cp: CProblem, objective: Objective, progress: _Progress,
                stage: ObjectiveName | None, fixed_terms: list[tuple[ObjectiveName, int]]) -> Built:
    """The whole problem as one model, hinted with the incumbent."""
    horizon = cp.horizon
    if objective.terms() == [ObjectiveName.MAKESPAN] and progress.best_values is not None:
        horizon = progress.best_values[ObjectiveName.MAKESPAN]  # nothing later is worth finding
    built = ModelBuilder(cp, horizon, reference=progress.reference).build()
    for term, value in fixed_terms:
        built.model.add(built.terms[term] <= value)
    if stage is None:
        built.model.minimize(sum(w * built.terms[t] for t, w in objective.weights.items() if w > 0))
    else:
        built.model.minimize(built.terms[stage])
    if progress.best is not None:
        add_hint(built, cp, progress.best)
    return built


def _monolithic(cp: CProblem, objective: Objective, progress: _Progress, params: SolveParams, deadline: float,
                stats: dict[str, float | int | str]) -> SolveStatus:
    """One CP-SAT model of the whole problem; lexicographic objectives in stages."""
    stages: list[ObjectiveName | None] = list(objective.lexicographic or [None])
    fixed_terms: list[tuple[ObjectiveName, int]] = []
    all_optimal = True
    for n_stage, stage in enumerate(stages):
        left = deadline - time.monotonic()
        if left <= 0.05:
            all_optimal = False
            break
        built = _build_full(cp, objective, progress, stage, fixed_terms)
        cb = _Collector(built, cp, progress, "cp-sat")
        solver, st = _cpsat(built, params, left / (len(stages) - n_stage), params.workers, cb)
        stats[f"stage{n_stage}_status"] = solver.status_name(st)
        stats["conflicts"] = int(stats.get("conflicts", 0)) + solver.num_conflicts
        if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            progress.offer(read_timetable(solver, built, cp), "cp-sat")
            if stage is None:
                progress.bound = solver.best_objective_bound
            else:
                fixed_terms.append((stage, int(solver.objective_value)))
            all_optimal &= st == cp_model.OPTIMAL
        elif st == cp_model.INFEASIBLE and progress.best is None:
            return SolveStatus.INFEASIBLE
        else:
            all_optimal = False
            break
    if progress.best is None:
        return SolveStatus.UNKNOWN
    return SolveStatus.OPTIMAL if all_optimal else SolveStatus.FEASIBLE


def _core_search(cp: CProblem, objective: Objective, progress: _Progress, params: SolveParams, deadline: float,
                 stats: dict[str, float | int | str]) -> SolveStatus:
    """Tabu search on this thread, CP-SAT (bounds, proofs, repairs) on the other workers."""
    assert progress.best is not None
    search = tabu.TabuSearch(cp, progress.best, seed=params.seed)
    proved = threading.Event()
    cp_workers = params.workers - 1
    cp_status: list[int] = [cp_model.UNKNOWN]
    large = len(cp.ops) > DECOMPOSE_ABOVE

    def run_cpsat(time_limit: float, workers: int) -> None:
        if large:  # a full model would stall: CP-SAT works on windows instead
            from paichan.solver.lns import improve

            improve(cp, objective, progress, params, time.monotonic() + time_limit, stats, workers=workers)
            return
        built = _build_full(cp, objective, progress, None, [])
        solver, st = _cpsat(built, params, time_limit, workers, _Collector(built, cp, progress, "cp-sat"))
        cp_status[0] = st
        stats["cp_sat_status"] = solver.status_name(st)
        if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            progress.bound = max(progress.bound or 0, solver.best_objective_bound)
            progress.offer(read_timetable(solver, built, cp), "cp-sat")
        if st == cp_model.OPTIMAL:
            proved.set()

    def between() -> None:
        """Continue the tabu search from the other worker's improvement, if any."""
        values = progress.best_values
        if values is not None and progress.best is not None and values[ObjectiveName.MAKESPAN] < search.best_val[0]:
            search.adopt(progress.best)

    def improved(_: int) -> None:
        progress.offer(search.best_timetable(), "tabu")

    if cp_workers >= 1:
        worker = threading.Thread(target=run_cpsat, args=(deadline - time.monotonic(), cp_workers), daemon=True)
        worker.start()
        search.run(deadline, stop=proved.is_set, on_improve=improved, between=between)
        worker.join()
    else:  # one worker: tabu first, CP-SAT for the rest (proofs on small instances)
        split = time.monotonic() + 0.7 * (deadline - time.monotonic())
        search.run(split, on_improve=improved)
        run_cpsat(deadline - time.monotonic(), 1)
    stats["tabu_iterations"] = search.iterations
    return SolveStatus.OPTIMAL if cp_status[0] == cp_model.OPTIMAL else SolveStatus.FEASIBLE


def explain(cp: CProblem, reference: Timetable | None, params: SolveParams, time_limit: float) -> list[str]:
    """Name a set of guarded constraints (deadlines, lags, supplies, actuals) that cannot all hold."""
    built = ModelBuilder(cp, cp.horizon, reference=reference, explain=True).build()
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 1  # sufficient assumptions come from the core-based search
    solver.parameters.random_seed = params.seed
    st = solver.solve(built.model)
    if st == cp_model.INFEASIBLE:
        core = solver.sufficient_assumptions_for_infeasibility()
        reasons = [built.assumptions[i] for i in core if i in built.assumptions]
        if reasons:
            return ["these requirements cannot all be met together:", *reasons]
        return ["the hard constraints conflict even without deadlines, max lags, material or fixed work: "
                "check calendars (windows too short), releases and machine eligibility"]
    if st in (cp_model.FEASIBLE, cp_model.OPTIMAL):
        return ["the model is feasible when re-checked with explanations on; the first solve ran out of time"]
    return [f"no explanation found within {time_limit:.0f} s (status {solver.status_name(st)})"]

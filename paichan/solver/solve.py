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

from ortools.sat.python import cp_model

from paichan.checker import check
from paichan.domain import Objective, ObjectiveName, Problem, Schedule, validate
from paichan.solver import evaluate, tabu
from paichan.solver.api import SolveParams, SolveResult, SolveStatus
from paichan.solver.compiled import CProblem, compile_problem
from paichan.solver.heuristic import RULES, Timetable, construct, generate_repaired
from paichan.solver.lns import improve
from paichan.solver.model import Built, ModelBuilder, add_hint, end_bounds, lsum
from paichan.solver.search import Callback, Collector, Progress, Status, make_solver, read_timetable, run_cpsat

#: share of the time limit the dispatching rules may use once one has produced a schedule
HEURISTIC_SHARE = 0.25
#: above this many operations the monolithic model gives way to LNS windows
DECOMPOSE_ABOVE = 3000
#: CP-SAT variables above which the full model is not tried (LNS windows only)
LARGE_MODEL = 200_000
#: the full model is stopped after this share of the time limit (at least STALL_MIN_S) without improving
STALL_SHARE = 0.5
STALL_MIN_S = 10.0
#: seconds to build the full model per literal of ModelBuilder.estimate() (measured 80-130 us on rich factory
#: problems); a model that would take most of the time left to build is not built (LNS windows instead)
BUILD_S_PER_LITERAL = 100e-6
BUILD_SHARE = 0.8


def solve(problem: Problem, params: SolveParams | None = None, on_solution: Callback | None = None) -> SolveResult:
    """Schedule ``problem``; raises :class:`paichan.domain.ProblemError` on bad data."""
    params = params or SolveParams()
    t0 = time.monotonic()
    deadline = t0 + params.time_limit
    validate(problem)
    cp = compile_problem(problem)
    objective = problem.objective
    reference = evaluate.from_schedule(cp, params.reference) if params.reference is not None else None
    progress = Progress(cp, objective, reference, t0, on_solution)

    reasons = precheck(cp)
    if reasons:
        return SolveResult(status=SolveStatus.INFEASIBLE, infeasibility=reasons, wall_time=time.monotonic() - t0)

    if reference is not None and any(k >= 0 for k in reference.mode):
        _offer_reference(cp, problem, params.reference, reference, progress)
    if params.use_heuristic:
        rules = RULES if len(cp.ops) <= 20000 else ("wspt", "mwkr")
        for rule, tt in construct(cp, rules):
            progress.offer(tt, f"heuristic:{rule}")
            # on large problems a rule takes seconds: once there is a schedule, the rules get a quarter
            # of the time (the due-date rules run first) and the search the rest
            if time.monotonic() > deadline or (progress.best is not None
                                               and time.monotonic() - t0 > HEURISTIC_SHARE * params.time_limit):
                break

    decompose = params.decompose if params.decompose is not None else len(cp.ops) > DECOMPOSE_ABOVE
    stats: dict[str, float | int | str] = {"operations": len(cp.ops)}
    if progress.best is not None and tabu.applicable(cp):
        stats["method"] = "tabu+cp-sat"
        status = _core_search(cp, objective, progress, params, deadline, stats)
    elif decompose and progress.best is not None:
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
    warnings = _verified(problem, cp, progress, status)
    if warnings:
        status = SolveStatus.FEASIBLE if progress.best is not None else SolveStatus.UNKNOWN
    if progress.best is None:
        return SolveResult(status=SolveStatus.UNKNOWN, wall_time=time.monotonic() - t0, stats=stats,
                           history=progress.history, warnings=warnings)
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
        warnings=warnings,
    )


def _verified(problem: Problem, cp: CProblem, progress: Progress, status: SolveStatus) -> list[str]:
    """Hold the answer against the independent checker; fall back to the best clean one.

    A schedule the checker rejects is a solver bug. The planner still gets the best
    schedule that passes (each source's best is kept), with a warning naming the defect.
    """
    if progress.best is None:
        return []
    report = check(problem, evaluate.to_schedule(cp, progress.best))
    if report.ok:
        return []
    first = report.violations[0]
    warnings = [f"solver defect: its best schedule fails the independent checker ({len(report.violations)} "
                f"violation(s), first: {first}); the best schedule that passes is returned instead"]
    for key, tt in sorted(progress.by_source.values(), key=lambda kt: kt[0]):
        if tt is progress.best or not check(problem, evaluate.to_schedule(cp, tt)).ok:
            continue
        progress.best, progress.best_key = tt, key
        progress.best_values = evaluate.terms(cp, tt, progress.reference)
        return warnings
    progress.best = progress.best_key = progress.best_values = None
    return [*warnings[:1], "no schedule found passes the checker"]


def _offer_reference(cp: CProblem, problem: Problem, schedule: Schedule | None, ref: Timetable,
                     progress: Progress) -> None:
    """A feasible reference reaches the search as it is; a stale one is repaired, not rebuilt.

    The repair keeps every operation's mode and holds it no earlier than its reference
    start, so the parts that still fit stay where they were. Operations the reference lacks
    (a new order) are placed by the generator where they fit, at their release in its order.
    """
    if ref.feasible and schedule is not None and check(problem, schedule).ok:
        progress.offer(Timetable(list(ref.mode), list(ref.start), list(ref.end), list(ref.setup), True, []),
                       "reference")
        return
    known = [ref.mode[i] >= 0 for i in range(len(cp.ops))]
    prio = [float(ref.start[i]) if known[i] else float(cp.ops[i].release) for i in range(len(cp.ops))]
    kept = [0 if cp.ops[i].fixed or not known[i] else ref.start[i] for i in range(len(cp.ops))]
    progress.offer(generate_repaired(cp, prio, modes=ref.mode, insertion=False, min_start=kept), "reference")
    progress.offer(generate_repaired(cp, prio, modes=ref.mode, insertion=False), "reference")


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


def _build_full(cp: CProblem, objective: Objective, progress: Progress,
                stage: ObjectiveName | None, fixed_terms: list[tuple[ObjectiveName, int]]) -> Built:
    """The whole problem as one model, hinted with the incumbent."""
    horizon, ub = _cut(cp, objective, progress, stage)
    built = ModelBuilder(cp, horizon, reference=progress.reference, ub=ub).build()
    for term, value in fixed_terms:
        built.model.add(built.terms[term] <= value)
    if stage is None:
        built.model.minimize(lsum(w * built.terms[t] for t, w in objective.weights.items() if w > 0))
    else:
        built.model.minimize(built.terms[stage])
    if progress.best is not None:
        add_hint(built, cp, progress.best)
    return built


def _cut(cp: CProblem, objective: Objective, progress: Progress,
         stage: ObjectiveName | None) -> tuple[int, list[int] | None]:
    """The horizon and per-operation latest ends the incumbent allows (nothing later can be better)."""
    horizon = cp.horizon
    if objective.terms() == [ObjectiveName.MAKESPAN] and progress.best_values is not None:
        horizon = progress.best_values[ObjectiveName.MAKESPAN]  # nothing later is worth finding
    ub = None
    if stage is None and progress.best_values is not None:
        ub = end_bounds(cp, objective, evaluate.scalar(objective, progress.best_values))
    return horizon, ub


def _monolithic(cp: CProblem, objective: Objective, progress: Progress, params: SolveParams, deadline: float,
                stats: dict[str, float | int | str]) -> SolveStatus:
    """One CP-SAT model of the whole problem; lexicographic objectives in stages."""
    if objective.lexicographic is None and progress.best is not None:
        return _full_then_lns(cp, objective, progress, params, deadline, stats)
    if progress.best is None:  # no incumbent, so no cuts: the model may be too large to build in time
        size = ModelBuilder(cp, cp.horizon).estimate()
        stats["model_estimate"] = size
        if size > LARGE_MODEL:
            stats["method"] = "none: the full model without an incumbent is too large to build in time"
            return SolveStatus.UNKNOWN
    stages: list[ObjectiveName | None] = list(objective.lexicographic) if objective.lexicographic else [None]
    fixed_terms: list[tuple[ObjectiveName, int]] = []
    all_optimal = True
    for n_stage, stage in enumerate(stages):
        left = deadline - time.monotonic()
        if left <= 0.05:
            all_optimal = False
            break
        built = _build_full(cp, objective, progress, stage, fixed_terms)
        cb = Collector(built, cp, progress, "cp-sat")
        solver, st = run_cpsat(built, params, left / (len(stages) - n_stage), params.workers, cb)
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


def _full_then_lns(cp: CProblem, objective: Objective, progress: Progress, params: SolveParams, deadline: float,
                   stats: dict[str, float | int | str]) -> SolveStatus:
    """The full model while it makes progress; LNS windows when it stalls or is too big.

    The full model gives bounds and proofs, and CP-SAT's own neighbourhood search on it
    is the strongest improver while it moves. On rich problems it can sit without a
    better solution (or not get past presolve) for a long time: a watchdog stops it
    when it has not improved the incumbent for a stall period (half the limit, at
    least 10 s, counted from its first solution), and LNS windows take the rest of the time. Above ``LARGE_MODEL``
    variables the full model is skipped.
    """
    horizon, ub = _cut(cp, objective, progress, None)
    estimate = ModelBuilder(cp, horizon, reference=progress.reference, ub=ub).estimate()
    left = deadline - time.monotonic()
    if estimate * BUILD_S_PER_LITERAL > BUILD_SHARE * left:  # e.g. a repair with a sub-second limit
        stats["full_skipped"] = f"about {estimate} literals, {estimate * BUILD_S_PER_LITERAL:.1f} s to build"
        stats["method"] = "lns"
        if left > 0.05 and progress.best is not None:
            improve(cp, objective, progress, params, deadline, stats)
        return SolveStatus.FEASIBLE if progress.best is not None else SolveStatus.UNKNOWN
    built = _build_full(cp, objective, progress, None, [])
    proto = built.model.Proto()
    size = len(proto.variables)
    stats["model_variables"], stats["model_constraints"] = size, len(proto.constraints)
    if size <= LARGE_MODEL:
        left = deadline - time.monotonic()
        stall = max(STALL_MIN_S, STALL_SHARE * left)
        st = _full_model(built, cp, progress, params, left, stall, stats)
        if st == cp_model.OPTIMAL:
            return SolveStatus.OPTIMAL
        if st == cp_model.INFEASIBLE and progress.best is None:
            return SolveStatus.INFEASIBLE
    if deadline - time.monotonic() > 0.2 and progress.best is not None:
        stats["method"] = "cp-sat+lns" if size <= LARGE_MODEL else "lns"
        improve(cp, objective, progress, params, deadline, stats)
    return SolveStatus.FEASIBLE if progress.best is not None else SolveStatus.UNKNOWN


def _full_model(built: Built, cp: CProblem, progress: Progress, params: SolveParams, time_limit: float,
                stall: float, stats: dict[str, float | int | str]) -> Status:
    """Run the full model until done, out of time, or without improvement for ``stall`` seconds."""
    cb = Collector(built, cp, progress, "cp-sat")
    solver = make_solver(built, params, time_limit, params.workers)
    done = threading.Event()
    stalled: list[bool] = [False]
    t0 = time.monotonic()

    def watchdog() -> None:
        """Stop the search once it has gone ``stall`` seconds without improving, counted from its first
        solution (presolve of a large model takes its time and may still pay off), or from the start if it
        has found nothing by half of its time."""
        while not done.wait(0.25):
            since = cb.searching_since
            if since is None:
                since = t0 + max(0.0, 0.5 * time_limit - stall)
            last = max([since - progress.t0] + [ev.time for ev in progress.history if ev.source == "cp-sat"])
            if time.monotonic() - progress.t0 - last > stall:
                stalled[0] = True
                solver.stop_search()
                return

    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    st = solver.solve(built.model, cb)
    done.set()
    guard.join()
    stats["full_status"] = solver.status_name(st) + (" (stalled, stopped)" if stalled[0] else "")
    stats["full_s"] = round(time.monotonic() - t0, 2)
    stats["conflicts"] = int(stats.get("conflicts", 0)) + solver.num_conflicts
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        progress.offer(read_timetable(solver, built, cp), "cp-sat")
        progress.bound = max(progress.bound or 0.0, solver.best_objective_bound)
    return st


def _core_search(cp: CProblem, objective: Objective, progress: Progress, params: SolveParams, deadline: float,
                 stats: dict[str, float | int | str]) -> SolveStatus:
    """Tabu search on this thread, CP-SAT (bounds, proofs, repairs) on the other workers."""
    assert progress.best is not None
    search = tabu.TabuSearch(cp, progress.best, seed=params.seed)
    proved = threading.Event()
    cp_workers = params.workers - 1
    cp_status: list[Status] = [cp_model.UNKNOWN]
    large = len(cp.ops) > DECOMPOSE_ABOVE

    def cpsat_side(time_limit: float, workers: int) -> None:
        if large:  # a full model would stall: CP-SAT works on windows instead
            improve(cp, objective, progress, params, time.monotonic() + time_limit, stats, workers=workers)
            return
        built = _build_full(cp, objective, progress, None, [])
        solver, st = run_cpsat(built, params, time_limit, workers, Collector(built, cp, progress, "cp-sat"))
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
        worker = threading.Thread(target=cpsat_side, args=(deadline - time.monotonic(), cp_workers), daemon=True)
        worker.start()
        search.run(deadline, stop=proved.is_set, on_improve=improved, between=between)
        worker.join()
    else:  # one worker: tabu first, CP-SAT for the rest (proofs on small instances)
        split = time.monotonic() + 0.7 * (deadline - time.monotonic())
        search.run(split, on_improve=improved)
        cpsat_side(deadline - time.monotonic(), 1)
    stats["tabu_iterations"] = search.iterations
    return SolveStatus.OPTIMAL if cp_status[0] == cp_model.OPTIMAL else SolveStatus.FEASIBLE


def explain(cp: CProblem, reference: Timetable | None, params: SolveParams, time_limit: float) -> list[str]:
    """Name a set of guarded constraints (deadlines, lags, supplies, actuals) that cannot all hold."""
    built = ModelBuilder(cp, cp.horizon, reference=reference, explain=True).build()
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 1  # sufficient assumptions come from the core-based search
    # no presolve: it may merge an assumption literal with a model literal (a mode's presence) and report
    # that one instead, which names no requirement
    solver.parameters.cp_model_presolve = False
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

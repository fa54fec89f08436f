"""Large neighbourhood search: CP-SAT on windows of a large schedule.

A monolithic model of tens of thousands of operations is slow to build and
stalls; instead each step frees a neighbourhood of the incumbent (operations
starting in a time window, or those on a group of machines around a time)
and pins the rest. The sub-model holds the free operations plus the pinned
ones they share resources with, as fixed intervals, so whatever it returns is
feasible as a whole. The result is then re-timed by the schedule generator
(modes kept, order taken from the new starts), which left-shifts the work
after the window; the better of the two is offered to the incumbent.
The neighbourhood size adapts: grow when sub-models close fast, shrink when
they time out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from ortools.sat.python import cp_model

from paichan.domain import Objective
from paichan.solver import evaluate
from paichan.solver.api import SolveParams
from paichan.solver.compiled import CProblem
from paichan.solver.heuristic import Timetable, generate_repaired
from paichan.solver.model import ModelBuilder, add_hint, end_bounds, lsum
from paichan.solver.search import Progress, read_timetable

#: up to this many operations every window's result is also re-timed (left-shifted) as a whole
RETIME_UP_TO = 3000


def neighbourhood(cp: CProblem, starts: list[int], modes: list[int], size: int, rng: random.Random) -> set[int]:
    """A set of about ``size`` planned operations close in time (and maybe machine)."""
    planned = [c.idx for c in cp.ops if not c.fixed]
    if len(planned) <= size:
        return set(planned)
    by_start = sorted(planned, key=lambda i: starts[i])
    if rng.random() < 0.5 or len(cp.machines) < 4:
        k = rng.randrange(0, len(by_start) - size + 1)
        return set(by_start[k : k + size])
    # machine group: a random machine and those its operations' orders also visit
    pivot = rng.choice(by_start)
    machines = {cp.ops[pivot].modes[modes[pivot]].machine}
    for i in cp.order_ops[cp.ops[pivot].order]:
        machines.update(md.machine for md in cp.ops[i].modes)
    t = starts[pivot]
    near = [i for i in by_start if any(md.machine in machines for md in cp.ops[i].modes)]
    near.sort(key=lambda i: abs(starts[i] - t))
    return set(near[:size])


def _window_bounds(cp: CProblem, inc: Timetable, free: set[int], cuts: list[int] | None) -> list[int]:
    """Latest ends for a window's free operations: the objective cuts, and no further than
    the window's own span past its end (a neighbourhood, not a proof: the incumbent fits)."""
    hi = max(inc.end[i] for i in free)
    span = hi - min(inc.start[i] for i in free)
    work = sum(max(md.duration for md in cp.ops[i].modes) for i in free)
    limit = hi + max(span, work)
    return [min(limit, cp.horizon if cuts is None else cuts[i]) for i in range(len(cp.ops))]


def improve(
    cp: CProblem,
    objective: Objective,
    progress: Progress,
    params: SolveParams,
    deadline: float,
    stats: dict[str, float | int | str],
    stop: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> None:
    """Improve ``progress.best`` by windowed CP-SAT until the deadline."""
    rng = random.Random(params.seed)
    size = min(len(cp.ops), 120)
    steps = improved = 0
    weights = {t: w for t, w in objective.weights.items() if w > 0}
    if objective.lexicographic is not None:  # windows optimise a weighted stand-in of the order
        weights = {t: 1000 ** (len(objective.lexicographic) - n - 1) for n, t in enumerate(objective.lexicographic)}
    while time.monotonic() < deadline - 0.05 and not (stop is not None and stop()):
        inc = progress.best
        assert inc is not None
        free = neighbourhood(cp, inc.start, inc.mode, size, rng)
        ub = _window_bounds(cp, inc, free, end_bounds(cp, objective, evaluate.scalar(objective,
                                                                                progress.best_values or {})))
        built = ModelBuilder(cp, cp.horizon, free=free, base=inc, reference=progress.reference, ub=ub).build()
        compact = lsum(built.ops[i].end for i in free)  # tie-break: pack the window tightly
        built.model.minimize(lsum(w * (len(free) + 1) * built.terms[t] for t, w in weights.items()) + compact)  # type: ignore[operator]
        add_hint(built, cp, inc)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.05, min(2.0, deadline - time.monotonic()))
        solver.parameters.num_workers = workers or params.workers
        solver.parameters.random_seed = rng.randrange(1 << 30)
        t0 = time.monotonic()
        st = solver.solve(built.model)
        steps += 1
        if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            tt = read_timetable(solver, built, cp, base=inc)
            taken = progress.offer(tt, "lns")
            if len(cp.ops) <= RETIME_UP_TO or steps % 10 == 0:  # a full re-timing costs seconds on large shops
                shifted = generate_repaired(cp, [float(s) for s in tt.start], modes=tt.mode, insertion=False)
                taken = progress.offer(shifted, "lns") or taken
            improved += taken
        if st == cp_model.OPTIMAL and time.monotonic() - t0 < 0.5:
            size = min(len(cp.ops), int(size * 1.2) + 1)
        elif st != cp_model.OPTIMAL:
            size = max(20, int(size * 0.8))
    stats["lns_steps"] = steps
    stats["lns_improving_steps"] = improved
    stats["lns_final_window"] = size

"""Search plumbing shared by the full model, LNS and the tabu search.

The incumbent tracker (:class:`Progress`), CP-SAT's solution callback and the
reading of a solver's solution back into a timetable live here, so that
``solve`` (orchestration) and ``lns`` (windows) both use them without
importing each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ortools.sat.python import cp_model

from paichan.domain import Objective, ObjectiveName
from paichan.solver import evaluate
from paichan.solver.api import SolutionEvent, SolveParams
from paichan.solver.compiled import CProblem
from paichan.solver.heuristic import Timetable, record_setups
from paichan.solver.model import Built

Callback = Callable[[SolutionEvent], None]
#: what CpSolver.solve returns: an int enum in ortools 9.14, a pybind enum in 9.15 (status_name takes either)
Status = Any

#: CP-SAT variables up to which presolve probes (larger models skip it)
PROBE_UP_TO = 5_000


class Progress:
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
        # best timetable per source family ("heuristic", "cp-sat", "lns", ...): the fallbacks
        # if the final answer ever fails the independent checker
        self.by_source: dict[str, tuple[tuple[float, ...], Timetable]] = {}

    def offer(self, tt: Timetable, source: str) -> bool:
        """Take ``tt`` if feasible and better; report it. Returns True if taken."""
        if not tt.feasible:
            return False
        with self.lock:
            return self._offer(tt, source)

    def _offer(self, tt: Timetable, source: str) -> bool:
        values = evaluate.terms(self.cp, tt, self.reference)
        k = evaluate.key(self.objective, values)
        family = source.split(":")[0]
        if family not in self.by_source or k < self.by_source[family][0]:
            self.by_source[family] = (k, tt)
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


class Collector(cp_model.CpSolverSolutionCallback):
    """Forwards CP-SAT's improving solutions to the progress tracker."""

    def __init__(self, built: Built, cp: CProblem, progress: Progress, source: str) -> None:
        super().__init__()
        self.built, self.cp, self.progress, self.source = built, cp, progress, source
        self.searching_since: float | None = None  # first solution seen: presolve is over

    def on_solution_callback(self) -> None:
        if self.searching_since is None:
            self.searching_since = time.monotonic()
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
    if cp.has_setups:  # from the sequences: a pinned operation's predecessor may have changed (LNS)
        tt.violations = record_setups(cp, tt.mode, tt.start, tt.end, tt.setup)
        tt.feasible = not tt.violations
    return tt


def make_solver(built: Built, params: SolveParams, time_limit: float, workers: int) -> cp_model.CpSolver:
    """A CP-SAT solver set up for this model and budget."""
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, time_limit)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = params.seed
    solver.parameters.log_search_progress = params.log
    if len(built.model.Proto().variables) > PROBE_UP_TO:
        # presolve probing of a large rich model (break choices, material literals) can take
        # tens of seconds before the first conflict; CP-SAT's own LNS needs no probing
        solver.parameters.cp_model_probing_level = 0
    return solver


def run_cpsat(built: Built, params: SolveParams, time_limit: float, workers: int,
              callback: cp_model.CpSolverSolutionCallback | None) -> tuple[cp_model.CpSolver, Status]:
    solver = make_solver(built, params, time_limit, workers)
    return solver, solver.solve(built.model, callback)

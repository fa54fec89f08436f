"""The model's verdict on a given schedule: is it feasible there, and at what objective?

The CP-SAT model and the independent checker state the same rules twice. This fixes
a schedule into the model (every start, end and mode) and lets CP-SAT say whether
the model accepts it and what each objective term comes to, so that tests and
benchmarks can hold the two implementations against each other in both directions.
"""

from __future__ import annotations

from typing import Literal

from ortools.sat.python import cp_model
from pydantic import BaseModel, Field

from paichan.domain import ObjectiveName, Problem, ProblemError, Schedule, validate
from paichan.solver import evaluate
from paichan.solver.compiled import compile_problem
from paichan.solver.model import ModelBuilder, lsum


class ModelVerdict(BaseModel):
    """What the model says of one schedule."""

    status: Literal["feasible", "infeasible", "unknown", "invalid"]
    terms: dict[ObjectiveName, int] | None = None  # as the model computes them
    objective: float | None = None  # the problem's objective from those terms
    reason: str = ""
    variables: int = Field(default=0, ge=0)
    constraints: int = Field(default=0, ge=0)


def model_verdict(problem: Problem, schedule: Schedule, time_limit: float = 10.0,
                  reference: Schedule | None = None) -> ModelVerdict:
    """Fix ``schedule`` into the CP-SAT model of ``problem`` and solve it."""
    try:
        validate(problem)
    except ProblemError as e:
        return ModelVerdict(status="invalid", reason=str(e))
    cp = compile_problem(problem)
    tt = evaluate.from_schedule(cp, schedule)
    if not tt.feasible:
        missing = [c.id for c in cp.ops if tt.mode[c.idx] < 0]
        return ModelVerdict(status="invalid", reason=f"operations without a valid entry: {missing[:5]}")
    last = max(tt.end, default=0)
    if last >= cp.horizon:  # a schedule may idle past the model's horizon and still be feasible
        cp = compile_problem(problem, horizon=last + 1)
    ref = evaluate.from_schedule(cp, reference) if reference is not None else None
    # each operation ends where the schedule says: only the breaks up to there enter the model
    built = ModelBuilder(cp, cp.horizon, reference=ref, ub=list(tt.end)).build()
    m = built.model
    for i, v in built.ops.items():
        c = cp.ops[i]
        k = tt.mode[i]
        if c.fixed:
            if (k, tt.start[i], tt.end[i]) != (c.fixed_mode, c.fixed_start, c.fixed_end):
                return ModelVerdict(status="infeasible", reason=f"{c.id} is fixed at mode {c.fixed_mode} "
                                    f"[{c.fixed_start}, {c.fixed_end}), the schedule moves it")
            continue
        if isinstance(v.presence[k], int) and v.presence[k] == 0:
            return ModelVerdict(status="infeasible", reason=f"{c.id}: mode {k} is impossible in the model")
        m.add(v.start == tt.start[i])
        m.add(v.end == tt.end[i])
        if not isinstance(v.presence[k], int):
            m.add(v.presence[k] == 1)
    weights = {t: w for t, w in problem.objective.weights.items() if w > 0}
    if problem.objective.lexicographic is not None:
        weights = {t: 1 for t in problem.objective.lexicographic}
    m.minimize(lsum(w * built.terms[t] for t, w in weights.items()))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 1
    st = solver.solve(m)
    proto = m.Proto()
    nv, nc = len(proto.variables), len(proto.constraints)
    if st == cp_model.INFEASIBLE:
        return ModelVerdict(status="infeasible", reason="CP-SAT proves the fixed schedule infeasible",
                            variables=nv, constraints=nc)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ModelVerdict(status="unknown", reason=solver.status_name(st), variables=nv, constraints=nc)
    terms = {t: int(solver.value(e)) for t, e in built.terms.items()}
    return ModelVerdict(status="feasible", terms=terms, objective=evaluate.scalar(problem.objective, terms),
                        variables=nv, constraints=nc)

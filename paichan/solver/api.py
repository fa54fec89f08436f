"""Solver parameters and results: the boundary the CLI, agents and benchmarks use."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from paichan.domain import Schedule


class SolveStatus(str, Enum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    UNKNOWN = "unknown"


class SolveParams(BaseModel):
    """How long and how hard to search."""

    model_config = ConfigDict(extra="forbid")

    time_limit: float = Field(default=10.0, gt=0)
    workers: int = Field(default=2, ge=1)
    seed: int = 0
    reference: Schedule | None = None  # warm start and anchor of the stability term
    use_heuristic: bool = True  # dispatching-rule start (and fallback answer)
    decompose: bool | None = None  # LNS decomposition; None = decide by size
    log: bool = False


class SolutionEvent(BaseModel):
    """One improving solution, streamed to callbacks while the search runs."""

    time: float  # seconds since solve() started
    objective: float
    bound: float | None
    source: str  # "heuristic", "cp-sat", "lns", ...


class SolveResult(BaseModel):
    """What a solve produced, including why not when it produced nothing."""

    model_config = ConfigDict(extra="forbid")

    status: SolveStatus
    schedule: Schedule | None = None
    objective: float | None = None
    best_bound: float | None = None
    gap: float | None = None  # (objective - bound) / objective
    wall_time: float = 0.0
    first_solution_time: float | None = None
    stats: dict[str, float | int | str] = Field(default_factory=dict)
    infeasibility: list[str] = Field(default_factory=list)  # human-readable reasons
    history: list[SolutionEvent] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)  # e.g. a solver defect caught by the checker

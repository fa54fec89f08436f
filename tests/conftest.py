"""Shared helpers: tiny problem builders and a solve-then-check wrapper."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paichan.checker import assert_feasible
from paichan.domain import KPIs, Mode, Operation, Order, Problem, Resource
from paichan.solver import SolveParams, SolveResult, solve

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "bench" / "instances"


def op(id: str, *modes: tuple[str, int], **kw: object) -> Operation:
    """Operation with modes given as (machine, duration) pairs."""
    return Operation(id=id, modes=[Mode(resource=r, duration=d) for r, d in modes], **kw)  # type: ignore[arg-type]


def order(id: str, *ops: Operation, **kw: object) -> Order:
    return Order(id=id, operations=list(ops), **kw)  # type: ignore[arg-type]


def machines(*ids: str, **kw: object) -> list[Resource]:
    return [Resource(id=i, **kw) for i in ids]  # type: ignore[arg-type]


def solved(problem: Problem, time_limit: float = 3.0, **kw: object) -> tuple[SolveResult, KPIs]:
    """Solve with the real solver and verify with the independent checker."""
    result = solve(problem, SolveParams(time_limit=time_limit, workers=2, **kw))  # type: ignore[arg-type]
    assert result.schedule is not None, (result.status, result.infeasibility)
    kpis = assert_feasible(problem, result.schedule)
    return result, kpis


@pytest.fixture
def instances() -> Path:
    return INSTANCES

"""Shared helpers: tiny problem builders and a solve-then-check wrapper."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paichan.bus import Bus
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


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def bus() -> Iterator[Bus]:
    """A bus on the machine's Redis (127.0.0.1:6379) in a fresh namespace, removed afterwards."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    b = Bus(REDIS_URL, f"test:{uuid.uuid4().hex[:10]}")
    yield b
    keys = list(b.r.scan_iter(f"{b.ns}:*"))
    if keys:
        b.r.delete(*keys)

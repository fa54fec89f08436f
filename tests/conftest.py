"""Shared helpers: tiny problem builders and a solve-then-check wrapper."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paichan.bus import Bus, EmbeddedRedis
from paichan.checker import assert_feasible
from paichan.domain import KPIs, Mode, Operation, Order, Problem, Resource
from paichan.solver import SolveParams, SolveResult, solve

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "bench" / "instances"


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``cond()``'s first truthy value, polled until ``timeout`` (the failure names what never came)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} ({timeout:g} s)")


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """The project's own private redis-server, once per session on a free port.

    No redis-server binary is an error of every test that needs it, never a skip: the bus and agent tests
    must not vanish from a green run. (Tests that kill Redis start their own.)
    """
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def session_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A private redis-server whose default user has a password, as capacity-sharing sessions require."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("session-redis"), password=uuid.uuid4().hex).start()
    yield server
    server.stop()


@pytest.fixture
def bus(redis_server: EmbeddedRedis) -> Iterator[Bus]:
    """A bus on the session's private Redis in a fresh namespace, removed afterwards."""
    b = Bus(redis_server.url, f"test:{uuid.uuid4().hex[:10]}")
    yield b
    keys = list(b.r.scan_iter(f"{b.ns}:*"))
    if keys:
        b.r.delete(*keys)

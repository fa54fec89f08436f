"""Peer solvers of the benchmark harness solve ft06 to its optimum with valid schedules."""

from __future__ import annotations

import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `bench` is a repo-level package, not installed
    sys.path.insert(0, str(ROOT))

from bench.bks import load_bks  # noqa: E402
from bench.peers import PeerResult, solve_plain_cpsat, solve_pyjobshop  # noqa: E402
from paichan.domain import Problem  # noqa: E402
from paichan.solver.readers import read_fjsp, read_jssp  # noqa: E402

FT06 = ROOT / "bench" / "instances" / "jssp" / "ft06.txt"


def _assert_valid(problem: Problem, res: PeerResult) -> None:
    """One entry per operation, mode durations, routing order, no machine overlap."""
    assert res.schedule is not None
    by_op = res.schedule.by_operation()
    ops = problem.operations()
    assert len(res.schedule.operations) == len(ops) == len(by_op)
    for order, op in ops:
        s = by_op[op.id]
        assert s.order == order.id
        assert s.resource == op.modes[s.mode].resource
        assert s.end - s.start == op.modes[s.mode].duration and s.start >= 0
    for order in problem.orders:
        for a, b in pairwise(order.operations):
            assert by_op[a.id].end <= by_op[b.id].start, (a.id, b.id)
    per_machine: dict[str, list[tuple[int, int]]] = {}
    for s in res.schedule.operations:
        per_machine.setdefault(s.resource, []).append((s.start, s.end))
    for spans in per_machine.values():
        spans.sort()
        assert all(e <= s2 for (_, e), (s2, _) in pairwise(spans))
    assert res.makespan == max(s.end for s in res.schedule.operations)


@pytest.mark.parametrize("solve", [solve_plain_cpsat, solve_pyjobshop])
def test_ft06_optimal(solve: Callable[..., PeerResult]) -> None:
    problem = read_jssp(FT06)
    res = solve(problem, time_limit=5, workers=1)
    assert res.status == "optimal"
    assert res.makespan == 55 and res.bound == 55
    _assert_valid(problem, res)
    assert res.wall_time > 0


@pytest.mark.parametrize("solve", [solve_plain_cpsat, solve_pyjobshop])
def test_flexible_picks_valid_modes(solve: Callable[..., PeerResult], tmp_path: Path) -> None:
    # Two jobs both prefer machine 1; the optimum puts one of them on its slower alternative.
    path = tmp_path / "flex.fjs"
    path.write_text("2 2\n2 2 1 3 2 5 1 2 2\n2 2 1 3 2 5 1 1 2\n")
    problem = read_fjsp(path)
    res = solve(problem, time_limit=5, workers=1)
    assert res.status == "optimal" and res.makespan == 7
    _assert_valid(problem, res)


def test_bks_table() -> None:
    bks = load_bks()
    assert len(bks) == 224
    assert bks["ft06"] == (55, 55) and bks["mk10"] == (189, 193)


def test_quality_families_resolve() -> None:
    from bench.quality import FAMILIES

    sizes = {name: len(make()) for name, make in FAMILIES.items()}
    assert sizes["la"] == 15 and sizes["ft"] == 3 and sizes["rdata"] == 66 and sizes["rdata-la"] == 40
    bks = load_bks()
    for make in FAMILIES.values():
        for inst in make():
            assert inst.path.is_file() and inst.name in bks, inst

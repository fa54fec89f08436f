"""The factory generator: sizes, determinism by seed, valid problems, every feature present, speed."""

from __future__ import annotations

import time

import pytest

from paichan.domain import DowntimeKind, ResourceKind, validate
from paichan.generators import factory_instance


@pytest.mark.parametrize("size", [3, 4, 7, 8, 100, 500, 2000])
def test_sizes_and_validity(size: int) -> None:
    problem = factory_instance(size, seed=1)
    assert len(problem.operations()) == size
    validate(problem)
    assert all(3 <= len(o.operations) <= 6 for o in problem.orders)


def test_same_seed_same_problem_other_seed_other_problem() -> None:
    a, b, c = factory_instance(300, 5), factory_instance(300, 5), factory_instance(300, 6)
    assert a.model_dump_json() == b.model_dump_json()
    assert a.model_dump_json() != c.model_dump_json()


def test_every_feature_is_present() -> None:
    problem = factory_instance(500, 0)
    machines = [r for r in problem.resources if r.kind == ResourceKind.MACHINE]
    pools = [r for r in problem.resources if r.kind == ResourceKind.POOL]
    patterns = {tuple((s.start, s.end) for s in m.calendar.shifts) for m in machines}
    assert len(patterns) == 3  # 24 h, two shifts, day shift
    assert all(any(d.kind == DowntimeKind.MAINTENANCE for d in m.calendar.downtimes) for m in machines)
    assert any(m.setups and m.initial_family for m in machines) and any(not m.has_setups for m in machines)
    assert len(pools) == 1 and pools[0].capacity >= 2
    ops = [op for _, op in problem.operations()]
    assert all(2 <= len(op.modes) <= 3 for op in ops)
    assert any(m.secondary for op in ops for m in op.modes)
    assert any(op.can_span_breaks for op in ops)
    assert len({op.family for op in ops}) >= 3
    assert any(o.release > 0 for o in problem.orders) and all(o.due is not None for o in problem.orders)
    assert len({o.priority for o in problem.orders}) > 1
    assert {m.id for m in problem.materials} == {"STEEL", "PARTS"}
    assert all(m.receipts for m in problem.materials)
    assert all(o.operations[0].materials for o in problem.orders)


def test_options_drop_materials_and_spanning() -> None:
    problem = factory_instance(200, 0, materials=False, spanning=False)
    validate(problem)
    assert not problem.materials
    assert not any(op.materials or op.can_span_breaks for _, op in problem.operations())


def test_ten_thousand_operations_quickly() -> None:
    t0 = time.process_time()  # CPU time: the 2 shared cores are often busy with other runs
    problem = factory_instance(10_000, 0)
    elapsed = time.process_time() - t0
    validate(problem)
    assert len(problem.operations()) == 10_000
    assert elapsed < 3.0


@pytest.mark.parametrize("size", [12, 30])
def test_pyjobshop_translation_is_checker_clean_and_scores_the_same(size: int) -> None:
    pytest.importorskip("pyjobshop")
    from bench.peers import solve_pyjobshop_rich
    from paichan.checker import assert_feasible

    problem = factory_instance(size, seed=0, materials=False)
    result = solve_pyjobshop_rich(problem, time_limit=10, workers=1)
    assert result.status in ("optimal", "feasible") and result.schedule is not None
    kpis = assert_feasible(problem, result.schedule)
    assert result.objective == 100 * kpis.weighted_tardiness + kpis.makespan


def test_pyjobshop_refuses_receipts_by_name() -> None:
    pytest.importorskip("pyjobshop")
    from bench.peers import solve_pyjobshop_rich

    with pytest.raises(ValueError, match="material receipts over time"):
        solve_pyjobshop_rich(factory_instance(30, seed=0), time_limit=1, workers=1)


@pytest.mark.parametrize("seed", [0, 5])
def test_paichan_and_pyjobshop_prove_the_same_optimum(seed: int) -> None:
    """Two independent models of the same semantics must agree on small instances they both solve to optimality."""
    pytest.importorskip("pyjobshop")
    from bench.peers import solve_pyjobshop_rich
    from paichan.solver import solve
    from paichan.solver.api import SolveParams, SolveStatus

    problem = factory_instance(40, seed=seed, materials=False)
    peer = solve_pyjobshop_rich(problem, time_limit=20, workers=2)
    ours = solve(problem, SolveParams(time_limit=20, workers=2))
    assert peer.status == "optimal" and ours.status == SolveStatus.OPTIMAL
    assert ours.objective == peer.objective

"""The solver on every constraint type; each schedule verified by the checker.

Each test builds a small problem in which the constraint under test binds
(a schedule ignoring it would be better or different), so the assertion can
fail if the model drops the constraint.
"""

from __future__ import annotations

from itertools import pairwise

from conftest import machines, op, order, solved

from paichan.domain import (
    Actual,
    Calendar,
    Downtime,
    Material,
    MaterialUse,
    Mode,
    Objective,
    ObjectiveName,
    Operation,
    OperationStatus,
    Predecessor,
    Problem,
    Receipt,
    Resource,
    ResourceKind,
    SecondaryUse,
    SetupTime,
    TimeWindow,
)
from paichan.examples import demo_plant, flexible_job_shop
from paichan.solver import SolutionEvent, SolveParams, SolveStatus, solve
from paichan.solver.readers import read_jssp


def by_id(result):  # type: ignore[no-untyped-def]
    return result.schedule.by_operation()


def test_job_shop_ft06_proven_optimal(instances) -> None:  # type: ignore[no-untyped-def]
    result, kpis = solved(read_jssp(instances / "jssp" / "ft06.txt"), time_limit=10)
    assert kpis.makespan == 55
    assert result.status == SolveStatus.OPTIMAL


def test_alternative_modes_pick_the_fast_machine() -> None:
    p = Problem(resources=machines("slow", "fast"), orders=[order("O", op("a", ("slow", 50), ("fast", 10)))])
    result, kpis = solved(p)
    assert by_id(result)["a"].resource == "fast" and kpis.makespan == 10


def test_shift_calendar_keeps_rigid_operation_inside_a_shift() -> None:
    shifts = Calendar(period=100, shifts=[TimeWindow(start=0, end=60)])
    p = Problem(resources=machines("M", calendar=shifts), orders=[order("O", op("a", ("M", 30)), op("b", ("M", 40)))])
    result, _ = solved(p)
    b = by_id(result)["b"]
    assert b.start >= 100 and b.end <= 160  # 30 + 40 do not fit in one 60-minute shift


def test_operation_may_span_a_break_and_stretches() -> None:
    shifts = Calendar(period=100, shifts=[TimeWindow(start=0, end=60)])
    p = Problem(resources=machines("M", calendar=shifts),
                orders=[order("O", op("a", ("M", 30)), op("b", ("M", 40), can_span_breaks=True))])
    result, kpis = solved(p)
    b = by_id(result)["b"]
    assert (b.start, b.end) == (30, 110)  # 30 before the break, 10 after it
    assert kpis.makespan == 110


def test_breakdown_window_is_avoided() -> None:
    cal = Calendar(downtimes=[Downtime(start=10, end=50, kind="breakdown")])
    p = Problem(resources=machines("M", calendar=cal), orders=[order("O", op("a", ("M", 20)))])
    result, _ = solved(p)
    assert by_id(result)["a"].start >= 50


def test_sequence_dependent_setups_are_reserved_and_minimised() -> None:
    setups = [SetupTime(from_family=a, to_family=b, time=50) for a in "xy" for b in "xy" if a != b]
    m = Resource(id="M", setups=setups, initial_family="x")
    ops = [op(f"o{i}", ("M", 10), family=f) for i, f in enumerate("xyxy")]
    p = Problem(resources=[m], orders=[order(f"O{i}", o) for i, o in enumerate(ops)],
                objective=Objective(weights={ObjectiveName.MAKESPAN: 1}))
    _, kpis = solved(p)
    assert kpis.total_setup == 50  # x x then one change to y y
    assert kpis.makespan == 90


def test_operator_pool_limits_parallel_work() -> None:
    ops_pool = Resource(id="OPS", kind=ResourceKind.POOL, capacity=1)
    mode = lambda r: Mode(resource=r, duration=10, secondary=[SecondaryUse(resource="OPS")])  # noqa: E731
    p = Problem(resources=[*machines("M1", "M2"), ops_pool],
                orders=[order("A", Operation(id="a", modes=[mode("M1")])),
                        order("B", Operation(id="b", modes=[mode("M2")]))])
    _, kpis = solved(p)
    assert kpis.makespan == 20  # one operator: the two machines cannot run together


def test_material_arrival_delays_the_consumer() -> None:
    p = Problem(
        resources=machines("M"),
        materials=[Material(id="steel", stock=1, receipts=[Receipt(time=70, quantity=5)])],
        orders=[order("A", op("a", ("M", 10), materials=[MaterialUse(material="steel", quantity=1)])),
                order("B", op("b", ("M", 10), materials=[MaterialUse(material="steel", quantity=2)]))],
    )
    result, _ = solved(p)
    assert by_id(result)["b"].start >= 70


def test_min_and_max_lags() -> None:
    p = Problem(resources=machines("M1", "M2"), orders=[order(
        "O", op("a", ("M1", 10)),
        op("b", ("M2", 10), predecessors=[Predecessor(operation="a", min_lag=25, max_lag=30)]),
    ), order("X", op("x", ("M2", 40)))])
    result, _ = solved(p)
    s = by_id(result)
    assert 25 <= s["b"].start - s["a"].end <= 30


def test_release_now_and_deadline() -> None:
    p = Problem(now=5, resources=machines("M"), orders=[
        order("late", op("a", ("M", 10)), release=20),
        order("urgent", op("b", ("M", 10)), deadline=15),
    ])
    result, _ = solved(p)
    s = by_id(result)
    assert s["a"].start >= 20 and s["b"].start >= 5 and s["b"].end <= 15


def test_started_and_done_work_stays_put() -> None:
    a = op("a", ("M", 10), status=OperationStatus.DONE, actual=Actual(resource="M", start=0, end=12))
    b = op("b", ("M", 10), ("N", 10), status=OperationStatus.STARTED, actual=Actual(resource="N", start=5))
    orders = [order("O", a), order("P", b), order("Q", op("c", ("N", 5)))]
    p = Problem(now=12, resources=machines("M", "N"), orders=orders)
    result, _ = solved(p)
    s = by_id(result)
    assert (s["a"].start, s["a"].end) == (0, 12) and (s["b"].resource, s["b"].start, s["b"].end) == ("N", 5, 15)
    assert s["c"].start >= 15


def test_weighted_tardiness_serves_the_important_order_first() -> None:
    p = Problem(resources=machines("M"), objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 1}),
                orders=[order("cheap", op("a", ("M", 10)), due=10, priority=1),
                        order("vip", op("b", ("M", 10)), due=10, priority=5)])
    result, kpis = solved(p)
    assert by_id(result)["b"].start == 0 and kpis.weighted_tardiness == 10


def test_lexicographic_objective_keeps_the_first_term_optimal() -> None:
    p = Problem(resources=machines("M1", "M2"),
                objective=Objective(lexicographic=[ObjectiveName.WEIGHTED_TARDINESS, ObjectiveName.MAKESPAN]),
                orders=[order("A", op("a", ("M1", 10), ("M2", 30)), due=10, priority=3),
                        order("B", op("b", ("M1", 10), ("M2", 30)), due=100)])
    result, kpis = solved(p)
    assert kpis.weighted_tardiness == 0 and kpis.makespan == 20
    assert result.status == SolveStatus.OPTIMAL


def test_stability_keeps_a_reference_schedule() -> None:
    base = flexible_job_shop(jobs=6, ops_per_job=3, machines=3, seed=3)
    first, _ = solved(base, time_limit=2)
    stable = base.model_copy(deep=True)
    stable.objective = Objective(weights={ObjectiveName.MAKESPAN: 1, ObjectiveName.STABILITY: 10})
    second, _ = solved(stable, time_limit=2, reference=first.schedule)
    assert second.history[0].source == "reference"  # warm start from the reference
    moved = [s for s in second.schedule.operations if first.schedule.by_operation()[s.operation].start != s.start]
    assert not moved


def test_progress_callback_streams_improving_solutions() -> None:
    events: list[SolutionEvent] = []
    p = flexible_job_shop(jobs=10, ops_per_job=5, machines=4, seed=1)
    result = solve(p, SolveParams(time_limit=2), on_solution=events.append)
    assert events and events == result.history
    assert all(b.objective < a.objective for a, b in pairwise(events))


def test_large_problem_goes_through_lns_and_stays_feasible() -> None:
    p = demo_plant(orders=40)
    result, _ = solved(p, time_limit=6, decompose=True)
    assert result.stats["method"] == "lns" and int(result.stats["lns_improving_steps"]) > 0
    start = min(ev.objective for ev in result.history if ev.source.startswith("heuristic"))
    assert any(ev.source == "lns" for ev in result.history)
    assert result.objective is not None and result.objective < start  # LNS improved on its start


def test_demo_plant_is_feasible() -> None:
    result, kpis = solved(demo_plant(), time_limit=5)
    assert kpis.total_setup > 0 and result.objective is not None


def test_infeasible_deadline_is_explained_before_search() -> None:
    p = Problem(resources=machines("M"), orders=[order("O", op("a", ("M", 10)), op("b", ("M", 10)), deadline=15)])
    result = solve(p, SolveParams(time_limit=2))
    assert result.status == SolveStatus.INFEASIBLE and result.schedule is None
    assert "order O" in result.infeasibility[0] and "deadline 15" in result.infeasibility[0]


def test_conflicting_deadlines_are_named() -> None:
    p = Problem(resources=machines("M", "N"), orders=[
        order("A", op("a", ("M", 10)), deadline=12),
        order("B", op("b", ("M", 10)), deadline=12),
        order("C", op("c", ("N", 10)), deadline=12),
    ])
    result = solve(p, SolveParams(time_limit=5))
    assert result.status == SolveStatus.INFEASIBLE
    text = " ".join(result.infeasibility)
    assert "order A" in text and "order B" in text and "order C" not in text


def test_one_group_keeps_an_order_on_one_line() -> None:
    def two_lines(fast: str) -> list[Mode]:
        return [Mode(resource="L1-M", duration=5 if fast == "L1" else 50, group="L1"),
                Mode(resource="L2-M", duration=5 if fast == "L2" else 50, group="L2")]

    o = order("O", Operation(id="a", modes=two_lines("L1")), Operation(id="b", modes=two_lines("L2")), one_group=True)
    p = Problem(resources=machines("L1-M", "L2-M"), orders=[o])
    result, kpis = solved(p)
    s = by_id(result)
    assert s["a"].resource[:2] == s["b"].resource[:2]  # mixing lines would give makespan 10
    assert kpis.makespan == 55


def test_running_operation_resumes_after_a_breakdown() -> None:
    cal = Calendar(downtimes=[Downtime(start=20, end=50, kind="breakdown")])
    a = op("a", ("M", 30), can_span_breaks=True, status=OperationStatus.STARTED, actual=Actual(resource="M", start=10))
    p = Problem(now=20, resources=machines("M", calendar=cal), orders=[order("O", a, op("b", ("M", 5)))])
    result, _ = solved(p)
    s = by_id(result)
    assert (s["a"].start, s["a"].end) == (10, 70)  # 10 minutes before the breakdown, 20 after it
    assert s["b"].start >= 70


def test_one_group_heuristic_picks_a_line_able_to_do_every_step() -> None:
    # line A is fast on the first step but cannot do the second: the whole order must go to line B
    a = Operation(id="a", modes=[Mode(resource="A-1", duration=1, group="A"), Mode(resource="B-1", duration=20,
                                                                                      group="B")])
    b = Operation(id="b", modes=[Mode(resource="B-2", duration=5, group="B")])
    p = Problem(resources=machines("A-1", "B-1", "B-2"), orders=[order("O", a, b, one_group=True)])
    result, kpis = solved(p, use_heuristic=True)
    assert {s.resource for s in result.schedule.operations} == {"B-1", "B-2"} and kpis.makespan == 25

"""Tests of the independent feasibility checker.

For every rule, one hand-built schedule that obeys it and a minimally changed
one that breaks exactly that rule (and no other).
"""

from __future__ import annotations

import pytest

from paichan.checker import CheckReport, ScheduleInvalid, Violation, assert_feasible, check, compute_kpis
from paichan.domain import (
    Actual,
    Calendar,
    Downtime,
    KPIs,
    Material,
    MaterialUse,
    Mode,
    Operation,
    OperationStatus,
    Order,
    Predecessor,
    Problem,
    Receipt,
    Resource,
    ResourceKind,
    Schedule,
    ScheduledOperation,
    SecondaryUse,
    SetupTime,
    TimeWindow,
)

DAY_SHIFT = Calendar(period=1440, shifts=[TimeWindow(start=480, end=960)])  # works 08:00-16:00 daily


# --------------------------------------------------------------------------- builders


def machine(rid: str = "M1", **kw: object) -> Resource:
    """A machine resource."""
    return Resource(id=rid, **kw)


def pool(rid: str = "OP", capacity: int = 1, **kw: object) -> Resource:
    """A renewable pool (operators, tools)."""
    return Resource(id=rid, kind=ResourceKind.POOL, capacity=capacity, **kw)


def op(oid: str, resource: str = "M1", duration: int = 10, **kw: object) -> Operation:
    """A single-mode operation unless ``modes`` is given."""
    modes = kw.pop("modes", None) or [Mode(resource=resource, duration=duration)]
    return Operation(id=oid, modes=modes, **kw)


def order(oid: str, *ops: Operation, **kw: object) -> Order:
    return Order(id=oid, operations=list(ops), **kw)


def problem(*orders: Order, resources: list[Resource] | None = None, **kw: object) -> Problem:
    return Problem(resources=resources or [machine()], orders=list(orders), **kw)


def so(
    oid: str, order_id: str, start: int, end: int, resource: str = "M1", mode: int = 0, setup: int = 0
) -> ScheduledOperation:
    """One schedule entry."""
    return ScheduledOperation(
        operation=oid, order=order_id, resource=resource, mode=mode, start=start, end=end, setup_before=setup
    )


def schedule(*entries: ScheduledOperation) -> Schedule:
    return Schedule(operations=list(entries))


def kinds(report: CheckReport) -> set[str]:
    return {v.kind for v in report.violations}


def assert_ok(p: Problem, s: Schedule) -> CheckReport:
    report = check(p, s)
    assert report.ok, report.violations
    return report


def assert_only(p: Problem, s: Schedule, kind: str, operation: str | None = None) -> list[Violation]:
    """The schedule breaks exactly rule ``kind`` (optionally for ``operation``)."""
    report = check(p, s)
    assert not report.ok
    assert kinds(report) == {kind}, report.violations
    if operation is not None:
        assert {v.operation for v in report.violations} == {operation}, report.violations
    return report.violations


def replace(s: Schedule, oid: str, **changes: object) -> Schedule:
    """A copy of ``s`` with one entry changed (re-validated, so a misspelt field fails loudly)."""
    return Schedule(
        operations=[
            ScheduledOperation.model_validate({**e.model_dump(), **changes}) if e.operation == oid else e
            for e in s.operations
        ]
    )


# --------------------------------------------------------------------------- 1 coverage


@pytest.fixture
def two_step() -> tuple[Problem, Schedule]:
    """Order O1: A then B on M1, 10 each."""
    p = problem(order("O1", op("A"), op("B")))
    return p, schedule(so("A", "O1", 0, 10), so("B", "O1", 10, 20))


def test_feasible_two_step(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    report = assert_ok(p, s)
    assert report.kpis is not None and report.kpis.makespan == 20


def test_missing_operation(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    violations = assert_only(p, schedule(s.operations[0]), "missing", "B")
    assert "'B'" in violations[0].message and "'O1'" in violations[0].message
    assert check(p, schedule(s.operations[0])).kpis is None


def test_duplicate_operation(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    assert_only(p, schedule(*s.operations, so("B", "O1", 10, 20)), "duplicate", "B")


def test_unknown_operation(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    assert_only(p, schedule(*s.operations, so("Z", "O1", 30, 40)), "unknown_operation", "Z")


def test_wrong_order_id(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    assert_only(p, replace(s, "B", order="O9"), "order", "B")


# --------------------------------------------------------------------------- 2 modes


@pytest.fixture
def two_modes() -> tuple[Problem, Schedule]:
    """A runs on M1 in 10 or on M2 in 20."""
    a = op("A", modes=[Mode(resource="M1", duration=10), Mode(resource="M2", duration=20)])
    p = problem(order("O1", a), resources=[machine("M1"), machine("M2")])
    return p, schedule(so("A", "O1", 0, 20, resource="M2", mode=1))


def test_second_mode_feasible(two_modes: tuple[Problem, Schedule]) -> None:
    assert_ok(*two_modes)


def test_mode_index_out_of_range(two_modes: tuple[Problem, Schedule]) -> None:
    p, s = two_modes
    assert_only(p, replace(s, "A", mode=2), "mode", "A")


def test_mode_resource_mismatch(two_modes: tuple[Problem, Schedule]) -> None:
    p, s = two_modes
    assert_only(p, replace(s, "A", resource="M1"), "mode", "A")


# --------------------------------------------------------------------------- 3 duration and calendar


def test_wrong_duration(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    violations = assert_only(p, replace(s, "B", end=25), "duration", "B")
    assert "15" in violations[0].message and "10" in violations[0].message


def test_shift_calendar_no_span() -> None:
    p = problem(order("O1", op("A", duration=60)), resources=[machine(calendar=DAY_SHIFT)])
    assert_ok(p, schedule(so("A", "O1", 900, 960)))  # ends exactly at the end of the shift
    assert_ok(p, schedule(so("A", "O1", 1440 + 480, 1440 + 540)))  # next day's shift
    assert_only(p, schedule(so("A", "O1", 930, 990)), "calendar", "A")  # runs past 16:00
    assert_only(p, schedule(so("A", "O1", 420, 480)), "calendar", "A")  # before the shift


def test_downtime_blocks_machine() -> None:
    cal = Calendar(downtimes=[Downtime(start=100, end=120)])
    p = problem(order("O1", op("A", duration=30)), resources=[machine(calendar=cal)])
    assert_ok(p, schedule(so("A", "O1", 120, 150)))
    assert_only(p, schedule(so("A", "O1", 80, 110)), "calendar", "A")


def test_span_break_feasible_and_infeasible() -> None:
    # 60 units of work: 30 before 16:00 on day 0, 30 after 08:00 on day 1.
    p = problem(order("O1", op("A", duration=60, can_span_breaks=True)), resources=[machine(calendar=DAY_SHIFT)])
    start, end = 930, 1440 + 480 + 30
    assert_ok(p, schedule(so("A", "O1", start, end)))
    assert_ok(p, schedule(so("A", "O1", 900, 960)))  # a spanning op may also fit without pausing
    # Too short an elapsed time: only 50 working units.
    assert_only(p, schedule(so("A", "O1", start, end - 10)), "duration", "A")
    # Working time right (60) but it starts during the night.
    assert_only(p, schedule(so("A", "O1", 1440 + 400, 1440 + 540)), "calendar", "A")
    # Working time right (60 in [900, 960)) but the last unit lies in the night.
    assert_only(p, schedule(so("A", "O1", 900, 1000)), "calendar", "A")


def test_no_span_op_cannot_pause() -> None:
    p = problem(order("O1", op("A", duration=60)), resources=[machine(calendar=DAY_SHIFT)])
    violations = check(p, schedule(so("A", "O1", 930, 1440 + 510))).violations
    assert {v.kind for v in violations} == {"duration", "calendar"}


def test_zero_duration_operation() -> None:
    p = problem(order("O1", op("A", duration=0), op("B", duration=0)), resources=[machine(calendar=DAY_SHIFT)])
    # Zero-duration ops ignore the calendar and may share an instant.
    assert_ok(p, schedule(so("A", "O1", 100, 100), so("B", "O1", 100, 100)))
    assert_only(p, schedule(so("A", "O1", 500, 500), so("B", "O1", 500, 501)), "duration", "B")


# --------------------------------------------------------------------------- 4 machines


def test_overlap_on_machine() -> None:
    p = problem(order("O1", op("A")), order("O2", op("B")))
    s = schedule(so("A", "O1", 0, 10), so("B", "O2", 10, 20))
    assert_ok(p, s)
    violations = assert_only(p, replace(s, "B", start=5, end=15), "overlap", "B")
    assert "'A'" in violations[0].message and "'M1'" in violations[0].message


def test_overlap_found_behind_a_long_operation() -> None:
    """C overlaps the long A even though B (between them in start order) ends first."""
    p = problem(order("O1", op("A", duration=100)), order("O2", op("B")), order("O3", op("C")))
    s = schedule(so("A", "O1", 0, 100), so("B", "O2", 10, 20), so("C", "O3", 30, 40))
    ops = {v.operation for v in check(p, s).violations if v.kind == "overlap"}
    assert ops == {"B", "C"}


@pytest.fixture
def setups() -> tuple[Problem, Schedule]:
    """M1 starts on family X; X->Y takes 15, anything else 5."""
    m = machine(setups=[SetupTime(from_family="X", to_family="Y", time=15)], default_setup=5, initial_family="X")
    p = problem(
        order("O1", op("A", family="X")),
        order("O2", op("B", family="Y")),
        order("O3", op("C", family="Z")),
        resources=[m],
    )
    s = schedule(so("A", "O1", 0, 10), so("B", "O2", 25, 35, setup=15), so("C", "O3", 40, 50, setup=5))
    return p, s


def test_setups_feasible(setups: tuple[Problem, Schedule]) -> None:
    report = assert_ok(*setups)
    assert report.kpis is not None and report.kpis.total_setup == 20


def test_setup_too_short(setups: tuple[Problem, Schedule]) -> None:
    p, s = setups
    violations = assert_only(p, replace(s, "B", setup_before=10), "setup", "B")
    assert "15" in violations[0].message


def test_setup_overlaps_previous_operation(setups: tuple[Problem, Schedule]) -> None:
    p, s = setups
    assert_only(p, replace(s, "B", start=20, end=30), "setup", "B")  # setup from 5, A runs until 10


def test_initial_family_setup() -> None:
    m = machine(setups=[SetupTime(from_family="X", to_family="Y", time=15)], initial_family="X")
    p = problem(order("O1", op("B", family="Y")), resources=[m])
    assert_ok(p, schedule(so("B", "O1", 15, 25, setup=15)))
    assert_only(p, schedule(so("B", "O1", 15, 25)), "setup", "B")  # no setup reserved
    assert_only(p, schedule(so("B", "O1", 10, 20, setup=15)), "setup", "B")  # setup would start at -5


def test_same_family_needs_no_setup(setups: tuple[Problem, Schedule]) -> None:
    p = problem(order("O1", op("A", family="X")), order("O2", op("B", family="X")), resources=setups[0].resources)
    assert_ok(p, schedule(so("A", "O1", 0, 10), so("B", "O2", 10, 20)))


def test_zero_duration_op_ignored_for_setups(setups: tuple[Problem, Schedule]) -> None:
    p, _ = setups
    p = p.model_copy(deep=True)
    p.orders.append(order("O4", op("Z", duration=0, family="Z")))
    # Z sits between A and B, inside B's setup; the X->Y changeover still counts.
    s = schedule(
        so("A", "O1", 0, 10), so("Z", "O4", 12, 12), so("B", "O2", 25, 35, setup=15), so("C", "O3", 40, 50, setup=5)
    )
    assert_ok(p, s)


# --------------------------------------------------------------------------- 5 pools


@pytest.fixture
def pooled() -> tuple[Problem, Schedule]:
    """A on M1 and B on M2 each need the single operator."""
    need = [SecondaryUse(resource="OP")]
    a = op("A", modes=[Mode(resource="M1", duration=10, secondary=need)])
    b = op("B", modes=[Mode(resource="M2", duration=10, secondary=need)])
    p = problem(order("O1", a), order("O2", b), resources=[machine("M1"), machine("M2"), pool("OP", 1)])
    return p, schedule(so("A", "O1", 0, 10, "M1"), so("B", "O2", 10, 20, "M2"))


def test_pool_feasible(pooled: tuple[Problem, Schedule]) -> None:
    assert_ok(*pooled)


def test_pool_over_capacity(pooled: tuple[Problem, Schedule]) -> None:
    p, s = pooled
    violations = assert_only(p, replace(s, "B", start=5, end=15), "pool", "B")
    assert "'OP'" in violations[0].message and "2 > capacity 1" in violations[0].message


def test_pool_capacity_two_allows_overlap(pooled: tuple[Problem, Schedule]) -> None:
    p, s = pooled
    p = p.model_copy(update={"resources": [machine("M1"), machine("M2"), pool("OP", 2)]})
    assert_ok(p, replace(s, "B", start=5, end=15))


def test_pool_calendar(pooled: tuple[Problem, Schedule]) -> None:
    p, s = pooled
    off = pool("OP", 1, calendar=Calendar(downtimes=[Downtime(start=15, end=30)]))
    p = p.model_copy(update={"resources": [machine("M1"), machine("M2"), off]})
    assert_ok(p, replace(s, "B", start=30, end=40))
    assert_only(p, s, "pool", "B")


# --------------------------------------------------------------------------- 6 precedence


def test_implicit_precedence() -> None:
    p = problem(order("O1", op("A"), op("B", resource="M2")), resources=[machine("M1"), machine("M2")])
    s = schedule(so("A", "O1", 0, 10), so("B", "O1", 10, 20, "M2"))
    assert_ok(p, s)
    violations = assert_only(p, replace(s, "B", start=9, end=19), "precedence", "B")
    assert "'A'" in violations[0].message


def test_explicit_predecessors_replace_routing_order() -> None:
    # B has no predecessor, C follows A with a min lag of 5 and a max lag of 20.
    link = Predecessor(operation="A", min_lag=5, max_lag=20)
    p = problem(
        order("O1", op("A"), op("B", resource="M2", predecessors=[]), op("C", resource="M3", predecessors=[link])),
        resources=[machine("M1"), machine("M2"), machine("M3")],
    )
    s = schedule(so("A", "O1", 0, 10), so("B", "O1", 0, 10, "M2"), so("C", "O1", 15, 25, "M3"))
    assert_ok(p, s)
    assert_ok(p, replace(s, "C", start=30, end=40))  # lag exactly 20
    assert_only(p, replace(s, "C", start=14, end=24), "precedence", "C")  # lag 4 < 5
    violations = assert_only(p, replace(s, "C", start=31, end=41), "max_lag", "C")  # lag 21 > 20
    assert "21" in violations[0].message and "20" in violations[0].message


# --------------------------------------------------------------------------- 7, 8 dates


def test_release_and_now() -> None:
    p = problem(order("O1", op("A"), release=50), now=20)
    assert_ok(p, schedule(so("A", "O1", 50, 60)))
    assert_only(p, schedule(so("A", "O1", 40, 50)), "release", "A")
    p2 = problem(order("O1", op("A"), release=5), now=20)
    assert_ok(p2, schedule(so("A", "O1", 20, 30)))
    assert_only(p2, schedule(so("A", "O1", 10, 20)), "now", "A")


def test_deadline(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    p = problem(order("O1", op("A"), op("B"), deadline=20))
    assert_ok(p, s)
    assert_only(p, schedule(so("A", "O1", 0, 10), so("B", "O1", 11, 21)), "deadline", "B")


# --------------------------------------------------------------------------- 9 materials


@pytest.fixture
def material() -> tuple[Problem, Schedule]:
    """1 unit in stock, 2 more arrive at 50; A and B each consume 1 at their start."""
    steel = Material(id="steel", stock=1, receipts=[Receipt(time=50, quantity=2)])
    use = [MaterialUse(material="steel", quantity=1)]
    p = problem(
        order("O1", op("A", materials=use)),
        order("O2", op("B", resource="M2", materials=use)),
        resources=[machine("M1"), machine("M2")],
        materials=[steel],
    )
    return p, schedule(so("A", "O1", 0, 10), so("B", "O2", 50, 60, "M2"))


def test_material_feasible_with_receipt(material: tuple[Problem, Schedule]) -> None:
    assert_ok(*material)  # B starts exactly when the receipt arrives


def test_material_shortage_before_receipt(material: tuple[Problem, Schedule]) -> None:
    p, s = material
    violations = assert_only(p, replace(s, "B", start=20, end=30), "material", "B")
    assert "'steel'" in violations[0].message and "20" in violations[0].message


def test_material_simultaneous_consumers(material: tuple[Problem, Schedule]) -> None:
    p, s = material
    assert_only(p, replace(s, "B", start=0, end=10), "material")


def test_started_work_has_already_consumed(material: tuple[Problem, Schedule]) -> None:
    """Stock is stock now: A, already started at 0, does not draw on it again."""
    p, s = material
    a = p.orders[0].operations[0]
    a.status = OperationStatus.STARTED
    a.actual = Actual(resource="M1", start=0)
    assert_ok(p, replace(s, "B", start=0, end=10))  # B takes the one unit in stock


def test_fractional_material_tolerance() -> None:
    steel = Material(id="steel", stock=0.3)
    use = [MaterialUse(material="steel", quantity=0.1)]
    p = problem(*(order(f"O{i}", op(f"A{i}", materials=use)) for i in range(3)), materials=[steel])
    assert_ok(p, schedule(*(so(f"A{i}", f"O{i}", 10 * i, 10 * i + 10) for i in range(3))))


# --------------------------------------------------------------------------- 10 fixed work


@pytest.fixture
def fixed() -> tuple[Problem, Schedule]:
    """A was done on M1 in [0, 12); B started on M1 at 12 (10 on M1, 20 on M2); now is 15."""
    a = op("A", status=OperationStatus.DONE, actual=Actual(resource="M1", start=0, end=12))
    b = op(
        "B",
        modes=[Mode(resource="M2", duration=20), Mode(resource="M1", duration=10)],
        status=OperationStatus.STARTED,
        actual=Actual(resource="M1", start=12),
    )
    c = op("C", resource="M2")
    p = problem(order("O1", a, b, c, release=5), resources=[machine("M1"), machine("M2")], now=15)
    return p, schedule(so("A", "O1", 0, 12), so("B", "O1", 12, 22, "M1", mode=1), so("C", "O1", 22, 32, "M2"))


def test_fixed_feasible(fixed: tuple[Problem, Schedule]) -> None:
    # Done A ran 12 (mode says 10) and both start before now and release: all fine for fixed work.
    assert_ok(*fixed)


def test_done_moved(fixed: tuple[Problem, Schedule]) -> None:
    p, s = fixed
    assert_only(p, replace(s, "A", end=11), "fixed", "A")
    assert_only(p, replace(s, "A", start=1), "fixed", "A")


def test_started_wrong_end(fixed: tuple[Problem, Schedule]) -> None:
    p, s = fixed
    violations = assert_only(p, replace(s, "B", end=21), "fixed", "B")
    assert "22" in violations[0].message


def test_started_wrong_start(fixed: tuple[Problem, Schedule]) -> None:
    p, s = fixed
    moved = replace(replace(s, "B", start=13, end=23), "C", start=23, end=33)
    assert_only(p, moved, "fixed", "B")


def test_started_on_other_resource(fixed: tuple[Problem, Schedule]) -> None:
    p, s = fixed
    assert_only(p, replace(s, "B", resource="M2", mode=0), "fixed", "B")


def test_fixed_work_ignores_calendar() -> None:
    a = op("A", duration=60, status=OperationStatus.STARTED, actual=Actual(resource="M1", start=930))
    p = problem(order("O1", a), resources=[machine(calendar=DAY_SHIFT)], now=1000)
    assert_ok(p, schedule(so("A", "O1", 930, 990)))


# --------------------------------------------------------------------------- KPIs and API


def test_kpis_by_hand() -> None:
    """O1 (due 15, priority 3): A [0,10) M1, B [10,25) M2 -> completion 25, tardiness 10.

    O2 (due 40, priority 2): C [12,20) M1 after setup 2 -> on time. O3 has no due date.
    Makespan 25; M1 busy 10+8=18, M2 busy 15, M3 idle.
    """
    m1 = machine("M1", default_setup=2)
    p = problem(
        order("O1", op("A", family="f"), op("B", resource="M2", duration=15), due=15, priority=3),
        order("O2", op("C", duration=8, family="g"), due=40, priority=2),
        order("O3", op("D", resource="M2", duration=0)),
        resources=[m1, machine("M2"), machine("M3"), pool("OP", 3)],
    )
    s = schedule(
        so("A", "O1", 0, 10), so("B", "O1", 10, 25, "M2"), so("C", "O2", 12, 20, setup=2), so("D", "O3", 25, 25, "M2")
    )
    report = assert_ok(p, s)
    expected = KPIs(
        makespan=25,
        weighted_tardiness=30,
        total_tardiness=10,
        late_orders=1,
        total_setup=2,
        utilisation={"M1": 18 / 25, "M2": 15 / 25, "M3": 0.0},
    )
    assert report.kpis == expected
    assert compute_kpis(p, s) == expected
    assert assert_feasible(p, s) == expected


def test_kpis_empty_problem() -> None:
    p = problem()
    assert compute_kpis(p, schedule()) == KPIs(
        makespan=0, weighted_tardiness=0, total_tardiness=0, late_orders=0, total_setup=0, utilisation={"M1": 0.0}
    )


def test_kpis_reported_despite_violations(two_step: tuple[Problem, Schedule]) -> None:
    p, s = two_step
    report = check(p, replace(s, "B", start=5, end=15))
    assert not report.ok and report.kpis is not None and report.kpis.makespan == 15


def test_assert_feasible_raises_with_listing() -> None:
    p = problem(*(order(f"O{i}", op(f"A{i}")) for i in range(30)))
    s = schedule(*(so(f"A{i}", f"O{i}", 0, 10) for i in range(30)))  # 29 overlaps on M1
    with pytest.raises(ScheduleInvalid) as info:
        assert_feasible(p, s)
    assert len(info.value.report.violations) == 29
    text = str(info.value)
    assert "29 violation(s)" in text and "and 9 more" in text and text.count("[overlap]") == 20
    assert isinstance(info.value, AssertionError)


def test_many_operations_scale() -> None:
    """10,000 operations on 10 machines with one operator pool and a material check quickly."""
    n, machines = 10_000, 10
    need = [SecondaryUse(resource="OP")]
    use = [MaterialUse(material="mat", quantity=1)]
    orders = []
    entries = []
    for i in range(n // 2):
        ops = []
        for k in range(2):
            m = f"M{(i + k) % machines}"
            ops.append(op(f"J{i}-{k}", modes=[Mode(resource=m, duration=5, secondary=need)], materials=use))
        orders.append(order(f"J{i}", *ops))
    t = 0
    for o in orders:
        for operation in o.operations:
            entries.append(so(operation.id, o.id, t, t + 5, operation.modes[0].resource))
            t += 5
    p = problem(
        *orders,
        resources=[*(machine(f"M{j}", calendar=DAY_SHIFT) for j in range(machines)), pool("OP", 1)],
        materials=[Material(id="mat", stock=n)],
    )
    # The calendar makes some entries infeasible; the point is that checking is fast and complete.
    report = check(p, schedule(*entries))
    assert report.kpis is not None and report.kpis.makespan == 5 * n
    assert kinds(report) == {"calendar"}


# --------------------------------------------------------------------------- 11 one group


def test_one_group_orders_stay_on_one_line() -> None:
    a = Operation(id="A", modes=[Mode(resource="M1", duration=10, group="L1"), Mode(resource="M2", duration=10,
                                                                                       group="L2")])
    b = Operation(id="B", modes=[Mode(resource="M1", duration=10, group="L1"), Mode(resource="M2", duration=10,
                                                                                       group="L2")])
    p = Problem(resources=[machine("M1"), machine("M2")], orders=[Order(id="O", one_group=True, operations=[a, b])])
    same = Schedule(operations=[ScheduledOperation(operation="A", order="O", resource="M1", mode=0, start=0, end=10),
                                ScheduledOperation(operation="B", order="O", resource="M1", mode=0, start=10, end=20)])
    assert check(p, same).ok
    mixed = Schedule(operations=[same.operations[0],
                                 ScheduledOperation(operation="B", order="O", resource="M2", mode=1, start=10, end=20)])
    report = check(p, mixed)
    assert [v.kind for v in report.violations] == ["group"]


def test_shop_floor_history_is_not_held_to_precedence() -> None:
    """A successor the MES reported started before its predecessor was reported done is history: the checker
    accepts it (as the model does); a planned operation after them is still held to precedence."""
    m = [Resource(id="A"), Resource(id="B")]
    ops = [Operation(id="o1", modes=[Mode(resource="A", duration=10)], status=OperationStatus.DONE,
                     actual=Actual(resource="A", start=0, end=12)),
           Operation(id="o2", modes=[Mode(resource="B", duration=10)], status=OperationStatus.STARTED,
                     actual=Actual(resource="B", start=8)),
           Operation(id="o3", modes=[Mode(resource="A", duration=5)])]
    problem = Problem(now=15, resources=m, orders=[Order(id="O", operations=ops)])
    rows = [("o1", "A", 0, 12), ("o2", "B", 8, 18), ("o3", "A", 18, 23)]
    schedule = Schedule(operations=[ScheduledOperation(operation=o, order="O", resource=r, mode=0, start=s, end=e)
                                    for o, r, s, e in rows])
    assert check(problem, schedule).ok
    early = schedule.model_copy(deep=True)
    early.operations[2].start, early.operations[2].end = 15, 20  # before o2 ends at 18
    assert [v.kind for v in check(problem, early).violations] == ["precedence"]

"""The solver on factory-shaped cases where model and checker used to disagree.

Each case is small and built so that the old defect shows: a break of a machine the
operation does not run on, setups on flexible machines, started work on setup
machines or on a pool with downtime, long downtimes beyond the old horizon, material
quantities with four decimals. Every schedule goes through the checker (``solved``).
"""

from __future__ import annotations

from conftest import machines, op, order, solved

from paichan.checker import check
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
    Order,
    Problem,
    Receipt,
    Resource,
    ResourceKind,
    SecondaryUse,
    SetupTime,
    TimeWindow,
)
from paichan.solver import SolveParams, SolveStatus, model_verdict, solve
from paichan.solver.compiled import compile_problem
from paichan.solver.model import ModelBuilder

DAY_SHIFT = Calendar(period=1440, shifts=[TimeWindow(start=360, end=1320)])


def test_break_of_a_machine_not_chosen_does_not_bind() -> None:
    # released at 22:20: the day-shift machine is off until 06:00, the 24 h one can start now
    a = Operation(id="a", modes=[Mode(resource="DAY", duration=60), Mode(resource="H24", duration=90)],
                  can_span_breaks=True)
    p = Problem(resources=[Resource(id="DAY", calendar=DAY_SHIFT), Resource(id="H24")],
                orders=[Order(id="O", release=1340, operations=[a])])
    result, kpis = solved(p, use_heuristic=False)
    assert result.schedule is not None
    s = result.schedule.by_operation()["a"]
    assert (s.resource, s.start, s.end) == ("H24", 1340, 1430)
    assert result.status == SolveStatus.OPTIMAL and kpis.makespan == 1430


def test_setup_is_recorded_on_whichever_machine_is_chosen() -> None:
    setups = [SetupTime(from_family="x", to_family="y", time=17), SetupTime(from_family="y", to_family="x", time=20)]
    res = [Resource(id=m, setups=setups, initial_family="x") for m in ("M1", "M2")]
    ops = [Operation(id=f"o{k}", family="y", modes=[Mode(resource="M1", duration=10), Mode(resource="M2", duration=12)])
           for k in range(3)]
    p = Problem(resources=res, orders=[Order(id=f"O{k}", operations=[o]) for k, o in enumerate(ops)],
                objective=Objective(weights={ObjectiveName.MAKESPAN: 3, ObjectiveName.SETUP: 1}))
    result, kpis = solved(p, use_heuristic=False)
    assert kpis.total_setup == 2 * 17  # both machines used (makespan 37), one changeover x -> y on each
    assert result.objective == 3 * kpis.makespan + kpis.total_setup == 3 * 37 + 34


def test_started_work_on_a_setup_machine_keeps_its_setup() -> None:
    setups = [SetupTime(from_family="x", to_family="y", time=5)]
    started = Operation(id="s", family="y", modes=[Mode(resource="M", duration=10)],
                        status=OperationStatus.STARTED, actual=Actual(resource="M", start=10))
    p = Problem(now=12, resources=[Resource(id="M", setups=setups, initial_family="x")],
                orders=[Order(id="O", operations=[started, op("t", ("M", 5), family="x")])])
    result, _ = solved(p)
    assert result.schedule is not None and result.schedule.by_operation()["s"].setup_before == 5


def test_started_work_runs_on_through_its_pools_downtime() -> None:
    pool = Resource(id="OPS", kind=ResourceKind.POOL, capacity=1,
                    calendar=Calendar(downtimes=[Downtime(start=30, end=60)]))
    running = Operation(id="r", modes=[Mode(resource="M", duration=30, secondary=[SecondaryUse(resource="OPS")])],
                        status=OperationStatus.STARTED, actual=Actual(resource="M", start=10))
    later = Operation(id="n", modes=[Mode(resource="M", duration=10, secondary=[SecondaryUse(resource="OPS")])])
    p = Problem(now=15, resources=[*machines("M"), pool], orders=[Order(id="O", operations=[running, later])])
    result, _ = solved(p, use_heuristic=False)
    assert result.status == SolveStatus.OPTIMAL
    assert result.schedule is not None and result.schedule.by_operation()["n"].start == 60


def test_started_operations_sharing_a_time_still_let_cp_sat_run() -> None:
    ops = [Operation(id=f"s{k}", modes=[Mode(resource=f"M{k}", duration=20)], status=OperationStatus.STARTED,
                     actual=Actual(resource=f"M{k}", start=10)) for k in range(2)]
    p = Problem(now=15, resources=machines("M0", "M1"),
                orders=[Order(id="A", operations=[ops[0]]), Order(id="B", operations=[ops[1]]),
                        Order(id="C", operations=[op("n", ("M0", 5), ("M1", 7))])])
    result, kpis = solved(p)
    assert result.stats.get("full_status") == "OPTIMAL" and result.status == SolveStatus.OPTIMAL
    assert kpis.makespan == 35


def test_a_downtime_longer_than_the_old_horizon_is_not_infeasible() -> None:
    cal = Calendar(downtimes=[Downtime(start=10, end=100_000, kind="breakdown")])
    p = Problem(resources=machines("M", calendar=cal), orders=[order("O", op("a", ("M", 20)), op("b", ("M", 20)))])
    result, kpis = solved(p, use_heuristic=False)
    assert result.status == SolveStatus.OPTIMAL and kpis.makespan == 100_040


def test_material_with_four_decimals_is_not_rounded_away() -> None:
    mat = Material(id="glue", stock=1.0, receipts=[Receipt(time=100, quantity=1.0)])
    p = Problem(resources=machines("A", "B", "C"), materials=[mat], orders=[
        Order(id=f"O{k}", operations=[Operation(id=f"o{k}", modes=[Mode(resource=m, duration=5)],
                                                materials=[MaterialUse(material="glue", quantity=0.3334)])])
        for k, m in enumerate("ABC")])
    _, kpis = solved(p, use_heuristic=False)
    assert kpis.makespan == 105  # three uses need 1.0002: one waits for the receipt


def test_scarce_material_goes_to_the_urgent_order_in_the_first_schedule() -> None:
    # the non-urgent order is released first; dispatching alone would hand it the only sheet
    mat = Material(id="sheet", stock=1, receipts=[Receipt(time=500, quantity=1)])
    use = [MaterialUse(material="sheet", quantity=1)]
    p = Problem(resources=machines("A", "B"), materials=[mat], orders=[
        Order(id="LATER", due=2000, priority=1, operations=[Operation(id="l", modes=[Mode(resource="A", duration=10)],
                                                                       materials=use)]),
        Order(id="URGENT", release=5, due=20, priority=5,
              operations=[Operation(id="u", modes=[Mode(resource="B", duration=10)], materials=use)]),
    ], objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 100, ObjectiveName.MAKESPAN: 1}))
    result = solve(p, SolveParams(time_limit=2, workers=1))
    heuristic = [ev for ev in result.history if ev.source.startswith("heuristic")]
    assert heuristic and heuristic[-1].objective == 100 * 0 + 510  # urgent at 5, the other after the receipt


def test_a_feasible_reference_reaches_the_search_unchanged() -> None:
    p = Problem(resources=machines("A", "B"), orders=[order(f"O{k}", op(f"o{k}", ("A", 10), ("B", 10)), due=100)
                                                       for k in range(4)],
                objective=Objective(weights={ObjectiveName.MAKESPAN: 1}))
    first, _ = solved(p)
    assert first.schedule is not None
    # a valid but loose plan (everything a bit later): it must be offered as it is, not re-timed
    loose = first.schedule.model_copy(deep=True)
    for s in loose.operations:
        s.start, s.end = s.start + 7, s.end + 7
    assert check(p, loose).ok
    result = solve(p, SolveParams(time_limit=1, workers=1, reference=loose, use_heuristic=False))
    assert result.history[0].source == "reference"
    assert result.history[0].objective == max(s.end for s in loose.operations)


def test_a_schedule_failing_the_checker_is_never_the_answer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # fault injection: a model that forgets the breaks of span-able operations
    monkeypatch.setattr(ModelBuilder, "_spans", lambda self: None)
    a = Operation(id="a", modes=[Mode(resource="DAY", duration=120)], can_span_breaks=True)
    p = Problem(resources=[Resource(id="DAY", calendar=DAY_SHIFT)], orders=[Order(id="O", release=1300,
                                                                                  operations=[a])])
    result = solve(p, SolveParams(time_limit=2, workers=1))
    assert result.schedule is not None and check(p, result.schedule).ok
    assert result.warnings and "fails the independent checker" in result.warnings[0]
    assert result.status == SolveStatus.FEASIBLE


def test_model_verdict_agrees_with_the_checker_on_the_demo_plant() -> None:
    from paichan.examples import demo_plant

    p = demo_plant()
    result, kpis = solved(p, time_limit=3)
    assert result.schedule is not None
    verdict = model_verdict(p, result.schedule)
    assert verdict.status == "feasible" and verdict.terms is not None
    assert verdict.terms[ObjectiveName.MAKESPAN] == kpis.makespan
    assert verdict.terms[ObjectiveName.WEIGHTED_TARDINESS] == kpis.weighted_tardiness
    assert verdict.terms[ObjectiveName.SETUP] == kpis.total_setup
    assert verdict.objective == result.objective
    # and a schedule the checker rejects is rejected by the model too
    bad = result.schedule.model_copy(deep=True)
    bad.operations[1].start -= 1
    bad.operations[1].end -= 1
    assert not check(p, bad).ok and model_verdict(p, bad).status == "infeasible"


def test_model_is_compact_on_flexible_span_operations() -> None:
    # 40 span-able operations with 12 modes over 3 calendars and 20 days of night breaks
    cals = [DAY_SHIFT, Calendar(), Calendar(period=1440, shifts=[TimeWindow(start=0, end=1000)])]
    res = [Resource(id=f"M{k}", calendar=cals[k % 3]) for k in range(12)]
    ops = [Operation(id=f"o{k}", can_span_breaks=True,
                     modes=[Mode(resource=f"M{m}", duration=200 + m) for m in range(12)]) for k in range(40)]
    p = Problem(resources=res, orders=[Order(id=f"O{k}", operations=[o]) for k, o in enumerate(ops)])
    cp = compile_problem(p)
    proto = ModelBuilder(cp, cp.horizon).build().model.Proto()
    breaks = max(len(m.windows) for m in cp.machines)
    # one set of break choices per calendar (2 with breaks), not per mode (12)
    assert len(proto.variables) < 40 * (12 * 3 + 2 * breaks * 2 + 4) + 100


def _brute_pool_start(use: list[tuple[int, int, int]], cap: int, amount: int, t: int, d: int) -> int:
    """Minute by minute: the first start >= t where every minute of [start, start+d) has room."""
    c = t
    while any(sum(a for s, e, a in use if s <= x < e) + amount > cap for x in range(c, c + d)):
        c += 1
    return c


def test_pool_profile_matches_a_minute_by_minute_scan() -> None:
    import random

    from paichan.solver.heuristic import PoolProfile

    rng = random.Random(5)
    for _ in range(300):
        cap = rng.randint(1, 3)
        prof, use = PoolProfile(), []
        for _ in range(rng.randint(0, 8)):
            s = rng.randint(0, 40)
            e, a = s + rng.randint(0, 15), rng.randint(1, cap)
            prof.add(s, e, a)
            use.append((s, e, a))
        amount, t, d = rng.randint(1, cap), rng.randint(0, 50), rng.randint(0, 12)
        assert prof.earliest(cap, amount, t, d) == _brute_pool_start(use, cap, amount, t, d), (use, cap, amount, t, d)


def test_material_ledger_matches_a_stock_timeline() -> None:
    import random

    from paichan.solver.heuristic import MaterialLedger

    def short(stock: float, receipts: list[tuple[int, float]], uses: list[tuple[int, float]]) -> bool:
        events = sorted([(t, 0, q) for t, q in receipts] + [(t, 1, -q) for t, q in uses])
        level = stock
        for _, _, dq in events:  # receipts before consumption at equal times, as the checker has it
            level += dq
            if level < -1e-9:
                return True
        return False

    rng = random.Random(11)
    for _ in range(300):
        stock = rng.choice([0.0, 1.0, 2.5])
        receipts = sorted((rng.randint(0, 30), rng.choice([1.0, 2.0, 0.5])) for _ in range(rng.randint(0, 4)))
        ledger, uses = MaterialLedger(stock, receipts), []
        for _ in range(rng.randint(0, 6)):
            q, t = rng.choice([0.5, 1.0, 1.5]), rng.randint(0, 35)
            c = ledger.earliest(q, t)
            if short(stock, receipts, [*uses, (c, q)]):
                assert not any(not short(stock, receipts, [*uses, (x, q)]) for x in range(t, 40)), (receipts, uses)
                continue
            # nothing earlier would have fitted
            assert all(short(stock, receipts, [*uses, (x, q)]) for x in range(t, c)), (stock, receipts, uses, q, t)
            ledger.add(c, q)
            uses.append((c, q))


def test_solver_calendar_expansion_matches_the_domain() -> None:
    import random

    from paichan.domain import Downtime
    from paichan.solver.compiled import _expand

    rng = random.Random(1)
    for _ in range(1000):
        period = rng.randint(1, 50)
        shifts = []
        for _ in range(rng.randint(0, 3)):
            a = rng.randint(0, period - 1)
            shifts.append(TimeWindow(start=a, end=rng.randint(a + 1, period)))
        starts = [rng.randint(0, 200) for _ in range(rng.randint(0, 3))]
        downs = [Downtime(start=a, end=a + rng.randint(1, 60)) for a in starts]
        cal = Calendar(period=period if shifts else None, shifts=shifts, downtimes=downs)
        h = rng.randint(1, 300)
        assert _expand(cal, h) == cal.unavailable(h), (cal, h)


def test_model_too_large_without_an_incumbent_is_not_built() -> None:
    # no dispatching start, so no objective cuts: 2,000 rich operations would need some 600,000 break literals
    from paichan.generators import factory_instance

    p = factory_instance(2000, 0, materials=False)
    result = solve(p, SolveParams(time_limit=5, workers=1, use_heuristic=False, decompose=False))
    assert result.status == SolveStatus.UNKNOWN and "too large" in str(result.stats["method"])
    assert int(result.stats["model_estimate"]) > 200_000

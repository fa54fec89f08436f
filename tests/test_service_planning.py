"""The repair problem of a live replan (paichan.service.planning.repair_problem)."""

from __future__ import annotations

from datetime import UTC, datetime

from paichan.checker import check
from paichan.domain import Problem, Schedule
from paichan.service.planning import Clock, PinRecord, RepairSpec, repair_problem
from paichan.solver import SolveParams, solve


def _two_lines() -> tuple[Problem, Schedule]:
    problem = Problem.model_validate({
        "name": "two-lines", "time_unit": "minute",
        "resources": [{"id": "P1/L1/M1"}, {"id": "P1/L2/M1"}],
        "orders": [{"id": "O1", "due": 100, "operations": [
            {"id": "O1/10", "modes": [{"resource": "P1/L1/M1", "duration": 10}]},
            {"id": "O1/20", "modes": [{"resource": "P1/L2/M1", "duration": 10}]}]}],
        "objective": {"weights": {"weighted_tardiness": 100, "makespan": 1}},
    })
    schedule = Schedule.model_validate({"problem": "two-lines", "operations": [
        {"operation": "O1/10", "order": "O1", "resource": "P1/L1/M1", "mode": 0, "start": 0, "end": 10},
        {"operation": "O1/20", "order": "O1", "resource": "P1/L2/M1", "mode": 0, "start": 10, "end": 20}]})
    return problem, schedule


def test_no_pin_after_work_that_must_move() -> None:
    """An out-of-scope successor of an operation that is planned again is not pinned at its released start."""
    problem, schedule = _two_lines()
    spec = RepairSpec(scope="line", target="P1/L1", freeze_minutes=0)
    rp, notes = repair_problem(problem, schedule, [], 5, spec, Clock(problem))
    ops = {op.id: op for _, op in rp.operations()}
    assert ops["O1/10"].pin is None and ops["O1/20"].pin is None
    assert any("planned again" in n for n in notes)
    assert solve(rp, SolveParams(time_limit=5)).schedule is not None


def test_pin_kept_when_predecessor_keeps_its_place() -> None:
    problem, schedule = _two_lines()
    spec = RepairSpec(scope="line", target="P1/L2", freeze_minutes=0)
    rp, _ = repair_problem(problem, schedule, [], 0, spec, Clock(problem))
    ops = {op.id: op for _, op in rp.operations()}
    assert ops["O1/10"].pin is not None and ops["O1/10"].pin.start == 0


def _pin(pid: str, **kw: object) -> PinRecord:
    return PinRecord.model_validate({"id": pid, "created_by": "ann", "created_at": datetime(2026, 12, 2, tzinfo=UTC),
                                     **kw})


def test_before_pin_does_not_hold_work_after_an_operation_that_moves() -> None:
    """A "before" pin is a freeze window of the planner's choosing: work released before its time stays, except
    an operation whose predecessor has not started by now (it moves, so the successor cannot keep its place).
    CI once failed on exactly this: the before pin held a successor and the replan was infeasible."""
    problem, schedule = _two_lines()
    pin = _pin("p1", kind="before", until=15)
    rp, notes = repair_problem(problem, schedule, [pin], 5, RepairSpec(), Clock(problem))
    ops = {op.id: op for _, op in rp.operations()}
    assert ops["O1/10"].pin is None and ops["O1/20"].pin is None
    assert any("planned again" in n for n in notes)
    res = solve(rp, SolveParams(time_limit=5))
    assert res.schedule is not None and check(rp, res.schedule).ok


def test_before_pin_holds_what_can_stay() -> None:
    problem, schedule = _two_lines()
    pin = _pin("p1", kind="before", until=15)
    rp, notes = repair_problem(problem, schedule, [pin], 0, RepairSpec(), Clock(problem))
    ops = {op.id: op for _, op in rp.operations()}
    assert [ops[o].pin.start if ops[o].pin else None for o in ("O1/10", "O1/20")] == [0, 10]
    assert ops["O1/20"].pin is not None and ops["O1/20"].pin.reason == "pin p1"
    assert not notes


def test_before_pin_successor_of_a_manual_move_is_planned_again() -> None:
    """A manual move of an operation frees its successor from the planner's window (else they contradict)."""
    problem, schedule = _two_lines()
    pins = [_pin("p1", kind="before", until=15), _pin("p2", kind="operation", operation="O1/10", start=3)]
    rp, notes = repair_problem(problem, schedule, pins, 0, RepairSpec(), Clock(problem))
    ops = {op.id: op for _, op in rp.operations()}
    assert ops["O1/10"].pin is not None and ops["O1/10"].pin.start == 3 and ops["O1/20"].pin is None
    assert any("planned again" in n and "O1/20" in n for n in notes)
    res = solve(rp, SolveParams(time_limit=5))
    assert res.schedule is not None and check(rp, res.schedule).ok

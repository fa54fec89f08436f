"""Every class of bad problem is rejected with an error naming record and field."""

from __future__ import annotations

import pytest
from conftest import machines, op, order
from pydantic import ValidationError

from paichan.domain import (
    Material,
    MaterialUse,
    Mode,
    Predecessor,
    Problem,
    ProblemError,
    Resource,
    ResourceKind,
    SecondaryUse,
    find_problems,
    validate,
)
from paichan.domain.problem import Calendar, TimeWindow
from paichan.solver import SolveParams, solve


def findings(p: Problem) -> list[str]:
    return [str(f) for f in find_problems(p)]


def test_valid_problem_has_no_findings() -> None:
    p = Problem(resources=machines("M"), orders=[order("O", op("a", ("M", 5)), op("b", ("M", 5)))])
    assert findings(p) == [] and validate(p) is p


def test_unknown_resource_names_the_mode() -> None:
    p = Problem(resources=machines("M"), orders=[order("O", op("a", ("M", 5)), op("b", ("X", 5)))])
    out = findings(p)
    assert any("orders[0](id=O).operations[1](id=b).modes[0].resource" in f and "'X'" in f for f in out)
    assert any("no feasible mode" in f for f in out)


def test_negative_duration_is_refused_at_the_field() -> None:
    with pytest.raises(ValidationError) as e:
        Mode(resource="M", duration=-3)
    assert e.value.errors()[0]["loc"] == ("duration",)


def test_precedence_cycle_is_reported_with_the_cycle() -> None:
    a = op("a", ("M", 5), predecessors=[Predecessor(operation="c")])
    b = op("b", ("M", 5), predecessors=[Predecessor(operation="a")])
    c = op("c", ("M", 5), predecessors=[Predecessor(operation="b")])
    out = findings(Problem(resources=machines("M"), orders=[order("O", a, b, c)]))
    cycle = [f for f in out if f.startswith("precedence")]
    assert cycle and all(x in cycle[0] for x in ("a", "b", "c", "->"))


def test_release_after_deadline() -> None:
    p = Problem(resources=machines("M"), orders=[order("O", op("a", ("M", 5)), release=100, deadline=50)])
    assert any("orders[0](id=O).deadline" in f and "before release 100" in f for f in findings(p))


def test_operation_that_fits_no_shift_has_no_feasible_mode() -> None:
    short = Calendar(period=100, shifts=[TimeWindow(start=0, end=30)])
    p = Problem(resources=[Resource(id="M", calendar=short)], orders=[order("O", op("a", ("M", 50)))])
    out = findings(p)
    assert any("modes[0]" in f and "fits in no working window" in f for f in out)
    assert any("no feasible mode" in f for f in out)


def test_pool_demand_above_capacity_is_infeasible_mode() -> None:
    pool = Resource(id="OPS", kind=ResourceKind.POOL, capacity=1)
    mode = Mode(resource="M", duration=5, secondary=[SecondaryUse(resource="OPS", amount=2)])
    p = Problem(resources=[*machines("M"), pool], orders=[order("O", op("a").model_copy(update={"modes": [mode]}))])
    assert any("secondary[0].amount" in f for f in findings(p))


def test_material_demand_no_supply_can_cover() -> None:
    p = Problem(
        resources=machines("M"),
        materials=[Material(id="steel", stock=1)],
        orders=[order("O", op("a", ("M", 5), materials=[MaterialUse(material="steel", quantity=3)]))],
    )
    assert any("materials[0](id=steel)" in f and "consume 3" in f for f in findings(p))


def test_duplicate_ids_and_unknown_material() -> None:
    p = Problem(
        resources=machines("M", "M"),
        orders=[order("O", op("a", ("M", 5), materials=[MaterialUse(material="nope", quantity=1)])),
                order("O", op("a", ("M", 5)))],
    )
    out = findings(p)
    assert any("duplicate id 'M'" in f for f in out) and any("duplicate id 'O'" in f for f in out)
    assert any("unknown material 'nope'" in f for f in out)


def test_solve_refuses_bad_problem_with_all_findings() -> None:
    p = Problem(resources=machines("M"), orders=[order("O", op("a", ("X", 5)), release=10, deadline=5)])
    with pytest.raises(ProblemError) as e:
        solve(p, SolveParams(time_limit=1))
    assert len(e.value.findings) >= 2 and "'X'" in str(e.value)

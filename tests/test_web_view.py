"""The page's data (paichan.service.view) against the checker and the problem it was drawn from."""

from __future__ import annotations

from conftest import solved

from paichan.examples import demo_plant
from paichan.service.view import WINDOW_KINDS, order_rows, plan_patch, plan_view


def test_view_matches_the_plan_the_checker_and_the_calendars() -> None:
    problem = demo_plant(orders=14)
    for k, o in enumerate(problem.orders):  # some cannot be on time: the late/at-risk rules must be exercised
        o.due = 600 + 120 * k
    result, kpis = solved(problem, time_limit=3)
    assert kpis.late_orders > 0
    schedule = result.schedule
    assert schedule is not None
    v = plan_view(problem, schedule, kpis=kpis)
    ops = v["ops"]
    drawn = {ops["id"][i]: (v["machines"][ops["machine"][i]]["id"], ops["start"][i], ops["end"][i])
             for i in range(len(ops["id"]))}
    assert drawn == {s.operation: (s.resource, s.start, s.end) for s in schedule.operations}
    assert sum(o["status"] == "late" for o in v["orders"]) == kpis.late_orders
    assert sum(o["tardiness"] * o["priority"] for o in v["orders"]) == kpis.weighted_tardiness
    assert {o["id"] for o in v["orders"] if o["status"] in ("late", "at_risk")} == set(v["late"])
    assert all("reason" in o and o["reason"]["chain"] >= 1 for o in v["orders"] if o["status"] == "late")
    kinds = {(v["machines"][w[0]]["id"], WINDOW_KINDS[w[3]], w[1], w[2]) for w in v["windows"]}
    assert ("WELD1", "breakdown", 500, 620) in kinds
    assert ("CUT2", "maintenance", 1440 + 360, 1440 + 600) in kinds
    assert ("CUT1", "off_shift", 0, 360) in kinds and ("CUT1", "off_shift", 1320, 1440 + 360) in kinds
    assert not any(m == "WELD1" and k == "off_shift" for m, k, _, _ in kinds)  # works around the clock


def test_patch_carries_exactly_what_moved() -> None:
    problem = demo_plant(orders=8)
    result, _ = solved(problem, time_limit=2)
    before = result.schedule
    assert before is not None
    after = before.model_copy(deep=True)
    last = max(after.operations, key=lambda s: s.end)
    last.start, last.end = last.start + 600, last.end + 600
    patch = plan_patch(problem, before, after)
    assert patch["ops"] == [[last.operation, last.resource, last.start, last.end, last.setup_before]]
    rows = {o["id"]: o for o in order_rows(problem, after)}
    assert patch["orders"] == [rows[last.order]]

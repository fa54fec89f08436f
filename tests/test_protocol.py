"""The negotiation protocol as state machines: message in, messages out.

These drive PlantAgent and LineAgent directly (no bus, no Ray) to pin down
rules that are hard to provoke on a live network: the intake window, late
offers and bids after a deadline, stale rejects, and bids nobody answers.
The same agents run over real Redis and Ray in test_agents.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from paichan.agents.explain import JournalError, load_journal
from paichan.agents.line import LineAgent
from paichan.agents.messages import (
    AtpConfirm,
    AtpPromise,
    AtpRelease,
    AtpRequest,
    AtpReserve,
    Award,
    Bid,
    CallForProposals,
    Confirm,
    NewOrder,
    Offer,
    OrderSpec,
    Refuse,
    Reject,
    Revoke,
    Step,
    SupplierDelay,
    Withdraw,
)
from paichan.agents.plant import PlantAgent
from paichan.agents.scenario import LineSpec, SupplierSpec
from paichan.agents.state import HOLD, LineOrder, PlacedOp, Reservation
from paichan.agents.supplier import SupplierAgent
from paichan.bus.envelope import Envelope, make
from paichan.checker import check
from paichan.domain import Calendar

STEPS = [Step(name="cut", machine_type="cut", minutes_per_unit=3)]


def order(oid: str, due: int, plant: str = "P1") -> OrderSpec:
    return OrderSpec(id=oid, product="box", quantity=5, release=0, due=due, priority=1, plant=plant, steps=STEPS)


def env(payload: BaseModel, sender: str, to: str, conv: str) -> Envelope:
    return make(payload, sender=sender, recipient=to, conversation=conv)


def _type(kind: type[BaseModel]) -> str:
    return str(kind.message_type)  # type: ignore[attr-defined]


def bid(oid: str, line: str, plant: str, completion: int, due: int) -> Bid:
    t = max(0, completion - due)
    return Bid(order_id=oid, line=line, plant=plant, completion=completion, tardiness=t, cost=t + 0.001 * completion,
               disturbance=0, material_ready=0)


def test_plant_collects_orders_then_calls_earliest_due_first() -> None:
    plant = PlantAgent("P1", {"P1/L1": {"cut"}}, [], wave=1, intake_s=0.5)
    out = []
    for k, due in enumerate([900, 300, 600]):  # the ERP sends them in no useful order
        out += plant.handle(env(NewOrder(order=order(f"O{k}", due)), "erp", "P1", f"order:O{k}"),
                            NewOrder(order=order(f"O{k}", due)), now=100.0 + 0.1 * k)
    assert out == [] and plant.tick(100.5) == []  # the window restarts with every arrival
    calls = plant.tick(100.8)
    assert [c.payload["order"]["id"] for c in calls] == ["O1"]  # due 300 first, one at a time (wave=1)
    assert not plant.done()


def _escalated_plant() -> tuple[PlantAgent, str]:
    """P1 has called O1 on its line, got a late bid and escalated to P2 and P3."""
    plant = PlantAgent("P1", {"P1/L1": {"cut"}}, ["P2", "P3"], wave=5, respond_timeout_s=5, intake_s=0)
    spec = order("O1", due=100)
    plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O1"), NewOrder(order=spec), now=0.0)
    plant.tick(0.0)
    conv = plant.calls["O1"].conv
    late = bid("O1", "P1/L1", "P1", completion=400, due=100)
    out = plant.handle(env(late, "P1/L1", "P1", conv), late, now=1.0)
    assert {e.recipient for e in out} == {"P2", "P3"} and plant.orders["O1"].status == "escalating"
    return plant, conv


def test_offer_after_the_escalation_deadline_is_rejected_not_awarded() -> None:
    plant, conv = _escalated_plant()
    p2 = Offer(order_id="O1", plant="P2", bid=bid("O1", "P2/L1", "P2", completion=300, due=100))
    assert plant.handle(env(p2, "P2", "P1", conv), p2, now=2.0) == []  # P3 has not answered yet
    out = plant.tick(100.0)  # P3 never answers in time: award the best so far (P2's offer)
    awards = [e for e in out if e.type == _type(Award)]
    assert [(e.recipient, e.payload["line"]) for e in awards] == [("P2", "P2/L1")]
    assert [e.recipient for e in out if e.type == _type(Reject)] == ["P1/L1"]
    # P3's offer arrives now, better than the winner: it is too late and must only be released
    p3 = Offer(order_id="O1", plant="P3", bid=bid("O1", "P3/L1", "P3", completion=150, due=100))
    out = plant.handle(env(p3, "P3", "P1", conv), p3, now=101.0)
    assert [(e.type, e.recipient) for e in out] == [(_type(Reject), "P3")]


def test_bid_after_the_call_deadline_is_released() -> None:
    plant = PlantAgent("P1", {"P1/L1": {"cut"}, "P1/L2": {"cut"}}, [], wave=5, respond_timeout_s=5, intake_s=0)
    spec = order("O1", due=1000)
    plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O1"), NewOrder(order=spec), now=0.0)
    plant.tick(0.0)
    conv = plant.calls["O1"].conv
    b1 = bid("O1", "P1/L1", "P1", completion=500, due=1000)
    plant.handle(env(b1, "P1/L1", "P1", conv), b1, now=1.0)
    out = plant.tick(10.0)  # L2 silent past the deadline: award L1
    assert [(e.type, e.recipient) for e in out] == [(_type(Award), "P1/L1")]
    b2 = bid("O1", "P1/L2", "P1", completion=400, due=1000)
    out = plant.handle(env(b2, "P1/L2", "P1", conv), b2, now=11.0)
    assert [(e.type, e.recipient) for e in out] == [(_type(Reject), "P1/L2")]
    assert plant.calls["O1"].awarded.line == "P1/L1"


def assert_plan_feasible(line: LineAgent) -> None:
    """The line's plan (committed work, open bids held where they are) passes the independent checker."""
    problem, plan = line.local_problem()
    assert problem.orders, "no plan to check"
    report = check(problem, plan)
    assert report.ok, [str(v) for v in report.violations]


def _line() -> LineAgent:
    spec = LineSpec(id="L1", machines=[{"id": "C", "type": "cut"}])
    return LineAgent("P1", spec, Calendar(), suppliers={}, horizon=10_000, bid_ttl_s=30)


def test_line_keeps_its_bid_when_a_reject_is_for_another_round() -> None:
    line = _line()
    cfp = CallForProposals(order=order("O1", due=1000), round=1, origin_plant="P1")
    out = line.handle(env(cfp, "P1", "P1/L1", "O1:1"), cfp, now=0.0)
    assert [e.type for e in out] == [_type(Bid)] and line.orders["O1"].status == "tentative"
    line.handle(env(Reject(order_id="O1", round=0), "P1", "P1/L1", "O1:0"), Reject(order_id="O1", round=0), now=1.0)
    assert "O1" in line.orders  # a reject of round 0 does not cancel the bid of round 1
    line.handle(env(Reject(order_id="O1", round=1), "P1", "P1/L1", "O1:1"), Reject(order_id="O1", round=1), now=2.0)
    assert "O1" not in line.orders


def test_line_drops_a_bid_nobody_answers() -> None:
    line = _line()
    cfp = CallForProposals(order=order("O1", due=1000), round=0, origin_plant="P1")
    line.handle(env(cfp, "P1", "P1/L1", "O1:0"), cfp, now=0.0)
    cfp2 = CallForProposals(order=order("O2", due=1000), round=0, origin_plant="P1")
    first = line.handle(env(cfp2, "P1", "P1/L1", "O2:0"), cfp2, now=0.0)[0].payload["completion"]
    line.tick(29.0)
    assert set(line.orders) == {"O1", "O2"} and not line.dirty
    line.tick(31.0)
    assert line.orders == {} and line.dirty  # the host must persist the drop
    again = line.handle(env(cfp2, "P1", "P1/L1", "O2:1"), cfp2, now=32.0)[0].payload["completion"]
    assert again < first  # O1's capacity is free again


def test_a_broken_journal_line_is_named(tmp_path: Path) -> None:
    good = env(NewOrder(order=order("O1", 10)), "erp", "P1", "order:O1").model_dump_json()
    (tmp_path / "negotiations.jsonl").write_text(good + "\n{not json\n")
    with pytest.raises(JournalError, match=r"negotiations.jsonl:2: not JSON"):
        load_journal(tmp_path)


def test_late_gap_insertion_becomes_a_cpsat_bid_that_displaces_committed_work() -> None:
    line = _line()
    big = OrderSpec(id="A", product="box", quantity=100, release=0, due=10_000, priority=1, plant="P1", steps=STEPS)
    cfp = CallForProposals(order=big, round=0, origin_plant="P1")
    line.handle(env(cfp, "P1", "P1/L1", "A:0"), cfp, now=0.0)
    line.handle(env(Award(order_id="A", line="P1/L1"), "P1", "P1/L1", "A:0"), Award(order_id="A", line="P1/L1"), 0.0)
    assert line.orders["A"].ops[0].start == 0 and line.orders["A"].status == "committed"
    urgent = OrderSpec(id="B", product="box", quantity=10, release=0, due=100, priority=5, plant="P1", steps=STEPS)
    cfp = CallForProposals(order=urgent, round=0, origin_plant="P1")
    b = line.handle(env(cfp, "P1", "P1/L1", "B:0"), cfp, now=1.0)[0].payload
    # behind A the gap insertion ends at 330 (230 late, cost 1150); A can wait 30 minutes and stay on time
    assert b["tardiness"] == 0 and b["completion"] <= 100 and b["disturbance"] > 0 and b["cost"] < 1
    out = line.handle(env(Award(order_id="B", line="P1/L1"), "P1", "P1/L1", "B:0"), Award(order_id="B", line="P1/L1"),
                      2.0)
    assert [e.type for e in out] == ["confirm", "update"] and out[1].payload["order_id"] == "A"
    assert_plan_feasible(line)  # no overlap on the cutter, durations and calendar right
    assert line.orders["A"].ops[0].end <= 10_000


def test_supplier_holds_a_promise_so_two_open_calls_do_not_share_material() -> None:
    spec = SupplierSpec.model_validate({"id": "S1", "materials": [{"id": "sheet", "stock": 10,
                                                                   "receipts": [{"time": 500, "quantity": 10}]}]})
    sup = SupplierAgent(spec, horizon=10_000)

    def ask(oid: str, line: str) -> int:
        req = AtpRequest(order_id=oid, material="sheet", quantity=8, needed_by=0)
        return int(sup.handle(env(req, line, "S1", f"{oid}:0"), req, now=0.0)[0].payload["date"])

    assert ask("O1", "P1/L1") == 0 and ask("O1", "P1/L2") == 0  # both of O1's bidders: one hold, same date
    assert ask("O2", "P1/L1") == 500  # O1's 8 of the 10 in stock are held: O2 waits for the receipt
    reserve = AtpReserve(order_id="O1", material="sheet", quantity=8, needed_by=120)
    confirm = sup.handle(env(reserve, "P1/L2", "S1", "O1:0"), reserve, now=1.0)[0].payload
    assert confirm["date"] == 120 and not confirm["late"]
    # the hold became the reservation
    assert sup.materials["sheet"].reserved["O1"] == Reservation(quantity=8, date=120, line="P1/L2")
    delay = SupplierDelay(material="sheet", delay=300)
    notices = sup.handle(env(delay, "erp", "S1", "d"), delay, now=2.0)
    assert [n.recipient for n in notices] == []  # O2 is only held: nobody to tell until its award
    assert sup.materials["sheet"].reserved["O2"].date == 800


def _sheet_supplier(stock: float = 10, receipt: float = 10) -> SupplierAgent:
    spec = SupplierSpec.model_validate({"id": "S1", "materials": [{"id": "sheet", "stock": stock,
                                                                   "receipts": [{"time": 500, "quantity": receipt}]}]})
    return SupplierAgent(spec, horizon=10_000)


def test_material_beyond_the_horizon_is_refused_and_the_failed_order_releases_its_hold() -> None:
    sup = _sheet_supplier()
    req = AtpRequest(order_id="O1", material="sheet", quantity=15, needed_by=0)
    first = sup.handle(env(req, "P1/L1", "S1", "O1:0"), req, now=0.0)[0].payload
    assert first["available"] and first["date"] == 500  # 10 in stock + 10 at t=500
    req2 = AtpRequest(order_id="O2", material="sheet", quantity=15, needed_by=0)
    promise = sup.handle(env(req2, "P1/L1", "S1", "O2:0"), req2, now=0.0)[0]
    assert not promise.payload["available"]  # O1 holds 15 of the 20 there will ever be (within the horizon)
    assert "O2" not in sup.materials["sheet"].reserved  # nothing is held for it

    steps = [Step(name="cut", machine_type="cut", minutes_per_unit=3, material="sheet", material_per_unit=3)]
    line = LineAgent("P1", LineSpec(id="L1", machines=[{"id": "C", "type": "cut"}]), Calendar(),
                     suppliers={"sheet": "S1"}, horizon=10_000)
    spec = OrderSpec(id="O2", product="box", quantity=5, release=0, due=100, priority=1, plant="P1", steps=steps)
    cfp = CallForProposals(order=spec, round=0, origin_plant="P1")
    asked = line.handle(env(cfp, "P1", "P1/L1", "O2:0"), cfp, now=0.0)
    assert [e.type for e in asked] == [_type(AtpRequest)]
    answer = line.handle(promise, AtpPromise.model_validate(promise.payload), now=0.1)
    assert [e.type for e in answer] == [_type(Refuse)] and "cannot deliver 15 within its horizon" in \
        answer[0].payload["reason"]
    assert "O2" not in line.orders  # no bid, no reservation on the line

    plant = PlantAgent("P1", {"P1/L1": {"cut"}}, [], wave=5, intake_s=0, suppliers={"sheet": "S1"})
    plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O2"), NewOrder(order=spec), now=0.0)
    plant.tick(0.0)
    refuse = Refuse.model_validate(answer[0].payload)
    out = plant.handle(env(refuse, "P1/L1", "P1", plant.calls["O2"].conv), refuse, now=1.0)
    assert plant.orders["O2"].status == "failed"
    assert [(e.type, e.recipient, e.payload["material"]) for e in out] == [(_type(AtpRelease), "S1", "sheet")]
    # the supplier drops a hold on release (here O1's, as if O1 had failed too), never a reservation
    rel = AtpRelease(order_id="O1", material="sheet")
    sup.handle(env(rel, "P1", "S1", "O1:release"), rel, now=2.0)
    assert "O1" not in sup.materials["sheet"].reserved
    assert sup.handle(env(req2, "P1/L1", "S1", "O2:1"), req2, now=3.0)[0].payload["available"]


def test_a_supply_delay_beyond_the_horizon_makes_the_line_withdraw_and_the_plant_call_again() -> None:
    sup = _sheet_supplier(stock=0, receipt=20)
    reserve = AtpReserve(order_id="O1", material="sheet", quantity=15, needed_by=600)
    assert sup.handle(env(reserve, "P1/L1", "S1", "O1:0"), reserve, now=0.0)[0].payload["date"] == 600
    delay = SupplierDelay(material="sheet", delay=20_000)  # the receipt moves past the horizon
    notice = sup.handle(env(delay, "erp", "S1", "d"), delay, now=1.0)
    assert [(n.recipient, n.payload["available"]) for n in notice] == [("P1/L1", False)]
    assert "O1" not in sup.materials["sheet"].reserved

    line = _line()
    spec = order("O1", due=1000)
    cfp = CallForProposals(order=spec, round=0, origin_plant="P1")
    line.handle(env(cfp, "P1", "P1/L1", "O1:0"), cfp, now=0.0)
    confirm = line.handle(env(Award(order_id="O1", line="P1/L1"), "P1", "P1/L1", "O1:0"),
                          Award(order_id="O1", line="P1/L1"), now=0.5)[0]
    out = line.handle(notice[0], AtpConfirm.model_validate(notice[0].payload), now=1.0)
    assert [(e.type, e.recipient) for e in out] == [(_type(Withdraw), "P1")] and "O1" not in line.orders

    plant = PlantAgent("P1", {"P1/L1": {"cut"}}, [], wave=5, intake_s=0)
    plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O1"), NewOrder(order=spec), now=0.0)
    plant.tick(0.0)
    b = bid("O1", "P1/L1", "P1", completion=15, due=1000)
    plant.handle(env(b, "P1/L1", "P1", "O1:0"), b, now=0.2)
    plant.handle(confirm, Confirm.model_validate(confirm.payload), now=0.6)
    assert plant.orders["O1"].status == "confirmed"
    again = plant.handle(out[0], Withdraw.model_validate(out[0].payload), now=1.1)
    assert [(e.type, e.conversation) for e in again] == [(_type(CallForProposals), "O1:1")]
    assert plant.orders["O1"].placed is None


def test_a_confirmation_the_plant_gave_up_on_is_revoked_and_the_rerun_reuses_the_booking() -> None:
    plant = PlantAgent("P1", {"P1/L1": {"cut"}}, [], wave=5, respond_timeout_s=5, intake_s=0)
    line = _line()
    spec = order("O1", due=1000)
    (cfp,) = plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O1"), NewOrder(order=spec), now=0.0)
    (b,) = line.handle(cfp, CallForProposals.model_validate(cfp.payload), now=0.0)
    (award,) = plant.handle(b, Bid.model_validate(b.payload), now=0.1)
    # the line is slow to answer (restarting): the plant stops waiting and calls again, round 1
    (cfp1,) = plant.tick(30.0)
    assert cfp1.conversation == "O1:1"
    confirm0 = line.handle(award, Award.model_validate(award.payload), now=31.0)[0]  # the old award, now booked
    (b1,) = line.handle(cfp1, CallForProposals.model_validate(cfp1.payload), now=31.1)
    assert b1.conversation == "O1:1" and line.orders["O1"].status == "tentative"  # offered again, same plan
    assert b1.payload["completion"] == confirm0.payload["completion"]
    (revoke,) = plant.handle(confirm0, Confirm.model_validate(confirm0.payload), now=31.2)
    assert revoke.type == _type(Revoke) and revoke.payload["conversation"] == "O1:0"
    assert plant.orders["O1"].status == "calling"  # the stale confirmation changes nothing at the plant
    line.handle(revoke, Revoke.model_validate(revoke.payload), now=31.3)
    assert "O1" in line.orders  # the round-0 revoke does not touch the round-1 bid
    (award1,) = plant.handle(b1, Bid.model_validate(b1.payload), now=31.4)
    (confirm1,) = [e for e in line.handle(award1, Award.model_validate(award1.payload), now=31.5)
                   if e.type == _type(Confirm)]
    plant.handle(confirm1, Confirm.model_validate(confirm1.payload), now=31.6)
    assert plant.orders["O1"].status == "confirmed" and plant.orders["O1"].placed.line == "P1/L1"
    assert Confirm.model_validate(confirm1.payload).operations == [op.planned() for op in line.orders["O1"].ops]
    assert confirm1.payload["operations"] == confirm0.payload["operations"]  # the booking made in round 0


def test_an_award_whose_bid_went_stale_is_placed_again_never_over_committed_work() -> None:
    line = _line()
    for oid in ("A", "B"):
        cfp = CallForProposals(order=order(oid, due=1000), round=0, origin_plant="P1")
        line.handle(env(cfp, "P1", "P1/L1", f"{oid}:0"), cfp, now=0.0)
    line.handle(env(Award(order_id="A", line="P1/L1"), "P1", "P1/L1", "A:0"), Award(order_id="A", line="P1/L1"), 0.1)
    assert line.orders["A"].ops[0].start == 0 and line.orders["B"].ops[0].start == 15
    # whatever made it happen, committed A now sits where B's open bid is
    line.orders["A"].ops = [PlacedOp(operation=0, machine="P1/L1/C", start=10, end=25)]
    out = line.handle(env(Award(order_id="B", line="P1/L1"), "P1", "P1/L1", "B:0"),
                      Award(order_id="B", line="P1/L1"), 0.2)
    (confirm,) = [e for e in out if e.type == _type(Confirm)]
    assert confirm.payload["operations"][0]["start"] >= 25 and line.clashes() == set() and line.stale_awards == 1
    assert_plan_feasible(line)
    assert Confirm.model_validate(confirm.payload).operations == [op.planned() for op in line.orders["B"].ops]


def test_a_bid_avoids_both_places_of_work_an_open_bid_would_move() -> None:
    """A displacing bid (B) sits inside the old place of the order it moves (A): a new bid must avoid A's old
    place (B may be rejected) and its new one (B may be awarded). The old place is longer than B and starts
    before it, the case a gap search over unmerged intervals missed."""
    line = _line()
    c = "P1/L1/C"

    def rec(oid: str, start: int, end: int, status: str, **extra: object) -> dict[str, object]:
        spec = order(oid, due=1000).model_copy(update={"quantity": (end - start) // 3})
        return {"spec": spec.model_dump(mode="json"), "ops": [{"operation": 0, "machine": c, "start": start,
                "end": end}], "status": status, "plant": "P1", "conv": f"{oid}:0", "cfp": oid, "need": {},
                "dates": {}, "material_ready": 0, "expires": 1e9, **extra}

    line.st.orders = {k: LineOrder.model_validate(v) for k, v in {
        "A": rec("A", 0, 99, "committed"),
        "B": rec("B", 9, 21, "tentative", displace={"A": {
            "from": [{"operation": 0, "machine": c, "start": 0, "end": 99}],
            "to": [{"operation": 0, "machine": c, "start": 120, "end": 219}]}})}.items()}
    new = order("C", due=1000).model_copy(update={"release": 50})
    (op,) = line.insert(new, ready=0)
    assert (op.start, op.end) == (99, 114)  # not at its release (50), inside A's committed place



def test_a_call_nobody_answers_waits_longer_instead_of_escalating_on_nothing() -> None:
    plant = PlantAgent("P1", {"P1/L1": {"cut"}}, ["P2"], wave=5, respond_timeout_s=5, intake_s=0)
    spec = order("O1", due=1000)
    (cfp,) = plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O1"), NewOrder(order=spec), now=0.0)
    assert plant.tick(6.0) == [] and plant.calls["O1"].deadline == 16.0  # the line is slow, not unable
    b = bid("O1", "P1/L1", "P1", completion=500, due=1000)
    out = plant.handle(env(b, "P1/L1", "P1", cfp.conversation), b, now=8.0)  # after the first deadline: taken
    assert [(e.type, e.recipient) for e in out] == [(_type(Award), "P1/L1")]
    # a line that never answers: longer waits for the plant's patience (60 s), then the call is decided
    # (escalated) all the same
    plant = PlantAgent("P1", {"P1/L1": {"cut"}}, ["P2"], wave=5, respond_timeout_s=5, intake_s=0)
    spec2 = order("O2", due=1000)
    plant.handle(env(NewOrder(order=spec2), "erp", "P1", "order:O2"), NewOrder(order=spec2), now=20.0)
    t, outs = 20.0, []
    while not outs and t < 500:
        t += 1.0
        outs = plant.tick(t)
    assert plant.calls["O2"].waits == 3 and {e.type for e in outs} == {"escalate"} and 20 + 60 < t < 20 + 60 + 80


def test_a_silent_line_is_not_counted_as_refusing_while_the_others_only_refused() -> None:
    """A line on a dead node says nothing until Ray restarts it elsewhere; the one that refused does not decide."""
    plant = PlantAgent("P1", {"P1/L1": {"cut"}, "P1/L2": {"cut"}}, [], wave=5, respond_timeout_s=1, intake_s=0)
    spec = order("O1", due=1000)
    cfps = plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O1"), NewOrder(order=spec), now=0.0)
    no = Refuse(order_id="O1", line="P1/L1", reason="busy")
    assert plant.handle(env(no, "P1/L1", "P1", cfps[0].conversation), no, now=0.5) == []
    t = 0.0
    while t < 50:  # long after the 1 s timeout: still waiting for L2, nothing failed
        t += 1.0
        assert plant.tick(t) == []
    assert plant.orders["O1"].status == "calling"
    b = bid("O1", "P1/L2", "P1", completion=500, due=1000)  # L2 is back (restarted) and answers
    out = plant.handle(env(b, "P1/L2", "P1", cfps[0].conversation), b, now=t)
    assert [(e.type, e.recipient) for e in out] == [(_type(Award), "P1/L2")]


def test_every_bidder_of_a_held_order_gets_the_held_date_even_after_later_holds() -> None:
    sup = _sheet_supplier(stock=10, receipt=10)

    def ask(oid: str, line: str, q: float = 8) -> dict[str, object]:
        req = AtpRequest(order_id=oid, material="sheet", quantity=q, needed_by=0)
        return sup.handle(env(req, line, "S1", f"{oid}:0"), req, now=0.0)[0].payload

    assert ask("O1", "P1/L1")["date"] == 0
    assert ask("O2", "P1/L1")["date"] == 500  # O1 holds 8 of the 10 in stock
    assert ask("O1", "P2/L3")["date"] == 0 and not ask("O1", "P2/L3")["late"]  # an escalated bidder of O1
    assert sup.materials["sheet"].reserved["O1"] == Reservation(quantity=8, date=0, line=HOLD)


def test_the_plant_asks_the_supplier_once_per_call_and_its_lines_bid_on_the_promised_date() -> None:
    """One ATP request per material and call, not one per line; the call carries the date; no date, no call."""
    sup = _sheet_supplier(stock=10, receipt=10)
    steps = [Step(name="cut", machine_type="cut", minutes_per_unit=3, material="sheet", material_per_unit=2)]
    lines = {f"P1/L{k}": {"cut"} for k in (1, 2, 3)}
    plant = PlantAgent("P1", lines, [], wave=5, intake_s=0, suppliers={"sheet": "S1"})
    spec = OrderSpec(id="O1", product="box", quantity=6, release=0, due=2000, priority=1, plant="P1", steps=steps)
    (ask,) = plant.handle(env(NewOrder(order=spec), "erp", "P1", "order:O1"), NewOrder(order=spec), now=0.0)
    assert (ask.type, ask.recipient, ask.payload["quantity"]) == (_type(AtpRequest), "S1", 12)
    (promise,) = sup.handle(ask, AtpRequest.model_validate(ask.payload), now=0.1)
    assert promise.recipient == "P1" and promise.payload["date"] == 500  # 10 in stock, 12 needed: the receipt
    cfps = plant.handle(promise, AtpPromise.model_validate(promise.payload), now=0.2)
    assert sorted(e.recipient for e in cfps) == sorted(lines)
    assert all(e.payload["material_dates"] == {"sheet": 500} for e in cfps)
    line = LineAgent("P1", LineSpec(id="L1", machines=[{"id": "C", "type": "cut"}]), Calendar(),
                     suppliers={"sheet": "S1"}, horizon=10_000)
    cfp = next(e for e in cfps if e.recipient == "P1/L1")
    (answer,) = line.handle(cfp, CallForProposals.model_validate(cfp.payload), now=0.3)
    assert answer.type == _type(Bid) and answer.payload["material_ready"] == 500  # no request of its own
    # material the supplier can never deliver: no line is called, the order fails and its hold is released
    spec2 = spec.model_copy(update={"id": "O2", "quantity": 20})
    (ask2,) = plant.handle(env(NewOrder(order=spec2), "erp", "P1", "order:O2"), NewOrder(order=spec2), now=1.0)
    (no,) = sup.handle(ask2, AtpRequest.model_validate(ask2.payload), now=1.1)
    assert not no.payload["available"]
    out = plant.handle(no, AtpPromise.model_validate(no.payload), now=1.2)
    assert plant.orders["O2"].status == "failed" and not any(e.type == _type(CallForProposals) for e in out)
    failed = [e for e in plant.st.events if e.event == "failed" and e.order == "O2"]
    assert "cannot deliver 40 within its horizon" in failed[0].refused["P1/L1"]  # type: ignore[attr-defined]

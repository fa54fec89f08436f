"""The agents' typed state: JSON snapshots round-trip at every step, corrupted ones are named, dispatch is explicit.

A small two-plant network (P1's line is too slow for O1, so O1 escalates to P2's faster line; O2 stays at
P1; both need material from S1) is driven message by message through the real codec, without bus or Ray.
At every delivery the recipient is also rebuilt from its JSON snapshot, as a restarted host does; the
copy must answer the message exactly as the original does and end in the same state.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from paichan.agents.base import Agent, UnhandledMessage
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
    Escalate,
    Improve,
    MachineDown,
    NewOrder,
    Offer,
    OrderSpec,
    Refuse,
    Reject,
    Replan,
    Revoke,
    ScheduleUpdate,
    Step,
    SupplierDelay,
    Withdraw,
)
from paichan.agents.plant import PlantAgent
from paichan.agents.scenario import LineSpec, SupplierSpec
from paichan.agents.state import PlantState
from paichan.agents.supplier import SupplierAgent
from paichan.bus.envelope import Envelope, decode, make
from paichan.domain import Calendar

STEPS = [Step(name="cut", machine_type="cut", minutes_per_unit=3, material="sheet", material_per_unit=1)]


def factories() -> dict[str, Callable[[], Agent]]:
    """The network's agents, fresh (as a host builds them before restoring their state)."""
    sup = SupplierSpec.model_validate({"id": "S1", "materials": [{"id": "sheet", "stock": 100}]})

    def line(plant: str, speed: float) -> LineAgent:
        spec = LineSpec.model_validate({"id": "L1", "machines": [{"id": "C", "type": "cut", "speed": speed}]})
        return LineAgent(plant, spec, Calendar(), {"sheet": "S1"}, horizon=10_000, bid_time_limit=0)

    return {
        "P1": lambda: PlantAgent("P1", {"P1/L1": {"cut"}}, ["P2"], wave=5, intake_s=0, suppliers={"sheet": "S1"}),
        "P2": lambda: PlantAgent("P2", {"P2/L1": {"cut"}}, ["P1"], wave=5, intake_s=0, suppliers={"sheet": "S1"}),
        "P1/L1": lambda: line("P1", 1.0),
        "P2/L1": lambda: line("P2", 2.0),
        "S1": lambda: SupplierAgent(sup, horizon=10_000),
    }


def restored(aid: str, agent: Agent) -> Agent:
    """A fresh agent rebuilt from the JSON its host commits for ``agent`` (as a restarted host does)."""
    stored = json.loads(agent.state_json())
    assert stored == json.loads(json.dumps(agent.state()))  # the fast path writes what state() says
    twin = factories()[aid]()
    twin.restore(stored)
    return twin


def sent(out: list[Envelope]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    return [(e.type, e.sender, e.recipient, e.conversation, e.payload) for e in out]


def negotiate(twins: bool = False) -> tuple[dict[str, Agent], set[str]]:
    """Run the network until no message is left; returns the agents and what state the run went through.

    With ``twins``, every delivery also goes to a copy of the recipient restored from its JSON snapshot, which
    must equal the original before and after, and send the same messages."""
    agents = {aid: make_agent() for aid, make_agent in factories().items()}
    orders = [OrderSpec(id="O1", product="box", quantity=5, due=10, plant="P1", steps=STEPS),
              OrderSpec(id="O2", product="box", quantity=5, due=1000, plant="P1", steps=STEPS)]
    queue = deque(make(NewOrder(order=o), "erp", "P1", f"order:{o.id}") for o in orders)
    seen: set[str] = set()
    now = 0.0
    while queue:
        env = queue.popleft()
        _, payload = decode({"envelope": env.model_dump_json()})
        agent = agents[env.recipient]
        twin = restored(env.recipient, agent) if twins else None
        out = agent.handle(env, payload, now)
        if twin is not None:
            assert sent(twin.handle(env, payload, now)) == sent(out), env.type
            assert twin.state() == agent.state(), env.type
        if isinstance(agent, PlantAgent) and any(c.escalation and c.escalation.offers for c in agent.st.calls.values()):
            seen.add("offers")
        queue.extend(out)
        now += 0.01
    return agents, seen


def test_every_agent_round_trips_its_snapshot_at_every_step_and_answers_alike() -> None:
    agents, seen = negotiate(twins=True)
    for aid, agent in agents.items():
        twin = restored(aid, agent)
        assert twin.st == agent.st, aid  # type: ignore[attr-defined]
    p1, p2 = agents["P1"], agents["P2"]
    assert isinstance(p1, PlantAgent) and isinstance(p2, PlantAgent)
    assert "offers" in seen  # the run went through escalation state (offers holding bids), not only orders
    placed = {oid: (rec.status, rec.placed.line if rec.placed else None) for oid, rec in p1.st.orders.items()}
    assert placed == {"O1": ("confirmed", "P2/L1"), "O2": ("confirmed", "P1/L1")}
    assert [e.event for e in p2.st.events] == ["placed_for"]
    sup = agents["S1"]
    assert isinstance(sup, SupplierAgent)
    assert {o: r.line for o, r in sup.st.materials["sheet"].reserved.items()} == {"O1": "P2/L1", "O2": "P1/L1"}


def _final_states() -> dict[str, dict[str, Any]]:
    return {aid: json.loads(json.dumps(a.state())) for aid, a in negotiate()[0].items()}


@pytest.mark.parametrize(("aid", "path", "value", "named"), [
    ("P1", ["orders", "O1", "status"], "shipped", "orders.O1.status"),
    ("P1", ["events", 0, "event"], "teleport", "events.0"),
    ("P2/L1", ["orders", "O1", "ops", 0, "start"], "soon", "orders.O1.ops.0.start"),
    ("S1", ["materials", "sheet", "reserved", "O2", "date"], None, "materials.sheet.reserved.O2.date"),
])
def test_a_corrupted_snapshot_names_the_field(aid: str, path: list[str | int], value: object, named: str) -> None:
    state = _final_states()[aid]
    node: Any = state["agent"]
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    agent = factories()[aid]()
    with pytest.raises(ValidationError) as e:
        agent.restore(state)
    assert named in str(e.value)


def test_a_snapshot_of_the_previous_untyped_format_is_refused() -> None:
    """State written before the typed models (a call's owner under "for", moves as lists) does not load."""
    spec = OrderSpec(id="O1", product="box", quantity=5, due=10, plant="P1", steps=STEPS).model_dump(mode="json")
    old: dict[str, Any] = {"orders": {"O1": {"spec": spec, "status": "calling", "round": 0, "placed": None}},
           "calls": {"O1": {"spec": spec, "round": 0, "for": None, "conv": "O1:0", "expected": ["P1/L1"],
                            "bids": {}, "refused": {}, "deadline": 5.0, "escalation": None, "best": None,
                            "move_from": None}},
           "queue": [], "events": [], "moves": [], "intake_until": None}
    with pytest.raises(ValidationError, match=r"calls\.O1\.for_plant"):
        PlantState.model_validate(old)


def test_each_message_type_has_one_handler_and_an_unknown_one_is_an_explicit_error() -> None:
    assert set(PlantAgent.handlers) == {Improve, NewOrder, AtpPromise, Bid, Refuse, Offer, Escalate, Award, Reject,
                                        Confirm, ScheduleUpdate, Withdraw}
    assert set(LineAgent.handlers) == {CallForProposals, AtpPromise, Award, Reject, AtpConfirm, MachineDown, Revoke,
                                       Replan}
    assert set(SupplierAgent.handlers) == {AtpRequest, AtpReserve, AtpRelease, SupplierDelay}
    sup = factories()["S1"]()
    award = Award(order_id="O1", line="P1/L1")
    with pytest.raises(UnhandledMessage, match="supplier S1 cannot handle 'award'"):
        sup.handle(make(award, "P1", "S1", "x"), award, now=0.0)

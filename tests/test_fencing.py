"""Fencing: one live incarnation per agent; a stale copy's commits are refused and it stops itself.

The situation it guards against: Ray declares a hung node dead and restarts that node's
hosts elsewhere while the old processes still run, so two copies read the same consumer
group and would write the same state key. Real Redis throughout.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from paichan.agents.host import HostCore
from paichan.agents.messages import AtpRequest
from paichan.agents.scenario import small_network
from paichan.bus import Bus, Consumer, Fenced, make


def wait(cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_a_stale_incarnation_cannot_commit_or_send(bus: Bus) -> None:
    old = Consumer(bus, "agent")
    bus.send(make(AtpRequest(order_id="o1", material="sheet", quantity=1, needed_by=10), "x", "agent", "c"))
    got = old.fetch(block_ms=None) or old.fetch(block_ms=None)  # its (empty) backlog first, then the new entry
    assert len(got) == 1
    new = Consumer(bus, "agent")  # e.g. Ray restarted the agent's host on another node
    assert new.epoch is not None and old.epoch is not None and new.epoch == old.epoch + 1
    reply = make(AtpRequest(order_id="o1", material="sheet", quantity=1, needed_by=10), "agent", "y", "c")
    with pytest.raises(Fenced, match="stale"):
        old.commit(got, {"written_by": "old"}, [reply])
    with pytest.raises(Fenced):
        old.publish({"written_by": "old"}, [])
    with pytest.raises(Fenced):
        old.dead_letter(got[0], "old copy")
    assert bus.load_state("agent") is None, "the stale copy wrote nothing"
    assert not bus.r.exists(bus.inbox("y")), "and sent nothing in the agent's name"
    assert bus.r.xpending(bus.inbox("agent"), "agent")["pending"] == 1, "the message waits for the live copy"
    backlog = new.fetch(block_ms=None)  # same consumer name: the new incarnation reads it as its own backlog
    new.commit(backlog, {"written_by": "new"}, [reply])
    assert bus.load_state("agent") == {"written_by": "new"}
    assert bus.r.xpending(bus.inbox("agent"), "agent")["pending"] == 0


def test_a_fenced_host_stops_and_the_live_one_answers_once(bus: Bus) -> None:
    sc = small_network(orders=1).model_dump_json()
    exits: list[bool] = []
    old = HostCore(sc, ["S1"], bus.url, bus.ns, on_fenced=lambda: exits.append(True))  # the actor ends its process
    new: HostCore | None = None
    try:
        def promises() -> list[str]:
            return [e.conversation for e in bus.journal_entries() if e.type == "atp.promise"]

        def ask(conv: str) -> None:
            bus.send(make(AtpRequest(order_id=conv, material="sheet", quantity=1, needed_by=600), "P1/L1", "S1",
                          conv))

        ask("a")
        wait(lambda: promises() == ["a"])
        Consumer(bus, "S1")  # a newer incarnation (Ray restarted the host elsewhere) takes the epoch
        ask("b")
        wait(lambda: old.fenced == ["S1"] and not old.thread.is_alive())
        assert any("fenced" in e for e in old.status()["errors"]) and exits == [True]
        time.sleep(0.2)
        assert promises() == ["a"], "the stale copy's answer was refused"
        new = HostCore(sc, ["S1"], bus.url, bus.ns)
        wait(lambda: promises() == ["a", "b"])
        time.sleep(0.3)
        assert promises() == ["a", "b"], "answered once, by the live copy"
        assert new.status()["fenced"] == [] and new.thread.is_alive()
    finally:
        old.shutdown()
        if new is not None:
            new.shutdown()

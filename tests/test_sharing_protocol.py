"""The sharing protocol step by step: host and agents driven in one loop (no Ray), real Redis and ACL users."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from paichan.bus.server import EmbeddedRedis
from paichan.checker import check
from paichan.sharing.acl import Keys
from paichan.sharing.enterprise import AgentParams, EnterpriseAgent
from paichan.sharing.host import SessionHost
from paichan.sharing.model import SharingScenario

SCENARIO = {
    "name": "pair",
    "enterprises": [
        {"id": "buyer", "tardiness_cost": 5, "lines": [{"id": "m1", "capabilities": ["milling"]}],
         "orders": [{"id": f"P{i}", "customer": f"Customer {i}", "due": 60, "steps": [
             {"capability": "milling", "duration": 60}]} for i in range(3)]},
        {"id": "seller", "lines": [{"id": "s1", "capabilities": ["milling"]}],
         "offers": [{"capabilities": ["milling"], "window": [0, 600], "price_per_minute": 1.0}]},
    ],
}


@pytest.fixture
def pair(session_redis: EmbeddedRedis) -> Iterator[tuple[SessionHost, EnterpriseAgent, EnterpriseAgent]]:
    sc = SharingScenario.model_validate(SCENARIO)
    admin = redis.Redis.from_url(session_redis.url)
    sid = uuid.uuid4().hex[:8]
    host = SessionHost(admin, session_redis.url, sid, ["buyer", "seller"], silence_timeout=2.0)
    urls = host.open()
    params = AgentParams(solve_time=0.5, baseline_time=1.0, answer_wait=2.0)
    buyer = EnterpriseAgent(sc.enterprise("buyer"), urls["buyer"], sid, params)
    seller = EnterpriseAgent(sc.enterprise("seller"), urls["seller"], sid, params)
    buyer.join()
    seller.join()
    yield host, buyer, seller
    host.revoke_users()
    keys = list(admin.scan_iter(f"{Keys(sid).root}:*"))
    if keys:
        admin.delete(*keys)


def drive(host: SessionHost, *agents: EnterpriseAgent, until: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        host.step(block_ms=5)
        for a in agents:
            if not a.closed:
                a.step(block_ms=5)
        if callable(until) and until():
            return
    raise AssertionError("the protocol did not get there in time")


def binding(host: SessionHost) -> list[str]:
    return [a.award_id for a in host.awards.values() if a.state == "binding"]


def one_contract(host: SessionHost, buyer: EnterpriseAgent, seller: EnterpriseAgent) -> str:
    """Let the buyer make one request and trade until it is a contract; its award id."""
    buyer.spec.buying.max_requests = 1
    drive(host, buyer, seller, until=lambda: bool(binding(host)) and not buyer.ask)
    return binding(host)[0]


def test_contract_enters_both_plans_and_both_pass_the_checker(
        pair: tuple[SessionHost, EnterpriseAgent, EnterpriseAgent]) -> None:
    host, buyer, seller = pair
    drive(host, buyer, seller, until=lambda: bool(binding(host)) and not buyer.ask)
    aid = binding(host)[0]
    assert aid in buyer.bought and aid in seller.sold
    b = buyer.bought[aid]
    ext = [s for s in buyer.plan.operations if s.resource == f"ext-{aid}"]
    assert len(ext) == 1 and ext[0].operation == b.op and ext[0].end == b.completion
    x = [s for s in seller.plan.operations if s.order == f"x-{aid}"]
    assert len(x) == 1 and x[0].end <= b.completion and x[0].start >= b.ready
    for agent in (buyer, seller):
        assert check(agent.problem(), agent.plan).ok
    res = buyer.result()
    assert res.with_sharing.weighted_tardiness < res.without_sharing.weighted_tardiness
    assert res.with_sharing.net_cost < res.without_sharing.net_cost
    assert seller.result().with_sharing.revenue == res.with_sharing.cost > 0


def test_buyer_cancelling_a_contract_reaches_the_seller_with_compensation(
        pair: tuple[SessionHost, EnterpriseAgent, EnterpriseAgent]) -> None:
    host, buyer, seller = pair
    aid = one_contract(host, buyer, seller)
    price = buyer.bought[aid].price
    buyer.cancel_contract(aid, "order withdrawn by its customer")
    drive(host, buyer, seller, until=lambda: aid not in seller.sold)
    assert not [s for s in seller.plan.operations if s.order == f"x-{aid}"]
    assert seller.compensation == price and buyer.compensation == -price
    assert not [s for s in buyer.plan.operations if s.resource == f"ext-{aid}"]
    assert check(buyer.problem(), buyer.plan).ok and check(seller.problem(), seller.plan).ok
    entries = host.ledger()
    cancel = [e for e in entries if e["kind"] == "cancellation"]
    assert cancel and cancel[0]["body"]["compensation"] == {"payer": "buyer", "payee": "seller", "amount": price}
    assert not cancel[0]["public"], "the price stays between the two parties"
    assert [e["body"] for e in entries if e["kind"] == "contract_cancelled"] == [{"award_id": aid}]
    assert not seller.rejected and not buyer.rejected


def test_a_member_dropped_for_silence_is_told_and_undoes_its_contracts(
        pair: tuple[SessionHost, EnterpriseAgent, EnterpriseAgent]) -> None:
    host, buyer, seller = pair
    aid = one_contract(host, buyer, seller)
    # the seller pauses (a long GC, a partition): only the host and the buyer go on
    drive(host, buyer, until=lambda: "seller" in host.left, seconds=10)
    drive(host, buyer, until=lambda: aid not in buyer.bought, seconds=10)
    assert buyer.compensation == buyer.result().with_sharing.compensation > 0
    seller.step(block_ms=5)  # it wakes up
    seller.step(block_ms=5)
    assert seller.closed and aid not in seller.sold
    assert not [s for s in seller.plan.operations if s.order == f"x-{aid}"]
    assert check(buyer.problem(), buyer.plan).ok


def test_embedded_session_redis_has_a_password(tmp_path: object) -> None:
    from pathlib import Path

    server = EmbeddedRedis(Path(str(tmp_path)) / "r", password="s3cret-for-test").start()
    try:
        assert redis.Redis.from_url(server.url).ping()
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            redis.Redis(host="127.0.0.1", port=server.port).set("k", "v")
    finally:
        server.stop()
    assert not server.alive()


def test_a_seller_leaving_cancels_its_contracts_and_owes_the_buyer(
        pair: tuple[SessionHost, EnterpriseAgent, EnterpriseAgent]) -> None:
    host, buyer, seller = pair
    aid = one_contract(host, buyer, seller)
    price = seller.sold[aid].price
    seller.leave("plant shut down")
    assert seller.closed and not seller.sold and seller.compensation == -price
    assert not [s for s in seller.plan.operations if s.order.startswith("x-")]
    drive(host, buyer, until=lambda: aid not in buyer.bought, seconds=10)
    assert buyer.compensation == price
    assert not [s for s in buyer.plan.operations if s.resource.startswith("ext-")]
    assert check(buyer.problem(), buyer.plan).ok and check(seller.problem(), seller.plan).ok
    entries = host.ledger()
    # it said so (not dropped later for silence)
    leaves = [(e["actor"], e["body"]["reason"]) for e in entries if e["kind"] == "leave"]
    assert leaves == [("seller", "plant shut down")]
    ends = [e["body"] for e in entries if e["kind"] == "cancellation"]
    assert [b["award_id"] for b in ends] == [aid] and ends[0]["compensation"]["payer"] == "seller"
    # every award of the session has ended one way or the other: nothing dangles
    proposed = {e["body"]["award_id"] for e in entries if e["kind"] == "award"}
    assert proposed <= {b["award_id"] for b in ends} | set(binding(host))
    assert aid not in binding(host)

"""Capacity-sharing sessions through the service's /sessions API: real Redis, real host and agent threads.

The service's Redis default user hosts the session; each enterprise's agent runs in the service
with its own credentials only. An overloaded enterprise buys a slot from a seller; its view shows
the contract and none of the seller's other dealings; after close the credentials are refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from conftest import wait_for
from fastapi.testclient import TestClient

from paichan.bus.server import EmbeddedRedis
from paichan.domain import Mode, Operation, Order, Problem, Resource, Schedule, ScheduledOperation
from paichan.service.app import create_app
from paichan.service.config import ClientConfig, ServiceConfig
from paichan.service.engine import PlanService

PLANNER = {"authorization": "Bearer planner-key-0123456789"}
VIEWER = {"authorization": "Bearer viewer-key-0123456789"}
FAST = {"solve_time": 0.3, "baseline_time": 1.0, "answer_wait": 1.5}  # AgentParams for a 2-core test machine

ACME = {"id": "acme", "tardiness_cost": 2, "lines": [{"id": "m1", "capabilities": ["milling"]}],
        "orders": [{"id": f"A{i}", "customer": f"Customer {i}", "due": d,
                    "steps": [{"capability": "milling", "duration": 60}]}
                   for i, d in enumerate((100, 100, 120, 150), start=1)],
        "buying": {"max_requests": 2, "max_price_per_minute": 5}}
BORG = {"id": "borg", "lines": [{"id": "b1", "capabilities": ["milling", "turning"]}],
        "orders": [{"id": "B1", "customer": "Secret Customer B", "due": 300,
                    "steps": [{"capability": "milling", "duration": 30}]}],
        "offers": [{"capabilities": ["milling"], "window": [0, 1000], "price_per_minute": 1.0}]}
CYBER = {"id": "cyber", "lines": [{"id": "c1", "capabilities": ["milling"]}],
         "offers": [{"capabilities": ["milling"], "window": [0, 1000], "price_per_minute": 1.5}]}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A session Redis as `paichan session open` starts it: its default user (the host) has a password."""
    with EmbeddedRedis(tmp_path_factory.mktemp("sessions-redis"), password=uuid.uuid4().hex) as server:
        yield server


@pytest.fixture
def http(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[TestClient]:
    with _client(redis_server, tmp_path) as client:
        yield client


@contextmanager
def _client(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[TestClient]:
    """The service on ``redis_server``, with a one-operation plan of its own (sessions do not touch it)."""
    problem = Problem(name="svc", resources=[Resource(id="m")],
                      orders=[Order(id="o", due=100, operations=[Operation(id="o/0", modes=[Mode(resource="m",
                                                                                                 duration=10)])])])
    plan = Schedule(operations=[ScheduledOperation(operation="o/0", order="o", resource="m", mode=0, start=0, end=10)])
    cfg = ServiceConfig(name=f"s{time.monotonic_ns() % 10**9}",
                        clients=[ClientConfig(name="ann", key=PLANNER["authorization"][7:], role="planner"),
                                 ClientConfig(name="vic", key=VIEWER["authorization"][7:], role="viewer")])
    service = PlanService(problem, plan, cfg, redis_server.url, outbox=tmp_path / "outbox")
    app = create_app(service)
    with TestClient(app) as client:  # the context runs the lifespan: threads stop at its end
        yield client
    service.close()
    for sid, h in app.state.sessions.hosts.items():  # the shutdown closed what was left open
        assert h.host.closed and not h.thread.is_alive(), sid
    assert not any(m.thread.is_alive() for m in app.state.sessions.members.values())


def test_a_session_over_the_api_trades_a_slot_and_revokes_its_users_at_close(http: TestClient) -> None:
    t0 = time.monotonic()
    session_id = f"api{uuid.uuid4().hex[:8]}"
    assert http.post("/sessions", json={"enterprises": ["acme", "borg"]}, headers=VIEWER).status_code == 403
    opened = http.post("/sessions", json={"enterprises": ["acme", "borg", "cyber"], "session": session_id},
                       headers=PLANNER)
    assert opened.status_code == 201, opened.text
    sid, creds = opened.json()["session"], opened.json()["credentials"]
    assert sid == session_id and set(creds) == {"acme", "borg", "cyber"}
    again = http.post("/sessions", json={"enterprises": ["acme", "borg"], "session": sid}, headers=PLANNER)
    assert again.status_code == 409 and "exists" in again.json()["detail"]

    for spec in (BORG, CYBER, ACME):
        r = http.post(f"/sessions/{sid}/join", headers=PLANNER,
                      json={"credentials": creds[spec["id"]], "enterprise": spec, "params": FAST})
        assert r.status_code == 202, r.text
    wrong = http.post(f"/sessions/{sid}/join", headers=PLANNER,
                      json={"credentials": creds["acme"], "enterprise": BORG})
    assert wrong.status_code == 422 and "acme's" in wrong.json()["detail"]

    status = wait_for("a contract", lambda: (s := http.get(f"/sessions/{sid}", headers=VIEWER).json())
                      .get("ledger", {}).get("contract") and s, 25)
    assert status["state"] == "open" and status["joined"] == ["acme", "borg", "cyber"]

    view = http.get(f"/sessions/{sid}/members/acme", headers=VIEWER).json()
    assert view["agent_running"] and not view["finished"]
    kinds = {e["kind"] for e in view["ledger"]}
    assert "contract" in kinds and "bid" in kinds
    contract = next(e for e in view["ledger"] if e["kind"] == "contract")
    assert contract["body"]["buyer"] == "acme" and contract["body"]["seller"] == "borg"
    assert not [e for e in view["ledger"] if "acme" not in e["parties"] and not e["public"]], view["ledger"]
    assert sorted(o["from"] for o in view["offers"]) == ["borg", "cyber"]
    assert "Secret Customer B" not in str(view) and "B1" not in str(view)
    # a seller sees its own bids, never its competitor's
    full = http.get(f"/sessions/{sid}/ledger", headers=VIEWER).json()
    bidders = {e["actor"] for e in full if e["kind"] == "bid"}
    assert bidders == {"borg", "cyber"}, bidders
    for seller, other in (("borg", "cyber"), ("cyber", "borg")):
        seen = http.get(f"/sessions/{sid}/members/{seller}", headers=VIEWER).json()["ledger"]
        assert not [e for e in seen if e["kind"] == "bid" and e["actor"] == other]


    closed = http.post(f"/sessions/{sid}/close", json={}, headers=PLANNER)
    assert closed.status_code == 200 and closed.json()["detail"] == "closed by its host", closed.text
    assert http.get(f"/sessions/{sid}", headers=VIEWER).json()["state"] == "closed"
    outcome = {}
    for eid, url in creds.items():
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        member = f"/sessions/{sid}/members/{eid}"
        m = wait_for(f"{eid}'s agent to finish",
                     lambda u=member: (v := http.get(u, headers=VIEWER).json())["finished"] and v, 15)
        assert "error" not in m and not m["agent_running"], m
        outcome[eid] = m
    contracts = http.get(f"/sessions/{sid}", headers=VIEWER).json()["ledger"]["contract"]
    full = http.get(f"/sessions/{sid}/ledger", headers=VIEWER).json()  # final now: compare views with it
    for eid in creds:
        mine = http.get(f"/sessions/{sid}/ledger", params={"enterprise": eid}, headers=VIEWER).json()
        assert [e["n"] for e in mine] == [e["n"] for e in full if eid in e["parties"] or e["public"]]
    assert http.get(f"/sessions/{sid}/ledger", params={"enterprise": "zorg"}, headers=VIEWER).status_code == 404
    sold = outcome["borg"]["with_sharing"]["contracts_sold"] + outcome["cyber"]["with_sharing"]["contracts_sold"]
    assert outcome["acme"]["with_sharing"]["contracts_bought"] == sold == contracts >= 1
    acme = outcome["acme"]
    assert acme["with_sharing"]["weighted_tardiness"] < acme["without_sharing"]["weighted_tardiness"]
    print(f"session over the API: {time.monotonic() - t0:.1f} s")


def test_a_request_without_a_running_agent_is_409_and_an_unknown_session_404(http: TestClient) -> None:
    opened = http.post("/sessions", json={"enterprises": ["acme", "borg"]}, headers=PLANNER)
    assert opened.status_code == 201, opened.text
    sid, creds = opened.json()["session"], opened.json()["credentials"]
    r = http.post(f"/sessions/{sid}/requests", json={"credentials": creds["acme"], "operation": "A1/0"},
                  headers=PLANNER)
    assert r.status_code == 409 and "no agent of acme is running" in r.json()["detail"], r.text
    offer = {"capabilities": ["milling"], "window": [0, 100], "price_per_minute": 1}
    r = http.post(f"/sessions/{sid}/offers", headers=PLANNER, json={"credentials": creds["borg"], "offer": offer})
    assert r.status_code == 409
    bad = http.post(f"/sessions/{sid}/requests", json={"credentials": creds["acme"], "operation": "A1"},
                    headers=PLANNER)
    assert bad.status_code == 422 and "operation" in bad.json()["detail"]
    other = http.post("/sessions/elsewhere/requests", json={"credentials": creds["acme"], "operation": "A1/0"},
                      headers=PLANNER)
    assert other.status_code == 422 and "credentials" in other.json()["detail"]
    assert http.post("/sessions", json={"enterprises": ["acme"]}, headers=PLANNER).status_code == 422

    assert http.get("/sessions/nosuch", headers=VIEWER).status_code == 404
    assert http.get("/sessions/nosuch/ledger", headers=VIEWER).status_code == 404
    assert http.post("/sessions/nosuch/close", json={}, headers=PLANNER).status_code == 404
    assert http.get("/sessions/nosuch/members/acme", headers=VIEWER).status_code == 404
    assert http.get(f"/sessions/{sid}", headers={"authorization": "Bearer nope"}).status_code == 401
    # left open on purpose: the app's shutdown stops its host, which closes it and revokes the users


def test_a_redis_whose_default_user_needs_no_password_hosts_no_session(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as open_server, _client(open_server, tmp_path) as http:
        r = http.post("/sessions", json={"enterprises": ["acme", "borg"]}, headers=PLANNER)
        assert r.status_code == 409 and "default user needs no password" in r.json()["detail"], r.text

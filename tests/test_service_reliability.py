"""Reliability of ``paichan serve``: nothing a 202 accepted is lost or applied twice.

Real Redis (its own servers where one is killed), real HTTP, the service as a real subprocess
where the process is killed; every plan passes the independent checker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from conftest import wait_for
from fastapi.testclient import TestClient

from paichan.adapters.webhooks import WebhookSecret, signed_headers
from paichan.agents.scenario import global_problem, small_network
from paichan.bus.server import EmbeddedRedis, free_port
from paichan.checker import check
from paichan.domain import Problem, Schedule
from paichan.service.app import create_app
from paichan.service.config import ClientConfig, ReplanConfig, ServiceConfig
from paichan.service.engine import EventStatus, PlanService
from paichan.solver import SolveParams, solve

ROOT = Path(__file__).resolve().parent.parent
SECRET = WebhookSecret.generate()
KEYS = {"planner": "planner-key-0123456789", "mes": "mes-key-0123456789ab", "viewer": "viewer-key-0123456789"}
ORIGIN = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


def bearer(role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[role]}"}


def config(name: str, **kw: Any) -> ServiceConfig:
    return ServiceConfig(name=name, clients=[ClientConfig(name=r, key=k, role=r) for r, k in KEYS.items()],  # type: ignore[arg-type]
                         webhooks={"secrets": [SECRET]}, replanning=ReplanConfig(auto=False),  # type: ignore[arg-type]
                         publish={"outbox": None}, **kw)  # type: ignore[arg-type]


def at(minutes: int) -> str:
    return (ORIGIN + timedelta(minutes=minutes)).isoformat()


def machine_event(eid: str, machine: str, state: str, minute: int, source: str = "mes1") -> dict[str, Any]:
    return {"event_id": eid, "source": source, "time": at(minute), "machine": machine, "state": state}


def post_events(client: TestClient | httpx.Client, events: Any, secret: str = SECRET,
                headers: dict[str, str] | None = None) -> httpx.Response:
    body = json.dumps(events).encode()
    h = {**bearer("mes"), "content-type": "application/json", **signed_headers(secret, body), **(headers or {})}
    return client.post("/events", content=body, headers=h)


def event_keys_in_downtimes(problem: Problem) -> list[str]:
    """Every event id recorded in a downtime's reason, once per downtime that records it."""
    out: list[str] = []
    for r in problem.resources:
        for d in r.calendar.downtimes:
            if "[events:" in (d.reason or ""):
                out += d.reason.rsplit("[events:", 1)[1].rstrip("]").split(";")[0].split(",")
    return out


def floor_state(problem: Problem) -> dict[str, Any]:
    """What events change: downtimes per machine, status and actuals per operation."""
    return {
        "downtimes": {r.id: sorted((d.start, d.end, d.kind.value) for d in r.calendar.downtimes)
                      for r in problem.resources},
        "operations": {op.id: (op.status.value, op.actual.model_dump() if op.actual else None)
                       for _, op in problem.operations()},
    }


@pytest.fixture(scope="module")
def plant() -> tuple[Problem, Schedule]:
    sc = small_network(orders=8).model_copy(update={"origin": ORIGIN})
    problem = global_problem(sc)
    res = solve(problem, SolveParams(time_limit=3, workers=2))
    assert res.schedule is not None
    assert check(problem, res.schedule).ok
    return problem, res.schedule


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), appendfsync="always").start()
    yield server
    server.kill()


# --------------------------------------------------------------------------- 1. Redis killed


def test_event_accepted_before_redis_is_killed_is_applied_after_it_restarts(
        plant: tuple[Problem, Schedule], own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture) -> None:
    problem, schedule = plant
    svc = PlanService(problem, schedule, config("redis-kill"), own_redis.url)
    svc.start()
    raw = redis.Redis.from_url(own_redis.url, decode_responses=True)
    events, group = svc.k("events"), "applier"
    caplog.set_level(logging.WARNING, logger="paichan.service")
    try:
        c = TestClient(create_app(svc), raise_server_exceptions=False)
        m1, m2 = "P1/L1/C", "P2/L1/F"
        with svc.lock:  # the applier may read e1 but cannot store its result: accepted, not applied
            r1 = post_events(c, machine_event("e1", m1, "down", 40))
            assert r1.status_code == 202, r1.text
            wait_for("the applier to read e1", lambda: raw.xpending(events, group)["pending"] == 1)
            r2 = post_events(c, [machine_event("e2", m2, "held", 45)])  # stays unread in the stream
            assert r2.status_code == 202, r2.text
            assert [a["key"] for a in r1.json()["accepted"] + r2.json()["accepted"]] == ["mes1:e1", "mes1:e2"]
            assert c.get("/events/mes1/e1", headers=bearer("mes")).json()["status"] == "accepted"
            own_redis.kill()  # kill -9: only the AOF (fsync always) survives
        time.sleep(1.0)  # the applier's store fails and it backs off
        assert c.get("/health").status_code == 503
        down = post_events(c, machine_event("e3", m1, "available", 50))
        assert down.status_code == 503, (down.status_code, down.text)  # never a 202 that was not stored
        own_redis.start()  # same port, same dir: the AOF is replayed
        for eid in ("e1", "e2"):
            wait_for(f"{eid} applied", lambda eid=eid: c.get(f"/events/mes1/{eid}", headers=bearer("mes"))
                     .json()["status"] == "applied")
        assert c.get("/events/mes1/e3", headers=bearer("mes")).status_code == 404
        assert any("Redis unavailable" in r.getMessage() for r in caplog.records), "the applier never retried"
        # applied exactly once, and its effect is in the problem (memory and Redis alike)
        assert raw.xlen(events) == 2
        assert raw.xpending(events, group)["pending"] == 0
        stored = Problem.model_validate_json(raw.get(svc.k("problem")))
        for p in (svc.problem, stored):
            assert sorted(event_keys_in_downtimes(p)) == ["mes1:e1", "mes1:e2"]
            by_id = {r.id: r for r in p.resources}
            assert any(d.kind.value == "breakdown" and d.start == 40 for d in by_id[m1].calendar.downtimes)
            assert any(d.kind.value == "breakdown" and d.start == 45 for d in by_id[m2].calendar.downtimes)
        assert check(problem, svc.released.schedule).ok
    finally:
        svc.close()


# --------------------------------------------------------------------------- 2. service process killed


def serve(problem_json: Path, workdir: Path, redis_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PAICHAN_API_KEY": KEYS["planner"],
           "PAICHAN_WEBHOOK_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "paichan.service.cli", "serve", str(problem_json),
                             "--port", str(port), "--workdir", str(workdir), "--origin", ORIGIN.isoformat(),
                             "--time-limit", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, f"paichan serve exited: {log.read_text()[-2000:]}"
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("paichan serve to be healthy", healthy, timeout=60)
    return proc, url


def test_events_accepted_before_the_service_is_killed_are_applied_once_by_the_next(
        plant: tuple[Problem, Schedule], own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    problem, _ = plant
    (tmp_path / "problem.json").write_text(problem.model_dump_json())
    log = tmp_path / "serve.log"
    procs: list[subprocess.Popen[bytes]] = []
    raw = redis.Redis.from_url(own_redis.url, decode_responses=True)
    prefix = "paichan:svc:paichan:"
    try:
        first, url = serve(tmp_path / "problem.json", tmp_path / "w", own_redis.url, log)
        procs.append(first)
        with httpx.Client(base_url=url, timeout=10) as c:
            plan1 = c.get("/plan", headers={"authorization": f"Bearer {KEYS['planner']}"}).json()
            # a burst: per machine, down/available pairs in time order; several requests, then kill -9
            machines = sorted({s["resource"] for s in plan1["operations"]})
            events = [machine_event(f"b{i}-{j}-{s}", m, s, 5 + 6 * j + (3 if s == "available" else 0))
                      for j in range(4) for i, m in enumerate(machines) for s in ("down", "available")]
            accepted: list[str] = []
            for k in range(0, len(events), 6):
                r = post_events(c, events[k:k + 6], headers={"authorization": f"Bearer {KEYS['planner']}"})
                assert r.status_code == 202, r.text
                accepted += [a["key"] for a in r.json()["accepted"]]
        first.kill()  # kill -9 right after the last 202
        first.wait()
        seen = raw.hgetall(prefix + "events:seen")
        unapplied = sum(json.loads(v)["status"] == "accepted" for v in seen.values())
        in_flight = raw.xpending(prefix + "events", "applier")["pending"]  # read by the dead one, not acknowledged
        print(f"{len(accepted)} accepted, {unapplied} not yet applied ({in_flight} in flight) at the kill")
        assert len(accepted) == len(events) == len(set(accepted))
        if unapplied == 0:  # usually 2-8 are left; test 1 covers the accepted-not-applied path deterministically
            warnings.warn("the kill came after every event was applied: nothing left to resume", stacklevel=1)

        second, url = serve(tmp_path / "problem.json", tmp_path / "w", own_redis.url, log)
        procs.append(second)
        text = log.read_text()
        assert text.count("solving the starting plan") == 1, text[-3000:]  # the second one did not re-plan
        assert "resuming the plan kept in Redis" in text
        with httpx.Client(base_url=url, timeout=10, headers={"authorization": f"Bearer {KEYS['planner']}"}) as c:
            plan2 = c.get("/plan").json()
            assert plan2["operations"] == plan1["operations"] and plan2["plan_version"] == plan1["plan_version"]
            for key in accepted:
                source, eid = key.split(":", 1)
                wait_for(f"{key} applied", lambda source=source, eid=eid: c.get(f"/events/{source}/{eid}")
                         .json()["status"] == "applied")
        # none lost, none applied twice
        assert raw.xlen(prefix + "events") == len(accepted)
        assert raw.xpending(prefix + "events", "applier")["pending"] == 0
        final = Problem.model_validate_json(raw.get(prefix + "problem"))
        recorded = event_keys_in_downtimes(final)
        assert sorted(recorded) == sorted(accepted)  # each in exactly one downtime, exactly once
        assert sum(len(r.calendar.downtimes) for r in final.resources) == len(accepted) // 2
        schedule = Schedule(operations=plan2["operations"])
        assert check(problem, schedule).ok
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# --------------------------------------------------------------------------- 3. duplicated, reordered


def floor_events(schedule: Schedule) -> list[dict[str, Any]]:
    """A clean stream in time order: two breakdowns (one held, then down) and two operations started and done."""
    first = sorted((s for s in schedule.operations if s.operation.endswith("/0")), key=lambda s: s.start)[:2]
    evs = [machine_event("m1", "P1/L1/F", "held", 12), machine_event("m2", "P1/L1/F", "down", 14),
           machine_event("m3", "P1/L1/F", "available", 31), machine_event("m4", "P2/L1/C", "down", 20),
           machine_event("m5", "P2/L1/C", "busy", 26)]
    for n, s in enumerate(first):  # one after the other (they may share a machine)
        base = {"source": "mes1", "operation": s.operation, "machine": s.resource}
        evs += [{**base, "event_id": f"o{n}s", "status": "started", "time": at(33 + 9 * n)},
                {**base, "event_id": f"o{n}d", "status": "done", "time": at(40 + 9 * n)}]
    return sorted(evs, key=lambda e: e["time"])


def run_stream(problem: Problem, schedule: Schedule, url: str, name: str,
               requests: list[list[dict[str, Any]]]) -> tuple[PlanService, TestClient]:
    now = ORIGIN + timedelta(minutes=60)
    svc = PlanService(problem, schedule, config(name), url, clock=lambda: now)
    svc.r.delete(*[svc.k(k) for k in ("events", "events:seen", "replans", "proposals")])  # a rerun starts clean
    svc.start()
    c = TestClient(create_app(svc))
    for req in requests:
        r = post_events(c, req)
        assert r.status_code == 202, r.text
    keys = sorted({f"{e['source']}:{e['event_id']}" for req in requests for e in req})

    def statuses() -> dict[str, str]:
        return {k: (svc.event_status(*k.split(":", 1)) or EventStatus(status="accepted")).status for k in keys}

    wait_for(f"{name}: every event handled", lambda: "accepted" not in statuses().values()
             and svc.r.xpending(svc.k("events"), "applier")["pending"] == 0)
    assert set(statuses().values()) == {"applied"}, statuses()
    assert svc.r.xlen(svc.k("events")) == len(keys)  # a duplicate is never appended
    return svc, c


def test_duplicated_and_reordered_streams_give_the_clean_state_and_plan(
        plant: tuple[Problem, Schedule], redis_server: EmbeddedRedis) -> None:
    problem, schedule = plant
    clean = floor_events(schedule)
    streams = {
        "clean": [[e] for e in clean],  # one request per event, in time order
        # every event twice (and the last request a resend of all of them): dedupe in Redis and in the domain
        "dup": [[e, e] for e in clean[:4]] + [[e] for e in clean[4:]] + [clean[2:6]] + [clean],
        "reordered": [list(reversed(clean))],  # out of order in one delivery: applied in event-time order
    }
    services = {n: run_stream(problem, schedule, redis_server.url, f"rel-{n}-{os.getpid()}", reqs)
                for n, reqs in streams.items()}
    try:
        states = {n: floor_state(svc.problem) for n, (svc, _) in services.items()}
        assert states["dup"] == states["clean"]
        assert states["reordered"] == states["clean"]
        st = states["clean"]
        assert len(st["downtimes"]["P1/L1/F"]) == len(st["downtimes"]["P2/L1/C"]) == 1
        assert [v[0] for v in st["operations"].values()].count("done") == 2
        # a replan on each: checker-clean, and the same optimal objective
        objectives = {}
        for n, (svc, c) in services.items():
            jid = c.post("/replans", json={"scope": "all", "time_limit": 10}, headers=bearer("planner")).json()["id"]
            job = wait_for(f"{n}: replan done", lambda c=c, jid=jid: (lambda j: j if j["status"] in (
                "done", "failed") else None)(c.get(f"/replans/{jid}", headers=bearer("planner")).json()))
            assert job["status"] == "done", job["error"]
            prop = c.get(f"/proposals/{job['proposal']}?schedule=true", headers=bearer("planner")).json()
            report = check(svc.problem.model_copy(update={"now": svc.now()}), Schedule.model_validate(prop["schedule"]))
            assert report.ok, report.violations[:5]
            took = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"]))
            objectives[n] = (prop["objective"], took.total_seconds())
        print(objectives)
        assert len({o for o, _ in objectives.values()}) == 1, objectives
        # stopped well inside its 10 s: CP-SAT proved the plan optimal, so equal objectives mean equal problems
        assert all(t < 8 for _, t in objectives.values()), f"not proven optimal: {objectives}"
    finally:
        for svc, _ in services.values():
            svc.close()


# --------------------------------------------------------------------------- 4. refusals


def test_bad_signatures_roles_bodies_and_sizes_are_refused(
        plant: tuple[Problem, Schedule], redis_server: EmbeddedRedis) -> None:
    problem, schedule = plant
    svc = PlanService(problem, schedule, config(f"rel-refusals-{os.getpid()}", max_body_bytes=20_000),
                      redis_server.url)
    svc.r.delete(svc.k("audit"), svc.k("events"), svc.k("events:seen"))
    c = TestClient(create_app(svc))
    body = json.dumps(machine_event("x1", "P1/L1/C", "down", 30)).encode()
    base = {**bearer("mes"), "content-type": "application/json"}
    signed = signed_headers(SECRET, body)
    cases = {
        "tampered": (body.replace(b"down", b"held"), signed),
        "expired": (body, signed_headers(SECRET, body, timestamp=int(time.time()) - 3600)),
        "wrong secret": (body, signed_headers(WebhookSecret.generate(), body)),
        "missing": (body, {}),
    }
    for what, (content, sig) in cases.items():
        r = c.post("/events", content=content, headers={**base, **sig})
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert r.json()["detail"].startswith("signature:"), (what, r.text)
    refused = [a for a in c.get("/audit", headers=bearer("viewer")).json() if a["action"] == "refused"]
    assert len(refused) == 4 and all(a["details"]["reason"].startswith("signature:") for a in refused), refused
    assert svc.r.xlen(svc.k("events")) == 0  # nothing refused was appended

    assert c.post("/replans", json={"scope": "all"}, headers=bearer("viewer")).status_code == 403
    assert c.post("/brake", headers=bearer("mes")).status_code == 403
    assert c.post("/brake", headers={"authorization": "Bearer not-a-key-at-all"}).status_code == 401

    bad = machine_event("x2", "P1/L1/C", "exploded", 30)
    r = post_events(c, bad)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "state", r.text
    r = post_events(c, {"events": [machine_event("x3", "P1/L1/C", "down", 30), bad]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "events[1].state", r.text
    assert svc.r.xlen(svc.k("events")) == 0  # a batch with one bad event is refused whole

    big = [machine_event(f"y{i}", "P1/L1/C", "down", 30) for i in range(300)]
    r = post_events(c, big)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert svc.r.xlen(svc.k("events")) == 0
    r = post_events(c, machine_event("ok", "P1/L1/C", "down", 30))  # and a good one still goes through
    assert r.status_code == 202 and len(r.json()["accepted"]) == 1, r.text
    assert check(problem, svc.released.schedule).ok


def test_a_machine_recovery_delivered_before_its_breakdown_in_another_batch(
        plant: tuple[Problem, Schedule], redis_server: EmbeddedRedis) -> None:
    """Out of order across batches: the service rebuilds the machine's downtimes from its whole event
    history in time order, so the late 'down' closes at the earlier 'available' as in the clean stream."""
    problem, schedule = plant
    down, up = machine_event("d", "P1/L1/F", "down", 14), machine_event("u", "P1/L1/F", "available", 31)
    clean, _ = run_stream(problem, schedule, redis_server.url, f"rel-x-clean-{os.getpid()}", [[down, up]])
    late, _ = run_stream(problem, schedule, redis_server.url, f"rel-x-late-{os.getpid()}", [[up]])
    try:
        c = TestClient(create_app(late))
        assert post_events(c, down).status_code == 202
        wait_for("d applied", lambda: (late.event_status("mes1", "d") or EventStatus(status="accepted")).status
                 != "accepted")
        assert floor_state(late.problem) == floor_state(clean.problem)
    finally:
        clean.close()
        late.close()

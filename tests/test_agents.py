"""Agents over the real bus (Redis) and on real Ray: negotiation, duplicates, crashes.

Every schedule the agents agree on is verified by the independent checker
against the scenario's global problem.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import redis

from paichan.agents.explain import load_journal, order_story, summary
from paichan.agents.host import HostCore
from paichan.agents.messages import Award, NewOrder
from paichan.agents.runtime import Network, agents_schedule, run_agents, unreachable_bus
from paichan.agents.scenario import Scenario, ScenarioError, global_problem, load_scenario, small_network
from paichan.bus import Bus, EmbeddedRedis, make
from paichan.checker import check
from paichan.service.output import write_run


def tiny(orders: int = 6, hosting: str = "per_plant", timeout_s: float = 5.0) -> Scenario:
    return small_network(orders=orders, hosting=hosting, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def run_and_write(sc: Scenario, out: Path) -> dict[str, Any]:
    """What `paichan run` does: negotiate, then write the run's files; returns the KPIs."""
    return write_run(out, run_agents(sc, out, progress=lambda _: None, timeout=120))


def wait(cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


def test_negotiation_end_to_end(ray_session: None, tmp_path: Path) -> None:
    kpis = run_and_write(tiny(), tmp_path)
    assert kpis["feasible"], kpis["violations"]
    assert kpis["unscheduled_orders"] == [] and kpis["failed_orders"] == []
    kinds = {json.loads(line)["type"] for line in (tmp_path / "negotiations.jsonl").read_text().splitlines()}
    assert {"order.new", "cfp", "bid", "award", "reject", "confirm", "atp.request", "atp.promise", "atp.reserve",
            "atp.confirm", "control.replan"} <= kinds
    sched = json.loads((tmp_path / "schedule.json").read_text())
    assert len(sched["operations"]) == 12 and {"order", "operation", "plant", "line", "machine", "start", "end"} == set(
        sched["operations"][0])
    # the journal alone explains where every order went
    journal = load_journal(tmp_path)
    placed = {o["order"]: f"{o['plant']}/{o['line']}" for o in sched["operations"]}
    assert {r["order"]: r["line"] for r in summary(journal)} == placed
    oid = sorted(placed)[0]
    story = order_story(journal, oid)
    assert any(f"awards to {placed[oid]} (lowest cost" in line for line in story), story


def test_escalation_places_orders_at_another_plant(ray_session: None, tmp_path: Path) -> None:
    sc = tiny(orders=8)
    sc.generate_orders.due_slack = (10, 20)  # type: ignore[union-attr]  # impossible locally: every order is late
    kpis = run_and_write(sc, tmp_path)
    assert kpis["feasible"] and kpis["escalations"] > 0
    lines = {o["plant"] for o in json.loads((tmp_path / "schedule.json").read_text())["operations"]}
    assert lines == {"P1", "P2"}  # some of P1's orders went to P2's faster cutter


def test_late_orders_move_to_another_plant_after_a_breakdown(ray_session: None, tmp_path: Path) -> None:
    """P1's only cutter breaks down after planning: reallocation moves P1's now-late orders to P2."""
    machines = [{"id": "C", "type": "cut"}, {"id": "F", "type": "fold"}]
    sc = Scenario.model_validate({
        "name": "move",
        "horizon_days": 10,
        "products": {"box": {"steps": [{"name": "cut", "machine_type": "cut", "minutes_per_unit": 3},
                                       {"name": "fold", "machine_type": "fold", "minutes_per_unit": 2}]}},
        "plants": [{"id": p, "lines": [{"id": "L1", "machines": machines}]} for p in ("P1", "P2")],
        "orders": [{"id": f"O{k}", "product": "box", "quantity": 10, "plant": "P1", "due": 500} for k in range(4)],
        "disruptions": [{"type": "machine_down", "plant": "P1", "line": "L1", "machine": "C", "start": 0,
                         "end": 5000}],
        "negotiation": {"respond_timeout_s": 5, "wave": 4, "replan_time_limit": 1},
    })
    kpis = run_and_write(sc, tmp_path)
    first = kpis["first_schedule"]
    assert first["feasible"] and first["weighted_tardiness"] == 0 and kpis["escalations"] == 0  # all fit at P1
    assert kpis["feasible"], kpis["violations"]
    assert kpis["moves"] >= 1
    plants = {o["order"]: o["plant"] for o in json.loads((tmp_path / "schedule.json").read_text())["operations"]}
    assert "P2" in plants.values()
    assert kpis["weighted_tardiness"] < 4 * 4500  # staying behind the breakdown would make each ~4,500 late


def test_cleanup_leaves_no_key_of_the_run_on_a_shared_redis(ray_session: None, tmp_path: Path,
                                                           redis_server: EmbeddedRedis,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sc = small_network(orders=2, name=f"cleanup{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    r = redis.Redis.from_url(redis_server.url)
    other = f"paichan:someone-else:{uuid.uuid4().hex[:6]}:state:x"  # another run's key on the same server
    r.set(other, "1")
    said: list[str] = []
    result = run_agents(sc, tmp_path, progress=said.append, timeout=120, cleanup=True)
    assert result.kpis["feasible"] and result.journal
    assert list(r.scan_iter(f"paichan:{sc.name}:*")) == []
    assert r.get(other) == b"1"
    assert any(line.startswith("removed ") for line in said)
    r.delete(other)


def test_a_cluster_with_other_hosts_refuses_a_loopback_bus() -> None:
    here = "10.0.0.10"
    assert unreachable_bus("redis://127.0.0.1:6390/0", [here], here) is None  # one host: loopback is fine
    assert unreachable_bus("redis://127.0.0.1:6390/0", [here, here], here) is None  # two raylets, one host
    why = unreachable_bus("redis://:secret@127.0.0.1:6390/0", [here, "10.0.0.11"], here)
    assert why is not None and "10.0.0.11" in why and "REDIS_URL" in why and "secret" not in why
    assert unreachable_bus("redis://:secret@10.0.0.10:6379/0", [here, "10.0.0.11"], here) is None


def test_duplicates_never_double_book(bus: Bus) -> None:
    sc = tiny(orders=2)
    core = HostCore(sc.model_dump_json(), ["P1", "P1/L1", "P1/L2", "S1"], bus.url, bus.ns)
    try:
        spec = sc.order_specs()[0]
        env = make(NewOrder(order=spec.model_copy(update={"plant": "P1"})), "erp", "P1", "o")
        bus.send(env, env)  # the very same envelope twice
        bus.send(make(NewOrder(order=spec), "erp", "P1", "o"))  # and the same order in a new envelope
        wait(lambda: (bus.load_state("P1") or {"agent": {"orders": {}}})["agent"]["orders"].get(spec.id, {})
             .get("status") == "confirmed")
        winner = bus.load_state("P1")["agent"]["orders"][spec.id]["placed"]["line"]  # type: ignore[index]
        award = next(e for e in bus.journal_entries() if e.type == "award")
        bus.send(award)  # a redelivered award (same id) ...
        bus.send(make(Award(order_id=spec.id, line=winner), "P1", winner, "again"))  # ... and a fresh duplicate
        wait(lambda: bus.r.xpending(bus.inbox(winner), winner)["pending"] == 0 and bus.r.xinfo_groups(
            bus.inbox(winner))[0]["lag"] == 0)
        time.sleep(0.3)
        line = bus.load_state(winner)["agent"]  # type: ignore[index]
        committed = [o for o, r in line["orders"].items() if r["status"] == "committed"]
        assert committed == [spec.id]
        confirms = [e for e in bus.journal_entries() if e.type == "confirm"]
        assert len(confirms) == 2  # the fresh award is answered again, with the same booking
        assert confirms[0].payload["operations"] == confirms[1].payload["operations"]
        assert sum(1 for e in bus.journal_entries() if e.type == "cfp") == 2  # one call, to the two lines
    finally:
        core.shutdown()


def test_poison_messages_go_to_dead_letters_and_agents_carry_on(bus: Bus) -> None:
    sc = tiny(orders=1)
    core = HostCore(sc.model_dump_json(), ["P1", "P1/L1", "P1/L2", "S1"], bus.url, bus.ns)
    try:
        bus.send_raw("P1/L1", {"envelope": "{broken"})
        bus.send(make(Award(order_id="unknown", line="P1/L1"), "P1", "S1", "x"))  # wrong recipient: handler error
        spec = sc.order_specs()[0]
        bus.send(make(NewOrder(order=spec), "erp", "P1", "o"))
        wait(lambda: (bus.load_state("P1") or {"agent": {"orders": {}}})["agent"]["orders"].get(spec.id, {})
             .get("status") == "confirmed")
        reasons = [d["reason"] for d in bus.dead_letters()]
        assert any("bad envelope" in r for r in reasons)
        assert any("handler error in S1" in r and "award" in r for r in reasons)
        assert core.status()["errors"] == []
    finally:
        core.shutdown()


def test_killed_agent_restarts_and_loses_nothing(ray_session: None, tmp_path: Path) -> None:
    sc = tiny(orders=10, hosting="per_agent", timeout_s=20)
    net = Network(sc, tmp_path, progress=lambda _: None)
    try:
        net.feed_orders()
        wait(lambda: sum(1 for o in net.plant_states()["P1"]["orders"].values() if o["status"] == "confirmed") >= 2)
        victim = net.hosts["P1/L1"]
        before = ray.get(victim.status.remote())
        victim.crash.remote()  # the process dies abruptly, possibly mid-message
        wait(lambda: _alive_pid(victim) not in (None, before["pid"]), timeout=90)
        assert "P1/L1" in ray.get(victim.status.remote())["restored"]
        assert net.wait_quiet(180, "negotiating", net.negotiation_done)
        problem = global_problem(sc)
        schedule = agents_schedule(sc, problem, net.line_states())
        report = check(problem, schedule)
        assert report.ok, report.violations[:5]  # no double booking, every operation placed once
        placed = {o for st in net.plant_states().values() for o, r in st["orders"].items() if r["placed"]}
        assert placed == {o.id for o in problem.orders}
    finally:
        net.close()


def _alive_pid(actor) -> int | None:  # type: ignore[no-untyped-def]
    try:
        return int(ray.get(actor.status.remote(), timeout=5)["pid"])
    except Exception:
        return None


def test_bad_scenario_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nproducts: {p: {steps: [{name: a, machine_type: cut, minutes_per_unit: -1}]}}\n"
                   "plants: [{id: P, lines: [{id: L, calendar: nope, machines: [{id: M, type: cut}]}]}]\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(bad)
    assert "bad.yaml" in str(e.value) and "line 2: products.p.steps.0.minutes_per_unit" in str(e.value)
    bad.write_text("name: x\nproducts:\n  p:\n    steps:\n      - name: a\n        machine_type: cut\n"
                   "        minutes_per_unit: 1\n\n      - name: b\n        machine_type: cut\n"
                   "        minutes_per_unit: often\nplants: []\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(bad)
    assert "line 11: products.p.steps.1.minutes_per_unit" in str(e.value)  # the YAML line as well as the path
    bad.write_text("name: x\nproducts: {p: {steps: [{name: a, machine_type: cut, minutes_per_unit: 1}]}}\n"
                   "plants: [{id: P, lines: [{id: L, calendar: nope, machines: [{id: M, type: cut}]}]}]\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(bad)
    assert "plants[0].lines[0].calendar: unknown calendar 'nope'" in str(e.value)


def test_bundled_scenarios_load() -> None:
    root = Path(__file__).resolve().parent.parent / "scenarios"
    # sharing_*.yaml are capacity-sharing sessions (paichan session demo), a different format: tests/test_sharing_*
    paths = [p for p in sorted(root.glob("*.yaml")) if not p.name.startswith("sharing_")]
    sizes = {p.name: sum(len(o.steps) for o in load_scenario(p).order_specs()) for p in paths}
    assert sizes["network_10x10.yaml"] >= 5000 and len(sizes) >= 3

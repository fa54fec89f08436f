"""Redis lost under a running negotiation: killed (-9) and brought back from its AOF, or gone for good.

Real Ray, real redis-server processes (each test's own, on its own port), real kill -9.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray

from paichan.agents.runtime import Network, agents_schedule
from paichan.agents.scenario import global_problem, small_network
from paichan.bus.server import EmbeddedRedis
from paichan.checker import check

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def wait(cond: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_redis_killed_mid_negotiation_comes_back_and_nothing_is_lost_or_booked_twice(
        ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # the run's own private server, which it supervises
    sc = small_network(orders=8, timeout_s=10, name="redisloss")
    said: list[str] = []
    net = Network(sc, tmp_path, progress=said.append)
    try:
        assert net.server is not None
        net.feed_orders()
        wait(lambda: sum(o["status"] == "confirmed" for st in net.plant_states().values()
                         for o in st["orders"].values()) >= 1)
        pid = net.server.proc.pid if net.server.proc else None
        net.server.kill()  # kill -9, mid-negotiation
        wait(lambda: net.redis_restarts == 1, timeout=30)
        assert net.server.proc is not None and net.server.proc.pid != pid
        assert net.wait_quiet(180, "negotiating", net.negotiation_done)
        net.settle(120, replan_all=True)
        problem = global_problem(sc, {})
        lines = net.line_states()
        booked: dict[str, list[str]] = {}
        for line, st in lines.items():
            for oid, rec in st["orders"].items():
                if rec["status"] == "committed":
                    booked.setdefault(oid, []).append(line)
        plants = net.plant_states()
        confirmed = {o for st in plants.values() for o, r in st["orders"].items() if r["status"] == "confirmed"}
        assert confirmed and all(len(booked.get(o, [])) == 1 for o in confirmed), booked
        assert set(booked) == confirmed, "nothing booked that the plants do not know of"
        schedule = agents_schedule(sc, problem, lines)
        sub = problem.model_copy(update={"orders": [o for o in problem.orders if o.id in confirmed]})
        assert check(sub, schedule).ok
        assert any("restarting it from its AOF" in line for line in said)
        assert any("is back after" in line for line in said)
    finally:
        net.close()
    assert not net.server or not net.server.alive()


def test_redis_gone_for_good_ends_the_run_with_one_line(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(small_network(orders=4, name="gone").model_dump_json())  # JSON is YAML
    with EmbeddedRedis(tmp_path / "shared-redis") as server:
        env = {**os.environ, "REDIS_URL": server.url, "PAICHAN_BUS_OUTAGE_S": "4", "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "paichan.service.cli", "run", str(scenario), "--output",
                                 str(tmp_path / "out")], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env, cwd=ROOT)
        assert proc.stderr is not None
        lines: list[str] = []
        fed = False
        for line in proc.stderr:
            lines.append(line)
            fed = fed or line.startswith("fed ")
            if fed and line.startswith("negotiating:") and "no orders yet" not in line:  # plants have state
                server.kill()  # gone, and nobody restarts a shared server
                break
        _, rest = proc.communicate(timeout=240)
    all_err = "".join(lines) + (rest or "")
    assert proc.returncode == 2, all_err[-3000:]
    assert "Traceback" not in all_err
    assert "has not answered" in all_err and "retrying" in all_err
    # what the run had read is on disk: the journal so far (at least the orders it fed) and the last states
    journal = [json.loads(x) for x in (tmp_path / "out" / "negotiations.partial.jsonl").read_text().splitlines()]
    assert sum(1 for e in journal if e["type"] == "order.new") == 4
    states = json.loads((tmp_path / "out" / "states.partial.json").read_text())
    assert states["read_at"] and any(a.startswith("P") and "/" not in a for a in states["agents"])
    assert "negotiations.partial.jsonl" in all_err.splitlines()[-1] or "negotiations.partial.jsonl" in all_err

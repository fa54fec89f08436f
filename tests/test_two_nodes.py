"""A real two-node Ray cluster (a head and a second raylet on this machine, `ray start`), network_3x4 spread
over both, the worker node killed mid-negotiation: its hosts restart on the head and the run finishes.

Token authentication is on, as Ray 2.60 sets it up for `ray start --head`: the joining node needs
RAY_AUTH_MODE=token (docs/CLUSTER.md). Only this test's own Ray processes are ever killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.localcluster import LocalCluster
from paichan.domain import Problem

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster()
    try:
        yield c
    finally:
        c.stop()


def test_network_across_two_nodes_survives_the_worker_node_killed(cluster: LocalCluster, tmp_path: Path) -> None:
    out = tmp_path / "net"
    proc = subprocess.Popen([sys.executable, "-m", "paichan.service.cli", "run", "scenarios/network_3x4.yaml",
                             "--output", str(out)], cwd=ROOT, env={**cluster.env, "RAY_ADDRESS": cluster.address},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any(ln.startswith("fed ") for ln in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        up = next(ln for ln in lines if ln.startswith("network up"))
        assert "on 2 node(s)" in up, up  # the hosts are spread over both nodes
        time.sleep(1.0)  # mid-negotiation
        cluster.kill_worker_node()  # the worker node dies with its hosts: raylet and every process under it
        stdout, _ = proc.communicate(timeout=420)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines)
    assert proc.returncode == 0, err[-4000:]
    assert "Traceback" not in err
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["feasible"] and kpis["unscheduled_orders"] == [], kpis
    assert kpis["restored_agents"], "the dead node's hosts came back elsewhere, from their committed states"
    rows = json.loads((out / "schedule.json").read_text())["operations"]
    problem = Problem.model_validate_json((out / "problem.json").read_text())
    assert len({(r["order"], r["operation"]) for r in rows}) == len(rows) == sum(len(o.operations)
                                                                                 for o in problem.orders)
    said = [json.loads(x) for x in stdout.splitlines() if x.startswith('{"feasible"')]
    assert said and said[-1]["feasible"] is True, stdout
    assert "node(s)" in err and any("negotiat" in ln for ln in lines)

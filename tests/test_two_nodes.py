"""A real two-node Ray cluster (a head and a second raylet on this machine, `ray start`), network_3x4 spread
over both, the worker node killed mid-negotiation: its hosts restart on the head and the run finishes.

Token authentication is on, as Ray 2.60 sets it up for `ray start --head`: the joining node needs
RAY_AUTH_MODE=token (docs/CLUSTER.md). Only this test's own Ray processes are ever killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paichan.bus.server import free_port
from paichan.domain import Problem

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")


def _ours(marker: str) -> list[tuple[int, str]]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [(int(ln.split()[0]), ln) for ln in (x.strip() for x in out.splitlines()) if marker in ln]


class Cluster:
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="p2n", dir="/tmp")  # short: Ray's socket paths must stay < 107 bytes
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "REDIS_URL")},
                    "RAY_AUTH_MODE": "token", "RAY_TMPDIR": self.tmp, "PYTHONPATH": str(ROOT)}
        common = ["--num-cpus=1", "--disable-usage-stats"]
        subprocess.run([RAY, "start", "--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--temp-dir={self.tmp}", *common], env=self.env, check=True, capture_output=True,
                       timeout=120)
        subprocess.run([RAY, "start", f"--address={self.address}", '--resources={"worker_node": 1}', *common],
                       env=self.env, check=True, capture_output=True, timeout=120)

    def worker_raylet(self) -> int:
        """The pid of the second node's raylet (its sockets are suffixed .1)."""
        found = [pid for pid, line in _ours(self.tmp) if "/raylet " in line and "sockets/raylet.1 " in line]
        assert len(found) == 1, _ours(self.tmp)
        return found[0]

    def stop(self) -> None:
        for pid, _ in _ours(self.tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.stop()


def test_network_across_two_nodes_survives_the_worker_node_killed(cluster: Cluster, tmp_path: Path) -> None:
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
        os.kill(cluster.worker_raylet(), signal.SIGKILL)  # the worker node dies with its hosts
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

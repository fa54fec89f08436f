"""``paichan serve SCENARIO`` as a real process: the agents negotiate the starting plan on Ray over the
service's own Redis, the API serves it, Ctrl-C leaves nothing running, and the next start resumes
the plan from Redis's AOF instead of negotiating again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml
from test_interrupt import _ours

from paichan.agents.scenario import small_network
from paichan.bus.server import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "planner-key-serve-0123456789"


def _serve(scenario: Path, workdir: Path, port: int, ray_tmp: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")}
    env |= {"RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT), "PAICHAN_API_KEY": KEY,
            "PAICHAN_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    proc = subprocess.Popen([sys.executable, "-m", "paichan.service.cli", "serve", str(scenario), "--port", str(port),
                             "--workdir", str(workdir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    return proc, lines


def _healthy(proc: subprocess.Popen[str], lines: list[str], url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "".join(lines)
        try:
            r = httpx.get(url + "/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("no /health 200 in time:\n" + "".join(lines))


def _stop(proc: subprocess.Popen[str], lines: list[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0, "".join(lines)


def test_serve_a_scenario_then_resume(tmp_path: Path) -> None:
    sc = small_network(orders=6, timeout_s=5.0, name="served")
    scenario = tmp_path / "sc.yaml"
    scenario.write_text(yaml.safe_dump(sc.model_dump(mode="json", exclude_none=True)))
    workdir = tmp_path / "svc"
    ray_tmp = tempfile.mkdtemp(prefix="pcs", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {KEY}"}
    proc, lines = _serve(scenario, workdir, port, ray_tmp)
    try:
        health = _healthy(proc, lines, url, 240)
        assert health["plan_version"] == 1
        assert any(ln.startswith("network up") for ln in lines), "".join(lines)  # the agents negotiated it
        plan = httpx.get(url + "/plan", headers=auth).json()
        order = plan["operations"][0]["order"]
        ex = httpx.get(f"{url}/orders/{order}/explain", headers=auth).json()
        assert ex["negotiation"], "the agents' rounds for the order"
        kpis = httpx.get(url + "/kpis", headers=auth).json()  # the checker's verdict on the released plan
        late_start = [v for v in kpis["released_violations"] if v.startswith("[now]")]  # the clock moved on
        assert kpis["released"] is not None and len(kpis["released_violations"]) == len(late_start)
    finally:
        if proc.poll() is None:
            _stop(proc, lines)
    assert not _ours(ray_tmp), "Ray left running"
    assert not _ours(str(workdir / "redis")), "the private redis-server left running"

    proc, lines = _serve(scenario, workdir, port, ray_tmp)
    try:
        assert _healthy(proc, lines, url, 120)["plan_version"] == 1
        assert any("resuming the plan kept in Redis" in ln for ln in lines), "".join(lines)
        assert not any(ln.startswith("network up") for ln in lines), "negotiated again instead of resuming"
        again = httpx.get(url + "/plan", headers=auth).json()["operations"]
        assert again == plan["operations"]
        ex = httpx.get(f"{url}/orders/{order}/explain", headers=auth).json()
        assert ex["negotiation"], "the journal survives a restart"
        # a planner's page left open (its live event stream) must not hold up Ctrl-C
        got: list[str] = []

        def listen() -> None:
            with httpx.stream("GET", url + "/live", headers=auth, timeout=30) as r:
                for chunk in r.iter_text():
                    got.append(chunk)

        threading.Thread(target=listen, daemon=True).start()
        deadline = time.monotonic() + 10
        while not any("connected" in c for c in got) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert got, "the live stream answered"
        t0 = time.monotonic()
        _stop(proc, lines)
        assert time.monotonic() - t0 < 4.5, "the open stream ended with the server, not at the 5 s backstop"
        assert "Traceback" not in "".join(lines)
    finally:
        if proc.poll() is None:
            _stop(proc, lines)

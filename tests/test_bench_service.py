"""Smoke runs of the service benchmarks (``bench/repair.py``, ``bench/ingest.py``): slow, opt-in (``-m slow``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, check=True, timeout=900,
                   stdout=subprocess.DEVNULL)


@pytest.mark.slow
def test_repair_quick(tmp_path: Path) -> None:
    out = tmp_path / "repair.md"
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    _run(["bench.repair", "--quick", "--out", str(out)], tmp_path)
    plans = json.loads(out.with_suffix(".json").read_text())
    rows = [r for r in plans[0]["rows"] if "latency_s" in r]
    assert rows, "no event got a proposal"
    assert all(r["latency_s"] > 0 for r in rows)


@pytest.mark.slow
def test_ingest_short(tmp_path: Path) -> None:
    out = tmp_path / "ingest.md"
    _run(["bench.ingest", "--seconds", "2", "--clients", "4", "--out", str(out)], tmp_path)
    row = json.loads(out.with_suffix(".json").read_text())[0]
    v = row["verify"]
    assert row["accepted"] > 0 and v["missing"] == 0 and v["appended_twice"] == 0
    assert v["not_applied_after_wait"] == 0

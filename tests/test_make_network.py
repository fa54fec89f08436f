"""scripts/make_network.py writes the committed network scenarios (so the 30 x 10 one is the 10 x 10 one, grown)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from paichan.agents.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def make(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_network.py"), *args], capture_output=True,
                         text=True, check=True).stdout
    return yaml.safe_load(out)


def test_the_committed_networks_are_what_the_generator_writes() -> None:
    for name, args in (("network_10x10", ()), ("network_30x10", ("--plants", "30", "--lines", "10"))):
        assert make(*args) == yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text()), name
    big = load_scenario(ROOT / "scenarios" / "network_30x10.yaml")
    assert len(big.plants) == 30 and all(len(p.lines) == 10 for p in big.plants)
    assert sum(len(o.steps) for o in big.order_specs()) >= 15_000

"""The committed sharing scenarios load, are what scripts/make_sharing.py writes, and a broken one says where."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from paichan.sharing.model import SharingScenarioError, load_sharing

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {3: ROOT / "scenarios" / "sharing_3.yaml", 10: ROOT / "scenarios" / "sharing_10.yaml"}


@pytest.mark.parametrize("n", sorted(SCENARIOS))
def test_the_committed_sharing_scenarios_load(n: int) -> None:
    sc = load_sharing(SCENARIOS[n])
    assert len(sc.enterprises) == n
    buyers = [e for e in sc.enterprises if not e.offers]
    sellers = [e for e in sc.enterprises if e.offers]
    assert len(buyers) == (1 if n == 3 else 3) and len(sellers) == n - len(buyers)
    for e in sc.enterprises:
        assert len(e.orders) <= 16 and all(1 <= len(o.steps) <= 2 and o.due <= 2880 for o in e.orders)
        assert all(o.customer for o in e.orders)
    for b in buyers:  # every capability a buyer needs is on offer somewhere
        needed = {s.capability for o in b.orders for s in o.steps}
        offered = {c for s in sellers for f in s.offers for c in f.capabilities}
        assert needed <= offered, b.id


@pytest.mark.parametrize(("n", "tight"), [(3, False), (10, False), (10, True)])
def test_the_generator_writes_the_committed_file_byte_for_byte(n: int, tight: bool, tmp_path: Path) -> None:
    out = tmp_path / f"sharing_{n}.yaml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sharing.py"), "--enterprises", str(n),
                    *(["--tight"] if tight else []), "--output", str(out)],
                   check=True, capture_output=True, text=True, timeout=60)
    committed = ROOT / "scenarios" / f"sharing_{n}{'_tight' if tight else ''}.yaml"
    assert out.read_bytes() == committed.read_bytes()


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """sharing_3 with ``old`` replaced by ``new`` on its first line holding ``old``; that line's number."""
    lines = SCENARIOS[3].read_text(encoding="utf-8").splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if old in ln)
    lines[k] = lines[k].replace(old, new)
    path = tmp_path / "broken.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path, k + 1


def test_a_step_with_a_capability_no_line_has_names_the_file_and_the_enterprise_line(tmp_path: Path) -> None:
    path, _ = _broken(tmp_path, "capability: milling", "capability: welding")
    with pytest.raises(SharingScenarioError) as e:
        load_sharing(path)
    msg = str(e.value)
    # the check is the enterprise's own (a model validator): its line is where the enterprise starts
    first = SCENARIOS[3].read_text(encoding="utf-8").splitlines().index("- id: acme") + 1
    assert msg.startswith(f"{path}:") and f"line {first}:" in msg, msg
    assert "welding" in msg and "acme" in msg, msg


def test_a_bad_field_names_the_file_and_its_own_line(tmp_path: Path) -> None:
    path, line = _broken(tmp_path, "duration: ", "duration: -")
    with pytest.raises(SharingScenarioError) as e:
        load_sharing(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:") and f"line {line}:" in msg and "duration" in msg, msg

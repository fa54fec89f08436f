"""Instance readers: naming conventions, error messages with line numbers, bundled files."""

from __future__ import annotations

from pathlib import Path

import pytest

from paichan.domain import find_problems
from paichan.solver.readers import (
    InstanceFormatError,
    instance_indices,
    machine_index,
    read_fjsp,
    read_instance,
    read_jssp,
)

BUNDLED = Path(__file__).resolve().parents[1] / "bench" / "instances"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_jssp_2x2(tmp_path: Path) -> None:
    path = _write(tmp_path, "tiny.txt", "2 2\n0 3 1 2\n1 4 0 1\n\n\n")
    p = read_jssp(path)
    assert p.name == "tiny" and p.time_unit == "unit"
    assert [r.id for r in p.resources] == ["m0", "m1"]
    assert [o.id for o in p.orders] == ["j0", "j1"]
    assert [op.id for op in p.orders[1].operations] == ["j1.0", "j1.1"]
    assert [(m.resource, m.duration) for op in p.orders[1].operations for m in op.modes] == [("m1", 4), ("m0", 1)]
    assert all(op.predecessors is None for _, op in p.operations())
    assert p.objective.terms() == ["makespan"]
    assert find_problems(p) == []
    assert read_instance(path, "jssp") == p


def test_read_fjsp_two_jobs(tmp_path: Path) -> None:
    # job 0: op0 on machine 1 (t=3) or 3 (t=5); op1 on machine 2 (t=4). job 1: op0 on 3 (t=2).
    path = _write(tmp_path, "flex.fjs", "2 3 1.5\n2 2 1 3 3 5 1 2 4\n1 1 3 2\n")
    p = read_fjsp(path)
    assert [r.id for r in p.resources] == ["m0", "m1", "m2"]
    op00, op01 = p.orders[0].operations
    assert op00.id == "j0.0" and [(m.resource, m.duration) for m in op00.modes] == [("m0", 3), ("m2", 5)]
    assert op01.id == "j0.1" and [(m.resource, m.duration) for m in op01.modes] == [("m1", 4)]
    assert [(m.resource, m.duration) for m in p.orders[1].operations[0].modes] == [("m2", 2)]
    assert read_instance(path, "fjsp") == p
    assert read_fjsp(_write(tmp_path, "noavg.fjs", "1 1\n1 1 1 7\n")).orders[0].operations[0].modes[0].duration == 7


def test_naming_inverses() -> None:
    assert instance_indices("j12.3") == (12, 3)
    assert machine_index("m14") == 14
    for bad in ("j1", "x1.2", "j1.2.3"):
        with pytest.raises(ValueError):
            instance_indices(bad)
    with pytest.raises(ValueError):
        machine_index("M1")


@pytest.mark.parametrize(
    ("name", "text", "line", "fragment"),
    [
        ("trunc.txt", "2 3\n0 1 1 2 2 3\n0 1 1 2 2\n", 3, "expected 6 integers (3 machine/duration pairs), found 5"),
        ("token.txt", "2 2\n0 1 1 2\n0 x 1 2\n", 3, "found 'x'"),
        ("range.txt", "2 2\n0 1 2 2\n0 1 1 2\n", 2, "expected a machine in 0..1, found 2"),
        ("few.txt", "3 2\n0 1 1 2\n0 1 1 2\n", 4, "expected 3 job lines, found 2"),
        ("extra.txt", "1 2\n0 1 1 2\n0 1 1 2\n", 3, "expected end of file"),
        ("neg.txt", "\n2 2\n0 1 1 2\n0 1 1 -2\n", 4, "expected a duration >= 0, found -2"),
        ("header.txt", "2\n0 1\n", 1, "expected a header"),
    ],
)
def test_jssp_errors_name_the_line(tmp_path: Path, name: str, text: str, line: int, fragment: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(InstanceFormatError) as err:
        read_jssp(path)
    msg = str(err.value)
    assert f"{path} line {line}:" in msg and fragment in msg
    assert err.value.line == line


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("2 2 1\n1 1 1 3\n2 1 1 3 1\n", 3, "found end of line"),  # truncated second operation
        ("2 2 1\n1 1 1 3\n1 1 1 3.5\n", 3, "found '3.5'"),
        ("2 2 1\n1 1 0 3\n1 1 1 3\n", 2, "expected a machine in 1..2, found 0"),
        ("2 2 1\n1 1 3 3\n1 1 1 3\n", 2, "expected a machine in 1..2, found 3"),
        ("3 2 1\n1 1 1 3\n1 1 1 3\n", 4, "expected 3 job lines, found 2"),
        ("2 2 1\n1 1 1 3\n1 1 1 -1\n", 3, "expected a duration >= 0, found -1"),
        ("2 2 1\n1 0\n1 1 1 3\n", 2, "expected a machine count >= 1, found 0"),
        ("2 2 1\n1 1 1 3 9\n1 1 1 3\n", 2, "expected 4 tokens"),
    ],
)
def test_fjsp_errors_name_the_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = _write(tmp_path, "bad.fjs", text)
    with pytest.raises(InstanceFormatError) as err:
        read_fjsp(path)
    msg = str(err.value)
    assert f"{path} line {line}:" in msg and fragment in msg


def test_bundled_instances_all_read() -> None:
    jssp = sorted((BUNDLED / "jssp").glob("*.txt"))
    fjsp = sorted((BUNDLED / "fjsp").rglob("*.fjs"))
    assert len(jssp) == 148 and len(fjsp) == 76
    ta80 = read_jssp(BUNDLED / "jssp" / "ta80.txt")
    assert (len(ta80.orders), len(ta80.resources)) == (100, 20)
    for path in jssp:
        p = read_jssp(path)
        assert all(len(o.operations) == len(p.resources) for o in p.orders), path
    for path in fjsp:
        p = read_fjsp(path)
        assert all(op.modes for _, op in p.operations()), path

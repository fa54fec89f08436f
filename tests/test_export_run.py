"""`paichan export` from a `paichan run` output directory, and B2MML per plant.

The run is `paichan run --centralised` as a real subprocess (the same ``write_run`` as an agents run, without
Ray), once for the module; every document written is validated against the packaged XSDs and read back.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from lxml import etree
from test_adapters_b2mml import run, xsd_errors

from paichan.adapters import import_files, plant_of, write_b2mml_per_plant
from paichan.agents.scenario import global_problem, scenario_delays, small_network
from paichan.checker import check
from paichan.domain import Mode, Operation, Order, Problem, Resource, Schedule, ScheduledOperation
from paichan.service.common import load_problem, load_schedule
from paichan.service.output import DEMO_FILES, RUN_FILES

NS = {"0600": "{http://www.mesa.org/xml/B2MML-V0600}", "0700": "{http://www.mesa.org/xml/B2MML}"}
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
SCENARIO = small_network(orders=6).model_copy(update={"origin": datetime(2026, 3, 2)})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of one `paichan run --centralised` of a two-plant scenario (a demo's problem.json
    left there first: the run must replace it)."""
    tmp = tmp_path_factory.mktemp("run")
    sc = tmp / "sc.yaml"
    sc.write_text(yaml.safe_dump(SCENARIO.model_dump(mode="json", exclude_none=True)))
    out = tmp / "out"
    out.mkdir()
    (out / "problem.json").write_text(json.dumps({"name": "demo", "resources": [{"id": "M"}], "orders": []}))
    r = run("run", str(sc), "--centralised", "--time-limit", "2", "--output", str(out))
    assert r.returncode == 0, r.stderr
    return out


def rows(run_dir: Path) -> list[dict[str, object]]:
    ops: list[dict[str, object]] = json.loads((run_dir / "schedule.json").read_text())["operations"]
    return ops


def planned(path: Path) -> set[tuple[str, str, int, int]]:
    """(operation, machine, start, end) of every segment of a B2MML file, as `paichan import` reads it back."""
    back = import_files([path])
    assert back.report.rejected == [], [str(i) for i in back.report.rejected]
    sched = back.planned_schedule()
    assert sched is not None
    return {(s.operation, s.resource, s.start, s.end) for s in sched.operations}


def test_run_writes_the_problem_it_was_checked_against(run_dir: Path) -> None:
    assert "problem.json" in RUN_FILES and set(DEMO_FILES) <= set(RUN_FILES) | {"problem.json"}
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)
    problem = load_problem(run_dir / "problem.json")
    assert problem == global_problem(SCENARIO, scenario_delays(SCENARIO))  # not the demo's left there
    assert check(problem, load_schedule(run_dir / "schedule.json", problem)).ok
    r = run("check", str(run_dir / "problem.json"), str(run_dir / "schedule.json"))
    assert r.returncode == 0 and r.stdout.strip() == "feasible", (r.stdout, r.stderr)


@pytest.mark.parametrize("version", ["0600", "0700"])
def test_export_a_run_directory_both_versions(run_dir: Path, tmp_path: Path, version: str) -> None:
    out = tmp_path / "s.xml"
    r = run("export", "b2mml", str(run_dir), "--version", version, "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert xsd_errors(out.read_bytes(), version) == []
    assert planned(out) == {(f"{d['order']}/{d['operation']}", f"{d['plant']}/{d['line']}/{d['machine']}",
                             d["start"], d["end"]) for d in rows(run_dir)}
    r = run("export", "json", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["operations"]) == len(rows(run_dir))


@pytest.mark.parametrize("version", ["0600", "0700"])
def test_export_a_run_per_plant(run_dir: Path, tmp_path: Path, version: str) -> None:
    outdir = tmp_path / "plants"
    r = run("export", "b2mml", str(run_dir), "--version", version, "--per-plant", str(outdir))
    assert r.returncode == 0, r.stderr
    plants = sorted({str(d["plant"]) for d in rows(run_dir)})
    assert len(plants) == 2  # the scenario's orders go to both plants
    assert sorted(p.name for p in outdir.iterdir()) == [f"{p}.xml" for p in plants]
    assert [line.split(":")[0] for line in r.stderr.splitlines()] == [f"wrote {outdir / p}.xml" for p in plants]
    seen: set[tuple[str, str, int, int]] = set()
    for plant in plants:
        path = outdir / f"{plant}.xml"
        assert xsd_errors(path.read_bytes(), version) == []
        ops = planned(path)
        assert ops == {(f"{d['order']}/{d['operation']}", f"{d['plant']}/{d['line']}/{d['machine']}",
                        d["start"], d["end"]) for d in rows(run_dir) if d["plant"] == plant}
        assert not seen & ops
        seen |= ops
        doc = etree.parse(str(path))
        assert {e.text for e in doc.iter(f"{NS[version]}EquipmentID")} <= {
            f"{d['plant']}/{d['line']}/{d['machine']}" for d in rows(run_dir) if d["plant"] == plant}
    assert len(seen) == len(rows(run_dir))
    r = run("export", "b2mml", str(run_dir), "--version", version, "--plant", plants[1])
    assert r.returncode == 0, r.stderr
    one = tmp_path / "one.xml"
    one.write_text(r.stdout)
    assert xsd_errors(one.read_bytes(), version) == [] and planned(one) == planned(outdir / f"{plants[1]}.xml")


def test_export_errors_are_one_line_naming_the_file(run_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"  # a run directory from before runs wrote problem.json
    old.mkdir()
    shutil.copy(run_dir / "schedule.json", old / "schedule.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        (str(old),): f"error: {old / 'problem.json'}: no such file: an older `paichan run`",
        (str(empty),): f"error: {empty / 'schedule.json'}: no such file: {empty} is not the output directory",
        (str(run_dir / "schedule.json"),): f"error: {run_dir / 'schedule.json'}: give --problem",
        (str(run_dir), "--plant", "P9"): "error: --plant P9: no operation of",
        (str(run_dir), "--per-plant", str(tmp_path / "pp"), "--output", str(tmp_path / "x.xml")):
            "error: --per-plant OUTDIR writes every plant's file there",
    }
    for args, words in cases.items():
        r = run("export", "b2mml", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith(words), (args, r.stderr)
    assert "its plants: P1, P2" in run("export", "b2mml", str(run_dir), "--plant", "P9").stderr
    assert not (tmp_path / "pp").exists() and not (tmp_path / "x.xml").exists()
    o = tmp_path / "o.xml"  # an older run directory with the problem given
    r = run("export", "b2mml", str(old), "--problem", str(run_dir / "problem.json"), "--output", str(o))
    assert r.returncode == 0 and xsd_errors(o.read_bytes(), "0700") == [], r.stderr


def test_plant_of() -> None:
    assert plant_of("P1/L2/C") == "P1" and plant_of("P1/L2") == "P1"
    assert plant_of("M1") == "default" and plant_of("/M1") == "default"


def _two_plant_order() -> tuple[Problem, Schedule]:
    """One order cut in plant A, folded in plant B, packed in A again; a second order on a plain machine id."""
    def op(id: str, machine: str, d: int) -> Operation:
        return Operation(id=id, name=id.split("/")[1], modes=[Mode(resource=machine, duration=d)])

    problem = Problem(name="split", origin=datetime(2026, 3, 2, tzinfo=UTC),
                      resources=[Resource(id=r) for r in ("A/L1/C", "B/L1/F", "A/L1/P", "M")],
                      orders=[Order(id="O", product="box", quantity=3,
                                    operations=[op("O/cut", "A/L1/C", 5), op("O/fold", "B/L1/F", 4),
                                                op("O/pack", "A/L1/P", 2)]),
                              Order(id="Q", operations=[op("Q/mill", "M", 7)])])
    spans = {"O/cut": ("A/L1/C", 0, 5), "O/fold": ("B/L1/F", 5, 9), "O/pack": ("A/L1/P", 9, 11), "Q/mill": ("M", 0, 7)}
    schedule = Schedule(problem="split", operations=[
        ScheduledOperation(operation=k, order=k.split("/")[0], resource=m, mode=0, start=s, end=e)
        for k, (m, s, e) in spans.items()])
    assert check(problem, schedule).ok
    return problem, schedule


@pytest.mark.parametrize("version", ["0600", "0700"])
def test_an_order_in_two_plants_is_in_both_documents(tmp_path: Path, version: str) -> None:
    problem, schedule = _two_plant_order()
    docs = write_b2mml_per_plant(problem, schedule, version, created=CREATED)  # type: ignore[arg-type]
    assert list(docs) == ["A", "B", "default"]
    ns = NS[version]
    want = {"A": {("O", "cut"), ("O", "pack")}, "B": {("O", "fold")}, "default": {("Q", "mill")}}
    for plant, data in docs.items():
        assert xsd_errors(data, version) == []
        root = etree.fromstring(data)
        assert root.findtext(f".//{ns}{'OperationsSchedule' if version == '0700' else 'ProductionSchedule'}/{ns}ID") \
            == f"split/{plant}"
        reqs = root.iter(f"{ns}{'OperationsRequest' if version == '0700' else 'ProductionRequest'}")
        got = {(r.findtext(f"{ns}ID"), s.findtext(f"{ns}ID")) for r in reqs for s in r.iter(f"{ns}SegmentRequirement")}
        assert got == want[plant]
        produced = [m.findtext(f"{ns}MaterialDefinitionID") for m in root.iter(f"{ns}MaterialRequirement")
                    if m.findtext(f"{ns}MaterialUse") == "Produced"]
        assert produced == (["box"] if plant == "A" else [])  # on the order's last operation only
        path = tmp_path / f"{plant}-{version}.xml"
        path.write_bytes(data)
        assert {(op, m) for op, m, _, _ in planned(path)} == {
            (s.operation, s.resource) for s in schedule.operations if plant_of(s.resource) == plant}

"""The command-line contract, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml
from conftest import INSTANCES

from paichan.checker import check
from paichan.domain import Problem, Schedule, ScheduledOperation
from paichan.examples import demo_plant
from paichan.solver.readers import read_fjsp, read_jssp


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paichan.service.cli", *args], capture_output=True, text=True,
                          timeout=120)


def as_schedule(problem: Problem, ops: list[dict[str, int]], one_based: bool = False) -> Schedule:
    """Contract output -> Schedule, so the independent checker can verify it."""
    out = []
    for d in ops:
        j, k, m = d["job"], d["index"], d["machine"]
        operation = problem.orders[j].operations[k]
        mode = next(i for i, md in enumerate(operation.modes) if md.resource == f"m{m}")
        out.append(ScheduledOperation(operation=operation.id, order=problem.orders[j].id, resource=f"m{m}", mode=mode,
                                      start=d["start"], end=d["end"]))
    return Schedule(operations=out)


def test_solve_jssp_contract(tmp_path: Path) -> None:
    out = tmp_path / "ft06.json"
    r = run("solve", "--format", "jssp", str(INSTANCES / "jssp" / "ft06.txt"), "--time-limit", "5", "--workers", "2",
            "--output", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"status", "makespan", "operations"}
    assert data["status"] == "optimal" and data["makespan"] == 55
    assert len(data["operations"]) == 36
    assert set(data["operations"][0]) == {"job", "index", "machine", "start", "end"}
    problem = read_jssp(INSTANCES / "jssp" / "ft06.txt")
    assert check(problem, as_schedule(problem, data["operations"])).ok
    assert "objective" in r.stderr  # progress lines


def test_solve_fjsp_contract_machines_are_zero_based(tmp_path: Path) -> None:
    out = tmp_path / "mk01.json"
    path = INSTANCES / "fjsp" / "brandimarte" / "mk01.fjs"
    r = run("solve", "--format", "fjsp", str(path), "--time-limit", "3", "--workers", "2", "--output", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    problem = read_fjsp(path)
    assert min(d["machine"] for d in data["operations"]) == 0
    assert check(problem, as_schedule(problem, data["operations"])).ok
    assert data["makespan"] == max(d["end"] for d in data["operations"])


def test_malformed_instance_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("2 2\n0 5 1 4\n1 3 0\n")
    r = run("solve", "--format", "jssp", str(bad), "--time-limit", "1")
    assert r.returncode == 2 and "line 3" in r.stderr and "bad.txt" in r.stderr


def test_problem_json_round_trip_and_bad_field(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    assert run("schema", "--output", str(schema)).returncode == 0
    assert json.loads(schema.read_text())["title"] == "Problem"
    problem = {"resources": [{"id": "M"}], "orders": [{"id": "O", "operations": [
        {"id": "a", "modes": [{"resource": "M", "duration": 5}]},
        {"id": "b", "modes": [{"resource": "M", "duration": 7}]}]}]}
    good = tmp_path / "p.json"
    good.write_text(json.dumps(problem))
    out = tmp_path / "r.json"
    r = run("solve", str(good), "--time-limit", "2", "--output", str(out))
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["kpis"]["makespan"] == 12 and result["status"] == "optimal"
    problem["orders"][0]["operations"][1]["modes"][0]["duration"] = "seven"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(problem))
    r = run("solve", str(bad), "--time-limit", "1")
    assert r.returncode == 2 and "orders.0.operations.1.modes.0.duration" in r.stderr and "bad.json" in r.stderr


def test_inconsistent_problem_json_lists_findings(tmp_path: Path) -> None:
    problem = {"resources": [{"id": "M"}], "orders": [{"id": "O", "operations": [
        {"id": "a", "modes": [{"resource": "X", "duration": 5}]}]}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(problem))
    r = run("solve", str(path), "--time-limit", "1")
    assert r.returncode == 2 and "unknown resource 'X'" in r.stderr


def test_demo_writes_schedule_kpis_and_gantt(tmp_path: Path) -> None:
    (tmp_path / "negotiations.jsonl").write_text("{}\n")  # an earlier `paichan run` into the same directory
    r = run("demo", "--output", str(tmp_path), "--time-limit", "3")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "negotiations.jsonl").exists() and "removed" in r.stderr  # explain can't tell another run
    for name in ("problem.json", "schedule.json", "kpis.json", "gantt.html"):
        assert (tmp_path / name).stat().st_size > 0
    problem = Problem.model_validate_json((tmp_path / "problem.json").read_text())
    schedule = Schedule.model_validate_json((tmp_path / "schedule.json").read_text())
    report = check(problem, schedule)
    assert report.ok and report.kpis is not None
    assert json.loads((tmp_path / "kpis.json").read_text())["makespan"] == report.kpis.makespan
    page = (tmp_path / "gantt.html").read_text()
    assert "window.PAICHAN_VIEW=" in page and "echarts" in page and "<script src=" not in page  # self-contained


def test_committed_schemas_match_the_models() -> None:
    """docs/*.schema.json are what the models produce (regenerate with `paichan schema` / `scenario-schema`)."""
    from paichan.agents.scenario import Scenario

    root = Path(__file__).resolve().parent.parent / "docs"
    assert json.loads((root / "problem.schema.json").read_text()) == Problem.model_json_schema()
    assert json.loads((root / "scenario.schema.json").read_text()) == Scenario.model_json_schema()


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("paichan ") and r.stdout.split()[1][0].isdigit()


def _scenario_file(tmp_path: Path) -> Path:
    from paichan.agents.scenario import small_network

    sc = small_network(orders=4).model_copy(update={"origin": datetime(2026, 3, 2)})  # a Monday
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(sc.model_dump(mode="json", exclude_none=True)))
    return path


def test_check_bad_input_is_one_line_exit_2_and_infeasible_is_exit_1(tmp_path: Path) -> None:
    problem = {"resources": [{"id": "M"}], "orders": [{"id": "O", "operations": [
        {"id": "a", "modes": [{"resource": "M", "duration": 5}]}]}]}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(problem))
    empty, wrong, broken = tmp_path / "empty.json", tmp_path / "wrong.json", tmp_path / "broken.json"
    empty.write_text("")
    wrong.write_text(json.dumps({"operations": [{"operation": "a", "order": "O", "machine": "M"}]}))
    broken.write_text('{"operations": [\n')
    cases = {tmp_path / "missing.json": "cannot read", empty: "empty file", broken: "line 2: not JSON",
             wrong: "operations.0.resource: Field required"}
    for sched, words in cases.items():
        r = run("check", str(p), str(sched))
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (sched, r.stderr)
        assert r.stderr.startswith(f"error: {sched}") and words in r.stderr, r.stderr
    r = run("check", str(empty), str(wrong))
    assert r.returncode == 2 and r.stderr.startswith(f"error: {empty}: empty file"), r.stderr
    r = run("check", str(wrong), str(wrong))  # a schedule given as the problem
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "resources: Field required" in r.stderr, r.stderr
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"operations": [{"operation": "a", "order": "O", "resource": "M", "mode": 0,
                                              "start": 0, "end": 5}]}))
    assert run("check", str(p), str(ok)).returncode == 0
    ok.write_text(json.dumps({"operations": [{"operation": "a", "order": "O", "resource": "M", "mode": 0,
                                              "start": 0, "end": 4}]}))
    r = run("check", str(p), str(ok))
    assert r.returncode == 1 and "[duration]" in r.stdout and "1 violation(s)" in r.stdout, r.stdout


def test_run_schedule_checks_against_its_scenario_and_explain_refuses_a_non_journal(tmp_path: Path) -> None:
    """`paichan run --centralised` writes the run files; check reads its schedule.json with the scenario YAML."""
    sc = _scenario_file(tmp_path)
    out = tmp_path / "out"
    r = run("run", str(sc), "--centralised", "--time-limit", "2", "--output", str(out))
    assert r.returncode == 0, r.stderr
    sched = out / "schedule.json"
    assert {"origin", "operations"} == set(json.loads(sched.read_text()))
    r = run("check", str(sc), str(sched))
    assert r.returncode == 0 and r.stdout.strip() == "feasible", (r.stdout, r.stderr)
    data = json.loads(sched.read_text())
    data["operations"][1]["start"] = data["operations"][0]["start"]
    data["operations"][1]["machine"] = data["operations"][0]["machine"]
    data["operations"][1]["line"] = data["operations"][0]["line"]
    data["operations"][1]["plant"] = data["operations"][0]["plant"]
    (tmp_path / "moved.json").write_text(json.dumps(data))
    r = run("check", str(sc), str(tmp_path / "moved.json"))
    assert r.returncode == 1 and "violation(s)" in r.stdout, (r.stdout, r.stderr)
    other = tmp_path / "p.json"
    other.write_text(json.dumps({"name": "other", "resources": [{"id": "M"}], "orders": []}))
    r = run("check", str(other), str(sched))
    assert r.returncode == 2 and "none of its" in r.stderr, r.stderr
    for target, words in ((out, "no messages"), (out / "kpis.json", "not JSON")):
        r = run("explain", str(target))
        assert r.returncode == 2 and words in r.stderr and r.stdout == "", (target, r.stdout, r.stderr)


def test_explain_shows_weekday_and_clock_time_from_the_run_origin(tmp_path: Path) -> None:
    from paichan.agents.messages import NewOrder, OrderSpec, Step
    from paichan.bus.envelope import make

    spec = OrderSpec(id="O1", product="box", quantity=1, due=600, plant="P1",
                     steps=[Step(name="cut", machine_type="cut", minutes_per_unit=1)])
    (tmp_path / "negotiations.jsonl").write_text(make(NewOrder(order=spec), "erp", "P1", "o").model_dump_json() + "\n")
    (tmp_path / "schedule.json").write_text(json.dumps({"origin": "2026-03-02T00:00:00", "operations": []}))
    r = run("explain", str(tmp_path))
    assert r.returncode == 0 and "600 (Mon 10:00)" in r.stdout, r.stdout
    r = run("explain", str(tmp_path), "--order", "O1")
    assert r.returncode == 0 and "due 600 (Mon 10:00)" in r.stdout, r.stdout


def test_serve_refuses_data_it_cannot_plan_in_one_message(tmp_path: Path) -> None:
    problem = demo_plant(orders=4)
    problem.materials[0].stock = 0
    problem.materials[0].receipts = []
    path = tmp_path / "problem.json"
    path.write_text(problem.model_dump_json())
    r = run("serve", str(path), "--workdir", str(tmp_path / "svc"), "--port", "0", "--time-limit", "1")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and f"{path}:" in r.stderr and "materials[0]" in r.stderr

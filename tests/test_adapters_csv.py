"""The CSV/JSON format: every table, bad rows rejected one by one (never half an order), units, quantities
as strings, time zones, unknown machines, duplicate ids, and the round trip CSV -> solve -> B2MML -> re-import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROOT
from lxml import etree

from paichan.adapters import ImportOptions, import_files, schedule_json, write_b2mml
from paichan.adapters.b2mml import SCHEMA_DIR
from paichan.adapters.values import convert_quantity, parse_duration, parse_quantity
from paichan.checker import check
from paichan.domain import Problem, ResourceKind
from paichan.solver import SolveParams, solve

PLANT = ROOT / "tests" / "fixtures" / "adapters" / "plant"
PLANT_JSON = ROOT / "tests" / "fixtures" / "adapters" / "plant.json"
TABLES = ["resources", "calendars", "setups", "routings", "orders", "materials", "stock", "receipts"]
PARIS = ImportOptions(timezone="Europe/Paris")


def plant_files(*skip: str) -> list[Path]:
    return [PLANT / f"{t}.csv" for t in TABLES if t not in skip]


def reasons(result: object) -> str:
    return "\n".join(str(r) for r in result.report.rejected)  # type: ignore[attr-defined]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_plant_tables_import_into_every_part_of_the_problem() -> None:
    result = import_files(plant_files(), PARIS, fmt="csv")
    p = result.problem
    assert result.report.rejected == []
    assert p.origin == datetime(2026, 11, 22, 23, tzinfo=UTC)  # midnight in Paris of the first order date
    res = {r.id: r for r in p.resources}
    assert [(w.start, w.end) for w in res["CUT1"].calendar.shifts] == [(360, 1320)]  # 06:00-22:00 Paris
    assert res["CUT1"].calendar.period == 1440
    [down] = res["CUT2"].calendar.downtimes
    assert (down.start, down.end, down.kind.value, down.reason) == (1920, 2160, "maintenance", "lens service")
    assert res["CUT1"].calendar.downtimes == []
    paint = res["PAINT1"]
    assert (paint.initial_family, paint.default_setup) == ("red", 15)
    assert [(s.from_family, s.to_family, s.time) for s in paint.setups] == [("red", "blue", 30), ("blue", "red", 45)]
    assert (res["OPS"].kind, res["OPS"].capacity) == (ResourceKind.POOL, 2)
    orders = {o.id: o for o in p.orders}
    so1 = orders["SO-1"]
    assert (so1.product, so1.quantity, so1.release, so1.due, so1.priority) == ("BRACKET", 4, 360, 1080, 2)
    assert orders["SO-3"].deadline == 2880 and orders["SO-3"].due is None
    cut, paint_op = so1.operations
    assert (cut.id, cut.name) == ("SO-1/cut", "Cut")
    assert [(m.resource, m.duration, [(s.resource, s.amount) for s in m.secondary]) for m in cut.modes] == [
        ("CUT1", 90, [("OPS", 1)]), ("CUT2", 75, [("OPS", 1)])]  # alternative machines, 90 min and 1.25h
    assert [(m.resource, m.duration) for m in orders["SO-2"].operations[0].modes] == [("CUT2", 60)]  # 3600 s
    assert paint_op.family == "red" and paint_op.predecessors[0].min_lag == 10  # type: ignore[index]
    assert [(u.material, u.quantity) for u in cut.materials] == [("STEEL", 10.0)]  # 2.5 kg per piece x 4
    mats = {m.id: m for m in p.materials}
    assert mats["STEEL"].stock == pytest.approx(25.0)  # 20 kg + 5000 g; 8 kg in quarantine not counted
    assert [(r.time, r.quantity, r.source) for r in mats["PAINT"].receipts] == [(720, 1.0, "PO-2")]  # 1000 g
    assert "8 kg of STEEL not counted: status 'Quarantine' is blocked" in "\n".join(map(str, result.report.warnings))
    # CSV orders take their routing from routings.csv by design: that is not 'missing' data
    assert result.report.missing == []


def test_json_twin_gives_the_same_problem() -> None:
    csv_problem = import_files(plant_files(), PARIS, fmt="csv").problem
    json_result = import_files([PLANT_JSON], PARIS, fmt="csv")
    assert json_result.report.rejected == []
    assert json_result.problem == csv_problem


def test_bad_rows_are_rejected_one_by_one_and_the_good_ones_imported(tmp_path: Path) -> None:
    orders = write(tmp_path, "orders.csv", "\n".join([
        "order,product,quantity,release,due,priority",
        "OK-1,BRACKET,1,2026-11-23T07:00:00+01:00,,1",
        "BAD-DATE,BRACKET,1,tomorrow morning,,1",
        "BAD-QTY,BRACKET,\"1,5\",2026-11-23T07:00:00+01:00,,1",
        "NO-ROUTING,WIDGET,1,2026-11-23T07:00:00+01:00,,1",
        "OK-1,PANEL,1,2026-11-23T07:00:00+01:00,,1",
        "BAD-PRIO,PANEL,1,2026-11-23T07:00:00+01:00,,high",
        ",PANEL,1,2026-11-23T07:00:00+01:00,,1",
        "EXTRA,PANEL,1,2026-11-23T07:00:00+01:00,,1,surplus",
        "OK-2,PANEL,2,2026-11-23T07:00:00+01:00,2026-11-24T07:00:00+01:00,3",
    ]) + "\n")
    result = import_files([orders, *plant_files("orders")], PARIS, fmt="csv")
    assert [o.id for o in result.problem.orders] == ["OK-1", "OK-2"]
    got = {(r.where, r.record): r.message for r in result.report.rejected}
    assert all(r.file == "orders.csv" for r in result.report.rejected)
    assert got[("line 3", "order BAD-DATE")] == ("release: 'tomorrow morning' is not an ISO-8601 date-time"
                                                 " (example: 2019-04-24T15:00:00Z)")
    assert "quantity: quantity '1,5' has a comma" in got[("line 4", "order BAD-QTY")]
    assert got[("line 5", "order NO-ROUTING")] == "no operations: no routing for product 'WIDGET' in the routing master"
    assert got[("line 6", "order OK-1")] == "duplicate order id (first at orders.csv line 2)"
    assert got[("line 7", "order BAD-PRIO")] == "priority: 'high' is not a number"
    assert got[("line 8", "orders")] == "required field(s) empty: order"
    assert got[("line 9", "orders")] == "more fields than the header has columns: 'surplus'"
    assert len(result.report.rejected) == 7  # every bad row, and nothing else
    rejects = result.report.rejects_csv().splitlines()
    assert rejects[0] == "file,where,record,reason" and len(rejects) == 8


def test_an_order_with_one_bad_operation_is_rejected_whole(tmp_path: Path) -> None:
    routings = (PLANT / "routings.csv").read_text().replace("PANEL,paint,20,Paint,PAINT1,40,min",
                                                            "PANEL,paint,20,Paint,PAINT1,40,fortnights")
    path = write(tmp_path, "routings.csv", routings)
    result = import_files([path, *plant_files("routings")], PARIS, fmt="csv")
    assert [o.id for o in result.problem.orders] == ["SO-1", "SO-3"]  # the BRACKET orders
    assert not any(op.id.startswith("SO-2/") for _, op in result.problem.operations())  # not even its good 'cut'
    text = reasons(result)
    assert ("routings.csv line 6: routing row PANEL/paint: duration: unknown duration unit 'fortnights'") in text
    assert "orders.csv line 3: order SO-2: operation paint: its routing master row routings.csv line 6 was rejected" \
        in text


def test_domain_findings_reject_the_order_whole_naming_the_field(tmp_path: Path) -> None:
    routings = (PLANT / "routings.csv").read_text().replace("PANEL,cut,10,Cut,CUT2,3600,s",
                                                            "PANEL,cut,10,Cut,CUT2,20,h")
    path = write(tmp_path, "routings.csv", routings)
    result = import_files([path, *plant_files("routings")], PARIS, fmt="csv")
    assert [o.id for o in result.problem.orders] == ["SO-1", "SO-3"]
    [rej] = result.report.rejected
    assert (rej.file, rej.where, rej.record) == ("orders.csv", "line 3", "order SO-2")
    assert rej.message.startswith("operations[0](id=SO-2/cut).modes[0]: duration 1200 fits in no working window of"
                                  " 'CUT2' and the operation may not span breaks")


@pytest.mark.parametrize(("text", "unit", "minutes"), [
    ("PT1H30M", "", 90), ("90 min", "", 90), ("1.5h", "", 90), ("5400", "s", 90), ("5400 s", "", 90),
    ("01:30", "", 90), ("1.5", "HUR", 90), ("90", "MIN", 90), ("90", "", 90), ("P1DT2H", "", 1560),
    ("PT45S", "", 0.75), ("1", "d", 1440),
])
def test_duration_units_convert_to_minutes(text: str, unit: str, minutes: float) -> None:
    assert parse_duration(text, unit or None) == pytest.approx(minutes)


@pytest.mark.parametrize(("text", "unit", "reason"), [
    ("2 fortnights", "", "unknown duration unit 'fortnights'"),
    ("10", "m", "ambiguous duration unit 'm' (minutes or months?)"),
    ("P1M", "", "uses years or months, which have no fixed length"),
    ("-PT5M", "", "negative duration"),
    ("90 min", "h", "carries unit 'min' but the unit field says 'h'"),
    ("soon", "", "is not a duration"),
    ("PT", "", "is not an ISO-8601 duration"),
])
def test_bad_durations_are_refused_with_the_reason(text: str, unit: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        parse_duration(text, unit or None)


def test_durations_that_are_not_whole_minutes_round_up_with_a_warning(tmp_path: Path) -> None:
    routings = write(tmp_path, "routings.csv", "product,segment,machine,duration,duration_unit\nP,op,M1,90,s\n")
    orders = write(tmp_path, "orders.csv", "order,product\nO1,P\n")
    result = import_files([orders, routings], fmt="csv")
    assert result.problem.orders[0].operations[0].modes[0].duration == 2
    assert "duration 1.5 min is not a whole number of minutes: rounded up to 2" in "\n".join(
        map(str, result.report.warnings))
    seconds = import_files([orders, routings], ImportOptions(time_unit="second"), fmt="csv")
    assert seconds.problem.orders[0].operations[0].modes[0].duration == 90 and seconds.problem.time_unit == "second"


def test_quantities_as_strings_and_units(tmp_path: Path) -> None:
    assert parse_quantity(" 12.5 ") == (12.5, "")
    assert parse_quantity("5000 g") == (5000.0, "g")
    assert parse_quantity("41.9", "double") == (41.9, "")
    for bad, reason in [("1,5", "has a comma"), ("abc", "is not a number"), ("-3", "negative quantity"),
                        ("true", "has DataType boolean")]:
        with pytest.raises(ValueError, match=reason):
            parse_quantity(bad, "boolean" if bad == "true" else None)
    assert convert_quantity(5000, "g", "kg") == 5 and convert_quantity(2, "T", "KG") == 2000
    with pytest.raises(ValueError, match="cannot convert l \\(volume\\) to kg \\(mass\\)"):
        convert_quantity(3, "l", "kg")
    stock = write(tmp_path, "stock.csv", "\n".join([
        "material,quantity,unit,lot,status",
        "STEEL,5000 g,,A,",
        "STEEL,2 kg,g,B,",
        "STEEL,3 l,,C,",
        "STEEL,twelve,kg,D,",
        "STEEL,1,kg,E,on the truck",
        "STEEL,4,kg,F,In Transit",
    ]) + "\n")
    materials = write(tmp_path, "materials.csv", "material,unit\nSTEEL,kg\n")
    result = import_files([stock, materials], fmt="csv")
    [steel] = result.problem.materials
    assert steel.stock == pytest.approx(5.0)
    got = {r.record: r.message for r in result.report.rejected}
    assert got["stock B"] == "quantity: '2 kg' carries unit 'kg' but the unit column says 'g'"
    assert got["stock C"] == "cannot convert l (volume) to kg (mass)"
    assert got["stock D"] == "quantity: 'twelve' is not a number"
    assert got["stock E"].startswith("unknown status 'on the truck': say what it means with --lot-status")
    assert got["stock F"] == "status 'In Transit' means expected, but no available date is given"
    fixed = import_files([stock, materials], ImportOptions(lot_status={"on the truck": "blocked"}), fmt="csv")
    assert "stock E" not in {r.record for r in fixed.report.rejected}


def test_time_zones_are_normalised_to_utc_relative_to_the_origin(tmp_path: Path) -> None:
    routings = write(tmp_path, "routings.csv", "product,segment,machine,duration\nP,op,M1,10\n")
    orders = write(tmp_path, "orders.csv", "\n".join([
        "order,product,release,due",
        "A,P,2026-11-23T08:00:00+01:00,2026-11-23T10:00:00Z",
        "B,P,2026-11-23T08:00:00,2026-11-23T12:00:00-05:00",
        "C,P,90,",
    ]) + "\n")
    utc = import_files([orders, routings], fmt="csv")
    o = {x.id: x for x in utc.problem.orders}
    assert utc.problem.origin == datetime(2026, 11, 23, tzinfo=UTC)
    assert (o["A"].release, o["A"].due) == (7 * 60, 10 * 60)  # 08:00+01:00 = 07:00Z
    assert (o["B"].release, o["B"].due) == (8 * 60, 17 * 60)  # naive read as UTC; 12:00-05:00 = 17:00Z
    assert o["C"].release == 90  # a plain integer is time units from the origin
    assert "1 date-time(s) without UTC offset read as UTC" in "\n".join(map(str, utc.report.warnings))
    ny = import_files([orders, routings], ImportOptions(timezone="America/New_York"), fmt="csv")
    assert ny.problem.origin == datetime(2026, 11, 23, 5, tzinfo=UTC)  # midnight in New York (EST)
    assert {x.id: x.release for x in ny.problem.orders}["B"] == 8 * 60  # 08:00 New York = 13:00Z
    fixed = import_files([orders, routings], ImportOptions(origin=datetime(2026, 11, 23, 6, tzinfo=UTC)), fmt="csv")
    assert {x.id: x.release for x in fixed.problem.orders}["A"] == 60


def test_unknown_machines_and_duplicate_ids_are_rejected_deliberately(tmp_path: Path) -> None:
    resources = write(tmp_path, "resources.csv", "resource,kind,capacity\nM1,machine,\nM2,machine,\nM1,pool,3\n"
                                                 "P1,pool,2\nP1X,robot,1\n")
    routings = write(tmp_path, "routings.csv", "\n".join([
        "product,segment,seq,machine,duration,secondary",
        "A,op1,1,M1,10,P1:1",
        "A,op2,2,M2,10,",
        "B,op1,1,M1,10,",
        "B,op1,1,M7,12,",
        "C,op1,1,M1,10,",
        "C,op1,1,M1,11,",
        "D,op1,1,M2,10,P9:1",
    ]) + "\n")
    orders = write(tmp_path, "orders.csv", "order,product\nOA,A\nOB,B\nOC,C\nOD,D\n")
    stock = write(tmp_path, "stock.csv", "material,quantity,unit,lot\nX,1,kg,L1\nX,2,kg,L1\n")
    result = import_files([resources, routings, orders, stock], fmt="csv")
    assert [o.id for o in result.problem.orders] == ["OA"]
    assert [r.id for r in result.problem.resources] == ["M1", "M2", "P1"]
    got = [(r.file, r.where, r.record, r.message) for r in result.report.rejected]
    assert ("resources.csv", "line 4", "resource M1", "duplicate resource id (first at resources.csv line 2)") in got
    assert ("resources.csv", "line 6", "resource P1X", "kind: 'robot' is neither machine nor pool") in got
    assert ("routings.csv", "line 5", "routing row B/op1", "unknown machine 'M7' (not in the resources file)") in got
    assert ("routings.csv", "line 7", "routing row C/op1", "duplicate routing row for product 'C', segment 'op1',"
            " machine 'M1' (first at routings.csv line 6)") in got
    assert ("routings.csv", "line 8", "routing row D/op1", "unknown pool 'P9' (not in the resources file)") in got
    assert ("stock.csv", "line 3", "stock L1", "duplicate lot/sublot id in the same file (first at stock.csv line 2)"
            ) in got
    for o in ("OB", "OC", "OD"):
        assert any(r.record == f"order {o}" and "was rejected" in r.message for r in result.report.rejected)
    assert result.problem.materials[0].stock == 1


def test_calendars_night_shift_weekly_pattern_and_bad_rows(tmp_path: Path) -> None:
    calendars = write(tmp_path, "calendars.csv", "\n".join([
        "calendar,type,period,start,end,kind,reason,resource",
        "night,shift,day,22:00,06:00,,,",
        "week,shift,week,Mon 06:00,Fri 22:00,,,",
        "bad,shift,day,6 o'clock,14:00,,,",
        "week,holiday,,2026-11-26T00:00:00Z,2026-11-27T00:00:00Z,,Thanksgiving,",
        ",downtime,,2026-11-26T00:00:00Z,2026-11-27T00:00:00Z,,no target,",
        ",downtime,,2026-11-20T00:00:00Z,2026-11-21T00:00:00Z,,,M1",
    ]) + "\n")
    resources = write(tmp_path, "resources.csv", "resource,calendar\nM1,night\nM2,week\nM3,bad\n")
    routings = write(tmp_path, "routings.csv", "product,segment,machine,duration\nP,op,M1,10\n")
    # origin Monday 2026-11-23 06:00 UTC: the patterns are re-based on it
    opts = ImportOptions(origin=datetime(2026, 11, 23, 6, tzinfo=UTC))
    result = import_files([calendars, resources, routings], opts, fmt="csv")
    res = {r.id: r for r in result.problem.resources}
    night = sorted((w.start, w.end) for w in res["M1"].calendar.shifts)
    assert night == [(960, 1440)]  # 22:00-06:00 seen from 06:00 is 16 h to 24 h into each day
    assert sorted((w.start, w.end) for w in res["M2"].calendar.shifts) == [(0, 4 * 1440 + 960)]  # Mon 06 - Fri 22
    assert "M3" not in res
    got = {r.record: r.message for r in result.report.rejected}
    assert got["calendar bad"] == "start: '6 o'clock' is not a clock time (06:00, or Mon 06:00 for weekly calendars)"
    assert got["resource M3"] == "unknown calendar 'bad'"
    assert got["downtime"] == "a downtime row names a calendar or a resource"
    [holiday] = res["M2"].calendar.downtimes
    assert (holiday.start, holiday.end, holiday.kind.value, holiday.reason) == (3960, 5400, "holiday", "Thanksgiving")
    assert "ends before the planning origin: not needed" in "\n".join(map(str, result.report.warnings))


def test_unknown_table_and_malformed_json_are_file_level_rejects(tmp_path: Path) -> None:
    odd = write(tmp_path, "odd.csv", "colour,size\nred,3\n")
    broken = write(tmp_path, "broken.json", '{"orders": [ {"order": "A"}, ]}')
    wrong = write(tmp_path, "wrong.json", '{"orders": [ "A" ], "jobs": []}')
    result = import_files([odd, broken, wrong], fmt="csv")
    got = {(r.file, r.where): r.message for r in result.report.rejected}
    assert got[("odd.csv", "line 1")].startswith("cannot tell what this table holds from its header colour, size")
    assert got[("broken.json", "line 1")].startswith("not valid JSON")
    assert got[("wrong.json", "/jobs")].startswith("'jobs' is not a table")
    assert got[("wrong.json", "/orders/0")] == "expected an object, got str"
    mat = ROOT / "tests" / "fixtures" / "standards" / "courbon-v0401" / "MAT-20121210170256-CRBN0001.xml"
    xml = import_files([mat], fmt="csv")
    assert xml.report.rejected[0].message == "this is XML: read B2MML with 'paichan import b2mml'"


def test_round_trip_csv_solve_b2mml_reimport(tmp_path: Path) -> None:
    """CSV -> solve -> B2MML V0600 and V0700 (XSD-valid) -> re-import with the plant's master files -> same orders,
    operations and assignments (what is compared is listed in test_adapters_b2mml._round_trip)."""
    from test_adapters_b2mml import _round_trip

    first = import_files(plant_files(), PARIS, fmt="csv")
    result = solve(first.problem, SolveParams(time_limit=2))
    assert result.schedule is not None and check(first.problem, result.schedule).ok
    master = plant_files("orders", "routings")  # resources (pools!), calendars, setups, materials, stock, receipts
    _round_trip(first.problem, result.schedule, tmp_path, master)
    for version, root in (("0600", "v0600/B2MML-V0600-ProductionSchedule.xsd"),
                          ("0700", "v0700/B2MML-OperationsSchedule.xsd")):
        schema = etree.XMLSchema(etree.parse(str(SCHEMA_DIR / root)))
        assert schema.validate(etree.fromstring(write_b2mml(first.problem, result.schedule, version)))  # type: ignore
    dispatch = schedule_json(first.problem, result.schedule)
    assert dispatch["origin"] == "2026-11-22T23:00:00Z" and len(dispatch["operations"]) == 6
    assert {d["order"] for d in dispatch["orders"]} == {"SO-1", "SO-2", "SO-3"}


def test_cli_import_csv(tmp_path: Path) -> None:
    out, rejects = tmp_path / "problem.json", tmp_path / "rejects.csv"
    r = subprocess.run([sys.executable, "-m", "paichan.service.cli", "import", "csv", *map(str, plant_files()),
                        "--timezone", "Europe/Paris", "--output", str(out), "--rejects", str(rejects)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    p = Problem.model_validate_json(out.read_text())
    assert len(p.orders) == 3 and p.name == "problem"
    bad = write(tmp_path, "orders.csv", "order,product,release\nX,BRACKET,someday\n")
    r = subprocess.run([sys.executable, "-m", "paichan.service.cli", "import", "csv", str(bad),
                        *map(str, plant_files("orders")), "--output", str(out), "--rejects", str(rejects)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "orders.csv,line 2,order X,release: 'someday' is not an ISO-8601 date-time" in rejects.read_text()
    r = subprocess.run([sys.executable, "-m", "paichan.service.cli", "import", "csv", str(bad), "--output", str(out),
                        "--lot-status", "nonsense"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--lot-status 'nonsense'" in r.stderr

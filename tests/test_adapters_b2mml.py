"""B2MML adapters on real messages: Courbon V0401 (an MES in production), the COCOP V0600 test vectors,
hand-written edge cases, and round trips import -> solve -> export (V0600 and V0700) -> XSD -> re-import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROOT
from lxml import etree

from paichan.adapters import ExportError, ImportOptions, import_files, write_b2mml
from paichan.adapters.b2mml import SCHEMA_DIR, read_b2mml
from paichan.adapters.report import ImportReport
from paichan.checker import check
from paichan.domain import Problem, Schedule
from paichan.solver import SolveParams, solve

FIX = ROOT / "tests" / "fixtures"
COURBON = FIX / "standards" / "courbon-v0401"
COCOP = FIX / "standards" / "cocop-b2mml-v0600-spec" / "spec"
ADP = FIX / "adapters"
PRO = COURBON / "PRO-20121210181416-27942.xml"
INV = COURBON / "INV-20121210175555-0001L0001_01.xml"
LOT = COURBON / "LOT-20121210170718-0001L0001.xml"
MAT = COURBON / "MAT-20121210170256-CRBN0001.xml"
PES = COURBON / "PES-20121229115825-53107.xml"
COURBON_MASTER = [ADP / "courbon_routing.csv", ADP / "courbon_receipts.csv"]
ROOTS = {
    "v0401": ["B2MML-V0401-ProductionSchedule.xsd", "B2MML-V0401-Material.xsd"],
    "v0600": ["B2MML-V0600-ProductionSchedule.xsd", "B2MML-V0600-ProductionPerformance.xsd",
              "B2MML-V0600-Material.xsd"],
    "v0700": ["B2MML-OperationsSchedule.xsd", "B2MML-Material.xsd"],
}
XS = "{http://www.w3.org/2001/XMLSchema}"


def xsd(version: str, root: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / version / root)))


def xsd_errors(data: bytes, version: str) -> list[str]:
    """Validate with lxml against the packaged schema of the message (independently of the adapter's code)."""
    root = {"0600": ("v0600", "B2MML-V0600-ProductionSchedule.xsd"),
            "0700": ("v0700", "B2MML-OperationsSchedule.xsd")}[version]
    schema = xsd(*root)
    ok = schema.validate(etree.fromstring(data))
    return [] if ok else [str(e) for e in schema.error_log]


def messages(report: ImportReport, kind: str = "rejected") -> str:
    return "\n".join(str(i) for i in getattr(report, kind))


# ---- vendored artefacts -------------------------------------------------------------------------------------------

def test_packaged_schemas_are_exactly_the_include_closure_and_compile() -> None:
    for version, roots in ROOTS.items():
        folder = SCHEMA_DIR / version
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            assert (folder / name).is_file(), f"{version}: {name} is included but not packaged"
            for el in etree.parse(str(folder / name)).getroot().iter(f"{XS}include", f"{XS}import"):
                if el.get("schemaLocation"):
                    todo.append(el.get("schemaLocation"))
        assert seen == {p.name for p in folder.glob("*.xsd")}, f"{version}: not exactly the closure"
        for root in roots:
            xsd(version, root)
    assert "courtesy of MESA International" in (SCHEMA_DIR / "LICENSE").read_text()
    pkg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["paichan"]
    assert "adapters/schemas/**/*" in pkg
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("lxml") for d in deps) and any(d.startswith("asyncua") for d in deps)


def test_real_fixtures_are_unmodified_copies_with_their_licences() -> None:
    for f in [PRO, INV, LOT, MAT, PES]:
        assert f.read_bytes().startswith(b"\xef\xbb\xbf"), f"{f.name} lost its UTF-8 BOM"
    assert (COURBON / "LICENSE").is_file()
    assert (COCOP.parent / "LICENSE.txt").is_file() and (COCOP.parent / "README.upstream.md").is_file()
    assert len(list(COCOP.glob("*.xml"))) == 12
    shared = Path("/work/shared/standards")
    if shared.is_dir():  # only on the machine the fixtures were copied on
        for f in [PRO, INV, LOT, MAT, PES]:
            assert f.read_bytes() == (shared / "b2mml/examples/courbon-v0401" / f.name).read_bytes()
        for f in COCOP.glob("*.xml"):
            assert f.read_bytes() == (shared / "cocop-b2mml-v0600-spec/spec" / f.name).read_bytes()


# ---- Courbon V0401 ----------------------------------------------------------------------------------------------

def test_courbon_order_imports_with_durations_and_machines_from_the_routing_master() -> None:
    result = import_files([PRO, INV, LOT, MAT, *COURBON_MASTER])
    p, report = result.problem, result.report
    assert report.rejected == []
    [order] = p.orders
    assert (order.id, order.product, order.quantity) == ("258456", "SO1215", 1.0)
    assert [op.id for op in order.operations] == ["258456/Weighing", "258456/Contenair"]
    weighing, staging = order.operations
    assert [(m.resource, m.duration) for m in weighing.modes] == [("BOX3", 45), ("BOX1", 55)]  # 45 min, PT55M
    assert [(m.resource, m.duration) for m in staging.modes] == [("STAGING", 10)]
    assert [(u.material, u.quantity) for u in weighing.materials] == [("CRBN0001", 5), ("CRBN0002", 50),
                                                                      ("CRBN0001", 811)]
    # the message has no Duration and no EquipmentID: the report says so and where the values came from
    missing = {(m.record, m.field): m for m in report.missing}
    dur = missing[("order 258456, operation Weighing", "Duration on BOX3")]
    assert dur.value == "45 min" and dur.filled_from.startswith("courbon_routing.csv line 2")
    assert "SegmentRequirement/SegmentRequirement (line 26)" in dur.where
    assert missing[("order 258456, operation Contenair", "machine (EquipmentID)")].value == "STAGING"
    # CRBN0003 has no stock data: not constrained, and said so; the Contenair lot allocations are references
    assert "material CRBN0003: 1 consumption(s) not constrained" in messages(report, "warnings")
    assert "without MaterialUse read as a reference" in messages(report, "warnings")
    assert report.ignored["PRO-20121210181416-27942.xml"]["Parameter"] == 1  # Center=3: read, not used
    assert p.origin == datetime(2009, 12, 10, tzinfo=UTC)  # no order dates: midnight of the message's creation
    zero = import_files([PRO, INV, LOT, MAT, *COURBON_MASTER], ImportOptions(untracked_materials="zero"))
    assert {m.id: m.stock for m in zero.problem.materials}["CRBN0003"] == 0
    assert ("(problem): materials[2](id=CRBN0003): operations consume 100 but stock plus all receipts is only 0"
            " - the problem cannot be solved until this is fixed") in messages(zero.report, "warnings")


def test_courbon_order_without_master_data_is_rejected_and_the_report_lists_what_is_missing() -> None:
    result = import_files([PRO])  # the import itself succeeds
    assert result.problem.orders == []
    [rej] = result.report.rejected
    assert rej.record == "order 258456"
    assert "/SyncProductionSchedule/DataArea/ProductionSchedule/ProductionRequest (line 12)" in rej.where
    assert ("operation Weighing: no machine (EquipmentRequirement/EquipmentID) and no routing master row for"
            " product 'SO1215', segment 'Weighing'") in rej.message
    unfilled = {(m.record, m.field) for m in result.report.missing if not m.filled_from}
    assert unfilled == {("order 258456, operation Weighing", "machine (EquipmentID)"),
                        ("order 258456, operation Weighing", "Duration"),
                        ("order 258456, operation Contenair", "machine (EquipmentID)"),
                        ("order 258456, operation Contenair", "Duration")}


def test_courbon_stock_respects_lot_status_and_expiry() -> None:
    result = import_files([INV, LOT, MAT])
    [m] = result.problem.materials
    assert (m.id, m.name, m.unit, m.stock) == ("CRBN0001", "Product Courbon0001", "KG", 0)
    assert "24.91 KG of CRBN0001 not counted: status 'NotValid' is blocked" in messages(result.report, "warnings")
    assert "material 'CRBN0001' taken from MaterialInformation/ID" in messages(result.report, "warnings")
    freed = import_files([INV, LOT, MAT], ImportOptions(lot_status={"NotValid": "available"}))
    assert freed.problem.materials[0].stock == pytest.approx(24.91)
    # the LOT message says the lot expires 2013-12-08: planning from 2014 on, nothing is usable
    late = import_files([INV, LOT, MAT], ImportOptions(lot_status={"NotValid": "available"},
                                                       origin=datetime(2014, 1, 1, tzinfo=UTC)))
    assert late.problem.materials[0].stock == 0
    assert "not counted: expired 2013-12-08" in messages(late.report, "warnings")


def test_v0600_material_information_stock_receipts_and_statuses(tmp_path: Path) -> None:
    def lot(lid: str, status: str, qty: str, unit: str, prop: str = "") -> str:
        props = (f"<MaterialLotProperty><ID>{prop.split('=')[0]}</ID><Value><ValueString>{prop.split('=')[1]}"
                 "</ValueString><DataType>dateTime</DataType></Value></MaterialLotProperty>") if prop else ""
        return (f"<MaterialLot><ID>{lid}</ID><MaterialDefinitionID>RESIN</MaterialDefinitionID><Status>{status}"
                f"</Status>{props}<StorageLocation>WH1</StorageLocation><Quantity><QuantityString>{qty}"
                f"</QuantityString><DataType>decimal</DataType><UnitOfMeasure>{unit}</UnitOfMeasure></Quantity>"
                "</MaterialLot>")

    doc = (f'<SyncMaterialInformation releaseID="6.0" xmlns="{V6}"><ApplicationArea><CreationDateTime>'
           "2026-11-23T05:00:00Z</CreationDateTime></ApplicationArea><DataArea><Sync/><MaterialInformation>"
           "<MaterialDefinition><ID>RESIN</ID><Description>Epoxy resin</Description></MaterialDefinition>"
           + lot("R1", "Released", "10", "kg")
           + lot("R2", "InTransit", "500", "g", "AvailableDate=2026-11-24T06:00:00+01:00")
           + lot("R3", "Expected", "4", "kg")
           + lot("R4", "Quarantine", "7", "kg")
           + lot("R5", "Released", "9", "kg", "ExpiryDate=2026-11-01T00:00:00Z")
           + "</MaterialInformation></DataArea></SyncMaterialInformation>")
    path = write_text(tmp_path / "stock.xml", doc)
    assert xsd("v0600", "B2MML-V0600-Material.xsd").validate(etree.parse(str(path)))
    result = import_files([path], ImportOptions(origin=datetime(2026, 11, 23, tzinfo=UTC)))
    [resin] = result.problem.materials
    assert (resin.id, resin.name, resin.unit, resin.stock) == ("RESIN", "Epoxy resin", "kg", 10)
    assert [(r.time, r.quantity, r.source) for r in resin.receipts] == [(1740, 0.5, "lot R2")]  # 05:00Z next day
    [rej] = result.report.rejected
    assert (rej.record, rej.message) == ("stock R3", "status 'Expected' means expected, but no available date is given")
    warnings = messages(result.report, "warnings")
    assert "stock R4: 7 kg of RESIN not counted: status 'Quarantine' is blocked" in warnings
    assert "stock R5: 9 kg not counted: expired 2026-11-01T00:00:00+00:00" in warnings


def test_courbon_performance_report_missing_release_id_strict_rejects_lenient_accepts() -> None:
    strict = import_files([PES])
    [rej] = strict.report.rejected
    assert rej.record == "file" and "/SyncProductionPerformance (line 2)" in rej.where
    assert "The attribute 'releaseID' is required but missing" in rej.message and "--lenient" in rej.message
    assert strict.consumed == []
    lenient = import_files([PES, INV], ImportOptions(lenient=True))
    assert lenient.report.rejected == []
    assert "accepted in lenient mode despite schema: SyncProductionPerformance line 2" in messages(
        lenient.report, "warnings")
    [c] = lenient.consumed
    assert (c.material, c.quantity, c.unit, c.lot, c.sublot, c.response, c.segment) == (
        "CRBN0001", 0.41, "KG", "CRBN0001_LOT01", "430147330000056734", "53107", "Weighing")
    assert c.reported == datetime(2012, 11, 29, 10, 58, 25, 314955, tzinfo=UTC)  # 7 fraction digits, +01:00
    assert c.applied == "not deducted from stock: its lot/sublot is not in the stock read"


def test_consumption_is_deducted_from_an_older_stock_snapshot(tmp_path: Path) -> None:
    text = INV.read_text(encoding="utf-8-sig")
    text = (text.replace("2012-12-10T17:55:54.0Z", "2012-11-01T00:00:00Z")
            .replace("CRBN0001_LOT01_01", "430147330000056734").replace("NotValid", "Valid"))
    snapshot = tmp_path / "INV-older.xml"
    snapshot.write_text(text, encoding="utf-8")
    result = import_files([snapshot, PES], ImportOptions(lenient=True))
    assert result.problem.materials[0].stock == pytest.approx(24.91 - 0.41)
    assert result.consumed[0].applied.startswith("deducted 0.41 KG from CRBN0001_LOT01/430147330000056734")


# ---- COCOP V0600 test vectors -----------------------------------------------------------------------------------

NEGATIVE = {
    "Neg_ProcessProductionSchedule_InvalidCreationTime.xml": ("CreationDateTime", "'2019-04-24T14:10:2sdf5Z'"),
    "Neg_ProcessProductionSchedule_InvalidDate.xml": ("EarliestStartTime", "'dsf2019-04-24T15:00:00Z'"),
    "Neg_ProcessProductionSchedule_InvalidEqElemLevel.xml": ("EquipmentElementLevel", "'ProcessCedfll'"),
    "Neg_ProcessProductionSchedule_InvalidMatUse.xml": ("MaterialUse", "'Producedsdf'"),
    "Neg_ProcessProductionSchedule_InvalidQuantityDataType.xml": ("DataType", "'Textsdf'"),
    "Neg_ProcessProductionSchedule_EndBeforeStart.xml": (
        "SegmentRequirement line 42: EarliestStartTime 2019-04-24T15:30:01+00:00",
        "is after LatestEndTime 2019-04-24T15:30:00+00:00"),
    "Neg_ProcessProductionSchedule_InvalidQuantityValue.xml": (
        "Quantity line 50: QuantityString '41fs.9' is not a valid double",
        "Quantity line 59: QuantityString '0r3' is not a valid int"),
}


@pytest.mark.parametrize("lenient", [False, True], ids=["strict", "lenient"])
@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_every_cocop_negative_file_is_rejected_naming_element_and_reason(name: str, lenient: bool) -> None:
    path = COCOP / name
    schema_valid = xsd("v0600", "B2MML-V0600-ProductionSchedule.xsd").validate(etree.parse(str(path)))
    assert schema_valid == (name in ("Neg_ProcessProductionSchedule_EndBeforeStart.xml",
                                     "Neg_ProcessProductionSchedule_InvalidQuantityValue.xml"))
    result = import_files([path, ADP / "cocop_routing.csv"], ImportOptions(lenient=lenient))
    assert result.problem.orders == []
    element, reason = NEGATIVE[name]
    text = messages(result.report)
    assert element in text and reason in text, text
    if name.endswith("InvalidQuantityValue.xml"):
        assert "'faflse' is not a valid boolean" in text


def test_cocop_positive_file_imports_with_routing_master_and_rejects_the_empty_request() -> None:
    result = import_files([COCOP / "ProcessProductionSchedule.xml", ADP / "cocop_routing.csv"])
    [order] = result.problem.orders
    assert result.problem.origin == datetime(2019, 4, 24, tzinfo=UTC)
    assert (order.id, order.product, order.quantity) == ("my-identifier-1", "matte", 11.9)  # 41.9 t/h is a rate
    assert (order.release, order.deadline) == (15 * 60, 16 * 60)  # earliest start / latest end, UTC
    assert [(op.id, op.modes[0].resource, op.modes[0].duration) for op in order.operations] == [
        ("my-identifier-1/1", "fsf", 20), ("my-identifier-1/seg-2.1", "fsf", 15)]  # nested, unnamed segment
    [rej] = result.report.rejected
    assert rej.record == "order my-identifier-2"
    assert rej.message == "no operations and no product whose routing could supply them"
    soft = import_files([COCOP / "ProcessProductionSchedule.xml", ADP / "cocop_routing.csv"],
                        ImportOptions(latest_end="due"))
    assert (soft.problem.orders[0].due, soft.problem.orders[0].deadline) == (960, None)


def test_cocop_empty_schedule_and_empty_items() -> None:
    empty = import_files([COCOP / "ProcessProductionSchedule_EmptySched.xml"])
    assert empty.problem.orders == [] and empty.report.rejected == []
    items = import_files([COCOP / "ProcessProductionSchedule_EmptyItems.xml", ADP / "cocop_routing.csv"])
    assert items.problem.orders == []
    assert [r.message.split(";")[0] for r in items.report.rejected] == ["no ID"] * 3


def test_cocop_extension_element_rejected_in_strict_and_ignored_in_lenient_mode() -> None:
    path = COCOP / "ProcessProductionSchedule_SchedulingParams.xml"
    strict = import_files([path])
    assert "schema: SchedulingParameters line 45: Element 'SchedulingParameters': This element is not expected" in (
        messages(strict.report))
    lenient = import_files([path], ImportOptions(lenient=True))
    assert "(extension element ignored)" in messages(lenient.report, "warnings")
    [rej] = lenient.report.rejected  # still rejected, but only because the request has no ID
    assert rej.message == "no ID; no operations and no product whose routing could supply them"


def test_cocop_datetime_kinds_are_normalised_to_utc(tmp_path: Path) -> None:
    path = COCOP / "ProcessProductionSchedule_DateTimeKinds.xml"
    report = ImportReport()
    inp = read_b2mml(path, ImportOptions(), report)
    starts = [s.earliest for s in inp.orders[0].segments or []]
    assert starts == [datetime(2019, 4, 24, h, tzinfo=UTC) for h in (13, 14, 15, 22)]  # naive, Z, +02:00, -01:00
    assert "2 date-time(s) without UTC offset read as UTC" in messages(report, "warnings")
    inp2 = read_b2mml(path, ImportOptions(timezone="+02:00"), ImportReport())
    assert inp2.orders[0].segments[0].earliest == datetime(2019, 4, 24, 11, tzinfo=UTC)  # type: ignore[index]
    # end to end, with an ID added: planned times in minutes from midnight UTC
    named = tmp_path / "dtk.xml"
    named.write_text(path.read_text().replace("<ProductionRequest>", "<ProductionRequest><ID>dtk</ID>", 1))
    result = import_files([named, ADP / "cocop_routing.csv"])
    assert [(p.start, p.end) for p in result.planned] == [(780, 840), (840, 900), (900, 960), (1320, 1380)]
    assert (result.problem.orders[0].release, result.problem.orders[0].deadline) == (780, 1380)


# ---- hand-written edge cases: units, quantities, unknown machines, duplicates, time zones ---------------------------

V6 = "http://www.mesa.org/xml/B2MML-V0600"


def _param(pid: str, value: str, unit: str, dtype: str = "decimal") -> str:
    return (f"<ProductionParameter><Parameter><ID>{pid}</ID><Value><ValueString>{value}</ValueString>"
            f"<DataType>{dtype}</DataType><UnitOfMeasure>{unit}</UnitOfMeasure></Value></Parameter>"
            "</ProductionParameter>")


def _seg(sid: str, machine: str, duration: str = "", params: str = "", mats: str = "", pool: str = "") -> str:
    dur = f"<Duration>{duration}</Duration>" if duration else ""
    eq = f"<EquipmentRequirement><EquipmentID>{machine}</EquipmentID></EquipmentRequirement>"
    if pool:
        eq += (f"<EquipmentRequirement><EquipmentID>{pool}</EquipmentID><Quantity><QuantityString>1</QuantityString>"
               "<DataType>decimal</DataType></Quantity></EquipmentRequirement>")
    return (f"<SegmentRequirement><ID>{sid}</ID><ProcessSegmentID>{sid}</ProcessSegmentID>{dur}{params}{eq}{mats}"
            "</SegmentRequirement>")


def _mat(material: str, qty: str, unit: str, dtype: str = "decimal") -> str:
    return (f"<MaterialRequirement><MaterialDefinitionID>{material}</MaterialDefinitionID>"
            f"<MaterialUse>Consumed</MaterialUse><Quantity><QuantityString>{qty}</QuantityString>"
            f"<DataType>{dtype}</DataType><UnitOfMeasure>{unit}</UnitOfMeasure></Quantity></MaterialRequirement>")


def _req(rid: str, *segs: str, start: str = "", prio: str = "") -> str:
    st = f"<StartTime>{start}</StartTime>" if start else ""
    pr = f"<Priority>{prio}</Priority>" if prio else ""
    return f"<ProductionRequest><ID>{rid}</ID>{st}{pr}{''.join(segs)}</ProductionRequest>"


def _v0600(*requests: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ProcessProductionSchedule releaseID="6.0" xmlns="{V6}">'
            "<ApplicationArea><CreationDateTime>2026-11-23T05:00:00Z</CreationDateTime></ApplicationArea>"
            f"<DataArea><Process/><ProductionSchedule>{''.join(requests)}</ProductionSchedule></DataArea>"
            "</ProcessProductionSchedule>")


@pytest.fixture
def plant_master(tmp_path: Path) -> list[Path]:
    (tmp_path / "resources.csv").write_text("resource,kind,capacity\nM1,machine,\nM2,machine,\nOPS,pool,2\n")
    (tmp_path / "materials.csv").write_text("material,name,unit\nSTEEL,Steel,kg\n")
    (tmp_path / "stock.csv").write_text("material,quantity,unit,lot\nSTEEL,100,kg,L1\n")
    return [tmp_path / "resources.csv", tmp_path / "materials.csv", tmp_path / "stock.csv"]


def test_units_quantities_unknown_machines_duplicates_and_time_zones(tmp_path: Path,
                                                                     plant_master: list[Path]) -> None:
    doc = _v0600(
        _req("A", _seg("a1", "M1", "PT1H30M", pool="OPS")),
        _req("B", _seg("b1", "M2", params=_param("Duration", "5400", "s"))),
        _req("C", _seg("c1", "M1", params=_param("ProcessingTime", "1.5", "HUR"), mats=_mat("STEEL", "2500", "g"))),
        _req("D", _seg("d1", "M1", "PT10M"), _seg("d2", "M1", params=_param("Duration", "2", "fortnight"))),
        _req("E", _seg("e1", "M9", "PT10M")),
        _req("A", _seg("a1", "M2", "PT5M")),
        _req("F", _seg("f1", "M1", "PT10M", mats=_mat("STEEL", "12,5", "kg"))),
        _req("G", _seg("g1", "M2", "PT30M"), start="2026-11-23T08:00:00+02:00"),
        _req("H", _seg("h1", "M1", "PT90S")),
        _req("I", _seg("i1", "M1", "P1M")),
        _req("J", _seg("j1", "M2", "PT1H"), prio="3.7"),
        _req("K", _seg("k1", "M2", "PT1H", mats=_mat("STEEL", "3", "l"))),
    )
    path = tmp_path / "orders.xml"
    path.write_text(doc)
    assert xsd("v0600", "B2MML-V0600-ProductionSchedule.xsd").validate(etree.parse(str(path)))  # all semantic
    result = import_files([path, *plant_master])
    p, report = result.problem, result.report
    by_id = {o.id: o for o in p.orders}
    assert sorted(by_id) == ["A", "B", "C", "G", "H", "J"]
    mode = {o.id: o.operations[0].modes[0] for o in p.orders}
    assert (mode["A"].resource, mode["A"].duration, [s.resource for s in mode["A"].secondary]) == ("M1", 90, ["OPS"])
    assert (mode["B"].duration, mode["C"].duration) == (90, 90)  # 5400 s, 1.5 HUR
    assert by_id["C"].operations[0].materials[0].quantity == pytest.approx(2.5)  # 2500 g of a kg material
    assert by_id["G"].release == 360  # 08:00+02:00 = 06:00Z; origin = midnight UTC
    assert mode["H"].duration == 2 and "1.5 min is not a whole number of minutes: rounded up to 2" in messages(
        report, "warnings")
    assert by_id["J"].priority == 4
    rejected = {r.record: r for r in report.rejected}
    assert "unknown duration unit 'fortnight'" in rejected["order D"].message  # rejected whole: d1 was fine
    assert not any(op.id.startswith("D/") for _, op in p.operations())
    assert "unknown machine 'M9' (not in the resources file or the routing master)" in rejected["order E"].message
    dup = [r for r in report.rejected if r.record == "order A"]
    assert len(dup) == 1 and "duplicate order id (first at orders.xml" in dup[0].message
    assert "ProductionRequest[6] (line " in dup[0].where
    assert "QuantityString '12,5' is not a valid decimal" in rejected["order F"].message
    assert "uses years or months, which have no fixed length" in rejected["order I"].message
    assert "cannot convert l (volume) to kg (mass)" in rejected["order K"].message


def test_a_machine_named_without_duration_takes_the_master_row_for_that_machine(tmp_path: Path,
                                                                                plant_master: list[Path]) -> None:
    routing = write_text(tmp_path / "routing.csv", "product,segment,machine,duration,secondary\n,s,M1,25,OPS:1\n")
    path = write_text(tmp_path / "o.xml", _v0600(_req("X", _seg("s", "M1")), _req("Y", _seg("s", "M2"))))
    result = import_files([path, routing, *plant_master])
    [x] = result.problem.orders
    mode = x.operations[0].modes[0]
    assert (mode.resource, mode.duration, [s.resource for s in mode.secondary]) == ("M1", 25, ["OPS"])
    [rej] = result.report.rejected
    assert rej.record == "order Y" and rej.message == (
        "operation s: no Duration, and no routing master row for product '*', segment 's' gives one for M2")
    assert {(m.record, m.field, m.value) for m in result.report.missing} == {
        ("order X, operation s", "Duration on M1", "25 min"), ("order Y, operation s", "Duration on M2", "")}


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_v0700_operations_schedule_with_child_segments_pools_and_parameter_durations(tmp_path: Path,
                                                                                      plant_master: list[Path]) -> None:
    ns = "http://www.mesa.org/xml/B2MML"
    seg = ("<SegmentRequirement><ID>s1</ID><ProcessSegmentID>mix</ProcessSegmentID><OperationsDefinitionID>P1"
           "</OperationsDefinitionID><OperationsSegmentID>mix</OperationsSegmentID><SegmentParameter><ID>Duration"
           "</ID><Value><ValueString>0.5</ValueString><DataType>decimal</DataType><UnitOfMeasure>h</UnitOfMeasure>"
           "</Value></SegmentParameter><PersonnelRequirement><ID>p</ID><PersonnelClassID>OPS</PersonnelClassID>"
           "<Quantity><QuantityString>2</QuantityString><DataType>integer</DataType></Quantity>"
           "</PersonnelRequirement><EquipmentRequirement><ID>e</ID><EquipmentID>M1</EquipmentID>"
           "<EquipmentID>M2</EquipmentID></EquipmentRequirement>"
           "<SegmentRequirementChild><ID>s2</ID><ProcessSegmentID>fill</ProcessSegmentID><Duration>PT20M</Duration>"
           "<OperationsDefinitionID>P1</OperationsDefinitionID><OperationsSegmentID>fill</OperationsSegmentID>"
           "<EquipmentRequirement><ID>e</ID><EquipmentID>M2</EquipmentID></EquipmentRequirement>"
           "</SegmentRequirementChild></SegmentRequirement>")
    doc = (f'<SyncOperationsSchedule releaseID="7.0" xmlns="{ns}"><ApplicationArea><CreationDateTime>'
           "2026-11-23T05:00:00-05:00</CreationDateTime></ApplicationArea><DataArea><Sync/><OperationsSchedule>"
           "<ID>S</ID><OperationsType>Production</OperationsType><OperationsRequest><ID>W1</ID>"
           "<EndTime>2026-11-24T12:00:00+01:00</EndTime><Priority>5</Priority>"
           f"<OperationsDefinitionID>P1</OperationsDefinitionID>{seg}</OperationsRequest></OperationsSchedule>"
           "</DataArea></SyncOperationsSchedule>")
    path = tmp_path / "ops.xml"
    path.write_text(doc)
    assert xsd("v0700", "B2MML-OperationsSchedule.xsd").validate(etree.parse(str(path)))
    result = import_files([path, *plant_master])
    assert result.report.rejected == []
    [order] = result.problem.orders
    assert (order.product, order.priority, order.due) == ("P1", 5, 660)  # origin: midnight UTC of the EndTime day
    mix, fill = order.operations
    assert [(m.resource, m.duration) for m in mix.modes] == [("M1", 30), ("M2", 30)]  # alternatives
    assert [(s.resource, s.amount) for s in mix.modes[0].secondary] == [("OPS", 2)]  # personnel -> pool
    assert (fill.id, fill.name, fill.modes[0].duration) == ("W1/s2", "fill", 20)


def test_order_header_without_operations_takes_the_routing_of_its_product(tmp_path: Path) -> None:
    """An ERP that sends order headers only: the routing master supplies every operation, and the report says so."""
    (tmp_path / "routing.csv").write_text("product,segment,seq,machine,duration\nP1,weld,2,M2,PT1H\nP1,cut,1,M1,10\n")
    produced = ("<SegmentRequirement><MaterialRequirement><MaterialDefinitionID>P1</MaterialDefinitionID>"
                "<MaterialUse>Produced</MaterialUse><Quantity><QuantityString>3</QuantityString></Quantity>"
                "</MaterialRequirement></SegmentRequirement>")
    doc = _v0600("<ProductionRequest><ID>H1</ID><ProductProductionRuleID>P1</ProductProductionRuleID>"
                 "<StartTime>2026-11-23T06:00:00Z</StartTime></ProductionRequest>",
                 f"<ProductionRequest><ID>H2</ID>{produced}</ProductionRequest>",
                 "<ProductionRequest><ID>H3</ID></ProductionRequest>")
    path = tmp_path / "headers.xml"
    path.write_text(doc)
    assert xsd("v0600", "B2MML-V0600-ProductionSchedule.xsd").validate(etree.parse(str(path)))
    result = import_files([path, tmp_path / "routing.csv"])
    h1, h2 = result.problem.orders
    assert [(op.id, op.modes[0].resource, op.modes[0].duration) for op in h1.operations] == [
        ("H1/cut", "M1", 10), ("H1/weld", "M2", 60)]  # in seq order
    assert (h2.product, h2.quantity, len(h2.operations)) == ("P1", 3, 2)
    [m1, _] = [m for m in result.report.missing if m.field == "SegmentRequirement (operations)"]
    assert (m1.record, m1.value) == ("order H1", "cut, weld") and "routing.csv line 2" in m1.filled_from
    [rej] = result.report.rejected
    assert (rej.record, rej.message) == ("order H3", "no operations and no product whose routing could supply them")


# ---- round trips ---------------------------------------------------------------------------------------------------

def _solve(problem: Problem) -> Schedule:
    result = solve(problem, SolveParams(time_limit=2))
    assert result.schedule is not None, (result.status, result.infeasibility)
    assert check(problem, result.schedule).ok
    return result.schedule


def _round_trip(problem: Problem, schedule: Schedule, tmp_path: Path, master: list[Path]) -> None:
    """Export both versions, validate with lxml, read back; compare what B2MML carries.

    Compared: origin; orders (id, product, quantity, priority) in order; per order the operation ids and names in
    sequence and each operation's consumed materials; per operation the assignment (machine and processing time of
    the chosen mode, pools held) and the planned start and end. Not carried, so not compared: release, due and
    deadline (the message carries the planned window), the alternative modes not chosen, families and setups,
    lags, can_span_breaks, calendars, stock and receipts (those come from the master files read beside it).
    """
    chosen = schedule.by_operation()
    for version in ("0600", "0700"):
        data = write_b2mml(problem, schedule, version, created=datetime(2026, 1, 1, tzinfo=UTC))
        assert xsd_errors(data, version) == []
        path = tmp_path / f"schedule-{version}.xml"
        path.write_bytes(data)
        back = import_files([path, *master])
        assert back.report.rejected == [], messages(back.report)
        q = back.problem
        assert q.origin == problem.origin
        assert [(o.id, o.product, o.quantity, o.priority) for o in q.orders] == [
            (o.id, o.product, o.quantity, o.priority) for o in problem.orders]
        for o_back, o in zip(q.orders, problem.orders, strict=True):
            assert [(op.id, op.name) for op in o_back.operations] == [(op.id, op.name) for op in o.operations]
            for op_back, op in zip(o_back.operations, o.operations, strict=True):
                assert [(m.material, m.quantity) for m in op_back.materials] == [
                    (m.material, m.quantity) for m in op.materials]
                s = chosen[op.id]
                mode = op.modes[s.mode]
                [m_back] = op_back.modes
                assert (m_back.resource, m_back.duration) == (s.resource, mode.duration)
                assert sorted((u.resource, u.amount) for u in m_back.secondary) == sorted(
                    (u.resource, u.amount) for u in mode.secondary)
        planned = back.planned_schedule()
        assert planned is not None
        assert sorted((s.operation, s.order, s.resource, s.start, s.end) for s in planned.operations) == sorted(
            (s.operation, s.order, s.resource, s.start, s.end) for s in schedule.operations)


def test_round_trip_courbon(tmp_path: Path) -> None:
    stock = [INV, LOT, MAT, *COURBON_MASTER]
    first = import_files([PRO, *stock])
    schedule = _solve(first.problem)
    _round_trip(first.problem, schedule, tmp_path, stock)


def test_round_trip_cocop(tmp_path: Path) -> None:
    master = [ADP / "cocop_routing.csv"]
    first = import_files([COCOP / "ProcessProductionSchedule.xml", *master])
    schedule = _solve(first.problem)
    _round_trip(first.problem, schedule, tmp_path, master)


def test_export_refuses_incomplete_schedules_and_missing_origin() -> None:
    first = import_files([COCOP / "ProcessProductionSchedule.xml", ADP / "cocop_routing.csv"])
    p = first.problem
    partial = Schedule(operations=[])
    with pytest.raises(ExportError, match="lacks 2 operation"):
        write_b2mml(p, partial, "0700")
    no_origin = p.model_copy(update={"origin": None})
    sched = Schedule(operations=[])
    with pytest.raises(ExportError, match="give --origin"):
        write_b2mml(no_origin, sched, "0600")


def test_demo_plant_exports_valid_b2mml_with_running_segments_and_setups(tmp_path: Path) -> None:
    from paichan.examples import demo_plant

    problem = demo_plant()
    schedule = _solve(problem)
    for version in ("0600", "0700"):
        data = write_b2mml(problem, schedule, version)
        assert xsd_errors(data, version) == []
    v7 = etree.fromstring(write_b2mml(problem, schedule, "0700"))
    states = {e.text for e in v7.iter("{http://www.mesa.org/xml/B2MML}SegmentState")}
    assert states == {"Running", "Released"}  # the demo has one operation already started
    assert any(e.findtext("{http://www.mesa.org/xml/B2MML}ID") == "SetupTime"
               for e in v7.iter("{http://www.mesa.org/xml/B2MML}SegmentParameter"))


# ---- command line ------------------------------------------------------------------------------------------------

def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paichan.service.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_import_solve_export_both_versions(tmp_path: Path) -> None:
    problem, report, rejects = tmp_path / "problem.json", tmp_path / "report.json", tmp_path / "rejects.csv"
    r = run("import", "b2mml", str(PRO), str(INV), str(LOT), str(MAT), *map(str, COURBON_MASTER),
            "--output", str(problem), "--report", str(report), "--rejects", str(rejects))
    assert r.returncode == 0, r.stderr
    assert "Duration on BOX3 missing -> 45 min from courbon_routing.csv line 2" in r.stdout
    assert Problem.model_validate_json(problem.read_text()).orders[0].id == "258456"
    doc = json.loads(report.read_text())
    assert doc["rejected"] == [] and len(doc["missing"]) == 5 and doc["read"]["orders"] == 1
    assert rejects.read_text() == "file,where,record,reason\n"
    result = tmp_path / "result.json"
    r = run("solve", str(problem), "--time-limit", "2", "--output", str(result), "--quiet")
    assert r.returncode == 0, r.stderr
    for version in ("0600", "0700"):
        out = tmp_path / f"s{version}.xml"
        r = run("export", "b2mml", str(result), "--version", version, "--problem", str(problem), "--output", str(out))
        assert r.returncode == 0, r.stderr
        assert xsd_errors(out.read_bytes(), version) == []
    r = run("export", "json", str(result), "--problem", str(problem))
    assert r.returncode == 0 and json.loads(r.stdout)["operations"][0]["start"].endswith("Z")


def test_cli_rejects_exit_1_and_user_errors_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = run("import", "b2mml", str(PES), "--output", str(out), "--rejects", str(tmp_path / "rej.csv"))
    assert r.returncode == 1 and "releaseID" in r.stdout and out.is_file()
    assert "PES-20121229115825-53107.xml" in (tmp_path / "rej.csv").read_text()
    r = run("import", "b2mml", str(PES), "--lenient", "--output", str(out))
    assert r.returncode == 0, r.stdout
    r = run("import", "b2mml", str(tmp_path / "nope.xml"), "--output", str(out))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run("export", "b2mml", str(out), "--version", "0700")  # --problem is required
    assert r.returncode == 2 and "--problem" in r.stderr
    (tmp_path / "s.json").write_text(json.dumps({"operations": [
        {"operation": "x", "order": "y", "resource": "M", "mode": 0, "start": 0, "end": 1}]}))
    shutil.copy(out, tmp_path / "p2.json")
    r = run("export", "b2mml", str(tmp_path / "s.json"), "--problem", str(tmp_path / "p2.json"))
    assert r.returncode == 2 and "error:" in r.stderr

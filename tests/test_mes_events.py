"""Shop-floor events: state mappings, webhooks, B2MML performance, apply_events and re-planning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from conftest import machines, op, order
from lxml import etree
from pydantic import ValidationError

from paichan.adapters.b2mml import validate
from paichan.adapters.mes import (
    MACHINERY_STATES,
    PACKML_STATES,
    B2MMLError,
    UnknownState,
    WebhookPayloadError,
    lookup_state,
    map_state,
    parse_performance,
    parse_webhook_batch,
    resolve_any_state,
    webhook_json_schema,
)
from paichan.checker import check
from paichan.domain import (
    DowntimeKind,
    Material,
    MaterialUse,
    OperationStatus,
    Problem,
    Resource,
    ResourceKind,
)
from paichan.domain.events import (
    EventsError,
    MachineState,
    MachineStateEvent,
    OperationProgressEvent,
    ProgressStatus,
    apply_events,
)
from paichan.solver import SolveParams, solve

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "mes"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
A, B, D, H = MachineState.AVAILABLE, MachineState.BUSY, MachineState.DOWN, MachineState.HELD

# ------------------------------------------------------------------------------------------- mappings

MACHINERY_EXPECTED = {0: ("NotAvailable", D), 1: ("OutOfService", D), 2: ("NotExecuting", A), 3: ("Executing", B)}
PACKML_EXPECTED = {
    1: ("Clearing", D), 2: ("Stopped", D), 3: ("Starting", B), 4: ("Idle", A), 5: ("Suspended", B),
    6: ("Execute", B), 7: ("Stopping", D), 8: ("Aborting", D), 9: ("Aborted", D), 10: ("Holding", H),
    11: ("Held", H), 12: ("Unholding", B), 13: ("Suspending", B), 14: ("Unsuspending", B),
    15: ("Resetting", A), 16: ("Completing", B), 17: ("Complete", A),
}


@pytest.mark.parametrize("number", sorted(MACHINERY_EXPECTED))
def test_machinery_states_by_name_and_number(number: int) -> None:
    name, state = MACHINERY_EXPECTED[number]
    assert map_state(name, "machinery") == state
    assert map_state(number, "machinery") == state
    assert map_state(str(number), "machinery") == state
    assert map_state(name.upper(), "machinery") == state
    assert lookup_state(number, "machinery").name == name


@pytest.mark.parametrize("number", sorted(PACKML_EXPECTED))
def test_packml_states_by_name_and_number(number: int) -> None:
    name, state = PACKML_EXPECTED[number]
    assert map_state(name, "packml") == state
    assert map_state(number, "packml") == state
    assert map_state(f" {name.lower()} ", "packml") == state
    assert lookup_state(name, "packml").number == number


def test_tables_cover_the_standards_and_explain_every_state() -> None:
    assert set(MACHINERY_STATES) == set(MACHINERY_EXPECTED)
    assert set(range(1, 18)) <= set(PACKML_STATES)  # plus super-states Running 18, Cleared 19
    assert map_state("Running", "packml") == A and map_state(19, "packml") == A
    assert all(s.why for s in [*MACHINERY_STATES.values(), *PACKML_STATES.values()])
    assert map_state("Not Executing", "machinery") == A  # spaces and underscores are ignored


@pytest.mark.parametrize(
    ("value", "model", "needle"),
    [(4, "machinery", "no state number 4"), ("Execute", "machinery", "not a machinery state"),
     (0, "packml", "no state number 0"), ("Broken", "packml", "not a packml state")],
)
def test_unknown_states_are_refused(value: str | int, model: str, needle: str) -> None:
    with pytest.raises(UnknownState, match=needle):
        map_state(value, model)  # type: ignore[arg-type]


def test_webhook_state_vocabularies() -> None:
    assert resolve_any_state("down", None) == (D, "down")
    assert resolve_any_state("OutOfService", None) == (D, "machinery:OutOfService")
    assert resolve_any_state("held", None) == (H, "held")  # paichan's own word comes first
    assert resolve_any_state("Held", "packml") == (H, "packml:Held")
    assert resolve_any_state(3, "machinery") == (B, "machinery:Executing")
    with pytest.raises(UnknownState, match="needs 'state_model'"):
        resolve_any_state(6, None)


# ------------------------------------------------------------------------------------------- event types


def mse(eid: str, minute: float, machine: str, state: MachineState, raw: str = "") -> MachineStateEvent:
    return MachineStateEvent(
        event_id=eid, source="test", time=T0 + timedelta(minutes=minute), machine=machine, state=state,
        raw_state=raw or state.value, raw_model="webhook",
    )


def progress(eid: str, minute: float, operation: str, status: str, machine: str | None = None,
             **kw: datetime) -> OperationProgressEvent:
    return OperationProgressEvent(
        event_id=eid, source="test", time=T0 + timedelta(minutes=minute), operation=operation,
        status=ProgressStatus(status), machine=machine, **kw,
    )


def test_event_times_are_normalised_to_utc_and_must_be_aware() -> None:
    cet = timezone(timedelta(hours=1))
    ev = MachineStateEvent(event_id="e", source="s", time=datetime(2026, 11, 23, 9, 0, tzinfo=cet), machine="M1",
                           state=D, raw_state="x", raw_model="packml")
    assert ev.time == T0 and ev.time.tzinfo == UTC
    with pytest.raises(ValidationError, match="timezone-aware"):
        MachineStateEvent(event_id="e", source="s", time=datetime(2026, 11, 23, 9), machine="M1", state=D,
                          raw_state="x", raw_model="packml")
    with pytest.raises(ValidationError, match="before actual_start"):
        progress("p", 5, "A1", "done", actual_start=T0 + timedelta(minutes=5), actual_end=T0)


# ------------------------------------------------------------------------------------------- apply_events


def plant(**kw: object) -> Problem:
    """M1, M2 machines; A1 on M1 only; A2 on M1 or M2; order B on M2 then M1."""
    return Problem(
        name="events", origin=T0, resources=[*machines("M1", "M2"), Resource(id="OPS", kind=ResourceKind.POOL)],
        orders=[
            order("A", op("A1", ("M1", 30)), op("A2", ("M1", 20), ("M2", 25))),
            order("B", op("B1", ("M2", 15)), op("B2", ("M1", 40))),
        ],
        **kw,  # type: ignore[arg-type]
    )


def downtimes(p: Problem, machine: str) -> list[tuple[int, int]]:
    r = next(r for r in p.resources if r.id == machine)
    assert all(d.kind == DowntimeKind.BREAKDOWN for d in r.calendar.downtimes)
    return [(d.start, d.end) for d in r.calendar.downtimes]


def lines(report: list[str], prefix: str) -> list[str]:
    return [x for x in report if x.startswith(prefix)]


def test_origin_is_required() -> None:
    p = plant().model_copy(update={"origin": None})
    with pytest.raises(EventsError, match=r"Problem\.origin is not set"):
        apply_events(p, [mse("e", 1, "M1", D)], 5)


def test_down_then_available_makes_a_closed_breakdown() -> None:
    p = plant()
    out, report = apply_events(p, [mse("d", 10, "M1", D), mse("u", 35, "M1", A)], 40)
    assert downtimes(out, "M1") == [(10, 35)]
    assert out.now == 40 and p.resources[0].calendar.downtimes == []  # the input is left alone
    assert len(lines(report, "applied:")) == 2


def test_down_without_repair_uses_the_estimate() -> None:
    out, _ = apply_events(plant(), [mse("d", 10, "M1", D)], 12)
    assert downtimes(out, "M1") == [(10, 70)]
    out, _ = apply_events(plant(), [mse("d", 10, "M1", D)], 12, repair_estimate=timedelta(minutes=90))
    assert downtimes(out, "M1") == [(10, 100)]
    out, _ = apply_events(plant(), [mse("h", 10, "M1", H, "packml:Held")], 12)
    assert downtimes(out, "M1") == [(10, 25)]  # held: the short-stop estimate (15 min)


def test_overdue_repair_is_re_estimated_from_now() -> None:
    out, report = apply_events(plant(), [mse("d", 10, "M1", D)], 100)
    assert downtimes(out, "M1") == [(10, 160)]
    assert any("longer than the estimate" in x for x in report)
    later, _ = apply_events(out, [], 300)  # still no news: the open window follows now
    assert downtimes(later, "M1") == [(10, 360)]


def test_busy_and_available_close_a_breakdown_and_held_turns_down() -> None:
    evs = [mse("h", 5, "M2", H), mse("d", 8, "M2", D), mse("b", 30, "M2", B), mse("x", 31, "M2", A)]
    out, report = apply_events(plant(), evs, 40)
    assert downtimes(out, "M2") == [(5, 30)]
    assert any("no change" in x for x in report)


def test_out_of_order_events_are_applied_by_event_time() -> None:
    in_order = [mse("d1", 10, "M1", D), mse("u1", 20, "M1", A), mse("d2", 50, "M1", D), mse("u2", 55, "M1", B)]
    shuffled = [in_order[3], in_order[1], in_order[2], in_order[0]]
    a, _ = apply_events(plant(), in_order, 60)
    b, _ = apply_events(plant(), shuffled, 60)
    assert downtimes(a, "M1") == downtimes(b, "M1") == [(10, 20), (50, 55)]


def test_seconds_round_outward() -> None:
    out, _ = apply_events(plant(), [mse("d", 10.5, "M1", D), mse("u", 20.25, "M1", A)], 30)
    assert downtimes(out, "M1") == [(10, 21)]  # down from 10:30 -> minute 10, up at 20:15 -> minute 21


def test_duplicate_event_ids_are_ignored_and_reported() -> None:
    d = mse("d", 10, "M1", D)
    out, report = apply_events(plant(), [d, d, mse("d", 11, "M2", D)], 12)
    assert downtimes(out, "M1") == [(10, 70)] and downtimes(out, "M2") == []
    assert len(lines(report, "duplicate: event 'd'")) == 2
    # across calls: the id is remembered in the downtime, the window is not added twice ...
    again, report = apply_events(out, [d], 13)
    assert downtimes(again, "M1") == [(10, 70)] and lines(report, "duplicate:")
    # ... and a later batch can still close the open window
    closed, _ = apply_events(again, [d, mse("u", 30, "M1", A)], 31)
    assert downtimes(closed, "M1") == [(10, 30)]
    same, report = apply_events(closed, [mse("u", 30, "M1", A)], 32)
    assert downtimes(same, "M1") == [(10, 30)] and lines(report, "duplicate: event 'u'")


def test_stale_and_future_and_unknown_machine_events() -> None:
    out, _ = apply_events(plant(), [mse("d", 10, "M1", D), mse("u", 30, "M1", A)], 40)
    out, report = apply_events(out, [mse("late", 20, "M1", D), mse("future", 50, "M1", D),
                                     mse("ghost", 5, "M9", D), mse("pool", 5, "OPS", D)], 40)
    assert downtimes(out, "M1") == [(10, 30)]
    assert lines(report, "stale: event 'late'") and lines(report, "rejected: event 'future'")
    assert any("unknown machine 'M9'" in x for x in report) and any("'OPS' is a pool" in x for x in report)
    # within the clock-skew allowance an event counts as now
    out, _ = apply_events(plant(), [mse("d", 41, "M1", D)], 40)
    assert downtimes(out, "M1") == [(40, 100)]


def test_operation_progress_sets_status_and_actuals() -> None:
    evs = [progress("s1", 5, "A1", "started", "M1"), progress("s2", 6, "B1", "started"),  # single mode: no machine
           progress("d2", 20, "B1", "done")]
    out, report = apply_events(plant(), evs, 25)
    ops = {o.id: o for _, o in out.operations()}
    assert ops["A1"].status == OperationStatus.STARTED and ops["A1"].actual is not None
    assert (ops["A1"].actual.resource, ops["A1"].actual.start, ops["A1"].actual.end) == ("M1", 5, None)
    assert ops["B1"].status == OperationStatus.DONE and ops["B1"].actual is not None
    assert (ops["B1"].actual.resource, ops["B1"].actual.start, ops["B1"].actual.end) == ("M2", 6, 20)
    assert len(lines(report, "applied:")) == 3


def test_operation_progress_rejections_name_the_reason() -> None:
    evs = [
        progress("wrong", 5, "A1", "started", "M2"),
        progress("nomachine", 5, "A2", "started"),
        progress("unknown", 5, "Z9", "started", "M1"),
        progress("nostart", 9, "B2", "done", "M1"),
        progress("future", 90, "B1", "started", "M2"),
    ]
    out, report = apply_events(plant(), evs, 30)
    assert all(o.status == OperationStatus.PLANNED for _, o in out.operations())
    text = "\n".join(report)
    assert "'wrong': machine 'M2' is not one of operation 'A1' modes (M1)" in text
    assert "'nomachine': no machine reported and operation 'A2' has 2 modes" in text
    assert "'unknown': unknown operation 'Z9'" in text
    assert "'nostart': 'done' for 'B2' has no actual_start" in text
    assert lines(report, "rejected: event 'future'")
    assert len(lines(report, "rejected:")) == 5


def test_started_after_done_is_stale_and_done_uses_known_start() -> None:
    evs = [progress("s", 5, "A1", "started", "M1"), progress("d", 40, "A1", "done"),
           progress("s-late", 6, "A1", "started")]
    shuffled = [evs[1], evs[2], evs[0]]  # arrival order differs from event time: time order is used
    out, report = apply_events(plant(), shuffled, 45)
    a1 = next(o for _, o in out.operations() if o.id == "A1")
    assert a1.status == OperationStatus.DONE and a1.actual is not None and (a1.actual.start, a1.actual.end) == (6, 40)
    _, report = apply_events(out, [progress("s-again", 7, "A1", "started", "M1")], 46)
    assert lines(report, "stale: event 's-again'")


def test_started_operation_consumes_material_and_notes_planned_predecessor() -> None:
    p = plant(materials=[Material(id="steel", stock=10)])
    p.orders[1].operations[1].materials = [MaterialUse(material="steel", quantity=4)]
    out, report = apply_events(p, [progress("s", 5, "B2", "started", "M1")], 10)
    assert out.materials[0].stock == 6 and p.materials[0].stock == 10
    assert any("predecessor 'B1' is still planned" in x for x in report)
    out2, _ = apply_events(out, [progress("s", 5, "B2", "started", "M1")], 11)  # replay: no second consumption
    assert out2.materials[0].stock == 6


def test_breakdown_under_running_work_is_noted() -> None:
    _, report = apply_events(plant(), [progress("s", 5, "A1", "started", "M1"), mse("d", 10, "M1", D)], 12)
    assert any("while operation 'A1' runs on it" in x for x in report)


def test_hour_time_unit() -> None:
    p = plant(time_unit="hour")
    out, _ = apply_events(p, [mse("d", 90, "M1", D)], 2)
    assert downtimes(out, "M1") == [(1, 3)]  # down 09:30 -> hour 1 (down); +60 min = 10:30 -> hour 3 (up)
    with pytest.raises(EventsError, match="time_unit 'unit'"):
        apply_events(plant(time_unit="unit"), [], 0)


# ------------------------------------------------------------------------------------------- webhooks


def test_webhook_batch_keeps_good_events_and_reports_bad_ones() -> None:
    batch = parse_webhook_batch((FIX / "webhook-batch.json").read_bytes())
    assert [(e.index, e.field) for e in batch.errors] == [(2, "time"), (4, "status")]
    assert "timezone" in batch.errors[0].reason and "started" in batch.errors[1].reason
    assert str(batch.errors[0]).startswith("events[2].time: ")
    assert [e.event_id for e in batch.events] == [
        "mes-hall-2:evt-1001", "mes-hall-2:evt-1002", "mes-hall-2:evt-1004", "mes-hall-2:evt-1006"]
    down, started, held, up = batch.events
    assert isinstance(down, MachineStateEvent) and (down.state, down.raw_state) == (D, "machinery:OutOfService")
    assert down.raw_model == "webhook"
    assert isinstance(started, OperationProgressEvent) and started.time == T0 + timedelta(minutes=5)
    assert isinstance(held, MachineStateEvent) and (held.state, held.raw_state) == (H, "packml:Held")
    assert isinstance(up, MachineStateEvent) and up.state == A

    out, report = apply_events(plant(), batch.events, 15)
    assert downtimes(out, "M1") == [(10, 70)] and downtimes(out, "M2") == [(12, 14)]
    assert "rejected" in "\n".join(report)  # A1 cannot run on M2
    again, report = apply_events(out, batch.events, 16)  # the MES retries the whole batch
    assert downtimes(again, "M1") == [(10, 70)] and downtimes(again, "M2") == [(12, 14)]


@pytest.mark.parametrize(
    ("event", "field", "needle"),
    [
        ({"source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1", "state": "down"}, "event_id", "required"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1"}, "state", "missing"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "state": "down"}, "machine", "needs"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1", "state": "Broken"},
         "state", "neither"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1", "state": 6},
         "state", "state_model"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1", "state": "down",
          "operation": "A1"}, "operation", "not both"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1", "state": True},
         "state", "valid"),
        ({"event_id": "1", "source": "m", "time": "yesterday", "operation": "A1", "status": "done"},
         "time", "datetime"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "operation": "A1", "status": "started",
          "actual_end": "2026-11-23T08:00:00Z"}, "actual_end", "no actual_end"),
        ({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "operation": "A1", "status": "done",
          "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_webhook_events_name_index_and_field(event: dict[str, object], field: str, needle: str) -> None:
    good = {"event_id": "ok", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1", "state": "busy"}
    batch = parse_webhook_batch([good, event, good | {"event_id": "ok2"}])
    assert [e.event_id for e in batch.events] == ["m:ok", "m:ok2"]
    assert {e.index for e in batch.errors} == {1}
    assert any(e.field.startswith(field) and needle in e.reason for e in batch.errors), batch.errors


def test_webhook_payload_errors() -> None:
    with pytest.raises(WebhookPayloadError, match="not JSON"):
        parse_webhook_batch(b"{nope")
    with pytest.raises(WebhookPayloadError, match="no 'events'"):
        parse_webhook_batch({"event": []})
    with pytest.raises(WebhookPayloadError, match="list of events"):
        parse_webhook_batch("42")
    batch = parse_webhook_batch('[7, {"event_id": "x"}]')
    assert batch.events == [] and batch.errors[0].index == 0 and {e.index for e in batch.errors} == {0, 1}


def test_committed_json_schema_matches_the_model_and_validates_the_fixture() -> None:
    committed = json.loads((ROOT / "docs" / "mes-webhook.schema.json").read_text())
    assert committed == webhook_json_schema(), "regenerate docs/mes-webhook.schema.json from webhook_json_schema()"
    validator = jsonschema.Draft202012Validator(committed)
    events = json.loads((FIX / "webhook-batch.json").read_text())["events"]
    assert [i for i, e in enumerate(events) if not validator.is_valid(e)] == [4]  # status 'finished'
    assert not validator.is_valid({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1"})
    assert not validator.is_valid({"event_id": "1", "source": "m", "time": "2026-11-23T08:00:00Z", "machine": "M1",
                                   "state": "down", "operation": "A1", "status": "done"})


# ------------------------------------------------------------------------------------------- B2MML


@pytest.mark.parametrize(
    ("fixture", "xsd"),
    [("ops-performance-v0700.xml", "v0700/B2MML-OperationsPerformance.xsd"),
     ("prod-performance-v0600.xml", "v0600/B2MML-V0600-ProductionPerformance.xsd")],
)
def test_hand_written_fixtures_are_schema_valid(fixture: str, xsd: str) -> None:
    schema = etree.XMLSchema(etree.parse(str(ROOT / "paichan" / "adapters" / "schemas" / xsd)))
    assert schema.validate(etree.parse(str(FIX / fixture))), schema.error_log


def test_courbon_pes_segment_response_becomes_a_progress_event() -> None:
    path = FIX / "PES-20121229115825-53107.xml"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # the real file, BOM and all
    result = parse_performance(path)
    assert result.version == "http://www.wbf.org/xml/B2MML-V0401"
    assert any("releaseID" in x for x in result.issues)
    assert any("material was consumed" in x for x in result.issues)
    (ev,) = result.events
    assert (ev.operation, ev.status, ev.machine) == ("Weighing", ProgressStatus.STARTED, None)
    assert ev.event_id == "b2mml:53107/Weighing:started" and ev.actual_start is None
    assert ev.time == datetime(2012, 11, 29, 10, 58, 25, 314955, tzinfo=UTC)  # CreationDateTime, +01:00
    (seg,) = result.segments
    assert seg.response_id == "53107" and seg.consumed_material and seg.equipment_ids == []

    # mapped onto a problem whose operation ids follow the ERP's order/segment naming
    result = parse_performance(path.read_bytes(), operation_id=lambda s: f"{s.response_id}-{s.segment_id}")
    weighing = Problem(origin=datetime(2012, 11, 29, 8, 0, tzinfo=UTC), resources=machines("BOX3"),
                       orders=[order("53107", op("53107-Weighing", ("BOX3", 45)))])
    out, _ = apply_events(weighing, result.events, 200)
    (o,) = [o for _, o in out.operations()]
    assert o.status == OperationStatus.STARTED and o.actual is not None
    assert (o.actual.resource, o.actual.start) == ("BOX3", 178)  # 10:58:25 UTC -> minute 178
    assert not parse_performance(path, infer_from_consumption=False).events


def test_v0700_operations_performance() -> None:
    result = parse_performance(FIX / "ops-performance-v0700.xml")
    assert result.version == "http://www.mesa.org/xml/B2MML"
    got = {(e.operation, e.status.value, e.machine, e.actual_start, e.actual_end) for e in result.events}
    at = lambda h, m: datetime(2026, 11, 23, h, m, tzinfo=UTC)  # noqa: E731
    assert got == {
        ("SO-1/10", "done", "CUT1", at(8, 0), at(8, 40)),  # <request>/<segment requirement>
        ("SO-1/20", "started", None, at(8, 45), None),  # 09:45+01:00; two equipment actuals
        ("SO-2/SR-6", "started", None, at(8, 0), None),  # no SegmentRequirementID: the segment's own ID
        ("SO-2/40a", "done", "ASSY1", at(8, 0), at(8, 20) + timedelta(microseconds=123456)),
    }
    issues = "\n".join(result.issues)
    assert "SR-3: state Waiting, not started" in issues and "SR-5: segment aborted" in issues
    assert "SR-4/ActualStartTime: '2026-11-23T08:10:00' has no time-zone offset" in issues
    assert "several equipment actuals (WELD1, FIXTURE-7)" in issues

    result = parse_performance(FIX / "ops-performance-v0700.xml", known_machines={"WELD1", "CUT1", "ASSY1"},
                               assume_tz=timezone(timedelta(hours=1)))
    by_op = {e.operation: e for e in result.events}
    assert by_op["SO-1/20"].machine == "WELD1"
    assert by_op["SO-2/20"].actual_start == at(7, 10)  # naive 08:10 read as +01:00
    assert by_op["SO-1/10"].event_id == "b2mml:RESP-SO-1/SR-1:done"


def test_v0600_production_performance_status_from_times() -> None:
    result = parse_performance(FIX / "prod-performance-v0600.xml")
    assert result.issues == []
    got = [(e.operation, e.status.value, e.machine) for e in result.events]
    assert got == [("SO-3/10", "done", "PAINT1"), ("SO-3/20", "started", "PACK1")]
    assert result.segments[0].request_ids == ["SO-3"]


def test_b2mml_errors_and_resent_messages() -> None:
    with pytest.raises(B2MMLError, match="not well-formed"):
        parse_performance(b"<SyncProductionPerformance><oops></SyncProductionPerformance>")
    result = parse_performance(b"<ShowEquipment xmlns='http://www.mesa.org/xml/B2MML' releaseID='7'/>")
    assert result.events == [] and "no ProductionResponse or OperationsResponse" in result.issues[0]
    # the same message twice: the event ids repeat, apply_events applies it once
    evs = parse_performance(FIX / "prod-performance-v0600.xml", source_name="mes").events
    p = Problem(origin=T0, resources=machines("PAINT1", "PACK1"),
                orders=[order("SO-3", op("SO-3/10", ("PAINT1", 30)), op("SO-3/20", ("PACK1", 20)))])
    out, report = apply_events(p, evs + evs, 120)
    assert len(lines(report, "duplicate:")) == 2 and len(lines(report, "applied:")) == 2
    assert [o.status for _, o in out.operations()] == [OperationStatus.DONE, OperationStatus.STARTED]


def _broken(tmp_path: Path, fixture: str, old: str, new: str) -> Path:
    """A copy of a performance fixture with one schema-breaking edit."""
    text = (FIX / fixture).read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / f"broken-{fixture}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_performance_schema_error_in_a_segment_drops_that_segment_naming_file_and_element(tmp_path: Path) -> None:
    path = _broken(tmp_path, "prod-performance-v0600.xml", "<ProcessSegmentID>Packing</ProcessSegmentID>",
                   "<ProcessSegmentID>Packing</ProcessSegmentID><Colour>red</Colour>")
    result = parse_performance(path)
    assert [(e.operation, e.status.value) for e in result.events] == [("SO-3/10", "done")]
    (issue,) = result.issues
    assert issue.startswith(f"{path.name}: /ProcessProductionPerformance/DataArea/ProductionPerformance/"
                            "ProductionResponse/SegmentResponse[2] (line ")
    assert "schema: Colour line" in issue and "Element 'Colour': This element is not expected" in issue
    assert issue.endswith("; SegmentResponse not used")


def test_performance_schema_error_in_a_response_drops_the_response(tmp_path: Path) -> None:
    path = _broken(tmp_path, "ops-performance-v0700.xml", "<OperationsRequestID>SO-1</OperationsRequestID>",
                   "<OperationsRequestID>SO-1</OperationsRequestID><Shift>A</Shift>")
    result = parse_performance(path)
    assert {e.operation for e in result.events} == {"SO-2/SR-6", "SO-2/40a"}  # SO-1's response is left out
    bad = [x for x in result.issues if "schema:" in x]
    assert len(bad) == 1 and "OperationsResponse[1] (line" in bad[0] and "Element 'Shift'" in bad[0]
    assert bad[0].endswith("; OperationsResponse not used")


def test_performance_envelope_schema_error_is_an_issue_or_with_lenient_false_an_error(tmp_path: Path) -> None:
    path = _broken(tmp_path, "prod-performance-v0600.xml", ' releaseID="6.0"', "")
    result = parse_performance(path)
    assert len(result.events) == 2
    root = "ProcessProductionPerformance"
    assert result.issues == [f"{path.name}: /{root} (line 4): schema: {root} line 4: Element '{root}': The attribute"
                             " 'releaseID' is required but missing; read anyway"]
    with pytest.raises(B2MMLError, match=rf"^{path.name}: /{root} \(line 4\): schema: .*releaseID"):
        parse_performance(path, lenient=False)
    # bytes have no file name: the source name stands for it
    with pytest.raises(B2MMLError, match=r"^\(mes document\): /ProcessProductionPerformance"):
        parse_performance(path.read_bytes(), source_name="mes", lenient=False)
    assert parse_performance(FIX / "prod-performance-v0600.xml", lenient=False).issues == []


def test_b2mml_validate_knows_the_v0700_operations_performance_schema(tmp_path: Path) -> None:
    assert validate(etree.parse(str(FIX / "ops-performance-v0700.xml"))) == []
    broken = _broken(tmp_path, "ops-performance-v0700.xml", "<SegmentState>Completed</SegmentState>",
                     "<SegmentState>Finished</SegmentState>")
    (err,) = validate(etree.parse(str(broken)))
    assert "SegmentState" in err and "Finished" in err


# ------------------------------------------------------------------------------------------- re-planning


def test_solver_schedules_around_a_reported_breakdown() -> None:
    """A webhook says M1 broke at 08:10 and A1 started on M1 at 08:00; re-plan at 08:10."""
    p = Problem(
        name="breakdown", origin=T0, resources=machines("M1", "M2"),
        orders=[
            order("A", op("A1", ("M1", 8)), op("A2", ("M1", 20), ("M2", 30)), op("A3", ("M1", 15))),
            order("B", op("B1", ("M2", 10)), op("B2", ("M1", 25))),
            order("C", op("C1", ("M1", 12), ("M2", 12)), op("C2", ("M1", 10))),
        ],
    )
    batch = parse_webhook_batch([
        {"event_id": "1", "source": "mes", "time": "2026-11-23T08:00:00Z", "operation": "A1", "status": "started",
         "machine": "M1"},
        {"event_id": "2", "source": "mes", "time": "2026-11-23T08:08:00Z", "operation": "A1", "status": "done"},
        {"event_id": "3", "source": "mes", "time": "2026-11-23T08:10:00Z", "machine": "M1", "state": "OutOfService"},
    ])
    assert batch.errors == []
    replanned, report = apply_events(p, batch.events, 10)
    assert len(lines(report, "applied:")) == 3
    assert downtimes(replanned, "M1") == [(10, 70)]
    result = solve(replanned, SolveParams(time_limit=2, workers=1))
    assert result.schedule is not None, (result.status, result.infeasibility)
    assert check(replanned, result.schedule).ok
    by_op = result.schedule.by_operation()
    assert (by_op["A1"].start, by_op["A1"].end) == (0, 8)  # done work stays where it was
    for s in result.schedule.operations:
        assert s.start >= 10 or s.operation == "A1"
        if s.resource == "M1" and s.end > s.start:
            assert s.end <= 10 or s.start >= 70, f"{s.operation} [{s.start}, {s.end}) overlaps the breakdown"
    assert any(by_op[o].start >= 70 for o in ("A3", "B2", "C2"))  # M1-only work waits for the repair

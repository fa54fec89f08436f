"""The live plan: shop-floor events in, replans as jobs, proposals a planner releases or rejects.

State lives in Redis under ``paichan:svc:<name>:`` so that a restarted service (or a
restarted Redis, from its AOF) carries on where it stopped:

* ``events`` (stream) — every accepted shop-floor event, appended by one Lua script that
  also records ``(source, id)`` in ``events:seen``: a duplicate is recognised atomically
  and acknowledged without a second append. The ``applier`` consumer group reads the
  stream; an entry is acknowledged in the same MULTI/EXEC that stores the problem it
  changed, so an event is applied exactly once across crashes.
* ``problem`` (the current problem, events applied), ``released`` (the released plan and
  its version), ``proposals``, ``replans``, ``pins`` (hashes), ``brake`` and ``audit``
  (a stream: who did what, when).

Two threads do the work: the applier (events → problem, then an automatic repair of the
owning line unless the brake is on) and the replan worker (one job at a time: CP-SAT has
the cores). Every plan a proposal offers has passed the independent checker.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import redis
from pydantic import BaseModel, Field, TypeAdapter

from paichan.adapters.b2mml_write import plant_of, write_b2mml, write_b2mml_per_plant
from paichan.adapters.webhooks import signed_headers
from paichan.checker import check
from paichan.domain import KPIs, OperationStatus, Order, Problem, Schedule, find_problems
from paichan.domain.events import (
    MachineStateEvent,
    OperationProgressEvent,
    ShopFloorEvent,
    apply_events,
    without_event_downtimes,
)
from paichan.service.config import ServiceConfig
from paichan.service.planning import (
    Clock,
    Diff,
    PinRecord,
    PinRequest,
    RepairSpec,
    diff,
    kpis_of,
    line_of,
    original_modes,
    pin_findings,
    reference_for,
    repair_problem,
)
from paichan.service.view import OP_STATE, horizon_of, machine_windows, plan_patch, plan_view
from paichan.solver import SolveParams, solve
from paichan.solver.api import SolutionEvent

log = logging.getLogger("paichan.service")
Event = MachineStateEvent | OperationProgressEvent
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
_REPORT = re.compile(r"^(applied|duplicate|stale|rejected): event '((?:[^']|'(?!:| ))*)'(.*)$")

# KEYS: seen hash, stream. ARGV: received-at, then (key, event json) pairs. Returns per event
# 'new:<stream id>' or the stored status of the duplicate. One script: atomic, so two deliveries
# of one event racing each other append it once.
_ACCEPT = """
local out = {}
for i = 2, #ARGV, 2 do
  local key = ARGV[i]
  local old = redis.call('HGET', KEYS[1], key)
  if old then
    out[#out + 1] = old
  else
    local id = redis.call('XADD', KEYS[2], '*', 'key', key, 'event', ARGV[i + 1], 'received', ARGV[1])
    redis.call('HSET', KEYS[1], key, cjson.encode({status = 'accepted', stream_id = id, received = ARGV[1]}))
    out[#out + 1] = 'new:' .. id
  end
end
return out
"""


_EVENT: TypeAdapter[Event] = TypeAdapter(ShopFloorEvent)  # built once: the applier's hot path


def utcnow() -> datetime:
    return datetime.now(UTC)


class Released(BaseModel):
    version: int
    schedule: Schedule
    kpis: KPIs | None
    released_by: str
    released_at: datetime
    proposal: str | None = None


class Proposal(BaseModel):
    id: str
    replan: str
    base_version: int
    created_at: datetime
    status: Literal["proposed", "released", "rejected", "superseded"] = "proposed"
    trigger: str
    scope: str
    diff: Diff
    kpis_before: KPIs | None
    kpis_after: KPIs
    objective: float | None
    notes: list[str] = Field(default_factory=list)
    schedule: Schedule
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        """The proposal without its full schedule."""
        return self.model_dump(mode="json", exclude={"schedule"})


def proposal_card(prop: Proposal) -> dict[str, Any]:
    """A proposal in a few fields, as a page lists it (no diff detail, no schedule)."""
    return {"id": prop.id, "status": prop.status, "scope": prop.scope, "trigger": prop.trigger,
            "created_at": prop.created_at.isoformat(), "base_version": prop.base_version,
            "moved": len(prop.diff.moved), "later": len(prop.diff.later),
            "tardiness_worse": len(prop.diff.tardiness_worse),
            "kpis_before": prop.kpis_before.model_dump() if prop.kpis_before else None,
            "kpis_after": prop.kpis_after.model_dump(), "notes": prop.notes[:10]}


def _event_line(ev: Event) -> dict[str, Any]:
    """An applied event as a page's activity list shows it."""
    return ev.model_dump(mode="json", include={"kind", "event_id", "source", "time", "machine", "state",
                                               "operation", "status"})


class ReplanJob(BaseModel):
    id: str
    spec: RepairSpec
    trigger: Literal["planner", "event", "orders", "escalation"]
    requested_by: str
    status: JobStatus = "queued"
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    proposal: str | None = None
    error: str | None = None
    notes: list[str] = Field(default_factory=list)
    solutions: list[SolutionEvent] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list, description="the event keys that triggered it")


class EventStatus(BaseModel):
    status: Literal["accepted", "applied", "duplicate", "stale", "rejected"]
    stream_id: str | None = None
    received: str | None = None
    reason: str | None = None
    applied_at: str | None = None


class ServiceError(Exception):
    """A request the plan's state refuses; ``status`` is the HTTP code (404, 409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def event_key(ev: Event) -> str:
    """The idempotency key: source and the event's own id (webhook ids are already ``source:id``)."""
    return ev.event_id if ev.event_id.startswith(f"{ev.source}:") else f"{ev.source}:{ev.event_id}"


class PlanService:
    """One plant's (or network's) live plan; thread-safe; the FastAPI app is a thin layer over it."""

    def __init__(self, problem: Problem, schedule: Schedule, config: ServiceConfig, redis_url: str,
                 *, clock: Callable[[], datetime] = utcnow, journal: list[dict[str, Any]] | None = None,
                 outbox: Path | None = None) -> None:
        self.config = config
        self.redis_url = redis_url
        self.prefix = f"paichan:svc:{config.name}:"
        # Any: redis-py's stubs type every reply as a union of bytes/str/awaitables
        self.r: Any = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10,
                                      health_check_interval=5, retry_on_timeout=True)
        self.clock_fn = clock
        self.journal = journal or []
        self.outbox = outbox
        self.lock = threading.RLock()
        self.jobs: queue.Queue[str] = queue.Queue()
        self.stop = threading.Event()
        self._accept = self.r.register_script(_ACCEPT)
        self.threads: list[threading.Thread] = []
        self.cancelled: set[str] = set()
        self.last_apply_s = 0.0  # how long the applier's last batch took
        self.resumed = self._load_or_init(problem, schedule)
        self.clock = Clock(self.problem)

    # ------------------------------------------------------------------ state in Redis

    def k(self, name: str) -> str:
        return self.prefix + name

    def _load_or_init(self, problem: Problem, schedule: Schedule) -> bool:
        """Resume the state a previous service left in Redis, or store the starting plan. True when resumed."""
        raw = self.r.get(self.k("problem"))
        rel = self.r.get(self.k("released"))
        if raw and rel:
            self.problem = Problem.model_validate_json(raw)
            self.released = Released.model_validate_json(rel)
            for jid, job in self.r.hgetall(self.k("replans")).items():  # work lost with the old process
                j = ReplanJob.model_validate_json(job)
                if j.status in ("queued", "running"):
                    j.status, j.error, j.finished_at = "failed", "the service restarted during this replan", utcnow()
                    self.r.hset(self.k("replans"), jid, j.model_dump_json())
            return True
        self.problem = problem
        report = check(problem, schedule)
        if not report.ok:
            raise ValueError("the starting plan fails the checker: " + "; ".join(map(str, report.violations[:5])))
        self.released = Released(version=1, schedule=schedule, kpis=report.kpis, released_by="start",
                                 released_at=utcnow())
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.k("problem"), problem.model_dump_json())
        pipe.set(self.k("released"), self.released.model_dump_json())
        pipe.execute()
        self.audit("start", "service", plan_version=1, operations=len(schedule.operations))
        return False

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.k("events"), "applier", id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def audit(self, action: str, who: str, **details: Any) -> None:
        """Record who did what and when (release, rejection, pin, brake, refused requests, ...)."""
        fields = {"action": action, "who": who, "at": utcnow().isoformat(), "details": json.dumps(details, default=str)}
        try:
            self.r.xadd(self.k("audit"), fields, maxlen=100_000, approximate=True)
        except redis.RedisError as e:  # the audit must not take the service down; the log keeps it
            log.warning("audit not recorded (%s): %s", e, fields)

    def notify(self, kind: str, **data: Any) -> None:
        """Tell open planner pages what changed: a capped Redis stream that ``GET /live`` tails.

        Entries are small diffs (moved operations, a machine's new downtimes, a job's status),
        never the whole plan; a page that reconnects resumes from the last id it saw.
        """
        try:
            self.r.xadd(self.k("live"), {"kind": kind, "data": json.dumps(data, default=str)},
                        maxlen=10_000, approximate=True)
        except redis.RedisError as e:  # a page missing a push must not fail the change it reports
            log.warning("live update not sent (%s): %s", e, kind)

    def audit_log(self, count: int = 200) -> list[dict[str, Any]]:
        rows = self.r.xrevrange(self.k("audit"), count=count)
        return [{"id": i, **{k: (json.loads(v) if k == "details" else v) for k, v in f.items()}} for i, f in rows]

    def now(self) -> int:
        """The current time in problem units (never before the problem's own ``now``)."""
        return max(self.problem.now, self.clock.units(self.clock_fn()))

    # ------------------------------------------------------------------ events in

    def accept(self, events: Sequence[Event]) -> list[dict[str, str]]:
        """Append events durably (before the caller replies 202); duplicates are recognised, not appended."""
        if not events:
            return []
        args: list[str] = [utcnow().isoformat()]
        for ev in events:
            args += [event_key(ev), json.dumps(ev.model_dump(mode="json"))]
        res = self._accept(keys=[self.k("events:seen"), self.k("events")], args=args)
        out = []
        for ev, r in zip(events, res, strict=True):
            if r.startswith("new:"):
                out.append({"key": event_key(ev), "status": "accepted", "stream_id": r[4:]})
            else:
                out.append({"key": event_key(ev), "status": "duplicate", "first": json.loads(r)["status"]})
        return out

    def event_status(self, source: str, event_id: str) -> EventStatus | None:
        for key in (f"{source}:{event_id}", event_id):
            raw = self.r.hget(self.k("events:seen"), key)
            if raw:
                return EventStatus.model_validate_json(raw)
        return None

    def apply_pending(self, block_ms: int = 500, count: int = 1000) -> int:
        """Apply one batch from the stream (pending entries first); returns how many entries were handled."""
        self.ensure_group()
        handled = 0
        for start in ("0", ">"):
            resp = self.r.xreadgroup("applier", "service", {self.k("events"): start}, count=count,
                                     block=None if start == "0" else block_ms)
            entries = resp[0][1] if resp else []
            entries = [(i, f) for i, f in entries if f]  # a pending entry trimmed away reads as empty
            if entries:
                self._apply(entries)
                handled += len(entries)
                break
        return handled

    def _apply(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        t0 = time.monotonic()
        events = [_EVENT.validate_json(f["event"]) for _, f in entries]
        keys = {ev.event_id: f["key"] for ev, (_, f) in zip(events, entries, strict=True)}
        machines = sorted({ev.machine for ev in events if isinstance(ev, MachineStateEvent)})
        with self.lock:
            now = self.now()
            # a machine's state is its whole event history in time order, whatever order batches came in: when
            # an event is older than the latest one a machine had, its event-made downtimes are rebuilt from its
            # whole history (kept as a Redis list per machine); in-order events are applied as they come
            raw_latest = self.r.hmget(self.k("events:machine-latest"), machines) if machines else []
            latest = {mid: float(x) for mid, x in zip(machines, raw_latest, strict=True) if x is not None}
            late = [mid for mid in machines if mid in latest and any(
                isinstance(ev, MachineStateEvent) and ev.machine == mid and ev.time.timestamp() < latest[mid]
                for ev in events)]
            replay = [_EVENT.validate_json(x) for mid in late
                      for x in self.r.lrange(self.k(f"events:machine:{mid}"), 0, -1)]
            base = without_event_downtimes(self.problem, late) if late else self.problem
            new, report = apply_events(base, [*replay, *events], now)
            statuses: dict[str, EventStatus] = {}
            at = utcnow().isoformat()
            for line in report:
                m = _REPORT.match(line)
                if m and m.group(2) in keys:
                    kind = m.group(1)
                    statuses[keys[m.group(2)]] = EventStatus(
                        status="applied" if kind == "applied" else kind,  # type: ignore[arg-type]
                        reason=None if kind == "applied" else line, applied_at=at)
            for ev in events:  # every entry gets a final status
                statuses.setdefault(keys[ev.event_id], EventStatus(status="applied", applied_at=at))
            pipe = self.r.pipeline(transaction=True)
            pipe.set(self.k("problem"), new.model_dump_json())
            for mid in machines:
                kept = [ev for ev in events if isinstance(ev, MachineStateEvent) and ev.machine == mid
                        and statuses[keys[ev.event_id]].status in ("applied", "stale")]
                if kept:
                    pipe.rpush(self.k(f"events:machine:{mid}"), *[ev.model_dump_json() for ev in kept])
                    newest = max(ev.time.timestamp() for ev in kept)
                    if newest > latest.get(mid, float("-inf")):
                        pipe.hset(self.k("events:machine-latest"), mid, repr(newest))
            for key, st in statuses.items():
                pipe.hset(self.k("events:seen"), key, st.model_dump_json())
            pipe.xack(self.k("events"), "applier", *[i for i, _ in entries])
            pipe.execute()
            self.problem = new
            applied = [ev for ev in events if statuses[keys[ev.event_id]].status == "applied"]
        self.last_apply_s = time.monotonic() - t0
        self._notify_events(new, events, applied, statuses, keys)
        notes = [ln for ln in report if ln.startswith("note:")]
        if notes:
            self.audit("events-notes", "applier", notes=notes[:50])
        if applied and self.config.replanning.auto and not self.brake():
            self._auto_replan(applied)

    def _notify_events(self, new: Problem, events: list[Event], applied: list[Event],
                       statuses: dict[str, EventStatus], keys: dict[str, str]) -> None:
        """Push the touched machines' calendars and operations' states (not the plan) to open pages."""
        machines = {ev.machine for ev in applied if isinstance(ev, MachineStateEvent)}
        op_ids = {ev.operation for ev in applied if isinstance(ev, OperationProgressEvent)}
        horizon = horizon_of(new, self.released.schedule)
        windows = {r.id: machine_windows(r.calendar, horizon) for r in new.resources if r.id in machines}
        states = {op.id: OP_STATE[op.status] for _, op in new.operations() if op.id in op_ids}
        self.notify("events", count=len(events), applied=len(applied),
                    statuses={ev.event_id: statuses[keys[ev.event_id]].status for ev in events[:200]},
                    windows=windows, states=states,
                    summary=[_event_line(ev) for ev in applied[:20]])

    def _auto_replan(self, events: list[Event]) -> None:
        """Repair the lines the events touched (one job per line), frozen work kept."""
        where = self.released.schedule.by_operation()
        lines: dict[str, list[str]] = {}
        for ev in events:
            res = ev.machine if isinstance(ev, MachineStateEvent) else (
                ev.machine or (where[ev.operation].resource if ev.operation in where else None))
            if res is not None:
                lines.setdefault(line_of(res), []).append(event_key(ev))
        for line, keys in lines.items():
            spec = RepairSpec(scope="line", target=line, freeze_minutes=self.config.replanning.freeze_minutes,
                              time_limit=self.config.replanning.time_limit)
            self.submit(spec, "event", "applier", events=keys)

    # ------------------------------------------------------------------ orders in

    def add_orders(self, orders: list[Order], who: str) -> dict[str, Any]:
        """New orders join the plan, changed ones (same id, nothing started) replace theirs; then a replan."""
        with self.lock:
            p = self.problem.model_copy(deep=True)
            index = {o.id: i for i, o in enumerate(p.orders)}
            added, changed = [], []
            for o in orders:
                if o.id in index:
                    old = p.orders[index[o.id]]
                    if any(op.status != OperationStatus.PLANNED for op in old.operations):
                        raise ServiceError(409, f"orders[{o.id}]: work on it has started; it cannot be replaced")
                    p.orders[index[o.id]] = o
                    changed.append(o.id)
                else:
                    p.orders.append(o)
                    index[o.id] = len(p.orders) - 1
                    added.append(o.id)
            findings = find_problems(p)
            if findings:
                raise ServiceError(422, "; ".join(str(f) for f in findings[:20]))
            self.r.set(self.k("problem"), p.model_dump_json())
            self.problem = p
        self.audit("orders", who, added=added, changed=changed)
        job = None
        if not self.brake():
            job = self.submit(RepairSpec(scope="all", freeze_minutes=self.config.replanning.freeze_minutes,
                                         time_limit=max(self.config.replanning.time_limit, 5.0)), "orders", who)
        return {"added": added, "changed": changed, "replan": job.id if job else None}

    # ------------------------------------------------------------------ replans

    def submit(self, spec: RepairSpec, trigger: Literal["planner", "event", "orders", "escalation"], who: str,
               events: list[str] | None = None) -> ReplanJob:
        if spec.scope != "all":
            known = {(line_of(r.id) if spec.scope == "line" else plant_of(r.id)) for r in self.problem.resources}
            if spec.target not in known:
                raise ServiceError(422, f"target: unknown {spec.scope} '{spec.target}' (known: "
                                        f"{', '.join(sorted(known)[:20])})")
        job = ReplanJob(id=uuid.uuid4().hex[:12], spec=spec, trigger=trigger, requested_by=who,
                        created_at=utcnow(), events=events or [])
        self._save_job(job)
        self.jobs.put(job.id)
        return job

    def _save_job(self, job: ReplanJob) -> None:
        self.r.hset(self.k("replans"), job.id, job.model_dump_json())
        last = job.solutions[-1] if job.solutions else None
        self.notify("replan", id=job.id, status=job.status, scope=job.spec.scope, target=job.spec.target,
                    trigger=job.trigger, proposal=job.proposal, error=job.error, solutions=len(job.solutions),
                    objective=last.objective if last else None, elapsed=last.time if last else None,
                    time_limit=job.spec.time_limit)

    def job(self, jid: str) -> ReplanJob:
        raw = self.r.hget(self.k("replans"), jid)
        if raw is None:
            raise ServiceError(404, f"no replan '{jid}'")
        return ReplanJob.model_validate_json(raw)

    def cancel(self, jid: str, who: str) -> ReplanJob:
        """A queued job is dropped; a running one is marked and its result discarded when its time is up."""
        job = self.job(jid)
        if job.status in ("done", "failed", "cancelled"):
            raise ServiceError(409, f"replan '{jid}' is {job.status} already")
        self.cancelled.add(jid)
        job.status, job.finished_at = "cancelled", utcnow()
        self._save_job(job)
        self.audit("replan-cancel", who, replan=jid)
        return job

    def run_job(self, jid: str) -> ReplanJob:
        """Solve one replan and turn its plan into a proposal (called by the worker thread, or directly)."""
        job = self.job(jid)
        if job.status != "queued" or jid in self.cancelled:
            return job
        job.status, job.started_at = "running", utcnow()
        self._save_job(job)
        with self.lock:
            problem, released = self.problem, self.released
            pins = self.pins()
            now = self.now()
        try:
            rp, notes = repair_problem(problem, released.schedule, pins, now, job.spec, self.clock,
                                       self.config.replanning.stability)
            job.notes = notes

            def on_solution(ev: SolutionEvent) -> None:
                job.solutions.append(ev)
                if jid not in self.cancelled:
                    self._save_job(job)

            def params(rp: Problem) -> SolveParams:  # the released plan as warm start and stability anchor
                return SolveParams(time_limit=job.spec.time_limit, workers=2,
                                   reference=reference_for(rp, problem, released.schedule))

            result = solve(rp, params(rp), on_solution)
            if result.schedule is None and job.spec.freeze_minutes and jid not in self.cancelled:
                spec = job.spec.model_copy(update={"freeze_minutes": 0})
                rp, notes = repair_problem(problem, released.schedule, pins, now, spec, self.clock,
                                           self.config.replanning.stability)
                job.notes = [*notes, f"no plan keeps the {job.spec.freeze_minutes}-minute freeze window "
                                     "(the shop floor moved on): planned again without it"]
                result = solve(rp, params(rp), on_solution)
            if jid in self.cancelled:
                return self.job(jid)
            if result.schedule is None:
                reasons = result.infeasibility or [f"no plan found within {job.spec.time_limit:g} s"]
                job.status, job.error = "failed", "; ".join(reasons[:10])
                if job.trigger == "event" and job.spec.scope != "all":
                    self._escalate(job)
                return job
            prop = self._propose(job, problem, rp, released, original_modes(problem, rp, result.schedule),
                                 result.objective)
            job.status, job.proposal = "done", prop.id
            if (job.trigger == "event" and job.spec.scope == "line" and prop.diff.tardiness_worse
                    and prop.status == "proposed"):
                self._escalate(job)
            return job
        except Exception as e:  # a replan that crashes is reported on its job, never takes the worker down
            log.exception("replan %s failed", jid)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
            return job
        finally:
            if job.status in ("done", "failed"):
                job.finished_at = utcnow()
                self._save_job(job)

    def _escalate(self, job: ReplanJob) -> None:
        """A line that cannot keep its due dates (or finds no plan) hands the repair to its plant, then to all."""
        longer = min(60.0, max(5.0, 4 * job.spec.time_limit))  # a wider repair, and the narrow one found little
        if job.spec.scope == "line" and job.spec.target:
            spec = job.spec.model_copy(update={"scope": "plant", "target": plant_of(job.spec.target + "/x"),
                                               "time_limit": longer})
        else:
            spec = job.spec.model_copy(update={"scope": "all", "target": None, "time_limit": longer})
        nxt = self.submit(spec, "escalation", f"escalation of {job.id}", events=job.events)
        job.notes.append(f"escalated to the {spec.scope} ({spec.target or 'whole network'}): replan {nxt.id}")

    def _propose(self, job: ReplanJob, problem: Problem, rp: Problem, released: Released, schedule: Schedule,
                 objective: float | None) -> Proposal:
        # solve() verified it on the repair problem; a proposal must also hold on the plan's own problem
        report = check(problem.model_copy(update={"now": rp.now}), schedule)
        if not report.ok or report.kpis is None:
            raise RuntimeError("the replan's plan fails the checker: " + "; ".join(map(str, report.violations[:5])))
        base = problem.model_copy(update={"now": rp.now})
        before, _ = kpis_of(base, released.schedule)
        prop = Proposal(id=uuid.uuid4().hex[:12], replan=job.id, base_version=released.version,
                        created_at=utcnow(), trigger=job.trigger, scope=f"{job.spec.scope}:{job.spec.target or '*'}",
                        diff=diff(problem, released.schedule, schedule), kpis_before=before, kpis_after=report.kpis,
                        objective=objective, notes=job.notes, schedule=schedule)
        self.r.hset(self.k("proposals"), prop.id, prop.model_dump_json())
        self.notify("proposal", **proposal_card(prop))
        rule = self.config.replanning.auto_release_max_moves
        if (rule and job.trigger != "planner" and not self.brake() and len(prop.diff.moved) < rule
                and not prop.diff.tardiness_worse):
            try:
                self.release(prop.id, f"auto-release rule (fewer than {rule} moves, no due date worse)")
                prop = self.proposal(prop.id)
            except ServiceError as e:
                prop.notes.append(f"auto-release refused: {e}")
        return prop

    def worker(self) -> None:
        while not self.stop.is_set():
            try:
                jid = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.run_job(jid)
            except redis.RedisError as e:  # Redis away: the job is retried when it is back
                log.warning("replan %s waits for Redis: %s", jid, e)
                time.sleep(1.0)
                self.jobs.put(jid)

    def applier(self) -> None:
        delay = 0.1
        while not self.stop.is_set():
            try:
                if self.apply_pending():
                    # Applying copies the whole problem, however few events the batch holds: under a
                    # stream of events, back-to-back small batches would take a core (and the GIL) from
                    # the request path. Rest four times as long as the batch took (at most 1 s) so the
                    # applier holds the GIL at most a fifth of the time and the next batch gathers more
                    # events; after a quiet spell an event is still applied at once.
                    self.stop.wait(min(4 * self.last_apply_s, 1.0))
                delay = 0.1
            except redis.RedisError as e:
                log.warning("event applier: Redis unavailable (%s); retrying in %.1f s", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("event applier failed on a batch; retrying")
                time.sleep(1.0)

    def start(self) -> None:
        self.ensure_group()
        for target in (self.applier, self.worker):
            t = threading.Thread(target=target, name=f"paichan-{target.__name__}", daemon=True)
            t.start()
            self.threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    # ------------------------------------------------------------------ proposals and releases

    def proposal(self, pid: str) -> Proposal:
        raw = self.r.hget(self.k("proposals"), pid)
        if raw is None:
            raise ServiceError(404, f"no proposal '{pid}'")
        return Proposal.model_validate_json(raw)

    def latest_proposal(self) -> Proposal | None:
        props = [Proposal.model_validate_json(v) for v in self.r.hvals(self.k("proposals"))]
        props = [p for p in props if p.status == "proposed"]
        return max(props, key=lambda p: p.created_at) if props else None

    def release(self, pid: str, who: str) -> Released:
        """Make a proposal the released plan: only if nothing was released since and it still passes the checker."""
        with self.lock:
            if self.brake():
                raise ServiceError(409, "the brake is on: the released plan is held until it is lifted")
            prop = self.proposal(pid)
            if prop.status != "proposed":
                raise ServiceError(409, f"proposal '{pid}' is {prop.status}")
            if prop.base_version != self.released.version:
                raise ServiceError(409, f"proposal '{pid}' was made against plan version {prop.base_version}; "
                                        f"version {self.released.version} is released now: replan")
            current = self.problem.model_copy(update={"now": self.now()})
            report = check(current, prop.schedule)
            hard = [v for v in report.violations if v.kind != "now"]  # work due to start meanwhile starts late
            if hard:
                raise ServiceError(409, "the shop floor changed since this proposal; it fails the checker now: "
                                   + "; ".join(map(str, hard[:5])) + " — replan")
            rel = Released(version=self.released.version + 1, schedule=prop.schedule, kpis=report.kpis,
                           released_by=who, released_at=utcnow(), proposal=pid)
            prop.status, prop.decided_by, prop.decided_at = "released", who, rel.released_at
            pipe = self.r.pipeline(transaction=True)
            pipe.set(self.k("released"), rel.model_dump_json())
            pipe.hset(self.k("proposals"), pid, prop.model_dump_json())
            for other in self.r.hvals(self.k("proposals")):
                o = Proposal.model_validate_json(other)
                if o.status == "proposed" and o.id != pid:
                    o.status = "superseded"
                    pipe.hset(self.k("proposals"), o.id, o.model_dump_json())
            pipe.execute()
            before, self.released = self.released, rel
            patch = plan_patch(current, before.schedule, rel.schedule)
        self.audit("release", who, proposal=pid, plan_version=rel.version, moved=len(prop.diff.moved))
        self.notify("release", version=rel.version, proposal=pid, by=who,
                    kpis=rel.kpis.model_dump() if rel.kpis else None, **patch)
        self.publish(rel)
        return rel

    def reject(self, pid: str, who: str, reason: str | None) -> Proposal:
        prop = self.proposal(pid)
        if prop.status != "proposed":
            raise ServiceError(409, f"proposal '{pid}' is {prop.status}")
        prop.status, prop.decided_by, prop.decided_at, prop.reason = "rejected", who, utcnow(), reason
        self.r.hset(self.k("proposals"), pid, prop.model_dump_json())
        self.audit("reject", who, proposal=pid, reason=reason)
        self.notify("reject", proposal=pid, by=who, reason=reason)
        return prop

    def publish(self, rel: Released) -> list[str]:
        """Write the released plan as B2MML per plant to the outbox and POST it to the MES when configured."""
        cfg = self.config.publish
        done: list[str] = []
        plants = sorted({plant_of(s.resource) for s in rel.schedule.operations})
        for plant in plants:
            try:
                body = self.plan_b2mml(rel.schedule, cfg.b2mml_version, plant)
            except Exception as e:
                self.audit("publish-failed", "publisher", plant=plant, error=str(e))
                continue
            if self.outbox is not None:
                self.outbox.mkdir(parents=True, exist_ok=True)
                path = self.outbox / f"plan-v{rel.version}-{plant}.xml"
                path.write_bytes(body)
                done.append(str(path))
            if cfg.url and cfg.secret:
                try:
                    headers = {**signed_headers(cfg.secret, body), "content-type": "application/xml"}
                    resp = httpx.post(cfg.url, content=body, headers=headers, timeout=10)
                    done.append(f"{cfg.url} {resp.status_code}")
                except httpx.HTTPError as e:
                    self.audit("publish-failed", "publisher", plant=plant, url=cfg.url, error=str(e))
        self.audit("publish", "publisher", plan_version=rel.version, targets=done)
        return done

    def plan_b2mml(self, schedule: Schedule, version: Literal["0600", "0700"], plant: str | None) -> bytes:
        """The plan as XSD-valid B2MML, for one plant (its machines' operations) or all."""
        if plant is None:
            return write_b2mml(self.problem, schedule, version, origin=self.clock.origin)
        docs = write_b2mml_per_plant(self.problem, schedule, version, origin=self.clock.origin)
        if plant not in docs:
            raise ServiceError(404, f"plant: no operation of the plan runs in plant '{plant}' "
                                    f"(plants: {', '.join(docs)})")
        return docs[plant]

    # ------------------------------------------------------------------ pins and brake

    def pins(self) -> list[PinRecord]:
        return [PinRecord.model_validate_json(v) for v in self.r.hvals(self.k("pins"))]

    def add_pin(self, req: PinRequest, who: str) -> PinRecord:
        with self.lock:
            findings = pin_findings(self.problem.model_copy(update={"now": self.now()}), self.released.schedule,
                                    req, self.clock)
        if findings:
            raise ServiceError(422, "; ".join(findings))
        pin = PinRecord(**req.model_dump(), id=uuid.uuid4().hex[:10], created_by=who, created_at=utcnow())
        self.r.hset(self.k("pins"), pin.id, pin.model_dump_json())
        self.audit("pin", who, pin=pin.model_dump(mode="json"))
        self.notify("pin", pin=pin.model_dump(mode="json"))
        return pin

    def remove_pin(self, pin_id: str, who: str) -> None:
        if not self.r.hdel(self.k("pins"), pin_id):
            raise ServiceError(404, f"no pin '{pin_id}'")
        self.audit("unpin", who, pin=pin_id)
        self.notify("unpin", id=pin_id)

    def brake(self) -> dict[str, Any] | None:
        raw = self.r.get(self.k("brake"))
        return json.loads(raw) if raw else None

    def set_brake(self, on: bool, who: str, reason: str | None = None) -> dict[str, Any] | None:
        if on:
            state = {"on": True, "by": who, "at": utcnow().isoformat(), "reason": reason}
            self.r.set(self.k("brake"), json.dumps(state))
            self.audit("brake", who, reason=reason)
            self.notify("brake", brake=state)
            return state
        self.r.delete(self.k("brake"))
        self.audit("brake-lifted", who)
        self.notify("brake", brake=None)
        return None

    # ------------------------------------------------------------------ reads

    def view(self, pid: str | None = None) -> dict[str, Any]:
        """What the planner's page draws: the released plan, or a proposal with its moves' old places as ghosts."""
        tail = self.r.xrevrange(self.k("live"), count=1)  # first: pushes after this id are not in the view
        with self.lock:
            problem = self.problem.model_copy(update={"now": self.now()})
            rel = self.released
        pins = self.pins()
        pinned = {p.operation for p in pins if p.kind == "operation" and p.operation}
        origin = self.clock.origin.isoformat()
        if pid is None:
            kpis, violations = kpis_of(problem, rel.schedule)
            out = plan_view(problem, rel.schedule, kpis=kpis or rel.kpis, origin=origin, pinned=pinned,
                            title=self.config.name)
            out["violations"] = violations[:50]
        else:
            prop = self.proposal(pid)
            out = plan_view(problem, prop.schedule, kpis=prop.kpis_after, origin=origin, pinned=pinned,
                            title=self.config.name)
            mix = {m["id"]: i for i, m in enumerate(out["machines"])}
            base = rel.schedule.by_operation() if rel.version == prop.base_version else {}
            now_at = prop.schedule.by_operation()
            ghosts = []
            for m in prop.diff.moved:
                if m.from_resource in mix and m.from_start is not None:
                    old = base.get(m.operation)
                    length = (old.end - old.start) if old else now_at[m.operation].end - now_at[m.operation].start
                    ghosts.append([m.operation, mix[m.from_resource], m.from_start, m.from_start + length])
            out["proposal"] = {**proposal_card(prop), "moved_ops": [m.operation for m in prop.diff.moved],
                               "ghosts": ghosts, "tardiness_worse_orders": prop.diff.tardiness_worse[:200],
                               "decided_by": prop.decided_by, "reason": prop.reason}
            out["violations"] = []
        open_props = [Proposal.model_validate_json(v) for v in self.r.hvals(self.k("proposals"))]
        jobs = [ReplanJob.model_validate_json(v) for v in self.r.hvals(self.k("replans"))]
        out.update(
            plan_version=rel.version, released_by=rel.released_by, released_at=rel.released_at.isoformat(),
            brake=self.brake(), pins=[p.model_dump(mode="json") for p in pins],
            proposals=[proposal_card(p) for p in sorted(open_props, key=lambda p: p.created_at, reverse=True)
                       if p.status == "proposed"],
            replans=[{"id": j.id, "status": j.status, "scope": j.spec.scope, "target": j.spec.target}
                     for j in jobs if j.status in ("queued", "running")],
            live_from=tail[0][0] if tail else "0-0")
        return out

    def kpis(self) -> dict[str, Any]:
        with self.lock:
            current = self.problem.model_copy(update={"now": self.now()})
            rel = self.released
        k, violations = kpis_of(current, rel.schedule)
        prop = self.latest_proposal()
        return {"plan_version": rel.version, "released": k.model_dump() if k else None,
                "released_violations": violations[:50],
                "proposed": prop.kpis_after.model_dump() if prop else None, "proposal": prop.id if prop else None}

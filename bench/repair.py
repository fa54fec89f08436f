"""Live repair: from a shop-floor event to a checker-verified proposal, on line plans and a network.

    python -m bench.repair [--sizes 500 2000 10000] [--no-network] [--events 12] [--quick]
                           [--budget 150] [--baselines 1] [--baseline-limit 30] [--append]
                           [--out bench/results/repair.md]

Plans. ``line plan N``: a plant ``P1`` of ``ceil(N / 500)`` lines; each line is a seeded
``paichan.generators.factory_instance`` of about ``N / lines`` operations whose machines are
renamed ``P1/L<k>/<machine>`` (its operator pool ``P1/L<k>/OPERATORS``, its materials
``L<k>-STEEL``/``L<k>-PARTS``, its orders ``L<k>-SO-...``), so that line scopes work
(``factory_instance`` alone names machines ``CUT01`` ..., without ``/``). ``network_10x10``:
``scenarios/network_10x10.yaml`` through ``global_problem`` (machines ``P<i>/L<j>/<m>``).
Each plan is solved once (``--start-limit`` s, recorded in the table) and the clock is put at
``T0``, the 20th percentile of the plan's start times: operations that ended by ``T0`` become
``done``, running ones ``started`` (with their actuals; the plan is unchanged and passes the
checker). Operations planned to end in the last 30 minutes before ``T0`` are left ``started``:
they are the ones that can be reported finished late.

Service. A :class:`paichan.service.engine.PlanService` on a private embedded Redis
(``appendfsync always``), ``replanning.auto = True``, ``time_limit`` ``--time-limit`` (0.8 s),
``freeze_minutes`` 30, a fake clock that advances 2 minutes per event. Its applier and replan
worker threads run as in ``paichan serve``.

Events, cycled in this order: ``down`` (a busy machine of the line breaks down),
``available`` (it is repaired), ``done-early`` (a running operation finishes before its
planned end), ``done-late`` (a running operation planned to end before now finishes now),
``rush`` (a new order through ``add_orders``, due in 8 hours, priority 5), ``supplier-delay``.
There is no shop-floor event for a material receipt (events are machine states and operation
progress only; ``add_orders`` changes orders, nothing changes a material's receipts), so a
supplier delay is modelled as an order change: the material-consuming first operation's order
is re-sent through ``add_orders`` with its release moved 4 hours later (what the planner would
do when the order's kit arrives late). Both order kinds make the service replan the whole plan
(scope ``all``, time limit ``max(time_limit, 5 s)``): that is its rule for orders.

Measured per event:

* **latency**: wall time from ``accept()`` (or ``add_orders()``) returning — the moment
  ``POST /events`` answers 202 — until a proposal for it is stored (the proposal has passed the
  independent checker; polled every 10 ms). Escalations (a line that makes a due date worse is
  handed to its plant) are waited for before the next event but do not count in the latency.
* **moved untouched**: the event *touches* (a) the operations released on the affected
  machine (the machine that went down/up, the machine of the finished operation, the machines
  the rush order's operations got, the machines of the changed order's operations), (b) the
  operations of a new or changed order, and (c) every routing successor (transitively) of (a)
  and (b). Operations whose released start has passed (``< now``) must move however the event
  looks; they count as touched too. Every other operation that is planned, released, and free
  to move (in the replan's scope, starting at or after ``now + freeze``) is *untouched*. The
  table reports moved untouched / untouched in scope (the target: at most 10 %), and, for
  reference, the moved untouched as a share of all planned operations.
* **sum |Δstart|**: the proposal's ``diff.sum_abs_delta`` (minutes).
* **objective**: the proposal's plan valued with the problem's own objective (100 x weighted
  tardiness + makespan, from the checker's KPIs, *without* the stability term) versus a
  from-scratch solve of the same repair problem (same pins and freeze, no warm start, no
  stability term) given ``--baseline-limit`` s. Only the first ``--baselines`` events of a run
  get a baseline (each costs its limit plus model building). The baseline's status, its first
  and best objective are recorded: it must have improved on its first solution.
* **where the time goes**: each replan job's ``repair_problem``, ``solve`` (split into
  compile, the heuristic's first solution, the rest of the search), the checker calls of
  the proposal, and the rest (Redis, the applier, queues), by wrapping the engine's functions.

The solver runs with ``workers=2`` on the same 2 cores as everything else.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.machine import ram
from paichan.bus.server import EmbeddedRedis
from paichan.checker import check
from paichan.domain import (
    Actual,
    ObjectiveName,
    Operation,
    OperationStatus,
    Order,
    Problem,
    Schedule,
)
from paichan.domain.events import MachineState, MachineStateEvent, OperationProgressEvent, ProgressStatus
from paichan.generators import factory_instance
from paichan.service import engine
from paichan.service.config import PublishConfig, ReplanConfig, ServiceConfig
from paichan.service.engine import PlanService, Proposal, ReplanJob
from paichan.solver import SolveParams, solve

KINDS = ("down", "available", "done-early", "done-late", "rush", "supplier-delay")
PER_LINE = 500


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- plans


def line_plan(operations: int, seed: int = 1, per_line: int = PER_LINE) -> Problem:
    """Plant P1 of ceil(operations / per_line) factory lines, machines ``P1/L<k>/<machine>``."""
    lines = max(1, math.ceil(operations / per_line))
    base: Problem | None = None
    resources, orders, materials = [], [], []
    for k in range(1, lines + 1):
        n = operations // lines + (1 if k <= operations % lines else 0)
        p = factory_instance(n, seed * 1000 + k)
        base = base or p
        rmap = {r.id: f"P1/L{k}/{r.id}" for r in p.resources}
        mmap = {m.id: f"L{k}-{m.id}" for m in p.materials}
        omap = {o.id: f"L{k}-{o.id}" for o in p.orders}

        def op_id(old: str, omap: dict[str, str] = omap) -> str:
            order, _, step = old.partition("/")
            return f"{omap[order]}/{step}"

        for r in p.resources:
            resources.append(r.model_copy(update={"id": rmap[r.id]}))
        for m in p.materials:
            materials.append(m.model_copy(update={"id": mmap[m.id]}))
        for o in p.orders:
            ops = []
            for op in o.operations:
                modes = [m.model_copy(update={"resource": rmap[m.resource], "secondary": [
                    s.model_copy(update={"resource": rmap[s.resource]}) for s in m.secondary]}) for m in op.modes]
                preds = None if op.predecessors is None else [
                    pr.model_copy(update={"operation": op_id(pr.operation)}) for pr in op.predecessors]
                mats = [u.model_copy(update={"material": mmap[u.material]}) for u in op.materials]
                ops.append(op.model_copy(update={"id": op_id(op.id), "modes": modes, "predecessors": preds,
                                                 "materials": mats}))
            orders.append(o.model_copy(update={"id": omap[o.id], "operations": ops}))
    assert base is not None
    return Problem(name=f"line-plan-{operations}", origin=datetime(2026, 11, 23, tzinfo=UTC),
                   time_unit="minute", resources=resources, orders=orders, materials=materials,
                   objective=base.objective)


def network_plan() -> Problem:
    from paichan.agents.scenario import global_problem, load_scenario

    return global_problem(load_scenario(Path("scenarios") / "network_10x10.yaml"))


def start_state(problem: Problem, schedule: Schedule) -> tuple[Problem, int]:
    """Put the clock at T0 (20th percentile of starts): finished work done, running work started."""
    starts = sorted(s.start for s in schedule.operations)
    t0 = starts[len(starts) // 5]
    by_op = schedule.by_operation()
    p = problem.model_copy(deep=True)
    for o in p.orders:
        for op in o.operations:
            s = by_op.get(op.id)
            if s is None or s.start >= t0:
                continue
            if s.end <= t0 - 30:
                op.status, op.actual = OperationStatus.DONE, Actual(resource=s.resource, start=s.start, end=s.end)
            else:
                op.status, op.actual = OperationStatus.STARTED, Actual(resource=s.resource, start=s.start)
    p.now = t0
    return p, t0


# ----------------------------------------------------------------------------- timing of the engine


class Phases:
    """Wraps the engine's functions to time each replan job's phases (one job runs at a time)."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.repaired: list[Problem] = []
        self._orig: dict[str, Any] = {}

    @contextmanager
    def installed(self) -> Iterator[Phases]:
        sm = sys.modules["paichan.solver.solve"]  # the module (the package exports the function as 'solve')

        def wrap(mod: Any, name: str, phase: str, start: bool = False,
                 after: Callable[[Any], None] | None = None) -> None:
            fn = getattr(mod, name)
            self._orig[f"{mod.__name__}.{name}"] = (mod, name, fn)

            def timed(*a: Any, **kw: Any) -> Any:
                if start:
                    self.jobs.append({})
                t = time.monotonic()
                try:
                    out = fn(*a, **kw)
                finally:
                    if self.jobs:
                        self.jobs[-1][phase] = self.jobs[-1].get(phase, 0.0) + time.monotonic() - t
                if after is not None:
                    after(out)
                return out
            setattr(mod, name, timed)

        def keep_repaired(out: Any) -> None:
            self.repaired.append(out[0])

        def keep_result(out: Any) -> None:
            if self.jobs:
                first = next((h.time for h in out.history), None)
                self.jobs[-1]["first_solution"] = first
                self.jobs[-1]["solver_wall"] = out.wall_time
                self.jobs[-1]["method"] = out.stats.get("method")
                self.jobs[-1]["status"] = str(out.status.value)

        wrap(engine, "repair_problem", "repair_problem", start=True, after=keep_repaired)
        wrap(engine, "solve", "solve", after=keep_result)
        wrap(sm, "compile_problem", "compile")
        wrap(sm, "_verified", "solver_checker")
        wrap(engine, "check", "checker")
        wrap(engine, "kpis_of", "checker")
        try:
            yield self
        finally:
            for mod, name, fn in self._orig.values():
                setattr(mod, name, fn)


# ----------------------------------------------------------------------------- events


def successors(problem: Problem) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for o in problem.orders:
        for k, op in enumerate(o.operations):
            preds = [pr.operation for pr in op.predecessors] if op.predecessors is not None else (
                [o.operations[k - 1].id] if k else [])
            for pr in preds:
                out.setdefault(pr, []).append(op.id)
    return out


def closure(start: set[str], succ: dict[str, list[str]]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for n in succ.get(todo.pop(), []):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


class Runner:
    """One plan, one service, a sequence of events; a row per event."""

    def __init__(self, name: str, problem: Problem, schedule: Schedule, t0: int, args: argparse.Namespace,
                 phases: Phases) -> None:
        self.name, self.args, self.phases = name, args, phases
        self.t = t0
        self.dir = Path(".bench-redis") / f"repair-{uuid.uuid4().hex[:6]}"
        self.server = EmbeddedRedis(self.dir, appendfsync="always").start()
        replanning = ReplanConfig(auto=True, time_limit=args.time_limit, freeze_minutes=30, stability=args.stability)
        cfg = ServiceConfig(name="bench-" + "".join(c if c.isalnum() else "-" for c in name), replanning=replanning,
                            publish=PublishConfig(outbox=None))
        origin = problem.origin or datetime(2026, 11, 23, tzinfo=UTC)
        self.origin = origin if origin.tzinfo else origin.replace(tzinfo=UTC)
        self.svc = PlanService(problem, schedule, cfg, self.server.url, clock=self.clock)
        self.svc.start()
        self.seq = 0
        self.down: str | None = None

    def clock(self) -> datetime:
        return self.origin + timedelta(minutes=self.t)

    def close(self) -> None:
        self.svc.close()
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def jobs(self) -> list[ReplanJob]:
        return [ReplanJob.model_validate_json(v) for v in self.svc.r.hvals(self.svc.k("replans"))]

    # -- the event of each kind, or None when the plan offers no candidate
    def make(self, kind: str, lines: list[str]) -> tuple[Callable[[], str | None], set[str], set[str]] | None:
        """(send, touched machines, touched operations); send returns the job id when it is known."""
        p, rel = self.svc.problem, self.svc.released.schedule
        now = self.t
        self.seq += 1
        eid = f"ev{self.seq}"
        at = self.clock()
        planned = {op.id: (o, op) for o, op in p.operations()}
        line = lines[self.seq % len(lines)]
        if kind == "down":
            busy: dict[str, int] = {}
            for scope in (line + "/", ""):  # the line of the turn, else the busiest machine anywhere
                for s in rel.operations:
                    if s.resource.startswith(scope) and s.start >= now and planned[s.operation][1].status == \
                            OperationStatus.PLANNED:
                        busy[s.resource] = busy.get(s.resource, 0) + 1
                if busy:
                    break
            if not busy:
                return None
            m = max(busy, key=lambda r: busy[r])
            self.down = m
            ev = MachineStateEvent(event_id=eid, source="bench", time=at, machine=m, state=MachineState.DOWN,
                                   raw_state="fault", raw_model="webhook")
            return self._accept(ev), {m}, set()
        if kind == "available":
            if self.down is None:
                return None
            m, self.down = self.down, None
            ev = MachineStateEvent(event_id=eid, source="bench", time=at, machine=m, state=MachineState.AVAILABLE,
                                   raw_state="idle", raw_model="webhook")
            return self._accept(ev), {m}, set()
        if kind in ("done-early", "done-late"):
            cands = []
            by = rel.by_operation()
            # the latest actual start per machine: finishing an earlier one now would overlap it
            latest: dict[str, int] = {}
            succ = successors(p)
            for _, op in p.operations():
                if op.actual is not None:
                    latest[op.actual.resource] = max(latest.get(op.actual.resource, -1), op.actual.start)
            for oid, (_, op) in planned.items():
                sched = by.get(oid)
                if op.status != OperationStatus.STARTED or sched is None or op.actual is None \
                        or latest.get(op.actual.resource) != op.actual.start \
                        or any(planned[n][1].status != OperationStatus.PLANNED for n in succ.get(oid, [])):
                    continue  # finishing it now would overlap later work on its machine or in its order
                if kind == "done-early" and sched.end > now + 10:
                    cands.append((sched.end - now, oid, op.actual))
                if kind == "done-late" and sched.end < now:
                    cands.append((now - sched.end, oid, op.actual))
            if not cands:
                return None
            _, oid, act = max(cands, key=lambda c: c[0]) if kind == "done-late" else sorted(cands)[len(cands) // 2]
            ev2 = OperationProgressEvent(event_id=eid, source="bench", time=at, operation=oid,
                                         status=ProgressStatus.DONE, machine=act.resource, actual_end=at,
                                         actual_start=self.origin + timedelta(minutes=act.start))
            return self._accept(ev2), {act.resource}, {oid}
        if kind == "rush":
            donor = next(o for o in p.orders if all(op.status == OperationStatus.PLANNED for op in o.operations))
            oid = f"RUSH-{self.seq}"
            ops = []
            for op in donor.operations:
                step = op.id.partition("/")[2]
                preds = None if op.predecessors is None else [
                    pr.model_copy(update={"operation": f"{oid}/{pr.operation.partition('/')[2]}"})
                    for pr in op.predecessors]
                ops.append(Operation(**{**op.model_dump(exclude={"predecessors", "id", "pin"}),
                                        "id": f"{oid}/{step}", "predecessors": preds}))
            order = Order(**{**donor.model_dump(exclude={"operations", "id"}), "id": oid, "operations": ops,
                             "release": now, "due": now + 480, "priority": 5})
            return self._orders([order]), set(), {op.id for op in ops}
        if kind == "supplier-delay":
            cand = [o for o in p.orders if o.operations[0].materials and all(
                op.status == OperationStatus.PLANNED for op in o.operations)
                and o.id in {s.order for s in rel.operations if s.start >= now + 30}]
            if not cand:
                return None
            o = cand[len(cand) // 3]
            changed = o.model_copy(update={"release": max(o.release, now) + 240})
            return self._orders([changed]), set(), {op.id for op in o.operations}
        raise ValueError(kind)

    def _accept(self, ev: MachineStateEvent | OperationProgressEvent) -> Callable[[], str | None]:
        def send() -> str | None:
            self.svc.accept([ev])
            return None
        return send

    def _orders(self, orders: list[Order]) -> Callable[[], str | None]:
        def send() -> str | None:
            out = self.svc.add_orders(orders, "bench")
            return str(out["replan"])
        return send

    def run_event(self, kind: str, lines: list[str]) -> dict[str, Any] | None:
        self.t += 2
        rel_before = self.svc.released.schedule
        known = {j.id for j in self.jobs()}
        made = self.make(kind, lines)
        if made is None:
            log(f"   {kind}: no candidate in this plan, skipped")
            return None
        send, machines, ops = made
        n_phase = len(self.phases.jobs)
        t_acc = time.monotonic()
        jid = send()
        t_ack = time.monotonic()
        first: tuple[float, Proposal] | None = None
        deadline = t_ack + 600
        while time.monotonic() < deadline:
            jobs = [j for j in self.jobs() if j.id not in known]
            mine = [j for j in jobs if jid is None or j.id == jid or j.trigger == "escalation"]
            if first is None:
                props = [j for j in mine if j.proposal and j.trigger != "escalation"]
                if props:
                    first = (time.monotonic() - t_ack, self.svc.proposal(str(props[0].proposal)))
            if mine and all(j.status in ("done", "failed", "cancelled") for j in jobs) and (
                    first is not None or any(j.status == "failed" for j in mine)):
                break
            time.sleep(0.01)
        row: dict[str, Any] = {"kind": kind, "ack_ms": round(1000 * (t_ack - t_acc), 1)}
        jobs = sorted((j for j in self.jobs() if j.id not in known), key=lambda j: j.created_at)
        row["jobs"] = [f"{j.trigger}:{j.spec.scope}:{j.status}" for j in jobs]
        row["phases"] = self.phases.jobs[n_phase:n_phase + 1]
        if first is None:
            row["error"] = "; ".join(str(j.error) for j in jobs if j.error) or "no proposal"
            if len(self.phases.repaired) > n_phase:  # keep the failed repair problem for a look
                dump = Path(".bench-runs") / f"repair-failed-{self.svc.config.name}-{kind}.json"
                dump.parent.mkdir(parents=True, exist_ok=True)
                dump.write_text(json.dumps({"repair_problem": self.phases.repaired[n_phase].model_dump(mode="json"),
                                            "released": rel_before.model_dump(mode="json")}))
                row["dump"] = str(dump)
            log(f"   {kind}: no proposal ({row['error'][:200]})")
            return row
        latency, prop = first
        row["latency_s"] = round(latency, 3)
        row.update(self.measure(prop, rel_before, machines, ops, jobs[0]))
        row["repaired_index"] = n_phase
        # release the newest proposal so the next event starts from it
        latest = self.svc.latest_proposal()
        if latest is not None:
            try:
                self.svc.release(latest.id, "bench")
                row["released"] = "this" if latest.id == prop.id else "escalation's"
            except engine.ServiceError as e:
                row["released"] = f"refused: {e}"
        log(f"   {kind}: {latency:.2f} s, moved {row['moved']} (untouched moved {row['untouched_moved']}/"
            f"{row['untouched_free']}), sum|d| {row['sum_abs_delta']}, jobs {row['jobs']}")
        return row

    def measure(self, prop: Proposal, rel: Schedule, machines: set[str], ops: set[str],
                job: ReplanJob) -> dict[str, Any]:
        p = self.svc.problem
        succ = successors(p)
        after = prop.schedule.by_operation()
        machines = machines | {after[o].resource for o in ops if o in after}
        now = self.clock_units()
        planned = {op.id for _, op in p.operations() if op.status == OperationStatus.PLANNED}
        touched = {s.operation for s in rel.operations if s.resource in machines} | ops
        touched |= {s.operation for s in rel.operations if s.start < now}
        touched = closure(touched, succ)
        freeze = now + 30
        from paichan.service.planning import in_scope
        free = {s.operation for s in rel.operations if s.operation in planned and s.start >= freeze
                and in_scope(s.resource, job.spec.scope, job.spec.target)}
        untouched = free - touched
        moved = {m.operation for m in prop.diff.moved}
        weights = p.objective.weights
        k = prop.kpis_after
        own = sum(w * getattr(k, n.value) for n, w in weights.items() if n != ObjectiveName.STABILITY)
        return {"moved": len(moved), "untouched_moved": len(moved & untouched), "untouched_free": len(untouched),
                "untouched_pct": round(100 * len(moved & untouched) / max(1, len(untouched)), 1),
                "untouched_pct_plan": round(100 * len(moved & untouched) / max(1, len(planned)), 2),
                "sum_abs_delta": prop.diff.sum_abs_delta, "tardiness_worse": len(prop.diff.tardiness_worse),
                "objective_own": own, "objective_with_stability": prop.objective, "scope": prop.scope,
                "proposal_id": prop.id}

    def clock_units(self) -> int:
        return self.svc.now()


def own_problem(rp: Problem, base: Problem) -> Problem:
    """The repair problem with the plan's own objective (no stability term)."""
    return rp.model_copy(update={"objective": base.objective})


def baseline(rp: Problem, base: Problem, limit: float) -> dict[str, Any]:
    """A from-scratch solve (no warm start, no stability) of the same repair problem."""
    p = own_problem(rp, base)
    t = time.monotonic()
    res = solve(p, SolveParams(time_limit=limit, workers=2))
    wall = time.monotonic() - t
    out: dict[str, Any] = {"status": res.status.value, "wall_s": round(wall, 1),
                           "first": res.history[0].objective if res.history else None,
                           "first_source": res.history[0].source if res.history else None,
                           "best": res.objective, "best_source": res.history[-1].source if res.history else None,
                           "bound": res.best_bound, "method": res.stats.get("method")}
    out["improved"] = bool(res.history and res.objective is not None and res.objective < res.history[0].objective)
    if res.schedule is not None:
        rep = check(p, res.schedule)
        out["checker_ok"] = rep.ok
    return out


# ----------------------------------------------------------------------------- main


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def run_plan(name: str, problem: Problem, args: argparse.Namespace, phases: Phases) -> dict[str, Any]:
    ops = sum(len(o.operations) for o in problem.orders)
    log(f"== {name}: {ops} operations, {len(problem.resources)} resources; starting plan, {args.start_limit:g} s")
    t = time.monotonic()
    res = solve(problem, SolveParams(time_limit=args.start_limit, workers=2))
    start_wall = time.monotonic() - t
    if res.schedule is None:
        raise SystemExit(f"{name}: no starting plan ({res.status})")
    p0, t0 = start_state(problem, res.schedule)
    rep = check(p0, res.schedule)
    if not rep.ok:
        raise SystemExit(f"{name}: the starting state fails the checker: {rep.violations[:3]}")
    lines = sorted({"/".join(r.id.split("/")[:2]) for r in problem.resources if r.id.count("/") >= 2})
    info = {"name": name, "operations": ops, "lines": len(lines), "start_status": res.status.value,
            "start_objective": res.objective, "start_wall_s": round(start_wall, 1), "t0": t0,
            "start_method": res.stats.get("method")}
    log(f"   start: {res.status.value} objective {res.objective} in {start_wall:.1f} s; T0 = {t0}")
    runner = Runner(name, p0, res.schedule, t0, args, phases)
    rows: list[dict[str, Any]] = []
    try:
        t_start = time.monotonic()
        for i in range(args.events):
            if time.monotonic() - t_start > args.budget:
                log(f"   budget of {args.budget:g} s used: {i} events sent")
                break
            kind = KINDS[i % len(KINDS)]
            row = runner.run_event(kind, lines)
            if row is not None:
                rows.append(row)
    finally:
        runner.close()
    base_rows = [r for r in rows if "latency_s" in r][: args.baselines]
    for r in base_rows:
        rp = phases.repaired[r["repaired_index"]]
        log(f"   baseline for {r['kind']}: from scratch, {args.baseline_limit:g} s")
        b = baseline(rp, problem, args.baseline_limit)
        r["baseline"] = b
        if b["best"]:
            r["ratio"] = round(r["objective_own"] / b["best"], 3)
        log(f"   baseline: {b}")
    info["rows"] = rows
    return info


def machine_state() -> str:
    load = os.getloadavg()
    return (f"{platform.platform()}, {os.cpu_count()} cores, {ram()} RAM, load average before the run "
            f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} (other work running in parallel on the same cores)")


def report(plans: list[dict[str, Any]], args: argparse.Namespace) -> str:
    out = ["# Live repair: event to checker-verified proposal", "",
           f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Replan time limit as listed per run (orders: at least "
           "5 s, the service's rule), freeze 30 min, embedded Redis with appendfsync always, solver workers=2. "
           "Definitions: the module docstring of `bench/repair.py`. Runs (each plan: command, wall time, machine "
           "state when it started):", ""]
    for pl in plans:
        out.append(f"* {pl['name']}: `{pl.get('command', '').strip()}` "
                   f"({pl.get('settings', f'replan time limit {args.time_limit:g} s, stability weight 1')}), "
                   f"{pl.get('wall_min')} min; "
                   f"{pl.get('machine')}")
    out += ["",
           "| plan | operations | lines | starting plan (status, objective, s) | events | latency p50 s | "
           "latency p95 s | max s | untouched moved, worst % (of free in scope) | untouched moved, mean % "
           "| mean sum abs delta | failed |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pl in plans:
        ok = [r for r in pl["rows"] if "latency_s" in r]
        lat = [r["latency_s"] for r in ok]
        up = [r["untouched_pct"] for r in ok]
        out.append(f"| {pl['name']} | {pl['operations']} | {pl['lines']} | {pl['start_status']}, "
                   f"{pl['start_objective']:.0f}, {pl['start_wall_s']} | {len(pl['rows'])} | {pct(lat, .5):.2f} | "
                   f"{pct(lat, .95):.2f} | {max(lat, default=float('nan')):.2f} | {max(up, default=0):.1f} | "
                   f"{statistics.mean(up) if up else float('nan'):.1f} | "
                   f"{statistics.mean(r['sum_abs_delta'] for r in ok) if ok else float('nan'):.0f} | "
                   f"{len(pl['rows']) - len(ok)} |")
    out += ["", "Latency by event kind (p50 / max, s):", "",
            "| plan | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for pl in plans:
        cells = []
        for k in KINDS:
            lat = [r["latency_s"] for r in pl["rows"] if r["kind"] == k and "latency_s" in r]
            cells.append(f"{pct(lat, .5):.2f} / {max(lat):.2f}" if lat else "-")
        out.append(f"| {pl['name']} | " + " | ".join(cells) + " |")
    out += ["", "Where a line repair's time goes (mean over the events' first jobs, s): repair_problem, "
            "solve (of which compile, and the time to the first solution: warm start or heuristic), checker "
            "(the proposal's checks in the engine), and latency minus all of these (applier, queue, Redis, "
            "proposal storing):", "",
            "| plan | scope | jobs | latency | repair_problem | solve | compile | first solution | solver's checker "
            "| engine checker | rest |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for pl in plans:
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in pl["rows"]:
            if "latency_s" in r and r["phases"]:
                groups.setdefault(r["scope"].split(":")[0], []).append(r)
        for scope, rs in groups.items():
            def m(key: str, rs: list[dict[str, Any]] = rs) -> float:
                return statistics.mean(float(r["phases"][0].get(key) or 0.0) for r in rs)
            lat = statistics.mean(r["latency_s"] for r in rs)
            known = m("repair_problem") + m("solve") + m("checker")
            out.append(f"| {pl['name']} | {scope} | {len(rs)} | {lat:.2f} | {m('repair_problem'):.2f} | "
                       f"{m('solve'):.2f} | {m('compile'):.2f} | {m('first_solution'):.2f} | "
                       f"{m('solver_checker'):.2f} | {m('checker'):.2f} | {lat - known:.2f} |")
    out += ["", f"Objective (100 x weighted tardiness + makespan, no stability term) of the proposal vs a "
            f"from-scratch solve of the same repair problem ({args.baseline_limit:g} s, no warm start):", "",
            "| plan | event | proposal | from scratch: status, first, best (source) | improved on first | "
            "proposal / from scratch | baseline wall s |", "|---|---|---|---|---|---|---|"]
    for pl in plans:
        for r in pl["rows"]:
            b = r.get("baseline")
            if b:
                out.append(f"| {pl['name']} | {r['kind']} ({r['scope']}) | {r['objective_own']:.0f} | "
                           f"{b['status']}, {b['first']}, {b['best']} ({b['best_source']}) | {b['improved']} | "
                           f"{r.get('ratio')} | {b['wall_s']} |")
    out += ["", "Every event (latency s; moved; untouched moved / untouched free in scope; sum abs delta; "
            "jobs it caused):", "", "| plan | event | ack ms | latency | moved | untouched | sum abs delta "
            "| due dates worse | jobs |", "|---|---|---|---|---|---|---|---|---|"]
    for pl in plans:
        for r in pl["rows"]:
            if "latency_s" in r:
                out.append(f"| {pl['name']} | {r['kind']} | {r['ack_ms']} | {r['latency_s']} | {r['moved']} | "
                           f"{r['untouched_moved']}/{r['untouched_free']} | {r['sum_abs_delta']} | "
                           f"{r['tardiness_worse']} | {', '.join(r['jobs'])} |")
            else:
                out.append(f"| {pl['name']} | {r['kind']} | {r['ack_ms']} | - | - | - | - | - | "
                           f"{', '.join(r['jobs'])}: {r.get('error', '')[:120]} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[500, 2000, 10000])
    ap.add_argument("--network", action=argparse.BooleanOptionalAction, default=True,
                    help="also network_10x10 (default on)")
    ap.add_argument("--events", type=int, default=12, help="events per plan (cycling through the kinds)")
    ap.add_argument("--time-limit", type=float, default=0.8, help="the service's replan time limit")
    ap.add_argument("--start-limit", type=float, default=10.0, help="time limit of the starting plan's solve")
    ap.add_argument("--baselines", type=int, default=1, help="events per plan compared with a from-scratch solve")
    ap.add_argument("--baseline-limit", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 500 operations, 6 events, 5 s baseline")
    ap.add_argument("--stability", type=int, default=1,
                    help="the service's replanning.stability weight (its default: 1)")
    ap.add_argument("--decompose", action="store_true",
                    help="experiment: the service's replans solve with decompose=True (LNS windows, no full model)")
    ap.add_argument("--label", default="", help="suffix of the plan names in the table (for experiments)")
    ap.add_argument("--budget", type=float, default=150.0,
                    help="seconds per plan after which no further event is sent (the events column shows how many)")
    ap.add_argument("--append", action="store_true", help="add to (or replace by name) the plans in --out's .json")
    ap.add_argument("--out", default="bench/results/repair.md")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the private Redis on the way out
    if args.quick:
        args.sizes, args.network, args.events, args.baseline_limit, args.start_limit = [500], False, 6, 5.0, 3.0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plans: list[dict[str, Any]] = []
    if args.append and out.with_suffix(".json").exists():
        plans = json.loads(out.with_suffix(".json").read_text())
    if args.decompose:
        def lns_only(p: Problem, params: SolveParams | None = None, cb: Any = None) -> Any:
            return solve(p, (params or SolveParams()).model_copy(update={"decompose": True}), cb)
        engine.solve = lns_only  # type: ignore[assignment]
    phases = Phases()
    todo: list[tuple[str, Callable[[], Problem]]] = [(f"line plan {n}", partial(line_plan, n)) for n in args.sizes]
    if args.network:
        todo.append(("network_10x10", network_plan))
    with phases.installed():
        for name, make in todo:
            t = time.monotonic()
            state = machine_state()
            name += f" {args.label}" if args.label else ""
            plan = run_plan(name, make(), args, phases)
            plan["machine"], plan["wall_min"] = state, round((time.monotonic() - t) / 60, 1)
            plan["command"] = "python -m bench.repair " + " ".join(sys.argv[1:])
            plan["settings"] = (f"replan time limit {args.time_limit:g} s, stability weight {args.stability}"
                                + (", decompose=True" if args.decompose else ""))
            plans = [p for p in plans if p["name"] != name] + [plan]
            text = report(plans, args)
            out.write_text(text)  # after every plan: a long run stopped early keeps what it measured
            out.with_suffix(".json").write_text(json.dumps(plans, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

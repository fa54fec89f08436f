"""Run a scenario: agents on Ray over the Redis bus, or the centralised baseline.

``run_scenario`` starts (or joins, with ``RAY_ADDRESS``) Ray and the bus (a
private redis-server unless ``REDIS_URL`` is set), creates the agent hosts,
feeds the orders, waits for the negotiation to settle (showing progress),
lets the lines re-optimise, plays the scripted disruptions, then collects what
the lines committed, verifies it with the independent checker against the
scenario's global problem; the service layer writes ``problem.json``, ``schedule.json``,
``kpis.json``, ``negotiations.jsonl`` and ``gantt.html`` to the output directory.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import redis
from pydantic import BaseModel, ValidationError

from paichan.agents.messages import Improve, MachineDown, NewOrder, Replan, SupplierDelay
from paichan.agents.scenario import Scenario, global_problem, machine_id, scenario_delays
from paichan.bus.envelope import Envelope, make
from paichan.bus.server import RedisUnavailable, masked, resolve_redis
from paichan.bus.streams import FIELD, Bus
from paichan.checker import CheckReport, check
from paichan.domain import Problem, Schedule, ScheduledOperation

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Shield a clean-up from a second Ctrl-C (only the main thread can change signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def host_groups(sc: Scenario) -> list[tuple[str, list[str]]]:
    """(host name, agent ids) per Ray actor, as the scenario's hosting asks."""
    groups: list[tuple[str, list[str]]] = []
    for p in sc.plants:
        lines = [f"{p.id}/{ln.id}" for ln in p.lines]
        if sc.negotiation.hosting == "per_plant":
            groups.append((p.id, [p.id, *lines]))
        else:
            groups += [(a, [a]) for a in [p.id, *lines]]
    # every supplier on its own host, whatever the hosting: each answers every line of the network, so one
    # process for all of them was the slowest hop (bench/results/latency_10x10.md)
    groups += [(s.id, [s.id]) for s in sc.suppliers]
    return groups


LOOPBACK = ("127.", "localhost", "::1", "0.0.0.0")
MAX_REDIS_RESTARTS = 5
# how long the driver waits for an unreachable Redis before it gives up on the run (s)
BUS_OUTAGE_S = float(os.environ.get("PAICHAN_BUS_OUTAGE_S", "90"))


class BusLost(RedisUnavailable):
    """Redis went away during a run and did not come back in time."""


def unreachable_bus(url: str, nodes: list[str], here: str) -> str | None:
    """Why agents on other Ray nodes could not reach the bus at ``url``, or None.

    ``nodes`` are the cluster's alive node addresses, ``here`` the driver's: a bus on a loopback
    address is only reachable when every node is this host.
    """
    host = urlsplit(url).hostname or ""
    others = sorted({n for n in nodes if n != here})
    if others and host.startswith(LOOPBACK):
        return (f"the Ray cluster (RAY_ADDRESS) has nodes on other hosts ({', '.join(others[:5])}), but the bus is "
                f"{masked(url)} (the private redis-server, or a loopback REDIS_URL): agents there would dial their "
                "own 127.0.0.1. Set REDIS_URL to a Redis every node reaches, with a password "
                "(docs/CLUSTER.md, ray_cluster.yaml)")
    return None


def _node_addresses() -> list[str]:
    import ray

    return [str(n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")]


def _this_address() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


class Network:
    """A running agent network (hosts on Ray, bus on Redis)."""

    def __init__(self, sc: Scenario, workdir: Path, progress: Progress = _stderr,
                 namespace: str | None = None) -> None:
        import ray

        from paichan.agents.host import AgentHost

        self.sc = sc
        self.progress = progress
        t0 = time.monotonic()
        self.hosts: dict[str, Any] = {}
        self.started_ray = False
        # the private server writes every commit to its AOF before answering ("always"): a kill -9 of it
        # loses nothing an agent was told is committed, and the supervisor below restarts it from that AOF
        self.url, self.server = resolve_redis(workdir, appendfsync="always")
        self.closing = threading.Event()
        self.redis_restarts = 0
        # what the driver has read so far, written out if Redis goes away for good (dump_partial)
        self.journal_raw: list[str] = []  # the journal's envelopes (JSON), in order
        self._journal_last: str | None = None  # the last journal entry id read
        self.last_states: dict[str, Any] = {}  # agent -> its last committed state read
        self.states_read_at: datetime | None = None
        self._states_polled = 0.0
        try:
            self.namespace = namespace or f"paichan:{sc.name}:{uuid.uuid4().hex[:8]}"
            # the driver's client gives up after ~2 s so that its loops can say what is going on
            self.bus = Bus(self.url, self.namespace, retries=5)
            if self.server is not None:
                threading.Thread(target=self._supervise, name="redis-supervisor", daemon=True).start()
            if not ray.is_initialized():
                address = os.environ.get("RAY_ADDRESS")
                self.progress(f"starting Ray ({'joining ' + address if address else 'local'}; "
                              "this takes 15-30 s on a small machine) ...")
                self.started_ray = True
                ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                         configure_logging=False)
            reason = unreachable_bus(self.url, _node_addresses(), _this_address())
            if reason:
                raise RedisUnavailable(reason)
            payload = sc.model_dump_json()
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # round-robin over the cluster's nodes (plants solve in parallel on every machine); soft, so a
            # host whose node dies is restarted wherever Ray can (Ray packs zero-CPU actors onto one node)
            nodes = sorted(str(n["NodeID"]) for n in ray.nodes() if n.get("Alive"))
            for k, (name, ids) in enumerate(host_groups(sc)):
                where = NodeAffinitySchedulingStrategy(nodes[k % len(nodes)], soft=True) if nodes else "DEFAULT"
                self.hosts[name] = AgentHost.options(  # type: ignore[attr-defined]
                    name=f"{self.namespace}:{name}", scheduling_strategy=where).remote(
                        payload, ids, self.url, self.namespace)
            statuses = ray.get([h.status.remote() for h in self.hosts.values()])
        except BaseException:  # Ctrl-C during start-up included: leave nothing running
            self.close()
            raise
        self.startup_s = time.monotonic() - t0
        agents = sum(len(ids) for _, ids in host_groups(sc))
        on_nodes = len({st.get("node") for st in statuses})
        self.progress(f"network up after {self.startup_s:.1f} s: {len(self.hosts)} Ray actors on {on_nodes} node(s) "
                      f"hosting {agents} agents; bus {masked(self.url)} ({self.namespace})")

    def restored_agents(self) -> list[str]:
        """Agents that a restarted host (a new incarnation) rebuilt from their committed state."""
        import ray

        try:
            return sorted(a for st in ray.get([h.status.remote() for h in self.hosts.values()], timeout=30)
                          for a in st["restored"])
        except Exception:
            return []

    def _supervise(self) -> None:
        """Restart the private redis-server from its AOF when it dies (at most 5 times)."""
        while not self.closing.wait(0.2):
            server = self.server
            if server is None or server.alive():
                continue
            code = server.proc.returncode if server.proc is not None else None
            if self.redis_restarts >= MAX_REDIS_RESTARTS:
                self.progress(f"the private redis-server died again (exit {code}); not restarting it "
                              f"({MAX_REDIS_RESTARTS} restarts already)")
                return
            self.progress(f"the private redis-server died (exit {code}); restarting it from its AOF ...")
            try:
                took = server.restart()
            except Exception as e:
                self.progress(f"could not restart the private redis-server: {e}")
                return
            self.redis_restarts += 1
            self.progress(f"redis-server is back after {took:.1f} s with every committed message; the agents "
                          "and the run carry on")

    # ------------------------------------------------------------------ state
    def _states(self, agents: list[str]) -> list[dict[str, Any] | None]:
        """The agents' committed states, in one MGET (remembered for dump_partial)."""
        if not agents:
            return []
        raw = cast(list[str | None], self.bus.r.mget([self.bus.state_key(a) for a in agents]))
        states = [None if r is None else json.loads(r) for r in raw]
        self.last_states.update({a: st for a, st in zip(agents, states, strict=True) if st is not None})
        self.states_read_at = datetime.now(UTC)
        return states

    def plant_states(self) -> dict[str, dict[str, Any]]:
        ids = [p.id for p in self.sc.plants]
        return {a: st["agent"] if st else {"orders": {}, "events": []}
                for a, st in zip(ids, self._states(ids), strict=True)}

    def line_states(self) -> dict[str, dict[str, Any]]:
        ids = self.all_lines()
        return {a: st["agent"] if st else {"orders": {}, "replans": 0}
                for a, st in zip(ids, self._states(ids), strict=True)}

    def pending(self) -> int:
        """Messages delivered to no agent yet or not yet acknowledged, over all inboxes (one round trip)."""
        keys = list(self.bus.r.scan_iter(f"{self.namespace}:inbox:*", count=1000))
        with self.bus.r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.xinfo_groups(key)
            groups = cast(list[list[dict[str, Any]]], pipe.execute())
        return sum(int(g.get("pending", 0)) + int(g.get("lag", 0) or 0) for gs in groups for g in gs)

    def tail_journal(self, limit: int = 20_000) -> int:
        """Read journal entries not read yet (at most ``limit`` now); how many were new."""
        got = 0
        while got < limit:
            start = "-" if self._journal_last is None else f"({self._journal_last}"
            batch = cast(list[tuple[str, dict[str, str]]], self.bus.r.xrange(self.bus.journal, min=start, count=5000))
            if not batch:
                break
            self.journal_raw.extend(f[FIELD] for _, f in batch)
            self._journal_last = batch[-1][0]
            got += len(batch)
        return got

    def journal(self) -> list[dict[str, Any]]:
        """Every message of the run, in order (read to the end)."""
        self.tail_journal(limit=10**12)
        return [Envelope.model_validate_json(raw).model_dump(mode="json") for raw in self.journal_raw]

    def dump_partial(self, workdir: Path) -> str:
        """Write what the driver has read (journal so far, last states read) when Redis is gone; says what."""
        workdir.mkdir(parents=True, exist_ok=True)
        journal = workdir / "negotiations.partial.jsonl"
        with journal.open("w") as f:
            for raw in self.journal_raw:
                f.write(raw + "\n")
        states = workdir / "states.partial.json"
        at = self.states_read_at.isoformat() if self.states_read_at else None
        states.write_text(json.dumps({"namespace": self.namespace, "read_at": at, "agents": self.last_states},
                                     indent=1))
        return (f"wrote what the run had read: {journal} ({len(self.journal_raw)} messages) and {states} "
                f"({len(self.last_states)} agents' last committed states, as of {at or 'never'})")

    def wait_quiet(self, timeout: float, what: str, done: Callable[[], bool] = lambda: True) -> bool:
        """Wait until nothing is in flight (and ``done()``), showing progress."""
        t0 = time.monotonic()
        last = ""
        quiet_since: float | None = None
        down_since: float | None = None
        while time.monotonic() - t0 < timeout:
            try:
                self.tail_journal()
                if time.monotonic() - self._states_polled > 15:  # lines too, now and then (dump_partial)
                    self._states_polled = time.monotonic()
                    self.line_states()
                pend = self.pending()
                summary = self.summary()
                finished = pend == 0 and done()
            except redis.RedisError as e:
                down_since = down_since or time.monotonic()
                out = time.monotonic() - down_since
                if out > BUS_OUTAGE_S:
                    raise BusLost(f"Redis ({masked(self.url)}) has not answered for {out:.0f} s ({e}); the run "
                                  "stops here") from None
                self.progress(f"{what}: the bus (Redis) does not answer ({type(e).__name__}); retrying, "
                              f"{out:.0f} s of at most {BUS_OUTAGE_S} s")
                quiet_since = None
                time.sleep(1.0)
                continue
            if down_since is not None:
                self.progress(f"{what}: the bus answers again after {time.monotonic() - down_since:.0f} s")
                down_since = None
            line = f"{what}: {summary}, {pend} message(s) in flight, {time.monotonic() - t0:.0f} s"
            if line != last:
                self.progress(line)
                last = line
            if finished:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 0.5:
                    return True
            else:
                quiet_since = None
            time.sleep(0.5)
        return False

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for st in self.plant_states().values():
            for o in st["orders"].values():
                counts[o["status"]] = counts.get(o["status"], 0) + 1
        return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no orders yet"

    def negotiation_done(self) -> bool:
        n = len(self.orders)
        states = self.plant_states()
        settled = sum(1 for st in states.values() for o in st["orders"].values()
                      if o["status"] in ("confirmed", "failed"))
        return settled >= n

    # -------------------------------------------------------------- lifecycle
    def feed_orders(self) -> None:
        self.orders = self.sc.order_specs()
        self.bus.send(*[make(NewOrder(order=o), "erp", o.plant, f"order:{o.id}") for o in self.orders])
        self.progress(f"fed {len(self.orders)} orders ({sum(len(o.steps) for o in self.orders)} operations)")

    def first_schedule(self, t0: float) -> dict[str, Any]:
        """Check what the negotiation agreed on, before any replan or disruption: is it feasible, how good.

        ``time_s`` is when the agents had agreed (from ``t0``), ``verified_s`` when the checker had passed it."""
        elapsed = time.monotonic() - t0
        problem = global_problem(self.sc.model_copy(update={"disruptions": []}), {})  # none has happened yet
        schedule = agents_schedule(self.sc, problem, self.line_states())
        report = check(problem, schedule)
        scheduled = {s.order for s in schedule.operations}
        out = {"time_s": round(elapsed, 2), "feasible": report.ok and all(o.id in scheduled for o in problem.orders),
               "violations": len(report.violations), "verified_s": round(time.monotonic() - t0, 2)}
        if report.kpis is not None:
            out.update(weighted_tardiness=report.kpis.weighted_tardiness, makespan=report.kpis.makespan,
                       late_orders=report.kpis.late_orders)
        startup = getattr(self, "startup_s", 0.0)
        self.progress(f"negotiated schedule {elapsed:.1f} s after start ({startup:.1f} s start-up + "
                      f"{max(0.0, elapsed - startup):.1f} s negotiating): feasible={out['feasible']} "
                      f"weighted_tardiness={out.get('weighted_tardiness')} makespan={out.get('makespan')}")
        return out

    def all_lines(self) -> list[str]:
        return [f"{p.id}/{ln.id}" for p in self.sc.plants for ln in p.lines]

    def replan_and_wait(self, timeout: float, lines: list[str] | None = None, reason: str = "planner request") -> None:
        """The given lines (default: all) re-optimise their committed work; wait until they have."""
        lines = self.all_lines() if lines is None else lines
        before = {k: v.get("replans", 0) for k, v in self.line_states().items()}
        limit = self.sc.negotiation.replan_time_limit
        self.bus.send(*[make(Replan(time_limit=limit, reason=reason), "planner", line, "replan") for line in lines])
        self.wait_quiet(timeout, "local replanning", lambda: all(
            v.get("replans", 0) > before[k] or not v["orders"] for k, v in self.line_states().items() if k in lines))

    def moves(self) -> dict[str, list[dict[str, Any]]]:
        """Each plant's move events, in the order that plant made them."""
        return {p: [e for e in st["events"] if e["event"] == "move"] for p, st in self.plant_states().items()}

    def improve(self, timeout: float) -> set[str]:
        """Plants re-call their late orders; returns the lines that lost or gained an order."""
        before = {p: len(ms) for p, ms in self.moves().items()}
        self.bus.send(*[make(Improve(), "planner", p.id, "improve") for p in self.sc.plants])
        time.sleep(0.2)
        self.wait_quiet(timeout, "reallocating late orders", self.negotiation_done)
        moved = [e for p, ms in self.moves().items() for e in ms[before[p]:]]
        self.progress(f"reallocation moved {len(moved)} order(s)")
        return {e["from"] for e in moved} | {e["to"] for e in moved}

    def settle(self, timeout: float, replan_all: bool) -> None:
        """(All lines re-optimise, then) plants reallocate late orders and the lines concerned re-optimise,
        until nothing moves or the rounds run out."""
        if replan_all:
            self.replan_and_wait(timeout, reason="end of negotiation")
        for _ in range(self.sc.negotiation.improve_rounds):
            touched = self.improve(timeout)
            if not touched:
                break
            self.replan_and_wait(timeout, sorted(touched), reason="orders moved between lines")

    def absorb(self, timeout: float) -> None:
        """Wait until the disruptions are handled, including the replans lines schedule themselves."""
        self.wait_quiet(timeout, "absorbing disruptions",
                        lambda: all(v.get("replan_at") is None for v in self.line_states().values()))

    def disrupt(self) -> dict[str, int]:
        """Play the scenario's disruptions, all in one transaction (a resumed run never plays them twice)."""
        delays: dict[str, int] = {}
        envs = []
        for d in self.sc.disruptions:
            if d.type == "machine_down":
                assert d.plant and d.line and d.machine and d.start is not None and d.end is not None
                ev = MachineDown(machine=machine_id(d.plant, d.line, d.machine), start=d.start, end=d.end)
                envs.append(make(ev, "mes", f"{d.plant}/{d.line}", f"disruption:{d.machine}"))
            else:
                assert d.supplier and d.material and d.delay
                delays[d.material] = delays.get(d.material, 0) + d.delay
                envs.append(make(SupplierDelay(material=d.material, delay=d.delay), "erp", d.supplier,
                                 f"disruption:{d.material}"))
            self.progress(f"disruption: {d.type} {d.model_dump(exclude_none=True, exclude={'type'})}")
        if envs:
            self.bus.send(*envs)
        return delays

    def close(self) -> None:
        """Stop the hosts, Ray (if we started it) and the private redis-server (if any); never raises."""
        import ray

        with sigint_ignored():
            self.closing.set()
            self.shutdown_hosts()
            if self.started_ray:
                ray.shutdown()
                self.started_ray = False
            if self.server is not None:
                self.server.stop()
                self.server = None

    def shutdown_hosts(self) -> None:
        """Stop and kill every host actor; never raises."""
        import ray

        with sigint_ignored():
            try:  # all at once: a host still retrying a lost Redis takes its time to stop
                ray.get([h.shutdown.remote() for h in self.hosts.values()], timeout=30)
            except Exception:
                pass
            for h in self.hosts.values():
                try:
                    ray.kill(h, no_restart=True)
                except Exception:
                    pass
            self.hosts = {}


def agents_schedule(sc: Scenario, problem: Problem, lines: dict[str, dict[str, Any]]) -> Schedule:
    """What the lines committed, as a Schedule of the global problem."""
    ops = {op.id: (o.id, op) for o in problem.orders for op in o.operations}
    out = []
    for st in lines.values():
        for oid, rec in st["orders"].items():
            if rec["status"] != "committed":
                continue
            for planned in rec["ops"]:
                op_id = f"{oid}/{planned['operation']}"
                order_id, op = ops[op_id]
                mode = next(i for i, m in enumerate(op.modes) if m.resource == planned["machine"])
                out.append(ScheduledOperation(operation=op_id, order=order_id, resource=planned["machine"], mode=mode,
                                              start=planned["start"], end=planned["end"]))
    return Schedule(problem=sc.name, operations=out)


@dataclass
class RunResult:
    """What a run produced, checked: the service layer writes it to files (:mod:`paichan.service.output`)."""

    scenario: Scenario
    problem: Problem
    schedule: Schedule
    report: CheckReport
    kpis: dict[str, Any]
    journal: list[dict[str, Any]] | None = None  # every message of an agents run, in order; None if centralised


def checked_result(sc: Scenario, problem: Problem, schedule: Schedule, extra: dict[str, Any],
                   journal: list[dict[str, Any]] | None = None) -> RunResult:
    """Verify ``schedule`` with the independent checker and gather the run's KPIs."""
    report = check(problem, schedule)
    scheduled = {s.order for s in schedule.operations}
    unscheduled = [o.id for o in problem.orders if o.id not in scheduled]
    kpis: dict[str, Any] = {
        "scenario": sc.name,
        "feasible": report.ok and not unscheduled,
        "violations": [str(v) for v in report.violations[:50]],
        "violation_count": len(report.violations),
        "orders": len(problem.orders),
        "operations": sum(len(o.operations) for o in problem.orders),
        "unscheduled_orders": unscheduled,
        **(report.kpis.model_dump() if report.kpis else {}),
        **extra,
    }
    if report.kpis is None:  # some orders unscheduled: KPIs over what was scheduled
        sub = problem.model_copy(update={"orders": [o for o in problem.orders if o.id in scheduled]})
        sub_report = check(sub, schedule)
        if sub_report.kpis is not None:
            kpis.update(sub_report.kpis.model_dump())
    return RunResult(sc, problem, schedule, report, kpis, journal)


PHASES = ["started", "fed", "negotiated", "disrupted"]


class RunManifest(BaseModel):
    """``run.json`` in a run's directory: what ``paichan run --resume DIR`` needs to continue it."""

    scenario: dict[str, Any]
    namespace: str
    phase: Literal["started", "fed", "negotiated", "disrupted"]
    redis: Literal["private", "shared"]
    started_at: datetime


class ResumeError(ValueError):
    """A run directory that cannot be resumed (said with the file and the reason)."""


def load_manifest(workdir: Path) -> RunManifest:
    path = workdir / "run.json"
    if not path.is_file():
        raise ResumeError(f"{path}: no such file; only a run directory that `paichan run` started can be resumed")
    try:
        return RunManifest.model_validate_json(path.read_text())
    except ValidationError as e:
        raise ResumeError(f"{path}: not a run manifest ({e.errors()[0]['msg']})") from None


def run_agents(sc: Scenario | None, workdir: Path, progress: Progress = _stderr, timeout: float = 1800,
               cleanup: bool = False, resume: bool = False) -> RunResult:
    """Negotiate the scenario with agents on Ray; the private redis-server (if any) lives in ``workdir``.

    ``cleanup`` deletes the run's keys from a shared Redis (``REDIS_URL``) once its results are read.
    ``resume`` continues the interrupted run of ``workdir`` (its ``run.json``, its Redis data): the
    agents restore their committed states, nothing is fed twice and the run goes on from its last phase.
    """
    t0 = time.monotonic()
    manifest = load_manifest(workdir) if resume else None
    if manifest is not None:
        sc = Scenario.model_validate(manifest.scenario)
        progress(f"resuming {manifest.namespace} (phase '{manifest.phase}', started "
                 f"{manifest.started_at:%Y-%m-%d %H:%M} UTC)")
    if sc is None:
        raise ValueError("a scenario, or resume=True")
    net = Network(sc, workdir, progress, namespace=manifest.namespace if manifest else None)
    if manifest is None:
        manifest = RunManifest(scenario=sc.model_dump(mode="json"), namespace=net.namespace, phase="started",
                               redis="private" if net.server else "shared", started_at=datetime.now(UTC))

    def reached(phase: str) -> None:
        assert manifest is not None
        manifest.phase = phase  # type: ignore[assignment]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "run.json").write_text(manifest.model_dump_json(indent=1))

    def done(phase: str) -> bool:
        assert manifest is not None
        return PHASES.index(manifest.phase) >= PHASES.index(phase)

    try:
        reached(manifest.phase)
        if done("fed"):
            net.orders = sc.order_specs()  # fed before the interruption: the agents have them in Redis
        else:
            net.feed_orders()
            reached("fed")
        settled = net.wait_quiet(timeout, "negotiating", net.negotiation_done)
        t_neg = time.monotonic() - t0
        first = net.first_schedule(t0)
        if not done("negotiated"):
            net.settle(timeout, replan_all=True)
            reached("negotiated")
        if done("disrupted"):
            delays = scenario_delays(sc)
        else:
            delays = net.disrupt()
            reached("disrupted")
        if sc.disruptions:
            net.absorb(timeout)
            net.settle(timeout, replan_all=False)
        wall = time.monotonic() - t0
        problem = global_problem(sc, delays)
        lines = net.line_states()
        schedule = agents_schedule(sc, problem, lines)
        journal = net.journal()
        plants = net.plant_states()
        extra = {
            "mode": "agents",
            "wall_time_s": round(wall, 2),
            "startup_time_s": round(net.startup_s, 2),
            "negotiation_time_s": round(t_neg, 2),
            "first_schedule": first,
            "settled": settled,
            "messages": len(journal),
            "dead_letters": len(net.bus.dead_letters()),
            "escalations": sum(1 for st in plants.values() for e in st["events"]
                               if e["event"] == "escalate" and not e.get("move")),
            "reruns": sum(1 for st in plants.values() for e in st["events"] if e["event"] == "rerun"),
            "moves": sum(1 for st in plants.values() for e in st["events"] if e["event"] == "move"),
            "failed_orders": [o for st in plants.values() for o, r in st["orders"].items() if r["status"] == "failed"],
            "stale_awards": sum(int(st.get("stale_awards", 0)) for st in lines.values()),
            "stale_confirms": sum(1 for st in plants.values() for e in st["events"] if e["event"] == "stale_confirm"),
            "restored_agents": net.restored_agents(),
            "redis_restarts": net.redis_restarts,
        }
        result = checked_result(sc, problem, schedule, extra, journal)
        if cleanup and net.server is None:
            net.shutdown_hosts()  # nothing may write the namespace again once it is gone
            progress(f"removed {net.bus.remove_namespace()} keys of this run ({net.namespace}) from "
                     f"{masked(net.url)}")
    except BusLost as e:  # Redis is gone for good: keep what the driver had read
        raise BusLost(f"{e}; {net.dump_partial(workdir)}") from None
    finally:
        net.close()
    progress(f"done in {time.monotonic() - t0:.1f} s: {_kpi_line(result.kpis)}")
    return result


def run_centralised(sc: Scenario, time_limit: float, progress: Progress = _stderr,
                    reference: Schedule | None = None) -> RunResult:
    """The same scenario as one CP-SAT problem (disruptions known from the start).

    ``reference`` (e.g. the agents' schedule) seeds the search as a warm start.
    """
    from paichan.solver import SolveParams, solve

    t0 = time.monotonic()
    problem = global_problem(sc, scenario_delays(sc))
    progress(f"centralised: {len(problem.orders)} orders, {sum(len(o.operations) for o in problem.orders)} operations, "
             f"{len(problem.resources)} machines; solving for {time_limit:g} s")
    solved = solve(problem, SolveParams(time_limit=time_limit, workers=2, reference=reference),
                   on_solution=lambda ev: progress(f"[{ev.time:6.1f}s] objective {ev.objective:g} ({ev.source})"))
    wall = time.monotonic() - t0
    schedule = solved.schedule or Schedule(problem=sc.name)
    extra = {"mode": "centralised", "wall_time_s": round(wall, 2), "status": solved.status.value,
             "objective": solved.objective, "best_bound": solved.best_bound, "messages": 0,
             "method": solved.stats.get("method"), "warnings": solved.warnings,
             "model_variables": solved.stats.get("model_variables"),
             "model_constraints": solved.stats.get("model_constraints")}
    result = checked_result(sc, problem, schedule, extra)
    progress(f"done in {wall:.1f} s: {_kpi_line(result.kpis)}")
    return result


def _kpi_line(k: dict[str, Any]) -> str:
    return (f"feasible={k['feasible']} weighted_tardiness={k.get('weighted_tardiness')} makespan={k.get('makespan')} "
            f"late_orders={k.get('late_orders')} messages={k.get('messages')}")

"""AgentHost: a Ray actor that runs one or more agents against the bus.

Each hosted agent keeps its own inbox, consumer group and state key, so
hosting several agents in one process (the default: a plant with its lines)
changes nothing in the protocol; it only saves memory (one Python process
with OR-Tools per plant instead of per line). The actor is restartable
(``max_restarts=-1``): a new incarnation rebuilds every agent from its last
committed state in Redis and first re-reads its pending messages, so no
award and no committed operation is lost.

Each incarnation takes a new epoch per agent before it reads that agent's state
(:class:`~paichan.bus.streams.Consumer`); a copy whose epoch is no longer the live
one (Ray restarted it elsewhere while the old process still runs, e.g. on a hung
node) has every commit refused, stops that agent and, once all its agents are
fenced, stops its loop: it no longer reads, writes or spins against Redis.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import ray

from paichan.agents.base import Agent
from paichan.agents.line import LineAgent
from paichan.agents.plant import PlantAgent
from paichan.agents.scenario import LineSpec, PlantSpec, Scenario, SupplierSpec
from paichan.agents.supplier import SupplierAgent
from paichan.bus.envelope import Envelope
from paichan.bus.streams import Bus, Consumer, Delivery, Fenced, Ops, duplicates_many, fetch_many, run_many


def agent_factories(sc: Scenario) -> dict[str, Callable[[], Agent]]:
    """agent id -> constructor, for every agent the scenario describes."""
    horizon = sc.horizon_days * 1440
    suppliers = sc.material_supplier()
    plants = [p.id for p in sc.plants]
    out: dict[str, Callable[[], Agent]] = {}
    neg = sc.negotiation

    def plant(p: PlantSpec) -> Callable[[], Agent]:
        lines = {f"{p.id}/{ln.id}": {m.type for m in ln.machines} for ln in p.lines}
        return lambda: PlantAgent(p.id, lines, [q for q in plants if q != p.id], wave=neg.wave,
                                  respond_timeout_s=neg.respond_timeout_s, escalate=neg.escalate,
                                  intake_s=neg.intake_s, suppliers=suppliers)

    def line(p: PlantSpec, ln: LineSpec) -> Callable[[], Agent]:
        return lambda: LineAgent(p.id, ln, sc.line_calendar(ln), suppliers, horizon, neg.replan_time_limit,
                                 bid_ttl_s=6 * neg.respond_timeout_s, bid_time_limit=neg.bid_time_limit)

    def supplier(s: SupplierSpec) -> Callable[[], Agent]:
        return lambda: SupplierAgent(s, horizon)

    for p in sc.plants:
        out[p.id] = plant(p)
        for ln in p.lines:
            out[f"{p.id}/{ln.id}"] = line(p, ln)
    for s in sc.suppliers:
        out[s.id] = supplier(s)
    return out


#: deliveries an agent takes per round (16 instead gave no lower bid latency on network_10x10: 1.48 s p90)
BATCH = 64


class HostCore:
    """The agent loop, independent of Ray (the actor below wraps it)."""

    def __init__(self, scenario_json: str, agent_ids: list[str], redis_url: str, namespace: str,
                 claim_idle_ms: int = 10_000, on_fenced: Callable[[], None] | None = None) -> None:
        """``on_fenced``: called once every hosted agent is fenced (the Ray actor ends its process)."""
        self.on_fenced = on_fenced
        sc = Scenario.model_validate_json(scenario_json)
        factories = agent_factories(sc)
        self.bus = Bus(redis_url, namespace)
        self.factories = {a: factories[a] for a in agent_ids}
        self.agents: dict[str, Agent] = {}
        self.consumers: dict[str, Consumer] = {}
        self.restored: list[str] = []
        self.fenced: list[str] = []
        self.reload: set[str] = set()  # agents to rebuild from their last commit before their next step
        self.reloads = 0
        for aid in agent_ids:
            agent = self.factories[aid]()
            # the epoch first, the state second: a stale copy cannot commit after this incarnation has read
            self.consumers[aid] = Consumer(self.bus, aid, agent.topics, consumer=aid, claim_idle_ms=claim_idle_ms)
            self.agents[aid] = self._fresh(aid, agent)
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.last_reclaim = 0.0
        self.thread = threading.Thread(target=self._loop, name="agent-host", daemon=True)
        self.thread.start()

    def _fresh(self, aid: str, agent: Agent | None = None) -> Agent:
        """A new agent, restored from its last committed state if there is one."""
        agent = agent or self.factories[aid]()
        state = self.bus.load_state(aid)
        if state is not None:
            agent.restore(state)
            self.restored.append(aid)
        return agent

    def _loop(self) -> None:
        idle = 0  # rounds in a row with nothing to do: the poll slows down (5 ms .. 40 ms) so idle hosts spare Redis
        while not self.stop_event.is_set():
            busy = False
            try:
                reclaim = time.monotonic() - self.last_reclaim > 2.0
                if reclaim:
                    self.last_reclaim = time.monotonic()
                for aid in [a for a in self.reload if a in self.agents]:
                    self._reload(aid)
                busy = self.step_all(reclaim)
            except Exception:  # keep the host alive; the error is reported by status()
                self.errors.append(traceback.format_exc(limit=5))
                time.sleep(0.5)
            idle = 0 if busy else idle + 1
            if not busy:
                time.sleep(min(0.04, 0.005 * 2 ** min(idle // 20, 3)))

    def step_all(self, reclaim: bool = False) -> bool:
        """One round over every hosted agent; True if any had work.

        Three round trips to Redis whatever the number of agents: their reads, their duplicate checks
        and their commits (each agent's still its own fenced, atomic script call) are pipelined. A host
        of a plant and ten lines made some twenty-three, and on a loaded machine each costs a wait for
        the scheduler, not only for Redis."""
        ids = list(self.agents)
        batches = dict(zip(ids, fetch_many(self.bus, [self.consumers[a] for a in ids], count=BATCH), strict=True))
        if reclaim:
            for aid in ids:
                batches[aid] += self.consumers[aid].reclaim()
        working = [a for a in ids if batches[a]]
        seen = dict(zip(working, duplicates_many(self.bus, [(self.consumers[a], batches[a]) for a in working]),
                        strict=True))
        busy = False
        pending: list[tuple[str, Ops]] = []
        failure: BaseException | None = None
        for aid in ids:
            try:
                ops, had_work = self.prepare(aid, batches[aid], seen.get(aid, set()))
            except Fenced as e:  # a newer incarnation owns this agent now: let go of it
                self.fence(aid, str(e))
                continue
            except Exception as e:
                # a failed step may have changed the agent in memory without its commit (Redis away
                # longer than the client's retries): rebuild it from its last commit before going on
                self.reload.add(aid)
                failure = failure or e
                continue
            busy |= had_work
            if ops.cmds:
                pending.append((aid, ops))
        results = run_many(self.bus, [(self.consumers[a], ops) for a, ops in pending])
        for (aid, _), err in zip(pending, results, strict=True):
            if isinstance(err, Fenced):
                self.fence(aid, str(err))
            elif err is not None:
                self.reload.add(aid)  # its handlers ran, its commit did not: back to the last commit
                failure = failure or err
        if failure is not None:
            raise failure
        return busy

    def prepare(self, aid: str, deliveries: list[Delivery], processed: set[str]) -> tuple[Ops, bool]:
        """Handle ``aid``'s deliveries, then its clock; the commit to run, and whether it had work."""
        ops = Ops()
        handled = self.process_batch(aid, deliveries, processed, ops) if deliveries else False
        agent = self.agents[aid]  # after the batch: a poison message has it rebuilt
        out = agent.tick(time.time())
        if handled or out or agent.dirty:
            agent.dirty = False
            self.consumers[aid].commit_ops([], agent.state_json(), out, ops)
        return ops, bool(deliveries or out)

    def _reload(self, aid: str) -> None:
        """Rebuild ``aid`` from its last commit and re-read its pending messages (after a failed step)."""
        self.agents[aid] = self._fresh(aid)
        self.consumers[aid]._backlog = True
        self.reload.discard(aid)
        self.reloads += 1

    def fence(self, aid: str, why: str) -> None:
        """Stop running ``aid`` here; with no agent left, stop the loop."""
        self.agents.pop(aid, None)
        self.consumers.pop(aid, None)
        self.fenced.append(aid)
        self.errors.append(f"fenced: {why}")
        if not self.agents:
            self.stop_event.set()
            if self.on_fenced is not None:
                self.on_fenced()

    def process_batch(self, aid: str, deliveries: list[Delivery], processed: set[str], ops: Ops) -> bool:
        """Handle a batch into ``ops`` (committed with the agent's state, once, by the caller); True if any
        message was handled (the state changed).

        A crash redelivers the whole batch against the state before it, so
        nothing is half-applied. A handler error (poison message) reloads the
        agent from its last commit, replays the good messages before it
        (handlers are deterministic), commits them, and dead-letters the culprit.
        ``processed``: envelope ids among the deliveries that were handled before (acknowledged only).
        """
        consumer = self.consumers[aid]
        good: list[Delivery] = []
        seen: set[str] = set()
        done: list[Delivery] = []  # acked without effects: duplicates
        for d in deliveries:
            if d.error is not None:
                consumer.dead_letter(d, d.error)
                continue
            assert d.envelope is not None
            if d.envelope.id in seen or d.envelope.id in processed:
                done.append(d)
                continue
            seen.add(d.envelope.id)
            good.append(d)
        out: list[Envelope] = []
        for k, d in enumerate(good):
            try:
                out += self._handle(aid, d)
            except Exception as e:  # a poison message must not kill the agent or half-apply
                self.agents[aid] = self._fresh(aid)
                replay: list[Envelope] = []
                for prev in good[:k]:
                    replay += self._handle(aid, prev)
                consumer.commit(good[:k] + done, self.agents[aid].state_json(), replay)
                consumer.dead_letter(d, f"handler error in {aid}: {e!r}")
                return self.process_batch(aid, good[k + 1 :], processed, ops) or k > 0
        consumer.commit_ops(good + done, None, out, ops)  # the state is added once, after the clock
        return bool(good)

    def _handle(self, aid: str, d: Delivery) -> list[Envelope]:
        agent = self.agents[aid]
        assert d.envelope is not None and d.payload is not None
        out = agent.handle(d.envelope, d.payload, time.time())
        agent.handled += 1
        return out

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "agents": {a: ag.handled for a, ag in self.agents.items()},
                "restored": self.restored, "fenced": self.fenced, "reloads": self.reloads,
                "errors": self.errors[-5:]}

    def shutdown(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)


def _stale_exit() -> None:
    """Every agent of this copy is fenced: a newer incarnation runs them (Ray restarted this actor elsewhere
    while this process went on, on a hung node). Nothing can reach this orphan (``ray.kill`` goes to the new
    one): end the process rather than idle until the node is cleaned up."""
    print("paichan host: every agent here is fenced (a newer incarnation runs them); exiting", file=sys.stderr,
          flush=True)
    os._exit(0)


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class AgentHost:
    """Ray actor around :class:`HostCore`."""

    def __init__(self, scenario_json: str, agent_ids: list[str], redis_url: str, namespace: str,
                 claim_idle_ms: int = 10_000) -> None:
        self.core = HostCore(scenario_json, agent_ids, redis_url, namespace, claim_idle_ms, on_fenced=_stale_exit)

    def status(self) -> dict[str, Any]:
        return {**self.core.status(), "node": ray.get_runtime_context().get_node_id()}

    def shutdown(self) -> None:
        self.core.shutdown()

    @ray.method(max_task_retries=0)  # a retried crash() would kill every new incarnation too
    def crash(self) -> None:
        """Die abruptly (tests of restart and recovery)."""
        os._exit(1)

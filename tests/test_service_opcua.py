"""The OPC UA monitor of the service's config feeds the same durable path as POST /events: a machine that
reports OutOfService on a real OPC UA server (asyncua, OPC Foundation NodeSets) becomes a breakdown in the
live plan, and the line is repaired."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path

from test_opcua import Plant, _free_port
from test_service_api import ORIGIN, Svc, redis_url, start  # noqa: F401 (fixtures)

from paichan.adapters.opcua import MachineNode, OpcUaConfig
from paichan.checker import check
from paichan.domain import Problem, Schedule
from paichan.service.serve_cli import _opcua


def test_opcua_states_reach_the_plan(start: tuple[Problem, Schedule], redis_url: str,  # noqa: F811 (fixtures)
                                     tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    plant = Plant(_free_port())
    run = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(60)  # noqa: E731
    machine = max({s.resource for s in start[1].operations},
                  key=lambda m: sum(1 for s in start[1].operations if s.resource == m and s.start >= 40))
    run(plant.start({"Press1": ("NotExecuting", ORIGIN + timedelta(minutes=1)),
                     "Mill2": ("Executing", ORIGIN + timedelta(minutes=1))}))
    svc = Svc(start, redis_url, "opcua", True, tmp_path / "outbox")
    svc.service.config.opcua = [OpcUaConfig(endpoint=plant.url, source="opcua:hall2", publishing_interval_ms=50,
                                            watchdog_s=0.3,
                                            machines=[MachineNode(machine=machine, node="Objects/Machines/Press1")])]
    stops = _opcua(svc.service)
    try:
        deadline = time.monotonic() + 30
        while svc.service.event_status("opcua:hall2", "x") is None and not svc.service.r.xlen(svc.service.k("events")):
            assert time.monotonic() < deadline, "the monitor's first state never reached the stream"
            time.sleep(0.1)
        run(plant.set_machinery("Press1", "OutOfService", ORIGIN + timedelta(minutes=20)))
        deadline = time.monotonic() + 30
        down: list[int] = []
        while not down:
            assert time.monotonic() < deadline, "OutOfService never became a breakdown"
            res = next(r for r in svc.service.problem.resources if r.id == machine)
            down = [d.start for d in res.calendar.downtimes if d.kind.value == "breakdown"]
            time.sleep(0.1)
        assert down == [20]
        jobs = svc.wait_jobs()
        assert jobs and all(j["status"] == "done" for j in jobs), jobs
        # the latest: a later state report of the open breakdown moves its estimated end and replans again
        prop = svc.service.proposal(max(jobs, key=lambda j: j["finished_at"])["proposal"])
        assert check(svc.service.problem, prop.schedule).ok
    finally:
        for stop in stops:
            stop()
        svc.close()
        run(plant.stop())
        loop.call_soon_threadsafe(loop.stop)

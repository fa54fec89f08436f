"""OPC UA adapter against a real asyncua server on loopback with the Machinery, DI and PackML NodeSets.

The server imports the OPC Foundation NodeSets from tests/fixtures/opcua, instantiates a
``MachineryItemState_StateMachineType`` for two machines (under Objects/Machines, as OPC 40001-1
lays them out) and a ``PackMLBaseObjectType``, then changes states the way a machine would.
Everything runs in one ``asyncio.run`` with a hard timeout; no network beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Node, Server, ua
from asyncua.common.instantiate_util import instantiate

from paichan.adapters.opcua import MachineNode, MachineStateMonitor, OpcUaConfig
from paichan.domain.events import MachineState, MachineStateEvent

FIX = Path(__file__).parent / "fixtures" / "opcua"
MACHINERY = "http://opcfoundation.org/UA/Machinery/"
PACKML = "http://opcfoundation.org/UA/PackML/"
# state nodes of MachineryItemState_StateMachineType in the Machinery NodeSet (ns=Machinery)
MACHINERY_STATE_NODES = {"NotAvailable": 5005, "OutOfService": 5004, "NotExecuting": 5007, "Executing": 5006}
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

logging.getLogger("asyncua").setLevel(logging.ERROR)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Plant:
    """An asyncua server with two Machinery machines and one PackML unit."""

    def __init__(self, port: int):
        self.url = f"opc.tcp://127.0.0.1:{port}/paichan-test"
        self.server = Server()
        self.current: dict[str, Node] = {}
        self.ids: dict[str, Node] = {}
        self.packml: dict[str, Node] = {}
        self.mi = 0
        self.running = False

    async def start(self, states: dict[str, tuple[str, datetime]]) -> None:
        s = self.server
        await s.init()
        s.set_endpoint(self.url)
        s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        for f in ("Opc.Ua.Di.NodeSet2.xml", "Opc.Ua.Machinery.NodeSet2.xml", "Opc.Ua.PackML.NodeSet2.xml"):
            await s.import_xml(FIX / f)
        self.mi = await s.get_namespace_index(MACHINERY)
        pi = await s.get_namespace_index(PACKML)
        idx = await s.register_namespace("urn:paichan:test-plant")
        machines = s.get_node(ua.NodeId(1001, self.mi))  # Objects/Machines (OPC 40001-1)
        sm_type = s.get_node(ua.NodeId(1002, self.mi))  # MachineryItemState_StateMachineType
        for name in ("Press1", "Mill2"):
            machine = await machines.add_object(idx, name)
            blocks = await machine.add_folder(idx, "MachineryBuildingBlocks")
            sm = (await instantiate(blocks, sm_type, bname=ua.QualifiedName("MachineryItemState", self.mi), idx=idx))[0]
            self.current[name] = await sm.get_child("0:CurrentState")
            self.ids[name] = await self.current[name].get_child("0:Id")
        unit = await s.nodes.objects.add_object(idx, "Filler3")
        obj = (await instantiate(unit, s.get_node(ua.NodeId(6, pi)), bname=ua.QualifiedName("PackML", idx), idx=idx))[0]
        base = await obj.get_child(f"{pi}:BaseStateMachine")
        self.packml["base"] = await base.get_child("0:CurrentState")
        self.packml["machine"] = await base.get_child([f"{pi}:MachineState", "0:CurrentState"])
        self.packml["execute"] = await base.get_child([f"{pi}:MachineState", f"{pi}:ExecuteState", "0:CurrentState"])
        for machine, (state, ts) in states.items():
            await self.set_machinery(machine, state, ts)
        await self.set_packml("base", "Cleared", T0)
        await self.set_packml("machine", "Running", T0)
        await self.set_packml("execute", "Idle", T0)
        await s.start()
        self.running = True

    async def set_machinery(self, machine: str, state: str, ts: datetime, text: str | None = None) -> None:
        """Write Id first, then the display text (which is what the client subscribes to)."""
        state_node = ua.NodeId(MACHINERY_STATE_NODES[state], self.mi)
        await self.ids[machine].write_value(ua.DataValue(ua.Variant(state_node), SourceTimestamp=ts))
        label = ua.LocalizedText(text or state, "de" if text else "en")
        await self.current[machine].write_value(ua.DataValue(ua.Variant(label), SourceTimestamp=ts))

    async def set_packml(self, part: str, state: str, ts: datetime) -> None:
        await self.packml[part].write_value(ua.DataValue(ua.Variant(ua.LocalizedText(state)), SourceTimestamp=ts))

    async def stop(self) -> None:
        self.running = False
        await self.server.stop()


async def _next(queue: asyncio.Queue[MachineStateEvent], n: int = 1, timeout: float = 10) -> list[MachineStateEvent]:
    return [await asyncio.wait_for(queue.get(), timeout) for _ in range(n)]


def _at(minutes: int) -> datetime:
    return T0.replace(minute=minutes)


async def _scenario() -> None:
    port = _free_port()
    plant = Plant(port)
    await plant.start({"Press1": ("NotExecuting", _at(1)), "Mill2": ("Executing", _at(2))})
    config = OpcUaConfig(
        endpoint=plant.url,
        source="opcua:hall2",
        machines=[
            MachineNode(machine="P1", node="Objects/Machines/Press1"),  # browse path to the machine object
            MachineNode(machine="M2", node="Objects/Machines/Mill2/MachineryBuildingBlocks/MachineryItemState"),
            MachineNode(machine="F3", node="Objects/Filler3/PackML", model="packml"),
            MachineNode(machine="GHOST", node="Objects/Machines/NoSuchMachine"),
        ],
        publishing_interval_ms=50,
        watchdog_s=0.3,
        request_timeout_s=2,
        reconnect_min_s=0.2,
        reconnect_max_s=1,
    )
    queue: asyncio.Queue[MachineStateEvent] = asyncio.Queue()
    monitor = MachineStateMonitor(config, queue)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        # initial states, one per found machine
        first = {e.machine: e for e in await _next(queue, 3)}
        assert first["P1"].state == MachineState.AVAILABLE and first["P1"].raw_state == "NotExecuting"
        assert first["P1"].time == _at(1) and first["P1"].raw_model == "machinery"
        assert first["M2"].state == MachineState.BUSY and first["M2"].raw_state == "Executing"
        assert first["F3"].state == MachineState.AVAILABLE and first["F3"].raw_state == "Idle"
        assert first["F3"].raw_model == "packml" and first["P1"].source == "opcua:hall2"
        assert any("GHOST" in e and "NoSuchMachine" in e for e in monitor.errors), monitor.errors
        assert monitor.connected.is_set() and monitor.connections == 1

        # a breakdown on Press1
        await plant.set_machinery("Press1", "OutOfService", _at(10))
        (down,) = await _next(queue)
        assert (down.machine, down.state, down.raw_state) == ("P1", MachineState.DOWN, "OutOfService")
        assert down.time == _at(10)

        # a localised server text: the language-independent Id tells the state
        await plant.set_machinery("Mill2", "NotAvailable", _at(11), text="Nicht verfügbar")
        (off,) = await _next(queue)
        assert (off.machine, off.state, off.raw_state) == ("M2", MachineState.DOWN, "NotAvailable")

        # PackML: the innermost active state wins
        await plant.set_packml("execute", "Execute", _at(12))
        (run,) = await _next(queue)
        assert (run.machine, run.state, run.raw_state, run.time) == ("F3", MachineState.BUSY, "Execute", _at(12))
        await plant.set_packml("execute", "Held", _at(13))
        (held,) = await _next(queue)
        assert (held.state, held.raw_state) == (MachineState.HELD, "Held")
        await plant.set_packml("machine", "Stopped", _at(14))
        (stopped,) = await _next(queue)
        assert (stopped.state, stopped.raw_state) == (MachineState.DOWN, "Stopped")
        await plant.set_packml("base", "Aborted", _at(15))
        (aborted,) = await _next(queue)
        assert (aborted.state, aborted.raw_state, aborted.time) == (MachineState.DOWN, "Aborted", _at(15))
        assert queue.empty()

        # the server goes away and comes back on the same port; Press1 was repaired meanwhile
        await plant.stop()
        for _ in range(100):
            if not monitor.connected.is_set():
                break
            await asyncio.sleep(0.05)
        assert not monitor.connected.is_set()
        plant2 = Plant(port)
        await plant2.start({"Press1": ("NotExecuting", _at(20)), "Mill2": ("NotAvailable", _at(11))})
        try:
            again = {e.machine: e for e in await _next(queue, 3, timeout=20)}
            assert monitor.connections == 2
            assert again["P1"].state == MachineState.AVAILABLE and again["P1"].time == _at(20)
            # Mill2 unchanged with the same source timestamp: same event id, so apply_events sees a duplicate
            assert again["M2"].event_id == off.event_id
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await plant2.stop()
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        if plant.running:  # still up after a failed assertion
            await plant.stop()


def test_monitor_against_real_server() -> None:
    asyncio.run(asyncio.wait_for(_scenario(), 90))


def test_monitor_retries_while_server_is_down() -> None:
    async def scenario() -> None:
        config = OpcUaConfig(
            endpoint=f"opc.tcp://127.0.0.1:{_free_port()}/nobody", machines=[MachineNode(machine="X", node="i=85")],
            request_timeout_s=0.5, reconnect_min_s=0.05, reconnect_max_s=0.1,
        )
        seen: list[MachineStateEvent] = []
        monitor = MachineStateMonitor(config, seen.append)
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        await asyncio.sleep(1.0)
        assert monitor.last_error is not None and monitor.connections == 0 and not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert seen == []

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_config_rejects_empty_machine_list() -> None:
    with pytest.raises(ValueError):
        OpcUaConfig(endpoint="opc.tcp://127.0.0.1:4840", machines=[])

"""OPC UA client: machine-state variables in, :class:`MachineStateEvent` out.

:class:`MachineStateMonitor` connects to one OPC UA server (asyncua), subscribes
to the state of each configured machine and turns every data change into a
:class:`~paichan.domain.events.MachineStateEvent`, delivered to an
``asyncio.Queue`` or a callback. It reconnects with exponential backoff and
re-subscribes; after a reconnect it reports each machine's current state again
with the server's source timestamp, so the event id is the same as before and
:func:`~paichan.domain.events.apply_events` drops it as a duplicate.

What it subscribes to, per configured node (a NodeId or a browse path):

* ``machinery`` (OPC 40001-1): a machine object (its
  ``MachineryBuildingBlocks/MachineryItemState``), a ``MachineryItemState``
  state machine, or directly a ``CurrentState`` variable. The state is read
  from the English ``CurrentState`` text; when that text is not a known state
  name (a localised server) the ``CurrentState/Id`` node's browse name is used.
* ``packml`` (OPC 30050): a PackML object or its ``BaseStateMachine``: the
  client follows ``BaseStateMachine`` -> ``MachineState`` -> ``ExecuteState``
  and reports the innermost active state (Aborted beats Stopped beats the
  Execute sub-states). A plain variable holding a PackTags state number
  (``StateCurrent``) or name works as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from asyncua import Client, Node, ua
from pydantic import BaseModel, ConfigDict, Field

from paichan.adapters.mes import UnknownState, lookup_state
from paichan.domain.events import MachineStateEvent

log = logging.getLogger(__name__)

Sink = asyncio.Queue[MachineStateEvent] | Callable[[MachineStateEvent], Awaitable[None] | None]


class MachineNode(BaseModel):
    """One machine to watch: its paichan resource id and where its state lives on the server."""

    model_config = ConfigDict(extra="forbid")

    machine: str = Field(min_length=1, description="Resource id in the Problem")
    node: str = Field(
        min_length=1,
        description="NodeId ('ns=2;i=5001', 'nsu=urn:plant;s=Press1') or browse path from the Root folder "
        "('Objects/Machines/Press1'; a segment may carry a namespace index: '2:Press1')",
    )
    model: Literal["machinery", "packml"] = "machinery"


class OpcUaConfig(BaseModel):
    """Where to connect and what to watch."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(description="e.g. opc.tcp://plc-hall2:4840")
    machines: list[MachineNode] = Field(min_length=1)
    source: str | None = Field(default=None, description="Event source; default 'opcua:<endpoint>'")
    publishing_interval_ms: int = Field(default=250, gt=0)
    request_timeout_s: float = Field(default=4.0, gt=0)
    watchdog_s: float = Field(default=1.0, gt=0, description="How often the connection is probed")
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)


_NODE_ID = re.compile(r"^(ns=\d+;)?[isgb]=", re.S)
_PACKML_OUTER = {"Aborting", "Aborted"}
_PACKML_MACHINE = {"Stopped", "Stopping", "Clearing"}


class _Watch:
    """Subscribed parts of one machine's state and the last state reported for it."""

    def __init__(self, cfg: MachineNode, parts: dict[str, Node]):
        self.cfg = cfg
        self.parts = parts  # role ('state', or 'base'/'machine'/'execute' for PackML) -> variable node
        self.names: dict[str, str | None] = {}
        self.last: str | None = None
        self.id_nodes: dict[str, Node | None] = {}

    def effective(self) -> str | None:
        """Current state name; None until every part has reported once."""
        if set(self.names) != set(self.parts):
            return None
        if "state" in self.names:
            return self.names["state"]
        base, mach, ex = self.names.get("base"), self.names.get("machine"), self.names.get("execute")
        if base in _PACKML_OUTER:
            return base
        if mach in _PACKML_MACHINE:
            return mach
        return ex or mach or base


class MachineStateMonitor:
    """Subscribe to machine states on one OPC UA server and emit :class:`MachineStateEvent` objects.

    ``run()`` keeps going (reconnecting) until ``stop`` is set or the task is
    cancelled. ``connected`` is set while subscribed; ``connections`` counts
    successful (re)connections; ``errors`` lists configuration and decoding
    problems (a node that is not found, a state name no model knows).
    """

    def __init__(self, config: OpcUaConfig, sink: Sink):
        self.config = config
        self.sink = sink
        self.source = config.source or f"opcua:{config.endpoint}"
        self.connected = asyncio.Event()
        self.connections = 0
        self.errors: list[str] = []
        self.last_error: str | None = None
        self._lost = False
        self._names: dict[ua.NodeId, str] = {}

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, subscribe, watch; on failure wait (backoff) and start again."""
        stop = stop or asyncio.Event()
        delay = self.config.reconnect_min_s
        while not stop.is_set():
            client = Client(self.config.endpoint, timeout=self.config.request_timeout_s)
            try:
                await client.connect()
                try:
                    await self._subscribe(client)
                    self.connections += 1
                    self.connected.set()
                    delay = self.config.reconnect_min_s
                    await self._watch(client, stop)
                finally:
                    self.connected.clear()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.disconnect(), self.config.request_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused, lost, timed out: try again later
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("OPC UA %s: %s; reconnecting in %.1fs", self.config.endpoint, self.last_error, delay)
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _watch(self, client: Client, stop: asyncio.Event) -> None:
        """Return when stopped; raise when the server stops answering."""
        self._lost = False
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.watchdog_s)
            if stop.is_set():
                return
            if self._lost:
                raise ConnectionError("subscription reported the connection lost")
            await asyncio.wait_for(client.nodes.server_state.read_value(), self.config.request_timeout_s)

    # ------------------------------------------------------------------ subscription set-up
    async def _subscribe(self, client: Client) -> None:
        watches: list[_Watch] = []
        for cfg in self.config.machines:
            try:
                node = await _resolve(client, cfg.node)
                parts = await (_machinery_parts(node) if cfg.model == "machinery" else _packml_parts(node))
            except LookupError as exc:
                msg = f"{cfg.machine}: {exc}"
                if msg not in self.errors:
                    self.errors.append(msg)
                log.error("OPC UA %s", msg)
                continue
            watches.append(_Watch(cfg, parts))
        if not watches:
            raise LookupError("none of the configured machine nodes was found")
        handler = _Handler(self, {n.nodeid: (w, role) for w in watches for role, n in w.parts.items()})
        sub = await client.create_subscription(self.config.publishing_interval_ms, handler)
        nodes = [n for w in watches for n in w.parts.values()]
        results = await sub.subscribe_data_change(nodes)
        for n, r in zip(nodes, results, strict=True):
            if not isinstance(r, int):
                self.errors.append(f"subscribing to {n.nodeid.to_string()} failed: {r}")

    # ------------------------------------------------------------------ notifications
    async def _on_change(self, client_node: Node, watch: _Watch, role: str, value: Any, dv: ua.DataValue) -> None:
        name = await self._decode(client_node, watch, role, value)
        watch.names[role] = name
        state_name = watch.effective()
        if state_name is None or state_name == watch.last:
            return
        try:
            info = lookup_state(state_name, watch.cfg.model)
        except UnknownState as exc:
            self.errors.append(f"{watch.cfg.machine}: {exc}")
            return
        watch.last = state_name
        when = dv.SourceTimestamp or dv.ServerTimestamp or datetime.now(UTC)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)  # OPC UA time is UTC
        event = MachineStateEvent(
            event_id=f"{self.source}:{watch.cfg.machine}:{info.name}:{when.isoformat()}",
            source=self.source,
            time=when,
            machine=watch.cfg.machine,
            state=info.state,
            raw_state=info.name,
            raw_model=watch.cfg.model,
        )
        await self._emit(event)

    async def _decode(self, node: Node, watch: _Watch, role: str, value: Any) -> str | None:
        """State name from a LocalizedText, string, number or NodeId value."""
        if value is None:
            return None
        if isinstance(value, ua.NodeId):
            return await self._browse_name(node.session, value)
        if isinstance(value, ua.LocalizedText):
            value = value.Text
        if isinstance(value, int):
            return str(value)
        text = str(value or "").strip()
        if not text:
            return None
        try:
            lookup_state(text, watch.cfg.model)
            return text
        except UnknownState:
            pass
        # a localised display text: the Id property names the state node independently of language
        if role not in watch.id_nodes:
            watch.id_nodes[role] = await _child(node, "Id")
        id_node = watch.id_nodes[role]
        if id_node is not None:
            with contextlib.suppress(Exception):
                state_id = await id_node.read_value()
                if isinstance(state_id, ua.NodeId) and not state_id.is_null():
                    return await self._browse_name(node.session, state_id)
        return text

    async def _browse_name(self, session: Any, nodeid: ua.NodeId) -> str:
        if nodeid not in self._names:
            self._names[nodeid] = (await Node(session, nodeid).read_browse_name()).Name
        return self._names[nodeid]

    async def _emit(self, event: MachineStateEvent) -> None:
        if isinstance(self.sink, asyncio.Queue):
            await self.sink.put(event)
            return
        result = self.sink(event)
        if inspect.isawaitable(result):
            await result


class _Handler:
    """asyncua subscription handler (async variant) forwarding to the monitor."""

    def __init__(self, monitor: MachineStateMonitor, index: dict[ua.NodeId, tuple[_Watch, str]]):
        self.monitor = monitor
        self.index = index

    async def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        found = self.index.get(node.nodeid)
        if found is None:
            return
        try:
            await self.monitor._on_change(node, found[0], found[1], val, data.monitored_item.Value)
        except Exception as exc:  # never let a bad value kill the subscription task
            self.monitor.errors.append(f"{found[0].cfg.machine}: cannot decode {val!r}: {exc}")
            log.exception("OPC UA notification for %s", found[0].cfg.machine)

    async def status_change_notification(self, status: Any) -> None:
        self.monitor._lost = True


# ----------------------------------------------------------------------- browsing helpers


async def _resolve(client: Client, text: str) -> Node:
    """A node from a NodeId string (``ns=``/``nsu=``) or a browse path from Root."""
    text = text.strip()
    if text.startswith("nsu="):
        uri, _, rest = text[4:].partition(";")
        try:
            idx = await client.get_namespace_index(uri)
        except ValueError:
            raise LookupError(f"namespace '{uri}' is not on the server") from None
        text = f"ns={idx};{rest}"
    if _NODE_ID.match(text):
        node = client.get_node(text)
        try:
            await node.read_browse_name()
        except ua.UaStatusCodeError as exc:
            raise LookupError(f"node {text} not found: {exc}") from None
        return node
    node = client.nodes.root
    walked = []
    for seg in [s for s in text.split("/") if s]:
        m = re.match(r"^(\d+):(.*)$", seg)
        ns, name = (int(m.group(1)), m.group(2)) if m else (None, seg)
        nxt = await _child(node, name, ns)
        walked.append(seg)
        if nxt is None:
            raise LookupError(f"browse path '{text}': '{'/'.join(walked)}' not found")
        node = nxt
    return node


async def _child(node: Node, name: str, ns: int | None = None) -> Node | None:
    """The hierarchical child with this browse name (any namespace unless ``ns``), or None."""
    for c in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
        bn = await c.read_browse_name()
        if bn.Name == name and (ns is None or bn.NamespaceIndex == ns):
            return c
    return None


async def _path(node: Node, *names: str) -> Node | None:
    for n in names:
        found = await _child(node, n)
        if found is None:
            return None
        node = found
    return node


async def _machinery_parts(node: Node) -> dict[str, Node]:
    if await node.read_node_class() == ua.NodeClass.Variable:
        return {"state": node}
    for path in (("CurrentState",), ("MachineryItemState", "CurrentState"),
                 ("MachineryBuildingBlocks", "MachineryItemState", "CurrentState")):
        found = await _path(node, *path)
        if found is not None:
            return {"state": found}
    raise LookupError(f"no MachineryItemState/CurrentState under {node.nodeid.to_string()}")


async def _packml_parts(node: Node) -> dict[str, Node]:
    if await node.read_node_class() == ua.NodeClass.Variable:
        return {"state": node}
    base = await _child(node, "BaseStateMachine") or node
    parts = {"base": await _path(base, "CurrentState"),
             "machine": await _path(base, "MachineState", "CurrentState"),
             "execute": await _path(base, "MachineState", "ExecuteState", "CurrentState")}
    found = {k: v for k, v in parts.items() if v is not None}
    if not found:
        raise LookupError(f"no PackML BaseStateMachine/CurrentState under {node.nodeid.to_string()}")
    return found

"""Redis Streams message bus: inboxes, topics, journal, dead letters.

Delivery guarantees, and how they are kept:
* **Durable**: every message is a stream entry (and a copy in the journal
  stream, so a run can be replayed and explained afterwards).
* **At-least-once**: each agent reads through its own consumer group; an
  entry stays pending until acknowledged. A restarted consumer first re-reads
  its own pending entries; entries left by a dead consumer are taken over
  with XAUTOCLAIM after ``claim_idle_ms``.
* **Effectively once**: :meth:`Consumer.commit` stores the agent's new state,
  its outgoing messages, the processed-id mark and the XACK in one atomic script
  (MULTI/EXEC when unfenced), and a message whose envelope id is already marked processed is
  acknowledged without being handled again. A crash before EXEC changes
  nothing; after EXEC everything is done (and the AOF holds the transaction
  whole). Redis does not roll a transaction back when one of its commands
  fails at run time (e.g. WRONGTYPE); the bus only writes keys of its own
  namespace with their own types, so that cannot happen short of tampering.
* **Poison-free**: entries that do not decode (bad envelope, unknown type,
  bad payload) go to the dead-letter stream with the reason and are acked.
* **Fenced**: each :class:`Consumer` is one incarnation of its agent and takes the
  next epoch of that agent (``INCR``) when it starts. Every commit is a script that
  compares the epoch and runs only while it is still this incarnation's (one round
  trip, atomic like MULTI/EXEC), so a stale copy (an actor that Ray restarted
  elsewhere while the old process still runs) can never overwrite the new one's
  state or send in its name: its commit raises :class:`Fenced`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import redis
from pydantic import BaseModel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from paichan.bus.envelope import Envelope, InvalidMessage, decode

FIELD = "envelope"
#: how long a command waits for Redis to come back (connection refused, timeouts, AOF still loading):
#: about 45 s of retries with backoff up to 1 s, then the error reaches the caller
RETRIES = 50


def bus_client(url: str, retries: int = RETRIES) -> redis.Redis:
    """A Redis client that rides out a restart of the server: every command (and MULTI/EXEC) is retried.

    Retrying a transaction whose EXEC did run but whose reply was lost applies it twice; the bus's
    transactions are safe to repeat (state SET, SADD, XACK are idempotent; a repeated outgoing
    message has the same envelope id, which its receiver acknowledges as a duplicate).
    """
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=30,
                                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
                                retry_on_error=[redis.ConnectionError, redis.TimeoutError])


#: KEYS[1] the agent's epoch, ARGV[1] this incarnation's; then commands, each as its length and its words
FENCED_EXEC = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


class Ops:
    """Write commands recorded for one atomic commit (the subset of a pipeline's the bus uses)."""

    def __init__(self) -> None:
        self.cmds: list[list[str]] = []

    def set(self, key: str, value: str) -> None:
        self.cmds.append(["SET", key, value])

    def xadd(self, stream: str, fields: dict[str, str]) -> None:
        self.cmds.append(["XADD", stream, "*", *(w for kv in fields.items() for w in kv)])

    def sadd(self, key: str, *members: str) -> None:
        self.cmds.append(["SADD", key, *members])

    def xack(self, stream: str, group: str, *ids: str) -> None:
        self.cmds.append(["XACK", stream, group, *ids])

    def flat(self) -> list[str]:
        """The commands as script arguments: each one's length, then its words."""
        return [w for c in self.cmds for w in (str(len(c)), *c)]

    def replay(self, pipe: redis.client.Pipeline) -> None:
        for c in self.cmds:
            pipe.execute_command(*c)


class Fenced(RuntimeError):
    """A newer incarnation of this agent has started: this copy's commits are refused and it must stop."""


def _json(state: dict | str) -> str:
    """An agent state as stored: JSON text as given, data serialised."""
    return state if isinstance(state, str) else json.dumps(state)


@dataclass
class Delivery:
    """One stream entry handed to an agent (decoded, or with the reason it is not)."""

    stream: str
    entry_id: str
    fields: dict[str, str]
    envelope: Envelope | None = None
    payload: BaseModel | None = None
    error: str | None = None


class Bus:
    """Names and sends; one per process (redis-py clients are thread-safe)."""

    def __init__(self, url: str, namespace: str = "paichan", retries: int = RETRIES) -> None:
        self.url = url
        self.ns = namespace
        self.r = bus_client(url, retries)
        self.fenced_exec = self.r.register_script(FENCED_EXEC)

    def inbox(self, agent: str) -> str:
        return f"{self.ns}:inbox:{agent}"

    def topic(self, name: str) -> str:
        return f"{self.ns}:topic:{name}"

    @property
    def journal(self) -> str:
        return f"{self.ns}:journal"

    @property
    def deadletter(self) -> str:
        return f"{self.ns}:deadletter"

    def state_key(self, agent: str) -> str:
        return f"{self.ns}:state:{agent}"

    def processed_key(self, agent: str) -> str:
        return f"{self.ns}:processed:{agent}"

    def epoch_key(self, agent: str) -> str:
        return f"{self.ns}:epoch:{agent}"

    def stream_for(self, recipient: str) -> str:
        if recipient.startswith("topic:"):
            return self.topic(recipient[len("topic:"):])
        return self.inbox(recipient)

    def _queue(self, pipe: redis.client.Pipeline | Ops, envs: Iterable[Envelope]) -> None:
        for env in envs:
            data = env.model_dump_json()
            pipe.xadd(self.stream_for(env.recipient), {FIELD: data})
            pipe.xadd(self.journal, {FIELD: data})

    def send(self, *envs: Envelope) -> None:
        """Publish messages atomically (all or none)."""
        pipe = self.r.pipeline(transaction=True)
        self._queue(pipe, envs)
        pipe.execute()

    def send_raw(self, recipient: str, fields: dict[str, str]) -> str:
        """Put an arbitrary entry on a stream (foreign producers; tests of bad input)."""
        return str(self.r.xadd(self.stream_for(recipient), fields))  # type: ignore[arg-type]

    def load_state(self, agent: str) -> dict | None:
        raw = self.r.get(self.state_key(agent))
        return None if raw is None else json.loads(raw)

    def remove_namespace(self) -> int:
        """Delete every key of this namespace (a finished run on a shared Redis); returns how many."""
        removed = 0
        batch: list[str] = []
        for key in self.r.scan_iter(f"{self.ns}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += int(self.r.unlink(*batch))
                batch = []
        if batch:
            removed += int(self.r.unlink(*batch))
        return removed

    def journal_entries(self) -> list[Envelope]:
        """Every message sent so far, in order."""
        out: list[Envelope] = []
        last = "-"
        while True:
            batch = cast(list[tuple[str, dict[str, str]]], self.r.xrange(self.journal, min=last, count=5000))
            if last != "-":
                batch = batch[1:]
            if not batch:
                return out
            out.extend(Envelope.model_validate_json(f[FIELD]) for _, f in batch)
            last = batch[-1][0]

    def dead_letters(self) -> list[dict[str, str]]:
        return [f for _, f in cast(list[tuple[str, dict[str, str]]], self.r.xrange(self.deadletter))]


#: what XREADGROUP returns with decode_responses: [(stream, [(entry id, fields)])], or None
_Read = list[tuple[str, list[tuple[str, dict[str, str]]]]] | None


def fetch_many(bus: Bus, consumers: list[Consumer], count: int = 100) -> list[list[Delivery]]:
    """:meth:`Consumer.fetch` (not blocking) for several consumers in one round trip (a host's agents)."""
    with bus.r.pipeline(transaction=False) as pipe:
        for c in consumers:
            c._read(pipe, count)
        replies = cast(list[_Read], pipe.execute())
    return [c._take(resp) for c, resp in zip(consumers, replies, strict=True)]


class Consumer:
    """An agent's reading end: its inbox and any topics, through its own group."""

    def __init__(self, bus: Bus, agent: str, topics: Iterable[str] = (), consumer: str | None = None,
                 claim_idle_ms: int = 30_000, fence: bool = True) -> None:
        self.bus = bus
        # this incarnation's epoch: taken first, so any older copy's later commit is refused
        self.epoch: int | None = int(bus.r.incr(bus.epoch_key(agent))) if fence else None
        self.agent = agent
        self.group = agent
        self.consumer = consumer or agent
        self.claim_idle_ms = claim_idle_ms
        self.streams = [bus.inbox(agent)] + [bus.topic(t) for t in topics]
        self._backlog = True  # first read our own pending entries (after a restart)
        for s in self.streams:
            try:
                bus.r.xgroup_create(s, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def _decode(self, stream: str, entry_id: str, fields: dict[str, str]) -> Delivery:
        d = Delivery(stream, entry_id, fields)
        try:
            d.envelope, d.payload = decode(fields)
        except InvalidMessage as e:
            d.error = str(e)
        return d

    def fetch(self, count: int = 100, block_ms: int | None = 100) -> list[Delivery]:
        """Next deliveries: own pending first, then new entries, then orphans of dead consumers."""
        return self._take(self._read(self.bus.r, count, block_ms))

    def _read(self, r: redis.Redis | redis.client.Pipeline, count: int, block_ms: int | None = None) -> _Read:
        """XREADGROUP of the backlog (own pending entries) or of new entries (queued only, on a pipeline)."""
        if self._backlog:
            return cast(_Read, r.xreadgroup(self.group, self.consumer, {s: "0" for s in self.streams}, count=count))
        return cast(_Read, r.xreadgroup(self.group, self.consumer, {s: ">" for s in self.streams}, count=count,
                                        block=block_ms))

    def _take(self, resp: _Read) -> list[Delivery]:
        out: list[Delivery] = []
        if self._backlog:
            for stream, entries in resp or []:
                out.extend(self._decode(stream, i, f) for i, f in entries if f)
            if not out:
                self._backlog = False
            return out
        for stream, entries in resp or []:
            out.extend(self._decode(stream, i, f) for i, f in entries)
        return out

    def reclaim(self, count: int = 100) -> list[Delivery]:
        """Take over entries another consumer of this group left pending too long."""
        out: list[Delivery] = []
        for s in self.streams:
            _, entries, *_ = self.bus.r.xautoclaim(s, self.group, self.consumer, self.claim_idle_ms,
                                                   start_id="0-0", count=count)
            out.extend(self._decode(s, i, f) for i, f in entries if f)
        return out

    def is_duplicate(self, d: Delivery) -> bool:
        return d.envelope is not None and bool(self.bus.r.sismember(self.bus.processed_key(self.agent), d.envelope.id))

    def duplicates(self, batch: list[Delivery]) -> set[str]:
        """Envelope ids in ``batch`` this agent has already processed: one SMISMEMBER for the whole batch
        (a round trip per message was most of a busy agent's time)."""
        return duplicates_many(self.bus, [(self, batch)])[0]

    def commit(self, d: Delivery | list[Delivery], state: dict | str | None, outgoing: Iterable[Envelope] = ()) -> None:
        """Atomically: store state, send replies, mark processed, acknowledge (one delivery or a batch).

        ``state`` is JSON-ready data, or already JSON text (an agent's state model serialises itself faster)."""
        self.run(self.commit_ops(d if isinstance(d, list) else [d], state, outgoing))

    def publish(self, state: dict | str | None, outgoing: Iterable[Envelope]) -> None:
        """Atomically store state (data or JSON text) and send messages not caused by a delivery (clock ticks)."""
        self.run(self.commit_ops([], state, outgoing))

    def commit_ops(self, batch: list[Delivery], state: dict | str | None, outgoing: Iterable[Envelope] = (),
                   ops: Ops | None = None) -> Ops:
        """The commands of a commit (added to ``ops`` when given), to run with :meth:`run` or :func:`run_many`."""
        ops = ops if ops is not None else Ops()
        if state is not None:
            ops.set(self.bus.state_key(self.agent), _json(state))
        self.bus._queue(ops, outgoing)
        ids = [x.envelope.id for x in batch if x.envelope is not None]
        if ids:
            ops.sadd(self.bus.processed_key(self.agent), *ids)
        for x in batch:
            ops.xack(x.stream, self.group, x.entry_id)
        return ops

    def script_args(self, ops: Ops) -> tuple[list[str], list[str]]:
        """KEYS and ARGV of the fenced script for ``ops``."""
        return [self.bus.epoch_key(self.agent)], [str(self.epoch), *ops.flat()]

    def stale(self) -> Fenced:
        live = cast(str | None, self.bus.r.get(self.bus.epoch_key(self.agent)))  # decode_responses: text
        return Fenced(f"{self.agent}: incarnation {self.epoch} is stale (epoch {live} is live); its commit was refused")

    def run(self, ops: Ops) -> None:
        """Run the commands atomically, only while this incarnation's epoch is the live one.

        One round trip: a script compares the epoch and runs the commands (a script runs whole, like
        MULTI/EXEC, and is written to the AOF as one transaction). WATCH, GET, MULTI/EXEC took three, and
        commits are most of a busy agent's traffic."""
        if self.epoch is None:
            with self.bus.r.pipeline(transaction=True) as pipe:
                ops.replay(pipe)
                pipe.execute()
            return
        keys, args = self.script_args(ops)
        if not self.bus.fenced_exec(keys=keys, args=args):
            raise self.stale()

    def ack(self, d: Delivery) -> None:
        self.bus.r.xack(d.stream, self.group, d.entry_id)

    def dead_letter(self, d: Delivery, reason: str) -> None:
        """Park an entry we cannot handle, with the reason, and acknowledge it."""
        ops = Ops()
        ops.xadd(self.bus.deadletter, {"stream": d.stream, "entry_id": d.entry_id, "agent": self.agent,
                                       "reason": reason, "raw": json.dumps(d.fields)})
        ops.xack(d.stream, self.group, d.entry_id)
        self.run(ops)


def duplicates_many(bus: Bus, work: list[tuple[Consumer, list[Delivery]]]) -> list[set[str]]:
    """:meth:`Consumer.duplicates` for several consumers in one round trip."""
    asked = [(c, [d.envelope.id for d in batch if d.envelope is not None]) for c, batch in work]
    with bus.r.pipeline(transaction=False) as pipe:
        for c, ids in asked:
            if ids:
                pipe.smismember(bus.processed_key(c.agent), ids)
        replies = iter(cast(list[list[int]], pipe.execute()))
    return [{i for i, hit in zip(ids, next(replies), strict=True) if hit} if ids else set() for _, ids in asked]


def run_many(bus: Bus, work: list[tuple[Consumer, Ops]]) -> list[Exception | None]:
    """Each consumer's commit as its own fenced script call, all in one round trip (a host's agents).

    Per item: None when it ran, :class:`Fenced` when that incarnation is stale, or the error it met.
    Unfenced consumers (no epoch) run their own transaction."""
    out: list[Exception | None] = [None] * len(work)
    fenced = [k for k, (c, _) in enumerate(work) if c.epoch is not None]
    if fenced:
        sha = bus.fenced_exec.sha
        with bus.r.pipeline(transaction=False) as pipe:
            for k in fenced:
                keys, args = work[k][0].script_args(work[k][1])
                pipe.evalsha(sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
        for k, reply in zip(fenced, replies, strict=True):
            c, ops = work[k]
            try:
                if isinstance(reply, redis.exceptions.NoScriptError):  # a restarted Redis forgot the script
                    c.run(ops)
                elif isinstance(reply, Exception):
                    raise reply
                elif not reply:
                    raise c.stale()
            except Exception as e:
                out[k] = e
    for k, (c, ops) in enumerate(work):
        if c.epoch is None:
            try:
                c.run(ops)
            except Exception as e:
                out[k] = e
    return out

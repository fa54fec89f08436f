"""What every agent is: a state machine fed by bus messages and the clock.

An agent never talks to Redis itself. Its host hands it one decoded message at
a time (:meth:`Agent.handle`) or a clock tick (:meth:`Agent.tick`) and commits
what it returns — outgoing messages — together with :meth:`Agent.state` in one
transaction. After a crash the host rebuilds the agent from that state
(:meth:`Agent.restore`) and re-delivers whatever was not acknowledged, so the
handlers must be deterministic functions of (state, message) — no hidden
inputs besides the clock values passed in.

Each agent class declares one handler per payload type with :func:`handles`;
:meth:`Agent.handle` dispatches on the payload's type, and a type the agent has
no handler for raises :class:`UnhandledMessage` (the host dead-letters it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from paichan.agents.state import StateModel
from paichan.bus.envelope import Envelope, make

Handler = Callable[[Any, Envelope, Any, float], list[Envelope]]
H = TypeVar("H", bound=Handler)


class UnhandledMessage(ValueError):
    """An agent got a message type it has no handler for (sent to the wrong agent)."""


def handles(*types: type[BaseModel]) -> Callable[[H], H]:
    """Mark a method ``(self, env, payload, now) -> outgoing`` as the handler of these payload types."""

    def mark(fn: H) -> H:
        fn.__handles__ = types  # type: ignore[attr-defined]
        return fn

    return mark


class Agent:
    """Base class: identity, topics, helpers to answer and to persist."""

    kind = "agent"
    handlers: ClassVar[dict[type[BaseModel], Handler]] = {}
    state_model: ClassVar[type[StateModel]]  # the class of ``st``
    st: StateModel  # everything the agent commits to the bus (the rest is configuration)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Collect the class's (and its bases') :func:`handles` methods into ``handlers``."""
        super().__init_subclass__(**kwargs)
        cls.handlers = {}
        for klass in reversed(cls.__mro__):
            for fn in vars(klass).values():
                for t in getattr(fn, "__handles__", ()):
                    cls.handlers[t] = fn

    def __init__(self, agent_id: str, topics: tuple[str, ...] = ()) -> None:
        self.id = agent_id
        self.topics = topics
        self.handled = 0
        self.dirty = False  # set by tick() when it changed state without sending anything

    def handle(self, env: Envelope, payload: BaseModel, now: float) -> list[Envelope]:
        """One message in, the messages it causes out (the handler registered for the payload's type)."""
        handler = self.handlers.get(type(payload))
        if handler is None:
            raise UnhandledMessage(f"{self.kind} {self.id} cannot handle '{env.type}'")
        return handler(self, env, payload, now)

    # to override -----------------------------------------------------------
    def tick(self, now: float) -> list[Envelope]:
        """Clock: expire deadlines. ``now`` is wall-clock epoch seconds."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """The agent's state as JSON-ready data (its state model, dumped)."""
        return self.st.model_dump(mode="json", by_alias=True)

    def load(self, state: dict[str, Any]) -> None:
        """Replace the state by a snapshot, validated once into the agent's state model."""
        self.st = self.state_model.model_validate(state)

    # used by the host ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"handled": self.handled, "agent": self.snapshot()}

    def state_json(self) -> str:
        """:meth:`state` as JSON, what the host commits: the model's own encoder, without building dicts first
        (4.5 ms instead of 20 ms for a line with 300 orders)."""
        return f'{{"handled": {int(self.handled)}, "agent": {self.st.model_dump_json(by_alias=True)}}}'

    def restore(self, state: dict[str, Any]) -> None:
        self.handled = state.get("handled", 0)
        self.load(state["agent"])

    def send(self, payload: BaseModel, to: str, conversation: str, reply_to: str | None = None) -> Envelope:
        return make(payload, sender=self.id, recipient=to, conversation=conversation, reply_to=reply_to)

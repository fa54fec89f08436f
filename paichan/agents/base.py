"""What every agent is: a state machine fed by bus messages and the clock.

An agent never talks to Redis itself. Its host hands it one decoded message at
a time (:meth:`Agent.handle`) or a clock tick (:meth:`Agent.tick`) and commits
what it returns — outgoing messages — together with :meth:`Agent.state` in one
transaction. After a crash the host rebuilds the agent from that state
(:meth:`Agent.restore`) and re-delivers whatever was not acknowledged, so the
handlers must be deterministic functions of (state, message) — no hidden
inputs besides the clock values passed in.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from paichan.bus.envelope import Envelope, make


class Agent:
    """Base class: identity, topics, helpers to answer and to persist."""

    kind = "agent"

    def __init__(self, agent_id: str, topics: tuple[str, ...] = ()) -> None:
        self.id = agent_id
        self.topics = topics
        self.handled = 0
        self.dirty = False  # set by tick() when it changed state without sending anything

    # to override -----------------------------------------------------------
    def handle(self, env: Envelope, payload: BaseModel, now: float) -> list[Envelope]:
        raise NotImplementedError

    def tick(self, now: float) -> list[Envelope]:
        """Clock: expire deadlines. ``now`` is wall-clock epoch seconds."""
        return []

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # used by the host ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"handled": self.handled, "agent": self.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        self.handled = state.get("handled", 0)
        self.load(state["agent"])

    def send(self, payload: BaseModel, to: str, conversation: str, reply_to: str | None = None) -> Envelope:
        return make(payload, sender=self.id, recipient=to, conversation=conversation, reply_to=reply_to)

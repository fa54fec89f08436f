"""The typed envelope every bus message travels in, and the payload registry.

A message is valid only if its envelope parses and its ``type`` is registered
with a payload model that accepts the payload at the envelope's schema version.
Anything else is dead-lettered by the consumer with the reason, never raised
into an agent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paichan.domain.errors import validation_messages


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Routing and bookkeeping around a payload."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid4().hex)
    type: str
    schema_version: int = 1
    sender: str
    recipient: str  # an agent id, or "topic:<name>" for broadcasts
    conversation: str
    reply_to: str | None = None  # id of the message this answers
    sent_at: datetime = Field(default_factory=utcnow)
    deadline: datetime | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


_REGISTRY: dict[tuple[str, int], type[BaseModel]] = {}


def message(type_name: str, version: int = 1):
    """Class decorator registering a payload model for a message type."""

    def register(cls: type[BaseModel]) -> type[BaseModel]:
        _REGISTRY[(type_name, version)] = cls
        cls.message_type = type_name  # type: ignore[attr-defined]
        return cls

    return register


class InvalidMessage(ValueError):
    """Why a raw stream entry is not a message we can handle."""


def decode(fields: dict[str, str]) -> tuple[Envelope, BaseModel]:
    """Parse a stream entry; raises :class:`InvalidMessage` with a reason."""
    raw = fields.get("envelope")
    if raw is None:
        raise InvalidMessage("entry has no 'envelope' field")
    try:
        env = Envelope.model_validate_json(raw)
    except ValidationError as e:
        raise InvalidMessage(f"bad envelope: {validation_messages(e, 1, top='')[0]}") from e
    model = _REGISTRY.get((env.type, env.schema_version))
    if model is None:
        raise InvalidMessage(f"unknown message type '{env.type}' (schema version {env.schema_version})")
    try:
        payload = model.model_validate(env.payload)
    except ValidationError as e:
        raise InvalidMessage(f"bad '{env.type}' payload: {validation_messages(e, 1, top='')[0]}") from e
    return env, payload


def make(payload: BaseModel, sender: str, recipient: str, conversation: str, reply_to: str | None = None,
         deadline: datetime | None = None) -> Envelope:
    """An envelope around a registered payload model."""
    return Envelope(
        type=payload.message_type,  # type: ignore[attr-defined]
        sender=sender,
        recipient=recipient,
        conversation=conversation,
        reply_to=reply_to,
        deadline=deadline,
        payload=payload.model_dump(mode="json"),
    )

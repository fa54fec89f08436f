"""Standard Webhooks signing and verification (https://www.standardwebhooks.com, spec 1.0.0).

An MES that posts shop-floor events to paichan proves who it is, and that nothing changed on the
way, with three headers:

* ``webhook-id``: the message id, unique per event batch and kept across retries (an
  idempotency key: a receiver drops ids it has seen);
* ``webhook-timestamp``: unix seconds of this delivery attempt (replay protection);
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, the HMAC of
  ``f"{id}.{timestamp}."`` followed by the raw body bytes, keyed with the secret's bytes. Several
  entries allow zero-downtime secret rotation: the sender signs with the old and the new secret.

Secrets are written ``whsec_`` + base64 of 24 to 64 random bytes. Only the ``v1`` (symmetric)
scheme is implemented; other entries (``v1a`` asymmetric, future versions) are ignored.
Standard library only, so the receiver (service) and any sender can share it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from secrets import token_bytes

SECRET_PREFIX = "whsec_"
"""Prefix of a serialised symmetric secret (the spec's ``whsec_``)."""
MIN_KEY_BYTES = 24
"""The spec asks for at least 24 random bytes (192 bits) ..."""
MAX_KEY_BYTES = 64
"""... and at most 64 (512 bits)."""
DEFAULT_TOLERANCE_S = 300
"""How far ``webhook-timestamp`` may be from now, in either direction (5 minutes)."""
SIGNATURE_VERSION = "v1"
"""Version tag of HMAC-SHA256 signatures in ``webhook-signature``."""

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookVerificationError(Exception):
    """A request whose Standard Webhooks headers do not prove it came, unchanged, from a secret holder.

    ``reason`` says which check failed (a missing header, a bad or stale timestamp, no matching
    signature), so a receiver can log it and answer 401/400 with it: it names nothing secret.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WebhookSecret:
    """A symmetric signing secret: the raw key bytes, parsed from and written as ``whsec_<base64>``.

    The key never appears in ``repr`` or in error messages, so logging one is harmless.
    """

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not MIN_KEY_BYTES <= len(self.key) <= MAX_KEY_BYTES:
            raise ValueError(f"webhook secret key has {len(self.key)} bytes; Standard Webhooks needs "
                             f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes")

    @classmethod
    def parse(cls, text: str) -> WebhookSecret:
        """Read ``whsec_<base64 key>``; ValueError says what is wrong without echoing the secret."""
        if not isinstance(text, str):
            raise ValueError(f"webhook secret must be a string like 'whsec_...', not {type(text).__name__}")
        text = text.strip()
        if not text:
            raise ValueError("webhook secret is empty; expected 'whsec_' followed by base64")
        if not text.startswith(SECRET_PREFIX):
            raise ValueError(f"webhook secret must start with '{SECRET_PREFIX}' (Standard Webhooks symmetric secret)")
        encoded = text[len(SECRET_PREFIX):]
        if not encoded:
            raise ValueError(f"webhook secret has nothing after '{SECRET_PREFIX}'; expected base64 of the key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"webhook secret: the part after '{SECRET_PREFIX}' is not valid base64 "
                             f"({len(encoded)} characters; standard alphabet A-Z a-z 0-9 + /, '=' padding)") from e
        return cls(key)

    @classmethod
    def generate(cls, nbytes: int = 32) -> str:
        """A new random secret as ``whsec_...`` text, ready for both ends' configuration."""
        return cls(token_bytes(nbytes)).to_string()

    def to_string(self) -> str:
        """The ``whsec_<base64>`` form (the only form in which a secret is shown or stored)."""
        return SECRET_PREFIX + base64.b64encode(self.key).decode("ascii")

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> bytes:
        """The raw HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}`` under this key."""
        return hmac.new(self.key, f"{msg_id}.{timestamp}.".encode() + body, sha256).digest()


SecretLike = str | WebhookSecret


def _secret(secret: SecretLike) -> WebhookSecret:
    return secret if isinstance(secret, WebhookSecret) else WebhookSecret.parse(secret)


def check_message_id(msg_id: str) -> None:
    """ValueError unless ``msg_id`` is usable: the spec forbids '.', which would blur id/timestamp/body."""
    if not msg_id or "." in msg_id or any(c.isspace() for c in msg_id):
        raise ValueError(f"webhook id {msg_id!r} must be non-empty, without '.' or whitespace")


def new_message_id() -> str:
    """A fresh, unique ``webhook-id`` (``msg_`` + 32 hex digits)."""
    return f"msg_{uuid.uuid4().hex}"


def sign(secret: SecretLike, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` entry ``v1,<base64>`` for one secret.

    ``body`` is the exact bytes sent: re-serialising JSON changes them and breaks the signature.
    """
    check_message_id(msg_id)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"webhook timestamp must be a non-negative integer of unix seconds, not {timestamp!r}")
    digest = _secret(secret).signature(msg_id, timestamp, body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(secret: SecretLike | Sequence[SecretLike], body: bytes, msg_id: str | None = None,
                   timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for sending ``body`` now (or at ``timestamp``).

    ``secret`` may be several secrets while rotating: each adds one signature, so receivers that
    know either the old or the new secret accept the message. A new id is made unless ``msg_id``
    is given (give the same id to every retry of one message).
    """
    keys = [secret] if isinstance(secret, (str, WebhookSecret)) else list(secret)
    if not keys:
        raise ValueError("signed_headers needs at least one secret")
    msg_id = new_message_id() if msg_id is None else msg_id
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(sign(k, msg_id, timestamp, body) for k in keys),
    }


def _header(lowered: Mapping[str, str], name: str) -> str:
    value = lowered.get(name)
    if value is None:
        raise WebhookVerificationError(f"missing header {name}")
    value = value.strip()
    if not value:
        raise WebhookVerificationError(f"empty header {name}")
    return value


def verify(secrets: Sequence[SecretLike], headers: Mapping[str, str], body: bytes, now: float | None = None,
           tolerance_s: int = DEFAULT_TOLERANCE_S) -> str:
    """Check a received webhook and return its ``webhook-id`` (for duplicate detection).

    ``headers`` are looked up without regard to case; ``body`` must be the raw bytes received.
    The timestamp must be within ``tolerance_s`` of ``now`` (default: the clock) either way, and
    one ``v1`` signature must match one of ``secrets`` (several during a rotation), compared in
    constant time. Raises :class:`WebhookVerificationError` naming the failed check; a bad
    ``secrets`` argument is a configuration error and raises ValueError.
    """
    if isinstance(secrets, (str, WebhookSecret)):
        secrets = [secrets]
    keys = [_secret(s) for s in secrets]
    if not keys:
        raise ValueError("verify needs at least one secret")
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = _header(lowered, HEADER_ID)
    stamp = _header(lowered, HEADER_TIMESTAMP)
    signature_header = _header(lowered, HEADER_SIGNATURE)
    if "." in msg_id:
        raise WebhookVerificationError(f"bad {HEADER_ID}: contains '.'")
    if not _TIMESTAMP.fullmatch(stamp):
        shown = stamp if len(stamp) <= 32 else stamp[:32] + "..."
        raise WebhookVerificationError(f"bad {HEADER_TIMESTAMP} {shown!r}: expected integer unix seconds")
    timestamp = int(stamp)
    now = time.time() if now is None else now
    if timestamp < now - tolerance_s:
        raise WebhookVerificationError(f"{HEADER_TIMESTAMP} too old: {now - timestamp:.0f} s before now "
                                       f"(tolerance {tolerance_s} s)")
    if timestamp > now + tolerance_s:
        raise WebhookVerificationError(f"{HEADER_TIMESTAMP} too new: {timestamp - now:.0f} s after now "
                                       f"(tolerance {tolerance_s} s)")
    candidates: list[bytes] = []
    versions: set[str] = set()
    for entry in signature_header.split():
        version, sep, encoded = entry.partition(",")
        versions.add(version if sep else "?")
        if version != SIGNATURE_VERSION or not sep:
            continue
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue  # a malformed entry cannot match; another one may
    if not candidates:
        raise WebhookVerificationError(f"no matching signature: {HEADER_SIGNATURE} has no valid "
                                       f"{SIGNATURE_VERSION} entry (versions seen: {', '.join(sorted(versions))})")
    matched = False
    for key in keys:
        expected = key.signature(msg_id, timestamp, body)
        for candidate in candidates:
            # No early exit: the work done does not depend on which pair matches.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(f"no matching signature: {len(candidates)} {SIGNATURE_VERSION} signature(s) "
                                       f"checked against {len(keys)} secret(s)")
    return msg_id

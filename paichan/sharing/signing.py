"""Signed envelopes between enterprises: Ed25519 (``cryptography``), replay-safe.

An envelope names its session, sender, recipient, a per-sender sequence number, a random nonce
and the time; the signature covers all of that and the body (canonical JSON). A receiver rejects:
a bad signature (tampered), a sender whose registered key did not sign it or who is not the
stream's owner (impersonated), and a sequence number or nonce already seen (replayed).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

HOST = "host"  # the sender id of the session host's own messages


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: int = 1
    session: str
    sender: str
    to: str  # an enterprise id, or "*" (the public stream), or "host"
    seq: int = Field(ge=1)
    nonce: str
    ts: float
    kind: str
    body: dict[str, Any]
    sig: str = ""

    def signed_bytes(self) -> bytes:
        data = self.model_dump(exclude={"sig"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def wire(self) -> str:
        return self.model_dump_json()


class Rejected(ValueError):
    """A message that fails verification; ``reason`` is tampered, impersonated, replayed or malformed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Signer:
    """An enterprise's (or the host's) private key and its sequence counter."""

    def __init__(self, sender: str, session: str, key: Ed25519PrivateKey | None = None, seq: int = 0) -> None:
        self.sender = sender
        self.session = session
        self.key = key or Ed25519PrivateKey.generate()
        self.seq = seq

    @property
    def public_b64(self) -> str:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def private_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @classmethod
    def from_pem(cls, sender: str, session: str, pem: bytes, seq: int = 0) -> Signer:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return cls(sender, session, key, seq)

    def sign(self, kind: str, body: dict[str, Any], to: str = HOST) -> Envelope:
        self.seq += 1
        env = Envelope(session=self.session, sender=self.sender, to=to, seq=self.seq,
                       nonce=secrets.token_hex(12), ts=time.time(), kind=kind, body=body)
        env.sig = base64.b64encode(self.key.sign(env.signed_bytes())).decode()
        return env


def public_key(b64: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))


def parse(raw: str | bytes) -> Envelope:
    try:
        return Envelope.model_validate_json(raw)
    except ValueError as e:
        raise Rejected("malformed", str(e).splitlines()[0]) from None


def verify_signature(env: Envelope, key_b64: str) -> None:
    try:
        public_key(key_b64).verify(base64.b64decode(env.sig), env.signed_bytes())
    except (InvalidSignature, ValueError) as e:
        raise Rejected("tampered", f"{env.kind} from {env.sender} #{env.seq}: signature does not verify "
                       f"({type(e).__name__})") from None


class Verifier:
    """Checks envelopes of one session against the registered keys; remembers what it has seen."""

    def __init__(self, session: str, keys: dict[str, str]) -> None:
        self.session = session
        self.keys = dict(keys)  # sender -> public key (base64)
        self.last_seq: dict[str, int] = {}
        self.nonces: set[str] = set()

    def check(self, env: Envelope, stream_owner: str | None = None) -> Envelope:
        """``env`` if genuine, fresh and from ``stream_owner`` (when given); else :class:`Rejected`."""
        if env.session != self.session:
            raise Rejected("replayed", f"{env.kind} #{env.seq} belongs to session {env.session}, not {self.session}")
        if stream_owner is not None and env.sender != stream_owner:
            raise Rejected("impersonated", f"{env.kind} claims to be from {env.sender} but was written by "
                           f"{stream_owner}")
        key = self.keys.get(env.sender)
        if key is None:
            raise Rejected("impersonated", f"{env.kind} from {env.sender}, who has no registered key")
        try:
            verify_signature(env, key)
        except Rejected as e:
            if stream_owner is None and any(_verifies(env, k) for s, k in self.keys.items() if s != env.sender):
                raise Rejected("impersonated", f"{env.kind} claims {env.sender} but another member signed it") from e
            raise
        if env.nonce in self.nonces or env.seq <= self.last_seq.get(env.sender, 0):
            raise Rejected("replayed", f"{env.kind} from {env.sender} #{env.seq} was already received")
        self.last_seq[env.sender] = env.seq
        self.nonces.add(env.nonce)
        return env


def _verifies(env: Envelope, key_b64: str) -> bool:
    try:
        verify_signature(env, key_b64)
        return True
    except Rejected:
        return False

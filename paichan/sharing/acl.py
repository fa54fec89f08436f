"""Redis key names of a session and the ACL users that confine each enterprise to its own.

Every key of enterprise ``E`` in session ``S`` is ``paichan:share:S:e:E:<name>``: its id is a
``:``-separated segment, so one key pattern (``~paichan:share:S:e:E:*``) is its whole territory.
Redis has no per-consumer-group ACL, so each enterprise has its own inbox (read by it, written by
the session host) and outbox (written by it, read by the host): ACL selectors give it XADD on its
outbox only, the consumer-group commands on its inbox only, read access to the session's public
stream and key registry, and nothing else (no DEL, no KEYS, no SCAN, no other enterprise's keys).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis

PREFIX = "paichan:share"


class SessionRefused(RuntimeError):
    """The server cannot confine enterprises safely (or the session cannot be opened): the reason."""


class Keys:
    """Key names of one session."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.root = f"{PREFIX}:{session}"

    @property
    def meta(self) -> str:  # hash: state, enterprises, host public key (readable by all members)
        return f"{self.root}:meta"

    @property
    def public(self) -> str:  # stream: offers and public awards (written by the host only)
        return f"{self.root}:public"

    @property
    def registry(self) -> str:  # hash: enterprise id -> its Ed25519 public key (written by the host)
        return f"{self.root}:keys"

    @property
    def ledger(self) -> str:  # stream: the full ledger (host only)
        return f"{self.root}:ledger"

    def ent(self, eid: str, name: str) -> str:
        return f"{self.root}:e:{eid}:{name}"

    def inbox(self, eid: str) -> str:
        return self.ent(eid, "in")

    def outbox(self, eid: str) -> str:
        return self.ent(eid, "out")

    def view(self, eid: str) -> str:  # stream: the enterprise's view of the ledger
        return self.ent(eid, "ledger")

    def private(self, eid: str) -> str:  # the enterprise's own prefix (its agent's state, commands)
        return self.ent(eid, "p:*")

    def priv(self, eid: str, name: str) -> str:
        return self.ent(eid, f"p:{name}")

    def user(self, eid: str) -> str:
        return f"paichan-{self.session}-{eid}"


def acl_rules(keys: Keys, eid: str) -> list[str]:
    """ACL SETUSER rules (after the password) for enterprise ``eid``: selectors, one per key set."""
    return [
        "resetkeys", "resetchannels", "-@all", "+ping", "+echo",
        # its inbox: consume with a consumer group (the host created the group)
        f"(~{keys.inbox(eid)} +xreadgroup +xack +xautoclaim +xpending +xlen)",
        # its outbox: append only
        f"(%W~{keys.outbox(eid)} +xadd)",
        # its ledger view: read only
        f"(%R~{keys.view(eid)} +xrange +xrevrange +xread +xlen)",
        # the session's public stream and registries: read only
        f"(%R~{keys.public} +xrange +xrevrange +xread +xlen)",
        f"(%R~{keys.meta} %R~{keys.registry} +hget +hgetall +hmget)",
        # its private state (the agent's commands, counters, heartbeat)
        f"(~{keys.private(eid)} +get +set +incr +expire +hset +hget +hgetall +hdel +del +exists "
        "+rpush +lpop +lrange +llen)",
    ]


def create_user(r: redis.Redis, keys: Keys, eid: str, base_url: str) -> str:
    """(Re)create the enterprise's ACL user with a fresh password; returns its redis:// URL."""
    password = secrets.token_urlsafe(24)
    r.execute_command("ACL", "SETUSER", keys.user(eid), "reset", "on", f">{password}", *acl_rules(keys, eid))
    return with_user(base_url, keys.user(eid), password)


def session_users(r: redis.Redis, session: str) -> list[str]:
    users = [u.decode() if isinstance(u, bytes) else str(u) for u in r.execute_command("ACL", "USERS")]
    return [u for u in users if u.startswith(f"paichan-{session}-")]


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_default_user(r: redis.Redis) -> str | None:
    """Why members could bypass their ACL users (the default user is on without a password), or None.

    Every member learns the server's address from its credentials; with a password-less default
    user it could simply log in as that and read everyone's keys.
    """
    info: Any = r.execute_command("ACL", "GETUSER", "default")
    if not info:
        return None
    if isinstance(info, list):  # RESP2: a flat list of names and values
        info = dict(zip(info[::2], info[1::2], strict=False))
    raw = info.get(b"flags", info.get("flags")) or []
    flags = {f.decode() if isinstance(f, bytes) else str(f) for f in raw}
    if "on" in flags and "nopass" in flags:
        return ("the server's default user needs no password, so every member could log in as it and read "
                "the others' keys; set one (requirepass) and give the host its URL with the password")
    return None


def probe_stream_acl(r: redis.Redis, base_url: str, own_pattern: str | None = None) -> str | None:
    """None if the server refuses a confined user another key's stream by XREAD and XREADGROUP, else why not.

    Some Redis releases validated ACL key permissions on other arguments than the keys XREAD and
    XREADGROUP read (e.g. a consumer named ``STREAMS``; fixed upstream in 7.2.16, 7.4.11 and later,
    backported by distributions without a version change), so the version says nothing: ask the
    server. A throw-away user allowed only ``own_pattern`` (default: its own probe key) must read its
    own stream and be refused the other one in every form; the user and keys are removed afterwards.
    """
    tag = uuid.uuid4().hex[:10]
    own, other, user = f"paichan:probe:{tag}:own", f"paichan:probe:{tag}:other", f"paichan-probe-{tag}"
    password = secrets.token_urlsafe(16)
    pattern = own_pattern or own
    attempts: list[tuple[str, list[str]]] = [
        ("XREAD", ["XREAD", "STREAMS", other, "0"]),
        ("XREAD COUNT", ["XREAD", "COUNT", "1", "STREAMS", other, "0"]),
        ("XREAD of two streams", ["XREAD", "STREAMS", own, other, "0", "0"]),
        ("XREADGROUP", ["XREADGROUP", "GROUP", "g", "c", "STREAMS", other, ">"]),
        ("XREADGROUP, consumer named STREAMS", ["XREADGROUP", "GROUP", "g", "STREAMS", "STREAMS", other, ">"]),
        ("XREADGROUP NOACK, consumer named STREAMS",
         ["XREADGROUP", "NOACK", "GROUP", "g", "STREAMS", "STREAMS", other, ">"]),
        ("XREADGROUP COUNT, consumer named STREAMS",
         ["XREADGROUP", "COUNT", "1", "GROUP", "g", "STREAMS", "STREAMS", other, ">"]),
    ]
    try:
        for key in (own, other):
            r.xadd(key, {"probe": "1"})
            r.xgroup_create(key, "g", id="0")
        r.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", f"~{pattern}",
                          "-@all", "+xread", "+xreadgroup", "+ping")
        client = redis.Redis.from_url(with_user(base_url, user, password), socket_connect_timeout=3)
        try:
            try:
                client.execute_command("XREADGROUP", "GROUP", "g", "c", "STREAMS", own, ">")
            except redis.ResponseError as e:
                return f"the probe user could not read its own stream ({e}); ACL selectors unsupported?"
            for what, cmd in attempts:
                try:
                    client.execute_command(*cmd)
                except redis.exceptions.NoPermissionError:
                    continue
                except redis.ResponseError as e:
                    return f"{what} of another key's stream failed with '{e}' instead of an ACL refusal"
                return (f"{what} of another key's stream was allowed for a user without access to it: this "
                        "Redis checks ACL key permissions on the wrong arguments (fixed in 7.2.16, 7.4.11 and "
                        "later); upgrade it before sharing capacity across enterprises")
        finally:
            client.close()
        return None
    finally:
        r.execute_command("ACL", "DELUSER", user)
        r.delete(own, other)


Entries = list[tuple[str, list[tuple[str, dict[bytes, bytes]]]]]


def entries(reply: Any) -> Entries:
    """An XREAD/XREADGROUP reply as (stream, [(entry id, fields)]) with str names (redis-py is untyped here)."""
    out: Entries = []
    for stream, items in reply or []:
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        out.append((name, [(i.decode() if isinstance(i, bytes) else str(i), f or {}) for i, f in items]))
    return out

"""Session operations shared by the CLI (`paichan session ...`) and the service's /sessions API.

The host side works with the Redis default (admin) user; the member side with an enterprise's own
credentials only: a member's status is what its ACL user can read (its ledger view and the
public stream), and its offers and requests go to its own running agent through its own keys.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from paichan.sharing.acl import Keys, entries
from paichan.sharing.enterprise import AgentParams, Command, EnterpriseAgent, EnterpriseResult
from paichan.sharing.host import SessionHost
from paichan.sharing.model import EnterpriseSpec
from paichan.sharing.signing import Rejected, parse

Progress = Callable[[str], None]


class SessionError(RuntimeError):
    """A session operation that cannot be done; the message says why and what to do."""


def member_of(url: str) -> tuple[str, str]:
    """(session, enterprise) of a member's credentials URL (its user is ``paichan-SESSION-ENTERPRISE``)."""
    user = urlsplit(url).username or ""
    parts = user.split("-", 2)
    if len(parts) != 3 or parts[0] != "paichan":
        raise SessionError(f"these credentials are not a session member's (user '{user}')")
    return parts[1], parts[2]


def read_credentials(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise SessionError(f"{path}: cannot read the credentials ({e.strerror})") from None


def _client(url: str) -> redis.Redis:
    r = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        r.ping()
    except redis.AuthenticationError:
        raise SessionError("the server refused these credentials: the session is closed or the user "
                           "was revoked") from None
    except redis.RedisError as e:
        raise SessionError(f"cannot reach the session's Redis: {e}") from None
    return r


# -- host ------------------------------------------------------------------------------------------------------------

def serve_host(host: SessionHost, stop: Callable[[], bool], progress: Progress) -> None:
    """Route until ``stop()`` or a `paichan session close` (meta state 'closing')."""
    last = time.monotonic()
    while not stop() and not host.close_requested():
        host.step(block_ms=100)
        if time.monotonic() - last > 10:
            contracts = sum(1 for a in host.awards.values() if a.state == "binding")
            progress(f"session {host.session}: {len(host.joined)}/{len(host.members)} joined, "
                     f"{host.messages} messages routed, {contracts} contracts")
            last = time.monotonic()


def request_close(admin_url: str, session: str, keep_users: bool = False) -> str:
    """Ask the running host to close; with no host running, revoke the users and mark it closed here."""
    r = _client(admin_url)
    k = Keys(session)
    state = r.hget(k.meta, "state")
    if state is None:
        raise SessionError(f"no session {session} on this Redis")
    if state == b"closed":
        return "closed already"
    r.hset(k.meta, mapping={"state": "closing", "keep_users": int(keep_users)})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if r.hget(k.meta, "state") == b"closed":
            return "closed by its host"
        time.sleep(0.2)
    # no host answered: nothing routes any more, so close what can be closed from here
    if not keep_users:
        for u in r.execute_command("ACL", "USERS"):
            name = u.decode() if isinstance(u, bytes) else str(u)
            if name.startswith(f"paichan-{session}-"):
                r.execute_command("ACL", "DELUSER", name)
    r.hset(k.meta, "state", "closed")
    return "closed (no host was running; its ACL users were revoked here)" if not keep_users else "closed"


def host_status(admin_url: str, session: str) -> dict[str, Any]:
    r = _client(admin_url)
    k = Keys(session)
    meta = {a.decode(): b.decode() for a, b in r.hgetall(k.meta).items()}  # type: ignore[union-attr]
    if not meta:
        raise SessionError(f"no session {session} on this Redis")
    rows = entries([(k.ledger, r.xrange(k.ledger))])[0][1]
    ledger = [json.loads(f[b"entry"]) for _, f in rows]
    counts: dict[str, int] = {}
    for e in ledger:
        counts[e["kind"]] = counts.get(e["kind"], 0) + 1
    return {"session": session, "state": meta.get("state"), "enterprises": json.loads(meta.get("enterprises", "[]")),
            "joined": sorted({e["actor"] for e in ledger if e["kind"] == "join"}),
            "left": sorted({e["actor"] for e in ledger if e["kind"] == "leave"}), "ledger": counts}


# -- members ---------------------------------------------------------------------------------------------------------

def member_view(url: str) -> dict[str, Any]:
    """What a member may see: its own ledger entries, the public awards and the offers on the market."""
    session, eid = member_of(url)
    r = _client(url)
    k = Keys(session)
    rows = entries([(k.view(eid), r.xrange(k.view(eid)))])[0][1]
    view = [json.loads(f[b"entry"]) for _, f in rows]
    offers = []
    for _, f in entries([(k.public, r.xrange(k.public))])[0][1]:
        try:
            env = parse(f.get(b"msg", b""))
        except Rejected:
            continue  # only the host writes there; a member's agent would reject and record it
        if env.kind == "offer":
            offers.append({"from": env.sender} | env.body)
    state = r.hget(k.meta, "state")
    alive = bool(r.exists(k.priv(eid, "alive")))
    return {"session": session, "enterprise": eid, "state": state.decode() if isinstance(state, bytes) else state,
            "agent_running": alive, "ledger": view, "offers": offers}


def queue_command(url: str, cmd: Command) -> str:
    """Hand a command to the member's running agent (`paichan session join`)."""
    session, eid = member_of(url)
    r = _client(url)
    k = Keys(session)
    if not r.exists(k.priv(eid, "alive")):
        raise SessionError(f"no agent of {eid} is running in session {session}: start it with "
                           f"`paichan session join {session} --credentials FILE --scenario FILE` first")
    r.rpush(k.priv(eid, "commands"), cmd.model_dump_json())
    return f"{cmd.kind} queued for {eid}'s agent; `paichan session status` shows the outcome"


def run_member(spec: EnterpriseSpec, url: str, progress: Progress, auto_buy: bool = True,
               params: AgentParams | None = None, stop: threading.Event | None = None,
               timeout: float = 24 * 3600) -> EnterpriseResult:
    """Run one enterprise's agent in this process until the session closes (or ``stop``)."""
    session, eid = member_of(url)
    if eid != spec.id:
        raise SessionError(f"these credentials are {eid}'s, but the scenario part given is {spec.id}'s")
    _client(url)
    agent = EnterpriseAgent(spec, url, session, params, progress)
    agent.auto_buy = auto_buy
    agent.join()
    deadline = time.monotonic() + timeout
    try:
        while not agent.closed and time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                agent.leave("stopped by its host process")
                break
            agent.step()
    except KeyboardInterrupt:
        agent.leave("stopped by the planner (Ctrl-C)")  # nothing it promised stays dangling
        progress(f"{eid}: left the session; its contracts are cancelled")
    return agent.result()

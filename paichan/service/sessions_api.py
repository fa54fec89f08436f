"""The service's /sessions API: cross-enterprise capacity-sharing sessions over HTTP (docs/SHARING.md).

The same operations as `paichan session open|join|offer|request|status|close` (session_cli.py is
the reference): the service's Redis default user is the session host, routing in a background
thread; ``join`` makes the service one enterprise's agent host (its agent runs in a thread here
with that enterprise's own credentials only). Hosts and agents stop when the app shuts down.
"""

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from paichan.service.engine import PlanService, ServiceError
from paichan.sharing.acl import Keys, SessionRefused, entries, session_users
from paichan.sharing.control import (
    SessionError,
    host_status,
    member_of,
    member_view,
    queue_command,
    request_close,
    run_member,
    serve_host,
)
from paichan.sharing.enterprise import AgentParams, Command, EnterpriseResult
from paichan.sharing.host import SessionHost
from paichan.sharing.model import ID, EnterpriseSpec, OfferSpec

log = logging.getLogger("paichan.service.sessions")
SESSION_ID = r"^[A-Za-z0-9_]{1,32}$"  # no '-': a member's user is paichan-SESSION-ENTERPRISE
Sid = Annotated[str, Field(pattern=SESSION_ID)]
Eid = Annotated[str, Field(pattern=ID)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenSession(_Body):
    enterprises: list[Eid] = Field(min_length=2)
    session: Sid | None = None
    keep_users: bool = False
    accept_timeout: float = Field(default=15.0, gt=0)
    silence_timeout: float = Field(default=20.0, gt=0)


class OpenedSession(BaseModel):
    session: str
    credentials: dict[str, str]


class JoinSession(_Body):
    credentials: str = Field(min_length=1, max_length=2000)
    enterprise: EnterpriseSpec
    auto_buy: bool = True
    params: AgentParams | None = None  # the agent's solve times and waits (default AgentParams())


class OfferBody(_Body):
    credentials: str = Field(min_length=1, max_length=2000)
    offer: OfferSpec


class RequestBody(_Body):
    credentials: str = Field(min_length=1, max_length=2000)
    operation: str = Field(pattern=r"^[^/\s]+/\d+$")  # ORDER/STEP, e.g. A1/0
    latest_finish: int | None = Field(default=None, ge=0)
    max_price: float | None = Field(default=None, gt=0)


class CloseBody(_Body):
    keep_users: bool = False


class Queued(BaseModel):
    session: str
    enterprise: str
    detail: str


@dataclass
class _Hosted:
    host: SessionHost
    stop: threading.Event
    keep_users: bool
    thread: threading.Thread | None = None


@dataclass
class _Member:
    url: str
    stop: threading.Event
    thread: threading.Thread | None = None
    result: EnterpriseResult | None = None
    error: str | None = None


@dataclass
class Sessions:
    """The sessions this service hosts and the member agents it runs (kept on ``app.state.sessions``)."""

    url: str
    hosts: dict[str, _Hosted] = field(default_factory=dict)
    members: dict[tuple[str, str], _Member] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def running(self, sid: str) -> list[_Member]:
        with self.lock:
            return [m for (s, _), m in self.members.items() if s == sid and m.thread is not None
                    and m.thread.is_alive()]

    def stop_all(self, timeout: float = 20.0) -> None:
        """Members leave first (their users still work), then the hosts close their sessions."""
        with self.lock:
            members, hosts = list(self.members.values()), list(self.hosts.values())
        for m in members:
            m.stop.set()
        for m in members:
            if m.thread is not None:
                m.thread.join(timeout)
        for h in hosts:
            h.stop.set()
        for h in hosts:
            if h.thread is not None:
                h.thread.join(timeout)


def _progress(msg: str) -> None:
    log.info("%s", msg)


def _route(h: _Hosted) -> None:
    host = h.host
    try:
        serve_host(host, h.stop.is_set, _progress)
    except Exception:
        log.exception("session %s: routing failed; closing it", host.session)
    try:
        keep = h.keep_users or host.r.hget(host.keys.meta, "keep_users") == b"1"
        host.close(keep_users=keep)
    except Exception:
        log.exception("session %s: closing failed", host.session)


def _run(m: _Member, spec: EnterpriseSpec, auto_buy: bool, params: AgentParams | None) -> None:
    try:
        m.result = run_member(spec, m.url, _progress, auto_buy=auto_buy, params=params, stop=m.stop)
    except Exception as e:  # kept for GET .../members/{eid}; the thread must not die with a traceback only
        log.exception("%s's agent failed", spec.id)
        m.error = str(e) or type(e).__name__


def _member_in(sid: str, url: str) -> str:
    """The enterprise of member credentials ``url``; 422 unless they are of session ``sid``."""
    try:
        session, eid = member_of(url)
    except SessionError as e:
        raise ServiceError(422, f"credentials: {e}") from None
    if session != sid:
        raise ServiceError(422, f"credentials: these are of session {session}, not {sid}")
    return eid


def _queue(sid: str, url: str, cmd: Command) -> Queued:
    eid = _member_in(sid, url)
    try:
        return Queued(session=sid, enterprise=eid, detail=queue_command(url, cmd))
    except SessionError as e:
        raise ServiceError(409, str(e)) from None


def register(app: FastAPI, service: PlanService, plan: Callable[..., Any], read: Callable[..., Any]) -> Sessions:
    """Add the /sessions routes (``plan``/``read``: the app's auth dependencies) and stop their threads at shutdown."""
    sessions = Sessions(service.redis_url)
    app.state.sessions = sessions
    admin = redis.Redis.from_url(service.redis_url, socket_connect_timeout=5, socket_timeout=10)
    Plan = Annotated[Any, Depends(plan)]
    Read = Annotated[Any, Depends(read)]

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            try:
                yield state
            finally:
                await asyncio.to_thread(sessions.stop_all)

    app.router.lifespan_context = lifespan

    def status_of(sid: str) -> dict[str, Any]:
        try:
            return host_status(sessions.url, sid)
        except SessionError as e:
            raise ServiceError(404 if "no session" in str(e) else 503, str(e)) from None

    @app.post("/sessions", status_code=201, tags=["sessions"])
    def open_session(body: OpenSession, who: Plan) -> OpenedSession:
        """Host a session: one ACL user per enterprise (their redis:// URLs are returned once), routing until closed."""
        if len(set(body.enterprises)) != len(body.enterprises):
            raise ServiceError(422, "enterprises: the ids must be distinct")
        sid = body.session or uuid.uuid4().hex[:8]
        try:
            host = SessionHost(redis.Redis.from_url(sessions.url), sessions.url, sid, list(body.enterprises),
                               _progress, body.accept_timeout, body.silence_timeout)
        except ValueError as e:
            raise ServiceError(422, str(e)) from None
        with sessions.lock:
            if sid in sessions.hosts:
                raise ServiceError(409, f"session {sid} exists already on this Redis")
            try:
                urls = host.open()
            except (SessionRefused, ValueError) as e:
                raise ServiceError(409, str(e)) from None
            h = _Hosted(host, threading.Event(), body.keep_users)
            h.thread = threading.Thread(target=_route, args=(h,), name=f"paichan-session-{sid}", daemon=True)
            sessions.hosts[sid] = h
        h.thread.start()
        service.audit("session-open", who.name, session=sid, enterprises=body.enterprises)
        return OpenedSession(session=sid, credentials=urls)

    @app.get("/sessions/{sid}", tags=["sessions"])
    def session_status(sid: str, who: Read) -> dict[str, Any]:
        """The host's summary: state, enterprises, who joined or left, ledger entries by kind."""
        return status_of(sid)

    @app.get("/sessions/{sid}/ledger", tags=["sessions"])
    def session_ledger(sid: str, who: Read,
                       enterprise: Annotated[str | None, Query(pattern=ID)] = None) -> list[dict[str, Any]]:
        """The full ledger, or with ``enterprise`` only what that enterprise may see (its view)."""
        st = status_of(sid)
        k = Keys(sid)
        stream = k.ledger
        if enterprise is not None:
            if enterprise not in st["enterprises"]:
                raise ServiceError(404, f"enterprise: {enterprise} is not in session {sid}")
            stream = k.view(enterprise)
        rows = entries([(stream, admin.xrange(stream))])[0][1]
        return [json.loads(f[b"entry"]) for _, f in rows]

    @app.post("/sessions/{sid}/join", status_code=202, tags=["sessions"])
    def join_session(sid: str, body: JoinSession, who: Plan) -> dict[str, Any]:
        """Run the enterprise's agent here, with its own credentials, until the session closes."""
        eid = _member_in(sid, body.credentials)
        if eid != body.enterprise.id:
            raise ServiceError(422, f"enterprise.id: these credentials are {eid}'s, not {body.enterprise.id}'s")
        try:
            member_view(body.credentials)  # the server must accept the credentials now, not in the thread
        except SessionError as e:
            raise ServiceError(409, str(e)) from None
        with sessions.lock:
            running = sessions.members.get((sid, eid))
            if running is not None and running.thread is not None and running.thread.is_alive():
                raise ServiceError(409, f"{eid}'s agent is running in session {sid} already")
            m = _Member(body.credentials, threading.Event())
            m.thread = threading.Thread(target=_run, args=(m, body.enterprise, body.auto_buy, body.params),
                                        name=f"paichan-member-{sid}-{eid}", daemon=True)
            sessions.members[(sid, eid)] = m
        m.thread.start()
        service.audit("session-join", who.name, session=sid, enterprise=eid, auto_buy=body.auto_buy)
        return {"session": sid, "enterprise": eid, "member": f"/sessions/{sid}/members/{eid}"}

    @app.get("/sessions/{sid}/members/{eid}", tags=["sessions"])
    def member(sid: str, eid: str, who: Read) -> dict[str, Any]:
        """What the member may see (with its own credentials), and its outcome once its agent has finished."""
        m = sessions.members.get((sid, eid))
        if m is None:
            raise ServiceError(404, f"this service runs no agent of {eid} in session {sid}")
        finished = m.thread is not None and not m.thread.is_alive()
        try:
            out: dict[str, Any] = member_view(m.url)
        except SessionError as e:
            if not finished:
                raise ServiceError(409, str(e)) from None
            out = {"session": sid, "enterprise": eid, "state": "closed", "agent_running": False,
                   "view": str(e)}  # the users are revoked at close: the outcome below is what is left
        out["finished"] = finished
        if m.result is not None:
            out["with_sharing"] = m.result.with_sharing.model_dump()
            out["without_sharing"] = m.result.without_sharing.model_dump()
        if m.error is not None:
            out["error"] = m.error
        return out

    @app.post("/sessions/{sid}/offers", status_code=202, tags=["sessions"])
    def post_offer(sid: str, body: OfferBody, who: Plan) -> Queued:
        """Put spare capacity on the market, through the member's running agent."""
        return _queue(sid, body.credentials, Command(kind="offer", offer=body.offer))

    @app.post("/sessions/{sid}/requests", status_code=202, tags=["sessions"])
    def post_request(sid: str, body: RequestBody, who: Plan) -> Queued:
        """Ask the market for a slot for one of the member's operations, through its running agent."""
        return _queue(sid, body.credentials, Command(kind="request", operation=body.operation,
                                                     latest_finish=body.latest_finish, max_price=body.max_price))

    @app.post("/sessions/{sid}/close", tags=["sessions"])
    def close_session(sid: str, who: Plan, body: CloseBody | None = None) -> dict[str, Any]:
        """Close: open awards lapse, every member is told, the ACL users are revoked (unless keep_users)."""
        keep = body.keep_users if body is not None else False
        local = sessions.running(sid)
        try:
            # agents run here read "closed" and report before their users go (as `session demo` does): an
            # agent whose user is revoked in the middle of a step fails instead of reporting
            outcome = request_close(sessions.url, sid, keep or bool(local))
        except SessionError as e:
            raise ServiceError(404 if "no session" in str(e) else 503, str(e)) from None
        h = sessions.hosts.get(sid)
        if h is not None and h.thread is not None:
            h.thread.join(timeout=10)
        if local:
            for m in local:
                if m.thread is not None:
                    m.thread.join(timeout=15)
            if not keep:
                for user in session_users(admin, sid):
                    admin.execute_command("ACL", "DELUSER", user)
        service.audit("session-close", who.name, session=sid, keep_users=keep)
        return {"session": sid, "state": "closed", "detail": outcome}

    return sessions

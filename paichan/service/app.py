"""The HTTP API of ``paichan serve`` (FastAPI; OpenAPI at /openapi.json, docs at /docs).

A thin layer over :class:`~paichan.service.engine.PlanService`: authentication (an API key
per client with a role), Standard Webhooks signatures on MES pushes, request size limits,
and 4xx answers that name the field at fault.
"""


import asyncio
import hmac
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from redis import RedisError
from redis import asyncio as aioredis
from starlette.types import ASGIApp, Receive, Scope, Send

from paichan.adapters import ImportOptions, import_files
from paichan.adapters.b2mml import B2MMLError
from paichan.adapters.b2mml_write import plant_of
from paichan.adapters.mes import WebhookPayloadError, parse_webhook_batch
from paichan.adapters.performance import parse_performance
from paichan.adapters.webhooks import WebhookVerificationError, verify
from paichan.agents.explain import order_story
from paichan.domain import Order
from paichan.domain.errors import field_path
from paichan.domain.events import MachineStateEvent, OperationProgressEvent
from paichan.service.config import Role, ServiceConfig
from paichan.service.engine import Event, PlanService, ServiceError
from paichan.service.planning import PinRequest, RepairSpec, explain_order
from paichan.service.sessions_api import register as register_sessions

WEB = Path(__file__).parent / "web"
COOKIE = "paichan_key"
ROLES: dict[str, set[Role]] = {"push": {"mes", "planner"}, "plan": {"planner"}, "read": {"planner", "viewer"}}


class Caller(BaseModel):
    name: str
    role: Role


class DecisionBody(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class BrakeBody(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class LoginBody(BaseModel):
    key: str = Field(min_length=1, max_length=500)


def _b2mml_orders(body: bytes, service: PlanService) -> list[Order]:
    """The orders of a B2MML schedule body, on the service's time axis; 422 naming the record when unusable."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "orders.xml"
        path.write_bytes(body)
        unit = service.problem.time_unit
        res = import_files([path], ImportOptions(origin=service.clock.origin, name="orders",
                                                 time_unit=unit if unit in ("minute", "second", "hour") else "minute"))
    if res.report.rejected:
        raise ServiceError(422, "; ".join(f"{i.record}{' (' + i.where + ')' if i.where else ''}: {i.message}"
                                          for i in res.report.rejected[:10]))
    if not res.problem.orders:
        raise ServiceError(422, "body: no ProductionRequest/OperationsRequest with operations in this document")
    known = {r.id for r in service.problem.resources}
    for o in res.problem.orders:
        for op in o.operations:
            unknown = sorted({m.resource for m in op.modes} - known)
            if unknown:
                raise ServiceError(422, f"orders[{o.id}].operations[{op.id}].EquipmentID: unknown machine(s) "
                                        f"{', '.join(unknown)}")
    return res.problem.orders


def _problem(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message, **extra})


class _LimitSize:
    """413 for a declared body above the limit, before anything reads it (plain ASGI: Starlette's
    ``@app.middleware("http")`` wraps every request in extra tasks and streams)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            if length is not None and length.isdigit() and int(length) > self.limit:
                resp = _problem(413, f"body: {length.decode()} bytes is above the limit of {self.limit}")
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _GroupCommit:
    """Concurrent ``POST /events`` share one durable append (group commit).

    With ``appendfsync always`` every append waits for an fsync; one Lua call per request also
    costs a thread hand-off and a Redis round trip each. Here one call is in flight at a time, and
    the requests that arrive meanwhile go together in the next one: under load each fsync covers
    many events, and an idle service still appends a lone event at once. The script checks
    duplicates event by event, so two deliveries of one event in one call are appended once.
    """

    def __init__(self, service: PlanService) -> None:
        self.service = service
        self.waiting: list[tuple[list[Event], asyncio.Future[list[dict[str, str]]]]] = []
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    async def accept(self, events: list[Event]) -> list[dict[str, str]]:
        fut: asyncio.Future[list[dict[str, str]]] = asyncio.get_running_loop().create_future()
        self.waiting.append((events, fut))
        if not self.busy:
            self.busy = True
            self.task = asyncio.get_running_loop().create_task(self._drain())  # referenced: not collected
        return await fut

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    results = await asyncio.to_thread(self.service.accept, [e for evs, _ in batch for e in evs])
                except Exception as e:  # Redis away: every request of the batch fails, as it would alone
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                i = 0
                for evs, fut in batch:
                    if not fut.done():  # a request whose client went away is cancelled; its events are in
                        fut.set_result(results[i:i + len(evs)])
                    i += len(evs)
        finally:
            self.busy = False


def create_app(service: PlanService, ready: Callable[[], dict[str, Any]] | None = None,
               stopping: Callable[[], bool] = lambda: False) -> FastAPI:
    """The API over one running :class:`PlanService`; ``ready`` adds what /health reports about the agents.

    ``stopping`` says the server is shutting down: open event streams then end (pages reconnect to
    the next server), so a planner's open page never holds up a shutdown."""
    cfg: ServiceConfig = service.config
    keys = {c.key: Caller(name=c.name, role=c.role) for c in cfg.clients}
    app = FastAPI(title="paichan live planning service", version="1",
                  description="MES events in, replans as jobs, proposals to release, plans out as B2MML.")

    app.add_middleware(_LimitSize, limit=cfg.max_body_bytes)
    group_commit = _GroupCommit(service)

    @app.exception_handler(RequestValidationError)
    async def unprocessable(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": field_path([x for x in e["loc"] if x != "body"], "body"), "message": e["msg"]}
                  for e in exc.errors()]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
        return _problem(422, text, errors=errors)

    @app.exception_handler(RedisError)
    async def bus_down(request: Request, exc: RedisError) -> JSONResponse:
        # Redis away: nothing was stored; 503 tells the sender to retry (a 500 reads as a bug in the request)
        return JSONResponse(status_code=503, content={"detail": f"redis: unavailable ({exc}); retry"},
                            headers={"retry-after": "1"})

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> JSONResponse:
        return _problem(exc.status, str(exc))

    def caller(action: str) -> Callable[[Request, str | None], Awaitable[Caller]]:
        # async: a plain def dependency costs a thread-pool round trip on every request
        async def dep(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
            # the page's login stores the key in an HttpOnly, SameSite=Strict cookie (EventSource sends no headers)
            token = (authorization or "").removeprefix("Bearer ").strip() or request.cookies.get(COOKIE, "")
            who = next((c for k, c in keys.items() if token and hmac.compare_digest(k, token)), None)
            if who is None:
                await asyncio.to_thread(service.audit, "refused", "anonymous", path=request.url.path,
                                        reason="missing or unknown API key")
                raise ServiceError(401, "authorization: missing or unknown API key (Authorization: Bearer KEY)")
            if who.role not in ROLES[action]:
                await asyncio.to_thread(service.audit, "refused", who.name, path=request.url.path,
                                        reason=f"role {who.role} may not {action}")
                raise ServiceError(403, f"role '{who.role}' may not do this ({request.method} {request.url.path})")
            return who
        return dep

    Push = Annotated[Caller, Depends(caller("push"))]
    Plan = Annotated[Caller, Depends(caller("plan"))]
    Read = Annotated[Caller, Depends(caller("read"))]

    app.mount("/ui/static", StaticFiles(directory=WEB), name="ui-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui")

    @app.get("/ui", include_in_schema=False)
    def page() -> FileResponse:
        """The planner's page (static; its data comes from /view and /live)."""
        return FileResponse(WEB / "planner.html", headers={"cache-control": "no-cache"})

    @app.post("/ui/login")
    async def login(body: LoginBody, request: Request) -> JSONResponse:
        """Check an API key and keep it in an HttpOnly cookie for the page's requests and its live stream."""
        who = next((c for k, c in keys.items() if hmac.compare_digest(k, body.key)), None)
        if who is None:
            await asyncio.to_thread(service.audit, "refused", "anonymous", path="/ui/login", reason="unknown key")
            raise ServiceError(401, "key: unknown API key")
        resp = JSONResponse(who.model_dump())
        resp.set_cookie(COOKIE, body.key, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    @app.post("/ui/logout", status_code=204)
    def logout() -> Response:
        resp = Response(status_code=204)
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/ui/me")
    def me(who: Read) -> dict[str, Any]:
        return who.model_dump()

    @app.get("/view")
    def view(who: Read, proposal: str | None = None) -> dict[str, Any]:
        """The page's data: machines, operations (columns), calendars, orders, KPIs, late orders and why."""
        return service.view(proposal)

    @app.get("/live")
    async def live(request: Request, who: Read, since: str | None = None,
                   last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
        """Server-sent events of what changes (events applied, replan progress, proposals, releases, pins,
        brake): diffs, never the whole plan. Resumes after ``Last-Event-ID`` (or ``since``)."""
        # an async client: a page holding a blocking XREAD must not hold one of the few executor threads
        # Any: redis-py's stubs type every reply as a union of bytes/str/None
        r: Any = aioredis.Redis.from_url(service.redis_url, decode_responses=True, socket_timeout=10)
        start = last_event_id or since or "$"
        if start == "$":
            tail = await r.xrevrange(service.k("live"), "+", "-", 1)
            start = tail[0][0] if tail else "0-0"

        async def stream() -> AsyncIterator[str]:
            cursor = start
            yield ": connected\nretry: 2000\n\n"
            try:
                async for chunk in tail_live(cursor):
                    yield chunk
            finally:
                await r.aclose()

        async def tail_live(cursor: str) -> AsyncIterator[str]:
            while not stopping() and not await request.is_disconnected():
                try:
                    got = await r.xread({service.k("live"): cursor}, count=200, block=2000)
                except RedisError:
                    yield "event: bus\ndata: {\"redis\": \"unavailable\"}\n\n"
                    await asyncio.sleep(1)
                    continue
                if not got:
                    yield ": keep-alive\n\n"
                    continue
                for entry_id, fields in got[0][1]:
                    cursor = entry_id
                    yield f"id: {entry_id}\nevent: {fields['kind']}\ndata: {fields['data']}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @app.get("/health")
    def health() -> JSONResponse:
        """200 once the bus (Redis) and the plan are up; 503 with the reason otherwise."""
        try:
            service.r.ping()
        except Exception as e:
            return _problem(503, f"redis: {e}")
        body = {"status": "ok", "plan_version": service.released.version,
                "threads": {t.name: t.is_alive() for t in service.threads}, **(ready() if ready else {})}
        return JSONResponse(body)

    @app.post("/events", status_code=202, response_model=None)
    async def post_events(request: Request, who: Push) -> dict[str, Any] | JSONResponse:
        """MES push: webhook JSON (one event, a list or {"events": [...]}) or B2MML performance XML, signed."""
        body = await request.body()
        if len(body) > cfg.max_body_bytes:
            raise ServiceError(413, f"body: above the limit of {cfg.max_body_bytes} bytes")
        try:
            msg_id = verify(cfg.webhooks.secrets, request.headers, body, tolerance_s=cfg.webhooks.tolerance_s)
        except WebhookVerificationError as e:
            service.audit("refused", who.name, path="/events", reason=f"signature: {e}")
            raise ServiceError(401, f"signature: {e}") from None
        kind = request.headers.get("content-type", "")
        if "xml" in kind or body.lstrip().startswith(b"<"):
            try:
                perf = parse_performance(body, source_name=who.name,
                                         known_machines={r.id for r in service.problem.resources})
            except (B2MMLError, ValueError) as e:
                raise ServiceError(422, f"body: {e}") from None
            if not perf.events:
                raise ServiceError(422, "body: no operation progress in this performance message"
                                   + (": " + "; ".join(perf.issues[:5]) if perf.issues else ""))
            events: list[MachineStateEvent | OperationProgressEvent] = list(perf.events)
            issues = perf.issues
        else:
            try:
                data = json.loads(body)
            except json.JSONDecodeError as e:
                raise ServiceError(422, f"body: not JSON: {e}") from None
            try:
                batch = parse_webhook_batch([data] if isinstance(data, dict) and "events" not in data else data)
            except WebhookPayloadError as e:
                raise ServiceError(422, f"body: {e}") from None
            if batch.errors:
                errors = [{"field": (f"events[{x.index}]." if isinstance(data, list) or "events" in data
                                     else "") + x.field, "message": x.reason} for x in batch.errors]
                text = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
                return _problem(422, text + " (nothing of this request was accepted)", errors=errors)
            events, issues = list(batch.events), []
        results = await group_commit.accept(events)
        return {"webhook_id": msg_id, "accepted": [r for r in results if r["status"] == "accepted"],
                "duplicates": [r for r in results if r["status"] == "duplicate"], "issues": issues}

    @app.get("/events/{source}/{event_id}")
    def get_event(source: str, event_id: str, who: Push) -> dict[str, Any]:
        st = service.event_status(source, event_id)
        if st is None:
            raise ServiceError(404, f"no event '{event_id}' from '{source}'")
        return st.model_dump(exclude_none=True)

    @app.post("/orders", status_code=202, response_model=None)
    async def post_orders(request: Request, who: Plan) -> dict[str, Any] | JSONResponse:
        """ERP push: orders as JSON (one order, a list, or {"orders": [...]}) in paichan's problem format,
        or a B2MML ProductionSchedule / OperationsSchedule (V0401/V0600/V0700) whose segments name machines
        and durations."""
        body = await request.body()
        if "xml" in request.headers.get("content-type", "") or body.lstrip().startswith(b"<"):
            b2mml_orders = await asyncio.to_thread(_b2mml_orders, body, service)
            return await asyncio.to_thread(service.add_orders, b2mml_orders, who.name)
        try:
            data = json.loads(body)
        except json.JSONDecodeError as e:
            raise ServiceError(422, f"body: not JSON: {e}") from None
        items = data.get("orders") if isinstance(data, dict) and "orders" in data else data
        items = [items] if isinstance(items, dict) else items
        try:
            orders = TypeAdapter(list[Order]).validate_python(items)
        except ValidationError as e:
            errors = [{"field": "orders." + field_path(x["loc"]), "message": x["msg"]} for x in e.errors()]
            return _problem(422, "; ".join(f"{x['field']}: {x['message']}" for x in errors[:10]), errors=errors)
        return await asyncio.to_thread(service.add_orders, orders, who.name)

    @app.post("/replans", status_code=202)
    def post_replan(spec: RepairSpec, who: Plan) -> dict[str, Any]:
        job = service.submit(spec, "planner", who.name)
        service.audit("replan", who.name, replan=job.id, spec=spec.model_dump(mode="json"))
        return {"id": job.id, "status": job.status, "events": f"/replans/{job.id}/events"}

    @app.get("/replans/{jid}")
    def get_replan(jid: str, who: Read) -> dict[str, Any]:
        return service.job(jid).model_dump(mode="json")

    @app.delete("/replans/{jid}")
    def delete_replan(jid: str, who: Plan) -> dict[str, Any]:
        return service.cancel(jid, who.name).model_dump(mode="json")

    @app.get("/replans/{jid}/events")
    async def replan_events(jid: str, who: Read) -> StreamingResponse:
        """Server-sent events: ``solution`` for each improving plan, then ``status`` when the job ends."""
        service.job(jid)

        async def stream() -> AsyncIterator[str]:
            sent, last = 0, ""
            while True:
                job = await asyncio.to_thread(service.job, jid)
                for ev in job.solutions[sent:]:
                    yield f"event: solution\ndata: {ev.model_dump_json()}\n\n"
                sent = len(job.solutions)
                if job.status != last:
                    last = job.status
                    data = json.dumps({"status": job.status, "proposal": job.proposal, "error": job.error})
                    yield f"event: status\ndata: {data}\n\n"
                if job.status in ("done", "failed", "cancelled"):
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    @app.get("/proposals/{pid}")
    def get_proposal(pid: str, who: Read, schedule: bool = False) -> dict[str, Any]:
        prop = service.proposal(pid)
        return prop.model_dump(mode="json") if schedule else prop.summary()

    @app.post("/proposals/{pid}/release")
    def release(pid: str, who: Plan) -> dict[str, Any]:
        rel = service.release(pid, who.name)
        return {"plan_version": rel.version, "released_by": rel.released_by, "released_at": rel.released_at}

    @app.post("/proposals/{pid}/reject")
    def reject(pid: str, who: Plan, body: DecisionBody | None = None) -> dict[str, Any]:
        return service.reject(pid, who.name, body.reason if body else None).summary()

    @app.get("/plan", response_model=None)
    def get_plan(who: Read, version: Literal["released", "proposed"] = "released",
                 format: Literal["json", "b2mml"] = "json", b2mml_version: Literal["0600", "0700"] = "0700",
                 plant: str | None = Query(default=None)) -> Response | dict[str, Any]:
        if version == "proposed":
            prop = service.latest_proposal()
            if prop is None:
                raise ServiceError(404, "version: there is no open proposal")
            schedule, meta = prop.schedule, {"proposal": prop.id, "base_version": prop.base_version}
        else:
            rel = service.released
            schedule, meta = rel.schedule, {"plan_version": rel.version, "released_by": rel.released_by,
                                            "released_at": rel.released_at.isoformat()}
        if format == "b2mml":
            return Response(service.plan_b2mml(schedule, b2mml_version, plant), media_type="application/xml")
        ops = [s for s in schedule.operations if plant is None or plant_of(s.resource) == plant]
        return {**meta, "origin": service.clock.origin.isoformat(), "time_unit": service.problem.time_unit,
                "operations": [s.model_dump() for s in ops]}

    @app.get("/kpis")
    def get_kpis(who: Read) -> dict[str, Any]:
        return service.kpis()

    @app.get("/orders/{oid}/explain")
    def explain(oid: str, who: Read) -> dict[str, Any]:
        try:
            out = explain_order(service.problem, service.released.schedule, oid)
        except KeyError:
            raise ServiceError(404, f"no order '{oid}'") from None
        out["negotiation"] = order_story(service.journal, oid) if service.journal else []
        return out

    @app.post("/pins", status_code=201)
    def post_pin(req: PinRequest, who: Plan) -> dict[str, Any]:
        return service.add_pin(req, who.name).model_dump(mode="json")

    @app.get("/pins")
    def get_pins(who: Read) -> list[dict[str, Any]]:
        return [p.model_dump(mode="json") for p in service.pins()]

    @app.delete("/pins/{pin_id}", status_code=204)
    def delete_pin(pin_id: str, who: Plan) -> Response:
        service.remove_pin(pin_id, who.name)
        return Response(status_code=204)

    @app.post("/brake")
    def brake_on(who: Plan, body: BrakeBody | None = None) -> dict[str, Any]:
        return {"brake": service.set_brake(True, who.name, body.reason if body else None)}

    @app.delete("/brake")
    def brake_off(who: Plan) -> dict[str, Any]:
        return {"brake": service.set_brake(False, who.name)}

    @app.get("/brake")
    def brake_state(who: Read) -> dict[str, Any]:
        return {"brake": service.brake()}

    @app.get("/audit")
    def audit(who: Read, count: int = Query(default=200, ge=1, le=10_000)) -> list[dict[str, Any]]:
        return service.audit_log(count)

    register_sessions(app, service, caller("plan"), caller("read"))  # /sessions: capacity sharing
    return app

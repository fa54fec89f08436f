"""``paichan serve`` (the live planning service) and its planner clients ``paichan replan`` / ``paichan release``.

``paichan serve SOURCE [--host 127.0.0.1] [--port 8080] [--config paichan.toml]``: SOURCE is a
scenario YAML (the agents negotiate the starting plan on Ray over the bus) or a problem.json
(solved once). State lives in Redis (``REDIS_URL``, or a private redis-server with AOF,
``appendfsync always``, in ``--workdir``): a restarted service resumes the plan, the pins,
the proposals and every accepted event from there instead of planning SOURCE again.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from paichan.agents.explain import load_journal
from paichan.service.common import CliError, load_problem
from paichan.service.config import ClientConfig, ConfigError, ServiceConfig, load_config


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def _redis(workdir: Path) -> Iterator[str]:
    """``REDIS_URL``, or a private redis-server in ``workdir/redis`` (AOF, fsync on every write) for our lifetime."""
    from paichan.bus.server import RedisUnavailable, resolve_redis

    try:
        url, server = resolve_redis(workdir, appendfsync="always")
    except RedisUnavailable as e:
        raise CliError(str(e)) from None
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


def _this_minute() -> datetime:
    """The plan's time zero when SOURCE has none of its own: now, so that the plan starts now."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def _has_state(url: str, name: str) -> bool:
    r = redis.Redis.from_url(url)
    return bool(r.exists(f"paichan:svc:{name}:problem") and r.exists(f"paichan:svc:{name}:released"))


def _starting_plan(source: Path, url: str, workdir: Path, origin: datetime | None,
                   time_limit: float) -> tuple[Any, Any, list[dict[str, Any]]]:
    """(problem, schedule, negotiation journal) of the starting plan."""
    if source.suffix.lower() in (".yaml", ".yml"):
        from paichan.agents.runtime import run_agents
        from paichan.agents.scenario import ScenarioError, load_scenario

        try:
            sc = load_scenario(source)
        except ScenarioError as e:
            raise CliError(str(e)) from None
        sc = sc.model_copy(update={"origin": origin or _this_minute()})
        _say(f"negotiating the starting plan of {source} with the agents ...")
        old = os.environ.get("REDIS_URL")
        os.environ["REDIS_URL"] = url
        try:
            result = run_agents(sc, workdir / "run", progress=_say)
        finally:
            if old is None:
                os.environ.pop("REDIS_URL", None)
            else:
                os.environ["REDIS_URL"] = old
        if not result.report.ok:
            raise CliError(f"{source}: the negotiated plan fails the checker: {result.report.violations[0]}")
        return result.problem, result.schedule, result.journal or []
    from paichan.solver import SolveParams, solve

    problem = load_problem(source)
    if origin is not None or problem.origin is None:
        problem = problem.model_copy(update={"origin": origin or _this_minute()})
    _say(f"solving the starting plan of {source} ({sum(len(o.operations) for o in problem.orders)} operations, "
         f"{time_limit:g} s) ...")
    from paichan.domain import ProblemError

    try:
        res = solve(problem, SolveParams(time_limit=time_limit),
                    on_solution=lambda ev: _say(f"  {ev.source}: objective {ev.objective:g} at {ev.time:.1f} s"))
    except ProblemError as e:  # data that cannot be planned: said with the field, not a traceback
        raise CliError(f"{source}: {e}") from None
    if res.schedule is None:
        raise CliError(f"{source}: no starting plan: {'; '.join(res.infeasibility) or res.status.value}")
    return problem, res.schedule, []


def _quick_start(cfg: ServiceConfig) -> ServiceConfig:
    """Without any key or secret configured, make a planner key and a webhook secret and say them once."""
    from paichan.adapters.webhooks import WebhookSecret

    out = cfg.model_copy(deep=True)
    if not out.clients:
        key = secrets.token_urlsafe(24)
        out.clients.append(ClientConfig(name="planner", key=key, role="planner"))
        _say(f"no clients configured: planner API key for this run: {key}  (set PAICHAN_API_KEY to choose one)")
    if not out.webhooks.secrets:
        secret = WebhookSecret.generate()
        out.webhooks.secrets.append(secret)
        _say(f"no webhook secret configured: for this run: {secret}  (set PAICHAN_WEBHOOK_SECRET to choose one)")
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from paichan.service.app import create_app
    from paichan.service.engine import PlanService

    try:
        cfg = _quick_start(load_config(args.config))
    except ConfigError as e:
        raise CliError(str(e)) from None
    source = Path(args.source)
    if not source.is_file():
        raise CliError(f"{source}: no such scenario or problem file")
    origin = datetime.fromisoformat(args.origin) if args.origin else None
    if origin is not None and origin.tzinfo is None:
        raise CliError(f"--origin {args.origin}: give a UTC offset, e.g. 2026-12-02T06:00:00Z")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with _redis(workdir) as url:
        journal_file = workdir / "negotiations.jsonl"  # the starting plan's negotiation, for /orders/{id}/explain
        if _has_state(url, cfg.name):
            _say(f"resuming the plan kept in Redis (service '{cfg.name}'); {source} is not planned again")
            problem = schedule = None
            journal: list[dict[str, Any]] = load_journal(journal_file) if journal_file.is_file() else []
        else:
            problem, schedule, journal = _starting_plan(source, url, workdir, origin, args.time_limit)
            if journal:
                journal_file.write_text("".join(json.dumps(e) + "\n" for e in journal))
        outbox = Path(cfg.publish.outbox) if cfg.publish.outbox else None
        if outbox is not None and not outbox.is_absolute():
            outbox = workdir / outbox
        service = PlanService(problem, schedule, cfg, url, journal=journal, outbox=outbox)  # type: ignore[arg-type]
        service.start()
        monitors = _opcua(service)
        _say(f"plan version {service.released.version} ({len(service.released.schedule.operations)} operations); "
             f"serving on http://{args.host}:{args.port}: the planner's page at /ui (sign in with a planner "
             "or viewer key), API docs at /docs")
        try:
            server: uvicorn.Server | None = None
            app = create_app(service, stopping=lambda: server is not None and server.should_exit)
            # open planner pages' event streams end within 2 s of Ctrl-C; 5 s is the backstop
            server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                                   timeout_graceful_shutdown=5))
            try:
                server.run()
            except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the service stopped as asked
                pass
        finally:
            for stop in monitors:
                stop()
            service.close()
    return 0


def _opcua(service: Any) -> list[Any]:
    """Start one OPC UA monitor per configured endpoint, feeding the same durable path as POST /events."""
    if not service.config.opcua:
        return []
    import asyncio
    import threading

    from paichan.adapters.opcua import MachineStateMonitor

    stops = []
    for cfg in service.config.opcua:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        monitor = MachineStateMonitor(cfg, lambda ev: service.accept([ev]))
        threading.Thread(target=loop.run_until_complete, args=(monitor.run(stop),), daemon=True,
                         name=f"opcua-{cfg.endpoint}").start()
        stops.append(lambda loop=loop, stop=stop: loop.call_soon_threadsafe(stop.set))
        _say(f"watching {len(cfg.machines)} machine(s) on {cfg.endpoint}")
    return stops


# ----------------------------------------------------------------------------- planner clients


def _client(args: argparse.Namespace) -> httpx.Client:
    key = args.api_key or os.environ.get("PAICHAN_API_KEY")
    if not key:
        raise CliError("--api-key: no API key (or set PAICHAN_API_KEY)")
    return httpx.Client(base_url=args.url, headers={"authorization": f"Bearer {key}"}, timeout=30)


def _check(resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        raise CliError(f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {detail}")
    return resp.json() if resp.content else None


def cmd_replan(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"scope": args.scope, "time_limit": args.time_limit, "freeze_minutes": args.freeze}
    if args.target:
        body["target"] = args.target
    try:
        with _client(args) as c:
            job = _check(c.post("/replans", json=body))
            _say(f"replan {job['id']} queued")
            with c.stream("GET", f"/replans/{job['id']}/events", timeout=None) as resp:
                event = ""
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "solution":
                            _say(f"  {data['time']:.1f} s {data['source']}: objective {data['objective']:g}")
                        elif event == "status":
                            _say(f"  {data['status']}")
                            status = data
            if status.get("status") != "done":
                raise CliError(f"replan {job['id']} {status.get('status')}: {status.get('error')}")
            prop = _check(c.get(f"/proposals/{status['proposal']}"))
    except httpx.HTTPError as e:
        raise CliError(f"{args.url}: {e}") from None
    d = prop["diff"]
    print(json.dumps({"proposal": prop["id"], "moved": len(d["moved"]), "machines_changed": d["machines_changed"],
                      "later": len(d["later"]), "earlier": len(d["earlier"]),
                      "tardiness_worse": d["tardiness_worse"],
                      "weighted_tardiness": [(prop["kpis_before"] or {}).get("weighted_tardiness"),
                                             prop["kpis_after"]["weighted_tardiness"]]}))
    _say(f"review it, then: paichan release {prop['id']} --url {args.url}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    try:
        with _client(args) as c:
            action = "reject" if args.reject else "release"
            out = _check(c.post(f"/proposals/{args.proposal}/{action}", json={"reason": args.reason}
                                if args.reject else None))
    except httpx.HTTPError as e:
        raise CliError(f"{args.url}: {e}") from None
    print(json.dumps(out, default=str))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``replan`` and ``release`` to the ``paichan`` command line."""
    p = sub.add_parser("serve", help="run the live planning service (HTTP API; MES push, replans, proposals)")
    p.add_argument("source", help="scenario YAML (agents negotiate the starting plan) or problem.json")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--config", default=None, help="paichan.toml: clients, webhook secrets, replanning, OPC UA")
    p.add_argument("--workdir", default="paichan-service", help="private Redis data and the B2MML outbox")
    p.add_argument("--origin", default=None,
                   help="the plan's time zero (default: now, for a scenario or a problem without origin)")
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds for the starting plan of a problem.json")
    p.set_defaults(func=cmd_serve)
    for name, text in (("replan", "ask a running service for a replan and follow it live"),
                       ("release", "release (or --reject) a proposal of a running service")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--url", default="http://127.0.0.1:8080")
        q.add_argument("--api-key", default=None, help="planner key (default: PAICHAN_API_KEY)")
        if name == "replan":
            q.add_argument("--scope", choices=("line", "plant", "all"), default="all")
            q.add_argument("--target", default=None, help="the line (plant/line) or plant of a scoped replan")
            q.add_argument("--time-limit", type=float, default=10.0)
            q.add_argument("--freeze", type=int, default=30, help="minutes from now in which nothing moves")
            q.set_defaults(func=cmd_replan)
        else:
            q.add_argument("proposal")
            q.add_argument("--reject", action="store_true")
            q.add_argument("--reason", default=None)
            q.set_defaults(func=cmd_release)

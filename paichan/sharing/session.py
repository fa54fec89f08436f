"""Running a sharing session end to end: the host in this process, each enterprise in its own Ray actor.

``run_demo`` is `paichan session demo SCENARIO --output DIR`: it opens the session on the embedded
Redis (or ``REDIS_URL``, whose default user is then the host), hands each enterprise's actor its
own part of the scenario and its own ACL credentials only, routes until every buyer has finished
and nothing is left open, closes the session and writes the ledger, the KPIs and the credentials.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import redis

from paichan.bus.server import masked, resolve_redis
from paichan.sharing.enterprise import AgentParams, EnterpriseAgent, EnterpriseResult
from paichan.sharing.host import SessionHost
from paichan.sharing.model import EnterpriseSpec, SharingScenario

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@ray.remote(num_cpus=0, max_concurrency=2)  # type: ignore[call-overload]
class EnterpriseActor:
    """One enterprise's agent; it holds nothing but its own spec and its own credentials."""

    def __init__(self, spec_json: str, url: str, session: str, params_json: str) -> None:
        self.agent = EnterpriseAgent(EnterpriseSpec.model_validate_json(spec_json), url, session,
                                     AgentParams.model_validate_json(params_json))
        self.snapshot: dict[str, Any] = {"enterprise": self.agent.id, "buying_done": False, "closed": False}

    def run(self, timeout: float) -> str:
        a = self.agent
        a.join()
        deadline = time.monotonic() + timeout
        while not a.closed and time.monotonic() < deadline:
            a.step()
            self.snapshot = a.status()
        return a.result().model_dump_json()

    def status(self) -> dict[str, Any]:
        return dict(self.snapshot)


def new_session_id() -> str:
    return uuid.uuid4().hex[:8]


def write_credentials(output: Path, urls: dict[str, str]) -> None:
    cred = output / "credentials"
    cred.mkdir(parents=True, exist_ok=True)
    for eid, url in urls.items():
        path = cred / f"{eid}.url"
        path.write_text(url + "\n", encoding="utf-8")
        path.chmod(0o600)


def run_demo(sc: SharingScenario, output: Path, keep_users: bool = False, progress: Progress = _stderr,
             params: AgentParams | None = None, timeout: float = 900.0, accept_timeout: float = 15.0,
             silence_timeout: float = 20.0,
             after_open: Callable[[SessionHost, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a whole session; returns (and writes) the KPIs. ``after_open`` lets tests act on a live session."""
    t0 = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    params = params or AgentParams()
    url, server = resolve_redis(output, password=secrets.token_urlsafe(18))
    started_ray = False
    actors: dict[str, Any] = {}
    try:
        r = redis.Redis.from_url(url)
        session = new_session_id()
        host = SessionHost(r, url, session, [e.id for e in sc.enterprises], progress, accept_timeout, silence_timeout)
        urls = host.open()
        write_credentials(output, urls)
        progress(f"bus {masked(url)}; credentials in {output / 'credentials'}")
        if not ray.is_initialized():
            progress("starting Ray (local; 15-30 s on a small machine) ...")
            ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True, configure_logging=False)
            started_ray = True
        for e in sc.enterprises:
            actors[e.id] = EnterpriseActor.options(name=f"paichan-share-{session}-{e.id}").remote(  # type: ignore[attr-defined]
                e.model_dump_json(), urls[e.id], session, params.model_dump_json())
        runs = {eid: a.run.remote(timeout) for eid, a in actors.items()}
        if after_open is not None:
            after_open(host, actors)
        t_trade = time.monotonic()
        _route_until_quiet(host, actors, progress, timeout)
        trade_s = time.monotonic() - t_trade
        host.close(keep_users=True)  # members read "closed" and report before their users go
        results: dict[str, EnterpriseResult] = {}
        for eid, ref in runs.items():
            if eid in host.left:
                continue
            try:
                results[eid] = EnterpriseResult.model_validate_json(ray.get(ref, timeout=120))
            except ray.exceptions.RayActorError as e:
                progress(f"{eid}'s agent crashed at the close: {str(e).splitlines()[0]}")
        if not keep_users:
            host.revoke_users()
        n = host.export_ledger(output / "ledger.jsonl")
        kpis = _kpis(sc, host, results, trade_s, time.monotonic() - t0, n)
        (output / "kpis.json").write_text(json.dumps(kpis, indent=2) + "\n", encoding="utf-8")
        plans = output / "plans"
        plans.mkdir(exist_ok=True)
        for eid, res in results.items():
            (plans / f"{eid}.json").write_text(res.model_dump_json(indent=1), encoding="utf-8")
        progress(summary(kpis))
        return kpis
    finally:
        for a in actors.values():
            ray.kill(a)
        if started_ray:
            ray.shutdown()
        if server is not None:
            server.stop()


def _route_until_quiet(host: SessionHost, actors: dict[str, Any], progress: Progress, timeout: float,
                       quiet_s: float = 1.5) -> None:
    """Route until every enterprise has finished buying, no award is open and the bus has been quiet a while."""
    deadline = time.monotonic() + timeout
    last_busy = last_check = last_report = time.monotonic()
    while time.monotonic() < deadline:
        if host.step(block_ms=50):
            last_busy = time.monotonic()
        now = time.monotonic()
        if now - last_check < 1.0:
            continue
        last_check = now
        states = []
        for eid, actor in actors.items():
            if eid in host.left:
                continue
            try:
                states.append(ray.get(actor.status.remote(), timeout=60))
            except ray.exceptions.RayActorError:
                host.drop_member(eid, "its agent crashed")  # its promises are cancelled now
                last_busy = now
        done = sum(1 for s in states if s.get("buying_done"))
        if now - last_report > 5:
            contracts = sum(1 for a in host.awards.values() if a.state == "binding")
            progress(f"trading: {host.messages} messages routed, {contracts} contracts, "
                     f"{done}/{len(states)} enterprises done buying")
            last_report = now
        if done == len(states) and not any(a.state == "proposed" for a in host.awards.values()) \
                and now - last_busy > quiet_s:
            return
    progress(f"trading did not settle within {timeout:g} s; closing the session")


def _kpis(sc: SharingScenario, host: SessionHost, results: dict[str, EnterpriseResult], trade_s: float,
          wall_s: float, ledger_entries: int) -> dict[str, Any]:
    ents = {eid: {"with_sharing": r.with_sharing.model_dump(), "without_sharing": r.without_sharing.model_dump()}
            for eid, r in results.items()}
    with_total = sum(r.with_sharing.weighted_tardiness for r in results.values())
    without_total = sum(r.without_sharing.weighted_tardiness for r in results.values())
    return {
        "scenario": sc.name, "session": host.session,
        "enterprises": ents,
        "network": {"weighted_tardiness": {"with_sharing": with_total, "without_sharing": without_total},
                    "contracts": sum(1 for a in host.awards.values() if a.state == "binding"),
                    "messages": host.messages + sum(r.messages_sent for r in results.values()),
                    "messages_routed": host.messages, "rejected": host.rejected, "ledger_entries": ledger_entries,
                    "evaluations": sum(r.evaluations for r in results.values()),
                    "trading_s": round(trade_s, 2), "wall_s": round(wall_s, 2),
                    "left": sorted(host.left)},
    }


def summary(kpis: dict[str, Any]) -> str:
    lines = [f"session {kpis['session']} ({kpis['scenario']}): weighted tardiness "
             f"{kpis['network']['weighted_tardiness']['without_sharing']} alone -> "
             f"{kpis['network']['weighted_tardiness']['with_sharing']} sharing; "
             f"{kpis['network']['contracts']} contracts, {kpis['network']['messages']} messages, "
             f"{kpis['network']['wall_s']} s"]
    for eid, k in kpis["enterprises"].items():
        w, wo = k["with_sharing"], k["without_sharing"]
        lines.append(f"  {eid}: weighted tardiness {wo['weighted_tardiness']} -> {w['weighted_tardiness']}, "
                     f"revenue {w['revenue']:g}, cost {w['cost']:g}, net cost {wo['net_cost']:g} -> {w['net_cost']:g}")
    return "\n".join(lines)



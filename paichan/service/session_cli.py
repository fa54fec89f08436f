"""``paichan session open|join|offer|request|status|close|demo``: cross-enterprise capacity sharing.

The host (`open`, `close`, and `status` without credentials) works with REDIS_URL's default user,
or starts the embedded Redis for `open` and `demo`. Members (`join`, `offer`, `request`, and
`status --credentials`) work with their own credentials file only (`credentials/<id>.url`, which
`open` writes): `join` runs the member's agent in the foreground; `offer` and `request` hand
commands to that running agent, which signs and sends them. docs/SHARING.md has the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import redis

from paichan.bus.server import RedisUnavailable, masked, resolve_redis
from paichan.service.common import CliError
from paichan.sharing.acl import SessionRefused
from paichan.sharing.control import (
    SessionError,
    host_status,
    member_of,
    member_view,
    queue_command,
    read_credentials,
    request_close,
    run_member,
    serve_host,
)
from paichan.sharing.enterprise import AgentParams, Command
from paichan.sharing.host import SessionHost
from paichan.sharing.model import OfferSpec, SharingScenarioError, load_sharing
from paichan.sharing.session import new_session_id, run_demo, write_credentials


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _admin_url(args: argparse.Namespace) -> str:
    url = getattr(args, "redis", None) or os.environ.get("REDIS_URL")
    if not url:
        raise CliError("the session host needs the session's Redis: set REDIS_URL (or --redis URL), "
                       "as printed by `paichan session open`")
    return str(url)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        sc = load_sharing(args.scenario)
        params = AgentParams(solve_time=args.solve_time)
        run_demo(sc, Path(args.output), keep_users=args.keep_users, progress=_err, params=params,
                 timeout=args.timeout)
    except (SharingScenarioError, SessionRefused, RedisUnavailable) as e:
        raise CliError(str(e)) from None
    print(f"wrote {Path(args.output) / 'ledger.jsonl'}, kpis.json, credentials/ and plans/")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    enterprises = [e.strip() for e in args.enterprises.split(",") if e.strip()]
    if len(enterprises) < 2 or len(set(enterprises)) != len(enterprises):
        raise CliError("--enterprises needs two or more distinct ids, comma-separated")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    try:
        url, server = resolve_redis(out, password=secrets.token_urlsafe(18))
    except RedisUnavailable as e:
        raise CliError(str(e)) from None
    session = args.session or new_session_id()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        r = redis.Redis.from_url(url)
        try:
            host = SessionHost(r, url, session, enterprises, _err, args.accept_timeout, args.silence_timeout)
        except ValueError as e:
            raise CliError(str(e)) from None
        try:
            urls = host.open()
        except SessionRefused as e:
            raise CliError(str(e)) from None
        write_credentials(out, urls)
        print(f"session {session} open; credentials in {out / 'credentials'}; host Redis {masked(url)}", flush=True)
        if server is not None:
            host_url = out / "host.url"
            host_url.write_text(url + "\n", encoding="utf-8")
            host_url.chmod(0o600)
            print(f"for `paichan session close|status`: export REDIS_URL=$(cat {host_url})", flush=True)
        try:
            serve_host(host, stop.is_set, _err)
        except KeyboardInterrupt:
            pass
        keep = args.keep_users or r.hget(host.keys.meta, "keep_users") == b"1"
        host.close(keep_users=keep)
        n = host.export_ledger(out / "ledger.jsonl")
        print(f"session {session} closed; {n} ledger entries in {out / 'ledger.jsonl'}")
        return 0
    finally:
        if server is not None:
            server.stop()


def _member_url(args: argparse.Namespace) -> str:
    url = read_credentials(args.credentials)
    try:
        session, _ = member_of(url)
    except SessionError as e:
        raise CliError(f"{args.credentials}: {e}") from None
    if session != args.session:
        raise CliError(f"{args.credentials} holds credentials for session {session}, not {args.session}")
    return url


def cmd_join(args: argparse.Namespace) -> int:
    url = _member_url(args)
    try:
        sc = load_sharing(args.scenario)
        _, eid = member_of(url)
        try:
            spec = sc.enterprise(args.enterprise or eid)
        except KeyError:
            raise CliError(f"{args.scenario}: no enterprise '{args.enterprise or eid}'") from None
        result = run_member(spec, url, _err, auto_buy=not args.manual,
                            params=AgentParams(solve_time=args.solve_time))
    except (SharingScenarioError, SessionError) as e:
        raise CliError(str(e)) from None
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{spec.id}.json").write_text(result.model_dump_json(indent=1), encoding="utf-8")
    w, wo = result.with_sharing, result.without_sharing
    print(f"{spec.id}: weighted tardiness {wo.weighted_tardiness} alone -> {w.weighted_tardiness}; "
          f"revenue {w.revenue:g}, cost {w.cost:g}")
    return 0


def cmd_offer(args: argparse.Namespace) -> int:
    try:
        offer = OfferSpec(capabilities=args.capability, window=(args.window[0], args.window[1]),
                          price_per_minute=args.price, min_lot=args.min_lot)
    except ValueError as e:
        raise CliError(f"offer: {str(e).splitlines()[-1].strip()}") from None
    try:
        print(queue_command(_member_url(args), Command(kind="offer", offer=offer)))
    except SessionError as e:
        raise CliError(str(e)) from None
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    cmd = Command(kind="request", operation=args.operation, latest_finish=args.latest_finish,
                  max_price=args.max_price)
    try:
        print(queue_command(_member_url(args), cmd))
    except SessionError as e:
        raise CliError(str(e)) from None
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        data: dict[str, Any] = (member_view(_member_url(args)) if args.credentials
                                else host_status(_admin_url(args), args.session))
    except SessionError as e:
        raise CliError(str(e)) from None
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    if "ledger" in data and isinstance(data["ledger"], list):
        print(f"session {data['session']} ({data['state']}), as {data['enterprise']} sees it; agent "
              f"{'running' if data['agent_running'] else 'not running'}")
        print(f"offers on the market: {len(data['offers'])}")
        for entry in data["ledger"]:
            body = json.dumps(entry["body"], ensure_ascii=False)
            print(f"  {entry['ts']}  {entry['kind']:<12} {entry['actor']:<12} {body}")
    else:
        print(f"session {data['session']} ({data['state']}): enterprises {', '.join(data['enterprises'])}; "
              f"joined {', '.join(data['joined']) or '-'}; left {', '.join(data['left']) or '-'}")
        print("ledger: " + ", ".join(f"{k} {v}" for k, v in sorted(data["ledger"].items())))
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    try:
        print(f"session {args.session}: {request_close(_admin_url(args), args.session, args.keep_users)}")
    except SessionError as e:
        raise CliError(str(e)) from None
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("session", help="cross-enterprise capacity sharing sessions (docs/SHARING.md)")
    ss = s.add_subparsers(dest="session_command", required=True)
    d = ss.add_parser("demo", help="run a whole session of SCENARIO end to end; writes ledger.jsonl, kpis.json, "
                      "credentials/ and plans/ to --output")
    d.add_argument("scenario", help="sharing scenario YAML (e.g. scenarios/sharing_3.yaml)")
    d.add_argument("--output", required=True)
    d.add_argument("--keep-users", action="store_true", help="do not revoke the ACL users at close")
    d.add_argument("--solve-time", type=float, default=1.0, help="seconds per CP-SAT evaluation (default 1)")
    d.add_argument("--timeout", type=float, default=900.0, help="close the session after this long (s)")
    d.set_defaults(func=cmd_demo)

    o = ss.add_parser("open", help="host a session: create one ACL user per enterprise, write credentials/, "
                      "route until `paichan session close`")
    o.add_argument("--enterprises", required=True, help="comma-separated enterprise ids")
    o.add_argument("--session", help="session id (default: random)")
    o.add_argument("--output", default="out/session", help="where credentials/ and ledger.jsonl go")
    o.add_argument("--keep-users", action="store_true")
    o.add_argument("--accept-timeout", type=float, default=15.0, help="an award lapses if not accepted by then (s)")
    o.add_argument("--silence-timeout", type=float, default=20.0,
                   help="a member silent this long has left; its awards are cancelled (s)")
    o.set_defaults(func=cmd_open)

    j = ss.add_parser("join", help="run an enterprise's agent in the session until it closes")
    j.add_argument("session")
    j.add_argument("--credentials", required=True, help="the enterprise's credentials file (redis:// URL)")
    j.add_argument("--scenario", required=True, help="sharing scenario YAML holding the enterprise's part")
    j.add_argument("--enterprise", help="its id in the scenario (default: the credentials' enterprise)")
    j.add_argument("--manual", action="store_true", help="buy only what `paichan session request` asks for")
    j.add_argument("--solve-time", type=float, default=1.0)
    j.add_argument("--output", help="write the enterprise's final plan and KPIs here")
    j.set_defaults(func=cmd_join)

    f = ss.add_parser("offer", help="put spare capacity on the market (through the running agent)")
    f.add_argument("session")
    f.add_argument("--credentials", required=True)
    f.add_argument("--capability", action="append", required=True, help="repeat for several")
    f.add_argument("--window", type=int, nargs=2, required=True, metavar=("START", "END"))
    f.add_argument("--price", type=float, required=True, help="price per minute of machine time")
    f.add_argument("--min-lot", type=int, default=1)
    f.set_defaults(func=cmd_offer)

    q = ss.add_parser("request", help="ask the market for a slot for one of the enterprise's operations")
    q.add_argument("session")
    q.add_argument("--credentials", required=True)
    q.add_argument("--operation", required=True, help="ORDER/STEP, e.g. A1/0")
    q.add_argument("--latest-finish", type=int, help="default: before it would finish in house")
    q.add_argument("--max-price", type=float)
    q.set_defaults(func=cmd_request)

    t = ss.add_parser("status", help="a member's view (--credentials) or the host's summary (REDIS_URL)")
    t.add_argument("session")
    t.add_argument("--credentials")
    t.add_argument("--redis", help="the host's Redis URL (default REDIS_URL)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_status)

    c = ss.add_parser("close", help="close a session: lapse open awards, revoke the users (unless --keep-users)")
    c.add_argument("session")
    c.add_argument("--redis", help="the host's Redis URL (default REDIS_URL)")
    c.add_argument("--keep-users", action="store_true")
    c.set_defaults(func=cmd_close)

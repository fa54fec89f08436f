"""Ingest: signed MES webhooks into ``POST /events``, acknowledged only once durable.

    python -m bench.ingest [--seconds 10] [--clients 8] [--auto-replan] [--out bench/results/ingest.md]

Set-up. A private ``redis-server`` (``paichan.bus.server.EmbeddedRedis``, AOF with
``appendfsync always``: every acknowledged write is fsynced) and the real service as a
subprocess, ``paichan serve problem.json`` (uvicorn, one process, loopback), on a small
line plan (``bench.repair.line_plan(200)``: machines ``P1/L1/...``) solved in 2 s at start.
Automatic replanning is off by default (``--auto-replan`` turns it on): this measures the
ingest path, not CP-SAT competing for the two cores; the applier still applies every event.

Load. ``N`` distinct webhook events are made and signed (Standard Webhooks, HMAC-SHA256)
before the clock starts — signing is the sender's work. Each request carries one event
(``machine_state`` busy/available on the plan's machines; one in 200 a ``down`` followed by
its ``available``); one request in 100 is a redelivery of an earlier request (same
``webhook-id``, same body), which must be acknowledged as a duplicate and appended once.
``--clients`` concurrent keep-alive HTTP/1.1 connections, each sending its next request as
soon as the previous answer arrived (closed loop), for ``--seconds``. The client is a
minimal asyncio HTTP/1.1 client over raw sockets (pre-built request bytes, no per-request
client-library work) in this process: it shares the machine's two cores with the server and
Redis, so the numbers are a lower bound of what the server does on 2 dedicated cores.

Measured: acknowledged (202) events per second over the run, acknowledgement latency
(request written to response read) p50/p99/max, non-202 answers. Then, durability and
exactly-once: every event acknowledged ``accepted`` must be in the Redis stream exactly once
(its ``key`` field) with the stream id the answer gave, every redelivery answered
``duplicate`` and not appended again, and the stream holds nothing that was not
acknowledged (except requests in flight when the clock stopped, which are counted). Finally
the applier must have applied all of them (status in ``events:seen`` no longer
``accepted``) within 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.machine import ram
from paichan.adapters.webhooks import WebhookSecret, signed_headers
from paichan.bus.server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-planner-key-0123456789"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Request:
    key: str  # source:event_id
    raw: bytes  # the whole HTTP/1.1 request
    redelivery: bool = False


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # key -> stream id
    duplicates: list[str] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    sent: int = 0


def make_requests(n: int, machines: list[str], secret: str, port: int, start: datetime) -> list[Request]:
    """``n`` signed requests (about 1 % of them redeliveries of earlier ones)."""
    out: list[Request] = []
    down: set[str] = set()
    for i in range(n):
        if i and i % 100 == 0:
            old = out[i // 2]
            out.append(Request(old.key, old.raw, redelivery=True))
            continue
        m = machines[i % len(machines)]
        state = "down" if i % 200 == 7 and m not in down else ("available" if m in down else
                                                               ("busy" if i % 2 else "available"))
        if state == "down":
            down.add(m)
        else:
            down.discard(m)
        eid = f"e{i:07d}"
        body = json.dumps({"event_id": eid, "source": "mes-bench", "machine": m, "state": state,
                           "time": (start + timedelta(milliseconds=i)).isoformat()}).encode()
        headers = {"host": f"127.0.0.1:{port}", "authorization": f"Bearer {KEY}",
                   "content-type": "application/json", "content-length": str(len(body)),
                   **signed_headers(secret, body, msg_id=f"msg_{eid}")}
        head = "POST /events HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        out.append(Request(f"mes-bench:{eid}", head.encode() + body))
    return out


async def client(port: int, queue: list[Request], stop_at: float, st: Stats) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while queue and time.monotonic() < stop_at:
            req = queue.pop()
            st.sent += 1
            t = time.perf_counter()
            writer.write(req.raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                          if ln.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            st.latencies.append(time.perf_counter() - t)
            status = int(head.split(b" ", 2)[1])
            if status != 202:
                st.errors[status] = st.errors.get(status, 0) + 1
                if len(st.errors) == 1 and st.errors[status] == 1:
                    log(f"   first error {status}: {body[:300]!r}")
                continue
            ans = json.loads(body)
            for a in ans["accepted"]:
                st.accepted[a["key"]] = a["stream_id"]
            for d in ans["duplicates"]:
                st.duplicates.append(d["key"])
    finally:
        writer.close()


async def drive(port: int, reqs: list[Request], clients: int, seconds: float, st: Stats) -> float:
    queue = list(reversed(reqs))
    t0 = time.monotonic()
    await asyncio.gather(*(client(port, queue, t0 + seconds, st) for _ in range(clients)))
    return time.monotonic() - t0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))] if s else float("nan")


def start_service(work: Path, redis_url: str, secret: str, port: int, auto: bool,
                  server_path: str) -> tuple[subprocess.Popen[bytes], list[str]]:
    from bench.repair import line_plan

    problem = line_plan(200)
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    problem = problem.model_copy(update={"origin": origin})
    (work / "problem.json").write_text(problem.model_dump_json())
    (work / "paichan.toml").write_text(f'name = "ingest"\n[replanning]\nauto = {str(auto).lower()}\n'
                                       '[publish]\noutbox = "outbox"\n')
    env = {**os.environ, "PYTHONPATH": server_path, "REDIS_URL": redis_url, "PAICHAN_API_KEY": KEY,
           "PAICHAN_WEBHOOK_SECRET": secret}
    cmd = [sys.executable, "-c", "import sys; from paichan.service.cli import main; sys.exit(main())",
           "serve", str(work / "problem.json"), "--port", str(port), "--config", str(work / "paichan.toml"),
           "--workdir", str(work), "--time-limit", "2", "--origin", origin.isoformat()]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "wb"))
    machines = [r.id for r in problem.resources if r.kind.value != "pool"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"paichan serve exited: {(work / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, machines
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("paichan serve did not come up in 120 s")


def verify(r: Any, st: Stats, reqs: list[Request], applied_timeout: float = 60.0) -> dict[str, Any]:
    """Every accepted event in the stream exactly once, with its id; then applied."""
    stream, seen = "paichan:svc:ingest:events", "paichan:svc:ingest:events:seen"
    counts: dict[str, int] = {}
    ids: dict[str, str] = {}
    last = "-"
    while True:
        rows = r.xrange(stream, min=last, max="+", count=10_000)
        rows = [x for x in rows if x[0] != last]
        if not rows:
            break
        for sid, f in rows:
            counts[f["key"]] = counts.get(f["key"], 0) + 1
            ids[f["key"]] = sid
        last = rows[-1][0]
    missing = [k for k in st.accepted if counts.get(k, 0) == 0]
    twice = [k for k, c in counts.items() if c > 1]
    wrong_id = [k for k, sid in st.accepted.items() if ids.get(k) not in (None, sid)]
    unacked = [k for k in counts if k not in st.accepted]
    redelivered = {q.key for q in reqs if q.redelivery}
    dup_ok = all(k in st.accepted or counts.get(k, 0) == 1 for k in st.duplicates)
    t = time.monotonic()
    pending = -1
    while time.monotonic() - t < applied_timeout:
        statuses = [json.loads(v)["status"] for v in r.hvals(seen)]
        pending = sum(1 for s in statuses if s == "accepted")
        if pending == 0:
            break
        time.sleep(0.5)
    final: dict[str, int] = {}
    for v in r.hvals(seen):
        s = json.loads(v)["status"]
        final[s] = final.get(s, 0) + 1
    return {"stream_entries": sum(counts.values()), "distinct_in_stream": len(counts), "accepted": len(st.accepted),
            "missing": len(missing), "appended_twice": len(twice), "wrong_stream_id": len(wrong_id),
            "in_stream_not_acknowledged": len(unacked), "duplicates_answered": len(st.duplicates),
            "redeliveries_sent": sum(1 for k in st.duplicates if k in redelivered), "duplicates_ok": dup_ok,
            "not_applied_after_wait": pending, "apply_wait_s": round(time.monotonic() - t, 1),
            "final_statuses": final}


def machine_state() -> str:
    load = os.getloadavg()
    return (f"{platform.platform()}, {os.cpu_count()} cores, {ram()} RAM, load average before the run "
            f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} (other work running in parallel on the same cores)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()[0]
    work = Path(".bench-runs") / f"ingest-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    server = EmbeddedRedis(work / "redis", appendfsync="always").start()
    secret = WebhookSecret.generate()
    port = free_port()
    proc = None
    try:
        log(f"== starting paichan serve on 127.0.0.1:{port} (auto replanning {'on' if args.auto_replan else 'off'})")
        proc, machines = start_service(work, server.url, secret, port, args.auto_replan, args.server_path)
        n = int(args.seconds * args.max_rate)
        log(f"== signing {n} requests")
        reqs = make_requests(n, machines, secret, port, datetime.now(UTC) - timedelta(minutes=30))
        st = Stats()
        log(f"== {args.clients} clients for {args.seconds:g} s")
        wall = asyncio.run(drive(port, reqs, args.clients, args.seconds, st))
        log(f"   {len(st.accepted)} accepted in {wall:.1f} s")
        r = redis.Redis.from_url(server.url, decode_responses=True)
        check = verify(r, st, reqs)
        log(f"   verify: {check}")
        info = r.info("persistence")
        return {"label": args.label, "load_before": round(load, 2), "clients": args.clients,
                "seconds": round(wall, 2), "requests": len(st.latencies),
                "accepted": len(st.accepted), "rate": len(st.accepted) / wall,
                "requests_per_s": len(st.latencies) / wall,
                "p50_ms": 1000 * pct(st.latencies, 0.5), "p99_ms": 1000 * pct(st.latencies, 0.99),
                "max_ms": 1000 * max(st.latencies, default=float("nan")), "errors": st.errors,
                "auto_replan": args.auto_replan, "verify": check,
                "aof": {k: info.get(k) for k in ("aof_enabled", "aof_last_write_status")},
                "appendfsync": r.config_get("appendfsync").get("appendfsync")}
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(rows: list[dict[str, Any]], state: str) -> str:
    cmd = "python -m bench.ingest " + " ".join(sys.argv[1:])
    out = ["# Ingest: signed webhooks to durable 202", "",
           f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {state}. The load generator (one asyncio process, "
           "raw HTTP/1.1 keep-alive connections) shares the two cores with the service (uvicorn, one process) "
           "and redis-server (appendfsync always).", "", f"Command: `{cmd.strip()}`. Method: the module docstring "
           "of `bench/ingest.py`.", "",
           "| server | load avg before | clients | auto replan | s | requests | accepted events | accepted/s "
           "| ack p50 ms | ack p99 ms | "
           "max ms | non-202 | in stream once | missing | twice | duplicates (redeliveries) ok | applied |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        v = x["verify"]
        out.append(f"| {x['label'] or 'this checkout'} | {x['load_before']} | {x['clients']} | {x['auto_replan']} "
                   f"| {x['seconds']} "
                   f"| {x['requests']} | {x['accepted']} | "
                   f"{x['rate']:.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['max_ms']:.0f} | "
                   f"{x['errors'] or 0} | {v['distinct_in_stream']} of {v['accepted']} | {v['missing']} | "
                   f"{v['appended_twice']} | {v['duplicates_ok']} ({v['redeliveries_sent']}) | "
                   f"{'all' if v['not_applied_after_wait'] == 0 else v['not_applied_after_wait']} "
                   f"{v['final_statuses']} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, nargs="*", default=[8])
    ap.add_argument("--auto-replan", action="store_true", help="replan the line after every applied batch")
    ap.add_argument("--max-rate", type=float, default=4000, help="requests signed per second of the run")
    ap.add_argument("--server-path", default=str(ROOT),
                    help="PYTHONPATH of the service process (default: this checkout); e.g. an exported older "
                         "commit for a before/after comparison, or with extra packages (uvloop, httptools)")
    ap.add_argument("--label", default="", help="a label for the table row (what the server is)")
    ap.add_argument("--append", action="store_true", help="add to the rows already in --out's .json")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (.bench-runs/ingest-*)")
    ap.add_argument("--out", default="bench/results/ingest.md")
    args = ap.parse_args()
    state = machine_state()
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    if args.append and out.with_suffix(".json").exists():
        rows = json.loads(out.with_suffix(".json").read_text())
    for c in args.clients:
        rows.append(run(argparse.Namespace(**{**vars(args), "clients": c})))
    text = report(rows, state)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

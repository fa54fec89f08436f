"""Agents versus the centralised model (with a lower bound), and bus throughput.

For each scenario: run the agent network (``paichan run``), then the centralised
CP-SAT model with a time limit equal to the agents' wall time; both schedules are
verified by the checker. For the small scenarios the centralised model also gets a
long run (``--reference-limit``), to show how far both are from a good schedule.
The centralised model runs twice at the agents' wall time: from scratch, and seeded
with the agents' schedule; CP-SAT's lower bound is reported beside both. Every agents
schedule is also fixed into the CP-SAT model (``model_verdict``): the model must accept
what the checker accepts, with the same objective. An order the agents failed to
place counts as finishing at the scenario's horizon (its tardiness from there).
Reports weighted tardiness, makespan, the common objective (100 x weighted
tardiness + makespan, the scenario problem's objective), wall time and messages,
and when the agents' first (negotiated) schedule existed and was verified. Then
measures the bus: messages/s handled end to end (read, decode, handler,
transactional commit with acknowledgement), batched and one-by-one.

    python -m bench.agents [--scenarios single_plant,network_3x4,network_10x10] [--reference-limit 120]
                           [--out bench/results/agents.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from paichan.bus import Bus, Consumer, EmbeddedRedis, make, message
from paichan.domain import Problem
from paichan.solver import model_verdict


@message("bench.tick")
class Tick(BaseModel):
    n: int


def bus_throughput(n: int = 20000, batch: int = 64) -> dict[str, float]:
    """Messages/s through a private redis-server: send, then read+decode+commit(+ack)."""
    server = EmbeddedRedis(Path(".bench-redis") / uuid.uuid4().hex[:6]).start()
    try:
        out: dict[str, float] = {}
        for mode in ("batched", "one-by-one"):
            bus = Bus(server.url, f"bench:{mode}")
            consumer = Consumer(bus, "sink")
            t0 = time.monotonic()
            envs = [make(Tick(n=i), "source", "sink", "c") for i in range(n)]
            for k in range(0, n, 500):
                bus.send(*envs[k : k + 500])
            t_send = time.monotonic() - t0
            done = 0
            state = {"count": 0}
            t1 = time.monotonic()
            consumer.fetch()  # empty backlog
            while done < n:
                ds = consumer.fetch(count=batch if mode == "batched" else 1, block_ms=100)
                if mode == "batched":
                    state["count"] += len(ds)
                    consumer.commit(ds, state)
                else:
                    for d in ds:
                        state["count"] += 1
                        consumer.commit(d, state)
                done += len(ds)
            t_recv = time.monotonic() - t1
            out[f"send_msgs_per_s_{mode}"] = round(n / t_send)
            out[f"handled_msgs_per_s_{mode}"] = round(n / t_recv)
        out["messages"] = n
        return out
    finally:
        server.stop()


def penalty(problem: Problem, k: dict, horizon: int) -> float:
    """100 x tardiness (weighted) an unplaced order would have if it finished at the horizon."""
    failed = set(k.get("unscheduled_orders") or [])
    return sum(100 * o.priority * max(0, horizon - (o.due if o.due is not None else horizon))
               for o in problem.orders if o.id in failed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenarios", default="single_plant,network_3x4,network_10x10")
    ap.add_argument("--out", default="bench/results/agents.md")
    ap.add_argument("--reference-limit", type=float, default=120.0,
                    help="long centralised run for scenarios of at most 1,000 operations (0: none)")
    args = ap.parse_args()
    from paichan.agents.runtime import run_agents, run_centralised
    from paichan.agents.scenario import load_scenario
    from paichan.service.output import write_run

    rows = []
    for name in args.scenarios.split(","):
        sc = load_scenario(Path("scenarios") / f"{name}.yaml")
        work = Path(".bench-runs") / name
        print(f"== {name}: agents", file=sys.stderr, flush=True)
        run = run_agents(sc, work / "agents")
        a = write_run(work / "agents", run)
        limit = max(5.0, float(a["wall_time_s"]))
        print(f"== {name}: centralised, {limit:.0f} s", file=sys.stderr, flush=True)
        c = write_run(work / "centralised", run_centralised(sc, limit))
        print(f"== {name}: centralised seeded with the agents' schedule, {limit:.0f} s", file=sys.stderr, flush=True)
        seeded = write_run(work / "seeded", run_centralised(sc, limit, reference=run.schedule))
        verdict = model_verdict(run.problem, run.schedule, time_limit=60) if a.get("feasible") else None
        a["penalty"] = penalty(run.problem, a, sc.horizon_days * 1440)
        a["model_verdict"] = verdict.model_dump(mode="json") if verdict else None
        ref = None
        if args.reference_limit > 0 and a["operations"] <= 1000:
            print(f"== {name}: centralised reference, {args.reference_limit:.0f} s", file=sys.stderr, flush=True)
            ref = write_run(work / "reference", run_centralised(sc, args.reference_limit))
        rows.append({"scenario": name, "agents": a, "centralised": c, "seeded": seeded, "reference": ref})
    thr = bus_throughput()
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))

    def obj(k: dict) -> float:
        return 100 * k.get("weighted_tardiness", 0) + k.get("makespan", 0) + k.get("penalty", 0)

    def bound(r: dict) -> float | None:
        bs = [k.get("best_bound") for k in (r["centralised"], r["seeded"], r["reference"]) if k]
        bs = [b for b in bs if b is not None]
        return max(bs) if bs else None

    lines = [
        "# Agents vs centralised CP-SAT, and bus throughput",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}, {os.cpu_count()} cores, "
        f"{int(mem) // 1024 // 1024} GiB RAM. Command: `python -m bench.agents`. The centralised model gets a time "
        "limit equal to the agents' wall time (Ray and Redis start-up included in the agents' time), once from "
        "scratch and once seeded with the agents' schedule. Objective = 100 x weighted tardiness + makespan "
        "(minutes) + for each order the agents failed to place, 100 x its weight x (horizon - due). Every schedule "
        "verified by the independent checker. Lower bound: CP-SAT's best bound over the centralised runs. The last "
        "column fixes the agents' schedule into the CP-SAT model: it must be feasible there with the checker's "
        "objective.",
        "",
        "| scenario | operations | agents: feasible, WT, makespan, late, objective | wall s | messages | moves "
        "| centralised: feasible, WT, makespan, late, objective | seeded with the agents' schedule: objective "
        "| limit s | lower bound | agents / best centralised | model accepts the agents' schedule, objective |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cols(k: dict) -> str:
        return (f"{k['feasible']}, {k.get('weighted_tardiness')}, {k.get('makespan')}, {k.get('late_orders')}, "
                f"{obj(k):.0f}")

    for r in rows:
        a, c, sd = r["agents"], r["centralised"], r["seeded"]
        best = min(obj(k) for k in (c, sd, r["reference"]) if k and k.get("feasible"))
        ratio = obj(a) / best if best else float("inf")
        v = a.get("model_verdict") or {}
        lb = bound(r)
        lines.append(
            f"| {r['scenario']} | {a['operations']} | {cols(a)} | {a['wall_time_s']} | {a['messages']} "
            f"| {a.get('moves')} | {cols(c)} | {sd['feasible']}, {obj(sd):.0f} | {c['wall_time_s']} "
            f"| {'-' if lb is None else f'{lb:.0f}'} | {ratio:.2f} | {v.get('status')}, {v.get('objective')} |"
        )
    lines += [
        "",
        "The agents' first schedule: what the negotiation agreed on, before any local replan, reallocation or "
        "disruption, verified by the checker against the undisrupted scenario (times from the start of the run, "
        "Ray and Redis start-up included):",
        "",
        "| scenario | agreed at s | verified at s | feasible | WT | makespan | late |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["agents"].get("first_schedule") or {}
        lines.append(f"| {r['scenario']} | {f.get('time_s')} | {f.get('verified_s')} | {f.get('feasible')} "
                     f"| {f.get('weighted_tardiness')} | {f.get('makespan')} | {f.get('late_orders')} |")
    refs = [r for r in rows if r["reference"]]
    if refs:
        lines += ["", f"Centralised reference runs ({args.reference_limit:.0f} s):", "",
                  "| scenario | centralised: feasible, WT, makespan, late, objective | wall s | status "
                  "| agents / reference |", "|---|---|---|---|---|"]
        for r in refs:
            ref, a = r["reference"], r["agents"]
            lines.append(f"| {r['scenario']} | {cols(ref)} | {ref['wall_time_s']} | {ref.get('status')} "
                         f"| {obj(a) / obj(ref):.2f} |")
    lines += ["", "Bus (private redis-server, AOF on, one consumer):", "",
              "| mode | send msg/s | handled msg/s (read, decode, commit with ack) |", "|---|---|---|"]
    for mode in ("batched", "one-by-one"):
        lines.append(f"| {mode} | {thr[f'send_msgs_per_s_{mode}']} | {thr[f'handled_msgs_per_s_{mode}']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "bus": thr}, indent=1, default=str))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Agent networks at scale on a real two-node Ray cluster: 3x4, 10x10 and 30x10 plants x lines.

Starts a head and a second raylet on this machine (``bench.localcluster``, token authentication on),
then runs ``paichan run SCENARIO`` against it exactly as a user would (``RAY_ADDRESS`` set), one
scenario after another. Reports, per scenario: how many nodes the hosts landed on, start-up time,
the negotiation (from the network being up to the first negotiated schedule verified by the
checker), the whole run (negotiation, local replanning, disruptions), bid latency (``bench.latency``:
from the plant's call, its supplier request included, to each line's bid; and from the call for
proposals to the bid), messages, and the final schedule's objective as checked by the independent
checker. The issue's targets: network_10x10's p90 bid latency at most 2 s, and network_30x10
(16,500 operations) negotiated in at most 120 s.

    python -m bench.network [--scenarios network_3x4,network_10x10,network_30x10] [--out bench/results/network.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.latency import latencies, summary
from bench.localcluster import LocalCluster
from paichan.agents.explain import load_journal

ROOT = Path(__file__).resolve().parent.parent
PAICHAN = str(Path(sys.executable).parent / "paichan")


def log(msg: str) -> None:
    print(f"[network] {msg}", file=sys.stderr, flush=True)


def one(cluster: LocalCluster, name: str, workdir: Path) -> dict[str, Any]:
    """Run one scenario on the cluster; its row of the table."""
    out = workdir / name
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    t0 = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen([PAICHAN, "run", str(ROOT / "scenarios" / f"{name}.yaml"), "--output", str(out)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        last = 0.0
        for line in proc.stdout:
            lines.append(line.rstrip())
            if time.monotonic() - last > 15 or not line.startswith(("negotiating", "local", "absorbing")):
                log(f"{name}: {line.rstrip()[:160]}")
                last = time.monotonic()
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"paichan run {name} failed ({proc.returncode}): {lines[-5:]}")
    kpis = json.loads((out / "kpis.json").read_text())
    up = next((ln for ln in lines if ln.startswith("network up")), "")
    nodes = re.search(r"on (\d+) node", up)
    hops = latencies(load_journal(out))
    first = kpis["first_schedule"]
    call, cfp = summary(hops["call -> bid"]), summary(hops["cfp -> bid"])
    return {
        "scenario": name, "operations": kpis["operations"], "orders": kpis["orders"],
        "nodes": int(nodes.group(1)) if nodes else 0, "startup_s": kpis["startup_time_s"],
        "negotiated_s": round(first["verified_s"] - kpis["startup_time_s"], 1),
        "first_feasible": first["feasible"], "run_s": kpis["wall_time_s"], "command_s": round(wall, 1),
        "call_bid_p50": round(call["median"], 2), "call_bid_p90": round(call["p90"], 2),
        "cfp_bid_p90": round(cfp["p90"], 2), "bids": call["n"], "messages": kpis["messages"],
        "feasible": kpis["feasible"], "violations": kpis["violation_count"],
        "weighted_tardiness": kpis["weighted_tardiness"], "makespan": kpis["makespan"],
        "late_orders": kpis["late_orders"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | operations | nodes | start-up s | negotiated s | whole run s | call->bid p50 s | "
            "call->bid p90 s | cfp->bid p90 s | messages | checker | weighted tardiness | makespan | late |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        checker = "feasible" if r["feasible"] else f"{r['violations']} violations"
        out.append(f"| {r['scenario']} | {r['operations']:,} | {r['nodes']} | {r['startup_s']:.1f} | "
                   f"{r['negotiated_s']:.1f} | {r['run_s']:.1f} | {r['call_bid_p50']:.2f} | {r['call_bid_p90']:.2f} | "
                   f"{r['cfp_bid_p90']:.2f} | {r['messages']:,} | "
                   f"{checker} | "
                   f"{r['weighted_tardiness']:,} | {r['makespan']:,} | {r['late_orders']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="network_3x4,network_10x10,network_30x10")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "network.md")
    ap.add_argument("--workdir", type=Path, default=ROOT / ".bench-runs" / "network")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    log("starting a two-node Ray cluster (head + one worker raylet) ...")
    cluster = LocalCluster()
    rows: list[dict[str, Any]] = []
    try:
        for name in args.scenarios.split(","):
            log(f"{name}: running on the cluster ...")
            rows.append(one(cluster, name, args.workdir))
            r = rows[-1]
            log(f"{name}: negotiated in {r['negotiated_s']} s, call->bid p90 {r['call_bid_p90']} s, "
                f"{r['messages']} messages, feasible={r['feasible']}")
    finally:
        cluster.stop()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    md = (f"# Agent networks on a two-node Ray cluster\n\n`python -m bench.network` ({stamp}; {os.cpu_count()} "
          f"cores, {platform.python_version()}): a head and a second raylet on this machine "
          "(`bench/localcluster.py`, token authentication on), each scenario run as "
          "`RAY_ADDRESS=... paichan run scenarios/NAME.yaml`.\n\n"
          "*negotiated*: from the network being up (actors started) to the first negotiated schedule, "
          "verified by the checker; *whole run*: start-up, negotiation, local replanning, the scenario's "
          "disruptions and reallocation, to the final schedule; *call->bid*: from the plant's first message "
          "of a call (its request to the supplier) to each line's bid; *cfp->bid*: from the call for "
          "proposals to the bid. Objective figures are the final schedule's, as the checker computes them "
          "(bench/results/agents.md compares them with the centralised model and its lower bound).\n\n"
          + table(rows) + "\n")
    args.out.write_text(md)
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

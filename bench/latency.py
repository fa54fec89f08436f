"""Protocol latency of a run, from its journal alone: how long lines and suppliers take to answer.

For each time window after the first message, and over the whole run ("all"):
call for proposals -> the line's ATP request (lines that ask a supplier themselves),
ATP request -> the supplier's promise, call for proposals -> the line's bid, and
call -> bid: from the calling plant's first message of the call (its ATP request,
or the call for proposals when the order takes no material) to the bid, which is
what the plant waits for (median, 90th percentile, max, in seconds, from the
envelopes' ``sent_at``). A call's deadline is ``respond_timeout_s`` after it is sent, so a
p90 close to that timeout means calls are decided on missing bids.

    python -m bench.latency RUN_DIR [--window 10]      (RUN_DIR holds negotiations.jsonl)
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from statistics import median, quantiles
from typing import Any

from paichan.agents.explain import load_journal, order_of


def latencies(entries: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """(time since the first message, delay) per hop."""
    def at(e: dict[str, Any]) -> float:
        return datetime.fromisoformat(e["sent_at"].replace("Z", "+00:00")).timestamp()

    t0 = at(entries[0]) if entries else 0.0
    cfp: dict[tuple[Any, ...], float] = {}
    req: dict[tuple[Any, ...], float] = {}
    called: dict[tuple[Any, ...], float] = {}  # (order, conversation, calling plant) -> its first message
    caller: dict[tuple[Any, ...], str] = {}  # (order, conversation, line) -> the plant that called it
    out: dict[str, list[tuple[float, float]]] = {"cfp -> atp.request": [], "atp.request -> atp.promise": [],
                                                 "cfp -> bid": [], "call -> bid": []}
    for e in entries:
        t, key = at(e), (order_of(e), e["conversation"])
        if e["type"] in ("cfp", "atp.request"):
            called.setdefault((*key, e["sender"]), t)
        if e["type"] == "cfp":
            cfp[(*key, e["recipient"])] = t
            caller[(*key, e["recipient"])] = e["sender"]
        elif e["type"] == "atp.request":
            req[(*key, e["sender"])] = t
            if (*key, e["sender"]) in cfp:
                out["cfp -> atp.request"].append((t - t0, t - cfp[(*key, e["sender"])]))
        elif e["type"] == "atp.promise" and (*key, e["recipient"]) in req:
            out["atp.request -> atp.promise"].append((t - t0, t - req[(*key, e["recipient"])]))
        elif e["type"] == "bid" and (*key, e["sender"]) in cfp:
            out["cfp -> bid"].append((t - t0, t - cfp[(*key, e["sender"])]))
            out["call -> bid"].append((t - t0, t - called[(*key, caller[(*key, e["sender"])])]))
    return {hop: rows for hop, rows in out.items() if rows}


def summary(rows: list[tuple[float, float]]) -> dict[str, float]:
    """n, median, p90 and max of a hop's delays (s)."""
    d = [x for _, x in rows]
    return {"n": len(d), "median": median(d), "p90": quantiles(d, n=10)[-1] if len(d) >= 2 else d[0], "max": max(d)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--window", type=float, default=10.0)
    args = ap.parse_args(argv)
    print("| hop | window s | n | median s | p90 s | max s |\n|---|---|---|---|---|---|")
    for hop, rows in latencies(load_journal(args.run)).items():
        last = max((t for t, _ in rows), default=0.0)
        lo = 0.0
        while lo <= last:
            d = [x for t, x in rows if lo <= t < lo + args.window]
            if len(d) >= 2:
                p90 = quantiles(d, n=10)[-1]
                span = f"{lo:g}-{lo + args.window:g}"
                print(f"| {hop} | {span} | {len(d)} | {median(d):.2f} | {p90:.2f} | {max(d):.2f} |")
            lo += args.window
        if rows:
            a = summary(rows)
            print(f"| {hop} | all | {a['n']} | {a['median']:.2f} | {a['p90']:.2f} | {a['max']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

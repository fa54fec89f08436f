"""Best-known makespan bounds of the bundled benchmark instances.

The tables (``instances/jssp_bks.csv`` and ``instances/fjsp_bks.csv``) come from
jsplib.org / fjsplib.org; see ``instances/README.md`` for sources and caveats.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

INSTANCES = Path(__file__).resolve().parent / "instances"
TABLES = (INSTANCES / "jssp_bks.csv", INSTANCES / "fjsp_bks.csv")


def load_bks(paths: Iterable[str | Path] = TABLES) -> dict[str, tuple[int, int]]:
    """Map instance name -> (best-known lower bound, best-known upper bound = BKS makespan)."""
    out: dict[str, tuple[int, int]] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                name, lb, ub = row["instance"], int(row["lower_bound"]), int(row["upper_bound"])
                if lb > ub:
                    raise ValueError(f"{path} line {line}: {name} has lower bound {lb} above upper bound {ub}")
                if name in out and out[name] != (lb, ub):
                    raise ValueError(f"{path} line {line}: {name} bounds {(lb, ub)} disagree with {out[name]}")
                out[name] = (lb, ub)
    return out

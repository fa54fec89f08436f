"""Write a generated network scenario: P plants x L lines of five machines, the 10 x 10 network's products.

``scenarios/network_10x10.yaml`` and ``scenarios/network_30x10.yaml`` come from this script (a test checks
that the first still does); the load per line stays the same when the network grows: orders and the
suppliers' stock and daily output scale with the number of lines.

    python scripts/make_network.py --plants 30 --lines 10 > scenarios/network_30x10.yaml
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

STEPS = [("cut", "CUT"), ("weld", "WELD"), ("paint", "PAIN"), ("assembly", "ASSE"), ("pack", "PACK")]
SPEEDS = [round(0.8 + 0.05 * k, 2) for k in range(9)]  # 0.8 .. 1.2
ORDERS_PER_LINE = 11


def product(material: str, per_unit: float, minutes: list[tuple[int, int]]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for (name, mtype), (per, fixed) in zip([("cut", "cut"), ("weld", "weld"), ("paint", "paint"),
                                            ("assemble", "assembly"), ("pack", "pack")], minutes, strict=True):
        step: dict[str, Any] = {"name": name, "machine_type": mtype, "minutes_per_unit": per, "fixed_minutes": fixed}
        if name == "cut":
            step |= {"material": material, "material_per_unit": per_unit}
        steps.append(step)
    return {"steps": steps}


def network(plants: int, lines: int, orders: int | None = None) -> dict[str, Any]:
    """The scenario as data; ``orders`` defaults to 11 per line."""
    n_lines = plants * lines
    orders = orders if orders is not None else ORDERS_PER_LINE * n_lines
    scale = n_lines / 100  # the 10 x 10 network's supply per 100 lines
    out: list[dict[str, Any]] = []
    for p in range(plants):
        plant_lines = []
        for k in range(lines):
            g = p * lines + k
            machines = [{"id": mid, "type": mtype, "speed": SPEEDS[(3 * g + 4 * p + m) % 9]}
                        for m, (mtype, mid) in enumerate(STEPS)]
            plant_lines.append({"id": f"L{k + 1}", "calendar": "three_shifts" if g % 3 == 0 else "two_shifts",
                                "machines": machines})
        out.append({"id": f"P{p + 1}", "lines": plant_lines})

    def supplier(sid: str, material: str) -> dict[str, Any]:
        return {"id": sid, "materials": [{"id": material, "stock": round(2000 * scale),
                                          "replenish": {"lead_time": 1440, "per_day": round(1500 * scale)}}]}

    return {
        "name": f"network-{plants}x{lines}",
        "origin": "2026-11-23T00:00:00Z",
        "horizon_days": 40,
        "calendars": {"two_shifts": {"period": 1440, "shifts": [{"start": 360, "end": 1320}]},
                      "three_shifts": {"period": 1440, "shifts": [{"start": 0, "end": 1440}]}},
        "products": {"cabinet": product("sheet", 0.5, [(4, 15), (3, 20), (2, 30), (2, 10), (1, 10)]),
                     "frame": product("tube", 1, [(3, 10), (5, 15), (1, 20), (2, 10), (1, 5)])},
        "plants": out,
        "suppliers": [supplier("S1", "sheet"), supplier("S2", "tube")],
        "generate_orders": {"count": orders, "seed": 7, "quantity": [5, 20], "release_spread": 7200,
                            "due_slack": [1440, 5760]},
        "disruptions": [{"type": "machine_down", "plant": "P3", "line": "L2", "machine": "WELD", "start": 3000,
                         "end": 3900},
                        {"type": "supplier_delay", "supplier": "S2", "material": "tube", "delay": 720}],
        "negotiation": {"respond_timeout_s": 10, "wave": 30, "replan_time_limit": 0.5, "improve_rounds": 1,
                        "hosting": "per_plant"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plants", type=int, default=10)
    ap.add_argument("--lines", type=int, default=10)
    ap.add_argument("--orders", type=int, default=None, help=f"default: {ORDERS_PER_LINE} per line")
    a = ap.parse_args(argv)
    sc = network(a.plants, a.lines, a.orders)
    n = sc["generate_orders"]["count"]
    sys.stdout.write(f"# {a.plants} plants x {a.lines} lines, {n:,} generated orders x 5 steps = {5 * n:,} operations"
                     f" (python scripts/make_network.py --plants {a.plants} --lines {a.lines}).\n")
    sys.stdout.write(yaml.safe_dump(sc, sort_keys=False, allow_unicode=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

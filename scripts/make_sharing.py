"""Write a capacity-sharing scenario: overloaded enterprises next to enterprises with spare capacity.

``scenarios/sharing_3.yaml`` and ``scenarios/sharing_10.yaml`` come from this script (a test checks that
they still do, byte for byte). The enterprises (their lines, offers, prices and buying policies) are
laid out by hand below; their orders are drawn from a seeded generator. The overloaded enterprises
("buyers") get more work than their two lines can finish by the due dates, so alone their weighted
tardiness is large; the others ("sellers") have a few loose orders and put their lines on the
market over the whole horizon, so when every line is shared (the centralised problem) the overload
is absorbed. In the 10-enterprise scenario four capabilities are mixed and not every seller can
serve every buyer. Times are minutes; the horizon is two days (2880 min).

    python scripts/make_sharing.py --enterprises 3 --output scenarios/sharing_3.yaml
    python scripts/make_sharing.py --enterprises 10 --output scenarios/sharing_10.yaml
    python scripts/make_sharing.py --enterprises 10 --tight --output scenarios/sharing_10_tight.yaml

``--tight`` doubles the overloaded enterprises' orders (24 each, and 24 requests each on the
market): more than even all lines together can finish on time, so the centralised optimum is
above 0 and "within 10% of it" measures something.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

HORIZON = 2880  # two days; every offer covers it, every due date is inside it
FLOOR_SHARE = 0.6  # a seller accepts down to this share of its list price (idle capacity earns little otherwise)
SEED = 20261123


@dataclass(frozen=True)
class Ent:
    """One enterprise's hand-made layout; its orders are generated (``buyer``: overloaded)."""

    id: str
    name: str
    lines: tuple[tuple[str, tuple[str, ...]], ...]  # (line id, capabilities)
    buyer: bool
    orders: int
    prices: tuple[float, ...] = ()  # a seller: one offer per line at this price per minute
    prefix: str = "SO"  # order ids: f"{prefix}-{number}"
    draw: int = 0  # which draw of orders (see _orders)


MT, TU, GR, AS = "milling", "turning", "grinding", "assembly"

LAYOUTS: dict[int, tuple[Ent, ...]] = {
    3: (
        Ent("acme", "Acme Präzisionsteile GmbH", (("A1", (MT,)), ("A2", (TU,))), True, 12, prefix="AC", draw=13),
        Ent("borg", "Borg Maskinverkstad AB", (("B1", (MT,)), ("B2", (TU,))), False, 3, (0.8, 1.0), "BO"),
        Ent("cyber", "Cyber Machining Ltd", (("C1", (MT, TU)), ("C2", (MT,))), False, 3, (1.2, 1.1), "CY"),
    ),
    10: (
        Ent("atlas", "Atlas Antriebstechnik GmbH", (("L1", (MT, TU)), ("L2", (MT,))), True, 12, prefix="AT", draw=10),
        Ent("boreal", "Boreal Hydraulics Oy", (("L1", (TU, GR)), ("L2", (GR,))), True, 12, prefix="BR", draw=23),
        Ent("cobalt", "Cobalt Robotics B.V.", (("L1", (AS, MT)), ("L2", (AS,))), True, 12, prefix="CB", draw=13),
        Ent("delta", "Delta Tornitura S.r.l.", (("D1", (MT,)), ("D2", (TU,))), False, 3, (0.9, 1.0), "DE"),
        Ent("ember", "Ember Grinding Works Inc.", (("E1", (GR,)),), False, 2, (1.1,), "EM"),
        Ent("fjord", "Fjord Mekaniske AS", (("F1", (AS,)), ("F2", (GR,))), False, 3, (0.8, 1.3), "FJ"),
        Ent("granite", "Granite Turning Co.", (("G1", (TU,)),), False, 2, (0.7,), "GT"),
        Ent("helix", "Helix Fertigung KG", (("H1", (MT, AS)),), False, 2, (1.2,), "HX"),
        Ent("iris", "Iris Usinage SAS", (("I1", (GR,)), ("I2", (TU,))), False, 3, (1.0, 0.9), "IR"),
        Ent("juniper", "Juniper Assembly Systems", (("J1", (AS,)), ("J2", (AS,))), False, 3, (1.0, 1.4), "JU"),
    ),
}

CUSTOMERS = (
    "Keller Hydraulik AG", "Nordwind Turbines Ltd", "Bauer Landtechnik GmbH", "Sato Seiki K.K.",
    "Lindqvist Marine AB", "Rossi Meccanica S.p.A.", "Dubois Aéronautique SA", "Kowalski Pompy Sp. z o.o.",
    "Hartmann Medizintechnik GmbH", "Van Dijk Robotics B.V.", "Oyelaran Agro Ltd", "Pereira Moldes Lda",
    "Novák Elektro s.r.o.", "Brightwater Pumps Inc.", "Yamada Precision Co.", "Castillo Automoción S.L.",
    "Fischer Fördertechnik KG", "Olsen Offshore AS", "Moreau Ferroviaire SAS", "Tanaka Motors Ltd",
)


def _orders(ent: Ent, seed: int) -> list[dict[str, Any]]:
    """The enterprise's orders, from its own random stream (``seed``, its id and its ``draw``).

    An overloaded enterprise's ``draw`` was picked (by trying draws 0, 1, ... in turn) so that
    its problem alone solves to proven optimality in well under a second with one CP-SAT worker:
    weighted tardiness on an overloaded line is hard to prove for some draws of the same size.
    """
    rng = random.Random(f"{seed}/{ent.id}/{ent.draw}")
    caps = sorted({c for _, cs in ent.lines for c in cs})
    out: list[dict[str, Any]] = []
    number = rng.randrange(10000, 90000, 100)
    for _ in range(ent.orders):
        number += rng.randrange(1, 40)
        if ent.buyer:  # tight: released in the first shift, due a little after its work
            n_steps = 2 if rng.random() < 0.25 else 1
            release = rng.randrange(0, 481, 30)
            durations = [rng.randrange(90, 241, 15) for _ in range(n_steps)]
            slack = rng.randrange(60, 361, 30)
            priority = rng.choice((1, 1, 2, 3))
        else:  # loose: one step, due a day or so after its release
            n_steps = 1
            release = rng.randrange(0, 1441, 60)
            durations = [rng.randrange(60, 181, 15)]
            slack = rng.randrange(600, 1201, 60)
            priority = rng.choice((1, 2))
        steps = [{"capability": c, "duration": d}
                 for c, d in zip(rng.sample(caps, n_steps) if n_steps <= len(caps) else [caps[0]] * n_steps,
                                 durations, strict=True)]
        out.append({"id": f"{ent.prefix}-{number}", "customer": rng.choice(CUSTOMERS),
                    "quantity": rng.choice((1, 2, 5, 10, 20, 50)), "release": release,
                    "due": min(HORIZON, release + sum(durations) + slack), "priority": priority, "steps": steps})
    return out


def _enterprise(ent: Ent, seed: int, tight: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"id": ent.id, "name": ent.name, "tardiness_cost": 5.0 if ent.buyer else 1.0}
    d["lines"] = [{"id": lid, "capabilities": list(cs)} for lid, cs in ent.lines]
    d["orders"] = _orders(replace(ent, orders=2 * ent.orders) if tight and ent.buyer else ent, seed)
    d["offers"] = [{"capabilities": list(cs), "window": [0, HORIZON], "price_per_minute": p,
                    "floor_per_minute": round(FLOOR_SHARE * p, 2), "min_lot": 1}
                   for (_, cs), p in zip(ent.lines, ent.prices, strict=True)] if not ent.buyer else []
    d["buying"] = ({"max_requests": 24 if tight else 12, "max_price_per_minute": 1.5} if ent.buyer
                   else {"max_requests": 2, "max_price_per_minute": 1.0})
    return d


def sharing(n: int, seed: int = SEED, tight: bool = False) -> dict[str, Any]:
    """The scenario as data (``n``: one of the laid-out sizes, see ``LAYOUTS``)."""
    name = f"sharing-{n}" + ("-tight" if tight else "")
    return {"name": name, "enterprises": [_enterprise(e, seed, tight) for e in LAYOUTS[n]]}


def render(n: int, seed: int = SEED, tight: bool = False) -> str:
    """The YAML text, with a header comment saying how it was generated."""
    sc = sharing(n, seed, tight)
    ents = sc["enterprises"]
    buyers = [e["id"] for e in ents if e["offers"] == []]
    seed_arg = ("" if seed == SEED else f" --seed {seed}") + (" --tight" if tight else "")
    out = f"scenarios/sharing_{n}{'_tight' if tight else ''}.yaml"
    header = (f"# {n} enterprises sharing capacity: {', '.join(buyers)} overloaded, {n - len(buyers)} with spare"
              f" lines on offer; {sum(len(e['orders']) for e in ents)} orders, horizon {HORIZON} min.\n"
              f"# Generated, do not edit: python scripts/make_sharing.py --enterprises {n}{seed_arg}"
              f" --output {out}\n")
    return header + yaml.safe_dump(sc, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--enterprises", type=int, choices=sorted(LAYOUTS), required=True)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--tight", action="store_true", help="twice the overload: the centralised optimum is above 0")
    a = ap.parse_args(argv)
    a.output.write_text(render(a.enterprises, a.seed, a.tight), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

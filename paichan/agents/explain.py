"""Explain a run from its negotiation journal (``negotiations.jsonl``).

Every message the agents exchanged is in the journal, so the story of an order
(who was asked, what material was promised, who bid what, why the winner won,
what moved it later) can be told after the run without the agents. The award
rule is the plant's: lowest cost (priority x tardiness + 0.001 x completion),
then earliest completion, then line id.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

TimeFormat = Callable[[int], str]


class JournalError(ValueError):
    """A journal file that cannot be read; the message names file and line."""


def load_journal(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        if not (path / "negotiations.jsonl").is_file():
            raise JournalError(f"{path}: no negotiations.jsonl here: explain needs the output directory of "
                               "`paichan run` (`paichan demo` and `paichan solve` write none)")
        path = path / "negotiations.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise JournalError(f"{path}: cannot read ({e.strerror})") from e
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise JournalError(f"{path}:{n}: not JSON ({e.msg})") from e
        if not isinstance(entry, dict) or not {"type", "sender", "recipient", "payload"} <= set(entry):
            raise JournalError(f"{path}:{n}: not a message envelope (needs type, sender, recipient, payload)")
        out.append(entry)
    if not out:
        raise JournalError(f"{path}: no messages: not a negotiation journal (a centralised run leaves an empty one)")
    if not any(e["type"] == "order.new" for e in out):
        raise JournalError(f"{path}: no 'order.new' message: not the journal of a `paichan run`")
    return out


def run_origin(path: str | Path) -> datetime | None:
    """Time 0 of a run, from the ``origin`` of the ``schedule.json`` beside its journal (None if unknown)."""
    path = Path(path)
    sched = (path if path.is_dir() else path.parent) / "schedule.json"
    try:
        origin = json.loads(sched.read_text(encoding="utf-8")).get("origin")
        return datetime.fromisoformat(origin) if origin else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def clock(origin: datetime | None) -> TimeFormat:
    """Minutes from the origin shown with weekday and clock time, as the Gantt shows them: ``480 (Mon 08:00)``."""
    if origin is None:
        return str
    return lambda t: f"{t} ({(origin + timedelta(minutes=t)):%a %H:%M})"


def order_of(entry: dict[str, Any]) -> str | None:
    """The order a message is about, if any."""
    p = entry["payload"]
    if "order_id" in p:
        return str(p["order_id"])
    if isinstance(p.get("order"), dict):
        return str(p["order"].get("id"))
    return None


def _rank(bid: dict[str, Any]) -> tuple[float, int, str]:
    return (bid["cost"], bid["completion"], bid["line"])


def _bid_line(b: dict[str, Any], at: TimeFormat = str) -> str:
    moved = f", moves committed work by {b['disturbance']} min" if b.get("disturbance") else ""
    return (f"{b['line']}: completion {at(b['completion'])}, tardiness {b['tardiness']}, cost {b['cost']:.3f}, "
            f"material ready {at(b['material_ready'])}{moved}")


def summary(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per order: where it ended up, how many rounds, bids and moves it took."""
    rows: dict[str, dict[str, Any]] = {}
    for e in entries:
        oid = order_of(e)
        if oid is None:
            continue
        t = e["type"]
        if t == "order.new":
            o = e["payload"]["order"]
            rows[oid] = {"order": oid, "plant": o["plant"], "due": o["due"], "priority": o["priority"], "rounds": 0,
                         "bids": 0, "escalated": False, "moves": 0, "updates": 0, "line": None, "completion": None}
            continue
        row = rows.get(oid)
        if row is None:
            continue
        if t == "cfp" and e["sender"] == row["plant"]:
            row["rounds"] = max(row["rounds"], int(e["payload"]["round"]) + 1)
        elif t == "bid":
            row["bids"] += 1
        elif t == "escalate":
            row["escalated"] = True
        elif t == "revoke":
            row["moves"] += 1
        elif t == "confirm" and e["recipient"] == row["plant"]:
            row["line"], row["completion"] = e["payload"]["line"], e["payload"]["completion"]
        elif t == "update" and e["recipient"] == row["plant"]:
            row["updates"] += 1
            row["line"], row["completion"] = e["payload"]["line"], e["payload"]["completion"]
    for row in rows.values():
        row["tardiness"] = max(0, row["completion"] - row["due"]) if row["completion"] is not None else None
    return list(rows.values())


def order_story(entries: list[dict[str, Any]], oid: str, at: TimeFormat = str) -> list[str]:
    """The negotiation of one order in words, in the order things happened (times shown by ``at``)."""
    mine = [e for e in entries if order_of(e) == oid]
    if not mine:
        raise KeyError(f"order '{oid}' does not occur in the journal")
    new = next((e for e in mine if e["type"] == "order.new"), None)
    owner = new["payload"]["order"]["plant"] if new else None
    lines: list[str] = []
    if new:
        o = new["payload"]["order"]
        lines.append(f"order {oid}: {o['quantity']} x {o['product']} for plant {o['plant']}, "
                     f"release {at(o['release'])}, due {at(o['due'])}, priority {o['priority']}")
    bids: dict[str, list[dict[str, Any]]] = defaultdict(list)  # conversation -> own lines' bids and offers
    asked: dict[str, list[str]] = defaultdict(list)
    decided: set[str] = set()
    current = None
    for e in mine:
        conv, p, t = e["conversation"], e["payload"], e["type"]
        if t == "cfp":
            if conv != current:
                current = conv
                lines.append(f"round {conv.rsplit(':', 1)[1]} ({conv}):")
            asked[conv].append(e["recipient"])
            if e["sender"] != owner:
                lines.append(f"  {e['sender']} asks its line {e['recipient']}")
            elif len(asked[conv]) == 1:
                lines.append(f"  {owner} calls for proposals")
        elif t == "atp.promise" and not p.get("available", True):
            lines.append(f"  {p['supplier']} cannot deliver {p['quantity']:g} {p['material']} to {e['recipient']} "
                         f"within its horizon")
        elif t == "atp.promise":
            lines.append(f"  {p['supplier']} promises {p['quantity']:g} {p['material']} to {e['recipient']} "
                         f"from t={at(p['date'])}{' (later than needed)' if p['late'] else ''}")
        elif t == "atp.release":
            lines.append(f"  {e['sender']} releases what {e['recipient']} held of {p['material']} for it")
        elif t == "bid":
            if p["plant"] == owner:
                bids[conv].append(p)
            lines.append(f"  bid {_bid_line(p, at)}")
        elif t == "refuse":
            lines.append(f"  {p['line']} refuses: {p['reason']}")
        elif t == "escalate":
            lines.append(f"  {e['sender']} escalates to {e['recipient']}")
        elif t == "offer":
            b = p["bid"]
            if b:
                bids[conv].append(b)
            lines.append(f"  offer from {e['sender']}: {_bid_line(b, at) if b else 'none (no line there can make it)'}")
        elif t == "award" and e["sender"] == owner:
            decided.add(conv)
            target = p["line"]
            cands = bids[conv]
            why = ""
            if cands:
                best = min(cands, key=_rank)
                why = (f" (lowest cost of {len(cands)} candidate(s))" if best["line"] == target
                       else " (not the lowest-cost candidate in the journal)")
            lines.append(f"  {owner} awards to {target}{why}")
        elif t == "revoke" and p.get("conversation"):
            lines.append(f"  {e['sender']} revokes {e['recipient']}'s booking of {p['conversation']}: its confirmation "
                         f"came after the call had been run again")
        elif t == "revoke":
            lines.append(f"  {e['sender']} revokes the order from {e['recipient']}: the new place is strictly better")
        elif t == "confirm" and e["recipient"] == owner:
            lines.append(f"  {p['line']} confirms: completion {at(p['completion'])}")
        elif t == "withdraw":
            lines.append(f"  {p['line']} withdraws: {p['reason']}")
        elif t == "update" and e["recipient"] == owner:
            lines.append(f"update from {p['line']}: completion {at(p['completion'])} ({p['reason']})")
        elif t == "atp.confirm" and not p.get("available", True):
            lines.append(f"{p['supplier']}: {p['material']} for it can no longer be delivered within the horizon")
        elif t == "atp.confirm" and p.get("late") and conv.startswith("delay:"):
            lines.append(f"{p['supplier']}: {p['material']} for it now comes late, from t={at(p['date'])}")
    for conv in asked:
        if conv not in decided and bids[conv]:
            lines.append(f"round {conv}: no award - no candidate was strictly better than where the order was")
    return lines

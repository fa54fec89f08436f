"""PlantAgent: owns orders, runs the contract net over its lines, escalates to other plants.

New orders are collected for ``intake_s`` (the intake window restarts with
every arrival) and then called earliest due first, so the order in which the
ERP happens to send them does not decide who gets scarce capacity and material.
For each order (at most ``wave`` calls open at once) the
plant sends a call for proposals to every line able to make the product, waits
for bids until all have answered or the deadline passes, and awards the
cheapest bid (weighted tardiness, then completion). If no own line can meet the
due date it asks the other plants, which run the same call on their own lines
and offer their best bid; the origin awards the best of all. Awards are
confirmed by the winning line; a withdrawn bid or a refused award re-runs the
call. Calls the plant runs on behalf of another plant are answered with an
offer and forwarded on award.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from paichan.agents.base import Agent
from paichan.agents.messages import (
    AtpRelease,
    Award,
    Bid,
    CallForProposals,
    Confirm,
    Escalate,
    Improve,
    NewOrder,
    Offer,
    OrderSpec,
    Refuse,
    Reject,
    Revoke,
    ScheduleUpdate,
    Withdraw,
)
from paichan.bus.envelope import Envelope


def _rank(bid: dict[str, Any]) -> tuple[float, int, str]:
    return (bid["cost"], bid["completion"], bid["line"])


class PlantAgent(Agent):
    kind = "plant"

    def __init__(self, plant_id: str, lines: dict[str, set[str]], other_plants: list[str], wave: int = 20,
                 respond_timeout_s: float = 5.0, escalate: bool = True, intake_s: float = 0.5,
                 suppliers: dict[str, str] | None = None) -> None:
        super().__init__(plant_id)
        self.suppliers = suppliers or {}  # material -> supplier agent id (to release holds of failed orders)
        self.lines = {k: sorted(v) for k, v in lines.items()}  # line id -> machine types
        self.others = other_plants
        self.wave = wave
        self.timeout = respond_timeout_s
        self.escalate = escalate
        self.intake_s = intake_s
        self.max_waits = 3  # deadline extensions for a call nobody answered (see _wait_longer)
        self.intake_until: float | None = None  # calls wait until the intake window closes
        self.orders: dict[str, dict[str, Any]] = {}  # own orders
        self.calls: dict[str, dict[str, Any]] = {}  # open calls (own or on behalf of another plant)
        self.queue: list[str] = []
        self.moves: list[tuple[str, float, str]] = []  # reallocation candidates (order, cost, line)
        self.events: list[dict[str, Any]] = []  # decisions, for the explanation log

    def snapshot(self) -> dict[str, Any]:
        return {"orders": self.orders, "calls": self.calls, "queue": self.queue, "events": self.events,
                "moves": self.moves, "intake_until": self.intake_until}

    def load(self, state: dict[str, Any]) -> None:
        self.orders, self.calls, self.queue, self.events = (state["orders"], state["calls"], state["queue"],
                                                            state["events"])
        self.moves = [tuple(m) for m in state["moves"]]  # type: ignore[misc]
        self.intake_until = state.get("intake_until")

    # ------------------------------------------------------------------ calls
    def _capable(self, spec: OrderSpec) -> list[str]:
        need = {s.machine_type for s in spec.steps}
        return [line for line, types in self.lines.items() if need <= set(types)]

    def _open_own(self) -> int:
        return sum(1 for c in self.calls.values() if c["for"] is None)

    def _pump(self, now: float) -> list[Envelope]:
        out: list[Envelope] = []
        if self.intake_until is not None and now < self.intake_until:
            return out
        while self.queue and self._open_own() < self.wave:
            oid = self.queue.pop(0)
            out += self._call(OrderSpec.model_validate(self.orders[oid]["spec"]), self.orders[oid]["round"], None,
                              now)
        while self.moves and not self.queue and self._open_own() < self.wave:
            oid, cost, line = self.moves.pop(0)
            rec = self.orders[oid]
            if rec["status"] != "confirmed" or rec["placed"]["line"] != line:
                continue
            rec["round"] += 1
            out += self._call(OrderSpec.model_validate(rec["spec"]), rec["round"], None, now,
                              move_from={"line": line, "cost": cost})
        return out

    def _call(self, spec: OrderSpec, rnd: int, for_plant: str | None, now: float,
              move_from: dict[str, Any] | None = None) -> list[Envelope]:
        lines = [ln for ln in self._capable(spec) if move_from is None or ln != move_from["line"]]
        conv = f"{spec.id}:{rnd}"
        self.calls[spec.id] = {"spec": spec.model_dump(mode="json"), "round": rnd, "for": for_plant, "conv": conv,
                               "expected": lines, "bids": {}, "refused": {}, "deadline": now + self.timeout,
                               "escalation": None, "best": None, "move_from": move_from}
        if for_plant is None:
            self.orders[spec.id]["status"] = "moving" if move_from else "calling"
        if not lines:
            return self._decide(spec.id, now)
        cfp = CallForProposals(order=spec, round=rnd, origin_plant=for_plant or self.id)
        return [self.send(cfp, line, conv) for line in lines]

    def _answered(self, call: dict[str, Any]) -> bool:
        return len(call["bids"]) + len(call["refused"]) >= len(call["expected"])

    def _decide(self, oid: str, now: float) -> list[Envelope]:
        call = self.calls[oid]
        bids = sorted(call["bids"].values(), key=_rank)
        best = bids[0] if bids else None
        call["best"] = best
        out = [self.send(Reject(order_id=oid, round=call["round"]), b["line"], call["conv"]) for b in bids[1:]]
        if call["for"] is not None:  # on behalf of another plant: offer our best, keep its reservation
            offer = Offer(order_id=oid, plant=self.id, bid=Bid.model_validate(best) if best else None,
                          round=call["round"])
            call["deadline"] = None
            return [*out, self.send(offer, call["for"], call["conv"])]
        move = call.get("move_from")
        if move is not None:  # reallocation: ask other plants only if no own line does strictly better
            worth = best is None or best["cost"] >= move["cost"] - 1e-6
        else:  # a new call: ask other plants when no own line meets the due date
            worth = best is None or best["tardiness"] > 0
        if self.escalate and self.others and worth and call["escalation"] is None:
            spec = OrderSpec.model_validate(call["spec"])
            call["escalation"] = {"expected": list(self.others), "offers": {}, "deadline": now + 2 * self.timeout}
            if move is None:
                self.orders[oid]["status"] = "escalating"
            self._log(oid, "escalate", {"best_own_cost": best["cost"] if best else None, "move": move is not None})
            return [*out, *(self.send(Escalate(order=spec, round=call["round"]), p, call["conv"])
                            for p in self.others)]
        return out + self._award_best(oid, now)

    def _improve(self, limit: int, now: float) -> list[Envelope]:
        """Re-call late orders placed on our own lines, worst weighted tardiness first."""
        late = []
        for oid, rec in self.orders.items():
            placed = rec["placed"]
            if rec["status"] != "confirmed" or placed is None or placed["line"] not in self.lines:
                continue
            spec = rec["spec"]
            tardiness = max(0, placed["completion"] - spec["due"])
            if tardiness > 0:
                cost = spec["priority"] * tardiness + 0.001 * placed["completion"]
                late.append((-cost, oid, cost, placed["line"]))
        out: list[Envelope] = []
        self.moves = [(oid, cost, line) for _, oid, cost, line in sorted(late)[:limit]]
        return out + self._pump(now)

    def _award_best(self, oid: str, now: float) -> list[Envelope]:
        """Award the best of own bid and plant offers."""
        call = self.calls[oid]
        cands = [("own", call["best"])] if call["best"] else []
        esc = call["escalation"]
        if esc is not None:
            cands += [(p, b) for p, b in esc["offers"].items() if b is not None]
            esc["decided"] = True
        out: list[Envelope] = []
        if not cands:
            self.orders[oid]["status"] = "failed"
            self._log(oid, "failed", {"refused": call["refused"]})
            del self.calls[oid]
            return out + self._release_material(OrderSpec.model_validate(call["spec"])) + self._pump(now)
        where, best = min(cands, key=lambda c: _rank(c[1]))
        move = call.get("move_from")
        if move is not None and best["cost"] >= move["cost"] - 1e-6:  # no strictly better place: stay
            out += [self.send(Reject(order_id=oid, round=call["round"]), b["line"] if w == "own" else w, call["conv"])
                    for w, b in cands]
            self.orders[oid]["status"] = "confirmed"
            del self.calls[oid]
            return out + self._pump(now)
        if move is not None:
            self._log(oid, "move", {"from": move["line"], "to": best["line"], "cost_before": move["cost"],
                                    "cost_after": best["cost"]})
            out.append(self.send(Revoke(order_id=oid), move["line"], call["conv"]))
        self._log(oid, "award", {"line": best["line"], "plant": best["plant"], "via": where,
                                 "move": move is not None,
                                 "completion": best["completion"], "cost": best["cost"], "candidates": len(cands)})
        if esc is not None:
            for p, b in esc["offers"].items():
                if b is not None and p != where:
                    out.append(self.send(Reject(order_id=oid, round=call["round"]), p, call["conv"]))
        if where == "own":
            out.append(self.send(Award(order_id=oid, line=best["line"], round=call["round"]), best["line"],
                                 call["conv"]))
        else:
            if call["best"]:
                out.append(self.send(Reject(order_id=oid, round=call["round"]), call["best"]["line"], call["conv"]))
            out.append(self.send(Award(order_id=oid, line=best["line"], round=call["round"]), where, call["conv"]))
        self.orders[oid]["status"] = "awarded"
        call["deadline"] = now + 4 * self.timeout  # wait for the confirmation
        call["awarded"] = {"plant": best["plant"], "line": best["line"], "via": where}
        return out

    def _release_material(self, spec: OrderSpec) -> list[Envelope]:
        """A failed order: its suppliers drop what they held for it."""
        mats = sorted({st.material for st in spec.steps if st.material and st.material_per_unit > 0})
        return [self.send(AtpRelease(order_id=spec.id, material=m), self.suppliers[m], f"{spec.id}:release")
                for m in mats if m in self.suppliers]

    def _rerun(self, oid: str, now: float, why: str) -> list[Envelope]:
        self._log(oid, "rerun", {"why": why})
        self.calls.pop(oid, None)
        if oid in self.orders:
            self.orders[oid]["round"] += 1
            self.orders[oid]["status"] = "queued"
            self.orders[oid]["placed"] = None  # wherever it was, it is not there any more
            self.queue.insert(0, oid)
        return self._pump(now)

    def _log(self, oid: str, what: str, detail: dict[str, Any]) -> None:
        self.events.append({"order": oid, "event": what, **detail})

    # --------------------------------------------------------------- messages
    def handle(self, env: Envelope, payload: BaseModel, now: float) -> list[Envelope]:
        if isinstance(payload, Improve):
            return self._improve(payload.max_orders, now)
        if isinstance(payload, NewOrder):
            spec = payload.order
            if spec.id in self.orders:
                return []
            self.orders[spec.id] = {"spec": spec.model_dump(mode="json"), "status": "queued", "round": 0,
                                    "placed": None}
            self.queue.append(spec.id)
            self.queue.sort(key=lambda o: (self.orders[o]["spec"]["due"], o))
            self.intake_until = now + self.intake_s
            return self._pump(now)
        oid = getattr(payload, "order_id", None) or getattr(getattr(payload, "order", None), "id", None)
        call = self.calls.get(oid) if oid else None
        if isinstance(payload, Bid | Refuse):
            if call is None or env.conversation != call["conv"]:
                if isinstance(payload, Refuse) and oid in self.orders and self.orders[oid]["status"] == "awarded":
                    return self._rerun(oid, now, f"award refused by {payload.line}: {payload.reason}")
                if isinstance(payload, Bid):  # too late for its call: free the line's reservation
                    return [self.send(Reject(order_id=payload.order_id), payload.line, env.conversation)]
                return []
            if isinstance(payload, Refuse):
                if call.get("awarded"):
                    return self._rerun(oid, now, f"award refused by {payload.line}: {payload.reason}")
                call["refused"][payload.line] = payload.reason
            elif call["best"] is not None or payload.line in call["refused"]:  # decided without it (deadline)
                return [self.send(Reject(order_id=payload.order_id, round=call["round"]), payload.line, call["conv"])]
            else:
                call["bids"][payload.line] = payload.model_dump()
            return self._decide(oid, now) if self._answered(call) and call["best"] is None else []
        if isinstance(payload, Offer):
            late = (call is None or call["escalation"] is None or env.conversation != call["conv"]
                    or call.get("awarded") is not None or call["escalation"].get("decided"))
            if late:  # the call was decided without this offer: release what the offering plant holds
                return [self.send(Reject(order_id=payload.order_id, round=payload.round), env.sender,
                                  env.conversation)] if payload.bid is not None else []
            esc = call["escalation"]
            esc["offers"][payload.plant] = payload.bid.model_dump() if payload.bid else None
            if len(esc["offers"]) >= len(esc["expected"]):
                return self._award_best(oid, now)
            return []
        if isinstance(payload, Escalate):
            if call is not None:
                return []
            return self._call(payload.order, payload.round, env.sender, now)
        if isinstance(payload, Award):  # another plant chose our offer
            if call is None or call["for"] != env.sender or not call["best"]:
                return [self.send(Refuse(order_id=payload.order_id, line=payload.line, reason="offer expired"),
                                  env.sender, env.conversation, env.id)]
            call["awarded"] = {"line": call["best"]["line"]}
            return [self.send(Award(order_id=payload.order_id, line=call["best"]["line"], round=call["round"]),
                              call["best"]["line"], call["conv"])]
        if isinstance(payload, Reject):  # another plant chose someone else
            if call is not None and call["for"] == env.sender and env.conversation == call["conv"]:
                out = ([self.send(Reject(order_id=payload.order_id, round=call["round"]), call["best"]["line"],
                                  call["conv"])] if call["best"] else [])
                del self.calls[payload.order_id]
                return out
            return []
        if isinstance(payload, Confirm):
            return self._confirmed(env, payload, now)
        if isinstance(payload, ScheduleUpdate):
            if oid in self.orders and self.orders[oid]["placed"] is not None:
                if self.orders[oid]["placed"]["line"] != payload.line:
                    return []  # stale: the order has moved to another line since
                self.orders[oid]["placed"].update(completion=payload.completion,
                                                  operations=[o.model_dump() for o in payload.operations])
                self._log(oid, "update", {"line": payload.line, "completion": payload.completion,
                                          "reason": payload.reason})
                return []
            origin = self._foreign_origin(oid)
            if origin is not None:
                return [self.send(payload, origin, env.conversation)]
            return []
        if isinstance(payload, Withdraw):
            if payload.order_id not in self.orders:  # placed on our line for another plant: tell the owner
                origin = self._foreign_origin(payload.order_id)
                return [self.send(payload, origin, env.conversation)] if origin is not None else []
            rec = self.orders[payload.order_id]
            placed = rec["placed"]
            if rec["status"] != "confirmed" or placed is None or placed["line"] != payload.line:
                return []  # stale: the order has moved, or is being called again, since
            return self._rerun(payload.order_id, now, f"{payload.line} withdrew: {payload.reason}")
        raise ValueError(f"plant cannot handle '{env.type}'")

    def _foreign_origin(self, oid: str | None, line: str | None = None, conversation: str | None = None) -> str | None:
        """The plant we placed ``oid`` for (on ``line``, in ``conversation``, when given), if we did."""
        for e in reversed(self.events):
            if e["order"] == oid and e["event"] == "placed_for" and line in (None, e["line"]) \
                    and conversation in (None, e.get("conversation")):
                return str(e["origin"])
        return None

    def _revoke_stale(self, c: Confirm, env: Envelope) -> list[Envelope]:
        """A confirmation for an award nobody waits for any more (the call was re-run): free that booking."""
        self._log(c.order_id, "stale_confirm", {"line": c.line, "conversation": env.conversation})
        return [self.send(Revoke(order_id=c.order_id, conversation=env.conversation), c.line, env.conversation)]

    def _confirmed(self, env: Envelope, c: Confirm, now: float) -> list[Envelope]:
        call = self.calls.get(c.order_id)
        rec = self.orders.get(c.order_id)
        if rec is None:  # placed on our line for another plant
            if call is not None and call["for"] is not None and call["conv"] == env.conversation \
                    and call.get("awarded") is not None:
                del self.calls[c.order_id]
                self._log(c.order_id, "placed_for", {"origin": call["for"], "line": c.line,
                                                     "conversation": env.conversation})
                return [self.send(c, call["for"], env.conversation)]
            origin = self._foreign_origin(c.order_id, c.line, env.conversation)
            if origin is not None:  # confirmed again: the owner decides
                return [self.send(c, origin, env.conversation)]
            return self._revoke_stale(c, env)
        awaited = call is not None and call.get("awarded") is not None and env.conversation == call["conv"] \
            and call["awarded"]["line"] == c.line
        again = rec["status"] == "confirmed" and rec["placed"] is not None and rec["placed"]["line"] == c.line
        if not awaited and not again:
            return self._revoke_stale(c, env)
        rec["status"] = "confirmed"
        rec["placed"] = {"plant": c.plant, "line": c.line, "completion": c.completion,
                         "operations": [o.model_dump() for o in c.operations]}
        if awaited:
            self.calls.pop(c.order_id, None)
        return self._pump(now)

    def tick(self, now: float) -> list[Envelope]:
        out: list[Envelope] = []
        if self.intake_until is not None and now >= self.intake_until:
            self.intake_until = None
            out += self._pump(now)
        for oid, call in list(self.calls.items()):
            if call.get("awarded"):
                if call["deadline"] is not None and now > call["deadline"] and call["for"] is None:
                    out += self._rerun(oid, now, "no confirmation before the deadline")
                continue
            esc = call["escalation"]
            if esc is not None:
                if now > esc["deadline"]:
                    if not esc["offers"] and call["best"] is None and self._wait_longer(call, esc, now, 2):
                        continue
                    out += self._award_best(oid, now)
            elif call["deadline"] is not None and now > call["deadline"] and call["best"] is None:
                if not call["bids"] and not call["refused"] and self._wait_longer(call, call, now, 1):
                    continue
                for line in call["expected"]:
                    call["refused"].setdefault(line, "no answer before the deadline")
                out += self._decide(oid, now)
        return out

    def _wait_longer(self, call: dict[str, Any], timer: dict[str, Any], now: float, factor: int) -> bool:
        """Nobody answered at all: the lines (or plants) are slow, not unable. Extend the deadline (doubling,
        at most ``max_waits`` times) instead of deciding on nothing: deciding would escalate or fail the order
        and multiply the load that made everyone slow."""
        waits = call.get("waits", 0)
        if waits >= self.max_waits:
            return False
        call["waits"] = waits + 1
        timer["deadline"] = now + factor * self.timeout * 2 ** call["waits"]
        return True

    # ----------------------------------------------------------------- status
    def done(self) -> bool:
        own_calls = any(c["for"] is None for c in self.calls.values())
        return self.intake_until is None and not self.queue and not self.moves and not own_calls

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
offer and forwarded on award. An order that takes material is first promised a
date by each supplier (one request per material and call, not one per line:
the supplier's load no longer grows with the lines), and the call carries the
dates to the lines.
"""

from __future__ import annotations

from paichan.agents.base import Agent, handles
from paichan.agents.messages import (
    AtpPromise,
    AtpRelease,
    AtpRequest,
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
from paichan.agents.state import (
    Awarded,
    AwardEvent,
    Call,
    EscalateEvent,
    Escalation,
    FailedEvent,
    MoveCandidate,
    MoveEvent,
    MoveFrom,
    PlacedForEvent,
    PlacedOp,
    Placement,
    PlantEvent,
    PlantOrder,
    PlantState,
    RerunEvent,
    StaleConfirmEvent,
    UpdateEvent,
)
from paichan.bus.envelope import Envelope


def _rank(bid: Bid) -> tuple[float, int, str]:
    return (bid.cost, bid.completion, bid.line)


class PlantAgent(Agent):
    kind = "plant"
    state_model = PlantState
    st: PlantState

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
        # how long a call waits out silence (lines or plants that have not answered: on a node that died,
        # being restarted elsewhere) before it counts them as refusing (see _wait_longer)
        self.patience_s = max(60.0, 12 * respond_timeout_s)
        self.st = PlantState()  # everything committed to the bus (orders, calls, queue, moves, events)

    @property
    def orders(self) -> dict[str, PlantOrder]:
        """Own orders."""
        return self.st.orders

    @property
    def calls(self) -> dict[str, Call]:
        """Open calls (own, or on behalf of another plant)."""
        return self.st.calls

    # ------------------------------------------------------------------ calls
    def _capable(self, spec: OrderSpec) -> list[str]:
        need = {s.machine_type for s in spec.steps}
        return [line for line, types in self.lines.items() if need <= set(types)]

    def _open_own(self) -> int:
        return sum(1 for c in self.st.calls.values() if c.for_plant is None)

    def _pump(self, now: float) -> list[Envelope]:
        st = self.st
        out: list[Envelope] = []
        if st.intake_until is not None and now < st.intake_until:
            return out
        while st.queue and self._open_own() < self.wave:
            rec = st.orders[st.queue.pop(0)]
            out += self._call(rec.spec, rec.round, None, now)
        while st.moves and not st.queue and self._open_own() < self.wave:
            move = st.moves.pop(0)
            rec = st.orders[move.order]
            if rec.status != "confirmed" or rec.placed is None or rec.placed.line != move.line:
                continue
            rec.round += 1
            out += self._call(rec.spec, rec.round, None, now, move_from=MoveFrom(line=move.line, cost=move.cost))
        return out

    def _call(self, spec: OrderSpec, rnd: int, for_plant: str | None, now: float,
              move_from: MoveFrom | None = None) -> list[Envelope]:
        lines = [ln for ln in self._capable(spec) if move_from is None or ln != move_from.line]
        conv = f"{spec.id}:{rnd}"
        self.st.calls[spec.id] = Call(spec=spec, round=rnd, for_plant=for_plant, conv=conv, expected=lines,
                                      deadline=now + self.timeout, move_from=move_from, opened=now)
        if for_plant is None:
            self.st.orders[spec.id].status = "moving" if move_from else "calling"
        if not lines:
            return self._decide(spec.id, now)
        need = {m: q for m, q in spec.material_need().items() if m in self.suppliers}
        if need:  # ask each supplier once for the whole call; the lines bid on the promised dates
            call = self.st.calls[spec.id]
            call.sourcing = sorted(need)
            return [self.send(AtpRequest(order_id=spec.id, material=m, quantity=need[m], needed_by=spec.release),
                              self.suppliers[m], conv) for m in call.sourcing]
        return self._send_calls(spec.id, now)

    def _send_calls(self, oid: str, now: float) -> list[Envelope]:
        """The call for proposals to every line of the call, with the promised material dates."""
        call = self.st.calls[oid]
        call.deadline = now + self.timeout  # the lines' time to answer starts now
        cfp = CallForProposals(order=call.spec, round=call.round, origin_plant=call.for_plant or self.id,
                               material_dates=dict(call.dates) if call.dates else None)
        return [self.send(cfp, line, call.conv) for line in call.expected]

    @staticmethod
    def _answered(call: Call) -> bool:
        return len(call.bids) + len(call.refused) >= len(call.expected)

    def _decide(self, oid: str, now: float) -> list[Envelope]:
        call = self.st.calls[oid]
        bids = sorted(call.bids.values(), key=_rank)
        best = bids[0] if bids else None
        call.best = best
        out = [self.send(Reject(order_id=oid, round=call.round), b.line, call.conv) for b in bids[1:]]
        if call.for_plant is not None:  # on behalf of another plant: offer our best, keep its reservation
            offer = Offer(order_id=oid, plant=self.id, bid=best, round=call.round)
            call.deadline = None
            return [*out, self.send(offer, call.for_plant, call.conv)]
        move = call.move_from
        if move is not None:  # reallocation: ask other plants only if no own line does strictly better
            worth = best is None or best.cost >= move.cost - 1e-6
        else:  # a new call: ask other plants when no own line meets the due date
            worth = best is None or best.tardiness > 0
        if self.escalate and self.others and worth and call.escalation is None:
            call.escalation = Escalation(expected=list(self.others), deadline=now + 2 * self.timeout)
            if move is None:
                self.st.orders[oid].status = "escalating"
            self._log(EscalateEvent(order=oid, best_own_cost=best.cost if best else None, move=move is not None))
            return [*out, *(self.send(Escalate(order=call.spec, round=call.round), p, call.conv)
                            for p in self.others)]
        return out + self._award_best(oid, now)

    def _improve(self, limit: int, now: float) -> list[Envelope]:
        """Re-call late orders placed on our own lines, worst weighted tardiness first."""
        late = []
        for oid, rec in self.st.orders.items():
            placed = rec.placed
            if rec.status != "confirmed" or placed is None or placed.line not in self.lines:
                continue
            tardiness = max(0, placed.completion - rec.spec.due)
            if tardiness > 0:
                cost = rec.spec.priority * tardiness + 0.001 * placed.completion
                late.append((-cost, oid, cost, placed.line))
        self.st.moves = [MoveCandidate(order=oid, cost=cost, line=line) for _, oid, cost, line in sorted(late)[:limit]]
        return self._pump(now)

    def _award_best(self, oid: str, now: float) -> list[Envelope]:
        """Award the best of own bid and plant offers."""
        call = self.st.calls[oid]
        cands: list[tuple[str, Bid]] = [("own", call.best)] if call.best else []
        esc = call.escalation
        if esc is not None:
            cands += [(p, b) for p, b in esc.offers.items() if b is not None]
            esc.decided = True
        out: list[Envelope] = []
        rec = self.st.orders[oid]
        if not cands:
            rec.status = "failed"
            self._log(FailedEvent(order=oid, refused=call.refused))
            del self.st.calls[oid]
            return out + self._release_material(call.spec) + self._pump(now)
        where, best = min(cands, key=lambda c: _rank(c[1]))
        move = call.move_from
        if move is not None and best.cost >= move.cost - 1e-6:  # no strictly better place: stay
            out += [self.send(Reject(order_id=oid, round=call.round), b.line if w == "own" else w, call.conv)
                    for w, b in cands]
            rec.status = "confirmed"
            del self.st.calls[oid]
            return out + self._pump(now)
        if move is not None:
            self._log(MoveEvent(order=oid, from_line=move.line, to=best.line, cost_before=move.cost,
                                cost_after=best.cost))
            out.append(self.send(Revoke(order_id=oid), move.line, call.conv))
        self._log(AwardEvent(order=oid, line=best.line, plant=best.plant, via=where, move=move is not None,
                             completion=best.completion, cost=best.cost, candidates=len(cands)))
        if esc is not None:
            for p, b in esc.offers.items():
                if b is not None and p != where:
                    out.append(self.send(Reject(order_id=oid, round=call.round), p, call.conv))
        if where == "own":
            out.append(self.send(Award(order_id=oid, line=best.line, round=call.round), best.line, call.conv))
        else:
            if call.best:
                out.append(self.send(Reject(order_id=oid, round=call.round), call.best.line, call.conv))
            out.append(self.send(Award(order_id=oid, line=best.line, round=call.round), where, call.conv))
        rec.status = "awarded"
        call.deadline = now + 4 * self.timeout  # wait for the confirmation
        call.awarded = Awarded(plant=best.plant, line=best.line, via=where)
        return out

    def _release_material(self, spec: OrderSpec) -> list[Envelope]:
        """A failed order: its suppliers drop what they held for it."""
        mats = sorted({st.material for st in spec.steps if st.material and st.material_per_unit > 0})
        return [self.send(AtpRelease(order_id=spec.id, material=m), self.suppliers[m], f"{spec.id}:release")
                for m in mats if m in self.suppliers]

    def _rerun(self, oid: str, now: float, why: str) -> list[Envelope]:
        self._log(RerunEvent(order=oid, why=why))
        self.st.calls.pop(oid, None)
        rec = self.st.orders.get(oid)
        if rec is not None:
            rec.round += 1
            rec.status = "queued"
            rec.placed = None  # wherever it was, it is not there any more
            self.st.queue.insert(0, oid)
        return self._pump(now)

    def _log(self, event: PlantEvent) -> None:
        self.st.events.append(event)

    # --------------------------------------------------------------- messages
    @handles(Improve)
    def _on_improve(self, env: Envelope, msg: Improve, now: float) -> list[Envelope]:
        return self._improve(msg.max_orders, now)

    @handles(NewOrder)
    def _on_new_order(self, env: Envelope, msg: NewOrder, now: float) -> list[Envelope]:
        spec = msg.order
        st = self.st
        if spec.id in st.orders:
            return []
        st.orders[spec.id] = PlantOrder(spec=spec)
        st.queue.append(spec.id)
        st.queue.sort(key=lambda o: (st.orders[o].spec.due, o))
        st.intake_until = now + self.intake_s
        return self._pump(now)

    def _open_call(self, oid: str, env: Envelope) -> Call | None:
        """The open call for ``oid`` in the envelope's conversation, if there is one."""
        call = self.st.calls.get(oid)
        return call if call is not None and env.conversation == call.conv else None

    @handles(Bid)
    def _on_bid(self, env: Envelope, bid: Bid, now: float) -> list[Envelope]:
        call = self._open_call(bid.order_id, env)
        if call is None:  # too late for its call: free the line's reservation
            return [self.send(Reject(order_id=bid.order_id), bid.line, env.conversation)]
        if call.best is not None or bid.line in call.refused:  # decided without it (deadline)
            return [self.send(Reject(order_id=bid.order_id, round=call.round), bid.line, call.conv)]
        call.bids[bid.line] = bid
        return self._decide(bid.order_id, now) if self._answered(call) and call.best is None else []

    @handles(AtpPromise)
    def _on_promise(self, env: Envelope, p: AtpPromise, now: float) -> list[Envelope]:
        """A supplier's date for a call's material: with every date in, call the lines."""
        call = self._open_call(p.order_id, env)
        if call is None or p.material not in call.sourcing:
            return []  # an answer for a call that is over (or was asked again)
        call.sourcing.remove(p.material)
        if not p.available:  # no line of ours can make it: each counts as refusing, for this reason
            why = f"material {p.material}: {p.supplier} cannot deliver {p.quantity:g} within its horizon"
            call.sourcing = []
            for line in call.expected:
                call.refused[line] = why
            return self._decide(p.order_id, now)
        call.dates[p.material] = p.date
        return [] if call.sourcing else self._send_calls(p.order_id, now)

    @handles(Refuse)
    def _on_refuse(self, env: Envelope, refuse: Refuse, now: float) -> list[Envelope]:
        oid = refuse.order_id
        call = self._open_call(oid, env)
        if call is None:
            rec = self.st.orders.get(oid)
            if rec is not None and rec.status == "awarded":
                return self._rerun(oid, now, f"award refused by {refuse.line}: {refuse.reason}")
            return []
        if call.awarded is not None:
            return self._rerun(oid, now, f"award refused by {refuse.line}: {refuse.reason}")
        call.refused[refuse.line] = refuse.reason
        return self._decide(oid, now) if self._answered(call) and call.best is None else []

    @handles(Offer)
    def _on_offer(self, env: Envelope, offer: Offer, now: float) -> list[Envelope]:
        call = self.st.calls.get(offer.order_id)
        esc = call.escalation if call is not None else None
        if call is None or esc is None or env.conversation != call.conv or call.awarded is not None or esc.decided:
            # the call was decided without this offer: release what the offering plant holds
            return [self.send(Reject(order_id=offer.order_id, round=offer.round), env.sender,
                              env.conversation)] if offer.bid is not None else []
        esc.offers[offer.plant] = offer.bid
        if len(esc.offers) >= len(esc.expected):
            return self._award_best(offer.order_id, now)
        return []

    @handles(Escalate)
    def _on_escalate(self, env: Envelope, msg: Escalate, now: float) -> list[Envelope]:
        if msg.order.id in self.st.calls:
            return []
        return self._call(msg.order, msg.round, env.sender, now)

    @handles(Award)
    def _on_award(self, env: Envelope, award: Award, now: float) -> list[Envelope]:
        """Another plant chose our offer: award our line."""
        call = self.st.calls.get(award.order_id)
        if call is None or call.for_plant != env.sender or not call.best:
            return [self.send(Refuse(order_id=award.order_id, line=award.line, reason="offer expired"),
                              env.sender, env.conversation, env.id)]
        call.awarded = Awarded(line=call.best.line)
        return [self.send(Award(order_id=award.order_id, line=call.best.line, round=call.round), call.best.line,
                          call.conv)]

    @handles(Reject)
    def _on_reject(self, env: Envelope, reject: Reject, now: float) -> list[Envelope]:
        """Another plant chose someone else: release our line's bid."""
        call = self.st.calls.get(reject.order_id)
        if call is not None and call.for_plant == env.sender and env.conversation == call.conv:
            out = ([self.send(Reject(order_id=reject.order_id, round=call.round), call.best.line, call.conv)]
                   if call.best else [])
            del self.st.calls[reject.order_id]
            return out
        return []

    @handles(ScheduleUpdate)
    def _on_update(self, env: Envelope, upd: ScheduleUpdate, now: float) -> list[Envelope]:
        rec = self.st.orders.get(upd.order_id)
        if rec is not None and rec.placed is not None:
            if rec.placed.line != upd.line:
                return []  # stale: the order has moved to another line since
            rec.placed.completion = upd.completion
            rec.placed.operations = [PlacedOp.of(o) for o in upd.operations]
            self._log(UpdateEvent(order=upd.order_id, line=upd.line, completion=upd.completion, reason=upd.reason))
            return []
        origin = self._foreign_origin(upd.order_id)
        if origin is not None:
            return [self.send(upd, origin, env.conversation)]
        return []

    @handles(Withdraw)
    def _on_withdraw(self, env: Envelope, msg: Withdraw, now: float) -> list[Envelope]:
        rec = self.st.orders.get(msg.order_id)
        if rec is None:  # placed on our line for another plant: tell the owner
            origin = self._foreign_origin(msg.order_id)
            return [self.send(msg, origin, env.conversation)] if origin is not None else []
        if rec.status != "confirmed" or rec.placed is None or rec.placed.line != msg.line:
            return []  # stale: the order has moved, or is being called again, since
        return self._rerun(msg.order_id, now, f"{msg.line} withdrew: {msg.reason}")

    def _foreign_origin(self, oid: str, line: str | None = None, conversation: str | None = None) -> str | None:
        """The plant we placed ``oid`` for (on ``line``, in ``conversation``, when given), if we did."""
        for e in reversed(self.st.events):
            if isinstance(e, PlacedForEvent) and e.order == oid and line in (None, e.line) \
                    and conversation in (None, e.conversation):
                return e.origin
        return None

    def _revoke_stale(self, c: Confirm, env: Envelope) -> list[Envelope]:
        """A confirmation for an award nobody waits for any more (the call was re-run): free that booking."""
        self._log(StaleConfirmEvent(order=c.order_id, line=c.line, conversation=env.conversation))
        return [self.send(Revoke(order_id=c.order_id, conversation=env.conversation), c.line, env.conversation)]

    @handles(Confirm)
    def _on_confirm(self, env: Envelope, c: Confirm, now: float) -> list[Envelope]:
        call = self.st.calls.get(c.order_id)
        rec = self.st.orders.get(c.order_id)
        if rec is None:  # placed on our line for another plant
            if call is not None and call.for_plant is not None and call.conv == env.conversation \
                    and call.awarded is not None:
                del self.st.calls[c.order_id]
                self._log(PlacedForEvent(order=c.order_id, origin=call.for_plant, line=c.line,
                                         conversation=env.conversation))
                return [self.send(c, call.for_plant, env.conversation)]
            origin = self._foreign_origin(c.order_id, c.line, env.conversation)
            if origin is not None:  # confirmed again: the owner decides
                return [self.send(c, origin, env.conversation)]
            return self._revoke_stale(c, env)
        awaited = call is not None and call.awarded is not None and env.conversation == call.conv \
            and call.awarded.line == c.line
        again = rec.status == "confirmed" and rec.placed is not None and rec.placed.line == c.line
        if not awaited and not again:
            return self._revoke_stale(c, env)
        rec.status = "confirmed"
        rec.placed = Placement(plant=c.plant, line=c.line, completion=c.completion,
                               operations=[PlacedOp.of(o) for o in c.operations])
        if awaited:
            self.st.calls.pop(c.order_id, None)
        return self._pump(now)

    def tick(self, now: float) -> list[Envelope]:
        out: list[Envelope] = []
        if self.st.intake_until is not None and now >= self.st.intake_until:
            self.st.intake_until = None
            out += self._pump(now)
        for oid, call in list(self.st.calls.items()):
            if call.awarded is not None:
                if call.deadline is not None and now > call.deadline and call.for_plant is None:
                    out += self._rerun(oid, now, "no confirmation before the deadline")
                continue
            esc = call.escalation
            if esc is not None:
                if now > esc.deadline:
                    silent = len(esc.offers) < len(esc.expected)
                    usable = call.best is not None or any(b is not None for b in esc.offers.values())
                    if silent and not usable and self._wait_longer(call, esc, now, 2):
                        continue
                    out += self._award_best(oid, now)
            elif call.deadline is not None and now > call.deadline and call.best is None:
                silent = any(ln not in call.bids and ln not in call.refused for ln in call.expected)
                if not call.bids and silent and self._wait_longer(call, call, now, 1):
                    continue
                why = (f"no promise for {', '.join(call.sourcing)} before the deadline" if call.sourcing
                       else "no answer before the deadline")
                call.sourcing = []
                for line in call.expected:
                    call.refused.setdefault(line, why)
                out += self._decide(oid, now)
        return out

    def _wait_longer(self, call: Call, timer: Call | Escalation, now: float, factor: int) -> bool:
        """No bid yet and some lines (or plants) have not answered: they are slow or being restarted on
        another node, not unable. Extend the deadline (doubling, up to 16 timeouts) instead of deciding on
        nothing, for at most ``patience_s`` from the call's opening: deciding would count the silent ones as
        refusing, escalate or fail the order, and multiply the load that made everyone slow."""
        if now - call.opened > self.patience_s:
            return False
        call.waits += 1
        timer.deadline = now + factor * self.timeout * 2 ** min(call.waits, 4)
        return True

    # ----------------------------------------------------------------- status
    def done(self) -> bool:
        st = self.st
        own_calls = any(c.for_plant is None for c in st.calls.values())
        return st.intake_until is None and not st.queue and not st.moves and not own_calls

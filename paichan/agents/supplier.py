"""SupplierAgent: owns material supply and promises dates (available-to-promise).

Supply is stock now plus time-phased receipts and daily replenishment output.
A promise for ``q`` at date ``d`` is possible when, from ``d`` on, cumulative
supply minus everything already reserved never drops below ``q``. The first
promise for an order also holds the quantity at that date (every line bidding
for the order needs the same material, so one hold per order), so that two
calls running at once are not promised the same material; the award turns the
hold into a reservation at the date the winning line needs it. A supply delay
re-checks reservations in date order and tells every line whose material now
comes late, with the new date.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from paichan.agents.base import Agent
from paichan.agents.messages import AtpConfirm, AtpPromise, AtpRelease, AtpRequest, AtpReserve, SupplierDelay
from paichan.agents.scenario import SupplierSpec, supplier_receipts
from paichan.bus.envelope import Envelope


def available_date(supply: list[list[float]], reservations: list[list[float]], q: float,
                   horizon: int) -> int | None:
    """Earliest date from which ``q`` more can be taken without any later shortfall (None: not before
    the horizon, beyond which the supplier knows no supply)."""
    events = sorted([(t, v) for t, v in supply] + [(t, -v) for t, v in reservations])
    if not events:
        return None
    times: list[float] = []
    levels: list[float] = []
    level = 0.0
    for t, v in events:
        level += v
        if times and times[-1] == t:
            levels[-1] = level
        else:
            times.append(t)
            levels.append(level)
    suffix = levels[:]
    for k in range(len(suffix) - 2, -1, -1):
        suffix[k] = min(suffix[k], suffix[k + 1])
    for k, t in enumerate(times):
        if suffix[k] + 1e-9 >= q and t < horizon:
            return int(max(0, t))
    return None


HOLD = "(hold)"  # the "line" of a hold: promised to an order's bidders, not yet awarded


class SupplierAgent(Agent):
    kind = "supplier"

    def __init__(self, spec: SupplierSpec, horizon: int) -> None:
        super().__init__(spec.id)
        self.horizon = horizon
        # material -> {"supply": [[t, q]], "reserved": {order: [qty, date, line]}}
        self.materials: dict[str, dict[str, Any]] = {
            m.id: {"supply": [[0, m.stock], *[[t, q] for t, q in supplier_receipts(m, horizon)]], "reserved": {}}
            for m in spec.materials
        }
        self.late_promises = 0

    def snapshot(self) -> dict[str, Any]:
        return {"materials": self.materials, "late_promises": self.late_promises}

    def load(self, state: dict[str, Any]) -> None:
        self.materials = state["materials"]
        self.late_promises = state["late_promises"]

    def _date(self, material: str, q: float, exclude: str | None = None) -> int | None:
        m = self.materials[material]
        res = [[d, qty] for o, (qty, d, _) in m["reserved"].items() if o != exclude]
        return available_date(m["supply"], res, q, self.horizon)

    def _promise(self, req: AtpRequest, env: Envelope, date: int | None) -> Envelope:
        """The answer to a request: the date, or (None) that it cannot be had within the horizon."""
        promise = AtpPromise(order_id=req.order_id, material=req.material, quantity=req.quantity,
                             date=self.horizon if date is None else date,
                             late=date is None or date > req.needed_by, supplier=self.id, available=date is not None)
        return self.send(promise, env.sender, env.conversation, env.id)

    def _gone(self, order: str, material: str, line: str, conversation: str, reply_to: str) -> Envelope:
        """Tell a line that a reserved quantity can no longer be delivered within the horizon."""
        return self.send(AtpConfirm(order_id=order, material=material, date=self.horizon, late=True,
                                    supplier=self.id, available=False), line, conversation, reply_to)

    def handle(self, env: Envelope, payload: BaseModel, now: float) -> list[Envelope]:
        if isinstance(payload, AtpRequest | AtpReserve | AtpRelease) and payload.material not in self.materials:
            raise ValueError(f"supplier {self.id} does not supply '{payload.material}'")
        if isinstance(payload, AtpRequest):
            reserved = self.materials[payload.material]["reserved"]
            held = reserved.get(payload.order_id)
            if held is not None and held[2] == HOLD and held[0] == payload.quantity:
                # another bidder for an order already held: the same promise (every later hold and promise
                # was computed with this one in place, so its date still holds). Cheap: a network asks once
                # per capable line, and escalation multiplies that by the plants.
                return [self._promise(payload, env, int(held[1]))]
            d = self._date(payload.material, payload.quantity, exclude=payload.order_id)
            if d is not None and payload.order_id not in reserved:  # hold it until the award replaces it
                reserved[payload.order_id] = [payload.quantity, d, HOLD]
            return [self._promise(payload, env, d)]  # d None: not within the horizon, nothing held
        if isinstance(payload, AtpReserve):
            reserved = self.materials[payload.material]["reserved"]
            d = self._date(payload.material, payload.quantity, exclude=payload.order_id)
            if d is None:
                reserved.pop(payload.order_id, None)
                self.late_promises += 1
                return [self._gone(payload.order_id, payload.material, env.sender, env.conversation, env.id)]
            date = max(d, payload.needed_by)
            late = d > payload.needed_by
            self.late_promises += late
            reserved[payload.order_id] = [payload.quantity, date, env.sender]
            return [self.send(AtpConfirm(order_id=payload.order_id, material=payload.material, date=date, late=late,
                                         supplier=self.id), env.sender, env.conversation, env.id)]
        if isinstance(payload, AtpRelease):
            reserved = self.materials[payload.material]["reserved"]
            if payload.order_id in reserved and reserved[payload.order_id][2] == HOLD:
                del reserved[payload.order_id]
            return []
        if isinstance(payload, SupplierDelay):
            return self._delay(payload, env)
        raise ValueError(f"supplier cannot handle '{env.type}'")

    def _delay(self, ev: SupplierDelay, env: Envelope) -> list[Envelope]:
        """Receipts come later: re-check reservations in date order, tell the lines that are now late."""
        m = self.materials[ev.material]
        m["supply"] = [[t + ev.delay if t > 0 else t, q] for t, q in m["supply"]]
        out: list[Envelope] = []
        kept: dict[str, list[Any]] = {}
        for order, (qty, date, line) in sorted(m["reserved"].items(), key=lambda kv: kv[1][1]):
            d = available_date(m["supply"], [[dd, qq] for qq, dd, _ in kept.values()], qty, self.horizon)
            if d is None:  # gone beyond the horizon: drop it; a line that had it withdraws the order
                if line != HOLD:
                    self.late_promises += 1
                    out.append(self._gone(order, ev.material, line, f"delay:{order}", env.id))
            elif d > date and line == HOLD:  # not awarded yet: the winner will reserve (and learn the date) then
                kept[order] = [qty, d, line]
            elif d > date:
                kept[order] = [qty, d, line]
                self.late_promises += 1
                out.append(self.send(AtpConfirm(order_id=order, material=ev.material, date=d, late=True,
                                                supplier=self.id), line, f"delay:{order}", env.id))
            else:
                kept[order] = [qty, date, line]
        m["reserved"] = kept
        return out

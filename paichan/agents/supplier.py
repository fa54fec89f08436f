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

from collections.abc import Sequence

from paichan.agents.base import Agent, handles
from paichan.agents.messages import AtpConfirm, AtpPromise, AtpRelease, AtpRequest, AtpReserve, SupplierDelay
from paichan.agents.scenario import SupplierSpec, supplier_receipts
from paichan.agents.state import HOLD, MaterialBook, Reservation, SupplierState
from paichan.bus.envelope import Envelope

__all__ = ["HOLD", "SupplierAgent", "available_date"]


def available_date(supply: Sequence[tuple[float, float]], reservations: Sequence[tuple[float, float]], q: float,
                   horizon: int) -> int | None:
    """Earliest date from which ``q`` more can be taken without any later shortfall (None: not before
    the horizon, beyond which the supplier knows no supply). Both lists hold (time, quantity) pairs."""
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


class SupplierAgent(Agent):
    kind = "supplier"
    state_model = SupplierState
    st: SupplierState

    def __init__(self, spec: SupplierSpec, horizon: int) -> None:
        super().__init__(spec.id)
        self.horizon = horizon
        self.st = SupplierState(materials={
            m.id: MaterialBook(supply=[(0, m.stock), *supplier_receipts(m, horizon)]) for m in spec.materials})

    @property
    def materials(self) -> dict[str, MaterialBook]:
        """Per material: supply over time, holds and reservations."""
        return self.st.materials

    def _book(self, material: str) -> MaterialBook:
        """The material's book; a material this supplier does not supply is a handler error (dead letter)."""
        book = self.st.materials.get(material)
        if book is None:
            raise ValueError(f"supplier {self.id} does not supply '{material}'")
        return book

    def _date(self, book: MaterialBook, q: float, exclude: str | None = None) -> int | None:
        res = [(r.date, r.quantity) for o, r in book.reserved.items() if o != exclude]
        return available_date(book.supply, res, q, self.horizon)

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

    @handles(AtpRequest)
    def _on_request(self, env: Envelope, req: AtpRequest, now: float) -> list[Envelope]:
        book = self._book(req.material)
        held = book.reserved.get(req.order_id)
        if held is not None and held.line == HOLD and held.quantity == req.quantity:
            # another bidder for an order already held: the same promise (every later hold and promise
            # was computed with this one in place, so its date still holds). Cheap: a network asks once
            # per capable line, and escalation multiplies that by the plants.
            return [self._promise(req, env, held.date)]
        d = self._date(book, req.quantity, exclude=req.order_id)
        if d is not None and req.order_id not in book.reserved:  # hold it until the award replaces it
            book.reserved[req.order_id] = Reservation(quantity=req.quantity, date=d, line=HOLD)
        return [self._promise(req, env, d)]  # d None: not within the horizon, nothing held

    @handles(AtpReserve)
    def _on_reserve(self, env: Envelope, req: AtpReserve, now: float) -> list[Envelope]:
        book = self._book(req.material)
        d = self._date(book, req.quantity, exclude=req.order_id)
        if d is None:
            book.reserved.pop(req.order_id, None)
            self.st.late_promises += 1
            return [self._gone(req.order_id, req.material, env.sender, env.conversation, env.id)]
        date = max(d, req.needed_by)
        late = d > req.needed_by
        self.st.late_promises += late
        book.reserved[req.order_id] = Reservation(quantity=req.quantity, date=date, line=env.sender)
        return [self.send(AtpConfirm(order_id=req.order_id, material=req.material, date=date, late=late,
                                     supplier=self.id), env.sender, env.conversation, env.id)]

    @handles(AtpRelease)
    def _on_release(self, env: Envelope, rel: AtpRelease, now: float) -> list[Envelope]:
        reserved = self._book(rel.material).reserved
        held = reserved.get(rel.order_id)
        if held is not None and held.line == HOLD:
            del reserved[rel.order_id]
        return []

    @handles(SupplierDelay)
    def _on_delay(self, env: Envelope, ev: SupplierDelay, now: float) -> list[Envelope]:
        """Receipts come later: re-check reservations in date order, tell the lines that are now late."""
        book = self.st.materials[ev.material]
        book.supply = [(t + ev.delay if t > 0 else t, q) for t, q in book.supply]
        out: list[Envelope] = []
        kept: dict[str, Reservation] = {}
        for order, r in sorted(book.reserved.items(), key=lambda kv: kv[1].date):
            d = available_date(book.supply, [(k.date, k.quantity) for k in kept.values()], r.quantity, self.horizon)
            if d is None:  # gone beyond the horizon: drop it; a line that had it withdraws the order
                if r.line != HOLD:
                    self.st.late_promises += 1
                    out.append(self._gone(order, ev.material, r.line, f"delay:{order}", env.id))
            elif d > r.date and r.line == HOLD:  # not awarded yet: the winner will reserve (and learn the date) then
                kept[order] = Reservation(quantity=r.quantity, date=d, line=r.line)
            elif d > r.date:
                kept[order] = Reservation(quantity=r.quantity, date=d, line=r.line)
                self.st.late_promises += 1
                out.append(self.send(AtpConfirm(order_id=order, material=ev.material, date=d, late=True,
                                                supplier=self.id), r.line, f"delay:{order}", env.id))
            else:
                kept[order] = r
        book.reserved = kept
        return out

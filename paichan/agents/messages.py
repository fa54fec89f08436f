"""Payloads of the negotiation protocols (registered message types, version 1).

Contract net between a plant and its lines:
    plant --cfp--> lines;  line --bid|refuse--> plant;  plant --award--> winner, --reject--> others;
    winner --confirm--> plant (or --withdraw--> plant, which re-runs the call).
Escalation between plants (when no own line meets the due date):
    plant --escalate--> other plants; each runs its own call and answers --offer-- with its best bid;
    the origin awards (--award-- to the chosen plant, which awards its line) or rejects.
Available-to-promise with suppliers:
    plant --atp.request--> supplier --atp.promise--> plant, once per call and material, before the
    call for proposals, which carries the promised dates to every line (``material_dates``; a line
    given none asks the supplier itself: line --atp.request--> supplier --atp.promise--> line);
    line --atp.reserve--> supplier on award --atp.confirm--> line (may be later: the supplier says so).
    A supplier that cannot deliver within its horizon says so (``available=False``): the plant counts
    its lines as refusing (a line that asked itself refuses), or the line withdraws a committed order;
    a plant whose order failed sends --atp.release-->.
Shop-floor and supply disruptions reach agents as ``event.*`` messages.
Times in payloads are integer minutes from the scenario origin.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from paichan.bus.envelope import message


class _P(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_P):
    """One routing step of an order: which machine type, how long per unit, what material."""

    name: str
    machine_type: str
    minutes_per_unit: float = Field(gt=0)
    fixed_minutes: int = Field(default=0, ge=0)
    material: str | None = None
    material_per_unit: float = Field(default=0, ge=0)


class OrderSpec(_P):
    """A customer order as plants and lines see it."""

    id: str
    product: str
    quantity: int = Field(gt=0)
    release: int = Field(default=0, ge=0)
    due: int
    priority: int = Field(default=1, ge=0)
    plant: str
    steps: list[Step]

    def material_need(self) -> dict[str, float]:
        """Material -> quantity the whole order takes (every line making it needs the same)."""
        need: dict[str, float] = {}
        for st in self.steps:
            if st.material and st.material_per_unit > 0:
                need[st.material] = need.get(st.material, 0) + st.material_per_unit * self.quantity
        return need


@message("order.new")
class NewOrder(_P):
    order: OrderSpec


@message("cfp")
class CallForProposals(_P):
    order: OrderSpec
    round: int = 0
    origin_plant: str  # the plant that owns the order (differs from the sender on escalation)
    # material -> date its supplier promised to the calling plant (None: the line asks the supplier)
    material_dates: dict[str, int] | None = None


@message("bid")
class Bid(_P):
    order_id: str
    line: str
    plant: str
    completion: int
    tardiness: int
    cost: float  # weighted tardiness + a small price for disturbing the current plan
    disturbance: int  # minutes of already promised work that would move
    material_ready: int = 0


@message("refuse")
class Refuse(_P):
    order_id: str
    line: str
    reason: str


@message("award")
class Award(_P):
    order_id: str
    line: str
    round: int = 0


@message("reject")
class Reject(_P):
    order_id: str
    round: int = 0


class PlannedOp(_P):
    operation: int  # position in the order's routing
    machine: str
    start: int
    end: int


@message("confirm")
class Confirm(_P):
    order_id: str
    line: str
    plant: str
    completion: int
    operations: list[PlannedOp]


@message("withdraw")
class Withdraw(_P):
    order_id: str
    line: str
    reason: str


@message("update")
class ScheduleUpdate(_P):
    """A line's committed order moved (local replan after a disruption)."""

    order_id: str
    line: str
    plant: str
    completion: int
    operations: list[PlannedOp]
    reason: str


@message("escalate")
class Escalate(_P):
    order: OrderSpec
    round: int = 0


@message("offer")
class Offer(_P):
    """A plant's answer to an escalation: its best line's bid (or none)."""

    order_id: str
    plant: str
    bid: Bid | None
    round: int = 0


@message("atp.request")
class AtpRequest(_P):
    order_id: str
    material: str
    quantity: float = Field(gt=0)
    needed_by: int


@message("atp.promise")
class AtpPromise(_P):
    order_id: str
    material: str
    quantity: float
    date: int
    late: bool
    supplier: str
    available: bool = True  # False: the supplier cannot deliver the quantity within its planning horizon


@message("atp.reserve")
class AtpReserve(_P):
    order_id: str
    material: str
    quantity: float = Field(gt=0)
    needed_by: int


@message("atp.confirm")
class AtpConfirm(_P):
    order_id: str
    material: str
    date: int
    late: bool
    supplier: str
    available: bool = True  # False: no longer deliverable within the horizon; nothing is reserved


@message("atp.release")
class AtpRelease(_P):
    """The order failed (no line can make it): drop the supplier's hold for it."""

    order_id: str
    material: str


@message("event.machine_down")
class MachineDown(_P):
    machine: str
    start: int
    end: int


@message("event.supplier_delay")
class SupplierDelay(_P):
    material: str
    delay: int = Field(gt=0)


@message("control.replan")
class Replan(_P):
    """Ask a line to re-optimise its local schedule now (end of a negotiation wave, after moves)."""

    time_limit: float = 2.0
    reason: str = "planner request"


@message("revoke")
class Revoke(_P):
    """The plant moved a committed order elsewhere, or a booking it no longer wants (a confirmation that
    came after the plant had given up on it) exists: free its capacity."""

    order_id: str
    conversation: str | None = None  # only the booking made in this conversation (None: whatever is booked)


@message("control.improve")
class Improve(_P):
    """Ask a plant to re-call its late orders and move them where they do better."""

    max_orders: int = 1000

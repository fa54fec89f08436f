"""The agents' state as pydantic models: what each agent commits to the bus and is rebuilt from.

An agent's state is one model (:class:`PlantState`, :class:`LineState`,
:class:`SupplierState`) of nested models, validated once when the host restores
the agent from its last committed snapshot; handlers then work on typed
attributes and never re-validate. ``model_dump(mode="json", by_alias=True)`` is
the snapshot. Its JSON shape keeps the key names the runtime and the chaos
benchmark read from Redis (``orders``/``status``/``placed``/``ops``,
``events``/``event``/``from``/``to``, ``replans``, ``replan_at``, ``stale_awards``).

:class:`StateModel` also reads by field name (``rec["status"]``) and compares
equal to its plain JSON-like form (a dict, or for :class:`Reservation` a list):
inspection code and tests written against the JSON snapshot read the live state
the same way. Agent code uses attributes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from paichan.agents.messages import Bid, OrderSpec, PlannedOp

HOLD = "(hold)"  # the "line" of a supplier hold: promised to an order's bidders, not yet awarded


class StateModel(BaseModel):
    """Base of every state model: strict fields, names as in the committed JSON."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ------------------------------------------------------------------- shared
class PlacedOp(StateModel):
    """One step of an order on a machine (the state's copy of :class:`PlannedOp`)."""

    operation: int  # position in the order's routing
    machine: str
    start: int
    end: int

    def planned(self) -> PlannedOp:
        return PlannedOp(operation=self.operation, machine=self.machine, start=self.start, end=self.end)

    @classmethod
    def of(cls, op: PlannedOp) -> PlacedOp:
        return cls(operation=op.operation, machine=op.machine, start=op.start, end=op.end)


# -------------------------------------------------------------------- plant
PlantOrderStatus = Literal["queued", "calling", "moving", "escalating", "awarded", "confirmed", "failed"]


class Placement(StateModel):
    """Where a confirmed order sits, as its line last reported."""

    plant: str
    line: str
    completion: int
    operations: list[PlacedOp]


class PlantOrder(StateModel):
    """An order the plant owns."""

    spec: OrderSpec
    status: PlantOrderStatus = "queued"
    round: int = 0
    placed: Placement | None = None


class MoveFrom(StateModel):
    """A reallocation call: the line the order sits on and what it costs there."""

    line: str
    cost: float


class MoveCandidate(StateModel):
    """A late order the plant will re-call in its reallocation round."""

    order: str
    cost: float
    line: str


class Escalation(StateModel):
    """The other plants asked about a call, and their offers (None: the plant has no bid)."""

    expected: list[str]
    offers: dict[str, Bid | None] = Field(default_factory=dict)
    deadline: float
    decided: bool = False


class Awarded(StateModel):
    """The award a call waits on (``plant``/``via`` only for the owner's own calls)."""

    line: str
    plant: str | None = None
    via: str | None = None  # "own", or the plant whose offer won


class Call(StateModel):
    """An open call for proposals, for one of the plant's orders or on behalf of another plant."""

    spec: OrderSpec
    round: int
    for_plant: str | None  # the plant we run it for; None: our own order
    conv: str
    expected: list[str]  # lines asked
    bids: dict[str, Bid] = Field(default_factory=dict)
    refused: dict[str, str] = Field(default_factory=dict)  # line -> reason
    deadline: float | None
    escalation: Escalation | None = None
    best: Bid | None = None  # set when the call is decided
    move_from: MoveFrom | None = None
    awarded: Awarded | None = None
    waits: int = 0  # deadline extensions so far (nobody answered)
    opened: float = 0.0  # when the call was opened (epoch seconds): silence is waited out for a while
    sourcing: list[str] = Field(default_factory=list)  # materials whose promise the call still waits for
    dates: dict[str, int] = Field(default_factory=dict)  # material -> promised date (sent with the call)


class _Event(StateModel):
    order: str


class EscalateEvent(_Event):
    event: Literal["escalate"] = "escalate"
    best_own_cost: float | None
    move: bool


class FailedEvent(_Event):
    event: Literal["failed"] = "failed"
    refused: dict[str, str]


class MoveEvent(_Event):
    event: Literal["move"] = "move"
    from_line: str = Field(validation_alias="from", serialization_alias="from")
    to: str
    cost_before: float
    cost_after: float


class AwardEvent(_Event):
    event: Literal["award"] = "award"
    line: str
    plant: str
    via: str
    move: bool
    completion: int
    cost: float
    candidates: int


class RerunEvent(_Event):
    event: Literal["rerun"] = "rerun"
    why: str


class UpdateEvent(_Event):
    event: Literal["update"] = "update"
    line: str
    completion: int
    reason: str


class StaleConfirmEvent(_Event):
    event: Literal["stale_confirm"] = "stale_confirm"
    line: str
    conversation: str


class PlacedForEvent(_Event):
    event: Literal["placed_for"] = "placed_for"
    origin: str
    line: str
    conversation: str


PlantEvent = Annotated[EscalateEvent | FailedEvent | MoveEvent | AwardEvent | RerunEvent | UpdateEvent
                       | StaleConfirmEvent | PlacedForEvent, Field(discriminator="event")]


class PlantState(StateModel):
    """Everything a plant commits: its orders, open calls, call queue, reallocation candidates, decisions."""

    orders: dict[str, PlantOrder] = Field(default_factory=dict)
    calls: dict[str, Call] = Field(default_factory=dict)
    queue: list[str] = Field(default_factory=list)
    moves: list[MoveCandidate] = Field(default_factory=list)
    events: list[PlantEvent] = Field(default_factory=list)  # decisions, for the explanation log
    intake_until: float | None = None  # calls wait until the intake window closes


# --------------------------------------------------------------------- line
LineOrderStatus = Literal["waiting", "tentative", "committed"]


class Displacement(StateModel):
    """A committed order an open bid would move: from where, to where."""

    from_ops: list[PlacedOp] = Field(validation_alias="from", serialization_alias="from")
    to: list[PlacedOp]


class LineOrder(StateModel):
    """An order on the line: waiting for material dates, bid for (tentative, held) or committed."""

    spec: OrderSpec
    ops: list[PlacedOp] = Field(default_factory=list)
    status: LineOrderStatus
    plant: str  # who called it (and gets the confirmation and updates)
    conv: str
    cfp: str  # envelope id of the call, answered by the bid
    need: dict[str, float] = Field(default_factory=dict)  # material -> quantity
    dates: dict[str, int] = Field(default_factory=dict)  # material -> promised date
    material_ready: int = 0
    expires: float  # an unanswered bid's reservation is dropped after this (epoch seconds)
    displace: dict[str, Displacement] = Field(default_factory=dict)  # a CP-SAT bid moves these committed orders
    added_cost: float = 0.0  # weighted tardiness the bid adds to the displaced orders
    disturbance: int = 0  # minutes of committed work the bid moves

    def completion(self) -> int:
        return max(op.end for op in self.ops)


class LineState(StateModel):
    """Everything a line commits: its orders, breakdowns, clock and counters."""

    orders: dict[str, LineOrder] = Field(default_factory=dict)
    downtimes: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)  # machine -> breakdowns
    now: int = 0  # scenario minutes: nothing is placed before this
    replans: int = 0
    replan_at: float | None = None  # a local replan is due at this time (after late material)
    stale_awards: int = 0  # awards whose bid plan had gone stale and was re-placed


# ----------------------------------------------------------------- supplier
class Reservation(StateModel):
    """Material held (``line == HOLD``) or reserved for an order."""

    quantity: float
    date: int
    line: str


class MaterialBook(StateModel):
    """One material: supply over time and what is held or reserved from it."""

    supply: list[tuple[int, float]]  # (time, quantity) receipts; time 0 is the stock
    reserved: dict[str, Reservation] = Field(default_factory=dict)  # order -> reservation


class SupplierState(StateModel):
    """Everything a supplier commits."""

    materials: dict[str, MaterialBook]
    late_promises: int = 0

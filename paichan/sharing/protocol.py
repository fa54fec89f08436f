"""The bodies of the messages enterprises exchange: all that crosses an enterprise's boundary.

A contract net with sealed bids (docs/SHARING.md says why): sellers publish offers; a buyer sends
a request for one operation; the host passes it to the members whose offers match; each answers
the buyer alone with a sealed bid (price, promised completion) or a decline; the buyer awards one
bid, the seller accepts and the award becomes a public contract. No body carries an internal
order id, a customer, a schedule or another bidder's price: ids are random, times are the window
the operation needs and the completion promised.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Join(Body):
    public_key: str  # Ed25519, raw, base64


class Offer(Body):
    offer_id: str
    capabilities: list[str] = Field(min_length=1)
    window: tuple[int, int]
    price_per_minute: float = Field(gt=0)
    min_lot: int = Field(default=1, ge=1)


class Request(Body):
    request_id: str
    capability: str
    duration: int = Field(gt=0)
    quantity: int = Field(default=1, ge=1)
    earliest_start: int = Field(ge=0)  # the input is ready then (the buyer's preceding step is done)
    latest_finish: int  # later than this the slot is worth nothing to the buyer
    max_price: float = Field(gt=0)

    @model_validator(mode="after")
    def _window(self) -> Request:
        if self.latest_finish < self.earliest_start + self.duration:
            raise ValueError("latest_finish leaves no room for the duration after earliest_start")
        return self


class Routed(Body):  # host -> buyer: how many members were asked (not who)
    request_id: str
    asked: int = Field(ge=0)


class Bid(Body):
    request_id: str
    bid_id: str
    price: float = Field(gt=0)
    completion: int  # promised: the operation is done by then
    valid_until: float  # unix time; an unanswered bid lapses then and the seller frees the capacity


class Decline(Body):
    request_id: str


class Award(Body):
    award_id: str
    request_id: str
    bid_id: str
    seller: str


class RequestClosed(Body):
    request_id: str


class Accept(Body):
    award_id: str


class Refuse(Body):
    award_id: str
    reason: str = ""


class Compensation(Body):
    payer: str
    payee: str
    amount: float = Field(ge=0)


class Cancel(Body):
    award_id: str
    reason: str = ""
    compensation: Compensation | None = None  # set by the host when a binding contract is broken


class Contract(Body):  # host -> everyone: the public award (no price)
    award_id: str
    buyer: str
    seller: str
    capability: str
    completion: int


class Leave(Body):
    reason: str = ""


class Heartbeat(Body):
    pass


class Started(Body):  # host -> each member: everyone has joined and published its offers; trading may begin
    members: int = Field(ge=0)


class Closed(Body):
    reason: str = ""


BODIES: dict[str, type[Body]] = {
    "join": Join, "offer": Offer, "request": Request, "routed": Routed, "bid": Bid, "decline": Decline,
    "award": Award, "request_closed": RequestClosed, "accept": Accept, "refuse": Refuse, "cancel": Cancel,
    "contract": Contract, "leave": Leave, "heartbeat": Heartbeat, "started": Started, "closed": Closed,
}


class BadBody(ValueError):
    pass


def body(kind: str, data: dict[str, Any]) -> Body:
    """The validated body of a ``kind`` message; :class:`BadBody` names what is wrong."""
    cls = BODIES.get(kind)
    if cls is None:
        raise BadBody(f"unknown message kind '{kind}'")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise BadBody(f"{kind}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None

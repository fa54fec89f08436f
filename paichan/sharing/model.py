"""Sharing scenarios: enterprises, their private lines and orders, and what they put on the market.

Each enterprise's part becomes its own private :class:`~paichan.domain.Problem` (a flexible job
shop: an operation may run on any of the enterprise's lines that has its capability). Nothing
of it leaves the enterprise's agent except what the protocol sends (see docs/SHARING.md).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paichan.agents.scenario import load_yaml_model
from paichan.domain import Mode, Objective, ObjectiveName, Operation, Order, Problem, Resource

ID = r"^[A-Za-z0-9_-]{1,32}$"  # an enterprise id is one segment of a Redis key name


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineSpec(_S):
    """A production line (one machine in the private problem) and what it can do."""

    id: str = Field(min_length=1)
    capabilities: list[str] = Field(min_length=1)


class StepSpec(_S):
    capability: str
    duration: int = Field(gt=0)  # minutes on any capable line


class OrderSpec(_S):
    """A customer order: private; its id and customer never cross the boundary."""

    id: str = Field(min_length=1)
    customer: str = ""
    quantity: int = Field(default=1, gt=0)
    release: int = Field(default=0, ge=0)
    due: int = Field(ge=0)
    priority: int = Field(default=1, ge=1)
    steps: list[StepSpec] = Field(min_length=1)


class OfferSpec(_S):
    """Spare capacity put on the market: capabilities, a time window, a price and a minimum lot."""

    capabilities: list[str] = Field(min_length=1)
    window: tuple[int, int]
    price_per_minute: float = Field(gt=0)  # the list price, published with the offer
    floor_per_minute: float | None = Field(default=None, gt=0)  # private: the least it accepts (default: list)
    min_lot: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _window(self) -> OfferSpec:
        if self.window[0] < 0 or self.window[1] <= self.window[0]:
            raise ValueError("window must be [start, end] with 0 <= start < end")
        if self.floor_per_minute is not None and self.floor_per_minute > self.price_per_minute:
            raise ValueError("floor_per_minute must not exceed price_per_minute")
        return self

    def floor(self) -> float:
        return self.floor_per_minute if self.floor_per_minute is not None else self.price_per_minute


class BuyingPolicy(_S):
    """How much an enterprise may buy: at most ``max_requests`` requests, each at most this rate."""

    max_requests: int = Field(default=8, ge=0)
    max_price_per_minute: float = Field(default=10.0, gt=0)


class EnterpriseSpec(_S):
    id: str = Field(pattern=ID)
    name: str = ""
    tardiness_cost: float = Field(default=1.0, gt=0)  # money per weighted minute late
    lines: list[LineSpec] = Field(min_length=1)
    orders: list[OrderSpec] = Field(default_factory=list)
    offers: list[OfferSpec] = Field(default_factory=list)
    buying: BuyingPolicy = Field(default_factory=BuyingPolicy)

    @model_validator(mode="after")
    def _consistent(self) -> EnterpriseSpec:
        caps = {c for ln in self.lines for c in ln.capabilities}
        lines = [ln.id for ln in self.lines]
        if len(set(lines)) != len(lines):
            raise ValueError("line ids must be unique within an enterprise")
        orders = [o.id for o in self.orders]
        if len(set(orders)) != len(orders):
            raise ValueError("order ids must be unique within an enterprise")
        for o in self.orders:
            for s in o.steps:
                if s.capability not in caps:
                    raise ValueError(f"order {o.id}: no line of {self.id} has capability '{s.capability}'")
        for k, f in enumerate(self.offers):
            missing = set(f.capabilities) - caps
            if missing:
                raise ValueError(f"offers[{k}]: {self.id} has no line with {sorted(missing)}")
        return self

    def problem(self) -> Problem:
        """The enterprise's own scheduling problem (no sharing): minimise weighted tardiness."""
        return Problem(
            name=self.id,
            resources=[Resource(id=ln.id) for ln in self.lines],
            orders=[_order(self, o) for o in self.orders],
            objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 1}),
        )

    def capable(self, capability: str) -> list[str]:
        return [ln.id for ln in self.lines if capability in ln.capabilities]


def _order(ent: EnterpriseSpec, o: OrderSpec) -> Order:
    return Order(
        id=o.id, quantity=o.quantity, release=o.release, due=o.due, priority=o.priority,
        operations=[Operation(id=f"{o.id}/{k}", family=s.capability,
                              modes=[Mode(resource=r, duration=s.duration) for r in ent.capable(s.capability)])
                    for k, s in enumerate(o.steps)],
    )


class SharingScenario(_S):
    """Enterprises that share capacity in one session."""

    name: str = Field(default="sharing", pattern=ID)
    enterprises: list[EnterpriseSpec] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique(self) -> SharingScenario:
        ids = [e.id for e in self.enterprises]
        if len(set(ids)) != len(ids):
            raise ValueError(f"enterprise ids must be unique: {ids}")
        return self

    def enterprise(self, eid: str) -> EnterpriseSpec:
        for e in self.enterprises:
            if e.id == eid:
                return e
        raise KeyError(eid)

    def centralised_problem(self) -> Problem:
        """All enterprises as one company: every operation may run on any capable line of anyone.

        The bound on what sharing could achieve if privacy did not matter (bench/sharing.py).
        """
        resources = [Resource(id=f"{e.id}.{ln.id}") for e in self.enterprises for ln in e.lines]
        caps = {f"{e.id}.{ln.id}": set(ln.capabilities) for e in self.enterprises for ln in e.lines}
        orders = []
        for e in self.enterprises:
            for o in e.orders:
                orders.append(Order(
                    id=f"{e.id}.{o.id}", release=o.release, due=o.due, priority=o.priority,
                    operations=[Operation(id=f"{e.id}.{o.id}/{k}", family=s.capability,
                                          modes=[Mode(resource=r, duration=s.duration)
                                                 for r, c in caps.items() if s.capability in c])
                                for k, s in enumerate(o.steps)]))
        return Problem(name=f"{self.name}-centralised", resources=resources, orders=orders,
                       objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 1}))


class SharingScenarioError(ValueError):
    """A sharing scenario that cannot be used; the message names the file, line and field."""


def load_sharing(path: str | Path) -> SharingScenario:
    """Read and validate a sharing scenario YAML (errors name the file, the YAML line and the field)."""
    return load_yaml_model(path, SharingScenario, SharingScenarioError)

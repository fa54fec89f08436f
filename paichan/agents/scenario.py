"""Scenario files: a production network, its orders and scripted disruptions.

A scenario (YAML or JSON, schema: ``paichan scenario-schema``) names products
and their routings, plants with lines and machines, suppliers with stock,
receipts and replenishment capacity, the orders (listed or generated), and
disruptions to play once the network has planned. The same scenario also
builds one global :class:`~paichan.domain.Problem`, used by the centralised
baseline and by the checker to verify what the agents agreed on.
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from paichan.agents.messages import OrderSpec, Step
from paichan.domain import (
    Calendar,
    Downtime,
    DowntimeKind,
    Material,
    MaterialUse,
    Mode,
    Objective,
    ObjectiveName,
    Operation,
    Order,
    Problem,
    Receipt,
    Resource,
)
from paichan.domain.errors import validation_messages


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MachineSpec(_S):
    id: str
    type: str
    speed: float = Field(default=1.0, gt=0)


class LineSpec(_S):
    id: str
    calendar: str | None = None  # name in Scenario.calendars; None: around the clock
    machines: list[MachineSpec] = Field(min_length=1)


class PlantSpec(_S):
    id: str
    lines: list[LineSpec] = Field(min_length=1)


class Replenishment(_S):
    """Supplier production capacity: ``per_day`` units a day, first ones after ``lead_time``."""

    lead_time: int = Field(ge=0)
    per_day: float = Field(gt=0)


class ReceiptSpec(_S):
    time: int = Field(ge=0)
    quantity: float = Field(gt=0)


class SupplierMaterial(_S):
    id: str
    stock: float = Field(default=0, ge=0)
    receipts: list[ReceiptSpec] = Field(default_factory=list)
    replenish: Replenishment | None = None


class SupplierSpec(_S):
    id: str
    materials: list[SupplierMaterial]


class ProductSpec(_S):
    steps: list[Step] = Field(min_length=1)


class OrderEntry(_S):
    id: str
    product: str
    quantity: int = Field(gt=0)
    plant: str
    due: int
    release: int = Field(default=0, ge=0)
    priority: int = Field(default=1, ge=0)


class OrderGenerator(_S):
    """Deterministic random orders, spread over plants and products."""

    count: int = Field(gt=0)
    seed: int = 0
    quantity: tuple[int, int] = (5, 20)
    release_spread: int = Field(default=1440, ge=0)
    due_slack: tuple[int, int] = (1440, 4320)  # due = release + a value in this range
    priorities: list[int] = Field(default_factory=lambda: [1, 1, 2, 5])


class Disruption(_S):
    type: Literal["machine_down", "supplier_delay"]
    plant: str | None = None
    line: str | None = None
    machine: str | None = None
    start: int | None = None
    end: int | None = None
    supplier: str | None = None
    material: str | None = None
    delay: int | None = None

    @model_validator(mode="after")
    def _fields(self) -> Disruption:
        need = {"machine_down": ("plant", "line", "machine", "start", "end"),
                "supplier_delay": ("supplier", "material", "delay")}[self.type]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"{self.type} needs {', '.join(missing)}")
        return self


class Negotiation(_S):
    respond_timeout_s: float = Field(default=5.0, gt=0)
    wave: int = Field(default=20, gt=0)  # open calls for proposals per plant at once
    # a plant collects incoming orders this long before calling, so it calls them earliest due first
    intake_s: float = Field(default=0.5, ge=0)
    escalate: bool = True
    replan_time_limit: float = Field(default=2.0, gt=0)
    # a line whose gap insertion would be late also tries a CP-SAT insertion this long (0: never)
    bid_time_limit: float = Field(default=0.3, ge=0)
    improve_rounds: int = Field(default=2, ge=0)  # reallocation rounds for late orders
    hosting: Literal["per_agent", "per_plant"] = "per_plant"


class Scenario(_S):
    name: str
    origin: datetime | None = None
    calendars: dict[str, Calendar] = Field(default_factory=dict)
    products: dict[str, ProductSpec]
    plants: list[PlantSpec] = Field(min_length=1)
    suppliers: list[SupplierSpec] = Field(default_factory=list)
    orders: list[OrderEntry] = Field(default_factory=list)
    generate_orders: OrderGenerator | None = None
    disruptions: list[Disruption] = Field(default_factory=list)
    negotiation: Negotiation = Field(default_factory=Negotiation)
    horizon_days: int = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        plants = {p.id: p for p in self.plants}
        errors: list[str] = []
        for i, p in enumerate(self.plants):
            for j, line in enumerate(p.lines):
                if line.calendar is not None and line.calendar not in self.calendars:
                    errors.append(f"plants[{i}].lines[{j}].calendar: unknown calendar '{line.calendar}'")
        supplied = {m.id for s in self.suppliers for m in s.materials}
        for name, prod in self.products.items():
            for k, step in enumerate(prod.steps):
                if step.material is not None and step.material not in supplied:
                    errors.append(f"products.{name}.steps[{k}].material: no supplier has '{step.material}'")
                if not any(m.type == step.machine_type for p in self.plants for ln in p.lines for m in ln.machines):
                    errors.append(f"products.{name}.steps[{k}].machine_type: no machine of type "
                                  f"'{step.machine_type}' anywhere")
        for i, o in enumerate(self.orders):
            if o.product not in self.products:
                errors.append(f"orders[{i}].product: unknown product '{o.product}'")
            if o.plant not in plants:
                errors.append(f"orders[{i}].plant: unknown plant '{o.plant}'")
        for i, d in enumerate(self.disruptions):
            if d.type == "machine_down":
                lines = plants[d.plant].lines if d.plant in plants else []
                found = next((ln for ln in lines if ln.id == d.line), None)
                if found is None:
                    errors.append(f"disruptions[{i}]: unknown plant/line '{d.plant}/{d.line}'")
                elif not any(m.id == d.machine for m in found.machines):
                    errors.append(f"disruptions[{i}].machine: unknown machine '{d.machine}' on {d.plant}/{d.line}")
            elif not any(s.id == d.supplier and any(m.id == d.material for m in s.materials) for s in self.suppliers):
                errors.append(f"disruptions[{i}]: supplier '{d.supplier}' has no material '{d.material}'")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    # ------------------------------------------------------------------ derived
    def order_specs(self) -> list[OrderSpec]:
        """Listed orders plus generated ones, as the agents see them."""
        entries = list(self.orders)
        g = self.generate_orders
        if g is not None:
            rng = random.Random(g.seed)
            products = sorted(self.products)
            for k in range(g.count):
                release = rng.randint(0, g.release_spread)
                entries.append(OrderEntry(
                    id=f"G{k:05d}", product=rng.choice(products), quantity=rng.randint(*g.quantity),
                    plant=self.plants[k % len(self.plants)].id, release=release,
                    due=release + rng.randint(*g.due_slack), priority=rng.choice(g.priorities),
                ))
        return [OrderSpec(id=e.id, product=e.product, quantity=e.quantity, release=e.release, due=e.due,
                          priority=e.priority, plant=e.plant, steps=self.products[e.product].steps) for e in entries]

    def material_supplier(self) -> dict[str, str]:
        return {m.id: s.id for s in self.suppliers for m in s.materials}

    def line_calendar(self, line: LineSpec) -> Calendar:
        return self.calendars[line.calendar] if line.calendar else Calendar()


def step_minutes(step: Step, quantity: int, speed: float) -> int:
    """Processing minutes of a routing step for a quantity on a machine of a speed."""
    return max(1, math.ceil((step.fixed_minutes + step.minutes_per_unit * quantity) / speed))


def machine_id(plant: str, line: str, machine: str) -> str:
    return f"{plant}/{line}/{machine}"


def supplier_receipts(m: SupplierMaterial, horizon: int) -> list[tuple[int, float]]:
    """Scheduled receipts plus daily replenishment output up to the horizon."""
    out = [(r.time, r.quantity) for r in m.receipts]
    if m.replenish is not None:
        t = m.replenish.lead_time
        while t < horizon:
            out.append((t, m.replenish.per_day))
            t += 1440
    return sorted(out)


def scenario_delays(sc: Scenario) -> dict[str, int]:
    """Total supplier delay per material over the scenario's disruptions (what a run has played by its end)."""
    delays: dict[str, int] = {}
    for d in sc.disruptions:
        if d.type == "supplier_delay" and d.material and d.delay:
            delays[d.material] = delays.get(d.material, 0) + d.delay
    return delays


def global_problem(sc: Scenario, delays: dict[str, int] | None = None) -> Problem:
    """The whole network as one problem: an order runs on one line (``one_group``)."""
    horizon = sc.horizon_days * 1440
    resources: list[Resource] = []
    downs: dict[str, list[Downtime]] = {}
    for d in sc.disruptions:
        if d.type == "machine_down":
            assert d.plant and d.line and d.machine and d.start is not None and d.end is not None
            downs.setdefault(machine_id(d.plant, d.line, d.machine), []).append(
                Downtime(start=d.start, end=d.end, kind=DowntimeKind.BREAKDOWN, reason="scenario disruption"))
    by_type: dict[str, list[tuple[str, str, float]]] = {}
    for p in sc.plants:
        for line in p.lines:
            cal = sc.line_calendar(line)
            for m in line.machines:
                mid = machine_id(p.id, line.id, m.id)
                c = cal.model_copy(deep=True)
                c.downtimes = [*c.downtimes, *downs.get(mid, [])]
                resources.append(Resource(id=mid, calendar=c))
                by_type.setdefault(m.type, []).append((mid, f"{p.id}/{line.id}", m.speed))
    delays = delays or {}
    materials = []
    for s in sc.suppliers:
        for sm in s.materials:
            shift = delays.get(sm.id, 0)
            materials.append(Material(id=sm.id, stock=sm.stock, receipts=[
                Receipt(time=t + shift, quantity=q) for t, q in supplier_receipts(sm, horizon)]))
    orders = []
    modes_of: dict[tuple[str, int, int], list[Mode]] = {}
    for spec in sc.order_specs():
        ops = []
        for k, step in enumerate(spec.steps):
            # a large network has ~100 modes per operation, the same for every order of a product and quantity
            key = (spec.product, k, spec.quantity)
            if key not in modes_of:
                modes_of[key] = [Mode(resource=mid, duration=step_minutes(step, spec.quantity, speed), group=group)
                                 for mid, group, speed in by_type.get(step.machine_type, [])]
            modes = list(modes_of[key])
            uses = ([MaterialUse(material=step.material, quantity=step.material_per_unit * spec.quantity)]
                    if step.material and step.material_per_unit > 0 else [])
            ops.append(Operation(id=f"{spec.id}/{k}", name=step.name, modes=modes, materials=uses,
                                 can_span_breaks=True))
        orders.append(Order(id=spec.id, product=spec.product, quantity=spec.quantity, release=spec.release,
                            due=spec.due, priority=spec.priority, one_group=True, operations=ops))
    return Problem(name=sc.name, origin=sc.origin, time_unit="minute", resources=resources, orders=orders,
                   materials=materials,
                   objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 100, ObjectiveName.MAKESPAN: 1}))


def small_network(orders: int = 6, seed: int = 2, hosting: str = "per_plant", timeout_s: float = 5.0,
                  due_slack: tuple[int, int] = (30, 120), name: str = "tiny") -> Scenario:
    """Two plants (P1 with two lines, P2 with one fast cutter), one supplier of scarce sheet: small enough to
    run in seconds, tight enough that orders escalate and compete for material (tests, ``bench.chaos``)."""
    return Scenario.model_validate({
        "name": name,
        "horizon_days": 10,
        "products": {"box": {"steps": [
            {"name": "cut", "machine_type": "cut", "minutes_per_unit": 3, "material": "sheet", "material_per_unit": 1},
            {"name": "fold", "machine_type": "fold", "minutes_per_unit": 2}]}},
        "plants": [
            {"id": "P1", "lines": [
                {"id": "L1", "machines": [{"id": "C", "type": "cut"}, {"id": "F", "type": "fold"}]},
                {"id": "L2", "machines": [{"id": "C", "type": "cut", "speed": 0.5}, {"id": "F", "type": "fold"}]}]},
            {"id": "P2", "lines": [
                {"id": "L1", "machines": [{"id": "C", "type": "cut", "speed": 2}, {"id": "F", "type": "fold"}]}]},
        ],
        "suppliers": [{"id": "S1", "materials": [{"id": "sheet", "stock": 40, "receipts": [{"time": 200,
                                                                                             "quantity": 100}]}]}],
        "generate_orders": {"count": orders, "seed": seed, "quantity": [5, 15], "release_spread": 60,
                            "due_slack": list(due_slack)},
        "negotiation": {"respond_timeout_s": timeout_s, "wave": 3, "replan_time_limit": 1, "hosting": hosting},
    })


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names file and field."""


def yaml_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based YAML line of the deepest node on the field path ``loc`` (a missing field: its parent's line)."""
    if not loc:
        return None  # a whole-scenario check: its message names the record itself
    node, line = root, None
    for step in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(step)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
        else:
            node = None  # a union tag or the like in pydantic's path: stay where we are
    if node is not None:
        line = node.start_mark.line + 1
    return line


M = TypeVar("M", bound=BaseModel)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML; errors name the file, the YAML line and the field path."""
    return load_yaml_model(path, Scenario, ScenarioError)


def load_yaml_model(path: str | Path, model: type[M], error: type[Exception]) -> M:
    """Read a YAML file into ``model``; ``error`` names the file, the YAML line and the field path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from e
    try:
        return model.model_validate(data)
    except ValidationError as e:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        msgs = []
        for err, msg in zip(e.errors()[:30], validation_messages(e, 30), strict=True):
            line = yaml_line(root, err["loc"])
            msgs.append(f"line {line}: {msg}" if line is not None else msg)
        raise error(f"{path}: {e.error_count()} error(s):\n  - " + "\n  - ".join(msgs)) from e

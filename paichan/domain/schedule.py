"""Schedules (the answer) and their KPIs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ScheduledOperation(BaseModel):
    """Where and when one operation runs.

    ``end - start`` equals the mode duration, plus any break time the
    operation spans when its ``can_span_breaks`` allows that.
    ``setup_before`` is the changeover time reserved just before ``start``.
    """

    model_config = ConfigDict(extra="forbid")

    operation: str
    order: str
    resource: str
    mode: int = Field(ge=0)
    start: int
    end: int
    setup_before: int = Field(default=0, ge=0)


class Schedule(BaseModel):
    """One scheduled entry per operation of the problem."""

    model_config = ConfigDict(extra="forbid")

    problem: str = "problem"
    operations: list[ScheduledOperation] = Field(default_factory=list)

    def by_operation(self) -> dict[str, ScheduledOperation]:
        return {s.operation: s for s in self.operations}


class KPIs(BaseModel):
    """Key figures a planner reads first."""

    model_config = ConfigDict(extra="forbid")

    makespan: int
    weighted_tardiness: int
    total_tardiness: int
    late_orders: int
    total_setup: int
    utilisation: dict[str, float]  # busy time / makespan, per machine

"""Shared pydantic types: the problem, the schedule, KPIs and validation."""

from paichan.domain.problem import (
    Actual,
    Calendar,
    Downtime,
    DowntimeKind,
    Material,
    MaterialUse,
    Mode,
    Objective,
    ObjectiveName,
    Operation,
    OperationStatus,
    Order,
    Pin,
    Predecessor,
    Problem,
    Receipt,
    Resource,
    ResourceKind,
    SecondaryUse,
    SetupTime,
    TimeWindow,
    merge_windows,
)
from paichan.domain.schedule import KPIs, Schedule, ScheduledOperation
from paichan.domain.validation import Finding, ProblemError, find_problems, validate

__all__ = [
    "Actual", "Calendar", "Downtime", "DowntimeKind", "Finding", "KPIs", "Material", "MaterialUse",
    "Mode", "Objective", "ObjectiveName", "Operation", "OperationStatus", "Order", "Pin", "Predecessor",
    "Problem", "ProblemError", "Receipt", "Resource", "ResourceKind", "Schedule", "ScheduledOperation",
    "SecondaryUse", "SetupTime", "TimeWindow", "find_problems", "merge_windows", "validate",
]

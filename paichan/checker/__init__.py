"""Independent schedule feasibility checker (imports only :mod:`paichan.domain`).

Use :func:`check` for a full :class:`CheckReport` or :func:`assert_feasible` in
tests and benchmarks to fail loudly on the first infeasible schedule.
"""

from paichan.checker.check import (
    CheckReport,
    ScheduleInvalid,
    Violation,
    assert_feasible,
    check,
    compute_kpis,
)

__all__ = ["CheckReport", "ScheduleInvalid", "Violation", "assert_feasible", "check", "compute_kpis"]

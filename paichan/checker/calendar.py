"""The checker's own calendar expansion: when a resource does not work.

Written apart from :meth:`paichan.domain.Calendar.unavailable` (which the solver uses) and by a
different method, an event sweep over shift and downtime boundaries, so that a bug in one
expansion cannot hide behind the same bug in the other. Imports only domain types.
"""

from __future__ import annotations

from itertools import pairwise

from paichan.domain import Calendar


def non_working(calendar: Calendar, horizon: int) -> list[tuple[int, int]]:
    """Sorted, disjoint, non-touching half-open windows of ``[0, horizon)`` in which the resource does not work.

    Working time is the union of the shifts repeated every ``period`` from 0 (all the time when there are
    no shifts) minus the union of the downtimes.
    """
    if horizon <= 0:
        return []
    # +1/-1 counters of "inside a shift" and "inside a downtime" at every boundary in [0, horizon]
    shift_delta: dict[int, int] = {}
    down_delta: dict[int, int] = {}

    def bump(table: dict[int, int], start: int, end: int) -> None:
        lo, hi = max(0, start), min(horizon, end)
        if lo < hi:
            table[lo] = table.get(lo, 0) + 1
            table[hi] = table.get(hi, 0) - 1

    shifted = bool(calendar.shifts)
    if shifted:
        period = calendar.period
        assert period is not None  # the domain model requires a period with shifts
        for base in range(0, horizon, period):
            for w in calendar.shifts:
                bump(shift_delta, base + w.start, base + w.end)
    for d in calendar.downtimes:
        bump(down_delta, d.start, d.end)

    points = sorted({0, horizon, *shift_delta, *down_delta})
    out: list[tuple[int, int]] = []
    in_shift = in_down = 0
    for here, nxt in pairwise(points):
        in_shift += shift_delta.get(here, 0)
        in_down += down_delta.get(here, 0)
        idle = in_down > 0 or (shifted and in_shift == 0)
        if not idle:
            continue
        if out and out[-1][1] == here:
            out[-1] = (out[-1][0], nxt)
        else:
            out.append((here, nxt))
    return out

"""Public placement primitives of the solver, for callers outside it (the line agents).

A line agent bids by inserting an order's steps into its current plan, with the
same calendar arithmetic the solver's heuristics use. These two functions are
that arithmetic's stable surface, so the agents never import solver internals
(``heuristic``, ``timing``), which the solver is free to rework.

Shared conventions: times are integer minutes; ``windows`` is a sorted list of
disjoint unavailable ``(start, end)`` intervals of one machine (e.g.
``merge_windows(calendar.unavailable(horizon) + breakdowns)``) and ``ends`` the
list of their end times; ``span`` says whether work may pause over an unavailable
window (True) or must fit in one available stretch (False).
"""

from __future__ import annotations

from paichan.solver.heuristic import gap_start as _gap_start
from paichan.solver.timing import place as _place

__all__ = ["gap_start", "place"]


def place(windows: list[tuple[int, int]], ends: list[int], t: int, duration: int, span: bool) -> tuple[int, int]:
    """(start, end) of the earliest placement of ``duration`` minutes of work at or after ``t`` under the
    calendar ``windows``; with ``span`` the work pauses over unavailable windows, so ``end - start`` may
    exceed ``duration``."""
    return _place(windows, ends, t, duration, span)


def gap_start(busy: list[tuple[int, int]], t: int, duration: int, windows: list[tuple[int, int]], ends: list[int],
              span: bool) -> int:
    """Earliest start at or after ``t`` whose calendar placement (see :func:`place`) overlaps none of the
    ``busy`` intervals. ``busy`` must be sorted and disjoint (merge overlapping intervals first): the search
    only looks at the neighbours of a start, so an interval hidden behind a longer earlier one is missed."""
    return _gap_start(busy, t, duration, windows, ends, span)

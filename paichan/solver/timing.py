"""Calendar arithmetic on sorted, merged non-working windows."""

from __future__ import annotations

from bisect import bisect_right


def _first_window_ending_after(windows: list[tuple[int, int]], ends: list[int], t: int) -> int:
    return bisect_right(ends, t)


def fit_start(windows: list[tuple[int, int]], ends: list[int], t: int, duration: int) -> int:
    """Earliest start >= t such that ``[start, start+duration)`` avoids every window."""
    if duration == 0 or not windows:
        return t
    i = _first_window_ending_after(windows, ends, t)
    while i < len(windows):
        s, e = windows[i]
        if s >= t + duration:
            return t
        t = max(t, e)
        i += 1
    return t


def span_end(windows: list[tuple[int, int]], ends: list[int], t: int, duration: int) -> tuple[int, int]:
    """(start, end) of an operation that may pause over breaks, starting at or after t.

    The start is moved out of any window it falls in; the end is the first
    instant at which ``duration`` of working time has elapsed.
    """
    if not windows:
        return t, t + duration
    i = _first_window_ending_after(windows, ends, t)
    if i < len(windows) and windows[i][0] <= t:
        t = windows[i][1]
        i += 1
    if duration == 0:
        return t, t
    remaining = duration
    cur = t
    while i < len(windows):
        s, e = windows[i]
        if s - cur >= remaining:
            return t, cur + remaining
        remaining -= s - cur
        cur = e
        i += 1
    return t, cur + remaining


def place(windows: list[tuple[int, int]], ends: list[int], t: int, duration: int, span: bool) -> tuple[int, int]:
    """(start, end) of the earliest placement at or after t under the calendar."""
    if span:
        return span_end(windows, ends, t, duration)
    s = fit_start(windows, ends, t, duration)
    return s, s + duration

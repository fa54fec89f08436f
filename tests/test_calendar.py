"""Calendar expansion, twice: the domain's (the solver's) and the checker's own, against a minute-by-minute mask.

Small random calendars (period, shifts, downtimes, horizon) are expanded both ways and compared with
the non-working runs of a brute-force mask, so neither expansion can share a bug with the other.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from paichan.checker.calendar import non_working
from paichan.domain import Calendar, Downtime, TimeWindow


@st.composite
def calendars(draw: st.DrawFn) -> tuple[Calendar, int]:
    period = draw(st.integers(1, 40))
    shifts = []
    for _ in range(draw(st.integers(0, 3))):
        s = draw(st.integers(0, period - 1))
        shifts.append(TimeWindow(start=s, end=draw(st.integers(s + 1, period))))
    downs = []
    for _ in range(draw(st.integers(0, 3))):
        s = draw(st.integers(-20, 150))
        downs.append(Downtime(start=s, end=draw(st.integers(s + 1, s + 60))))
    with_period = bool(shifts) or draw(st.booleans())
    cal = Calendar(period=period if with_period else None, shifts=shifts, downtimes=downs)
    return cal, draw(st.integers(1, 160))


def mask_windows(cal: Calendar, horizon: int) -> list[tuple[int, int]]:
    """Non-working runs of a minute-by-minute mask: the definition, with no cleverness."""
    def works(t: int) -> bool:
        in_shift = not cal.shifts or any(w.start <= t % cal.period < w.end for w in cal.shifts)  # type: ignore[operator]
        return in_shift and not any(d.start <= t < d.end for d in cal.downtimes)

    out: list[tuple[int, int]] = []
    for t in range(horizon):
        if works(t):
            continue
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + 1)
        else:
            out.append((t, t + 1))
    return out


@settings(max_examples=400, deadline=None)
@given(calendars())
def test_domain_calendar_matches_the_mask(case: tuple[Calendar, int]) -> None:
    cal, horizon = case
    assert cal.unavailable(horizon) == mask_windows(cal, horizon)


@settings(max_examples=400, deadline=None)
@given(calendars())
def test_checker_calendar_matches_the_mask(case: tuple[Calendar, int]) -> None:
    cal, horizon = case
    assert non_working(cal, horizon) == mask_windows(cal, horizon)


def test_a_night_shift_and_a_holiday() -> None:
    cal = Calendar(period=24, shifts=[TimeWindow(start=6, end=14), TimeWindow(start=14, end=22)],
                   downtimes=[Downtime(start=30, end=40)])
    expected = [(0, 6), (22, 40), (46, 54)]
    assert non_working(cal, 54) == expected == cal.unavailable(54) == mask_windows(cal, 54)

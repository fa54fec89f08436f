"""Parsing of the values adapters meet: durations, date-times, quantities, units.

ERP, MES and WMS data carry durations in ISO-8601 (``PT1H30M``) or as numbers with a unit,
date-times with or without UTC offsets, and quantities as strings with a data type and unit.
Every parser here returns canonical values (minutes, aware UTC date-times, floats in a target
unit) or raises :class:`ValueError` with a message a planner can act on; callers attach the
file and record and reject the record.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Duration units -> minutes. UN/CEFACT Rec. 20 codes (SEC, MIN, HUR, DAY) are what SAP-style senders use.
DURATION_UNITS: dict[str, float] = {
    "s": 1 / 60, "sec": 1 / 60, "secs": 1 / 60, "second": 1 / 60, "seconds": 1 / 60, "SEC": 1 / 60,
    "min": 1.0, "mins": 1.0, "minute": 1.0, "minutes": 1.0, "MIN": 1.0,
    "h": 60.0, "hr": 60.0, "hrs": 60.0, "hour": 60.0, "hours": 60.0, "HUR": 60.0,
    "d": 1440.0, "day": 1440.0, "days": 1440.0, "DAY": 1440.0,
}
_AMBIGUOUS_DURATION_UNITS = {"m": "minutes or months", "M": "minutes or months", "mo": "months", "y": "years"}

# Quantity units -> (dimension, factor to the dimension's base unit). Case-insensitive lookup.
QUANTITY_UNITS: dict[str, tuple[str, float]] = {
    "kg": ("mass", 1.0), "kgm": ("mass", 1.0), "g": ("mass", 1e-3), "grm": ("mass", 1e-3),
    "mg": ("mass", 1e-6), "mgm": ("mass", 1e-6), "t": ("mass", 1e3), "tne": ("mass", 1e3),
    "lb": ("mass", 0.45359237), "lbr": ("mass", 0.45359237),
    "l": ("volume", 1.0), "ltr": ("volume", 1.0), "ml": ("volume", 1e-3), "mlt": ("volume", 1e-3),
    "m3": ("volume", 1e3), "mtq": ("volume", 1e3),
    "ea": ("count", 1.0), "pc": ("count", 1.0), "pcs": ("count", 1.0), "pce": ("count", 1.0),
    "st": ("count", 1.0), "c62": ("count", 1.0), "unit": ("count", 1.0), "units": ("count", 1.0),
}

_ISO_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<Y>\d+(?:\.\d+)?)Y)?(?:(?P<Mo>\d+(?:\.\d+)?)M)?(?:(?P<W>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<D>\d+(?:\.\d+)?)D)?(?:T(?:(?P<H>\d+(?:\.\d+)?)H)?(?:(?P<Mi>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<S>\d+(?:\.\d+)?)S)?)?$"
)
_NUMBER_UNIT = re.compile(r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[A-Za-z][A-Za-z0-9]*)?$")
_CLOCK = re.compile(r"^(?P<h>\d{1,3}):(?P<m>\d{2})(?::(?P<s>\d{2}))?$")

_INT_TYPES = {"int", "integer", "long", "short", "byte", "unsignedInt", "unsignedLong", "unsignedShort",
              "unsignedByte", "positiveInteger", "negativeInteger", "nonNegativeInteger", "nonPositiveInteger"}
_DECIMAL_TYPES = {"decimal", "Numeric", "Amount", "Quantity", "Measure"}
_FLOAT_TYPES = {"double", "float"}
_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_FLOAT_RE = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?INF|NaN)$")
_INT_RE = re.compile(r"^[+-]?\d+$")


def parse_duration(text: str, unit: str | None = None, default_unit: str = "min") -> float:
    """Duration in minutes from ``PT1H30M``, ``90 min``, ``1.5h``, ``01:30`` or a number in ``unit``.

    A bare number is in ``unit`` (e.g. a unit column), else in ``default_unit``. Months and
    years are refused: they have no fixed length. Negative durations are refused.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if s.startswith(("P", "-P")):
        return _iso_duration(s)
    clock = _CLOCK.match(s)
    if clock:
        if unit:
            raise ValueError(f"duration '{s}' is a clock value (h:mm) but a unit '{unit}' is given as well")
        return int(clock["h"]) * 60 + int(clock["m"]) + int(clock["s"] or 0) / 60
    m = _NUMBER_UNIT.match(s)
    if not m:
        raise ValueError(f"'{s}' is not a duration (examples: PT1H30M, 90 min, 1.5h, 5400 s, 01:30)")
    value = float(m["num"])
    inline = m["unit"]
    if inline and unit and unit.strip() and duration_factor(inline) != duration_factor(unit):
        raise ValueError(f"duration '{s}' carries unit '{inline}' but the unit field says '{unit}'")
    factor = duration_factor(inline or (unit.strip() if unit and unit.strip() else default_unit))
    if value < 0:
        raise ValueError(f"negative duration '{s}'")
    return value * factor


def duration_factor(unit: str) -> float:
    """Minutes per ``unit``; ISO-style codes and plain words are accepted, anything else refused."""
    u = unit.strip()
    if u in DURATION_UNITS:
        return DURATION_UNITS[u]
    if u.lower() in DURATION_UNITS:
        return DURATION_UNITS[u.lower()]
    if u in _AMBIGUOUS_DURATION_UNITS:
        raise ValueError(f"ambiguous duration unit '{u}' ({_AMBIGUOUS_DURATION_UNITS[u]}?): write min, h or s")
    raise ValueError(f"unknown duration unit '{u}' (known: s, min, h, d, SEC, MIN, HUR, DAY or ISO-8601 like PT1H30M)")


def _iso_duration(s: str) -> float:
    m = _ISO_DURATION.match(s)
    if not m or s in ("P", "-P") or s.endswith("T"):
        raise ValueError(f"'{s}' is not an ISO-8601 duration (example: PT1H30M)")
    if m["sign"]:
        raise ValueError(f"negative duration '{s}'")
    if (m["Y"] and float(m["Y"])) or (m["Mo"] and float(m["Mo"])):
        raise ValueError(f"duration '{s}' uses years or months, which have no fixed length")
    parts = {"W": 10080.0, "D": 1440.0, "H": 60.0, "Mi": 1.0, "S": 1 / 60}
    return sum(float(m[k]) * f for k, f in parts.items() if m[k])


def iso_duration(minutes: float) -> str:
    """ISO-8601 duration for a number of minutes (``PT1H30M``; ``PT0S`` for zero)."""
    total = round(minutes * 60)
    h, rest = divmod(total, 3600)
    mi, sec = divmod(rest, 60)
    out = "PT" + (f"{h}H" if h else "") + (f"{mi}M" if mi else "") + (f"{sec}S" if sec else "")
    return out if out != "PT" else "PT0S"


def parse_tz(name: str) -> tzinfo:
    """``UTC``, a fixed offset (``+01:00``) or an IANA zone name (``Europe/Paris``)."""
    s = name.strip()
    if s.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.match(r"^([+-])(\d{2}):?(\d{2})$", s)
    if m:
        delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
        return timezone(-delta if m[1] == "-" else delta)
    try:
        return ZoneInfo(s)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone '{s}' (use UTC, +01:00 or a name like Europe/Paris)") from e


def parse_datetime(text: str, assume_tz: tzinfo = UTC) -> tuple[datetime, bool]:
    """Aware UTC date-time from ISO-8601 text; the flag says the text had no offset.

    Offsets (``+02:00``, ``Z``) are honoured; text without one is read in ``assume_tz``.
    More than six fractional digits (.NET senders write seven) are cut to microseconds.
    """
    s = text.strip()
    s2 = re.sub(r"(\.\d{6})\d+", r"\1", s)
    try:
        dt = datetime.fromisoformat(s2)
    except ValueError:
        raise ValueError(f"'{s}' is not an ISO-8601 date-time (example: 2019-04-24T15:00:00Z)") from None
    naive = dt.tzinfo is None
    if naive:
        dt = dt.replace(tzinfo=assume_tz)
    return dt.astimezone(UTC), naive


def check_typed_value(text: str, data_type: str | None) -> None:
    """Refuse a B2MML QuantityString/ValueString that does not parse as its DataType.

    The XSD types these as free strings, so a schema-valid message can say
    ``<QuantityString>41fs.9</QuantityString><DataType>double</DataType>``.
    """
    if not data_type:
        return
    s = text.strip()
    if data_type in _INT_TYPES and not _INT_RE.match(s):
        raise ValueError(f"'{text}' is not a valid {data_type}")
    if data_type in _DECIMAL_TYPES and not _DECIMAL_RE.match(s):
        raise ValueError(f"'{text}' is not a valid {data_type}")
    if data_type in _FLOAT_TYPES and not _FLOAT_RE.match(s):
        raise ValueError(f"'{text}' is not a valid {data_type}")
    if data_type == "boolean" and s not in ("true", "false", "1", "0"):
        raise ValueError(f"'{text}' is not a valid boolean (true, false, 1 or 0)")
    if data_type in ("dateTime", "DateTime"):
        parse_datetime(s)
    if data_type == "duration":
        _iso_duration(s)


def parse_quantity(text: str | float | int, data_type: str | None = None) -> tuple[float, str]:
    """A non-negative finite number and any unit written after it (``"12.5 kg"`` -> (12.5, "kg")).

    Decimal commas are refused on purpose: ``1,500`` is 1.5 in Paris and 1500 in London.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is a boolean, not a quantity")
    if isinstance(text, int | float):
        value, unit = float(text), ""
    else:
        s = text.strip()
        if data_type == "boolean":
            raise ValueError(f"'{s}' has DataType boolean, not a quantity")
        check_typed_value(s, data_type)
        if "," in s:
            raise ValueError(f"quantity '{s}' has a comma: write a dot as the decimal separator and no thousands"
                             " separator")
        m = re.match(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z][A-Za-z0-9/]*)?$", s)
        if not m:
            raise ValueError(f"'{s}' is not a number")
        value, unit = float(m[1]), m[2] or ""
    if not math.isfinite(value):
        raise ValueError(f"quantity {text!r} is not finite")
    if value < 0:
        raise ValueError(f"negative quantity {text!r}")
    return value, unit


def convert_quantity(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``; same names pass through, others must be known."""
    f, t = from_unit.strip(), to_unit.strip()
    if not f or not t or f.lower() == t.lower():
        return value
    a, b = QUANTITY_UNITS.get(f.lower()), QUANTITY_UNITS.get(t.lower())
    if a is None or b is None:
        unknown = f if a is None else t
        raise ValueError(f"cannot convert {f} to {t}: unknown unit '{unknown}'")
    if a[0] != b[0]:
        raise ValueError(f"cannot convert {f} ({a[0]}) to {t} ({b[0]})")
    return value * a[1] / b[1]


UNIT_MINUTES = {"minute": 1.0, "second": 1 / 60, "hour": 60.0}


def minutes_to_units(minutes: float, time_unit: str, rounding: str = "up") -> int:
    """Minutes in the problem's integer time units, rounded ``up``, ``down`` or to ``nearest``."""
    x = minutes / UNIT_MINUTES[time_unit]
    if abs(x - round(x)) < 1e-9:
        return round(x)
    return math.ceil(x) if rounding == "up" else math.floor(x) if rounding == "down" else round(x)


def as_utc(dt: datetime) -> datetime:
    """Aware UTC copy; naive date-times (e.g. an origin written without offset) are taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso_utc(dt: datetime) -> str:
    """``2019-04-24T15:00:00Z`` (seconds precision, UTC)."""
    return as_utc(dt).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Readers for the standard job-shop (OR-Library) and flexible job-shop (FJSPLIB) files.

Both build a plain :class:`~paichan.domain.Problem` with fixed naming that the
benchmarks and peer solvers rely on: machines ``m0..m{m-1}`` (0-based, even
for FJSP files whose machines are 1-based), orders ``j0..j{n-1}`` in file
order and operations ``j{j}.{k}`` in routing order (linear routing, so
``predecessors=None``). Errors name the file, the 1-based line, and what was
expected versus found, so a broken instance file can be fixed by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from paichan.domain import Mode, Operation, Order, Problem, Resource

__all__ = [
    "InstanceFormatError",
    "instance_indices",
    "machine_index",
    "read_fjsp",
    "read_instance",
    "read_jssp",
]


class InstanceFormatError(ValueError):
    """An instance file that does not match its format; names file and line."""

    def __init__(self, path: str | Path, line: int, message: str):
        self.path = str(path)
        self.line = line
        self.detail = message
        super().__init__(f"{self.path} line {line}: {message}")


_Lines = list[tuple[int, list[str]]]  # (1-based line number, tokens) of non-empty lines


def _lines(path: str | Path) -> _Lines:
    text = Path(path).read_text(encoding="utf-8")
    return [(no, line.split()) for no, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _int(path: str | Path, line: int, token: str, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise InstanceFormatError(path, line, f"expected an integer {what}, found {token!r}") from None


def _header(path: str | Path, lines: _Lines, allowed: tuple[int, ...], shape: str) -> tuple[int, int, int]:
    """Parse ``n m [...]``; returns (n, m, line number of the header)."""
    if not lines:
        raise InstanceFormatError(path, 1, f"expected a header '{shape}', found an empty file")
    no, toks = lines[0]
    if len(toks) not in allowed:
        found = f"{len(toks)} token(s): {' '.join(toks)}"
        raise InstanceFormatError(path, no, f"expected a header '{shape}', found {found}")
    n = _int(path, no, toks[0], "job count n")
    m = _int(path, no, toks[1], "machine count m")
    if len(toks) > 2:  # FJSP average flexibility: informational, but must be a number
        try:
            float(toks[2])
        except ValueError:
            raise InstanceFormatError(path, no, f"expected a number (average machines), found {toks[2]!r}") from None
    if n < 1 or m < 1:
        raise InstanceFormatError(path, no, f"expected n >= 1 and m >= 1, found n={n}, m={m}")
    return n, m, no


def _job_lines(path: str | Path, lines: _Lines, n: int) -> _Lines:
    """The ``n`` job lines after the header; errors on missing or extra ones."""
    jobs = lines[1:]
    if len(jobs) < n:
        last = jobs[-1][0] if jobs else lines[0][0]
        raise InstanceFormatError(path, last + 1, f"expected {n} job lines, found {len(jobs)} (file ends early)")
    if len(jobs) > n:
        no, toks = jobs[n]
        raise InstanceFormatError(path, no, f"expected end of file after {n} job lines, found an extra line: "
                                  f"{' '.join(toks[:8])}{' ...' if len(toks) > 8 else ''}")
    return jobs


def _machine(path: str | Path, no: int, token: str, m: int, base: int, where: str) -> int:
    i = _int(path, no, token, f"machine ({where})")
    if not base <= i < m + base:
        raise InstanceFormatError(path, no, f"expected a machine in {base}..{m - 1 + base}, found {i} ({where})")
    return i - base


def _duration(path: str | Path, no: int, token: str, where: str) -> int:
    d = _int(path, no, token, f"duration ({where})")
    if d < 0:
        raise InstanceFormatError(path, no, f"expected a duration >= 0, found {d} ({where})")
    return d


def _problem(path: str | Path, m: int, routings: list[list[list[tuple[int, int]]]]) -> Problem:
    """routings[j][k] = list of (machine, duration) alternatives of operation k of job j."""
    return Problem(
        name=Path(path).stem,
        time_unit="unit",
        resources=[Resource(id=f"m{i}") for i in range(m)],
        orders=[
            Order(
                id=f"j{j}",
                operations=[
                    Operation(id=f"j{j}.{k}", modes=[Mode(resource=f"m{i}", duration=d) for i, d in alts])
                    for k, alts in enumerate(ops)
                ],
            )
            for j, ops in enumerate(routings)
        ],
    )


def read_jssp(path: str | Path) -> Problem:
    """Read an OR-Library job-shop file: ``n m`` then n lines of m ``machine duration`` pairs (0-based)."""
    lines = _lines(path)
    n, m, _ = _header(path, lines, (2,), "n m")
    routings: list[list[list[tuple[int, int]]]] = []
    for j, (no, toks) in enumerate(_job_lines(path, lines, n)):
        if len(toks) != 2 * m:
            raise InstanceFormatError(
                path, no, f"expected {2 * m} integers ({m} machine/duration pairs), found {len(toks)}"
            )
        ops = []
        for k in range(m):
            where = f"job {j}, pair {k + 1}"
            i = _machine(path, no, toks[2 * k], m, 0, where)
            ops.append([(i, _duration(path, no, toks[2 * k + 1], where))])
        routings.append(ops)
    return _problem(path, m, routings)


def read_fjsp(path: str | Path) -> Problem:
    """Read a Brandimarte/FJSPLIB file: ``n m [avg]`` then per job ``k`` and k ops ``c (machine time)*c`` (1-based)."""
    lines = _lines(path)
    n, m, _ = _header(path, lines, (2, 3), "n m [avg]")
    routings: list[list[list[tuple[int, int]]]] = []
    for j, (no, toks) in enumerate(_job_lines(path, lines, n)):
        pos = 0

        def take(what: str, toks: list[str] = toks, no: int = no) -> str:
            nonlocal pos
            if pos >= len(toks):
                raise InstanceFormatError(path, no, f"expected {what} at token {pos + 1}, found end of line "
                                          f"({len(toks)} tokens)")
            pos += 1
            return toks[pos - 1]

        k = _int(path, no, take("the operation count"), f"operation count (job {j})")
        if k < 1:
            raise InstanceFormatError(path, no, f"expected an operation count >= 1, found {k} (job {j})")
        ops = []
        for op in range(k):
            where = f"job {j}, operation {op + 1}"
            c = _int(path, no, take(f"the machine count of operation {op + 1}"), f"machine count ({where})")
            if c < 1:
                raise InstanceFormatError(path, no, f"expected a machine count >= 1, found {c} ({where})")
            alts = []
            for a in range(c):
                at = f"{where}, alternative {a + 1}"
                i = _machine(path, no, take(f"a machine ({at})"), m, 1, at)
                alts.append((i, _duration(path, no, take(f"a duration ({at})"), at)))
            ops.append(alts)
        if pos != len(toks):
            raise InstanceFormatError(
                path, no, f"expected {pos} tokens for {k} operations (job {j}), found {len(toks)}"
            )
        routings.append(ops)
    return _problem(path, m, routings)


def read_instance(path: str | Path, fmt: Literal["jssp", "fjsp"]) -> Problem:
    """Read ``path`` in the given format."""
    if fmt == "jssp":
        return read_jssp(path)
    if fmt == "fjsp":
        return read_fjsp(path)
    raise ValueError(f"unknown instance format {fmt!r}; expected 'jssp' or 'fjsp'")


_OP_ID = re.compile(r"j(\d+)\.(\d+)")
_MACHINE_ID = re.compile(r"m(\d+)")


def instance_indices(op_id: str) -> tuple[int, int]:
    """``"j3.4"`` -> ``(3, 4)``: job and routing position of a reader-made operation id."""
    match = _OP_ID.fullmatch(op_id)
    if match is None:
        raise ValueError(f"expected an operation id like 'j3.4', found {op_id!r}")
    return int(match.group(1)), int(match.group(2))


def machine_index(resource_id: str) -> int:
    """``"m7"`` -> ``7``: the 0-based machine index of a reader-made resource id."""
    match = _MACHINE_ID.fullmatch(resource_id)
    if match is None:
        raise ValueError(f"expected a machine id like 'm7', found {resource_id!r}")
    return int(match.group(1))

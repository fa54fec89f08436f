"""Shared pieces of the command line: the user-facing error and problem loading."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from paichan.domain import Problem


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def load_problem(path: Path) -> Problem:
    """Read a problem.json, naming the file and field of any error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CliError(f"{path}: cannot read ({e.strerror})") from e
    try:
        return Problem.model_validate_json(text)
    except ValidationError as e:
        lines = [f"{path}: {len(e.errors())} error(s) in the problem file:"]
        for err in e.errors()[:50]:
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  - {loc}: {err['msg']}")
        raise CliError("\n".join(lines)) from e

"""One way to turn a pydantic ``ValidationError`` into user-facing text.

Every layer reads input through pydantic models (problem files, scenarios, bus payloads,
adapter records); each names the file or record itself and asks here for the field paths and
messages, so the same error reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


def field_path(loc: Sequence[int | str], top: str = "(top level)") -> str:
    """A pydantic ``loc`` as ``orders.0.operations``; ``top`` when the error is about the whole value."""
    return ".".join(str(x) for x in loc) or top


def validation_messages(e: ValidationError, limit: int | None = None, top: str = "(top level)") -> list[str]:
    """One ``'field.path: message'`` per error (the first ``limit`` of them)."""
    errors = e.errors(include_url=False)
    return [f"{field_path(err['loc'], top)}: {err['msg']}" for err in errors[:limit]]


def first_validation_message(e: ValidationError, top: str = "(top level)") -> str:
    """The first error on one line, with how many more there are: ``'due: ... (and 2 more)'``."""
    n = e.error_count()
    return validation_messages(e, 1, top)[0] + (f" (and {n - 1} more)" if n > 1 else "")

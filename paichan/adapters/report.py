"""The import report: what was read, what was missing (and where it came from), what was rejected.

Nothing an adapter reads is dropped silently. Every record ends up either in the problem or
in ``rejected`` with its file, location (``line N`` for CSV, an XPath plus line for XML) and
reason; values a message lacked are listed in ``missing`` with the master-data row that filled
them (or none, and then the record is rejected too); elements that were read but not used
for scheduling are counted in ``ignored``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a record or value was read: file and location inside it."""

    file: str
    where: str = ""  # "line 12" or "/SyncProductionSchedule/DataArea/.../SegmentRequirement[2] (line 40)"

    def __str__(self) -> str:
        return f"{self.file} {self.where}".strip()


@dataclass(frozen=True)
class Issue:
    """A rejected record or a warning: where, which record, why."""

    file: str
    where: str
    record: str  # e.g. "order 258456", "file", "stock lot L1"
    message: str

    def __str__(self) -> str:
        loc = f"{self.file} {self.where}".strip()
        return f"{loc}: {self.record}: {self.message}" if self.record else f"{loc}: {self.message}"


@dataclass(frozen=True)
class Missing:
    """A value the input lacked; ``filled_from`` names the master data that supplied it ('' = nothing did)."""

    file: str
    where: str
    record: str
    field: str
    value: str = ""
    filled_from: str = ""

    def __str__(self) -> str:
        loc = f"{self.file} {self.where}".strip()
        if self.filled_from:
            return f"{loc}: {self.record}: {self.field} missing -> {self.value} from {self.filled_from}"
        return f"{loc}: {self.record}: {self.field} missing and no master data supplies it"


@dataclass
class ImportReport:
    """Everything the planner needs to trust (or fix) an import."""

    files: list[dict[str, Any]] = field(default_factory=list)  # {"file", "format", "records"}
    read: Counter[str] = field(default_factory=Counter)  # records turned into problem data, by kind
    missing: list[Missing] = field(default_factory=list)
    rejected: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    ignored: dict[str, Counter[str]] = field(default_factory=dict)  # file -> element/column -> count

    def reject(self, src: Source, record: str, message: str) -> None:
        self.rejected.append(Issue(src.file, src.where, record, message))

    def warn(self, src: Source, record: str, message: str) -> None:
        self.warnings.append(Issue(src.file, src.where, record, message))

    def ignore(self, file: str, name: str, count: int = 1) -> None:
        self.ignored.setdefault(file, Counter())[name] += count

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "read": dict(self.read),
            "missing": [asdict(m) for m in self.missing],
            "rejected": [asdict(r) for r in self.rejected],
            "warnings": [asdict(w) for w in self.warnings],
            "ignored": {f: dict(c) for f, c in self.ignored.items()},
        }

    def to_text(self) -> str:
        """A plain summary for the terminal; every rejected record and missing value on its own line."""
        lines = ["files:"]
        lines += [f"  {f['file']}: {f['format']}, {f['records']} record(s)" for f in self.files]
        lines.append("read: " + (", ".join(f"{v} {k}" for k, v in self.read.items() if v) or "nothing"))
        if self.missing:
            lines.append(f"missing ({len(self.missing)}):")
            lines += [f"  - {m}" for m in self.missing]
        if self.rejected:
            lines.append(f"rejected ({len(self.rejected)}):")
            lines += [f"  - {r}" for r in self.rejected]
        if self.warnings:
            lines.append(f"warnings ({len(self.warnings)}):")
            lines += [f"  - {w}" for w in self.warnings]
        for f, c in self.ignored.items():
            lines.append(f"not used for scheduling in {f}: " + ", ".join(f"{k} ({v})" for k, v in sorted(c.items())))
        return "\n".join(lines)

    def rejects_csv(self) -> str:
        """The rejects as CSV (file, where, record, reason) for a spreadsheet or a ticket."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["file", "where", "record", "reason"])
        for r in self.rejected:
            w.writerow([r.file, r.where, r.record, r.message])
        return buf.getvalue()

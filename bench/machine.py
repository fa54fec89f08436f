"""What the benchmarks record about the machine they ran on."""

from __future__ import annotations

from pathlib import Path


def ram() -> str:
    """Total memory, from /proc/meminfo ("unknown" elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"

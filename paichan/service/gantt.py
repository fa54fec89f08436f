"""A self-contained HTML Gantt chart (inline SVG, no scripts or network)."""

from __future__ import annotations

import html
from datetime import timedelta

from paichan.domain import KPIs, Problem, ResourceKind, Schedule

_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]


def gantt_html(problem: Problem, schedule: Schedule, kpis: KPIs | None = None, title: str | None = None) -> str:
    """One row per machine, bars coloured by order, non-working time shaded."""
    machines = [r for r in problem.resources if r.kind == ResourceKind.MACHINE]
    end = max((s.end for s in schedule.operations), default=1)
    width, row_h, left, top = 1100, 28, 110, 30
    scale = (width - left - 10) / max(1, end)
    colours = {o.id: _PALETTE[i % len(_PALETTE)] for i, o in enumerate(problem.orders)}
    rows = {m.id: n for n, m in enumerate(machines)}
    height = top + row_h * len(machines) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="11">']
    for m in machines:
        y = top + rows[m.id] * row_h
        parts.append(f'<text x="4" y="{y + 18}">{html.escape(m.id)}</text>')
        for s, e in m.calendar.unavailable(end + 1):
            parts.append(f'<rect x="{left + s * scale:.1f}" y="{y}" width="{max(0.5, (e - s) * scale):.1f}" '
                         f'height="{row_h - 4}" fill="#ddd"><title>not working {s}-{e}</title></rect>')
    for so in schedule.operations:
        if so.resource not in rows:
            continue
        y = top + rows[so.resource] * row_h
        if so.setup_before:
            parts.append(f'<rect x="{left + (so.start - so.setup_before) * scale:.1f}" y="{y + 6}" '
                         f'width="{so.setup_before * scale:.1f}" height="{row_h - 16}" fill="#999"/>')
        label = html.escape(f"{so.operation} ({so.order}) {_fmt(problem, so.start)} - {_fmt(problem, so.end)}")
        parts.append(f'<rect x="{left + so.start * scale:.1f}" y="{y}" '
                     f'width="{max(1.0, (so.end - so.start) * scale):.1f}"'
                     f' height="{row_h - 4}" fill="{colours.get(so.order, "#888")}" stroke="#333" stroke-width="0.3">'
                     f"<title>{label}</title></rect>")
    for k in range(11):
        t = round(end * k / 10)
        x = left + t * scale
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 18}" stroke="#eee"/>'
                     f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle">{html.escape(_fmt(problem, t))}</text>')
    parts.append("</svg>")
    kpi_html = ""
    if kpis is not None:
        kpi_html = "<p>" + " &middot; ".join(
            f"{k.replace('_', ' ')}: <b>{v}</b>" for k, v in kpis.model_dump().items() if k != "utilisation"
        ) + "</p>"
    name = html.escape(title or problem.name)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title></head>"
            f"<body style='font-family:sans-serif'><h2>{name}</h2>{kpi_html}{''.join(parts)}"
            "<p style='color:#666'>Hover a bar for its operation and times; grey: non-working time; "
            "dark strips: setups.</p></body></html>")


def _fmt(problem: Problem, t: int) -> str:
    if problem.origin is None or problem.time_unit not in ("minute", "second", "hour"):
        return str(t)
    unit = {"minute": timedelta(minutes=1), "second": timedelta(seconds=1), "hour": timedelta(hours=1)}
    return (problem.origin + t * unit[problem.time_unit]).strftime("%a %H:%M")

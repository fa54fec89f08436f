"""The ``gantt.html`` a run writes: the planner's page, self-contained and offline.

The same page (``web/planner.html``), chart component (the vendored Apache ECharts) and view
(:func:`paichan.service.view.plan_view`) as ``paichan serve`` draws live, with every script,
the stylesheet and the plan inlined, so the file opens from a disk with no network and no server.
It shows the plan, KPIs, late orders and their reasons; replans, pins and proposals need the service.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from paichan.domain import KPIs, Problem, Schedule
from paichan.service.view import plan_view

WEB = Path(__file__).parent / "web"


def _inline_script(text: str) -> str:
    return "<script>" + text.replace("</script", "<\\/script") + "</script>"


def gantt_html(problem: Problem, schedule: Schedule, kpis: KPIs | None = None, title: str | None = None) -> str:
    """One HTML file: the plan's Gantt by plant, line and machine, KPIs, late orders, legend, zh-CN/en."""
    page = (WEB / "planner.html").read_text(encoding="utf-8")
    view = plan_view(problem, schedule, kpis=kpis, title=title)
    data = json.dumps(view, separators=(",", ":")).replace("</", "<\\/")
    scripts = "\n".join([
        _inline_script((WEB / "vendor" / "echarts" / "echarts.min.js").read_text(encoding="utf-8")),
        _inline_script((WEB / "i18n.js").read_text(encoding="utf-8")),
        f"<script>window.PAICHAN_VIEW={data};</script>",
        _inline_script((WEB / "planner.js").read_text(encoding="utf-8")),
    ])
    style = "<style>" + (WEB / "planner.css").read_text(encoding="utf-8") + "</style>"
    page = re.sub(r"<!--STYLE-->.*?<!--/STYLE-->", lambda _: style, page, flags=re.S)
    return re.sub(r"<!--SCRIPTS-->.*?<!--/SCRIPTS-->", lambda _: scripts, page, flags=re.S)

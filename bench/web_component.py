"""Which chart component for the planner page: Apache ECharts or vis-timeline, measured.

    python -m bench.web_component [--reps 3] [--seed 0] [--out bench/results/web_component.md]

Why: the planner page shows a plan as a Gantt chart (rows = machines, bars = operations) and must stay
responsive when a planner pans a plant-sized plan. We measure before choosing, in the browser the tests
use: Debian's headless ``chromium`` driven by Playwright (``tests/browser.py``: its flags, 1400 x 900).

What: one synthetic plan, seeded: 5,500 bars over 300 rows (the first 100 rows get 19 bars, the rest 18;
60-720 min long with 0-240 min gaps, each row scaled to ~10 days of whole minutes). Each library draws it:

* ECharts (the vendored ``paichan/service/web/vendor/echarts/echarts.min.js``): canvas renderer, one
  ``custom`` series whose ``renderItem`` returns a clipped rect per bar, ``time`` x axis, ``category`` y
  axis with all 300 rows, ``dataZoom`` of type ``inside`` on x (``weakFilter``), animation off.
* vis-timeline (its ``standalone`` UMD build, installed by this script into ``bench/.cache/`` with
  ``npm install --prefix bench/.cache vis-timeline@VIS_VERSION`` when missing): 300 groups, range items
  with empty content, ``stack: false``, the timeline 100% of the window's height: its groups are 28 px
  high, so 29 rows are in view and it scrolls vertically (it only puts the items of rows in view in the page).
* ``echarts-29rows``: ECharts as above plus an ``inside`` ``dataZoom`` on y with 29 rows in view, like
  vis-timeline's (300 rows in 840 px are 2.8 px each: a readable planner needs this or a vertical scroll).

Measured in the page with ``performance.now()`` (0 = navigation start of the page, a local file):

* **drawn ms**: page load start to the chart drawn, i.e. the first ECharts ``finished`` event, or the
  first vis-timeline ``changed`` event; **settled ms**: the last such event in the second after it.
* **pan frames**: the x range is set to the first 3 days, 30 frames pass, then it moves by 7/60 of a
  day 60 times, one step per ``requestAnimationFrame`` (ECharts ``dispatchAction({type: 'dataZoom',
  dataZoomIndex: 0, startValue, endValue})``, vis-timeline ``setWindow(start, end, {animation: false})``). A frame's
  duration is the time between the rAF callback that applied a step and the next rAF callback; work a
  library defers to the next frame lands in the following frame's duration. 16.7 ms is the 60 Hz floor.
  **step ms** is the time the step's call itself took (p50).

``control`` is the same page with the same data and no chart: the harness and rAF alone.

Each library runs ``--reps`` times in a fresh browser, alternating; the table gives the median of the
runs of each statistic; the JSON keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import ram
from tests.browser import ECHARTS_JS, ROOT, browser_page

VIS_VERSION = "8.5.4"
CACHE = ROOT / "bench" / ".cache"
VIS_DIR = CACHE / "node_modules" / "vis-timeline"
ROWS, BARS, DAYS, T0 = 300, 5500, 10, 1_767_571_200_000  # T0: 2026-01-05 00:00 UTC, in ms
MIN = 60_000
# rows in view: ECharts draws all 300 rows in one view unless a y dataZoom shows fewer; vis-timeline shows as many
# 28 px groups as fit (29 at 900 px) and scrolls; "echarts-29rows" is ECharts with that many rows in view
LIBS: dict[str, int | None] = {"echarts": None, "echarts-29rows": 29, "vis-timeline": None, "control": None}

ECHARTS_JS_PAGE = """
const el = document.getElementById('c'), counts = {renderItem: 0};
const chart = echarts.init(el, null, {renderer: 'canvas'});
chart.on('finished', () => mark(counts.renderItem));
function renderItem(params, api) {
  counts.renderItem++;
  const a = api.coord([api.value(1), api.value(0)]), b = api.coord([api.value(2), api.value(0)]);
  const h = api.size([0, 1])[1] * 0.7, cs = params.coordSys;
  const shape = echarts.graphic.clipRectByRect({x: a[0], y: a[1] - h / 2, width: b[0] - a[0], height: h},
                                               {x: cs.x, y: cs.y, width: cs.width, height: cs.height});
  return shape && {type: 'rect', shape, style: {fill: '#2f6fbf'}};
}
chart.setOption({
  animation: false, grid: {left: 60, right: 20, top: 20, bottom: 30},
  xAxis: {type: 'time', min: T0, max: T1}, yAxis: {type: 'category', data: ROWS, inverse: true},
  dataZoom: [{type: 'inside', xAxisIndex: 0, filterMode: 'weakFilter'}].concat(Y_ROWS ? [{type: 'inside',
    yAxisIndex: 0, startValue: 0, endValue: Y_ROWS - 1, filterMode: 'weakFilter', zoomLock: true}] : []),
  series: [{type: 'custom', renderItem, encode: {x: [1, 2], y: 0}, data: DATA}],
});
window.setRange = (a, b) => chart.dispatchAction({type: 'dataZoom', dataZoomIndex: 0, startValue: a, endValue: b});
"""

VIS_JS_PAGE = """
const groups = ROWS.map((r, i) => ({id: i, content: r}));
const items = DATA.map((d, i) => ({id: i, group: d[0], start: d[1], end: d[2], content: ''}));
const tl = new vis.Timeline(document.getElementById('c'), items, groups, {
  stack: false, showCurrentTime: false, start: T0, end: T1, height: '100%', groupOrder: 'id', orientation: 'top'});
tl.on('changed', () => mark(document.querySelectorAll('#c .vis-item').length));
window.setRange = (a, b) => tl.setWindow(a, b, {animation: false});
"""

COMMON_JS = """
window.marks = [];
function mark(count) { window.marks.push([performance.now(), count]); }
window.frames = (n) => new Promise(done => { let i = 0; const f = () => ++i >= n ? done() : requestAnimationFrame(f);
                                             requestAnimationFrame(f); });
window.pan = (steps, start, span, stride) => new Promise(done => {
  const stamps = [], work = []; let i = 0;
  function frame() {
    stamps.push(performance.now());
    if (i === steps) { done({stamps, work}); return; }
    i++;
    const t = performance.now();
    setRange(start + i * stride, start + i * stride + span);
    work.push(performance.now() - t);
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
});
"""


def plan(seed: int) -> list[list[int]]:
    """[row, start ms, end ms] for every bar, rows in order, starts in whole minutes."""
    rng, bars = random.Random(seed), []
    for row in range(ROWS):
        n = BARS // ROWS + (1 if row < BARS % ROWS else 0)
        lengths = [(rng.randint(0, 240), rng.randint(60, 720)) for _ in range(n)]
        scale, t = DAYS * 1440 / sum(g + d for g, d in lengths), 0.0
        for gap, dur in lengths:
            s, t = round(t + gap * scale), t + (gap + dur) * scale
            bars.append([row, T0 + s * MIN, T0 + max(round(t), s + 1) * MIN])
    return bars


def ensure_vis() -> Path:
    js = VIS_DIR / "standalone" / "umd" / "vis-timeline-graph2d.min.js"
    if not js.exists() or json.loads((VIS_DIR / "package.json").read_text())["version"] != VIS_VERSION:
        print(f"installing vis-timeline@{VIS_VERSION} into {CACHE} (npm) ...", flush=True)
        subprocess.run(["npm", "install", "--prefix", str(CACHE), f"vis-timeline@{VIS_VERSION}", "--no-audit",
                        "--no-fund", "--loglevel=error"], check=True)
    return js


def write_page(lib: str, bars: list[list[int]]) -> Path:
    if lib.startswith("echarts"):
        head, body = f'<script src="{ECHARTS_JS.as_uri()}"></script>', ECHARTS_JS_PAGE
    elif lib == "control":  # the same page and data, no chart: what rAF and the harness cost alone
        head, body = "", "mark(0); window.setRange = () => {};"
    else:
        css = (VIS_DIR / "styles" / "vis-timeline-graph2d.min.css").as_uri()
        head, body = f'<link rel="stylesheet" href="{css}"><script src="{ensure_vis().as_uri()}"></script>', VIS_JS_PAGE
    data = (f"const DATA = {json.dumps(bars)}; const ROWS = {json.dumps([f'M{i + 1:03d}' for i in range(ROWS)])};"
            f" const T0 = {T0}, T1 = {T0 + DAYS * 1440 * MIN}, Y_ROWS = {LIBS[lib] or 'null'};")
    page = CACHE / f"web_component_{lib}.html"
    CACHE.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><style>html,body{{margin:0;height:100%}}"
                    f" #c{{width:100%;height:100vh}}</style>{head}</head><body><div id='c'></div>"
                    f"<script>{data}{COMMON_JS}{body}</script></body></html>")
    return page


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def one_run(lib: str, page_file: Path) -> dict[str, Any]:
    load = os.getloadavg()
    with browser_page() as page:
        page.goto(page_file.as_uri())
        page.wait_for_function("window.marks && window.marks.length > 0", timeout=120_000)
        first = page.evaluate("window.marks[0][0]")
        page.wait_for_function(f"performance.now() > {first + 1000}", polling=100)
        marks: list[list[float]] = page.evaluate("window.marks")
        settled = max(t for t, _ in marks if t <= first + 1000)
        span, stride = 3 * 1440 * MIN, 7 * 1440 * MIN // 60
        page.evaluate(f"setRange({T0}, {T0 + span})")
        page.evaluate("frames(30)")
        res = page.evaluate(f"pan(60, {T0}, {span}, {stride})")
        frames = [b - a for a, b in zip(res["stamps"], res["stamps"][1:], strict=False)]
        version = page.evaluate("window.echarts ? echarts.version : null")
        return {"lib": lib, "drawn_ms": first, "settled_ms": settled, "drawn_count": marks[0][1],
                "frames_ms": frames, "step_ms": res["work"], "frame_p50": pct(frames, 0.5),
                "frame_p95": pct(frames, 0.95), "frame_max": max(frames), "step_p50": pct(res["work"], 0.5),
                "browser": page.context.browser.version if page.context.browser else "?",
                "lib_version": version, "load_before": load}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web_component.md")
    args = ap.parse_args(argv)
    bars = plan(args.seed)
    pages = {lib: write_page(lib, bars) for lib in LIBS}
    echarts = json.loads((ROOT / "webvendor" / "package.json").read_text())["dependencies"]["echarts"]
    versions = {"echarts": echarts, "echarts-29rows": echarts, "control": "-",
                "vis-timeline": json.loads((VIS_DIR / "package.json").read_text())["version"]}
    started, runs, load = time.monotonic(), [], os.getloadavg()
    for rep in range(args.reps):
        for lib in pages:
            run = one_run(lib, pages[lib])
            print(f"rep {rep + 1} {lib}: drawn {run['drawn_ms']:.0f} ms, pan p50/p95/max "
                  f"{run['frame_p50']:.1f}/{run['frame_p95']:.1f}/{run['frame_max']:.1f} ms", flush=True)
            runs.append(run)
    keys = ["drawn_ms", "settled_ms", "frame_p50", "frame_p95", "frame_max", "step_p50"]
    table = ["| library | version | drawn ms | settled ms | pan frame p50 ms | p95 ms | max ms | step p50 ms |"
             " bars drawn (first event) |", "|---|---|---|---|---|---|---|---|---|"]
    for lib in pages:
        mine = [r for r in runs if r["lib"] == lib]
        med = {k: statistics.median(r[k] for r in mine) for k in keys}
        count = "renderItem calls" if lib.startswith("echarts") else "`.vis-item` elements" if lib[0] == "v" else "-"
        table.append(f"| {lib} | {versions[lib]} | " + " | ".join(f"{med[k]:.0f}" if k.endswith("ms") else
                     f"{med[k]:.1f}" for k in keys) + f" | {mine[0]['drawn_count']} {count} |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    cmd = " ".join(["python -m bench.web_component", *(sys.argv[1:] if argv is None else argv)])
    head = (f"# Planner chart component: ECharts vs vis-timeline\n\nWritten {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
            f" by `{cmd}` (commit {commit.stdout.strip() or '?'}), {(time.monotonic() - started) / 60:.1f} min."
            f" {BARS:,} bars over {ROWS} rows, ~{DAYS} days, seed {args.seed}; {args.reps} runs per library,"
            f" medians. Definitions: the module docstring of `bench/web_component.py`.\n\n"
            f"Machine: {platform.platform()}, {os.cpu_count()} cores, {ram()} RAM; Debian chromium"
            f" {runs[0]['browser']} headless (Playwright, `tests/browser.py` flags), viewport 1400 x 900; load average"
            f" before the bench {'/'.join(f'{x:.2f}' for x in load)} (1/5/15 min; each run's is in the JSON, where the"
            " bench's own earlier runs raise it).\n\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(head + "\n".join(table) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"versions": versions, "runs": runs}, indent=1))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

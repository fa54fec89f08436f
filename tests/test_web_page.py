"""The planner's page in real headless Chromium against a real ``paichan`` service (uvicorn, its own Redis).

What a planner does in a day, through the page only: sign in, read the plan, watch an MES
breakdown arrive without reloading, replan, review the proposal, release it, pin an operation by
dragging it and see the pin hold, set the brake. The page's numbers are held against the
service's API and every plan against the checker. Screenshots go to ``out/test-artifacts/``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from browser import browser_page
from playwright.sync_api import Page
from test_service_api import _busiest_machine as busiest

from paichan.adapters.webhooks import WebhookSecret, signed_headers
from paichan.agents.scenario import global_problem, small_network
from paichan.bus.server import EmbeddedRedis
from paichan.checker import check
from paichan.domain import Problem, Schedule
from paichan.service.app import create_app
from paichan.service.config import ClientConfig, ReplanConfig, ServiceConfig
from paichan.service.engine import PlanService
from paichan.service.gantt import gantt_html
from paichan.solver import SolveParams, solve

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "out" / "test-artifacts"
ORIGIN = datetime(2026, 12, 2, 6, tzinfo=UTC)
KEY, MES_KEY, VIEWER_KEY = "planner-key-web-0123456789", "mes-key-web-0123456789abc", "viewer-key-web-0123456789"
SECRET = WebhookSecret.generate()
BREAKDOWN = 4  # index of "breakdown" in the view's window_kinds


class Live:
    """A service on a real port: its engine, an API client as the planner, and signed MES pushes."""

    def __init__(self, problem: Problem, schedule: Schedule, redis_url: str) -> None:
        self.minutes = 30
        cfg = ServiceConfig(
            name=f"web{int(time.time() * 1000) % 10**8}",
            clients=[ClientConfig(name="ann", key=KEY, role="planner"),
                     ClientConfig(name="vic", key=VIEWER_KEY, role="viewer"),
                     ClientConfig(name="mes-hall", key=MES_KEY, role="mes")],
            webhooks={"secrets": [SECRET]},
            replanning=ReplanConfig(auto=True, time_limit=2.0, freeze_minutes=0, auto_release_max_moves=0),
        )
        self.service = PlanService(problem, schedule, cfg, redis_url,
                                   clock=lambda: ORIGIN + timedelta(minutes=self.minutes))
        self.service.start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.service), host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.api = httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
        self.n = 0

    def breakdown(self, machine: str, minute: int) -> None:
        self.n += 1
        body = json.dumps({"event_id": f"web-{self.n}", "source": "mes-hall", "machine": machine, "state": "down",
                           "time": (ORIGIN + timedelta(minutes=minute)).isoformat()}).encode()
        r = httpx.post(f"{self.url}/events", content=body, timeout=10, headers={
            "authorization": f"Bearer {MES_KEY}", "content-type": "application/json", **signed_headers(SECRET, body)})
        assert r.status_code == 202, r.text

    def jobs(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.service.r.hvals(self.service.k("replans"))]

    def wait_quiet(self, timeout: float = 60) -> None:
        """Until no replan is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service.jobs.empty() and all(j["status"] not in ("queued", "running") for j in self.jobs()):
                return
            time.sleep(0.2)
        raise AssertionError("replans did not finish")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.service.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    problem = global_problem(small_network(orders=8).model_copy(update={"origin": ORIGIN}))
    res = solve(problem, SolveParams(time_limit=3))
    assert res.schedule is not None and check(problem, res.schedule).ok
    with EmbeddedRedis(tmp_path_factory.mktemp("web-redis")) as server:
        svc = Live(problem, res.schedule, server.url)
        yield svc
        svc.close()


def open_page(page: Page, live: Live, key: str = KEY) -> None:
    """Sign in through the page's own form and wait until the plan is drawn."""
    page.goto(live.url + "/")
    page.get_by_test_id("login-key").fill(key)
    page.get_by_test_id("login-go").click()
    page.wait_for_function("window.paichan && window.paichan.drawnAt != null && window.paichan.es", timeout=20_000)
    page.wait_for_function("window.paichan.es.readyState === 1", timeout=10_000)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def page_ops(page: Page) -> dict[str, tuple[str, int, int]]:
    """The page's operations: id -> (machine, start, end)."""
    rows = page.evaluate("""() => { const v = window.paichan.view, o = v.ops;
        return o.id.map((id, i) => [id, v.machines[o.machine[i]].id, o.start[i], o.end[i]]); }""")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def released(live: Live) -> Schedule:
    return Schedule.model_validate({"operations": live.api.get("/plan").json()["operations"]})


def test_plan_renders_and_a_breakdown_arrives_without_reload(live: Live) -> None:
    with browser_page() as page:
        assert live.api.get("/ui/me", headers={"authorization": ""}).status_code == 401  # the page needs a key
        open_page(page, live)
        plan = released(live)
        ops = page_ops(page)
        assert ops == {s.operation: (s.resource, s.start, s.end) for s in plan.operations}
        kpis = check(live.service.problem.model_copy(update={"now": live.service.now()}), plan).kpis
        assert kpis is not None
        shown = page.get_by_test_id("kpis").locator("[data-kpi=late_orders]").inner_text()
        assert shown.split()[0] == str(kpis.late_orders)
        assert page.evaluate("window.paichan.view.kpis.weighted_tardiness") == kpis.weighted_tardiness
        canvas_painted = page.evaluate("""() => { const c = document.querySelector('#chart canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] < 200 || d[i + 1] < 200)) n++; return n; }""")
        assert canvas_painted > 1000, "the Gantt is drawn"
        shot(page, "01-plan")
        page.evaluate("window.__sameDocument = 'yes'")
        machine = busiest(plan, 40)
        with live.service.lock:
            live.service.config.replanning.auto = False  # this test watches the page, not the replan
        try:
            live.breakdown(machine, 31)
            page.wait_for_function(
                """([m, k]) => { const v = window.paichan.view; const i = v.machines.findIndex(x => x.id === m);
                   return v.windows.some(w => w[0] === i && w[3] === k); }""", arg=[machine, BREAKDOWN],
                timeout=15_000)
        finally:
            live.service.config.replanning.auto = True
        assert page.evaluate("window.__sameDocument") == "yes", "pushed, not reloaded"
        assert machine in page.get_by_test_id("activity").inner_text()
        shot(page, "02-breakdown")


def test_replan_review_release_from_the_page(live: Live) -> None:
    live.wait_quiet()
    with browser_page() as page:
        open_page(page, live)
        before = page.evaluate("window.paichan.view.plan_version")
        page.get_by_test_id("replan").click()
        page.get_by_test_id("replan-scope").select_option("all")
        page.get_by_test_id("replan-limit").fill("2")
        page.get_by_test_id("replan-start").click()
        card = page.get_by_test_id("proposals").locator(".card").first
        card.wait_for(timeout=60_000)
        pid = card.get_attribute("data-proposal")
        card.get_by_role("button").click()
        page.get_by_test_id("proposal-banner").wait_for()
        page.wait_for_function("window.paichan.reviewing && window.paichan.reviewing.id === " + json.dumps(pid))
        prop = live.api.get(f"/proposals/{pid}", params={"schedule": True}).json()
        proposed = Schedule.model_validate(prop["schedule"])
        assert page_ops(page) == {s.operation: (s.resource, s.start, s.end) for s in proposed.operations}
        ghosts = page.evaluate("window.paichan.reviewing.ghosts.length")
        assert ghosts == sum(1 for m in prop["diff"]["moved"] if m["from_resource"] is not None)
        shot(page, "03-proposal")
        page.get_by_test_id("release").click()
        page.wait_for_function(f"window.paichan.view.plan_version === {before + 1} && !window.paichan.reviewing",
                               timeout=15_000)
        now = released(live)
        assert {s.operation: (s.resource, s.start) for s in now.operations} == \
            {s.operation: (s.resource, s.start) for s in proposed.operations}
        assert check(live.service.problem.model_copy(update={"now": live.service.now()}), now).ok
        assert page_ops(page) == {s.operation: (s.resource, s.start, s.end) for s in now.operations}
        assert f"v{before + 1}" in page.get_by_test_id("plan-version").inner_text()


def test_an_operation_dragged_on_the_page_is_pinned_and_holds_through_the_replan(live: Live) -> None:
    live.wait_quiet()
    with browser_page() as page:
        open_page(page, live)
        plan = released(live)
        # a planned operation with room after it: drag it 2 hours later on its own machine
        last = max((s for s in plan.operations if s.start > 60), key=lambda s: s.start)
        target = last.start + 120
        page.get_by_test_id("move-mode").check()
        page.evaluate(f"""() => {{ const p = window.paichan, i = p.opIndex.get({json.dumps(last.operation)});
            const m = p.view.ops.machine[i];
            p.chart.dispatchAction({{type: 'dataZoom', dataZoomIndex: 2, startValue: Math.max(0, m - 3),
                                    endValue: Math.min(p.view.machines.length - 1, m + 3)}});
            p.chart.dispatchAction({{type: 'dataZoom', dataZoomIndex: 0,
                startValue: p.view.ops.start[i] * 0 + Date.parse(p.view.origin) + (p.view.ops.start[i] - 240) * 60000,
                endValue: Date.parse(p.view.origin) + (p.view.ops.end[i] + 480) * 60000}}); }}""")
        page.wait_for_timeout(300)
        xy = page.evaluate(f"""() => {{ const p = window.paichan, i = p.opIndex.get({json.dumps(last.operation)});
            const t = (u) => Date.parse(p.view.origin) + u * 60000, o = p.view.ops;
            const a = p.chart.convertToPixel({{gridIndex: 0}}, [t((o.start[i] + o.end[i]) / 2), o.machine[i]]);
            const b = p.chart.convertToPixel({{gridIndex: 0}}, [t((o.start[i] + o.end[i]) / 2 + 120), o.machine[i]]);
            const r = document.querySelector('#chart').getBoundingClientRect();
            return [a[0] + r.left, a[1] + r.top, b[0] + r.left, b[1] + r.top]; }}""")
        page.mouse.move(xy[0], xy[1])
        page.mouse.down()
        page.mouse.move((xy[0] + xy[2]) / 2, xy[1], steps=5)
        page.mouse.move(xy[2], xy[3], steps=5)
        page.mouse.up()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not live.service.pins():
            time.sleep(0.1)
        pins = live.service.pins()
        assert pins, page.get_by_test_id("toast").inner_text()
        assert len(pins) == 1 and pins[0].operation == last.operation and pins[0].resource == last.resource
        assert pins[0].start is not None and abs(int(pins[0].start) - target) <= 10, (pins[0].start, target)
        page.wait_for_function(f"window.paichan.view.ops.pinned[window.paichan.opIndex.get("
                               f"{json.dumps(last.operation)})] === 1", timeout=10_000)
        live.wait_quiet()
        card = page.get_by_test_id("proposals").locator(".card").first
        card.wait_for(timeout=30_000)
        card.get_by_role("button").click()
        page.get_by_test_id("release").click()
        page.wait_for_function("!window.paichan.reviewing", timeout=15_000)
        after = released(live).by_operation()[last.operation]
        assert (after.resource, after.start) == (pins[0].resource, pins[0].start), "the pin holds"
        assert page_ops(page)[last.operation][:2] == (after.resource, after.start)
        # the next replan keeps it there too
        job = live.api.post("/replans", json={"scope": "all", "time_limit": 2}).json()
        live.wait_quiet()
        prop = live.api.get(f"/proposals/{live.service.job(job['id']).proposal}", params={"schedule": True}).json()
        again = Schedule.model_validate(prop["schedule"]).by_operation()[last.operation]
        assert (again.resource, again.start) == (after.resource, after.start)
        shot(page, "04-pinned")
        live.api.delete(f"/pins/{pins[0].id}")


def test_the_brake_switch_stops_automatic_replans(live: Live) -> None:
    live.wait_quiet()
    with browser_page() as page:
        open_page(page, live)
        page.get_by_test_id("brake").check()
        page.wait_for_function("window.paichan.view.brake && window.paichan.view.brake.on", timeout=10_000)
        assert live.api.get("/brake").json()["brake"]["by"] == "ann"
        jobs = len(live.jobs())
        machine = busiest(released(live), 60)
        live.minutes += 5
        live.breakdown(machine, live.minutes)
        page.wait_for_function(
            """([m, n]) => { const v = window.paichan.view; const i = v.machines.findIndex(x => x.id === m);
               return v.windows.filter(w => w[0] === i && w[3] === 4).length >= 1; }""", arg=[machine, 1],
            timeout=15_000)
        time.sleep(1.5)
        assert len(live.jobs()) == jobs, "no automatic replan while the brake is on"
        shot(page, "05-brake")
        page.get_by_test_id("brake").uncheck()
        page.wait_for_function("!window.paichan.view.brake", timeout=10_000)
        assert live.api.get("/brake").json()["brake"] is None


def test_the_page_speaks_chinese_when_the_browser_asks(live: Live) -> None:
    with browser_page(locale="zh-CN") as page:
        open_page(page, live)
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        assert "生产计划" in page.get_by_test_id("title").inner_text()
        assert "关键指标" in page.locator("aside").inner_text()
        shot(page, "06-chinese")
        page.get_by_test_id("lang").select_option("en")
        page.wait_for_function("window.paichan.drawnAt != null")
        assert "Production plan" in page.get_by_test_id("title").inner_text()


def test_a_viewer_reads_but_cannot_change_the_plan(live: Live) -> None:
    with browser_page() as page:
        page.goto(live.url + "/ui")
        page.get_by_test_id("login-key").fill("not-a-key")
        page.get_by_test_id("login-go").click()
        page.get_by_text("Unknown key").wait_for()
        open_page(page, live, VIEWER_KEY)
        assert page.get_by_test_id("replan").is_hidden() and page.get_by_test_id("move-mode").is_hidden()
        assert page.get_by_test_id("brake").is_disabled()
        assert page.evaluate("window.paichan.view.ops.id.length") == len(released(live).operations)
        status = page.evaluate("fetch('/replans', {method: 'POST', headers: {'content-type': 'application/json'},"
                               " body: JSON.stringify({scope: 'all'})}).then(r => r.status)")
        assert status == 403, "the server refuses, not only the page"


def test_gantt_html_draws_offline_from_a_file(tmp_path: Path) -> None:
    problem = global_problem(small_network(orders=8).model_copy(update={"origin": ORIGIN}))
    res = solve(problem, SolveParams(time_limit=2))
    assert res.schedule is not None
    report = check(problem, res.schedule)
    assert report.ok
    path = tmp_path / "gantt.html"
    path.write_text(gantt_html(problem, res.schedule, report.kpis), encoding="utf-8")
    with browser_page() as page:
        page.context.set_offline(True)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_function("window.paichan && window.paichan.drawnAt != null", timeout=20_000)
        assert page_ops(page) == {s.operation: (s.resource, s.start, s.end) for s in res.schedule.operations}
        assert [u for u in requests if not u.startswith("file:")] == [], "nothing fetched"
        assert page.get_by_test_id("replan").is_hidden()

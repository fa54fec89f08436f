"""The vendored ECharts draws in the headless Chromium the browser tests use (no network, no CDN)."""

from __future__ import annotations

import json

from browser import ECHARTS_JS, ROOT, browser_page

PAGE = (
    "data:text/html,<!doctype html><html><body style='margin:0'>"
    "<div id='chart' style='width:640px;height:360px'></div></body></html>"
)

DRAW = """() => {
    const chart = echarts.init(document.getElementById('chart'), null, {renderer: 'canvas'});
    window.__finished = false;
    chart.on('finished', () => { window.__finished = true; });
    chart.setOption({
        animation: false,
        xAxis: {type: 'category', data: ['cut', 'weld', 'paint', 'pack']},
        yAxis: {type: 'value'},
        series: [{type: 'bar', data: [5, 9, 3, 7], itemStyle: {color: '#2f6fbf'}}],
    });
}"""

# pixels of the chart's canvas that are not fully transparent (the page has no background colour)
PAINTED = """() => {
    const canvas = document.querySelector('#chart canvas');
    if (!canvas) return -1;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
    return painted;
}"""


def test_vendored_echarts_draws_a_chart() -> None:
    pinned = json.loads((ROOT / "webvendor" / "package.json").read_text())["dependencies"]["echarts"]
    with browser_page(viewport=(800, 500)) as page:
        page.goto(PAGE)
        page.add_script_tag(path=str(ECHARTS_JS))
        assert page.evaluate("echarts.version") == pinned  # the vendored file is the pinned release
        page.evaluate(DRAW)
        page.wait_for_function("window.__finished === true", timeout=10_000)
        assert page.locator("#chart canvas").count() == 1
        painted = page.evaluate(PAINTED)
        # four bars of at least ~50 x 50 px each plus the axes, out of 640 x 360 (x device pixel ratio)
        assert painted > 10_000, painted

// The planner's page: the plan as a Gantt (Apache ECharts canvas custom series), KPIs, late orders and why,
// proposals to review, replans, pins and the brake. Live mode talks to paichan serve (/view, /live and the
// API); static mode (gantt.html of paichan run) draws the embedded window.PAICHAN_VIEW and nothing else.
"use strict";
(function () {
  const STATIC = !!window.PAICHAN_VIEW;
  const I18N = window.PAICHAN_I18N;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const WINDOW_COLOURS = {off_shift: "#e9ecef", break: "#d7dbe0", maintenance: "#ffd8a8", holiday: "#d0bfff",
    breakdown: "#ff6b6b"};
  const STATUS_COLOURS = {on_time: "#59a14f", at_risk: "#f1a208", late: "#d62728", no_due: "#8c9aa8",
    done: "#b8c2cc", pinned: "#7b3fa0", started: "#2f6fd0"};
  const S = {  // the page's state
    view: null, lang: "en", colour: "order", reviewing: null, chart: null, opIndex: new Map(),
    orderLast: [], move: false, es: null, drawnAt: null, jobs: {}, selected: null,
  };
  window.paichan = S;  // for the browser tests and the render benchmark

  // ---------------------------------------------------------------- words
  function t(key, args) {
    let s = (I18N[S.lang] && I18N[S.lang][key]) || I18N.en[key] || key;
    for (const [k, v] of Object.entries(args || {})) s = s.split("{" + k + "}").join(v);
    return s;
  }
  function applyWords() {
    document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
    $("lang").value = S.lang;
  }
  function pickLanguage() {
    const saved = localStorage.getItem("paichan.lang");
    if (saved === "en" || saved === "zh") return saved;
    const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    return (langs[0] || "").toLowerCase().startsWith("zh") ? "zh" : "en";
  }

  // ---------------------------------------------------------------- time
  function ms(u) {  // a time in problem units as the chart's x value (epoch ms, or the units themselves)
    const v = S.view;
    return v.unit_seconds && v.origin ? Date.parse(v.origin) + u * v.unit_seconds * 1000 : u;
  }
  function units(x) {
    const v = S.view;
    return v.unit_seconds && v.origin ? Math.round((x - Date.parse(v.origin)) / (v.unit_seconds * 1000)) : Math.round(x);
  }
  function fmtTime(u) {
    if (u == null) return "–";
    const v = S.view;
    if (!(v.unit_seconds && v.origin)) return String(u);
    const d = new Date(ms(u));
    return d.toLocaleString(S.lang === "zh" ? "zh-CN" : "en-GB", {weekday: "short", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit"});
  }
  function fmtDur(u) {
    const v = S.view;
    if (!v.unit_seconds) return String(u);
    const min = Math.round(u * v.unit_seconds / 60);
    if (min < 60) return min + (S.lang === "zh" ? " 分钟" : " min");
    const h = min / 60;
    if (h < 48) return h.toFixed(1) + (S.lang === "zh" ? " 小时" : " h");
    return (h / 24).toFixed(1) + (S.lang === "zh" ? " 天" : " d");
  }

  // ---------------------------------------------------------------- colours
  const hue = (i) => `hsl(${(i * 137.508) % 360},${55 + (i % 3) * 12}%,${48 + (i % 4) * 6}%)`;
  function opColour(i) {
    const o = S.view.ops, order = S.view.orders[o.order[i]];
    if (S.colour === "family") return hue(o.family[i] * 3 + 1);
    if (S.colour === "status") {
      if (o.pinned[i]) return STATUS_COLOURS.pinned;
      if (o.state[i] === 2) return STATUS_COLOURS.done;
      if (o.state[i] === 1) return STATUS_COLOURS.started;
      return STATUS_COLOURS[order.status] || STATUS_COLOURS.no_due;
    }
    return hue(o.order[i]);
  }

  // ---------------------------------------------------------------- chart
  const SERIES = {windows: 0, ops: 1, ghosts: 2, dues: 3};
  function indexOps() {
    const o = S.view.ops;
    S.opIndex = new Map(o.id.map((id, i) => [id, i]));
    S.orderLast = new Array(S.view.orders.length).fill(-1);  // the row of each order's last operation (due marker)
    for (let i = 0; i < o.id.length; i++) {
      const k = o.order[i], j = S.orderLast[k];
      if (j < 0 || o.end[i] > o.end[j]) S.orderLast[k] = i;
    }
  }
  function opData() {
    const o = S.view.ops, moved = S.reviewing ? new Set(S.reviewing.moved_ops) : null, out = new Array(o.id.length);
    for (let i = 0; i < o.id.length; i++) {
      out[i] = [o.machine[i], ms(o.start[i]), ms(o.end[i]), i, o.setup[i] ? ms(o.start[i] - o.setup[i]) : 0,
        moved && moved.has(o.id[i]) ? 1 : 0];
    }
    return out;
  }
  function windowData() {
    return S.view.windows.map((w) => [w[0], ms(w[1]), ms(w[2]), w[3]]);
  }
  function dueData() {
    const out = [];
    S.view.orders.forEach((ord, k) => {
      const i = S.orderLast[k];
      if (ord.due != null && i >= 0) out.push([S.view.ops.machine[i], ms(ord.due), k]);
    });
    return out;
  }
  function ghostData() {
    return S.reviewing ? S.reviewing.ghosts.map((g) => [g[1], ms(g[2]), ms(g[3]), g[0]]) : [];
  }
  function renderWindow(params, api) {
    const a = api.coord([api.value(1), api.value(0)]), b = api.coord([api.value(2), api.value(0)]);
    const h = api.size([0, 1])[1];
    const kind = S.view.window_kinds[api.value(3)];
    const rect = echarts.graphic.clipRectByRect({x: a[0], y: a[1] - h / 2, width: Math.max(1, b[0] - a[0]), height: h},
      {x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width, height: params.coordSys.height});
    if (!rect) return null;
    const style = {fill: WINDOW_COLOURS[kind]};
    if (kind === "breakdown") Object.assign(style, {fill: "rgba(255,80,80,0.35)", stroke: "#d62728", lineWidth: 1});
    if (kind === "maintenance") Object.assign(style, {stroke: "#e8590c", lineWidth: 0.5, lineDash: [3, 2]});
    return {type: "rect", shape: rect, style, silent: true};
  }
  function renderOp(params, api) {
    const i = api.value(3), o = S.view.ops;
    const a = api.coord([api.value(1), api.value(0)]), b = api.coord([api.value(2), api.value(0)]);
    const h = api.size([0, 1])[1] * 0.72, y = a[1] - h / 2, w = Math.max(1, b[0] - a[0]);
    const cs = params.coordSys;
    const clip = {x: cs.x, y: cs.y, width: cs.width, height: cs.height};
    const bar = echarts.graphic.clipRectByRect({x: a[0], y, width: w, height: h}, clip);
    if (!bar) return null;
    const moved = api.value(5) === 1, pinned = o.pinned[i] === 1, sel = S.selected === i;
    const children = [];
    const setupStart = api.value(4);
    if (setupStart) {
      const s = api.coord([setupStart, api.value(0)]);
      const r = echarts.graphic.clipRectByRect({x: s[0], y: y + h * 0.3, width: Math.max(1, a[0] - s[0]),
        height: h * 0.4}, clip);
      if (r) children.push({type: "rect", shape: r, style: {fill: "#3b3b3b"}});
    }
    children.push({type: "rect", shape: bar, style: {
      fill: opColour(i), opacity: o.state[i] === 2 ? 0.45 : 1,
      stroke: sel ? "#000" : moved ? "#ff7f0e" : pinned ? "#7b3fa0" : o.state[i] === 1 ? "#1a4fa0" : "rgba(0,0,0,.35)",
      lineWidth: sel ? 2.5 : moved ? 2.5 : pinned ? 2 : o.state[i] === 1 ? 2 : 0.5}});
    if (pinned && bar.width > 6) {
      children.push({type: "polygon", shape: {points: [[bar.x, bar.y], [bar.x + 6, bar.y], [bar.x, bar.y + 6]]},
        style: {fill: "#7b3fa0"}});
    }
    if (bar.width > 34 && h > 9) {
      children.push({type: "text", style: {text: S.view.orders[o.order[i]].id, x: bar.x + 3, y: a[1],
        verticalAlign: "middle", fill: "#fff", font: "11px sans-serif", width: bar.width - 5, overflow: "truncate",
        textShadowColor: "rgba(0,0,0,.6)", textShadowBlur: 2}, silent: true});
    }
    return {type: "group", children};
  }
  function renderGhost(params, api) {
    const a = api.coord([api.value(1), api.value(0)]), b = api.coord([api.value(2), api.value(0)]);
    const h = api.size([0, 1])[1] * 0.72;
    const cs = params.coordSys;
    const r = echarts.graphic.clipRectByRect({x: a[0], y: a[1] - h / 2, width: Math.max(1, b[0] - a[0]), height: h},
      {x: cs.x, y: cs.y, width: cs.width, height: cs.height});
    return r && {type: "rect", shape: r, style: {fill: "rgba(255,127,14,0.12)", stroke: "#ff7f0e", lineDash: [4, 3],
      lineWidth: 1.5}, silent: true};
  }
  function renderDue(params, api) {
    const p = api.coord([api.value(1), api.value(0)]), h = api.size([0, 1])[1];
    const cs = params.coordSys;
    if (p[0] < cs.x || p[0] > cs.x + cs.width || p[1] < cs.y || p[1] > cs.y + cs.height) return null;
    const late = S.view.orders[api.value(2)].status === "late";
    return {type: "polygon", shape: {points: [[p[0] - 4, p[1] - h / 2], [p[0] + 4, p[1] - h / 2], [p[0], p[1] - h / 2 + 7]]},
      style: {fill: late ? "#d62728" : "#333"}};
  }
  function machineLabels() {
    return S.view.machines.map((m) => m.id);
  }
  function chartOption() {
    const timeAxis = !!(S.view.unit_seconds && S.view.origin);
    const rows = S.view.machines.length, visibleRows = Math.min(rows, 40);
    return {
      animation: false,
      grid: {left: 120, right: 40, top: 28, bottom: 58},
      tooltip: {trigger: "item", confine: true, formatter: tooltip},
      xAxis: {type: timeAxis ? "time" : "value", position: "top", min: ms(0), max: ms(S.view.horizon),
        splitLine: {show: true, lineStyle: {color: "#e6e9ee"}},
        axisLabel: timeAxis ? {hideOverlap: true, formatter: {year: "{yyyy}", month: "{MMM}", day: "{MM}-{dd}",
          hour: "{HH}:{mm}", minute: "{HH}:{mm}", second: "{HH}:{mm}:{ss}", none: "{MM}-{dd} {HH}:{mm}"}} : {}},
      yAxis: {type: "category", data: machineLabels(), inverse: true, axisTick: {show: false},
        axisLabel: {fontSize: 11, formatter: (id) => id}, splitLine: {show: true, lineStyle: {color: "#f0f2f5"}}},
      dataZoom: [
        {type: "slider", xAxisIndex: 0, filterMode: "weakFilter", bottom: 8, height: 18, labelFormatter: ""},
        {type: "inside", xAxisIndex: 0, filterMode: "weakFilter", zoomOnMouseWheel: "ctrl", moveOnMouseWheel: false,
          moveOnMouseMove: !S.move},
        {type: "slider", yAxisIndex: 0, filterMode: "weakFilter", right: 6, width: 14, zoomLock: false,
          startValue: 0, endValue: visibleRows - 1, showDetail: false},
        {type: "inside", yAxisIndex: 0, filterMode: "weakFilter", zoomOnMouseWheel: false, moveOnMouseWheel: true,
          moveOnMouseMove: false},
      ],
      series: [
        {type: "custom", name: "windows", renderItem: renderWindow, encode: {x: [1, 2], y: 0}, data: windowData(),
          silent: true, z: 1, progressive: 0},
        {type: "custom", name: "ops", renderItem: renderOp, encode: {x: [1, 2], y: 0}, data: opData(), z: 3,
          progressive: 0,
          markLine: {silent: true, symbol: "none", data: nowLine(), label: {formatter: t("now_legend")}}},
        {type: "custom", name: "ghosts", renderItem: renderGhost, encode: {x: [1, 2], y: 0}, data: ghostData(), z: 2,
          silent: true, progressive: 0},
        {type: "custom", name: "dues", renderItem: renderDue, encode: {x: 1, y: 0}, data: dueData(), z: 4,
          progressive: 0},
      ],
    };
  }
  function nowLine() {
    return S.view.now > 0 ? [{xAxis: ms(S.view.now), lineStyle: {color: "#2d6cdf", type: "dashed", width: 1.5}}] : [];
  }
  function tooltip(p) {
    if (p.seriesIndex === SERIES.dues) {
      const ord = S.view.orders[p.value[2]];
      return `${esc(ord.id)} · ${t("due")} ${esc(fmtTime(ord.due))} · ${t(ord.status)}`;
    }
    if (p.seriesIndex !== SERIES.ops) return "";
    const i = p.value[3], o = S.view.ops, ord = S.view.orders[o.order[i]];
    const st = o.state[i] === 2 ? t("done") : o.state[i] === 1 ? t("started") : t("planned");
    return `<b>${esc(o.id[i])}</b> · ${esc(ord.id)} <span class="tag ${ord.status}">${esc(t(ord.status))}</span><br>` +
      `${esc(S.view.machines[o.machine[i]].id)}<br>${esc(fmtTime(o.start[i]))} → ${esc(fmtTime(o.end[i]))}` +
      (o.setup[i] ? `<br>${t("setup")} ${esc(fmtDur(o.setup[i]))}` : "") + `<br>${st}` +
      (o.pinned[i] ? ` · ${t("pinned")}` : "") + (ord.due != null ? `<br>${t("due")} ${esc(fmtTime(ord.due))}` : "");
  }
  function draw(first) {
    indexOps();
    if (!S.chart) {
      S.chart = echarts.init($("chart"), null, {renderer: "canvas", locale: S.lang === "zh" ? "ZH" : "EN"});
      S.chart.on("finished", () => { if (S.drawnAt == null) { S.drawnAt = performance.now(); } });
      S.chart.on("click", {seriesIndex: SERIES.ops}, (p) => select(p.value[3]));
      S.chart.on("mousedown", {seriesIndex: SERIES.ops}, startDrag);
      window.addEventListener("resize", () => S.chart.resize());
    }
    if (first) {
      S.chart.setOption(chartOption(), true);
    } else {
      S.chart.setOption({series: [{data: windowData()}, {data: opData(), markLine: {data: nowLine()}},
        {data: ghostData()}, {data: dueData()}]});
    }
  }
  function refreshBars() {  // colour, selection or status changed: same data, drawn again
    S.chart.setOption({series: [{}, {data: opData()}, {}, {data: dueData()}]});
  }

  // ---------------------------------------------------------------- panels
  function renderHeader() {
    const v = S.view;
    $("title").textContent = `${t("title")} · ${v.title}`;
    $("version").textContent = [v.plan_version ? t("plan_version", {v: v.plan_version}) : "",
      v.released_by ? t("released_by", {who: v.released_by}) : "",
      t("operations", {n: v.ops.id.length}), t("machines", {n: v.machines.length})].filter(Boolean).join(" · ");
    document.title = `paichan · ${v.title}`;
    const on = !!v.brake;
    $("brake").checked = on;
    $("brake").closest(".switch").classList.toggle("on", on);
    $("brake").closest(".switch").title = on ? t("brake_on") : t("brake_off");
    const viol = v.violations || [];
    $("violations").classList.toggle("hidden", !viol.length);
    $("violations").textContent = viol.length ? t("violations", {n: viol.length}) + " — " + viol.slice(0, 2).join("; ") : "";
  }
  function kpiRow(key, after, before) {
    let delta = "";
    if (before != null && after != null && before !== after) {
      const worse = after > before;
      delta = ` <span class="${worse ? "delta-bad" : "delta-good"}">(${esc(before)} → ${esc(after)})</span>`;
    }
    // durations read as time; weighted tardiness (time x priority) and counts as plain numbers
    const val = key === "makespan" || key === "total_setup" || key === "total_tardiness" ? fmtDur(after) : after;
    return `<span>${t(key)}</span><b data-kpi="${key}">${esc(val)}${delta}</b>`;
  }
  function renderKpis() {
    const k = S.view.kpis;
    if (!k) { $("kpis").textContent = "–"; return; }
    const b = S.reviewing ? S.reviewing.kpis_before || {} : {};
    let html = '<div class="kpi-grid">' + ["weighted_tardiness", "late_orders", "makespan", "total_setup"]
      .map((key) => kpiRow(key, k[key], S.reviewing ? b[key] : null)).join("") + "</div>";
    const lines = {};
    for (const [mid, u] of Object.entries(k.utilisation || {})) {
      const m = S.view.machines.find((x) => x.id === mid);
      const line = m ? m.line : mid;
      (lines[line] = lines[line] || []).push(u);
    }
    const rows = Object.entries(lines).map(([l, us]) => [l, us.reduce((a, c) => a + c, 0) / us.length])
      .sort((a, c) => c[1] - a[1]);
    html += `<div class="reason">${t("utilisation")}</div><div class="util">` + rows.slice(0, 12).map(([l, u]) =>
      `<span>${esc(l)}</span><span class="bar"><i style="width:${Math.round(u * 100)}%"></i></span>` +
      `<span>${Math.round(u * 100)}%</span>`).join("") + "</div>";
    $("kpis").innerHTML = html;
  }
  function reasonText(r) {
    if (!r) return "";
    const parts = [];
    if (r.bottleneck) parts.push(t("bottleneck", {m: r.bottleneck}));
    const w = r.waits || {};
    if (w.machine) parts.push(t("waited_machine", {n: w.machine}));
    if (w.previous) parts.push(t("waited_previous", {n: w.previous}));
    if (r.materials && r.materials.length) parts.push(t("waited_material", {m: r.materials.join(", ")}));
    if (w.calendar) parts.push(t("waited_calendar", {n: w.calendar}));
    return parts.join("; ");
  }
  function renderLate() {
    const byId = new Map(S.view.orders.map((o, k) => [o.id, k]));
    const rows = S.view.late.slice(0, 200).map((id) => S.view.orders[byId.get(id)]);
    $("late").innerHTML = rows.length ? rows.map((o) => `<div class="late-row" data-order="${esc(o.id)}">` +
      `<span class="tag ${o.status}">${esc(t(o.status))}</span> <b>${esc(o.id)}</b> ` +
      `${o.status === "late" ? esc(t("late_by", {d: fmtDur(o.tardiness)})) : esc(t("slack", {d: fmtDur(o.due - o.end)}))}` +
      ` · P${esc(o.priority)}<div class="reason">${esc(reasonText(o.reason))}</div></div>`).join("")
      : `<span class="reason">${t("none_late")}</span>`;
    $("late").querySelectorAll(".late-row").forEach((el) => el.addEventListener("click", () => focusOrder(el.dataset.order)));
  }
  function renderLegend() {
    const item = (style, label) => `<span class="legend-item"><i style="${style}"></i>${esc(label)}</span>`;
    let html = "";
    if (S.colour === "status") {
      html += ["on_time", "at_risk", "late", "pinned", "started", "done"].map((s) =>
        item(`background:${STATUS_COLOURS[s]}`, t(s))).join("");
    } else {
      html += item("background:linear-gradient(90deg,#4e79a7,#f28e2b,#59a14f)", t(S.colour === "family" ? "by_family" : "by_order"));
      html += item("background:#fff;border:2px solid #7b3fa0", t("pinned"));
      html += item("background:#fff;border:2px solid #1a4fa0", t("started"));
    }
    html += item("background:#3b3b3b;height:4px", t("setup_legend"));
    for (const k of S.view.window_kinds) {
      const st = k === "breakdown" ? "background:rgba(255,80,80,.35);border-color:#d62728"
        : k === "maintenance" ? `background:${WINDOW_COLOURS[k]};border:1px dashed #e8590c` : `background:${WINDOW_COLOURS[k]}`;
      html += item(st, t(k));
    }
    html += item("background:none;border:0;border-top:7px solid #333;width:0;height:0;border-left:5px solid transparent;border-right:5px solid transparent", t("due_legend"));
    html += item("background:none;border:0;border-left:2px dashed #2d6cdf", t("now_legend"));
    if (S.reviewing) {
      html += item("background:#fff;border:2px solid #ff7f0e", t("moved_legend"));
      html += item("background:rgba(255,127,14,.12);border:1px dashed #ff7f0e", t("ghost_legend"));
    }
    $("legend").innerHTML = html;
  }
  function renderProposals() {
    if (STATIC) return;
    const props = S.view.proposals || [];
    $("proposals").innerHTML = props.length ? props.map((p) => {
      const b = p.kpis_before || {}, a = p.kpis_after || {};
      return `<div class="card" data-proposal="${esc(p.id)}"><b>${esc(p.id)}</b> · ${esc(p.scope)} · ${esc(p.trigger)}` +
        `<div class="reason">${esc(t("moved", {n: p.moved}))}; ${esc(t("worse", {n: p.tardiness_worse}))}; ` +
        `${t("weighted_tardiness")} ${esc(b.weighted_tardiness)} → ${esc(a.weighted_tardiness)}</div>` +
        `<div class="row"><button data-act="review">${t("review")}</button></div></div>`;
    }).join("") : `<span class="reason">${t("no_proposals")}</span>`;
    $("proposals").querySelectorAll("[data-act=review]").forEach((btn) => btn.addEventListener("click", () =>
      review(btn.closest(".card").dataset.proposal)));
  }
  function renderBanner() {
    const p = S.reviewing;
    $("banner").classList.toggle("hidden", !p);
    if (!p) return;
    const b = p.kpis_before || {}, a = p.kpis_after || {};
    $("banner").innerHTML = `<b>${esc(t("reviewing", {id: p.id}))}</b>` +
      `<span>${esc(t("moved", {n: p.moved}))}</span><span>${esc(t("worse", {n: p.tardiness_worse}))}</span>` +
      `<span>${t("weighted_tardiness")}: ${esc(b.weighted_tardiness)} → <b>${esc(a.weighted_tardiness)}</b></span>` +
      `<span>${t("late_orders")}: ${esc(b.late_orders)} → <b>${esc(a.late_orders)}</b></span>` +
      (p.status === "proposed" && S.role === "planner" ? `<button id="bn-release" data-testid="release">${t("release")}</button>` +
        `<button id="bn-reject" class="danger" data-testid="reject">${t("reject")}</button>` : `<i>${esc(p.status)}</i>`) +
      `<button id="bn-back" class="secondary" data-testid="back">${t("back")}</button>`;
    const rel = $("bn-release"), rej = $("bn-reject");
    if (rel) rel.addEventListener("click", () => decide(p.id, "release"));
    if (rej) rej.addEventListener("click", () => decide(p.id, "reject"));
    $("bn-back").addEventListener("click", () => load(null));
  }
  function renderAll(first) {
    renderHeader(); renderKpis(); renderLate(); renderLegend(); renderProposals(); renderBanner();
    draw(first);
  }
  function activity(text) {
    const li = document.createElement("li");
    li.textContent = `${new Date().toLocaleTimeString(S.lang === "zh" ? "zh-CN" : "en-GB")} ${text}`;
    $("activity").prepend(li);
    while ($("activity").children.length > 100) $("activity").lastChild.remove();
  }
  let toastTimer = null;
  function toast(text, error) {
    const el = $("toast");
    el.textContent = text;
    el.classList.toggle("error", !!error);
    el.classList.remove("hidden");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.add("hidden"), error ? 8000 : 4000);
  }

  // ---------------------------------------------------------------- details, explain, focus
  async function select(i) {
    S.selected = i;
    refreshBars();
    const o = S.view.ops, ord = S.view.orders[o.order[i]], opId = o.id[i];
    const pin = (S.view.pins || []).find((p) => p.kind === "operation" && p.operation === opId);
    const rows = [[t("details"), opId], [t("order"), ord.id], [t("machine"), S.view.machines[o.machine[i]].id],
      [t("from"), fmtTime(o.start[i])], [t("to"), fmtTime(o.end[i])], [t("setup"), fmtDur(o.setup[i])],
      [t("state"), o.state[i] === 2 ? t("done") : o.state[i] === 1 ? t("started") : t("planned")],
      [t("due"), fmtTime(ord.due)], [t("ends"), fmtTime(ord.end)], [t("priority"), ord.priority],
      [t("order"), t(ord.status)]];
    let html = `<div class="row"><b>${esc(opId)}</b><span class="spacer"></span>` +
      `<button class="link" id="dt-close">${t("close")}</button></div><table>` +
      rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("") + "</table>";
    if (!STATIC && !S.reviewing && o.state[i] === 0 && S.role === "planner") {
      html += `<div class="row">` + (pin ? `<button id="dt-unpin" data-testid="unpin">${t("unpin")}</button>`
        : `<button id="dt-pin" data-testid="pin">${t("pin_here")}</button>`) + `</div>`;
    }
    html += `<h4>${t("explain")}</h4><div id="dt-explain" data-testid="explain">…</div>`;
    $("details").innerHTML = html;
    $("details").classList.remove("hidden");
    $("dt-close").addEventListener("click", () => { $("details").classList.add("hidden"); S.selected = null; refreshBars(); });
    if ($("dt-pin")) $("dt-pin").addEventListener("click", () => pinOp(opId, null, null));
    if ($("dt-unpin")) $("dt-unpin").addEventListener("click", () => api("DELETE", `/pins/${pin.id}`).then(() => {}, fail));
    if (STATIC) { $("dt-explain").innerHTML = esc(reasonText(ord.reason)) || "–"; return; }
    try {
      const ex = await api("GET", `/orders/${encodeURIComponent(ord.id)}/explain`);
      const chain = (ex.critical_chain || []).map((c) => `<tr><td>${esc(c.operation)}</td><td>${esc(c.machine)}</td>` +
        `<td>${esc(fmtTime(c.start))}</td><td>${esc(c.waited_for || "")}</td></tr>`).join("");
      const mats = (ex.material_waits || []).map((m) => `${esc(m.material)} (${esc(fmtTime(m.received))})`).join(", ");
      $("dt-explain").innerHTML = `<div>${t("bottleneck", {m: esc(ex.bottleneck || "–")})}</div>` +
        `<div>${t("critical_chain")}</div><table>${chain}</table>` +
        (mats ? `<div>${t("material_waits")}: ${mats}</div>` : "") +
        `<div>${t("negotiation")}: ${esc(t("rounds", {n: (ex.negotiation || []).length}))}</div>` +
        (ex.negotiation || []).slice(0, 8).map((n) => `<div class="reason">${esc(typeof n === "string" ? n : JSON.stringify(n))}</div>`).join("");
    } catch (e) { $("dt-explain").textContent = String(e.message || e); }
  }
  function focusOrder(orderId) {
    const k = S.view.orders.findIndex((o) => o.id === orderId);
    const i = S.orderLast[k];
    if (i == null || i < 0) return;
    const o = S.view.ops, span = Math.max(o.end[i] - o.start[i], 60) * 8;
    S.chart.dispatchAction({type: "dataZoom", dataZoomIndex: 0, startValue: ms(o.start[i] - span), endValue: ms(o.end[i] + span)});
    const m = o.machine[i];
    S.chart.dispatchAction({type: "dataZoom", dataZoomIndex: 2, startValue: Math.max(0, m - 10),
      endValue: Math.min(S.view.machines.length - 1, m + 20)});
    select(i);
  }

  // ---------------------------------------------------------------- API
  async function api(method, path, body) {
    const resp = await fetch(path, {method, credentials: "same-origin",
      headers: body ? {"content-type": "application/json"} : {}, body: body ? JSON.stringify(body) : undefined});
    if (resp.status === 401) { showLogin(); throw new Error(t("login_bad")); }
    if (resp.status === 204) return null;
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.detail || `${resp.status}`);
    return data;
  }
  const fail = (e) => toast(`${t("error")}: ${e.message || e}`, true);
  async function load(proposal) {
    const v = await api("GET", proposal ? `/view?proposal=${encodeURIComponent(proposal)}` : "/view");
    const first = !S.view;
    S.view = v;
    S.reviewing = v.proposal || null;
    S.selected = null;
    $("details").classList.add("hidden");
    renderAll(first);
    if (first) subscribe(v.live_from);
    else S.chart.setOption({xAxis: {max: ms(v.horizon)}, yAxis: {data: machineLabels()}});
  }
  function review(pid) { load(pid).catch(fail); }
  async function decide(pid, what) {
    try {
      await api("POST", `/proposals/${pid}/${what}`, what === "reject" ? {reason: "rejected on the planner's page"} : undefined);
      await load(null);
    } catch (e) { fail(e); }
  }
  async function pinOp(opId, resource, start) {
    const body = {kind: "operation", operation: opId, reason: "set on the planner's page"};
    if (resource != null) Object.assign(body, {resource, start});
    const pin = await api("POST", "/pins", body);
    return pin;
  }
  function signedIn(who) {  // a viewer reads; only a planner replans, releases, pins and brakes
    S.role = who.role;
    document.body.classList.toggle("viewer", who.role !== "planner");
    $("brake").disabled = who.role !== "planner";  // a viewer sees the brake, cannot move it
  }
  function showLogin() { $("login").classList.remove("hidden"); $("login-key").focus(); }

  // ---------------------------------------------------------------- drag an operation: a pinned manual move
  let drag = null;
  function chartXY(ev) {  // a mouse event's position in the chart's own pixels
    const r = $("chart").getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }
  function startDrag(p) {
    if (!S.move || STATIC || S.reviewing) return;
    const i = p.value[3];
    if (S.view.ops.state[i] !== 0) return;
    const ev = p.event.event, at = S.chart.convertFromPixel({gridIndex: 0}, chartXY(ev));
    drag = {i, grab: units(at[0]) - S.view.ops.start[i], x0: ev.clientX, y0: ev.clientY};
    window.addEventListener("mousemove", onDragMove);
    window.addEventListener("mouseup", onDragEnd);
  }
  function dragTarget(ev) {
    const at = S.chart.convertFromPixel({gridIndex: 0}, chartXY(ev));
    const row = Math.max(0, Math.min(S.view.machines.length - 1, Math.round(at[1])));
    return {machine: S.view.machines[row].id, start: Math.max(0, units(at[0]) - drag.grab)};
  }
  function onDragMove(ev) {
    if (!drag) return;
    const tg = dragTarget(ev);
    $("toast").classList.remove("hidden", "error");
    $("toast").textContent = `${S.view.ops.id[drag.i]} → ${tg.machine} ${fmtTime(tg.start)}`;
  }
  async function onDragEnd(ev) {
    window.removeEventListener("mousemove", onDragMove);
    window.removeEventListener("mouseup", onDragEnd);
    if (!drag) return;
    const d = drag, tg = dragTarget(ev);
    drag = null;
    if (Math.abs(ev.clientX - d.x0) + Math.abs(ev.clientY - d.y0) < 4) { $("toast").classList.add("hidden"); return; }
    await moveOp(S.view.ops.id[d.i], tg.machine, tg.start);
  }
  async function moveOp(opId, machine, start) {  // also the test's entry point for a drag without a mouse
    try {
      await pinOp(opId, machine, start);
      const line = machine.split("/").slice(0, 2).join("/");
      const job = await api("POST", "/replans", {scope: machine.split("/").length > 2 ? "line" : "all",
        target: machine.split("/").length > 2 ? line : null, time_limit: Number($("rp-limit").value) || 10});
      S.jobs[job.id] = job;
      toast(t("moved_pinned", {op: opId, m: machine, t: fmtTime(start), line}));
      return job;
    } catch (e) { fail(e); return null; }
  }
  S.moveOp = moveOp;

  // ---------------------------------------------------------------- replan dialog, brake
  function targets() {
    const scope = $("rp-scope").value, seen = new Set();
    $("rp-target").innerHTML = "";
    $("rp-target").disabled = scope === "all";
    for (const m of S.view.machines) {
      const v = scope === "plant" ? m.plant : m.line;
      if (scope !== "all" && !seen.has(v)) {
        seen.add(v);
        $("rp-target").insertAdjacentHTML("beforeend", `<option>${esc(v)}</option>`);
      }
    }
  }
  async function startReplan() {
    const scope = $("rp-scope").value;
    const body = {scope, target: scope === "all" ? null : $("rp-target").value,
      freeze_minutes: Number($("rp-freeze").value) || 0, time_limit: Number($("rp-limit").value) || 10};
    try {
      const job = await api("POST", "/replans", body);
      S.jobs[job.id] = job;
      $("replan-dialog").classList.add("hidden");
      renderProgress();
    } catch (e) { fail(e); }
  }
  function renderProgress() {
    const active = Object.values(S.jobs).filter((j) => j.status === "queued" || j.status === "running");
    $("progress").innerHTML = active.map((j) => {
      const pct = j.elapsed && j.time_limit ? Math.min(100, Math.round(100 * j.elapsed / j.time_limit)) : 3;
      return `<div data-job="${esc(j.id)}">${esc(t("replan_running", {id: j.id, scope: `${j.scope || (j.spec || {}).scope}`,
        status: j.status}))}${j.objective != null ? " · " + esc(t("replan_objective", {o: j.objective, t: (j.elapsed || 0).toFixed(1)})) : ""}` +
        `<div class="progress"><i style="width:${pct}%"></i></div></div>`;
    }).join("");
  }
  async function toggleBrake() {
    try {
      if ($("brake").checked) await api("POST", "/brake", {reason: "set on the planner's page"});
      else await api("DELETE", "/brake");
    } catch (e) { fail(e); $("brake").checked = !$("brake").checked; }
  }

  // ---------------------------------------------------------------- live updates (server-sent events)
  function subscribe(since) {
    if (STATIC) return;
    if (S.es) S.es.close();
    const es = new EventSource(`/live?since=${encodeURIComponent(since)}`);
    S.es = es;
    es.onopen = () => { $("live").textContent = t("connected"); $("live").classList.remove("off"); };
    es.onerror = () => { $("live").textContent = t("disconnected"); $("live").classList.add("off"); };
    const on = (kind, fn) => es.addEventListener(kind, (m) => {
      try { fn(JSON.parse(m.data)); } catch (e) { console.error(kind, e); }
      S.lastLive = {kind, id: m.lastEventId, at: performance.now()};
    });
    on("events", onEvents);
    on("replan", (j) => {
      S.jobs[j.id] = Object.assign(S.jobs[j.id] || {}, j);
      renderProgress();
      if (j.status === "failed") activity(`${t("replan")} ${j.id}: ${j.error || "failed"}`);
    });
    on("proposal", (p) => {
      S.view.proposals = [p, ...(S.view.proposals || []).filter((x) => x.id !== p.id)];
      renderProposals();
      activity(t("proposal_new", {id: p.id, n: p.moved}));
    });
    on("release", onRelease);
    on("reject", (d) => {
      S.view.proposals = (S.view.proposals || []).filter((x) => x.id !== d.proposal);
      renderProposals();
      activity(t("rejected_msg", {id: d.proposal}));
    });
    on("pin", (d) => {
      S.view.pins = [...(S.view.pins || []), d.pin];
      setPinned(d.pin.operation, 1);
      activity(t("pinned_msg", {op: d.pin.operation || d.pin.machine || d.pin.until}));
    });
    on("unpin", (d) => {
      const pin = (S.view.pins || []).find((p) => p.id === d.id);
      S.view.pins = (S.view.pins || []).filter((p) => p.id !== d.id);
      if (pin) setPinned(pin.operation, 0);
      activity(t("unpinned_msg"));
    });
    on("brake", (d) => {
      S.view.brake = d.brake;
      renderHeader();
      activity(d.brake ? t("brake_msg_on", {who: d.brake.by}) : t("brake_msg_off"));
    });
  }
  function setPinned(opId, flag) {
    const i = S.opIndex.get(opId);
    if (i == null || S.reviewing) return;
    S.view.ops.pinned[i] = flag;
    refreshBars();
  }
  function onEvents(d) {
    const mix = new Map(S.view.machines.map((m, i) => [m.id, i]));
    const touched = new Set(Object.keys(d.windows || {}).map((id) => mix.get(id)).filter((i) => i != null));
    if (touched.size && !S.reviewing) {
      S.view.windows = S.view.windows.filter((w) => !touched.has(w[0]));
      for (const [id, ws] of Object.entries(d.windows)) {
        const i = mix.get(id);
        if (i != null) for (const w of ws) S.view.windows.push([i, w[0], w[1], w[2]]);
      }
    }
    for (const [opId, st] of Object.entries(d.states || {})) {
      const i = S.opIndex.get(opId);
      if (i != null && !S.reviewing) S.view.ops.state[i] = st;
    }
    if (!S.reviewing) draw(false);
    for (const e of d.summary || []) {
      activity(e.machine && e.state ? t("ev_breakdown", {m: e.machine, s: e.state}) : t("ev_progress", {op: e.operation, s: e.status}));
    }
    if (!(d.summary || []).length) activity(t("ev_events", {n: d.applied}));
  }
  function onRelease(d) {
    activity(t("released_msg", {v: d.version, who: d.by}));
    S.view.proposals = (S.view.proposals || []).filter((x) => x.id !== d.proposal);
    if (S.reviewing) { renderProposals(); return; }  // the reviewer goes back by hand (or already did)
    const o = S.view.ops, mix = new Map(S.view.machines.map((m, i) => [m.id, i]));
    for (const [opId, res, start, end, setup] of d.ops || []) {
      const i = S.opIndex.get(opId);
      if (i == null || !mix.has(res)) continue;
      o.machine[i] = mix.get(res); o.start[i] = start; o.end[i] = end; o.setup[i] = setup;
    }
    const oix = new Map(S.view.orders.map((x, k) => [x.id, k]));
    for (const row of d.orders || []) {
      const k = oix.get(row.id);
      if (k != null) S.view.orders[k] = Object.assign(S.view.orders[k], row);
    }
    S.view.late = S.view.orders.filter((x) => x.status === "late" || x.status === "at_risk")
      .sort((a, b) => (a.status !== "late") - (b.status !== "late") || b.tardiness * b.priority - a.tardiness * a.priority)
      .map((x) => x.id);
    if (d.kpis) S.view.kpis = d.kpis;
    S.view.plan_version = d.version;
    S.view.released_by = d.by;
    S.view.violations = [];
    renderAll(false);
  }

  // ---------------------------------------------------------------- start
  function wire() {
    $("lang").addEventListener("change", () => {
      S.lang = $("lang").value;
      localStorage.setItem("paichan.lang", S.lang);
      applyWords();
      if (S.view) {
        S.chart.dispose(); S.chart = null;
        renderAll(true);
      }
    });
    $("colour").addEventListener("change", () => { S.colour = $("colour").value; renderLegend(); refreshBars(); });
    if (STATIC) return;
    $("move").addEventListener("change", () => {
      S.move = $("move").checked;
      S.chart.setOption({dataZoom: [{}, {moveOnMouseMove: !S.move}]});
    });
    $("replan-btn").addEventListener("click", () => { targets(); $("replan-dialog").classList.remove("hidden"); });
    $("rp-scope").addEventListener("change", targets);
    $("rp-go").addEventListener("click", startReplan);
    $("rp-cancel").addEventListener("click", () => $("replan-dialog").classList.add("hidden"));
    $("brake").addEventListener("change", toggleBrake);
    $("login-go").addEventListener("click", async () => {
      const resp = await fetch("/ui/login", {method: "POST", headers: {"content-type": "application/json"},
        body: JSON.stringify({key: $("login-key").value})});
      if (!resp.ok) { $("login-err").textContent = t("login_bad"); return; }
      signedIn(await resp.json());
      $("login").classList.add("hidden");
      load(null).catch(fail);
    });
    $("login-key").addEventListener("keydown", (e) => { if (e.key === "Enter") $("login-go").click(); });
    $("logout").addEventListener("click", async () => {
      await fetch("/ui/logout", {method: "POST"});
      if (S.es) S.es.close();
      location.reload();
    });
  }
  S.lang = pickLanguage();
  applyWords();
  wire();
  if (STATIC) {
    document.body.classList.add("static");
    S.view = window.PAICHAN_VIEW;
    renderAll(true);
    $("version").title = t("static_note");
  } else {
    fetch("/ui/me", {credentials: "same-origin"}).then(async (r) => {
      if (r.status === 401 || r.status === 403) showLogin();
      else { signedIn(await r.json()); load(null).catch(fail); }
    }, fail);
  }
})();

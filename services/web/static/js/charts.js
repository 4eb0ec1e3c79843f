// A run's charts over uPlot: one chart per metric key (its contexts as lines), data downsampled
// by the server to the chart's width, drag to zoom (the range is fetched again at full
// resolution), double-click to reset, EMA smoothing, log scale, x as step / relative / wall time,
// and live points from the server's event stream while the run is RUNNING.
/* global uPlot */

const root = document.getElementById("run");
const runId = root.dataset.runId;
const startMs = Number(root.dataset.startMs);
const tools = {
  x: document.getElementById("x-axis"),
  smoothing: document.getElementById("smoothing"),
  smoothingValue: document.getElementById("smoothing-value"),
  log: document.getElementById("log-scale"),
  live: document.getElementById("live-state"),
};
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d"];
const CONTEXT_COLOR = { "": 0, train: 0, eval: 1, test: 2 };
const charts = new Map(); // key → Chart
let cachedWidth = 0;

// -- view state, kept in the URL ------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const state = {
  x: ["step", "relative", "wall"].includes(params.get("x")) ? params.get("x") : "step",
  smoothing: Math.min(0.99, Math.max(0, Number(params.get("smooth")) || 0)),
  log: params.get("log") === "1",
};

function saveState() {
  const p = new URLSearchParams(location.search);
  const set = (name, value, fallback) => (value === fallback ? p.delete(name) : p.set(name, value));
  set("x", state.x, "step");
  set("smooth", String(state.smoothing), "0");
  set("log", state.log ? "1" : "0", "0");
  history.replaceState(null, "", `${location.pathname}?${p}`);
}

// -- numbers --------------------------------------------------------------------------------------

function ema(values, alpha) {
  if (!alpha) return values;
  const out = new Array(values.length);
  let last = null;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) { out[i] = null; continue; }
    last = last === null ? v : alpha * last + (1 - alpha) * v;
    out[i] = last;
  }
  return out;
}

function xOf(series) {
  if (state.x === "step") return series.steps;
  if (state.x === "relative") return series.ts.map((t) => (t - startMs) / 1000);
  return series.ts.map((t) => t / 1000);
}

function fmtValue(v) {
  if (v === null || v === undefined) return "—";
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
}

function fmtTick(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e5 || a < 1e-2) return v.toExponential(1).replace("e-", "e−");
  return String(Number(v.toPrecision(3)));
}

function fmtX(x) {
  if (state.x === "step") return `step ${x}`;
  if (state.x === "relative") return `${x.toFixed(1)} s`;
  return new Date(x * 1000).toISOString().replace("T", " ").slice(0, 19);
}

// -- one chart ------------------------------------------------------------------------------------

class Chart {
  constructor(figure) {
    this.figure = figure;
    this.key = figure.dataset.key;
    this.plotEl = figure.querySelector(".plot");
    this.note = figure.querySelector(".chart-note");
    this.full = new Map(); // context → series as loaded at full range
    this.shown = new Map(); // context → series drawn now (a zoomed range, or the full one)
    this.zoomed = false;
    this.plot = null;
  }

  // Every chart of the grid is as wide as the first: read once, not once per chart (each read
  // after a chart was inserted would force a layout of the whole page).
  width() {
    if (!cachedWidth) cachedWidth = Math.max(200, Math.floor(this.plotEl.clientWidth || 480));
    return cachedWidth;
  }

  setSeries(list) {
    for (const s of list) { this.full.set(s.context, s); }
    this.shown = new Map(this.full);
    this.zoomed = false;
    this.draw();
  }

  appendLive(s) {
    const known = this.full.get(s.context);
    if (!known) { this.full.set(s.context, { ...s, special: [...s.special] }); this.redraw(); return s.steps.length; }
    const last = known.steps.length ? known.steps[known.steps.length - 1] : -Infinity;
    let added = 0;
    for (let i = 0; i < s.steps.length; i++) {
      if (s.steps[i] <= last) continue; // already there (a resumed stream, or the history's overlap)
      known.steps.push(s.steps[i]); known.values.push(s.values[i]); known.ts.push(s.ts[i]);
      added++;
    }
    for (const sp of s.special) if (sp[0] > last) known.special.push(sp);
    if (added) this.redraw();
    return added;
  }

  redraw() {
    if (!this.zoomed) this.shown = new Map(this.full);
    this.draw(this.zoomed);
  }

  data() {
    const contexts = [...this.shown.keys()].sort();
    const tables = contexts.map((c) => {
      const s = this.shown.get(c);
      const values = state.log ? s.values.map((v) => (v !== null && v > 0 ? v : null)) : s.values;
      return state.smoothing ? [xOf(s), values, ema(values, state.smoothing)] : [xOf(s), values];
    });
    const joined = tables.length === 1 ? tables[0] : uPlot.join(tables);
    return { contexts, data: joined };
  }

  draw(keepScale = false) {
    const { contexts, data } = this.data();
    const points = [...this.full.values()].reduce((n, s) => n + s.steps.length, 0);
    this.figure.dataset.points = String(points);
    const special = [...this.full.values()].flatMap((s) => s.special);
    const total = [...this.full.values()].reduce((n, s) => n + (s.total || s.steps.length), 0);
    this.baseNote = [
      total > points ? `${points.toLocaleString()} of ${total.toLocaleString()} points` : "",
      special.length ? `${special.length} NaN/Inf (gaps)` : "",
    ].filter(Boolean).join(" · ");
    this.note.textContent = this.baseNote;
    const signature = `${contexts.join(",")}|${state.x}|${state.smoothing > 0}|${state.log}`;
    if (this.plot && this.signature === signature) {
      this.plot.setData(data, !keepScale);
      return;
    }
    if (this.plot) this.plot.destroy();
    this.signature = signature;
    const series = [{ label: state.x }];
    contexts.forEach((c, i) => {
      const color = COLORS[(CONTEXT_COLOR[c] ?? i) % COLORS.length];
      const sparse = this.shown.get(c).steps.length <= 60; // few points: draw each one
      const label = c ? `${this.key}@${c}` : this.key;
      if (state.smoothing) {
        series.push({ label: `${label} (raw)`, stroke: `${color}40`, width: 1, spanGaps: false });
        series.push({ label, stroke: color, width: 1.75, spanGaps: false });
      } else {
        series.push({ label, stroke: color, width: 1.5, spanGaps: false, points: { show: sparse, size: 5, fill: color } });
      }
    });
    const chart = this;
    this.plot = new uPlot({
      width: this.width(), height: 210, series, legend: { show: false },
      scales: { x: { time: state.x === "wall" }, y: { distr: state.log ? 3 : 1 } },
      axes: [{ stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" } },
             { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" }, size: 60,
               values: (u, ticks) => ticks.map(fmtTick) }],
      cursor: { drag: { x: true, y: false } },
      hooks: {
        setSelect: [(u) => { if (u.select.width > 2) chart.zoom(u); }],
        setCursor: [(u) => chart.hover(u)],
      },
    }, data, this.plotEl);
    this.plot.over.addEventListener("dblclick", () => this.reset());
  }

  hover(u) {
    const i = u.cursor.idx;
    if (i === null || i === undefined) { this.note.textContent = this.baseNote; return; }
    const x = u.data[0][i];
    const parts = [fmtX(x)];
    for (let s = 1; s < u.series.length; s++) {
      if (state.smoothing && s % 2 === 1) continue; // the raw line of a smoothed pair
      const v = u.data[s][i];
      if (v !== null && v !== undefined) parts.push(`${u.series[s].label}: ${fmtValue(v)}`);
    }
    for (const s of this.shown.values()) { // the wall time of the point under the cursor
      const at = xOf(s).indexOf(x);
      if (at >= 0) { parts.push(new Date(s.ts[at]).toISOString().slice(11, 19) + " UTC"); break; }
    }
    this.note.textContent = parts.join(" · ");
  }

  async zoom(u) {
    const x0 = u.posToVal(u.select.left, "x");
    const x1 = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    let lo = Infinity; let hi = -Infinity;
    for (const s of this.full.values()) {
      const xs = xOf(s);
      for (let i = 0; i < xs.length; i++) {
        if (xs[i] >= x0 && xs[i] <= x1) { lo = Math.min(lo, s.steps[i]); hi = Math.max(hi, s.steps[i]); }
      }
      // the points between two downsampled neighbours belong to the range too
      const first = xs.findIndex((v) => v >= x0);
      if (first > 0) lo = Math.min(lo, s.steps[first - 1]);
      const after = xs.findIndex((v) => v > x1);
      if (after >= 0) hi = Math.max(hi, s.steps[after]);
    }
    if (!Number.isFinite(lo)) return;
    const width = this.width();
    const fetched = await Promise.all([...this.full.keys()].map((context) => getJSON(
      `/api/runs/${runId}/history?key=${encodeURIComponent(this.key)}&context=${context}&start=${lo}&end=${hi}&width=${width}`)));
    this.shown = new Map(fetched.map((s) => [s.context, s]));
    this.zoomed = true;
    this.figure.dataset.zoomed = `${lo}-${hi}`;
    this.draw(true);
    this.plot.setScale("x", { min: x0, max: x1 });
  }

  reset() {
    this.zoomed = false;
    delete this.figure.dataset.zoomed;
    this.shown = new Map(this.full);
    this.draw();
  }
}

// -- loading and live updates ---------------------------------------------------------------------

async function getJSON(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message || `${response.status} ${response.statusText}`);
  }
  return response.json();
}

function chartFor(key) {
  if (charts.has(key)) return charts.get(key);
  // a key the run started logging after the page opened
  if (key.startsWith("system/") !== (document.getElementById("charts").dataset.tab === "system")) return null;
  let grid = document.querySelector(".chart-grid.new-keys");
  if (!grid) {
    const section = document.createElement("section");
    section.className = "chart-group";
    const title = document.createElement("h2");
    title.className = "group-title";
    title.textContent = "new";
    grid = document.createElement("div");
    grid.className = "chart-grid new-keys";
    section.append(title, grid);
    document.getElementById("charts").prepend(section);
  }
  const figure = document.createElement("figure");
  figure.className = "chart card";
  figure.dataset.key = key;
  const caption = document.createElement("figcaption");
  const title = document.createElement("span");
  title.className = "chart-title";
  title.textContent = key;
  const note = document.createElement("span");
  note.className = "chart-note muted small";
  const plot = document.createElement("div");
  plot.className = "plot";
  caption.append(title, " ", note);
  figure.append(caption, plot);
  grid.append(figure);
  const chart = new Chart(figure);
  charts.set(key, chart);
  return chart;
}

async function loadAll() {
  const keys = [...charts.keys()];
  if (!keys.length) { document.body.dataset.chartsReady = "1"; return; }
  const width = charts.values().next().value.width();
  const query = keys.map((k) => `key=${encodeURIComponent(k)}`).join("&");
  const { series } = await getJSON(`/api/runs/${runId}/metrics?width=${width}&${query}`);
  const byKey = new Map();
  for (const s of series) { if (!byKey.has(s.key)) byKey.set(s.key, []); byKey.get(s.key).push(s); }
  for (const [key, list] of byKey) charts.get(key)?.setSeries(list);
  document.body.dataset.chartsReady = "1";
}

function setStatus(status) {
  const badge = document.getElementById("status-badge");
  badge.className = `badge ${status}`;
  badge.textContent = status;
  root.dataset.status = status;
}

function followLive() {
  let pending = []; // points that arrived before the history was loaded
  let loaded = false;
  let livePoints = 0;
  const events = new EventSource(`/api/runs/${runId}/live`);
  const apply = (batch) => {
    for (const s of batch.series) {
      const chart = chartFor(s.key);
      if (chart) livePoints += chart.appendLive(s);
    }
    document.body.dataset.livePoints = String(livePoints);
  };
  events.addEventListener("ready", async () => {
    tools.live.textContent = "● live";
    tools.live.classList.add("on");
    loaded = false;
    try { await loadAll(); } catch (e) { tools.live.textContent = `charts failed to load: ${e.message}`; }
    loaded = true;
    pending.forEach(apply);
    pending = [];
  });
  events.addEventListener("points", (e) => {
    const batch = JSON.parse(e.data);
    if (loaded) apply(batch); else pending.push(batch);
  });
  events.addEventListener("status", (e) => {
    const { status, ended } = JSON.parse(e.data);
    setStatus(status);
    if (ended) { events.close(); tools.live.textContent = "run ended"; tools.live.classList.remove("on"); }
  });
  events.addEventListener("error", () => { if (events.readyState !== EventSource.CLOSED) tools.live.textContent = "reconnecting…"; });
}

function redrawAll() {
  saveState();
  for (const chart of charts.values()) { chart.zoomed = false; chart.shown = new Map(chart.full); chart.signature = ""; chart.draw(); }
}

function init() {
  for (const figure of document.querySelectorAll("figure.chart")) charts.set(figure.dataset.key, new Chart(figure));
  tools.x.value = state.x;
  tools.smoothing.value = String(state.smoothing);
  tools.smoothingValue.textContent = String(state.smoothing);
  tools.log.checked = state.log;
  tools.x.addEventListener("change", () => { state.x = tools.x.value; redrawAll(); });
  tools.smoothing.addEventListener("input", () => {
    state.smoothing = Number(tools.smoothing.value);
    tools.smoothingValue.textContent = tools.smoothing.value;
    redrawAll();
  });
  tools.log.addEventListener("change", () => { state.log = tools.log.checked; redrawAll(); });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      cachedWidth = 0;
      for (const c of charts.values()) c.plot?.setSize({ width: c.width(), height: 210 });
    }, 150);
  });
  if (root.dataset.status === "RUNNING") followLive();
  else loadAll().catch((e) => { tools.live.textContent = `charts failed to load: ${e.message}`; });
}

init();

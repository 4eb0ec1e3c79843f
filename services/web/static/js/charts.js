// Metric charts over uPlot, for a run's page and the compare page: one chart per metric key with
// a line per context (a run) or per run (compare), data downsampled by the server to the chart's
// width, drag to zoom (the range is fetched again at full resolution), double-click to reset, EMA
// smoothing, log scale, x as step / relative / wall time, PNG and SVG downloads; on a run's page
// also CSV downloads of each series and live points while the run is RUNNING.
//
// As a module it exports the Chart and the shared pieces (state in the URL, formatting, colours);
// loaded by a run's page (an element #run and #charts) it runs that page.
/* global uPlot */

export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d"];
const RUN_COLORS = ["#2563eb", "#e4572e", "#17a673", "#8e44ad", "#f0a202", "#0fa3b1", "#d6336c", "#6c757d",
  "#4c6ef5", "#a0522d", "#2f9e44", "#c2255c", "#1098ad", "#e67700", "#5f3dc4", "#495057"];
const CONTEXT_COLOR = { "": 0, train: 0, eval: 1, test: 2 };
const HEIGHT = 210;
let cachedWidth = 0;

// A run's colour by its position in the compared list: the same on every chart of the page.
export function runColor(i) {
  return i < RUN_COLORS.length ? RUN_COLORS[i] : `hsl(${Math.round((i * 137.508) % 360)}, 62%, 46%)`;
}

// -- view state, kept in the URL ------------------------------------------------------------------

const params = new URLSearchParams(location.search);
export const state = {
  x: ["step", "relative", "wall"].includes(params.get("x")) ? params.get("x") : "step",
  smoothing: Math.min(0.99, Math.max(0, Number(params.get("smooth")) || 0)),
  log: params.get("log") === "1",
};

// Writes `values` (name → value; the fallback value removes the name) and the charts' state into
// the URL, keeping every other parameter.
export function saveState(values = {}) {
  const p = new URLSearchParams(location.search);
  const set = (name, value, fallback) => (value === fallback ? p.delete(name) : p.set(name, value));
  set("x", state.x, "step");
  set("smooth", String(state.smoothing), "0");
  set("log", state.log ? "1" : "0", "0");
  for (const [name, value] of Object.entries(values)) set(name, value, "");
  history.replaceState(null, "", `${location.pathname}?${readable(p)}`);
}

// A query string with its commas and slashes as typed (both are fine there): readable links.
export function readable(query) {
  return String(query).replaceAll("%2C", ",").replaceAll("%2F", "/");
}

// -- numbers --------------------------------------------------------------------------------------

export function ema(values, alpha) {
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

function xOf(line, series) {
  if (state.x === "step") return series.steps;
  if (state.x === "relative") return series.ts.map((t) => (t - line.startMs) / 1000);
  return series.ts.map((t) => t / 1000);
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "—";
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
}

export function fmtTick(v) {
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

export async function getJSON(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message || `${response.status} ${response.statusText}`);
  }
  return response.json();
}

export const AXIS = { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" } };

// -- downloads ------------------------------------------------------------------------------------

function download(href, filename) {
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
}

function fileName(title) {
  return title.replace(/[^A-Za-z0-9_.@-]+/g, "_");
}

// The chart as drawn (its canvas) on white under its title, as a PNG.
export function downloadPNG(plot, title) {
  const source = plot.ctx.canvas;
  const ratio = source.width / plot.width;
  const canvas = document.createElement("canvas");
  canvas.width = source.width;
  canvas.height = source.height + Math.round(28 * ratio);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#1c2430";
  ctx.font = `600 ${Math.round(13 * ratio)}px system-ui, sans-serif`;
  ctx.fillText(title, 8 * ratio, 18 * ratio);
  ctx.drawImage(source, 0, Math.round(28 * ratio));
  download(canvas.toDataURL("image/png"), `${fileName(title)}.png`);
}

function escapeXML(text) {
  return String(text).replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" }[c]));
}

// The visible lines as SVG paths in the plot's own coordinates, with the axes' ends and a legend.
export function plotSVG(plot, title) {
  const w = plot.bbox.width / devicePixelRatio; const h = plot.bbox.height / devicePixelRatio;
  const pad = { l: 64, t: 30, r: 16, b: 34 };
  const parts = [];
  const legend = [];
  plot.series.forEach((s, i) => {
    if (i === 0 || !s.show || typeof s.stroke !== "function") return;
    const color = s.stroke(plot, i);
    let d = ""; let pen = false;
    for (let j = 0; j < plot.data[0].length; j++) {
      const y = plot.data[i][j];
      if (y === null || y === undefined) { pen = false; continue; }
      const px = plot.valToPos(plot.data[0][j], "x"); const py = plot.valToPos(y, "y");
      if (!Number.isFinite(px) || !Number.isFinite(py)) continue;
      d += `${pen ? "L" : "M"}${(px + pad.l).toFixed(1)} ${(py + pad.t).toFixed(1)}`;
      pen = true;
    }
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${escapeXML(color)}" stroke-width="${s.width || 1.5}"/>`);
    if (d && !String(s.label).endsWith("(raw)")) legend.push([s.label, color]);
  });
  const x = plot.scales.x; const y = plot.scales.y;
  const width = w + pad.l + pad.r; const height = h + pad.t + pad.b + 16 * Math.ceil(legend.length / 3);
  const text = (tx, ty, t, anchor = "start") => `<text x="${tx}" y="${ty}" text-anchor="${anchor}">${escapeXML(t)}</text>`;
  const legendItems = legend.map(([label, color], i) => {
    const lx = pad.l + (i % 3) * (w / 3); const ly = pad.t + h + 34 + 16 * Math.floor(i / 3);
    return `<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${escapeXML(color)}"/>${text(lx + 14, ly, label)}`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="system-ui, sans-serif" font-size="11" fill="#475569">
<rect width="100%" height="100%" fill="#fff"/>
<text x="${pad.l}" y="18" font-size="13" font-weight="600" fill="#1c2430">${escapeXML(title)}</text>
<rect x="${pad.l}" y="${pad.t}" width="${w}" height="${h}" fill="none" stroke="#e2e8f0"/>
${text(pad.l - 6, pad.t + 10, fmtTick(y.max), "end")}${text(pad.l - 6, pad.t + h, fmtTick(y.min), "end")}
${text(pad.l, pad.t + h + 16, state.x === "wall" ? fmtX(x.min) : fmtTick(x.min))}${text(pad.l + w, pad.t + h + 16, state.x === "wall" ? fmtX(x.max) : fmtTick(x.max), "end")}
${text(pad.l + w / 2, pad.t + h + 16, state.x, "middle")}
${parts.join("\n")}
${legendItems.join("\n")}
</svg>`;
}

export function downloadSVG(plot, title) {
  const blob = new Blob([plotSVG(plot, title)], { type: "image/svg+xml" });
  const url = URL.createObjectURL(blob);
  download(url, `${fileName(title)}.svg`);
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Buttons for the downloads of a chart, in its caption (`title`: a string or a function giving
// one); `links` are [label, href] of files.
export function addDownloads(figure, title, getPlot, links = []) {
  const actions = document.createElement("span");
  actions.className = "chart-actions";
  for (const [label, save] of [["PNG", downloadPNG], ["SVG", downloadSVG]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = label;
    button.title = `Download this chart as ${label}`;
    button.addEventListener("click", () => {
      const plot = getPlot();
      if (plot) save(plot, typeof title === "function" ? title() : title);
    });
    actions.append(button);
  }
  for (const [label, href] of links) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = label;
    a.title = "Download every point of this series as CSV";
    actions.append(a);
  }
  figure.querySelector("figcaption").append(actions);
}

// -- one chart ------------------------------------------------------------------------------------

// A line: { id, label, color, runId, context, startMs }; its series: { steps, values, ts, special, total }.
export class Chart {
  constructor(figure) {
    this.figure = figure;
    this.key = figure.dataset.key;
    this.plotEl = figure.querySelector(".plot");
    this.note = figure.querySelector(".chart-note");
    this.lines = new Map(); // line id → line
    this.full = new Map(); // line id → series as loaded at full range
    this.shown = new Map(); // line id → series drawn now (a zoomed range, or the full one)
    this.hidden = new Set(); // line ids not drawn (runs outside a brush)
    this.zoomed = false;
    this.plot = null;
  }

  // Every chart of the grid is as wide as the first: read once, not once per chart (each read
  // after a chart was inserted would force a layout of the whole page).
  width() {
    if (!cachedWidth) cachedWidth = Math.max(200, Math.floor(this.plotEl.clientWidth || 480));
    return cachedWidth;
  }

  // Lines with their series, in the order they are drawn.
  setLines(list) {
    for (const { series, ...line } of list) { this.lines.set(line.id, line); this.full.set(line.id, series); }
    this.shown = new Map(this.full);
    this.zoomed = false;
    this.draw();
  }

  appendLive(line, s) {
    const known = this.full.get(line.id);
    if (!known) {
      this.lines.set(line.id, line);
      this.full.set(line.id, { ...s, special: [...s.special] });
      this.redraw();
      return s.steps.length;
    }
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

  ids() {
    return [...this.lines.keys()].filter((id) => this.shown.has(id));
  }

  data() {
    const ids = this.ids();
    const tables = ids.map((id) => {
      const s = this.shown.get(id);
      const values = state.log ? s.values.map((v) => (v !== null && v > 0 ? v : null)) : s.values;
      const x = xOf(this.lines.get(id), s);
      return state.smoothing ? [x, values, ema(values, state.smoothing)] : [x, values];
    });
    if (!tables.length) return { ids, data: [[]] };
    return { ids, data: tables.length === 1 ? tables[0] : uPlot.join(tables) };
  }

  draw(keepScale = false) {
    const { ids, data } = this.data();
    const points = [...this.full.values()].reduce((n, s) => n + s.steps.length, 0);
    this.figure.dataset.points = String(points);
    this.figure.dataset.lines = String(ids.length);
    const special = [...this.full.values()].flatMap((s) => s.special);
    const total = [...this.full.values()].reduce((n, s) => n + (s.total || s.steps.length), 0);
    this.baseNote = [
      total > points ? `${points.toLocaleString()} of ${total.toLocaleString()} points` : "",
      special.length ? `${special.length} NaN/Inf (gaps)` : "",
    ].filter(Boolean).join(" · ");
    this.note.textContent = this.baseNote;
    const signature = `${ids.join(",")}|${state.x}|${state.smoothing > 0}|${state.log}`;
    if (this.plot && this.signature === signature) {
      this.plot.setData(data, !keepScale);
      return;
    }
    if (this.plot) this.plot.destroy();
    this.signature = signature;
    const series = [{ label: state.x }];
    const many = ids.length > 8;
    for (const id of ids) {
      const { label, color } = this.lines.get(id);
      const show = !this.hidden.has(id);
      const sparse = this.shown.get(id).steps.length <= 60; // few points: draw each one
      if (state.smoothing) {
        series.push({ label: `${label} (raw)`, stroke: `${color}40`, width: 1, spanGaps: false, show });
        series.push({ label, stroke: color, width: many ? 1.25 : 1.75, spanGaps: false, show });
      } else {
        series.push({ label, stroke: color, width: many ? 1.1 : 1.5, spanGaps: false, show,
          points: { show: sparse, size: 5, fill: color } });
      }
    }
    const chart = this;
    this.plot = new uPlot({
      width: this.width(), height: HEIGHT, series, legend: { show: false },
      scales: { x: { time: state.x === "wall" }, y: { distr: state.log ? 3 : 1 } },
      axes: [AXIS, { ...AXIS, size: 60, values: (u, ticks) => ticks.map(fmtTick) }],
      cursor: { drag: { x: true, y: false } },
      hooks: {
        setSelect: [(u) => { if (u.select.width > 2) chart.zoom(u); }],
        setCursor: [(u) => chart.hover(u)],
      },
    }, data, this.plotEl);
    this.plot.over.addEventListener("dblclick", () => this.reset());
  }

  // Draw only the lines not in `hidden` (a set of line ids).
  setHidden(hidden) {
    this.hidden = hidden;
    if (!this.plot) return;
    const ids = this.ids();
    const per = state.smoothing ? 2 : 1;
    this.plot.batch(() => ids.forEach((id, i) => {
      for (let k = 1; k <= per; k++) this.plot.setSeries(i * per + k, { show: !hidden.has(id) });
    }));
  }

  hover(u) {
    const i = u.cursor.idx;
    if (i === null || i === undefined) { this.note.textContent = this.baseNote; return; }
    const x = u.data[0][i];
    const parts = [fmtX(x)];
    let listed = 0;
    for (let s = 1; s < u.series.length; s++) {
      if (state.smoothing && s % 2 === 1) continue; // the raw line of a smoothed pair
      const v = u.data[s][i];
      if (v === null || v === undefined || !u.series[s].show) continue;
      if (++listed > 6) { parts.push("…"); break; }
      parts.push(`${u.series[s].label}: ${fmtValue(v)}`);
    }
    if (this.lines.size === 1 || new Set([...this.lines.values()].map((l) => l.runId)).size === 1) {
      for (const [id, s] of this.shown) { // the wall time of the point under the cursor
        const at = xOf(this.lines.get(id), s).indexOf(x);
        if (at >= 0) { parts.push(new Date(s.ts[at]).toISOString().slice(11, 19) + " UTC"); break; }
      }
    }
    this.note.textContent = parts.join(" · ");
  }

  async zoom(u) {
    const x0 = u.posToVal(u.select.left, "x");
    const x1 = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    let lo = Infinity; let hi = -Infinity;
    for (const [id, s] of this.full) {
      const xs = xOf(this.lines.get(id), s);
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
    const ids = [...this.full.keys()];
    const fetched = await Promise.all(ids.map((id) => {
      const line = this.lines.get(id);
      return getJSON(`/api/runs/${line.runId}/history?key=${encodeURIComponent(this.key)}` +
        `&context=${line.context}&start=${lo}&end=${hi}&width=${width}`);
    }));
    this.shown = new Map(ids.map((id, i) => [id, fetched[i]]));
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

// The x-axis, smoothing and log controls (ids x-axis, smoothing, smoothing-value, log-scale) over
// `charts()`, and resizing with the window.
export function wireTools(charts) {
  const x = document.getElementById("x-axis");
  const smoothing = document.getElementById("smoothing");
  const smoothingValue = document.getElementById("smoothing-value");
  const log = document.getElementById("log-scale");
  const redrawAll = () => {
    saveState();
    for (const chart of charts()) { chart.zoomed = false; chart.shown = new Map(chart.full); chart.signature = ""; chart.draw(); }
  };
  x.value = state.x;
  smoothing.value = String(state.smoothing);
  smoothingValue.textContent = String(state.smoothing);
  log.checked = state.log;
  x.addEventListener("change", () => { state.x = x.value; redrawAll(); });
  smoothing.addEventListener("input", () => {
    state.smoothing = Number(smoothing.value);
    smoothingValue.textContent = smoothing.value;
    redrawAll();
  });
  log.addEventListener("change", () => { state.log = log.checked; redrawAll(); });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      cachedWidth = 0;
      for (const c of charts()) c.plot?.setSize({ width: c.width(), height: HEIGHT });
    }, 150);
  });
}

// -- a run's page: loading and live updates -------------------------------------------------------

function runPage(root) {
  const runId = root.dataset.runId;
  const startMs = Number(root.dataset.startMs);
  const liveState = document.getElementById("live-state");
  const charts = new Map(); // key → Chart

  const lineOf = (key, context, i = 0) => ({
    id: context, label: context ? `${key}@${context}` : key, runId, context, startMs,
    color: COLORS[(CONTEXT_COLOR[context] ?? i) % COLORS.length],
  });
  const track = (figure) => {
    const chart = new Chart(figure);
    charts.set(chart.key, chart);
    addDownloads(figure, chart.key, () => chart.plot, []);
    return chart;
  };
  const csvLinks = (chart) => {
    const caption = chart.figure.querySelector(".chart-actions");
    for (const line of chart.lines.values()) {
      if (caption.querySelector(`a[data-context="${line.context}"]`)) continue;
      const a = document.createElement("a");
      a.href = `/runs/${runId}/metrics/${encodeURIComponent(chart.key).replaceAll("%2F", "/")}.csv?context=${line.context}`;
      a.dataset.context = line.context;
      a.textContent = line.context ? `CSV@${line.context}` : "CSV";
      a.title = "Download every point of this series as CSV";
      caption.append(a);
    }
  };

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
    return track(figure);
  }

  async function loadAll() {
    const keys = [...charts.keys()];
    if (!keys.length) { document.body.dataset.chartsReady = "1"; return; }
    const width = charts.values().next().value.width();
    const query = keys.map((k) => `key=${encodeURIComponent(k)}`).join("&");
    const { series } = await getJSON(`/api/runs/${runId}/metrics?width=${width}&${query}`);
    const byKey = new Map();
    for (const s of series) { if (!byKey.has(s.key)) byKey.set(s.key, []); byKey.get(s.key).push(s); }
    for (const [key, list] of byKey) {
      const chart = charts.get(key);
      if (!chart) continue;
      list.sort((a, b) => (a.context < b.context ? -1 : a.context > b.context ? 1 : 0));
      chart.setLines(list.map((s, i) => ({ ...lineOf(key, s.context, i), series: s })));
      csvLinks(chart);
    }
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
        if (!chart) continue;
        livePoints += chart.appendLive(lineOf(s.key, s.context, chart.lines.size), s);
        csvLinks(chart);
      }
      document.body.dataset.livePoints = String(livePoints);
    };
    events.addEventListener("ready", async () => {
      liveState.textContent = "● live";
      liveState.classList.add("on");
      loaded = false;
      try { await loadAll(); } catch (e) { liveState.textContent = `charts failed to load: ${e.message}`; }
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
      if (ended) { events.close(); liveState.textContent = "run ended"; liveState.classList.remove("on"); }
    });
    events.addEventListener("error", () => { if (events.readyState !== EventSource.CLOSED) liveState.textContent = "reconnecting…"; });
  }

  for (const figure of document.querySelectorAll("figure.chart")) track(figure);
  wireTools(() => charts.values());
  if (root.dataset.status === "RUNNING") followLive();
  else loadAll().catch((e) => { liveState.textContent = `charts failed to load: ${e.message}`; });
}

const runRoot = document.getElementById("run");
if (runRoot && document.getElementById("charts")) runPage(runRoot);

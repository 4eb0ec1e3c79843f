// A study's page: the optimization history and intermediate values over uPlot, parallel
// coordinates and the Pareto front on a canvas, param importance as bars, the trials table
// (sortable; the order is kept in the URL), all polled from /api/studies/<id> while the study
// can still change. The first drawing leaves performance marks (study:start, study:data, then one
// as each part is drawn) that bench/_web_ui2.py reports.
/* global uPlot */
import { ParallelCoordinates } from "./parcoords.js";

performance.mark("study:start");
const root = document.getElementById("study");
const studyId = root.dataset.studyId;
const api = `/api/studies/${studyId}`;
const POLL_MS = 2500;
const BLUE = "#2563eb", ORANGE = "#d97706", RED = "#dc2626", GREEN = "#16a34a", GREY = "#94a3b8";
const STATE_COLOR = { COMPLETE: BLUE, PRUNED: ORANGE, FAIL: RED, RUNNING: GREEN, WAITING: GREY };
const params = new URLSearchParams(location.search);
const sort = { key: params.get("sort") || "number", desc: params.get("desc") === "1" };
let data = null;
let endedSeen = -1;
const plots = {};

// -- numbers --------------------------------------------------------------------------------------

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(3) : String(Number(v.toPrecision(5)));
}

function fmtTick(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e5 || a < 1e-2) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s` : `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

const maximize = (i = 0) => data.objectives[i].direction === "maximize";
const better = (a, b, i = 0) => (maximize(i) ? a > b : a < b);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  if (response.status === 401) { location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`; throw new Error("signed out"); }
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// the charts' widths, read at once before any is drawn (reading one after another chart was
// drawn had the browser lay the page out again for each)
const widths = new Map();

function measureCharts() {
  widths.clear();
  table.boxHeight = document.querySelector(".study-trials").clientHeight || 560;
  const row = document.querySelector("#trials-table tbody tr[id]"); // a row as drawn (the page's HTML has some)
  const height = row ? row.getBoundingClientRect().height : 0;
  if (height > 0) { table.rowHeight = height; table.measured = true; }
  for (const figure of document.querySelectorAll(".study-charts figure")) {
    widths.set(figure.id, Math.max(240, Math.floor(figure.querySelector(".plot, .bars").clientWidth || 480)));
  }
}

function widthOf(figure) {
  if (!widths.has(figure.id)) measureCharts();
  return widths.get(figure.id);
}

// -- summary --------------------------------------------------------------------------------------

function renderSummary() {
  const badge = document.getElementById("study-state");
  badge.className = `badge ${data.state}`;
  badge.querySelector(".state-name").textContent = data.state;
  badge.querySelector(".pulse")?.remove();
  if (data.live && data.state === "RUNNING") badge.prepend(el("span", "pulse"));
  document.getElementById("live-state").textContent = data.live ? "live" : "";
  document.getElementById("live-state").classList.toggle("on", data.live);
  for (const node of document.querySelectorAll("[data-count]")) {
    const key = node.dataset.count;
    if (key === "total") node.firstChild.textContent = String(data.trials.length);
    else node.textContent = String(data.counts[key] ?? 0);
  }
  const bar = document.getElementById("progress-bar");
  if (bar && data.max_trials) {
    const ended = data.counts.COMPLETE + data.counts.PRUNED + data.counts.FAIL;
    bar.style.width = `${Math.min(100, (100 * ended) / data.max_trials)}%`;
  }
  for (const form of document.querySelectorAll("#study-actions form")) {
    form.hidden = !form.dataset.shownIn.split(" ").includes(data.state);
  }
}

// -- the trials table -----------------------------------------------------------------------------

function sortValue(t, key) {
  if (key === "number") return t.number;
  if (key === "state") return t.state;
  if (key === "duration") return t.duration_ms;
  if (key.startsWith("value")) return t.values[Number(key.slice(5))];
  if (key.startsWith("param:")) return t.params[key.slice(6)];
  return null;
}

function compare(a, b) {
  const missing = (v) => v === null || v === undefined;
  if (missing(a) || missing(b)) return missing(a) - missing(b); // blanks last
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}

// Only the rows in view (and OVERSCAN either side) are in the DOM, between two spacer rows as
// tall as the rows left out: 10,000 rows built and laid out took seconds. `table.rows` holds
// every trial in the sorted order (data-rows says how many); scrolling draws the rows it reaches.
const OVERSCAN = 20;
// boxHeight and scrollTop are the scrolling box's, kept (read when measured or scrolled, not while drawing)
const table = { rows: [], best: new Set(), rowHeight: 31, measured: false, boxHeight: 560, scrollTop: 0,
                first: -1, count: 0, scrolled: false };

function sortedTrials() {
  if (sort.key === "number") { // the order they come in
    return sort.desc ? [...data.trials].reverse() : data.trials;
  }
  const keyed = data.trials.map((t) => [sortValue(t, sort.key), t]);
  const missing = (v) => v === null || v === undefined;
  keyed.sort(([a], [b]) => {
    const c = compare(a, b);
    if (missing(a) !== missing(b)) return c; // blanks last either way
    return sort.desc ? -c : c;
  });
  return keyed.map(([, t]) => t);
}

function rowOf(t, heads, highlight) {
  const tr = el("tr");
  tr.id = `trial-${t.number}`;
  if (String(t.number) === highlight) tr.className = "highlight";
  for (const th of heads) {
    const key = th.dataset.sort;
    const td = el("td", th.classList.contains("num") ? "num" : "");
    if (key === "number") td.textContent = `${table.best.has(t.number) ? "★ " : ""}${t.number}`;
    else if (key === "state") td.append(el("span", `badge ${t.state}`, t.state));
    else if (key === "duration") td.textContent = fmtDuration(t.duration_ms);
    else if (key) { td.textContent = fmt(sortValue(t, key)); td.classList.add("mono"); }
    else if (t.run_id) { const a = el("a", "", "run"); a.href = `/runs/${t.run_id}`; td.append(a); }
    tr.append(td);
  }
  return tr;
}

function spacer(rows) {
  const tr = el("tr", "spacer");
  tr.setAttribute("aria-hidden", "true");
  const td = el("td");
  td.colSpan = 99;
  td.style.height = `${rows * table.rowHeight}px`;
  tr.append(td);
  return tr;
}

// the rows in view drawn; `force` redraws them even if the same ones are in view
function drawRows(force = false) {
  const tableEl = document.getElementById("trials-table");
  const heads = [...tableEl.querySelectorAll("thead th")];
  const total = table.rows.length;
  const inView = Math.ceil(table.boxHeight / table.rowHeight) + 1;
  const first = Math.max(0, Math.min(total - inView, Math.floor(table.scrollTop / table.rowHeight)) - OVERSCAN);
  const count = Math.min(total - first, inView + 2 * OVERSCAN);
  if (!force && first === table.first && count === table.count) return;
  table.first = first;
  table.count = count;
  const highlight = params.get("trial");
  const body = el("tbody");
  if (first > 0) body.append(spacer(first));
  for (let i = first; i < first + count; i++) body.append(rowOf(table.rows[i], heads, highlight));
  if (first + count < total) body.append(spacer(total - first - count));
  tableEl.tBodies[0].replaceWith(body);
}

function renderTable() {
  const tableEl = document.getElementById("trials-table");
  for (const th of tableEl.querySelectorAll("thead th")) {
    th.classList.toggle("sorted", th.dataset.sort === sort.key);
    th.dataset.dir = th.dataset.sort === sort.key ? (sort.desc ? "desc" : "asc") : "";
  }
  table.best = new Set(data.best);
  table.rows = sortedTrials();
  tableEl.dataset.rows = String(table.rows.length);
  drawRows(true);
  const highlight = params.get("trial");
  if (highlight && !table.scrolled) { // ?trial=N: its row in view, the first time
    table.scrolled = true;
    const at = table.rows.findIndex((t) => String(t.number) === highlight);
    if (at > 0) {
      table.scrollTop = Math.max(0, (at - 3) * table.rowHeight);
      drawRows();
      document.querySelector(".study-trials").scrollTop = table.scrollTop;
    }
  }
}

let scrollFrame = 0;
function onTableScroll(event) {
  table.scrollTop = event.target.scrollTop;
  if (scrollFrame || !table.rows.length) return;
  scrollFrame = requestAnimationFrame(() => {
    scrollFrame = 0;
    if (!table.measured) { // the rows' real height (app.css sets it), once, not while the page is drawn
      table.measured = true;
      const row = document.querySelector("#trials-table tbody tr:not(.spacer)");
      const height = row ? row.getBoundingClientRect().height : 0;
      if (height > 0 && Math.abs(height - table.rowHeight) > 0.5) { table.rowHeight = height; drawRows(true); return; }
    }
    drawRows();
  });
}

function onSortClick(event) {
  const th = event.target.closest("th[data-sort]");
  if (!th) return;
  sort.desc = sort.key === th.dataset.sort ? !sort.desc : false;
  sort.key = th.dataset.sort;
  const p = new URLSearchParams(location.search);
  p.set("sort", sort.key);
  if (sort.desc) p.set("desc", "1"); else p.delete("desc");
  history.replaceState(null, "", `${location.pathname}?${p}`);
  document.querySelector(".study-trials").scrollTop = table.scrollTop = 0;
  renderTable();
}

// -- optimization history -------------------------------------------------------------------------

function newPlot(name, figure, opts, columns) {
  plots[name]?.destroy();
  plots[name] = new uPlot({ width: widthOf(figure), height: 260, scales: { x: { time: false } }, ...opts },
                          columns, figure.querySelector(".plot"));
}

const yAxis = { values: (u, t) => t.map(fmtTick), size: 60 };
const integers = (u, t) => t.map((v) => (Number.isInteger(v) ? v : ""));

function renderHistory() {
  const figure = document.getElementById("history-chart");
  const ended = data.trials.filter((t) => t.values.length && (t.state === "COMPLETE" || t.state === "PRUNED"));
  let best = null;
  const columns = [
    ended.map((t) => t.number),
    ended.map((t) => (t.state === "COMPLETE" ? t.values[0] : null)),
    ended.map((t) => (t.state === "PRUNED" ? t.values[0] : null)),
    ended.map((t) => {
      if (t.state === "COMPLETE" && (best === null || better(t.values[0], best))) best = t.values[0];
      return best;
    }),
  ];
  const dots = (label, color) => ({ label, stroke: color, fill: color, paths: () => null, value: (u, v) => fmt(v),
                                    points: { show: true, size: 7, fill: color } });
  newPlot("history", figure, {
    series: [{ label: "trial" }, dots("complete", BLUE), dots("pruned", ORANGE),
             { label: "best so far", stroke: RED, width: 2, paths: uPlot.paths.stepped({ align: 1 }),
               points: { show: false }, value: (u, v) => fmt(v) }],
    axes: [{ label: "trial", values: integers }, yAxis],
    hooks: { draw: [() => performance.mark("study:history-drawn")] },
  }, columns);
  figure.dataset.points = String(ended.length);
}

// -- intermediate values --------------------------------------------------------------------------

async function renderIntermediate(pending = null) {
  const figure = document.getElementById("intermediate-chart");
  const { curves } = await (pending || getJSON(`${api}/intermediate`));
  performance.mark("study:intermediate-data");
  const usable = curves.filter((c) => c.steps.length);
  figure.dataset.curves = String(usable.length);
  figure.dataset.pruned = String(usable.filter((c) => c.state === "PRUNED").length);
  if (!usable.length) {
    plots.intermediate?.destroy();
    delete plots.intermediate;
    figure.querySelector(".plot").replaceChildren(
      el("p", "muted empty-chart", "No intermediate values reported yet (trial.report(step, value))."));
    return;
  }
  figure.querySelector(".plot").replaceChildren();
  const series = [{ label: "step" }];
  for (const c of usable) {
    const color = STATE_COLOR[c.state] || GREY;
    series.push({ label: `#${c.number} ${c.state}`, stroke: color, width: c.state === "PRUNED" ? 1.6 : 1.2,
                  spanGaps: true, dash: c.state === "PRUNED" ? [5, 4] : undefined, points: { show: false },
                  value: (u, v) => fmt(v) });
  }
  // a pruned trial's line ends in an ✕ where the pruner stopped it
  const markPruned = (u) => {
    const { ctx } = u;
    const r = 4 * devicePixelRatio;
    ctx.save();
    ctx.strokeStyle = ORANGE;
    ctx.lineWidth = 2 * devicePixelRatio;
    usable.forEach((c, i) => {
      if (c.state !== "PRUNED" || !u.series[i + 1].show) return;
      const x = u.valToPos(c.steps[c.steps.length - 1], "x", true);
      const y = u.valToPos(c.values[c.values.length - 1], "y", true);
      ctx.beginPath();
      ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
      ctx.stroke();
    });
    ctx.restore();
  };
  newPlot("intermediate", figure, {
    series, legend: { show: false }, hooks: { draw: [markPruned] }, focus: { alpha: 0.3 },
    // no hover point per curve (500 curves: 500 elements laid out for nothing)
    cursor: { focus: { prox: 16 }, points: { show: false } }, axes: [{ label: "step", values: integers }, yAxis],
  }, uPlot.join(usable.map((c) => [c.steps, c.values])));
}

// -- canvas charts: parallel coordinates and the Pareto front -------------------------------------

function canvasIn(figure, height) {
  const holder = figure.querySelector(".plot");
  const width = widthOf(figure);
  const canvas = el("canvas");
  canvas.width = width * devicePixelRatio;
  canvas.height = height * devicePixelRatio;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  holder.replaceChildren(canvas);
  const ctx = canvas.getContext("2d");
  ctx.scale(devicePixelRatio, devicePixelRatio);
  ctx.font = "12px system-ui, sans-serif";
  return { ctx, width, height };
}

const RAMP_STEPS = 32;
function ramp(t) { // 0 (best) → deep blue, 1 (worst) → light orange
  const a = [30, 64, 175], b = [251, 191, 36];
  const c = a.map((v, i) => Math.round(v + (b[i] - v) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function axisOf(name, values) {
  const numeric = values.every((v) => v === undefined || (typeof v === "number" && typeof v !== "boolean"));
  if (numeric) {
    const present = values.filter((v) => v !== undefined);
    let lo = Math.min(...present), hi = Math.max(...present);
    if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
    return { name, pos: (v) => (v === undefined ? null : (v - lo) / (hi - lo)), labels: [fmt(hi), fmt(lo)] };
  }
  const cats = [...new Set(values.filter((v) => v !== undefined).map((v) => JSON.stringify(v)))].sort();
  const step = cats.length > 1 ? 1 / (cats.length - 1) : 0;
  return { name, cats, pos: (v) => (v === undefined ? null : cats.length > 1 ? cats.indexOf(JSON.stringify(v)) * step : 0.5),
           labels: [cats[cats.length - 1] ?? "", cats[0] ?? ""] };
}

// the compare page's brushable parallel coordinates, over the completed trials
let brushable = null;

async function renderParcoords() {
  const figure = document.getElementById("parcoords-chart");
  let done = data.trials.filter((t) => t.state === "COMPLETE" && t.values.length);
  const names = [...new Set(done.flatMap((t) => Object.keys(t.params)))].sort();
  figure.dataset.lines = String(done.length);
  if (!done.length) {
    const { ctx } = canvasIn(figure, 300);
    ctx.fillStyle = "#687385"; ctx.fillText("No completed trial yet.", 12, 24);
    brushable = null;
    return;
  }
  // worst first, so the best lines are drawn on top; colours in RAMP_STEPS steps (parcoords.js
  // strokes the lines of one colour at once)
  const objective = axisOf(data.objectives[0].metric, done.map((t) => t.values[0]));
  const quality = (t) => { const p = objective.pos(t.values[0]); return maximize() ? 1 - p : p; };
  done = done.map((t) => [quality(t), t]).sort((a, b) => b[0] - a[0]).map(([, t]) => t);
  const holder = figure.querySelector(".plot");
  if (!brushable) {
    const canvas = el("canvas");
    holder.replaceChildren(canvas);
    brushable = new ParallelCoordinates(canvas, { height: 300 });
  }
  const axes = names.map((n) => {
    const values = done.map((t) => t.params[n]);
    if (values.every((v) => v === undefined || typeof v === "number")) {
      return { name: n, values: values.map((v) => (v === undefined ? null : v)), categories: [] };
    }
    const categories = [...new Set(values.filter((v) => v !== undefined).map(String))].sort();
    return { name: n, values: values.map((v) => (v === undefined ? null : categories.indexOf(String(v)))), categories };
  });
  const metric = { name: data.objectives[0].metric, values: done.map((t) => t.values[0]), categories: [] };
  const steps = Array.from({ length: RAMP_STEPS + 1 }, (_, k) => ramp(k / RAMP_STEPS));
  const colors = Object.fromEntries(done.map((t) => [`#${t.number}`, steps[Math.round(quality(t) * RAMP_STEPS)]]));
  const drawStart = performance.now();
  brushable.setData({ ids: done.map((t) => `#${t.number}`), axes: [...axes, metric], colors }, brushable.brushes);
  figure.dataset.drawMs = (performance.now() - drawStart).toFixed(1); // read by bench/_web_ui2.py
}

// Nice ticks for a linear range
function ticks(lo, hi, n = 5) {
  const span = hi - lo || 1;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
  const step = [1, 2, 5, 10].map((m) => m * step0).find((s) => span / s <= n) || step0 * 10;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function renderPareto() {
  const figure = document.getElementById("pareto-chart");
  if (!figure) return;
  const xi = Number(document.getElementById("pareto-x").value), yi = Number(document.getElementById("pareto-y").value);
  const done = data.trials.filter((t) => t.state === "COMPLETE" && t.values.length > Math.max(xi, yi));
  const { ctx, width, height } = canvasIn(figure, 320);
  if (!done.length) { ctx.fillStyle = "#687385"; ctx.fillText("No completed trial yet.", 12, 24); return; }
  const xs = done.map((t) => t.values[xi]), ys = done.map((t) => t.values[yi]);
  const pad = (lo, hi) => { const d = (hi - lo) * 0.06 || 0.5; return [lo - d, hi + d]; };
  const [x0, x1] = pad(Math.min(...xs), Math.max(...xs)), [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
  const left = 64, right = width - 16, top = 12, bottom = height - 40;
  const X = (v) => left + ((v - x0) / (x1 - x0)) * (right - left), Y = (v) => bottom - ((v - y0) / (y1 - y0)) * (bottom - top);
  ctx.strokeStyle = "#e3e7ee"; ctx.fillStyle = "#687385"; ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "center";
  for (const v of ticks(x0, x1)) { ctx.beginPath(); ctx.moveTo(X(v), top); ctx.lineTo(X(v), bottom); ctx.stroke(); ctx.fillText(fmtTick(v), X(v), bottom + 14); }
  ctx.textAlign = "right";
  for (const v of ticks(y0, y1)) { ctx.beginPath(); ctx.moveTo(left, Y(v)); ctx.lineTo(right, Y(v)); ctx.stroke(); ctx.fillText(fmtTick(v), left - 6, Y(v) + 4); }
  ctx.fillStyle = "#1c2430"; ctx.font = "600 12px ui-monospace, monospace"; ctx.textAlign = "center";
  ctx.fillText(data.objectives[xi].metric + (maximize(xi) ? " ↑" : " ↓"), (left + right) / 2, height - 6);
  ctx.save(); ctx.translate(14, (top + bottom) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(data.objectives[yi].metric + (maximize(yi) ? " ↑" : " ↓"), 0, 0); ctx.restore();
  const front = new Set(data.best);
  const onFront = done.filter((t) => front.has(t.number)).sort((a, b) => a.values[xi] - b.values[xi]);
  ctx.fillStyle = GREY;
  for (const t of done) if (!front.has(t.number)) { ctx.beginPath(); ctx.arc(X(t.values[xi]), Y(t.values[yi]), 3.5, 0, 7); ctx.fill(); }
  ctx.strokeStyle = BLUE; ctx.lineWidth = 1.5; ctx.beginPath();
  onFront.forEach((t, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(t.values[xi]), Y(t.values[yi])));
  ctx.stroke();
  ctx.fillStyle = BLUE;
  for (const t of onFront) { ctx.beginPath(); ctx.arc(X(t.values[xi]), Y(t.values[yi]), 5, 0, 7); ctx.fill(); }
  figure.dataset.front = String(onFront.length);
}

// -- param importance -----------------------------------------------------------------------------

async function renderImportance() {
  const figure = document.getElementById("importance-chart");
  const found = await getJSON(`${api}/importance`);
  const holder = figure.querySelector(".bars");
  document.getElementById("importance-note").textContent = found.note || `fANOVA over ${found.trials} completed trials, for ${found.metric}`;
  document.getElementById("importance-note").title = found.method;
  const rows = found.importances.map(({ param, importance }) => {
    const row = el("div", "bar-row");
    const fill = el("div", "bar-fill");
    fill.style.width = `${Math.max(0.5, importance * 100)}%`;
    const bar = el("div", "bar");
    bar.append(fill);
    row.append(el("span", "bar-name mono", param), bar, el("span", "bar-value mono", importance.toFixed(3)));
    return row;
  });
  holder.replaceChildren(...(rows.length ? rows : [el("p", "muted", found.note || "Not enough completed trials yet.")]));
  figure.dataset.params = String(rows.length);
}

// -- the loop -------------------------------------------------------------------------------------

let drawn = ""; // what the charts and the table show: redrawn only when it changed

async function refresh(force = false) {
  // the first time, the intermediate values are fetched beside the study (both always drawn then)
  const early = endedSeen === -1 && !drawn ? getJSON(`${api}/intermediate`) : null;
  early?.catch(() => {}); // its failure is reported where it is awaited
  const inline = document.getElementById("study-data"); // the first time, the page holds the data
  if (inline) {
    data = JSON.parse(inline.textContent);
    inline.remove();
  } else {
    data = await getJSON(api);
  }
  performance.mark("study:data");
  renderSummary();
  const shown = JSON.stringify([data.state, data.counts, data.best, data.trials.length]);
  if (shown === drawn && !force) {
    if (data.counts.RUNNING) await renderIntermediate();
    return;
  }
  drawn = shown;
  // the intermediate values (preloaded: in by now) before anything is drawn: awaited after the
  // drawing, their answer waited for the browser's next frame (0.3-0.9 s more on a loaded machine)
  await early?.catch(() => {});
  measureCharts();
  await renderParcoords(); // first: parcoords.js reads its canvas' width, the page not yet changed
  performance.mark("study:parcoords");
  renderTable();
  performance.mark("study:table");
  renderHistory();
  performance.mark("study:history");
  renderPareto();
  const ended = data.counts.COMPLETE + data.counts.PRUNED + data.counts.FAIL;
  if (ended !== endedSeen) { // intermediate values and importance change as trials end
    endedSeen = ended;
    // fANOVA may take seconds (its first call imports optuna and scikit-learn): not waited for
    renderImportance().catch((error) => { document.getElementById("importance-note").textContent = error.message; });
    await renderIntermediate(early);
    performance.mark("study:intermediate");
  } else if (data.counts.RUNNING) {
    await renderIntermediate();
  }
  root.dataset.ready = "1";
  root.dataset.trials = String(data.trials.length);
}

async function loop() {
  try {
    await refresh();
  } catch (error) {
    document.getElementById("live-state").textContent = `update failed: ${error.message}`;
  }
  if (data?.live) setTimeout(loop, POLL_MS);
}

document.querySelector("#trials-table thead").addEventListener("click", onSortClick);
document.querySelector(".study-trials").addEventListener("scroll", onTableScroll, { passive: true });
for (const id of ["pareto-x", "pareto-y"]) document.getElementById(id)?.addEventListener("change", renderPareto);
let resizeTimer = 0;
addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { if (data) { endedSeen = -1; refresh(true); } }, 200); });
loop();

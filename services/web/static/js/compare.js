// The compare page: a chart per metric key with a line per run (charts.js), the params table's
// "differences only" switch, and the analysis plots of one metric — parallel coordinates whose
// brushes narrow the highlighted runs everywhere on the page, a scatter of a param against the
// metric, a contour of two params. Every choice is kept in the URL.

import { Chart, addDownloads, getJSON, readable, runColor, saveState, wireTools } from "./charts.js";
import { ParallelCoordinates } from "./parcoords.js";
import { drawHeatmap, drawScatter } from "./plots.js";

const root = document.getElementById("compare");
const data = JSON.parse(document.getElementById("compare-data").textContent);
const runIds = root.dataset.runs.split(",");
const base = `runs=${runIds.join(",")}&experiments=${root.dataset.experiments}`;
const runs = new Map(data.runs.map((r, i) => [r.id, { ...r, color: runColor(i) }]));
const colors = Object.fromEntries([...runs].map(([id, r]) => [id, r.color]));
const charts = [];
const status = document.getElementById("live-state");
const el = {
  metric: document.getElementById("target-metric"),
  scatterX: document.getElementById("scatter-x"),
  contourX: document.getElementById("contour-x"),
  contourY: document.getElementById("contour-y"),
  diff: document.getElementById("diff-only"),
};
let highlighted = new Set(runIds);

// -- colours and the highlighted runs -------------------------------------------------------------

for (const swatch of document.querySelectorAll("[data-index] > .swatch")) {
  swatch.style.background = runColor(Number(swatch.parentElement.dataset.index));
}

function highlight(selected) {
  highlighted = selected;
  const hidden = new Set(runIds.filter((id) => !selected.has(id)));
  for (const item of document.querySelectorAll("#run-legend li")) item.classList.toggle("dim", hidden.has(item.dataset.runId));
  document.getElementById("highlight-count").textContent = `${selected.size} of ${runIds.length} runs highlighted`;
  root.dataset.highlighted = [...selected].join(",");
  for (const chart of charts) chart.setHidden(hidden);
  drawScatterPlot();
}

// -- charts: one per metric key, a line per run ---------------------------------------------------

async function loadCharts() {
  const figures = [...document.querySelectorAll("#charts figure.chart")];
  for (const figure of figures) {
    const chart = new Chart(figure);
    charts.push(chart);
    addDownloads(figure, figure.querySelector(".chart-title").textContent, () => chart.plot);
  }
  if (!charts.length) { document.body.dataset.chartsReady = "1"; return; }
  const width = charts[0].width();
  const byContext = new Map();
  for (const chart of charts) {
    const context = chart.figure.dataset.context;
    if (!byContext.has(context)) byContext.set(context, []);
    byContext.get(context).push(chart);
  }
  const requests = [];
  for (const [context, list] of byContext) {
    for (let i = 0; i < list.length; i += 20) { // GetMetricHistoryBulk takes up to 20 keys a call
      const chunk = list.slice(i, i + 20);
      const keys = chunk.map((c) => `key=${encodeURIComponent(c.key)}`).join("&");
      requests.push(getJSON(`/api/compare/series?${base}&context=${context}&width=${width}&${keys}`).then(({ series }) => {
        for (const chart of chunk) {
          const mine = series.filter((s) => s.key === chart.key);
          mine.sort((a, b) => runIds.indexOf(a.run_id) - runIds.indexOf(b.run_id));
          chart.setLines(mine.map((s) => {
            const run = runs.get(s.run_id);
            return { id: s.run_id, label: run.name, color: run.color, runId: s.run_id, context, startMs: run.start_ms, series: s };
          }));
          chart.setHidden(new Set(runIds.filter((id) => !highlighted.has(id))));
        }
      }));
    }
  }
  await Promise.all(requests);
  document.body.dataset.chartsReady = "1";
}

// -- the params table -----------------------------------------------------------------------------

el.diff.addEventListener("change", () => {
  for (const row of document.querySelectorAll("#params-table tr.same")) row.hidden = el.diff.checked;
  saveState({ diff: el.diff.checked ? "1" : "" });
});

// -- analysis plots of the chosen metric ----------------------------------------------------------

function metricChoice() {
  const option = el.metric.selectedOptions[0];
  return option ? { label: option.value, key: option.dataset.key, context: option.dataset.context } : null;
}

function brushesFromURL() {
  const found = new Map();
  for (const [name, value] of new URLSearchParams(location.search)) {
    if (!name.startsWith("b.")) continue;
    const [lo, hi] = value.split(",").map(Number);
    if (Number.isFinite(lo) && Number.isFinite(hi)) found.set(name.slice(2), [lo, hi]);
  }
  return found;
}

function saveBrushes(brushes) {
  const p = new URLSearchParams(location.search);
  for (const name of [...p.keys()]) if (name.startsWith("b.")) p.delete(name);
  for (const [name, [lo, hi]] of brushes) p.set(`b.${name}`, `${Number(lo.toPrecision(6))},${Number(hi.toPrecision(6))}`);
  history.replaceState(null, "", `${location.pathname}?${readable(p)}`);
}

const parcoordsFigure = document.getElementById("parcoords");
const parcoords = new ParallelCoordinates(parcoordsFigure.querySelector("canvas"), {
  onChange: (selected, brushes) => {
    saveBrushes(brushes);
    parcoordsFigure.querySelector(".chart-note").textContent = brushes.size
      ? `${selected.size} of ${parcoords.data.ids.length} runs in the brushed ranges` : `${parcoords.data.ids.length} runs`;
    highlight(brushes.size ? selected : new Set(runIds));
  },
});
document.getElementById("clear-brushes").addEventListener("click", () => parcoords.clear());

async function loadParcoords(keepBrushes) {
  const m = metricChoice();
  if (!m) { parcoordsFigure.hidden = true; return; }
  const note = parcoordsFigure.querySelector(".chart-note");
  try {
    const found = await getJSON(`/api/compare/parcoords?${base}&metric=${encodeURIComponent(m.key)}&context=${m.context}`);
    if (found.axes.length) found.axes[found.axes.length - 1].name = m.label;
    // a param with one value says nothing here: its axis is left out
    const axes = found.axes.filter((a, i) => i === found.axes.length - 1 || new Set(a.values).size > 1);
    parcoords.setData({ ids: found.run_ids, axes, colors }, keepBrushes ? brushesFromURL() : new Map());
  } catch (e) { note.textContent = `failed: ${e.message}`; }
}

function drawScatterPlot() {
  const m = metricChoice();
  const param = el.scatterX.value;
  const figure = document.getElementById("scatter");
  if (!m || !param) { figure.hidden = true; return; }
  const xs = data.params[param] || [];
  const ys = data.metrics[m.label] || [];
  const points = data.runs.map((r, i) => ({ id: r.id, x: xs[i] ?? "", y: ys[i] ?? null, color: runs.get(r.id).color }));
  drawScatter(figure.querySelector("canvas"), { xName: param, yName: m.label, points, highlighted });
  figure.querySelector(".chart-note").textContent = `${figure.querySelector("canvas").dataset.points} runs`;
}

async function loadContour() {
  const m = metricChoice();
  const figure = document.getElementById("contour");
  const x = el.contourX.value; const y = el.contourY.value;
  if (!m || !x || !y) { figure.hidden = true; return; }
  const note = figure.querySelector(".chart-note");
  const canvas = figure.querySelector("canvas");
  if (x === y) { note.textContent = "pick two different params"; canvas.dataset.cells = "0"; return; }
  try {
    const found = await getJSON(`/api/compare/contour?${base}&x=${encodeURIComponent(x)}&y=${encodeURIComponent(y)}` +
      `&metric=${encodeURIComponent(m.key)}&context=${m.context}`);
    drawHeatmap(canvas, found, { xName: x, yName: y, metric: m.label });
    note.textContent = `${found.run_ids.length} runs · ${found.grid_x.length} × ${found.grid_y.length} cells`;
  } catch (e) { note.textContent = `failed: ${e.message}`; }
}

function saveChoices() {
  saveState({ metric: el.metric.value, sx: el.scatterX.value, cx: el.contourX.value, cy: el.contourY.value });
}

el.metric.addEventListener("change", () => { saveChoices(); loadParcoords(false); drawScatterPlot(); loadContour(); });
el.scatterX.addEventListener("change", () => { saveChoices(); drawScatterPlot(); });
el.contourX.addEventListener("change", () => { saveChoices(); loadContour(); });
el.contourY.addEventListener("change", () => { saveChoices(); loadContour(); });

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (parcoords.data) parcoords.draw(); drawScatterPlot(); loadContour(); }, 150);
});

wireTools(() => charts);
Promise.all([
  loadCharts().catch((e) => { status.textContent = `charts failed to load: ${e.message}`; }),
  loadParcoords(true),
  loadContour(),
]).finally(() => { drawScatterPlot(); root.dataset.ready = "1"; });

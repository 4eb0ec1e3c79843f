// The experiment page's charts panel and Compare button. The panel overlays one metric of the
// selected runs (else of the runs on this page): a line per run, or — grouped by a param — per
// group the mean and a min–max band (AggregateMetric). Its choices are kept in the URL.
/* global uPlot */

import { AXIS, addDownloads, ema, fmtTick, fmtValue, getJSON, runColor, saveState, state } from "./charts.js";

const MAX_RUNS = 100;
const runsForm = document.getElementById("runs-form");
const checked = () => [...runsForm.querySelectorAll("input[name=run_ids]:checked")].map((b) => b.value);

// -- the Compare button ---------------------------------------------------------------------------

document.getElementById("compare-selected")?.addEventListener("click", () => {
  const ids = checked();
  if (ids.length < 2 || ids.length > MAX_RUNS) {
    document.getElementById("selected-count").textContent = `${ids.length} selected · compare takes 2 to ${MAX_RUNS} runs`;
    return;
  }
  location.href = `/compare?runs=${ids.join(",")}`;
});

// -- the charts panel -----------------------------------------------------------------------------

const panel = document.getElementById("exp-charts");
const metricSelect = document.getElementById("overlay-metric");
if (panel && metricSelect) {
  const groupSelect = document.getElementById("overlay-group");
  const smoothing = document.getElementById("overlay-smoothing");
  const smoothingValue = document.getElementById("overlay-smoothing-value");
  const figure = document.getElementById("overlay-chart");
  const plotEl = figure.querySelector(".plot");
  const note = document.getElementById("overlay-note");
  const legend = document.getElementById("overlay-legend");
  let plot = null;
  let loaded = null;
  let timer = 0;

  const choice = () => {
    const option = metricSelect.selectedOptions[0];
    return { label: option.value, key: option.dataset.key, context: option.dataset.context, group: groupSelect.value };
  };

  const runIds = () => {
    const ids = checked();
    const all = ids.length ? ids : [...document.querySelectorAll("#runs-table tbody tr[data-run-id]")].map((r) => r.dataset.runId);
    return { ids: all.slice(0, MAX_RUNS), selected: ids.length > 0, total: all.length };
  };

  const swatch = (color, text) => {
    const item = document.createElement("span");
    const box = document.createElement("span");
    box.className = "swatch";
    box.style.background = color;
    item.append(box, text);
    return item;
  };

  function draw() {
    if (!loaded) return;
    const { data, c } = loaded;
    const series = [{ label: "step" }];
    const tables = [];
    const bands = [];
    legend.replaceChildren();
    if (data.groups.length) {
      data.groups.forEach((g, i) => {
        const color = runColor(i);
        const at = series.length;
        tables.push([g.steps, g.min, g.max, ema(g.mean, state.smoothing)]);
        const edge = { stroke: `${color}00`, width: 0, spanGaps: true, points: { show: false } };
        series.push({ ...edge, label: `${g.value} min` }, { ...edge, label: `${g.value} max` },
          { label: `${data.group}=${g.value}`, stroke: color, width: 2, spanGaps: true, points: { show: false } });
        bands.push({ series: [at + 1, at], fill: `${color}26` });
        legend.append(swatch(color, `${data.group} = ${g.value} · ${g.run_ids.length} run${g.run_ids.length === 1 ? "" : "s"}`));
      });
    } else {
      data.lines.forEach((line, i) => {
        const color = runColor(i);
        if (state.smoothing) {
          tables.push([line.steps, line.values, ema(line.values, state.smoothing)]);
          series.push({ label: `${line.name} (raw)`, stroke: `${color}33`, width: 1, spanGaps: false },
            { label: line.name, stroke: color, width: 1.6, spanGaps: false });
        } else {
          tables.push([line.steps, line.values]);
          series.push({ label: line.name, stroke: color, width: 1.5, spanGaps: false,
            points: { show: line.steps.length <= 60, size: 5, fill: color } });
        }
        legend.append(swatch(color, line.name));
      });
    }
    figure.dataset.lines = String(data.lines.length);
    figure.dataset.groups = String(data.groups.length);
    figure.dataset.bands = String(bands.length);
    figure.querySelector(".chart-title").textContent = data.group ? `${c.label} by ${data.group}` : c.label;
    if (plot) plot.destroy();
    plot = null;
    if (!tables.length) { plotEl.textContent = "None of these runs logged this metric."; return; }
    plotEl.textContent = "";
    const joined = tables.length === 1 ? tables[0] : uPlot.join(tables);
    plot = new uPlot({
      width: Math.max(300, plotEl.clientWidth), height: 300, series, bands, legend: { show: false },
      scales: { x: { time: false } },
      axes: [AXIS, { ...AXIS, size: 60, values: (u, ticks) => ticks.map(fmtTick) }],
      cursor: { drag: { x: true, y: false } },
      hooks: { setCursor: [(u) => hover(u)] },
    }, joined, plotEl);
    plot.over.addEventListener("dblclick", () => plot.setData(plot.data, true));
  }

  function hover(u) {
    const i = u.cursor.idx;
    const noteEl = figure.querySelector(".chart-note");
    if (i === null || i === undefined) { noteEl.textContent = ""; return; }
    const parts = [`step ${u.data[0][i]}`];
    for (let s = 1; s < u.series.length && parts.length < 7; s++) {
      const label = u.series[s].label;
      if (label.endsWith(" min") || label.endsWith(" max") || label.endsWith("(raw)")) continue;
      const v = u.data[s][i];
      if (v !== null && v !== undefined) parts.push(`${label}: ${fmtValue(v)}`);
    }
    noteEl.textContent = parts.join(" · ");
  }

  async function load() {
    if (!panel.open) return;
    const c = choice();
    const { ids, selected, total } = runIds();
    saveState({ chart: c.key, ctx: c.context, group: c.group });
    if (!ids.length) { note.textContent = "No runs to chart."; return; }
    note.textContent = `${ids.length}${total > ids.length ? ` of ${total}` : ""} ${selected ? "selected" : "shown"} run${ids.length === 1 ? "" : "s"}`;
    const width = Math.min(2000, Math.max(200, plotEl.clientWidth || 800));
    try {
      const data = await getJSON(`/api/experiments/${panel.dataset.experimentId}/overlay?key=${encodeURIComponent(c.key)}` +
        `&context=${c.context}&group=${encodeURIComponent(c.group)}&width=${width}&runs=${ids.join(",")}`);
      loaded = { data, c };
      draw();
      figure.dataset.ready = "1";
    } catch (e) { note.textContent = `chart failed to load: ${e.message}`; }
  }

  smoothing.value = String(state.smoothing);
  smoothingValue.textContent = String(state.smoothing);
  smoothing.addEventListener("input", () => {
    state.smoothing = Number(smoothing.value);
    smoothingValue.textContent = smoothing.value;
    saveState();
    draw();
  });
  metricSelect.addEventListener("change", load);
  groupSelect.addEventListener("change", load);
  panel.addEventListener("toggle", load);
  runsForm.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(load, 300); });
  addDownloads(figure, () => figure.querySelector(".chart-title").textContent, () => plot);
  window.addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(draw, 200); });
  if (panel.open) load();
}

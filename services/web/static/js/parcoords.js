// Parallel coordinates on a canvas: one vertical axis per param and the metric last, one polyline
// per run. Drag along an axis to brush a range: the runs whose values lie in every brushed range
// stay highlighted (the others turn grey); a click on an axis clears its brush.
//
// Data: { ids, axes: [{ name, values, categories }], colors: id → colour } as the query service's
// GetParallelCoordinates gives it (a categorical axis holds indices into its categories).

const PAD = { top: 34, bottom: 26, left: 56, right: 84 };
const GREY = "rgba(148, 163, 184, 0.35)";
const HIT = 16; // px either side of an axis where a drag brushes it

function scaleOf(axis) {
  if (axis.categories.length) {
    const n = axis.categories.length;
    return { kind: "category", lo: -0.5, hi: n - 0.5, log: false };
  }
  const finite = axis.values.filter((v) => v !== null && Number.isFinite(v));
  let lo = Math.min(...finite); let hi = Math.max(...finite);
  if (!finite.length) { lo = 0; hi = 1; }
  const log = lo > 0 && hi / lo >= 20;
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  return { kind: "number", lo, hi, log };
}

function tickText(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-2)) return v.toExponential(1).replace(".0e", "e");
  return String(Number(v.toPrecision(3)));
}

export class ParallelCoordinates {
  constructor(canvas, { onChange = () => {}, height = 300 } = {}) {
    this.canvas = canvas;
    this.height = height;
    this.onChange = onChange;
    this.data = null;
    this.brushes = new Map(); // axis name → [lo, hi] in the axis' units
    this.dragging = null;
    canvas.addEventListener("mousedown", (e) => this.down(e));
    window.addEventListener("mousemove", (e) => this.move(e));
    window.addEventListener("mouseup", (e) => this.up(e));
  }

  setData(data, brushes = new Map()) {
    this.data = data;
    this.scales = data.axes.map(scaleOf);
    const names = new Set(data.axes.map((a) => a.name));
    this.brushes = new Map([...brushes].filter(([name]) => names.has(name)));
    this.canvas.dataset.axes = JSON.stringify(data.axes.map((a) => a.name)); // left to right
    this.draw();
    this.changed();
  }

  // -- geometry ----------------------------------------------------------------------------------

  get width() { return this.canvas.parentElement.clientWidth || 600; }

  axisX(i) {
    const n = this.data.axes.length;
    const span = this.width - PAD.left - PAD.right;
    return PAD.left + (n === 1 ? span / 2 : (span * i) / (n - 1));
  }

  toY(i, value) {
    const s = this.scales[i];
    const bottom = this.height - PAD.bottom;
    const t = s.log ? (Math.log(value) - Math.log(s.lo)) / (Math.log(s.hi) - Math.log(s.lo)) : (value - s.lo) / (s.hi - s.lo);
    return bottom - t * (bottom - PAD.top);
  }

  fromY(i, y) {
    const s = this.scales[i];
    const bottom = this.height - PAD.bottom;
    const t = (bottom - y) / (bottom - PAD.top);
    return s.log ? Math.exp(Math.log(s.lo) + t * (Math.log(s.hi) - Math.log(s.lo))) : s.lo + t * (s.hi - s.lo);
  }

  // -- which runs are highlighted ----------------------------------------------------------------

  selected() {
    const { ids, axes } = this.data;
    const brushed = axes.map((a, i) => [i, this.brushes.get(a.name)]).filter(([, b]) => b);
    return new Set(ids.filter((_, r) => brushed.every(([i, [lo, hi]]) => {
      const v = axes[i].values[r];
      return v !== null && v >= lo && v <= hi;
    })));
  }

  changed() {
    const selected = this.selected();
    this.canvas.dataset.highlighted = String(selected.size);
    this.onChange(selected, this.brushes);
  }

  // -- drawing -----------------------------------------------------------------------------------

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.width;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${this.height}px`;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, this.height);
    if (!this.data || !this.data.ids.length) {
      ctx.fillStyle = "#687385";
      ctx.font = "13px system-ui, sans-serif";
      ctx.fillText("No run has this metric and params.", PAD.left, this.height / 2);
      return;
    }
    const selected = this.selected();
    const { ids, axes, colors } = this.data;
    const xs = axes.map((_, i) => this.axisX(i)); // (axisX reads the canvas' width from the page)
    const trace = (r) => { // the line of row r, added to the current path
      let pen = false;
      axes.forEach((a, i) => {
        const v = a.values[r];
        if (v === null || (this.scales[i].log && v <= 0)) { pen = false; return; }
        const y = this.toY(i, v);
        if (pen) ctx.lineTo(xs[i], y); else ctx.moveTo(xs[i], y);
        pen = true;
      });
    };
    ctx.lineWidth = 1;
    ctx.strokeStyle = GREY;
    ids.forEach((id, r) => { if (!selected.has(id)) { ctx.beginPath(); trace(r); ctx.stroke(); } });
    ctx.lineWidth = ids.length > 200 ? 1 : 1.8;
    // the highlighted lines stroked once per colour (10,000 lines of a few colours: a few strokes),
    // colours in the order they first appear
    const byColor = new Map();
    ids.forEach((id, r) => {
      if (!selected.has(id)) return;
      const color = colors[id] || "#2563eb";
      if (!byColor.has(color)) byColor.set(color, []);
      byColor.get(color).push(r);
    });
    for (const [color, rows] of byColor) {
      ctx.strokeStyle = color;
      ctx.beginPath();
      rows.forEach(trace);
      ctx.stroke();
    }
    axes.forEach((a, i) => this.drawAxis(ctx, a, i, i === axes.length - 1));
  }

  drawAxis(ctx, axis, i, isMetric) {
    const x = this.axisX(i);
    const s = this.scales[i];
    const top = PAD.top; const bottom = this.height - PAD.bottom;
    ctx.strokeStyle = "#94a3b8";
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
    const brush = this.brushes.get(axis.name);
    if (brush) {
      const y0 = this.toY(i, Math.min(brush[1], s.hi)); const y1 = this.toY(i, Math.max(brush[0], s.lo));
      ctx.fillStyle = "rgba(37, 99, 235, 0.16)";
      ctx.strokeStyle = "#2563eb";
      ctx.fillRect(x - 8, y0, 16, y1 - y0);
      ctx.strokeRect(x - 8, y0, 16, y1 - y0);
    }
    ctx.font = `${isMetric ? 600 : 500} 12px system-ui, sans-serif`;
    ctx.fillStyle = isMetric ? "#1e40af" : "#1c2430";
    ctx.textAlign = "center";
    const spacing = this.data.axes.length > 1 ? this.axisX(1) - this.axisX(0) : 200;
    let name = axis.name;
    while (name.length > 3 && ctx.measureText(name).width > spacing - 8) name = `${name.slice(0, -2)}…`.replace(/……$/, "…");
    ctx.fillText(name, x, top - 14);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#64748b";
    ctx.textAlign = "left";
    const label = (text, y) => {
      ctx.fillStyle = "rgba(255,255,255,0.85)";
      const w = ctx.measureText(text).width;
      ctx.fillRect(x + 5, y - 7, w + 4, 13);
      ctx.fillStyle = "#475569";
      ctx.fillText(text, x + 7, y + 4);
    };
    if (s.kind === "category") {
      axis.categories.forEach((c, k) => label(c.length > 14 ? `${c.slice(0, 13)}…` : c, this.toY(i, k)));
    } else {
      const ticks = s.log
        ? [s.lo, Math.sqrt(s.lo * s.hi), s.hi]
        : [s.lo, s.lo + (s.hi - s.lo) / 2, s.hi];
      ticks.forEach((t) => label(tickText(t), this.toY(i, t)));
    }
  }

  // -- brushing ----------------------------------------------------------------------------------

  axisAt(e) {
    if (!this.data) return -1;
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    let best = -1; let distance = HIT;
    this.data.axes.forEach((_, i) => {
      const d = Math.abs(this.axisX(i) - x);
      if (d <= distance) { best = i; distance = d; }
    });
    return best;
  }

  yOf(e) {
    const y = e.clientY - this.canvas.getBoundingClientRect().top;
    return Math.min(this.height - PAD.bottom, Math.max(PAD.top, y));
  }

  down(e) {
    const i = this.axisAt(e);
    if (i < 0) return;
    e.preventDefault();
    this.dragging = { i, from: this.yOf(e), to: this.yOf(e) };
  }

  move(e) {
    if (!this.dragging) {
      if (this.data) this.canvas.style.cursor = this.axisAt(e) >= 0 ? "ns-resize" : "default";
      return;
    }
    this.dragging.to = this.yOf(e);
    this.setBrush(false);
  }

  up() {
    if (!this.dragging) return;
    this.setBrush(true);
    this.dragging = null;
  }

  setBrush(done) {
    const { i, from, to } = this.dragging;
    const name = this.data.axes[i].name;
    if (Math.abs(to - from) < 3) {
      if (done) this.brushes.delete(name); // a click clears the axis
    } else {
      const a = this.fromY(i, Math.max(from, to)); const b = this.fromY(i, Math.min(from, to));
      this.brushes.set(name, [a, b]);
    }
    this.draw();
    if (done) this.changed();
  }

  clear() {
    this.brushes.clear();
    this.draw();
    this.changed();
  }
}

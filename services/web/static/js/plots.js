// Two small canvas plots of the compare page: a scatter of a param against a metric (a point per
// run, in the run's colour) and a heatmap of a metric over a grid of two params (GetContour's grid,
// one cell per pair of distinct values, empty where no run lies).

const PAD = { top: 14, right: 16, bottom: 40, left: 64 };
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

// A canvas sized to its box (CSS px) and a context drawing in CSS px.
function prepare(canvas, height) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.parentElement.clientWidth || 400;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

function message(canvas, height, text) {
  const { ctx } = prepare(canvas, height);
  ctx.fillStyle = "#687385";
  ctx.font = "13px system-ui, sans-serif";
  ctx.fillText(text, PAD.left, height / 2);
}

function tickText(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-2)) return v.toExponential(1).replace(".0e", "e");
  return String(Number(v.toPrecision(3)));
}

function shorten(text, n = 12) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// Values as numbers when every present one reads as a number, else as category indices.
export function axisOf(raw) {
  const present = raw.filter((v) => v !== "" && v !== null && v !== undefined);
  if (present.every((v) => typeof v === "number" || (v.trim() !== "" && Number.isFinite(Number(v))))) {
    const values = raw.map((v) => (v === "" || v === null || v === undefined ? null : Number(v)));
    const finite = values.filter((v) => v !== null);
    const lo = Math.min(...finite); const hi = Math.max(...finite);
    const log = lo > 0 && hi / lo >= 20;
    return { values, categories: null, lo, hi, log };
  }
  const categories = [...new Set(present)].sort();
  return { values: raw.map((v) => (v === "" ? null : categories.indexOf(v))), categories, lo: -0.5,
    hi: categories.length - 0.5, log: false };
}

function scaler(axis, from, to) {
  let { lo, hi } = axis;
  if (!axis.categories) {
    if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    if (axis.log) { lo = Math.log(lo); hi = Math.log(hi); } else { const m = (hi - lo) * 0.06; lo -= m; hi += m; }
  }
  const f = (v) => from + ((axis.log ? Math.log(v) : v) - lo) / (hi - lo) * (to - from);
  const ticks = axis.categories ? axis.categories.map((c, i) => [i, shorten(c)])
    : [0, 0.5, 1].map((t) => { const v = axis.log ? Math.exp(lo + t * (hi - lo)) : lo + t * (hi - lo); return [v, tickText(v)]; });
  return { f, ticks };
}

function frame(ctx, width, height, xName, yName) {
  ctx.strokeStyle = "#e2e8f0";
  ctx.strokeRect(PAD.left, PAD.top, width - PAD.left - PAD.right, height - PAD.top - PAD.bottom);
  ctx.fillStyle = "#475569";
  ctx.textAlign = "center";
  ctx.fillText(xName, PAD.left + (width - PAD.left - PAD.right) / 2, height - 6);
  ctx.save();
  ctx.translate(12, PAD.top + (height - PAD.top - PAD.bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(yName, 0, 0);
  ctx.restore();
}

// points: [{ id, x (raw), y (number or null), color }]; highlighted: a Set of ids (others grey).
export function drawScatter(canvas, { xName, yName, points, highlighted }, height = 280) {
  const usable = points.filter((p) => p.x !== "" && p.x !== null && p.y !== null && p.y !== undefined);
  canvas.dataset.points = String(usable.length);
  if (!usable.length) { message(canvas, height, "No run has both values."); return; }
  const { ctx, width } = prepare(canvas, height);
  const xs = axisOf(usable.map((p) => p.x));
  const ys = axisOf(usable.map((p) => p.y));
  const sx = scaler(xs, PAD.left, width - PAD.right);
  const sy = scaler(ys, height - PAD.bottom, PAD.top);
  frame(ctx, width, height, xName, yName);
  ctx.fillStyle = "#64748b";
  ctx.textAlign = "center";
  for (const [v, text] of sx.ticks) ctx.fillText(text, sx.f(v), height - PAD.bottom + 14);
  ctx.textAlign = "right";
  for (const [v, text] of sy.ticks) ctx.fillText(text, PAD.left - 6, sy.f(v) + 4);
  const order = usable.map((p, i) => i).sort((a, b) => highlighted.has(usable[a].id) - highlighted.has(usable[b].id));
  for (const i of order) {
    const on = highlighted.has(usable[i].id);
    ctx.beginPath();
    ctx.arc(sx.f(xs.values[i]), sy.f(ys.values[i]), on ? 5 : 4, 0, 2 * Math.PI);
    ctx.fillStyle = on ? usable[i].color : "rgba(148, 163, 184, 0.5)";
    ctx.fill();
    if (on) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke(); }
  }
}

function viridis(t) {
  const at = Math.min(0.9999, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.floor(at); const f = at - i;
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]];
  return `rgb(${a.map((c, k) => Math.round(c + (b[k] - c) * f)).join(",")})`;
}

// contour: GetContour's answer ({ x, y, grid_x, grid_y, grid_z }); the cells are equal in size,
// one per pair of distinct values, labelled with the values (or the categories).
export function drawHeatmap(canvas, contour, { xName, yName, metric }, height = 280) {
  const nx = contour.grid_x.length; const ny = contour.grid_y.length;
  const cells = contour.grid_z.filter((z) => z !== null).length;
  canvas.dataset.cells = String(cells);
  if (!cells) { message(canvas, height, "No run has both params and the metric."); return; }
  const { ctx, width } = prepare(canvas, height);
  const right = 70;
  const w = width - PAD.left - right; const h = height - PAD.top - PAD.bottom;
  const cw = w / nx; const ch = h / ny;
  const finite = contour.grid_z.filter((z) => z !== null);
  const lo = Math.min(...finite); const hi = Math.max(...finite);
  for (let j = 0; j < ny; j++) {
    for (let i = 0; i < nx; i++) {
      const z = contour.grid_z[j * nx + i];
      ctx.fillStyle = z === null ? "#f1f5f9" : viridis(hi === lo ? 0.5 : (z - lo) / (hi - lo));
      ctx.fillRect(PAD.left + i * cw, PAD.top + (ny - 1 - j) * ch, Math.ceil(cw) - 1, Math.ceil(ch) - 1);
    }
  }
  const label = (axis, v) => (axis.categories.length ? shorten(axis.categories[v] ?? String(v), 10) : tickText(v));
  const every = (n, room) => Math.max(1, Math.ceil(n / Math.max(1, Math.floor(room))));
  ctx.fillStyle = "#64748b";
  ctx.textAlign = "center";
  const sx = every(nx, w / 40);
  contour.grid_x.forEach((v, i) => { if (i % sx === 0) ctx.fillText(label(contour.x, v), PAD.left + (i + 0.5) * cw, height - PAD.bottom + 14); });
  ctx.textAlign = "right";
  const sy = every(ny, h / 18);
  contour.grid_y.forEach((v, j) => { if (j % sy === 0) ctx.fillText(label(contour.y, v), PAD.left - 6, PAD.top + (ny - 0.5 - j) * ch + 4); });
  frame(ctx, width - right + PAD.right, height, xName, yName);
  // the colour scale
  const bx = width - right + 14;
  for (let k = 0; k < h; k++) { ctx.fillStyle = viridis(1 - k / h); ctx.fillRect(bx, PAD.top + k, 12, 1); }
  ctx.fillStyle = "#475569";
  ctx.textAlign = "left";
  ctx.fillText(tickText(hi), bx + 16, PAD.top + 8);
  ctx.fillText(tickText(lo), bx + 16, PAD.top + h);
  ctx.save();
  ctx.translate(bx + 34, PAD.top + h / 2);
  ctx.rotate(Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(shorten(metric, 24), 0, 0);
  ctx.restore();
}

// A line chart in SVG, drawn here rather than by a library: one y axis, steps or lines, a
// legend. Numbers in a chart are for the eye only; the tables beside it carry the exact values.

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f5fbf", "#b3261e", "#1b7f3b", "#8a5a00", "#6b3fa0", "#00727a"];
const WIDTH = 800;
const HEIGHT = 220;
const PAD = { left: 70, right: 12, top: 10, bottom: 24 };

function el(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * series: [{ name, points: [[x, y], …] }], x increasing. `step`: hold each value until the next
 * point (a balance after each posting). `zero`: the y axis includes 0 (the default). Returns a
 * <div class="chart">.
 */
export function lineChart(series, { step = false, zero = true, xLabel = (x) => String(x), yLabel = (y) => String(y) } = {}) {
  const wrap = document.createElement("div");
  wrap.className = "chart";
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    wrap.textContent = "No data to draw yet.";
    wrap.classList.add("muted");
    return wrap;
  }
  let [xMin, xMax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  // `zero: false` fits the y axis to the data, for values far from zero (a balance that moves little).
  const ys = all.map((p) => p[1]).concat(zero ? [0] : []);
  let [yMin, yMax] = [Math.min(...ys), Math.max(...ys)];
  if (xMax === xMin) xMax = xMin + 1;
  if (yMax === yMin) yMax = yMin + 1;
  const x = (v) => PAD.left + ((v - xMin) / (xMax - xMin)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - ((v - yMin) / (yMax - yMin)) * (HEIGHT - PAD.top - PAD.bottom);
  const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", role: "img" });
  const base = Math.min(Math.max(0, yMin), yMax); // zero, or the bound nearest it
  svg.append(el("line", { class: "axis", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(base), y2: y(base) }));
  svg.append(el("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: HEIGHT - PAD.bottom }));
  for (const v of [yMin, yMax]) svg.append(el("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, yLabel(v)));
  svg.append(el("text", { x: PAD.left, y: HEIGHT - 6 }, xLabel(xMin)));
  svg.append(el("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end" }, xLabel(xMax)));
  series.forEach((s, i) => {
    const points = [];
    s.points.forEach(([px, py], j) => {
      if (step && j > 0) points.push(`${x(px)},${y(s.points[j - 1][1])}`);
      points.push(`${x(px)},${y(py)}`);
    });
    svg.append(el("polyline", { points: points.join(" "), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.8 }));
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLORS[i % COLORS.length];
    item.append(swatch, s.name);
    legend.append(item);
  });
  wrap.append(svg, legend);
  return wrap;
}

// A curve (one point's profile, or a summed one) as SVG with axes; it scales with its panel.

const SVG = "http://www.w3.org/2000/svg";
const W = 480, H = 250, L = 62, R = 12, T = 12, B = 40;

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(x) {
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e4 || a < 1e-2) ? x.toExponential(1) : String(Number(x.toPrecision(4)));
}

/** About five round tick values between lo and hi. */
function ticks(lo, hi) {
  const step0 = (hi - lo) / 5 || 1;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

function range(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  if (!Number.isFinite(lo)) return [0, 1];
  return hi > lo ? [lo, hi] : [lo - 0.5, hi + 0.5];
}

export class CurvePlot {
  constructor(parent) {
    this.svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img" });
    parent.append(this.svg);
  }

  /** y over x; `band` [i0, i1] shades the chosen bins; labels name the axes and the curve. */
  show(x, y, { xlabel, ylabel, title, band }) {
    const [x0, x1] = range(x), [y0, y1] = range(y);
    const px = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
    const py = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
    const parts = [];
    if (band) {
      const a = px(x[band[0]]), b = px(x[band[1]]);
      parts.push(el("rect", { class: "band", x: Math.min(a, b) - 1, y: T, width: Math.abs(b - a) + 2, height: H - T - B }));
    }
    parts.push(el("path", { class: "axes", d: `M${L},${T}V${H - B}H${W - R}` }));
    for (const v of ticks(x0, x1)) {
      parts.push(el("path", { class: "axes", d: `M${px(v)},${H - B}v4` }));
      parts.push(el("text", { x: px(v), y: H - B + 16, "text-anchor": "middle" }, fmt(v)));
    }
    for (const v of ticks(y0, y1)) {
      parts.push(el("path", { class: "axes", d: `M${L},${py(v)}h-4` }));
      parts.push(el("text", { x: L - 7, y: py(v) + 4, "text-anchor": "end" }, fmt(v)));
    }
    parts.push(el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "label" }, xlabel));
    parts.push(el("text", { x: L + 6, y: T + 10, class: "label" }, `${title}${ylabel ? ` [${ylabel}]` : ""}`));
    let d = "", pen = "M";
    for (let i = 0; i < y.length; i++) {
      if (!Number.isFinite(y[i]) || !Number.isFinite(x[i])) {
        pen = "M";
        continue;
      }
      d += `${pen}${px(x[i]).toFixed(1)},${py(y[i]).toFixed(1)}`;
      pen = "L";
    }
    const curve = el("path", { class: "curve", d });
    const json = (a) => JSON.stringify(Array.from(a, (v) => (Number.isFinite(v) ? v : null)));
    Object.assign(curve.dataset, { x: json(x), values: json(y), xlabel }); // what tests can read back
    parts.push(curve);
    this.svg.replaceChildren(...parts);
    this.svg.setAttribute("aria-label", `${title} over ${xlabel}`);
  }
}

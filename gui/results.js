// Every output of a map route, drawn from its npy answers and laid out by shape alone (the GUI names no
// analysis): a value per point is a map; a curve per point (a leading axis before the scan's lines and
// points) is a map of a chosen bin range plus the chosen point's curve; two values per point with no
// axis are a vector (x, y, magnitude and direction); a 1-D output is a curve, or the axis of another.
// All maps are linked: hovering or clicking one marks the same point on all.

import { ServerError } from "./api.js";
import { hueImage, liveLimits } from "./colors.js";
import { fetchNpy } from "./npy.js";
import { PixelMap } from "./pixelmap.js";
import { CurvePlot } from "./plot.js";
import { resultUrl } from "./state.js";

function span([start, stop, step]) {
  return Math.max(0, Math.ceil((stop - start) / step));
}

function same(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function fmt(v) {
  return Number.isFinite(v) ? String(Number(v.toPrecision(6))) : "—";
}

/** What a parameter is in this view: the view's value, else the schema's default. */
function inEffect(ep, params, name) {
  const v = params[name];
  return v !== undefined && v !== "" ? v : ep.parameters[name]?.default;
}

/** A box of the outputs panel; `title` heads it (a lone map's own caption is enough: null). */
function card(parent, title, wide = false) {
  const section = Object.assign(document.createElement("section"), { className: wide ? "result wide" : "result" });
  if (title) section.append(Object.assign(document.createElement("h4"), { textContent: title }));
  parent.append(section);
  return section;
}

export class ResultView {
  constructor(els, { onPoint, onHover }) {
    Object.assign(this, els); // grid (container), hoverText, status
    this.onPoint = onPoint; // ([line, point]) when a point is clicked
    this.onHover = onHover; // (cell or null) when the pointer moves over one of these maps
    this.key = "";
    this.maps = [];
    this.curves = []; // draw(cell) of each per-point curve
    this.cursor = null;
    this.sel = null; // {vert, horz} of the answer
  }

  /**
   * Show the outputs of `view` (route `ep`); `sel` is the answer's selection (vert, horz), `unit` the
   * primary output's unit. Asking again for the same numbers only restyles and marks the point.
   */
  async show(view, ep, sel, unit) {
    const compute = Object.fromEntries(Object.entries(view.params).filter(([k]) => !ep.parameters[k]?.["x-presentation"]));
    const names = ep.parameters.output?.enum || [null];
    const key = resultUrl({ ...view, params: compute }, "npy") + JSON.stringify(sel);
    const style = Object.fromEntries(["cmap", "log", "plow", "phigh"].map((k) => [k, inEffect(ep, view.params, k)]));
    const primary = inEffect(ep, view.params, "output");
    if (key === this.key && JSON.stringify(style) === this.style) return this.select(view.at);
    this.key = key;
    this.style = JSON.stringify(style);
    this.status.textContent = "reading the arrays…";
    this.grid.dataset.state = "loading";
    const arrays = new Map();
    for (const name of names) {
      const params = name === null ? compute : { ...compute, output: name };
      try {
        arrays.set(name, await fetchNpy(resultUrl({ ...view, params }, "npy")));
      } catch (exc) {
        if (!(exc instanceof ServerError && exc.status === 400)) throw exc; // 400: an output of a channel not asked for
      }
      if (this.key !== key) return; // a newer view took over
    }
    this.sel = sel;
    this.ep = ep;
    this.build(arrays, style, primary, unit, view);
    this.status.textContent = "";
    this.select(view.at);
    this.grid.dataset.state = "done"; // what tests and screen readers can follow
  }

  /** Nothing shown until the next answer is complete. */
  clear() {
    this.key = "";
    this.grid.dataset.state = "";
    this.status.textContent = "Every output is drawn here when the answer is complete.";
    this.empty();
  }

  empty() {
    this.grid.replaceChildren();
    this.hoverText.textContent = "";
    this.maps = [];
    this.curves = [];
  }

  build(arrays, style, primary, unit, view) {
    this.empty();
    const L = this.sel?.vert ? span(this.sel.vert) : 0, P = this.sel?.horz ? span(this.sel.horz) : 0;
    const isAxis = (name) => name !== null && name.split(".").pop() === "axis";
    const group = (name) => (name && name.includes(".") ? name.slice(0, name.lastIndexOf(".") + 1) : "");
    const axisOf = (name, k) => [...arrays].find(([n, a]) => isAxis(n) && group(n) === group(name) && same(a.shape, [k]));
    const axisUnit = (name) => {
      const p = Object.keys(this.ep.parameters).find((k) => k === `${group(name)}unit` && this.ep.parameters[k].enum);
      return p ? inEffect(this.ep, view.params, p) : "";
    };
    for (const [name, a] of arrays) {
      const title = name ?? this.ep.name;
      const own = name === primary ? { ...style, vmin: view.params.vmin, vmax: view.params.vmax, unit } : style;
      if (same(a.shape, [L, P])) {
        this.addMap(card(this.grid, null), title, a.data, own);
      } else if (a.shape.length === 3 && same(a.shape.slice(1), [L, P])) {
        const axis = axisOf(name, a.shape[0]);
        if (!axis && a.shape[0] === 2) this.addVector(title, a.data, L * P, own);
        else this.addCurves(title, a, axis, axisUnit(name), own);
      } else if (a.shape.length === 1 && !isAxis(name)) {
        const axis = axisOf(name, a.shape[0]);
        const x = axis ? axis[1].data : Float64Array.from(a.data, (_, i) => i);
        new CurvePlot(card(this.grid, title, true)).show(x, a.data, { xlabel: axis ? `${axis[0]} [${axisUnit(name)}]` : "bin",
          ylabel: "", title });
      } else if (!isAxis(name)) {
        card(this.grid, title).append(`an array of shape ${a.shape.join(" × ")} (in the h5, mat and npy answers)`);
      }
    }
  }

  addMap(parent, title, values, style) {
    const m = new PixelMap(parent, { title, name: title, onHover: (c) => this.hovered(c), onClick: (c) => this.click(c) });
    m.showValues(values, [span(this.sel.vert), span(this.sel.horz)], style);
    this.maps.push(m);
    return m;
  }

  /** Two values per point: its x and y, magnitude, and direction as hue with magnitude as brightness. */
  addVector(title, data, n, style) {
    const box = card(this.grid, title, true);
    box.classList.add("vector");
    const x = data.subarray(0, n), y = data.subarray(n, 2 * n);
    const mag = Float64Array.from(x, (v, i) => Math.hypot(v, y[i]));
    const angle = Float64Array.from(x, (v, i) => (Math.atan2(y[i], v) * 180) / Math.PI);
    this.addMap(box, `${title} x`, x, style);
    this.addMap(box, `${title} y`, y, style);
    this.addMap(box, `${title} magnitude`, mag, { ...style, log: false });
    const [, top] = liveLimits(mag, { phigh: style.phigh });
    const m = new PixelMap(box, { title: `${title} direction`, name: `${title} direction`,
      onHover: (c) => this.hovered(c), onClick: (c) => this.click(c) });
    const shape = [span(this.sel.vert), span(this.sel.horz)];
    m.draw(angle, shape, hueImage(angle, mag, shape[1], shape[0], 360, top || 1));
    m.setLegend({ kind: "hue", by: "brightness", period: 360, unit: "deg", vmax: top, strength_unit: style.unit || "" });
    m.figure.dataset.top = String(top);
    this.maps.push(m);
  }

  /** A curve per point: a map of the mean over a chosen range of bins, and the chosen point's curve. */
  addCurves(title, a, axis, unit, style) {
    const [k] = a.shape;
    const n = a.data.length / k;
    const box = card(this.grid, title, true);
    box.classList.add("curves");
    const x = axis ? axis[1].data : Float64Array.from({ length: k }, (_, i) => i);
    const xlabel = axis ? `${axis[0]}${unit ? ` [${unit}]` : ""}` : "bin";
    const row = Object.assign(document.createElement("div"), { className: "bins" });
    const input = (v) => Object.assign(document.createElement("input"), { type: "number", min: 0, max: k - 1, step: 1, value: v });
    const lo = input(0), hi = input(k - 1);
    lo.setAttribute("aria-label", `${title}: first bin`);
    hi.setAttribute("aria-label", `${title}: last bin`);
    const range = Object.assign(document.createElement("span"), { className: "doc" });
    row.append("bins ", lo, " to ", hi, " ", range);
    box.append(row);
    const m = this.addMap(box, `${title}: mean over the bins`, new Float64Array(n), style);
    const plot = new CurvePlot(box);
    const bins = () => {
      const i0 = Math.max(0, Math.min(k - 1, Math.round(Number(lo.value) || 0)));
      const i1 = Math.max(i0, Math.min(k - 1, Math.round(Number(hi.value) || 0)));
      return [i0, i1];
    };
    const remap = () => {
      const [i0, i1] = bins();
      Object.assign(m.figure.dataset, { bins: `${i0},${i1}` });
      range.textContent = `${xlabel} ${fmt(x[i0])} to ${fmt(x[i1])}`;
      const mean = new Float64Array(n);
      for (let p = 0; p < n; p++) {
        let s = 0, c = 0;
        for (let b = i0; b <= i1; b++) {
          const v = a.data[b * n + p];
          if (Number.isFinite(v)) [s, c] = [s + v, c + 1];
        }
        mean[p] = c ? s / c : NaN;
      }
      m.showValues(mean, m.shape, style);
      draw(this.cursor);
    };
    const draw = (cell) => {
      const c = cell || [0, 0];
      const p = c[0] * span(this.sel.horz) + c[1];
      const [line, pt] = this.point(c);
      plot.show(x, Float64Array.from({ length: k }, (_, b) => a.data[b * n + p]),
        { xlabel, ylabel: style.unit || "", title: `${title} at line ${line}, point ${pt}`, band: bins() });
      plot.svg.dataset.cell = c.join(",");
    };
    lo.addEventListener("change", remap);
    hi.addEventListener("change", remap);
    remap();
    this.curves.push(draw);
  }

  /** Scan line and point of a cell of the answer. */
  point([row, col]) {
    return [this.sel.vert[0] + row * this.sel.vert[2], this.sel.horz[0] + col * this.sel.horz[2]];
  }

  cellOf(at) {
    if (!at || !this.sel?.vert) return null;
    const cell = [(at[0] - this.sel.vert[0]) / this.sel.vert[2], (at[1] - this.sel.horz[0]) / this.sel.horz[2]];
    const ok = cell.every(Number.isInteger) && cell[0] >= 0 && cell[1] >= 0 && cell[0] < span(this.sel.vert) && cell[1] < span(this.sel.horz);
    return ok ? cell : null;
  }

  hovered(cell) {
    this.onHover(cell);
    this.hover(cell);
  }

  /** Mark the hovered cell on every map and list their values there. */
  hover(cell) {
    for (const m of this.maps) m.mark(cell, "hover");
    if (!cell) return;
    const [line, pt] = this.point(cell);
    this.hoverText.textContent = `line ${line}, point ${pt}: ` + this.maps.map((m) => `${m.caption.textContent} ${fmt(m.value(cell))}`).join("; ");
  }

  click(cell) {
    this.onPoint(this.point(cell));
  }

  /** The chosen scan point (or none): marked on every map, its curves drawn. */
  select(at) {
    const cell = this.cellOf(at);
    this.cursor = cell;
    for (const m of this.maps) m.mark(cell, "cursor");
    for (const draw of this.curves) draw(cell);
  }
}

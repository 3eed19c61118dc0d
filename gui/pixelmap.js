// One map of values over the scan's points, drawn by the GUI from the npy answer: each point a block
// of screen pixels (nearest neighbour) filling the panel's width, its colour bar beside it, wheel
// zoom and drag pan. Hover and click report the cell under the pointer, whatever the zoom.

import { drawLegend, liveLimits, paint } from "./colors.js";
import { ZoomPan } from "./zoompan.js";

const LEGEND_WIDTH = 100;
const MIN_PX = 4; // screen px per point, at least, when the panel is wide enough

function div(className) {
  return Object.assign(document.createElement("div"), { className });
}

/** The screen px per point that fills `room` px of width, at most `tallest` px high (but MIN_PX if it fits). */
export function fitScale(lines, points, room, tallest) {
  const wide = room / points;
  return lines * wide <= tallest ? wide : Math.max(tallest / lines, Math.min(MIN_PX, wide));
}

const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

/** The cell an arrow key moves to from `cell` on a map of `shape`, or null for any other key. */
export function arrowStep(cell, key, [lines, points]) {
  const m = MOVES[key];
  return m ? [Math.min(lines - 1, Math.max(0, cell[0] + m[0])), Math.min(points - 1, Math.max(0, cell[1] + m[1]))] : null;
}

export class PixelMap {
  constructor(parent, { title, name, onHover, onClick }) {
    this.figure = Object.assign(document.createElement("figure"), { className: "pmap" });
    this.figure.dataset.output = name;
    this.caption = Object.assign(document.createElement("figcaption"), { textContent: title });
    this.row = div("pmap-row");
    this.viewport = div("pmap-view");
    this.viewport.tabIndex = 0;
    this.content = div("pmap-content");
    this.canvas = document.createElement("canvas");
    this.hoverEl = div("pmap-hover");
    this.cursorEl = div("pmap-cursor");
    this.hoverEl.hidden = this.cursorEl.hidden = true;
    this.legend = Object.assign(document.createElement("canvas"), { className: "pmap-legend", width: LEGEND_WIDTH, height: 200 });
    this.content.append(this.canvas, this.hoverEl, this.cursorEl);
    this.viewport.append(this.content);
    this.row.append(this.viewport, this.legend);
    this.figure.append(this.caption, this.row);
    parent.append(this.figure);
    this.values = null;
    this.shape = [1, 1];
    this.scale = 1;
    this.zoom = new ZoomPan(this.viewport, this.content, (e) => {
      const cell = this.cellAt(e);
      if (cell) onClick(cell);
    });
    this.viewport.addEventListener("mousemove", (e) => onHover(this.cellAt(e)));
    this.viewport.addEventListener("mouseleave", () => onHover(null));
    this.viewport.setAttribute("aria-label", `${title}: arrow keys move the cursor, Enter chooses the point`);
    this.viewport.addEventListener("keydown", (e) => { // the keyboard's pointer: arrows hover, Enter clicks
      const cell = this.keyCell || [0, 0];
      const next = arrowStep(cell, e.key, this.shape);
      if (!next && e.key !== "Enter") return;
      e.preventDefault();
      if (next) onHover((this.keyCell = next));
      else onClick(cell);
    });
    new ResizeObserver(() => this.fit()).observe(this.row);
  }

  /** Values (row-major over lines × points) through a colormap; `style` holds cmap, log, vmin, vmax, plow, phigh, unit. */
  showValues(values, [lines, points], style) {
    const log = style.log === true || style.log === "true";
    const [lo, hi] = liveLimits(values, { ...style, log });
    const cmap = style.cmap || "viridis";
    this.draw(values, [lines, points], paint(values, points, lines, cmap, lo, hi, log));
    const legend = { kind: "colormap", cmap, log, vmin: log ? 10 ** lo : lo, vmax: log ? 10 ** hi : hi, unit: style.unit };
    Object.assign(this.figure.dataset, { vmin: String(lo), vmax: String(hi), log: String(log), cmap });
    this.setLegend(legend);
  }

  /** A ready image (e.g. direction as hue) with its own legend; `values` are what hover reports. */
  draw(values, [lines, points], image) {
    this.values = values;
    this.shape = [lines, points];
    this.canvas.width = points;
    this.canvas.height = lines;
    this.canvas.getContext("2d").putImageData(image, 0, 0);
    this.fit();
  }

  setLegend(legend) {
    this.legend.height = Math.max(160, Math.min(260, Math.round(this.shape[0] * this.scale)));
    drawLegend(this.legend, legend);
  }

  fit() {
    const [lines, points] = this.shape;
    const room = Math.max(40, this.row.clientWidth - LEGEND_WIDTH - 8);
    this.scale = fitScale(lines, points, room, Math.max(240, window.innerHeight * 0.6));
    const w = points * this.scale, h = lines * this.scale;
    Object.assign(this.content.style, { width: `${w}px`, height: `${h}px` });
    Object.assign(this.viewport.style, { width: `${Math.min(w, room)}px`, height: `${h}px` });
    this.viewport.dataset.scale = String(this.scale);
    this.zoom.apply();
  }

  /** The cell under a mouse event, through the zoom: [row, col], or null outside the map. */
  cellAt(e) {
    const r = this.canvas.getBoundingClientRect();
    const row = Math.floor(((e.clientY - r.top) / r.height) * this.shape[0]);
    const col = Math.floor(((e.clientX - r.left) / r.width) * this.shape[1]);
    const v = this.viewport.getBoundingClientRect();
    const inside = e.clientX >= v.left && e.clientX < v.right && e.clientY >= v.top && e.clientY < v.bottom;
    return inside && row >= 0 && col >= 0 && row < this.shape[0] && col < this.shape[1] ? [row, col] : null;
  }

  value([row, col]) {
    return this.values ? this.values[row * this.shape[1] + col] : NaN;
  }

  /** Mark a cell: "cursor" for the chosen point, "hover" for the one under the pointer (null hides it). */
  mark(cell, kind = "cursor") {
    const el = kind === "cursor" ? this.cursorEl : this.hoverEl;
    el.hidden = !cell;
    if (!cell) return;
    const s = 100 / this.shape[1], t = 100 / this.shape[0];
    Object.assign(el.style, { left: `${cell[1] * s}%`, top: `${cell[0] * t}%`, width: `${s}%`, height: `${t}%` });
  }
}

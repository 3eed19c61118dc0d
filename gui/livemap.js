// A map that fills in as the server's progress stream reports blocks, then shows the server's png.
//
// The GUI names the request (X-Request-Id) and listens on /progress/{id} before asking, so it sees
// every block; cancelling tells the server (DELETE /progress/{id}) and drops the answer. For a scan
// still being written the map is asked for again until the scan is complete: the cluster's cache
// makes each round compute only the blocks that are new.

import { request, withToken } from "./api.js";
import { drawLegend, liveLimits, paint } from "./colors.js";
import { arrowStep, fitScale } from "./pixelmap.js";
import { ZoomPan } from "./zoompan.js";

const FOLLOW_SECONDS = 2;

function span([start, stop, step]) {
  return Math.max(0, Math.ceil((stop - start) / step));
}

function rid() {
  return "gui-" + (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
}

export class LiveMap {
  constructor(els, { onPoint, onRegion, onSettled, onHover }) {
    Object.assign(this, els);
    this.onPoint = onPoint;
    this.onHover = onHover; // (cell or null) to mark the same point elsewhere
    this.onRegion = onRegion;
    this.onSettled = onSettled; // after each answer: (ok) -> Promise<boolean follow-again>
    this.values = null; // Float64Array, row-major, of the shown cells
    this.shape = null; // [lines, points]
    this.scale = 1;
    this.view = null; // the png's X-Dada-View: legend, vert, horz
    this.shownUrl = "";
    this.cursor = null;
    this.job = null;
    this.previewing = null; // {busy, next, generation}: the preview asked for and the latest one waiting
    this.generation = 0; // each run() starts a new one: a late preview never covers its answer
    this.cancelButton.addEventListener("click", () => this.cancel());
    this.box.addEventListener("mousemove", (e) => this.hover(this.cellAt(e)));
    this.box.addEventListener("mouseleave", () => this.hover(null));
    this.box.addEventListener("mousedown", (e) => this.press(e));
    this.box.addEventListener("keydown", (e) => this.key(e));
    this.zoom = new ZoomPan(this.box, this.content, (e) => {
      const cell = this.cellAt(e);
      if (cell) this.choose(cell);
    });
    new ResizeObserver(() => this.shape && this.size(...this.shape)).observe(this.box.parentElement);
  }

  /** Ask for `urls.png` (and its values as `urls.csv`), painting blocks as they come. */
  async run(urls, render) {
    this.stop();
    this.generation += 1;
    this.previewing = null;
    // a new view starts from an empty map; asking again for the same one (a growing scan) keeps what is shown
    const job = { id: rid(), controller: new AbortController(), urls, render, timer: null, source: null,
      fresh: urls.png !== this.shownUrl };
    this.shownUrl = urls.png;
    this.job = job;
    this.error.textContent = "";
    this.cancelButton.disabled = false;
    Object.assign(this.box.dataset, { rid: job.id, blocks: "0" }); // what tests and screen readers can follow
    this.status(0, 0, "asking…", "running");
    job.source = new EventSource(withToken(`/progress/${job.id}`));
    job.source.addEventListener("progress", (e) => this.job === job && this.progress(JSON.parse(e.data), job));
    job.source.addEventListener("end", () => job.source.close());
    let ok = false;
    try {
      const resp = await request(urls.png, { headers: { "X-Request-Id": job.id }, signal: job.controller.signal });
      const view = JSON.parse(resp.headers.get("X-Dada-View") || "{}");
      const blob = await resp.blob();
      if (this.job !== job) return;
      await this.showImage(blob, view);
      ok = true;
      this.status(1, 1, "done", "done");
      if (this.isMap()) await this.loadValues(urls.csv, job);
    } catch (exc) {
      if (exc.name === "AbortError" || this.job !== job) return;
      this.fail(exc);
    } finally {
      if (this.job === job) this.cancelButton.disabled = true;
      job.source.close();
    }
    if (this.job === job && this.onSettled && (await this.onSettled(ok)) && this.job === job) {
      job.timer = setTimeout(() => this.job === job && this.run(urls, render), FOLLOW_SECONDS * 1000);
      this.status(1, 1, "following the scan: asking again as frames land", "following");
    }
  }

  /** Show the png at `url` (a dragged ring's map, answered from the scan's polar reduction) as soon as it
   * comes; while one is on its way only the latest of those asked for meanwhile is asked next. */
  async preview(url) {
    const generation = this.generation;
    if (!this.previewing || this.previewing.generation !== generation) this.previewing = { busy: false, next: null, generation };
    const p = this.previewing;
    p.next = url;
    if (p.busy) return;
    p.busy = true;
    try {
      while (p.next && this.generation === generation) {
        const asked = p.next;
        p.next = null;
        const resp = await request(asked);
        const view = JSON.parse(resp.headers.get("X-Dada-View") || "{}");
        const blob = await resp.blob();
        if (this.generation !== generation) return;
        await this.showImage(blob, view);
        Object.assign(this.box.dataset, { previews: String(Number(this.box.dataset.previews || 0) + 1),
          previewSource: resp.headers.get("X-Dada-Source") || "" });
      }
    } catch (exc) {
      if (this.generation === generation) this.error.textContent = exc.message;
    } finally {
      p.busy = false;
    }
  }

  fail(exc) {
    this.img.hidden = this.canvas.hidden = true; // no map of other parameters beside the message
    this.shownUrl = "";
    drawLegend(this.legend, null);
    this.status(0, 0, exc.status ? `error ${exc.status}` : "error", "error");
    this.error.textContent = exc.message;
    this.error.dispatchEvent(new CustomEvent("server-error", { detail: exc.body || {} }));
  }

  /** Forget the running request (a new one replaces it); the server is told to stop. */
  stop() {
    const job = this.job;
    if (!job) return;
    this.job = null;
    clearTimeout(job.timer);
    job.controller.abort();
    job.source?.close();
    request(`/progress/${job.id}`, { method: "DELETE" }).catch(() => {});
  }

  cancel() {
    this.stop();
    this.cancelButton.disabled = true;
    this.status(0, 0, "cancelled", "cancelled");
  }

  status(done, total, text, state) {
    this.bar.max = total || 1;
    this.bar.value = done;
    this.text.textContent = text;
    if (state) this.box.dataset.state = state;
  }

  /** Fill the panel's width (nearest neighbour), at most most of the window's height. */
  size(lines, points) {
    const room = Math.max(40, this.box.parentElement.clientWidth - this.legend.width - 12);
    this.scale = fitScale(lines, points, room, Math.max(240, window.innerHeight * 0.6));
    const w = points * this.scale, h = lines * this.scale;
    for (const el of [this.canvas, this.img, this.content]) Object.assign(el.style, { width: `${w}px`, height: `${h}px` });
    Object.assign(this.box.style, { width: `${Math.min(w, room)}px`, height: `${h}px` });
    this.box.dataset.scale = String(this.scale);
    this.zoom.apply();
  }

  progress(ev, job) {
    const render = job.render;
    if (ev.shape) {
      const [lines, points] = ev.shape;
      if (job.fresh || !this.shape || this.shape[0] !== lines || this.shape[1] !== points) {
        job.fresh = false;
        this.shape = [lines, points];
        this.values = new Float64Array(lines * points).fill(NaN);
        this.canvas.width = points;
        this.canvas.height = lines;
        this.zoom.reset();
        this.size(lines, points);
        this.img.hidden = true;
        this.cursorEl.hidden = this.regionEl.hidden = true;
        this.cursor = null;
        this.hoverInfo.textContent = "";
      }
      this.canvas.hidden = false;
    }
    if (ev.cells) this.box.dataset.blocks = String(Number(this.box.dataset.blocks) + 1);
    if (ev.cells && ev.values && this.values) { // views without a value per point (profiles) only count
      ev.cells.forEach((cell, i) => (this.values[cell] = ev.values[i] === null ? NaN : ev.values[i]));
      const log = render.log === true || render.log === "true";
      const [lo, hi] = liveLimits(this.values, { ...render, log });
      const [lines, points] = this.shape;
      this.canvas.getContext("2d").putImageData(paint(this.values, points, lines, render.cmap || "viridis", lo, hi, log), 0, 0);
      drawLegend(this.legend, { kind: "colormap", cmap: render.cmap || "viridis", log,
        vmin: log ? 10 ** lo : lo, vmax: log ? 10 ** hi : hi, unit: null });
    }
    if (ev.total) this.status(ev.done, ev.total, `${ev.done} of ${ev.total} blocks`);
  }

  async showImage(blob, view) {
    const old = this.img.src;
    this.img.src = URL.createObjectURL(blob);
    await this.img.decode();
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    this.view = view;
    const { naturalWidth: w, naturalHeight: h } = this.img;
    if (this.isMap()) {
      if (!this.shape || this.shape[0] !== h || this.shape[1] !== w) this.zoom.reset();
      this.shape = [h, w];
      this.size(h, w);
    } else { // not a value per point (a waterfall, a curve): a whole enlargement that fits, never wider than the panel
      this.shape = null;
      this.zoom.reset();
      for (const el of [this.content, this.box]) el.style.width = el.style.height = "";
      const room = this.box.parentElement.clientWidth - this.legend.width - 12;
      const k = Math.max(1, Math.floor(room / w));
      Object.assign(this.img.style, { width: `${w * k}px`, height: `${h * k}px` });
    }
    this.img.hidden = false;
    this.canvas.hidden = true;
    drawLegend(this.legend, view.legend || null);
  }

  /** Whether the image's cells are the selection's scan points (not a profile or a waterfall). */
  isMap() {
    const v = this.view;
    return Boolean(v && v.vert && v.horz && this.img.naturalHeight === span(v.vert) && this.img.naturalWidth === span(v.horz));
  }

  async loadValues(url, job) {
    const text = await (await request(url, { signal: job.controller.signal })).text();
    if (this.job !== job) return;
    const rows = text.trim().split("\n");
    const [lines, points] = this.shape;
    if (rows.length !== lines) return;
    const values = new Float64Array(lines * points);
    rows.forEach((row, i) => row.split(",").forEach((v, j) => (values[i * points + j] = Number(v))));
    this.values = values;
  }

  /** The cell under a mouse event, through the zoom, or null. */
  cellAt(e) {
    if (!this.shape || (!this.img.hidden && !this.isMap())) return null;
    const r = this.content.getBoundingClientRect(), b = this.box.getBoundingClientRect();
    if (e.clientX < b.left || e.clientX >= b.right || e.clientY < b.top || e.clientY >= b.bottom) return null;
    const row = Math.floor(((e.clientY - r.top) / r.height) * this.shape[0]);
    const col = Math.floor(((e.clientX - r.left) / r.width) * this.shape[1]);
    return row >= 0 && col >= 0 && row < this.shape[0] && col < this.shape[1] ? [row, col] : null;
  }

  /** Scan line and point of a map cell, from the answer's selection. */
  point([row, col]) {
    const v = this.view && this.view.vert ? this.view : { vert: [0, 0, 1], horz: [0, 0, 1] };
    return [v.vert[0] + row * v.vert[2], v.horz[0] + col * v.horz[2]];
  }

  hover(cell) {
    this.onHover?.(cell);
    this.show(cell);
  }

  /** The hover line: a cell's scan point, value and unit. */
  show(cell) {
    if (!cell) {
      this.hoverInfo.textContent = "";
      return;
    }
    const [line, pt] = this.point(cell);
    const value = this.values ? this.values[cell[0] * this.shape[1] + cell[1]] : NaN;
    const legend = this.view?.legend;
    const u = legend ? (legend.kind === "hue" ? legend.strength_unit : legend.unit) : "";
    const unit = u ? ` ${u}` : "";
    this.hoverInfo.textContent = `line ${line}, point ${pt}: ${Number.isFinite(value) ? Number(value.toPrecision(6)) : "—"}${unit}`;
  }

  /** Put a mark over cells (in % of the map, so it follows the zoom). */
  place(el, [r0, c0], [r1, c1]) {
    const s = 100 / this.shape[1], t = 100 / this.shape[0];
    Object.assign(el.style, {
      left: `${Math.min(c0, c1) * s}%`, top: `${Math.min(r0, r1) * t}%`,
      width: `${(Math.abs(c1 - c0) + 1) * s}%`, height: `${(Math.abs(r1 - r0) + 1) * t}%`,
    });
    el.hidden = false;
  }

  choose(cell) {
    this.cursor = cell;
    this.place(this.cursorEl, cell, cell);
    this.onPoint(this.point(cell));
  }

  /** Shift-drag: a region of points (a plain press is a click or a pan: ZoomPan). */
  press(e) {
    const start = this.cellAt(e);
    if (!start || !e.shiftKey) return;
    e.preventDefault();
    let end = start;
    const move = (m) => {
      end = this.cellAt(m) || end;
      this.place(this.regionEl, start, end);
    };
    const up = () => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      const [a, b] = [this.point([Math.min(start[0], end[0]), Math.min(start[1], end[1])]),
        this.point([Math.max(start[0], end[0]), Math.max(start[1], end[1])])];
      this.onRegion({ vert: `${a[0]}:${b[0] + 1}`, horz: `${a[1]}:${b[1] + 1}` });
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
    this.place(this.regionEl, start, start);
  }

  key(e) {
    if (!this.shape) return;
    const cell = this.cursor || [0, 0];
    const next = arrowStep(cell, e.key, this.shape);
    if (next) {
      e.preventDefault();
      this.cursor = next;
      this.place(this.cursorEl, next, next);
      this.hover(next);
    } else if (e.key === "Enter") {
      e.preventDefault();
      this.choose(cell);
    }
  }

  /** Show a chosen scan point's cell (after a reload restores it, or when chosen on another map). */
  mark(at) {
    const v = this.view;
    if (!at || !v || !v.vert || !this.shape) return;
    const cell = [(at[0] - v.vert[0]) / v.vert[2], (at[1] - v.horz[0]) / v.horz[2]];
    if (Number.isInteger(cell[0]) && Number.isInteger(cell[1])) {
      this.cursor = cell;
      this.place(this.cursorEl, cell, cell);
    }
  }

  /** Mark the cell hovered on another map (null hides the mark). */
  markHover(cell) {
    this.hoverEl.hidden = !cell || !this.shape;
    if (!this.shape || !this.isMap()) return; // the png is not a map of the points (a curve, a waterfall)
    if (cell) this.place(this.hoverEl, cell, cell);
    this.show(cell);
  }
}

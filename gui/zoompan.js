// Wheel zoom and drag pan of a map inside a fixed viewport. The content is scaled by a CSS transform,
// so anything placed in it in unzoomed pixels (cursors, marks) follows; a press that does not move
// is a click and is handed back to the owner.

const MAX_ZOOM = 64;
const DRAG_PX = 4; // pointer travel that makes a press a drag rather than a click

export class ZoomPan {
  constructor(viewport, content, onClick) {
    this.viewport = viewport;
    this.content = content;
    this.onClick = onClick; // (mouse event) for a press that did not move
    this.reset();
    viewport.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    viewport.addEventListener("mousedown", (e) => this.press(e));
  }

  reset() {
    this.zoom = 1;
    this.tx = this.ty = 0;
    this.apply();
  }

  apply() {
    const vw = this.viewport.clientWidth, vh = this.viewport.clientHeight;
    const cw = this.content.offsetWidth * this.zoom, ch = this.content.offsetHeight * this.zoom;
    this.tx = Math.min(0, Math.max(vw - cw, this.tx)); // the content always covers the viewport
    this.ty = Math.min(0, Math.max(vh - ch, this.ty));
    this.content.style.transform = `translate(${this.tx}px, ${this.ty}px) scale(${this.zoom})`;
    this.viewport.dataset.zoom = String(this.zoom);
  }

  /** Zoom by `factor` keeping the content under viewport point (x, y) in place. */
  zoomAt(factor, x, y) {
    const z = Math.min(MAX_ZOOM, Math.max(1, this.zoom * factor));
    this.tx = x - ((x - this.tx) * z) / this.zoom;
    this.ty = y - ((y - this.ty) * z) / this.zoom;
    this.zoom = z;
    this.apply();
  }

  wheel(e) {
    e.preventDefault();
    const r = this.viewport.getBoundingClientRect();
    this.zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
  }

  press(e) {
    if (e.button !== 0 || e.shiftKey) return; // shift-drag belongs to the owner (a region)
    e.preventDefault();
    this.viewport.focus({ preventScroll: true });
    const x0 = e.clientX, y0 = e.clientY, tx0 = this.tx, ty0 = this.ty;
    let dragged = false;
    const move = (m) => {
      dragged ||= Math.hypot(m.clientX - x0, m.clientY - y0) > DRAG_PX;
      if (!dragged) return;
      this.tx = tx0 + m.clientX - x0;
      this.ty = ty0 + m.clientY - y0;
      this.apply();
    };
    const up = (u) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      if (!dragged) this.onClick(u);
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }
}

// One scan point's detector frame (log scale), with the route's declared overlays drawn on it
// (dada.views.Overlay: centre, circle, annulus, sectors). Dragging a ring or the centre sets
// the parameter it names; while it moves, each new value is offered for a preview.

import { request } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

export class FrameView {
  constructor(els, onParams, onDrag = null) {
    Object.assign(this, els);
    this.onParams = onParams; // ({name: value}) after a drag
    this.onDrag = onDrag; // ({name: value}) as the pointer moves
    this.shape = null; // [rows, cols] of the frame
  }

  /** Fetch and show the frame at `url` (the png's URL is kept on the image for tests and copying). */
  async show(url, label) {
    this.box.hidden = false;
    this.hint.hidden = true;
    this.label.textContent = label;
    const resp = await request(url);
    const blob = await resp.blob();
    const old = this.img.src;
    this.img.src = URL.createObjectURL(blob);
    this.img.dataset.url = url;
    await this.img.decode();
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    this.shape = [this.img.naturalHeight, this.img.naturalWidth];
    this.svg.setAttribute("viewBox", `-0.5 -0.5 ${this.shape[1]} ${this.shape[0]}`);
    this.svg.setAttribute("preserveAspectRatio", "none");
  }

  /** value of a route parameter: the view's, else the server's default, else null. */
  static value(ep, params, name) {
    if (params[name] !== undefined && params[name] !== "") return Number(params[name]);
    const d = ep.parameters[name]?.default;
    return d === undefined || d === null ? null : Number(d);
  }

  draw(ep, params, geometry) {
    this.svg.replaceChildren();
    if (!this.shape || !ep.overlays) return;
    const [h, w] = this.shape;
    const centre = ep.overlays.find((o) => o.kind === "centre");
    let cx = centre ? FrameView.value(ep, params, centre.params[0]) : null;
    let cy = centre ? FrameView.value(ep, params, centre.params[1]) : null;
    cx = cx ?? geometry?.beam_center_x ?? (w - 1) / 2;
    cy = cy ?? geometry?.beam_center_y ?? (h - 1) / 2;
    const inside = Math.max(1, Math.min(cx + 0.5, w - 0.5 - cx, cy + 0.5, h - 0.5 - cy));
    const radius = (name) => FrameView.value(ep, params, name) ?? inside;
    for (const o of ep.overlays) {
      const g = el("g", { "data-kind": o.kind });
      if (o.kind === "circle") {
        this.ring(g, cx, cy, o.params[0], radius(o.params[0]));
      } else if (o.kind === "annulus" || o.kind === "sectors") {
        const [r0, r1] = [radius(o.params[0]), radius(o.params[1])];
        g.append(el("path", { class: "fill", "fill-rule": "evenodd",
          d: `${circlePath(cx, cy, r1)} ${circlePath(cx, cy, r0)}` }));
        if (o.kind === "sectors") {
          const n = FrameView.value(ep, params, o.params[2]) || 1;
          for (let k = 0; k < n; k++) {
            const a = (2 * Math.PI * k) / n;
            g.append(el("line", { class: "shape", x1: cx + r0 * Math.cos(a), y1: cy + r0 * Math.sin(a),
              x2: cx + r1 * Math.cos(a), y2: cy + r1 * Math.sin(a) }));
          }
        }
        this.ring(g, cx, cy, o.params[0], r0);
        this.ring(g, cx, cy, o.params[1], r1);
      }
      this.svg.append(g);
    }
    if (centre) this.cross(cx, cy, centre.params);
  }

  ring(g, cx, cy, name, r) {
    g.append(el("circle", { class: "shape", cx, cy, r, "data-param": name }));
    const handle = el("circle", { class: "handle", cx, cy, r, "data-param": name });
    handle.append(el("title", {}));
    handle.firstChild.textContent = `${name} = ${r.toFixed(1)} px: drag to change`;
    g.append(handle);
    this.drag(handle, (x, y) => {
      const nr = Math.max(0, Math.hypot(x - cx, y - cy));
      for (const c of g.querySelectorAll(`circle[data-param="${CSS.escape(name)}"]`)) c.setAttribute("r", nr);
      return { [name]: nr.toFixed(1) };
    });
  }

  cross(cx, cy, [xName, yName]) {
    const s = Math.max(3, (this.shape[1] || 100) / 60);
    const g = el("g", { "data-kind": "centre" });
    g.append(el("path", { class: "centre", d: `M${cx - s},${cy}H${cx + s}M${cx},${cy - s}V${cy + s}` }));
    const handle = el("circle", { class: "centre-handle", cx, cy, r: s });
    g.append(handle);
    this.svg.append(g);
    this.drag(handle, (x, y) => {
      g.setAttribute("transform", `translate(${x - cx},${y - cy})`);
      return { [xName]: x.toFixed(1), [yName]: y.toFixed(1) };
    });
  }

  /** Pointer drags in frame pixel coordinates; the last change is reported when the pointer lifts. */
  drag(handle, moved) {
    handle.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      handle.setPointerCapture(e.pointerId);
      let last = null;
      const move = (m) => {
        const p = new DOMPoint(m.clientX, m.clientY).matrixTransform(this.svg.getScreenCTM().inverse());
        last = moved(p.x, p.y);
        this.onDrag?.(last);
      };
      const up = () => {
        handle.removeEventListener("pointermove", move);
        handle.removeEventListener("pointerup", up);
        if (last) this.onParams(last);
      };
      handle.addEventListener("pointermove", move);
      handle.addEventListener("pointerup", up);
    });
  }
}

function circlePath(cx, cy, r) {
  return `M${cx - r},${cy}a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0Z`;
}

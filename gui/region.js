// Frames of a region of the scan (/composite mosaic, /sum): a form from the route's schema and a
// zoomable image. The region comes from shift-dragging on the map.

import { request } from "./api.js";
import { buildForm, readForm, setField, showErrors } from "./form.js";
import { allEndpoints, endpoint, resultUrl } from "./state.js";

const ZOOMS = [0.125, 0.25, 0.5, 1, 2, 4, 8];

export class RegionView {
  constructor(els) {
    Object.assign(this, els);
    this.zoom = 3;
    this.scan = null;
    this.params = {};
    this.zoomIn.addEventListener("click", () => this.setZoom(this.zoom + 1));
    this.zoomOut.addEventListener("click", () => this.setZoom(this.zoom - 1));
    this.box.addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      this.setZoom(this.zoom + (e.deltaY < 0 ? 1 : -1));
    });
    this.select.addEventListener("change", () => this.build());
    this.showButton.addEventListener("click", () => this.show());
  }

  /** Routes showing frames of a region: scan routes with a png that are not maps over points. */
  routes() {
    return allEndpoints().filter((e) => e.target === "scan" && !e.maps && !e.item && e.formats.includes("png"))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  setScan(scan) {
    this.scan = scan;
    if (!this.select.options.length) {
      for (const e of this.routes()) this.select.add(new Option(e.name, e.name));
    }
    this.image.hidden = true;
    this.build();
  }

  build() {
    const ep = endpoint(this.select.value);
    this.doc.textContent = ep.summary;
    buildForm(this.fields, ep, this.params, () => this.show());
  }

  /** The region (vert, horz) chosen on the map. */
  region(sel) {
    for (const [k, v] of Object.entries(sel)) setField(this.fields, k, v);
    this.show();
  }

  async show() {
    const ep = endpoint(this.select.value);
    this.params = readForm(this.fields, ep);
    const url = resultUrl({ endpoint: ep.name, scan: this.scan, item: null, params: this.params }, "png");
    this.error.textContent = "";
    showErrors(this.fields, null);
    try {
      const blob = await (await request(url)).blob();
      this.image.src = URL.createObjectURL(blob);
      this.image.dataset.url = url;
      await this.image.decode();
      this.image.hidden = false;
      this.setZoom(this.fit());
    } catch (exc) {
      if (!showErrors(this.fields, exc.body)) this.error.textContent = exc.message;
    }
  }

  fit() {
    const width = this.box.clientWidth || 600;
    let z = ZOOMS.length - 1;
    while (z > 0 && this.image.naturalWidth * ZOOMS[z] > width) z--;
    return z;
  }

  setZoom(z) {
    this.zoom = Math.max(0, Math.min(ZOOMS.length - 1, z));
    const f = ZOOMS[this.zoom];
    this.image.style.width = `${this.image.naturalWidth * f}px`;
    this.zoomText.textContent = `${f * 100}%`;
  }
}

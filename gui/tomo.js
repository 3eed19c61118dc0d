// Tomography preview: a slice (or sinogram) of one detector row, a row slider and the rotation
// centre, estimated by the server on request.

import { getJSON, request } from "./api.js";
import { drawLegend } from "./colors.js";
import { buildForm, readForm, setField, showErrors } from "./form.js";
import { allEndpoints, endpoint, resultUrl } from "./state.js";

export class TomoView {
  constructor(els, onChange) {
    Object.assign(this, els);
    this.onChange = onChange; // (view) when the user changes something
    this.view = null;
    this.meta = null;
    this.row.addEventListener("input", () => (this.rowText.textContent = this.row.value));
    this.row.addEventListener("change", () => this.changed());
    this.center.addEventListener("change", () => {
      setField(this.fields, "center", this.center.value);
      this.changed();
    });
    this.select.addEventListener("change", () => this.changed(true));
    this.estimate.addEventListener("click", () => this.estimateCenter());
  }

  /** Routes over one detector row of a tomography scan that render an image. */
  routes() {
    return allEndpoints().filter((e) => e.target === "tomo" && e.item && e.formats.includes("png"));
  }

  defaultView(scan, meta) {
    const routes = this.routes();
    const slice = routes.find((e) => e.name.endsWith("slice")) || routes[0];
    return { endpoint: slice.name, scan, item: Math.floor(meta.rows / 2), params: {}, at: null };
  }

  async show(view, meta, rebuild) {
    this.meta = meta;
    if (!this.select.options.length) for (const e of this.routes()) this.select.add(new Option(e.name, e.name));
    this.select.value = view.endpoint;
    const ep = endpoint(view.endpoint);
    if (rebuild || this.view?.endpoint !== view.endpoint || this.view?.scan !== view.scan) {
      buildForm(this.fields, ep, view.params, () => this.changed());
    }
    this.view = view;
    this.row.max = String(meta.rows - 1);
    this.row.value = String(view.item ?? 0);
    this.rowText.textContent = this.row.value;
    this.center.min = "0";
    this.center.max = String(meta.cols - 1);
    const c = Number(view.params.center);
    this.center.disabled = !("center" in ep.parameters);
    this.estimate.disabled = this.center.disabled;
    if (Number.isFinite(c)) this.center.value = String(c);
    const url = resultUrl(view, "png");
    this.error.textContent = "";
    showErrors(this.fields, null);
    this.status.textContent = "computing…";
    try {
      const resp = await request(url);
      const legend = JSON.parse(resp.headers.get("X-Dada-View") || "{}").legend;
      this.image.src = URL.createObjectURL(await resp.blob());
      this.image.dataset.url = url;
      await this.image.decode();
      drawLegend(this.legend, legend || null);
      this.status.textContent = `row ${view.item}`;
    } catch (exc) {
      this.status.textContent = "";
      if (!showErrors(this.fields, exc.body)) this.error.textContent = exc.message;
    }
  }

  changed(newRoute = false) {
    const name = this.select.value;
    const params = newRoute ? keep(this.view.params, endpoint(name)) : readForm(this.fields, endpoint(name));
    this.onChange({ ...this.view, endpoint: name, item: Number(this.row.value), params });
  }

  /** The server's estimate of the rotation axis for this row, put into the centre field. */
  async estimateCenter() {
    const ep = allEndpoints().find((e) => e.target === "tomo" && !e.item && e.formats.includes("json") && "row" in e.parameters);
    if (!ep) return;
    const params = { ...keep(readForm(this.fields, endpoint(this.view.endpoint)), ep), row: this.row.value };
    this.status.textContent = "estimating the rotation centre…";
    try {
      const doc = await getJSON(resultUrl({ endpoint: ep.name, scan: this.view.scan, item: null, params }, "json"));
      setField(this.fields, "center", String(doc.center));
      this.center.value = String(doc.center);
      this.changed();
    } catch (exc) {
      this.error.textContent = exc.message;
    }
  }
}

/** The parameters another route also has. */
export function keep(params, ep) {
  return Object.fromEntries(Object.entries(params).filter(([k]) => k in ep.parameters));
}

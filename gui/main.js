// The GUI's wiring: the tree, the views and the address bar. Everything it shows is built from
// /api, so a new analysis or parameter on the server appears here with no change.

import { getJSON, initToken, token } from "./api.js";
import { Tree, meta as fetchMeta, showMeta } from "./browse.js";
import { setColormaps } from "./colors.js";
import { buildForm, readForm, showErrors } from "./form.js";
import { FrameView } from "./frame.js";
import { LiveMap } from "./livemap.js";
import { RegionView } from "./region.js";
import { ResultView } from "./results.js";
import { snippets } from "./snippets.js";
import { allEndpoints, endpoint, locationFor, resultUrl, setRoutes, viewFromLocation } from "./state.js";
import { TomoView, keep } from "./tomo.js";

const $ = (id) => document.getElementById(id);

// Settings that only shape the standalone png (its size, its drawn colour bar): the GUI draws its own.
const PNG_ONLY = ["colorbar", "width", "scale"];

const app = {
  view: null, // {endpoint, scan, item, params, at}
  meta: null,
  live: false, // the scan is still being written
  shown: "", // the scan whose metadata and region view are shown
  formKey: "",
  mapUrl: "",
  h5web: null, // the server's h5web URL template, with {file}
};

const map = new LiveMap({
  box: $("map-box"), content: $("map-content"), canvas: $("live-map"), img: $("map-image"), cursorEl: $("map-cursor"),
  hoverEl: $("map-hover"), regionEl: $("map-region"), legend: $("legend"), bar: $("progress-bar"), text: $("progress-text"),
  cancelButton: $("cancel"), error: $("error"), hoverInfo: $("hover-info"),
}, {
  onPoint: (at) => go({ ...app.view, at }, true),
  onRegion: (sel) => region.region(sel),
  onSettled: settled,
  onHover: (cell) => results.hover(cell),
});
const results = new ResultView({ grid: $("results-grid"), hoverText: $("results-hover"), status: $("results-status") }, {
  onPoint: (at) => go({ ...app.view, at }, true),
  onHover: (cell) => map.markHover(cell),
});
const frame = new FrameView({ box: $("frame-box"), hint: $("frame-hint"), img: $("frame-image"), svg: $("overlay"), label: $("frame-label") },
  (changes) => go({ ...app.view, params: { ...app.view.params, ...changes } }, true, true), preview);
const region = new RegionView({ select: $("region-endpoint"), fields: $("region-fields"), image: $("region-image"),
  doc: $("region-doc"), showButton: $("region-show"),
  box: $("region-box"), error: $("region-error"), zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), zoomText: $("zoom-text") });
const tomo = new TomoView({ select: $("tomo-endpoint"), fields: $("tomo-fields"), row: $("tomo-row"), rowText: $("tomo-row-text"),
  center: $("tomo-center"), estimate: $("tomo-estimate"), image: $("tomo-image"), legend: $("tomo-legend"),
  error: $("tomo-error"), status: $("tomo-status") }, (view) => go(view, true));
let tree;

function mapRoutes() {
  return allEndpoints().filter((e) => e.maps && e.formats.includes("png")); // the server's order
}

function isTomo(m) {
  return m && m.projections !== undefined;
}

/** Show a view; `push` adds a history entry, `rebuild` refreshes the form from the view. */
async function go(view, push = false, rebuild = false) {
  const scanChanged = app.shown !== view.scan;
  app.view = view;
  const where = locationFor(view);
  if (location.hash !== where) history[push ? "pushState" : "replaceState"](null, "", where);
  $("welcome").hidden = true;
  $("scan-title").textContent = view.scan;
  $("h5web-link").hidden = !app.h5web;
  if (app.h5web) $("h5web-link").href = app.h5web.replaceAll("{file}", encodeURIComponent(view.scan));
  tree?.select(view.scan);
  if (scanChanged) {
    try {
      if (app.meta?.scan !== view.scan) app.meta = await fetchMeta(view.scan);
    } catch (exc) {
      $("meta").textContent = exc.message;
      return;
    }
    app.shown = view.scan;
    app.live = app.meta.complete === false;
    showMeta($("meta"), app.meta);
    region.setScan(view.scan);
  }
  $("tomo-view").hidden = !isTomo(app.meta);
  $("stxm-view").hidden = isTomo(app.meta);
  if (isTomo(app.meta)) {
    showUrls(view);
    return tomo.show(view, app.meta, rebuild);
  }
  showStxm(view, rebuild);
}

function showStxm(view, rebuild) {
  const ep = endpoint(view.endpoint);
  const select = $("analysis");
  if (!select.options.length) for (const e of mapRoutes()) select.add(new Option(e.name, e.name));
  select.value = ep.name;
  $("analysis-doc").textContent = ep.summary;
  const key = `${view.scan}|${ep.name}`;
  if (rebuild || key !== app.formKey) {
    buildForm($("analysis-fields"), ep, view.params, () => go({ ...app.view, params: readForm($("analysis-fields"), ep) }, true));
    app.formKey = key;
  }
  showUrls(view);
  const own = { ...view, params: Object.fromEntries(Object.entries(view.params).filter(([k]) => !PNG_ONLY.includes(k))) };
  const png = resultUrl(own, "png");
  if (png !== app.mapUrl) { // not when only the clicked point changed
    app.mapUrl = png;
    results.clear();
    const render = { ...Object.fromEntries(Object.entries(ep.parameters).map(([k, s]) => [k, s.default])), ...own.params };
    map.run({ png, csv: resultUrl(own, "csv") }, render);
  } else {
    map.mark(view.at);
    results.select(view.at);
  }
  showFrame(view);
}

/** While a ring is dragged: the map for the radius under the pointer, snapped to the server's polar reduction
 * where the route offers that (then answered without reading frames); the exact map follows the release. */
function preview(changes) {
  const ep = endpoint(app.view.endpoint);
  const params = { ...app.view.params, ...changes };
  if (ep.parameters.snap) params.snap = "true";
  const own = { ...app.view, params: Object.fromEntries(Object.entries(params).filter(([k]) => !PNG_ONLY.includes(k))) };
  map.preview(resultUrl(own, "png"));
}

async function showFrame(view) {
  $("frame-box").hidden = !view.at;
  $("frame-hint").hidden = Boolean(view.at);
  if (!view.at) {
    $("frame-label").textContent = "";
    return;
  }
  const ep = endpoint(view.endpoint);
  const frameRoute = allEndpoints().find((e) => e.name === "frame");
  const params = { at: `${view.at[0]},${view.at[1]}`, log: "true" };
  const url = resultUrl({ endpoint: frameRoute.name, scan: view.scan, item: null, params }, "png");
  try {
    await frame.show(url, `line ${view.at[0]}, point ${view.at[1]}`);
    frame.draw(ep, view.params, app.meta.geometry);
  } catch (exc) {
    $("frame-label").textContent = exc.message;
  }
}

function showUrls(view) {
  const ep = endpoint(view.endpoint);
  const fmtSelect = $("format");
  const formats = ep.formats;
  if ([...fmtSelect.options].map((o) => o.value).join() !== formats.join()) {
    const was = fmtSelect.value;
    fmtSelect.replaceChildren(...formats.map((f) => new Option(f, f)));
    fmtSelect.value = formats.includes(was) ? was : formats[0];
  }
  const url = new URL(resultUrl(view, fmtSelect.value), location.href);
  $("with-token-label").hidden = !token();
  if (token() && $("with-token").checked) url.searchParams.set("token", token()); // only when asked
  const absolute = url.href.replace(/%2C/gi, ",").replace(/%3A/gi, ":");
  $("result-url").value = absolute;
  const s = snippets(absolute, fmtSelect.value);
  $("snippet-curl").textContent = s.curl;
  $("snippet-python").textContent = s.python;
  $("snippet-matlab").textContent = s.matlab;
}

/** After each map answer: refresh the scan's state; keep asking while it is being written. */
async function settled(ok) {
  if (ok) showErrors($("analysis-fields"), null);
  if (ok) showResults(app.live);
  if (!app.live) return false;
  const m = await fetchMeta(app.view.scan);
  app.meta = m;
  showMeta($("meta"), m);
  app.live = m.complete === false;
  tree.setLive(app.view.scan, app.live);
  return true; // one more round after the scan completes, so the final map has every frame
}

/** Every output of the answer just shown, linked to the map; `again` re-reads a scan that grew. */
async function showResults(again) {
  const view = app.view;
  if (again) results.clear();
  map.mark(view.at);
  try {
    await results.show(view, endpoint(view.endpoint), map.view, map.view?.legend?.unit);
  } catch (exc) {
    $("results-status").textContent = exc.message;
    $("results-grid").dataset.state = "error";
  }
}

async function pick(scan) {
  let m;
  try {
    m = await fetchMeta(scan);
  } catch (exc) {
    $("meta").textContent = exc.message;
    return;
  }
  app.meta = m;
  const view = isTomo(m) ? tomo.defaultView(scan, m) : { endpoint: mapRoutes()[0].name, scan, item: null, params: {}, at: null };
  await go(view, true, true);
}

async function start() {
  initToken();
  const api = await getJSON("/api");
  setRoutes(api);
  setColormaps(api);
  app.h5web = api.h5web || null;
  $("version").textContent = `v${api.version}`;
  $("analysis").addEventListener("change", (e) => {
    const ep = endpoint(e.target.value);
    go({ ...app.view, endpoint: ep.name, params: keep(app.view.params, ep) }, true);
  });
  $("format").addEventListener("change", () => showUrls(app.view));
  $("with-token").addEventListener("change", () => showUrls(app.view));
  $("copy-url").addEventListener("click", () => navigator.clipboard?.writeText($("result-url").value));
  $("error").addEventListener("server-error", (e) => {
    if (showErrors($("analysis-fields"), e.detail)) $("error").textContent = "";
  });
  window.addEventListener("popstate", () => {
    const view = viewFromLocation();
    if (view) go(view, false, true);
  });
  const initial = viewFromLocation();
  tree = new Tree($("tree"), pick);
  await tree.show(initial ? [initial.scan.split("/").slice(0, -1).join("/")] : []);
  if (initial) {
    await go(initial, false, true);
  }
  document.body.dataset.ready = "true";
}

start().catch((exc) => {
  $("welcome").textContent = `The GUI could not start: ${exc.message}`;
  document.body.dataset.ready = "error";
});

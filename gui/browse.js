// The folder and scan tree of /browse, and one scan's metadata from /meta.

import { getJSON } from "./api.js";

const RECENT_CHECKS = 20; // newest scans per folder whose completeness is looked up (a live badge)

function pathUrl(prefix, path) {
  return `${prefix}/${path.split("/").filter(Boolean).map(encodeURIComponent).join("/")}`;
}

export async function meta(scan) {
  return getJSON(pathUrl("/meta", scan) + ".json");
}

function item(label, onActivate) {
  const li = document.createElement("li");
  li.setAttribute("role", "treeitem");
  const b = Object.assign(document.createElement("button"), { type: "button", textContent: label });
  b.addEventListener("click", onActivate);
  li.append(b);
  return li;
}

/** A tree below `ul`; `onPick(path)` when a scan is chosen. `open` lists folders to expand first. */
export class Tree {
  constructor(ul, onPick) {
    this.ul = ul;
    this.onPick = onPick;
    this.items = new Map(); // scan path -> li
  }

  async show(open = []) {
    await this.fill(this.ul, "", open);
  }

  async fill(ul, folder, open) {
    const doc = await getJSON(pathUrl("/browse", folder));
    ul.replaceChildren();
    for (const name of doc.folders) {
      const path = folder ? `${folder}/${name}` : name;
      const li = item(`▸ ${name}`, () => this.toggle(li, path, []));
      li.setAttribute("aria-expanded", "false");
      li.dataset.folder = path;
      ul.append(li);
      if (open.some((p) => p === path || p.startsWith(path + "/"))) await this.toggle(li, path, open);
    }
    const newest = [...doc.scans].sort((a, b) => b.mtime - a.mtime).slice(0, RECENT_CHECKS);
    for (const s of doc.scans) {
      const li = item(s.name, () => this.onPick(s.path));
      li.dataset.scan = s.path;
      this.items.set(s.path, li);
      ul.append(li);
    }
    for (const s of newest) this.mark(s.path);
  }

  async toggle(li, path, open) {
    const expanded = li.getAttribute("aria-expanded") === "true";
    const button = li.querySelector("button");
    const name = path.split("/").pop();
    li.querySelector("ul")?.remove();
    li.setAttribute("aria-expanded", String(!expanded));
    button.textContent = `${expanded ? "▸" : "▾"} ${name}`;
    if (expanded) return;
    const sub = document.createElement("ul");
    sub.setAttribute("role", "group");
    li.append(sub);
    await this.fill(sub, path, open);
  }

  /** A "recording" badge on a scan whose files are still being written. */
  async mark(path) {
    try {
      const m = await meta(path);
      this.setLive(path, m.complete === false);
    } catch {
      // a scan that cannot be described shows its error when picked
    }
  }

  setLive(path, live) {
    const li = this.items.get(path);
    if (!li) return;
    li.querySelector(".badge")?.remove();
    if (live) li.querySelector("button").append(" ", Object.assign(document.createElement("span"), { className: "badge live", textContent: "recording" }));
  }

  select(path) {
    for (const li of this.ul.querySelectorAll(".selected")) li.classList.remove("selected");
    this.items.get(path)?.classList.add("selected");
    this.items.get(path)?.setAttribute("aria-selected", "true");
  }
}

/** The metadata panel: grid, frame shape, dtype, geometry, completeness. */
export function showMeta(section, m) {
  const rows = [];
  const add = (k, v) => v !== undefined && v !== null && rows.push([k, v]);
  add("scan", m.scan);
  add("kind", m.kind);
  add("state", m.complete === false ? `recording: ${m.frames?.available} of ${m.frames?.expected ?? "?"} frames` : "complete");
  if (m.grid) add("grid", `${m.grid.vert} lines × ${m.grid.horz} points (fast: ${m.grid.fast_axis}${m.grid.snake ? ", snake" : ""})`);
  if (m.frames) add("frames", `${m.frames.available}` + (m.frames.expected ? ` of ${m.frames.expected}` : ""));
  if (m.frame_shape) add("frame", `${m.frame_shape[0]} × ${m.frame_shape[1]} ${m.dtype}`);
  if (m.projections) add("projections", `${m.projections} (${m.flats} flats, ${m.darks} darks)`);
  if (m.rows) add("detector", `${m.rows} rows × ${m.cols} columns`);
  for (const [k, v] of Object.entries(m.geometry || {})) add(k, typeof v === "number" ? Number(v.toPrecision(6)) : v);
  for (const k of ["pixel_size", "distance", "energy"]) add(k, m[k]);
  add("masked pixels", m.masked_pixels);
  const dl = document.createElement("dl");
  for (const [k, v] of rows) dl.append(Object.assign(document.createElement("dt"), { textContent: k }), Object.assign(document.createElement("dd"), { textContent: String(v) }));
  section.replaceChildren(dl);
}

// The URL is the state: a view is one result URL (#/darkfield/scan.png?rmin=12), plus the clicked
// point (#at=line,point). Routes are found from /api, so a new route needs no change here.

let endpoints = []; // in the server's order
let byPrefix = []; // longest prefix first, for reading URLs
let formats = [];

export function setRoutes(api) {
  endpoints = api.endpoints;
  byPrefix = [...endpoints].sort((a, b) => prefix(b).length - prefix(a).length);
  formats = Object.keys(api.formats);
}

export function endpoint(name) {
  return endpoints.find((e) => e.name === name);
}

export function allEndpoints() {
  return endpoints;
}

/** The fixed part of a route's path template: "/darkfield/{scan}.{fmt}" -> "/darkfield". */
export function prefix(ep) {
  return ep.path.slice(0, ep.path.indexOf("/{"));
}

/** The result URL of a view, in a format. Parameters left empty are left out (server defaults). */
export function resultUrl(view, fmt) {
  const ep = endpoint(view.endpoint);
  let path = `${prefix(ep)}/${view.scan.split("/").map(encodeURIComponent).join("/")}`;
  if (ep.item && view.item !== null && view.item !== undefined) path += `/${view.item}`;
  path += `.${fmt}`;
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(view.params)) if (v !== "" && v !== null && v !== undefined) query.append(k, v);
  const q = query.toString().replace(/%2C/gi, ",").replace(/%3A/gi, ":");
  return q ? `${path}?${q}` : path;
}

/** A result URL back into a view: which route, scan, item and parameters. null if it names none. */
export function parseResultUrl(url) {
  const [path, query = ""] = url.split("?");
  for (const ep of byPrefix) {
    const pre = prefix(ep) + "/";
    if (!path.startsWith(pre) || ep.target === "folder") continue;
    let rest = decodeURIComponent(path.slice(pre.length));
    let fmt = null;
    const dot = rest.lastIndexOf(".");
    if (dot > rest.lastIndexOf("/") && formats.includes(rest.slice(dot + 1))) {
      fmt = rest.slice(dot + 1);
      rest = rest.slice(0, dot);
    }
    let item = null;
    if (ep.item) {
      const slash = rest.lastIndexOf("/");
      if (slash > 0 && /^\d+$/.test(rest.slice(slash + 1))) {
        item = Number(rest.slice(slash + 1));
        rest = rest.slice(0, slash);
      }
    }
    const params = {};
    for (const [k, v] of new URLSearchParams(query)) params[k] = v;
    return { endpoint: ep.name, scan: rest, item, params, fmt };
  }
  return null;
}

/** The view named by the page's address: #<result URL>[#at=l,p], or ?url=<result URL>. */
export function viewFromLocation() {
  let text = location.hash.slice(1);
  if (!text) text = new URLSearchParams(location.search).get("url") || "";
  if (!text.startsWith("/")) return null;
  const [url, extra = ""] = text.split("#");
  const view = parseResultUrl(url);
  if (view) {
    const at = /at=(\d+),(\d+)/.exec(extra);
    view.at = at ? [Number(at[1]), Number(at[2])] : null;
  }
  return view;
}

export function locationFor(view) {
  return "#" + resultUrl(view, "png") + (view.at ? `#at=${view.at[0]},${view.at[1]}` : "");
}

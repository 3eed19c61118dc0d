// Colours the way the server's png renderer makes them (dada/encoders/render.py): the same 256-entry
// tables from /api, the same index rule (floor of 256·t, the top value in the last entry), log10
// before scaling, NaN transparent. Live maps painted here match the final png when limits agree.

let tables = {};

export function setColormaps(api) {
  tables = {};
  for (const [name, hex] of Object.entries(api.colormaps || {})) {
    const lut = new Uint8Array(768);
    for (let i = 0; i < 768; i++) lut[i] = parseInt(hex.substr(2 * i, 2), 16);
    tables[name] = lut;
  }
}

export function lut(name) {
  return tables[name] || tables.viridis;
}

function shown(v, log) {
  if (!log) return v;
  return v > 0 ? Math.log10(v) : NaN;
}

/** numpy's default percentile (linear between closest ranks) of sorted values. */
function percentile(sorted, p) {
  const x = (p / 100) * (sorted.length - 1), i = Math.floor(x), j = Math.min(sorted.length - 1, i + 1);
  return sorted[i] + (sorted[j] - sorted[i]) * (x - i);
}

function given(v) {
  return v !== undefined && v !== null && v !== "";
}

/**
 * Colour limits in shown units (log10 when `log`), as the server's png renderer sets them: the user's
 * vmin/vmax, else the plow/phigh percentiles of the finite values (0 and 100 when not given).
 */
export function liveLimits(values, { vmin, vmax, log, plow, phigh }) {
  const good = Float64Array.from(values, (v) => shown(v, log)).filter(Number.isFinite).sort();
  let lo = good.length ? percentile(good, given(plow) ? Number(plow) : 0) : 0;
  let hi = good.length ? percentile(good, given(phigh) ? Number(phigh) : 100) : 1;
  if (given(vmin)) lo = shown(Number(vmin), log);
  if (given(vmax)) hi = shown(Number(vmax), log);
  return [Number.isFinite(lo) ? lo : 0, Number.isFinite(hi) ? hi : 1];
}

/** values (row-major, `width` per row) -> ImageData through colormap `name` between lo and hi (shown units). */
export function paint(values, width, height, name, lo, hi, log) {
  const table = lut(name);
  const img = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue; // transparent: missing or not computed yet
    let s = shown(v, log);
    let t = hi > lo ? (s - lo) / (hi - lo) : 0;
    t = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
    const k = Math.min(255, Math.floor(t * 256)) * 3;
    img.data.set([table[k], table[k + 1], table[k + 2], 255], 4 * i);
  }
  return img;
}

function fmt(x) {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-2) return x.toExponential(2);
  const s = x.toPrecision(4);
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s; // 2260 stays 2260; 12.50 becomes 12.5
}

/** A colour bar (colormap legend from the png's X-Dada-View header) or a hue wheel, or nothing. */
export function drawLegend(canvas, legend) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  canvas.hidden = !legend;
  if (!legend) return;
  ctx.fillStyle = "#1b1f24";
  ctx.font = "12px system-ui, sans-serif";
  if (legend.kind === "hue") return drawHueWheel(ctx, canvas, legend);
  const table = lut(legend.cmap);
  const top = 24, bottom = canvas.height - 12, h = bottom - top;
  for (let y = 0; y < h; y++) {
    const k = Math.min(255, Math.floor(((h - 1 - y) / (h - 1)) * 256)) * 3;
    ctx.fillStyle = `rgb(${table[k]},${table[k + 1]},${table[k + 2]})`;
    ctx.fillRect(8, top + y, 18, 1);
  }
  ctx.strokeRect(8, top, 18, h);
  ctx.fillStyle = "#1b1f24";
  ctx.fillText(legend.unit ? `[${legend.unit}]` : "", 4, 14);
  const lo = legend.log ? Math.log10(legend.vmin) : legend.vmin;
  const hi = legend.log ? Math.log10(legend.vmax) : legend.vmax;
  for (let i = 0; i <= 4; i++) {
    const s = lo + ((hi - lo) * i) / 4;
    const y = bottom - (h * i) / 4;
    ctx.fillRect(26, y, 4, 1);
    ctx.fillText(fmt(legend.log ? 10 ** s : s), 33, y + 4);
  }
  if (legend.log) ctx.fillText("log", 33, top - 4);
}

function drawHueWheel(ctx, canvas, legend) {
  const r = Math.floor(Math.min(canvas.width - 36, canvas.height - 60) / 2) - 2;
  const cx = Math.floor((canvas.width - 16) / 2), cy = 24 + r + 12; // room on the right for the 0° label
  const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
  for (let y = -r; y <= r; y++) {
    for (let x = -r; x <= r; x++) {
      const d = Math.hypot(x, y);
      if (d > r) continue;
      const deg = ((Math.atan2(y, x) * 180) / Math.PI + 360) % 360; // from +x towards +y, as the detector
      const [R, G, B] = legend.by === "brightness" ? hsv((deg % legend.period) / legend.period, 1, d / r)
        : hsv((deg % legend.period) / legend.period, d / r, 1);
      img.data.set([R, G, B, 255], 4 * (Math.round(cy + y) * canvas.width + Math.round(cx + x)));
    }
  }
  ctx.putImageData(img, 0, 0);
  ctx.fillStyle = "#1b1f24";
  const deg = legend.unit === "deg" ? "°" : ` ${legend.unit}`;
  ctx.fillText(`0${deg}`, cx + r + 3, cy + 4);
  ctx.fillText(`90${deg}`, cx - 8, cy + r + 13);
  ctx.fillText(`rim: ${fmt(legend.vmax)}${legend.strength_unit ? " " + legend.strength_unit : ""}`, 4, 14);
}

/**
 * Angle as hue (degrees from +x towards +y, over `period`) and strength as brightness, full at `top`:
 * (row-major, `width` per row) -> ImageData. NaN is transparent.
 */
export function hueImage(angle, strength, width, height, period, top) {
  const img = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    if (!Number.isFinite(angle[i]) || !Number.isFinite(strength[i])) continue;
    const h = (((angle[i] % period) + period) % period) / period;
    img.data.set([...hsv(h, 1, Math.min(1, Math.max(0, strength[i] / top))), 255], 4 * i);
  }
  return img;
}

function hsv(h, s, v) {
  const i = Math.floor(h * 6), f = h * 6 - i;
  const p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const rgb = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return rgb.map((c) => Math.round(c * 255));
}

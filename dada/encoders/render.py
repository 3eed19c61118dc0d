"""Turning a 2-D array into a png people can read: colormap, log scale, clipping, enlargement, legend.

The parameters are declared once here and added to every array route's model. The map's pixels are
always the colormap's colours, enlarged by whole pixels only, so a png stays a faithful picture of the
values; the colour bar (or hue wheel) is drawn beside the map, never over it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps

from dada.endpoint import Result
from dada.errors import BadParameter, TooLarge
from dada.params import Param
from dada.views import Curve, HueSaturation

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

CMAPS = ("viridis", "magma", "inferno", "plasma", "cividis", "gray", "gray_r", "hot", "jet", "turbo",
         "coolwarm", "RdBu_r", "twilight", "hsv")

RENDER = (
    Param("cmap", "Colormap for png output.", choices=CMAPS, default="viridis", presentation=True),
    Param("log", "Show log10 of the values (png); values <= 0 take the lowest colour.", type="boolean",
          default=False, presentation=True),
    Param("vmin", "Value shown as the lowest colour (png); default from plow.", type="number", presentation=True),
    Param("vmax", "Value shown as the highest colour (png); default from phigh.", type="number", presentation=True),
    Param("plow", "Percentile of the valid values used as vmin when vmin is not given (png).", type="number",
          default=0.0, minimum=0, maximum=100, unit="%", presentation=True),
    Param("phigh", "Percentile of the valid values used as vmax when vmax is not given (png).",
          type="number", default=99.9, minimum=0, maximum=100, unit="%", presentation=True),
    Param("scale", "Enlarge the png by this whole factor (each value a scale×scale block; curves are drawn "
          "finer).", type="integer", default=1, minimum=1, maximum=64, presentation=True),
    Param("width", "Enlarge the png to about this many columns of map: the largest whole factor that fits, at "
          "least 1; instead of scale.", type="integer", minimum=1, maximum=8192, unit="px", presentation=True),
    Param("colorbar", "Draw the colour scale right of the map: a bar with values and unit, or a hue wheel for "
          "angle-as-hue maps (curves have axes instead).", type="boolean", default=False, presentation=True),
)
RENDER_NAMES = frozenset(p.name for p in RENDER)


def render_params(**defaults: Any) -> tuple[Param, ...]:
    """RENDER with other defaults, for routes whose images read best another way (frames: log scale)."""
    return tuple(replace(p, default=defaults[p.name]) if p.name in defaults else p for p in RENDER)


MAX_PIXELS = 40_000_000  # of an enlarged map: what a png answer may hold (memory and encoding time)
CURVE_SHAPE = (400, 640)  # (rows, columns) of a curve at scale 1: its figure's inches at 100 dpi
PANEL_WIDTH = 100  # px of a colour bar's panel: bar, tick labels, unit
WHEEL_WIDTH = 180  # px of a hue wheel's panel
PANEL_HEIGHT = 200  # px: the least a legend needs to be legible, however small the map


def check_render(args: dict[str, Any]) -> None:
    """Cross-parameter checks, done at parse time so a bad request reads nothing.

    The output's size cannot be bounded here: the map's shape is the computed answer's (the plan does not
    always know the plane png shows), so :func:`enlargement` checks it once the map exists, before drawing.
    """
    vmin, vmax = args.get("vmin"), args.get("vmax")
    if vmin is not None and vmax is not None and vmin >= vmax:
        raise BadParameter("vmin", f"vmin {vmin} is not below vmax {vmax}", "vmin < vmax")
    if args.get("plow", 0.0) >= args.get("phigh", 100.0):
        raise BadParameter("plow", "plow must be below phigh", "0 <= plow < phigh <= 100")
    if args.get("log") and vmax is not None and vmax <= 0:
        raise BadParameter("vmax", "a log scale needs vmax > 0", "vmax > 0")
    if args.get("width") is not None and args.get("scale", 1) != 1:
        raise BadParameter("width", "give width or scale, not both", "width alone (it chooses the scale)")


def enlargement(args: dict[str, Any], shape: tuple[int, ...]) -> int:
    """The whole factor a (rows, columns) image is enlarged by; TooLarge past MAX_PIXELS, before any drawing."""
    rows, cols = shape[0], shape[1]
    width = args.get("width")
    scale = max(1, width // max(cols, 1)) if width is not None else args.get("scale", 1)
    pixels = rows * scale * cols * scale
    if pixels > MAX_PIXELS:
        name = "width" if width is not None else "scale"
        raise TooLarge(f"{name}: a {rows}x{cols} map enlarged {scale} times is {pixels} pixels, over the limit of "
                       f"{MAX_PIXELS}; ask for a smaller {name}", parameter=name, limit="max_pixels",
                       estimate=pixels)
    return scale


def _colour_scale(values: np.ndarray, invalid: np.ndarray | None,
                  args: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The values as the colours show them (log10 with ``log``), the pixels not shown (NaN, invalid), and the
    shown values at the lowest and highest colour: one computation, for the map and for its legend."""
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    if invalid is not None:
        bad |= np.broadcast_to(invalid, v.shape)
    log = bool(args.get("log"))
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log10(np.where(v > 0, v, np.nan))
    good = v[~bad & np.isfinite(v)]
    vmin, vmax = args.get("vmin"), args.get("vmax")
    if log:
        vmin = np.log10(vmin) if vmin is not None and vmin > 0 else None
        vmax = np.log10(vmax) if vmax is not None else None
    if good.size:
        if vmin is None:
            vmin = float(np.percentile(good, args.get("plow", 0.0)))
        if vmax is None:
            vmax = float(np.percentile(good, args.get("phigh", 100.0)))
    return v, bad, float(vmin if vmin is not None else 0.0), float(vmax if vmax is not None else 1.0)


def _coloured(v: np.ndarray, bad: np.ndarray, lo: float, hi: float, args: dict[str, Any]) -> np.ndarray:
    scaled = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(v)
    scaled = np.where(np.isfinite(scaled), scaled, 0.0)
    rgba = colormaps[args.get("cmap") or "viridis"](scaled, bytes=True)
    rgba[bad] = 0
    return rgba


def _saturation_top(h: HueSaturation, args: dict[str, Any]) -> float:
    """The strength shown fully saturated: vmax, else its phigh percentile."""
    ok = np.isfinite(h.angle) & np.isfinite(h.strength)
    top = args.get("vmax") or (np.percentile(h.strength[ok], args.get("phigh", 99.9)) if ok.any() else 1.0)
    return float(max(top, 1e-12))


def _hue_rgba(turns: np.ndarray, saturation: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Hue from turns (0..1), saturation (clipped to 0..1) at full value: the map's colours and the wheel's."""
    from matplotlib.colors import hsv_to_rgb

    hsv = np.stack([np.where(ok, turns, 0), np.clip(np.where(ok, saturation, 0), 0, 1), np.ones_like(turns)],
                   axis=-1)
    rgba = np.empty(turns.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = np.round(hsv_to_rgb(hsv) * 255)
    rgba[..., 3] = np.where(ok, 255, 0)
    return rgba


def _hue_legend(h: HueSaturation, top: float, unit: str | None) -> dict[str, Any]:
    return {"kind": "hue", "period": float(h.period), "unit": "deg", "vmax": top, "strength_unit": unit}


def _colormap_legend(lo: float, hi: float, args: dict[str, Any], unit: str | None) -> dict[str, Any]:
    log = bool(args.get("log"))
    return {"kind": "colormap", "cmap": args.get("cmap") or "viridis", "vmin": 10.0 ** lo if log else lo,
            "vmax": 10.0 ** hi if log else hi, "log": log, "unit": unit}


def legend(result: Result, args: dict[str, Any]) -> dict[str, Any] | None:
    """What a png's colour scale shows, as JSON: drawn beside the map with ``colorbar``, and sent to the GUI so
    it labels the same colours. Limits are in data units (10**limits on a log scale); None for curves."""
    d = result.drawing
    if isinstance(d, Curve):
        return None
    if isinstance(d, HueSaturation):
        return _hue_legend(d, _saturation_top(d, args), result.unit)
    _, _, lo, hi = _colour_scale(result.view, result.invalid, args)
    return _colormap_legend(lo, hi, args, result.unit)


def picture(result: Result, args: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The png's (H, W, 4) uint8 pixels (the map enlarged by whole pixels, its legend right of it on request)
    and the legend: the colour scale, percentiles and all, computed once for both."""
    d = result.drawing
    if isinstance(d, Curve):
        return _curve(d.x, d.y, d.xlabel, d.ylabel, args, enlargement(args, CURVE_SHAPE)), None
    scale = enlargement(args, (d.angle if d is not None else result.view).shape)
    if d is not None:
        top = _saturation_top(d, args)
        ok = np.isfinite(d.angle) & np.isfinite(d.strength)
        rgba = _hue_rgba(np.mod(d.angle, d.period) / d.period, d.strength / top, ok)
        lg = _hue_legend(d, top, result.unit)
    else:
        v, bad, lo, hi = _colour_scale(result.view, result.invalid, args)
        rgba, lg = _coloured(v, bad, lo, hi, args), _colormap_legend(lo, hi, args, result.unit)
    if scale > 1:
        rgba = np.repeat(np.repeat(rgba, scale, axis=0), scale, axis=1)
    if not args.get("colorbar"):
        return rgba, lg
    panel = _wheel(lg, rgba.shape[0]) if lg["kind"] == "hue" else _bar(lg, rgba.shape[0])
    out = np.zeros((max(rgba.shape[0], panel.shape[0]), rgba.shape[1] + panel.shape[1], 4), dtype=np.uint8)
    out[:rgba.shape[0], :rgba.shape[1]] = rgba
    out[:panel.shape[0], rgba.shape[1]:] = panel
    return out, lg


def _figure(width: int, height: int) -> tuple[Figure, FigureCanvasAgg]:
    """An off-screen matplotlib figure of width × height px (100 dpi) and its canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    return fig, FigureCanvasAgg(fig)


def _pixels(canvas: FigureCanvasAgg) -> np.ndarray:
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _unit_text(unit: str | None) -> str:
    return {"deg": "°"}.get(unit or "", unit or "")


def _bar(lg: dict[str, Any], height: int) -> np.ndarray:
    """A colour bar from vmin to vmax (log-spaced ticks with ``log``), labelled with the unit."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm, Normalize

    height = max(height, PANEL_HEIGHT)
    fig, canvas = _figure(PANEL_WIDTH, height)
    top, bottom = 18 / height, 8 / height  # room for the tick formatter's offset ("1e5") above
    cax = fig.add_axes((10 / PANEL_WIDTH, bottom, 14 / PANEL_WIDTH, 1 - top - bottom))
    norm = (LogNorm if lg["log"] else Normalize)(lg["vmin"], lg["vmax"])
    bar = fig.colorbar(ScalarMappable(norm, lg["cmap"]), cax=cax)
    bar.ax.tick_params(labelsize=8)
    bar.ax.yaxis.get_offset_text().set_fontsize(8)
    bar.set_label(_unit_text(lg["unit"]), fontsize=9)
    return _pixels(canvas)


def _wheel(lg: dict[str, Any], height: int) -> np.ndarray:
    """A disc whose angle is the hue (one turn per period, counter-clockwise from the right) and whose radius is
    the saturation (0 at the centre, vmax at the rim), coloured as the map is."""
    height = max(height, PANEL_HEIGHT)
    fig, canvas = _figure(WHEEL_WIDTH, height)
    n = 201
    y, x = np.mgrid[1:-1:n * 1j, -1:1:n * 1j]
    r = np.hypot(x, y)
    disc = _hue_rgba(np.mod(np.arctan2(y, x) / (2 * np.pi), 1.0), r, r <= 1)
    size = 100  # px of the disc; the angle labels and the radius caption go around it
    ax = fig.add_axes(((WHEEL_WIDTH - size) / 2 / WHEEL_WIDTH, 1 - (size + 24) / height, size / WHEEL_WIDTH,
                       size / height))
    ax.imshow(disc, extent=(-1, 1, -1, 1), interpolation="antialiased")
    ax.set_axis_off()
    unit = _unit_text(lg["unit"])
    for k in range(4):
        a = k * np.pi / 2
        ax.text(1.08 * np.cos(a), 1.08 * np.sin(a), f"{k * lg['period'] / 4:g}{unit}", fontsize=8,
                ha=("left", "center", "right", "center")[k], va=("center", "bottom", "center", "top")[k])
    ax.plot([0, 1], [0, 0], color="k", lw=0.6)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    strength = f"{lg['vmax']:.3g} {lg['strength_unit'] or ''}".strip()
    fig.text(0.5, 1 - (size + 46) / height, f"radius: 0 (centre) to\n{strength} (rim)", fontsize=8, ha="center",
             va="top")
    return _pixels(canvas)


def _curve(x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str, args: dict[str, Any],
           scale: int) -> np.ndarray:
    """A 1-D profile as a line plot (log y with ``log``), rendered off-screen; ``scale`` multiplies its dpi."""
    fig, canvas = _figure(CURVE_SHAPE[1], CURVE_SHAPE[0])
    fig.set_dpi(100 * scale)
    ax = fig.add_subplot()
    ok = np.isfinite(y)
    ax.plot(x[ok], y[ok], color="C0")
    if args.get("log"):
        ax.set_yscale("log")
    if args.get("vmin") is not None or args.get("vmax") is not None:
        ax.set_ylim(args.get("vmin"), args.get("vmax"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return _pixels(canvas)

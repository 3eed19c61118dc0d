"""Turning a 2-D array into colours for png: colormap, log scale, clipping.

The parameters are declared once here and added to every array route's model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps

from dada.errors import BadParameter
from dada.params import Param
from dada.views import Curve, Drawing, HueSaturation

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
)
RENDER_NAMES = frozenset(p.name for p in RENDER)


def check_render(args: dict[str, Any]) -> None:
    """Cross-parameter checks, done at parse time so a bad request reads nothing."""
    vmin, vmax = args.get("vmin"), args.get("vmax")
    if vmin is not None and vmax is not None and vmin >= vmax:
        raise BadParameter("vmin", f"vmin {vmin} is not below vmax {vmax}", "vmin < vmax")
    if args.get("plow", 0.0) >= args.get("phigh", 100.0):
        raise BadParameter("plow", "plow must be below phigh", "0 <= plow < phigh <= 100")
    if args.get("log") and vmax is not None and vmax <= 0:
        raise BadParameter("vmax", "a log scale needs vmax > 0", "vmax > 0")


def to_rgba(values: np.ndarray, invalid: np.ndarray | None, args: dict[str, Any]) -> np.ndarray:
    """(H, W) values -> (H, W, 4) uint8; invalid and NaN pixels are transparent black."""
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    if invalid is not None:
        bad |= np.broadcast_to(invalid, v.shape)
    if args.get("log"):
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log10(np.where(v > 0, v, np.nan))
    good = v[~bad & np.isfinite(v)]
    lo, hi = _limits(good, args)
    scaled = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(v)
    scaled = np.where(np.isfinite(scaled), scaled, 0.0)
    rgba = colormaps[args.get("cmap") or "viridis"](scaled, bytes=True)
    rgba[bad] = 0
    return rgba


def _limits(good: np.ndarray, args: dict[str, Any]) -> tuple[float, float]:
    log = bool(args.get("log"))
    vmin, vmax = args.get("vmin"), args.get("vmax")
    if log:
        vmin = np.log10(vmin) if vmin is not None and vmin > 0 else None
        vmax = np.log10(vmax) if vmax is not None else None
    if good.size:
        if vmin is None:
            vmin = float(np.percentile(good, args.get("plow", 0.0)))
        if vmax is None:
            vmax = float(np.percentile(good, args.get("phigh", 100.0)))
    return (vmin if vmin is not None else 0.0), (vmax if vmax is not None else 1.0)


def _curve(x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str, args: dict[str, Any]) -> np.ndarray:
    """A 1-D profile as a line plot (log y with ``log``), rendered off-screen."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    canvas = FigureCanvasAgg(fig)
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
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _hue_saturation(h: HueSaturation, args: dict[str, Any]) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    ok = np.isfinite(h.angle) & np.isfinite(h.strength)
    top = args.get("vmax") or (np.percentile(h.strength[ok], args.get("phigh", 99.9)) if ok.any() else 1.0)
    hsv = np.stack([np.where(ok, np.mod(h.angle, h.period) / h.period, 0),
                    np.clip(np.where(ok, h.strength, 0) / max(top, 1e-12), 0, 1), np.ones_like(h.angle)], axis=-1)
    rgba = np.empty(h.angle.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = np.round(hsv_to_rgb(hsv) * 255)
    rgba[..., 3] = np.where(ok, 255, 0)
    return rgba


def draw(drawing: Drawing, args: dict[str, Any]) -> np.ndarray:
    """An analysis's own png description as (H, W, 4) uint8."""
    if isinstance(drawing, Curve):
        return _curve(drawing.x, drawing.y, drawing.xlabel, drawing.ylabel, args)
    return _hue_saturation(drawing, args)

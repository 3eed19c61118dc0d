"""How an analysis asks for a png that a colormap cannot show, without touching rendering code.

An analysis returns one of these descriptions; ``dada.encoders.render`` draws it. So the science
modules stay free of matplotlib, and presentation parameters only ever change the drawing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """A 1-D profile drawn as a line plot (log y with ``log``, y limits from vmin/vmax)."""

    x: np.ndarray
    y: np.ndarray
    xlabel: str
    ylabel: str


@dataclass(frozen=True)
class HueSaturation:
    """An angle as hue (one turn per ``period``) and a strength as saturation, scaled to vmax
    (default: its phigh percentile); NaN points transparent."""

    angle: np.ndarray
    period: float
    strength: np.ndarray


Drawing = Curve | HueSaturation


@dataclass(frozen=True)
class Overlay:
    """A shape the GUI draws on a detector frame, so a user can check a channel's parameters against
    the data and drag them: ``centre`` (x, y), ``circle`` (radius), ``annulus`` (inner, outer radius),
    ``sectors`` (inner, outer radius, count; the first starts at +x, turning towards +y).

    ``params`` name the route's parameters in that order. A radius left unset means the largest circle
    about the centre inside the frame; an unset centre is the scan's recorded beam centre.
    """

    kind: str
    params: tuple[str, ...]

    def describe(self, prefix: str = "") -> dict[str, object]:
        return {"kind": self.kind, "params": [prefix + p for p in self.params]}

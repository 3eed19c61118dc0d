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

"""Maxpixel: the largest valid count in an annulus per point, a saturation and hot-spot check."""

from __future__ import annotations

from typing import Any

import numpy as np

from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Channel, Partial
from dada.views import Overlay


class Maxpixel(Channel):
    name = "maxpixel"
    doc = ("Largest valid count with rmin <= r < rmax per point (saturated and masked pixels left out); NaN where "
           "the annulus has no valid pixel.")
    params = (
        radius_param("rmin", "Inner radius of the annulus.", 0.0),
        radius_param("rmax", "Outer radius (excluded); default: the largest circle inside the frame.", None),
    )
    outputs = ("maxpixel",)
    overlays = (Overlay("annulus", ("rmin", "rmax")),)
    accumulators = ("max",)

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        ring(geo, args)

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        rmin, rmax = ring(geo, args)
        r = geo.radius()
        return Bins(np.where((r >= rmin) & (r < rmax), 0, -1).astype(np.int32), 1)

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        return {"maxpixel": np.where(m["count"][:, 0] > 0, m["max"][:, 0], np.nan)}

    def unit(self, output: str, args: dict[str, Any]) -> str:
        return "counts"

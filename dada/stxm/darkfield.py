"""Darkfield: summed counts in the annulus rmin <= r < rmax; transmission (r < rmin) alongside."""

from __future__ import annotations

from typing import Any

import numpy as np

from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Channel, Partial
from dada.views import Overlay


class Darkfield(Channel):
    name = "darkfield"
    doc = "STXM darkfield: summed valid counts with rmin <= r < rmax; transmission: counts with r < rmin."
    params = (
        radius_param("rmin", "Inner radius of the annulus; also the transmission disc's radius.", 10.0),
        radius_param("rmax", "Outer radius (excluded); default: the largest circle inside the frame.", None),
    )
    outputs = ("darkfield", "transmission")
    overlays = (Overlay("annulus", ("rmin", "rmax")),)

    def pointwise(self, args: dict[str, Any]) -> bool:
        return True

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        ring(geo, args)

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        rmin, rmax = ring(geo, args)
        r = geo.radius()
        index = np.where(r < rmin, 1, np.where(r < rmax, 0, -1)).astype(np.int32)
        return Bins(index, 2)

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        return {"darkfield": m["sum"][:, 0], "transmission": m["sum"][:, 1]}

    def unit(self, output: str, args: dict[str, Any]) -> str:
        return "counts"

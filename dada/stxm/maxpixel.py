"""Maxpixel: the largest valid count in an annulus per point, a saturation and hot-spot check."""

from __future__ import annotations

from typing import Any

import numpy as np

from dada.stxm.annulus import AnnulusChannel, annulus_params
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Partial


class Maxpixel(AnnulusChannel):
    name = "maxpixel"
    doc = ("Largest valid count with rmin <= r < rmax per point (saturated and masked pixels left out); NaN where "
           "the annulus has no valid pixel.")
    params = annulus_params(0.0)
    outputs = ("maxpixel",)
    accumulators = ("max",)

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        return {"maxpixel": np.where(m["count"][:, 0] > 0, m["max"][:, 0], np.nan)}

    def unit(self, output: str, args: dict[str, Any]) -> str:
        return "counts"

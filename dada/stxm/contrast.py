"""Contrast: speckle contrast σ/μ of the valid counts in an annulus per point."""

from __future__ import annotations

from typing import Any

import numpy as np

from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Channel, Partial
from dada.views import Overlay


class Contrast(Channel):
    name = "contrast"
    doc = ("Speckle contrast σ/μ of the valid counts with rmin <= r < rmax per point: μ their mean, σ their "
           "standard deviation (over the pixels, population); NaN where μ is 0 or no pixel is valid.")
    params = (
        radius_param("rmin", "Inner radius of the annulus.", 10.0),
        radius_param("rmax", "Outer radius (excluded); default: the largest circle inside the frame.", None),
    )
    outputs = ("contrast",)
    overlays = (Overlay("annulus", ("rmin", "rmax")),)
    accumulators = ("sum", "sq")

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        ring(geo, args)

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        rmin, rmax = ring(geo, args)
        r = geo.radius()
        return Bins(np.where((r >= rmin) & (r < rmax), 0, -1).astype(np.int32), 1)

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        n, s, q = (np.asarray(m[k][:, 0], dtype=np.float64) for k in ("count", "sum", "sq"))
        with np.errstate(invalid="ignore", divide="ignore"):
            # n²·var = n·Σv² - (Σv)², never negative for exact sums; rounding may make it a hair below 0
            spread = np.sqrt(np.maximum(n * q - s * s, 0.0))
            return {"contrast": np.where((n > 0) & (s > 0), spread / s, np.nan)}

    def unit(self, output: str, args: dict[str, Any]) -> str:
        return ""

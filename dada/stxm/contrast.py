"""Contrast: speckle contrast σ/μ of the valid counts in an annulus per point."""

from __future__ import annotations

from typing import Any

import numpy as np

from dada.stxm.annulus import AnnulusChannel, annulus_params
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Partial


class Contrast(AnnulusChannel):
    name = "contrast"
    accumulators = ("sum", "sq")  # with the valid-pixel count: mean and variance
    doc = ("Speckle contrast σ/μ of the valid counts with rmin <= r < rmax per point: μ their mean, σ their "
           "standard deviation (over the pixels, population); NaN where μ is 0 or no pixel is valid.")
    params = annulus_params(10.0)
    outputs = ("contrast",)

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        n, s, q = (np.asarray(m[k][:, 0], dtype=np.float64) for k in ("count", "sum", "sq"))
        with np.errstate(invalid="ignore", divide="ignore"):
            # n²·var = n·Σv² - (Σv)², never negative for exact sums; rounding may make it a hair below 0
            spread = np.sqrt(np.maximum(n * q - s * s, 0.0))
            return {"contrast": np.where((n > 0) & (s > 0), spread / s, np.nan)}

    def unit(self, output: str, args: dict[str, Any]) -> str:
        return ""

"""Azimuthal: sector means on a ring; orientation and degree of anisotropy from the second harmonic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dada.params import Param
from dada.stxm.annulus import AnnulusChannel
from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Partial
from dada.stxm.polarbins import sector_bins
from dada.views import Drawing, HueSaturation, Overlay

if TYPE_CHECKING:
    from dada.stxm.reduction import View


def harmonic(sectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(orientation deg in [0, 180), anisotropy in [0, 1]) from sector means (N, ...).

    c2 = Σ s_k e^{2iφ_k} with φ_k the sector centres; sectors without valid pixels (NaN) are left out.
    Its real and imaginary parts are sums of real products, added sector after sector over all points at
    once (NaN taken as 0): each step a pass over contiguous rows, where sums along each point's sectors walked
    a transposed copy (a third of an azimuthal answer from the reduction went there); and each point's sums in
    the same order however many points are finalised together (a map finalised block by block equals it
    finalised at once).
    """
    n = sectors.shape[0]
    phi = (np.arange(n) + 0.5) * 2 * np.pi / n
    cos, sin = np.cos(2 * phi), np.sin(2 * phi)
    re, im, total = (np.zeros(sectors.shape[1:]) for _ in range(3))
    valid = np.zeros(sectors.shape[1:], dtype=bool)
    s = np.empty(sectors.shape[1:])
    for k in range(n):
        np.copyto(s, sectors[k])
        seen = ~np.isnan(s)
        s[~seen] = 0.0
        valid |= seen
        re += s * cos[k]
        im += s * sin[k]
        total += s
    with np.errstate(invalid="ignore", divide="ignore"):
        orientation = np.mod(np.degrees(np.arctan2(im, re)) / 2, 180.0)
        anisotropy = np.where(total > 0, np.hypot(re, im) / total, np.nan)
    orientation[~valid] = np.nan
    return orientation, anisotropy


class Azimuthal(AnnulusChannel):
    name = "azimuthal"
    doc = ("nsectors sectors on the ring rmin..rmax, each its mean count per valid pixel; orientation (deg, from +x "
           "towards +y, of strongest scattering) = arg(c2)/2 and anisotropy = |c2| / Σ s_k from the second "
           "harmonic c2 = Σ s_k e^{2iφ_k}.")
    params = (
        radius_param("rmin", "Inner radius of the ring.", 10.0),
        radius_param("rmax", "Outer radius (excluded); default: the largest circle inside the frame.", None),
        Param("nsectors", "Number of equal sectors, the first starting at +x.", type="integer", default=16,
              minimum=3, maximum=720),
    )
    outputs = ("sectors", "orientation", "anisotropy")
    overlays = (Overlay("sectors", ("rmin", "rmax", "nsectors")),)
    radii = ("rmin", "rmax")

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        rmin, rmax = ring(geo, args)
        return sector_bins(geo, rmin, rmax, args["nsectors"])

    def reduced(self, view: View, geo: BeamGeometry, args: dict[str, Any]) -> Partial | None:
        """The ring's radial bins, and each of their cells' sector by the sectors' own formula
        (``polar.sectors``) at its smallest and largest angle: the same for both, or the frames are read."""
        rmin, rmax = ring(geo, args)
        n, g = args["nsectors"], view.geometry
        on = g.ring_labels(lambda r: np.where(r < rmin, -1, np.where(r < rmax, 0, 1)), rmax)
        if on is None:
            return None

        def sector(a: np.ndarray) -> np.ndarray:
            return np.minimum((a / (2 * np.pi) * n).astype(np.int32), n - 1)

        full = ~np.isnan(g.alo)
        lo, hi = sector(np.where(full, g.alo, 0.0)), sector(np.where(full, g.ahi, 0.0))
        inside = full & (on == 0)[:, None]
        if (lo[inside] != hi[inside]).any():
            return None
        return view.partial(view.cell_sums(np.where(inside, lo, -1), n))

    def output_shape(self, args: dict[str, Any], points: tuple[int, int]) -> dict[str, tuple[int, ...]]:
        return {"sectors": (args["nsectors"], *points), "orientation": points, "anisotropy": points}

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            sectors = (m["sum"] / m["count"]).T  # (N, npoints); 0 / 0 (no valid pixel) is NaN
        orientation, anisotropy = harmonic(sectors)
        return {"sectors": sectors, "orientation": orientation, "anisotropy": anisotropy}

    def plane(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> np.ndarray | None:
        if output == "sectors":
            return arrays["anisotropy"]
        return arrays[output]

    def drawing(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> Drawing | None:
        """Orientation as hue, anisotropy as saturation."""
        if output != "sectors":
            return None
        return HueSaturation(arrays["orientation"], 180.0, arrays["anisotropy"])

    def unit(self, output: str, args: dict[str, Any]) -> str:
        """Orientation in degrees; anisotropy (also the sectors' view, as saturation) is a ratio."""
        return "deg" if output == "orientation" else ""

"""Radial: azimuthally averaged intensity per radius (px) or momentum transfer q (nm^-1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dada.errors import BadParameter
from dada.params import Param
from dada.stxm.beam import BeamGeometry, radius_param, ring
from dada.stxm.channel import Bins, Channel, Partial
from dada.stxm.polar import shells
from dada.stxm.polarbins import shell_bins
from dada.views import Curve, Drawing, Overlay

if TYPE_CHECKING:
    from dada.stxm.reduction import View


def q_of_r(r: np.ndarray | float, geo: BeamGeometry) -> np.ndarray:
    """q = 4π/λ · sin(θ), 2θ = atan(r · pixel / distance); λ in nm, q in nm^-1."""
    two_theta = np.arctan(np.asarray(r) * geo.pixel_size / geo.distance)
    return 4 * np.pi / (geo.wavelength / 10.0) * np.sin(two_theta / 2)


ROWS = 1024  # points per step: a step's rows and their transposed copy stay in cache


def means_by_bin(total: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Σv / valid pixels, NaN where a bin has none: (npoints, nbins) in, (nbins, npoints) out (the output
    layout), a run of points at a time: dividing straight into the transposed layout walks memory a
    bin's stride apart, several times slower. A bin without valid pixels has nothing summed (0 / 0 is
    NaN, as is an absent point's NaN), so no mask is needed: masking took 60 % of the time."""
    out = np.empty(total.shape[::-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(0, total.shape[0], ROWS):
            out[:, i:i + ROWS] = (total[i:i + ROWS] / valid[i:i + ROWS]).T
    return out


class Radial(Channel):
    name = "radial"
    doc = ("Mean count per valid pixel in nbins shells between rmin and rmax (given in px), equally spaced in "
           "radius (unit=px) or in q (unit=q, nm^-1); per point, or summed over the selection (reduce=sum).")
    params = (
        radius_param("rmin", "Inner radius of the first bin.", 0.0),
        radius_param("rmax", "Outer radius of the last bin (excluded); default: the largest circle inside the "
                     "frame.", None),
        Param("nbins", "Number of bins.", type="integer", default=100, minimum=1, maximum=4096),
        Param("unit", "Bin spacing and axis unit: px, or q in nm^-1 (needs pixel size, distance, energy).",
              choices=("px", "q"), default="px"),
        Param("reduce", "none: a profile per point; sum: one profile for the whole selection.",
              choices=("none", "sum"), default="none"),
    )
    outputs = ("radial", "axis")
    radii = ("rmin", "rmax")
    overlays = (Overlay("annulus", ("rmin", "rmax")),)

    def pointwise(self, args: dict[str, Any]) -> bool:
        """A profile per point is; one summed over the selection is not."""
        return args["reduce"] == "none"

    def check(self, geo: BeamGeometry, args: dict[str, Any]) -> None:
        ring(geo, args)
        if args["unit"] == "q" and not (geo.pixel_size and geo.distance and geo.wavelength):
            raise BadParameter("unit", "q needs the pixel size, detector distance and wavelength, which the scan "
                               "does not all record", "px")

    def edges(self, geo: BeamGeometry, args: dict[str, Any]) -> np.ndarray:
        rmin, rmax = ring(geo, args)
        if args["unit"] == "q":
            return np.linspace(q_of_r(rmin, geo), q_of_r(rmax, geo), args["nbins"] + 1)
        return np.linspace(rmin, rmax, args["nbins"] + 1)

    def bins(self, geo: BeamGeometry, args: dict[str, Any]) -> Bins:
        edges = self.edges(geo, args)
        if args["unit"] == "px":
            return shell_bins(geo, edges[0], edges[-1], args["nbins"])
        return Bins(shells(q_of_r(geo.radius(), geo), edges[0], edges[-1], args["nbins"]), args["nbins"])

    def reduced(self, view: View, geo: BeamGeometry, args: dict[str, Any]) -> Partial | None:
        """In px: each shell's radial bins, by the shells' own formula (``polar.shells``) at each bin's smallest
        and largest radius (-1 below, nbins above: monotone in r)."""
        if args["unit"] != "px":
            return None
        edges = self.edges(geo, args)
        e0, e1, n = float(edges[0]), float(edges[-1]), int(args["nbins"])

        def shell(v: np.ndarray) -> np.ndarray:
            k = np.floor((v - e0) / (e1 - e0) * n)
            return np.where(v < e0, -1, np.where((v < e1) & (k < n), k, n))

        labels = view.geometry.ring_labels(shell, e1)
        return None if labels is None else view.partial(view.ring_sums(labels, n))

    def output_shape(self, args: dict[str, Any], points: tuple[int, int]) -> dict[str, tuple[int, ...]]:
        per = (args["nbins"],) if args["reduce"] == "sum" else (args["nbins"], *points)
        return {"radial": per, "axis": (args["nbins"],)}

    def finalize(self, m: Partial, geo: BeamGeometry, args: dict[str, Any],
                 context: Any = None) -> dict[str, np.ndarray]:
        total, valid = m["sum"], m["count"]
        if args["reduce"] == "sum":
            merged = m.merged()  # in float64 (counts travel as float32)
            total, valid = merged["sum"], merged["count"]
        profile = means_by_bin(total, valid)
        edges = self.edges(geo, args)
        axis = (edges[:-1] + edges[1:]) / 2
        return {"radial": profile[:, 0] if args["reduce"] == "sum" else profile, "axis": axis}

    def plane(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> np.ndarray | None:
        """Per point: the (nbins, points) waterfall in scan order; summed: (axis, I) columns."""
        prof = arrays["radial"]
        if prof.ndim == 1:
            return np.stack([arrays["axis"], prof], axis=1)
        return prof.reshape(prof.shape[0], -1)

    def drawing(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> Drawing | None:
        """A summed profile is drawn as a curve; per-point profiles go through the colormap."""
        if arrays["radial"].ndim != 1:
            return None
        unit = "q (nm$^{-1}$)" if args["unit"] == "q" else "r (px)"
        return Curve(arrays["axis"], arrays["radial"], unit, "mean counts per pixel")

    def unit(self, output: str, args: dict[str, Any]) -> str | None:
        """Per point, mean counts per pixel; summed, the view mixes the axis and the profile (a curve)."""
        return "counts/px" if args["reduce"] == "none" else None

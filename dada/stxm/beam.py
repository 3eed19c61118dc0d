"""Beam geometry for the STXM channels: centre, masks and radius checks, from metadata and URL.

:class:`BeamGeometry` is what a channel builds its pixel bins from; the scan's recorded detector
metadata (``dada.sources.scan.RecordedGeometry``) plus the URL's ``cx``, ``cy`` and ``usermask`` give it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import h5py
import numpy as np

from dada.errors import BadParameter, Unprocessable
from dada.params import Param
from dada.sources.catalog import Catalog
from dada.sources.scan import Scan, local_get
from dada.stxm import polar


@dataclass(frozen=True)
class BeamGeometry:
    """What channels need to build pixel maps: frame shape, beam centre, validity, calibration."""

    shape: tuple[int, int]
    cx: float
    cy: float
    good: np.ndarray  # (H, W) bool: not masked by detector or user mask
    pixel_size: float | None  # m
    distance: float | None  # m
    wavelength: float | None  # Å

    @cached_property
    def key(self) -> str:
        """Everything pixel maps depend on, hashed: shape, centre, valid pixels, calibration."""
        h = hashlib.sha256(repr((self.shape, self.cx, self.cy, self.pixel_size, self.distance,
                                 self.wavelength)).encode())
        h.update(np.packbits(self.good).tobytes())
        return h.hexdigest()[:32]

    @cached_property
    def _radius(self) -> np.ndarray:
        return polar.radius(self.shape, self.cx, self.cy)

    @cached_property
    def _angle(self) -> np.ndarray:
        return polar.angle(self.shape, self.cx, self.cy)

    def radius(self) -> np.ndarray:
        """Distance of each pixel centre from the beam centre, px (computed once per geometry)."""
        return self._radius

    def angle(self) -> np.ndarray:
        """Azimuth in radians, [0, 2π), counted from +x (columns) towards +y (rows)."""
        return self._angle

    def r_limit(self) -> float:
        """Distance from the beam centre to the farthest frame corner: no radius lies beyond."""
        h, w = self.shape
        return float(max(np.hypot(x - self.cx, y - self.cy) for x in (-0.5, w - 0.5) for y in (-0.5, h - 0.5)))

    def r_inside(self) -> float:
        """Largest circle about the beam centre inside the frame (the default outer radius)."""
        h, w = self.shape
        return float(max(1.0, min(self.cx + 0.5, w - 0.5 - self.cx, self.cy + 0.5, h - 0.5 - self.cy)))



GEOMETRY = (
    Param("cx", "Beam centre along columns (x); default from the scan's metadata.", type="number", unit="px"),
    Param("cy", "Beam centre along rows (y); default from the scan's metadata.", type="number", unit="px"),
    Param("usermask", "A mask file below the data root (.npy, or HDF5 with one 2-D dataset); non-zero = masked.",
          example="masks/beamstop.npy", names_file=True),
)


def load_usermask(catalog: Catalog, path: str, shape: tuple[int, int]) -> np.ndarray:
    real = catalog.resolve_file(path, "usermask")
    try:
        with contextlib.ExitStack() as files:
            if real.endswith(".npy"):
                m = np.load(real, mmap_mode="r", allow_pickle=False)
            else:
                f = files.enter_context(h5py.File(real, "r"))
                found: list[str] = []
                f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 2 else None)
                if len(found) != 1:
                    raise ValueError(f"holds {len(found)} 2-D datasets, not one")
                m = local_get(f, found[0])
            if m.shape != shape:
                raise BadParameter("usermask", f"its shape {m.shape} is not the frame shape {shape}",
                                   f"a {shape} array")
            if m.dtype.kind not in "biuf":
                raise ValueError(f"its dtype {m.dtype} is not numeric")
            return np.asarray(m[()]) != 0
    except (OSError, ValueError, EOFError, Unprocessable) as exc:
        raise BadParameter("usermask", f"{os.path.basename(real)} cannot be read: {exc}", ".npy or HDF5") from None


def geometry(scan: Scan, args: dict[str, Any], catalog: Catalog, centred: bool = True) -> BeamGeometry:
    """The request's geometry; without a centre (none recorded, none given) only when not ``centred`` (no
    requested channel's bins depend on it): then cx, cy are NaN."""
    g = scan.geometry
    cx = args["cx"] if args["cx"] is not None else g.beam_center_x
    cy = args["cy"] if args["cy"] is not None else g.beam_center_y
    h, w = scan.frame_shape
    if cx is None and cy is None and not centred:
        cx = cy = np.nan
    for name, value, size in (("cx", cx, w), ("cy", cy, h)):
        if value is None:
            raise BadParameter(name, "the scan's metadata give no beam centre; say it in the URL", "a number in px")
        if np.isnan(value) and not centred:
            continue
        if not -0.5 <= value <= size - 0.5:
            raise BadParameter(name, f"{value} lies outside the frame", f"a number in [-0.5, {size - 0.5}]")
    good = ~scan.bad_pixels()
    if args["usermask"]:
        good = good & ~load_usermask(catalog, args["usermask"], scan.frame_shape)
    return BeamGeometry((h, w), float(cx), float(cy), good, g.x_pixel_size, g.detector_distance, g.wavelength)


def ring(geo: BeamGeometry, args: dict[str, Any], lo: str = "rmin", hi: str = "rmax") -> tuple[float, float]:
    """(rmin, rmax) with rmax defaulting to the largest circle inside the frame; 400 if impossible."""
    rmin = args[lo]
    rmax = args[hi] if args[hi] is not None else geo.r_inside()
    limit = geo.r_limit()
    if rmin >= rmax:
        raise BadParameter(lo, f"{lo} {rmin} is not below {hi} {rmax:g}", f"0 <= {lo} < {hi}")
    if rmin >= limit or rmax > np.ceil(limit):
        name = lo if rmin >= limit else hi
        raise BadParameter(name, f"{args[name]} px reaches beyond the frame, whose farthest corner is "
                           f"{limit:.1f} px from the beam centre", f"{hi} <= {np.ceil(limit):g}")
    return float(rmin), float(rmax)


def radius_param(name: str, doc: str, default: float | None) -> Param:
    return Param(name, doc, type="number", default=default, minimum=0, unit="px")

"""Full-field tomography files: NXtomo and TDF-style HDF5.

* NXtomo: one stack ``/entry/data/data`` (or ``/entry/instrument/detector/data``) of
  (images, rows, cols) with ``image_key`` (0 projection, 1 flat, 2 dark) and
  ``rotation_angle`` (degrees) per image.
* TDF (SYRMEP): ``data``, ``data_white``, ``data_dark`` at the root (or under
  ``/exchange``). Root-level TDF stacks are sinogram-major (rows, images, cols)
  unless the dataset's ``order`` attribute says ``projections``; ``/exchange``
  stacks (DXchange) are projection-major. Angles from ``theta`` when present.

Rows are read as bands for all images at once: one pass over projection-chunked
files serves several slices.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from dada.errors import NotFound, Unprocessable
from dada.sources.handles import HandleCache
from dada.sources.scan import metadata
from dada.sources.slabs import read_slab

NX_DATA = ("entry/data/data", "entry/instrument/detector/data")
NX_KEY = ("entry/data/image_key", "entry/instrument/detector/image_key")
NX_ANGLE = ("entry/data/rotation_angle", "entry/sample/rotation_angle")
PIXEL = ("entry/instrument/detector/x_pixel_size", "entry/instrument/detector/pixel_size", "pixel_size",
         "measurement/instrument/detector/pixel_size")
DISTANCE = ("entry/instrument/detector/distance", "entry/instrument/detector/detector_distance", "distance")
ENERGY = ("entry/instrument/source/energy", "entry/instrument/monochromator/energy", "energy")


@dataclass
class TomoScan:
    name: str
    kind: str  # "nxtomo" or "tdf"
    path: str
    stamp: tuple[str, int, int]
    handles: HandleCache
    datasets: dict[str, str]  # role (data, flat, dark) -> HDF5 path
    sinogram_major: dict[str, bool]
    proj: np.ndarray  # NXtomo: image indices of projections (in the one stack); TDF: arange
    flat: np.ndarray
    dark: np.ndarray
    angles: np.ndarray | None  # degrees per projection, from the file
    shape: tuple[int, int, int]  # (projections, rows, cols)
    pixel_size: float | None  # m
    distance: float | None  # m
    energy: float | None  # keV
    _ident: str = field(default="", init=False)

    @property
    def identity(self) -> str:
        if not self._ident:
            self._ident = hashlib.sha256("\0".join(map(str, self.stamp)).encode()).hexdigest()[:32]
        return self._ident

    @property
    def complete(self) -> bool:
        return True

    def _band(self, role: str, r0: int, r1: int) -> np.ndarray:
        """All images of a role's stack for rows r0..r1, as (images, rows, cols); projection-major stacks
        are read as runs of images in parallel processes when that is worth it."""
        d = self.handles.get(self.path)[self.datasets[role]]
        try:
            if self.sinogram_major[role]:
                return np.transpose(d[r0:r1, :, :], (1, 0, 2))
            chunk = d.chunks or d.shape
            touched = int(np.prod(chunk[1:])) * d.dtype.itemsize  # bytes decoded per image for a band
            slab, _ = read_slab(self.path, d.name, d.shape[0], r0, r1, d.shape[2], d.dtype, touched)
            return slab
        except (OSError, ValueError) as exc:
            raise Unprocessable(f"rows {r0}..{r1 - 1} of {role} cannot be read: {exc}") from None

    def rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(projections, flats, darks, projection positions, flat positions) for rows r0..r1, float32.

        Positions are image indices in acquisition order, used to interpolate flats taken before and
        after the projections.
        """
        if self.kind == "nxtomo":
            band = self._band("data", r0, r1).astype(np.float32)
            return band[self.proj], band[self.flat], band[self.dark], self.proj, self.flat
        p = self._band("data", r0, r1).astype(np.float32)
        f = self._band("flat", r0, r1).astype(np.float32) if "flat" in self.datasets else np.ones_like(p[:1])
        d = self._band("dark", r0, r1).astype(np.float32) if "dark" in self.datasets else np.zeros_like(p[:1])
        return p, f, d, np.arange(p.shape[0]), np.full(f.shape[0], -1)

    def describe(self) -> dict:
        n, rows, cols = self.shape
        return {"scan": self.name, "kind": self.kind, "projections": n, "rows": rows, "cols": cols,
                "flats": int(self.flat.size), "darks": int(self.dark.size),
                "angles": None if self.angles is None else [float(self.angles.min()), float(self.angles.max())],
                "pixel_size": self.pixel_size, "distance": self.distance, "energy": self.energy,
                "identity": self.identity}


def _first(f: h5py.File, paths: tuple[str, ...]) -> h5py.Dataset | None:
    for p in paths:
        obj = metadata(f, p)
        if isinstance(obj, h5py.Dataset):
            return obj
    return None


def _scalar(f: h5py.File, paths: tuple[str, ...]) -> float | None:
    d = _first(f, paths)
    if d is None or d.size != 1:
        return None
    value = float(np.asarray(d[()]).reshape(()))
    units = d.attrs.get("units", b"")
    units = units.decode() if isinstance(units, bytes) else str(units)
    return value * {"mm": 1e-3, "um": 1e-6, "µm": 1e-6, "eV": 1e-3}.get(units, 1.0)


def is_tomo(f: h5py.File) -> bool:
    return _first(f, NX_KEY) is not None or any(
        isinstance(metadata(f, p), h5py.Dataset) for p in ("data_white", "exchange/data_white"))


def open_tomo(name: str, path: str, root: str, handles: HandleCache) -> TomoScan:
    f = handles.get(path)
    st = os.stat(path)
    stamp = (os.path.relpath(path, root), st.st_size, st.st_mtime_ns)
    geometry = dict(pixel_size=_scalar(f, PIXEL), distance=_scalar(f, DISTANCE), energy=_scalar(f, ENERGY))
    keys = _first(f, NX_KEY)
    if keys is not None:
        data = _numbers(path, _first(f, NX_DATA), 3, "NXtomo data stack")
        key = np.asarray(_numbers(path, keys, 1, "image_key")[()]).astype(int)
        proj, flat, dark = (np.flatnonzero(key == k) for k in (0, 1, 2))
        if key.size != data.shape[0] or not proj.size:
            raise Unprocessable(f"{os.path.basename(path)}: image_key marks {proj.size} of {key.size} images as "
                                f"projections, for a stack of {data.shape[0]} images")
        angles = _angles(path, _first(f, NX_ANGLE), data.shape[0])
        return TomoScan(name, "nxtomo", path, stamp, handles, {"data": data.name}, {"data": False}, proj, flat, dark,
                        None if angles is None else angles[proj], (proj.size, data.shape[1], data.shape[2]),
                        **geometry)
    base = "exchange/" if isinstance(metadata(f, "exchange/data"), h5py.Dataset) else ""
    data = metadata(f, base + "data")
    if not isinstance(data, h5py.Dataset) or data.ndim != 3:
        raise NotFound(f"{name} is not a tomography file (no NXtomo image_key, no TDF data)")
    datasets = {"data": _numbers(path, data, 3, "data stack").name}
    for role, p in (("flat", "data_white"), ("dark", "data_dark")):
        if isinstance(metadata(f, base + p), h5py.Dataset):
            datasets[role] = _numbers(path, f[base + p], 3, p).name

    def sino_major(path_: str) -> bool:
        order = f[path_].attrs.get("order", b"")
        order = order.decode() if isinstance(order, bytes) else str(order)
        return order == "sinograms" or (not base and order != "projections")

    major = {role: sino_major(p) for role, p in datasets.items()}
    images = {role: f[p].shape[1 if major[role] else 0] for role, p in datasets.items()}
    pixels = {role: (f[p].shape[0 if major[role] else 1], f[p].shape[2]) for role, p in datasets.items()}
    for role, shape in pixels.items():
        if shape != pixels["data"]:
            raise Unprocessable(f"{os.path.basename(path)}: the {role} images are {shape[0]}x{shape[1]}, the "
                                f"projections {pixels['data'][0]}x{pixels['data'][1]}")
    n, (rows, cols) = images["data"], pixels["data"]
    nflat, ndark = images.get("flat", 0), images.get("dark", 0)
    theta = metadata(f, base + "theta")
    angles = _angles(path, theta if isinstance(theta, h5py.Dataset) else None, n)
    return TomoScan(name, "tdf", path, stamp, handles, datasets, major, np.arange(n), np.arange(nflat),
                    np.arange(ndark), angles, (n, rows, cols), **geometry)


def _numbers(path: str, d: h5py.Dataset | None, ndim: int, what: str) -> h5py.Dataset:
    """``d`` if it is an ``ndim``-D dataset of real numbers without an empty axis; 422 naming it otherwise."""
    if d is None or d.ndim != ndim or 0 in d.shape or d.dtype.kind not in "biuf":
        found = "missing" if d is None else f"{d.shape} {d.dtype}"
        raise Unprocessable(f"{os.path.basename(path)}: the {what} is not a {ndim}-D array of numbers ({found})")
    return d


def _angles(path: str, d: h5py.Dataset | None, images: int) -> np.ndarray | None:
    """Rotation angles, one per image, or None when the file has none."""
    if d is None:
        return None
    angles = np.asarray(_numbers(path, d, 1, d.name)[()], dtype=np.float64)
    if angles.size != images or not np.isfinite(angles).all():
        raise Unprocessable(f"{os.path.basename(path)}: {d.name} holds {angles.size} angles for {images} images, "
                            f"{np.count_nonzero(~np.isfinite(angles))} of them not finite")
    return angles

"""A scan: frames in acquisition order, its grid, detector geometry and identity.

Readers (``eiger``, ``hdf5``) build a :class:`Scan` from files; everything
downstream (routes, analyses, cache keys) sees only this class. Frames may be
spread over several files (``Segment``); the index is continuous across them.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import h5py
import numpy as np

from dada.errors import BadParameter, NotFound, Unprocessable
from dada.selection import GridShape, ScanGrid
from dada.sources.handles import HandleCache

# keV·Å: E = HC / λ
HC_KEV_ANGSTROM = 12.398419843320026


@dataclass(frozen=True)
class RecordedGeometry:
    """Detector geometry as recorded; any field may be unknown (None)."""

    beam_center_x: float | None = None  # pixels, along columns
    beam_center_y: float | None = None  # pixels, along rows
    x_pixel_size: float | None = None  # m
    y_pixel_size: float | None = None  # m
    detector_distance: float | None = None  # m
    wavelength: float | None = None  # Å
    count_time: float | None = None  # s
    saturation: float | None = None  # counts at or above this are invalid

    @property
    def energy(self) -> float | None:
        """Photon energy in keV, from the wavelength."""
        return HC_KEV_ANGSTROM / self.wavelength if self.wavelength else None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["energy"] = self.energy
        return d


@dataclass(frozen=True)
class FileStamp:
    path: str  # relative to the data root
    size: int
    mtime_ns: int
    real: str = field(default="", compare=False, repr=False)  # absolute path, to check it again quickly


@dataclass(frozen=True)
class Segment:
    """A run of consecutive frames stored in one dataset of one file."""

    path: str  # absolute path of the file
    dataset: str  # HDF5 path of the (n, H, W) dataset
    first: int  # index of its first frame in the scan
    count: int  # frames available in it
    stamp: FileStamp  # of the file, when the scan was opened


@dataclass
class Scan:
    """One scan's frames and metadata; cheap to keep, reads through a HandleCache."""

    name: str  # URL path below the data root
    kind: str  # "eiger" or "hdf5"
    segments: list[Segment]
    frame_shape: tuple[int, int]
    dtype: np.dtype
    expected_frames: int | None
    grid: ScanGrid | None
    geometry: RecordedGeometry
    stamps: tuple[FileStamp, ...]
    handles: HandleCache
    mask_source: tuple[str, str] | None = None  # (file, dataset) of the detector pixel mask
    missing_files: tuple[str, ...] = ()
    _starts: list[int] = field(init=False, repr=False)
    _mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._starts = [s.first for s in self.segments]

    @property
    def nframes(self) -> int:
        """Frames readable now (a scan being written has fewer than expected)."""
        return sum(s.count for s in self.segments)

    @property
    def complete(self) -> bool:
        if self.missing_files:
            return False
        if self.expected_frames is not None:
            return self.nframes >= self.expected_frames
        if self.grid is not None:
            return self.nframes >= self.grid.npoints
        return True

    @cached_property
    def identity(self) -> str:
        """Hash of the paths, sizes and mtimes of every file and of the datasets the frames are read from
        (the configuration's ``dataset_paths`` choose one): changes whenever the data can."""
        h = hashlib.sha256()
        for st in self.stamps:
            h.update(f"{st.path}\0{st.size}\0{st.mtime_ns}\n".encode())
        for s in self.segments:
            h.update(f"{s.dataset}\n".encode())
        return h.hexdigest()[:32]

    @property
    def frame_nbytes(self) -> int:
        return int(np.prod(self.frame_shape)) * self.dtype.itemsize

    # -- grid ---------------------------------------------------------------

    def grid_for(self, override: GridShape | None) -> ScanGrid:
        """The grid to use: ``grid=`` from the URL wins over metadata; 400 if neither exists."""
        total = self.expected_frames or self.nframes
        if override is not None:
            recorded = None if self.grid is None else f"{self.grid.vert}x{self.grid.horz}"
            if recorded is not None and str(override) != recorded:
                raise BadParameter("grid", f"{override} contradicts the scan's recorded grid {recorded}",
                                   f"{recorded} or no grid")
            if override.vert * override.horz != total:
                raise BadParameter(
                    "grid",
                    f"{override} has {override.vert * override.horz} points, the scan has {total} frames",
                    f"VxH with V*H = {total}",
                )
            base = self.grid or ScanGrid(override.vert, override.horz)
            return ScanGrid(override.vert, override.horz, base.fast_axis, base.snake)
        if self.grid is None:
            raise BadParameter(
                "grid",
                "this scan's files record no scan grid; say it in the URL",
                f"VxH with V*H = {total}, e.g. grid=1x{total}",
            )
        return self.grid

    # -- pixels -------------------------------------------------------------

    def bad_pixels(self) -> np.ndarray:
        """Boolean (H, W): True where the detector's pixel mask flags the pixel."""
        if self._mask is None:
            mask = np.zeros(self.frame_shape, dtype=bool)
            if self.mask_source is not None:
                path, name = self.mask_source
                dset = self.handles.get(path)[name]
                if dset.shape == self.frame_shape and dset.dtype.kind in "biuf":
                    mask = dset[()] != 0
            self._mask = mask
        return self._mask

    def check_frame(self, n: int, name: str = "n") -> None:
        if not 0 <= n < self.nframes:
            if self.expected_frames and n < self.expected_frames:
                raise NotFound(
                    f"frame {n} is not written yet: the scan is incomplete, "
                    f"{self.nframes} of {self.expected_frames} frames exist",
                    parameter=name,
                )
            raise BadParameter(name, f"frame {n} does not exist", f"an integer in [0, {self.nframes - 1}]")

    def segment_index(self, n: int) -> int:
        """Which segment holds frame ``n``."""
        return bisect.bisect_right(self._starts, n) - 1

    def read_frame(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``n`` in its stored dtype; a decode failure is a 422 naming the frame."""
        seg = self.segments[self.segment_index(n)]
        if out is None:
            out = np.empty(self.frame_shape, dtype=self.dtype)
        try:
            dset = self.handles.get(seg.path)[seg.dataset]
            dset.read_direct(out, np.s_[n - seg.first])
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise Unprocessable(
                f"frame {n} cannot be read from {os.path.basename(seg.path)}: {exc}", frame=n
            ) from None
        return out

    def describe(self) -> dict[str, Any]:
        """The metadata document served at /meta."""
        grid = None
        if self.grid is not None:
            g = self.grid
            grid = {"vert": g.vert, "horz": g.horz, "fast_axis": g.fast_axis, "snake": g.snake}
        return {
            "scan": self.name,
            "kind": self.kind,
            "complete": self.complete,
            "frames": {"available": self.nframes, "expected": self.expected_frames},
            "frame_shape": list(self.frame_shape),
            "dtype": self.dtype.name,
            "grid": grid,
            "geometry": self.geometry.as_dict(),
            "masked_pixels": int(self.bad_pixels().sum()),
            "files": [{"path": s.path, "size": s.size, "mtime_ns": s.mtime_ns} for s in self.stamps],
            "missing_files": list(self.missing_files),
            "identity": self.identity,
        }


# -- helpers shared by the readers ---------------------------------------------

GEOMETRY_PATHS: dict[str, tuple[str, ...]] = {
    "beam_center_x": ("entry/instrument/detector/beam_center_x",),
    "beam_center_y": ("entry/instrument/detector/beam_center_y",),
    "x_pixel_size": ("entry/instrument/detector/x_pixel_size",),
    "y_pixel_size": ("entry/instrument/detector/y_pixel_size",),
    "detector_distance": (
        "entry/instrument/detector/detector_distance",
        "entry/instrument/detector/detectorSpecific/detector_distance",
    ),
    "wavelength": (
        "entry/instrument/beam/incident_wavelength",
        "entry/instrument/monochromator/wavelength",
        "entry/instrument/detector/detectorSpecific/wavelength",
    ),
    "count_time": ("entry/instrument/detector/count_time",),
    "saturation": (
        "entry/instrument/detector/detectorSpecific/countrate_correction_count_cutoff",
        "entry/instrument/detector/saturation_value",
        "entry/instrument/detector/detectorSpecific/saturation_value",
    ),
}

MASK_PATHS = (
    "entry/instrument/detector/detectorSpecific/pixel_mask",
    "entry/instrument/detector/pixel_mask",
)


def local_get(group: h5py.Group, path: str, confine: Callable[[str], str | None] | None = None,
              depth: int = 0) -> h5py.Group | h5py.Dataset | None:
    """The object at ``path`` (None if absent), reached through hard and soft links only; 422 if the way leads
    out of the file (an external link) or the dataset's data lie outside it (external storage, or a virtual
    dataset whose sources ``confine`` does not place inside the data root; none without ``confine``)."""
    obj: Any = group
    where = f"{os.path.basename(group.file.filename)}:{path}"
    for part in (p for p in path.split("/") if p):
        link = obj.get(part, getlink=True) if isinstance(obj, h5py.Group) else None
        if link is None:
            return None
        if isinstance(link, h5py.SoftLink) and depth < 8:
            obj = local_get(obj.file if link.path.startswith("/") else obj, link.path, confine, depth + 1)
        elif isinstance(link, h5py.HardLink):
            obj = obj[part]
        else:
            raise Unprocessable(f"{where} leads out of the file (an external link) or round soft links")
        if obj is None:
            return None
    if isinstance(obj, h5py.Dataset) and not stored_inside(obj, confine):
        raise Unprocessable(f"{where} keeps its data outside the file and the data root")
    return obj


def stored_inside(dset: h5py.Dataset, confine: Callable[[str], str | None] | None) -> bool:
    if dset.external:
        return False
    if not dset.is_virtual:
        return True
    here = os.path.dirname(dset.file.filename)
    for source in dset.virtual_sources():
        name = source.file_name
        real = None if confine is None or "%" in name else confine(os.path.join(here, name))
        if name != "." and (real is None or not os.path.isfile(real)):
            return False
    return True


def metadata(f: h5py.File, path: str) -> h5py.Group | h5py.Dataset | None:
    """A metadata object kept in the file itself; anything linking elsewhere counts as absent."""
    try:
        return local_get(f, path)
    except Unprocessable:
        return None


def read_scalar(f: h5py.File, paths: tuple[str, ...]) -> float | None:
    for p in paths:
        obj = metadata(f, p)
        if isinstance(obj, h5py.Dataset) and obj.size == 1:
            try:
                return float(np.asarray(obj[()]).reshape(()))
            except (TypeError, ValueError, OSError):
                continue
    return None


def read_geometry(f: h5py.File) -> RecordedGeometry:
    return RecordedGeometry(**{k: read_scalar(f, paths) for k, paths in GEOMETRY_PATHS.items()})


def _text(obj: object, default: str) -> str:
    """A string dataset's value, or ``default`` if there is none."""
    if not isinstance(obj, h5py.Dataset):
        return default
    value = obj[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def read_grid(f: h5py.File) -> ScanGrid | None:
    """Our grid convention: ``/entry/scan/grid_shape`` = [V, H], optional ``fast_axis``, ``snake``."""
    shape = metadata(f, "entry/scan/grid_shape")
    if not isinstance(shape, h5py.Dataset):
        return None
    try:
        v, h = (int(x) for x in np.asarray(shape[()]).ravel()[:2])
        if v < 1 or h < 1:
            raise ValueError(f"{v}x{h}")
    except (TypeError, ValueError, OSError) as exc:
        raise Unprocessable(f"{os.path.basename(f.filename)}:/entry/scan/grid_shape is not two positive "
                            f"integers ({exc})") from None
    fast = _text(metadata(f, "entry/scan/fast_axis"), "horz")
    snake = metadata(f, "entry/scan/snake")
    snake = bool(np.asarray(snake[()]).ravel()[:1].any()) if isinstance(snake, h5py.Dataset) else False
    return ScanGrid(v, h, fast if fast in ("horz", "vert") else "horz", snake)


def find_mask(f: h5py.File, path: str) -> tuple[str, str] | None:
    for p in MASK_PATHS:
        if isinstance(metadata(f, p), h5py.Dataset):
            return (path, p)
    return None


def check_stack(dset: h5py.Dataset, like: tuple[tuple[int, ...], np.dtype] | None = None) -> None:
    """422 unless ``dset`` is a stack of frames the analyses take, of ``like``'s (frame shape, dtype) if given."""
    where = f"{os.path.basename(dset.file.filename)}:{dset.name}"
    dtype = dset.dtype
    if dset.ndim != 3:
        raise Unprocessable(f"{where} is not a stack of frames")
    if 0 in dset.shape[1:]:
        raise Unprocessable(f"{where} holds frames of shape {dset.shape[1:]}, without pixels")
    if not (dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize in (4, 8))):
        raise Unprocessable(f"{where} holds frames of {dtype}, not of integers, float32 or float64")
    if like is not None and (dset.shape[1:], dtype) != like:
        raise Unprocessable(f"{where} holds {dset.shape[1:]} {dtype} frames, unlike the scan's first "
                            f"{like[0]} {like[1]} ones")


def written_frames(dset: h5py.Dataset) -> int:
    """Frames that hold data: for a chunked dataset still being written, only written chunks count."""
    n = dset.shape[0]
    if dset.chunks is None:
        return n
    try:
        nchunks = dset.id.get_num_chunks()
    except (AttributeError, RuntimeError, OSError):
        return n
    per_row = int(np.prod([-(-s // c) for s, c in zip(dset.shape[1:], dset.chunks[1:], strict=True)]))
    return min(n, (nchunks // max(per_row, 1)) * dset.chunks[0])

"""The STXM engine: one fused pass over each frame feeds every requested channel.

Every STXM channel reduces a frame to sums over *bins* of pixels: the
darkfield annulus, the DPC disc, azimuthal sectors, radial shells. A channel
says which bin each pixel falls in (:meth:`Channel.bins`, -1 for none) and
turns the per-point bin moments into its maps (:meth:`Channel.finalize`); the
engine owns reading, decoding, threads and buffers.

Per frame and bin the engine accumulates the valid counts' sum and their
first moments about the beam centre (Σv, Σv·x, Σv·y) and the number of valid
pixels. Masked pixels (detector mask, user mask) are dropped from the pixel
maps once; counts at or above the cutoff are excluded per frame. Zero pixels
add nothing, which the kernel uses: sparse SAXS frames cost little beyond
their decoding.

Frames stored one per bitshuffle-LZ4 chunk take the direct path: raw chunk
read, then block-by-block decoding inside the kernel so each 8 KiB block is
processed while in L1 cache, and blocks outside the rows any channel needs
are skipped. Other layouts go through h5py. Points are split between
threads; each writes only its own points' rows (no shared accumulators).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numba
import numpy as np

from dada.analysis.decode import MAX_BLOCK_BYTES, chunk_layout, decode_block, read_header
from dada.errors import Unprocessable
from dada.params import Param
from dada.sources.scan import Scan

SUM, SX, SY = 0, 1, 2  # moment slots


@dataclass(frozen=True)
class Geometry:
    """What channels need to build pixel maps: frame shape, beam centre, validity, calibration."""

    shape: tuple[int, int]
    cx: float
    cy: float
    good: np.ndarray  # (H, W) bool: not masked by detector or user mask
    pixel_size: float | None  # m
    distance: float | None  # m
    wavelength: float | None  # Å

    def radius(self) -> np.ndarray:
        rows, cols = np.indices(self.shape, dtype=np.float64)
        return np.hypot(cols - self.cx, rows - self.cy)

    def angle(self) -> np.ndarray:
        """Azimuth in radians, [0, 2π), counted from +x (columns) towards +y (rows)."""
        rows, cols = np.indices(self.shape, dtype=np.float64)
        return np.mod(np.arctan2(rows - self.cy, cols - self.cx), 2 * np.pi)

    def r_limit(self) -> float:
        """Distance from the beam centre to the farthest frame corner: no radius lies beyond."""
        h, w = self.shape
        return float(max(np.hypot(x - self.cx, y - self.cy) for x in (-0.5, w - 0.5) for y in (-0.5, h - 0.5)))

    def r_inside(self) -> float:
        """Largest circle about the beam centre inside the frame (the default outer radius)."""
        h, w = self.shape
        return float(max(1.0, min(self.cx + 0.5, w - 0.5 - self.cx, self.cy + 0.5, h - 0.5 - self.cy)))


@dataclass(frozen=True)
class Bins:
    """A channel's pixel map: bin index per pixel (-1: none), how many bins, whether it needs Σv·x, Σv·y."""

    index: np.ndarray  # (H, W) int32
    count: int
    moments: bool = False


class Channel:
    """An STXM analysis: its parameters, its pixel bins and how bin moments become maps."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    doc: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    outputs: ClassVar[tuple[str, ...]]  # output names; the first is the default for single-array formats

    def check(self, geo: Geometry, args: dict[str, Any]) -> None:
        """Raise BadParameter for impossible parameters (before any frame is read)."""

    def bins(self, geo: Geometry, args: dict[str, Any]) -> Bins:
        raise NotImplementedError

    def output_shape(self, args: dict[str, Any], points: tuple[int, int]) -> dict[str, tuple[int, ...]]:
        """Shape of every output for a patch of ``points`` = (lines, points per line)."""
        return {name: points for name in self.outputs}

    def finalize(self, m: Moments, geo: Geometry, args: dict[str, Any], context: Any = None) -> dict[str, np.ndarray]:
        """Per-point outputs, flat over points (npoints last); ``context`` is :meth:`whole_scan`'s answer."""
        raise NotImplementedError

    def needs_whole_scan(self, args: dict[str, Any]) -> bool:
        """Whether a patch's answer depends on the whole scan (e.g. dpc's median reference)."""
        return False

    def whole_scan(self, m: Moments) -> Any:
        """Reduce the whole scan's moments to what finalize needs as context."""
        return None

    def plane(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> np.ndarray | None:
        """The 2-D view png and csv show of an output, or None when it has none."""
        a = arrays[output]
        return a if a.ndim == 2 else None

    def rgba(self, arrays: dict[str, np.ndarray], output: str, args: dict[str, Any]) -> np.ndarray | None:
        """A png rendering of the channel's own, when a colormap does not fit (e.g. orientation as hue)."""
        return None


@dataclass
class Moments:
    """Per point and bin: Σv, Σv·x, Σv·y (about the beam centre) and valid-pixel counts."""

    values: np.ndarray  # (npoints, nbins, 3) float64
    valid: np.ndarray  # (npoints, nbins) float64
    present: np.ndarray  # (npoints,) bool: frame existed

    def slice(self, lo: int, hi: int) -> Moments:
        return Moments(self.values[:, lo:hi], self.valid[:, lo:hi], self.present)


@dataclass(frozen=True)
class PixelMaps:
    """Every requested channel's bins fused into one table the kernel walks."""

    lut: np.ndarray  # (H*W, K) int32, global bin index per channel or -1
    moments: np.ndarray  # (K,) bool
    static_valid: np.ndarray  # (nbins,) float64 valid pixels per bin before per-frame exclusions
    offsets: tuple[int, ...]  # first global bin of each channel, plus the total at the end
    first: int  # first flat pixel any channel needs
    last: int  # one past the last


def fuse(bins: Sequence[Bins], geo: Geometry) -> PixelMaps:
    offsets = [0]
    cols = []
    for b in bins:
        idx = np.where(geo.good & (b.index >= 0), b.index + offsets[-1], -1).astype(np.int32).ravel()
        cols.append(idx)
        offsets.append(offsets[-1] + b.count)
    lut = np.ascontiguousarray(np.stack(cols, axis=1))
    used = np.flatnonzero((lut >= 0).any(axis=1))
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    static = np.bincount(lut[lut >= 0], minlength=offsets[-1]).astype(np.float64)
    return PixelMaps(lut, np.array([b.moments for b in bins]), static, tuple(offsets), first, last)


# -- kernels ----------------------------------------------------------------------------------------


@numba.njit(nogil=True, cache=True, inline="always")
def _add_pixels(frame, e0, e1, base, lut, mom, width, cx, cy, cutoff, values, sat):
    """Accumulate pixels e0..e1 of a frame span whose first element is pixel ``base``."""
    k_n = lut.shape[1]
    for e in range(e0, e1):
        v = frame[e]
        if v == 0:
            continue
        p = base + e
        if v >= cutoff:
            for k in range(k_n):
                b = lut[p, k]
                if b >= 0:
                    sat[b] += 1.0
            continue
        fv = np.float64(v)
        for k in range(k_n):
            b = lut[p, k]
            if b >= 0:
                values[b, 0] += fv
                if mom[k]:
                    values[b, 1] += fv * (p % width - cx)
                    values[b, 2] += fv * (p // width - cy)


@numba.njit(nogil=True, cache=True)
def accumulate_frame(frame, lut, mom, width, cx, cy, cutoff, first, last, values, sat):
    """A decoded frame (flat) into one point's bin moments."""
    _add_pixels(frame, first, last, 0, lut, mom, width, cx, cy, cutoff, values, sat)


@numba.njit(nogil=True, cache=True)
def accumulate_chunk(chunk, block_buf, scratch, lut, mom, width, cx, cy, cutoff, first, last, values, sat):
    """Decode a bitshuffle-LZ4 chunk block by block, accumulating each block while it is in cache.

    Only blocks overlapping pixels [first, last) are decoded. ``block_buf`` is a typed buffer of
    at least one block; returns False if the chunk is corrupt.
    """
    itemsize = block_buf.itemsize
    out_bytes = block_buf.view(np.uint8)
    if chunk.size < 12:
        return False
    total, block_bytes = read_header(chunk)
    n = lut.shape[0]
    if total != n * itemsize or block_bytes <= 0 or block_bytes % itemsize or block_bytes > out_bytes.size:
        return False
    block = block_bytes // itemsize
    pos = 12
    e = 0
    while n - e >= 8 and e < last:
        m = min(block, n - e)
        m -= m % 8
        if pos + 4 > chunk.size:
            return False
        clen = (np.int64(chunk[pos]) << 24) | (np.int64(chunk[pos + 1]) << 16) \
            | (np.int64(chunk[pos + 2]) << 8) | np.int64(chunk[pos + 3])
        pos += 4
        if e + m > first:
            if not decode_block(chunk, pos, clen, m * itemsize, scratch, out_bytes, itemsize):
                return False
            _add_pixels(block_buf, max(first - e, 0), min(last - e, m), e, lut, mom, width, cx, cy, cutoff,
                        values, sat)
        pos += clen
        e += m
    if e < last and e < n:  # the last n % 8 elements are stored raw
        rest = n - e
        if pos + rest * itemsize > chunk.size:
            return False
        out_bytes[: rest * itemsize] = chunk[pos:pos + rest * itemsize]
        _add_pixels(block_buf, max(first - e, 0), min(last - e, rest), e, lut, mom, width, cx, cy, cutoff,
                    values, sat)
    return True


# -- running a patch --------------------------------------------------------------------------------


class Engine:
    """Runs fused pixel maps over the frames of a patch on a pool of threads."""

    def __init__(self, threads: int = 2, pool: Executor | None = None) -> None:
        self.threads = max(1, threads)
        self.pool = pool or ThreadPoolExecutor(self.threads, thread_name_prefix="dada-engine")
        self._local = threading.local()

    def _buffers(self, frame_shape: tuple[int, int], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-thread reused buffers: first writes into fresh memory are slow on these machines."""
        key = (frame_shape, dtype.str)
        bufs = getattr(self._local, "bufs", None)
        if bufs is None or bufs[0] != key:
            frame = np.empty(frame_shape, dtype=dtype)
            block = np.empty(MAX_BLOCK_BYTES // dtype.itemsize, dtype=dtype)
            scratch = np.empty(MAX_BLOCK_BYTES, dtype=np.uint8)
            bufs = (key, frame, block, scratch)
            self._local.bufs = bufs
        return bufs[1], bufs[2], bufs[3]

    def run(self, scan: Scan, frames: np.ndarray, maps: PixelMaps, geo: Geometry) -> Moments:
        """Bin moments of every frame number in ``frames`` (flat); unwritten frames are marked absent."""
        frames = np.asarray(frames, dtype=np.int64).ravel()
        nb = maps.offsets[-1]
        values = np.zeros((frames.size, nb, 3), dtype=np.float64)
        sat = np.zeros((frames.size, nb), dtype=np.float64)
        present = frames < scan.nframes
        cutoff = scan.geometry.saturation
        cutoff = np.inf if cutoff is None else cutoff
        direct = {seg.path: chunk_layout(scan.handles.get(seg.path)[seg.dataset]).direct for seg in scan.segments}
        nthreads = min(self.threads, max(1, frames.size))
        jobs = [self.pool.submit(self._work, scan, frames, present, t, nthreads, maps, geo, cutoff, direct,
                                 values, sat) for t in range(nthreads)]
        for j in jobs:
            j.result()
        valid = maps.static_valid[None, :] - sat
        values[~present] = np.nan
        valid[~present] = np.nan
        return Moments(values, valid, present)

    def _work(self, scan, frames, present, t, nthreads, maps, geo, cutoff, direct, values, sat) -> None:
        frame_buf, block_buf, scratch = self._buffers(scan.frame_shape, scan.dtype)
        flat = frame_buf.reshape(-1)
        width = scan.frame_shape[1]
        for j in range(t, frames.size, nthreads):
            if not present[j]:
                continue
            n = int(frames[j])
            seg, dset, local = scan.locate(n)
            if direct[seg.path]:
                try:
                    _, raw = dset.id.read_direct_chunk((local, 0, 0))
                except (OSError, KeyError, ValueError) as exc:
                    raise Unprocessable(f"frame {n} cannot be read: {exc}", frame=n) from None
                ok = accumulate_chunk(np.frombuffer(raw, dtype=np.uint8), block_buf, scratch, maps.lut,
                                      maps.moments, width, geo.cx, geo.cy, cutoff, maps.first, maps.last,
                                      values[j], sat[j])
                if not ok:
                    raise Unprocessable(f"frame {n} is corrupt: its chunk does not decode", frame=n)
            else:
                scan.read_frame(n, frame_buf)
                accumulate_frame(flat, maps.lut, maps.moments, width, geo.cx, geo.cy, cutoff, maps.first,
                                 maps.last, values[j], sat[j])


def warm_up() -> None:
    """Compile the kernels for the common dtypes now, not during a user's first request."""
    import h5py
    import hdf5plugin

    lut = np.full((64, 1), -1, dtype=np.int32)
    lut[10:20, 0] = 0
    mom = np.array([True])
    scratch = np.empty(MAX_BLOCK_BYTES, dtype=np.uint8)
    for dt in (np.uint16, np.uint32, np.int32, np.float32, np.float64):
        frame = np.arange(64, dtype=dt)
        accumulate_frame(frame, lut, mom, 8, 3.5, 3.5, 1e9, 0, 64, np.zeros((1, 3)), np.zeros(1))
        if dt in (np.uint16, np.uint32):
            with h5py.File("warm.h5", "w", driver="core", backing_store=False) as f:
                d = f.create_dataset("d", data=frame.reshape(1, 8, 8), chunks=(1, 8, 8),
                                     **hdf5plugin.Bitshuffle(cname="lz4"))
                raw = np.frombuffer(d.id.read_direct_chunk((0, 0, 0))[1], dtype=np.uint8)
            accumulate_chunk(raw, np.empty(MAX_BLOCK_BYTES // frame.itemsize, dtype=dt), scratch, lut, mom, 8,
                             3.5, 3.5, 1e9, 0, 64, np.zeros((1, 3)), np.zeros(1))

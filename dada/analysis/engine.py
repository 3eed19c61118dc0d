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
from functools import cached_property
from typing import Any, ClassVar

import numba
import numpy as np

from dada.analysis.decode import MAX_BLOCK_BYTES, _untrans, chunk_layout, lz4_block, next_block, read_header
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

    @cached_property
    def _offsets(self) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(self.shape[0], dtype=np.float64)[:, None] - self.cy
        x = np.arange(self.shape[1], dtype=np.float64)[None, :] - self.cx
        return x, y

    @cached_property
    def _radius(self) -> np.ndarray:
        x, y = self._offsets
        return np.hypot(x, y)

    @cached_property
    def _angle(self) -> np.ndarray:
        x, y = self._offsets
        return np.mod(np.arctan2(y, x), 2 * np.pi)

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
    """Every requested channel's bins fused into pixel classes the kernel walks.

    A class is a distinct combination of bins (one per channel) that pixels fall in; the hot loop
    adds each pixel to its class only (one lookup, one add), and classes are spread into bins once
    per frame. Class 0 is "no bin anywhere".
    """

    cls: np.ndarray  # (H*W,) class per pixel: uint8/uint16/int32, the smallest that holds them (cache)
    cls_bins: np.ndarray  # (nclasses, K) int32 global bin per class and channel, or -1
    cls_mom: np.ndarray  # (nclasses,) bool: the class feeds a channel that needs Σv·x, Σv·y
    static_valid: np.ndarray  # (nbins,) float64 valid pixels per bin before per-frame exclusions
    offsets: tuple[int, ...]  # first global bin of each channel, plus the total at the end
    first: int  # first flat pixel any channel needs
    last: int  # one past the last

    @property
    def nclasses(self) -> int:
        return self.cls_bins.shape[0]


def fuse(bins: Sequence[Bins], geo: Geometry) -> PixelMaps:
    offsets = [0]
    cols = []
    for b in bins:
        idx = np.where(geo.good & (b.index >= 0), b.index + offsets[-1], -1).astype(np.int32).ravel()
        cols.append(idx)
        offsets.append(offsets[-1] + b.count)
    lut = np.stack(cols, axis=1)
    used = np.flatnonzero((lut >= 0).any(axis=1))
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    # One int64 key per pixel (mixed radix over the channels' bins, -1 -> 0), so classes come from a 1-D
    # unique: sorting rows with np.unique(axis=0) would take a second for a 1 Mpixel frame.
    key = np.zeros(lut.shape[0], dtype=np.int64)
    for k in range(len(bins)):
        key = key * (bins[k].count + 1) + (lut[:, k] - offsets[k] + 1) * (lut[:, k] >= 0)
    top = int(np.prod([b.count + 1 for b in bins], dtype=np.float64))
    if top <= 1 << 26:  # a dense table of keys: linear time, no sort
        seen = np.zeros(top, dtype=bool)
        seen[0] = True  # class 0 is "no bin anywhere", even when every pixel has one
        seen[key] = True
        keys = np.flatnonzero(seen)
        rank = np.cumsum(seen, dtype=np.int64) - 1
        cls = rank[key]
    else:
        keys, inverse = np.unique(np.concatenate([[0], key]), return_inverse=True)
        cls = inverse.ravel()[1:]
    cls = cls.astype(np.uint8 if keys.size <= 256 else np.uint16 if keys.size <= 65536 else np.int32)
    combos = np.empty((keys.size, len(bins)), dtype=np.int32)
    rest = keys.copy()
    for k in reversed(range(len(bins))):
        rest, digit = np.divmod(rest, bins[k].count + 1)
        combos[:, k] = np.where(digit > 0, digit - 1 + offsets[k], -1)
    mom = np.array([b.moments for b in bins])
    cls_mom = ((combos >= 0) & mom[None, :]).any(axis=1)
    static = np.bincount(lut[lut >= 0], minlength=offsets[-1]).astype(np.float64)
    return PixelMaps(cls, np.ascontiguousarray(combos, dtype=np.int32), cls_mom, static, tuple(offsets), first, last)


# -- kernels ----------------------------------------------------------------------------------------


@numba.njit(nogil=True, cache=True, inline="always")
def _pixel(v, p, cls, cls_mom, width, cx, cy, cutoff, acc, csat):
    """One pixel's count into its class (saturated ones only counted). Neighbours mostly share a
    class: four banks of accumulators break the add-store-load chain through one slot."""
    fv = np.float64(v)
    c = cls[p]
    if fv >= cutoff:
        csat[c] += 1.0
    else:
        acc[p & 3, c, 0] += fv
        if cls_mom[c]:
            acc[p & 3, c, 1] += fv * (p % width - cx)
            acc[p & 3, c, 2] += fv * (p // width - cy)


@numba.njit(nogil=True, cache=True, inline="always")
def _run(frame, e0, e1, base, cls, cls_mom, width, cx, cy, cutoff, acc, csat):
    """Pixels e0..e1, zeros included (they add nothing; a branch each costs more)."""
    for e in range(e0, e1):
        _pixel(frame[e], base + e, cls, cls_mom, width, cx, cy, cutoff, acc, csat)


@numba.njit(nogil=True, cache=True)
def _add_pixels(frame, e0, e1, base, cls, cls_mom, width, cx, cy, cutoff, acc, csat):
    """Accumulate pixels e0..e1 of a frame span whose first element is pixel ``base``.

    Sparse frames are mostly zeros: runs of 32 zero bytes are skipped with one test.
    """
    per = 8 // frame.itemsize  # pixels per 64-bit word
    if per < 1 or frame.size % per or (frame.ctypes.data % 8) or e1 - e0 < 8 * per:
        _run(frame, e0, e1, base, cls, cls_mom, width, cx, cy, cutoff, acc, csat)
        return
    words = frame.view(np.uint64)
    w = (e0 + per - 1) // per
    w1 = e1 // per
    _run(frame, e0, w * per, base, cls, cls_mom, width, cx, cy, cutoff, acc, csat)
    while w + 4 <= w1:
        if (words[w] | words[w + 1] | words[w + 2] | words[w + 3]) != 0:
            _run(frame, w * per, (w + 4) * per, base, cls, cls_mom, width, cx, cy, cutoff, acc, csat)
        w += 4
    _run(frame, w * per, e1, base, cls, cls_mom, width, cx, cy, cutoff, acc, csat)


POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.int64)
BIT_POSITIONS = np.array([[i for i in range(8) if b >> i & 1] + [0] * (8 - bin(b).count("1")) for b in range(256)],
                         dtype=np.int64)


@numba.njit(nogil=True, cache=True, inline="always")
def _or_planes(planes, out, n, count):
    """out[:n] = OR of ``count`` consecutive planes of n items each."""
    for k in range(n):
        out[k] = planes[k]
    for j in range(1, count):
        base = j * n
        for k in range(n):
            out[k] |= planes[base + k]


@numba.njit(nogil=True, cache=True)
def _decode_nonzero(chunk, pos, clen, m, scratch, out_bytes, itemsize, nonzero):
    """One block: LZ4 into bit planes, their OR into a bitmap of nonzero elements, then un-bitshuffle.

    Bitshuffle stores plane after plane, each ``m / 8`` bytes where bit i of byte k is element 8k+i,
    so the OR of the planes marks exactly the nonzero elements.
    """
    if not lz4_block(chunk, pos, clen, m * itemsize, scratch):
        return False
    plane = m // 8
    if plane % 8 == 0:  # whole 64-bit words per plane (every block but maybe the last)
        _or_planes(scratch.view(np.uint64), nonzero.view(np.uint64), plane // 8, 8 * itemsize)
    else:
        _or_planes(scratch, nonzero, plane, 8 * itemsize)
    return _untrans(scratch.ctypes.data, out_bytes.ctypes.data, m, itemsize) >= 0


@numba.njit(nogil=True, cache=True)
def _distribute(acc, csat, cls_bins, values, sat):
    """Spread the classes' sums into the channels' bins, and clear them for the next frame."""
    for c in range(1, cls_bins.shape[0]):
        s0 = acc[0, c, 0] + acc[1, c, 0] + acc[2, c, 0] + acc[3, c, 0]
        s1 = acc[0, c, 1] + acc[1, c, 1] + acc[2, c, 1] + acc[3, c, 1]
        s2 = acc[0, c, 2] + acc[1, c, 2] + acc[2, c, 2] + acc[3, c, 2]
        if s0 == 0.0 and csat[c] == 0.0:
            continue
        for k in range(cls_bins.shape[1]):
            b = cls_bins[c, k]
            if b >= 0:
                values[b, 0] += s0
                values[b, 1] += s1
                values[b, 2] += s2
                sat[b] += csat[c]
    acc[:] = 0.0
    csat[:] = 0.0


@numba.njit(nogil=True, cache=True)
def accumulate_frame(frame, cls, cls_mom, cls_bins, width, cx, cy, cutoff, first, last, acc, csat, values, sat):
    """A decoded frame (flat) into one point's bin moments."""
    _add_pixels(frame, first, last, 0, cls, cls_mom, width, cx, cy, cutoff, acc, csat)
    _distribute(acc, csat, cls_bins, values, sat)


@numba.njit(nogil=True, cache=True)
def accumulate_chunk(chunk, block_buf, scratch, cls, cls_mom, cls_bins, width, cx, cy, cutoff, first, last, acc,
                     csat, values, sat):
    """Decode a bitshuffle-LZ4 chunk block by block, accumulating each block while it is in cache.

    Only blocks overlapping pixels [first, last) are decoded, and of each block only the nonzero
    pixels are visited, found from the OR of its bit planes. ``block_buf`` is a typed buffer of at
    least one block; returns False if the chunk is corrupt.
    """
    itemsize = block_buf.itemsize
    out_bytes = block_buf.view(np.uint8)
    if chunk.size < 12:
        return False
    total, block_bytes = read_header(chunk)
    n = cls.shape[0]
    if total != n * itemsize or block_bytes <= 0 or block_bytes % itemsize or block_bytes > out_bytes.size:
        return False
    block = block_bytes // itemsize
    nonzero = np.empty(block // 64 + 2, dtype=np.uint64).view(np.uint8)  # one bit per element of a block
    pos = 12
    e = 0
    while n - e >= 8 and e < last:
        m, clen = next_block(chunk, pos, e, n, block)
        if clen < 0:
            return False
        pos += 4
        if e + m > first:
            if not _decode_nonzero(chunk, pos, clen, m, scratch, out_bytes, itemsize, nonzero):
                return False
            lo, hi = max(first - e, 0), min(last - e, m)
            for k in range(lo // 8, (hi + 7) // 8):
                bits = nonzero[k]
                if bits == 0:
                    continue
                for t in range(POPCOUNT[bits]):
                    i = 8 * k + BIT_POSITIONS[bits, t]
                    if lo <= i < hi:
                        _pixel(block_buf[i], e + i, cls, cls_mom, width, cx, cy, cutoff, acc, csat)
        pos += clen
        e += m
    if e < last and e < n:  # the last n % 8 elements are stored raw
        rest = n - e
        if pos + rest * itemsize > chunk.size:
            return False
        out_bytes[: rest * itemsize] = chunk[pos:pos + rest * itemsize]
        _add_pixels(block_buf, max(first - e, 0), min(last - e, rest), e, cls, cls_mom, width, cx, cy, cutoff,
                    acc, csat)
    _distribute(acc, csat, cls_bins, values, sat)
    return True


@numba.njit(nogil=True, cache=True)
def accumulate_chunks(buf, ends, rows, block_buf, scratch, cls, cls_mom, cls_bins, width, cx, cy, cutoff, first, last,
                      acc, csat, values, sat):
    """Several chunks (concatenated; ``ends`` their end offsets) into rows ``rows`` of values/sat.

    One call per batch keeps the interpreter and the GIL out of the per-frame path. Returns the
    position in the batch of the first corrupt chunk, or -1.
    """
    start = 0
    for b in range(ends.size):
        ok = accumulate_chunk(buf[start:ends[b]], block_buf, scratch, cls, cls_mom, cls_bins, width, cx, cy, cutoff,
                              first, last, acc, csat, values[rows[b]], sat[rows[b]])
        if not ok:
            return b
        start = ends[b]
    return -1


BATCH = 16  # frames per kernel call


# -- running a patch --------------------------------------------------------------------------------


class Engine:
    """Runs fused pixel maps over the frames of a patch on a pool of threads."""

    def __init__(self, threads: int = 2, pool: Executor | None = None) -> None:
        self.threads = max(1, threads)
        self.pool = pool or ThreadPoolExecutor(self.threads, thread_name_prefix="dada-engine")
        self._local = threading.local()

    def _buffers(self, frame_shape: tuple[int, int], dtype: np.dtype):
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
        # Datasets resolved once: an h5py lookup per frame costs as much as a tenth of the frame's decoding.
        dsets = [scan.handles.get(seg.path)[seg.dataset] for seg in scan.segments]
        direct = [chunk_layout(d).direct for d in dsets]
        nthreads = min(self.threads, max(1, frames.size))
        jobs = [self.pool.submit(self._work, scan, frames, present, t, nthreads, maps, geo, cutoff, dsets, direct,
                                 values, sat) for t in range(nthreads)]
        for j in jobs:
            j.result()
        valid = maps.static_valid[None, :] - sat
        values[~present] = np.nan
        valid[~present] = np.nan
        return Moments(values, valid, present)

    def _work(self, scan, frames, present, t, nthreads, maps, geo, cutoff, dsets, direct, values, sat) -> None:
        """Thread ``t``'s share: a contiguous run of points, read in batches and decoded in one kernel call each."""
        frame_buf, block_buf, scratch = self._buffers(scan.frame_shape, scan.dtype)
        flat = frame_buf.reshape(-1)
        acc = np.zeros((4, maps.nclasses, 3))
        csat = np.zeros(maps.nclasses)
        width = scan.frame_shape[1]
        lo, hi = frames.size * t // nthreads, frames.size * (t + 1) // nthreads
        batch: list[tuple[int, bytes]] = []

        def flush() -> None:
            if not batch:
                return
            rows = np.array([j for j, _ in batch], dtype=np.int64)
            ends = np.cumsum([len(raw) for _, raw in batch])
            buf = np.frombuffer(b"".join(raw for _, raw in batch), dtype=np.uint8)
            bad = accumulate_chunks(buf, ends, rows, block_buf, scratch, maps.cls, maps.cls_mom, maps.cls_bins, width,
                                    geo.cx, geo.cy, cutoff, maps.first, maps.last, acc, csat, values, sat)
            batch.clear()
            if bad >= 0:
                n = int(frames[rows[bad]])
                raise Unprocessable(f"frame {n} is corrupt: its chunk does not decode", frame=n)

        for j in range(lo, hi):
            if not present[j]:
                continue
            n = int(frames[j])
            i = scan.segment_index(n)
            if direct[i]:
                try:
                    _, raw = dsets[i].id.read_direct_chunk((n - scan.segments[i].first, 0, 0))
                except (OSError, KeyError, ValueError) as exc:
                    raise Unprocessable(f"frame {n} cannot be read: {exc}", frame=n) from None
                batch.append((j, raw))
                if len(batch) == BATCH:
                    flush()
            else:
                scan.read_frame(n, frame_buf)
                accumulate_frame(flat, maps.cls, maps.cls_mom, maps.cls_bins, width, geo.cx, geo.cy, cutoff,
                                 maps.first, maps.last, acc, csat, values[j], sat[j])
        flush()


def warm_up() -> None:
    """Compile the kernels for the common dtypes now, not during a user's first request."""
    import h5py
    import hdf5plugin

    index = np.full((8, 8), -1, dtype=np.int32)
    index[2:4] = 0
    geo = Geometry((8, 8), 3.5, 3.5, np.ones((8, 8), dtype=bool), None, None, None)
    maps = fuse([Bins(index, 1, moments=True)], geo)
    scratch = np.empty(MAX_BLOCK_BYTES, dtype=np.uint8)
    for dt in (np.uint16, np.uint32, np.int32, np.float32, np.float64):
        frame = np.arange(64, dtype=dt)
        args = (maps.cls, maps.cls_mom, maps.cls_bins, 8, 3.5, 3.5, 1e9, 0, 64, np.zeros((4, maps.nclasses, 3)),
                np.zeros(maps.nclasses), np.zeros((1, 3)), np.zeros(1))
        accumulate_frame(frame, *args)
        if dt in (np.uint16, np.uint32):
            with h5py.File("warm.h5", "w", driver="core", backing_store=False) as f:
                d = f.create_dataset("d", data=frame.reshape(1, 8, 8), chunks=(1, 8, 8),
                                     **hdf5plugin.Bitshuffle(cname="lz4"))
                raw = np.frombuffer(d.id.read_direct_chunk((0, 0, 0))[1], dtype=np.uint8)
            block = np.empty(MAX_BLOCK_BYTES // frame.itemsize, dtype=dt)
            accumulate_chunk(raw, block, scratch, *args)
            accumulate_chunks(raw, np.array([raw.size]), np.array([0]), block, scratch, *args[:-2],
                              np.zeros((1, 1, 3)), np.zeros((1, 1)))

"""Running the fused STXM kernels over the frames of a block, on a pool of threads.

Frames stored one per bitshuffle-LZ4 chunk take the direct path: raw chunk reads, decoded inside
the kernel — a batch of chunks read at once where the file's chunk index is known
(``chunkindex``), else one by one through HDF5. Other layouts go through h5py. Points are split
between threads; each writes only its own points' rows (no shared accumulators), the polar reduction's
too when the run computes it (each thread logs its saturated pixels apart).
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dada.errors import Unprocessable
from dada.sources.scan import Scan, Segment
from dada.stxm import polar
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Bins
from dada.stxm.chunkindex import chunk_index
from dada.stxm.decode import MAX_BLOCK_BYTES, chunk_layout
from dada.stxm.kernels import BATCH, BATCH_BYTES, Cells, accumulate_chunks, accumulate_frame
from dada.stxm.pixelmaps import PixelMaps, fuse
from dada.stxm.reducing import CellMap, Reduced, cell_map, fits_uint32, saturated_cells, with_cells
from dada.stxm.reduction import Spec


class Engine:
    """Runs fused pixel maps over the frames of a block on a pool of threads."""

    def __init__(self, threads: int = 2, pool: Executor | None = None) -> None:
        self.threads = max(1, threads)
        self.pool = pool or ThreadPoolExecutor(self.threads, thread_name_prefix="dada-engine")
        self._local = threading.local()

    def _buffers(self, frame_shape: tuple[int, int], dtype: np.dtype) -> tuple[np.ndarray, tuple]:
        """Per-thread reused buffers (a frame, and the kernels' ``bufs``): first writes into fresh memory
        are slow on these machines."""
        key = (frame_shape, dtype.str)
        held = getattr(self._local, "bufs", None)
        if held is None or held[0] != key:
            held = (key, np.empty(frame_shape, dtype=dtype), kernel_buffers(dtype))
            self._local.bufs = held
        return held[1], held[2]

    def run(self, scan: Scan, frames: np.ndarray, maps: PixelMaps, geo: BeamGeometry,
            cells: CellMap | None = None) -> Bulk:
        """Every bin's accumulators for every frame number in ``frames`` (flat); unwritten frames are NaN rows.
        With ``cells`` (the maps widened to them: ``reducing.with_cells``) the frames' polar reduction too."""
        frames = np.asarray(frames, dtype=np.int64).ravel()
        nb = maps.offsets[-1]
        values = maps.new_values(frames.size)
        sat = np.zeros((frames.size, nb), dtype=np.float64)
        present = frames < scan.nframes
        cutoff = scan.geometry.saturation
        cutoff = np.inf if cutoff is None else cutoff
        reduced = None if cells is None else new_reduced(frames.size, cells)
        # Datasets and chunk indexes resolved once: an h5py lookup per frame costs as much as a tenth of
        # the frame's decoding, a chunk read through HDF5 as much as a small frame's whole analysis.
        files = _Files(scan)
        nthreads = min(self.threads, max(1, frames.size))
        shares = [self.pool.submit(self._work, scan, frames, present, t, nthreads, maps, cutoff, files, values, sat,
                                   CellShare(cells, reduced, geo.shape[1]))
                  for t in range(nthreads)]
        done = [share.result() for share in shares]
        valid = maps.static_valid[None, :] - sat
        # The kernels sum v, v·col and v·row: integers for integer frames, so exact whatever the order of
        # addition (threads, blocks, which channels share the pass). Moments about the beam centre follow.
        if maps.kernel.mom_cols:
            values[..., 1] -= geo.cx * values[..., 0]
            values[..., 2] -= geo.cy * values[..., 0]
        values[~present] = np.nan
        valid[~present] = np.nan
        if reduced is not None:
            reduced.saturated = saturated_cells([s.log() for s in done], cells.spec.cells)
            reduced.exact = fits_uint32(reduced.radial) and not any(s.cells.state[1] for s in done)
        return Bulk(values, valid, present, reduced)

    def _work(self, scan, frames, present, t, nthreads, maps, cutoff, files, values, sat, share) -> CellShare:
        """Thread ``t``'s share: a contiguous run of points, segment by segment, in batches that each take
        one kernel call (and, where the chunk index allows, one read)."""
        frame_buf, bufs = self._buffers(scan.frame_shape, scan.dtype)
        acc = maps.new_acc()
        lo, hi = frames.size * t // nthreads, frames.size * (t + 1) // nthreads
        rows = lo + np.flatnonzero(present[lo:hi])
        if not rows.size:
            return share
        firsts = np.array([seg.first for seg in scan.segments], dtype=np.int64)
        seg = np.searchsorted(firsts, frames[rows], side="right") - 1
        cuts = np.flatnonzero(np.diff(seg)) + 1
        for run in np.split(np.arange(rows.size), cuts):
            f = files.get(int(seg[run[0]]))
            r = rows[run]
            local = frames[r] - f.seg.first
            if f.index is not None and (f.index.offsets[local] >= 0).all():
                self._batches(scan, f, r, local, bufs, maps, cutoff, acc, values, sat, share)
            elif f.direct:
                self._one_by_one(scan, f, r, local, bufs, maps, cutoff, acc, values, sat, share)
            else:
                flat = frame_buf.reshape(-1)
                for j, n in zip(r.tolist(), frames[r].tolist(), strict=True):
                    scan.read_frame(n, frame_buf)
                    while not accumulate_frame(flat, maps.kernel, cutoff, acc, values[j], sat[j], share.cells, j):
                        share.grow()
        return share

    def _batches(self, scan, f, rows, local, bufs, maps, cutoff, acc, values, sat, share) -> None:
        """Frames whose chunks the index places: read in runs of about BATCH_BYTES, one kernel call each.
        Frames are taken in file order (a snake scan's lines run backwards), so runs stay runs."""
        order = np.argsort(local, kind="stable")
        rows, local = rows[order], local[order]
        ends = np.cumsum(f.index.sizes[local])
        cut = np.searchsorted(ends, np.arange(BATCH_BYTES, int(ends[-1]), BATCH_BYTES))
        for part in np.split(np.arange(rows.size), np.unique(cut[(cut > 0) & (cut < rows.size)])):
            try:
                self._local.raw, starts, stops = f.index.read(local[part], self._raw())
            except OSError as exc:
                n = int(local[part[0]] + f.seg.first)
                raise Unprocessable(f"frames from {n} cannot be read: {exc}", frame=n) from None
            bad = share.chunks(self._local.raw, starts, stops, rows[part], bufs, maps.kernel, cutoff, acc, values, sat)
            if bad >= 0:
                _corrupt(int(local[part[bad]] + f.seg.first))

    def _raw(self) -> np.ndarray:
        raw = getattr(self._local, "raw", None)
        return raw if raw is not None else np.empty(BATCH_BYTES, dtype=np.uint8)

    def _one_by_one(self, scan, f, rows, local, bufs, maps, cutoff, acc, values, sat, share) -> None:
        """Chunks asked of HDF5 one at a time (no usable index), decoded BATCH at a time."""
        for part in np.split(np.arange(rows.size), np.arange(BATCH, rows.size, BATCH)):
            raws = []
            for i in local[part].tolist():
                try:
                    raws.append(f.dset.id.read_direct_chunk((i, 0, 0))[1])
                except (OSError, KeyError, ValueError) as exc:
                    n = i + f.seg.first
                    raise Unprocessable(f"frame {n} cannot be read: {exc}", frame=n) from None
            sizes = np.array([len(raw) for raw in raws], dtype=np.int64)
            ends = np.cumsum(sizes)
            buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
            bad = share.chunks(buf, ends - sizes, ends, rows[part], bufs, maps.kernel, cutoff, acc, values, sat)
            if bad >= 0:
                _corrupt(int(local[part[bad]] + f.seg.first))


@dataclass
class Bulk:
    """What a run computed, per point and global bin: the kernels' slots (Σv, Σv·x, Σv·y about the beam
    centre[, max, Σv²]) and valid-pixel counts; ``partials`` cuts it into each channel's named arrays."""

    values: np.ndarray  # (npoints, nbins, slots) float64
    valid: np.ndarray  # (npoints, nbins) float64
    present: np.ndarray  # (npoints,) bool
    reduced: Reduced | None = None  # the polar reduction, when the run computed it


def new_reduced(n: int, cells: CellMap) -> Reduced:
    """Zeroed reduction arrays for ``n`` points (the kernels add into them)."""
    spec = cells.spec
    return Reduced(np.zeros((n, spec.cells), dtype=np.uint32), np.zeros((n, spec.nr, 3), dtype=np.int64),
                   np.zeros((3, 0), dtype=np.int64), True)


class CellShare:
    """A thread's part of the reduction: the kernels' ``Cells`` with its own log of saturated pixels (grown
    when a frame might not fit), or None when the run does not reduce."""

    def __init__(self, cells: CellMap | None, reduced: Reduced | None, width: int) -> None:
        self.cells = None if cells is None else Cells(
            cells.table, cells.shift, cells.spec.ns, width, 1.0 / width, reduced.counts, reduced.radial,
            np.empty((max(2 * cells.pixels, 4096), 2), dtype=np.int32), np.zeros(2, dtype=np.int64), cells.pixels)

    def grow(self) -> None:
        old = self.cells.log
        log = np.empty((2 * old.shape[0] + self.cells.room, 2), dtype=np.int32)
        log[:old.shape[0]] = old
        self.cells = self.cells._replace(log=log)

    def log(self) -> np.ndarray:
        return self.cells.log[:self.cells.state[0]]

    def chunks(self, buf, starts, stops, rows, *args) -> int:
        """``accumulate_chunks`` through, the log grown whenever it lacks room: the first corrupt chunk, or -1."""
        done = 0
        while True:
            got = accumulate_chunks(buf, starts[done:], stops[done:], rows[done:], *args, self.cells)
            if got >= -1:
                return got + done if got >= 0 else -1
            done += -2 - got
            self.grow()


class _Files:
    """The segments a run touches, resolved once per run and only those (a scan may have hundreds of
    files; a block reads one or two)."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self._got: dict[int, _File] = {}
        self._lock = threading.Lock()

    def get(self, i: int) -> _File:
        with self._lock:
            f = self._got.get(i)
            if f is None:
                seg = self.scan.segments[i]
                f = self._got[i] = _File(self.scan.handles.get(seg.path)[seg.dataset], seg)
            return f


class _File:
    """A segment's dataset, whether its frames take the direct path, and its chunk index if usable."""

    def __init__(self, dset, seg: Segment) -> None:
        self.dset, self.seg = dset, seg
        self.direct = chunk_layout(dset).direct
        self.index = chunk_index(dset, seg) if self.direct else None


def _corrupt(n: int) -> None:
    raise Unprocessable(f"frame {n} is corrupt: its chunk does not decode", frame=n)


def kernel_buffers(dtype: np.dtype) -> tuple:
    """The kernels' ``bufs`` for frames of ``dtype``: one block, LZ4 scratch, two plane-word rows."""
    words = MAX_BLOCK_BYTES // 64
    return (np.empty(MAX_BLOCK_BYTES // dtype.itemsize, dtype=dtype), np.empty(MAX_BLOCK_BYTES, dtype=np.uint8),
            np.empty(words, dtype=np.uint64), np.empty(words, dtype=np.uint64))


def warm_up() -> None:
    """Compile the kernels now, not during a user's first request: frames of the common dtypes, with pixel
    classes as uint8 (one channel) and as uint16 (channels fused), with and without a maximum and Σv², with
    the polar reduction (a whole-scan /stxm of the four channels); and the passes that build a new geometry's
    pixel maps (radius, azimuth, the built-in bins, fusing them with a dense key table and with a sort)."""
    import h5py
    import hdf5plugin

    shape = (32, 32)
    geo = BeamGeometry(shape, 15.5, 15.5, np.ones(shape, dtype=bool), None, None, None)
    r = geo.radius()
    built_in = [Bins(polar.rings(r, (-np.inf, 4.0, 9.0), (1, 0)), 2),
                Bins(polar.sectors(r, geo.cx, geo.cy, 4.0, 9.0, 8), 8)]
    geo.angle()  # the azimuth as a whole frame, for plug-in channels that ask for it
    for wide in (2, 3):  # keys as int32, as int64 (and sorted)
        fuse([*built_in, *[Bins(polar.shells(r, 0.0, 20.0, 499), 499)] * wide], [("sum",)] * (2 + wide), geo)
    band = np.full(shape, -1, dtype=np.int32)
    band[4:8] = 0
    many = (np.arange(shape[0] * shape[1], dtype=np.int32) % 300).reshape(shape)
    both = fuse([Bins(band, 1), Bins(many, 300)], [("sum", "sx", "sy"), ("sum",)], geo)
    cells = cell_map(geo, Spec(1, 15))
    for maps, reducing in ((fuse([Bins(band, 1)], [("sum", "sx", "sy")], geo), None), (both, None),
                           (with_cells(both, cells), cells),
                           (fuse([Bins(band, 1), Bins(many, 300)], [("max", "sq"), ("sum",)], geo), None)):
        acc, values, sat = maps.new_acc(), maps.new_values(1), np.zeros((1, maps.offsets[-1]))
        share = CellShare(reducing, None if reducing is None else new_reduced(1, reducing), shape[1])
        for dt in (np.uint16, np.uint32, np.int32, np.float32, np.float64):
            frame = (np.arange(shape[0] * shape[1]) % 7).astype(dt)
            accumulate_frame(frame, maps.kernel, 1e9, acc, values[0], sat[0], share.cells, 0)
            if dt in (np.uint16, np.uint32):
                with h5py.File("warm.h5", "w", driver="core", backing_store=False) as f:
                    d = f.create_dataset("d", data=frame.reshape(1, *shape), chunks=(1, *shape),
                                         **hdf5plugin.Bitshuffle(cname="lz4"))
                    raw = np.frombuffer(d.id.read_direct_chunk((0, 0, 0))[1], dtype=np.uint8)
                share.chunks(raw, np.array([0]), np.array([raw.size]), np.array([0]), kernel_buffers(np.dtype(dt)),
                             maps.kernel, 1e9, acc, values, sat)

"""Running the fused STXM kernels over the frames of a patch, on a pool of threads.

Frames stored one per bitshuffle-LZ4 chunk take the direct path: raw chunk reads, decoded inside
the kernel. Other layouts go through h5py. Points are split between threads; each writes only its
own points' rows (no shared accumulators).
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np

from dada.errors import Unprocessable
from dada.sources.scan import Scan
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import SUM, SX, SY, Bins, Moments
from dada.stxm.decode import MAX_BLOCK_BYTES, chunk_layout
from dada.stxm.kernels import BATCH, accumulate_chunks, accumulate_frame
from dada.stxm.pixelmaps import PixelMaps, fuse


class Engine:
    """Runs fused pixel maps over the frames of a patch on a pool of threads."""

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

    def run(self, scan: Scan, frames: np.ndarray, maps: PixelMaps, geo: BeamGeometry) -> Moments:
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
        # The kernels sum v, v·col and v·row: integers for integer frames, so exact whatever the order of
        # addition (threads, blocks, which channels share the pass). Moments about the beam centre follow.
        values[..., SX] -= geo.cx * values[..., SUM]
        values[..., SY] -= geo.cy * values[..., SUM]
        values[~present] = np.nan
        valid[~present] = np.nan
        return Moments(values, valid, present)

    def _work(self, scan, frames, present, t, nthreads, maps, geo, cutoff, dsets, direct, values, sat) -> None:
        """Thread ``t``'s share: a contiguous run of points, read in batches and decoded in one kernel call each."""
        frame_buf, bufs = self._buffers(scan.frame_shape, scan.dtype)
        flat = frame_buf.reshape(-1)
        acc = np.zeros((maps.nclasses, 4))
        kmaps = maps.kernel
        lo, hi = frames.size * t // nthreads, frames.size * (t + 1) // nthreads
        batch: list[tuple[int, bytes]] = []

        def flush() -> None:
            if not batch:
                return
            rows = np.array([j for j, _ in batch], dtype=np.int64)
            ends = np.cumsum([len(raw) for _, raw in batch])
            buf = np.frombuffer(b"".join(raw for _, raw in batch), dtype=np.uint8)
            bad = accumulate_chunks(buf, ends, rows, bufs, kmaps, cutoff, acc, values, sat)
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
                accumulate_frame(flat, kmaps, cutoff, acc, values[j], sat[j])
        flush()


def kernel_buffers(dtype: np.dtype) -> tuple:
    """The kernels' ``bufs`` for frames of ``dtype``: one block, LZ4 scratch, two plane-word rows."""
    words = MAX_BLOCK_BYTES // 64
    return (np.empty(MAX_BLOCK_BYTES // dtype.itemsize, dtype=dtype), np.empty(MAX_BLOCK_BYTES, dtype=np.uint8),
            np.empty(words, dtype=np.uint64), np.empty(words, dtype=np.uint64))


def warm_up() -> None:
    """Compile the kernels now, not during a user's first request: frames of the common dtypes, with pixel
    classes as uint8 (one channel) and as uint16 (channels fused)."""
    import h5py
    import hdf5plugin

    shape = (32, 32)
    geo = BeamGeometry(shape, 15.5, 15.5, np.ones(shape, dtype=bool), None, None, None)
    band = np.full(shape, -1, dtype=np.int32)
    band[4:8] = 0
    many = (np.arange(shape[0] * shape[1], dtype=np.int32) % 300).reshape(shape)
    for maps in (fuse([Bins(band, 1, moments=True)], geo), fuse([Bins(band, 1, moments=True), Bins(many, 300)], geo)):
        acc, nb = np.zeros((maps.nclasses, 4)), maps.offsets[-1]
        values, sat = np.zeros((1, nb, 3)), np.zeros((1, nb))
        for dt in (np.uint16, np.uint32, np.int32, np.float32, np.float64):
            frame = (np.arange(shape[0] * shape[1]) % 7).astype(dt)
            accumulate_frame(frame, maps.kernel, 1e9, acc, values[0], sat[0])
            if dt in (np.uint16, np.uint32):
                with h5py.File("warm.h5", "w", driver="core", backing_store=False) as f:
                    d = f.create_dataset("d", data=frame.reshape(1, *shape), chunks=(1, *shape),
                                         **hdf5plugin.Bitshuffle(cname="lz4"))
                    raw = np.frombuffer(d.id.read_direct_chunk((0, 0, 0))[1], dtype=np.uint8)
                accumulate_chunks(raw, np.array([raw.size]), np.array([0]), kernel_buffers(np.dtype(dt)),
                                  maps.kernel, 1e9, acc, values, sat)

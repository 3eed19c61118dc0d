"""Where each frame's chunk lies in its file, read once per file: a batch of frames is then one read.

Asking HDF5 for one chunk at a time (``read_direct_chunk``) costs 3-6 µs of interpreter time per
frame, as much as analysing a 64x64 frame. The chunk index (``H5Dchunk_iter``: every chunk's file
offset and size in one call) is read once per file state (path, size, mtime), so a batch of frames
stored one after another in the file is a single ``pread``, handed whole to the kernels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from dada.memo import Memo
from dada.sources.scan import Segment

INDEXES = Memo(512)


@dataclass(frozen=True)
class ChunkIndex:
    """File offset and size of each frame's chunk in one file (-1: not a plain stored chunk)."""

    path: str
    offsets: np.ndarray  # int64, per frame of the dataset
    sizes: np.ndarray  # int64

    def read(self, local: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The chunks of frames ``local`` (dataset indices, ascending) read into ``out`` (uint8, grown if
        small): (buffer, starts, ends) with chunk j at buffer[starts[j]:ends[j]]. Runs stored back to back
        are one read each."""
        off, size = self.offsets[local], self.sizes[local]
        gaps = np.flatnonzero(off[1:] != off[:-1] + size[:-1]) + 1  # a new read where the file jumps
        firsts = np.concatenate([[0], gaps])
        lasts = np.concatenate([gaps, [local.size]])
        spans = off[lasts - 1] + size[lasts - 1] - off[firsts]
        total = int(spans.sum())
        if out.size < total:
            out = np.empty(max(total, 2 * out.size), dtype=np.uint8)
        starts = np.empty(local.size, dtype=np.int64)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            at = 0
            view = memoryview(out)
            for a, b, span in zip(firsts.tolist(), lasts.tolist(), spans.tolist(), strict=True):
                if os.preadv(fd, [view[at:at + span]], int(off[a])) != span:
                    raise OSError(f"{self.path}: short read at {int(off[a])}")
                starts[a:b] = at + (off[a:b] - off[a])
                at += span
        finally:
            os.close(fd)
        return out, starts, starts + size


def chunk_index(dset: h5py.Dataset, seg: Segment) -> ChunkIndex | None:
    """The index of ``dset`` (one frame per chunk) as its file is now, or None where plain reads would not
    give HDF5's bytes (a chunk stored with a filter skipped, an address the check below refutes)."""
    key = (seg.path, seg.dataset, seg.stamp)
    return INDEXES.get(key, lambda: _build(dset))


def _build(dset: h5py.Dataset) -> ChunkIndex | None:
    n = dset.shape[0]
    offsets = np.full(n, -1, dtype=np.int64)
    sizes = np.zeros(n, dtype=np.int64)
    skipped = []

    def visit(info) -> None:
        if info.filter_mask:
            skipped.append(info.chunk_offset[0])
        offsets[info.chunk_offset[0]] = info.byte_offset
        sizes[info.chunk_offset[0]] = info.size

    try:
        dset.id.chunk_iter(visit)
    except (AttributeError, RuntimeError, ValueError, OSError):
        return None
    stored = np.flatnonzero(offsets >= 0)
    if skipped or not stored.size:
        return None
    index = ChunkIndex(dset.file.filename, offsets, sizes)
    # One read checked against HDF5's own: addresses are the file's (a user block would shift them).
    first = stored[:1]
    buf, starts, ends = index.read(first, np.empty(int(sizes[first[0]]), dtype=np.uint8))
    if bytes(buf[starts[0]:ends[0]]) != dset.id.read_direct_chunk((int(first[0]), 0, 0))[1]:
        return None
    return index

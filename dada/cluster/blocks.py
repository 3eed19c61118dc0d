"""The fixed block grid of a scan: runs of frames in acquisition order, the unit of work and of caching.

Blocks, not requests, are the unit of work and of caching: a block's frames are contiguous in the
files, overlapping requests share blocks, and a scan being written finishes its early blocks first.

The grid belongs to the data, not to the machine: frames per block follow from the frame's size
alone (``BLOCK_BYTES`` of raw pixels, a power of two of frames), so the same scan cuts the same way
on every machine, after every restart and in every cluster, and a persistent cache (disk,
Aerospike) written by one cluster is read by another. A block may span two data files; its
identity covers every file it reads. (``block_frames`` in the configuration overrides the size for
a whole cluster; clusters sharing a cache must agree on it, as the size is part of every block key.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dada.sources.scan import Scan

# At least 32 frames: a block's round trip and the front's bookkeeping (~2 ms of its CPU per block) stay
# small against its work even on Eiger 4M frames (8 frames were 18 ms of a core's work).
MIN_FRAMES, MAX_FRAMES = 32, 8192
# Raw pixel bytes per block: about a fifth of a second of one core's fused pass on sparse frames,
# small enough that a scan spreads over many nodes (and a node's share of a short scan evens out),
# large enough that its round trip stays small against its work. Changing either changes every block
# key: a format decision.
BLOCK_BYTES = 256 * 2**20


def block_frames(frame_nbytes: int) -> int:
    """Frames per block for frames of ``frame_nbytes`` raw bytes: a power of two between MIN_FRAMES and
    MAX_FRAMES. (When a request has fewer missing blocks than nodes, the front sends them in pieces.)"""
    n = max(1, BLOCK_BYTES // max(1, frame_nbytes))
    return int(min(MAX_FRAMES, max(MIN_FRAMES, 1 << (n.bit_length() - 1))))


@dataclass(frozen=True)
class Block:
    index: int
    first: int  # first frame
    stop: int  # one past the last frame
    complete: bool  # every frame is written: its result is final and may be cached
    identity: str  # of exactly the files its frames and metadata come from


def blocks_of(scan: Scan, frames: np.ndarray, size: int) -> tuple[list[Block], list[np.ndarray]]:
    """The blocks holding ``frames`` (flat), and for each block the positions in ``frames`` of its frames
    (in the order ``frames`` gives them)."""
    index = frames // size
    steps = np.diff(index)
    if (steps >= 0).all():  # frames in scan order (a raster selection): runs, no sort
        cuts = np.flatnonzero(steps) + 1
        ids = index[np.concatenate([[0], cuts])] if index.size else index
        groups = np.split(np.arange(index.size), cuts)
    else:
        ids, where = np.unique(index, return_inverse=True)
        groups = np.split(np.argsort(where, kind="stable"), np.cumsum(np.bincount(where, minlength=ids.size))[:-1])
    total = max(scan.nframes, scan.expected_frames or 0, int(frames.max(initial=-1)) + 1)
    out = []
    for b in ids.tolist():
        first, stop = b * size, min((b + 1) * size, total)
        out.append(Block(b, first, stop, stop <= scan.nframes, block_identity(scan, first, stop)))
    return out, groups


def block_identity(scan: Scan, first: int, stop: int) -> str:
    """Hash of the scan's name, its master file and the data files (and datasets) holding frames first..stop.

    A data file that is complete no longer changes, so blocks in it keep their identity while later
    files of a running scan are still written; any change to the files a block reads changes it.
    """
    h = hashlib.sha256(scan.name.encode())
    held = [s for s in scan.segments if s.first < stop and s.first + s.count > first]
    for st in dict.fromkeys([scan.stamps[0]] + [s.stamp for s in held]):
        h.update(f"\0{st.path}\0{st.size}\0{st.mtime_ns}".encode())
    for s in held:
        h.update(f"\0{s.dataset}".encode())
    return h.hexdigest()[:32]

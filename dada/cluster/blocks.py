"""The fixed block grid of a scan: runs of frames in acquisition order that a node computes in about a second.

Blocks, not requests, are the unit of work and of caching: a block's frames are contiguous in the
files, overlapping requests share blocks, and a scan being written finishes its early blocks first.
The block size depends only on the frame size and the node rate, rounded to a power of two, so the
same request always cuts into the same blocks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dada.sources.scan import Scan

MIN_FRAMES, MAX_FRAMES = 8, 8192


def block_frames(frame_nbytes: int, node_rate: float, seconds: float = 1.0) -> int:
    """Frames per block: what a node reads in ``seconds`` at ``node_rate`` raw bytes/s, a power of two.
    (When a request has fewer missing blocks than nodes, the front sends them in pieces.)"""
    n = max(1.0, node_rate * seconds / max(1, frame_nbytes))
    return int(min(MAX_FRAMES, max(MIN_FRAMES, 1 << int(np.log2(n)))))


@dataclass(frozen=True)
class Block:
    index: int
    first: int  # first frame
    stop: int  # one past the last frame
    complete: bool  # every frame is written: its result is final and may be cached
    identity: str  # of exactly the files its frames and metadata come from


def blocks_of(scan: Scan, frames: np.ndarray, size: int) -> tuple[list[Block], np.ndarray]:
    """The blocks holding ``frames`` (flat), and for each frame the position of its block in that list."""
    index = frames // size
    ids, where = np.unique(index, return_inverse=True)
    total = max(scan.nframes, scan.expected_frames or 0, int(frames.max(initial=-1)) + 1)
    out = []
    for b in ids.tolist():
        first, stop = b * size, min((b + 1) * size, total)
        out.append(Block(b, first, stop, stop <= scan.nframes, block_identity(scan, first, stop)))
    return out, where


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

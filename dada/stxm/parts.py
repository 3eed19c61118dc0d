"""Run a nogil numba kernel over contiguous parts of a range, one part per core of the node.

Building a new geometry's pixel maps touches every pixel of the frame several times (radius, angle,
each channel's bins, the fused classes): on a 4 Mpixel detector that is the whole wait of the first
request after a parameter changes, so it takes the node's cores, as the engine does for frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

THREADS = max(1, min(4, len(os.sched_getaffinity(0))))
_POOL = ThreadPoolExecutor(THREADS, thread_name_prefix="dada-maps") if THREADS > 1 else None


def bounds(n: int, parts: int = THREADS, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` contiguous (lo, hi) ranges covering 0..n, every cut a multiple of ``align``."""
    cuts = [min(n, (n * k // parts) // align * align) for k in range(parts)] + [n]
    return [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]


def in_parts(kernel: Callable[..., object], n: int, *args: object, align: int = 1, per: int = 1) -> list[object]:
    """``kernel(*args, lo, hi)`` for each part of 0..n (of ``per`` pixels each: rows), on the pool's threads
    (the kernels release the GIL); their answers in order."""
    spans = bounds(n, THREADS, align)
    if _POOL is None or n * per < 1 << 16:  # a small frame is not worth a thread hop
        return [kernel(*args, lo, hi) for lo, hi in spans]
    return [f.result() for f in [_POOL.submit(kernel, *args, lo, hi) for lo, hi in spans]]

"""Run a nogil numba kernel over contiguous parts of a range, one part per core of the node.

Building a new geometry's pixel maps touches every pixel of the frame several times (radius, angle,
each channel's bins, the fused classes): on a 4 Mpixel detector that is the whole wait of the first
request after a parameter changes, so it takes the node's cores, as the engine does for frames.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

THREADS = max(1, min(4, len(os.sched_getaffinity(0))))
_POOLS: dict[int, ThreadPoolExecutor] = {}  # by process: a forked child gets its own (its parent's threads are gone)


_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    with _LOCK:
        pid = os.getpid()
        if pid not in _POOLS:
            _POOLS.clear()
            _POOLS[pid] = ThreadPoolExecutor(THREADS, thread_name_prefix="dada-maps")
        return _POOLS[pid]


def bounds(n: int, parts: int = THREADS, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` contiguous (lo, hi) ranges covering 0..n, every cut a multiple of ``align``."""
    cuts = [min(n, (n * k // parts) // align * align) for k in range(parts)] + [n]
    return [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]


def in_parts(kernel: Callable[..., object], n: int, *args: object, align: int = 1, per: int = 1) -> list[object]:
    """``kernel(*args, lo, hi)`` for each part of 0..n (of ``per`` pixels each: rows), on the pool's threads
    (the kernels release the GIL); their answers in order."""
    spans = bounds(n, THREADS, align)
    if THREADS == 1 or n * per < 1 << 16:  # a small frame is not worth a thread hop
        return [kernel(*args, lo, hi) for lo, hi in spans]
    pool = _pool()
    return [f.result() for f in [pool.submit(kernel, *args, lo, hi) for lo, hi in spans]]

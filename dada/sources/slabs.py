"""Read a (images, rows, cols) slab of an HDF5 stack as runs of images in parallel processes.

A sinogram band from projection-chunked files decompresses every projection; HDF5 runs one
call at a time per process, so the runs go to worker processes (each with its own HDF5),
which write straight into shared memory: nothing large is pickled.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing import shared_memory

import numpy as np

_pool: Executor | None = None
_lock = threading.Lock()

# Below this many bytes of chunks touched, one process is quicker than starting the others' work.
PARALLEL_BYTES = 64 * 2**20


def pool(workers: int | None = None) -> Executor:
    global _pool
    with _lock:
        if _pool is None:
            # forkserver: the daemon has threads (aiohttp, numba); forking it directly is unsafe.
            _pool = ProcessPoolExecutor(workers or os.cpu_count() or 2, mp_context=mp.get_context("forkserver"))
        return _pool


def _read_run(path: str, dataset: str, i0: int, i1: int, r0: int, r1: int, shm_name: str,
              shape: tuple[int, int, int], dtype: str) -> int:
    import h5py
    import hdf5plugin  # noqa: F401

    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        out = np.ndarray(shape, dtype=dtype, buffer=shm.buf)
        with h5py.File(path, "r") as f:
            f[dataset].read_direct(out, np.s_[i0:i1, r0:r1, :], np.s_[i0:i1])
    finally:
        shm.close()
    return os.getpid()


def read_slab(path: str, dataset: str, n: int, r0: int, r1: int, cols: int, dtype: np.dtype,
              chunk_bytes: int, workers: int | None = None) -> tuple[np.ndarray, set[int]]:
    """images[:, r0:r1, :] of ``dataset`` (projection-major), and the pids that read it."""
    workers = workers or os.cpu_count() or 2
    shape = (n, r1 - r0, cols)
    if workers < 2 or n * chunk_bytes < PARALLEL_BYTES:
        import h5py

        with h5py.File(path, "r") as f:
            return f[dataset][:, r0:r1, :], {os.getpid()}
    shm = shared_memory.SharedMemory(create=True, size=max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize))
    try:
        edges = np.linspace(0, n, workers + 1).astype(int)
        runs = [pool(workers).submit(_read_run, path, dataset, int(a), int(b), r0, r1, shm.name, shape,
                                     np.dtype(dtype).str) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
        pids = {j.result() for j in runs}
        return np.ndarray(shape, dtype=dtype, buffer=shm.buf).copy(), pids
    finally:
        shm.close()
        shm.unlink()

"""Give freed memory back to the system between requests.

glibc serves a large allocation from its own mapping and unmaps it when freed, but it raises that
threshold each time such a mapping is freed (up to 32 MiB): after the first large answer, buffers
of an answer's size come from the heap, which is not given back, so a daemon's resident memory grows
to the peak of every request it ever served, plus fragmentation. A fixed threshold keeps every
array larger than a node's answer for a block (a selection's maps, an encoded answer) its own
mapping, returned when it is freed, while smaller buffers (a block's answer, socket reads) keep
reusing the heap: a fresh mapping costs a page fault per 4 KiB touched, which on small frames is a
visible share of the front's time per point.

A front that keeps polar reductions also keeps freed heap memory, up to ``KEPT`` at the top of each heap,
before giving it back (glibc's default, 128 KiB, holds once the mmap threshold is fixed): an answer's arrays
below the threshold (a 256×256 scan's maps, 8–10 MB) were otherwise given back at every request and faulted
in again at the next, a page at a time, which took about half the time of a dragged ring's answer from the
reduction. Other fronts do not: it raised the peak of a 102 400-point map by 20–50 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
LARGE = 16 * 2**20  # bytes: above a node's answer for a block (8192 points of about 1 KiB)
KEPT = 64 * 2**20  # bytes of freed memory a heap of a front keeping reductions keeps for the next request


def return_freed_memory(keep: int = 0) -> bool:
    """Fix glibc's mmap threshold, and with ``keep`` its trim threshold (freed bytes a heap keeps); False where
    the C library is not glibc (nothing changes there)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE)) and (not keep or bool(libc.mallopt(M_TRIM_THRESHOLD, keep)))
    except (OSError, AttributeError):
        return False


def small_pages() -> bool:
    """Stop numpy advising the kernel to back new arrays of 4 MiB and more with 2 MiB pages; False where this
    numpy has no such switch. A front writes every answer into fresh memory (the result cache keeps it), and
    on a machine whose memory is mostly page cache (the scans' files) a huge-page fault is sometimes cheap and
    sometimes much dearer: the front's CPU per point on 36 864 points of 64×64 frames alternated between 1.8
    and 3.0 µs with the advice, and stayed at 1.9–2.2 µs without (benchmarks/README.md, cluster section)."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2, numpy 1
        try:
            setter = importlib.import_module(module)._set_madvise_hugepage
        except (ImportError, AttributeError):
            continue
        setter(False)
        return True
    return False

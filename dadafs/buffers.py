"""Reusable fragment buffers, handed back to their pool when the last holder lets go.

A fresh multi-MiB buffer costs a page fault per 4 KiB and a zero fill, which
on these machines is as much CPU as receiving or reading the bytes into it;
both sides of dadafs therefore recycle their fragment buffers. Whoever keeps a
buffer (a cache entry, a reader copying out of it, a disk write in progress)
holds a pin; the buffer is reused only once all pins are released. Buffers
start on a page boundary, as O_DIRECT writes want.
"""

from __future__ import annotations

import ctypes
import threading

ALIGN = 4096


class Buffer:
    """``size`` bytes at ``address``; ``view`` is writable."""

    __slots__ = ("pool", "raw", "block", "view", "address", "pins")

    def __init__(self, pool: BufferPool | None, size: int) -> None:
        capacity = -(-max(size, 1) // ALIGN) * ALIGN
        self.raw = bytearray(capacity + ALIGN)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.raw))
        skip = -base % ALIGN
        self.pool = pool
        self.block = memoryview(self.raw)[skip:skip + capacity]  # whole pages, for O_DIRECT
        self.view = self.block[:size]
        self.address = base + skip
        self.pins = 1

    @property
    def size(self) -> int:
        return len(self.view)

    def pin(self) -> Buffer:
        with BufferPool.lock:
            self.pins += 1
        return self

    def unpin(self) -> None:
        with BufferPool.lock:
            self.pins -= 1
            if self.pins == 0 and self.pool is not None and len(self.pool.spare) < self.pool.keep:
                self.pool.spare.append(self)


class BufferPool:
    """Buffers of one size (fragments); other sizes (a file's short last fragment) are not pooled."""

    lock = threading.Lock()  # pins are few and brief: one lock for every pool

    def __init__(self, size: int, keep: int = 8, prefill: int = 0) -> None:
        """Keep up to ``keep`` spare buffers; allocate ``prefill`` of them now, so that first reads do not
        pay for fresh memory."""
        self.size = size
        self.keep = keep
        self.spare: list[Buffer] = []
        for _ in range(min(prefill, keep)):
            buf = Buffer(self, size)
            buf.pins = 0
            self.spare.append(buf)

    def take(self, size: int) -> Buffer:
        """A buffer of ``size`` bytes, pinned once for the caller."""
        if size != self.size:
            return Buffer(None, size)
        with self.lock:
            if self.spare:
                buf = self.spare.pop()
                buf.pins = 1
                return buf
        return Buffer(self, size)

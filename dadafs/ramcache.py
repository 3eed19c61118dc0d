"""Byte-bounded LRU of file fragments in pooled buffers, one fetch per missing fragment.

Its buffers are allocated when the mount starts, so reads never wait for fresh
memory. The cache holds a pin on each fragment it keeps; a reader pins a fragment for
as long as it copies out of it (``with cache.pinned(...)``). An evicted
fragment's buffer is reused only when its last reader lets go.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from dadafs.buffers import Buffer, BufferPool
from dadafs.singleflight import SingleFlight


class FragmentCache:
    def __init__(self, max_bytes: int, fragment_size: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.fetches = 0
        self.fetched_bytes = 0  # bytes fetched from the server (reads and read-aheads)
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Buffer] = OrderedDict()
        # every buffer the cache can hold, allocated up front and never given back
        slots = max_bytes // fragment_size
        self._pool = BufferPool(fragment_size, keep=slots + 16, prefill=slots)
        self._flight = SingleFlight()

    def peek(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._items:
                return True
        return self._flight.busy(key)

    @contextmanager
    def pinned(self, key: Hashable, size: int, fill: Callable[[memoryview], None]) -> Iterator[Buffer]:
        """The fragment ``key`` (``size`` bytes, ``fill`` writes them on a miss), kept from reuse
        until the block ends."""
        buf = self._pin(key, size, fill)
        try:
            yield buf
        finally:
            buf.unpin()

    def _pin(self, key: Hashable, size: int, fill: Callable[[memoryview], None]) -> Buffer:
        while True:
            with self._lock:
                buf = self._items.get(key)
                if buf is not None:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return buf.pin()
            buf, shared = self._flight.run(key, lambda: self._fetch(key, size, fill))
            if buf is not None and not shared:
                return buf  # ours, pinned before anyone could see it
            # another reader fetched it (or had just cached it): take it from the cache, pinned

    def _fetch(self, key: Hashable, size: int, fill: Callable[[memoryview], None]) -> Buffer | None:
        with self._lock:
            if key in self._items:
                return None
        buf = self._pool.take(size)
        try:
            fill(buf.view)
        except BaseException:
            buf.unpin()
            raise
        evicted = []
        with self._lock:
            self.misses += 1
            self.fetches += 1
            self.fetched_bytes += size
            if size <= self.max_bytes:
                self._items[key] = buf.pin()  # the cache's own pin
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self.bytes -= old.size
                    evicted.append(old)
        for old in evicted:
            old.unpin()
        return buf

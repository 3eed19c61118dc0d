"""The first cache level: recent results in RAM, bounded by their total size."""

from __future__ import annotations

import threading
from collections import OrderedDict

from dada.cache.stats import Stats


class MemoryCache:
    """Thread-safe LRU bounded by the bytes of its values; a value larger than the bound is not kept."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._stats = Stats(self.name, "hits", "misses", "puts", "evictions")

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
        self._stats.add("hits" if value is not None else "misses")
        return value

    def put(self, key: str, value: bytes | bytearray) -> None:
        value = value if isinstance(value, bytes | bytearray) else bytes(value)  # a buffer handed over: not copied
        self._stats.add("puts")
        evicted = 0
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            if len(value) > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
                evicted += 1
        if evicted:
            self._stats.add("evictions", evicted)

    def stats(self) -> dict[str, int]:
        with self._lock:
            size = {"bytes": self._bytes, "entries": len(self._items)}
        return {**self._stats.snapshot(), **size}

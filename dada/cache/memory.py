"""The first cache level: recent results in RAM, bounded by their total size."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from dada.cache.stats import Stats


def nbytes(value: Any) -> int:
    """The bytes a value holds: its ``nbytes`` (a memoryview, a result), else a buffer's length."""
    size = getattr(value, "nbytes", None)
    return int(size) if size is not None else memoryview(value).nbytes


class MemoryCache:
    """Thread-safe LRU bounded by the bytes of its values; a value larger than the bound is not kept.

    Values are kept as they are given, never copied: a copy into newly allocated memory costs as much as
    the work that made the value on these machines (page faults), and a node's answer or a computed
    result already sits in memory. Whoever puts a value hands it over: it is never written again (a
    view of an immutable ``bytes``, an owned ``bytearray``, a result whose arrays are read-only). A value
    that is neither a buffer nor has ``nbytes`` comes with its ``size``.
    """

    name = "memory"
    keeps_objects = True  # holds values as given (other levels take bytes)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._stats = Stats(self.name, "hits", "misses", "puts", "evictions")

    def get(self, key: str) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
        self._stats.add("hits" if item is not None else "misses")
        return None if item is None else item[0]

    def put(self, key: str, value: Any, size: int | None = None) -> None:
        size = nbytes(value) if size is None else size
        self._stats.add("puts")
        evicted = 0
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
                evicted += 1
        if evicted:
            self._stats.add("evictions", evicted)

    def stats(self) -> dict[str, int]:
        with self._lock:
            size = {"bytes": self._bytes, "entries": len(self._items)}
        return {**self._stats.snapshot(), **size}

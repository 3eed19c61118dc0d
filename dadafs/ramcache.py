"""Byte-bounded LRU of file fragments, with one fetch per missing fragment however many readers wait."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from dadafs.singleflight import SingleFlight


class FragmentCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.fetches = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._flight = SingleFlight()

    def peek(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._items:
                return True
        return self._flight.busy(key)

    def _lookup(self, key: Hashable) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def get(self, key: Hashable, fetch: Callable[[], bytes]) -> bytes:
        data = self._lookup(key)
        if data is not None:
            self.hits += 1
            return data

        def fetch_and_keep() -> bytes:
            again = self._lookup(key)  # finished by another reader since our lookup
            if again is not None:
                return again
            self.misses += 1
            self.fetches += 1
            got = fetch()
            with self._lock:
                if len(got) <= self.max_bytes:
                    self._items[key] = got
                    self.bytes += len(got)
                    while self.bytes > self.max_bytes:
                        _, old = self._items.popitem(last=False)
                        self.bytes -= len(old)
            return got

        data, shared = self._flight.run(key, fetch_and_keep)
        if shared:
            self.hits += 1
        return data

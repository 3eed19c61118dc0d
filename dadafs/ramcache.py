"""Byte-bounded LRU of file fragments, with one fetch per missing fragment however many readers wait."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future


class FragmentCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.fetches = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._pending: dict[Hashable, Future[bytes]] = {}

    def peek(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items or key in self._pending

    def get(self, key: Hashable, fetch: Callable[[], bytes]) -> bytes:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return data
            waiting = self._pending.get(key)
            if waiting is None:
                self.misses += 1
                mine: Future[bytes] = Future()
                self._pending[key] = mine
        if waiting is not None:
            return waiting.result()
        try:
            self.fetches += 1
            data = fetch()
            with self._lock:
                if len(data) <= self.max_bytes:
                    self._items[key] = data
                    self.bytes += len(data)
                    while self.bytes > self.max_bytes:
                        _, old = self._items.popitem(last=False)
                        self.bytes -= len(old)
            mine.set_result(data)
            return data
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._pending.pop(key, None)

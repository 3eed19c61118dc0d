"""One fetch per key at a time: callers asking for a key already being fetched wait for that fetch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Hashable, Future] = {}

    def busy(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._pending

    def run(self, key: Hashable, fetch: Callable[[], T]) -> tuple[T, bool]:
        """The fetch's result, and whether it was another caller's fetch (we only waited)."""
        with self._lock:
            waiting = self._pending.get(key)
            if waiting is None:
                mine: Future = Future()
                self._pending[key] = mine
        if waiting is not None:
            return waiting.result(), True
        try:
            value = fetch()
            mine.set_result(value)
            return value, False
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._pending.pop(key, None)

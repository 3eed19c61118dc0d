"""Cache puts off the answer's path: one thread writes them, in order, after the answer has gone out.

Until a value is written it is read from here, so a request right after another never misses what
the first computed. A value may be given as a function that makes its bytes (an answer's arrays
to serialise): the work happens on the writer thread too. Beyond ``limit`` bytes waiting, a put
is written at once, so memory stays bounded when the cache is slower than the answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dada.cache.tiered import ResultCache

Value = bytes | memoryview | Callable[[], bytes]


class CacheWriter:
    def __init__(self, cache: ResultCache, limit: int = 256 * 2**20) -> None:
        self.cache, self.limit = cache, limit
        self.pending: dict[str, tuple[Value, int]] = {}
        self.bytes = 0
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dada-cache-writer")

    def get(self, key: str) -> bytes | memoryview | None:
        with self._lock:
            waiting = self.pending.get(key)
        if waiting is None:
            return self.cache.get(key)
        value = waiting[0]
        return value() if callable(value) else value

    def put(self, key: str, value: Value, size: int | None = None) -> None:
        """Write ``value`` (bytes, or a function making them; ``size`` its estimate) after the answer."""
        size = len(value) if size is None else size
        with self._lock:
            inline = self.bytes + size > self.limit
            if not inline:
                self.pending[key] = (value, size)
                self.bytes += size
        if inline:
            self._write(key, value, size, queued=False)
        else:
            self._thread.submit(self._write, key, value, size)

    def _write(self, key: str, value: Value, size: int, queued: bool = True) -> None:
        try:
            self.cache.put(key, value() if callable(value) else bytes(value))
        finally:
            if queued:
                with self._lock:
                    if self.pending.get(key, (None,))[0] is value:
                        del self.pending[key]
                    self.bytes -= size

    def close(self) -> None:
        """Write every put so far, then stop (a daemon that stops loses no cache write)."""
        self._thread.shutdown(wait=True)
        self.cache.close()

"""Cache puts off the answer's path: one thread writes them, in order, after the answer has gone out.

Until a value is written it is read from here, so a request right after another never misses what
the first computed. A value may come with ``encode``, which makes its bytes for the levels that keep
bytes (a result's arrays serialised): that work happens on the writer thread too, and only if such
a level exists. Beyond ``limit`` bytes waiting, a put is written at once, so memory stays bounded
when the cache is slower than the answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dada.cache.memory import nbytes
from dada.cache.tiered import ResultCache

log = logging.getLogger("dada.cache")

Encode = Callable[[Any], bytes | bytearray]


class CacheWriter:
    def __init__(self, cache: ResultCache, limit: int = 256 * 2**20) -> None:
        self.cache, self.limit = cache, limit
        self.pending: dict[str, tuple[Any, int]] = {}
        self.bytes = 0
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dada-cache-writer")

    @property
    def empty(self) -> bool:
        """No level to keep anything: callers need not even make keys."""
        return self.cache.empty

    def get(self, key: str) -> Any:
        """The value as it was put (while waiting, or from the memory level), or bytes from a lower level."""
        with self._lock:
            waiting = self.pending.get(key)
        return self.cache.get(key) if waiting is None else waiting[0]

    def put(self, key: str, value: Any, encode: Encode | None = None) -> None:
        """Keep ``value`` (a buffer, or an object with ``nbytes`` and its ``encode``) after the answer. The
        value is handed over: never written again by the caller."""
        self.put_all({key: value}, encode)

    def put_all(self, values: dict[str, Any], encode: Encode | None = None) -> None:
        """Keep several values (a block's channels) as :meth:`put` does, in one hand-over to the writer."""
        if self.empty or not values:
            return
        sizes = {key: nbytes(value) for key, value in values.items()}
        total = sum(sizes.values())
        with self._lock:
            inline = self.bytes + total > self.limit
            if not inline:
                self.pending.update({key: (value, sizes[key]) for key, value in values.items()})
                self.bytes += total
        if inline:
            for key, value in values.items():
                self._write(key, value, encode, sizes[key], queued=False)
        else:
            self._thread.submit(self._write_all, values, encode, sizes)

    def _write_all(self, values: dict[str, Any], encode: Encode | None, sizes: dict[str, int]) -> None:
        for key, value in values.items():
            try:
                self._write(key, value, encode, sizes[key])
            except Exception:  # one level failing must not leave the others' values waiting for ever
                log.exception("a cache write failed (%s)", key[:16])

    def _write(self, key: str, value: Any, encode: Encode | None, size: int, queued: bool = True) -> None:
        try:
            self.cache.put(key, value, encode)
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

"""Counters for one cache level, bumped from any worker thread, and error logging that does not spam."""

from __future__ import annotations

import logging
import math
import threading
import time

LOG_EVERY = 60.0  # seconds between two warnings of one level; the ones between are counted, not logged


class Stats:
    """Named counters behind a lock (``+=`` on a dict entry is not atomic across threads)."""

    def __init__(self, level: str, *names: str) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(names, 0)
        self._log = logging.getLogger(f"dada.cache.{level}")
        self._last_warning = -math.inf
        self._quiet = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def error(self, what: str, exc: BaseException) -> None:
        """Count it under ``errors``; log it unless this level logged one less than a minute ago."""
        now = time.monotonic()
        with self._lock:
            self._counts["errors"] += 1
            if now - self._last_warning < LOG_EVERY:
                self._quiet += 1
                return
            self._last_warning, quiet, self._quiet = now, self._quiet, 0
        more = f" ({quiet} more since the last warning)" if quiet else ""
        self._log.warning("%s: %s%s", what, exc, more)

"""A byte budget for the working memory of requests computing at once.

Each plan says how much memory its computation needs (``Plan.work_bytes``); one request over its
route's own limit was refused with 413 before reaching here. What stays is many heavy requests at
once: each waits until the budget has room for it, in arrival order, so the daemon's memory is
bounded by the budget (plus what caches keep, which are bounded by their own sizes), not by the
number of clients. A request waiting too long is answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dada.errors import Busy


class Budget:
    def __init__(self, total: int, wait_seconds: float = 60.0) -> None:
        self.total, self.wait_seconds = total, wait_seconds
        self.used = 0
        self._room = asyncio.Condition()

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` of the budget while the block runs (all of it, for a request larger than it)."""
        want = min(max(0, nbytes), self.total)
        async with self._room:
            try:
                await asyncio.wait_for(self._room.wait_for(lambda: self.used + want <= self.total),
                                       self.wait_seconds)
            except TimeoutError:
                raise Busy(f"the server's working memory is taken by other requests ({self.used} of "
                           f"{self.total} bytes) for over {self.wait_seconds:g} s; try again shortly") from None
            self.used += want
        try:
            yield
        finally:
            async with self._room:
                self.used -= want
                self._room.notify_all()

"""A node's internal route: ``/_block/{scan}/{first}-{stop}.part?channels=…`` answers a block's partials.

The query is the ``/stxm`` parameter model's (channels, beam centre, user mask, prefixed channel
parameters), so there is no second protocol to keep in step. A saturated node says so (503 with
Retry-After) instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import numpy as np

from dada.cluster.nodes import TWIN_MARK
from dada.endpoint import Reduction
from dada.errors import BadParameter, Busy, NotFound
from dada.sources.catalog import Catalog
from dada.stxm.partials import REDUCE, REDUCE_GEOMETRY, pack
from dada.stxm.reduction import Spec
from dada.stxm.routes import StxmEndpoint

if TYPE_CHECKING:
    from dada.stxm.local import LocalPartials

# Test-only: seconds a node waits before answering each job (to test hedging against a slow node).
DELAY_ENV = "DADA_TEST_JOB_DELAY"


def parse_tail(tail: str) -> tuple[str, int, int]:
    """``a/b/scan/64-128.part`` -> (``a/b/scan``, 64, 128)."""
    head, _, last = tail.strip("/").rpartition("/")
    stem, dot, ext = last.partition(".")
    stem, _, twin = stem.partition(TWIN_MARK)  # a hedged twin: ~hedge, ~hedge2, ...
    first, dash, stop = stem.partition("-")
    if not head or ext != "part" or not dash or not (first.isdigit() and stop.isdigit()) or not (
            twin == "" or twin.isdigit()):
        raise NotFound("a job URL is /_block/{scan}/{first}-{stop}.part")
    a, b = int(first), int(stop)
    if not a < b:
        raise BadParameter("frames", f"{a}-{b} is empty", "first < stop")
    return head, a, b


class BlockService:
    """Computes jobs with this process's engine, admitting at most ``limit`` at once (one per thread
    computing, the rest waiting briefly); beyond that it answers 503 busy."""

    def __init__(self, endpoint: StxmEndpoint, catalog: Catalog, partials: LocalPartials, limit: int,
                 reductions: Mapping[str, Reduction]) -> None:
        self.endpoint, self.catalog, self.partials = endpoint, catalog, partials
        self.reductions = reductions
        self.limit = limit
        self._busy = 0
        self._lock = threading.Lock()
        self.delay = float(os.environ.get(DELAY_ENV, "0") or 0)

    def admit(self) -> None:
        with self._lock:
            if self._busy >= self.limit:
                raise Busy(f"this node already computes {self._busy} jobs; try again shortly")
            self._busy += 1

    def release(self) -> None:
        with self._lock:
            self._busy -= 1

    def compute(self, tail: str, query: Mapping[str, str]) -> bytes:
        """A block's partials; with ``reduce={dr},{nr},{ns}`` its polar reduction too (and with
        ``reduce_geometry=1`` the reduction's per-geometry record)."""
        path, first, stop = parse_tail(tail)
        args = self.endpoint.model.parse({k: v for k, v in query.items() if k not in (REDUCE, REDUCE_GEOMETRY)})
        scan = self.catalog.scan(path)
        p = self.endpoint.pass_for(scan, args, self.catalog)
        for c, cargs in p.channels:
            c.check(p.geo, cargs)
        frames = np.arange(first, stop, dtype=np.int64)
        if REDUCE not in query:
            return pack(self.partials(scan, frames, p))
        try:
            spec = Spec.parse(query[REDUCE])
        except ValueError:
            raise BadParameter(REDUCE, f"{query[REDUCE]!r} is not a reduction grid", "dr,nr,ns: integers") from None
        partials, records = self.partials.reduced(scan, frames, p, spec, query.get(REDUCE_GEOMETRY) == "1")
        return pack(partials, records)

    def reduce(self, tail: str, query: Mapping[str, str]) -> bytes:
        """A frame reduction's part (``/_frames/…?route=sum|composite&…``): over the frames of the request's
        selection that lie in the block, in the selection's order, as one npy."""
        path, first, stop = parse_tail(tail)
        ep = self.reductions.get(query.get("route", ""))
        if ep is None:
            raise BadParameter("route", f"{query.get('route')!r} is not a frame reduction", ", ".join(self.reductions))
        args = ep.model.parse({k: v for k, v in query.items() if k != "route"})
        scan = self.catalog.scan(path)
        frames = ep.selected(scan, args)
        buf = io.BytesIO()
        np.save(buf, ep.partial(scan, frames[(frames >= first) & (frames < stop)], args))
        return buf.getvalue()

    async def handle(self, tail: str, query: Mapping[str, str], pool: Executor, frames: bool = False) -> bytes:
        self.admit()
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            work = self.reduce if frames else self.compute
            return await asyncio.get_running_loop().run_in_executor(pool, work, tail, query)
        finally:
            self.release()

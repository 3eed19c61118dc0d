"""The front's partial source: blocks from the cache, missing ones from the nodes, placed as they come.

For a request's frames it finds their blocks on the scan's fixed block grid, takes every
(block, channel) it can from the result cache, sends each block still missing a channel to a node
as one job URL (all its missing channels in one pass), and places each block's rows into the
request's arrays as it arrives (``assembly``), then lets it go. Blocks whose frames are all written
go to the cache *after* the answer, from a writer thread; until written they are read from the
writer's queue. Progress is reported block by block.

When fewer blocks are missing than nodes can compute at once (a small scan, or the one new block
of a running scan), each is sent as several pieces so no node idles; the pieces' records are joined
before the block is cached, so the cache still holds whole blocks.
"""

from __future__ import annotations

import asyncio
import io
import logging
import queue
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dada.cache.keys import block_key
from dada.cache.writer import CacheWriter
from dada.cluster.assembly import Assembly, as_run
from dada.cluster.blocks import Block, blocks_of
from dada.cluster.nodes import Job, NodePool
from dada.endpoint import Reduction
from dada.errors import Cancelled
from dada.params import canon
from dada.sources.scan import Scan
from dada.stxm import wire
from dada.stxm.channel import Partial
from dada.stxm.outputs import Outputs
from dada.stxm.partials import BlockListener, Pass

log = logging.getLogger("dada.cluster")

BLOCK_PREFIX = "/_block"
FRAMES_PREFIX = "/_frames"  # a node's frame reductions (/sum, /composite) over a block's selected frames
MIN_PIECE = 8  # frames: smaller pieces cost more in round trips than they gain in parallelism


def block_url(scan: Scan, first: int, stop: int, p: Pass) -> str:
    """The human-readable URL of frames first..stop's partial result (a block or a piece) for the pass's channels."""
    query: list[tuple[str, str]] = [("channels", ",".join(c.name for c, _ in p.channels))]
    if not np.isnan(p.geo.cx):  # no centre: no channel of the pass uses one
        query += [("cx", repr(p.geo.cx)), ("cy", repr(p.geo.cy))]
    usermask = p.channels[0][1].get("usermask")
    if usermask:
        query.append(("usermask", usermask))
    for c, a in p.channels:
        query += [(f"{c.name}.{q.name}", canon(a[q.name]))
                  for q in c.params if not q.presentation and a[q.name] is not None]
    path = urllib.parse.quote(f"{BLOCK_PREFIX}/{scan.name}/{first}-{stop}.part")
    return f"{path}?{urllib.parse.urlencode(query)}"


class ClusterPartials:
    def __init__(self, pool: NodePool, loop: asyncio.AbstractEventLoop, cache: CacheWriter | None,
                 block_size: Callable[[Scan], int]) -> None:
        self.pool, self.loop, self.cache, self.block_size = pool, loop, cache, block_size

    def _key(self, block: Block, size: int, p: Pass, i: int) -> str:
        return block_key(block, size, p, i)

    def _cached(self, key: str) -> Partial | None:
        """A block's partial from the cache (there is one), or None."""
        data = self.cache.get(key)
        if data is None:
            return None
        try:
            return wire.read(data)
        except wire.WireError as exc:
            log.warning("a cached block is unreadable (%s); computing it again", exc)
            return None

    def __call__(self, scan: Scan, frames: np.ndarray, p: Pass, listener: BlockListener | None = None,
                 outputs: Outputs | None = None) -> dict[str, Partial]:
        frames = np.asarray(frames, dtype=np.int64).ravel()
        size = self.block_size(scan)
        blocks, groups = blocks_of(scan, frames, size)
        if listener is not None:
            listener.start(len(blocks))
        into = Assembly(frames.size, outputs)

        def done(k: int) -> None:
            if listener is not None:
                listener.block(groups[k], into.view(as_run(groups[k])))

        missing: dict[int, Pass] = {}
        caching = self.cache is not None and not self.cache.empty
        for k, block in enumerate(blocks):
            got: dict[str, Partial] = {}
            if block.complete and caching:
                for i, (c, _) in enumerate(p.channels):
                    m = self._cached(self._key(block, size, p, i))
                    if m is not None:
                        got[c.name] = m
            if got:
                into.place(as_run(groups[k]), as_run(frames[groups[k]] - block.first), got)
            lacking = {c.name for c, _ in p.channels} - set(got)
            if lacking:
                missing[k] = p.only(lacking)
            else:
                done(k)
        if missing:
            self._fetch(frames, blocks, groups, size, p, self._jobs(scan, blocks, missing), into, done, listener)
        return into.out

    def _jobs(self, scan: Scan, blocks: list[Block], missing: dict[int, Pass]) -> list[tuple[Job, int, int]]:
        """One job per missing block, or several pieces of each when the nodes would otherwise idle;
        with each job, its block and the block's row where it starts."""
        pieces = max(1, -(-self.pool.width // len(missing)))
        request = self.pool.request()
        out: list[tuple[Job, int, int]] = []
        for k, sub in missing.items():
            b = blocks[k]
            n = max(1, min(pieces, (b.stop - b.first) // MIN_PIECE))
            edges = [b.first + (b.stop - b.first) * j // n for j in range(n + 1)]
            for first, stop in zip(edges[:-1], edges[1:], strict=True):
                url = block_url(scan, first, stop, sub)
                out.append((Job(len(out), url, url.split("?")[0], request), k, first - b.first))
        return out

    def _fetch(self, frames: np.ndarray, blocks: list[Block], groups: list[np.ndarray], size: int, p: Pass,
               jobs: list[tuple[Job, int, int]], into: Assembly, done: Callable[[int], None],
               listener: BlockListener | None) -> None:
        """Send the jobs through the event loop; read, place and queue for the cache here, off the
        loop. A cancel from the listener stops the jobs not yet answered."""
        where = {job.id: (k, row) for job, k, row in jobs}
        waiting = Counter(k for _, k, _ in jobs)  # pieces still to come, per block
        pieces: dict[int, list[tuple[int, dict[str, Partial]]]] = {}  # blocks sent in pieces: (row, partials)
        for jid, body in answered(self.pool, self.loop, [job for job, _, _ in jobs], listener):
            k, row = where[jid]
            block = blocks[k]
            try:
                records = dict(wire.unbundle(body))
                partials = {name: wire.read(rec) for name, rec in records.items()}
            except wire.WireError as exc:
                raise RuntimeError(f"a node's answer for frames {block.first}.. is unreadable: {exc}") from None
            rows = frames[groups[k]] - block.first
            count = next(iter(partials.values())).npoints
            mine = (rows >= row) & (rows < row + count)
            into.place(as_run(groups[k][mine]), as_run(rows[mine] - row), partials)
            waiting[k] -= 1
            if waiting[k] or k in pieces:
                pieces.setdefault(k, []).append((row, partials))
                if waiting[k]:
                    continue
                records = _joined(pieces.pop(k))
            if self.cache is not None and not self.cache.empty and block.complete:
                for i, (c, _) in enumerate(p.channels):
                    if c.name in records:
                        self.cache.put(self._key(block, size, p, i), records[c.name])
            done(k)


class ClusterFrames:
    """Frame reductions (/sum, /composite) cut on the scan's block grid and computed by the nodes that
    hold those blocks (the ring key is the block's, as for STXM jobs); the parts are put together by
    the route. Their partials depend on the selection, so they are not cached per block: the answer is."""

    def __init__(self, pool: NodePool, loop: asyncio.AbstractEventLoop, block_size: Callable[[Scan], int]) -> None:
        self.pool, self.loop, self.block_size = pool, loop, block_size

    def __call__(self, scan: Scan, frames: np.ndarray, ep: Reduction, args: dict[str, Any]
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        frames = np.asarray(frames, dtype=np.int64).ravel()
        blocks, groups = blocks_of(scan, frames, self.block_size(scan))
        query = urllib.parse.urlencode([("route", ep.name)] + [
            (q.name, canon(args[q.name])) for q in ep.model.params if not q.presentation and args[q.name] is not None])
        request = self.pool.request()
        jobs = []
        for k, b in enumerate(blocks):
            key = urllib.parse.quote(f"{BLOCK_PREFIX}/{scan.name}/{b.first}-{b.stop}.part")
            path = urllib.parse.quote(f"{FRAMES_PREFIX}/{scan.name}/{b.first}-{b.stop}.part")
            jobs.append(Job(k, f"{path}?{query}", key, request))
        parts = []
        for k, body in answered(self.pool, self.loop, jobs):
            parts.append((groups[k], np.load(io.BytesIO(body), allow_pickle=False)))
        return parts


def answered(pool: NodePool, loop: asyncio.AbstractEventLoop, jobs: list[Job],
             listener: BlockListener | None = None) -> Iterator[tuple[int, bytes]]:
    """Send the jobs through the event loop; yield (job id, body) here, off the loop, as they arrive.
    A cancel from the listener stops the jobs not yet answered; a failure ends the iteration with it."""
    answers: queue.Queue = queue.Queue()
    job = asyncio.run_coroutine_threadsafe(
        pool.fetch_all(jobs, lambda job, body: answers.put((job.id, body))), loop)
    left = len(jobs)
    while left:
        try:
            item = answers.get(timeout=0.05)
        except queue.Empty:
            if listener is not None and listener.cancelled():
                job.cancel()
                raise Cancelled(f"cancelled with {left} of {len(jobs)} jobs still to come") from None
            if job.done():
                job.result()  # raises what ended it
                if answers.empty():
                    raise RuntimeError("the node pool ended without every answer") from None
            continue
        left -= 1
        yield item
    job.result()


def _joined(pieces: list[tuple[int, dict[str, Partial]]]) -> dict[str, bytes]:
    """The records of a whole block from its pieces' partials (in any order)."""
    pieces.sort(key=lambda rm: rm[0])
    out = {}
    for name in pieces[0][1]:
        parts = [m[name] for _, m in pieces]
        whole = Partial({k: np.concatenate([m[k] for m in parts]) for k in parts[0].arrays},
                        np.concatenate([m.present for m in parts]))
        out[name] = wire.record(whole)
    return out

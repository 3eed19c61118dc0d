"""The front's partial source: blocks from the cache, missing ones from the nodes, placed as they come.

For a request's frames it finds their blocks on the scan's fixed block grid, takes every
(block, channel) it can from the result cache, sends each block still missing a channel to a node
as one job URL (all its missing channels in one pass), and places each block's rows into the
request's arrays as it arrives (``assembly``), then lets it go. Without a progress listener the
answers are read in bursts of up to ``HOLD_BYTES``: one after the other, they find the front's code
and arrays still in cache (read as each came, on cores the nodes keep busy, they cost ~3x). Blocks
whose frames are all written go to the cache *after* the answer, from a writer thread; until
written they are read from the writer's queue. Progress is reported block by block.

When fewer blocks are missing than nodes can compute at once (a small scan, or the one new block
of a running scan), each is sent as several pieces so no node idles; the pieces' records are joined
before the block is cached, so the cache still holds whole blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import queue
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dada.cache.keys import block_key, reduction_geometry_key, reduction_key
from dada.cache.writer import CacheWriter
from dada.cluster.assembly import Assembly, as_run
from dada.cluster.blocks import Block, blocks_of
from dada.cluster.nodes import Job, NodePool
from dada.endpoint import Reduction
from dada.errors import Cancelled
from dada.memo import Memo
from dada.params import canon
from dada.sources.scan import Scan
from dada.stxm import reduction, wire
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Partial
from dada.stxm.outputs import Outputs
from dada.stxm.partials import REDUCE, REDUCE_GEOMETRY, REDUCTION, REDUCTION_GEOMETRY, BlockListener, Pass

log = logging.getLogger("dada.cluster")

BLOCK_PREFIX = "/_block"
FRAMES_PREFIX = "/_frames"  # a node's frame reductions (/sum, /composite) over a block's selected frames
HOLD_BYTES = 16 * 2**20  # node answers held on the loop, then read in one burst (at most the answer's size)
MIN_PIECE = 8  # frames: smaller pieces cost more in round trips than they gain in parallelism


def pass_query(p: Pass) -> str:
    """The query of a pass's block jobs (every block of a request shares it): its channels and their
    computational parameters, the beam centre and the user mask."""
    query: list[tuple[str, str]] = [("channels", ",".join(c.name for c, _ in p.channels))]
    if not np.isnan(p.geo.cx):  # no centre: no channel of the pass uses one
        query += [("cx", repr(p.geo.cx)), ("cy", repr(p.geo.cy))]
    usermask = p.channels[0][1].get("usermask")
    if usermask:
        query.append(("usermask", usermask))
    for c, a in p.channels:
        query += [(f"{c.name}.{q.name}", canon(a[q.name]))
                  for q in c.params if not q.presentation and a[q.name] is not None]
    return urllib.parse.urlencode(query)


def block_url(scan: Scan, first: int, stop: int, query: str) -> str:
    """The human-readable URL of frames first..stop's partial result (a block or a piece), ``query`` a pass's."""
    return f"{urllib.parse.quote(f'{BLOCK_PREFIX}/{scan.name}/{first}-{stop}.part')}?{query}"


class ClusterPartials:
    """``reduction`` = (dr, cells per point at most) of the polar reductions it keeps (None: none); ``held`` the
    bytes of cumulative cells each view of one may hold for sector requests."""

    def __init__(self, pool: NodePool, loop: asyncio.AbstractEventLoop, cache: CacheWriter | None,
                 block_size: Callable[[Scan], int], reduction: tuple[int, int] | None = None,
                 held: int = reduction.CELLS_HELD) -> None:
        self.pool, self.loop, self.cache, self.block_size = pool, loop, cache, block_size
        self.grid, self.held = reduction, held
        self.views = Memo(2)  # the reductions of the last requests' points: a dragged ring asks again and again

    @property
    def dr(self) -> int:
        return self.grid[0] if self.grid is not None else 1

    def spec(self, scan: Scan, geo: BeamGeometry) -> reduction.Spec | None:
        """The grid of this scan's reduction at this geometry; None when none is kept (no cache, no beam
        centre, or frames of floats, whose sums are not exact)."""
        if self.grid is None or self.cache is None or self.cache.empty or scan.dtype.kind not in "ui":
            return None
        return reduction.spec_for(geo.shape, geo.cx, geo.cy, *self.grid)

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
                 outputs: Outputs | None = None, reduce: bool = False) -> dict[str, Partial]:
        frames = np.asarray(frames, dtype=np.int64).ravel()
        size = self.block_size(scan)
        blocks, groups = blocks_of(scan, frames, size)
        spec = self.spec(scan, p.geo) if reduce else None
        reducing: set[int] = set()  # blocks whose reduction is still to compute
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
            if spec is not None and block.complete and self.cache.get(reduction_key(block, size, p.geo, spec)) is None:
                reducing.add(k)
                lacking = lacking or {p.channels[0][0].name}  # the reduction comes with some channel's pass
            if lacking:
                missing[k] = p.only(lacking)
            else:
                done(k)
        if missing:
            ask = None
            if reducing:
                ask = (spec, self.cache.get(reduction_geometry_key(p.geo, spec)) is None)
            self._fetch(frames, blocks, groups, size, p, self._jobs(scan, blocks, missing, reducing, ask), into, done,
                        listener, spec)
        return into.out

    def _jobs(self, scan: Scan, blocks: list[Block], missing: dict[int, Pass], reducing: set[int] = frozenset(),
              ask: tuple[reduction.Spec, bool] | None = None) -> list[tuple[Job, int, int]]:
        """One job per missing block, or several pieces of each when the nodes would otherwise idle;
        with each job, its block and the block's row where it starts. The jobs of blocks in ``reducing``
        also compute the reduction on ``ask``'s grid (the first of them its per-geometry record, if asked)."""
        pieces = max(1, -(-self.pool.width // len(missing)))
        request = self.pool.request()
        out: list[tuple[Job, int, int]] = []
        queries: dict[tuple[str, ...], str] = {}  # per set of channels: blocks mostly lack the same ones
        for k, sub in missing.items():
            names = tuple(c.name for c, _ in sub.channels)
            if names not in queries:
                queries[names] = pass_query(sub)
            b = blocks[k]
            n = max(1, min(pieces, (b.stop - b.first) // MIN_PIECE))
            edges = [b.first + (b.stop - b.first) * j // n for j in range(n + 1)]
            for first, stop in zip(edges[:-1], edges[1:], strict=True):
                url = block_url(scan, first, stop, queries[names])
                if k in reducing and ask is not None:
                    spec, geometry = ask
                    url += f"&{REDUCE}={urllib.parse.quote(spec.query())}"
                    if geometry:
                        url += f"&{REDUCE_GEOMETRY}=1"
                        ask = (spec, False)
                out.append((Job(len(out), url, url.split("?")[0], request), k, first - b.first))
        return out

    def _fetch(self, frames: np.ndarray, blocks: list[Block], groups: list[np.ndarray], size: int, p: Pass,
               jobs: list[tuple[Job, int, int]], into: Assembly, done: Callable[[int], None],
               listener: BlockListener | None, spec: reduction.Spec | None = None) -> None:
        """Send the jobs through the event loop; read, place and queue for the cache here, off the
        loop. A cancel from the listener stops the jobs not yet answered."""
        where = {job.id: (k, row) for job, k, row in jobs}
        waiting = Counter(k for _, k, _ in jobs)  # pieces still to come, per block
        npieces = Counter(waiting)
        pieces: dict[int, list[tuple[int, dict[str, Partial]]]] = {}  # blocks sent in pieces: (row, partials)
        reduced: dict[int, list[tuple[int, bytes]]] = {}  # the reduction records of each block's pieces
        # bursts of at most the answer's own size (the plan's budget allows a few copies of it); none when a
        # listener wants each block as it comes
        answer = sum(a.nbytes for arrays in into.outputs.arrays.values() for a in arrays.values()) if (
            into.outputs is not None) else 0
        hold = 0 if listener is not None else min(HOLD_BYTES, answer)
        for jid, body in answered(self.pool, self.loop, [job for job, _, _ in jobs], listener, hold):
            k, row = where[jid]
            block = blocks[k]
            try:
                records = dict(wire.unbundle(body))
                if REDUCTION_GEOMETRY in records:
                    self.cache.put(reduction_geometry_key(p.geo, spec), bytes(records.pop(REDUCTION_GEOMETRY)))
                if REDUCTION in records:
                    reduced.setdefault(k, []).append((row, bytes(records.pop(REDUCTION))))
                partials = {name: wire.read(rec) for name, rec in records.items()}
            except wire.WireError as exc:
                raise RuntimeError(f"a node's answer for frames {block.first}.. is unreadable: {exc}") from None
            rows = frames[groups[k]] - block.first
            count = next(iter(partials.values())).npoints
            mine = (rows >= row) & (rows < row + count)
            into.place(as_run(groups[k][mine]), as_run(rows[mine] - row), partials)
            waiting[k] -= 1
            if not waiting[k] and k in reduced:
                self._keep_reduction(reduction_key(block, size, p.geo, spec), reduced.pop(k), npieces[k])
            if waiting[k] or k in pieces:
                pieces.setdefault(k, []).append((row, partials))
                if waiting[k]:
                    continue
                records = _joined(pieces.pop(k))
            if self.cache is not None and not self.cache.empty and block.complete:
                self.cache.put_all({self._key(block, size, p, i): records[c.name]
                                    for i, (c, _) in enumerate(p.channels) if c.name in records})
            done(k)


    def _keep_reduction(self, key: str, parts: list[tuple[int, bytes]], pieces: int) -> None:
        """A whole block's reduction into the cache: its one record, or its pieces' joined; none when some
        piece could not reduce (the block's requests are then answered from the frames)."""
        if len(parts) != pieces:
            return
        parts.sort(key=lambda rb: rb[0])
        self.cache.put(key, parts[0][1] if pieces == 1 else reduction.join([b for _, b in parts]))

    def reduction(self, scan: Scan, frames: np.ndarray, geo: BeamGeometry) -> reduction.View | None:
        """The scan's polar reduction over ``frames`` (flat), when every block holding them has one kept."""
        spec = self.spec(scan, geo)
        if spec is None:
            return None
        frames = np.asarray(frames, dtype=np.int64).ravel()
        key = (scan.identity, geo.key, spec, hashlib.blake2b(frames.tobytes(), digest_size=16).digest())
        view = self.views.get(key, lambda: self._view(scan, frames, geo, spec))
        if view is None:  # not kept (yet): asked again next time
            self.views.forget(key)
        return view

    def _view(self, scan: Scan, frames: np.ndarray, geo: BeamGeometry, spec: reduction.Spec
              ) -> reduction.View | None:
        size = self.block_size(scan)
        blocks, groups = blocks_of(scan, frames, size)
        if not all(b.complete for b in blocks):
            return None
        keys = [reduction_key(b, size, geo, spec) for b in blocks]
        datas = [self.cache.get(key) for key in [reduction_geometry_key(geo, spec), *keys]]
        if any(d is None for d in datas):
            return None
        try:
            geometry = reduction.Geometry.read(datas[0])
            n = frames.size
            rings = np.zeros((spec.nr + 1, n), dtype=np.int64)
            moments = np.zeros((2, spec.nr + 1, n), dtype=np.int64)
            saturated, parts, narrow = [], [], True
            for b, key, data, positions in zip(blocks, keys, datas[1:], groups, strict=True):
                record = reduction.Record(data)
                rows = frames[positions] - b.first
                at = np.full(record.meta["points"], -1, dtype=np.int64)
                at[rows] = positions
                positions, rows = as_run(positions), as_run(rows)
                rings[1:, positions] = record["rings"][:, rows]
                moments[:, 1:, positions] = record["moments"][:, :, rows]
                sat = record["saturated"]
                mine = at[sat[0]] >= 0
                saturated.append(np.stack([at[sat[0][mine]], sat[1][mine], sat[2][mine]]))
                parts.append((self._record(key), positions, rows))
                narrow = narrow and record.dtype("cells") == np.uint16
        except (reduction.ReductionError, KeyError, IndexError, ValueError) as exc:
            log.warning("a kept reduction is unreadable (%s); answering from the frames", exc)
            return None
        np.cumsum(rings, axis=0, out=rings)
        np.cumsum(moments, axis=1, out=moments)
        return reduction.View(geometry, rings, moments, np.concatenate(saturated, axis=1), parts, narrow, self.held)

    def _record(self, key: str) -> Callable[[], reduction.Record]:
        """A block's reduction record, read from the cache each time asked: its cells (only sector requests
        need them) are read block by block, never held for the whole scan."""

        def get() -> reduction.Record:
            data = self.cache.get(key)
            if data is None:
                raise reduction.ReductionError("a block's reduction left the cache")
            return reduction.Record(data)

        return get


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
             listener: BlockListener | None = None, hold: int = 0) -> Iterator[tuple[int, bytes]]:
    """Send the jobs through the event loop; yield (job id, body) here, off the loop, as they arrive, or with
    ``hold`` (bytes) in bursts: answers wait on the loop until that many bytes (or the last) have come, and
    are then read one after the other, while the front's code and the places they go are still in cache (a
    thread woken for each answer finds them evicted by the nodes' work). A cancel from the listener stops
    the jobs not yet answered; a failure ends the iteration with it."""
    answers: queue.Queue = queue.Queue()
    held: list[tuple[int, bytes]] = []
    size, due = 0, len(jobs)

    def arrived(job: Job, body: bytes) -> None:  # on the loop
        nonlocal size, due
        held.append((job.id, body))
        size, due = size + len(body), due - 1
        if size >= hold or not due:
            answers.put(held.copy())
            held.clear()
            size = 0

    job = asyncio.run_coroutine_threadsafe(pool.fetch_all(jobs, arrived), loop)
    left = len(jobs)
    while left:
        try:
            items = answers.get(timeout=0.05)
        except queue.Empty:
            if listener is not None and listener.cancelled():
                job.cancel()
                raise Cancelled(f"cancelled with {left} of {len(jobs)} jobs still to come") from None
            if job.done():
                job.result()  # raises what ended it
                if answers.empty():
                    raise RuntimeError("the node pool ended without every answer") from None
            continue
        left -= len(items)
        yield from items
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

"""The front's moment source: blocks from the cache, missing ones from the nodes, glued once.

For a request's frames it finds their blocks on the scan's fixed block grid, takes every
(block, channel) it can from the result cache, sends each block still missing a channel to a node
as one patch URL (all its missing channels in one pass), caches the blocks whose frames are all
written, and glues the selection's rows. Progress is reported block by block as they arrive.

When fewer blocks are missing than nodes can compute at once (a small scan, or the one new block
of a running scan), each is sent as several pieces so no node idles; the pieces' rows are put
together before the block is cached, so the cache still holds whole blocks.
"""

from __future__ import annotations

import asyncio
import queue
import urllib.parse
from collections import Counter
from collections.abc import Callable

import numpy as np

from dada.cache import ResultCache
from dada.cache.keys import block_key
from dada.cluster.blocks import Block, blocks_of
from dada.cluster.nodes import NodePool, Patch
from dada.errors import Cancelled
from dada.params import canon
from dada.sources.scan import Scan
from dada.stxm.channel import Moments
from dada.stxm.partials import Pass, Progress, glue, pack_one, unpack, unpack_one

PATCH_PREFIX = "/_patch"
MIN_PIECE = 8  # frames: smaller pieces cost more in round trips than they gain in parallelism


def patch_url(scan: Scan, first: int, stop: int, p: Pass) -> str:
    """The human-readable URL of frames first..stop's partial result (a block or a piece) for the pass's channels."""
    query: list[tuple[str, str]] = [("channels", ",".join(c.name for c, _ in p.channels)),
                                    ("cx", repr(p.geo.cx)), ("cy", repr(p.geo.cy))]
    usermask = p.channels[0][1].get("usermask")
    if usermask:
        query.append(("usermask", usermask))
    for c, a in p.channels:
        query += [(f"{c.name}.{q.name}", canon(a[q.name]))
                  for q in c.params if not q.presentation and a[q.name] is not None]
    path = urllib.parse.quote(f"{PATCH_PREFIX}/{scan.name}/{first}-{stop}.npz")
    return f"{path}?{urllib.parse.urlencode(query)}"


class ClusterMoments:
    def __init__(self, pool: NodePool, loop: asyncio.AbstractEventLoop, cache: ResultCache | None,
                 block_size: Callable[[Scan], int]) -> None:
        self.pool, self.loop, self.cache, self.block_size = pool, loop, cache, block_size

    def _key(self, block: Block, size: int, p: Pass, i: int) -> str:
        return block_key(block, size, p, i)

    def __call__(self, scan: Scan, frames: np.ndarray, p: Pass, progress: Progress | None = None
                 ) -> dict[str, Moments]:
        frames = np.asarray(frames, dtype=np.int64).ravel()
        size = self.block_size(scan)
        blocks, where = blocks_of(scan, frames, size)
        order = np.argsort(where, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(where, minlength=len(blocks)))[:-1])
        if progress is not None:
            progress.start(len(blocks))
        parts: list[tuple[np.ndarray, dict[str, Moments]]] = []

        def arrived(k: int, moments: dict[str, Moments]) -> None:
            positions = groups[k]
            rows = frames[positions] - blocks[k].first
            mine = {name: Moments(m.values[rows], m.valid[rows], m.present[rows]) for name, m in moments.items()}
            parts.append((positions, mine))
            if progress is not None:
                progress.block(positions, mine)

        have: dict[int, dict[str, Moments]] = {}
        missing: dict[int, Pass] = {}
        for k, block in enumerate(blocks):
            got: dict[str, Moments] = {}
            if self.cache is not None and block.complete:
                for i, (c, _) in enumerate(p.channels):
                    data = self.cache.get(self._key(block, size, p, i))
                    if data is not None:
                        got[c.name] = unpack_one(data)
            lacking = {c.name for c, _ in p.channels} - set(got)
            if lacking:
                have[k], missing[k] = got, p.only(lacking)
            else:
                arrived(k, got)
        if missing:
            self._fetch(blocks, size, p, self._patches(scan, blocks, missing), have, arrived, progress)
        return glue(parts, frames.size)

    def _patches(self, scan: Scan, blocks: list[Block], missing: dict[int, Pass]) -> list[tuple[Patch, int, int]]:
        """One patch per missing block, or several pieces of each when the nodes would otherwise idle;
        with each patch, its block and the block's row where it starts."""
        pieces = max(1, -(-self.pool.width // len(missing)))
        out: list[tuple[Patch, int, int]] = []
        for k, sub in missing.items():
            b = blocks[k]
            n = max(1, min(pieces, (b.stop - b.first) // MIN_PIECE))
            edges = [b.first + (b.stop - b.first) * j // n for j in range(n + 1)]
            for first, stop in zip(edges[:-1], edges[1:], strict=True):
                url = patch_url(scan, first, stop, sub)
                out.append((Patch(len(out), url, url.split("?")[0]), k, first - b.first))
        return out

    def _fetch(self, blocks: list[Block], size: int, p: Pass, patches: list[tuple[Patch, int, int]],
               have: dict[int, dict[str, Moments]], arrived: Callable[[int, dict[str, Moments]], None],
               progress: Progress | None) -> None:
        """Send the patches through the event loop; unpack, put pieces together, cache and glue here, off
        the loop. A cancel from the listener stops the patches not yet answered (whole blocks answered stay
        cached)."""
        where = {patch.id: (k, row) for patch, k, row in patches}
        waiting = Counter(k for _, k, _ in patches)  # pieces still to come, per block
        pieces: dict[int, list[tuple[np.ndarray, dict[str, Moments]]]] = {}  # blocks sent in pieces, so far
        answers: queue.Queue = queue.Queue()
        job = asyncio.run_coroutine_threadsafe(
            self.pool.fetch_all([patch for patch, _, _ in patches], lambda patch, body: answers.put((patch.id, body))),
            self.loop)
        left = len(patches)
        while left:
            try:
                pid, body = answers.get(timeout=0.05)
            except queue.Empty:
                if progress is not None and progress.cancelled():
                    job.cancel()
                    raise Cancelled(f"cancelled with {left} of {len(patches)} patches still to come") from None
                if job.done():
                    job.result()  # raises what ended it
                    if answers.empty():
                        raise RuntimeError("the node pool ended without every answer") from None
                continue
            left -= 1
            k, row = where[pid]
            raw = unpack(body)
            moments = {name: unpack_one(b) for name, b in raw.items()}
            waiting[k] -= 1
            block = blocks[k]
            if waiting[k] or k in pieces:
                count = next(iter(moments.values())).values.shape[0]
                pieces.setdefault(k, []).append((np.arange(row, row + count), moments))
                if waiting[k]:
                    continue
                moments = glue(pieces.pop(k), block.stop - block.first)
                raw = {name: pack_one(m) for name, m in moments.items()}
            if self.cache is not None and block.complete:
                for i, (c, _) in enumerate(p.channels):
                    if c.name in moments:
                        self.cache.put(self._key(block, size, p, i), raw[c.name])
            arrived(k, {**have[k], **moments})
        job.result()


"""Which node behind the balancer computes each block: even shares, the same node every time.

HAProxy hashes a block's path onto its ring, so a block goes to the same node whatever its parameters, but
a short scan's blocks hash unevenly (64 blocks over 16 nodes: some own one, one owns eleven). The busiest
node's queue then passes the hedge threshold and its blocks are computed again by idle nodes, which fetch
their raw bytes over the storage uplink, on every pass. So the front places the blocks itself and asks for
each one's node by name (``X-Dada-Server``): a new block goes to the first node in its rendezvous order
(highest random weight over the nodes' names) that holds fewer than its even share of the scan's blocks,
and is remembered there, keyed by its path (scan and frame range, not the parameters), so a re-analysis
sends every block to the node whose dadafs cache holds its raw bytes, and a scan that grows keeps its old
blocks where they are. While a block's node is away it goes to the first node up in its rendezvous order
(about 1/N of the blocks move, always to the same stand-in), and back to its own node when that returns,
whose mount kept its cache. The memory is bounded: the least recently asked blocks are forgotten first.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Collection, Sequence

from dada.cluster.ring import rendezvous

REMEMBERED = 200_000  # blocks (~100 bytes each): 6 scans of 10^6 frames on 32-frame blocks


class Owners:
    def __init__(self, limit: int = REMEMBERED) -> None:
        self.limit = limit
        self._owner: OrderedDict[str, str] = OrderedDict()  # block path -> node name, least recently asked first
        self._held: dict[str, Counter[str]] = {}  # scan -> blocks remembered per node

    def __len__(self) -> int:
        return len(self._owner)

    def place(self, keys: Sequence[str], up: Collection[str]) -> dict[str, str]:
        """The node for each key (block path), among the names ``up``: its own if up, else its stand-in; new keys
        are given a node each, spread evenly over ``up`` per scan. Empty when no node is up."""
        if not up:
            return {}
        out: dict[str, str] = {}
        new: dict[str, list[str]] = {}
        for key in dict.fromkeys(keys):
            owner = self._owner.get(key)
            if owner is None:
                new.setdefault(scan_of(key), []).append(key)
                continue
            self._owner.move_to_end(key)
            out[key] = owner if owner in up else rendezvous(key, up)[0]
        for scan, fresh in new.items():
            held = self._held.setdefault(scan, Counter())
            mine = sum(held[n] for n in up)
            share = math.ceil((mine + len(fresh)) / len(up))  # blocks of the scan a node up may own
            for key in fresh:
                owner = next(n for n in rendezvous(key, up) if held[n] < share)  # the shares add up to the blocks
                self._remember(key, owner)
                out[key] = owner
        return out

    def move(self, key: str, owner: str) -> None:
        """The block is now ``owner``'s: a hedged twin computed it there, so that node's cache holds all its
        raw bytes, where the first owner's read may have been cancelled half way."""
        old = self._owner.get(key)
        if old is None or old == owner:
            return
        self._held[scan_of(key)][old] -= 1
        self._held[scan_of(key)][owner] += 1
        self._owner[key] = owner

    def _remember(self, key: str, owner: str) -> None:
        self._owner[key] = owner
        self._held[scan_of(key)][owner] += 1
        while len(self._owner) > self.limit:
            old, name = self._owner.popitem(last=False)
            held = self._held[scan_of(old)]
            held[name] -= 1
            if not +held:
                del self._held[scan_of(old)]


def scan_of(key: str) -> str:
    """The scan of a block's path (``/_block/{scan}/{first}-{stop}.part``): shares are even per scan."""
    return key.rpartition("/")[0]

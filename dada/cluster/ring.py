"""Consistent hashing: the same block goes to the same node while that node is healthy and free.

Each node owns many points on a hash ring; a key's nodes in order are the owners met clockwise from
its hash. A node leaving moves only its own keys. The node pool bounds the load: a node takes at
most a few jobs at once, and a job whose node is full goes to the next node in its order that
has a free slot, so page caches and dadafs caches are reused without hot spots or idle nodes.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Ring:
    def __init__(self, nodes: Sequence[str], replicas: int = 160) -> None:
        self.nodes = list(nodes)
        points = sorted((_hash(f"{n}#{i}"), n) for n in self.nodes for i in range(replicas))
        self._hashes = [h for h, _ in points]
        self._owners = [n for _, n in points]

    def order(self, key: str) -> list[str]:
        """Every node once, in ring order from the key: the preferred one first, then its fallbacks."""
        start = bisect.bisect(self._hashes, _hash(key))
        seen: dict[str, None] = {}
        for i in range(len(self._owners)):
            seen.setdefault(self._owners[(start + i) % len(self._owners)], None)
            if len(seen) == len(self.nodes):
                break
        return list(seen)


def rendezvous(key: str, names: Sequence[str]) -> list[str]:
    """The names in the key's highest-random-weight order: removing a name moves only the keys it led."""
    return sorted(names, key=lambda n: _hash(f"{n}|{key}"), reverse=True)

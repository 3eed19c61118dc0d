"""Consistent hashing with bounded load: the same block goes to the same node while it is healthy.

Each node owns many points on a hash ring; a key goes to the first node clockwise from its hash
that is up and not loaded beyond ``(1 + epsilon)`` times the mean load (Mirrokni et al., 2018).
A node leaving moves only its own keys; a busy node passes work to its ring neighbour instead of
queueing it, so page caches and dadafs caches are reused without hot spots.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Iterable, Sequence


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Ring:
    def __init__(self, nodes: Sequence[str], replicas: int = 160, epsilon: float = 0.25) -> None:
        self.nodes = list(nodes)
        self.epsilon = epsilon
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

    def pick(self, key: str, load: Callable[[str], int], usable: Callable[[str], bool],
             exclude: Iterable[str] = ()) -> str | None:
        """The first usable node in ring order whose load, with this key added, stays within the bound."""
        skip = set(exclude)
        candidates = [n for n in self.order(key) if n not in skip and usable(n)]
        if not candidates:
            return None
        total = sum(load(n) for n in candidates) + 1
        bound = math.ceil(total / len(candidates) * (1 + self.epsilon))
        for n in candidates:
            if load(n) + 1 <= bound:
                return n
        return candidates[0]

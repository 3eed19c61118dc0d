"""Where the front sends each block through a balancer (dada.cluster.owners): even shares per scan, the same node
every time, about 1/N of the blocks moved while a node is away and all of them back when it returns.

Checked by counting, against what the placement must guarantee, not against a copy of its rule."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from dada.cluster.owners import Owners

NAMES = [f"node{k}" for k in range(1, 17)]


def blocks(scan: str, n: int, size: int = 32) -> list[str]:
    return [f"/_block/{scan}/{b * size}-{(b + 1) * size}.part" for b in range(n)]


@pytest.mark.parametrize("nodes", [3, 8, 16])
def test_a_short_scan_is_spread_evenly_and_placed_the_same_each_time(nodes):
    names, keys = NAMES[:nodes], blocks("c1/eiger4m", 64)
    owners = Owners()
    first = owners.place(keys, names)
    counts = Counter(first.values())
    assert set(counts) == set(names) and max(counts.values()) == math.ceil(64 / nodes), counts
    assert min(counts.values()) >= 64 // nodes - 1, counts
    assert owners.place(keys, names) == first  # a re-analysis: every block to the node that has it
    assert owners.place(keys[10:20], names) == {k: first[k] for k in keys[10:20]}  # a region of it too
    assert Owners().place(keys, names) == first  # a front started again places them the same way


def test_a_growing_scan_keeps_its_blocks_and_stays_even():
    owners, keys = Owners(), blocks("live/scan", 64)
    placed: dict[str, str] = {}
    for stop in range(4, 65, 4):  # four new blocks per request, as a running scan's files land
        got = owners.place(keys[:stop], NAMES)
        assert {k: got[k] for k in placed} == placed
        placed = got
        counts = Counter(got.values())
        assert max(counts.values()) <= math.ceil(stop / len(NAMES)), (stop, counts)


def test_a_node_away_moves_only_its_blocks_and_gets_them_back():
    owners, keys = Owners(), blocks("c2/eiger4m", 64)
    before = owners.place(keys, NAMES)
    away = "node5"
    during = owners.place(keys, [n for n in NAMES if n != away])
    moved = {k for k in keys if during[k] != before[k]}
    assert moved == {k for k in keys if before[k] == away}  # exactly its own blocks: 1/N of them
    assert len(moved) == 4 and away not in during.values()
    assert len(set(during[k] for k in moved)) > 1  # spread over stand-ins, not piled on one
    assert owners.place(keys, [n for n in NAMES if n != away]) == during  # the same stand-ins each time
    assert owners.place(keys, NAMES) == before  # back: its blocks, whose raw bytes its cache kept


def test_a_block_a_twin_computed_stays_with_the_twins_node():
    """A hedged twin that won read the whole block on its node; the owner's read may have been cancelled."""
    owners, keys = Owners(), blocks("c3/eiger4m", 32)
    before = owners.place(keys, NAMES[:8])
    owner = before[keys[7]]
    stand_in = next(n for n in NAMES[:8] if n != owner)
    owners.move(keys[7], stand_in)
    after = owners.place(keys, NAMES[:8])
    assert after[keys[7]] == stand_in and {k: after[k] for k in keys if k != keys[7]} == {
        k: before[k] for k in keys if k != keys[7]}
    grown = owners.place(blocks("c3/eiger4m", 40), NAMES[:8])  # new blocks see the shares as they are now
    assert Counter(grown.values())[stand_in] <= math.ceil(40 / 8) + 1


def test_scans_are_spread_each_on_its_own_and_the_memory_is_bounded():
    owners = Owners(limit=100)
    a, b = blocks("a/scan", 48), blocks("b/scan", 48)
    for keys in (a, b):
        counts = Counter(owners.place(keys, NAMES[:8]).values())
        assert sorted(counts.values()) == [6] * 8, counts
    assert len(owners) == 96
    owners.place(blocks("c/scan", 20), NAMES[:8])
    assert len(owners) == 100  # the least recently asked blocks (a's first) are forgotten
    assert owners.place([], NAMES) == {} and owners.place(a, []) == {}

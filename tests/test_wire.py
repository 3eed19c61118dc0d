"""Partial results on the wire and in the cache: exact round trips, and anything else refused, never misread."""

from __future__ import annotations

import numpy as np
import pytest

from dada.cluster.assembly import Assembly, as_run
from dada.stxm import wire
from dada.stxm.channel import Moments


def moments(n: int, nbins: int, slots: int, rng: np.random.Generator) -> Moments:
    values = rng.poisson(50, size=(n, nbins, slots)).astype(np.float64) - 7.25  # negative moments too
    valid = rng.integers(0, 2**20, size=(n, nbins)).astype(np.float64)
    values[1], valid[1] = np.nan, np.nan  # an absent frame
    return Moments(values, valid, ~np.isnan(valid[:, 0]))


@pytest.mark.parametrize("slots", [1, 3])
def test_records_and_bundles_round_trip_exactly(slots):
    rng = np.random.default_rng(3)
    a, b = moments(9, 5, slots, rng), moments(9, 2, 3, rng)
    for got, want in ((wire.read(bytes(wire.record(a, slots))), a),
                      *((wire.read(rec), m) for (_, rec), m in zip(wire.unbundle(bytes(wire.bundle({"a": a, "b": b}))),
                                                                   (a, b), strict=True))):
        np.testing.assert_array_equal(got.values, want.values, strict=True)
        np.testing.assert_array_equal(got.valid, want.valid)  # counts below 2**24: exact as float32
        np.testing.assert_array_equal(got.present, want.present)


def test_damaged_truncated_or_other_format_records_are_refused():
    rec = bytes(wire.record(moments(4, 3, 3, np.random.default_rng(4)), 3))
    flipped = bytearray(rec)
    flipped[-1] ^= 0x10
    other = bytearray(rec)
    other[4] = wire.FORMAT + 1  # the format field (little-endian u16 after the magic)
    for bad in (bytes(flipped), rec[:-8], rec[:10], b"NOPE" + rec[4:], bytes(other)):
        with pytest.raises(wire.WireError):
            wire.read(bad)
    with pytest.raises(wire.WireError):
        list(wire.unbundle(bytes(wire.bundle({"a": wire.read(rec)}))[:-5]))


def test_assembly_places_blocks_by_slices_or_indices_as_numpy_would():
    rng = np.random.default_rng(5)
    n = 40
    # the first block's points a run of the request (slices), the others in any order (a snake scan)
    order = np.concatenate([np.arange(16), 16 + rng.permutation(n - 16)])
    into = Assembly(n)
    want_values = np.empty((n, 4, 1))
    for lo in range(0, n, 16):
        block = moments(16, 4, 1, rng)
        positions = order[lo:lo + 16]
        rows = np.arange(positions.size)
        into.place(as_run(positions), as_run(rows), {"c": Moments(block.values[:positions.size],
                                                                  block.valid[:positions.size],
                                                                  block.present[:positions.size])})
        want_values[positions] = block.values[:positions.size]
    assert isinstance(as_run(np.arange(3, 9)), slice) and isinstance(as_run(np.array([3, 5])), np.ndarray)
    np.testing.assert_array_equal(into.out["c"].values, want_values)

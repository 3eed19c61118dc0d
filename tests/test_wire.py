"""Partial results on the wire and in the cache: exact round trips, and anything else refused, never misread."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import xxhash

from dada.cluster.assembly import Assembly, as_run
from dada.stxm import wire
from dada.stxm.channel import Partial

KINDS = {"sums": ("sum",), "moments": ("sum", "sx", "sy"), "max": ("max",), "every": ("sum", "sx", "sy", "max", "sq")}


def partial(n: int, nbins: int, names: tuple[str, ...], rng: np.random.Generator) -> Partial:
    arrays = {k: rng.poisson(50, size=(n, nbins)).astype(np.float64) - 7.3 for k in names}  # negative, not float32
    if "max" in arrays:
        arrays["max"][0, 0] = -np.inf  # a bin with no valid pixel
    arrays["count"] = rng.integers(0, 2**20, size=(n, nbins)).astype(np.float64)
    for a in arrays.values():
        a[1] = np.nan  # an absent frame
    return Partial(arrays, ~np.isnan(arrays["count"][:, 0]))


def same(got: Partial, want: Partial) -> None:
    assert list(got.arrays) != [] and set(got.arrays) == set(want.arrays)
    for k, a in want.arrays.items():
        assert got[k].shape == a.shape
        np.testing.assert_array_equal(got[k], a)  # counts below 2**24: exact as float32
    assert got["count"].dtype == np.float32 and all(got[k].dtype in (np.float32, np.float64) for k in got.arrays)
    np.testing.assert_array_equal(got.present, want.present)


def test_equal_rows_travel_once_and_exact_sums_as_float32_and_nothing_else():
    """What makes records small, each checked against the arrays it must give back bit for bit: counts equal
    on every point go once; sums float32 holds go as float32; anything float32 would round stays float64."""
    rng = np.random.default_rng(11)
    n, nbins = 64, 7
    counts = np.tile(rng.integers(1, 5000, nbins).astype(np.float64), (n, 1))
    cases = {
        "photon sums": rng.poisson(300, (n, nbins)).astype(np.float64),  # float32: exact
        "just below 2**24": np.full((n, nbins), 2.0**24 - 1),
        "above 2**24, odd": np.full((n, nbins), 2.0**24 + 1),  # float32 would round it
        "fractions": rng.normal(0, 1, (n, nbins)),  # Σv·x about a centre between pixels
        "huge": np.full((n, nbins), 1e300),  # float32 would overflow
    }
    small = {"photon sums", "just below 2**24"}
    for what, sums in cases.items():
        sums[3, 2] = np.nan  # one NaN (an absent point's sum) does not stop float32
        m = Partial({"sum": sums, "count": counts}, np.ones(n, dtype=bool))
        rec = bytes(wire.record(m))
        got = wire.read(rec)
        same(got, m)
        assert got["sum"].dtype == (np.float32 if what in small else np.float64), what
        assert got["count"].strides[0] == 0, "equal rows are read as one row broadcast"
        isz = got["sum"].dtype.itemsize
        # rows equal but for the NaN: one row and one patch (value + u32 index, padded to 8 bytes)
        varied = what in ("photon sums", "fractions")
        sums_bytes = got["sum"].nbytes if varied else nbins * isz + 8 * -(-(isz + 4) // 8)
        assert len(rec) == wire.HEADER.size + 2 * wire.ENTRY.size + nbins * 4 + sums_bytes, what


def test_rows_differing_in_a_few_values_travel_as_one_row_and_patches_bit_for_bit():
    """Counts of a block whose frames saturate a few pixels: one row and the values that differ, read back
    exactly (NaN of an absent point and -0.0 included); rows differing everywhere travel whole."""
    rng = np.random.default_rng(12)
    n, nbins = 256, 64
    counts = np.tile(rng.integers(100, 5000, nbins).astype(np.float64), (n, 1))
    saturated = rng.integers(0, n * nbins, 200)
    counts.reshape(-1)[saturated] -= rng.integers(1, 4, saturated.size)
    counts[7] = np.nan  # an absent frame
    sx = np.tile(rng.normal(0, 50, nbins), (n, 1))
    sx[3, 5], sx[9, 1] = -0.0, 0.0  # a sign of zero a comparison by value would lose
    sx[:, 1] = 0.0
    m = Partial({"count": counts, "sum": rng.poisson(300, (n, nbins)).astype(np.float64), "sx": sx},
                ~np.isnan(counts[:, 0]))
    rec = bytes(wire.record(m))
    got = wire.read(rec)
    same(got, m)
    for k in m.arrays:
        assert _bits(got[k]).tolist() == _bits(m[k].astype(got[k].dtype)).tolist(), k
    assert len(rec) < wire.HEADER.size + 3 * wire.ENTRY.size + n * nbins * (4 + 4) + 2 * nbins * 8 + 2000 * 16
    uneven = rng.integers(0, 100, (n, nbins)).astype(np.float64)  # every row different: all travel
    got = wire.read(bytes(wire.record(Partial({"count": uneven, "sum": uneven}, np.ones(n, bool)))))
    assert got["count"].strides[0] != 0
    np.testing.assert_array_equal(got["count"], uneven)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(f"<u{a.dtype.itemsize}")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_records_and_bundles_round_trip_exactly(kind):
    rng = np.random.default_rng(3)
    a, b = partial(9, 5, KINDS[kind], rng), partial(9, 2, KINDS["moments"], rng)
    same(wire.read(bytes(wire.record(a))), a)
    got = dict(wire.unbundle(bytes(wire.bundle({"a": a, "b": b}))))
    assert list(got) == ["a", "b"]
    same(wire.read(got["a"]), a)
    same(wire.read(got["b"]), b)


def resealed(rec: bytes, at: int, value: bytes) -> bytes:
    """``rec`` with bytes changed at ``at`` and its checksum made to match: only the layout check can refuse it."""
    out = bytearray(rec)
    out[at:at + len(value)] = value
    struct.pack_into("<Q", out, 16, xxhash.xxh3_64_intdigest(bytes(out[wire.HEADER.size:])))
    return bytes(out)


def test_damaged_truncated_or_other_layout_records_are_refused():
    rec = bytes(wire.record(partial(4, 3, KINDS["every"], np.random.default_rng(4))))
    flipped = bytearray(rec)
    flipped[-1] ^= 0x10
    other = bytearray(rec)
    other[4] = wire.FORMAT + 1  # the layout field (little-endian u16 after the magic)
    entry = wire.HEADER.size  # the first directory entry: b"sum" b"<f8" (these sums are not float32's)
    for bad in (bytes(flipped), rec[:-8], rec[:10], b"NOPE" + rec[4:], bytes(other),
                resealed(rec, entry, b"spam\0\0\0\0"),  # an array this layout does not know
                resealed(rec, entry + 8, b"<i8\0\0\0\0\0"),  # a known one in another dtype
                resealed(rec, entry + 16, struct.pack("<I", 2)),  # rows neither 1 nor the points
                resealed(rec, entry + 20, struct.pack("<I", 1)),  # patches of an array sent whole
                resealed(rec, entry, b"sx\0\0\0\0\0\0")):  # one array twice
        with pytest.raises(wire.WireError):
            wire.read(bad)
    with pytest.raises(wire.WireError):
        list(wire.unbundle(bytes(wire.bundle({"a": wire.read(rec)}))[:-5]))


def test_a_record_of_layout_2_is_refused():
    """The positional layout before named arrays: same magic, same header size; read as 3 it would be garbage."""
    n, nbins, slots = 4, 3, 3
    payload = np.arange(n * nbins * slots, dtype=np.float64).tobytes() + np.ones(n * nbins, np.float32).tobytes()
    old = struct.pack("<4sHHIIQ", b"DADP", 2, slots, n, nbins, xxhash.xxh3_64_intdigest(payload)) + payload
    with pytest.raises(wire.WireError, match="layout"):
        wire.read(old)


def test_assembly_places_blocks_by_slices_or_indices_as_numpy_would():
    rng = np.random.default_rng(5)
    n = 40
    # the first block's points a run of the request (slices), the others in any order (a snake scan)
    order = np.concatenate([np.arange(16), 16 + rng.permutation(n - 16)])
    into = Assembly(n)
    want = {k: np.empty((n, 4)) for k in ("max", "sq", "count")}
    for lo in range(0, n, 16):
        block = partial(16, 4, ("max", "sq"), rng)
        positions = order[lo:lo + 16]
        rows = np.arange(positions.size)
        piece = Partial({k: a[:positions.size] for k, a in block.arrays.items()}, block.present[:positions.size])
        into.place(as_run(positions), as_run(rows), {"c": piece})
        for k in want:
            want[k][positions] = block[k][:positions.size]
    assert isinstance(as_run(np.arange(3, 9)), slice) and isinstance(as_run(np.array([3, 5])), np.ndarray)
    for k, w in want.items():
        np.testing.assert_array_equal(into.out["c"][k], w)

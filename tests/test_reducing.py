"""The polar reduction as the kernels write it, against a slow numpy reference: integer counts per cell, Σv and
first moments per radial bin, saturated pixels logged per (point, cell), on noisy frames of every common dtype
with masked, bright and saturated pixels, through both kernel paths (chunks read in place, decoded frames) and
with a log too small at first (it grows); counts that are not exact non-negative integers mark the run inexact.
The channels sharing the pass keep exactly their sums."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import bitshuffle
import h5py
import hdf5plugin
import numpy as np
import pytest
from test_kernels import DECLARED, bins_of, frames_of, reference, same, spans

from dada.stxm import reduction
from dada.stxm.beam import BeamGeometry
from dada.stxm.engine import CellShare, kernel_buffers, new_reduced
from dada.stxm.kernels import accumulate_frame
from dada.stxm.pixelmaps import fuse
from dada.stxm.reducing import Reduced, block_bytes, cell_bins, cell_map, fits_uint32, saturated_cells, with_cells
from dada.stxm.reduction import Spec


def cells_reference(frames: np.ndarray, geo: BeamGeometry, spec: Spec, cutoff: float) -> Reduced:
    """Pixel by pixel in numpy (int64): the reduction of these frames."""
    n, h, w = frames.shape
    cell = cell_bins(geo, spec).reshape(-1)
    inside = (cell >= 0) & geo.good.reshape(-1)
    p = np.arange(h * w)
    counts = np.zeros((n, spec.cells), dtype=np.int64)
    radial = np.zeros((n, spec.nr, 3), dtype=np.int64)
    sat = []
    for i, f in enumerate(frames.reshape(n, -1)):
        hot = inside & (f.astype(np.float64) >= cutoff)
        ok = inside & ~hot
        v = f[ok].astype(np.int64)
        np.add.at(counts[i], cell[ok], v)
        k = cell[ok] // spec.ns
        for slot, weight in enumerate((v, v * (p[ok] % w), v * (p[ok] // w))):
            np.add.at(radial[i, :, slot], k, weight)
        sat += [(i, c) for c in cell[hot]]
    return Reduced(counts, radial, saturated_cells([np.array(sat, dtype=np.int32).reshape(-1, 2)], spec.cells),
                   True)


def chunks_of(frames: np.ndarray, tmp_path) -> list[np.ndarray]:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        d = f.create_dataset("d", data=frames, chunks=(1, *frames.shape[1:]), **hdf5plugin.Bitshuffle(cname="lz4"))
        return [np.frombuffer(d.id.read_direct_chunk((i, 0, 0))[1], dtype=np.uint8) for i in range(len(frames))]


def tiny_log(share: CellShare) -> None:
    """A log with room for one frame only: the kernels must ask for more, and lose nothing."""
    share.cells = share.cells._replace(log=np.empty((share.cells.room, 2), dtype=np.int32))


@pytest.mark.parametrize(("dtype", "shape", "dr", "background", "nr"), [
    ("uint16", (48, 100), 1, 0.2, None), ("uint32", (64, 64), 1, 0.2, None), ("uint32", (64, 64), 2, 40.0, None),
    ("uint8", (45, 47), 1, 0.5, None), ("uint16", (37, 53), 3, 3.0, None),
    ("uint16", (48, 100), 1, 0.2, 1100)])  # entries beyond uint16: an int32 table
def test_cells_match_numpy(tmp_path, dtype, shape, dr, background, nr):
    rng = np.random.default_rng(7)
    frames = frames_of(dtype, shape, 6, rng, background)
    good = rng.random(shape) > 0.05
    geo = BeamGeometry(shape, shape[1] / 2 - 2.3, shape[0] / 2 + 1.6, good, None, None, None)
    spec = Spec(dr, nr or int(min(shape) / 2 / dr))
    cutoff = float(np.iinfo(dtype).max)  # the masked-or-saturated pixels of frames_of
    bins = bins_of(shape, rng)
    cm = cell_map(geo, spec)
    assert cm.table.dtype == (np.int32 if nr else np.uint16)
    maps = with_cells(fuse(bins, DECLARED["sums"], geo), cm)
    want = cells_reference(frames, geo, spec, cutoff)
    assert want.saturated.shape[1] > 0 and want.counts.max() > 255
    want_values, want_sat = reference(frames, bins, DECLARED["sums"], good, cutoff)
    chunks = chunks_of(frames, tmp_path)
    for path in ("chunks", "frames"):
        n = len(frames)
        reduced = new_reduced(n, cm)
        share = CellShare(cm, reduced, shape[1])
        tiny_log(share)
        values, sat, acc = maps.new_values(n), np.zeros((n, maps.offsets[-1])), maps.new_acc()
        if path == "chunks":
            assert share.chunks(np.concatenate(chunks), *spans([c.size for c in chunks]), np.arange(n),
                                kernel_buffers(np.dtype(dtype)), maps.kernel, cutoff, acc, values, sat) == -1
        else:
            for i, f in enumerate(frames):
                while not accumulate_frame(f.ravel(), maps.kernel, cutoff, acc, values[i], sat[i], share.cells, i):
                    share.grow()
        assert share.cells.log.shape[0] > share.cells.room  # it grew
        assert share.cells.state[1] == 0, path  # exact
        np.testing.assert_array_equal(reduced.counts, want.counts, err_msg=path)
        np.testing.assert_array_equal(reduced.radial, want.radial, err_msg=path)
        np.testing.assert_array_equal(saturated_cells([share.log()], spec.cells), want.saturated, err_msg=path)
        same(values, want_values)  # the channels of the pass unchanged
        np.testing.assert_array_equal(sat, want_sat)


@pytest.mark.parametrize(("dtype", "value", "exact"), [
    ("float32", 2.5, False), ("float64", 3.0, True), ("int32", -4, False), ("uint32", 2**31 + 5, False),
    ("uint32", 2**31 - 5, True)])
def test_counts_that_are_not_exact_uint32_sums_mark_the_run(dtype, value, exact):
    """Two pixels of ``value`` in one cell: fractions, negatives and sums beyond uint32 leave no record."""
    shape = (16, 16)
    geo = BeamGeometry(shape, 8.0, 8.0, np.ones(shape, dtype=bool), None, None, None)
    spec = Spec(1, 7)
    cm = cell_map(geo, spec)
    frame = np.zeros(shape, dtype=dtype)
    cell, pixels = np.unique(cm.table[cm.inside()], return_counts=True)
    frame.ravel()[np.flatnonzero(cm.table == cell[np.argmax(pixels)])[:2]] = value
    frame[12, 8] = 1
    maps = with_cells(fuse(bins_of(shape, np.random.default_rng(1)), DECLARED["sums"], geo), cm)
    reduced = new_reduced(1, cm)
    share = CellShare(cm, reduced, shape[1])
    assert accumulate_frame(frame.ravel(), maps.kernel, np.inf, maps.new_acc(), maps.new_values(1)[0],
                            np.zeros(maps.offsets[-1]), share.cells, 0)
    assert (share.cells.state[1] == 0 and fits_uint32(reduced.radial)) == exact
    if exact:
        np.testing.assert_array_equal(reduced.counts, cells_reference(frame[None], geo, spec, np.inf).counts)


# -- records ----------------------------------------------------------------------------------------


def _block(rng: np.random.Generator, n: int, nr: int = 5, ns: int = 4) -> Reduced:
    k = 6
    return Reduced(rng.integers(0, 70000, size=(n, nr * ns)).astype(np.uint32),
                   rng.integers(-(2**40), 2**40, size=(n, nr, 3)),
                   np.stack([rng.integers(0, n, k), rng.integers(0, nr * ns, k), rng.integers(1, 9, k)]), True)


def test_records_round_trip_r_major_and_pieces_join_into_the_whole():
    rng = np.random.default_rng(3)
    spec = Spec(1, 5, 4)
    parts = [_block(rng, n) for n in (3, 5)]
    records = [block_bytes(p, np.ones(len(p.counts), dtype=bool), spec) for p in parts]
    for p, rec in zip(parts, records, strict=True):
        r = reduction.Record(rec)
        n = len(p.counts)
        assert r.meta["points"] == n
        assert r["cells"].dtype == np.uint32  # counts above 2**16
        np.testing.assert_array_equal(r["cells"], p.counts.reshape(n, 5, 4).transpose(1, 2, 0))
        np.testing.assert_array_equal(r["rings"], p.radial[..., 0].T)
        np.testing.assert_array_equal(r["moments"], p.radial[..., 1:].transpose(2, 1, 0))
        np.testing.assert_array_equal(r["saturated"], p.saturated)
    joined = reduction.Record(reduction.join(records))
    assert joined.meta["points"] == 8
    np.testing.assert_array_equal(joined["cells"], np.concatenate([reduction.Record(r)["cells"] for r in records],
                                                                   axis=2))
    sat = joined["saturated"]
    np.testing.assert_array_equal(sat[0], np.r_[parts[0].saturated[0], parts[1].saturated[0] + 3])
    small = _block(rng, 4)
    small.counts %= 2**16
    assert reduction.Record(block_bytes(small, np.ones(4, dtype=bool), spec))["cells"].dtype == np.uint16


def test_a_section_compressed_on_two_threads_is_the_whole_stream():
    rng = np.random.default_rng(4)
    with ThreadPoolExecutor(1) as pool:
        for size, dtype in ((3 * reduction.SPLIT + 17, np.uint16), (5 * reduction.SPLIT, np.uint32),
                            (reduction.SPLIT + 3, np.int64), (100, np.uint16)):
            a = rng.poisson(2.0, size).astype(dtype)
            assert reduction.compress(a, pool) == reduction.compress(a)
            np.testing.assert_array_equal(
                bitshuffle.decompress_lz4(np.frombuffer(reduction.compress(a, pool), np.uint8), a.shape, a.dtype), a)


def test_no_record_for_absent_frames_or_inexact_counts():
    block = _block(np.random.default_rng(2), 3)
    spec = Spec(1, 5, 4)
    assert block_bytes(block, np.array([True, False, True]), spec) is None
    block.exact = False
    assert block_bytes(block, np.ones(3, dtype=bool), spec) is None


def test_a_damaged_record_is_an_error_not_numbers():
    rec = bytearray(block_bytes(_block(np.random.default_rng(1), 4), np.ones(4, dtype=bool), Spec(1, 5, 4)))
    rec[-5] ^= 0xFF
    with pytest.raises(reduction.ReductionError):
        reduction.Record(bytes(rec))["saturated"]
    with pytest.raises(reduction.ReductionError):
        reduction.Record(b"DADP" + bytes(rec[4:]))
    with pytest.raises(reduction.ReductionError):
        reduction.Record(bytes(rec[:-3]))

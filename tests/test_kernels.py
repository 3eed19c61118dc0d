"""The STXM kernels on bitshuffle-LZ4 chunks, against a plain numpy sum, over every layout a writer may choose.

The fast path reads pixels from the bit planes of 64-element-aligned blocks; other block sizes, the
raw tail of n % 8 elements, signed and wide dtypes, bright pixels (above the low byte), saturated
and masked ones must all give exactly the numpy reference's sums and maxima (Σv² to rounding), whichever
accumulators the channels of a pass declare.
"""

from __future__ import annotations

import zlib

import h5py
import hdf5plugin
import numpy as np
import pytest

from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Bins
from dada.stxm.decode import MAX_BLOCK_BYTES, decode_into
from dada.stxm.engine import kernel_buffers
from dada.stxm.kernels import accumulate_chunks, accumulate_frame
from dada.stxm.pixelmaps import fuse


def spans(sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of chunks of these sizes laid back to back."""
    ends = np.cumsum(sizes)
    return ends - np.asarray(sizes), ends

def frames_of(dtype: str, shape: tuple[int, int], n: int, rng: np.random.Generator, background: float = 0.2
              ) -> np.ndarray:
    """Poisson frames (sparse at the default background) with a bright spot, a few huge and saturated
    values, masked pixels at the dtype's maximum and, for signed dtypes, negative pixels."""
    info = np.iinfo(dtype)
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    expected = background + 3000.0 * np.exp(-((rows - h / 3) ** 2 + (cols - w / 2) ** 2) / 8.0)
    out = np.minimum(rng.poisson(expected, size=(n, h, w)), min(info.max - 1, 2**40)).astype(dtype)
    flat = out.reshape(n, -1)
    for f in flat:
        f[rng.integers(0, f.size, 3)] = min(info.max // 3, 2**40)  # bright (and exact as float64 sums)
        f[rng.integers(0, f.size, 5)] = info.max  # masked or saturated
        if info.min < 0:
            f[rng.integers(0, f.size, 7)] = rng.integers(max(info.min, -(2**40)), 0, 7)
    return out


# What the three channels of bins_of accumulate: as the built-in four do (one with first moments), and every
# kind of class at once (max only, first moments with a max and Σv², neither).
DECLARED = {"sums": [("sum",), ("sum", "sx", "sy"), ("sum",)],
            "mixed": [("max",), ("sum", "sx", "sy", "max"), ("sum", "sq")]}
SLOTS = {"sum": 0, "sx": 1, "sy": 2, "max": 3, "sq": 4}


def bins_of(shape: tuple[int, int], rng: np.random.Generator) -> list[Bins]:
    """Three channels: scattered bins, contiguous bands, and sparse single pixels."""
    h, w = shape
    scattered = rng.integers(-1, 7, size=shape).astype(np.int32)
    bands = np.where(np.arange(h * w).reshape(shape) % 97 < 60, np.arange(h * w).reshape(shape) // 97 % 5, -1)
    single = np.full(shape, -1, dtype=np.int32)
    single.ravel()[rng.choice(h * w, 20, replace=False)] = np.arange(20) % 4
    return [Bins(scattered, 7), Bins(bands.astype(np.int32), 5), Bins(single, 4)]


def reference(frames: np.ndarray, bins: list[Bins], declared: list[tuple[str, ...]], good: np.ndarray,
              cutoff: float):
    """Per frame and global bin, in numpy: the kernels' slots Σv, Σv·col, Σv·row[, max, Σv²] of valid pixels
    (each where its channel declares it; a max of no pixel is -inf) and the saturated count."""
    h, w = frames.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w]
    nb = sum(b.count for b in bins)
    ext = any({"max", "sq"} & set(d) for d in declared)
    values, sat = np.zeros((len(frames), nb, 5 if ext else 3)), np.zeros((len(frames), nb))
    if ext:
        values[..., 3] = -np.inf
    for i, f in enumerate(frames.astype(np.float64)):
        off = 0
        for b, d in zip(bins, declared, strict=True):
            for k in range(b.count):
                sel = (b.index == k) & good
                ok = sel & (f < cutoff)
                values[i, off + k, 0] = f[ok].sum()
                if {"sx", "sy"} & set(d):
                    values[i, off + k, 1] = (f * cols)[ok].sum()
                    values[i, off + k, 2] = (f * rows)[ok].sum()
                if {"max", "sq"} & set(d):
                    values[i, off + k, 3] = f[ok].max(initial=-np.inf)
                    values[i, off + k, 4] = (f[ok] ** 2).sum()
                sat[i, off + k] = (sel & (f >= cutoff)).sum()
            off += b.count
    return values, sat


def same(got: np.ndarray, want: np.ndarray) -> None:
    """Every slot exactly as numpy's, but Σv² (whose squares of bright counts round) to 1e-12."""
    np.testing.assert_array_equal(got[..., :4], want[..., :4])
    np.testing.assert_allclose(got[..., 4:], want[..., 4:], rtol=1e-12)


LAYOUTS = [  # dtype, frame shape, bitshuffle block (elements; 0 = the writer's default)[, background counts]
    ("uint32", (64, 64), 0),
    ("uint32", (64, 64), 0, 40.0),  # dense: blocks un-shuffled, not gathered
    ("uint32", (64, 64), 0, 2000.0),  # dense and bright
    ("uint16", (48, 100), 0, 0.5),  # 40 % nonzero
    ("int32", (50, 60), 0, 300.0),
    ("uint8", (45, 47), 0, 40.0),
    ("uint32", (37, 53), 0),  # 1961 pixels: a partial last block and a raw tail of 1
    ("uint16", (48, 100), 0),
    ("uint16", (33, 71), 192),  # blocks of 3 words per plane
    ("uint32", (40, 40), 24),  # blocks not a multiple of 64: un-shuffled instead
    ("uint16", (41, 43), 1000),
    ("int32", (50, 60), 0),
    ("int16", (31, 39), 0),
    ("uint8", (45, 47), 0),
    ("uint64", (30, 34), 0),
    ("int64", (30, 34), 128),
]


@pytest.mark.parametrize("declared", sorted(DECLARED))
@pytest.mark.parametrize(("dtype", "shape", "nelems", "background"), [(*c, 0.2)[:4] for c in LAYOUTS])
def test_chunks_match_numpy(tmp_path, dtype, shape, nelems, background, declared):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, shape, nelems, background)).encode()))
    frames = frames_of(dtype, shape, 6, rng, background)
    info = np.iinfo(dtype)
    good = rng.random(shape) > 0.05
    good &= frames[0] != info.max  # a masked pixel never counts, whatever its value
    bins = bins_of(shape, rng)
    cutoff = float(info.max // 2)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        d = f.create_dataset("d", data=frames, chunks=(1, *shape), **hdf5plugin.Bitshuffle(nelems=nelems, cname="lz4"))
        chunks = [np.frombuffer(d.id.read_direct_chunk((i, 0, 0))[1], dtype=np.uint8) for i in range(len(frames))]
    geo = BeamGeometry(shape, shape[1] / 2, shape[0] / 2, good, None, None, None)
    maps = fuse(bins, DECLARED[declared], geo)
    nb = maps.offsets[-1]
    want_values, want_sat = reference(frames, bins, DECLARED[declared], good, cutoff)

    values, sat = maps.new_values(len(frames)), np.zeros((len(frames), nb))
    bad = accumulate_chunks(np.concatenate(chunks), *spans([c.size for c in chunks]), np.arange(len(frames)),
                            kernel_buffers(np.dtype(dtype)), maps.kernel, cutoff, maps.new_acc(), values, sat, None)
    assert bad == -1
    same(values, want_values)
    np.testing.assert_array_equal(sat, want_sat)

    decoded = maps.new_values(len(frames)), np.zeros_like(sat)  # the path for frames h5py decodes
    acc = maps.new_acc()
    for i, fr in enumerate(frames):
        assert accumulate_frame(fr.ravel(), maps.kernel, cutoff, acc, decoded[0][i], decoded[1][i], None, i)
    same(decoded[0], want_values)
    np.testing.assert_array_equal(decoded[1], want_sat)


@pytest.mark.parametrize(("dtype", "shape", "nelems"), [c[:3] for c in LAYOUTS])
def test_whole_chunks_decode_as_h5py_reads_them(tmp_path, dtype, shape, nelems):
    """decode_into (the benchmarks' decode-only baseline) walks the blocks the kernels walk: every layout
    decodes to h5py's frames, and a chunk cut short is refused."""
    frames = frames_of(dtype, shape, 2, np.random.default_rng(11))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        d = f.create_dataset("d", data=frames, chunks=(1, *shape), **hdf5plugin.Bitshuffle(nelems=nelems, cname="lz4"))
        chunks = [np.frombuffer(d.id.read_direct_chunk((i, 0, 0))[1], dtype=np.uint8) for i in range(2)]
        want = d[()]
    out, scratch = np.empty(shape, dtype=dtype), np.empty(MAX_BLOCK_BYTES, dtype=np.uint8)
    for chunk, frame in zip(chunks, want, strict=True):
        assert decode_into(chunk, out.reshape(-1).view(np.uint8), out.itemsize, scratch)
        np.testing.assert_array_equal(out, frame)
        assert not decode_into(chunk[:-5], out.reshape(-1).view(np.uint8), out.itemsize, scratch)


def test_corrupt_chunk_is_reported(tmp_path):
    rng = np.random.default_rng(5)
    frames = frames_of("uint32", (64, 64), 3, rng)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        d = f.create_dataset("d", data=frames, chunks=(1, 64, 64), **hdf5plugin.Bitshuffle(cname="lz4"))
        chunks = [np.frombuffer(d.id.read_direct_chunk((i, 0, 0))[1], dtype=np.uint8).copy() for i in range(3)]
    chunks[1] = chunks[1][: chunks[1].size // 2]  # cut short
    chunks[2][12:16] = 255  # a block longer than the chunk
    geo = BeamGeometry((64, 64), 32, 32, np.ones((64, 64), bool), None, None, None)
    maps = fuse(bins_of((64, 64), rng), DECLARED["mixed"], geo)
    nb = maps.offsets[-1]
    chunks.append(chunks[0].copy())
    chunks[3][7] ^= 4  # the header's frame size wrong
    for broken in (1, 2, 3):
        got = accumulate_chunks(np.concatenate([chunks[0], chunks[broken]]),
                                *spans([chunks[0].size, chunks[broken].size]), np.arange(2),
                                kernel_buffers(np.dtype("uint32")), maps.kernel, np.inf,
                                maps.new_acc(), maps.new_values(2), np.zeros((2, nb)), None)
        assert got == 1


def test_many_bin_combinations(tmp_path):
    """More combinations of bins than a dense table holds (501³ > 2²⁶): classes come from a sort instead."""
    rng = np.random.default_rng(9)
    shape = (40, 48)
    frames = frames_of("uint16", shape, 3, rng)
    bins = [Bins(rng.integers(-1, 500, size=shape).astype(np.int32), 500) for k in range(3)]
    good = rng.random(shape) > 0.1
    with h5py.File(tmp_path / "f.h5", "w") as f:
        d = f.create_dataset("d", data=frames, chunks=(1, *shape), **hdf5plugin.Bitshuffle(cname="lz4"))
        chunks = [np.frombuffer(d.id.read_direct_chunk((i, 0, 0))[1], dtype=np.uint8) for i in range(3)]
    maps = fuse(bins, DECLARED["mixed"], BeamGeometry(shape, 20.0, 20.0, good, None, None, None))
    assert maps.nclasses > 256  # wider than uint8 classes
    values, sat = maps.new_values(3), np.zeros((3, 1500))
    assert accumulate_chunks(np.concatenate(chunks), *spans([c.size for c in chunks]), np.arange(3),
                             kernel_buffers(np.dtype("uint16")), maps.kernel, 30000.0, maps.new_acc(), values,
                             sat, None) == -1
    want_values, want_sat = reference(frames, bins, DECLARED["mixed"], good, 30000.0)
    same(values, want_values)
    np.testing.assert_array_equal(sat, want_sat)
    np.testing.assert_array_equal(maps.static_valid, [((b.index == k) & good).sum() for b in bins for k in range(500)])


def test_an_unknown_accumulator_is_refused_by_name():
    geo = BeamGeometry((8, 8), 4.0, 4.0, np.ones((8, 8), bool), None, None, None)
    with pytest.raises(ValueError, match="median"):
        fuse([Bins(np.zeros((8, 8), np.int32), 1)], [("sum", "median")], geo)

"""The chunk index gives exactly HDF5's chunk bytes, read in runs, whatever the chunks' order in the file."""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np

from dada.sources.scan import FileStamp, Segment
from dada.stxm.chunkindex import _build, chunk_index


def _file(path: str, n: int, order: list[int], skip: int | None = None) -> None:
    """A (n, 24, 20) uint16 bitshuffle-LZ4 dataset whose chunks are written in ``order`` (so file offsets
    follow it); chunk ``skip`` stored raw with its filter marked skipped."""
    rng = np.random.default_rng(5)
    frames = rng.poisson(0.4, size=(n, 24, 20)).astype(np.uint16)
    with h5py.File(path + ".src", "w") as f:
        d = f.create_dataset("d", data=frames, chunks=(1, 24, 20), **hdf5plugin.Bitshuffle(cname="lz4"))
        raws = [d.id.read_direct_chunk((i, 0, 0))[1] for i in range(n)]
    with h5py.File(path, "w") as f:
        d = f.create_dataset("d", shape=frames.shape, dtype=np.uint16, chunks=(1, 24, 20),
                             **hdf5plugin.Bitshuffle(cname="lz4"))
        for i in order:
            if i == skip:
                d.id.write_direct_chunk((i, 0, 0), frames[i].tobytes(), filter_mask=1)
            else:
                d.id.write_direct_chunk((i, 0, 0), raws[i])


def test_reads_equal_hdf5s_in_any_file_order(tmp_path):
    path = str(tmp_path / "rev.h5")
    order = list(range(40))[::-1]  # offsets descend: no two frames in index order are back to back
    order[10:20] = sorted(order[10:20])  # ... except a run in the middle
    _file(path, 40, order)
    with h5py.File(path) as f:
        index = _build(f["d"])
        assert index is not None
        want = {i: f["d"].id.read_direct_chunk((i, 0, 0))[1] for i in range(40)}
    for local in (np.arange(40), np.array([3, 4, 5, 29, 30, 31, 39]), np.array([21, 22, 23, 24])):
        buf, starts, ends = index.read(local, np.empty(16, dtype=np.uint8))  # grows the buffer
        assert [bytes(buf[a:b]) for a, b in zip(starts, ends, strict=True)] == [want[i] for i in local.tolist()]


def test_a_chunk_stored_with_its_filter_skipped_disables_the_index(tmp_path):
    path = str(tmp_path / "skip.h5")
    _file(path, 8, list(range(8)), skip=3)
    with h5py.File(path) as f:
        assert _build(f["d"]) is None


def test_the_index_is_kept_per_file_state(tmp_path):
    path = str(tmp_path / "a.h5")
    _file(path, 6, list(range(6)))
    with h5py.File(path) as f:
        seg = Segment(path, "d", 0, 6, FileStamp("a.h5", 1, 1))
        first = chunk_index(f["d"], seg)
        assert chunk_index(f["d"], seg) is first
        assert chunk_index(f["d"], Segment(path, "d", 0, 6, FileStamp("a.h5", 1, 2))) is not first

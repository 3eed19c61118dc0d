"""The polar reduction: after a whole-scan /stxm request, darkfield, radial, dpc and azimuthal requests on its
grid are answered from it, equal to the frames' answers (a second front keeping no reduction is the oracle),
on uint16 and uint32 noisy frames with masked and saturated pixels, on growing scans and after snapping."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from helpers import Daemon

from dada.stxm import reduction

SCANS = ["eiger/u16/scan_0001", "eiger/u32/scan_0002"]
# every sector count the 48 fine sectors serve, radii on the grid and off it (a radial bin's pixels all on one
# side: answered too), per point and summed, every reference of dpc
ON_GRID = [
    "/darkfield/{s}.npy?rmin=6&rmax=24", "/darkfield/{s}.npy?rmin=6&rmax=24&output=transmission",
    "/darkfield/{s}.npy?rmin=0&rmax=3", "/darkfield/{s}.npy?rmin=12&snap=true",
    "/darkfield/{s}.npy?vert=1:4&horz=2:7:2&rmin=3&rmax=9",
    "/radial/{s}.npy?rmin=2&rmax=24&nbins=11", "/radial/{s}.npy?rmin=0&rmax=20&nbins=20&reduce=sum",
    "/radial/{s}.npy?rmin=4&rmax=28&nbins=6&output=axis",
    "/dpc/{s}.npy?rdpc=5", "/dpc/{s}.npy?rdpc=9&reference=median&rotation=30&flip=true",
    *(f"/azimuthal/{{s}}.npy?rmin=6&rmax=24&nsectors={n}" for n in (3, 4, 6, 8, 12, 16, 24, 48)),
    "/azimuthal/{s}.npy?rmin=4&rmax=20&nsectors=12&output=orientation",
    "/azimuthal/{s}.npy?rmin=4&rmax=20&nsectors=12&output=anisotropy",
]
# sector counts the fine sectors do not serve, radii whose radial bins straddle them (the default outer radius,
# the largest circle inside the frame, is 28.22 px), q bins: from the frames
OFF_GRID = ["/azimuthal/{s}.npy?rmin=6&rmax=24&nsectors=5", "/darkfield/{s}.npy?rmin=6.3&rmax=24",
            "/darkfield/{s}.npy?rmin=12",
            "/radial/{s}.npy?rmin=2&rmax=24&nbins=11&unit=q", "/darkfield/{s}.npy?rmin=6&rmax=40"]


def npy(r) -> np.ndarray:
    assert r.status == 200, r.body
    return np.load(io.BytesIO(r.body))


KEPT = "reduction_cells = 25000\n"  # off by default: these fronts keep reductions


@pytest.fixture(scope="module")
def fronts(demo_root, tmp_path_factory):
    """A front keeping reductions (blocks of 16 frames: three per scan) and one that keeps none."""
    tmp = tmp_path_factory.mktemp("reduce")
    (tmp / "raw.toml").write_text("reduction_cells = 0\n")
    (tmp / "kept.toml").write_text(KEPT)
    kept = Daemon(["serve", demo_root, "--cache-dir", str(tmp / "kept"), "--block-frames", "16",
                   "--config", str(tmp / "kept.toml")])
    try:
        raw = Daemon(["serve", demo_root, "--cache-dir", str(tmp / "raw"), "--block-frames", "16",
                      "--config", str(tmp / "raw.toml")])
    except Exception:
        kept.stop()
        raise
    yield kept, raw
    kept.stop()
    raw.stop()


def source(r) -> str:
    return r.headers.get("x-dada-source", "")


@pytest.mark.parametrize("scan", SCANS)
def test_answers_from_the_reduction_equal_the_frames(fronts, scan):
    kept, raw = fronts
    first = kept.get(f"/darkfield/{scan}.npy?rmin=7&rmax=21")
    assert source(first) == "raw"  # nothing kept yet
    whole = kept.get(f"/stxm/{scan}.h5")
    assert whole.status == 200 and source(whole) == "raw"
    for url in ON_GRID:
        u = url.format(s=scan)
        a, b = kept.get(u), raw.get(u)
        assert (source(a), source(b)) == ("reduction", "raw"), u
        got, want = npy(a), npy(b)
        assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True), u
    for url in OFF_GRID:
        u = url.format(s=scan)
        a, b = kept.get(u), raw.get(u)
        assert source(a) == "raw", u
        assert np.array_equal(npy(a), npy(b), equal_nan=True), u


def test_sector_answers_read_the_blocks_when_the_cells_are_not_held(fronts, demo_root, tmp_path):
    """With no room for the cumulative cells (``reduction_held_bytes = 0``) sector requests read each block's
    cells from the cache: still from the reduction, still equal to the frames."""
    _, raw = fronts
    scan = SCANS[1]
    (tmp_path / "kept.toml").write_text(KEPT + "reduction_held_bytes = 0\n")
    kept = Daemon(["serve", demo_root, "--cache-dir", str(tmp_path / "c"), "--block-frames", "16",
                   "--config", str(tmp_path / "kept.toml")])
    try:
        assert kept.get(f"/stxm/{scan}.h5").status == 200
        for url in [u for u in ON_GRID if u.startswith("/azimuthal")]:
            a, b = kept.get(url.format(s=scan)), raw.get(url.format(s=scan))
            assert (source(a), source(b)) == ("reduction", "raw"), url
            assert np.array_equal(npy(a), npy(b), equal_nan=True), url
        assert "reduction_held_bytes allows 0 MB" in kept.output()
    finally:
        kept.stop()


def test_snap_moves_radii_to_the_grid_and_says_so(fronts):
    kept, raw = fronts
    scan = SCANS[0]
    assert kept.get(f"/stxm/{scan}.h5").status == 200
    a = kept.get(f"/darkfield/{scan}.json?rmin=6.3&rmax=23.6&snap=true")
    assert source(a) == "reduction"
    doc = a.json()
    assert doc["attrs"]["snapped"] == {"rmin": [6.3, 6.0], "rmax": [23.6, 24.0]}
    assert doc["attrs"]["darkfield"]["rmin"] == 6.0
    got = np.array(doc["arrays"]["darkfield"]["data"], dtype=np.float64)
    want = npy(raw.get(f"/darkfield/{scan}.npy?rmin=6&rmax=24"))
    assert np.array_equal(got, want, equal_nan=True)
    # the same snapped answer from the frames where no reduction is kept
    assert np.array_equal(npy(raw.get(f"/darkfield/{scan}.npy?rmin=6.3&rmax=23.6&snap=true")), want)


def test_a_growing_scan_is_answered_from_its_reduction_once_whole(demo_root, tmp_path):
    """Only complete blocks keep a reduction; a request touching an open block reads the frames, and after the
    scan is complete (and a new whole-scan request), its reduction answers."""
    src, live = os.path.join(demo_root, "eiger/u32"), tmp_path / "root" / "run"
    live.mkdir(parents=True)
    shutil.copy2(os.path.join(src, "scan_0002_master.h5"), live)
    shutil.copy2(os.path.join(src, "scan_0002_data_000001.h5"), live)  # frames 0..19 of 48
    (tmp_path / "raw.toml").write_text("reduction_cells = 0\n")
    (tmp_path / "kept.toml").write_text(KEPT)
    kept = Daemon(["serve", str(tmp_path / "root"), "--block-frames", "8", "--cache-dir", str(tmp_path / "k"),
                   "--config", str(tmp_path / "kept.toml")])
    raw = Daemon(["serve", str(tmp_path / "root"), "--block-frames", "8", "--cache-dir", str(tmp_path / "r"),
                  "--config", str(tmp_path / "raw.toml")])
    scan = "run/scan_0002"
    try:
        assert kept.get(f"/stxm/{scan}.h5").status == 200
        early = "/darkfield/{s}.npy?vert=0:2&rmin=4&rmax=16"  # frames 0..15: two complete blocks
        a, b = kept.get(early.format(s=scan)), raw.get(early.format(s=scan))
        assert source(a) == "reduction" and np.array_equal(npy(a), npy(b), equal_nan=True)
        whole = "/radial/{s}.npy?rmin=0&rmax=16&nbins=8"
        a = kept.get(whole.format(s=scan))
        assert source(a) == "raw"  # its open block has no reduction
        for k in (2, 3):
            shutil.copy2(os.path.join(src, f"scan_0002_data_00000{k}.h5"), live)
        assert kept.get(f"/stxm/{scan}.h5").status == 200
        for url in (whole, "/azimuthal/{s}.npy?rmin=4&rmax=20&nsectors=8", "/dpc/{s}.npy?rdpc=6&reference=median"):
            a, b = kept.get(url.format(s=scan)), raw.get(url.format(s=scan))
            assert source(a) == "reduction", url
            assert np.array_equal(npy(a), npy(b), equal_nan=True), url
    finally:
        kept.stop()
        raw.stop()


@pytest.mark.parametrize("counts", [300, 30000, 70000])
def test_a_views_cumulative_cells_are_the_cells_summed_over_r(counts):
    """The cells a view holds for sector requests, per point summed over r < k·dr: equal to numpy's cumsum in
    int64, whether they stay in uint16 (small counts) or widen when a later block's sums pass 2**16 (to uint32
    for uint16 cells, to uint64 for uint32 cells); blocks placed through slices and through index arrays
    (points in another order)."""
    rng = np.random.default_rng(counts)
    nr, ns = 5, 4
    spec = reduction.Spec(1, nr, ns)
    geometry = reduction.Geometry(spec, np.ones((nr, ns), dtype=np.int64), *(np.zeros(nr),) * 2,
                                  *(np.zeros((nr, ns)),) * 2)
    sizes = (6, 5, 7)
    blocks = [rng.integers(0, counts if b else 300, size=(nr, ns, n)) for b, n in enumerate(sizes)]
    records = [reduction.Record(reduction.block_record(c.transpose(2, 0, 1), np.zeros((c.shape[2], nr, 3)),
                                                       np.zeros((3, 0), dtype=np.int64))) for c in blocks]
    order = rng.permutation(sizes[2])
    parts = [(lambda r=records[0]: r, slice(0, 6), slice(0, 6)), (lambda r=records[1]: r, slice(6, 11), slice(0, 5)),
             (lambda r=records[2]: r, 11 + order, np.arange(sizes[2]))]
    narrow = all(r.dtype("cells") == np.uint16 for r in records)
    view = reduction.View(geometry, np.zeros((nr + 1, 18), dtype=np.int64), np.zeros((2, nr + 1, 18)),
                          np.zeros((3, 0), dtype=np.int64), parts, narrow)
    cells = np.zeros((nr, ns, 18), dtype=np.int64)
    cells[:, :, :6], cells[:, :, 6:11] = blocks[0], blocks[1]
    cells[:, :, 11 + order] = blocks[2]
    want = np.concatenate([np.zeros((1, ns, 18), dtype=np.int64), np.cumsum(cells, axis=0)])
    got = view.cumulative
    assert got.dtype == (np.uint16 if want.max() < 2**16 else np.uint32 if narrow else np.uint64)
    assert (got.dtype, narrow) == {300: (np.uint16, True), 30000: (np.uint32, True), 70000: (np.uint64, False)}[counts]
    held = got.size * 2  # room for uint16 only: held only if they fit in it
    again = reduction.View(view.geometry, view.rings, view.moments, view.saturated, parts, narrow, held).cumulative
    assert again is None if counts > 300 else np.array_equal(again, got)
    assert np.array_equal(got.astype(np.int64), want)

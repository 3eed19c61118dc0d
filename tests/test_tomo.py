"""Tomography preview: reconstruction, centre, Paganin and ring removal against independent references,
and the routes end to end on the demo NXtomo and TDF files."""

from __future__ import annotations

import io
import os

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from helpers import expect
from PIL import Image
from scipy import ndimage
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, rescale

from dada.demo import TOMO_SIZES
from dada.demo.tomo import TomoSpec, phantom_slice
from dada.tomo.fbp import reconstruct
from dada.tomo.prep import (
    HC_KEV_NM,
    find_center,
    flat_field,
    flat_for_projections,
    minus_log,
    paganin,
    remove_rings,
)

N = 256
THETA = np.linspace(0.0, 180.0, 360, endpoint=False)


@pytest.fixture(scope="module")
def phantom():
    ph = rescale(shepp_logan_phantom(), N / 400, anti_aliasing=False)
    return ph, radon(ph, theta=THETA)  # scikit-image: (N, angles)


def disc(n: int, margin: int = 2) -> np.ndarray:
    y, x = np.indices((n, n)) - n // 2
    return np.hypot(x, y) < n // 2 - margin


def rel_err(a, b, mask):
    return np.linalg.norm((a - b)[mask]) / np.linalg.norm(b[mask])


@pytest.mark.parametrize("filter_name", ["ramp", "shepp-logan", "hann"])
def test_reconstruction_no_worse_than_iradon(phantom, filter_name):
    ph, sino = phantom
    ours = reconstruct(sino.T, THETA, N // 2, filter_name=filter_name)
    theirs = iradon(sino, theta=THETA, filter_name=filter_name)
    m = disc(N)
    assert rel_err(ours, ph, m) <= rel_err(theirs, ph, m) * 1.02
    assert rel_err(ours, theirs, m) < 0.1  # the same image, not merely as good


def test_auto_center_within_quarter_pixel(phantom):
    ph, sino = phantom
    rng = np.random.default_rng(1)
    for offset in (0.0, 3.3, -7.6, 12.25, 0.4):
        shifted = ndimage.shift(sino.T, (0, offset), order=3, mode="nearest")
        noisy = shifted + rng.normal(0, 0.01 * shifted.max(), shifted.shape)
        found, _ = find_center(noisy)
        assert abs(found - (N // 2 + offset)) <= 0.25, (offset, found)


def test_paganin_matches_its_analytic_filter():
    """A Gaussian blob on a flat background, far from the edges: padding is exact there, so the
    result equals H(f) applied on a much larger field by plain FFTs."""
    pixel, distance, energy, db = 1e-6, 0.2, 20.0, 300.0
    n = 128
    y, x = np.indices((n, n)) - n / 2
    image = (1 - 0.3 * np.exp(-(x**2 + y**2) / (2 * 4.0**2))).astype(np.float32)
    got = paganin(image[None], pixel, distance, energy, db)[0]
    big = np.pad(image, 512, mode="constant", constant_values=1.0)
    lam = HC_KEV_NM / energy * 1e-9
    fy, fx = np.meshgrid(np.fft.fftfreq(big.shape[0], pixel), np.fft.fftfreq(big.shape[1], pixel), indexing="ij")
    h = 1 / (1 + np.pi * lam * distance * db * (fx**2 + fy**2))
    want = np.real(np.fft.ifft2(np.fft.fft2(big) * h))[512:-512, 512:-512]
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert got.min() > image.min() + 0.05  # it did smooth


def test_ring_removal_reduces_a_stripe_without_moving_edges(phantom):
    ph, sino = phantom
    clean = sino.T.astype(np.float64)
    striped = clean.copy()
    col = N // 2 + 17
    striped[:, col] += 0.05 * clean.max()
    fixed = remove_rings(striped, 21)

    def stripe(s):  # the column's offset from its neighbours, over all angles
        return np.abs(np.median(s[:, col] - (s[:, col - 2] + s[:, col + 2]) / 2) -
                      np.median(clean[:, col] - (clean[:, col - 2] + clean[:, col + 2]) / 2))

    assert stripe(fixed) <= stripe(striped) / 10
    rec_clean = reconstruct(clean, THETA, N // 2)
    rec_fixed = reconstruct(fixed, THETA, N // 2)

    def crossings(image, row):  # sub-pixel positions where the profile crosses half the skull's value
        line = image[row]
        level = 0.5 * line.max()
        above = np.flatnonzero(line > level)
        lo, hi = above[0], above[-1]
        left = lo - 1 + (level - line[lo - 1]) / (line[lo] - line[lo - 1])
        right = hi + (line[hi] - level) / (line[hi] - line[hi + 1])
        return np.array([left, right])

    for row in (N // 2, N // 2 - 40, N // 2 + 40):
        assert np.abs(crossings(rec_fixed, row) - crossings(rec_clean, row)).max() < 0.25


def test_flats_before_and_after_are_interpolated():
    f0, f1 = np.full((3, 2, 2), 100.0), np.full((3, 2, 2), 200.0)
    flats = np.concatenate([f0, f1])
    pos = np.array([0, 1, 2, 13, 14, 15])
    proj_pos = np.arange(3, 13)
    flat = flat_for_projections(flats, pos, proj_pos, "mean")
    w = (proj_pos - 1) / (14 - 1)
    np.testing.assert_allclose(flat[:, 0, 0], 100 + 100 * w, rtol=1e-6)
    assert np.allclose(flat_field(np.full((1, 2, 2), 55.0), np.full((1, 2, 2), 110.0), np.full((1, 2, 2), 10.0)),
                       0.45)
    assert np.isfinite(minus_log(np.array([0.0, -1.0, 1e9]))).all()


# -- the routes on the demo files ------------------------------------------------------------------


def npy(daemon, url):
    r = daemon.get(url)
    assert r.status == 200, (url, r.body)
    return np.load(io.BytesIO(r.body))


@pytest.mark.parametrize(("name", "offset", "seed"), [("nxtomo_0001", 3.3, 5), ("tdf_0001", -2.6, 6)])
def test_demo_tomography_end_to_end(daemon, demo_root, name, offset, seed):
    rows, cols, nproj = TOMO_SIZES["tiny"]
    spec = TomoSpec(rows, cols, nproj, center_offset=offset, seed=seed)
    center = daemon.get(f"/tomo/center/tomo/{name}.json").json()
    assert abs(center["center"] - spec.center) <= 0.25
    row = rows // 2
    sino = npy(daemon, f"/tomo/sinogram/tomo/{name}/{row}.npy")
    assert sino.shape == (nproj, cols) and sino.dtype == np.float32
    image = npy(daemon, f"/tomo/slice/tomo/{name}/{row}.npy?rings=true")
    truth = phantom_slice(spec, row)
    m = disc(cols, 6)
    corr = np.corrcoef(image[m], truth[m])[0, 1]
    assert corr > 0.8, corr
    # the same with the centre given, and against the file's raw data corrected by hand
    with h5py.File(io.BytesIO(daemon.get(f"/tomo/slice/tomo/{name}/{row}.h5?rings=true").body)) as f:
        auto = float(f.attrs["center"])
    assert abs(auto - spec.center) <= 0.5
    given = npy(daemon, f"/tomo/slice/tomo/{name}/{row}.npy?rings=true&center={auto}")
    np.testing.assert_allclose(given, image)
    fixed = npy(daemon, f"/tomo/slice/tomo/{name}/{row}.npy?center={spec.center}&rings=true&filter=hann")
    assert np.corrcoef(fixed[m], truth[m])[0, 1] > 0.8
    with h5py.File(os.path.join(demo_root, f"tomo/{name}.h5")) as f:
        if "entry" in f:
            data, key = f["entry/data/data"][()], f["entry/data/image_key"][()]
            proj, flats, darks = data[key == 0], data[key == 1], data[key == 2]
            pos = np.flatnonzero(key == 1)
            flat = flat_for_projections(flats.astype(np.float32), pos, np.flatnonzero(key == 0), "mean")
        else:
            proj = np.transpose(f["data"][()], (1, 0, 2))
            flat = np.transpose(f["data_white"][()], (1, 0, 2)).astype(np.float32).mean(axis=0)[None]
            darks = np.transpose(f["data_dark"][()], (1, 0, 2))
    dark = darks.astype(np.float32).mean(axis=0)[None]
    by_hand = minus_log(flat_field(proj.astype(np.float32), flat, dark))[:, row]
    np.testing.assert_allclose(sino, by_hand, rtol=1e-5, atol=1e-6)


def test_tomo_formats_and_options(daemon):
    base = "/tomo/slice/tomo/nxtomo_0001/8"
    ref = npy(daemon, base + ".npy")
    np.testing.assert_array_equal(tifffile.imread(io.BytesIO(daemon.get(base + ".tiff").body)), ref)
    with h5py.File(io.BytesIO(daemon.get(base + ".h5").body)) as f:
        np.testing.assert_array_equal(f["slice"][()], ref)
        assert f.attrs["row"] == 8 and abs(f.attrs["center"] - 51.3) < 0.3
    np.testing.assert_array_equal(scipy.io.loadmat(io.BytesIO(daemon.get(base + ".mat").body))["slice"], ref)
    assert np.asarray(Image.open(io.BytesIO(daemon.get(base + ".png").body))).shape == (96, 96, 4)
    assert daemon.get(base + ".csv").status == 200
    j = daemon.get(base + ".json").json()["arrays"]["slice"]
    assert j["dtype"] == "float32" and j["shape"] == [96, 96]
    np.testing.assert_allclose(np.array(j["data"], dtype=np.float32), ref)
    binned = npy(daemon, "/tomo/slice/tomo/nxtomo_0001/4.npy?bin=2&every=2")
    assert binned.shape == (48, 48)
    pag = npy(daemon, base + ".npy?paganin=true&delta_beta=50")
    assert pag.shape == ref.shape and np.isfinite(pag).all() and not np.allclose(pag, ref)
    s360 = npy(daemon, "/tomo/sinogram/tomo/tdf_0001/3.npy?every=4")
    assert s360.shape == (30, 96)


BAD = [
    ("/tomo/slice/tomo/nxtomo_0001/16.npy", "row"),
    ("/tomo/slice/tomo/nxtomo_0001/8.npy?center=500", "center"),
    ("/tomo/slice/tomo/nxtomo_0001/8.npy?center=left", "center"),
    ("/tomo/slice/tomo/nxtomo_0001/8.npy?filter=cosine", "filter"),
    ("/tomo/slice/tomo/nxtomo_0001/8.npy?every=50", "every"),
    ("/tomo/slice/tomo/nxtomo_0001/8.npy?bin=0", "bin"),
    ("/tomo/slice/tomo/tdf_0001/8.npy?paganin=true", "energy"),
    ("/tomo/slice/tomo/nxtomo_0001/8.npy?delta_beta=0", "delta_beta"),
    ("/tomo/center/tomo/nxtomo_0001.json?row=99", "row"),
    ("/tomo/center/tomo/nxtomo_0001.npy", "format"),
]


@pytest.mark.parametrize(("url", "param"), BAD)
def test_tomo_bad_parameters(daemon, url, param):
    expect(daemon, url, 400, parameter=param)


def test_not_a_tomography_file(daemon):
    r = daemon.get("/tomo/slice/eiger/u16/scan_0001/3.npy")
    assert r.status in (404, 422) and r.content_type == "application/json"


def test_projection_runs_read_in_parallel_processes(tmp_path):
    from dada.sources.slabs import read_slab

    stack = np.random.default_rng(3).integers(0, 4000, (40, 32, 48)).astype(np.uint16)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f.create_dataset("proj", data=stack, chunks=(1, 32, 48), compression="gzip")
    huge = 1 << 30  # pretend each image is expensive, so the runs go to the worker processes
    slab, pids = read_slab(str(tmp_path / "p.h5"), "/proj", 40, 5, 21, 48, stack.dtype, huge, workers=2)
    np.testing.assert_array_equal(slab, stack[:, 5:21])
    assert len(pids) == 2 and os.getpid() not in pids
    small, pids = read_slab(str(tmp_path / "p.h5"), "/proj", 40, 5, 21, 48, stack.dtype, 1, workers=2)
    np.testing.assert_array_equal(small, stack[:, 5:21])
    assert pids == {os.getpid()}

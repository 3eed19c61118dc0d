"""Every route and format over real HTTP, checked against h5py reads of the same frames."""

from __future__ import annotations

import io
import json
import os

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

from dada.demo import SIZES

V, H, ROWS, COLS, PER_FILE = SIZES["tiny"]
SCANS = [("eiger/u16/scan_0001", "uint16"), ("eiger/u32/scan_0002", "uint32")]


def h5_frames(root: str, scan: str) -> np.ndarray:
    with h5py.File(os.path.join(root, scan + "_master.h5")) as f:
        keys = sorted(k for k in f["entry/data"] if k.startswith("data_"))
        return np.concatenate([f["entry/data"][k][()] for k in keys])


def h5_mask(root: str, scan: str) -> tuple[np.ndarray, float]:
    with h5py.File(os.path.join(root, scan + "_master.h5")) as f:
        d = f["entry/instrument/detector"]
        cutoff = d["detectorSpecific/countrate_correction_count_cutoff"][()]
        return d["detectorSpecific/pixel_mask"][()] != 0, float(cutoff)


def decode(fmt: str, body: bytes, name: str) -> np.ndarray:
    """Read an answer back with each format's own library."""
    if fmt == "npy":
        return np.load(io.BytesIO(body))
    if fmt == "tiff":
        return tifffile.imread(io.BytesIO(body))
    if fmt == "json":
        d = json.loads(body)["arrays"][name]
        return np.array([[np.nan if x is None else x for x in row] for row in d["data"]], dtype=d["dtype"])
    if fmt == "csv":
        return np.loadtxt(io.StringIO(body.decode()), delimiter=",", ndmin=2)
    if fmt == "h5":
        with h5py.File(io.BytesIO(body), "r") as f:
            return f[name][()]
    if fmt == "mat":
        return scipy.io.loadmat(io.BytesIO(body))[name]
    raise AssertionError(fmt)


FORMATS = ["npy", "tiff", "json", "csv", "h5", "mat"]
CONTENT_TYPES = {"npy": "application/x-npy", "tiff": "image/tiff", "json": "application/json",
                 "csv": "text/csv", "h5": "application/x-hdf5", "mat": "application/x-matlab-data",
                 "png": "image/png"}


@pytest.mark.parametrize(("scan", "dtype"), SCANS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_frame_every_format(daemon, demo_root, scan, dtype, fmt):
    frames = h5_frames(demo_root, scan)
    for n in (0, PER_FILE - 1, PER_FILE, V * H - 1):  # across data-file boundaries
        r = daemon.get(f"/frame/{scan}/{n}.{fmt}")
        assert r.status == 200, r.body
        assert r.content_type == CONTENT_TYPES[fmt]
        got = decode(fmt, r.body, "frame")
        np.testing.assert_array_equal(got, frames[n])
        if fmt in ("npy", "tiff", "h5", "mat"):
            assert got.dtype == np.dtype(dtype)  # dtype is never changed silently


def test_h5_answer_carries_provenance(daemon):
    r = daemon.get("/frame/eiger/u16/scan_0001/7.h5")
    with h5py.File(io.BytesIO(r.body), "r") as f:
        assert f.attrs["scan"] == "eiger/u16/scan_0001"
        assert f.attrs["frame"] == 7
        assert len(f.attrs["scan_identity"]) == 32
    m = scipy.io.loadmat(io.BytesIO(daemon.get("/frame/eiger/u16/scan_0001/7.mat").body))
    assert m["attrs"]["frame"][0, 0].item() == 7


@pytest.mark.parametrize(("scan", "dtype"), SCANS)
def test_frame_png_marks_masked_pixels(daemon, demo_root, scan, dtype):
    r = daemon.get(f"/frame/{scan}/5.png?log=true&cmap=gray")
    assert r.status == 200 and r.content_type == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.body)))
    assert img.shape == (ROWS, COLS, 4)
    bad, cutoff = h5_mask(demo_root, scan)
    frame = h5_frames(demo_root, scan)[5]
    invalid = bad | (frame >= cutoff)
    assert (img[invalid, 3] == 0).all() and (img[~invalid, 3] == 255).all()
    # gray colormap, log scale: brighter pixels hold more counts
    good = ~invalid & (frame > 0)
    lum = img[..., 0].astype(int)
    hi = np.unravel_index(np.argmax(np.where(good, frame, 0)), frame.shape)
    lo = tuple(np.argwhere(good & (frame == 1))[0])
    assert lum[hi] > lum[lo]


def test_png_clipping_parameters(daemon):
    def png(query: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(daemon.get(f"/frame/eiger/u16/scan_0001/5.png?{query}").body)))

    a, b = png("cmap=gray&vmin=0&vmax=1"), png("cmap=gray&vmin=0&vmax=1e6")
    assert a[..., 0].mean() > b[..., 0].mean()  # a low vmax saturates more pixels to white


@pytest.mark.parametrize(("scan", "dtype"), SCANS)
def test_frame_at_grid_point(daemon, demo_root, scan, dtype):
    frames = h5_frames(demo_root, scan)
    snake = dtype == "uint32"  # the u32 demo scan is a snake scan
    for v, h in [(0, 0), (1, 2), (V - 1, H - 1)]:
        n = v * H + ((H - 1 - h) if snake and v % 2 else h)
        r = daemon.get(f"/frame/{scan}.npy?at={v},{h}")
        assert r.status == 200, r.body
        np.testing.assert_array_equal(np.load(io.BytesIO(r.body)), frames[n])


def reference_sum(frames, bad, cutoff, b, mean=False):
    """Obvious loops: valid counts per pixel, binned b×b, dropping edge remainders."""
    total = np.zeros(frames.shape[1:], dtype=np.int64)
    count = np.zeros(frames.shape[1:], dtype=np.int64)
    for f in frames:
        ok = ~bad & (f < cutoff)
        total += np.where(ok, f, 0)
        count += ok
    h, w = total.shape[0] // b, total.shape[1] // b
    tb = np.array([[total[i * b:(i + 1) * b, j * b:(j + 1) * b].sum() for j in range(w)] for i in range(h)])
    cb = np.array([[count[i * b:(i + 1) * b, j * b:(j + 1) * b].sum() for j in range(w)] for i in range(h)])
    return np.where(cb > 0, tb / np.maximum(cb, 1), np.nan) if mean else tb


@pytest.mark.parametrize(("scan", "dtype"), SCANS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_sum_of_selection(daemon, demo_root, scan, dtype, fmt):
    frames = h5_frames(demo_root, scan)
    bad, cutoff = h5_mask(demo_root, scan)
    snake = dtype == "uint32"
    vsel, hsel = range(1, 4), range(2, 8, 2)
    ns = [v * H + ((H - 1 - h) if snake and v % 2 else h) for v in vsel for h in hsel]
    r = daemon.get(f"/sum/{scan}.{fmt}?vert=1:4&horz=2:8:2&bin=3")
    assert r.status == 200, r.body
    np.testing.assert_array_equal(decode(fmt, r.body, "sum"), reference_sum(frames[ns], bad, cutoff, 3))
    r = daemon.get(f"/sum/{scan}.npy?reduce=mean")
    np.testing.assert_allclose(np.load(io.BytesIO(r.body)), reference_sum(frames, bad, cutoff, 1, mean=True))


def test_sum_without_mask_is_plain_sum(daemon, demo_root):
    frames = h5_frames(demo_root, "eiger/u16/scan_0001")
    r = daemon.get("/sum/eiger/u16/scan_0001.npy?mask=false&vert=0")
    np.testing.assert_array_equal(np.load(io.BytesIO(r.body)), frames[:H].astype(np.int64).sum(axis=0))


@pytest.mark.parametrize(("scan", "dtype"), SCANS)
def test_composite_mosaic(daemon, demo_root, scan, dtype):
    frames = h5_frames(demo_root, scan)
    bad, cutoff = h5_mask(demo_root, scan)
    snake = dtype == "uint32"
    b = 16
    r = daemon.get(f"/composite/{scan}.npy?vert=2:5&horz=1:4&bin={b}")
    assert r.status == 200, r.body
    got = np.load(io.BytesIO(r.body))
    th, tw = ROWS // b, COLS // b
    assert got.shape == (3 * th, 3 * tw) and got.dtype == np.float32
    for i, v in enumerate(range(2, 5)):
        for j, h in enumerate(range(1, 4)):
            n = v * H + ((H - 1 - h) if snake and v % 2 else h)
            want = reference_sum(frames[n:n + 1], bad, cutoff, b, mean=True)
            np.testing.assert_allclose(got[i * th:(i + 1) * th, j * tw:(j + 1) * tw], want, rtol=1e-6)
    png = daemon.get(f"/composite/{scan}.png?vert=2:5&horz=1:4&bin={b}")
    assert np.asarray(Image.open(io.BytesIO(png.body))).shape == (3 * th, 3 * tw, 4)
    for fmt in FORMATS:
        r = daemon.get(f"/composite/{scan}.{fmt}?vert=2:5&horz=1:4&bin={b}")
        assert r.status == 200 and r.content_type == CONTENT_TYPES[fmt], fmt
        np.testing.assert_allclose(decode(fmt, r.body, "composite"), got, rtol=1e-6)


def test_meta_and_browse(daemon, demo_root):
    m = daemon.get("/meta/eiger/u32/scan_0002.json").json()
    assert m["frames"] == {"available": V * H, "expected": V * H} and m["complete"]
    assert m["grid"] == {"vert": V, "horz": H, "fast_axis": "horz", "snake": True, "source": "metadata"}
    assert m["dtype"] == "uint32" and m["frame_shape"] == [ROWS, COLS]
    assert len(m["files"]) == 1 + -(-V * H // PER_FILE)
    b = daemon.get("/browse/eiger/u16").json()
    assert b["scans"][0]["path"] == "eiger/u16/scan_0001"
    assert daemon.get("/browse").json()["folders"] == ["eiger", "generic", "live", "tomo"]
    assert daemon.get("/browse/").json()["folders"] == ["eiger", "generic", "live", "tomo"]


def test_generic_scan_with_grid_override(daemon, demo_root):
    with h5py.File(os.path.join(demo_root, "generic/stack_0001.h5")) as f:
        frames = f["measurement/frames"][()]
    r = daemon.get("/frame/generic/stack_0001.npy?at=1,2")
    assert r.status == 400 and r.json()["parameter"] == "grid"
    r = daemon.get(f"/frame/generic/stack_0001.npy?at=1,2&grid=3x{H}")
    np.testing.assert_array_equal(np.load(io.BytesIO(r.body)), frames[H + 2])
    m = daemon.get(f"/meta/generic/stack_0001.json?grid=3x{H}").json()
    assert m["grid"]["source"] == "url" and m["grid"]["vert"] == 3
    r = daemon.get("/sum/generic/stack_0001.npy?mask=false")  # whole scan needs no grid
    np.testing.assert_array_equal(np.load(io.BytesIO(r.body)), frames.astype(np.int64).sum(axis=0))


def test_incomplete_scan_is_served_as_far_as_it_exists(daemon, demo_root):
    m = daemon.get("/meta/live/scan_0003.json").json()
    written = V * H // 2 + 1
    assert not m["complete"] and m["frames"] == {"available": written, "expected": V * H}
    assert daemon.get(f"/frame/live/scan_0003/{written - 1}.npy").status == 200
    r = daemon.get(f"/frame/live/scan_0003/{written}.npy")
    assert r.status == 404 and "not written yet" in r.json()["message"]
    r = daemon.get("/sum/live/scan_0003.json?mask=false")
    attrs = r.json()["attrs"]
    assert attrs["frames_used"] == written and attrs["frames_missing"] == V * H - written
    assert daemon.get("/frame/live/scan_0003/0.npy").headers["cache-control"] == "no-cache"
    comp = np.load(io.BytesIO(daemon.get("/composite/live/scan_0003.npy?bin=8").body))
    th = ROWS // 8
    assert np.isnan(comp[(V - 1) * th:, :]).all() and np.isfinite(comp[:th, :]).all()


def test_accept_negotiation_and_extension_wins(daemon):
    r = daemon.get("/frame/eiger/u16/scan_0001/3", headers={"Accept": "image/tiff"})
    assert r.status == 200 and r.content_type == "image/tiff"
    r = daemon.get("/frame/eiger/u16/scan_0001/3", headers={"Accept": "text/html;q=0.9, application/x-hdf5"})
    assert r.content_type == "application/x-hdf5"
    r = daemon.get("/frame/eiger/u16/scan_0001/3.npy", headers={"Accept": "image/png"})
    assert r.content_type == "application/x-npy"
    r = daemon.get("/frame/eiger/u16/scan_0001/3")
    assert r.content_type == "application/x-npy"  # default
    r = daemon.get("/frame/eiger/u16/scan_0001/3", headers={"Accept": "text/html"})
    assert r.status == 406 and r.json()["error"] == "not_acceptable"


def test_etag_and_cache_control(daemon):
    r = daemon.get("/frame/eiger/u16/scan_0001/3.npy")
    tag = r.headers["etag"]
    assert "max-age" in r.headers["cache-control"]
    again = daemon.get("/frame/eiger/u16/scan_0001/3.npy", headers={"If-None-Match": tag})
    assert again.status == 304 and again.body == b""
    other = daemon.get("/frame/eiger/u16/scan_0001/4.npy")
    assert other.headers["etag"] != tag
    png1 = daemon.get("/frame/eiger/u16/scan_0001/3.png?cmap=gray").headers["etag"]
    png2 = daemon.get("/frame/eiger/u16/scan_0001/3.png?cmap=hot").headers["etag"]
    assert png1 != png2
    # render parameters do not change numeric answers, so they share the ETag
    assert daemon.get("/frame/eiger/u16/scan_0001/3.npy?cmap=hot").headers["etag"] == tag


def test_health_and_metrics(daemon):
    assert daemon.get("/healthz").json()["status"] == "ok"
    daemon.get("/frame/eiger/u16/scan_0001/0.npy")
    text = daemon.get("/metrics").body.decode()
    assert 'dada_requests_total{endpoint="frame",status="200"}' in text
    assert "dada_frames_read_total" in text
    root = daemon.get("/")  # the web GUI, whose files the package ships
    assert root.status == 200 and root.content_type == "text/html" and b'src="/gui/main.js"' in root.body
    for name in ("main.js", "dada.css", "livemap.js"):
        assert daemon.get(f"/gui/{name}").status == 200
    assert daemon.get("/gui/../pyproject.toml").status == 404
    assert daemon.get("/gui/%2e%2e/%2e%2e/pyproject.toml").status in (403, 404)


def test_h5_answers_encode_concurrently(daemon):
    """Many h5 answers at once (the encoder's in-memory files once shared a name: 500 under load)."""
    from concurrent.futures import ThreadPoolExecutor

    urls = [f"/stxm/eiger/u16/scan_0001.h5?darkfield.rmin={5 + k / 7:.4f}&channels=darkfield" for k in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(daemon.get, urls))
    assert [r.status for r in answers] == [200] * len(urls)
    assert all(r.body[:8] == b"\x89HDF\r\n\x1a\n" for r in answers)

"""STXM channels: against a numpy reference, the planted truth and pyFAI, in every format."""

from __future__ import annotations

import io
import os
import shutil

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from helpers import Daemon, expect
from PIL import Image
from stxm_reference import annulus, reference

from dada.demo.sample import Detector, FrameModel, make_truth
from dada.demo.writer import ScanSpec, write_eiger

SCANS = [("eiger/u16/scan_0001", False), ("eiger/u32/scan_0002", True)]


def load(root, scan):
    with h5py.File(os.path.join(root, scan + "_master.h5")) as f:
        keys = sorted(k for k in f["entry/data"] if k.startswith("data_"))
        frames = np.concatenate([f["entry/data"][k][()] for k in keys])
        d = f["entry/instrument/detector"]
        bad = d["detectorSpecific/pixel_mask"][()] != 0
        cutoff = float(d["detectorSpecific/countrate_correction_count_cutoff"][()])
        cx, cy = float(d["beam_center_x"][()]), float(d["beam_center_y"][()])
        vh = f["entry/scan/grid_shape"][()]
    return frames, bad, cutoff, cx, cy, tuple(int(v) for v in vh)


def npy(d: Daemon, url: str) -> np.ndarray:
    r = d.get(url)
    assert r.status == 200, (url, r.body)
    return np.load(io.BytesIO(r.body))


def h5(d: Daemon, url: str) -> dict[str, np.ndarray]:
    """Every array of an h5 answer."""
    r = d.get(url)
    assert r.status == 200, (url, r.body)
    with h5py.File(io.BytesIO(r.body)) as f:
        return {k: f[k][()] for k in f}


def selection_frames(vh, snake, vert, horz):
    V, H = vh
    return np.array([[v * H + ((H - 1 - h) if snake and v % 2 else h) for h in horz] for v in vert])


PARAMS = dict(rmin=6.0, rmax=24.0, rdpc=5.0, nsectors=12, nbins=9)


@pytest.mark.parametrize(("scan", "snake"), SCANS)
def test_channels_match_numpy_reference(daemon, demo_root, scan, snake):
    frames, bad, cutoff, cx, cy, vh = load(demo_root, scan)
    vert, horz = range(1, 5), range(0, 8, 3)
    idx = selection_frames(vh, snake, vert, horz)
    ref = reference(frames[idx.ravel()], bad, cutoff, cx, cy, radial_rmin=2.0, **PARAMS)
    shape = idx.shape
    sel = "vert=1:5&horz=0:8:3"
    ring = f"rmin={PARAMS['rmin']}&rmax={PARAMS['rmax']}"
    df = npy(daemon, f"/darkfield/{scan}.npy?{sel}&{ring}")
    np.testing.assert_allclose(df, ref["darkfield"].reshape(shape), rtol=1e-12)
    tr = npy(daemon, f"/darkfield/{scan}.npy?{sel}&{ring}&output=transmission")
    np.testing.assert_allclose(tr, ref["transmission"].reshape(shape), rtol=1e-12)
    com = npy(daemon, f"/dpc/{scan}.npy?{sel}&rdpc={PARAMS['rdpc']}")
    np.testing.assert_allclose(com, ref["com"].T.reshape(2, *shape), rtol=1e-9, atol=1e-12)
    az = f"/azimuthal/{scan}.npy?{sel}&{ring}&nsectors={PARAMS['nsectors']}"
    np.testing.assert_allclose(npy(daemon, az), np.moveaxis(ref["sectors"], 1, 0).reshape(-1, *shape), rtol=1e-12)
    np.testing.assert_allclose(npy(daemon, az + "&output=anisotropy"), ref["anisotropy"].reshape(shape), rtol=1e-9)
    ori = npy(daemon, az + "&output=orientation")
    diff = (ori - ref["orientation"].reshape(shape) + 90) % 180 - 90
    np.testing.assert_allclose(diff, 0, atol=1e-7)
    rad = npy(daemon, f"/radial/{scan}.npy?{sel}&rmin=2&rmax={PARAMS['rmax']}&nbins={PARAMS['nbins']}")
    np.testing.assert_allclose(rad, np.moveaxis(ref["radial"], 1, 0).reshape(-1, *shape), rtol=1e-12)
    # /stxm computes all four in one pass, with the same numbers
    both = (f"/stxm/{scan}.h5?{sel}&darkfield.rmin=6&darkfield.rmax=24&dpc.rdpc=5&azimuthal.rmin=6"
            f"&azimuthal.rmax=24&azimuthal.nsectors=12&radial.rmin=2&radial.rmax=24&radial.nbins=9")
    r = daemon.get(both)
    assert r.status == 200, r.body
    with h5py.File(io.BytesIO(r.body)) as f:
        np.testing.assert_allclose(f["darkfield.darkfield"][()], df)
        np.testing.assert_allclose(f["dpc.dpc"][()], com)
        np.testing.assert_allclose(f["azimuthal.anisotropy"][()], ref["anisotropy"].reshape(shape), rtol=1e-9)
        np.testing.assert_allclose(f["radial.radial"][()], rad)
        assert f.attrs["scan"] == scan
        assert '"rdpc": 5.0' in f.attrs["dpc"]


@pytest.mark.parametrize(("scan", "snake"), SCANS)
def test_maxpixel_and_contrast_match_numpy(daemon, demo_root, scan, snake):
    """The two channels that are not sums (a max; Σv² beside Σv), alone and fused with the four, on frames
    with masked pixels and saturated ones (which both leave out)."""
    frames, bad, cutoff, cx, cy, vh = load(demo_root, scan)
    assert (frames[:, ~bad] >= cutoff).any() and bad.any()  # the data have both
    idx = selection_frames(vh, snake, range(0, 6), range(0, 8))
    sel = "vert=0:6&horz=0:8"
    for rmin, rmax in ((0.0, 30.0), (4.0, 12.5)):
        ref = annulus(frames[idx.ravel()], bad, cutoff, cx, cy, rmin=rmin, rmax=rmax)
        ring = f"rmin={rmin}&rmax={rmax}"
        mx = npy(daemon, f"/maxpixel/{scan}.npy?{sel}&{ring}")
        np.testing.assert_array_equal(mx, ref["maxpixel"].reshape(idx.shape))
        assert (mx < cutoff).all()  # saturated pixels left out
        ct = npy(daemon, f"/contrast/{scan}.npy?{sel}&{ring}")
        np.testing.assert_allclose(ct, ref["contrast"].reshape(idx.shape), rtol=1e-9)
        six = h5(daemon, f"/stxm/{scan}.h5?{sel}&channels=darkfield,dpc,azimuthal,radial,maxpixel,contrast"
                 f"&maxpixel.rmin={rmin}&maxpixel.rmax={rmax}&contrast.rmin={rmin}&contrast.rmax={rmax}")
        np.testing.assert_array_equal(six["maxpixel.maxpixel"], mx)
        np.testing.assert_array_equal(six["contrast.contrast"], ct)
        np.testing.assert_array_equal(six["darkfield.darkfield"], npy(daemon, f"/darkfield/{scan}.npy?{sel}"))


def test_an_annulus_without_valid_pixels_is_nan(daemon, demo_root):
    frames, bad, cutoff, cx, cy, vh = load(demo_root, "eiger/u16/scan_0001")
    user = np.zeros(frames.shape[1:], dtype=np.uint8)
    rows, cols = np.indices(user.shape)
    r = np.hypot(cols - cx, rows - cy)
    user[(r >= 3) & (r < 9)] = 1
    folder = os.path.join(demo_root, "masks-annulus")
    os.makedirs(folder, exist_ok=True)
    try:
        np.save(os.path.join(folder, "ring.npy"), user)
        for route in ("maxpixel", "contrast"):
            got = npy(daemon, f"/{route}/eiger/u16/scan_0001.npy?rmin=3&rmax=9&usermask=masks-annulus/ring.npy")
            assert got.shape == vh and np.isnan(got).all()
            wider = npy(daemon, f"/{route}/eiger/u16/scan_0001.npy?rmin=3&rmax=12&usermask=masks-annulus/ring.npy")
            ref = annulus(frames, bad | (user != 0), cutoff, cx, cy, rmin=3, rmax=12)[route]
            np.testing.assert_allclose(wider.ravel(), ref[selection_frames(vh, False, range(6), range(8)).ravel()],
                                       rtol=1e-9)
    finally:
        shutil.rmtree(folder)


def test_selections_glue_into_the_whole_scan(daemon):
    """Every selection holds exactly what the whole-scan answer holds there (the cluster relies on it)."""
    scan = "eiger/u32/scan_0002"
    for route in ("darkfield", "dpc", "azimuthal", "radial", "maxpixel", "contrast"):
        whole = npy(daemon, f"/{route}/{scan}.npy")
        top = npy(daemon, f"/{route}/{scan}.npy?vert=0:3")
        bottom = npy(daemon, f"/{route}/{scan}.npy?vert=3:6")
        np.testing.assert_array_equal(np.concatenate([top, bottom], axis=-2), whole)
    med = npy(daemon, f"/dpc/{scan}.npy?reference=median")
    np.testing.assert_array_equal(npy(daemon, f"/dpc/{scan}.npy?reference=median&vert=2&horz=1:5"), med[:, 2:3, 1:5])
    raw = npy(daemon, f"/dpc/{scan}.npy")
    np.testing.assert_allclose(med, raw - np.nanmedian(raw.reshape(2, -1), axis=1)[:, None, None], atol=1e-12)


def test_dpc_rotation_flip_and_mrad(daemon, demo_root):
    scan = "eiger/u16/scan_0001"
    base = npy(daemon, f"/dpc/{scan}.npy")
    rot = npy(daemon, f"/dpc/{scan}.npy?rotation=90&flip=true")
    np.testing.assert_allclose(rot[0], -base[1], atol=1e-12)
    np.testing.assert_allclose(rot[1], -base[0], atol=1e-12)
    mrad = npy(daemon, f"/dpc/{scan}.npy?unit=mrad")
    np.testing.assert_allclose(mrad, base * 75e-6 / 2.0 * 1e3)
    mag = daemon.get(f"/dpc/{scan}.csv?component=magnitude").body.decode()
    np.testing.assert_allclose(np.loadtxt(io.StringIO(mag), delimiter=","), np.hypot(base[0], base[1]), rtol=1e-8)
    ang = np.loadtxt(io.StringIO(daemon.get(f"/dpc/{scan}.csv?component=angle").body.decode()), delimiter=",")
    np.testing.assert_allclose(ang, np.degrees(np.arctan2(base[1], base[0])), rtol=1e-8)


def test_radial_q_axis_and_sum(daemon):
    scan = "eiger/u16/scan_0001"
    r = daemon.get(f"/radial/{scan}.h5?unit=q&nbins=20&rmin=3&rmax=25&reduce=sum&vert=0:2")
    with h5py.File(io.BytesIO(r.body)) as f:
        axis, prof = f["axis"][()], f["radial"][()]
    lam_nm = 0.1
    q = lambda rr: 4 * np.pi / lam_nm * np.sin(np.arctan(rr * 75e-6 / 2.0) / 2)  # noqa: E731
    edges = np.linspace(q(3), q(25), 21)
    np.testing.assert_allclose(axis, (edges[:-1] + edges[1:]) / 2)
    assert prof.shape == (20,) and np.isfinite(prof).all()
    png = Image.open(io.BytesIO(daemon.get(f"/radial/{scan}.png?unit=q&reduce=sum&log=1").body))
    assert png.size == (640, 400)  # drawn as a curve


def test_stxm_every_format(daemon):
    scan = "eiger/u32/scan_0002"
    want = npy(daemon, f"/azimuthal/{scan}.npy?output=anisotropy")
    base = f"/azimuthal/{scan}"
    for fmt in ("tiff", "csv", "json", "mat", "h5"):
        r = daemon.get(f"{base}.{fmt}?output=anisotropy")
        assert r.status == 200, (fmt, r.body)
        if fmt == "tiff":
            got = tifffile.imread(io.BytesIO(r.body))
            np.testing.assert_allclose(got, want.astype(np.float32))
        elif fmt == "csv":
            np.testing.assert_allclose(np.loadtxt(io.StringIO(r.body.decode()), delimiter=","), want, rtol=1e-8)
        elif fmt == "json":
            arrays = r.json()["arrays"]
            assert set(arrays) == {"anisotropy", "sectors", "orientation"}
            np.testing.assert_allclose(np.array(arrays["anisotropy"]["data"], dtype=float), want)
        elif fmt == "mat":
            m = scipy.io.loadmat(io.BytesIO(r.body))
            np.testing.assert_allclose(m["anisotropy"], want)
            assert m["sectors"].shape == (16, *want.shape)
        else:
            with h5py.File(io.BytesIO(r.body)) as f:
                np.testing.assert_allclose(f["anisotropy"][()], want)
    img = np.asarray(Image.open(io.BytesIO(daemon.get(f"{base}.png").body)))
    assert img.shape == (*want.shape, 4)
    # orientation as hue: points with the same orientation share a hue
    for route, q in (("darkfield", ""), ("dpc", "component=x"), ("radial", "")):
        r = daemon.get(f"/{route}/{scan}.png?{q}")
        assert r.status == 200 and r.content_type == "image/png", (route, r.body)


IMPOSSIBLE = [
    ("/darkfield/eiger/u16/scan_0001.npy?rmin=20&rmax=10", "rmin"),
    ("/darkfield/eiger/u16/scan_0001.npy?rmin=10&rmax=10", "rmin"),
    ("/darkfield/eiger/u16/scan_0001.npy?rmax=500", "rmax"),
    ("/darkfield/eiger/u16/scan_0001.npy?rmin=-1", "rmin"),
    ("/azimuthal/eiger/u16/scan_0001.npy?nsectors=2", "nsectors"),
    ("/azimuthal/eiger/u16/scan_0001.npy?rmin=300", "rmin"),
    ("/dpc/eiger/u16/scan_0001.npy?rdpc=0", "rdpc"),
    ("/dpc/eiger/u16/scan_0001.npy?rdpc=400", "rdpc"),
    ("/dpc/generic/stack_0001.npy?grid=3x8&cx=30&cy=30&unit=mrad", "unit"),
    ("/radial/generic/stack_0001.npy?grid=3x8&cx=30&cy=30&unit=q", "unit"),
    ("/dpc/generic/stack_0001.npy?grid=3x8", "cx"),
    ("/dpc/eiger/u16/scan_0001.npy?cx=500", "cx"),
    ("/radial/eiger/u16/scan_0001.npy?nbins=0", "nbins"),
    ("/stxm/eiger/u16/scan_0001.npy?channels=darkfield,foo", "channels"),
    ("/stxm/eiger/u16/scan_0001.npy?channels=darkfield&output=dpc.dpc", "output"),
    ("/stxm/eiger/u16/scan_0001.npy?azimuthal.nsectors=1", "azimuthal.nsectors"),
    ("/stxm/eiger/u16/scan_0001.npy?radial.rmax=999", "radial.rmax"),
    ("/darkfield/eiger/u16/scan_0001.npy?usermask=nope.npy", "usermask"),
    ("/darkfield/eiger/u16/scan_0001.npy?usermask=../../etc/passwd", "usermask"),
]


@pytest.mark.parametrize(("url", "param"), IMPOSSIBLE)
def test_impossible_parameters_are_400(daemon, url, param):
    expect(daemon, url, 400, parameter=param)


def test_generic_scan_with_given_centre(daemon, demo_root):
    with h5py.File(os.path.join(demo_root, "generic/stack_0001.h5")) as f:
        frames = f["measurement/frames"][()]
    ref = reference(frames[:8], np.zeros(frames.shape[1:], bool), np.inf, 30.0, 28.0, rmin=5, rmax=20, rdpc=4,
                    nsectors=8, nbins=4)
    got = npy(daemon, "/darkfield/generic/stack_0001.npy?grid=3x8&cx=30&cy=28&rmin=5&rmax=20&vert=0")
    np.testing.assert_allclose(got.ravel(), ref["darkfield"])


def test_usermask_excludes_pixels(daemon, demo_root):
    frames, bad, cutoff, cx, cy, vh = load(demo_root, "eiger/u16/scan_0001")
    user = np.zeros(frames.shape[1:], dtype=np.uint8)
    user[:, :30] = 1
    folder = os.path.join(demo_root, "masks")
    os.makedirs(folder, exist_ok=True)
    try:
        np.save(os.path.join(folder, "left.npy"), user)
        ref = reference(frames[:8], bad | (user != 0), cutoff, cx, cy, **PARAMS)
        got = npy(daemon, "/darkfield/eiger/u16/scan_0001.npy?vert=0&rmin=6&rmax=24&usermask=masks/left.npy")
        np.testing.assert_allclose(got.ravel(), ref["darkfield"])
    finally:
        shutil.rmtree(folder)  # the demo root is shared by the other tests


def test_incomplete_scan_maps_fill_in(daemon):
    df = npy(daemon, "/darkfield/live/scan_0003.npy")
    assert np.isfinite(df.ravel()[:25]).all() and np.isnan(df.ravel()[25:]).all()


# -- ground truth ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def truth_daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("truth")
    spec = ScanSpec(10, 12, Detector(160, 160, "uint32"), 60, seed=7)
    truth = write_eiger(str(root), "t", spec, progress=lambda m: None)
    d = Daemon(["serve", str(root)])
    yield d, truth
    d.stop()


def test_truth_dpc_orientation_anisotropy_darkfield(truth_daemon):
    d, truth = truth_daemon
    # The scattering tail cut by the disc pulls the COM slightly towards the nominal centre: a wide disc
    # keeps that bias under 10 % of the largest planted shift (1.5 px).
    com = npy(d, "/dpc/t.npy?rdpc=16")
    err = np.hypot(com[0] - truth.dpc_x, com[1] - truth.dpc_y)
    assert np.median(err) < 0.05 and err.max() < 0.15, (np.median(err), err.max())
    az = npy(d, "/azimuthal/t.npy?rmin=12&rmax=60&nsectors=16&output=anisotropy")
    ori = npy(d, "/azimuthal/t.npy?rmin=12&rmax=60&nsectors=16&output=orientation")
    sinc = np.sin(2 * np.pi / 16) / (2 * np.pi / 16)  # a sector averages cos(2φ) over its width
    strong = truth.anisotropy > 0.1
    np.testing.assert_allclose(az[strong], truth.anisotropy[strong] * sinc, atol=0.03)
    dori = (ori - truth.orientation + 90) % 180 - 90
    # noise, and sectors crossing the module gap (their pixels' radii, hence means, shift), cost a few degrees
    assert np.median(np.abs(dori[strong])) < 2.0 and np.abs(dori[strong]).max() < 6.0
    df = npy(d, "/darkfield/t.npy?rmin=12&rmax=60")
    ratio = df / (truth.scatter * truth.transmission)
    assert ratio.std() / ratio.mean() < 0.05
    # Against the generator's expected image (the Poisson mean) summed over the same pixels: within noise.
    meta = d.get("/meta/t.json").json()
    det = Detector(160, 160, "uint32")
    model = FrameModel(det, truth)
    bad = npy(d, "/frame/t/0.npy") == np.iinfo(np.uint32).max
    rows, cols = np.indices((160, 160))
    r = np.hypot(cols - meta["geometry"]["beam_center_x"], rows - meta["geometry"]["beam_center_y"])
    tr = npy(d, "/darkfield/t.npy?rmin=6&rmax=30&output=transmission")
    df = npy(d, "/darkfield/t.npy?rmin=6&rmax=30")
    for v, h in [(0, 0), (3, 7), (9, 11), (5, 2)]:
        lam = model.expected(v, h)
        for got, sel in ((tr[v, h], r < 6), (df[v, h], (r >= 6) & (r < 30))):
            want = lam[sel & ~bad].sum()
            assert abs(got - want) < 5 * np.sqrt(want) + 0.01 * want, (v, h, got, want)


def test_quick_frames_are_distinct_and_within_noise_of_the_model(tmp_path):
    """The benchmarks' files (``ScanSpec(quick=True)``): every frame its own Poisson draw, with the counts the
    model expects (``quick_frame`` keeps the scattering about the nominal centre; only the beam moves)."""
    spec = ScanSpec(3, 4, Detector(40, 48, "uint16"), 5, seed=2, quick=True)
    write_eiger(str(tmp_path), "q", spec, progress=lambda m: None)
    frames, *_ = load(str(tmp_path), "q")
    assert len(frames) == 12 and len({f.tobytes() for f in frames}) == 12

    det = Detector(120, 128, "uint32")
    truth = make_truth(3, 4)
    model = FrameModel(det, truth)
    rng = np.random.default_rng(5)
    mask = det.pixel_mask(rng)
    rows, cols = np.indices(mask.shape)
    cx, cy = det.beam_center
    for v, h in [(0, 0), (1, 2), (2, 3)]:
        a, b = model.quick_frame(v, h, rng, mask), model.quick_frame(v, h, rng, mask)
        assert not np.array_equal(a, b)
        assert (a[mask != 0] == np.iinfo(np.uint32).max).all()
        lam = model.expected(v, h)
        spot = np.hypot(cols - cx - truth.dpc_x[v, h], rows - cy - truth.dpc_y[v, h]) < 4
        r = np.hypot(cols - cx, rows - cy)
        for region in (spot, (r >= 20) & (r < 50)):  # where moving the scattering by 1.5 px does not matter
            sel = region & (mask == 0) & (a < det.saturation)  # not the two planted saturated pixels
            got, want = a[sel].sum(dtype=np.float64), lam[sel].sum()
            assert abs(got - want) < 5 * np.sqrt(want) + 0.02 * want, (v, h, got, want)


def test_radial_matches_pyfai(truth_daemon):
    """pyFAI (exact per-pixel binning, no solid angle) as an oracle on the same geometry and mask."""
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    d, _ = truth_daemon
    meta = d.get("/meta/t.json").json()
    g = meta["geometry"]
    frame = npy(d, "/frame/t/17.npy").astype(np.float64)
    rmin, rmax, nbins = 4.0, 70.0, 33
    rows, cols = np.indices(frame.shape)
    r = np.hypot(cols - g["beam_center_x"], rows - g["beam_center_y"])
    mask = (npy(d, "/frame/t/17.npy") >= g["saturation"]) | (r < rmin) | (r >= rmax)
    pix = g["x_pixel_size"]
    ai = AzimuthalIntegrator(dist=g["detector_distance"], poni1=(g["beam_center_y"] + 0.5) * pix,
                             poni2=(g["beam_center_x"] + 0.5) * pix, pixel1=pix, pixel2=pix)
    res = ai.integrate1d(frame, nbins, unit="r_mm", radial_range=(rmin * pix * 1e3, rmax * pix * 1e3),
                         method=("no", "csr", "cython"), correctSolidAngle=False, mask=mask,
                         polarization_factor=None)
    ours = npy(d, f"/radial/t.npy?rmin={rmin}&rmax={rmax}&nbins={nbins}&vert=1&horz=5")[:, 0, 0]
    np.testing.assert_allclose(res.radial / (pix * 1e3), np.linspace(rmin, rmax, nbins + 1)[:-1] + (rmax - rmin)
                               / nbins / 2, rtol=1e-6)
    np.testing.assert_allclose(ours, res.sum_signal / res.count, rtol=1e-9)


@pytest.mark.parametrize("route", ["darkfield", "dpc", "azimuthal", "radial", "maxpixel", "contrast", "stxm"])
@pytest.mark.parametrize("scan", ["eiger/u16/scan_0001", "eiger/u32/scan_0002"])
def test_every_stxm_route_in_every_format(daemon, route, scan):
    """npy is the reference; the other formats carry the same numbers (tiff as float32)."""
    want = npy(daemon, f"/{route}/{scan}.npy?vert=1:4")
    name = {"stxm": "darkfield.darkfield", "azimuthal": "sectors"}.get(route, route)
    for fmt, ctype in (("tiff", "image/tiff"), ("json", "application/json"), ("h5", "application/x-hdf5"),
                       ("mat", "application/x-matlab-data"), ("png", "image/png"), ("csv", "text/csv")):
        r = daemon.get(f"/{route}/{scan}.{fmt}?vert=1:4")
        assert r.status == 200 and r.content_type == ctype, (route, fmt, r.body[:200])
        if fmt == "tiff":
            np.testing.assert_allclose(tifffile.imread(io.BytesIO(r.body)), want.astype(np.float32))
        elif fmt == "json":
            data = r.json()["arrays"][name]["data"]
            got = np.array(data, dtype=object)
            got = np.where(got == None, np.nan, got).astype(float)  # noqa: E711  (null is NaN in JSON)
            np.testing.assert_allclose(got, want)
        elif fmt == "h5":
            with h5py.File(io.BytesIO(r.body)) as f:
                np.testing.assert_allclose(f[name][()], want)
        elif fmt == "mat":
            key = name.replace(".", "_")
            np.testing.assert_allclose(scipy.io.loadmat(io.BytesIO(r.body))[key].reshape(want.shape), want)
        elif fmt == "png":
            assert Image.open(io.BytesIO(r.body)).size[0] > 0
        else:
            assert len(r.body.decode().splitlines()) > 0

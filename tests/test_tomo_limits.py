"""Tomography parameters cannot crash or exhaust the daemon: physical ranges are 400s naming the parameter,
requests whose working memory (Paganin's padding above all) is over the limit are 413s before any reading,
and valid Paganin requests give the numbers of the prep functions called by hand."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from helpers import Daemon, expect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dada.demo import TOMO_SIZES
from dada.demo.tomo import TomoSpec, write_nxtomo, write_tdf
from dada.tomo.prep import flat_field, flat_for_projections, minus_log, paganin
from dada.tomo.routes import MAX_WORK_BYTES

SLICE = "/tomo/slice/tomo/nxtomo_0001"
PROBE = "paganin=true&energy=20&distance=1&pixel_size=1e-6&delta_beta=100"  # 2.8 GB measured before the limit

OUT_OF_RANGE = [
    (f"{SLICE}/0.npy?paganin=true&energy=1e-320", "energy"),
    (f"{SLICE}/0.npy?paganin=true&energy=1e-12", "energy"),
    (f"{SLICE}/0.npy?paganin=true&energy=1e9", "energy"),
    (f"{SLICE}/0.npy?paganin=true&pixel_size=1e-320", "pixel_size"),
    (f"{SLICE}/0.npy?paganin=true&pixel_size=1", "pixel_size"),
    (f"{SLICE}/0.npy?paganin=true&distance=1e308", "distance"),
    (f"{SLICE}/0.npy?paganin=true&distance=0", "distance"),
    (f"{SLICE}/0.npy?paganin=true&delta_beta=1e308", "delta_beta"),
    (f"{SLICE}/0.npy?paganin=true&delta_beta=-3", "delta_beta"),
    (f"{SLICE}/0.npy?ring_size=1e9", "ring_size"),
    (f"{SLICE}/0.npy?ring_size=1", "ring_size"),
    (f"{SLICE}/0.npy?every=0", "every"),
    (f"{SLICE}/0.npy?bin=1000", "bin"),
    (f"{SLICE}/0.npy?center=1e308", "center"),
    (f"{SLICE}/0.npy?center=-5", "center"),
    (f"{SLICE}/-1.npy", "row"),
    # the filter would reach over 4 detector sizes (96 px here): the padding is pointless
    (f"{SLICE}/0.npy?paganin=true&pixel_size=1e-9", "pixel_size"),
    (f"{SLICE}/0.npy?paganin=true&distance=1000", "distance"),
    (f"{SLICE}/0.npy?paganin=true&delta_beta=1e6", "delta_beta"),
]


@pytest.mark.parametrize(("url", "param"), OUT_OF_RANGE)
def test_out_of_range_is_a_400_naming_the_parameter(daemon, url, param):
    expect(daemon, url, 400, parameter=param)


@pytest.mark.parametrize("value", ["0x10", "nan", "inf", "-inf", "left", "1e999"])
def test_center_says_what_it_takes(daemon, value):
    body = expect(daemon, f"{SLICE}/8.npy?center={value}", 400, parameter="center",
                  allowed="auto or a number of pixels")
    assert "auto" in body["message"] and "convert" not in body["message"], body


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> str:
    """The demo's 'small' tomography files (32 rows x 256 cols x 360 projections), where the probe's
    Paganin padding needs about 3 GB."""
    root = tmp_path_factory.mktemp("tomo-small")
    rows, cols, n = TOMO_SIZES["small"]
    write_nxtomo(str(root / "tomo/nxtomo_0001.h5"), TomoSpec(rows, cols, n, seed=5))
    write_tdf(str(root / "tomo/tdf_0001.h5"), TomoSpec(rows, cols, n, center_offset=-2.6, seed=6))
    return str(root)


@pytest.fixture(scope="module")
def small_daemon(small_root):
    d = Daemon(["serve", small_root])
    yield d
    d.stop()


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (tomography reads bands in child processes)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, pp in parents.items() if pp == p and c not in tree]
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024
        except (OSError, AttributeError):
            continue  # exited, or a zombie
    return total


@pytest.mark.parametrize("name", ["nxtomo_0001", "tdf_0001"])
def test_paganin_memory_is_a_413_before_reading(small_daemon, name):
    url = f"/tomo/slice/tomo/{name}/0.npy?{PROBE}"  # gives the geometry the TDF file lacks
    before = tree_rss(small_daemon.proc.pid)
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(tree_rss(small_daemon.proc.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.monotonic()
    try:
        body = expect(small_daemon, url, 413, limit="max_work_bytes")
    finally:
        took = time.monotonic() - t0
        done.set()
        sampler.join()
    assert took < 2, took
    assert max(peak) - before < 200 * 2**20, (max(peak) - before) / 2**20
    assert body["estimate"] > MAX_WORK_BYTES and "distance" in body["message"] and "bin" in body["message"]
    # what the message suggests answers
    r = small_daemon.get(url.replace("distance=1&", "distance=0.1&"))
    assert r.status == 200, r.body


def test_working_memory_estimate_bounds_the_measured_peak(small_root):
    """The model is an upper bound of what a band with Paganin takes (in a process of its own), and not a
    wild one."""
    code = """
import json, re, sys
from dada.sources.catalog import Catalog
from dada.tomo import routes
def status(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
tomo = Catalog({"": sys.argv[1]}).tomo("tomo/nxtomo_0001")
args = routes.Sinogram.model.parse({"paganin": "true", "distance": "0.3"})
model = max(routes.work_bytes(tomo, args, routes.paganin_pad(tomo, args), False).values())
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # VmHWM from here
routes.sinogram(tomo, args, 8)
print(json.dumps([model, status("VmHWM") - base]))
"""
    out = subprocess.run([sys.executable, "-c", code, small_root], capture_output=True, text=True, check=True)
    model, measured = json.loads(out.stdout)
    assert measured <= model <= 1.5 * measured, (model / 2**20, measured / 2**20)


def by_hand(path: str, **geometry: float) -> np.ndarray:
    """-log Paganin-filtered projections of a whole NXtomo file, from the prep functions."""
    with h5py.File(path) as f:
        data, key = f["entry/data/data"][()].astype(np.float32), f["entry/data/image_key"][()]
    flat = flat_for_projections(data[key == 1], np.flatnonzero(key == 1), np.flatnonzero(key == 0), "mean")
    trans = flat_field(data[key == 0], flat, data[key == 2].mean(axis=0)[None])
    return minus_log(paganin(trans, geometry["pixel_size"], geometry["distance"], geometry["energy"],
                             geometry["delta_beta"]))


@pytest.mark.parametrize("query", [dict(distance=0.2, delta_beta=300.0), dict(energy=12.0, delta_beta=50.0)])
def test_valid_paganin_gives_the_prep_functions_numbers(daemon, demo_root, query):
    rows = TOMO_SIZES["tiny"][0]
    geometry = {"pixel_size": 1e-6, "distance": 0.05, "energy": 20.0, **query}  # the demo file's, then the query's
    want = by_hand(os.path.join(demo_root, "tomo/nxtomo_0001.h5"), **geometry)  # the margin spans all 16 rows
    q = "&".join(f"{k}={v}" for k, v in query.items())
    for row in (0, rows // 2, rows - 1):
        r = daemon.get(f"/tomo/sinogram/tomo/nxtomo_0001/{row}.npy?paganin=true&{q}")
        assert r.status == 200, r.body
        np.testing.assert_allclose(np.load(io.BytesIO(r.body)), want[:, row], rtol=1e-6, atol=1e-7)


NAMES = ("energy", "distance", "pixel_size", "delta_beta", "center", "ring_size")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES), value=st.floats(allow_nan=True, allow_infinity=True) | st.integers())
def test_any_number_is_never_a_500(daemon, name, value):
    text = repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)
    if name == "center":
        r = daemon.get(f"{SLICE}/3.npy?every=8&center={text}")
    else:
        r = daemon.get(f"/tomo/sinogram/tomo/nxtomo_0001/3.npy?paganin=true&rings=true&{name}={text}")
    assert r.status in (200, 400, 413), (name, text, r.status, r.body[:300])
    if r.status != 200:
        assert r.json()["parameter" if r.status == 400 else "limit"]

"""PNG answers people can read: whole-pixel enlargement, colour bars and hue wheels, the size bound, units."""

from __future__ import annotations

import io
import json
import urllib.parse

import numpy as np
import pytest
from helpers import Daemon, expect
from matplotlib import colormaps
from PIL import Image

from dada.encoders.render import MAX_PIXELS, PANEL_WIDTH, WHEEL_WIDTH, check_render, enlargement, legend
from dada.endpoint import Context, Result
from dada.errors import TooLarge
from dada.registry import ENDPOINTS
from dada.sources.catalog import Catalog
from dada.stxm.engine import Engine
from dada.stxm.local import LocalPartials

SCAN = "eiger/u16/scan_0001"  # a 6x8 grid of 64x72 frames
MAP = f"/darkfield/{SCAN}"


def get(d: Daemon, url: str) -> bytes:
    r = d.get(url)
    assert r.status == 200, (url, r.body)
    return r.body


def png(d: Daemon, url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(get(d, url))))


def npy(d: Daemon, url: str) -> np.ndarray:
    return np.load(io.BytesIO(get(d, url)))


def enlarged(rgba: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(rgba, s, axis=0), s, axis=1)


@pytest.fixture(scope="module")
def answer(demo_root):
    """What a route hands the png encoder for a query, computed in this process: (Result, parsed args)."""
    catalog = Catalog({"": demo_root})
    ctx = Context(catalog, LocalPartials(Engine(2)))
    by_name = {ep.name: ep for ep in ENDPOINTS}

    def run(name: str, path: str, query: str = "", item: int | None = None) -> tuple[Result, dict]:
        ep = by_name[name]
        args = ep.model.parse(dict(urllib.parse.parse_qsl(query)))
        check_render(args)
        target = ep.resolve(catalog, path, item)
        ep.plan(target, args, catalog)
        return ep.run(target, args, ctx), args

    return run


def test_enlargement_is_whole_pixels_and_the_bar_leaves_the_map_alone(daemon):
    base = png(daemon, f"{MAP}.png")
    h, w = base.shape[:2]
    assert (h, w) == (6, 8)
    np.testing.assert_array_equal(png(daemon, f"{MAP}.png?scale=3"), enlarged(base, 3))
    with_bar = png(daemon, f"{MAP}.png?scale=3&colorbar=true")
    assert with_bar.shape[1] == 3 * w + PANEL_WIDTH and with_bar.shape[0] >= 3 * h
    np.testing.assert_array_equal(with_bar[:3 * h, :3 * w], enlarged(base, 3))
    assert (with_bar[3 * h:, :3 * w, 3] == 0).all()  # below a short map: transparent, not stretched
    panel = with_bar[:, 3 * w:, :3].reshape(-1, 3).astype(int)
    for end in (0.0, 1.0):  # the bar runs through the map's colormap, end to end
        colour = np.array(colormaps["viridis"](end, bytes=True)[:3], dtype=int)
        assert np.abs(panel - colour).max(axis=1).min() <= 12, end


@pytest.mark.parametrize(("width", "scale"), [(50, 6), (55, 6), (16, 2), (7, 1), (8, 1)])
def test_width_chooses_the_largest_whole_scale(daemon, width, scale):
    base = png(daemon, f"{MAP}.png")
    np.testing.assert_array_equal(png(daemon, f"{MAP}.png?width={width}"), enlarged(base, scale))


def test_width_with_scale_is_400(daemon):
    expect(daemon, f"{MAP}.png?width=40&scale=2", 400, parameter="width")
    assert png(daemon, f"{MAP}.png?width=40&scale=1").shape == (30, 40, 4)
    expect(daemon, f"{MAP}.png?scale=65", 400, parameter="scale")
    expect(daemon, f"{MAP}.png?width=0", 400, parameter="width")


def test_too_many_pixels_is_413_naming_the_parameter(daemon):
    # the 384x576 full-resolution mosaic: scale 64 or width 8192 (scale 14) give over 40 Mpixel
    body = expect(daemon, f"/composite/{SCAN}.png?bin=1&scale=64", 413, parameter="scale", limit="max_pixels")
    assert body["estimate"] == 384 * 64 * 576 * 64
    expect(daemon, f"/composite/{SCAN}.png?bin=1&width=8192", 413, parameter="width")
    expect(daemon, f"{MAP}.png?width=8192", 413, parameter="width")  # width may ask beyond scale's 64
    assert daemon.get(f"/composite/{SCAN}.png?bin=1&scale=2").status == 200


def test_the_bound_is_exactly_max_pixels():
    side = 1000
    fits = int(np.sqrt(MAX_PIXELS)) // side
    assert enlargement({"scale": fits}, (side, side)) == fits
    with pytest.raises(TooLarge):
        enlargement({"scale": fits + 1}, (side, side))
    assert enlargement({"width": 20, "scale": 1}, (3, 0)) == 20  # an empty map does not divide by zero


def test_legend_limits_are_the_colours_used(daemon, answer):
    query = "cmap=viridis&plow=5&phigh=95"
    values = npy(daemon, f"{MAP}.npy")
    lo, hi = np.percentile(values[np.isfinite(values)], [5, 95])
    assert hi > lo
    lg = legend(*answer("darkfield", SCAN, query))
    assert lg == {"kind": "colormap", "cmap": "viridis", "vmin": pytest.approx(lo, rel=1e-12),
                  "vmax": pytest.approx(hi, rel=1e-12), "log": False, "unit": "counts"}
    json.dumps(lg, allow_nan=False)
    want = colormaps["viridis"](np.clip((values - lo) / (hi - lo), 0, 1), bytes=True)
    np.testing.assert_array_equal(png(daemon, f"{MAP}.png?{query}"), want)


def test_log_legend_is_in_data_units(daemon, answer):
    values = npy(daemon, f"{MAP}.npy")
    positive = np.log10(values[values > 0])
    lg = legend(*answer("darkfield", SCAN, "log=true"))
    assert lg["log"] is True
    assert lg["vmin"] == pytest.approx(10 ** np.percentile(positive, 0), rel=1e-9)
    assert lg["vmax"] == pytest.approx(10 ** np.percentile(positive, 99.9), rel=1e-9)
    given = legend(*answer("darkfield", SCAN, "log=true&vmin=10&vmax=1000"))
    assert (given["vmin"], given["vmax"]) == (pytest.approx(10.0), pytest.approx(1000.0))


def test_legend_of_an_empty_map_is_finite():
    lg = legend(Result({"a": np.full((2, 3), np.nan)}), {"log": True})
    assert (lg["vmin"], lg["vmax"]) == (1.0, 10.0)
    json.dumps(lg, allow_nan=False)


def test_hue_wheel_for_orientation_maps(daemon, answer):
    url = f"/azimuthal/{SCAN}"
    ori, ani = npy(daemon, f"{url}.npy?output=orientation"), npy(daemon, f"{url}.npy?output=anisotropy")
    ok = np.isfinite(ori) & np.isfinite(ani)
    lg = legend(*answer("azimuthal", SCAN, "colorbar=true"))
    assert lg == {"kind": "hue", "period": 180.0, "unit": "deg",
                  "vmax": pytest.approx(np.percentile(ani[ok], 99.9), rel=1e-12), "strength_unit": ""}
    base = png(daemon, f"{url}.png")
    wheel = png(daemon, f"{url}.png?colorbar=true&scale=2")
    assert wheel.shape[1] == 2 * base.shape[1] + WHEEL_WIDTH
    np.testing.assert_array_equal(wheel[:2 * base.shape[0], :2 * base.shape[1]], enlarged(base, 2))
    panel = wheel[:, 2 * base.shape[1]:, :3].reshape(-1, 3).astype(int)
    for hue in ((255, 0, 0), (0, 255, 255)):  # saturated red at 0°, cyan half a turn (90°) on
        assert np.abs(panel - np.array(hue)).max(axis=1).min() <= 40, hue


def test_curves_ignore_colorbar_and_are_drawn_finer(daemon):
    url = f"/radial/{SCAN}.png?reduce=sum"
    plain = get(daemon, url)
    assert get(daemon, url + "&colorbar=true") == plain
    assert png(daemon, url + "&scale=2").shape == (800, 1280, 4)


UNITS = [
    ("darkfield", SCAN, "", None, "counts"),
    ("darkfield", SCAN, "output=transmission", None, "counts"),
    ("dpc", SCAN, "", None, "px"),
    ("dpc", SCAN, "unit=mrad&component=x", None, "mrad"),
    ("dpc", SCAN, "component=angle", None, "deg"),
    ("azimuthal", SCAN, "output=orientation", None, "deg"),
    ("azimuthal", SCAN, "output=anisotropy", None, ""),
    ("radial", SCAN, "", None, "counts/px"),
    ("stxm", SCAN, "output=dpc.dpc&dpc.component=angle", None, "deg"),
    ("stxm", SCAN, "output=radial.radial", None, "counts/px"),
    ("frame", SCAN, "", 5, "counts"),
    ("sum", SCAN, "vert=0:2", None, "counts"),
    ("sum", SCAN, "vert=0:2&reduce=mean", None, "counts/px/frame"),
    ("composite", SCAN, "vert=0:2", None, "counts/px"),
    ("tomo-sinogram", "tomo/nxtomo_0001", "", 8, "-ln(I/I0)"),
    ("tomo-slice", "tomo/nxtomo_0001", "", 8, "1/px"),
]


@pytest.mark.parametrize(("route", "path", "query", "item", "unit"), UNITS)
def test_every_image_route_says_its_unit(answer, route, path, query, item, unit):
    lg = legend(*answer(route, path, query, item))
    assert lg["kind"] == "colormap" and lg["unit"] == unit


def test_curve_has_no_legend(answer):
    assert legend(*answer("radial", SCAN, "reduce=sum")) is None

"""Pixel maps of a new geometry, held array for array to numpy's formulas (``maps_reference``): every
channel's bins and the fused classes, on noisy masks, at centres on a pixel, between pixels and at the
frame's edge, with radii and sectors whose edges pixels lie exactly on."""

from __future__ import annotations

import numpy as np
import pytest
from maps_reference import bins as reference_bins
from maps_reference import fuse as reference_fuse
from maps_reference import polar as reference_polar

from dada.registry import CHANNELS
from dada.stxm import polar
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import Bins
from dada.stxm.pixelmaps import PixelMaps, fuse

CH = {c.name: c for c in CHANNELS}
SHAPE = (389, 421)  # 163769 pixels: the passes run in parts on threads
ARGS = {"rmin": 10.0, "rmax": None, "rdpc": 10.0, "nsectors": 16, "nbins": 100, "unit": "px", "reduce": "none"}
CENTRES = [(210.0, 194.0), (210.5, 194.5), (133.37, 301.81), (-0.5, 388.5), (420.5, 0.0), (0.0, 194.5)]
VARIANTS = [  # on a pixel centre, radii and sectors' edges run exactly through pixels
    {},
    {"rmin": 5.0, "rmax": 130.0, "rdpc": 25.0, "nsectors": 8, "nbins": 125},
    {"rmin": 0.0, "rmax": 100.0, "nsectors": 720, "nbins": 4096},
    {"rmin": 3.7, "rmax": 61.3, "rdpc": 2.2, "nsectors": 12, "nbins": 7},
    {"rmin": 12.0, "rmax": 200.0, "nbins": 60, "unit": "q"},
]


def geometry(cx: float, cy: float, seed: int) -> BeamGeometry:
    """A noisy mask: scattered dead pixels, a dead column, and a panel gap."""
    rng = np.random.default_rng(seed)
    good = rng.random(SHAPE) > 0.03
    good[:, 97] = False
    good[200:210] = False
    return BeamGeometry(SHAPE, cx, cy, good, 75e-6, 0.8, 1.2)


def fits(geo: BeamGeometry, args: dict) -> dict:
    """The arguments with radii that fit the frame about this centre (an edge centre has a quarter disc)."""
    a = dict(ARGS, **args)
    limit = geo.r_limit()
    a["rmax"] = None if a["rmax"] is None else min(a["rmax"], np.floor(limit))
    if a["rmax"] is None and geo.r_inside() <= a["rmin"]:
        a["rmax"] = np.floor(limit)
    return a


def assert_same(got: PixelMaps, want: PixelMaps) -> None:
    for field in want.kernel._fields:
        g, w = getattr(got.kernel, field), getattr(want.kernel, field)
        assert np.asarray(g).dtype == np.asarray(w).dtype, field
        np.testing.assert_array_equal(g, w, err_msg=field)
    np.testing.assert_array_equal(got.static_valid, want.static_valid)
    assert got.offsets == want.offsets
    assert got.accumulators == want.accumulators


@pytest.mark.parametrize(("cx", "cy"), CENTRES)
def test_radius_and_angle_are_numpys(cx, cy):
    geo = geometry(cx, cy, 1)
    r, phi = reference_polar(geo)
    np.testing.assert_array_equal(geo.radius(), r)
    np.testing.assert_array_equal(geo.angle(), phi)
    assert not np.signbit(geo.angle()).any()  # np.mod's zero is +0


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
@pytest.mark.parametrize(("cx", "cy"), CENTRES)
def test_every_channels_bins_are_the_formulas(cx, cy, variant):
    geo = geometry(cx, cy, variant)
    args = fits(geo, VARIANTS[variant])
    for name in ("darkfield", "dpc", "azimuthal", "radial", "maxpixel", "contrast"):
        got, want = CH[name].bins(geo, args), reference_bins(name, geo, args)
        assert got.count == want.count and got.index.dtype == np.int32 and got.index.shape == SHAPE
        np.testing.assert_array_equal(got.index, want.index, err_msg=name)


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
@pytest.mark.parametrize(("cx", "cy"), CENTRES)
def test_fused_maps_are_the_references(cx, cy, variant):
    geo = geometry(cx, cy, 10 + variant)
    args = fits(geo, VARIANTS[variant])
    for names in (("darkfield", "dpc", "azimuthal", "radial"), ("darkfield", "dpc", "azimuthal", "radial",
                  "maxpixel", "contrast"), ("dpc",), ("radial", "contrast")):
        accumulators = [CH[n].accumulators for n in names]
        got = fuse([CH[n].bins(geo, args) for n in names], accumulators, geo)
        assert_same(got, reference_fuse([reference_bins(n, geo, args) for n in names], accumulators, geo))


def test_edges_pixels_lie_on_are_tested():
    """The cases above hold pixels exactly on a radius edge and on a sector edge, where ``<`` for ``<=`` or
    another arctan2 would move them: a change to any pixel's bin there fails them."""
    geo = geometry(210.0, 194.0, 1)
    r, phi = reference_polar(geo)
    assert (r == 5.0).sum() >= 12 and (r == 25.0).sum() >= 12 and (r == 130.0).sum() >= 4
    on_sector_edge = (phi / (2 * np.pi) * 8) % 1 == 0
    assert on_sector_edge.sum() > 100
    moved = polar.rings(r, (-np.inf, np.nextafter(5.0, 6.0)), (0,))  # r <= 5 instead of r < 5
    assert (moved != reference_bins("dpc", geo, dict(ARGS, rdpc=5.0)).index).sum() == (r == 5.0).sum()


def test_plug_in_bins_of_any_integer_layout():
    """A channel may hand numpy bins of any integer dtype and layout: fused as the reference fuses them."""
    rng = np.random.default_rng(4)
    geo = geometry(100.0, 100.0, 4)
    wide = rng.integers(-1, 9, size=SHAPE[::-1]).astype(np.int64).T  # int64, Fortran order
    small = rng.integers(-1, 3, size=SHAPE).astype(np.int16)
    bins = [Bins(wide, 9), Bins(small, 3)]
    accumulators = [("sum", "max"), ("sum", "sx", "sy")]
    assert_same(fuse(bins, accumulators, geo), reference_fuse(bins, accumulators, geo))


def test_many_classes_take_the_sort_and_wide_class_numbers():
    """More combinations than a dense key table holds, and more classes than uint16 numbers."""
    rng = np.random.default_rng(6)
    geo = geometry(100.0, 100.0, 6)
    bins = [Bins(rng.integers(-1, 500, size=SHAPE).astype(np.int32), 500) for _ in range(3)]
    accumulators = [("sum",), ("max", "sq"), ("sum", "sx", "sy")]
    got = fuse(bins, accumulators, geo)
    assert got.kernel.cls.dtype == np.int32
    assert_same(got, reference_fuse(bins, accumulators, geo))


def test_no_pixel_in_any_bin():
    geo = geometry(100.0, 100.0, 7)
    bins = [Bins(np.full(SHAPE, -1, dtype=np.int32), 2)]
    got = fuse(bins, [("sum",)], geo)
    assert (got.kernel.first, got.kernel.last, got.nclasses) == (0, 0, 1)
    assert_same(got, reference_fuse(bins, [("sum",)], geo))


def test_approximate_azimuth_keeps_within_its_bound():
    """The polynomial azimuth the fused pass bins sectors by is within ANGLE_TOL / 3 of numpy's arctan2 (wrapped
    as ``polar.sectors`` wraps it) in every direction about several centres, the axes and diagonals included:
    pixels it leaves in doubt are redone with numpy's, so this bound is what makes the sectors exact."""
    from dada.stxm import polar_kernels

    for cx, cy in CENTRES:
        geo = geometry(cx, cy, 1)
        phi = reference_polar(geo)[1]
        y, x = np.indices(SHAPE, dtype=np.float64)
        approx = np.vectorize(polar_kernels.approx_angle)(x - cx, y - cy)
        gap = np.abs(approx - phi)
        gap = np.minimum(gap, 2 * np.pi - gap)  # 0 and 2π are the same direction
        assert gap.max() < polar_kernels.ANGLE_TOL / 3


def test_radii_where_sqrt_and_hypot_differ_bin_as_hypot():
    """The fused pass takes sqrt(x² + y²) for the radius and redoes with hypot the pixels near an edge: an edge
    exactly at a pixel's hypot radius, where sqrt's last bit differs, bins that pixel as numpy does."""
    geo = geometry(133.37, 301.81, 2)
    y, x = np.indices(SHAPE, dtype=np.float64)
    x, y = x - geo.cx, y - geo.cy
    r = np.hypot(x, y)
    differ = np.flatnonzero((np.sqrt(x * x + y * y) != r).ravel())
    assert differ.size > 100
    for e in r.ravel()[differ[::max(1, differ.size // 5)]]:
        args = fits(geo, {"rmin": float(e), "rmax": float(e) + 40.0, "rdpc": float(e), "nsectors": 8, "nbins": 7})
        for name in ("darkfield", "dpc", "azimuthal", "radial", "contrast"):
            np.testing.assert_array_equal(CH[name].bins(geo, args).index, reference_bins(name, geo, args).index,
                                          err_msg=f"{name} at edge {e!r}")
        names = ("darkfield", "dpc", "azimuthal", "radial")
        accumulators = [CH[n].accumulators for n in names]
        assert_same(fuse([CH[n].bins(geo, args) for n in names], accumulators, geo),
                    reference_fuse([reference_bins(n, geo, args) for n in names], accumulators, geo))


def test_rules_and_plug_in_bins_fused_together():
    """Built-in channels' bins (rules of the radius, one pass) between plug-in bins (from their index): each
    channel's digit where its place in the key puts it."""
    rng = np.random.default_rng(8)
    geo = geometry(210.5, 194.5, 8)
    args = fits(geo, VARIANTS[1])
    plug = Bins(rng.integers(-1, 5, size=SHAPE).astype(np.int32), 5)
    bins = [CH["azimuthal"].bins(geo, args), plug, CH["dpc"].bins(geo, args), plug, CH["radial"].bins(geo, args)]
    want = [reference_bins("azimuthal", geo, args), plug, reference_bins("dpc", geo, args), plug,
            reference_bins("radial", geo, args)]
    accumulators = [("sum",), ("max",), ("sum", "sx", "sy"), ("sum",), ("sum",)]
    assert_same(fuse(bins, accumulators, geo), reference_fuse(want, accumulators, geo))

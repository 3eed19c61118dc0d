"""benchmarks/stxm.py's answer check: a benchmark that let a wrong or NaN answer through would time it."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def stxm():
    spec = importlib.util.spec_from_file_location("bench_stxm", os.path.join(HERE, "..", "benchmarks", "stxm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_fails_on_any_mismatch_nan_or_missing_output(stxm):
    want = {"radial": np.array([[1.0, np.nan], [3.0, 4.0]]), "orientation": np.array([0.0, 90.0])}
    check = stxm.Check("tool", want, lambda answer: answer)
    check({"radial": want["radial"].copy(), "orientation": np.array([179.9999999999, 90.0])})  # 180° = 0°
    wrong = [{"radial": np.array([[1.0, 2.0], [3.0, 4.0]])},  # a number where the reference has NaN
             {"radial": np.array([[np.nan, np.nan], [3.0, 4.0]])},  # NaN where it has a number
             {"radial": np.array([[1.0, np.nan], [3.0, 4.000001]])},  # off by 2.5e-7
             {"radial": np.array([[1.0, np.nan], [3.0, np.inf]])},
             {"radial": np.array([[1.0, np.nan]])}]  # a point short
    for answer in wrong:
        with pytest.raises(SystemExit):
            check({**answer, "orientation": want["orientation"]})
    with pytest.raises(SystemExit):
        check({"radial": want["radial"]})  # an output missing
    assert check.answers == 1


def test_every_timed_run_is_checked(stxm):
    seen = []
    stxm.median_time(lambda: len(seen), repeats=3, check=seen.append)
    assert seen == [0, 1, 2, 3]  # the warm-up's answer too


def test_sampled_points_span_the_scan(stxm):
    points = stxm.spread(1000, 11)
    assert points[0] == 0 and points[-1] == 999 and len(points) == 11 and (np.diff(points) >= 99).all()


def test_pixel_maps_benchmark_stops_on_any_differing_array():
    """benchmarks/pixelmaps.py holds every answer to numpy's: one pixel's class or one bin's count off stops it."""
    from dataclasses import replace

    spec = importlib.util.spec_from_file_location("bench_maps", os.path.join(HERE, "..", "benchmarks", "pixelmaps.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from dada.stxm.beam import BeamGeometry

    shape = (60, 70)
    geo = BeamGeometry(shape, 30.5, 29.0, bench.mask(shape), 75e-6, 2.0, 1.0)
    want = bench.numpys(geo, bench.FOUR)
    bench.same(bench.ours(geo, bench.FOUR), want)
    cls = want.kernel.cls.copy()
    cls[1000] += 1
    static = want.static_valid.copy()
    static[3] += 1
    for wrong in (replace(want, kernel=want.kernel._replace(cls=cls)), replace(want, static_valid=static),
                  replace(want, kernel=want.kernel._replace(last=want.kernel.last - 1))):
        with pytest.raises(SystemExit):
            bench.same(wrong, want)

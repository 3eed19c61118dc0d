"""The parameter model and scan grids, against hand-worked expectations."""

from __future__ import annotations

import numpy as np
import pytest

from dada.errors import BadParameter
from dada.params import Model, Param
from dada.selection import GridShape, Point, ScanGrid, Span

MODEL = Model((
    Param("n", "count", type="integer", default=3, minimum=1, maximum=10),
    Param("x", "value", type="number", minimum=0, exclusive_minimum=True),
    Param("flag", "switch", type="boolean", default=False),
    Param("kind", "pick", choices=("a", "b"), default="a"),
    Param("chans", "many", choices=("p", "q", "r"), many=True, default=("p",)),
    Param("horz", "span", parser=Span.parse, syntax="i or a:b"),
))


def test_defaults_and_conversion():
    args = MODEL.parse({"n": "7", "x": "0.5", "flag": "yes", "kind": "b", "chans": "q,r", "horz": "2:9:3"})
    assert args == {"n": 7, "x": 0.5, "flag": True, "kind": "b", "chans": ("q", "r"), "horz": Span(2, 9, 3)}
    assert MODEL.parse({}) == {"n": 3, "x": None, "flag": False, "kind": "a", "chans": ("p",), "horz": None}


@pytest.mark.parametrize(
    ("query", "name", "allowed"),
    [
        ({"n": "0"}, "n", "an integer in [1, 10]"),
        ({"n": "11"}, "n", "an integer in [1, 10]"),
        ({"n": "2.5"}, "n", "an integer in [1, 10]"),
        ({"x": "0"}, "x", "a number > 0"),
        ({"x": "nan"}, "x", "a number > 0"),
        ({"flag": "maybe"}, "flag", "true or false"),
        ({"kind": "c"}, "kind", "one of a, b"),
        ({"chans": "p,p"}, "chans", "comma-separated subset of p, q, r"),
        ({"chans": "p,z"}, "chans", "comma-separated subset of p, q, r"),
        ({"horz": "1:2:3:4"}, "horz", "i or a:b"),
        ({"horz": "-1"}, "horz", "i or a:b"),
        ({"nn": "1"}, "nn", "parameters of this route: n, x, flag, kind, chans, horz"),
    ],
)
def test_bad_values_name_parameter_and_allowed(query, name, allowed):
    with pytest.raises(BadParameter) as e:
        MODEL.parse(query)
    body = e.value.body()
    assert body["parameter"] == name
    assert body["allowed"] == allowed
    assert e.value.status == 400


def test_canonical_is_stable_and_complete():
    a = MODEL.parse({"kind": "b", "n": "4"})
    b = MODEL.parse({"n": "4", "kind": "b"})
    assert MODEL.canonical(a) == MODEL.canonical(b)
    assert MODEL.canonical(a) != MODEL.canonical(MODEL.parse({"n": "5", "kind": "b"}))
    assert "flag" not in MODEL.canonical(a, exclude={"flag"})


def test_span_resolution():
    assert Span.parse("3").resolve("horz", 5) == range(3, 4)
    assert Span.parse(":").resolve("horz", 5) == range(0, 5)
    assert Span.parse("1:").resolve("horz", 5) == range(1, 5)
    assert Span.parse("::2").resolve("horz", 5) == range(0, 5, 2)
    for bad in ("5", "0:6", "3:3", "4:2"):
        with pytest.raises(BadParameter):
            Span.parse(bad).resolve("horz", 5)


def test_grid_and_point_syntax():
    assert GridShape.parse("4x7") == GridShape(4, 7)
    assert Point.parse("2,3") == Point(2, 3)
    for bad in ("4", "0x3", "ax3", "1x2x3"):
        with pytest.raises(ValueError):
            GridShape.parse(bad)


@pytest.mark.parametrize("fast", ["horz", "vert"])
@pytest.mark.parametrize("snake", [False, True])
def test_scan_grid_matches_acquisition_walk(fast, snake):
    """Walk the scan point by point as the motors would and compare frame numbers."""
    V, H = 4, 5
    expected = np.zeros((V, H), dtype=int)
    n = 0
    outer, inner = (V, H) if fast == "horz" else (H, V)
    for line in range(outer):
        positions = range(inner)
        if snake and line % 2:
            positions = reversed(positions)
        for p in positions:
            if fast == "horz":
                expected[line, p] = n
            else:
                expected[p, line] = n
            n += 1
    grid = ScanGrid(V, H, fast, snake)
    np.testing.assert_array_equal(grid.frames(range(V), range(H)), expected)
    np.testing.assert_array_equal(grid.frames(range(1, 3), range(0, 5, 2)), expected[1:3, 0:5:2])

"""Pointwise channels finalised block by block: the same numbers as finalising the whole selection at once."""

from __future__ import annotations

import numpy as np
import pytest

import dada.stxm.outputs as outputs_module
from dada.cluster.assembly import Assembly, as_run
from dada.registry import CHANNELS
from dada.stxm import wire
from dada.stxm.beam import BeamGeometry
from dada.stxm.channel import ACCUMULATORS, Partial
from dada.stxm.outputs import Outputs
from dada.stxm.partials import Pass
from dada.stxm.routes import StxmEndpoint

SHAPE = (48, 40)  # frame
POINTS = (7, 13)  # selection: 91 points


def noisy_partial(channel, args, geo, n: int, rng: np.random.Generator) -> Partial:
    """Poisson sums, counts with zeros (bins without valid pixels), an absent frame, -inf maxima."""
    nbins = channel.bins(geo, args).count
    arrays = {}
    for name in ("count", *channel.accumulators):
        a = rng.poisson(30, size=(n, nbins)).astype(ACCUMULATORS[name].dtype)
        arrays[name] = a
    empty = rng.random((n, nbins)) < 0.1
    for a in arrays.values():  # a bin without valid pixels sums nothing, as the kernels make it
        a[empty] = 0
    if "max" in arrays:
        arrays["max"][empty] = -np.inf
    for a in arrays.values():
        a[5] = np.nan  # an absent frame
    return Partial(arrays, ~np.isnan(arrays["count"][:, 0]))


@pytest.mark.parametrize("wired", [False, True])  # the blocks as they arrive from nodes: wire.read(wire.record(...))
@pytest.mark.parametrize("stage_bytes", [64, 4096, 2**30])  # flushes often / now and then / once at the end
def test_blocks_finalised_as_they_come_equal_the_whole_selection_finalised_once(monkeypatch, stage_bytes, wired):
    monkeypatch.setattr(outputs_module, "STAGE_BYTES", stage_bytes)
    rng = np.random.default_rng(7)
    good = rng.random(SHAPE) > 0.05
    geo = BeamGeometry(SHAPE, 19.5, 23.25, good, 75e-6, 2.0, 1.0)
    ep = StxmEndpoint(CHANNELS, multi=True)
    args = ep.model.parse({"dpc.reference": "median", "radial.nbins": "9", "darkfield.rmin": "4"})
    p = Pass(geo, tuple((c, ep.channel_args(c, args)) for c in CHANNELS))
    n = POINTS[0] * POINTS[1]
    whole = {c.name: noisy_partial(c, a, geo, n, rng) for c, a in p.channels}
    if wired:  # counts equal on every point (no saturated pixel) but the absent frame's: sent once where they can
        for m in whole.values():
            m.arrays["count"][:] = np.where(np.isnan(m["count"]), np.nan, m["count"][0])
    contexts = [c.whole_scan(whole[c.name]) if c.needs_whole_scan(a) else None for c, a in p.channels]
    out = Outputs(p, contexts, POINTS)
    assert set(out.channels) == {c.name for c, a in p.channels if c.pointwise(a)} and "dpc" in out.channels
    into = Assembly(n, out)
    order = rng.permutation(n)  # a selection in no particular order, cut into uneven blocks and pieces
    cuts = np.sort(rng.choice(np.arange(1, n), size=9, replace=False))
    for piece in np.split(order, cuts):
        for name in rng.permutation(list(whole)):  # a block's channels may come at different times
            block = whole[name]
            if wired:  # the piece's rows as a node sends them: sums as float32, equal counts once
                block = wire.read(bytes(wire.record(Partial({k: a[piece] for k, a in block.arrays.items()},
                                                            block.present[piece]))))
                assert all(a.dtype == np.float32 for a in block.arrays.values() if np.isfinite(a).any()), name
                into.place(as_run(piece), as_run(np.arange(piece.size)), {name: block})
            else:
                into.place(as_run(piece), as_run(piece), {name: block})
    got = out.finish()
    assert set(into.out) == set(whole) - set(out.channels)
    assert int((~out.present).sum()) == 1
    for (c, a), context in zip(p.channels, contexts, strict=True):
        if c.name not in out.channels:
            continue
        want = c.finalize(whole[c.name], geo, a, context)
        shapes = c.output_shape(a, POINTS)
        for k, v in want.items():
            np.testing.assert_array_equal(got[c.name][k], np.asarray(v, dtype=np.float64).reshape(shapes[k]))

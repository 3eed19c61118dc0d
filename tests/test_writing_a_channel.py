"""The README's worked channel, as a plug-in: one module and an entry point make a route, an /stxm channel and
an /api entry; it needs no beam centre; and adding it changes no other channel's cache keys."""

from __future__ import annotations

import importlib
import io
import os
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import Daemon

from dada.registry import CHANNELS
from dada.stxm.routes import StxmEndpoint

README = (Path(__file__).parent.parent / "README.md").read_text()
(EXAMPLE,) = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "class Boxpeak" in b]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> str:
    """The README's channel as a module with its ``dada.channels`` entry point: written here, installed nowhere."""
    folder = tmp_path_factory.mktemp("boxpeak")
    (folder / "boxpeak_channel.py").write_text(EXAMPLE)
    info = folder / "dada_boxpeak-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dada-boxpeak\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[dada.channels]\nboxpeak = boxpeak_channel:Boxpeak\n")
    return str(folder)


@pytest.fixture(scope="module")
def daemon_with_plugin(demo_root, plugin):
    d = Daemon(["serve", demo_root], env={"PYTHONPATH": os.pathsep.join([plugin, *[p for p in sys.path if p]])})
    yield d
    d.stop()


def test_the_readme_channel_runs_on_a_scan_without_a_beam_centre(daemon_with_plugin, demo_root):
    d = daemon_with_plugin
    with h5py.File(os.path.join(demo_root, "generic/stack_0001.h5")) as f:
        frames = f["measurement/frames"][:24].astype(np.float64)
    box = frames[:, 5:20, 3:30]  # y0=5, y1=20, x0=3, x1=30; the generic scan records no mask and no cutoff
    want = (box.max(axis=(1, 2)) / box.mean(axis=(1, 2))).reshape(3, 8)
    r = d.get("/boxpeak/generic/stack_0001.npy?grid=3x8&x0=3&x1=30&y0=5&y1=20")
    assert r.status == 200, r.body
    np.testing.assert_allclose(np.load(io.BytesIO(r.body)), want, rtol=1e-12)
    # fused in /stxm with nothing else: still no centre needed; with a channel that uses one, a clear 400
    r = d.get("/stxm/generic/stack_0001.h5?grid=3x8&channels=boxpeak&output=boxpeak.boxpeak&boxpeak.x0=3"
              "&boxpeak.x1=30&boxpeak.y0=5&boxpeak.y1=20")
    assert r.status == 200, r.body
    with h5py.File(io.BytesIO(r.body)) as f:
        np.testing.assert_allclose(f["boxpeak.boxpeak"][()], want, rtol=1e-12)
    r = d.get("/stxm/generic/stack_0001.npy?grid=3x8&channels=boxpeak,darkfield&output=boxpeak.boxpeak")
    assert r.status == 400 and r.json()["parameter"] == "cx"
    api = d.get("/api").json()
    assert any(e["name"] == "boxpeak" for e in api["endpoints"])
    assert "/boxpeak/{scan}.{fmt}" in d.get("/api/openapi.json").json()["paths"]


def test_adding_a_channel_leaves_the_others_keys_alone(plugin):
    """/stxm's key and ETag for a set of channels are the same with or without another channel installed."""
    sys.path.insert(0, plugin)
    try:
        Boxpeak = importlib.import_module("boxpeak_channel").Boxpeak  # written by the fixture, not installed
    finally:
        sys.path.remove(plugin)
    before = StxmEndpoint(CHANNELS, multi=True)
    after = StxmEndpoint((*CHANNELS, Boxpeak()), multi=True)
    query = {"channels": "darkfield,dpc", "darkfield.rmin": "8", "output": "dpc.dpc"}
    a, b = before.model.parse(query), after.model.parse(query)
    assert before.key_parts(a, presentation=False) == after.key_parts(b, presentation=False)
    assert before.key_parts(a, ("plow",)) == after.key_parts(b, ("plow",))
    # what does enter it: another requested channel, its parameters and its version
    for other in ({**query, "channels": "darkfield,dpc,radial"}, {**query, "darkfield.rmin": "9"}):
        assert after.key_parts(after.model.parse(other), presentation=False) != after.key_parts(b, presentation=False)
    both = after.model.parse({**query, "channels": "darkfield,boxpeak", "output": "boxpeak.boxpeak"})
    first = after.key_parts(both)
    Boxpeak.version = "2"
    try:
        assert after.key_parts(both) != first
        assert after.key_parts(b) == before.key_parts(a)  # a request without it: still unchanged
    finally:
        Boxpeak.version = "1"

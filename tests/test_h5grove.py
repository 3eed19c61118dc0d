"""/h5grove/ against h5grove's own reference server: the same requests, the same JSON and the same bytes.

Both serve one root (the tiny demo plus tests/h5grove_world.py's ``extra/``: every dtype, soft and external
links, virtual datasets) as real processes on loopback. Then what only dada does: links out of the root stay
unresolved (the reference follows them: the planted marker comes back from it, never from dada), 413 before
reading, tokens, JSON errors, and each scan's analyses as ``{scan}.dada``, equal to the routes' ``.npy``.
"""

from __future__ import annotations

import io
import os
import time
import urllib.parse
from collections import Counter
from typing import Any

import h5py
import numpy as np
import pytest
from h5grove_world import MARKER, Reference, build
from helpers import Daemon, Response, http_get

from dada.config import Config
from dada.registry import CHANNELS
from dada.server.access import digest

# where dada differs on purpose (or h5grove's own server fails): tested below
SKIP = {"extra/escape.h5", "extra/huge.h5", "extra/symlink_out.h5", "extra/loops.h5"}
TOKENS = {"all": "h5grove-token-all", "extra": "h5grove-token-extra"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_root) -> tuple[str, str]:
    return build(str(tmp_path_factory.mktemp("h5grove")), demo_root)


@pytest.fixture(scope="module")
def d(world):
    daemon = Daemon(["serve", world[0], "--cache-dir", "none", "--max-output-bytes", "2000000"])
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def ref(world):
    server = Reference(world[0])
    yield server
    server.stop()


def query(**q: Any) -> str:
    return urllib.parse.urlencode({k: v for k, v in q.items() if v is not None}, doseq=True)


def ours(d: Daemon, route: str, headers: dict[str, str] | None = None, **q: Any) -> Response:
    r = d.get(f"/h5grove/{route}/?{query(**q)}", headers=headers)
    assert r.status < 500, (route, q, r.status, r.body[:300])
    assert MARKER not in r.body, (route, q)
    if r.status >= 400:
        assert r.content_type == "application/json" and r.json()["status"] == r.status and r.json()["message"]
    return r


def theirs(ref: Reference, route: str, **q: Any) -> Response:
    return http_get(ref.port, f"/{route}?{query(**q)}")


def h5_files(root: str) -> list[str]:
    out = []
    for folder, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in names if n.endswith(".h5")]
    return sorted(f for f in out if f not in SKIP)


def small(shape: tuple[int, ...]) -> str | None:
    """A selection keeping a large dataset's answer small; None: the whole of a small one."""
    if int(np.prod(shape)) <= 2000:
        return None
    return {1: "10:500:7", 2: "0:4,:"}.get(len(shape), "0,0:16,::3")


def corpus(root: str) -> list[tuple[str, dict[str, Any]]]:
    """Requests for every entity of every file: meta, attributes, data in each format h5web and users take,
    statistics; the selections slice."""
    out: list[tuple[str, dict[str, Any]]] = []
    for file in h5_files(root):
        with h5py.File(os.path.join(root, file), "r") as f:
            paths = ["/"]
            f.visit_links(lambda name, paths=paths: paths.append("/" + name))
            out.append(("paths", {"file": file, "path": "/"}))
            for path in paths:
                out.append(("meta", {"file": file, "path": path}))
                try:
                    obj = f[path]
                except (KeyError, OSError, RuntimeError):
                    continue  # a dangling link or a loop: meta only
                if len(obj.attrs):
                    out.append(("attr", {"file": file, "path": path}))
                    out.append(("attr", {"file": file, "path": path, "attr_keys": sorted(obj.attrs)[:2]}))
                if not isinstance(obj, h5py.Dataset):
                    continue
                sel = small(obj.shape or ())
                out.append(("data", {"file": file, "path": path, "selection": sel}))
                out.append(("data", {"file": file, "path": path, "selection": sel, "format": "bin",
                                     "dtype": "safe", "flatten": "true"}))
                if obj.dtype.kind in "iufb":
                    out.append(("data", {"file": file, "path": path, "selection": sel, "format": "npy"}))
                    out.append(("stats", {"file": file, "path": path, "selection": sel}))
                    if obj.ndim == 2:
                        out.append(("data", {"file": file, "path": path, "selection": sel, "format": "tiff"}))
                        out.append(("data", {"file": file, "path": path, "selection": sel, "format": "csv"}))
    return out


SLICES = [("eiger/u16/scan_0001_data_000002.h5", "/entry/data/data", s)
          for s in ("3", "3,10:20,5:9", "0:20:5,0,:", "::7,::9,::11", "19,63,71", "2:3", ",")] + [
    ("extra/dtypes.h5", "/num/noisy3d", s) for s in ("1", "1,2", ":,:,0", "0,0")] + [
    ("extra/dtypes.h5", "/num/ramp", s) for s in ("5", "999", "::100", "1000", "-1")]
LINKS = ["/soft_data", "/soft_group", "/soft_dangling", "/ext_data", "/ext_group", "/ext_group/inner",
         "/ext_dangling", "/ext_scan", "/ext_scan/data_000001", "/vds_inside", "/group/data"]
THROUGH = {"/ext_scan/data_000001": "2,3:9"}  # a slice of the frames two files away, through two external links


def test_same_answers_as_the_reference_server(d, ref, world):
    """Every request of the corpus, links and slices: where the reference answers 200, dada answers the
    same bytes with the same type; where it fails, dada says why as JSON (4xx), never a 5xx."""
    requests = corpus(world[0])
    for path in LINKS:
        for route, extra in (("meta", {}), ("data", {}), ("attr", {}), ("data", {"format": "bin"}),
                             ("meta", {"resolve_links": "none"}), ("meta", {"resolve_links": "all"})):
            requests.append((route, {"file": "extra/links.h5", "path": path, "selection": THROUGH.get(path), **extra}))
    requests += [("paths", {"file": "extra/links.h5", "path": p}) for p in ("/", "/ext_group", "/group")]
    requests += [("data", {"file": f, "path": p, "selection": s}) for f, p, s in SLICES]
    requests += [("data", {"file": f, "path": p, "selection": s, "format": "bin"}) for f, p, s in SLICES]
    same: Counter[str] = Counter()
    wrong = []
    for route, q in requests:
        a, b = ours(d, route, **q), theirs(ref, route, **q)
        if b.status == 200:
            if (a.status, a.content_type, a.body) != (200, b.content_type, b.body):
                wrong.append((route, q, a.status, a.body[:200], b.body[:200]))
            same[route] += 1
        elif a.status == 200 or (b.status < 500 and a.status >= 500):
            wrong.append((route, q, a.status, b.status))
    assert wrong == [], f"{len(wrong)} differences, e.g. {wrong[:5]}"
    print("identical answers:", dict(same))
    assert same["meta"] > 200 and same["data"] > 400 and same["attr"] > 100 and same["stats"] > 100, same
    assert same["paths"] >= 15, same


def test_api_names_no_h5web_page_unless_configured(d, tmp_path):
    assert "h5web" not in d.get("/api").json()
    config = tmp_path / "dada.toml"
    config.write_text('h5web_url = "http://h5web-host:5173/"\n')
    with pytest.raises(ValueError, match="h5web_url must hold"):
        Config.load(str(config), roots={"": str(tmp_path)})


@pytest.mark.parametrize(("scan", "file"), [("eiger/u16/scan_0001", "eiger/u16/scan_0001_master.h5"),
                                            ("generic/stack_0001", "generic/stack_0001.h5"),
                                            ("eiger/u32", "eiger/u32/scan_0002_master.h5")])
def test_a_scan_path_names_its_file(d, scan, file):
    """What dada's GUI links to h5web is a scan's path, as every route takes it: the file that holds the scan."""
    for route, q in (("meta", {"path": "/"}), ("paths", {"path": "/"}), ("attr", {"path": "/entry"})):
        a, b = ours(d, route, file=scan, **q), ours(d, route, file=file, **q)
        assert (a.status, a.body) == (b.status, b.body), (route, scan)


def test_compressed_frames_are_the_frames(d, world):
    """Eiger frames (bitshuffle) through /h5grove/ as bin and npy equal dada's /frame route and h5py."""
    with h5py.File(os.path.join(world[0], "eiger/u32/scan_0002_data_000001.h5")) as f:
        assert f["entry/data/data"].compression is not None or f["entry/data/data"]._filters
        truth = f["entry/data/data"][4]
    q = {"file": "eiger/u32/scan_0002_data_000001.h5", "path": "/entry/data/data", "selection": "4"}
    raw = ours(d, "data", format="bin", **q)
    assert np.array_equal(np.frombuffer(raw.body, truth.dtype).reshape(truth.shape), truth)
    assert np.array_equal(np.load(io.BytesIO(ours(d, "data", format="npy", **q).body)), truth)
    frame = np.load(io.BytesIO(d.get("/frame/eiger/u32/scan_0002/4.npy").body))
    assert np.array_equal(frame, truth) and truth.max() > 0


ESCAPES = ["/abs", "/rel", "/rel_group", "/soft_to_abs"]


def test_links_out_of_the_root_stay_unresolved(d, ref, world):
    file = "extra/escape.h5"
    leak = theirs(ref, "data", file=file, path="/abs", format="bin")
    assert leak.status == 200 and MARKER in leak.body, "the reference follows the link: the test can fail"
    for path in ESCAPES:
        meta = ours(d, "meta", file=file, path=path).json()
        assert meta["kind"] in ("external_link", "soft_link"), meta
        for route in ("data", "attr", "stats", "paths"):
            assert ours(d, route, file=file, path=path).status in (400, 404)
        assert ours(d, "meta", file=file, path=path, resolve_links="all").status == 404
        assert ours(d, "meta", file=file, path=path + "/values").status == 404
    for path in ("/vds_outside", "/raw_outside"):
        assert ours(d, "meta", file=file, path=path).json()["kind"] == "dataset"
        for route in ("data", "stats"):
            r = ours(d, route, file=file, path=path)
            assert r.status == 422 and "outside" in r.json()["message"], r.body
    names = ours(d, "paths", file=file, path="/").json()
    assert sorted(names) == sorted(["/", *ESCAPES, "/raw_outside", "/vds_outside"]), names
    assert ours(d, "meta", file=file).json()["children"]
    for file in ("extra/symlink_out.h5", "../outside/secret.h5", "/etc/passwd", "extra/../../outside/secret.h5"):
        assert ours(d, "meta", file=file).status == 404


def test_soft_link_loops_stay_unresolved(d, ref):
    """Where h5grove's own server fails (500), dada describes the loop as links that do not resolve."""
    assert theirs(ref, "meta", file="extra/loops.h5", path="/").status == 500
    children = {c["name"]: c["kind"] for c in ours(d, "meta", file="extra/loops.h5").json()["children"]}
    assert children == {"loop_a": "soft_link", "loop_b": "soft_link", "fine": "dataset"}
    assert ours(d, "paths", file="extra/loops.h5", path="/").json() == ["/", "/fine", "/loop_a", "/loop_b"]
    for path in ("/loop_a", "/loop_b", "/loop_a/x", "/loop_b/x"):
        assert ours(d, "data", file="extra/loops.h5", path=path).status in (400, 404)
        assert ours(d, "meta", file="extra/loops.h5", path=path, resolve_links="all").status == 404


def test_large_selections_are_413_before_reading(d):
    t0 = time.monotonic()
    for route, q in (("data", {}), ("stats", {}), ("data", {"selection": "0:100000"}),
                     ("data", {"selection": "0:100,0:2000", "format": "json"})):
        r = ours(d, route, file="extra/huge.h5", path="/big", **q)
        assert r.status == 413 and r.json()["limit"] == "max_output_bytes", (q, r.body)
    assert time.monotonic() - t0 < 5
    r = ours(d, "data", file="extra/huge.h5", path="/big", selection="0:100,0:2000", format="bin")
    assert r.status == 200 and len(r.body) == 100 * 2000 * 8 and not np.frombuffer(r.body).any()


BAD = [
    ("data", {"path": "/num/i4"}, 400, "file"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "selection": "0:2,x"}, 400, "selection"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "selection": "9"}, 400, "selection"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "selection": "0,0,0"}, 400, "selection"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "selection": "::-1"}, 400, "selection"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "format": "gif"}, 400, "format"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "dtype": "double"}, 400, "dtype"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num"}, 400, "path"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "colour": "red"}, 400, "colour"),
    ("data", {"file": "extra/dtypes.h5", "path": "/num/i4", "path ": "/x"}, 400, "path "),
    ("meta", {"file": "extra/dtypes.h5", "resolve_links": "sometimes"}, 400, "resolve_links"),
    ("meta", {"file": "extra/dtypes.h5", "path": "/nothing/here"}, 404, None),
    ("attr", {"file": "extra/dtypes.h5", "path": "/num", "attr_keys": "nope"}, 404, None),
    ("meta", {"file": "extra/nothing.h5"}, 404, None),
    ("meta", {"file": "eiger"}, 404, None),
    ("meta", {"file": "eiger/u16/scan_0001_truth.npz"}, 422, None),
    ("stats", {"file": "extra/dtypes.h5", "path": "/text/vlen"}, 400, None),
    ("meta", {"file": "nothing/scan.dada"}, 404, None),
    ("meta", {"file": "eiger/u16/scan_0001.dada", "rmin": "-3"}, 400, "rmin"),
    ("meta", {"file": "eiger/u16/scan_0001.dada", "colour": "red"}, 400, "colour"),
]


@pytest.mark.parametrize(("route", "q", "status", "parameter"), BAD)
def test_bad_requests_are_json_errors_naming_the_parameter(d, route, q, status, parameter):
    r = ours(d, route, **q)
    assert r.status == status, (q, r.status, r.body)
    if parameter is not None:
        assert r.json()["parameter"] == parameter, r.json()


# -- the analyses as {scan}.dada ------------------------------------------------------------------

OUTPUTS = {c.name: list(c.outputs) for c in CHANNELS}  # every registered channel, maxpixel and contrast too


def npy(r: Response) -> np.ndarray:
    assert r.status == 200, r.body[:300]
    return np.load(io.BytesIO(r.body))


@pytest.mark.parametrize("scan", ["eiger/u16/scan_0001", "eiger/u32/scan_0002"])
def test_analyses_are_the_routes_npy(d, scan):
    file = f"{scan}.dada"
    root = ours(d, "meta", file=file).json()
    assert sorted(c["name"] for c in root["children"]) == sorted(OUTPUTS)
    assert ours(d, "attr", file=file, path="/").json()["default"] == "darkfield"
    for channel, outputs in OUTPUTS.items():
        for out in outputs:
            ours_ = npy(ours(d, "data", file=file, path=f"/{channel}/{out}", format="npy"))
            route = npy(d.get(f"/{channel}/{scan}.npy?output={out}"))
            np.testing.assert_array_equal(ours_, route)  # NaN where the route has NaN
    grid = d.get(f"/meta/{scan}.json").json()["grid"]
    attrs = ours(d, "attr", file=file, path="/darkfield").json()
    assert attrs["signal"] == "darkfield" and attrs["axes"] == ["vert", "horz"] and attrs["NX_class"] == "NXdata"
    assert attrs["rmin"] == 10.0 and attrs["scan"] == scan, attrs
    vert = ours(d, "data", file=file, path="/darkfield/vert").json()
    horz = ours(d, "data", file=file, path="/darkfield/horz").json()
    assert (vert, horz) == (list(range(grid["vert"])), list(range(grid["horz"])))
    units = ours(d, "attr", file=file, path="/darkfield/darkfield").json()
    assert units == {"long_name": "darkfield (counts)", "units": "counts"}
    assert ours(d, "attr", file=file, path="/radial").json()["axes"] == ["axis", "vert", "horz"]
    assert ours(d, "attr", file=file, path="/dpc").json()["axes"] == [".", "vert", "horz"]


def test_analysis_parameters_from_the_query(d):
    scan = "eiger/u16/scan_0001"
    q = {"file": f"{scan}.dada", "path": "/darkfield/darkfield", "format": "npy", "rmin": "4", "cx": "30.5"}
    given = npy(ours(d, "data", **q))
    np.testing.assert_array_equal(given, npy(d.get(f"/darkfield/{scan}.npy?rmin=4&cx=30.5")))
    assert not np.array_equal(given, npy(ours(d, "data", **{**q, "rmin": "10"})))
    attrs = ours(d, "attr", file=f"{scan}.dada", path="/darkfield", rmin="4", cx="30.5").json()
    assert attrs["rmin"] == 4.0 and attrs["beam_center"][0] == 30.5
    sel = ours(d, "data", file=f"{scan}.dada", path="/darkfield/darkfield", selection="2,3", rmin="4", cx="30.5")
    assert sel.json() == float(given[2, 3])


def test_an_analysis_over_the_limit_is_413(world):
    daemon = Daemon(["serve", world[0], "--cache-dir", "none", "--max-frames", "10", "--local-nodes", "1"])
    try:
        r = ours(daemon, "meta", file="eiger/u16/scan_0001.dada", path="/darkfield")
        assert r.status == 413 and r.json()["limit"] == "max_frames", r.body
        assert ours(daemon, "meta", file="eiger/u16/scan_0001.dada", vert="0:1", horz="0:5",
                    path="/darkfield").status == 200
    finally:
        daemon.stop()


# -- tokens ----------------------------------------------------------------------------------------


def test_tokens_and_subtrees(world, tmp_path):
    config = tmp_path / "dada.toml"
    config.write_text(f'[[tokens]]\nname = "all"\nsha256 = "{digest(TOKENS["all"])}"\npaths = [""]\n'
                      f'[[tokens]]\nname = "extra"\nsha256 = "{digest(TOKENS["extra"])}"\npaths = ["extra"]\n')
    daemon = Daemon(["serve", world[0], "--cache-dir", "none", "--config", str(config), "--local-nodes", "1"])
    every = {"Authorization": f"Bearer {TOKENS['all']}"}
    extra = {"Authorization": f"Bearer {TOKENS['extra']}"}
    try:
        master = {"file": "eiger/u16/scan_0001_master.h5", "path": "/entry"}
        assert ours(daemon, "meta", **master).status == 401
        assert ours(daemon, "meta", headers={"Authorization": "Bearer wrong"}, **master).status == 401
        assert ours(daemon, "meta", headers=every, **master).status == 200
        assert ours(daemon, "meta", headers=extra, **master).status == 403
        assert ours(daemon, "meta", headers=extra, file="eiger/u16/scan_0001.dada").status == 403
        assert ours(daemon, "meta", headers=every, file="eiger/u16/scan_0001.dada").status == 200
        assert ours(daemon, "meta", token=TOKENS["all"], **master).status == 200  # ?token= as on every route
        # a link into what the token does not grant is a link that does not resolve
        link = {"file": "extra/links.h5", "path": "/ext_scan"}
        assert ours(daemon, "meta", headers=every, **link).json()["kind"] == "group"
        assert ours(daemon, "meta", headers=extra, **link).json()["kind"] == "external_link"
        assert ours(daemon, "meta", headers=extra, file="extra/links.h5", path="/ext_data").json()["kind"] == "dataset"
    finally:
        daemon.stop()

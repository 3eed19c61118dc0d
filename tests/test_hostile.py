"""Hostile input against a real daemon: a clear JSON 4xx, never a 5xx, a hang, a crash, a read outside the
data root or a leaked descriptor.

One daemon serves a copy of the demo data plus everything in tests/hostile_world.py: symlinks, HDF5 links
and a FIFO pointing out of the root, corrupt and ill-formed files, bad masks. Every answer is checked for
the marker planted outside the root; a request that opened the FIFO would block and never be answered.
"""

from __future__ import annotations

import http.client
import math
import re
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any

import pytest
import schemathesis
from helpers import Daemon, Response
from hostile_world import MARKER, U16, World, build, fifo_has_reader, foreign, open_files, process_tree, rss_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dada.registry import ENDPOINTS

SETTINGS = dict(deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
SENT: Counter[str] = Counter()  # answers by kind and status, printed when the daemon stops (pytest -s)
TOMO = "tomo/nxtomo_0001"
REAL = {"scan": [U16, "eiger/u32/scan_0002", "generic/stack_0001", "live/scan_0003"],
        "tomo": [TOMO, "tomo/tdf_0001"], "folder": ["eiger", "eiger/u16", "tomo", "live", "generic"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_root) -> World:
    return build(str(tmp_path_factory.mktemp("hostile")), demo_root)


@pytest.fixture(scope="module")
def d(world):
    daemon = Daemon(["serve", world.root, "--cache-dir", world.cache])
    yield daemon
    fifo_has_reader(world.fifo)  # releases a reader that got stuck, so the daemon can stop
    daemon.stop()
    print("hostile requests:", dict(sorted(SENT.items())))


@pytest.fixture(scope="module")
def api(d) -> dict[str, Any]:
    return d.get("/api").json()


def ask(d: Daemon, path: str, kind: str, timeout: float = 30) -> Response:
    """GET ``path``: answered within ``timeout``, never a 5xx, never the marker; errors are JSON."""
    try:
        r = d.get(path, timeout=timeout)
    except (OSError, http.client.HTTPException) as exc:
        pytest.fail(f"no answer within {timeout} s ({exc!r}): {path[:300]}")
    SENT[f"{kind} {r.status}"] += 1
    assert r.status < 500, (path[:300], r.status, r.body[:500])
    assert MARKER not in r.body, path[:300]
    if r.status >= 400:
        assert r.content_type == "application/json", (path[:300], r.status, r.body[:200])
        body = r.json()
        assert body["status"] == r.status and body["message"], (path[:300], body)
    return r


def expect_param(r: Response, path: str, names: set[str], statuses: tuple[int, ...] = (400,)) -> None:
    assert r.status in statuses, (path[:300], r.status, r.body[:300])
    assert r.json().get("parameter") in names, (path[:300], r.json())


def url(template: str, target: str, formats: list[str], item: str = "0", **query: str) -> str:
    """A route's URL from its /api template, with a scan (or folder), an item and the first format."""
    path = (template.replace("{scan}", target).replace("{folder}", target).replace("{n}", item)
            .replace("{row}", item).replace("{fmt}", formats[0]))
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


# -- 1. schemathesis against /api/openapi.json ---------------------------------------------------------

OPERATIONS = [ep.name for ep in ENDPOINTS] + ["fixed routes"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_openapi_operations_conform(d, api, operation):
    """Every operation: GET examples drawn from the schema (valid and invalid), on real demo scans."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    targets = {ep["name"]: ep["target"] for ep in api["endpoints"]}
    schema = schemathesis.openapi.from_url(d.base + "/api/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    if operation == "fixed routes":  # progress streams wait 30 s for a request to start: tests of their own
        ops = [op for op in ops if op.definition.raw["operationId"] not in {*targets, "progress", "cancel"}]
    else:
        ops = [op for op in ops if op.definition.raw["operationId"] == operation]
    assert ops

    for op in ops:
        target = targets.get(op.definition.raw["operationId"])
        key = "folder" if target == "folder" else "scan"
        if target is None:
            strategy = op.as_strategy()
        else:
            strategy = st.sampled_from(REAL[target]).flatmap(
                lambda s, key=key, op=op: st.one_of(*(op.as_strategy(m, path_parameters={key: s})
                                                       for m in schemathesis.GenerationMode)))

        @settings(max_examples=40, **SETTINGS)
        @given(case=strategy)
        def run(case) -> None:
            response = case.call(base_url=d.base, timeout=30)
            SENT[f"schemathesis {response.status_code}"] += 1
            assert MARKER not in response.content
            case.validate_response(response, checks=checks)

        run()


# -- 2. the grammar, property by property --------------------------------------------------------------

ASCII_INT = re.compile(r"[+-]?[0-9]+")
ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
ODD = ["", " ", "٣", "١٢", "１", "1_0", "+1", "-0", " 1", "1 ", "0x10", "1e1", "1.0", "9" * 300, "1" + "0" * 1500,
       "-1", "abc", "٣:٥", "\t2"]
NUMS = st.one_of(st.integers(-3, 12).map(str), st.integers(-10**30, 10**30).map(str), st.sampled_from(ODD))
SPANS = st.one_of(st.lists(NUMS, min_size=1, max_size=4).map(":".join),
                  st.sampled_from(["::", ":::", "1::2", "::0", "0:0", "0::", ":", "2:1", "0:1:0", "::-1", "0:-1"]))


def spec_int(text: str) -> int | None:
    """An integer as the README means it: ASCII digits, optional sign (None otherwise)."""
    try:
        return int(text) if ASCII_INT.fullmatch(text) else None
    except ValueError:  # beyond Python's digit limit: no index that long exists either
        return None


def spec_span(raw: str, length: int) -> bool:
    """Whether ``i`` or ``start:stop[:step]`` selects something within an axis of ``length``."""
    parts = raw.strip().split(":")
    if len(parts) == 1:
        index = spec_int(parts[0])
        return index is not None and 0 <= index < length
    values = [None if p == "" else spec_int(p) for p in parts]
    if len(parts) > 3 or any((v is None and p != "") or (v is not None and v < 0) for v, p in zip(values, parts,
                                                                                                   strict=True)):
        return False
    start = values[0] or 0
    stop = length if values[1] is None else values[1]
    step = 1 if len(parts) < 3 or values[2] is None else values[2]
    return step >= 1 and start < stop <= length


@settings(max_examples=150, **SETTINGS)
@given(axis=st.sampled_from([("vert", 6), ("horz", 8)]), text=SPANS)
def test_spans(d, axis, text):
    name, length = axis
    other = "horz" if name == "vert" else "vert"
    path = f"/sum/{U16}.npy?" + urllib.parse.urlencode({name: text, other: "0"})
    r = ask(d, path, "grammar")
    if spec_span(text, length):
        assert r.status == 200, (path, r.body[:300])
    else:
        expect_param(r, path, {name})


@settings(max_examples=100, **SETTINGS)
@given(scan=st.sampled_from([("generic/stack_0001", None, 24), (U16, (6, 8), 48)]),
                  text=st.one_of(st.tuples(NUMS, st.sampled_from("xX*×"), NUMS).map("".join),
                                 st.sampled_from(["24", "6x8x1", "x", "6x", "x8", "1x24", "6 x 8", "6x8 "])))
def test_grid(d, scan, text):
    name, recorded, frames = scan
    path = f"/sum/{name}.npy?" + urllib.parse.urlencode({"grid": text, "vert": "0", "horz": "0"})
    r = ask(d, path, "grammar")
    parts = [spec_int(p) for p in text.strip().lower().replace("*", "x").split("x")]
    ok = len(parts) == 2 and all(p is not None and p >= 1 for p in parts) and parts[0] * parts[1] == frames
    if ok and recorded in (None, tuple(parts)):
        assert r.status == 200, (path, r.body[:300])
    else:
        expect_param(r, path, {"grid"})


@settings(max_examples=100, **SETTINGS)
@given(text=st.one_of(st.tuples(NUMS, NUMS).map(",".join), st.sampled_from(["1", "1,2,3", ",", "1;2"])))
def test_at(d, text):
    path = f"/frame/{U16}.npy?" + urllib.parse.urlencode({"at": text})
    r = ask(d, path, "grammar")
    parts = [spec_int(p) for p in text.strip().split(",")]
    if len(parts) == 2 and None not in parts and 0 <= parts[0] < 6 and 0 <= parts[1] < 8:
        assert r.status == 200, (path, r.body[:300])
    else:
        expect_param(r, path, {"at"})


@settings(max_examples=100, **SETTINGS)
@given(text=st.one_of(NUMS.filter(bool), st.sampled_from(["1e3", "1.0", "-1", "+0", "٣", "0.5", "00"])))
def test_frame_number_in_the_path(d, text):
    path = f"/frame/{U16}/{urllib.parse.quote(text, safe='')}.npy"
    r = ask(d, path, "grammar")
    if re.fullmatch(r"[0-9]+", text) and spec_int(text) < 48:
        assert r.status == 200, (path, r.body[:300])
    elif re.fullmatch(r"[0-9]+", text) or re.fullmatch(r"[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?", text):
        expect_param(r, path, {"n"})
    else:  # not a number at all: a scan of that name, which does not exist (or a 400 naming n)
        assert r.status in (400, 404), (path, r.status)
        assert r.status == 404 or r.json().get("parameter") == "n"


SPECIAL = ["nan", "NaN", "inf", "-inf", "+inf", "Infinity", "1e308", "-1e308", "1e309", "-0", "-0.0", "5e-324",
           "2.2250738585072014e-308", "0x10", "0b11", "1_0", "٣", "１", "+1", ".5", "5.", "1e3", "1E-3", "", " ",
           "abc", "1,2", "--1", "1e", "e3", "0.0.1", " 7 ", "9" * 400, "1" + "0" * 4400]
PARTNERS = {"rmin": {"rmax"}, "rmax": {"rmin"}, "vmin": {"vmax"}, "vmax": {"vmin"}, "plow": {"phigh"},
            "phigh": {"plow"}, "cx": {"rmin", "rmax", "rdpc"}, "cy": {"rmin", "rmax", "rdpc"}}


def numeric_params(api: dict[str, Any]) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(endpoint, parameter, schema) for every integer or number parameter of every route."""
    return [(ep, name, s) for ep in api["endpoints"] for name, s in ep["parameters"].items()
            if s["type"] in ("integer", "number")]


def values_for(schema: dict[str, Any]):
    """Texts around and beyond a parameter's bounds, odd spellings, and any float at all."""
    bounds = [b for b in (schema.get("minimum"), schema.get("maximum")) if b is not None]
    edges = [repr(x) for b in bounds for x in (b, b - 1, b + 1, b - 1e-9, b + 1e-9)]
    edges += [str(int(x)) for b in bounds for x in (b, b - 1, b + 1)]
    return st.one_of(st.sampled_from(SPECIAL), st.sampled_from(edges or ["0"]), st.integers(-10**20, 10**20).map(str),
                     st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True).map(repr))


def spec_value(text: str, schema: dict[str, Any]) -> bool:
    """Whether the README's rules accept ``text`` for a parameter of this schema."""
    raw = text.strip()
    if schema["type"] == "integer":
        value: float | None = spec_int(raw)
    else:
        value = float(raw) if ASCII_NUMBER.fullmatch(raw) else None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return False
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and (value <= lo if schema.get("exclusiveMinimum") else value < lo):
        return False
    return hi is None or value <= hi


def one_point(ep: dict[str, Any], **query: str) -> str:
    """The route on one demo point (or one tomography row): cheap whatever the parameters."""
    fmt = ["png"] if "png" in ep["formats"] else ep["formats"]
    if "vert" in ep["parameters"]:
        query = {"vert": "0", "horz": "0", **query}
    return url(ep["path"], TOMO if ep["target"] == "tomo" else U16, fmt, **query)


@settings(max_examples=800, **SETTINGS)
@given(data=st.data())
def test_every_numeric_parameter(d, api, data):
    ep, name, schema = data.draw(st.sampled_from(numeric_params(api)), label="parameter")
    text = data.draw(values_for(schema), label="value")
    path = one_point(ep, **{name: text})
    r = ask(d, path, "numeric")
    partners = PARTNERS.get(name.rpartition(".")[2], set())
    names = {name} | {other for other in ep["parameters"] if other.rpartition(".")[2] in partners}
    if not spec_value(text, schema):
        expect_param(r, path, {name})
    elif r.status >= 400:  # in range, yet impossible here (beyond the frame, too large a png): said so
        expect_param(r, path, names, (400, 413))


SELECTION_TEXT = st.text(st.sampled_from("0123456789:,- +x."), max_size=24)


@settings(max_examples=300, **SETTINGS)
@given(selection=SELECTION_TEXT, fmt=st.sampled_from(["json", "bin", "npy", "csv", "tiff"]))
def test_every_h5grove_selection(d, selection, fmt):
    """Any selection text on a compressed stack: read (200) or refused naming it (400, 413), never a 5xx."""
    path = (f"/h5grove/data/?file={U16}_data_000001.h5&path=/entry/data/data&format={fmt}"
            f"&selection={urllib.parse.quote(selection)}")
    r = ask(d, path, "h5grove selection")
    if r.status >= 400:
        expect_param(r, path, {"selection", "format"}, (400, 413))


# -- 3. paths that try to leave the data root ------------------------------------------------------------

def path_tricks(world: World) -> list[str]:
    """Scan paths aiming outside the root, every way we know; none may be opened."""
    out = world.outside
    return [
        "../outside/secret", "../outside/secret.h5", "..%2foutside%2fsecret", "%2e%2e/outside/secret",
        "%2E%2E%2Foutside%2Fsecret", "%252e%252e/outside/secret", "..%252foutside%252fsecret", ".%2e/outside/secret",
        "eiger/../../outside/secret", "eiger/%2e%2e/%2e%2e/outside/secret", "eiger/u16/..%2f..%2f..%2foutside/secret",
        f"/{out}/secret", urllib.parse.quote(f"{out}/secret", safe=""), f"/{out}/fifo", "/etc/passwd",
        "%2fetc%2fpasswd", "..\\outside\\secret", "..%5coutside%5csecret", "eiger%5c..%5c..%5coutside%5csecret",
        f"{U16}%00", f"{U16}%00/../../../outside/secret", "%00../outside/secret", "~root", "~root/.bashrc",
        "%7eroot", "~", "%ef%bc%8e%ef%bc%8e/outside/secret", "%e2%80%a4%e2%80%a4/outside/secret",
        "%c0%ae%c0%ae/outside/secret", "%c0%ae%c0%ae%c0%afoutside%c0%afsecret", "%e0%80%ae%e0%80%ae/outside/secret",
        "%25c0%25ae%25c0%25ae/outside/secret", "....//outside/secret", "..;/outside/secret", f"./{U16}",
        U16.replace("/", "//"), "links/secret", "links/relative", "links/escape", "links/pipe", "links/local_pipe",
        "links/door/secret", "links/door/fifo", "links/door/scan_0009", "links/door", "links/marker",
        "a/" * 5000, "..%2F" * 2000 + "etc/passwd",
    ]


MASK_TRICKS = ["../outside/mask.npy", "%2e%2e/outside/mask.npy", "..%2foutside%2fmask.npy", "/etc/passwd",
               "masks/../../outside/mask.npy", "masks/out.npy", "masks/pipe.npy", "masks/local_pipe.npy",
               "masks/marker.npy", "masks/elink.h5", "~root/mask.npy", "masks/ok.npy\x00", "masks\\ok.npy",
               "．．/outside/mask.npy", b"\xc0\xae\xc0\xae/outside/mask.npy", "masks//ok.npy", "masks/./ok.npy",
               "masks/", "m" * 9000]
TOO_LONG = 414  # a request line beyond aiohttp's limit, answered by its parser (as JSON)


H5GROVE = ("meta", "attr", "data", "stats", "paths")


def corpus(world: World, api: dict[str, Any]) -> list[str]:
    """Every trick on every route, and as the file of every h5grove route (with the names of files and of a
    scan's analyses); the usermask tricks on every route taking a mask, and on the analyses."""
    paths = []
    for ep in api["endpoints"]:
        for trick in path_tricks(world):
            paths.append(url(ep["path"], trick, ep["formats"]))
        if "usermask" in ep["parameters"]:
            paths += [one_point(ep, usermask=m) for m in MASK_TRICKS]
    for route in H5GROVE:
        for trick in path_tricks(world):
            paths += [f"/h5grove/{route}/?file={trick}{suffix}&path=/" for suffix in ("", ".h5", "_master.h5", ".dada")]
    mask = "/h5grove/meta/?file=eiger/u16/scan_0001.dada&path=/darkfield&usermask="
    paths += [mask + urllib.parse.quote(m, safe="/") for m in MASK_TRICKS]
    return paths


def check_corpus(d: Daemon, world: World, paths: list[str], statuses: tuple[int, ...] = (400, 403, 404, TOO_LONG)
                 ) -> None:
    for path in paths:
        r = ask(d, path, "traversal", timeout=5)
        assert r.status in statuses, (path[:300], r.status, r.body[:300])
        if "usermask=" in path and r.status == 400:
            assert r.json()["parameter"] == "usermask", (path[:300], r.json())
    assert not fifo_has_reader(world.fifo), "a process opened the FIFO outside the root"


def test_traversal_corpus_on_every_route(d, world, api):
    darkfield = next(ep for ep in api["endpoints"] if ep["name"] == "darkfield")
    assert d.get(one_point(darkfield, usermask="masks/ok.npy")).status == 200  # a mask does work
    check_corpus(d, world, corpus(world, api))
    assert d.alive()


# Files inside the root whose HDF5 links, virtual datasets or external storage point out of it.
HDF5_LINKS = {"links/elink": (422,), "links/elink_fifo": (422,), "links/vds": (422,), "links/external": (422,),
              "bad/geometry_link/scan_0001": (200,)}


@pytest.mark.parametrize("scan", sorted(HDF5_LINKS))
def test_hdf5_links_out_of_the_root_are_not_followed(d, world, scan):
    for path in (f"/meta/{scan}.json", f"/frame/{scan}/0.npy", f"/sum/{scan}.npy?grid=1x1&vert=0&horz=0"):
        r = ask(d, path, "hdf5 link", timeout=5)
        assert r.status in HDF5_LINKS[scan] + (400,), (path, r.status, r.body[:300])
    assert not fifo_has_reader(world.fifo)
    if scan.startswith("bad/"):  # a link in the metadata is no metadata: the scan itself still serves
        meta = ask(d, f"/meta/{scan}.json", "hdf5 link").json()
        assert meta["geometry"]["beam_center_x"] is None and meta["masked_pixels"] == 0


H5GROVE_LINKS = {"links/elink.h5": "/entry/data/data", "links/elink_fifo.h5": "/entry/data/data",
                 "links/vds.h5": "/entry/data/data", "links/external.h5": "/entry/data/data",
                 "bad/geometry_link/scan_0001_master.h5": "/entry/instrument/detector/beam_center_x",
                 "masks/elink.h5": "/mask"}


@pytest.mark.parametrize("file", sorted(H5GROVE_LINKS))
def test_h5grove_follows_no_link_out_of_the_root(d, world, file):
    """Links and virtual datasets aiming outside: described (an unresolved link, a dataset's shape), never read."""
    path = H5GROVE_LINKS[file]
    for route in H5GROVE:
        for where in ("/", path, path.rsplit("/", 1)[0] or "/", path + "/x"):
            for extra in ("", "&resolve_links=all", "&format=bin", "&selection=0"):
                r = ask(d, f"/h5grove/{route}/?file={file}&path={where}{extra}", "h5grove link", timeout=5)
                assert r.status in (200, 400, 404, 422), (file, route, where, r.status, r.body[:300])
                if route in ("data", "stats") and where == path:
                    assert r.status != 200, (file, route, r.body[:300])
    assert ask(d, f"/h5grove/meta/?file={file}&path={path}", "h5grove link").status == 200
    assert not fifo_has_reader(world.fifo)


def test_no_descriptor_outside_the_root_and_none_leaks(d, world, api):
    paths = corpus(world, api)
    pids = process_tree(d.proc.pid)
    assert len(pids) >= 2, "the local nodes are child processes"
    counts = []
    for _ in range(3):
        check_corpus(d, world, paths)
        check_corpus(d, world, [f"/frame/{s}/0.npy" for s in HDF5_LINKS], (200, 422))
        counts.append(sum(len(t) for t in open_files(pids).values()))
        assert foreign(world, pids) == []
    assert counts[2] <= counts[0] + 2, f"descriptors grew over rounds of the same requests: {counts}"
    assert not any(world.outside in t for targets in open_files(pids).values() for t in targets)


# -- 4. truncated, corrupt and ill-formed files -----------------------------------------------------------

CORRUPT = ["bad/master_half/scan_0001", "bad/data_half/scan_0001", "bad/flipped/scan_0001", "bad/ndim/scan_0001",
           "bad/shape/scan_0001", "bad/dtype/scan_0001", "bad/metadata/scan_0001", "bad/zero", "bad/text",
           "bad/flat", "bad/strings", "bad/compound", "bad/complex", "bad/half", "bad/no_pixels",
           "bad/floats", "bad/negative_grid", "bad/one_number_grid"]


def corrupt_requests(scan: str) -> list[str]:
    point = "vert=0&horz=0" + ("" if scan.endswith("/scan_0001") else "&grid=1x4")
    return [f"/meta/{scan}.json", f"/frame/{scan}/2.npy", f"/frame/{scan}/25.png", f"/frame/{scan}/0.json",
            f"/sum/{scan}.npy", f"/sum/{scan}.npy?{point}", f"/composite/{scan}.npy?{point}",
            f"/darkfield/{scan}.npy?{point}&cx=3&cy=3&rmin=1", f"/radial/{scan}.npy?{point}&cx=3&cy=3",
            *h5grove_requests(scan)]


def h5grove_requests(scan: str) -> list[str]:
    """The same damage through /h5grove/: each file of the scan described, listed and read."""
    files = ([f"{scan}_master.h5", f"{scan}_data_000001.h5", f"{scan}_data_000002.h5"]
             if scan.endswith("/scan_0001") else [f"{scan}.h5"])
    out = [f"/h5grove/meta/?file={scan}.dada&path=/darkfield&cx=3&cy=3&rmin=1"]
    for f in files:
        out += [f"/h5grove/meta/?file={f}&path=/", f"/h5grove/paths/?file={f}&path=/",
                f"/h5grove/data/?file={f}&path=/entry/data/data&selection=0&format=bin",
                f"/h5grove/stats/?file={f}&path=/entry/data/data&selection=1"]
    return out


@pytest.mark.parametrize("scan", CORRUPT)
def test_corrupt_files_are_4xx_naming_file_or_frame(d, scan):
    for path in corrupt_requests(scan):
        r = ask(d, path, "corrupt")
        if r.status == 422:
            body = r.json()
            assert "frame" in body or re.search(r"\w+\.h5", body["message"]), (path, body)
        else:
            assert r.status in (200, 400, 404), (path, r.status, r.body[:300])
    assert d.get(f"/frame/{U16}/0.npy").status == 200


def test_corrupt_data_is_named(d):
    """The damage itself, not some later symptom, is what the answers say."""
    for scan in ("master_half", "data_half", "ndim", "shape", "dtype"):
        body = ask(d, f"/meta/bad/{scan}/scan_0001.json", "corrupt").json()
        assert body["status"] == 422 and "scan_0001_" in body["message"], body
    flipped = ask(d, "/frame/bad/flipped/scan_0001/2.npy", "corrupt")
    assert flipped.status == 200 or flipped.json().get("frame") == 2
    for name in ("zero", "text", "flat", "strings", "compound", "complex", "half", "no_pixels", "negative_grid"):
        body = ask(d, f"/meta/bad/{name}.json", "corrupt").json()
        assert body["status"] == 422 and re.search(rf"\b{name}(_master)?\.h5", body["message"]), body
    assert ask(d, "/sum/bad/floats.npy", "corrupt").status == 200  # frames of floats are data, not damage


@pytest.mark.parametrize("name", ["strings", "complex", "few_keys", "no_projections", "text_keys", "two_angles",
                                  "nan_angles", "flat_shape"])
def test_ill_formed_tomography_is_422_naming_the_file(d, name):
    for path in (f"/meta/badtomo/{name}.json", f"/tomo/sinogram/badtomo/{name}/0.npy",
                 f"/tomo/slice/badtomo/{name}/0.png", f"/tomo/center/badtomo/{name}.json"):
        body = ask(d, path, "corrupt").json()
        assert body["status"] == 422 and f"{name}.h5" in body["message"], (path, body)


def test_huge_recorded_grid_is_413_before_reading(d):
    for path in ("/composite/bad/huge_grid.npy", "/sum/bad/huge_grid.npy?vert=0:999999&horz=0:999999"):
        assert ask(d, path, "corrupt", timeout=5).status == 413, path


BAD_MASKS = ["empty.npy", "struct.npy", "text.npy", "shape.npy", "huge.npy", "compound.h5", "two.h5", "text.h5"]


@pytest.mark.parametrize("mask", BAD_MASKS)
def test_bad_usermask_is_400_naming_it(d, api, mask):
    for ep in api["endpoints"]:
        if "usermask" in ep["parameters"]:
            path = one_point(ep, usermask=f"masks/{mask}")
            expect_param(ask(d, path, "usermask", timeout=5), path, {"usermask"})


def test_other_scans_keep_answering(d):
    for scan in CORRUPT:
        d.get(f"/sum/{scan}.npy")
    for scan in REAL["scan"][:3]:
        assert ask(d, f"/meta/{scan}.json", "corrupt").status == 200
        assert ask(d, f"/darkfield/{scan}.npy?vert=0&horz=0" + ("&grid=3x8&cx=30&cy=30" if "generic" in scan else ""),
                   "corrupt").status == 200
    assert d.alive()


# -- 5. huge values ----------------------------------------------------------------------------------------

HUGE = [
    f"/sum/{U16}.npy?bin=1000000", f"/composite/{U16}.npy?bin=1000000", f"/radial/{U16}.npy?nbins=1000000000",
    f"/azimuthal/{U16}.npy?nsectors=1000000000", f"/stxm/{U16}.npy?azimuthal.nsectors=1000000000",
    f"/stxm/{U16}.npy?radial.nbins=1000000000", f"/frame/{U16}/0.png?scale=1000000",
    f"/frame/{U16}/0.png?width=1000000000", f"/darkfield/{U16}.png?width=1000000000",
    f"/darkfield/{U16}.png?scale=64&width=8192", f"/frame/{U16}/0.png?width=8192",
    f"/sum/{U16}.npy?grid=1000000x1000000", "/sum/generic/stack_0001.npy?grid=1000000x1000000",
    "/composite/generic/stack_0001.npy?grid=1000000x1000000", f"/sum/{U16}.npy?horz=0:999999999",
    f"/sum/{U16}.npy?vert=999999999:", f"/composite/{U16}.npy?horz=0:999999999&vert=0:999999999",
    f"/darkfield/{U16}.npy?horz=0:999999999", f"/frame/{U16}.npy?at=999999999,999999999",
    f"/frame/{U16}/99999999999999999999999999.npy", f"/darkfield/{U16}.npy?rmax=1e308",
    f"/darkfield/{U16}.npy?cx=1e308", f"/dpc/{U16}.npy?rdpc=1e308", f"/dpc/{U16}.npy?rotation=1e308",
    f"/stxm/{U16}.npy?channels=" + ",".join(["darkfield", "dpc"] * 700),
    f"/stxm/{U16}.npy?channels=" + "darkfield," * 5000, f"/radial/{U16}.npy?output=" + "radial," * 700,
    f"/frame/{U16}/0.png?cmap=" + "viridis," * 700,
    f"/sum/{U16}.npy?" + "&".join(f"x{i}=1" for i in range(600)), f"/meta/{U16}.json?grid=" + "9" * 4000 + "x1",
    f"/tomo/slice/{TOMO}/99999999999.npy", f"/tomo/slice/{TOMO}/8.npy?every=1000000000",
    f"/tomo/slice/{TOMO}/8.npy?bin=1000000", f"/tomo/center/{TOMO}.json?row=1000000000000",
    f"/tomo/slice/{TOMO}/8.npy?ring_size=1000000&rings=true", f"/tomo/slice/{TOMO}/8.npy?center=1e308",
    *(f"/h5grove/{route}/?file={U16}_data_000001.h5&path=/entry/data/data&{q}" for route in ("data", "stats")
      for q in ("selection=99999999999999999999999", "selection=" + ",".join(["0"] * 5000),
                "selection=" + "9" * 4000, "selection=::-99999999999999", "selection=" + ":" * 5000)),
    *(f"/h5grove/data/?file={U16}_data_000001.h5&path=/entry/data/data&{q}"
      for q in ("format=" + "json" * 1000, "dtype=" + "safe" * 1000)),
    *(f"/h5grove/meta/?file={U16}.dada&path=/{c}&{q}" for c in ("darkfield", "radial", "azimuthal")
      for q in ("nbins=1000000000", "nsectors=1000000000", "horz=0:999999999", "rmax=1e308", "cx=1e308")),
    f"/h5grove/meta/?file={U16}_master.h5&" + "&".join(f"x{i}=1" for i in range(600)),
    f"/h5grove/attr/?file={U16}_master.h5&path=/entry&" + "&".join(f"attr_keys=k{i}" for i in range(600)),
]


def test_huge_values_are_refused_quickly_and_cheaply(d):
    pids = process_tree(d.proc.pid)
    before = rss_bytes(pids)
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_bytes(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for path in HUGE:
            t0 = time.monotonic()
            r = ask(d, path, "huge", timeout=5)
            assert time.monotonic() - t0 < 5, path[:200]
            assert r.status in (400, 404, 413, TOO_LONG), (path[:200], r.status, r.body[:300])
    finally:
        done.set()
        sampler.join()
    assert peak[0] - before < 300 * 2**20, f"RSS grew by {(peak[0] - before) / 2**20:.0f} MB"
    assert d.alive()


def test_no_internal_error_was_logged(d):
    """Nothing above ended in an unexpected exception (the middleware logs each as "internal error")."""
    assert d.alive()
    assert "internal error" not in d.output()
    assert "Traceback" not in d.output()  # nor did a refused request log one (a log flood anyone could cause)

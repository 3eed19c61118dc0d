"""dada.client and ``dada get`` against a real daemon: numbers vs h5py reads, the numpy reference and the
server's own .npy answers; retries, errors and tokens through a stub HTTP server in front of the daemon."""

from __future__ import annotations

import http.server
import inspect
import io
import json
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from helpers import Daemon, http_get
from stxm_reference import annulus, reference
from test_stxm import load, selection_frames

from dada.client import Answer, Client, ServerError

SCAN = "eiger/u16/scan_0001"
TOMO = "tomo/nxtomo_0001"


@pytest.fixture(scope="module")
def client(daemon) -> Client:
    return Client(daemon.base, progress=False)


def npy(daemon: Daemon, answer: Answer, **more: str) -> np.ndarray:
    """The server's .npy answer to the same URL as an h5 answer (plus presentation parameters)."""
    parts = urlsplit(answer.url)
    query = "&".join([parts.query] * bool(parts.query) + [f"{k}={v}" for k, v in more.items()])
    r = daemon.get(parts.path.removesuffix(".h5") + ".npy" + (f"?{query}" if query else ""))
    assert r.status == 200, r.body
    return np.load(io.BytesIO(r.body))


def test_frames_match_h5py(client, demo_root):
    frames, *_, (_, h) = load(demo_root, SCAN)
    for n in (0, 17, len(frames) - 1):
        a = client.frame(SCAN, n)
        assert a.data.dtype == np.uint16 and a.attrs["frame"] == n and a.attrs["scan"] == SCAN
        np.testing.assert_array_equal(a.data, frames[n])
    np.testing.assert_array_equal(client.frame(SCAN, at=(2, 3)).data, frames[2 * h + 3])


def test_darkfield_matches_reference_and_npy_and_carries_parameters(client, daemon, demo_root):
    frames, bad, cutoff, cx, cy, vh = load(demo_root, SCAN)
    idx = selection_frames(vh, False, range(1, 5), range(0, 8, 3))
    ref = reference(frames[idx.ravel()], bad, cutoff, cx, cy, rmin=6.0, rmax=24.0, rdpc=5.0, nsectors=12, nbins=9)
    a = client.darkfield(SCAN, rmin=6, rmax=24.0, vert=slice(1, 5), horz="0:8:3")
    assert a.url == f"{daemon.base}/darkfield/{SCAN}.h5?vert=1:5&horz=0:8:3&rmin=6&rmax=24.0"
    np.testing.assert_allclose(a.data, ref["darkfield"].reshape(idx.shape), rtol=1e-12)
    np.testing.assert_array_equal(a.data, npy(daemon, a))
    np.testing.assert_array_equal(a.arrays["transmission"], npy(daemon, a, output="transmission"))
    assert a.attrs["darkfield"]["rmin"] == 6 and a.attrs["darkfield"]["rmax"] == 24
    assert a.attrs["vert"] == [1, 5, 1] and a.attrs["scan"] == SCAN and a.attrs["request_id"]
    np.testing.assert_array_equal(np.asarray(a), a.data)
    np.testing.assert_array_equal(client.darkfield(SCAN, output="transmission").data,
                                  client.darkfield(SCAN).arrays["transmission"])


def test_maxpixel_and_contrast_are_methods_with_no_client_change(client, daemon, demo_root):
    """Channels added on the server only: the client has them from /api, with their parameters."""
    frames, bad, cutoff, cx, cy, vh = load(demo_root, SCAN)
    idx = selection_frames(vh, False, range(0, 3), range(2, 6))
    ref = annulus(frames[idx.ravel()], bad, cutoff, cx, cy, rmin=4.0, rmax=20.0)
    for name in ("maxpixel", "contrast"):
        a = getattr(client, name)(SCAN, rmin=4, rmax=20.0, vert=slice(0, 3), horz="2:6")
        np.testing.assert_allclose(a.data, ref[name].reshape(idx.shape), rtol=1e-9)
        np.testing.assert_array_equal(a.data, npy(daemon, a))
        assert a.attrs[name]["rmin"] == 4
    both = client.stxm(SCAN, channels=("maxpixel", "contrast"), maxpixel_rmin=4, maxpixel_rmax=20.0,
                       output="maxpixel.maxpixel", vert=slice(0, 3), horz="2:6")
    np.testing.assert_array_equal(both.arrays["maxpixel.maxpixel"], ref["maxpixel"].reshape(idx.shape))


def test_sum_booleans_and_stxm_choices_and_dotted_parameters(client, daemon, demo_root):
    frames, *_, vh = load(demo_root, SCAN)
    s = client.sum(SCAN, vert=slice(0, 2), horz=slice(1, 5), mask=False)
    assert "mask=false" in s.url and s.attrs["frames_used"] == 8
    np.testing.assert_array_equal(s.data, frames[selection_frames(vh, False, range(2), range(1, 5)).ravel()].sum(0))
    a = client.stxm(SCAN, channels=("darkfield", "dpc"), darkfield_rmin=8, **{"dpc.rdpc": 6})
    assert "channels=darkfield,dpc&darkfield.rmin=8&dpc.rdpc=6" in a.url
    assert set(a.arrays) == {"darkfield.darkfield", "darkfield.transmission", "dpc.dpc"}
    assert a.attrs["dpc"]["rdpc"] == 6 and a.attrs["darkfield"]["rmin"] == 8
    np.testing.assert_array_equal(a.data, client.darkfield(SCAN, rmin=8).data)
    np.testing.assert_array_equal(a.arrays["dpc.dpc"], npy(daemon, client.dpc(SCAN, rdpc=6)))


def test_tomography_and_json_routes(client, daemon):
    sl = client.tomo_slice(TOMO, 8, rings=True)
    assert sl.data.shape == (96, 96) and sl.attrs["rings"] is True and "rings=true" in sl.url
    np.testing.assert_array_equal(sl.data, npy(daemon, sl))
    sino = client.tomo_sinogram(TOMO, 8)
    assert set(sino.arrays) == {"angles", "sinogram"} and sino.data is sino.arrays["sinogram"]
    assert client.tomo_center(TOMO)["center"] == daemon.get(f"/tomo/center/{TOMO}.json").json()["center"]
    assert {"eiger", "tomo"} <= set(client.browse()["folders"])
    assert [s["path"] for s in client.browse("eiger/u16")["scans"]] == [SCAN]
    assert client.meta(SCAN)["grid"]["vert"] == 6


def test_a_method_for_every_endpoint_of_api_with_its_parameters(client, daemon):
    for ep in daemon.get("/api").json()["endpoints"]:
        method = getattr(client, ep["name"].replace("-", "_"))
        sig = inspect.signature(method)
        for name, schema in ep["parameters"].items():
            py = name.replace(".", "_")
            shown = not schema.get("x-presentation") or name == "output"
            assert (py in sig.parameters) == shown, (ep["name"], name)
            assert (f"\n{py} : " in method.__doc__) == shown
        if ep["item"]:
            assert ep["item"]["name"] in sig.parameters
    assert "rmin : number, in px, >= 0, default 10.0" in client.darkfield.__doc__
    with pytest.raises(AttributeError, match="darkfield"):
        client.no_such_analysis  # noqa: B018


def test_server_errors_name_the_parameter(client):
    with pytest.raises(ServerError) as e:
        client.azimuthal(SCAN, nsectors=2)
    assert e.value.status == 400 and e.value.parameter == "nsectors" and "nsectors" in str(e.value)
    assert e.value.allowed and e.value.body()["parameter"] == "nsectors"
    with pytest.raises(ServerError) as e:
        client.meta("eiger/nope")
    assert e.value.status == 404 and "nope" in str(e.value)


def test_progress_stream_feeds_the_client(demo_root):
    slow = Daemon(["serve", demo_root, "--cache-dir", "none", "--block-frames", "8"],
                  env={"DADA_TEST_JOB_DELAY": "0.2"})
    try:
        c = Client(slow.base)
        a = c.darkfield(SCAN, rmin=7)
        assert c.last_progress is not None
        assert c.last_progress["done"] == c.last_progress["total"] == 6  # 48 frames in blocks of 8
        assert a.data.shape == (6, 8)
        t0 = time.monotonic()  # a request refused before it is named: its stream never ends, nobody waits
        with pytest.raises(ServerError):
            c.darkfield(SCAN, rmin=-1)
        c.frame(SCAN, 0)  # a stream with no progress at all
        assert time.monotonic() - t0 < 3 and c.last_progress is None
        time.sleep(0.1)
        assert not [t for t in threading.enumerate() if t.name.startswith("dada-progress")]
    finally:
        slow.stop()


class Stub:
    """A real HTTP server in front of the daemon: scripted answers per path first ("drop" closes the
    connection unanswered, a number is that status with Retry-After: 0), then the daemon's own answers."""

    def __init__(self, upstream: Daemon) -> None:
        self.script: dict[str, list[Any]] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []  # path and headers (names in lower case)
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.answer(self, upstream)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, h: http.server.BaseHTTPRequestHandler, upstream: Daemon) -> None:
        path = urlsplit(h.path).path
        self.seen.append((path, {k.lower(): v for k, v in h.headers.items()}))
        todo = self.script.get(path)
        action = todo.pop(0) if todo else 404 if path.startswith("/progress/") else None
        if action == "drop":
            return
        if action is None:
            r = http_get(upstream.port, h.path)
            status, ctype, body = r.status, r.headers["content-type"], r.body
        else:
            status, ctype = action, "application/json"
            body = json.dumps({"error": "scripted", "status": action, "message": f"scripted {action}"}).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Retry-After", "0")
        h.end_headers()
        h.wfile.write(body)

    def hits(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.seen if p == path]


@pytest.fixture
def stub(daemon):
    s = Stub(daemon)
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_retries_on_503_and_dropped_connections_with_the_token_everywhere(stub, daemon):
    path = f"/darkfield/{SCAN}.h5"
    c = Client(stub.base, token="tok-1")
    stub.script[path] = ["drop", 503, 503]
    a = c.darkfield(SCAN)
    np.testing.assert_array_equal(a.data, npy(daemon, a))
    tries = stub.hits(path)
    assert len(tries) == 4 and len({t["x-request-id"] for t in tries}) == 4  # a fresh request id per attempt
    streams = [h for p, h in stub.seen if p.startswith("/progress/")]
    assert streams and {h["authorization"] for _, h in stub.seen} == {"Bearer tok-1"}  # the streams too
    stub.script[path] = [503] * 3
    with pytest.raises(ServerError) as e:
        Client(stub.base, retries=2, progress=False).darkfield(SCAN)
    assert e.value.status == 503 and len(stub.hits(path)) == 4 + 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 500])
def test_other_errors_are_never_retried(stub, status):
    c = Client(stub.base, progress=False)
    path = f"/dpc/{SCAN}.h5"
    stub.script[path] = [status, status]
    with pytest.raises(ServerError) as e:
        c.dpc(SCAN)
    assert e.value.status == status and f"scripted {status}" in str(e.value) and len(stub.hits(path)) == 1
    assert ("DADA_TOKEN" in str(e.value)) == (status in (401, 403))


def test_bad_keyword_is_a_type_error_before_any_request_and_token_from_environment(stub, monkeypatch):
    monkeypatch.setenv("DADA_TOKEN", "from-env")
    c = Client(stub.base, progress=False)
    before = len(stub.seen)
    with pytest.raises(TypeError, match="rmni.*rmin"):
        c.darkfield(SCAN, rmni=12)
    with pytest.raises(TypeError, match="cmap"):  # png-only display settings are not the client's
        c.darkfield(SCAN, cmap="magma")
    with pytest.raises(TypeError, match="slice"):
        c.darkfield(SCAN, rmin=slice(1, 2))
    assert len(stub.seen) == before == 1
    assert stub.seen[0][1]["authorization"] == "Bearer from-env"


def dada_get(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dada.cli", "get", *args], capture_output=True, timeout=120)


def test_dada_get_writes_the_answer_and_reports_errors(daemon, tmp_path):
    path = f"/darkfield/{SCAN}.png?rmin=12&cmap=magma"
    want = daemon.get(path).body
    out = tmp_path / "df.png"
    r = dada_get(daemon.base + path, "-o", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == want
    r = dada_get(daemon.base + path, "-o", "-")
    assert r.returncode == 0 and r.stdout == want
    missing = tmp_path / "missing.json"
    r = dada_get(f"{daemon.base}/meta/eiger/nope.json", "-o", str(missing))
    message = daemon.get("/meta/eiger/nope.json").json()["message"]
    assert r.returncode == 1 and message in r.stderr.decode() and not missing.exists()

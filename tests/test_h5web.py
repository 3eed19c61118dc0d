"""The real h5web app on dada: ``@h5web/app`` from the npm registry with ``H5GroveProvider`` pointed at the
daemon's /h5grove/, built here with vite from deploy/h5web and opened in Debian's Chromium.

The npm packages are installed once into a cache folder named by deploy/h5web/package.json's hash
(``$DADA_NPM_CACHE``, default ``~/.cache/dada/npm``), so reruns skip the download; the app is built per
session. The page is served by a plain static server on another port and calls dada cross-origin
(``cors_origins``), opened through the URL ``/api`` advertises (``h5web_url``), as dada's GUI links it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import h5py
import numpy as np
import pytest
from browser import chromium, console_errors, shot, wait
from helpers import Daemon, free_port, missing
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(os.path.dirname(HERE), "deploy", "h5web")
SCAN = "eiger/u16/scan_0001"
FRAME_FILE, FRAME_PATH = "eiger/u16/scan_0001_data_000001.h5", "/entry/data/data"


def npm_cache() -> str:
    """node_modules for deploy/h5web/package.json, installed from the npm registry the first time."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing("node and npm are not installed (tests/install_parts.sh)")
    with open(os.path.join(APP, "package.json"), "rb") as fh:
        key = hashlib.sha256(fh.read()).hexdigest()[:16]
    base = os.environ.get("DADA_NPM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dada", "npm"))
    folder = os.path.join(base, key)
    if not os.path.isdir(folder):
        # installed beside, then renamed into place: a half-done install (or another session's) is never used
        os.makedirs(base, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f"{key}.", dir=base)
        shutil.copy(os.path.join(APP, "package.json"), work)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=work,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm install failed: {done.stderr[-2000:]}"
        try:
            os.rename(work, folder)
        except OSError:  # another session got there first
            shutil.rmtree(work, ignore_errors=True)
    return folder


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> str:
    """The app built with vite: deploy/h5web's sources over the cached node_modules."""
    cache = npm_cache()
    src = str(tmp_path_factory.mktemp("h5web-src"))
    for name in os.listdir(APP):
        shutil.copy(os.path.join(APP, name), src)
    os.symlink(os.path.join(cache, "node_modules"), os.path.join(src, "node_modules"))
    out = os.path.join(src, "dist")
    vite = os.path.join(cache, "node_modules", ".bin", "vite")
    done = subprocess.run([vite, "build", "--outDir", out, "--logLevel", "error"], cwd=src,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"vite build failed: {done.stderr[-2000:]}"
    assert os.path.isfile(os.path.join(out, "index.html"))
    return out


@pytest.fixture(scope="module")
def page_server(dist):
    """The built app on its own origin: Python's static file server, a real process."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", dist], stdout=log, stderr=log)
    origin = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(origin + "/", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the static server did not come up"
            time.sleep(0.1)
    yield origin
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def d(demo_root, page_server, tmp_path_factory):
    port = free_port()
    config = tmp_path_factory.mktemp("h5web-config") / "dada.toml"
    template = f"{page_server}/?url=http://127.0.0.1:{port}/h5grove&file={{file}}"
    config.write_text(f'cors_origins = ["{page_server}"]\nh5web_url = "{template}"\n')
    daemon = Daemon(["serve", demo_root, "--config", str(config), "--cache-dir", "none", "--local-nodes", "1"],
                    port=port)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def browser():
    driver = chromium("--enable-unsafe-swiftshader", "--use-angle=swiftshader")  # h5web draws with WebGL
    yield driver
    driver.quit()


def open_h5web(driver, d: Daemon, file: str, path: str | None = None) -> None:
    """The page the GUI's "Open in h5web" link opens: /api's template with the file filled in."""
    url = d.get("/api").json()["h5web"].replace("{file}", file)
    driver.get(url + (f"&path={path}" if path else ""))


def text(driver) -> str:
    return driver.find_element("tag name", "body").text


def canvas_pixels(driver) -> np.ndarray:
    """What the page shows where h5web's WebGL canvas is, from a screenshot (WebGL buffers are not readable)."""
    canvas = wait(lambda: driver.find_elements("css selector", "canvas"), 60, "a canvas")[0]
    wait(lambda: canvas.size["width"] > 100 and canvas.size["height"] > 100, 30, "the canvas to be laid out")
    ratio = driver.execute_script("return window.devicePixelRatio") or 1
    png = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    x, y, w, h = (int(v * ratio) for v in (canvas.location["x"], canvas.location["y"], canvas.size["width"],
                                           canvas.size["height"]))
    return np.asarray(png.crop((x, y, x + w, y + h)))


def colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


def tick(value: float) -> str:
    """A number as h5web's colour bar writes its ends (d3's ``.3~e``: 9.1e+2, 1.816e+4)."""
    mantissa, exponent = f"{value:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{int(exponent):+d}"


def test_api_names_the_h5web_page(d, page_server):
    template = d.get("/api").json()["h5web"]
    assert template.startswith(page_server) and "{file}" in template


def test_h5web_lists_a_scan_tree(d, browser):
    """The link dada's GUI makes for a scan (its path in /api's template) opens the scan's file in h5web."""
    open_h5web(browser, d, SCAN, "/entry/data")
    wait(lambda: "instrument" in text(browser), 60, "the master file's tree")
    body = text(browser)
    for name in ("scan_0001", "entry", "data", "data_000001", "data_000002", "instrument", "scan"):
        assert name in body, body[:500]
    errors = console_errors(browser)
    assert all("favicon" in e for e in errors), errors


def test_h5web_shows_a_raw_frame(d, browser, demo_root):
    """A bitshuffle-compressed Eiger frame as h5web's heatmap (the stack's first, where its slider starts):
    drawn in many colours, its colour bar's maximum the frame's own, read here with h5py."""
    open_h5web(browser, d, FRAME_FILE, FRAME_PATH)
    wait(lambda: "Heatmap" in text(browser), 60, "the heatmap of a frame")
    with h5py.File(os.path.join(demo_root, FRAME_FILE)) as f:
        first = f[FRAME_PATH][0]
    wait(lambda: tick(first.max()) in text(browser), 60, f"the colour bar's maximum {tick(first.max())}")
    assert wait(lambda: colours(canvas_pixels(browser)) > 20, 60, "a frame drawn in many colours")
    shot(browser, "h5web-frame")


def test_h5web_shows_a_darkfield_map_with_its_axes(d, browser):
    open_h5web(browser, d, f"{SCAN}.dada")
    wait(lambda: "scan row" in text(browser), 120, "the darkfield map's axes")
    body = text(browser)
    for label in ("darkfield (counts)", "scan row", "scan column", "darkfield", "dpc", "radial", "azimuthal"):
        assert label in body, body[:800]
    darkfield = np.load(io.BytesIO(d.get(f"/darkfield/{SCAN}.npy").body))
    for end in (darkfield.min(), darkfield.max()):
        assert tick(end) in body, (tick(end), body[:800])
    assert wait(lambda: colours(canvas_pixels(browser)) > 20, 60, "a map drawn in many colours")
    path = shot(browser, "h5web")
    assert Image.open(path).size[0] > 1000


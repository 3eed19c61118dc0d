"""The web GUI end to end: a real headless Chromium against a real ``dada serve`` on demo data.

Every number the page shows is checked against an independent source: the server's own png for the
same URL, frames read straight from the HDF5 files with h5py, and a numpy sum for a plug-in channel.
Screenshots of each step are kept under tests/artifacts/gui/.
"""

from __future__ import annotations

import colorsys
import dataclasses
import io
import json
import os
import shutil
import sys
import textwrap
import urllib.parse

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle-LZ4 frames)
import numpy as np
import pytest
from browser import canvas_rgba, console_errors, decode_png, image_pixels, overflowing, shot, wait
from helpers import Daemon
from selenium.webdriver import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from dada.config import Config
from dada.demo.sample import Detector
from dada.demo.writer import ScanSpec, write_eiger

LINES, POINTS, PER_FILE = 24, 32, 96  # 768 frames in 8 data files
SCAN = "beam/scan_0001"

PLUGIN = '''
import numpy as np
from dada.params import Param
from dada.stxm.channel import Bins, Channel


class Halo(Channel):
    """A plug-in channel: counts in a ring of adjustable width just outside 10 px."""

    name = "halo"
    doc = "Counts with 10 <= r < 10 + halo_width."
    params = (Param("halo_width", "Width of the ring.", type="number", default=5.0, minimum=0.5, unit="px"),)
    outputs = ("halo",)

    def bins(self, geo, args):
        r = geo.radius()
        return Bins(np.where((r >= 10) & (r < 10 + args["halo_width"]), 0, -1).astype(np.int32), 1)

    def finalize(self, m, geo, args, context=None):
        return {"halo": m["sum"][:, 0]}
'''


@pytest.fixture(scope="module")
def gui_root(tmp_path_factory, demo_root) -> str:
    root = tmp_path_factory.mktemp("gui")
    spec = ScanSpec(LINES, POINTS, Detector(128, 120, "uint16"), PER_FILE, seed=7)
    write_eiger(str(root / "beam"), "scan_0001", spec, progress=lambda _m: None)
    write_eiger(str(root / "staging"), "scan_0002", ScanSpec(12, 16, Detector(64, 72, "uint16"), 32, seed=8),
                progress=lambda _m: None)
    for folder in ("tomo", "eiger"):  # the demo's tomography and its tiny (noisy) Eiger scans
        shutil.copytree(os.path.join(demo_root, folder), root / folder)
    return str(root)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """A plug-in channel (entry point ``dada.channels``) the module's daemon loads: written here, installed nowhere."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "halo_channel.py").write_text(textwrap.dedent(PLUGIN))
    info = folder / "dada_halo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dada-halo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[dada.channels]\nhalo = halo_channel:Halo\n")
    return os.pathsep.join([str(folder), *[p for p in sys.path if p]])


@pytest.fixture(scope="module")
def gui(gui_root, plugin_path):
    """Small blocks, each slowed a little, so maps visibly fill in block by block; with the plug-in channel."""
    d = Daemon(["serve", gui_root, "--cache-dir", "none", "--block-frames", "16"],
               env={"DADA_TEST_JOB_DELAY": "0.3", "PYTHONPATH": plugin_path})
    yield d
    d.stop()


def open_gui(driver, d: Daemon, tail: str = "/") -> None:
    """A fresh page load (an address that differs only after # would not load the page again)."""
    driver.get("about:blank")
    driver.get(d.base + tail)
    wait(lambda: driver.execute_script("return document.body.dataset.ready"), 30, "the GUI to start")
    assert driver.execute_script("return document.body.dataset.ready") == "true"


def map_state(driver) -> str:
    return driver.find_element(By.ID, "map-box").get_attribute("data-state") or ""


def wait_map(driver, state: str = "done", timeout: float = 90) -> None:
    wait(lambda: map_state(driver) in (state, "error"), timeout, f"the map to be {state}")
    assert map_state(driver) == state, driver.find_element(By.ID, "error").text


def shown_url(driver) -> str:
    """The result URL the page's address names (its fragment), without the clicked point."""
    return driver.execute_script("return location.hash").lstrip("#").split("#")[0]


def server_png(d: Daemon, url: str) -> np.ndarray:
    r = d.get(url)
    assert r.status == 200, r.body
    return decode_png(r.body)


def field(driver, name: str):
    return driver.find_element(By.ID, f"p-{name}")


def set_text(driver, name: str, value: str) -> None:
    el = field(driver, name)
    el.clear()
    el.send_keys(value, Keys.ENTER)


def click_cell(driver, row: int, col: int, shift_to: tuple[int, int] | None = None) -> None:
    """Click the map's cell (row, col); with ``shift_to``, shift-drag from it to that cell instead."""
    img = driver.find_element(By.ID, "map-image")
    scale = img.size["width"] / int(img.get_attribute("naturalWidth"))

    def offset(r: int, c: int) -> tuple[int, int]:  # Selenium offsets count from the element's centre
        return int((c + 0.5) * scale - img.size["width"] / 2), int((r + 0.5) * scale - img.size["height"] / 2)

    chain = ActionChains(driver).move_to_element_with_offset(img, *offset(row, col))
    if shift_to is None:
        chain.click().perform()
        return
    chain.key_down(Keys.SHIFT).click_and_hold().move_to_element_with_offset(img, *offset(*shift_to)) \
        .release().key_up(Keys.SHIFT).perform()


def pick_scan(driver, path: str) -> None:
    parts = path.split("/")
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        item = wait(lambda f=folder: driver.find_elements(By.CSS_SELECTOR, f'[data-folder="{f}"]'), 10, folder)[0]
        if item.get_attribute("aria-expanded") != "true":
            item.find_element(By.TAG_NAME, "button").click()
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, f'[data-scan="{path}"] > button'), 10, path)[0].click()


def read_frame(root: str, scan: str, n: int) -> np.ndarray:
    """Frame n straight from its data file: an independent reader."""
    folder, name = os.path.split(os.path.join(root, scan))
    with h5py.File(os.path.join(folder, f"{name}_data_{n // PER_FILE + 1:06d}.h5")) as f:
        return f["entry/data/data"][n % PER_FILE]


def test_pick_a_scan_and_watch_the_map_fill_in(gui, browser):
    open_gui(browser, gui)
    shot(browser, "01-start")
    assert "Pick a scan" in browser.find_element(By.ID, "welcome").text
    pick_scan(browser, SCAN)
    wait(lambda: int(browser.find_element(By.ID, "map-box").get_attribute("data-blocks") or 0) >= 3, 60,
         "blocks painted from the progress stream")
    shot(browser, "02-live-map-filling")
    assert browser.find_element(By.ID, "live-map").is_displayed()
    wait_map(browser)
    shot(browser, "03-map-done")
    blocks = int(browser.find_element(By.ID, "map-box").get_attribute("data-blocks"))
    assert blocks == LINES * POINTS // 16  # every block arrived through the stream and was painted
    url = shown_url(browser)
    assert url == f"/darkfield/{SCAN}.png"  # the server's first map route, all defaults
    meta = browser.find_element(By.ID, "meta").text
    assert f"{LINES} lines × {POINTS} points" in meta and "128 × 120 uint16" in meta and "complete" in meta
    # the map on the page is the server's png, pixel for pixel
    assert np.array_equal(image_pixels(browser, "map-image"), server_png(gui, url))
    # the colour bar's values are the png's: the X-Dada-View header of the same answer
    view = json.loads(gui.get(url).headers["x-dada-view"])
    assert view["legend"]["unit"] == "counts" and view["vert"] == [0, LINES, 1]
    assert browser.find_element(By.ID, "legend").is_displayed()
    # hovering a cell shows its scan point and value, as the npy answer has it
    values = np.load(io.BytesIO(gui.get(f"/darkfield/{SCAN}.npy").body))
    img = browser.find_element(By.ID, "map-image")
    scale = img.size["width"] / POINTS
    ActionChains(browser).move_to_element_with_offset(img, int(4.5 * scale - img.size["width"] / 2),
                                                      int(3.5 * scale - img.size["height"] / 2)).perform()
    wait(lambda: browser.find_element(By.ID, "hover-info").text.startswith("line 3, point 4: "), 10, "hover")
    text = browser.find_element(By.ID, "hover-info").text.removeprefix("line 3, point 4: ")
    assert text.endswith(" counts") and float(text.removesuffix(" counts")) == pytest.approx(values[3, 4], rel=1e-5)
    assert not console_errors(browser)


def test_parameters_url_round_trip_and_history(gui, browser):
    open_gui(browser, gui, f"/#/darkfield/{SCAN}.png")
    wait_map(browser)
    Select(field(browser, "cmap")).select_by_value("magma")
    wait(lambda: "cmap=magma" in shown_url(browser), 10, "the URL to follow the colormap")
    set_text(browser, "rmin", "14.5")
    wait(lambda: "rmin=14.5" in shown_url(browser), 10, "the URL to follow rmin")
    wait_map(browser)
    url = shown_url(browser)
    assert url == f"/darkfield/{SCAN}.png?cmap=magma&rmin=14.5" or url == f"/darkfield/{SCAN}.png?rmin=14.5&cmap=magma"
    # the copyable URL and the snippets say the same
    copy = browser.find_element(By.ID, "result-url").get_attribute("value")
    assert urllib.parse.urlsplit(copy).path == f"/darkfield/{SCAN}.npy" and "rmin=14.5" in copy
    assert copy in browser.find_element(By.ID, "snippet-curl").get_attribute("textContent")
    browser.refresh()
    wait(lambda: browser.execute_script("return document.body.dataset.ready"), 30)
    wait_map(browser)
    shot(browser, "04-restored-from-url")
    assert field(browser, "rmin").get_attribute("value") == "14.5"
    assert Select(field(browser, "cmap")).first_selected_option.get_attribute("value") == "magma"
    assert np.array_equal(image_pixels(browser, "map-image"), server_png(gui, url))
    browser.back()  # before rmin was set
    wait(lambda: "rmin" not in shown_url(browser), 10, "back to the URL without rmin")
    wait(lambda: field(browser, "rmin").get_attribute("value") == "", 10, "the form to follow back")
    wait_map(browser)
    assert np.array_equal(image_pixels(browser, "map-image"), server_png(gui, f"/darkfield/{SCAN}.png?cmap=magma"))
    browser.forward()
    wait(lambda: field(browser, "rmin").get_attribute("value") == "14.5", 10, "the form to follow forward")
    # the query form of the address restores a view too
    open_gui(browser, gui, "/?url=" + urllib.parse.quote(f"/dpc/{SCAN}.png?rdpc=6"))
    wait_map(browser)
    assert Select(browser.find_element(By.ID, "analysis")).first_selected_option.text == "dpc"
    assert field(browser, "rdpc").get_attribute("value") == "6"


def test_validation_messages_come_from_the_server(gui, browser):
    open_gui(browser, gui, f"/#/darkfield/{SCAN}.png")
    wait_map(browser)
    set_text(browser, "rmin", "abc")
    wait(lambda: browser.find_element(By.ID, "err-rmin").text, 10, "the field's error")
    body = gui.get(f"/darkfield/{SCAN}.png?rmin=abc").json()
    assert browser.find_element(By.ID, "err-rmin").text.startswith(body["message"])
    assert field(browser, "rmin").get_attribute("aria-invalid") == "true"
    set_text(browser, "rmax", "5")  # a cross-parameter error (rmin 10 >= rmax 5) found by the server
    set_text(browser, "rmin", "")
    wait(lambda: browser.find_element(By.ID, "err-rmin").text, 10, "the cross-parameter error")
    shot(browser, "05-validation")
    assert "not below rmax" in browser.find_element(By.ID, "err-rmin").text


def test_click_a_point_shows_its_frame_with_the_geometry(gui, gui_root, browser):
    open_gui(browser, gui, f"/#/azimuthal/{SCAN}.png?rmin=12&nsectors=8")
    wait_map(browser)
    click_cell(browser, 5, 9)
    frame = wait(lambda: browser.find_element(By.ID, "frame-image").get_attribute("data-url"), 30, "the frame")
    assert frame == f"/frame/{SCAN}.png?at=5,9&log=true"
    assert browser.execute_script("return location.hash").endswith("#at=5,9")
    npy = gui.get(frame.replace(".png", ".npy"))
    got = np.load(io.BytesIO(npy.body))
    assert np.array_equal(got, read_frame(gui_root, SCAN, 5 * POINTS + 9))  # the frame of that point
    # overlays: the beam centre from the metadata, the ring radii and the 8 sectors of the URL
    meta = gui.get(f"/meta/{SCAN}.json").json()["geometry"]
    rmin = browser.find_element(By.CSS_SELECTOR, '#overlay circle.shape[data-param="rmin"]')
    assert float(rmin.get_attribute("r")) == 12
    assert float(rmin.get_attribute("cx")) == pytest.approx(meta["beam_center_x"])
    assert float(rmin.get_attribute("cy")) == pytest.approx(meta["beam_center_y"])
    rmax = browser.find_element(By.CSS_SELECTOR, '#overlay circle.shape[data-param="rmax"]')
    cx, cy = meta["beam_center_x"], meta["beam_center_y"]
    assert float(rmax.get_attribute("r")) == pytest.approx(min(cx + 0.5, 119.5 - cx, cy + 0.5, 127.5 - cy))
    assert len(browser.find_elements(By.CSS_SELECTOR, '#overlay [data-kind="sectors"] line')) == 8
    browser.execute_script("document.getElementById('frame-view').scrollIntoView()")
    shot(browser, "06-frame-with-overlays")
    # keyboard: arrows move the cursor, Enter opens that point's frame
    box = browser.find_element(By.ID, "map-box")
    box.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_DOWN, Keys.ENTER)
    wait(lambda: browser.find_element(By.ID, "frame-image").get_attribute("data-url").endswith("at=6,10&log=true"), 30,
         "the frame chosen by keyboard")
    # the README's picture: a map filling in while a point's frame is shown
    open_gui(browser, gui, f"/#/darkfield/{SCAN}.png?rmin=9&cmap=inferno#at=12,20")
    wait(lambda: int(browser.find_element(By.ID, "map-box").get_attribute("data-blocks") or 0) >= 20, 60, "blocks")
    wait(lambda: browser.find_element(By.ID, "frame-image").get_attribute("data-url"), 30, "the frame")
    readme_shot(browser, "live-map-and-frame")


def frame_with_handle(driver, d: Daemon, tail: str, param: str):
    """The GUI at ``tail``, its map drawn and the ring handle of ``param`` on the frame, scrolled into view: the
    frame's image element."""
    open_gui(driver, d, tail)
    wait_map(driver)
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, f'#overlay circle.handle[data-param="{param}"]'), 30, "overlays")
    img = driver.find_element(By.ID, "frame-image")
    driver.execute_script("arguments[0].scrollIntoView()", img)
    return img


def test_dragging_a_ring_sets_its_radius(gui, browser):
    img = frame_with_handle(browser, gui, f"/#/darkfield/{SCAN}.png?rmin=10#at=3,4", "rmin")
    px = img.size["width"] / int(img.get_attribute("naturalWidth"))  # screen px per frame pixel
    svg_circle = browser.find_element(By.CSS_SELECTOR, '#overlay circle.handle[data-param="rmin"]')
    cx, cy = float(svg_circle.get_attribute("cx")), float(svg_circle.get_attribute("cy"))
    # from the ring's rightmost point, 8 frame pixels further out
    start = (int((cx + 0.5 + 10) * px - img.size["width"] / 2), int((cy + 0.5) * px - img.size["height"] / 2))
    ActionChains(browser).move_to_element_with_offset(img, *start).click_and_hold() \
        .move_by_offset(int(4 * px), 0).move_by_offset(int(4 * px), 0).release().perform()
    wait(lambda: "rmin=" in shown_url(browser) and "rmin=10" not in shown_url(browser), 10, "the dragged radius")
    rmin = float(urllib.parse.parse_qs(shown_url(browser).split("?")[1])["rmin"][0])
    assert rmin == pytest.approx(18, abs=1.0)
    assert field(browser, "rmin").get_attribute("value") == f"{rmin:.1f}"
    wait_map(browser)  # the map follows the new radius
    assert np.array_equal(image_pixels(browser, "map-image"), server_png(gui, shown_url(browser)))
    shot(browser, "07-ring-dragged")


def test_region_composite_from_a_dragged_selection(gui, browser):
    open_gui(browser, gui, f"/#/darkfield/{SCAN}.png")
    wait_map(browser)
    click_cell(browser, 2, 3, shift_to=(5, 7))
    url = wait(lambda: browser.find_element(By.ID, "region-image").get_attribute("data-url"), 60, "the region")
    assert url.startswith(f"/composite/{SCAN}.png?") and "vert=2:6" in url and "horz=3:8" in url
    wait(lambda: browser.find_element(By.ID, "region-image").is_displayed(), 30)
    assert np.array_equal(image_pixels(browser, "region-image"), server_png(gui, url))
    browser.find_element(By.ID, "zoom-in").click()
    assert browser.find_element(By.ID, "zoom-text").text.endswith("%")
    browser.execute_script("document.getElementById('region-view').scrollIntoView()")
    shot(browser, "08-composite")


def test_cancel_stops_the_request_on_the_server(gui, browser):
    open_gui(browser, gui, f"/#/radial/{SCAN}.png?nbins=17")
    wait(lambda: int(browser.find_element(By.ID, "map-box").get_attribute("data-blocks") or 0) >= 1, 60, "a block")
    rid = browser.find_element(By.ID, "map-box").get_attribute("data-rid")
    browser.find_element(By.ID, "cancel").click()
    assert map_state(browser) == "cancelled"
    stream = gui.get(f"/progress/{rid}", timeout=30).body.decode()
    end = json.loads(stream.split("event: end\ndata: ")[1].split("\n")[0])
    assert end["status"] == 409 and end["done"] < end["total"], end


def test_tomography_slice_row_slider_and_centre(gui, browser):
    open_gui(browser, gui)
    pick_scan(browser, "tomo/nxtomo_0001")
    image = browser.find_element(By.ID, "tomo-image")
    wait(lambda: (image.get_attribute("data-url") or "").startswith("/tomo/slice/tomo/nxtomo_0001/"), 60, "the slice")
    browser.execute_script("const r = document.getElementById('tomo-row'); r.value = 5;"
                           "r.dispatchEvent(new Event('change'))")
    wait(lambda: image.get_attribute("data-url") == "/tomo/slice/tomo/nxtomo_0001/5.png", 60, "row 5")
    browser.find_element(By.ID, "tomo-estimate").click()
    expected = gui.get("/tomo/center/tomo/nxtomo_0001.json?row=5").json()["center"]
    wait(lambda: field(browser, "center").get_attribute("value") == str(expected), 60, "the estimated centre")
    wait(lambda: f"center={expected}" in (image.get_attribute("data-url") or ""), 60, "the slice about it")
    wait(lambda: browser.find_element(By.ID, "tomo-status").text == "row 5", 60)
    assert np.array_equal(image_pixels(browser, "tomo-image"), server_png(gui, image.get_attribute("data-url")))
    readme_shot(browser, "tomography")


def test_follow_a_scan_while_it_is_written(gui, gui_root, browser):
    src, live = os.path.join(gui_root, "staging"), os.path.join(gui_root, "growing")
    os.makedirs(live)
    data = sorted(f for f in os.listdir(src) if "_data_" in f)  # 6 files of 32 frames
    shutil.copy2(os.path.join(src, "scan_0002_master.h5"), live)
    shutil.copy2(os.path.join(src, data[0]), live)
    open_gui(browser, gui)
    pick_scan(browser, "growing/scan_0002")
    wait(lambda: "recording" in browser.find_element(By.ID, "tree").text, 30, "the recording badge")

    def opaque() -> int:
        if map_state(browser) not in ("following", "done"):
            return 0
        return int((image_pixels(browser, "map-image")[..., 3] > 0).sum())

    seen = wait(opaque, 60, "the first map")
    assert seen == 32
    for name in data[1:]:
        shutil.copy2(os.path.join(src, name), live)
        seen = wait(lambda s=seen: opaque() > s and opaque(), 60, f"the map to grow after {name}")
    shot(browser, "10-followed-scan")
    wait(lambda: map_state(browser) == "done", 60, "following to end when the scan is complete")
    assert opaque() == 12 * 16
    assert "recording" not in browser.find_element(By.ID, "tree").text
    assert np.array_equal(image_pixels(browser, "map-image"), server_png(gui, shown_url(browser)))
    shutil.rmtree(live)  # the later pictures show the data root as it was




def test_a_channel_added_on_the_server_appears_in_the_form(gui, gui_root, browser):
    """A plug-in channel (entry point ``dada.channels``) on the server: the GUI lists it and its parameter."""
    d = gui
    open_gui(browser, d)
    pick_scan(browser, SCAN)
    wait_map(browser)
    Select(browser.find_element(By.ID, "analysis")).select_by_value("halo")
    wait(lambda: browser.find_elements(By.ID, "p-halo_width"), 10, "the plug-in's parameter")
    assert field(browser, "halo_width").get_attribute("placeholder") == "5"
    set_text(browser, "halo_width", "3")
    wait(lambda: shown_url(browser) == f"/halo/{SCAN}.png?halo_width=3", 10)
    wait_map(browser)
    shot(browser, "11-plugin-channel")
    assert np.array_equal(image_pixels(browser, "map-image"), server_png(d, shown_url(browser)))
    # its numbers, against numpy over the frames read with h5py
    got = np.load(io.BytesIO(d.get(f"/halo/{SCAN}.npy?halo_width=3&vert=0:2").body))
    meta = d.get(f"/meta/{SCAN}.json").json()
    cx, cy = meta["geometry"]["beam_center_x"], meta["geometry"]["beam_center_y"]
    yy, xx = np.mgrid[:128, :120]
    r = np.hypot(xx - cx, yy - cy)
    with h5py.File(os.path.join(gui_root, "beam/scan_0001_master.h5")) as f:
        good = f["entry/instrument/detector/detectorSpecific/pixel_mask"][()] == 0
        cutoff = f["entry/instrument/detector/detectorSpecific/countrate_correction_count_cutoff"][()]
    ring = (r >= 10) & (r < 13) & good
    frames = [read_frame(gui_root, SCAN, n).astype(np.int64) for n in range(2 * POINTS)]
    want = np.array([fr[ring & (fr < cutoff)].sum() for fr in frames]).reshape(2, POINTS)
    np.testing.assert_allclose(got, want)


# -- every array route of /api, as a scientist meets it: on the demo's tiny scan, at two window sizes --------

DEMO = "eiger/u16/scan_0001"  # make_demo(root, "tiny"): 6 lines × 8 points of 64 × 72 pixels
SIZES = [(1440, 900), (1024, 768)]
PANELS = ".panel, .params, .result, .pmap-row, .figure, #workspace"
README_SHOTS = os.environ.get("DADA_README_SHOTS")  # set: the README's pictures are taken again into gui/screenshots/


def readme_shot(driver, name: str) -> None:
    """A picture for the README: kept with the artefacts, and into gui/screenshots/ when asked for."""
    path = shot(driver, f"readme-{name}")
    if README_SHOTS:
        shutil.copy(path, os.path.join(os.path.dirname(__file__), "..", "gui", "screenshots", f"{name}.png"))


def readme_view(driver, name: str) -> None:
    """The whole page of a view in a tall window, for the README."""
    driver.set_window_size(1440, 1700)
    driver.execute_script("window.scrollTo(0, 0); document.getElementById('workspace').scrollTo(0, 0)")
    wait(lambda: driver.execute_script("return document.body.scrollHeight <= window.innerHeight + 1"), 5)
    readme_shot(driver, name)
    driver.set_window_size(*SIZES[0])


def route_prefix(ep: dict) -> str:
    return ep["path"][: ep["path"].index("/{")]


def npy(d: Daemon, url: str) -> np.ndarray | None:
    """An npy answer, or None for a 400 (an output of a channel not asked for)."""
    r = d.get(url)
    if r.status == 400:
        return None
    assert r.status == 200, (url, r.body)
    return np.load(io.BytesIO(r.body))


def wait_results(driver, timeout: float = 90) -> None:
    grid = driver.find_element(By.ID, "results-grid")
    wait(lambda: grid.get_attribute("data-state") in ("done", "error"), timeout, "the outputs to be drawn")
    assert grid.get_attribute("data-state") == "done", driver.find_element(By.ID, "results-status").text


def expected_maps(d: Daemon, ep: dict, query: str = "") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What each map of the outputs panel must show, from the npy answers read here with numpy: a map per
    2-D output; x, y, magnitude and direction of a 2-vector; the mean over all bins of a curve per point.
    Also the curves per point, by output name."""
    maps: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    names = ep["parameters"]["output"]["enum"]
    got = {n: npy(d, f"{route_prefix(ep)}/{DEMO}.npy?output={n}{query}") for n in names}
    got = {n: a for n, a in got.items() if a is not None}
    grid = next(a.shape[-2:] for a in got.values() if a.ndim >= 2)
    for name, a in got.items():
        group = name[: name.rfind(".") + 1]
        has_axis = any(n == f"{group}axis" and b.shape == (a.shape[0],) for n, b in got.items())
        if a.shape == grid:
            maps[name] = a
        elif a.ndim == 3 and a.shape[0] == 2 and not has_axis:
            maps.update({f"{name} x": a[0], f"{name} y": a[1], f"{name} magnitude": np.hypot(a[0], a[1]),
                         f"{name} direction": np.degrees(np.arctan2(a[1], a[0]))})
        elif a.ndim == 3:
            finite = np.isfinite(a)
            count = finite.sum(axis=0)
            total = np.where(finite, a, 0).sum(axis=0)
            maps[f"{name}: mean over the bins"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            curves[name] = a
    return maps, curves


def lut(api: dict, name: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(api["colormaps"][name]), dtype=np.uint8).reshape(256, 3)


def colours(values: np.ndarray, table: np.ndarray, phigh: float = 99.9) -> tuple[np.ndarray, float, float]:
    """Colours as the server's png renderer gives them (limits from the 0th and phigh-th percentiles)."""
    good = values[np.isfinite(values)]
    lo, hi = np.percentile(good, 0), np.percentile(good, phigh)
    t = np.clip((values - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(values)
    k = np.minimum(255, np.floor(np.where(np.isfinite(t), t, 0) * 256)).astype(int)
    return table[k], float(lo), float(hi)


def hue_colours(angle: np.ndarray, magnitude: np.ndarray, phigh: float = 99.9) -> np.ndarray:
    """Direction as hue, magnitude as brightness (full at the phigh-th percentile), with colorsys."""
    top = np.percentile(magnitude[np.isfinite(magnitude)], phigh)
    out = np.zeros((*angle.shape, 3))
    for i in np.ndindex(angle.shape):
        out[i] = colorsys.hsv_to_rgb((angle[i] % 360) / 360, 1, min(1.0, max(0.0, magnitude[i] / top)))
    return out * 255


def figures(driver) -> dict[str, object]:
    return {f.get_attribute("data-output"): f for f in driver.find_elements(By.CSS_SELECTOR, "#results-grid .pmap")}


def check_layout(driver, where: str) -> None:
    """Nothing wider than its panel; every map at least 4 screen px per point, or as wide as its panel."""
    assert not overflowing(driver, PANELS), (where, overflowing(driver, PANELS))
    for view in driver.find_elements(By.CSS_SELECTOR, ".pmap-view, #map-box"):
        if not view.is_displayed() or not view.get_attribute("data-scale"):
            continue
        shown = next(e for e in view.find_elements(By.CSS_SELECTOR, "canvas, img") if e.is_displayed())
        points = int(shown.get_attribute("naturalWidth") or shown.get_attribute("width"))
        per_point = shown.rect["width"] / points
        room = driver.execute_script("return arguments[0].parentElement.clientWidth", view)  # less the colour bar
        assert per_point >= 4 or shown.rect["width"] >= room - 120, (where, per_point, room)


def hover_cell(driver, element, row: int, col: int, shape: tuple[int, int]) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    w, h = element.rect["width"], element.rect["height"]
    corner = (int(-w / 2) + 1, int(-h / 2) + 1)  # first elsewhere: a pointer already there would not move
    ActionChains(driver).move_to_element_with_offset(element, *corner).move_to_element_with_offset(
        element, int((col + 0.5) * w / shape[1] - w / 2), int((row + 0.5) * h / shape[0] - h / 2)).perform()


def hover_values(driver) -> dict[str, float]:
    text = driver.find_element(By.ID, "results-hover").text
    _, _, rest = text.partition(": ")
    out = {}
    for part in rest.split("; "):
        name, _, value = part.rpartition(" ")
        out[name] = float("nan") if value == "—" else float(value)
    return out


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_map_route_reads_well(gui, browser, size):
    """Each route of /api with maps (the plug-in channel included), at two window sizes: nothing overflows, the
    maps are big enough, every select shows the value in effect, every output is drawn, and every map's
    pixels are the npy answers' values through the colormap; per-point curves show the clicked point's."""
    api = gui.get("/api").json()
    table = lut(api, "viridis")
    routes = [e for e in api["endpoints"] if e["maps"]]
    assert {"darkfield", "dpc", "azimuthal", "radial", "stxm", "halo"} <= {e["name"] for e in routes}
    browser.set_window_size(*size)
    try:
        for ep in routes:
            where = f"{ep['name']} at {size}"
            open_gui(browser, gui, f"/#{route_prefix(ep)}/{DEMO}.png")
            wait_map(browser)
            wait_results(browser)
            check_layout(browser, where)
            for sel in browser.find_elements(By.CSS_SELECTOR, "#analysis-fields select"):
                schema = ep["parameters"][sel.get_attribute("name")]
                assert Select(sel).first_selected_option.get_attribute("value") == str(schema["default"]), where
            maps, curves = expected_maps(gui, ep)
            shown = figures(browser)
            assert set(shown) == set(maps), where
            for name, want in maps.items():
                fig = shown[name]
                assert fig.is_displayed(), (where, name)
                rgba = canvas_rgba(fig.find_element(By.TAG_NAME, "canvas"))
                assert rgba.shape[:2] == want.shape, (where, name)
                finite = np.isfinite(want)
                assert (rgba[..., 3][finite] == 255).all() and (rgba[..., 3][~finite] == 0).all(), (where, name)
                if name.endswith(" direction"):
                    base = name.removesuffix(" direction")
                    expect = hue_colours(want, maps[f"{base} magnitude"])
                    assert np.abs(rgba[..., :3][finite].astype(float) - expect[finite]).max() <= 1, (where, name)
                    continue
                expect, lo, hi = colours(want, table)
                assert float(fig.get_attribute("data-vmin")) == pytest.approx(lo, rel=1e-9, abs=1e-12), (where, name)
                assert float(fig.get_attribute("data-vmax")) == pytest.approx(hi, rel=1e-9, abs=1e-12), (where, name)
                assert np.array_equal(rgba[..., :3][finite], expect[finite]), (where, name)
            # hovering a map lists every map's value at that point, as the npy answers have them
            first = next(iter(shown.values())).find_element(By.CSS_SELECTOR, ".pmap-view")
            hover_cell(browser, first, 4, 5, (6, 8))
            wait(lambda: browser.find_element(By.ID, "results-hover").text.startswith("line 4, point 5: "), 10,
                 f"{where}: {browser.find_element(By.ID, 'results-hover').text}")
            for name, value in hover_values(browser).items():
                assert value == pytest.approx(maps[name][4, 5], rel=1e-5, nan_ok=True), (where, name)
            if ep["parameters"].get("channels"):  # several channels in one pass: every one is on the page
                for channel in ep["parameters"]["channels"]["x-choices"]:
                    assert any(n.startswith(f"{channel}.") and f.is_displayed() for n, f in shown.items()), where
            for name, per_point in curves.items():  # the clicked point's curve, beside the map of a bin range
                card = shown[f"{name}: mean over the bins"]
                hover_cell(browser, card.find_element(By.CSS_SELECTOR, ".pmap-view"), 2, 6, (6, 8))
                ActionChains(browser).click().perform()
                wait(lambda: browser.execute_script("return location.hash").endswith("#at=2,6"), 10, where)
                section = card.find_element(By.XPATH, "ancestor::section[1]")
                plot = section.find_element(By.CSS_SELECTOR, "svg.plot")
                wait(lambda p=plot: p.get_attribute("data-cell") == "2,6", 10, f"{where}: the curve of the point")
                assert plot.is_displayed()
                got = json.loads(plot.find_element(By.CSS_SELECTOR, "path.curve").get_attribute("data-values"))
                np.testing.assert_allclose(np.array(got, dtype=float), per_point[:, 2, 6], rtol=1e-12, equal_nan=True)
                wait(lambda: browser.find_element(By.ID, "frame-image").get_attribute("data-url")
                     == f"/frame/{DEMO}.png?at=2,6&log=true", 30, f"{where}: the frame follows")
            check_layout(browser, where)
            shot(browser, f"12-{ep['name']}-{size[0]}")
            if size == SIZES[0] and ep["name"] in ("radial", "stxm", "dpc"):
                readme_view(browser, ep["name"])
    finally:
        browser.set_window_size(1440, 1000)


def test_stxm_maps_are_linked_and_zoom_keeps_values_right(gui, browser):
    """/stxm: hover or click on one map marks the point on all and the frame follows; wheel zoom and drag pan
    keep the hover values and the colour bar right."""
    ep = next(e for e in gui.get("/api").json()["endpoints"] if e["name"] == "stxm")
    maps, _ = expected_maps(gui, ep)
    open_gui(browser, gui, f"/#/stxm/{DEMO}.png")
    wait_map(browser)
    wait_results(browser)
    dark = figures(browser)["darkfield.darkfield"]
    view = dark.find_element(By.CSS_SELECTOR, ".pmap-view")
    canvas = view.find_element(By.TAG_NAME, "canvas")
    limits = dark.get_attribute("data-vmin"), dark.get_attribute("data-vmax")
    hover_cell(browser, view, 3, 5, (6, 8))
    wait(lambda: browser.find_element(By.ID, "results-hover").text.startswith("line 3, point 5: "), 10, "hover")
    # hovering one map marks the point on every map, the live map too
    marks = browser.find_elements(By.CSS_SELECTOR, ".pmap-hover")
    assert len(marks) == len(maps) and all(m.is_displayed() for m in marks)
    assert browser.find_element(By.ID, "map-hover").is_displayed()
    w, h = view.rect["width"], view.rect["height"]
    at = (int(5.5 * w / 8 - w / 2), int(3.5 * h / 6 - h / 2))
    for _ in range(3):
        ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(view, *at), 0, -200).perform()
    wait(lambda: float(view.get_attribute("data-zoom") or 1) > 1.9, 10, "the wheel to zoom in")
    zoom = float(view.get_attribute("data-zoom"))
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "const v = arguments[1].getBoundingClientRect();"
                                 "return [r.left - v.left, r.top - v.top, r.width, r.height]", canvas, view)
    assert box[2] == pytest.approx(zoom * w, abs=1)  # each point `zoom` times bigger on screen
    # the cell right of it, found on screen from the zoomed canvas: hover names it and its value
    x, y = box[0] + 6.5 * box[2] / 8 - w / 2, box[1] + 3.5 * box[3] / 6 - h / 2
    ActionChains(browser).move_to_element_with_offset(view, int(x), int(y)).perform()
    wait(lambda: browser.find_element(By.ID, "results-hover").text.startswith("line 3, point 6: "), 10, "zoomed hover")
    values = hover_values(browser)
    assert values["darkfield.darkfield"] == pytest.approx(maps["darkfield.darkfield"][3, 6], rel=1e-5)
    assert (dark.get_attribute("data-vmin"), dark.get_attribute("data-vmax")) == limits  # the colour bar stays
    # a click there: every map marks that point, the address and the frame follow
    ActionChains(browser).click().perform()
    wait(lambda: browser.execute_script("return location.hash").endswith("#at=3,6"), 10, "the click")
    frame = f"/frame/{DEMO}.png?at=3,6&log=true"
    wait(lambda: browser.find_element(By.ID, "frame-image").get_attribute("data-url") == frame, 30, "the frame")
    for mark in [*browser.find_elements(By.CSS_SELECTOR, ".pmap-cursor"), browser.find_element(By.ID, "map-cursor")]:
        style = browser.execute_script("return [arguments[0].style.left, arguments[0].style.top, "
                                       "getComputedStyle(arguments[0]).display]", mark)
        assert float(style[0].removesuffix("%")) == pytest.approx(6 * 100 / 8)
        assert float(style[1].removesuffix("%")) == pytest.approx(3 * 100 / 6) and style[2] != "none"
    # a drag pans (and is no click)
    before = view.find_element(By.CLASS_NAME, "pmap-content").get_attribute("style")
    ActionChains(browser).move_to_element(view).click_and_hold().move_by_offset(-30, -20).move_by_offset(-30, -20) \
        .release().perform()
    assert view.find_element(By.CLASS_NAME, "pmap-content").get_attribute("style") != before
    assert browser.execute_script("return location.hash").endswith("#at=3,6")
    # the keyboard: arrows move over a map (every map marks the point), Enter chooses it
    transmission = figures(browser)["darkfield.transmission"].find_element(By.CSS_SELECTOR, ".pmap-view")
    transmission.send_keys(Keys.ARROW_DOWN, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    wait(lambda: browser.find_element(By.ID, "results-hover").text.startswith("line 1, point 2: "), 10, "arrow keys")
    transmission.send_keys(Keys.ENTER)
    wait(lambda: browser.execute_script("return location.hash").endswith("#at=1,2"), 10, "Enter")
    # the live map zooms the same way, and its hover values stay right
    live = browser.find_element(By.ID, "map-box")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", live)
    lw, lh = live.rect["width"], live.rect["height"]
    for _ in range(4):
        ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(live, 0, 0), 0, -200).perform()
    wait(lambda: float(live.get_attribute("data-zoom") or 1) > 2.4, 10, "the live map to zoom in")
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "const v = arguments[1].getBoundingClientRect();"
                                 "return [r.left - v.left, r.top - v.top, r.width, r.height]",
                                 browser.find_element(By.ID, "map-content"), live)
    x, y = box[0] + 3.5 * box[2] / 8 - lw / 2, box[1] + 2.5 * box[3] / 6 - lh / 2
    ActionChains(browser).move_to_element_with_offset(live, int(x), int(y)).perform()
    wait(lambda: browser.find_element(By.ID, "hover-info").text.startswith("line 2, point 3: "), 10, "live hover")
    text = browser.find_element(By.ID, "hover-info").text.removeprefix("line 2, point 3: ").removesuffix(" counts")
    assert float(text) == pytest.approx(maps["darkfield.darkfield"][2, 3], rel=1e-5)
    # the direction view's wheel legend is drawn
    wheel = figures(browser)["dpc.dpc direction"].find_element(By.CLASS_NAME, "pmap-legend")
    assert (canvas_rgba(wheel)[..., 3] > 0).sum() > 1000
    shot(browser, "13-stxm-linked-zoomed")


def test_png_only_settings_leave_the_view_alone(gui, browser):
    """colorbar, width and scale shape the standalone png only: the GUI's map stays a map of the points, the
    result URL keeps them; the output select shows what the outputs panel shows."""
    url = f"/azimuthal/{DEMO}.png?colorbar=true&width=900&scale=7"
    open_gui(browser, gui, "/#" + url)
    wait_map(browser)
    wait_results(browser)
    img = browser.find_element(By.ID, "map-image")
    assert (int(img.get_attribute("naturalWidth")), int(img.get_attribute("naturalHeight"))) == (8, 6)
    assert np.array_equal(image_pixels(browser, "map-image"), server_png(gui, f"/azimuthal/{DEMO}.png"))
    assert browser.find_element(By.ID, "legend").is_displayed()
    check_layout(browser, "azimuthal with png settings")
    copy = browser.find_element(By.ID, "result-url").get_attribute("value")
    assert "colorbar=true" in copy and "width=900" in copy and "scale=7" in copy
    assert Select(field(browser, "output")).first_selected_option.get_attribute("value") == "sectors"
    assert {"sectors: mean over the bins", "orientation", "anisotropy"} == set(figures(browser))


H5WEB = "https://h5web.example.org/?file={file}"
WITH_H5WEB = """
const fetched = window.fetch;
window.fetch = async (url, options) => {
  const resp = await fetched(url, options);
  if (String(url) !== "/api") return resp;
  const doc = await resp.json();
  doc.h5web = TEMPLATE;
  return new Response(JSON.stringify(doc), { status: resp.status, headers: resp.headers });
};
""".replace("TEMPLATE", json.dumps(H5WEB))


def h5web_link(driver) -> str | None:
    """The "Open in h5web" link's address, or None when the page shows no such link."""
    link = driver.find_element(By.ID, "h5web-link")
    return link.get_attribute("href") if link.is_displayed() and link.text == "Open in h5web" else None


def test_open_in_h5web_only_when_the_server_names_it(gui, gui_root, browser, tmp_path):
    """No link when /api has no h5web template; with one, the link opens the current scan, its path encoded."""
    assert "h5web" not in gui.get("/api").json()
    open_gui(browser, gui, f"/#/darkfield/{DEMO}.png")
    assert h5web_link(browser) is None
    want = H5WEB.replace("{file}", urllib.parse.quote(DEMO, safe=""))
    if "h5web_url" in {f.name for f in dataclasses.fields(Config)}:  # a server configured with it
        config = tmp_path / "dada.toml"
        config.write_text(f"h5web_url = {json.dumps(H5WEB)}\n")
        d = Daemon(["serve", gui_root, "--config", str(config), "--cache-dir", "none"])
        try:
            assert d.get("/api").json()["h5web"] == H5WEB
            open_gui(browser, d, f"/#/darkfield/{DEMO}.png")
            assert h5web_link(browser) == want
        finally:
            d.stop()
        return
    # a server without the setting: the key as one configured with it adds it, put into /api's answer in the page
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WITH_H5WEB})
    try:
        open_gui(browser, gui, f"/#/darkfield/{DEMO}.png")
        assert h5web_link(browser) == want
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def region_url(driver, prefix: str) -> str | None:
    """The URL of the region view's image once it shows an answer of the route at `prefix`."""
    image = driver.find_element(By.ID, "region-image")
    url = image.get_attribute("data-url") or ""
    return url if url.startswith(prefix + "/") and image.is_displayed() else None


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_frame_region_and_tomography_views_fit(gui, browser, size):
    """The routes whose arrays are not maps (a frame, a region's sum or mosaic, a tomography row) fit their
    panels at both window sizes and show the server's png for their URL, pixel for pixel."""
    api = gui.get("/api").json()
    browser.set_window_size(*size)
    try:
        open_gui(browser, gui, f"/#/darkfield/{DEMO}.png#at=2,3")
        wait_map(browser)
        url = wait(lambda: browser.find_element(By.ID, "frame-image").get_attribute("data-url"), 30, "the frame")
        assert url == f"/frame/{DEMO}.png?at=2,3&log=true"
        assert np.array_equal(image_pixels(browser, "frame-image"), server_png(gui, url))
        check_layout(browser, f"frame at {size}")
        region = [e for e in api["endpoints"] if e["target"] == "scan" and not e["maps"] and not e["item"]
                  and "png" in e["formats"]]
        assert {"sum", "composite"} <= {e["name"] for e in region}
        for ep in region:
            Select(browser.find_element(By.ID, "region-endpoint")).select_by_value(ep["name"])
            browser.find_element(By.ID, "region-show").click()
            prefix = route_prefix(ep)
            url = wait(lambda p=prefix: region_url(browser, p), 60, ep["name"])
            assert np.array_equal(image_pixels(browser, "region-image"), server_png(gui, url))
            check_layout(browser, f"{ep['name']} at {size}")
        for ep in [e for e in api["endpoints"] if e["target"] == "tomo" and e["item"] and "png" in e["formats"]]:
            open_gui(browser, gui, f"/#{route_prefix(ep)}/tomo/nxtomo_0001/4.png")
            image = browser.find_element(By.ID, "tomo-image")
            wait(lambda: browser.find_element(By.ID, "tomo-status").text == "row 4", 60, ep["name"])
            assert np.array_equal(image_pixels(browser, "tomo-image"), server_png(gui, image.get_attribute("data-url")))
            check_layout(browser, f"{ep['name']} at {size}")
    finally:
        browser.set_window_size(1440, 1000)


def test_curves_per_point_have_their_axis_in_the_unit_asked_for(gui, browser):
    """radial with unit=q: the chosen point's curve is drawn over the q axis of the answer, and labelled so."""
    open_gui(browser, gui, f"/#/radial/{DEMO}.png?unit=q&nbins=40#at=4,1")
    wait_map(browser)
    wait_results(browser)
    axis = npy(gui, f"/radial/{DEMO}.npy?unit=q&nbins=40&output=axis")
    profiles = npy(gui, f"/radial/{DEMO}.npy?unit=q&nbins=40")
    px = npy(gui, f"/radial/{DEMO}.npy?nbins=40&output=axis")
    assert not np.allclose(axis, px)  # q is not r in pixels
    plot = browser.find_element(By.CSS_SELECTOR, "#results-grid svg.plot")
    wait(lambda: plot.get_attribute("data-cell") == "4,1", 10, "the curve of the point in the address")
    curve = plot.find_element(By.CSS_SELECTOR, "path.curve")
    assert curve.get_attribute("data-xlabel") == "axis [q]"
    np.testing.assert_allclose(json.loads(curve.get_attribute("data-x")), axis, rtol=1e-12)
    np.testing.assert_allclose(np.array(json.loads(curve.get_attribute("data-values")), dtype=float), profiles[:, 4, 1],
                               rtol=1e-12, equal_nan=True)
    # a narrower bin range: the map shows the mean over those bins only
    card = figures(browser)["radial: mean over the bins"]
    first, last = browser.find_elements(By.CSS_SELECTOR, "#results-grid .bins input")
    first.clear()
    first.send_keys("10", Keys.TAB)
    last.clear()
    last.send_keys("19", Keys.TAB)
    wait(lambda: card.get_attribute("data-bins") == "10,19", 10, "the bin range")
    table = lut(gui.get("/api").json(), "viridis")
    expect, _, _ = colours(np.nanmean(profiles[10:20], axis=0), table)
    assert np.array_equal(canvas_rgba(card.find_element(By.TAG_NAME, "canvas"))[..., :3], expect)
    check_layout(browser, "radial in q")

"""The web GUI end to end: a real headless Chromium against a real ``dada serve`` on demo data.

Every number the page shows is checked against an independent source: the server's own png for the
same URL, frames read straight from the HDF5 files with h5py, and a numpy sum for a plug-in channel.
Screenshots of each step are kept under tests/artifacts/gui/.
"""

from __future__ import annotations

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
from browser import chromium, console_errors, decode_png, image_pixels, shot, wait
from helpers import Daemon
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from dada.demo.sample import Detector
from dada.demo.writer import ScanSpec, write_eiger

LINES, POINTS, PER_FILE = 24, 32, 96  # 768 frames in 8 data files
SCAN = "beam/scan_0001"


@pytest.fixture(scope="module")
def gui_root(tmp_path_factory, demo_root) -> str:
    root = tmp_path_factory.mktemp("gui")
    spec = ScanSpec(LINES, POINTS, Detector(128, 120, "uint16"), PER_FILE, seed=7)
    write_eiger(str(root / "beam"), "scan_0001", spec, progress=lambda _m: None)
    write_eiger(str(root / "staging"), "scan_0002", ScanSpec(12, 16, Detector(64, 72, "uint16"), 32, seed=8),
                progress=lambda _m: None)
    shutil.copytree(os.path.join(demo_root, "tomo"), root / "tomo")
    return str(root)


@pytest.fixture(scope="module")
def gui(gui_root):
    """Small blocks, each patch slowed a little, so maps visibly fill in block by block."""
    d = Daemon(["serve", gui_root, "--cache-dir", "none", "--block-frames", "16"],
               env={"DADA_TEST_PATCH_DELAY": "0.3"})
    yield d
    d.stop()


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def open_gui(driver, d: Daemon, tail: str = "/") -> None:
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
    shot(browser, "00-live-map-and-frame")


def test_dragging_a_ring_sets_its_radius(gui, browser):
    open_gui(browser, gui, f"/#/darkfield/{SCAN}.png?rmin=10#at=3,4")
    wait_map(browser)
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, '#overlay circle.handle[data-param="rmin"]'), 30, "overlays")
    img = browser.find_element(By.ID, "frame-image")
    browser.execute_script("arguments[0].scrollIntoView()", img)
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
    shot(browser, "09-tomography")


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


PLUGIN = '''
import numpy as np
from dada.params import Param
from dada.stxm.channel import SUM, Bins, Channel


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
        return {"halo": m.values[:, 0, SUM]}
'''


def test_a_channel_added_on_the_server_appears_in_the_form(gui_root, browser, tmp_path):
    """A plug-in channel (entry point ``dada.channels``) on the server: the GUI lists it and its parameter."""
    (tmp_path / "halo_channel.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "dada_halo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dada-halo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[dada.channels]\nhalo = halo_channel:Halo\n")
    path = os.pathsep.join([str(tmp_path), *[p for p in sys.path if p]])
    d = Daemon(["serve", gui_root, "--cache-dir", "none"], env={"PYTHONPATH": path})
    try:
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
    finally:
        d.stop()

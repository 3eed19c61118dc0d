"""The GUI while a ring is dragged, in a real headless Chromium: on a 128×128 scan whose polar reduction is kept,
the map follows the pointer (at least 5 repaints a second, each answered from the reduction), and the map of
the released ring equals the server's png of its URL."""

from __future__ import annotations

import time

import pytest
from browser import image_pixels, wait
from helpers import Daemon
from selenium.webdriver.common.by import By
from test_gui import frame_with_handle, server_png, shown_url, wait_map

from dada.demo.sample import Detector
from dada.demo.writer import ScanSpec, write_eiger

SCAN = "big/scan_0001"
STEPS, PAUSE = 24, 0.1  # pointer moves of the drag, seconds between them


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """A 128×128 scan of small frames, its reduction kept by one whole-scan /stxm request."""
    root = tmp_path_factory.mktemp("gui-reduce")
    write_eiger(str(root / "big"), "scan_0001", ScanSpec(128, 128, Detector(40, 44, "uint16"), 4096, seed=5),
                progress=lambda _m: None)
    (root / "kept.toml").write_text("reduction_cells = 25000\n")  # off by default
    d = Daemon(["serve", str(root), "--cache-dir", str(root / "cache"), "--config", str(root / "kept.toml")])
    try:
        r = d.get(f"/stxm/{SCAN}.h5", timeout=600)
        assert r.status == 200, r.body[:300]
        yield d
    finally:
        d.stop()


def previews(driver) -> int:
    return int(driver.find_element(By.ID, "map-box").get_attribute("data-previews") or 0)


def test_dragging_the_ring_repaints_the_map_from_the_reduction(reduced, browser):
    img = frame_with_handle(browser, reduced, f"/#/darkfield/{SCAN}.png?rmin=3&rmax=8#at=3,4", "rmax")
    left, top, width = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width];", img)
    px = width / int(img.get_attribute("naturalWidth"))  # screen px per frame pixel
    ring = browser.find_element(By.CSS_SELECTOR, '#overlay circle.handle[data-param="rmax"]')
    cx, cy = float(ring.get_attribute("cx")), float(ring.get_attribute("cy"))

    def mouse(kind: str, r: float, buttons: int) -> None:
        """A real input event through the DevTools protocol (chromedriver's actions are too slow to drag at
        a hand's pace on a busy machine): at radius r to the right of the beam centre."""
        browser.execute_cdp_cmd("Input.dispatchMouseEvent", {
            "type": kind, "x": left + (cx + 0.5 + r) * px, "y": top + (cy + 0.5) * px, "button": "left",
            "buttons": buttons, "clickCount": 1})

    before = previews(browser)
    mouse("mouseMoved", 8, 0)
    mouse("mousePressed", 8, 1)
    t0 = time.monotonic()
    for k in range(1, STEPS + 1):  # outwards to 16 px (inside the reduction's reach: the largest circle inside
        mouse("mouseMoved", 8 + 8 * k / STEPS, 1)  # these 40×44 frames, 18 px)
        time.sleep(PAUSE)
    dragging = time.monotonic() - t0
    painted = previews(browser) - before
    mouse("mouseReleased", 16, 0)
    assert painted / dragging >= 5, (painted, dragging)
    assert browser.find_element(By.ID, "map-box").get_attribute("data-preview-source") == "reduction"
    wait(lambda: "rmax=8&" not in shown_url(browser) + "&", 10, "the released radius")
    wait_map(browser)
    url = shown_url(browser)
    assert "snap" not in url  # the released ring's own map, exact
    assert image_pixels(browser, "map-image").tolist() == server_png(reduced, url).tolist()

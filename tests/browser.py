"""A real headless Chromium driven through Selenium, with screenshots kept as test artefacts."""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from helpers import missing
from PIL import Image

ARTIFACTS = os.environ.get("DADA_TEST_ARTIFACTS", os.path.join(os.path.dirname(__file__), "artifacts"))


def chromium(*extra: str) -> Any:
    """Debian's chromium with its chromedriver (tests/install_parts.sh installs both); no download. ``extra``:
    more command-line switches (WebGL pages: ``--enable-unsafe-swiftshader``, rendering on the CPU)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed (pip install -e '.[test]')")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        missing("chromium and chromium-driver are not installed (tests/install_parts.sh)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1440,1000",
                "--disable-dev-shm-usage", "--force-color-profile=srgb", *extra):
        options.add_argument(arg)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def wait(what: Callable[[], Any], timeout: float = 60, message: str = "") -> Any:
    """Poll until ``what()`` is truthy; its value, or an AssertionError naming what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or what}")
        time.sleep(0.05)


def shot(driver: Any, name: str) -> str:
    """Keep a screenshot of this step under the artefacts folder."""
    folder = os.path.join(ARTIFACTS, "gui")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    driver.save_screenshot(path)
    return path


def image_pixels(driver: Any, element_id: str) -> np.ndarray:
    """The RGBA pixels an <img> or <canvas> holds at its natural size, read back from the page."""
    data = driver.execute_script("""
        const el = document.getElementById(arguments[0]);
        const w = el.naturalWidth ?? el.width, h = el.naturalHeight ?? el.height;
        const c = document.createElement('canvas'); c.width = w; c.height = h;
        c.getContext('2d').drawImage(el, 0, 0);
        return c.toDataURL('image/png');""", element_id)
    return decode_png(base64.b64decode(data.split(",", 1)[1]))


def decode_png(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGBA"))


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def canvas_rgba(element: Any) -> np.ndarray:
    """The RGBA pixels a <canvas> element holds (its own resolution, not the screen's)."""
    parent = element.parent
    w, h, data = parent.execute_script("""
        const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return [c.width, c.height, Array.from(d)];""", element)
    return np.asarray(data, dtype=np.uint8).reshape(h, w, 4)


def overflowing(driver: Any, selector: str) -> list[str]:
    """Elements of the page (and the page itself) whose content is wider than their box."""
    return driver.execute_script("""
        const out = [];
        for (const el of [document.documentElement, document.body, ...document.querySelectorAll(arguments[0])])
          if (el.offsetParent !== null || el === document.documentElement || el === document.body)
            if (el.scrollWidth > el.clientWidth)
              out.push(`${el.id || el.className}: ${el.scrollWidth} > ${el.clientWidth}`);
        return out;""", selector)
